//! Chronic-disease management API: registries (enroll, list, detail, close), follow-up visits,
//! the year's management status, the worklist of a day (JSON and CSV for Excel), and the
//! enrollment suggestions raised by closed encounters.

use chrono::{DateTime, NaiveDate, Utc};
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::{Binary, Json};
use poem_openapi::{ApiResponse, Enum, Object, OpenApi};
use uuid::Uuid;

use super::domain::{Category, Disease};
use super::entity::{enrollment, followup_visit};
use super::service::{self, EnrollInput, ListQuery, SuggestionRow, WorklistQuery};
use crate::identity::ctx::Auth;
use crate::patients::service::Contact;
use crate::platform::AppError;
use crate::platform::api_tags::ApiTags;
use crate::platform::state::AppState;

#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[oai(rename_all = "snake_case")]
pub enum DiseaseDto {
    /// 高血压 (ICD-10 I10–I15)
    Hypertension,
    /// 2型糖尿病 (ICD-10 E11)
    Diabetes,
}

impl DiseaseDto {
    fn disease(self) -> Disease {
        match self {
            Self::Hypertension => Disease::Hypertension,
            Self::Diabetes => Disease::Diabetes,
        }
    }
}

#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[oai(rename_all = "snake_case")]
pub enum ClassificationDto {
    Controlled,
    Uncontrolled,
    AdverseReaction,
    Complication,
}

#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[oai(rename_all = "snake_case")]
pub enum AdherenceDto {
    Regular,
    Intermittent,
    None,
}

#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[oai(rename_all = "snake_case")]
pub enum SaltDto {
    Light,
    Moderate,
    Heavy,
}

#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[oai(rename_all = "snake_case")]
pub enum CategoryDto {
    Overdue,
    DueThisWeek,
    NeverFollowedUp,
}

#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[oai(rename_all = "snake_case")]
pub enum CloseReasonDto {
    Moved,
    Died,
    Misdiagnosed,
    Other,
}

#[derive(Object, Debug)]
pub struct EnrollRequest {
    pub person_id: Uuid,
    pub disease: DiseaseDto,
    /// Date of diagnosis (not in the future)
    pub diagnosed_on: NaiveDate,
    /// ICD-10 code of the diagnosis; must belong to the disease
    #[oai(validator(max_length = 16))]
    pub diagnosis_code: Option<String>,
    /// Responsible doctor; defaults to the caller
    pub doctor_id: Option<Uuid>,
    /// Defaults to today
    pub enrolled_on: Option<NaiveDate>,
    /// Follow-up interval; defaults to the tenant's (90 days)
    pub interval_days: Option<i32>,
}

#[derive(Object, Debug)]
pub struct FollowupRequest {
    pub visit_on: NaiveDate,
    /// mmHg; hypertension follow-ups need both pressures
    pub systolic: Option<i32>,
    pub diastolic: Option<i32>,
    /// Fasting glucose, mmol/L; diabetes follow-ups need it
    pub glucose: Option<f64>,
    #[oai(default)]
    pub symptoms: Vec<String>,
    pub adherence: AdherenceDto,
    pub smoking_per_day: Option<i32>,
    pub salt: Option<SaltDto>,
    pub exercise_minutes_per_week: Option<i32>,
    /// Defaults to what the measurements say; `controlled` is refused when they are above target
    pub classification: Option<ClassificationDto>,
    /// Next follow-up; defaults to one interval ahead when controlled, two weeks otherwise
    pub next_on: Option<NaiveDate>,
    #[oai(validator(max_length = 2000))]
    pub notes: Option<String>,
}

#[derive(Object, Debug)]
pub struct CloseEnrollmentRequest {
    pub reason: CloseReasonDto,
}

#[derive(Object, Debug, Clone)]
pub struct PatientBrief {
    pub name: String,
    #[oai(skip_serializing_if_is_none)]
    pub sex: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub age: Option<i32>,
    /// Masked unless the caller may see identifiers
    #[oai(skip_serializing_if_is_none)]
    pub phone: Option<String>,
}

fn brief(c: &Contact, on: NaiveDate) -> PatientBrief {
    PatientBrief { name: c.name.clone(), sex: c.sex.clone(), age: c.age_on(on), phone: c.phone.clone() }
}

