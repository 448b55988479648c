//! The optional TOTP second factor of a staff account (administrators): the secret, encrypted
//! with the PII key like resident IDs; when it was confirmed (a secret not yet confirmed does not
//! guard logins); and the last step used, so a code works once.

use sea_orm_migration::prelude::*;

use crate::rls::{tenant_table, text_col, ts_col, uuid_col};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum UserTotp {
    Table,
    TenantId,
    UserId,
    SecretEnc,
    CreatedAt,
    EnabledAt,
    LastStep,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(UserTotp::Table)
                    .col(uuid_col(UserTotp::TenantId))
                    .col(uuid_col(UserTotp::UserId))
                    .col(text_col(UserTotp::SecretEnc))
                    .col(ts_col(UserTotp::CreatedAt))
                    .col(ColumnDef::new(UserTotp::EnabledAt).timestamp_with_time_zone().null())
                    .col(ColumnDef::new(UserTotp::LastStep).big_integer().null())
                    .primary_key(Index::create().col(UserTotp::TenantId).col(UserTotp::UserId))
                    .to_owned(),
            )
            .await?;
        tenant_table(manager, "user_totp").await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(UserTotp::Table).to_owned()).await
    }
}
