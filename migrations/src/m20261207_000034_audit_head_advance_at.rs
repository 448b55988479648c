//! `audit_head_advance` with the appended row's time. The head moves only to a row that exists,
//! and the function checked that by the row's chain, number and hash. Since migration 32 the
//! trail is partitioned by month on `occurred_at`, which that check did not name, so every call
//! probed the primary key of every month's partition (and, planned at each call, planned them
//! all): 112 µs a check against 39 µs with the time given, measured on a 200,000-row trail with
//! five partitions, and the cost grows with each month kept. The new five-argument function takes the
//! time the rows were dated (`p_at`, which is in the primary key), so the check reads one
//! partition. It is still planned at each call, as the four-argument one is (migration 32): a
//! plan cached while the month's partition looked empty (analysed before its first row) scans
//! it, and kept scanning 200,000 rows for 30 ms a call once it filled (a cached plan would cost
//! 8 µs a check when it is the right one).
//!
//! The four-argument function stays for replicas of the previous version during a rolling
//! deploy. On Citus the function is made `SECURITY INVOKER` by `platform::citus`, as the other
//! head functions are, in the same `migrate` and before any replica of this version serves.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

use crate::rls::APP_ROLE;

#[derive(DeriveMigrationName)]
pub struct Migration;

const CURRENT_TENANT: &str = "NULLIF(current_setting('cloudhis.tenant_id', true), '')::uuid";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        let sql = format!(
            "CREATE FUNCTION audit_head_advance(p_tenant uuid, p_chain int, p_seq bigint, p_hash text, p_at timestamptz)
               RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
             BEGIN
               IF p_tenant IS DISTINCT FROM {CURRENT_TENANT} THEN
                 RAISE EXCEPTION 'the audit head of another tenant' USING ERRCODE = '42501';
               END IF;
               UPDATE audit_heads h SET seq = p_seq, hash = p_hash
                 WHERE h.tenant_id = p_tenant AND h.chain = p_chain AND h.seq < p_seq
                   AND EXISTS (SELECT 1 FROM audit_log l
                                WHERE l.tenant_id = p_tenant AND l.chain = p_chain
                                  AND l.seq = p_seq AND l.occurred_at = p_at AND l.hash = p_hash);
               IF NOT FOUND THEN
                 RAISE EXCEPTION 'the audit head moves only forward, to an appended row' USING ERRCODE = '42501';
               END IF;
             END $$;
             ALTER FUNCTION audit_head_advance(uuid, int, bigint, text, timestamptz) SET plan_cache_mode = force_custom_plan;
             REVOKE ALL ON FUNCTION audit_head_advance(uuid, int, bigint, text, timestamptz) FROM PUBLIC;
             GRANT EXECUTE ON FUNCTION audit_head_advance(uuid, int, bigint, text, timestamptz) TO {APP_ROLE};"
        );
        manager.get_connection().execute_unprepared(&sql).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        manager
            .get_connection()
            .execute_unprepared("DROP FUNCTION audit_head_advance(uuid, int, bigint, text, timestamptz)")
            .await?;
        Ok(())
    }
}
