//! Database access. Every query on tenant data runs in a [`Tx`] opened for a tenant scope (a
//! request context or an explicit system scope); on PostgreSQL the tenant is set once per
//! transaction with `SET LOCAL`, which row-level security reads. The app runs as a role
//! that RLS applies to (`SET ROLE` on every new connection). Audit rows gathered during the
//! transaction are chained and written just before commit.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use sea_orm::sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr,
    SqliteTransactionMode, Statement, TransactionOptions, TransactionTrait,
};
use uuid::Uuid;

use crate::platform::audit::AuditEntry;
use crate::platform::audit::writer::Writer;
use crate::platform::config::{Config, DbKind};
use crate::platform::error::{AppError, AppResult};
use crate::platform::memo::TenantMemo;
use migrations::{Migrator, MigratorTrait};

/// Anything that names the tenant a transaction works for.
pub trait TenantScope {
    fn tenant_id(&self) -> Uuid;
}

/// A scope for work that is not a user's request: tenant files, background jobs, authz loading.
/// Construct it only where the tenant is known from trusted input.
#[derive(Debug, Clone, Copy)]
pub struct SystemScope {
    pub tenant: Uuid,
}

impl TenantScope for SystemScope {
    fn tenant_id(&self) -> Uuid {
        self.tenant
    }
}

/// How a transaction's commit reaches the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// The commit returns after its WAL is flushed: everything a user's request writes.
    Flushed,
    /// On PostgreSQL the commit returns before its WAL is flushed (`synchronous_commit = off`),
    /// so a crash of the database, not of the app, can lose the last ~0.6 s of such commits,
    /// never half of one. Only for work that is applied again when it is lost: a consumer's
    /// effect with its idempotency row (the anti-entropy sweep re-delivers an event that has no
    /// row) and the relay's "sent" marks (an unmarked event is published again and deduplicated).
    Redeliverable,
}

tokio::task_local! {
    static READ_ONLY: ();
}

/// Runs `work` with every PostgreSQL transaction it opens declared `READ ONLY`: the HTTP boundary
/// runs each `GET` in it (a safe method, RFC 9110 §9.2.1). The database then refuses any write
/// (an error, never a silent one), and such a transaction's audit rows go to the group commit
/// without first asking whether it wrote: one statement fewer per read. An operation that must
/// write (none of the GETs does; the every-operation tests run each on PostgreSQL) is a POST.
pub async fn read_only<F: std::future::Future>(work: F) -> F::Output {
    READ_ONLY.scope((), work).await
}

fn reading_only() -> bool {
    READ_ONLY.try_with(|_| ()).is_ok()
}

#[derive(Clone)]
pub struct Db {
    conn: DatabaseConnection,
    kind: DbKind,
    /// Signalled after a commit that wrote events, so the relay publishes at once.
    events_wake: Arc<Notify>,
    /// Group commit of read-only transactions' audit rows (PostgreSQL).
    audit_writer: Option<Writer>,
    /// Numbers reserved ahead in blocks (PostgreSQL), see [`NumberBlocks`].
    blocks: Option<Arc<NumberBlocks>>,
    /// Per-tenant views kept in memory (the institution tree), see [`TenantMemo`].
    memo: Arc<TenantMemo>,
}

/// Numbers of a per-key counter (an institution's medical record numbers) that this process
/// reserved ahead, a block at a time, in short transactions of their own (PostgreSQL). A counter
/// row updated in every writer's transaction is locked until that transaction commits, so every
/// writer of the key would queue behind it; taken once per block, it is locked for one statement.
/// Numbers of a block the process did not hand out before it stopped are skipped (a gap), and
/// numbers from several processes interleave: unique, not consecutive in time.
#[derive(Default)]
pub struct NumberBlocks(Mutex<HashMap<BlockKey, Vec<Range<i64>>>>);

/// A counter's key: its tenant and what it numbers (an institution).
type BlockKey = (Uuid, Uuid);

