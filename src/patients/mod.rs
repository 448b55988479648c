//! Patients: the unified patient index (MPI) shared by a community. Persons (golden records),
//! their registrations at institutions (with local MRNs), matching built for Chinese names and
//! resident IDs, merges with exact unmerge, the review queue, and synthetic residents.

pub mod api;
pub mod dedup;
pub mod domain;
pub(crate) mod entity;
pub mod events;
pub mod import;
pub mod matching;
pub mod names;
pub mod resident_id;
pub mod seed;
pub mod service;
pub mod synth;
