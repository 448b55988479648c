//! Clinical use cases: open an encounter for a person registered here, record vitals,
//! diagnoses and notes, close (sign) it, add addenda afterwards, record allergies, and the
//! community patient summary — one of the three audited ways to read across institutions.

use std::collections::HashSet;

use chrono::{DateTime, Duration, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder, QuerySelect,
    Set,
};
use serde_json::json;
use uuid::Uuid;

use super::domain::{EncounterKind, EncounterStatus, Vitals};
use super::entity::{addendum, allergy, break_glass, diagnosis, encounter, vital_sign};
use super::icd10;
use crate::identity::ctx::{Perm, RequestCtx};
use crate::platform::audit::{Outcome, Purpose};
use crate::platform::codes;
use crate::platform::state::AppState;
use crate::platform::{AppError, AppResult, Tx};

/// An encounter of the caller's institution; 404 for anyone else's.
pub async fn own_encounter(tx: &Tx, ctx: &RequestCtx, id: Uuid) -> AppResult<encounter::Model> {
    encounter::Entity::find_by_id((ctx.tenant, id))
        .one(&**tx)
        .await?
        .filter(|e| e.institution_id == ctx.institution)
        .ok_or_else(|| AppError::new(codes::ENCOUNTER_NOT_FOUND, "no such encounter at your institution"))
}

/// As `own_encounter`, still open (a closed encounter is immutable: 409), and locked for the rest
/// of the transaction so that a concurrent close cannot slip between check and write.
pub async fn open_encounter(tx: &Tx, ctx: &RequestCtx, id: Uuid) -> AppResult<encounter::Model> {
    let mut q = encounter::Entity::find_by_id((ctx.tenant, id));
    if tx.get_database_backend() == sea_orm::DbBackend::Postgres {
        q = q.lock_exclusive();
    }
    let e = q
        .one(&**tx)
        .await?
        .filter(|e| e.institution_id == ctx.institution)
        .ok_or_else(|| AppError::new(codes::ENCOUNTER_NOT_FOUND, "no such encounter at your institution"))?;
    if e.status != EncounterStatus::Open {
        return Err(AppError::new(codes::ENCOUNTER_CLOSED, "the encounter is closed; add an addendum instead"));
    }
    Ok(e)
}

/// Allergens recorded for a person anywhere in the community (drug codes or drug classes),
/// including those recorded on persons since merged into them.
pub async fn allergens_of(tx: &Tx, person: Uuid) -> AppResult<HashSet<String>> {
    let ids = crate::patients::service::person_and_merged(tx, person).await?;
    Ok(allergy::Entity::find()
        .filter(allergy::Column::TenantId.eq(tx.tenant()))
        .filter(allergy::Column::PersonId.is_in(ids))
        .all(&**tx)
        .await?
        .into_iter()
        .map(|a| a.allergen)
        .collect())
}

pub struct OpenInput {
    pub person_id: Uuid,
    pub department_id: Option<Uuid>,
    pub kind: EncounterKind,
    pub chief_complaint: Option<String>,
}

pub async fn open(state: &AppState, ctx: &RequestCtx, input: OpenInput) -> AppResult<encounter::Model> {
    ctx.require(Perm::EncounterWrite)?;
    let mut tx = state.db.begin(ctx).await?;
    if !crate::patients::service::registered_at(&tx, input.person_id, ctx.institution).await? {
        return Err(AppError::new(codes::PERSON_NOT_FOUND, "no such person registered at your institution"));
    }
    if let Some(d) = input.department_id {
        let ok = crate::tenancy::service::departments_of(&tx, ctx.institution).await?.iter().any(|x| x.id == d);
        if !ok {
            return Err(AppError::new(codes::DEPARTMENT_INVALID, "that department is not part of your institution"));
        }
    }
    let now = crate::platform::clock::now();
    let e = encounter::ActiveModel {
        tenant_id: Set(ctx.tenant),
        id: Set(Uuid::now_v7()),
        institution_id: Set(ctx.institution),
        person_id: Set(input.person_id),
        department_id: Set(input.department_id),
        clinician_id: Set(ctx.user),
        kind: Set(input.kind),
        status: Set(EncounterStatus::Open),
        chief_complaint: Set(input.chief_complaint),
        notes: Set(None),
        opened_at: Set(now),
        closed_at: Set(None),
        closed_by: Set(None),
    }
    .insert(&*tx)
    .await?;
    tx.audit(ctx.audit("encounter.open", "encounter", Purpose::Treatment).resource(e.id).subject(e.person_id));
    tx.commit().await?;
    Ok(e)
}

