//! A demo with a year behind it: `serve --demo` on a fresh demo community loads twelve months of
//! its work — outpatient visits with vitals, diagnoses, prescriptions, charges and payments at
//! every level; referrals up (accepted, completed and sent back down, or rejected) and out of the
//! county; hypertension and diabetes patients enrolled and followed up, some of them overdue —
//! so that every tile and chart of the bureau's dashboard shows real figures above the
//! suppression threshold and the clinics' follow-up worklists have work on them.
//!
//! Everything goes through the HTTP API in-process, as the demo users, so it is written by the
//! same handlers, services, events, consumers and audit as a user's request would be. Each step
//! runs under [`clock::as_of`] at the moment it would have happened, so the records, their events
//! and the statistics and ledger built from those events carry the historical dates. The plan
//! is a fixed arithmetic pattern over the days before today: the same day gives the same data.

use std::collections::HashMap;

use anyhow::{Context, anyhow};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use poem::http::Method;
use poem::{Endpoint, EndpointExt};
use serde_json::{Value, json};

use crate::platform::clock::{self, china_day};
use crate::platform::state::AppState;

/// What a history load wrote.
#[derive(Debug, Default)]
pub struct HistoryReport {
    pub patients: usize,
    pub visits: usize,
    pub referrals: usize,
    pub followups: usize,
    /// Steps the API refused (logged with their code); the rest of the history still loads.
    pub refused: usize,
}

/// The API, called in-process with a bearer token.
struct Api {
    ep: poem::endpoint::BoxEndpoint<'static, poem::Response>,
    tokens: HashMap<&'static str, String>,
    refused: usize,
}

