//! Event propagation through RabbitMQ: from an event's write (just before its transaction
//! commits) to the consumer's commit of its effect, at a steady rate, and the drain time of a
//! burst.
//!
//! `cargo bench --bench event_latency -- [--rate 500] [--seconds 30] [--burst 10000]`
//!
//! Uses a fresh PostgreSQL database `cloudhis_bench_events`, Redis and RabbitMQ on their local
//! ports (exchange and queues prefixed `bench-events`). The consumer is the referral
//! notifications consumer (two rows per event, idempotency row in the same transaction).

use std::time::{Duration, Instant};

use cloudhis::platform::SystemScope;
use cloudhis::platform::config::Config;
use cloudhis::referrals::domain::{Direction, Status, Urgency};
use cloudhis::referrals::events::{ReferralChange, Requested};
use cloudhis::startup::Application;
use sea_orm::{ConnectionTrait, Database, Statement};
use uuid::Uuid;

fn arg<T: std::str::FromStr>(name: &str, default: T) -> T {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

async fn scalar(db: &sea_orm::DatabaseConnection, sql: &str) -> anyhow::Result<i64> {
    let row = db.query_one_raw(Statement::from_string(sea_orm::DbBackend::Postgres, sql)).await?.expect("a row");
    Ok(row.try_get_by_index::<i64>(0)?)
}

async fn latencies(db: &sea_orm::DatabaseConnection, since: &str) -> anyhow::Result<Vec<f64>> {
    let rows = db
        .query_all_raw(Statement::from_string(
            sea_orm::DbBackend::Postgres,
            format!(
                "SELECT (EXTRACT(EPOCH FROM (p.processed_at - o.occurred_at)) * 1000)::float8 AS ms
                   FROM processed_events p JOIN outbox o ON o.id = p.event_id
                  WHERE o.occurred_at >= '{since}' AND p.consumer = 'referral_notifications'"
            ),
        ))
        .await?;
    let mut v: Vec<f64> = rows.iter().map(|r| r.try_get::<f64>("", "ms").unwrap()).collect();
    v.sort_by(f64::total_cmp);
    Ok(v)
}

fn pct(v: &[f64], p: f64) -> f64 {
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let rate: u64 = arg("--rate", 500);
    let seconds: u64 = arg("--seconds", 30);
    let burst: u64 = arg("--burst", 10_000);
    let server = std::env::var("CLOUDHIS_TEST_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    let admin = Database::connect(format!("{server}/postgres")).await?;
    admin.execute_unprepared("DROP DATABASE IF EXISTS cloudhis_bench_events WITH (FORCE)").await?;
    admin.execute_unprepared("CREATE DATABASE cloudhis_bench_events").await?;
    let url = format!("{server}/cloudhis_bench_events");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-data");
    std::fs::create_dir_all(&dir)?;
    let env: Vec<(&str, String)> = vec![
        ("CLOUDHIS_DATA_DIR", dir.display().to_string()),
        ("CLOUDHIS_SECRET", "bench-secret-bench-secret-bench-secret-00".into()),
        ("CLOUDHIS_BIND", "127.0.0.1:0".into()),
        ("DATABASE_URL", url.clone()),
        ("REDIS_URL", std::env::var("CLOUDHIS_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())),
        (
            "AMQP_URL",
            std::env::var("CLOUDHIS_TEST_AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into()),
        ),
        ("CLOUDHIS_REDIS_PREFIX", format!("bench-events-{}", Uuid::new_v4().simple())),
        ("CLOUDHIS_AMQP_PREFIX", format!("bench-events-{}", Uuid::new_v4().simple())),
        ("CLOUDHIS_DB_POOL_SIZE", "16".into()),
    ];
    let config = Config::from_lookup(|k| env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone()))?.config;
    let state_topology = cloudhis::platform::consumers::Topology::of(
        &config.amqp_prefix,
        &cloudhis::startup::handlers(),
        config.retry_delays.clone(),
    );
    let amqp_url = config.amqp_url.clone().expect("the benchmark runs on RabbitMQ");
    let app = Application::build(config).await?;
    let state = app.state().clone();
    tokio::spawn(app.run_until_stopped());
    let spec = cloudhis::onboarding::parse("demo", cloudhis::cli::DEMO_TENANT)?;
    let tenant = cloudhis::onboarding::apply(&state.db, &spec).await?.tenant_id;
    let tx = state.db.begin(&SystemScope { tenant }).await?;
    let inst = cloudhis::tenancy::service::institution_ids(&tx).await?;
    tx.rollback().await?;
    let owner = Database::connect(url).await?;
    // The publisher declared every consumer's queue when it connected: nothing to wait for.

    let emit_one = move |state: cloudhis::platform::state::AppState, from: Uuid, to: Uuid| async move {
        let mut tx = state.db.begin(&SystemScope { tenant }).await?;
        let id = Uuid::now_v7();
        let now = chrono::Utc::now();
        let change = ReferralChange {
            first_visit_revenue_fen: None,
            referral: id,
            person: Uuid::now_v7(),
            direction: Direction::Up,
            urgency: Urgency::Routine,
            from_institution: from,
            to_institution: Some(to),
            external: false,
            parent: None,
            status: Status::Requested,
            previous_status: None,
            created_at: now,
            requested_at: Some(now),
            sla_due_at: None,
            decided_at: None,
            arrived_at: None,
            completed_at: None,
            summary: false,
        };
        tx.emit(None, id, &Requested(change)).await?;
        tx.commit().await?;
        anyhow::Ok(())
    };

    // Steady rate: producers pace themselves on a shared clock.
    let start_at = chrono::Utc::now().to_rfc3339();
    let total = rate * seconds;
    let producers = 8u64;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for p in 0..producers {
        let state = state.clone();
        let (from, to) = (inst[0], inst[1]);
        tasks.push(tokio::spawn(async move {
            let every = Duration::from_secs_f64(producers as f64 / rate as f64);
            let mut tick = tokio::time::interval_at(
                tokio::time::Instant::now() + every.mul_f64(p as f64 / producers as f64),
                every,
            );
            for _ in 0..total / producers {
                tick.tick().await;
                emit_one(state.clone(), from, to).await?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let produced_in = started.elapsed();
    let deadline = Instant::now() + Duration::from_secs(300);
    while scalar(&owner, "SELECT count(*) FROM processed_events WHERE consumer = 'referral_notifications'").await?
        < total as i64
    {
        anyhow::ensure!(Instant::now() < deadline, "the consumer did not keep up");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let steady = latencies(&owner, &start_at).await?;

    // Burst: as fast as the producers can write, then time until the last effect.
    let burst_at = chrono::Utc::now().to_rfc3339();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..producers {
        let state = state.clone();
        let (from, to) = (inst[0], inst[1]);
        tasks.push(tokio::spawn(async move {
            for _ in 0..burst / producers {
                emit_one(state.clone(), from, to).await?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let written_in = started.elapsed();
    let target = (total + burst / producers * producers) as i64;
    while scalar(&owner, "SELECT count(*) FROM processed_events WHERE consumer = 'referral_notifications'").await?
        < target
    {
        anyhow::ensure!(started.elapsed() < Duration::from_secs(600), "the burst did not drain");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let drained_in = started.elapsed();
    let burst_lat = latencies(&owner, &burst_at).await?;
    // Each event notifies two institutions; anything beyond two rows per event would be a double.
    let doubled = scalar(&owner, "SELECT count(*) - 2 * count(DISTINCT event_id) FROM referral_notifications").await?;
    let applied =
        scalar(&owner, "SELECT count(*) FROM processed_events WHERE consumer = 'referral_notifications'").await?;

    println!("## Event propagation through RabbitMQ");
    println!();
    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| steady load | {total} events at {rate}/s target, written in {:.1} s ({:.0}/s achieved) |",
        produced_in.as_secs_f64(),
        total as f64 / produced_in.as_secs_f64()
    );
    println!(
        "| commit → consumer applied, p50 / p90 / p99 / max | {:.1} / {:.1} / {:.1} / {:.1} ms |",
        pct(&steady, 0.5),
        pct(&steady, 0.9),
        pct(&steady, 0.99),
        steady.last().unwrap()
    );
    println!(
        "| burst | {} events written in {:.1} s ({:.0}/s), all applied after {:.1} s ({:.0}/s end to end) |",
        burst,
        written_in.as_secs_f64(),
        burst as f64 / written_in.as_secs_f64(),
        drained_in.as_secs_f64(),
        burst as f64 / drained_in.as_secs_f64()
    );
    println!("| burst latency p50 / p99 | {:.0} / {:.0} ms |", pct(&burst_lat, 0.5), pct(&burst_lat, 0.99));
    println!("| events applied / notification rows beyond two per event | {applied} / {doubled} |");
    // Leave the broker as it was: a benchmark's queues left behind slow the next run.
    let topology = &state_topology;
    let conn = lapin::Connection::connect(&amqp_url, lapin::ConnectionProperties::default()).await?;
    let ch = conn.create_channel().await?;
    for q in topology.queues() {
        let _ = ch.queue_delete(q.as_str().into(), lapin::options::QueueDeleteOptions::default()).await;
    }
    Ok(())
}
