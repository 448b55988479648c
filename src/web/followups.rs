//! The chronic-disease pages: the clinic's follow-up worklist (overdue, due this week, never
//! followed up; flagged patients marked) with its CSV export, and one enrollment with its
//! follow-ups and the form to record the next. A danger value or a second uncontrolled follow-up
//! comes back with the proposed up-referral linked.

use askama::Template;
use chrono::NaiveDate;
use poem::http::StatusCode;
use poem::web::{Data, Form, Path};
use poem::{Request, Response, handler};
use serde::Deserialize;
use uuid::Uuid;

use super::form::{Refused, form_field_of};
use super::form::{invalid, num};
use super::{Locale, Page, error_page, refusal_message, render, see_other, signed_in};
use crate::followups::domain::{Category, Classification, Measures};
use crate::followups::service::{self as followups, VisitInput, WorklistQuery};
use crate::platform::AppError;
use crate::platform::codes;
use crate::platform::state::AppState;

pub struct Item {
    pub id: Uuid,
    pub patient: String,
    pub disease: String,
    pub doctor: String,
    pub category: String,
    pub category_code: &'static str,
    pub next_due: String,
    pub days_overdue: i64,
    pub flag: String,
}

pub struct Count {
    pub code: &'static str,
    pub label: String,
    pub n: usize,
}

#[derive(Template)]
#[template(path = "followups.html", config = "src/web/askama.toml")]
struct WorklistPage {
    l: Locale,
    p: Page,
    as_of: NaiveDate,
    counts: Vec<Count>,
    /// Never followed up, and the first follow-up already late.
    never_late: usize,
    flagged: usize,
    items: Vec<Item>,
    /// Every patient flagged for an up-referral, due or not.
    to_refer: Vec<Item>,
}

fn query(as_of: NaiveDate) -> WorklistQuery {
    WorklistQuery { as_of, doctor: None, disease: None, category: None, limit: 500, offset: 0 }
}

#[handler]
pub async fn worklist(req: &Request, state: Data<&AppState>) -> Response {
    let p = signed_in!(req, &state);
    let l = p.l;
    let as_of = followups::today(&state);
    let list = match followups::worklist(&state, &p.ctx, query(as_of)).await {
        Ok(list) => list,
        Err(e) => return error_page(l, &e, "/app/"),
    };
    let counts = Category::ALL
        .iter()
        .map(|c| Count {
            code: c.as_str(),
            label: l.t(&format!("fu-{}", c.as_str())),
            n: list.counts.get(c).copied().unwrap_or(0),
        })
        .collect();
    let item = |e: &crate::followups::entity::enrollment::Model,
                patient: &str,
                doctor: &str,
                c: Option<Category>,
                late: i64| Item {
        id: e.id,
        patient: patient.to_string(),
        disease: l.t(&format!("disease-{}", e.disease)),
        doctor: doctor.to_string(),
        category: c.map(|c| l.t(&format!("fu-{}", c.as_str()))).unwrap_or_default(),
        category_code: c.map(Category::as_str).unwrap_or(""),
        next_due: e.next_due.to_string(),
        days_overdue: late,
        flag: e.flag.map(|f| l.t(&format!("fu-flag-{f}"))).unwrap_or_default(),
    };
    let items = list
        .items
        .iter()
        .map(|w| item(&w.enrollment, &w.person.name, &w.doctor_name, Some(w.category), w.days_overdue))
        .collect();
    let flagged = followups::ListQuery {
        person: None,
        disease: None,
        doctor: None,
        include_closed: false,
        flagged_only: true,
        limit: 500,
        offset: 0,
    };
    let to_refer = match followups::list(&state, &p.ctx, flagged).await {
        Ok(rows) => rows.iter().map(|r| item(&r.enrollment, &r.person.name, &r.doctor_name, None, 0)).collect(),
        Err(e) => return error_page(l, &e, "/app/"),
    };
    let never_late = list.never_late;
    render(StatusCode::OK, &WorklistPage { l, p, as_of, counts, never_late, flagged: list.flagged, items, to_refer })
}

