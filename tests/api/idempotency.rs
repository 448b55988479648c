//! A create retried with its `Idempotency-Key` after the worst answers: a connection cut during
//! `COMMIT` (the work landed, the client heard 503), and a process that died holding the claim.
//! The retry never does the work twice, and never reports work done that was not.

use std::sync::atomic::Ordering;

use chrono::Utc;
use cloudhis::platform::audit::{AuditEntry, Purpose};
use cloudhis::platform::idempotency::{self, Abandoned, Claim, Start, idempotency_key};
use cloudhis::platform::{Db, SystemScope};
use sea_orm::{ActiveModelTrait, ConnectionTrait, EntityTrait, Statement};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{CommitCutter, Cut, Session, TestApp, spawn_app_with};
use crate::patients::rid;
use crate::referrals::count;

async fn register_with_key(app: &TestApp, s: &Session, key: &str, body: &Value) -> crate::helpers::Resp {
    let r = app
        .client
        .post(format!("{}/api/v1/patients", app.base))
        .bearer_auth(&s.token)
        .header("Idempotency-Key", key)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(body).unwrap())
        .send()
        .await
        .expect("answered");
    crate::helpers::Resp::read(r).await
}

async fn claim_row(db: &Db, claim: &Claim) -> Option<idempotency_key::Model> {
    let tx = db.begin(&SystemScope { tenant: claim.tenant }).await.unwrap();
    let row = idempotency_key::Entity::find_by_id((claim.tenant, claim.user, claim.key.clone())).one(&*tx).await;
    tx.rollback().await.unwrap();
    row.unwrap()
}

/// A transaction of the claimed request: `write` inserts a row, `audit` queues an audit row.
async fn work(db: &Db, claim: &Claim, institution: Uuid, write: bool, audit: bool) {
    let run = async {
        let mut tx = db.begin(&SystemScope { tenant: claim.tenant }).await.unwrap();
        tx.query_one_raw(Statement::from_string(tx.get_database_backend(), "SELECT 1")).await.unwrap();
        if write {
            let other = Claim::new(claim.tenant, claim.user, &Uuid::new_v4().to_string(), "POST", "/x", b"").unwrap();
            other.row(Utc::now(), None).insert(&*tx).await.unwrap();
        }
        if audit {
            tx.audit(AuditEntry::new("test.work", "test", Purpose::Administration).actor(claim.user, institution));
        }
        tx.commit().await.unwrap();
    };
    idempotency::scope(claim.clone(), run).await;
}

#[tokio::test]
async fn a_claim_is_marked_done_only_by_a_transaction_of_its_request_that_wrote_and_audited() {
    let app = spawn_app_with(&[]).await;
    app.load_demo().await;
    let doc = app.login("village.doctor").await;
    let db = &app.state.db;
    let claim = Claim::new(doc.tenant_id, doc.user_id, "marked-1", "POST", "/api/v1/x", b"{}").unwrap();

    // A read that audits, and a side write that does not audit: the work is not done.
    for (write, audit) in [(false, true), (true, false), (false, false)] {
        assert_eq!(idempotency::start(db, &claim).await.unwrap(), Start::Run);
        work(db, &claim, doc.institution_id, write, audit).await;
        assert_eq!(claim_row(db, &claim).await.unwrap().committed_at, None, "write {write}, audit {audit}");
        assert_eq!(idempotency::abandon(db, &claim).await.unwrap(), Abandoned::Released);
        assert!(claim_row(db, &claim).await.is_none(), "a released key is gone");
    }

    // A write that audits: done, and a server error afterwards leaves the answer that says so.
    // (On Citus the question goes to the worker holding the tenant's rows: the coordinator
    // assigns no transaction id for the workers' writes.)
    assert_eq!(idempotency::start(db, &claim).await.unwrap(), Start::Run);
    work(db, &claim, doc.institution_id, true, true).await;
    assert!(claim_row(db, &claim).await.unwrap().committed_at.is_some(), "a write that audits marks the claim");
    assert_eq!(idempotency::abandon(db, &claim).await.unwrap(), Abandoned::WorkDone);
    let Start::Replay(kept) = idempotency::start(db, &claim).await.unwrap() else { panic!("a kept answer") };
    let body: Value = serde_json::from_slice(&kept.body).unwrap();
    assert_eq!((kept.status, body["code"].as_str()), (409, Some("idempotency_answer_lost")));

    // Outside the request's scope nothing is marked.
    let other = Claim::new(doc.tenant_id, doc.user_id, "marked-2", "POST", "/api/v1/x", b"{}").unwrap();
    assert_eq!(idempotency::start(db, &other).await.unwrap(), Start::Run);
    let mut tx = db.begin(&SystemScope { tenant: doc.tenant_id }).await.unwrap();
    Claim { key: "marked-3".into(), ..other.clone() }.row(Utc::now(), None).insert(&*tx).await.unwrap();
    tx.audit(AuditEntry::new("test.work", "test", Purpose::Administration).actor(doc.user_id, doc.institution_id));
    tx.commit().await.unwrap();
    assert_eq!(claim_row(db, &other).await.unwrap().committed_at, None);
}

