//! The HTTP boundary shared by every route: request ids, the request span that logs carry, body
//! size limits, the JSON problem body for every error, security headers, access log and metrics.

use std::time::Instant;

use poem::http::{HeaderValue, Method, header};
use poem::{Body, Endpoint, IntoResponse, Middleware, Request, Response, Result};
use poem_openapi::OperationId;
use tracing::{Instrument, field};

use crate::platform::error::{ErrorBody, error_to_response, json_response};
use crate::platform::metrics::Metrics;

/// The request id of the current request, available to handlers as request data.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

pub struct Boundary {
    pub metrics: Metrics,
    pub max_body_bytes: usize,
}

impl<E: Endpoint> Middleware<E> for Boundary {
    type Output = BoundaryEndpoint<E>;
    fn transform(&self, ep: E) -> Self::Output {
        BoundaryEndpoint { inner: ep, metrics: self.metrics.clone(), max_body_bytes: self.max_body_bytes }
    }
}

pub struct BoundaryEndpoint<E> {
    inner: E,
    metrics: Metrics,
    max_body_bytes: usize,
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
        let max = self.max_body_bytes;
        let result = async {
            if let Some(resp) = limit_body(&mut req, max).await {
                return (None, resp);
            }
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
        let headers = resp.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&request_id) {
            headers.insert("x-request-id", v);
        }
        headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
        if !headers.contains_key(header::CACHE_CONTROL) {
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        }
        Ok(resp)
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

/// Refuses bodies over `max` bytes with 413: by Content-Length when given, otherwise by reading
/// at most `max + 1` bytes of a chunked body. A body carrying a NUL character gets 422
/// `text_nul`.
async fn limit_body(req: &mut Request, max: usize) -> Option<Response> {
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS | Method::DELETE)
        && req.headers().get(header::CONTENT_LENGTH).is_none()
        && req.headers().get(header::TRANSFER_ENCODING).is_none()
    {
        return None;
    }
    let too_large = || {
        json_response(
            poem::http::StatusCode::PAYLOAD_TOO_LARGE,
            &ErrorBody {
                code: "payload_too_large".into(),
                message: format!("the request body is larger than {max} bytes"),
                details: None,
            },
        )
    };
    if let Some(len) = req.headers().get(header::CONTENT_LENGTH) {
        let len: usize = len.to_str().ok().and_then(|s| s.parse().ok()).unwrap_or(usize::MAX);
        if len > max {
            return Some(too_large());
        }
    }
    let form = req.content_type().is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
    let body = req.take_body();
    match body.into_bytes_limit(max).await {
        Ok(bytes) if has_nul(&bytes, form) => Some(json_response(
            poem::http::StatusCode::UNPROCESSABLE_ENTITY,
            &ErrorBody {
                code: "text_nul".into(),
                message: "text may not contain NUL characters".into(),
                details: None,
            },
        )),
        Ok(bytes) => {
            req.set_body(Body::from(bytes));
            None
        }
        Err(_) => Some(too_large()),
    }
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
