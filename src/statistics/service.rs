//! Statistics use cases: the `statistics` consumer keeping the rollups, the rebuild from the
//! source contexts, and the KPIs of a period for the community, an institution's subtree and
//! its children (drill-down), and as a time series. Nothing here holds or returns a person.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter, Set};
use uuid::Uuid;

use super::domain::{EnrollmentSummary, Inputs, Registry, Sources, registry_steps, window_start};
use super::entity::{stat_daily, stat_enrollment, stat_followup, stat_referral, stat_registry};
use crate::billing::events::ChargePosted;
use crate::clinical::events::EncounterClosed;
use crate::followups::domain::Disease;
use crate::followups::events::{Closed, Enrolled, VisitRecorded};
use crate::identity::ctx::{Perm, RequestCtx};
use crate::platform::clock::china_day;
use crate::platform::codes;
use crate::platform::consumers::Handler;
use crate::platform::db::DailyCount;
use crate::platform::events::{Envelope, Event};
use crate::platform::state::AppState;
use crate::platform::{AppError, AppResult, Db, SystemScope, Tx};
use crate::referrals::domain::{Direction, Status};
use crate::referrals::events::{self as referral_events, ReferralChange};
use crate::tenancy::InstitutionKind;
use crate::tenancy::service::InstitutionInfo;

pub const CONSUMER: &str = "statistics";
/// The events the rollups follow.
pub fn events() -> Vec<&'static str> {
    let mut types = vec![EncounterClosed::TYPE, ChargePosted::TYPE];
    types.extend(referral_events::TYPES);
    types.extend([Enrolled::TYPE, Closed::TYPE, VisitRecorded::TYPE]);
    types
}
/// Advisory lock class of the rollups' read-modify-write rows (see `Tx::lock_keys`).
const LOCK_CLASS: i32 = 8;

fn day_of(t: DateTime<Utc>) -> NaiveDate {
    crate::platform::clock::china_date(t)
}

async fn add_daily(tx: &Tx, day: NaiveDate, institution: Uuid, metric: &str, dim: &str, value: i64) -> AppResult<()> {
    use stat_daily::Column as C;
    stat_daily::Entity::insert(stat_daily::ActiveModel {
        tenant_id: Set(tx.tenant()),
        day: Set(day),
        institution_id: Set(institution),
        metric: Set(metric.into()),
        dim: Set(dim.into()),
        value: Set(value),
    })
    .on_conflict(
        OnConflict::columns([C::TenantId, C::Day, C::InstitutionId, C::Metric, C::Dim])
            .value(C::Value, Expr::cust("stat_daily.value + excluded.value"))
            .to_owned(),
    )
    .exec(&**tx)
    .await?;
    Ok(())
}

/// What statistics keep of a referral, whether read from its event or from the referral.
struct ReferralFacts {
    id: Uuid,
    direction: Direction,
    from: Uuid,
    to: Option<Uuid>,
    parent: Option<Uuid>,
    status: Status,
    created_at: DateTime<Utc>,
    requested_at: Option<DateTime<Utc>>,
    decided_at: Option<DateTime<Utc>>,
    completed_at: Option<DateTime<Utc>>,
    summary: bool,
}

impl From<ReferralChange> for ReferralFacts {
    fn from(c: ReferralChange) -> Self {
        Self {
            id: c.referral,
            direction: c.direction,
            from: c.from_institution,
            to: c.to_institution,
            parent: c.parent,
            status: c.status,
            created_at: c.created_at,
            requested_at: c.requested_at,
            decided_at: c.decided_at,
            completed_at: c.completed_at,
            summary: c.summary,
        }
    }
}

/// What a referral row says, from the referral's state: its own fields, order-independent.
fn referral_row(tenant: Uuid, f: ReferralFacts) -> stat_referral::Model {
    stat_referral::Model {
        tenant_id: tenant,
        referral_id: f.id,
        direction: f.direction.as_str().into(),
        from_institution: f.from,
        to_institution: f.to,
        parent_id: f.parent,
        // A referral out of the county is recorded complete, never requested.
        requested_at: f.requested_at.or(if f.direction == Direction::Out { Some(f.created_at) } else { None }),
        decided_at: f.decided_at,
        accepted: f.decided_at.map(|_| f.status != Status::Rejected),
        completed_at: f.completed_at,
        summary: f.summary,
        referred_down: false,
    }
}

/// Later knowledge wins; nothing known is forgotten (events may arrive in any order, twice).
fn merge(old: stat_referral::Model, new: stat_referral::Model) -> stat_referral::Model {
    stat_referral::Model {
        requested_at: old.requested_at.or(new.requested_at),
        decided_at: old.decided_at.or(new.decided_at),
        accepted: old.accepted.or(new.accepted),
        completed_at: old.completed_at.or(new.completed_at),
        summary: old.summary || new.summary,
        referred_down: old.referred_down || new.referred_down,
        ..old
    }
}

async fn upsert_referral(tx: &Tx, mut row: stat_referral::Model) -> AppResult<()> {
    // A referral's events merge into one row, and a down referral marks its parent: both are
    // read-modify-write, so concurrent deliveries for the same referrals take turns.
    let keys: Vec<Uuid> = std::iter::once(row.referral_id).chain(row.parent_id).collect();
    tx.lock_keys(LOCK_CLASS, &keys).await?;
    let existing = stat_referral::Entity::find_by_id((row.tenant_id, row.referral_id)).one(&**tx).await?;
    if !row.referred_down {
        row.referred_down = stat_referral::Entity::find()
            .filter(stat_referral::Column::TenantId.eq(row.tenant_id))
            .filter(stat_referral::Column::ParentId.eq(row.referral_id))
            .filter(stat_referral::Column::Direction.eq("down"))
            .one(&**tx)
            .await?
            .is_some();
    }
    let parent = (row.direction == "down").then_some(row.parent_id).flatten();
    match existing {
        Some(old) => {
            let merged = merge(old, row);
            merged.into_active_model().reset_all().update(&**tx).await?;
        }
        None => {
            row.into_active_model().insert(&**tx).await?;
        }
    }
    if let Some(p) = parent {
        stat_referral::Entity::update_many()
            .col_expr(stat_referral::Column::ReferredDown, Expr::value(true))
            .filter(stat_referral::Column::TenantId.eq(tx.tenant()))
            .filter(stat_referral::Column::ReferralId.eq(p))
            .exec(&**tx)
            .await?;
    }
    Ok(())
}