#[tokio::test]
async fn a_claim_left_by_a_dead_process_is_taken_over_or_answers_that_the_work_was_done() {
    let app = spawn_app_with(&[]).await;
    app.load_demo().await;
    let doc = app.login("village.doctor").await;
    let db = &app.state.db;
    let base = count(&app, "SELECT count(*) FROM registrations").await;
    let body = |seq| json!({"name": "断电患者", "resident_id": rid("130998", "19800101", seq)});
    let claim_for = |key: &str, body: &Value| {
        let bytes = serde_json::to_vec(body).unwrap();
        Claim::new(doc.tenant_id, doc.user_id, key, "POST", "/api/v1/patients", &bytes).unwrap()
    };
    let long_ago = Utc::now() - chrono::Duration::seconds(idempotency::RUNNING_BOUND_SECS + 60);
    let put = |row: idempotency_key::ActiveModel| async move {
        let tx = db.begin(&SystemScope { tenant: doc.tenant_id }).await.unwrap();
        row.insert(&*tx).await.unwrap();
        tx.commit().await.unwrap();
    };

    // Its process died before anything committed: the retry runs, once.
    let (b1, b2, b3) = (body(1), body(2), body(3));
    put(claim_for("dead-before-commit", &b1).row(long_ago, None)).await;
    let r = register_with_key(&app, &doc, "dead-before-commit", &b1).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let again = register_with_key(&app, &doc, "dead-before-commit", &b1).await;
    assert_eq!((again.status.as_u16(), again.headers.contains_key("idempotent-replayed")), (201, true));
    assert_eq!(count(&app, "SELECT count(*) FROM registrations").await, base + 1);

    // Its process died after its work committed: the retry hears so and creates nothing.
    put(claim_for("dead-after-commit", &b2).row(long_ago, Some(long_ago))).await;
    let r = register_with_key(&app, &doc, "dead-after-commit", &b2).await;
    assert_eq!((r.status.as_u16(), r.code()), (409, "idempotency_answer_lost"), "{}", r.text);
    assert_eq!(count(&app, "SELECT count(*) FROM registrations").await, base + 1);

    // Still within the bound: the first may be running.
    put(claim_for("running", &b3).row(Utc::now(), None)).await;
    let r = register_with_key(&app, &doc, "running", &b3).await;
    assert_eq!((r.status.as_u16(), r.code()), (409, "idempotency_in_progress"), "{}", r.text);
    assert_eq!(count(&app, "SELECT count(*) FROM registrations").await, base + 1);
}

