//! Chronic-disease management: enrollment to a year's management status, the referral rules
//! (two uncontrolled follow-ups in a row; danger values), the worklist of a frozen day checked
//! against hand-computed expectations, its CSV export, impossible values, suggestions from closed
//! encounters, and isolation between institutions.

use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{Session, TestApp, spawn_app};
use crate::patients::rid;
use crate::referrals::{count, eventually};

/// Registers a person at `doc`'s institution (born 1960-01-01 unless `birth` says otherwise).
async fn resident(app: &TestApp, doc: &Session, name: &str, birth: &str, seq: u32) -> String {
    let r = app
        .post(
            "/api/v1/patients",
            &doc.token,
            json!({"name": name, "resident_id": rid("130998", birth, 2 * seq + 1), "phone": format!("1390000{seq:04}")}),
        )
        .await;
    assert!(r.status.is_success(), "{}", r.text);
    r.body["person"]["id"].as_str().unwrap().to_string()
}

async fn enroll(app: &TestApp, doc: &Session, body: Value) -> Value {
    let r = app.post("/api/v1/followups/enrollments", &doc.token, body).await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.body
}

async fn follow_up(app: &TestApp, doc: &Session, enrollment: &str, body: Value) -> Value {
    let r = app.post(&format!("/api/v1/followups/enrollments/{enrollment}/followups"), &doc.token, body).await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.body
}

/// 09:00 China time on `day`, as an instant to freeze the application's clock at.
fn frozen(day: &str) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(&format!("{day}T09:00:00+08:00")).unwrap().with_timezone(&chrono::Utc)
}

/// A follow-up's status and error code, whatever they are.
async fn follow_up_status(app: &TestApp, doc: &Session, enrollment: &str, body: Value) -> (u16, String) {
    let r = app.post(&format!("/api/v1/followups/enrollments/{enrollment}/followups"), &doc.token, body).await;
    (r.status.as_u16(), r.code().to_string())
}

fn bp(day: &str, s: i32, d: i32) -> Value {
    json!({"visit_on": day, "systolic": s, "diastolic": d, "adherence": "regular", "salt": "moderate",
           "smoking_per_day": 0, "exercise_minutes_per_week": 150, "symptoms": ["头晕"]})
}

#[tokio::test]
async fn enrollment_then_four_follow_ups_give_the_years_management_status() {
    let app = spawn_app().await;
    app.load_demo().await;
    let doc = app.login("village.doctor").await;
    // Born 1960: 66 in 2026, so the blood pressure target is below 150/90.
    let person = resident(&app, &doc, "王秀兰", "19600101", 1).await;
    let e = enroll(
        &app,
        &doc,
        json!({"person_id": person, "disease": "hypertension", "diagnosis_code": "I10",
               "diagnosed_on": "2025-06-01", "enrolled_on": "2025-06-15"}),
    )
    .await;
    let id = e["id"].as_str().unwrap().to_string();
    assert_eq!(e["next_due"], "2025-09-13", "the tenant's quarterly plan: 90 days after enrollment");
    assert_eq!((e["doctor_id"].as_str(), e["visits"].as_i64()), (Some(doc.user_id.to_string().as_str()), Some(0)));
    assert_eq!(e["patient"]["name"], "王秀兰");

    let first = follow_up(&app, &doc, &id, bp("2026-01-10", 152, 92)).await;
    assert_eq!(first["followup"]["classification"], "uncontrolled");
    assert_eq!(first["followup"]["next_on"], "2026-01-24", "uncontrolled: again within two weeks");
    assert!(first["flag"].is_null() && first["referral_id"].is_null(), "{first}");
    for (day, s, d) in [("2026-04-08", 138, 84), ("2026-07-06", 146, 86), ("2026-10-05", 136, 82)] {
        let r = follow_up(&app, &doc, &id, bp(day, s, d)).await;
        assert_eq!(r["followup"]["classification"], "controlled", "{day}: {r}");
    }
    let status = app.get(&format!("/api/v1/followups/enrollments/{id}/status?year=2026"), &doc.token).await;
    assert_eq!(status.status, 200, "{}", status.text);
    assert_eq!(
        status.body,
        json!({"enrollment_id": id, "year": 2026, "followups": 4, "required": 4, "standard": true,
               "last_classification": "controlled", "controlled": true})
    );
    let last_year = app.get(&format!("/api/v1/followups/enrollments/{id}/status?year=2025"), &doc.token).await;
    assert_eq!((last_year.body["followups"].as_i64(), last_year.body["standard"].as_bool()), (Some(0), Some(false)));

    let detail = app.get(&format!("/api/v1/followups/enrollments/{id}"), &doc.token).await;
    assert_eq!(detail.status, 200, "{}", detail.text);
    assert_eq!(detail.body["followups"].as_array().unwrap().len(), 4);
    assert_eq!(detail.body["visits"], 4);
    assert_eq!(detail.body["next_due"], "2027-01-03", "controlled at the last: one interval later");
    assert_eq!(detail.body["uncontrolled_streak"], 0);

    // The events statistics will count, with ids and facts only.
    assert_eq!(count(&app, "SELECT count(*) FROM outbox WHERE event_type = 'followups.enrolled'").await, 1);
    assert_eq!(count(&app, "SELECT count(*) FROM outbox WHERE event_type = 'followups.visit_recorded'").await, 4);
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM outbox WHERE event_type LIKE 'followups.%' AND CAST(payload AS TEXT) LIKE '%王秀兰%'"
        )
        .await,
        0
    );
}