#[derive(Object, Debug, Clone)]
pub struct EnrollmentDto {
    pub id: Uuid,
    pub person_id: Uuid,
    pub patient: PatientBrief,
    pub disease: String,
    #[oai(skip_serializing_if_is_none)]
    pub diagnosis_code: Option<String>,
    pub diagnosed_on: NaiveDate,
    pub institution_id: Uuid,
    pub doctor_id: Uuid,
    pub doctor_name: String,
    pub enrolled_on: NaiveDate,
    pub interval_days: i32,
    pub next_due: NaiveDate,
    pub visits: i32,
    #[oai(skip_serializing_if_is_none)]
    pub last_visit_on: Option<NaiveDate>,
    #[oai(skip_serializing_if_is_none)]
    pub last_classification: Option<String>,
    pub uncontrolled_streak: i32,
    /// danger, uncontrolled_twice or complication: a referral up is proposed
    #[oai(skip_serializing_if_is_none)]
    pub flag: Option<String>,
    /// The proposed (draft) up-referral
    #[oai(skip_serializing_if_is_none)]
    pub referral_id: Option<Uuid>,
    /// active or closed
    pub status: String,
    #[oai(skip_serializing_if_is_none)]
    pub close_reason: Option<String>,
}

pub fn enrollment_dto(today: NaiveDate, e: enrollment::Model, person: &Contact, doctor_name: String) -> EnrollmentDto {
    EnrollmentDto {
        id: e.id,
        person_id: e.person_id,
        patient: brief(person, today),
        disease: e.disease.as_str().into(),
        diagnosis_code: e.diagnosis_code,
        diagnosed_on: e.diagnosed_on,
        institution_id: e.institution_id,
        doctor_id: e.doctor_id,
        doctor_name,
        enrolled_on: e.enrolled_on,
        interval_days: e.interval_days,
        next_due: e.next_due,
        visits: e.visits,
        last_visit_on: e.last_visit_on,
        last_classification: e.last_classification.map(|c| c.as_str().into()),
        uncontrolled_streak: e.uncontrolled_streak,
        flag: e.flag.map(|f| f.as_str().into()),
        referral_id: e.referral_id,
        status: e.status.as_str().into(),
        close_reason: e.close_reason,
    }
}

#[derive(Object, Debug, Clone)]
pub struct FollowupDto {
    pub id: Uuid,
    pub enrollment_id: Uuid,
    pub visit_on: NaiveDate,
    #[oai(skip_serializing_if_is_none)]
    pub systolic: Option<i32>,
    #[oai(skip_serializing_if_is_none)]
    pub diastolic: Option<i32>,
    #[oai(skip_serializing_if_is_none)]
    pub glucose: Option<f64>,
    pub symptoms: Vec<String>,
    pub adherence: String,
    #[oai(skip_serializing_if_is_none)]
    pub smoking_per_day: Option<i32>,
    #[oai(skip_serializing_if_is_none)]
    pub salt: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub exercise_minutes_per_week: Option<i32>,
    pub classification: String,
    /// A danger value was recorded (accepted, and flagged)
    pub danger: bool,
    /// systolic_180, diastolic_110, glucose_16_7
    pub danger_reasons: Vec<String>,
    pub next_on: NaiveDate,
    #[oai(skip_serializing_if_is_none)]
    pub referral_id: Option<Uuid>,
    #[oai(skip_serializing_if_is_none)]
    pub notes: Option<String>,
    pub doctor_id: Uuid,
    pub recorded_at: DateTime<Utc>,
}

impl From<followup_visit::Model> for FollowupDto {
    fn from(v: followup_visit::Model) -> Self {
        let strings = |j: &serde_json::Value| -> Vec<String> {
            j.as_array().map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect()).unwrap_or_default()
        };
        Self {
            id: v.id,
            enrollment_id: v.enrollment_id,
            visit_on: v.visit_on,
            systolic: v.systolic,
            diastolic: v.diastolic,
            glucose: v.glucose,
            symptoms: strings(&v.symptoms),
            adherence: v.adherence,
            smoking_per_day: v.smoking_per_day,
            salt: v.salt,
            exercise_minutes_per_week: v.exercise_minutes_per_week,
            classification: v.classification.as_str().into(),
            danger: v.danger,
            danger_reasons: strings(&v.danger_reasons),
            next_on: v.next_on,
            referral_id: v.referral_id,
            notes: v.notes,
            doctor_id: v.doctor_id,
            recorded_at: v.recorded_at,
        }
    }
}

#[derive(Object, Debug, Clone)]
pub struct EnrollmentDetail {
    #[oai(flatten)]
    pub enrollment: EnrollmentDto,
    pub followups: Vec<FollowupDto>,
}

