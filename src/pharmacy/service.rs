//! Pharmacy use cases: the formulary, stock by batch (receive, adjust, transfer, dispense
//! first-expiry-first-out), and prescriptions. Stock never goes negative: every decrement is a
//! conditional update under a row lock, backed by a CHECK constraint, and a shortfall refuses the
//! whole operation with nothing changed.

use std::collections::{HashMap, HashSet};

use chrono::{NaiveDate, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, DbBackend, EntityTrait, ExprTrait, QueryFilter,
    QueryOrder, QuerySelect, Set, sea_query::Expr,
};
use serde_json::json;
use uuid::Uuid;

use super::domain::{DrugSpec, LineRequest, PrescriptionStatus, check_line};
use super::entity::{
    drug, institution_drug, prescription, prescription_line, stock_batch, stock_movement, stock_transfer,
};
use crate::identity::ctx::{Perm, RequestCtx};
use crate::platform::audit::Purpose;
use crate::platform::codes;
use crate::platform::state::AppState;
use crate::platform::{AppError, AppResult, Tx};
use crate::tenancy::domain::ApplyReport;

/// Creates or updates the community formulary and each institution's stock list.
pub async fn apply_formulary(
    tx: &Tx,
    drugs: &[DrugSpec],
    institutions: &[(Uuid, Option<Vec<String>>)],
    report: &mut ApplyReport,
) -> AppResult<()> {
    let tenant = tx.tenant();
    let existing: HashMap<String, drug::Model> = drug::Entity::find()
        .filter(drug::Column::TenantId.eq(tenant))
        .all(&**tx)
        .await?
        .into_iter()
        .map(|d| (d.code.clone(), d))
        .collect();
    for d in drugs {
        let row = drug::Model {
            tenant_id: tenant,
            code: d.code.clone(),
            name: d.name.clone(),
            name_en: d.name_en.clone(),
            form: d.form.clone(),
            strength: d.strength.clone(),
            unit: d.unit.clone(),
            price_fen: d.price_fen,
            insurance_category: d.insurance.as_str().into(),
            allergen_class: d.allergen_class.clone(),
            updated_at: crate::platform::clock::now(),
        };
        match existing.get(&d.code) {
            None => {
                drug::ActiveModel::from(row).insert(&**tx).await?;
                report.created.push(format!("drug {}", d.code));
            }
            Some(old) if drug::Model { updated_at: old.updated_at, ..row.clone() } != *old => {
                drug::ActiveModel::from(row).reset_all().update(&**tx).await?;
                report.updated.push(format!("drug {}", d.code));
            }
            Some(_) => report.unchanged += 1,
        }
    }
    let all: Vec<String> = drugs.iter().map(|d| d.code.clone()).collect();
    let stocked: HashSet<(Uuid, String)> = institution_drug::Entity::find()
        .filter(institution_drug::Column::TenantId.eq(tenant))
        .all(&**tx)
        .await?
        .into_iter()
        .map(|r| (r.institution_id, r.drug_code))
        .collect();
    for (inst, list) in institutions {
        for code in list.as_ref().unwrap_or(&all) {
            if !stocked.contains(&(*inst, code.clone())) {
                institution_drug::ActiveModel {
                    tenant_id: Set(tenant),
                    institution_id: Set(*inst),
                    drug_code: Set(code.clone()),
                }
                .insert(&**tx)
                .await?;
                report.created.push(format!("stock list {code}@{inst}"));
            }
        }
    }
    Ok(())
}

pub async fn find_drug(tx: &Tx, code: &str) -> AppResult<drug::Model> {
    drug::Entity::find_by_id((tx.tenant(), code.to_string()))
        .one(&**tx)
        .await?
        .ok_or_else(|| AppError::new(codes::DRUG_UNKNOWN, "no such drug in the community formulary"))
}

async fn stocked_at(tx: &Tx, institution: Uuid, code: &str) -> AppResult<bool> {
    Ok(institution_drug::Entity::find_by_id((tx.tenant(), institution, code.to_string())).one(&**tx).await?.is_some())
}

/// Unexpired units of a drug on hand at an institution.
async fn on_hand_at(tx: &Tx, institution: Uuid, code: &str) -> AppResult<i64> {
    let today = crate::platform::clock::now().date_naive();
    Ok(stock_batch::Entity::find()
        .filter(stock_batch::Column::TenantId.eq(tx.tenant()))
        .filter(stock_batch::Column::InstitutionId.eq(institution))
        .filter(stock_batch::Column::DrugCode.eq(code))
        .filter(stock_batch::Column::Expiry.gte(today))
        .all(&**tx)
        .await?
        .iter()
        .map(|b| b.quantity)
        .sum())
}