#[tokio::test]
async fn two_uncontrolled_follow_ups_in_a_row_propose_a_draft_referral_up() {
    let app = spawn_app().await;
    app.load_demo().await;
    let doc = app.login("village.doctor").await;
    let township = app.institutions(&doc).await["th-dongguan"];
    let person = resident(&app, &doc, "李国强", "19700315", 2).await;
    let e =
        enroll(&app, &doc, json!({"person_id": person, "disease": "hypertension", "diagnosed_on": "2025-03-01"})).await;
    let id = e["id"].as_str().unwrap().to_string();

    let one = follow_up(&app, &doc, &id, bp("2026-05-01", 158, 96)).await;
    assert!(one["referral_id"].is_null(), "one uncontrolled follow-up is not yet a referral: {one}");
    let two = follow_up(&app, &doc, &id, bp("2026-05-15", 162, 98)).await;
    assert_eq!(two["flag"], "uncontrolled_twice");
    let referral = two["referral_id"].as_str().expect("a draft referral is proposed").to_string();
    assert_eq!(two["enrollment"]["flag"], "uncontrolled_twice");
    assert_eq!(two["enrollment"]["referral_id"], referral.as_str());

    let r = app.get(&format!("/api/v1/referrals/{referral}"), &doc.token).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["status"], "draft", "pre-filled, for the doctor to review and send");
    assert_eq!(r.body["direction"], "up");
    assert_eq!(r.body["to_institution_id"], township.to_string(), "the village clinic's township centre");
    assert_eq!(r.body["urgency"], "routine");
    let reason = r.body["reason"].as_str().unwrap();
    assert!(reason.contains("连续两次随访控制不满意") && reason.contains("162/98"), "{reason}");
    // Nothing was sent: the township has nothing in its inbox yet.
    let township_doc = app.login("township.doctor").await;
    let inbox = app.get("/api/v1/referrals/inbox", &township_doc.token).await;
    assert!(!inbox.text.contains(&referral), "{}", inbox.text);

    // A third uncontrolled follow-up keeps the same open draft rather than making another.
    let three = follow_up(&app, &doc, &id, bp("2026-05-29", 160, 95)).await;
    assert_eq!(three["referral_id"], referral.as_str());
    assert_eq!(count(&app, "SELECT count(*) FROM referrals").await, 1);
    // A danger value while the routine draft is still unsent: the same draft, now urgent and
    // saying what was found.
    let four = follow_up(&app, &doc, &id, bp("2026-06-05", 185, 112)).await;
    assert_eq!((four["flag"].as_str(), four["referral_id"].as_str()), (Some("danger"), Some(referral.as_str())));
    let r = app.get(&format!("/api/v1/referrals/{referral}"), &doc.token).await;
    assert_eq!((r.body["status"].as_str(), r.body["urgency"].as_str()), (Some("draft"), Some("urgent")));
    assert!(r.body["reason"].as_str().unwrap().contains("185/112"), "{}", r.text);
    assert_eq!(count(&app, "SELECT count(*) FROM referrals").await, 1);

    // The doctor sends it: it becomes a real request in the township's inbox.
    let sent = app.post(&format!("/api/v1/referrals/{referral}/submit"), &doc.token, json!({})).await;
    assert_eq!(sent.status, 200, "{}", sent.text);
    assert_eq!(sent.body["status"], "requested");

    // The flag is on the doctor's list.
    let list = app.get("/api/v1/followups/worklist?as_of=2026-06-20", &doc.token).await;
    assert_eq!(list.body["counts"]["flagged"], 1, "{}", list.text);
    assert_eq!(list.body["items"][0]["enrollment"]["flag"], "danger");
}

