//! The village doctor's clinic pages: today's patients, find or register a patient (with the
//! MPI's match candidates to confirm), and the outpatient visit form (vitals, ICD-10 diagnosis,
//! a prescription from the clinic's stock, the charge and the payment, closing, and an
//! up-referral). Patient identifiers travel only in POST bodies, never in URLs.

use std::collections::HashMap;

use askama::Template;
use chrono::Utc;
use poem::http::StatusCode;
use poem::web::{Data, Form, Json, Path, Query};
use poem::{IntoResponse, Request, Response, handler};
use serde::Deserialize;
use uuid::Uuid;

use super::form::{Refused, form_field_of, invalid, num, required};
use super::{Locale, Page, error_page, refusal_message, render, see_other, signed_in};
use crate::clinical::domain::{EncounterKind, EncounterStatus, Vitals};
use crate::clinical::icd10;
use crate::patients::domain::{Demographics, RawDemographics};
use crate::patients::service::{self as patients, PersonView, RegisterInput, SearchInput};
use crate::pharmacy::domain::{Frequency, LineRequest};
use crate::platform::AppError;
use crate::platform::audit::Purpose;
use crate::platform::clock::{china, china_date, china_day};
use crate::platform::codes;
use crate::platform::state::AppState;

/// A page handler's body: a response, or an error page going back to `back`.
pub(super) type Out = Result<Response, (AppError, String)>;

pub(super) fn finish(l: Locale, out: Out) -> Response {
    out.unwrap_or_else(|(e, back)| error_page(l, &e, &back))
}

pub struct PersonRow {
    pub id: Uuid,
    pub name: String,
    pub sex: String,
    /// `male`, `female` or empty: what the register-here form sends.
    pub sex_code: String,
    pub born: String,
    pub resident_id: String,
    pub registered_here: bool,
    pub note: String,
}

fn person_row(l: Locale, p: &PersonView, note: String) -> PersonRow {
    PersonRow {
        id: p.id,
        name: p.name.clone(),
        sex: p.sex.as_deref().map(|s| l.t(&format!("sex-{s}"))).unwrap_or_default(),
        sex_code: p.sex.clone().unwrap_or_default(),
        born: p.birth_date.map(|d| d.to_string()).or_else(|| p.birth_year.map(|y| y.to_string())).unwrap_or_default(),
        // Masked for roles that may not see it (the service decides).
        resident_id: p.resident_id.clone().unwrap_or_default(),
        registered_here: p.registered_here,
        note,
    }
}

pub struct VisitRow {
    pub id: Uuid,
    pub time: String,
    pub patient: String,
    pub status: String,
    pub open: bool,
}

/// What the register form was filled with, to show again (candidates, errors).
#[derive(Deserialize, Default, Clone)]
pub struct RegisterForm {
    #[serde(default)]
    csrf: String,
    name: String,
    sex: Option<String>,
    birth_date: Option<String>,
    resident_id: Option<String>,
    phone: Option<String>,
    link_to: Option<Uuid>,
    create_new_reason: Option<String>,
}

#[derive(Template)]
#[template(path = "clinic.html", config = "src/web/askama.toml")]
struct ClinicPage {
    l: Locale,
    p: Page,
    today: Vec<VisitRow>,
    found: Option<Vec<PersonRow>>,
    candidates: Vec<PersonRow>,
    form: RegisterForm,
    message: Option<String>,
    /// The registration field a refusal is about (`name`, `sex`, `birth_date`, `resident_id`,
    /// `phone`), marked invalid and described by the message; empty otherwise.
    bad: &'static str,
}

/// Names of persons for a list, the reads audited (treatment) like every other read of them.
async fn names(state: &AppState, p: &Page, ids: &[Uuid]) -> Result<HashMap<Uuid, String>, AppError> {
    let mut tx = state.db.begin(&p.ctx).await?;
    let names = patients::names_of(&tx, ids).await?;
    p.ctx.audit_reads(&mut tx, "patient.list", Purpose::Treatment, names.keys().copied());
    tx.commit().await?;
    Ok(names)
}

async fn today(state: &AppState, p: &Page) -> Result<Vec<VisitRow>, AppError> {
    let (midnight, _) = china_day(china_date(Utc::now()));
    let encounters = crate::clinical::service::list(state, &p.ctx, None, Some(midnight), 200).await?;
    let ids: Vec<Uuid> = encounters.iter().map(|e| e.person_id).collect();
    let names = names(state, p, &ids).await?;
    Ok(encounters
        .iter()
        .map(|e| VisitRow {
            id: e.id,
            time: china(e.opened_at).format("%H:%M").to_string(),
            patient: names.get(&e.person_id).cloned().unwrap_or_default(),
            status: p.l.t(&format!("visit-{}", e.status)),
            open: e.status == EncounterStatus::Open,
        })
        .collect())
}

