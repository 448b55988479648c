//! Chronic-disease management use cases: enroll a person in a registry, record follow-ups (with
//! the referral rule proposing a draft up-referral), the worklists of an institution or a doctor
//! for a day, the CSV export, a year's management status, and the enrollment suggestions that
//! closed encounters raise (the `followups.suggest` consumer).
//!
//! A registry belongs to the responsible institution: its staff see and follow up its patients;
//! anyone elsewhere gets 404.

use std::collections::HashMap;

use chrono::NaiveDate;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder,
    QuerySelect, Set,
};
use serde_json::json;
use uuid::Uuid;

use super::domain::{
    Category, Classification, Disease, EnrollmentStatus, Flag, Measures, YearStatus, category, check, danger,
    default_next, flag, kpi_controlled, measured_control, next_streak, week_end, year_status,
};
use super::entity::{enrollment, enrollment_suggestion, followup_visit};
use crate::clinical::events::EncounterClosed;
use crate::identity::ctx::{Perm, RequestCtx};
use crate::patients::service::Contact;
use crate::platform::audit::Purpose;
use crate::platform::codes::{self, Code};
use crate::platform::consumers::Handler;
use crate::platform::events::{Envelope, Event};
use crate::platform::state::AppState;
use crate::platform::{AppError, AppResult, Tx};

/// Today in China (dates of visits and plans are China dates), by the application's clock.
pub fn today(state: &AppState) -> NaiveDate {
    state.clock.china_today()
}

/// The tenant's follow-up interval in days: `[settings.followups] interval_days`, quarterly
/// (90) by default.
pub async fn interval_days(tx: &Tx) -> AppResult<i32> {
    let t = crate::tenancy::service::get_tenant(&**tx, tx.tenant()).await?;
    Ok(t.settings
        .get("followups")
        .and_then(|f| f.get("interval_days"))
        .and_then(|v| v.as_i64())
        .and_then(|v| i32::try_from(v).ok())
        .filter(|v| (7..=366).contains(v))
        .unwrap_or(90))
}

fn unprocessable(code: Code, field: &'static str, message: impl Into<String>) -> AppError {
    AppError::new(code, message).with_details(json!({ "field": field }))
}

fn not_in_future(today: NaiveDate, day: NaiveDate, field: &'static str) -> AppResult<()> {
    if day > today {
        return Err(unprocessable(codes::DATE_IN_FUTURE, field, format!("{field} cannot be later than today")));
    }
    Ok(())
}

pub struct EnrollInput {
    pub person_id: Uuid,
    pub disease: Disease,
    pub diagnosed_on: NaiveDate,
    pub diagnosis_code: Option<String>,
    /// Defaults to the caller.
    pub doctor_id: Option<Uuid>,
    /// Defaults to today (back-entry of a paper registry sets it).
    pub enrolled_on: Option<NaiveDate>,
    /// Defaults to the tenant's interval.
    pub interval_days: Option<i32>,
}

