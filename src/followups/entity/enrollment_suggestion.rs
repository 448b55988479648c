use sea_orm::entity::prelude::*;

/// A closed encounter diagnosed a registry disease for a person not enrolled: enroll them?
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize, serde::Deserialize)]
#[sea_orm(table_name = "enrollment_suggestions")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub person_id: Uuid,
    pub institution_id: Uuid,
    pub disease: String,
    pub diagnosis_code: String,
    pub encounter_id: Uuid,
    pub diagnosed_on: Date,
    /// `open`, `enrolled` or `dismissed`
    pub status: String,
    pub created_at: DateTimeUtc,
    pub resolved_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
