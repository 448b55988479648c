//! Tenant files (`tenants/<code>.toml`): parsing and whole-file validation. A file with any
//! problem is rejected whole, with every problem listed by file, line and the item it concerns;
//! nothing is applied. See `tenants/demo-county.toml` for the format.

use std::collections::{HashMap, HashSet};
use std::fmt;

use serde::Deserialize;
use toml::Spanned;

use super::domain::{DivisionCode, InstitutionKind, check_code};
use crate::billing::domain::{InsuranceCategory, Reimbursement};
use crate::identity::domain::{Role, check_password_strength, check_username};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    tenant: RawTenant,
    #[serde(default)]
    settings: toml::Table,
    institutions: Vec<RawInstitution>,
    #[serde(default)]
    users: Vec<RawUser>,
    #[serde(default)]
    formulary: Vec<RawDrug>,
    #[serde(default)]
    fee_schedule: Vec<RawFee>,
    /// The chart of accounts; the default chart when absent.
    #[serde(default)]
    chart_of_accounts: Vec<RawAccount>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAccount {
    code: Spanned<String>,
    name: String,
    name_en: Option<String>,
    kind: Spanned<String>,
    /// What the posting rules use it for (cash, bank, drug_revenue, internal_payable, …).
    role: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDrug {
    code: Spanned<String>,
    name: String,
    name_en: Option<String>,
    form: String,
    strength: String,
    unit: String,
    price_fen: Spanned<i64>,
    insurance: Spanned<String>,
    allergen_class: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFee {
    code: Spanned<String>,
    name: String,
    name_en: Option<String>,
    category: Spanned<String>,
    price_fen: Spanned<i64>,
    insurance: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTenant {
    code: Spanned<String>,
    name: String,
    name_en: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInstitution {
    code: Spanned<String>,
    name: String,
    name_en: Option<String>,
    kind: Spanned<String>,
    division: Spanned<String>,
    parent: Option<Spanned<String>>,
    #[serde(default)]
    departments: Vec<RawDepartment>,
    /// Drug codes this institution stocks; all of the community formulary when absent.
    formulary: Option<Spanned<Vec<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDepartment {
    code: Spanned<String>,
    name: String,
    name_en: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUser {
    username: Spanned<String>,
    display_name: String,
    password: Option<Spanned<String>>,
    password_hash: Option<Spanned<String>>,
    #[serde(default = "yes")]
    active: bool,
    roles: Vec<RawRole>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRole {
    institution: Spanned<String>,
    role: Spanned<String>,
}

/// A validated tenant file. Institutions are ordered parents first.
#[derive(Debug, Clone)]
pub struct TenantSpec {
    pub code: String,
    pub name: String,
    pub name_en: Option<String>,
    pub settings: serde_json::Value,
    pub institutions: Vec<InstitutionSpec>,
    pub users: Vec<UserSpec>,
    pub formulary: Vec<DrugSpec>,
    pub fee_schedule: Vec<FeeSpec>,
    pub chart: crate::accounts::domain::Chart,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrugSpec {
    pub code: String,
    pub name: String,
    pub name_en: Option<String>,
    pub form: String,
    pub strength: String,
    pub unit: String,
    pub price_fen: i64,
    pub insurance: InsuranceCategory,
    pub allergen_class: Option<String>,
}

pub const FEE_CATEGORIES: [&str; 5] = ["registration", "consultation", "procedure", "lab", "other"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeeSpec {
    pub code: String,
    pub name: String,
    pub name_en: Option<String>,
    pub category: String,
    pub price_fen: i64,
    pub insurance: InsuranceCategory,
}

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
    /// (institution code, role)
    pub roles: Vec<(String, Role)>,
}

impl fmt::Debug for UserSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserSpec").field("username", &self.username).field("roles", &self.roles).finish()
    }
}

/// Every problem found in a file, each naming where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    pub problems: Vec<String>,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "tenant file rejected ({} problem{}), nothing applied:",
            self.problems.len(),
            if self.problems.len() == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            write!(f, "\n  - {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for LoadError {}

const MAX_NAME: usize = 200;

/// Parses and validates a tenant file. `source` names it in messages (usually its path).
pub fn parse(source: &str, text: &str) -> Result<TenantSpec, LoadError> {
    let raw: RawFile = toml::from_str(text).map_err(|e| {
        let at = e.span().map(|s| format!(":{}", line_of(text, s.start))).unwrap_or_default();
        LoadError { problems: vec![format!("{source}{at}: {}", e.message())] }
    })?;
    let mut problems = Vec::new();
    let mut p = |span: std::ops::Range<usize>, what: String| {
        problems.push(format!("{source}:{}: {what}", line_of(text, span.start)));
    };

    if let Err(e) = check_code(raw.tenant.code.get_ref()) {
        p(raw.tenant.code.span(), format!("tenant: {e}"));
    } else if !raw.tenant.code.get_ref().chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') {
        p(raw.tenant.code.span(), "tenant: a tenant code is a-z, 0-9 and '-' only".into());
    }
    if let Err(e) = Reimbursement::from_settings(&serde_json::to_value(&raw.settings).unwrap_or_default()) {
        p(raw.tenant.code.span(), e);
    }
    if let Some(m) = raw.settings.get("matching") {
        let json = serde_json::to_value(m).unwrap_or_default();
        if let Err(e) = serde_json::from_value::<crate::patients::matching::MatchWeights>(json) {
            p(raw.tenant.code.span(), format!("[settings.matching]: {e}"));
        }
    }
    check_name(&raw.tenant.name, raw.tenant.code.span(), "tenant: name", &mut p);

    // Institutions: unique codes, known kinds, valid divisions, parents that exist and fit.
    let mut kinds: HashMap<String, InstitutionKind> = HashMap::new();
    let mut seen: HashSet<String> = HashSet::new();
    for (i, inst) in raw.institutions.iter().enumerate() {
        let code = inst.code.get_ref().as_str();
        let at = format!("institutions[{i}] `{code}`");
        if let Err(e) = check_code(code) {
            p(inst.code.span(), format!("{at}: {e}"));
        }
        if !seen.insert(code.to_string()) {
            p(inst.code.span(), format!("{at}: duplicate institution code `{code}`"));
        }
        check_name(&inst.name, inst.code.span(), &format!("{at}: name"), &mut p);
        match InstitutionKind::parse(inst.kind.get_ref()) {
            Some(k) => {
                kinds.insert(code.to_string(), k);
            }
            None => p(
                inst.kind.span(),
                format!(
                    "{at}: unknown kind `{}` (expected one of {})",
                    inst.kind.get_ref(),
                    InstitutionKind::ALL.map(|k| k.as_str()).join(", ")
                ),
            ),
        }
        if let Err(e) = DivisionCode::parse(inst.division.get_ref()) {
            p(inst.division.span(), format!("{at}: {e}"));
        }
        let mut dept_codes = HashSet::new();
        for (j, d) in inst.departments.iter().enumerate() {
            let dat = format!("{at} departments[{j}] `{}`", d.code.get_ref());
            if let Err(e) = check_code(d.code.get_ref()) {
                p(d.code.span(), format!("{dat}: {e}"));
            }
            if !dept_codes.insert(d.code.get_ref()) {
                p(d.code.span(), format!("{dat}: duplicate department code"));
            }
            check_name(&d.name, d.code.span(), &format!("{dat}: name"), &mut p);
        }
    }
    if !raw.institutions.iter().any(|i| i.kind.get_ref() == InstitutionKind::CountyHospital.as_str()) {
        problems.push(format!("{source}: the community needs a county_hospital (lead hospital)"));
    }
    let mut p = |span: std::ops::Range<usize>, what: String| {
        problems.push(format!("{source}:{}: {what}", line_of(text, span.start)));
    };
    for (i, inst) in raw.institutions.iter().enumerate() {
        let code = inst.code.get_ref().as_str();
        let at = format!("institutions[{i}] `{code}`");
        let Some(kind) = kinds.get(code).copied() else { continue };
        let parent_kind = match &inst.parent {
            None => None,
            Some(parent) => match kinds.get(parent.get_ref().as_str()) {
                Some(k) => Some(*k),
                None => {
                    if !seen.contains(parent.get_ref().as_str()) {
                        p(parent.span(), format!("{at}: unknown parent `{}`", parent.get_ref()));
                    }
                    continue;
                }
            },
        };
        if !kind.allowed_parents().contains(&parent_kind) {
            let span = inst.parent.as_ref().map(|s| s.span()).unwrap_or(inst.kind.span());
            let expected: Vec<&str> =
                kind.allowed_parents().iter().map(|k| k.map(|k| k.as_str()).unwrap_or("no parent")).collect();
            p(
                span,
                format!(
                    "{at}: a {kind} cannot have {} as parent (expected {})",
                    parent_kind.map(|k| format!("a {k}")).unwrap_or("no parent".into()),
                    expected.join(" or ")
                ),
            );
        }
    }

    // Users: unique usernames, one credential, roles that exist where they are bound.
    let mut usernames = HashSet::new();
    let mut users = Vec::new();
    for (i, u) in raw.users.iter().enumerate() {
        let name = u.username.get_ref();
        let at = format!("users[{i}] `{name}`");
        if let Err(e) = check_username(name) {
            p(u.username.span(), format!("{at}: {e}"));
        }
        if !usernames.insert(name.as_str()) {
            p(u.username.span(), format!("{at}: duplicate username"));
        }
        check_name(&u.display_name, u.username.span(), &format!("{at}: display_name"), &mut p);
        let credential = match (&u.password, &u.password_hash) {
            (Some(pw), None) => {
                if let Err(e) = check_password_strength(pw.get_ref(), name) {
                    p(pw.span(), format!("{at}: password: {e}"));
                }
                Some(Credential::Plain(pw.get_ref().clone()))
            }
            (None, Some(h)) => {
                if !h.get_ref().starts_with("$argon2id$") {
                    p(h.span(), format!("{at}: password_hash must be an argon2id PHC string"));
                }
                Some(Credential::Hash(h.get_ref().clone()))
            }
            _ => {
                p(u.username.span(), format!("{at}: give exactly one of `password` or `password_hash`"));
                None
            }
        };
        if u.roles.is_empty() {
            p(u.username.span(), format!("{at}: needs at least one role"));
        }
        let mut roles = Vec::new();
        for r in &u.roles {
            let Some(role) = Role::parse(r.role.get_ref()) else {
                p(
                    r.role.span(),
                    format!(
                        "{at}: unknown role `{}` (expected one of {})",
                        r.role.get_ref(),
                        Role::ALL.map(|r| r.as_str()).join(", ")
                    ),
                );
                continue;
            };
            match kinds.get(r.institution.get_ref().as_str()) {
                None => p(r.institution.span(), format!("{at}: unknown institution `{}`", r.institution.get_ref())),
                Some(kind) if !role.allowed_in(*kind) => {
                    p(r.role.span(), format!("{at}: role `{}` cannot be held at a {kind}", role.as_str()))
                }
                Some(_) => roles.push((r.institution.get_ref().clone(), role)),
            }
        }
        if let Some(credential) = credential {
            users.push(UserSpec {
                username: name.clone(),
                display_name: u.display_name.clone(),
                credential,
                active: u.active,
                roles,
            });
        }
    }

    let chart = chart_of(&raw.chart_of_accounts, &mut p);
    if let Some(days) = raw.settings.get("followups").and_then(|f| f.get("interval_days"))
        && !days.as_integer().is_some_and(|d| (7..=366).contains(&d))
    {
        p(raw.tenant.code.span(), "[settings.followups]: interval_days is a whole number of days from 7 to 366".into());
    }
    if let Some(share) = raw.settings.get("accounts").and_then(|a| a.get("referral_fee_share"))
        && !share.as_float().or(share.as_integer().map(|i| i as f64)).is_some_and(|v| (0.0..=1.0).contains(&v))
    {
        p(raw.tenant.code.span(), "[settings.accounts]: referral_fee_share is a fraction from 0 to 1".into());
    }

    let mut drug_codes = HashSet::new();
    for (i, d) in raw.formulary.iter().enumerate() {
        let at = format!("formulary[{i}] `{}`", d.code.get_ref());
        if let Err(e) = check_code(d.code.get_ref()) {
            p(d.code.span(), format!("{at}: {e}"));
        }
        if !drug_codes.insert(d.code.get_ref().clone()) {
            p(d.code.span(), format!("{at}: duplicate drug code"));
        }
        check_name(&d.name, d.code.span(), &format!("{at}: name"), &mut p);
        if *d.price_fen.get_ref() <= 0 {
            p(d.price_fen.span(), format!("{at}: price_fen must be a positive number of fen"));
        }
        if InsuranceCategory::parse(d.insurance.get_ref()).is_none() {
            p(d.insurance.span(), format!("{at}: insurance must be A (甲), B (乙) or C (丙)"));
        }
    }
    let mut fee_codes = HashSet::new();
    for (i, f) in raw.fee_schedule.iter().enumerate() {
        let at = format!("fee_schedule[{i}] `{}`", f.code.get_ref());
        if let Err(e) = check_code(f.code.get_ref()) {
            p(f.code.span(), format!("{at}: {e}"));
        }
        if !fee_codes.insert(f.code.get_ref().clone()) {
            p(f.code.span(), format!("{at}: duplicate fee code"));
        }
        check_name(&f.name, f.code.span(), &format!("{at}: name"), &mut p);
        if *f.price_fen.get_ref() < 0 {
            p(f.price_fen.span(), format!("{at}: price_fen must not be negative"));
        }
        if !FEE_CATEGORIES.contains(&f.category.get_ref().as_str()) {
            p(f.category.span(), format!("{at}: category must be one of {}", FEE_CATEGORIES.join(", ")));
        }
        if InsuranceCategory::parse(f.insurance.get_ref()).is_none() {
            p(f.insurance.span(), format!("{at}: insurance must be A (甲), B (乙) or C (丙)"));
        }
    }
    for (i, inst) in raw.institutions.iter().enumerate() {
        if let Some(list) = &inst.formulary {
            for code in list.get_ref() {
                if !drug_codes.contains(code) {
                    p(
                        list.span(),
                        format!("institutions[{i}] `{}`: formulary names unknown drug `{code}`", inst.code.get_ref()),
                    );
                }
            }
        }
    }

    if !problems.is_empty() {
        return Err(LoadError { problems });
    }

    // Parents first: county hospital and bureau, then townships, then villages.
    let mut institutions: Vec<InstitutionSpec> = raw
        .institutions
        .into_iter()
        .map(|i| InstitutionSpec {
            kind: kinds[i.code.get_ref()],
            division: DivisionCode::parse(i.division.get_ref()).expect("validated"),
            code: i.code.into_inner(),
            name: i.name,
            name_en: i.name_en,
            parent: i.parent.map(Spanned::into_inner),
            departments: i
                .departments
                .into_iter()
                .map(|d| DepartmentSpec { code: d.code.into_inner(), name: d.name, name_en: d.name_en })
                .collect(),
            formulary: i.formulary.map(Spanned::into_inner),
        })
        .collect();
    institutions.sort_by_key(|i| match i.kind {
        InstitutionKind::CountyHospital | InstitutionKind::HealthBureau => 0,
        InstitutionKind::TownshipHealthCentre => 1,
        InstitutionKind::VillageClinic => 2,
    });
    Ok(TenantSpec {
        code: raw.tenant.code.into_inner(),
        name: raw.tenant.name,
        name_en: raw.tenant.name_en,
        settings: serde_json::to_value(&raw.settings).unwrap_or(serde_json::Value::Null),
        institutions,
        users,
        formulary: raw
            .formulary
            .into_iter()
            .map(|d| DrugSpec {
                insurance: InsuranceCategory::parse(d.insurance.get_ref()).expect("validated"),
                code: d.code.into_inner(),
                name: d.name,
                name_en: d.name_en,
                form: d.form,
                strength: d.strength,
                unit: d.unit,
                price_fen: d.price_fen.into_inner(),
                allergen_class: d.allergen_class,
            })
            .collect(),
        chart,
        fee_schedule: raw
            .fee_schedule
            .into_iter()
            .map(|f| FeeSpec {
                insurance: InsuranceCategory::parse(f.insurance.get_ref()).expect("validated"),
                code: f.code.into_inner(),
                name: f.name,
                name_en: f.name_en,
                category: f.category.into_inner(),
                price_fen: f.price_fen.into_inner(),
            })
            .collect(),
    })
}

/// The chart of a file: each account checked, every posting role held exactly once.
fn chart_of(raw: &[RawAccount], p: &mut impl FnMut(std::ops::Range<usize>, String)) -> crate::accounts::domain::Chart {
    use crate::accounts::domain::{Account, Chart, Kind, Role};
    if raw.is_empty() {
        return Chart::default();
    }
    let mut accounts = Vec::new();
    for (i, a) in raw.iter().enumerate() {
        let at = format!("chart_of_accounts[{i}] `{}`", a.code.get_ref());
        if a.code.get_ref().is_empty()
            || a.code.get_ref().len() > 20
            || !a.code.get_ref().chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
        {
            p(a.code.span(), format!("{at}: an account code is 1-20 letters, digits, '.' or '-'"));
        }
        check_name(&a.name, a.code.span(), &format!("{at}: name"), p);
        let kind = Kind::parse(a.kind.get_ref());
        if kind.is_none() {
            p(a.kind.span(), format!("{at}: kind must be asset, liability, equity, revenue or expense"));
        }
        let role = a.role.as_ref().map(|r| (Role::parse(r.get_ref()), r));
        if let Some((None, r)) = &role {
            let all: Vec<&str> = Role::ALL.iter().map(|r| r.as_str()).collect();
            p(r.span(), format!("{at}: role must be one of {}", all.join(", ")));
        }
        let role = role.and_then(|(r, _)| r);
        accounts.push(Account {
            code: a.code.get_ref().clone(),
            name: a.name.clone(),
            name_en: a.name_en.clone(),
            kind: kind.unwrap_or(Kind::Asset),
            internal: role.is_some_and(Role::internal),
            role,
        });
    }
    let chart = Chart { accounts };
    if let Err(e) = chart.check() {
        p(raw[0].code.span(), format!("chart_of_accounts: {e}"));
    }
    chart
}

fn check_name(
    name: &str,
    span: std::ops::Range<usize>,
    what: &str,
    p: &mut impl FnMut(std::ops::Range<usize>, String),
) {
    if name.trim().is_empty() {
        p(span, format!("{what} is empty"));
    } else if name.chars().count() > MAX_NAME {
        p(span, format!("{what} is longer than {MAX_NAME} characters"));
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())].iter().filter(|b| **b == b'\n').count() + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[tenant]
code = "t1"
name = "测试县医共体"

[[institutions]]
code = "county"
name = "县医院"
kind = "county_hospital"
division = "130999"

[[institutions]]
code = "town"
name = "镇卫生院"
kind = "township_health_centre"
division = "130999101"
parent = "county"

[[users]]
username = "doc"
display_name = "医生"
password = "Good@Pass1"
roles = [{ institution = "town", role = "township_doctor" }]
"#;

    fn problems(text: &str) -> Vec<String> {
        parse("t.toml", text).unwrap_err().problems
    }

    #[test]
    fn good_file_parses_parents_first() {
        let spec = parse("t.toml", GOOD).unwrap();
        assert_eq!(spec.institutions[0].code, "county");
        assert_eq!(spec.users[0].roles, vec![("town".to_string(), Role::TownshipDoctor)]);
    }

    #[test]
    fn unknown_parent_is_named_with_line() {
        let p = problems(&GOOD.replace("parent = \"county\"", "parent = \"nowhere\""));
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].starts_with("t.toml:17: institutions[1] `town`: unknown parent `nowhere`"), "{p:?}");
    }

    #[test]
    fn duplicate_code_bad_kind_and_role_all_reported() {
        let text = GOOD.replace("code = \"town\"", "code = \"county\"").replace("township_health_centre", "clinic");
        let p = problems(&text);
        assert!(p.iter().any(|x| x.contains("duplicate institution code `county`")), "{p:?}");
        assert!(p.iter().any(|x| x.contains("unknown kind `clinic`")), "{p:?}");
        assert!(p.iter().any(|x| x.contains("unknown institution `town`")), "{p:?}");
    }

    #[test]
    fn missing_field_names_line_and_field() {
        let p = problems(&GOOD.replace("division = \"130999101\"\n", ""));
        assert!(p[0].contains("missing field `division`"), "{p:?}");
        assert!(p[0].starts_with("t.toml:"), "{p:?}");
    }

    #[test]
    fn role_must_fit_institution_kind() {
        let p = problems(&GOOD.replace("township_doctor", "bureau_official"));
        assert!(p[0].contains("role `bureau_official` cannot be held at a township_health_centre"), "{p:?}");
    }

    #[test]
    fn weak_password_and_wrong_parent_kind() {
        let text = GOOD.replace("Good@Pass1", "password").replace("parent = \"county\"", "");
        let p = problems(&text);
        assert!(p.iter().any(|x| x.contains("password:")), "{p:?}");
        assert!(p.iter().any(|x| x.contains("cannot have no parent")), "{p:?}");
    }

    #[test]
    fn unknown_section_is_rejected() {
        let p = problems(&format!("{GOOD}\n[[institution]]\ncode = \"x\"\n"));
        assert!(p[0].contains("unknown field `institution`"), "{p:?}");
    }
}
