use sea_orm::entity::prelude::*;

use crate::followups::domain::{Classification, Disease, EnrollmentStatus, Flag};

/// A person in a chronic-disease registry, with the follow-up plan and where it stands.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize, serde::Deserialize)]
#[sea_orm(table_name = "chronic_enrollments")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub person_id: Uuid,
    /// `hypertension` or `diabetes`
    pub disease: Disease,
    pub diagnosis_code: Option<String>,
    pub diagnosed_on: Date,
    /// The responsible institution (usually the village clinic) and doctor.
    pub institution_id: Uuid,
    pub doctor_id: Uuid,
    pub enrolled_on: Date,
    pub enrolled_by: Uuid,
    pub interval_days: i32,
    pub next_due: Date,
    pub visits: i32,
    pub last_visit_on: Option<Date>,
    pub last_classification: Option<Classification>,
    /// Consecutive uncontrolled follow-ups up to the last one.
    pub uncontrolled_streak: i32,
    /// Why the doctor's list flags the patient: `danger`, `uncontrolled_twice`, `complication`.
    pub flag: Option<Flag>,
    pub flagged_at: Option<DateTimeUtc>,
    /// The draft up-referral proposed for the flag.
    pub referral_id: Option<Uuid>,
    /// `active` or `closed`
    pub status: EnrollmentStatus,
    pub closed_on: Option<Date>,
    pub close_reason: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
