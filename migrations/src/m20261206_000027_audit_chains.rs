//! Audit chains that do not serialise a tenant: each tenant's trail is split over
//! [`CHAINS`] hash chains (`chain` 0..15), each with its own head, and a transaction appends to
//! the first chain whose head no other transaction holds (`FOR UPDATE SKIP LOCKED`), so
//! concurrent requests of one community no longer queue behind one row. Existing rows are
//! chain 0, unchanged. Paging the trail goes by row id (UUIDv7, time-ordered), indexed.

use crate::rls::{APP_ROLE, text_col, ts_col, uuid_col};
use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Chains per tenant; `audit_head_lock` and the app agree on it.
pub const CHAINS: i32 = 16;

const CURRENT_TENANT: &str = "NULLIF(current_setting('cloudhis.tenant_id', true), '')::uuid";

#[derive(DeriveIden)]
enum AuditLog {
    TenantId,
    Chain,
    Seq,
    Id,
    OccurredAt,
    ActorUserId,
    InstitutionId,
    Action,
    ResourceType,
    ResourceId,
    SubjectPersonId,
    Purpose,
    Outcome,
    RequestId,
    PrevHash,
    Hash,
}

#[derive(DeriveIden)]
enum AuditHeads {
    TenantId,
    Chain,
    Seq,
    Hash,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() == DbBackend::Sqlite {
            return sqlite_up(manager).await;
        }
        let sql = format!(
            "ALTER TABLE audit_heads ADD COLUMN chain smallint NOT NULL DEFAULT 0;
             ALTER TABLE audit_heads DROP CONSTRAINT audit_heads_pkey, ADD PRIMARY KEY (tenant_id, chain);
             ALTER TABLE audit_log ADD COLUMN chain smallint NOT NULL DEFAULT 0;
             ALTER TABLE audit_log DROP CONSTRAINT audit_log_pkey, ADD PRIMARY KEY (tenant_id, chain, seq);
             CREATE INDEX ix_audit_log_recent ON audit_log (tenant_id, id);

             DROP FUNCTION audit_head_lock(uuid);
             DROP FUNCTION audit_head_advance(uuid, bigint, text);

             -- The first free chain from p_start on, created at genesis on first use and locked
             -- for the rest of the transaction; when all {CHAINS} are held, waits for p_start's.
             CREATE FUNCTION audit_head_lock(p_tenant uuid, p_start int)
               RETURNS TABLE (chain int, seq bigint, hash text) LANGUAGE plpgsql SECURITY DEFINER
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
                 -- Held by another transaction, or never used: a new head is ours until commit.
                 INSERT INTO audit_heads (tenant_id, chain, seq, hash)
                   VALUES (p_tenant, c, 0, repeat('0', 64)) ON CONFLICT (tenant_id, chain) DO NOTHING;
                 IF FOUND THEN
                   RETURN QUERY SELECT c, 0::bigint, repeat('0', 64);
                   RETURN;
                 END IF;
               END LOOP;
               RETURN QUERY SELECT h.chain::int, h.seq::bigint, h.hash::text FROM audit_heads h
                 WHERE h.tenant_id = p_tenant AND h.chain = p_start FOR UPDATE;
             END $$;

             CREATE FUNCTION audit_head_advance(p_tenant uuid, p_chain int, p_seq bigint, p_hash text)
               RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
             BEGIN
               IF p_tenant IS DISTINCT FROM {CURRENT_TENANT} THEN
                 RAISE EXCEPTION 'the audit head of another tenant' USING ERRCODE = '42501';
               END IF;
               UPDATE audit_heads h SET seq = p_seq, hash = p_hash
                 WHERE h.tenant_id = p_tenant AND h.chain = p_chain AND h.seq < p_seq
                   AND EXISTS (SELECT 1 FROM audit_log l
                                WHERE l.tenant_id = p_tenant AND l.chain = p_chain
                                  AND l.seq = p_seq AND l.hash = p_hash);
               IF NOT FOUND THEN
                 RAISE EXCEPTION 'the audit head moves only forward, to an appended row' USING ERRCODE = '42501';
               END IF;
             END $$;

             REVOKE ALL ON FUNCTION audit_head_lock(uuid, int) FROM PUBLIC;
             REVOKE ALL ON FUNCTION audit_head_advance(uuid, int, bigint, text) FROM PUBLIC;
             GRANT EXECUTE ON FUNCTION audit_head_lock(uuid, int) TO {APP_ROLE};
             GRANT EXECUTE ON FUNCTION audit_head_advance(uuid, int, bigint, text) TO {APP_ROLE};"
        );
        manager.get_connection().execute_unprepared(&sql).await?;
        Ok(())
    }

    async fn down(&self, _manager: &SchemaManager) -> Result<(), DbErr> {
        Err(DbErr::Migration("the audit chains cannot be folded back into one".into()))
    }
}

