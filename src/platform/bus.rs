//! The event bus connection: RabbitMQ when `AMQP_URL` is set, otherwise in-process. The outbox,
//! relay and consumers build on this; here it only connects and reports health.

use std::time::Duration;

use lapin::{Connection, ConnectionProperties};

use crate::platform::error::{AppError, AppResult};

#[derive(Clone)]
pub enum Bus {
    InProcess,
    Amqp(std::sync::Arc<Connection>),
}

impl Bus {
    pub async fn amqp(url: &str) -> anyhow::Result<Self> {
        let conn = tokio::time::timeout(
            Duration::from_secs(5),
            Connection::connect(url, ConnectionProperties::default().with_connection_name("cloudhis".into())),
        )
        .await
        .map_err(|_| anyhow::anyhow!("timed out after 5 s"))??;
        Ok(Self::Amqp(std::sync::Arc::new(conn)))
    }

    pub fn backend_name(&self) -> &'static str {
        match self {
            Bus::InProcess => "in-process",
            Bus::Amqp(_) => "rabbitmq",
        }
    }

    pub async fn ping(&self) -> AppResult<()> {
        match self {
            Bus::InProcess => Ok(()),
            Bus::Amqp(conn) if conn.status().connected() => Ok(()),
            Bus::Amqp(_) => Err(AppError::Unavailable(anyhow::anyhow!("rabbitmq connection is closed"))),
        }
    }
}
