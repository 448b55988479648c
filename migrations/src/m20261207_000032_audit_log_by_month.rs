//! The audit trail by month (issue 25). On PostgreSQL `audit_log` becomes a table partitioned by
//! range on `occurred_at`, one partition per calendar month (UTC), named `audit_log_yYYYYmMM`,
//! plus a default partition that catches a row no month partition takes yet. A month partition
//! is what `cloudhis audit archive` writes out and drops once it is older than the retention.
//! The partition key joins the primary key: `(tenant_id, chain, seq, occurred_at)`.
//!
//! `audit_log_partitions(p_ahead)` (owner's rights, callable by the app role) makes the partitions
//! of this month and the `p_ahead` months after it, and of every month whose rows sit in the
//! default partition, moving those rows into it. `cloudhis migrate` and a daily job in the server
//! call it, so rows land in month partitions; the default partition is the safety net.
//!
//! The rows of the old table are copied, then it is dropped. `audit_seals` records, per chain,
//! where the archived part of a chain ends (its last row and hash, and the file that holds it):
//! `audit verify` starts each chain there. SQLite keeps one table and gains only the seals.

use crate::rls::{APP_ROLE, enable_tenant_rls, grant_app, text_col, ts_col, uuid_col};
use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend, Statement};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Months made ahead of the current one, here and by the server's daily job.
pub const MONTHS_AHEAD: i32 = 3;

#[derive(DeriveIden)]
enum AuditSeals {
    Table,
    TenantId,
    Chain,
    Seq,
    Hash,
    Before,
    Rows,
    File,
    FileSha256,
    SealedAt,
}

/// The partition maker (see the module's documentation). Serialised by a transaction lock.
/// Writes into partitions directly: the parent's forced row-level security would refuse the
/// owner's rows of other tenants.
const PARTITIONS_FN: &str = "
CREATE FUNCTION audit_log_partitions(p_ahead int) RETURNS int LANGUAGE plpgsql SECURITY DEFINER
  SET search_path = public, pg_temp AS $$
DECLARE
  m date; lo timestamptz; hi timestamptz; part text; made int := 0;
  citus boolean := EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus');
