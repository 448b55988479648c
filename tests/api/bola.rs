//! The generated BOLA matrix (OWASP API1:2023) across institutions of one community: every
//! operation of the OpenAPI document that takes an id, as every demo account (so every role),
//! against the objects of a village clinic none of them works in. Every attempt is refused (403 or
//! 404) except the paths the design allows, listed below; the conditional ones (community summary,
//! referral grant, break-glass) are shown opening only for the caller their condition names.
//! The cross-tenant half of the matrix is `isolation::another_tenants_ids_are_404_for_every_operation`.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Session, TestApp, spawn_app};
use crate::isolation::{DEMO_USERS, Ids, fill, objects_of, operations, valid_body};

/// Where the victim objects live, and their owner.
const VICTIM_INSTITUTION: &str = "v-xihe";
const VICTIM_DOCTOR: &str = "village.doctor2";
/// The victim visit's sequence number in `visit::full_visit` (its resident ID).
const VICTIM_SEQ: u32 = 5;

/// Operations that reach another institution's object by design, and who may use them there.
/// Everything else in the document must be refused. (method, path template, account, why)
const ALLOWED: &[(&str, &str, &str, &str)] = &[
    ("GET", "/api/v1/institutions/{id}", "*", "the community's institution tree is shared"),
    ("GET", "/api/v1/institutions/{id}/staff", "admin", "the tenant admin administers every institution's staff"),
    ("POST", "/api/v1/institutions/{id}/staff", "admin", "the tenant admin administers every institution's staff"),
    (
        "PUT",
        "/api/v1/institutions/{id}/staff/{user_id}/roles/{role}",
        "admin",
        "the tenant admin administers every institution's staff",
    ),
    (
        "DELETE",
        "/api/v1/institutions/{id}/staff/{user_id}/roles/{role}",
        "admin",
        "the tenant admin administers every institution's staff",
    ),
    ("GET", "/api/v1/users/{id}", "admin", "the tenant admin administers every institution's staff"),
    ("POST", "/api/v1/users/{id}/deactivate", "admin", "the tenant admin administers every institution's staff"),
    ("POST", "/api/v1/users/{id}/reactivate", "admin", "the tenant admin administers every institution's staff"),
    (
        "GET",
        "/api/v1/accounts/patients/{id}/statement",
        "admin finance",
        "a patient's account across the community, for the ledger's readers (docs/accounts.md)",
    ),
    ("GET", "/api/v1/imports/{id}", "admin", "imports are the community's: its administrator runs them"),
    ("GET", "/api/v1/imports/{id}/report", "admin", "imports are the community's: its administrator runs them"),
    ("GET", "/api/v1/patients/{id}", "admin", "the MPI steward reads any person of the community, identifiers masked"),
    ("POST", "/api/v1/patients/duplicates/{id}/merge", "admin", "the tenant admin is the community MPI's steward"),
    ("POST", "/api/v1/patients/duplicates/{id}/dismiss", "admin", "the tenant admin is the community MPI's steward"),
    ("POST", "/api/v1/patients/merges/{id}/undo", "admin", "the tenant admin is the community MPI's steward"),
    ("POST", "/api/v1/patients/{id}/break-glass", DOCTORS, "break-glass: any doctor, with a written reason, audited"),
    (
        "GET",
        "/api/v1/patients/{id}/summary",
        DOCTORS,
        "the community summary under the break-glass the matrix just declared (break-glass sorts first)",
    ),
];

/// The accounts holding a doctor's role, who may break the glass.
const DOCTORS: &str = "county.doctor township.doctor village.doctor village.roving";

/// Why the tenant admin's audit trail may name another's ids: it records each attempt this
/// matrix makes, refusals included, with the id that was asked for.
pub const AUDIT_NAMES_ATTEMPTS: &str = "the audit trail records the ids its own users asked for, refused ones too";

/// Why the ledger's readers see other institutions' bills and payments (by id, with amounts).
const LEDGER: &str =
    "journal entries name the bill or payment they post, by id; the community's ledger is consolidated";

