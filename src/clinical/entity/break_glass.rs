use sea_orm::entity::prelude::*;

/// One break-glass declaration: `user_id` at `institution_id` may read `person_id`'s community
/// summary until `expires_at`, for the written `reason`.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "break_glass_access")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub user_id: Uuid,
    pub institution_id: Uuid,
    pub person_id: Uuid,
    pub reason: String,
    pub opened_at: DateTimeUtc,
    pub expires_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
