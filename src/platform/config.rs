//! Configuration from the environment. No variable set gives the embedded default: a SQLite file,
//! an in-memory cache and an in-process bus, all under one data directory.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rand::RngCore;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("{var} is not a valid URL: {reason}")]
    BadUrl { var: &'static str, reason: String },
    #[error("{var} must use one of {expected}, got `{got}`")]
    BadScheme { var: &'static str, expected: &'static str, got: String },
    #[error("{var} is not valid: {reason}")]
    BadValue { var: &'static str, reason: String },
    #[error("cannot use data directory {path}: {reason}")]
    DataDir { path: String, reason: String },
}

/// Which relational backend a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbKind {
    Sqlite,
    Postgres,
}

#[derive(Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub database_url: String,
    pub db_kind: DbKind,
    /// The role the app assumes on PostgreSQL, so that row-level security applies to it.
    pub db_role: String,
    pub db_pool_size: u32,
    pub redis_url: Option<String>,
    pub amqp_url: Option<String>,
    pub bind: String,
    pub secret: Secret,
    /// Key for identifiers at rest (`CLOUDHIS_PII_KEY`), derived from the secret when unset.
    pub pii_key: Secret,
    pub otlp_endpoint: Option<String>,
    pub session_ttl: Duration,
    pub cookie_secure: bool,
    pub max_body_bytes: usize,
    /// The largest file an import upload may be (`CLOUDHIS_MAX_UPLOAD_BYTES`, 256 MiB).
    pub max_upload_bytes: usize,
    pub log_format: LogFormat,
    /// Run pending migrations when `serve` starts (the default; k8s turns it off and runs a Job).
    pub migrate_on_start: bool,
    /// Failed logins allowed per user (and per address) within a minute before 429.
    pub login_max_failures: u64,
    /// Key prefix for everything this deployment keeps in Redis.
    pub redis_prefix: String,
    /// Prefix of this deployment's RabbitMQ exchanges and queues.
    pub amqp_prefix: String,
    /// How often scheduled jobs (referral expiry) run.
    pub job_interval: Duration,
    /// Run the event relay, consumers and scheduled jobs in this process (default). Off for a
    /// replica that only serves requests.
    pub workers: bool,
    /// Delays before each retry of a failed delivery; after the last, a dead letter.
    pub retry_delays: Vec<Duration>,
    /// How often the anti-entropy sweep runs, how old an undelivered event must be before it
    /// re-delivers it, and how far back it looks.
    pub sweep_interval: Duration,
    pub sweep_grace: Duration,
    pub sweep_window: Duration,
    /// Bearer token `/metrics` asks for (`CLOUDHIS_METRICS_TOKEN`); unset, `/metrics` is closed.
    pub metrics_token: Option<Secret>,
    /// How often an open event stream re-checks its session even without a notice (1 to 30 s).
    pub stream_recheck: Duration,
    /// How often the server analyses tables whose statistics are due, when the database's
    /// autovacuum is off (PostgreSQL; see `platform::planner_stats`).
    pub analyze_interval: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

/// The signing secret. Debug never prints it.
#[derive(Clone)]
pub struct Secret(pub Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("data_dir", &self.data_dir)
            .field("database", &redact_url(&self.database_url))
            .field("redis", &self.redis_url.as_deref().map(redact_url))
            .field("amqp", &self.amqp_url.as_deref().map(redact_url))
            .field("bind", &self.bind)
            .finish_non_exhaustive()
    }
}

