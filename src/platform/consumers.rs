//! Event consumers. A [`Handler`] applies an event inside a transaction for the event's tenant;
//! the consumer records `(consumer, event id)` in that same transaction, before the effect, so a
//! redelivered or concurrently delivered event takes effect exactly once.
//!
//! With RabbitMQ each handler has its own durable quorum queue bound to the events it wants,
//! manual acks and a prefetch; a message that fails `delivery_limit` times is dead-lettered to
//! `<prefix>.dead` (queue `<prefix>.<consumer>.dead`). In-process, the relay calls the same
//! handlers directly and keeps events that keep failing in the `dead_letters` table.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures::{FutureExt, StreamExt};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use sea_orm::Set;
use sea_orm::entity::prelude::*;

use crate::platform::backoff::Backoff;
use crate::platform::codes;
use crate::platform::db::Durability;
use crate::platform::events::Envelope;
use crate::platform::{AppError, AppResult, Db, SystemScope, Tx};

/// Attempts before an event is dead-lettered for a consumer.
pub const DELIVERY_LIMIT: i64 = 5;
/// Deliveries a consumer applies at once.
const CONCURRENCY: usize = 8;

#[async_trait::async_trait]
pub trait Handler: Send + Sync + 'static {
    /// Stable consumer name: the queue and the idempotency key.
    fn name(&self) -> &'static str;
    /// The event types it applies (each context's `events::…::TYPE`); its queue is bound to
    /// exactly these.
    fn events(&self) -> Vec<&'static str>;
    /// Applies the event. Runs inside a transaction scoped to the event's tenant.
    async fn handle(&self, tx: &mut Tx, event: &Envelope) -> AppResult<()>;
}

pub mod processed_event {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "processed_events")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub tenant_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub consumer: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub event_id: Uuid,
        pub processed_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod dead_letter {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "dead_letters")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub tenant_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub consumer: String,
        pub event_id: Uuid,
        pub event_type: String,
        pub payload: Json,
        pub error: String,
        pub dead_at: DateTimeUtc,
        pub attempts: i32,
        pub redriven_at: Option<DateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Now,
    Already,
}

/// Applies `event` with `handler` exactly once (see [`apply_once`]); a transaction that collided
/// with a concurrent one (a deadlock or serialization failure, `retry`) is tried again at once, a
/// few times, before the delivery counts as failed.
pub async fn apply(db: &Db, handler: &dyn Handler, event: &Envelope) -> AppResult<Applied> {
    let mut tries = 0;
    loop {
        match apply_once(db, handler, event).await {
            Err(e) if e.is(codes::RETRY) && tries < 4 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(5 * (1 << tries) + rand::random::<u64>() % 10)).await;
            }
            other => return other,
        }
    }
}

/// Applies `event` with `handler` once: the idempotency row goes in first, so a concurrent
/// duplicate waits on it and then fails, rolling its effect back.
async fn apply_once(db: &Db, handler: &dyn Handler, event: &Envelope) -> AppResult<Applied> {
    // Not flushed before the ack: an effect lost with its idempotency row to a database crash is
    // re-delivered by the anti-entropy sweep (`delivery`), which looks for exactly that row.
    let mut tx = db.begin_with(&SystemScope { tenant: event.tenant }, Durability::Redeliverable).await?;
    // One statement: the row goes in, or it was there already (a concurrent duplicate's insert
    // waits here for the first to commit or roll back, then finds it or takes its place).
    let row = processed_event::ActiveModel {
        tenant_id: Set(event.tenant),
        consumer: Set(handler.name().to_string()),
        event_id: Set(event.id),
        processed_at: Set(Utc::now()),
    };
    let inserted = processed_event::Entity::insert(row)
        .on_conflict(
            sea_orm::sea_query::OnConflict::columns([
                processed_event::Column::TenantId,
                processed_event::Column::Consumer,
                processed_event::Column::EventId,
            ])
            .do_nothing()
            .to_owned(),
        )
        .exec_without_returning(&*tx)
        .await?;
    if inserted == 0 {
        tx.rollback().await?;
        return Ok(Applied::Already);
    }
    // A handler that panics fails this attempt like any error; the relay and the consumer live on.
    let handled = std::panic::AssertUnwindSafe(handler.handle(&mut tx, event)).catch_unwind().await;
    match handled {
        Ok(result) => result?,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| String::from(*s))
                .or_else(|| panic.downcast_ref::<String>().cloned());
            return Err(AppError::internal(anyhow::anyhow!(
                "consumer {} panicked: {}",
                handler.name(),
                what.unwrap_or_else(|| "(no message)".into())
            )));
        }
    }
    match tx.commit().await {
        Ok(()) => Ok(Applied::Now),
        // A concurrent delivery committed the same idempotency row first. (A serialization
        // failure, `retry`, is not that: it goes back to be delivered again.)
        Err(e) if e.is(codes::CONFLICT) => Ok(Applied::Already),
        Err(e) => Err(e),
    }
}

