//! The application state every handler and job shares: backends, authorizer, keys, metrics.

use std::sync::Arc;

use crate::identity::authz::Authz;
use crate::identity::token::TokenKeys;
use crate::platform::Db;
use crate::platform::bus::Bus;
use crate::platform::cache::Cache;
use crate::platform::config::Config;
use crate::platform::metrics::Metrics;
use crate::platform::pii::PiiCipher;

#[derive(Clone)]
pub struct AppState(Arc<StateInner>);

pub struct StateInner {
    pub config: Config,
    pub db: Db,
    pub cache: Cache,
    pub bus: Bus,
    pub authz: Arc<Authz>,
    pub keys: TokenKeys,
    pub pii: PiiCipher,
    pub metrics: Metrics,
    pub clock: crate::platform::clock::Clock,
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