#[derive(Debug, Clone)]
pub struct DrugView {
    pub drug: drug::Model,
    pub stocked_here: bool,
    pub on_hand: i64,
}

/// The formulary as the caller's institution sees it, with usable (unexpired) stock on hand.
pub async fn formulary(state: &AppState, ctx: &RequestCtx, q: Option<&str>) -> AppResult<Vec<DrugView>> {
    ctx.require(Perm::InstitutionRead)?;
    let tx = state.db.begin(ctx).await?;
    let drugs = drug::Entity::find()
        .filter(drug::Column::TenantId.eq(ctx.tenant))
        .order_by_asc(drug::Column::Code)
        .all(&*tx)
        .await?;
    let here: HashSet<String> = institution_drug::Entity::find()
        .filter(institution_drug::Column::TenantId.eq(ctx.tenant))
        .filter(institution_drug::Column::InstitutionId.eq(ctx.institution))
        .all(&*tx)
        .await?
        .into_iter()
        .map(|r| r.drug_code)
        .collect();
    let today = crate::platform::clock::now().date_naive();
    let mut on_hand: HashMap<String, i64> = HashMap::new();
    for b in stock_batch::Entity::find()
        .filter(stock_batch::Column::TenantId.eq(ctx.tenant))
        .filter(stock_batch::Column::InstitutionId.eq(ctx.institution))
        .filter(stock_batch::Column::Expiry.gte(today))
        .all(&*tx)
        .await?
    {
        *on_hand.entry(b.drug_code).or_default() += b.quantity;
    }
    tx.rollback().await?;
    let q = q.map(str::trim).filter(|s| !s.is_empty()).map(str::to_lowercase);
    Ok(drugs
        .into_iter()
        .filter(|d| {
            q.as_ref().is_none_or(|q| {
                d.code.contains(q.as_str())
                    || d.name.contains(q.as_str())
                    || d.name_en.as_deref().is_some_and(|e| e.to_lowercase().contains(q.as_str()))
            })
        })
        .map(|d| DrugView {
            stocked_here: here.contains(&d.code),
            on_hand: on_hand.get(&d.code).copied().unwrap_or(0),
            drug: d,
        })
        .collect())
}

pub struct Receipt {
    pub drug_code: String,
    pub lot: String,
    pub expiry: NaiveDate,
    pub quantity: i64,
}

fn check_quantity(q: i64) -> AppResult<()> {
    if !(1..=super::domain::MAX_STOCK_QUANTITY).contains(&q) {
        return Err(AppError::new(codes::QUANTITY_INVALID, "quantity must be 1 to 1,000,000,000"));
    }
    Ok(())
}

async fn movement(
    tx: &Tx,
    batch: &stock_batch::Model,
    delta: i64,
    kind: &str,
    reason: Option<String>,
    reference: Option<Uuid>,
    actor: Uuid,
) -> AppResult<()> {
    stock_movement::ActiveModel {
        tenant_id: Set(tx.tenant()),
        id: Set(Uuid::now_v7()),
        institution_id: Set(batch.institution_id),
        drug_code: Set(batch.drug_code.clone()),
        batch_id: Set(batch.id),
        delta: Set(delta),
        kind: Set(kind.into()),
        reason: Set(reason),
        reference_id: Set(reference),
        actor_id: Set(Some(actor)),
        occurred_at: Set(crate::platform::clock::now()),
    }
    .insert(&**tx)
    .await?;
    Ok(())
}

