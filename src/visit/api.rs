//! Visit API: the operations that span clinical, pharmacy and billing. They keep their places
//! in the document (tags Clinical and Pharmacy); only the code lives here.

use std::collections::HashMap;

use poem::web::Data;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use uuid::Uuid;

use super::service::{self, EncounterView};
use crate::billing::api::BillDto;
use crate::clinical::api::{AddendumDto, AllergyDto, DiagnosisDto, EncounterDto, SummaryEncounterDto, VitalsDto};
use crate::identity::ctx::Auth;
use crate::pharmacy::api::{DispenseRequest, DispenseResponse, DispensedBatchDto, DispensedLineDto, PrescriptionDto};
use crate::platform::AppError;
use crate::platform::api_tags::ApiTags;
use crate::platform::state::AppState;

#[derive(Object, Debug)]
pub struct EncounterDetail {
    #[oai(flatten)]
    pub encounter: EncounterDto,
    pub vitals: Vec<VitalsDto>,
    pub diagnoses: Vec<DiagnosisDto>,
    pub addenda: Vec<AddendumDto>,
    pub prescriptions: Vec<PrescriptionDto>,
    #[oai(skip_serializing_if_is_none)]
    pub bill: Option<BillDto>,
}

impl From<EncounterView> for EncounterDetail {
    fn from(v: EncounterView) -> Self {
        Self {
            encounter: v.encounter.into(),
            vitals: v.vitals.into_iter().map(Into::into).collect(),
            diagnoses: v.diagnoses.into_iter().map(Into::into).collect(),
            addenda: v.addenda.into_iter().map(Into::into).collect(),
            prescriptions: v.prescriptions.into_iter().map(Into::into).collect(),
            bill: v.bill.map(Into::into),
        }
    }
}

#[derive(Object, Debug)]
pub struct CommunitySummaryDto {
    pub person_id: Uuid,
    pub allergies: Vec<AllergyDto>,
    /// Newest first, every institution of the community
    pub encounters: Vec<SummaryEncounterDto>,
    pub recent_vitals: Vec<VitalsDto>,
    /// Prescriptions of the last 180 days
    pub medications: Vec<PrescriptionDto>,
}

#[derive(ApiResponse)]
pub enum EncounterDetailResponse {
    #[oai(status = 200)]
    Ok(Json<EncounterDetail>),
}

#[derive(ApiResponse)]
pub enum SummaryResponse {
    #[oai(status = 200)]
    Ok(Json<CommunitySummaryDto>),
}

pub struct ClinicalVisitApi;

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::Clinical")]
impl ClinicalVisitApi {
    /// An encounter with its vitals, diagnoses, addenda, prescriptions and bill
    #[oai(path = "/encounters/:id", method = "get", operation_id = "encounters_get")]
    async fn get(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        id: Path<Uuid>,
    ) -> Result<EncounterDetailResponse, AppError> {
        Ok(EncounterDetailResponse::Ok(Json(service::encounter(&state, &auth.0, id.0).await?.into())))
    }

    /// The person's record across the whole community (for an institution where they are registered, or under break-glass; audited)
    #[oai(path = "/patients/:id/summary", method = "get", operation_id = "patients_summary")]
    async fn summary(&self, state: Data<&AppState>, auth: Auth, id: Path<Uuid>) -> Result<SummaryResponse, AppError> {
        let s = service::community_summary(&state, &auth.0, id.0).await?;
        Ok(SummaryResponse::Ok(Json(CommunitySummaryDto {
            person_id: s.person_id,
            allergies: s.allergies.into_iter().map(Into::into).collect(),
            encounters: s
                .encounters
                .into_iter()
                .map(|e| SummaryEncounterDto {
                    encounter: e.encounter.into(),
                    institution_name: e.institution_name,
                    diagnoses: e.diagnoses.into_iter().map(Into::into).collect(),
                })
                .collect(),
            recent_vitals: s.recent_vitals.into_iter().map(Into::into).collect(),
            medications: s.medications.into_iter().map(Into::into).collect(),
        })))
    }
}

pub struct PharmacyVisitApi;

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::Pharmacy")]
impl PharmacyVisitApi {
    /// Dispense a paid prescription from stock
    #[oai(path = "/prescriptions/:id/dispense", method = "post", operation_id = "prescriptions_dispense")]
    async fn dispense(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        id: Path<Uuid>,
        body: Json<DispenseRequest>,
    ) -> Result<DispenseResponse, AppError> {
        let pinned: HashMap<Uuid, Uuid> = body.0.batches.into_iter().map(|p| (p.line_id, p.batch_id)).collect();
        let lines = service::dispense(&state, &auth.0, id.0, pinned).await?;
        Ok(DispenseResponse::Ok(Json(
            lines
                .into_iter()
                .map(|l| DispensedLineDto {
                    line_id: l.line_id,
                    drug_code: l.drug_code,
                    quantity: l.quantity,
                    batches: l
                        .batches
                        .into_iter()
                        .map(|b| DispensedBatchDto {
                            batch_id: b.batch_id,
                            lot: b.lot,
                            expiry: b.expiry,
                            quantity: b.quantity,
                        })
                        .collect(),
                })
                .collect(),
        )))
    }
}
