//! Statistics for the health bureau: rollups kept by an idempotent consumer and rebuildable from
//! the source contexts, the national medical-community KPIs with drill-down and time series,
//! and exports. Aggregates only, with cells under five patients suppressed.

pub mod api;
pub mod domain;
pub mod entity;
pub mod service;
