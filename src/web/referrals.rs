//! The referral pages: the inbox (received) and the sent list with the SLA time left, one
//! referral with the receiver's actions (accept, reject with a reason, arrival, completion with a
//! summary, referral back down), and a server-sent event stream that refreshes the list live.

use std::collections::HashMap;

use askama::Template;
use chrono::Utc;
use futures::StreamExt;
use poem::http::StatusCode;
use poem::web::sse::{Event, SSE};
use poem::web::{Data, Form, Path, Query};
use poem::{IntoResponse, Request, Response, handler};
use serde::Deserialize;
use uuid::Uuid;

use super::{Locale, Page, error_page, render, see_other, signed_in};
use crate::identity::ctx::Perm;
use crate::platform::AppError;
use crate::platform::clock::{china, china_date};
use crate::platform::codes;
use crate::platform::state::AppState;
use crate::referrals::domain::{Action, Direction, Status, Urgency};
use crate::referrals::service::{self as referrals, DownInput, ReferralView};

/// One line of a referral list.
pub struct Row {
    pub id: Uuid,
    pub patient: String,
    pub direction: String,
    pub counterpart: String,
    pub urgent: bool,
    pub urgency: String,
    pub reason: String,
    pub status: String,
    pub status_code: String,
    pub sla: String,
    pub overdue: bool,
    pub created: String,
    /// When an undecided referral must be decided by; for sorting.
    pub due_at: Option<chrono::DateTime<Utc>>,
    pub created_at: chrono::DateTime<Utc>,
}

/// A moment as the reader's wall clock shows it (China Standard Time).
pub(super) fn when(t: chrono::DateTime<Utc>) -> String {
    china(t).format("%Y-%m-%d %H:%M").to_string()
}

/// "2 h 5 min left", or "overdue", for an undecided referral.
fn sla_text(l: Locale, v: &ReferralView) -> (String, bool) {
    match referrals::sla_left(&v.referral, Utc::now()) {
        None => (String::new(), false),
        Some(s) if s <= 0 => (l.t("sla-overdue"), true),
        Some(s) => (
            l.t_with("sla-left", &[("hours", (s / 3600).to_string()), ("minutes", (s % 3600 / 60).to_string())]),
            false,
        ),
    }
}

/// Institution names in the reader's language.
pub(super) async fn institution_names(state: &AppState, p: &Page) -> Result<HashMap<Uuid, String>, AppError> {
    let tx = state.db.begin(&p.ctx).await?;
    let all = crate::tenancy::service::list_institutions(&tx).await?;
    tx.rollback().await?;
    Ok(all.iter().map(|i| (i.id, p.name_of(i))).collect())
}

pub(super) fn row(l: Locale, v: &ReferralView, sent: bool, names: &HashMap<Uuid, String>) -> Row {
    let r = &v.referral;
    let (sla, overdue) = sla_text(l, v);
    let counterpart = if sent {
        r.to_institution
            .and_then(|t| names.get(&t).cloned())
            .or_else(|| r.external_hospital.clone())
            .unwrap_or_default()
    } else {
        names.get(&r.from_institution).cloned().unwrap_or_default()
    };
    Row {
        id: r.id,
        patient: v.person_name.clone(),
        direction: l.t(&format!("direction-{}", r.direction)),
        counterpart,
        urgent: r.urgency == Urgency::Urgent,
        urgency: l.t(&format!("urgency-{}", r.urgency)),
        reason: if r.reason == referrals::DOWN_REASON { l.t("ref-down-reason") } else { r.reason.clone() },
        status: l.t(&format!("status-{}", r.status)),
        status_code: r.status.as_str().to_string(),
        sla,
        overdue,
        created: when(r.created_at),
        due_at: referrals::sla_left(r, Utc::now()).and(r.sla_due_at),
        created_at: r.created_at,
    }
}

#[derive(Deserialize, Default)]
pub struct ListQuery {
    #[serde(rename = "box")]
    which: Option<String>,
    /// `urgent` or `routine`; anything else lists both.
    urgency: Option<String>,
    /// `due` (the default: urgent first, then the least time left, then the rest newest
    /// first) or `newest`.
    sort: Option<String>,
}

impl ListQuery {
    fn sent(&self) -> bool {
        self.which.as_deref() == Some("sent")
    }

