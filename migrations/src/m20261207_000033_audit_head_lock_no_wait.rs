//! `audit_head_lock` no longer waits for another transaction's commit. It walks the chains from
//! `p_start`, taking the first head no one holds (`FOR UPDATE SKIP LOCKED`); on a held head it
//! tried `INSERT … ON CONFLICT DO NOTHING` to create the chain in case it was new. But a head that
//! its holder had already advanced (the update just before its commit) is a row version of a
//! transaction in progress, and the unique check waits for that transaction to end: every
//! writer of the tenant that met a chain in its last step queued behind that commit's flush (a
//! mean of 1 ms a call, up to 106 ms, in the visit benchmark at eight clients). Now a head that
//! exists is passed over by a plain read; only a chain that has no head yet is inserted.
//!
//! The function keeps the security it has: `SECURITY DEFINER` on one PostgreSQL, `SECURITY
//! INVOKER` where `platform::citus` made it so (Citus refuses a transaction that reaches
//! co-located shards as two users), so serving replicas are not broken between this migration
//! and the Citus step that follows it.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend, Statement};

use crate::m20261206_000027_audit_chains::CHAINS;

#[derive(DeriveMigrationName)]
pub struct Migration;

const CURRENT_TENANT: &str = "NULLIF(current_setting('cloudhis.tenant_id', true), '')::uuid";

/// The function, as `security` (`DEFINER` or `INVOKER`): migration 27's version when
/// `skip_existing` is false.
fn lock_fn(skip_existing: bool, security: &str) -> String {
    let pass_over = if skip_existing {
        "-- Held by another transaction: a plain read, which waits for no one, passes it over.
                 IF EXISTS (SELECT 1 FROM audit_heads h WHERE h.tenant_id = p_tenant AND h.chain = c) THEN
                   CONTINUE;
                 END IF;
                 -- Never used: a new head is ours until commit."
    } else {
        "-- Held by another transaction, or never used: a new head is ours until commit."
    };
    format!(
        "CREATE OR REPLACE FUNCTION audit_head_lock(p_tenant uuid, p_start int)
               RETURNS TABLE (chain int, seq bigint, hash text) LANGUAGE plpgsql SECURITY {security}
               SET search_path = public, pg_temp AS $$
             #variable_conflict use_column
             DECLARE c int;
             BEGIN
               IF p_tenant IS DISTINCT FROM {CURRENT_TENANT} THEN
                 RAISE EXCEPTION 'the audit head of another tenant' USING ERRCODE = '42501';
               END IF;
               IF p_start < 0 OR p_start >= {CHAINS} THEN
                 RAISE EXCEPTION 'no such audit chain' USING ERRCODE = '22023';
               END IF;
               FOR i IN 0..{CHAINS} - 1 LOOP
                 c := (p_start + i) % {CHAINS};
                 RETURN QUERY SELECT h.chain::int, h.seq::bigint, h.hash::text FROM audit_heads h
                   WHERE h.tenant_id = p_tenant AND h.chain = c FOR UPDATE SKIP LOCKED;
                 IF FOUND THEN RETURN; END IF;
                 {pass_over}
                 INSERT INTO audit_heads (tenant_id, chain, seq, hash)
                   VALUES (p_tenant, c, 0, repeat('0', 64)) ON CONFLICT (tenant_id, chain) DO NOTHING;
                 IF FOUND THEN
                   RETURN QUERY SELECT c, 0::bigint, repeat('0', 64);
                   RETURN;
                 END IF;
               END LOOP;
               RETURN QUERY SELECT h.chain::int, h.seq::bigint, h.hash::text FROM audit_heads h
                 WHERE h.tenant_id = p_tenant AND h.chain = p_start FOR UPDATE;
             END $$;"
    )
}

/// Replaces the function with `lock_fn(skip_existing, …)`, keeping the security it has now.
async fn replace(manager: &SchemaManager<'_>, skip_existing: bool) -> Result<(), DbErr> {
    if manager.get_database_backend() != DbBackend::Postgres {
        return Ok(());
    }
    let conn = manager.get_connection();
    let row = conn
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT prosecdef FROM pg_proc WHERE oid = 'audit_head_lock(uuid, int)'::regprocedure",
        ))
        .await?;
    let definer = row.map(|r| r.try_get::<bool>("", "prosecdef")).transpose()?.unwrap_or(true);
    conn.execute_unprepared(&lock_fn(skip_existing, if definer { "DEFINER" } else { "INVOKER" })).await?;
    Ok(())
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        replace(manager, true).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        replace(manager, false).await
    }
}
