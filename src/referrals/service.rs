//! Referral use cases: create (up, out of county), submit, accept, reject, record arrival,
//! complete, cancel, refer back down, expire overdue ones, inbox and sent lists, and reading the
//! person's records through the access grant an accepted referral opens.
//!
//! Only the right party moves a referral: the sender submits and cancels, the receiver decides,
//! records arrival and completes; anyone else at the two institutions gets 403, anyone elsewhere
//! 404. A transition that does not exist is 409 `referral_invalid_transition`. Every transition
//! is one transaction: the referral row (locked), its history row, the grant, the audit row and
//! the event.

use chrono::{DateTime, Duration, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder,
    QuerySelect, Set,
};
use serde_json::json;
use uuid::Uuid;

use super::domain::{Action, Direction, Party, Status, Urgency, next};
use super::entity::{access_grant, referral, referral_notification, referral_transition};
use super::events;
use crate::identity::ctx::{Perm, RequestCtx};
use crate::platform::audit::{AuditEntry, Outcome, Purpose};
use crate::platform::codes;
use crate::platform::events::Event;
use crate::platform::state::AppState;
use crate::platform::{AppError, AppResult, Db, SystemScope, Tx};
use crate::tenancy::InstitutionKind;

/// The tenant's referral settings, under `[settings]`: hours the receiver has to decide a
/// routine referral (`referral_sla_hours`, default 24) and an urgent one
/// (`referral_urgent_sla_hours`, default 2), and the days a grant stays open after completion
/// (`referral_grant_days`, default 30).
pub struct Settings {
    pub sla_hours: i64,
    pub urgent_sla_hours: i64,
    pub grant_days: i64,
}

impl Settings {
    /// The decision limit for a referral of `urgency`.
    pub fn sla(&self, urgency: Urgency) -> Duration {
        Duration::hours(if urgency == Urgency::Urgent { self.urgent_sla_hours } else { self.sla_hours })
    }
}

pub async fn settings(tx: &Tx) -> AppResult<Settings> {
    let t = crate::tenancy::service::get_tenant(&**tx, tx.tenant()).await?;
    let get = |k: &str, d: i64| t.settings.get(k).and_then(|v| v.as_i64()).filter(|v| *v > 0).unwrap_or(d);
    Ok(Settings {
        sla_hours: get("referral_sla_hours", 24),
        urgent_sla_hours: get("referral_urgent_sla_hours", 2),
        grant_days: get("referral_grant_days", 30),
    })
}

pub struct CreateInput {
    pub person_id: Uuid,
    pub direction: Direction,
    pub to_institution: Option<Uuid>,
    pub external_hospital: Option<String>,
    pub reason: String,
    pub urgent: bool,
    pub source_encounter: Option<Uuid>,
    /// Submit at once (the usual case) rather than keep a draft.
    pub submit: bool,
}

fn check_text(field: &'static str, s: &str, max: usize) -> AppResult<()> {
    let n = s.trim().chars().count();
    if n == 0 || n > max {
        return Err(AppError::new(codes::TEXT_INVALID, format!("{field} must be 1 to {max} characters"))
            .with_details(json!({ "field": field })));
    }
    Ok(())
}

/// Which way up is: village to township or county, township to county.
pub fn is_upward(from: InstitutionKind, to: InstitutionKind) -> bool {
    use InstitutionKind::*;
    matches!(
        (from, to),
        (VillageClinic, TownshipHealthCentre | CountyHospital) | (TownshipHealthCentre, CountyHospital)
    )
}

pub async fn create(state: &AppState, ctx: &RequestCtx, input: CreateInput) -> AppResult<referral::Model> {
    ctx.require(Perm::ReferralWrite)?;
    check_text("reason", &input.reason, 1000)?;
    let mut tx = state.db.begin(ctx).await?;
    let r = create_in(&mut tx, ctx, input).await?;
    tx.commit().await?;
    Ok(r)
}

