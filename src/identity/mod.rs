//! Identity: staff users, credentials, sessions, roles and casbin policies, and the request
//! context every other context's API runs under.

pub mod api;
pub mod authz;
pub mod ctx;
pub mod domain;
pub(crate) mod entity;
pub mod institutions;
pub mod password;
pub mod service;
pub mod totp;

pub use ctx::{Auth, Perm, RequestCtx};
pub use domain::Role;
