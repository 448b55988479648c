//! Pharmacy API: the formulary, stock (receive, adjust, transfer), prescriptions and dispensing.

use chrono::{DateTime, NaiveDate, Utc};
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use uuid::Uuid;

use super::domain::{Frequency, LineRequest};
use super::entity::stock_batch;
use super::service::{self, PrescribedLine, PrescriptionView, Receipt};
use crate::identity::ctx::Auth;
use crate::platform::AppError;
use crate::platform::api_tags::ApiTags;
use crate::platform::codes;
use crate::platform::state::AppState;

#[derive(Object, Debug, Clone)]
pub struct DrugDto {
    pub code: String,
    pub name: String,
    #[oai(skip_serializing_if_is_none)]
    pub name_en: Option<String>,
    pub form: String,
    pub strength: String,
    pub unit: String,
    /// Price per unit, in fen
    pub price_fen: i64,
    /// 甲 A, 乙 B or 丙 C
    pub insurance_category: String,
    #[oai(skip_serializing_if_is_none)]
    pub allergen_class: Option<String>,
    pub stocked_here: bool,
    /// Unexpired units on hand at the caller's institution
    pub on_hand: i64,
}

#[derive(Object, Debug)]
pub struct ReceiveRequest {
    #[oai(validator(min_length = 1, max_length = 64))]
    pub drug_code: String,
    #[oai(validator(min_length = 1, max_length = 40))]
    pub lot: String,
    pub expiry: NaiveDate,
    pub quantity: i64,
}

#[derive(Object, Debug)]
pub struct AdjustRequest {
    pub batch_id: Uuid,
    /// Units to add (positive) or remove (negative)
    pub delta: i64,
    #[oai(validator(min_length = 2, max_length = 200))]
    pub reason: String,
}

#[derive(Object, Debug, Clone)]
pub struct BatchDto {
    pub id: Uuid,
    pub drug_code: String,
    pub lot: String,
    pub expiry: NaiveDate,
    pub quantity: i64,
    pub received_at: DateTime<Utc>,
}

impl From<stock_batch::Model> for BatchDto {
    fn from(b: stock_batch::Model) -> Self {
        Self {
            id: b.id,
            drug_code: b.drug_code,
            lot: b.lot,
            expiry: b.expiry,
            quantity: b.quantity,
            received_at: b.received_at,
        }
    }
}

#[derive(Object, Debug)]
pub struct TransferRequest {
    pub to_institution_id: Uuid,
    #[oai(validator(min_length = 1, max_length = 64))]
    pub drug_code: String,
    pub quantity: i64,
}

#[derive(Object, Debug)]
pub struct TransferDto {
    pub id: Uuid,
    pub from_institution_id: Uuid,
    pub to_institution_id: Uuid,
    pub drug_code: String,
    pub quantity: i64,
    pub value_fen: i64,
}

#[derive(Object, Debug)]
pub struct LineDto {
    #[oai(validator(min_length = 1, max_length = 64))]
    pub drug_code: String,
    /// Amount per dose, e.g. 5 (mg)
    pub dose: f64,
    #[oai(validator(min_length = 1, max_length = 10))]
    pub dose_unit: String,
    /// once, qd, bid, tid, qid, qn, q12h, q8h or prn
    #[oai(validator(min_length = 1, max_length = 10))]
    pub frequency: String,
    pub days: i32,
    /// Units to dispense
    pub quantity: i64,
}

#[derive(Object, Debug)]
pub struct PrescribeRequest {
    /// A chronic-disease prescription may cover up to 30 days (otherwise 7)
    #[oai(default)]
    pub chronic: bool,
    #[oai(validator(min_items = 1, max_items = 20))]
    pub lines: Vec<LineDto>,
}

#[derive(Object, Debug, Clone)]
pub struct PrescriptionLineDto {
    pub id: Uuid,
    pub line_no: i32,
    pub drug_code: String,
    pub drug_name: String,
    pub dose: f64,
    pub dose_unit: String,
    pub frequency: String,
    pub days: i32,
    pub quantity: i64,
    pub unit_price_fen: i64,
    pub insurance_category: String,
}

