//! The HTTP boundary shared by every route: request ids, the request span that logs carry, body
//! size limits, the JSON problem body for every error, security headers, access log and metrics,
//! and the audit row of every permission refusal.

use std::time::Instant;

use poem::http::{HeaderValue, Method, header};
use poem::{Body, Endpoint, IntoResponse, Middleware, Request, Response, Result};
use poem_openapi::OperationId;
use tracing::{Instrument, field};

use crate::platform::codes;
use crate::platform::error::{ErrorBody, error_to_response, json_response};
use crate::platform::metrics::Metrics;

/// A permission refusal of this request: who was refused which permission where. The
/// authorisation check (`identity::ctx::RequestCtx::require`) fills it; the boundary writes one
/// audit row (`access.denied`, outcome denied) for a 403 that carries one.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub tenant: uuid::Uuid,
    pub user: uuid::Uuid,
    pub institution: uuid::Uuid,
    /// The permission refused, `object.action`.
    pub permission: String,
}

/// The slot a request's [`Refusal`] is put in, shared between the boundary and the request
/// context through request data.
#[derive(Debug, Clone, Default)]
pub struct Refusals(pub std::sync::Arc<std::sync::Mutex<Option<Refusal>>>);

impl Refusals {
    pub fn record(&self, refusal: Refusal) {
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some(refusal);
        }
    }

    fn take(&self) -> Option<Refusal> {
        self.0.lock().ok().and_then(|mut s| s.take())
    }
}

/// The request id of the current request, available to handlers as request data.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

pub struct Boundary {
    pub metrics: Metrics,
    pub max_body_bytes: usize,
    /// The limit for file uploads (paths under [`UPLOAD_PREFIX`]), whose bodies may be binary.
    pub max_upload_bytes: usize,
    pub methods: std::sync::Arc<RouteMethods>,
    /// Where permission refusals are audited.
    pub db: crate::platform::Db,
    /// Served behind TLS: responses carry `Strict-Transport-Security`.
    pub hsts: bool,
    /// The create operations that honour `Idempotency-Key`, and the keys that tell who asks.
    pub idempotent: std::sync::Arc<std::collections::HashSet<String>>,
    pub keys: crate::platform::token::TokenKeys,
}

impl<E: Endpoint> Middleware<E> for Boundary {
    type Output = BoundaryEndpoint<E>;
    fn transform(&self, ep: E) -> Self::Output {
        BoundaryEndpoint {
            inner: ep,
            metrics: self.metrics.clone(),
            max_body_bytes: self.max_body_bytes,
            max_upload_bytes: self.max_upload_bytes,
            methods: self.methods.clone(),
            db: self.db.clone(),
            hsts: self.hsts,
            idempotent: self.idempotent.clone(),
            keys: self.keys.clone(),
        }
    }
}

pub struct BoundaryEndpoint<E> {
    inner: E,
    metrics: Metrics,
    max_body_bytes: usize,
    max_upload_bytes: usize,
    methods: std::sync::Arc<RouteMethods>,
    db: crate::platform::Db,
    hsts: bool,
    idempotent: std::sync::Arc<std::collections::HashSet<String>>,
    keys: crate::platform::token::TokenKeys,
}

/// The methods of each path of the OpenAPI document, for the `Allow` header of a 405 (RFC 9110
/// requires it). A path matches a template segment by segment, `{param}` matching any one
/// segment; of several matches the one with the most literal segments wins, as in the router
/// (`/patients/search` is not `/patients/{id}`).
///
/// It also keeps each operation's JSON request-body schema: the framework turns a JSON number or
/// boolean into text where a string is expected (`{"name": false}` searched for "false"), so the
/// boundary refuses such bodies itself ([`RouteMethods::not_a_string`]; found by schemathesis).
#[derive(Debug, Default)]
pub struct RouteMethods {
    routes: Vec<Route>,
    schemas: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug)]
struct Route {
    template: Vec<String>,
    methods: String,
    /// Operation id per upper-case method.
    operations: Vec<(String, String)>,
    /// Request-body schema per upper-case method.
    bodies: Vec<(String, serde_json::Value)>,
}