/// Where a value came from, so startup can say whether the secret was generated.
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<String>,
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Loaded, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok().filter(|v| !v.trim().is_empty()))
    }

    /// Reads configuration through `get`, so tests can build one without touching the environment.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Loaded, ConfigError> {
        let mut warnings = Vec::new();
        let data_dir = PathBuf::from(get("CLOUDHIS_DATA_DIR").unwrap_or_else(|| "data".into()));

        let database_url = match get("DATABASE_URL") {
            Some(url) => url,
            None => {
                ensure_dir(&data_dir)?;
                format!("sqlite://{}?mode=rwc", data_dir.join("cloudhis.db").display())
            }
        };
        let db_kind = parse_db_url(&database_url)?;
        let redis_url = get("REDIS_URL");
        if let Some(u) = &redis_url {
            check_url("REDIS_URL", u, &["redis", "rediss"], "redis:// or rediss://")?;
        }
        let amqp_url = get("AMQP_URL");
        if let Some(u) = &amqp_url {
            check_url("AMQP_URL", u, &["amqp", "amqps"], "amqp:// or amqps://")?;
        }
        let bind = get("CLOUDHIS_BIND").unwrap_or_else(|| "127.0.0.1:8080".into());
        bind.parse::<std::net::SocketAddr>().map_err(|e| ConfigError::BadValue {
            var: "CLOUDHIS_BIND",
            reason: format!("`{bind}` is not host:port ({e})"),
        })?;
        let (secret, pii_key) = secrets(&get, &data_dir, &mut warnings)?;
        if let Some(u) = get("OTEL_EXPORTER_OTLP_ENDPOINT") {
            check_url("OTEL_EXPORTER_OTLP_ENDPOINT", &u, &["http", "https"], "http:// or https://")?;
        }
        let session_minutes = parse_num(&get, "CLOUDHIS_SESSION_TTL_MINUTES", 480)?;
        let log_format = match get("CLOUDHIS_LOG_FORMAT").as_deref() {
            None | Some("json") => LogFormat::Json,
            Some("pretty") => LogFormat::Pretty,
            Some(other) => {
                return Err(ConfigError::BadValue {
                    var: "CLOUDHIS_LOG_FORMAT",
                    reason: format!("expected json or pretty, got `{other}`"),
                });
            }
        };
        Ok(Loaded {
            config: Config {
                data_dir,
                database_url,
                db_kind,
                db_role: get("CLOUDHIS_DB_ROLE").unwrap_or_else(|| "cloudhis_app".into()),
                db_pool_size: parse_num(&get, "CLOUDHIS_DB_POOL_SIZE", 10)? as u32,
                redis_url,
                amqp_url,
                bind,
                secret,
                pii_key,
                otlp_endpoint: get("OTEL_EXPORTER_OTLP_ENDPOINT"),
                session_ttl: Duration::from_secs(session_minutes * 60),
                cookie_secure: parse_bool(&get, "CLOUDHIS_COOKIE_SECURE", false)?,
                max_body_bytes: parse_num(&get, "CLOUDHIS_MAX_BODY_BYTES", 1024 * 1024)? as usize,
                max_upload_bytes: parse_num(&get, "CLOUDHIS_MAX_UPLOAD_BYTES", 256 * 1024 * 1024)? as usize,
                log_format,
                migrate_on_start: parse_bool(&get, "CLOUDHIS_MIGRATE_ON_START", true)?,
                login_max_failures: parse_num(&get, "CLOUDHIS_LOGIN_MAX_FAILURES", 5)?,
                redis_prefix: get("CLOUDHIS_REDIS_PREFIX").unwrap_or_else(|| "cloudhis".into()),
                amqp_prefix: get("CLOUDHIS_AMQP_PREFIX").unwrap_or_else(|| "cloudhis".into()),
                job_interval: Duration::from_secs(parse_num(&get, "CLOUDHIS_JOB_INTERVAL_SECONDS", 30)?.max(1)),
                workers: parse_bool(&get, "CLOUDHIS_WORKERS", true)?,
                retry_delays: parse_delays(
                    &get,
                    "CLOUDHIS_RETRY_DELAYS_MS",
                    &[1_000, 5_000, 30_000, 120_000, 600_000],
                )?,
                sweep_interval: Duration::from_secs(parse_num(&get, "CLOUDHIS_SWEEP_INTERVAL_SECONDS", 60)?.max(1)),
                sweep_grace: Duration::from_secs(parse_num(&get, "CLOUDHIS_SWEEP_GRACE_SECONDS", 900)?),
                sweep_window: Duration::from_secs(parse_num(&get, "CLOUDHIS_SWEEP_WINDOW_HOURS", 48)?.max(1) * 3600),
                metrics_token: metrics_token(&get)?,
                stream_recheck: Duration::from_secs(
                    parse_num(&get, "CLOUDHIS_STREAM_RECHECK_SECONDS", 30)?.clamp(1, 30),
                ),
                analyze_interval: Duration::from_secs(
                    parse_num(&get, "CLOUDHIS_ANALYZE_INTERVAL_SECONDS", 60)?.clamp(1, 86_400),
                ),
            },
            warnings,
        })
    }
}