/// The latest follow-up, the fourth latest, and whether the latest was controlled, from an
/// enrollment's follow-ups newest first (of two on one day, the controlled one counts as the
/// latest: the same rule as the look-back in `registry_sums_back`).
fn summary_of(newest_first: &[(NaiveDate, bool)]) -> FollowupSummary {
    FollowupSummary {
        last: newest_first.first().map(|f| f.0),
        fourth: newest_first.get(3).map(|f| f.0),
        last_controlled: newest_first.first().is_some_and(|f| f.1),
    }
}

/// Where an enrollment's follow-ups stand: what the registries count.
#[derive(Debug, PartialEq, Eq)]
struct FollowupSummary {
    last: Option<NaiveDate>,
    fourth: Option<NaiveDate>,
    last_controlled: bool,
}

/// Brings an enrollment's summary up to date with its follow-ups and returns the row as it now
/// is. Its registry steps are the caller's to move (once, from what was written before).
async fn summarise(tx: &Tx, e: stat_enrollment::Model) -> AppResult<stat_enrollment::Model> {
    use sea_orm::{QueryOrder, QuerySelect};
    let recent: Vec<(NaiveDate, bool)> = stat_followup::Entity::find()
        .filter(stat_followup::Column::TenantId.eq(tx.tenant()))
        .filter(stat_followup::Column::EnrollmentId.eq(e.enrollment_id))
        .order_by_desc(stat_followup::Column::VisitOn)
        .order_by_desc(stat_followup::Column::Controlled)
        .limit(4)
        .all(&**tx)
        .await?
        .into_iter()
        .map(|f| (f.visit_on, f.controlled))
        .collect();
    let FollowupSummary { last, fourth, last_controlled: controlled } = summary_of(&recent);
    if (e.last_visit_on, e.fourth_visit_on, e.last_controlled) == (last, fourth, controlled) {
        return Ok(e);
    }
    let mut am = e.into_active_model();
    am.last_visit_on = Set(last);
    am.fourth_visit_on = Set(fourth);
    am.last_controlled = Set(controlled);
    Ok(am.update(&**tx).await?)
}

fn summary(e: &stat_enrollment::Model) -> EnrollmentSummary {
    EnrollmentSummary {
        enrolled_on: e.enrolled_on,
        closed_on: e.closed_on,
        last_visit_on: e.last_visit_on,
        fourth_visit_on: e.fourth_visit_on,
        last_controlled: e.last_controlled,
    }
}

type StepKey = (NaiveDate, Uuid, String);

/// Adds an enrollment's registry steps to `out` (`sign` -1 takes them away).
fn add_steps(out: &mut std::collections::BTreeMap<StepKey, [i64; 4]>, e: &stat_enrollment::Model, sign: i64) {
    for (day, step) in registry_steps(&summary(e)) {
        let sum = out.entry((day, e.institution_id, e.disease.clone())).or_default();
        for k in 0..4 {
            sum[k] += sign * step[k];
        }
    }
}

/// Replaces an enrollment's registry steps (`old`, as it was) by those of `new`. The caller
/// holds the enrollment's lock; rows are written in key order, so two enrollments' changes to
/// the same days cannot deadlock.
async fn move_registry_steps(
    tx: &Tx,
    old: Option<&stat_enrollment::Model>,
    new: Option<&stat_enrollment::Model>,
) -> AppResult<()> {
    use stat_registry::Column as C;
    let mut delta = std::collections::BTreeMap::new();
    if let Some(old) = old {
        add_steps(&mut delta, old, -1);
    }
    if let Some(new) = new {
        add_steps(&mut delta, new, 1);
    }
    for ((day, institution, disease), [registered, managed, standard, controlled]) in delta {
        if [registered, managed, standard, controlled] == [0; 4] {
            continue;
        }
        let add = |c: C| Expr::cust(format!("stat_registry.{0} + excluded.{0}", sea_orm::IdenStatic::as_str(&c)));
        stat_registry::Entity::insert(stat_registry::ActiveModel {
            tenant_id: Set(tx.tenant()),
            day: Set(day),
            institution_id: Set(institution),
            disease: Set(disease),
            registered: Set(registered),
            managed: Set(managed),
            standard: Set(standard),
            controlled: Set(controlled),
        })
        .on_conflict(
            OnConflict::columns([C::TenantId, C::Day, C::InstitutionId, C::Disease])
                .value(C::Registered, add(C::Registered))
                .value(C::Managed, add(C::Managed))
                .value(C::Standard, add(C::Standard))
                .value(C::Controlled, add(C::Controlled))
                .to_owned(),
        )
        .exec(&**tx)
        .await?;
    }
    Ok(())
}