/// Enrolls a person registered here in a registry; the first follow-up falls due one interval
/// after enrollment. One active enrollment per person and disease in the whole community.
pub async fn enroll(state: &AppState, ctx: &RequestCtx, input: EnrollInput) -> AppResult<enrollment::Model> {
    ctx.require(Perm::FollowupWrite)?;
    let Checked { enrolled_on, code, doctor } = check_enrollment(today(state), ctx, &input)?;
    let mut tx = state.db.begin(ctx).await?;
    if !crate::patients::service::registered_at(&tx, input.person_id, ctx.institution).await? {
        return Err(AppError::new(codes::PERSON_NOT_FOUND, "no such person registered at your institution"));
    }
    refuse_second_enrollment(&tx, ctx, input.person_id, input.disease).await?;
    let interval = match input.interval_days {
        Some(i) => i,
        None => interval_days(&tx).await?,
    };
    let now = crate::platform::clock::now();
    let row = enrollment::ActiveModel {
        tenant_id: Set(ctx.tenant),
        id: Set(Uuid::now_v7()),
        person_id: Set(input.person_id),
        disease: Set(input.disease),
        diagnosis_code: Set(code),
        diagnosed_on: Set(input.diagnosed_on),
        institution_id: Set(ctx.institution),
        doctor_id: Set(doctor),
        enrolled_on: Set(enrolled_on),
        enrolled_by: Set(ctx.user),
        interval_days: Set(interval),
        next_due: Set(crate::platform::dates::add_days(enrolled_on, i64::from(interval))),
        visits: Set(0),
        last_visit_on: Set(None),
        last_classification: Set(None),
        uncontrolled_streak: Set(0),
        flag: Set(None),
        flagged_at: Set(None),
        referral_id: Set(None),
        status: Set(EnrollmentStatus::Active),
        closed_on: Set(None),
        close_reason: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(&*tx)
    .await?;
    // The suggestions this enrollment answers.
    enrollment_suggestion::Entity::update_many()
        .col_expr(enrollment_suggestion::Column::Status, "enrolled".into())
        .col_expr(enrollment_suggestion::Column::ResolvedAt, now.into())
        .filter(enrollment_suggestion::Column::TenantId.eq(ctx.tenant))
        .filter(enrollment_suggestion::Column::PersonId.eq(input.person_id))
        .filter(enrollment_suggestion::Column::Disease.eq(input.disease.as_str()))
        .filter(enrollment_suggestion::Column::Status.eq("open"))
        .exec(&*tx)
        .await?;
    let event = super::events::Enrolled {
        enrollment: row.id,
        person: row.person_id,
        institution: row.institution_id,
        doctor: row.doctor_id,
        disease: row.disease,
        diagnosed_on: row.diagnosed_on,
        enrolled_on: row.enrolled_on,
        next_due: row.next_due,
    };
    tx.emit(Some(ctx.user), row.id, &event).await?;
    tx.audit(ctx.audit("followups.enroll", "enrollment", Purpose::Treatment).resource(row.id).subject(row.person_id));
    tx.commit().await?;
    Ok(row)
}

/// What an enrollment's input comes to once checked.
struct Checked {
    enrolled_on: NaiveDate,
    code: Option<String>,
    doctor: Uuid,
}

/// Dates not in the future and in order, a diagnosis code of the registry, a plausible interval
/// and a responsible clinician of this institution.
fn check_enrollment(today: NaiveDate, ctx: &RequestCtx, input: &EnrollInput) -> AppResult<Checked> {
    not_in_future(today, input.diagnosed_on, "diagnosed_on")?;
    crate::platform::dates::past("diagnosed_on", input.diagnosed_on, today)?;
    let enrolled_on = input.enrolled_on.unwrap_or(today);
    not_in_future(today, enrolled_on, "enrolled_on")?;
    crate::platform::dates::past("enrolled_on", enrolled_on, today)?;
    if enrolled_on < input.diagnosed_on {
        return Err(unprocessable(codes::DATE_INVALID, "enrolled_on", "enrollment cannot precede the diagnosis"));
    }
    let code = match input.diagnosis_code.as_deref().map(str::trim).filter(|c| !c.is_empty()) {
        Some(c) if Disease::of_icd(c) != Some(input.disease) => {
            return Err(unprocessable(
                codes::DIAGNOSIS_CODE_INVALID,
                "diagnosis_code",
                format!("{c} is not a code of the {} registry", input.disease.as_str()),
            ));
        }
        Some(c) => Some(c.to_ascii_uppercase()),
        None => None,
    };
    if let Some(i) = input.interval_days
        && !(7..=366).contains(&i)
    {
        return Err(unprocessable(codes::INTERVAL_INVALID, "interval_days", "the interval is 7 to 366 days"));
    }
    let doctor = input.doctor_id.unwrap_or(ctx.user);
    if !ctx.user_can_in(doctor, Perm::FollowupWrite, ctx.institution) {
        return Err(unprocessable(
            codes::DOCTOR_INVALID,
            "doctor_id",
            "the responsible doctor must be a clinician of this institution",
        ));
    }
    Ok(Checked { enrolled_on, code, doctor })
}

/// 409 `already_enrolled` if the person has an active enrollment in the registry anywhere in
/// the community (naming it only when it is this institution's).
async fn refuse_second_enrollment(tx: &Tx, ctx: &RequestCtx, person: Uuid, disease: Disease) -> AppResult<()> {
    let existing = enrollment::Entity::find()
        .filter(enrollment::Column::TenantId.eq(ctx.tenant))
        .filter(enrollment::Column::PersonId.eq(person))
        .filter(enrollment::Column::Disease.eq(disease))
        .filter(enrollment::Column::Status.eq(EnrollmentStatus::Active))
        .one(&**tx)
        .await?;
    let Some(e) = existing else { return Ok(()) };
    let here = e.institution_id == ctx.institution;
    Err(AppError::new(
        codes::ALREADY_ENROLLED,
        if here {
            "this person is already in that registry here"
        } else {
            "this person is already in that registry at another institution of the community"
        },
    )
    .with_details(if here { json!({ "enrollment_id": e.id }) } else { json!({}) }))
}

/// An enrollment of the caller's institution; 404 `enrollment_not_found` otherwise (another
/// institution's registry is not there for the caller).
async fn own_enrollment(tx: &Tx, ctx: &RequestCtx, id: Uuid, lock: bool) -> AppResult<enrollment::Model> {
    let mut q = enrollment::Entity::find_by_id((ctx.tenant, id));
    if lock && tx.get_database_backend() == sea_orm::DbBackend::Postgres {
        q = q.lock_exclusive();
    }
    q.one(&**tx)
        .await?
        .filter(|e| e.institution_id == ctx.institution)
        .ok_or_else(|| AppError::new(codes::ENROLLMENT_NOT_FOUND, "no such enrollment at your institution"))
}

pub struct VisitInput {
    pub visit_on: NaiveDate,
    pub measures: Measures,
    pub symptoms: Vec<String>,
    /// `regular`, `intermittent` or `none`
    pub adherence: String,
    pub smoking_per_day: Option<i32>,
    /// `light`, `moderate` or `heavy`
    pub salt: Option<String>,
    pub exercise_minutes_per_week: Option<i32>,
    /// Defaults to what the measurements say.
    pub classification: Option<Classification>,
    /// Defaults to one interval ahead when controlled, two weeks otherwise.
    pub next_on: Option<NaiveDate>,
    pub notes: Option<String>,
}

/// A recorded follow-up and what it changed.
pub struct Recorded {
    pub visit: followup_visit::Model,
    pub enrollment: enrollment::Model,
    /// Set when this follow-up proposed an up-referral (a new draft, or the open one reused).
    pub referral_id: Option<Uuid>,
    pub flag: Option<Flag>,
}

fn check_visit(today: NaiveDate, disease: Disease, input: &VisitInput) -> AppResult<()> {
    check(disease, &input.measures).map_err(|e| unprocessable(e.code, e.field, e.message))?;
    not_in_future(today, input.visit_on, "visit_on")?;
    crate::platform::dates::past("visit_on", input.visit_on, today)?;
    crate::platform::dates::optional("next_on", input.next_on, today, crate::platform::dates::planned)?;
    if input.symptoms.len() > 20 || input.symptoms.iter().any(|s| s.trim().is_empty() || s.chars().count() > 50) {
        return Err(unprocessable(codes::TEXT_INVALID, "symptoms", "up to 20 symptoms of 1 to 50 characters"));
    }
    if !["regular", "intermittent", "none"].contains(&input.adherence.as_str()) {
        return Err(unprocessable(codes::VALUE_INVALID, "adherence", "adherence is regular, intermittent or none"));
    }
    if input.salt.as_deref().is_some_and(|s| !["light", "moderate", "heavy"].contains(&s)) {
        return Err(unprocessable(codes::VALUE_INVALID, "salt", "salt is light, moderate or heavy"));
    }
    if input.smoking_per_day.is_some_and(|n| !(0..=200).contains(&n)) {
        return Err(unprocessable(codes::VALUE_OUT_OF_RANGE, "smoking_per_day", "cigarettes per day are 0 to 200"));
    }
    if input.exercise_minutes_per_week.is_some_and(|n| !(0..=7 * 24 * 60).contains(&n)) {
        return Err(unprocessable(
            codes::VALUE_OUT_OF_RANGE,
            "exercise_minutes_per_week",
            "minutes in a week are 0 to 10080",
        ));
    }
    if input.notes.as_deref().is_some_and(|n| n.chars().count() > 2000) {
        return Err(unprocessable(codes::TEXT_INVALID, "notes", "notes are at most 2000 characters"));
    }
    if let Some(next) = input.next_on
        && (next <= input.visit_on || next > crate::platform::dates::add_days(input.visit_on, 366))
    {
        return Err(unprocessable(
            codes::NEXT_DATE_INVALID,
            "next_on",
            "the next follow-up is within a year after this one",
        ));
    }
    Ok(())
}

/// A danger value as a referral letter says it.
fn danger_zh(code: &str) -> &'static str {
    match code {
        "systolic_180" => "收缩压≥180 mmHg",
        "diastolic_110" => "舒张压≥110 mmHg",
        "glucose_16_7" => "空腹血糖≥16.7 mmol/L",
        _ => "危急值",
    }
}

