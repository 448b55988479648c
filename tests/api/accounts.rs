//! Consolidated accounts: the worked example of docs/accounts.md with its institution and
//! consolidated figures (eliminations included), replay and double delivery, reconciliation of an
//! injected mismatch, period close with a late event, and who sees what.

use std::collections::BTreeMap;

use chrono::{Datelike, Utc};
use cloudhis::accounts::entity::journal_line;
use cloudhis::accounts::service::{Ledger, ReplayDiff};
use cloudhis::billing::events::{ChargePosted, PaymentReceived, PostedCharge, RefundIssued};
use cloudhis::pharmacy::events::{Dispensed, Transferred};
use cloudhis::platform::SystemScope;
use cloudhis::platform::consumers::Handler;
use cloudhis::platform::events::{Envelope, Event, outbox};
use cloudhis::referrals::domain::{Direction, Status, Urgency};
use cloudhis::referrals::events::{Completed, ReferralChange};
use sea_orm::{ActiveModelTrait, ConnectionTrait, EntityTrait, Set, Statement};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{Session, TestApp, spawn_app};
use crate::patients::rid;
use crate::referrals::{count, eventually};
use crate::visit::full_visit;

/// Ids of the worked example.
pub struct Example {
    pub village: Uuid,
    pub county: Uuid,
    pub person: String,
    pub county_payment: String,
    pub tenant: Uuid,
}

/// The journal entries the worked example makes: village charge, payment, dispensing, refund,
/// fee share earned, transfer in; county charge, payment, fee share paid, transfer out.
pub const EXAMPLE_ENTRIES: i64 = 10;

/// docs/accounts.md, "Worked example": two visits, an up referral with 10% fee sharing, a drug
/// transfer from the county pharmacy to the village clinic, and a refund.
pub async fn worked_example(app: &TestApp) -> Example {
    worked_example_in(app, "demo-county").await
}

/// The worked example in the community `tenant` (a copy of the demo file).
pub async fn worked_example_in(app: &TestApp, tenant: &str) -> Example {
    let village_doc = app.login_in(tenant, "village.doctor").await;
    let ids = app.institutions(&village_doc).await;
    let (village, county) = (ids["v-dongguan"], ids["county-hospital"]);

    // 1. The first visit, at the village clinic, paid by mobile; its drugs dispensed.
    let visit = full_visit(app, &village_doc, 40).await;

    // 2. Referred up to the county hospital, accepted; the second visit there, paid in cash.
    let up = app
        .post(
            "/api/v1/referrals",
            &village_doc.token,
            json!({"person_id": visit.person, "direction": "up", "to_institution_id": county,
                   "reason": "血压控制不佳，请上级医院会诊", "source_encounter_id": visit.encounter}),
        )
        .await;
    assert_eq!(up.status, 201, "{}", up.text);
    let referral = up.body["id"].as_str().unwrap().to_string();
    let coordinator = app.login_in(tenant, "coordinator").await;
    for step in ["accept", "arrive"] {
        let r = app.post(&format!("/api/v1/referrals/{referral}/{step}"), &coordinator.token, json!({})).await;
        assert_eq!(r.status, 200, "{step}: {}", r.text);
    }
    let county_doc = app.login_in(tenant, "county.doctor").await;
    let reg = app
        .post(
            "/api/v1/patients",
            &county_doc.token,
            json!({"name": "陈建国", "resident_id": rid("130999", "19580412", 10 + 2 * 40 + 1), "phone": "13700000000"}),
        )
        .await;
    assert!(reg.status.is_success(), "{}", reg.text);
    assert_eq!(reg.body["person"]["id"], visit.person.as_str(), "the county links to the same person");
    let enc = app
        .post(
            "/api/v1/encounters",
            &county_doc.token,
            json!({"person_id": visit.person, "chief_complaint": "转诊会诊"}),
        )
        .await;
    assert_eq!(enc.status, 201, "{}", enc.text);
    let encounter = enc.body["id"].as_str().unwrap();
    let bill = app
        .post(
            &format!("/api/v1/encounters/{encounter}/charges"),
            &county_doc.token,
            json!({"fee_items": [{"code": "registration"}, {"code": "consultation-specialist"}]}),
        )
        .await;
    assert_eq!(bill.status, 200, "{}", bill.text);
    // registration 100 (C, self-paid) + specialist consultation 2500 (B, 55% at the county).
    assert_eq!((bill.body["total_fen"].as_i64(), bill.body["insurance_fen"].as_i64()), (Some(2600), Some(1375)));
    let cashier = app.login_in(tenant, "county.cashier").await;
    let pay = app
        .post(
            &format!("/api/v1/bills/{}/payments", bill.body["id"].as_str().unwrap()),
            &cashier.token,
            json!({"method": "cash", "amount_fen": 1225}),
        )
        .await;
    assert_eq!(pay.status, 201, "{}", pay.text);
    let done = app
        .post(&format!("/api/v1/referrals/{referral}/complete"), &coordinator.token, json!({"note": "会诊完毕"}))
        .await;
    assert_eq!(done.status, 200, "{}", done.text);

    // 3. The county pharmacy supplies the village clinic: 100 amlodipine at 35 fen.
    let pharmacist = app.login_in(tenant, "county.pharmacist").await;
    let t = app
        .post(
            "/api/v1/pharmacy/transfers",
            &pharmacist.token,
            json!({"to_institution_id": village, "drug_code": "amlodipine-5mg", "quantity": 100}),
        )
        .await;
    assert_eq!(t.status, 201, "{}", t.text);
    assert_eq!(t.body["value_fen"], 3500);

    // 4. The village clinic refunds the registration fee of the first visit.
    let refund = app
        .post(
            &format!("/api/v1/payments/{}/refunds", visit.payment),
            &village_doc.token,
            json!({"amount_fen": 100, "reason": "挂号费退还"}),
        )
        .await;
    assert_eq!(refund.status, 201, "{}", refund.text);

    caught_up(app, EXAMPLE_ENTRIES).await;
    Example {
        village,
        county,
        person: visit.person.clone(),
        county_payment: pay.body["id"].as_str().unwrap().to_string(),
        tenant: village_doc.tenant_id,
    }
}