async fn upsert_enrollment(tx: &Tx, row: stat_enrollment::Model) -> AppResult<()> {
    let id = row.enrollment_id;
    tx.lock_keys(LOCK_CLASS, &[id]).await?;
    match stat_enrollment::Entity::find_by_id((row.tenant_id, row.enrollment_id)).one(&**tx).await? {
        Some(old) => {
            if old.closed_on.is_none() && row.closed_on.is_some() {
                let before = old.clone();
                let mut am = old.into_active_model();
                am.closed_on = Set(row.closed_on);
                let after = am.update(&**tx).await?;
                move_registry_steps(tx, Some(&before), Some(&after)).await?;
            }
        }
        None => {
            let inserted = row.into_active_model().insert(&**tx).await?;
            // Its follow-ups may have arrived first. Its steps are written once, from the final
            // row: two passes would write days out of order and could deadlock with another
            // enrollment's pass over the same days.
            let now = summarise(tx, inserted).await?;
            move_registry_steps(tx, None, Some(&now)).await?;
        }
    }
    Ok(())
}

async fn insert_followup(tx: &Tx, row: stat_followup::Model) -> AppResult<()> {
    let enrollment = row.enrollment_id;
    // The summary is computed from the enrollment's follow-ups: one writer per enrollment.
    tx.lock_keys(LOCK_CLASS, &[enrollment]).await?;
    if stat_followup::Entity::find_by_id((row.tenant_id, row.visit_id)).one(&**tx).await?.is_none() {
        row.into_active_model().insert(&**tx).await?;
        if let Some(before) = stat_enrollment::Entity::find_by_id((tx.tenant(), enrollment)).one(&**tx).await? {
            let now = summarise(tx, before.clone()).await?;
            if now != before {
                move_registry_steps(tx, Some(&before), Some(&now)).await?;
            }
        }
    }
    Ok(())
}

/// The `statistics` consumer: visits, charges, referrals and registries into the rollups.
pub struct Rollup;

#[async_trait::async_trait]
impl Handler for Rollup {
    fn name(&self) -> &'static str {
        CONSUMER
    }

    fn events(&self) -> Vec<&'static str> {
        events()
    }

    async fn handle(&self, tx: &mut Tx, e: &Envelope) -> AppResult<()> {
        let tenant = tx.tenant();
        match e.event_type.as_str() {
            EncounterClosed::TYPE => {
                let ev: EncounterClosed = e.decode()?;
                add_daily(tx, day_of(ev.opened_at), ev.institution, "visits", ev.kind.as_str(), 1).await
            }
            ChargePosted::TYPE => {
                let ev: ChargePosted = e.decode()?;
                // Sorted, so two charges of one day and institution upsert their rows in the same
                // order and cannot deadlock.
                let mut by_kind: std::collections::BTreeMap<String, i64> = Default::default();
                for c in &ev.charges {
                    *by_kind.entry(c.kind.clone()).or_default() += c.amount_fen;
                }
                for (kind, fen) in by_kind {
                    add_daily(tx, day_of(ev.posted_at), ev.institution, "charges_fen", &kind, fen).await?;
                }
                Ok(())
            }
            t if referral_events::TYPES.contains(&t) => {
                upsert_referral(tx, referral_row(tenant, referral_events::change_of(e)?.into())).await
            }
            Enrolled::TYPE => {
                let ev: Enrolled = e.decode()?;
                upsert_enrollment(
                    tx,
                    enrollment_row(tenant, ev.enrollment, ev.institution, ev.disease, ev.enrolled_on, None),
                )
                .await
            }
            Closed::TYPE => {
                let ev: Closed = e.decode()?;
                let row =
                    enrollment_row(tenant, ev.enrollment, ev.institution, ev.disease, ev.enrolled_on, ev.closed_on);
                upsert_enrollment(tx, row).await
            }
            VisitRecorded::TYPE => {
                let ev: VisitRecorded = e.decode()?;
                insert_followup(
                    tx,
                    stat_followup::Model {
                        tenant_id: tenant,
                        visit_id: ev.visit,
                        enrollment_id: ev.enrollment,
                        institution_id: ev.institution,
                        disease: ev.disease.as_str().into(),
                        visit_on: ev.visit_on,
                        controlled: ev.kpi_controlled,
                    },
                )
                .await
            }
            _ => Ok(()),
        }
    }
}

/// An enrollment as its events tell it (the follow-ups fill in the rest).
fn enrollment_row(
    tenant: Uuid,
    id: Uuid,
    institution: Uuid,
    disease: Disease,
    enrolled_on: NaiveDate,
    closed_on: Option<NaiveDate>,
) -> stat_enrollment::Model {
    stat_enrollment::Model {
        tenant_id: tenant,
        enrollment_id: id,
        institution_id: institution,
        disease: disease.as_str().into(),
        enrolled_on,
        closed_on,
        last_visit_on: None,
        fourth_visit_on: None,
        last_controlled: false,
    }
}

/// Every rollup row of a tenant, in a stable order: what a rebuild is compared with.
#[derive(Debug, PartialEq)]
pub struct Snapshot {
    pub daily: Vec<(NaiveDate, Uuid, String, String, i64)>,
    pub referrals: Vec<stat_referral::Model>,
    pub enrollments: Vec<stat_enrollment::Model>,
    pub followups: Vec<stat_followup::Model>,
    /// Registry steps that are not all zero.
    pub registry: Vec<(NaiveDate, Uuid, String, [i64; 4])>,
}

