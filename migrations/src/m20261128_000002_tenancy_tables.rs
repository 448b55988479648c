//! Tenancy: tenants (the registry, not tenant-scoped), institutions (a tree) and departments.

use crate::rls::{grant_app, tenant_table, text_col, ts_col, uuid_col};
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Tenants {
    Table,
    Id,
    Code,
    Name,
    NameEn,
    Settings,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Institutions {
    Table,
    TenantId,
    Id,
    Code,
    Name,
    NameEn,
    Kind,
    DivisionCode,
    ParentId,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Departments {
    Table,
    TenantId,
    Id,
    InstitutionId,
    Code,
    Name,
    NameEn,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Tenants::Table)
                    .col(uuid_col(Tenants::Id).primary_key())
                    .col(text_col(Tenants::Code).unique_key())
                    .col(text_col(Tenants::Name))
                    .col(ColumnDef::new(Tenants::NameEn).string().null())
                    .col(ColumnDef::new(Tenants::Settings).json_binary().not_null())
                    .col(ts_col(Tenants::CreatedAt))
                    .col(ts_col(Tenants::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        // The registry is read before a tenant is known (login by tenant code), so it has no RLS.
        grant_app(manager, "tenants", "SELECT, INSERT, UPDATE").await?;

        manager
            .create_table(
                Table::create()
                    .table(Institutions::Table)
                    .col(uuid_col(Institutions::TenantId))
                    .col(uuid_col(Institutions::Id))
                    .col(text_col(Institutions::Code))
                    .col(text_col(Institutions::Name))
                    .col(ColumnDef::new(Institutions::NameEn).string().null())
                    .col(text_col(Institutions::Kind))
                    .col(text_col(Institutions::DivisionCode))
                    .col(ColumnDef::new(Institutions::ParentId).uuid().null())
                    .col(ts_col(Institutions::CreatedAt))
                    .col(ts_col(Institutions::UpdatedAt))
                    .primary_key(Index::create().col(Institutions::TenantId).col(Institutions::Id))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Institutions::Table, Institutions::TenantId)
                            .to(Tenants::Table, Tenants::Id),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(Institutions::Table, (Institutions::TenantId, Institutions::ParentId))
                            .to(Institutions::Table, (Institutions::TenantId, Institutions::Id)),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_institutions_code")
                    .table(Institutions::Table)
                    .col(Institutions::TenantId)
                    .col(Institutions::Code)
                    .unique()
                    .to_owned(),
            )
            .await?;
        tenant_table(manager, "institutions").await?;

        manager
            .create_table(
                Table::create()
                    .table(Departments::Table)
                    .col(uuid_col(Departments::TenantId))
                    .col(uuid_col(Departments::Id))
                    .col(uuid_col(Departments::InstitutionId))
                    .col(text_col(Departments::Code))
                    .col(text_col(Departments::Name))
                    .col(ColumnDef::new(Departments::NameEn).string().null())
                    .col(ts_col(Departments::CreatedAt))
                    .primary_key(Index::create().col(Departments::TenantId).col(Departments::Id))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Departments::Table, (Departments::TenantId, Departments::InstitutionId))
                            .to(Institutions::Table, (Institutions::TenantId, Institutions::Id)),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_departments_code")
                    .table(Departments::Table)
                    .col(Departments::TenantId)
                    .col(Departments::InstitutionId)
                    .col(Departments::Code)
                    .unique()
                    .to_owned(),
            )
            .await?;
        tenant_table(manager, "departments").await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(Departments::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(Institutions::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(Tenants::Table).to_owned()).await
    }
}
