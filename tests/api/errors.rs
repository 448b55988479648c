//! Hostile and broken input against every operation in the OpenAPI document: malformed JSON,
//! wrong types, missing fields, bad and unknown ids, oversized bodies, no credentials. Never a
//! 5xx; always a JSON `{code, message}` body.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app, spawn_app_with};

struct Op {
    method: Method,
    template: String,
    has_body: bool,
    needs_auth: bool,
}

fn operations() -> Vec<Op> {
    let spec: Value = serde_json::from_str(&cloudhis::startup::openapi_document()).unwrap();
    let mut ops = Vec::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            ops.push(Op {
                method: method.to_uppercase().parse().unwrap(),
                template: path.clone(),
                has_body: op.get("requestBody").is_some(),
                needs_auth: op.get("security").is_some(),
            });
        }
    }
    ops
}

fn fill(template: &str, id: &str) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        let end = rest.find('}').unwrap();
        out.push_str(&rest[..start]);
        let name = &rest[start + 1..end];
        out.push_str(if name == "role" { "village_doctor" } else { id });
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

struct Answer {
    status: StatusCode,
    content_type: String,
    body: String,
}

fn assert_problem(a: &Answer, what: &str) {
    let (status, body) = (a.status, &a.body);
    assert!(status.is_client_error(), "{what}: expected 4xx, got {status}: {body}");
    let v: Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("{what}: body is not JSON: {body}"));
    assert!(v["code"].as_str().is_some_and(|c| !c.is_empty()), "{what}: no code: {body}");
    assert!(v["message"].is_string(), "{what}: no message: {body}");
    assert!(a.content_type.starts_with("application/json"), "{what}: {}", a.content_type);
}