/// Keeps an event a consumer could not apply, after `attempts` (once per consumer and event
/// until an operator redrives it).
pub async fn dead_letter(db: &Db, consumer: &str, event: &Envelope, error: &str, attempts: i32) -> AppResult<()> {
    let tx = db.begin(&SystemScope { tenant: event.tenant }).await?;
    let kept = dead_letter::Entity::find()
        .filter(dead_letter::Column::TenantId.eq(event.tenant))
        .filter(dead_letter::Column::Consumer.eq(consumer))
        .filter(dead_letter::Column::EventId.eq(event.id))
        .filter(dead_letter::Column::RedrivenAt.is_null())
        .one(&*tx)
        .await?;
    if kept.is_some() {
        return tx.rollback().await;
    }
    dead_letter::ActiveModel {
        tenant_id: Set(event.tenant),
        id: Set(Uuid::now_v7()),
        consumer: Set(consumer.to_string()),
        event_id: Set(event.id),
        event_type: Set(event.event_type.clone()),
        payload: Set(serde_json::to_value(event).unwrap_or_default()),
        error: Set(error.chars().take(500).collect()),
        dead_at: Set(Utc::now()),
        attempts: Set(attempts),
        redriven_at: Set(None),
    }
    .insert(&*tx)
    .await?;
    tx.commit().await
}

/// A consumer that could not apply an event.
#[derive(Debug, Clone)]
pub struct Failure {
    pub consumer: &'static str,
    pub error: String,
    /// Retrying cannot help (the payload is not what its type says): a dead letter at once.
    pub permanent: bool,
}

/// Whether an error from a handler can never go away by retrying.
pub fn is_permanent(e: &AppError) -> bool {
    e.is(crate::platform::events::UNREADABLE)
}

/// In-process delivery: every handler that wants the event applies it. Returns the handlers
/// that failed, with their errors.
pub async fn dispatch_local(db: &Db, handlers: &[Arc<dyn Handler>], event: &Envelope) -> Vec<Failure> {
    let mut failed = Vec::new();
    for h in handlers {
        if h.events().contains(&event.event_type.as_str())
            && let Err(e) = apply(db, h.as_ref(), event).await
        {
            tracing::warn!(consumer = h.name(), event.id = %event.id, error = %e.reason(), "consumer failed");
            failed.push(Failure { consumer: h.name(), error: e.reason(), permanent: is_permanent(&e) });
        }
    }
    failed
}

/// The RabbitMQ topology of the deployment's consumers: per consumer a durable quorum queue
/// `<prefix>.<consumer>` bound to the event types it applies, its retry queues
/// `<prefix>.<consumer>.retry.<n>` (each holds a message for its delay, then hands it back to
/// the consumer's queue), and its dead queue `<prefix>.<consumer>.dead` (what the broker gave up
/// on: a delivery that was never acknowledged `DELIVERY_LIMIT` times, as when a consumer dies
/// mid-message over and over). Declared by the publisher before it publishes and by each
/// consumer when it connects, so no event is routed to a queue that is not there.
#[derive(Debug, Clone)]
pub struct Topology {
    pub prefix: String,
    pub consumers: Vec<(&'static str, Vec<&'static str>)>,
    pub retry_delays: Vec<Duration>,
}