fn referral_reason(disease: Disease, f: Flag, m: &Measures, dangers: &[&str]) -> String {
    let mut values = Vec::new();
    if let (Some(s), Some(d)) = (m.systolic, m.diastolic) {
        values.push(format!("血压 {s}/{d} mmHg"));
    }
    if let Some(g) = m.glucose {
        values.push(format!("空腹血糖 {g:.1} mmol/L"));
    }
    let why = match f {
        Flag::Danger => {
            format!("随访发现危急值（{}）", dangers.iter().map(|d| danger_zh(d)).collect::<Vec<_>>().join("、"))
        }
        Flag::UncontrolledTwice => "连续两次随访控制不满意".to_string(),
        Flag::Complication => "出现新的并发症或原有并发症加重".to_string(),
    };
    format!("{}患者{}，{}，建议上级医院诊治。", disease.label_zh(), why, values.join("，"))
}

/// A follow-up checked and worked out, ready to be written: how it classifies, whether it flags
/// the patient, and when the next one is due. Made by [`plan_visit`], written by
/// [`write_visit`]; between the two the `escalation` workflow drafts the up-referral a flag asks
/// for.
pub struct VisitPlan {
    enrollment: enrollment::Model,
    disease: Disease,
    input: VisitInput,
    classification: Classification,
    streak: i32,
    dangers: Vec<&'static str>,
    flagged: Option<Flag>,
    next_on: NaiveDate,
}

/// What a flagged follow-up asks of referrals: a draft up-referral with this reason, reusing the
/// enrollment's open draft if it still is one.
pub struct ReferralRequest {
    pub person: Uuid,
    pub open_draft: Option<Uuid>,
    pub reason: String,
    pub urgent: bool,
}

impl VisitPlan {
    /// The up-referral this follow-up proposes: `None` unless it flags the patient (a danger
    /// value, the second uncontrolled follow-up in a row, or a complication).
    pub fn referral_request(&self) -> Option<ReferralRequest> {
        let f = self.flagged?;
        Some(ReferralRequest {
            person: self.enrollment.person_id,
            open_draft: self.enrollment.referral_id,
            reason: referral_reason(self.disease, f, &self.input.measures, &self.dangers),
            urgent: f.urgent(),
        })
    }
}

/// Checks a follow-up of an enrollment of the caller's institution (locked for the rest of the
/// transaction) and works out what it means.
pub async fn plan_visit(
    state: &AppState,
    ctx: &RequestCtx,
    tx: &Tx,
    id: Uuid,
    input: VisitInput,
) -> AppResult<VisitPlan> {
    let e = own_enrollment(tx, ctx, id, true).await?;
    let disease = e.disease;
    check_visit(today(state), disease, &input)?;
    check_sequence(&e, input.visit_on)?;
    let contact = crate::patients::service::contacts_of(tx, ctx, &state.pii, &[e.person_id]).await?;
    let age = contact.get(&e.person_id).and_then(|c| c.age_on(input.visit_on));
    let measured = measured_control(disease, &input.measures, age);
    let classification = input.classification.unwrap_or(measured);
    if classification == Classification::Controlled && measured != Classification::Controlled {
        return Err(unprocessable(
            codes::CLASSIFICATION_INCONSISTENT,
            "classification",
            "the measurements are above target; the follow-up cannot be classified as controlled",
        ));
    }
    let dangers = danger(&input.measures);
    let streak = next_streak(e.uncontrolled_streak, classification);
    let flagged = flag(classification, streak, &dangers);
    let next_on = input.next_on.unwrap_or_else(|| default_next(input.visit_on, classification, e.interval_days));
    Ok(VisitPlan { enrollment: e, disease, input, classification, streak, dangers, flagged, next_on })
}

