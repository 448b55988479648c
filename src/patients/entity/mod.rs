pub mod duplicate_candidate;
pub mod identifier_reveal;
pub mod mrn_counter;
pub mod person;
pub mod person_merge;
pub mod registration;
