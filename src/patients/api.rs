//! Patients API (the MPI). Identifiers (resident ID, phone, insurance number) are masked —
//! `110105********123X`, `138****5678` — unless the caller holds `village_doctor`,
//! `township_doctor`, `county_doctor`, `referral_coordinator` or `cashier` in the session's
//! institution. Patient data never travels in URLs: search and match take a JSON body.

use chrono::{DateTime, NaiveDate, Utc};
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi};
use uuid::Uuid;

use super::domain::{Demographics, RawDemographics};
use super::matching::Grade;
use super::service::{self, CandidateView, PersonView, RegisterInput};
use crate::identity::ctx::Auth;
use crate::platform::AppError;
use crate::platform::api_tags::ApiTags;
use crate::platform::state::AppState;

#[derive(Object, Debug)]
pub struct DemographicsDto {
    /// Name as written (Chinese characters, or Latin letters)
    #[oai(validator(min_length = 1, max_length = 60))]
    pub name: String,
    /// `male` or `female`; derived from the resident ID when omitted
    #[oai(validator(max_length = 10))]
    pub sex: Option<String>,
    /// `YYYY-MM-DD`, or `YYYY` when only the year is known; derived from the resident ID when omitted
    #[oai(validator(max_length = 10))]
    pub birth_date: Option<String>,
    /// Resident ID number (GB 11643), 18 characters or the legacy 15 digits
    #[oai(validator(max_length = 24))]
    pub resident_id: Option<String>,
    #[oai(validator(max_length = 20))]
    pub phone: Option<String>,
    /// Medical insurance card number
    #[oai(validator(max_length = 30))]
    pub insurance_no: Option<String>,
    /// 9-digit township or 12-digit village division code of the address
    #[oai(validator(max_length = 12))]
    pub address_division: Option<String>,
}

impl DemographicsDto {
    fn raw(&self) -> RawDemographics {
        RawDemographics {
            name: self.name.clone(),
            sex: self.sex.clone(),
            birth_date: self.birth_date.clone(),
            resident_id: self.resident_id.clone(),
            phone: self.phone.clone(),
            insurance_no: self.insurance_no.clone(),
            address_division: self.address_division.clone(),
        }
    }
}

#[derive(Object, Debug)]
pub struct CreateNew {
    /// Why this is a new person despite the probable matches
    #[oai(validator(min_length = 2, max_length = 500))]
    pub reason: String,
}

#[derive(Object, Debug)]
pub struct RegisterRequest {
    #[oai(flatten)]
    pub demographics: DemographicsDto,
    /// Link to this existing person (after a 409 `probable_match`)
    pub link_to: Option<Uuid>,
    /// Create a new person despite probable matches (they go to the review queue)
    pub create_new: Option<CreateNew>,
}

#[derive(Object, Debug, Clone)]
pub struct RegistrationDto {
    pub id: Uuid,
    pub institution_id: Uuid,
    pub institution_name: String,
    /// Medical record number at that institution
    pub mrn: String,
    pub registered_at: DateTime<Utc>,
}

#[derive(Object, Debug, Clone)]
pub struct PersonDto {
    pub id: Uuid,
    pub name: String,
    #[oai(skip_serializing_if_is_none)]
    pub sex: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub birth_date: Option<NaiveDate>,
    #[oai(skip_serializing_if_is_none)]
    pub birth_year: Option<i32>,
    /// Resident ID; masked unless the caller holds village_doctor, township_doctor, county_doctor or referral_coordinator here; anyone else reveals it with a purpose (patients_reveal)
    #[oai(skip_serializing_if_is_none)]
    pub resident_id: Option<String>,
    /// Phone; masked unless the caller holds village_doctor, township_doctor, county_doctor or referral_coordinator here; anyone else reveals it with a purpose (patients_reveal)
    #[oai(skip_serializing_if_is_none)]
    pub phone: Option<String>,
    /// Insurance number; masked unless the caller holds village_doctor, township_doctor, county_doctor or referral_coordinator here; anyone else reveals it with a purpose (patients_reveal)
    #[oai(skip_serializing_if_is_none)]
    pub insurance_no: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub address_division: Option<String>,
    /// `active`, or `merged` into `replaced_by`
    pub status: String,
    #[oai(skip_serializing_if_is_none)]
    pub replaced_by: Option<Uuid>,
    /// Whether the caller's institution has this person registered
    pub registered_here: bool,
    pub registrations: Vec<RegistrationDto>,
}

