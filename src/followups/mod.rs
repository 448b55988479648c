//! Chronic-disease management: hypertension and type 2 diabetes registries, follow-up plans and
//! visits, the referral rule, worklists and enrollment suggestions from closed encounters.

pub mod api;
pub mod domain;
pub mod entity;
pub mod events;
pub mod service;