/// SQLite cannot change a primary key in place: both tables are rebuilt, their rows copied as
/// chain 0, and the append-only triggers put back.
async fn sqlite_up(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    let db = manager.get_connection();
    manager
        .create_table(
            Table::create()
                .table(Alias::new("audit_log_chained"))
                .col(uuid_col(AuditLog::TenantId))
                .col(ColumnDef::new(AuditLog::Chain).small_integer().not_null().default(0))
                .col(ColumnDef::new(AuditLog::Seq).big_integer().not_null())
                .col(uuid_col(AuditLog::Id))
                .col(ts_col(AuditLog::OccurredAt))
                .col(ColumnDef::new(AuditLog::ActorUserId).uuid().null())
                .col(ColumnDef::new(AuditLog::InstitutionId).uuid().null())
                .col(text_col(AuditLog::Action))
                .col(text_col(AuditLog::ResourceType))
                .col(ColumnDef::new(AuditLog::ResourceId).string().null())
                .col(ColumnDef::new(AuditLog::SubjectPersonId).uuid().null())
                .col(text_col(AuditLog::Purpose))
                .col(text_col(AuditLog::Outcome))
                .col(ColumnDef::new(AuditLog::RequestId).string().null())
                .col(text_col(AuditLog::PrevHash))
                .col(text_col(AuditLog::Hash))
                .primary_key(Index::create().col(AuditLog::TenantId).col(AuditLog::Chain).col(AuditLog::Seq))
                .to_owned(),
        )
        .await?;
    db.execute_unprepared(
        "INSERT INTO audit_log_chained (tenant_id, chain, seq, id, occurred_at, actor_user_id, institution_id,
                action, resource_type, resource_id, subject_person_id, purpose, outcome, request_id, prev_hash, hash)
         SELECT tenant_id, 0, seq, id, occurred_at, actor_user_id, institution_id, action, resource_type,
                resource_id, subject_person_id, purpose, outcome, request_id, prev_hash, hash FROM audit_log;
         DROP TABLE audit_log;
         ALTER TABLE audit_log_chained RENAME TO audit_log;
         CREATE INDEX ix_audit_log_subject ON audit_log (tenant_id, subject_person_id);
         CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
           BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
         CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
           BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;",
    )
    .await?;
    manager
        .create_table(
            Table::create()
                .table(Alias::new("audit_heads_chained"))
                .col(uuid_col(AuditHeads::TenantId))
                .col(ColumnDef::new(AuditHeads::Chain).small_integer().not_null().default(0))
                .col(ColumnDef::new(AuditHeads::Seq).big_integer().not_null())
                .col(text_col(AuditHeads::Hash))
                .primary_key(Index::create().col(AuditHeads::TenantId).col(AuditHeads::Chain))
                .to_owned(),
        )
        .await?;
    db.execute_unprepared(
        "INSERT INTO audit_heads_chained (tenant_id, chain, seq, hash) SELECT tenant_id, 0, seq, hash FROM audit_heads;
         DROP TABLE audit_heads;
         ALTER TABLE audit_heads_chained RENAME TO audit_heads;
         CREATE INDEX ix_audit_log_recent ON audit_log (tenant_id, id);",
    )
    .await?;
    Ok(())
}
