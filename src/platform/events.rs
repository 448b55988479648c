//! Events through the transactional outbox. A service writes its event with `tx.emit(…)` in the
//! same transaction as the change; after commit the relay publishes pending rows in order to the
//! bus (RabbitMQ with confirms, or in-process) and marks them sent. Publishing is at-least-once;
//! consumers are idempotent by event id. Payloads carry ids and facts, never personal data.
//!
//! Only one replica relays to RabbitMQ at a time (a transaction-level advisory lock on
//! PostgreSQL), and rows leave in `seq` order: the events of one aggregate are written by
//! transactions that lock it, so they carry increasing numbers and leave in the order they
//! happened.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::FutureExt;
use sea_orm::entity::prelude::*;
use sea_orm::{ConnectionTrait, DbBackend, QueryOrder, QuerySelect, Set, Statement, TransactionTrait};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::platform::backoff::Backoff;
use crate::platform::bus::Bus;
use crate::platform::config::DbKind;
use crate::platform::consumers::{self, Handler};
use crate::platform::{AppError, AppResult, Db};

pub mod outbox {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "outbox")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub tenant_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub event_type: String,
        pub version: i32,
        pub aggregate_id: Uuid,
        pub actor_user_id: Option<Uuid>,
        pub occurred_at: DateTimeUtc,
        pub payload: Json,
        pub published_at: Option<DateTimeUtc>,
        pub attempts: i32,
        pub last_error: Option<String>,
        pub seq: Option<i64>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// One kind of event a context publishes: a Rust type per event, serialized as the payload, with
/// its type name beside it. Each context declares its events in its `events.rs`; consumers
/// subscribe by `TYPE` and read the payload with [`Envelope::decode`].
pub trait Event: Serialize + serde::de::DeserializeOwned {
    /// `<context>.<event>`: the event's type, and its routing key after the tenant.
    const TYPE: &'static str;
}

/// The error code of an event whose payload is not what its type says: such an event can never
/// be applied, so it becomes a dead letter at once, with the reason, instead of being retried.
pub const UNREADABLE: crate::platform::codes::Code = crate::platform::codes::EVENT_UNREADABLE;

/// The envelope every consumer receives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub id: Uuid,
    #[serde(rename = "type")]
    pub event_type: String,
    pub version: i32,
    pub tenant: Uuid,
    pub occurred_at: DateTime<Utc>,
    pub actor: Option<Uuid>,
    pub aggregate: Uuid,
    pub payload: serde_json::Value,
}

impl Envelope {
    /// `<tenant>.<context>.<event>`; the event type is already `<context>.<event>`.
    pub fn routing_key(&self) -> String {
        format!("{}.{}", self.tenant, self.event_type)
    }

    /// An envelope for `event`, as the relay would deliver it (tests, replays, benchmarks).
    pub fn of<E: Event>(tenant: Uuid, aggregate: Uuid, occurred_at: DateTime<Utc>, event: &E) -> Self {
        Self {
            id: Uuid::now_v7(),
            event_type: E::TYPE.into(),
            version: 1,
            tenant,
            occurred_at,
            actor: None,
            aggregate,
            payload: serde_json::to_value(event).expect("an event serializes"),
        }
    }

    /// The payload as event `E`. An envelope of another type, or a payload that does not
    /// deserialize (a missing field, a wrong type), is 422 [`UNREADABLE`] naming what is wrong.
    pub fn decode<E: Event>(&self) -> AppResult<E> {
        if self.event_type != E::TYPE {
            return Err(AppError::new(UNREADABLE, format!("a {} event was read as {}", self.event_type, E::TYPE)));
        }
        self.decode_payload()
    }

    /// The payload as `T`, for a type several events share (the referral events' change).
    pub fn decode_payload<T: serde::de::DeserializeOwned>(&self) -> AppResult<T> {
        serde_json::from_value(self.payload.clone()).map_err(|e| {
            let reason = crate::platform::error::sanitize(&e.to_string());
            AppError::new(UNREADABLE, format!("the {} payload is unreadable: {reason}", self.event_type))
        })
    }
}

impl From<outbox::Model> for Envelope {
    fn from(m: outbox::Model) -> Self {
        Self {
            id: m.id,
            event_type: m.event_type,
            version: m.version,
            tenant: m.tenant_id,
            occurred_at: m.occurred_at,
            actor: m.actor_user_id,
            aggregate: m.aggregate_id,
            payload: m.payload,
        }
    }
}

