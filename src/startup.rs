//! Building and running the application: connect the backends, migrate, mount the routes, serve.
//! Tests call [`Application::build`] with port 0 and get the real router, database and bus.

use std::sync::Arc;
use std::time::Duration;

use poem::listener::{Acceptor, Listener, TcpListener};
use poem::web::Data;
use poem::{EndpointExt, IntoEndpoint, Route, Server, get, handler};
use poem_openapi::OpenApiService;
use serde_json::json;

use crate::identity::authz::Authz;
use crate::platform::Db;
use crate::platform::bus::Bus;
use crate::platform::cache::Cache;
use crate::platform::config::{Config, DbKind, redact_url};
use crate::platform::consumers::Topology;
use crate::platform::http::Boundary;
use crate::platform::metrics::Metrics;
use crate::platform::state::{AppState, StateInner};
use crate::platform::token::TokenKeys;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Connects every configured backend, logging one line for each. Any failure is one clear error.
pub async fn connect(config: Config) -> anyhow::Result<AppState> {
    let db_desc = match config.db_kind {
        DbKind::Sqlite => format!("sqlite ({})", config.database_url.trim_start_matches("sqlite://")),
        DbKind::Postgres => format!("postgresql ({}, as role {})", redact_url(&config.database_url), config.db_role),
    };
    if config.migrate_on_start {
        let owner = Db::connect_owner(&config)
            .await
            .map_err(|e| anyhow::anyhow!("cannot connect to the database {}: {e}", redact_url(&config.database_url)))?;
        owner.migrate().await.map_err(|e| anyhow::anyhow!("migrations failed: {e}"))?;
        owner.raw().clone().close().await.ok();
    }
    let db = Db::connect(&config)
        .await
        .map_err(|e| anyhow::anyhow!("cannot connect to the database {}: {e}", redact_url(&config.database_url)))?;
    let pending = db.pending_migrations().await.unwrap_or(0);
    if pending > 0 {
        anyhow::bail!("the database has {pending} pending migration(s): run `cloudhis migrate` first");
    }
    tracing::info!(backend = "database", "database: {db_desc}");

    let cache = match &config.redis_url {
        Some(url) => Cache::redis(url, &config.redis_prefix)
            .await
            .map_err(|e| anyhow::anyhow!("cannot connect to redis {}: {e}", redact_url(url)))?,
        None => Cache::memory(),
    };
    tracing::info!(
        backend = "cache",
        "cache: {}",
        match &config.redis_url {
            Some(url) => format!("redis ({})", redact_url(url)),
            None => "in-memory".into(),
        }
    );

    let topology = Arc::new(Topology::of(&config.amqp_prefix, &handlers(), config.retry_delays.clone()));
    let bus = match &config.amqp_url {
        Some(url) => Bus::amqp(url, topology.clone())
            .await
            .map_err(|e| anyhow::anyhow!("cannot connect to rabbitmq {}: {e}", redact_url(url)))?,
        None => Bus::in_process(),
    };
    tracing::info!(
        backend = "bus",
        "event bus: {}",
        match &config.amqp_url {
            Some(url) => format!("rabbitmq ({})", redact_url(url)),
            None => "in-process".into(),
        }
    );

    let mut relay = None;
    if config.workers {
        let handlers = handlers();
        relay = Some(crate::platform::events::spawn_relay(db.clone(), bus.clone(), db.events_wake(), handlers.clone()));
        if let Some(url) = &config.amqp_url {
            crate::platform::consumers::spawn_amqp(db.clone(), url.clone(), topology.clone(), handlers.clone());
        }
        crate::platform::delivery::spawn_sweep(
            db.clone(),
            cache.clone(),
            handlers,
            config.sweep_interval,
            config.sweep_grace,
            config.sweep_window,
        );
    }
    tracing::info!(
        backend = "workers",
        "background workers: {}",
        if config.workers { "relay, consumers and jobs" } else { "off" }
    );
    let authz = Authz::new(db.clone(), cache.clone());
    let keys = TokenKeys::new(&config.secret.0);
    let pii = crate::platform::pii::PiiCipher::new(&config.pii_key.0);
    let (jobs, workers) = (config.job_interval, config.workers);
    if workers {
        crate::platform::db::spawn_audit_partitions_job(db.clone());
        crate::platform::planner_stats::spawn(&config);
    }
    let state = AppState::new(StateInner {
        config,
        db,
        cache,
        bus,
        authz,
        keys,
        pii,
        metrics: Metrics::new(),
        clock: Default::default(),
        relay,
        jobs_paused: Default::default(),
    });
    if workers {
        crate::referrals::service::spawn_expiry_job(state.clone(), jobs);
    }
    Ok(state)
}