    /// The filter as a query string, for the live refresh to keep it.
    fn query_string(&self) -> String {
        let mut parts = Vec::new();
        if self.sent() {
            parts.push("box=sent".to_string());
        }
        if let Some(u) = self.urgency.as_deref().filter(|u| matches!(*u, "urgent" | "routine")) {
            parts.push(format!("urgency={u}"));
        }
        if self.sort.as_deref() == Some("newest") {
            parts.push("sort=newest".into());
        }
        if parts.is_empty() { String::new() } else { format!("?{}", parts.join("&")) }
    }

    /// Keeps the rows the filter asks for, in the order it asks for.
    fn apply(&self, mut rows: Vec<Row>) -> Vec<Row> {
        match self.urgency.as_deref() {
            Some("urgent") => rows.retain(|r| r.urgent),
            Some("routine") => rows.retain(|r| !r.urgent),
            _ => {}
        }
        if self.sort.as_deref() == Some("newest") {
            rows.sort_by_key(|r| std::cmp::Reverse(r.created_at));
        } else {
            // Waiting for a decision first (urgent before routine, least time left first), then
            // everything else newest first.
            rows.sort_by(|a, b| {
                let key = |r: &Row| (r.due_at.is_none(), !r.urgent, r.due_at);
                key(a).cmp(&key(b)).then(b.created_at.cmp(&a.created_at))
            });
        }
        rows
    }
}

#[derive(Template)]
#[template(path = "referrals.html", config = "src/web/askama.toml")]
struct ListPage {
    l: Locale,
    p: Page,
    sent: bool,
    rows: Vec<Row>,
    /// The filter as chosen, and as a query string for the live refresh.
    urgency: String,
    sort: String,
    query: String,
}

#[derive(Template)]
#[template(path = "_referral_rows.html", config = "src/web/askama.toml")]
struct RowsFragment {
    l: Locale,
    rows: Vec<Row>,
}

async fn rows(state: &AppState, p: &Page, q: &ListQuery) -> Result<Vec<Row>, AppError> {
    let sent = q.sent();
    let views = referrals::list(state, &p.ctx, sent, None, 200).await?;
    let names = institution_names(state, p).await?;
    Ok(q.apply(views.iter().map(|v| row(p.l, v, sent, &names)).collect()))
}

#[handler]
pub async fn list(req: &Request, state: Data<&AppState>, q: Query<ListQuery>) -> Response {
    let p = signed_in!(req, &state);
    let q = q.0;
    match rows(&state, &p, &q).await {
        Ok(rows) => {
            let page = ListPage {
                l: p.l,
                sent: q.sent(),
                rows,
                urgency: q.urgency.clone().unwrap_or_default(),
                sort: q.sort.clone().unwrap_or_default(),
                query: q.query_string(),
                p,
            };
            render(StatusCode::OK, &page)
        }
        Err(e) => error_page(p.l, &e, "/app/"),
    }
}

/// The list's rows alone, for the live refresh.
#[handler]
pub async fn list_rows(req: &Request, state: Data<&AppState>, q: Query<ListQuery>) -> Response {
    let p = signed_in!(req, &state);
    match rows(&state, &p, &q.0).await {
        Ok(rows) => render(StatusCode::OK, &RowsFragment { l: p.l, rows }),
        Err(e) => error_page(p.l, &e, "/app/referrals"),
    }
}

/// Server-sent events: one `referral` event per change to a referral of the reader's
/// institution. The page reloads its rows on each; no patient data travels in the event.
#[handler]
pub async fn stream(req: &Request, state: Data<&AppState>) -> Response {
    let p = signed_in!(req, &state);
    if let Err(e) = p.ctx.require(Perm::ReferralRead) {
        return error_page(p.l, &e, "/app/");
    }
    let events = crate::referrals::events::live(&state, p.ctx.tenant, p.ctx.institution).map(|ev| {
        Event::message(serde_json::json!({ "referral_id": ev.aggregate, "type": ev.event_type }).to_string())
            .event_type("referral")
            .id(ev.id.to_string())
    });
    // The stream ends with the session (logout, deactivation, a lost role, expiry); the page
    // reconnects and, logged out, is sent to login.
    let events = crate::identity::service::while_session_holds(&state, &p.ctx, Perm::ReferralRead, events);
    SSE::new(events).keep_alive(std::time::Duration::from_secs(15)).into_response()
}

pub struct Step {
    pub at: String,
    pub what: String,
}

