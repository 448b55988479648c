//! Referrals API: create and move referrals, the inbox and sent lists with SLA time left, the
//! records an accepted referral lets the receiver read, notifications, and a server-sent-events
//! stream of every referral change touching the caller's institution.

use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use futures::stream::BoxStream;
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::{EventStream, Json};
use poem_openapi::{ApiResponse, Enum, Object, OpenApi};
use uuid::Uuid;

use super::domain::{Action, Direction, Status};
use super::entity::{referral_notification, referral_transition};
use super::service::{self, CreateInput, DownInput, ReferralView};
use crate::identity::ctx::{Auth, Perm};
use crate::platform::AppError;
use crate::platform::api_tags::ApiTags;
use crate::platform::state::AppState;
use crate::visit::api::EncounterDetail;

#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[oai(rename_all = "snake_case")]
pub enum DirectionDto {
    Up,
    Out,
}

#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[oai(rename_all = "snake_case")]
pub enum StatusDto {
    Draft,
    Requested,
    Accepted,
    Rejected,
    Arrived,
    Completed,
    Cancelled,
    Expired,
}

impl StatusDto {
    fn status(self) -> Status {
        match self {
            Self::Draft => Status::Draft,
            Self::Requested => Status::Requested,
            Self::Accepted => Status::Accepted,
            Self::Rejected => Status::Rejected,
            Self::Arrived => Status::Arrived,
            Self::Completed => Status::Completed,
            Self::Cancelled => Status::Cancelled,
            Self::Expired => Status::Expired,
        }
    }
}

#[derive(Object, Debug)]
pub struct CreateReferralRequest {
    pub person_id: Uuid,
    /// `up` (to a township centre or the county hospital) or `out` (to a hospital outside the county)
    pub direction: DirectionDto,
    /// Required for `up`
    pub to_institution_id: Option<Uuid>,
    /// Required for `out`
    #[oai(validator(max_length = 200))]
    pub external_hospital: Option<String>,
    #[oai(validator(min_length = 1, max_length = 1000))]
    pub reason: String,
    #[oai(default)]
    pub urgent: bool,
    /// The visit the referral comes from (its diagnoses go in the clinical summary)
    pub source_encounter_id: Option<Uuid>,
    /// Keep as a draft instead of sending at once
    #[oai(default)]
    pub draft: bool,
}

#[derive(Object, Debug)]
pub struct NoteRequest {
    /// The reason (reject, cancel) or the summary (complete)
    #[oai(validator(min_length = 1, max_length = 4000))]
    pub note: String,
}

#[derive(Object, Debug)]
pub struct DownRequest {
    #[oai(validator(min_length = 1, max_length = 4000))]
    pub discharge_summary: String,
    #[oai(validator(min_length = 1, max_length = 4000))]
    pub rehab_plan: String,
    /// Defaults to the institution that referred the patient up
    pub to_institution_id: Option<Uuid>,
}

#[derive(Object, Debug, Clone)]
pub struct TransitionDto {
    #[oai(skip_serializing_if_is_none)]
    pub from_status: Option<String>,
    pub to_status: String,
    #[oai(skip_serializing_if_is_none)]
    pub institution_id: Option<Uuid>,
    pub at: DateTime<Utc>,
}

impl From<referral_transition::Model> for TransitionDto {
    fn from(t: referral_transition::Model) -> Self {
        Self {
            from_status: t.from_status.map(|s| s.as_str().into()),
            to_status: t.to_status.as_str().into(),
            institution_id: t.institution_id,
            at: t.at,
        }
    }
}

