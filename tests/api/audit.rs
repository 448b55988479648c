//! The audit chain: intact after a normal run, and a tampered row is found and named.

use reqwest::Method;
use sea_orm::ConnectionTrait;

use crate::helpers::{Backend, spawn_app};

#[tokio::test]
async fn audit_verify_passes_after_a_normal_run_and_names_an_edited_row() {
    let app = spawn_app().await;
    app.load_demo().await;
    let s = app.login("village.doctor").await;
    app.try_login("demo-county", "village.doctor", "Wrong@2026").await;
    app.request(Method::POST, "/api/v1/auth/logout", Some(&s.token), None).await;
    let admin = app.login("admin").await;

    // The trail records the logins, the failure and the logout, newest first.
    let events = app.get("/api/v1/audit/events", &admin.token).await;
    assert_eq!(events.status, 200, "{}", events.text);
    let actions: Vec<(String, String)> = events
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["action"].as_str().unwrap().into(), e["outcome"].as_str().unwrap().into()))
        .collect();
    assert_eq!(
        actions,
        [
            ("auth.login", "success"),
            ("auth.logout", "success"),
            ("auth.login", "denied"),
            ("auth.login", "success"),
            ("patient.bulk_import", "success"),
        ]
        .map(|(a, o)| (a.to_string(), o.to_string()))
    );

    // Reading the trail is itself recorded, after the rows it returned.
    let again = app.get("/api/v1/audit/events?limit=1", &admin.token).await;
    assert_eq!(again.body[0]["action"], "audit.read");
    assert_eq!(again.body[0]["purpose"], "administration");
    assert_eq!(again.body[0]["actor_user_id"], admin.user_id.to_string());

    let ok = app.cli(&["audit", "verify"]);
    let out = String::from_utf8_lossy(&ok.stdout);
    assert!(ok.status.success(), "{out} {}", String::from_utf8_lossy(&ok.stderr));
    assert!(out.contains("demo-county: 7 rows checked") && out.contains("audit chain intact"), "{out}");

    // Tamper with the first login's row as the database owner.
    let owner = app.owner_connection().await;
    if app.backend == Backend::Sqlite {
        owner.execute_unprepared("DROP TRIGGER audit_log_no_update").await.unwrap();
    }
    let (id, chain, seq) = first_row(&owner, "auth.login").await;
    owner
        .execute_unprepared(&format!("UPDATE audit_log SET outcome = 'denied' WHERE chain = {chain} AND seq = {seq}"))
        .await
        .unwrap();
    let bad = app.cli(&["audit", "verify"]);
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains(&format!("BROKEN in tenant demo-county chain {chain} at row seq={seq}")), "{err}");
    assert!(err.contains(&id.to_string()), "names the row id: {err}");
    assert!(err.contains("edited"), "{err}");
}

#[tokio::test]
async fn a_deleted_row_breaks_the_chain() {
    let app = spawn_app().await;
    app.load_demo().await;
    app.login("village.doctor").await;
    app.login("village.doctor").await;
    app.login("village.doctor").await;
    let owner = app.owner_connection().await;
    if app.backend == Backend::Sqlite {
        owner.execute_unprepared("DROP TRIGGER audit_log_no_delete").await.unwrap();
    }
    // The second login's row.
    let (chain, seq) = {
        let backend = owner.get_database_backend();
        let row = owner
            .query_one_raw(sea_orm::Statement::from_string(
                backend,
                "SELECT id, chain, seq FROM audit_log WHERE action = 'auth.login' ORDER BY id LIMIT 1 OFFSET 1",
            ))
            .await
            .unwrap()
            .unwrap();
        (row.try_get::<i16>("", "chain").unwrap(), row.try_get::<i64>("", "seq").unwrap())
    };
    owner.execute_unprepared(&format!("DELETE FROM audit_log WHERE chain = {chain} AND seq = {seq}")).await.unwrap();
    let report = cloudhis::audit::verify(&app.state.db).await.unwrap();
    let broken = report.broken.expect("a gap is found");
    assert_eq!((broken.chain, broken.seq), (chain, seq));
    assert!(broken.reason.contains("missing"), "{}", broken.reason);
}

#[tokio::test]
async fn the_app_cannot_rewrite_history() {
    let app = spawn_app().await;
    app.load_demo().await;
    app.login("village.doctor").await;
    // Through the application's own connection (the app role on PostgreSQL).
    let err = app
        .state
        .db
        .raw()
        .execute_unprepared("UPDATE audit_log SET outcome = 'denied'")
        .await
        .expect_err("audit rows cannot be updated by the app");
    let msg = err.to_string();
    assert!(msg.contains("append-only") || msg.contains("permission denied"), "{msg}");
    assert!(app.state.db.raw().execute_unprepared("DELETE FROM audit_log").await.is_err());
}

