//! Audit completeness: every operation of the OpenAPI document is classed as touching patient
//! data or not (a new operation without a class fails), and every one that does is driven here and
//! must leave, under its own request id, an audit row with the expected action and purpose naming
//! the person it touched.

use std::collections::{BTreeMap, BTreeSet};

use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{Resp, Session, TestApp, spawn_app};
use crate::isolation::operations;
use crate::patients::rid;

/// The audit action and purpose each patient-data operation must write.
const PHI: &[(&str, &str, &str, &str)] = &[
    ("GET", "/api/v1/accounts/patients/{id}/statement", "accounts.patient_statement", "administration"),
    ("GET", "/api/v1/bills/{id}", "billing.read", "treatment"),
    ("POST", "/api/v1/bills/{id}/payments", "billing.pay", "treatment"),
    ("GET", "/api/v1/encounters", "encounter.list", "treatment"),
    ("POST", "/api/v1/encounters", "encounter.open", "treatment"),
    ("GET", "/api/v1/encounters/{id}", "encounter.read", "treatment"),
    ("POST", "/api/v1/encounters/{id}/addenda", "encounter.addendum", "treatment"),
    ("POST", "/api/v1/encounters/{id}/charges", "billing.charge", "treatment"),
    ("POST", "/api/v1/encounters/{id}/close", "encounter.close", "treatment"),
    ("POST", "/api/v1/encounters/{id}/diagnoses", "encounter.diagnose", "treatment"),
    ("PUT", "/api/v1/encounters/{id}/notes", "encounter.notes", "treatment"),
    ("POST", "/api/v1/encounters/{id}/prescriptions", "prescription.write", "treatment"),
    ("POST", "/api/v1/encounters/{id}/vitals", "encounter.vitals", "treatment"),
    ("GET", "/api/v1/followups/enrollments", "followups.list", "treatment"),
    ("POST", "/api/v1/followups/enrollments", "followups.enroll", "treatment"),
    ("GET", "/api/v1/followups/enrollments/{id}", "followups.read", "treatment"),
    ("POST", "/api/v1/followups/enrollments/{id}/close", "followups.close", "treatment"),
    ("POST", "/api/v1/followups/enrollments/{id}/followups", "followups.visit", "treatment"),
    ("GET", "/api/v1/followups/enrollments/{id}/status", "followups.read", "treatment"),
    ("GET", "/api/v1/followups/suggestions", "followups.suggestions", "treatment"),
    ("POST", "/api/v1/followups/suggestions/{id}/dismiss", "followups.dismiss_suggestion", "treatment"),
    ("GET", "/api/v1/followups/worklist", "followups.worklist", "treatment"),
    ("GET", "/api/v1/followups/worklist.csv", "followups.export", "treatment"),
    ("POST", "/api/v1/patients", "patient.register", "treatment"),
    ("POST", "/api/v1/patients/$match", "patient.match", "treatment"),
    ("GET", "/api/v1/patients/duplicates", "patient.review", "administration"),
    ("POST", "/api/v1/patients/duplicates/{id}/dismiss", "patient.not_duplicate", "administration"),
    ("POST", "/api/v1/patients/duplicates/{id}/merge", "patient.merge", "administration"),
    ("POST", "/api/v1/patients/merges", "patient.merge", "administration"),
    ("POST", "/api/v1/patients/merges/{id}/undo", "patient.unmerge", "administration"),
    ("POST", "/api/v1/patients/search", "patient.search", "treatment"),
    ("GET", "/api/v1/patients/{id}", "patient.read", "treatment"),
    ("POST", "/api/v1/patients/{id}/allergies", "allergy.write", "treatment"),
    ("POST", "/api/v1/patients/{id}/break-glass", "patient.break_glass", "break_glass"),
    ("POST", "/api/v1/patients/{id}/reveal", "patient.reveal", "identity_check"),
    ("GET", "/api/v1/patients/{id}/summary", "patient.summary", "treatment"),
    ("POST", "/api/v1/payments/{id}/refunds", "billing.refund", "treatment"),
    ("GET", "/api/v1/prescriptions/{id}", "prescription.read", "treatment"),
    ("POST", "/api/v1/prescriptions/{id}/dispense", "prescription.dispense", "treatment"),
    ("POST", "/api/v1/referrals", "referral.create", "referral"),
    ("GET", "/api/v1/referrals/inbox", "referral.list", "referral"),
    ("GET", "/api/v1/referrals/sent", "referral.list", "referral"),
    ("GET", "/api/v1/referrals/{id}", "referral.read", "referral"),
    ("POST", "/api/v1/referrals/{id}/accept", "referral.transition", "referral"),
    ("POST", "/api/v1/referrals/{id}/arrive", "referral.transition", "referral"),
    ("POST", "/api/v1/referrals/{id}/cancel", "referral.transition", "referral"),
    ("POST", "/api/v1/referrals/{id}/complete", "referral.transition", "referral"),
    ("POST", "/api/v1/referrals/{id}/down", "referral.refer_down", "referral"),
    ("GET", "/api/v1/referrals/{id}/records", "referral.records", "referral"),
    ("POST", "/api/v1/referrals/{id}/reject", "referral.transition", "referral"),
    ("POST", "/api/v1/referrals/{id}/submit", "referral.transition", "referral"),
];