impl RouteMethods {
    /// From the served document's JSON.
    pub fn from_spec(spec: &str) -> Self {
        let doc: serde_json::Value = serde_json::from_str(spec).unwrap_or_default();
        let mut routes = Vec::new();
        for (path, ops) in doc["paths"].as_object().into_iter().flatten() {
            let ops = ops.as_object().into_iter().flatten();
            let mut methods: Vec<String> = ops.clone().map(|(m, _)| m.to_ascii_uppercase()).collect();
            methods.sort();
            let operations = ops
                .clone()
                .filter_map(|(m, op)| Some((m.to_ascii_uppercase(), op["operationId"].as_str()?.to_owned())))
                .collect();
            let bodies = ops
                .filter_map(|(m, op)| {
                    let content = op["requestBody"]["content"].as_object()?;
                    let (_, media) = content.iter().find(|(t, _)| t.starts_with("application/json"))?;
                    Some((m.to_ascii_uppercase(), media["schema"].clone()))
                })
                .collect();
            routes.push(Route {
                template: path.split('/').map(str::to_owned).collect(),
                methods: methods.join(", "),
                operations,
                bodies,
            });
        }
        let schemas = doc["components"]["schemas"].as_object().cloned().unwrap_or_default();
        RouteMethods { routes, schemas }
    }

    fn route(&self, path: &str) -> Option<&Route> {
        let parts: Vec<&str> = path.split('/').collect();
        self.routes
            .iter()
            .filter(|r| {
                r.template.len() == parts.len()
                    && r.template.iter().zip(&parts).all(|(t, p)| t == p || (t.starts_with('{') && !p.is_empty()))
            })
            .max_by_key(|r| r.template.iter().filter(|t| !t.starts_with('{')).count())
    }

    /// The operation id of a method on a path, per the document.
    pub fn operation(&self, method: &str, path: &str) -> Option<&str> {
        self.route(path)?.operations.iter().find(|(m, _)| m == method).map(|(_, o)| o.as_str())
    }

    pub fn allowed(&self, path: &str) -> Option<&str> {
        self.route(path).map(|r| r.methods.as_str())
    }

    /// Where a JSON body holds a number or boolean that its operation's schema says is a
    /// string, the path of the first such value (`lines[0].drug_code`).
    pub fn not_a_string(&self, method: &str, path: &str, body: &[u8]) -> Option<String> {
        let schema = &self.route(path)?.bodies.iter().find(|(m, _)| m == method)?.1;
        let value: serde_json::Value = serde_json::from_slice(body).ok()?;
        self.check(schema, &value, String::new(), 0)
    }

    fn check(&self, schema: &serde_json::Value, value: &serde_json::Value, at: String, depth: u8) -> Option<String> {
        use serde_json::Value;
        if depth > 32 {
            return None;
        }
        if let Some(name) = schema["$ref"].as_str().and_then(|r| r.strip_prefix("#/components/schemas/")) {
            return self.check(self.schemas.get(name)?, value, at, depth + 1);
        }
        if let Some(all) = schema["allOf"].as_array() {
            return all.iter().find_map(|s| self.check(s, value, at.clone(), depth + 1));
        }
        match (schema["type"].as_str(), value) {
            (Some("string"), Value::Number(_) | Value::Bool(_)) => Some(if at.is_empty() { "body".into() } else { at }),
            (_, Value::Object(fields)) => fields.iter().find_map(|(k, v)| {
                // A map's keys are data, not field names: they are not echoed.
                let (field, name) = match schema["properties"].get(k) {
                    Some(field) => (field, k.as_str()),
                    None => (schema.get("additionalProperties")?, "*"),
                };
                let at = if at.is_empty() { name.to_owned() } else { format!("{at}.{name}") };
                self.check(field, v, at, depth + 1)
            }),
            (_, Value::Array(items)) => {
                let item = schema.get("items")?;
                items.iter().enumerate().find_map(|(i, v)| self.check(item, v, format!("{at}[{i}]"), depth + 1))
            }
            _ => None,
        }
    }
}

