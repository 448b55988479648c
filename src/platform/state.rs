//! The application state every handler and job shares: backends, authorizer, keys, metrics.

use std::sync::Arc;

use uuid::Uuid;

use crate::platform::AppResult;
use crate::platform::Db;
use crate::platform::bus::Bus;
use crate::platform::cache::Cache;
use crate::platform::config::Config;
use crate::platform::metrics::Metrics;
use crate::platform::pii::PiiCipher;
use crate::platform::token::TokenKeys;

/// Where the request context gets its permissions: `identity::authz::Authz`, casbin enforcers
/// built from the tenant's role bindings. A trait here so that the state every context shares
/// does not depend on one of them.
#[async_trait::async_trait]
pub trait Authorizer: Send + Sync {
    /// The enforcer for a tenant's current roles.
    async fn enforcer(&self, tenant: Uuid) -> AppResult<Arc<casbin::Enforcer>>;
    /// Call after changing a tenant's roles: every replica rebuilds on its next request
    /// (embedded default), or once the notice reaches it (Redis).
    async fn changed(&self, tenant: Uuid);
    /// Changes after every drop of cached permissions, here or announced by another replica.
    fn changes(&self) -> tokio::sync::watch::Receiver<u64>;
}

#[derive(Clone)]
pub struct AppState(Arc<StateInner>);

pub struct StateInner {
    pub config: Config,
    pub db: Db,
    pub cache: Cache,
    pub bus: Bus,
    pub authz: Arc<dyn Authorizer>,
    pub keys: TokenKeys,
    pub pii: PiiCipher,
    pub metrics: Metrics,
    pub clock: crate::platform::clock::Clock,
    /// The event relay of this process, when it runs workers: `/readyz` fails if it stopped.
    pub relay: Option<tokio::task::JoinHandle<()>>,
    /// Scheduled jobs of this process skip their runs while set (the demo's history seeder
    /// writes referrals whose time limits lie in the past and decides them a moment later).
    pub jobs_paused: std::sync::atomic::AtomicBool,
}

impl AppState {
    pub fn new(inner: StateInner) -> Self {
        Self(Arc::new(inner))
    }
}

impl std::ops::Deref for AppState {
    type Target = StateInner;
    fn deref(&self) -> &StateInner {
        &self.0
    }
}
