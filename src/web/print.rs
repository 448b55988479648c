//! Print views: the prescription (处方笺, A5), the receipt (收费票据, A5) and the referral slip
//! (转诊单, A4), each headed with the institution's name. They are pages of their own, without
//! the menu or forms, laid out for paper by the print stylesheet (`@page` sizes in `app.css`);
//! a toolbar that does not print goes back or opens the browser's print dialogue.
//!
//! They read through the same services as the pages they come from, so the same permissions and
//! the same audit rows apply (a printed prescription is a read of the visit).

use askama::Template;
use chrono::Utc;
use poem::http::StatusCode;
use poem::web::{Data, Path};
use poem::{Request, Response, handler};
use uuid::Uuid;

use super::clinic::{Out, finish, yuan};
use super::referrals::{Case, Row, case_of, institution_names, row, when};
use super::{Locale, Page, render, signed_in};
use crate::patients::service::{self as patients, PersonView};
use crate::platform::AppError;
use crate::platform::clock::{china, china_date};
use crate::platform::codes;
use crate::platform::state::AppState;
use crate::referrals::domain::Direction;

/// Who a sheet is about, as every sheet heads it.
pub struct Patient {
    pub name: String,
    pub sex: String,
    pub age: String,
    /// The record number at the printing institution, when registered there.
    pub mrn: String,
}

fn patient_of(l: Locale, p: &PersonView, here: Uuid) -> Patient {
    let age = patients::age_on(p.birth_date, p.birth_year, china_date(Utc::now()));
    Patient {
        name: p.name.clone(),
        sex: p.sex.as_deref().map(|s| l.t(&format!("sex-{s}"))).unwrap_or_default(),
        age: age.map(|a| l.t_with("case-age", &[("years", a.to_string())])).unwrap_or_default(),
        mrn: p.registrations.iter().find(|r| r.institution_id == here).map(|r| r.mrn.clone()).unwrap_or_default(),
    }
}

/// A short serial for a sheet, from the record's id (the full id stays out of paper).
fn serial(id: Uuid) -> String {
    id.simple().to_string()[..10].to_uppercase()
}

pub struct RxLine {
    pub drug: String,
    pub quantity: String,
    pub usage: String,
}

pub struct RxSheet {
    pub serial: String,
    pub chronic: bool,
    pub written: String,
    pub prescriber: String,
    pub lines: Vec<RxLine>,
    pub amount: String,
}

#[derive(Template)]
#[template(path = "print_rx.html", config = "src/web/askama.toml")]
struct RxPrint {
    l: Locale,
    institution: String,
    back: String,
    patient: Patient,
    diagnoses: Vec<String>,
    sheets: Vec<RxSheet>,
}

fn visit_id(id: &str) -> Result<Uuid, (AppError, String)> {
    Uuid::parse_str(id).map_err(|_| (AppError::new(codes::PAGE_NOT_FOUND, "no such page"), "/app/clinic".to_string()))
}

/// The visit's prescriptions, one A5 sheet each.
#[handler]
pub async fn prescription(req: &Request, state: Data<&AppState>, id: Path<String>) -> Response {
    let p = signed_in!(req, &state);
    let l = p.l;
    finish(l, prescription_sheet(&state, p, &id.0).await)
}

async fn prescription_sheet(state: &AppState, p: Page, id: &str) -> Out {
    let l = p.l;
    let id = visit_id(id)?;
    let back = format!("/app/visits/{id}");
    let err = |e: AppError| (e, back.clone());
    let v = crate::visit::service::encounter(state, &p.ctx, id).await.map_err(err)?;
    if v.prescriptions.is_empty() {
        return Err(err(AppError::new(codes::PRESCRIPTION_NOT_FOUND, "the visit has no prescription")));
    }
    let person = patients::get(state, &p.ctx, v.encounter.person_id).await.map_err(err)?;
    let prescribers: Vec<Uuid> = v.prescriptions.iter().map(|x| x.prescription.prescriber_id).collect();
    let names = names_of(state, &p, &prescribers).await.map_err(err)?;
    let sheets = v
        .prescriptions
        .iter()
        .map(|pv| {
            let rx = &pv.prescription;
            let lines: Vec<RxLine> = pv.lines.iter().map(|x| rx_line(l, x)).collect();
            let fen: i64 = pv.lines.iter().map(|x| x.line.unit_price_fen * x.line.quantity).sum();
            RxSheet {
                serial: serial(rx.id),
                chronic: rx.chronic,
                written: when(rx.created_at),
                prescriber: names.get(&rx.prescriber_id).cloned().unwrap_or_default(),
                lines,
                amount: yuan(fen),
            }
        })
        .collect();
    let page = RxPrint {
        institution: p.institution_name.clone(),
        back,
        patient: patient_of(l, &person, p.ctx.institution),
        diagnoses: v.diagnoses.iter().map(|d| super::clinic::diagnosis_line(l, d)).collect(),
        sheets,
        l,
    };
    Ok(render(StatusCode::OK, &page))
}

