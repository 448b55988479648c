//! A referral's page lists the down-referrals made from it: referrals of a tenant by parent.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name("ix_referrals_parent")
                    .table(Alias::new("referrals"))
                    .col(Alias::new("tenant_id"))
                    .col(Alias::new("parent_id"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_index(Index::drop().name("ix_referrals_parent").table(Alias::new("referrals")).to_owned()).await
    }
}
