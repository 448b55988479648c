//! Registry figures as steps per day, institution and disease (`stat_registry`), so that the
//! figures as at a day are a sum over a few rows per institution instead of a pass over every
//! enrollment. Kept by the `statistics` consumer and written by `cloudhis statistics rebuild`;
//! this migration fills it from the enrollment summaries already there ([`fill_sql`], the same
//! rule as `statistics::domain::registry_steps`, compared with it in the statistics tests).

use crate::rls::{tenant_table, uuid_col};
use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend, Statement};

/// Every enrollment summary's registry steps, summed per tenant, day, institution and disease:
/// +1 from the later of enrolment and the latest follow-up, -1 at closure, 365 days after the
/// latest follow-up (managed, controlled) or the fourth latest (standard), whichever is first.
pub fn fill_sql(backend: DbBackend) -> String {
    let pg = backend == DbBackend::Postgres;
    let later = |a: &str, b: &str| if pg { format!("GREATEST({a}, {b})") } else { format!("MAX({a}, {b})") };
    let plus_year = |d: &str| if pg { format!("({d} + 365)") } else { format!("date({d}, '+365 days')") };
    // LEAST ignores a NULL closure; SQLite's MIN does not.
    let earlier = |closed: &str, d: &str| {
        if pg { format!("LEAST({closed}, {d})") } else { format!("COALESCE(MIN({closed}, {d}), {d})") }
    };
    let start = later("enrolled_on", "COALESCE(last_visit_on, enrolled_on)");
    let managed_end = earlier("closed_on", &plus_year("l"));
    let standard_end = earlier("closed_on", &plus_year("f"));
    format!(
        "WITH base AS (
           SELECT tenant_id, institution_id, disease, closed_on, last_visit_on AS l, fourth_visit_on AS f,
                  last_controlled AS c, {start} AS s
             FROM stat_enrollments),
         spans AS (
           SELECT tenant_id, institution_id, disease, 0 AS k, s, closed_on AS e FROM base
           UNION ALL SELECT tenant_id, institution_id, disease, 1, s, {managed_end} FROM base WHERE l IS NOT NULL
           UNION ALL SELECT tenant_id, institution_id, disease, 3, s, {managed_end} FROM base WHERE l IS NOT NULL AND c
           UNION ALL SELECT tenant_id, institution_id, disease, 2, s, {standard_end} FROM base WHERE f IS NOT NULL),
         steps AS (
           SELECT tenant_id, institution_id, disease, k, s AS day, 1 AS v FROM spans WHERE e IS NULL OR e > s
           UNION ALL
           SELECT tenant_id, institution_id, disease, k, e AS day, -1 AS v FROM spans WHERE e IS NOT NULL AND e > s)
         INSERT INTO stat_registry (tenant_id, day, institution_id, disease, registered, managed, standard, controlled)
         SELECT tenant_id, day, institution_id, disease,
                SUM(CASE WHEN k = 0 THEN v ELSE 0 END), SUM(CASE WHEN k = 1 THEN v ELSE 0 END),
                SUM(CASE WHEN k = 2 THEN v ELSE 0 END), SUM(CASE WHEN k = 3 THEN v ELSE 0 END)
           FROM steps GROUP BY tenant_id, day, institution_id, disease"
    )
}

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum StatRegistry {
    Table,
    TenantId,
    Day,
    InstitutionId,
    Disease,
    Registered,
    Managed,
    Standard,
    Controlled,
}

fn count(c: impl IntoIden) -> ColumnDef {
    ColumnDef::new(c).big_integer().not_null().to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(StatRegistry::Table)
                    .col(uuid_col(StatRegistry::TenantId))
                    .col(ColumnDef::new(StatRegistry::Day).date().not_null())
                    .col(uuid_col(StatRegistry::InstitutionId))
                    .col(ColumnDef::new(StatRegistry::Disease).string().not_null())
                    .col(count(StatRegistry::Registered))
                    .col(count(StatRegistry::Managed))
                    .col(count(StatRegistry::Standard))
                    .col(count(StatRegistry::Controlled))
                    .primary_key(
                        Index::create()
                            .col(StatRegistry::TenantId)
                            .col(StatRegistry::Day)
                            .col(StatRegistry::InstitutionId)
                            .col(StatRegistry::Disease),
                    )
                    .to_owned(),
            )
            .await?;
        tenant_table(manager, "stat_registry").await?;
        let db = manager.get_connection();
        let fill = fill_sql(manager.get_database_backend());
        if manager.get_database_backend() != DbBackend::Postgres {
            db.execute_unprepared(&fill).await?;
            return Ok(());
        }
        // Row-level security applies to the owner too: tenant by tenant, the setting and the
        // insert in one implicit transaction (one simple-query string).
        let tenants = db
            .query_all_raw(Statement::from_string(DbBackend::Postgres, "SELECT CAST(id AS TEXT) FROM tenants"))
            .await?;
        for row in tenants {
            let id: String = row.try_get_by_index(0)?;
            db.execute_unprepared(&format!("SELECT set_config('cloudhis.tenant_id', '{id}', true); {fill}")).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(StatRegistry::Table).to_owned()).await
    }
}