/// Waits until the ledger consumer has posted `entries` journal entries.
async fn caught_up(app: &TestApp, entries: i64) {
    eventually("the ledger to post every event", 30, || async {
        count(app, "SELECT count(*) FROM journal_entries").await >= entries
    })
    .await;
    assert_eq!(count(app, "SELECT count(*) FROM journal_entries").await, entries);
}

/// account code → balance (debit minus credit), from a trial balance or statement.
fn balances(rows: &Value, field: &str) -> BTreeMap<String, i64> {
    rows.as_array()
        .unwrap()
        .iter()
        .map(|r| (r["account"].as_str().unwrap().to_string(), r[field].as_i64().unwrap()))
        .filter(|(_, v)| *v != 0)
        .collect()
}

fn map(pairs: &[(&str, i64)]) -> BTreeMap<String, i64> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

async fn trial_balance(app: &TestApp, s: &Session, institution: Option<Uuid>) -> Value {
    let q = institution.map(|i| format!("?institution_id={i}")).unwrap_or_default();
    let r = app.get(&format!("/api/v1/accounts/trial-balance{q}"), &s.token).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["balanced"], true);
    r.body
}

#[tokio::test]
async fn the_worked_example_gives_the_documented_figures() {
    let app = spawn_app().await;
    app.load_demo().await;
    let ex = worked_example(&app).await;
    let finance = app.login("finance").await;

    // The village clinic (docs/accounts.md, table "Village clinic").
    let v = trial_balance(&app, &finance, Some(ex.village)).await;
    assert_eq!(
        balances(&v["rows"], "balance_fen"),
        map(&[
            ("1002", 318),
            ("1211", 1802),
            ("1301", 2380),
            ("1401", 260),
            ("2401", -3500),
            ("4001", -1100),
            ("4002", -1120),
            ("4009", 100),
            ("4101", -260),
            ("5001", 1120),
        ])
    );
    // The county hospital.
    let c = trial_balance(&app, &finance, Some(ex.county)).await;
    assert_eq!(
        balances(&c["rows"], "balance_fen"),
        map(&[
            ("1001", 1225),
            ("1211", 1375),
            ("1301", -3500),
            ("1401", 3500),
            ("2401", -260),
            ("4001", -2600),
            ("5101", 260)
        ])
    );
    // The community before eliminations sums both, and balances.
    let all = trial_balance(&app, &finance, None).await;
    assert_eq!(all["debit_fen"], all["credit_fen"]);

    // The consolidated statement: internal balances shown and eliminated.
    let cons = app.get("/api/v1/accounts/consolidated", &finance.token).await;
    assert_eq!(cons.status, 200, "{}", cons.text);
    let lines = &cons.body["lines"];
    assert_eq!(
        balances(lines, "gross_fen"),
        map(&[
            ("1001", 1225),
            ("1002", 318),
            ("1211", 3177),
            ("1301", -1120),
            ("1401", 3760),
            ("2401", -3760),
            ("4001", -3700),
            ("4002", -1120),
            ("4009", 100),
            ("4101", -260),
            ("5001", 1120),
            ("5101", 260),
        ])
    );
    assert_eq!(
        balances(lines, "elimination_fen"),
        map(&[("1401", -3760), ("2401", 3760), ("4101", 260), ("5101", -260)])
    );
    assert_eq!(
        balances(lines, "consolidated_fen"),
        map(&[
            ("1001", 1225),
            ("1002", 318),
            ("1211", 3177),
            ("1301", -1120),
            ("4001", -3700),
            ("4002", -1120),
            ("4009", 100),
            ("5001", 1120),
        ])
    );
    assert_eq!(
        (cons.body["revenue_fen"].as_i64(), cons.body["expense_fen"].as_i64(), cons.body["surplus_fen"].as_i64()),
        (Some(4720), Some(1120), Some(3600))
    );
    assert_eq!(cons.body["unmatched_fen"], 0);
    let pair = |from: Uuid, to: Uuid| {
        cons.body["internal"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["institution_id"] == from.to_string() && p["counterparty_id"] == to.to_string())
            .cloned()
            .unwrap()
    };
    let (vc, cv) = (pair(ex.village, ex.county), pair(ex.county, ex.village));
    assert_eq!(
        (vc["receivable_fen"].as_i64(), vc["payable_fen"].as_i64(), vc["revenue_fen"].as_i64()),
        (Some(260), Some(-3500), Some(-260))
    );
    assert_eq!(
        (cv["receivable_fen"].as_i64(), cv["payable_fen"].as_i64(), cv["expense_fen"].as_i64()),
        (Some(3500), Some(-260), Some(260))
    );

    // Income statements by institution; together they make the consolidated surplus.
    let inc = app.get("/api/v1/accounts/income-statements", &finance.token).await;
    assert_eq!(inc.status, 200, "{}", inc.text);
    let of = |id: Uuid| {
        inc.body.as_array().unwrap().iter().find(|s| s["institution_id"] == id.to_string()).cloned().unwrap()
    };
    let (vi, ci) = (of(ex.village), of(ex.county));
    assert_eq!(
        (vi["revenue_fen"].as_i64(), vi["expense_fen"].as_i64(), vi["surplus_fen"].as_i64()),
        (Some(2380), Some(1120), Some(1260))
    );
    assert_eq!(
        (ci["revenue_fen"].as_i64(), ci["expense_fen"].as_i64(), ci["surplus_fen"].as_i64()),
        (Some(2600), Some(260), Some(2340))
    );

    // The patient's statement across both institutions: charged, insured, paid, refunded.
    let ps = app.get(&format!("/api/v1/accounts/patients/{}/statement", ex.person), &finance.token).await;
    assert_eq!(ps.status, 200, "{}", ps.text);
    assert_eq!(
        (
            ps.body["charged_fen"].as_i64(),
            ps.body["insurance_fen"].as_i64(),
            ps.body["paid_fen"].as_i64(),
            ps.body["balance_fen"].as_i64()
        ),
        (Some(418 - 100 + 1225), Some(1802 + 1375), Some(418 - 100 + 1225), Some(0))
    );
    let institutions: Vec<&str> =
        ps.body["lines"].as_array().unwrap().iter().map(|l| l["institution_name"].as_str().unwrap()).collect();
    assert_eq!(institutions.len(), 5, "charge, payment and refund at the village; charge and payment at the county");
    assert!(institutions.contains(&"示范县人民医院") && institutions.contains(&"东关村卫生室"), "{institutions:?}");

    // The journal names each entry's event; internal entries name their counterparty.
    let entries = app.get(&format!("/api/v1/accounts/entries?institution_id={}", ex.county), &finance.token).await;
    assert_eq!(entries.body.as_array().unwrap().len(), 4);
    let share = entries.body.as_array().unwrap().iter().find(|e| e["event_type"] == "referrals.completed").unwrap();
    assert_eq!(share["counterparty_id"], ex.village.to_string());
    assert_eq!(
        share["lines"],
        json!([{"account": "5101", "debit_fen": 260, "credit_fen": 0, "source_id": share["source_id"]},
                                      {"account": "2401", "debit_fen": 0, "credit_fen": 260, "source_id": share["source_id"]}])
    );

    // Billing and the ledger agree, day by day, institution by institution.
    for day in days() {
        let r = app.get(&format!("/api/v1/accounts/reconciliation?day={day}"), &finance.token).await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.body["reconciled"], true, "{}", r.text);
    }
    let out = app.cli(&["accounts", "reconcile"]);
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("v-dongguan: reconciled"));
}

