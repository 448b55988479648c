//! The query planner's statistics where the database does not keep them (PostgreSQL).
//!
//! PostgreSQL's autovacuum analyses a table once enough of it changed, and the planner's choices
//! rest on what that saw. With autovacuum off (some managed and test servers run so) a table
//! created by a migration is never analysed: the planner guesses that every condition keeps one
//! row in 200, a tenant's `tenant_id = $1` looks like one row, every `(tenant_id, …)` index costs
//! the same, and it takes the smallest. The MPI's candidate query then read the tenant's whole
//! slice of `persons` through `ix_persons_replaced_by`, 33 ms at 20,000 persons and growing with
//! the tenant: registration slowed as a county was loaded.
//!
//! So when `autovacuum` is off, a worker of the server applies autovacuum's own rule to the
//! database's tables every `CLOUDHIS_ANALYZE_INTERVAL_SECONDS`: a table is analysed once more than
//! `autovacuum_analyze_threshold + autovacuum_analyze_scale_factor × rows` of its rows changed
//! since its last `ANALYZE` (50 + 10% by default; measured against the live rows, and without
//! per-table settings). One replica at a time (an advisory lock), in a process that runs the
//! workers (`CLOUDHIS_WORKERS`), on a connection of the login user without the app role: only a
//! table's owner may analyse it, so tables the login user does not own are left out. With
//! autovacuum on it does nothing. On Citus the coordinator holds no rows of a distributed table: the workers' own
//! settings keep their shards' statistics.
//!
//! A bulk import does not wait for either: when it ends it analyses the tables it filled
//! ([`analyse_after_load`]), with autovacuum on or off.

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, Statement, TransactionTrait};

use crate::platform::config::{Config, DbKind};

/// The advisory lock a pass holds. Arbitrary but fixed: "analyse" in ASCII hex.
pub const ANALYZE_LOCK: i64 = 0x0061_6e61_6c79_7365;

/// Whether the server's autovacuum is on (then it keeps the statistics).
pub async fn autovacuum_on(conn: &DatabaseConnection) -> Result<bool, DbErr> {
    let row = conn
        .query_one_raw(Statement::from_string(DbBackend::Postgres, "SELECT current_setting('autovacuum') = 'on' AS on"))
        .await?;
    Ok(row.map(|r| r.try_get::<bool>("", "on")).transpose()?.unwrap_or(true))
}

/// Analyses every table of the database's schema `public` that autovacuum's rule says is due
/// and that the connection's user owns, and returns their names; none when another replica is at
/// it. A table that fails (dropped meanwhile, say) is logged and left for the next pass.
pub async fn analyze_due(conn: &DatabaseConnection) -> Result<Vec<String>, DbErr> {
    let one = |sql: &str| Statement::from_string(DbBackend::Postgres, sql.to_string());
    // One transaction (ANALYZE may run in one), so the lock is held by the connection that
    // analyses and ends with it, whatever pool `conn` is.
    let tx = conn.begin().await?;
    let got = tx
        .query_one_raw(one(&format!("SELECT pg_try_advisory_xact_lock({ANALYZE_LOCK}) AS got")))
        .await?
        .map(|r| r.try_get::<bool>("", "got"))
        .transpose()?
        .unwrap_or(false);
    if !got {
        tx.rollback().await?;
        return Ok(Vec::new());
    }
    let due = tx
        .query_all_raw(one(
            "SELECT quote_ident(s.relname) AS name FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
              WHERE s.schemaname = 'public' AND pg_has_role(c.relowner, 'USAGE')
                AND s.n_mod_since_analyze > current_setting('autovacuum_analyze_threshold')::float8
                    + current_setting('autovacuum_analyze_scale_factor')::float8 * s.n_live_tup
              ORDER BY s.relname",
        ))
        .await?;
    let mut names = Vec::with_capacity(due.len());
    for row in due {
        let name: String = row.try_get("", "name")?;
        // Each in a savepoint: one table's failure does not undo the others.
        let one = tx.begin().await?;
        match one.execute_unprepared(&format!("ANALYZE public.{name}")).await {
            Ok(_) => {
                one.commit().await?;
                names.push(name);
            }
            Err(e) => {
                one.rollback().await?;
                tracing::warn!(table = %name, error = %e, "planner statistics: ANALYZE failed");
            }
        }
    }
    tx.commit().await?;
    Ok(names)
}

/// The tables a bulk import of residents fills and the MPI reads at every registration.
pub const IMPORTED: &[&str] = &["persons", "registrations", "duplicate_candidates"];

