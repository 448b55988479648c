//! Audit: the append-only, hash-chained log of access to patient data and of security events.
//! One chain per tenant; rows are appended inside the transaction whose work they record.

pub mod api;
mod chain;
pub mod domain;
pub(crate) mod entity;
pub mod service;

pub use chain::{VerifyReport, append, verify};
pub use domain::{AuditEntry, Outcome, Purpose};
