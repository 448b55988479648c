//! On SQLite an event's number is the highest so far plus one (`events::insert`: one writer at a
//! time), read inside the transaction that writes the event. Only the partial index of pending
//! events covered `seq`, so `MAX(seq)` read the whole outbox, which keeps its published events:
//! 0.25 ms at 1,000 registrations, 1.5 ms at 6,000, growing with every event, inside the one
//! write lock every request and the relay wait for (registration on the embedded default slowed
//! from 11 to 25 ms as a tenant grew to 20,000 persons). With an index on `seq` it is one probe.
//! PostgreSQL numbers events from a sequence and needs none.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Sqlite {
            return Ok(());
        }
        manager.get_connection().execute_unprepared("CREATE INDEX ix_outbox_seq ON outbox (seq)").await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Sqlite {
            return Ok(());
        }
        manager.get_connection().execute_unprepared("DROP INDEX ix_outbox_seq").await?;
        Ok(())
    }
}
