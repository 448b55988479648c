//! Events that are never lost, and creates that happen once:
//! - dead letters count the attempts made and record when an operator redrove them;
//! - the dead-letter list, the consumers' bookkeeping and the outbox can be read across tenants
//!   by the delivery machinery (`cloudhis.relay = on`: the anti-entropy sweep, the dead-letter
//!   count in /metrics, redrive), as the relay already reads the outbox; ordinary code, which
//!   never sets it, still sees only its tenant;
//! - an index on when events were published, which bounds the sweep to a recent window;
//! - idempotency keys: the first answer to a create, kept per tenant, user and key;
//! - an index on the statistics' referral rows by parent: every referral event looks up whether a
//!   down-referral answers it, which scanned the table (at 500 events/s that was the consumers'
//!   whole budget).

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

use crate::rls::{TENANT_MATCH, tenant_table, text_col, ts_col, uuid_col};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum DeadLetters {
    Table,
    Attempts,
    RedrivenAt,
}

#[derive(DeriveIden)]
enum IdempotencyKeys {
    Table,
    TenantId,
    UserId,
    Key,
    RequestHash,
    Status,
    ContentType,
    Body,
    CreatedAt,
}

const RELAY: &str = "(SELECT current_setting('cloudhis.relay', true)) = 'on'";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(DeadLetters::Table)
                    .add_column(ColumnDef::new(DeadLetters::Attempts).integer().not_null().default(0))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(DeadLetters::Table)
                    .add_column(ColumnDef::new(DeadLetters::RedrivenAt).timestamp_with_time_zone().null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_outbox_published")
                    .table(Alias::new("outbox"))
                    .col(Alias::new("published_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_stat_referrals_parent")
                    .table(Alias::new("stat_referrals"))
                    .col(Alias::new("tenant_id"))
                    .col(Alias::new("parent_id"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(IdempotencyKeys::Table)
                    .col(uuid_col(IdempotencyKeys::TenantId))
                    .col(uuid_col(IdempotencyKeys::UserId))
                    .col(text_col(IdempotencyKeys::Key))
                    .col(text_col(IdempotencyKeys::RequestHash))
                    .col(ColumnDef::new(IdempotencyKeys::Status).integer().null())
                    .col(ColumnDef::new(IdempotencyKeys::ContentType).string().null())
                    .col(ColumnDef::new(IdempotencyKeys::Body).binary().null())
                    .col(ts_col(IdempotencyKeys::CreatedAt))
                    .primary_key(
                        Index::create()
                            .col(IdempotencyKeys::TenantId)
                            .col(IdempotencyKeys::UserId)
                            .col(IdempotencyKeys::Key),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_idempotency_created")
                    .table(IdempotencyKeys::Table)
                    .col(IdempotencyKeys::CreatedAt)
                    .to_owned(),
            )
            .await?;
        tenant_table(manager, "idempotency_keys").await?;
        if manager.get_database_backend() == DbBackend::Postgres {
            let mut sql = String::new();
            for table in ["dead_letters", "processed_events", "idempotency_keys"] {
                sql.push_str(&format!(
                    "ALTER POLICY tenant_isolation ON {table}
                       USING ({TENANT_MATCH} OR {RELAY}) WITH CHECK ({TENANT_MATCH} OR {RELAY});"
                ));
            }
            manager.get_connection().execute_unprepared(&sql).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() == DbBackend::Postgres {
            let mut sql = String::new();
            for table in ["dead_letters", "processed_events"] {
                sql.push_str(&format!(
                    "ALTER POLICY tenant_isolation ON {table} USING ({TENANT_MATCH}) WITH CHECK ({TENANT_MATCH});"
                ));
            }
            manager.get_connection().execute_unprepared(&sql).await?;
        }
        manager.drop_table(Table::drop().table(IdempotencyKeys::Table).to_owned()).await?;
        manager
            .drop_index(Index::drop().name("ix_stat_referrals_parent").table(Alias::new("stat_referrals")).to_owned())
            .await?;
        manager.drop_index(Index::drop().name("ix_outbox_published").table(Alias::new("outbox")).to_owned()).await?;
        manager
            .alter_table(Table::alter().table(DeadLetters::Table).drop_column(DeadLetters::RedrivenAt).to_owned())
            .await?;
        manager
            .alter_table(Table::alter().table(DeadLetters::Table).drop_column(DeadLetters::Attempts).to_owned())
            .await
    }
}