/// A proposed up-referral for a person registered at the caller's institution, kept as a draft
/// for the doctor to review and send: to the institution above (a village clinic's township
/// centre, a township centre's county hospital). `None` when there is nothing above.
async fn propose_up(
    tx: &mut Tx,
    ctx: &RequestCtx,
    person: Uuid,
    reason: String,
    urgent: bool,
) -> AppResult<Option<referral::Model>> {
    let here = crate::tenancy::service::get_institution(tx, ctx.institution).await?;
    let Some(parent) = here.parent_id else { return Ok(None) };
    let above = crate::tenancy::service::get_institution(tx, parent).await?;
    if !is_upward(here.kind, above.kind) {
        return Ok(None);
    }
    let input = CreateInput {
        person_id: person,
        direction: Direction::Up,
        to_institution: Some(above.id),
        external_hospital: None,
        reason,
        urgent,
        source_encounter: None,
        submit: false,
    };
    Ok(Some(create_in(tx, ctx, input).await?))
}

/// The draft up-referral a flagged follow-up asks for: the open draft brought up to date with
/// the new finding (a danger value makes it urgent), or, if it was sent or dropped meanwhile,
/// a new draft. `None` where there is no level above the caller's institution.
pub async fn draft_up(
    tx: &mut Tx,
    ctx: &RequestCtx,
    open_draft: Option<Uuid>,
    person: Uuid,
    reason: String,
    urgent: bool,
) -> AppResult<Option<Uuid>> {
    if let Some(r) = open_draft
        && is_draft(tx, r).await?
        && refresh_draft(tx, r, reason.clone(), urgent).await?
    {
        return Ok(Some(r));
    }
    Ok(propose_up(tx, ctx, person, reason, urgent).await?.map(|r| r.id))
}

/// Whether a referral is still a draft (nobody has sent or dropped it yet).
async fn is_draft(tx: &Tx, id: Uuid) -> AppResult<bool> {
    Ok(referral::Entity::find_by_id((tx.tenant(), id)).one(&**tx).await?.is_some_and(|r| r.status == Status::Draft))
}

/// Brings a draft up to date with a later finding: its reason becomes the finding's, and it
/// becomes urgent when the finding is (never the other way: a danger value stays urgent).
/// False when it is no longer a draft (sent or dropped meanwhile): nothing is changed then.
async fn refresh_draft(tx: &Tx, id: Uuid, reason: String, urgent: bool) -> AppResult<bool> {
    use sea_orm::sea_query::Expr;
    check_text("reason", &reason, 1000)?;
    let mut update = referral::Entity::update_many()
        .col_expr(referral::Column::Reason, Expr::value(reason))
        .col_expr(referral::Column::UpdatedAt, Expr::value(crate::platform::clock::now()));
    if urgent {
        update = update.col_expr(referral::Column::Urgency, Expr::value("urgent"));
    }
    let done = update
        .filter(referral::Column::TenantId.eq(tx.tenant()))
        .filter(referral::Column::Id.eq(id))
        .filter(referral::Column::Status.eq(Status::Draft.as_str()))
        .exec(&**tx)
        .await?;
    Ok(done.rows_affected == 1)
}

