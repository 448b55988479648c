//! The hash chains. Each tenant's trail is split over `AUDIT_CHAINS` chains; each chain's rows
//! are numbered 1, 2, 3, … and each row's hash covers its fields (its chain and number among
//! them) and the previous row's hash, so editing, deleting or reordering a row breaks its chain
//! at that row, and cutting rows off a chain's end disagrees with the chain's head
//! (`audit_heads`). An append locks one chain's head for the rest of its transaction: the first
//! one no other transaction holds, so concurrent requests of a tenant append side by side
//! instead of queueing behind one row (which is why the transaction still appends last).

use chrono::{DateTime, SecondsFormat, SubsecRound, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseTransaction, DbBackend, EntityTrait, QueryFilter, QueryTrait, Statement,
};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::entity::{audit_head, audit_log};
use super::entry::AuditEntry;
use crate::platform::AppResult;

pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Rows per INSERT statement: 17 parameters a row stays under both backends' limits. (Chunks
/// of 16 rows were a workaround for sqlx 0.9.0 not setting TCP_NODELAY, fixed in 0.9.1.)
const CHUNK: usize = 1000;

/// A chain's head: where the next row goes, and the time its rows are dated.
struct Head {
    chain: i16,
    seq: i64,
    hash: String,
    /// Taken once the head is held: on PostgreSQL the database's clock, so a chain's rows are
    /// dated in the order they were appended whichever server appends them (the archive takes
    /// a chain's rows month by month and relies on that order).
    at: DateTime<Utc>,
}

/// Where an append's last row went: enough to find out later whether its transaction committed
/// (`writer::landed`), on any backend, with no statement more.
#[derive(Debug, Clone)]
pub struct Tail {
    pub chain: i16,
    pub seq: i64,
    pub hash: String,
    pub at: DateTime<Utc>,
}

/// Appends `entries` to one of `tenant`'s chains inside `conn`'s transaction; returns where the
/// last one went (`None` for no entries), so a caller whose `COMMIT` was cut can look for it
/// instead of appending the rows a second time.
pub async fn append(conn: &DatabaseTransaction, tenant: Uuid, entries: Vec<AuditEntry>) -> AppResult<Option<Tail>> {
    if entries.is_empty() {
        return Ok(None);
    }
    let Head { chain, mut seq, hash: mut prev, at } = lock_head(conn, tenant).await?;
    let now = at.trunc_subsecs(6);
    let mut rows = Vec::with_capacity(entries.len());
    for e in entries {
        seq += 1;
        let mut row = audit_log::Model {
            tenant_id: tenant,
            chain,
            seq,
            id: Uuid::now_v7(),
            occurred_at: now,
            actor_user_id: e.actor_user_id,
            institution_id: e.institution_id,
            action: e.action.to_string(),
            resource_type: e.resource_type.to_string(),
            resource_id: e.resource_id,
            subject_person_id: e.subject_person_id,
            purpose: e.purpose.as_str().to_string(),
            outcome: e.outcome.as_str().to_string(),
            request_id: e.request_id,
            prev_hash: prev.clone(),
            hash: String::new(),
        };
        row.hash = row_hash(&row);
        prev = row.hash.clone();
        rows.push(audit_log::ActiveModel::from(row));
    }
    let head = Head { chain, seq, hash: prev, at: now };
    let tail = Tail { chain, seq, hash: head.hash.clone(), at: now };
    // Every chunk but the last on its own; on PostgreSQL the last one also moves the head.
    let last = rows.split_off((rows.len() - 1) / CHUNK * CHUNK);
    let mut earlier = rows.into_iter().peekable();
    while earlier.peek().is_some() {
        audit_log::Entity::insert_many(earlier.by_ref().take(CHUNK)).exec(conn).await?;
    }
    if conn.get_database_backend() == DbBackend::Postgres {
        insert_and_advance(conn, tenant, last, head).await?;
        return Ok(Some(tail));
    }
    audit_log::Entity::insert_many(last).exec(conn).await?;
    move_head(conn, tenant, head).await?;
    Ok(Some(tail))
}

/// On PostgreSQL, the last rows' INSERT and the head's advance in one statement (one round trip
/// fewer for every audited request). The app role may not write `audit_heads`:
/// `audit_head_advance` moves the head, forward only, to a row that exists; `head.at` is the
/// time the rows were dated, so its check reads the one month's partition that holds them. The insert is a data-modifying `WITH`, counted before the
/// function is called: `audit_head_advance` is a volatile function, whose own statements take a
/// fresh snapshot after the calling statement's changes so far, so its check finds the rows
/// (`tests/api/audit.rs::rows_beyond_one_statement_join_the_chain_in_order`). On Citus the
/// function does not check the row (`platform::citus`); there the test shows only that the
/// statement is accepted and the chain verifies.
async fn insert_and_advance(
    conn: &DatabaseTransaction,
    tenant: Uuid,
    rows: Vec<audit_log::ActiveModel>,
    head: Head,
) -> AppResult<()> {
    let insert = audit_log::Entity::insert_many(rows).build(DbBackend::Postgres);
    let mut values = insert.values.map(|v| v.0).unwrap_or_default();
    let n = values.len();
    let sql = format!(
        "WITH appended AS ({} RETURNING 1)
         SELECT audit_head_advance(${}, ${}, ${}, ${}, ${}) FROM (SELECT count(*) FROM appended) AS rows",
        insert.sql,
        n + 1,
        n + 2,
        n + 3,
        n + 4,
        n + 5
    );
    values.extend([tenant.into(), i32::from(head.chain).into(), head.seq.into(), head.hash.into(), head.at.into()]);
    conn.execute_raw(Statement::from_sql_and_values(DbBackend::Postgres, sql, values)).await?;
    Ok(())
}

