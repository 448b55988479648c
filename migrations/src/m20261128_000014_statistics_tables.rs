//! Statistics rollups, kept by the `statistics` consumer and rebuilt from the source contexts:
//! daily sums per institution (visits by kind, charges by kind, referrals by direction), one row
//! per referral (for acceptance times and closed loops), per enrollment and per follow-up (for
//! management and control rates). None of them holds a person's identity.

use crate::rls::{tenant_table, uuid_col};
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum StatDaily {
    Table,
    TenantId,
    Day,
    InstitutionId,
    Metric,
    Dim,
    Value,
}

#[derive(DeriveIden)]
enum StatReferrals {
    Table,
    TenantId,
    ReferralId,
    Direction,
    FromInstitution,
    ToInstitution,
    ParentId,
    RequestedAt,
    DecidedAt,
    Accepted,
    CompletedAt,
    Summary,
    ReferredDown,
}

#[derive(DeriveIden)]
enum StatEnrollments {
    Table,
    TenantId,
    EnrollmentId,
    InstitutionId,
    Disease,
    EnrolledOn,
    ClosedOn,
    LastVisitOn,
    FourthVisitOn,
    LastControlled,
}

#[derive(DeriveIden)]
enum StatFollowups {
    Table,
    TenantId,
    VisitId,
    EnrollmentId,
    InstitutionId,
    Disease,
    VisitOn,
    Controlled,
}

fn date(c: impl IntoIden) -> ColumnDef {
    ColumnDef::new(c).date().not_null().to_owned()
}
fn text(c: impl IntoIden) -> ColumnDef {
    ColumnDef::new(c).string().not_null().to_owned()
}
fn opt_ts(c: impl IntoIden) -> ColumnDef {
    ColumnDef::new(c).timestamp_with_time_zone().null().to_owned()
}
fn flag(c: impl IntoIden) -> ColumnDef {
    ColumnDef::new(c).boolean().not_null().to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(StatDaily::Table)
                    .col(uuid_col(StatDaily::TenantId))
                    .col(date(StatDaily::Day))
                    .col(uuid_col(StatDaily::InstitutionId))
                    .col(text(StatDaily::Metric))
                    .col(text(StatDaily::Dim))
                    .col(ColumnDef::new(StatDaily::Value).big_integer().not_null())
                    .primary_key(
                        Index::create()
                            .col(StatDaily::TenantId)
                            .col(StatDaily::Day)
                            .col(StatDaily::InstitutionId)
                            .col(StatDaily::Metric)
                            .col(StatDaily::Dim),
                    )
                    .to_owned(),
            )
            .await?;
        tenant_table(manager, "stat_daily").await?;

        manager
            .create_table(
                Table::create()
                    .table(StatReferrals::Table)
                    .col(uuid_col(StatReferrals::TenantId))
                    .col(uuid_col(StatReferrals::ReferralId))
                    .col(text(StatReferrals::Direction))
                    .col(uuid_col(StatReferrals::FromInstitution))
                    .col(ColumnDef::new(StatReferrals::ToInstitution).uuid().null())
                    .col(ColumnDef::new(StatReferrals::ParentId).uuid().null())
                    .col(opt_ts(StatReferrals::RequestedAt))
                    .col(opt_ts(StatReferrals::DecidedAt))
                    .col(ColumnDef::new(StatReferrals::Accepted).boolean().null())
                    .col(opt_ts(StatReferrals::CompletedAt))
                    .col(flag(StatReferrals::Summary))
                    .col(flag(StatReferrals::ReferredDown))
                    .primary_key(Index::create().col(StatReferrals::TenantId).col(StatReferrals::ReferralId))
                    .to_owned(),
            )
            .await?;
        tenant_table(manager, "stat_referrals").await?;

        manager
            .create_table(
                Table::create()
                    .table(StatEnrollments::Table)
                    .col(uuid_col(StatEnrollments::TenantId))
                    .col(uuid_col(StatEnrollments::EnrollmentId))
                    .col(uuid_col(StatEnrollments::InstitutionId))
                    .col(text(StatEnrollments::Disease))
                    .col(date(StatEnrollments::EnrolledOn))
                    .col(ColumnDef::new(StatEnrollments::ClosedOn).date().null())
                    .col(ColumnDef::new(StatEnrollments::LastVisitOn).date().null())
                    .col(ColumnDef::new(StatEnrollments::FourthVisitOn).date().null())
                    .col(flag(StatEnrollments::LastControlled))
                    .primary_key(Index::create().col(StatEnrollments::TenantId).col(StatEnrollments::EnrollmentId))
                    .to_owned(),
            )
            .await?;
        tenant_table(manager, "stat_enrollments").await?;

        manager
            .create_table(
                Table::create()
                    .table(StatFollowups::Table)
                    .col(uuid_col(StatFollowups::TenantId))
                    .col(uuid_col(StatFollowups::VisitId))
                    .col(uuid_col(StatFollowups::EnrollmentId))
                    .col(uuid_col(StatFollowups::InstitutionId))
                    .col(text(StatFollowups::Disease))
                    .col(date(StatFollowups::VisitOn))
                    .col(flag(StatFollowups::Controlled))
                    .primary_key(Index::create().col(StatFollowups::TenantId).col(StatFollowups::VisitId))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_stat_followups_enrollment")
                    .table(StatFollowups::Table)
                    .col(StatFollowups::TenantId)
                    .col(StatFollowups::EnrollmentId)
                    .col(StatFollowups::VisitOn)
                    .to_owned(),
            )
            .await?;
        tenant_table(manager, "stat_followups").await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for t in ["stat_followups", "stat_enrollments", "stat_referrals", "stat_daily"] {
            manager.drop_table(Table::drop().table(Alias::new(t)).to_owned()).await?;
        }
        Ok(())
    }
}
