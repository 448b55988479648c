//! Bureau statistics: a small world of visits, referrals and follow-ups built through the API,
//! whose every KPI is computed by hand below; the rebuild from source tables against the
//! event-kept rollups and against a shuffled, duplicated replay; small-cell suppression in the
//! API, CSV and XLSX; and a walk of every route the bureau official may call, checking that no
//! patient identity comes back.

use std::io::Read;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Session, TestApp, spawn_app};
use crate::patients::rid;
use crate::referrals::{count, eventually};

/// Distinctive names, so that a leak is easy to find.
const NAMES: [&str; 6] = ["统计甲", "统计乙", "统计丙", "统计丁", "统计戊", "统计己"];
/// Names take no digits.
const CN: [&str; 5] = ["一", "二", "三", "四", "五"];

pub(crate) struct World {
    pub(crate) persons: Vec<String>,
    pub(crate) identifiers: Vec<String>,
    encounter: String,
    enrollment: String,
    referral: String,
}

async fn visit(app: &TestApp, doc: &Session, person: &str, kind: &str) -> String {
    let enc = app
        .post("/api/v1/encounters", &doc.token, json!({"person_id": person, "chief_complaint": "复诊", "kind": kind}))
        .await;
    assert_eq!(enc.status, 201, "{}", enc.text);
    let id = enc.body["id"].as_str().unwrap().to_string();
    let dx = app.post(&format!("/api/v1/encounters/{id}/diagnoses"), &doc.token, json!({"code": "J06.9"})).await;
    assert_eq!(dx.status, 201, "{}", dx.text);
    let closed = app.post(&format!("/api/v1/encounters/{id}/close"), &doc.token, json!({})).await;
    assert_eq!(closed.status, 200, "{}", closed.text);
    id
}

async fn register(app: &TestApp, doc: &Session, name: &str, seq: u32, ids: &mut Vec<String>) -> String {
    let resident_id = rid("130997", "19600606", 2 * seq + 1);
    let phone = format!("1361234{seq:04}");
    let r = app
        .post("/api/v1/patients", &doc.token, json!({"name": name, "resident_id": resident_id, "phone": phone}))
        .await;
    assert!(r.status.is_success(), "{}", r.text);
    ids.push(resident_id);
    ids.push(phone);
    r.body["person"]["id"].as_str().unwrap().to_string()
}