pub async fn snapshot(db: &Db, tenant: Uuid) -> AppResult<Snapshot> {
    let tx = db.begin(&SystemScope { tenant }).await?;
    let mut daily: Vec<_> = stat_daily::Entity::find()
        .filter(stat_daily::Column::TenantId.eq(tenant))
        .all(&*tx)
        .await?
        .into_iter()
        .filter(|r| r.value != 0)
        .map(|r| (r.day, r.institution_id, r.metric, r.dim, r.value))
        .collect();
    daily.sort();
    let mut referrals =
        stat_referral::Entity::find().filter(stat_referral::Column::TenantId.eq(tenant)).all(&*tx).await?;
    referrals.sort_by_key(|r| r.referral_id);
    let mut enrollments =
        stat_enrollment::Entity::find().filter(stat_enrollment::Column::TenantId.eq(tenant)).all(&*tx).await?;
    enrollments.sort_by_key(|r| r.enrollment_id);
    let mut followups =
        stat_followup::Entity::find().filter(stat_followup::Column::TenantId.eq(tenant)).all(&*tx).await?;
    followups.sort_by_key(|r| r.visit_id);
    let mut registry: Vec<_> = stat_registry::Entity::find()
        .filter(stat_registry::Column::TenantId.eq(tenant))
        .all(&*tx)
        .await?
        .into_iter()
        .map(|r| (r.day, r.institution_id, r.disease, [r.registered, r.managed, r.standard, r.controlled]))
        .filter(|r| r.3 != [0; 4])
        .collect();
    registry.sort();
    tx.rollback().await?;
    Ok(Snapshot { daily, referrals, enrollments, followups, registry })
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RebuildReport {
    pub daily_rows: usize,
    pub referrals: usize,
    pub enrollments: usize,
    pub followups: usize,
}

/// Recomputes every rollup of a tenant from the source contexts, in one transaction. Events
/// already in the outbox count as applied, so the consumer does not add them a second time.
pub async fn rebuild(db: &Db, tenant: Uuid) -> AppResult<RebuildReport> {
    let tx = db.begin(&SystemScope { tenant }).await?;
    stat_daily::Entity::delete_many().filter(stat_daily::Column::TenantId.eq(tenant)).exec(&*tx).await?;
    stat_referral::Entity::delete_many().filter(stat_referral::Column::TenantId.eq(tenant)).exec(&*tx).await?;
    stat_enrollment::Entity::delete_many().filter(stat_enrollment::Column::TenantId.eq(tenant)).exec(&*tx).await?;
    stat_followup::Entity::delete_many().filter(stat_followup::Column::TenantId.eq(tenant)).exec(&*tx).await?;
    stat_registry::Entity::delete_many().filter(stat_registry::Column::TenantId.eq(tenant)).exec(&*tx).await?;
    let mut report = RebuildReport { daily_rows: rebuild_daily(&tx).await?, ..Default::default() };
    report.referrals = rebuild_referrals(&tx).await?;
    (report.enrollments, report.followups) = rebuild_registries(&tx).await?;
    crate::platform::consumers::mark_processed(&tx, CONSUMER, &events()).await?;
    tx.commit().await?;
    Ok(report)
}

/// Visits and charges per day, institution and kind, from clinical and billing.
async fn rebuild_daily(tx: &Tx) -> AppResult<usize> {
    let mut daily: Vec<stat_daily::ActiveModel> = Vec::new();
    let sources: [(&str, Vec<DailyCount>); 2] = [
        ("visits", crate::clinical::service::stat_visits(tx).await?),
        ("charges_fen", crate::billing::service::stat_charges(tx).await?),
    ];
    for (metric, rows) in sources {
        for r in rows {
            daily.push(stat_daily::ActiveModel {
                tenant_id: Set(tx.tenant()),
                day: Set(r.day),
                institution_id: Set(r.institution_id),
                metric: Set(metric.into()),
                dim: Set(r.dim),
                value: Set(r.value),
            });
        }
    }
    for chunk in daily.chunks(1000) {
        stat_daily::Entity::insert_many(chunk.to_vec()).exec(&**tx).await?;
    }
    Ok(daily.len())
}

/// Every referral that was ever sent, from referrals.
async fn rebuild_referrals(tx: &Tx) -> AppResult<usize> {
    let tenant = tx.tenant();
    let referrals: Vec<stat_referral::ActiveModel> = crate::referrals::service::stat_referrals(tx)
        .await?
        .into_iter()
        .map(|s| {
            let r = s.referral;
            let facts = ReferralFacts {
                id: r.id,
                direction: r.direction,
                from: r.from_institution,
                to: r.to_institution,
                parent: r.parent_id,
                status: r.status,
                created_at: r.created_at,
                requested_at: r.requested_at,
                decided_at: r.decided_at,
                completed_at: r.completed_at,
                summary: r.completion_summary.is_some(),
            };
            stat_referral::Model { referred_down: s.referred_down, ..referral_row(tenant, facts) }
        })
        // A draft nobody sent is not a referral yet (it has published no event).
        .filter(|r| r.requested_at.is_some() || r.completed_at.is_some() || r.decided_at.is_some())
        .map(IntoActiveModel::into_active_model)
        .collect();
    for chunk in referrals.chunks(500) {
        stat_referral::Entity::insert_many(chunk.to_vec()).exec(&**tx).await?;
    }
    Ok(referrals.len())
}

/// Enrollments, their per-day registry steps and the follow-ups, from followups. Returns how
/// many enrollments and follow-ups.
async fn rebuild_registries(tx: &Tx) -> AppResult<(usize, usize)> {
    let tenant = tx.tenant();
    let sources = crate::followups::service::stat_sources(tx).await?;
    let counts = (sources.enrollments.len(), sources.followups.len());
    let mut by_enrollment: HashMap<Uuid, Vec<(NaiveDate, bool)>> = HashMap::new();
    for f in &sources.followups {
        by_enrollment.entry(f.visit.enrollment_id).or_default().push((f.visit.visit_on, f.kpi_controlled));
    }
    let models: Vec<stat_enrollment::Model> = sources
        .enrollments
        .into_iter()
        .map(|e| {
            let mut seen = by_enrollment.remove(&e.id).unwrap_or_default();
            seen.sort_by_key(|v| std::cmp::Reverse(*v));
            let summary = summary_of(&seen);
            stat_enrollment::Model {
                last_visit_on: summary.last,
                fourth_visit_on: summary.fourth,
                last_controlled: summary.last_controlled,
                ..enrollment_row(tenant, e.id, e.institution_id, e.disease, e.enrolled_on, e.closed_on)
            }
        })
        .collect();
    let mut steps = std::collections::BTreeMap::new();
    for e in &models {
        add_steps(&mut steps, e, 1);
    }
    let rows: Vec<stat_enrollment::ActiveModel> = models.into_iter().map(IntoActiveModel::into_active_model).collect();
    for chunk in rows.chunks(1000) {
        stat_enrollment::Entity::insert_many(chunk.to_vec()).exec(&**tx).await?;
    }
    let rows: Vec<stat_registry::ActiveModel> = steps
        .into_iter()
        .filter(|(_, sum)| *sum != [0; 4])
        .map(|((day, institution_id, disease), [registered, managed, standard, controlled])| {
            stat_registry::Model {
                tenant_id: tenant,
                day,
                institution_id,
                disease,
                registered,
                managed,
                standard,
                controlled,
            }
            .into_active_model()
        })
        .collect();
    for chunk in rows.chunks(1000) {
        stat_registry::Entity::insert_many(chunk.to_vec()).exec(&**tx).await?;
    }
    let rows: Vec<stat_followup::ActiveModel> = sources
        .followups
        .into_iter()
        .map(|f| {
            stat_followup::Model {
                tenant_id: tenant,
                visit_id: f.visit.id,
                enrollment_id: f.visit.enrollment_id,
                institution_id: f.visit.institution_id,
                disease: f.disease.as_str().into(),
                visit_on: f.visit.visit_on,
                controlled: f.kpi_controlled,
            }
            .into_active_model()
        })
        .collect();
    for chunk in rows.chunks(1000) {
        stat_followup::Entity::insert_many(chunk.to_vec()).exec(&**tx).await?;
    }
    Ok(counts)
}

#[derive(Debug, sea_orm::FromQueryResult)]
struct MetricSum {
    institution_id: Uuid,
    metric: String,
    dim: String,
    value: i64,
}

/// The daily rollups summed over a period, per institution, metric and dimension.
async fn daily_between(tx: &Tx, from: NaiveDate, to: NaiveDate) -> AppResult<Vec<MetricSum>> {
    use sea_orm::QuerySelect;
    use sea_orm::sea_query::{Alias, ExprTrait, Func};
    use stat_daily::Column as C;
    Ok(stat_daily::Entity::find()
        .select_only()
        .column(C::InstitutionId)
        .column(C::Metric)
        .column(C::Dim)
        .column_as(Expr::from(Func::sum(Expr::col(C::Value))).cast_as(Alias::new("BIGINT")), "value")
        .filter(C::TenantId.eq(tx.tenant()))
        .filter(C::Day.gte(from))
        .filter(C::Day.lte(to))
        .group_by(C::InstitutionId)
        .group_by(C::Metric)
        .group_by(C::Dim)
        .into_model::<MetricSum>()
        .all(&**tx)
        .await?)
}

#[derive(Debug, sea_orm::FromQueryResult)]
struct RegistrySum {
    institution_id: Uuid,
    disease: String,
    registered: i64,
    managed: i64,
    standard: i64,
    controlled: i64,
}

/// Registry figures at `to` of the enrollments last seen on or before `to` (or never): the sums
/// of their registry steps up to `to` (see `domain::registry_steps`), a few rows per
/// institution and day instead of a pass over every enrollment.
fn registry_sums(tx: &Tx, to: NaiveDate) -> (&'static str, Vec<sea_orm::Value>) {
    let sql = "SELECT institution_id, disease,
                      CAST(SUM(registered) AS BIGINT) AS registered,
                      CAST(SUM(managed) AS BIGINT) AS managed,
                      CAST(SUM(standard) AS BIGINT) AS standard,
                      CAST(SUM(controlled) AS BIGINT) AS controlled
                 FROM stat_registry
                WHERE tenant_id = ? AND day <= ?
                GROUP BY institution_id, disease";
    (sql, vec![tx.tenant().into(), to.into()])
}

/// Registry figures at `to` of the enrollments last seen after `to`, from their follow-ups in
/// the window (`window`, `to`]: how many, and whether the latest was controlled, in one grouped
/// pass (the latest controlled day equals the latest day: of two follow-ups on one day, the
/// controlled one counts as the latest, as in `summary_of`).
fn registry_sums_back(tx: &Tx, window: NaiveDate, to: NaiveDate) -> (&'static str, Vec<sea_orm::Value>) {
    let sql = "SELECT e.institution_id, e.disease,
                      CAST(COUNT(*) AS BIGINT) AS registered,
                      CAST(COUNT(w.n) AS BIGINT) AS managed,
                      CAST(SUM(CASE WHEN w.n >= 4 THEN 1 ELSE 0 END) AS BIGINT) AS standard,
                      CAST(SUM(CASE WHEN w.last_controlled = w.last THEN 1 ELSE 0 END) AS BIGINT) AS controlled
                 FROM stat_enrollments e
                 LEFT JOIN (SELECT f.enrollment_id, COUNT(*) AS n, MAX(f.visit_on) AS last,
                                   MAX(CASE WHEN f.controlled THEN f.visit_on END) AS last_controlled
                              FROM stat_followups f
                              JOIN stat_enrollments l
                                ON l.tenant_id = f.tenant_id AND l.enrollment_id = f.enrollment_id AND l.last_visit_on > ?
                             WHERE f.tenant_id = ? AND f.visit_on > ? AND f.visit_on <= ?
                             GROUP BY f.enrollment_id) w ON w.enrollment_id = e.enrollment_id
                WHERE e.tenant_id = ? AND e.enrolled_on <= ? AND (e.closed_on IS NULL OR e.closed_on > ?)
                  AND e.last_visit_on > ?
                GROUP BY e.institution_id, e.disease";
    let values: Vec<sea_orm::Value> = vec![
        to.into(),
        tx.tenant().into(),
        window.into(),
        to.into(),
        tx.tenant().into(),
        to.into(),
        to.into(),
        to.into(),
    ];
    (sql, values)
}

/// Registry figures at `to`: both halves in one statement, so that one snapshot splits the
/// enrollments on their latest follow-up (a follow-up committed between two reads would move
/// an enrollment from one half to the other and count it twice or not at all).
async fn registry_figures(tx: &Tx, to: NaiveDate) -> AppResult<Vec<RegistrySum>> {
    let window = window_start(to);
    let (a, mut values) = registry_sums(tx, to);
    let (b, more) = registry_sums_back(tx, window, to);
    values.extend(more);
    crate::platform::db::query_all(tx, &format!("{a}\n UNION ALL\n{b}"), values).await
}

#[derive(Debug, sea_orm::FromQueryResult)]
struct SentSum {
    institution_id: Uuid,
    direction: String,
    n: i64,
}

/// Referrals requested in [start, end), per sender and direction.
async fn referrals_sent(tx: &Tx, start: DateTime<Utc>, end: DateTime<Utc>) -> AppResult<Vec<SentSum>> {
    let sql = "SELECT from_institution AS institution_id, direction, CAST(COUNT(*) AS BIGINT) AS n
                 FROM stat_referrals
                WHERE tenant_id = ? AND requested_at >= ? AND requested_at < ?
                GROUP BY from_institution, direction";
    crate::platform::db::query_all(tx, sql, vec![tx.tenant().into(), start.into(), end.into()]).await
}

#[derive(Debug, sea_orm::FromQueryResult)]
struct DecidedSum {
    institution_id: Uuid,
    minutes: i64,
    n: i64,
    accepted: i64,
    closed: i64,
}

/// Referrals decided in [start, end), per receiver and whole minutes from request to decision
/// (truncated, as `chrono::Duration::num_minutes`): how many, how many of them were accepted
/// up-referrals, and how many of those closed their loop (completed with a summary, or
/// referred back down).
async fn referrals_decided(tx: &Tx, start: DateTime<Utc>, end: DateTime<Utc>) -> AppResult<Vec<DecidedSum>> {
    let minutes = match sea_orm::ConnectionTrait::get_database_backend(&**tx) {
        // date_part is a double (EXTRACT's numeric is several times slower); exact below 2^53
        // microseconds, and a whole minute divides exactly.
        sea_orm::DbBackend::Postgres => "CAST(TRUNC(date_part('epoch', decided_at - requested_at) / 60) AS BIGINT)",
        // julianday is a double of whole milliseconds (error ~40 us): round to the millisecond,
        // then integer division truncates toward zero as num_minutes does. Sub-millisecond
        // gaps are lost (SQLite's date functions keep milliseconds only).
        _ => "CAST(ROUND((julianday(decided_at) - julianday(requested_at)) * 86400000.0) AS INTEGER) / 60000",
    };
    let sql = format!(
        "SELECT to_institution AS institution_id, {minutes} AS minutes,
                CAST(COUNT(*) AS BIGINT) AS n,
                CAST(SUM(CASE WHEN direction = 'up' AND accepted THEN 1 ELSE 0 END) AS BIGINT) AS accepted,
                CAST(SUM(CASE WHEN direction = 'up' AND accepted
                               AND ((completed_at IS NOT NULL AND summary) OR referred_down)
                              THEN 1 ELSE 0 END) AS BIGINT) AS closed
           FROM stat_referrals
          WHERE tenant_id = ? AND decided_at >= ? AND decided_at < ?
            AND to_institution IS NOT NULL AND requested_at IS NOT NULL
          GROUP BY 1, 2"
    );
    crate::platform::db::query_all(tx, &sql, vec![tx.tenant().into(), start.into(), end.into()]).await
}

/// The independent reads a KPI computation is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Daily,
    /// Referrals sent, per sender and direction.
    Sent,
    /// Referrals decided, per receiver: decision minutes and loops.
    Decided,
    /// Registries as at the period's end.
    Registry,
}

