//! The events clinical publishes.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::domain::EncounterKind;
use crate::platform::events::Event;

/// An encounter was closed: it counts as a visit from now on and is immutable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EncounterClosed {
    pub encounter: Uuid,
    pub institution: Uuid,
    pub person: Uuid,
    pub kind: EncounterKind,
    pub department: Option<Uuid>,
    pub clinician: Uuid,
    pub opened_at: DateTime<Utc>,
    pub closed_at: DateTime<Utc>,
    pub diagnoses: Vec<ClosedDiagnosis>,
}

/// A diagnosis of a closed encounter: its ICD-10 code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClosedDiagnosis {
    pub code: String,
    pub primary: bool,
}

impl Event for EncounterClosed {
    const TYPE: &'static str = "clinical.encounter_closed";
}

/// Every event type clinical publishes.
pub const TYPES: &[&str] = &[EncounterClosed::TYPE];
