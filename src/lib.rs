//! cloudhis: a county-township-village integrated cloud HIS, multi-tenant, one monolith with a
//! folder per bounded context. `docs/architecture.md` describes the shape: the contexts, their
//! layers, the workflows above them, events, tenancy and isolation.

pub mod accounts;
pub mod api;
pub mod audit;
pub mod billing;
pub mod cli;
pub mod clinical;
pub mod demo;
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