/// Routes outside the OpenAPI document, named for metrics; anything else unmatched is `other`,
/// so unknown paths cannot blow up label cardinality.
fn fixed_route(path: &str) -> &'static str {
    match path {
        "/healthz" => "healthz",
        "/readyz" => "readyz",
        "/metrics" => "metrics",
        "/api/openapi.json" => "openapi",
        p if p.starts_with("/api/docs") => "docs",
        p if p.starts_with("/app") || p == "/" => "web",
        _ => "other",
    }
}

impl<E: Endpoint> Endpoint for BoundaryEndpoint<E> {
    type Output = Response;

    async fn call(&self, mut req: Request) -> Result<Response> {
        let request_id = req
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .filter(|v| v.len() <= 64 && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
            .map(str::to_owned)
            .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
        req.set_data(RequestId(request_id.clone()));
        let refusals = Refusals::default();
        req.set_data(refusals.clone());
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let span = tracing::info_span!(
            "request",
            request.id = %request_id,
            http.method = %method,
            http.route = field::Empty,
            tenant.id = field::Empty,
            user.id = field::Empty,
        );
        let started = Instant::now();
        let upload = path.starts_with(UPLOAD_PREFIX);
        let max = if upload { self.max_upload_bytes } else { self.max_body_bytes };
        let result = async {
            if let Some(resp) = limit_body(&mut req, max, upload, &self.methods).await {
                return (None, resp);
            }
            let claim = match self.idempotency_claim(&mut req).await {
                Ok(claim) => claim,
                Err(resp) => return (None, resp),
            };
            let safe = matches!(method, Method::GET | Method::HEAD);
            let (operation, resp) = match &claim {
                Some(claim) => crate::platform::idempotency::scope(claim.clone(), self.answer(req)).await,
                // A safe method reads: its transactions are declared read-only (`db::read_only`).
                None if safe => crate::platform::db::read_only(self.answer(req)).await,
                None => self.answer(req).await,
            };
            match claim {
                Some(claim) => (operation, self.keep_answer(&claim, resp).await),
                None => (operation, resp),
            }
        }
        .instrument(span.clone())
        .await;
        let (operation, mut resp) = result;
        let route = operation.unwrap_or_else(|| fixed_route(&path));
        let status = resp.status().as_u16();
        let elapsed = started.elapsed();
        self.metrics.observe(route, method.as_str(), status, elapsed.as_secs_f64());
        span.record("http.route", route);
        span.in_scope(|| {
            tracing::info!(
                target: "cloudhis::access",
                status,
                latency_ms = elapsed.as_secs_f64() * 1000.0,
                "request finished"
            )
        });
        if status == 403
            && let Some(refusal) = refusals.take()
        {
            audit_refusal(&self.db, refusal, &method, route, &request_id).instrument(span.clone()).await;
        }
        if status == 405
            && let Some(allowed) = self.methods.allowed(&path)
            && let Ok(v) = HeaderValue::from_str(allowed)
        {
            resp.headers_mut().insert(header::ALLOW, v);
        }
        let headers = resp.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&request_id) {
            headers.insert("x-request-id", v);
        }
        headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        // Pages set their own policy (web::html); JSON may load nothing and be framed by nothing.
        let json = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("json"));
        if json && !headers.contains_key(header::CONTENT_SECURITY_POLICY) {
            headers.insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
            );
        }
        if self.hsts {
            headers.insert(
                header::STRICT_TRANSPORT_SECURITY,
                HeaderValue::from_static("max-age=31536000; includeSubDomains"),
            );
        }
        headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
        if !headers.contains_key(header::CACHE_CONTROL) {
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        }
        Ok(resp)
    }
}

impl<E: Endpoint> BoundaryEndpoint<E> {
    /// The inner endpoint's answer, an error turned into its response, with the operation's id.
    async fn answer(&self, req: Request) -> (Option<&'static str>, Response) {
        match self.inner.call(req).await {
            Ok(resp) => {
                let resp = resp.into_response();
                (resp.data::<OperationId>().map(|o| o.0), resp)
            }
            Err(err) => {
                let op = err.data::<OperationId>().map(|o| o.0);
                (op, error_to_response(err))
            }
        }
    }
}

