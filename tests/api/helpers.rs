//! Test harness: each test gets its own application on port 0 with its own database (a SQLite
//! file, or a fresh PostgreSQL database) and its own cache namespace. The backend is chosen by
//! `CLOUDHIS_TEST_BACKEND` (`sqlite`, the default, or `postgres`, which also uses Redis and
//! RabbitMQ). Service addresses can be overridden with `CLOUDHIS_TEST_PG_URL`,
//! `CLOUDHIS_TEST_REDIS_URL` and `CLOUDHIS_TEST_AMQP_URL`.
//!
//! `CLOUDHIS_TEST_BACKEND=citus` runs the PostgreSQL tests on a Citus cluster instead:
//! `CLOUDHIS_CITUS_URL` names the coordinator's `postgres` database (`../shared/citus/cluster
//! start DIR` prints it). Each test gets its own database on the coordinator and on every worker,
//! with the extension and the nodes registered (`fresh_citus_database`), and four shards per
//! table instead of 32 (distributing ~55 tables per test is the slow part; routing is the same);
//! the app's migration distributes the schema as in production.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use cloudhis::platform::config::Config;
use cloudhis::platform::state::AppState;
use cloudhis::startup::Application;
use reqwest::{Method, StatusCode};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use uuid::Uuid;

pub const PASSWORD: &str = "Demo@2026";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The bearer token the test apps' `/metrics` asks for.
pub const METRICS_TOKEN: &str = "test-metrics-token-0123456789abcdef";

pub fn backend() -> Backend {
    match std::env::var("CLOUDHIS_TEST_BACKEND").as_deref() {
        Ok("postgres" | "citus") => Backend::Postgres,
        Ok("sqlite") | Err(_) => Backend::Sqlite,
        Ok(other) => panic!("CLOUDHIS_TEST_BACKEND must be sqlite, postgres or citus, not {other}"),
    }
}

/// Whether the PostgreSQL tests run on a Citus cluster (`CLOUDHIS_TEST_BACKEND=citus`).
pub fn on_citus() -> bool {
    std::env::var("CLOUDHIS_TEST_BACKEND").as_deref() == Ok("citus")
}

/// The coordinator's `postgres` database, for `CLOUDHIS_TEST_BACKEND=citus` and the Citus tests.
pub fn citus_url() -> String {
    std::env::var("CLOUDHIS_CITUS_URL")
        .expect("CLOUDHIS_CITUS_URL must name a Citus coordinator (../shared/citus/cluster start DIR prints it)")
}

/// `url` with its database replaced by `db` (the query string kept).
pub fn with_db(url: &str, db: &str) -> String {
    cloudhis::platform::citus::with_database(url, db)
}

/// A fresh database on the Citus coordinator and every worker, with the extension and the nodes,
/// and `shards` shards per distributed table; returns its URL.
pub async fn fresh_citus_database(coordinator: &str, shards: u32) -> String {
    let name = format!("cloudhis_citus_{}", &Uuid::new_v4().simple().to_string()[..12]);
    fresh_citus_database_named(coordinator, shards, &name).await
}

async fn fresh_citus_database_named(coordinator: &str, shards: u32, name: &str) -> String {
    // Made on the coordinator, the app role reaches the workers.
    let admin = Database::connect(coordinator).await.expect("the Citus coordinator answers");
    admin.execute_unprepared(APP_ROLE_SQL).await.expect("the app role exists");
    admin.close().await.ok();
    cloudhis::platform::citus::prepare_database(coordinator, name, shards).await.expect("a Citus database")
}

fn env_or(var: &str, default: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| default.to_string())
}