/// The worklist as CSV for Excel (UTF-8 with a BOM, Chinese headers), as the API gives it.
#[handler]
pub async fn worklist_csv(req: &Request, state: Data<&AppState>) -> Response {
    let p = signed_in!(req, &state);
    let as_of = followups::today(&state);
    match followups::worklist_csv(&state, &p.ctx, query(as_of)).await {
        Ok(bytes) => Response::builder()
            .content_type("text/csv; charset=utf-8")
            .header("content-disposition", format!("attachment; filename=\"worklist-{as_of}.csv\""))
            .body(bytes),
        Err(e) => error_page(p.l, &e, "/app/followups"),
    }
}

pub struct Past {
    pub on: String,
    pub measures: String,
    pub classification: String,
    pub danger: bool,
}

#[derive(Template)]
#[template(path = "enrollment.html", config = "src/web/askama.toml")]
struct EnrollmentPage {
    l: Locale,
    p: Page,
    id: Uuid,
    patient: String,
    person_id: Uuid,
    disease: String,
    disease_code: String,
    next_due: String,
    flag: String,
    referral: Option<Uuid>,
    past: Vec<Past>,
    today: NaiveDate,
    today_text: String,
    refused: Refused,
}

#[handler]
pub async fn enrollment(req: &Request, state: Data<&AppState>, id: Path<String>) -> Response {
    let p = signed_in!(req, &state);
    let l = p.l;
    let Ok(id) = Uuid::parse_str(&id.0) else {
        return error_page(l, &AppError::new(codes::ENROLLMENT_NOT_FOUND, "no such enrollment"), "/app/followups");
    };
    enrollment_page(&state, p, id, Refused::default(), StatusCode::OK).await
}

/// The enrollment with its follow-up form; a refused form comes back as typed, with the
/// refusal's status and the field at fault named.
async fn enrollment_page(state: &AppState, p: Page, id: Uuid, refused: Refused, status: StatusCode) -> Response {
    let l = p.l;
    let v = match followups::get(state, &p.ctx, id).await {
        Ok(v) => v,
        Err(e) => return error_page(l, &e, "/app/followups"),
    };
    let e = &v.enrollment;
    let past = v
        .visits
        .iter()
        .rev()
        .map(|f| {
            let mut m = vec![];
            if let (Some(s), Some(d)) = (f.systolic, f.diastolic) {
                m.push(format!("{s}/{d} mmHg"));
            }
            if let Some(g) = f.glucose {
                m.push(format!("{g} mmol/L"));
            }
            Past {
                on: f.visit_on.to_string(),
                measures: m.join(" · "),
                classification: l.t(&format!("fu-class-{}", f.classification)),
                danger: f.danger,
            }
        })
        .collect();
    let today = followups::today(state);
    let page = EnrollmentPage {
        id,
        patient: v.person.name.clone(),
        person_id: e.person_id,
        disease: l.t(&format!("disease-{}", e.disease)),
        disease_code: e.disease.as_str().to_string(),
        next_due: e.next_due.to_string(),
        flag: e.flag.map(|f| l.t(&format!("fu-flag-{f}"))).unwrap_or_default(),
        referral: e.referral_id,
        past,
        today_text: today.to_string(),
        today,
        refused,
        l,
        p,
    };
    render(status, &page)
}

#[derive(Deserialize)]
pub struct FollowupForm {
    #[serde(default)]
    csrf: String,
    visit_on: Option<String>,
    systolic: Option<String>,
    diastolic: Option<String>,
    glucose: Option<String>,
    symptoms: Option<String>,
    adherence: Option<String>,
    smoking_per_day: Option<String>,
    salt: Option<String>,
    exercise_minutes_per_week: Option<String>,
    classification: Option<String>,
    notes: Option<String>,
}

