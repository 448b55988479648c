//! Platform: what every context stands on. Configuration, the tenant-scoped database, the cache,
//! the event bus, telemetry, metrics, the HTTP boundary and the one application error.

pub mod api_tags;
pub mod audit;
pub mod backoff;
pub mod bus;
pub mod cache;
pub mod citus;
pub mod clock;
pub mod codes;
pub mod config;
pub mod consumers;
pub mod csv;
pub mod dates;
pub mod db;
pub mod delivery;
pub mod enums;
pub mod error;
pub mod events;
pub mod http;
pub mod idempotency;
pub mod memo;
pub mod metrics;
pub mod pii;
pub mod planner_stats;
pub mod state;
pub mod telemetry;
pub mod token;

pub use db::{Db, SystemScope, TenantScope, Tx};
pub use error::{AppError, AppResult};
