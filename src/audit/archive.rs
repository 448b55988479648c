//! Archiving old months of the trail. The law asks for at least six months of logs (PRC
//! Cybersecurity Law, art. 21); beyond the retention, a month moves out of the database into a
//! file, with a seal that keeps the chains provable:
//!
//! 1. each chain's rows of the month are checked from where the chain's last seal left off (or
//!    genesis): a broken link stops the archive before anything is written or removed;
//! 2. the rows go to `<out>/audit_log_YYYY_MM.jsonl`, one JSON object per row in chain order,
//!    written to a temporary name, flushed and renamed;
//! 3. in one transaction the month leaves the database (PostgreSQL: its partition is detached and
//!    dropped; SQLite: its rows are deleted, the append-only triggers lifted for that statement
//!    only) and each chain it touched gets a seal: its last archived row and hash, the month, the
//!    file and the file's SHA-256. `audit verify` then starts each chain after its seal, so a
//!    remaining row that does not follow the seal, or a seal altered, breaks the chain there.
//!
//! `verify_file` re-checks an archived file against its seals. Runs as the database owner.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Datelike, Months, NaiveDate, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, FromQueryResult, QueryFilter, QueryOrder, QuerySelect,
    Statement, TransactionTrait,
};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::verify::{Start, link_broken, seal_starts};
use crate::platform::Db;
use crate::platform::audit::chain::GENESIS;
use crate::platform::audit::entity::{audit_log, audit_seal};

/// The least retention the archive accepts, in months (Cybersecurity Law, art. 21).
pub const MIN_KEEP_MONTHS: u32 = 6;

/// Rows read per page while a month is written out.
const PAGE: u64 = 2000;

/// What to archive: every month before `before` (the first of a month), provided the months
/// kept (`keep_months`, at least [`MIN_KEEP_MONTHS`]) all lie after it, counted back from `today`.
#[derive(Debug, Clone)]
pub struct ArchiveRequest {
    pub before: NaiveDate,
    pub keep_months: u32,
    pub today: NaiveDate,
    pub out: PathBuf,
}

/// One month written out and removed (a month without rows leaves no file).
#[derive(Debug, Clone)]
pub struct MonthArchived {
    pub month: NaiveDate,
    pub rows: u64,
    pub file: Option<PathBuf>,
    pub sha256: String,
}

/// A chain's end as the archive walks it: the next seq, the hash to follow, rows this month.
struct ChainEnd {
    next: i64,
    hash: String,
    rows: i64,
}

/// Archives every month before `req.before` (see the module's documentation), oldest first.
/// `owner` must be the owner's connection ([`Db::connect_owner`]).
pub async fn archive(owner: &Db, req: &ArchiveRequest) -> anyhow::Result<Vec<MonthArchived>> {
    anyhow::ensure!(
        req.keep_months >= MIN_KEEP_MONTHS,
        "the audit trail is kept at least {MIN_KEEP_MONTHS} months (Cybersecurity Law, art. 21), not {}",
        req.keep_months
    );
    anyhow::ensure!(req.before.day() == 1, "--before names a month (YYYY-MM)");
    let oldest_kept = req.today.checked_sub_months(Months::new(req.keep_months)).expect("a date in range");
    anyhow::ensure!(
        req.before <= oldest_kept,
        "{} is within the {} months kept: the latest month that may be archived is the one before {}",
        req.before.format("%Y-%m"),
        req.keep_months,
        oldest_kept.format("%Y-%m-%d"),
    );
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&req.out)?;
    }
    let conn = owner.raw();
    let months = months_before(conn, req.before).await?;
    let mut done = Vec::new();
    for month in months {
        done.push(archive_month(owner, month, &req.out).await?);
    }
    Ok(done)
}

fn month_start(month: NaiveDate) -> DateTime<Utc> {
    month.and_hms_opt(0, 0, 0).expect("midnight").and_utc()
}

fn partition_name(month: NaiveDate) -> String {
    format!("audit_log_y{}m{:02}", month.year(), month.month())
}