/// The first row (by id, the order rows were written) with `action`: its id, chain and number.
async fn first_row(owner: &sea_orm::DatabaseConnection, action: &str) -> (uuid::Uuid, i16, i64) {
    let row = owner
        .query_one_raw(sea_orm::Statement::from_string(
            owner.get_database_backend(),
            format!("SELECT id, chain, seq FROM audit_log WHERE action = '{action}' ORDER BY id LIMIT 1"),
        ))
        .await
        .unwrap()
        .unwrap();
    (row.try_get("", "id").unwrap(), row.try_get("", "chain").unwrap(), row.try_get("", "seq").unwrap())
}

/// One audit row, as the tests that find rows by request id read it.
#[derive(Debug, sea_orm::FromQueryResult)]
pub struct AuditRow {
    pub action: String,
    pub purpose: String,
    pub outcome: String,
    pub resource_id: Option<String>,
    pub institution_id: Option<uuid::Uuid>,
    pub actor_user_id: Option<uuid::Uuid>,
    pub subject_person_id: Option<uuid::Uuid>,
}

/// The audit rows a request wrote, found by its `x-request-id`.
pub async fn rows_of_request_id(app: &crate::helpers::TestApp, request_id: &str) -> Vec<AuditRow> {
    use sea_orm::FromQueryResult;
    let owner = app.owner_connection().await;
    let backend = owner.get_database_backend();
    let columns = "action, purpose, outcome, resource_id, institution_id, actor_user_id, subject_person_id";
    let sql = if backend == sea_orm::DbBackend::Postgres {
        format!("SELECT {columns} FROM audit_log WHERE request_id = $1")
    } else {
        format!("SELECT {columns} FROM audit_log WHERE request_id = ?")
    };
    AuditRow::find_by_statement(sea_orm::Statement::from_sql_and_values(backend, sql, [request_id.into()]))
        .all(&owner)
        .await
        .unwrap()
}

async fn rows_of_request(app: &crate::helpers::TestApp, r: &crate::helpers::Resp) -> Vec<AuditRow> {
    rows_of_request_id(app, r.headers["x-request-id"].to_str().unwrap()).await
}

/// MLPS level 3 records denied attempts: a request refused for want of a permission leaves one
/// `access.denied` row naming the operation and the permission, never the request's data.
#[tokio::test]
async fn a_permission_refusal_is_audited_with_the_operation_and_permission() {
    let app = spawn_app().await;
    app.load_demo().await;
    let doctor = app.login("county.doctor").await;
    let r = app.get("/api/v1/audit/events", &doctor.token).await;
    assert_eq!((r.status.as_u16(), r.code()), (403, "forbidden"));
    let rows = rows_of_request(&app, &r).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!((rows[0].action.as_str(), rows[0].outcome.as_str()), ("access.denied", "denied"));
    assert_eq!(rows[0].resource_id.as_deref(), Some("GET audit_list needs audit.read"));
    assert_eq!(rows[0].actor_user_id, Some(doctor.user_id));
    assert_eq!(rows[0].institution_id, Some(doctor.institution_id));

    // In another institution: the row names the institution the caller reached for.
    let village = app.login("village.doctor").await;
    let admin = app.login("admin").await;
    let xihe = app.institutions(&admin).await["v-xihe"];
    let body = serde_json::json!({"username": "intruder", "display_name": "入侵者", "password": "Intrude@2026", "roles": ["cashier"]});
    let r = app.post(&format!("/api/v1/institutions/{xihe}/staff"), &village.token, body).await;
    assert_eq!((r.status.as_u16(), r.code()), (403, "institution_forbidden"));
    let rows = rows_of_request(&app, &r).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].resource_id.as_deref(), Some("POST staff_create needs staff.write"));
    assert_eq!(rows[0].institution_id, Some(xihe));
    assert!(!rows[0].resource_id.as_deref().unwrap().contains("intruder"));

    // A refusal a service audits itself (no referral grant) is not written twice.
    let v = crate::visit::full_visit(&app, &village, 4).await;
    let county = app.institutions(&admin).await["county-hospital"];
    let referral = app
        .post(
            "/api/v1/referrals",
            &village.token,
            serde_json::json!({"person_id": v.person, "direction": "up", "to_institution_id": county, "reason": "转诊"}),
        )
        .await;
    let coordinator = app.login("coordinator").await;
    let records = app
        .get(&format!("/api/v1/referrals/{}/records", referral.body["id"].as_str().unwrap()), &coordinator.token)
        .await;
    assert_eq!((records.status.as_u16(), records.code()), (403, "grant_missing"));
    let rows = rows_of_request(&app, &records).await;
    assert_eq!(rows.iter().map(|r| r.action.as_str()).collect::<Vec<_>>(), ["referral.records"], "{rows:?}");
}