/// Lists whose answer may name the victim objects, and for whom. (account, path)
const ALLOWED_LISTS: &[(&str, &str, &str)] = &[
    ("admin", "/api/v1/audit/events", AUDIT_NAMES_ATTEMPTS),
    ("admin", "/api/v1/patients/duplicates", "the MPI steward's queue is community-wide"),
    (
        "*",
        "/api/v1/patients/search",
        "the community shares one patient index: a search finds the person wherever registered, identifiers masked unless registered here",
    ),
    ("admin", "/api/v1/accounts/entries", LEDGER),
    ("finance", "/api/v1/accounts/entries", LEDGER),
];

fn allowed(method: &Method, template: &str, account: &str) -> bool {
    ALLOWED.iter().any(|(m, t, who, _)| {
        *m == method.as_str() && *t == template && (*who == "*" || who.split(' ').any(|w| w == account))
    })
}

/// The ids of the victim's objects that must not show up in anyone else's lists.
fn needles(ids: &Ids) -> Vec<String> {
    let v = ids.visit.as_ref().expect("objects made");
    vec![
        v.person.clone(),
        v.encounter.clone(),
        v.prescription.clone(),
        v.bill.clone(),
        v.payment.clone(),
        ids.referral.clone().unwrap(),
        ids.enrollment.clone().unwrap(),
        ids.suggestion.clone().unwrap(),
    ]
}

/// The victim person's identity as `visit::full_visit` registers it (sequence `seq`): resident ID
/// and phone in full, and the name.
pub fn identity(seq: u32) -> (Vec<String>, &'static str) {
    (vec![crate::patients::rid("130999", "19580412", 10 + 2 * seq + 1), "13700000000".into()], "陈建国")
}

/// Field-level exposure: no caller here works where the person is registered, so none may
/// receive the person's identifiers in full; the bureau receives no identity field at all.
pub fn assert_no_identity(caller: &str, what: &str, text: &str, seq: u32) {
    let (identifiers, name) = identity(seq);
    for id in identifiers {
        assert!(!text.contains(&id), "EXPOSED: {caller} received an identifier in full from {what}");
    }
    if caller == "bureau" {
        assert!(!text.contains(name), "EXPOSED: the bureau received a patient's name from {what}");
    }
}

/// Reads every list the document offers (every GET without an id, and the patient search), as
/// every caller, and asserts none names the objects in `ids` except where `allowed` says so.
/// Returns (lists, reads).
pub async fn lists_hide(
    app: &TestApp,
    callers: &[(&str, Session)],
    ids: &Ids,
    allowed: &[(&str, &str, &str)],
    cross_tenant: bool,
    seq: u32,
) -> (usize, usize) {
    let mut secrets = needles(ids);
    if cross_tenant {
        // Another community's institutions are invisible too.
        secrets.push(ids.institution.to_string());
    }
    let mut lists: Vec<(Method, String, Option<Value>)> = operations()
        .into_iter()
        // The server-sent-events stream never ends; `tests/api/referrals.rs` checks what it sends.
        .filter(|(m, t)| *m == Method::GET && !t.contains('{') && t != "/api/v1/referrals/stream")
        .map(|(m, t)| (m, t, None))
        .collect();
    lists.push((Method::POST, "/api/v1/patients/search".into(), Some(json!({"name": "陈建国"}))));
    let mut reads = 0;
    for (method, path, body) in &lists {
        for (name, who) in callers {
            let r = app.request(method.clone(), path, Some(&who.token), body.clone()).await;
            assert!(!r.status.is_server_error(), "{name}: {method} {path}: {}", r.text);
            assert_no_identity(name, &format!("{method} {path}"), &r.text, seq);
            reads += 1;
            if allowed.iter().any(|(a, p, _)| (*a == "*" || a == name) && p == path) {
                continue;
            }
            for secret in &secrets {
                assert!(!r.text.contains(secret.as_str()), "{name}: {method} {path} names another's object {secret}");
            }
        }
    }
    (lists.len(), reads)
}

