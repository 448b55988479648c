//! Citus (issue 24): on a coordinator with the extension, `cloudhis migrate` makes `tenants` a
//! reference table and distributes every tenant table by `tenant_id` in one co-location group,
//! keeping row-level security, and a second run changes nothing; the request's tenant (set with
//! `SET LOCAL`) reaches the shards' policies, so a community sees its rows and no other's.
//!
//! Needs a Citus cluster: `CLOUDHIS_CITUS_URL` names the coordinator's `postgres` database
//! (`../shared/citus/cluster start DIR` prints it; `.ci/run` starts one and runs these).

use std::collections::{BTreeSet, HashMap};
use std::process::Command;

use sea_orm::{ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement, TransactionTrait};

use crate::helpers::fresh_citus_database;

async fn rows(db: &DatabaseConnection, sql: &str) -> Vec<Vec<String>> {
    db.query_all_raw(Statement::from_string(DbBackend::Postgres, sql))
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .iter()
        .map(|r| {
            (0..).map_while(|i| r.try_get_by_index::<Option<String>>(i).ok()).map(Option::unwrap_or_default).collect()
        })
        .collect()
}

fn cloudhis(url: &str, args: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cloudhis"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", url)
        .env("CLOUDHIS_DATA_DIR", dir.path())
        .env("CLOUDHIS_SECRET", "citus-secret-citus-secret-citus-secret-01")
        .env("CLOUDHIS_LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "cloudhis {args:?}: {text}");
    text
}

#[tokio::test]
#[ignore = "needs a Citus cluster: set CLOUDHIS_CITUS_URL (../shared/citus/cluster start prints it); .ci/run does"]
async fn migrate_distributes_every_tenant_table_and_isolation_holds_on_the_shards() {
    let coordinator = std::env::var("CLOUDHIS_CITUS_URL")
        .expect("CLOUDHIS_CITUS_URL must name a Citus coordinator (../shared/citus/cluster start DIR prints it)");
    let url = fresh_citus_database(&coordinator, 32).await;
    let first = cloudhis(&url, &["migrate"]);
    assert!(first.contains("citus: tenant tables distributed"), "{first}");
    let db = Database::connect(&url).await.unwrap();

    let tenant_tables: BTreeSet<String> = rows(
        &db,
        "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')
            AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'tenant_id')",
    )
    .await
    .into_iter()
    .map(|r| r[0].clone())
    .collect();
    assert!(tenant_tables.len() >= 50, "{tenant_tables:?}");
    let citus: HashMap<String, (String, String, String)> = rows(
        &db,
        "SELECT table_name::text, citus_table_type::text, distribution_column::text, colocation_id::text FROM citus_tables",
    )
    .await
    .into_iter()
    .map(|r| (r[0].clone(), (r[1].clone(), r[2].clone(), r[3].clone())))
    .collect();
    assert_eq!(citus.get("tenants").map(|t| t.0.as_str()), Some("reference"), "{citus:?}");
    let left: Vec<&String> =
        tenant_tables.iter().filter(|t| citus.get(*t).is_none_or(|c| c.0 != "distributed")).collect();
    assert!(left.is_empty(), "tenant tables left local: {left:?}");
    assert!(tenant_tables.iter().all(|t| citus[t].1 == "tenant_id"), "distributed by tenant_id: {citus:?}");
    let groups: BTreeSet<&String> = tenant_tables.iter().map(|t| &citus[t].2).collect();
    assert_eq!(groups.len(), 1, "one co-location group: {citus:?}");
    // Row-level security is kept on every tenant table, without sub-selects.
    let unprotected = rows(
        &db,
        "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition
            AND c.relname IN (SELECT table_name::text FROM citus_tables WHERE citus_table_type = 'distributed')
            AND (NOT c.relrowsecurity OR NOT EXISTS (SELECT 1 FROM pg_policies p WHERE p.tablename = c.relname))",
    )
    .await;
    assert!(unprotected.is_empty(), "tables without their policies: {unprotected:?}");
    // The audit trail's month partitions are reached only through their parent and its policy:
    // the app role holds no privilege on a partition.
    let partitions = rows(
        &db,
        "SELECT c.relname::text FROM pg_class c WHERE c.relispartition
            AND has_table_privilege('cloudhis_app', c.oid, 'SELECT, INSERT, UPDATE, DELETE')",
    )
    .await;
    assert!(partitions.is_empty(), "partitions the app role may reach directly: {partitions:?}");

    // Idempotent: a second run distributes nothing.
    let again = cloudhis(&url, &["migrate"]);
    assert!(again.contains("\"distributed\":0"), "{again}");

    // Two communities; the app role sees one at a time, on the shards.
    cloudhis(&url, &["tenants", "apply", "tenants/demo-county.toml"]);
    let other = cloudhis::cli::DEMO_TENANT.replace("\"demo-county\"", "\"citus-other\"");
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), other).unwrap();
    cloudhis(&url, &["tenants", "apply", file.path().to_str().unwrap()]);
    let tenants = rows(&db, "SELECT id::text, code::text FROM tenants ORDER BY code").await;
    assert_eq!(tenants.len(), 2, "{tenants:?}");
    for t in &tenants {
        let tenant: uuid::Uuid = t[0].parse().unwrap();
        let all = rows(&db, &format!("SELECT count(*)::text FROM institutions WHERE tenant_id = '{tenant}'")).await;
        let tx = db.begin().await.unwrap();
        tx.execute_unprepared("SET LOCAL ROLE cloudhis_app").await.unwrap();
        tx.execute_unprepared(&cloudhis::platform::db::set_tenant_sql(tenant)).await.unwrap();
        let r = tx
            .query_one_raw(Statement::from_string(
                DbBackend::Postgres,
                "SELECT count(*)::text AS n, count(DISTINCT tenant_id)::text AS d, min(tenant_id::text) AS t FROM institutions",
            ))
            .await
            .unwrap()
            .unwrap();
        let seen: (String, String, Option<String>) =
            (r.try_get("", "n").unwrap(), r.try_get("", "d").unwrap(), r.try_get("", "t").unwrap());
        tx.rollback().await.unwrap();
        assert_eq!(seen, (all[0][0].clone(), "1".to_string(), Some(t[0].clone())), "{}", t[1]);
        assert!(all[0][0] != "0");
    }
    // No tenant set: nothing.
    let tx = db.begin().await.unwrap();
    tx.execute_unprepared("SET LOCAL ROLE cloudhis_app").await.unwrap();
    let r = tx
        .query_one_raw(Statement::from_string(DbBackend::Postgres, "SELECT count(*)::text AS n FROM institutions"))
        .await
        .unwrap()
        .unwrap();
    let n: String = r.try_get("", "n").unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(n, "0");
}