async fn clinic_page(
    state: &AppState,
    p: Page,
    found: Option<Vec<PersonRow>>,
    candidates: Vec<PersonRow>,
    form: RegisterForm,
    // The message, and the registration field it is about ("" for none).
    message: Option<(String, &'static str)>,
    status: StatusCode,
) -> Out {
    let today = today(state, &p).await.map_err(|e| (e, "/app/".into()))?;
    let (message, bad) = match message {
        Some((m, bad)) => (Some(m), bad),
        None => (None, ""),
    };
    Ok(render(status, &ClinicPage { l: p.l, p, today, found, candidates, form, message, bad }))
}

#[handler]
pub async fn clinic(req: &Request, state: Data<&AppState>) -> Response {
    let p = signed_in!(req, &state);
    let l = p.l;
    finish(l, clinic_page(&state, p, None, vec![], RegisterForm::default(), None, StatusCode::OK).await)
}

#[derive(Deserialize)]
pub struct SearchForm {
    #[serde(default)]
    csrf: String,
    name: Option<String>,
    resident_id: Option<String>,
    phone: Option<String>,
}

/// Search by name, resident ID or phone: a POST, so identifiers stay out of URLs and logs.
#[handler]
pub async fn search(req: &Request, state: Data<&AppState>, form: Form<SearchForm>) -> Response {
    let p = signed_in!(req, &state);
    let l = p.l;
    let f = form.0;
    let out = async {
        p.check_csrf(&f.csrf).map_err(|e| (e, "/app/clinic".to_string()))?;
        let blank = |s: &Option<String>| s.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned);
        let q = SearchInput {
            name: blank(&f.name),
            resident_id: blank(&f.resident_id),
            phone: blank(&f.phone),
            birth_date: None,
            page: 1,
            page_size: 20,
        };
        if q.name.is_none() && q.resident_id.is_none() && q.phone.is_none() {
            let msg = l.t("clinic-search-empty");
            return clinic_page(
                &state,
                p,
                None,
                vec![],
                RegisterForm::default(),
                Some((msg, "")),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await;
        }
        let (found, _) = patients::search(&state, &p.ctx, q).await.map_err(|e| (e, "/app/clinic".to_string()))?;
        let rows = found.iter().map(|x| person_row(l, x, String::new())).collect();
        clinic_page(&state, p, Some(rows), vec![], RegisterForm::default(), None, StatusCode::OK).await
    }
    .await;
    finish(l, out)
}

/// Register (or link) a patient here. Probable matches come back as candidates to confirm: link
/// to one, or create a new person with a reason.
#[handler]
pub async fn register(req: &Request, state: Data<&AppState>, form: Form<RegisterForm>) -> Response {
    let p = signed_in!(req, &state);
    let l = p.l;
    let f = form.0;
    let out = async {
        p.check_csrf(&f.csrf).map_err(|e| (e, "/app/clinic".to_string()))?;
        let raw = RawDemographics {
            name: f.name.clone(),
            sex: f.sex.clone().filter(|s| !s.is_empty()),
            birth_date: f.birth_date.clone().filter(|s| !s.trim().is_empty()),
            resident_id: f.resident_id.clone().filter(|s| !s.trim().is_empty()),
            phone: f.phone.clone().filter(|s| !s.trim().is_empty()),
            insurance_no: None,
            address_division: None,
        };
        let demographics = match Demographics::parse_complete(&raw) {
            Ok(d) => d,
            Err(e) => {
                let msg = l.t_with("clinic-register-invalid", &[("field", field_of(l, &e))]);
                let bad = field_name(&e);
                return clinic_page(&state, p, None, vec![], f, Some((msg, bad)), StatusCode::UNPROCESSABLE_ENTITY)
                    .await;
            }
        };
        let input = RegisterInput {
            demographics,
            link_to: f.link_to,
            create_new_reason: f.create_new_reason.clone().map(|r| r.trim().to_string()).filter(|r| !r.is_empty()),
        };
        match patients::register(&state, &p.ctx, input).await {
            Ok(outcome) => {
                // No patient data in the URL: only whether the typed name was the one on file.
                let linked = match (outcome.matched, outcome.person.name == f.name.trim()) {
                    (false, _) => "",
                    (true, true) => "?linked=same",
                    (true, false) => "?linked=other_name",
                };
                Ok(see_other(&format!("/app/clinic/patients/{}{linked}", outcome.person.id)))
            }
            Err(e) if e.is(codes::PROBABLE_MATCH) => {
                let candidates = e
                    .details()
                    .and_then(|d| d["candidates"].as_array())
                    .map(|list| list.iter().filter_map(|c| candidate(l, c)).collect())
                    .unwrap_or_default();
                let msg = l.t("clinic-candidates-intro");
                clinic_page(&state, p, None, candidates, f, Some((msg, "")), StatusCode::CONFLICT).await
            }
            Err(e) => Err((e, "/app/clinic".to_string())),
        }
    }
    .await;
    finish(l, out)
}

/// The registration form's field a demographics error is about.
fn field_name(e: &AppError) -> &'static str {
    match e.code_of() {
        codes::NAME_INVALID => "name",
        codes::RESIDENT_ID_INVALID => "resident_id",
        codes::PHONE_INVALID => "phone",
        codes::BIRTH_DATE_INVALID | codes::BIRTH_DATE_REQUIRED => "birth_date",
        codes::SEX_INVALID | codes::SEX_REQUIRED => "sex",
        _ => "",
    }
}