/// Adds `quantity` to the batch (lot, expiry) at `institution`, creating it if new.
async fn add_to_batch(
    tx: &Tx,
    institution: Uuid,
    drug_code: &str,
    lot: &str,
    expiry: NaiveDate,
    quantity: i64,
) -> AppResult<stock_batch::Model> {
    let existing = stock_batch::Entity::find()
        .filter(stock_batch::Column::TenantId.eq(tx.tenant()))
        .filter(stock_batch::Column::InstitutionId.eq(institution))
        .filter(stock_batch::Column::DrugCode.eq(drug_code))
        .filter(stock_batch::Column::Lot.eq(lot))
        .filter(stock_batch::Column::Expiry.eq(expiry))
        .one(&**tx)
        .await?;
    Ok(match existing {
        Some(b) => {
            stock_batch::Entity::update_many()
                .col_expr(stock_batch::Column::Quantity, Expr::col(stock_batch::Column::Quantity).add(quantity))
                .filter(stock_batch::Column::TenantId.eq(tx.tenant()))
                .filter(stock_batch::Column::Id.eq(b.id))
                .exec(&**tx)
                .await?;
            stock_batch::Model { quantity: b.quantity + quantity, ..b }
        }
        None => {
            stock_batch::ActiveModel {
                tenant_id: Set(tx.tenant()),
                id: Set(Uuid::now_v7()),
                institution_id: Set(institution),
                drug_code: Set(drug_code.into()),
                lot: Set(lot.into()),
                expiry: Set(expiry),
                quantity: Set(quantity),
                received_at: Set(crate::platform::clock::now()),
            }
            .insert(&**tx)
            .await?
        }
    })
}

pub async fn receive(state: &AppState, ctx: &RequestCtx, r: Receipt) -> AppResult<stock_batch::Model> {
    ctx.require(Perm::PharmacyStock)?;
    check_quantity(r.quantity)?;
    let lot = r.lot.trim();
    if lot.is_empty() || lot.chars().count() > 40 {
        return Err(AppError::new(codes::LOT_INVALID, "lot must be 1-40 characters"));
    }
    crate::platform::dates::expiry("expiry", r.expiry, crate::platform::clock::now().date_naive())?;
    if r.expiry < crate::platform::clock::now().date_naive() {
        return Err(AppError::new(codes::BATCH_EXPIRED, "this batch has already expired"));
    }
    let mut tx = state.db.begin(ctx).await?;
    find_drug(&tx, &r.drug_code).await?;
    if !stocked_at(&tx, ctx.institution, &r.drug_code).await? {
        return Err(AppError::new(codes::DRUG_NOT_STOCKED, "this institution does not stock that drug"));
    }
    let batch = add_to_batch(&tx, ctx.institution, &r.drug_code, lot, r.expiry, r.quantity).await?;
    movement(&tx, &batch, r.quantity, "receive", None, None, ctx.user).await?;
    tx.audit(ctx.audit("pharmacy.receive", "stock_batch", Purpose::Administration).resource(batch.id));
    tx.commit().await?;
    Ok(batch)
}

pub async fn adjust(
    state: &AppState,
    ctx: &RequestCtx,
    batch_id: Uuid,
    delta: i64,
    reason: &str,
) -> AppResult<stock_batch::Model> {
    ctx.require(Perm::PharmacyStock)?;
    // unsigned_abs: i64::MIN has no absolute value in i64 (found by schemathesis).
    if delta == 0 || delta.unsigned_abs() > super::domain::MAX_STOCK_QUANTITY as u64 {
        return Err(AppError::new(codes::QUANTITY_INVALID, "an adjustment changes the quantity by 1 to 1,000,000,000"));
    }
    let reason = reason.trim();
    if !(2..=200).contains(&reason.chars().count()) {
        return Err(AppError::new(codes::REASON_REQUIRED, "give a reason of 2 to 200 characters"));
    }
    let mut tx = state.db.begin(ctx).await?;
    let batch = lock_batch(&tx, batch_id).await?;
    if batch.institution_id != ctx.institution {
        return Err(AppError::new(codes::BATCH_NOT_FOUND, "no such batch at your institution"));
    }
    if batch.quantity + delta < 0 {
        return Err(AppError::new(codes::STOCK_INSUFFICIENT, "the adjustment would take the batch below zero"));
    }
    stock_batch::Entity::update_many()
        .col_expr(stock_batch::Column::Quantity, Expr::col(stock_batch::Column::Quantity).add(delta))
        .filter(stock_batch::Column::TenantId.eq(ctx.tenant))
        .filter(stock_batch::Column::Id.eq(batch_id))
        .exec(&*tx)
        .await?;
    movement(&tx, &batch, delta, "adjust", Some(reason.to_string()), None, ctx.user).await?;
    tx.audit(ctx.audit("pharmacy.adjust", "stock_batch", Purpose::Administration).resource(batch_id));
    tx.commit().await?;
    Ok(stock_batch::Model { quantity: batch.quantity + delta, ..batch })
}