/// Every event type the application publishes, with the context that publishes it.
pub fn event_types() -> Vec<(&'static str, &'static str)> {
    let by_context: [(&str, &[&str]); 6] = [
        ("patients", crate::patients::events::TYPES),
        ("clinical", crate::clinical::events::TYPES),
        ("pharmacy", crate::pharmacy::events::TYPES),
        ("billing", crate::billing::events::TYPES),
        ("referrals", crate::referrals::events::TYPES),
        ("followups", crate::followups::events::TYPES),
    ];
    by_context.into_iter().flat_map(|(context, types)| types.iter().map(move |t| (context, *t))).collect()
}

/// Every event consumer of the application.
pub fn handlers() -> Vec<std::sync::Arc<dyn crate::platform::consumers::Handler>> {
    vec![
        std::sync::Arc::new(crate::referrals::events::Notifications),
        std::sync::Arc::new(crate::accounts::service::Ledger),
        std::sync::Arc::new(crate::followups::service::Suggest),
        std::sync::Arc::new(crate::statistics::service::Rollup),
    ]
}

pub fn openapi_service() -> OpenApiService<impl poem_openapi::OpenApi, ()> {
    OpenApiService::new(crate::api::api(), "cloudhis", VERSION)
        .description("County-township-village integrated cloud HIS. 县乡村一体化云HIS。")
}