/// An open enrollment takes one follow-up a day, in date order, none before the diagnosis.
fn check_sequence(e: &enrollment::Model, visit_on: NaiveDate) -> AppResult<()> {
    if e.status != EnrollmentStatus::Active {
        return Err(AppError::new(codes::ENROLLMENT_CLOSED, "this enrollment is closed"));
    }
    if visit_on < e.diagnosed_on {
        return Err(unprocessable(codes::DATE_INVALID, "visit_on", "a follow-up cannot precede the diagnosis"));
    }
    match e.last_visit_on {
        Some(last) if visit_on == last => {
            Err(AppError::new(codes::FOLLOWUP_EXISTS, "a follow-up is already recorded for that day"))
        }
        Some(last) if visit_on < last => Err(unprocessable(
            codes::FOLLOWUP_OUT_OF_ORDER,
            "visit_on",
            "a follow-up cannot be dated before the last one recorded",
        )),
        _ => Ok(()),
    }
}

/// Writes a planned follow-up and what it changes in the enrollment: the visit row, the counts,
/// the flag and the next due date, with its event and audit row. `referral` is the draft the
/// follow-up proposed, if any.
pub async fn write_visit(
    tx: &mut Tx,
    ctx: &RequestCtx,
    plan: VisitPlan,
    referral: Option<Uuid>,
) -> AppResult<Recorded> {
    let VisitPlan { enrollment: e, disease, input, classification, streak, dangers, flagged, next_on } = plan;
    let now = crate::platform::clock::now();
    let visit = followup_visit::ActiveModel {
        tenant_id: Set(ctx.tenant),
        id: Set(Uuid::now_v7()),
        enrollment_id: Set(e.id),
        person_id: Set(e.person_id),
        institution_id: Set(ctx.institution),
        doctor_id: Set(ctx.user),
        visit_on: Set(input.visit_on),
        systolic: Set(input.measures.systolic),
        diastolic: Set(input.measures.diastolic),
        glucose: Set(input.measures.glucose),
        symptoms: Set(json!(input.symptoms.iter().map(|s| s.trim()).collect::<Vec<_>>())),
        adherence: Set(input.adherence.clone()),
        smoking_per_day: Set(input.smoking_per_day),
        salt: Set(input.salt.clone()),
        exercise_minutes_per_week: Set(input.exercise_minutes_per_week),
        classification: Set(classification),
        danger: Set(!dangers.is_empty()),
        danger_reasons: Set(json!(dangers)),
        next_on: Set(next_on),
        referral_id: Set(referral),
        notes: Set(input.notes.as_deref().map(str::trim).filter(|n| !n.is_empty()).map(str::to_owned)),
        recorded_by: Set(ctx.user),
        recorded_at: Set(now),
    }
    .insert(&**tx)
    .await?;
    let mut am = e.into_active_model();
    am.visits = Set(am.visits.clone().unwrap() + 1);
    am.last_visit_on = Set(Some(input.visit_on));
    am.last_classification = Set(Some(classification));
    am.uncontrolled_streak = Set(streak);
    am.next_due = Set(next_on);
    am.flag = Set(flagged);
    am.flagged_at = Set(flagged.map(|_| now));
    if referral.is_some() {
        am.referral_id = Set(referral);
    }
    am.updated_at = Set(now);
    let e = am.update(&**tx).await?;
    let event = super::events::VisitRecorded {
        enrollment: e.id,
        visit: visit.id,
        person: e.person_id,
        institution: e.institution_id,
        disease: e.disease,
        visit_on: visit.visit_on,
        classification: visit.classification,
        controlled: classification == Classification::Controlled,
        danger: visit.danger,
        flag: e.flag,
        referral,
        next_on,
        visits: e.visits,
        kpi_controlled: kpi_controlled(disease, &input.measures),
    };
    tx.emit(Some(ctx.user), e.id, &event).await?;
    tx.audit(ctx.audit("followups.visit", "enrollment", Purpose::Treatment).resource(e.id).subject(e.person_id));
    Ok(Recorded { visit, enrollment: e, referral_id: referral, flag: flagged })
}

pub struct EnrollmentView {
    pub enrollment: enrollment::Model,
    pub person: Contact,
    pub doctor_name: String,
    pub visits: Vec<followup_visit::Model>,
}

async fn views(
    tx: &Tx,
    ctx: &RequestCtx,
    state: &AppState,
    rows: Vec<enrollment::Model>,
) -> AppResult<Vec<EnrollmentRow>> {
    let persons: Vec<Uuid> = rows.iter().map(|e| e.person_id).collect();
    let doctors: Vec<Uuid> = rows.iter().map(|e| e.doctor_id).collect();
    let contacts = crate::patients::service::contacts_of(tx, ctx, &state.pii, &persons).await?;
    let names = crate::identity::service::display_names(tx, &doctors).await?;
    Ok(rows
        .into_iter()
        .map(|e| {
            let c = contacts.get(&e.person_id).cloned().unwrap_or(Contact {
                name: String::new(),
                sex: None,
                birth_date: None,
                birth_year: None,
                phone: None,
            });
            let doctor_name = names.get(&e.doctor_id).cloned().unwrap_or_default();
            EnrollmentRow { enrollment: e, person: c, doctor_name }
        })
        .collect())
}

