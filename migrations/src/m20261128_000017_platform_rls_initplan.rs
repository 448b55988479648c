//! Every tenant policy reads the transaction's tenant once per statement instead of once per row
//! ([`crate::rls::TENANT_MATCH`]): the same rows are visible, and a scan no longer pays for a
//! setting lookup and a uuid parse on each row it reads (the statistics dashboard's registry
//! read spent about a third of its time there). The outbox keeps its relay exception.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

use crate::rls::TENANT_MATCH;

#[derive(DeriveMigrationName)]
pub struct Migration;

const PER_ROW: &str = "tenant_id = NULLIF(current_setting('cloudhis.tenant_id', true), '')::uuid";

fn rewrite(tenant: &str, relay: &str) -> String {
    let plain = tenant.replace('\'', "''");
    format!(
        "DO $$ DECLARE r record; BEGIN
           FOR r IN SELECT tablename FROM pg_policies
                     WHERE schemaname = current_schema() AND policyname = 'tenant_isolation' AND tablename <> 'outbox'
           LOOP
             EXECUTE format('ALTER POLICY tenant_isolation ON %I USING ({plain}) WITH CHECK ({plain})', r.tablename);
           END LOOP;
         END $$;
         ALTER POLICY tenant_isolation ON outbox USING ({tenant} OR {relay}) WITH CHECK ({tenant} OR {relay});"
    )
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        let relay = "(SELECT current_setting('cloudhis.relay', true)) = 'on'";
        manager.get_connection().execute_unprepared(&rewrite(TENANT_MATCH, relay)).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        let relay = "current_setting('cloudhis.relay', true) = 'on'";
        manager.get_connection().execute_unprepared(&rewrite(PER_ROW, relay)).await?;
        Ok(())
    }
}
