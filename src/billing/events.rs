//! The events billing publishes. Money is integer fen.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::platform::events::Event;

/// Charges were posted to an encounter's bill.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChargePosted {
    pub bill: Uuid,
    pub encounter: Uuid,
    pub institution: Uuid,
    pub person: Uuid,
    pub posted_at: DateTime<Utc>,
    pub total_fen: i64,
    pub insurance_fen: i64,
    pub self_pay_fen: i64,
    pub drug_fen: i64,
    pub charges: Vec<PostedCharge>,
}

/// One charge of a [`ChargePosted`]: a fee item or a drug line, split into the insured and the
/// self-paid share.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostedCharge {
    pub charge: Uuid,
    /// `fee` or `drug`
    pub kind: String,
    pub item_code: String,
    pub quantity: i64,
    pub amount_fen: i64,
    /// `A`, `B` or `C`
    pub insurance_category: String,
    pub insurance_fen: i64,
    pub self_pay_fen: i64,
}

impl Event for ChargePosted {
    const TYPE: &'static str = "billing.charge_posted";
}

/// A payment was received against a bill.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentReceived {
    pub payment: Uuid,
    pub bill: Uuid,
    pub encounter: Uuid,
    pub institution: Uuid,
    pub person: Uuid,
    pub amount_fen: i64,
    /// `cash`, `card` or `mobile`
    pub method: String,
    pub receipt_no: String,
    pub bill_insurance_fen: i64,
    /// Whether the bill is now fully paid.
    pub settled: bool,
}

impl Event for PaymentReceived {
    const TYPE: &'static str = "billing.payment_received";
}

/// Part or all of a payment was refunded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundIssued {
    pub refund: Uuid,
    pub payment: Uuid,
    pub bill: Uuid,
    pub institution: Uuid,
    pub person: Uuid,
    pub amount_fen: i64,
    /// The payment's method, by which the money goes back.
    pub method: String,
    pub receipt_no: String,
}

impl Event for RefundIssued {
    const TYPE: &'static str = "billing.refund_issued";
}

/// Every event type billing publishes.
pub const TYPES: &[&str] = &[ChargePosted::TYPE, PaymentReceived::TYPE, RefundIssued::TYPE];
