//! Tenant files (`tenants/<code>.toml`): parsing and whole-file validation. A file with any
//! problem is rejected whole, with every problem listed by file, line and the item it concerns;
//! nothing is applied. See `tenants/demo-county.toml` for the format.

use std::collections::{HashMap, HashSet};
use std::fmt;

use serde::Deserialize;
use toml::Spanned;

use crate::billing::domain::{FEE_CATEGORIES, FeeSpec, InsuranceCategory, Reimbursement};
use crate::identity::domain::{Credential, Role, RoleAt, UserSpec, check_password_strength, check_username};
use crate::pharmacy::domain::DrugSpec;
use crate::tenancy::domain::{DepartmentSpec, DivisionCode, InstitutionKind, InstitutionSpec, check_code};

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

type Span = std::ops::Range<usize>;

/// The problems found so far, each naming the file and the line it is on.
struct Problems<'a> {
    source: &'a str,
    text: &'a str,
    list: Vec<String>,
}

impl Problems<'_> {
    /// A problem at a place in the file.
    fn at(&mut self, span: Span, what: String) {
        self.list.push(format!("{}:{}: {what}", self.source, line_of(self.text, span.start)));
    }

    /// A problem of the file as a whole.
    fn whole(&mut self, what: &str) {
        self.list.push(format!("{}: {what}", self.source));
    }

    /// An empty or overlong name.
    fn check_name(&mut self, name: &str, span: Span, what: &str) {
        if name.trim().is_empty() {
            self.at(span, format!("{what} is empty"));
        } else if name.chars().count() > MAX_NAME {
            self.at(span, format!("{what} is longer than {MAX_NAME} characters"));
        }
    }
}

/// Parses and validates a tenant file. `source` names it in messages (usually its path). The
/// checks run section by section and every problem is kept, so one answer lists them all.
pub fn parse(source: &str, text: &str) -> Result<TenantSpec, LoadError> {
    let raw: RawFile = toml::from_str(text).map_err(|e| {
        let at = e.span().map(|s| format!(":{}", line_of(text, s.start))).unwrap_or_default();
        LoadError { problems: vec![format!("{source}{at}: {}", e.message())] }
    })?;
    let mut p = Problems { source, text, list: Vec::new() };
    check_tenant(&raw, &mut p);
    let (kinds, seen) = check_institutions(&raw.institutions, &mut p);
    check_parents(&raw.institutions, &kinds, &seen, &mut p);
    let users = check_users(&raw.users, &kinds, &mut p);
    let chart = chart_of(&raw.chart_of_accounts, &mut p);
    check_settings(&raw, &mut p);
    let drug_codes = check_formulary(&raw.formulary, &mut p);
    check_fee_schedule(&raw.fee_schedule, &mut p);
    check_stock_lists(&raw.institutions, &drug_codes, &mut p);
    if !p.list.is_empty() {
        return Err(LoadError { problems: p.list });
    }
    Ok(spec_of(raw, &kinds, users, chart))
}

/// The tenant's code and name, and the settings sections other contexts read.
fn check_tenant(raw: &RawFile, p: &mut Problems) {
    let code = &raw.tenant.code;
    if let Err(e) = check_code(code.get_ref()) {
        p.at(code.span(), format!("tenant: {e}"));
    } else if !code.get_ref().chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') {
        p.at(code.span(), "tenant: a tenant code is a-z, 0-9 and '-' only".into());
    }
    if let Err(e) = Reimbursement::from_settings(&serde_json::to_value(&raw.settings).unwrap_or_default()) {
        p.at(code.span(), e);
    }
    if let Some(m) = raw.settings.get("matching") {
        let json = serde_json::to_value(m).unwrap_or_default();
        if let Err(e) = serde_json::from_value::<crate::patients::matching::MatchWeights>(json) {
            p.at(code.span(), format!("[settings.matching]: {e}"));
        }
    }
    p.check_name(&raw.tenant.name, code.span(), "tenant: name");
}

