//! Chronic-disease management: registry enrollments (hypertension, type 2 diabetes) with their
//! follow-up plan and state, the follow-up visits, and the enrollment suggestions that closed
//! encounters with those diagnoses raise.

use crate::rls::{tenant_table, uuid_col};
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum ChronicEnrollments {
    Table,
    TenantId,
    Id,
    PersonId,
    Disease,
    DiagnosisCode,
    DiagnosedOn,
    InstitutionId,
    DoctorId,
    EnrolledOn,
    EnrolledBy,
    IntervalDays,
    NextDue,
    Visits,
    LastVisitOn,
    LastClassification,
    UncontrolledStreak,
    Flag,
    FlaggedAt,
    ReferralId,
    Status,
    ClosedOn,
    CloseReason,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum FollowupVisits {
    Table,
    TenantId,
    Id,
    EnrollmentId,
    PersonId,
    InstitutionId,
    DoctorId,
    VisitOn,
    Systolic,
    Diastolic,
    Glucose,
    Symptoms,
    Adherence,
    SmokingPerDay,
    Salt,
    ExerciseMinutesPerWeek,
    Classification,
    Danger,
    DangerReasons,
    NextOn,
    ReferralId,
    Notes,
    RecordedBy,
    RecordedAt,
}

#[derive(DeriveIden)]
enum EnrollmentSuggestions {
    Table,
    TenantId,
    Id,
    PersonId,
    InstitutionId,
    Disease,
    DiagnosisCode,
    EncounterId,
    DiagnosedOn,
    Status,
    CreatedAt,
    ResolvedAt,
}

fn text(c: impl IntoIden) -> ColumnDef {
    ColumnDef::new(c).string().not_null().to_owned()
}
fn opt_text(c: impl IntoIden) -> ColumnDef {
    ColumnDef::new(c).string().null().to_owned()
}
fn ts(c: impl IntoIden) -> ColumnDef {
    ColumnDef::new(c).timestamp_with_time_zone().not_null().to_owned()
}
fn opt_ts(c: impl IntoIden) -> ColumnDef {
    ColumnDef::new(c).timestamp_with_time_zone().null().to_owned()
}
fn date(c: impl IntoIden) -> ColumnDef {
    ColumnDef::new(c).date().not_null().to_owned()
}
fn opt_date(c: impl IntoIden) -> ColumnDef {
    ColumnDef::new(c).date().null().to_owned()
}
fn int(c: impl IntoIden) -> ColumnDef {
    ColumnDef::new(c).integer().not_null().to_owned()
}
fn opt_int(c: impl IntoIden) -> ColumnDef {
    ColumnDef::new(c).integer().null().to_owned()
}
fn opt_uuid(c: impl IntoIden) -> ColumnDef {
    ColumnDef::new(c).uuid().null().to_owned()
}

async fn indexes(manager: &SchemaManager<'_>, table: &str, list: &[(&str, &[&str])]) -> Result<(), DbErr> {
    for (name, cols) in list {
        let mut i = Index::create();
        i.name(*name).table(Alias::new(table));
        for c in *cols {
            i.col(Alias::new(*c));
        }
        manager.create_index(i.to_owned()).await?;
    }
    Ok(())
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ChronicEnrollments::Table)
                    .col(uuid_col(ChronicEnrollments::TenantId))
                    .col(uuid_col(ChronicEnrollments::Id))
                    .col(uuid_col(ChronicEnrollments::PersonId))
                    .col(text(ChronicEnrollments::Disease))
                    .col(opt_text(ChronicEnrollments::DiagnosisCode))
                    .col(date(ChronicEnrollments::DiagnosedOn))
                    .col(uuid_col(ChronicEnrollments::InstitutionId))
                    .col(uuid_col(ChronicEnrollments::DoctorId))
                    .col(date(ChronicEnrollments::EnrolledOn))
                    .col(uuid_col(ChronicEnrollments::EnrolledBy))
                    .col(int(ChronicEnrollments::IntervalDays))
                    .col(date(ChronicEnrollments::NextDue))
                    .col(int(ChronicEnrollments::Visits))
                    .col(opt_date(ChronicEnrollments::LastVisitOn))
                    .col(opt_text(ChronicEnrollments::LastClassification))
                    .col(int(ChronicEnrollments::UncontrolledStreak))
                    .col(opt_text(ChronicEnrollments::Flag))
                    .col(opt_ts(ChronicEnrollments::FlaggedAt))
                    .col(opt_uuid(ChronicEnrollments::ReferralId))
                    .col(text(ChronicEnrollments::Status))
                    .col(opt_date(ChronicEnrollments::ClosedOn))
                    .col(opt_text(ChronicEnrollments::CloseReason))
                    .col(ts(ChronicEnrollments::CreatedAt))
                    .col(ts(ChronicEnrollments::UpdatedAt))
                    .primary_key(Index::create().col(ChronicEnrollments::TenantId).col(ChronicEnrollments::Id))
                    .to_owned(),
            )
            .await?;
        // The worklists read an institution's, or a doctor's, active enrollments by due date.
        indexes(
            manager,
            "chronic_enrollments",
            &[
                ("ix_enrollments_institution_due", &["tenant_id", "institution_id", "status", "next_due"]),
                ("ix_enrollments_doctor_due", &["tenant_id", "doctor_id", "status", "next_due"]),
                ("ix_enrollments_person", &["tenant_id", "person_id"]),
            ],
        )
        .await?;
        // One active enrollment per person and disease in the whole community: two clinics
        // enrolling the same patient at once cannot both succeed.
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE UNIQUE INDEX ux_enrollments_active ON chronic_enrollments (tenant_id, person_id, disease)
                 WHERE status = 'active'",
            )
            .await?;
        tenant_table(manager, "chronic_enrollments").await?;

        manager
            .create_table(
                Table::create()
                    .table(FollowupVisits::Table)
                    .col(uuid_col(FollowupVisits::TenantId))
                    .col(uuid_col(FollowupVisits::Id))
                    .col(uuid_col(FollowupVisits::EnrollmentId))
                    .col(uuid_col(FollowupVisits::PersonId))
                    .col(uuid_col(FollowupVisits::InstitutionId))
                    .col(uuid_col(FollowupVisits::DoctorId))
                    .col(date(FollowupVisits::VisitOn))
                    .col(opt_int(FollowupVisits::Systolic))
                    .col(opt_int(FollowupVisits::Diastolic))
                    .col(ColumnDef::new(FollowupVisits::Glucose).double().null())
                    .col(ColumnDef::new(FollowupVisits::Symptoms).json_binary().not_null())
                    .col(text(FollowupVisits::Adherence))
                    .col(opt_int(FollowupVisits::SmokingPerDay))
                    .col(opt_text(FollowupVisits::Salt))
                    .col(opt_int(FollowupVisits::ExerciseMinutesPerWeek))
                    .col(text(FollowupVisits::Classification))
                    .col(ColumnDef::new(FollowupVisits::Danger).boolean().not_null())
                    .col(ColumnDef::new(FollowupVisits::DangerReasons).json_binary().not_null())
                    .col(date(FollowupVisits::NextOn))
                    .col(opt_uuid(FollowupVisits::ReferralId))
                    .col(opt_text(FollowupVisits::Notes))
                    .col(uuid_col(FollowupVisits::RecordedBy))
                    .col(ts(FollowupVisits::RecordedAt))
                    .primary_key(Index::create().col(FollowupVisits::TenantId).col(FollowupVisits::Id))
                    .to_owned(),
            )
            .await?;
        indexes(
            manager,
            "followup_visits",
            &[("ix_followup_visits_enrollment", &["tenant_id", "enrollment_id", "visit_on"])],
        )
        .await?;
        // One follow-up per enrollment and day.
        manager
            .create_index(
                Index::create()
                    .name("ux_followup_visits_day")
                    .table(FollowupVisits::Table)
                    .col(FollowupVisits::TenantId)
                    .col(FollowupVisits::EnrollmentId)
                    .col(FollowupVisits::VisitOn)
                    .unique()
                    .to_owned(),
            )
            .await?;
        tenant_table(manager, "followup_visits").await?;

        manager
            .create_table(
                Table::create()
                    .table(EnrollmentSuggestions::Table)
                    .col(uuid_col(EnrollmentSuggestions::TenantId))
                    .col(uuid_col(EnrollmentSuggestions::Id))
                    .col(uuid_col(EnrollmentSuggestions::PersonId))
                    .col(uuid_col(EnrollmentSuggestions::InstitutionId))
                    .col(text(EnrollmentSuggestions::Disease))
                    .col(text(EnrollmentSuggestions::DiagnosisCode))
                    .col(uuid_col(EnrollmentSuggestions::EncounterId))
                    .col(date(EnrollmentSuggestions::DiagnosedOn))
                    .col(text(EnrollmentSuggestions::Status))
                    .col(ts(EnrollmentSuggestions::CreatedAt))
                    .col(opt_ts(EnrollmentSuggestions::ResolvedAt))
                    .primary_key(Index::create().col(EnrollmentSuggestions::TenantId).col(EnrollmentSuggestions::Id))
                    .to_owned(),
            )
            .await?;
        indexes(
            manager,
            "enrollment_suggestions",
            &[("ix_suggestions_open", &["tenant_id", "institution_id", "status"])],
        )
        .await?;
        // One suggestion per encounter and disease, however often its event arrives.
        manager
            .create_index(
                Index::create()
                    .name("ux_suggestions_encounter")
                    .table(EnrollmentSuggestions::Table)
                    .col(EnrollmentSuggestions::TenantId)
                    .col(EnrollmentSuggestions::EncounterId)
                    .col(EnrollmentSuggestions::Disease)
                    .unique()
                    .to_owned(),
            )
            .await?;
        tenant_table(manager, "enrollment_suggestions").await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for t in ["enrollment_suggestions", "followup_visits", "chronic_enrollments"] {
            manager.drop_table(Table::drop().table(Alias::new(t)).to_owned()).await?;
        }
        Ok(())
    }
}