/// The China days a test can have touched (two when it ran across midnight there).
fn days() -> Vec<chrono::NaiveDate> {
    let now = cloudhis::platform::clock::china(Utc::now()).date_naive();
    let earlier = cloudhis::platform::clock::china(Utc::now() - chrono::Duration::minutes(5)).date_naive();
    if earlier == now { vec![now] } else { vec![earlier, now] }
}

async fn all_balances(app: &TestApp) -> BTreeMap<(Uuid, String), i64> {
    let mut out = BTreeMap::new();
    for l in journal_line::Entity::find().all(&app.owner_connection().await).await.unwrap() {
        *out.entry((l.institution_id, l.account_code)).or_default() += l.debit_fen - l.credit_fen;
    }
    out
}

/// A balanced journal entry written straight into the database, past the application: `fen`
/// debited to `debit` and credited to `credit`, optionally against a member institution.
#[allow(clippy::too_many_arguments)]
async fn stray_entry(
    app: &TestApp,
    tenant: Uuid,
    institution: Uuid,
    counterparty: Option<Uuid>,
    period: &str,
    debit: &str,
    credit: &str,
    fen: i64,
) -> Result<(), sea_orm::DbErr> {
    use cloudhis::accounts::entity::journal_entry;
    use sea_orm::TransactionTrait;
    let owner = app.owner_connection().await;
    let tx = owner.begin().await?;
    let entry = Uuid::now_v7();
    journal_entry::ActiveModel {
        tenant_id: Set(tenant),
        id: Set(entry),
        institution_id: Set(institution),
        period: Set(period.into()),
        event_id: Set(Uuid::now_v7()),
        event_type: Set("manual.adjustment".into()),
        source_id: Set(None),
        person_id: Set(None),
        counterparty_id: Set(counterparty),
        description: Set("stray".into()),
        occurred_at: Set(Utc::now()),
        posted_at: Set(Utc::now()),
        late_from_period: Set(None),
    }
    .insert(&tx)
    .await?;
    for (account, d, c) in [(debit, fen, 0), (credit, 0, fen)] {
        journal_line::ActiveModel {
            tenant_id: Set(tenant),
            id: Set(Uuid::now_v7()),
            entry_id: Set(entry),
            institution_id: Set(institution),
            period: Set(period.into()),
            account_code: Set(account.into()),
            debit_fen: Set(d),
            credit_fen: Set(c),
            counterparty_id: Set(counterparty),
            person_id: Set(None),
            source_id: Set(None),
        }
        .insert(&tx)
        .await?;
    }
    tx.commit().await
}

/// An event written into the outbox past the application, as a producer would: unpublished
/// (the relay delivers it to the consumers) or already published (the relay passes it by, so
/// no consumer ever sees it: a lost delivery).
async fn inject<E: Event>(
    app: &TestApp,
    tenant: Uuid,
    aggregate: Uuid,
    at: chrono::DateTime<Utc>,
    event: &E,
    published: bool,
) -> Uuid {
    let owner = app.owner_connection().await;
    let backend = owner.get_database_backend();
    let seq = if backend == sea_orm::DbBackend::Sqlite {
        let row = owner
            .query_one_raw(Statement::from_string(backend, "SELECT COALESCE(MAX(seq), 0) + 1 AS n FROM outbox"))
            .await
            .unwrap()
            .unwrap();
        Set(Some(row.try_get::<i64>("", "n").unwrap()))
    } else {
        sea_orm::ActiveValue::NotSet
    };
    let id = Uuid::now_v7();
    outbox::ActiveModel {
        seq,
        tenant_id: Set(tenant),
        id: Set(id),
        event_type: Set(E::TYPE.into()),
        version: Set(1),
        aggregate_id: Set(aggregate),
        actor_user_id: Set(None),
        occurred_at: Set(at),
        payload: Set(serde_json::to_value(event).unwrap()),
        published_at: Set(published.then(Utc::now)),
        attempts: Set(0),
        last_error: Set(None),
    }
    .insert(&owner)
    .await
    .unwrap();
    id
}

async fn published(app: &TestApp, tenant: Uuid) -> Vec<Envelope> {
    let tx = app.state.db.begin(&SystemScope { tenant }).await.unwrap();
    let types: Vec<&str> =
        [cloudhis::billing::events::TYPES, cloudhis::pharmacy::events::TYPES, cloudhis::referrals::events::TYPES]
            .concat();
    let list = cloudhis::platform::events::published(&tx, &types).await.unwrap();
    tx.rollback().await.unwrap();
    list
}