/// Institutions: unique codes, known kinds, valid divisions, departments. Returns the kind of
/// each institution whose kind is known, and every code seen.
fn check_institutions(
    list: &[RawInstitution],
    p: &mut Problems,
) -> (HashMap<String, InstitutionKind>, HashSet<String>) {
    let mut kinds: HashMap<String, InstitutionKind> = HashMap::new();
    let mut seen: HashSet<String> = HashSet::new();
    for (i, inst) in list.iter().enumerate() {
        let code = inst.code.get_ref().as_str();
        let at = format!("institutions[{i}] `{code}`");
        if let Err(e) = check_code(code) {
            p.at(inst.code.span(), format!("{at}: {e}"));
        }
        if !seen.insert(code.to_string()) {
            p.at(inst.code.span(), format!("{at}: duplicate institution code `{code}`"));
        }
        p.check_name(&inst.name, inst.code.span(), &format!("{at}: name"));
        match InstitutionKind::parse(inst.kind.get_ref()) {
            Some(k) => {
                kinds.insert(code.to_string(), k);
            }
            None => {
                let expected = InstitutionKind::ALL.map(|k| k.as_str()).join(", ");
                p.at(
                    inst.kind.span(),
                    format!("{at}: unknown kind `{}` (expected one of {expected})", inst.kind.get_ref()),
                )
            }
        }
        if let Err(e) = DivisionCode::parse(inst.division.get_ref()) {
            p.at(inst.division.span(), format!("{at}: {e}"));
        }
        check_departments(&inst.departments, &at, p);
    }
    if !list.iter().any(|i| i.kind.get_ref() == InstitutionKind::CountyHospital.as_str()) {
        p.whole("the community needs a county_hospital (lead hospital)");
    }
    (kinds, seen)
}

fn check_departments(list: &[RawDepartment], at: &str, p: &mut Problems) {
    let mut codes = HashSet::new();
    for (j, d) in list.iter().enumerate() {
        let dat = format!("{at} departments[{j}] `{}`", d.code.get_ref());
        if let Err(e) = check_code(d.code.get_ref()) {
            p.at(d.code.span(), format!("{dat}: {e}"));
        }
        if !codes.insert(d.code.get_ref()) {
            p.at(d.code.span(), format!("{dat}: duplicate department code"));
        }
        p.check_name(&d.name, d.code.span(), &format!("{dat}: name"));
    }
}

/// Each parent exists and is of a kind this institution may hang under.
fn check_parents(
    list: &[RawInstitution],
    kinds: &HashMap<String, InstitutionKind>,
    seen: &HashSet<String>,
    p: &mut Problems,
) {
    for (i, inst) in list.iter().enumerate() {
        let code = inst.code.get_ref().as_str();
        let at = format!("institutions[{i}] `{code}`");
        let Some(kind) = kinds.get(code).copied() else { continue };
        let parent_kind = match &inst.parent {
            None => None,
            Some(parent) => match kinds.get(parent.get_ref().as_str()) {
                Some(k) => Some(*k),
                None => {
                    if !seen.contains(parent.get_ref().as_str()) {
                        p.at(parent.span(), format!("{at}: unknown parent `{}`", parent.get_ref()));
                    }
                    continue;
                }
            },
        };
        if !kind.allowed_parents().contains(&parent_kind) {
            let span = inst.parent.as_ref().map(|s| s.span()).unwrap_or(inst.kind.span());
            let expected: Vec<&str> =
                kind.allowed_parents().iter().map(|k| k.map(|k| k.as_str()).unwrap_or("no parent")).collect();
            let found = parent_kind.map(|k| format!("a {k}")).unwrap_or("no parent".into());
            p.at(span, format!("{at}: a {kind} cannot have {found} as parent (expected {})", expected.join(" or ")));
        }
    }
}

