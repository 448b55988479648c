//! MPI speed with a large index loaded: `$match` latency through the real HTTP API, and the time
//! of a bulk deduplication of the whole community.
//!
//! `cargo bench --bench mpi_speed -- --backend postgres|sqlite [--persons N] [--queries Q] [--reload]`
//!
//! PostgreSQL: database `cloudhis_bench_mpi` on `CLOUDHIS_TEST_PG_URL` (default
//! postgres://postgres@127.0.0.1:5432), with Redis for sessions. SQLite: `target/bench-data/mpi.db`.
//! The persons are loaded once with `seed` (re-used on later runs unless `--reload`). Queries
//! are sequential from one client: 70% are records of loaded persons (a third of those carrying
//! an error, being planted duplicates), 30% are new residents; each answers with up to ten ranked
//! candidates and writes its audit rows.

use std::time::{Duration, Instant};

use cloudhis::patients::matching::MatchWeights;
use cloudhis::patients::synth::generate;
use cloudhis::platform::config::Config;
use cloudhis::startup::Application;
use rand::prelude::*;
use rand::rngs::StdRng;
use sea_orm::{ConnectionTrait, Database};
use serde_json::json;

fn arg<T: std::str::FromStr>(name: &str, default: T) -> T {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let backend: String = arg("--backend", "sqlite".to_string());
    let persons: usize = arg("--persons", 1_000_000);
    let queries: usize = arg("--queries", 2000);
    let reload = std::env::args().any(|a| a == "--reload");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-data");
    std::fs::create_dir_all(&dir)?;
    let mut env: Vec<(&str, String)> = vec![
        ("CLOUDHIS_DATA_DIR", dir.display().to_string()),
        ("CLOUDHIS_SECRET", "bench-secret-bench-secret-bench-secret-00".into()),
        ("CLOUDHIS_BIND", "127.0.0.1:0".into()),
        ("CLOUDHIS_LOG_FORMAT", "json".into()),
        ("CLOUDHIS_DB_POOL_SIZE", "8".into()),
    ];
    match backend.as_str() {
        "postgres" => {
            let server =
                std::env::var("CLOUDHIS_TEST_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
            let admin = Database::connect(format!("{server}/postgres")).await?;
            if reload {
                admin.execute_unprepared("DROP DATABASE IF EXISTS cloudhis_bench_mpi WITH (FORCE)").await?;
            }
            let _ = admin.execute_unprepared("CREATE DATABASE cloudhis_bench_mpi").await;
            env.push(("DATABASE_URL", format!("{server}/cloudhis_bench_mpi")));
            env.push((
                "REDIS_URL",
                std::env::var("CLOUDHIS_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into()),
            ));
            env.push(("CLOUDHIS_REDIS_PREFIX", "bench".into()));
        }
        _ => {
            let file = dir.join("mpi.db");
            if reload {
                for ext in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{ext}", file.display()));
                }
            }
            env.push(("DATABASE_URL", format!("sqlite://{}?mode=rwc", file.display())));
        }
    }
    let config = Config::from_lookup(|k| env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone()))?.config;
    let app = Application::build(config).await?;
    let state = app.state().clone();
    let port = app.port();
    tokio::spawn(app.run_until_stopped());

    let spec = cloudhis::onboarding::parse("demo", cloudhis::cli::DEMO_TENANT)?;
    let report = cloudhis::onboarding::apply(&state.db, &spec).await?;
    let tenant = report.tenant_id;
    state.authz.changed(tenant).await;
    let loaded = cloudhis::patients::seed::persons_count(&state.db, tenant).await? as usize;
    let seed = 1_000_001;
    let share = 0.1;
    let mut load_line = format!("re-used {loaded} persons already loaded");
    if loaded == 0 {
        let t = Instant::now();
        let r = cloudhis::patients::seed::seed(&state.db, &state.pii, tenant, persons, share, seed).await?;
        load_line = format!(
            "loaded {} persons ({} registrations) in {:.0} s",
            r.persons,
            r.registrations,
            t.elapsed().as_secs_f64()
        );
    }
    eprintln!("{load_line}");

    // The same records the seed loaded, and some residents nobody has seen.
    let tx = state.db.begin(&cloudhis::platform::SystemScope { tenant }).await?;
    let institutions = cloudhis::tenancy::service::list_institutions(&tx).await?;
    tx.rollback().await?;
    let known = generate(&cloudhis::patients::seed::plan(&institutions, persons, share, seed));
    let mut new_cfg = cloudhis::patients::seed::plan(&institutions, queries, 0.0, 77);
    new_cfg.seed = 77;
    let unseen = generate(&new_cfg);
    let mut rng = StdRng::seed_from_u64(5);
    let mut bodies = Vec::with_capacity(queries + 100);
    for i in 0..queries + 100 {
        let r = if rng.random_bool(0.7) {
            let dup = rng.random_bool(0.33);
            loop {
                let c = known.choose(&mut rng).unwrap();
                if c.is_duplicate == dup {
                    break c.clone();
                }
            }
        } else {
            unseen[i % unseen.len()].clone()
        };
        bodies.push(r.registration_json());
    }

    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let login: serde_json::Value = client
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"tenant": "demo-county", "username": "village.doctor", "password": "Demo@2026"}))
        .send()
        .await?
        .json()
        .await?;
    let token = login["token"].as_str().expect("login").to_string();
    let mut lat = Vec::with_capacity(queries);
    let mut with_candidates = 0usize;
    let started = Instant::now();
    for (i, b) in bodies.iter().enumerate() {
        let t = Instant::now();
        let r = client.post(format!("{base}/api/v1/patients/$match")).bearer_auth(&token).json(b).send().await?;
        let status = r.status();
        let v: serde_json::Value = r.json().await?;
        let d = t.elapsed();
        anyhow::ensure!(status == 200, "match answered {status}: {v}");
        if i >= 100 {
            lat.push(d);
            if !v["candidates"].as_array().is_some_and(|c| c.is_empty()) {
                with_candidates += 1;
            }
        }
    }
    let wall = started.elapsed();
    lat.sort();

    let t = Instant::now();
    let w = MatchWeights::default();
    let dd = cloudhis::patients::dedup::run(&state.db, &state.pii, tenant, &w, false).await?;
    let dedup_total = t.elapsed();

    println!("## MPI speed ({backend}, {} persons)", dd.persons);
    println!();
    println!("| measure | value |");
    println!("|---|---|");
    println!("| load | {load_line} |");
    println!(
        "| `$match` queries (sequential, one client, over HTTP) | {} ({with_candidates} returned candidates) |",
        lat.len()
    );
    println!(
        "| `$match` latency p50 / p90 / p99 / max | {:.2} / {:.2} / {:.2} / {:.2} ms |",
        pct(&lat, 0.5),
        pct(&lat, 0.9),
        pct(&lat, 0.99),
        lat.last().unwrap().as_secs_f64() * 1000.0
    );
    println!("| `$match` throughput, one client | {:.0} /s |", (queries + 100) as f64 / wall.as_secs_f64());
    println!(
        "| bulk dedup of all persons | {:.1} s (load and decrypt {:.1} s, match {:.1} s; {} comparisons; {} certain, {} probable pairs) |",
        dedup_total.as_secs_f64(),
        dd.load_time.as_secs_f64(),
        dd.stats.elapsed.as_secs_f64(),
        dd.stats.comparisons,
        dd.certain,
        dd.probable
    );
    Ok(())
}