impl<E> BoundaryEndpoint<E> {
    /// For a create operation called with `Idempotency-Key` by a signed-in user: claims the key
    /// (`Ok(Some)`), or answers at once with the first answer or a refusal (`Err`). Anything
    /// else passes (`Ok(None)`); a bad token is the handler's to refuse.
    async fn idempotency_claim(
        &self,
        req: &mut Request,
    ) -> std::result::Result<Option<crate::platform::idempotency::Claim>, Response> {
        use crate::platform::idempotency::{self, Claim, Start};
        let Some(key) = req.headers().get("idempotency-key").map(|v| v.to_str().unwrap_or("\u{0}").to_owned()) else {
            return Ok(None);
        };
        let method = req.method().as_str().to_owned();
        let idempotent =
            self.methods.operation(&method, req.uri().path()).is_some_and(|op| self.idempotent.contains(op));
        let bearer = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .and_then(|t| self.keys.verify(t).ok());
        let (true, Some(claims)) = (idempotent, bearer) else { return Ok(None) };
        let body = req.take_body().into_bytes().await.unwrap_or_default();
        let target = req.uri().path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_default();
        let claim = Claim::new(claims.tid, claims.sub, &key, &method, &target, &body);
        req.set_body(Body::from(body));
        let claim = claim.map_err(|e| poem::error::ResponseError::as_response(&e))?;
        match idempotency::start(&self.db, &claim).await {
            Ok(Start::Run) => Ok(Some(claim)),
            Ok(Start::Replay(kept)) => {
                let mut resp =
                    Response::builder().status(poem::http::StatusCode::from_u16(kept.status).unwrap_or_default());
                if let Some(t) = &kept.content_type {
                    resp = resp.content_type(t.clone());
                }
                Err(resp.header("idempotent-replayed", "true").body(kept.body))
            }
            Err(e) => Err(poem::error::ResponseError::as_response(&e)),
        }
    }

    /// Keeps the answer to a claimed key. A server error is not kept: the key is released so a
    /// retry runs again, unless the request's work had committed (see `idempotency::abandon`).
    async fn keep_answer(&self, claim: &crate::platform::idempotency::Claim, resp: Response) -> Response {
        use crate::platform::idempotency::{self, Abandoned, Kept};
        let status = resp.status();
        if status.is_server_error() {
            match idempotency::abandon(&self.db, claim).await {
                Ok(Abandoned::Released) => {}
                Ok(Abandoned::WorkDone) => {
                    tracing::warn!(
                        status = status.as_u16(),
                        "a server error after the work committed: a retry hears so"
                    )
                }
                Err(e) => tracing::warn!(error = %e, "could not release an idempotency key"),
            }
            return resp;
        }
        let (parts, body) = resp.into_parts();
        let bytes = body.into_vec().await.unwrap_or_default();
        let content_type = parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let kept = Kept { status: status.as_u16(), content_type, body: bytes.clone() };
        if let Err(e) = idempotency::finish(&self.db, claim, &kept).await {
            tracing::warn!(error = %e, "could not keep the answer to an idempotency key");
        }
        Response::from_parts(parts, Body::from(bytes))
    }
}

/// Writes the audit row of a permission refusal (MLPS level 3 records denied attempts): the
/// operation and the permission it needed, never the request's data. A failure to write is
/// logged; the caller has their 403 either way.
async fn audit_refusal(db: &crate::platform::Db, r: Refusal, method: &Method, route: &str, request_id: &str) {
    let write = async {
        let mut tx = db.begin(&crate::platform::SystemScope { tenant: r.tenant }).await?;
        tx.audit(
            crate::platform::audit::AuditEntry::new(
                "access.denied",
                "operation",
                crate::platform::audit::Purpose::Authentication,
            )
            .actor(r.user, r.institution)
            .resource(format!("{method} {route} needs {}", r.permission))
            .outcome(crate::platform::audit::Outcome::Denied)
            .request(Some(request_id)),
        );
        tx.commit().await
    };
    if let Err(e) = write.await {
        tracing::error!(error = %e, "could not audit a permission refusal");
    }
}