#[tokio::test]
async fn a_danger_value_is_accepted_and_proposes_an_urgent_draft_at_once() {
    let app = spawn_app().await;
    app.load_demo().await;
    let doc = app.login("village.doctor").await;
    let person = resident(&app, &doc, "赵德明", "19580820", 3).await;
    let dm = enroll(
        &app,
        &doc,
        json!({"person_id": person, "disease": "diabetes", "diagnosis_code": "E11.9", "diagnosed_on": "2024-11-01"}),
    )
    .await;
    let r = follow_up(
        &app,
        &doc,
        dm["id"].as_str().unwrap(),
        json!({"visit_on": "2026-06-02", "glucose": 18.2, "adherence": "intermittent", "symptoms": ["口渴", "多尿"]}),
    )
    .await;
    assert_eq!(r["followup"]["danger"], true);
    assert_eq!(r["followup"]["danger_reasons"], json!(["glucose_16_7"]));
    assert_eq!(r["followup"]["classification"], "uncontrolled");
    assert_eq!(r["flag"], "danger", "flagged at the first follow-up");
    let referral = r["referral_id"].as_str().expect("a draft at once");
    let rf = app.get(&format!("/api/v1/referrals/{referral}"), &doc.token).await;
    assert_eq!((rf.body["status"].as_str(), rf.body["urgency"].as_str()), (Some("draft"), Some("urgent")));
    assert!(rf.body["reason"].as_str().unwrap().contains("18.2"), "{}", rf.text);

    // The same person's hypertension: 185/112 is two danger values, both named.
    let htn =
        enroll(&app, &doc, json!({"person_id": person, "disease": "hypertension", "diagnosed_on": "2024-11-01"})).await;
    let r = follow_up(&app, &doc, htn["id"].as_str().unwrap(), bp("2026-06-02", 185, 112)).await;
    assert_eq!(r["followup"]["danger_reasons"], json!(["systolic_180", "diastolic_110"]));
    assert_eq!(r["flag"], "danger");
    assert_ne!(r["referral_id"].as_str(), Some(referral), "each registry proposes its own referral");
    let drafted = app.get(&format!("/api/v1/referrals/{}", r["referral_id"].as_str().unwrap()), &doc.token).await;
    let reason = drafted.body["reason"].as_str().unwrap();
    assert!(reason.contains("危急值（收缩压≥180 mmHg、舒张压≥110 mmHg）"), "the letter reads as Chinese: {reason}");

    // Flagged on the doctor's list at once, even when the next follow-up is months away.
    let calm = resident(&app, &doc, "钱文华", "19610203", 4).await;
    let later =
        enroll(&app, &doc, json!({"person_id": calm, "disease": "hypertension", "diagnosed_on": "2024-11-01"})).await;
    let mut body = bp("2026-06-02", 182, 100);
    body["next_on"] = json!("2027-05-20");
    let r = follow_up(&app, &doc, later["id"].as_str().unwrap(), body).await;
    assert_eq!(r["flag"], "danger");
    let list = app.get("/api/v1/followups/worklist", &doc.token).await;
    assert_eq!(list.body["counts"]["flagged"], 3, "{}", list.text);
    let flagged = app.get("/api/v1/followups/enrollments?flagged=true", &doc.token).await;
    assert_eq!(flagged.status, 200, "{}", flagged.text);
    let mut names: Vec<&str> =
        flagged.body.as_array().unwrap().iter().map(|e| e["patient"]["name"].as_str().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["赵德明", "赵德明", "钱文华"]);
    assert!(flagged.body.as_array().unwrap().iter().all(|e| e["flag"] == "danger"));
}