pub async fn record_vitals(state: &AppState, ctx: &RequestCtx, id: Uuid, v: Vitals) -> AppResult<vital_sign::Model> {
    ctx.require(Perm::EncounterWrite)?;
    v.check()?;
    let mut tx = state.db.begin(ctx).await?;
    let e = open_encounter(&tx, ctx, id).await?;
    let row = vital_sign::ActiveModel {
        tenant_id: Set(ctx.tenant),
        id: Set(Uuid::now_v7()),
        encounter_id: Set(id),
        institution_id: Set(ctx.institution),
        person_id: Set(e.person_id),
        recorded_at: Set(crate::platform::clock::now()),
        recorded_by: Set(ctx.user),
        systolic: Set(v.systolic),
        diastolic: Set(v.diastolic),
        pulse: Set(v.pulse),
        temperature: Set(v.temperature),
        weight_kg: Set(v.weight_kg),
        fasting_glucose: Set(v.fasting_glucose),
    }
    .insert(&*tx)
    .await?;
    tx.audit(ctx.audit("encounter.vitals", "encounter", Purpose::Treatment).resource(id).subject(e.person_id));
    tx.commit().await?;
    Ok(row)
}

pub async fn add_diagnosis(
    state: &AppState,
    ctx: &RequestCtx,
    id: Uuid,
    code: &str,
    primary: bool,
) -> AppResult<diagnosis::Model> {
    ctx.require(Perm::EncounterWrite)?;
    let icd = icd10::lookup(code).ok_or_else(|| {
        AppError::new(codes::ICD_CODE_UNKNOWN, "not a code of the ICD-10 catalog")
            .with_details(json!({ "field": "code" }))
    })?;
    let mut tx = state.db.begin(ctx).await?;
    let e = open_encounter(&tx, ctx, id).await?;
    let existing = diagnoses_of(&tx, id).await?;
    if existing.iter().any(|d| d.code == icd.code) {
        return Err(AppError::new(codes::DIAGNOSIS_DUPLICATE, "this diagnosis is already recorded for the encounter"));
    }
    let primary = primary || existing.is_empty();
    if primary {
        for d in existing.into_iter().filter(|d| d.is_primary) {
            let mut am = d.into_active_model();
            am.is_primary = Set(false);
            am.update(&*tx).await?;
        }
    }
    let row = diagnosis::ActiveModel {
        tenant_id: Set(ctx.tenant),
        id: Set(Uuid::now_v7()),
        encounter_id: Set(id),
        institution_id: Set(ctx.institution),
        person_id: Set(e.person_id),
        code: Set(icd.code.into()),
        is_primary: Set(primary),
        created_at: Set(crate::platform::clock::now()),
        created_by: Set(ctx.user),
    }
    .insert(&*tx)
    .await?;
    tx.audit(ctx.audit("encounter.diagnose", "encounter", Purpose::Treatment).resource(id).subject(e.person_id));
    tx.commit().await?;
    Ok(row)
}

pub async fn diagnoses_of(tx: &Tx, encounter_id: Uuid) -> AppResult<Vec<diagnosis::Model>> {
    Ok(diagnosis::Entity::find()
        .filter(diagnosis::Column::TenantId.eq(tx.tenant()))
        .filter(diagnosis::Column::EncounterId.eq(encounter_id))
        .order_by_asc(diagnosis::Column::CreatedAt)
        .all(&**tx)
        .await?)
}

pub async fn update_notes(
    state: &AppState,
    ctx: &RequestCtx,
    id: Uuid,
    chief_complaint: Option<String>,
    notes: Option<String>,
) -> AppResult<encounter::Model> {
    ctx.require(Perm::EncounterWrite)?;
    let mut tx = state.db.begin(ctx).await?;
    let e = open_encounter(&tx, ctx, id).await?;
    let person = e.person_id;
    let mut am = e.into_active_model();
    if chief_complaint.is_some() {
        am.chief_complaint = Set(chief_complaint);
    }
    if notes.is_some() {
        am.notes = Set(notes);
    }
    let e = am.update(&*tx).await?;
    tx.audit(ctx.audit("encounter.notes", "encounter", Purpose::Treatment).resource(id).subject(person));
    tx.commit().await?;
    Ok(e)
}