async fn lock_batch(tx: &Tx, id: Uuid) -> AppResult<stock_batch::Model> {
    let mut q = stock_batch::Entity::find_by_id((tx.tenant(), id));
    if tx.get_database_backend() == DbBackend::Postgres {
        q = q.lock_exclusive();
    }
    q.one(&**tx).await?.ok_or_else(|| AppError::new(codes::BATCH_NOT_FOUND, "no such batch at your institution"))
}

pub async fn stock(state: &AppState, ctx: &RequestCtx, drug_code: Option<&str>) -> AppResult<Vec<stock_batch::Model>> {
    ctx.require(Perm::PharmacyStock)?;
    let tx = state.db.begin(ctx).await?;
    let mut q = stock_batch::Entity::find()
        .filter(stock_batch::Column::TenantId.eq(ctx.tenant))
        .filter(stock_batch::Column::InstitutionId.eq(ctx.institution))
        .filter(stock_batch::Column::Quantity.gt(0));
    if let Some(c) = drug_code {
        q = q.filter(stock_batch::Column::DrugCode.eq(c));
    }
    let rows =
        q.order_by_asc(stock_batch::Column::DrugCode).order_by_asc(stock_batch::Column::Expiry).all(&*tx).await?;
    tx.rollback().await?;
    Ok(rows)
}

/// Takes `quantity` of a drug at `institution`, first expiry first out, from unexpired batches
/// (or from one named batch). All or nothing.
async fn take(
    tx: &Tx,
    institution: Uuid,
    drug_code: &str,
    quantity: i64,
    pinned: Option<Uuid>,
) -> AppResult<Vec<(stock_batch::Model, i64)>> {
    let today = crate::platform::clock::now().date_naive();
    let batches = match pinned {
        Some(id) => {
            let b = lock_batch(tx, id).await?;
            if b.institution_id != institution || b.drug_code != drug_code {
                return Err(AppError::new(codes::BATCH_MISMATCH, "that batch is not this drug at this institution"));
            }
            if b.expiry < today {
                return Err(AppError::new(codes::BATCH_EXPIRED, "that batch has expired and cannot be dispensed"));
            }
            vec![b]
        }
        None => {
            let mut q = stock_batch::Entity::find()
                .filter(stock_batch::Column::TenantId.eq(tx.tenant()))
                .filter(stock_batch::Column::InstitutionId.eq(institution))
                .filter(stock_batch::Column::DrugCode.eq(drug_code))
                .filter(stock_batch::Column::Quantity.gt(0))
                .filter(stock_batch::Column::Expiry.gte(today))
                .order_by_asc(stock_batch::Column::Expiry)
                .order_by_asc(stock_batch::Column::Id);
            if tx.get_database_backend() == DbBackend::Postgres {
                q = q.lock_exclusive();
            }
            q.all(&**tx).await?
        }
    };
    let available: i64 = batches.iter().map(|b| b.quantity).sum();
    if available < quantity {
        return Err(AppError::new(codes::STOCK_INSUFFICIENT, "not enough unexpired stock of this drug")
            .with_details(json!({ "drug_code": drug_code, "requested": quantity, "available": available })));
    }
    let mut left = quantity;
    let mut taken = Vec::new();
    for b in batches {
        if left == 0 {
            break;
        }
        let n = std::cmp::min(left, b.quantity);
        let done = stock_batch::Entity::update_many()
            .col_expr(stock_batch::Column::Quantity, Expr::col(stock_batch::Column::Quantity).sub(n))
            .filter(stock_batch::Column::TenantId.eq(tx.tenant()))
            .filter(stock_batch::Column::Id.eq(b.id))
            .filter(stock_batch::Column::Quantity.gte(n))
            .exec(&**tx)
            .await?;
        if done.rows_affected != 1 {
            return Err(AppError::new(codes::STOCK_INSUFFICIENT, "the stock changed underneath; try again"));
        }
        left -= n;
        taken.push((b, n));
    }
    Ok(taken)
}

#[derive(Debug, Clone)]
pub struct TransferView {
    pub id: Uuid,
    pub from: Uuid,
    pub to: Uuid,
    pub drug_code: String,
    pub quantity: i64,
    pub value_fen: i64,
}