impl Api {
    async fn call(&mut self, user: &str, method: Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let mut req = poem::Request::builder().method(method).uri_str(path);
        if let Some(t) = self.tokens.get(user) {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let req = match body {
            Some(b) => req.content_type("application/json").body(b.to_string()),
            None => req.finish(),
        };
        let resp = self.ep.call(req).await.map_err(|e| anyhow!("{e}"))?;
        let status = resp.status();
        let bytes = resp.into_body().into_bytes().await.map_err(|e| anyhow!("{e}"))?;
        let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if status.is_success() {
            Ok(value)
        } else {
            Err(anyhow!("{path}: {status} {}", value["code"].as_str().unwrap_or_default()))
        }
    }

    /// A step at `at`; a refusal is counted and logged (codes only, never patient data).
    async fn step(&mut self, at: DateTime<Utc>, user: &str, path: &str, body: Value) -> Option<Value> {
        match clock::as_of(at, self.call(user, Method::POST, path, Some(body))).await {
            Ok(v) => Some(v),
            Err(e) => {
                self.refused += 1;
                tracing::warn!(error = %e, "demo history: a step was refused");
                None
            }
        }
    }
}

/// Holds this process's scheduled jobs off while it lives.
struct PausedJobs(AppState);

impl PausedJobs {
    fn new(state: &AppState) -> Self {
        state.jobs_paused.store(true, std::sync::atomic::Ordering::Release);
        Self(state.clone())
    }
}

impl Drop for PausedJobs {
    fn drop(&mut self) {
        self.0.jobs_paused.store(false, std::sync::atomic::Ordering::Release);
    }
}

/// The demo users who act in the history, and where.
const STAFF: [&str; 8] = [
    "village.doctor",
    "village.doctor2",
    "village.roving",
    "township.doctor",
    "township.admin",
    "county.doctor",
    "county.cashier",
    "coordinator",
];

/// One clinic of the history: who sees patients, who takes the money, how many visits a week.
struct Clinic {
    /// The institution's code in the tenant file.
    place: &'static str,
    doctor: &'static str,
    cashier: Option<&'static str>,
    per_week: usize,
    pool: usize,
}

const CLINICS: [Clinic; 5] = [
    Clinic { place: "v-dongguan", doctor: "village.doctor", cashier: Some("village.doctor"), per_week: 3, pool: 16 },
    Clinic { place: "v-xihe", doctor: "village.doctor2", cashier: Some("village.doctor2"), per_week: 2, pool: 14 },
    Clinic { place: "v-nanshan", doctor: "village.roving", cashier: None, per_week: 1, pool: 6 },
    Clinic { place: "th-dongguan", doctor: "township.doctor", cashier: Some("township.admin"), per_week: 2, pool: 10 },
    Clinic {
        place: "county-hospital",
        doctor: "county.doctor",
        cashier: Some("county.cashier"),
        per_week: 2,
        pool: 10,
    },
];

/// What brings a patient in, by their place in the clinic's pool.
const CASES: [(&str, &str, &str, &str); 5] = [
    ("I10", "头晕，血压偏高", "amlodipine-5mg", "mg"),
    ("E11.9", "口干多饮，复查血糖", "metformin-500mg", "mg"),
    ("J06.9", "咽痛流涕两天", "amoxicillin-250mg", "mg"),
    ("K29.7", "上腹隐痛", "omeprazole-20mg", "mg"),
    ("M54.5", "腰痛一周", "ibuprofen-300mg", "mg"),
];

const SURNAMES: [&str; 12] = ["王", "李", "张", "刘", "陈", "杨", "赵", "黄", "周", "吴", "徐", "孙"];
const GIVEN: [&str; 16] = [
    "秀兰", "建国", "桂英", "志强", "玉珍", "海涛", "淑华", "国庆", "春梅", "德明", "丽娟", "长福", "凤英", "文斌",
    "金花", "永生",
];

/// Loads `months` of history into the demo community, unless its first village clinic has seen
/// patients already (the history is for a fresh demo only). `None` when nothing was loaded.
pub async fn load_history(state: &AppState, months: u32) -> anyhow::Result<Option<HistoryReport>> {
    if months == 0 {
        return Ok(None);
    }
    // Referrals written in the past are past their time limit until decided a moment later: the
    // expiry job of this process waits until the history is in.
    let _paused = PausedJobs::new(state);
    let mut api = Api { ep: crate::startup::routes(state.clone()).boxed(), tokens: HashMap::new(), refused: 0 };
    for user in STAFF {
        let body = json!({"tenant": "demo-county", "username": user, "password": "Demo@2026"});
        let s = api.call(user, Method::POST, "/api/v1/auth/login", Some(body)).await.context("demo login")?;
        api.tokens.insert(user, s["token"].as_str().context("a session token")?.to_string());
    }
    let seen = api.call("village.doctor", Method::GET, "/api/v1/encounters?limit=1", None).await?;
    if seen.as_array().is_some_and(|a| !a.is_empty()) || seen["items"].as_array().is_some_and(|a| !a.is_empty()) {
        return Ok(None);
    }
    let list = api.call("coordinator", Method::GET, "/api/v1/institutions", None).await?;
    let ids: HashMap<String, String> = list
        .as_array()
        .context("institutions")?
        .iter()
        .filter_map(|i| Some((i["code"].as_str()?.to_string(), i["id"].as_str()?.to_string())))
        .collect();
    let today = state.clock.china_today();
    let start = today - Duration::days(i64::from(months) * 365 / 12);
    tracing::info!("loading {months} months of demo history (about half a minute)");
    let mut report = HistoryReport::default();
    let pools = register_pools(&mut api, start, &mut report).await?;
    let mut week = 0;
    while start + Duration::days(7 * week) < today {
        let monday = start + Duration::days(7 * week);
        run_week(&mut api, &ids, &pools, week as usize, monday, today, &mut report).await;
        week += 1;
    }
    this_month(&mut api, &ids, &pools, today, &mut report).await;
    follow_ups(&mut api, &pools, start, today, &mut report).await;
    report.referrals += waiting(&mut api, &ids, &pools).await;
    for user in STAFF {
        let _ = api.call(user, Method::POST, "/api/v1/auth/logout", None).await;
    }
    report.refused = api.refused;
    Ok(Some(report))
}

/// A valid resident ID for the `n`th demo patient (region 130999, born 1940-1999).
fn resident_id(n: usize) -> String {
    let born = NaiveDate::from_ymd_opt(1940 + (n * 7 % 60) as i32, 1 + (n % 12) as u32, 1 + (n * 5 % 28) as u32)
        .expect("a valid date");
    let body = format!("130999{}{:03}", born.format("%Y%m%d"), 700 + n % 300);
    format!("{body}{}", crate::patients::resident_id::check_character(body.as_bytes()))
}

/// Registers each clinic's patients on the first day of the history; their person ids by clinic.
async fn register_pools(
    api: &mut Api,
    start: NaiveDate,
    report: &mut HistoryReport,
) -> anyhow::Result<HashMap<&'static str, Vec<String>>> {
    let at = china_day(start).0 + Duration::hours(1);
    let mut pools = HashMap::new();
    let mut n = 0;
    for c in &CLINICS {
        let mut pool = Vec::new();
        for _ in 0..c.pool {
            n += 1;
            let name = format!("{}{}", SURNAMES[n % SURNAMES.len()], GIVEN[(n * 7) % GIVEN.len()]);
            let phone = format!("139{:08}", 31_000_000 + n * 7919);
            let mut body = json!({"name": name, "resident_id": resident_id(n), "phone": phone});
            let first =
                clock::as_of(at, api.call(c.doctor, Method::POST, "/api/v1/patients", Some(body.clone()))).await;
            let person = match first {
                Ok(p) => Some(p),
                Err(e) if e.to_string().contains("probable_match") => {
                    // Someone already in the community looks alike: a different person.
                    body["create_new"] = json!({"reason": "演示数据：不同的人"});
                    api.step(at, c.doctor, "/api/v1/patients", body).await
                }
                Err(e) => {
                    api.refused += 1;
                    tracing::warn!(error = %e, "demo history: a registration was refused");
                    None
                }
            };
            if let Some(id) = person.as_ref().and_then(|p| p["person"]["id"].as_str()) {
                pool.push(id.to_string());
                report.patients += 1;
            }
        }
        pools.insert(c.place, pool);
    }
    Ok(pools)
}

