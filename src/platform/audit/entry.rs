//! What an audit row says. Ids only: never a name, a resident ID, a phone or clinical text.

use uuid::Uuid;

/// Why the data was touched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Treatment,
    Referral,
    BreakGlass,
    Administration,
    Authentication,
    Statistics,
    InsuranceClaim,
    IdentityCheck,
    PatientContact,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Treatment => "treatment",
            Self::Referral => "referral",
            Self::BreakGlass => "break_glass",
            Self::Administration => "administration",
            Self::Authentication => "authentication",
            Self::Statistics => "statistics",
            Self::InsuranceClaim => "insurance_claim",
            Self::IdentityCheck => "identity_check",
            Self::PatientContact => "patient_contact",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Denied,
    Failure,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Denied => "denied",
            Self::Failure => "failure",
        }
    }
}

#[derive(Debug, Clone)]
pub struct AuditEntry {
    pub actor_user_id: Option<Uuid>,
    pub institution_id: Option<Uuid>,
    pub action: &'static str,
    pub resource_type: &'static str,
    pub resource_id: Option<String>,
    pub subject_person_id: Option<Uuid>,
    pub purpose: Purpose,
    pub outcome: Outcome,
    pub request_id: Option<String>,
}

impl AuditEntry {
    pub fn new(action: &'static str, resource_type: &'static str, purpose: Purpose) -> Self {
        Self {
            actor_user_id: None,
            institution_id: None,
            action,
            resource_type,
            resource_id: None,
            subject_person_id: None,
            purpose,
            outcome: Outcome::Success,
            request_id: None,
        }
    }

    pub fn actor(mut self, user: Uuid, institution: Uuid) -> Self {
        self.actor_user_id = Some(user);
        self.institution_id = Some(institution);
        self
    }

    pub fn resource(mut self, id: impl ToString) -> Self {
        self.resource_id = Some(id.to_string());
        self
    }

    pub fn subject(mut self, person: Uuid) -> Self {
        self.subject_person_id = Some(person);
        self
    }

    pub fn outcome(mut self, outcome: Outcome) -> Self {
        self.outcome = outcome;
        self
    }

    pub fn request(mut self, request_id: Option<&str>) -> Self {
        self.request_id = request_id.map(str::to_owned);
        self
    }
}