/// Moves stock to another institution of the community (the county pharmacy supplying
/// townships and villages); batches keep their lot and expiry.
pub async fn transfer(
    state: &AppState,
    ctx: &RequestCtx,
    to: Uuid,
    drug_code: &str,
    quantity: i64,
) -> AppResult<TransferView> {
    ctx.require(Perm::PharmacyStock)?;
    check_quantity(quantity)?;
    if to == ctx.institution {
        return Err(AppError::new(codes::TRANSFER_SAME_INSTITUTION, "a transfer goes to another institution"));
    }
    let mut tx = state.db.begin(ctx).await?;
    crate::tenancy::service::get_institution(&tx, to).await?;
    let drug = find_drug(&tx, drug_code).await?;
    if !stocked_at(&tx, to, drug_code).await? {
        return Err(AppError::new(codes::DRUG_NOT_STOCKED_THERE, "the receiving institution does not stock that drug"));
    }
    let id = Uuid::now_v7();
    let taken = take(&tx, ctx.institution, drug_code, quantity, None).await?;
    let mut lots = Vec::new();
    for (batch, n) in &taken {
        movement(&tx, batch, -n, "transfer_out", None, Some(id), ctx.user).await?;
        let dest = add_to_batch(&tx, to, drug_code, &batch.lot, batch.expiry, *n).await?;
        movement(&tx, &dest, *n, "transfer_in", None, Some(id), ctx.user).await?;
        lots.push(super::events::TransferredBatch { lot: batch.lot.clone(), expiry: batch.expiry, quantity: *n });
    }
    let value_fen = quantity * drug.price_fen;
    stock_transfer::ActiveModel {
        tenant_id: Set(ctx.tenant),
        id: Set(id),
        from_institution: Set(ctx.institution),
        to_institution: Set(to),
        drug_code: Set(drug_code.into()),
        quantity: Set(quantity),
        value_fen: Set(value_fen),
        actor_id: Set(ctx.user),
        created_at: Set(crate::platform::clock::now()),
    }
    .insert(&*tx)
    .await?;
    let event = super::events::Transferred {
        transfer: id,
        from_institution: ctx.institution,
        to_institution: to,
        drug_code: drug_code.into(),
        quantity,
        value_fen,
        batches: lots,
    };
    tx.emit(Some(ctx.user), id, &event).await?;
    tx.audit(ctx.audit("pharmacy.transfer", "stock_transfer", Purpose::Administration).resource(id));
    tx.commit().await?;
    Ok(TransferView { id, from: ctx.institution, to, drug_code: drug_code.into(), quantity, value_fen })
}

#[derive(Debug, Clone)]
pub struct PrescriptionView {
    pub prescription: prescription::Model,
    pub lines: Vec<PrescribedLine>,
}

/// A line of a prescription with the drug it names.
#[derive(Debug, Clone)]
pub struct PrescribedLine {
    pub line: prescription_line::Model,
    pub drug: drug::Model,
}

