//! Referrals: two-way referrals between the levels of the community (and out of the county),
//! their state machine and SLA, the access grants they open, and their notifications.

pub mod api;
pub mod domain;
pub(crate) mod entity;
pub mod events;
pub mod service;
