use sea_orm::entity::prelude::*;

/// A source row an import has written (see migration m20261206_000025).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "import_rows")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant_id: Uuid,
    /// `id:<source record id>`, or `row:<hash of the row>` when the file has no id column.
    #[sea_orm(primary_key, auto_increment = false)]
    pub source_key: String,
    pub job_id: Uuid,
    pub line: i64,
    pub person_id: Uuid,
    /// `new`, `linked` or `probable` (a new person with a pair queued for review).
    pub outcome: String,
    /// Data-quality flags, comma-separated (`sex_missing,birth_date_missing`); empty when none.
    pub flags: String,
    pub imported_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
