//! Accounts use cases: the chart from the tenant file, posting events to the journal (the
//! `ledger` consumer), statements for any period (trial balance, consolidated with eliminations,
//! income statement, patient statement), reconciliation against billing, period close, and the
//! replay check that rebuilding the ledger from the events gives the same balances.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, NaiveDate, Utc};
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, Set};
use uuid::Uuid;

use super::domain::{
    Account, Chart, Draft, Kind, POSTED, Role, fee_share, next_period, period_of, post, share_of, valid_period,
};
use super::entity::{journal_entry, journal_line, ledger_account, ledger_period};
use crate::identity::ctx::{Perm, RequestCtx};
use crate::platform::audit::Purpose;
use crate::platform::clock::china_day;
use crate::platform::codes;
use crate::platform::consumers::Handler;
use crate::platform::events::{Envelope, Event};
use crate::platform::state::AppState;
use crate::platform::{AppError, AppResult, Db, SystemScope, Tx};
use crate::referrals::domain::Direction;
use crate::referrals::events::{Completed, ReferralChange};
use crate::tenancy::domain::ApplyReport;

/// The tenant's chart: the accounts table, or the default until a tenant file sets one.
pub async fn chart(tx: &Tx) -> AppResult<Chart> {
    let rows = ledger_account::Entity::find()
        .filter(ledger_account::Column::TenantId.eq(tx.tenant()))
        .order_by_asc(ledger_account::Column::Code)
        .all(&**tx)
        .await?;
    if rows.is_empty() {
        return Ok(Chart::default());
    }
    Ok(Chart {
        accounts: rows
            .into_iter()
            .map(|r| Account {
                kind: Kind::parse(&r.kind).unwrap_or(Kind::Asset),
                role: r.role.as_deref().and_then(Role::parse),
                code: r.code,
                name: r.name,
                name_en: r.name_en,
                internal: r.internal,
            })
            .collect(),
    })
}

/// Writes the chart of a tenant file (or the default) where it differs.
pub async fn apply_chart(tx: &Tx, chart: &Chart, report: &mut ApplyReport) -> AppResult<()> {
    let existing: HashMap<String, ledger_account::Model> = ledger_account::Entity::find()
        .filter(ledger_account::Column::TenantId.eq(tx.tenant()))
        .all(&**tx)
        .await?
        .into_iter()
        .map(|a| (a.code.clone(), a))
        .collect();
    for a in &chart.accounts {
        let row = ledger_account::Model {
            tenant_id: tx.tenant(),
            code: a.code.clone(),
            name: a.name.clone(),
            name_en: a.name_en.clone(),
            kind: a.kind.as_str().into(),
            internal: a.internal,
            role: a.role.map(|r| r.as_str().to_string()),
        };
        match existing.get(&a.code) {
            None => {
                ledger_account::ActiveModel::from(row).insert(&**tx).await?;
                report.created.push(format!("account {}", a.code));
            }
            Some(old) if *old != row => {
                ledger_account::ActiveModel::from(row).reset_all().update(&**tx).await?;
                report.updated.push(format!("account {}", a.code));
            }
            Some(_) => report.unchanged += 1,
        }
    }
    // An account dropped from the file keeps its past lines but no longer takes postings: its
    // role passes to the account the file now names (a renumbered chart never has two).
    let kept: HashSet<&str> = chart.accounts.iter().map(|a| a.code.as_str()).collect();
    for old in existing.values().filter(|a| !kept.contains(a.code.as_str()) && a.role.is_some()) {
        let row = ledger_account::Model { role: None, ..old.clone() };
        ledger_account::ActiveModel::from(row).reset_all().update(&**tx).await?;
        report.updated.push(format!("account {} (retired: no longer in the file)", old.code));
    }
    Ok(())
}

/// Referral fee share in basis points: `[settings.accounts] referral_fee_share` (0.10 = 10%).
pub fn fee_share_bp(settings: &serde_json::Value) -> i64 {
    settings
        .get("accounts")
        .and_then(|a| a.get("referral_fee_share"))
        .and_then(|v| v.as_f64())
        .filter(|v| (0.0..=1.0).contains(v))
        .map(|v| (v * 10_000.0).round() as i64)
        .unwrap_or(0)
}

/// The period an event posts to: its own, or the first open one after it when that is closed.
async fn open_period(tx: &Tx, at: DateTime<Utc>) -> AppResult<(String, Option<String>)> {
    let own = period_of(at);
    let closed: HashSet<String> = ledger_period::Entity::find()
        .filter(ledger_period::Column::TenantId.eq(tx.tenant()))
        .filter(ledger_period::Column::Status.eq("closed"))
        .all(&**tx)
        .await?
        .into_iter()
        .map(|p| p.period)
        .collect();
    let mut p = own.clone();
    while closed.contains(&p) {
        p = next_period(&p);
    }
    Ok(if p == own { (p, None) } else { (p, Some(own)) })
}

