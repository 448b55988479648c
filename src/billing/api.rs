//! Billing API: the fee schedule, charging an encounter, bills, payments and refunds.

use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use uuid::Uuid;

use super::entity::{charge, fee_item, payment, refund};
use super::service::{self, BillView, FeeLine};
use crate::identity::ctx::Auth;
use crate::platform::AppError;
use crate::platform::api_tags::ApiTags;
use crate::platform::state::AppState;

#[derive(Object, Debug)]
pub struct FeeItemDto {
    pub code: String,
    pub name: String,
    #[oai(skip_serializing_if_is_none)]
    pub name_en: Option<String>,
    pub category: String,
    pub price_fen: i64,
    pub insurance_category: String,
}

impl From<fee_item::Model> for FeeItemDto {
    fn from(f: fee_item::Model) -> Self {
        Self {
            code: f.code,
            name: f.name,
            name_en: f.name_en,
            category: f.category,
            price_fen: f.price_fen,
            insurance_category: f.insurance_category,
        }
    }
}

#[derive(Object, Debug)]
pub struct FeeLineDto {
    #[oai(validator(min_length = 1, max_length = 64))]
    pub code: String,
    #[oai(default = "one")]
    pub quantity: i64,
}

fn one() -> i64 {
    1
}

#[derive(Object, Debug)]
pub struct ChargeRequest {
    /// Fee-schedule items (registration, consultation, procedures); the encounter's uncharged
    /// prescription lines are added automatically
    #[oai(default, validator(max_items = 50))]
    pub fee_items: Vec<FeeLineDto>,
}

#[derive(Object, Debug, Clone)]
pub struct ChargeDto {
    pub id: Uuid,
    /// `fee` or `drug`
    pub kind: String,
    pub item_code: String,
    pub description: String,
    pub quantity: i64,
    pub unit_price_fen: i64,
    pub amount_fen: i64,
    pub insurance_category: String,
    pub insurance_fen: i64,
    pub self_pay_fen: i64,
}

impl From<charge::Model> for ChargeDto {
    fn from(c: charge::Model) -> Self {
        Self {
            id: c.id,
            kind: c.kind,
            item_code: c.item_code,
            description: c.description,
            quantity: c.quantity,
            unit_price_fen: c.unit_price_fen,
            amount_fen: c.amount_fen,
            insurance_category: c.insurance_category,
            insurance_fen: c.insurance_fen,
            self_pay_fen: c.self_pay_fen,
        }
    }
}

#[derive(Object, Debug, Clone)]
pub struct PaymentDto {
    pub id: Uuid,
    pub method: String,
    pub amount_fen: i64,
    pub refunded_fen: i64,
    pub receipt_no: String,
    pub paid_at: DateTime<Utc>,
}

impl From<payment::Model> for PaymentDto {
    fn from(p: payment::Model) -> Self {
        Self {
            id: p.id,
            method: p.method,
            amount_fen: p.amount_fen,
            refunded_fen: p.refunded_fen,
            receipt_no: p.receipt_no,
            paid_at: p.paid_at,
        }
    }
}

#[derive(Object, Debug, Clone)]
pub struct RefundDto {
    pub id: Uuid,
    pub payment_id: Uuid,
    pub amount_fen: i64,
    pub reason: String,
    pub receipt_no: String,
    pub refunded_at: DateTime<Utc>,
}

impl From<refund::Model> for RefundDto {
    fn from(r: refund::Model) -> Self {
        Self {
            id: r.id,
            payment_id: r.payment_id,
            amount_fen: r.amount_fen,
            reason: r.reason,
            receipt_no: r.receipt_no,
            refunded_at: r.refunded_at,
        }
    }
}

#[derive(Object, Debug, Clone)]
pub struct BillDto {
    pub id: Uuid,
    pub encounter_id: Uuid,
    pub institution_id: Uuid,
    /// open, partially_paid, paid, partially_refunded or refunded
    pub status: String,
    pub total_fen: i64,
    pub insurance_fen: i64,
    pub self_pay_fen: i64,
    pub paid_fen: i64,
    pub refunded_fen: i64,
    /// What the patient still owes
    pub owed_fen: i64,
    pub charges: Vec<ChargeDto>,
    pub payments: Vec<PaymentDto>,
    pub refunds: Vec<RefundDto>,
}

