//! The events the patient index publishes. Ids only: never a name or an identifier.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::platform::events::Event;

/// A new person (golden record) was created by a registration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonCreated {
    pub person: Uuid,
    pub institution: Uuid,
}

impl Event for PersonCreated {
    const TYPE: &'static str = "patients.person_created";
}

/// A person was registered at an institution (with a new MRN there).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonRegistered {
    pub person: Uuid,
    pub institution: Uuid,
    pub registration: Uuid,
}

impl Event for PersonRegistered {
    const TYPE: &'static str = "patients.person_registered";
}

/// Two persons were merged into the survivor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonMerged {
    pub merge: Uuid,
    pub survivor: Uuid,
    pub merged: Uuid,
}

impl Event for PersonMerged {
    const TYPE: &'static str = "patients.person_merged";
}

/// A merge was undone: the merged person is back as it was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonUnmerged {
    pub merge: Uuid,
    pub survivor: Uuid,
    pub merged: Uuid,
}

impl Event for PersonUnmerged {
    const TYPE: &'static str = "patients.person_unmerged";
}

/// Every event type the patient index publishes.
pub const TYPES: &[&str] = &[PersonCreated::TYPE, PersonRegistered::TYPE, PersonMerged::TYPE, PersonUnmerged::TYPE];