/// Users: unique usernames, one credential, roles that exist where they are bound.
fn check_users(list: &[RawUser], kinds: &HashMap<String, InstitutionKind>, p: &mut Problems) -> Vec<UserSpec> {
    let mut usernames = HashSet::new();
    let mut users = Vec::new();
    for (i, u) in list.iter().enumerate() {
        let name = u.username.get_ref();
        let at = format!("users[{i}] `{name}`");
        if let Err(e) = check_username(name) {
            p.at(u.username.span(), format!("{at}: {e}"));
        }
        if !usernames.insert(name.as_str()) {
            p.at(u.username.span(), format!("{at}: duplicate username"));
        }
        p.check_name(&u.display_name, u.username.span(), &format!("{at}: display_name"));
        let credential = credential_of(u, &at, p);
        if u.roles.is_empty() {
            p.at(u.username.span(), format!("{at}: needs at least one role"));
        }
        let roles = roles_of(&u.roles, kinds, &at, p);
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
    users
}

/// Exactly one of a strong plain password or an argon2id hash.
fn credential_of(u: &RawUser, at: &str, p: &mut Problems) -> Option<Credential> {
    match (&u.password, &u.password_hash) {
        (Some(pw), None) => {
            if let Err(e) = check_password_strength(pw.get_ref(), u.username.get_ref()) {
                p.at(pw.span(), format!("{at}: password: {e}"));
            }
            Some(Credential::Plain(pw.get_ref().clone()))
        }
        (None, Some(h)) => {
            if !h.get_ref().starts_with("$argon2id$") {
                p.at(h.span(), format!("{at}: password_hash must be an argon2id PHC string"));
            }
            Some(Credential::Hash(h.get_ref().clone()))
        }
        _ => {
            p.at(u.username.span(), format!("{at}: give exactly one of `password` or `password_hash`"));
            None
        }
    }
}

/// Roles that exist, at institutions that exist and may hold them.
fn roles_of(list: &[RawRole], kinds: &HashMap<String, InstitutionKind>, at: &str, p: &mut Problems) -> Vec<RoleAt> {
    let mut roles = Vec::new();
    for r in list {
        let Some(role) = Role::parse(r.role.get_ref()) else {
            let expected = Role::ALL.map(|r| r.as_str()).join(", ");
            p.at(r.role.span(), format!("{at}: unknown role `{}` (expected one of {expected})", r.role.get_ref()));
            continue;
        };
        match kinds.get(r.institution.get_ref().as_str()) {
            None => p.at(r.institution.span(), format!("{at}: unknown institution `{}`", r.institution.get_ref())),
            Some(kind) if !role.allowed_in(*kind) => {
                p.at(r.role.span(), format!("{at}: role `{}` cannot be held at a {kind}", role.as_str()))
            }
            Some(_) => roles.push(RoleAt { institution: r.institution.get_ref().clone(), role }),
        }
    }
    roles
}

/// The settings the follow-up and accounts contexts read, in their plausible ranges.
fn check_settings(raw: &RawFile, p: &mut Problems) {
    let span = raw.tenant.code.span();
    if let Some(days) = raw.settings.get("followups").and_then(|f| f.get("interval_days"))
        && !days.as_integer().is_some_and(|d| (7..=366).contains(&d))
    {
        p.at(span.clone(), "[settings.followups]: interval_days is a whole number of days from 7 to 366".into());
    }
    if let Some(share) = raw.settings.get("accounts").and_then(|a| a.get("referral_fee_share"))
        && !share.as_float().or(share.as_integer().map(|i| i as f64)).is_some_and(|v| (0.0..=1.0).contains(&v))
    {
        p.at(span, "[settings.accounts]: referral_fee_share is a fraction from 0 to 1".into());
    }
}

/// The community formulary; returns the drug codes it defines.
fn check_formulary(list: &[RawDrug], p: &mut Problems) -> HashSet<String> {
    let mut codes = HashSet::new();
    for (i, d) in list.iter().enumerate() {
        let at = format!("formulary[{i}] `{}`", d.code.get_ref());
        if let Err(e) = check_code(d.code.get_ref()) {
            p.at(d.code.span(), format!("{at}: {e}"));
        }
        if !codes.insert(d.code.get_ref().clone()) {
            p.at(d.code.span(), format!("{at}: duplicate drug code"));
        }
        p.check_name(&d.name, d.code.span(), &format!("{at}: name"));
        if *d.price_fen.get_ref() <= 0 {
            p.at(d.price_fen.span(), format!("{at}: price_fen must be a positive number of fen"));
        }
        if InsuranceCategory::parse(d.insurance.get_ref()).is_none() {
            p.at(d.insurance.span(), format!("{at}: insurance must be A (甲), B (乙) or C (丙)"));
        }
    }
    codes
}

fn check_fee_schedule(list: &[RawFee], p: &mut Problems) {
    let mut codes = HashSet::new();
    for (i, f) in list.iter().enumerate() {
        let at = format!("fee_schedule[{i}] `{}`", f.code.get_ref());
        if let Err(e) = check_code(f.code.get_ref()) {
            p.at(f.code.span(), format!("{at}: {e}"));
        }
        if !codes.insert(f.code.get_ref().clone()) {
            p.at(f.code.span(), format!("{at}: duplicate fee code"));
        }
        p.check_name(&f.name, f.code.span(), &format!("{at}: name"));
        if *f.price_fen.get_ref() < 0 {
            p.at(f.price_fen.span(), format!("{at}: price_fen must not be negative"));
        }
        if !FEE_CATEGORIES.contains(&f.category.get_ref().as_str()) {
            p.at(f.category.span(), format!("{at}: category must be one of {}", FEE_CATEGORIES.join(", ")));
        }
        if InsuranceCategory::parse(f.insurance.get_ref()).is_none() {
            p.at(f.insurance.span(), format!("{at}: insurance must be A (甲), B (乙) or C (丙)"));
        }
    }
}

/// Each institution's stock list names drugs of the community formulary.
fn check_stock_lists(list: &[RawInstitution], drug_codes: &HashSet<String>, p: &mut Problems) {
    for (i, inst) in list.iter().enumerate() {
        let Some(stocked) = &inst.formulary else { continue };
        for code in stocked.get_ref().iter().filter(|c| !drug_codes.contains(*c)) {
            p.at(
                stocked.span(),
                format!("institutions[{i}] `{}`: formulary names unknown drug `{code}`", inst.code.get_ref()),
            );
        }
    }
}

/// The validated file as a spec, institutions parents first: county hospital and bureau, then
/// townships, then villages.
fn spec_of(
    raw: RawFile,
    kinds: &HashMap<String, InstitutionKind>,
    users: Vec<UserSpec>,
    chart: crate::accounts::domain::Chart,
) -> TenantSpec {
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
    TenantSpec {
        code: raw.tenant.code.into_inner(),
        name: raw.tenant.name,
        name_en: raw.tenant.name_en,
        settings: serde_json::to_value(&raw.settings).unwrap_or(serde_json::Value::Null),
        institutions,
        users,
        formulary: raw.formulary.into_iter().map(drug_of).collect(),
        chart,
        fee_schedule: raw.fee_schedule.into_iter().map(fee_of).collect(),
    }
}

fn drug_of(d: RawDrug) -> DrugSpec {
    DrugSpec {
        insurance: InsuranceCategory::parse(d.insurance.get_ref()).expect("validated"),
        code: d.code.into_inner(),
        name: d.name,
        name_en: d.name_en,
        form: d.form,
        strength: d.strength,
        unit: d.unit,
        price_fen: d.price_fen.into_inner(),
        allergen_class: d.allergen_class,
    }
}

fn fee_of(f: RawFee) -> FeeSpec {
    FeeSpec {
        insurance: InsuranceCategory::parse(f.insurance.get_ref()).expect("validated"),
        code: f.code.into_inner(),
        name: f.name,
        name_en: f.name_en,
        category: f.category.into_inner(),
        price_fen: f.price_fen.into_inner(),
    }
}

/// The chart of a file: each account checked, every posting role held exactly once.
fn chart_of(raw: &[RawAccount], p: &mut Problems) -> crate::accounts::domain::Chart {
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
            p.at(a.code.span(), format!("{at}: an account code is 1-20 letters, digits, '.' or '-'"));
        }
        p.check_name(&a.name, a.code.span(), &format!("{at}: name"));
        let kind = Kind::parse(a.kind.get_ref());
        if kind.is_none() {
            p.at(a.kind.span(), format!("{at}: kind must be asset, liability, equity, revenue or expense"));
        }
        let role = a.role.as_ref().map(|r| (Role::parse(r.get_ref()), r));
        if let Some((None, r)) = &role {
            let all: Vec<&str> = Role::ALL.iter().map(|r| r.as_str()).collect();
            p.at(r.span(), format!("{at}: role must be one of {}", all.join(", ")));
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
        p.at(raw[0].code.span(), format!("chart_of_accounts: {e}"));
    }
    chart
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
        assert_eq!(spec.users[0].roles, vec![RoleAt { institution: "town".into(), role: Role::TownshipDoctor }]);
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