/// A visit from arrival to payment: the encounter's id, or None if a step was refused.
async fn visit(api: &mut Api, c: &Clinic, person: &str, case: usize, at: DateTime<Utc>) -> Option<String> {
    let (code, complaint, drug, unit) = CASES[case % CASES.len()];
    let e = api
        .step(at, c.doctor, "/api/v1/encounters", json!({"person_id": person, "chief_complaint": complaint}))
        .await?;
    let enc = e["id"].as_str()?.to_string();
    let path = |step: &str| format!("/api/v1/encounters/{enc}/{step}");
    let (sbp, dbp) = if code == "I10" { (146 + (case * 3 % 20) as i32, 92 + (case % 9) as i32) } else { (124, 78) };
    let vitals = json!({"systolic": sbp, "diastolic": dbp, "pulse": 72 + case % 15, "temperature": 36.6});
    api.step(at + Duration::minutes(3), c.doctor, &path("vitals"), vitals).await?;
    api.step(at + Duration::minutes(6), c.doctor, &path("diagnoses"), json!({"code": code})).await?;
    let dose = match drug {
        "metformin-500mg" => 500,
        "amoxicillin-250mg" => 250,
        "omeprazole-20mg" => 20,
        "ibuprofen-300mg" => 300,
        _ => 5,
    };
    let line = json!({"drug_code": drug, "dose": dose, "dose_unit": unit, "frequency": "qd", "days": 7, "quantity": 7});
    api.step(at + Duration::minutes(9), c.doctor, &path("prescriptions"), json!({"lines": [line]})).await;
    if let Some(cashier) = c.cashier {
        let fees = json!({"fee_items": [{"code": "registration"}, {"code": "consultation"}]});
        if let Some(bill) = api.step(at + Duration::minutes(12), cashier, &path("charges"), fees).await {
            let (id, owed) = (bill["id"].as_str().unwrap_or_default().to_string(), bill["owed_fen"].as_i64());
            let method = ["mobile", "cash", "card"][case % 3];
            let pay = json!({"method": method, "amount_fen": owed.unwrap_or(0)});
            api.step(at + Duration::minutes(14), cashier, &format!("/api/v1/bills/{id}/payments"), pay).await;
        }
    }
    api.step(at + Duration::minutes(16), c.doctor, &path("close"), json!({})).await?;
    Some(enc)
}