/// The header a retried message carries: how many retries it has had.
const ATTEMPT_HEADER: &str = "x-cloudhis-attempt";

impl Topology {
    pub fn of(prefix: &str, handlers: &[Arc<dyn Handler>], retry_delays: Vec<Duration>) -> Self {
        Self {
            prefix: prefix.to_string(),
            consumers: handlers.iter().map(|h| (h.name(), h.events())).collect(),
            retry_delays,
        }
    }

    pub fn exchange(&self) -> String {
        format!("{}.events", self.prefix)
    }

    fn dead_exchange(&self) -> String {
        format!("{}.dead", self.prefix)
    }

    pub fn queue(&self, consumer: &str) -> String {
        format!("{}.{consumer}", self.prefix)
    }

    fn retry_queue(&self, consumer: &str, n: usize) -> String {
        format!("{}.{consumer}.retry.{n}", self.prefix)
    }

    pub fn dead_queue(&self, consumer: &str) -> String {
        format!("{}.{consumer}.dead", self.prefix)
    }

    /// Every queue of the topology: each consumer's, its retry queues and its dead queue.
    pub fn queues(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (name, _) in &self.consumers {
            out.push(self.queue(name));
            out.extend((0..self.retry_delays.len()).map(|n| self.retry_queue(name, n)));
            out.push(self.dead_queue(name));
        }
        out
    }

    /// Declares the exchanges and every consumer's queues and bindings (idempotent).
    pub async fn declare_all(&self, ch: &Channel) -> anyhow::Result<()> {
        for (name, events) in &self.consumers {
            self.declare(ch, name, events).await?;
        }
        Ok(())
    }

