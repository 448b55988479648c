//! The audit chain: intact after a normal run, and a tampered row is found and named.

use reqwest::Method;
use sea_orm::ConnectionTrait;

use crate::helpers::{Backend, spawn_app};

#[tokio::test]
async fn audit_verify_passes_after_a_normal_run_and_names_an_edited_row() {
    let app = spawn_app().await;
    app.load_demo().await;
    let s = app.login("village.doctor").await;
    app.try_login("demo-county", "village.doctor", "Wrong@2026").await;
    app.request(Method::POST, "/api/v1/auth/logout", Some(&s.token), None).await;
    let admin = app.login("admin").await;

    // The trail records the logins, the failure and the logout, newest first.
    let events = app.get("/api/v1/audit/events", &admin.token).await;
    assert_eq!(events.status, 200, "{}", events.text);
    let actions: Vec<(String, String)> = events
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["action"].as_str().unwrap().into(), e["outcome"].as_str().unwrap().into()))
        .collect();
    assert_eq!(
        actions,
        [
            ("auth.login", "success"),
            ("auth.logout", "success"),
            ("auth.login", "denied"),
            ("auth.login", "success"),
            ("patient.bulk_import", "success"),
        ]
        .map(|(a, o)| (a.to_string(), o.to_string()))
    );

    // Reading the trail is itself recorded, after the rows it returned.
    let again = app.get("/api/v1/audit/events?limit=1", &admin.token).await;
    assert_eq!(again.body[0]["action"], "audit.read");
    assert_eq!(again.body[0]["purpose"], "administration");
    assert_eq!(again.body[0]["actor_user_id"], admin.user_id.to_string());

    let ok = app.cli(&["audit", "verify"]);
    let out = String::from_utf8_lossy(&ok.stdout);
    assert!(ok.status.success(), "{out} {}", String::from_utf8_lossy(&ok.stderr));
    assert!(out.contains("demo-county: 7 rows checked") && out.contains("audit chain intact"), "{out}");

    // Tamper with row 2 (the first login) as the database owner.
    let owner = app.owner_connection().await;
    if app.backend == Backend::Sqlite {
        owner.execute_unprepared("DROP TRIGGER audit_log_no_update").await.unwrap();
    }
    owner.execute_unprepared("UPDATE audit_log SET outcome = 'denied' WHERE seq = 2").await.unwrap();
    let id: String = {
        let row = owner
            .query_one_raw(sea_orm::Statement::from_string(
                owner.get_database_backend(),
                "SELECT id FROM audit_log WHERE seq = 2",
            ))
            .await
            .unwrap()
            .unwrap();
        row.try_get::<uuid::Uuid>("", "id").unwrap().to_string()
    };
    let bad = app.cli(&["audit", "verify"]);
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("BROKEN in tenant demo-county at row seq=2"), "{err}");
    assert!(err.contains(&id), "names the row id: {err}");
    assert!(err.contains("edited"), "{err}");
}

#[tokio::test]
async fn a_deleted_row_breaks_the_chain() {
    let app = spawn_app().await;
    app.load_demo().await;
    app.login("village.doctor").await;
    app.login("village.doctor").await;
    app.login("village.doctor").await;
    let owner = app.owner_connection().await;
    if app.backend == Backend::Sqlite {
        owner.execute_unprepared("DROP TRIGGER audit_log_no_delete").await.unwrap();
    }
    owner.execute_unprepared("DELETE FROM audit_log WHERE seq = 2").await.unwrap();
    let report = cloudhis::audit::verify(&app.state.db).await.unwrap();
    let broken = report.broken.expect("a gap is found");
    assert_eq!(broken.seq, 2);
    assert!(broken.reason.contains("missing"), "{}", broken.reason);
}

#[tokio::test]
async fn the_app_cannot_rewrite_history() {
    let app = spawn_app().await;
    app.load_demo().await;
    app.login("village.doctor").await;
    // Through the application's own connection (the app role on PostgreSQL).
    let err = app
        .state
        .db
        .raw()
        .execute_unprepared("UPDATE audit_log SET outcome = 'denied'")
        .await
        .expect_err("audit rows cannot be updated by the app");
    let msg = err.to_string();
    assert!(msg.contains("append-only") || msg.contains("permission denied"), "{msg}");
    assert!(app.state.db.raw().execute_unprepared("DELETE FROM audit_log").await.is_err());
}

