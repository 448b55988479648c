//! Audit API: the tenant admin reads the community's audit trail, newest first.

use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::param::Query;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use uuid::Uuid;

use super::service;
use crate::identity::ctx::Auth;
use crate::platform::AppError;
use crate::platform::api_tags::ApiTags;
use crate::platform::state::AppState;

#[derive(Debug, Clone, Object)]
pub struct AuditEventDto {
    /// The row's hash chain (a tenant's trail is split over several)
    pub chain: i16,
    /// The row's number in its chain
    pub seq: i64,
    pub id: Uuid,
    pub occurred_at: DateTime<Utc>,
    #[oai(skip_serializing_if_is_none)]
    pub actor_user_id: Option<Uuid>,
    #[oai(skip_serializing_if_is_none)]
    pub institution_id: Option<Uuid>,
    pub action: String,
    pub resource_type: String,
    #[oai(skip_serializing_if_is_none)]
    pub resource_id: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub subject_person_id: Option<Uuid>,
    pub purpose: String,
    pub outcome: String,
}

#[derive(ApiResponse)]
pub enum ListAuditResponse {
    /// Audit rows, newest first
    #[oai(status = 200)]
    Ok(Json<Vec<AuditEventDto>>),
}

pub struct AuditApi;

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::Audit")]
impl AuditApi {
    /// List audit events of the community (tenant admin)
    #[oai(path = "/audit/events", method = "get", operation_id = "audit_list")]
    async fn list(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        /// Rows written before this row id (for paging: the last id of the previous page)
        before: Query<Option<Uuid>>,
        /// Page size, 1-500
        #[oai(default = "default_limit", validator(minimum(value = "1"), maximum(value = "500")))]
        limit: Query<u64>,
        /// Only rows about this person
        subject: Query<Option<Uuid>>,
    ) -> Result<ListAuditResponse, AppError> {
        let rows = service::list(&state.db, &auth.0, before.0, limit.0, subject.0).await?;
        Ok(ListAuditResponse::Ok(Json(
            rows.into_iter()
                .map(|r| AuditEventDto {
                    chain: r.chain,
                    seq: r.seq,
                    id: r.id,
                    occurred_at: r.occurred_at,
                    actor_user_id: r.actor_user_id,
                    institution_id: r.institution_id,
                    action: r.action,
                    resource_type: r.resource_type,
                    resource_id: r.resource_id,
                    subject_person_id: r.subject_person_id,
                    purpose: r.purpose,
                    outcome: r.outcome,
                })
                .collect(),
        )))
    }
}

fn default_limit() -> u64 {
    100
}
