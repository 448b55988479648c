//! The event bus: RabbitMQ when `AMQP_URL` is set, otherwise in-process. Publishing goes to the
//! topic exchange `<prefix>.events` (prefix `CLOUDHIS_AMQP_PREFIX`, default `cloudhis`) with
//! routing key `<tenant>.<context>.<event>`, and waits for the broker's confirm. A lost
//! connection is re-established on the next publish.
//!
//! The *live feed* is every event of the deployment as it is published, for views that stream
//! to browsers (server-sent events). With RabbitMQ each replica feeds it from its own exclusive
//! queue, so a replica sees events relayed by any replica; in-process, the relay feeds it.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use tokio::sync::{Mutex, broadcast};

use crate::platform::backoff::Backoff;
use crate::platform::consumers::Topology;
use crate::platform::error::{AppError, AppResult};
use crate::platform::events::Envelope;

#[derive(Clone)]
pub struct Bus {
    amqp: Option<Arc<Amqp>>,
    live: broadcast::Sender<Arc<Envelope>>,
}

struct Amqp {
    url: String,
    prefix: String,
    topology: Arc<Topology>,
    link: Mutex<Option<(Connection, Channel)>>,
}

impl Amqp {
    fn exchange(&self) -> String {
        format!("{}.events", self.prefix)
    }
}

async fn connect(url: &str, name: String) -> anyhow::Result<Connection> {
    Ok(tokio::time::timeout(
        Duration::from_secs(5),
        Connection::connect(url, ConnectionProperties::default().with_connection_name(name.into())),
    )
    .await
    .map_err(|_| anyhow::anyhow!("timed out after 5 s"))??)
}

/// The publisher's connection, with the whole topology declared on it first: every consumer's
/// queue exists and is bound before anything is published.
async fn open(url: &str, topology: &Topology) -> anyhow::Result<(Connection, Channel)> {
    let conn = connect(url, format!("{}-publisher", topology.prefix)).await?;
    let channel = conn.create_channel().await?;
    channel.confirm_select(ConfirmSelectOptions::default()).await?;
    topology.declare_all(&channel).await?;
    Ok((conn, channel))
}

impl Bus {
    pub fn in_process() -> Self {
        let (live, _) = broadcast::channel(1024);
        Self { amqp: None, live }
    }

    /// Connects to RabbitMQ and declares the topology; fails fast when the broker is unreachable.
    pub async fn amqp(url: &str, topology: Arc<Topology>) -> anyhow::Result<Self> {
        let link = open(url, &topology).await?;
        let (live, _) = broadcast::channel(1024);
        let prefix = topology.prefix.clone();
        let amqp =
            Arc::new(Amqp { url: url.to_string(), prefix: prefix.clone(), topology, link: Mutex::new(Some(link)) });
        tokio::spawn(feed_live(amqp.url.clone(), amqp.exchange(), prefix, live.clone()));
        Ok(Self { amqp: Some(amqp), live })
    }