/// Whether a request body carries a NUL character: raw, JSON-escaped (`\u0000` after an even
/// number of backslashes) or percent-encoded in a form. PostgreSQL cannot store NUL in text, so
/// such input would otherwise reach the database and fail as a 500.
fn has_nul(body: &[u8], form: bool) -> bool {
    if body.contains(&0) || (form && body.windows(3).any(|w| w.eq_ignore_ascii_case(b"%00"))) {
        return true;
    }
    body.windows(6).enumerate().any(|(i, w)| {
        w.eq_ignore_ascii_case(b"\\u0000") && body[..i].iter().rev().take_while(|b| **b == b'\\').count() % 2 == 0
    })
}

/// Where files are uploaded: a larger limit, and binary bodies (an XLSX holds NUL bytes).
pub const UPLOAD_PREFIX: &str = "/api/v1/imports/";

/// Refuses bodies over `max` bytes with 413: by Content-Length when given, otherwise by reading
/// at most `max + 1` bytes of a chunked body. A body carrying a NUL character gets 422
/// `text_nul`, unless it is a file upload.
async fn limit_body(req: &mut Request, max: usize, binary: bool, methods: &RouteMethods) -> Option<Response> {
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS | Method::DELETE)
        && req.headers().get(header::CONTENT_LENGTH).is_none()
        && req.headers().get(header::TRANSFER_ENCODING).is_none()
    {
        return None;
    }
    let too_large = || refusal(codes::PAYLOAD_TOO_LARGE, format!("the request body is larger than {max} bytes"));
    if let Some(len) = req.headers().get(header::CONTENT_LENGTH) {
        let len: usize = len.to_str().ok().and_then(|s| s.parse().ok()).unwrap_or(usize::MAX);
        if len > max {
            return Some(too_large());
        }
    }
    let form = req.content_type().is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
    let body = req.take_body();
    match body.into_bytes_limit(max).await {
        Ok(bytes) if !binary && has_nul(&bytes, form) => {
            Some(refusal(codes::TEXT_NUL, "text may not contain NUL characters".into()))
        }
        Ok(bytes) => {
            let json = req.content_type().is_some_and(|c| c.starts_with("application/json"));
            let mistyped =
                if json { methods.not_a_string(req.method().as_str(), req.uri().path(), &bytes) } else { None };
            if let Some(field) = mistyped {
                return Some(refusal(codes::MALFORMED_BODY, format!("{field}: expected a string")));
            }
            req.set_body(Body::from(bytes));
            None
        }
        Err(_) => Some(too_large()),
    }
}

/// A `Set-Cookie` value: HttpOnly, same-site only (`Strict`), `Secure` behind TLS. A max age of 0
/// removes the cookie.
pub fn cookie(name: &str, value: &str, path: &str, max_age_secs: i64, secure: bool) -> String {
    use poem::web::cookie::{Cookie, SameSite};
    let mut c = Cookie::new_with_str(name, value);
    c.set_path(path);
    c.set_http_only(true);
    c.set_same_site(SameSite::Strict);
    c.set_max_age(std::time::Duration::from_secs(max_age_secs.max(0) as u64));
    c.set_secure(secure);
    c.to_string()
}

/// The value of a request cookie (the app's routes run under poem's `CookieJarManager`).
pub fn cookie_value(req: &Request, name: &str) -> Option<String> {
    req.cookie().get(name).map(|c| c.value_str().to_string())
}

/// The problem body of a refusal at the boundary, before any handler runs.
fn refusal(code: codes::Code, message: String) -> Response {
    json_response(code.status(), &ErrorBody { code: code.code.into(), message, details: None })
}

#[cfg(test)]
mod tests {
    use super::has_nul;

    #[test]
    fn nul_is_found_raw_escaped_and_percent_encoded_but_not_in_an_escaped_backslash() {
        assert!(has_nul(br#"{"a":"x\u0000y"}"#, false));
        assert!(has_nul(br#"{"a":"x\\\u0000"}"#, false), "an escaped backslash, then the escape");
        assert!(!has_nul(br#"{"a":"x\\u0000"}"#, false), "a literal backslash followed by u0000");
        assert!(has_nul(b"name=a%00b", true));
        assert!(!has_nul(br#"{"url":"a%00b"}"#, false), "percent signs mean nothing in JSON");
        assert!(has_nul(&[b'a', 0, b'b'], false));
        assert!(!has_nul("{\"name\":\"张三\"}".as_bytes(), false));
    }
}