#[handler]
pub async fn record(req: &Request, state: Data<&AppState>, id: Path<String>, form: Form<FollowupForm>) -> Response {
    let p = signed_in!(req, &state);
    let l = p.l;
    let Ok(id) = Uuid::parse_str(&id.0) else {
        return error_page(l, &AppError::new(codes::ENROLLMENT_NOT_FOUND, "no such enrollment"), "/app/followups");
    };
    let back = format!("/app/followups/{id}");
    let f = form.0;
    let done = async {
        p.check_csrf(&f.csrf)?;
        let visit_on: NaiveDate = num("visit_on", &f.visit_on)?.unwrap_or_else(|| followups::today(&state));
        let input = VisitInput {
            visit_on,
            measures: Measures {
                systolic: num("systolic", &f.systolic)?,
                diastolic: num("diastolic", &f.diastolic)?,
                glucose: num("glucose", &f.glucose)?,
            },
            symptoms: f
                .symptoms
                .as_deref()
                .unwrap_or_default()
                .split(['，', ',', '、'])
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            adherence: f.adherence.clone().filter(|a| !a.is_empty()).unwrap_or_else(|| "regular".into()),
            smoking_per_day: num("smoking_per_day", &f.smoking_per_day)?,
            salt: f.salt.clone().filter(|s| !s.is_empty()),
            exercise_minutes_per_week: num("exercise_minutes_per_week", &f.exercise_minutes_per_week)?,
            classification: match f.classification.as_deref().filter(|c| !c.is_empty()) {
                None => None,
                Some(c) => Some(Classification::parse(c).ok_or_else(|| invalid("classification"))?),
            },
            next_on: None,
            notes: f.notes.clone().map(|n| n.trim().to_string()).filter(|n| !n.is_empty()),
        };
        crate::escalation::service::record_followup(&state, &p.ctx, id, input).await?;
        Ok::<_, AppError>(see_other(&back))
    }
    .await;
    match done {
        Ok(r) => r,
        Err(e) if super::form::refused_input(&e) => {
            let field = form_field_of(&e, &FOLLOWUP_FIELDS);
            let label = field_label(&field).map(|k| format!("{}{}", l.t(k), l.t("colon"))).unwrap_or_default();
            let message = format!("{label}{}", refusal_message(l, &e));
            let refused = Refused { step: "followup".into(), values: f.typed(), field, message };
            enrollment_page(&state, p, id, refused, poem::error::ResponseError::status(&e)).await
        }
        Err(e) => error_page(l, &e, &back),
    }
}

const FOLLOWUP_FIELDS: [&str; 11] = [
    "visit_on",
    "systolic",
    "diastolic",
    "glucose",
    "symptoms",
    "adherence",
    "smoking_per_day",
    "salt",
    "exercise_minutes_per_week",
    "classification",
    "notes",
];

impl FollowupForm {
    /// Everything typed, by field name, to show a refused form again.
    fn typed(&self) -> std::collections::HashMap<&'static str, String> {
        let all = [
            &self.visit_on,
            &self.systolic,
            &self.diastolic,
            &self.glucose,
            &self.symptoms,
            &self.adherence,
            &self.smoking_per_day,
            &self.salt,
            &self.exercise_minutes_per_week,
            &self.classification,
            &self.notes,
        ];
        FOLLOWUP_FIELDS.iter().zip(all).filter_map(|(k, v)| v.clone().map(|v| (*k, v))).collect()
    }
}

fn field_label(field: &str) -> Option<&'static str> {
    Some(match field {
        "visit_on" => "fu-visit-on",
        "systolic" => "vital-sbp",
        "diastolic" => "vital-dbp",
        "glucose" => "vital-glucose",
        "symptoms" => "fu-symptoms",
        "adherence" => "fu-adherence",
        "smoking_per_day" => "fu-smoking",
        "salt" => "fu-salt",
        "exercise_minutes_per_week" => "fu-exercise",
        "classification" => "fu-classification",
        "notes" => "fu-notes",
        _ => return None,
    })
}