/// The world of the exact-value test, all of it today:
/// - visits: 6 at 东关村卫生室 (one a whole paid visit: fees 1,100 + drugs 1,120 fen), 5 at
///   东关镇卫生院, 4 at the county hospital (one an emergency): 15, 11 of them grassroots;
/// - referrals: 5 up from the village to the township, 4 accepted and 1 rejected at once,
///   2 completed (with a summary) and 1 of those referred back down; 1 out of the county;
/// - hypertension registry at the village: 6 patients, 5 with four follow-ups in the last year
///   (4 of them controlled at the last, plus the sixth, seen twice, controlled): 6 managed.
pub(crate) async fn world(app: &TestApp) -> World {
    let village = app.login("village.doctor").await;
    let township = app.login("township.doctor").await;
    let county = app.login("county.doctor").await;
    let ids = app.institutions(&village).await;
    let mut identifiers = Vec::new();

    let paid = crate::visit::full_visit(app, &village, 80).await;
    identifiers.push(rid("130999", "19580412", 10 + 2 * 80 + 1));
    identifiers.push("13700000000".into());
    let mut persons = vec![paid.person.clone()];
    for (i, name) in NAMES.iter().enumerate() {
        persons.push(register(app, &village, name, i as u32, &mut identifiers).await);
    }
    for p in &persons[1..6] {
        visit(app, &village, p, "outpatient").await;
    }
    let tp: Vec<String> = {
        let mut v = Vec::new();
        for i in 0..5 {
            v.push(register(app, &township, &format!("镇统计{}", CN[i as usize]), 20 + i, &mut identifiers).await);
        }
        v
    };
    for p in &tp {
        visit(app, &township, p, "outpatient").await;
    }
    let cp: Vec<String> = {
        let mut v = Vec::new();
        for i in 0..4 {
            v.push(register(app, &county, &format!("县统计{}", CN[i as usize]), 30 + i, &mut identifiers).await);
        }
        v
    };
    for (i, p) in cp.iter().enumerate() {
        visit(app, &county, p, if i == 0 { "emergency" } else { "outpatient" }).await;
    }

    let mut referrals = Vec::new();
    for p in &persons[1..6] {
        let r = app
            .post(
                "/api/v1/referrals",
                &village.token,
                json!({"person_id": p, "direction": "up", "to_institution_id": ids["th-dongguan"], "reason": "统计测试转诊"}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
        referrals.push(r.body["id"].as_str().unwrap().to_string());
    }
    for (i, r) in referrals.iter().enumerate() {
        let step = if i == 4 { "reject" } else { "accept" };
        let body = if i == 4 { json!({"note": "床位已满"}) } else { json!({}) };
        let x = app.post(&format!("/api/v1/referrals/{r}/{step}"), &township.token, body).await;
        assert_eq!(x.status, 200, "{step}: {}", x.text);
    }
    for r in &referrals[..2] {
        let a = app.post(&format!("/api/v1/referrals/{r}/arrive"), &township.token, json!({})).await;
        assert_eq!(a.status, 200, "{}", a.text);
        let c =
            app.post(&format!("/api/v1/referrals/{r}/complete"), &township.token, json!({"note": "诊治完毕"})).await;
        assert_eq!(c.status, 200, "{}", c.text);
    }
    let down = app
        .post(
            &format!("/api/v1/referrals/{}/down", referrals[0]),
            &township.token,
            json!({"discharge_summary": "病情稳定", "rehab_plan": "社区随访"}),
        )
        .await;
    assert!(down.status.is_success(), "{}", down.text);
    let out = app
        .post(
            "/api/v1/referrals",
            &county.token,
            json!({"person_id": cp[1], "direction": "out", "external_hospital": "省人民医院", "reason": "外转"}),
        )
        .await;
    assert_eq!(out.status, 201, "{}", out.text);

    // The registry: five patients seen four times in the last year, the sixth twice.
    let today = cloudhis::followups::service::today(&app.state);
    let day = |ago: i64| (today - chrono::Duration::days(ago)).to_string();
    let mut enrollment = String::new();
    for (i, p) in persons.iter().take(6).enumerate() {
        let e = app
            .post(
                "/api/v1/followups/enrollments",
                &village.token,
                json!({"person_id": p, "disease": "hypertension", "diagnosed_on": day(400), "enrolled_on": day(390)}),
            )
            .await;
        assert_eq!(e.status, 201, "{}", e.text);
        enrollment = e.body["id"].as_str().unwrap().to_string();
        let visits: &[i64] = if i == 5 { &[100, 10] } else { &[300, 200, 100, 10] };
        for (k, ago) in visits.iter().enumerate() {
            let last = k == visits.len() - 1;
            // Patient 0's last reading is 150/95: above the KPI's 140/90.
            let (s, d) = if last && i == 0 { (150, 95) } else { (132, 82) };
            let f = app
                .post(
                    &format!("/api/v1/followups/enrollments/{enrollment}/followups"),
                    &village.token,
                    json!({"visit_on": day(*ago), "systolic": s, "diastolic": d, "adherence": "regular"}),
                )
                .await;
            assert_eq!(f.status, 201, "{}", f.text);
        }
    }
    caught_up(app).await;
    World { persons, identifiers, encounter: paid.encounter, enrollment, referral: referrals[0].clone() }
}

/// Waits until the statistics consumer has applied every event it follows.
pub(crate) async fn caught_up(app: &TestApp) {
    let wanted = "SELECT count(*) FROM outbox WHERE event_type = 'clinical.encounter_closed' OR event_type = 'billing.charge_posted'
                   OR event_type LIKE 'referrals.%' OR event_type LIKE 'followups.%'";
    let total = count(app, wanted).await;
    eventually("the statistics consumer", 30, || async {
        count(app, "SELECT count(*) FROM processed_events WHERE consumer = 'statistics'").await >= total
    })
    .await;
}

fn kpi<'a>(report: &'a Value, code: &str) -> &'a Value {
    report["kpis"].as_array().unwrap().iter().find(|k| k["code"] == code).unwrap_or_else(|| panic!("{code}"))
}

