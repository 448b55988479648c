use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize, serde::Deserialize)]
#[sea_orm(table_name = "charges")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub bill_id: Uuid,
    pub institution_id: Uuid,
    pub kind: String,
    pub item_code: String,
    pub description: String,
    pub quantity: i64,
    pub unit_price_fen: i64,
    pub amount_fen: i64,
    pub insurance_category: String,
    pub insurance_fen: i64,
    pub self_pay_fen: i64,
    pub source_id: Option<Uuid>,
    pub posted_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
