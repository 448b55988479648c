//! Referrals: the referral with its state and clinical snapshot, its transition history, the
//! access grants a referral opens, and the notifications its events produce.

use crate::rls::{tenant_table, uuid_col};
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Referrals {
    Table,
    TenantId,
    Id,
    PersonId,
    Direction,
    FromInstitution,
    ToInstitution,
    ExternalHospital,
    Status,
    Urgency,
    Reason,
    ClinicalSummary,
    SourceEncounterId,
    ParentId,
    CreatedBy,
    CreatedAt,
    RequestedAt,
    SlaDueAt,
    DecidedAt,
    DecidedBy,
    RejectReason,
    ArrivedAt,
    CompletedAt,
    CompletionSummary,
    DischargeSummary,
    RehabPlan,
    CancelledAt,
    CancelReason,
    ExpiredAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum ReferralTransitions {
    Table,
    TenantId,
    Id,
    ReferralId,
    FromStatus,
    ToStatus,
    ActorId,
    InstitutionId,
    At,
}

#[derive(DeriveIden)]
enum AccessGrants {
    Table,
    TenantId,
    Id,
    ReferralId,
    PersonId,
    GranteeInstitution,
    SourceInstitution,
    GrantedAt,
    ExpiresAt,
}

#[derive(DeriveIden)]
enum ReferralNotifications {
    Table,
    TenantId,
    Id,
    InstitutionId,
    ReferralId,
    EventId,
    EventType,
    CreatedAt,
    ReadAt,
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
fn opt_uuid(c: impl IntoIden) -> ColumnDef {
    ColumnDef::new(c).uuid().null().to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Referrals::Table)
                    .col(uuid_col(Referrals::TenantId))
                    .col(uuid_col(Referrals::Id))
                    .col(uuid_col(Referrals::PersonId))
                    .col(text(Referrals::Direction))
                    .col(uuid_col(Referrals::FromInstitution))
                    .col(opt_uuid(Referrals::ToInstitution))
                    .col(opt_text(Referrals::ExternalHospital))
                    .col(text(Referrals::Status))
                    .col(text(Referrals::Urgency))
                    .col(text(Referrals::Reason))
                    .col(ColumnDef::new(Referrals::ClinicalSummary).json_binary().not_null())
                    .col(opt_uuid(Referrals::SourceEncounterId))
                    .col(opt_uuid(Referrals::ParentId))
                    .col(uuid_col(Referrals::CreatedBy))
                    .col(ts(Referrals::CreatedAt))
                    .col(opt_ts(Referrals::RequestedAt))
                    .col(opt_ts(Referrals::SlaDueAt))
                    .col(opt_ts(Referrals::DecidedAt))
                    .col(opt_uuid(Referrals::DecidedBy))
                    .col(opt_text(Referrals::RejectReason))
                    .col(opt_ts(Referrals::ArrivedAt))
                    .col(opt_ts(Referrals::CompletedAt))
                    .col(opt_text(Referrals::CompletionSummary))
                    .col(opt_text(Referrals::DischargeSummary))
                    .col(opt_text(Referrals::RehabPlan))
                    .col(opt_ts(Referrals::CancelledAt))
                    .col(opt_text(Referrals::CancelReason))
                    .col(opt_ts(Referrals::ExpiredAt))
                    .col(ts(Referrals::UpdatedAt))
                    .primary_key(Index::create().col(Referrals::TenantId).col(Referrals::Id))
                    .to_owned(),
            )
            .await?;
        for (name, cols) in [
            ("ix_referrals_inbox", &["tenant_id", "to_institution", "status"][..]),
            ("ix_referrals_sent", &["tenant_id", "from_institution", "created_at"][..]),
            ("ix_referrals_person", &["tenant_id", "person_id"][..]),
        ] {
            let mut i = Index::create();
            i.name(name).table(Referrals::Table);
            for c in cols {
                i.col(Alias::new(*c));
            }
            manager.create_index(i.to_owned()).await?;
        }
        // The expiry job looks, tenant by tenant, for requested referrals past their SLA.
        manager
            .create_index(
                Index::create()
                    .name("ix_referrals_due")
                    .table(Referrals::Table)
                    .col(Referrals::TenantId)
                    .col(Referrals::Status)
                    .col(Referrals::SlaDueAt)
                    .to_owned(),
            )
            .await?;
        tenant_table(manager, "referrals").await?;

        manager
            .create_table(
                Table::create()
                    .table(ReferralTransitions::Table)
                    .col(uuid_col(ReferralTransitions::TenantId))
                    .col(uuid_col(ReferralTransitions::Id))
                    .col(uuid_col(ReferralTransitions::ReferralId))
                    .col(opt_text(ReferralTransitions::FromStatus))
                    .col(text(ReferralTransitions::ToStatus))
                    .col(opt_uuid(ReferralTransitions::ActorId))
                    .col(opt_uuid(ReferralTransitions::InstitutionId))
                    .col(ts(ReferralTransitions::At))
                    .primary_key(Index::create().col(ReferralTransitions::TenantId).col(ReferralTransitions::Id))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_transitions_referral")
                    .table(ReferralTransitions::Table)
                    .col(ReferralTransitions::TenantId)
                    .col(ReferralTransitions::ReferralId)
                    .to_owned(),
            )
            .await?;
        tenant_table(manager, "referral_transitions").await?;

        manager
            .create_table(
                Table::create()
                    .table(AccessGrants::Table)
                    .col(uuid_col(AccessGrants::TenantId))
                    .col(uuid_col(AccessGrants::Id))
                    .col(uuid_col(AccessGrants::ReferralId))
                    .col(uuid_col(AccessGrants::PersonId))
                    .col(uuid_col(AccessGrants::GranteeInstitution))
                    .col(uuid_col(AccessGrants::SourceInstitution))
                    .col(ts(AccessGrants::GrantedAt))
                    .col(opt_ts(AccessGrants::ExpiresAt))
                    .primary_key(Index::create().col(AccessGrants::TenantId).col(AccessGrants::Id))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_grants_referral")
                    .table(AccessGrants::Table)
                    .col(AccessGrants::TenantId)
                    .col(AccessGrants::ReferralId)
                    .unique()
                    .to_owned(),
            )
            .await?;
        tenant_table(manager, "access_grants").await?;

        manager
            .create_table(
                Table::create()
                    .table(ReferralNotifications::Table)
                    .col(uuid_col(ReferralNotifications::TenantId))
                    .col(uuid_col(ReferralNotifications::Id))
                    .col(uuid_col(ReferralNotifications::InstitutionId))
                    .col(uuid_col(ReferralNotifications::ReferralId))
                    .col(uuid_col(ReferralNotifications::EventId))
                    .col(text(ReferralNotifications::EventType))
                    .col(ts(ReferralNotifications::CreatedAt))
                    .col(opt_ts(ReferralNotifications::ReadAt))
                    .primary_key(Index::create().col(ReferralNotifications::TenantId).col(ReferralNotifications::Id))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_notifications_inbox")
                    .table(ReferralNotifications::Table)
                    .col(ReferralNotifications::TenantId)
                    .col(ReferralNotifications::InstitutionId)
                    .col(ReferralNotifications::CreatedAt)
                    .to_owned(),
            )
            .await?;
        tenant_table(manager, "referral_notifications").await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for t in ["referral_notifications", "access_grants", "referral_transitions", "referrals"] {
            manager.drop_table(Table::drop().table(Alias::new(t)).to_owned()).await?;
        }
        Ok(())
    }
}
