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
