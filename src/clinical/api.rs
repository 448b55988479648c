//! Clinical API: encounters and what is recorded in them, allergies, the ICD-10 catalog, and the
//! community patient summary.

use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use uuid::Uuid;

use super::domain::{EncounterKind, Vitals};
use super::entity::{addendum, allergy, break_glass, diagnosis, encounter, vital_sign};
use super::service::{self, OpenInput};
use crate::identity::ctx::Auth;
use crate::platform::AppError;
use crate::platform::api_tags::ApiTags;
use crate::platform::codes;
use crate::platform::state::AppState;

#[derive(Object, Debug)]
pub struct OpenEncounterRequest {
    pub person_id: Uuid,
    pub department_id: Option<Uuid>,
    /// `outpatient` (default) or `emergency`
    #[oai(validator(max_length = 20))]
    pub kind: Option<String>,
    #[oai(validator(max_length = 500))]
    pub chief_complaint: Option<String>,
}

#[derive(Object, Debug, Clone)]
pub struct EncounterDto {
    pub id: Uuid,
    pub institution_id: Uuid,
    pub person_id: Uuid,
    #[oai(skip_serializing_if_is_none)]
    pub department_id: Option<Uuid>,
    pub clinician_id: Uuid,
    pub kind: String,
    /// `open` or `closed`
    pub status: String,
    #[oai(skip_serializing_if_is_none)]
    pub chief_complaint: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub notes: Option<String>,
    pub opened_at: DateTime<Utc>,
    #[oai(skip_serializing_if_is_none)]
    pub closed_at: Option<DateTime<Utc>>,
}

impl From<encounter::Model> for EncounterDto {
    fn from(e: encounter::Model) -> Self {
        Self {
            id: e.id,
            institution_id: e.institution_id,
            person_id: e.person_id,
            department_id: e.department_id,
            clinician_id: e.clinician_id,
            kind: e.kind.as_str().into(),
            status: e.status.as_str().into(),
            chief_complaint: e.chief_complaint,
            notes: e.notes,
            opened_at: e.opened_at,
            closed_at: e.closed_at,
        }
    }
}

#[derive(Object, Debug, Default)]
pub struct VitalsRequest {
    /// mmHg
    pub systolic: Option<i32>,
    /// mmHg
    pub diastolic: Option<i32>,
    /// beats per minute
    pub pulse: Option<i32>,
    /// °C
    pub temperature: Option<f64>,
    pub weight_kg: Option<f64>,
    /// mmol/L
    pub fasting_glucose: Option<f64>,
}

#[derive(Object, Debug, Clone)]
pub struct VitalsDto {
    pub id: Uuid,
    pub encounter_id: Uuid,
    pub institution_id: Uuid,
    pub recorded_at: DateTime<Utc>,
    #[oai(skip_serializing_if_is_none)]
    pub systolic: Option<i32>,
    #[oai(skip_serializing_if_is_none)]
    pub diastolic: Option<i32>,
    #[oai(skip_serializing_if_is_none)]
    pub pulse: Option<i32>,
    #[oai(skip_serializing_if_is_none)]
    pub temperature: Option<f64>,
    #[oai(skip_serializing_if_is_none)]
    pub weight_kg: Option<f64>,
    #[oai(skip_serializing_if_is_none)]
    pub fasting_glucose: Option<f64>,
    /// SBP >= 180, DBP >= 110 or glucose >= 16.7
    pub danger: bool,
}

impl From<vital_sign::Model> for VitalsDto {
    fn from(v: vital_sign::Model) -> Self {
        let danger = Vitals {
            systolic: v.systolic,
            diastolic: v.diastolic,
            pulse: v.pulse,
            temperature: v.temperature,
            weight_kg: v.weight_kg,
            fasting_glucose: v.fasting_glucose,
        }
        .danger();
        Self {
            id: v.id,
            encounter_id: v.encounter_id,
            institution_id: v.institution_id,
            recorded_at: v.recorded_at,
            systolic: v.systolic,
            diastolic: v.diastolic,
            pulse: v.pulse,
            temperature: v.temperature,
            weight_kg: v.weight_kg,
            fasting_glucose: v.fasting_glucose,
            danger,
        }
    }
}