/// Several chains per tenant (PostgreSQL): while chain 0's head is held, requests append to
/// chain 1, and `audit verify` still finds a row cut off chain 1's end, an edited row and a
/// deleted row there, naming the chain.
#[tokio::test]
#[ignore = "needs PostgreSQL (CLOUDHIS_TEST_BACKEND=postgres; .ci/run runs it): SQLite writes one chain"]
async fn verify_names_a_truncated_an_edited_and_a_deleted_row_on_any_chain() {
    let app = spawn_app().await;
    crate::helpers::require_postgres();
    app.load_demo().await;
    let tenant = app.login("admin").await.tenant_id;
    let owner = app.owner_connection().await;
    // Hold chain 0's head, as a long write would: three logins append to chain 1 meanwhile.
    let held = sea_orm::TransactionTrait::begin(&owner).await.unwrap();
    held.execute_unprepared(&format!(
        "SELECT 1 FROM audit_heads WHERE tenant_id = '{tenant}' AND chain = 0 FOR UPDATE"
    ))
    .await
    .unwrap();
    for _ in 0..3 {
        app.login("village.doctor").await;
    }
    held.rollback().await.unwrap();
    let on_chain_one = crate::referrals::count(&app, "SELECT count(*) FROM audit_log WHERE chain = 1").await;
    assert!(on_chain_one >= 3, "the logins went to chain 1 ({on_chain_one} rows)");
    let verify = || async { cloudhis::audit::verify(&app.state.db).await.unwrap().broken };
    assert!(verify().await.is_none(), "intact");

    // Truncated: the last row of chain 1 removed (and put back).
    let last = format!("chain = 1 AND seq = {on_chain_one}");
    owner.execute_unprepared(&format!("CREATE TABLE saved_row AS SELECT * FROM audit_log WHERE {last}")).await.unwrap();
    owner.execute_unprepared(&format!("DELETE FROM audit_log WHERE {last}")).await.unwrap();
    let broken = verify().await.expect("a cut-off end is found");
    assert_eq!((broken.chain, broken.seq), (1, on_chain_one), "{}", broken.reason);
    assert!(broken.reason.contains("rows deleted"), "{}", broken.reason);
    owner.execute_unprepared("INSERT INTO audit_log SELECT * FROM saved_row").await.unwrap();
    assert!(verify().await.is_none(), "intact again");

    // Edited.
    owner.execute_unprepared("UPDATE audit_log SET outcome = 'denied' WHERE chain = 1 AND seq = 2").await.unwrap();
    let broken = verify().await.expect("an edit is found");
    assert_eq!((broken.chain, broken.seq), (1, 2));
    assert!(broken.reason.contains("edited"), "{}", broken.reason);
    owner.execute_unprepared("UPDATE audit_log SET outcome = 'success' WHERE chain = 1 AND seq = 2").await.unwrap();
    assert!(verify().await.is_none(), "intact again");

    // Deleted from the middle.
    owner.execute_unprepared("DELETE FROM audit_log WHERE chain = 1 AND seq = 2").await.unwrap();
    let broken = verify().await.expect("a gap is found");
    assert_eq!((broken.chain, broken.seq), (1, 2));
    assert!(broken.reason.contains("missing"), "{}", broken.reason);
}

/// A replica killed with SIGKILL in the middle of a burst of reads (PostgreSQL, where reads'
/// rows go through the group writer): every read that was answered 200 has its audit row, and
/// the chains verify.
#[tokio::test]
#[ignore = "needs PostgreSQL (CLOUDHIS_TEST_BACKEND=postgres; .ci/run runs it): the group writer is PostgreSQL's"]
async fn a_replica_killed_during_a_read_burst_loses_no_audit_row_of_an_answered_read() {
    use std::sync::{Arc, Mutex};
    let app = spawn_app().await;
    crate::helpers::require_postgres();
    app.load_demo().await;
    let doctor = app.login("village.doctor").await;
    let person = crate::referrals::patient(&app, &doctor, 7).await;
    let mut replica = crate::resilience::Replica::start(&app, &[]).await;
    let answered: Arc<Mutex<Vec<String>>> = Arc::default();
    let client = reqwest::Client::new();
    let mut readers = Vec::new();
    for _ in 0..8 {
        let (client, answered, base, token) =
            (client.clone(), answered.clone(), replica.base.clone(), doctor.token.clone());
        let url = format!("{base}/api/v1/patients/{person}");
        readers.push(tokio::spawn(async move {
            loop {
                let Ok(r) = client.get(&url).bearer_auth(&token).send().await else { return };
                if r.status() != 200 {
                    return;
                }
                let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
                // The body arrived too: the request was answered.
                if r.bytes().await.is_err() {
                    return;
                }
                answered.lock().unwrap().push(id);
            }
        }));
    }
    crate::referrals::eventually("a few hundred reads to be answered", 60, || {
        let answered = answered.clone();
        async move { answered.lock().unwrap().len() >= 300 }
    })
    .await;
    replica.kill();
    for r in readers {
        r.await.unwrap();
    }
    let answered = answered.lock().unwrap().clone();
    let owner = app.owner_connection().await;
    let rows = owner
        .query_all_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT request_id FROM audit_log WHERE action = 'patient.read' AND request_id IS NOT NULL",
        ))
        .await
        .unwrap();
    let audited: std::collections::HashSet<String> =
        rows.iter().map(|r| r.try_get::<String>("", "request_id").unwrap()).collect();
    let lost: Vec<&String> = answered.iter().filter(|id| !audited.contains(*id)).collect();
    assert!(lost.is_empty(), "{} of {} answered reads have no audit row", lost.len(), answered.len());
    let report = cloudhis::audit::verify(&app.state.db).await.unwrap();
    assert!(report.broken.is_none(), "{:?}", report.broken);
}