/// Runs `work` on a connection of the login user without the app role (only a table's owner
/// may analyse it), opened for it and closed after.
async fn as_owner<T, F, Fut>(config: &Config, work: F) -> Result<T, DbErr>
where
    F: FnOnce(DatabaseConnection) -> Fut,
    Fut: std::future::Future<Output = Result<T, DbErr>>,
{
    let owner = crate::platform::db::Db::connect_owner(config).await.map_err(|e| DbErr::Custom(format!("{e:#}")))?;
    let conn = owner.raw().clone();
    let out = work(conn.clone()).await;
    conn.close().await.ok();
    out
}

/// After a bulk load (PostgreSQL only): analyses `tables` now, as their owner, whatever
/// autovacuum's setting. Autovacuum (or, with it off, the worker below) would get there on its
/// own schedule, and the statistics system counts a session's inserts only when it reports them;
/// until then the MPI's queries on a freshly loaded county are planned as if it were empty. A
/// table still empty (analysed empty it would look empty to the planner until its next
/// `ANALYZE`) or not owned by the login user is left out, the latter with one warning per
/// process. Best effort: a failure is logged and left to autovacuum or the worker.
pub async fn analyse_after_load(config: &Config, tables: &[&str]) {
    static SAID_NOT_OWNER: std::sync::Once = std::sync::Once::new();
    if config.db_kind != DbKind::Postgres {
        return;
    }
    let tables: Vec<String> = tables.iter().map(|t| t.to_string()).collect();
    let done = as_owner(config, |conn| async move {
        // An import's job records its end only after this: an ANALYZE that would queue behind a
        // VACUUM, an index build or another ANALYZE of the table is left to autovacuum or the
        // worker instead (a warning), and the whole pass is bounded below.
        conn.execute_unprepared(&format!("SET lock_timeout = '{}s'", LOAD_LOCK_TIMEOUT.as_secs())).await?;
        // The tables that exist, schema-qualified and quoted, with whether they hold
        // anything and whether this user owns them.
        let rows = conn
            .query_all_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT 'public.' || quote_ident(c.relname) AS name, pg_has_role(c.relowner, 'USAGE') AS owned,
                        pg_relation_size(c.oid) > 0 AS filled
                   FROM unnest($1::text[]) AS t(name)
                   JOIN pg_class c ON c.oid = to_regclass('public.' || quote_ident(t.name))",
                [tables.into()],
            ))
            .await?;
        for row in rows {
            let name: String = row.try_get("", "name")?;
            if !row.try_get::<bool>("", "filled")? {
                continue;
            }
            if !row.try_get::<bool>("", "owned")? {
                SAID_NOT_OWNER.call_once(|| {
                    tracing::warn!(
                        table = %name,
                        "planner statistics: the login user does not own the imported tables; left to autovacuum"
                    )
                });
                continue;
            }
            // One table failing (a lock timeout, say) does not keep the others from theirs.
            if let Err(e) = conn.execute_unprepared(&format!("ANALYZE {name}")).await {
                tracing::warn!(table = %name, error = %e, "planner statistics: ANALYZE after a bulk load failed");
            }
        }
        Ok(())
    });
    match tokio::time::timeout(LOAD_PASS_LIMIT, done).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "planner statistics: analysing after a bulk load failed; left to autovacuum or the worker")
        }
        Err(_) => tracing::warn!(
            limit_s = LOAD_PASS_LIMIT.as_secs(),
            "planner statistics: analysing after a bulk load took too long; left to autovacuum or the worker"
        ),
    }
}

/// How long an `ANALYZE` after a bulk load waits for its table's lock.
const LOAD_LOCK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// How long the whole pass after a bulk load may take (three tables of a million-person county
/// take seconds).
const LOAD_PASS_LIMIT: std::time::Duration = std::time::Duration::from_secs(120);

/// Starts the worker (PostgreSQL only): every `config.analyze_interval`, when autovacuum is off,
/// [`analyze_due`].
/// The first pass is one interval after start. A failure (the database away, no owner rights)
/// is logged and tried again next time.
pub fn spawn(config: &Config) {
    let every = config.analyze_interval;
    if config.db_kind != DbKind::Postgres {
        return;
    }
    let config = config.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        let mut said_off = false;
        loop {
            tick.tick().await;
            let pass = as_owner(&config, |conn| async move {
                match autovacuum_on(&conn).await? {
                    true => Ok(None),
                    false => analyze_due(&conn).await.map(Some),
                }
            });
            match pass.await {
                Ok(None) => {}
                Ok(Some(tables)) => {
                    if !said_off {
                        tracing::warn!(
                            "autovacuum is off on the database: the server analyses tables itself (docs/operations.md, \"Planner statistics\")"
                        );
                        said_off = true;
                    }
                    if !tables.is_empty() {
                        tracing::info!(tables = %tables.join(","), "analysed tables whose statistics were due");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "planner statistics: the pass failed; trying again next time"),
            }
        }
    });
}
