//! Least privilege for the app role, and roles that change at once everywhere:
//! - `tenants` (names and settings: reimbursement rates, fee shares) is no longer written by the
//!   app role directly. `tenant_apply` (SECURITY DEFINER) creates or changes only the tenant the
//!   transaction is scoped to; the app keeps SELECT.
//! - `audit_heads` (each tenant's chain head) is no longer written directly either.
//!   `audit_head_lock` creates and locks the transaction's own head; `audit_head_advance` moves it
//!   forward only, and only to a row already appended to `audit_log`. A head cannot be rewound,
//!   forged or deleted by the app.
//! - `authz_epochs`: a counter per tenant bumped on every change of roles or users, so a process
//!   without Redis notices (the embedded default, or a CLI run beside a server) sees another
//!   process's change on its next request.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

use crate::rls::{APP_ROLE, tenant_table, uuid_col};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum AuthzEpochs {
    Table,
    TenantId,
    Epoch,
}

/// The transaction's tenant, as row-level security reads it.
const CURRENT_TENANT: &str = "NULLIF(current_setting('cloudhis.tenant_id', true), '')::uuid";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(AuthzEpochs::Table)
                    .col(uuid_col(AuthzEpochs::TenantId).primary_key())
                    .col(ColumnDef::new(AuthzEpochs::Epoch).big_integer().not_null().default(0))
                    .to_owned(),
            )
            .await?;
        tenant_table(manager, "authz_epochs").await?;
        if manager.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        let sql = format!(
            "CREATE OR REPLACE FUNCTION tenant_apply(p_id uuid, p_code text, p_name text, p_name_en text, p_settings jsonb)
               RETURNS text LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
             DECLARE
               old tenants%ROWTYPE;
             BEGIN
               IF p_id IS DISTINCT FROM {CURRENT_TENANT} THEN
                 RAISE EXCEPTION 'a tenant may be changed only in a transaction scoped to it' USING ERRCODE = '42501';
               END IF;
               SELECT * INTO old FROM tenants WHERE id = p_id FOR UPDATE;
               IF NOT FOUND THEN
                 INSERT INTO tenants (id, code, name, name_en, settings, created_at, updated_at)
                   VALUES (p_id, p_code, p_name, p_name_en, p_settings, now(), now());
                 RETURN 'created';
               END IF;
               IF old.code IS DISTINCT FROM p_code THEN
                 RAISE EXCEPTION 'a tenant keeps its code' USING ERRCODE = '42501';
               END IF;
               IF old.name IS NOT DISTINCT FROM p_name AND old.name_en IS NOT DISTINCT FROM p_name_en
                  AND old.settings = p_settings THEN
                 RETURN 'unchanged';
               END IF;
               UPDATE tenants SET name = p_name, name_en = p_name_en, settings = p_settings, updated_at = now()
                 WHERE id = p_id;
               RETURN 'updated';
             END $$;

             CREATE OR REPLACE FUNCTION audit_head_lock(p_tenant uuid)
               RETURNS TABLE (seq bigint, hash text) LANGUAGE plpgsql SECURITY DEFINER
               SET search_path = public, pg_temp AS $$
             BEGIN
               IF p_tenant IS DISTINCT FROM {CURRENT_TENANT} THEN
                 RAISE EXCEPTION 'the audit head of another tenant' USING ERRCODE = '42501';
               END IF;
               INSERT INTO audit_heads (tenant_id, seq, hash)
                 VALUES (p_tenant, 0, repeat('0', 64)) ON CONFLICT (tenant_id) DO NOTHING;
               RETURN QUERY SELECT h.seq::bigint, h.hash::text FROM audit_heads h WHERE h.tenant_id = p_tenant FOR UPDATE;
             END $$;

             CREATE OR REPLACE FUNCTION audit_head_advance(p_tenant uuid, p_seq bigint, p_hash text)
               RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
             BEGIN
               IF p_tenant IS DISTINCT FROM {CURRENT_TENANT} THEN
                 RAISE EXCEPTION 'the audit head of another tenant' USING ERRCODE = '42501';
               END IF;
               UPDATE audit_heads h SET seq = p_seq, hash = p_hash
                 WHERE h.tenant_id = p_tenant AND h.seq < p_seq
                   AND EXISTS (SELECT 1 FROM audit_log l
                                WHERE l.tenant_id = p_tenant AND l.seq = p_seq AND l.hash = p_hash);
               IF NOT FOUND THEN
                 RAISE EXCEPTION 'the audit head moves only forward, to an appended row' USING ERRCODE = '42501';
               END IF;
             END $$;

             REVOKE ALL ON FUNCTION tenant_apply(uuid, text, text, text, jsonb) FROM PUBLIC;
             REVOKE ALL ON FUNCTION audit_head_lock(uuid) FROM PUBLIC;
             REVOKE ALL ON FUNCTION audit_head_advance(uuid, bigint, text) FROM PUBLIC;
             GRANT EXECUTE ON FUNCTION tenant_apply(uuid, text, text, text, jsonb) TO {APP_ROLE};
             GRANT EXECUTE ON FUNCTION audit_head_lock(uuid) TO {APP_ROLE};
             GRANT EXECUTE ON FUNCTION audit_head_advance(uuid, bigint, text) TO {APP_ROLE};
             REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON tenants FROM {APP_ROLE};
             REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON audit_heads FROM {APP_ROLE};
             REVOKE UPDATE, DELETE, TRUNCATE ON audit_log FROM {APP_ROLE};"
        );
        manager.get_connection().execute_unprepared(&sql).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() == DbBackend::Postgres {
            let sql = format!(
                "GRANT INSERT, UPDATE ON tenants TO {APP_ROLE};
                 GRANT SELECT, INSERT, UPDATE, DELETE ON audit_heads TO {APP_ROLE};
                 DROP FUNCTION IF EXISTS tenant_apply(uuid, text, text, text, jsonb);
                 DROP FUNCTION IF EXISTS audit_head_lock(uuid);
                 DROP FUNCTION IF EXISTS audit_head_advance(uuid, bigint, text);"
            );
            manager.get_connection().execute_unprepared(&sql).await?;
        }
        manager.drop_table(Table::drop().table(AuthzEpochs::Table).to_owned()).await?;
        Ok(())
    }
}
