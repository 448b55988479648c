//! Pharmacy: the community formulary (from tenant files), what each institution stocks, stock
//! batches (never negative: a CHECK backs the service's conditional updates), the movement
//! ledger, prescriptions with their lines, and transfers between institutions.

use crate::rls::{tenant_table, uuid_col};
use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Drugs {
    Table,
    TenantId,
    Code,
    Name,
    NameEn,
    Form,
    Strength,
    Unit,
    PriceFen,
    InsuranceCategory,
    AllergenClass,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum InstitutionDrugs {
    Table,
    TenantId,
    InstitutionId,
    DrugCode,
}

#[derive(DeriveIden)]
enum StockBatches {
    Table,
    TenantId,
    Id,
    InstitutionId,
    DrugCode,
    Lot,
    Expiry,
    Quantity,
    ReceivedAt,
}

#[derive(DeriveIden)]
enum StockMovements {
    Table,
    TenantId,
    Id,
    InstitutionId,
    DrugCode,
    BatchId,
    Delta,
    Kind,
    Reason,
    ReferenceId,
    ActorId,
    OccurredAt,
}

#[derive(DeriveIden)]
enum Prescriptions {
    Table,
    TenantId,
    Id,
    EncounterId,
    InstitutionId,
    PersonId,
    PrescriberId,
    Chronic,
    Status,
    CreatedAt,
    DispensedAt,
    DispensedBy,
}

#[derive(DeriveIden)]
enum PrescriptionLines {
    Table,
    TenantId,
    Id,
    PrescriptionId,
    LineNo,
    DrugCode,
    Dose,
    DoseUnit,
    Frequency,
    Days,
    Quantity,
    UnitPriceFen,
    InsuranceCategory,
}

#[derive(DeriveIden)]
enum StockTransfers {
    Table,
    TenantId,
    Id,
    FromInstitution,
    ToInstitution,
    DrugCode,
    Quantity,
    ValueFen,
    ActorId,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Drugs::Table)
                    .col(uuid_col(Drugs::TenantId))
                    .col(ColumnDef::new(Drugs::Code).string().not_null())
                    .col(ColumnDef::new(Drugs::Name).string().not_null())
                    .col(ColumnDef::new(Drugs::NameEn).string().null())
                    .col(ColumnDef::new(Drugs::Form).string().not_null())
                    .col(ColumnDef::new(Drugs::Strength).string().not_null())
                    .col(ColumnDef::new(Drugs::Unit).string().not_null())
                    .col(ColumnDef::new(Drugs::PriceFen).big_integer().not_null())
                    .col(ColumnDef::new(Drugs::InsuranceCategory).string().not_null())
                    .col(ColumnDef::new(Drugs::AllergenClass).string().null())
                    .col(ColumnDef::new(Drugs::UpdatedAt).timestamp_with_time_zone().not_null())
                    .primary_key(Index::create().col(Drugs::TenantId).col(Drugs::Code))
                    .to_owned(),
            )
            .await?;
        tenant_table(manager, "drugs").await?;
        manager
            .create_table(
                Table::create()
                    .table(InstitutionDrugs::Table)
                    .col(uuid_col(InstitutionDrugs::TenantId))
                    .col(ColumnDef::new(InstitutionDrugs::InstitutionId).uuid().not_null())
                    .col(ColumnDef::new(InstitutionDrugs::DrugCode).string().not_null())
                    .primary_key(
                        Index::create()
                            .col(InstitutionDrugs::TenantId)
                            .col(InstitutionDrugs::InstitutionId)
                            .col(InstitutionDrugs::DrugCode),
                    )
                    .to_owned(),
            )
            .await?;
        tenant_table(manager, "institution_drugs").await?;
        manager
            .create_table(
                Table::create()
                    .table(StockBatches::Table)
                    .col(uuid_col(StockBatches::TenantId))
                    .col(ColumnDef::new(StockBatches::Id).uuid().not_null())
                    .col(ColumnDef::new(StockBatches::InstitutionId).uuid().not_null())
                    .col(ColumnDef::new(StockBatches::DrugCode).string().not_null())
                    .col(ColumnDef::new(StockBatches::Lot).string().not_null())
                    .col(ColumnDef::new(StockBatches::Expiry).date().not_null())
                    .col(ColumnDef::new(StockBatches::Quantity).big_integer().not_null())
                    .col(ColumnDef::new(StockBatches::ReceivedAt).timestamp_with_time_zone().not_null())
                    .primary_key(Index::create().col(StockBatches::TenantId).col(StockBatches::Id))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_stock_batch")
                    .table(StockBatches::Table)
                    .col(StockBatches::TenantId)
                    .col(StockBatches::InstitutionId)
                    .col(StockBatches::DrugCode)
                    .col(StockBatches::Lot)
                    .col(StockBatches::Expiry)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_stock_fefo")
                    .table(StockBatches::Table)
                    .col(StockBatches::TenantId)
                    .col(StockBatches::InstitutionId)
                    .col(StockBatches::DrugCode)
                    .col(StockBatches::Expiry)
                    .to_owned(),
            )
            .await?;
        tenant_table(manager, "stock_batches").await?;
        manager
            .create_table(
                Table::create()
                    .table(StockMovements::Table)
                    .col(uuid_col(StockMovements::TenantId))
                    .col(ColumnDef::new(StockMovements::Id).uuid().not_null())
                    .col(ColumnDef::new(StockMovements::InstitutionId).uuid().not_null())
                    .col(ColumnDef::new(StockMovements::DrugCode).string().not_null())
                    .col(ColumnDef::new(StockMovements::BatchId).uuid().not_null())
                    .col(ColumnDef::new(StockMovements::Delta).big_integer().not_null())
                    .col(ColumnDef::new(StockMovements::Kind).string().not_null())
                    .col(ColumnDef::new(StockMovements::Reason).string().null())
                    .col(ColumnDef::new(StockMovements::ReferenceId).uuid().null())
                    .col(ColumnDef::new(StockMovements::ActorId).uuid().null())
                    .col(ColumnDef::new(StockMovements::OccurredAt).timestamp_with_time_zone().not_null())
                    .primary_key(Index::create().col(StockMovements::TenantId).col(StockMovements::Id))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_movements_batch")
                    .table(StockMovements::Table)
                    .col(StockMovements::TenantId)
                    .col(StockMovements::BatchId)
                    .to_owned(),
            )
            .await?;
        tenant_table(manager, "stock_movements").await?;
        manager
            .create_table(
                Table::create()
                    .table(Prescriptions::Table)
                    .col(uuid_col(Prescriptions::TenantId))
                    .col(ColumnDef::new(Prescriptions::Id).uuid().not_null())
                    .col(ColumnDef::new(Prescriptions::EncounterId).uuid().not_null())
                    .col(ColumnDef::new(Prescriptions::InstitutionId).uuid().not_null())
                    .col(ColumnDef::new(Prescriptions::PersonId).uuid().not_null())
                    .col(ColumnDef::new(Prescriptions::PrescriberId).uuid().not_null())
                    .col(ColumnDef::new(Prescriptions::Chronic).boolean().not_null())
                    .col(ColumnDef::new(Prescriptions::Status).string().not_null())
                    .col(ColumnDef::new(Prescriptions::CreatedAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(Prescriptions::DispensedAt).timestamp_with_time_zone().null())
                    .col(ColumnDef::new(Prescriptions::DispensedBy).uuid().null())
                    .primary_key(Index::create().col(Prescriptions::TenantId).col(Prescriptions::Id))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_prescriptions_encounter")
                    .table(Prescriptions::Table)
                    .col(Prescriptions::TenantId)
                    .col(Prescriptions::EncounterId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_prescriptions_person")
                    .table(Prescriptions::Table)
                    .col(Prescriptions::TenantId)
                    .col(Prescriptions::PersonId)
                    .col(Prescriptions::CreatedAt)
                    .to_owned(),
            )
            .await?;
        tenant_table(manager, "prescriptions").await?;
        manager
            .create_table(
                Table::create()
                    .table(PrescriptionLines::Table)
                    .col(uuid_col(PrescriptionLines::TenantId))
                    .col(ColumnDef::new(PrescriptionLines::Id).uuid().not_null())
                    .col(ColumnDef::new(PrescriptionLines::PrescriptionId).uuid().not_null())
                    .col(ColumnDef::new(PrescriptionLines::LineNo).integer().not_null())
                    .col(ColumnDef::new(PrescriptionLines::DrugCode).string().not_null())
                    .col(ColumnDef::new(PrescriptionLines::Dose).double().not_null())
                    .col(ColumnDef::new(PrescriptionLines::DoseUnit).string().not_null())
                    .col(ColumnDef::new(PrescriptionLines::Frequency).string().not_null())
                    .col(ColumnDef::new(PrescriptionLines::Days).integer().not_null())
                    .col(ColumnDef::new(PrescriptionLines::Quantity).big_integer().not_null())
                    .col(ColumnDef::new(PrescriptionLines::UnitPriceFen).big_integer().not_null())
                    .col(ColumnDef::new(PrescriptionLines::InsuranceCategory).string().not_null())
                    .primary_key(Index::create().col(PrescriptionLines::TenantId).col(PrescriptionLines::Id))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_lines_prescription")
                    .table(PrescriptionLines::Table)
                    .col(PrescriptionLines::TenantId)
                    .col(PrescriptionLines::PrescriptionId)
                    .to_owned(),
            )
            .await?;
        tenant_table(manager, "prescription_lines").await?;
        manager
            .create_table(
                Table::create()
                    .table(StockTransfers::Table)
                    .col(uuid_col(StockTransfers::TenantId))
                    .col(ColumnDef::new(StockTransfers::Id).uuid().not_null())
                    .col(ColumnDef::new(StockTransfers::FromInstitution).uuid().not_null())
                    .col(ColumnDef::new(StockTransfers::ToInstitution).uuid().not_null())
                    .col(ColumnDef::new(StockTransfers::DrugCode).string().not_null())
                    .col(ColumnDef::new(StockTransfers::Quantity).big_integer().not_null())
                    .col(ColumnDef::new(StockTransfers::ValueFen).big_integer().not_null())
                    .col(ColumnDef::new(StockTransfers::ActorId).uuid().not_null())
                    .col(ColumnDef::new(StockTransfers::CreatedAt).timestamp_with_time_zone().not_null())
                    .primary_key(Index::create().col(StockTransfers::TenantId).col(StockTransfers::Id))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_transfers_from")
                    .table(StockTransfers::Table)
                    .col(StockTransfers::TenantId)
                    .col(StockTransfers::FromInstitution)
                    .to_owned(),
            )
            .await?;
        tenant_table(manager, "stock_transfers").await?;
        // Stock never goes negative, whatever the code does (SQLite cannot add a CHECK later,
        // so it is enforced there by a trigger).
        match manager.get_database_backend() {
            DbBackend::Postgres => {
                manager
                    .get_connection()
                    .execute_unprepared(
                        "ALTER TABLE stock_batches ADD CONSTRAINT stock_nonnegative CHECK (quantity >= 0)",
                    )
                    .await?;
            }
            _ => {
                manager
                    .get_connection()
                    .execute_unprepared(
                        "CREATE TRIGGER stock_nonnegative_insert BEFORE INSERT ON stock_batches WHEN NEW.quantity < 0
                           BEGIN SELECT RAISE(ABORT, 'stock_nonnegative'); END;
                         CREATE TRIGGER stock_nonnegative_update BEFORE UPDATE ON stock_batches WHEN NEW.quantity < 0
                           BEGIN SELECT RAISE(ABORT, 'stock_nonnegative'); END;",
                    )
                    .await?;
            }
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(StockTransfers::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(PrescriptionLines::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(Prescriptions::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(StockMovements::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(StockBatches::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(InstitutionDrugs::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(Drugs::Table).to_owned()).await?;
        Ok(())
    }
}
