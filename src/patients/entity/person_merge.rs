use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "person_merges")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub survivor_id: Uuid,
    pub merged_id: Uuid,
    pub reason: String,
    pub merged_by: Uuid,
    pub merged_at: DateTimeUtc,
    /// Ids of the registrations moved from the merged person to the survivor.
    pub moved_registrations: Json,
    /// What the merge changed, as it was before: the merged person's row and review-queue
    /// statuses, so an unmerge restores them exactly.
    pub merged_snapshot: Json,
    pub unmerged_at: Option<DateTimeUtc>,
    pub unmerged_by: Option<Uuid>,
    pub unmerge_reason: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
