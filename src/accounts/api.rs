//! Accounts API: the chart, the journal, trial balances, the consolidated statement with its
//! eliminations, income statements, a patient's statement across the community, reconciliation
//! against billing, and period close.

use chrono::{DateTime, NaiveDate, Utc};
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use uuid::Uuid;

use super::domain::{Chart, period_of};
use super::entity::{journal_line, ledger_period};
use super::service::{self, BalanceRow, Consolidated, Difference, EntryView, IncomeStatement, PatientStatement};
use crate::identity::ctx::Auth;
use crate::platform::AppError;
use crate::platform::api_tags::ApiTags;
use crate::platform::state::AppState;

#[derive(Object, Debug)]
pub struct LedgerAccountDto {
    pub code: String,
    pub name: String,
    #[oai(skip_serializing_if_is_none)]
    pub name_en: Option<String>,
    /// asset, liability, equity, revenue or expense
    pub kind: String,
    /// Internal accounts are eliminated in the consolidated statement
    pub internal: bool,
    /// What the posting rules use the account for
    #[oai(skip_serializing_if_is_none)]
    pub role: Option<String>,
}

fn chart_dto(c: Chart) -> Vec<LedgerAccountDto> {
    c.accounts
        .into_iter()
        .map(|a| LedgerAccountDto {
            code: a.code,
            name: a.name,
            name_en: a.name_en,
            kind: a.kind.as_str().into(),
            internal: a.internal,
            role: a.role.map(|r| r.as_str().into()),
        })
        .collect()
}

#[derive(Object, Debug)]
pub struct BalanceRowDto {
    pub account: String,
    pub name: String,
    pub kind: String,
    pub debit_fen: i64,
    pub credit_fen: i64,
    /// Debit minus credit
    pub balance_fen: i64,
}

impl From<BalanceRow> for BalanceRowDto {
    fn from(r: BalanceRow) -> Self {
        Self {
            account: r.account,
            name: r.name,
            kind: r.kind.as_str().into(),
            debit_fen: r.debit_fen,
            credit_fen: r.credit_fen,
            balance_fen: r.balance_fen,
        }
    }
}

#[derive(Object, Debug)]
pub struct TrialBalanceDto {
    pub from: String,
    pub to: String,
    /// Absent for the whole community (before eliminations)
    #[oai(skip_serializing_if_is_none)]
    pub institution_id: Option<Uuid>,
    pub rows: Vec<BalanceRowDto>,
    pub debit_fen: i64,
    pub credit_fen: i64,
    /// Debits equal credits
    pub balanced: bool,
}

#[derive(Object, Debug)]
pub struct ConsolidatedLineDto {
    pub account: String,
    pub name: String,
    pub kind: String,
    /// Sum of every member institution's balance (debit minus credit)
    pub gross_fen: i64,
    /// The elimination of internal balances between members
    pub elimination_fen: i64,
    pub consolidated_fen: i64,
}

#[derive(Object, Debug)]
pub struct InternalPairDto {
    pub institution_id: Uuid,
    pub counterparty_id: Uuid,
    pub receivable_fen: i64,
    pub payable_fen: i64,
    pub revenue_fen: i64,
    pub expense_fen: i64,
}

#[derive(Object, Debug)]
pub struct ConsolidatedDto {
    pub from: String,
    pub to: String,
    pub lines: Vec<ConsolidatedLineDto>,
    /// Internal balances between each pair of members (empty for bureau officials)
    pub internal: Vec<InternalPairDto>,
    /// Internal balances one side posted and the other did not: left after elimination
    pub unmatched_fen: i64,
    pub revenue_fen: i64,
    pub expense_fen: i64,
    pub surplus_fen: i64,
}