pub fn pg_server_url() -> String {
    env_or("CLOUDHIS_TEST_PG_URL", "postgres://postgres@127.0.0.1:5432")
}

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub state: AppState,
    pub backend: Backend,
    /// Environment that points the `cloudhis` binary at this test's backends.
    pub env: HashMap<String, String>,
    pub dir: tempfile::TempDir,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.server.abort();
        // On Citus each database keeps a maintenance worker on every node, and a node has a
        // few dozen worker slots: a test's database is dropped when it ends.
        if on_citus()
            && let Some(url) = self.env.get("DATABASE_URL").cloned()
        {
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
                rt.block_on(drop_citus_database(&url));
            })
            .join();
        }
        // Each test declares its own quorum queues and exchanges on RabbitMQ (its prefix); left
        // behind, thousands of them pile up run after run and slow the broker to a crawl.
        if let Some(prefix) = self.env.get("CLOUDHIS_AMQP_PREFIX").cloned() {
            let url = env_or("CLOUDHIS_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f");
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
                rt.block_on(async {
                    let _ =
                        tokio::time::timeout(std::time::Duration::from_secs(10), delete_amqp_objects(&url, &prefix))
                            .await;
                })
            })
            .join();
        }
    }
}

async fn delete_amqp_objects(url: &str, prefix: &str) {
    let Ok(conn) = lapin::Connection::connect(url, lapin::ConnectionProperties::default()).await else { return };
    if let Ok(ch) = conn.create_channel().await {
        // Ten retry queues covers any CLOUDHIS_RETRY_DELAYS_MS (at most ten delays); deleting one
        // that is not there is a no-op for RabbitMQ.
        let delays = vec![std::time::Duration::from_secs(1); 10];
        let topology = cloudhis::platform::consumers::Topology::of(prefix, &cloudhis::startup::handlers(), delays);
        for q in topology.queues() {
            let _ = ch.queue_delete(q.as_str().into(), lapin::options::QueueDeleteOptions::default()).await;
        }
        for x in [format!("{prefix}.events"), format!("{prefix}.dead")] {
            let _ = ch.exchange_delete(x.as_str().into(), lapin::options::ExchangeDeleteOptions::default()).await;
        }
    }
    let _ = conn.close(0, "test done".into()).await;
}

/// A database for one test on the Citus cluster: a copy, on the coordinator and on each worker,
/// of a template that was made once per test binary (migrated and distributed by `cloudhis
/// migrate`, four shards per table). Copying is a `CREATE DATABASE … TEMPLATE` per node, a
/// fraction of a second; distributing ~55 tables for every test took seconds. Each node's copy
/// holds that node's part (the coordinator its metadata, a worker its shards and its synced
/// metadata), and Citus reaches a database of the same name on every node, so the copies make a
/// cluster database of their own.
async fn citus_test_database() -> String {
    static TEMPLATE: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
    let coordinator = citus_url();
    let template = TEMPLATE.get_or_init(|| citus_template(coordinator.clone())).await;
    let name = format!("cloudhis_citus_{}", &Uuid::new_v4().simple().to_string()[..12]);
    for node in citus_nodes(&coordinator).await {
        let admin = Database::connect(with_db(&node, "postgres")).await.expect("a Citus node answers");
        admin
            .execute_unprepared(&format!("CREATE DATABASE {name} TEMPLATE {template}"))
            .await
            .expect("copy the template");
        admin.close().await.ok();
    }
    with_db(&coordinator, &name)
}

/// Drops a test's database on every node of the cluster.
async fn drop_citus_database(url: &str) {
    let name = url.split('?').next().and_then(|u| u.rsplit('/').next()).unwrap_or_default().to_string();
    if !name.starts_with("cloudhis_citus_") || name.starts_with("cloudhis_citus_tpl_") {
        return;
    }
    for node in citus_nodes(&citus_url()).await {
        if let Ok(admin) = Database::connect(with_db(&node, "postgres")).await {
            let _ = admin.execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
            admin.close().await.ok();
        }
    }
}

/// The coordinator's URL, then each worker's (same user and query).
async fn citus_nodes(coordinator: &str) -> Vec<String> {
    cloudhis::platform::citus::node_urls(coordinator).await.expect("the Citus nodes answer")
}