/// The case a referral carries, as the receiving clinician reads it: who, and what the visit
/// recorded when the referral was written (its `clinical_summary`).
#[derive(Default)]
pub struct Case {
    pub who: String,
    pub diagnoses: Vec<String>,
    pub vitals: Vec<String>,
    pub allergies: Vec<String>,
    pub medicines: Vec<String>,
    /// The visit it came from, linked for the sender (whose visit it is).
    pub visit: Option<Uuid>,
    /// The up-referral a down-referral answers, and the down-referrals made from this one.
    pub parent: Option<Uuid>,
    pub children: Vec<(Uuid, String)>,
}

pub(super) fn case_of(l: Locale, v: &ReferralView, sender: bool) -> Case {
    use serde_json::Value;
    let r = &v.referral;
    let clinical = &r.clinical_summary["clinical"];
    let items = |key: &str| clinical[key].as_array().cloned().unwrap_or_default();
    let num = |v: &Value| v.as_f64().map(|n| if n.fract() == 0.0 { format!("{n:.0}") } else { format!("{n}") });
    let who = v.person.as_ref().map_or_else(String::new, |p| {
        let sex = p.sex.as_deref().map(|s| l.t(&format!("sex-{s}"))).unwrap_or_default();
        let age = p.age_on(china_date(Utc::now())).map(|a| l.t_with("case-age", &[("years", a.to_string())]));
        [Some(sex).filter(|s| !s.is_empty()), age].into_iter().flatten().collect::<Vec<_>>().join(" · ")
    });
    let diagnoses = items("diagnoses")
        .iter()
        .filter_map(|d| {
            let code = d["code"].as_str()?;
            let name = crate::clinical::icd10::lookup(code).map(|i| if l == Locale::En { i.name_en } else { i.name });
            Some(format!("{code} {}", name.unwrap_or_default()).trim().to_string())
        })
        .collect();
    let vitals = items("vitals")
        .iter()
        .take(1)
        .map(|v| {
            let mut parts = Vec::new();
            if let Some(at) = v["recorded_at"].as_str().and_then(|t| t.parse::<chrono::DateTime<Utc>>().ok()) {
                parts.push(when(at));
            }
            if let (Some(s), Some(d)) = (num(&v["systolic"]), num(&v["diastolic"])) {
                parts.push(format!("{} {s}/{d} mmHg", l.t("case-bp")));
            }
            for (key, label, unit) in [
                ("pulse", "case-pulse", "/min"),
                ("temperature", "case-temp", " ℃"),
                ("fasting_glucose", "case-glucose", " mmol/L"),
                ("weight_kg", "case-weight", " kg"),
            ] {
                if let Some(n) = num(&v[key]) {
                    parts.push(format!("{} {n}{unit}", l.t(label)));
                }
            }
            parts.join(" · ")
        })
        .collect();
    let allergies = items("allergies").iter().filter_map(|a| a.as_str().map(str::to_string)).collect();
    let medicines = items("medicines")
        .iter()
        .map(|m| {
            let name = if l == Locale::En { m["drug_code"].as_str() } else { m["name"].as_str() }.unwrap_or_default();
            let freq = m["frequency"].as_str().map(|f| l.t(&format!("freq-{f}"))).unwrap_or_default();
            let days =
                m["days"].as_i64().map(|d| l.t_with("case-days", &[("days", d.to_string())])).unwrap_or_default();
            format!(
                "{name} · {} {} {freq} {days}",
                num(&m["dose"]).unwrap_or_default(),
                m["dose_unit"].as_str().unwrap_or_default()
            )
        })
        .collect();
    Case {
        who,
        diagnoses,
        vitals,
        allergies,
        medicines,
        visit: r.source_encounter_id.filter(|_| sender),
        parent: r.parent_id,
        children: v.children.iter().map(|(id, s)| (*id, l.t(&format!("status-{s}")))).collect(),
    }
}

#[derive(Template)]
#[template(path = "referral.html", config = "src/web/askama.toml")]
struct DetailPage {
    l: Locale,
    p: Page,
    row: Row,
    case: Case,
    receiver: bool,
    history: Vec<Step>,
    can_accept: bool,
    can_arrive: bool,
    can_complete: bool,
    can_refer_down: bool,
    can_submit: bool,
    can_cancel: bool,
    reject_reason: String,
    completion: String,
    discharge: String,
    rehab: String,
}