/// Creates a referral in the caller's transaction.
pub async fn create_in(tx: &mut Tx, ctx: &RequestCtx, input: CreateInput) -> AppResult<referral::Model> {
    check_text("reason", &input.reason, 1000)?;
    if !crate::patients::service::registered_at(tx, input.person_id, ctx.institution).await? {
        return Err(AppError::new(codes::PERSON_NOT_FOUND, "no such person registered at your institution"));
    }
    let from = crate::tenancy::service::get_institution(tx, ctx.institution).await?;
    let (to, external, status) = match input.direction {
        Direction::Up => {
            let id = input.to_institution.ok_or_else(|| {
                AppError::new(codes::TO_INSTITUTION_REQUIRED, "an up-referral names the receiving institution")
            })?;
            let to = crate::tenancy::service::get_institution(tx, id).await?;
            if !is_upward(from.kind, to.kind) {
                return Err(AppError::new(
                    codes::REFERRAL_DIRECTION_INVALID,
                    format!("a referral up goes from a village or township to a higher level, not to a {}", to.kind),
                ));
            }
            (Some(to.id), None, if input.submit { Status::Requested } else { Status::Draft })
        }
        Direction::Out => {
            let name = input.external_hospital.as_deref().unwrap_or("");
            check_text("external_hospital", name, 200)?;
            // Nobody in the community receives it: it is a record, complete when written.
            (None, Some(name.trim().to_string()), Status::Completed)
        }
        Direction::Down => {
            return Err(AppError::new(
                codes::REFERRAL_DIRECTION_INVALID,
                "refer down from an up-referral you received",
            ));
        }
    };
    let snapshot = snapshot(tx, input.person_id, ctx.institution, input.source_encounter).await?;
    let limits = settings(tx).await?;
    let urgency = if input.urgent { Urgency::Urgent } else { Urgency::Routine };
    let now = crate::platform::clock::now();
    let requested = status == Status::Requested;
    let r = referral::ActiveModel {
        tenant_id: Set(ctx.tenant),
        id: Set(Uuid::now_v7()),
        person_id: Set(input.person_id),
        direction: Set(input.direction),
        from_institution: Set(ctx.institution),
        to_institution: Set(to),
        external_hospital: Set(external),
        status: Set(status),
        urgency: Set(urgency),
        reason: Set(input.reason.trim().to_string()),
        clinical_summary: Set(json!({ "reason": input.reason.trim(), "clinical": snapshot })),
        source_encounter_id: Set(input.source_encounter),
        parent_id: Set(None),
        created_by: Set(ctx.user),
        created_at: Set(now),
        requested_at: Set(requested.then_some(now)),
        sla_due_at: Set(requested.then(|| now + limits.sla(urgency))),
        decided_at: Set(None),
        decided_by: Set(None),
        reject_reason: Set(None),
        arrived_at: Set(None),
        completed_at: Set((status == Status::Completed).then_some(now)),
        completion_summary: Set(None),
        discharge_summary: Set(None),
        rehab_plan: Set(None),
        cancelled_at: Set(None),
        cancel_reason: Set(None),
        expired_at: Set(None),
        updated_at: Set(now),
    }
    .insert(&**tx)
    .await?;
    history(tx, &r, None, Some(ctx)).await?;
    match status {
        Status::Requested => emit(tx, &r, Action::Submit.event(), None, Some(ctx.user)).await?,
        Status::Completed => emit(tx, &r, events::Completed::TYPE, None, Some(ctx.user)).await?,
        _ => {}
    }
    tx.audit(ctx.audit("referral.create", "referral", Purpose::Referral).resource(r.id).subject(r.person_id));
    Ok(r)
}

pub struct DownInput {
    pub discharge_summary: String,
    pub rehab_plan: String,
    pub to_institution: Option<Uuid>,
}

/// The reason stored on a referral back down (pages show it in the reader's language).
pub const DOWN_REASON: &str = "下转康复 / referred back for rehabilitation";