impl From<PersonView> for PersonDto {
    fn from(p: PersonView) -> Self {
        Self {
            id: p.id,
            name: p.name,
            sex: p.sex,
            birth_date: p.birth_date,
            birth_year: p.birth_year,
            resident_id: p.resident_id,
            phone: p.phone,
            insurance_no: p.insurance_no,
            address_division: p.address_division,
            status: p.status,
            replaced_by: p.replaced_by,
            registered_here: p.registered_here,
            registrations: p
                .registrations
                .into_iter()
                .map(|r| RegistrationDto {
                    id: r.id,
                    institution_id: r.institution_id,
                    institution_name: r.institution_name,
                    mrn: r.mrn,
                    registered_at: r.registered_at,
                })
                .collect(),
        }
    }
}

#[derive(Object, Debug)]
pub struct RegisterResult {
    pub person: PersonDto,
    /// The registration at the caller's institution
    pub registration_id: Uuid,
    pub mrn: String,
    /// True when linked to an existing person
    pub matched: bool,
    /// What the person's record still lacks, for someone to complete: `sex_missing`,
    /// `birth_date_missing` (neither a date nor a year). Empty when complete.
    pub data_quality: Vec<String>,
}

#[derive(Enum, Debug, Clone, Copy)]
#[oai(rename_all = "snake_case")]
pub enum GradeDto {
    Certain,
    Probable,
    Possible,
}

#[derive(Object, Debug)]
pub struct FieldComparison {
    /// resident_id, name, birth_date, sex, phone, insurance_no or address
    pub field: String,
    /// e.g. exact, same_pinyin, similar_pinyin, transposed, same_tail, different
    pub level: String,
    pub weight: f64,
}

#[derive(Object, Debug)]
pub struct CandidateDto {
    pub person: PersonDto,
    pub score: f64,
    pub grade: GradeDto,
    pub agreements: Vec<FieldComparison>,
    pub disagreements: Vec<FieldComparison>,
}

