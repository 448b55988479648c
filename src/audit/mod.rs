//! Audit: reading and verifying the append-only, hash-chained log of access to patient data and
//! of security events. Rows are written by `platform::audit` inside the transaction whose work
//! they record; this context serves the trail to administrators and checks the chains.

pub mod api;
pub mod archive;
pub mod service;
mod verify;

pub use verify::{BrokenLink, ChainChecked, VerifyReport, verify};