#[tokio::test]
async fn every_kpi_of_a_known_world_is_exactly_the_hand_computed_value() {
    let app = spawn_app().await;
    app.load_demo().await;
    world(&app).await;
    let bureau = app.login("bureau").await;
    let r = app.get("/api/v1/statistics/kpis", &bureau.token).await;
    assert_eq!(r.status, 200, "{}", r.text);

    // (code, value, text) computed by hand from the world above.
    let expected: [(&str, Option<f64>, &str); 17] = [
        ("county_retention", Some(15.0 / 16.0), "93.8%"),
        ("grassroots_share", Some(11.0 / 15.0), "73.3%"),
        ("visits", Some(15.0), "15"),
        ("referrals_up", Some(5.0), "5"),
        ("referrals_down", None, "<5"),
        ("down_up_ratio", None, "<5"),
        ("referrals_out", None, "<5"),
        // Accepted or rejected within the minute they were sent: five decisions of 0 minutes.
        ("decision_median_minutes", Some(0.0), "0"),
        ("decision_p90_minutes", Some(0.0), "0"),
        // Four accepted, two closed: both counts under five.
        ("closed_loop_rate", None, "<5"),
        ("hypertension_registered", Some(6.0), "6"),
        ("hypertension_standard_rate", Some(5.0 / 6.0), "83.3%"),
        ("hypertension_control_rate", Some(5.0 / 6.0), "83.3%"),
        ("diabetes_standard_rate", None, "-"),
        ("diabetes_control_rate", None, "-"),
        // 2,220 fen charged over 15 visits.
        ("avg_outpatient_cost", Some(148.0), "1.48"),
        ("drug_share", Some(1120.0 / 2220.0), "50.5%"),
    ];
    for (code, value, text) in expected {
        let k = kpi(&r.body, code);
        assert_eq!(k["value"].as_f64(), value, "{code}: {k}");
        assert_eq!(k["text"], text, "{code}: {k}");
        assert_eq!(k["suppressed"], text == "<5", "{code}: {k}");
    }

    // Drill-down: the community's first level is the county hospital on its own, then each of
    // its townships with their villages; a township's level is itself alone, then its villages.
    let ids = app.institutions(&bureau).await;
    let rows = r.body["children"].as_array().unwrap();
    assert_eq!(rows.len(), 4, "{rows:?}");
    assert_eq!(
        (rows[0]["institution_id"].as_str(), rows[0]["own"].as_bool()),
        (Some(&*ids["county-hospital"].to_string()), Some(true))
    );
    assert!(rows[1..].iter().all(|c| c["kind"] == "township_health_centre" && c["own"] == false), "{rows:?}");
    let dongguan = rows.iter().find(|c| c["institution_id"] == ids["th-dongguan"].to_string()).unwrap();
    assert_eq!(kpi(dongguan, "visits")["value"], 11.0, "the township with its villages");
    let th = app.get(&format!("/api/v1/statistics/kpis?institution_id={}", ids["th-dongguan"]), &bureau.token).await;
    assert_eq!(th.status, 200, "{}", th.text);
    assert_eq!(kpi(&th.body, "visits")["value"], 11.0, "the township and its villages");
    assert_eq!(kpi(&th.body, "grassroots_share")["value"], 1.0);
    assert_eq!(th.body["children"][0]["institution_id"], ids["th-dongguan"].to_string());
    assert_eq!(th.body["children"][0]["own"], true, "the township alone comes first");
    let village = th.body["children"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["institution_id"] == ids["v-dongguan"].to_string())
        .unwrap();
    assert_eq!(kpi(village, "visits")["value"], 6.0);
    assert_eq!(kpi(village, "referrals_up")["value"], 5.0);
    let quiet = th.body["children"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["institution_id"] == ids["v-qianying"].to_string())
        .unwrap();
    assert_eq!(kpi(quiet, "visits")["value"], 0.0, "zero reveals no one and is shown");
    // Looking back to 50 days ago: the last follow-ups (10 days ago) are after it, so the
    // window holds three of the four (300, 200, 100 days ago; one for the sixth patient), all
    // controlled: nobody has four, everybody managed is controlled.
    let today = cloudhis::followups::service::today(&app.state);
    let back = today - chrono::Duration::days(50);
    let earlier = app
        .get(&format!("/api/v1/statistics/kpis?from={}&to={back}", back - chrono::Duration::days(30)), &bureau.token)
        .await;
    assert_eq!(kpi(&earlier.body, "hypertension_registered")["value"], 6.0);
    assert_eq!(kpi(&earlier.body, "hypertension_standard_rate")["text"], "0.0%");
    assert_eq!(kpi(&earlier.body, "hypertension_control_rate")["text"], "100.0%");
    // A period before any of it is empty, not an error.
    let past = app.get("/api/v1/statistics/kpis?from=2020-01-01&to=2020-12-31", &bureau.token).await;
    assert_eq!(kpi(&past.body, "visits")["value"], 0.0);
    // A time series: today's bucket holds the fifteen visits.
    let s = app
        .get(
            &format!(
                "/api/v1/statistics/series?kpi=visits&grain=day&from={}&to={today}",
                today - chrono::Duration::days(2)
            ),
            &bureau.token,
        )
        .await;
    assert_eq!(s.status, 200, "{}", s.text);
    let points = s.body["points"].as_array().unwrap();
    assert_eq!(points.len(), 3);
    assert_eq!(points[2]["value"], 15.0);
    assert_eq!(points[0]["value"], 0.0);
    // Bad input is a clear 4xx.
    let bad = app.get("/api/v1/statistics/kpis?from=2026-02-01&to=2026-01-01", &bureau.token).await;
    assert_eq!((bad.status.as_u16(), bad.code()), (422, "period_invalid"));
    let bad = app.get("/api/v1/statistics/series?kpi=nonsense", &bureau.token).await;
    assert_eq!((bad.status.as_u16(), bad.code()), (422, "kpi_unknown"));
    let doctor = app.login("village.doctor").await;
    assert_eq!(app.get("/api/v1/statistics/kpis", &doctor.token).await.status, 403);
}

