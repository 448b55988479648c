//! The request context. Every handler that touches tenant data takes [`Auth`], whose checker
//! verifies the bearer token, refuses revoked sessions and resolves the caller's roles in the
//! session's institution. Handlers then call `ctx.require(Perm::…)`.

use std::sync::Arc;

use casbin::{CoreApi, Enforcer, RbacApi};
use poem::Request;
use poem_openapi::SecurityScheme;
use poem_openapi::auth::Bearer;
use uuid::Uuid;

use super::domain::Role;
use crate::platform::audit::{AuditEntry, Purpose};
use crate::platform::codes;
use crate::platform::http::{Refusal, Refusals, RequestId};
use crate::platform::state::AppState;
use crate::platform::{AppError, AppResult, TenantScope, Tx};

/// What a caller may do: (object, action) pairs named in `authz/policy.csv`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Perm {
    InstitutionRead,
    StaffRead,
    StaffWrite,
    TenantAdmin,
    AuditRead,
    PatientRead,
    PatientWrite,
    /// See resident ID, phone and insurance numbers unmasked.
    PatientIdentifiers,
    PatientMerge,
    /// Open another institution's person's community summary with a written reason.
    BreakGlass,
    EncounterRead,
    EncounterWrite,
    Prescribe,
    Dispense,
    PharmacyStock,
    BillingCharge,
    BillingPay,
    BillingRefund,
    ReferralRead,
    ReferralWrite,
    ReferralManage,
    /// The ledger: trial balances, income statements, patient statements, reconciliation.
    AccountsRead,
    AccountsClose,
    /// The community's consolidated totals only.
    AccountsConsolidated,
    /// Chronic-disease registries and their worklists.
    FollowupRead,
    FollowupWrite,
    /// Aggregate statistics (KPIs): never a patient.
    StatisticsRead,
}

impl Perm {
    pub const ALL: [Perm; 27] = [
        Self::InstitutionRead,
        Self::StaffRead,
        Self::StaffWrite,
        Self::TenantAdmin,
        Self::AuditRead,
        Self::PatientRead,
        Self::PatientWrite,
        Self::PatientIdentifiers,
        Self::PatientMerge,
        Self::BreakGlass,
        Self::EncounterRead,
        Self::EncounterWrite,
        Self::Prescribe,
        Self::Dispense,
        Self::PharmacyStock,
        Self::BillingCharge,
        Self::BillingPay,
        Self::BillingRefund,
        Self::ReferralRead,
        Self::ReferralWrite,
        Self::ReferralManage,
        Self::AccountsRead,
        Self::AccountsClose,
        Self::AccountsConsolidated,
        Self::FollowupRead,
        Self::FollowupWrite,
        Self::StatisticsRead,
    ];

    pub fn object_action(self) -> (&'static str, &'static str) {
        match self {
            Self::InstitutionRead => ("institution", "read"),
            Self::StaffRead => ("staff", "read"),
            Self::StaffWrite => ("staff", "write"),
            Self::TenantAdmin => ("tenant", "admin"),
            Self::AuditRead => ("audit", "read"),
            Self::PatientRead => ("patient", "read"),
            Self::PatientWrite => ("patient", "write"),
            Self::PatientIdentifiers => ("patient", "identifiers"),
            Self::PatientMerge => ("patient", "merge"),
            Self::BreakGlass => ("patient", "break_glass"),
            Self::EncounterRead => ("encounter", "read"),
            Self::EncounterWrite => ("encounter", "write"),
            Self::Prescribe => ("prescription", "write"),
            Self::Dispense => ("prescription", "dispense"),
            Self::PharmacyStock => ("stock", "manage"),
            Self::BillingCharge => ("bill", "charge"),
            Self::BillingPay => ("bill", "pay"),
            Self::BillingRefund => ("bill", "refund"),
            Self::ReferralRead => ("referral", "read"),
            Self::ReferralWrite => ("referral", "write"),
            Self::ReferralManage => ("referral", "manage"),
            Self::AccountsRead => ("accounts", "read"),
            Self::AccountsClose => ("accounts", "close"),
            Self::AccountsConsolidated => ("accounts", "consolidated"),
            Self::FollowupRead => ("followup", "read"),
            Self::FollowupWrite => ("followup", "write"),
            Self::StatisticsRead => ("statistics", "read"),
        }
    }
}

#[derive(Clone)]
pub struct RequestCtx {
    pub tenant: Uuid,
    pub user: Uuid,
    pub institution: Uuid,
    pub roles: Vec<Role>,
    /// The session's token id, the key that logout revokes.
    pub session: Uuid,
    pub session_expires: i64,
    pub request_id: Option<String>,
    enforcer: Arc<Enforcer>,
    /// Where a refused permission is reported for the boundary to audit (absent outside HTTP).
    refusals: Option<Refusals>,
}

impl std::fmt::Debug for RequestCtx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestCtx")
            .field("tenant", &self.tenant)
            .field("user", &self.user)
            .field("institution", &self.institution)
            .field("roles", &self.roles)
            .finish_non_exhaustive()
    }
}

impl TenantScope for RequestCtx {
    fn tenant_id(&self) -> Uuid {
        self.tenant
    }
}

impl RequestCtx {
    pub fn new(
        tenant: Uuid,
        user: Uuid,
        institution: Uuid,
        session: (Uuid, i64),
        request_id: Option<String>,
        enforcer: Arc<Enforcer>,
    ) -> Self {
        let roles = enforcer
            .get_roles_for_user(&user.to_string(), Some(&institution.to_string()))
            .iter()
            .filter_map(|r| Role::parse(r))
            .collect();
        Self {
            tenant,
            user,
            institution,
            roles,
            session: session.0,
            session_expires: session.1,
            request_id,
            enforcer,
            refusals: None,
        }
    }

