//! Indexes for the dashboard's period reads: referrals by the day sent and the day decided, and
//! enrollment summaries by their latest follow-up (the look-back splits on it).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const INDEXES: [(&str, &str, [&str; 2]); 3] = [
    ("ix_stat_referrals_requested", "stat_referrals", ["tenant_id", "requested_at"]),
    ("ix_stat_referrals_decided", "stat_referrals", ["tenant_id", "decided_at"]),
    ("ix_stat_enrollments_last_visit", "stat_enrollments", ["tenant_id", "last_visit_on"]),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (name, table, [a, b]) in INDEXES {
            manager
                .create_index(
                    Index::create()
                        .name(name)
                        .table(Alias::new(table))
                        .col(Alias::new(a))
                        .col(Alias::new(b))
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (name, table, _) in INDEXES {
            manager.drop_index(Index::drop().name(name).table(Alias::new(table)).to_owned()).await?;
        }
        Ok(())
    }
}
