//! MPI quality the way a clinic meets it: every synthetic record registered through the real
//! HTTP API, one after another in a shuffled order, each by a doctor of the county hospital, a
//! township centre or a village clinic. This is how an independent check measures us; the
//! `mpi_quality` bench scores all pairs at once instead and cannot see what registration does
//! (a golden record that grows as records link, candidates ranked against it, 409 answers).
//!
//! `cargo bench --bench register_quality -- [--records N] [--seed S] [--families F] [--answer new|top]`
//!
//! Defaults: 20,000 records (12% duplicates), held-back seed 9091, look-alikes 0.05, on the
//! embedded default (a fresh SQLite file, in-memory cache); `DATABASE_URL` points it at
//! PostgreSQL instead. A probable match (409) is answered with `create_new` (`--answer new`: the
//! pair waits for review) or by linking to the first candidate (`--answer top`: a clerk who
//! trusts the ranking). It reports the answers by status and error code, pairwise precision and
//! recall of the persons the registrations ended on, and for the 409s how often the first (or
//! any) candidate was the right person.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Instant;

use cloudhis::patients::synth::{SynthConfig, generate};
use cloudhis::platform::config::Config;
use cloudhis::startup::Application;
use rand::prelude::*;
use rand::rngs::StdRng;
use serde_json::{Value, json};
use uuid::Uuid;