/// Makes (or finds, from an earlier run of the same test binary) the migrated, distributed
/// template, closed to connections so that it can be copied (Citus's maintenance daemon would
/// otherwise hold one).
async fn citus_template(coordinator: String) -> String {
    let built = std::fs::metadata(std::env::current_exe().unwrap()).and_then(|m| m.modified()).unwrap();
    let stamp = built.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let name = format!("cloudhis_citus_tpl_{stamp}");
    let admin = Database::connect(&coordinator).await.expect("the Citus coordinator answers");
    let exists = admin
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            format!("SELECT 1 AS x FROM pg_database WHERE datname = '{name}' AND NOT datallowconn"),
        ))
        .await
        .unwrap()
        .is_some();
    admin.close().await.ok();
    if exists {
        return name;
    }
    let url = fresh_citus_database_named(&coordinator, 4, &name).await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cloudhis"))
        .arg("migrate")
        .env("DATABASE_URL", &url)
        .env("CLOUDHIS_SECRET", "test-secret-test-secret-test-secret-0123")
        .env("CLOUDHIS_DATA_DIR", std::env::temp_dir())
        .output()
        .expect("cloudhis migrate runs");
    assert!(out.status.success(), "migrate the Citus template: {}", String::from_utf8_lossy(&out.stderr));
    for node in citus_nodes(&coordinator).await {
        let admin = Database::connect(with_db(&node, "postgres")).await.expect("a Citus node answers");
        admin.execute_unprepared(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false")).await.unwrap();
        admin
            .execute_unprepared(&format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}' AND pid <> pg_backend_pid()"
            ))
            .await
            .unwrap();
        admin.close().await.ok();
    }
    name
}

/// Creates the app role unless it exists (see `fresh_pg_database`).
const APP_ROLE_SQL: &str = "DO $$ BEGIN
   IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'cloudhis_app') THEN
     CREATE ROLE cloudhis_app LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
   END IF;
 EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
 END $$;";

/// Creates a fresh database for one test and returns its URL (PostgreSQL), dropping leftovers of
/// earlier runs that are over an hour old.
pub async fn fresh_pg_database() -> String {
    let server = pg_server_url();
    let admin = Database::connect(format!("{server}/postgres")).await.expect("PostgreSQL answers");
    let now = chrono::Utc::now().timestamp();
    let rows = admin
        .query_all_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT datname FROM pg_database WHERE datname LIKE 'cloudhis_test_%'",
        ))
        .await
        .unwrap_or_default();
    for row in rows {
        let name: String = row.try_get("", "datname").unwrap();
        let born: i64 = name.split('_').nth(2).and_then(|s| s.parse().ok()).unwrap_or(now);
        if now - born > 3600 {
            let _ = admin.execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
        }
    }
    let name = format!("cloudhis_test_{now}_{}", Uuid::new_v4().simple());
    admin.execute_unprepared(&format!("CREATE DATABASE {name}")).await.expect("create test database");
    // The app role is cluster-wide. On a fresh server, tests migrating their own databases at once
    // race to create it, and the loser's CREATE ROLE fails with a unique violation that the
    // migration (written for one database migrated under a lock) does not expect.
    admin.execute_unprepared(APP_ROLE_SQL).await.expect("the app role exists");
    admin.close().await.ok();
    format!("{server}/{name}")
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