impl NumberBlocks {
    /// The next reserved number of `key` in `tenant`, if this process holds one.
    pub fn take(&self, tenant: Uuid, key: Uuid) -> Option<i64> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let ranges = map.get_mut(&(tenant, key))?;
        while let Some(r) = ranges.first_mut() {
            if let Some(n) = r.next() {
                return Some(n);
            }
            ranges.remove(0);
        }
        None
    }

    /// Keeps `range` of `key`'s numbers for later [`take`](Self::take)s.
    pub fn put(&self, tenant: Uuid, key: Uuid, range: Range<i64>) {
        if !range.is_empty() {
            self.0.lock().unwrap_or_else(|e| e.into_inner()).entry((tenant, key)).or_default().push(range);
        }
    }
}

/// A transaction bound to one tenant. Deref gives the sea-orm connection for queries.
pub struct Tx {
    inner: DatabaseTransaction,
    tenant: Uuid,
    /// Declared `READ ONLY` at `BEGIN` (see [`read_only`]): it cannot have written.
    read_only: bool,
    audit: Vec<AuditEntry>,
    emitted: bool,
    events_wake: Arc<Notify>,
    audit_writer: Option<Writer>,
    /// The pool and its reserved numbers, for taking a number outside this transaction.
    ahead: Option<(Db, Arc<NumberBlocks>)>,
    memo: Arc<TenantMemo>,
    /// Set once this transaction wrote what a memo holds: its reads go to the database.
    memo_bypassed: std::sync::atomic::AtomicBool,
    /// The idempotency claim of the request this transaction serves (see `idempotency::scope`),
    /// and on SQLite the connection's change count when it began.
    claim: Option<(crate::platform::idempotency::Claim, Option<i64>)>,
}

impl std::ops::Deref for Tx {
    type Target = DatabaseTransaction;
    fn deref(&self) -> &DatabaseTransaction {
        &self.inner
    }
}

impl Tx {
    pub fn tenant(&self) -> Uuid {
        self.tenant
    }

    /// The process's per-tenant views (see [`TenantMemo`]); `None` once this transaction wrote
    /// one of them ([`Tx::writes_memoised`]), so it neither reads a stale view nor keeps its own
    /// uncommitted one.
    pub fn memo(&self) -> Option<&TenantMemo> {
        (!self.memo_bypassed.load(std::sync::atomic::Ordering::SeqCst)).then_some(&*self.memo)
    }

    /// Says this transaction writes what a memo holds: drops the tenant's views now, and the
    /// rest of the transaction reads the database. The writer drops them again after its commit.
    pub fn writes_memoised(&self) {
        self.skip_memo();
        self.memo.forget(Some(self.tenant));
    }

