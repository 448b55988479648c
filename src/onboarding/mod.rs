//! Onboarding a community: tenant files (`tenants/<code>.toml`). A workflow above the contexts:
//! `file` parses and validates a whole file; `apply` writes it in one transaction, each part by
//! the context that owns it (tenancy, identity, pharmacy, billing, accounts).

mod apply;
pub mod file;

pub use apply::apply;
pub use file::{LoadError, TenantSpec, parse};
