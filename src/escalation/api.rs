//! Escalation API: recording a follow-up (which may draft an up-referral). It keeps its place
//! in the document under the Followups tag; only the code lives here.

use poem::web::Data;
use poem_openapi::OpenApi;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use uuid::Uuid;

use crate::followups::api::{
    AdherenceDto, ClassificationDto, FollowupCreated, FollowupRecorded, FollowupRequest, SaltDto, enrollment_dto,
};
use crate::followups::domain::{Classification, Measures};
use crate::followups::service::{self as followups, VisitInput};
use crate::identity::ctx::Auth;
use crate::platform::AppError;
use crate::platform::api_tags::ApiTags;
use crate::platform::state::AppState;

pub struct EscalationApi;

#[OpenApi(prefix_path = "/api/v1/followups", tag = "ApiTags::Followups")]
impl EscalationApi {
    /// Record a follow-up. Impossible values are refused (422); danger values are accepted and
    /// flagged, and a draft up-referral is proposed for them or for a second uncontrolled
    /// follow-up in a row
    #[oai(path = "/enrollments/:id/followups", method = "post", operation_id = "followups_record")]
    async fn record(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        id: Path<Uuid>,
        body: Json<FollowupRequest>,
    ) -> Result<FollowupCreated, AppError> {
        let b = body.0;
        let r = super::service::record_followup(
            &state,
            &auth.0,
            id.0,
            VisitInput {
                visit_on: b.visit_on,
                measures: Measures { systolic: b.systolic, diastolic: b.diastolic, glucose: b.glucose },
                symptoms: b.symptoms,
                adherence: match b.adherence {
                    AdherenceDto::Regular => "regular",
                    AdherenceDto::Intermittent => "intermittent",
                    AdherenceDto::None => "none",
                }
                .into(),
                smoking_per_day: b.smoking_per_day,
                salt: b.salt.map(|s| {
                    match s {
                        SaltDto::Light => "light",
                        SaltDto::Moderate => "moderate",
                        SaltDto::Heavy => "heavy",
                    }
                    .into()
                }),
                exercise_minutes_per_week: b.exercise_minutes_per_week,
                classification: b.classification.map(|c| match c {
                    ClassificationDto::Controlled => Classification::Controlled,
                    ClassificationDto::Uncontrolled => Classification::Uncontrolled,
                    ClassificationDto::AdverseReaction => Classification::AdverseReaction,
                    ClassificationDto::Complication => Classification::Complication,
                }),
                next_on: b.next_on,
                notes: b.notes,
            },
        )
        .await?;
        let v = followups::get(&state, &auth.0, r.enrollment.id).await?;
        Ok(FollowupCreated::Created(Json(FollowupRecorded {
            followup: r.visit.into(),
            enrollment: enrollment_dto(followups::today(&state), v.enrollment, &v.person, v.doctor_name),
            flag: r.flag.map(|f| f.as_str().to_string()),
            referral_id: r.referral_id,
        })))
    }
}