/// Sends the patient of an up-referral this institution received back down, with a discharge
/// summary and a rehabilitation plan; it goes to the original sender unless another grassroots
/// institution is named.
pub async fn refer_down(
    state: &AppState,
    ctx: &RequestCtx,
    parent_id: Uuid,
    input: DownInput,
) -> AppResult<referral::Model> {
    ctx.require(Perm::ReferralManage)?;
    check_text("discharge_summary", &input.discharge_summary, 4000)?;
    check_text("rehab_plan", &input.rehab_plan, 4000)?;
    let mut tx = state.db.begin(ctx).await?;
    let parent = party_referral(&tx, ctx, parent_id).await?;
    if parent.direction != Direction::Up || parent.to_institution != Some(ctx.institution) {
        return Err(AppError::new(
            codes::REFERRAL_WRONG_PARTY,
            "only the receiver of an up-referral refers the patient back down",
        ));
    }
    if !matches!(parent.status, Status::Arrived | Status::Completed) {
        return Err(AppError::new(codes::REFERRAL_INVALID_TRANSITION, "refer down after the patient has arrived"));
    }
    let to_id = input.to_institution.unwrap_or(parent.from_institution);
    let to = crate::tenancy::service::get_institution(&tx, to_id).await?;
    if !to.kind.is_grassroots() {
        return Err(AppError::new(codes::REFERRAL_DIRECTION_INVALID, "a down-referral goes to a township or village"));
    }
    let limits = settings(&tx).await?;
    let snapshot = snapshot(&tx, parent.person_id, ctx.institution, None).await?;
    let now = crate::platform::clock::now();
    let r = referral::ActiveModel {
        tenant_id: Set(ctx.tenant),
        id: Set(Uuid::now_v7()),
        person_id: Set(parent.person_id),
        direction: Set(Direction::Down),
        from_institution: Set(ctx.institution),
        to_institution: Set(Some(to.id)),
        external_hospital: Set(None),
        status: Set(Status::Requested),
        urgency: Set(Urgency::Routine),
        reason: Set(DOWN_REASON.into()),
        clinical_summary: Set(json!({ "clinical": snapshot })),
        source_encounter_id: Set(None),
        parent_id: Set(Some(parent.id)),
        created_by: Set(ctx.user),
        created_at: Set(now),
        requested_at: Set(Some(now)),
        sla_due_at: Set(Some(now + limits.sla(Urgency::Routine))),
        decided_at: Set(None),
        decided_by: Set(None),
        reject_reason: Set(None),
        arrived_at: Set(None),
        completed_at: Set(None),
        completion_summary: Set(None),
        discharge_summary: Set(Some(input.discharge_summary.trim().to_string())),
        rehab_plan: Set(Some(input.rehab_plan.trim().to_string())),
        cancelled_at: Set(None),
        cancel_reason: Set(None),
        expired_at: Set(None),
        updated_at: Set(now),
    }
    .insert(&*tx)
    .await?;
    history(&tx, &r, None, Some(ctx)).await?;
    emit(&mut tx, &r, Action::Submit.event(), None, Some(ctx.user)).await?;
    tx.audit(ctx.audit("referral.refer_down", "referral", Purpose::Referral).resource(r.id).subject(r.person_id));
    tx.commit().await?;
    Ok(r)
}

/// A referral the caller's institution is a party to (sender or receiver), locked for the rest
/// of the transaction; 404 for anyone else.
async fn party_referral(tx: &Tx, ctx: &RequestCtx, id: Uuid) -> AppResult<referral::Model> {
    let mut q = referral::Entity::find_by_id((ctx.tenant, id));
    if tx.get_database_backend() == DbBackend::Postgres {
        q = q.lock_exclusive();
    }
    q.one(&**tx)
        .await?
        .filter(|r| r.from_institution == ctx.institution || r.to_institution == Some(ctx.institution))
        .ok_or_else(|| AppError::new(codes::REFERRAL_NOT_FOUND, "no such referral for your institution"))
}

async fn history(tx: &Tx, r: &referral::Model, from: Option<Status>, ctx: Option<&RequestCtx>) -> AppResult<()> {
    referral_transition::ActiveModel {
        tenant_id: Set(tx.tenant()),
        id: Set(Uuid::now_v7()),
        referral_id: Set(r.id),
        from_status: Set(from),
        to_status: Set(r.status),
        actor_id: Set(ctx.map(|c| c.user)),
        institution_id: Set(ctx.map(|c| c.institution)),
        at: Set(r.updated_at),
    }
    .insert(&**tx)
    .await?;
    Ok(())
}

/// The event of a change, of type `event` (see `events::TYPES`).
async fn emit(
    tx: &mut Tx,
    r: &referral::Model,
    event: &'static str,
    previous: Option<Status>,
    actor: Option<Uuid>,
) -> AppResult<()> {
    // What the receiver earned from the referred person's first visit, as at completion: the
    // base of referral fee sharing, carried by the event so that the ledger posts it (and a
    // replay recomputes it) from the event alone.
    let first_visit_revenue_fen = match (event, r.direction, r.to_institution, r.decided_at) {
        (events::Completed::TYPE, Direction::Up, Some(receiver), Some(since)) => Some(
            crate::billing::service::first_bill_revenue(
                tx,
                receiver,
                r.person_id,
                since,
                crate::platform::clock::now(),
            )
            .await?,
        ),
        _ => None,
    };
    let change = events::ReferralChange {
        first_visit_revenue_fen,
        referral: r.id,
        person: r.person_id,
        direction: r.direction,
        urgency: r.urgency,
        from_institution: r.from_institution,
        to_institution: r.to_institution,
        external: r.external_hospital.is_some(),
        parent: r.parent_id,
        status: r.status,
        previous_status: previous,
        created_at: r.created_at,
        requested_at: r.requested_at,
        sla_due_at: r.sla_due_at,
        decided_at: r.decided_at,
        arrived_at: r.arrived_at,
        completed_at: r.completed_at,
        summary: r.completion_summary.is_some(),
    };
    change.emit(tx, actor, event).await?;
    Ok(())
}

