use sea_orm::entity::prelude::*;

/// A staff account's TOTP second factor; it guards logins once `enabled_at` is set.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "user_totp")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub user_id: Uuid,
    /// The secret, encrypted with the PII key (`platform::pii`).
    pub secret_enc: String,
    pub created_at: DateTimeUtc,
    pub enabled_at: Option<DateTimeUtc>,
    pub last_step: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
