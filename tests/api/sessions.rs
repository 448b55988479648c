//! Sessions end everywhere: an open event stream (API and browser) closes when its session is
//! logged out, its user deactivated or its role removed, and nothing reaches it afterwards; on the
//! embedded default a change made by another process takes effect on the next request.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;

use sea_orm::ConnectionTrait;

use crate::helpers::{Backend, Session, TestApp, spawn_app, spawn_app_with};
use crate::web::{Browser, csrf};

/// The re-check interval the streams use in these tests (production: at most 30 s).
const RECHECK: &[(&str, &str)] = &[("CLOUDHIS_STREAM_RECHECK_SECONDS", "1")];

/// How long a stream may take to close: the bound.
const CLOSE_WITHIN: Duration = Duration::from_secs(30);

/// Reads `stream` until it ends; `Err` when it is still open after `CLOSE_WITHIN`. Returns
/// everything it said.
async fn read_to_end(mut stream: reqwest::Response) -> Result<String, String> {
    let mut said = String::new();
    let ended = tokio::time::timeout(CLOSE_WITHIN, async {
        while let Ok(Some(chunk)) = stream.chunk().await {
            said.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await;
    match ended {
        Ok(()) => Ok(said),
        Err(_) => Err(said),
    }
}

/// Reads `stream` until it mentions `needle` (or 20 s pass): proves the stream is live.
async fn hears(stream: &mut reqwest::Response, needle: &str) -> bool {
    let mut said = String::new();
    tokio::time::timeout(Duration::from_secs(20), async {
        while let Ok(Some(chunk)) = stream.chunk().await {
            said.push_str(&String::from_utf8_lossy(&chunk));
            if said.contains(needle) {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false)
}

async fn api_stream(app: &TestApp, token: &str) -> reqwest::Response {
    let r = app.client.get(format!("{}/api/v1/referrals/stream", app.base)).bearer_auth(token).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r
}

async fn browser_stream(b: &Browser<'_>, app: &TestApp) -> reqwest::Response {
    let r = b.client.get(format!("{}/app/referrals/stream", app.base)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    r
}

/// A new up-referral from the village to the county hospital; returns its id.
async fn refer(app: &TestApp, village: &Session, person: &str) -> String {
    let ids = app.institutions(village).await;
    let r = app
        .post(
            "/api/v1/referrals",
            &village.token,
            json!({"person_id": person, "direction": "up", "to_institution_id": ids["county-hospital"], "reason": "转诊"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.body["id"].as_str().unwrap().to_string()
}

/// How a session is ended, and how it is restored for the next case.
#[derive(Debug, Clone, Copy)]
enum Ending {
    Logout,
    Deactivation,
    RoleRemoval,
}

#[tokio::test]
async fn logout_deactivation_and_role_removal_each_close_open_api_and_browser_streams() {
    let app = spawn_app_with(RECHECK).await;
    app.load_demo().await;
    let village = app.login("village.doctor").await;
    let admin = app.login("admin").await;
    let person = crate::referrals::patient(&app, &village, 11).await;
    let county = app.institutions(&admin).await["county-hospital"];

    for ending in [Ending::Logout, Ending::Deactivation, Ending::RoleRemoval] {
        // The coordinator watches the inbox twice: through the API and in a browser.
        let coordinator = app.login("coordinator").await;
        let b = Browser::new(&app);
        assert_eq!(b.login("coordinator").await.location.as_deref(), Some("/app/referrals"));
        let mut api = api_stream(&app, &coordinator.token).await;
        let mut page = browser_stream(&b, &app).await;
        // Both are live before the session ends.
        let before = refer(&app, &village, &person).await;
        assert!(hears(&mut api, &before).await, "{ending:?}: the API stream is live");
        assert!(hears(&mut page, &before).await, "{ending:?}: the browser stream is live");

        match ending {
            Ending::Logout => {
                let r = app.request(Method::POST, "/api/v1/auth/logout", Some(&coordinator.token), None).await;
                assert!(r.status.is_success(), "{}", r.text);
                let home = b.get("/app/referrals").await;
                let r = b.post("/app/logout", &[("csrf", &csrf(&home.text))]).await;
                assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
            }
            Ending::Deactivation => {
                let r = app
                    .post(&format!("/api/v1/users/{}/deactivate", coordinator.user_id), &admin.token, json!({}))
                    .await;
                assert_eq!(r.status, 200, "{}", r.text);
                assert_eq!(r.body["active"], false, "{}", r.text);
            }
            Ending::RoleRemoval => {
                let path =
                    format!("/api/v1/institutions/{county}/staff/{}/roles/referral_coordinator", coordinator.user_id);
                let r = app.request(Method::DELETE, &path, Some(&admin.token), None).await;
                assert!(r.status.is_success(), "{}", r.text);
            }
        }
        // A referral sent after the session ended never reaches either stream, and both close.
        let after = refer(&app, &village, &person).await;
        let api_said =
            read_to_end(api).await.unwrap_or_else(|s| panic!("{ending:?}: the API stream is still open: {s}"));
        let page_said =
            read_to_end(page).await.unwrap_or_else(|s| panic!("{ending:?}: the browser stream is still open: {s}"));
        assert!(!api_said.contains(&after), "{ending:?}: an event reached the API stream after its session ended");
        assert!(!page_said.contains(&after), "{ending:?}: an event reached the browser stream after its session ended");
        // And neither can be opened again with the ended session.
        let again = app
            .client
            .get(format!("{}/api/v1/referrals/stream", app.base))
            .bearer_auth(&coordinator.token)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), StatusCode::UNAUTHORIZED, "{ending:?}: the API stream reopens");
        let again = b.client.get(format!("{}/app/referrals/stream", app.base)).send().await.unwrap();
        assert_ne!(again.status(), StatusCode::OK, "{ending:?}: the browser stream reopens");

        // Restore the coordinator for the next case.
        match ending {
            Ending::Logout => {}
            Ending::Deactivation => {
                let r = app
                    .post(&format!("/api/v1/users/{}/reactivate", coordinator.user_id), &admin.token, json!({}))
                    .await;
                assert_eq!(r.status, 200, "{}", r.text);
            }
            Ending::RoleRemoval => {
                let path =
                    format!("/api/v1/institutions/{county}/staff/{}/roles/referral_coordinator", coordinator.user_id);
                let r = app.request(Method::PUT, &path, Some(&admin.token), None).await;
                assert!(r.status.is_success(), "{}", r.text);
            }
        }
    }
}

#[tokio::test]
async fn an_admin_cannot_deactivate_themselves_and_a_deactivated_user_cannot_log_in() {
    let app = spawn_app().await;
    app.load_demo().await;
    let admin = app.login("admin").await;
    let r = app.post(&format!("/api/v1/users/{}/deactivate", admin.user_id), &admin.token, json!({})).await;
    assert_eq!((r.status.as_u16(), r.body["code"].as_str()), (422, Some("self_deactivation")), "{}", r.text);
    // A clinic's own administrator may not deactivate a county doctor (not their staff).
    let village = app.login("village.doctor").await;
    let doctor = app.login("county.doctor").await;
    let r = app.post(&format!("/api/v1/users/{}/deactivate", doctor.user_id), &village.token, json!({})).await;
    assert!(r.status == 403 || r.status == 404, "{} {}", r.status, r.text);
    assert_eq!(app.get("/api/v1/auth/session", &doctor.token).await.status, 200, "nothing changed");
    // The county hospital's own administrator administers its staff, but not the tenant admin,
    // whose role only a tenant admin grants.
    let county_admin = app.login("county.admin").await;
    let r = app.post(&format!("/api/v1/users/{}/deactivate", admin.user_id), &county_admin.token, json!({})).await;
    assert_eq!((r.status.as_u16(), r.code()), (403, "forbidden"), "{}", r.text);
    assert_eq!(app.get("/api/v1/auth/session", &admin.token).await.status, 200, "the tenant admin is untouched");

    let r = app.post(&format!("/api/v1/users/{}/deactivate", doctor.user_id), &admin.token, json!({})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(app.get("/api/v1/auth/session", &doctor.token).await.status, 401, "the open session ends at once");
    let login = app.try_login("demo-county", "county.doctor", crate::helpers::PASSWORD).await;
    assert_eq!(login.status, 401, "{}", login.text);
    let r = app.post(&format!("/api/v1/users/{}/reactivate", doctor.user_id), &admin.token, json!({})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(app.try_login("demo-county", "county.doctor", crate::helpers::PASSWORD).await.status, 200);
}

/// Embedded default (SQLite, in-memory cache, no Redis): a tenant file applied by another process
/// (`cloudhis tenants apply`) that deactivates a user or removes a role takes effect on the
/// serving process's very next request, not when a cache expires. With Redis the change travels
/// as a pub/sub notice, which arrives after the other process returns: there the test waits for
/// the refusal, within a few seconds, instead of asking it of the very next request.
#[tokio::test]
async fn embedded_a_change_applied_by_another_process_refuses_the_next_request() {
    let app = spawn_app().await;
    app.load_demo().await;
    let village = app.login("village.doctor").await;
    let pharmacist = app.login("county.pharmacist").await;
    assert_eq!(app.get("/api/v1/auth/session", &village.token).await.status, 200);
    assert_eq!(app.get("/api/v1/pharmacy/stock", &pharmacist.token).await.status, 200);

    let demo = cloudhis::cli::DEMO_TENANT;
    let deactivated = demo.replacen(
        "username = \"village.doctor\"\ndisplay_name = \"张卫东\"\n",
        "username = \"village.doctor\"\ndisplay_name = \"张卫东\"\nactive = false\n",
        1,
    );
    assert_ne!(deactivated, demo, "the demo file names village.doctor as the test expects");
    let file = app.dir.path().join("deactivate.toml");
    std::fs::write(&file, &deactivated).unwrap();
    let out = app.cli(&["tenants", "apply", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // The next request, with no wait (with Redis: once the notice has arrived).
    let r = refused_soon(&app, || app.get("/api/v1/auth/session", &village.token), |s| s == 401).await;
    assert_eq!(r.status, 401, "a deactivated user's token is refused at once: {}", r.text);
    let r = app
        .post("/api/v1/patients", &village.token, json!({"name": "王五", "sex": "male", "birth_date": "1970-01-01"}))
        .await;
    assert_eq!(r.status, 401, "{}", r.text);
    assert_eq!(app.get("/api/v1/pharmacy/stock", &pharmacist.token).await.status, 200, "others are untouched");

    // A role removed by another replica (its own process state, the same database): the next
    // request here is refused too. The row goes as the service's revoke would remove it, and the
    // other state announces the change the way the service does.
    let owner = app.owner_connection().await;
    let uid = pharmacist.user_id;
    let sql = match app.backend {
        Backend::Postgres => format!("DELETE FROM role_bindings WHERE user_id = '{uid}' AND role = 'pharmacist'"),
        Backend::Sqlite => {
            format!("DELETE FROM role_bindings WHERE user_id = X'{}' AND role = 'pharmacist'", uid.simple())
        }
    };
    assert_eq!(owner.execute_unprepared(&sql).await.unwrap().rows_affected(), 1);
    let lookup = app.env.clone();
    let config = cloudhis::platform::config::Config::from_lookup(|k| lookup.get(k).cloned()).unwrap().config;
    let other = cloudhis::startup::connect(config).await.unwrap();
    other.authz.changed(pharmacist.tenant_id).await;
    let r = refused_soon(&app, || app.get("/api/v1/pharmacy/stock", &pharmacist.token), |s| s == 401 || s == 403).await;
    assert!(r.status == 401 || r.status == 403, "a removed role is refused at once: {} {}", r.status, r.text);
}

/// The first answer of `request` on the embedded default, where a change made by another process
/// must show on the very next request. With Redis the change is a pub/sub notice that lands
/// shortly after the other process returns: ask again until `refused` holds, for at most 5 s.
async fn refused_soon<F, Fut>(
    app: &TestApp,
    mut request: F,
    refused: impl Fn(StatusCode) -> bool,
) -> crate::helpers::Resp
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = crate::helpers::Resp>,
{
    let r = request().await;
    // The strict promise is the in-memory cache's (each request compares the tenant's epoch).
    if !app.env.contains_key("REDIS_URL") || refused(r.status) {
        return r;
    }
    crate::referrals::eventually("the change's notice", 5, || {
        let r = request();
        async { refused(r.await.status) }
    })
    .await;
    request().await
}