/// The clinical snapshot a referral carries: the sender's findings (diagnoses, recent vitals,
/// allergies) and the medicines prescribed at the sending institution in the last 90 days.
async fn snapshot(
    tx: &Tx,
    person: Uuid,
    institution: Uuid,
    source_encounter: Option<Uuid>,
) -> AppResult<serde_json::Value> {
    let mut map = crate::clinical::service::referral_findings(tx, person, institution, source_encounter).await?;
    let ids = crate::patients::service::person_and_merged(tx, person).await?;
    let mut medicines = Vec::new();
    for id in &ids {
        let since = crate::platform::clock::now() - chrono::Duration::days(90);
        for p in crate::pharmacy::service::medications_of(tx, *id, since).await? {
            if p.prescription.institution_id != institution {
                continue;
            }
            for crate::pharmacy::service::PrescribedLine { line: l, drug: d } in p.lines {
                medicines.push(json!({
                    "drug_code": d.code, "name": format!("{} {}", d.name, d.strength),
                    "dose": l.dose, "dose_unit": l.dose_unit, "frequency": l.frequency, "days": l.days,
                    "prescribed_at": p.prescription.created_at,
                }));
            }
        }
    }
    map.insert("medicines".into(), serde_json::Value::Array(medicines));
    Ok(serde_json::Value::Object(map))
}

/// Moves a referral. `note` is the reason (reject, cancel) or the summary (complete).
pub async fn transition(
    state: &AppState,
    ctx: &RequestCtx,
    id: Uuid,
    action: Action,
    note: Option<&str>,
) -> AppResult<referral::Model> {
    match action.party() {
        Party::Sender => ctx.require(Perm::ReferralWrite)?,
        Party::Receiver => ctx.require(Perm::ReferralManage)?,
        Party::System => return Err(AppError::new(codes::REFERRAL_WRONG_PARTY, "only the system expires referrals")),
    }
    if matches!(action, Action::Reject | Action::Cancel | Action::Complete) {
        check_text(if action == Action::Complete { "summary" } else { "reason" }, note.unwrap_or(""), 4000)?;
    }
    let mut tx = state.db.begin(ctx).await?;
    let r = party_referral(&tx, ctx, id).await?;
    let is_sender = r.from_institution == ctx.institution;
    let is_receiver = r.to_institution == Some(ctx.institution);
    let allowed = match action.party() {
        Party::Sender => is_sender,
        Party::Receiver => is_receiver,
        Party::System => false,
    };
    if !allowed {
        tx.audit(
            ctx.audit("referral.transition", "referral", Purpose::Referral)
                .resource(id)
                .subject(r.person_id)
                .outcome(Outcome::Denied),
        );
        tx.commit().await?;
        return Err(AppError::new(
            codes::REFERRAL_WRONG_PARTY,
            match action.party() {
                Party::Sender => "only the sending institution may do this",
                _ => "only the receiving institution may do this",
            },
        ));
    }
    let grant_days = settings(&tx).await?.grant_days;
    let updated = apply(&mut tx, r, action, note, Some(ctx), grant_days).await?;
    tx.audit(ctx.audit("referral.transition", "referral", Purpose::Referral).resource(id).subject(updated.person_id));
    tx.commit().await?;
    Ok(updated)
}

