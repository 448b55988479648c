//! The demo with a year behind it (issue 23): `serve --demo` loads twelve months of visits,
//! referrals, follow-ups and payments through the API, each step at the moment it would have
//! happened, so that the bureau's first view has no suppressed tile and the clinics have overdue
//! follow-ups; and the rollups the consumers built from those dated events are exactly what a
//! rebuild from the records gives.

use crate::helpers::spawn_app;
use crate::statistics::caught_up;

#[tokio::test]
async fn the_demo_has_a_year_behind_it_and_its_rollups_agree_with_a_rebuild() {
    let app = spawn_app().await;
    app.load_demo().await;
    let h = cloudhis::demo::load_history(&app.state, 12).await.unwrap().expect("a fresh demo takes the history");
    assert_eq!(h.refused, 0, "{h:?}");
    assert!(h.patients >= 50 && h.visits >= 450 && h.referrals >= 180 && h.followups >= 80, "{h:?}");
    assert!(cloudhis::demo::load_history(&app.state, 12).await.unwrap().is_none(), "once, on a fresh demo only");
    caught_up(&app).await;

    // The bureau's first view, this year to date: every community-level tile has a figure.
    let bureau = app.login("bureau").await;
    let r = app.get("/api/v1/statistics/kpis", &bureau.token).await;
    assert_eq!(r.status, 200, "{}", r.text);
    for k in r.body["kpis"].as_array().unwrap() {
        assert!(k["suppressed"] == false && k["text"] != "-", "{k}");
    }
    // The charts: each month of visits and of referrals up and down, this one included.
    for kpi in ["visits", "referrals_up", "referrals_down"] {
        let s = app.get(&format!("/api/v1/statistics/series?kpi={kpi}&grain=month"), &bureau.token).await;
        let points = s.body["points"].as_array().unwrap();
        assert!(points.len() >= 12, "{}", s.text);
        for p in points {
            assert!(p["suppressed"] == false && p["value"].as_f64().unwrap() >= 5.0, "{kpi}: {p}");
        }
    }
    // Dated as they would have been: last December's visits are not this year's.
    let last_dec = app.get("/api/v1/statistics/kpis?from=2025-12-07&to=2025-12-31", &bureau.token).await;
    let visits = last_dec.body["kpis"].as_array().unwrap().iter().find(|k| k["code"] == "visits").unwrap().clone();
    assert!(visits["value"].as_f64().unwrap_or(0.0) >= 5.0, "{visits}");

    // The village clinic's follow-up worklist has patients overdue and never followed up.
    let doc = app.login("village.doctor").await;
    let list = app.get("/api/v1/followups/worklist", &doc.token).await;
    assert_eq!(list.status, 200, "{}", list.text);
    let counts = &list.body["counts"];
    assert!(counts["overdue"].as_i64().unwrap() >= 1 && counts["never_followed_up"].as_i64().unwrap() >= 1, "{counts}");
    // The county's coordinator has referrals waiting, one urgent.
    let coord = app.login("coordinator").await;
    let inbox = app.get("/api/v1/referrals/inbox?status=requested", &coord.token).await;
    assert_eq!(inbox.status, 200, "{}", inbox.text);
    let waiting = inbox.body.as_array().unwrap();
    assert!(waiting.len() >= 2 && waiting.iter().any(|r| r["urgency"] == "urgent"), "{}", inbox.text);

    // The rollups kept from the dated events equal a rebuild from the dated records.
    let db = &app.state.db;
    let kept = cloudhis::statistics::service::snapshot(db, bureau.tenant_id).await.unwrap();
    cloudhis::statistics::service::rebuild(db, bureau.tenant_id).await.unwrap();
    let rebuilt = cloudhis::statistics::service::snapshot(db, bureau.tenant_id).await.unwrap();
    assert!(rebuilt == kept, "the rebuild differs from the event-kept rollups");
}