    /// The rest of this transaction reads the database, not the memo (for what outlives a memo).
    pub fn skip_memo(&self) {
        self.memo_bypassed.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// The pool and the numbers this process reserved ahead, where numbers are reserved in
    /// blocks (PostgreSQL); `None` on SQLite, where writers take turns anyway.
    pub fn ahead(&self) -> Option<(&Db, &NumberBlocks)> {
        self.ahead.as_ref().map(|(db, blocks)| (db, &**blocks))
    }

    /// Queues an audit row; it is chained and written in this transaction, just before commit, so
    /// the per-tenant chain head is locked for as short a time as possible.
    pub fn audit(&mut self, entry: AuditEntry) {
        self.audit.push(entry);
    }

    /// Writes an event to the outbox in this transaction; it is published after commit.
    pub async fn emit<E: crate::platform::events::Event>(
        &mut self,
        actor: Option<Uuid>,
        aggregate: Uuid,
        event: &E,
    ) -> AppResult<Uuid> {
        let payload = serde_json::to_value(event).map_err(AppError::internal)?;
        self.emitted = true;
        crate::platform::events::insert(&self.inner, self.tenant, actor, E::TYPE, aggregate, payload).await
    }

    /// Serialises this transaction with every other one that locks any of `keys` (in `class`)
    /// until it ends: for read-modify-write of derived rows (a rollup summary computed from
    /// sibling rows) that concurrent consumers would otherwise skew. On PostgreSQL a transaction
    /// advisory lock per key, taken in sorted order so two lockers cannot deadlock; keys fold to
    /// 32 bits, and a collision only serialises two unrelated writers. On SQLite every `Tx` is
    /// IMMEDIATE (see `begin`), so transactions already take turns.
    pub async fn lock_keys(&self, class: i32, keys: &[Uuid]) -> AppResult<()> {
        if self.inner.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        let mut folded: Vec<i32> = keys
            .iter()
            .map(|k| {
                let v = k.as_u128();
                (v as u32 ^ (v >> 32) as u32 ^ (v >> 64) as u32 ^ (v >> 96) as u32) as i32
            })
            .collect();
        folded.sort_unstable();
        folded.dedup();
        for key in folded {
            self.inner.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({class}, {key})")).await?;
        }
        Ok(())
    }

    /// Commits, with the audit rows: a transaction that wrote appends them to its tenant's
    /// chain just before its commit (atomic with the write); one that only read commits first
    /// and hands them to the group writer (PostgreSQL), returning once they are committed.
    pub async fn commit(self) -> AppResult<()> {
        // Only a transaction that audits (every write of patient data does; side transactions
        // such as a block of record numbers do not), and before the audit rows, which would
        // count as writes.
        if let Some((claim, changes_at_begin)) = self.claim.as_ref().filter(|_| !self.audit.is_empty()) {
            crate::platform::idempotency::mark_committed(&self.inner, claim, *changes_at_begin).await?;
        }
        let grouped =
            !self.audit.is_empty() && self.audit_writer.is_some() && !self.emitted && self.wrote_nothing().await?;
        let Tx { inner, tenant, audit, emitted, events_wake, audit_writer, .. } = self;
        if let Some(writer) = audit_writer.filter(|_| grouped) {
            inner.commit().await?;
            return writer.append(tenant, audit).await;
        }
        if !audit.is_empty() {
            crate::platform::audit::chain::append(&inner, tenant, audit).await?;
        }
        inner.commit().await.map_err(commit_failed)?;
        if emitted {
            events_wake.notify_one();
        }
        Ok(())
    }

    /// Whether this transaction has written nothing so far (PostgreSQL, Citus included): what
    /// decides at commit whether its audit rows go into it or to the group commit.
    pub async fn wrote_nothing(&self) -> AppResult<bool> {
        if self.read_only {
            return Ok(true);
        }
        only_read(&self.inner, self.tenant).await
    }

    pub async fn rollback(self) -> AppResult<()> {
        self.inner.rollback().await?;
        Ok(())
    }
}

/// A `COMMIT` that failed. A connection cut during it leaves the outcome unknown: the commit may
/// have landed before the cut. It answers 503 like any cut, and the log says which it was.
fn commit_failed(e: DbErr) -> AppError {
    if crate::platform::error::connection_cut(&e) {
        tracing::warn!(error = %e, "connection cut during COMMIT: the transaction's outcome is unknown");
        return AppError::Unavailable(anyhow::Error::new(e).context("COMMIT, outcome unknown"));
    }
    e.into()
}

/// Whether a PostgreSQL transaction has written nothing: it has no transaction id yet (any row
/// written or locked, or any DDL, assigns one). Asked about one of the tenant's institutions: on
/// Citus that router query runs on the worker holding the tenant's rows (every tenant table is
/// co-located by tenant), in this transaction, where its writes have their id; the coordinator
/// assigns none for them. A tenant without institutions counts as written (audited in the
/// transaction, the safe way).
async fn only_read(tx: &DatabaseTransaction, tenant: Uuid) -> AppResult<bool> {
    let row = tx
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT pg_current_xact_id_if_assigned() IS NULL AS only_read FROM institutions
              WHERE tenant_id = $1 LIMIT 1",
            [tenant.into()],
        ))
        .await?;
    Ok(match row {
        Some(row) => row.try_get("", "only_read")?,
        None => false,
    })
}

/// The statement that sets the row-level-security key for the rest of a transaction. `SET LOCAL`
/// (not `set_config`): on Citus it travels to the workers with the transaction
/// (`citus.propagate_set_commands = 'local'`, set by `platform::citus`), where the shards'
/// policies read it. A UUID's text is hex digits and dashes, safe to write into the statement.
pub fn set_tenant_sql(tenant: Uuid) -> String {
    format!("SET LOCAL cloudhis.tenant_id = '{tenant}'")
}

