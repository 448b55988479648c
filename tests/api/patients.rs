//! The MPI through the API: validation, matching outcomes, search, masking, merge round trip,
//! events, and isolation between communities and institutions.

use sea_orm::{ConnectionTrait, Statement};
use serde_json::{Value, json};

use crate::helpers::{Backend, Session, TestApp, spawn_app};

/// A valid resident ID for a birth date and sex digit (computes the check character).
pub fn rid(region: &str, date: &str, seq: u32) -> String {
    let body = format!("{region}{date}{seq:03}");
    format!("{body}{}", cloudhis::patients::resident_id::check_character(body.as_bytes()))
}

pub(crate) async fn register(app: &TestApp, s: &Session, body: Value) -> crate::helpers::Resp {
    app.post("/api/v1/patients", &s.token, body).await
}

const REVEALS: &str = "SELECT count(*) AS n FROM identifier_reveals";

pub(crate) async fn persons_named(app: &TestApp, name: &str) -> i64 {
    count_rows(app, &format!("SELECT count(*) AS n FROM persons WHERE name = '{name}'")).await
}

/// The `n` a counting query (as the owner) answers.
pub(crate) async fn count_rows(app: &TestApp, sql: &str) -> i64 {
    let owner = app.owner_connection().await;
    owner
        .query_one_raw(Statement::from_string(owner.get_database_backend(), sql.to_string()))
        .await
        .unwrap()
        .unwrap()
        .try_get::<i64>("", "n")
        .unwrap()
}

#[tokio::test]
async fn an_invalid_resident_id_is_refused_naming_the_check_and_nothing_is_created() {
    let app = spawn_app().await;
    app.load_demo().await;
    let doc = app.login("village.doctor").await;
    let good = rid("130999", "19850312", 131);
    let mut bad_check = good.clone();
    bad_check.pop();
    bad_check.push(if good.ends_with('0') { '1' } else { '0' });
    for (id, check) in [
        (bad_check.as_str(), "check_character"),
        ("12345", "length"),
        (&rid("990999", "19850312", 131)[..], "region"),
        (&rid("130999", "19850230", 131)[..], "birth_date"),
        ("13099919850312131Y", "characters"),
    ] {
        let r = register(&app, &doc, json!({"name": "测试人", "resident_id": id})).await;
        assert_eq!(r.status, 422, "{id}: {}", r.text);
        assert_eq!(r.code(), "resident_id_invalid");
        assert_eq!(r.body["details"]["check"], check, "{id}");
        assert!(!r.text.contains(id), "the error does not echo the ID");
    }
    // A female sex digit against sex: male.
    let r =
        register(&app, &doc, json!({"name": "测试人", "sex": "male", "resident_id": rid("130999", "19850312", 132)}))
            .await;
    assert_eq!(r.body["details"]["check"], "sex");
    assert_eq!(persons_named(&app, "测试人").await, 0);
}

#[tokio::test]
async fn one_person_registered_at_two_institutions_is_one_person_to_both() {
    let app = spawn_app().await;
    app.load_demo().await;
    let x = app.login("village.doctor").await;
    let y = app.login("township.doctor").await;
    let id = rid("130999", "19560704", 213);
    let first = register(&app, &x, json!({"name": "刘德华", "resident_id": id, "phone": "13912345678"})).await;
    assert_eq!(first.status, 201, "{}", first.text);
    assert_eq!(first.body["matched"], false);
    let person = first.body["person"]["id"].as_str().unwrap().to_string();
    // Full identifiers for a clinician.
    assert_eq!(first.body["person"]["resident_id"], id.as_str());
    assert_eq!(first.body["person"]["sex"], "male");
    assert_eq!(first.body["person"]["birth_date"], "1956-07-04");

    // The township centre registers the same ID, with a variant character: linked, not created.
    let second = register(&app, &y, json!({"name": "劉德華", "resident_id": id})).await;
    assert_eq!(second.status, 200, "{}", second.text);
    assert_eq!(second.body["matched"], true);
    assert_eq!(second.body["person"]["id"], person.as_str());
    assert_ne!(second.body["mrn"], Value::Null);
    // Registering again at the same place changes nothing.
    let again = register(&app, &y, json!({"name": "刘德华", "resident_id": id})).await;
    assert_eq!(again.body["registration_id"], second.body["registration_id"]);

    for s in [&x, &y] {
        let p = app.get(&format!("/api/v1/patients/{person}"), &s.token).await;
        assert_eq!(p.status, 200, "{}", p.text);
        assert_eq!(p.body["registrations"].as_array().unwrap().len(), 2);
        assert_eq!(p.body["registered_here"], true);
    }
    assert_eq!(persons_named(&app, "刘德华").await, 1);
}