impl From<Consolidated> for ConsolidatedDto {
    fn from(c: Consolidated) -> Self {
        Self {
            from: c.from,
            to: c.to,
            lines: c
                .lines
                .into_iter()
                .map(|l| ConsolidatedLineDto {
                    account: l.account,
                    name: l.name,
                    kind: l.kind.as_str().into(),
                    gross_fen: l.gross_fen,
                    elimination_fen: l.elimination_fen,
                    consolidated_fen: l.consolidated_fen,
                })
                .collect(),
            internal: c
                .internal
                .into_iter()
                .map(|p| InternalPairDto {
                    institution_id: p.institution,
                    counterparty_id: p.counterparty,
                    receivable_fen: p.receivable_fen,
                    payable_fen: p.payable_fen,
                    revenue_fen: p.revenue_fen,
                    expense_fen: p.expense_fen,
                })
                .collect(),
            unmatched_fen: c.unmatched_fen,
            revenue_fen: c.revenue_fen,
            expense_fen: c.expense_fen,
            surplus_fen: c.surplus_fen,
        }
    }
}

#[derive(Object, Debug)]
pub struct IncomeStatementDto {
    pub institution_id: Uuid,
    pub institution_name: String,
    pub revenue: Vec<BalanceRowDto>,
    pub expense: Vec<BalanceRowDto>,
    /// Credits net of debits over revenue accounts (refunds included)
    pub revenue_fen: i64,
    pub expense_fen: i64,
    pub surplus_fen: i64,
}

impl From<IncomeStatement> for IncomeStatementDto {
    fn from(s: IncomeStatement) -> Self {
        Self {
            institution_id: s.institution,
            institution_name: s.name,
            revenue: s.revenue.into_iter().map(Into::into).collect(),
            expense: s.expense.into_iter().map(Into::into).collect(),
            revenue_fen: s.revenue_fen,
            expense_fen: s.expense_fen,
            surplus_fen: s.surplus_fen,
        }
    }
}

#[derive(Object, Debug)]
pub struct PatientLineDto {
    pub occurred_at: DateTime<Utc>,
    pub institution_id: Uuid,
    pub institution_name: String,
    pub description: String,
    /// The patient's share of what was charged
    pub patient_fen: i64,
    pub insurance_fen: i64,
    /// Paid by the patient (negative for a refund)
    pub paid_fen: i64,
}

#[derive(Object, Debug)]
pub struct PatientStatementDto {
    pub person_id: Uuid,
    /// First period of the lines (YYYY-MM); absent for every period
    pub from: Option<String>,
    /// Last period of the lines (YYYY-MM); absent for every period
    pub to: Option<String>,
    /// What the patient owed before `from` (charged less paid)
    pub opening_balance_fen: i64,
    pub lines: Vec<PatientLineDto>,
    pub charged_fen: i64,
    pub insurance_fen: i64,
    pub paid_fen: i64,
    /// What the patient still owes across every institution
    pub balance_fen: i64,
}

impl From<PatientStatement> for PatientStatementDto {
    fn from(s: PatientStatement) -> Self {
        Self {
            person_id: s.person,
            from: s.from,
            to: s.to,
            opening_balance_fen: s.opening_balance_fen,
            lines: s
                .lines
                .into_iter()
                .map(|l| PatientLineDto {
                    occurred_at: l.occurred_at,
                    institution_id: l.institution,
                    institution_name: l.institution_name,
                    description: l.description,
                    patient_fen: l.patient_fen,
                    insurance_fen: l.insurance_fen,
                    paid_fen: l.paid_fen,
                })
                .collect(),
            charged_fen: s.charged_fen,
            insurance_fen: s.insurance_fen,
            paid_fen: s.paid_fen,
            balance_fen: s.balance_fen,
        }
    }
}

#[derive(Object, Debug)]
pub struct ReconciliationDifferenceDto {
    /// missing_in_ledger, amount_differs or extra_in_ledger
    pub kind: String,
    /// charge, payment or refund
    pub document: String,
    pub document_id: Uuid,
    pub billing_fen: i64,
    pub ledger_fen: i64,
    /// The event that should have posted the document, or that did
    #[oai(skip_serializing_if_is_none)]
    pub event_id: Option<Uuid>,
}