/// A number in Chinese digits (names hold no Arabic ones).
fn cn(n: usize) -> String {
    n.to_string()
        .chars()
        .map(|d| "零一二三四五六七八九".chars().nth(d.to_digit(10).unwrap() as usize).unwrap())
        .collect()
}

/// The tenant's shard of `institutions` and its placement (`host`, `port`).
async fn tenant_shard(db: &DatabaseConnection, tenant: &str) -> (String, String, String, bool) {
    let r = rows(
        db,
        &format!(
            "SELECT s.shardid::text, p.nodename::text, p.nodeport::text, (s.shardminvalue = s.shardmaxvalue)::text
               FROM pg_dist_shard s JOIN pg_dist_shard_placement p ON p.shardid = s.shardid
              WHERE s.shardid = get_shard_id_for_distribution_column('public.institutions', '{tenant}'::uuid)"
        ),
    )
    .await;
    assert_eq!(r.len(), 1, "one placement: {r:?}");
    (r[0][0].clone(), r[0][1].clone(), r[0][2].clone(), r[0][3] == "true")
}

/// `cloudhis citus isolate-tenant` gives a large community shards of its own, and moving them to
/// another worker while clinics work loses nothing and fails no request: four clients register
/// patients and run visits (open, vitals, diagnosis, close) through the API the whole time. A 503
/// (the database unavailable for a moment, with `Retry-After`) is sent again as a client would,
/// with the same `Idempotency-Key`; any other failure, a 500 above all, fails the test.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs a Citus cluster: set CLOUDHIS_CITUS_URL (../shared/citus/cluster start prints it); .ci/run does"]
async fn a_community_isolated_on_its_own_shard_and_moved_during_a_burst_of_visits_loses_nothing() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    // The server's warnings and errors on the test's output: a failure names its database error.
    let _ = tracing_subscriber::fmt().with_env_filter("cloudhis=warn").try_init();
    let url = fresh_citus_database(&crate::helpers::citus_url(), 4).await;
    let app = Arc::new(crate::helpers::spawn_app_with(&[("DATABASE_URL", url.as_str())]).await);
    app.load_demo().await;
    let other = app.load_other_tenant("citus-neighbour").await;
    let db = Database::connect(&url).await.unwrap();
    let demo = rows(&db, "SELECT id::text FROM tenants WHERE code = 'demo-county'").await[0][0].clone();
    let counts = "SELECT tenant_id::text, count(*)::text FROM institutions GROUP BY 1 ORDER BY 1";
    let before = rows(&db, counts).await;
    let (shared, _, _, alone) = tenant_shard(&db, &demo).await;
    assert!(!alone, "four shards for two tenants and more: the demo shares its shard at first");

    let out = cloudhis(&url, &["citus", "isolate-tenant", "demo-county"]);
    assert!(out.contains("tenant demo-county isolated on shard"), "{out}");
    let (shard, host, port, alone) = tenant_shard(&db, &demo).await;
    assert!(alone && shard != shared, "a shard of its own: {shard} (was {shared})");
    let (neighbour, ..) = tenant_shard(&db, &other.to_string()).await;
    assert_ne!(neighbour, shard);
    assert_eq!(rows(&db, counts).await, before, "every row is still there");
    let again = cloudhis(&url, &["citus", "isolate-tenant", "demo-county"]);
    assert!(again.contains(&format!("already has shard {shard}")), "{again}");

    // A burst of visits, and the demo's shards moved to the other worker in the middle of it.
    let doctor = app.login("village.doctor").await;
    let (stop, visits, refused, retried) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let mut clients = Vec::new();
    for c in 0..4 {
        let (app, token, stop, visits, refused, retried) =
            (app.clone(), doctor.token.clone(), stop.clone(), visits.clone(), refused.clone(), retried.clone());
        clients.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                i += 1;
                // Requests as a careful client sends them: a 503 (the database unavailable for a
                // moment) is sent again after its Retry-After with the same Idempotency-Key.
                let post = |path: String, body: serde_json::Value| {
                    let (app, token, retried) = (app.clone(), token.clone(), retried.clone());
                    async move {
                        let (r, n) = app.post_retrying(&path, &token, body).await;
                        retried.fetch_add(n as usize, Ordering::SeqCst);
                        r
                    }
                };
                let p = post(
                    "/api/v1/patients".into(),
                    serde_json::json!({"name": format!("迁移{}", cn(c * 100_000 + i)), "phone": format!("1390{c}{i:06}"),
                        "resident_id": crate::patients::rid("130999", &format!("19{:02}{:02}{:02}", 40 + i % 50, 1 + c, 1 + i % 28), (i % 1000) as u32)}),
                )
                .await;
                if p.status != 201 {
                    refused.fetch_add(1, Ordering::SeqCst);
                    eprintln!("register: {} {}", p.status, p.text);
                    continue;
                }
                let e = post("/api/v1/encounters".into(), serde_json::json!({"person_id": p.body["person"]["id"]})).await;
                let ok = e.status == 201 && {
                    let id = e.body["id"].as_str().unwrap().to_string();
                    let v = post(format!("/api/v1/encounters/{id}/vitals"), serde_json::json!({"systolic": 132, "diastolic": 84})).await;
                    let d = post(format!("/api/v1/encounters/{id}/diagnoses"), serde_json::json!({"code": "I10"})).await;
                    let done = post(format!("/api/v1/encounters/{id}/close"), serde_json::json!({})).await;
                    if v.status != 201 || d.status != 201 || done.status != 200 {
                        eprintln!("vitals: {} {}; diagnose: {} {}; close: {} {}", v.status, v.text, d.status, d.text, done.status, done.text);
                    }
                    v.status == 201 && d.status == 201 && done.status == 200
                };
                if e.status != 201 {
                    eprintln!("open: {} {}", e.status, e.text);
                }
                if ok {
                    visits.fetch_add(1, Ordering::SeqCst);
                } else {
                    refused.fetch_add(1, Ordering::SeqCst);
                }
            }
        }));
    }
    let wait_for = |n: usize| {
        let (visits, refused) = (visits.clone(), refused.clone());
        async move {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
            while visits.load(Ordering::SeqCst) < n {
                assert_eq!(refused.load(Ordering::SeqCst), 0, "a request failed (see above)");
                assert!(std::time::Instant::now() < deadline, "visits stalled at {}", visits.load(Ordering::SeqCst));
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
    };
    wait_for(8).await;
    let workers =
        rows(&db, "SELECT node_name::text, node_port::text FROM citus_get_active_worker_nodes() ORDER BY 2").await;
    let target = workers.iter().find(|w| w[0] != host || w[1] != port).expect("another worker").clone();
    let moved_at = visits.load(Ordering::SeqCst);
    let started = std::time::Instant::now();
    rows(
        &db,
        &format!(
            "SELECT citus_move_shard_placement({shard}, '{host}', {port}, '{}', {}, shard_transfer_mode => 'block_writes')::text",
            target[0], target[1]
        ),
    )
    .await;
    let after_move = visits.load(Ordering::SeqCst);
    eprintln!(
        "shard {shard} moved from {host}:{port} to {}:{} in {:.2} s; visits before the move {moved_at}, when it ended {after_move}",
        target[0],
        target[1],
        started.elapsed().as_secs_f64()
    );
    wait_for(after_move + 8).await;
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.await.unwrap();
    }
    let (moved, new_host, new_port, alone) = tenant_shard(&db, &demo).await;
    assert_eq!(
        (moved.as_str(), new_host.as_str(), new_port.as_str(), alone),
        (shard.as_str(), target[0].as_str(), target[1].as_str(), true)
    );
    assert_eq!(refused.load(Ordering::SeqCst), 0, "no request failed");
    let done = visits.load(Ordering::SeqCst);
    eprintln!("visits in all: {done}, none refused; {} answers 503 sent again", retried.load(Ordering::SeqCst));
    assert!(after_move > moved_at || done > after_move, "visits went on across the move");
    // Every visit is there, closed, with its vitals; and the audit trail holds.
    let closed =
        rows(&db, &format!("SELECT count(*)::text FROM encounters WHERE tenant_id = '{demo}' AND status = 'closed'"))
            .await;
    assert_eq!(closed[0][0], done.to_string());
    let vitals = rows(&db, &format!("SELECT count(*)::text FROM vital_signs WHERE tenant_id = '{demo}'")).await;
    assert_eq!(vitals[0][0], done.to_string());
    let verify = cloudhis(&url, &["audit", "verify"]);
    assert!(verify.contains("audit chain intact"), "{verify}");
}

