//! The hash chain. Each tenant's rows are numbered 1, 2, 3, … and each row's hash covers its
//! fields and the previous row's hash, so editing, deleting or reordering a row breaks the chain
//! at that row. Appends lock the tenant's chain head (`audit_heads`) for the rest of the
//! transaction, which is why the transaction appends last.

use chrono::{DateTime, SecondsFormat, SubsecRound, Utc};
use sea_orm::{ColumnTrait, ConnectionTrait, DatabaseTransaction, DbBackend, EntityTrait, QueryFilter, Statement};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::entity::{audit_head, audit_log};
use super::entry::AuditEntry;
use crate::platform::AppResult;

pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Rows per INSERT statement.
const CHUNK: usize = 16;

/// Appends `entries` to `tenant`'s chain inside `conn`'s transaction.
pub async fn append(conn: &DatabaseTransaction, tenant: Uuid, entries: Vec<AuditEntry>) -> AppResult<()> {
    let (mut seq, mut prev) = lock_head(conn, tenant).await?;
    let now = Utc::now().trunc_subsecs(6);
    let mut rows = Vec::with_capacity(entries.len());
    for e in entries {
        seq += 1;
        let mut row = audit_log::Model {
            tenant_id: tenant,
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
    // In statements of at most CHUNK rows (about 6 KiB of parameters). Over TCP, sqlx (which does
    // not set TCP_NODELAY) stalls about 40 ms on any statement whose message outgrows its 8 KiB
    // write buffer: one INSERT of a 100-patient worklist's rows took the page from 16 to 52 ms,
    // 48-row chunks cost 40 ms each. Fixed-size chunks also keep the statement cache to a
    // handful of shapes instead of one per list length.
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        audit_log::Entity::insert_many(rows.by_ref().take(CHUNK)).exec(conn).await?;
    }
    move_head(conn, tenant, seq, prev).await
}

/// Sets the head to the last appended row. On PostgreSQL the app role may not write
/// `audit_heads`: `audit_head_advance` moves it, forward only, to a row that exists.
async fn move_head(conn: &DatabaseTransaction, tenant: Uuid, seq: i64, hash: String) -> AppResult<()> {
    if conn.get_database_backend() == DbBackend::Postgres {
        conn.execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT audit_head_advance($1, $2, $3)",
            [tenant.into(), seq.into(), hash.into()],
        ))
        .await?;
        return Ok(());
    }
    audit_head::Entity::update_many()
        .col_expr(audit_head::Column::Seq, seq.into())
        .col_expr(audit_head::Column::Hash, hash.into())
        .filter(audit_head::Column::TenantId.eq(tenant))
        .exec(conn)
        .await?;
    Ok(())
}

/// The tenant's head, created at genesis on first use and locked for the rest of the
/// transaction (on PostgreSQL through `audit_head_lock`; SQLite's writers are serialized).
async fn lock_head(conn: &DatabaseTransaction, tenant: Uuid) -> AppResult<(i64, String)> {
    let backend = conn.get_database_backend();
    if backend == DbBackend::Postgres {
        let row = conn
            .query_one_raw(Statement::from_sql_and_values(
                backend,
                "SELECT seq, hash FROM audit_head_lock($1)",
                [tenant.into()],
            ))
            .await?
            .ok_or_else(|| crate::platform::AppError::internal(anyhow::anyhow!("audit head could not be locked")))?;
        return Ok((row.try_get("", "seq")?, row.try_get("", "hash")?));
    }
    let select = "SELECT seq, hash FROM audit_heads WHERE tenant_id = ?";
    let insert = "INSERT INTO audit_heads (tenant_id, seq, hash) VALUES (?, 0, ?) ON CONFLICT (tenant_id) DO NOTHING";
    for _ in 0..2 {
        let row = conn.query_one_raw(Statement::from_sql_and_values(backend, select, [tenant.into()])).await?;
        if let Some(row) = row {
            return Ok((row.try_get("", "seq")?, row.try_get("", "hash")?));
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
    }
}