#[tokio::test]
async fn delivering_every_event_twice_changes_nothing_and_a_rebuild_gives_the_same_balances() {
    let app = spawn_app().await;
    app.load_demo().await;
    let ex = worked_example(&app).await;
    let before = all_balances(&app).await;
    assert!(before.len() >= 15, "{before:?}");

    // Rebuilding the ledger from every published event gives the stored balances exactly.
    let diffs = cloudhis::accounts::service::verify_replay(&app.state.db, ex.tenant).await.unwrap();
    assert!(diffs.is_empty(), "{diffs:?}");
    let out = app.cli(&["accounts", "verify-replay"]);
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));

    // Every event delivered again through the bus the app runs on.
    let events = published(&app, ex.tenant).await;
    assert_eq!(events.len(), 11, "2 charges, 2 payments, a refund, a dispensing, a transfer, 4 referral steps");
    if app.state.bus.is_amqp() {
        let (confirmed, failure) = app.state.bus.publish_batch(&events).await;
        assert!(failure.is_none() && confirmed == events.len());
        drained(&app, "ledger").await;
    } else {
        let handlers = cloudhis::startup::handlers();
        for e in &events {
            assert!(cloudhis::platform::consumers::dispatch_local(&app.state.db, &handlers, e).await.is_empty());
        }
    }
    // And once more straight into the ledger, past the consumer's own bookkeeping.
    for e in &events {
        let mut tx = app.state.db.begin(&SystemScope { tenant: ex.tenant }).await.unwrap();
        Ledger.handle(&mut tx, e).await.unwrap();
        tx.commit().await.unwrap();
    }
    assert_eq!(count(&app, "SELECT count(*) FROM journal_entries").await, EXAMPLE_ENTRIES);
    assert_eq!(all_balances(&app).await, before);
    assert!(cloudhis::accounts::service::verify_replay(&app.state.db, ex.tenant).await.unwrap().is_empty());

    // A ledger that drifts from its events is caught: an entry the events do not explain.
    let period = cloudhis::accounts::domain::period_of(Utc::now());
    stray_entry(&app, ex.tenant, ex.village, None, &period, "1001", "4001", 999).await.unwrap();
    let diffs = cloudhis::accounts::service::verify_replay(&app.state.db, ex.tenant).await.unwrap();
    let diff = |account: &str, stored_fen: i64, rebuilt_fen: i64| ReplayDiff {
        institution: ex.village,
        period: period.clone(),
        account: account.into(),
        stored_fen,
        rebuilt_fen,
    };
    // The village's outpatient revenue is 1,100 fen by its events, 2,099 in the journal.
    assert_eq!(diffs, vec![diff("1001", 999, 0), diff("4001", -2099, -1100)]);
    let out = app.cli(&["accounts", "verify-replay"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains(&format!("v-dongguan {period} 1001: stored 999 fen, rebuilt 0 fen"))
    );
}

/// Waits until a consumer's queue on RabbitMQ holds nothing, delivered or not.
async fn drained(app: &TestApp, consumer: &str) {
    let prefix = app.env["CLOUDHIS_AMQP_PREFIX"].clone();
    let queue = format!("{prefix}.{consumer}");
    // Nothing ready and nothing delivered but unacknowledged: every delivery was applied.
    eventually("the ledger queue to drain, acknowledgements included", 30, || {
        let queue = queue.clone();
        async move {
            let out = std::process::Command::new("rabbitmqctl")
                .args(["-q", "list_queues", "name", "messages_ready", "messages_unacknowledged"])
                .output()
                .expect("rabbitmqctl runs");
            String::from_utf8_lossy(&out.stdout).lines().any(|l| {
                let cols: Vec<&str> = l.split_whitespace().collect();
                cols.len() == 3 && cols[0] == queue && cols[1] == "0" && cols[2] == "0"
            })
        }
    })
    .await;
}

#[tokio::test]
async fn reconciliation_names_the_event_of_an_injected_mismatch() {
    let app = spawn_app().await;
    app.load_demo().await;
    let ex = worked_example(&app).await;
    let finance = app.login("finance").await;

    // Billing's copy of the county payment is altered behind the ledger's back.
    let owner = app.owner_connection().await;
    let backend = owner.get_database_backend();
    let payment: Uuid = ex.county_payment.parse().unwrap();
    owner
        .execute_raw(Statement::from_sql_and_values(
            backend,
            if backend == sea_orm::DbBackend::Sqlite {
                "UPDATE payments SET amount_fen = amount_fen + 1 WHERE id = ?"
            } else {
                "UPDATE payments SET amount_fen = amount_fen + 1 WHERE id = $1"
            },
            [payment.into()],
        ))
        .await
        .unwrap();
    let event = published(&app, ex.tenant)
        .await
        .into_iter()
        .find(|e| e.event_type == "billing.payment_received" && e.payload["payment"] == ex.county_payment.as_str())
        .unwrap()
        .id
        .to_string();

    let mut found = None;
    for day in days() {
        let r = app.get(&format!("/api/v1/accounts/reconciliation?day={day}"), &finance.token).await;
        assert_eq!(r.status, 200, "{}", r.text);
        for inst in r.body["institutions"].as_array().unwrap() {
            let diffs = inst["differences"].as_array().unwrap();
            if inst["institution_id"] == ex.county.to_string() && !diffs.is_empty() {
                found = Some(diffs.clone());
            } else {
                assert!(diffs.is_empty(), "only the county payment differs: {inst}");
            }
        }
    }
    let diffs = found.expect("the county's mismatch is found");
    assert_eq!(
        diffs,
        vec![json!({"kind": "amount_differs", "document": "payment", "document_id": ex.county_payment,
                    "billing_fen": 1226, "ledger_fen": 1225, "event_id": event})]
    );
    let out = app.cli(&["accounts", "reconcile", "--institution", "county-hospital"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "amount_differs payment {}: billing 1226 fen, ledger 1225 fen, event {event}",
            ex.county_payment
        )),
        "{stdout}"
    );
}

fn previous_month() -> String {
    let now = cloudhis::platform::clock::china(Utc::now());
    if now.month() == 1 { format!("{}-12", now.year() - 1) } else { format!("{}-{:02}", now.year(), now.month() - 1) }
}

