use sea_orm::entity::prelude::*;

/// Where the archived part of one chain ends: its last archived row and that row's hash, the
/// month the archive ran up to, and the file that holds the rows (with the file's SHA-256).
/// `audit verify` starts the chain after the latest seal.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "audit_seals")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub chain: i16,
    #[sea_orm(primary_key, auto_increment = false)]
    pub seq: i64,
    pub hash: String,
    pub before: DateTimeUtc,
    pub rows: i64,
    pub file: String,
    pub file_sha256: String,
    pub sealed_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
