//! Billing use cases: the fee schedule, one bill per encounter (fee items and prescription
//! lines, each split between insurance and self-pay), payments with per-institution receipt
//! numbers, and refunds. Money is integer fen; a payment may not exceed what is owed, and a
//! refund may not exceed what a payment took.

use std::collections::{HashMap, HashSet};

use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder,
    QuerySelect, Set, Statement,
};
use serde_json::json;
use uuid::Uuid;

use super::domain::{FeeSpec, InsuranceCategory, Reimbursement};
use super::entity::{bill, charge, fee_item, payment, refund};
use super::events;
use crate::identity::ctx::{Perm, RequestCtx};
use crate::platform::audit::Purpose;
use crate::platform::codes;
use crate::platform::state::AppState;
use crate::platform::{AppError, AppResult, Tx};
use crate::tenancy::domain::ApplyReport;

pub const METHODS: [&str; 3] = ["cash", "card", "mobile"];
/// The largest single charge line: 10 million yuan, far above any outpatient item.
pub const MAX_CHARGE_FEN: i64 = 1_000_000_000;

pub async fn apply_fee_schedule(tx: &Tx, fees: &[FeeSpec], report: &mut ApplyReport) -> AppResult<()> {
    let existing: HashMap<String, fee_item::Model> = fee_item::Entity::find()
        .filter(fee_item::Column::TenantId.eq(tx.tenant()))
        .all(&**tx)
        .await?
        .into_iter()
        .map(|f| (f.code.clone(), f))
        .collect();
    for f in fees {
        let row = fee_item::Model {
            tenant_id: tx.tenant(),
            code: f.code.clone(),
            name: f.name.clone(),
            name_en: f.name_en.clone(),
            category: f.category.clone(),
            price_fen: f.price_fen,
            insurance_category: f.insurance.as_str().into(),
            updated_at: crate::platform::clock::now(),
        };
        match existing.get(&f.code) {
            None => {
                fee_item::ActiveModel::from(row).insert(&**tx).await?;
                report.created.push(format!("fee {}", f.code));
            }
            Some(old) if fee_item::Model { updated_at: old.updated_at, ..row.clone() } != *old => {
                fee_item::ActiveModel::from(row).reset_all().update(&**tx).await?;
                report.updated.push(format!("fee {}", f.code));
            }
            Some(_) => report.unchanged += 1,
        }
    }
    Ok(())
}

pub async fn fee_schedule(state: &AppState, ctx: &RequestCtx) -> AppResult<Vec<fee_item::Model>> {
    ctx.require(Perm::InstitutionRead)?;
    let tx = state.db.begin(ctx).await?;
    let rows = fee_item::Entity::find()
        .filter(fee_item::Column::TenantId.eq(ctx.tenant))
        .order_by_asc(fee_item::Column::Code)
        .all(&*tx)
        .await?;
    tx.rollback().await?;
    Ok(rows)
}

#[derive(Debug, Clone)]
pub struct BillView {
    pub bill: bill::Model,
    pub charges: Vec<charge::Model>,
    pub payments: Vec<payment::Model>,
    pub refunds: Vec<refund::Model>,
}

impl BillView {
    pub fn owed_fen(&self) -> i64 {
        owed(&self.bill)
    }
}

/// What the patient still owes: refunds give the right to the items back, so they count.
pub fn owed(b: &bill::Model) -> i64 {
    b.self_pay_fen - (b.paid_fen - b.refunded_fen)
}

/// A bill's status, from its totals alone.
pub fn status_of(total: i64, self_pay: i64, paid: i64, refunded: i64) -> &'static str {
    let net = paid - refunded;
    if total == 0 {
        "open"
    } else if net >= self_pay {
        "paid"
    } else if refunded > 0 && net <= 0 {
        "refunded"
    } else if refunded > 0 {
        "partially_refunded"
    } else if paid > 0 {
        "partially_paid"
    } else {
        "open"
    }
}

