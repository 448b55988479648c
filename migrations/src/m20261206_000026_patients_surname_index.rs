//! Searching by surname alone (张, 王, 李, 欧阳), as a clinic does when a patient gives only
//! that: persons of a tenant by surname pinyin, in the order the search lists them, so the first
//! page is read from the index without sorting every 张 of the county.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Persons {
    Table,
    TenantId,
    SurnamePinyin,
    NamePinyin,
    Id,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name("ix_persons_surname")
                    .table(Persons::Table)
                    .col(Persons::TenantId)
                    .col(Persons::SurnamePinyin)
                    .col(Persons::NamePinyin)
                    .col(Persons::Id)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_index(Index::drop().name("ix_persons_surname").table(Persons::Table).to_owned()).await
    }
}
