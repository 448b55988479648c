//! Clinical: encounters (open, then closed and immutable), vital signs, ICD-10 diagnoses,
//! addenda to closed encounters, and allergies (community-wide, like the person).

use crate::rls::{tenant_table, uuid_col};
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Encounters {
    Table,
    TenantId,
    Id,
    InstitutionId,
    PersonId,
    DepartmentId,
    ClinicianId,
    Kind,
    Status,
    ChiefComplaint,
    Notes,
    OpenedAt,
    ClosedAt,
    ClosedBy,
}

#[derive(DeriveIden)]
enum VitalSigns {
    Table,
    TenantId,
    Id,
    EncounterId,
    InstitutionId,
    PersonId,
    RecordedAt,
    RecordedBy,
    Systolic,
    Diastolic,
    Pulse,
    Temperature,
    WeightKg,
    FastingGlucose,
}

#[derive(DeriveIden)]
enum Diagnoses {
    Table,
    TenantId,
    Id,
    EncounterId,
    InstitutionId,
    PersonId,
    Code,
    IsPrimary,
    CreatedAt,
    CreatedBy,
}

#[derive(DeriveIden)]
enum EncounterAddenda {
    Table,
    TenantId,
    Id,
    EncounterId,
    InstitutionId,
    Text,
    AuthorId,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Allergies {
    Table,
    TenantId,
    Id,
    PersonId,
    Allergen,
    Reaction,
    InstitutionId,
    RecordedBy,
    RecordedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Encounters::Table)
                    .col(uuid_col(Encounters::TenantId))
                    .col(ColumnDef::new(Encounters::Id).uuid().not_null())
                    .col(ColumnDef::new(Encounters::InstitutionId).uuid().not_null())
                    .col(ColumnDef::new(Encounters::PersonId).uuid().not_null())
                    .col(ColumnDef::new(Encounters::DepartmentId).uuid().null())
                    .col(ColumnDef::new(Encounters::ClinicianId).uuid().not_null())
                    .col(ColumnDef::new(Encounters::Kind).string().not_null())
                    .col(ColumnDef::new(Encounters::Status).string().not_null())
                    .col(ColumnDef::new(Encounters::ChiefComplaint).string().null())
                    .col(ColumnDef::new(Encounters::Notes).string().null())
                    .col(ColumnDef::new(Encounters::OpenedAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(Encounters::ClosedAt).timestamp_with_time_zone().null())
                    .col(ColumnDef::new(Encounters::ClosedBy).uuid().null())
                    .primary_key(Index::create().col(Encounters::TenantId).col(Encounters::Id))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_encounters_person")
                    .table(Encounters::Table)
                    .col(Encounters::TenantId)
                    .col(Encounters::PersonId)
                    .col(Encounters::OpenedAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_encounters_institution")
                    .table(Encounters::Table)
                    .col(Encounters::TenantId)
                    .col(Encounters::InstitutionId)
                    .col(Encounters::OpenedAt)
                    .to_owned(),
            )
            .await?;
        tenant_table(manager, "encounters").await?;
        manager
            .create_table(
                Table::create()
                    .table(VitalSigns::Table)
                    .col(uuid_col(VitalSigns::TenantId))
                    .col(ColumnDef::new(VitalSigns::Id).uuid().not_null())
                    .col(ColumnDef::new(VitalSigns::EncounterId).uuid().not_null())
                    .col(ColumnDef::new(VitalSigns::InstitutionId).uuid().not_null())
                    .col(ColumnDef::new(VitalSigns::PersonId).uuid().not_null())
                    .col(ColumnDef::new(VitalSigns::RecordedAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(VitalSigns::RecordedBy).uuid().not_null())
                    .col(ColumnDef::new(VitalSigns::Systolic).integer().null())
                    .col(ColumnDef::new(VitalSigns::Diastolic).integer().null())
                    .col(ColumnDef::new(VitalSigns::Pulse).integer().null())
                    .col(ColumnDef::new(VitalSigns::Temperature).double().null())
                    .col(ColumnDef::new(VitalSigns::WeightKg).double().null())
                    .col(ColumnDef::new(VitalSigns::FastingGlucose).double().null())
                    .primary_key(Index::create().col(VitalSigns::TenantId).col(VitalSigns::Id))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_vitals_encounter")
                    .table(VitalSigns::Table)
                    .col(VitalSigns::TenantId)
                    .col(VitalSigns::EncounterId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_vitals_person")
                    .table(VitalSigns::Table)
                    .col(VitalSigns::TenantId)
                    .col(VitalSigns::PersonId)
                    .col(VitalSigns::RecordedAt)
                    .to_owned(),
            )
            .await?;
        tenant_table(manager, "vital_signs").await?;
        manager
            .create_table(
                Table::create()
                    .table(Diagnoses::Table)
                    .col(uuid_col(Diagnoses::TenantId))
                    .col(ColumnDef::new(Diagnoses::Id).uuid().not_null())
                    .col(ColumnDef::new(Diagnoses::EncounterId).uuid().not_null())
                    .col(ColumnDef::new(Diagnoses::InstitutionId).uuid().not_null())
                    .col(ColumnDef::new(Diagnoses::PersonId).uuid().not_null())
                    .col(ColumnDef::new(Diagnoses::Code).string().not_null())
                    .col(ColumnDef::new(Diagnoses::IsPrimary).boolean().not_null())
                    .col(ColumnDef::new(Diagnoses::CreatedAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(Diagnoses::CreatedBy).uuid().not_null())
                    .primary_key(Index::create().col(Diagnoses::TenantId).col(Diagnoses::Id))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_diagnoses_encounter")
                    .table(Diagnoses::Table)
                    .col(Diagnoses::TenantId)
                    .col(Diagnoses::EncounterId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_diagnoses_person")
                    .table(Diagnoses::Table)
                    .col(Diagnoses::TenantId)
                    .col(Diagnoses::PersonId)
                    .to_owned(),
            )
            .await?;
        tenant_table(manager, "diagnoses").await?;
        manager
            .create_table(
                Table::create()
                    .table(EncounterAddenda::Table)
                    .col(uuid_col(EncounterAddenda::TenantId))
                    .col(ColumnDef::new(EncounterAddenda::Id).uuid().not_null())
                    .col(ColumnDef::new(EncounterAddenda::EncounterId).uuid().not_null())
                    .col(ColumnDef::new(EncounterAddenda::InstitutionId).uuid().not_null())
                    .col(ColumnDef::new(EncounterAddenda::Text).string().not_null())
                    .col(ColumnDef::new(EncounterAddenda::AuthorId).uuid().not_null())
                    .col(ColumnDef::new(EncounterAddenda::CreatedAt).timestamp_with_time_zone().not_null())
                    .primary_key(Index::create().col(EncounterAddenda::TenantId).col(EncounterAddenda::Id))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_addenda_encounter")
                    .table(EncounterAddenda::Table)
                    .col(EncounterAddenda::TenantId)
                    .col(EncounterAddenda::EncounterId)
                    .to_owned(),
            )
            .await?;
        tenant_table(manager, "encounter_addenda").await?;
        manager
            .create_table(
                Table::create()
                    .table(Allergies::Table)
                    .col(uuid_col(Allergies::TenantId))
                    .col(ColumnDef::new(Allergies::Id).uuid().not_null())
                    .col(ColumnDef::new(Allergies::PersonId).uuid().not_null())
                    .col(ColumnDef::new(Allergies::Allergen).string().not_null())
                    .col(ColumnDef::new(Allergies::Reaction).string().null())
                    .col(ColumnDef::new(Allergies::InstitutionId).uuid().not_null())
                    .col(ColumnDef::new(Allergies::RecordedBy).uuid().not_null())
                    .col(ColumnDef::new(Allergies::RecordedAt).timestamp_with_time_zone().not_null())
                    .primary_key(Index::create().col(Allergies::TenantId).col(Allergies::Id))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_allergies_person")
                    .table(Allergies::Table)
                    .col(Allergies::TenantId)
                    .col(Allergies::PersonId)
                    .to_owned(),
            )
            .await?;
        tenant_table(manager, "allergies").await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(Allergies::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(EncounterAddenda::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(Diagnoses::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(VitalSigns::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(Encounters::Table).to_owned()).await?;
        Ok(())
    }
}