/// How many pooled connections a transaction's `BEGIN` tries before the failure is the answer
/// (503): one more than a pool that lost every idle connection at once would need, for a small pool.
const BEGIN_ATTEMPTS: u32 = 4;

/// `BEGIN` and the transaction's `settings`, on a pooled connection that answers. A connection
/// the server cut while it sat in the pool (a restart, a failover, an administrator ending it)
/// fails on its first statement; nothing has happened yet, so the next connection is tried, up
/// to [`BEGIN_ATTEMPTS`] in all. sqlx closes the broken one instead of returning it.
pub(crate) async fn begin_answering(
    conn: &DatabaseConnection,
    settings: Option<&str>,
) -> Result<DatabaseTransaction, DbErr> {
    let mut attempt = 1;
    loop {
        let tried = async {
            let tx = conn.begin().await?;
            if let Some(settings) = settings {
                tx.execute_unprepared(settings).await?;
            }
            Ok::<_, DbErr>(tx)
        };
        match tried.await {
            Err(e) if attempt < BEGIN_ATTEMPTS && crate::platform::error::connection_cut(&e) => {
                tracing::warn!(attempt, error = %e, "database connection failed at BEGIN; trying another");
                attempt += 1;
            }
            other => return other,
        }
    }
}

impl Db {
    /// Connects the application pool. On PostgreSQL every connection assumes `config.db_role`.
    pub async fn connect(config: &Config) -> anyhow::Result<Self> {
        let mut opts = ConnectOptions::new(config.database_url.clone());
        opts.sqlx_logging(false)
            .max_connections(config.db_pool_size)
            .connect_timeout(Duration::from_secs(5))
            .acquire_timeout(Duration::from_secs(10))
            // A health check only for a connection idle a second or more (one a restart or a
            // proxy may have cut): a busy pool's connections go out without a ping round trip.
            .test_before_acquire_if_idle_for(Duration::from_secs(1));
        match config.db_kind {
            DbKind::Sqlite => {
                opts.map_sqlx_sqlite_opts(sqlite_options);
            }
            DbKind::Postgres => {
                let role = config.db_role.clone();
                if !role.is_empty() {
                    if !role.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                        anyhow::bail!("CLOUDHIS_DB_ROLE must be a plain identifier");
                    }
                    // Per pooled connection (sea-orm's own after_connect runs once per pool).
                    let sql = format!("SET ROLE {role}");
                    opts.map_sqlx_postgres_pool_opts(move |pool| {
                        let sql = sql.clone();
                        pool.after_connect(move |conn, _meta| {
                            let sql = sql.clone();
                            Box::pin(async move {
                                sea_orm::sqlx::Executor::execute(conn, sea_orm::sqlx::AssertSqlSafe(sql))
                                    .await
                                    .map(|_| ())
                            })
                        })
                    });
                }
            }
        }
        let conn = Database::connect(opts).await?;
        let audit_writer = (config.db_kind == DbKind::Postgres).then(|| Writer::spawn(conn.clone()));
        let blocks = (config.db_kind == DbKind::Postgres).then(Arc::default);
        Ok(Self { conn, kind: config.db_kind, events_wake: Arc::default(), audit_writer, blocks, memo: Arc::default() })
    }

    /// Connects as the login user without assuming the app role: for migrations and operator
    /// commands that must see every tenant (audit verify).
    pub async fn connect_owner(config: &Config) -> anyhow::Result<Self> {
        let mut opts = ConnectOptions::new(config.database_url.clone());
        opts.sqlx_logging(false).max_connections(1).connect_timeout(Duration::from_secs(5));
        if config.db_kind == DbKind::Sqlite {
            opts.map_sqlx_sqlite_opts(sqlite_options);
        }
        let conn = Database::connect(opts).await?;
        Ok(Self {
            conn,
            kind: config.db_kind,
            events_wake: Arc::default(),
            audit_writer: None,
            blocks: None,
            memo: Arc::default(),
        })
    }

    pub fn events_wake(&self) -> Arc<Notify> {
        self.events_wake.clone()
    }

    pub fn kind(&self) -> DbKind {
        self.kind
    }

    /// This process's per-tenant views (see [`TenantMemo`]).
    pub fn memo(&self) -> &TenantMemo {
        &self.memo
    }

    /// The raw pool, for platform code only (health checks, migrations, tests).
    pub fn raw(&self) -> &DatabaseConnection {
        &self.conn
    }

    /// Opens a transaction for `scope`'s tenant and sets the RLS key once.
    pub async fn begin(&self, scope: &impl TenantScope) -> AppResult<Tx> {
        self.begin_with(scope, Durability::Flushed).await
    }

    /// Opens a transaction for `scope`'s tenant with the given durability (see [`Durability`]).
    pub async fn begin_with(&self, scope: &impl TenantScope, durability: Durability) -> AppResult<Tx> {
        let tenant = scope.tenant_id();
        // Only where the group commit takes a read's audit rows (not the owner's connection).
        let read_only = self.audit_writer.is_some() && reading_only();
        let inner = match self.kind {
            // IMMEDIATE takes SQLite's write lock up front, so concurrent writers queue on the
            // busy timeout instead of failing on a read-to-write upgrade.
            DbKind::Sqlite => {
                self.conn
                    .begin_with_options(TransactionOptions {
                        sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
                        ..Default::default()
                    })
                    .await?
            }
            DbKind::Postgres => {
                let mut sql = set_tenant_sql(tenant);
                if durability == Durability::Redeliverable {
                    sql.push_str("; SET LOCAL synchronous_commit = off");
                }
                if read_only {
                    sql.insert_str(0, "SET TRANSACTION READ ONLY; ");
                }
                begin_answering(&self.conn, Some(&sql)).await?
            }
        };
        let claim = match crate::platform::idempotency::claimed(tenant) {
            Some(claim) if self.kind == DbKind::Sqlite => {
                Some((claim, Some(crate::platform::idempotency::changes_so_far(&inner).await?)))
            }
            Some(claim) => Some((claim, None)),
            None => None,
        };
        Ok(Tx {
            inner,
            tenant,
            read_only,
            claim,
            audit: Vec::new(),
            emitted: false,
            events_wake: self.events_wake.clone(),
            audit_writer: self.audit_writer.clone(),
            ahead: self.blocks.clone().map(|b| (self.clone(), b)),
            memo: self.memo.clone(),
            memo_bypassed: Default::default(),
        })
    }

    /// A transaction over the tenant registry only (no tenant yet: login by code, tenant apply).
    pub async fn begin_registry(&self) -> Result<DatabaseTransaction, DbErr> {
        self.conn.begin().await
    }

    pub async fn ping(&self) -> AppResult<()> {
        self.conn
            .execute_unprepared("SELECT 1")
            .await
            .map_err(|e| AppError::Unavailable(anyhow::Error::new(e).context("database")))?;
        Ok(())
    }

    /// Runs pending migrations. On PostgreSQL, under a session advisory lock on a single
    /// connection, so replicas starting together migrate once and the rest wait.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        match self.kind {
            DbKind::Sqlite => Migrator::up(&self.conn, None).await?,
            DbKind::Postgres => {
                self.conn.execute_unprepared(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK})")).await?;
                let result = Migrator::up(&self.conn, None).await;
                self.conn.execute_unprepared(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})")).await?;
                result?;
                if crate::platform::citus::present(&self.conn).await? {
                    let r = crate::platform::citus::distribute(&self.conn).await?;
                    tracing::info!(
                        reference = r.reference.len(),
                        distributed = r.distributed.len(),
                        already = r.already,
                        "citus: tenant tables distributed by tenant_id"
                    );
                }
                audit_partitions(&self.conn).await?;
            }
        }
        Ok(())
    }

    /// Whether every known migration has been applied.
    pub async fn pending_migrations(&self) -> anyhow::Result<usize> {
        Ok(Migrator::get_pending_migrations(&self.conn).await?.len())
    }
}

