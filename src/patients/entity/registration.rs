use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize, serde::Deserialize)]
#[sea_orm(table_name = "registrations")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub person_id: Uuid,
    pub institution_id: Uuid,
    pub mrn: String,
    pub registered_at: DateTimeUtc,
    pub registered_by: Option<Uuid>,
    /// A resident ID this registration brought that the person did not take (encrypted).
    pub held_resident_id_enc: Option<String>,
    /// An insurance number this registration brought (encrypted): never copied onto the person.
    pub held_insurance_enc: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