#[tokio::test]
async fn a_community_sets_its_own_follow_up_interval() {
    let app = spawn_app().await;
    // The demo community under another code, planning follow-ups every 60 days.
    let text = cloudhis::cli::DEMO_TENANT
        .replace("\"demo-county\"", "\"west-county\"")
        .replace("interval_days = 90", "interval_days = 60");
    app.apply_tenant_file(&text).await;
    let doc = app.login_in("west-county", "village.doctor").await;
    let person = resident(&app, &doc, "孙立平", "19590909", 5).await;
    let e = enroll(
        &app,
        &doc,
        json!({"person_id": person, "disease": "hypertension", "diagnosed_on": "2025-06-01", "enrolled_on": "2025-06-15"}),
    )
    .await;
    assert_eq!(e["next_due"], "2025-08-14", "60 days after enrollment");
    let r = follow_up(&app, &doc, e["id"].as_str().unwrap(), bp("2025-08-10", 132, 82)).await;
    assert_eq!(r["followup"]["next_on"], "2025-10-09", "controlled: the next in 60 days");

    // An interval outside a week to a year is refused with the file, naming the setting.
    let bad = text.replace("interval_days = 60", "interval_days = 5");
    let err = cloudhis::onboarding::parse("west-county.toml", &bad).unwrap_err().to_string();
    assert!(err.contains("interval_days is a whole number of days from 7 to 366"), "{err}");
}

#[tokio::test]
async fn impossible_values_get_422_and_nothing_is_written() {
    let app = spawn_app().await;
    app.load_demo().await;
    let doc = app.login("village.doctor").await;
    let person = resident(&app, &doc, "孙桂芝", "19650505", 4).await;
    let e =
        enroll(&app, &doc, json!({"person_id": person, "disease": "hypertension", "diagnosed_on": "2025-01-01"})).await;
    let path = format!("/api/v1/followups/enrollments/{}/followups", e["id"].as_str().unwrap());
    let tomorrow = (chrono::Utc::now() + chrono::Duration::days(2)).date_naive().to_string();
    let cases = [
        (bp("2026-03-01", 400, 90), "value_out_of_range", "systolic"),
        (bp("2026-03-01", 120, 130), "value_out_of_range", "diastolic"),
        (bp("2026-03-01", 20, 10), "value_out_of_range", "systolic"),
        (json!({"visit_on": "2026-03-01", "systolic": 130, "adherence": "regular"}), "value_required", "diastolic"),
        (json!({"visit_on": "2026-03-01", "adherence": "regular"}), "value_required", "systolic"),
        (
            json!({"visit_on": "2026-03-01", "systolic": 130, "diastolic": 80, "glucose": -1.0, "adherence": "regular"}),
            "value_out_of_range",
            "glucose",
        ),
        (bp(&tomorrow, 130, 80), "date_in_future", "visit_on"),
        (bp("2024-12-01", 130, 80), "date_invalid", "visit_on"),
        (
            json!({"visit_on": "2026-03-01", "systolic": 160, "diastolic": 100, "adherence": "regular", "classification": "controlled"}),
            "classification_inconsistent",
            "classification",
        ),
        (
            json!({"visit_on": "2026-03-01", "systolic": 130, "diastolic": 80, "adherence": "regular", "next_on": "2026-02-01"}),
            "next_date_invalid",
            "next_on",
        ),
        (
            json!({"visit_on": "2026-03-01", "systolic": 130, "diastolic": 80, "adherence": "regular", "smoking_per_day": -3}),
            "value_out_of_range",
            "smoking_per_day",
        ),
    ];
    for (body, code, field) in cases {
        let r = app.post(&path, &doc.token, body.clone()).await;
        assert_eq!((r.status.as_u16(), r.code()), (422, code), "{body}: {}", r.text);
        assert_eq!(r.body["details"]["field"], field, "{body}: {}", r.text);
    }
    // A body that is not a follow-up at all is a 400 from the schema.
    let r = app.post(&path, &doc.token, json!({"visit_on": "yesterday", "adherence": "sometimes"})).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(count(&app, "SELECT count(*) FROM followup_visits").await, 0);
    assert_eq!(count(&app, "SELECT count(*) FROM outbox WHERE event_type = 'followups.visit_recorded'").await, 0);
    let detail = app.get(&format!("/api/v1/followups/enrollments/{}", e["id"].as_str().unwrap()), &doc.token).await;
    assert_eq!(detail.body["visits"], 0);

    // Danger values are real values: accepted, and flagged.
    let ok = app.post(&path, &doc.token, bp("2026-03-01", 220, 125)).await;
    assert_eq!(ok.status, 201, "{}", ok.text);
    assert_eq!(ok.body["followup"]["danger"], true);
    // The same day again is a conflict, an earlier day out of order.
    let again = app.post(&path, &doc.token, bp("2026-03-01", 150, 90)).await;
    assert_eq!((again.status.as_u16(), again.code()), (409, "followup_exists"));
    let earlier = app.post(&path, &doc.token, bp("2026-02-01", 150, 90)).await;
    assert_eq!((earlier.status.as_u16(), earlier.code()), (422, "followup_out_of_order"));

    // Enrollment refuses what makes no sense.
    let bad = [
        (json!({"person_id": person, "disease": "hypertension", "diagnosed_on": tomorrow}), 422, "date_in_future"),
        (
            json!({"person_id": person, "disease": "diabetes", "diagnosed_on": "2025-01-01", "diagnosis_code": "I10"}),
            422,
            "diagnosis_code_invalid",
        ),
        (
            json!({"person_id": person, "disease": "diabetes", "diagnosed_on": "2025-01-01", "enrolled_on": "2024-12-01"}),
            422,
            "date_invalid",
        ),
        (
            json!({"person_id": person, "disease": "diabetes", "diagnosed_on": "2025-01-01", "interval_days": 2}),
            422,
            "interval_invalid",
        ),
        (
            json!({"person_id": person, "disease": "hypertension", "diagnosed_on": "2025-01-01"}),
            409,
            "already_enrolled",
        ),
        (
            json!({"person_id": Uuid::now_v7(), "disease": "diabetes", "diagnosed_on": "2025-01-01"}),
            404,
            "person_not_found",
        ),
        (
            json!({"person_id": person, "disease": "diabetes", "diagnosed_on": "2025-01-01", "doctor_id": Uuid::now_v7()}),
            422,
            "doctor_invalid",
        ),
    ];
    for (body, status, code) in bad {
        let r = app.post("/api/v1/followups/enrollments", &doc.token, body.clone()).await;
        assert_eq!((r.status.as_u16(), r.code()), (status, code), "{body}: {}", r.text);
    }
    assert_eq!(count(&app, "SELECT count(*) FROM chronic_enrollments").await, 1);
}

