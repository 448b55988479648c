//! Isolation: another tenant's resources are invisible (404), another institution's are
//! off-limits (403). The cross-tenant test walks every operation in the OpenAPI document that
//! takes an id, so a new operation without an entry here fails.

use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{Session, TestApp, spawn_app};

/// Every demo account (tenants/demo-county.toml): between them they hold every role.
pub const DEMO_USERS: [&str; 13] = [
    "admin",
    "county.admin",
    "county.doctor",
    "coordinator",
    "county.pharmacist",
    "county.cashier",
    "finance",
    "township.doctor",
    "township.admin",
    "village.doctor",
    "village.doctor2",
    "village.roving",
    "bureau",
];

/// Every (method, path template) in the OpenAPI document.
pub fn operations() -> Vec<(Method, String)> {
    let spec: Value = serde_json::from_str(&cloudhis::startup::openapi_document()).unwrap();
    let mut ops = Vec::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            ops.push((method.to_uppercase().parse().unwrap(), path.clone()));
        }
    }
    ops
}

pub struct Ids {
    pub institution: Uuid,
    pub user: Uuid,
    pub person: Uuid,
    pub merge: Uuid,
    pub pair: Uuid,
    pub visit: Option<crate::visit::Visit>,
    pub referral: Option<String>,
    pub enrollment: Option<String>,
    pub suggestion: Option<String>,
    pub import: Option<String>,
}

pub async fn ids_of(app: &TestApp, admin: &Session, institution_code: &str) -> Ids {
    let institution = app.institutions(admin).await[institution_code];
    let staff = app.get(&format!("/api/v1/institutions/{institution}/staff"), &admin.token).await;
    assert_eq!(staff.status, 200, "{}", staff.text);
    let user = staff.body[0]["id"].as_str().unwrap().parse().unwrap();
    Ids {
        institution,
        user,
        person: Uuid::nil(),
        merge: Uuid::nil(),
        pair: Uuid::nil(),
        visit: None,
        referral: None,
        enrollment: None,
        suggestion: None,
        import: None,
    }
}

/// Gives a community persons, a duplicate pair in its queue and a merge, through its own admin.
pub async fn patient_ids(app: &TestApp, admin: &Session, ids: &mut Ids) {
    let db = &app.state.db;
    cloudhis::patients::seed::seed(db, &app.state.pii, admin.tenant_id, 120, 0.25, 3).await.unwrap();
    let w = cloudhis::patients::matching::MatchWeights::default();
    cloudhis::patients::dedup::run(db, &app.state.pii, admin.tenant_id, &w, true).await.unwrap();
    let pairs = app.get("/api/v1/patients/duplicates", &admin.token).await;
    let list = pairs.body.as_array().unwrap();
    assert!(list.len() >= 2, "{}", pairs.text);
    let m = app
        .post(
            &format!("/api/v1/patients/duplicates/{}/merge", list[0]["id"].as_str().unwrap()),
            &admin.token,
            json!({"survivor_id": list[0]["a"]["id"], "reason": "同一人"}),
        )
        .await;
    assert_eq!(m.status, 201, "{}", m.text);
    ids.merge = m.body["merge_id"].as_str().unwrap().parse().unwrap();
    ids.pair = list[1]["id"].as_str().unwrap().parse().unwrap();
    ids.person = list[1]["a"]["id"].as_str().unwrap().parse().unwrap();
}

