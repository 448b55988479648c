//! Every date and period the API takes, at chrono's limits, year 0, negative years and far in
//! the future: each answer is a 4xx with a stable code, never a 5xx or a closed connection. The
//! operations come from the OpenAPI document itself, so a date added later is covered too.

use reqwest::Method;
use serde_json::{Map, Value, json};

use crate::helpers::{Session, TestApp, spawn_app};

const DATES: &[&str] =
    &["-262143-01-01", "+262142-12-31", "0000-01-01", "-0001-01-01", "-9999-01-01", "1899-12-31", "9999-12-31"];
const PERIODS: &[&str] = &["0000-01", "-0001-01", "9999-12", "+262142-01", "1899-12"];

fn is_date(schema: &Value) -> Option<&'static str> {
    match (schema["type"].as_str(), schema["format"].as_str()) {
        (Some("string"), Some("date")) => Some("date"),
        (Some("string"), Some("date-time")) => Some("date-time"),
        _ => None,
    }
}

fn deref<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str().and_then(|r| r.strip_prefix("#/components/schemas/")) {
        Some(name) => &doc["components"]["schemas"][name],
        None => match schema["allOf"].as_array().and_then(|a| a.first()) {
            Some(first) if schema["type"].is_null() => deref(doc, first),
            _ => schema,
        },
    }
}

/// A value the schema accepts, with every required field filled (dates at `date`).
fn sample(doc: &Value, schema: &Value, date: &str, depth: u8) -> Value {
    let schema = deref(doc, schema);
    if depth > 6 {
        return Value::Null;
    }
    if let Some(values) = schema["enum"].as_array() {
        return values[0].clone();
    }
    match (schema["type"].as_str(), schema["format"].as_str()) {
        (Some("string"), Some("date")) => json!(date),
        (Some("string"), Some("date-time")) => json!(format!("{date}T00:00:00Z")),
        (Some("string"), Some("uuid")) => json!(uuid::Uuid::now_v7()),
        (Some("string"), _) => json!("测试"),
        (Some("integer"), _) => json!(1),
        (Some("number"), _) => json!(1.0),
        (Some("boolean"), _) => json!(false),
        (Some("array"), _) => json!([sample(doc, &schema["items"], date, depth + 1)]),
        (Some("object"), _) | (None, _) => {
            let mut out = Map::new();
            for (k, v) in schema["properties"].as_object().into_iter().flatten() {
                out.insert(k.clone(), sample(doc, v, date, depth + 1));
            }
            Value::Object(out)
        }
        _ => Value::Null,
    }
}

/// Whether a schema (a body) holds a date anywhere.
fn has_date(doc: &Value, schema: &Value, depth: u8) -> bool {
    let schema = deref(doc, schema);
    depth < 6
        && (is_date(schema).is_some()
            || schema["properties"].as_object().into_iter().flatten().any(|(_, v)| has_date(doc, v, depth + 1))
            || (schema["type"] == "array" && has_date(doc, &schema["items"], depth + 1)))
}

async fn send(app: &TestApp, s: &Session, method: &Method, path: &str, body: Option<Value>) -> reqwest::StatusCode {
    let mut req = app.client.request(method.clone(), format!("{}{}", app.base, path)).bearer_auth(&s.token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap_or_else(|e| panic!("{method} {path}: the connection closed: {e}"));
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    assert!(status.is_client_error(), "{method} {path}: {status} {body}");
    assert!(body["code"].as_str().is_some_and(|c| !c.is_empty()), "{method} {path}: a stable code: {body}");
    status
}

#[tokio::test]
async fn every_date_and_period_at_the_limits_gets_a_4xx_with_a_code_never_a_5xx() {
    let app = spawn_app().await;
    app.load_demo().await;
    let doc = app.get("/api/openapi.json", "").await.body;
    let sessions = [app.login("admin").await, app.login("village.doctor").await, app.login("bureau").await];
    let mut sent = 0;
    let mut operations = 0;
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            let method: Method = method.to_ascii_uppercase().parse().unwrap();
            let params: Vec<&Value> = op["parameters"].as_array().into_iter().flatten().collect();
            let concrete = params.iter().filter(|p| p["in"] == "path").fold(path.clone(), |acc, p| {
                acc.replace(&format!("{{{}}}", p["name"].as_str().unwrap()), &uuid::Uuid::now_v7().to_string())
            });
            let date_params: Vec<(&str, &str)> = params
                .iter()
                .filter(|p| p["in"] == "query")
                .filter_map(|p| Some((p["name"].as_str()?, is_date(deref(&doc, &p["schema"]))?)))
                .collect();
            let period_params: Vec<&str> = params
                .iter()
                .filter(|p| p["in"] == "query" && deref(&doc, &p["schema"])["type"] == "string")
                .filter_map(|p| p["name"].as_str())
                .filter(|n| ["from", "to", "period"].contains(n))
                .collect();
            let body_schema = op["requestBody"]["content"]["application/json; charset=utf-8"]["schema"]
                .as_object()
                .or_else(|| op["requestBody"]["content"]["application/json"]["schema"].as_object())
                .map(|o| Value::Object(o.clone()));
            let body_dates = body_schema.as_ref().is_some_and(|b| has_date(&doc, b, 0));
            if date_params.is_empty() && period_params.is_empty() && !body_dates {
                continue;
            }
            operations += 1;
            for s in &sessions {
                for date in DATES {
                    for (name, kind) in &date_params {
                        let v = if *kind == "date" { date.to_string() } else { format!("{date}T00:00:00Z") };
                        let q = url_encode(&v);
                        send(&app, s, &method, &format!("{concrete}?{name}={q}"), None).await;
                        sent += 1;
                    }
                    if body_dates {
                        let body = sample(&doc, body_schema.as_ref().unwrap(), date, 0);
                        send(&app, s, &method, &concrete, Some(body)).await;
                        sent += 1;
                    }
                }
                for period in PERIODS {
                    for name in &period_params {
                        send(&app, s, &method, &format!("{concrete}?{name}={}", url_encode(period)), None).await;
                        sent += 1;
                    }
                }
            }
        }
    }
    assert!(operations >= 10, "the document's dated operations were found: {operations}");
    assert!(sent >= 250, "{sent} requests");
}

fn url_encode(s: &str) -> String {
    s.replace('+', "%2B")
}

#[tokio::test]
async fn the_worklist_at_the_far_future_and_year_zero_is_422_naming_the_field() {
    let app = spawn_app().await;
    app.load_demo().await;
    let village = app.login("village.doctor").await;
    for day in ["%2B262142-12-31", "0000-01-01", "-0001-01-01", "-9999-01-01"] {
        let r = app
            .request(Method::GET, &format!("/api/v1/followups/worklist?as_of={day}"), Some(&village.token), None)
            .await;
        assert_eq!((r.status.as_u16(), r.code()), (422, "date_out_of_range"), "{day}: {}", r.text);
        assert_eq!(r.body["details"]["field"], "as_of");
    }
    let county = app.login("county.pharmacist").await;
    let r = app
        .post(
            "/api/v1/pharmacy/stock/receipts",
            &county.token,
            json!({"drug_code": "amlodipine-5mg", "lot": "L1", "expiry": "+262142-12-31", "quantity": 10}),
        )
        .await;
    assert_eq!((r.status.as_u16(), r.code()), (422, "date_out_of_range"), "{}", r.text);
    let finance = app.login("finance").await;
    let r = app.post("/api/v1/accounts/periods/close", &finance.token, json!({"period": "0000-01"})).await;
    assert_eq!((r.status.as_u16(), r.code()), (422, "period_invalid"), "{}", r.text);
}
