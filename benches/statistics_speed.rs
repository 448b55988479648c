//! The bureau's KPI dashboard over one community with 10M encounters and 1M persons, from the
//! rollups through the HTTP API, against the same KPIs computed by direct aggregate queries over
//! the source tables.
//!
//! `cargo bench --bench statistics_speed -- [--encounters N] [--persons P] [--requests R] [--reload] [--reuse-rollups]`
//!
//! PostgreSQL database `cloudhis_bench_stats` (loaded once; `--reload` starts again) and Redis.
//! The source tables are filled by SQL (`generate_series`): persons, a year (2025) of closed
//! encounters spread over the twelve care institutions with one charge each, 50,000 referrals,
//! 100,000 registry enrollments with four follow-ups each. `cloudhis statistics rebuild` (the
//! service function) then fills the rollups.

use std::time::{Duration, Instant};

use cloudhis::platform::SystemScope;
use cloudhis::platform::config::Config;
use cloudhis::startup::Application;
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement};
use serde_json::{Value, json};
use uuid::Uuid;

fn arg<T: std::str::FromStr>(name: &str, default: T) -> T {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1000.0
}

async fn scalar(db: &DatabaseConnection, sql: &str) -> anyhow::Result<i64> {
    let row = db.query_one_raw(Statement::from_string(db.get_database_backend(), sql)).await?.expect("a row");
    Ok(row.try_get_by_index::<i64>(0)?)
}

async fn exec(db: &DatabaseConnection, what: &str, sql: &str) -> anyhow::Result<()> {
    let t = Instant::now();
    db.execute_unprepared(sql).await?;
    eprintln!("  {what}: {:.1} s", t.elapsed().as_secs_f64());
    Ok(())
}

