use sea_orm::entity::prelude::*;

use crate::referrals::domain::{Direction, Status, Urgency};

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, serde::Serialize, serde::Deserialize)]
#[sea_orm(table_name = "referrals")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub person_id: Uuid,
    pub direction: Direction,
    pub from_institution: Uuid,
    pub to_institution: Option<Uuid>,
    pub external_hospital: Option<String>,
    pub status: Status,
    pub urgency: Urgency,
    pub reason: String,
    pub clinical_summary: Json,
    pub source_encounter_id: Option<Uuid>,
    pub parent_id: Option<Uuid>,
    pub created_by: Uuid,
    pub created_at: DateTimeUtc,
    pub requested_at: Option<DateTimeUtc>,
    pub sla_due_at: Option<DateTimeUtc>,
    pub decided_at: Option<DateTimeUtc>,
    pub decided_by: Option<Uuid>,
    pub reject_reason: Option<String>,
    pub arrived_at: Option<DateTimeUtc>,
    pub completed_at: Option<DateTimeUtc>,
    pub completion_summary: Option<String>,
    pub discharge_summary: Option<String>,
    pub rehab_plan: Option<String>,
    pub cancelled_at: Option<DateTimeUtc>,
    pub cancel_reason: Option<String>,
    pub expired_at: Option<DateTimeUtc>,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