    /// Whether the caller holds `perm` in `institution`.
    pub fn can_in(&self, perm: Perm, institution: Uuid) -> bool {
        let (obj, act) = perm.object_action();
        self.enforcer.enforce((self.user.to_string(), institution.to_string(), obj, act)).unwrap_or_else(|e| {
            tracing::error!(error = %e, "casbin enforce failed; denying");
            false
        })
    }

    /// Whether another user of the tenant holds `perm` in `institution` (a responsible doctor,
    /// say).
    pub fn user_can_in(&self, user: Uuid, perm: Perm, institution: Uuid) -> bool {
        let (obj, act) = perm.object_action();
        self.enforcer.enforce((user.to_string(), institution.to_string(), obj, act)).unwrap_or(false)
    }

    pub fn can(&self, perm: Perm) -> bool {
        self.can_in(perm, self.institution)
    }

    /// 403 `forbidden` unless the caller holds `perm` in the session's institution.
    pub fn require(&self, perm: Perm) -> AppResult<()> {
        if self.can(perm) {
            Ok(())
        } else {
            let (obj, act) = perm.object_action();
            self.refused(self.institution, obj, act);
            Err(AppError::new(codes::FORBIDDEN, format!("your roles here do not allow {obj}.{act}")))
        }
    }

    /// 403 `institution_forbidden` unless the caller holds `perm` in `institution`.
    pub fn require_in(&self, perm: Perm, institution: Uuid) -> AppResult<()> {
        if self.can_in(perm, institution) {
            Ok(())
        } else {
            let (obj, act) = perm.object_action();
            self.refused(institution, obj, act);
            Err(AppError::new(codes::INSTITUTION_FORBIDDEN, format!("you may not do {obj}.{act} in that institution")))
        }
    }

    /// Reports this request's permission refusals to the HTTP boundary, which audits them.
    pub fn reporting_to(mut self, req: &Request) -> Self {
        self.refusals = req.data::<Refusals>().cloned();
        self
    }

    /// Reports a refusal for the audit trail (written by the HTTP boundary with the 403).
    fn refused(&self, institution: Uuid, obj: &str, act: &str) {
        if let Some(r) = &self.refusals {
            r.record(Refusal { tenant: self.tenant, user: self.user, institution, permission: format!("{obj}.{act}") });
        }
    }

    /// Audits a read of persons: one row per distinct person shown, naming them (a list is a
    /// read of each person on it).
    pub fn audit_reads(
        &self,
        tx: &mut Tx,
        action: &'static str,
        purpose: Purpose,
        persons: impl IntoIterator<Item = Uuid>,
    ) {
        let mut seen = std::collections::HashSet::new();
        for p in persons.into_iter().filter(|p| seen.insert(*p)) {
            tx.audit(self.audit(action, "person", purpose).resource(p).subject(p));
        }
    }

    /// An audit entry with the actor, institution and request filled in.
    pub fn audit(&self, action: &'static str, resource_type: &'static str, purpose: Purpose) -> AuditEntry {
        AuditEntry::new(action, resource_type, purpose)
            .actor(self.user, self.institution)
            .request(self.request_id.as_deref())
    }
}

/// Bearer token authentication yielding the request context.
#[derive(SecurityScheme)]
#[oai(ty = "bearer", bearer_format = "JWT", checker = "authenticate")]
pub struct Auth(pub RequestCtx);

async fn authenticate(req: &Request, bearer: Bearer) -> poem::Result<RequestCtx> {
    let state = req.data::<AppState>().expect("AppState is installed on every route");
    let request_id = req.data::<RequestId>().map(|r| r.0.clone());
    let ctx = super::service::authenticate(state, &bearer.token, request_id).await?.reporting_to(req);
    let span = tracing::Span::current();
    span.record("tenant.id", tracing::field::display(ctx.tenant));
    span.record("user.id", tracing::field::display(ctx.user));
    Ok(ctx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::authz::{POLICY, new_enforcer};

    #[tokio::test]
    async fn every_perm_is_granted_and_policy_lines_are_known() {
        for line in POLICY.lines().filter(|l| l.starts_with("p,")) {
            let parts: Vec<&str> = line.split(',').map(str::trim).collect();
            assert!(Role::parse(parts[1]).is_some(), "unknown role in {line}");
            assert!(
                Perm::ALL.iter().any(|p| p.object_action() == (parts[3], parts[4])),
                "unknown permission in {line}"
            );
        }
        for perm in Perm::ALL {
            let (o, a) = perm.object_action();
            assert!(POLICY.lines().any(|l| l.ends_with(&format!("{o}, {a}"))), "{perm:?} granted to nobody");
        }
    }

    #[tokio::test]
    async fn domains_separate_institutions() {
        let (u, x, y) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let policy = format!("{POLICY}\ng, {u}, institution_admin, {x}");
        let e = Arc::new(new_enforcer(policy).await.unwrap());
        let ctx = RequestCtx::new(Uuid::nil(), u, x, (Uuid::nil(), 0), None, e);
        assert_eq!(ctx.roles, vec![Role::InstitutionAdmin]);
        assert!(ctx.require(Perm::StaffWrite).is_ok());
        assert!(ctx.require_in(Perm::StaffWrite, y).is_err());
        assert!(ctx.require(Perm::AuditRead).is_err());
    }
}
