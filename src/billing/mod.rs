//! Billing: the fee schedule, one bill per encounter, the insurance/self-pay split, payments
//! with receipt numbers, and refunds. Money is integer fen.

pub mod api;
pub mod domain;
pub(crate) mod entity;
pub mod events;
pub mod service;
