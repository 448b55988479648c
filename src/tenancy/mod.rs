//! Tenancy: medical communities (tenants), their institution tree and departments, and the
//! tenant files in `tenants/` that define them.

pub mod api;
pub mod domain;
pub(crate) mod entity;
pub mod file;
pub mod service;

pub use domain::InstitutionKind;