/// Sets the chain's head to its last appended row (SQLite; PostgreSQL's moves with its last
/// rows, [`insert_and_advance`]).
async fn move_head(conn: &DatabaseTransaction, tenant: Uuid, head: Head) -> AppResult<()> {
    audit_head::Entity::update_many()
        .col_expr(audit_head::Column::Seq, head.seq.into())
        .col_expr(audit_head::Column::Hash, head.hash.into())
        .filter(audit_head::Column::TenantId.eq(tenant))
        .filter(audit_head::Column::Chain.eq(head.chain))
        .exec(conn)
        .await?;
    Ok(())
}

/// A head of the tenant, created at genesis on first use and locked for the rest of the
/// transaction: on PostgreSQL the first chain from 0 on that no other transaction holds
/// (`audit_head_lock`), so a quiet tenant writes chain 0 and a busy one spreads; SQLite's
/// writers are serialized, so it always appends to chain 0.
async fn lock_head(conn: &DatabaseTransaction, tenant: Uuid) -> AppResult<Head> {
    let backend = conn.get_database_backend();
    if backend == DbBackend::Postgres {
        let row = conn
            .query_one_raw(Statement::from_sql_and_values(
                backend,
                "SELECT chain, seq, hash, clock_timestamp() AS at FROM audit_head_lock($1, 0)",
                [tenant.into()],
            ))
            .await?
            .ok_or_else(|| crate::platform::AppError::internal(anyhow::anyhow!("audit head could not be locked")))?;
        let chain: i32 = row.try_get("", "chain")?;
        return Ok(Head {
            chain: chain as i16,
            seq: row.try_get("", "seq")?,
            hash: row.try_get("", "hash")?,
            at: row.try_get("", "at")?,
        });
    }
    let select = "SELECT seq, hash FROM audit_heads WHERE tenant_id = ? AND chain = 0";
    let insert = "INSERT INTO audit_heads (tenant_id, chain, seq, hash) VALUES (?, 0, 0, ?) ON CONFLICT (tenant_id, chain) DO NOTHING";
    for _ in 0..2 {
        let row = conn.query_one_raw(Statement::from_sql_and_values(backend, select, [tenant.into()])).await?;
        if let Some(row) = row {
            return Ok(Head { chain: 0, seq: row.try_get("", "seq")?, hash: row.try_get("", "hash")?, at: Utc::now() });
        }
        conn.execute_raw(Statement::from_sql_and_values(backend, insert, [tenant.into(), GENESIS.into()])).await?;
    }
    Err(crate::platform::AppError::internal(anyhow::anyhow!("audit head could not be created")))
}

/// The canonical hash of a row: every field, length-prefixed so no two rows encode alike.
pub fn row_hash(r: &audit_log::Model) -> String {
    fn put(h: &mut Sha256, v: Option<&str>) {
        match v {
            Some(s) => h.update(format!("{}:{s};", s.len())),
            None => h.update("-;"),
        }
    }
    let mut h = Sha256::new();
    let ts = fmt_ts(&r.occurred_at);
    let ids = [
        Some(r.tenant_id.to_string()),
        Some(r.seq.to_string()),
        Some(r.id.to_string()),
        Some(ts),
        r.actor_user_id.map(|u| u.to_string()),
        r.institution_id.map(|u| u.to_string()),
    ];
    for v in &ids {
        put(&mut h, v.as_deref());
    }
    put(&mut h, Some(&r.action));
    put(&mut h, Some(&r.resource_type));
    put(&mut h, r.resource_id.as_deref());
    put(&mut h, r.subject_person_id.map(|u| u.to_string()).as_deref());
    put(&mut h, Some(&r.purpose));
    put(&mut h, Some(&r.outcome));
    put(&mut h, r.request_id.as_deref());
    put(&mut h, Some(&r.prev_hash));
    // Rows written before the trail had several chains are chain 0 and hash as they did; the
    // encoding stays unambiguous, since a row of another chain has one field more.
    if r.chain != 0 {
        put(&mut h, Some(&r.chain.to_string()));
    }
    hex::encode(h.finalize())
}

fn fmt_ts(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> audit_log::Model {
        audit_log::Model {
            tenant_id: Uuid::nil(),
            chain: 0,
            seq: 1,
            id: Uuid::nil(),
            occurred_at: DateTime::from_timestamp(1_700_000_000, 123_000).unwrap(),
            actor_user_id: None,
            institution_id: None,
            action: "auth.login".into(),
            resource_type: "session".into(),
            resource_id: None,
            subject_person_id: None,
            purpose: "authentication".into(),
            outcome: "success".into(),
            request_id: None,
            prev_hash: GENESIS.into(),
            hash: String::new(),
        }
    }

    #[test]
    fn hash_changes_with_any_field() {
        let base = row_hash(&row());
        let mut r = row();
        r.outcome = "denied".into();
        assert_ne!(row_hash(&r), base);
        let mut r = row();
        r.resource_id = Some(String::new());
        assert_ne!(row_hash(&r), base, "None and empty must differ");
        let mut r = row();
        r.action = "auth.logi".into();
        r.resource_type = "nsession".into();
        assert_ne!(row_hash(&r), base, "field boundaries are unambiguous");
        let mut r = row();
        r.chain = 1;
        assert_ne!(row_hash(&r), base, "a row belongs to its chain");
    }
}
