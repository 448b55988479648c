//! An idempotency claim remembers that its request's own transaction committed
//! (`committed_at`, written in that transaction). A connection cut during `COMMIT`, or a crash
//! between the commit and keeping the answer, then cannot make a retry with the same key do the
//! work a second time: the retry hears that the work was done and its answer lost.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Alias::new("idempotency_keys"))
                    .add_column(ColumnDef::new(Alias::new("committed_at")).timestamp_with_time_zone().null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter().table(Alias::new("idempotency_keys")).drop_column(Alias::new("committed_at")).to_owned(),
            )
            .await
    }
}