/// (operation, response statuses, target operations, target path parameter, runtime expression)
type Link = (&'static str, &'static [&'static str], &'static [&'static str], &'static str, &'static str);

/// Where a created object's id leads (OpenAPI links): (operation, status, target operations,
/// the target's path parameter, where the id is in the response). Clients and Schemathesis's
/// stateful phase follow them from a create to what can be done with the result.
const LINKS: &[Link] = &[
    (
        "patients_register",
        &["200", "201"],
        &[
            "patients_get",
            "patients_summary",
            "patients_allergies_add",
            "patients_break_glass",
            "accounts_patient_statement",
        ],
        "id",
        "$response.body#/person/id",
    ),
    (
        "encounters_open",
        &["201"],
        &[
            "encounters_get",
            "encounters_vitals",
            "encounters_diagnose",
            "encounters_notes",
            "encounters_prescribe",
            "encounters_charge",
            "encounters_close",
            "encounters_addendum",
        ],
        "id",
        "$response.body#/id",
    ),
    ("encounters_prescribe", &["201"], &["prescriptions_get", "prescriptions_dispense"], "id", "$response.body#/id"),
    ("encounters_charge", &["200"], &["bills_get", "bills_pay"], "id", "$response.body#/id"),
    ("bills_pay", &["201"], &["payments_refund"], "id", "$response.body#/id"),
    (
        "referrals_create",
        &["201"],
        &[
            "referrals_get",
            "referrals_submit",
            "referrals_accept",
            "referrals_reject",
            "referrals_arrive",
            "referrals_complete",
            "referrals_cancel",
            "referrals_refer_down",
            "referrals_records",
        ],
        "id",
        "$response.body#/id",
    ),
    (
        "followups_enroll",
        &["201"],
        &["followups_enrollment", "followups_record", "followups_status", "followups_close"],
        "id",
        "$response.body#/id",
    ),
    ("staff_create", &["201"], &["users_get"], "id", "$response.body#/id"),
    ("patients_merge", &["201"], &["patients_unmerge"], "id", "$response.body#/merge_id"),
    ("patients_duplicates_merge", &["201"], &["patients_unmerge"], "id", "$response.body#/merge_id"),
];

/// The create operations that honour an `Idempotency-Key` header (`platform::idempotency`): a
/// client that retries one with the same key gets the first answer, and nothing twice.
pub const IDEMPOTENT_CREATES: &[&str] = &[
    "patients_register",
    "patients_allergies_add",
    "encounters_open",
    "encounters_vitals",
    "encounters_diagnose",
    "encounters_addendum",
    "encounters_prescribe",
    "encounters_charge",
    "bills_pay",
    "payments_refund",
    "prescriptions_dispense",
    "pharmacy_receive",
    "pharmacy_adjust",
    "pharmacy_transfer",
    "referrals_create",
    "referrals_refer_down",
    "followups_enroll",
    "followups_record",
    "staff_create",
];

/// The OpenAPI document as served (`/api/openapi.json`, `cloudhis openapi`): poem-openapi's,
/// with the links of [`LINKS`] added to the responses they start from, and the
/// `Idempotency-Key` header on the operations of [`IDEMPOTENT_CREATES`].
pub fn openapi_document() -> String {
    let mut doc: serde_json::Value =
        serde_json::from_str(&openapi_service().spec()).expect("poem-openapi writes valid JSON");
    let paths = doc["paths"].as_object_mut().expect("the document has paths");
    for (from, statuses, targets, param, expr) in LINKS {
        let op = paths
            .values_mut()
            .flat_map(|item| item.as_object_mut().into_iter().flat_map(|m| m.values_mut()))
            .find(|o| o["operationId"] == *from)
            .unwrap_or_else(|| panic!("link source {from} is not an operation"));
        for status in *statuses {
            let links = serde_json::Map::from_iter(
                targets
                    .iter()
                    .map(|t| (t.to_string(), serde_json::json!({ "operationId": t, "parameters": { *param: expr } }))),
            );
            op["responses"][*status]["links"] = serde_json::Value::Object(links);
        }
    }
    for op in paths.values_mut().flat_map(|item| item.as_object_mut().into_iter().flat_map(|m| m.values_mut())) {
        if !IDEMPOTENT_CREATES.iter().any(|id| op["operationId"] == *id) {
            continue;
        }
        let params = op["parameters"].as_array_mut().map(std::mem::take).unwrap_or_default();
        let mut params = params;
        params.push(serde_json::json!({
            "name": "Idempotency-Key",
            "in": "header",
            "required": false,
            "deprecated": false,
            "explode": true,
            "description": "Any 1 to 200 visible ASCII characters, new for each create. A retry with the same key and request gets the first answer (header idempotent-replayed: true) and creates nothing; the same key with another request is 422 idempotency_key_reused; kept 24 hours per user.",
            "schema": { "type": "string", "minLength": 1, "maxLength": 200, "pattern": "^[!-~]+$" },
        }));
        op["parameters"] = serde_json::Value::Array(params);
    }
    doc.to_string()
}

/// The whole HTTP surface.
pub fn routes(state: AppState) -> impl poem::Endpoint<Output = poem::Response> {
    let api = openapi_service();
    let document = openapi_document();
    let methods = std::sync::Arc::new(crate::platform::http::RouteMethods::from_spec(&document));
    let spec = poem::endpoint::make_sync(move |_| {
        poem::Response::builder().content_type("application/json; charset=utf-8").body(document.clone())
    });
    let docs = docs_page(&api.swagger_ui_html());
    let boundary = Boundary {
        metrics: state.metrics.clone(),
        max_body_bytes: state.config.max_body_bytes,
        max_upload_bytes: state.config.max_upload_bytes,
        methods,
        db: state.db.clone(),
        hsts: state.config.cookie_secure,
        idempotent: std::sync::Arc::new(IDEMPOTENT_CREATES.iter().map(|s| s.to_string()).collect()),
        keys: state.keys.clone(),
    };
    Route::new()
        .at("/healthz", get(healthz))
        .at("/readyz", get(readyz))
        .at("/metrics", get(metrics))
        .at("/favicon.ico", get(crate::web::favicon))
        .at("/api/openapi.json", get(spec))
        .nest("/api/docs", docs)
        .nest(
            "/app",
            crate::web::routes()
                .around(crate::web::once_per_form)
                .around(crate::web::with_menu)
                .with(poem::middleware::CookieJarManager::new()),
        )
        // The API's routes are absolute (`/api/v1/...`); the bare address opens the browser app.
        .nest(
            "/",
            api.into_endpoint().around(|ep, req| async move {
                if req.uri().path() == "/" {
                    return Ok(crate::web::see_other("/app/"));
                }
                ep.call(req).await
            }),
        )
        .data(state)
        .with(boundary)
}

/// The Swagger UI with the page headers: its inline scripts are allowed by hash, nothing else
/// runs, and no one may frame it.
fn docs_page(html: &str) -> impl poem::Endpoint<Output = poem::Response> + 'static {
    use base64::Engine;
    use sha2::Digest;
    let mut hashes = String::new();
    // Walk the page script by script: a bundle's own text may contain "<script".
    let mut rest = html;
    while let Some(open) = rest.find("<script") {
        let Some(body) = rest[open..].find('>').map(|end| &rest[open + end + 1..]) else { break };
        let Some(close) = body.find("</script>") else { break };
        let digest = sha2::Sha256::digest(&body.as_bytes()[..close]);
        hashes += &format!(" 'sha256-{}'", base64::engine::general_purpose::STANDARD.encode(digest));
        rest = &body[close + "</script>".len()..];
    }
    let policy = format!(
        "default-src 'none'; script-src{hashes}; style-src 'unsafe-inline'; img-src 'self' data:; \
         font-src data:; connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'; \
         object-src 'none'"
    );
    let html = html.to_string();
    Route::new().at(
        "/",
        get(poem::endpoint::make_sync(move |_| {
            poem::Response::builder()
                .content_type("text/html; charset=utf-8")
                .header(poem::http::header::CONTENT_SECURITY_POLICY, policy.as_str())
                .header("x-frame-options", "DENY")
                .body(html.clone())
        })),
    )
}

#[handler]
fn healthz() -> poem::web::Json<serde_json::Value> {
    poem::web::Json(json!({ "status": "ok", "version": VERSION }))
}

#[handler]
async fn readyz(state: Data<&AppState>) -> poem::Response {
    let relay_running = state.relay.as_ref().is_none_or(|r| !r.is_finished());
    let checks = [
        ("database", state.db.ping().await.is_ok()),
        ("cache", state.cache.ping().await.is_ok()),
        ("bus", state.bus.ping().await.is_ok()),
        ("relay", relay_running),
    ];
    let ready = checks.iter().all(|(_, ok)| *ok);
    // Dead letters do not make this replica unfit to serve, but someone must look at them.
    let dead: i64 = crate::platform::delivery::dead_letter_counts(&state.db)
        .await
        .map(|c| c.iter().map(|(_, n)| n).sum())
        .unwrap_or(0);
    let status = match (ready, dead) {
        (false, _) => "not_ready",
        (true, 0) => "ready",
        (true, _) => "degraded",
    };
    let body = json!({
        "status": status,
        "checks": checks.iter().map(|(n, ok)| (n.to_string(), json!(if *ok { "ok" } else { "down" }))).collect::<serde_json::Map<_, _>>(),
        "dead_letters": dead,
    });
    poem::Response::builder()
        .status(if ready { poem::http::StatusCode::OK } else { poem::http::StatusCode::SERVICE_UNAVAILABLE })
        .content_type("application/json")
        .body(body.to_string())
}

/// Prometheus text, for a scraper holding `CLOUDHIS_METRICS_TOKEN` as a bearer token. Without the
/// variable the page is closed: counts of routes and dead letters are not for the public.
#[handler]
async fn metrics(req: &poem::Request, state: Data<&AppState>) -> poem::Response {
    let presented = req
        .headers()
        .get(poem::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    let allowed = state.config.metrics_token.as_ref().is_some_and(|t| {
        use subtle::ConstantTimeEq;
        bool::from(t.0.as_slice().ct_eq(presented.as_bytes()))
    });
    if !allowed {
        return poem::Response::builder()
            .status(poem::http::StatusCode::UNAUTHORIZED)
            .header(poem::http::header::WWW_AUTHENTICATE, "Bearer realm=\"metrics\"")
            .content_type("application/json")
            .body(
                json!({
                    "code": crate::platform::codes::UNAUTHENTICATED.code,
                    "message": "/metrics needs the bearer token set in CLOUDHIS_METRICS_TOKEN",
                })
                .to_string(),
            );
    }
    match crate::platform::delivery::dead_letter_counts(&state.db).await {
        Ok(counts) => state.metrics.set_dead_letters(&counts),
        Err(e) => tracing::warn!(error = %e, "could not count dead letters for /metrics"),
    }
    poem::Response::builder().content_type("text/plain; version=0.0.4").body(state.metrics.render())
}

pub struct Application {
    port: u16,
    state: AppState,
    acceptor: poem::listener::TcpAcceptor,
}

impl Application {
    /// Connects, migrates and binds. `CLOUDHIS_BIND` with port 0 picks a free port.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let bind = config.bind.clone();
        let state = connect(config).await?;
        Self::with_state(state, &bind).await
    }

    pub async fn with_state(state: AppState, bind: &str) -> anyhow::Result<Self> {
        let acceptor = TcpListener::bind(bind.to_string())
            .into_acceptor()
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {bind}: {e}"))?;
        let port = acceptor.local_addr().first().and_then(|a| a.as_socket_addr().map(|s| s.port())).unwrap_or_default();
        Ok(Self { port, state, acceptor })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until SIGINT/SIGTERM, then drains in-flight requests for up to 10 s.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let app = routes(self.state.clone());
        tracing::info!(port = self.port, "listening on port {}", self.port);
        Server::new_with_acceptor(self.acceptor)
            .run_with_graceful_shutdown(app, shutdown_signal(), Some(Duration::from_secs(10)))
            .await
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = int.recv() => {},
        _ = term.recv() => {},
    }
    tracing::info!("shutting down");
}