/// A worklist patient: name, enrolled on, a follow-up (day, next date) if any, whether the other
/// doctor is responsible.
type Planned = (&'static str, &'static str, Option<(&'static str, &'static str)>, bool);

/// The frozen day of the worklist test: Wednesday 10 June 2026, whose week ends on Sunday the 14th.
const AS_OF: &str = "2026-06-10";

#[tokio::test]
async fn the_worklist_of_a_frozen_day_matches_the_hand_computed_one() {
    let app = spawn_app().await;
    app.load_demo().await;
    // The application's clock stops at 09:00 on the day, China time: "today" is AS_OF everywhere.
    app.state.clock.freeze(frozen(AS_OF));
    let doc = app.login("village.doctor").await;
    let ids = app.institutions(&doc).await;
    // A second doctor at the clinic, responsible for one patient.
    let staff = app
        .post(
            &format!("/api/v1/institutions/{}/staff", ids["v-dongguan"]),
            &doc.token,
            json!({"username": "village.doctor3", "display_name": "刘医生", "password": "Village@2026x", "roles": ["village_doctor"]}),
        )
        .await;
    assert_eq!(staff.status, 201, "{}", staff.text);
    let other_doctor = staff.body["id"].as_str().unwrap().to_string();

    let mut enrollment = std::collections::HashMap::new();
    // name, enrolled_on, follow-up (day, next_on) or none, doctor.
    let plan: [Planned; 8] = [
        // A: never seen, due 2026-04-05 (66 days ago): never followed up.
        ("甲", "2026-01-05", None, false),
        // B: seen 03-12, next 06-09: 1 day overdue.
        ("乙", "2026-03-01", Some(("2026-03-12", "2026-06-09")), false),
        // C: seen 03-15, next 06-10: due this week (today).
        ("丙", "2026-02-01", Some(("2026-03-15", "2026-06-10")), false),
        // D: never seen, due 06-18: never followed up.
        ("丁", "2026-03-20", None, false),
        // E: never seen, due Sunday 06-14: never followed up.
        ("戊", "2026-03-16", None, false),
        // F: seen 04-01, next Monday 06-15: not listed.
        ("己", "2026-02-01", Some(("2026-04-01", "2026-06-15")), false),
        // G: never seen, due 04-10 (61 days ago): never followed up, the other doctor's patient.
        ("庚", "2026-01-10", None, true),
        // H: never seen, due 04-01, but closed (moved away): not listed.
        ("辛", "2026-01-01", None, false),
    ];
    for (i, (name, enrolled_on, visit, other)) in plan.iter().enumerate() {
        let person = resident(&app, &doc, &format!("张{name}"), "19620707", 10 + i as u32).await;
        let mut body = json!({"person_id": person, "disease": "hypertension", "diagnosed_on": "2025-12-01", "enrolled_on": enrolled_on});
        if *other {
            body["doctor_id"] = json!(other_doctor);
        }
        let e = enroll(&app, &doc, body).await;
        let id = e["id"].as_str().unwrap().to_string();
        if let Some((day, next)) = visit {
            let mut b = bp(day, 130, 80);
            b["next_on"] = json!(next);
            follow_up(&app, &doc, &id, b).await;
        }
        enrollment.insert(format!("张{name}"), id);
    }
    let closed = app
        .post(
            &format!("/api/v1/followups/enrollments/{}/close", enrollment["张辛"]),
            &doc.token,
            json!({"reason": "moved"}),
        )
        .await;
    assert_eq!(closed.status, 200, "{}", closed.text);
    assert_eq!(closed.body["status"], "closed");
    // Another clinic's overdue patient never shows here.
    let xihe = app.login("village.doctor2").await;
    let p = resident(&app, &xihe, "西河患者", "19500101", 40).await;
    enroll(
        &app,
        &xihe,
        json!({"person_id": p, "disease": "hypertension", "diagnosed_on": "2025-01-01", "enrolled_on": "2025-01-02"}),
    )
    .await;

    let list = app.get("/api/v1/followups/worklist", &doc.token).await;
    assert_eq!(list.status, 200, "{}", list.text);
    assert_eq!((list.body["as_of"].as_str(), list.body["week_end"].as_str()), (Some(AS_OF), Some("2026-06-14")));
    // Two of the four never seen are late already (张甲 66 days, 张庚 61): counted as such.
    assert_eq!(
        list.body["counts"],
        json!({"overdue": 1, "due_this_week": 1, "never_followed_up": 4, "never_followed_up_overdue": 2, "flagged": 0})
    );
    let rows: Vec<(String, String, i64)> = list.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["enrollment"]["patient"]["name"].as_str().unwrap().to_string(),
                i["category"].as_str().unwrap().to_string(),
                i["days_overdue"].as_i64().unwrap(),
            )
        })
        .collect();
    let expected = [
        ("张乙", "overdue", 1),
        ("张丙", "due_this_week", 0),
        ("张甲", "never_followed_up", 66),
        ("张庚", "never_followed_up", 61),
        ("张戊", "never_followed_up", 0),
        ("张丁", "never_followed_up", 0),
    ];
    assert_eq!(rows, expected.map(|(n, c, d)| (n.to_string(), c.to_string(), d)).to_vec());

    // One doctor's list leaves the other doctor's patient out.
    let mine = app.get(&format!("/api/v1/followups/worklist?doctor_id={}", doc.user_id), &doc.token).await;
    let names: Vec<&str> = mine.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["enrollment"]["patient"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["张乙", "张丙", "张甲", "张戊", "张丁"]);
    let theirs = app.get(&format!("/api/v1/followups/worklist?doctor_id={other_doctor}"), &doc.token).await;
    assert_eq!(theirs.body["total"], 1);
    assert_eq!(theirs.body["items"][0]["enrollment"]["doctor_name"], "刘医生");
    // A category, and a page of it.
    let overdue = app.get("/api/v1/followups/worklist?category=never_followed_up&limit=2&offset=1", &doc.token).await;
    assert_eq!(overdue.body["total"], 4);
    let names: Vec<&str> = overdue.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["enrollment"]["patient"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["张庚", "张戊"]);
    // Any other day can be asked for: a week later (Wednesday 17th) B, C and F are overdue.
    let later = app.get("/api/v1/followups/worklist?as_of=2026-06-17", &doc.token).await;
    // Of the never seen, A (due 04-05), E (06-14) and G (04-10) are late by then; D (06-18) not.
    assert_eq!(
        later.body["counts"],
        json!({"overdue": 3, "due_this_week": 0, "never_followed_up": 4, "never_followed_up_overdue": 3, "flagged": 0})
    );

    // The CSV for Excel: BOM, Chinese headers, the same rows.
    let csv = app
        .client
        .get(format!("{}/api/v1/followups/worklist.csv", app.base))
        .bearer_auth(&doc.token)
        .send()
        .await
        .unwrap();
    assert_eq!(csv.status(), 200);
    assert_eq!(csv.headers()["content-type"], "text/csv; charset=utf-8");
    assert!(csv.headers()["content-disposition"].to_str().unwrap().contains("followup-worklist-2026-06-10.csv"));
    let bytes = csv.bytes().await.unwrap();
    assert_eq!(&bytes[..3], b"\xEF\xBB\xBF", "a UTF-8 byte-order mark so that Excel reads Chinese");
    let text = String::from_utf8(bytes[3..].to_vec()).unwrap();
    let lines: Vec<&str> = text.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(
        lines[0],
        "类别,姓名,性别,年龄,联系电话,病种,责任医生,下次随访日期,逾期天数,末次随访日期,随访次数,末次随访评价,标记"
    );
    assert_eq!(lines.len(), 7, "{text}");
    assert!(lines[1].starts_with("已逾期,张乙,"), "{}", lines[1]);
    assert!(lines[2].starts_with("本周到期,张丙,"), "{}", lines[2]);
    assert!(lines[2].contains(",2026-03-15,1,控制满意,"), "{}", lines[2]);
    assert!(lines[3].starts_with("从未随访,张甲,男,63,139000"), "{}", lines[3]);
    assert!(lines[3].contains(",高血压,张卫东,2026-04-05,66,,0,,"), "{}", lines[3]);
    assert!(lines[6].starts_with("从未随访,张丁,"), "{}", lines[6]);

    // And the clock decides what "the future" is: a follow-up dated tomorrow is refused.
    let tomorrow = follow_up_status(&app, &doc, &enrollment["张乙"], bp("2026-06-11", 130, 80)).await;
    assert_eq!(tomorrow, (422, "date_in_future".to_string()));
    assert_eq!(follow_up_status(&app, &doc, &enrollment["张乙"], bp(AS_OF, 130, 80)).await.0, 201);
}

