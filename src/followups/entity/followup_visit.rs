use sea_orm::entity::prelude::*;

use crate::followups::domain::Classification;

/// One follow-up of an enrolled patient.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel, serde::Serialize, serde::Deserialize)]
#[sea_orm(table_name = "followup_visits")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub enrollment_id: Uuid,
    pub person_id: Uuid,
    pub institution_id: Uuid,
    pub doctor_id: Uuid,
    pub visit_on: Date,
    /// mmHg
    pub systolic: Option<i32>,
    pub diastolic: Option<i32>,
    /// mmol/L (fasting)
    pub glucose: Option<f64>,
    pub symptoms: Json,
    /// `regular`, `intermittent` or `none`
    pub adherence: String,
    pub smoking_per_day: Option<i32>,
    /// `light`, `moderate` or `heavy`
    pub salt: Option<String>,
    pub exercise_minutes_per_week: Option<i32>,
    /// `controlled`, `uncontrolled`, `adverse_reaction` or `complication`
    pub classification: Classification,
    pub danger: bool,
    pub danger_reasons: Json,
    pub next_on: Date,
    pub referral_id: Option<Uuid>,
    pub notes: Option<String>,
    pub recorded_by: Uuid,
    pub recorded_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
