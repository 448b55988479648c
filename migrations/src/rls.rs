//! Helpers shared by migrations: row-level security and common column shapes.
//!
//! Every tenant table gets a policy keyed on the transaction-local setting `cloudhis.tenant_id`.
//! When the setting is unset (or reset to '' after a transaction), the comparison is NULL and the
//! policy admits nothing: it fails closed. `FORCE` makes the policy apply to the table owner too;
//! only superusers and BYPASSRLS roles escape it, and the app never connects as one of those.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

/// The role the application runs as. Migrations grant it DML on tenant tables.
pub const APP_ROLE: &str = "cloudhis_app";

/// The policy's test: the row's tenant is the transaction's. The setting is read in a scalar
/// sub-select, which PostgreSQL evaluates once per statement (an InitPlan) instead of once per
/// row: a 100,000-row scan costs the same as without row-level security, where the bare
/// `current_setting(..)::uuid` added about 40% (m20261128_000017 moved the existing policies).
pub const TENANT_MATCH: &str = "tenant_id = (SELECT NULLIF(current_setting('cloudhis.tenant_id', true), '')::uuid)";

/// Enables and forces row-level security on `table` (PostgreSQL only; a no-op on SQLite).
pub async fn enable_tenant_rls(manager: &SchemaManager<'_>, table: &str) -> Result<(), DbErr> {
    if manager.get_database_backend() != DbBackend::Postgres {
        return Ok(());
    }
    let db = manager.get_connection();
    let sql = format!(
        "ALTER TABLE {table} ENABLE ROW LEVEL SECURITY;
         ALTER TABLE {table} FORCE ROW LEVEL SECURITY;
         DROP POLICY IF EXISTS tenant_isolation ON {table};
         CREATE POLICY tenant_isolation ON {table} USING ({TENANT_MATCH}) WITH CHECK ({TENANT_MATCH});"
    );
    db.execute_unprepared(&sql).await?;
    Ok(())
}

/// Grants the app role the given privileges on `table` (PostgreSQL only).
pub async fn grant_app(manager: &SchemaManager<'_>, table: &str, privileges: &str) -> Result<(), DbErr> {
    if manager.get_database_backend() != DbBackend::Postgres {
        return Ok(());
    }
    manager.get_connection().execute_unprepared(&format!("GRANT {privileges} ON {table} TO {APP_ROLE}")).await?;
    Ok(())
}

/// A tenant table: grant DML to the app role and enable RLS.
pub async fn tenant_table(manager: &SchemaManager<'_>, table: &str) -> Result<(), DbErr> {
    grant_app(manager, table, "SELECT, INSERT, UPDATE, DELETE").await?;
    enable_tenant_rls(manager, table).await
}

pub fn uuid_col<T: IntoIden>(name: T) -> ColumnDef {
    ColumnDef::new(name).uuid().not_null().to_owned()
}

pub fn text_col<T: IntoIden>(name: T) -> ColumnDef {
    ColumnDef::new(name).string().not_null().to_owned()
}

pub fn ts_col<T: IntoIden>(name: T) -> ColumnDef {
    ColumnDef::new(name).timestamp_with_time_zone().not_null().to_owned()
}
