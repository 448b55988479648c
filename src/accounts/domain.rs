//! The chart of accounts and the posting rules: which balanced entries each business event
//! makes. Pure functions, so the rules can be replayed, checked by property tests and explained
//! in `docs/accounts.md`.
//!
//! | event | institution | debit | credit |
//! |---|---|---|---|
//! | billing.charge_posted | the billing one | insurance receivable, patient receivable | outpatient revenue (fees), drug revenue (drugs) |
//! | billing.payment_received | the billing one | cash (cash) or bank (card, mobile) | patient receivable |
//! | billing.refund_issued | the billing one | refunds (contra-revenue) | cash or bank |
//! | pharmacy.dispensed | the dispensing one | drug cost | drug inventory |
//! | pharmacy.transferred | sender | internal receivable (↔ receiver) | drug inventory |
//! |  | receiver | drug inventory | internal payable (↔ sender) |
//! | referrals.completed (up, fee sharing) | receiver | internal expense (↔ referrer) | internal payable (↔ referrer) |
//! |  | referrer | internal receivable (↔ receiver) | internal revenue (↔ receiver) |
//!
//! Money is integer fen; every entry's debits equal its credits.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use uuid::Uuid;

use crate::billing::events::{ChargePosted, PaymentReceived, RefundIssued};
use crate::pharmacy::events::{Dispensed, Transferred};
use crate::platform::clock::china;
use crate::platform::events::{Envelope, Event};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Asset,
    Liability,
    Equity,
    Revenue,
    Expense,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Asset => "asset",
            Self::Liability => "liability",
            Self::Equity => "equity",
            Self::Revenue => "revenue",
            Self::Expense => "expense",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Asset, Self::Liability, Self::Equity, Self::Revenue, Self::Expense].into_iter().find(|k| k.as_str() == s)
    }
}

/// What the posting rules need an account for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Cash,
    Bank,
    InsuranceReceivable,
    PatientReceivable,
    DrugInventory,
    OutpatientRevenue,
    DrugRevenue,
    Refunds,
    DrugCost,
    InternalReceivable,
    InternalPayable,
    InternalRevenue,
    InternalExpense,
}

