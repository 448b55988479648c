//! Identifiers a registration brought that the golden record does not take: a resident ID whose
//! sex or birth date disagrees with the person it was linked to (a family member's ID given by
//! mistake, or a wrong link), and an insurance number. They are kept, encrypted, on the
//! registration that carried them, so a wrong link cannot poison the person and nothing a clinic
//! typed is lost.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Registrations {
    Table,
    HeldResidentIdEnc,
    HeldInsuranceEnc,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite adds one column per statement.
        for column in [Registrations::HeldResidentIdEnc, Registrations::HeldInsuranceEnc] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Registrations::Table)
                        .add_column(ColumnDef::new(column).string().null())
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [Registrations::HeldResidentIdEnc, Registrations::HeldInsuranceEnc] {
            manager.alter_table(Table::alter().table(Registrations::Table).drop_column(column).to_owned()).await?;
        }
        Ok(())
    }
}
