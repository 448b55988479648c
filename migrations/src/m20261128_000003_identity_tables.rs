//! Identity: staff users (per tenant) and their role bindings per institution.

use crate::rls::{tenant_table, text_col, ts_col, uuid_col};
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    TenantId,
    Id,
    Username,
    DisplayName,
    PasswordHash,
    Active,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum RoleBindings {
    Table,
    TenantId,
    UserId,
    InstitutionId,
    Role,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Institutions {
    Table,
    TenantId,
    Id,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Users::Table)
                    .col(uuid_col(Users::TenantId))
                    .col(uuid_col(Users::Id))
                    .col(text_col(Users::Username))
                    .col(text_col(Users::DisplayName))
                    .col(text_col(Users::PasswordHash))
                    .col(ColumnDef::new(Users::Active).boolean().not_null())
                    .col(ts_col(Users::CreatedAt))
                    .col(ts_col(Users::UpdatedAt))
                    .primary_key(Index::create().col(Users::TenantId).col(Users::Id))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_users_username")
                    .table(Users::Table)
                    .col(Users::TenantId)
                    .col(Users::Username)
                    .unique()
                    .to_owned(),
            )
            .await?;
        tenant_table(manager, "users").await?;

        manager
            .create_table(
                Table::create()
                    .table(RoleBindings::Table)
                    .col(uuid_col(RoleBindings::TenantId))
                    .col(uuid_col(RoleBindings::UserId))
                    .col(uuid_col(RoleBindings::InstitutionId))
                    .col(text_col(RoleBindings::Role))
                    .col(ts_col(RoleBindings::CreatedAt))
                    .primary_key(
                        Index::create()
                            .col(RoleBindings::TenantId)
                            .col(RoleBindings::UserId)
                            .col(RoleBindings::InstitutionId)
                            .col(RoleBindings::Role),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(RoleBindings::Table, (RoleBindings::TenantId, RoleBindings::UserId))
                            .to(Users::Table, (Users::TenantId, Users::Id)),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(RoleBindings::Table, (RoleBindings::TenantId, RoleBindings::InstitutionId))
                            .to(Institutions::Table, (Institutions::TenantId, Institutions::Id)),
                    )
                    .to_owned(),
            )
            .await?;
        tenant_table(manager, "role_bindings").await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(RoleBindings::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(Users::Table).to_owned()).await
    }
}