fn rx_line(l: Locale, x: &crate::pharmacy::service::PrescribedLine) -> RxLine {
    let (line, drug) = (&x.line, &x.drug);
    let name = if l == Locale::En { drug.name_en.clone().unwrap_or(drug.name.clone()) } else { drug.name.clone() };
    let strength = if l == Locale::En && !drug.strength.is_ascii() { "" } else { drug.strength.as_str() };
    let frequency = l.t(&format!("freq-{}", line.frequency));
    RxLine {
        drug: format!("{name} {strength}").trim().to_string(),
        quantity: format!("{} {}", line.quantity, unit_label(l, &drug.unit)),
        usage: l.t_with(
            "print-rx-usage",
            &[
                ("dose", line.dose.to_string()),
                ("unit", unit_label(l, &line.dose_unit)),
                ("frequency", frequency),
                ("days", line.days.to_string()),
            ],
        ),
    }
}

/// A dispensing unit as the sheet's language names it: tenant files give them in Chinese.
fn unit_label(l: Locale, unit: &str) -> String {
    let en = match unit {
        "片" => "tab",
        "粒" => "cap",
        "袋" => "sachet",
        "支" => "tube",
        "瓶" => "bottle",
        "盒" => "box",
        "丸" => "pill",
        "贴" => "patch",
        _ => unit,
    };
    if l == Locale::En { en.to_string() } else { unit.to_string() }
}

async fn names_of(
    state: &AppState,
    p: &Page,
    ids: &[Uuid],
) -> Result<std::collections::HashMap<Uuid, String>, AppError> {
    let tx = state.db.begin(&p.ctx).await?;
    let names = crate::identity::service::display_names(&tx, ids).await?;
    tx.rollback().await?;
    Ok(names)
}

pub struct ReceiptLine {
    pub item: String,
    pub quantity: String,
    pub amount: String,
}

pub struct ReceiptPayment {
    pub receipt_no: String,
    pub at: String,
    pub method: String,
    pub amount: String,
    pub cashier: String,
}

#[derive(Template)]
#[template(path = "print_receipt.html", config = "src/web/askama.toml")]
struct ReceiptPrint {
    l: Locale,
    institution: String,
    back: String,
    serial: String,
    patient: Patient,
    lines: Vec<ReceiptLine>,
    total: String,
    insurance: String,
    self_pay: String,
    paid: String,
    owed: String,
    settled: bool,
    payments: Vec<ReceiptPayment>,
}

/// The visit's bill as a receipt: charges, what insurance and the patient pay, each payment with
/// its receipt number. A bill with nothing paid yet has no receipt to print.
#[handler]
pub async fn receipt(req: &Request, state: Data<&AppState>, id: Path<String>) -> Response {
    let p = signed_in!(req, &state);
    let l = p.l;
    finish(l, receipt_sheet(&state, p, &id.0).await)
}