/// Starts an app; `extra` adds or overrides environment variables for its configuration.
pub async fn spawn_app_with(extra: &[(&str, &str)]) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let backend = backend();
    let mut env: HashMap<String, String> = HashMap::new();
    env.insert("CLOUDHIS_DATA_DIR".into(), dir.path().join("data").display().to_string());
    env.insert("CLOUDHIS_SECRET".into(), "test-secret-test-secret-test-secret-0123".into());
    env.insert("CLOUDHIS_BIND".into(), "127.0.0.1:0".into());
    env.insert("CLOUDHIS_METRICS_TOKEN".into(), METRICS_TOKEN.into());
    env.insert("CLOUDHIS_LOG_FORMAT".into(), "json".into());
    match backend {
        Backend::Sqlite => {
            std::fs::create_dir_all(dir.path().join("data")).unwrap();
            env.insert(
                "DATABASE_URL".into(),
                format!("sqlite://{}?mode=rwc", dir.path().join("data/cloudhis.db").display()),
            );
        }
        Backend::Postgres => {
            let url = if on_citus() { citus_test_database().await } else { fresh_pg_database().await };
            env.insert("DATABASE_URL".into(), url);
            env.insert("REDIS_URL".into(), env_or("CLOUDHIS_TEST_REDIS_URL", "redis://127.0.0.1:6379"));
            env.insert("AMQP_URL".into(), env_or("CLOUDHIS_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f"));
            let prefix = format!("test-{}", Uuid::new_v4().simple());
            env.insert("CLOUDHIS_REDIS_PREFIX".into(), prefix.clone());
            env.insert("CLOUDHIS_AMQP_PREFIX".into(), prefix);
        }
    }
    for (k, v) in extra {
        env.insert(k.to_string(), v.to_string());
    }
    let lookup = env.clone();
    let config = Config::from_lookup(|k| lookup.get(k).cloned()).expect("test configuration").config;
    let app = Application::build(config).await.expect("application starts");
    let port = app.port();
    let state = app.state().clone();
    let server = tokio::spawn(async move {
        let _ = app.run_until_stopped().await;
    });
    let client = reqwest::Client::builder().build().unwrap();
    TestApp { base: format!("http://127.0.0.1:{port}"), client, state, backend, env, dir, server }
}

/// A logged-in session.
#[derive(Debug, Clone)]
pub struct Session {
    pub token: String,
    pub institution_id: Uuid,
    pub user_id: Uuid,
    pub tenant_id: Uuid,
    pub body: Value,
}

pub struct Resp {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Resp {
    pub async fn read(resp: reqwest::Response) -> Self {
        let (status, headers) = (resp.status(), resp.headers().clone());
        let text = resp.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Resp { status, headers, body, text }
    }
}

impl Resp {
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or("")
    }
}

impl TestApp {
    /// Applies the demo tenant (as `serve --demo` does).
    pub async fn load_demo(&self) {
        cloudhis::cli::load_demo(&self.state).await.expect("demo tenant applies");
    }

    /// Applies the demo tenant under another code: a second, separate community.
    pub async fn load_other_tenant(&self, code: &str) -> Uuid {
        let text = cloudhis::cli::DEMO_TENANT.replace("\"demo-county\"", &format!("\"{code}\""));
        let tenant = self.apply_tenant_file(&text).await.tenant_id;
        cloudhis::pharmacy::service::seed_demo_stock(&self.state.db, tenant).await.unwrap();
        tenant
    }

    /// Applies a tenant file's text, as `cloudhis tenants apply` would.
    pub async fn apply_tenant_file(&self, text: &str) -> cloudhis::tenancy::domain::ApplyReport {
        let spec = cloudhis::onboarding::parse("tenant.toml", text).unwrap();
        let report = cloudhis::onboarding::apply(&self.state.db, &spec).await.unwrap();
        self.state.authz.changed(report.tenant_id).await;
        report
    }

