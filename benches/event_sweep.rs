//! The anti-entropy sweep's cost: one pass over every consumer when the outbox holds `--rows`
//! published events (default a million, all within the sweep's window) and every consumer has
//! applied them, so the pass finds nothing and the whole cost is the anti-join it runs; then
//! again with 1,000 of them missing from one consumer, which it applies.
//!
//! `cargo bench --bench event_sweep -- [--rows 1000000]`
//!
//! Uses a fresh PostgreSQL database `cloudhis_bench_sweep` (no broker: the sweep applies events
//! itself, through the consumers' own idempotent `apply`).

use std::time::{Duration, Instant};

use cloudhis::platform::config::Config;
use cloudhis::startup::Application;
use sea_orm::{ConnectionTrait, Database};
use uuid::Uuid;

fn arg<T: std::str::FromStr>(name: &str, default: T) -> T {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let rows: u64 = arg("--rows", 1_000_000);
    let server = std::env::var("CLOUDHIS_TEST_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    let admin = Database::connect(format!("{server}/postgres")).await?;
    admin.execute_unprepared("DROP DATABASE IF EXISTS cloudhis_bench_sweep WITH (FORCE)").await?;
    admin.execute_unprepared("CREATE DATABASE cloudhis_bench_sweep").await?;
    let url = format!("{server}/cloudhis_bench_sweep");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-data");
    std::fs::create_dir_all(&dir)?;
    let env: Vec<(&str, String)> = vec![
        ("CLOUDHIS_DATA_DIR", dir.display().to_string()),
        ("CLOUDHIS_SECRET", "bench-secret-bench-secret-bench-secret-00".into()),
        ("CLOUDHIS_BIND", "127.0.0.1:0".into()),
        ("DATABASE_URL", url.clone()),
        ("CLOUDHIS_WORKERS", "false".into()),
    ];
    let config = Config::from_lookup(|k| env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone()))?.config;
    let app = Application::build(config).await?;
    let state = app.state().clone();
    let spec = cloudhis::onboarding::parse("demo", cloudhis::cli::DEMO_TENANT)?;
    let tenant = cloudhis::onboarding::apply(&state.db, &spec).await?.tenant_id;
    let owner = Database::connect(url).await?;

    // A million referral events, published an hour ago, each applied by both of its consumers.
    let started = Instant::now();
    owner
        .execute_unprepared(&format!(
            "INSERT INTO outbox (tenant_id, id, event_type, version, aggregate_id, occurred_at, payload, published_at, attempts)
             SELECT '{tenant}', gen_random_uuid(), 'referrals.requested', 1, gen_random_uuid(),
                    now() - interval '1 hour', '{{}}'::jsonb, now() - interval '1 hour', 0
               FROM generate_series(1, {rows});
             INSERT INTO processed_events (tenant_id, consumer, event_id, processed_at)
             SELECT tenant_id, c.consumer, id, now() FROM outbox,
                    (VALUES ('referral_notifications'), ('statistics')) AS c(consumer);
             ANALYZE outbox; ANALYZE processed_events;"
        ))
        .await?;
    println!("loaded {rows} events and {} processed rows in {:.1} s", 2 * rows, started.elapsed().as_secs_f64());

    let handlers = cloudhis::startup::handlers();
    let (grace, window) = (Duration::from_secs(60), Duration::from_secs(48 * 3600));
    let mut times = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let r = cloudhis::platform::delivery::sweep(&state.db, &handlers, grace, window).await?;
        assert_eq!(r.missing, 0);
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    println!("sweep over {rows} events, nothing missing: {:.0} / {:.0} / {:.0} ms", times[0], times[1], times[2]);

    // 1,000 of them never reached the statistics consumer: found and applied. (Their empty
    // payloads do not decode, so they become dead letters: the sweep's finding is what counts.)
    owner
        .execute_unprepared(
            "DELETE FROM processed_events WHERE consumer = 'statistics'
               AND event_id IN (SELECT event_id FROM processed_events WHERE consumer = 'statistics' LIMIT 1000)",
        )
        .await?;
    let t = Instant::now();
    let r = cloudhis::platform::delivery::sweep(&state.db, &handlers, grace, window).await?;
    println!(
        "sweep with 1000 missing: found {} in {:.0} ms (each then tried once; unreadable ones become dead letters)",
        r.missing,
        t.elapsed().as_secs_f64() * 1000.0
    );
    let _ = Uuid::nil();
    Ok(())
}