fn parts(sources: Sources) -> Vec<Part> {
    let mut out = Vec::new();
    if sources.daily {
        out.push(Part::Daily);
    }
    if sources.referrals {
        out.extend([Part::Sent, Part::Decided]);
    }
    if sources.registry {
        out.push(Part::Registry);
    }
    out
}

async fn read_part(
    tx: &Tx,
    part: Part,
    from: NaiveDate,
    to: NaiveDate,
    out: &mut HashMap<Uuid, Inputs>,
) -> AppResult<()> {
    if sea_orm::ConnectionTrait::get_database_backend(&**tx) == sea_orm::DbBackend::Postgres {
        // For this transaction only: the look-back's row estimates are loose enough to trigger
        // JIT compilation (800 ms, more than the query), its aggregates spill at the default
        // 4 MB, and a dashboard already runs its reads side by side (no parallel workers).
        // Plans are made for the period asked: after five runs of a prepared statement
        // PostgreSQL may switch to a generic plan, which cannot tell a day from a year (it read
        // a year's 47,500 decisions through an index sized for 238 rows: 57 ms instead of 19).
        sea_orm::ConnectionTrait::execute_unprepared(
            &**tx,
            "SET LOCAL jit = off; SET LOCAL work_mem = '32MB'; SET LOCAL max_parallel_workers_per_gather = 0;
             SET LOCAL plan_cache_mode = force_custom_plan",
        )
        .await?;
    }
    match part {
        Part::Daily => add_daily_sums(tx, from, to, out).await,
        // Referrals: counted by the sender on the day sent; decisions and loops by the receiver
        // on the day decided. Aggregated in the database: decision times come back as a
        // histogram of whole minutes per receiver, which gives the quantiles exactly.
        Part::Sent => add_sent(tx, from, to, out).await,
        Part::Decided => add_decided(tx, from, to, out).await,
        // Registries as at the period's end, over the twelve months to it.
        Part::Registry => add_registries(out, registry_figures(tx, to).await?),
    }
}