#[tokio::test]
#[ignore = "needs single-node PostgreSQL (CLOUDHIS_TEST_BACKEND=postgres; .ci/run runs it): Citus shards plan on their own statistics"]
async fn a_key_lookup_keeps_its_primary_key_when_the_table_was_analysed_tiny() {
    let app = spawn_app().await;
    crate::helpers::require_postgres();
    let owner = app.owner_connection().await;
    // Every tenant table says a tenant is a large share of it, whatever an ANALYZE samples.
    let unset = owner
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT count(*) AS n FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
              WHERE a.attname = 'tenant_id' AND c.relkind = 'r' AND c.relnamespace = 'public'::regnamespace
                AND NOT coalesce(a.attoptions @> ARRAY['n_distinct=10'], false)",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get::<i64>("", "n")
        .unwrap();
    assert_eq!(unset, 0, "tenant tables without the n_distinct setting");
    // Migrating a new database analyses nothing: an empty table analysed looks empty to the
    // planner until the next ANALYZE, however much it holds by then.
    let analysed = owner
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT count(*) AS n FROM pg_stats WHERE schemaname = 'public' AND tablename = 'persons'",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get::<i64>("", "n")
        .unwrap();
    assert_eq!(analysed, 0, "persons has statistics right after migrate");

    // The trail analysed while it held one row, then grown: the head's check must still find its
    // row by the primary key, not by scanning the tenant's rows through a smaller index.
    let row = |seq: &str| {
        format!(
            "INSERT INTO audit_log (tenant_id, chain, seq, id, occurred_at, action, resource_type, purpose,
                                    outcome, prev_hash, hash)
             SELECT '01a24cea-abdd-752f-839d-197fbd6d1d9e', 15, s, gen_random_uuid(), now(), 'probe', 'probe',
                    'treatment', 'ok', md5(s::text), md5(s::text) FROM {seq} AS s"
        )
    };
    owner.execute_unprepared(&row("generate_series(1, 1)")).await.unwrap();
    owner.execute_unprepared("ANALYZE audit_log").await.unwrap();
    owner.execute_unprepared(&row("generate_series(2, 20000)")).await.unwrap();
    use sea_orm::TransactionTrait;
    let session = owner.begin().await.unwrap();
    session.execute_unprepared("SET LOCAL plan_cache_mode = force_generic_plan").await.unwrap();
    session
        .execute_unprepared(
            "PREPARE probe(uuid, int, bigint, text) AS SELECT 1 FROM audit_log l
               WHERE l.tenant_id = $1 AND l.chain = $2 AND l.seq = $3 AND l.hash = $4",
        )
        .await
        .unwrap();
    let plan: Vec<String> = session
        .query_all_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "EXPLAIN EXECUTE probe('01a24cea-abdd-752f-839d-197fbd6d1d9e', 15, 9000, 'x')",
        ))
        .await
        .unwrap()
        .iter()
        .map(|r| r.try_get::<String>("", "QUERY PLAN").unwrap())
        .collect();
    session.rollback().await.unwrap();
    // The trail is partitioned by month: the month holding the rows is probed by its primary
    // key (the empty partitions ahead are scanned at no cost).
    let month = format!("audit_log_y{}", chrono::Utc::now().format("%Ym%m"));
    assert!(plan.iter().any(|l| l.contains(&format!("Index Scan using {month}_pkey on {month}"))), "{plan:#?}");
}

/// The month boundaries an archive test works with: the first of next month (so this month's
/// rows are archived) and a "today" far enough after it that the six months kept allow it.
fn archive_request(out: &std::path::Path) -> cloudhis::audit::archive::ArchiveRequest {
    use chrono::{Datelike, Months};
    let now = chrono::Utc::now().date_naive();
    let before = now.with_day(1).unwrap() + Months::new(1);
    cloudhis::audit::archive::ArchiveRequest {
        before,
        keep_months: 6,
        today: before + Months::new(6),
        out: out.to_path_buf(),
    }
}

