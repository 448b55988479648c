//! Login, logout, rate limiting and session switching.

use reqwest::Method;
use serde_json::json;

use crate::helpers::{PASSWORD, spawn_app};

#[tokio::test]
async fn demo_logins_work_for_every_role() {
    let app = spawn_app().await;
    app.load_demo().await;
    for (user, role) in [
        ("admin", "tenant_admin"),
        ("county.admin", "institution_admin"),
        ("county.doctor", "county_doctor"),
        ("coordinator", "referral_coordinator"),
        ("county.pharmacist", "pharmacist"),
        ("county.cashier", "cashier"),
        ("finance", "finance_officer"),
        ("township.doctor", "township_doctor"),
        ("village.doctor", "village_doctor"),
        ("bureau", "bureau_official"),
    ] {
        let s = app.login(user).await;
        let roles: Vec<&str> = s.body["roles"].as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect();
        assert!(roles.contains(&role), "{user} holds {role}: {roles:?}");
        let me = app.get("/api/v1/auth/session", &s.token).await;
        assert_eq!(me.status, 200);
        assert_eq!(me.body["user"]["username"], user);
        assert_eq!(me.body["user"]["id"], s.user_id.to_string());
        assert!(me.body.get("token").is_none(), "session view does not repeat the token");
    }
}

#[tokio::test]
async fn login_sets_an_httponly_session_cookie() {
    let app = spawn_app().await;
    app.load_demo().await;
    let r = app.try_login("demo-county", "village.doctor", PASSWORD).await;
    let cookie = r.headers.get("set-cookie").unwrap().to_str().unwrap();
    assert!(cookie.starts_with("cloudhis_session="), "{cookie}");
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
}

#[tokio::test]
async fn wrong_password_unknown_user_and_unknown_tenant_look_the_same() {
    let app = spawn_app().await;
    app.load_demo().await;
    let wrong_pw = app.try_login("demo-county", "village.doctor", "Wrong@2026").await;
    let no_user = app.try_login("demo-county", "nobody.here", "Wrong@2026").await;
    let no_tenant = app.try_login("no-such-county", "village.doctor", "Wrong@2026").await;
    for r in [&wrong_pw, &no_user, &no_tenant] {
        assert_eq!(r.status, 401);
        assert_eq!(r.body, json!({"code": "invalid_credentials", "message": "invalid tenant, username or password"}));
    }
}

#[tokio::test]
async fn sixth_wrong_attempt_within_a_minute_is_rate_limited() {
    let app = spawn_app().await;
    app.load_demo().await;
    for i in 1..=5 {
        let r = app.try_login("demo-county", "village.doctor", "Wrong@2026").await;
        assert_eq!(r.status, 401, "attempt {i}");
    }
    let sixth = app.try_login("demo-county", "village.doctor", "Wrong@2026").await;
    assert_eq!(sixth.status, 429, "{}", sixth.text);
    assert_eq!(sixth.code(), "too_many_attempts");
    let retry: u64 = sixth.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "retry-after {retry}");
    // Locked out even with the right password until the window ends.
    let right = app.try_login("demo-county", "village.doctor", PASSWORD).await;
    assert_eq!(right.status, 429);
    // Other users are not affected.
    assert_eq!(app.try_login("demo-county", "village.doctor2", PASSWORD).await.status, 200);
    // The lockout is in the trail once per window, however many attempts it refused.
    use sea_orm::{ConnectionTrait, Statement};
    let owner = app.owner_connection().await;
    let rows = owner
        .query_all_raw(Statement::from_string(
            owner.get_database_backend(),
            "SELECT outcome FROM audit_log WHERE action = 'auth.login' AND resource_id = 'rate_limited'",
        ))
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].try_get::<String>("", "outcome").unwrap(), "denied");
}

#[tokio::test]
async fn a_revoked_token_gets_401() {
    let app = spawn_app().await;
    app.load_demo().await;
    let s = app.login("village.doctor").await;
    assert_eq!(app.get("/api/v1/institutions", &s.token).await.status, 200);
    let out = app.request(Method::POST, "/api/v1/auth/logout", Some(&s.token), None).await;
    assert_eq!(out.status, 204);
    let cleared = out.headers.get("set-cookie").unwrap().to_str().unwrap();
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    let after = app.get("/api/v1/institutions", &s.token).await;
    assert_eq!(after.status, 401);
    assert_eq!(after.code(), "unauthenticated");
    // A second session of the same user is unaffected.
    let other = app.login("village.doctor").await;
    assert_eq!(app.get("/api/v1/institutions", &other.token).await.status, 200);
}