/// Signs the encounter: from now on it only takes addenda.
pub async fn close(state: &AppState, ctx: &RequestCtx, id: Uuid) -> AppResult<encounter::Model> {
    ctx.require(Perm::EncounterWrite)?;
    let mut tx = state.db.begin(ctx).await?;
    let e = open_encounter(&tx, ctx, id).await?;
    let diagnoses = diagnoses_of(&tx, id).await?;
    if diagnoses.is_empty() {
        return Err(AppError::new(codes::DIAGNOSIS_REQUIRED, "record at least one diagnosis before closing"));
    }
    let now = crate::platform::clock::now();
    let mut am = e.clone().into_active_model();
    am.status = Set(EncounterStatus::Closed);
    am.closed_at = Set(Some(now));
    am.closed_by = Set(Some(ctx.user));
    let e = am.update(&*tx).await?;
    let event = super::events::EncounterClosed {
        encounter: id,
        institution: e.institution_id,
        person: e.person_id,
        kind: e.kind,
        department: e.department_id,
        clinician: e.clinician_id,
        opened_at: e.opened_at,
        closed_at: now,
        diagnoses: diagnoses
            .iter()
            .map(|d| super::events::ClosedDiagnosis { code: d.code.clone(), primary: d.is_primary })
            .collect(),
    };
    tx.emit(Some(ctx.user), id, &event).await?;
    tx.audit(ctx.audit("encounter.close", "encounter", Purpose::Treatment).resource(id).subject(e.person_id));
    tx.commit().await?;
    Ok(e)
}

pub async fn add_addendum(state: &AppState, ctx: &RequestCtx, id: Uuid, text: &str) -> AppResult<addendum::Model> {
    ctx.require(Perm::EncounterWrite)?;
    let text = text.trim();
    if text.is_empty() || text.chars().count() > 4000 {
        return Err(AppError::new(codes::ADDENDUM_INVALID, "an addendum is 1 to 4000 characters"));
    }
    let mut tx = state.db.begin(ctx).await?;
    let e = own_encounter(&tx, ctx, id).await?;
    let row = addendum::ActiveModel {
        tenant_id: Set(ctx.tenant),
        id: Set(Uuid::now_v7()),
        encounter_id: Set(id),
        institution_id: Set(ctx.institution),
        text: Set(text.to_string()),
        author_id: Set(ctx.user),
        created_at: Set(crate::platform::clock::now()),
    }
    .insert(&*tx)
    .await?;
    tx.audit(ctx.audit("encounter.addendum", "encounter", Purpose::Treatment).resource(id).subject(e.person_id));
    tx.commit().await?;
    Ok(row)
}

/// An encounter with what was recorded in it: the clinical part of a visit's view (the
/// `visit` workflow adds its prescriptions and bill).
#[derive(Debug, Clone)]
pub struct EncounterRecord {
    pub encounter: encounter::Model,
    pub vitals: Vec<vital_sign::Model>,
    pub diagnoses: Vec<diagnosis::Model>,
    pub addenda: Vec<addendum::Model>,
}

/// What was recorded in an encounter: vitals and addenda in the order they were written.
pub async fn record_of(tx: &Tx, encounter: encounter::Model) -> AppResult<EncounterRecord> {
    let id = encounter.id;
    let vitals = vital_sign::Entity::find()
        .filter(vital_sign::Column::TenantId.eq(tx.tenant()))
        .filter(vital_sign::Column::EncounterId.eq(id))
        .order_by_asc(vital_sign::Column::RecordedAt)
        .all(&**tx)
        .await?;
    let addenda = addendum::Entity::find()
        .filter(addendum::Column::TenantId.eq(tx.tenant()))
        .filter(addendum::Column::EncounterId.eq(id))
        .order_by_asc(addendum::Column::CreatedAt)
        .all(&**tx)
        .await?;
    Ok(EncounterRecord { diagnoses: diagnoses_of(tx, id).await?, vitals, addenda, encounter })
}

