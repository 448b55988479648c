//! The one application error. Every variant knows its HTTP status and a stable snake_case code;
//! the body is always `{code, message}` (plus `details` for validation). Unexpected errors are
//! logged once, at the HTTP boundary, and leave as an opaque 500.

use poem::Response;
use poem::http::StatusCode;
use poem_openapi::registry::{MetaMediaType, MetaResponse, MetaResponses, Registry};
use poem_openapi::{ApiResponse, Object, types::ToJSON};
use sea_orm::{DbErr, SqlErr};

use crate::platform::codes::{self, Code};

/// The JSON problem body every error response carries.
#[derive(Debug, Clone, Object, serde::Serialize, serde::Deserialize)]
pub struct ErrorBody {
    /// Stable snake_case error code, e.g. `institution_not_found`.
    pub code: String,
    /// Human-readable explanation. Never contains patient data.
    pub message: String,
    /// Machine-readable detail for validation errors (which field, which check).
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// A refusal with one of the listed codes (`platform::codes`), whose status it carries.
    #[error("{message}")]
    Coded { code: Code, message: String, details: Option<serde_json::Value> },
    #[error("authentication required")]
    Unauthenticated,
    #[error("invalid tenant, username or password")]
    InvalidCredentials,
    #[error("too many attempts; try again later")]
    RateLimited { retry_after_secs: u64 },
    #[error("a backing service is unavailable")]
    Unavailable(#[source] anyhow::Error),
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

pub type AppResult<T> = Result<T, AppError>;

impl AppError {
    /// A refusal: `code` (from `platform::codes`) decides the status.
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self::Coded { code, message: message.into(), details: None }
    }
    pub fn with_details(mut self, value: serde_json::Value) -> Self {
        if let Self::Coded { details, .. } = &mut self {
            *details = Some(value);
        }
        self
    }
    pub fn internal(err: impl Into<anyhow::Error>) -> Self {
        Self::Internal(err.into())
    }

    /// The listed code of this error.
    pub fn code_of(&self) -> Code {
        match self {
            Self::Coded { code, .. } => *code,
            Self::Unauthenticated => codes::UNAUTHENTICATED,
            Self::InvalidCredentials => codes::INVALID_CREDENTIALS,
            Self::RateLimited { .. } => codes::TOO_MANY_ATTEMPTS,
            Self::Unavailable(_) => codes::SERVICE_UNAVAILABLE,
            Self::Internal(_) => codes::INTERNAL_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        self.code_of().code
    }

    /// Whether this is the refusal `code`.
    pub fn is(&self, code: Code) -> bool {
        self.code_of() == code
    }

    /// What went wrong, for an operator (a dead letter's reason): the message, and for an
    /// internal error its causes, with quoted values dropped (they may be data).
    pub fn reason(&self) -> String {
        match self {
            Self::Internal(e) | Self::Unavailable(e) => sanitize(&format!("{e:#}")),
            other => other.to_string(),
        }
    }

    /// The details of a refusal (which field, which candidates), if any.
    pub fn details(&self) -> Option<&serde_json::Value> {
        match self {
            Self::Coded { details, .. } => details.as_ref(),
            _ => None,
        }
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody { code: self.code().to_string(), message: self.to_string(), details: self.details().cloned() }
    }
}

/// A unique violation is a conflict, a broken reference is unprocessable; anything else is ours.
impl From<DbErr> for AppError {
    fn from(err: DbErr) -> Self {
        match err.sql_err() {
            Some(SqlErr::UniqueConstraintViolation(_)) => {
                AppError::new(codes::CONFLICT, "a record with the same key already exists")
            }
            Some(SqlErr::ForeignKeyConstraintViolation(_)) => {
                AppError::new(codes::REFERENCE_INVALID, "the request refers to a record that does not exist")
            }
            _ if matches!(sqlstate(&err).as_deref(), Some("40P01" | "40001")) => {
                AppError::new(codes::RETRY, "the request collided with another; try again")
            }
            _ if matches!(sqlstate(&err).as_deref(), Some("22003")) => {
                AppError::new(codes::VALUE_OUT_OF_RANGE, "a number in the request is out of range")
            }
            _ if transient(&err) => AppError::Unavailable(anyhow::Error::new(err).context("database")),
            _ => {
                let context = match sqlstate(&err) {
                    Some(state) => format!("database (SQLSTATE {state})"),
                    None => "database".to_string(),
                };
                AppError::Internal(anyhow::Error::new(err).context(context))
            }
        }
    }
}

/// A failure of the database's availability rather than of the request: the connection was cut,
/// the server is starting or shutting down, it has no connection slot left, the pool had none
/// to give in time, or SQLite stayed busy past its timeout: 503 with `Retry-After`, not 500.
/// The transaction rolled back, unless the cut came during its `COMMIT`: then its outcome is
/// unknown (`Tx::commit` says so in the log; `docs/operations.md`, "When the database hiccups").
pub fn transient(err: &DbErr) -> bool {
    connection_cut(err)
        || matches!(err, DbErr::ConnectionAcquire(_))
        || matches!(runtime_sqlx(err), Some(SqlxErr::PoolTimedOut | SqlxErr::PoolClosed))
        // 53300: too many connections; SQLite's 5 and 517: busy.
        || matches!(sqlstate(err).as_deref(), Some("53300" | "5" | "517"))
}

/// The connection itself failed: cut by a restart, a failover, an administrator or a proxy
/// (SQLSTATE class 08 but 08P01, a protocol violation, which is a bug; 57P01-57P03; or the
/// socket). Trying another connection may succeed at once. A TLS error is not here: a lasting
/// misconfiguration must say so, as a 500.
pub fn connection_cut(err: &DbErr) -> bool {
    matches!(runtime_sqlx(err), Some(SqlxErr::Io(_)))
        || sqlstate(err)
            .is_some_and(|c| (c.starts_with("08") && c != "08P01") || matches!(&*c, "57P01" | "57P02" | "57P03"))
}

use sea_orm::sqlx::Error as SqlxErr;

fn runtime_sqlx(err: &DbErr) -> Option<&SqlxErr> {
    use sea_orm::RuntimeErr;
    match err {
        DbErr::Conn(RuntimeErr::SqlxError(e))
        | DbErr::Exec(RuntimeErr::SqlxError(e))
        | DbErr::Query(RuntimeErr::SqlxError(e)) => Some(e),
        _ => None,
    }
}

/// The SQLSTATE of a database error, when there is one.
fn sqlstate(err: &DbErr) -> Option<String> {
    runtime_sqlx(err)?.as_database_error().and_then(|d| d.code()).map(|c| c.to_string())
}

impl poem::error::ResponseError for AppError {
    fn status(&self) -> StatusCode {
        self.code_of().status()
    }

    fn as_response(&self) -> Response {
        let mut resp = json_response(self.status(), &self.body());
        match self {
            Self::RateLimited { retry_after_secs } => {
                resp.headers_mut().insert("retry-after", (*retry_after_secs).into());
            }
            Self::Unavailable(_) => {
                resp.headers_mut().insert("retry-after", 1.into());
            }
            Self::Unauthenticated | Self::InvalidCredentials => {
                resp.headers_mut().insert("www-authenticate", "Bearer".parse().expect("static header"));
            }
            _ => {}
        }
        resp
    }
}

pub fn json_response(status: StatusCode, body: &ErrorBody) -> Response {
    let json = body.to_json_string();
    Response::builder().status(status).content_type("application/json; charset=utf-8").body(json)
}

/// Documents every error status on each operation, each with the same JSON body.
impl ApiResponse for AppError {
    fn meta() -> MetaResponses {
        const STATUSES: &[(u16, &str)] = &[
            (400, "Malformed request: bad JSON, missing field, wrong type, bad parameter"),
            (401, "Not authenticated, or the session is no longer valid"),
            (403, "Authenticated, but not permitted in this institution"),
            (404, "No such resource in this tenant"),
            (409, "Conflicts with the current state"),
            (413, "Request body too large"),
            (415, "The request body is not application/json"),
            (422, "Well-formed but invalid"),
            (429, "Too many attempts"),
            (500, "Unexpected error (details are logged, not returned)"),
            (503, "A backing service is unavailable"),
        ];
        MetaResponses {
            responses: STATUSES
                .iter()
                .map(|(status, description)| MetaResponse {
                    description,
                    status: Some(*status),
                    status_range: None,
                    content: vec![MetaMediaType {
                        content_type: "application/json; charset=utf-8",
                        schema: <poem_openapi::payload::Json<ErrorBody> as poem_openapi::payload::Payload>::schema_ref(
                        ),
                    }],
                    headers: vec![],
                })
                .collect(),
        }
    }

    fn register(registry: &mut Registry) {
        <ErrorBody as poem_openapi::types::Type>::register(registry);
    }
}

/// Turns any error that reached the HTTP boundary into the JSON problem body, and logs the
/// unexpected ones once. Framework errors (bad JSON, bad path parameter, unknown route) get
/// stable codes too.
pub fn error_to_response(err: poem::Error) -> Response {
    if let Some(app) = err.downcast_ref::<AppError>() {
        match app {
            AppError::Internal(e) => tracing::error!(error = %format!("{e:#}"), "internal error"),
            AppError::Unavailable(e) => tracing::warn!(error = %format!("{e:#}"), "backing service unavailable"),
            _ => {}
        }
        return poem::error::ResponseError::as_response(app);
    }
    let status = err.status();
    let (code, message): (Code, String) = if err.is::<poem_openapi::error::ParseRequestPayloadError>() {
        (codes::MALFORMED_BODY, sanitize(&err.to_string()))
    } else if err.is::<poem_openapi::error::ContentTypeError>() {
        (codes::UNSUPPORTED_MEDIA_TYPE, "the request body must be application/json".into())
    } else if err.is::<poem_openapi::error::ParseParamError>() || err.is::<poem_openapi::error::ParsePathError>() {
        (codes::INVALID_PARAMETER, sanitize(&err.to_string()))
    } else if err.is::<poem_openapi::error::AuthorizationError>() {
        (codes::UNAUTHENTICATED, "authentication required".into())
    } else {
        match status.as_u16() {
            401 => (codes::UNAUTHENTICATED, "authentication required".into()),
            404 => (codes::NOT_FOUND, "no such route".into()),
            405 => (codes::METHOD_NOT_ALLOWED, "method not allowed on this route".into()),
            413 => (codes::PAYLOAD_TOO_LARGE, "the request body is too large".into()),
            415 => (codes::UNSUPPORTED_MEDIA_TYPE, "unsupported content type".into()),
            s if s >= 500 => {
                tracing::error!(error = %err, "unhandled framework error");
                (codes::INTERNAL_ERROR, "internal error".into())
            }
            // Any other refusal of the framework's is a bad request: one code, one status.
            _ => (codes::BAD_REQUEST, sanitize(&err.to_string())),
        }
    };
    json_response(code.status(), &ErrorBody { code: code.code.into(), message, details: None })
}

/// Parser messages may quote the offending input (`invalid type: string "张伟"`). Input can be
/// patient data, so quoted values are dropped; field and type names stay.
pub fn sanitize(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(pos) = rest.find("string \"") {
        out.push_str(&rest[..pos + 8]);
        let after = &rest[pos + 8..];
        match after.find('"') {
            Some(end) => {
                out.push_str("…\"");
                rest = &after[end + 1..];
            }
            None => {
                out.push_str("…\"");
                rest = "";
            }
        }
    }
    out.push_str(rest);
    // poem-openapi prints the offending JSON value after "found" (`... found 13800138000.`).
    if let Some(i) = out.find(", found ").or_else(|| out.find(" found ")) {
        out.truncate(i);
        out.push_str(", found another type");
    }
    out.chars().take(300).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_drops_quoted_input() {
        let s = sanitize(r#"invalid type: string "张伟", expected u32 at line 1"#);
        assert_eq!(s, r#"invalid type: string "…", expected u32 at line 1"#);
        let s = sanitize(r#"parse error: Expected input type "string", found 13800138000."#);
        assert!(!s.contains("13800138000"), "{s}");
    }

    #[test]
    fn status_and_codes_are_stable() {
        use poem::error::ResponseError;
        assert_eq!(AppError::new(codes::USER_NOT_FOUND, "x").status(), 404);
        assert_eq!(AppError::RateLimited { retry_after_secs: 3 }.code(), "too_many_attempts");
        assert_eq!(AppError::internal(anyhow::anyhow!("secret detail")).body().message, "internal error");
    }
}