#[tokio::test]
async fn a_closed_month_takes_nothing_new_and_a_late_event_posts_to_the_next_open_period() {
    let app = spawn_app().await;
    app.load_demo().await;
    let finance = app.login("finance").await;
    let village_doc = app.login("village.doctor").await;
    let village = app.institutions(&finance).await["v-dongguan"];
    let last = previous_month();
    let this = cloudhis::accounts::domain::period_of(Utc::now());
    let last_month_day = (cloudhis::platform::clock::china(Utc::now()).with_day(1).unwrap()
        - chrono::Duration::days(10))
    .with_timezone(&Utc);

    // A patient visits this month; a charge of theirs from last month arrives before the close.
    let visit = full_visit(&app, &village_doc, 41).await;
    let bill = Uuid::now_v7();
    let charge = charge_posted(village, bill, &visit.person, last_month_day, &[("fee", 500, 200)]);
    inject(&app, finance.tenant_id, bill, last_month_day, &charge, false).await;
    caught_up(&app, 4).await;
    let before = app.get(&format!("/api/v1/accounts/trial-balance?from={last}&to={last}"), &finance.token).await;
    let before = balances(&before.body["rows"], "balance_fen");
    assert_eq!(before, map(&[("1211", 200), ("1212", 300), ("4001", -500)]));

    let r = app.post("/api/v1/accounts/periods/close", &finance.token, json!({"period": last})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["status"], "closed");
    assert_eq!(r.body["closed_by"], finance.user_id.to_string());
    let again = app.post("/api/v1/accounts/periods/close", &finance.token, json!({"period": last})).await;
    assert_eq!((again.status.as_u16(), again.code()), (409, "period_closed"));
    let open = app.post("/api/v1/accounts/periods/close", &finance.token, json!({"period": this})).await;
    assert_eq!((open.status.as_u16(), open.code()), (422, "period_open"));
    let bad = app.post("/api/v1/accounts/periods/close", &finance.token, json!({"period": "2026-13"})).await;
    assert_eq!((bad.status.as_u16(), bad.code()), (422, "period_invalid"));
    let admin = app.login("admin").await;
    let no = app.post("/api/v1/accounts/periods/close", &admin.token, json!({"period": "2020-01"})).await;
    assert_eq!(no.status, 403, "tenant admins read the accounts but the finance office closes months");
    let periods = app.get("/api/v1/accounts/periods", &finance.token).await;
    assert_eq!(periods.body[0]["period"], last.as_str());

    // A payment of the closed month arrives late (a replica that was down, say).
    let payment = payment_received(village, bill, Uuid::now_v7(), &visit.person, 300, "cash");
    let late = inject(&app, finance.tenant_id, bill, last_month_day, &payment, false).await;
    caught_up(&app, 5).await;
    let entries = app.get("/api/v1/accounts/entries", &finance.token).await;
    assert_eq!(entries.status, 200, "{}", entries.text);
    let e = entries.body.as_array().unwrap().iter().find(|e| e["event_id"] == late.to_string()).unwrap();
    assert_eq!((e["period"].as_str(), e["late_from_period"].as_str()), (Some(this.as_str()), Some(last.as_str())));
    let closed = app.get(&format!("/api/v1/accounts/trial-balance?from={last}&to={last}"), &finance.token).await;
    assert_eq!(balances(&closed.body["rows"], "balance_fen"), before, "the closed month is as it was");
    let now = app.get(&format!("/api/v1/accounts/trial-balance?institution_id={village}"), &finance.token).await;
    let now = balances(&now.body["rows"], "balance_fen");
    // This month: the visit (paid in full by mobile) and the late cash payment of last month's charge.
    assert_eq!((now.get("1001").copied(), now.get("1212").copied()), (Some(300), Some(-300)), "{now:?}");
    // A replay counts the late payment in its own month.
    assert!(cloudhis::accounts::service::verify_replay(&app.state.db, finance.tenant_id).await.unwrap().is_empty());

    // The patient's statement for any range: last month alone, then this month with what was
    // owed before it.
    let ps = |q: String| {
        let (app, token, person) = (&app, finance.token.clone(), visit.person.clone());
        async move { app.get(&format!("/api/v1/accounts/patients/{person}/statement?{q}"), &token).await }
    };
    let old = ps(format!("from={last}&to={last}")).await;
    assert_eq!(old.status, 200, "{}", old.text);
    assert_eq!(
        (old.body["opening_balance_fen"].as_i64(), old.body["charged_fen"].as_i64(), old.body["balance_fen"].as_i64()),
        (Some(0), Some(300), Some(300))
    );
    assert_eq!(old.body["lines"].as_array().unwrap().len(), 1);
    let cur = ps(format!("from={this}&to={this}")).await;
    assert_eq!(cur.body["opening_balance_fen"], 300);
    assert_eq!(cur.body["balance_fen"], 0, "the late payment settles last month's charge: {}", cur.text);
    let upto = ps(format!("to={last}")).await;
    assert_eq!((upto.status.as_u16(), upto.body["charged_fen"].as_i64()), (200, Some(300)), "{}", upto.text);
    let wrong = ps("from=2026-05&to=2026-04".into()).await;
    assert_eq!((wrong.status.as_u16(), wrong.code()), (422, "period_invalid"));

    // The database itself refuses a row in the closed month, whoever writes it,
    let refused = stray_entry(&app, finance.tenant_id, village, None, &last, "1001", "4001", 1).await;
    assert!(refused.is_err(), "a closed period takes no rows");
    // keeps the month closed,
    let owner = app.owner_connection().await;
    let backend = owner.get_database_backend();
    for sql in ["UPDATE ledger_periods SET status = 'open'", "DELETE FROM ledger_periods"] {
        assert!(owner.execute_raw(Statement::from_string(backend, sql)).await.is_err(), "{sql}");
    }
    // and never changes a journal row.
    let changed =
        owner.execute_raw(Statement::from_string(backend, "UPDATE journal_lines SET debit_fen = debit_fen + 1")).await;
    assert!(changed.is_err(), "journal lines are immutable");
}