impl Role {
    pub const ALL: [Role; 13] = [
        Self::Cash,
        Self::Bank,
        Self::InsuranceReceivable,
        Self::PatientReceivable,
        Self::DrugInventory,
        Self::OutpatientRevenue,
        Self::DrugRevenue,
        Self::Refunds,
        Self::DrugCost,
        Self::InternalReceivable,
        Self::InternalPayable,
        Self::InternalRevenue,
        Self::InternalExpense,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cash => "cash",
            Self::Bank => "bank",
            Self::InsuranceReceivable => "insurance_receivable",
            Self::PatientReceivable => "patient_receivable",
            Self::DrugInventory => "drug_inventory",
            Self::OutpatientRevenue => "outpatient_revenue",
            Self::DrugRevenue => "drug_revenue",
            Self::Refunds => "refunds",
            Self::DrugCost => "drug_cost",
            Self::InternalReceivable => "internal_receivable",
            Self::InternalPayable => "internal_payable",
            Self::InternalRevenue => "internal_revenue",
            Self::InternalExpense => "internal_expense",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// The kind of account a role must be.
    pub fn kind(self) -> Kind {
        match self {
            Self::Cash
            | Self::Bank
            | Self::InsuranceReceivable
            | Self::PatientReceivable
            | Self::DrugInventory
            | Self::InternalReceivable => Kind::Asset,
            Self::InternalPayable => Kind::Liability,
            Self::OutpatientRevenue | Self::DrugRevenue | Self::Refunds | Self::InternalRevenue => Kind::Revenue,
            Self::DrugCost | Self::InternalExpense => Kind::Expense,
        }
    }

    /// Internal roles are eliminated in the consolidated statement.
    pub fn internal(self) -> bool {
        matches!(self, Self::InternalReceivable | Self::InternalPayable | Self::InternalRevenue | Self::InternalExpense)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub code: String,
    pub name: String,
    pub name_en: Option<String>,
    pub kind: Kind,
    pub internal: bool,
    pub role: Option<Role>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chart {
    pub accounts: Vec<Account>,
}

impl Default for Chart {
    /// A chart after the hospital accounting system's headings, covering every posting role.
    fn default() -> Self {
        let a = |code: &str, name: &str, en: &str, kind, role: Role| Account {
            code: code.into(),
            name: name.into(),
            name_en: Some(en.into()),
            kind,
            internal: role.internal(),
            role: Some(role),
        };
        Self {
            accounts: vec![
                a("1001", "库存现金", "Cash", Kind::Asset, Role::Cash),
                a("1002", "银行存款", "Bank", Kind::Asset, Role::Bank),
                a("1211", "应收医疗款-医保", "Insurance receivable", Kind::Asset, Role::InsuranceReceivable),
                a("1212", "应收医疗款-患者", "Patient receivable", Kind::Asset, Role::PatientReceivable),
                a("1301", "库存物资-药品", "Drug inventory", Kind::Asset, Role::DrugInventory),
                a("1401", "内部往来-应收", "Internal receivable", Kind::Asset, Role::InternalReceivable),
                a("2401", "内部往来-应付", "Internal payable", Kind::Liability, Role::InternalPayable),
                a("4001", "医疗收入-门诊", "Outpatient revenue", Kind::Revenue, Role::OutpatientRevenue),
                a("4002", "医疗收入-药品", "Drug revenue", Kind::Revenue, Role::DrugRevenue),
                a("4009", "医疗收入-退费", "Refunds (contra-revenue)", Kind::Revenue, Role::Refunds),
                a("4101", "内部服务收入", "Internal revenue", Kind::Revenue, Role::InternalRevenue),
                a("5001", "药品费", "Drug cost", Kind::Expense, Role::DrugCost),
                a("5101", "内部服务支出", "Internal expense", Kind::Expense, Role::InternalExpense),
            ],
        }
    }
}

impl Chart {
    pub fn code(&self, role: Role) -> &str {
        &self.accounts.iter().find(|a| a.role == Some(role)).expect("validated charts map every role").code
    }

    pub fn account(&self, code: &str) -> Option<&Account> {
        self.accounts.iter().find(|a| a.code == code)
    }

    /// Every role mapped exactly once, codes unique.
    pub fn check(&self) -> Result<(), String> {
        let mut codes = std::collections::HashSet::new();
        for a in &self.accounts {
            if !codes.insert(&a.code) {
                return Err(format!("duplicate account code `{}`", a.code));
            }
        }
        for r in Role::ALL {
            let n = self.accounts.iter().filter(|a| a.role == Some(r)).count();
            if n != 1 {
                return Err(format!("role `{}` must be held by exactly one account ({n} do)", r.as_str()));
            }
        }
        for a in &self.accounts {
            if let Some(r) = a.role
                && r.kind() != a.kind
            {
                return Err(format!(
                    "account `{}` holds role `{}`, which needs kind {}",
                    a.code,
                    r.as_str(),
                    r.kind().as_str()
                ));
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub account: String,
    pub debit: i64,
    pub credit: i64,
    /// The billing document the line stands for (a charge), for reconciliation.
    pub source: Option<Uuid>,
}

/// An entry before it is written: one institution's side of one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Draft {
    pub institution: Uuid,
    pub counterparty: Option<Uuid>,
    pub person: Option<Uuid>,
    /// The document posted (bill, payment, refund, prescription, transfer, referral).
    pub source: Option<Uuid>,
    pub description: &'static str,
    pub lines: Vec<Line>,
}

impl Draft {
    pub fn balanced(&self) -> bool {
        self.lines.iter().map(|l| l.debit).sum::<i64>() == self.lines.iter().map(|l| l.credit).sum::<i64>()
            && self.lines.iter().all(|l| l.debit >= 0 && l.credit >= 0)
    }
}

fn dr(account: &str, fen: i64) -> Line {
    Line { account: account.into(), debit: fen, credit: 0, source: None }
}
fn cr(account: &str, fen: i64) -> Line {
    Line { account: account.into(), debit: 0, credit: fen, source: None }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("event {0} cannot be posted: {1}")]
pub struct PostError(pub String, pub String);

fn decode<E: Event>(e: &Envelope) -> Result<E, PostError> {
    e.decode::<E>().map_err(|err| PostError(e.event_type.clone(), err.to_string()))
}

fn money_account(chart: &Chart, method: &str) -> String {
    chart.code(if method == "cash" { Role::Cash } else { Role::Bank }).to_string()
}

/// The event types the ledger posts (with `referrals.completed` for fee sharing).
pub const POSTED: [&str; 5] =
    [ChargePosted::TYPE, PaymentReceived::TYPE, RefundIssued::TYPE, Dispensed::TYPE, Transferred::TYPE];

/// The entries an event makes (none for events the ledger does not follow). Referral fee
/// sharing needs the first visit's revenue, which the caller looks up: see [`fee_share`].
pub fn post(chart: &Chart, e: &Envelope) -> Result<Vec<Draft>, PostError> {
    let drafts = match e.event_type.as_str() {
        ChargePosted::TYPE => vec![charge_entry(chart, decode(e)?).map_err(|m| PostError(e.event_type.clone(), m))?],
        PaymentReceived::TYPE => {
            let ev: PaymentReceived = decode(e)?;
            let lines = vec![
                dr(&money_account(chart, &ev.method), ev.amount_fen),
                cr(chart.code(Role::PatientReceivable), ev.amount_fen),
            ];
            vec![Draft {
                person: Some(ev.person),
                source: Some(ev.payment),
                ..entry(ev.institution, "收款 / payment", lines)
            }]
        }
        RefundIssued::TYPE => {
            let ev: RefundIssued = decode(e)?;
            let lines = vec![
                dr(chart.code(Role::Refunds), ev.amount_fen),
                cr(&money_account(chart, &ev.method), ev.amount_fen),
            ];
            vec![Draft {
                person: Some(ev.person),
                source: Some(ev.refund),
                ..entry(ev.institution, "退费 / refund", lines)
            }]
        }
        Dispensed::TYPE => {
            let ev: Dispensed = decode(e)?;
            let lines =
                vec![dr(chart.code(Role::DrugCost), ev.value_fen), cr(chart.code(Role::DrugInventory), ev.value_fen)];
            let d = entry(ev.institution, "发药成本 / drugs dispensed", lines);
            vec![Draft { person: Some(ev.person), source: Some(ev.prescription), ..d }]
        }
        Transferred::TYPE => transfer_entries(chart, decode(e)?),
        _ => Vec::new(),
    };
    Ok(drafts.into_iter().filter(|d| d.lines.iter().any(|l| l.debit > 0 || l.credit > 0)).collect())
}

/// An entry of one institution with no counterparty, person or source document yet.
fn entry(institution: Uuid, description: &'static str, lines: Vec<Line>) -> Draft {
    Draft { institution, counterparty: None, person: None, source: None, description, lines }
}

/// Charges: receivables (insured and self-paid shares) against drug or outpatient revenue.
fn charge_entry(chart: &Chart, ev: ChargePosted) -> Result<Draft, String> {
    let (ins, own): (i64, i64) =
        (ev.charges.iter().map(|c| c.insurance_fen).sum(), ev.charges.iter().map(|c| c.self_pay_fen).sum());
    let mut lines = Vec::new();
    if ins > 0 {
        lines.push(dr(chart.code(Role::InsuranceReceivable), ins));
    }
    if own > 0 {
        lines.push(dr(chart.code(Role::PatientReceivable), own));
    }
    for c in &ev.charges {
        if c.insurance_fen + c.self_pay_fen != c.amount_fen {
            return Err("a charge's shares do not add up to its amount".into());
        }
        let role = if c.kind == "drug" { Role::DrugRevenue } else { Role::OutpatientRevenue };
        lines.push(Line { source: Some(c.charge), ..cr(chart.code(role), c.amount_fen) });
    }
    let d = entry(ev.institution, "门诊收费 / outpatient charges", lines);
    Ok(Draft { person: Some(ev.person), source: Some(ev.bill), ..d })
}

/// A transfer between members: out of one pharmacy against an internal receivable, into the
/// other against an internal payable, each naming the other as counterparty.
fn transfer_entries(chart: &Chart, ev: Transferred) -> Vec<Draft> {
    let (from, to, value) = (ev.from_institution, ev.to_institution, ev.value_fen);
    let out = vec![dr(chart.code(Role::InternalReceivable), value), cr(chart.code(Role::DrugInventory), value)];
    let into = vec![dr(chart.code(Role::DrugInventory), value), cr(chart.code(Role::InternalPayable), value)];
    vec![
        Draft {
            counterparty: Some(to),
            source: Some(ev.transfer),
            ..entry(from, "药品调拨出库 / drugs transferred out", out)
        },
        Draft {
            counterparty: Some(from),
            source: Some(ev.transfer),
            ..entry(to, "药品调拨入库 / drugs transferred in", into)
        },
    ]
}

/// Referral fee sharing: the receiver pays the referrer `share_fen` of the first visit's revenue.
pub fn fee_share(
    chart: &Chart,
    receiver: Uuid,
    referrer: Uuid,
    referral: Uuid,
    person: Option<Uuid>,
    share_fen: i64,
) -> Vec<Draft> {
    if share_fen <= 0 {
        return Vec::new();
    }
    vec![
        Draft {
            institution: receiver,
            counterparty: Some(referrer),
            person,
            source: Some(referral),
            description: "转诊分成支出 / referral fee share paid",
            lines: vec![
                dr(chart.code(Role::InternalExpense), share_fen),
                cr(chart.code(Role::InternalPayable), share_fen),
            ],
        },
        Draft {
            institution: referrer,
            counterparty: Some(receiver),
            person,
            source: Some(referral),
            description: "转诊分成收入 / referral fee share earned",
            lines: vec![
                dr(chart.code(Role::InternalReceivable), share_fen),
                cr(chart.code(Role::InternalRevenue), share_fen),
            ],
        },
    ]
}

/// Share in basis points of an amount, rounded down.
pub fn share_of(amount_fen: i64, basis_points: i64) -> i64 {
    amount_fen.saturating_mul(basis_points) / 10_000
}

/// Accounting periods and days follow China Standard Time.
pub fn period_of(t: DateTime<Utc>) -> String {
    china(t).format("%Y-%m").to_string()
}

/// `2026-11` → `2026-12`.
pub fn next_period(p: &str) -> String {
    let (y, m): (i32, u32) = (p[..4].parse().unwrap_or(2000), p[5..].parse().unwrap_or(1));
    if m == 12 { format!("{}-01", y + 1) } else { format!("{y}-{:02}", m + 1) }
}

/// A month `YYYY-MM` of the years 1900 to 2200 (`platform::dates::period`).
pub fn valid_period(p: &str) -> bool {
    crate::platform::dates::period("period", p).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn env(event_type: &str, payload: serde_json::Value) -> Envelope {
        Envelope {
            id: Uuid::now_v7(),
            event_type: event_type.into(),
            version: 1,
            tenant: Uuid::nil(),
            occurred_at: Utc::now(),
            actor: None,
            aggregate: Uuid::nil(),
            payload,
        }
    }

    #[test]
    fn the_default_chart_maps_every_role_once() {
        Chart::default().check().unwrap();
        let mut c = Chart::default();
        c.accounts.pop();
        assert!(c.check().unwrap_err().contains("internal_expense"));
    }

    #[test]
    fn periods() {
        let t = DateTime::parse_from_rfc3339("2026-11-30T17:00:00Z").unwrap().with_timezone(&Utc);
        assert_eq!(period_of(t), "2026-12", "01:00 on 1 December in China");
        assert_eq!(next_period("2026-12"), "2027-01");
        assert!(valid_period("2026-11") && !valid_period("2026-13") && !valid_period("26-11"));
    }

    #[test]
    fn a_charge_whose_shares_do_not_add_up_is_refused() {
        let e = env(
            "billing.charge_posted",
            json!({"bill": Uuid::nil(), "encounter": Uuid::nil(), "institution": Uuid::nil(), "person": Uuid::nil(),
                   "posted_at": Utc::now(), "total_fen": 100, "insurance_fen": 50, "self_pay_fen": 60, "drug_fen": 0,
                   "charges": [{"charge": Uuid::nil(), "kind": "fee", "item_code": "X", "quantity": 1,
                                "amount_fen": 100, "insurance_category": "A", "insurance_fen": 50, "self_pay_fen": 60}]}),
        );
        let err = post(&Chart::default(), &e).unwrap_err();
        assert!(err.1.contains("do not add up"), "{err}");
        let partial = env("billing.charge_posted", json!({"institution": Uuid::nil(), "charges": []}));
        let err = post(&Chart::default(), &partial).unwrap_err();
        assert!(err.1.contains("unreadable"), "a payload missing fields is refused, never read as zero: {err}");
    }
}
