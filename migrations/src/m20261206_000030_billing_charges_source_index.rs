//! A prescription's charges are found by their source (the prescription item): indexed, so
//! dispensing no longer scans every charge of the tenant (16.7 ms per lookup after 20,000 visits
//! on the bench, growing with every visit).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name("ix_charges_source")
                    .table(Alias::new("charges"))
                    .col(Alias::new("tenant_id"))
                    .col(Alias::new("source_id"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_index(Index::drop().name("ix_charges_source").table(Alias::new("charges")).to_owned()).await
    }
}