    pub async fn request(&self, method: Method, path: &str, token: Option<&str>, body: Option<Value>) -> Resp {
        let mut req = self.client.request(method, format!("{}{}", self.base, path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        Resp::read(req.send().await.expect("request is answered")).await
    }

    /// A create sent the way a careful client sends it: with an `Idempotency-Key`, and sent again
    /// with the same key after `Retry-After` when the answer is 503 (up to five times). Returns the
    /// last answer and how many 503s came before it.
    pub async fn post_retrying(&self, path: &str, token: &str, body: Value) -> (Resp, u32) {
        let key = Uuid::new_v4().to_string();
        let mut retries = 0;
        loop {
            let resp = self
                .client
                .post(format!("{}{}", self.base, path))
                .bearer_auth(token)
                .header("Idempotency-Key", &key)
                .json(&body)
                .send()
                .await
                .expect("request is answered");
            let r = Resp::read(resp).await;
            if r.status != 503 || retries == 5 {
                return (r, retries);
            }
            retries += 1;
            let wait = r.headers.get("retry-after").and_then(|v| v.to_str().ok()?.parse().ok()).unwrap_or(1);
            tokio::time::sleep(std::time::Duration::from_secs(wait)).await;
        }
    }

    pub async fn get(&self, path: &str, token: &str) -> Resp {
        self.request(Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Resp {
        self.request(Method::POST, path, Some(token), Some(body)).await
    }

    pub async fn try_login(&self, tenant: &str, username: &str, password: &str) -> Resp {
        self.request(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({ "tenant": tenant, "username": username, "password": password })),
        )
        .await
    }

    pub async fn login_in(&self, tenant: &str, username: &str) -> Session {
        let r = self.try_login(tenant, username, PASSWORD).await;
        assert_eq!(r.status, 200, "login {username}@{tenant}: {}", r.text);
        Session {
            token: r.body["token"].as_str().unwrap().to_string(),
            institution_id: r.body["institution_id"].as_str().unwrap().parse().unwrap(),
            user_id: r.body["user"]["id"].as_str().unwrap().parse().unwrap(),
            tenant_id: r.body["tenant"]["id"].as_str().unwrap().parse().unwrap(),
            body: r.body,
        }
    }

    pub async fn login(&self, username: &str) -> Session {
        self.login_in("demo-county", username).await
    }

    /// Institution ids by code, as `session` sees its community.
    pub async fn institutions(&self, session: &Session) -> HashMap<String, Uuid> {
        let r = self.get("/api/v1/institutions", &session.token).await;
        assert_eq!(r.status, 200, "{}", r.text);
        r.body
            .as_array()
            .unwrap()
            .iter()
            .map(|i| (i["code"].as_str().unwrap().to_string(), i["id"].as_str().unwrap().parse().unwrap()))
            .collect()
    }

    /// Runs the `cloudhis` binary against this test's backends.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new(env!("CARGO_BIN_EXE_cloudhis"))
            .args(args)
            .env_clear()
            .envs(&self.env)
            .env("CLOUDHIS_LOG_FORMAT", "json")
            .env("RUST_LOG", "warn")
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .expect("cloudhis binary runs")
    }

    /// A connection as the database owner (PostgreSQL superuser, or the SQLite file), bypassing
    /// the app's role: for tests that must tamper with data or inspect RLS.
    pub async fn owner_connection(&self) -> DatabaseConnection {
        Database::connect(self.env["DATABASE_URL"].clone()).await.expect("owner connection")
    }
}

/// For a test marked `#[ignore = "needs PostgreSQL…"]`: fails at once, saying why, when it is
/// run (with `--include-ignored`) on another backend, instead of passing without checking.
pub fn require_postgres() {
    assert!(
        backend() == Backend::Postgres,
        "this test checks PostgreSQL (and, where it says so, Redis and RabbitMQ): run it with CLOUDHIS_TEST_BACKEND=postgres"
    );
}

/// A TCP proxy in front of PostgreSQL that, once armed, cuts the connection at the `COMMIT` of
/// the first transaction that sent `pattern` (see [`Cut`]): the client cannot know whether the
/// commit landed.
pub(crate) struct CommitCutter {
    pub(crate) port: u16,
    pub(crate) armed: Arc<AtomicBool>,
    pub(crate) cuts: Arc<AtomicUsize>,
}

/// Where [`CommitCutter`] cuts an armed transaction's `COMMIT`.
#[derive(Clone, Copy)]
pub(crate) enum Cut {
    /// The server gets the `COMMIT` and commits; its answer is lost with the connection.
    AfterCommit,
    /// The connection ends before the `COMMIT` reaches the server, which rolls back.
    BeforeCommit,
}

impl CommitCutter {
    /// A proxy to `upstream` that, once armed, cuts (see [`Cut`]) the `COMMIT` of the first
    /// transaction that sent `pattern` in a statement's text or a bound value.
    pub(crate) async fn start(upstream: String, pattern: &'static [u8], at: Cut) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (armed, cuts) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
        let (a, c) = (armed.clone(), cuts.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let server = TcpStream::connect(&upstream).await.unwrap();
                // Without it every small message waits on a delayed ACK (about 40 ms).
                let _ = (client.set_nodelay(true), server.set_nodelay(true));
                tokio::spawn(relay(client, server, pattern, at, a.clone(), c.clone()));
            }
        });
        Self { port, armed, cuts }
    }
}