/// Makes the audit trail's month partitions of this month and the next few, and of any month the
/// default partition caught rows of (PostgreSQL; see migration `m20261207_000032`). Run by
/// `migrate` and daily by the server; returns how many it made.
pub async fn audit_partitions(conn: &DatabaseConnection) -> Result<i32, DbErr> {
    let row = conn
        .query_one_raw(sea_orm::Statement::from_string(
            DbBackend::Postgres,
            format!("SELECT audit_log_partitions({}) AS made", migrations::AUDIT_MONTHS_AHEAD),
        ))
        .await?;
    Ok(row.map(|r| r.try_get::<i32>("", "made")).transpose()?.unwrap_or(0))
}

/// The server's daily run of [`audit_partitions`] (PostgreSQL), so a server that runs for months
/// without a `migrate` still writes each month into its own partition. A failure is logged and
/// tried again the next day: the default partition takes the rows meanwhile.
pub fn spawn_audit_partitions_job(db: Db) {
    if db.kind != DbKind::Postgres {
        return;
    }
    tokio::spawn(async move {
        // The first run a day from now: `migrate` (on start, or the deploy's) has just made them.
        let day = Duration::from_secs(24 * 3600);
        let mut every = tokio::time::interval_at(tokio::time::Instant::now() + day, day);
        loop {
            every.tick().await;
            match audit_partitions(&db.conn).await {
                Ok(made) => tracing::info!(made, "audit_log month partitions made ahead"),
                Err(e) => tracing::warn!(error = %e, "audit_log month partitions could not be made"),
            }
        }
    });
}

