//! The transactional outbox: an event row commits with the change it records. The relay reads
//! across tenants, so the policy also admits a transaction that declares itself the relay
//! (`cloudhis.relay = on`); ordinary code, which never sets that, still sees only its tenant.

use crate::rls::{grant_app, text_col, ts_col, uuid_col};
use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Outbox {
    Table,
    TenantId,
    Id,
    EventType,
    Version,
    AggregateId,
    ActorUserId,
    OccurredAt,
    Payload,
    PublishedAt,
    Attempts,
    LastError,
    Seq,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Outbox::Table)
                    .col(uuid_col(Outbox::TenantId))
                    .col(uuid_col(Outbox::Id))
                    .col(text_col(Outbox::EventType))
                    .col(ColumnDef::new(Outbox::Version).integer().not_null())
                    .col(uuid_col(Outbox::AggregateId))
                    .col(ColumnDef::new(Outbox::ActorUserId).uuid().null())
                    .col(ts_col(Outbox::OccurredAt))
                    .col(ColumnDef::new(Outbox::Payload).json_binary().not_null())
                    .col(ColumnDef::new(Outbox::PublishedAt).timestamp_with_time_zone().null())
                    .col(ColumnDef::new(Outbox::Attempts).integer().not_null().default(0))
                    .col(ColumnDef::new(Outbox::LastError).string().null())
                    // Publication order. PostgreSQL takes it from a sequence at insert (the
                    // events of one aggregate are written by transactions that lock it, so they
                    // get increasing values); SQLite has one writer and sets max + 1.
                    .col(ColumnDef::new(Outbox::Seq).big_integer().null())
                    .primary_key(Index::create().col(Outbox::TenantId).col(Outbox::Id))
                    .to_owned(),
            )
            .await?;
        manager
            .get_connection()
            .execute_unprepared("CREATE INDEX ix_outbox_pending ON outbox (seq) WHERE published_at IS NULL")
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_outbox_aggregate")
                    .table(Outbox::Table)
                    .col(Outbox::TenantId)
                    .col(Outbox::AggregateId)
                    .to_owned(),
            )
            .await?;
        grant_app(manager, "outbox", "SELECT, INSERT, UPDATE, DELETE").await?;
        if manager.get_database_backend() == DbBackend::Postgres {
            manager
                .get_connection()
                .execute_unprepared(
                    "CREATE SEQUENCE outbox_seq;
                     ALTER TABLE outbox ALTER COLUMN seq SET DEFAULT nextval('outbox_seq');
                     ALTER TABLE outbox ALTER COLUMN seq SET NOT NULL;
                     GRANT USAGE ON SEQUENCE outbox_seq TO cloudhis_app;
                     ALTER TABLE outbox ENABLE ROW LEVEL SECURITY;
                     ALTER TABLE outbox FORCE ROW LEVEL SECURITY;
                     CREATE POLICY tenant_isolation ON outbox
                       USING (tenant_id = NULLIF(current_setting('cloudhis.tenant_id', true), '')::uuid
                              OR current_setting('cloudhis.relay', true) = 'on')
                       WITH CHECK (tenant_id = NULLIF(current_setting('cloudhis.tenant_id', true), '')::uuid
                              OR current_setting('cloudhis.relay', true) = 'on');",
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(Outbox::Table).to_owned()).await
    }
}
