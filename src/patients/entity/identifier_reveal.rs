use sea_orm::entity::prelude::*;

/// One reveal of a masked identifier: `user_id` at `institution_id` saw `field` of `person_id`
/// in full, for `purpose` and the written `reason`.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "identifier_reveals")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub user_id: Uuid,
    pub institution_id: Uuid,
    pub person_id: Uuid,
    pub field: super::super::domain::IdentifierField,
    pub purpose: super::super::domain::RevealPurpose,
    pub reason: String,
    pub revealed_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
