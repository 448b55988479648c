//! Registration speed as a tenant grows: concurrent clients registering residents through the
//! real HTTP API (match first, then link or create, audit rows, events) into tenants of
//! different sizes on PostgreSQL, one after another in one run, with p50/p99 per size.
//!
//! `cargo bench --bench register_speed -- [--sizes 10000,500000] [--registrations N] [--clients C]`
//!
//! Each size has its own database `cloudhis_bench_reg_<size>` on `CLOUDHIS_TEST_PG_URL` (default
//! postgres://postgres@127.0.0.1:5432), loaded once with `seed` (10% planted duplicates, so a
//! little fewer persons than records) and re-used on later runs; Redis holds the sessions.
//! The registrations are alike at every size: 80% residents nobody has seen (the same ones at every
//! size, new each run unless `--workload-seed` is given), 20% records of
//! loaded persons (a third of them carrying an error). A probable match (409) is answered the way a
//! clerk does, by linking to the first candidate; both calls count as registration calls.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cloudhis::patients::synth::generate;
use cloudhis::platform::config::Config;
use cloudhis::startup::Application;
use rand::prelude::*;
use rand::rngs::StdRng;
use sea_orm::{ConnectionTrait, Database};
use serde_json::{Value, json};
use tokio::sync::Mutex;

fn arg<T: std::str::FromStr>(name: &str, default: T) -> T {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1000.0
}

/// What one size measured.
struct Run {
    persons: u64,
    load: String,
    calls: usize,
    created: usize,
    linked: usize,
    asked: usize,
    wall: Duration,
    latencies: Vec<Duration>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let sizes: String = arg("--sizes", "10000,500000".to_string());
    let registrations: usize = arg("--registrations", 2000);
    let clients: usize = arg("--clients", 4);
    // New residents for this run (a re-run would otherwise find the last run's and link them),
    // the same at every size.
    let workload = arg("--workload-seed", chrono::Utc::now().timestamp() as u64);
    let mut runs = Vec::new();
    for size in sizes.split(',').map(|s| s.trim().parse::<usize>()) {
        let size = size?;
        let run = run(size, registrations, clients, workload).await?;
        eprintln!("{size}: done");
        runs.push((size, run));
    }
    println!("## Registration speed as the tenant grows (postgres, {clients} concurrent clients)");
    println!();
    println!(
        "| tenant | load | registration calls | created / linked / asked (409) | throughput | p50 | p90 | p99 | max |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for (size, r) in &mut runs {
        r.latencies.sort();
        let l = &r.latencies;
        println!(
            "| {} persons ({size} records) | {} | {} | {} / {} / {} | {:.1} /s | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms |",
            r.persons,
            r.load,
            r.calls,
            r.created,
            r.linked,
            r.asked,
            r.calls as f64 / r.wall.as_secs_f64(),
            pct(l, 0.5),
            pct(l, 0.9),
            pct(l, 0.99),
            l.last().unwrap().as_secs_f64() * 1000.0
        );
    }
    if let [(_, small), .., (_, large)] = runs.as_slice() {
        let (a, b) = (small.calls as f64 / small.wall.as_secs_f64(), large.calls as f64 / large.wall.as_secs_f64());
        println!();
        println!("throughput of the largest size against the smallest: {:.1}%", 100.0 * b / a);
    }
    Ok(())
}