impl From<BillView> for BillDto {
    fn from(v: BillView) -> Self {
        let owed = v.owed_fen();
        let b = v.bill;
        Self {
            id: b.id,
            encounter_id: b.encounter_id,
            institution_id: b.institution_id,
            status: b.status,
            total_fen: b.total_fen,
            insurance_fen: b.insurance_fen,
            self_pay_fen: b.self_pay_fen,
            paid_fen: b.paid_fen,
            refunded_fen: b.refunded_fen,
            owed_fen: owed,
            charges: v.charges.into_iter().map(Into::into).collect(),
            payments: v.payments.into_iter().map(Into::into).collect(),
            refunds: v.refunds.into_iter().map(Into::into).collect(),
        }
    }
}

#[derive(Object, Debug)]
pub struct PayRequest {
    /// cash, card or mobile
    #[oai(validator(min_length = 1, max_length = 10))]
    pub method: String,
    /// Self-pay amount in fen; at most what is owed
    pub amount_fen: i64,
}

#[derive(Object, Debug)]
pub struct RefundRequest {
    pub amount_fen: i64,
    #[oai(validator(min_length = 2, max_length = 200))]
    pub reason: String,
}

#[derive(ApiResponse)]
pub enum FeesResponse {
    #[oai(status = 200)]
    Ok(Json<Vec<FeeItemDto>>),
}
#[derive(ApiResponse)]
pub enum BillResponse {
    #[oai(status = 200)]
    Ok(Json<BillDto>),
}
#[derive(ApiResponse)]
pub enum PaymentCreated {
    #[oai(status = 201)]
    Created(Json<PaymentDto>),
}
#[derive(ApiResponse)]
pub enum RefundCreated {
    #[oai(status = 201)]
    Created(Json<RefundDto>),
}

pub struct BillingApi;

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::Billing")]
impl BillingApi {
    /// The community's fee schedule
    #[oai(path = "/billing/fee-items", method = "get", operation_id = "billing_fee_items")]
    async fn fees(&self, state: Data<&AppState>, auth: Auth) -> Result<FeesResponse, AppError> {
        Ok(FeesResponse::Ok(Json(service::fee_schedule(&state, &auth.0).await?.into_iter().map(Into::into).collect())))
    }

    /// Post charges to the encounter's bill (fee items plus uncharged prescription lines)
    #[oai(path = "/encounters/:id/charges", method = "post", operation_id = "encounters_charge")]
    async fn charge(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        id: Path<Uuid>,
        body: Json<ChargeRequest>,
    ) -> Result<BillResponse, AppError> {
        let fees = body.0.fee_items.into_iter().map(|f| FeeLine { code: f.code, quantity: f.quantity }).collect();
        Ok(BillResponse::Ok(Json(service::charge(&state, &auth.0, id.0, fees).await?.into())))
    }

    /// A bill of the caller's institution with its charges, payments and refunds
    #[oai(path = "/bills/:id", method = "get", operation_id = "bills_get")]
    async fn get(&self, state: Data<&AppState>, auth: Auth, id: Path<Uuid>) -> Result<BillResponse, AppError> {
        Ok(BillResponse::Ok(Json(service::get_bill(&state, &auth.0, id.0).await?.into())))
    }

    /// Take a payment (partial payments allowed; 422 `overpayment` past what is owed)
    #[oai(path = "/bills/:id/payments", method = "post", operation_id = "bills_pay")]
    async fn pay(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        id: Path<Uuid>,
        body: Json<PayRequest>,
    ) -> Result<PaymentCreated, AppError> {
        Ok(PaymentCreated::Created(Json(
            service::pay(&state, &auth.0, id.0, &body.0.method, body.0.amount_fen).await?.into(),
        )))
    }

    /// Refund part or all of a payment (422 `refund_exceeds_paid` past what it took)
    #[oai(path = "/payments/:id/refunds", method = "post", operation_id = "payments_refund")]
    async fn refund(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        id: Path<Uuid>,
        body: Json<RefundRequest>,
    ) -> Result<RefundCreated, AppError> {
        Ok(RefundCreated::Created(Json(
            service::refund(&state, &auth.0, id.0, body.0.amount_fen, &body.0.reason).await?.into(),
        )))
    }
}
