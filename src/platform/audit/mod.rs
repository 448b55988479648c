//! The audit trail's write side, which every transaction uses: what a row says ([`AuditEntry`],
//! ids only) and how rows join their tenant's hash chain (`chain::append`, called by
//! `Tx::commit`). Reading and verifying the trail is the `audit` context's.

pub mod chain;
pub mod entity;
mod entry;
pub mod writer;

pub use entry::{AuditEntry, Outcome, Purpose};