#[derive(Object, Debug)]
pub struct DiagnosisRequest {
    /// ICD-10 code from the catalog, e.g. `I10`
    #[oai(validator(min_length = 1, max_length = 10))]
    pub code: String,
    /// The first diagnosis is primary anyway
    #[oai(default)]
    pub primary: bool,
}

#[derive(Object, Debug, Clone)]
pub struct DiagnosisDto {
    pub id: Uuid,
    pub code: String,
    pub name: String,
    pub name_en: String,
    pub primary: bool,
    pub created_at: DateTime<Utc>,
}

impl From<diagnosis::Model> for DiagnosisDto {
    fn from(d: diagnosis::Model) -> Self {
        let icd = super::icd10::lookup(&d.code);
        Self {
            id: d.id,
            name: icd.map(|i| i.name.to_string()).unwrap_or_default(),
            name_en: icd.map(|i| i.name_en.to_string()).unwrap_or_default(),
            code: d.code,
            primary: d.is_primary,
            created_at: d.created_at,
        }
    }
}

#[derive(Object, Debug)]
pub struct NotesRequest {
    #[oai(validator(max_length = 500))]
    pub chief_complaint: Option<String>,
    #[oai(validator(max_length = 8000))]
    pub notes: Option<String>,
}

#[derive(Object, Debug)]
pub struct AddendumRequest {
    #[oai(validator(min_length = 1, max_length = 4000))]
    pub text: String,
}

#[derive(Object, Debug, Clone)]
pub struct AddendumDto {
    pub id: Uuid,
    pub text: String,
    pub author_id: Uuid,
    pub created_at: DateTime<Utc>,
}

impl From<addendum::Model> for AddendumDto {
    fn from(a: addendum::Model) -> Self {
        Self { id: a.id, text: a.text, author_id: a.author_id, created_at: a.created_at }
    }
}

#[derive(Object, Debug)]
pub struct AllergyRequest {
    /// A drug code, or a drug class such as `penicillin`
    #[oai(validator(min_length = 1, max_length = 64))]
    pub allergen: String,
    #[oai(validator(max_length = 200))]
    pub reaction: Option<String>,
}

#[derive(Object, Debug, Clone)]
pub struct AllergyDto {
    pub id: Uuid,
    pub allergen: String,
    #[oai(skip_serializing_if_is_none)]
    pub reaction: Option<String>,
    pub institution_id: Uuid,
    pub recorded_at: DateTime<Utc>,
}

impl From<allergy::Model> for AllergyDto {
    fn from(a: allergy::Model) -> Self {
        Self {
            id: a.id,
            allergen: a.allergen,
            reaction: a.reaction,
            institution_id: a.institution_id,
            recorded_at: a.recorded_at,
        }
    }
}

#[derive(Object, Debug)]
pub struct IcdDto {
    pub code: String,
    pub name: String,
    pub name_en: String,
}

#[derive(Object, Debug)]
pub struct SummaryEncounterDto {
    pub encounter: EncounterDto,
    pub institution_name: String,
    pub diagnoses: Vec<DiagnosisDto>,
}

#[derive(ApiResponse)]
pub enum EncounterResponse {
    #[oai(status = 200)]
    Ok(Json<EncounterDto>),
}

#[derive(ApiResponse)]
pub enum EncounterCreated {
    #[oai(status = 201)]
    Created(Json<EncounterDto>),
}

#[derive(ApiResponse)]
pub enum EncounterListResponse {
    #[oai(status = 200)]
    Ok(Json<Vec<EncounterDto>>),
}

#[derive(ApiResponse)]
pub enum VitalsCreated {
    #[oai(status = 201)]
    Created(Json<VitalsDto>),
}