/// Archiving a month (issue 25): its rows go to a file, each chain is sealed where the file
/// ends, the month leaves the database, and `audit verify` goes on from the seal. The file is
/// checked against its seals; an altered file, an altered seal and a row deleted after the
/// seal are each found. Months within the retention are refused.
#[tokio::test]
async fn an_archived_month_is_sealed_and_the_chain_goes_on_from_the_seal() {
    let app = spawn_app().await;
    app.load_demo().await;
    app.login("village.doctor").await;
    app.login("admin").await;
    let owner_db = cloudhis::platform::Db::connect_owner(&app.state.config).await.unwrap();
    let owner = app.owner_connection().await;
    let count = |sql: &'static str| crate::referrals::count(&app, sql);
    let before_rows = count("SELECT count(*) FROM audit_log").await;
    assert!(before_rows >= 3, "{before_rows}");

    // Within the six months kept, or fewer than six kept: refused, nothing touched.
    let dir = tempfile::tempdir().unwrap();
    let this_month = chrono::Utc::now().format("%Y-%m").to_string();
    let out = dir.path().to_str().unwrap();
    let refused = app.cli(&["audit", "archive", "--before", &this_month, "--out", out]);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("within the 6 months kept"), "{err}");
    let refused = app.cli(&["audit", "archive", "--before", "2020-01", "--out", out, "--keep-months", "5"]);
    assert!(String::from_utf8_lossy(&refused.stderr).contains("at least 6 months"), "refused fewer months kept");
    assert_eq!(count("SELECT count(*) FROM audit_log").await, before_rows);

    let request = archive_request(dir.path());
    let months = cloudhis::audit::archive::archive(&owner_db, &request).await.unwrap();
    let archived: u64 = months.iter().map(|m| m.rows).sum();
    assert_eq!(archived as i64, before_rows, "every row was before the month");
    assert_eq!(count("SELECT count(*) FROM audit_log").await, 0, "the month left the database");
    assert!(count("SELECT count(*) FROM audit_seals").await >= 1);
    let file = months.iter().find(|m| m.rows > 0).unwrap().file.clone().unwrap();
    assert!(months.iter().all(|m| m.file.is_some() == (m.rows > 0)), "a month without rows leaves no file");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "only the owner reads an archive file");
    }
    let file_arg = file.to_str().unwrap();
    let ok = app.cli(&["audit", "verify-archive", file_arg]);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    assert!(String::from_utf8_lossy(&ok.stdout).contains(&format!("archive intact: {before_rows} rows")));

    // The trail goes on after the seal, and verify starts there.
    app.login("village.doctor").await;
    let verify = || async { cloudhis::audit::verify(&app.state.db).await.unwrap().broken };
    assert!(verify().await.is_none(), "intact after the archive");
    let ok = app.cli(&["audit", "verify"]);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));

    // Rows dated in a month already archived (here: the login just now) are not archived over
    // its sealed file.
    let sealed = std::fs::read(&file).unwrap();
    let again = cloudhis::audit::archive::archive(&owner_db, &request).await.unwrap_err();
    assert!(again.to_string().contains("never overwritten"), "{again}");
    assert_eq!(std::fs::read(&file).unwrap(), sealed, "the sealed file is untouched");
    assert!(verify().await.is_none(), "intact after the refusal");

    // An altered file.
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, text.replacen("\"success\"", "\"denied\"", 1)).unwrap();
    let bad = app.cli(&["audit", "verify-archive", file_arg]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("the file was changed"));
    std::fs::write(&file, &text).unwrap();

    // An altered seal: the row after it no longer follows.
    let seal = "tenant_id IN (SELECT tenant_id FROM audit_log) AND chain IN (SELECT chain FROM audit_log)";
    owner.execute_unprepared(&format!("UPDATE audit_seals SET hash = upper(hash) WHERE {seal}")).await.unwrap();
    let broken = verify().await.expect("an altered seal is found");
    assert!(broken.reason.contains("prev_hash"), "{}", broken.reason);
    owner.execute_unprepared(&format!("UPDATE audit_seals SET hash = lower(hash) WHERE {seal}")).await.unwrap();
    assert!(verify().await.is_none(), "intact again");

    // The first row after the seal deleted.
    if app.backend == Backend::Sqlite {
        owner.execute_unprepared("DROP TRIGGER audit_log_no_delete").await.unwrap();
    }
    owner.execute_unprepared("DELETE FROM audit_log WHERE seq = (SELECT min(seq) FROM audit_log)").await.unwrap();
    let broken = verify().await.expect("a deleted row after the seal is found");
    assert!(broken.reason.contains("missing") || broken.reason.contains("rows deleted"), "{}", broken.reason);
}