/// Operations that return or change no patient's data, and why.
const NOT_PHI: &[(&str, &str, &str)] = &[
    ("GET", "/api/v1/imports", "import jobs: file names and counts"),
    ("GET", "/api/v1/imports/{id}", "an import job: its file name and counts"),
    (
        "GET",
        "/api/v1/imports/{id}/report",
        "names many imported persons at once: audited as patient.import_report (administration) per download",
    ),
    (
        "POST",
        "/api/v1/imports/residents",
        "a bulk load, audited as patient.bulk_import (administration) once per batch, as seeding is",
    ),
    ("GET", "/api/v1/accounts/chart", "the chart of accounts"),
    ("GET", "/api/v1/accounts/consolidated", "institution totals"),
    ("GET", "/api/v1/accounts/entries", "journal entries name bills and payments by id, never a person"),
    ("GET", "/api/v1/accounts/income-statements", "institution totals"),
    ("GET", "/api/v1/accounts/periods", "ledger periods"),
    ("POST", "/api/v1/accounts/periods/close", "ledger periods (audited as administration)"),
    ("GET", "/api/v1/accounts/reconciliation", "totals by institution and day"),
    ("GET", "/api/v1/accounts/trial-balance", "account totals"),
    ("GET", "/api/v1/audit/events", "ids only; the read itself is audited as audit.read"),
    ("POST", "/api/v1/auth/login", "staff authentication (audited as authentication)"),
    ("POST", "/api/v1/auth/logout", "staff authentication (audited as authentication)"),
    ("GET", "/api/v1/auth/session", "the caller's own session"),
    ("POST", "/api/v1/auth/switch-institution", "staff authentication (audited as authentication)"),
    ("POST", "/api/v1/auth/totp", "the caller's own second factor (audited as authentication)"),
    ("POST", "/api/v1/auth/totp/confirm", "the caller's own second factor (audited as authentication)"),
    ("POST", "/api/v1/auth/totp/disable", "the caller's own second factor (audited as authentication)"),
    ("GET", "/api/v1/billing/fee-items", "the fee schedule"),
    ("GET", "/api/v1/icd10", "the ICD-10 catalogue"),
    ("GET", "/api/v1/institutions", "the institution tree"),
    ("GET", "/api/v1/institutions/{id}", "the institution tree"),
    ("GET", "/api/v1/institutions/{id}/staff", "staff, not patients"),
    ("POST", "/api/v1/institutions/{id}/staff", "staff, not patients (audited as administration)"),
    ("DELETE", "/api/v1/institutions/{id}/staff/{user_id}/roles/{role}", "staff roles (audited as administration)"),
    ("PUT", "/api/v1/institutions/{id}/staff/{user_id}/roles/{role}", "staff roles (audited as administration)"),
    ("GET", "/api/v1/pharmacy/drugs", "the formulary"),
    ("POST", "/api/v1/users/{id}/deactivate", "staff, not patients (audited as administration)"),
    ("POST", "/api/v1/users/{id}/reactivate", "staff, not patients (audited as administration)"),
    ("GET", "/api/v1/pharmacy/stock", "stock batches"),
    ("POST", "/api/v1/pharmacy/stock/adjustments", "stock (audited as administration)"),
    ("POST", "/api/v1/pharmacy/stock/receipts", "stock (audited as administration)"),
    ("POST", "/api/v1/pharmacy/transfers", "stock (audited as administration)"),
    ("GET", "/api/v1/referrals/notifications", "referral ids and event types, no person"),
    ("GET", "/api/v1/referrals/stream", "referral ids, statuses and institutions, no person"),
    ("GET", "/api/v1/statistics/kpis", "aggregates; cells under five suppressed"),
    ("GET", "/api/v1/statistics/kpis.csv", "aggregates; cells under five suppressed"),
    ("GET", "/api/v1/statistics/kpis.xlsx", "aggregates; cells under five suppressed"),
    ("GET", "/api/v1/statistics/series", "aggregates; cells under five suppressed"),
    ("GET", "/api/v1/users/{id}", "staff, not patients"),
];