#[tokio::test]
async fn finance_sees_the_books_the_bureau_sees_totals_and_clinicians_see_nothing() {
    let app = spawn_app().await;
    app.load_demo().await;
    let ex = worked_example(&app).await;
    let bureau = app.login("bureau").await;
    let cons = app.get("/api/v1/accounts/consolidated", &bureau.token).await;
    assert_eq!(cons.status, 200, "{}", cons.text);
    assert_eq!(cons.body["surplus_fen"], 3600);
    assert_eq!(cons.body["internal"], json!([]), "no member-by-member balances for the bureau");
    for path in [
        "/api/v1/accounts/trial-balance".to_string(),
        format!("/api/v1/accounts/trial-balance?institution_id={}", ex.village),
        "/api/v1/accounts/income-statements".into(),
        "/api/v1/accounts/entries".into(),
        "/api/v1/accounts/reconciliation".into(),
        "/api/v1/accounts/periods".into(),
        format!("/api/v1/accounts/patients/{}/statement", ex.person),
    ] {
        let r = app.get(&path, &bureau.token).await;
        assert_eq!(r.status, 403, "bureau {path}: {}", r.text);
    }
    let doctor = app.login("village.doctor").await;
    for path in ["/api/v1/accounts/consolidated", "/api/v1/accounts/trial-balance", "/api/v1/accounts/chart"] {
        let r = app.get(path, &doctor.token).await;
        assert_eq!(r.status, 403, "doctor {path}: {}", r.text);
    }
    let admin = app.login("admin").await;
    let tb = app.get(&format!("/api/v1/accounts/trial-balance?institution_id={}", ex.county), &admin.token).await;
    assert_eq!(tb.status, 200, "{}", tb.text);
    let chart = app.get("/api/v1/accounts/chart", &admin.token).await;
    assert_eq!(chart.body.as_array().unwrap().len(), 13);
    assert_eq!(
        chart.body[0],
        json!({"code": "1001", "name": "库存现金", "name_en": "Cash", "kind": "asset", "internal": false, "role": "cash"})
    );

    // Bad ranges are refused with a stable code.
    let finance = app.login("finance").await;
    for q in ["from=2026-13", "from=2026-11&to=2026-10", "from=26-11", "to=2026-00"] {
        let r = app.get(&format!("/api/v1/accounts/trial-balance?{q}"), &finance.token).await;
        assert_eq!((r.status.as_u16(), r.code()), (422, "period_invalid"), "{q}");
    }
    let r = app.get("/api/v1/accounts/reconciliation?day=2026-02-30", &finance.token).await;
    assert_eq!(r.status, 400, "{}", r.text);
    let r = app.get(&format!("/api/v1/accounts/patients/{}/statement", Uuid::now_v7()), &finance.token).await;
    assert_eq!((r.status.as_u16(), r.code()), (404, "person_not_found"));

    // Reading a patient's statement is audited.
    let before = count(&app, "SELECT count(*) FROM audit_log WHERE action = 'accounts.patient_statement'").await;
    let r = app.get(&format!("/api/v1/accounts/patients/{}/statement", ex.person), &finance.token).await;
    assert_eq!(r.status, 200, "{}", r.text);
    eventually("the audit row", 10, || async {
        count(&app, "SELECT count(*) FROM audit_log WHERE action = 'accounts.patient_statement'").await == before + 1
    })
    .await;
}

#[tokio::test]
async fn reconciliation_names_a_lost_delivery_and_an_entry_billing_never_made() {
    let app = spawn_app().await;
    app.load_demo().await;
    let finance = app.login("finance").await;
    let doctor = app.login("village.doctor").await;
    let village = app.institutions(&finance).await["v-dongguan"];
    let visit = full_visit(&app, &doctor, 42).await;
    caught_up(&app, 3).await;

    // A payment billing recorded whose event never reached the ledger (published, then lost).
    let lost_payment = Uuid::now_v7();
    let owner = app.owner_connection().await;
    let backend = owner.get_database_backend();
    let copy = "INSERT INTO payments (tenant_id, id, bill_id, institution_id, method, amount_fen, refunded_fen,
                                      receipt_no, paid_at, cashier_id)
                SELECT tenant_id, $1, bill_id, institution_id, method, 77, 0, 'LOST-1', paid_at, cashier_id
                  FROM payments WHERE id = $2";
    let copy =
        if backend == sea_orm::DbBackend::Sqlite { copy.replace("$1", "?").replace("$2", "?") } else { copy.into() };
    let payment: Uuid = visit.payment.parse().unwrap();
    owner
        .execute_raw(Statement::from_sql_and_values(backend, copy, [lost_payment.into(), payment.into()]))
        .await
        .unwrap();
    let bill: Uuid = visit.bill.parse().unwrap();
    let person: Uuid = visit.person.parse().unwrap();
    let payment = payment_received(village, bill, lost_payment, person, 77, "mobile");
    let lost = inject(&app, finance.tenant_id, bill, Utc::now(), &payment, true).await;
    // And an event for a payment billing never made, which the ledger posts.
    let phantom = Uuid::now_v7();
    let payment = payment_received(village, bill, phantom, person, 55, "cash");
    let extra = inject(&app, finance.tenant_id, bill, Utc::now(), &payment, false).await;
    caught_up(&app, 4).await;

    let mut found = Vec::new();
    for day in days() {
        let r = app
            .get(&format!("/api/v1/accounts/reconciliation?day={day}&institution_id={village}"), &finance.token)
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        found.extend(r.body["institutions"][0]["differences"].as_array().unwrap().iter().cloned());
    }
    assert_eq!(
        found,
        vec![
            json!({"kind": "extra_in_ledger", "document": "unknown", "document_id": phantom,
                   "billing_fen": 0, "ledger_fen": 55, "event_id": extra}),
            json!({"kind": "missing_in_ledger", "document": "payment", "document_id": lost_payment,
                   "billing_fen": 77, "ledger_fen": 0, "event_id": lost}),
        ]
    );
}

