//! Accounts: the community's consolidated books. A double-entry ledger fed by billing, pharmacy
//! and referral events (the `ledger` consumer), internal settlement between member institutions,
//! statements for any period with internal transactions eliminated, reconciliation against
//! billing, and period close. See `docs/accounts.md`.

pub mod api;
pub mod domain;
pub mod entity;
pub mod service;