#[tokio::test]
async fn a_rebuild_equals_the_event_kept_rollups_and_a_shuffled_duplicated_replay() {
    let app = spawn_app().await;
    app.load_demo().await;
    world(&app).await;
    let tenant = app.login("bureau").await.tenant_id;
    let db = &app.state.db;
    let kept = cloudhis::statistics::service::snapshot(db, tenant).await.unwrap();
    assert!(kept.daily.len() >= 4 && kept.referrals.len() == 7 && kept.followups.len() == 22, "{kept:?}");

    let report = cloudhis::statistics::service::rebuild(db, tenant).await.unwrap();
    assert_eq!((report.referrals, report.enrollments, report.followups), (7, 6, 22));
    let rebuilt = cloudhis::statistics::service::snapshot(db, tenant).await.unwrap();
    assert_eq!(rebuilt, kept, "the rebuild from source tables equals what the events kept");

    // The command does the same.
    let out = app.cli(&["statistics", "rebuild"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(cloudhis::statistics::service::snapshot(db, tenant).await.unwrap(), kept);

    // Migration 18's fill from the enrollment summaries gives the same registry steps.
    assert!(!kept.registry.is_empty());
    let owner = app.owner_connection().await;
    use sea_orm::ConnectionTrait;
    owner.execute_unprepared("DELETE FROM stat_registry").await.unwrap();
    let fill = migrations::registry_steps_fill_sql(owner.get_database_backend());
    let fill = match owner.get_database_backend() {
        sea_orm::DbBackend::Postgres => format!("SELECT set_config('cloudhis.tenant_id', '{tenant}', true); {fill}"),
        _ => fill,
    };
    owner.execute_unprepared(&fill).await.unwrap();
    assert_eq!(cloudhis::statistics::service::snapshot(db, tenant).await.unwrap(), kept, "the migration's fill");

    // Empty the rollups, then replay every event in a random order, a third of them twice.
    for t in ["stat_daily", "stat_referrals", "stat_enrollments", "stat_followups", "stat_registry"] {
        owner.execute_unprepared(&format!("DELETE FROM {t}")).await.unwrap();
    }
    owner.execute_unprepared("DELETE FROM processed_events WHERE consumer = 'statistics'").await.unwrap();
    let tx = db.begin(&cloudhis::platform::SystemScope { tenant }).await.unwrap();
    let mut events =
        cloudhis::platform::events::published(&tx, &cloudhis::statistics::service::events()).await.unwrap();
    tx.rollback().await.unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(8);
    let extra: Vec<_> = events.iter().filter(|_| rng.random_bool(0.33)).cloned().collect();
    events.extend(extra);
    events.shuffle(&mut rng);
    // Every event of one aggregate (a referral, an enrollment, ...) at once, in the shuffled
    // order: the broker consumer applies up to eight deliveries concurrently, and concurrent
    // events of one referral or enrollment are what once skewed the derived rows. A failed
    // delivery is retried, as a requeued one would be.
    events.sort_by_key(|e| e.aggregate);
    let handler = cloudhis::statistics::service::Rollup;
    for batch in events.chunk_by(|a, b| a.aggregate == b.aggregate) {
        futures::future::join_all(batch.iter().map(|e| async {
            let mut tries = 0;
            while let Err(err) = cloudhis::platform::consumers::apply(db, &handler, e).await {
                tries += 1;
                assert!(tries < 5, "{} kept failing: {err}", e.event_type);
            }
        }))
        .await;
    }
    let replayed = cloudhis::statistics::service::snapshot(db, tenant).await.unwrap();
    assert_eq!(replayed, kept, "order, concurrency and duplicates change nothing");
}

async fn download(app: &TestApp, path: &str, token: &str) -> (reqwest::header::HeaderMap, Vec<u8>) {
    let r = app.client.get(format!("{}{path}", app.base)).bearer_auth(token).send().await.unwrap();
    assert_eq!(r.status(), 200, "{path}");
    let headers = r.headers().clone();
    (headers, r.bytes().await.unwrap().to_vec())
}

#[tokio::test]
async fn small_cells_read_less_than_five_in_the_api_the_csv_and_the_xlsx() {
    let app = spawn_app().await;
    app.load_demo().await;
    world(&app).await;
    let bureau = app.login("bureau").await;
    let ids = app.institutions(&bureau).await;
    // The community: the counts of five and more show, the down- and out-referrals (one each)
    // do not.
    let (headers, csv) = download(&app, "/api/v1/statistics/kpis.csv", &bureau.token).await;
    assert_eq!(headers["content-type"], "text/csv; charset=utf-8");
    assert_eq!(&csv[..3], b"\xEF\xBB\xBF");
    let text = String::from_utf8(csv[3..].to_vec()).unwrap();
    let lines: Vec<&str> = text.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert!(
        lines[0].starts_with("机构,统计期间,县域内就诊率,基层诊疗量占比,诊疗人次,上转人次,下转人次"),
        "{}",
        lines[0]
    );
    let row: Vec<&str> = lines[1].split(',').collect();
    assert_eq!(row[0], "全医共体");
    assert_eq!((row[4], row[5], row[6], row[8]), ("15", "5", "<5", "<5"), "{}", lines[1]);

    // A village with a handful of visits: every count under five reads <5.
    let xihe_doc = app.login("village.doctor2").await;
    for i in 0..3 {
        let p = register(&app, &xihe_doc, &format!("西河统计{}", CN[i as usize]), 50 + i, &mut Vec::new()).await;
        visit(&app, &xihe_doc, &p, "outpatient").await;
    }
    caught_up(&app).await;
    let path = format!("/api/v1/statistics/kpis?institution_id={}", ids["v-xihe"]);
    let r = app.get(&path, &bureau.token).await;
    let v = kpi(&r.body, "visits");
    assert_eq!((v["text"].as_str(), v["suppressed"].as_bool(), v.get("value")), (Some("<5"), Some(true), None));
    assert_eq!(kpi(&r.body, "grassroots_share")["text"], "<5");
    let (_, csv) =
        download(&app, &format!("/api/v1/statistics/kpis.csv?institution_id={}", ids["v-xihe"]), &bureau.token).await;
    let text = String::from_utf8(csv[3..].to_vec()).unwrap();
    let row: Vec<&str> = text.split("\r\n").nth(1).unwrap().split(',').collect();
    assert_eq!((row[0], row[4]), ("西河村卫生室", "<5"));
    assert!(!text.contains(",3,"), "the count of three is nowhere: {text}");

    let (headers, xlsx) =
        download(&app, &format!("/api/v1/statistics/kpis.xlsx?institution_id={}", ids["v-xihe"]), &bureau.token).await;
    assert_eq!(headers["content-type"], "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet");
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(xlsx)).expect("an xlsx is a zip");
    let mut strings = String::new();
    zip.by_name("xl/sharedStrings.xml").unwrap().read_to_string(&mut strings).unwrap();
    assert!(strings.contains("县域内就诊率") && strings.contains("诊疗人次"), "Chinese headers");
    assert!(strings.contains("西河村卫生室"));
    assert!(strings.contains("&lt;5"), "suppressed cells in the workbook: {strings}");
    assert!(!strings.contains(">3<"), "{strings}");
    let mut sheet = String::new();
    zip.by_name("xl/worksheets/sheet1.xml").unwrap().read_to_string(&mut sheet).unwrap();
    let numbers: Vec<&str> = sheet.split("<c ").skip(1).filter(|c| !c.contains("t=\"s\"")).collect();
    assert!(numbers.iter().all(|c| !c.contains("<v>3</v>")), "the count of three is not in a cell: {sheet}");
}

/// Exports speak the asked language, and in the workbook every figure is a number Excel can sum
/// (percentages as fractions formatted as percent), while suppressed cells stay the text `<5`.
#[tokio::test]
async fn exports_come_in_the_asked_language_with_figures_as_numbers() {
    let app = spawn_app().await;
    app.load_demo().await;
    world(&app).await;
    caught_up(&app).await;
    let bureau = app.login("bureau").await;
    let (_, csv) = download(&app, "/api/v1/statistics/kpis.csv?lang=en", &bureau.token).await;
    let text = String::from_utf8(csv[3..].to_vec()).unwrap();
    let mut lines = text.split("\r\n");
    let header = lines.next().unwrap();
    assert!(header.starts_with("Institution,Period,") && header.contains("Visits"), "{header}");
    assert!(!han(&text), "no Chinese in the English CSV: {text}");
    let whole = lines.next().unwrap();
    assert!(whole.starts_with("Whole community,") && whole.contains(" to "), "{whole}");
    assert!(text.contains("Demo County People's Hospital (itself)"), "{text}");
    let bad = app.get("/api/v1/statistics/kpis.csv?lang=fr", &bureau.token).await;
    assert_eq!(bad.status, 400, "{}", bad.text);

    let (_, xlsx) = download(&app, "/api/v1/statistics/kpis.xlsx?lang=en", &bureau.token).await;
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(xlsx)).expect("an xlsx is a zip");
    let mut strings = String::new();
    zip.by_name("xl/sharedStrings.xml").unwrap().read_to_string(&mut strings).unwrap();
    assert!(strings.contains("Institution"), "{strings}");
    let mut book = String::new();
    zip.by_name("xl/workbook.xml").unwrap().read_to_string(&mut book).unwrap();
    assert!(book.contains("name=\"Community KPIs\""), "{book}");
    assert!(!han(&strings), "no Chinese in the English workbook: {strings}");
    let mut sheet = String::new();
    zip.by_name("xl/worksheets/sheet1.xml").unwrap().read_to_string(&mut sheet).unwrap();
    // Row 2 is the community: visits (15) and the grassroots share (1.0) are numbers, not text.
    let row2 = &sheet[sheet.find("<row r=\"2\"").unwrap()..];
    let row2 = &row2[..row2.find("</row>").unwrap()];
    let cell = |col: usize| {
        let at = row2.find(&format!("r=\"{}2\"", (b'A' + col as u8) as char)).unwrap();
        let c = &row2[at..];
        c[..c.find("</c>").unwrap()].to_string()
    };
    let visits = 2 + kpi_index("visits");
    assert!(cell(visits).contains("<v>15</v>") && !cell(visits).contains("t=\"s\""), "{}", cell(visits));
    let share = cell(2 + kpi_index("grassroots_share"));
    let v: f64 = share[share.find("<v>").unwrap() + 3..share.find("</v>").unwrap()].parse().unwrap();
    assert!((0.0..=1.0).contains(&v) && !share.contains("t=\"s\""), "a share is a fraction: {share}");
    let mut styles = String::new();
    zip.by_name("xl/styles.xml").unwrap().read_to_string(&mut styles).unwrap();
    assert!(styles.contains("0.0%"), "percentages are formatted as percent: {styles}");
}