/// Per-institution inputs of the KPIs over `from..=to` (registries as at `to`), read in `tx`.
pub async fn inputs(tx: &Tx, from: NaiveDate, to: NaiveDate, sources: Sources) -> AppResult<HashMap<Uuid, Inputs>> {
    let mut out: HashMap<Uuid, Inputs> = HashMap::new();
    for part in parts(sources) {
        read_part(tx, part, from, to, &mut out).await?;
    }
    Ok(out)
}

/// Statistics reads in flight at once across the process on PostgreSQL: a dashboard's reads run
/// side by side, but never hold more than this many of the pool's connections.
static READS: std::sync::LazyLock<tokio::sync::Semaphore> = std::sync::LazyLock::new(|| tokio::sync::Semaphore::new(4));

/// As [`inputs`], with its reads (daily sums, referrals sent, referrals decided, registries)
/// run at once on PostgreSQL, each on its own connection and snapshot (they are independent
/// sums): a dashboard waits for the slowest read, not for their total. On SQLite, whose
/// transactions take turns anyway, one transaction reads them in turn.
pub async fn inputs_at_once(
    db: &Db,
    scope: &impl crate::platform::TenantScope,
    from: NaiveDate,
    to: NaiveDate,
    sources: Sources,
) -> AppResult<HashMap<Uuid, Inputs>> {
    if db.kind() != crate::platform::config::DbKind::Postgres {
        let tx = db.begin(scope).await?;
        let out = inputs(&tx, from, to, sources).await;
        tx.rollback().await?;
        return out;
    }
    let reads = parts(sources).into_iter().map(|part| async move {
        let _slot = READS.acquire().await.expect("the semaphore is never closed");
        let tx = db.begin(scope).await?;
        let mut out = HashMap::new();
        let read = read_part(&tx, part, from, to, &mut out).await;
        tx.rollback().await?;
        read.map(|_| out)
    });
    let mut out: HashMap<Uuid, Inputs> = HashMap::new();
    for per in futures::future::try_join_all(reads).await? {
        for (id, i) in per {
            out.entry(id).or_default().add(&i);
        }
    }
    Ok(out)
}

