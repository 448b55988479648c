use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize, serde::Deserialize)]
#[sea_orm(table_name = "persons")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub name: String,
    /// Joined toneless pinyin (`zhangwei`).
    pub name_pinyin: String,
    pub name_initials: String,
    pub surname_pinyin: String,
    pub sex: Option<String>,
    pub birth_date: Option<Date>,
    pub birth_year: Option<i32>,
    /// MMDD of a full birth date (a blocking key).
    pub birth_md: Option<String>,
    pub resident_id_enc: Option<String>,
    pub resident_id_hash: Option<String>,
    pub resident_id_valid: bool,
    pub phone_enc: Option<String>,
    pub phone_hash: Option<String>,
    pub phone_tail_hash: Option<String>,
    pub insurance_enc: Option<String>,
    pub insurance_hash: Option<String>,
    pub division_code: Option<String>,
    /// `active` or `merged`
    pub status: String,
    pub replaced_by: Option<Uuid>,
    pub created_institution: Uuid,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