    pub fn backend_name(&self) -> &'static str {
        if self.amqp.is_some() { "rabbitmq" } else { "in-process" }
    }

    pub fn is_amqp(&self) -> bool {
        self.amqp.is_some()
    }

    /// The AMQP URL and exchange, for components that open their own connections (consumers, tests).
    pub fn amqp_url(&self) -> Option<&str> {
        self.amqp.as_ref().map(|a| a.url.as_str())
    }

    pub fn exchange(&self) -> Option<String> {
        self.amqp.as_ref().map(|a| a.exchange())
    }

    pub async fn ping(&self) -> AppResult<()> {
        let Some(amqp) = &self.amqp else { return Ok(()) };
        let mut link = amqp.link.lock().await;
        if link.as_ref().is_some_and(|(c, ch)| c.status().connected() && ch.status().connected()) {
            return Ok(());
        }
        match open(&amqp.url, &amqp.topology).await {
            Ok(l) => {
                *link = Some(l);
                Ok(())
            }
            Err(e) => Err(AppError::Unavailable(e.context("rabbitmq"))),
        }
    }

    /// Publishes events to RabbitMQ in order and waits for the broker to confirm them. Returns
    /// how many, from the start, were confirmed: a failure stops at the first unconfirmed event,
    /// so the caller marks exactly those and retries the rest. In-process there is no broker: the
    /// relay hands events to the handlers and the live feed itself.
    pub async fn publish_batch(&self, envelopes: &[Envelope]) -> (usize, Option<anyhow::Error>) {
        let Some(amqp) = &self.amqp else { return (envelopes.len(), None) };
        let mut link = amqp.link.lock().await;
        if !link.as_ref().is_some_and(|(c, ch)| c.status().connected() && ch.status().connected()) {
            *link = None;
            match open(&amqp.url, &amqp.topology).await {
                Ok(l) => *link = Some(l),
                Err(e) => return (0, Some(e)),
            }
        }
        let (_, channel) = link.as_ref().expect("connected above");
        // Publish them all, then collect the confirms (in publishing order).
        let mut pending = Vec::with_capacity(envelopes.len());
        let mut failure = None;
        for envelope in envelopes {
            let body = match serde_json::to_vec(envelope) {
                Ok(b) => b,
                Err(e) => {
                    failure = Some(e.into());
                    break;
                }
            };
            // Mandatory: a message no queue takes comes back, and is not counted as sent.
            let sent = channel
                .basic_publish(
                    amqp.exchange().into(),
                    envelope.routing_key().into(),
                    BasicPublishOptions { mandatory: true, ..Default::default() },
                    &body,
                    BasicProperties::default()
                        .with_message_id(envelope.id.to_string().into())
                        .with_content_type("application/json".into())
                        .with_delivery_mode(2),
                )
                .await;
            match sent {
                Ok(confirm) => pending.push(confirm),
                Err(e) => {
                    failure = Some(e.into());
                    break;
                }
            }
        }
        let mut confirmed = 0;
        for confirm in pending {
            match confirm.await {
                Ok(lapin::Confirmation::Ack(None)) if failure.is_none() => confirmed += 1,
                Ok(lapin::Confirmation::Ack(Some(_))) => {
                    // Routed nowhere: a consumer queue is gone. The next attempt redeclares them.
                    failure.get_or_insert_with(|| anyhow::anyhow!("an event was returned unroutable"));
                }
                Ok(_) => {
                    failure.get_or_insert_with(|| anyhow::anyhow!("the broker refused an event"));
                }
                Err(e) => {
                    failure.get_or_insert(e.into());
                }
            }
        }
        if failure.is_some() {
            *link = None;
        }
        (confirmed, failure)
    }

    /// Offers an event to this replica's live subscribers (in-process mode).
    pub fn publish_live(&self, envelope: Arc<Envelope>) {
        let _ = self.live.send(envelope);
    }

    /// Every event of the deployment as it is published.
    pub fn subscribe_local(&self) -> broadcast::Receiver<Arc<Envelope>> {
        self.live.subscribe()
    }
}

/// Feeds the live broadcast from an exclusive, auto-deleted queue bound to every event,
/// reconnecting with backoff.
async fn feed_live(url: String, exchange: String, prefix: String, live: broadcast::Sender<Arc<Envelope>>) {
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    loop {
        let run = async {
            let conn = connect(&url, format!("{prefix}-live")).await?;
            let ch = conn.create_channel().await?;
            let q = ch
                .queue_declare(
                    "".into(),
                    QueueDeclareOptions { exclusive: true, auto_delete: true, ..Default::default() },
                    FieldTable::default(),
                )
                .await?;
            ch.queue_bind(
                q.name().clone(),
                exchange.clone().into(),
                "#".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
            let mut deliveries = ch
                .basic_consume(
                    q.name().clone(),
                    "live".into(),
                    BasicConsumeOptions { no_ack: true, ..Default::default() },
                    FieldTable::default(),
                )
                .await?;
            backoff.reset();
            while let Some(d) = deliveries.next().await {
                let d = d?;
                if let Ok(env) = serde_json::from_slice::<Envelope>(&d.data) {
                    let _ = live.send(Arc::new(env));
                }
            }
            anyhow::Ok(())
        };
        if let Err(e) = run.await {
            tracing::warn!(error = %format!("{e:#}"), "live event feed lost; reconnecting");
        }
        backoff.wait().await;
    }
}
