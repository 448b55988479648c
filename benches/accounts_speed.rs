//! Consolidated accounts: how fast the ledger consumer posts events, and how long the consolidated
//! statement (with eliminations) takes over a million journal lines.
//!
//! `cargo bench --bench accounts_speed -- --backend postgres|sqlite [--events N] [--workers W] [--entries E | --lines L]`
//!
//! 1. Posting: N synthetic billing and pharmacy events (charges, payments, refunds, dispensing,
//!    transfers between members) go through the real consumer path (`consumers::apply` with the
//!    `ledger` handler: idempotency row, chart, entries and lines in one transaction) from W
//!    concurrent workers, then once more to show a second delivery posts nothing.
//! 2. Statements: journal entries (default 1,000,000; or L lines with `--lines`) made by the same
//!    posting rules from generated events, spread over
//!    the twelve months of 2025 and bulk-inserted) are added, and the consolidated statement, a
//!    trial balance and the income statements are fetched over HTTP as the finance officer.
//!
//! PostgreSQL: a fresh database `cloudhis_bench_accounts`. SQLite: `target/bench-data/accounts.db`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use cloudhis::accounts::domain::post;
use cloudhis::accounts::entity::{journal_entry, journal_line};
use cloudhis::platform::SystemScope;
use cloudhis::platform::config::Config;
use cloudhis::platform::consumers::{self, Applied};
use cloudhis::platform::events::Envelope;
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

/// One synthetic business event of a member institution, as the billing and pharmacy contexts
/// publish them.
fn event(rng: &mut StdRng, tenant: Uuid, members: &[Uuid], at: chrono::DateTime<Utc>) -> Envelope {
    let inst = members[rng.random_range(0..members.len())];
    let person = Uuid::now_v7();
    let (event_type, payload) = match rng.random_range(0..100) {
        0..40 => {
            let charges: Vec<Value> = (0..rng.random_range(1..4))
                .map(|i| {
                    let amount: i64 = rng.random_range(500..20_000);
                    let insured = amount * rng.random_range(0..80) / 100;
                    json!({"charge": Uuid::now_v7(), "kind": if i == 0 { "fee" } else { "drug" },
                           "amount_fen": amount, "insurance_fen": insured, "self_pay_fen": amount - insured})
                })
                .collect();
            (
                "billing.charge_posted",
                json!({"institution": inst, "bill": Uuid::now_v7(), "person": person, "charges": charges}),
            )
        }
        40..75 => {
            let method = ["cash", "card", "mobile"][rng.random_range(0..3)];
            (
                "billing.payment_received",
                json!({"institution": inst, "payment": Uuid::now_v7(), "person": person,
                   "method": method, "amount_fen": rng.random_range(100..10_000)}),
            )
        }
        75..78 => (
            "billing.refund_issued",
            json!({"institution": inst, "refund": Uuid::now_v7(), "person": person,
                   "method": "cash", "amount_fen": rng.random_range(100..2_000)}),
        ),
        78..96 => (
            "pharmacy.dispensed",
            json!({"institution": inst, "prescription": Uuid::now_v7(), "person": person,
                   "value_fen": rng.random_range(100..8_000)}),
        ),
        _ => {
            let to = members[rng.random_range(0..members.len())];
            let to = if to == members[0] { members[1] } else { to };
            (
                "pharmacy.transferred",
                json!({"transfer": Uuid::now_v7(), "from_institution": members[0], "to_institution": to,
                       "value_fen": rng.random_range(1_000..500_000)}),
            )
        }
    };
    Envelope {
        id: Uuid::now_v7(),
        event_type: event_type.into(),
        version: 1,
        tenant,
        occurred_at: at,
        actor: None,
        aggregate: Uuid::now_v7(),
        payload,
    }
}