async fn load(tx: &Tx, b: bill::Model) -> AppResult<BillView> {
    let charges = charge::Entity::find()
        .filter(charge::Column::TenantId.eq(tx.tenant()))
        .filter(charge::Column::BillId.eq(b.id))
        .order_by_asc(charge::Column::PostedAt)
        .order_by_asc(charge::Column::Id)
        .all(&**tx)
        .await?;
    let payments = payment::Entity::find()
        .filter(payment::Column::TenantId.eq(tx.tenant()))
        .filter(payment::Column::BillId.eq(b.id))
        .order_by_asc(payment::Column::PaidAt)
        .all(&**tx)
        .await?;
    let refunds = refund::Entity::find()
        .filter(refund::Column::TenantId.eq(tx.tenant()))
        .filter(refund::Column::BillId.eq(b.id))
        .order_by_asc(refund::Column::RefundedAt)
        .all(&**tx)
        .await?;
    Ok(BillView { bill: b, charges, payments, refunds })
}

async fn lock_bill(tx: &Tx, ctx: &RequestCtx, id: Uuid) -> AppResult<bill::Model> {
    let mut q = bill::Entity::find_by_id((ctx.tenant, id));
    if tx.get_database_backend() == DbBackend::Postgres {
        q = q.lock_exclusive();
    }
    q.one(&**tx)
        .await?
        .filter(|b| b.institution_id == ctx.institution)
        .ok_or_else(|| AppError::new(codes::BILL_NOT_FOUND, "no such bill at your institution"))
}

/// A charge about to be posted.
struct PendingCharge {
    kind: &'static str,
    code: String,
    description: String,
    quantity: i64,
    unit_fen: i64,
    category: String,
    source: Option<Uuid>,
}

pub struct FeeLine {
    pub code: String,
    pub quantity: i64,
}

/// Posts charges to the encounter's bill: the fee items given, and every prescription line not
/// yet charged. Creates the bill on first use.
pub async fn charge(state: &AppState, ctx: &RequestCtx, encounter_id: Uuid, fees: Vec<FeeLine>) -> AppResult<BillView> {
    ctx.require(Perm::BillingCharge)?;
    if fees.iter().any(|f| f.quantity <= 0 || f.quantity > 1000) {
        return Err(AppError::new(codes::QUANTITY_INVALID, "a fee item's quantity is 1 to 1000"));
    }
    let mut tx = state.db.begin(ctx).await?;
    let enc = crate::clinical::service::own_encounter(&tx, ctx, encounter_id).await?;
    let b = open_bill(&tx, ctx, encounter_id, enc.person_id).await?;
    let lines = pending_charges(&tx, b.id, encounter_id, &fees).await?;
    if lines.is_empty() {
        return Err(AppError::new(codes::NOTHING_TO_CHARGE, "no fee items given and no uncharged prescription lines"));
    }
    let posted = post_charges(&tx, ctx, &b, lines).await?;
    let (total, insurance) =
        (posted.iter().map(|c| c.amount_fen).sum::<i64>(), posted.iter().map(|c| c.insurance_fen).sum::<i64>());
    let now = posted[0].posted_at;
    let mut am = b.clone().into_active_model();
    let (new_total, new_self) = (b.total_fen + total, b.self_pay_fen + total - insurance);
    am.total_fen = Set(new_total);
    am.insurance_fen = Set(b.insurance_fen + insurance);
    am.self_pay_fen = Set(new_self);
    am.status = Set(status_of(new_total, new_self, b.paid_fen, b.refunded_fen).into());
    am.updated_at = Set(now);
    let b = am.update(&*tx).await?;
    let event = events::ChargePosted {
        bill: b.id,
        encounter: encounter_id,
        institution: ctx.institution,
        person: enc.person_id,
        posted_at: now,
        total_fen: total,
        insurance_fen: insurance,
        self_pay_fen: total - insurance,
        drug_fen: posted.iter().filter(|c| c.kind == "drug").map(|c| c.amount_fen).sum::<i64>(),
        charges: posted.iter().map(posted_charge).collect(),
    };
    tx.emit(Some(ctx.user), b.id, &event).await?;
    tx.audit(ctx.audit("billing.charge", "bill", Purpose::Treatment).resource(b.id).subject(enc.person_id));
    let view = load(&tx, b).await?;
    tx.commit().await?;
    Ok(view)
}