/// One week: each clinic's visits, two referrals up (one in eight rejected, the rest taken to a
/// referral back down), and every fourth week a referral out of the county.
async fn run_week(
    api: &mut Api,
    ids: &HashMap<String, String>,
    pools: &HashMap<&'static str, Vec<String>>,
    week: usize,
    monday: NaiveDate,
    today: NaiveDate,
    report: &mut HistoryReport,
) {
    let mut sources: HashMap<&str, (String, String)> = HashMap::new();
    for (ci, c) in CLINICS.iter().enumerate() {
        let pool = &pools[c.place];
        for k in 0..c.per_week {
            let day = monday + Duration::days(((k * 2 + ci) % 5) as i64);
            if day >= today || pool.is_empty() {
                continue;
            }
            let slot = week * c.per_week + k;
            let person = &pool[slot % pool.len()];
            let at = china_day(day).0 + Duration::minutes(30 + 25 * (ci * 3 + k) as i64);
            if let Some(enc) = visit(api, c, person, slot % pool.len(), at).await {
                report.visits += 1;
                sources.insert(c.place, (person.clone(), enc));
            }
        }
    }
    let routes = [("v-dongguan", "th-dongguan"), ("v-xihe", "county-hospital"), ("th-dongguan", "county-hospital")];
    for (r, (from, to)) in routes.iter().enumerate().filter(|(r, _)| !(week + r).is_multiple_of(3)) {
        let Some((person, enc)) = sources.get(from) else { continue };
        let day = monday + Duration::days(((r * 2 + 1) % 5) as i64);
        let at = china_day(day).0 + Duration::hours(3);
        // The last days' referrals run their course within hours, so this month has them too.
        let pace = if at + Duration::days(5) < china_day(today).0 { Pace::Days } else { Pace::Hours };
        if at + Duration::hours(12) >= china_day(today).0 {
            continue;
        }
        let reject = (week + r).is_multiple_of(8);
        if refer_up(api, ids, (from, to), person, Some(enc), at, reject, week, pace).await {
            report.referrals += 2 - usize::from(reject);
        }
    }
    if week % 4 == 1 && monday + Duration::days(3) < today {
        let person = &pools["county-hospital"][week % pools["county-hospital"].len()];
        let body = json!({"person_id": person, "direction": "out", "external_hospital": "省人民医院",
                          "reason": "需心内科介入治疗，县内无条件"});
        let at = china_day(monday + Duration::days(3)).0 + Duration::hours(2);
        if api.step(at, "county.doctor", "/api/v1/referrals", body).await.is_some() {
            report.referrals += 1;
        }
    }
}

/// Six more visits, each referred up and back within hours, on the days of this month before
/// today: the current month's points of the charts are above the threshold from its second day.
async fn this_month(
    api: &mut Api,
    ids: &HashMap<String, String>,
    pools: &HashMap<&'static str, Vec<String>>,
    today: NaiveDate,
    report: &mut HistoryReport,
) {
    use chrono::Datelike;
    let first = today.with_day(1).expect("the first of the month");
    let elapsed = (today - first).num_days();
    if elapsed == 0 {
        return;
    }
    for j in 0..6_i64 {
        let (c, to) = if j % 2 == 0 { (&CLINICS[0], "th-dongguan") } else { (&CLINICS[1], "county-hospital") };
        let day = first + Duration::days(j % elapsed);
        let at = china_day(day).0 + Duration::minutes(20 + 45 * j);
        let pool = &pools[c.place];
        let Some(person) = pool.get((j as usize * 5 + 3) % pool.len().max(1)) else { continue };
        let Some(enc) = visit(api, c, person, j as usize, at).await else { continue };
        report.visits += 1;
        let sent = at + Duration::minutes(20);
        if refer_up(api, ids, (c.place, to), person, Some(&enc), sent, false, j as usize, Pace::Hours).await {
            report.referrals += 2;
        }
    }
}

/// Who decides referrals arriving at an institution.
fn receiver(code: &str) -> &'static str {
    if code == "th-dongguan" { "township.doctor" } else { "coordinator" }
}

/// Who sends referrals from an institution.
fn sender(code: &str) -> &'static str {
    CLINICS.iter().find(|c| c.place == code).map_or("county.doctor", |c| c.doctor)
}

