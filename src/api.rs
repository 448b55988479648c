//! The JSON API: every context's operations nested into one OpenAPI document.

use poem_openapi::OpenApi;

/// Every context's API. Handlers take the [`crate::platform::state::AppState`] from request data, so the
/// document can be built without any backend (`cloudhis openapi`).
pub fn api() -> impl OpenApi {
    (
        crate::identity::api::AuthApi,
        crate::identity::api::StaffApi,
        crate::identity::institutions::InstitutionsApi,
        crate::audit::api::AuditApi,
        crate::patients::api::PatientsApi,
        crate::patients::import::api::ImportsApi,
        crate::clinical::api::ClinicalApi,
        crate::visit::api::ClinicalVisitApi,
        crate::pharmacy::api::PharmacyApi,
        crate::visit::api::PharmacyVisitApi,
        crate::billing::api::BillingApi,
        crate::referrals::api::ReferralsApi,
        crate::accounts::api::AccountsApi,
        crate::followups::api::FollowupsApi,
        crate::escalation::api::EscalationApi,
        crate::statistics::api::StatisticsApi,
    )
}
