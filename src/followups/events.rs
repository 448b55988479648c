//! The events chronic-disease management publishes.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::domain::{Classification, Disease, Flag};
use crate::platform::events::Event;

/// A person was enrolled in a registry at an institution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enrolled {
    pub enrollment: Uuid,
    pub person: Uuid,
    pub institution: Uuid,
    pub doctor: Uuid,
    pub disease: Disease,
    pub diagnosed_on: NaiveDate,
    pub enrolled_on: NaiveDate,
    pub next_due: NaiveDate,
}

impl Event for Enrolled {
    const TYPE: &'static str = "followups.enrolled";
}

/// A follow-up was recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VisitRecorded {
    pub enrollment: Uuid,
    pub visit: Uuid,
    pub person: Uuid,
    pub institution: Uuid,
    pub disease: Disease,
    pub visit_on: NaiveDate,
    pub classification: Classification,
    pub controlled: bool,
    pub danger: bool,
    pub flag: Option<Flag>,
    /// The draft up-referral this follow-up proposed, if any.
    pub referral: Option<Uuid>,
    pub next_on: NaiveDate,
    pub visits: i32,
    /// Controlled by the KPI's fixed targets (BP < 140/90, fasting glucose < 7.0).
    pub kpi_controlled: bool,
}

impl Event for VisitRecorded {
    const TYPE: &'static str = "followups.visit_recorded";
}

/// An enrollment was closed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Closed {
    pub enrollment: Uuid,
    pub person: Uuid,
    pub institution: Uuid,
    pub disease: Disease,
    /// `moved`, `died`, `misdiagnosed` or `other`
    pub reason: String,
    pub enrolled_on: NaiveDate,
    pub closed_on: Option<NaiveDate>,
}

impl Event for Closed {
    const TYPE: &'static str = "followups.closed";
}

/// Every event type chronic-disease management publishes.
pub const TYPES: &[&str] = &[Enrolled::TYPE, VisitRecorded::TYPE, Closed::TYPE];