BEGIN
  IF p_ahead < 0 OR p_ahead > 24 THEN
    RAISE EXCEPTION 'months ahead must be 0 to 24' USING ERRCODE = '22023';
  END IF;
  PERFORM pg_advisory_xact_lock(hashtext('audit_log_partitions'));
  -- Making a partition locks the trail (every request's audit insert waits behind it): a long
  -- reader in the way makes this run fail, to be tried again, rather than stall requests.
  PERFORM set_config('lock_timeout', '10s', true);
  IF citus THEN
    -- Maintenance reads the default partition on every shard, where a database may refuse
    -- multi-shard queries to catch a request path that fans out.
    PERFORM set_config('citus.multi_task_query_log_level', 'off', true);
  END IF;
  FOR m IN
    SELECT DISTINCT date_trunc('month', occurred_at AT TIME ZONE 'UTC')::date FROM audit_log_default
    UNION
    SELECT (date_trunc('month', now() AT TIME ZONE 'UTC') + make_interval(months => i))::date
      FROM generate_series(0, p_ahead) AS i
    ORDER BY 1
  LOOP
    part := format('audit_log_y%sm%s', to_char(m, 'YYYY'), to_char(m, 'MM'));
    CONTINUE WHEN to_regclass(part) IS NOT NULL;
    lo := m::timestamp AT TIME ZONE 'UTC';
    hi := (m + interval '1 month')::timestamp AT TIME ZONE 'UTC';
    CREATE TEMP TABLE audit_moving ON COMMIT DROP AS
      SELECT * FROM audit_log_default WHERE occurred_at >= lo AND occurred_at < hi;
    DELETE FROM audit_log_default WHERE occurred_at >= lo AND occurred_at < hi;
    -- Bounds written out in UTC, whatever the session's TimeZone and DateStyle.
    EXECUTE format('CREATE TABLE %I PARTITION OF audit_log FOR VALUES FROM (%L) TO (%L)', part,
                   to_char(m, 'YYYY-MM-DD') || ' 00:00:00+00',
                   to_char(m + interval '1 month', 'YYYY-MM-DD') || ' 00:00:00+00');
    IF NOT citus THEN
      EXECUTE format('ALTER TABLE %I ALTER COLUMN tenant_id SET (n_distinct = 10)', part);
    END IF;
    EXECUTE format('INSERT INTO %I SELECT * FROM audit_moving', part);
    DROP TABLE audit_moving;
    made := made + 1;
  END LOOP;
  RETURN made;
END $$;
";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(AuditSeals::Table)
                    .col(uuid_col(AuditSeals::TenantId))
                    .col(ColumnDef::new(AuditSeals::Chain).small_integer().not_null())
                    .col(ColumnDef::new(AuditSeals::Seq).big_integer().not_null())
                    .col(text_col(AuditSeals::Hash))
                    .col(ts_col(AuditSeals::Before))
                    .col(ColumnDef::new(AuditSeals::Rows).big_integer().not_null())
                    .col(text_col(AuditSeals::File))
                    .col(text_col(AuditSeals::FileSha256))
                    .col(ts_col(AuditSeals::SealedAt))
                    .primary_key(Index::create().col(AuditSeals::TenantId).col(AuditSeals::Chain).col(AuditSeals::Seq))
                    .to_owned(),
            )
            .await?;
        // Written by the archive command as the owner; the app reads them to verify.
        grant_app(manager, "audit_seals", "SELECT").await?;
        enable_tenant_rls(manager, "audit_seals").await?;
        if manager.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        let db = manager.get_connection();
        let citus = db
            .query_one_raw(Statement::from_string(
                DbBackend::Postgres,
                "SELECT count(*) AS n FROM pg_extension WHERE extname = 'citus'",
            ))
            .await?
            .map(|r| r.try_get::<i64>("", "n"))
            .transpose()?
            .unwrap_or(0);
        if citus == 0 {
            // As every tenant table (m20261206_000029).
            db.execute_unprepared("ALTER TABLE audit_seals ALTER COLUMN tenant_id SET (n_distinct = 10)").await?;
        }
        let sql = format!(
            "ALTER TABLE audit_log RENAME TO audit_log_unpartitioned;
             ALTER INDEX audit_log_pkey RENAME TO audit_log_unpartitioned_pkey;
             ALTER INDEX ix_audit_log_subject RENAME TO ix_audit_log_unpartitioned_subject;
             ALTER INDEX ix_audit_log_recent RENAME TO ix_audit_log_unpartitioned_recent;
             CREATE TABLE audit_log (LIKE audit_log_unpartitioned INCLUDING DEFAULTS) PARTITION BY RANGE (occurred_at);
             ALTER TABLE audit_log ADD CONSTRAINT audit_log_pkey PRIMARY KEY (tenant_id, chain, seq, occurred_at);
             CREATE INDEX ix_audit_log_subject ON audit_log (tenant_id, subject_person_id);
             CREATE INDEX ix_audit_log_recent ON audit_log (tenant_id, id);
             CREATE TABLE audit_log_default PARTITION OF audit_log DEFAULT;
             {n_distinct}
             INSERT INTO audit_log_default SELECT * FROM audit_log_unpartitioned;
             DROP TABLE audit_log_unpartitioned;
             {PARTITIONS_FN}
             -- The head's check that its row exists is planned at each call, with the month's
             -- partition as it is now: a plan cached by a pooled connection early in the month
             -- (the partition nearly empty, never analysed) may probe an index that does not pin
             -- the row and filter the tenant's rows. In the read bench the head functions took
             -- 38% of the database's CPU with cached plans, 16% planned at each call.
             ALTER FUNCTION audit_head_advance(uuid, int, bigint, text) SET plan_cache_mode = force_custom_plan;
             REVOKE ALL ON FUNCTION audit_log_partitions(int) FROM PUBLIC;
             GRANT EXECUTE ON FUNCTION audit_log_partitions(int) TO {APP_ROLE};
             SELECT audit_log_partitions({MONTHS_AHEAD});",
            n_distinct = if citus == 0 {
                "ALTER TABLE audit_log_default ALTER COLUMN tenant_id SET (n_distinct = 10);"
            } else {
                ""
            },
        );
        db.execute_unprepared(&sql).await?;
        grant_app(manager, "audit_log", "SELECT, INSERT").await?;
        enable_tenant_rls(manager, "audit_log").await
    }

    async fn down(&self, _manager: &SchemaManager) -> Result<(), DbErr> {
        Err(DbErr::Migration("the audit trail is not put back into one table".into()))
    }
}