#[tokio::test]
async fn a_probable_match_asks_and_the_answer_is_honoured() {
    let app = spawn_app().await;
    app.load_demo().await;
    let x = app.login("village.doctor").await;
    let admin = app.login("admin").await;
    let first = register(
        &app,
        &x,
        json!({"name": "王秀英", "sex": "female", "birth_date": "1948", "address_division": "130999101201"}),
    )
    .await;
    assert_eq!(first.status, 201, "{}", first.text);
    let existing = first.body["person"]["id"].as_str().unwrap().to_string();

    // Same name and village, but only the birth year to go on: probable, so the API asks.
    let y = app.login("village.doctor2").await;
    let attempt =
        json!({"name": "王秀英", "sex": "female", "birth_date": "1948-06-10", "address_division": "130999101201"});
    let asked = register(&app, &y, attempt.clone()).await;
    assert_eq!(asked.status, 409, "{}", asked.text);
    assert_eq!(asked.code(), "probable_match");
    let cands = asked.body["details"]["candidates"].as_array().unwrap();
    assert_eq!(cands[0]["person"]["id"], existing.as_str());
    assert_eq!(cands[0]["grade"], "probable");
    let agreed: Vec<&str> =
        cands[0]["agreements"].as_array().unwrap().iter().map(|a| a["field"].as_str().unwrap()).collect();
    assert!(agreed.contains(&"name") && agreed.contains(&"birth_date"), "{agreed:?}");
    assert!(!asked.body["message"].as_str().unwrap().contains("王秀英"), "no patient data in the message");
    assert_eq!(persons_named(&app, "王秀英").await, 1, "nothing created while asking");

    // create_new: a second person, and the pair goes to the review queue.
    let mut create = attempt.clone();
    create["create_new"] = json!({"reason": "不同的人，家属确认"});
    let created = register(&app, &y, create).await;
    assert_eq!(created.status, 201, "{}", created.text);
    let queue = app.get("/api/v1/patients/duplicates", &admin.token).await;
    assert_eq!(queue.status, 200, "{}", queue.text);
    assert_eq!(queue.body.as_array().unwrap().len(), 1);

    // link_to: the third institution links straight to the existing person.
    let z = app.login("township.doctor").await;
    let mut link = attempt;
    link["link_to"] = json!(existing);
    let linked = register(&app, &z, link).await;
    assert_eq!(linked.status, 200, "{}", linked.text);
    assert_eq!(linked.body["person"]["id"], existing.as_str());

    // An id alone links nothing: the details must match that person (probable or certain), or
    // anyone could pull any record of the community into their institution.
    let other = register(&app, &z, json!({"name": "赵六", "sex": "male", "birth_date": "1970-01-01"})).await;
    assert!(other.status.is_success(), "{}", other.text);
    let mut stranger = json!({"name": "钱七", "sex": "female", "birth_date": "1990-05-05"});
    stranger["link_to"] = other.body["person"]["id"].clone();
    let refused = register(&app, &y, stranger).await;
    assert_eq!((refused.status.as_u16(), refused.code()), (422, "link_not_a_match"), "{}", refused.text);
}