/// The label of the field a demographics error is about, in the reader's language.
fn field_of(l: Locale, e: &AppError) -> String {
    let key = match field_name(e) {
        "name" => "patient-name",
        "resident_id" => "patient-resident-id",
        "phone" => "patient-phone",
        "birth_date" => "patient-birth",
        "sex" => "patient-sex",
        _ => "error-invalid",
    };
    l.t(key)
}

fn candidate(l: Locale, c: &serde_json::Value) -> Option<PersonRow> {
    let person = &c["person"];
    let s = |k: &str| person[k].as_str().unwrap_or_default().to_string();
    Some(PersonRow {
        id: person["id"].as_str()?.parse().ok()?,
        name: s("name"),
        sex: person["sex"].as_str().map(|x| l.t(&format!("sex-{x}"))).unwrap_or_default(),
        sex_code: s("sex"),
        born: person["birth_date"]
            .as_str()
            .map(str::to_owned)
            .or_else(|| person["birth_year"].as_i64().map(|y| y.to_string()))
            .unwrap_or_default(),
        resident_id: s("resident_id"),
        registered_here: person["registered_here"].as_bool().unwrap_or(false),
        note: l.t_with("clinic-score", &[("score", format!("{:.0}", c["score"].as_f64().unwrap_or(0.0)))]),
    })
}