/// Writes a prescription on an open encounter of the caller's institution, after checking each
/// line, duplicates (within it and against the encounter's other prescriptions) and the
/// person's recorded allergies.
pub async fn prescribe(
    state: &AppState,
    ctx: &RequestCtx,
    encounter_id: Uuid,
    chronic: bool,
    lines: Vec<LineRequest>,
) -> AppResult<PrescriptionView> {
    ctx.require(Perm::Prescribe)?;
    if lines.is_empty() {
        return Err(AppError::new(codes::LINES_REQUIRED, "a prescription has at least one line"));
    }
    for (i, l) in lines.iter().enumerate() {
        check_line(l, chronic, i)?;
    }
    let mut tx = state.db.begin(ctx).await?;
    let enc = crate::clinical::service::open_encounter(&tx, ctx, encounter_id).await?;
    let mut seen: HashSet<String> = HashSet::new();
    for p in prescriptions_of(&tx, encounter_id).await? {
        seen.extend(p.lines.into_iter().map(|l| l.line.drug_code));
    }
    let allergies = crate::clinical::service::allergens_of(&tx, enc.person_id).await?;
    let mut resolved = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let drug = find_drug(&tx, &l.drug_code).await.map_err(|e| e.with_details(json!({ "line": i })))?;
        if !stocked_at(&tx, ctx.institution, &drug.code).await? {
            return Err(AppError::new(codes::DRUG_NOT_STOCKED, "this institution does not stock that drug")
                .with_details(json!({ "line": i, "drug_code": drug.code })));
        }
        if !seen.insert(drug.code.clone()) {
            return Err(AppError::new(codes::DUPLICATE_DRUG, "the same drug is already prescribed in this visit")
                .with_details(json!({ "line": i, "drug_code": drug.code })));
        }
        if allergies.contains(&drug.code) || drug.allergen_class.as_ref().is_some_and(|c| allergies.contains(c)) {
            return Err(AppError::new(
                codes::ALLERGY_CONFLICT,
                "the patient has a recorded allergy to this drug or its class",
            )
            .with_details(json!({ "line": i, "drug_code": drug.code, "allergen_class": drug.allergen_class })));
        }
        // More than the clinic has cannot be dispensed: say so now, on the line.
        let available = on_hand_at(&tx, ctx.institution, &drug.code).await?;
        if available < lines[i].quantity {
            return Err(AppError::new(codes::STOCK_INSUFFICIENT, "more than the stock on hand of this drug")
                .with_details(json!({ "line": i, "field": format!("lines[{i}].quantity"), "drug_code": drug.code,
                        "requested": lines[i].quantity, "available": available })));
        }
        resolved.push(drug);
    }
    let id = Uuid::now_v7();
    let p = prescription::ActiveModel {
        tenant_id: Set(ctx.tenant),
        id: Set(id),
        encounter_id: Set(encounter_id),
        institution_id: Set(ctx.institution),
        person_id: Set(enc.person_id),
        prescriber_id: Set(ctx.user),
        chronic: Set(chronic),
        status: Set(PrescriptionStatus::Active),
        created_at: Set(crate::platform::clock::now()),
        dispensed_at: Set(None),
        dispensed_by: Set(None),
    }
    .insert(&*tx)
    .await?;
    let mut out = Vec::new();
    for (i, (l, drug)) in lines.into_iter().zip(resolved).enumerate() {
        let line = prescription_line::ActiveModel {
            tenant_id: Set(ctx.tenant),
            id: Set(Uuid::now_v7()),
            prescription_id: Set(id),
            line_no: Set(i as i32 + 1),
            drug_code: Set(drug.code.clone()),
            dose: Set(l.dose),
            dose_unit: Set(l.dose_unit.clone()),
            frequency: Set(l.frequency.as_str().into()),
            days: Set(l.days),
            quantity: Set(l.quantity),
            unit_price_fen: Set(drug.price_fen),
            insurance_category: Set(drug.insurance_category.clone()),
        }
        .insert(&*tx)
        .await?;
        out.push(PrescribedLine { line, drug });
    }
    tx.audit(ctx.audit("prescription.write", "prescription", Purpose::Treatment).resource(id).subject(enc.person_id));
    tx.commit().await?;
    Ok(PrescriptionView { prescription: p, lines: out })
}

/// Prescriptions of an encounter with their lines (for billing, summaries and views).
pub async fn prescriptions_of(tx: &Tx, encounter_id: Uuid) -> AppResult<Vec<PrescriptionView>> {
    let ps = prescription::Entity::find()
        .filter(prescription::Column::TenantId.eq(tx.tenant()))
        .filter(prescription::Column::EncounterId.eq(encounter_id))
        .order_by_asc(prescription::Column::CreatedAt)
        .all(&**tx)
        .await?;
    views_of(tx, ps).await
}

async fn views_of(tx: &Tx, ps: Vec<prescription::Model>) -> AppResult<Vec<PrescriptionView>> {
    if ps.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = ps.iter().map(|p| p.id).collect();
    let lines = prescription_line::Entity::find()
        .filter(prescription_line::Column::TenantId.eq(tx.tenant()))
        .filter(prescription_line::Column::PrescriptionId.is_in(ids))
        .order_by_asc(prescription_line::Column::LineNo)
        .all(&**tx)
        .await?;
    let drugs: HashMap<String, drug::Model> = drug::Entity::find()
        .filter(drug::Column::TenantId.eq(tx.tenant()))
        .all(&**tx)
        .await?
        .into_iter()
        .map(|d| (d.code.clone(), d))
        .collect();
    Ok(ps
        .into_iter()
        .map(|p| PrescriptionView {
            lines: lines
                .iter()
                .filter(|l| l.prescription_id == p.id)
                .filter_map(|l| drugs.get(&l.drug_code).map(|d| PrescribedLine { line: l.clone(), drug: d.clone() }))
                .collect(),
            prescription: p,
        })
        .collect())
}

/// The line ids of a prescription (billing checks each one was charged and paid).
pub async fn line_ids(tx: &Tx, prescription_id: Uuid) -> AppResult<Vec<Uuid>> {
    Ok(prescription_line::Entity::find()
        .filter(prescription_line::Column::TenantId.eq(tx.tenant()))
        .filter(prescription_line::Column::PrescriptionId.eq(prescription_id))
        .all(&**tx)
        .await?
        .into_iter()
        .map(|l| l.id)
        .collect())
}