/// A month whose chain is broken is not archived: nothing is written, sealed or removed.
#[tokio::test]
async fn a_broken_chain_is_not_archived() {
    let app = spawn_app().await;
    app.load_demo().await;
    app.login("village.doctor").await;
    let owner = app.owner_connection().await;
    if app.backend == Backend::Sqlite {
        owner.execute_unprepared("DROP TRIGGER audit_log_no_update").await.unwrap();
    }
    let (_, chain, seq) = first_row(&owner, "auth.login").await;
    owner
        .execute_unprepared(&format!("UPDATE audit_log SET outcome = 'denied' WHERE chain = {chain} AND seq = {seq}"))
        .await
        .unwrap();
    let owner_db = cloudhis::platform::Db::connect_owner(&app.state.config).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let err = cloudhis::audit::archive::archive(&owner_db, &archive_request(dir.path())).await.unwrap_err();
    assert!(err.to_string().contains(&format!("breaks at seq {seq}")), "{err}");
    assert_eq!(crate::referrals::count(&app, "SELECT count(*) FROM audit_seals").await, 0);
    assert!(crate::referrals::count(&app, "SELECT count(*) FROM audit_log").await > 0, "nothing removed");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "no file left");
}

/// A chain's row dated in a later month than the rows after it (a clock that stepped back) is
/// named as such, and nothing is archived.
#[tokio::test]
async fn a_row_dated_out_of_order_is_named_and_nothing_is_archived() {
    use cloudhis::platform::audit::entity::audit_log;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    let app = spawn_app().await;
    app.load_demo().await;
    app.login("village.doctor").await;
    app.login("admin").await;
    let owner = app.owner_connection().await;
    if app.backend == Backend::Sqlite {
        owner.execute_unprepared("DROP TRIGGER audit_log_no_update").await.unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let request = archive_request(dir.path());
    let later = request.before.and_hms_opt(8, 0, 0).unwrap().and_utc() + chrono::Duration::days(1);
    audit_log::Entity::update_many()
        .col_expr(audit_log::Column::OccurredAt, sea_orm::sea_query::Expr::value(later))
        .filter(audit_log::Column::Chain.eq(0))
        .filter(audit_log::Column::Seq.eq(1))
        .exec(&owner)
        .await
        .unwrap();
    let rows = crate::referrals::count(&app, "SELECT count(*) FROM audit_log").await;
    let owner_db = cloudhis::platform::Db::connect_owner(&app.state.config).await.unwrap();
    let err = cloudhis::audit::archive::archive(&owner_db, &request).await.unwrap_err().to_string();
    assert!(err.contains("row 1 of tenant") && err.contains("chain 0"), "{err}");
    assert!(err.contains(&format!("is dated {}", later.format("%Y-%m"))) && err.contains("out of order"), "{err}");
    assert_eq!(crate::referrals::count(&app, "SELECT count(*) FROM audit_log").await, rows, "nothing removed");
    assert_eq!(crate::referrals::count(&app, "SELECT count(*) FROM audit_seals").await, 0);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "no file left");
}

/// PostgreSQL: the trail is partitioned by month, a month with no partition falls into the
/// default partition, and making the partitions moves those rows into their month.
#[tokio::test]
#[ignore = "needs PostgreSQL (CLOUDHIS_TEST_BACKEND=postgres; .ci/run runs it): SQLite keeps one table"]
async fn rows_of_a_month_without_a_partition_move_into_it_when_it_is_made() {
    let app = spawn_app().await;
    crate::helpers::require_postgres();
    let partitions = "SELECT count(*) FROM pg_inherits WHERE inhparent = 'audit_log'::regclass";
    // This month, three ahead and the default.
    assert_eq!(crate::referrals::count(&app, partitions).await, 5);
    let owner = app.owner_connection().await;
    let part = format!("audit_log_y{}", chrono::Utc::now().format("%Ym%m"));
    owner.execute_unprepared(&format!("ALTER TABLE audit_log DETACH PARTITION {part}")).await.unwrap();
    owner.execute_unprepared(&format!("DROP TABLE {part}")).await.unwrap();
    app.load_demo().await;
    app.login("village.doctor").await;
    let in_default = crate::referrals::count(&app, "SELECT count(*) FROM audit_log_default").await;
    assert!(in_default > 0, "rows of a month without a partition go to the default partition");
    let made = cloudhis::platform::db::audit_partitions(&owner).await.unwrap();
    assert_eq!(made, 1);
    assert_eq!(crate::referrals::count(&app, "SELECT count(*) FROM audit_log_default").await, 0);
    assert_eq!(crate::referrals::count(&app, &format!("SELECT count(*) FROM {part}")).await, in_default);
    let report = cloudhis::audit::verify(&app.state.db).await.unwrap();
    assert!(report.broken.is_none(), "{:?}", report.broken);
}