#[derive(Object, Debug, Clone)]
pub struct ReferralDto {
    pub id: Uuid,
    pub person_id: Uuid,
    pub person_name: String,
    /// up, down or out
    pub direction: String,
    pub from_institution_id: Uuid,
    pub from_institution_name: String,
    #[oai(skip_serializing_if_is_none)]
    pub to_institution_id: Option<Uuid>,
    #[oai(skip_serializing_if_is_none)]
    pub to_institution_name: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub external_hospital: Option<String>,
    pub status: String,
    pub urgency: String,
    pub reason: String,
    /// Snapshot at referral: diagnoses, medicines, recent vitals, allergies
    pub clinical_summary: serde_json::Value,
    #[oai(skip_serializing_if_is_none)]
    pub parent_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    #[oai(skip_serializing_if_is_none)]
    pub requested_at: Option<DateTime<Utc>>,
    #[oai(skip_serializing_if_is_none)]
    pub sla_due_at: Option<DateTime<Utc>>,
    /// Seconds left to decide, while requested (negative when overdue)
    #[oai(skip_serializing_if_is_none)]
    pub sla_seconds_left: Option<i64>,
    #[oai(skip_serializing_if_is_none)]
    pub decided_at: Option<DateTime<Utc>>,
    #[oai(skip_serializing_if_is_none)]
    pub reject_reason: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub arrived_at: Option<DateTime<Utc>>,
    #[oai(skip_serializing_if_is_none)]
    pub completed_at: Option<DateTime<Utc>>,
    #[oai(skip_serializing_if_is_none)]
    pub completion_summary: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub discharge_summary: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub rehab_plan: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub cancel_reason: Option<String>,
    pub transitions: Vec<TransitionDto>,
}

impl From<ReferralView> for ReferralDto {
    fn from(v: ReferralView) -> Self {
        let r = v.referral;
        Self {
            sla_seconds_left: service::sla_left(&r, Utc::now()),
            id: r.id,
            person_id: r.person_id,
            person_name: v.person_name,
            direction: r.direction.as_str().into(),
            from_institution_id: r.from_institution,
            from_institution_name: v.from_name,
            to_institution_id: r.to_institution,
            to_institution_name: v.to_name,
            external_hospital: r.external_hospital,
            status: r.status.as_str().into(),
            urgency: r.urgency.as_str().into(),
            reason: r.reason,
            clinical_summary: r.clinical_summary,
            parent_id: r.parent_id,
            created_at: r.created_at,
            requested_at: r.requested_at,
            sla_due_at: r.sla_due_at,
            decided_at: r.decided_at,
            reject_reason: r.reject_reason,
            arrived_at: r.arrived_at,
            completed_at: r.completed_at,
            completion_summary: r.completion_summary,
            discharge_summary: r.discharge_summary,
            rehab_plan: r.rehab_plan,
            cancel_reason: r.cancel_reason,
            transitions: v.transitions.into_iter().map(Into::into).collect(),
        }
    }
}

#[derive(Object, Debug, Clone)]
pub struct NotificationDto {
    pub id: Uuid,
    pub referral_id: Uuid,
    /// e.g. referrals.requested
    pub event_type: String,
    pub created_at: DateTime<Utc>,
    pub read: bool,
}

impl From<referral_notification::Model> for NotificationDto {
    fn from(n: referral_notification::Model) -> Self {
        Self {
            id: n.id,
            referral_id: n.referral_id,
            event_type: n.event_type,
            created_at: n.created_at,
            read: n.read_at.is_some(),
        }
    }
}

/// One change to a referral, as the stream announces it.
#[derive(Object, Debug, Clone)]
pub struct ReferralChange {
    pub event_id: Uuid,
    /// e.g. referrals.requested
    pub event_type: String,
    pub referral_id: Uuid,
    pub status: String,
    pub direction: String,
    pub from_institution_id: Uuid,
    #[oai(skip_serializing_if_is_none)]
    pub to_institution_id: Option<Uuid>,
    pub occurred_at: DateTime<Utc>,
}

#[derive(ApiResponse)]
pub enum ReferralCreated {
    #[oai(status = 201)]
    Created(Json<ReferralDto>),
}
#[derive(ApiResponse)]
pub enum ReferralResponse {
    #[oai(status = 200)]
    Ok(Json<ReferralDto>),
}
#[derive(ApiResponse)]
pub enum ReferralsResponse {
    #[oai(status = 200)]
    Ok(Json<Vec<ReferralDto>>),
}
#[derive(ApiResponse)]
pub enum RecordsResponse {
    #[oai(status = 200)]
    Ok(Json<Vec<EncounterDetail>>),
}
#[derive(ApiResponse)]
pub enum NotificationsResponse {
    #[oai(status = 200)]
    Ok(Json<Vec<NotificationDto>>),
}
#[derive(ApiResponse)]
pub enum StreamResponse {
    /// A server-sent-events stream; each event's data is a ReferralChange
    #[oai(status = 200)]
    Ok(EventStream<BoxStream<'static, ReferralChange>>),
}

pub struct ReferralsApi;

async fn view(state: &AppState, auth: &Auth, id: Uuid) -> Result<ReferralDto, AppError> {
    Ok(service::get(state, &auth.0, id).await?.into())
}

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::Referrals")]
impl ReferralsApi {
    /// Refer a person registered here up (or record a referral out of the county)
    #[oai(path = "/referrals", method = "post", operation_id = "referrals_create")]
    async fn create(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        body: Json<CreateReferralRequest>,
    ) -> Result<ReferralCreated, AppError> {
        let b = body.0;
        let r = service::create(
            &state,
            &auth.0,
            CreateInput {
                person_id: b.person_id,
                direction: if b.direction == DirectionDto::Up { Direction::Up } else { Direction::Out },
                to_institution: b.to_institution_id,
                external_hospital: b.external_hospital,
                reason: b.reason,
                urgent: b.urgent,
                source_encounter: b.source_encounter_id,
                submit: !b.draft,
            },
        )
        .await?;
        Ok(ReferralCreated::Created(Json(view(&state, &auth, r.id).await?)))
    }

