pub mod duplicate_candidate;
pub mod identifier_reveal;
pub mod import_job;
pub mod import_row;
pub mod mrn_counter;
pub mod person;
pub mod person_merge;
pub mod registration;