async fn relay(
    client: TcpStream,
    server: TcpStream,
    pattern: &[u8],
    at: Cut,
    armed: Arc<AtomicBool>,
    cuts: Arc<AtomicUsize>,
) {
    let (mut from_client, mut to_client) = client.into_split();
    let (mut from_server, mut to_server) = server.into_split();
    let cutting = Arc::new(AtomicBool::new(false));
    let answers = {
        let cutting = cutting.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match from_server.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    // The client sends COMMIT only after it had every earlier answer: what comes
                    // now is the answer to COMMIT, and it is dropped with the connection.
                    Ok(_) if cutting.load(Ordering::SeqCst) => return,
                    Ok(n) => {
                        if to_client.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                }
            }
        })
    };
    // The startup message has no type byte; every later one has.
    let mut len = [0u8; 4];
    if from_client.read_exact(&mut len).await.is_err() {
        return;
    }
    let mut startup = vec![0u8; (u32::from_be_bytes(len) as usize).saturating_sub(4)];
    if from_client.read_exact(&mut startup).await.is_err() {
        return;
    }
    to_server.write_all(&len).await.unwrap();
    to_server.write_all(&startup).await.unwrap();
    let mut seen = false;
    let mut prepared: HashMap<Vec<u8>, bool> = HashMap::new();
    loop {
        let mut head = [0u8; 5];
        if from_client.read_exact(&mut head).await.is_err() {
            return;
        }
        let mut body = vec![0u8; (u32::from_be_bytes(head[1..5].try_into().unwrap()) as usize).saturating_sub(4)];
        if from_client.read_exact(&mut body).await.is_err() {
            return;
        }
        let contains = |hay: &[u8]| hay.windows(pattern.len()).any(|w| w == pattern);
        let cstrings: Vec<&[u8]> = body.split(|b| *b == 0).collect();
        match head[0] {
            // Parse: statement name, query text.
            b'P' if cstrings.len() > 1 => {
                prepared.insert(cstrings[0].to_vec(), contains(cstrings[1]));
            }
            // Bind: portal name, statement name, then the values (text as its bytes).
            b'B' if cstrings.len() > 1 => {
                seen |= prepared.get(cstrings[1]).copied().unwrap_or(false) || contains(&body);
            }
            b'Q' => {
                let commit = body.starts_with(b"COMMIT");
                seen |= contains(&body);
                if commit && std::mem::take(&mut seen) && armed.swap(false, Ordering::SeqCst) {
                    cutting.store(true, Ordering::SeqCst);
                    match at {
                        Cut::AfterCommit => {
                            to_server.write_all(&[&head[..], &body].concat()).await.unwrap();
                            let _ = answers.await;
                        }
                        // Both directions close: the server's backend reads the end and aborts.
                        Cut::BeforeCommit => answers.abort(),
                    }
                    cuts.fetch_add(1, Ordering::SeqCst);
                    return;
                }
            }
            _ => {}
        }
        if to_server.write_all(&[&head[..], &body].concat()).await.is_err() {
            return;
        }
    }
}