#[tokio::test]
async fn forged_or_garbage_tokens_get_401() {
    let app = spawn_app().await;
    app.load_demo().await;
    let s = app.login("admin").await;
    let mut forged = s.token.clone();
    forged.pop();
    forged.push(if s.token.ends_with('A') { 'B' } else { 'A' });
    for t in [forged.as_str(), "garbage", ""] {
        let r = app.get("/api/v1/institutions", t).await;
        assert_eq!(r.status, 401, "token {t:?}");
        assert_eq!(r.code(), "unauthenticated");
    }
    let none = app.request(Method::GET, "/api/v1/institutions", None, None).await;
    assert_eq!(none.status, 401);
}

#[tokio::test]
async fn switching_institution_issues_a_new_token_and_revokes_the_old() {
    let app = spawn_app().await;
    app.load_demo().await;
    let s = app.login("village.roving").await;
    let memberships = s.body["institutions"].as_array().unwrap();
    assert_eq!(memberships.len(), 2, "roving doctor works in two clinics");
    let other = memberships
        .iter()
        .map(|m| m["institution"]["id"].as_str().unwrap().to_string())
        .find(|id| *id != s.institution_id.to_string())
        .unwrap();
    let r = app.post("/api/v1/auth/switch-institution", &s.token, json!({ "institution_id": other })).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["institution_id"], other.as_str());
    let new_token = r.body["token"].as_str().unwrap();
    assert_eq!(app.get("/api/v1/auth/session", new_token).await.body["institution_id"], other.as_str());
    assert_eq!(app.get("/api/v1/auth/session", &s.token).await.status, 401);
}

#[tokio::test]
async fn login_straight_into_a_chosen_institution() {
    let app = spawn_app().await;
    app.load_demo().await;
    let admin = app.login("admin").await;
    let ids = app.institutions(&admin).await;
    let r = app
        .request(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"tenant": "demo-county", "username": "village.roving", "password": PASSWORD,
                        "institution_id": ids["v-shiqiao"]})),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["institution_id"], ids["v-shiqiao"].to_string());
}

/// The code an authenticator app would show now for `secret` (base32), `offset` steps away.
fn totp_now(secret: &str, offset: i64) -> String {
    let mut bits = 0u64;
    let mut n = 0;
    let mut bytes = Vec::new();
    for c in secret.chars() {
        bits = (bits << 5) | "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567".find(c).unwrap() as u64;
        n += 5;
        if n >= 8 {
            bytes.push((bits >> (n - 8)) as u8);
            n -= 8;
        }
    }
    let step = chrono::Utc::now().timestamp() / cloudhis::identity::totp::STEP + offset;
    cloudhis::identity::totp::code_at(&bytes, step)
}