/// One of a person's follow-up registries at this institution, on their patient page.
pub struct EnrolledRow {
    pub id: Uuid,
    /// `hypertension` or `diabetes`.
    pub code: String,
    pub disease: String,
    pub next_due: String,
}

/// The person's active registries here (none for a role that cannot read follow-ups).
pub(super) async fn enrolled(state: &AppState, p: &Page, person: Uuid) -> Result<Vec<EnrolledRow>, AppError> {
    if !p.ctx.can(crate::identity::ctx::Perm::FollowupRead) {
        return Ok(Vec::new());
    }
    let q = followups::ListQuery {
        person: Some(person),
        disease: None,
        doctor: None,
        include_closed: false,
        flagged_only: false,
        limit: 10,
        offset: 0,
    };
    Ok(followups::list(state, &p.ctx, q)
        .await?
        .into_iter()
        .map(|r| EnrolledRow {
            id: r.enrollment.id,
            code: r.enrollment.disease.as_str().to_string(),
            disease: p.l.t(&format!("disease-{}", r.enrollment.disease)),
            next_due: r.enrollment.next_due.to_string(),
        })
        .collect())
}

/// The enrolment form on the patient page, as typed.
#[derive(Deserialize, Default)]
pub struct EnrollForm {
    #[serde(default)]
    csrf: String,
    disease: Option<String>,
    diagnosed_on: Option<String>,
}

const ENROLL_FIELDS: [&str; 2] = ["disease", "diagnosed_on"];

/// Enrols a patient registered here in the hypertension or diabetes registry, and opens the
/// enrollment; a refused form comes back on the patient page as typed, the field named.
#[handler]
pub async fn enroll(req: &Request, state: Data<&AppState>, id: Path<String>, form: Form<EnrollForm>) -> Response {
    use crate::followups::domain::Disease;
    let p = signed_in!(req, &state);
    let l = p.l;
    let Ok(person) = Uuid::parse_str(&id.0) else {
        return error_page(l, &AppError::new(codes::PAGE_NOT_FOUND, "no such page"), "/app/clinic");
    };
    let back = format!("/app/clinic/patients/{person}");
    let f = form.0;
    let done = async {
        p.check_csrf(&f.csrf)?;
        let disease = f.disease.as_deref().and_then(Disease::parse).ok_or_else(|| invalid("disease"))?;
        let diagnosed_on: NaiveDate = super::form::required("diagnosed_on", &f.diagnosed_on)?;
        let input = followups::EnrollInput {
            person_id: person,
            disease,
            diagnosed_on,
            diagnosis_code: None,
            doctor_id: None,
            enrolled_on: None,
            interval_days: None,
        };
        let e = followups::enroll(&state, &p.ctx, input).await?;
        Ok::<_, AppError>(see_other(&format!("/app/followups/{}", e.id)))
    }
    .await;
    match done {
        Ok(r) => r,
        Err(e) if super::form::refused_input(&e) => {
            let field = form_field_of(&e, &ENROLL_FIELDS);
            let label = match field.as_str() {
                "disease" => format!("{}{}", l.t("fu-disease"), l.t("colon")),
                "diagnosed_on" => format!("{}{}", l.t("enroll-diagnosed-on"), l.t("colon")),
                _ => String::new(),
            };
            let message = format!("{label}{}", refusal_message(l, &e));
            let values = [("disease", &f.disease), ("diagnosed_on", &f.diagnosed_on)]
                .into_iter()
                .map(|(k, v)| (k, v.clone().unwrap_or_default()))
                .collect();
            let enroll = Refused { step: "enroll".into(), values, field, message };
            let forms = super::clinic::PatientForms { enroll, ..Default::default() };
            let status = poem::error::ResponseError::status(&e);
            match super::clinic::patient_page(&state, p, person, forms, None, None, None).await {
                Ok(mut page) => {
                    page.set_status(status);
                    page
                }
                Err((e, back)) => error_page(l, &e, &back),
            }
        }
        Err(e) => error_page(l, &e, &back),
    }
}