/// The token secret (generated once and kept in the data folder when unset, with a warning) and
/// the key for identifiers at rest (derived from the secret when unset).
fn secrets(
    get: &impl Fn(&str) -> Option<String>,
    data_dir: &std::path::Path,
    warnings: &mut Vec<String>,
) -> Result<(Secret, Secret), ConfigError> {
    let short = |var| ConfigError::BadValue { var, reason: "must be at least 32 characters".into() };
    let secret = match get("CLOUDHIS_SECRET") {
        Some(s) if s.len() >= 32 => Secret(s.into_bytes()),
        Some(_) => return Err(short("CLOUDHIS_SECRET")),
        None => {
            let (secret, generated) = load_or_generate_secret(data_dir)?;
            let file = data_dir.join("secret");
            warnings.push(if generated {
                format!("CLOUDHIS_SECRET is not set: generated one and saved it in {}", file.display())
            } else {
                format!("CLOUDHIS_SECRET is not set: using the one saved in {}", file.display())
            });
            secret
        }
    };
    let pii_key = match get("CLOUDHIS_PII_KEY") {
        Some(k) if k.len() >= 32 => Secret(k.into_bytes()),
        Some(_) => return Err(short("CLOUDHIS_PII_KEY")),
        None => {
            let mut derived = b"pii:".to_vec();
            derived.extend_from_slice(&secret.0);
            Secret(derived)
        }
    };
    Ok((secret, pii_key))
}

/// The scrape token: 32 to 200 visible ASCII characters, so it fits an Authorization header and
/// cannot be guessed.
fn metrics_token(get: &impl Fn(&str) -> Option<String>) -> Result<Option<Secret>, ConfigError> {
    let Some(t) = get("CLOUDHIS_METRICS_TOKEN") else { return Ok(None) };
    if !(32..=200).contains(&t.len()) || !t.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ConfigError::BadValue {
            var: "CLOUDHIS_METRICS_TOKEN",
            reason: "must be 32 to 200 visible ASCII characters".into(),
        });
    }
    Ok(Some(Secret(t.into_bytes())))
}

/// A comma-separated list of milliseconds, 1 to 10 of them, each 1 ms to a day.
fn parse_delays(
    get: &impl Fn(&str) -> Option<String>,
    var: &'static str,
    default: &[u64],
) -> Result<Vec<Duration>, ConfigError> {
    let Some(v) = get(var) else { return Ok(default.iter().map(|ms| Duration::from_millis(*ms)).collect()) };
    let bad = || ConfigError::BadValue {
        var,
        reason: format!("`{v}` is not 1 to 10 delays in milliseconds, like 1000,5000"),
    };
    let delays: Vec<u64> =
        v.split(',').map(|d| d.trim().parse::<u64>()).collect::<Result<_, _>>().map_err(|_| bad())?;
    if delays.is_empty() || delays.len() > 10 || delays.iter().any(|d| !(1..=86_400_000).contains(d)) {
        return Err(bad());
    }
    Ok(delays.into_iter().map(Duration::from_millis).collect())
}

fn parse_num(get: &impl Fn(&str) -> Option<String>, var: &'static str, default: u64) -> Result<u64, ConfigError> {
    match get(var) {
        None => Ok(default),
        Some(v) => v.parse().map_err(|_| ConfigError::BadValue { var, reason: format!("`{v}` is not a whole number") }),
    }
}