    /// Referrals received by the caller's institution, newest first, with SLA time left
    #[oai(path = "/referrals/inbox", method = "get", operation_id = "referrals_inbox")]
    async fn inbox(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        status: Query<Option<StatusDto>>,
        #[oai(default = "hundred", validator(minimum(value = "1"), maximum(value = "500")))] limit: Query<u64>,
    ) -> Result<ReferralsResponse, AppError> {
        let rows = service::list(&state, &auth.0, false, status.0.map(StatusDto::status), limit.0).await?;
        Ok(ReferralsResponse::Ok(Json(rows.into_iter().map(Into::into).collect())))
    }

    /// Referrals sent by the caller's institution, newest first
    #[oai(path = "/referrals/sent", method = "get", operation_id = "referrals_sent")]
    async fn sent(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        status: Query<Option<StatusDto>>,
        #[oai(default = "hundred", validator(minimum(value = "1"), maximum(value = "500")))] limit: Query<u64>,
    ) -> Result<ReferralsResponse, AppError> {
        let rows = service::list(&state, &auth.0, true, status.0.map(StatusDto::status), limit.0).await?;
        Ok(ReferralsResponse::Ok(Json(rows.into_iter().map(Into::into).collect())))
    }

    /// Referral notifications for the caller's institution, newest first
    #[oai(path = "/referrals/notifications", method = "get", operation_id = "referrals_notifications")]
    async fn notifications(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        #[oai(default = "hundred", validator(minimum(value = "1"), maximum(value = "500")))] limit: Query<u64>,
    ) -> Result<NotificationsResponse, AppError> {
        Ok(NotificationsResponse::Ok(Json(
            service::notifications(&state, &auth.0, limit.0).await?.into_iter().map(Into::into).collect(),
        )))
    }

    /// Every change to a referral sent or received by the caller's institution, as it happens
    #[oai(path = "/referrals/stream", method = "get", operation_id = "referrals_stream")]
    async fn stream(&self, state: Data<&AppState>, auth: Auth) -> Result<StreamResponse, AppError> {
        auth.0.require(Perm::ReferralRead)?;
        // `live` passes only readable referral changes of this institution.
        let live = super::events::live(&state, auth.0.tenant, auth.0.institution).filter_map(|ev| {
            let change = super::events::change_of(&ev).ok().map(|c| ReferralChange {
                event_id: ev.id,
                event_type: ev.event_type.clone(),
                referral_id: c.referral,
                status: c.status.as_str().into(),
                direction: c.direction.as_str().into(),
                from_institution_id: c.from_institution,
                to_institution_id: c.to_institution,
                occurred_at: ev.occurred_at,
            });
            std::future::ready(change)
        });
        // Ends with the session: logout, deactivation, a lost role or expiry.
        let changes = crate::identity::service::while_session_holds(&state, &auth.0, Perm::ReferralRead, live).boxed();
        Ok(StreamResponse::Ok(EventStream::new(changes).keep_alive(Duration::from_secs(15))))
    }

    /// A referral the caller's institution sent or received, with its history
    #[oai(path = "/referrals/:id", method = "get", operation_id = "referrals_get")]
    async fn get(&self, state: Data<&AppState>, auth: Auth, id: Path<Uuid>) -> Result<ReferralResponse, AppError> {
        Ok(ReferralResponse::Ok(Json(view(&state, &auth, id.0).await?)))
    }