#[tokio::test]
async fn match_ranks_without_creating_and_search_finds_by_name_pinyin_id_phone_birth() {
    let app = spawn_app().await;
    app.load_demo().await;
    let doc = app.login("village.doctor").await;
    let id = rid("130999", "19850312", 131);
    let r = register(&app, &doc, json!({"name": "张伟", "resident_id": id, "phone": "13812345678"})).await;
    assert_eq!(r.status, 201);
    let person = r.body["person"]["id"].as_str().unwrap().to_string();

    let m = app
        .post(
            "/api/v1/patients/$match",
            &doc.token,
            json!({"name": "章伟", "sex": "male", "birth_date": "1985-03-12", "phone": "13812345678"}),
        )
        .await;
    assert_eq!(m.status, 200, "{}", m.text);
    let top = &m.body["candidates"][0];
    assert_eq!(top["person"]["id"], person.as_str());
    // A homophone, the birth date and the phone: one agreement besides name and birth date, so
    // worth a look but not a link without an identifier or a second one (the village).
    assert_eq!(top["grade"], "probable");
    let levels: Vec<(&str, &str)> = top["agreements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["field"].as_str().unwrap(), a["level"].as_str().unwrap()))
        .collect();
    assert!(levels.contains(&("name", "same_pinyin")), "{levels:?}");
    assert_eq!(persons_named(&app, "章伟").await, 0, "$match creates nothing");

    for (criteria, expect) in [
        (json!({"name": "张伟"}), true),
        (json!({"name": "章伟"}), true),
        (json!({"name": "zw"}), true),
        (json!({"name": "ZW"}), true),
        (json!({"resident_id": id}), true),
        (json!({"phone": "138 1234 5678"}), true),
        (json!({"birth_date": "1985-03-12"}), true),
        (json!({"name": "zw", "birth_date": "1985"}), true),
        (json!({"name": "李四"}), false),
        (json!({"name": "张伟", "birth_date": "1990-01-01"}), false),
    ] {
        let s = app.post("/api/v1/patients/search", &doc.token, criteria.clone()).await;
        assert_eq!(s.status, 200, "{criteria}: {}", s.text);
        let found = s.body["items"].as_array().unwrap().iter().any(|p| p["id"] == person.as_str());
        assert_eq!(found, expect, "{criteria}");
    }
    let none = app.post("/api/v1/patients/search", &doc.token, json!({})).await;
    assert_eq!((none.status.as_u16(), none.code()), (422, "search_criteria_required"));
}

#[tokio::test]
async fn identifiers_are_masked_for_roles_that_do_not_need_them() {
    let app = spawn_app().await;
    app.load_demo().await;
    let doc = app.login("county.doctor").await;
    let id = rid("130999", "19700101", 451);
    let r = register(
        &app,
        &doc,
        json!({"name": "赵国强", "resident_id": id, "phone": "13700001111", "insurance_no": "123456789012"}),
    )
    .await;
    assert_eq!(r.status, 201);
    assert_eq!(r.body["person"]["phone"], "13700001111");
    let pharmacist = app.login("county.pharmacist").await;
    let s = app.post("/api/v1/patients/search", &pharmacist.token, json!({"name": "赵国强"})).await;
    let p = &s.body["items"][0];
    assert_eq!(p["resident_id"], format!("{}********{}", &id[..6], &id[14..]));
    assert_eq!(p["phone"], "137****1111");
    assert_eq!(p["insurance_no"], "12********12");
    // The bureau sees no patient at all.
    let bureau = app.login("bureau").await;
    let b = app.post("/api/v1/patients/search", &bureau.token, json!({"name": "赵国强"})).await;
    assert_eq!(b.status, 403);
    // Storage holds neither value in clear.
    let dump = table_rows(&app, "SELECT * FROM persons").await.join("\n");
    assert!(dump.contains("赵国强"), "the dump is readable: {dump}");
    assert!(!dump.contains(&id) && !dump.contains("13700001111") && !dump.contains("123456789012"));
}

/// Every row of the tables a merge touches, as text, for before/after comparison.
async fn snapshot(app: &TestApp) -> (Vec<String>, Vec<String>, Vec<String>) {
    let q = |t: &str| format!("SELECT * FROM {t} ORDER BY 1, 2");
    (
        table_rows(app, &q("persons")).await,
        table_rows(app, &q("registrations")).await,
        table_rows(app, &q("duplicate_candidates")).await,
    )
}

pub(crate) async fn table_rows(app: &TestApp, sql: &str) -> Vec<String> {
    use sea_orm::FromQueryResult;
    let owner = app.owner_connection().await;
    let backend = owner.get_database_backend();
    let rows = Value::find_by_statement(Statement::from_string(backend, sql)).all(&owner).await.unwrap();
    rows.iter().map(|r| r.to_string()).collect()
}

#[tokio::test]
async fn merge_then_unmerge_restores_the_exact_prior_state() {
    let app = spawn_app().await;
    app.load_demo().await;
    let x = app.login("village.doctor").await;
    let y = app.login("village.doctor2").await;
    let admin = app.login("admin").await;
    let a = register(&app, &x, json!({"name": "孙桂兰", "sex": "female", "birth_date": "1940"})).await;
    let b = register(&app, &y, json!({"name": "孙贵兰", "sex": "female", "birth_date": "1941", "phone": "13611112222", "create_new": {"reason": "不确定"}})).await;
    assert_eq!((a.status.as_u16(), b.status.as_u16()), (201, 201), "{} {}", a.text, b.text);
    let (a, b) =
        (a.body["person"]["id"].as_str().unwrap().to_string(), b.body["person"]["id"].as_str().unwrap().to_string());

    let before = snapshot(&app).await;

    let m = app
        .post(
            "/api/v1/patients/merges",
            &admin.token,
            json!({"survivor_id": a, "merged_id": b, "reason": "同一人，身份证核实"}),
        )
        .await;
    assert_eq!(m.status, 201, "{}", m.text);
    let merge_id = m.body["merge_id"].as_str().unwrap().to_string();
    // B's history is reachable from A; B points to A.
    let pa = app.get(&format!("/api/v1/patients/{a}"), &admin.token).await;
    assert_eq!(pa.body["registrations"].as_array().unwrap().len(), 2);
    let pb = app.get(&format!("/api/v1/patients/{b}"), &admin.token).await;
    assert_eq!(pb.body["status"], "merged");
    assert_eq!(pb.body["replaced_by"], a.as_str());
    // Y's doctor now finds the survivor through B's phone.
    let found = app
        .post(
            "/api/v1/patients/$match",
            &y.token,
            json!({"name": "孙贵兰", "sex": "female", "birth_date": "1941", "phone": "13611112222"}),
        )
        .await;
    assert_eq!(found.body["candidates"][0]["person"]["id"], a.as_str());
    assert_ne!(snapshot(&app).await, before);
    // Merging a merged person again is refused.
    let again = app
        .post("/api/v1/patients/merges", &admin.token, json!({"survivor_id": a, "merged_id": b, "reason": "重复"}))
        .await;
    assert_eq!((again.status.as_u16(), again.code()), (409, "person_not_active"));

    let u =
        app.post(&format!("/api/v1/patients/merges/{merge_id}/undo"), &admin.token, json!({"reason": "误合并"})).await;
    assert_eq!(u.status, 204, "{}", u.text);
    assert_eq!(snapshot(&app).await, before, "unmerge restores persons, registrations and the review queue exactly");
    let twice =
        app.post(&format!("/api/v1/patients/merges/{merge_id}/undo"), &admin.token, json!({"reason": "再次"})).await;
    assert_eq!((twice.status.as_u16(), twice.code()), (409, "merge_already_undone"));

    // Both changes left events in the outbox, and audit rows with the reason's merge record.
    let events = table_rows(
        &app,
        "SELECT event_type, payload FROM outbox WHERE event_type LIKE 'patients.person_%merged' ORDER BY occurred_at",
    )
    .await;
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(events[0].contains("person_merged") && events[0].contains(&merge_id));
    assert!(events[1].contains("person_unmerged"));
    let audit = app.get(&format!("/api/v1/audit/events?subject={b}"), &admin.token).await;
    let actions: Vec<&str> = audit.body.as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert!(actions.contains(&"patient.merge") && actions.contains(&"patient.unmerge"), "{actions:?}");
}

#[tokio::test]
async fn persons_of_one_community_are_never_candidates_in_another() {
    let app = spawn_app().await;
    app.load_demo().await;
    app.load_other_tenant("other-county").await;
    let mine = app.login("village.doctor").await;
    let theirs = app.login_in("other-county", "village.doctor").await;
    let id = rid("130999", "19620815", 335);
    let r = register(&app, &mine, json!({"name": "周建华", "resident_id": id, "phone": "13512345678"})).await;
    assert_eq!(r.status, 201);
    let person = r.body["person"]["id"].as_str().unwrap().to_string();
    let q = json!({"name": "周建华", "resident_id": id, "phone": "13512345678"});
    let m = app.post("/api/v1/patients/$match", &theirs.token, q.clone()).await;
    assert_eq!(m.body["candidates"], json!([]), "{}", m.text);
    let s = app.post("/api/v1/patients/search", &theirs.token, json!({"resident_id": id})).await;
    assert_eq!(s.body["items"], json!([]));
    assert_eq!(app.get(&format!("/api/v1/patients/{person}"), &theirs.token).await.status, 404);
    // Registering over there makes a separate person.
    let other = register(&app, &theirs, q).await;
    assert_eq!(other.status, 201);
    assert_ne!(other.body["person"]["id"], person.as_str());
}

#[tokio::test]
async fn another_clinics_patient_is_404_until_registered_here_and_reads_are_audited() {
    let app = spawn_app().await;
    app.load_demo().await;
    let x = app.login("village.doctor").await;
    let y = app.login("village.doctor2").await;
    let id = rid("130999", "19771203", 587);
    let r = register(&app, &x, json!({"name": "吴敏", "resident_id": id})).await;
    let person = r.body["person"]["id"].as_str().unwrap().to_string();
    let denied = app.get(&format!("/api/v1/patients/{person}"), &y.token).await;
    assert_eq!((denied.status.as_u16(), denied.code()), (404, "person_not_found"));
    let linked = register(&app, &y, json!({"name": "吴敏", "resident_id": id})).await;
    assert_eq!(linked.status, 200);
    assert_eq!(app.get(&format!("/api/v1/patients/{person}"), &y.token).await.status, 200);

    let admin = app.login("admin").await;
    let audit = app.get(&format!("/api/v1/audit/events?subject={person}"), &admin.token).await;
    let rows: Vec<(&str, &str, &str)> = audit
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["action"].as_str().unwrap(), e["outcome"].as_str().unwrap(), e["purpose"].as_str().unwrap()))
        .collect();
    assert!(rows.contains(&("patient.read", "denied", "treatment")), "{rows:?}");
    assert!(rows.contains(&("patient.read", "success", "treatment")), "{rows:?}");
    assert!(rows.iter().filter(|r| r.0 == "patient.register").count() >= 2, "{rows:?}");
}

