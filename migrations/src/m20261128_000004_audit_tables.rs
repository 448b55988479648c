//! Audit: an append-only, hash-chained log per tenant, and the chain head used to serialize appends.
//! The app role may only SELECT and INSERT the log; on SQLite, triggers refuse UPDATE and DELETE.

use crate::rls::{enable_tenant_rls, grant_app, tenant_table, text_col, ts_col, uuid_col};
use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum AuditLog {
    Table,
    TenantId,
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
    Table,
    TenantId,
    Seq,
    Hash,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(AuditLog::Table)
                    .col(uuid_col(AuditLog::TenantId))
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
                    .primary_key(Index::create().col(AuditLog::TenantId).col(AuditLog::Seq))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_audit_log_subject")
                    .table(AuditLog::Table)
                    .col(AuditLog::TenantId)
                    .col(AuditLog::SubjectPersonId)
                    .to_owned(),
            )
            .await?;
        grant_app(manager, "audit_log", "SELECT, INSERT").await?;
        enable_tenant_rls(manager, "audit_log").await?;

        manager
            .create_table(
                Table::create()
                    .table(AuditHeads::Table)
                    .col(uuid_col(AuditHeads::TenantId).primary_key())
                    .col(ColumnDef::new(AuditHeads::Seq).big_integer().not_null())
                    .col(text_col(AuditHeads::Hash))
                    .to_owned(),
            )
            .await?;
        tenant_table(manager, "audit_heads").await?;

        if manager.get_database_backend() == DbBackend::Sqlite {
            manager
                .get_connection()
                .execute_unprepared(
                    "CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
                       BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
                     CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
                       BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;",
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(AuditHeads::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(AuditLog::Table).to_owned()).await
    }
}