/// An enrollment with its patient's contact details and the responsible doctor's name.
pub struct EnrollmentRow {
    pub enrollment: enrollment::Model,
    pub person: Contact,
    pub doctor_name: String,
}

pub async fn get(state: &AppState, ctx: &RequestCtx, id: Uuid) -> AppResult<EnrollmentView> {
    ctx.require(Perm::FollowupRead)?;
    let mut tx = state.db.begin(ctx).await?;
    let e = own_enrollment(&tx, ctx, id, false).await?;
    let visits = followup_visit::Entity::find()
        .filter(followup_visit::Column::TenantId.eq(ctx.tenant))
        .filter(followup_visit::Column::EnrollmentId.eq(id))
        .order_by_asc(followup_visit::Column::VisitOn)
        .all(&*tx)
        .await?;
    let EnrollmentRow { enrollment, person, doctor_name } = views(&tx, ctx, state, vec![e]).await?.remove(0);
    tx.audit(ctx.audit("followups.read", "enrollment", Purpose::Treatment).resource(id).subject(enrollment.person_id));
    tx.commit().await?;
    Ok(EnrollmentView { enrollment, person, doctor_name, visits })
}

pub struct ListQuery {
    /// Only this person's enrollments (the patient page lists them).
    pub person: Option<Uuid>,
    pub disease: Option<Disease>,
    pub doctor: Option<Uuid>,
    pub include_closed: bool,
    /// Only patients flagged for an up-referral (danger value, uncontrolled twice, complication).
    pub flagged_only: bool,
    pub limit: u64,
    pub offset: u64,
}

/// The institution's registry (optionally one doctor's patients, one disease), newest first.
pub async fn list(state: &AppState, ctx: &RequestCtx, q: ListQuery) -> AppResult<Vec<EnrollmentRow>> {
    ctx.require(Perm::FollowupRead)?;
    let mut tx = state.db.begin(ctx).await?;
    let mut s = enrollment::Entity::find()
        .filter(enrollment::Column::TenantId.eq(ctx.tenant))
        .filter(enrollment::Column::InstitutionId.eq(ctx.institution));
    if let Some(person) = q.person {
        s = s.filter(enrollment::Column::PersonId.eq(person));
    }
    if let Some(d) = q.disease {
        s = s.filter(enrollment::Column::Disease.eq(d.as_str()));
    }
    if let Some(d) = q.doctor {
        s = s.filter(enrollment::Column::DoctorId.eq(d));
    }
    if !q.include_closed {
        s = s.filter(enrollment::Column::Status.eq(EnrollmentStatus::Active));
    }
    if q.flagged_only {
        s = s.filter(enrollment::Column::Flag.is_not_null());
    }
    let rows = s
        .order_by_desc(enrollment::Column::EnrolledOn)
        .order_by_desc(enrollment::Column::Id)
        .limit(q.limit)
        .offset(q.offset)
        .all(&*tx)
        .await?;
    let out = views(&tx, ctx, state, rows).await?;
    ctx.audit_reads(&mut tx, "followups.list", Purpose::Treatment, out.iter().map(|r| r.enrollment.person_id));
    tx.commit().await?;
    Ok(out)
}

pub struct WorklistQuery {
    pub as_of: NaiveDate,
    pub doctor: Option<Uuid>,
    pub disease: Option<Disease>,
    pub category: Option<Category>,
    pub limit: u64,
    pub offset: u64,
}

pub struct WorkItem {
    pub enrollment: enrollment::Model,
    pub person: Contact,
    pub doctor_name: String,
    pub category: Category,
    /// Days past due on `as_of` (0 when not overdue).
    pub days_overdue: i64,
}

pub struct Worklist {
    pub as_of: NaiveDate,
    pub week_end: NaiveDate,
    /// Every category's size (before `category`, `limit` and `offset`), and how many are flagged.
    pub counts: HashMap<Category, usize>,
    pub flagged: usize,
    /// Of the never followed up, those whose first follow-up is already overdue.
    pub never_late: usize,
    pub total: usize,
    pub items: Vec<WorkItem>,
}

/// The worklist's sizes: each category, the flagged, and the never followed up whose first
/// follow-up is already late (they are on the list as never followed up, and overdue too).
struct Sizes {
    counts: HashMap<Category, usize>,
    flagged: usize,
    never_late: usize,
}

#[derive(Debug, sea_orm::FromQueryResult)]
struct CategoryCount {
    category: String,
    n: i64,
    flagged: i64,
}

/// The worklist of the caller's institution (or one doctor's) for day `as_of`: overdue first
/// (longest overdue first), then due this week, then enrolled and never followed up, each by
/// due date. Categories, counts and the page are worked out in the database, so a request costs
/// what its page holds, not what the registry holds.
pub async fn worklist(state: &AppState, ctx: &RequestCtx, q: WorklistQuery) -> AppResult<Worklist> {
    worklist_audited(state, ctx, q, "followups.worklist").await
}