/// PostgreSQL: a database with a trail from before migration 32 (rows of this month appended by
/// the chain, and a row of an older month on another chain) comes out partitioned by month, each
/// row in its month's partition, none in the default one, and every chain intact.
#[tokio::test]
#[ignore = "needs PostgreSQL (CLOUDHIS_TEST_BACKEND=postgres; .ci/run runs it): SQLite keeps one table"]
async fn upgrading_moves_the_trail_into_month_partitions_with_its_chains_intact() {
    use chrono::SubsecRound;
    use cloudhis::platform::audit::{chain, entity::audit_log};
    use sea_orm::EntityTrait;
    crate::helpers::require_postgres();
    let url = crate::helpers::fresh_pg_database().await;
    let conn = sea_orm::Database::connect(&url).await.unwrap();
    <migrations::Migrator as migrations::MigratorTrait>::up(&conn, Some(31)).await.unwrap();
    let tenant = uuid::Uuid::now_v7();
    conn.execute_unprepared(&format!(
        "INSERT INTO tenants (id, code, name, settings, created_at, updated_at)
         VALUES ('{tenant}', 'upgrade-county', 'Upgrade', '{{}}', now(), now())"
    ))
    .await
    .unwrap();
    // Rows as the version before migration 32 chained them (its head function is not this
    // version's): five of this month on chain 0, and one of an older month on chain 5.
    let row = |chain: i16, seq: i64, at: &str, prev: &str| {
        let mut r = audit_log::Model {
            tenant_id: tenant,
            chain,
            seq,
            id: uuid::Uuid::now_v7(),
            occurred_at: at.parse().unwrap(),
            actor_user_id: None,
            institution_id: None,
            action: "auth.login".into(),
            resource_type: "session".into(),
            resource_id: None,
            subject_person_id: None,
            purpose: "authentication".into(),
            outcome: "success".into(),
            request_id: None,
            prev_hash: prev.into(),
            hash: String::new(),
        };
        r.hash = chain::row_hash(&r);
        r
    };
    let at = chrono::Utc::now().trunc_subsecs(6);
    let (now, this_month) = (at.to_rfc3339(), format!("audit_log_y{}", at.format("%Ym%m")));
    let mut prev = chain::GENESIS.to_string();
    let mut rows = Vec::new();
    for seq in 1..=5 {
        rows.push(row(0, seq, &now, &prev));
        prev = rows.last().unwrap().hash.clone();
    }
    rows.push(row(5, 1, "2026-03-15T08:00:00Z", chain::GENESIS));
    for r in &rows {
        audit_log::Entity::insert(audit_log::ActiveModel::from(r.clone())).exec(&conn).await.unwrap();
    }
    conn.execute_unprepared(&format!(
        "INSERT INTO audit_heads (tenant_id, chain, seq, hash) VALUES ('{tenant}', 0, 5, '{}'), ('{tenant}', 5, 1, '{}')",
        rows[4].hash, rows[5].hash
    ))
    .await
    .unwrap();

    // Started on it, the app migrates (32 included) and verifies.
    let app = crate::helpers::spawn_app_with(&[("DATABASE_URL", url.as_str())]).await;
    let count = |sql: String| {
        let conn = &conn;
        async move {
            let r = conn.query_one_raw(sea_orm::Statement::from_string(sea_orm::DbBackend::Postgres, sql));
            r.await.unwrap().unwrap().try_get_by_index::<i64>(0).unwrap()
        }
    };
    assert_eq!(count(format!("SELECT count(*) FROM {this_month}")).await, 5);
    assert_eq!(count("SELECT count(*) FROM audit_log_y2026m03".into()).await, 1);
    assert_eq!(count("SELECT count(*) FROM audit_log_default".into()).await, 0);
    assert_eq!(count("SELECT count(*) FROM pg_tables WHERE tablename = 'audit_log_unpartitioned'".into()).await, 0);
    let report = cloudhis::audit::verify(&app.state.db).await.unwrap();
    assert!(report.broken.is_none(), "{:?}", report.broken);
    let checked = report.chains.iter().find(|c| c.tenant_code == "upgrade-county").unwrap();
    assert_eq!(checked.rows, 6);
}