/// Applies a transition to a locked referral: fields, history, grant and event.
async fn apply(
    tx: &mut Tx,
    r: referral::Model,
    action: Action,
    note: Option<&str>,
    ctx: Option<&RequestCtx>,
    grant_days: i64,
) -> AppResult<referral::Model> {
    let current = r.status;
    let Some(to) = next(current, action) else {
        return Err(AppError::new(
            codes::REFERRAL_INVALID_TRANSITION,
            format!("a {} referral cannot be {}", current.as_str(), action.event().trim_start_matches("referrals.")),
        )
        .with_details(json!({ "status": current.as_str() })));
    };
    let limits = settings(tx).await?;
    let now = crate::platform::clock::now();
    let actor = ctx.map(|c| c.user);
    let previous = r.status;
    let mut am = r.clone().into_active_model();
    am.status = Set(to);
    am.updated_at = Set(now);
    let note = note.map(|n| n.trim().to_string());
    match action {
        Action::Submit => {
            am.requested_at = Set(Some(now));
            am.sla_due_at = Set(Some(now + limits.sla(r.urgency)));
        }
        Action::Accept | Action::Reject => {
            am.decided_at = Set(Some(now));
            am.decided_by = Set(actor);
            if action == Action::Reject {
                am.reject_reason = Set(note);
            }
        }
        Action::Arrive => am.arrived_at = Set(Some(now)),
        Action::Complete => {
            am.completed_at = Set(Some(now));
            am.completion_summary = Set(note);
        }
        Action::Cancel => {
            am.cancelled_at = Set(Some(now));
            am.cancel_reason = Set(note);
        }
        Action::Expire => am.expired_at = Set(Some(now)),
    }
    let updated = am.update(&**tx).await?;
    history(tx, &updated, Some(previous), ctx).await?;
    // The access grant opens on accept, closes N days after completion, and at once on cancel.
    match action {
        Action::Accept => {
            access_grant::ActiveModel {
                tenant_id: Set(tx.tenant()),
                id: Set(Uuid::now_v7()),
                referral_id: Set(updated.id),
                person_id: Set(updated.person_id),
                grantee_institution: Set(updated.to_institution.expect("accepted referrals have a receiver")),
                source_institution: Set(updated.from_institution),
                granted_at: Set(now),
                expires_at: Set(None),
            }
            .insert(&**tx)
            .await?;
        }
        Action::Complete | Action::Cancel => {
            let expires = if action == Action::Complete { now + Duration::days(grant_days) } else { now };
            access_grant::Entity::update_many()
                .col_expr(access_grant::Column::ExpiresAt, Some(expires).into())
                .filter(access_grant::Column::TenantId.eq(tx.tenant()))
                .filter(access_grant::Column::ReferralId.eq(updated.id))
                .exec(&**tx)
                .await?;
        }
        _ => {}
    }
    emit(tx, &updated, action.event(), Some(previous), actor).await?;
    Ok(updated)
}

/// Expires requested referrals past their SLA, for every tenant. Returns how many.
pub async fn expire_overdue(db: &Db) -> AppResult<usize> {
    let mut n = 0;
    for t in crate::tenancy::service::list_tenants(db).await? {
        let scope = SystemScope { tenant: t.id };
        let tx = db.begin(&scope).await?;
        let due: Vec<Uuid> = referral::Entity::find()
            .filter(referral::Column::TenantId.eq(t.id))
            .filter(referral::Column::Status.eq(Status::Requested.as_str()))
            .filter(referral::Column::SlaDueAt.lt(crate::platform::clock::now()))
            .limit(200)
            .all(&*tx)
            .await?
            .into_iter()
            .map(|r| r.id)
            .collect();
        tx.rollback().await?;
        for id in due {
            let mut tx = db.begin(&scope).await?;
            let mut q = referral::Entity::find_by_id((t.id, id));
            if tx.get_database_backend() == DbBackend::Postgres {
                q = q.lock_exclusive();
            }
            let Some(r) = q.one(&*tx).await? else { continue };
            if r.status != Status::Requested || r.sla_due_at.is_none_or(|d| d >= crate::platform::clock::now()) {
                tx.rollback().await?;
                continue;
            }
            let person = r.person_id;
            apply(&mut tx, r, Action::Expire, None, None, 0).await?;
            tx.audit(AuditEntry::new("referral.expire", "referral", Purpose::Referral).resource(id).subject(person));
            tx.commit().await?;
            n += 1;
        }
    }
    Ok(n)
}