#[derive(ApiResponse)]
pub enum DiagnosisCreated {
    #[oai(status = 201)]
    Created(Json<DiagnosisDto>),
}

#[derive(ApiResponse)]
pub enum AddendumCreated {
    #[oai(status = 201)]
    Created(Json<AddendumDto>),
}

#[derive(ApiResponse)]
pub enum AllergyCreated {
    #[oai(status = 201)]
    Created(Json<AllergyDto>),
}

#[derive(ApiResponse)]
pub enum IcdResponse {
    #[oai(status = 200)]
    Ok(Json<Vec<IcdDto>>),
}

/// Break-glass: why the record of a person not registered here must be read now.
#[derive(Object, Debug)]
pub struct BreakGlassRequest {
    /// The written reason (10 to 500 characters), kept with the declaration.
    #[oai(validator(max_length = 500))]
    pub reason: String,
}

/// An open break-glass declaration.
#[derive(Object, Debug, Clone)]
pub struct BreakGlassDto {
    pub id: Uuid,
    pub person_id: Uuid,
    pub opened_at: DateTime<Utc>,
    /// The summary is open to the declaring clinician, at this institution, until then.
    pub expires_at: DateTime<Utc>,
}

impl From<break_glass::Model> for BreakGlassDto {
    fn from(b: break_glass::Model) -> Self {
        Self { id: b.id, person_id: b.person_id, opened_at: b.opened_at, expires_at: b.expires_at }
    }
}

#[derive(ApiResponse)]
pub enum BreakGlassCreated {
    #[oai(status = 201)]
    Created(Json<BreakGlassDto>),
}

pub struct ClinicalApi;

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::Clinical")]
impl ClinicalApi {
    /// Open an outpatient or emergency encounter for a person registered here
    #[oai(path = "/encounters", method = "post", operation_id = "encounters_open")]
    async fn open(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        body: Json<OpenEncounterRequest>,
    ) -> Result<EncounterCreated, AppError> {
        let b = body.0;
        let kind = match b.kind.as_deref() {
            None => EncounterKind::Outpatient,
            Some(k) => EncounterKind::parse(k)
                .ok_or_else(|| AppError::new(codes::ENCOUNTER_KIND_INVALID, "kind is outpatient or emergency"))?,
        };
        let e = service::open(
            &state,
            &auth.0,
            OpenInput {
                person_id: b.person_id,
                department_id: b.department_id,
                kind,
                chief_complaint: b.chief_complaint,
            },
        )
        .await?;
        Ok(EncounterCreated::Created(Json(e.into())))
    }

    /// Encounters at the caller's institution, newest first
    #[oai(path = "/encounters", method = "get", operation_id = "encounters_list")]
    async fn list(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        person_id: Query<Option<Uuid>>,
        since: Query<Option<DateTime<Utc>>>,
        #[oai(default = "fifty", validator(minimum(value = "1"), maximum(value = "500")))] limit: Query<u64>,
    ) -> Result<EncounterListResponse, AppError> {
        let rows = service::list(&state, &auth.0, person_id.0, since.0, limit.0).await?;
        Ok(EncounterListResponse::Ok(Json(rows.into_iter().map(Into::into).collect())))
    }

    /// Record vital signs (impossible values get 422 `vital_out_of_range`)
    #[oai(path = "/encounters/:id/vitals", method = "post", operation_id = "encounters_vitals")]
    async fn vitals(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        id: Path<Uuid>,
        body: Json<VitalsRequest>,
    ) -> Result<VitalsCreated, AppError> {
        let b = body.0;
        let v = Vitals {
            systolic: b.systolic,
            diastolic: b.diastolic,
            pulse: b.pulse,
            temperature: b.temperature,
            weight_kg: b.weight_kg,
            fasting_glucose: b.fasting_glucose,
        };
        Ok(VitalsCreated::Created(Json(service::record_vitals(&state, &auth.0, id.0, v).await?.into())))
    }