/// Drives operations and remembers, for each, its request id and the person it touched.
struct Driver<'a> {
    app: &'a TestApp,
    calls: Vec<(String, String, String, Uuid)>,
    /// For list reads: the persons each response showed, by request id.
    shown: BTreeMap<String, BTreeSet<Uuid>>,
}

/// The persons a JSON response shows: every `person_id`, and the id of every person view (an
/// object with `registrations`).
fn persons_in(v: &Value, out: &mut BTreeSet<Uuid>) {
    match v {
        Value::Object(o) => {
            if let Some(id) = o.get("person_id").and_then(Value::as_str).and_then(|s| s.parse().ok()) {
                out.insert(id);
            }
            if o.contains_key("registrations")
                && let Some(id) = o.get("id").and_then(Value::as_str).and_then(|s| s.parse().ok())
            {
                out.insert(id);
            }
            o.values().for_each(|x| persons_in(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| persons_in(x, out)),
        _ => {}
    }
}

/// List reads: one audit row per person shown is the rule these are checked against.
const LISTS: &[&str] = &[
    "GET /api/v1/encounters",
    "GET /api/v1/followups/enrollments",
    "GET /api/v1/followups/suggestions",
    "GET /api/v1/followups/worklist",
    "GET /api/v1/patients/duplicates",
    "GET /api/v1/referrals/inbox",
    "GET /api/v1/referrals/sent",
    "POST /api/v1/patients/$match",
    "POST /api/v1/patients/search",
];

impl Driver<'_> {
    /// Calls `method path` (an instance of `template`) as `who`; it must succeed. `subject` is
    /// the person whose data it touches.
    async fn call(
        &mut self,
        who: &Session,
        method: Method,
        template: &str,
        path: &str,
        body: Option<Value>,
        subject: &str,
    ) -> Resp {
        let r = self.app.request(method.clone(), path, Some(&who.token), body).await;
        assert!(r.status.is_success(), "{method} {path}: {} {}", r.status, r.text);
        let request_id = r.headers["x-request-id"].to_str().unwrap().to_string();
        let op = format!("{method} {template}");
        if LISTS.contains(&op.as_str()) {
            let mut shown = BTreeSet::new();
            persons_in(&r.body, &mut shown);
            self.shown.insert(request_id.clone(), shown);
        }
        self.calls.push((op, request_id, path.to_string(), subject.parse().unwrap()));
        r
    }
}

fn id(r: &Resp) -> String {
    r.body["id"].as_str().unwrap_or_else(|| panic!("no id in {}", r.text)).to_string()
}

#[tokio::test]
async fn every_operation_on_patient_data_writes_an_audit_row_with_its_subject_and_purpose() {
    // Every operation of the document is classed, once.
    let mut classed = BTreeSet::new();
    for (m, t, _, _) in PHI {
        assert!(classed.insert(format!("{m} {t}")), "{m} {t} twice");
    }
    for (m, t, _) in NOT_PHI {
        assert!(classed.insert(format!("{m} {t}")), "{m} {t} twice");
    }
    let documented: BTreeSet<String> = operations().into_iter().map(|(m, t)| format!("{m} {t}")).collect();
    for op in &documented {
        assert!(classed.contains(op), "{op} is not classed as touching patient data or not: add it to PHI or NOT_PHI");
    }
    for op in &classed {
        assert!(documented.contains(op), "{op} is classed but not in the document");
    }

    let app = spawn_app().await;
    app.load_demo().await;
    let doc = app.login("village.doctor").await;
    let coordinator = app.login("coordinator").await;
    let county_doctor = app.login("county.doctor").await;
    let finance = app.login("finance").await;
    let admin = app.login("admin").await;
    let ids = app.institutions(&admin).await;
    let mut d = Driver { app: &app, calls: Vec::new(), shown: BTreeMap::new() };
    let (get, post, put) = (Method::GET, Method::POST, Method::PUT);

    // The visit, step by step.
    let resident_id = rid("130999", "19630307", 41);
    let reg = d
        .call(
            &doc,
            post.clone(),
            "/api/v1/patients",
            "/api/v1/patients",
            Some(json!({"name": "吴秀兰", "resident_id": resident_id, "phone": "13812345678"})),
            &Uuid::nil().to_string(),
        )
        .await;
    let p = reg.body["person"]["id"].as_str().unwrap().to_string();
    d.calls.last_mut().unwrap().3 = p.parse().unwrap();
    d.call(
        &doc,
        post.clone(),
        "/api/v1/patients/$match",
        "/api/v1/patients/$match",
        Some(json!({"name": "吴秀兰", "resident_id": resident_id})),
        &p,
    )
    .await;
    d.call(
        &doc,
        post.clone(),
        "/api/v1/patients/search",
        "/api/v1/patients/search",
        Some(json!({"name": "吴秀兰"})),
        &p,
    )
    .await;
    d.call(&doc, get.clone(), "/api/v1/patients/{id}", &format!("/api/v1/patients/{p}"), None, &p).await;
    d.call(
        &doc,
        post.clone(),
        "/api/v1/patients/{id}/allergies",
        &format!("/api/v1/patients/{p}/allergies"),
        Some(json!({"allergen": "青霉素"})),
        &p,
    )
    .await;
    let enc = id(&d
        .call(
            &doc,
            post.clone(),
            "/api/v1/encounters",
            "/api/v1/encounters",
            Some(json!({"person_id": p, "chief_complaint": "头晕"})),
            &p,
        )
        .await);
    let e = |rest: &str| format!("/api/v1/encounters/{enc}{rest}");
    d.call(
        &doc,
        post.clone(),
        "/api/v1/encounters/{id}/vitals",
        &e("/vitals"),
        Some(json!({"systolic": 172, "diastolic": 101})),
        &p,
    )
    .await;
    d.call(&doc, post.clone(), "/api/v1/encounters/{id}/diagnoses", &e("/diagnoses"), Some(json!({"code": "I10"})), &p)
        .await;
    d.call(
        &doc,
        put.clone(),
        "/api/v1/encounters/{id}/notes",
        &e("/notes"),
        Some(json!({"notes": "血压控制不佳"})),
        &p,
    )
    .await;
    let rx = id(&d
        .call(&doc, post.clone(), "/api/v1/encounters/{id}/prescriptions", &e("/prescriptions"), Some(json!({"lines": [
            {"drug_code": "amlodipine-5mg", "dose": 5, "dose_unit": "mg", "frequency": "qd", "days": 7, "quantity": 7}]})), &p)
        .await);
    let bill = id(&d
        .call(
            &doc,
            post.clone(),
            "/api/v1/encounters/{id}/charges",
            &e("/charges"),
            Some(json!({"fee_items": [{"code": "consultation"}]})),
            &p,
        )
        .await);
    d.call(&doc, get.clone(), "/api/v1/bills/{id}", &format!("/api/v1/bills/{bill}"), None, &p).await;
    let owed = app.get(&format!("/api/v1/bills/{bill}"), &doc.token).await.body["owed_fen"].as_i64().unwrap();
    let payment = id(&d
        .call(
            &doc,
            post.clone(),
            "/api/v1/bills/{id}/payments",
            &format!("/api/v1/bills/{bill}/payments"),
            Some(json!({"method": "cash", "amount_fen": owed})),
            &p,
        )
        .await);
    d.call(&doc, get.clone(), "/api/v1/prescriptions/{id}", &format!("/api/v1/prescriptions/{rx}"), None, &p).await;
    d.call(
        &doc,
        post.clone(),
        "/api/v1/prescriptions/{id}/dispense",
        &format!("/api/v1/prescriptions/{rx}/dispense"),
        Some(json!({})),
        &p,
    )
    .await;
    d.call(&doc, post.clone(), "/api/v1/encounters/{id}/close", &e("/close"), Some(json!({})), &p).await;
    d.call(
        &doc,
        post.clone(),
        "/api/v1/encounters/{id}/addenda",
        &e("/addenda"),
        Some(json!({"text": "补记：建议一周后复诊"})),
        &p,
    )
    .await;
    d.call(&doc, get.clone(), "/api/v1/encounters/{id}", &e(""), None, &p).await;
    d.call(&doc, get.clone(), "/api/v1/encounters", &format!("/api/v1/encounters?person_id={p}"), None, &p).await;
    d.call(
        &doc,
        post.clone(),
        "/api/v1/payments/{id}/refunds",
        &format!("/api/v1/payments/{payment}/refunds"),
        Some(json!({"amount_fen": 100, "reason": "多收挂号费"})),
        &p,
    )
    .await;
    d.call(&doc, get.clone(), "/api/v1/patients/{id}/summary", &format!("/api/v1/patients/{p}/summary"), None, &p)
        .await;
    d.call(
        &finance,
        get.clone(),
        "/api/v1/accounts/patients/{id}/statement",
        &format!("/api/v1/accounts/patients/{p}/statement"),
        None,
        &p,
    )
    .await;
    d.call(
        &county_doctor,
        post.clone(),
        "/api/v1/patients/{id}/break-glass",
        &format!("/api/v1/patients/{p}/break-glass"),
        Some(json!({"reason": "急诊昏迷，需查看既往用药与过敏史"})),
        &p,
    )
    .await;
    d.call(
        &doc,
        post.clone(),
        "/api/v1/patients/{id}/reveal",
        &format!("/api/v1/patients/{p}/reveal"),
        Some(json!({"field": "resident_id", "purpose": "identity_check", "reason": "核对身份证"})),
        &p,
    )
    .await;

    // Follow-ups: the closed hypertension visit raises a suggestion.
    let mut suggestion = None;
    for _ in 0..200 {
        let s = app.get("/api/v1/followups/suggestions", &doc.token).await;
        if let Some(s) = s.body.as_array().unwrap().iter().find(|s| s["person_id"] == p.as_str()) {
            suggestion = Some(s["id"].as_str().unwrap().to_string());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let suggestion = suggestion.expect("a suggestion to enroll");
    d.call(&doc, get.clone(), "/api/v1/followups/suggestions", "/api/v1/followups/suggestions", None, &p).await;
    d.call(
        &doc,
        post.clone(),
        "/api/v1/followups/suggestions/{id}/dismiss",
        &format!("/api/v1/followups/suggestions/{suggestion}/dismiss"),
        Some(json!({})),
        &p,
    )
    .await;
    let en = id(&d
        .call(
            &doc,
            post.clone(),
            "/api/v1/followups/enrollments",
            "/api/v1/followups/enrollments",
            Some(json!({"person_id": p, "disease": "hypertension", "diagnosed_on": "2025-01-01"})),
            &p,
        )
        .await);
    let f = |rest: &str| format!("/api/v1/followups/enrollments/{en}{rest}");
    d.call(&doc, get.clone(), "/api/v1/followups/enrollments", "/api/v1/followups/enrollments", None, &p).await;
    d.call(&doc, get.clone(), "/api/v1/followups/worklist", "/api/v1/followups/worklist", None, &p).await;
    d.call(&doc, get.clone(), "/api/v1/followups/worklist.csv", "/api/v1/followups/worklist.csv", None, &p).await;
    d.call(
        &doc,
        post.clone(),
        "/api/v1/followups/enrollments/{id}/followups",
        &f("/followups"),
        Some(json!({"visit_on": "2026-01-10", "systolic": 130, "diastolic": 80, "adherence": "regular"})),
        &p,
    )
    .await;
    d.call(&doc, get.clone(), "/api/v1/followups/enrollments/{id}", &f(""), None, &p).await;
    d.call(&doc, get.clone(), "/api/v1/followups/enrollments/{id}/status", &f("/status"), None, &p).await;
    d.call(
        &doc,
        post.clone(),
        "/api/v1/followups/enrollments/{id}/close",
        &f("/close"),
        Some(json!({"reason": "moved"})),
        &p,
    )
    .await;

    // Referrals: up to the county, through every step, and the other ways one ends.
    let county = ids["county-hospital"].to_string();
    let up = |draft: bool| json!({"person_id": p, "direction": "up", "to_institution_id": county, "reason": "血压控制不佳", "draft": draft});
    let r1 = id(&d.call(&doc, post.clone(), "/api/v1/referrals", "/api/v1/referrals", Some(up(false)), &p).await);
    let r = |id: &str, rest: &str| format!("/api/v1/referrals/{id}{rest}");
    d.call(&doc, get.clone(), "/api/v1/referrals/sent", "/api/v1/referrals/sent", None, &p).await;
    d.call(&coordinator, get.clone(), "/api/v1/referrals/inbox", "/api/v1/referrals/inbox", None, &p).await;
    d.call(&coordinator, get.clone(), "/api/v1/referrals/{id}", &r(&r1, ""), None, &p).await;
    d.call(&coordinator, post.clone(), "/api/v1/referrals/{id}/accept", &r(&r1, "/accept"), Some(json!({})), &p).await;
    d.call(&coordinator, get.clone(), "/api/v1/referrals/{id}/records", &r(&r1, "/records"), None, &p).await;
    d.call(&coordinator, post.clone(), "/api/v1/referrals/{id}/arrive", &r(&r1, "/arrive"), Some(json!({})), &p).await;
    d.call(
        &coordinator,
        post.clone(),
        "/api/v1/referrals/{id}/complete",
        &r(&r1, "/complete"),
        Some(json!({"note": "血压已控制"})),
        &p,
    )
    .await;
    d.call(
        &coordinator,
        post.clone(),
        "/api/v1/referrals/{id}/down",
        &r(&r1, "/down"),
        Some(json!({"discharge_summary": "出院小结", "rehab_plan": "康复计划"})),
        &p,
    )
    .await;
    let r2 = id(&app.post("/api/v1/referrals", &doc.token, up(true)).await);
    d.call(&doc, post.clone(), "/api/v1/referrals/{id}/submit", &r(&r2, "/submit"), Some(json!({})), &p).await;
    d.call(
        &coordinator,
        post.clone(),
        "/api/v1/referrals/{id}/reject",
        &r(&r2, "/reject"),
        Some(json!({"note": "床位已满"})),
        &p,
    )
    .await;
    let r3 = id(&app.post("/api/v1/referrals", &doc.token, up(false)).await);
    d.call(
        &doc,
        post.clone(),
        "/api/v1/referrals/{id}/cancel",
        &r(&r3, "/cancel"),
        Some(json!({"note": "患者拒绝"})),
        &p,
    )
    .await;

    // The MPI steward's work on duplicates.
    cloudhis::patients::seed::seed(&app.state.db, &app.state.pii, admin.tenant_id, 60, 0.3, 5).await.unwrap();
    let w = cloudhis::patients::matching::MatchWeights::default();
    cloudhis::patients::dedup::run(&app.state.db, &app.state.pii, admin.tenant_id, &w, true).await.unwrap();
    let pairs = app.get("/api/v1/patients/duplicates", &admin.token).await.body;
    let pairs = pairs.as_array().unwrap();
    assert!(pairs.len() >= 3, "{pairs:?}");
    let a = |i: usize| pairs[i]["a"]["id"].as_str().unwrap().to_string();
    let b = |i: usize| pairs[i]["b"]["id"].as_str().unwrap().to_string();
    let pair = |i: usize| pairs[i]["id"].as_str().unwrap().to_string();
    d.call(&admin, get.clone(), "/api/v1/patients/duplicates", "/api/v1/patients/duplicates", None, &a(0)).await;
    let merged = d
        .call(
            &admin,
            post.clone(),
            "/api/v1/patients/duplicates/{id}/merge",
            &format!("/api/v1/patients/duplicates/{}/merge", pair(0)),
            Some(json!({"survivor_id": a(0), "reason": "同一人"})),
            &a(0),
        )
        .await;
    let merge_id = merged.body["merge_id"].as_str().unwrap().to_string();
    d.call(
        &admin,
        post.clone(),
        "/api/v1/patients/merges/{id}/undo",
        &format!("/api/v1/patients/merges/{merge_id}/undo"),
        Some(json!({"reason": "合并有误"})),
        &a(0),
    )
    .await;
    d.call(
        &admin,
        post.clone(),
        "/api/v1/patients/duplicates/{id}/dismiss",
        &format!("/api/v1/patients/duplicates/{}/dismiss", pair(1)),
        Some(json!({"reason": "不是同一人"})),
        &a(1),
    )
    .await;
    d.call(
        &admin,
        post.clone(),
        "/api/v1/patients/merges",
        "/api/v1/patients/merges",
        Some(json!({"survivor_id": a(2), "merged_id": b(2), "reason": "同一人"})),
        &a(2),
    )
    .await;

    // Every patient-data operation was driven, and each call left its row.
    let mut driven: BTreeMap<String, usize> = BTreeMap::new();
    let mut lists_checked = 0;
    for (op, request_id, path, subject) in &d.calls {
        let (_, _, action, purpose) = PHI
            .iter()
            .find(|(m, t, _, _)| format!("{m} {t}") == *op)
            .unwrap_or_else(|| panic!("{op} is driven but not classed as touching patient data"));
        let rows = crate::audit::rows_of_request_id(&app, request_id).await;
        assert!(
            rows.iter().any(|r| r.action == *action
                && r.purpose == *purpose
                && r.outcome == "success"
                && r.subject_person_id == Some(*subject)),
            "{op} ({path}) wrote no `{action}` row for its subject with purpose `{purpose}`: {rows:?}"
        );
        // A list read writes one row per person it showed, no more and no fewer.
        if let Some(shown) = d.shown.get(request_id) {
            let audited: BTreeSet<Uuid> =
                rows.iter().filter(|r| r.action == *action).filter_map(|r| r.subject_person_id).collect();
            assert!(shown.contains(subject), "{op} ({path}) did not show the person it was driven for");
            assert_eq!(&audited, shown, "{op} ({path}): audited persons differ from those shown");
            lists_checked += 1;
        }
        *driven.entry(op.clone()).or_default() += 1;
    }
    for (m, t, _, _) in PHI {
        assert!(
            driven.contains_key(&format!("{m} {t}")),
            "{m} {t} touches patient data but this test does not drive it"
        );
    }
    assert_eq!(lists_checked, LISTS.len(), "every list read was checked person by person");
    eprintln!(
        "audit completeness: {} operations classed ({} touch patient data, {} do not), {} calls checked, \
         {lists_checked} list reads person by person",
        classed.len(),
        PHI.len(),
        NOT_PHI.len(),
        d.calls.len()
    );
}
