//! The follow-up worklist of a village clinic with 5,000 enrolled patients, through the HTTP API
//! as the village doctor: p50/p99 of the institution's list, one doctor's list, a category page,
//! the largest page and the CSV export.
//!
//! `cargo bench --bench followup_worklist -- [--backend postgres|sqlite] [--enrolled N] [--others M] [--requests R]`
//!
//! PostgreSQL (default): a fresh database `cloudhis_bench_followups`, Redis for sessions.
//! SQLite: `target/bench-data/followups.db`. The clinic's N enrollments (and M at the other
//! clinics, so the table is not the clinic's alone) are bulk-inserted with their follow-ups,
//! spread so that about a fifth are overdue, a twentieth due this week and a tenth never seen.

use std::time::{Duration, Instant};

use chrono::{Duration as Days, NaiveDate, Utc};
use cloudhis::followups::domain::{Classification, Disease, EnrollmentStatus};
use cloudhis::followups::entity::{enrollment, followup_visit};
use cloudhis::platform::SystemScope;
use cloudhis::platform::config::Config;
use cloudhis::startup::Application;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sea_orm::{ConnectionTrait, Database, EntityTrait, Set};
use serde_json::{Value, json};
use uuid::Uuid;

fn arg<T: std::str::FromStr>(name: &str, default: T) -> T {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1000.0
}

