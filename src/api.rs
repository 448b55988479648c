//! The JSON API: every context's operations nested into one OpenAPI document.

use poem_openapi::{OpenApi, Tags};

#[derive(Tags)]
pub enum ApiTags {
    /// Login, logout and the current session
    Auth,
    /// The community's institution tree
    Institutions,
    /// Staff and role administration
    Staff,
    /// The audit trail
    Audit,
    /// The unified patient index: registration, matching, search, merges
    Patients,
    /// Encounters, vitals, diagnoses, allergies, the community summary
    Clinical,
    /// Formulary, stock, prescriptions and dispensing
    Pharmacy,
    /// Fee schedule, bills, payments and refunds
    Billing,
    /// Two-way referrals, their inbox, grants and live stream
    Referrals,
    /// The community's consolidated books: journal, statements, reconciliation, period close
    Accounts,
    /// Chronic-disease registries, follow-ups, worklists and enrollment suggestions
    Followups,
    /// The bureau's KPIs: aggregates with drill-down, series and exports, never a patient
    Statistics,
}

/// Every context's API. Handlers take the [`crate::state::AppState`] from request data, so the
/// document can be built without any backend (`cloudhis openapi`).
pub fn api() -> impl OpenApi {
    (
        crate::identity::api::AuthApi,
        crate::identity::api::StaffApi,
        crate::tenancy::api::InstitutionsApi,
        crate::audit::api::AuditApi,
        crate::patients::api::PatientsApi,
        crate::clinical::api::ClinicalApi,
        crate::pharmacy::api::PharmacyApi,
        crate::billing::api::BillingApi,
        crate::referrals::api::ReferralsApi,
        crate::accounts::api::AccountsApi,
        crate::followups::api::FollowupsApi,
        crate::statistics::api::StatisticsApi,
    )
}