#[handler]
pub async fn detail(req: &Request, state: Data<&AppState>, id: Path<String>) -> Response {
    let p = signed_in!(req, &state);
    let l = p.l;
    let Ok(id) = Uuid::parse_str(&id.0) else {
        return error_page(l, &AppError::new(codes::REFERRAL_NOT_FOUND, "no such referral"), "/app/referrals");
    };
    let v = match referrals::get(&state, &p.ctx, id).await {
        Ok(v) => v,
        Err(e) => return error_page(l, &e, "/app/referrals"),
    };
    let names = match institution_names(&state, &p).await {
        Ok(n) => n,
        Err(e) => return error_page(l, &e, "/app/referrals"),
    };
    let r = &v.referral;
    let receiver = r.to_institution == Some(p.ctx.institution) && p.ctx.can(Perm::ReferralManage);
    let sender = r.from_institution == p.ctx.institution && p.ctx.can(Perm::ReferralWrite);
    let status = Some(r.status);
    let history =
        v.transitions.iter().map(|t| Step { at: when(t.at), what: l.t(&format!("status-{}", t.to_status)) }).collect();
    let page = DetailPage {
        row: row(l, &v, r.from_institution == p.ctx.institution, &names),
        case: case_of(l, &v, r.from_institution == p.ctx.institution),
        receiver,
        history,
        can_accept: receiver && status == Some(Status::Requested),
        can_arrive: receiver && status == Some(Status::Accepted),
        can_complete: receiver && status == Some(Status::Arrived),
        can_refer_down: receiver
            && r.direction == Direction::Up
            && matches!(status, Some(Status::Arrived | Status::Completed)),
        can_submit: sender && status == Some(Status::Draft),
        can_cancel: sender && matches!(status, Some(Status::Requested | Status::Accepted)),
        reject_reason: r.reject_reason.clone().unwrap_or_default(),
        completion: r.completion_summary.clone().unwrap_or_default(),
        discharge: r.discharge_summary.clone().unwrap_or_default(),
        rehab: r.rehab_plan.clone().unwrap_or_default(),
        l,
        p,
    };
    render(StatusCode::OK, &page)
}

#[derive(Deserialize)]
pub struct ActForm {
    #[serde(default)]
    csrf: String,
    note: Option<String>,
    rehab_plan: Option<String>,
}

/// The receiver's accept | reject | arrive | complete | down and the sender's submit | cancel,
/// posted from the referral's page.
#[handler]
pub async fn act(req: &Request, state: Data<&AppState>, path: Path<(String, String)>, form: Form<ActForm>) -> Response {
    let p = signed_in!(req, &state);
    let (id, action) = path.0;
    let Ok(id) = Uuid::parse_str(&id) else {
        return error_page(p.l, &AppError::new(codes::REFERRAL_NOT_FOUND, "no such referral"), "/app/referrals");
    };
    let back = format!("/app/referrals/{id}");
    if let Err(e) = p.check_csrf(&form.0.csrf) {
        return error_page(p.l, &e, &back);
    }
    let note = form.0.note.as_deref().map(str::trim).unwrap_or_default();
    let done = match action.as_str() {
        "accept" => referrals::transition(&state, &p.ctx, id, Action::Accept, None).await.map(|_| back.clone()),
        "reject" => referrals::transition(&state, &p.ctx, id, Action::Reject, Some(note)).await.map(|_| back.clone()),
        "arrive" => referrals::transition(&state, &p.ctx, id, Action::Arrive, None).await.map(|_| back.clone()),
        "submit" => referrals::transition(&state, &p.ctx, id, Action::Submit, None).await.map(|_| back.clone()),
        "cancel" => referrals::transition(&state, &p.ctx, id, Action::Cancel, Some(note)).await.map(|_| back.clone()),
        "complete" => {
            referrals::transition(&state, &p.ctx, id, Action::Complete, Some(note)).await.map(|_| back.clone())
        }
        "down" => referrals::refer_down(
            &state,
            &p.ctx,
            id,
            DownInput {
                discharge_summary: note.to_string(),
                rehab_plan: form.0.rehab_plan.as_deref().map(str::trim).unwrap_or_default().to_string(),
                to_institution: None,
            },
        )
        .await
        .map(|down| format!("/app/referrals/{}", down.id)),
        _ => Err(AppError::new(codes::PAGE_NOT_FOUND, "no such action")),
    };
    match done {
        Ok(to) => see_other(&to),
        Err(e) => error_page(p.l, &e, &back),
    }
}