impl From<Difference> for ReconciliationDifferenceDto {
    fn from(d: Difference) -> Self {
        Self {
            kind: d.kind.into(),
            document: d.document.into(),
            document_id: d.document_id,
            billing_fen: d.billing_fen,
            ledger_fen: d.ledger_fen,
            event_id: d.event_id,
        }
    }
}

#[derive(Object, Debug)]
pub struct InstitutionReconciliationDto {
    pub institution_id: Uuid,
    pub differences: Vec<ReconciliationDifferenceDto>,
}

#[derive(Object, Debug)]
pub struct ReconciliationDto {
    /// The day, China Standard Time
    pub day: NaiveDate,
    pub institutions: Vec<InstitutionReconciliationDto>,
    /// True when every institution's billing equals its ledger
    pub reconciled: bool,
}

#[derive(Object, Debug)]
pub struct LedgerPeriodDto {
    /// YYYY-MM
    pub period: String,
    pub status: String,
    #[oai(skip_serializing_if_is_none)]
    pub closed_at: Option<DateTime<Utc>>,
    #[oai(skip_serializing_if_is_none)]
    pub closed_by: Option<Uuid>,
}

impl From<ledger_period::Model> for LedgerPeriodDto {
    fn from(p: ledger_period::Model) -> Self {
        Self { period: p.period, status: p.status, closed_at: p.closed_at, closed_by: p.closed_by }
    }
}

#[derive(Object, Debug)]
pub struct ClosePeriodRequest {
    /// The month to close, YYYY-MM
    #[oai(validator(min_length = 7, max_length = 7))]
    pub period: String,
}

#[derive(Object, Debug)]
pub struct JournalLineDto {
    pub account: String,
    pub debit_fen: i64,
    pub credit_fen: i64,
    #[oai(skip_serializing_if_is_none)]
    pub source_id: Option<Uuid>,
}

impl From<journal_line::Model> for JournalLineDto {
    fn from(l: journal_line::Model) -> Self {
        Self { account: l.account_code, debit_fen: l.debit_fen, credit_fen: l.credit_fen, source_id: l.source_id }
    }
}

#[derive(Object, Debug)]
pub struct JournalEntryDto {
    pub id: Uuid,
    pub institution_id: Uuid,
    /// The period the entry posted to
    pub period: String,
    /// The event the entry was posted from
    pub event_id: Uuid,
    pub event_type: String,
    #[oai(skip_serializing_if_is_none)]
    pub source_id: Option<Uuid>,
    #[oai(skip_serializing_if_is_none)]
    pub person_id: Option<Uuid>,
    /// The other member institution of an internal entry
    #[oai(skip_serializing_if_is_none)]
    pub counterparty_id: Option<Uuid>,
    pub description: String,
    pub occurred_at: DateTime<Utc>,
    pub posted_at: DateTime<Utc>,
    /// Set when the event belonged to a closed period and posted to this one instead
    #[oai(skip_serializing_if_is_none)]
    pub late_from_period: Option<String>,
    pub lines: Vec<JournalLineDto>,
}

impl From<EntryView> for JournalEntryDto {
    fn from(v: EntryView) -> Self {
        let e = v.entry;
        Self {
            id: e.id,
            institution_id: e.institution_id,
            period: e.period,
            event_id: e.event_id,
            event_type: e.event_type,
            source_id: e.source_id,
            person_id: e.person_id,
            counterparty_id: e.counterparty_id,
            description: e.description,
            occurred_at: e.occurred_at,
            posted_at: e.posted_at,
            late_from_period: e.late_from_period,
            lines: v.lines.into_iter().map(Into::into).collect(),
        }
    }
}