/// Which of these prescription lines belong to dispensed prescriptions.
pub async fn dispensed_lines(tx: &Tx, lines: &[Uuid]) -> AppResult<HashSet<Uuid>> {
    if lines.is_empty() {
        return Ok(HashSet::new());
    }
    let rows = prescription_line::Entity::find()
        .filter(prescription_line::Column::TenantId.eq(tx.tenant()))
        .filter(prescription_line::Column::Id.is_in(lines.to_vec()))
        .all(&**tx)
        .await?;
    let ids: Vec<Uuid> = rows.iter().map(|l| l.prescription_id).collect::<HashSet<_>>().into_iter().collect();
    let dispensed: HashSet<Uuid> = prescription::Entity::find()
        .filter(prescription::Column::TenantId.eq(tx.tenant()))
        .filter(prescription::Column::Id.is_in(ids))
        .filter(prescription::Column::Status.eq(PrescriptionStatus::Dispensed))
        .all(&**tx)
        .await?
        .into_iter()
        .map(|p| p.id)
        .collect();
    Ok(rows.into_iter().filter(|l| dispensed.contains(&l.prescription_id)).map(|l| l.id).collect())
}

/// A person's prescriptions across the community since a date (for the community summary).
pub async fn medications_of(tx: &Tx, person: Uuid, since: chrono::DateTime<Utc>) -> AppResult<Vec<PrescriptionView>> {
    let ps = prescription::Entity::find()
        .filter(prescription::Column::TenantId.eq(tx.tenant()))
        .filter(prescription::Column::PersonId.eq(person))
        .filter(prescription::Column::CreatedAt.gte(since))
        .order_by_desc(prescription::Column::CreatedAt)
        .limit(50)
        .all(&**tx)
        .await?;
    views_of(tx, ps).await
}

pub async fn get_prescription(state: &AppState, ctx: &RequestCtx, id: Uuid) -> AppResult<PrescriptionView> {
    if !ctx.can(Perm::Prescribe) && !ctx.can(Perm::Dispense) {
        ctx.require(Perm::Dispense)?;
    }
    let mut tx = state.db.begin(ctx).await?;
    let p = own_prescription(&tx, ctx, id, false).await?;
    let view = views_of(&tx, vec![p]).await?.remove(0);
    tx.audit(
        ctx.audit("prescription.read", "prescription", Purpose::Treatment)
            .resource(id)
            .subject(view.prescription.person_id),
    );
    tx.commit().await?;
    Ok(view)
}

/// A prescription of the caller's institution; `lock`ed (PostgreSQL) for a transaction that
/// changes it.
async fn own_prescription(tx: &Tx, ctx: &RequestCtx, id: Uuid, lock: bool) -> AppResult<prescription::Model> {
    let mut q = prescription::Entity::find_by_id((ctx.tenant, id));
    if lock && tx.get_database_backend() == DbBackend::Postgres {
        q = q.lock_exclusive();
    }
    q.one(&**tx)
        .await?
        .filter(|p| p.institution_id == ctx.institution)
        .ok_or_else(|| AppError::new(codes::PRESCRIPTION_NOT_FOUND, "no such prescription at your institution"))
}

/// What one batch gave to a dispensed line.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DispensedBatch {
    #[serde(rename = "batch")]
    pub batch_id: Uuid,
    pub lot: String,
    pub expiry: NaiveDate,
    pub quantity: i64,
}

#[derive(Debug, Clone)]
pub struct DispensedLine {
    pub line_id: Uuid,
    pub drug_code: String,
    pub quantity: i64,
    pub batches: Vec<DispensedBatch>,
}

/// A prescription of the caller's institution that can still be dispensed, locked for the rest
/// of the transaction; 409 `prescription_not_dispensable` once dispensed.
pub async fn dispensable_prescription(tx: &Tx, ctx: &RequestCtx, id: Uuid) -> AppResult<prescription::Model> {
    let p = own_prescription(tx, ctx, id, true).await?;
    if p.status != PrescriptionStatus::Active {
        return Err(AppError::new(codes::PRESCRIPTION_NOT_DISPENSABLE, "this prescription was already dispensed"));
    }
    Ok(p)
}