/// MLPS level 3: an optional TOTP second factor for administrators. Once confirmed, a login
/// needs the current code, which works once; a wrong code counts as a failed attempt.
#[tokio::test]
async fn administrators_may_add_a_totp_second_factor_that_logins_then_need() {
    let app = spawn_app().await;
    app.load_demo().await;
    // Not for roles without staff administration.
    let doctor = app.login("county.doctor").await;
    let r = app.request(Method::POST, "/api/v1/auth/totp", Some(&doctor.token), None).await;
    assert_eq!((r.status.as_u16(), r.code()), (403, "forbidden"));

    let admin = app.login("admin").await;
    let setup = app.request(Method::POST, "/api/v1/auth/totp", Some(&admin.token), None).await;
    assert_eq!(setup.status, 201, "{}", setup.text);
    let secret = setup.body["secret"].as_str().unwrap().to_string();
    assert_eq!(secret.len(), 32);
    assert!(setup.body["uri"].as_str().unwrap().starts_with("otpauth://totp/cloudhis%20demo-county:admin?secret="));
    // Until confirmed it guards nothing; a wrong code does not confirm it.
    assert_eq!(app.try_login("demo-county", "admin", PASSWORD).await.status, 200);
    let wrong = app.post("/api/v1/auth/totp/confirm", &admin.token, json!({"code": "12345x"})).await;
    assert_eq!((wrong.status.as_u16(), wrong.code()), (422, "totp_code_wrong"), "{}", wrong.text);
    // Confirmed with the previous step's code (within the drift window), so the current one is
    // still unused for the login below.
    let ok = app.post("/api/v1/auth/totp/confirm", &admin.token, json!({"code": totp_now(&secret, -1)})).await;
    assert_eq!(ok.status, 204, "{}", ok.text);
    let again = app.request(Method::POST, "/api/v1/auth/totp", Some(&admin.token), None).await;
    assert_eq!((again.status.as_u16(), again.code()), (409, "totp_enabled"));

    let login = |totp: Option<String>| {
        let mut body = json!({"tenant": "demo-county", "username": "admin", "password": PASSWORD});
        if let Some(t) = totp {
            body["totp"] = json!(t);
        }
        app.request(Method::POST, "/api/v1/auth/login", None, Some(body))
    };
    let missing = login(None).await;
    assert_eq!((missing.status.as_u16(), missing.code()), (401, "totp_required"));
    let bad = login(Some("12345x".into())).await;
    assert_eq!((bad.status.as_u16(), bad.code()), (401, "totp_invalid"));
    // The current code logs in, once.
    let current = totp_now(&secret, 0);
    let good = login(Some(current.clone())).await;
    assert_eq!(good.status, 200, "{}", good.text);
    let replay = login(Some(current)).await;
    assert_eq!((replay.status.as_u16(), replay.code()), (401, "totp_invalid"), "a code works once");
    // A wrong password is still just a wrong password.
    let r = app.try_login("demo-county", "admin", "Wrong@2026").await;
    assert_eq!((r.status.as_u16(), r.code()), (401, "invalid_credentials"));

    // The secret is stored encrypted.
    use sea_orm::ConnectionTrait;
    let owner = app.owner_connection().await;
    let rows = owner
        .query_all_raw(sea_orm::Statement::from_string(
            owner.get_database_backend(),
            "SELECT secret_enc FROM user_totp",
        ))
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    let stored: String = rows[0].try_get("", "secret_enc").unwrap();
    assert!(!stored.contains(&secret) && !stored.to_lowercase().contains(&secret.to_lowercase()));

    // Refusals are in the trail, naming the account.
    {
        use sea_orm::{ConnectionTrait, Statement};
        let owner = app.owner_connection().await;
        let rows = owner
            .query_all_raw(Statement::from_string(
                owner.get_database_backend(),
                "SELECT resource_id, actor_user_id FROM audit_log WHERE action = 'auth.login' \
                 AND outcome = 'denied' AND resource_id LIKE 'totp%' ORDER BY seq",
            ))
            .await
            .unwrap();
        let denied: Vec<(String, uuid::Uuid)> = rows
            .iter()
            .map(|r| (r.try_get("", "resource_id").unwrap(), r.try_get("", "actor_user_id").unwrap()))
            .collect();
        let expected = ["totp_required", "totp_invalid", "totp_invalid"].map(|c| (c.to_string(), admin.user_id));
        assert_eq!(denied, expected, "missing, wrong, replayed");
    }

    // Disabling needs the password and a current, unused code; then the password alone works.
    let session = good.body["token"].as_str().unwrap().to_string();
    let off = app
        .post("/api/v1/auth/totp/disable", &session, json!({"password": PASSWORD, "code": totp_now(&secret, -1)}))
        .await;
    assert_eq!(
        (off.status.as_u16(), off.code()),
        (422, "totp_code_wrong"),
        "a step before the last used: {}",
        off.text
    );
    let off = app
        .post("/api/v1/auth/totp/disable", &session, json!({"password": "Wrong@2026", "code": totp_now(&secret, 1)}))
        .await;
    assert_eq!(
        (off.status.as_u16(), off.code()),
        (422, "totp_code_wrong"),
        "a stolen session alone cannot: {}",
        off.text
    );
    let off = app
        .post("/api/v1/auth/totp/disable", &session, json!({"password": PASSWORD, "code": totp_now(&secret, 1)}))
        .await;
    assert_eq!(off.status, 204, "{}", off.text);
    assert_eq!(app.try_login("demo-county", "admin", PASSWORD).await.status, 200);
}

/// Wrong one-time codes count toward the login lockout like wrong passwords.
#[tokio::test]
async fn wrong_totp_codes_lock_the_account_out() {
    let app = spawn_app().await;
    app.load_demo().await;
    let admin = app.login("admin").await;
    let setup = app.request(Method::POST, "/api/v1/auth/totp", Some(&admin.token), None).await;
    let secret = setup.body["secret"].as_str().unwrap().to_string();
    let ok = app.post("/api/v1/auth/totp/confirm", &admin.token, json!({"code": totp_now(&secret, 0)})).await;
    assert_eq!(ok.status, 204, "{}", ok.text);
    let body = json!({"tenant": "demo-county", "username": "admin", "password": PASSWORD, "totp": "12345x"});
    for i in 1..=5 {
        let r = app.request(Method::POST, "/api/v1/auth/login", None, Some(body.clone())).await;
        assert_eq!((r.status.as_u16(), r.code()), (401, "totp_invalid"), "attempt {i}");
    }
    let locked = app.request(Method::POST, "/api/v1/auth/login", None, Some(body)).await;
    assert_eq!((locked.status.as_u16(), locked.code()), (429, "too_many_attempts"));
}