fn field_name(f: super::matching::Field) -> String {
    serde_json::to_value(f).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

impl From<CandidateView> for CandidateDto {
    fn from(c: CandidateView) -> Self {
        let conv = |x: &super::matching::Comparison| FieldComparison {
            field: field_name(x.field),
            level: x.level.to_string(),
            weight: x.weight,
        };
        Self {
            agreements: c.comparisons.iter().filter(|x| x.weight > 0.0).map(conv).collect(),
            disagreements: c.comparisons.iter().filter(|x| x.weight <= 0.0).map(conv).collect(),
            person: c.person.into(),
            score: c.score,
            grade: match c.grade {
                Grade::Certain => GradeDto::Certain,
                Grade::Probable => GradeDto::Probable,
                _ => GradeDto::Possible,
            },
        }
    }
}

#[derive(Object, Debug)]
pub struct MatchResult {
    /// Ranked, best first; empty when nobody resembles the query
    pub candidates: Vec<CandidateDto>,
}

#[derive(Object, Debug)]
pub struct SearchRequest {
    /// Chinese name (homophones match too) or pinyin initials such as `zw`
    #[oai(validator(max_length = 60))]
    pub name: Option<String>,
    #[oai(validator(max_length = 24))]
    pub resident_id: Option<String>,
    #[oai(validator(max_length = 20))]
    pub phone: Option<String>,
    /// `YYYY-MM-DD` or `YYYY`
    #[oai(validator(max_length = 10))]
    pub birth_date: Option<String>,
    #[oai(default = "one", validator(minimum(value = "1"), maximum(value = "10000")))]
    pub page: u64,
    #[oai(default = "twenty", validator(minimum(value = "1"), maximum(value = "100")))]
    pub page_size: u64,
}

fn one() -> u64 {
    1
}
fn twenty() -> u64 {
    20
}

#[derive(Object, Debug)]
pub struct SearchResult {
    pub items: Vec<PersonDto>,
    pub page: u64,
    pub page_size: u64,
    pub has_more: bool,
}

#[derive(Object, Debug)]
pub struct MergeRequest {
    pub survivor_id: Uuid,
    pub merged_id: Uuid,
    #[oai(validator(min_length = 2, max_length = 500))]
    pub reason: String,
}

#[derive(Object, Debug)]
pub struct ReasonRequest {
    #[oai(validator(min_length = 2, max_length = 500))]
    pub reason: String,
}

#[derive(Object, Debug)]
pub struct PairMergeRequest {
    /// Which of the pair survives
    pub survivor_id: Uuid,
    #[oai(validator(min_length = 2, max_length = 500))]
    pub reason: String,
}

#[derive(Object, Debug)]
pub struct MergeCreated {
    pub merge_id: Uuid,
}

#[derive(Object, Debug)]
pub struct DuplicatePairDto {
    pub id: Uuid,
    pub score: f64,
    pub status: String,
    pub detected_at: DateTime<Utc>,
    pub a: PersonDto,
    pub b: PersonDto,
}

#[derive(Enum, Debug, Clone, Copy)]
#[oai(rename_all = "snake_case")]
pub enum PairStatus {
    Open,
    Merged,
    NotDuplicate,
}

/// Which identifier to reveal.
#[derive(Enum, Debug, Clone, Copy)]
#[oai(rename_all = "snake_case")]
pub enum IdentifierFieldDto {
    ResidentId,
    Phone,
    InsuranceNo,
}

/// Why: treatment (诊疗), referral (转诊), insurance_claim (医保结算), identity_check (身份核验),
/// patient_contact (联系患者).
#[derive(Enum, Debug, Clone, Copy)]
#[oai(rename_all = "snake_case")]
pub enum RevealPurposeDto {
    Treatment,
    Referral,
    InsuranceClaim,
    IdentityCheck,
    PatientContact,
}

#[derive(Object, Debug)]
pub struct RevealRequest {
    pub field: IdentifierFieldDto,
    pub purpose: RevealPurposeDto,
    /// In the caller's words, 2 to 200 characters
    #[oai(validator(min_length = 2, max_length = 200))]
    pub reason: String,
}

#[derive(Object, Debug)]
pub struct RevealResult {
    /// The reveal's record (and its audit row's resource)
    pub reveal_id: Uuid,
    pub field: IdentifierFieldDto,
    /// In full; absent when the person has none on record
    pub value: Option<String>,
}

#[derive(ApiResponse)]
pub enum RevealResponse {
    #[oai(status = 200)]
    Ok(Json<RevealResult>),
}

#[derive(ApiResponse)]
pub enum RegisterResponse {
    /// A new person was created and registered here
    #[oai(status = 201)]
    Created(Json<RegisterResult>),
    /// Linked to an existing person (certain match, or `link_to`) and registered here
    #[oai(status = 200)]
    Linked(Json<RegisterResult>),
}

#[derive(ApiResponse)]
pub enum MatchResponse {
    #[oai(status = 200)]
    Ok(Json<MatchResult>),
}

#[derive(ApiResponse)]
pub enum SearchResponse {
    #[oai(status = 200)]
    Ok(Json<SearchResult>),
}

#[derive(ApiResponse)]
pub enum GetPersonResponse {
    #[oai(status = 200)]
    Ok(Json<PersonDto>),
}

#[derive(ApiResponse)]
pub enum MergeResponse {
    #[oai(status = 201)]
    Created(Json<MergeCreated>),
}

#[derive(ApiResponse)]
pub enum DoneResponse {
    #[oai(status = 204)]
    Done,
}

#[derive(ApiResponse)]
pub enum DuplicatesResponse {
    #[oai(status = 200)]
    Ok(Json<Vec<DuplicatePairDto>>),
}

pub struct PatientsApi;

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::Patients")]
impl PatientsApi {
    /// Register a person at the caller's institution
    ///
    /// Matches first. A certain match links to the existing person (200, `matched: true`). A
    /// probable match answers 409 `probable_match` with the ranked candidates in
    /// `details.candidates`; resubmit with `link_to` or `create_new: {reason}`. Otherwise a new
    /// person is created (201). Only a name is required: a record without a sex or a birth date
    /// (one from another system, a patient who cannot say) is registered and its gaps listed in
    /// `data_quality`; a later record of the same person fills them. An invalid resident ID answers 422 `resident_id_invalid` with the
    /// failed check in `details.check` (length, characters, region, birth_date, check_character,
    /// sex, birth_date_mismatch).
    #[oai(path = "/patients", method = "post", operation_id = "patients_register")]
    async fn register(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        body: Json<RegisterRequest>,
    ) -> Result<RegisterResponse, AppError> {
        let b = body.0;
        let demographics = Demographics::parse(&b.demographics.raw())?;
        let out = service::register(
            &state,
            &auth.0,
            RegisterInput { demographics, link_to: b.link_to, create_new_reason: b.create_new.map(|c| c.reason) },
        )
        .await?;
        let data_quality = super::domain::quality_flags(
            out.person.sex.is_some(),
            out.person.birth_date.is_some() || out.person.birth_year.is_some(),
        );
        let result = RegisterResult {
            data_quality: data_quality.into_iter().map(String::from).collect(),
            person: out.person.into(),
            registration_id: out.registration_id,
            mrn: out.mrn,
            matched: out.matched,
        };
        Ok(if out.created { RegisterResponse::Created(Json(result)) } else { RegisterResponse::Linked(Json(result)) })
    }

    /// Rank the persons who resemble these demographics, without creating anything
    #[oai(path = "/patients/$match", method = "post", operation_id = "patients_match")]
    async fn match_(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        body: Json<DemographicsDto>,
    ) -> Result<MatchResponse, AppError> {
        let demographics = Demographics::parse(&body.0.raw())?;
        let cands = service::match_only(&state, &auth.0, &demographics).await?;
        Ok(MatchResponse::Ok(Json(MatchResult { candidates: cands.into_iter().map(Into::into).collect() })))
    }

    /// Search the community's persons by name (or pinyin initials), resident ID, phone or birth date
    #[oai(path = "/patients/search", method = "post", operation_id = "patients_search")]
    async fn search(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        body: Json<SearchRequest>,
    ) -> Result<SearchResponse, AppError> {
        let b = body.0;
        let (page, page_size) = (b.page, b.page_size);
        let (items, has_more) = service::search(
            &state,
            &auth.0,
            service::SearchInput {
                name: b.name,
                resident_id: b.resident_id,
                phone: b.phone,
                birth_date: b.birth_date,
                page,
                page_size,
            },
        )
        .await?;
        Ok(SearchResponse::Ok(Json(SearchResult {
            items: items.into_iter().map(Into::into).collect(),
            page,
            page_size,
            has_more,
        })))
    }

    /// A person registered at the caller's institution
    #[oai(path = "/patients/:id", method = "get", operation_id = "patients_get")]
    async fn get(&self, state: Data<&AppState>, auth: Auth, id: Path<Uuid>) -> Result<GetPersonResponse, AppError> {
        Ok(GetPersonResponse::Ok(Json(service::get(&state, &auth.0, id.0).await?.into())))
    }

    /// Show one masked identifier of a person registered here in full, for a purpose and a
    /// reason. Recorded and audited with that purpose; at most 20 per user per hour (429
    /// reveal_limit_reached).
    #[oai(path = "/patients/:id/reveal", method = "post", operation_id = "patients_reveal")]
    async fn reveal(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        id: Path<Uuid>,
        body: Json<RevealRequest>,
    ) -> Result<RevealResponse, AppError> {
        use super::domain::{IdentifierField, RevealPurpose};
        let b = body.0;
        let field = match b.field {
            IdentifierFieldDto::ResidentId => IdentifierField::ResidentId,
            IdentifierFieldDto::Phone => IdentifierField::Phone,
            IdentifierFieldDto::InsuranceNo => IdentifierField::InsuranceNo,
        };
        let purpose = match b.purpose {
            RevealPurposeDto::Treatment => RevealPurpose::Treatment,
            RevealPurposeDto::Referral => RevealPurpose::Referral,
            RevealPurposeDto::InsuranceClaim => RevealPurpose::InsuranceClaim,
            RevealPurposeDto::IdentityCheck => RevealPurpose::IdentityCheck,
            RevealPurposeDto::PatientContact => RevealPurpose::PatientContact,
        };
        let r = service::reveal(&state, &auth.0, id.0, field, purpose, &b.reason).await?;
        Ok(RevealResponse::Ok(Json(RevealResult { reveal_id: r.id, field: b.field, value: r.value })))
    }

    /// Merge one person into another (MPI steward)
    #[oai(path = "/patients/merges", method = "post", operation_id = "patients_merge")]
    async fn merge(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        body: Json<MergeRequest>,
    ) -> Result<MergeResponse, AppError> {
        let b = body.0;
        let id = service::merge(&state, &auth.0, b.survivor_id, b.merged_id, &b.reason).await?;
        Ok(MergeResponse::Created(Json(MergeCreated { merge_id: id })))
    }

    /// Undo a merge, restoring exactly the state before it
    #[oai(path = "/patients/merges/:id/undo", method = "post", operation_id = "patients_unmerge")]
    async fn unmerge(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        id: Path<Uuid>,
        body: Json<ReasonRequest>,
    ) -> Result<DoneResponse, AppError> {
        service::unmerge(&state, &auth.0, id.0, &body.0.reason).await?;
        Ok(DoneResponse::Done)
    }

    /// The review queue of probable duplicates, highest score first
    #[oai(path = "/patients/duplicates", method = "get", operation_id = "patients_duplicates_list")]
    async fn duplicates(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        #[oai(default = "open_status")] status: Query<PairStatus>,
        #[oai(default = "fifty", validator(minimum(value = "1"), maximum(value = "500")))] limit: Query<u64>,
    ) -> Result<DuplicatesResponse, AppError> {
        let status = match status.0 {
            PairStatus::Open => "open",
            PairStatus::Merged => "merged",
            PairStatus::NotDuplicate => "not_duplicate",
        };
        let pairs = service::duplicates(&state, &auth.0, status, limit.0).await?;
        Ok(DuplicatesResponse::Ok(Json(
            pairs
                .into_iter()
                .map(|p| DuplicatePairDto {
                    id: p.id,
                    score: p.score,
                    status: p.status,
                    detected_at: p.detected_at,
                    a: p.a.into(),
                    b: p.b.into(),
                })
                .collect(),
        )))
    }

    /// Resolve a pair from the queue by merging it
    #[oai(path = "/patients/duplicates/:id/merge", method = "post", operation_id = "patients_duplicates_merge")]
    async fn merge_pair(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        id: Path<Uuid>,
        body: Json<PairMergeRequest>,
    ) -> Result<MergeResponse, AppError> {
        let b = body.0;
        let merge_id = service::merge_pair(&state, &auth.0, id.0, b.survivor_id, &b.reason).await?;
        Ok(MergeResponse::Created(Json(MergeCreated { merge_id })))
    }

    /// Resolve a pair from the queue as two different people
    #[oai(path = "/patients/duplicates/:id/dismiss", method = "post", operation_id = "patients_duplicates_dismiss")]
    async fn dismiss_pair(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        id: Path<Uuid>,
        body: Json<ReasonRequest>,
    ) -> Result<DoneResponse, AppError> {
        service::dismiss_pair(&state, &auth.0, id.0, &body.0.reason).await?;
        Ok(DoneResponse::Done)
    }
}

fn open_status() -> PairStatus {
    PairStatus::Open
}
fn fifty() -> u64 {
    50
}
