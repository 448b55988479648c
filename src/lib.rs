//! cloudhis: a county-township-village integrated cloud HIS, multi-tenant, one monolith with a
//! folder per bounded context. See `../shared/DESIGN.md` and `docs/architecture.md`.

pub mod accounts;
pub mod api;
pub mod audit;
pub mod billing;
pub mod cli;
pub mod clinical;
pub mod escalation;
pub mod followups;
pub mod identity;
pub mod onboarding;
pub mod patients;
pub mod pharmacy;
pub mod platform;
pub mod referrals;
pub mod startup;
pub mod statistics;
pub mod tenancy;
pub mod visit;
pub mod web;
