use sea_orm::entity::prelude::*;

use crate::pharmacy::domain::PrescriptionStatus;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize, serde::Deserialize)]
#[sea_orm(table_name = "prescriptions")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub encounter_id: Uuid,
    pub institution_id: Uuid,
    pub person_id: Uuid,
    pub prescriber_id: Uuid,
    pub chronic: bool,
    pub status: PrescriptionStatus,
    pub created_at: DateTimeUtc,
    pub dispensed_at: Option<DateTimeUtc>,
    pub dispensed_by: Option<Uuid>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