/// The worklist, with one audit row under `action` for each patient on the page.
async fn worklist_audited(
    state: &AppState,
    ctx: &RequestCtx,
    q: WorklistQuery,
    action: &'static str,
) -> AppResult<Worklist> {
    ctx.require(Perm::FollowupRead)?;
    crate::platform::dates::plausible("as_of", q.as_of, today(state))?;
    let end = week_end(q.as_of);
    let mut tx = state.db.begin(ctx).await?;
    let Sizes { counts, flagged, never_late } = category_sizes(&tx, ctx, &q, end).await?;
    let total = match q.category {
        Some(c) => counts[&c],
        None => counts.values().sum(),
    };
    let rows = worklist_page(&tx, ctx, &q, end).await?;
    let viewed = views(&tx, ctx, state, rows).await?;
    ctx.audit_reads(&mut tx, action, Purpose::Treatment, viewed.iter().map(|r| r.enrollment.person_id));
    tx.commit().await?;
    let items = viewed
        .into_iter()
        .filter_map(|r| {
            let c = category(r.enrollment.next_due, r.enrollment.visits, q.as_of)?;
            Some(WorkItem {
                category: c,
                days_overdue: (q.as_of - r.enrollment.next_due).num_days().max(0),
                enrollment: r.enrollment,
                person: r.person,
                doctor_name: r.doctor_name,
            })
        })
        .collect();
    Ok(Worklist { as_of: q.as_of, week_end: end, counts, flagged, never_late, total, items })
}

/// One pass over the scope's active enrollments: each category's size, and the flagged patients
/// (a referral proposed) whenever they are due.
async fn category_sizes(tx: &Tx, ctx: &RequestCtx, q: &WorklistQuery, end: NaiveDate) -> AppResult<Sizes> {
    let mut sql = String::from(
        "SELECT CASE WHEN visits = 0 AND next_due < ? THEN 'never_late' WHEN visits = 0 THEN 'never_followed_up'
                     WHEN next_due < ? THEN 'overdue' WHEN next_due <= ? THEN 'due_this_week' ELSE 'later' END AS category,
                CAST(COUNT(*) AS BIGINT) AS n,
                CAST(SUM(CASE WHEN flag IS NOT NULL THEN 1 ELSE 0 END) AS BIGINT) AS flagged
           FROM chronic_enrollments
          WHERE tenant_id = ? AND institution_id = ? AND status = ?",
    );
    let mut values: Vec<sea_orm::Value> = vec![
        q.as_of.into(),
        q.as_of.into(),
        end.into(),
        ctx.tenant.into(),
        ctx.institution.into(),
        EnrollmentStatus::Active.as_str().into(),
    ];
    if let Some(d) = q.doctor {
        sql.push_str(" AND doctor_id = ?");
        values.push(d.into());
    }
    if let Some(d) = q.disease {
        sql.push_str(" AND disease = ?");
        values.push(d.as_str().into());
    }
    sql.push_str(" GROUP BY 1");
    let sizes: Vec<CategoryCount> = crate::platform::db::query_all(tx, &sql, values).await?;
    let mut counts: HashMap<Category, usize> = Category::ALL.iter().map(|c| (*c, 0)).collect();
    let mut never_late = 0;
    // 'later' (due after this week) is counted by the query but is on no list.
    for c in &sizes {
        let cat = if c.category == "never_late" {
            never_late = c.n as usize;
            Some(Category::NeverFollowedUp)
        } else {
            Category::parse(&c.category)
        };
        if let Some(cat) = cat {
            *counts.entry(cat).or_default() += c.n as usize;
        }
    }
    let flagged = sizes.iter().map(|c| c.flagged).sum::<i64>() as usize;
    Ok(Sizes { counts, flagged, never_late })
}

/// The page: the category's rule as a condition, the list's order (overdue longest first, then
/// due this week, then never followed up, each by due date) as a sort.
async fn worklist_page(
    tx: &Tx,
    ctx: &RequestCtx,
    q: &WorklistQuery,
    end: NaiveDate,
) -> AppResult<Vec<enrollment::Model>> {
    use enrollment::Column as C;
    let due = |c: Category| -> Condition {
        match c {
            Category::Overdue => Condition::all().add(C::Visits.gt(0)).add(C::NextDue.lt(q.as_of)),
            Category::DueThisWeek => {
                Condition::all().add(C::Visits.gt(0)).add(C::NextDue.gte(q.as_of)).add(C::NextDue.lte(end))
            }
            Category::NeverFollowedUp => Condition::all().add(C::Visits.eq(0)),
        }
    };
    let wanted = match q.category {
        Some(c) => due(c),
        None => Category::ALL.iter().fold(Condition::any(), |any, c| any.add(due(*c))),
    };
    let mut page = enrollment::Entity::find()
        .filter(C::TenantId.eq(ctx.tenant))
        .filter(C::InstitutionId.eq(ctx.institution))
        .filter(C::Status.eq(EnrollmentStatus::Active))
        .filter(wanted);
    if let Some(d) = q.doctor {
        page = page.filter(C::DoctorId.eq(d));
    }
    if let Some(d) = q.disease {
        page = page.filter(C::Disease.eq(d));
    }
    // Dates are compared as ISO text on SQLite and as dates on PostgreSQL; the literal is a
    // formatted date, never caller text.
    let rank =
        format!("CASE WHEN visits = 0 THEN 2 WHEN next_due < '{}' THEN 0 ELSE 1 END", q.as_of.format("%Y-%m-%d"));
    Ok(page
        .order_by_asc(sea_orm::sea_query::Expr::cust(rank))
        .order_by_asc(C::NextDue)
        .order_by_asc(C::Id)
        .offset(q.offset)
        .limit(q.limit)
        .all(&**tx)
        .await?)
}

fn sex_zh(s: Option<&str>) -> &'static str {
    match s {
        Some("male") => "男",
        Some("female") => "女",
        _ => "",
    }
}

