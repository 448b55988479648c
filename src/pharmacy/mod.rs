//! Pharmacy: the community formulary, stock per institution and batch, prescriptions and
//! dispensing, and transfers from the county pharmacy to townships and villages.

pub mod api;
pub mod domain;
pub(crate) mod entity;
pub mod events;
pub mod service;