fn parse_bool(get: &impl Fn(&str) -> Option<String>, var: &'static str, default: bool) -> Result<bool, ConfigError> {
    match get(var).as_deref() {
        None => Ok(default),
        Some("1" | "true" | "yes" | "on") => Ok(true),
        Some("0" | "false" | "no" | "off") => Ok(false),
        Some(v) => Err(ConfigError::BadValue { var, reason: format!("`{v}` is not true or false") }),
    }
}

fn parse_db_url(url: &str) -> Result<DbKind, ConfigError> {
    if url.starts_with("sqlite:") {
        return Ok(DbKind::Sqlite);
    }
    check_url("DATABASE_URL", url, &["postgres", "postgresql"], "sqlite:// or postgres://")?;
    Ok(DbKind::Postgres)
}

fn check_url(var: &'static str, raw: &str, schemes: &[&str], expected: &'static str) -> Result<(), ConfigError> {
    let parsed = url::Url::parse(raw).map_err(|e| ConfigError::BadUrl { var, reason: e.to_string() })?;
    if !schemes.contains(&parsed.scheme()) {
        return Err(ConfigError::BadScheme { var, expected, got: parsed.scheme().to_string() });
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(ConfigError::BadUrl { var, reason: "it names no host".into() });
    }
    Ok(())
}

/// Drops the password from a URL so it can be logged.
pub fn redact_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        Ok(u) => u.to_string(),
        Err(_) => "<unparseable>".into(),
    }
}

fn ensure_dir(dir: &Path) -> Result<(), ConfigError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| ConfigError::DataDir { path: dir.display().to_string(), reason: e.to_string() })
}

fn load_or_generate_secret(dir: &Path) -> Result<(Secret, bool), ConfigError> {
    let path = dir.join("secret");
    let err = |e: std::io::Error| ConfigError::DataDir { path: path.display().to_string(), reason: e.to_string() };
    if let Ok(existing) = std::fs::read_to_string(&path) {
        let trimmed = existing.trim();
        if trimmed.len() >= 32 {
            return Ok((Secret(trimmed.as_bytes().to_vec()), false));
        }
    }
    ensure_dir(dir)?;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let hexed = hex::encode(bytes);
    write_private(&path, &hexed).map_err(err)?;
    Ok((Secret(hexed.into_bytes()), true))
}

#[cfg(unix)]
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().create(true).truncate(true).write(true).mode(0o600).open(path)?;
    f.write_all(contents.as_bytes())
}

#[cfg(not(unix))]
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    std::fs::write(path, contents)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load(vars: &[(&str, &str)]) -> Result<Loaded, ConfigError> {
        let dir = std::env::temp_dir().join(format!("cloudhis-cfg-{}", uuid::Uuid::new_v4()));
        let mut map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        map.insert("CLOUDHIS_DATA_DIR".into(), dir.display().to_string());
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn empty_environment_gives_embedded_default() {
        let loaded = load(&[]).unwrap();
        assert_eq!(loaded.config.db_kind, DbKind::Sqlite);
        assert!(loaded.config.redis_url.is_none());
        assert!(loaded.config.amqp_url.is_none());
        assert_eq!(loaded.config.bind, "127.0.0.1:8080");
        assert!(loaded.warnings[0].contains("generated"));
    }

    #[test]
    fn malformed_urls_are_named() {
        let e = load(&[("DATABASE_URL", "mysql://x/y")]).err().unwrap().to_string();
        assert!(e.contains("DATABASE_URL") && e.contains("mysql"), "{e}");
        let e = load(&[("REDIS_URL", "not a url")]).err().unwrap().to_string();
        assert!(e.starts_with("REDIS_URL is not a valid URL"), "{e}");
        let e = load(&[("AMQP_URL", "http://localhost")]).err().unwrap().to_string();
        assert!(e.contains("AMQP_URL must use"), "{e}");
        let e = load(&[("CLOUDHIS_SECRET", "short")]).err().unwrap().to_string();
        assert!(e.contains("at least 32"), "{e}");
    }

    #[test]
    fn redact_hides_passwords() {
        assert_eq!(redact_url("postgres://u:pw@h/db"), "postgres://u:***@h/db");
    }
}