#[derive(Object, Debug, Clone)]
pub struct PrescriptionDto {
    pub id: Uuid,
    pub encounter_id: Uuid,
    pub person_id: Uuid,
    pub institution_id: Uuid,
    pub chronic: bool,
    /// active or dispensed
    pub status: String,
    pub created_at: DateTime<Utc>,
    #[oai(skip_serializing_if_is_none)]
    pub dispensed_at: Option<DateTime<Utc>>,
    pub lines: Vec<PrescriptionLineDto>,
}

impl From<PrescriptionView> for PrescriptionDto {
    fn from(v: PrescriptionView) -> Self {
        let p = v.prescription;
        Self {
            id: p.id,
            encounter_id: p.encounter_id,
            person_id: p.person_id,
            institution_id: p.institution_id,
            chronic: p.chronic,
            status: p.status.as_str().into(),
            created_at: p.created_at,
            dispensed_at: p.dispensed_at,
            lines: v
                .lines
                .into_iter()
                .map(|PrescribedLine { line: l, drug: d }| PrescriptionLineDto {
                    id: l.id,
                    line_no: l.line_no,
                    drug_code: l.drug_code,
                    drug_name: format!("{} {}", d.name, d.strength),
                    dose: l.dose,
                    dose_unit: l.dose_unit,
                    frequency: l.frequency,
                    days: l.days,
                    quantity: l.quantity,
                    unit_price_fen: l.unit_price_fen,
                    insurance_category: l.insurance_category,
                })
                .collect(),
        }
    }
}

#[derive(Object, Debug)]
pub struct PinnedBatch {
    pub line_id: Uuid,
    pub batch_id: Uuid,
}

#[derive(Object, Debug, Default)]
pub struct DispenseRequest {
    /// Dispense these lines from a named batch instead of first-expiry-first-out
    #[oai(default)]
    pub batches: Vec<PinnedBatch>,
}

#[derive(Object, Debug)]
pub struct DispensedBatchDto {
    pub batch_id: Uuid,
    pub lot: String,
    pub expiry: NaiveDate,
    pub quantity: i64,
}

#[derive(Object, Debug)]
pub struct DispensedLineDto {
    pub line_id: Uuid,
    pub drug_code: String,
    pub quantity: i64,
    pub batches: Vec<DispensedBatchDto>,
}

#[derive(ApiResponse)]
pub enum DrugsResponse {
    #[oai(status = 200)]
    Ok(Json<Vec<DrugDto>>),
}
#[derive(ApiResponse)]
pub enum BatchResponse {
    #[oai(status = 200)]
    Ok(Json<BatchDto>),
}
#[derive(ApiResponse)]
pub enum BatchCreated {
    #[oai(status = 201)]
    Created(Json<BatchDto>),
}
#[derive(ApiResponse)]
pub enum BatchesResponse {
    #[oai(status = 200)]
    Ok(Json<Vec<BatchDto>>),
}
#[derive(ApiResponse)]
pub enum TransferCreated {
    #[oai(status = 201)]
    Created(Json<TransferDto>),
}
#[derive(ApiResponse)]
pub enum PrescriptionCreated {
    #[oai(status = 201)]
    Created(Json<PrescriptionDto>),
}
#[derive(ApiResponse)]
pub enum PrescriptionResponse {
    #[oai(status = 200)]
    Ok(Json<PrescriptionDto>),
}
#[derive(ApiResponse)]
pub enum DispenseResponse {
    #[oai(status = 200)]
    Ok(Json<Vec<DispensedLineDto>>),
}

pub struct PharmacyApi;

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::Pharmacy")]
impl PharmacyApi {
    /// The community formulary, with what the caller's institution stocks and has on hand
    #[oai(path = "/pharmacy/drugs", method = "get", operation_id = "pharmacy_drugs")]
    async fn drugs(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        #[oai(validator(max_length = 40))] q: Query<Option<String>>,
    ) -> Result<DrugsResponse, AppError> {
        let list = service::formulary(&state, &auth.0, q.0.as_deref()).await?;
        Ok(DrugsResponse::Ok(Json(
            list.into_iter()
                .map(|v| DrugDto {
                    code: v.drug.code,
                    name: v.drug.name,
                    name_en: v.drug.name_en,
                    form: v.drug.form,
                    strength: v.drug.strength,
                    unit: v.drug.unit,
                    price_fen: v.drug.price_fen,
                    insurance_category: v.drug.insurance_category,
                    allergen_class: v.drug.allergen_class,
                    stocked_here: v.stocked_here,
                    on_hand: v.on_hand,
                })
                .collect(),
        )))
    }