/// Every kind of object an id-taking operation names, made in `institution` by `doctor` (a
/// village doctor who is also pharmacist, cashier and institution admin there): a whole visit, a
/// referral up to `refer_to`, the follow-up suggestion the visit raises and an enrollment; plus
/// the community's duplicate pair and merge, made by its administrator.
pub async fn objects_of(
    app: &TestApp,
    admin: &Session,
    doctor: &Session,
    institution: &str,
    refer_to: &str,
    seq: u32,
) -> Ids {
    let mut ids = ids_of(app, admin, institution).await;
    patient_ids(app, admin, &mut ids).await;
    let visit = crate::visit::full_visit(app, doctor, seq).await;
    let to = app.institutions(admin).await[refer_to];
    let referral = app
        .post(
            "/api/v1/referrals",
            &doctor.token,
            json!({"person_id": visit.person, "direction": "up", "to_institution_id": to, "reason": "血压控制不佳"}),
        )
        .await;
    assert_eq!(referral.status, 201, "{}", referral.text);
    ids.referral = Some(referral.body["id"].as_str().unwrap().to_string());
    // The visit closed with hypertension: a suggestion to enroll, then the enrollment.
    let mut suggestion = None;
    for _ in 0..200 {
        let s = app.get("/api/v1/followups/suggestions", &doctor.token).await;
        if let Some(id) = s.body[0]["id"].as_str() {
            suggestion = Some(id.to_string());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    ids.suggestion = Some(suggestion.expect("a closed hypertension visit raises a suggestion"));
    let enrolled = app
        .post(
            "/api/v1/followups/enrollments",
            &doctor.token,
            json!({"person_id": visit.person, "disease": "hypertension", "diagnosed_on": "2025-01-01"}),
        )
        .await;
    assert_eq!(enrolled.status, 201, "{}", enrolled.text);
    ids.enrollment = Some(enrolled.body["id"].as_str().unwrap().to_string());
    ids.visit = Some(visit);
    ids.import = Some(crate::imports::finished_import(app, admin).await);
    ids
}

/// Fills a path template with `ids`; `None` for templates this matrix does not know yet.
pub fn fill(template: &str, ids: &Ids) -> Option<String> {
    let path = match template {
        "/api/v1/institutions/{id}" | "/api/v1/institutions/{id}/staff" => {
            template.replace("{id}", &ids.institution.to_string())
        }
        "/api/v1/institutions/{id}/staff/{user_id}/roles/{role}" => template
            .replace("{id}", &ids.institution.to_string())
            .replace("{user_id}", &ids.user.to_string())
            .replace("{role}", "village_doctor"),
        "/api/v1/users/{id}" | "/api/v1/users/{id}/deactivate" | "/api/v1/users/{id}/reactivate" => {
            template.replace("{id}", &ids.user.to_string())
        }
        "/api/v1/patients/{id}" => template.replace("{id}", &ids.person.to_string()),
        "/api/v1/patients/merges/{id}/undo" => template.replace("{id}", &ids.merge.to_string()),
        "/api/v1/patients/duplicates/{id}/merge" | "/api/v1/patients/duplicates/{id}/dismiss" => {
            template.replace("{id}", &ids.pair.to_string())
        }
        "/api/v1/patients/{id}/summary"
        | "/api/v1/patients/{id}/break-glass"
        | "/api/v1/patients/{id}/reveal"
        | "/api/v1/patients/{id}/allergies"
        | "/api/v1/accounts/patients/{id}/statement" => template.replace("{id}", &ids.visit.as_ref()?.person),
        t if t.starts_with("/api/v1/encounters/{id}") => t.replace("{id}", &ids.visit.as_ref()?.encounter),
        t if t.starts_with("/api/v1/prescriptions/{id}") => t.replace("{id}", &ids.visit.as_ref()?.prescription),
        t if t.starts_with("/api/v1/bills/{id}") => t.replace("{id}", &ids.visit.as_ref()?.bill),
        "/api/v1/payments/{id}/refunds" => template.replace("{id}", &ids.visit.as_ref()?.payment),
        t if t.starts_with("/api/v1/referrals/{id}") => t.replace("{id}", ids.referral.as_ref()?),
        t if t.starts_with("/api/v1/followups/enrollments/{id}") => t.replace("{id}", ids.enrollment.as_ref()?),
        "/api/v1/followups/suggestions/{id}/dismiss" => template.replace("{id}", ids.suggestion.as_ref()?),
        "/api/v1/imports/{id}" | "/api/v1/imports/{id}/report" => template.replace("{id}", ids.import.as_ref()?),
        _ => return None,
    };
    Some(path)
}

pub fn valid_body(method: &Method, template: &str) -> Option<Value> {
    match (method.as_str(), template) {
        ("POST", "/api/v1/institutions/{id}/staff") => Some(json!({
            "username": "intruder", "display_name": "入侵者", "password": "Intrude@2026", "roles": ["village_doctor"]
        })),
        ("POST", "/api/v1/patients/merges/{id}/undo") | ("POST", "/api/v1/patients/duplicates/{id}/dismiss") => {
            Some(json!({"reason": "越权尝试"}))
        }
        ("POST", "/api/v1/patients/duplicates/{id}/merge") => {
            Some(json!({"survivor_id": Uuid::nil(), "reason": "越权尝试"}))
        }
        ("POST", t) => Some(crate::errors::valid_body_json(t)),
        ("PUT", "/api/v1/encounters/{id}/notes") => Some(json!({"notes": "越权"})),
        _ => None,
    }
}

#[tokio::test]
async fn another_tenants_ids_are_404_for_every_operation() {
    let app = spawn_app().await;
    app.load_demo().await;
    app.load_other_tenant("other-county").await;
    let mine = app.login("admin").await;
    let theirs = app.login_in("other-county", "admin").await;
    let their_doctor = app.login_in("other-county", "village.doctor").await;
    let their_ids = objects_of(&app, &theirs, &their_doctor, "v-dongguan", "th-dongguan", 7).await;
    assert_ne!(mine.tenant_id, theirs.tenant_id, "two separate communities");

    // Every demo account of tenant A, so every role: a role without an operation's permission is
    // refused before any lookup (403), a role that has it finds nothing (404). Across tenants no
    // path is allowed, not even the institution tree.
    let mut callers = Vec::new();
    for name in DEMO_USERS {
        callers.push((name, app.login(name).await));
    }
    let (mut operations_checked, mut attempts) = (0, 0);
    for (method, template) in operations() {
        if !template.contains('{') {
            continue;
        }
        let path = fill(&template, &their_ids)
            .unwrap_or_else(|| panic!("{method} {template} takes an id but has no entry in the isolation matrix"));
        let mut found_404 = false;
        for (name, who) in &callers {
            let r = app.request(method.clone(), &path, Some(&who.token), valid_body(&method, &template)).await;
            assert!(
                r.status == 404 || r.status == 403,
                "{name}: {method} {path} from tenant A: {} {}",
                r.status,
                r.text
            );
            crate::bola::assert_no_identity(name, &format!("{method} {path}"), &r.text, 7);
            if r.status == 404 {
                assert!(r.code().ends_with("not_found"), "{name}: {method} {template}: {}", r.text);
                found_404 = true;
            }
            attempts += 1;
        }
        assert!(found_404, "{method} {template}: someone in tenant A must hold the permission and still find nothing");
        operations_checked += 1;
    }
    // Nothing of theirs in any list either.
    let (lists, list_reads) = crate::bola::lists_hide(
        &app,
        &callers,
        &their_ids,
        &[("admin", "/api/v1/audit/events", crate::bola::AUDIT_NAMES_ATTEMPTS)],
        true,
        7,
    )
    .await;
    eprintln!(
        "cross-tenant matrix: {operations_checked} id-taking operations and {lists} lists, {} accounts, \
         {attempts} + {list_reads} attempts, 0 leaks",
        callers.len()
    );
    assert!(operations_checked >= 40, "matrix covered {operations_checked} operations");
    assert_ne!(mine.tenant_id, Uuid::nil());
    // And the intruder account was not created over there.
    let staff = app.get(&format!("/api/v1/institutions/{}/staff", their_ids.institution), &theirs.token).await;
    assert!(!staff.text.contains("intruder"));
}

#[tokio::test]
async fn a_user_of_institution_x_cannot_act_in_institution_y() {
    let app = spawn_app().await;
    app.load_demo().await;
    let admin = app.login("admin").await;
    let ids = app.institutions(&admin).await;
    let (x, y) = (ids["v-dongguan"], ids["v-xihe"]);
    let y_user = ids_of(&app, &admin, "v-xihe").await.user;
    // village.doctor is the institution admin of X.
    let doc = app.login("village.doctor").await;
    assert_eq!(doc.institution_id, x);

    let forbidden = [
        (Method::GET, format!("/api/v1/institutions/{y}/staff"), None),
        (
            Method::POST,
            format!("/api/v1/institutions/{y}/staff"),
            valid_body(&Method::POST, "/api/v1/institutions/{id}/staff"),
        ),
        (Method::PUT, format!("/api/v1/institutions/{y}/staff/{y_user}/roles/pharmacist"), None),
        (Method::DELETE, format!("/api/v1/institutions/{y}/staff/{y_user}/roles/village_doctor"), None),
    ];
    for (method, path, body) in forbidden {
        let r = app.request(method.clone(), &path, Some(&doc.token), body).await;
        assert_eq!(r.status, 403, "{method} {path}: {}", r.text);
        assert_eq!(r.code(), "institution_forbidden");
    }
    // Y's staff member stays as they were.
    let y_staff = app.get(&format!("/api/v1/institutions/{y}/staff"), &admin.token).await;
    assert!(!y_staff.text.contains("intruder"));
    let row = y_staff.body.as_array().unwrap().iter().find(|s| s["id"] == y_user.to_string()).unwrap();
    let roles: Vec<&str> = row["roles"].as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect();
    assert!(roles.contains(&"village_doctor") && !roles.contains(&"cashier") || roles.contains(&"cashier"));
    assert_eq!(roles, ["village_doctor", "pharmacist", "cashier", "institution_admin"]);
    // Staff records of Y are invisible to X's admin.
    assert_eq!(app.get(&format!("/api/v1/users/{y_user}"), &doc.token).await.status, 404);
    // Cannot log in or switch into Y either.
    let r = app.post("/api/v1/auth/switch-institution", &doc.token, json!({ "institution_id": y })).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.code(), "institution_forbidden");
    // The community tree itself is shared.
    assert_eq!(app.get(&format!("/api/v1/institutions/{y}"), &doc.token).await.status, 200);
}

#[tokio::test]
async fn staff_administration_in_ones_own_institution() {
    let app = spawn_app().await;
    app.load_demo().await;
    let doc = app.login("village.doctor").await;
    let x = doc.institution_id;
    let created = app
        .post(
            &format!("/api/v1/institutions/{x}/staff"),
            &doc.token,
            json!({"username": "new.helper", "display_name": "新助手", "password": "Helper@2026", "roles": ["cashier"]}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let new_id = created.body["id"].as_str().unwrap().to_string();
    assert_eq!(created.body["roles"], json!(["cashier"]));

    let helper = app.try_login("demo-county", "new.helper", "Helper@2026").await;
    assert_eq!(helper.status, 200);
    let helper_token = helper.body["token"].as_str().unwrap().to_string();

    // Duplicate username, weak password, role that does not fit a village clinic.
    let dup = app
        .post(
            &format!("/api/v1/institutions/{x}/staff"),
            &doc.token,
            json!({"username": "new.helper", "display_name": "x", "password": "Helper@2026", "roles": ["cashier"]}),
        )
        .await;
    assert_eq!((dup.status.as_u16(), dup.code()), (409, "username_taken"));
    let weak = app
        .post(
            &format!("/api/v1/institutions/{x}/staff"),
            &doc.token,
            json!({"username": "weak.one", "display_name": "x", "password": "aaaaaaaa", "roles": ["cashier"]}),
        )
        .await;
    assert_eq!((weak.status.as_u16(), weak.code()), (422, "password_too_weak"));
    let misfit = app
        .post(
            &format!("/api/v1/institutions/{x}/staff"),
            &doc.token,
            json!({"username": "wrong.kind", "display_name": "x", "password": "Misfit@2026", "roles": ["county_doctor"]}),
        )
        .await;
    assert_eq!((misfit.status.as_u16(), misfit.code()), (422, "role_not_allowed_here"));
    let escalate = app
        .request(
            Method::PUT,
            &format!("/api/v1/institutions/{x}/staff/{new_id}/roles/tenant_admin"),
            Some(&doc.token),
            None,
        )
        .await;
    assert_eq!(escalate.status, 422, "tenant_admin cannot be held at a village clinic: {}", escalate.text);

    // Revoking the helper's only role ends the helper's session at once.
    let revoke = app
        .request(
            Method::DELETE,
            &format!("/api/v1/institutions/{x}/staff/{new_id}/roles/cashier"),
            Some(&doc.token),
            None,
        )
        .await;
    assert_eq!(revoke.status, 204, "{}", revoke.text);
    assert_eq!(app.get("/api/v1/auth/session", &helper_token).await.status, 401);
    let again = app
        .request(
            Method::DELETE,
            &format!("/api/v1/institutions/{x}/staff/{new_id}/roles/cashier"),
            Some(&doc.token),
            None,
        )
        .await;
    assert_eq!((again.status.as_u16(), again.code()), (404, "role_binding_not_found"));
    // Granting it back works, idempotently.
    for _ in 0..2 {
        let grant = app
            .request(
                Method::PUT,
                &format!("/api/v1/institutions/{x}/staff/{new_id}/roles/cashier"),
                Some(&doc.token),
                None,
            )
            .await;
        assert_eq!(grant.status, 204);
    }
    let staff = app.get(&format!("/api/v1/institutions/{x}/staff"), &doc.token).await;
    let helper_row = staff.body.as_array().unwrap().iter().find(|s| s["username"] == "new.helper").unwrap();
    assert_eq!(helper_row["roles"], json!(["cashier"]));
}

#[tokio::test]
async fn roles_without_staff_rights_are_refused() {
    let app = spawn_app().await;
    app.load_demo().await;
    let doctor = app.login("county.doctor").await;
    let r = app.get(&format!("/api/v1/institutions/{}/staff", doctor.institution_id), &doctor.token).await;
    assert_eq!((r.status.as_u16(), r.code()), (403, "institution_forbidden"));
    let audit = app.get("/api/v1/audit/events", &doctor.token).await;
    assert_eq!((audit.status.as_u16(), audit.code()), (403, "forbidden"));
}
