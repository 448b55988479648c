//! The cache: sessions' revocation flags, login counters, and change notices between replicas.
//! Redis when `REDIS_URL` is set (shared by all replicas, notices over pub/sub), otherwise an
//! in-memory map for the single-process embedded mode. Keys are namespaced by the caller.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use redis::AsyncCommands;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::broadcast;

use crate::platform::backoff::Backoff;
use crate::platform::error::{AppError, AppResult};

/// A change notice: `topic` names what changed (e.g. `authz`), `payload` which part (a tenant id).
/// A `resync` topic means notices may have been missed: drop every cached view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub topic: String,
    pub payload: String,
}

pub const RESYNC: &str = "resync";

#[derive(Clone)]
pub struct Cache {
    inner: Inner,
    notices: broadcast::Sender<Notice>,
}

#[derive(Clone)]
enum Inner {
    Memory(Arc<Mutex<HashMap<String, (u64, Instant)>>>),
    Redis { conn: ConnectionManager, prefix: String },
}

fn unavailable(e: redis::RedisError) -> AppError {
    AppError::Unavailable(anyhow::Error::new(e).context("redis"))
}

impl Cache {
    pub fn memory() -> Self {
        let (notices, _) = broadcast::channel(256);
        Self { inner: Inner::Memory(Arc::default()), notices }
    }

    /// Connects to Redis and starts the pub/sub listener that forwards notices from other replicas.
    pub async fn redis(url: &str, prefix: &str) -> anyhow::Result<Self> {
        let client = redis::Client::open(url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(3)))
            .set_response_timeout(Some(Duration::from_secs(3)))
            .set_number_of_retries(3);
        let mut conn = client.get_connection_manager_with_config(config).await?;
        let _: String = redis::cmd("PING").query_async(&mut conn).await?;
        let (notices, _) = broadcast::channel(256);
        let channel = format!("{prefix}:notice");
        tokio::spawn(listen(client, channel, notices.clone()));
        Ok(Self { inner: Inner::Redis { conn, prefix: prefix.to_string() }, notices })
    }

    pub fn backend_name(&self) -> &'static str {
        match self.inner {
            Inner::Memory(_) => "memory",
            Inner::Redis { .. } => "redis",
        }
    }

    fn key(prefix: &str, key: &str) -> String {
        format!("{prefix}:{key}")
    }

    /// Counts one event in a fixed window that starts with the first event; returns the count.
    pub async fn hit(&self, key: &str, window: Duration) -> AppResult<u64> {
        match &self.inner {
            Inner::Memory(map) => {
                let now = Instant::now();
                let mut map = map.lock().expect("cache lock");
                if map.len() > 100_000 {
                    map.retain(|_, (_, exp)| *exp > now);
                }
                let entry = map.entry(key.to_string()).or_insert((0, now + window));
                if entry.1 <= now {
                    *entry = (0, now + window);
                }
                entry.0 += 1;
                Ok(entry.0)
            }
            Inner::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                let k = Self::key(prefix, key);
                let (count,): (u64,) = redis::pipe()
                    .atomic()
                    .incr(&k, 1u64)
                    .cmd("PEXPIRE")
                    .arg(&k)
                    .arg(window.as_millis() as u64)
                    .arg("NX")
                    .ignore()
                    .query_async(&mut conn)
                    .await
                    .map_err(unavailable)?;
                Ok(count)
            }
        }
    }

    /// The current count in a window and the time until it resets.
    pub async fn count(&self, key: &str) -> AppResult<(u64, Duration)> {
        match &self.inner {
            Inner::Memory(map) => {
                let now = Instant::now();
                let map = map.lock().expect("cache lock");
                Ok(match map.get(key) {
                    Some((n, exp)) if *exp > now => (*n, *exp - now),
                    _ => (0, Duration::ZERO),
                })
            }
            Inner::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                let k = Self::key(prefix, key);
                let (n, ttl): (Option<u64>, i64) =
                    redis::pipe().get(&k).pttl(&k).query_async(&mut conn).await.map_err(unavailable)?;
                Ok((n.unwrap_or(0), Duration::from_millis(ttl.max(0) as u64)))
            }
        }
    }

    pub async fn delete(&self, key: &str) -> AppResult<()> {
        match &self.inner {
            Inner::Memory(map) => {
                map.lock().expect("cache lock").remove(key);
                Ok(())
            }
            Inner::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                let _: () = conn.del(Self::key(prefix, key)).await.map_err(unavailable)?;
                Ok(())
            }
        }
    }

    /// Sets a flag that disappears after `ttl`.
    pub async fn set_flag(&self, key: &str, ttl: Duration) -> AppResult<()> {
        match &self.inner {
            Inner::Memory(map) => {
                map.lock().expect("cache lock").insert(key.to_string(), (1, Instant::now() + ttl));
                Ok(())
            }
            Inner::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                let ms = ttl.as_millis().max(1) as u64;
                let _: () = conn.pset_ex(Self::key(prefix, key), 1u8, ms).await.map_err(unavailable)?;
                Ok(())
            }
        }
    }

    /// Takes a lease that expires after `ttl` unless it already exists: one runner at a time for
    /// a scheduled job across replicas.
    pub async fn try_lease(&self, key: &str, ttl: Duration) -> AppResult<bool> {
        match &self.inner {
            Inner::Memory(map) => {
                let now = Instant::now();
                let mut map = map.lock().expect("cache lock");
                match map.get(key) {
                    Some((_, exp)) if *exp > now => Ok(false),
                    _ => {
                        map.insert(key.to_string(), (1, now + ttl));
                        Ok(true)
                    }
                }
            }
            Inner::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                let got: Option<String> = redis::cmd("SET")
                    .arg(Self::key(prefix, key))
                    .arg(1)
                    .arg("NX")
                    .arg("PX")
                    .arg(ttl.as_millis().max(1) as u64)
                    .query_async(&mut conn)
                    .await
                    .map_err(unavailable)?;
                Ok(got.is_some())
            }
        }
    }

    /// Whether a flag is set: one `EXISTS` on Redis (checked on every request, for sessions).
    pub async fn has_flag(&self, key: &str) -> AppResult<bool> {
        match &self.inner {
            Inner::Memory(_) => Ok(self.count(key).await?.0 > 0),
            Inner::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                let n: u64 = conn.exists(Self::key(prefix, key)).await.map_err(unavailable)?;
                Ok(n > 0)
            }
        }
    }

    /// Tells every replica (this one included) that something changed.
    pub async fn notify(&self, topic: &str, payload: &str) -> AppResult<()> {
        let notice = Notice { topic: topic.to_string(), payload: payload.to_string() };
        match &self.inner {
            Inner::Memory(_) => {
                let _ = self.notices.send(notice);
                Ok(())
            }
            Inner::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                let msg = format!("{topic}\n{payload}");
                let _: () = conn.publish(format!("{prefix}:notice"), msg).await.map_err(unavailable)?;
                Ok(())
            }
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Notice> {
        self.notices.subscribe()
    }

    pub async fn ping(&self) -> AppResult<()> {
        match &self.inner {
            Inner::Memory(_) => Ok(()),
            Inner::Redis { conn, .. } => {
                let mut conn = conn.clone();
                let _: String = redis::cmd("PING").query_async(&mut conn).await.map_err(unavailable)?;
                Ok(())
            }
        }
    }
}