    /// Stock batches at the caller's institution
    #[oai(path = "/pharmacy/stock", method = "get", operation_id = "pharmacy_stock")]
    async fn stock(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        #[oai(validator(max_length = 64))] drug_code: Query<Option<String>>,
    ) -> Result<BatchesResponse, AppError> {
        let rows = service::stock(&state, &auth.0, drug_code.0.as_deref()).await?;
        Ok(BatchesResponse::Ok(Json(rows.into_iter().map(Into::into).collect())))
    }

    /// Receive a batch into stock
    #[oai(path = "/pharmacy/stock/receipts", method = "post", operation_id = "pharmacy_receive")]
    async fn receive(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        body: Json<ReceiveRequest>,
    ) -> Result<BatchCreated, AppError> {
        let b = body.0;
        let batch = service::receive(
            &state,
            &auth.0,
            Receipt { drug_code: b.drug_code, lot: b.lot, expiry: b.expiry, quantity: b.quantity },
        )
        .await?;
        Ok(BatchCreated::Created(Json(batch.into())))
    }

    /// Adjust a batch (count correction, breakage, expiry write-off), with a reason
    #[oai(path = "/pharmacy/stock/adjustments", method = "post", operation_id = "pharmacy_adjust")]
    async fn adjust(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        body: Json<AdjustRequest>,
    ) -> Result<BatchResponse, AppError> {
        let b = body.0;
        Ok(BatchResponse::Ok(Json(service::adjust(&state, &auth.0, b.batch_id, b.delta, &b.reason).await?.into())))
    }

    /// Transfer stock to another institution of the community (first expiry first out)
    #[oai(path = "/pharmacy/transfers", method = "post", operation_id = "pharmacy_transfer")]
    async fn transfer(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        body: Json<TransferRequest>,
    ) -> Result<TransferCreated, AppError> {
        let b = body.0;
        let t = service::transfer(&state, &auth.0, b.to_institution_id, &b.drug_code, b.quantity).await?;
        Ok(TransferCreated::Created(Json(TransferDto {
            id: t.id,
            from_institution_id: t.from,
            to_institution_id: t.to,
            drug_code: t.drug_code,
            quantity: t.quantity,
            value_fen: t.value_fen,
        })))
    }

    /// Prescribe on an open encounter (checks day limits, duplicates and allergies)
    #[oai(path = "/encounters/:id/prescriptions", method = "post", operation_id = "encounters_prescribe")]
    async fn prescribe(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        id: Path<Uuid>,
        body: Json<PrescribeRequest>,
    ) -> Result<PrescriptionCreated, AppError> {
        let b = body.0;
        let mut lines = Vec::with_capacity(b.lines.len());
        for (i, l) in b.lines.into_iter().enumerate() {
            let frequency = Frequency::parse(&l.frequency).ok_or_else(|| {
                AppError::new(codes::FREQUENCY_INVALID, "frequency is once, qd, bid, tid, qid, qn, q12h, q8h or prn")
                    .with_details(serde_json::json!({ "line": i }))
            })?;
            lines.push(LineRequest {
                drug_code: l.drug_code,
                dose: l.dose,
                dose_unit: l.dose_unit,
                frequency,
                days: l.days,
                quantity: l.quantity,
            });
        }
        let p = service::prescribe(&state, &auth.0, id.0, b.chronic, lines).await?;
        Ok(PrescriptionCreated::Created(Json(p.into())))
    }

    /// A prescription of the caller's institution
    #[oai(path = "/prescriptions/:id", method = "get", operation_id = "prescriptions_get")]
    async fn get(&self, state: Data<&AppState>, auth: Auth, id: Path<Uuid>) -> Result<PrescriptionResponse, AppError> {
        Ok(PrescriptionResponse::Ok(Json(service::get_prescription(&state, &auth.0, id.0).await?.into())))
    }
}