/// Writes an event row in `conn`'s transaction.
pub async fn insert(
    conn: &impl ConnectionTrait,
    tenant: Uuid,
    actor: Option<Uuid>,
    event_type: &'static str,
    aggregate: Uuid,
    payload: serde_json::Value,
) -> AppResult<Uuid> {
    let id = Uuid::now_v7();
    // PostgreSQL numbers the row from a sequence (the column default); SQLite has one writer at a
    // time, so the next number after the highest is safe there.
    let seq = match conn.get_database_backend() {
        DbBackend::Postgres => sea_orm::ActiveValue::NotSet,
        _ => {
            let row = conn
                .query_one_raw(Statement::from_string(
                    DbBackend::Sqlite,
                    "SELECT COALESCE(MAX(seq), 0) + 1 AS next FROM outbox",
                ))
                .await?
                .expect("an aggregate returns a row");
            Set(Some(row.try_get::<i64>("", "next")?))
        }
    };
    outbox::ActiveModel {
        seq,
        tenant_id: Set(tenant),
        id: Set(id),
        event_type: Set(event_type.to_string()),
        version: Set(1),
        aggregate_id: Set(aggregate),
        actor_user_id: Set(actor),
        occurred_at: Set(crate::platform::clock::now()),
        payload: Set(payload),
        published_at: Set(None),
        attempts: Set(0),
        last_error: Set(None),
    }
    .insert(conn)
    .await?;
    Ok(id)
}

/// The first event of `event_type` on `aggregate` whose payload names `id`: which event carries
/// a document (a charge inside a bill's event, say). Tenant-scoped, like every `Tx`.
pub async fn find_event(
    tx: &crate::platform::Tx,
    aggregate: Uuid,
    event_type: &str,
    id: Uuid,
) -> AppResult<Option<Uuid>> {
    let needle = id.to_string();
    Ok(outbox::Entity::find()
        .filter(outbox::Column::TenantId.eq(tx.tenant()))
        .filter(outbox::Column::AggregateId.eq(aggregate))
        .filter(outbox::Column::EventType.eq(event_type))
        .order_by_asc(outbox::Column::Seq)
        .all(&**tx)
        .await?
        .into_iter()
        .find(|e| e.payload.to_string().contains(&needle))
        .map(|e| e.id))
}

/// Every published event of the tenant of one of `types`, in publication order: the source a
/// rebuild replays.
pub async fn published(tx: &crate::platform::Tx, types: &[&str]) -> AppResult<Vec<Envelope>> {
    Ok(outbox::Entity::find()
        .filter(outbox::Column::TenantId.eq(tx.tenant()))
        .filter(outbox::Column::PublishedAt.is_not_null())
        .filter(outbox::Column::EventType.is_in(types.iter().copied()))
        .order_by_asc(outbox::Column::Seq)
        .all(&**tx)
        .await?
        .into_iter()
        .map(Envelope::from)
        .collect())
}

const BATCH: u64 = 200;
/// "cloudhis-relay" folded into a bigint.
const RELAY_LOCK: i64 = 0x6368_6973_7265_6c61;

/// Publishes one batch of pending events, in sequence order; returns how many left the outbox.
pub async fn relay_once(db: &Db, bus: &Bus, handlers: &[Arc<dyn Handler>]) -> anyhow::Result<usize> {
    if bus.is_amqp() { relay_amqp(db, bus).await } else { relay_local(db, bus, handlers).await }
}

/// To RabbitMQ: one relay at a time (transaction advisory lock), each event confirmed by the
/// broker before its row is marked.
async fn relay_amqp(db: &Db, bus: &Bus) -> anyhow::Result<usize> {
    let conn = db.raw();
    let tx = conn.begin().await?;
    if db.kind() == DbKind::Postgres {
        // The marks need no flush before the next batch: a mark lost to a database crash only
        // publishes its event again, and every consumer drops a repeat by its idempotency row.
        tx.execute_unprepared("SET LOCAL cloudhis.relay = 'on'; SET LOCAL synchronous_commit = off").await?;
        let got = tx
            .query_one_raw(Statement::from_string(
                DbBackend::Postgres,
                format!("SELECT pg_try_advisory_xact_lock({RELAY_LOCK}) AS ok"),
            ))
            .await?
            .map(|r| r.try_get::<bool>("", "ok"))
            .transpose()?
            .unwrap_or(false);
        if !got {
            tx.rollback().await?;
            return Ok(0);
        }
    }
    let rows = pending(&tx).await?;
    let keys: Vec<(Uuid, Uuid)> = rows.iter().map(|r| (r.tenant_id, r.id)).collect();
    let envelopes: Vec<Envelope> = rows.into_iter().map(Envelope::from).collect();
    let (confirmed, failure) = bus.publish_batch(&envelopes).await;
    let sent = &keys[..confirmed];
    mark_sent(&tx, sent).await?;
    tx.commit().await?;
    match failure {
        Some(e) if sent.is_empty() => Err(e),
        Some(e) => {
            tracing::warn!(error = %e, sent = sent.len(), "relay stopped part-way through a batch");
            Ok(sent.len())
        }
        None => Ok(sent.len()),
    }
}