fn kpi_index(code: &str) -> usize {
    cloudhis::statistics::domain::KPIS.iter().position(|k| k.0 == code).unwrap()
}

fn han(s: &str) -> bool {
    s.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c))
}

#[tokio::test]
async fn no_route_the_bureau_may_call_returns_a_patients_identity() {
    let app = spawn_app().await;
    app.load_demo().await;
    let w = world(&app).await;
    let bureau = app.login("bureau").await;
    let village = app.login("village.doctor").await;
    let institutions: Vec<String> = app.institutions(&bureau).await.values().map(|u| u.to_string()).collect();
    let mut secrets: Vec<String> = w.persons.clone();
    secrets.extend(w.identifiers.iter().cloned());
    secrets.extend(NAMES.iter().map(|s| s.to_string()));
    secrets.push("陈建国".into());
    // Every id the bureau could try, real ones included.
    let mut candidates: Vec<String> = w.persons.clone();
    candidates.extend([w.encounter.clone(), w.enrollment.clone(), w.referral.clone(), bureau.user_id.to_string()]);
    candidates.extend(institutions.iter().cloned());

    let spec: Value = serde_json::from_str(&cloudhis::startup::openapi_document()).unwrap();
    let (mut allowed, mut walked) = (Vec::new(), 0);
    for (path, item) in spec["paths"].as_object().unwrap() {
        if !item.as_object().unwrap().contains_key("get") {
            continue;
        }
        let urls: Vec<String> = if path.contains('{') {
            candidates
                .iter()
                .map(|c| {
                    let mut p = path.clone();
                    while let (Some(a), Some(b)) = (p.find('{'), p.find('}')) {
                        p.replace_range(a..=b, c);
                    }
                    p
                })
                .collect()
        } else {
            vec![path.clone()]
        };
        for url in urls {
            walked += 1;
            let r = tokio::time::timeout(
                std::time::Duration::from_secs(5),
                app.request(Method::GET, &url, Some(&bureau.token), None),
            )
            .await
            .unwrap_or_else(|_| panic!("GET {url} kept streaming to the bureau"));
            if r.status.is_success() {
                allowed.push(path.clone());
                for s in &secrets {
                    assert!(!r.text.contains(s.as_str()), "GET {url} shows the bureau a patient's identity ({s})");
                }
            }
        }
    }
    allowed.dedup();
    assert!(walked > 50, "walked {walked} requests");
    for must in ["/api/v1/statistics/kpis", "/api/v1/statistics/kpis.csv", "/api/v1/institutions"] {
        assert!(allowed.iter().any(|p| p == must), "{must} is the bureau's: {allowed:?}");
    }
    // The same walk as a clinician does find identities: the check above can fail.
    let r = app.get(&format!("/api/v1/patients/{}", w.persons[1]), &village.token).await;
    assert!(r.text.contains(NAMES[0]));
}