#[tokio::test]
#[ignore = "needs single-node PostgreSQL (CLOUDHIS_TEST_BACKEND=postgres; .ci/run runs it): a proxy cuts a COMMIT"]
async fn a_create_whose_commit_was_cut_is_not_done_again_by_its_retry() {
    crate::helpers::require_postgres();
    assert!(!crate::helpers::on_citus(), "the proxy stands in front of single-node PostgreSQL");
    let real = crate::helpers::fresh_pg_database().await;
    let (head, db) = real.rsplit_once('/').unwrap();
    let (scheme_user, upstream) = head.rsplit_once('@').unwrap();
    let cutter = CommitCutter::start(upstream.to_string(), b"INSERT INTO \"registrations\"", Cut::AfterCommit).await;
    let proxied = format!("{scheme_user}@127.0.0.1:{}/{db}?sslmode=disable", cutter.port);
    let app = spawn_app_with(&[("DATABASE_URL", &proxied)]).await;
    app.load_demo().await;
    let doc = app.login("village.doctor").await;
    let base = count(&app, "SELECT count(*) FROM registrations").await;
    let body = json!({"name": "断线患者", "resident_id": rid("130998", "19900101", 7)});

    cutter.armed.store(true, Ordering::SeqCst);
    let first = register_with_key(&app, &doc, "cut-commit", &body).await;
    assert_eq!(cutter.cuts.load(Ordering::SeqCst), 1, "the proxy cut the registration's COMMIT");
    assert_eq!((first.status.as_u16(), first.code()), (503, "service_unavailable"), "{}", first.text);
    assert!(first.headers.contains_key("retry-after"));
    assert_eq!(count(&app, "SELECT count(*) FROM registrations").await, base + 1, "the commit landed");

    let retry = register_with_key(&app, &doc, "cut-commit", &body).await;
    assert_eq!((retry.status.as_u16(), retry.code()), (409, "idempotency_answer_lost"), "{}", retry.text);
    assert_eq!(count(&app, "SELECT count(*) FROM registrations").await, base + 1, "nothing created twice");

    // Another create without a cut goes through the same proxy as usual.
    let other = register_with_key(
        &app,
        &doc,
        "after-cut",
        &json!({"name": "断线患者", "resident_id": rid("130998", "19900101", 8)}),
    )
    .await;
    assert_eq!(other.status, 201, "{}", other.text);
}

/// The audit commit sends a transaction's rows to the group commit when it wrote nothing. On Citus
/// the coordinator has no transaction id for writes on the workers; the question must still see
/// them, or a change would be audited after its commit instead of in it.
#[tokio::test]
#[ignore = "needs PostgreSQL (CLOUDHIS_TEST_BACKEND=postgres, or citus; .ci/run runs both)"]
async fn a_transaction_that_wrote_is_not_taken_for_one_that_only_read() {
    crate::helpers::require_postgres();
    let app = spawn_app_with(&[]).await;
    app.load_demo().await;
    let doc = app.login("village.doctor").await;
    let tx = app.state.db.begin(&SystemScope { tenant: doc.tenant_id }).await.unwrap();
    tx.query_all_raw(Statement::from_string(tx.get_database_backend(), "SELECT id FROM institutions")).await.unwrap();
    assert!(tx.wrote_nothing().await.unwrap(), "a read is a read");
    let claim = Claim::new(doc.tenant_id, doc.user_id, "wrote-1", "POST", "/x", b"").unwrap();
    claim.row(Utc::now(), None).insert(&*tx).await.unwrap();
    assert!(!tx.wrote_nothing().await.unwrap(), "a write is seen (on Citus: on the tenant's worker)");
    tx.rollback().await.unwrap();
}

/// A safe request's transactions are `READ ONLY` (`db::read_only`, which the boundary runs each
/// GET in): the database refuses a write in them, so the audit commit takes them for reads
/// without asking, and a read's audit row still lands through the group commit.
#[tokio::test]
#[ignore = "needs PostgreSQL (CLOUDHIS_TEST_BACKEND=postgres, or citus; .ci/run runs both)"]
async fn a_safe_request_cannot_write_and_its_reads_are_still_audited() {
    crate::helpers::require_postgres();
    let app = spawn_app_with(&[]).await;
    app.load_demo().await;
    let doc = app.login("village.doctor").await;
    let refused = cloudhis::platform::db::read_only(async {
        let tx = app.state.db.begin(&SystemScope { tenant: doc.tenant_id }).await.unwrap();
        assert!(tx.wrote_nothing().await.unwrap());
        let claim = Claim::new(doc.tenant_id, doc.user_id, "safe-1", "POST", "/x", b"").unwrap();
        claim.row(Utc::now(), None).insert(&*tx).await.unwrap_err()
    })
    .await;
    assert!(refused.to_string().contains("read-only transaction"), "{refused}");

    let person = crate::referrals::patient(&app, &doc, 11).await;
    let read = app.get(&format!("/api/v1/patients/{person}"), &doc.token).await;
    assert_eq!(read.status, 200, "{}", read.text);
    let rows = count(
        &app,
        &format!(
            "SELECT count(*) AS n FROM audit_log WHERE action = 'patient.read' AND subject_person_id = '{person}'"
        ),
    )
    .await;
    assert_eq!(rows, 1, "the read's audit row is committed before its answer");
}