#[derive(ApiResponse)]
pub enum ChartResponse {
    #[oai(status = 200)]
    Ok(Json<Vec<LedgerAccountDto>>),
}
#[derive(ApiResponse)]
pub enum TrialBalanceResponse {
    #[oai(status = 200)]
    Ok(Json<TrialBalanceDto>),
}
#[derive(ApiResponse)]
pub enum ConsolidatedResponse {
    #[oai(status = 200)]
    Ok(Json<ConsolidatedDto>),
}
#[derive(ApiResponse)]
pub enum IncomeResponse {
    #[oai(status = 200)]
    Ok(Json<Vec<IncomeStatementDto>>),
}
#[derive(ApiResponse)]
pub enum PatientStatementResponse {
    #[oai(status = 200)]
    Ok(Json<PatientStatementDto>),
}
#[derive(ApiResponse)]
pub enum ReconciliationResponse {
    #[oai(status = 200)]
    Ok(Json<ReconciliationDto>),
}
#[derive(ApiResponse)]
pub enum PeriodsResponse {
    #[oai(status = 200)]
    Ok(Json<Vec<LedgerPeriodDto>>),
}
#[derive(ApiResponse)]
pub enum PeriodResponse {
    #[oai(status = 200)]
    Ok(Json<LedgerPeriodDto>),
}
#[derive(ApiResponse)]
pub enum EntriesResponse {
    #[oai(status = 200)]
    Ok(Json<Vec<JournalEntryDto>>),
}

/// `from` and `to` default to the current month (China Standard Time).
fn range(from: Option<String>, to: Option<String>) -> (String, String) {
    let now = period_of(Utc::now());
    let from = from.unwrap_or_else(|| now.clone());
    let to = to.unwrap_or_else(|| from.clone().max(now));
    (from, to)
}

fn hundred() -> u64 {
    100
}

pub struct AccountsApi;

#[OpenApi(prefix_path = "/api/v1/accounts", tag = "ApiTags::Accounts")]
impl AccountsApi {
    /// The community's chart of accounts
    #[oai(path = "/chart", method = "get", operation_id = "accounts_chart")]
    async fn chart(&self, state: Data<&AppState>, auth: Auth) -> Result<ChartResponse, AppError> {
        Ok(ChartResponse::Ok(Json(chart_dto(service::chart_of(&state, &auth.0).await?))))
    }

    /// Journal entries of a period range (YYYY-MM, default this month), newest first
    #[oai(path = "/entries", method = "get", operation_id = "accounts_entries")]
    #[allow(clippy::too_many_arguments)] // poem-openapi takes each query parameter as an argument
    async fn entries(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        from: Query<Option<String>>,
        to: Query<Option<String>>,
        institution_id: Query<Option<Uuid>>,
        #[oai(default = "hundred", validator(minimum(value = "1"), maximum(value = "500")))] limit: Query<u64>,
        #[oai(default, validator(maximum(value = "1000000")))] offset: Query<u64>,
    ) -> Result<EntriesResponse, AppError> {
        let (from, to) = range(from.0, to.0);
        let list = service::entries(&state, &auth.0, &from, &to, institution_id.0, limit.0, offset.0).await?;
        Ok(EntriesResponse::Ok(Json(list.into_iter().map(Into::into).collect())))
    }

    /// Trial balance of one institution, or of the whole community before eliminations
    #[oai(path = "/trial-balance", method = "get", operation_id = "accounts_trial_balance")]
    async fn trial_balance(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        from: Query<Option<String>>,
        to: Query<Option<String>>,
        institution_id: Query<Option<Uuid>>,
    ) -> Result<TrialBalanceResponse, AppError> {
        let (from, to) = range(from.0, to.0);
        let rows = service::trial_balance(&state, &auth.0, &from, &to, institution_id.0).await?;
        let (debit, credit) = (rows.iter().map(|r| r.debit_fen).sum(), rows.iter().map(|r| r.credit_fen).sum());
        Ok(TrialBalanceResponse::Ok(Json(TrialBalanceDto {
            from,
            to,
            institution_id: institution_id.0,
            rows: rows.into_iter().map(Into::into).collect(),
            debit_fen: debit,
            credit_fen: credit,
            balanced: debit == credit,
        })))
    }