/// Forwards Redis notices to local subscribers, reconnecting with backoff. After a reconnect it
/// sends `resync`, because notices published while we were away are lost.
async fn listen(client: redis::Client, channel: String, local: broadcast::Sender<Notice>) {
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    let mut connected_before = false;
    loop {
        match client.get_async_pubsub().await {
            Ok(mut pubsub) => {
                if pubsub.subscribe(&channel).await.is_ok() {
                    if connected_before {
                        let _ = local.send(Notice { topic: RESYNC.into(), payload: String::new() });
                    }
                    connected_before = true;
                    backoff.reset();
                    let mut stream = pubsub.on_message();
                    while let Some(msg) = stream.next().await {
                        let Ok(text) = msg.get_payload::<String>() else { continue };
                        let (topic, payload) = text.split_once('\n').unwrap_or((text.as_str(), ""));
                        let _ = local.send(Notice { topic: topic.into(), payload: payload.into() });
                    }
                }
                tracing::warn!("redis notice subscription lost; reconnecting");
            }
            Err(e) => tracing::warn!(error = %e, "redis notice subscription failed; retrying"),
        }
        backoff.wait().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_window_counts_and_resets() {
        let c = Cache::memory();
        assert_eq!(c.hit("k", Duration::from_millis(50)).await.unwrap(), 1);
        assert_eq!(c.hit("k", Duration::from_millis(50)).await.unwrap(), 2);
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(c.count("k").await.unwrap().0, 0);
        assert_eq!(c.hit("k", Duration::from_millis(50)).await.unwrap(), 1);
    }

    #[tokio::test]
    async fn memory_flags_expire() {
        let c = Cache::memory();
        c.set_flag("f", Duration::from_millis(30)).await.unwrap();
        assert!(c.has_flag("f").await.unwrap());
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert!(!c.has_flag("f").await.unwrap());
    }
}
