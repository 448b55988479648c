//! Unmasking with a purpose (显示完整证件号): whoever sees a person's identifiers masked may reveal
//! one, for a declared purpose and a written reason. Each reveal is a row here (never changed or
//! removed by the application: SELECT and INSERT only) next to its audit row, so who saw which
//! identifier of whom, when and why can be answered.

use sea_orm_migration::prelude::*;

use crate::rls::{enable_tenant_rls, grant_app, text_col, ts_col, uuid_col};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum IdentifierReveals {
    Table,
    TenantId,
    Id,
    UserId,
    InstitutionId,
    PersonId,
    Field,
    Purpose,
    Reason,
    RevealedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(IdentifierReveals::Table)
                    .col(uuid_col(IdentifierReveals::TenantId))
                    .col(uuid_col(IdentifierReveals::Id))
                    .col(uuid_col(IdentifierReveals::UserId))
                    .col(uuid_col(IdentifierReveals::InstitutionId))
                    .col(uuid_col(IdentifierReveals::PersonId))
                    .col(text_col(IdentifierReveals::Field))
                    .col(text_col(IdentifierReveals::Purpose))
                    .col(text_col(IdentifierReveals::Reason))
                    .col(ts_col(IdentifierReveals::RevealedAt))
                    .primary_key(Index::create().col(IdentifierReveals::TenantId).col(IdentifierReveals::Id))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_identifier_reveals_person")
                    .table(IdentifierReveals::Table)
                    .col(IdentifierReveals::TenantId)
                    .col(IdentifierReveals::PersonId)
                    .col(IdentifierReveals::RevealedAt)
                    .to_owned(),
            )
            .await?;
        grant_app(manager, "identifier_reveals", "SELECT, INSERT").await?;
        enable_tenant_rls(manager, "identifier_reveals").await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(IdentifierReveals::Table).to_owned()).await
    }
}
