//! Schema migrations for cloudhis, one file per change, named
//! `m<YYYYMMDD>_<HHMMSS>_<context>_<change>.rs`. A landed migration is never edited (expand/contract).
//! `cloudhis migrate` runs them under an advisory lock on PostgreSQL, as the schema owner.

pub use sea_orm_migration::prelude::*;

pub mod rls;

mod m20261128_000001_platform_app_role;
mod m20261128_000002_tenancy_tables;
mod m20261128_000003_identity_tables;
mod m20261128_000004_audit_tables;
mod m20261128_000005_patients_tables;
mod m20261128_000006_platform_outbox;
mod m20261128_000007_clinical_tables;
mod m20261128_000008_pharmacy_tables;
mod m20261128_000009_billing_tables;
mod m20261128_000010_platform_consumers;
mod m20261128_000011_referrals_tables;
mod m20261128_000012_accounts_tables;
mod m20261128_000013_followups_tables;
mod m20261128_000014_statistics_tables;
mod m20261128_000015_statistics_indexes;
mod m20261128_000016_accounts_guards;
mod m20261128_000017_platform_rls_initplan;
mod m20261128_000018_statistics_registry_steps;
mod m20261128_000019_clinical_break_glass;
mod m20261128_000020_identity_user_totp;
mod m20261206_000021_platform_delivery;
mod m20261206_000022_identity_least_privilege;
mod m20261206_000023_patients_identifier_reveals;
mod m20261206_000024_patients_held_identifiers;
mod m20261206_000025_onboarding_resident_imports;
mod m20261206_000026_patients_surname_index;
mod m20261206_000027_audit_chains;
mod m20261206_000028_referrals_parent_index;
mod m20261206_000029_tenant_planner_statistics;
mod m20261206_000030_billing_charges_source_index;
mod m20261207_000031_idempotency_committed;
mod m20261207_000032_audit_log_by_month;
mod m20261207_000033_audit_head_lock_no_wait;
mod m20261207_000034_audit_head_advance_at;
mod m20261208_000035_outbox_seq_index_sqlite;

/// The registry steps of the enrollment summaries already there, as SQL (migration 18 runs it).
pub use m20261128_000018_statistics_registry_steps::fill_sql as registry_steps_fill_sql;
pub use m20261206_000027_audit_chains::CHAINS as AUDIT_CHAINS;
pub use m20261207_000032_audit_log_by_month::MONTHS_AHEAD as AUDIT_MONTHS_AHEAD;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261128_000001_platform_app_role::Migration),
            Box::new(m20261128_000002_tenancy_tables::Migration),
            Box::new(m20261128_000003_identity_tables::Migration),
            Box::new(m20261128_000004_audit_tables::Migration),
            Box::new(m20261128_000005_patients_tables::Migration),
            Box::new(m20261128_000006_platform_outbox::Migration),
            Box::new(m20261128_000007_clinical_tables::Migration),
            Box::new(m20261128_000008_pharmacy_tables::Migration),
            Box::new(m20261128_000009_billing_tables::Migration),
            Box::new(m20261128_000010_platform_consumers::Migration),
            Box::new(m20261128_000011_referrals_tables::Migration),
            Box::new(m20261128_000012_accounts_tables::Migration),
            Box::new(m20261128_000013_followups_tables::Migration),
            Box::new(m20261128_000014_statistics_tables::Migration),
            Box::new(m20261128_000015_statistics_indexes::Migration),
            Box::new(m20261128_000016_accounts_guards::Migration),
            Box::new(m20261128_000017_platform_rls_initplan::Migration),
            Box::new(m20261128_000018_statistics_registry_steps::Migration),
            Box::new(m20261128_000019_clinical_break_glass::Migration),
            Box::new(m20261128_000020_identity_user_totp::Migration),
            Box::new(m20261206_000021_platform_delivery::Migration),
            Box::new(m20261206_000022_identity_least_privilege::Migration),
            Box::new(m20261206_000023_patients_identifier_reveals::Migration),
            Box::new(m20261206_000024_patients_held_identifiers::Migration),
            Box::new(m20261206_000025_onboarding_resident_imports::Migration),
            Box::new(m20261206_000026_patients_surname_index::Migration),
            Box::new(m20261206_000027_audit_chains::Migration),
            Box::new(m20261206_000028_referrals_parent_index::Migration),
            Box::new(m20261206_000029_tenant_planner_statistics::Migration),
            Box::new(m20261206_000030_billing_charges_source_index::Migration),
            Box::new(m20261207_000031_idempotency_committed::Migration),
            Box::new(m20261207_000032_audit_log_by_month::Migration),
            Box::new(m20261207_000033_audit_head_lock_no_wait::Migration),
            Box::new(m20261207_000034_audit_head_advance_at::Migration),
            Box::new(m20261208_000035_outbox_seq_index_sqlite::Migration),
        ]
    }
}