fn uuids(ids: &[Uuid]) -> String {
    format!("ARRAY[{}]::uuid[]", ids.iter().map(|i| format!("'{i}'")).collect::<Vec<_>>().join(","))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let encounters: i64 = arg("--encounters", 10_000_000);
    let persons: i64 = arg("--persons", 1_000_000);
    let requests: usize = arg("--requests", 200);
    let reload = std::env::args().any(|a| a == "--reload");
    let server = std::env::var("CLOUDHIS_TEST_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    let admin = Database::connect(format!("{server}/postgres")).await?;
    if reload {
        admin.execute_unprepared("DROP DATABASE IF EXISTS cloudhis_bench_stats WITH (FORCE)").await?;
    }
    let _ = admin.execute_unprepared("CREATE DATABASE cloudhis_bench_stats").await;
    let url = format!("{server}/cloudhis_bench_stats");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-data");
    std::fs::create_dir_all(&dir)?;
    let env: Vec<(&str, String)> = vec![
        ("CLOUDHIS_DATA_DIR", dir.display().to_string()),
        ("CLOUDHIS_SECRET", "bench-secret-bench-secret-bench-secret-00".into()),
        ("CLOUDHIS_BIND", "127.0.0.1:0".into()),
        ("CLOUDHIS_DB_POOL_SIZE", "8".into()),
        ("DATABASE_URL", url.clone()),
        ("REDIS_URL", std::env::var("CLOUDHIS_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())),
        ("CLOUDHIS_REDIS_PREFIX", format!("bench-stats-{}", Uuid::new_v4().simple())),
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
    let tx = state.db.begin(&SystemScope { tenant }).await?;
    let institutions = cloudhis::tenancy::service::list_institutions(&tx).await?;
    tx.rollback().await?;
    let care: Vec<&cloudhis::tenancy::service::InstitutionInfo> =
        institutions.iter().filter(|i| i.kind.as_str() != "health_bureau").collect();
    let care_ids: Vec<Uuid> = care.iter().map(|i| i.id).collect();
    let villages: Vec<&&cloudhis::tenancy::service::InstitutionInfo> =
        care.iter().filter(|i| i.kind.as_str() == "village_clinic").collect();
    let owner = Database::connect(&url).await?;
    let t = tenant;

    let loaded = scalar(&owner, &format!("SELECT count(*) FROM encounters WHERE tenant_id = '{t}'")).await?;
    let mut load_secs = 0.0;
    if loaded < encounters {
        eprintln!("loading {persons} persons and {encounters} encounters (once; --reload to start again)");
        let started = Instant::now();
        let someone = care_ids[0];
        exec(
            &owner,
            "persons",
            &format!(
                "INSERT INTO persons (tenant_id, id, name, name_pinyin, name_initials, surname_pinyin, resident_id_valid,
                                      status, created_institution, created_at, updated_at)
                 SELECT '{t}', gen_random_uuid(), '居民', 'jumin', 'jm', 'ju', false, 'active', '{someone}', now(), now()
                   FROM generate_series(1, {persons})"
            ),
        )
        .await?;
        exec(
            &owner,
            "person numbering",
            &format!(
                "DROP TABLE IF EXISTS bench_pm;
                 CREATE UNLOGGED TABLE bench_pm AS SELECT row_number() OVER () AS rn, id FROM persons WHERE tenant_id = '{t}';
                 CREATE INDEX ON bench_pm (rn)"
            ),
        )
        .await?;
        let n_inst = care_ids.len();
        exec(
            &owner,
            "encounters",
            &format!(
                "INSERT INTO encounters (tenant_id, id, institution_id, person_id, clinician_id, kind, status, opened_at, closed_at)
                 SELECT '{t}', gen_random_uuid(), ({arr})[(1 + (s.g % {n_inst}))::int], pm.id, '{someone}',
                        CASE WHEN s.g % 20 = 0 THEN 'emergency' ELSE 'outpatient' END, 'closed', s.ts, s.ts + interval '15 minutes'
                   FROM (SELECT g, timestamptz '2025-01-01 00:00:00+08' + ((g * 7919) % 31536000) * interval '1 second' AS ts
                           FROM generate_series(1::bigint, {encounters}) g) s
                   JOIN bench_pm pm ON pm.rn = 1 + (s.g % {persons})",
                arr = uuids(&care_ids)
            ),
        )
        .await?;
        exec(
            &owner,
            "charges",
            &format!(
                "INSERT INTO charges (tenant_id, id, bill_id, institution_id, kind, item_code, description, quantity,
                                      unit_price_fen, amount_fen, insurance_category, insurance_fen, self_pay_fen, posted_at)
                 SELECT tenant_id, gen_random_uuid(), id, institution_id,
                        CASE WHEN (extract(epoch FROM opened_at)::bigint % 5) < 2 THEN 'drug' ELSE 'fee' END,
                        'consultation', '诊查费', 1, 1500 + (extract(epoch FROM opened_at)::bigint % 4000),
                        1500 + (extract(epoch FROM opened_at)::bigint % 4000), 'A', 0,
                        1500 + (extract(epoch FROM opened_at)::bigint % 4000), opened_at + interval '5 minutes'
                   FROM encounters WHERE tenant_id = '{t}'"
            ),
        )
        .await?;
        // Referrals: villages up to their township, a sixth of them back down, a twentieth out.
        let pairs: Vec<(Uuid, Uuid)> = villages.iter().filter_map(|v| v.parent_id.map(|p| (v.id, p))).collect();
        let (froms, tos): (Vec<Uuid>, Vec<Uuid>) = pairs.iter().copied().unzip();
        let np = pairs.len();
        exec(
            &owner,
            "referrals",
            &format!(
                "INSERT INTO referrals (tenant_id, id, person_id, direction, from_institution, to_institution, external_hospital,
                                        status, urgency, reason, clinical_summary, created_by, created_at, requested_at,
                                        sla_due_at, decided_at, decided_by, completed_at, completion_summary, updated_at)
                 SELECT '{t}', gen_random_uuid(), pm.id,
                        CASE WHEN g % 20 = 0 THEN 'out' WHEN g % 6 = 0 THEN 'down' ELSE 'up' END,
                        CASE WHEN g % 6 = 0 AND g % 20 <> 0 THEN ({tos})[(1 + g % {np})::int] ELSE ({froms})[(1 + g % {np})::int] END,
                        CASE WHEN g % 20 = 0 THEN NULL WHEN g % 6 = 0 THEN ({froms})[(1 + g % {np})::int] ELSE ({tos})[(1 + g % {np})::int] END,
                        CASE WHEN g % 20 = 0 THEN '省人民医院' END,
                        CASE WHEN g % 20 = 0 THEN 'completed' WHEN g % 9 = 0 THEN 'rejected' ELSE 'completed' END,
                        'routine', '转诊', '{{}}'::jsonb, '{someone}', ts, CASE WHEN g % 20 = 0 THEN NULL ELSE ts END,
                        ts + interval '1 day',
                        CASE WHEN g % 20 = 0 THEN NULL ELSE ts + (g % 600) * interval '1 minute' END, '{someone}',
                        CASE WHEN g % 9 = 0 AND g % 20 <> 0 THEN NULL ELSE ts + interval '3 days' END,
                        CASE WHEN g % 9 = 0 OR g % 20 = 0 THEN NULL ELSE '诊治完毕' END, ts
                   FROM (SELECT g, timestamptz '2025-01-01 00:00:00+08' + ((g * 104729) % 31000000) * interval '1 second' AS ts
                           FROM generate_series(1::bigint, 50000) g) s
                   JOIN bench_pm pm ON pm.rn = 1 + (s.g * 13 % {persons})",
                tos = uuids(&tos),
                froms = uuids(&froms)
            ),
        )
        .await?;
        exec(
            &owner,
            "registry",
            &format!(
                "INSERT INTO chronic_enrollments (tenant_id, id, person_id, disease, diagnosis_code, diagnosed_on, institution_id,
                        doctor_id, enrolled_on, enrolled_by, interval_days, next_due, visits, last_visit_on, last_classification,
                        uncontrolled_streak, status, created_at, updated_at)
                 SELECT '{t}', gen_random_uuid(), pm.id, CASE WHEN g % 4 = 0 THEN 'diabetes' ELSE 'hypertension' END, NULL,
                        date '2024-06-01', ({vil})[(1 + g % {nv})::int], '{someone}', date '2024-07-01', '{someone}', 90,
                        date '2026-01-20', 4, date '2025-10-20', 'controlled', 0, 'active', now(), now()
                   FROM generate_series(1::bigint, 100000) g JOIN bench_pm pm ON pm.rn = 1 + (g * 7 % {persons});
                 INSERT INTO followup_visits (tenant_id, id, enrollment_id, person_id, institution_id, doctor_id, visit_on,
                        systolic, diastolic, glucose, symptoms, adherence, classification, danger, danger_reasons, next_on,
                        recorded_by, recorded_at)
                 SELECT e.tenant_id, gen_random_uuid(), e.id, e.person_id, e.institution_id, e.doctor_id,
                        date '2025-01-20' + (k * 91 + (abs(hashtext(e.id::text)) % 40))::int,
                        125 + (abs(hashtext(e.id::text || k)) % 30), 75 + (abs(hashtext(e.id::text || k)) % 20),
                        CASE WHEN e.disease = 'diabetes' THEN 5.5 + (abs(hashtext(e.id::text || k)) % 30) / 10.0 END,
                        '[]'::jsonb, 'regular', 'controlled', false, '[]'::jsonb, date '2026-01-20', e.doctor_id, now()
                   FROM chronic_enrollments e CROSS JOIN generate_series(0, CASE WHEN abs(hashtext(e.id::text)) % 3 = 0 THEN 2 ELSE 3 END) k
                  WHERE e.tenant_id = '{t}'",
                vil = uuids(&villages.iter().map(|v| v.id).collect::<Vec<_>>()),
                nv = villages.len()
            ),
        )
        .await?;
        exec(&owner, "analyze", "DROP TABLE bench_pm; ANALYZE").await?;
        load_secs = started.elapsed().as_secs_f64();
    }
    // The rollups: rebuilt from the source tables unless `--reuse-rollups` and already there.
    let reuse = std::env::args().any(|a| a == "--reuse-rollups")
        && scalar(&owner, &format!("SELECT count(*) FROM stat_daily WHERE tenant_id = '{t}'")).await? > 0
        && scalar(&owner, &format!("SELECT count(*) FROM stat_registry WHERE tenant_id = '{t}'")).await? > 0;
    let t0 = Instant::now();
    let rebuilt = if reuse {
        cloudhis::statistics::service::RebuildReport {
            daily_rows: scalar(&owner, "SELECT count(*) FROM stat_daily").await? as usize,
            referrals: scalar(&owner, "SELECT count(*) FROM stat_referrals").await? as usize,
            enrollments: scalar(&owner, "SELECT count(*) FROM stat_enrollments").await? as usize,
            followups: scalar(&owner, "SELECT count(*) FROM stat_followups").await? as usize,
        }
    } else {
        cloudhis::statistics::service::rebuild(&state.db, tenant).await?
    };
    let rebuild_secs = if reuse { 0.0 } else { t0.elapsed().as_secs_f64() };
    owner
        .execute_unprepared(
            "ANALYZE stat_daily; ANALYZE stat_referrals; ANALYZE stat_enrollments; ANALYZE stat_followups; ANALYZE stat_registry",
        )
        .await?;

    // The dashboard through the API, as the bureau official.
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}/api/v1");
    let login: Value = http
        .post(format!("{base}/auth/login"))
        .json(&json!({"tenant": "demo-county", "username": "bureau", "password": "Demo@2026"}))
        .send()
        .await?
        .json()
        .await?;
    let token = login["token"].as_str().expect("the bureau logs in").to_string();
    let township = care.iter().find(|i| i.kind.as_str() == "township_health_centre").expect("a township").id;
    let year = "from=2025-01-01&to=2025-12-31";
    let cases = [
        ("full KPI dashboard, 2025, community + drill-down", format!("{base}/statistics/kpis?{year}")),
        ("one township and its villages, 2025", format!("{base}/statistics/kpis?{year}&institution_id={township}")),
        ("one month", format!("{base}/statistics/kpis?from=2025-06-01&to=2025-06-30")),
        ("visits by month, 2025 (12 points)", format!("{base}/statistics/series?kpi=visits&grain=month&{year}")),
    ];
    let mut rows = Vec::new();
    let mut dashboard = Value::Null;
    for (name, url) in &cases {
        for _ in 0..5 {
            http.get(url).bearer_auth(&token).send().await?.error_for_status()?;
        }
        // Look-backs (a period ending before the latest follow-ups) read the follow-ups
        // themselves and are much slower: fewer of them.
        let n = if name.contains("series") {
            (requests / 50).max(2)
        } else if name.contains("month") {
            (requests / 10).max(5)
        } else {
            requests
        };
        let mut times = Vec::with_capacity(n);
        for _ in 0..n {
            let t = Instant::now();
            let body: Value = http.get(url).bearer_auth(&token).send().await?.error_for_status()?.json().await?;
            times.push(t.elapsed());
            if dashboard.is_null() {
                dashboard = body;
            }
        }
        times.sort();
        rows.push((name.to_string(), n, pct(&times, 0.5), pct(&times, 0.99)));
    }
    let visits_api = dashboard["kpis"].as_array().unwrap().iter().find(|k| k["code"] == "visits").unwrap()["value"]
        .as_f64()
        .unwrap_or(-1.0) as i64;

    // The same KPIs straight from the source tables.
    let from = "timestamptz '2025-01-01 00:00:00+08'";
    let to = "timestamptz '2026-01-01 00:00:00+08'";
    let direct = [
        (
            "visits by institution and kind",
            format!(
                "SELECT institution_id, kind, count(*) FROM encounters WHERE tenant_id = '{t}' AND status = 'closed'
                   AND opened_at >= {from} AND opened_at < {to} GROUP BY 1, 2"
            ),
        ),
        (
            "charges by institution and kind",
            format!(
                "SELECT institution_id, kind, sum(amount_fen) FROM charges WHERE tenant_id = '{t}'
                   AND posted_at >= {from} AND posted_at < {to} GROUP BY 1, 2"
            ),
        ),
        (
            "referrals: counts, decision times, loops",
            format!(
                "SELECT from_institution, direction, count(*),
                        percentile_disc(0.5) WITHIN GROUP (ORDER BY decided_at - requested_at),
                        percentile_disc(0.9) WITHIN GROUP (ORDER BY decided_at - requested_at),
                        count(*) FILTER (WHERE completed_at IS NOT NULL AND completion_summary IS NOT NULL)
                   FROM referrals WHERE tenant_id = '{t}' AND coalesce(requested_at, created_at) >= {from}
                    AND coalesce(requested_at, created_at) < {to} GROUP BY 1, 2"
            ),
        ),
        (
            "registries: standard management and control at year end",
            format!(
                "WITH w AS (SELECT enrollment_id, count(*) AS n, max(visit_on) AS last FROM followup_visits
                             WHERE tenant_id = '{t}' AND visit_on > date '2024-12-31' AND visit_on <= date '2025-12-31'
                             GROUP BY enrollment_id)
                 SELECT e.institution_id, e.disease, count(*), count(*) FILTER (WHERE w.n >= 4), count(w.n),
                        count(*) FILTER (WHERE (e.disease = 'hypertension' AND f.systolic < 140 AND f.diastolic < 90)
                                            OR (e.disease = 'diabetes' AND f.glucose < 7.0))
                   FROM chronic_enrollments e LEFT JOIN w ON w.enrollment_id = e.id
                   LEFT JOIN followup_visits f ON f.tenant_id = e.tenant_id AND f.enrollment_id = e.id AND f.visit_on = w.last
                  WHERE e.tenant_id = '{t}' AND e.enrolled_on <= date '2025-12-31'
                    AND (e.closed_on IS NULL OR e.closed_on > date '2025-12-31') GROUP BY 1, 2"
            ),
        ),
    ];
    let mut direct_rows = Vec::new();
    let mut direct_total = Vec::new();
    for run in 0..3 {
        let mut sum = Duration::ZERO;
        for (name, sql) in &direct {
            let t = Instant::now();
            owner.query_all_raw(Statement::from_string(sea_orm::DbBackend::Postgres, sql.clone())).await?;
            let d = t.elapsed();
            sum += d;
            if run == 2 {
                direct_rows.push((name.to_string(), d.as_secs_f64() * 1000.0));
            }
        }
        direct_total.push(sum);
    }
    direct_total.sort();
    let visits_direct = scalar(
        &owner,
        &format!(
            "SELECT count(*) FROM encounters WHERE tenant_id = '{t}' AND status = 'closed' AND opened_at >= {from} AND opened_at < {to}"
        ),
    )
    .await?;

    println!("## Statistics dashboard (postgres)");
    println!();
    println!(
        "{} persons, {} encounters and charges, {} referrals, {} enrollments, {} follow-ups; load {:.0} s (0 = already loaded); rebuild of the rollups {:.1} s ({} daily rows, {} registry step rows)",
        scalar(&owner, &format!("SELECT count(*) FROM persons WHERE tenant_id = '{t}'")).await?,
        scalar(&owner, &format!("SELECT count(*) FROM encounters WHERE tenant_id = '{t}'")).await?,
        rebuilt.referrals,
        rebuilt.enrollments,
        rebuilt.followups,
        load_secs,
        rebuild_secs,
        rebuilt.daily_rows,
        scalar(&owner, &format!("SELECT count(*) FROM stat_registry WHERE tenant_id = '{t}'")).await?
    );
    println!();
    println!("| from the rollups, through the API | n | p50 | p99 |");
    println!("|---|---|---|---|");
    for (name, n, p50, p99) in rows {
        println!("| {name} | {n} | {p50:.1} ms | {p99:.1} ms |");
    }
    println!();
    println!("| direct aggregate over the source tables (last of 3 runs) | time |");
    println!("|---|---|");
    for (name, ms) in direct_rows {
        println!("| {name} | {ms:.0} ms |");
    }
    println!(
        "| **all four, the same KPIs** (best / worst of 3) | {:.0} / {:.0} ms |",
        direct_total[0].as_secs_f64() * 1000.0,
        direct_total[2].as_secs_f64() * 1000.0
    );
    println!();
    println!("visits in 2025: {visits_api} from the dashboard, {visits_direct} counted directly");
    Ok(())
}
