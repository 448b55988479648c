//! Billing: the fee schedule (from tenant files), one bill per encounter with its charges,
//! payments with per-institution receipt numbers, and refunds. Money is integer fen.

use crate::rls::{tenant_table, uuid_col};
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum FeeItems {
    Table,
    TenantId,
    Code,
    Name,
    NameEn,
    Category,
    PriceFen,
    InsuranceCategory,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Bills {
    Table,
    TenantId,
    Id,
    EncounterId,
    InstitutionId,
    PersonId,
    Status,
    TotalFen,
    InsuranceFen,
    SelfPayFen,
    PaidFen,
    RefundedFen,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Charges {
    Table,
    TenantId,
    Id,
    BillId,
    InstitutionId,
    Kind,
    ItemCode,
    Description,
    Quantity,
    UnitPriceFen,
    AmountFen,
    InsuranceCategory,
    InsuranceFen,
    SelfPayFen,
    SourceId,
    PostedAt,
}

#[derive(DeriveIden)]
enum Payments {
    Table,
    TenantId,
    Id,
    BillId,
    InstitutionId,
    Method,
    AmountFen,
    RefundedFen,
    ReceiptNo,
    PaidAt,
    CashierId,
}

#[derive(DeriveIden)]
enum Refunds {
    Table,
    TenantId,
    Id,
    BillId,
    PaymentId,
    InstitutionId,
    AmountFen,
    Reason,
    ReceiptNo,
    RefundedAt,
    CashierId,
}

#[derive(DeriveIden)]
enum ReceiptCounters {
    Table,
    TenantId,
    InstitutionId,
    NextValue,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(FeeItems::Table)
                    .col(uuid_col(FeeItems::TenantId))
                    .col(ColumnDef::new(FeeItems::Code).string().not_null())
                    .col(ColumnDef::new(FeeItems::Name).string().not_null())
                    .col(ColumnDef::new(FeeItems::NameEn).string().null())
                    .col(ColumnDef::new(FeeItems::Category).string().not_null())
                    .col(ColumnDef::new(FeeItems::PriceFen).big_integer().not_null())
                    .col(ColumnDef::new(FeeItems::InsuranceCategory).string().not_null())
                    .col(ColumnDef::new(FeeItems::UpdatedAt).timestamp_with_time_zone().not_null())
                    .primary_key(Index::create().col(FeeItems::TenantId).col(FeeItems::Code))
                    .to_owned(),
            )
            .await?;
        tenant_table(manager, "fee_items").await?;
        manager
            .create_table(
                Table::create()
                    .table(Bills::Table)
                    .col(uuid_col(Bills::TenantId))
                    .col(ColumnDef::new(Bills::Id).uuid().not_null())
                    .col(ColumnDef::new(Bills::EncounterId).uuid().not_null())
                    .col(ColumnDef::new(Bills::InstitutionId).uuid().not_null())
                    .col(ColumnDef::new(Bills::PersonId).uuid().not_null())
                    .col(ColumnDef::new(Bills::Status).string().not_null())
                    .col(ColumnDef::new(Bills::TotalFen).big_integer().not_null())
                    .col(ColumnDef::new(Bills::InsuranceFen).big_integer().not_null())
                    .col(ColumnDef::new(Bills::SelfPayFen).big_integer().not_null())
                    .col(ColumnDef::new(Bills::PaidFen).big_integer().not_null())
                    .col(ColumnDef::new(Bills::RefundedFen).big_integer().not_null())
                    .col(ColumnDef::new(Bills::CreatedAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(Bills::UpdatedAt).timestamp_with_time_zone().not_null())
                    .primary_key(Index::create().col(Bills::TenantId).col(Bills::Id))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_bills_encounter")
                    .table(Bills::Table)
                    .col(Bills::TenantId)
                    .col(Bills::EncounterId)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_bills_institution")
                    .table(Bills::Table)
                    .col(Bills::TenantId)
                    .col(Bills::InstitutionId)
                    .col(Bills::CreatedAt)
                    .to_owned(),
            )
            .await?;
        tenant_table(manager, "bills").await?;
        manager
            .create_table(
                Table::create()
                    .table(Charges::Table)
                    .col(uuid_col(Charges::TenantId))
                    .col(ColumnDef::new(Charges::Id).uuid().not_null())
                    .col(ColumnDef::new(Charges::BillId).uuid().not_null())
                    .col(ColumnDef::new(Charges::InstitutionId).uuid().not_null())
                    .col(ColumnDef::new(Charges::Kind).string().not_null())
                    .col(ColumnDef::new(Charges::ItemCode).string().not_null())
                    .col(ColumnDef::new(Charges::Description).string().not_null())
                    .col(ColumnDef::new(Charges::Quantity).big_integer().not_null())
                    .col(ColumnDef::new(Charges::UnitPriceFen).big_integer().not_null())
                    .col(ColumnDef::new(Charges::AmountFen).big_integer().not_null())
                    .col(ColumnDef::new(Charges::InsuranceCategory).string().not_null())
                    .col(ColumnDef::new(Charges::InsuranceFen).big_integer().not_null())
                    .col(ColumnDef::new(Charges::SelfPayFen).big_integer().not_null())
                    .col(ColumnDef::new(Charges::SourceId).uuid().null())
                    .col(ColumnDef::new(Charges::PostedAt).timestamp_with_time_zone().not_null())
                    .primary_key(Index::create().col(Charges::TenantId).col(Charges::Id))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_charges_bill")
                    .table(Charges::Table)
                    .col(Charges::TenantId)
                    .col(Charges::BillId)
                    .to_owned(),
            )
            .await?;
        tenant_table(manager, "charges").await?;
        manager
            .create_table(
                Table::create()
                    .table(Payments::Table)
                    .col(uuid_col(Payments::TenantId))
                    .col(ColumnDef::new(Payments::Id).uuid().not_null())
                    .col(ColumnDef::new(Payments::BillId).uuid().not_null())
                    .col(ColumnDef::new(Payments::InstitutionId).uuid().not_null())
                    .col(ColumnDef::new(Payments::Method).string().not_null())
                    .col(ColumnDef::new(Payments::AmountFen).big_integer().not_null())
                    .col(ColumnDef::new(Payments::RefundedFen).big_integer().not_null())
                    .col(ColumnDef::new(Payments::ReceiptNo).string().not_null())
                    .col(ColumnDef::new(Payments::PaidAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(Payments::CashierId).uuid().not_null())
                    .primary_key(Index::create().col(Payments::TenantId).col(Payments::Id))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_payments_bill")
                    .table(Payments::Table)
                    .col(Payments::TenantId)
                    .col(Payments::BillId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_payments_receipt")
                    .table(Payments::Table)
                    .col(Payments::TenantId)
                    .col(Payments::InstitutionId)
                    .col(Payments::ReceiptNo)
                    .unique()
                    .to_owned(),
            )
            .await?;
        tenant_table(manager, "payments").await?;
        manager
            .create_table(
                Table::create()
                    .table(Refunds::Table)
                    .col(uuid_col(Refunds::TenantId))
                    .col(ColumnDef::new(Refunds::Id).uuid().not_null())
                    .col(ColumnDef::new(Refunds::BillId).uuid().not_null())
                    .col(ColumnDef::new(Refunds::PaymentId).uuid().not_null())
                    .col(ColumnDef::new(Refunds::InstitutionId).uuid().not_null())
                    .col(ColumnDef::new(Refunds::AmountFen).big_integer().not_null())
                    .col(ColumnDef::new(Refunds::Reason).string().not_null())
                    .col(ColumnDef::new(Refunds::ReceiptNo).string().not_null())
                    .col(ColumnDef::new(Refunds::RefundedAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(Refunds::CashierId).uuid().not_null())
                    .primary_key(Index::create().col(Refunds::TenantId).col(Refunds::Id))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_refunds_payment")
                    .table(Refunds::Table)
                    .col(Refunds::TenantId)
                    .col(Refunds::PaymentId)
                    .to_owned(),
            )
            .await?;
        tenant_table(manager, "refunds").await?;
        manager
            .create_table(
                Table::create()
                    .table(ReceiptCounters::Table)
                    .col(uuid_col(ReceiptCounters::TenantId))
                    .col(ColumnDef::new(ReceiptCounters::InstitutionId).uuid().not_null())
                    .col(ColumnDef::new(ReceiptCounters::NextValue).big_integer().not_null())
                    .primary_key(Index::create().col(ReceiptCounters::TenantId).col(ReceiptCounters::InstitutionId))
                    .to_owned(),
            )
            .await?;
        tenant_table(manager, "receipt_counters").await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(ReceiptCounters::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(Refunds::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(Payments::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(Charges::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(Bills::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(FeeItems::Table).to_owned()).await?;
        Ok(())
    }
}