/// The worklist as CSV for Excel: UTF-8 with a byte-order mark, Chinese headers, one row per
/// patient. The export is audited (`followups.export`, one row per patient in it), as it takes
/// patient data out of the system.
pub async fn worklist_csv(state: &AppState, ctx: &RequestCtx, q: WorklistQuery) -> AppResult<Vec<u8>> {
    let list = worklist_audited(state, ctx, q, "followups.export").await?;
    // The export itself, even of an empty list (the rows above name each patient in it).
    let mut tx = state.db.begin(ctx).await?;
    tx.audit(ctx.audit("followups.export", "worklist", Purpose::Treatment).resource(ctx.institution));
    tx.commit().await?;
    const HEADER: [&str; 13] = [
        "类别",
        "姓名",
        "性别",
        "年龄",
        "联系电话",
        "病种",
        "责任医生",
        "下次随访日期",
        "逾期天数",
        "末次随访日期",
        "随访次数",
        "末次随访评价",
        "标记",
    ];
    let mut rows: Vec<Vec<String>> = vec![HEADER.iter().map(|h| h.to_string()).collect()];
    for i in &list.items {
        let e = &i.enrollment;
        let row = [
            i.category.label_zh().to_string(),
            i.person.name.clone(),
            sex_zh(i.person.sex.as_deref()).to_string(),
            i.person.age_on(list.as_of).map(|a| a.to_string()).unwrap_or_default(),
            i.person.phone.clone().unwrap_or_default(),
            e.disease.label_zh().to_string(),
            i.doctor_name.clone(),
            e.next_due.to_string(),
            i.days_overdue.to_string(),
            e.last_visit_on.map(|d| d.to_string()).unwrap_or_default(),
            e.visits.to_string(),
            e.last_classification.map(|c| c.label_zh()).unwrap_or("").into(),
            match e.flag.map(Flag::as_str) {
                Some("danger") => "危急值，建议转诊",
                Some("uncontrolled_twice") => "连续两次控制不满意，建议转诊",
                Some("complication") => "并发症，建议转诊",
                _ => "",
            }
            .to_string(),
        ];
        rows.push(row.to_vec());
    }
    Ok(crate::platform::csv::document(rows))
}

/// A year's management status of one enrollment.
pub async fn status(state: &AppState, ctx: &RequestCtx, id: Uuid, year: i32) -> AppResult<YearStatus> {
    let view = get(state, ctx, id).await?;
    let visits: Vec<(NaiveDate, Classification)> = view.visits.iter().map(|v| (v.visit_on, v.classification)).collect();
    Ok(year_status(year, &visits))
}

/// Closes an enrollment (moved away, died, diagnosis revised): it leaves the worklists.
pub async fn close(state: &AppState, ctx: &RequestCtx, id: Uuid, reason: &str) -> AppResult<enrollment::Model> {
    ctx.require(Perm::FollowupWrite)?;
    if !["moved", "died", "misdiagnosed", "other"].contains(&reason) {
        return Err(unprocessable(codes::VALUE_INVALID, "reason", "the reason is moved, died, misdiagnosed or other"));
    }
    let mut tx = state.db.begin(ctx).await?;
    let e = own_enrollment(&tx, ctx, id, true).await?;
    if e.status != EnrollmentStatus::Active {
        return Err(AppError::new(codes::ENROLLMENT_CLOSED, "this enrollment is already closed"));
    }
    let person = e.person_id;
    let mut am = e.into_active_model();
    am.status = Set(EnrollmentStatus::Closed);
    am.closed_on = Set(Some(today(state)));
    am.close_reason = Set(Some(reason.into()));
    am.updated_at = Set(crate::platform::clock::now());
    let e = am.update(&*tx).await?;
    let event = super::events::Closed {
        enrollment: e.id,
        person,
        institution: e.institution_id,
        disease: e.disease,
        reason: reason.to_string(),
        enrolled_on: e.enrolled_on,
        closed_on: e.closed_on,
    };
    tx.emit(Some(ctx.user), e.id, &event).await?;
    tx.audit(ctx.audit("followups.close", "enrollment", Purpose::Treatment).resource(id).subject(person));
    tx.commit().await?;
    Ok(e)
}

/// Open enrollment suggestions at the caller's institution, newest first.
/// An open suggestion to enroll a person, with the person's name.
pub struct SuggestionRow {
    pub suggestion: enrollment_suggestion::Model,
    pub person_name: String,
}

pub async fn suggestions(state: &AppState, ctx: &RequestCtx) -> AppResult<Vec<SuggestionRow>> {
    ctx.require(Perm::FollowupRead)?;
    let mut tx = state.db.begin(ctx).await?;
    let rows = enrollment_suggestion::Entity::find()
        .filter(enrollment_suggestion::Column::TenantId.eq(ctx.tenant))
        .filter(enrollment_suggestion::Column::InstitutionId.eq(ctx.institution))
        .filter(enrollment_suggestion::Column::Status.eq("open"))
        .order_by_desc(enrollment_suggestion::Column::CreatedAt)
        .limit(500)
        .all(&*tx)
        .await?;
    let names = crate::patients::service::names_of(&tx, &rows.iter().map(|s| s.person_id).collect::<Vec<_>>()).await?;
    ctx.audit_reads(&mut tx, "followups.suggestions", Purpose::Treatment, rows.iter().map(|s| s.person_id));
    tx.commit().await?;
    Ok(rows
        .into_iter()
        .map(|s| SuggestionRow { person_name: names.get(&s.person_id).cloned().unwrap_or_default(), suggestion: s })
        .collect())
}