/// A person's (and their merged records') most recent encounters at one institution.
pub async fn encounters_at(tx: &Tx, person: Uuid, institution: Uuid, limit: u64) -> AppResult<Vec<encounter::Model>> {
    let ids = crate::patients::service::person_and_merged(tx, person).await?;
    Ok(encounter::Entity::find()
        .filter(encounter::Column::TenantId.eq(tx.tenant()))
        .filter(encounter::Column::PersonId.is_in(ids))
        .filter(encounter::Column::InstitutionId.eq(institution))
        .order_by_desc(encounter::Column::OpenedAt)
        .limit(limit)
        .all(&**tx)
        .await?)
}

/// The caller's institution's encounters, newest first, optionally for one person or since a time.
pub async fn list(
    state: &AppState,
    ctx: &RequestCtx,
    person: Option<Uuid>,
    since: Option<DateTime<Utc>>,
    limit: u64,
) -> AppResult<Vec<encounter::Model>> {
    ctx.require(Perm::EncounterRead)?;
    if let Some(t) = since {
        crate::platform::dates::instant("since", t, crate::platform::clock::now())?;
    }
    let mut tx = state.db.begin(ctx).await?;
    let mut q = encounter::Entity::find()
        .filter(encounter::Column::TenantId.eq(ctx.tenant))
        .filter(encounter::Column::InstitutionId.eq(ctx.institution));
    if let Some(p) = person {
        q = q.filter(encounter::Column::PersonId.eq(p));
    }
    if let Some(s) = since {
        q = q.filter(encounter::Column::OpenedAt.gte(s));
    }
    let rows = q.order_by_desc(encounter::Column::OpenedAt).limit(limit).all(&*tx).await?;
    ctx.audit_reads(&mut tx, "encounter.list", Purpose::Treatment, rows.iter().map(|e| e.person_id));
    tx.commit().await?;
    Ok(rows)
}

pub async fn record_allergy(
    state: &AppState,
    ctx: &RequestCtx,
    person: Uuid,
    allergen: &str,
    reaction: Option<String>,
) -> AppResult<allergy::Model> {
    ctx.require(Perm::EncounterWrite)?;
    let allergen = allergen.trim().to_ascii_lowercase();
    if allergen.is_empty() || allergen.len() > 64 {
        return Err(AppError::new(codes::ALLERGEN_INVALID, "allergen is a drug code or drug class, 1-64 characters"));
    }
    let mut tx = state.db.begin(ctx).await?;
    if !crate::patients::service::registered_at(&tx, person, ctx.institution).await? {
        return Err(AppError::new(codes::PERSON_NOT_FOUND, "no such person registered at your institution"));
    }
    let row = allergy::ActiveModel {
        tenant_id: Set(ctx.tenant),
        id: Set(Uuid::now_v7()),
        person_id: Set(person),
        allergen: Set(allergen),
        reaction: Set(reaction),
        institution_id: Set(ctx.institution),
        recorded_by: Set(ctx.user),
        recorded_at: Set(crate::platform::clock::now()),
    }
    .insert(&*tx)
    .await?;
    tx.audit(ctx.audit("allergy.write", "person", Purpose::Treatment).resource(person).subject(person));
    tx.commit().await?;
    Ok(row)
}

#[derive(Debug, Clone)]
pub struct SummaryEncounter {
    pub encounter: encounter::Model,
    pub institution_name: String,
    pub diagnoses: Vec<diagnosis::Model>,
}

/// The clinical part of a person's community summary: allergies, the latest encounters at every
/// institution with their diagnoses, and recent vitals, over the person and their merged records.
#[derive(Debug, Clone)]
pub struct ClinicalSummary {
    pub allergies: Vec<allergy::Model>,
    pub encounters: Vec<SummaryEncounter>,
    pub recent_vitals: Vec<vital_sign::Model>,
}

