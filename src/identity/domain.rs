//! Identity value types: roles and where they may be held, usernames, password rules.

use std::fmt;

use crate::tenancy::InstitutionKind;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize, poem_openapi::Enum,
)]
#[serde(rename_all = "snake_case")]
#[oai(rename_all = "snake_case")]
pub enum Role {
    VillageDoctor,
    TownshipDoctor,
    CountyDoctor,
    ReferralCoordinator,
    Pharmacist,
    Cashier,
    FinanceOfficer,
    InstitutionAdmin,
    BureauOfficial,
    TenantAdmin,
}

impl Role {
    pub const ALL: [Role; 10] = [
        Self::VillageDoctor,
        Self::TownshipDoctor,
        Self::CountyDoctor,
        Self::ReferralCoordinator,
        Self::Pharmacist,
        Self::Cashier,
        Self::FinanceOfficer,
        Self::InstitutionAdmin,
        Self::BureauOfficial,
        Self::TenantAdmin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::VillageDoctor => "village_doctor",
            Self::TownshipDoctor => "township_doctor",
            Self::CountyDoctor => "county_doctor",
            Self::ReferralCoordinator => "referral_coordinator",
            Self::Pharmacist => "pharmacist",
            Self::Cashier => "cashier",
            Self::FinanceOfficer => "finance_officer",
            Self::InstitutionAdmin => "institution_admin",
            Self::BureauOfficial => "bureau_official",
            Self::TenantAdmin => "tenant_admin",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// Where a role may be held. A tenant admin is bound at the lead hospital but acts in every
    /// institution of the community (the authorizer expands it).
    pub fn allowed_in(self, kind: InstitutionKind) -> bool {
        use InstitutionKind::*;
        match self {
            Self::VillageDoctor => kind == VillageClinic,
            Self::TownshipDoctor => kind == TownshipHealthCentre,
            Self::CountyDoctor => kind == CountyHospital,
            Self::ReferralCoordinator | Self::FinanceOfficer => matches!(kind, CountyHospital | TownshipHealthCentre),
            Self::Pharmacist | Self::Cashier => matches!(kind, CountyHospital | TownshipHealthCentre | VillageClinic),
            Self::InstitutionAdmin => true,
            Self::BureauOfficial => kind == HealthBureau,
            Self::TenantAdmin => kind == CountyHospital,
        }
    }

    /// Roles that act across the whole community rather than in one institution.
    pub fn is_tenant_wide(self) -> bool {
        self == Self::TenantAdmin
    }
}

/// Usernames: 3-64 of lowercase ASCII letters, digits, '.', '_' and '-'.
pub fn check_username(s: &str) -> Result<(), String> {
    let ok = (3..=64).contains(&s.len())
        && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'));
    if ok { Ok(()) } else { Err("username must be 3-64 of a-z, 0-9, '.', '_', '-'".into()) }
}

/// MLPS level 3 password rule: at least 8 characters, from at least three of lower case, upper
/// case, digits and symbols, and not containing the username.
pub fn check_password_strength(password: &str, username: &str) -> Result<(), String> {
    if password.chars().count() < 8 {
        return Err("must be at least 8 characters".into());
    }
    if password.len() > 128 {
        return Err("must be at most 128 bytes".into());
    }
    let classes = [
        password.chars().any(|c| c.is_ascii_lowercase()),
        password.chars().any(|c| c.is_ascii_uppercase()),
        password.chars().any(|c| c.is_ascii_digit()),
        password.chars().any(|c| !c.is_ascii_alphanumeric()),
    ];
    if classes.iter().filter(|x| **x).count() < 3 {
        return Err("must mix at least three of: lower case, upper case, digits, symbols".into());
    }
    if !username.is_empty() && password.to_lowercase().contains(&username.to_lowercase()) {
        return Err("must not contain the username".into());
    }
    Ok(())
}

/// A user of a tenant file, validated (`onboarding::file`).
#[derive(Debug, Clone)]
pub enum Credential {
    /// A plain password (demo files); stored hashed, re-hashed only when it changes.
    Plain(String),
    /// An argon2id PHC string, stored as is.
    Hash(String),
}

#[derive(Clone)]
pub struct UserSpec {
    pub username: String,
    pub display_name: String,
    pub credential: Credential,
    pub active: bool,
    pub roles: Vec<RoleAt>,
}

/// A role a tenant file binds at an institution, named by its code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleAt {
    pub institution: String,
    pub role: Role,
}

impl fmt::Debug for UserSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserSpec").field("username", &self.username).field("roles", &self.roles).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip_and_fit_kinds() {
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()), Some(r));
            assert!(InstitutionKind::ALL.iter().any(|k| r.allowed_in(*k)), "{r:?} fits somewhere");
        }
        assert!(!Role::VillageDoctor.allowed_in(InstitutionKind::CountyHospital));
        assert!(Role::BureauOfficial.allowed_in(InstitutionKind::HealthBureau));
    }

    #[test]
    fn password_rules() {
        assert!(check_password_strength("Demo@2026", "admin").is_ok());
        assert!(check_password_strength("short1A", "x").is_err());
        assert!(check_password_strength("alllowercase", "x").is_err());
        assert!(check_password_strength("Admin@2026x", "admin").is_err());
    }

    #[test]
    fn usernames() {
        assert!(check_username("village.doctor").is_ok());
        assert!(check_username("Ab").is_err());
        assert!(check_username("张伟").is_err());
    }
}