/// The months before `before` that hold rows (SQLite) or have a partition (PostgreSQL), oldest
/// first. On PostgreSQL the partitions are made first, which moves any row the default partition
/// caught into its month.
async fn months_before(conn: &sea_orm::DatabaseConnection, before: NaiveDate) -> anyhow::Result<Vec<NaiveDate>> {
    if conn.get_database_backend() == DbBackend::Postgres {
        conn.execute_unprepared(&format!("SELECT audit_log_partitions({})", migrations::AUDIT_MONTHS_AHEAD)).await?;
        let rows = conn
            .query_all_raw(Statement::from_string(
                DbBackend::Postgres,
                "SELECT c.relname::text AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                  WHERE i.inhparent = 'audit_log'::regclass ORDER BY 1",
            ))
            .await?;
        let mut months = Vec::new();
        for r in rows {
            let name: String = r.try_get("", "name")?;
            if let Some(month) = name
                .strip_prefix("audit_log_y")
                .and_then(|s| NaiveDate::parse_from_str(&format!("{}-01", s.replace('m', "-")), "%Y-%m-%d").ok())
                .filter(|m| *m < before)
            {
                months.push(month);
            }
        }
        return Ok(months);
    }
    let oldest = audit_log::Entity::find()
        .filter(audit_log::Column::OccurredAt.lt(month_start(before)))
        .order_by_asc(audit_log::Column::OccurredAt)
        .one(conn)
        .await?;
    let mut months = Vec::new();
    if let Some(row) = oldest {
        let mut m = row.occurred_at.date_naive().with_day(1).expect("day 1");
        while m < before {
            months.push(m);
            m = m + Months::new(1);
        }
    }
    Ok(months)
}

/// One page of a month's rows after `after` (tenant, chain, seq), in chain order. PostgreSQL
/// reads the month's partition itself: the owner is held to the parent's row-level security.
async fn page(
    conn: &impl ConnectionTrait,
    month: NaiveDate,
    after: Option<(Uuid, i16, i64)>,
) -> anyhow::Result<Vec<audit_log::Model>> {
    let backend = conn.get_database_backend();
    if backend == DbBackend::Postgres {
        let (t, c, s) = after.unwrap_or((Uuid::nil(), -1, 0));
        let sql = format!(
            "SELECT * FROM {} WHERE (tenant_id, chain, seq) > ($1, $2, $3) ORDER BY tenant_id, chain, seq LIMIT {PAGE}",
            partition_name(month)
        );
        let stmt = Statement::from_sql_and_values(backend, sql, [t.into(), i32::from(c).into(), s.into()]);
        return Ok(audit_log::Model::find_by_statement(stmt).all(conn).await?);
    }
    let mut q = audit_log::Entity::find()
        .filter(audit_log::Column::OccurredAt.gte(month_start(month)))
        .filter(audit_log::Column::OccurredAt.lt(month_start(month + Months::new(1))));
    if let Some((t, c, s)) = after {
        use sea_orm::ExprTrait;
        use sea_orm::sea_query::{Expr, IntoCondition};
        let key = Expr::tuple([
            Expr::col(audit_log::Column::TenantId),
            Expr::col(audit_log::Column::Chain),
            Expr::col(audit_log::Column::Seq),
        ]);
        let at = Expr::tuple([Expr::value(t), Expr::value(c), Expr::value(s)]);
        q = q.filter(key.gt(at).into_condition());
    }
    let rows = q
        .order_by_asc(audit_log::Column::TenantId)
        .order_by_asc(audit_log::Column::Chain)
        .order_by_asc(audit_log::Column::Seq)
        .limit(PAGE)
        .all(conn)
        .await?;
    Ok(rows)
}

/// A month written to its file: the rows, the file's SHA-256, where each chain ended.
struct Written {
    rows: u64,
    sha256: String,
    ends: HashMap<(Uuid, i16), ChainEnd>,
}