    /// Declares one consumer's queues and bindings (idempotent).
    pub async fn declare(&self, ch: &Channel, consumer: &str, events: &[&str]) -> anyhow::Result<()> {
        let durable = ExchangeDeclareOptions { durable: true, ..Default::default() };
        ch.exchange_declare(self.exchange().into(), ExchangeKind::Topic, durable, FieldTable::default()).await?;
        ch.exchange_declare(self.dead_exchange().into(), ExchangeKind::Direct, durable, FieldTable::default()).await?;
        let q_opts = QueueDeclareOptions { durable: true, ..Default::default() };
        let quorum = || ("x-queue-type", AMQPValue::LongString("quorum".into()));
        let queue = self.queue(consumer);
        let dead = self.dead_queue(consumer);
        ch.queue_declare(dead.clone().into(), q_opts, table(&[quorum()])).await?;
        ch.queue_bind(
            dead.into(),
            self.dead_exchange().into(),
            consumer.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
        ch.queue_declare(
            queue.clone().into(),
            q_opts,
            table(&[
                quorum(),
                ("x-delivery-limit", AMQPValue::LongLongInt(DELIVERY_LIMIT)),
                ("x-dead-letter-exchange", AMQPValue::LongString(self.dead_exchange().as_str().into())),
                ("x-dead-letter-routing-key", AMQPValue::LongString(consumer.into())),
            ]),
        )
        .await?;
        for (n, delay) in self.retry_delays.iter().enumerate() {
            ch.queue_declare(
                self.retry_queue(consumer, n).into(),
                q_opts,
                table(&[
                    ("x-message-ttl", AMQPValue::LongLongInt(delay.as_millis() as i64)),
                    ("x-dead-letter-exchange", AMQPValue::LongString("".into())),
                    ("x-dead-letter-routing-key", AMQPValue::LongString(queue.as_str().into())),
                ]),
            )
            .await?;
        }
        for event_type in events {
            ch.queue_bind(
                queue.clone().into(),
                self.exchange().into(),
                format!("*.{event_type}").into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        }
        Ok(())
    }
}

/// Starts one RabbitMQ consumer per handler, and one reader of its dead queue; each reconnects
/// with backoff until the process ends.
pub fn spawn_amqp(db: Db, url: String, topology: Arc<Topology>, handlers: Vec<Arc<dyn Handler>>) {
    for h in handlers {
        let (db, url, topology) = (db.clone(), url.clone(), topology.clone());
        tokio::spawn(async move {
            let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
            loop {
                match consume(&db, &url, &topology, h.clone(), &mut backoff).await {
                    Ok(()) => tracing::warn!(consumer = h.name(), "consumer stream ended; reconnecting"),
                    Err(e) => {
                        tracing::warn!(consumer = h.name(), error = %format!("{e:#}"), "consumer failed; reconnecting")
                    }
                }
                backoff.wait().await;
            }
        });
    }
}

fn table(entries: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in entries {
        t.insert(ShortString::from(*k), v.clone());
    }
    t
}

/// Declares the consumer's queues and applies its deliveries until the connection ends; the
/// backoff starts again from its shortest delay once the consumer is subscribed.
async fn consume(
    db: &Db,
    url: &str,
    topology: &Topology,
    h: Arc<dyn Handler>,
    backoff: &mut Backoff,
) -> anyhow::Result<()> {
    let conn = Connection::connect(
        url,
        ConnectionProperties::default()
            .with_connection_name(format!("{}-consumer-{}", topology.prefix, h.name()).into()),
    )
    .await?;
    let ch = conn.create_channel().await?;
    ch.basic_qos(32, BasicQosOptions::default()).await?;
    topology.declare(&ch, h.name(), &h.events()).await?;
    // Retries are published on a channel of their own, with confirms: a delivery is acknowledged
    // only once its retry is safely queued.
    let retries = conn.create_channel().await?;
    retries.confirm_select(ConfirmSelectOptions::default()).await?;
    let mut deliveries = ch
        .basic_consume(
            topology.queue(h.name()).into(),
            h.name().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let mut dead = ch
        .basic_consume(
            topology.dead_queue(h.name()).into(),
            format!("{}-dead", h.name()).into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    backoff.reset();
    // Up to CONCURRENCY deliveries are applied at once (idempotency makes order between them
    // irrelevant to the effect); the prefetch keeps the next ones ready.
    let slots = Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
    loop {
        tokio::select! {
            delivery = deliveries.next() => {
                let Some(delivery) = delivery else { return Ok(()) };
                let delivery = delivery?;
                let permit = slots.clone().acquire_owned().await.expect("semaphore is never closed");
                let (db, h, retries, topology) = (db.clone(), h.clone(), retries.clone(), topology.clone());
                tokio::spawn(async move {
                    let _permit = permit;
                    deliver(&db, h.as_ref(), &topology, &retries, delivery).await;
                });
            }
            given_up = dead.next() => {
                let Some(given_up) = given_up else { return Ok(()) };
                keep_given_up(db, h.name(), given_up?).await;
            }
        }
    }
}

/// Applies one delivery. A failure is retried after the next delay through the consumer's retry
/// queue (not requeued at once); after the last delay, or at once when retrying cannot help
/// (an unreadable payload), it is kept in `dead_letters` with its attempts and the reason.
async fn deliver(db: &Db, h: &dyn Handler, topology: &Topology, retries: &Channel, delivery: lapin::message::Delivery) {
    let attempt = delivery
        .properties
        .headers()
        .as_ref()
        .and_then(|t| t.inner().get(ATTEMPT_HEADER))
        .and_then(|v| v.as_long_long_int().or(v.as_long_int().map(i64::from)))
        .unwrap_or(0) as usize;
    let event: Envelope = match serde_json::from_slice(&delivery.data) {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(consumer = h.name(), error = %e, "a message that is not an event; dropping it");
            let _ = delivery.ack(BasicAckOptions::default()).await;
            return;
        }
    };
    let error = match apply(db, h, &event).await {
        Ok(_) => {
            let _ = delivery.ack(BasicAckOptions::default()).await;
            return;
        }
        Err(e) => e,
    };
    let last = attempt >= topology.retry_delays.len();
    if is_permanent(&error) || last {
        tracing::warn!(consumer = h.name(), event.id = %event.id, attempts = attempt + 1, error = %error, "dead letter");
        match dead_letter(db, h.name(), &event, &error.reason(), attempt as i32 + 1).await {
            Ok(()) => {
                let _ = delivery.ack(BasicAckOptions::default()).await;
            }
            Err(_) => {
                let _ = delivery.nack(BasicNackOptions { requeue: true, ..Default::default() }).await;
            }
        }
        return;
    }
    tracing::warn!(
        consumer = h.name(), event.id = %event.id, attempt = attempt + 1,
        retry_in_ms = topology.retry_delays[attempt].as_millis() as u64, error = %error, "consumer failed; retrying later"
    );
    let mut headers = FieldTable::default();
    headers.insert(ATTEMPT_HEADER.into(), AMQPValue::LongLongInt(attempt as i64 + 1));
    let queued = async {
        let confirm = retries
            .basic_publish(
                "".into(),
                topology.retry_queue(h.name(), attempt).into(),
                BasicPublishOptions::default(),
                &delivery.data,
                BasicProperties::default()
                    .with_message_id(event.id.to_string().into())
                    .with_content_type("application/json".into())
                    .with_delivery_mode(2)
                    .with_headers(headers),
            )
            .await?
            .await?;
        anyhow::ensure!(confirm.is_ack(), "the broker refused a retry");
        anyhow::Ok(())
    }
    .await;
    match queued {
        Ok(()) => {
            let _ = delivery.ack(BasicAckOptions::default()).await;
        }
        Err(e) => {
            tracing::warn!(consumer = h.name(), error = %format!("{e:#}"), "could not queue a retry; requeueing");
            let _ = delivery.nack(BasicNackOptions { requeue: true, ..Default::default() }).await;
        }
    }
}

/// A message the broker dead-lettered (its delivery limit reached): kept in `dead_letters`.
async fn keep_given_up(db: &Db, consumer: &str, delivery: lapin::message::Delivery) {
    let kept = match serde_json::from_slice::<Envelope>(&delivery.data) {
        Ok(event) => {
            let reason = format!("delivered {DELIVERY_LIMIT} times without an acknowledgement; the broker gave up");
            dead_letter(db, consumer, &event, &reason, DELIVERY_LIMIT as i32).await.is_ok()
        }
        Err(_) => true,
    };
    if kept {
        let _ = delivery.ack(BasicAckOptions::default()).await;
    } else {
        let _ = delivery.nack(BasicNackOptions { requeue: true, ..Default::default() }).await;
    }
}

/// Records every event of the tenant's outbox of the types `consumer` follows as applied: after
/// a rebuild from the source tables, those events are already counted.
pub async fn mark_processed(tx: &crate::platform::Tx, consumer: &'static str, types: &[&str]) -> AppResult<u64> {
    use sea_orm::{ConnectionTrait, DbBackend, Statement};
    let backend = tx.get_database_backend();
    // Event types are the code's own constants (`<context>.<event>`), never input.
    assert!(types.iter().all(|t| t.chars().all(|c| c.is_ascii_lowercase() || c == '.' || c == '_')));
    let like: Vec<String> = types.iter().map(|t| format!("event_type = '{t}'")).collect();
    let (t, n) = if backend == DbBackend::Postgres { ("$1", "$2") } else { ("?", "?") };
    let sql = format!(
        "INSERT INTO processed_events (tenant_id, consumer, event_id, processed_at)
         SELECT o.tenant_id, '{consumer}', o.id, {n} FROM outbox o
          WHERE o.tenant_id = {t} AND ({})
            AND NOT EXISTS (SELECT 1 FROM processed_events p
                             WHERE p.tenant_id = o.tenant_id AND p.consumer = '{consumer}' AND p.event_id = o.id)",
        like.join(" OR ")
    );
    // SQLite numbers `?` by position: the timestamp comes first in the text.
    let values: Vec<sea_orm::Value> = if backend == DbBackend::Postgres {
        vec![tx.tenant().into(), Utc::now().into()]
    } else {
        vec![Utc::now().into(), tx.tenant().into()]
    };
    Ok(tx.execute_raw(Statement::from_sql_and_values(backend, sql, values)).await?.rows_affected())
}
