use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize, serde::Deserialize)]
#[sea_orm(table_name = "journal_entries")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub institution_id: Uuid,
    pub period: String,
    pub event_id: Uuid,
    pub event_type: String,
    pub source_id: Option<Uuid>,
    pub person_id: Option<Uuid>,
    pub counterparty_id: Option<Uuid>,
    pub description: String,
    pub occurred_at: DateTimeUtc,
    pub posted_at: DateTimeUtc,
    pub late_from_period: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
