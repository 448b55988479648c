//! What makes delivery complete, across tenants: the dead letters an operator sees and redrives,
//! and the anti-entropy sweep, the guarantee that holds even when the broker loses a message we
//! cannot see. The sweep compares, per consumer, the published events it follows with its
//! `processed_events` rows and applies any event older than a grace period that has neither a
//! row nor an open dead letter. Both run with the relay's cross-tenant reading
//! (`cloudhis.relay = on`) and apply events through the consumers' own idempotent `apply`.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use sea_orm::{ConnectionTrait, DatabaseTransaction, FromQueryResult, Statement, TransactionTrait};
use uuid::Uuid;

use crate::platform::cache::Cache;
use crate::platform::config::DbKind;
use crate::platform::consumers::{self, Applied, Handler, dead_letter};
use crate::platform::events::{Envelope, outbox};
use crate::platform::{AppResult, Db};

/// A transaction that reads every tenant's delivery rows.
async fn across_tenants(db: &Db) -> AppResult<DatabaseTransaction> {
    let tx = db.raw().begin().await?;
    if db.kind() == DbKind::Postgres {
        tx.execute_unprepared("SET LOCAL cloudhis.relay = 'on'").await?;
    }
    Ok(tx)
}

/// Open dead letters (not yet redriven) per consumer.
pub async fn dead_letter_counts(db: &Db) -> AppResult<Vec<(String, i64)>> {
    #[derive(FromQueryResult)]
    struct Row {
        consumer: String,
        n: i64,
    }
    let tx = across_tenants(db).await?;
    let rows = Row::find_by_statement(Statement::from_string(
        tx.get_database_backend(),
        "SELECT consumer, CAST(COUNT(*) AS BIGINT) AS n FROM dead_letters WHERE redriven_at IS NULL GROUP BY consumer",
    ))
    .all(&tx)
    .await?;
    tx.rollback().await?;
    Ok(rows.into_iter().map(|r| (r.consumer, r.n)).collect())
}

/// Open dead letters, oldest first, optionally of one consumer or one event.
pub async fn dead_letters(db: &Db, consumer: Option<&str>, event: Option<Uuid>) -> AppResult<Vec<dead_letter::Model>> {
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
    let tx = across_tenants(db).await?;
    let mut q = dead_letter::Entity::find().filter(dead_letter::Column::RedrivenAt.is_null());
    if let Some(c) = consumer {
        q = q.filter(dead_letter::Column::Consumer.eq(c));
    }
    if let Some(e) = event {
        q = q.filter(dead_letter::Column::EventId.eq(e));
    }
    let rows = q.order_by_asc(dead_letter::Column::DeadAt).all(&tx).await?;
    tx.rollback().await?;
    Ok(rows)
}

/// What a redrive did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RedriveReport {
    /// Applied now.
    pub applied: usize,
    /// Already applied (by a delivery that came after the dead letter): nothing to do.
    pub already: usize,
    /// Still failing; they stay dead letters.
    pub failed: usize,
}

/// Delivers open dead letters again, through their consumer's idempotent `apply`. Each one that
/// is applied (or turns out to be already) is marked redriven; one that still fails stays open.
pub async fn redrive(
    db: &Db,
    handlers: &[Arc<dyn Handler>],
    consumer: Option<&str>,
    event: Option<Uuid>,
) -> AppResult<RedriveReport> {
    let mut report = RedriveReport::default();
    for letter in dead_letters(db, consumer, event).await? {
        let Some(h) = handlers.iter().find(|h| h.name() == letter.consumer) else {
            tracing::warn!(consumer = %letter.consumer, "a dead letter of a consumer this build does not have");
            report.failed += 1;
            continue;
        };
        let envelope: Envelope = match serde_json::from_value(letter.payload.clone()) {
            Ok(e) => e,
            Err(_) => {
                report.failed += 1;
                continue;
            }
        };
        // A lock held by a live consumer (SQLite's one writer, a serialization failure) is not
        // the letter's fault: wait and try again a few times before calling it still failing.
        let mut result = consumers::apply(db, h.as_ref(), &envelope).await;
        for wait_ms in [250, 1000, 4000] {
            match &result {
                Err(e) if transient(&e.reason()) => {
                    tokio::time::sleep(Duration::from_millis(wait_ms)).await;
                    result = consumers::apply(db, h.as_ref(), &envelope).await;
                }
                _ => break,
            }
        }
        match result {
            Ok(applied) => {
                if applied == Applied::Now {
                    report.applied += 1;
                } else {
                    report.already += 1;
                }
                mark_redriven(db, &letter).await?;
            }
            Err(e) => {
                tracing::warn!(consumer = %letter.consumer, event.id = %letter.event_id, error = %e.reason(), "redrive failed");
                report.failed += 1;
            }
        }
    }
    Ok(report)
}