#[tokio::test]
async fn an_internal_balance_only_one_side_records_is_not_eliminated() {
    let app = spawn_app().await;
    app.load_demo().await;
    let ex = worked_example(&app).await;
    let finance = app.login("finance").await;
    // The village books 400 fen more receivable from the county (and internal revenue) than the
    // county owes it: a one-sided internal entry.
    let period = cloudhis::accounts::domain::period_of(Utc::now());
    stray_entry(&app, ex.tenant, ex.village, Some(ex.county), &period, "1401", "4101", 400).await.unwrap();
    let cons = app.get("/api/v1/accounts/consolidated", &finance.token).await;
    assert_eq!(cons.status, 200, "{}", cons.text);
    let lines = &cons.body["lines"];
    // Only what both sides record is eliminated: 3,500 + 260 of receivable and payable, 260 of
    // revenue and expense; the village's extra 400 stays in the consolidated figures.
    assert_eq!(
        balances(lines, "elimination_fen"),
        map(&[("1401", -3760), ("2401", 3760), ("4101", 260), ("5101", -260)])
    );
    let consolidated = balances(lines, "consolidated_fen");
    assert_eq!((consolidated.get("1401"), consolidated.get("4101")), (Some(&400), Some(&-400)));
    assert_eq!(cons.body["unmatched_fen"], 800, "400 of receivable and 400 of revenue without a counterpart");
}

#[tokio::test]
async fn a_community_with_its_own_chart_and_fee_share_posts_by_them() {
    let app = spawn_app().await;
    // The demo community under another code, first with the default chart...
    let text = cloudhis::cli::DEMO_TENANT.replace("\"demo-county\"", "\"west-county\"");
    let first = app.apply_tenant_file(&text).await;
    cloudhis::pharmacy::service::seed_demo_stock(&app.state.db, first.tenant_id).await.unwrap();
    // ...then with its cash, internal revenue and expense accounts renumbered and a 5% share.
    let renumbered = text
        .replace("code = \"1001\"", "code = \"100101\"")
        .replace("code = \"4101\"", "code = \"410101\"")
        .replace("code = \"5101\"", "code = \"510101\"")
        .replace("referral_fee_share = 0.10", "referral_fee_share = 0.05");
    let second = app.apply_tenant_file(&renumbered).await;
    for code in ["1001", "4101", "5101"] {
        assert!(
            second.updated.iter().any(|u| u == &format!("account {code} (retired: no longer in the file)")),
            "{:?}",
            second.updated
        );
    }
    let ex = worked_example_in(&app, "west-county").await;
    let finance = app.login_in("west-county", "finance").await;
    let chart = app.get("/api/v1/accounts/chart", &finance.token).await;
    let cash: Vec<&Value> = chart.body.as_array().unwrap().iter().filter(|a| a["role"] == "cash").collect();
    assert_eq!(cash.len(), 1, "one account per role: {}", chart.text);
    assert_eq!(cash[0]["code"], "100101");

    // 5% of the county's first-visit revenue of 2,600 fen: 130, under the community's codes.
    let c = trial_balance(&app, &finance, Some(ex.county)).await;
    assert_eq!(
        balances(&c["rows"], "balance_fen"),
        map(&[
            ("100101", 1225),
            ("1211", 1375),
            ("1301", -3500),
            ("1401", 3500),
            ("2401", -130),
            ("4001", -2600),
            ("510101", 130)
        ])
    );
    let v = trial_balance(&app, &finance, Some(ex.village)).await;
    let v = balances(&v["rows"], "balance_fen");
    assert_eq!((v.get("410101"), v.get("1401"), v.get("4101")), (Some(&-130), Some(&130), None));
    assert!(cloudhis::accounts::service::verify_replay(&app.state.db, ex.tenant).await.unwrap().is_empty());
}

/// Any business event the ledger follows, between `institutions`, with amounts as billing,
/// pharmacy and referrals would produce them.
fn any_event(tenant: Uuid, institutions: Vec<Uuid>) -> impl proptest::strategy::Strategy<Value = Envelope> {
    use proptest::prelude::*;
    let inst = prop::sample::select(institutions);
    let method = prop::sample::select(vec!["cash", "card", "mobile"]);
    prop_oneof![
        (inst.clone(), prop::collection::vec((any::<bool>(), 1i64..1_000_000, 0i64..=10_000), 1..5)).prop_map(
            move |(i, lines)| {
                let lines: Vec<(&str, i64, i64)> = lines
                    .into_iter()
                    .map(|(drug, amount, bp)| (if drug { "drug" } else { "fee" }, amount, amount * bp / 10_000))
                    .collect();
                let bill = Uuid::now_v7();
                Envelope::of(tenant, bill, Utc::now(), &charge_posted(i, bill, Uuid::now_v7(), Utc::now(), &lines))
            }
        ),
        (inst.clone(), method.clone(), 1i64..1_000_000).prop_map(move |(i, m, a)| {
            let bill = Uuid::now_v7();
            Envelope::of(tenant, bill, Utc::now(), &payment_received(i, bill, Uuid::now_v7(), Uuid::now_v7(), a, m))
        }),
        (inst.clone(), method, 1i64..1_000_000).prop_map(move |(i, m, a)| {
            let refund = RefundIssued {
                refund: Uuid::now_v7(),
                payment: Uuid::now_v7(),
                bill: Uuid::now_v7(),
                institution: i,
                person: Uuid::now_v7(),
                amount_fen: a,
                method: m.into(),
                receipt_no: "R-1".into(),
            };
            Envelope::of(tenant, refund.bill, Utc::now(), &refund)
        }),
        (inst.clone(), 0i64..1_000_000).prop_map(move |(i, v)| {
            let d = Dispensed {
                prescription: Uuid::now_v7(),
                encounter: Uuid::now_v7(),
                institution: i,
                person: Uuid::now_v7(),
                value_fen: v,
                lines: vec![],
            };
            Envelope::of(tenant, d.prescription, Utc::now(), &d)
        }),
        (inst.clone(), inst.clone(), 1i64..10_000_000).prop_filter("two institutions", |(a, b, _)| a != b).prop_map(
            move |(a, b, v)| {
                let t = Transferred {
                    transfer: Uuid::now_v7(),
                    from_institution: a,
                    to_institution: b,
                    drug_code: "amlodipine-5mg".into(),
                    quantity: 1,
                    value_fen: v,
                    batches: vec![],
                };
                Envelope::of(tenant, t.transfer, Utc::now(), &t)
            }
        ),
        (inst.clone(), inst, 0i64..1_000_000).prop_filter("two institutions", |(a, b, _)| a != b).prop_map(
            move |(to, from, revenue)| {
                let now = Utc::now();
                let change = ReferralChange {
                    first_visit_revenue_fen: Some(revenue),
                    referral: Uuid::now_v7(),
                    person: Uuid::now_v7(),
                    direction: Direction::Up,
                    urgency: Urgency::Routine,
                    from_institution: from,
                    to_institution: Some(to),
                    external: false,
                    parent: None,
                    status: Status::Completed,
                    previous_status: Some(Status::Arrived),
                    created_at: now,
                    requested_at: Some(now),
                    sla_due_at: None,
                    decided_at: Some(now),
                    arrived_at: Some(now),
                    completed_at: Some(now),
                    summary: true,
                };
                Envelope::of(tenant, change.referral, now, &Completed(change))
            }
        ),
    ]
}

