//! Clinical: encounters (open, then closed and immutable, corrected by addenda), vital signs,
//! ICD-10 diagnoses, allergies, the ICD-10 catalog, and the community patient summary.

pub mod api;
pub mod domain;
pub(crate) mod entity;
pub mod events;
pub mod icd10;
pub mod service;