/// Runs the expiry job every `interval`, on one replica at a time (a lease in the cache).
pub fn spawn_expiry_job(state: AppState, interval: std::time::Duration) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(interval).await;
            if state.jobs_paused.load(std::sync::atomic::Ordering::Acquire) {
                continue;
            }
            match state.cache.try_lease("job:referral-expiry", interval).await {
                Ok(true) => match expire_overdue(&state.db).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(expired = n, "expired overdue referrals"),
                    Err(e) => tracing::warn!(error = %e, "referral expiry failed"),
                },
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "referral expiry lease unavailable"),
            }
        }
    });
}

#[derive(Debug, Clone)]
pub struct ReferralView {
    pub referral: referral::Model,
    pub transitions: Vec<referral_transition::Model>,
    pub person_name: String,
    pub from_name: String,
    pub to_name: Option<String>,
    /// One referral read whole (`get`): the person's sex and birth, and the down-referrals made
    /// from it (id, status), so the case reads without opening the visit.
    pub person: Option<crate::patients::service::Contact>,
    pub children: Vec<(Uuid, Status)>,
}

async fn views(tx: &Tx, rows: Vec<referral::Model>, with_history: bool) -> AppResult<Vec<ReferralView>> {
    let names: std::collections::HashMap<Uuid, String> =
        crate::tenancy::service::list_institutions(tx).await?.into_iter().map(|i| (i.id, i.name)).collect();
    let persons = crate::patients::service::names_of(tx, &rows.iter().map(|r| r.person_id).collect::<Vec<_>>()).await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let transitions = if with_history {
            referral_transition::Entity::find()
                .filter(referral_transition::Column::TenantId.eq(tx.tenant()))
                .filter(referral_transition::Column::ReferralId.eq(r.id))
                .order_by_asc(referral_transition::Column::At)
                .all(&**tx)
                .await?
        } else {
            Vec::new()
        };
        out.push(ReferralView {
            person_name: persons.get(&r.person_id).cloned().unwrap_or_default(),
            from_name: names.get(&r.from_institution).cloned().unwrap_or_default(),
            to_name: r.to_institution.and_then(|t| names.get(&t).cloned()),
            transitions,
            referral: r,
            person: None,
            children: Vec::new(),
        });
    }
    Ok(out)
}

pub async fn get(state: &AppState, ctx: &RequestCtx, id: Uuid) -> AppResult<ReferralView> {
    ctx.require(Perm::ReferralRead)?;
    let mut tx = state.db.begin(ctx).await?;
    let r = referral::Entity::find_by_id((ctx.tenant, id))
        .one(&*tx)
        .await?
        .filter(|r| r.from_institution == ctx.institution || r.to_institution == Some(ctx.institution))
        .ok_or_else(|| AppError::new(codes::REFERRAL_NOT_FOUND, "no such referral for your institution"))?;
    let person = r.person_id;
    let mut v = views(&tx, vec![r], true).await?.remove(0);
    v.person = crate::patients::service::brief_of(&tx, person).await?;
    v.children = referral::Entity::find()
        .filter(referral::Column::TenantId.eq(ctx.tenant))
        .filter(referral::Column::ParentId.eq(id))
        .order_by_asc(referral::Column::CreatedAt)
        .all(&*tx)
        .await?
        .into_iter()
        .map(|c| (c.id, c.status))
        .collect();
    tx.audit(ctx.audit("referral.read", "referral", Purpose::Referral).resource(id).subject(person));
    tx.commit().await?;
    Ok(v)
}

/// Incoming referrals, newest first; `sent` lists outgoing ones instead.
pub async fn list(
    state: &AppState,
    ctx: &RequestCtx,
    sent: bool,
    status: Option<Status>,
    limit: u64,
) -> AppResult<Vec<ReferralView>> {
    ctx.require(Perm::ReferralRead)?;
    let mut tx = state.db.begin(ctx).await?;
    let mut q = referral::Entity::find().filter(referral::Column::TenantId.eq(ctx.tenant));
    q = if sent {
        q.filter(referral::Column::FromInstitution.eq(ctx.institution))
    } else {
        q.filter(referral::Column::ToInstitution.eq(ctx.institution))
            .filter(referral::Column::Status.ne(Status::Draft.as_str()))
    };
    if let Some(s) = status {
        q = q.filter(referral::Column::Status.eq(s.as_str()));
    }
    let rows = q.order_by_desc(referral::Column::CreatedAt).limit(limit).all(&*tx).await?;
    let persons: Vec<Uuid> = rows.iter().map(|r| r.person_id).collect();
    let out = views(&tx, rows, false).await?;
    ctx.audit_reads(&mut tx, "referral.list", Purpose::Referral, persons);
    tx.commit().await?;
    Ok(out)
}