    /// Send a draft (sender)
    #[oai(path = "/referrals/:id/submit", method = "post", operation_id = "referrals_submit")]
    async fn submit(&self, state: Data<&AppState>, auth: Auth, id: Path<Uuid>) -> Result<ReferralResponse, AppError> {
        service::transition(&state, &auth.0, id.0, Action::Submit, None).await?;
        Ok(ReferralResponse::Ok(Json(view(&state, &auth, id.0).await?)))
    }

    /// Accept (receiver); opens the access grant to the sender's records
    #[oai(path = "/referrals/:id/accept", method = "post", operation_id = "referrals_accept")]
    async fn accept(&self, state: Data<&AppState>, auth: Auth, id: Path<Uuid>) -> Result<ReferralResponse, AppError> {
        service::transition(&state, &auth.0, id.0, Action::Accept, None).await?;
        Ok(ReferralResponse::Ok(Json(view(&state, &auth, id.0).await?)))
    }

    /// Reject with a reason (receiver)
    #[oai(path = "/referrals/:id/reject", method = "post", operation_id = "referrals_reject")]
    async fn reject(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        id: Path<Uuid>,
        body: Json<NoteRequest>,
    ) -> Result<ReferralResponse, AppError> {
        service::transition(&state, &auth.0, id.0, Action::Reject, Some(&body.0.note)).await?;
        Ok(ReferralResponse::Ok(Json(view(&state, &auth, id.0).await?)))
    }

    /// Record that the patient arrived (receiver)
    #[oai(path = "/referrals/:id/arrive", method = "post", operation_id = "referrals_arrive")]
    async fn arrive(&self, state: Data<&AppState>, auth: Auth, id: Path<Uuid>) -> Result<ReferralResponse, AppError> {
        service::transition(&state, &auth.0, id.0, Action::Arrive, None).await?;
        Ok(ReferralResponse::Ok(Json(view(&state, &auth, id.0).await?)))
    }

    /// Complete with a summary (receiver); the access grant closes after the tenant's grant days
    #[oai(path = "/referrals/:id/complete", method = "post", operation_id = "referrals_complete")]
    async fn complete(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        id: Path<Uuid>,
        body: Json<NoteRequest>,
    ) -> Result<ReferralResponse, AppError> {
        service::transition(&state, &auth.0, id.0, Action::Complete, Some(&body.0.note)).await?;
        Ok(ReferralResponse::Ok(Json(view(&state, &auth, id.0).await?)))
    }

    /// Cancel with a reason (sender), while requested or accepted
    #[oai(path = "/referrals/:id/cancel", method = "post", operation_id = "referrals_cancel")]
    async fn cancel(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        id: Path<Uuid>,
        body: Json<NoteRequest>,
    ) -> Result<ReferralResponse, AppError> {
        service::transition(&state, &auth.0, id.0, Action::Cancel, Some(&body.0.note)).await?;
        Ok(ReferralResponse::Ok(Json(view(&state, &auth, id.0).await?)))
    }

    /// Refer the patient of a received up-referral back down, with discharge summary and rehab plan
    #[oai(path = "/referrals/:id/down", method = "post", operation_id = "referrals_refer_down")]
    async fn down(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        id: Path<Uuid>,
        body: Json<DownRequest>,
    ) -> Result<ReferralCreated, AppError> {
        let b = body.0;
        let r = service::refer_down(
            &state,
            &auth.0,
            id.0,
            DownInput {
                discharge_summary: b.discharge_summary,
                rehab_plan: b.rehab_plan,
                to_institution: b.to_institution_id,
            },
        )
        .await?;
        Ok(ReferralCreated::Created(Json(view(&state, &auth, r.id).await?)))
    }

    /// The person's records at the sending institution, through the referral's access grant (audited)
    #[oai(path = "/referrals/:id/records", method = "get", operation_id = "referrals_records")]
    async fn records(&self, state: Data<&AppState>, auth: Auth, id: Path<Uuid>) -> Result<RecordsResponse, AppError> {
        let rows = service::records(&state, &auth.0, id.0).await?;
        Ok(RecordsResponse::Ok(Json(rows.into_iter().map(Into::into).collect())))
    }
}

fn hundred() -> u64 {
    100
}