/// The encounter's bill, locked for the rest of the transaction; created empty on first use.
async fn open_bill(tx: &Tx, ctx: &RequestCtx, encounter_id: Uuid, person: Uuid) -> AppResult<bill::Model> {
    let existing = bill::Entity::find()
        .filter(bill::Column::TenantId.eq(ctx.tenant))
        .filter(bill::Column::EncounterId.eq(encounter_id))
        .one(&**tx)
        .await?;
    if let Some(b) = existing {
        return lock_bill(tx, ctx, b.id).await;
    }
    let now = crate::platform::clock::now();
    Ok(bill::ActiveModel {
        tenant_id: Set(ctx.tenant),
        id: Set(Uuid::now_v7()),
        encounter_id: Set(encounter_id),
        institution_id: Set(ctx.institution),
        person_id: Set(person),
        status: Set("open".into()),
        total_fen: Set(0),
        insurance_fen: Set(0),
        self_pay_fen: Set(0),
        paid_fen: Set(0),
        refunded_fen: Set(0),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(&**tx)
    .await?)
}

/// What is to be charged: the fee items given (from the schedule), then every line of the
/// encounter's prescriptions that the bill does not charge yet.
async fn pending_charges(
    tx: &Tx,
    bill_id: Uuid,
    encounter_id: Uuid,
    fees: &[FeeLine],
) -> AppResult<Vec<PendingCharge>> {
    let already: HashSet<Uuid> = charge::Entity::find()
        .filter(charge::Column::TenantId.eq(tx.tenant()))
        .filter(charge::Column::BillId.eq(bill_id))
        .all(&**tx)
        .await?
        .into_iter()
        .filter_map(|c| c.source_id)
        .collect();
    let catalog: HashMap<String, fee_item::Model> = fee_item::Entity::find()
        .filter(fee_item::Column::TenantId.eq(tx.tenant()))
        .all(&**tx)
        .await?
        .into_iter()
        .map(|f| (f.code.clone(), f))
        .collect();
    let mut lines: Vec<PendingCharge> = Vec::new();
    for (i, f) in fees.iter().enumerate() {
        let item = catalog.get(&f.code).ok_or_else(|| {
            AppError::new(codes::FEE_ITEM_UNKNOWN, "no such item in the fee schedule")
                .with_details(json!({ "line": i }))
        })?;
        lines.push(PendingCharge {
            kind: "fee",
            code: item.code.clone(),
            description: item.name.clone(),
            quantity: f.quantity,
            unit_fen: item.price_fen,
            category: item.insurance_category.clone(),
            source: None,
        });
    }
    for p in crate::pharmacy::service::prescriptions_of(tx, encounter_id).await? {
        for line in p.lines.into_iter().filter(|l| !already.contains(&l.line.id)) {
            lines.push(PendingCharge {
                kind: "drug",
                code: line.drug.code.clone(),
                description: format!("{} {}", line.drug.name, line.drug.strength),
                quantity: line.line.quantity,
                unit_fen: line.line.unit_price_fen,
                category: line.line.insurance_category.clone(),
                source: Some(line.line.id),
            });
        }
    }
    Ok(lines)
}

/// Writes the charges, each split into the insured and the self-paid share by the tenant's rates
/// for this institution's level.
async fn post_charges(
    tx: &Tx,
    ctx: &RequestCtx,
    b: &bill::Model,
    lines: Vec<PendingCharge>,
) -> AppResult<Vec<charge::Model>> {
    let tenant = crate::tenancy::service::get_tenant(&**tx, ctx.tenant).await?;
    let rates = Reimbursement::from_settings(&tenant.settings).map_err(|e| AppError::internal(anyhow::anyhow!(e)))?;
    let level = crate::tenancy::service::get_institution(tx, ctx.institution).await?.kind;
    let now = crate::platform::clock::now();
    let mut posted = Vec::new();
    for line in lines {
        let amount =
            line.quantity.checked_mul(line.unit_fen).filter(|a| *a <= MAX_CHARGE_FEN).ok_or_else(|| {
                AppError::new(codes::AMOUNT_TOO_LARGE, "a charge line may not exceed 10,000,000 yuan")
            })?;
        let category = InsuranceCategory::parse(&line.category).unwrap_or(InsuranceCategory::C);
        let (ins, own) = rates.split(level, category, amount);
        let c = charge::ActiveModel {
            tenant_id: Set(ctx.tenant),
            id: Set(Uuid::now_v7()),
            bill_id: Set(b.id),
            institution_id: Set(ctx.institution),
            kind: Set(line.kind.into()),
            item_code: Set(line.code),
            description: Set(line.description),
            quantity: Set(line.quantity),
            unit_price_fen: Set(line.unit_fen),
            amount_fen: Set(amount),
            insurance_category: Set(category.as_str().into()),
            insurance_fen: Set(ins),
            self_pay_fen: Set(own),
            source_id: Set(line.source),
            posted_at: Set(now),
        }
        .insert(&**tx)
        .await?;
        posted.push(c);
    }
    Ok(posted)
}

fn posted_charge(c: &charge::Model) -> events::PostedCharge {
    events::PostedCharge {
        charge: c.id,
        kind: c.kind.clone(),
        item_code: c.item_code.clone(),
        quantity: c.quantity,
        amount_fen: c.amount_fen,
        insurance_category: c.insurance_category.clone(),
        insurance_fen: c.insurance_fen,
        self_pay_fen: c.self_pay_fen,
    }
}

pub async fn get_bill(state: &AppState, ctx: &RequestCtx, id: Uuid) -> AppResult<BillView> {
    ctx.require(Perm::BillingCharge)?;
    let mut tx = state.db.begin(ctx).await?;
    let b = bill::Entity::find_by_id((ctx.tenant, id))
        .one(&*tx)
        .await?
        .filter(|b| b.institution_id == ctx.institution)
        .ok_or_else(|| AppError::new(codes::BILL_NOT_FOUND, "no such bill at your institution"))?;
    let person = b.person_id;
    let view = load(&tx, b).await?;
    tx.audit(ctx.audit("billing.read", "bill", Purpose::Treatment).resource(id).subject(person));
    tx.commit().await?;
    Ok(view)
}

/// The encounter's bill, if any (for the visit view).
pub async fn bill_of_encounter(tx: &Tx, encounter_id: Uuid) -> AppResult<Option<BillView>> {
    match bill::Entity::find()
        .filter(bill::Column::TenantId.eq(tx.tenant()))
        .filter(bill::Column::EncounterId.eq(encounter_id))
        .one(&**tx)
        .await?
    {
        Some(b) => Ok(Some(load(tx, b).await?)),
        None => Ok(None),
    }
}

async fn next_receipt(tx: &Tx, institution: Uuid) -> AppResult<String> {
    let backend = tx.get_database_backend();
    let sql = match backend {
        DbBackend::Postgres => {
            "INSERT INTO receipt_counters (tenant_id, institution_id, next_value) VALUES ($1, $2, 2)
             ON CONFLICT (tenant_id, institution_id) DO UPDATE SET next_value = receipt_counters.next_value + 1
             RETURNING next_value - 1 AS value"
        }
        _ => {
            "INSERT INTO receipt_counters (tenant_id, institution_id, next_value) VALUES (?, ?, 2)
             ON CONFLICT (tenant_id, institution_id) DO UPDATE SET next_value = receipt_counters.next_value + 1
             RETURNING next_value - 1 AS value"
        }
    };
    let row = tx
        .query_one_raw(Statement::from_sql_and_values(backend, sql, [tx.tenant().into(), institution.into()]))
        .await?
        .ok_or_else(|| AppError::internal(anyhow::anyhow!("receipt counter returned nothing")))?;
    let value: i64 = row.try_get("", "value")?;
    let code = crate::tenancy::service::get_institution(tx, institution).await?.code;
    Ok(format!("{}-{value:08}", code.to_ascii_uppercase()))
}

/// Takes a self-pay payment. Partial payments are allowed; more than is owed is not.
pub async fn pay(
    state: &AppState,
    ctx: &RequestCtx,
    bill_id: Uuid,
    method: &str,
    amount_fen: i64,
) -> AppResult<payment::Model> {
    ctx.require(Perm::BillingPay)?;
    if !METHODS.contains(&method) {
        return Err(AppError::new(codes::PAYMENT_METHOD_INVALID, "method is cash, card or mobile"));
    }
    if amount_fen <= 0 {
        return Err(AppError::new(codes::AMOUNT_INVALID, "amount_fen must be positive"));
    }
    let mut tx = state.db.begin(ctx).await?;
    let b = lock_bill(&tx, ctx, bill_id).await?;
    let owed = owed(&b);
    if amount_fen > owed {
        return Err(AppError::new(codes::OVERPAYMENT, "the amount is more than is owed on this bill")
            .with_details(json!({ "owed_fen": owed, "amount_fen": amount_fen })));
    }
    let receipt_no = next_receipt(&tx, ctx.institution).await?;
    let now = crate::platform::clock::now();
    let p = payment::ActiveModel {
        tenant_id: Set(ctx.tenant),
        id: Set(Uuid::now_v7()),
        bill_id: Set(bill_id),
        institution_id: Set(ctx.institution),
        method: Set(method.into()),
        amount_fen: Set(amount_fen),
        refunded_fen: Set(0),
        receipt_no: Set(receipt_no),
        paid_at: Set(now),
        cashier_id: Set(ctx.user),
    }
    .insert(&*tx)
    .await?;
    let mut am = b.clone().into_active_model();
    am.paid_fen = Set(b.paid_fen + amount_fen);
    am.status = Set(status_of(b.total_fen, b.self_pay_fen, b.paid_fen + amount_fen, b.refunded_fen).into());
    am.updated_at = Set(now);
    am.update(&*tx).await?;
    let event = events::PaymentReceived {
        payment: p.id,
        bill: bill_id,
        encounter: b.encounter_id,
        institution: ctx.institution,
        person: b.person_id,
        amount_fen,
        method: method.to_string(),
        receipt_no: p.receipt_no.clone(),
        bill_insurance_fen: b.insurance_fen,
        settled: owed == amount_fen,
    };
    tx.emit(Some(ctx.user), bill_id, &event).await?;
    tx.audit(ctx.audit("billing.pay", "payment", Purpose::Treatment).resource(p.id).subject(b.person_id));
    tx.commit().await?;
    Ok(p)
}

/// Refunds part or all of a payment, with a reason.
pub async fn refund(
    state: &AppState,
    ctx: &RequestCtx,
    payment_id: Uuid,
    amount_fen: i64,
    reason: &str,
) -> AppResult<refund::Model> {
    ctx.require(Perm::BillingRefund)?;
    if amount_fen <= 0 {
        return Err(AppError::new(codes::AMOUNT_INVALID, "amount_fen must be positive"));
    }
    let reason = reason.trim();
    if !(2..=200).contains(&reason.chars().count()) {
        return Err(AppError::new(codes::REASON_REQUIRED, "give a reason of 2 to 200 characters"));
    }
    let mut tx = state.db.begin(ctx).await?;
    let p = payment::Entity::find_by_id((ctx.tenant, payment_id))
        .one(&*tx)
        .await?
        .filter(|p| p.institution_id == ctx.institution)
        .ok_or_else(|| AppError::new(codes::PAYMENT_NOT_FOUND, "no such payment at your institution"))?;
    let b = lock_bill(&tx, ctx, p.bill_id).await?;
    let p = payment::Entity::find_by_id((ctx.tenant, payment_id)).one(&*tx).await?.expect("read above");
    if amount_fen > p.amount_fen - p.refunded_fen {
        return Err(AppError::new(codes::REFUND_EXCEEDS_PAID, "the refund is more than this payment has left")
            .with_details(json!({ "refundable_fen": p.amount_fen - p.refunded_fen, "amount_fen": amount_fen })));
    }
    // Drugs already dispensed stay paid for: refunding them needs a return first.
    let dispensed = dispensed_self_pay(&tx, b.id).await?;
    let refundable = (b.paid_fen - b.refunded_fen) - dispensed;
    if amount_fen > refundable {
        return Err(AppError::new(
            codes::REFUND_EXCEEDS_UNDISPENSED,
            "the refund would give back money for drugs already dispensed",
        )
        .with_details(json!({ "refundable_fen": refundable.max(0), "amount_fen": amount_fen })));
    }
    let receipt_no = next_receipt(&tx, ctx.institution).await?;
    let now = crate::platform::clock::now();
    let r = refund::ActiveModel {
        tenant_id: Set(ctx.tenant),
        id: Set(Uuid::now_v7()),
        bill_id: Set(b.id),
        payment_id: Set(payment_id),
        institution_id: Set(ctx.institution),
        amount_fen: Set(amount_fen),
        reason: Set(reason.to_string()),
        receipt_no: Set(receipt_no),
        refunded_at: Set(now),
        cashier_id: Set(ctx.user),
    }
    .insert(&*tx)
    .await?;
    let mut pam = p.clone().into_active_model();
    pam.refunded_fen = Set(p.refunded_fen + amount_fen);
    pam.update(&*tx).await?;
    let mut am = b.clone().into_active_model();
    am.refunded_fen = Set(b.refunded_fen + amount_fen);
    am.status = Set(status_of(b.total_fen, b.self_pay_fen, b.paid_fen, b.refunded_fen + amount_fen).into());
    am.updated_at = Set(now);
    am.update(&*tx).await?;
    let event = events::RefundIssued {
        refund: r.id,
        payment: payment_id,
        bill: b.id,
        institution: ctx.institution,
        person: b.person_id,
        amount_fen,
        method: p.method.clone(),
        receipt_no: r.receipt_no.clone(),
    };
    tx.emit(Some(ctx.user), b.id, &event).await?;
    tx.audit(ctx.audit("billing.refund", "refund", Purpose::Treatment).resource(r.id).subject(b.person_id));
    tx.commit().await?;
    Ok(r)
}

/// The self-pay part of a bill's drug charges whose prescriptions were dispensed.
async fn dispensed_self_pay(tx: &Tx, bill_id: Uuid) -> AppResult<i64> {
    let drug_charges: Vec<charge::Model> = charge::Entity::find()
        .filter(charge::Column::TenantId.eq(tx.tenant()))
        .filter(charge::Column::BillId.eq(bill_id))
        .filter(charge::Column::Kind.eq("drug"))
        .all(&**tx)
        .await?;
    let lines: Vec<Uuid> = drug_charges.iter().filter_map(|c| c.source_id).collect();
    let dispensed = crate::pharmacy::service::dispensed_lines(tx, &lines).await?;
    Ok(drug_charges
        .iter()
        .filter(|c| c.source_id.is_some_and(|l| dispensed.contains(&l)))
        .map(|c| c.self_pay_fen)
        .sum())
}

/// Whether every charge of a prescription's lines is on a fully paid bill. On PostgreSQL the bills
/// stay locked until `tx` ends, in id order: a refund (which locks its bill first) then waits for
/// the dispense to commit and sees the drugs dispensed, and a dispense that waited for a refund
/// sees the bill no longer paid. Without the lock both could commit.
pub async fn prescription_paid(tx: &Tx, prescription_id: Uuid) -> AppResult<bool> {
    let lines: Vec<Uuid> = crate::pharmacy::service::line_ids(tx, prescription_id).await?;
    if lines.is_empty() {
        return Ok(false);
    }
    let charges = charge::Entity::find()
        .filter(charge::Column::TenantId.eq(tx.tenant()))
        .filter(charge::Column::SourceId.is_in(lines.clone()))
        .all(&**tx)
        .await?;
    if charges.len() < lines.len() {
        return Ok(false);
    }
    let bills: std::collections::BTreeSet<Uuid> = charges.iter().map(|c| c.bill_id).collect();
    for id in bills {
        let mut q = bill::Entity::find_by_id((tx.tenant(), id));
        if tx.get_database_backend() == DbBackend::Postgres {
            q = q.lock_exclusive();
        }
        let b = q.one(&**tx).await?;
        // Nothing left to pay (a fully insured bill has nothing to pay at all).
        if b.is_none_or(|b| b.paid_fen - b.refunded_fen < b.self_pay_fen) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// A billing document as the ledger must show it, with the event that carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// charge, payment or refund
    pub kind: &'static str,
    pub id: Uuid,
    pub bill_id: Uuid,
    pub amount_fen: i64,
    pub event_type: &'static str,
}

/// Every charge, payment and refund an institution recorded in `[start, end)`.
pub async fn documents(
    tx: &Tx,
    institution: Uuid,
    start: chrono::DateTime<Utc>,
    end: chrono::DateTime<Utc>,
) -> AppResult<Vec<Document>> {
    let t = tx.tenant();
    let charges = charge::Entity::find()
        .filter(charge::Column::TenantId.eq(t))
        .filter(charge::Column::InstitutionId.eq(institution))
        .filter(charge::Column::PostedAt.gte(start))
        .filter(charge::Column::PostedAt.lt(end))
        .all(&**tx)
        .await?;
    let payments = payment::Entity::find()
        .filter(payment::Column::TenantId.eq(t))
        .filter(payment::Column::InstitutionId.eq(institution))
        .filter(payment::Column::PaidAt.gte(start))
        .filter(payment::Column::PaidAt.lt(end))
        .all(&**tx)
        .await?;
    let refunds = refund::Entity::find()
        .filter(refund::Column::TenantId.eq(t))
        .filter(refund::Column::InstitutionId.eq(institution))
        .filter(refund::Column::RefundedAt.gte(start))
        .filter(refund::Column::RefundedAt.lt(end))
        .all(&**tx)
        .await?;
    let doc = |kind, id, bill_id, amount_fen, event_type| Document { kind, id, bill_id, amount_fen, event_type };
    Ok(charges
        .into_iter()
        .map(|c| doc("charge", c.id, c.bill_id, c.amount_fen, "billing.charge_posted"))
        .chain(payments.into_iter().map(|p| doc("payment", p.id, p.bill_id, p.amount_fen, "billing.payment_received")))
        .chain(refunds.into_iter().map(|r| doc("refund", r.id, r.bill_id, r.amount_fen, "billing.refund_issued")))
        .collect())
}

/// The revenue of a person's first bill at an institution opened at or after `since`, counting
/// the charges posted on it up to `until`: what referral fee sharing shares.
pub async fn first_bill_revenue(
    tx: &Tx,
    institution: Uuid,
    person: Uuid,
    since: chrono::DateTime<Utc>,
    until: chrono::DateTime<Utc>,
) -> AppResult<i64> {
    let first = bill::Entity::find()
        .filter(bill::Column::TenantId.eq(tx.tenant()))
        .filter(bill::Column::InstitutionId.eq(institution))
        .filter(bill::Column::PersonId.eq(person))
        .filter(bill::Column::CreatedAt.gte(since))
        .order_by_asc(bill::Column::CreatedAt)
        .one(&**tx)
        .await?;
    let Some(first) = first else { return Ok(0) };
    Ok(charge::Entity::find()
        .filter(charge::Column::TenantId.eq(tx.tenant()))
        .filter(charge::Column::BillId.eq(first.id))
        .filter(charge::Column::PostedAt.lte(until))
        .all(&**tx)
        .await?
        .iter()
        .map(|c| c.amount_fen)
        .sum())
}

/// Charged amounts per China day (of posting), institution and kind (fee, drug): the source
/// statistics rebuild their charge sums from.
pub async fn stat_charges(tx: &Tx) -> AppResult<Vec<crate::platform::db::DailyCount>> {
    let day = crate::platform::db::china_date_sql(tx.get_database_backend(), "posted_at");
    crate::platform::db::daily_counts(
        tx,
        &format!(
            "SELECT {day} AS day, institution_id, kind AS dim, CAST(SUM(amount_fen) AS BIGINT) AS value
               FROM charges WHERE tenant_id = ? GROUP BY 1, 2, 3"
        ),
    )
    .await
}
