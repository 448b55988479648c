//! Tenancy: medical communities (tenants), their institution tree and departments. Tenant files
//! are parsed and applied by `onboarding`, which calls this context for its part.

pub mod domain;
pub(crate) mod entity;
pub mod service;

pub use domain::InstitutionKind;