/// Checks and writes one month, then removes it and seals its chains (see the module's
/// documentation). A month without rows leaves no file; a refusal leaves none either.
async fn archive_month(owner: &Db, month: NaiveDate, out: &Path) -> anyhow::Result<MonthArchived> {
    let name = format!("audit_log_{}_{:02}.jsonl", month.year(), month.month());
    anyhow::ensure!(
        !file_sealed(owner, &name).await?,
        "nothing archived: rows dated {} appeared after the month was archived to {name} (a clock stepped back); \
         a sealed archive file is never overwritten",
        month.format("%Y-%m")
    );
    let file = out.join(&name);
    let partial = out.join(format!("{name}.partial"));
    let checked = async {
        let written = write_month(owner, month, &partial).await?;
        later_rows_of_sealed_chains(owner, month, &written.ends).await?;
        Ok::<_, anyhow::Error>(written)
    };
    let written = match checked.await {
        Ok(w) => w,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
    };
    let kept = if written.rows == 0 {
        std::fs::remove_file(&partial)?;
        None
    } else {
        std::fs::rename(&partial, &file)?;
        Some(file)
    };
    remove_and_seal(owner, month, &name, &written).await?;
    Ok(MonthArchived { month, rows: written.rows, file: kept, sha256: written.sha256 })
}

/// Creates a file only its owner may read: the trail says who touched whose record.
fn create_private(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)
}

/// Checks the month's chains from their seals and writes the rows to `partial`, flushed to disk.
async fn write_month(owner: &Db, month: NaiveDate, partial: &Path) -> anyhow::Result<Written> {
    let mut writer = std::io::BufWriter::new(create_private(partial)?);
    let mut sha = Sha256::new();
    let mut ends: HashMap<(Uuid, i16), ChainEnd> = HashMap::new();
    let mut starts: HashMap<Uuid, HashMap<i16, Start>> = HashMap::new();
    let (mut after, mut rows) = (None, 0u64);
    loop {
        let batch = page(owner.raw(), month, after).await?;
        let Some(last) = batch.last() else { break };
        after = Some((last.tenant_id, last.chain, last.seq));
        for row in batch {
            if let std::collections::hash_map::Entry::Vacant(e) = starts.entry(row.tenant_id) {
                e.insert(seal_starts(seals_of_tenant(owner, row.tenant_id).await?));
            }
            let end = ends.entry((row.tenant_id, row.chain)).or_insert_with(|| {
                let start = starts.get_mut(&row.tenant_id).and_then(|s| s.remove(&row.chain));
                let start = start.unwrap_or_else(Start::genesis);
                ChainEnd { next: start.seq + 1, hash: start.hash, rows: 0 }
            });
            if let Some(reason) = link_broken(&row, end.next, &end.hash) {
                let (tenant, chain, seq) = (row.tenant_id, row.chain, end.next);
                if row.seq > seq
                    && let Some(at) = dated_elsewhere(owner, tenant, chain, seq).await?
                {
                    anyhow::bail!(
                        "nothing archived: row {seq} of tenant {tenant} chain {chain} is dated {}, out of order with \
                         the rows after it (a clock stepped back); archive through that month instead",
                        at.format("%Y-%m")
                    );
                }
                anyhow::bail!(
                    "nothing archived: the audit chain of tenant {tenant} chain {chain} breaks at seq {seq}: {reason}; \
                     run `cloudhis audit verify`"
                );
            }
            end.next += 1;
            end.rows += 1;
            end.hash = row.hash.clone();
            let mut line = serde_json::to_vec(&row)?;
            line.push(b'\n');
            sha.update(&line);
            writer.write_all(&line)?;
            rows += 1;
        }
    }
    let f = writer.into_inner().map_err(|e| e.into_error())?;
    f.sync_all()?;
    Ok(Written { rows, sha256: hex::encode(sha.finalize()), ends })
}

/// When a chain's row is missing from its month: the month it is dated in, if it is still in
/// the database.
async fn dated_elsewhere(owner: &Db, tenant: Uuid, chain: i16, seq: i64) -> anyhow::Result<Option<DateTime<Utc>>> {
    let tx = owner.raw().begin().await?;
    scope_to(&tx, tenant).await?;
    let row = audit_log::Entity::find()
        .filter(audit_log::Column::TenantId.eq(tenant))
        .filter(audit_log::Column::Chain.eq(chain))
        .filter(audit_log::Column::Seq.eq(seq))
        .one(&tx)
        .await?;
    tx.rollback().await?;
    Ok(row.map(|r| r.occurred_at))
}

