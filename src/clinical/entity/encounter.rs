use sea_orm::entity::prelude::*;

use crate::clinical::domain::{EncounterKind, EncounterStatus};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize, serde::Deserialize)]
#[sea_orm(table_name = "encounters")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub institution_id: Uuid,
    pub person_id: Uuid,
    pub department_id: Option<Uuid>,
    pub clinician_id: Uuid,
    pub kind: EncounterKind,
    pub status: EncounterStatus,
    pub chief_complaint: Option<String>,
    pub notes: Option<String>,
    pub opened_at: DateTimeUtc,
    pub closed_at: Option<DateTimeUtc>,
    pub closed_by: Option<Uuid>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
