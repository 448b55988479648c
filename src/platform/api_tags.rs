//! The tags that group the JSON API's operations in its OpenAPI document, one per context.

use poem_openapi::Tags;

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