pub async fn dismiss_suggestion(state: &AppState, ctx: &RequestCtx, id: Uuid) -> AppResult<()> {
    ctx.require(Perm::FollowupWrite)?;
    let mut tx = state.db.begin(ctx).await?;
    let s = enrollment_suggestion::Entity::find_by_id((ctx.tenant, id))
        .one(&*tx)
        .await?
        .filter(|s| s.institution_id == ctx.institution)
        .ok_or_else(|| AppError::new(codes::SUGGESTION_NOT_FOUND, "no such suggestion at your institution"))?;
    if s.status != "open" {
        return Err(AppError::new(codes::SUGGESTION_RESOLVED, "this suggestion was already acted on"));
    }
    let person = s.person_id;
    let mut am = s.into_active_model();
    am.status = Set("dismissed".into());
    am.resolved_at = Set(Some(crate::platform::clock::now()));
    am.update(&*tx).await?;
    tx.audit(
        ctx.audit("followups.dismiss_suggestion", "enrollment_suggestion", Purpose::Treatment)
            .resource(id)
            .subject(person),
    );
    tx.commit().await?;
    Ok(())
}

/// The `followups.suggest` consumer: an encounter closed with a hypertension or type 2 diabetes
/// diagnosis, for a person in no such registry of the community, raises a suggestion to enroll
/// them at the encounter's institution.
pub struct Suggest;

/// Advisory lock class of the suggestion check-then-insert (see `Tx::lock_keys`).
const SUGGEST_LOCK_CLASS: i32 = 7;

#[async_trait::async_trait]
impl Handler for Suggest {
    fn name(&self) -> &'static str {
        "followups.suggest"
    }

    fn events(&self) -> Vec<&'static str> {
        vec![EncounterClosed::TYPE]
    }

    async fn handle(&self, tx: &mut Tx, event: &Envelope) -> AppResult<()> {
        let EncounterClosed { person, institution, encounter, diagnoses, closed_at, .. } = event.decode()?;
        // Two encounters of one person closing at once must not both suggest: one at a time.
        tx.lock_keys(SUGGEST_LOCK_CLASS, &[person]).await?;
        let mut seen = Vec::new();
        for d in diagnoses {
            let Some(disease) = Disease::of_icd(&d.code) else { continue };
            if seen.contains(&disease) {
                continue;
            }
            seen.push(disease);
            let enrolled = enrollment::Entity::find()
                .filter(enrollment::Column::TenantId.eq(tx.tenant()))
                .filter(enrollment::Column::PersonId.eq(person))
                .filter(enrollment::Column::Disease.eq(disease.as_str()))
                .filter(enrollment::Column::Status.eq(EnrollmentStatus::Active))
                .one(&**tx)
                .await?
                .is_some();
            let pending = enrollment_suggestion::Entity::find()
                .filter(enrollment_suggestion::Column::TenantId.eq(tx.tenant()))
                .filter(enrollment_suggestion::Column::PersonId.eq(person))
                .filter(enrollment_suggestion::Column::InstitutionId.eq(institution))
                .filter(enrollment_suggestion::Column::Disease.eq(disease.as_str()))
                .filter(enrollment_suggestion::Column::Status.eq("open"))
                .one(&**tx)
                .await?
                .is_some();
            if enrolled || pending {
                continue;
            }
            enrollment_suggestion::ActiveModel {
                tenant_id: Set(tx.tenant()),
                id: Set(Uuid::now_v7()),
                person_id: Set(person),
                institution_id: Set(institution),
                disease: Set(disease.as_str().into()),
                diagnosis_code: Set(d.code.trim().to_ascii_uppercase()),
                encounter_id: Set(encounter),
                diagnosed_on: Set(crate::platform::clock::china_date(closed_at)),
                status: Set("open".into()),
                created_at: Set(crate::platform::clock::now()),
                resolved_at: Set(None),
            }
            .insert(&**tx)
            .await?;
        }
        Ok(())
    }
}

/// Every enrollment, and every follow-up with whether it met the KPI's control target: the
/// source statistics rebuild their registry rows from.
/// What statistics rebuild the registries from: every enrollment, and every follow-up with its
/// registry's disease and whether it met the KPI's targets.
pub struct StatSources {
    pub enrollments: Vec<enrollment::Model>,
    pub followups: Vec<StatFollowup>,
}

pub struct StatFollowup {
    pub visit: followup_visit::Model,
    pub disease: Disease,
    pub kpi_controlled: bool,
}

pub async fn stat_sources(tx: &Tx) -> AppResult<StatSources> {
    let enrollments =
        enrollment::Entity::find().filter(enrollment::Column::TenantId.eq(tx.tenant())).all(&**tx).await?;
    let disease: HashMap<Uuid, Disease> = enrollments.iter().map(|e| (e.id, e.disease)).collect();
    let followups = followup_visit::Entity::find()
        .filter(followup_visit::Column::TenantId.eq(tx.tenant()))
        .all(&**tx)
        .await?
        .into_iter()
        .filter_map(|visit| {
            // Every follow-up belongs to an enrollment (a foreign key keeps it so).
            let disease = *disease.get(&visit.enrollment_id)?;
            let m = Measures { systolic: visit.systolic, diastolic: visit.diastolic, glucose: visit.glucose };
            Some(StatFollowup { kpi_controlled: kpi_controlled(disease, &m), disease, visit })
        })
        .collect();
    Ok(StatSources { enrollments, followups })
}