async fn write(tx: &Tx, event: &Envelope, drafts: Vec<Draft>) -> AppResult<()> {
    let (period, late) = open_period(tx, event.occurred_at).await?;
    for d in drafts {
        if !d.balanced() {
            return Err(AppError::internal(anyhow::anyhow!("unbalanced entry for {}", event.event_type)));
        }
        let entry = journal_entry::ActiveModel {
            tenant_id: Set(tx.tenant()),
            id: Set(Uuid::now_v7()),
            institution_id: Set(d.institution),
            period: Set(period.clone()),
            event_id: Set(event.id),
            event_type: Set(event.event_type.clone()),
            source_id: Set(d.source),
            person_id: Set(d.person),
            counterparty_id: Set(d.counterparty),
            description: Set(d.description.into()),
            occurred_at: Set(event.occurred_at),
            posted_at: Set(Utc::now()),
            late_from_period: Set(late.clone()),
        }
        .insert(&**tx)
        .await?;
        let lines: Vec<journal_line::ActiveModel> = d
            .lines
            .iter()
            .map(|l| journal_line::ActiveModel {
                tenant_id: Set(tx.tenant()),
                id: Set(Uuid::now_v7()),
                entry_id: Set(entry.id),
                institution_id: Set(d.institution),
                period: Set(period.clone()),
                account_code: Set(l.account.clone()),
                debit_fen: Set(l.debit),
                credit_fen: Set(l.credit),
                counterparty_id: Set(d.counterparty),
                person_id: Set(d.person),
                source_id: Set(l.source.or(d.source)),
            })
            .collect();
        journal_line::Entity::insert_many(lines).exec(&**tx).await?;
    }
    Ok(())
}

/// Who shares what when an up-referral completes: the receiver pays the referrer part of what the
/// referred person's first visit earned it.
pub struct FeeShareTerms {
    pub receiver: Uuid,
    pub referrer: Uuid,
    pub person: Uuid,
    /// When the receiver accepted: the first visit is the first bill after it.
    pub since: DateTime<Utc>,
}

/// What a completed referral says fee sharing needs. None when nothing is shared (not an up
/// referral, or never accepted).
pub fn referral_terms(c: &ReferralChange) -> Option<FeeShareTerms> {
    if c.direction != Direction::Up {
        return None;
    }
    Some(FeeShareTerms {
        receiver: c.to_institution?,
        referrer: c.from_institution,
        person: c.person,
        since: c.decided_at?,
    })
}

/// The entries one event makes, given the tenant's chart and fee share (basis points): the one
/// rule the ledger posts by and a replay rebuilds by. Fee sharing shares the receiver's revenue
/// from the referred person's first visit, which the `referrals.completed` event carries.
pub fn drafts_of(chart: &Chart, share_bp: i64, event: &Envelope) -> AppResult<Vec<Draft>> {
    if event.event_type != Completed::TYPE {
        return post(chart, event).map_err(|e| {
            if e.1.contains("unreadable") {
                AppError::new(crate::platform::events::UNREADABLE, e.to_string())
            } else {
                AppError::internal(anyhow::anyhow!(e))
            }
        });
    }
    let change = event.decode::<Completed>()?.0;
    let Some(FeeShareTerms { receiver, referrer, person, .. }) = referral_terms(&change) else {
        return Ok(Vec::new());
    };
    let revenue = change.first_visit_revenue_fen.unwrap_or(0);
    if share_bp == 0 || revenue == 0 {
        return Ok(Vec::new());
    }
    Ok(fee_share(chart, receiver, referrer, event.aggregate, Some(person), share_of(revenue, share_bp)))
}

/// The `ledger` consumer: billing, pharmacy and referral events become journal entries. An
/// event already in the journal posts nothing (idempotent by event id, besides the consumer's
/// own bookkeeping and the database's unique index).
pub struct Ledger;

#[async_trait::async_trait]
impl Handler for Ledger {
    fn name(&self) -> &'static str {
        "ledger"
    }

    fn events(&self) -> Vec<&'static str> {
        let mut types = POSTED.to_vec();
        types.push(Completed::TYPE);
        types
    }

    async fn handle(&self, tx: &mut Tx, event: &Envelope) -> AppResult<()> {
        let posted = journal_entry::Entity::find()
            .filter(journal_entry::Column::TenantId.eq(tx.tenant()))
            .filter(journal_entry::Column::EventId.eq(event.id))
            .one(&**tx)
            .await?;
        if posted.is_some() {
            return Ok(());
        }
        let chart = chart(tx).await?;
        // Only fee sharing needs the tenant's settings; other events skip the read.
        let share = match event.event_type.as_str() {
            Completed::TYPE => fee_share_bp(&crate::tenancy::service::get_tenant(&**tx, tx.tenant()).await?.settings),
            _ => 0,
        };
        let drafts = drafts_of(&chart, share, event)?;
        write(tx, event, drafts).await
    }
}

/// A period range, inclusive: `from` and `to` are `YYYY-MM`.
pub fn check_range(from: &str, to: &str) -> AppResult<()> {
    if !valid_period(from) || !valid_period(to) || from > to {
        return Err(AppError::new(codes::PERIOD_INVALID, "periods are YYYY-MM, from no later than to"));
    }
    Ok(())
}