/// Why the caller may read a person's community summary: registered at the caller's institution
/// (treatment), or an open break-glass declaration; `None` if neither.
pub async fn summary_purpose(tx: &Tx, ctx: &RequestCtx, person: Uuid) -> AppResult<Option<Purpose>> {
    Ok(if crate::patients::service::registered_at(tx, person, ctx.institution).await? {
        Some(Purpose::Treatment)
    } else if open_break_glass(tx, ctx, person).await?.is_some() {
        Some(Purpose::BreakGlass)
    } else {
        None
    })
}

pub async fn clinical_summary(tx: &Tx, ids: &[Uuid]) -> AppResult<ClinicalSummary> {
    let names: std::collections::HashMap<Uuid, String> =
        crate::tenancy::service::list_institutions(tx).await?.into_iter().map(|i| (i.id, i.name)).collect();
    let encounters = encounter::Entity::find()
        .filter(encounter::Column::TenantId.eq(tx.tenant()))
        .filter(encounter::Column::PersonId.is_in(ids.to_vec()))
        .order_by_desc(encounter::Column::OpenedAt)
        .limit(50)
        .all(&**tx)
        .await?;
    let enc_ids: Vec<Uuid> = encounters.iter().map(|e| e.id).collect();
    let diagnoses = diagnosis::Entity::find()
        .filter(diagnosis::Column::TenantId.eq(tx.tenant()))
        .filter(diagnosis::Column::EncounterId.is_in(enc_ids))
        .all(&**tx)
        .await?;
    let recent_vitals = vital_sign::Entity::find()
        .filter(vital_sign::Column::TenantId.eq(tx.tenant()))
        .filter(vital_sign::Column::PersonId.is_in(ids.to_vec()))
        .order_by_desc(vital_sign::Column::RecordedAt)
        .limit(10)
        .all(&**tx)
        .await?;
    let allergies = allergy::Entity::find()
        .filter(allergy::Column::TenantId.eq(tx.tenant()))
        .filter(allergy::Column::PersonId.is_in(ids.to_vec()))
        .all(&**tx)
        .await?;
    Ok(ClinicalSummary {
        allergies,
        encounters: encounters
            .into_iter()
            .map(|e| SummaryEncounter {
                institution_name: names.get(&e.institution_id).cloned().unwrap_or_default(),
                diagnoses: diagnoses.iter().filter(|d| d.encounter_id == e.id).cloned().collect(),
                encounter: e,
            })
            .collect(),
        recent_vitals,
    })
}

/// How long a break-glass declaration opens the summary for.
pub const BREAK_GLASS_HOURS: i64 = 4;

/// Validates a break-glass reason: written out (10 to 500 characters once trimmed).
pub fn break_glass_reason(reason: &str) -> AppResult<&str> {
    let reason = reason.trim();
    let n = reason.chars().count();
    if !(10..=500).contains(&n) {
        return Err(AppError::new(
            codes::BREAK_GLASS_REASON_REQUIRED,
            "break-glass needs a written reason of 10 to 500 characters",
        ));
    }
    Ok(reason)
}

/// Break-glass (紧急访问): a clinician declares, with a written reason, that they must read the
/// record of a person not registered at their institution. The declaration opens that person's
/// community summary to this clinician at this institution for [`BREAK_GLASS_HOURS`]; it and
/// every read under it are audited with purpose `break_glass`.
pub async fn break_glass(
    state: &AppState,
    ctx: &RequestCtx,
    person: Uuid,
    reason: &str,
) -> AppResult<break_glass::Model> {
    ctx.require(Perm::BreakGlass)?;
    let reason = break_glass_reason(reason)?;
    let mut tx = state.db.begin(ctx).await?;
    let found = crate::patients::service::find_person_any(&tx, person).await;
    if let Err(e) = found {
        tx.audit(
            ctx.audit("patient.break_glass", "person", Purpose::BreakGlass).resource(person).outcome(Outcome::Denied),
        );
        tx.commit().await?;
        return Err(e);
    }
    let now = crate::platform::clock::now();
    let row = break_glass::ActiveModel {
        tenant_id: Set(ctx.tenant),
        id: Set(Uuid::now_v7()),
        user_id: Set(ctx.user),
        institution_id: Set(ctx.institution),
        person_id: Set(person),
        reason: Set(reason.to_string()),
        opened_at: Set(now),
        expires_at: Set(now + Duration::hours(BREAK_GLASS_HOURS)),
    }
    .insert(&*tx)
    .await?;
    tx.audit(
        ctx.audit("patient.break_glass", "break_glass_access", Purpose::BreakGlass).resource(row.id).subject(person),
    );
    tx.commit().await?;
    Ok(row)
}

