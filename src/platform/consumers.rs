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
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{Connection, ConnectionProperties, ExchangeKind};
use sea_orm::Set;
use sea_orm::entity::prelude::*;

use crate::platform::backoff::Backoff;
use crate::platform::codes;
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

/// Applies `event` with `handler` exactly once: the idempotency row goes in first, so a
/// concurrent duplicate waits on it and then fails, rolling its effect back.
pub async fn apply(db: &Db, handler: &dyn Handler, event: &Envelope) -> AppResult<Applied> {
    let mut tx = db.begin(&SystemScope { tenant: event.tenant }).await?;
    let seen =
        processed_event::Entity::find_by_id((event.tenant, handler.name().to_string(), event.id)).one(&*tx).await?;
    if seen.is_some() {
        tx.rollback().await?;
        return Ok(Applied::Already);
    }
    let inserted = processed_event::ActiveModel {
        tenant_id: Set(event.tenant),
        consumer: Set(handler.name().to_string()),
        event_id: Set(event.id),
        processed_at: Set(Utc::now()),
    }
    .insert(&*tx)
    .await;
    match inserted {
        Ok(_) => {}
        Err(e) => {
            let err = AppError::from(e);
            if err.is(codes::CONFLICT) {
                return Ok(Applied::Already);
            }
            return Err(err);
        }
    }
    handler.handle(&mut tx, event).await?;
    match tx.commit().await {
        Ok(()) => Ok(Applied::Now),
        // A concurrent delivery committed the same idempotency row first. (A serialization
        // failure, `retry`, is not that: it goes back to be delivered again.)
        Err(e) if e.is(codes::CONFLICT) => Ok(Applied::Already),
        Err(e) => Err(e),
    }
}

/// Keeps an event a consumer could not apply (once per consumer and event).
pub async fn dead_letter(db: &Db, consumer: &str, event: &Envelope, error: &str) -> AppResult<()> {
    let tx = db.begin(&SystemScope { tenant: event.tenant }).await?;
    let kept = dead_letter::Entity::find()
        .filter(dead_letter::Column::TenantId.eq(event.tenant))
        .filter(dead_letter::Column::Consumer.eq(consumer))
        .filter(dead_letter::Column::EventId.eq(event.id))
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
            tracing::warn!(consumer = h.name(), event.id = %event.id, error = %e, "consumer failed");
            failed.push(Failure { consumer: h.name(), error: e.to_string(), permanent: is_permanent(&e) });
        }
    }
    failed
}

/// Starts one RabbitMQ consumer per handler; each reconnects with backoff until the process ends.
pub fn spawn_amqp(db: Db, url: String, prefix: String, handlers: Vec<Arc<dyn Handler>>) {
    for h in handlers {
        let (db, url, prefix) = (db.clone(), url.clone(), prefix.clone());
        tokio::spawn(async move {
            let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
            loop {
                match consume(&db, &url, &prefix, h.clone(), &mut backoff).await {
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
async fn consume(db: &Db, url: &str, prefix: &str, h: Arc<dyn Handler>, backoff: &mut Backoff) -> anyhow::Result<()> {
    let conn = Connection::connect(
        url,
        ConnectionProperties::default().with_connection_name(format!("{prefix}-consumer-{}", h.name()).into()),
    )
    .await?;
    let ch = conn.create_channel().await?;
    ch.basic_qos(32, BasicQosOptions::default()).await?;
    let exchange = format!("{prefix}.events");
    let dead_exchange = format!("{prefix}.dead");
    let queue = format!("{prefix}.{}", h.name());
    let dead_queue = format!("{queue}.dead");
    let durable = ExchangeDeclareOptions { durable: true, ..Default::default() };
    ch.exchange_declare(exchange.clone().into(), ExchangeKind::Topic, durable, FieldTable::default()).await?;
    ch.exchange_declare(dead_exchange.clone().into(), ExchangeKind::Direct, durable, FieldTable::default()).await?;
    let quorum = |extra: &[(&str, AMQPValue)]| {
        let mut entries = vec![("x-queue-type", AMQPValue::LongString("quorum".into()))];
        entries.extend(extra.iter().cloned());
        table(&entries)
    };
    let q_opts = QueueDeclareOptions { durable: true, ..Default::default() };
    ch.queue_declare(dead_queue.clone().into(), q_opts, quorum(&[])).await?;
    ch.queue_bind(
        dead_queue.into(),
        dead_exchange.clone().into(),
        h.name().into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await?;
    ch.queue_declare(
        queue.clone().into(),
        q_opts,
        quorum(&[
            ("x-delivery-limit", AMQPValue::LongLongInt(DELIVERY_LIMIT)),
            ("x-dead-letter-exchange", AMQPValue::LongString(dead_exchange.as_str().into())),
            ("x-dead-letter-routing-key", AMQPValue::LongString(h.name().into())),
        ]),
    )
    .await?;
    for event_type in h.events() {
        ch.queue_bind(
            queue.clone().into(),
            exchange.clone().into(),
            format!("*.{event_type}").into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    }
    let mut deliveries =
        ch.basic_consume(queue.into(), h.name().into(), BasicConsumeOptions::default(), FieldTable::default()).await?;
    backoff.reset();
    // Up to CONCURRENCY deliveries are applied at once (idempotency makes order between them
    // irrelevant to the effect); the prefetch keeps the next ones ready.
    let slots = Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
    while let Some(delivery) = deliveries.next().await {
        let delivery = delivery?;
        let permit = slots.clone().acquire_owned().await.expect("semaphore is never closed");
        let (db, h) = (db.clone(), h.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let event: Envelope = match serde_json::from_slice(&delivery.data) {
                Ok(e) => e,
                Err(e) => {
                    tracing::warn!(consumer = h.name(), error = %e, "unreadable event; dead-lettering");
                    let _ = delivery.nack(BasicNackOptions { requeue: false, ..Default::default() }).await;
                    return;
                }
            };
            match apply(&db, h.as_ref(), &event).await {
                Ok(_) => {
                    let _ = delivery.ack(BasicAckOptions::default()).await;
                }
                Err(e) if is_permanent(&e) => {
                    tracing::warn!(consumer = h.name(), event.id = %event.id, error = %e, "unreadable event; dead-lettering");
                    match dead_letter(&db, h.name(), &event, &e.to_string()).await {
                        Ok(()) => {
                            let _ = delivery.ack(BasicAckOptions::default()).await;
                        }
                        Err(_) => {
                            let _ = delivery.nack(BasicNackOptions { requeue: true, ..Default::default() }).await;
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(consumer = h.name(), event.id = %event.id, error = %e, "consumer failed; requeueing");
                    let _ = delivery.nack(BasicNackOptions { requeue: true, ..Default::default() }).await;
                }
            }
        });
    }
    Ok(())
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