#[derive(Debug, Clone)]
pub struct BalanceRow {
    pub account: String,
    pub name: String,
    pub kind: Kind,
    pub debit_fen: i64,
    pub credit_fen: i64,
    /// Debit minus credit.
    pub balance_fen: i64,
}

/// Journal lines summed by institution, account and counterparty: statements aggregate in the
/// database, so a year of a community's lines never has to cross the wire one by one.
#[derive(Debug, Clone, PartialEq, Eq, sea_orm::FromQueryResult)]
pub struct LineSum {
    pub institution_id: Uuid,
    pub account_code: String,
    pub counterparty_id: Option<Uuid>,
    pub debit_fen: i64,
    pub credit_fen: i64,
}

async fn sums_in(tx: &Tx, from: &str, to: &str, institution: Option<Uuid>) -> AppResult<Vec<LineSum>> {
    use journal_line::Column as C;
    use sea_orm::QuerySelect;
    use sea_orm::sea_query::{Alias, Expr, ExprTrait, Func};
    // SUM(bigint) is numeric on PostgreSQL; the cast keeps it an integer on both backends.
    let total = |c: C| Expr::from(Func::sum(Expr::col(c))).cast_as(Alias::new("BIGINT"));
    let mut q = journal_line::Entity::find()
        .select_only()
        .column(C::InstitutionId)
        .column(C::AccountCode)
        .column(C::CounterpartyId)
        .column_as(total(C::DebitFen), "debit_fen")
        .column_as(total(C::CreditFen), "credit_fen")
        .filter(C::TenantId.eq(tx.tenant()))
        .filter(C::Period.gte(from))
        .filter(C::Period.lte(to));
    if let Some(i) = institution {
        q = q.filter(C::InstitutionId.eq(i));
    }
    let q = q.group_by(C::InstitutionId).group_by(C::AccountCode).group_by(C::CounterpartyId);
    Ok(q.into_model::<LineSum>().all(&**tx).await?)
}

fn rows(chart: &Chart, sums: BTreeMap<String, (i64, i64)>) -> Vec<BalanceRow> {
    sums.into_iter()
        .map(|(code, (d, c))| {
            let a = chart.account(&code);
            BalanceRow {
                name: a.map(|a| a.name.clone()).unwrap_or_default(),
                kind: a.map(|a| a.kind).unwrap_or(Kind::Asset),
                account: code,
                debit_fen: d,
                credit_fen: c,
                balance_fen: d - c,
            }
        })
        .collect()
}

fn sum_by_account(lines: &[LineSum]) -> BTreeMap<String, (i64, i64)> {
    let mut m: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for l in lines {
        let e = m.entry(l.account_code.clone()).or_default();
        e.0 += l.debit_fen;
        e.1 += l.credit_fen;
    }
    m
}

/// A trial balance for one institution, or for the whole community (before eliminations).
pub async fn trial_balance(
    state: &AppState,
    ctx: &RequestCtx,
    from: &str,
    to: &str,
    institution: Option<Uuid>,
) -> AppResult<Vec<BalanceRow>> {
    ctx.require(Perm::AccountsRead)?;
    check_range(from, to)?;
    let tx = state.db.begin(ctx).await?;
    if let Some(i) = institution {
        crate::tenancy::service::get_institution(&tx, i).await?;
    }
    let chart = chart(&tx).await?;
    let sums = sums_in(&tx, from, to, institution).await?;
    tx.rollback().await?;
    Ok(rows(&chart, sum_by_account(&sums)))
}

#[derive(Debug, Clone)]
pub struct ConsolidatedLine {
    pub account: String,
    pub name: String,
    pub kind: Kind,
    /// Sum of every member institution's balance (debit minus credit).
    pub gross_fen: i64,
    /// What elimination removes (the negative of the internal balance).
    pub elimination_fen: i64,
    pub consolidated_fen: i64,
}

#[derive(Debug, Clone)]
pub struct InternalPair {
    pub institution: Uuid,
    pub counterparty: Uuid,
    /// The institution's internal balances with that counterparty (debit minus credit).
    pub receivable_fen: i64,
    pub payable_fen: i64,
    pub revenue_fen: i64,
    pub expense_fen: i64,
}

#[derive(Debug, Clone)]
pub struct Consolidated {
    pub from: String,
    pub to: String,
    pub lines: Vec<ConsolidatedLine>,
    /// Internal balances between each pair of member institutions, which elimination removes.
    pub internal: Vec<InternalPair>,
    /// Pairs whose two sides disagree (one posted, the other not yet): left after elimination.
    pub unmatched_fen: i64,
    pub revenue_fen: i64,
    pub expense_fen: i64,
    pub surplus_fen: i64,
}