    /// Add an ICD-10 diagnosis
    #[oai(path = "/encounters/:id/diagnoses", method = "post", operation_id = "encounters_diagnose")]
    async fn diagnose(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        id: Path<Uuid>,
        body: Json<DiagnosisRequest>,
    ) -> Result<DiagnosisCreated, AppError> {
        Ok(DiagnosisCreated::Created(Json(
            service::add_diagnosis(&state, &auth.0, id.0, &body.0.code, body.0.primary).await?.into(),
        )))
    }

    /// Update the chief complaint or notes of an open encounter
    #[oai(path = "/encounters/:id/notes", method = "put", operation_id = "encounters_notes")]
    async fn notes(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        id: Path<Uuid>,
        body: Json<NotesRequest>,
    ) -> Result<EncounterResponse, AppError> {
        let b = body.0;
        Ok(EncounterResponse::Ok(Json(
            service::update_notes(&state, &auth.0, id.0, b.chief_complaint, b.notes).await?.into(),
        )))
    }

    /// Close (sign) the encounter; it is immutable afterwards
    #[oai(path = "/encounters/:id/close", method = "post", operation_id = "encounters_close")]
    async fn close(&self, state: Data<&AppState>, auth: Auth, id: Path<Uuid>) -> Result<EncounterResponse, AppError> {
        Ok(EncounterResponse::Ok(Json(service::close(&state, &auth.0, id.0).await?.into())))
    }

    /// Add a correction to an encounter (the only change a closed encounter takes)
    #[oai(path = "/encounters/:id/addenda", method = "post", operation_id = "encounters_addendum")]
    async fn addendum(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        id: Path<Uuid>,
        body: Json<AddendumRequest>,
    ) -> Result<AddendumCreated, AppError> {
        Ok(AddendumCreated::Created(Json(service::add_addendum(&state, &auth.0, id.0, &body.0.text).await?.into())))
    }

    /// Record an allergy of a person registered here
    #[oai(path = "/patients/:id/allergies", method = "post", operation_id = "patients_allergies_add")]
    async fn allergy(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        id: Path<Uuid>,
        body: Json<AllergyRequest>,
    ) -> Result<AllergyCreated, AppError> {
        let b = body.0;
        Ok(AllergyCreated::Created(Json(
            service::record_allergy(&state, &auth.0, id.0, &b.allergen, b.reaction).await?.into(),
        )))
    }

    /// Break-glass: open the community summary of a person not registered here, with a written reason (doctors; 4 hours; audited)
    #[oai(path = "/patients/:id/break-glass", method = "post", operation_id = "patients_break_glass")]
    async fn break_glass(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        id: Path<Uuid>,
        body: Json<BreakGlassRequest>,
    ) -> Result<BreakGlassCreated, AppError> {
        Ok(BreakGlassCreated::Created(Json(service::break_glass(&state, &auth.0, id.0, &body.0.reason).await?.into())))
    }

    /// Search the ICD-10 catalog by code, Chinese name or pinyin initials (`gxy`)
    #[oai(path = "/icd10", method = "get", operation_id = "icd10_search")]
    async fn icd10(
        &self,
        auth: Auth,
        #[oai(validator(min_length = 1, max_length = 40))] q: Query<String>,
        #[oai(default = "twenty", validator(minimum(value = "1"), maximum(value = "100")))] limit: Query<u64>,
    ) -> Result<IcdResponse, AppError> {
        auth.0.require(crate::identity::ctx::Perm::InstitutionRead)?;
        Ok(IcdResponse::Ok(Json(
            super::icd10::search(&q.0, limit.0 as usize)
                .into_iter()
                .map(|d| IcdDto { code: d.code.into(), name: d.name.into(), name_en: d.name_en.into() })
                .collect(),
        )))
    }
}

fn fifty() -> u64 {
    50
}
fn twenty() -> u64 {
    20
}
