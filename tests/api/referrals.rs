//! Two-way referrals: the full loop and its events, who may move a referral, access grants,
//! SLA expiry, the live stream, and dead letters.

use std::time::Duration;

use sea_orm::{ConnectionTrait, Statement};
use serde_json::{Value, json};

use crate::helpers::{Backend, Session, TestApp, spawn_app};
use crate::patients::rid;

/// Registers a person at `doc`'s institution and returns the person id.
pub async fn patient(app: &TestApp, doc: &Session, seq: u32) -> String {
    let r = app
        .post(
            "/api/v1/patients",
            &doc.token,
            json!({"name": "转诊患者", "resident_id": rid("130999", "19600101", 100 + 2 * seq + 1)}),
        )
        .await;
    assert!(r.status.is_success(), "{}", r.text);
    r.body["person"]["id"].as_str().unwrap().to_string()
}

pub async fn count(app: &TestApp, sql: &str) -> i64 {
    let owner = app.owner_connection().await;
    let row = owner.query_one_raw(Statement::from_string(owner.get_database_backend(), sql)).await.unwrap().unwrap();
    row.try_get_by_index::<i64>(0).unwrap()
}

/// Waits until `check` holds (events travel asynchronously).
pub async fn eventually<F, Fut>(what: &str, secs: u64, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A temporary RabbitMQ queue bound to a tenant's referral events.
pub struct TestQueue {
    _conn: lapin::Connection,
    channel: lapin::Channel,
    name: String,
}

impl TestQueue {
    pub async fn bind(app: &TestApp, key: &str) -> Option<Self> {
        let url = app.state.bus.amqp_url()?.to_string();
        Self::bind_as(app, &url, key).await
    }

    /// As `bind`, connecting with `url` (another broker user than the app's).
    pub async fn bind_as(app: &TestApp, url: &str, key: &str) -> Option<Self> {
        use lapin::options::{QueueBindOptions, QueueDeclareOptions};
        use lapin::types::FieldTable;
        let conn = lapin::Connection::connect(url, lapin::ConnectionProperties::default()).await.unwrap();
        let channel = conn.create_channel().await.unwrap();
        let q = channel
            .queue_declare(
                "".into(),
                QueueDeclareOptions { exclusive: true, auto_delete: true, ..Default::default() },
                FieldTable::default(),
            )
            .await
            .unwrap();
        channel
            .queue_bind(
                q.name().clone(),
                app.state.bus.exchange().unwrap().into(),
                key.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
        Some(Self { name: q.name().to_string(), _conn: conn, channel })
    }

    /// Drains what has arrived: (routing key, envelope).
    pub async fn drain(&self) -> Vec<(String, Value)> {
        use lapin::options::BasicGetOptions;
        let mut out = Vec::new();
        while let Some(msg) =
            self.channel.basic_get(self.name.as_str().into(), BasicGetOptions { no_ack: true }).await.unwrap()
        {
            out.push((msg.delivery.routing_key.to_string(), serde_json::from_slice(&msg.delivery.data).unwrap()));
        }
        out
    }
}

#[tokio::test]
async fn the_full_loop_up_and_back_down_with_its_events() {
    let app = spawn_app().await;
    app.load_demo().await;
    let village = app.login("village.doctor").await;
    let county = app.login("coordinator").await;
    let queue = TestQueue::bind(&app, &format!("{}.referrals.#", village.tenant_id)).await;
    let ids = app.institutions(&county).await;
    let person = patient(&app, &village, 0).await;
    let enc = app.post("/api/v1/encounters", &village.token, json!({"person_id": person})).await.body["id"]
        .as_str()
        .unwrap()
        .to_string();
    app.post(&format!("/api/v1/encounters/{enc}/vitals"), &village.token, json!({"systolic": 186, "diastolic": 112}))
        .await;
    app.post(&format!("/api/v1/encounters/{enc}/diagnoses"), &village.token, json!({"code": "I10"})).await;

    let up = app
        .post(
            "/api/v1/referrals",
            &village.token,
            json!({"person_id": person, "direction": "up", "to_institution_id": ids["county-hospital"],
                   "reason": "血压危急值，需上级医院处理", "urgent": true, "source_encounter_id": enc}),
        )
        .await;
    assert_eq!(up.status, 201, "{}", up.text);
    let up_id = up.body["id"].as_str().unwrap().to_string();
    assert_eq!(up.body["status"], "requested");
    assert_eq!(up.body["clinical_summary"]["clinical"]["diagnoses"][0]["code"], "I10");
    assert_eq!(up.body["clinical_summary"]["clinical"]["vitals"][0]["systolic"], 186);
    // Urgent: the demo's urgent limit, two hours (routine: 24).
    let left = up.body["sla_seconds_left"].as_i64().unwrap();
    assert!(left > 3600 + 55 * 60 && left <= 2 * 3600, "{left}");

    // The coordinator's inbox shows it, with the SLA.
    let inbox = app.get("/api/v1/referrals/inbox?status=requested", &county.token).await;
    assert_eq!(inbox.body[0]["id"], up_id.as_str());
    assert_eq!(inbox.body[0]["person_name"], "转诊患者");
    for step in ["accept", "arrive"] {
        let r = app.post(&format!("/api/v1/referrals/{up_id}/{step}"), &county.token, json!({})).await;
        assert_eq!(r.status, 200, "{step}: {}", r.text);
    }
    let done = app
        .post(&format!("/api/v1/referrals/{up_id}/complete"), &county.token, json!({"note": "血压控制平稳，出院"}))
        .await;
    assert_eq!(done.body["status"], "completed");
    let down = app
        .post(
            &format!("/api/v1/referrals/{up_id}/down"),
            &county.token,
            json!({"discharge_summary": "高血压3级，已调整用药", "rehab_plan": "每周测血压两次，一月后随访"}),
        )
        .await;
    assert_eq!(down.status, 201, "{}", down.text);
    let down_id = down.body["id"].as_str().unwrap().to_string();
    assert_eq!(down.body["direction"], "down");
    assert_eq!(down.body["to_institution_id"], village.institution_id.to_string());
    assert_eq!(down.body["parent_id"], up_id.as_str());
    // The village sees it come back, and accepts.
    let back = app.get("/api/v1/referrals/inbox", &village.token).await;
    assert_eq!(back.body[0]["id"], down_id.as_str());
    assert_eq!(back.body[0]["rehab_plan"], "每周测血压两次，一月后随访");
    let acc = app.post(&format!("/api/v1/referrals/{down_id}/accept"), &village.token, json!({})).await;
    assert_eq!(acc.body["status"], "accepted");
    let history = app.get(&format!("/api/v1/referrals/{up_id}"), &village.token).await;
    let statuses: Vec<&str> =
        history.body["transitions"].as_array().unwrap().iter().map(|t| t["to_status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["requested", "accepted", "arrived", "completed"]);

    // The consumer notified both institutions of all six events, once each.
    eventually("notifications", 20, || async {
        count(&app, "SELECT count(*) FROM referral_notifications").await == 12
    })
    .await;
    let notes = app.get("/api/v1/referrals/notifications", &village.token).await;
    assert_eq!(notes.body.as_array().unwrap().len(), 6);

    // On RabbitMQ, a queue of our own sees every event with its routing key and payload.
    if let Some(q) = queue {
        let mut seen = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while seen.len() < 6 {
            assert!(tokio::time::Instant::now() < deadline, "six events on the test queue: {seen:?}");
            seen.extend(q.drain().await);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let expected = [
            ("referrals.requested", &up_id, "requested"),
            ("referrals.accepted", &up_id, "accepted"),
            ("referrals.arrived", &up_id, "arrived"),
            ("referrals.completed", &up_id, "completed"),
            ("referrals.requested", &down_id, "requested"),
            ("referrals.accepted", &down_id, "accepted"),
        ];
        for ((key, env), (ty, id, status)) in seen.iter().zip(expected) {
            assert_eq!(key, &format!("{}.{ty}", village.tenant_id));
            assert_eq!(env["type"], ty);
            assert_eq!(env["payload"]["referral"], id.as_str());
            assert_eq!(env["payload"]["status"], status);
            assert!(!env.to_string().contains("血压"), "events carry no free text");
        }
    }
}

#[tokio::test]
async fn only_the_right_party_moves_a_referral_and_terminal_states_stay() {
    let app = spawn_app().await;
    app.load_demo().await;
    app.load_other_tenant("other-county").await;
    let village = app.login("village.doctor").await;
    let other_village = app.login("village.doctor2").await;
    let county = app.login("coordinator").await;
    let ids = app.institutions(&county).await;
    let person = patient(&app, &village, 1).await;
    let make =
        |to: &str| json!({"person_id": person, "direction": "up", "to_institution_id": ids[to], "reason": "转诊"});
    let r = app.post("/api/v1/referrals", &village.token, make("county-hospital")).await;
    let id = r.body["id"].as_str().unwrap().to_string();

    // The sender cannot accept its own referral; an uninvolved clinic cannot see it.
    let own = app.post(&format!("/api/v1/referrals/{id}/accept"), &village.token, json!({})).await;
    assert_eq!((own.status.as_u16(), own.code()), (403, "referral_wrong_party"));
    let stranger = app.post(&format!("/api/v1/referrals/{id}/accept"), &other_village.token, json!({})).await;
    assert_eq!((stranger.status.as_u16(), stranger.code()), (404, "referral_not_found"));
    // The receiver cannot cancel; arrival before acceptance does not exist.
    let cancel = app.post(&format!("/api/v1/referrals/{id}/cancel"), &county.token, json!({"note": "x"})).await;
    assert_eq!(
        (cancel.status.as_u16(), cancel.code()),
        (403, "forbidden"),
        "a coordinator has no referral.write: {}",
        cancel.text
    );
    let early = app.post(&format!("/api/v1/referrals/{id}/arrive"), &county.token, json!({})).await;
    assert_eq!((early.status.as_u16(), early.code()), (409, "referral_invalid_transition"));
    // Rejected is terminal.
    let reject = app
        .post(&format!("/api/v1/referrals/{id}/reject"), &county.token, json!({"note": "床位已满，建议转县中医院"}))
        .await;
    assert_eq!(reject.body["status"], "rejected");
    assert_eq!(reject.body["reject_reason"], "床位已满，建议转县中医院");
    for step in ["accept", "arrive"] {
        let r = app.post(&format!("/api/v1/referrals/{id}/{step}"), &county.token, json!({})).await;
        assert_eq!((r.status.as_u16(), r.code()), (409, "referral_invalid_transition"), "{step}");
    }
    let late_cancel = app.post(&format!("/api/v1/referrals/{id}/cancel"), &village.token, json!({"note": "x"})).await;
    assert_eq!((late_cancel.status.as_u16(), late_cancel.code()), (409, "referral_invalid_transition"));
    let after = app.get(&format!("/api/v1/referrals/{id}"), &village.token).await;
    assert_eq!(after.body["status"], "rejected");
    assert_eq!(after.body["transitions"].as_array().unwrap().len(), 2, "refused moves left no history");

    // Sideways or down is not up; another community's institution does not exist here.
    let sideways = app.post("/api/v1/referrals", &village.token, make("v-xihe")).await;
    assert_eq!((sideways.status.as_u16(), sideways.code()), (422, "referral_direction_invalid"));
    let theirs = app.login_in("other-county", "coordinator").await;
    let foreign = app.institutions(&theirs).await["county-hospital"];
    let cross = app
        .post(
            "/api/v1/referrals",
            &village.token,
            json!({"person_id": person, "direction": "up", "to_institution_id": foreign, "reason": "x"}),
        )
        .await;
    assert_eq!((cross.status.as_u16(), cross.code()), (404, "institution_not_found"));
    // Out of the county: a record, complete at once.
    let out = app
        .post(
            "/api/v1/referrals",
            &village.token,
            json!({"person_id": person, "direction": "out", "external_hospital": "省人民医院", "reason": "需心脏介入"}),
        )
        .await;
    assert_eq!((out.status.as_u16(), out.body["status"].as_str().unwrap()), (201, "completed"));
    let out_id = out.body["id"].as_str().unwrap();
    let c = app.post(&format!("/api/v1/referrals/{out_id}/cancel"), &village.token, json!({"note": "x"})).await;
    assert_eq!(c.status, 409);
}

#[tokio::test]
async fn the_grant_opens_on_accept_is_audited_and_is_refused_once_expired() {
    let app = spawn_app().await;
    app.load_demo().await;
    let village = app.login("village.doctor").await;
    let county = app.login("coordinator").await;
    let admin = app.login("admin").await;
    let ids = app.institutions(&county).await;
    let v = crate::visit::full_visit(&app, &village, 3).await;
    let r = app
        .post("/api/v1/referrals", &village.token, json!({"person_id": v.person, "direction": "up", "to_institution_id": ids["county-hospital"], "reason": "转诊"}))
        .await;
    let id = r.body["id"].as_str().unwrap().to_string();
    let before = app.get(&format!("/api/v1/referrals/{id}/records"), &county.token).await;
    assert_eq!((before.status.as_u16(), before.code()), (403, "grant_missing"));
    app.post(&format!("/api/v1/referrals/{id}/accept"), &county.token, json!({})).await;
    let records = app.get(&format!("/api/v1/referrals/{id}/records"), &county.token).await;
    assert_eq!(records.status, 200, "{}", records.text);
    assert_eq!(records.body[0]["id"], v.encounter.as_str());
    assert_eq!(records.body[0]["diagnoses"][0]["code"], "I10");
    // The sender cannot use the receiver's grant.
    assert_eq!(app.get(&format!("/api/v1/referrals/{id}/records"), &village.token).await.status, 404);

    // Expire the grant (as if the completion was long ago): reads are refused.
    let owner = app.owner_connection().await;
    let past = if app.backend == Backend::Postgres { "now() - interval '1 day'" } else { "'2020-01-01T00:00:00Z'" };
    owner.execute_unprepared(&format!("UPDATE access_grants SET expires_at = {past}")).await.unwrap();
    let expired = app.get(&format!("/api/v1/referrals/{id}/records"), &county.token).await;
    assert_eq!((expired.status.as_u16(), expired.code()), (403, "grant_expired"));

    let audit = app.get(&format!("/api/v1/audit/events?subject={}", v.person), &admin.token).await;
    let rows: Vec<(String, String, String)> = audit
        .body
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "referral.records")
        .map(|e| {
            (
                e["outcome"].as_str().unwrap().into(),
                e["purpose"].as_str().unwrap().into(),
                e["institution_id"].as_str().unwrap().into(),
            )
        })
        .collect();
    let county_id = county.institution_id.to_string();
    assert_eq!(
        rows,
        [
            ("denied".to_string(), "referral".to_string(), county_id.clone()),
            ("success".to_string(), "referral".to_string(), county_id.clone()),
            ("denied".to_string(), "referral".to_string(), county_id),
        ]
    );
}

#[tokio::test]
async fn overdue_referrals_expire_and_publish() {
    let app = spawn_app().await;
    app.load_demo().await;
    let village = app.login("village.doctor").await;
    let county = app.login("coordinator").await;
    let ids = app.institutions(&county).await;
    let person = patient(&app, &village, 2).await;
    let r = app
        .post(
            "/api/v1/referrals",
            &village.token,
            json!({"person_id": person, "direction": "up", "to_institution_id": ids["th-dongguan"], "reason": "转诊"}),
        )
        .await;
    let id = r.body["id"].as_str().unwrap().to_string();
    let owner = app.owner_connection().await;
    let past = if app.backend == Backend::Postgres { "now() - interval '1 hour'" } else { "'2020-01-01T00:00:00Z'" };
    owner.execute_unprepared(&format!("UPDATE referrals SET sla_due_at = {past}")).await.unwrap();
    let inbox = app.get("/api/v1/referrals/inbox", &app.login("township.doctor").await.token).await;
    assert!(inbox.body[0]["sla_seconds_left"].as_i64().unwrap() < 0, "overdue shows negative time left");
    assert_eq!(cloudhis::referrals::service::expire_overdue(&app.state.db).await.unwrap(), 1);
    assert_eq!(cloudhis::referrals::service::expire_overdue(&app.state.db).await.unwrap(), 0, "once");
    let after = app.get(&format!("/api/v1/referrals/{id}"), &village.token).await;
    assert_eq!(after.body["status"], "expired");
    eventually("the expired event", 20, || async {
        count(&app, "SELECT count(*) FROM outbox WHERE event_type = 'referrals.expired' AND published_at IS NOT NULL")
            .await
            == 1
    })
    .await;
}

#[tokio::test]
async fn the_stream_announces_new_referrals_without_polling() {
    let app = spawn_app().await;
    app.load_demo().await;
    let village = app.login("village.doctor").await;
    let county = app.login("coordinator").await;
    let ids = app.institutions(&county).await;
    let person = patient(&app, &village, 3).await;
    let resp = app
        .client
        .get(format!("{}/api/v1/referrals/stream", app.base))
        .bearer_auth(&county.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    // The stream is subscribed before its headers are sent: no wait is needed.
    let mut resp = resp;
    let r = app
        .post("/api/v1/referrals", &village.token, json!({"person_id": person, "direction": "up", "to_institution_id": ids["county-hospital"], "reason": "转诊"}))
        .await;
    let id = r.body["id"].as_str().unwrap().to_string();
    let mut text = String::new();
    let found = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(chunk) = resp.chunk().await.unwrap() {
            text.push_str(&String::from_utf8_lossy(&chunk));
            if text.contains(&id) {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(found, Ok(true), "stream said: {text}");
    let data = text.lines().find(|l| l.starts_with("data:") && l.contains(&id)).unwrap();
    let change: Value = serde_json::from_str(data.trim_start_matches("data:").trim()).unwrap();
    assert_eq!(change["event_type"], "referrals.requested");
    assert_eq!(change["status"], "requested");
}

#[tokio::test]
async fn an_event_no_consumer_can_apply_is_dead_lettered_not_lost_or_retried_forever() {
    let app = spawn_app().await;
    app.load_demo().await;
    let village = app.login("village.doctor").await;
    // A referral event without a referral id: the notifications consumer cannot apply it.
    let owner = app.owner_connection().await;
    let event = uuid::Uuid::now_v7();
    let tenant = village.tenant_id;
    let sql = match app.backend {
        Backend::Postgres => format!(
            "INSERT INTO outbox (tenant_id, id, event_type, version, aggregate_id, occurred_at, payload, attempts)
             VALUES ('{tenant}', '{event}', 'referrals.requested', 1, '{event}', now(), '{{}}', 0)"
        ),
        Backend::Sqlite => format!(
            "INSERT INTO outbox (tenant_id, id, event_type, version, aggregate_id, occurred_at, payload, attempts, seq)
             VALUES (X'{}', X'{}', 'referrals.requested', 1, X'{}', '2026-01-01T00:00:00Z', '{{}}', 0, 1000000)",
            tenant.simple(),
            event.simple(),
            event.simple()
        ),
    };
    owner.execute_unprepared(&sql).await.unwrap();
    // Its payload is not a referral change: every consumer that follows referral events
    // (notifications, statistics) keeps it as a dead letter at once, with the reason, on either
    // backend; nothing retries it.
    eventually("a dead letter per consumer", 60, || async {
        count(&app, "SELECT count(*) FROM dead_letters WHERE consumer = 'referral_notifications'").await == 1
            && count(&app, "SELECT count(*) FROM dead_letters WHERE consumer = 'statistics'").await == 1
    })
    .await;
    let owner_rows = owner
        .query_all_raw(sea_orm::Statement::from_string(
            owner.get_database_backend(),
            "SELECT error FROM dead_letters".to_string(),
        ))
        .await
        .unwrap();
    for row in owner_rows {
        let error: String = row.try_get("", "error").unwrap();
        assert!(error.contains("referrals.requested payload is unreadable"), "the reason is kept: {error}");
        assert!(error.contains("missing field"), "{error}");
    }
    assert_eq!(count(&app, "SELECT count(*) FROM outbox WHERE published_at IS NULL").await, 0);
    // Nothing was applied, and ordinary events still flow.
    assert_eq!(count(&app, "SELECT count(*) FROM referral_notifications").await, 0);
    let county = app.login("coordinator").await;
    let ids = app.institutions(&county).await;
    let person = patient(&app, &village, 4).await;
    app.post(
        "/api/v1/referrals",
        &village.token,
        json!({"person_id": person, "direction": "up", "to_institution_id": ids["county-hospital"], "reason": "转诊"}),
    )
    .await;
    eventually("the next event's notifications", 30, || async {
        count(&app, "SELECT count(*) FROM referral_notifications").await == 2
    })
    .await;
}