/// The community's consolidated statement: every institution's balances summed, then internal
/// receivables and payables, internal revenue and expense between members eliminated, with the
/// elimination lines shown.
pub async fn consolidated(state: &AppState, ctx: &RequestCtx, from: &str, to: &str) -> AppResult<Consolidated> {
    if !ctx.can(Perm::AccountsRead) {
        ctx.require(Perm::AccountsConsolidated)?;
    }
    check_range(from, to)?;
    let tx = state.db.begin(ctx).await?;
    let chart = chart(&tx).await?;
    let sums = sums_in(&tx, from, to, None).await?;
    tx.rollback().await?;
    let mut c = consolidate(&chart, &sums, from, to);
    if !ctx.can(Perm::AccountsRead) {
        // Bureau officials see the community's totals, not what each member owes another.
        c.internal.clear();
    }
    Ok(c)
}

pub fn consolidate(chart: &Chart, lines: &[LineSum], from: &str, to: &str) -> Consolidated {
    let gross = sum_by_account(lines);
    let internal_codes: HashSet<&str> = chart.accounts.iter().filter(|a| a.internal).map(|a| a.code.as_str()).collect();
    let mut pairs: BTreeMap<(Uuid, Uuid), InternalPair> = BTreeMap::new();
    for l in lines.iter().filter(|l| internal_codes.contains(l.account_code.as_str())) {
        let Some(cp) = l.counterparty_id else { continue };
        let p = pairs.entry((l.institution_id, cp)).or_insert(InternalPair {
            institution: l.institution_id,
            counterparty: cp,
            receivable_fen: 0,
            payable_fen: 0,
            revenue_fen: 0,
            expense_fen: 0,
        });
        let v = l.debit_fen - l.credit_fen;
        match chart.account(&l.account_code).and_then(|a| a.role) {
            Some(Role::InternalReceivable) => p.receivable_fen += v,
            Some(Role::InternalPayable) => p.payable_fen += v,
            Some(Role::InternalRevenue) => p.revenue_fen += v,
            Some(Role::InternalExpense) => p.expense_fen += v,
            _ => {}
        }
    }
    // Each pair eliminates what both sides record: the smaller of one's receivable from the
    // other and the other's payable to it (and likewise revenue against expense). What only
    // one side records stays in the consolidated figures, and is reported as unmatched.
    let mut elim_by_role: HashMap<Role, i64> = HashMap::new();
    let mut unmatched = 0;
    let none = InternalPair {
        institution: Uuid::nil(),
        counterparty: Uuid::nil(),
        receivable_fen: 0,
        payable_fen: 0,
        revenue_fen: 0,
        expense_fen: 0,
    };
    // Both directions of every pair, including one only the other side recorded.
    let keys: std::collections::BTreeSet<(Uuid, Uuid)> = pairs.keys().flat_map(|&(a, b)| [(a, b), (b, a)]).collect();
    for (a, b) in keys {
        let p = pairs.get(&(a, b)).unwrap_or(&none);
        let other = pairs.get(&(b, a)).unwrap_or(&none);
        // Receivable (a debit, positive) against the other's payable (a credit, negative).
        let owed = p.receivable_fen.max(0).min((-other.payable_fen).max(0));
        *elim_by_role.entry(Role::InternalReceivable).or_default() -= owed;
        *elim_by_role.entry(Role::InternalPayable).or_default() += owed;
        unmatched += (p.receivable_fen - owed).abs() + (other.payable_fen + owed).abs();
        // Revenue (a credit, negative) against the other's expense (a debit, positive).
        let earned = (-p.revenue_fen).max(0).min(other.expense_fen.max(0));
        *elim_by_role.entry(Role::InternalRevenue).or_default() += earned;
        *elim_by_role.entry(Role::InternalExpense).or_default() -= earned;
        unmatched += (p.revenue_fen + earned).abs() + (other.expense_fen - earned).abs();
    }
    let mut out = Vec::new();
    let (mut revenue, mut expense) = (0, 0);
    for (code, (d, c)) in gross {
        let a = chart.account(&code);
        let kind = a.map(|a| a.kind).unwrap_or(Kind::Asset);
        let g = d - c;
        let elim = match a.filter(|a| internal_codes.contains(a.code.as_str())).and_then(|a| a.role) {
            Some(role) => elim_by_role.get(&role).copied().unwrap_or(0),
            None => 0,
        };
        let cons = g + elim;
        match kind {
            Kind::Revenue => revenue -= cons,
            Kind::Expense => expense += cons,
            _ => {}
        }
        out.push(ConsolidatedLine {
            name: a.map(|a| a.name.clone()).unwrap_or_default(),
            kind,
            account: code,
            gross_fen: g,
            elimination_fen: elim,
            consolidated_fen: cons,
        });
    }
    Consolidated {
        from: from.into(),
        to: to.into(),
        lines: out,
        internal: pairs.into_values().collect(),
        unmatched_fen: unmatched,
        revenue_fen: revenue,
        expense_fen: expense,
        surplus_fen: revenue - expense,
    }
}

#[derive(Debug, Clone)]
pub struct IncomeStatement {
    pub institution: Uuid,
    pub name: String,
    pub revenue: Vec<BalanceRow>,
    pub expense: Vec<BalanceRow>,
    /// Revenue (credits net of debits, refunds included) less expense.
    pub revenue_fen: i64,
    pub expense_fen: i64,
    pub surplus_fen: i64,
}