async fn send(
    app: &TestApp,
    method: &Method,
    path: &str,
    token: Option<&str>,
    body: Option<(&str, Vec<u8>)>,
) -> Answer {
    let mut req = app.client.request(method.clone(), format!("{}{}", app.base, path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some((ct, bytes)) = body {
        req = req.header("content-type", ct).body(bytes);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let content_type =
        resp.headers().get("content-type").map(|v| v.to_str().unwrap_or("").to_string()).unwrap_or_default();
    Answer { status, content_type, body: resp.text().await.unwrap_or_default() }
}

#[tokio::test]
async fn every_operation_answers_bad_input_with_a_4xx_problem() {
    // Uploads have their own, larger limit: set to the same here so every operation is checked.
    let app = spawn_app_with(&[("CLOUDHIS_MAX_UPLOAD_BYTES", "1048576")]).await;
    app.load_demo().await;
    let admin = app.login("admin").await;
    let doctor = app.login("village.doctor").await;
    let own_inst = admin.institution_id.to_string();

    let malformed: Vec<(&str, Vec<u8>)> = vec![
        ("application/json", b"{\"tenant\": ".to_vec()),
        ("application/json", b"not json at all".to_vec()),
        ("application/json", b"[]".to_vec()),
        ("application/json", b"\"a string\"".to_vec()),
        ("application/json", b"42".to_vec()),
        ("application/json", b"null".to_vec()),
        ("application/json", b"{}".to_vec()),
        (
            "application/json",
            json!({"tenant": 1, "username": [], "password": {}, "institution_id": "nope",
                                     "display_name": 5, "roles": "admin"})
            .to_string()
            .into_bytes(),
        ),
        ("application/json", vec![0xff, 0xfe, 0x00, 0x7b]),
        ("text/plain", b"hello".to_vec()),
    ];
    let oversized = vec![b'{'; 2 * 1024 * 1024];
    let mut checked = 0;
    for op in operations() {
        let path = fill(&op.template, &own_inst);
        let what = format!("{} {}", op.method, op.template);
        if op.has_body {
            for (ct, bytes) in &malformed {
                let a = send(&app, &op.method, &path, Some(&admin.token), Some((ct, bytes.clone()))).await;
                assert_problem(&a, &format!("{what} with {ct} {:?}", String::from_utf8_lossy(bytes)));
                checked += 1;
            }
        }
        // Oversized bodies are refused before anything reads them, body or no body.
        let a = send(&app, &op.method, &path, Some(&admin.token), Some(("application/json", oversized.clone()))).await;
        assert_eq!(a.status, 413, "{what} oversized");
        assert_problem(&a, &what);
        // Ids that are not ids, and ids that do not exist.
        if op.template.contains('{') {
            for bad in ["not-a-uuid", "1", "%00", "..%2F..%2Fetc", &"9".repeat(300)] {
                let p = fill(&op.template, bad);
                let a = send(&app, &op.method, &p, Some(&admin.token), None).await;
                assert!(a.status == 400 || a.status == 404, "{what} with id {bad:?}: {} {}", a.status, a.body);
                assert_problem(&a, &what);
                checked += 1;
            }
            let unknown = fill(&op.template, &uuid::Uuid::now_v7().to_string());
            let mut found_404 = false;
            for who in [&admin, &doctor] {
                let body = if op.has_body { Some(("application/json", valid_body(&op.template))) } else { None };
                let a = send(&app, &op.method, &unknown, Some(&who.token), body).await;
                assert!(a.status == 404 || a.status == 403, "{what} with an unknown id: {} {}", a.status, a.body);
                found_404 |= a.status == 404;
                assert_problem(&a, &what);
            }
            assert!(found_404, "{what}: the role holding the permission gets 404 for an unknown id");
        }
        // No credentials.
        if op.needs_auth {
            let a = send(&app, &op.method, &path, None, None).await;
            assert_eq!(a.status, 401, "{what} without a token: {}", a.body);
            assert_problem(&a, &what);
        }
        checked += 1;
    }
    assert!(checked > 50, "checked {checked} cases");
}

fn valid_body(template: &str) -> Vec<u8> {
    valid_body_json(template).to_string().into_bytes()
}

/// A well-formed body for each operation that takes one, so a refusal is about the id, not the body.
pub fn valid_body_json(template: &str) -> serde_json::Value {
    match template {
        "/api/v1/institutions/{id}/staff" => {
            json!({"username": "someone", "display_name": "某人", "password": "Some@2026x", "roles": ["cashier"]})
        }
        "/api/v1/patients/duplicates/{id}/merge" => json!({"survivor_id": uuid::Uuid::nil(), "reason": "测试"}),
        "/api/v1/patients/merges/{id}/undo" | "/api/v1/patients/duplicates/{id}/dismiss" => json!({"reason": "测试"}),
        "/api/v1/encounters/{id}/vitals" => json!({"pulse": 80}),
        "/api/v1/encounters/{id}/diagnoses" => json!({"code": "I10"}),
        "/api/v1/encounters/{id}/notes" => json!({"notes": "测试"}),
        "/api/v1/encounters/{id}/addenda" => json!({"text": "测试"}),
        "/api/v1/encounters/{id}/prescriptions" => json!({"lines": [
            {"drug_code": "paracetamol-500mg", "dose": 1, "dose_unit": "片", "frequency": "tid", "days": 3, "quantity": 9}]}),
        "/api/v1/encounters/{id}/charges" => json!({"fee_items": [{"code": "consultation"}]}),
        "/api/v1/patients/{id}/allergies" => json!({"allergen": "penicillin"}),
        "/api/v1/patients/{id}/break-glass" => json!({"reason": "急诊昏迷，需查看既往用药与过敏史"}),
        "/api/v1/patients/{id}/reveal" => json!({"field": "phone", "purpose": "patient_contact", "reason": "电话随访"}),
        "/api/v1/bills/{id}/payments" => json!({"method": "cash", "amount_fen": 1}),
        "/api/v1/payments/{id}/refunds" => json!({"amount_fen": 1, "reason": "测试"}),
        "/api/v1/referrals/{id}/reject" | "/api/v1/referrals/{id}/complete" | "/api/v1/referrals/{id}/cancel" => {
            json!({"note": "测试"})
        }
        "/api/v1/referrals/{id}/down" => json!({"discharge_summary": "出院小结", "rehab_plan": "康复计划"}),
        "/api/v1/accounts/periods/close" => json!({"period": "2020-01"}),
        "/api/v1/auth/totp/confirm" => json!({"code": "123456"}),
        "/api/v1/auth/totp/disable" => json!({"password": "Some@2026x", "code": "123456"}),
        "/api/v1/followups/enrollments" => {
            json!({"person_id": uuid::Uuid::nil(), "disease": "hypertension", "diagnosed_on": "2025-01-01"})
        }
        "/api/v1/followups/enrollments/{id}/followups" => {
            json!({"visit_on": "2026-01-10", "systolic": 130, "diastolic": 80, "adherence": "regular"})
        }
        "/api/v1/followups/enrollments/{id}/close" => json!({"reason": "moved"}),
        _ => json!({}),
    }
}

#[tokio::test]
async fn unknown_routes_and_methods_get_json_problems() {
    let app = spawn_app().await;
    let r = app.request(Method::GET, "/api/v1/nothing-here", None, None).await;
    assert_eq!((r.status.as_u16(), r.code()), (404, "not_found"));
    let r = app.request(Method::PATCH, "/api/v1/auth/login", None, None).await;
    assert_eq!((r.status.as_u16(), r.code()), (405, "method_not_allowed"));
    // A 405 says which methods the path has (RFC 9110; found by schemathesis): a literal path
    // wins over a template that also matches it, as in the router.
    let client = reqwest::Client::new();
    for (method, path, allowed) in [
        ("PATCH", "/api/v1/auth/login".to_string(), "POST"),
        ("TRACE", "/api/v1/accounts/chart".to_string(), "GET"),
        ("DELETE", "/api/v1/patients/search".to_string(), "POST"),
        ("DELETE", format!("/api/v1/patients/{}", uuid::Uuid::now_v7()), "GET"),
    ] {
        let r = client
            .request(Method::from_bytes(method.as_bytes()).unwrap(), format!("{}{path}", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 405, "{method} {path}");
        assert_eq!(r.headers()["allow"], allowed, "{method} {path}");
    }
}

/// The framework would read a JSON number or boolean as text where the document says string
/// (`{"name": false}` searched for "false"); the boundary refuses it with the field's path
/// (found by schemathesis).
#[tokio::test]
async fn a_number_or_boolean_where_the_document_says_string_is_refused() {
    let app = spawn_app().await;
    let client = reqwest::Client::new();
    let id = uuid::Uuid::now_v7();
    for (path, body, field) in [
        ("/api/v1/patients/search".to_string(), json!({"name": false}), "name"),
        ("/api/v1/patients/search".to_string(), json!({"phone": 13800138000u64}), "phone"),
        (
            format!("/api/v1/encounters/{id}/prescriptions"),
            json!({"lines": [{"drug_code": "X1", "dose": 1.0, "dose_unit": "mg", "frequency": "qd", "days": 1, "quantity": 1},
                             {"drug_code": 42, "dose": 1.0, "dose_unit": "mg", "frequency": "qd", "days": 1, "quantity": 1}]}),
            "lines[1].drug_code",
        ),
    ] {
        let r = client.post(format!("{}{path}", app.base)).json(&body).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 400, "{path} {body}");
        let b: Value = r.json().await.unwrap();
        assert_eq!(b["code"], "malformed_body");
        assert_eq!(b["message"], format!("{field}: expected a string"));
    }
    // Numbers where the document says number still pass the boundary (then need a login).
    let r = client.post(format!("{}/api/v1/patients/search", app.base)).json(&json!({"page": 1})).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
}

#[tokio::test]
async fn parser_messages_do_not_echo_input_values() {
    let app = spawn_app().await;
    let r = app
        .request(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"tenant": "demo-county", "username": "x", "password": "x", "institution_id": "张伟 110105194912310021"})),
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(!r.text.contains("张伟") && !r.text.contains("110105194912310021"), "{}", r.text);
}

/// PostgreSQL cannot store NUL in text: a NUL anywhere in a body (JSON-escaped, raw, or
/// percent-encoded in a form) is a 422 `text_nul` at the boundary, never a 500 from the database
/// (found by schemathesis on the login).
#[tokio::test]
async fn a_nul_character_in_any_body_is_refused_before_the_database() {
    let app = spawn_app().await;
    app.load_demo().await;
    let r = app
        .client
        .post(format!("{}/api/v1/auth/login", app.base))
        .header("content-type", "application/json")
        .body(r#"{"tenant":"demo\u0000county","username":"bureau","password":"x"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "text_nul");
    let doc = app.login("village.doctor").await;
    let r = app
        .post("/api/v1/patients", &doc.token, json!({"name": "张\u{0}三", "sex": "male", "birth_date": "1960"}))
        .await;
    assert_eq!((r.status.as_u16(), r.code()), (422, "text_nul"));
    let r = app
        .client
        .post(format!("{}/app/login", app.base))
        .form(&[("csrf", "x"), ("tenant", "demo-county"), ("username", "a\u{0}b"), ("password", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "a form too");
    // A backslash followed by u0000 is text, and goes through.
    let r = app
        .post("/api/v1/patients", &doc.token, json!({"name": "张三\\u0000", "sex": "male", "birth_date": "1960"}))
        .await;
    assert_ne!(r.code(), "text_nul", "{}", r.text);
}

/// The error-code table of `docs/architecture.md`: every code, by status.
fn code_table() -> String {
    use std::collections::BTreeMap;
    let mut by_status: BTreeMap<u16, Vec<&str>> = BTreeMap::new();
    for c in cloudhis::platform::codes::ALL {
        by_status.entry(c.status).or_default().push(c.code);
    }
    let mut out = String::from("| status | codes |\n|---|---|\n");
    for (status, mut list) in by_status {
        list.sort();
        let list: Vec<String> = list.iter().map(|c| format!("`{c}`")).collect();
        out.push_str(&format!("| {status} | {} |\n", list.join(", ")));
    }
    out
}

#[test]
fn every_error_code_is_listed_once_with_one_status_and_documented() {
    let all = cloudhis::platform::codes::ALL;
    let mut names: Vec<&str> = all.iter().map(|c| c.code).collect();
    names.sort();
    let before = names.len();
    names.dedup();
    assert_eq!(names.len(), before, "a code is listed twice (and could carry two statuses)");
    for c in all {
        assert!(c.code.chars().all(|ch| ch.is_ascii_lowercase() || ch == '_'), "{} is not snake_case", c.code);
        assert!((400..600).contains(&c.status), "{} has status {}", c.code, c.status);
    }
    // Codes are built only from the list: no error is made, matched or answered with a string.
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    crate::architecture::rust_files(&src, &mut files);
    let forbidden = ["code: \"", "code() == \"", "AppError::new(\""];
    for f in files.iter().filter(|f| !f.ends_with("platform/codes.rs")) {
        let text = std::fs::read_to_string(f).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        for (n, line) in code.lines().enumerate() {
            for pattern in forbidden {
                assert!(
                    !line.contains(pattern),
                    "{}:{}: an error code spelled outside the list: {line}",
                    f.display(),
                    n + 1
                );
            }
        }
    }
    let doc =
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/architecture.md")).unwrap();
    let table = code_table();
    assert!(doc.contains(&table), "docs/architecture.md must list every error code as:\n{table}");
}