fn arg<T: std::str::FromStr>(name: &str, default: T) -> T {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Pairs of records that ended on one person, and how many of them are the same resident.
fn pairwise(person_of: &HashMap<usize, Uuid>, truth: &[u32]) -> (u64, u64, u64) {
    let mut by_person: HashMap<Uuid, Vec<u32>> = HashMap::new();
    for (&i, &p) in person_of {
        by_person.entry(p).or_default().push(truth[i]);
    }
    let (mut linked, mut right) = (0u64, 0u64);
    for members in by_person.values() {
        let n = members.len() as u64;
        linked += n * (n - 1) / 2;
        let mut same: HashMap<u32, u64> = HashMap::new();
        for t in members {
            *same.entry(*t).or_default() += 1;
        }
        right += same.values().map(|k| k * (k - 1) / 2).sum::<u64>();
    }
    let mut per_truth: HashMap<u32, u64> = HashMap::new();
    for i in person_of.keys() {
        *per_truth.entry(truth[*i]).or_default() += 1;
    }
    let all = per_truth.values().map(|k| k * (k - 1) / 2).sum();
    (linked, right, all)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let records: usize = arg("--records", 20_000);
    let seed: u64 = arg("--seed", 9091);
    let families: f64 = arg("--families", 0.05);
    let answer: String = arg("--answer", "new".to_string());
    let dir = tempfile::tempdir()?;
    let mut env: Vec<(&str, String)> = vec![
        ("CLOUDHIS_DATA_DIR", dir.path().display().to_string()),
        ("CLOUDHIS_SECRET", "bench-secret-bench-secret-bench-secret-00".into()),
        ("CLOUDHIS_BIND", "127.0.0.1:0".into()),
        ("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into())),
    ];
    if let Ok(url) = std::env::var("DATABASE_URL") {
        env.push(("DATABASE_URL", url));
    }
    let config = Config::from_lookup(|k| env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone()))?.config;
    let app = Application::build(config).await?;
    let state = app.state().clone();
    let port = app.port();
    tokio::spawn(app.run_until_stopped());
    let spec = cloudhis::onboarding::parse("demo", cloudhis::cli::DEMO_TENANT)?;
    let tenant = cloudhis::onboarding::apply(&state.db, &spec).await?.tenant_id;
    state.authz.changed(tenant).await;

    let tx = state.db.begin(&cloudhis::platform::SystemScope { tenant }).await?;
    let institutions = cloudhis::tenancy::service::list_institutions(&tx).await?;
    tx.rollback().await?;
    let plan = cloudhis::patients::seed::plan(&institutions, records, 0.12, seed);
    let synth = generate(&SynthConfig { family_share: families, ..plan });
    let truth: Vec<u32> = synth.iter().map(|r| r.truth).collect();
    let mut order: Vec<usize> = (0..synth.len()).collect();
    order.shuffle(&mut StdRng::seed_from_u64(seed ^ 0x5eed));

    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let mut tokens = Vec::new();
    for user in ["county.doctor", "township.doctor", "village.doctor"] {
        let login: Value = http
            .post(format!("{base}/api/v1/auth/login"))
            .json(&json!({"tenant": "demo-county", "username": user, "password": "Demo@2026"}))
            .send()
            .await?
            .json()
            .await?;
        tokens.push(login["token"].as_str().expect("login").to_string());
    }

    let t0 = Instant::now();
    let mut person_of: HashMap<usize, Uuid> = HashMap::new();
    let mut truths_of: HashMap<Uuid, HashSet<u32>> = HashMap::new();
    let mut answers: BTreeMap<String, usize> = BTreeMap::new();
    let (mut asked, mut top_right, mut any_right, mut someone_there) = (0usize, 0usize, 0usize, 0usize);
    for (n, &i) in order.iter().enumerate() {
        let token = &tokens[n % tokens.len()];
        let mut body = synth[i].registration_json();
        loop {
            let r = http.post(format!("{base}/api/v1/patients")).bearer_auth(token).json(&body).send().await?;
            let status = r.status().as_u16();
            let v: Value = r.json().await?;
            let code = v["code"].as_str().map(|c| format!(" {c}")).unwrap_or_default();
            *answers.entry(format!("{status}{code}")).or_default() += 1;
            if v["code"] == "probable_match" && body.get("link_to").is_none() && body.get("create_new").is_none() {
                asked += 1;
                let ids: Vec<Uuid> = v["details"]["candidates"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|c| c["person"]["id"].as_str()?.parse().ok())
                    .collect();
                let right = |p: &Uuid| truths_of.get(p).is_some_and(|t| t.contains(&truth[i]));
                top_right += usize::from(ids.first().is_some_and(right));
                any_right += usize::from(ids.iter().any(right));
                someone_there += usize::from(person_of.keys().any(|&j| truth[j] == truth[i]));
                if answer == "top" {
                    body["link_to"] = json!(ids[0]);
                } else {
                    body["create_new"] = json!({"reason": "bench: left for review"});
                }
                continue;
            }
            if let (200 | 201, Some(p)) = (status, v["person"]["id"].as_str()) {
                let p: Uuid = p.parse()?;
                person_of.insert(i, p);
                truths_of.entry(p).or_default().insert(truth[i]);
            }
            break;
        }
        if (n + 1) % 5000 == 0 {
            eprintln!("{} registered, {:.0} s", n + 1, t0.elapsed().as_secs_f64());
        }
    }
    let wall = t0.elapsed();
    let (linked, right, all) = pairwise(&person_of, &truth);
    let backend = if std::env::var("DATABASE_URL").is_ok() { "postgres" } else { "sqlite" };
    println!(
        "## MPI quality through registration ({backend}, seed {seed}, look-alikes {families}, 409 answered: {answer})"
    );
    println!();
    println!("| measure | value |");
    println!("|---|---|");
    println!("| records registered, in a shuffled order | {} in {:.0} s |", synth.len(), wall.as_secs_f64());
    for (k, n) in &answers {
        println!("| answered {k} | {n} |");
    }
    println!("| records on no person (refused) | {} |", synth.len() - person_of.len());
    println!("| pairwise precision | {:.4} ({right}/{linked}) |", right as f64 / linked.max(1) as f64);
    println!("| pairwise recall | {:.4} ({right}/{all}) |", right as f64 / all.max(1) as f64);
    println!(
        "| 409s whose first candidate was the right person | {:.1}% ({top_right}/{asked}) |",
        100.0 * top_right as f64 / asked.max(1) as f64
    );
    println!(
        "| 409s with the right person among the candidates | {:.1}% ({any_right}/{asked}; the resident was already registered in {someone_there}) |",
        100.0 * any_right as f64 / asked.max(1) as f64
    );
    Ok(())
}
