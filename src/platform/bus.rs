//! The event bus: RabbitMQ when `AMQP_URL` is set, otherwise in-process. Publishing goes to the
//! topic exchange `cloudhis.events` with routing key `<tenant>.<context>.<event>` and waits for
//! the broker's confirm. A lost connection is re-established on the next publish. Every event
//! published is also offered to in-process subscribers (live views such as server-sent events).

use std::sync::Arc;
use std::time::Duration;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use tokio::sync::{Mutex, broadcast};

use crate::platform::error::{AppError, AppResult};
use crate::platform::events::Envelope;

pub const EXCHANGE: &str = "cloudhis.events";

#[derive(Clone)]
pub struct Bus {
    amqp: Option<Arc<Amqp>>,
    local: broadcast::Sender<Arc<Envelope>>,
}

struct Amqp {
    url: String,
    link: Mutex<Option<(Connection, Channel)>>,
}

async fn open(url: &str) -> anyhow::Result<(Connection, Channel)> {
    let conn = tokio::time::timeout(
        Duration::from_secs(5),
        Connection::connect(url, ConnectionProperties::default().with_connection_name("cloudhis".into())),
    )
    .await
    .map_err(|_| anyhow::anyhow!("timed out after 5 s"))??;
    let channel = conn.create_channel().await?;
    channel.confirm_select(ConfirmSelectOptions::default()).await?;
    channel
        .exchange_declare(
            EXCHANGE.into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions { durable: true, ..Default::default() },
            FieldTable::default(),
        )
        .await?;
    Ok((conn, channel))
}

impl Bus {
    pub fn in_process() -> Self {
        let (local, _) = broadcast::channel(1024);
        Self { amqp: None, local }
    }

    /// Connects to RabbitMQ and declares the exchange; fails fast when the broker is unreachable.
    pub async fn amqp(url: &str) -> anyhow::Result<Self> {
        let link = open(url).await?;
        let (local, _) = broadcast::channel(1024);
        Ok(Self { amqp: Some(Arc::new(Amqp { url: url.to_string(), link: Mutex::new(Some(link)) })), local })
    }

    pub fn backend_name(&self) -> &'static str {
        if self.amqp.is_some() { "rabbitmq" } else { "in-process" }
    }

    /// The AMQP URL, for components that open their own connections (consumers, tests).
    pub fn amqp_url(&self) -> Option<&str> {
        self.amqp.as_ref().map(|a| a.url.as_str())
    }

    pub async fn ping(&self) -> AppResult<()> {
        let Some(amqp) = &self.amqp else { return Ok(()) };
        let mut link = amqp.link.lock().await;
        if link.as_ref().is_some_and(|(c, ch)| c.status().connected() && ch.status().connected()) {
            return Ok(());
        }
        match open(&amqp.url).await {
            Ok(l) => {
                *link = Some(l);
                Ok(())
            }
            Err(e) => Err(AppError::Unavailable(e.context("rabbitmq"))),
        }
    }

    /// Publishes one event and waits for the broker to confirm it.
    pub async fn publish(&self, envelope: Arc<Envelope>) -> anyhow::Result<()> {
        if let Some(amqp) = &self.amqp {
            let body = serde_json::to_vec(&*envelope)?;
            let mut link = amqp.link.lock().await;
            if !link.as_ref().is_some_and(|(c, ch)| c.status().connected() && ch.status().connected()) {
                *link = None;
                *link = Some(open(&amqp.url).await?);
            }
            let (_, channel) = link.as_ref().expect("connected above");
            let result = async {
                let confirm = channel
                    .basic_publish(
                        EXCHANGE.into(),
                        envelope.routing_key().into(),
                        BasicPublishOptions::default(),
                        &body,
                        BasicProperties::default()
                            .with_message_id(envelope.id.to_string().into())
                            .with_content_type("application/json".into())
                            .with_delivery_mode(2),
                    )
                    .await?
                    .await?;
                anyhow::ensure!(confirm.is_ack(), "the broker refused the event");
                Ok(())
            }
            .await;
            if result.is_err() {
                *link = None;
            }
            result?;
        }
        let _ = self.local.send(envelope);
        Ok(())
    }

    /// In-process subscription to every event this replica publishes.
    pub fn subscribe_local(&self) -> broadcast::Receiver<Arc<Envelope>> {
        self.local.subscribe()
    }
}