/// Decision times are whole minutes, truncated (59.9 s is 0, 120 s is 2), the same on both
/// backends; loops count accepted up-referrals completed with a summary or referred down.
#[tokio::test]
async fn decision_times_are_truncated_whole_minutes_and_loops_count_on_either_backend() {
    use chrono::{Duration, TimeZone, Utc};
    use cloudhis::statistics::entity::stat_referral;
    use sea_orm::{ActiveModelTrait, IntoActiveModel};
    let app = spawn_app().await;
    app.load_demo().await;
    let bureau = app.login("bureau").await;
    let ids = app.institutions(&bureau).await;
    let (village, township) = (ids["v-dongguan"], ids["th-dongguan"]);
    let db = &app.state.db;
    let tx = db.begin(&cloudhis::platform::SystemScope { tenant: bureau.tenant_id }).await.unwrap();
    // Sent at 10:00:00.250 China time on 2026-03-02; decided after these many milliseconds.
    let sent = Utc.with_ymd_and_hms(2026, 3, 2, 2, 0, 0).unwrap() + Duration::milliseconds(250);
    let rows: [(i64, bool, bool, bool); 6] = [
        (59_900, true, true, false),
        (60_000, true, false, true),
        (120_000, true, false, false),
        (125_500, false, false, false),
        (3_599_999, true, true, true),
        (5_400_000, true, false, false),
    ];
    for (ms, accepted, summary, down) in rows {
        stat_referral::Model {
            tenant_id: bureau.tenant_id,
            referral_id: uuid::Uuid::now_v7(),
            direction: "up".into(),
            from_institution: village,
            to_institution: Some(township),
            parent_id: None,
            requested_at: Some(sent),
            decided_at: Some(sent + Duration::milliseconds(ms)),
            accepted: Some(accepted),
            completed_at: summary.then_some(sent + Duration::days(1)),
            summary,
            referred_down: down,
        }
        .into_active_model()
        .insert(&*tx)
        .await
        .unwrap();
    }
    let day = chrono::NaiveDate::from_ymd_opt(2026, 3, 2).unwrap();
    let per =
        cloudhis::statistics::service::inputs(&tx, day, day, cloudhis::statistics::domain::Sources::ALL).await.unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(per[&township].decision_minutes, cloudhis::statistics::domain::histogram(&[0, 1, 2, 2, 59, 90]));
    assert_eq!((per[&township].loop_accepted, per[&township].loop_closed), (5, 3));
    assert_eq!(per[&village].referrals_up, 6);
    // The day after sees none of them.
    let tx = db.begin(&cloudhis::platform::SystemScope { tenant: bureau.tenant_id }).await.unwrap();
    let next = day.succ_opt().unwrap();
    let per = cloudhis::statistics::service::inputs(&tx, next, next, cloudhis::statistics::domain::Sources::ALL)
        .await
        .unwrap();
    assert!(per.get(&township).is_none_or(|i| i.decision_minutes.is_empty()));
}