/// Dispenses `p` from stock in `tx`, first expiry first out (or from the batches pinned per
/// line). The caller has checked that it may be dispensed (`visit::service::dispense`: paid).
pub async fn dispense_in(
    tx: &mut Tx,
    ctx: &RequestCtx,
    p: prescription::Model,
    pinned: HashMap<Uuid, Uuid>,
) -> AppResult<Vec<DispensedLine>> {
    let id = p.id;
    let mut view = views_of(tx, vec![p.clone()]).await?.remove(0);
    // Lock batches in one global order (drug code), so two dispenses cannot deadlock.
    view.lines.sort_by(|a, b| a.line.drug_code.cmp(&b.line.drug_code));
    // Claim the prescription first: a concurrent second dispense finds it no longer active.
    let claimed = prescription::Entity::update_many()
        .col_expr(prescription::Column::Status, Expr::value(PrescriptionStatus::Dispensed))
        .col_expr(prescription::Column::DispensedAt, Expr::value(crate::platform::clock::now()))
        .col_expr(prescription::Column::DispensedBy, Expr::value(ctx.user))
        .filter(
            Condition::all().add(prescription::Column::TenantId.eq(ctx.tenant)).add(prescription::Column::Id.eq(id)),
        )
        .filter(prescription::Column::Status.eq(PrescriptionStatus::Active))
        .exec(&**tx)
        .await?;
    if claimed.rows_affected != 1 {
        return Err(AppError::new(codes::PRESCRIPTION_NOT_DISPENSABLE, "this prescription was already dispensed"));
    }
    let mut out = Vec::new();
    let mut value_fen = 0i64;
    for PrescribedLine { line, .. } in &view.lines {
        let taken = take(tx, ctx.institution, &line.drug_code, line.quantity, pinned.get(&line.id).copied())
            .await
            .map_err(|e| e.with_details(json!({ "line_id": line.id, "drug_code": line.drug_code })))?;
        let mut batches = Vec::new();
        for (b, n) in taken {
            movement(tx, &b, -n, "dispense", None, Some(id), ctx.user).await?;
            batches.push(DispensedBatch { batch_id: b.id, lot: b.lot.clone(), expiry: b.expiry, quantity: n });
        }
        value_fen += line.quantity * line.unit_price_fen;
        out.push(DispensedLine {
            line_id: line.id,
            drug_code: line.drug_code.clone(),
            quantity: line.quantity,
            batches,
        });
    }
    let event = super::events::Dispensed {
        prescription: id,
        encounter: p.encounter_id,
        institution: ctx.institution,
        person: p.person_id,
        value_fen,
        lines: out
            .iter()
            .map(|l| super::events::DispensedLineEvent {
                drug_code: l.drug_code.clone(),
                quantity: l.quantity,
                batches: l.batches.clone(),
            })
            .collect(),
    };
    tx.emit(Some(ctx.user), id, &event).await?;
    tx.audit(ctx.audit("prescription.dispense", "prescription", Purpose::Treatment).resource(id).subject(p.person_id));
    Ok(out)
}

/// Demo stock: every institution gets 1,000 units of each drug it stocks, expiring in two years,
/// unless it already holds stock. For `serve --demo` and tests.
pub async fn seed_demo_stock(db: &crate::platform::Db, tenant: Uuid) -> AppResult<usize> {
    let tx = db.begin(&crate::platform::SystemScope { tenant }).await?;
    let has_stock =
        stock_batch::Entity::find().filter(stock_batch::Column::TenantId.eq(tenant)).one(&*tx).await?.is_some();
    if has_stock {
        tx.rollback().await?;
        return Ok(0);
    }
    let expiry = (crate::platform::clock::now() + chrono::Duration::days(730)).date_naive();
    let lists =
        institution_drug::Entity::find().filter(institution_drug::Column::TenantId.eq(tenant)).all(&*tx).await?;
    let now = crate::platform::clock::now();
    let rows: Vec<stock_batch::ActiveModel> = lists
        .iter()
        .map(|r| stock_batch::ActiveModel {
            tenant_id: Set(tenant),
            id: Set(Uuid::now_v7()),
            institution_id: Set(r.institution_id),
            drug_code: Set(r.drug_code.clone()),
            lot: Set("DEMO-2026".into()),
            expiry: Set(expiry),
            quantity: Set(1000),
            received_at: Set(now),
        })
        .collect();
    let n = rows.len();
    for chunk in rows.chunks(200) {
        stock_batch::Entity::insert_many(chunk.to_vec()).exec(&*tx).await?;
    }
    tx.commit().await?;
    Ok(n)
}