/// Arbitrary but fixed: "cloudhis" in ASCII hex, truncated to fit a bigint.
const MIGRATION_LOCK: i64 = 0x636c_6f75_6468_6973;

fn sqlite_options(opts: SqliteConnectOptions) -> SqliteConnectOptions {
    // A 64 MiB page cache and memory-mapped reads: the default 2 MiB cache makes index lookups
    // in a large MPI miss constantly.
    opts.journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(30))
        .foreign_keys(true)
        .create_if_missing(true)
        .pragma("cache_size", "-65536")
        .pragma("mmap_size", "268435456")
}

/// SQL for the China Standard Time (UTC+8) date of a timestamp column, on either backend: the
/// day a visit or a charge counts on in statistics.
pub fn china_date_sql(backend: DbBackend, column: &str) -> String {
    match backend {
        DbBackend::Postgres => format!("CAST((({column} AT TIME ZONE 'UTC') + INTERVAL '8 hours') AS DATE)"),
        _ => format!("date({column}, '+8 hours')"),
    }
}

/// A count or sum per day, institution and dimension, as source contexts hand it to statistics.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, sea_orm::FromQueryResult)]
pub struct DailyCount {
    pub day: chrono::NaiveDate,
    pub institution_id: Uuid,
    pub dim: String,
    pub value: i64,
}

/// Runs a `day, institution_id, dim, value` aggregate with the tenant as its only parameter.
pub async fn daily_counts(tx: &Tx, sql: &str) -> AppResult<Vec<DailyCount>> {
    query_all(tx, sql, vec![tx.tenant().into()]).await
}

/// Runs a query written with `?` placeholders on either backend, into `T` rows.
pub async fn query_all<T: sea_orm::FromQueryResult>(
    tx: &Tx,
    sql: &str,
    values: Vec<sea_orm::Value>,
) -> AppResult<Vec<T>> {
    let backend = tx.get_database_backend();
    let sql = numbered(backend, sql);
    Ok(T::find_by_statement(Statement::from_sql_and_values(backend, sql, values)).all(&**tx).await?)
}

/// SQL written with `?` placeholders, numbered `$1, $2, …` for PostgreSQL.
pub fn numbered(backend: DbBackend, sql: &str) -> String {
    if backend != DbBackend::Postgres {
        return sql.to_string();
    }
    let mut out = String::with_capacity(sql.len() + 8);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push_str(&format!("${n}"));
        } else {
            out.push(c);
        }
    }
    out
}