async fn add_daily_sums(tx: &Tx, from: NaiveDate, to: NaiveDate, out: &mut HashMap<Uuid, Inputs>) -> AppResult<()> {
    let institutions = crate::tenancy::service::list_institutions(tx).await?;
    let grassroots: HashSet<Uuid> = institutions
        .iter()
        .filter(|i| matches!(i.kind, InstitutionKind::TownshipHealthCentre | InstitutionKind::VillageClinic))
        .map(|i| i.id)
        .collect();
    for r in daily_between(tx, from, to).await? {
        let i = out.entry(r.institution_id).or_default();
        match (r.metric.as_str(), r.dim.as_str()) {
            ("visits", _) => {
                i.visits += r.value;
                if grassroots.contains(&r.institution_id) {
                    i.grassroots_visits += r.value;
                }
            }
            ("charges_fen", kind) => {
                i.charges_fen += r.value;
                if kind == "drug" {
                    i.drug_fen += r.value;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// The UTC instants bounding the China days `from..=to`.
fn instants(from: NaiveDate, to: NaiveDate) -> (DateTime<Utc>, DateTime<Utc>) {
    (china_day(from).0, china_day(to).1)
}

async fn add_sent(tx: &Tx, from: NaiveDate, to: NaiveDate, out: &mut HashMap<Uuid, Inputs>) -> AppResult<()> {
    let (start, end) = instants(from, to);
    for r in referrals_sent(tx, start, end).await? {
        let i = out.entry(r.institution_id).or_default();
        match r.direction.as_str() {
            "up" => i.referrals_up += r.n,
            "down" => i.referrals_down += r.n,
            "out" => i.referrals_out += r.n,
            _ => {}
        }
    }
    Ok(())
}

async fn add_decided(tx: &Tx, from: NaiveDate, to: NaiveDate, out: &mut HashMap<Uuid, Inputs>) -> AppResult<()> {
    let (start, end) = instants(from, to);
    for r in referrals_decided(tx, start, end).await? {
        let i = out.entry(r.institution_id).or_default();
        *i.decision_minutes.entry(r.minutes).or_default() += r.n;
        i.loop_accepted += r.accepted;
        i.loop_closed += r.closed;
    }
    Ok(())
}

fn add_registries(out: &mut HashMap<Uuid, Inputs>, sums: Vec<RegistrySum>) -> AppResult<()> {
    for r in sums {
        let i = out.entry(r.institution_id).or_default();
        let reg: &mut Registry = if r.disease == "diabetes" { &mut i.diabetes } else { &mut i.hypertension };
        reg.registered += r.registered;
        reg.managed += r.managed;
        reg.standard += r.standard;
        reg.controlled += r.controlled;
    }
    Ok(())
}

/// An institution and every institution below it.
pub fn subtree(institutions: &[InstitutionInfo], root: Uuid) -> HashSet<Uuid> {
    let mut set: HashSet<Uuid> = [root].into();
    loop {
        let before = set.len();
        for i in institutions {
            if i.parent_id.is_some_and(|p| set.contains(&p)) {
                set.insert(i.id);
            }
        }
        if set.len() == before {
            return set;
        }
    }
}

pub fn sum_over(per: &HashMap<Uuid, Inputs>, set: &HashSet<Uuid>) -> Inputs {
    let mut total = Inputs::default();
    for (id, i) in per {
        if set.contains(id) {
            total.add(i);
        }
    }
    total
}

/// A row of the reported node's level (an institution and its subtree, or the node alone) and its
/// KPI inputs.
#[derive(Debug, Clone)]
pub struct ChildReport {
    pub institution: InstitutionInfo,
    pub inputs: Inputs,
    /// The institution alone, without the institutions under it (the first row of a level).
    pub own: bool,
}

/// One bucket of a series: its days, inclusive, and its KPI inputs.
#[derive(Debug, Clone)]
pub struct Bucket {
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub inputs: Inputs,
}

/// The KPIs of a node and of each of its children.
pub struct Report {
    pub from: NaiveDate,
    pub to: NaiveDate,
    /// None for the whole community.
    pub node: Option<InstitutionInfo>,
    pub totals: Inputs,
    pub children: Vec<ChildReport>,
    /// The node of the level that lists this one, for going back up: None for the community
    /// (which lists the lead hospitals' townships directly).
    pub listed_under: Option<Uuid>,
}

fn check_period(from: NaiveDate, to: NaiveDate) -> AppResult<()> {
    let today = crate::platform::clock::china_date(Utc::now());
    crate::platform::dates::plausible("from", from, today)?;
    crate::platform::dates::plausible("to", to, today)?;
    // Years far outside any record would overflow the bucket and window arithmetic.
    let plausible = |d: NaiveDate| (1900..=2200).contains(&d.year());
    if from > to || (to - from).num_days() > 3 * 366 || !plausible(from) || !plausible(to) {
        return Err(AppError::new(
            codes::PERIOD_INVALID,
            "from is no later than to, at most three years apart, years 1900 to 2200",
        ));
    }
    Ok(())
}

/// The KPIs over `from..=to` for the community (or `institution`'s subtree), with drill-down
/// one level: county → township → village.
pub async fn report(
    state: &AppState,
    ctx: &RequestCtx,
    from: NaiveDate,
    to: NaiveDate,
    institution: Option<Uuid>,
) -> AppResult<Report> {
    ctx.require(Perm::StatisticsRead)?;
    check_period(from, to)?;
    let tx = state.db.begin(ctx).await?;
    let institutions = crate::tenancy::service::list_institutions(&tx).await?;
    let node =
        match institution {
            Some(id) => {
                Some(institutions.iter().find(|i| i.id == id).cloned().ok_or_else(|| {
                    AppError::new(codes::INSTITUTION_NOT_FOUND, "no such institution in this community")
                })?)
            }
            None => None,
        };
    tx.rollback().await?;
    let per = inputs_at_once(&state.db, ctx, from, to, Sources::ALL).await?;
    let (totals, children) = match &node {
        Some(n) => (sum_over(&per, &subtree(&institutions, n.id)), level(&institutions, &per, n)),
        None => {
            let all: HashSet<Uuid> = institutions.iter().map(|i| i.id).collect();
            // The lead hospital of a community is listed on its own, beside its townships, so
            // the first level the bureau sees is every township and not one hospital's tree.
            let roots = institutions
                .iter()
                .filter(|i| i.parent_id.is_none() && i.kind != InstitutionKind::HealthBureau)
                .flat_map(|r| {
                    let below = level(&institutions, &per, r);
                    if below.is_empty() { vec![subtree_row(&institutions, &per, r)] } else { below }
                })
                .collect();
            (sum_over(&per, &all), roots)
        }
    };
    let parent = |id: Option<Uuid>| id.and_then(|id| institutions.iter().find(|i| i.id == id));
    let listed_under = parent(node.as_ref().and_then(|n| n.parent_id)).filter(|p| p.parent_id.is_some()).map(|p| p.id);
    Ok(Report { from, to, node, totals, children, listed_under })
}

/// One level under `n`: `n` itself alone (when it has children), then each child with its
/// subtree, so that the rows add up to `n`'s subtree. Empty for an institution with no children.
fn level(institutions: &[InstitutionInfo], per: &HashMap<Uuid, Inputs>, n: &InstitutionInfo) -> Vec<ChildReport> {
    let children: Vec<ChildReport> =
        institutions.iter().filter(|i| i.parent_id == Some(n.id)).map(|c| subtree_row(institutions, per, c)).collect();
    if children.is_empty() {
        return children;
    }
    let own = ChildReport { institution: n.clone(), inputs: sum_over(per, &[n.id].into()), own: true };
    std::iter::once(own).chain(children).collect()
}

fn subtree_row(institutions: &[InstitutionInfo], per: &HashMap<Uuid, Inputs>, c: &InstitutionInfo) -> ChildReport {
    ChildReport { institution: c.clone(), inputs: sum_over(per, &subtree(institutions, c.id)), own: false }
}

/// One KPI-input set per bucket of the period, for the community or a subtree.
pub async fn series(
    state: &AppState,
    ctx: &RequestCtx,
    from: NaiveDate,
    to: NaiveDate,
    grain: super::domain::Grain,
    institution: Option<Uuid>,
    sources: Sources,
) -> AppResult<Vec<Bucket>> {
    ctx.require(Perm::StatisticsRead)?;
    check_period(from, to)?;
    let buckets = super::domain::buckets(from, to, grain);
    if buckets.len() > 400 {
        return Err(AppError::new(codes::PERIOD_INVALID, "at most 400 points in a series; use a coarser grain"));
    }
    let tx = state.db.begin(ctx).await?;
    let institutions = crate::tenancy::service::list_institutions(&tx).await?;
    let set: HashSet<Uuid> = match institution {
        Some(id) => {
            if !institutions.iter().any(|i| i.id == id) {
                return Err(AppError::new(codes::INSTITUTION_NOT_FOUND, "no such institution in this community"));
            }
            subtree(&institutions, id)
        }
        None => institutions.iter().map(|i| i.id).collect(),
    };
    let mut out = Vec::new();
    for (from, to) in buckets {
        let per = inputs(&tx, from, to, sources).await?;
        out.push(Bucket { from, to, inputs: sum_over(&per, &set) });
    }
    tx.rollback().await?;
    Ok(out)
}