#[tokio::test]
async fn a_closed_encounter_with_hypertension_suggests_enrollment() {
    let app = spawn_app().await;
    app.load_demo().await;
    let doc = app.login("village.doctor").await;
    // The visit closes with I10 (primary hypertension).
    let visit = crate::visit::full_visit(&app, &doc, 60).await;
    let mut suggestion = Value::Null;
    eventually("the enrollment suggestion", 20, || {
        let (app, token) = (&app, doc.token.clone());
        async move { app.get("/api/v1/followups/suggestions", &token).await.body.as_array().is_some_and(|a| !a.is_empty()) }
    })
    .await;
    let list = app.get("/api/v1/followups/suggestions", &doc.token).await;
    assert_eq!(list.body.as_array().unwrap().len(), 1, "{}", list.text);
    suggestion.clone_from(&list.body[0]);
    assert_eq!(suggestion["person_id"], visit.person.as_str());
    assert_eq!(
        (suggestion["disease"].as_str(), suggestion["diagnosis_code"].as_str()),
        (Some("hypertension"), Some("I10"))
    );
    assert_eq!(suggestion["encounter_id"], visit.encounter.as_str());

    // Enrolling answers it.
    enroll(
        &app,
        &doc,
        json!({"person_id": visit.person, "disease": "hypertension", "diagnosed_on": suggestion["diagnosed_on"], "diagnosis_code": "I10"}),
    )
    .await;
    let after = app.get("/api/v1/followups/suggestions", &doc.token).await;
    assert_eq!(after.body, json!([]));

    // Another closed hypertension visit of the same, now enrolled, person suggests nothing.
    let enc =
        app.post("/api/v1/encounters", &doc.token, json!({"person_id": visit.person, "chief_complaint": "复诊"})).await;
    let encounter = enc.body["id"].as_str().unwrap();
    app.post(&format!("/api/v1/encounters/{encounter}/diagnoses"), &doc.token, json!({"code": "I10"})).await;
    let closed = app.post(&format!("/api/v1/encounters/{encounter}/close"), &doc.token, json!({})).await;
    assert_eq!(closed.status, 200, "{}", closed.text);
    eventually("the consumer to see the second encounter", 20, || async {
        count(&app, "SELECT count(*) FROM processed_events WHERE consumer = 'followups.suggest'").await >= 2
    })
    .await;
    assert_eq!(count(&app, "SELECT count(*) FROM enrollment_suggestions").await, 1);

    // A diabetes visit of someone else raises one that can be dismissed, once.
    let p = resident(&app, &doc, "周美华", "19720202", 61).await;
    let enc = app.post("/api/v1/encounters", &doc.token, json!({"person_id": p, "chief_complaint": "多饮多尿"})).await;
    let encounter = enc.body["id"].as_str().unwrap();
    let dx = app.post(&format!("/api/v1/encounters/{encounter}/diagnoses"), &doc.token, json!({"code": "E11.9"})).await;
    assert_eq!(dx.status, 201, "{}", dx.text);
    app.post(&format!("/api/v1/encounters/{encounter}/close"), &doc.token, json!({})).await;
    eventually("the diabetes suggestion", 20, || {
        let (app, token) = (&app, doc.token.clone());
        async move { app.get("/api/v1/followups/suggestions", &token).await.body.as_array().is_some_and(|a| a.len() == 1) }
    })
    .await;
    let s = app.get("/api/v1/followups/suggestions", &doc.token).await.body[0].clone();
    assert_eq!(s["disease"], "diabetes");
    let id = s["id"].as_str().unwrap();
    let d = app.post(&format!("/api/v1/followups/suggestions/{id}/dismiss"), &doc.token, json!({})).await;
    assert_eq!(d.status, 204, "{}", d.text);
    let again = app.post(&format!("/api/v1/followups/suggestions/{id}/dismiss"), &doc.token, json!({})).await;
    assert_eq!((again.status.as_u16(), again.code()), (409, "suggestion_resolved"));
}