/// The person's records at the sending institution, for the receiving institution while its
/// grant is open. Every read is audited with the purpose `referral`, refusals included.
pub async fn records(
    state: &AppState,
    ctx: &RequestCtx,
    id: Uuid,
) -> AppResult<Vec<crate::visit::service::EncounterView>> {
    ctx.require(Perm::ReferralRead)?;
    let mut tx = state.db.begin(ctx).await?;
    let r = referral::Entity::find_by_id((ctx.tenant, id))
        .one(&*tx)
        .await?
        .filter(|r| r.to_institution == Some(ctx.institution))
        .ok_or_else(|| AppError::new(codes::REFERRAL_NOT_FOUND, "no such referral received by your institution"))?;
    let grant = access_grant::Entity::find()
        .filter(access_grant::Column::TenantId.eq(ctx.tenant))
        .filter(access_grant::Column::ReferralId.eq(id))
        .filter(access_grant::Column::GranteeInstitution.eq(ctx.institution))
        .one(&*tx)
        .await?;
    let refusal = match &grant {
        None => {
            Some(AppError::new(codes::GRANT_MISSING, "the referral has not been accepted; there is no access grant"))
        }
        Some(g) if g.expires_at.is_some_and(|e| e <= crate::platform::clock::now()) => {
            Some(AppError::new(codes::GRANT_EXPIRED, "the access grant of this referral has expired"))
        }
        _ => None,
    };
    if let Some(err) = refusal {
        tx.audit(
            ctx.audit("referral.records", "person", Purpose::Referral)
                .resource(r.person_id)
                .subject(r.person_id)
                .outcome(Outcome::Denied),
        );
        tx.commit().await?;
        return Err(err);
    }
    let records = crate::visit::service::records_at(&tx, r.person_id, r.from_institution).await?;
    tx.audit(ctx.audit("referral.records", "person", Purpose::Referral).resource(r.person_id).subject(r.person_id));
    tx.commit().await?;
    Ok(records)
}

pub async fn notifications(
    state: &AppState,
    ctx: &RequestCtx,
    limit: u64,
) -> AppResult<Vec<referral_notification::Model>> {
    ctx.require(Perm::ReferralRead)?;
    let tx = state.db.begin(ctx).await?;
    let rows = referral_notification::Entity::find()
        .filter(referral_notification::Column::TenantId.eq(ctx.tenant))
        .filter(referral_notification::Column::InstitutionId.eq(ctx.institution))
        .order_by_desc(referral_notification::Column::CreatedAt)
        .limit(limit)
        .all(&*tx)
        .await?;
    tx.rollback().await?;
    Ok(rows)
}

/// Seconds left before an undecided referral expires.
pub fn sla_left(r: &referral::Model, now: DateTime<Utc>) -> Option<i64> {
    (r.status == Status::Requested).then(|| r.sla_due_at.map(|d| (d - now).num_seconds())).flatten()
}

/// Every referral of the tenant, and whether it was referred back down: the source statistics
/// rebuild their referral rows from.
/// A referral as statistics rebuild it: with whether a down-referral answered it.
pub struct StatReferral {
    pub referral: referral::Model,
    pub referred_down: bool,
}

pub async fn stat_referrals(tx: &Tx) -> AppResult<Vec<StatReferral>> {
    let all = referral::Entity::find().filter(referral::Column::TenantId.eq(tx.tenant())).all(&**tx).await?;
    let down: std::collections::HashSet<Uuid> =
        all.iter().filter(|r| r.direction == Direction::Down).filter_map(|r| r.parent_id).collect();
    Ok(all.into_iter().map(|r| StatReferral { referred_down: down.contains(&r.id), referral: r }).collect())
}