async fn get(http: &reqwest::Client, url: &str, token: &str) -> anyhow::Result<(Duration, Value)> {
    let t = Instant::now();
    let r = http.get(url).bearer_auth(token).send().await?;
    let status = r.status();
    let body: Value = r.json().await?;
    let d = t.elapsed();
    anyhow::ensure!(status.is_success(), "{url} answered {status}: {body}");
    Ok((d, body))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let backend: String = arg("--backend", "sqlite".to_string());
    let events: usize = arg("--events", 20_000);
    let workers: usize = arg("--workers", 4);
    // The journal's size for the statements: E entries (the default, a million), or L lines.
    let target_lines: usize = arg("--lines", usize::MAX);
    let target_entries: usize = arg("--entries", if target_lines == usize::MAX { 1_000_000 } else { usize::MAX });
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-data");
    std::fs::create_dir_all(&dir)?;
    let mut env: Vec<(&str, String)> = vec![
        ("CLOUDHIS_DATA_DIR", dir.display().to_string()),
        ("CLOUDHIS_SECRET", "bench-secret-bench-secret-bench-secret-00".into()),
        ("CLOUDHIS_BIND", "127.0.0.1:0".into()),
        ("CLOUDHIS_DB_POOL_SIZE", "8".into()),
        ("RUST_LOG", "warn".into()),
    ];
    let url = match backend.as_str() {
        "postgres" => {
            let server =
                std::env::var("CLOUDHIS_TEST_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
            let admin = Database::connect(format!("{server}/postgres")).await?;
            admin.execute_unprepared("DROP DATABASE IF EXISTS cloudhis_bench_accounts WITH (FORCE)").await?;
            admin.execute_unprepared("CREATE DATABASE cloudhis_bench_accounts").await?;
            format!("{server}/cloudhis_bench_accounts")
        }
        _ => {
            let file = dir.join("accounts.db");
            for ext in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{ext}", file.display()));
            }
            format!("sqlite://{}?mode=rwc", file.display())
        }
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
    let tx = state.db.begin(&SystemScope { tenant }).await?;
    let institutions = cloudhis::tenancy::service::list_institutions(&tx).await?;
    let chart = cloudhis::accounts::service::chart(&tx).await?;
    tx.rollback().await?;
    // Care providers only (the bureau books nothing); the county hospital first, as the sender of
    // transfers.
    let mut members: Vec<(Uuid, &str)> =
        institutions.iter().filter(|i| i.kind.as_str() != "health_bureau").map(|i| (i.id, i.kind.as_str())).collect();
    members.sort_by_key(|(_, k)| *k != "county_hospital");
    let members: Vec<Uuid> = members.into_iter().map(|(id, _)| id).collect();
    anyhow::ensure!(members.len() >= 2, "the demo tenant has members");

    // 1. Posting throughput through the consumer path.
    let mut rng = StdRng::seed_from_u64(2026);
    let now = Utc::now();
    let batch: Arc<Vec<Envelope>> = Arc::new((0..events).map(|_| event(&mut rng, tenant, &members, now)).collect());
    let mut runs = Vec::new();
    for pass in ["first delivery", "second delivery"] {
        let next = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..workers {
            let (db, batch, next) = (state.db.clone(), batch.clone(), next.clone());
            tasks.push(tokio::spawn(async move {
                let ledger = cloudhis::accounts::service::Ledger;
                let mut posted = 0usize;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(e) = batch.get(i) else { break };
                    if consumers::apply(&db, &ledger, e).await? == Applied::Now {
                        posted += 1;
                    }
                }
                anyhow::Ok(posted)
            }));
        }
        let mut posted = 0;
        for t in tasks {
            posted += t.await??;
        }
        runs.push((pass, started.elapsed(), posted));
    }
    let owner = Database::connect(&url).await?;
    let count = |sql: &'static str| {
        let owner = &owner;
        async move {
            let row = owner
                .query_one_raw(sea_orm::Statement::from_string(owner.get_database_backend(), sql))
                .await?
                .expect("a row");
            anyhow::Ok(row.try_get_by_index::<i64>(0)?)
        }
    };
    let entries_posted = count("SELECT count(*) FROM journal_entries").await?;
    let lines_posted = count("SELECT count(*) FROM journal_lines").await?;
    let imbalance = count("SELECT CAST(COALESCE(SUM(debit_fen - credit_fen), 0) AS BIGINT) FROM journal_lines").await?;
    anyhow::ensure!(imbalance == 0, "the ledger does not balance: {imbalance}");

    // 2. A year of lines, bulk-loaded, then the statements.
    let t = Instant::now();
    let mut loaded = lines_posted as usize;
    let mut loaded_entries = entries_posted as usize;
    let (mut entries, mut lines) = (Vec::new(), Vec::new());
    while loaded < target_lines && loaded_entries < target_entries {
        let month = rng.random_range(1..=12);
        let at = Utc.with_ymd_and_hms(2025, month, rng.random_range(1..=28), 3, 0, 0).single().expect("a date");
        let period = format!("2025-{month:02}");
        let e = event(&mut rng, tenant, &members, at);
        for d in post(&chart, &e)? {
            let entry = Uuid::now_v7();
            loaded_entries += 1;
            entries.push(journal_entry::ActiveModel {
                tenant_id: Set(tenant),
                id: Set(entry),
                institution_id: Set(d.institution),
                period: Set(period.clone()),
                event_id: Set(e.id),
                event_type: Set(e.event_type.clone()),
                source_id: Set(d.source),
                person_id: Set(d.person),
                counterparty_id: Set(d.counterparty),
                description: Set(d.description.into()),
                occurred_at: Set(at),
                posted_at: Set(at),
                late_from_period: Set(None),
            });
            for l in d.lines {
                loaded += 1;
                lines.push(journal_line::ActiveModel {
                    tenant_id: Set(tenant),
                    id: Set(Uuid::now_v7()),
                    entry_id: Set(entry),
                    institution_id: Set(d.institution),
                    period: Set(period.clone()),
                    account_code: Set(l.account),
                    debit_fen: Set(l.debit),
                    credit_fen: Set(l.credit),
                    counterparty_id: Set(d.counterparty),
                    person_id: Set(d.person),
                    source_id: Set(l.source.or(d.source)),
                });
            }
        }
        if lines.len() >= 2000 || loaded >= target_lines || loaded_entries >= target_entries {
            let txn = sea_orm::TransactionTrait::begin(&owner).await?;
            if !entries.is_empty() {
                journal_entry::Entity::insert_many(std::mem::take(&mut entries)).exec(&txn).await?;
            }
            if !lines.is_empty() {
                journal_line::Entity::insert_many(std::mem::take(&mut lines)).exec(&txn).await?;
            }
            txn.commit().await?;
        }
    }
    if backend == "postgres" {
        owner.execute_unprepared("ANALYZE journal_lines").await?;
    }
    let load_time = t.elapsed();
    let total_lines = count("SELECT count(*) FROM journal_lines").await?;
    let total_entries = count("SELECT count(*) FROM journal_entries").await?;

    let base = format!("http://127.0.0.1:{port}/api/v1");
    let http = reqwest::Client::new();
    let login: Value = http
        .post(format!("{base}/auth/login"))
        .json(&json!({"tenant": "demo-county", "username": "finance", "password": "Demo@2026"}))
        .send()
        .await?
        .json()
        .await?;
    let token = login["token"].as_str().expect("the finance officer logs in").to_string();
    let year = "from=2025-01&to=2025-12";
    let mut timings: Vec<(&str, Vec<Duration>)> = Vec::new();
    let mut consolidated = Value::Null;
    for (name, path) in [
        ("consolidated statement, 2025", format!("{base}/accounts/consolidated?{year}")),
        (
            "trial balance, county hospital, 2025",
            format!("{base}/accounts/trial-balance?{year}&institution_id={}", members[0]),
        ),
        ("income statements, every institution, 2025", format!("{base}/accounts/income-statements?{year}")),
        ("consolidated statement, one month", format!("{base}/accounts/consolidated?from=2025-06&to=2025-06")),
    ] {
        let mut runs = Vec::new();
        for _ in 0..5 {
            let (d, body) = get(&http, &path, &token).await?;
            if name.starts_with("consolidated statement, 2025") {
                consolidated = body;
            }
            runs.push(d);
        }
        runs.sort();
        timings.push((name, runs));
    }
    let eliminated: i64 = consolidated["lines"]
        .as_array()
        .map(|ls| ls.iter().map(|l| l["elimination_fen"].as_i64().unwrap_or(0).abs()).sum())
        .unwrap_or(0);

    println!("## Consolidated accounts ({backend})");
    println!();
    println!("| measure | value |");
    println!("|---|---|");
    for (pass, d, posted) in &runs {
        println!(
            "| posting, {pass}: {events} events, {workers} workers | {:.1} s, {:.0} events/s, {posted} posted |",
            d.as_secs_f64(),
            events as f64 / d.as_secs_f64()
        );
    }
    println!(
        "| journal after posting | {entries_posted} entries, {lines_posted} lines, debits − credits = {imbalance} |"
    );
    println!(
        "| bulk load of a year | {} lines in {} entries in {:.0} s |",
        total_lines,
        total_entries,
        load_time.as_secs_f64()
    );
    for (name, runs) in &timings {
        println!(
            "| {name}: min / median / max of 5 | {:.0} / {:.0} / {:.0} ms |",
            ms(runs[0]),
            ms(runs[2]),
            ms(runs[4])
        );
    }
    println!(
        "| consolidated 2025: revenue / expense / surplus / eliminated | {} / {} / {} / {} fen |",
        consolidated["revenue_fen"], consolidated["expense_fen"], consolidated["surplus_fen"], eliminated
    );
    Ok(())
}
