use sea_orm::entity::prelude::*;

/// A follow-up: when, and whether it met the KPI's control target.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "stat_followups")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub visit_id: Uuid,
    pub enrollment_id: Uuid,
    pub institution_id: Uuid,
    pub disease: String,
    pub visit_on: Date,
    pub controlled: bool,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