#[derive(Object, Debug, Clone)]
pub struct FollowupRecorded {
    pub followup: FollowupDto,
    pub enrollment: EnrollmentDto,
    /// Why a referral up is proposed, if it is
    #[oai(skip_serializing_if_is_none)]
    pub flag: Option<String>,
    /// The draft up-referral proposed (new, or the open draft)
    #[oai(skip_serializing_if_is_none)]
    pub referral_id: Option<Uuid>,
}

#[derive(Object, Debug, Clone)]
pub struct ManagementStatusDto {
    pub enrollment_id: Uuid,
    pub year: i32,
    /// Follow-ups recorded in the year
    pub followups: i64,
    pub required: i64,
    /// Standard management (规范管理): at least the required follow-ups in the year
    pub standard: bool,
    #[oai(skip_serializing_if_is_none)]
    pub last_classification: Option<String>,
    /// Controlled at the year's last follow-up
    pub controlled: bool,
}

#[derive(Object, Debug, Clone)]
pub struct WorkItemDto {
    /// overdue, due_this_week or never_followed_up
    pub category: String,
    pub days_overdue: i64,
    pub enrollment: EnrollmentDto,
}

#[derive(Object, Debug, Clone)]
pub struct WorklistCounts {
    pub overdue: i64,
    pub due_this_week: i64,
    pub never_followed_up: i64,
    /// Of never_followed_up, those whose first follow-up is already overdue
    pub never_followed_up_overdue: i64,
    /// Listed patients with a proposed referral
    pub flagged: i64,
}

#[derive(Object, Debug, Clone)]
pub struct WorklistDto {
    pub as_of: NaiveDate,
    /// Sunday of as_of's week
    pub week_end: NaiveDate,
    pub counts: WorklistCounts,
    /// Items matching the filters, before paging
    pub total: i64,
    pub items: Vec<WorkItemDto>,
}

#[derive(Object, Debug, Clone)]
pub struct SuggestionDto {
    pub id: Uuid,
    pub person_id: Uuid,
    pub person_name: String,
    pub disease: String,
    pub diagnosis_code: String,
    pub encounter_id: Uuid,
    pub diagnosed_on: NaiveDate,
    pub created_at: DateTime<Utc>,
}

#[derive(ApiResponse)]
pub enum EnrollmentCreated {
    #[oai(status = 201)]
    Created(Json<EnrollmentDto>),
}
#[derive(ApiResponse)]
pub enum EnrollmentResponse {
    #[oai(status = 200)]
    Ok(Json<EnrollmentDto>),
}
#[derive(ApiResponse)]
pub enum EnrollmentsResponse {
    #[oai(status = 200)]
    Ok(Json<Vec<EnrollmentDto>>),
}
#[derive(ApiResponse)]
pub enum EnrollmentDetailResponse {
    #[oai(status = 200)]
    Ok(Json<EnrollmentDetail>),
}
#[derive(ApiResponse)]
pub enum FollowupCreated {
    #[oai(status = 201)]
    Created(Json<FollowupRecorded>),
}
#[derive(ApiResponse)]
pub enum StatusResponse {
    #[oai(status = 200)]
    Ok(Json<ManagementStatusDto>),
}
#[derive(ApiResponse)]
pub enum WorklistResponse {
    #[oai(status = 200)]
    Ok(Json<WorklistDto>),
}
#[derive(ApiResponse)]
pub enum CsvResponse {
    /// UTF-8 CSV with a byte-order mark and Chinese headers, for Excel
    #[oai(status = 200, content_type = "text/csv; charset=utf-8")]
    Ok(Binary<Vec<u8>>, #[oai(header = "Content-Disposition")] String),
}
#[derive(ApiResponse)]
pub enum SuggestionsResponse {
    #[oai(status = 200)]
    Ok(Json<Vec<SuggestionDto>>),
}
#[derive(ApiResponse)]
pub enum Dismissed {
    #[oai(status = 204)]
    NoContent,
}

fn hundred() -> u64 {
    100
}

fn worklist_query(
    today: NaiveDate,
    as_of: Option<NaiveDate>,
    doctor_id: Option<Uuid>,
    disease: Option<DiseaseDto>,
    category: Option<CategoryDto>,
    limit: u64,
    offset: u64,
) -> WorklistQuery {
    WorklistQuery {
        as_of: as_of.unwrap_or(today),
        doctor: doctor_id,
        disease: disease.map(DiseaseDto::disease),
        category: category.map(|c| match c {
            CategoryDto::Overdue => Category::Overdue,
            CategoryDto::DueThisWeek => Category::DueThisWeek,
            CategoryDto::NeverFollowedUp => Category::NeverFollowedUp,
        }),
        limit,
        offset,
    }
}

pub struct FollowupsApi;

#[OpenApi(prefix_path = "/api/v1/followups", tag = "ApiTags::Followups")]
impl FollowupsApi {
    /// Enroll a person registered here in the hypertension or type 2 diabetes registry
    #[oai(path = "/enrollments", method = "post", operation_id = "followups_enroll")]
    async fn enroll(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        body: Json<EnrollRequest>,
    ) -> Result<EnrollmentCreated, AppError> {
        let b = body.0;
        let e = service::enroll(
            &state,
            &auth.0,
            EnrollInput {
                person_id: b.person_id,
                disease: b.disease.disease(),
                diagnosed_on: b.diagnosed_on,
                diagnosis_code: b.diagnosis_code,
                doctor_id: b.doctor_id,
                enrolled_on: b.enrolled_on,
                interval_days: b.interval_days,
            },
        )
        .await?;
        let v = service::get(&state, &auth.0, e.id).await?;
        Ok(EnrollmentCreated::Created(Json(enrollment_dto(
            service::today(&state),
            v.enrollment,
            &v.person,
            v.doctor_name,
        ))))
    }