/// Whether a seal of any tenant names `file`.
async fn file_sealed(owner: &Db, file: &str) -> anyhow::Result<bool> {
    for tenant in crate::tenancy::service::list_tenants(owner).await? {
        if seals_of_tenant(owner, tenant.id).await?.iter().any(|s| s.file == file) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Scopes the owner's transaction to `tenant` (row-level security applies to the owner too).
async fn scope_to(tx: &impl ConnectionTrait, tenant: Uuid) -> anyhow::Result<()> {
    if tx.get_database_backend() == DbBackend::Postgres {
        tx.execute_unprepared(&crate::platform::db::set_tenant_sql(tenant)).await?;
    }
    Ok(())
}

/// A chain's rows are numbered in the order they were appended, their times taken by the
/// writing process: a clock that stepped back could put a later row of a chain into an earlier
/// month. Sealing past such a row would leave it below the seal; the archive refuses instead.
async fn later_rows_of_sealed_chains(
    owner: &Db,
    month: NaiveDate,
    ends: &HashMap<(Uuid, i16), ChainEnd>,
) -> anyhow::Result<()> {
    let next_month = month_start(month + Months::new(1));
    for ((tenant, chain), end) in ends {
        let tx = owner.raw().begin().await?;
        scope_to(&tx, *tenant).await?;
        let stray = audit_log::Entity::find()
            .filter(audit_log::Column::TenantId.eq(*tenant))
            .filter(audit_log::Column::Chain.eq(*chain))
            .filter(audit_log::Column::Seq.lt(end.next))
            .filter(audit_log::Column::OccurredAt.gte(next_month))
            .one(&tx)
            .await?;
        tx.rollback().await?;
        if let Some(row) = stray {
            anyhow::bail!(
                "nothing removed: row {} of tenant {tenant} chain {chain} is dated in a later month than rows after it \
                 (a clock stepped back); archive through the month of {} instead",
                row.seq,
                row.occurred_at.format("%Y-%m")
            );
        }
    }
    Ok(())
}

/// Removes the month and seals each chain it touched, in one transaction, provided the month
/// still holds exactly the rows written to the file. On PostgreSQL the partition is detached
/// under a lock on the trail: waited for at most 10 s (every request's audit insert queues
/// behind it), then the archive fails and may be run again.
async fn remove_and_seal(owner: &Db, month: NaiveDate, file: &str, written: &Written) -> anyhow::Result<()> {
    let tx = owner.raw().begin().await?;
    let removed = if tx.get_database_backend() == DbBackend::Postgres {
        let part = partition_name(month);
        tx.execute_unprepared("SET LOCAL lock_timeout = '10s'").await?;
        let held = tx
            .query_one_raw(Statement::from_string(DbBackend::Postgres, format!("SELECT count(*) AS n FROM {part}")))
            .await?
            .map(|r| r.try_get::<i64>("", "n"))
            .transpose()?
            .unwrap_or(0);
        tx.execute_unprepared(&format!("ALTER TABLE audit_log DETACH PARTITION {part}")).await?;
        tx.execute_unprepared(&format!("DROP TABLE {part}")).await?;
        held as u64
    } else {
        tx.execute_unprepared("DROP TRIGGER audit_log_no_delete").await?;
        let deleted = audit_log::Entity::delete_many()
            .filter(audit_log::Column::OccurredAt.gte(month_start(month)))
            .filter(audit_log::Column::OccurredAt.lt(month_start(month + Months::new(1))))
            .exec(&tx)
            .await?;
        tx.execute_unprepared(
            "CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
               BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;",
        )
        .await?;
        deleted.rows_affected
    };
    anyhow::ensure!(
        removed == written.rows,
        "nothing removed: the month holds {removed} rows, {} were archived (rows arrived meanwhile); run it again",
        written.rows
    );
    let now = Utc::now();
    for ((tenant, chain), end) in &written.ends {
        scope_to(&tx, *tenant).await?;
        audit_seal::Entity::insert(audit_seal::ActiveModel::from(audit_seal::Model {
            tenant_id: *tenant,
            chain: *chain,
            seq: end.next - 1,
            hash: end.hash.clone(),
            before: month_start(month + Months::new(1)),
            rows: end.rows,
            file: file.to_string(),
            file_sha256: written.sha256.clone(),
            sealed_at: now,
        }))
        .exec(&tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// What `verify_file` found in one archived file.
#[derive(Debug, Clone)]
pub struct FileChecked {
    pub rows: u64,
    pub chains: usize,
}

/// Checks an archived file: its SHA-256 is the one its seals recorded, every row's hash holds,
/// each chain's rows follow on from the previous seal (or genesis) without a gap, and each chain
/// a seal names this file for ends in it exactly at that seal.
pub async fn verify_file(owner: &Db, path: &Path) -> anyhow::Result<FileChecked> {
    let name = path.file_name().and_then(|n| n.to_str()).ok_or_else(|| anyhow::anyhow!("not a file name"))?;
    let mut seals: HashMap<Uuid, Vec<audit_seal::Model>> = HashMap::new();
    for tenant in crate::tenancy::service::list_tenants(owner).await? {
        seals.insert(tenant.id, seals_of_tenant(owner, tenant.id).await?);
    }
    let of_file: Vec<&audit_seal::Model> = seals.values().flatten().filter(|s| s.file == name).collect();
    anyhow::ensure!(!of_file.is_empty(), "no seal names {name}: it is not an archive of this database");
    let bytes = std::fs::read(path)?;
    let sha256 = hex::encode(Sha256::digest(&bytes));
    if let Some(s) = of_file.iter().find(|s| s.file_sha256 != sha256) {
        anyhow::bail!("the file's SHA-256 is {sha256}, its seal says {} (the file was changed)", s.file_sha256);
    }
    let mut ends: HashMap<(Uuid, i16), (i64, String)> = HashMap::new();
    let mut rows = 0u64;
    for (n, line) in bytes.as_slice().lines().enumerate() {
        let row: audit_log::Model = serde_json::from_str(&line?)
            .map_err(|e| anyhow::anyhow!("line {}: not an archived audit row: {e}", n + 1))?;
        let key = (row.tenant_id, row.chain);
        let (next, prev) = match ends.remove(&key) {
            Some(end) => end,
            None => {
                // The chain's previous seal (the last one below this row) or genesis.
                let chain_seals = seals.get(&row.tenant_id).map(Vec::as_slice).unwrap_or_default();
                let before = chain_seals.iter().rfind(|s| s.chain == row.chain && s.seq < row.seq);
                before.map_or((1, GENESIS.to_string()), |s| (s.seq + 1, s.hash.clone()))
            }
        };
        if let Some(reason) = link_broken(&row, next, &prev) {
            anyhow::bail!("line {}: tenant {} chain {} at seq {next}: {reason}", n + 1, row.tenant_id, row.chain);
        }
        ends.insert(key, (next + 1, row.hash));
        rows += 1;
    }
    for seal in &of_file {
        match ends.get(&(seal.tenant_id, seal.chain)) {
            Some((next, hash)) if *next - 1 == seal.seq && *hash == seal.hash => {}
            end => anyhow::bail!(
                "tenant {} chain {} ends at seq {} in the file, its seal at seq {} (rows cut off)",
                seal.tenant_id,
                seal.chain,
                end.map_or(0, |(next, _)| next - 1),
                seal.seq
            ),
        }
    }
    anyhow::ensure!(ends.len() == of_file.len(), "the file holds chains no seal names (rows added)");
    Ok(FileChecked { rows, chains: ends.len() })
}

async fn seals_of_tenant(owner: &Db, tenant: Uuid) -> anyhow::Result<Vec<audit_seal::Model>> {
    let tx = owner.raw().begin().await?;
    scope_to(&tx, tenant).await?;
    let seals = crate::audit::verify::seals(&tx, tenant).await?;
    tx.rollback().await?;
    Ok(seals)
}
