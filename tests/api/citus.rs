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

fn with_db(url: &str, db: &str) -> String {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let base = base.rsplit_once('/').map_or(base, |(b, _)| b);
    if query.is_empty() { format!("{base}/{db}") } else { format!("{base}/{db}?{query}") }
}

/// A fresh database on the coordinator and every worker, with the extension and the nodes.
async fn fresh_citus_database(coordinator: &str) -> String {
    let admin = Database::connect(coordinator).await.expect("the Citus coordinator answers");
    let workers = rows(&admin, "SELECT node_name::text, node_port::text FROM citus_get_active_worker_nodes()").await;
    assert!(!workers.is_empty(), "the cluster has workers");
    let name = format!("cloudhis_citus_{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    admin.execute_unprepared(&format!("CREATE DATABASE {name}")).await.unwrap();
    let url = with_db(coordinator, &name);
    for w in &workers {
        let worker_admin = coordinator.replacen(
            &coordinator[coordinator.find('@').unwrap() + 1..coordinator.rfind('/').unwrap()],
            &format!("{}:{}", w[0], w[1]),
            1,
        );
        let wa = Database::connect(&worker_admin).await.expect("a worker answers");
        wa.execute_unprepared(&format!("CREATE DATABASE {name}")).await.unwrap();
        let wd = Database::connect(&with_db(&worker_admin, &name)).await.unwrap();
        wd.execute_unprepared("CREATE EXTENSION IF NOT EXISTS citus").await.unwrap();
    }
    let db = Database::connect(&url).await.unwrap();
    db.execute_unprepared("CREATE EXTENSION IF NOT EXISTS citus").await.unwrap();
    let host_port = &coordinator[coordinator.find('@').unwrap() + 1..coordinator.rfind('/').unwrap()];
    let (host, port) = host_port.split_once(':').unwrap();
    db.execute_unprepared(&format!("SELECT citus_set_coordinator_host('{host}', {port})")).await.unwrap();
    for w in &workers {
        db.execute_unprepared(&format!("SELECT citus_add_node('{}', {})", w[0], w[1])).await.unwrap();
    }
    url
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
    let url = fresh_citus_database(&coordinator).await;
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
          WHERE n.nspname = 'public' AND c.relkind = 'r' AND c.relname IN (SELECT table_name::text FROM citus_tables WHERE citus_table_type = 'distributed')
            AND (NOT c.relrowsecurity OR NOT EXISTS (SELECT 1 FROM pg_policies p WHERE p.tablename = c.relname))",
    )
    .await;
    assert!(unprotected.is_empty(), "tables without their policies: {unprotected:?}");

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
