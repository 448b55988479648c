//! One integration-test binary. Every test starts the real application on port 0 against the
//! backend named by `CLOUDHIS_TEST_BACKEND` (see helpers.rs).

mod helpers;

mod accounts;
mod architecture;
mod audit;
mod audit_completeness;
mod auth;
mod bola;
mod citus;
mod dates;
mod delivery;
mod demo;
mod errors;
mod followups;
mod fuzz;
mod idempotency;
mod imports;
mod isolation;
mod patient_identifiers;
mod patients;
mod platform;
mod referrals;
mod resilience;
mod rls;
mod sessions;
mod statistics;
mod tenants;
mod visit;
mod web;