pub async fn income_statements(
    state: &AppState,
    ctx: &RequestCtx,
    from: &str,
    to: &str,
) -> AppResult<Vec<IncomeStatement>> {
    ctx.require(Perm::AccountsRead)?;
    check_range(from, to)?;
    let tx = state.db.begin(ctx).await?;
    let chart = chart(&tx).await?;
    let lines = sums_in(&tx, from, to, None).await?;
    let institutions = crate::tenancy::service::list_institutions(&tx).await?;
    tx.rollback().await?;
    let mut out = Vec::new();
    for inst in institutions {
        let mine: Vec<LineSum> = lines.iter().filter(|l| l.institution_id == inst.id).cloned().collect();
        if mine.is_empty() {
            continue;
        }
        let all = rows(&chart, sum_by_account(&mine));
        let revenue: Vec<BalanceRow> = all.iter().filter(|r| r.kind == Kind::Revenue).cloned().collect();
        let expense: Vec<BalanceRow> = all.iter().filter(|r| r.kind == Kind::Expense).cloned().collect();
        let rev = -revenue.iter().map(|r| r.balance_fen).sum::<i64>();
        let exp = expense.iter().map(|r| r.balance_fen).sum::<i64>();
        out.push(IncomeStatement {
            institution: inst.id,
            name: inst.name,
            revenue,
            expense,
            revenue_fen: rev,
            expense_fen: exp,
            surplus_fen: rev - exp,
        });
    }
    Ok(out)
}

#[derive(Debug, Clone)]
pub struct PatientLine {
    pub occurred_at: DateTime<Utc>,
    pub institution: Uuid,
    pub institution_name: String,
    pub description: String,
    /// Charged to the patient's account (their share) and to insurance.
    pub patient_fen: i64,
    pub insurance_fen: i64,
    /// Paid by the patient (negative for a refund).
    pub paid_fen: i64,
}

#[derive(Debug, Clone)]
pub struct PatientStatement {
    pub person: Uuid,
    /// The period range (`YYYY-MM`, inclusive) of the lines; None for every period.
    pub from: Option<String>,
    pub to: Option<String>,
    /// What the patient owed before `from` (charged less paid).
    pub opening_balance_fen: i64,
    pub lines: Vec<PatientLine>,
    pub charged_fen: i64,
    pub insurance_fen: i64,
    pub paid_fen: i64,
    /// What the patient still owes across every institution.
    pub balance_fen: i64,
}