/// A charge event of `lines` (kind, amount, insured share), as billing would post it.
fn charge_posted(
    institution: Uuid,
    bill: Uuid,
    person: impl Into<PersonId>,
    at: chrono::DateTime<Utc>,
    lines: &[(&str, i64, i64)],
) -> ChargePosted {
    let charges: Vec<PostedCharge> = lines
        .iter()
        .map(|(kind, amount, ins)| PostedCharge {
            charge: Uuid::now_v7(),
            kind: kind.to_string(),
            item_code: "registration".into(),
            quantity: 1,
            amount_fen: *amount,
            insurance_category: "A".into(),
            insurance_fen: *ins,
            self_pay_fen: amount - ins,
        })
        .collect();
    let total: i64 = charges.iter().map(|c| c.amount_fen).sum();
    let insurance: i64 = charges.iter().map(|c| c.insurance_fen).sum();
    ChargePosted {
        bill,
        encounter: Uuid::now_v7(),
        institution,
        person: person.into().0,
        posted_at: at,
        total_fen: total,
        insurance_fen: insurance,
        self_pay_fen: total - insurance,
        drug_fen: charges.iter().filter(|c| c.kind == "drug").map(|c| c.amount_fen).sum(),
        charges,
    }
}

/// A payment event, as billing would publish it.
fn payment_received(
    institution: Uuid,
    bill: Uuid,
    payment: Uuid,
    person: impl Into<PersonId>,
    amount_fen: i64,
    method: &str,
) -> PaymentReceived {
    PaymentReceived {
        payment,
        bill,
        encounter: Uuid::now_v7(),
        institution,
        person: person.into().0,
        amount_fen,
        method: method.into(),
        receipt_no: "R-1".into(),
        bill_insurance_fen: 0,
        settled: false,
    }
}

/// A person id, from a `Uuid` or from the string an API answer carries.
struct PersonId(Uuid);

impl From<Uuid> for PersonId {
    fn from(u: Uuid) -> Self {
        Self(u)
    }
}

impl From<&String> for PersonId {
    fn from(s: &String) -> Self {
        Self(s.parse().expect("a person id"))
    }
}

/// The balance property, through the ledger consumer, the database and the statements API: any
/// sequence of charges, payments, refunds, dispensing, transfers and fee shares posts balanced
/// entries, keeps every institution's trial balance and the community's at zero with every
/// internal balance eliminated, and delivering any of the events again changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_sequence_of_events_keeps_every_entry_and_trial_balance_at_zero_even_delivered_twice() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};
    let app = spawn_app().await;
    app.load_demo().await;
    let finance = app.login("finance").await;
    let ids = app.institutions(&finance).await;
    let members = vec![ids["county-hospital"], ids["th-dongguan"], ids["v-dongguan"]];
    let handlers: Vec<std::sync::Arc<dyn Handler>> = vec![std::sync::Arc::new(Ledger)];
    let runtime = tokio::runtime::Handle::current();
    let strategy = (
        prop::collection::vec(any_event(finance.tenant_id, members.clone()), 1..20),
        prop::collection::vec(any::<prop::sample::Index>(), 0..8),
    );
    let mut runner = TestRunner::new(Config { cases: 24, failure_persistence: None, ..Config::default() });
    runner
        .run(&strategy, |(events, again)| {
            tokio::task::block_in_place(|| {
                runtime.block_on(async {
                    for e in &events {
                        let failed = cloudhis::platform::consumers::dispatch_local(&app.state.db, &handlers, e).await;
                        assert!(failed.is_empty(), "{failed:?}");
                    }
                    let unbalanced = count(
                        &app,
                        "SELECT count(*) FROM (SELECT entry_id FROM journal_lines GROUP BY entry_id
                                               HAVING SUM(debit_fen) <> SUM(credit_fen)) x",
                    )
                    .await;
                    assert_eq!(unbalanced, 0, "every entry sums to zero");
                    for i in members.iter().copied().map(Some).chain([None]) {
                        trial_balance(&app, &finance, i).await; // asserts `balanced`
                    }
                    let cons = app.get("/api/v1/accounts/consolidated", &finance.token).await;
                    assert_eq!(cons.body["unmatched_fen"], 0, "{}", cons.text);
                    for l in cons.body["lines"].as_array().unwrap() {
                        if ["1401", "2401", "4101", "5101"].contains(&l["account"].as_str().unwrap()) {
                            assert_eq!(l["consolidated_fen"], 0, "internal balances eliminate: {l}");
                        }
                    }
                    let before = all_balances(&app).await;
                    for i in &again {
                        let e = i.get(&events);
                        assert!(
                            cloudhis::platform::consumers::dispatch_local(&app.state.db, &handlers, e).await.is_empty()
                        );
                        let mut tx = app.state.db.begin(&SystemScope { tenant: e.tenant }).await.unwrap();
                        Ledger.handle(&mut tx, e).await.unwrap();
                        tx.commit().await.unwrap();
                    }
                    assert_eq!(all_balances(&app).await, before, "a second delivery changes nothing");
                })
            });
            Ok(())
        })
        .unwrap();
}