/// An error another transaction caused, which a retry can get past.
fn transient(reason: &str) -> bool {
    ["database is locked", "could not serialize", "deadlock detected", "try again"].iter().any(|t| reason.contains(t))
}

async fn mark_redriven(db: &Db, letter: &dead_letter::Model) -> AppResult<()> {
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    let tx = across_tenants(db).await?;
    dead_letter::Entity::update_many()
        .col_expr(dead_letter::Column::RedrivenAt, Some(Utc::now()).into())
        .filter(dead_letter::Column::TenantId.eq(letter.tenant_id))
        .filter(dead_letter::Column::Id.eq(letter.id))
        .exec(&tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// What one sweep found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Events a consumer should have applied by now and had not.
    pub missing: usize,
    /// Of those, applied by the sweep.
    pub applied: usize,
}

/// Events per consumer and sweep: the rest wait for the next sweep.
const SWEEP_BATCH: u64 = 1000;

/// One anti-entropy pass over every consumer: events published within `window`, older than
/// `grace`, that the consumer follows but has neither applied nor dead-lettered, are applied.
pub async fn sweep(
    db: &Db,
    handlers: &[Arc<dyn Handler>],
    grace: Duration,
    window: Duration,
) -> AppResult<SweepReport> {
    let mut report = SweepReport::default();
    let now = Utc::now();
    let cutoff = now - chrono::Duration::from_std(grace).unwrap_or_default();
    let since = now - chrono::Duration::from_std(window).unwrap_or_default();
    for h in handlers {
        let missing = missing_events(db, h.as_ref(), cutoff, since).await?;
        report.missing += missing.len();
        for row in missing {
            let envelope = Envelope::from(row);
            match consumers::apply(db, h.as_ref(), &envelope).await {
                Ok(Applied::Now) => {
                    tracing::warn!(consumer = h.name(), event.id = %envelope.id, "the sweep applied an event its delivery lost");
                    report.applied += 1;
                }
                Ok(Applied::Already) => {}
                Err(e) => {
                    tracing::warn!(consumer = h.name(), event.id = %envelope.id, error = %e.reason(), "the sweep could not apply an event")
                }
            }
        }
    }
    Ok(report)
}

async fn missing_events(
    db: &Db,
    h: &dyn Handler,
    cutoff: chrono::DateTime<Utc>,
    since: chrono::DateTime<Utc>,
) -> AppResult<Vec<outbox::Model>> {
    use sea_orm::EntityTrait;
    let types = h.events();
    if types.is_empty() {
        return Ok(Vec::new());
    }
    let tx = across_tenants(db).await?;
    let backend = tx.get_database_backend();
    let placeholders: Vec<String> = (0..types.len()).map(|_| "?".to_string()).collect();
    let sql = format!(
        "SELECT o.* FROM outbox o
          WHERE o.published_at IS NOT NULL AND o.published_at >= ? AND o.occurred_at < ?
            AND o.event_type IN ({})
            AND NOT EXISTS (SELECT 1 FROM processed_events p
                             WHERE p.tenant_id = o.tenant_id AND p.consumer = ? AND p.event_id = o.id)
            AND NOT EXISTS (SELECT 1 FROM dead_letters d
                             WHERE d.tenant_id = o.tenant_id AND d.consumer = ? AND d.event_id = o.id
                               AND d.redriven_at IS NULL)
          ORDER BY o.seq LIMIT {SWEEP_BATCH}",
        placeholders.join(", ")
    );
    let mut values: Vec<sea_orm::Value> = vec![since.into(), cutoff.into()];
    values.extend(types.iter().map(|t| sea_orm::Value::from(*t)));
    values.push(h.name().into());
    values.push(h.name().into());
    let sql = crate::platform::db::numbered(backend, &sql);
    let rows =
        outbox::Entity::find().from_raw_sql(Statement::from_sql_and_values(backend, sql, values)).all(&tx).await?;
    tx.rollback().await?;
    Ok(rows)
}

/// Runs the sweep every `interval`, on one replica at a time (a lease in the cache), and drops
/// idempotency keys older than a day.
pub fn spawn_sweep(
    db: Db,
    cache: Cache,
    handlers: Vec<Arc<dyn Handler>>,
    interval: Duration,
    grace: Duration,
    window: Duration,
) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(interval).await;
            match cache.try_lease("job:event-sweep", interval).await {
                Ok(true) => {
                    match sweep(&db, &handlers, grace, window).await {
                        Ok(r) if r.missing > 0 => {
                            tracing::warn!(missing = r.missing, applied = r.applied, "event sweep")
                        }
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e.reason(), "event sweep failed"),
                    }
                    if let Err(e) = crate::platform::idempotency::purge(&db).await {
                        tracing::warn!(error = %e, "purging old idempotency keys failed");
                    }
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "event sweep lease unavailable"),
            }
        }
    });
}