/// Routing: a tenant-scoped request's queries go to one shard. With
/// `citus.multi_task_query_log_level = 'error'` on the database, Citus refuses any query that
/// would run on more than one shard, so a request that fans out answers 500. The main paths run
/// through the API with the background workers off (the relay, the sweep and the jobs read
/// across tenants by design): register, every visit step, the worklists, a referral up through
/// each transition and back down, and the bureau's dashboard.
#[tokio::test]
#[ignore = "needs a Citus cluster: set CLOUDHIS_CITUS_URL (../shared/citus/cluster start prints it); .ci/run does"]
async fn the_main_paths_of_a_community_are_router_queries_to_one_shard() {
    use serde_json::json;
    let url = fresh_citus_database(&crate::helpers::citus_url(), 4).await;
    {
        // Migrated, distributed and the demo community applied (the tenant apply and the
        // distribution step are operator work; they may reach every shard).
        let setup = crate::helpers::spawn_app_with(&[("DATABASE_URL", url.as_str())]).await;
        setup.load_demo().await;
    }
    let db = Database::connect(&url).await.unwrap();
    db.execute_unprepared("DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET citus.multi_task_query_log_level = error', current_database()); END $$")
        .await
        .unwrap();
    let probe = Database::connect(&url).await.unwrap();
    let fan_out =
        probe.execute_unprepared("SELECT count(*) FROM encounters").await.expect_err("a multi-shard query fails");
    assert!(fan_out.to_string().contains("multi-task query"), "{fan_out}");
    let app = crate::helpers::spawn_app_with(&[("DATABASE_URL", url.as_str()), ("CLOUDHIS_WORKERS", "false")]).await;
    // The app's own connections (as the app role) refuse a fan-out too.
    let level = rows(app.state.db.raw(), "SELECT current_setting('citus.multi_task_query_log_level')::text").await;
    assert_eq!(level[0][0], "error");

    let doc = app.login("village.doctor").await;
    let ok = |what: &str, r: &crate::helpers::Resp| assert!(r.status.is_success(), "{what}: {} {}", r.status, r.text);
    let visit = crate::visit::full_visit(&app, &doc, 0).await;
    for path in [
        format!("/api/v1/patients/{}", visit.person),
        format!("/api/v1/encounters/{}", visit.encounter),
        "/api/v1/encounters?limit=20".to_string(),
        "/api/v1/followups/worklist".to_string(),
        "/api/v1/pharmacy/stock?drug_code=amlodipine-5mg".to_string(),
    ] {
        ok(&path, &app.get(&path, &doc.token).await);
    }
    ok("search", &app.post("/api/v1/patients/search", &doc.token, json!({"name": "陈"})).await);

    let county = app.login("coordinator").await;
    let ids = app.institutions(&county).await;
    let up = app
        .post(
            "/api/v1/referrals",
            &doc.token,
            json!({"person_id": visit.person, "direction": "up", "to_institution_id": ids["county-hospital"],
                   "reason": "血压控制不佳", "urgent": false, "source_encounter_id": visit.encounter}),
        )
        .await;
    ok("refer up", &up);
    let id = up.body["id"].as_str().unwrap().to_string();
    ok("inbox", &app.get("/api/v1/referrals/inbox", &county.token).await);
    ok("the referral", &app.get(&format!("/api/v1/referrals/{id}"), &county.token).await);
    for step in ["accept", "arrive"] {
        ok(step, &app.post(&format!("/api/v1/referrals/{id}/{step}"), &county.token, json!({})).await);
    }
    ok(
        "complete",
        &app.post(&format!("/api/v1/referrals/{id}/complete"), &county.token, json!({"note": "好转"})).await,
    );
    let down = app
        .post(
            &format!("/api/v1/referrals/{id}/down"),
            &county.token,
            json!({"discharge_summary": "血压平稳", "rehab_plan": "每周测血压"}),
        )
        .await;
    ok("refer down", &down);
    let down_id = down.body["id"].as_str().unwrap().to_string();
    ok("accept down", &app.post(&format!("/api/v1/referrals/{down_id}/accept"), &doc.token, json!({})).await);
    ok("sent", &app.get("/api/v1/referrals/sent", &doc.token).await);

    let bureau = app.login("bureau").await;
    for path in ["/api/v1/statistics/kpis", "/api/v1/statistics/series?kpi=visits&grain=day"] {
        ok(path, &app.get(path, &bureau.token).await);
    }
}

/// Tests make their databases in parallel; registering the workers in one copies the app role to
/// each worker, and two copies at once used to fail one of them ("tuple concurrently updated",
/// seen as "failure on connection marked as essential"). Six at once all succeed.
#[tokio::test]
#[ignore = "needs a Citus cluster: set CLOUDHIS_CITUS_URL (../shared/citus/cluster start prints it); .ci/run does"]
async fn databases_prepared_at_the_same_time_all_get_their_workers() {
    let coordinator = std::env::var("CLOUDHIS_CITUS_URL")
        .expect("CLOUDHIS_CITUS_URL must name a Citus coordinator (../shared/citus/cluster start DIR prints it)");
    let made = futures::future::join_all((0..6).map(|_| fresh_citus_database(&coordinator, 4))).await;
    for url in made {
        let db = Database::connect(&url).await.unwrap();
        let workers = rows(&db, "SELECT count(*)::text FROM citus_get_active_worker_nodes()").await;
        assert_eq!(workers, vec![vec!["2".to_string()]], "{url}");
        db.close().await.ok();
    }
}