/// An up-referral from a visit: rejected, or accepted, arrived, completed and sent back down
/// (and the down-referral accepted by the clinic it returns to). True if it was sent.
#[allow(clippy::too_many_arguments)]
async fn refer_up(
    api: &mut Api,
    ids: &HashMap<String, String>,
    (from, to): (&str, &str),
    person: &str,
    enc: Option<&str>,
    at: DateTime<Utc>,
    reject: bool,
    week: usize,
    pace: Pace,
) -> bool {
    let urgent = week % 5 == 2;
    let body = json!({"person_id": person, "direction": "up", "to_institution_id": ids[to], "urgent": urgent,
                      "reason": "基层治疗效果不佳，请上级医院进一步诊治", "source_encounter_id": enc});
    let Some(r) = api.step(at, sender(from), "/api/v1/referrals", body).await else { return false };
    let Some(id) = r["id"].as_str().map(str::to_string) else { return false };
    let path = |step: &str| format!("/api/v1/referrals/{id}/{step}");
    let decided = at + Duration::minutes(if urgent { 40 } else { 90 + (week * 37 % 600) as i64 });
    let who = receiver(to);
    if reject {
        api.step(decided, who, &path("reject"), json!({"note": "床位已满，建议转县医院"})).await;
        return true;
    }
    let unit = match pace {
        Pace::Days => Duration::days(1),
        Pace::Hours => Duration::hours(2),
    };
    api.step(decided, who, &path("accept"), json!({})).await;
    api.step(decided + unit, who, &path("arrive"), json!({})).await;
    api.step(decided + unit * 3, who, &path("complete"), json!({"note": "调整治疗方案后好转"})).await;
    let down = json!({"discharge_summary": "病情稳定，转回基层继续治疗", "rehab_plan": "每月随访一次，按时服药"});
    if let Some(d) = api.step(decided + unit * 4, who, &path("down"), down).await
        && let Some(down_id) = d["id"].as_str()
    {
        let accept = format!("/api/v1/referrals/{down_id}/accept");
        api.step(decided + unit * 4 + Duration::minutes(30), sender(from), &accept, json!({})).await;
    }
    true
}

/// How fast a referral runs from acceptance to the referral back down.
#[derive(Clone, Copy)]
enum Pace {
    Days,
    Hours,
}

/// Two referrals waiting at the county hospital now, one of them urgent: the coordinator's inbox
/// has work when the demo opens.
async fn waiting(api: &mut Api, ids: &HashMap<String, String>, pools: &HashMap<&'static str, Vec<String>>) -> usize {
    let now = chrono::Utc::now();
    let mut sent = 0;
    for (i, (from, minutes, urgent)) in [("v-xihe", 50, true), ("v-dongguan", 130, false)].into_iter().enumerate() {
        let Some(person) = pools[from].get(i + 2) else { continue };
        let reason = if urgent {
            "胸闷胸痛半小时，心电图ST段改变"
        } else {
            "血压控制不佳，请调整用药"
        };
        let body = json!({"person_id": person, "direction": "up", "to_institution_id": ids["county-hospital"],
                          "urgent": urgent, "reason": reason});
        if api.step(now - Duration::minutes(minutes), sender(from), "/api/v1/referrals", body).await.is_some() {
            sent += 1;
        }
    }
    sent
}

/// Hypertension and diabetes registries at the village clinics: most patients followed up every
/// quarter and controlled, some overdue, two enrolled and never seen since.
async fn follow_ups(
    api: &mut Api,
    pools: &HashMap<&'static str, Vec<String>>,
    start: NaiveDate,
    today: NaiveDate,
    report: &mut HistoryReport,
) {
    for c in CLINICS.iter().filter(|c| c.place.starts_with("v-") && c.cashier.is_some()) {
        for (i, person) in pools[c.place].iter().enumerate() {
            let disease = if i % 3 == 1 { "diabetes" } else { "hypertension" };
            let enrolled = start + Duration::days((i * 3) as i64);
            let body = json!({"person_id": person, "disease": disease,
                              "diagnosed_on": enrolled - Duration::days(400 + (i * 31) as i64), "enrolled_on": enrolled});
            let at = china_day(enrolled).0 + Duration::hours(2);
            let Some(e) = api.step(at, c.doctor, "/api/v1/followups/enrollments", body).await else { continue };
            let Some(id) = e["id"].as_str().map(str::to_string) else { continue };
            // Patients 4 and 9 are never seen again; every fifth stops coming after the second.
            let visits = match i {
                4 | 9 => 0,
                _ if i % 5 == 3 => 2,
                _ => 4,
            };
            for k in 0..visits {
                let day = enrolled + Duration::days(10 + 88 * k as i64);
                if day >= today {
                    break;
                }
                let controlled = (i + k) % 6 != 0;
                let mut body = json!({"visit_on": day, "adherence": "regular", "symptoms": []});
                if disease == "diabetes" {
                    body["glucose"] = json!(if controlled { 6.4 } else { 8.9 });
                } else {
                    body["systolic"] = json!(if controlled { 132 } else { 152 });
                    body["diastolic"] = json!(if controlled { 82 } else { 96 });
                }
                let at = china_day(day).0 + Duration::hours(2);
                if api
                    .step(at, c.doctor, &format!("/api/v1/followups/enrollments/{id}/followups"), body)
                    .await
                    .is_some()
                {
                    report.followups += 1;
                }
            }
        }
    }
}
