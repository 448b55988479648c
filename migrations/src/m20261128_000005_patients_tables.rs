//! Patients (the MPI): persons (golden records, shared by the community), registrations (a
//! person's record at one institution, with its MRN), MRN counters, merges and the review queue
//! of probable duplicates. Identifiers are stored encrypted with a keyed hash beside them.

use crate::rls::{tenant_table, text_col, ts_col, uuid_col};
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Persons {
    Table,
    TenantId,
    Id,
    Name,
    NamePinyin,
    NameInitials,
    SurnamePinyin,
    Sex,
    BirthDate,
    BirthYear,
    /// MMDD of a full birth date: with the name, finds a record whose year digits were swapped.
    BirthMd,
    ResidentIdEnc,
    ResidentIdHash,
    ResidentIdValid,
    PhoneEnc,
    PhoneHash,
    PhoneTailHash,
    InsuranceEnc,
    InsuranceHash,
    DivisionCode,
    Status,
    ReplacedBy,
    CreatedInstitution,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Registrations {
    Table,
    TenantId,
    Id,
    PersonId,
    InstitutionId,
    Mrn,
    RegisteredAt,
    RegisteredBy,
}

#[derive(DeriveIden)]
enum MrnCounters {
    Table,
    TenantId,
    InstitutionId,
    NextValue,
}

#[derive(DeriveIden)]
enum PersonMerges {
    Table,
    TenantId,
    Id,
    SurvivorId,
    MergedId,
    Reason,
    MergedBy,
    MergedAt,
    MovedRegistrations,
    MergedSnapshot,
    UnmergedAt,
    UnmergedBy,
    UnmergeReason,
}

#[derive(DeriveIden)]
enum DuplicateCandidates {
    Table,
    TenantId,
    Id,
    PersonA,
    PersonB,
    Score,
    Status,
    DetectedAt,
    ResolvedAt,
    ResolvedBy,
    Reason,
}

#[derive(DeriveIden)]
enum Institutions {
    Table,
    TenantId,
    Id,
}

fn idx(name: &str, table: impl IntoIden, cols: &[&'static str]) -> IndexCreateStatement {
    let mut i = Index::create();
    i.name(name).table(table);
    for c in cols {
        i.col(Alias::new(*c));
    }
    i.to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Persons::Table)
                    .col(uuid_col(Persons::TenantId))
                    .col(uuid_col(Persons::Id))
                    .col(text_col(Persons::Name))
                    .col(text_col(Persons::NamePinyin))
                    .col(text_col(Persons::NameInitials))
                    .col(text_col(Persons::SurnamePinyin))
                    .col(ColumnDef::new(Persons::Sex).string().null())
                    .col(ColumnDef::new(Persons::BirthDate).date().null())
                    .col(ColumnDef::new(Persons::BirthYear).integer().null())
                    .col(ColumnDef::new(Persons::BirthMd).string().null())
                    .col(ColumnDef::new(Persons::ResidentIdEnc).string().null())
                    .col(ColumnDef::new(Persons::ResidentIdHash).string().null())
                    .col(ColumnDef::new(Persons::ResidentIdValid).boolean().not_null())
                    .col(ColumnDef::new(Persons::PhoneEnc).string().null())
                    .col(ColumnDef::new(Persons::PhoneHash).string().null())
                    .col(ColumnDef::new(Persons::PhoneTailHash).string().null())
                    .col(ColumnDef::new(Persons::InsuranceEnc).string().null())
                    .col(ColumnDef::new(Persons::InsuranceHash).string().null())
                    .col(ColumnDef::new(Persons::DivisionCode).string().null())
                    .col(text_col(Persons::Status))
                    .col(ColumnDef::new(Persons::ReplacedBy).uuid().null())
                    .col(uuid_col(Persons::CreatedInstitution))
                    .col(ts_col(Persons::CreatedAt))
                    .col(ts_col(Persons::UpdatedAt))
                    .primary_key(Index::create().col(Persons::TenantId).col(Persons::Id))
                    .to_owned(),
            )
            .await?;
        // Blocking keys: each lookup touches a few rows through one of these.
        for (name, cols) in [
            ("ix_persons_rid", &["tenant_id", "resident_id_hash"][..]),
            ("ix_persons_birth", &["tenant_id", "birth_date"][..]),
            ("ix_persons_pinyin_year", &["tenant_id", "name_pinyin", "birth_year"][..]),
            ("ix_persons_initials_year", &["tenant_id", "name_initials", "birth_year"][..]),
            ("ix_persons_pinyin_md", &["tenant_id", "name_pinyin", "birth_md"][..]),
            ("ix_persons_pinyin_division", &["tenant_id", "name_pinyin", "division_code"][..]),
            ("ix_persons_phone_tail", &["tenant_id", "phone_tail_hash"][..]),
            ("ix_persons_phone", &["tenant_id", "phone_hash"][..]),
            ("ix_persons_insurance", &["tenant_id", "insurance_hash"][..]),
            ("ix_persons_replaced_by", &["tenant_id", "replaced_by"][..]),
        ] {
            manager.create_index(idx(name, Persons::Table, cols)).await?;
        }
        // One active person per valid resident ID: two clinics registering the same new person at
        // once cannot create two.
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE UNIQUE INDEX ux_persons_active_rid ON persons (tenant_id, resident_id_hash)
                 WHERE status = 'active' AND resident_id_valid",
            )
            .await?;
        tenant_table(manager, "persons").await?;

        manager
            .create_table(
                Table::create()
                    .table(Registrations::Table)
                    .col(uuid_col(Registrations::TenantId))
                    .col(uuid_col(Registrations::Id))
                    .col(uuid_col(Registrations::PersonId))
                    .col(uuid_col(Registrations::InstitutionId))
                    .col(text_col(Registrations::Mrn))
                    .col(ts_col(Registrations::RegisteredAt))
                    .col(ColumnDef::new(Registrations::RegisteredBy).uuid().null())
                    .primary_key(Index::create().col(Registrations::TenantId).col(Registrations::Id))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Registrations::Table, (Registrations::TenantId, Registrations::PersonId))
                            .to(Persons::Table, (Persons::TenantId, Persons::Id)),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(Registrations::Table, (Registrations::TenantId, Registrations::InstitutionId))
                            .to(Institutions::Table, (Institutions::TenantId, Institutions::Id)),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                idx("ux_registrations_mrn", Registrations::Table, &["tenant_id", "institution_id", "mrn"])
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager.create_index(idx("ix_registrations_person", Registrations::Table, &["tenant_id", "person_id"])).await?;
        // One registration per person and institution: a double-clicked registration on a slow
        // link finds the first instead of making a second MRN.
        manager
            .create_index(
                idx(
                    "ux_registrations_inst_person",
                    Registrations::Table,
                    &["tenant_id", "institution_id", "person_id"],
                )
                .unique()
                .to_owned(),
            )
            .await?;
        tenant_table(manager, "registrations").await?;

        manager
            .create_table(
                Table::create()
                    .table(MrnCounters::Table)
                    .col(uuid_col(MrnCounters::TenantId))
                    .col(uuid_col(MrnCounters::InstitutionId))
                    .col(ColumnDef::new(MrnCounters::NextValue).big_integer().not_null())
                    .primary_key(Index::create().col(MrnCounters::TenantId).col(MrnCounters::InstitutionId))
                    .to_owned(),
            )
            .await?;
        tenant_table(manager, "mrn_counters").await?;

        manager
            .create_table(
                Table::create()
                    .table(PersonMerges::Table)
                    .col(uuid_col(PersonMerges::TenantId))
                    .col(uuid_col(PersonMerges::Id))
                    .col(uuid_col(PersonMerges::SurvivorId))
                    .col(uuid_col(PersonMerges::MergedId))
                    .col(text_col(PersonMerges::Reason))
                    .col(uuid_col(PersonMerges::MergedBy))
                    .col(ts_col(PersonMerges::MergedAt))
                    .col(ColumnDef::new(PersonMerges::MovedRegistrations).json_binary().not_null())
                    .col(ColumnDef::new(PersonMerges::MergedSnapshot).json_binary().not_null())
                    .col(ColumnDef::new(PersonMerges::UnmergedAt).timestamp_with_time_zone().null())
                    .col(ColumnDef::new(PersonMerges::UnmergedBy).uuid().null())
                    .col(ColumnDef::new(PersonMerges::UnmergeReason).string().null())
                    .primary_key(Index::create().col(PersonMerges::TenantId).col(PersonMerges::Id))
                    .to_owned(),
            )
            .await?;
        manager.create_index(idx("ix_person_merges_merged", PersonMerges::Table, &["tenant_id", "merged_id"])).await?;
        tenant_table(manager, "person_merges").await?;

        manager
            .create_table(
                Table::create()
                    .table(DuplicateCandidates::Table)
                    .col(uuid_col(DuplicateCandidates::TenantId))
                    .col(uuid_col(DuplicateCandidates::Id))
                    .col(uuid_col(DuplicateCandidates::PersonA))
                    .col(uuid_col(DuplicateCandidates::PersonB))
                    .col(ColumnDef::new(DuplicateCandidates::Score).double().not_null())
                    .col(text_col(DuplicateCandidates::Status))
                    .col(ts_col(DuplicateCandidates::DetectedAt))
                    .col(ColumnDef::new(DuplicateCandidates::ResolvedAt).timestamp_with_time_zone().null())
                    .col(ColumnDef::new(DuplicateCandidates::ResolvedBy).uuid().null())
                    .col(ColumnDef::new(DuplicateCandidates::Reason).string().null())
                    .primary_key(Index::create().col(DuplicateCandidates::TenantId).col(DuplicateCandidates::Id))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                idx("ux_duplicate_pair", DuplicateCandidates::Table, &["tenant_id", "person_a", "person_b"])
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(idx("ix_duplicate_status", DuplicateCandidates::Table, &["tenant_id", "status", "score"]))
            .await?;
        tenant_table(manager, "duplicate_candidates").await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for t in ["duplicate_candidates", "person_merges", "mrn_counters", "registrations", "persons"] {
            manager.drop_table(Table::drop().table(Alias::new(t)).to_owned()).await?;
        }
        Ok(())
    }
}
