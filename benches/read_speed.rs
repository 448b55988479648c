//! Reads at the speed of the database: `GET /api/v1/patients/{id}` as a village doctor at 16 and
//! 64 connections and a 20-row encounter list, side by side in one run with `/healthz` (the HTTP
//! stack's ceiling) and `pgbench -S` (the database's), and the statements one request sends.
//!
//! `cargo bench --bench read_speed -- [--seconds 15] [--patients 200] [--sslmode prefer|disable]`
//!
//! Needs `wrk` (`apt-get install wrk`) and `pgbench` on the PATH, PostgreSQL and Redis on their
//! local ports, and read access to the PostgreSQL server log (`--pg-log`, default
//! `/var/log/postgresql/postgresql-15-main.log`) for the statement counts. Uses fresh databases
//! `cloudhis_bench_reads` and `cloudhis_bench_pgbench`.

use std::process::Command;
use std::time::Duration;

use cloudhis::platform::config::Config;
use cloudhis::startup::Application;
use sea_orm::{ConnectionTrait, Database};
use serde_json::{Value, json};
use uuid::Uuid;

fn arg<T: std::str::FromStr>(name: &str, default: T) -> T {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// One wrk run: requests per second, p50 and p99 in ms.
struct Load {
    rps: f64,
    p50: f64,
    p99: f64,
}

fn ms(v: &str) -> f64 {
    let v = v.trim();
    let (num, unit) = v.split_at(v.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(v.len()));
    let n: f64 = num.parse().unwrap_or(f64::NAN);
    match unit {
        "us" => n / 1000.0,
        "s" => n * 1000.0,
        "m" => n * 60_000.0,
        _ => n,
    }
}

fn wrk(url: &str, token: Option<&str>, connections: u32, seconds: u64) -> anyhow::Result<Load> {
    let mut cmd = Command::new("wrk");
    cmd.args(["-t2", &format!("-c{connections}"), &format!("-d{seconds}s"), "--latency", "--timeout", "5s"]);
    if let Some(t) = token {
        cmd.args(["-H", &format!("Authorization: Bearer {t}")]);
    }
    let out = cmd.arg(url).output().map_err(|e| anyhow::anyhow!("wrk ({e}): apt-get install wrk"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    anyhow::ensure!(!text.contains("Non-2xx"), "wrk saw errors: {text}");
    let field = |prefix: &str| {
        text.lines().find_map(|l| l.trim().strip_prefix(prefix).map(|r| r.trim().to_string())).unwrap_or_default()
    };
    Ok(Load { rps: field("Requests/sec:").parse().unwrap_or(0.0), p50: ms(&field("50%")), p99: ms(&field("99%")) })
}

fn pgbench(server_args: &[String], seconds: u64) -> anyhow::Result<f64> {
    let run = |args: &[&str]| {
        Command::new("pgbench").args(server_args).args(args).output().map_err(|e| anyhow::anyhow!("pgbench: {e}"))
    };
    run(&["-i", "-q", "-s", "10", "cloudhis_bench_pgbench"])?;
    let out = run(&["-S", "-c16", "-j2", &format!("-T{seconds}"), "cloudhis_bench_pgbench"])?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text
        .lines()
        .find(|l| l.starts_with("tps"))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0))
}

/// The statements one request sends, counted in the server log between two markers.
async fn statements(
    owner: &sea_orm::DatabaseConnection,
    log: &str,
    request: impl std::future::Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<Vec<String>> {
    let marker = format!("bench-marker-{}", Uuid::new_v4().simple());
    // For the whole server, briefly: a reload reaches the pool's open connections too.
    owner.execute_unprepared("ALTER SYSTEM SET log_statement = 'all'").await?;
    owner.execute_unprepared("SELECT pg_reload_conf()").await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    owner.execute_unprepared(&format!("DO $$ BEGIN RAISE LOG '{marker}-start'; END $$")).await?;
    request.await?;
    owner.execute_unprepared(&format!("DO $$ BEGIN RAISE LOG '{marker}-end'; END $$")).await?;
    owner.execute_unprepared("ALTER SYSTEM RESET log_statement").await?;
    owner.execute_unprepared("SELECT pg_reload_conf()").await?;
    let text = std::fs::read_to_string(log)?;
    let start = text.find(&format!("{marker}-start")).unwrap_or(0);
    let end = text.find(&format!("{marker}-end")).unwrap_or(text.len());
    Ok(text[start..end]
        .lines()
        .filter(|l| (l.contains("LOG:  statement:") || l.contains("LOG:  execute")) && !l.contains("bench-marker"))
        .map(|l| l.split("LOG:  ").nth(1).unwrap_or(l).chars().take(90).collect())
        .collect())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let seconds: u64 = arg("--seconds", 15);
    let patients: usize = arg("--patients", 200);
    let pg_log: String = arg("--pg-log", "/var/log/postgresql/postgresql-15-main.log".to_string());
    let server = std::env::var("CLOUDHIS_TEST_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    let admin = Database::connect(format!("{server}/postgres")).await?;
    for db in ["cloudhis_bench_reads", "cloudhis_bench_pgbench"] {
        admin.execute_unprepared(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)")).await?;
        admin.execute_unprepared(&format!("CREATE DATABASE {db}")).await?;
    }
    // `prefer` is what a plain URL gets: TLS whenever the server offers it (Debian's does).
    let sslmode: String = arg("--sslmode", "prefer".to_string());
    let url = format!("{server}/cloudhis_bench_reads?sslmode={sslmode}");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-data");
    std::fs::create_dir_all(&dir)?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let env: Vec<(&str, String)> = vec![
        ("CLOUDHIS_DATA_DIR", dir.display().to_string()),
        ("CLOUDHIS_SECRET", "bench-secret-bench-secret-bench-secret-00".into()),
        ("CLOUDHIS_BIND", format!("127.0.0.1:{port}")),
        ("DATABASE_URL", url.clone()),
        ("REDIS_URL", std::env::var("CLOUDHIS_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())),
        ("CLOUDHIS_REDIS_PREFIX", format!("bench-reads-{}", Uuid::new_v4().simple())),
        ("CLOUDHIS_DB_POOL_SIZE", "32".into()),
        ("RUST_LOG", "warn".into()),
    ];
    let config = Config::from_lookup(|k| env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone()))?.config;
    let app = Application::build(config).await?;
    let state = app.state().clone();
    tokio::spawn(app.run_until_stopped());
    let spec = cloudhis::onboarding::parse("demo", cloudhis::cli::DEMO_TENANT)?;
    cloudhis::onboarding::apply(&state.db, &spec).await?;
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
    let mut person = String::new();
    let surnames: Vec<char> = "张王李赵刘陈杨黄周吴徐孙胡朱高林何郭马罗".chars().collect();
    let given: Vec<char> = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平".chars().collect();
    for i in 0..patients {
        let name = format!("{}{}{}", surnames[i % 20], given[(i / 20) % 20], given[(i * 7 + 3) % 20]);
        let body = json!({"name": name, "sex": if i % 2 == 0 { "male" } else { "female" },
            "birth_date": format!("19{:02}-0{}-1{}", 40 + i % 50, 1 + i % 9, i % 10), "phone": format!("139{:08}", i)});
        let r = http.post(format!("{base}/api/v1/patients")).bearer_auth(&token).json(&body).send().await?;
        if !r.status().is_success() {
            // A probable match with an earlier made-up resident: not needed here.
            continue;
        }
        let r: Value = r.json().await?;
        person = r["person"]["id"].as_str().ok_or_else(|| anyhow::anyhow!("register: {r}"))?.to_string();
        if i < 40 {
            let enc = http
                .post(format!("{base}/api/v1/encounters"))
                .bearer_auth(&token)
                .json(&json!({"person_id": person}))
                .send()
                .await?;
            anyhow::ensure!(enc.status().is_success(), "open an encounter: {}", enc.text().await?);
        }
    }
    let one = format!("{base}/api/v1/patients/{person}");
    let list = format!("{base}/api/v1/encounters?limit=20");
    let owner = Database::connect(url.clone()).await?;
    let counted = |target: String| {
        let (http, token) = (http.clone(), token.clone());
        async move {
            let r = http.get(target).bearer_auth(&token).send().await?;
            anyhow::ensure!(r.status() == 200, "{}", r.status());
            Ok(())
        }
    };
    let read_statements = statements(&owner, &pg_log, counted(one.clone())).await;
    let list_statements = statements(&owner, &pg_log, counted(list.clone())).await;

    // Warm up, then measure one after another, each with the machine to itself.
    wrk(&one, Some(&token), 16, 3)?;
    let healthz = wrk(&format!("{base}/healthz"), None, 16, seconds)?;
    let read16 = wrk(&one, Some(&token), 16, seconds)?;
    let read64 = wrk(&one, Some(&token), 64, seconds)?;
    let list16 = wrk(&list, Some(&token), 16, seconds)?;
    let pg_args: Vec<String> = vec!["-h".into(), "127.0.0.1".into(), "-U".into(), "postgres".into()];
    let pgbench_tps = pgbench(&pg_args, seconds)?;
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    println!("## Reads at the speed of the database ({cores} cores, {seconds} s per row, wrk -t2, sslmode={sslmode})");
    println!();
    println!("| request | connections | rps | p50 ms | p99 ms | % of /healthz |");
    println!("|---|---|---|---|---|---|");
    let row = |name: &str, c: u32, l: &Load| {
        println!(
            "| {name} | {c} | {:.0} | {:.2} | {:.2} | {:.1}% |",
            l.rps,
            l.p50,
            l.p99,
            100.0 * l.rps / healthz.rps.max(1.0)
        );
    };
    row("`/healthz`", 16, &healthz);
    row("`GET /api/v1/patients/{id}`", 16, &read16);
    row("`GET /api/v1/patients/{id}`", 64, &read64);
    row("`GET /api/v1/encounters?limit=20`", 16, &list16);
    println!("| `pgbench -S` (scale 10) | 16 | {pgbench_tps:.0} tps | | | |");
    println!();
    for (name, found) in
        [("GET /api/v1/patients/{id}", read_statements), ("GET /api/v1/encounters?limit=20", list_statements)]
    {
        match found {
            Ok(lines) => {
                println!("Statements of one `{name}` ({}):", lines.len());
                for l in lines {
                    println!("    {l}");
                }
            }
            Err(e) => println!("Statements of one `{name}`: not counted ({e})"),
        }
    }
    Ok(())
}
