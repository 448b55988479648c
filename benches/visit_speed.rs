//! Outpatient visit throughput with a large MPI loaded: whole visits through the real HTTP API
//! (register → open → vitals → diagnose → prescribe → charge → pay → dispense → close) from
//! several concurrent clients, with p50/p99 per step.
//!
//! `cargo bench --bench visit_speed -- [--visits N] [--clients C] [--database-url URL | --citus COORDINATOR_URL] [--seed-persons P]`
//!
//! By default it runs on the PostgreSQL database `cloudhis_bench_mpi` that `mpi_speed --backend
//! postgres` loads (one million persons), with Redis for sessions: run that first. Or on another
//! database (`--database-url`), or on a Citus cluster (`--citus`, the coordinator's `postgres`
//! database: `cloudhis_bench_visits` is made on every node, 32 shards, and distributed by the
//! app's migration). `--seed-persons P` loads P synthetic residents into an empty tenant first.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cloudhis::platform::config::Config;
use cloudhis::startup::Application;
use serde_json::{Value, json};
use tokio::sync::Mutex;

fn arg<T: std::str::FromStr>(name: &str, default: T) -> T {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

type Timings = Arc<Mutex<BTreeMap<&'static str, Vec<Duration>>>>;

async fn step(
    client: &reqwest::Client,
    timings: &Timings,
    name: &'static str,
    req: reqwest::RequestBuilder,
) -> anyhow::Result<Value> {
    let t = Instant::now();
    let r = req.send().await?;
    let status = r.status();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    let d = t.elapsed();
    anyhow::ensure!(status.is_success(), "{name} answered {status}: {body}");
    timings.lock().await.entry(name).or_default().push(d);
    let _ = client;
    Ok(body)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let visits: usize = arg("--visits", 2000);
    let clients: usize = arg("--clients", 8);
    let server = std::env::var("CLOUDHIS_TEST_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    let seed_persons: usize = arg("--seed-persons", 0);
    let citus: String = arg("--citus", String::new());
    let (database_url, label) = if citus.is_empty() {
        (arg("--database-url", format!("{server}/cloudhis_bench_mpi")), "postgres")
    } else {
        let name = "cloudhis_bench_visits";
        let url = match cloudhis::platform::citus::prepare_database(&citus, name, 32).await {
            Ok(url) => url,
            Err(e) if format!("{e:#}").contains("already exists") => {
                cloudhis::platform::citus::with_database(&citus, name)
            }
            Err(e) => return Err(e),
        };
        (url, "citus: a coordinator and two workers")
    };
    if citus.is_empty() && seed_persons > 0 {
        // A database of its own, made if missing.
        let (admin, name) = database_url.rsplit_once('/').unwrap_or((&database_url, ""));
        let admin = sea_orm::Database::connect(format!("{admin}/postgres")).await?;
        let _ = sea_orm::ConnectionTrait::execute_unprepared(&admin, &format!("CREATE DATABASE {name}")).await;
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-data");
    std::fs::create_dir_all(&dir)?;
    let env: Vec<(&str, String)> = vec![
        ("CLOUDHIS_DATA_DIR", dir.display().to_string()),
        ("CLOUDHIS_SECRET", "bench-secret-bench-secret-bench-secret-00".into()),
        ("CLOUDHIS_BIND", "127.0.0.1:0".into()),
        ("CLOUDHIS_DB_POOL_SIZE", "16".into()),
        ("DATABASE_URL", database_url.clone()),
        ("REDIS_URL", std::env::var("CLOUDHIS_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())),
        ("CLOUDHIS_REDIS_PREFIX", "bench".into()),
        ("RUST_LOG", "warn".into()),
    ];
    let config = Config::from_lookup(|k| env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone()))?.config;
    let app = Application::build(config).await?;
    let state = app.state().clone();
    let port = app.port();
    tokio::spawn(app.run_until_stopped());
    let spec = cloudhis::onboarding::parse("demo", cloudhis::cli::DEMO_TENANT)?;
    let report = cloudhis::onboarding::apply(&state.db, &spec).await?;
    state.authz.changed(report.tenant_id).await;
    let mut persons = cloudhis::patients::seed::persons_count(&state.db, report.tenant_id).await?;
    if seed_persons > 0 && persons == 0 {
        cloudhis::patients::seed::seed(&state.db, &state.pii, report.tenant_id, seed_persons, 0.1, 1_000_001).await?;
        persons = cloudhis::patients::seed::persons_count(&state.db, report.tenant_id).await?;
        // Statistics for what was just loaded (autovacuum is off on the bench machines; a table
        // never analysed gets the planner's defaults, which sent the match to a scan). As the
        // owner: the app's role may not analyse, and the server did so only with a warning.
        let owner = sea_orm::Database::connect(database_url.clone()).await?;
        sea_orm::ConnectionTrait::execute_unprepared(&owner, "ANALYZE").await?;
    }
    anyhow::ensure!(
        persons >= 100_000 || seed_persons > 0,
        "load the MPI first: cargo bench --bench mpi_speed -- --backend postgres"
    );

    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let login: Value = http
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"tenant": "demo-county", "username": "village.doctor", "password": "Demo@2026"}))
        .send()
        .await?
        .json()
        .await?;
    let token = login["token"].as_str().expect("login").to_string();
    // Enough stock for every visit.
    let expiry = (chrono::Utc::now() + chrono::Duration::days(700)).date_naive();
    for drug in ["amlodipine-5mg", "metformin-500mg"] {
        http.post(format!("{base}/api/v1/pharmacy/stock/receipts"))
            .bearer_auth(&token)
            .json(&json!({"drug_code": drug, "lot": format!("BENCH-{}", chrono::Utc::now().timestamp()), "expiry": expiry, "quantity": 100_000_000}))
            .send()
            .await?
            .error_for_status()?;
    }
    // New residents (a different seed from the loaded million), some of them duplicates.
    let tx = state.db.begin(&cloudhis::platform::SystemScope { tenant: report.tenant_id }).await?;
    let institutions = cloudhis::tenancy::service::list_institutions(&tx).await?;
    tx.rollback().await?;
    let people =
        cloudhis::patients::synth::generate(&cloudhis::patients::seed::plan(&institutions, visits, 0.05, 4242));
    let people = Arc::new(people);

    let timings: Timings = Arc::default();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (http, base, token, timings, next, people) =
            (http.clone(), base.clone(), token.clone(), timings.clone(), next.clone(), people.clone());
        tasks.push(tokio::spawn(async move {
            let mut done = 0usize;
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let Some(r) = people.get(i) else { break };
                let auth = |rb: reqwest::RequestBuilder| rb.bearer_auth(&token);
                let mut body = r.registration_json();
                let started = Instant::now();
                let reg = http.post(format!("{base}/api/v1/patients")).bearer_auth(&token).json(&body).send().await?;
                let reg: Value = if reg.status() == 409 {
                    // A probable match: this clinic decides it is the same person.
                    let v: Value = reg.json().await?;
                    body["link_to"] = v["details"]["candidates"][0]["person"]["id"].clone();
                    step(&http, &timings, "1 register", auth(http.post(format!("{base}/api/v1/patients"))).json(&body)).await?
                } else {
                    let status = reg.status();
                    let v: Value = reg.json().await?;
                    anyhow::ensure!(status.is_success(), "register {status}: {v}");
                    timings.lock().await.entry("1 register").or_default().push(started.elapsed());
                    v
                };
                let person = reg["person"]["id"].as_str().unwrap().to_string();
                let enc = step(&http, &timings, "2 open", auth(http.post(format!("{base}/api/v1/encounters"))).json(&json!({"person_id": person}))).await?;
                let e = enc["id"].as_str().unwrap().to_string();
                step(&http, &timings, "3 vitals", auth(http.post(format!("{base}/api/v1/encounters/{e}/vitals"))).json(&json!({"systolic": 150, "diastolic": 92, "pulse": 78}))).await?;
                step(&http, &timings, "4 diagnose", auth(http.post(format!("{base}/api/v1/encounters/{e}/diagnoses"))).json(&json!({"code": "I10"}))).await?;
                let p = step(
                    &http,
                    &timings,
                    "5 prescribe",
                    auth(http.post(format!("{base}/api/v1/encounters/{e}/prescriptions"))).json(&json!({"chronic": true, "lines": [
                        {"drug_code": "amlodipine-5mg", "dose": 5, "dose_unit": "mg", "frequency": "qd", "days": 28, "quantity": 28},
                        {"drug_code": "metformin-500mg", "dose": 500, "dose_unit": "mg", "frequency": "bid", "days": 28, "quantity": 56}]})),
                )
                .await?;
                let bill = step(&http, &timings, "6 charge", auth(http.post(format!("{base}/api/v1/encounters/{e}/charges"))).json(&json!({"fee_items": [{"code": "registration"}, {"code": "consultation"}]}))).await?;
                let b = bill["id"].as_str().unwrap();
                step(&http, &timings, "7 pay", auth(http.post(format!("{base}/api/v1/bills/{b}/payments"))).json(&json!({"method": "mobile", "amount_fen": bill["owed_fen"]}))).await?;
                step(&http, &timings, "8 dispense", auth(http.post(format!("{base}/api/v1/prescriptions/{}/dispense", p["id"].as_str().unwrap()))).json(&json!({}))).await?;
                step(&http, &timings, "9 close", auth(http.post(format!("{base}/api/v1/encounters/{e}/close"))).json(&json!({}))).await?;
                done += 1;
            }
            anyhow::Ok(done)
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await??;
    }
    let wall = started.elapsed();
    let pct = |v: &mut Vec<Duration>, p: f64| {
        v.sort();
        v[((v.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1000.0
    };
    println!("## Outpatient visit throughput ({label}, {persons} persons loaded, {clients} concurrent clients)");
    println!();
    println!("| measure | value |");
    println!("|---|---|");
    println!("| visits completed | {total} in {:.1} s |", wall.as_secs_f64());
    println!(
        "| throughput | {:.1} visits/s ({:.0} API calls/s) |",
        total as f64 / wall.as_secs_f64(),
        total as f64 * 9.0 / wall.as_secs_f64()
    );
    let mut t = timings.lock().await;
    for (name, v) in t.iter_mut() {
        let (p50, p99) = (pct(v, 0.5), pct(v, 0.99));
        println!("| step {name}: p50 / p99 | {p50:.1} / {p99:.1} ms |");
    }
    Ok(())
}
