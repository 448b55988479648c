//! Bulk import speed and quality (issue 22): synthetic residents of one county (planted
//! duplicates with typos, family members sharing phones and addresses, twins, year-only birth
//! dates) written as a CSV, imported into an empty tenant through the same path as
//! `cloudhis import residents`, with the dedupe report built.
//!
//! `cargo bench --bench import_speed -- --backend postgres|sqlite [--records N] [--batch B] [--seed S]`
//!
//! A fresh database each run: `cloudhis_bench_import` on `CLOUDHIS_TEST_PG_URL` (default
//! postgres://postgres@127.0.0.1:5432), or `target/bench-data/import.db`. Prints rows/s, the
//! peak resident memory, and the automatic links' pairwise precision and recall against the
//! generator's truth, and the share of true pairs in the probable band.

use std::collections::HashMap;
use std::time::Instant;

use cloudhis::patients::import::{self, Mapping, Options};
use cloudhis::patients::synth::{SynthConfig, SynthRecord, county_villages, generate};
use cloudhis::platform::SystemScope;
use cloudhis::platform::config::Config;
use cloudhis::startup::Application;
use sea_orm::{ConnectionTrait, Database, Statement};

fn arg<T: std::str::FromStr>(name: &str, default: T) -> T {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn csv(records: &[SynthRecord]) -> Vec<u8> {
    let places = ["th-dongguan", "th-xihe", "th-nanshan", "county-hospital", "v-dongguan", "v-xihe"];
    let mut out = String::from("档案编号,姓名,性别,出生日期,身份证号,联系电话,行政区划代码,医保号,机构编码\n");
    for (i, r) in records.iter().enumerate() {
        let (birth, sex) = (r.birth_text().unwrap_or_default(), r.sex_zh().unwrap_or_default());
        let o = |v: &Option<String>| v.clone().unwrap_or_default();
        let (id, phone, ins) = (o(&r.resident_id), o(&r.phone), o(&r.insurance_no));
        let place = places[i % places.len()];
        out.push_str(&format!("S{i},{},{sex},{birth},{id},{phone},{},{ins},{place}\n", r.name, r.division));
    }
    out.into_bytes()
}

fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kb / 1024.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let backend: String = arg("--backend", "sqlite".to_string());
    let records: usize = arg("--records", 100_000);
    let batch: usize = arg("--batch", 1000);
    let seed: u64 = arg("--seed", 9091);
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-data");
    std::fs::create_dir_all(&dir)?;
    let mut env: Vec<(&str, String)> = vec![
        ("CLOUDHIS_DATA_DIR", dir.display().to_string()),
        ("CLOUDHIS_SECRET", "bench-secret-bench-secret-bench-secret-00".into()),
        ("CLOUDHIS_LOG_FORMAT", "json".into()),
        ("CLOUDHIS_WORKERS", "false".into()),
    ];
    if backend == "postgres" {
        let server =
            std::env::var("CLOUDHIS_TEST_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
        let admin = Database::connect(format!("{server}/postgres")).await?;
        admin.execute_unprepared("DROP DATABASE IF EXISTS cloudhis_bench_import WITH (FORCE)").await?;
        admin.execute_unprepared("CREATE DATABASE cloudhis_bench_import").await?;
        env.push(("DATABASE_URL", format!("{server}/cloudhis_bench_import")));
    } else {
        let file = dir.join("import.db");
        for ext in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{ext}", file.display()));
        }
        env.push(("DATABASE_URL", format!("sqlite://{}?mode=rwc", file.display())));
    }
    let config = Config::from_lookup(|k| env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone()))?.config;
    let app = Application::build(config).await?;
    let state = app.state().clone();
    let spec = cloudhis::onboarding::parse("demo", cloudhis::cli::DEMO_TENANT)?;
    let tenant = cloudhis::onboarding::apply(&state.db, &spec).await?.tenant_id;

    let cfg = SynthConfig {
        records,
        duplicate_share: 0.1,
        seed,
        villages: county_villages("130999", 12, 25),
        family_share: 0.05,
    };
    let synth = generate(&cfg);
    let bytes = csv(&synth);
    eprintln!("{records} records, {:.0} MB of CSV; importing on {backend}", bytes.len() as f64 / 1e6);

    let started = Instant::now();
    let (table, at) = import::prepare(&bytes, &Mapping::default(), None)?;
    let read_s = started.elapsed().as_secs_f64();
    let job = import::create_job(&state.db, tenant, "bench.csv", table.rows.len() as u64, None).await?;
    let opts = Options { job, batch, actor: None, stop_after_batches: None };
    let step = (records as u64 / 10).max(1);
    let progress = |done: u64, total: u64| {
        if done % step < batch as u64 || done == total {
            eprintln!("  {done}/{total} rows, {:.0} s", started.elapsed().as_secs_f64());
        }
    };
    let report = import::execute(&state.db, &state.config, &state.pii, tenant, &table, &at, &opts, &progress).await?;
    let (xlsx, csv_report) = (report.to_xlsx()?, report.to_csv()?);
    let total_s = started.elapsed().as_secs_f64();

    // Quality against the generator's truth: source row S<i> (key `id:<institution>:S<i>`) is synth[i].
    let tx = state.db.begin(&SystemScope { tenant }).await?;
    let backend_kind = tx.get_database_backend();
    let rows =
        tx.query_all_raw(Statement::from_string(backend_kind, "SELECT source_key, person_id FROM import_rows")).await?;
    tx.rollback().await?;
    let mut person_of: HashMap<usize, uuid::Uuid> = HashMap::new();
    for r in rows {
        let key: String = r.try_get("", "source_key")?;
        person_of.insert(key.rsplit(":S").next().unwrap_or_default().parse()?, r.try_get("", "person_id")?);
    }
    let mut by_person: HashMap<uuid::Uuid, Vec<usize>> = HashMap::new();
    for (i, p) in &person_of {
        by_person.entry(*p).or_default().push(*i);
    }
    let (mut linked_pairs, mut true_linked) = (0u64, 0u64);
    for members in by_person.values() {
        for (x, &a) in members.iter().enumerate() {
            for &b in &members[x + 1..] {
                linked_pairs += 1;
                true_linked += u64::from(synth[a].truth == synth[b].truth);
            }
        }
    }
    let mut by_truth: HashMap<u32, u64> = HashMap::new();
    for r in &synth {
        *by_truth.entry(r.truth).or_default() += 1;
    }
    let true_pairs: u64 = by_truth.values().map(|n| n * (n - 1) / 2).sum();
    let line_of = |line: u64| (line - 2) as usize;
    let probable_true = report
        .probable
        .iter()
        .filter(|p| {
            by_person
                .get(&p.candidate)
                .is_some_and(|m| m.iter().any(|&j| synth[j].truth == synth[line_of(p.line)].truth))
        })
        .count();
    let c = &report.counts;
    println!("backend {backend}, {records} records, batch {batch}, seed {seed}");
    println!(
        "read {read_s:.1} s; total {total_s:.1} s; {:.0} rows/s; peak RSS {:.0} MB; report {:.1} MB xlsx, {:.1} MB csv",
        records as f64 / total_s,
        peak_rss_mb(),
        xlsx.len() as f64 / 1e6,
        csv_report.len() as f64 / 1e6
    );
    println!(
        "{} new persons, {} linked, {} probable pairs, {} rejected, {} flagged",
        c.new_persons, c.linked, c.probable, c.rejected, c.flagged
    );
    println!(
        "automatic links: precision {:.4}, recall {:.4} ({true_linked} true of {linked_pairs} linked pairs; {true_pairs} true pairs); probable band: {probable_true} of {} true ({:.0}%)",
        true_linked as f64 / linked_pairs.max(1) as f64,
        true_linked as f64 / true_pairs.max(1) as f64,
        report.probable.len(),
        100.0 * probable_true as f64 / report.probable.len().max(1) as f64
    );
    Ok(())
}