/// A writer whose first chain is held by a transaction that has already advanced that head (the
/// update just before its commit) takes another chain at once: it does not wait for that
/// commit. (The chain's creation by `INSERT … ON CONFLICT DO NOTHING` used to wait for it.)
#[tokio::test]
#[ignore = "needs PostgreSQL (CLOUDHIS_TEST_BACKEND=postgres; .ci/run runs it on PostgreSQL and Citus)"]
async fn a_writer_does_not_wait_for_the_commit_of_a_chain_it_passes_over() {
    use sea_orm::TransactionTrait;
    let app = spawn_app().await;
    crate::helpers::require_postgres();
    app.load_demo().await;
    let admin = app.login("admin").await;
    let tenant = admin.tenant_id;
    let owner = app.owner_connection().await;
    // The demo's writes made chain 0. A holder locks it and moves it, and has not committed.
    let holder = owner.begin().await.unwrap();
    holder
        .execute_unprepared(&format!(
            "SELECT 1 FROM audit_heads WHERE tenant_id = '{tenant}' AND chain = 0 FOR UPDATE;
             UPDATE audit_heads SET seq = seq + 1 WHERE tenant_id = '{tenant}' AND chain = 0;"
        ))
        .await
        .unwrap();
    let writer = owner.begin().await.unwrap();
    writer
        .execute_unprepared(&format!(
            "SET LOCAL ROLE cloudhis_app; SET LOCAL cloudhis.tenant_id = '{tenant}'; SET LOCAL lock_timeout = '5s';"
        ))
        .await
        .unwrap();
    let chain = writer
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            format!("SELECT chain FROM audit_head_lock('{tenant}', 0)"),
        ))
        .await;
    writer.rollback().await.unwrap();
    holder.rollback().await.unwrap();
    let chain: i32 = chain.expect("the writer waited for the holder's commit").unwrap().try_get("", "chain").unwrap();
    assert_ne!(chain, 0);
}

/// One request's rows beyond what one INSERT carries (a long export): on PostgreSQL the last
/// statement also moves the head, and the chain they make verifies, gapless.
#[tokio::test]
async fn rows_beyond_one_statement_join_the_chain_in_order() {
    let app = spawn_app().await;
    app.load_demo().await;
    let tenant = app.login("admin").await.tenant_id;
    let rows = || crate::referrals::count(&app, "SELECT count(*) FROM audit_log");
    let before = rows().await;
    let mut tx = app.state.db.begin(&cloudhis::platform::SystemScope { tenant }).await.unwrap();
    for _ in 0..1_500 {
        tx.audit(cloudhis::platform::audit::AuditEntry::new(
            "patient.read",
            "patient",
            cloudhis::platform::audit::Purpose::Treatment,
        ));
    }
    tx.commit().await.unwrap();
    assert_eq!(rows().await, before + 1_500);
    let gaps = crate::referrals::count(
        &app,
        "SELECT count(*) FROM audit_heads h WHERE h.seq <> (SELECT count(*) FROM audit_log l
           WHERE l.tenant_id = h.tenant_id AND l.chain = h.chain)",
    )
    .await;
    assert_eq!(gaps, 0, "every head is its chain's last row");
    let report = cloudhis::audit::verify(&app.state.db).await.unwrap();
    assert!(report.broken.is_none(), "{:?}", report.broken);
}

/// A read's audit rows go through the group commit (`platform::audit::writer`). When the
/// connection is cut at that group's `COMMIT`, the writer asks the server whether it landed before
/// writing the rows again: cut after the server committed, the rows are there once (not twice);
/// cut before, the server rolled back and the rows are written again. The read answers 200 with
/// exactly one audit row either way, and the trail verifies.
#[tokio::test]
#[ignore = "needs single-node PostgreSQL (CLOUDHIS_TEST_BACKEND=postgres; .ci/run runs it): a proxy cuts a COMMIT"]
async fn a_read_whose_audit_commit_was_cut_is_audited_once() {
    use crate::helpers::{CommitCutter, Cut};
    use std::sync::atomic::Ordering;
    crate::helpers::require_postgres();
    assert!(!crate::helpers::on_citus(), "the proxy stands in front of single-node PostgreSQL");
    for at in [Cut::AfterCommit, Cut::BeforeCommit] {
        let real = crate::helpers::fresh_pg_database().await;
        let (head, db) = real.rsplit_once('/').unwrap();
        let (scheme_user, upstream) = head.rsplit_once('@').unwrap();
        let cutter = CommitCutter::start(upstream.to_string(), b"patient.read", at).await;
        let proxied = format!("{scheme_user}@127.0.0.1:{}/{db}?sslmode=disable", cutter.port);
        let app = crate::helpers::spawn_app_with(&[("DATABASE_URL", &proxied)]).await;
        app.load_demo().await;
        let doc = app.login("village.doctor").await;
        let person = crate::referrals::patient(&app, &doc, 11).await;
        let reads =
            format!("SELECT count(*) FROM audit_log WHERE action = 'patient.read' AND subject_person_id = '{person}'");
        let before = crate::referrals::count(&app, &reads).await;

        cutter.armed.store(true, Ordering::SeqCst);
        let read = app.get(&format!("/api/v1/patients/{person}"), &doc.token).await;
        assert_eq!(cutter.cuts.load(Ordering::SeqCst), 1, "the proxy cut the group's COMMIT");
        assert_eq!(read.status, 200, "{}", read.text);
        assert_eq!(crate::referrals::count(&app, &reads).await, before + 1, "one audit row for one read");
        let report = cloudhis::audit::verify(&app.state.db).await.unwrap();
        assert!(report.broken.is_none(), "{:?}", report.broken);
    }
}