async fn receipt_sheet(state: &AppState, p: Page, id: &str) -> Out {
    let l = p.l;
    let id = visit_id(id)?;
    let back = format!("/app/visits/{id}");
    let err = |e: AppError| (e, back.clone());
    let v = crate::visit::service::encounter(state, &p.ctx, id).await.map_err(err)?;
    let Some(b) = v.bill.as_ref().filter(|b| !b.payments.is_empty()) else {
        return Err(err(AppError::new(codes::PAYMENT_NOT_FOUND, "nothing has been paid on this visit")));
    };
    let person = patients::get(state, &p.ctx, v.encounter.person_id).await.map_err(err)?;
    let formulary = crate::pharmacy::service::formulary(state, &p.ctx, None).await.map_err(err)?;
    let fees = crate::billing::service::fee_schedule(state, &p.ctx).await.map_err(err)?;
    let english = super::clinic::english_names(l, &formulary, &fees);
    let cashiers: Vec<Uuid> = b.payments.iter().map(|x| x.cashier_id).collect();
    let names = names_of(state, &p, &cashiers).await.map_err(err)?;
    let page = ReceiptPrint {
        institution: p.institution_name.clone(),
        back,
        serial: serial(b.bill.id),
        patient: patient_of(l, &person, p.ctx.institution),
        lines: b
            .charges
            .iter()
            .map(|c| ReceiptLine {
                item: super::clinic::charge_label(c, &english),
                quantity: c.quantity.to_string(),
                amount: yuan(c.amount_fen),
            })
            .collect(),
        total: yuan(b.bill.total_fen),
        insurance: yuan(b.bill.total_fen - b.bill.self_pay_fen),
        self_pay: yuan(b.bill.self_pay_fen),
        paid: yuan(b.bill.paid_fen),
        owed: yuan(b.owed_fen()),
        settled: b.owed_fen() <= 0,
        payments: b
            .payments
            .iter()
            .map(|x| ReceiptPayment {
                receipt_no: x.receipt_no.clone(),
                at: china(x.paid_at).format("%Y-%m-%d %H:%M").to_string(),
                method: l.t(&format!("pay-{}", x.method)),
                amount: yuan(x.amount_fen),
                cashier: names.get(&x.cashier_id).cloned().unwrap_or_default(),
            })
            .collect(),
        l,
    };
    Ok(render(StatusCode::OK, &page))
}

#[derive(Template)]
#[template(path = "print_referral.html", config = "src/web/askama.toml")]
struct ReferralPrint {
    l: Locale,
    institution: String,
    back: String,
    serial: String,
    title: String,
    row: Row,
    case: Case,
    from: String,
    to: String,
    written: String,
    doctor: String,
    /// The text of the tear-off receipt (转诊回执) the receiving institution returns.
    tear_off: String,
}

/// The referral slip the patient carries, A4, with a receipt slip to tear off and return.
#[handler]
pub async fn referral(req: &Request, state: Data<&AppState>, id: Path<String>) -> Response {
    let p = signed_in!(req, &state);
    let l = p.l;
    finish(l, referral_sheet(&state, p, &id.0).await)
}

async fn referral_sheet(state: &AppState, p: Page, id: &str) -> Out {
    let l = p.l;
    let no_such = || (AppError::new(codes::REFERRAL_NOT_FOUND, "no such referral"), "/app/referrals".to_string());
    let id = Uuid::parse_str(id).map_err(|_| no_such())?;
    let back = format!("/app/referrals/{id}");
    let err = |e: AppError| (e, back.clone());
    let v = crate::referrals::service::get(state, &p.ctx, id).await.map_err(err)?;
    let names = institution_names(state, &p).await.map_err(err)?;
    let doctors = names_of(state, &p, &[v.referral.created_by]).await.map_err(err)?;
    let r = &v.referral;
    let sender = r.from_institution == p.ctx.institution;
    let from = names.get(&r.from_institution).cloned().unwrap_or_default();
    let to = r
        .to_institution
        .and_then(|t| names.get(&t).cloned())
        .or_else(|| r.external_hospital.clone())
        .unwrap_or_default();
    let title = match r.direction {
        Direction::Down => l.t("print-referral-down"),
        _ => l.t("print-referral-up"),
    };
    let tear_off = l.t_with(
        "print-referral-tear-off-text",
        &[("patient", v.person_name.clone()), ("from", from.clone()), ("serial", serial(r.id))],
    );
    let page = ReferralPrint {
        institution: from.clone(),
        back,
        serial: serial(r.id),
        title,
        row: row(l, &v, sender, &names),
        case: case_of(l, &v, false),
        from,
        to,
        written: when(r.requested_at.unwrap_or(r.created_at)),
        doctor: doctors.get(&r.created_by).cloned().unwrap_or_default(),
        tear_off,
        l,
    };
    Ok(render(StatusCode::OK, &page))
}