    /// The consolidated statement: members' balances summed, internal receivables and payables
    /// and internal revenue and expense eliminated, the elimination shown on every line
    #[oai(path = "/consolidated", method = "get", operation_id = "accounts_consolidated")]
    async fn consolidated(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        from: Query<Option<String>>,
        to: Query<Option<String>>,
    ) -> Result<ConsolidatedResponse, AppError> {
        let (from, to) = range(from.0, to.0);
        Ok(ConsolidatedResponse::Ok(Json(service::consolidated(&state, &auth.0, &from, &to).await?.into())))
    }

    /// Income statement of every institution with entries in the range
    #[oai(path = "/income-statements", method = "get", operation_id = "accounts_income_statements")]
    async fn income(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        from: Query<Option<String>>,
        to: Query<Option<String>>,
    ) -> Result<IncomeResponse, AppError> {
        let (from, to) = range(from.0, to.0);
        let list = service::income_statements(&state, &auth.0, &from, &to).await?;
        Ok(IncomeResponse::Ok(Json(list.into_iter().map(Into::into).collect())))
    }

    /// A patient's account across every institution of the community (audited): every period,
    /// or the periods `from`..`to` (YYYY-MM) with the balance owed before them
    #[oai(path = "/patients/:id/statement", method = "get", operation_id = "accounts_patient_statement")]
    async fn patient(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        id: Path<Uuid>,
        from: Query<Option<String>>,
        to: Query<Option<String>>,
    ) -> Result<PatientStatementResponse, AppError> {
        // Only `to`: everything up to it.
        let from = if from.0.is_none() && to.0.is_some() { Some("1900-01".to_string()) } else { from.0 };
        let range = (from.is_some() || to.0.is_some()).then(|| range(from, to.0));
        let range = range.as_ref().map(|(f, t)| (f.as_str(), t.as_str()));
        Ok(PatientStatementResponse::Ok(Json(service::patient_statement(&state, &auth.0, id.0, range).await?.into())))
    }

    /// Billing against the ledger for one day (China Standard Time, default today), per
    /// institution; every difference named with its document and event
    #[oai(path = "/reconciliation", method = "get", operation_id = "accounts_reconciliation")]
    async fn reconciliation(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        day: Query<Option<NaiveDate>>,
        institution_id: Query<Option<Uuid>>,
    ) -> Result<ReconciliationResponse, AppError> {
        let day = day.0.unwrap_or_else(|| crate::platform::clock::china_date(Utc::now()));
        let result = service::reconcile(&state, &auth.0, institution_id.0, day).await?;
        let reconciled = result.iter().all(|r| r.differences.is_empty());
        Ok(ReconciliationResponse::Ok(Json(ReconciliationDto {
            day,
            reconciled,
            institutions: result
                .into_iter()
                .map(|r| InstitutionReconciliationDto {
                    institution_id: r.institution,
                    differences: r.differences.into_iter().map(Into::into).collect(),
                })
                .collect(),
        })))
    }

    /// Accounting periods that have been closed
    #[oai(path = "/periods", method = "get", operation_id = "accounts_periods")]
    async fn periods(&self, state: Data<&AppState>, auth: Auth) -> Result<PeriodsResponse, AppError> {
        Ok(PeriodsResponse::Ok(Json(service::periods(&state, &auth.0).await?.into_iter().map(Into::into).collect())))
    }

    /// Close a past month: nothing posts into it any more; late events post to the next open
    /// period with a reference back
    #[oai(path = "/periods/close", method = "post", operation_id = "accounts_close_period")]
    async fn close(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        body: Json<ClosePeriodRequest>,
    ) -> Result<PeriodResponse, AppError> {
        Ok(PeriodResponse::Ok(Json(service::close_period(&state, &auth.0, &body.0.period).await?.into())))
    }
}
