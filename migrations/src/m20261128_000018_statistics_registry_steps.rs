//! Registry figures as steps per day, institution and disease (`stat_registry`), so that the
//! figures as at a day are a sum over a few rows per institution instead of a pass over every
//! enrollment. Filled by the `statistics` consumer and by `cloudhis statistics rebuild`; until a
//! rebuild has run on an existing deployment it is empty and the registry figures read zero.

use crate::rls::{tenant_table, uuid_col};
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum StatRegistry {
    Table,
    TenantId,
    Day,
    InstitutionId,
    Disease,
    Registered,
    Managed,
    Standard,
    Controlled,
}

fn count(c: impl IntoIden) -> ColumnDef {
    ColumnDef::new(c).big_integer().not_null().to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(StatRegistry::Table)
                    .col(uuid_col(StatRegistry::TenantId))
                    .col(ColumnDef::new(StatRegistry::Day).date().not_null())
                    .col(uuid_col(StatRegistry::InstitutionId))
                    .col(ColumnDef::new(StatRegistry::Disease).string().not_null())
                    .col(count(StatRegistry::Registered))
                    .col(count(StatRegistry::Managed))
                    .col(count(StatRegistry::Standard))
                    .col(count(StatRegistry::Controlled))
                    .primary_key(
                        Index::create()
                            .col(StatRegistry::TenantId)
                            .col(StatRegistry::Day)
                            .col(StatRegistry::InstitutionId)
                            .col(StatRegistry::Disease),
                    )
                    .to_owned(),
            )
            .await?;
        tenant_table(manager, "stat_registry").await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(StatRegistry::Table).to_owned()).await
    }
}
