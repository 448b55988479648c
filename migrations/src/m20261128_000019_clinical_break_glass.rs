//! Break-glass access (紧急访问): a clinician who must read the record of a person not registered
//! at their institution declares it with a written reason; the declaration opens the community
//! summary of that person to that clinician, at that institution, for a few hours. Rows are never
//! changed or removed by the application (SELECT and INSERT only): they are the record of who
//! broke the glass, when and why, next to the audit trail's rows.

use sea_orm_migration::prelude::*;

use crate::rls::{enable_tenant_rls, grant_app, text_col, ts_col, uuid_col};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum BreakGlassAccess {
    Table,
    TenantId,
    Id,
    UserId,
    InstitutionId,
    PersonId,
    Reason,
    OpenedAt,
    ExpiresAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(BreakGlassAccess::Table)
                    .col(uuid_col(BreakGlassAccess::TenantId))
                    .col(uuid_col(BreakGlassAccess::Id))
                    .col(uuid_col(BreakGlassAccess::UserId))
                    .col(uuid_col(BreakGlassAccess::InstitutionId))
                    .col(uuid_col(BreakGlassAccess::PersonId))
                    .col(text_col(BreakGlassAccess::Reason))
                    .col(ts_col(BreakGlassAccess::OpenedAt))
                    .col(ts_col(BreakGlassAccess::ExpiresAt))
                    .primary_key(Index::create().col(BreakGlassAccess::TenantId).col(BreakGlassAccess::Id))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_break_glass_user_person")
                    .table(BreakGlassAccess::Table)
                    .col(BreakGlassAccess::TenantId)
                    .col(BreakGlassAccess::UserId)
                    .col(BreakGlassAccess::PersonId)
                    .col(BreakGlassAccess::ExpiresAt)
                    .to_owned(),
            )
            .await?;
        grant_app(manager, "break_glass_access", "SELECT, INSERT").await?;
        enable_tenant_rls(manager, "break_glass_access").await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(BreakGlassAccess::Table).to_owned()).await
    }
}