#[allow(clippy::too_many_arguments)]
fn enrollment_row(
    rng: &mut StdRng,
    tenant: Uuid,
    person: Uuid,
    institution: Uuid,
    doctor: Uuid,
    as_of: NaiveDate,
    visits: &mut Vec<followup_visit::ActiveModel>,
) -> enrollment::ActiveModel {
    let now = Utc::now();
    let id = Uuid::now_v7();
    let enrolled_on = as_of - Days::days(rng.random_range(30..720));
    let seen = rng.random_range(0..100) >= 10;
    let n = if seen { rng.random_range(1..=6) } else { 0 };
    let mut day = enrolled_on;
    let mut last = None;
    let mut visits_n = 0;
    for _ in 0..n {
        day += Days::days(rng.random_range(20..100));
        if day >= as_of {
            break;
        }
        last = Some(day);
        visits_n += 1;
        let (s, d) = (rng.random_range(115..175), rng.random_range(70..105));
        visits.push(followup_visit::ActiveModel {
            tenant_id: Set(tenant),
            id: Set(Uuid::now_v7()),
            enrollment_id: Set(id),
            person_id: Set(person),
            institution_id: Set(institution),
            doctor_id: Set(doctor),
            visit_on: Set(day),
            systolic: Set(Some(s)),
            diastolic: Set(Some(d)),
            glucose: Set(None),
            symptoms: Set(json!([])),
            adherence: Set("regular".into()),
            smoking_per_day: Set(None),
            salt: Set(Some("moderate".into())),
            exercise_minutes_per_week: Set(Some(120)),
            classification: Set(if s < 140 && d < 90 {
                Classification::Controlled
            } else {
                Classification::Uncontrolled
            }),
            danger: Set(false),
            danger_reasons: Set(json!([])),
            next_on: Set(day + Days::days(90)),
            referral_id: Set(None),
            notes: Set(None),
            recorded_by: Set(doctor),
            recorded_at: Set(now),
        });
    }
    // Due dates around the day: ~20% overdue, ~5% this week, the rest later.
    let next_due = match rng.random_range(0..100) {
        0..20 => as_of - Days::days(rng.random_range(1..120)),
        20..25 => as_of + Days::days(rng.random_range(0..4)),
        _ => as_of + Days::days(rng.random_range(7..90)),
    };
    enrollment::ActiveModel {
        tenant_id: Set(tenant),
        id: Set(id),
        person_id: Set(person),
        disease: Set(if rng.random_range(0..100) < 75 { Disease::Hypertension } else { Disease::Diabetes }),
        diagnosis_code: Set(None),
        diagnosed_on: Set(enrolled_on - Days::days(30)),
        institution_id: Set(institution),
        doctor_id: Set(doctor),
        enrolled_on: Set(enrolled_on),
        enrolled_by: Set(doctor),
        interval_days: Set(90),
        next_due: Set(next_due),
        visits: Set(visits_n),
        last_visit_on: Set(last),
        last_classification: Set(last.map(|_| Classification::Controlled)),
        uncontrolled_streak: Set(0),
        flag: Set(None),
        flagged_at: Set(None),
        referral_id: Set(None),
        status: Set(EnrollmentStatus::Active),
        closed_on: Set(None),
        close_reason: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let backend: String = arg("--backend", "postgres".to_string());
    let enrolled: usize = arg("--enrolled", 5_000);
    let others: usize = arg("--others", 20_000);
    let requests: usize = arg("--requests", 500);
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-data");
    std::fs::create_dir_all(&dir)?;
    let mut env: Vec<(&str, String)> = vec![
        ("CLOUDHIS_DATA_DIR", dir.display().to_string()),
        ("CLOUDHIS_SECRET", "bench-secret-bench-secret-bench-secret-00".into()),
        ("CLOUDHIS_BIND", "127.0.0.1:0".into()),
        ("CLOUDHIS_DB_POOL_SIZE", "8".into()),
        ("RUST_LOG", "warn".into()),
    ];
    let url = if backend == "postgres" {
        let server =
            std::env::var("CLOUDHIS_TEST_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
        let admin = Database::connect(format!("{server}/postgres")).await?;
        admin.execute_unprepared("DROP DATABASE IF EXISTS cloudhis_bench_followups WITH (FORCE)").await?;
        admin.execute_unprepared("CREATE DATABASE cloudhis_bench_followups").await?;
        env.push((
            "REDIS_URL",
            std::env::var("CLOUDHIS_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into()),
        ));
        env.push(("CLOUDHIS_REDIS_PREFIX", format!("bench-followups-{}", Uuid::new_v4().simple())));
        format!("{server}/cloudhis_bench_followups")
    } else {
        let file = dir.join("followups.db");
        for ext in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{ext}", file.display()));
        }
        format!("sqlite://{}?mode=rwc", file.display())
    };
    env.push(("DATABASE_URL", url.clone()));
    let config = Config::from_lookup(|k| env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone()))?.config;
    let app = Application::build(config).await?;
    let state = app.state().clone();
    let port = app.port();
    tokio::spawn(app.run_until_stopped());
    let spec = cloudhis::onboarding::parse("demo", cloudhis::cli::DEMO_TENANT)?;
    let tenant = cloudhis::onboarding::apply(&state.db, &spec).await?.tenant_id;
    state.authz.changed(tenant).await;

    // Residents of the county, then enrollments: `enrolled` at 东关村卫生室, `others` elsewhere.
    let t = Instant::now();
    cloudhis::patients::seed::seed(&state.db, &state.pii, tenant, enrolled + others, 0.0, 77).await?;
    let tx = state.db.begin(&SystemScope { tenant }).await?;
    let institutions = cloudhis::tenancy::service::list_institutions(&tx).await?;
    tx.rollback().await?;
    let clinic = institutions.iter().find(|i| i.code == "v-dongguan").expect("the demo clinic").id;
    let elsewhere: Vec<Uuid> = institutions
        .iter()
        .filter(|i| i.code != "v-dongguan" && i.kind.as_str() != "health_bureau")
        .map(|i| i.id)
        .collect();
    let owner = Database::connect(&url).await?;
    let persons: Vec<Uuid> = owner
        .query_all_raw(sea_orm::Statement::from_string(
            owner.get_database_backend(),
            "SELECT id FROM persons ORDER BY id",
        ))
        .await?
        .iter()
        .map(|r| r.try_get::<Uuid>("", "id"))
        .collect::<Result<_, _>>()?;
    anyhow::ensure!(persons.len() >= enrolled + others, "seeded {} persons", persons.len());
    let login = |username: &'static str| {
        let base = format!("http://127.0.0.1:{port}/api/v1");
        async move {
            let r: Value = reqwest::Client::new()
                .post(format!("{base}/auth/login"))
                .json(&json!({"tenant": "demo-county", "username": username, "password": "Demo@2026"}))
                .send()
                .await?
                .json()
                .await?;
            anyhow::Ok((
                r["token"].as_str().expect("login").to_string(),
                r["user"]["id"].as_str().unwrap().parse::<Uuid>()?,
            ))
        }
    };
    let (token, doctor) = login("village.doctor").await?;
    let as_of = cloudhis::followups::service::today(&state);
    let mut rng = StdRng::seed_from_u64(2026);
    let (mut rows, mut visits) = (Vec::new(), Vec::new());
    for (i, person) in persons.iter().take(enrolled + others).enumerate() {
        let institution = if i < enrolled { clinic } else { elsewhere[i % elsewhere.len()] };
        rows.push(enrollment_row(&mut rng, tenant, *person, institution, doctor, as_of, &mut visits));
        if rows.len() == 1000 {
            enrollment::Entity::insert_many(std::mem::take(&mut rows)).exec(&owner).await?;
        }
        if visits.len() >= 2000 {
            followup_visit::Entity::insert_many(std::mem::take(&mut visits)).exec(&owner).await?;
        }
    }
    if !rows.is_empty() {
        enrollment::Entity::insert_many(rows).exec(&owner).await?;
    }
    if !visits.is_empty() {
        followup_visit::Entity::insert_many(visits).exec(&owner).await?;
    }
    if backend == "postgres" {
        owner.execute_unprepared("ANALYZE chronic_enrollments; ANALYZE followup_visits; ANALYZE persons").await?;
    }
    let load = t.elapsed();

    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}/api/v1/followups");
    let cases = [
        ("institution worklist, first page (100)", format!("{base}/worklist")),
        ("one doctor's worklist, first page (100)", format!("{base}/worklist?doctor_id={doctor}")),
        ("overdue only, third page (100)", format!("{base}/worklist?category=overdue&offset=200")),
        ("institution worklist, 1,000 rows", format!("{base}/worklist?limit=1000")),
        ("overdue only, every row (up to 1,000)", format!("{base}/worklist?category=overdue&limit=1000")),
        ("CSV export, every listed patient", format!("{base}/worklist.csv")),
    ];
    let mut out = Vec::new();
    let mut summary = Value::Null;
    for (name, url) in &cases {
        // Warm up, then time.
        for _ in 0..5 {
            http.get(url).bearer_auth(&token).send().await?.error_for_status()?.bytes().await?;
        }
        let n = if name.starts_with("CSV") || name.contains("1,000") { requests / 5 } else { requests };
        let mut times = Vec::with_capacity(n);
        let mut bytes = 0;
        for _ in 0..n {
            let t = Instant::now();
            let body = http.get(url).bearer_auth(&token).send().await?.error_for_status()?.bytes().await?;
            times.push(t.elapsed());
            bytes = body.len();
            if summary.is_null() {
                summary = serde_json::from_slice(&body)?;
            }
        }
        times.sort();
        out.push((name, n, pct(&times, 0.5), pct(&times, 0.99), times[n - 1].as_secs_f64() * 1000.0, bytes));
    }

    println!("## Follow-up worklist ({backend})");
    println!();
    println!(
        "{} enrollments at the clinic, {} elsewhere, {} residents, loaded in {:.0} s; on {as_of}: {} overdue, {} due this week, {} never followed up",
        enrolled,
        others,
        persons.len(),
        load.as_secs_f64(),
        summary["counts"]["overdue"],
        summary["counts"]["due_this_week"],
        summary["counts"]["never_followed_up"]
    );
    println!();
    println!("| request | n | p50 | p99 | max | response |");
    println!("|---|---|---|---|---|---|");
    for (name, n, p50, p99, max, bytes) in out {
        println!("| {name} | {n} | {p50:.1} ms | {p99:.1} ms | {max:.1} ms | {} KiB |", bytes / 1024);
    }
    Ok(())
}
