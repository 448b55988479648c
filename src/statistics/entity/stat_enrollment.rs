use sea_orm::entity::prelude::*;

/// A registry enrollment (no person).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "stat_enrollments")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub enrollment_id: Uuid,
    pub institution_id: Uuid,
    pub disease: String,
    pub enrolled_on: Date,
    pub closed_on: Option<Date>,
    /// The latest follow-up, the fourth latest, and whether the latest met the control target:
    /// enough to count standard management and control at any date on or after the latest.
    pub last_visit_on: Option<Date>,
    pub fourth_visit_on: Option<Date>,
    pub last_controlled: bool,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