/// The caller's break-glass declaration for `person` still open at their institution, if any.
async fn open_break_glass(tx: &Tx, ctx: &RequestCtx, person: Uuid) -> AppResult<Option<break_glass::Model>> {
    Ok(break_glass::Entity::find()
        .filter(break_glass::Column::TenantId.eq(ctx.tenant))
        .filter(break_glass::Column::UserId.eq(ctx.user))
        .filter(break_glass::Column::InstitutionId.eq(ctx.institution))
        .filter(break_glass::Column::PersonId.eq(person))
        .filter(break_glass::Column::ExpiresAt.gt(crate::platform::clock::now()))
        .one(&**tx)
        .await?)
}

/// The clinical findings a referral carries (its `referrals` snapshot adds the medicines):
/// diagnoses of the source encounter (or of the three most recent at this institution), recent
/// vitals and allergies, as JSON.
pub async fn referral_findings(
    tx: &Tx,
    person: Uuid,
    institution: Uuid,
    source_encounter: Option<Uuid>,
) -> AppResult<serde_json::Map<String, serde_json::Value>> {
    let ids = crate::patients::service::person_and_merged(tx, person).await?;
    let encounters: Vec<encounter::Model> = match source_encounter {
        Some(e) => encounter::Entity::find_by_id((tx.tenant(), e))
            .one(&**tx)
            .await?
            .filter(|x| x.institution_id == institution && ids.contains(&x.person_id))
            .map(|x| vec![x])
            .ok_or_else(|| {
                AppError::new(codes::ENCOUNTER_INVALID, "the source encounter is not this person's visit here")
            })?,
        None => encounters_at(tx, person, institution, 3).await?,
    };
    let enc_ids: Vec<Uuid> = encounters.iter().map(|e| e.id).collect();
    let diagnoses = diagnosis::Entity::find()
        .filter(diagnosis::Column::TenantId.eq(tx.tenant()))
        .filter(diagnosis::Column::EncounterId.is_in(enc_ids))
        .all(&**tx)
        .await?;
    let vitals = vital_sign::Entity::find()
        .filter(vital_sign::Column::TenantId.eq(tx.tenant()))
        .filter(vital_sign::Column::PersonId.is_in(ids.clone()))
        .filter(vital_sign::Column::InstitutionId.eq(institution))
        .order_by_desc(vital_sign::Column::RecordedAt)
        .limit(3)
        .all(&**tx)
        .await?;
    let allergies: Vec<String> = allergens_of(tx, person).await?.into_iter().collect();
    let serde_json::Value::Object(map) = serde_json::json!({
        "diagnoses": diagnoses.iter().map(|d| {
            let icd = icd10::lookup(&d.code);
            serde_json::json!({"code": d.code, "name": icd.map(|i| i.name), "primary": d.is_primary})
        }).collect::<Vec<_>>(),
        "vitals": vitals.iter().map(|v| serde_json::json!({
            "recorded_at": v.recorded_at, "systolic": v.systolic, "diastolic": v.diastolic, "pulse": v.pulse,
            "temperature": v.temperature, "weight_kg": v.weight_kg, "fasting_glucose": v.fasting_glucose,
        })).collect::<Vec<_>>(),
        "allergies": allergies,
    }) else {
        unreachable!("a json! object literal is an object")
    };
    Ok(map)
}

/// Closed encounters per China day (of opening), institution and kind: the source statistics
/// rebuild their visit counts from.
pub async fn stat_visits(tx: &Tx) -> AppResult<Vec<crate::platform::db::DailyCount>> {
    let day = crate::platform::db::china_date_sql(tx.get_database_backend(), "opened_at");
    let closed = EncounterStatus::Closed;
    crate::platform::db::daily_counts(
        tx,
        &format!(
            "SELECT {day} AS day, institution_id, kind AS dim, CAST(COUNT(*) AS BIGINT) AS value
               FROM encounters WHERE tenant_id = ? AND status = '{closed}' GROUP BY 1, 2, 3"
        ),
    )
    .await
}