#[tokio::test]
async fn a_village_doctor_sees_only_their_own_institutions_registry() {
    let app = spawn_app().await;
    app.load_demo().await;
    let doc = app.login("village.doctor").await;
    let person = resident(&app, &doc, "钱玉珍", "19550909", 5).await;
    let e =
        enroll(&app, &doc, json!({"person_id": person, "disease": "hypertension", "diagnosed_on": "2025-01-01"})).await;
    let id = e["id"].as_str().unwrap();

    let other = app.login("village.doctor2").await;
    for path in [format!("/api/v1/followups/enrollments/{id}"), format!("/api/v1/followups/enrollments/{id}/status")] {
        let r = app.get(&path, &other.token).await;
        assert_eq!((r.status.as_u16(), r.code()), (404, "enrollment_not_found"), "{path}: {}", r.text);
    }
    let r = app
        .post(&format!("/api/v1/followups/enrollments/{id}/followups"), &other.token, bp("2026-02-01", 130, 80))
        .await;
    assert_eq!((r.status.as_u16(), r.code()), (404, "enrollment_not_found"));
    let r =
        app.post(&format!("/api/v1/followups/enrollments/{id}/close"), &other.token, json!({"reason": "other"})).await;
    assert_eq!((r.status.as_u16(), r.code()), (404, "enrollment_not_found"));
    let list = app.get("/api/v1/followups/enrollments", &other.token).await;
    assert_eq!(list.body, json!([]));
    let work = app.get("/api/v1/followups/worklist?as_of=2027-01-01", &other.token).await;
    assert_eq!(work.body["total"], 0);
    // Nor can they enroll a person not registered at their clinic.
    let r = app
        .post(
            "/api/v1/followups/enrollments",
            &other.token,
            json!({"person_id": person, "disease": "diabetes", "diagnosed_on": "2025-01-01"}),
        )
        .await;
    assert_eq!((r.status.as_u16(), r.code()), (404, "person_not_found"));
    // The owner still sees it, and roles without the registry see nothing.
    assert_eq!(app.get("/api/v1/followups/enrollments", &doc.token).await.body.as_array().unwrap().len(), 1);
    let cashier = app.login("county.cashier").await;
    let r = app.get("/api/v1/followups/worklist", &cashier.token).await;
    assert_eq!((r.status.as_u16(), r.code()), (403, "forbidden"));
    let bureau = app.login("bureau").await;
    assert_eq!(app.get("/api/v1/followups/enrollments", &bureau.token).await.status, 403);
}