/// A patient's account across every institution of the community, over a period range (every
/// period when None), with what was owed before it.
pub async fn patient_statement(
    state: &AppState,
    ctx: &RequestCtx,
    person: Uuid,
    range: Option<(&str, &str)>,
) -> AppResult<PatientStatement> {
    ctx.require(Perm::AccountsRead)?;
    if let Some((from, to)) = range {
        check_range(from, to)?;
    }
    let mut tx = state.db.begin(ctx).await?;
    crate::patients::service::find_person_any(&tx, person).await?;
    let persons = crate::patients::service::person_and_merged(&tx, person).await?;
    let chart = chart(&tx).await?;
    let entries = journal_entry::Entity::find()
        .filter(journal_entry::Column::TenantId.eq(ctx.tenant))
        .filter(journal_entry::Column::PersonId.is_in(persons))
        .filter(journal_entry::Column::EventType.starts_with("billing."))
        .order_by_asc(journal_entry::Column::OccurredAt)
        .all(&*tx)
        .await?;
    let ids: Vec<Uuid> = entries.iter().map(|e| e.id).collect();
    let lines = journal_line::Entity::find()
        .filter(journal_line::Column::TenantId.eq(ctx.tenant))
        .filter(journal_line::Column::EntryId.is_in(ids))
        .all(&*tx)
        .await?;
    let names: HashMap<Uuid, String> =
        crate::tenancy::service::list_institutions(&tx).await?.into_iter().map(|i| (i.id, i.name)).collect();
    let (receivable, insurance) =
        (chart.code(Role::PatientReceivable).to_string(), chart.code(Role::InsuranceReceivable).to_string());
    let cash: HashSet<String> = [Role::Cash, Role::Bank].iter().map(|r| chart.code(*r).to_string()).collect();
    let refunds = chart.code(Role::Refunds).to_string();
    let mut out = Vec::new();
    let mut opening = 0;
    for e in entries {
        if range.is_some_and(|(_, to)| e.period.as_str() > to) {
            continue;
        }
        let mine: Vec<&journal_line::Model> = lines.iter().filter(|l| l.entry_id == e.id).collect();
        let sum = |f: &dyn Fn(&journal_line::Model) -> bool| {
            mine.iter().filter(|l| f(l)).map(|l| l.debit_fen - l.credit_fen).sum::<i64>()
        };
        // A charge is the patient's share and insurance's; a refund takes back part of what
        // the patient was charged and paid.
        let (patient_fen, insurance_fen) = match e.event_type.as_str() {
            "billing.charge_posted" => (sum(&|l| l.account_code == receivable), sum(&|l| l.account_code == insurance)),
            "billing.refund_issued" => (-sum(&|l| l.account_code == refunds), 0),
            _ => (0, 0),
        };
        let paid_fen = sum(&|l| cash.contains(&l.account_code));
        if range.is_some_and(|(from, _)| e.period.as_str() < from) {
            opening += patient_fen - paid_fen;
            continue;
        }
        out.push(PatientLine {
            occurred_at: e.occurred_at,
            institution_name: names.get(&e.institution_id).cloned().unwrap_or_default(),
            institution: e.institution_id,
            description: e.description,
            patient_fen,
            insurance_fen,
            paid_fen,
        });
    }
    tx.audit(
        ctx.audit("accounts.patient_statement", "person", Purpose::Administration).resource(person).subject(person),
    );
    tx.commit().await?;
    let charged: i64 = out.iter().map(|l| l.patient_fen).sum();
    let ins: i64 = out.iter().map(|l| l.insurance_fen).sum();
    let paid: i64 = out.iter().map(|l| l.paid_fen).sum();
    Ok(PatientStatement {
        person,
        from: range.map(|r| r.0.to_string()),
        to: range.map(|r| r.1.to_string()),
        opening_balance_fen: opening,
        charged_fen: charged,
        insurance_fen: ins,
        paid_fen: paid,
        balance_fen: opening + charged - paid,
        lines: out,
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    /// missing_in_ledger, amount_differs or extra_in_ledger
    pub kind: &'static str,
    /// charge, payment or refund
    pub document: &'static str,
    pub document_id: Uuid,
    pub billing_fen: i64,
    pub ledger_fen: i64,
    /// The event that should have posted it, or that did.
    pub event_id: Option<Uuid>,
}

/// Checks that one institution's billing of one day equals its ledger: every charge, payment
/// and refund posted with the same amount, and nothing posted that billing does not have.
pub async fn reconcile_day(tx: &Tx, institution: Uuid, day: NaiveDate) -> AppResult<Vec<Difference>> {
    let (start, end) = china_day(day);
    let docs = crate::billing::service::documents(tx, institution, start, end).await?;
    let chart = chart(tx).await?;
    let cash: HashSet<String> = [Role::Cash, Role::Bank].iter().map(|r| chart.code(*r).to_string()).collect();
    let refunds = chart.code(Role::Refunds).to_string();
    let entries = journal_entry::Entity::find()
        .filter(journal_entry::Column::TenantId.eq(tx.tenant()))
        .filter(journal_entry::Column::InstitutionId.eq(institution))
        .filter(journal_entry::Column::EventType.starts_with("billing."))
        .filter(journal_entry::Column::OccurredAt.gte(start))
        .filter(journal_entry::Column::OccurredAt.lt(end))
        .all(&**tx)
        .await?;
    let doc_ids: Vec<Uuid> = docs.iter().map(|d| d.id).collect();
    let entry_ids: Vec<Uuid> = entries.iter().map(|e| e.id).collect();
    let mut lines = journal_line::Entity::find()
        .filter(journal_line::Column::TenantId.eq(tx.tenant()))
        .filter(journal_line::Column::SourceId.is_in(doc_ids))
        .all(&**tx)
        .await?;
    lines.extend(
        journal_line::Entity::find()
            .filter(journal_line::Column::TenantId.eq(tx.tenant()))
            .filter(journal_line::Column::EntryId.is_in(entry_ids))
            .all(&**tx)
            .await?,
    );
    let event_of: HashMap<Uuid, Uuid> = journal_entry::Entity::find()
        .filter(journal_entry::Column::TenantId.eq(tx.tenant()))
        .filter(
            journal_entry::Column::Id
                .is_in(lines.iter().map(|l| l.entry_id).collect::<HashSet<_>>().into_iter().collect::<Vec<_>>()),
        )
        .all(&**tx)
        .await?
        .into_iter()
        .map(|e| (e.id, e.event_id))
        .collect();
    // What the ledger says of each document: revenue credited for a charge; money debited for a
    // payment; refunds debited for a refund.
    let mut ledger: HashMap<Uuid, (i64, Uuid)> = HashMap::new();
    let mut seen_lines = HashSet::new();
    for l in &lines {
        if !seen_lines.insert(l.id) {
            continue;
        }
        let Some(src) = l.source_id else { continue };
        let amount = match l.account_code.as_str() {
            c if cash.contains(c) => l.debit_fen,
            c if c == refunds => l.debit_fen,
            c if chart
                .account(c)
                .is_some_and(|a| matches!(a.role, Some(Role::OutpatientRevenue | Role::DrugRevenue))) =>
            {
                l.credit_fen
            }
            _ => continue,
        };
        let e = ledger.entry(src).or_insert((0, event_of.get(&l.entry_id).copied().unwrap_or_default()));
        e.0 += amount;
    }
    let mut out = Vec::new();
    let billed: HashSet<Uuid> = docs.iter().map(|d| d.id).collect();
    for d in &docs {
        match ledger.get(&d.id) {
            None => out.push(Difference {
                kind: "missing_in_ledger",
                document: d.kind,
                document_id: d.id,
                billing_fen: d.amount_fen,
                ledger_fen: 0,
                event_id: crate::platform::events::find_event(tx, d.bill_id, d.event_type, d.id).await?,
            }),
            Some((amount, event)) if *amount != d.amount_fen => out.push(Difference {
                kind: "amount_differs",
                document: d.kind,
                document_id: d.id,
                billing_fen: d.amount_fen,
                ledger_fen: *amount,
                event_id: Some(*event),
            }),
            _ => {}
        }
    }
    for (src, (amount, event)) in &ledger {
        if !billed.contains(src) && entries.iter().any(|e| e.event_id == *event) {
            out.push(Difference {
                kind: "extra_in_ledger",
                document: "unknown",
                document_id: *src,
                billing_fen: 0,
                ledger_fen: *amount,
                event_id: Some(*event),
            });
        }
    }
    out.sort_by_key(|d| (d.kind, d.document_id));
    Ok(out)
}

/// One institution's reconciliation of a day: empty when billing and the ledger agree.
pub struct InstitutionDay {
    pub institution: Uuid,
    pub differences: Vec<Difference>,
}

/// Reconciliation of one day for one institution or all of them.
pub async fn reconcile_in(tx: &Tx, institution: Option<Uuid>, day: NaiveDate) -> AppResult<Vec<InstitutionDay>> {
    let institutions = match institution {
        Some(i) => vec![crate::tenancy::service::get_institution(tx, i).await?.id],
        None => crate::tenancy::service::institution_ids(tx).await?,
    };
    let mut out = Vec::new();
    for i in institutions {
        out.push(InstitutionDay { institution: i, differences: reconcile_day(tx, i, day).await? });
    }
    Ok(out)
}

pub async fn reconcile(
    state: &AppState,
    ctx: &RequestCtx,
    institution: Option<Uuid>,
    day: NaiveDate,
) -> AppResult<Vec<InstitutionDay>> {
    ctx.require(Perm::AccountsRead)?;
    crate::platform::dates::plausible("day", day, crate::platform::clock::china_date(chrono::Utc::now()))?;
    let tx = state.db.begin(ctx).await?;
    let out = reconcile_in(&tx, institution, day).await?;
    tx.rollback().await?;
    Ok(out)
}

pub async fn periods(state: &AppState, ctx: &RequestCtx) -> AppResult<Vec<ledger_period::Model>> {
    ctx.require(Perm::AccountsRead)?;
    let tx = state.db.begin(ctx).await?;
    let rows = ledger_period::Entity::find()
        .filter(ledger_period::Column::TenantId.eq(ctx.tenant))
        .order_by_asc(ledger_period::Column::Period)
        .all(&*tx)
        .await?;
    tx.rollback().await?;
    Ok(rows)
}

/// Closes a month: nothing posts into it any more (late events go to the next open period with
/// a reference back). Its entries were never changeable; now none can be added.
pub async fn close_period(state: &AppState, ctx: &RequestCtx, period: &str) -> AppResult<ledger_period::Model> {
    ctx.require(Perm::AccountsClose)?;
    if !valid_period(period) {
        return Err(AppError::new(codes::PERIOD_INVALID, "a period is YYYY-MM"));
    }
    if period >= period_of(Utc::now()).as_str() {
        return Err(AppError::new(codes::PERIOD_OPEN, "only a past month can be closed"));
    }
    let mut tx = state.db.begin(ctx).await?;
    let existing = ledger_period::Entity::find_by_id((ctx.tenant, period.to_string())).one(&*tx).await?;
    if existing.as_ref().is_some_and(|p| p.status == "closed") {
        return Err(AppError::new(codes::PERIOD_CLOSED, "that period is already closed"));
    }
    let row = ledger_period::Model {
        tenant_id: ctx.tenant,
        period: period.into(),
        status: "closed".into(),
        closed_at: Some(Utc::now()),
        closed_by: Some(ctx.user),
    };
    let saved = if existing.is_some() {
        ledger_period::ActiveModel::from(row).reset_all().update(&*tx).await?
    } else {
        ledger_period::ActiveModel::from(row).insert(&*tx).await?
    };
    tx.audit(ctx.audit("accounts.close_period", "ledger_period", Purpose::Administration).resource(period));
    tx.commit().await?;
    Ok(saved)
}

/// A balance that differs between the stored ledger and its rebuild from the events.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ReplayDiff {
    pub institution: Uuid,
    /// The period the events belong to (`YYYY-MM`): a late entry counts in its own period here.
    pub period: String,
    pub account: String,
    pub stored_fen: i64,
    pub rebuilt_fen: i64,
}

#[derive(Debug, sea_orm::FromQueryResult)]
struct StoredBalance {
    institution_id: Uuid,
    period: String,
    account_code: String,
    balance: i64,
}

/// Rebuilds the ledger from every published event it follows, in publication order, with the
/// rule the `ledger` consumer posts by ([`drafts_of`]), and compares the balances per
/// (institution, period of the event, account) with the stored journal. Returns what differs
/// (empty when the ledger is exactly its events).
pub async fn verify_replay(db: &Db, tenant: Uuid) -> AppResult<Vec<ReplayDiff>> {
    let scope = SystemScope { tenant };
    let tx = db.begin(&scope).await?;
    let chart = chart(&tx).await?;
    let bp = fee_share_bp(&crate::tenancy::service::get_tenant(&*tx, tenant).await?.settings);
    let stored: Vec<StoredBalance> = crate::platform::db::query_all(
        &tx,
        "SELECT l.institution_id, COALESCE(e.late_from_period, l.period) AS period, l.account_code,
                CAST(SUM(l.debit_fen - l.credit_fen) AS BIGINT) AS balance
           FROM journal_lines l
           JOIN journal_entries e ON e.tenant_id = l.tenant_id AND e.id = l.entry_id
          WHERE l.tenant_id = ?
          GROUP BY l.institution_id, COALESCE(e.late_from_period, l.period), l.account_code",
        vec![tenant.into()],
    )
    .await?;
    let events = crate::platform::events::published(&tx, &Ledger.events()).await?;
    tx.rollback().await?;
    type Key = (Uuid, String, String);
    let stored: HashMap<Key, i64> =
        stored.into_iter().map(|s| ((s.institution_id, s.period, s.account_code), s.balance)).collect();
    let mut rebuilt: HashMap<Key, i64> = HashMap::new();
    for e in &events {
        let period = period_of(e.occurred_at);
        for d in drafts_of(&chart, bp, e)? {
            for l in &d.lines {
                *rebuilt.entry((d.institution, period.clone(), l.account.clone())).or_default() += l.debit - l.credit;
            }
        }
    }
    let keys: HashSet<&Key> = stored.keys().chain(rebuilt.keys()).collect();
    let mut diffs: Vec<ReplayDiff> = keys
        .into_iter()
        .filter_map(|k| {
            let (s, r) = (stored.get(k).copied().unwrap_or(0), rebuilt.get(k).copied().unwrap_or(0));
            (s != r).then(|| ReplayDiff {
                institution: k.0,
                period: k.1.clone(),
                account: k.2.clone(),
                stored_fen: s,
                rebuilt_fen: r,
            })
        })
        .collect();
    diffs.sort();
    Ok(diffs)
}

#[derive(Debug, Clone)]
pub struct EntryView {
    pub entry: journal_entry::Model,
    pub lines: Vec<journal_line::Model>,
}

/// The journal of a period range, newest first, optionally for one institution.
pub async fn entries(
    state: &AppState,
    ctx: &RequestCtx,
    from: &str,
    to: &str,
    institution: Option<Uuid>,
    limit: u64,
    offset: u64,
) -> AppResult<Vec<EntryView>> {
    use sea_orm::QuerySelect;
    ctx.require(Perm::AccountsRead)?;
    check_range(from, to)?;
    let tx = state.db.begin(ctx).await?;
    let mut q = journal_entry::Entity::find()
        .filter(journal_entry::Column::TenantId.eq(ctx.tenant))
        .filter(journal_entry::Column::Period.gte(from))
        .filter(journal_entry::Column::Period.lte(to));
    if let Some(i) = institution {
        crate::tenancy::service::get_institution(&tx, i).await?;
        q = q.filter(journal_entry::Column::InstitutionId.eq(i));
    }
    let list = q
        .order_by_desc(journal_entry::Column::OccurredAt)
        .order_by_desc(journal_entry::Column::Id)
        .limit(limit)
        .offset(offset)
        .all(&*tx)
        .await?;
    let lines = journal_line::Entity::find()
        .filter(journal_line::Column::TenantId.eq(ctx.tenant))
        .filter(journal_line::Column::EntryId.is_in(list.iter().map(|e| e.id).collect::<Vec<_>>()))
        .all(&*tx)
        .await?;
    tx.rollback().await?;
    let mut by_entry: HashMap<Uuid, Vec<journal_line::Model>> = HashMap::new();
    for l in lines {
        by_entry.entry(l.entry_id).or_default().push(l);
    }
    Ok(list
        .into_iter()
        .map(|e| {
            let mut lines = by_entry.remove(&e.id).unwrap_or_default();
            lines.sort_by_key(|l| (l.credit_fen > 0, l.account_code.clone()));
            EntryView { entry: e, lines }
        })
        .collect())
}

/// The chart as the caller's community uses it.
pub async fn chart_of(state: &AppState, ctx: &RequestCtx) -> AppResult<Chart> {
    if !ctx.can(Perm::AccountsRead) {
        ctx.require(Perm::AccountsConsolidated)?;
    }
    let tx = state.db.begin(ctx).await?;
    let c = chart(&tx).await?;
    tx.rollback().await?;
    Ok(c)
}
