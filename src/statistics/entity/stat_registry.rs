use sea_orm::entity::prelude::*;

/// Changes to the registry figures from a day on, per institution and disease: how many
/// enrollments become (or stop being) registered, managed, standard and controlled on `day`,
/// counting each enrollment only once its latest follow-up is past. The figures as at a day are
/// the sums of every row up to it (see `statistics::domain::registry_steps`).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "stat_registry")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub day: Date,
    #[sea_orm(primary_key, auto_increment = false)]
    pub institution_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub disease: String,
    pub registered: i64,
    pub managed: i64,
    pub standard: i64,
    pub controlled: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