#[derive(Template)]
#[template(path = "patient.html", config = "src/web/askama.toml")]
struct PatientPage {
    l: Locale,
    p: Page,
    person: PersonRow,
    /// Some identifier is masked for this reader: offer to reveal one with a purpose.
    masked: bool,
    visits: Vec<VisitRow>,
    reveal: RevealForm,
    /// What a reveal showed: the field's label and its value.
    revealed: Option<(String, String)>,
    reveal_message: Option<String>,
    /// The form field the refusal names (`field`, `purpose` or `reason`), marked invalid.
    reveal_bad: &'static str,
    /// Said once after a registration linked to an existing person.
    notice: Option<String>,
    fields: Vec<(&'static str, String)>,
    purposes: Vec<(&'static str, String)>,
    /// The person's follow-up registries here, and the form to enrol them (as typed if refused).
    enrollments: Vec<super::followups::EnrolledRow>,
    can_enroll: bool,
    enroll: Refused,
    today: String,
}

/// The patient page's forms as typed: the reveal form, and the enrolment form when refused.
#[derive(Default)]
pub struct PatientForms {
    pub reveal: RevealForm,
    pub enroll: Refused,
}

impl From<RevealForm> for PatientForms {
    fn from(reveal: RevealForm) -> Self {
        Self { reveal, enroll: Refused::default() }
    }
}

/// The reveal form, as typed (shown again when refused).
#[derive(Deserialize, Default, Clone)]
pub struct RevealForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    pub field: String,
    #[serde(default)]
    pub purpose: String,
    #[serde(default)]
    pub reason: String,
}

/// One patient: who, and their visits here; start a visit.
#[handler]
pub async fn patient(req: &Request, state: Data<&AppState>, id: Path<String>, q: Query<PatientQuery>) -> Response {
    let p = signed_in!(req, &state);
    let l = p.l;
    // A registration that joined someone already in the community says so, louder when the
    // name typed was not the name on file (a homophone, a typo, or another person).
    let notice = match q.0.linked.as_deref() {
        Some("same") => Some(l.t("clinic-linked")),
        Some("other_name") => Some(l.t("clinic-linked-other-name")),
        _ => None,
    };
    let out = match Uuid::parse_str(&id.0) {
        Ok(id) => patient_page(&state, p, id, PatientForms::default(), None, None, notice).await,
        Err(_) => Err((not_found(), "/app/clinic".to_string())),
    };
    finish(l, out)
}

#[derive(Deserialize)]
pub struct PatientQuery {
    linked: Option<String>,
}

/// Reveals one masked identifier for a purpose and a reason, and shows the page with it. A
/// refused form comes back as typed, the problem named.
#[handler]
pub async fn reveal_identifier(
    req: &Request,
    state: Data<&AppState>,
    id: Path<String>,
    form: Form<RevealForm>,
) -> Response {
    use crate::patients::domain::{IdentifierField, RevealPurpose};
    let p = signed_in!(req, &state);
    let l = p.l;
    let f = form.0;
    let out = async {
        let id = Uuid::parse_str(&id.0).map_err(|_| (not_found(), "/app/clinic".to_string()))?;
        p.check_csrf(&f.csrf).map_err(|e| (e, format!("/app/clinic/patients/{id}")))?;
        let (Some(field), Some(purpose)) = (IdentifierField::parse(&f.field), RevealPurpose::parse(&f.purpose)) else {
            let bad = if IdentifierField::parse(&f.field).is_none() { "field" } else { "purpose" };
            return patient_page(&state, p, id, f.into(), None, Some((bad, l.t("reveal-choose"))), None).await;
        };
        match patients::reveal(&state, &p.ctx, id, field, purpose, &f.reason).await {
            Ok(r) => {
                let shown = (l.t(&format!("reveal-field-{field}")), r.value.unwrap_or_else(|| l.t("reveal-none")));
                patient_page(&state, p, id, PatientForms::default(), Some(shown), None, None).await
            }
            Err(e) if e.is(codes::REASON_REQUIRED) => {
                patient_page(&state, p, id, f.into(), None, Some(("reason", l.t("reveal-reason-required"))), None).await
            }
            Err(e) if e.is(codes::REVEAL_LIMIT_REACHED) => {
                patient_page(&state, p, id, f.into(), None, Some(("", l.t("reveal-limit"))), None).await
            }
            Err(e) => Err((e, format!("/app/clinic/patients/{id}"))),
        }
    }
    .await;
    finish(l, out)
}

pub(super) async fn patient_page(
    state: &AppState,
    p: Page,
    id: Uuid,
    forms: PatientForms,
    revealed: Option<(String, String)>,
    refused: Option<(&'static str, String)>,
    notice: Option<String>,
) -> Out {
    let l = p.l;
    let back = || "/app/clinic".to_string();
    let person = patients::get(state, &p.ctx, id).await.map_err(|e| (e, back()))?;
    // The registration desk (a cashier) sees the person, not the visits.
    let encounters = if p.ctx.can(crate::identity::ctx::Perm::EncounterRead) {
        crate::clinical::service::list(state, &p.ctx, Some(id), None, 20).await.map_err(|e| (e, back()))?
    } else {
        Vec::new()
    };
    let visits = encounters
        .iter()
        .map(|e| VisitRow {
            id: e.id,
            time: china(e.opened_at).format("%Y-%m-%d %H:%M").to_string(),
            patient: person.name.clone(),
            status: l.t(&format!("visit-{}", e.status)),
            open: e.status == EncounterStatus::Open,
        })
        .collect();
    let masked = [&person.resident_id, &person.phone, &person.insurance_no]
        .iter()
        .any(|v| v.as_deref().is_some_and(|v| v.contains('*')));
    let enrollments = super::followups::enrolled(state, &p, id).await.map_err(|e| (e, back()))?;
    let refused_any = refused.is_some() || forms.enroll.here("enroll");
    let status = if refused_any { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
    let (reveal_bad, reveal_message) = refused.map_or(("", None), |(field, m)| (field, Some(m)));
    let fields = crate::patients::domain::IdentifierField::ALL
        .iter()
        .map(|f| (f.as_str(), l.t(&format!("reveal-field-{f}"))))
        .collect();
    let purposes = crate::patients::domain::RevealPurpose::ALL
        .iter()
        .map(|f| (f.as_str(), l.t(&format!("reveal-purpose-{f}"))))
        .collect();
    let page = PatientPage {
        l,
        person: person_row(l, &person, String::new()),
        masked,
        visits,
        reveal: forms.reveal,
        revealed,
        reveal_message,
        reveal_bad,
        notice,
        fields,
        purposes,
        enrollments,
        can_enroll: p.ctx.can(crate::identity::ctx::Perm::FollowupWrite),
        enroll: forms.enroll,
        today: crate::followups::service::today(state).to_string(),
        p,
    };
    Ok(render(status, &page))
}

fn not_found() -> AppError {
    AppError::new(codes::PAGE_NOT_FOUND, "no such page")
}

#[derive(Deserialize)]
pub struct StartForm {
    #[serde(default)]
    csrf: String,
    person_id: Uuid,
    chief_complaint: Option<String>,
}

#[handler]
pub async fn start_visit(req: &Request, state: Data<&AppState>, form: Form<StartForm>) -> Response {
    let p = signed_in!(req, &state);
    let l = p.l;
    let f = form.0;
    let back = format!("/app/clinic/patients/{}", f.person_id);
    let out = async {
        p.check_csrf(&f.csrf).map_err(|e| (e, back.clone()))?;
        let input = crate::clinical::service::OpenInput {
            person_id: f.person_id,
            department_id: None,
            kind: EncounterKind::Outpatient,
            chief_complaint: f.chief_complaint.map(|c| c.trim().to_string()).filter(|c| !c.is_empty()),
        };
        let enc = crate::clinical::service::open(&state, &p.ctx, input).await.map_err(|e| (e, back.clone()))?;
        Ok(see_other(&format!("/app/visits/{}", enc.id)))
    }
    .await;
    finish(l, out)
}

pub struct Choice {
    pub value: String,
    pub label: String,
}

#[derive(Template)]
#[template(path = "visit.html", config = "src/web/askama.toml")]
struct VisitPage {
    l: Locale,
    p: Page,
    id: Uuid,
    patient: String,
    person_id: Uuid,
    open: bool,
    status: String,
    complaint: String,
    vitals: Vec<String>,
    diagnoses: Vec<String>,
    prescriptions: Vec<String>,
    drugs: Vec<DrugOption>,
    frequencies: Vec<FrequencyOption>,
    fees: Vec<Choice>,
    bill: Option<BillBox>,
    upper: Vec<Choice>,
    /// Registries the visit's diagnoses suggest and the patient is not in here: (disease, button).
    suggest: Vec<(String, String)>,
    today: String,
    /// The form refused, shown again with what was typed and the field at fault.
    refused: Refused,
}

pub struct BillBox {
    pub id: Uuid,
    pub total: String,
    pub self_pay: String,
    pub paid: String,
    pub owed: String,
    pub owed_fen: i64,
    pub paid_any: bool,
    pub lines: Vec<String>,
}

pub(super) fn yuan(fen: i64) -> String {
    let sign = if fen < 0 { "-" } else { "" };
    format!("{sign}{}.{:02}", fen.unsigned_abs() / 100, fen.unsigned_abs() % 100)
}

#[handler]
pub async fn visit(req: &Request, state: Data<&AppState>, id: Path<String>) -> Response {
    let p = signed_in!(req, &state);
    let l = p.l;
    let out = match Uuid::parse_str(&id.0) {
        Ok(id) => visit_page(&state, p, id, Refused::default(), StatusCode::OK).await,
        Err(_) => Err((not_found(), "/app/clinic".to_string())),
    };
    finish(l, out)
}

/// The visit page; with a refused form, answered with the refusal's status and the form as typed.
async fn visit_page(
    state: &AppState,
    p: Page,
    id: Uuid,
    refused: Refused,
    status: StatusCode,
) -> Result<Response, (AppError, String)> {
    let l = p.l;
    let back = || "/app/clinic".to_string();
    let v = crate::visit::service::encounter(state, &p.ctx, id).await.map_err(|e| (e, back()))?;
    let person = patients::get(state, &p.ctx, v.encounter.person_id).await.map_err(|e| (e, back()))?;
    let formulary = crate::pharmacy::service::formulary(state, &p.ctx, None).await.map_err(|e| (e, back()))?;
    let fees = crate::billing::service::fee_schedule(state, &p.ctx).await.map_err(|e| (e, back()))?;
    let upper = upper_choices(state, &p).await.map_err(|e| (e, back()))?;
    let suggest = suggested_registries(state, &p, &v).await.map_err(|e| (e, back()))?;
    let e = &v.encounter;
    let page = VisitPage {
        id,
        patient: person.name.clone(),
        person_id: person.id,
        open: e.status == EncounterStatus::Open,
        status: l.t(&format!("visit-{}", e.status)),
        complaint: e.chief_complaint.clone().unwrap_or_default(),
        vitals: v.vitals.iter().map(|x| vitals_line(l, x)).collect(),
        diagnoses: v.diagnoses.iter().map(|d| diagnosis_line(l, d)).collect(),
        prescriptions: v.prescriptions.iter().flat_map(|pv| pv.lines.iter()).map(|x| prescribed_line(l, x)).collect(),
        drugs: formulary.iter().filter(|d| d.on_hand > 0).map(|d| drug_choice(l, d)).collect(),
        frequencies: Frequency::ALL
            .iter()
            .map(|f| FrequencyOption {
                value: f.as_str(),
                label: l.t(&format!("freq-{}", f.as_str())),
                per_day: f.per_day().map(|n| n.to_string()).unwrap_or_default(),
            })
            .collect(),
        fees: fees.iter().cloned().map(|f| fee_choice(l, f)).collect(),
        bill: v.bill.as_ref().map(|b| bill_box(b, &english_names(l, &formulary, &fees))),
        upper,
        suggest,
        today: china_date(Utc::now()).to_string(),
        refused,
        l,
        p,
    };
    Ok(render(status, &page))
}

/// A hypertension (I10-I15) or type 2 diabetes (E11) diagnosis on the visit suggests the
/// registry, unless the patient is in it here already or the reader may not enrol.
async fn suggested_registries(
    state: &AppState,
    p: &Page,
    v: &crate::visit::service::EncounterView,
) -> Result<Vec<(String, String)>, AppError> {
    if !p.ctx.can(crate::identity::ctx::Perm::FollowupWrite) {
        return Ok(Vec::new());
    }
    let mut wanted: Vec<&str> = Vec::new();
    for d in &v.diagnoses {
        let code = d.code.to_ascii_uppercase();
        let disease = if ["I10", "I11", "I12", "I13", "I15"].iter().any(|c| code.starts_with(c)) {
            "hypertension"
        } else if code.starts_with("E11") {
            "diabetes"
        } else {
            continue;
        };
        if !wanted.contains(&disease) {
            wanted.push(disease);
        }
    }
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let have = super::followups::enrolled(state, p, v.encounter.person_id).await?;
    Ok(wanted
        .into_iter()
        .filter(|d| !have.iter().any(|e| e.code == *d))
        .map(|d| {
            let name = p.l.t(&format!("disease-{d}"));
            (d.to_string(), p.l.t_with("enroll-suggest", &[("disease", name)]))
        })
        .collect())
}

fn vitals_line(l: Locale, x: &crate::clinical::entity::vital_sign::Model) -> String {
    let mut parts = vec![china(x.recorded_at).format("%H:%M").to_string()];
    if let (Some(s), Some(d)) = (x.systolic, x.diastolic) {
        parts.push(format!("{} {s}/{d} mmHg", l.t("vital-bp")));
    }
    if let Some(pu) = x.pulse {
        parts.push(format!("{} {pu}", l.t("vital-pulse")));
    }
    if let Some(t) = x.temperature {
        parts.push(format!("{} {t} °C", l.t("vital-temperature")));
    }
    if let Some(g) = x.fasting_glucose {
        parts.push(format!("{} {g} mmol/L", l.t("vital-glucose")));
    }
    parts.join(" · ")
}

pub(super) fn diagnosis_line(l: Locale, d: &crate::clinical::entity::diagnosis::Model) -> String {
    let name = icd10::lookup(&d.code).map(|i| if l == Locale::En { i.name_en } else { i.name }).unwrap_or("");
    format!("{} {name}", d.code)
}

fn prescribed_line(l: Locale, x: &crate::pharmacy::service::PrescribedLine) -> String {
    let (line, drug) = (&x.line, &x.drug);
    let name = if l == Locale::En { drug.name_en.clone().unwrap_or(drug.name.clone()) } else { drug.name.clone() };
    let frequency = l.t(&format!("freq-{}", line.frequency));
    format!("{name} {} {} {frequency} × {} {}", line.dose, line.dose_unit, line.days, l.t("days"))
}

/// A drug of the prescribing form, with what the page needs to work out a quantity: its
/// dispensing unit (片, 袋, 支) and its strength per unit in mg, when it has a plain one.
pub struct DrugOption {
    pub value: String,
    pub label: String,
    pub unit: String,
    pub mg: String,
}

/// A frequency of the prescribing form, with its doses a day (empty for once or as needed).
pub struct FrequencyOption {
    pub value: &'static str,
    pub label: String,
    pub per_day: String,
}

fn drug_choice(l: Locale, d: &crate::pharmacy::service::DrugView) -> DrugOption {
    let name =
        if l == Locale::En { d.drug.name_en.clone().unwrap_or(d.drug.name.clone()) } else { d.drug.name.clone() };
    // Tenant files give some strengths in Chinese ("复方", compound); English pages leave those
    // out rather than mix the languages.
    let strength = if l == Locale::En && !d.drug.strength.is_ascii() { "" } else { d.drug.strength.as_str() };
    DrugOption {
        value: d.drug.code.clone(),
        label: format!("{name} {strength} ({} {})", l.t("on-hand"), d.on_hand),
        unit: d.drug.unit.clone(),
        mg: crate::pharmacy::domain::strength_mg(&d.drug.strength).map(|m| m.to_string()).unwrap_or_default(),
    }
}

fn fee_choice(l: Locale, f: crate::billing::entity::fee_item::Model) -> Choice {
    let name = if l == Locale::En { f.name_en.clone().unwrap_or(f.name.clone()) } else { f.name.clone() };
    Choice { label: format!("{name} ¥{}", yuan(f.price_fen)), value: f.code }
}

/// On English pages, the English names of the tenant's drugs and fees by code, for charges that
/// were written with the Chinese name; empty on Chinese pages.
pub(super) fn english_names(
    l: Locale,
    formulary: &[crate::pharmacy::service::DrugView],
    fees: &[crate::billing::entity::fee_item::Model],
) -> HashMap<String, String> {
    if l != Locale::En {
        return HashMap::new();
    }
    let drugs = formulary.iter().filter_map(|d| Some((d.drug.code.clone(), d.drug.name_en.clone()?)));
    drugs.chain(fees.iter().filter_map(|f| Some((f.code.clone(), f.name_en.clone()?)))).collect()
}

/// A charge as the page's language names it.
pub(super) fn charge_label(c: &crate::billing::entity::charge::Model, names: &HashMap<String, String>) -> String {
    names.get(&c.item_code).cloned().unwrap_or_else(|| c.description.clone())
}

fn bill_box(b: &crate::billing::service::BillView, names: &HashMap<String, String>) -> BillBox {
    BillBox {
        id: b.bill.id,
        total: yuan(b.bill.total_fen),
        self_pay: yuan(b.bill.self_pay_fen),
        paid: yuan(b.bill.paid_fen),
        owed: yuan(b.owed_fen()),
        owed_fen: b.owed_fen(),
        paid_any: !b.payments.is_empty(),
        lines: b.charges.iter().map(|c| format!("{} ¥{}", charge_label(c, names), yuan(c.amount_fen))).collect(),
    }
}

/// The institutions a referral up from here may go to.
async fn upper_choices(state: &AppState, p: &Page) -> Result<Vec<Choice>, AppError> {
    let here = p.memberships.iter().find(|m| m.institution.id == p.ctx.institution).map(|m| m.institution.kind);
    let tx = state.db.begin(&p.ctx).await?;
    let all = crate::tenancy::service::list_institutions(&tx).await?;
    tx.rollback().await?;
    Ok(all
        .iter()
        .filter(|i| here.is_some_and(|h| crate::referrals::service::is_upward(h, i.kind)))
        .map(|i| Choice { value: i.id.to_string(), label: p.name_of(i) })
        .collect())
}

/// Every form of the visit page, one handler per step.
#[derive(Deserialize)]
pub struct VisitForm {
    #[serde(default)]
    csrf: String,
    // vitals
    systolic: Option<String>,
    diastolic: Option<String>,
    pulse: Option<String>,
    temperature: Option<String>,
    fasting_glucose: Option<String>,
    // diagnosis
    diagnosis: Option<String>,
    // prescription
    drug_code: Option<String>,
    dose: Option<String>,
    dose_unit: Option<String>,
    frequency: Option<String>,
    days: Option<String>,
    quantity: Option<String>,
    // charge and payment
    fee_code: Option<String>,
    fee_quantity: Option<String>,
    bill_id: Option<String>,
    method: Option<String>,
    amount_yuan: Option<String>,
    // referral
    to_institution_id: Option<String>,
    reason: Option<String>,
    urgent: Option<String>,
}

/// The fields of the visit forms, by name.
const VISIT_FIELDS: [&str; 19] = [
    "systolic",
    "diastolic",
    "pulse",
    "temperature",
    "fasting_glucose",
    "diagnosis",
    "drug_code",
    "dose",
    "dose_unit",
    "frequency",
    "days",
    "quantity",
    "fee_code",
    "fee_quantity",
    "method",
    "amount_yuan",
    "to_institution_id",
    "reason",
    "urgent",
];

impl VisitForm {
    /// Everything typed, by field name, to show a refused form again.
    fn typed(&self) -> HashMap<&'static str, String> {
        let all = [
            &self.systolic,
            &self.diastolic,
            &self.pulse,
            &self.temperature,
            &self.fasting_glucose,
            &self.diagnosis,
            &self.drug_code,
            &self.dose,
            &self.dose_unit,
            &self.frequency,
            &self.days,
            &self.quantity,
            &self.fee_code,
            &self.fee_quantity,
            &self.method,
            &self.amount_yuan,
            &self.to_institution_id,
            &self.reason,
            &self.urgent,
        ];
        VISIT_FIELDS.iter().zip(all).filter_map(|(k, v)| v.clone().map(|v| (*k, v))).collect()
    }
}

/// "J06.9", "J06.9 急性上呼吸道感染" or a name that names one code.
fn icd_code(q: &str) -> Result<String, AppError> {
    let q = q.trim();
    let first = q.split_whitespace().next().unwrap_or_default();
    if let Some(i) = icd10::lookup(first) {
        return Ok(i.code.to_string());
    }
    match icd10::search(q, 2).as_slice() {
        [one] => Ok(one.code.to_string()),
        _ => Err(AppError::new(codes::ICD_CODE_UNKNOWN, "not a code of the ICD-10 catalog")),
    }
}

#[handler]
pub async fn visit_step(
    req: &Request,
    state: Data<&AppState>,
    path: Path<(String, String)>,
    form: Form<VisitForm>,
) -> Response {
    let p = signed_in!(req, &state);
    let l = p.l;
    let (id, step) = path.0;
    let Ok(id) = Uuid::parse_str(&id) else {
        return error_page(l, &not_found(), "/app/clinic");
    };
    let back = format!("/app/visits/{id}");
    let f = form.0;
    let out = async {
        p.check_csrf(&f.csrf)?;
        let ctx = &p.ctx;
        let mut next = back.clone();
        match step.as_str() {
            "vitals" => {
                let v = Vitals {
                    systolic: num("systolic", &f.systolic)?,
                    diastolic: num("diastolic", &f.diastolic)?,
                    pulse: num("pulse", &f.pulse)?,
                    temperature: num("temperature", &f.temperature)?,
                    weight_kg: None,
                    fasting_glucose: num("fasting_glucose", &f.fasting_glucose)?,
                };
                crate::clinical::service::record_vitals(&state, ctx, id, v).await?;
            }
            "diagnosis" => {
                let code = icd_code(f.diagnosis.as_deref().unwrap_or_default())?;
                crate::clinical::service::add_diagnosis(&state, ctx, id, &code, false).await?;
            }
            "prescribe" => {
                let line = prescription_line(&f)?;
                crate::pharmacy::service::prescribe(&state, ctx, id, false, vec![line]).await?;
            }
            "charge" => {
                let mut fees = vec![];
                if let Some(code) = f.fee_code.clone().filter(|c| !c.is_empty()) {
                    let quantity: i64 = num("fee_quantity", &f.fee_quantity)?.unwrap_or(1);
                    fees.push(crate::billing::service::FeeLine { code, quantity });
                }
                crate::billing::service::charge(&state, ctx, id, fees).await?;
            }
            "pay" => {
                let bill: Uuid = required("bill_id", &f.bill_id)?;
                // The bill of this visit, not any bill of the institution.
                let v = crate::visit::service::encounter(&state, ctx, id).await?;
                if v.bill.as_ref().map(|b| b.bill.id) != Some(bill) {
                    return Err(AppError::new(codes::BILL_NOT_FOUND, "no such bill on this visit"));
                }
                let amount: f64 = required("amount_yuan", &f.amount_yuan)?;
                let fen = (amount * 100.0).round() as i64;
                crate::billing::service::pay(&state, ctx, bill, f.method.as_deref().unwrap_or("cash"), fen).await?;
            }
            "close" => {
                crate::clinical::service::close(&state, ctx, id).await?;
            }
            "refer" => {
                let v = crate::visit::service::encounter(&state, ctx, id).await?;
                let r = crate::referrals::service::create(
                    &state,
                    ctx,
                    crate::referrals::service::CreateInput {
                        person_id: v.encounter.person_id,
                        direction: crate::referrals::domain::Direction::Up,
                        to_institution: Some(required("to_institution_id", &f.to_institution_id)?),
                        external_hospital: None,
                        reason: f.reason.clone().unwrap_or_default(),
                        urgent: f.urgent.is_some(),
                        source_encounter: Some(id),
                        submit: true,
                    },
                )
                .await?;
                next = format!("/app/referrals/{}", r.id);
            }
            _ => return Err(not_found()),
        }
        Ok::<_, AppError>(see_other(&next))
    }
    .await;
    match out {
        Ok(r) => r,
        // What the person typed was refused: the same page again, with the form as typed and
        // the field at fault named. A stale form, a missing visit or a failure is an error page.
        Err(e) if super::form::refused_input(&e) => show_refused(&state, p, id, step, &f, &e).await,
        Err(e) => error_page(l, &e, &back),
    }
}

/// The prescription form's line.
fn prescription_line(f: &VisitForm) -> Result<LineRequest, AppError> {
    let frequency = f.frequency.as_deref().and_then(Frequency::parse).ok_or_else(|| invalid("frequency"))?;
    Ok(LineRequest {
        drug_code: f.drug_code.clone().filter(|c| !c.is_empty()).ok_or_else(|| invalid("drug_code"))?,
        dose: required("dose", &f.dose)?,
        dose_unit: f
            .dose_unit
            .clone()
            .map(|u| u.trim().to_string())
            .filter(|u| !u.is_empty())
            .ok_or_else(|| invalid("dose_unit"))?,
        frequency,
        days: required("days", &f.days)?,
        quantity: required("quantity", &f.quantity)?,
    })
}

/// The visit page again, with the refused form as typed and the field at fault named.
async fn show_refused(state: &AppState, p: Page, id: Uuid, step: String, f: &VisitForm, e: &AppError) -> Response {
    let l = p.l;
    let field = form_field_of(e, step_fields(&step));
    let label = field_label(&field).map(|k| format!("{}{}", l.t(k), l.t("colon"))).unwrap_or_default();
    let message = format!("{label}{}", refusal_message(l, e));
    let refused = Refused { step, values: f.typed(), field, message };
    let status = poem::error::ResponseError::status(e);
    visit_page(state, p, id, refused, status).await.unwrap_or_else(|(e, to)| error_page(l, &e, &to))
}

/// The fields of one visit form: a refusal names a field of the form that was sent.
fn step_fields(step: &str) -> &'static [&'static str] {
    match step {
        "vitals" => &VISIT_FIELDS[..5],
        "diagnosis" => &VISIT_FIELDS[5..6],
        "prescribe" => &VISIT_FIELDS[6..12],
        "charge" => &VISIT_FIELDS[12..14],
        "pay" => &VISIT_FIELDS[14..16],
        "refer" => &VISIT_FIELDS[16..19],
        _ => &VISIT_FIELDS,
    }
}

/// The label of a visit form's field.
fn field_label(field: &str) -> Option<&'static str> {
    Some(match field {
        "systolic" => "vital-sbp",
        "diastolic" => "vital-dbp",
        "pulse" => "vital-pulse",
        "temperature" => "vital-temperature",
        "fasting_glucose" => "vital-glucose",
        "diagnosis" => "visit-icd",
        "drug_code" => "rx-drug",
        "dose" => "rx-dose",
        "dose_unit" => "rx-dose-unit",
        "frequency" => "rx-frequency",
        "days" => "rx-days",
        "quantity" | "fee_quantity" => "rx-quantity",
        "fee_code" => "bill-fee",
        "method" => "pay-method",
        "amount_yuan" => "pay-amount",
        "to_institution_id" => "ref-to",
        "reason" => "ref-reason",
        _ => return None,
    })
}

#[derive(Deserialize)]
pub struct IcdQuery {
    q: Option<String>,
}

/// ICD-10 search-as-you-type: code and name in the reader's language, at most 15.
#[handler]
pub async fn icd_search(req: &Request, state: Data<&AppState>, q: Query<IcdQuery>) -> Response {
    let p = signed_in!(req, &state);
    let query = q.0.q.unwrap_or_default();
    let list: Vec<serde_json::Value> = icd10::search(query.trim(), 15)
        .into_iter()
        .map(|i| serde_json::json!({ "code": i.code, "name": if p.l == Locale::En { i.name_en } else { i.name } }))
        .collect();
    Json(list).into_response()
}