/// In-process: the handlers apply each event (idempotently) and the live feed gets it; then its
/// row is marked. An event whose handlers keep failing is dead-lettered after the attempts.
async fn relay_local(db: &Db, bus: &Bus, handlers: &[Arc<dyn Handler>]) -> anyhow::Result<usize> {
    let rows = {
        let tx = db.raw().begin().await?;
        if db.kind() == DbKind::Postgres {
            tx.execute_unprepared("SET LOCAL cloudhis.relay = 'on'").await?;
        }
        let rows = pending(&tx).await?;
        tx.rollback().await?;
        rows
    };
    let mut done = 0;
    for row in rows {
        let (key, attempts) = ((row.tenant_id, row.id), row.attempts);
        let event = Arc::new(Envelope::from(row));
        let failed = consumers::dispatch_local(db, handlers, &event).await;
        // An unreadable event cannot be applied by retrying: its dead letter is written at once.
        for f in failed.iter().filter(|f| f.permanent) {
            consumers::dead_letter(db, f.consumer, &event, &f.error, attempts + 1).await?;
        }
        let retry: Vec<&consumers::Failure> = failed.iter().filter(|f| !f.permanent).collect();
        let tx = db.raw().begin().await?;
        if db.kind() == DbKind::Postgres {
            tx.execute_unprepared("SET LOCAL cloudhis.relay = 'on'").await?;
        }
        if retry.is_empty() || i64::from(attempts) + 1 >= consumers::DELIVERY_LIMIT {
            for f in &retry {
                consumers::dead_letter(db, f.consumer, &event, &f.error, attempts + 1).await?;
            }
            mark_sent(&tx, &[key]).await?;
            tx.commit().await?;
            bus.publish_live(event);
            done += 1;
        } else {
            outbox::Entity::update_many()
                .col_expr(outbox::Column::Attempts, (attempts + 1).into())
                .col_expr(outbox::Column::LastError, retry[0].error.clone().into())
                .filter(outbox::Column::TenantId.eq(key.0))
                .filter(outbox::Column::Id.eq(key.1))
                .exec(&tx)
                .await?;
            tx.commit().await?;
            anyhow::bail!("consumers failed on an event; will retry");
        }
    }
    Ok(done)
}

async fn pending(tx: &sea_orm::DatabaseTransaction) -> anyhow::Result<Vec<outbox::Model>> {
    Ok(outbox::Entity::find()
        .filter(outbox::Column::PublishedAt.is_null())
        .order_by_asc(outbox::Column::Seq)
        .limit(BATCH)
        .all(tx)
        .await?)
}

async fn mark_sent(tx: &sea_orm::DatabaseTransaction, sent: &[(Uuid, Uuid)]) -> anyhow::Result<()> {
    let now = Utc::now();
    for chunk in sent.chunks(100) {
        let mut cond = sea_orm::Condition::any();
        for (tenant, id) in chunk {
            cond = cond.add(
                sea_orm::Condition::all().add(outbox::Column::TenantId.eq(*tenant)).add(outbox::Column::Id.eq(*id)),
            );
        }
        outbox::Entity::update_many().col_expr(outbox::Column::PublishedAt, now.into()).filter(cond).exec(tx).await?;
    }
    Ok(())
}

/// Runs the relay until the process ends: woken after every commit that emitted events, and
/// every second regardless (rows from other replicas, or left by a crash). Retries with backoff
/// while the bus is down.
pub fn spawn_relay(
    db: Db,
    bus: Bus,
    wake: Arc<Notify>,
    handlers: Vec<Arc<dyn Handler>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        loop {
            // A panic here (a handler's is caught in `consumers::apply`) is a failed pass.
            let pass = std::panic::AssertUnwindSafe(relay_once(&db, &bus, &handlers)).catch_unwind().await;
            let pass = pass.unwrap_or_else(|_| Err(anyhow::anyhow!("the relay panicked")));
            match pass {
                Ok(n) if n as u64 == BATCH => backoff.reset(),
                Ok(_) => {
                    backoff.reset();
                    let _ = tokio::time::timeout(Duration::from_secs(1), wake.notified()).await;
                }
                Err(e) => {
                    let delay = backoff.next_delay();
                    tracing::warn!(error = %format!("{e:#}"), retry_in_ms = delay.as_millis() as u64, "event relay failed; retrying");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    })
}
