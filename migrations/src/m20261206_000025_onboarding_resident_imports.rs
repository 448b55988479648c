//! Bulk import of legacy residents (`cloudhis import residents`, `POST /api/v1/imports/residents`).
//!
//! `import_rows` remembers every source row that was imported (keyed by its source record id, or
//! by a hash of the row when the file has none) with the person it became and its data-quality
//! flags: a second run of the same file skips them, and a run that crashed resumes after the last
//! batch it committed. `import_jobs` tracks an upload's progress and keeps its dedupe report.

use sea_orm_migration::prelude::*;

use crate::rls::{tenant_table, text_col, ts_col, uuid_col};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum ImportRows {
    Table,
    TenantId,
    SourceKey,
    JobId,
    Line,
    PersonId,
    Outcome,
    Flags,
    ImportedAt,
}

#[derive(DeriveIden)]
enum ImportJobs {
    Table,
    TenantId,
    Id,
    FileName,
    Status,
    TotalRows,
    ProcessedRows,
    Report,
    Error,
    CreatedBy,
    CreatedAt,
    FinishedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ImportRows::Table)
                    .col(uuid_col(ImportRows::TenantId))
                    .col(text_col(ImportRows::SourceKey))
                    .col(uuid_col(ImportRows::JobId))
                    .col(ColumnDef::new(ImportRows::Line).big_integer().not_null())
                    .col(uuid_col(ImportRows::PersonId))
                    .col(text_col(ImportRows::Outcome))
                    .col(text_col(ImportRows::Flags))
                    .col(ts_col(ImportRows::ImportedAt))
                    .primary_key(Index::create().col(ImportRows::TenantId).col(ImportRows::SourceKey))
                    .to_owned(),
            )
            .await?;
        tenant_table(manager, "import_rows").await?;
        manager
            .create_table(
                Table::create()
                    .table(ImportJobs::Table)
                    .col(uuid_col(ImportJobs::TenantId))
                    .col(uuid_col(ImportJobs::Id))
                    .col(text_col(ImportJobs::FileName))
                    .col(text_col(ImportJobs::Status))
                    .col(ColumnDef::new(ImportJobs::TotalRows).big_integer().not_null())
                    .col(ColumnDef::new(ImportJobs::ProcessedRows).big_integer().not_null())
                    .col(ColumnDef::new(ImportJobs::Report).text().null())
                    .col(ColumnDef::new(ImportJobs::Error).string().null())
                    .col(ColumnDef::new(ImportJobs::CreatedBy).uuid().null())
                    .col(ts_col(ImportJobs::CreatedAt))
                    .col(ColumnDef::new(ImportJobs::FinishedAt).timestamp_with_time_zone().null())
                    .primary_key(Index::create().col(ImportJobs::TenantId).col(ImportJobs::Id))
                    .to_owned(),
            )
            .await?;
        tenant_table(manager, "import_jobs").await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(ImportJobs::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(ImportRows::Table).to_owned()).await
    }
}