    /// This institution's registry (active enrollments unless include_closed; only those with a
    /// referral proposed when flagged), newest first
    #[oai(path = "/enrollments", method = "get", operation_id = "followups_enrollments")]
    #[allow(clippy::too_many_arguments)] // poem-openapi takes each query parameter as an argument
    async fn enrollments(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        /// Only this person's enrollments
        person_id: Query<Option<Uuid>>,
        disease: Query<Option<DiseaseDto>>,
        doctor_id: Query<Option<Uuid>>,
        #[oai(default)] include_closed: Query<bool>,
        #[oai(default)] flagged: Query<bool>,
        #[oai(default = "hundred", validator(minimum(value = "1"), maximum(value = "1000")))] limit: Query<u64>,
        #[oai(default, validator(maximum(value = "1000000")))] offset: Query<u64>,
    ) -> Result<EnrollmentsResponse, AppError> {
        let rows = service::list(
            &state,
            &auth.0,
            ListQuery {
                person: person_id.0,
                disease: disease.0.map(DiseaseDto::disease),
                doctor: doctor_id.0,
                include_closed: include_closed.0,
                flagged_only: flagged.0,
                limit: limit.0,
                offset: offset.0,
            },
        )
        .await?;
        let today = service::today(&state);
        Ok(EnrollmentsResponse::Ok(Json(
            rows.into_iter().map(|r| enrollment_dto(today, r.enrollment, &r.person, r.doctor_name)).collect(),
        )))
    }

    /// One enrollment with its follow-ups (audited)
    #[oai(path = "/enrollments/:id", method = "get", operation_id = "followups_enrollment")]
    async fn enrollment(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        id: Path<Uuid>,
    ) -> Result<EnrollmentDetailResponse, AppError> {
        let v = service::get(&state, &auth.0, id.0).await?;
        Ok(EnrollmentDetailResponse::Ok(Json(EnrollmentDetail {
            enrollment: enrollment_dto(service::today(&state), v.enrollment, &v.person, v.doctor_name),
            followups: v.visits.into_iter().map(Into::into).collect(),
        })))
    }

    /// Management status of an enrollment for a year (default this year): follow-ups, standard
    /// management (at least four), control at the last follow-up
    #[oai(path = "/enrollments/:id/status", method = "get", operation_id = "followups_status")]
    async fn status(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        id: Path<Uuid>,
        #[oai(validator(minimum(value = "1990"), maximum(value = "2200")))] year: Query<Option<i32>>,
    ) -> Result<StatusResponse, AppError> {
        use chrono::Datelike;
        let year = year.0.unwrap_or_else(|| service::today(&state).year());
        let s = service::status(&state, &auth.0, id.0, year).await?;
        Ok(StatusResponse::Ok(Json(ManagementStatusDto {
            enrollment_id: id.0,
            year: s.year,
            followups: s.visits as i64,
            required: s.required as i64,
            standard: s.standard,
            last_classification: s.last_classification.map(|c| c.as_str().to_string()),
            controlled: s.controlled,
        })))
    }

