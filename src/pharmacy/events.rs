//! The events pharmacy publishes. Values are integer fen at the drugs' prices.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::service::DispensedBatch;
use crate::platform::events::Event;

/// A paid prescription was dispensed from stock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dispensed {
    pub prescription: Uuid,
    pub encounter: Uuid,
    pub institution: Uuid,
    pub person: Uuid,
    pub value_fen: i64,
    pub lines: Vec<DispensedLineEvent>,
}

/// A line of a [`Dispensed`] prescription and the batches it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DispensedLineEvent {
    pub drug_code: String,
    pub quantity: i64,
    pub batches: Vec<DispensedBatch>,
}

impl Event for Dispensed {
    const TYPE: &'static str = "pharmacy.dispensed";
}

/// Stock moved from one institution's pharmacy to another's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transferred {
    pub transfer: Uuid,
    pub from_institution: Uuid,
    pub to_institution: Uuid,
    pub drug_code: String,
    pub quantity: i64,
    pub value_fen: i64,
    pub batches: Vec<TransferredBatch>,
}

/// A batch (or part of one) that a [`Transferred`] moved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferredBatch {
    pub lot: String,
    pub expiry: NaiveDate,
    pub quantity: i64,
}

impl Event for Transferred {
    const TYPE: &'static str = "pharmacy.transferred";
}

/// Every event type pharmacy publishes.
pub const TYPES: &[&str] = &[Dispensed::TYPE, Transferred::TYPE];
