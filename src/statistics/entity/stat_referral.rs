use sea_orm::entity::prelude::*;

/// One referral, as far as statistics need it (no person).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "stat_referrals")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub referral_id: Uuid,
    pub direction: String,
    pub from_institution: Uuid,
    pub to_institution: Option<Uuid>,
    pub parent_id: Option<Uuid>,
    /// When it was sent (for a referral out of the county, when it was recorded).
    pub requested_at: Option<DateTimeUtc>,
    pub decided_at: Option<DateTimeUtc>,
    pub accepted: Option<bool>,
    pub completed_at: Option<DateTimeUtc>,
    /// Completed with a completion summary.
    pub summary: bool,
    pub referred_down: bool,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
