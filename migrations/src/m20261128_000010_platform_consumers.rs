//! Idempotent consumers: a consumer records each event it applied in the same transaction as the
//! effect, so a redelivered event changes nothing; events a consumer could not apply after its
//! attempts are kept as dead letters.

use crate::rls::{tenant_table, text_col, ts_col, uuid_col};
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum ProcessedEvents {
    Table,
    TenantId,
    Consumer,
    EventId,
    ProcessedAt,
}

#[derive(DeriveIden)]
enum DeadLetters {
    Table,
    TenantId,
    Id,
    Consumer,
    EventId,
    EventType,
    Payload,
    Error,
    DeadAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ProcessedEvents::Table)
                    .col(uuid_col(ProcessedEvents::TenantId))
                    .col(text_col(ProcessedEvents::Consumer))
                    .col(uuid_col(ProcessedEvents::EventId))
                    .col(ts_col(ProcessedEvents::ProcessedAt))
                    .primary_key(
                        Index::create()
                            .col(ProcessedEvents::TenantId)
                            .col(ProcessedEvents::Consumer)
                            .col(ProcessedEvents::EventId),
                    )
                    .to_owned(),
            )
            .await?;
        tenant_table(manager, "processed_events").await?;
        manager
            .create_table(
                Table::create()
                    .table(DeadLetters::Table)
                    .col(uuid_col(DeadLetters::TenantId))
                    .col(uuid_col(DeadLetters::Id))
                    .col(text_col(DeadLetters::Consumer))
                    .col(uuid_col(DeadLetters::EventId))
                    .col(text_col(DeadLetters::EventType))
                    .col(ColumnDef::new(DeadLetters::Payload).json_binary().not_null())
                    .col(text_col(DeadLetters::Error))
                    .col(ts_col(DeadLetters::DeadAt))
                    .primary_key(Index::create().col(DeadLetters::TenantId).col(DeadLetters::Id))
                    .to_owned(),
            )
            .await?;
        tenant_table(manager, "dead_letters").await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(DeadLetters::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(ProcessedEvents::Table).to_owned()).await
    }
}