async fn run(size: usize, registrations: usize, clients: usize, workload: u64) -> anyhow::Result<Run> {
    let server = std::env::var("CLOUDHIS_TEST_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    let database = format!("cloudhis_bench_reg_{size}");
    let admin = Database::connect(format!("{server}/postgres")).await?;
    let _ = admin.execute_unprepared(&format!("CREATE DATABASE {database}")).await;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-data");
    std::fs::create_dir_all(&dir)?;
    let env: Vec<(&str, String)> = vec![
        ("CLOUDHIS_DATA_DIR", dir.display().to_string()),
        ("CLOUDHIS_SECRET", "bench-secret-bench-secret-bench-secret-00".into()),
        ("CLOUDHIS_BIND", "127.0.0.1:0".into()),
        ("CLOUDHIS_DB_POOL_SIZE", "16".into()),
        ("DATABASE_URL", format!("{server}/{database}")),
        ("REDIS_URL", std::env::var("CLOUDHIS_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())),
        ("CLOUDHIS_REDIS_PREFIX", format!("bench-reg-{size}")),
        ("RUST_LOG", "warn".into()),
    ];
    let config = Config::from_lookup(|k| env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone()))?.config;
    let app = Application::build(config).await?;
    let state = app.state().clone();
    let port = app.port();
    tokio::spawn(app.run_until_stopped());
    let spec = cloudhis::onboarding::parse("demo", cloudhis::cli::DEMO_TENANT)?;
    let tenant = cloudhis::onboarding::apply(&state.db, &spec).await?.tenant_id;
    state.authz.changed(tenant).await;

    let (share, seed) = (0.1, 1_000_001);
    let mut load = "re-used".to_string();
    if cloudhis::patients::seed::persons_count(&state.db, tenant).await? == 0 {
        let t = Instant::now();
        cloudhis::patients::seed::seed(&state.db, &state.pii, tenant, size, share, seed).await?;
        load = format!("{:.0} s", t.elapsed().as_secs_f64());
        // Fresh statistics, as autovacuum would give a tenant that grew over months.
        Database::connect(format!("{server}/{database}")).await?.execute_unprepared("ANALYZE").await?;
    }
    let persons = cloudhis::patients::seed::persons_count(&state.db, tenant).await?;

    // The workload: the same unseen residents at every size, and records of this size's persons.
    let tx = state.db.begin(&cloudhis::platform::SystemScope { tenant }).await?;
    let institutions = cloudhis::tenancy::service::list_institutions(&tx).await?;
    tx.rollback().await?;
    let known = generate(&cloudhis::patients::seed::plan(&institutions, size, share, seed));
    let unseen = generate(&cloudhis::patients::seed::plan(&institutions, registrations + 200, 0.0, workload));
    let mut rng = StdRng::seed_from_u64(5);
    let bodies: Vec<Value> = (0..registrations + 100)
        .map(|i| {
            if rng.random_bool(0.2) {
                let dup = rng.random_bool(0.33);
                let r = loop {
                    let c = known.choose(&mut rng).unwrap();
                    if c.is_duplicate == dup {
                        break c;
                    }
                };
                r.registration_json()
            } else {
                unseen[i].registration_json()
            }
        })
        .collect();
    let bodies = Arc::new(bodies);

    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let login: Value = http
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"tenant": "demo-county", "username": "village.doctor", "password": "Demo@2026"}))
        .send()
        .await?
        .json()
        .await?;
    let token = login["token"].as_str().expect("login").to_string();

    // The first 100 warm the caches and the pool and are not counted.
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(registrations * 2)));
    let counts = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0), AtomicUsize::new(0)]);
    let next = Arc::new(AtomicUsize::new(0));
    let mut started = None;
    for phase in [0..100, 100..registrations + 100] {
        let measured = phase.start > 0;
        next.store(phase.start, Ordering::SeqCst);
        let t0 = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..clients {
            let (http, base, token, bodies, next, latencies, counts, end) = (
                http.clone(),
                base.clone(),
                token.clone(),
                bodies.clone(),
                next.clone(),
                latencies.clone(),
                counts.clone(),
                phase.end,
            );
            tasks.push(tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= end {
                        break;
                    }
                    let mut b = bodies[i].clone();
                    loop {
                        let t = Instant::now();
                        let r =
                            http.post(format!("{base}/api/v1/patients")).bearer_auth(&token).json(&b).send().await?;
                        let status = r.status().as_u16();
                        let v: Value = r.json().await?;
                        if measured {
                            latencies.lock().await.push(t.elapsed());
                        }
                        match status {
                            201 | 200 => {
                                counts[usize::from(status == 200)].fetch_add(usize::from(measured), Ordering::Relaxed);
                                break;
                            }
                            409 if b.get("link_to").is_none() => {
                                counts[2].fetch_add(usize::from(measured), Ordering::Relaxed);
                                b["link_to"] = v["details"]["candidates"][0]["person"]["id"].clone();
                            }
                            _ => anyhow::bail!("register answered {status}: {v}"),
                        }
                    }
                }
                anyhow::Ok(())
            }));
        }
        for t in tasks {
            t.await??;
        }
        if measured {
            started = Some(t0.elapsed());
        }
    }
    let latencies = std::mem::take(&mut *latencies.lock().await);
    Ok(Run {
        persons,
        load,
        calls: latencies.len(),
        created: counts[0].load(Ordering::Relaxed),
        linked: counts[1].load(Ordering::Relaxed),
        asked: counts[2].load(Ordering::Relaxed),
        wall: started.unwrap_or_default(),
        latencies,
    })
}