    /// Close an enrollment (moved, died, misdiagnosed, other): it leaves the worklists
    #[oai(path = "/enrollments/:id/close", method = "post", operation_id = "followups_close")]
    async fn close(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        id: Path<Uuid>,
        body: Json<CloseEnrollmentRequest>,
    ) -> Result<EnrollmentResponse, AppError> {
        let reason = match body.0.reason {
            CloseReasonDto::Moved => "moved",
            CloseReasonDto::Died => "died",
            CloseReasonDto::Misdiagnosed => "misdiagnosed",
            CloseReasonDto::Other => "other",
        };
        service::close(&state, &auth.0, id.0, reason).await?;
        let v = service::get(&state, &auth.0, id.0).await?;
        Ok(EnrollmentResponse::Ok(Json(enrollment_dto(service::today(&state), v.enrollment, &v.person, v.doctor_name))))
    }

    /// The worklist for a day (default today, China time) of this institution or one doctor:
    /// overdue (longest first), due this week (to Sunday), never followed up
    #[oai(path = "/worklist", method = "get", operation_id = "followups_worklist")]
    #[allow(clippy::too_many_arguments)] // poem-openapi takes each query parameter as an argument
    async fn worklist(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        as_of: Query<Option<NaiveDate>>,
        doctor_id: Query<Option<Uuid>>,
        disease: Query<Option<DiseaseDto>>,
        category: Query<Option<CategoryDto>>,
        #[oai(default = "hundred", validator(minimum(value = "1"), maximum(value = "1000")))] limit: Query<u64>,
        #[oai(default, validator(maximum(value = "1000000")))] offset: Query<u64>,
    ) -> Result<WorklistResponse, AppError> {
        let today = service::today(&state);
        let q = worklist_query(today, as_of.0, doctor_id.0, disease.0, category.0, limit.0, offset.0);
        let w = service::worklist(&state, &auth.0, q).await?;
        let count = |c: Category| w.counts.get(&c).copied().unwrap_or(0) as i64;
        Ok(WorklistResponse::Ok(Json(WorklistDto {
            as_of: w.as_of,
            week_end: w.week_end,
            counts: WorklistCounts {
                overdue: count(Category::Overdue),
                due_this_week: count(Category::DueThisWeek),
                never_followed_up: count(Category::NeverFollowedUp),
                never_followed_up_overdue: w.never_late as i64,
                flagged: w.flagged as i64,
            },
            total: w.total as i64,
            items: w
                .items
                .into_iter()
                .map(|i| WorkItemDto {
                    category: i.category.as_str().into(),
                    days_overdue: i.days_overdue,
                    enrollment: enrollment_dto(today, i.enrollment, &i.person, i.doctor_name),
                })
                .collect(),
        })))
    }

    /// The worklist as a CSV file for Excel (UTF-8 with BOM, Chinese headers; audited)
    #[oai(path = "/worklist.csv", method = "get", operation_id = "followups_worklist_csv")]
    async fn worklist_csv(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        as_of: Query<Option<NaiveDate>>,
        doctor_id: Query<Option<Uuid>>,
        disease: Query<Option<DiseaseDto>>,
        category: Query<Option<CategoryDto>>,
    ) -> Result<CsvResponse, AppError> {
        let q = worklist_query(service::today(&state), as_of.0, doctor_id.0, disease.0, category.0, 100_000, 0);
        let day = q.as_of;
        let bytes = service::worklist_csv(&state, &auth.0, q).await?;
        Ok(CsvResponse::Ok(Binary(bytes), format!("attachment; filename=\"followup-worklist-{day}.csv\"")))
    }

    /// Open suggestions to enroll patients whose closed encounters diagnosed a registry disease
    #[oai(path = "/suggestions", method = "get", operation_id = "followups_suggestions")]
    async fn suggestions(&self, state: Data<&AppState>, auth: Auth) -> Result<SuggestionsResponse, AppError> {
        let rows = service::suggestions(&state, &auth.0).await?;
        Ok(SuggestionsResponse::Ok(Json(
            rows.into_iter()
                .map(|SuggestionRow { suggestion: s, person_name }| SuggestionDto {
                    id: s.id,
                    person_id: s.person_id,
                    person_name,
                    disease: s.disease,
                    diagnosis_code: s.diagnosis_code,
                    encounter_id: s.encounter_id,
                    diagnosed_on: s.diagnosed_on,
                    created_at: s.created_at,
                })
                .collect(),
        )))
    }

    /// Dismiss an enrollment suggestion
    #[oai(path = "/suggestions/:id/dismiss", method = "post", operation_id = "followups_dismiss_suggestion")]
    async fn dismiss(&self, state: Data<&AppState>, auth: Auth, id: Path<Uuid>) -> Result<Dismissed, AppError> {
        service::dismiss_suggestion(&state, &auth.0, id.0).await?;
        Ok(Dismissed::NoContent)
    }
}