/// One audit row, as the tests that find rows by request id read it.
#[derive(Debug, sea_orm::FromQueryResult)]
pub struct AuditRow {
    pub action: String,
    pub purpose: String,
    pub outcome: String,
    pub resource_id: Option<String>,
    pub institution_id: Option<uuid::Uuid>,
    pub actor_user_id: Option<uuid::Uuid>,
    pub subject_person_id: Option<uuid::Uuid>,
}

/// The audit rows a request wrote, found by its `x-request-id`.
pub async fn rows_of_request_id(app: &crate::helpers::TestApp, request_id: &str) -> Vec<AuditRow> {
    use sea_orm::FromQueryResult;
    let owner = app.owner_connection().await;
    let backend = owner.get_database_backend();
    let columns = "action, purpose, outcome, resource_id, institution_id, actor_user_id, subject_person_id";
    let sql = if backend == sea_orm::DbBackend::Postgres {
        format!("SELECT {columns} FROM audit_log WHERE request_id = $1")
    } else {
        format!("SELECT {columns} FROM audit_log WHERE request_id = ?")
    };
    AuditRow::find_by_statement(sea_orm::Statement::from_sql_and_values(backend, sql, [request_id.into()]))
        .all(&owner)
        .await
        .unwrap()
}

async fn rows_of_request(app: &crate::helpers::TestApp, r: &crate::helpers::Resp) -> Vec<AuditRow> {
    rows_of_request_id(app, r.headers["x-request-id"].to_str().unwrap()).await
}

/// MLPS level 3 records denied attempts: a request refused for want of a permission leaves one
/// `access.denied` row naming the operation and the permission, never the request's data.
#[tokio::test]
async fn a_permission_refusal_is_audited_with_the_operation_and_permission() {
    let app = spawn_app().await;
    app.load_demo().await;
    let doctor = app.login("county.doctor").await;
    let r = app.get("/api/v1/audit/events", &doctor.token).await;
    assert_eq!((r.status.as_u16(), r.code()), (403, "forbidden"));
    let rows = rows_of_request(&app, &r).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!((rows[0].action.as_str(), rows[0].outcome.as_str()), ("access.denied", "denied"));
    assert_eq!(rows[0].resource_id.as_deref(), Some("GET audit_list needs audit.read"));
    assert_eq!(rows[0].actor_user_id, Some(doctor.user_id));
    assert_eq!(rows[0].institution_id, Some(doctor.institution_id));

    // In another institution: the row names the institution the caller reached for.
    let village = app.login("village.doctor").await;
    let admin = app.login("admin").await;
    let xihe = app.institutions(&admin).await["v-xihe"];
    let body = serde_json::json!({"username": "intruder", "display_name": "入侵者", "password": "Intrude@2026", "roles": ["cashier"]});
    let r = app.post(&format!("/api/v1/institutions/{xihe}/staff"), &village.token, body).await;
    assert_eq!((r.status.as_u16(), r.code()), (403, "institution_forbidden"));
    let rows = rows_of_request(&app, &r).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].resource_id.as_deref(), Some("POST staff_create needs staff.write"));
    assert_eq!(rows[0].institution_id, Some(xihe));
    assert!(!rows[0].resource_id.as_deref().unwrap().contains("intruder"));

    // A refusal a service audits itself (no referral grant) is not written twice.
    let v = crate::visit::full_visit(&app, &village, 4).await;
    let county = app.institutions(&admin).await["county-hospital"];
    let referral = app
        .post(
            "/api/v1/referrals",
            &village.token,
            serde_json::json!({"person_id": v.person, "direction": "up", "to_institution_id": county, "reason": "转诊"}),
        )
        .await;
    let coordinator = app.login("coordinator").await;
    let records = app
        .get(&format!("/api/v1/referrals/{}/records", referral.body["id"].as_str().unwrap()), &coordinator.token)
        .await;
    assert_eq!((records.status.as_u16(), records.code()), (403, "grant_missing"));
    let rows = rows_of_request(&app, &records).await;
    assert_eq!(rows.iter().map(|r| r.action.as_str()).collect::<Vec<_>>(), ["referral.records"], "{rows:?}");
}