/// A snapshot of the victim's objects as their owner sees them, to show refused writes changed
/// nothing.
async fn snapshot(app: &TestApp, owner: &Session, ids: &Ids) -> Vec<String> {
    let v = ids.visit.as_ref().unwrap();
    let mut out = Vec::new();
    for path in [
        format!("/api/v1/encounters/{}", v.encounter),
        format!("/api/v1/prescriptions/{}", v.prescription),
        format!("/api/v1/bills/{}", v.bill),
        format!("/api/v1/referrals/{}", ids.referral.as_ref().unwrap()),
        format!("/api/v1/followups/enrollments/{}", ids.enrollment.as_ref().unwrap()),
        format!("/api/v1/patients/{}", v.person),
        "/api/v1/followups/suggestions".to_string(),
    ] {
        let r = app.get(&path, &owner.token).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text);
        let mut body = r.body;
        // The one field that moves by itself: the SLA countdown.
        body.as_object_mut().map(|o| o.remove("sla_seconds_left"));
        out.push(body.to_string());
    }
    out
}

#[tokio::test]
async fn every_role_is_refused_another_institutions_objects_except_the_allowed_paths() {
    let app = spawn_app().await;
    app.load_demo().await;
    let admin = app.login("admin").await;
    let owner = app.login(VICTIM_DOCTOR).await;
    // The victim clinic's objects; the referral goes to its own township, where no caller works.
    let mut ids = objects_of(&app, &admin, &owner, VICTIM_INSTITUTION, "th-xihe", VICTIM_SEQ).await;
    // Staff operations name a helper of the clinic, so the tenant admin's allowed role changes
    // do not touch the owner's own roles.
    let helper = app
        .post(
            &format!("/api/v1/institutions/{}/staff", ids.institution),
            &owner.token,
            json!({"username": "y.helper", "display_name": "西河助手", "password": "Helper@2026", "roles": ["village_doctor"]}),
        )
        .await;
    assert_eq!(helper.status, 201, "{}", helper.text);
    ids.user = helper.body["id"].as_str().unwrap().parse().unwrap();
    // The person operations name the clinic's own patient, registered nowhere else.
    ids.person = ids.visit.as_ref().unwrap().person.parse().unwrap();
    let before = snapshot(&app, &owner, &ids).await;

    let mut callers = Vec::new();
    for name in DEMO_USERS.into_iter().filter(|n| *n != VICTIM_DOCTOR) {
        let s = app.login(name).await;
        assert_ne!(s.institution_id, ids.institution, "{name} must work elsewhere");
        callers.push((name, s));
    }

    let (mut operations_checked, mut attempts, mut allowed_attempts) = (0, 0, 0);
    for (method, template) in operations() {
        if !template.contains('{') {
            continue;
        }
        let path = fill(&template, &ids)
            .unwrap_or_else(|| panic!("{method} {template} takes an id but has no entry in the isolation matrix"));
        for (name, who) in &callers {
            let r = app.request(method.clone(), &path, Some(&who.token), valid_body(&method, &template)).await;
            attempts += 1;
            assert!(!r.status.is_server_error(), "{name}: {method} {path}: {}", r.text);
            assert_no_identity(name, &format!("{method} {path}"), &r.text, VICTIM_SEQ);
            if allowed(&method, &template, name) {
                // Reached: whatever it answers, it is not an isolation refusal.
                assert!(
                    r.status != 403 && r.status != 404,
                    "{name}: {method} {path} is allowed: {} {}",
                    r.status,
                    r.text
                );
                allowed_attempts += 1;
                continue;
            }
            assert!(
                r.status == 403 || r.status == 404,
                "LEAK: {name} reached {method} {path} of another institution: {} {}",
                r.status,
                r.text
            );
        }
        operations_checked += 1;
    }
    for (m, t, who, _) in ALLOWED {
        assert!(operations().iter().any(|(om, ot)| om.as_str() == *m && ot == t), "allowed entry {m} {t} is stale");
        assert!(*who == "*" || who.split(' ').all(|w| DEMO_USERS.contains(&w)), "{who}");
    }
    let (lists, list_reads) = lists_hide(&app, &callers, &ids, ALLOWED_LISTS, false, VICTIM_SEQ).await;

    // The owner, where the person is registered, does see the identifiers in full.
    let (identifiers, _) = identity(VICTIM_SEQ);
    let own = app.get(&format!("/api/v1/patients/{}", ids.person), &owner.token).await;
    assert_eq!(own.body["resident_id"], identifiers[0].as_str(), "{}", own.text);
    assert_eq!(own.body["phone"], identifiers[1].as_str());

    // Refused writes changed nothing the owner sees (the tenant admin's allowed staff changes
    // touched only the helper).
    assert_eq!(snapshot(&app, &owner, &ids).await, before);

    // The conditional paths open only for the caller their condition names, shown on a second
    // person of the clinic that no one has broken the glass for.
    let v = crate::visit::full_visit(&app, &owner, 6).await;
    let of = |name: &str| &callers.iter().find(|(n, _)| *n == name).unwrap().1;
    let summary = format!("/api/v1/patients/{}/summary", v.person);
    let encounter = format!("/api/v1/encounters/{}", v.encounter);
    // 1. The community summary: once the person is registered at the caller's clinic.
    let here = of("village.doctor");
    let reg = app
        .post(
            "/api/v1/patients",
            &here.token,
            json!({"name": "陈建国", "resident_id": crate::patients::rid("130999", "19580412", 10 + 2 * 6 + 1)}),
        )
        .await;
    assert_eq!(reg.status, 200, "the same person, registered at a second clinic: {}", reg.text);
    assert_eq!(reg.body["person"]["id"], v.person.as_str());
    let s = app.get(&summary, &here.token).await;
    assert_eq!(s.status, 200, "{}", s.text);
    assert_eq!(s.body["encounters"][0]["encounter"]["id"], v.encounter.as_str());
    assert_eq!(app.get(&encounter, &here.token).await.status, 404, "the summary, not the record itself");
    assert_eq!(app.get(&summary, &of("county.doctor").token).await.status, 404, "not registered at the county");
    // 2. A referral grant: the receiving institution, once it accepts.
    let county = app.institutions(&admin).await["county-hospital"];
    let up = app
        .post(
            "/api/v1/referrals",
            &owner.token,
            json!({"person_id": v.person, "direction": "up", "to_institution_id": county, "reason": "需上级医院评估"}),
        )
        .await;
    assert_eq!(up.status, 201, "{}", up.text);
    let records = format!("/api/v1/referrals/{}/records", up.body["id"].as_str().unwrap());
    let coordinator = of("coordinator");
    assert_eq!(app.get(&records, &coordinator.token).await.status, 403, "no grant before acceptance");
    let accept = app
        .post(&format!("/api/v1/referrals/{}/accept", up.body["id"].as_str().unwrap()), &coordinator.token, json!({}))
        .await;
    assert_eq!(accept.status, 200, "{}", accept.text);
    let opened = app.get(&records, &coordinator.token).await;
    assert_eq!(opened.status, 200, "{}", opened.text);
    assert_eq!(opened.body[0]["id"], v.encounter.as_str());
    for name in ["village.doctor", "township.doctor", "county.pharmacist", "bureau"] {
        let r = app.get(&records, &of(name).token).await;
        assert!(r.status == 403 || r.status == 404, "{name} is not the receiving end: {} {}", r.status, r.text);
    }
    assert_eq!(
        app.get(&encounter, &coordinator.token).await.status,
        404,
        "the grant's records, not the encounter route"
    );
    // 3. Break-glass: a doctor, with a written reason, for themselves at their institution.
    let doctor = of("county.doctor");
    let glass = format!("/api/v1/patients/{}/break-glass", v.person);
    for reason in ["", "   ", "急诊"] {
        let r = app.post(&glass, &doctor.token, json!({ "reason": reason })).await;
        assert_eq!((r.status.as_u16(), r.code()), (422, "break_glass_reason_required"), "{reason:?}: {}", r.text);
    }
    assert_eq!(app.get(&summary, &doctor.token).await.status, 404, "a refused declaration opens nothing");
    for name in ["county.pharmacist", "county.cashier", "coordinator", "finance", "bureau", "admin"] {
        let r = app.post(&glass, &of(name).token, json!({"reason": "急诊昏迷，需查看既往用药与过敏史"})).await;
        assert_eq!((r.status.as_u16(), r.code()), (403, "forbidden"), "{name} is not a doctor: {}", r.text);
    }
    let declared = app.post(&glass, &doctor.token, json!({"reason": "急诊昏迷，需查看既往用药与过敏史"})).await;
    assert_eq!(declared.status, 201, "{}", declared.text);
    let hours = (declared.body["expires_at"].as_str().unwrap().parse::<chrono::DateTime<chrono::Utc>>().unwrap()
        - declared.body["opened_at"].as_str().unwrap().parse::<chrono::DateTime<chrono::Utc>>().unwrap())
    .num_hours();
    assert_eq!(hours, cloudhis::clinical::service::BREAK_GLASS_HOURS);
    let s = app.get(&summary, &doctor.token).await;
    assert_eq!(s.status, 200, "{}", s.text);
    assert_eq!(s.body["encounters"][0]["encounter"]["id"], v.encounter.as_str());
    assert_eq!(app.get(&encounter, &doctor.token).await.status, 404, "the summary, not the record itself");
    // For the declaring doctor only: another clinician who may read summaries finds nothing.
    let other = app.get(&summary, &of("township.doctor").token).await;
    assert_eq!((other.status.as_u16(), other.code()), (404, "person_not_found"), "{}", other.text);
    let unknown = app
        .post(
            &format!("/api/v1/patients/{}/break-glass", uuid::Uuid::now_v7()),
            &doctor.token,
            json!({"reason": "急诊昏迷，需查看既往用药与过敏史"}),
        )
        .await;
    assert_eq!((unknown.status.as_u16(), unknown.code()), (404, "person_not_found"));
    // Once it expires, the summary closes again.
    let owner_db = app.owner_connection().await;
    let past = if app.backend == crate::helpers::Backend::Postgres {
        "now() - interval '1 minute'"
    } else {
        "'2020-01-01T00:00:00Z'"
    };
    sea_orm::ConnectionTrait::execute_unprepared(
        &owner_db,
        &format!("UPDATE break_glass_access SET expires_at = {past}"),
    )
    .await
    .unwrap();
    assert_eq!(app.get(&summary, &doctor.token).await.status, 404, "an expired declaration opens nothing");
    // The declaration and the read under it are audited as break-glass, with the person as subject.
    let audit = app.get(&format!("/api/v1/audit/events?subject={}&limit=500", v.person), &admin.token).await;
    let rows: Vec<(&str, &str, &str)> = audit
        .body
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["actor_user_id"] == doctor.user_id.to_string())
        .map(|e| (e["action"].as_str().unwrap(), e["purpose"].as_str().unwrap(), e["outcome"].as_str().unwrap()))
        .collect();
    assert!(rows.contains(&("patient.break_glass", "break_glass", "success")), "{rows:?}");
    assert!(rows.contains(&("patient.summary", "break_glass", "success")), "{rows:?}");

    eprintln!(
        "cross-institution matrix: {operations_checked} id-taking operations and {lists} lists, {} accounts, \
         {attempts} + {list_reads} attempts ({allowed_attempts} on allowed paths), 0 leaks",
        callers.len()
    );
    assert!(operations_checked >= 40);
}
