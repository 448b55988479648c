//! Tenancy value types, parsed once at the edge.

use std::fmt;

use uuid::Uuid;

/// What an institution is. The tree is county hospital -> township centres -> village clinics;
/// the health bureau stands beside it and only looks at statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum InstitutionKind {
    CountyHospital,
    TownshipHealthCentre,
    VillageClinic,
    HealthBureau,
}

impl InstitutionKind {
    pub const ALL: [InstitutionKind; 4] =
        [Self::CountyHospital, Self::TownshipHealthCentre, Self::VillageClinic, Self::HealthBureau];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::CountyHospital => "county_hospital",
            Self::TownshipHealthCentre => "township_health_centre",
            Self::VillageClinic => "village_clinic",
            Self::HealthBureau => "health_bureau",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Which kinds may be this kind's parent. `None` in the list means "may be a root".
    pub fn allowed_parents(self) -> &'static [Option<InstitutionKind>] {
        match self {
            Self::CountyHospital | Self::HealthBureau => &[None],
            Self::TownshipHealthCentre => &[Some(Self::CountyHospital)],
            Self::VillageClinic => &[Some(Self::TownshipHealthCentre), Some(Self::CountyHospital)],
        }
    }

    /// Township and village level: the "grassroots" of the grassroots-share KPI.
    pub fn is_grassroots(self) -> bool {
        matches!(self, Self::TownshipHealthCentre | Self::VillageClinic)
    }
}

impl fmt::Display for InstitutionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A statistical administrative division code (统计用区划代码): 6 digits for a county,
/// 9 for a township, 12 for a village.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DivisionCode(String);

impl DivisionCode {
    pub fn parse(s: &str) -> Result<Self, String> {
        if !s.chars().all(|c| c.is_ascii_digit()) || ![6, 9, 12].contains(&s.len()) {
            return Err(format!("division code `{s}` must be 6, 9 or 12 digits"));
        }
        Ok(Self(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A machine code for a tenant, institution or department: lowercase ASCII letters, digits, `-`
/// and `.`, starting with a letter or digit, at most 64 characters.
pub fn check_code(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.' || c == '_');
    if ok { Ok(()) } else { Err(format!("code `{s}` must be 1-64 of a-z, 0-9, '-', '_', '.'")) }
}

/// An institution of a tenant file, validated (`onboarding::file`).
#[derive(Debug, Clone)]
pub struct InstitutionSpec {
    pub code: String,
    pub name: String,
    pub name_en: Option<String>,
    pub kind: InstitutionKind,
    pub division: DivisionCode,
    pub parent: Option<String>,
    pub departments: Vec<DepartmentSpec>,
    /// Drug codes stocked here; `None` means the whole community formulary.
    pub formulary: Option<Vec<String>>,
}

#[derive(Debug, Clone)]
pub struct DepartmentSpec {
    pub code: String,
    pub name: String,
    pub name_en: Option<String>,
}

/// What applying a tenant file did.
#[derive(Debug, Clone, Default)]
pub struct ApplyReport {
    pub tenant_id: Uuid,
    pub created: Vec<String>,
    pub updated: Vec<String>,
    pub unchanged: usize,
}

impl ApplyReport {
    pub fn changed(&self) -> bool {
        !self.created.is_empty() || !self.updated.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip() {
        for k in InstitutionKind::ALL {
            assert_eq!(InstitutionKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(InstitutionKind::parse("clinic"), None);
    }

    #[test]
    fn division_codes() {
        assert!(DivisionCode::parse("130999").is_ok());
        assert!(DivisionCode::parse("130999101201").is_ok());
        assert!(DivisionCode::parse("1309").is_err());
        assert!(DivisionCode::parse("13099a").is_err());
    }

    #[test]
    fn codes() {
        assert!(check_code("v-dongguan").is_ok());
        assert!(check_code("V").is_err());
        assert!(check_code("-x").is_err());
        assert!(check_code("").is_err());
    }
}
