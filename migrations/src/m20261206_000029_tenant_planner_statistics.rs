//! Plans that do not depend on when a table was last analysed. Every tenant table's indexes lead
//! with `tenant_id`. A table analysed while it held a row or two (a new deployment, a bench's
//! load, an early autovacuum) records `tenant_id` as unique, so `tenant_id = $1` looks like one
//! row and every index on `(tenant_id, …)` costs the same as the primary key: the planner takes
//! the smallest, and a primary-key lookup becomes a scan of the tenant's whole slice. The audit
//! head's check ran 8-11 ms at 11,000 audit rows that way, growing with the trail.
//!
//! The fix states what is true of the column whatever the sample: a tenant holds a large share of
//! its table (`n_distinct = 10`, about ten communities per database), so an index that pins only
//! the tenant is never taken for a key lookup. The setting is read by `ANALYZE`, which runs here
//! once on each table that has statistics; a table never analysed has none, the planner's
//! defaults already choose well, and it is left so (an empty table analysed would look empty to
//! the planner until its next `ANALYZE`).
//! Skipped where Citus is installed: the shards keep their own statistics.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend, Statement};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// What the planner assumes of `tenant_id`: distinct values across the whole table.
const TENANTS_PER_TABLE: u32 = 10;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        let db = manager.get_connection();
        let citus = db
            .query_one_raw(Statement::from_string(
                DbBackend::Postgres,
                "SELECT count(*) AS n FROM pg_extension WHERE extname = 'citus'",
            ))
            .await?
            .map(|r| r.try_get::<i64>("", "n"))
            .transpose()?
            .unwrap_or(0);
        if citus > 0 {
            return Ok(());
        }
        let rows = db
            .query_all_raw(Statement::from_string(
                DbBackend::Postgres,
                "SELECT c.table_name::text AS t FROM information_schema.columns c
                   JOIN information_schema.tables t USING (table_schema, table_name)
                  WHERE c.table_schema = current_schema() AND c.column_name = 'tenant_id'
                    AND t.table_type = 'BASE TABLE'
                  ORDER BY 1",
            ))
            .await?;
        for row in rows {
            let table: String = row.try_get("", "t")?;
            db.execute_unprepared(&format!(
                "ALTER TABLE \"{table}\" ALTER COLUMN tenant_id SET (n_distinct = {TENANTS_PER_TABLE})"
            ))
            .await?;
            // Only where statistics exist already (they are what the setting corrects). A table
            // never analysed stays so: "analysed while empty" would tell the planner it is empty
            // until the next ANALYZE, and the MPI's candidate query then scanned 20,000 persons.
            let analysed = db
                .query_one_raw(Statement::from_sql_and_values(
                    DbBackend::Postgres,
                    "SELECT EXISTS (SELECT 1 FROM pg_stats WHERE schemaname = current_schema()
                                       AND tablename = $1 AND attname = 'tenant_id') AS a",
                    [table.clone().into()],
                ))
                .await?
                .map(|r| r.try_get::<bool>("", "a"))
                .transpose()?
                .unwrap_or(false);
            if analysed {
                db.execute_unprepared(&format!("ANALYZE \"{table}\"")).await?;
            }
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        let db = manager.get_connection();
        let rows = db
            .query_all_raw(Statement::from_string(
                DbBackend::Postgres,
                "SELECT attrelid::regclass::text AS t FROM pg_attribute
                  WHERE attname = 'tenant_id' AND attoptions IS NOT NULL
                    AND attrelid::regclass::text NOT LIKE 'pg_%'",
            ))
            .await?;
        for row in rows {
            let table: String = row.try_get("", "t")?;
            db.execute_unprepared(&format!("ALTER TABLE {table} ALTER COLUMN tenant_id RESET (n_distinct)")).await?;
        }
        Ok(())
    }
}