#[tokio::test]
async fn events_reach_the_bus_with_tenant_routing_keys() {
    let app = spawn_app().await;
    app.load_demo().await;
    let doc = app.login("village.doctor").await;
    let mut local = app.state.bus.subscribe_local();
    // On RabbitMQ, a temporary queue bound to this tenant's patients events.
    let amqp = match app.backend {
        Backend::Postgres => {
            use lapin::options::{QueueBindOptions, QueueDeclareOptions};
            use lapin::types::FieldTable;
            let conn =
                lapin::Connection::connect(app.state.bus.amqp_url().unwrap(), lapin::ConnectionProperties::default())
                    .await
                    .unwrap();
            let ch = conn.create_channel().await.unwrap();
            let q = ch
                .queue_declare(
                    "".into(),
                    QueueDeclareOptions { exclusive: true, auto_delete: true, ..Default::default() },
                    FieldTable::default(),
                )
                .await
                .unwrap();
            ch.queue_bind(
                q.name().clone(),
                app.state.bus.exchange().unwrap().into(),
                format!("{}.patients.#", doc.tenant_id).into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
            Some((conn, ch, q.name().to_string()))
        }
        Backend::Sqlite => None,
    };
    let r = register(&app, &doc, json!({"name": "郑红", "sex": "female", "birth_date": "1990-05-05"})).await;
    assert_eq!(r.status, 201);
    let person = r.body["person"]["id"].as_str().unwrap().to_string();

    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while seen.len() < 2 {
        let ev = tokio::time::timeout_at(deadline, local.recv()).await.expect("events published").unwrap();
        seen.push((ev.event_type.clone(), ev.routing_key(), ev.payload.clone()));
    }
    assert_eq!(seen[0].0, "patients.person_created");
    assert_eq!(seen[1].0, "patients.person_registered");
    assert_eq!(seen[0].1, format!("{}.patients.person_created", doc.tenant_id));
    assert_eq!(seen[0].2["person"], person.as_str());
    assert!(!seen.iter().any(|e| e.2.to_string().contains("郑红")), "events carry ids, not names");

    if let Some((_conn, ch, queue)) = amqp {
        use lapin::options::BasicGetOptions;
        let mut keys = Vec::new();
        for _ in 0..50 {
            if let Some(msg) = ch.basic_get(queue.as_str().into(), BasicGetOptions { no_ack: true }).await.unwrap() {
                let env: Value = serde_json::from_slice(&msg.delivery.data).unwrap();
                keys.push((
                    msg.delivery.routing_key.to_string(),
                    env["type"].as_str().unwrap().to_string(),
                    env["payload"]["person"].clone(),
                ));
                if keys.len() == 2 {
                    break;
                }
            } else {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
        assert_eq!(keys.len(), 2, "{keys:?}");
        assert_eq!(keys[0].0, format!("{}.patients.person_created", doc.tenant_id));
        assert_eq!(keys[0].2, json!(person));
    }
    // The outbox rows are marked sent (the relay marks them once the broker confirms, which can
    // come after a consumer already has the message).
    let mut pending = Vec::new();
    for _ in 0..100 {
        pending = table_rows(&app, "SELECT id FROM outbox WHERE published_at IS NULL").await;
        if pending.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(pending.is_empty(), "{pending:?}");
}

#[tokio::test]
async fn the_review_queue_can_merge_or_dismiss_a_pair() {
    let app = spawn_app().await;
    app.load_demo().await;
    let admin = app.login("admin").await;
    let tenant = admin.tenant_id;
    cloudhis::patients::seed::seed(&app.state.db, &app.state.pii, tenant, 400, 0.2, 9).await.unwrap();
    let w = cloudhis::patients::matching::MatchWeights::default();
    let report = cloudhis::patients::dedup::run(&app.state.db, &app.state.pii, tenant, &w, true).await.unwrap();
    assert!(report.queued >= 20, "{report:?}");
    let q = app.get("/api/v1/patients/duplicates?limit=500", &admin.token).await;
    let pairs = q.body.as_array().unwrap();
    assert_eq!(pairs.len(), report.queued);
    let first = &pairs[0];
    let m = app
        .post(
            &format!("/api/v1/patients/duplicates/{}/merge", first["id"].as_str().unwrap()),
            &admin.token,
            json!({"survivor_id": first["a"]["id"], "reason": "核实为同一人"}),
        )
        .await;
    assert_eq!(m.status, 201, "{}", m.text);
    let second = &pairs[1];
    let d = app
        .post(
            &format!("/api/v1/patients/duplicates/{}/dismiss", second["id"].as_str().unwrap()),
            &admin.token,
            json!({"reason": "双胞胎"}),
        )
        .await;
    assert_eq!(d.status, 204, "{}", d.text);
    let again = app
        .post(
            &format!("/api/v1/patients/duplicates/{}/dismiss", second["id"].as_str().unwrap()),
            &admin.token,
            json!({"reason": "双胞胎"}),
        )
        .await;
    assert_eq!((again.status.as_u16(), again.code()), (409, "duplicate_already_resolved"));
    let open = app.get("/api/v1/patients/duplicates?limit=500", &admin.token).await;
    assert_eq!(open.body.as_array().unwrap().len(), pairs.len() - 2);
    let doctor = app.login("village.doctor").await;
    assert_eq!(app.get("/api/v1/patients/duplicates", &doctor.token).await.status, 403);
}

/// A cashier at another institution links a registration to an existing person: the answer and
/// later reads show the identifiers masked. Revealing one takes a purpose and a reason, leaves a
/// reveal record and an audit row with that purpose, and is limited per user and hour.
#[tokio::test]
async fn linking_returns_masked_identifiers_and_revealing_one_needs_a_reason_and_is_audited() {
    let app = spawn_app().await;
    app.load_demo().await;
    let village = app.login("village.doctor").await;
    let id = rid("130999", "19650302", 131);
    let details = json!({"name": "孙建华", "sex": "male", "birth_date": "1965-03-02"});
    let mut first = details.clone();
    first["resident_id"] = json!(id);
    first["phone"] = json!("13911112222");
    first["insurance_no"] = json!("987654321098");
    let r = register(&app, &village, first).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let person = r.body["person"]["id"].as_str().unwrap().to_string();

    let cashier = app.login("county.cashier").await;
    let mut link = details.clone();
    link["link_to"] = json!(person);
    let linked = register(&app, &cashier, link).await;
    assert_eq!(linked.status, 200, "{}", linked.text);
    assert_eq!(linked.body["person"]["id"], person.as_str());
    let masked_id = format!("{}********{}", &id[..6], &id[14..]);
    for shown in [&linked.body["person"], &app.get(&format!("/api/v1/patients/{person}"), &cashier.token).await.body] {
        assert_eq!(shown["resident_id"], masked_id.as_str(), "{shown}");
        assert_eq!(shown["phone"], "139****2222", "{shown}");
        assert_eq!(shown["insurance_no"], "98********98", "{shown}");
    }
    assert!(!linked.text.contains(&id) && !linked.text.contains("13911112222"), "nothing in clear: {}", linked.text);

    // A reveal without a reason, or with an unknown purpose, is refused and records nothing.
    let reveal_path = format!("/api/v1/patients/{person}/reveal");
    let reveal = |body: serde_json::Value| app.post(&reveal_path, &cashier.token, body);
    let r = reveal(json!({"field": "resident_id", "purpose": "insurance_claim", "reason": "   "})).await;
    assert_eq!((r.status.as_u16(), r.code()), (422, "reason_required"), "{}", r.text);
    let r = reveal(json!({"field": "resident_id", "purpose": "insurance_claim"})).await;
    assert!(r.status.is_client_error(), "a reason is required: {}", r.text);
    let r = reveal(json!({"field": "resident_id", "reason": "医保结算核对"})).await;
    assert!(r.status.is_client_error(), "a purpose is required: {}", r.text);
    let r = reveal(json!({"field": "resident_id", "purpose": "curiosity", "reason": "医保结算核对"})).await;
    assert!(r.status.is_client_error(), "only the listed purposes: {}", r.text);
    assert_eq!(count_rows(&app, REVEALS).await, 0, "refusals reveal nothing and record nothing");

    // With a purpose and a reason: the full value, a reveal record and an audit row with that purpose.
    let r = reveal(json!({"field": "resident_id", "purpose": "insurance_claim", "reason": "医保结算核对"})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["value"], id.as_str());
    assert_eq!(r.body["field"], "resident_id");
    let request_id = r.headers["x-request-id"].to_str().unwrap().to_string();
    let rows = crate::audit::rows_of_request_id(&app, &request_id).await;
    assert!(
        rows.iter().any(|a| a.action == "patient.reveal"
            && a.purpose == "insurance_claim"
            && a.outcome == "success"
            && a.actor_user_id == Some(cashier.user_id)
            && a.subject_person_id == Some(person.parse().unwrap())
            && a.resource_id.as_deref() == r.body["reveal_id"].as_str()),
        "{rows:?}"
    );
    assert_eq!(count_rows(&app, REVEALS).await, 1);
    let r = reveal(json!({"field": "phone", "purpose": "patient_contact", "reason": "电话通知取药"})).await;
    assert_eq!((r.status.as_u16(), r.body["value"].as_str()), (200, Some("13911112222")), "{}", r.text);

    // A person not registered at the caller's institution cannot be revealed: 404, and the attempt is audited.
    let township = app.login("township.admin").await;
    let r = app
        .post(
            &format!("/api/v1/patients/{person}/reveal"),
            &township.token,
            json!({"field": "phone", "purpose": "patient_contact", "reason": "电话通知"}),
        )
        .await;
    assert_eq!((r.status.as_u16(), r.code()), (404, "person_not_found"), "{}", r.text);

    // At most 20 reveals per user and hour: the 21st is refused.
    for n in 3..=20 {
        let r = reveal(json!({"field": "insurance_no", "purpose": "insurance_claim", "reason": "医保结算"})).await;
        assert_eq!(r.status, 200, "reveal {n}: {}", r.text);
    }
    let r = reveal(json!({"field": "insurance_no", "purpose": "insurance_claim", "reason": "医保结算"})).await;
    assert_eq!((r.status.as_u16(), r.code()), (429, "reveal_limit_reached"), "{}", r.text);
    assert_eq!(count_rows(&app, REVEALS).await, 20, "the refused reveal recorded nothing");
}

/// A clinic often has only a surname to go on: "张" finds every 张 of the community, not the
/// homophone 章, and a surname a letter longer is a name like any other.
#[tokio::test]
async fn a_surname_alone_finds_everyone_with_that_surname_and_no_homophone() {
    let app = spawn_app().await;
    // A community of its own: the demo's synthetic residents include many a 张.
    app.load_other_tenant("surnames").await;
    let doc = app.login_in("surnames", "village.doctor").await;
    for (name, born) in
        [("张三", "1960-01-02"), ("张伟", "1971-03-04"), ("章明", "1980-05-06"), ("欧阳锋", "1955-07-08")]
    {
        let r =
            app.post("/api/v1/patients", &doc.token, json!({"name": name, "sex": "male", "birth_date": born})).await;
        assert_eq!(r.status, 201, "{}", r.text);
    }
    let names = |r: &crate::helpers::Resp| -> Vec<String> {
        let mut v: Vec<String> =
            r.body["items"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap().to_string()).collect();
        v.sort();
        v
    };
    let s = app.post("/api/v1/patients/search", &doc.token, json!({"name": "张"})).await;
    assert_eq!(s.status, 200, "{}", s.text);
    assert_eq!(names(&s), ["张三", "张伟"]);
    let s = app.post("/api/v1/patients/search", &doc.token, json!({"name": "欧阳"})).await;
    assert_eq!(names(&s), ["欧阳锋"]);
    let s = app.post("/api/v1/patients/search", &doc.token, json!({"name": "章"})).await;
    assert_eq!(names(&s), ["章明"]);
}

/// Records from other systems lack a sex or a birth date: they are registered and their gaps
/// flagged, not refused, and a later record of the same person fills them in. The desk form,
/// where the person can be asked, still requires both (`web.rs`, `e2e/tests/forms.test.mjs`).
#[tokio::test]
async fn a_record_without_sex_or_birth_date_is_registered_flagged_and_completed_later() {
    let app = spawn_app().await;
    app.load_demo().await;
    let village = app.login("village.doctor").await;
    let first =
        register(&app, &village, json!({"name": "孙大妹", "phone": "13977778888", "address_division": "130999101201"}))
            .await;
    assert_eq!(first.status, 201, "{}", first.text);
    assert_eq!(first.body["data_quality"], json!(["sex_missing", "birth_date_missing"]));
    assert_eq!(first.body["person"]["sex"], Value::Null);
    let person = first.body["person"]["id"].as_str().unwrap().to_string();

    // Only a birth year: still missing a sex, no longer a birth date.
    let yearly = register(&app, &village, json!({"name": "钱老汉", "birth_date": "1941"})).await;
    assert_eq!(yearly.status, 201, "{}", yearly.text);
    assert_eq!(yearly.body["data_quality"], json!(["sex_missing"]));

    // The township centre has her with sex and birth date, same phone and village: linked, and
    // the golden record completed.
    let township = app.login("township.doctor").await;
    let second = register(
        &app,
        &township,
        json!({"name": "孙大妹", "sex": "female", "birth_date": "1950-08-02", "phone": "13977778888",
               "address_division": "130999101201"}),
    )
    .await;
    assert_eq!(second.status, 200, "{}", second.text);
    assert_eq!(second.body["person"]["id"], person.as_str());
    assert_eq!(second.body["data_quality"], json!([]));
    let read = app.get(&format!("/api/v1/patients/{person}"), &village.token).await;
    assert_eq!(read.body["sex"], "female", "{}", read.text);
    assert_eq!(read.body["birth_date"], "1950-08-02");
    assert_eq!(persons_named(&app, "孙大妹").await, 1);

    // A name is still required, and what is given is still checked.
    let nameless = register(&app, &village, json!({"name": " ", "phone": "13977778888"})).await;
    assert_eq!(nameless.status, 422, "{}", nameless.text);
    assert_eq!(nameless.body["code"], "name_invalid");
    let bad = register(&app, &village, json!({"name": "孙二妹", "sex": "unknown"})).await;
    assert_eq!(bad.status, 422, "{}", bad.text);
    assert_eq!(bad.body["code"], "sex_invalid");
    assert_eq!(persons_named(&app, "孙二妹").await, 0);
}

/// `n` distinct residents: given names, birth dates and resident IDs all differ.
fn residents(from: u32, n: u32) -> Vec<Value> {
    const GIVEN: [char; 10] = ['甲', '乙', '丙', '丁', '戊', '己', '庚', '辛', '壬', '癸'];
    (from..from + n)
        .map(|i| {
            let date = chrono::NaiveDate::from_ymd_opt(1960, 1, 1).unwrap() + chrono::Days::new(u64::from(i) * 37);
            let name = format!("测{}{}", GIVEN[(i / 10 % 10) as usize], GIVEN[(i % 10) as usize]);
            json!({"name": name, "resident_id": rid("130999", &date.format("%Y%m%d").to_string(), 2 * i + 1)})
        })
        .collect()
}

#[tokio::test]
#[ignore = "needs PostgreSQL (CLOUDHIS_TEST_BACKEND=postgres; .ci/run runs it): SQLite writers take turns anyway"]
async fn registrations_at_one_institution_do_not_queue_on_its_record_number_counter() {
    use sea_orm::TransactionTrait;
    let app = spawn_app().await;
    crate::helpers::require_postgres();
    app.load_demo().await;
    let doc = app.login("village.doctor").await;
    let first = register(&app, &doc, residents(0, 1).remove(0)).await;
    assert_eq!(first.status, 201, "{}", first.text);

    // Another transaction holds the institution's counter row. Registrations that took their
    // number under that row's lock would wait for it; these come from the block reserved ahead.
    let owner = app.owner_connection().await;
    let holder = owner.begin().await.unwrap();
    // By the tenant (the distribution column): Citus locks rows of one shard only.
    let tenant: uuid::Uuid = holder
        .query_one_raw(Statement::from_string(holder.get_database_backend(), "SELECT tenant_id FROM mrn_counters"))
        .await
        .unwrap()
        .unwrap()
        .try_get("", "tenant_id")
        .unwrap();
    holder
        .execute_unprepared(&format!("SELECT next_value FROM mrn_counters WHERE tenant_id = '{tenant}' FOR UPDATE"))
        .await
        .unwrap();
    let bodies = residents(1, 8);
    let held = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        futures::future::join_all(bodies.into_iter().map(|b| register(&app, &doc, b))),
    )
    .await
    .expect("registrations waited on the held counter row");
    holder.rollback().await.unwrap();
    assert!(held.iter().all(|r| r.status == 201), "{:?}", held.iter().map(|r| &r.text).collect::<Vec<_>>());

    // Many more than a block, four at a time: every number is used once.
    let mut mrns: Vec<String> = held.iter().chain([&first]).map(|r| r.body["mrn"].as_str().unwrap().into()).collect();
    for chunk in residents(9, 40).chunks(4) {
        let rs = futures::future::join_all(chunk.iter().map(|b| register(&app, &doc, b.clone()))).await;
        for r in rs {
            assert_eq!(r.status, 201, "{}", r.text);
            mrns.push(r.body["mrn"].as_str().unwrap().into());
        }
    }
    let distinct: std::collections::HashSet<_> = mrns.iter().collect();
    assert_eq!(distinct.len(), 49, "{mrns:?}");
    let duplicated = "SELECT count(*) AS n FROM (SELECT institution_id, mrn FROM registrations \
                      GROUP BY institution_id, mrn HAVING count(*) > 1) AS d";
    assert_eq!(count_rows(&app, duplicated).await, 0);
}
