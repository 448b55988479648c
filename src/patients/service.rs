//! MPI use cases: register (match first), `$match`, search, read, merge/unmerge, review queue.
//! Every person returned to a caller is an audited read; every change emits an event.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, DbBackend, EntityTrait, IntoActiveModel, QueryFilter,
    QueryOrder, QuerySelect, Set, Statement,
};
use serde_json::json;
use uuid::Uuid;

use super::domain::{
    Demographics, IdentifierField, REVEALS_PER_HOUR, RevealPurpose, mask_insurance, mask_phone, phone_tail, record_of,
    sex_str,
};
use super::entity::{duplicate_candidate, identifier_reveal, person, person_merge, registration};
use super::events;
use super::matching::{Birth, Comparison, Grade, MatchRecord, MatchWeights, score};
use super::names::{NameKey, is_initials_query};
use crate::identity::ctx::{Perm, RequestCtx};
use crate::platform::audit::Purpose;
use crate::platform::codes;
use crate::platform::db::{Db, SystemScope};
use crate::platform::pii::PiiCipher;
use crate::platform::state::AppState;
use crate::platform::{AppError, AppResult, Tx};

pub const ACTIVE: &str = "active";
pub const MERGED: &str = "merged";
const MAX_CANDIDATES: usize = 10;

/// Keyed hashes for exact lookup, one domain per kind of value.
pub fn rid_hash(c: &PiiCipher, rid: &str) -> String {
    c.index("rid", rid)
}
pub fn phone_hash(c: &PiiCipher, phone: &str) -> String {
    c.index("phone", phone)
}
pub fn tail_hash(c: &PiiCipher, phone: &str) -> String {
    c.index("phone_tail", phone_tail(phone))
}
pub fn insurance_hash(c: &PiiCipher, no: &str) -> String {
    c.index("insurance", no)
}

/// The tenant's matching weights (tenant file `[settings.matching]`, else the defaults).
pub async fn weights(tx: &Tx) -> AppResult<MatchWeights> {
    let tenant = crate::tenancy::service::get_tenant(&**tx, tx.tenant()).await?;
    Ok(MatchWeights::from_settings(&tenant.settings))
}

/// A person as the API shows it. Identifiers are masked unless the caller may see them.
#[derive(Debug, Clone)]
pub struct PersonView {
    pub id: Uuid,
    pub name: String,
    pub sex: Option<String>,
    pub birth_date: Option<NaiveDate>,
    pub birth_year: Option<i32>,
    pub resident_id: Option<String>,
    pub phone: Option<String>,
    pub insurance_no: Option<String>,
    pub address_division: Option<String>,
    pub status: String,
    pub replaced_by: Option<Uuid>,
    pub registrations: Vec<RegistrationView>,
    pub registered_here: bool,
}

#[derive(Debug, Clone)]
pub struct RegistrationView {
    pub id: Uuid,
    pub institution_id: Uuid,
    pub institution_name: String,
    pub mrn: String,
    pub registered_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct CandidateView {
    pub person: PersonView,
    pub score: f64,
    pub grade: Grade,
    pub comparisons: Vec<Comparison>,
}

pub struct RegisterInput {
    pub demographics: Demographics,
    pub link_to: Option<Uuid>,
    pub create_new_reason: Option<String>,
}

pub struct RegisterOutcome {
    pub person: PersonView,
    pub registration_id: Uuid,
    pub mrn: String,
    pub matched: bool,
    pub created: bool,
}

struct Candidate {
    person: person::Model,
    score: f64,
    grade: Grade,
    comparisons: Vec<Comparison>,
}

/// What blocking and scoring found: the candidates, and whether an active person already has
/// the query's valid resident ID (`None`: the fetch hit its limit, so the rows cannot say).
struct Found {
    candidates: Vec<Candidate>,
    rid_held: Option<bool>,
}

/// Rows blocking fetches at most.
const BLOCK_LIMIT: usize = 2000;

/// Blocking, then scoring. Merged persons lead to their survivor; each survivor appears once,
/// with its best score.
async fn find_candidates(
    tx: &Tx,
    cipher: &PiiCipher,
    query: &MatchRecord,
    w: &MatchWeights,
    exclude: Option<Uuid>,
) -> AppResult<Vec<Candidate>> {
    Ok(find(tx, cipher, query, w, exclude).await?.candidates)
}

async fn find(
    tx: &Tx,
    cipher: &PiiCipher,
    query: &MatchRecord,
    w: &MatchWeights,
    exclude: Option<Uuid>,
) -> AppResult<Found> {
    // One branch per blocking key, each led by the tenant so that every branch is an index
    // search (SQLite otherwise takes the tenant-prefix index and scans the whole tenant).
    let tenant = tx.tenant();
    let mut keys: Vec<Condition> = Vec::new();
    if let Some(rid) = query.resident_id.as_deref().filter(|_| query.resident_id_valid) {
        keys.push(Condition::all().add(person::Column::ResidentIdHash.eq(rid_hash(cipher, rid))));
    }
    let name = || person::Column::NamePinyin.eq(&query.name.joined);
    match query.birth {
        Some(b) => {
            if let Birth::Full(d) = b {
                keys.push(Condition::all().add(person::Column::BirthDate.eq(d)));
                keys.push(Condition::all().add(name()).add(person::Column::BirthMd.eq(d.format("%m%d").to_string())));
            }
            keys.push(Condition::all().add(name()).add(person::Column::BirthYear.eq(b.year())));
            keys.push(
                Condition::all()
                    .add(person::Column::NameInitials.eq(&query.name.initials))
                    .add(person::Column::BirthYear.eq(b.year())),
            );
        }
        None => keys.push(Condition::all().add(name())),
    }
    if let Some(div) = &query.division {
        keys.push(Condition::all().add(name()).add(person::Column::DivisionCode.eq(div)));
    }
    if let Some(p) = &query.phone {
        keys.push(Condition::all().add(person::Column::PhoneHash.eq(phone_hash(cipher, p))));
        keys.push(Condition::all().add(person::Column::PhoneTailHash.eq(tail_hash(cipher, p))));
    }
    if let Some(i) = &query.insurance_no {
        keys.push(Condition::all().add(person::Column::InsuranceHash.eq(insurance_hash(cipher, i))));
    }
    let any = keys
        .into_iter()
        .fold(Condition::any(), |any, k| any.add(Condition::all().add(person::Column::TenantId.eq(tenant)).add(k)));
    let rows = person::Entity::find().filter(any).limit(BLOCK_LIMIT as u64).all(&**tx).await?;
    // Every active holder of the ID is among the rows (its own blocking key) unless the limit cut.
    let rid = query.resident_id.as_deref().filter(|_| query.resident_id_valid).map(|r| rid_hash(cipher, r));
    let held = rid.is_some_and(|h| {
        rows.iter().any(|r| r.status == ACTIVE && r.resident_id_valid && r.resident_id_hash.as_deref() == Some(&h))
    });
    let rid_held = (held || rows.len() < BLOCK_LIMIT).then_some(held);
    let mut best: HashMap<Uuid, (f64, Grade, Vec<Comparison>)> = HashMap::new();
    let mut survivors: HashMap<Uuid, person::Model> = HashMap::new();
    for row in rows {
        let s = score(query, &record_of(&row, cipher), w);
        if s.grade == Grade::None {
            continue;
        }
        let survivor = if row.status == MERGED { resolve_survivor(tx, row).await? } else { row };
        if Some(survivor.id) == exclude || survivor.status != ACTIVE {
            continue;
        }
        let entry = best.entry(survivor.id).or_insert((f64::MIN, Grade::None, vec![]));
        if s.score > entry.0 {
            *entry = (s.score, s.grade, s.comparisons);
        }
        survivors.insert(survivor.id, survivor);
    }
    let mut out: Vec<Candidate> = best
        .into_iter()
        .map(|(id, (score, grade, comparisons))| Candidate {
            person: survivors.remove(&id).expect("collected with its score"),
            score,
            grade,
            comparisons,
        })
        .collect();
    out.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.person.id.cmp(&b.person.id)));
    out.truncate(MAX_CANDIDATES);
    Ok(Found { candidates: out, rid_held })
}

/// Follows `replaced_by` to the active survivor (a chain exists when a survivor was itself merged).
async fn resolve_survivor(tx: &Tx, mut p: person::Model) -> AppResult<person::Model> {
    for _ in 0..16 {
        let Some(next) = p.replaced_by.filter(|_| p.status == MERGED) else { return Ok(p) };
        p = find_person_any(tx, next).await?;
    }
    Err(AppError::internal(anyhow::anyhow!("merge chain too long")))
}

async fn lock_person(tx: &Tx, id: Uuid) -> AppResult<person::Model> {
    let mut q = person::Entity::find_by_id((tx.tenant(), id));
    if tx.get_database_backend() == DbBackend::Postgres {
        q = q.lock_exclusive();
    }
    q.one(&**tx).await?.ok_or_else(|| AppError::new(codes::PERSON_NOT_FOUND, "no such person in this community"))
}

/// A person of the community, merged or not; 404 `person_not_found` otherwise.
pub async fn find_person_any(tx: &Tx, id: Uuid) -> AppResult<person::Model> {
    person::Entity::find_by_id((tx.tenant(), id))
        .one(&**tx)
        .await?
        .ok_or_else(|| AppError::new(codes::PERSON_NOT_FOUND, "no such person in this community"))
}

/// Registrations (with institution names) for several persons at once.
async fn registrations_of(tx: &Tx, persons: &[Uuid]) -> AppResult<HashMap<Uuid, Vec<RegistrationView>>> {
    if persons.is_empty() {
        return Ok(HashMap::new());
    }
    use crate::tenancy::entity::institution;
    #[derive(sea_orm::FromQueryResult)]
    struct Row {
        id: Uuid,
        person_id: Uuid,
        institution_id: Uuid,
        mrn: String,
        registered_at: DateTime<Utc>,
        institution_name: Option<String>,
    }
    // The institutions' names come with the rows (one statement, not the tenant's whole list).
    let at_institution = registration::Entity::belongs_to(institution::Entity)
        .from((registration::Column::TenantId, registration::Column::InstitutionId))
        .to((institution::Column::TenantId, institution::Column::Id))
        .into();
    let rows = registration::Entity::find()
        .select_only()
        .columns([
            registration::Column::Id,
            registration::Column::PersonId,
            registration::Column::InstitutionId,
            registration::Column::Mrn,
            registration::Column::RegisteredAt,
        ])
        .column_as(sea_orm::sea_query::Expr::col((institution::Entity, institution::Column::Name)), "institution_name")
        .join(sea_orm::JoinType::LeftJoin, at_institution)
        .filter(registration::Column::TenantId.eq(tx.tenant()))
        .filter(registration::Column::PersonId.is_in(persons.to_vec()))
        .order_by_asc(registration::Column::RegisteredAt)
        .into_model::<Row>()
        .all(&**tx)
        .await?;
    let mut out: HashMap<Uuid, Vec<RegistrationView>> = HashMap::new();
    for r in rows {
        out.entry(r.person_id).or_default().push(RegistrationView {
            id: r.id,
            institution_id: r.institution_id,
            institution_name: r.institution_name.unwrap_or_default(),
            mrn: r.mrn,
            registered_at: r.registered_at,
        });
    }
    Ok(out)
}

/// A person as the caller may see them. Identifiers (resident ID, phone, insurance number) are
/// shown in full only to a role holding `patient.identifiers` at an institution where the person
/// is registered; anyone else, searching the community's index, sees them masked.
fn view(p: &person::Model, regs: Vec<RegistrationView>, ctx: &RequestCtx, cipher: &PiiCipher) -> PersonView {
    let registered_here = regs.iter().any(|r| r.institution_id == ctx.institution);
    let full = registered_here && ctx.can(Perm::PatientIdentifiers);
    let reveal = |enc: &Option<String>, mask: fn(&str) -> String| {
        enc.as_deref().and_then(|e| cipher.decrypt(e)).map(|v| if full { v } else { mask(&v) })
    };
    PersonView {
        id: p.id,
        name: p.name.clone(),
        sex: p.sex.clone(),
        birth_date: p.birth_date,
        birth_year: p.birth_year,
        resident_id: reveal(&p.resident_id_enc, super::resident_id::mask_resident_id),
        phone: reveal(&p.phone_enc, mask_phone),
        insurance_no: reveal(&p.insurance_enc, mask_insurance),
        address_division: p.division_code.clone(),
        status: p.status.clone(),
        replaced_by: p.replaced_by,
        registered_here,
        registrations: regs,
    }
}

async fn views(tx: &Tx, ctx: &RequestCtx, cipher: &PiiCipher, persons: &[person::Model]) -> AppResult<Vec<PersonView>> {
    let ids: Vec<Uuid> = persons.iter().map(|p| p.id).collect();
    let mut regs = registrations_of(tx, &ids).await?;
    Ok(persons.iter().map(|p| view(p, regs.remove(&p.id).unwrap_or_default(), ctx, cipher)).collect())
}

/// `$match`: ranked candidates, nothing created.
pub async fn match_only(state: &AppState, ctx: &RequestCtx, d: &Demographics) -> AppResult<Vec<CandidateView>> {
    ctx.require(Perm::PatientRead)?;
    let mut tx = state.db.begin(ctx).await?;
    let w = weights(&tx).await?;
    let cands = find_candidates(&tx, &state.pii, &d.to_match_record(), &w, None).await?;
    let out = candidate_views(&tx, ctx, &state.pii, cands).await?;
    ctx.audit_reads(&mut tx, "patient.match", Purpose::Treatment, out.iter().map(|c| c.person.id));
    tx.commit().await?;
    Ok(out)
}

async fn candidate_views(
    tx: &Tx,
    ctx: &RequestCtx,
    cipher: &PiiCipher,
    cands: Vec<Candidate>,
) -> AppResult<Vec<CandidateView>> {
    let persons: Vec<person::Model> = cands.iter().map(|c| c.person.clone()).collect();
    let views = views(tx, ctx, cipher, &persons).await?;
    Ok(cands
        .into_iter()
        .zip(views)
        .map(|(c, v)| CandidateView {
            person: v,
            score: (c.score * 100.0).round() / 100.0,
            grade: c.grade,
            comparisons: c.comparisons,
        })
        .collect())
}

/// Registers a person at the caller's institution: links to a certain match, asks about a
/// probable one (409 with the candidates), or creates a new person.
pub async fn register(state: &AppState, ctx: &RequestCtx, input: RegisterInput) -> AppResult<RegisterOutcome> {
    ctx.require(Perm::PatientWrite)?;
    // A concurrent registration of the same resident ID loses the unique index race; the retry
    // then finds the winner and links to it.
    match register_once(state, ctx, &input).await {
        Err(e) if e.is(codes::CONFLICT) => register_once(state, ctx, &input).await,
        other => other,
    }
}

async fn register_once(state: &AppState, ctx: &RequestCtx, input: &RegisterInput) -> AppResult<RegisterOutcome> {
    let cipher = &state.pii;
    let mut tx = state.db.begin(ctx).await?;
    let d = &input.demographics;
    let mut held_by_new = None;
    // Whether another active person has the record's resident ID, when blocking's rows can say.
    let mut rid_known = None;
    let (person, matched) = if let Some(target) = input.link_to {
        let p = resolve_survivor(&tx, find_person_any(&tx, target).await?).await?;
        // Only a person these details match (probable or certain) may be linked: an id alone
        // must not bring someone's record into this institution.
        let w = weights(&tx).await?;
        let cands = find_candidates(&tx, cipher, &d.to_match_record(), &w, None).await?;
        if !cands.iter().any(|c| c.grade >= Grade::Probable && (c.person.id == p.id || c.person.id == target)) {
            return Err(AppError::new(
                codes::LINK_NOT_A_MATCH,
                "link_to must name one of the probable matches of these details",
            ));
        }
        (p, true)
    } else {
        let w = weights(&tx).await?;
        let Found { candidates: cands, rid_held } = find(&tx, cipher, &d.to_match_record(), &w, None).await?;
        rid_known = rid_held;
        match cands.first() {
            Some(c) if c.grade == Grade::Certain => (c.person.clone(), true),
            Some(c) if c.grade == Grade::Probable && input.create_new_reason.is_none() => {
                let probable: Vec<Candidate> = cands.into_iter().filter(|c| c.grade >= Grade::Probable).collect();
                let shown = candidate_views(&tx, ctx, cipher, probable).await?;
                ctx.audit_reads(&mut tx, "patient.match", Purpose::Treatment, shown.iter().map(|c| c.person.id));
                tx.commit().await?;
                return Err(probable_match(shown));
            }
            _ => {
                // A resident ID another person has (the same ID under another given name, a
                // new person on purpose: a child given a sibling's ID) is not this person's
                // to take: it is held on the registration, as a linked record's would be.
                held_by_new = match (&d.resident_id, rid_held) {
                    (Some(r), Some(true)) => Some(r.as_str()),
                    (Some(r), None) if rid_taken(&tx, cipher, r.as_str()).await? => Some(r.as_str()),
                    _ => None,
                };
                let p = create_person(&mut tx, ctx, cipher, d, held_by_new.is_none()).await?;
                if input.create_new_reason.is_some() {
                    for c in cands.iter().filter(|c| c.grade >= Grade::Probable) {
                        queue_duplicate(&tx, p.id, c.person.id, c.score).await?;
                    }
                }
                (p, false)
            }
        }
    };
    let (reg, _) = register_at(&mut tx, ctx, person.id).await?;
    if matched {
        let held = fill_missing(&tx, cipher, &person, d, rid_known).await?;
        hold_on_registration(&tx, cipher, &reg, held).await?;
    } else if held_by_new.is_some() {
        hold_on_registration(&tx, cipher, &reg, Held { resident_id: held_by_new, insurance_no: None }).await?;
    }
    let person = find_person_any(&tx, person.id).await?;
    let view = views(&tx, ctx, cipher, std::slice::from_ref(&person)).await?.remove(0);
    tx.audit(ctx.audit("patient.register", "person", Purpose::Treatment).resource(person.id).subject(person.id));
    tx.commit().await?;
    Ok(RegisterOutcome { person: view, registration_id: reg.id, mrn: reg.mrn, matched, created: !matched })
}

fn probable_match(candidates: Vec<CandidateView>) -> AppError {
    let list: Vec<serde_json::Value> = candidates.iter().map(candidate_json).collect();
    AppError::new(
        codes::PROBABLE_MATCH,
        "probable matches exist: resubmit with link_to (a candidate's id) or create_new with a reason",
    )
    .with_details(json!({ "candidates": list }))
}

pub fn candidate_json(c: &CandidateView) -> serde_json::Value {
    json!({
        "person": person_json(&c.person),
        "score": c.score,
        "grade": c.grade,
        "agreements": c.comparisons.iter().filter(|x| x.weight > 0.0).collect::<Vec<_>>(),
        "disagreements": c.comparisons.iter().filter(|x| x.weight <= 0.0).collect::<Vec<_>>(),
    })
}

pub fn person_json(p: &PersonView) -> serde_json::Value {
    json!({
        "id": p.id, "name": p.name, "sex": p.sex, "birth_date": p.birth_date, "birth_year": p.birth_year,
        "resident_id": p.resident_id, "phone": p.phone, "insurance_no": p.insurance_no,
        "address_division": p.address_division, "status": p.status, "registered_here": p.registered_here,
        "registrations": p.registrations.iter().map(|r| json!({
            "id": r.id, "institution_id": r.institution_id, "institution_name": r.institution_name,
            "mrn": r.mrn, "registered_at": r.registered_at,
        })).collect::<Vec<_>>(),
    })
}

/// Fields for a new person row from demographics.
pub fn new_person_row(
    tenant: Uuid,
    institution: Uuid,
    cipher: &PiiCipher,
    d: &MatchRecord,
    now: DateTime<Utc>,
) -> person::ActiveModel {
    person::ActiveModel {
        tenant_id: Set(tenant),
        id: Set(Uuid::now_v7()),
        name: Set(d.name.name.clone()),
        name_pinyin: Set(d.name.joined.clone()),
        name_initials: Set(d.name.initials.clone()),
        surname_pinyin: Set(d.name.surname.clone()),
        sex: Set(d.sex.map(|s| sex_str(s).to_string())),
        birth_date: Set(match d.birth {
            Some(Birth::Full(x)) => Some(x),
            _ => None,
        }),
        birth_year: Set(d.birth.map(Birth::year)),
        birth_md: Set(match d.birth {
            Some(Birth::Full(x)) => Some(x.format("%m%d").to_string()),
            _ => None,
        }),
        resident_id_enc: Set(d.resident_id.as_deref().map(|r| cipher.encrypt(r))),
        resident_id_hash: Set(d.resident_id.as_deref().map(|r| rid_hash(cipher, r))),
        resident_id_valid: Set(d.resident_id.is_some() && d.resident_id_valid),
        phone_enc: Set(d.phone.as_deref().map(|p| cipher.encrypt(p))),
        phone_hash: Set(d.phone.as_deref().map(|p| phone_hash(cipher, p))),
        phone_tail_hash: Set(d.phone.as_deref().map(|p| tail_hash(cipher, p))),
        insurance_enc: Set(d.insurance_no.as_deref().map(|i| cipher.encrypt(i))),
        insurance_hash: Set(d.insurance_no.as_deref().map(|i| insurance_hash(cipher, i))),
        division_code: Set(d.division.clone()),
        status: Set(ACTIVE.into()),
        replaced_by: Set(None),
        created_institution: Set(institution),
        created_at: Set(now),
        updated_at: Set(now),
    }
}

/// Creates the person, with the resident ID only when `with_id` (see `register_once`).
async fn create_person(
    tx: &mut Tx,
    ctx: &RequestCtx,
    cipher: &PiiCipher,
    d: &Demographics,
    with_id: bool,
) -> AppResult<person::Model> {
    let mut record = d.to_match_record();
    if !with_id {
        // Nor the sex and birth date that came only from that ID: they are its holder's. What
        // the record did not say is flagged missing, for the clinic to complete.
        (record.resident_id, record.resident_id_valid) = (None, false);
        (record.sex, record.birth) = (d.typed_sex, d.typed_birth);
    }
    let row = new_person_row(ctx.tenant, ctx.institution, cipher, &record, Utc::now()).insert(&**tx).await?;
    tx.emit(Some(ctx.user), row.id, &events::PersonCreated { person: row.id, institution: ctx.institution }).await?;
    Ok(row)
}

/// Whether an active person of the tenant has this (valid) resident ID.
async fn rid_taken(tx: &Tx, cipher: &PiiCipher, rid: &str) -> AppResult<bool> {
    let holder = person::Entity::find()
        .select_only()
        .column(person::Column::Id)
        .filter(person::Column::TenantId.eq(tx.tenant()))
        .filter(person::Column::ResidentIdHash.eq(rid_hash(cipher, rid)))
        .filter(person::Column::Status.eq(ACTIVE))
        .filter(person::Column::ResidentIdValid.eq(true))
        .into_tuple::<Uuid>()
        .one(&**tx)
        .await?;
    Ok(holder.is_some())
}

/// Identifiers a linked registration brought that the person did not take.
#[derive(Debug, Default)]
struct Held<'a> {
    resident_id: Option<&'a str>,
    insurance_no: Option<&'a str>,
}

/// Whether a (checked) resident ID agrees with what the person already says of sex and birth.
fn id_fits(p: &person::Model, id: &super::resident_id::ResidentId) -> bool {
    let sex_ok = p.sex.as_deref().and_then(super::domain::parse_sex).is_none_or(|s| s == id.sex());
    let birth_ok = match (p.birth_date, p.birth_year) {
        (Some(d), _) => d == id.birth_date(),
        (None, Some(y)) => y == id.birth_date().year(),
        (None, None) => true,
    };
    sex_ok && birth_ok
}

/// A linked registration may bring what the golden record lacks (a phone, an address, a full
/// birth date). A resident ID joins the person only when it passed its checks (the API parses
/// it) and agrees with the person's sex and birth date: a family member's ID given by mistake, or
/// the ID of whoever a wrong link joined, would otherwise become the person's and pull every
/// later record with it there. An insurance number never joins. What does not join, and any
/// value other than the person's own, is returned to be held on the registration.
/// `rid_held`: whether another active person has the record's resident ID (`None`: ask the
/// database, which it does only when the ID would otherwise be taken).
async fn fill_missing<'a>(
    tx: &Tx,
    cipher: &PiiCipher,
    p: &person::Model,
    d: &'a Demographics,
    rid_held: Option<bool>,
) -> AppResult<Held<'a>> {
    let mut am = p.clone().into_active_model();
    let mut changed = false;
    // Any value other than the person's own is held: never lost, never the person's.
    let insurance_differs =
        |i: &str| p.insurance_hash.as_deref().is_none_or(|h| h != insurance_hash(cipher, i).as_str());
    let mut held = Held { resident_id: None, insurance_no: d.insurance_no.as_deref().filter(|i| insurance_differs(i)) };
    if let Some(r) = &d.resident_id
        && p.resident_id_hash.as_deref().is_some_and(|h| h != rid_hash(cipher, r.as_str()).as_str())
    {
        held.resident_id = Some(r.as_str());
    }
    if p.resident_id_enc.is_none()
        && let Some(r) = &d.resident_id
    {
        // One active person per valid resident ID: an ID that fits but another person has (a
        // twin's, or a family member's when this person's birth date is a year only) is held.
        let free = id_fits(p, r)
            && !match rid_held {
                Some(held) => held,
                None => rid_taken(tx, cipher, r.as_str()).await?,
            };
        if free {
            am.resident_id_enc = Set(Some(cipher.encrypt(r.as_str())));
            am.resident_id_hash = Set(Some(rid_hash(cipher, r.as_str())));
            am.resident_id_valid = Set(true);
            changed = true;
        } else {
            held.resident_id = Some(r.as_str());
        }
    }
    if p.phone_enc.is_none()
        && let Some(ph) = &d.phone
    {
        am.phone_enc = Set(Some(cipher.encrypt(ph)));
        am.phone_hash = Set(Some(phone_hash(cipher, ph)));
        am.phone_tail_hash = Set(Some(tail_hash(cipher, ph)));
        changed = true;
    }
    if p.division_code.is_none() && d.division.is_some() {
        am.division_code = Set(d.division.clone());
        changed = true;
    }
    if p.birth_date.is_none()
        && let Some(Birth::Full(b)) = d.birth
    {
        am.birth_date = Set(Some(b));
        am.birth_md = Set(Some(b.format("%m%d").to_string()));
        am.birth_year = Set(Some(b.year()));
        changed = true;
    }
    if p.birth_year.is_none()
        && let Some(Birth::Year(y)) = d.birth
    {
        am.birth_year = Set(Some(y));
        changed = true;
    }
    // A record registered without a sex (flagged for data quality) takes the first one given.
    if p.sex.is_none()
        && let Some(s) = d.sex
    {
        am.sex = Set(Some(sex_str(s).to_string()));
        changed = true;
    }
    if changed {
        am.updated_at = Set(Utc::now());
        am.update(&**tx).await?;
    }
    Ok(held)
}

/// Keeps, encrypted, the identifiers the person did not take on the registration that brought them.
async fn hold_on_registration(tx: &Tx, cipher: &PiiCipher, reg: &registration::Model, held: Held<'_>) -> AppResult<()> {
    if held.resident_id.is_none() && held.insurance_no.is_none() {
        return Ok(());
    }
    // What a registration already holds stays: the first value it brought is kept.
    let mut am = reg.clone().into_active_model();
    let mut changed = false;
    if let Some(r) = held.resident_id.filter(|_| reg.held_resident_id_enc.is_none()) {
        am.held_resident_id_enc = Set(Some(cipher.encrypt(r)));
        changed = true;
    }
    if let Some(i) = held.insurance_no.filter(|_| reg.held_insurance_enc.is_none()) {
        am.held_insurance_enc = Set(Some(cipher.encrypt(i)));
        changed = true;
    }
    if changed {
        am.update(&**tx).await?;
    }
    Ok(())
}

/// Registers `person` at the caller's institution unless it already is; returns the
/// registration and whether it is new.
async fn register_at(tx: &mut Tx, ctx: &RequestCtx, person: Uuid) -> AppResult<(registration::Model, bool)> {
    if let Some(existing) = registration::Entity::find()
        .filter(registration::Column::TenantId.eq(ctx.tenant))
        .filter(registration::Column::InstitutionId.eq(ctx.institution))
        .filter(registration::Column::PersonId.eq(person))
        .one(&**tx)
        .await?
    {
        return Ok((existing, false));
    }
    let mrn = next_mrn(tx, ctx.institution).await?;
    let reg = registration::ActiveModel {
        tenant_id: Set(ctx.tenant),
        id: Set(Uuid::now_v7()),
        person_id: Set(person),
        institution_id: Set(ctx.institution),
        mrn: Set(mrn),
        registered_at: Set(Utc::now()),
        registered_by: Set(Some(ctx.user)),
        held_resident_id_enc: Set(None),
        held_insurance_enc: Set(None),
    }
    .insert(&**tx)
    .await?;
    let event = events::PersonRegistered { person, institution: ctx.institution, registration: reg.id };
    tx.emit(Some(ctx.user), person, &event).await?;
    Ok((reg, true))
}

/// Medical record numbers a process reserves at a time on PostgreSQL (see `NumberBlocks`).
const MRN_BLOCK: i64 = 16;
/// How long a registration waits for a pooled connection to reserve a block before it takes
/// its number in its own transaction instead (a pool held by registrations that all wait for
/// a second connection would otherwise stall until the acquire timeout).
const MRN_BLOCK_WAIT: std::time::Duration = std::time::Duration::from_millis(100);

/// The institution's next medical record number, from a per-institution counter. On PostgreSQL
/// it comes from a block this process reserved ahead in a short transaction of its own, so
/// registrations at one institution do not queue on the counter row until each one commits;
/// a registration that rolls back leaves its number unused.
pub async fn next_mrn(tx: &Tx, institution: Uuid) -> AppResult<String> {
    let n = match tx.ahead() {
        Some((db, blocks)) => match blocks.take(tx.tenant(), institution) {
            Some(n) => n,
            None => match tokio::time::timeout(MRN_BLOCK_WAIT, reserve_block(db, tx.tenant(), institution)).await {
                Ok(Ok(first)) => {
                    blocks.put(tx.tenant(), institution, first + 1..first + MRN_BLOCK);
                    first
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "reserving a block of medical record numbers failed");
                    reserve_mrns(tx, institution, 1).await?
                }
                Err(_) => reserve_mrns(tx, institution, 1).await?,
            },
        },
        None => reserve_mrns(tx, institution, 1).await?,
    };
    Ok(format!("{n:08}"))
}

/// Reserves a block of the institution's numbers in a transaction of its own; returns the first.
async fn reserve_block(db: &Db, tenant: Uuid, institution: Uuid) -> AppResult<i64> {
    let tx = db.begin(&SystemScope { tenant }).await?;
    let first = reserve_mrns(&tx, institution, MRN_BLOCK).await?;
    tx.commit().await?;
    Ok(first)
}

/// Reserves `count` consecutive medical record numbers of the institution and returns the first.
/// The counter row is updated in place (a row lock until commit), so concurrent registrations and
/// imports never share a number.
pub async fn reserve_mrns(tx: &Tx, institution: Uuid, count: i64) -> AppResult<i64> {
    let backend = tx.get_database_backend();
    let sql = match backend {
        DbBackend::Postgres => {
            "INSERT INTO mrn_counters (tenant_id, institution_id, next_value) VALUES ($1, $2, 1 + $3)
             ON CONFLICT (tenant_id, institution_id) DO UPDATE SET next_value = mrn_counters.next_value + $3
             RETURNING next_value - $3 AS value"
        }
        _ => {
            "INSERT INTO mrn_counters (tenant_id, institution_id, next_value) VALUES (?1, ?2, 1 + ?3)
             ON CONFLICT (tenant_id, institution_id) DO UPDATE SET next_value = mrn_counters.next_value + ?3
             RETURNING next_value - ?3 AS value"
        }
    };
    let values = [tx.tenant().into(), institution.into(), count.into()];
    let row = tx
        .query_one_raw(Statement::from_sql_and_values(backend, sql, values))
        .await?
        .ok_or_else(|| AppError::internal(anyhow::anyhow!("MRN counter returned nothing")))?;
    Ok(row.try_get("", "value")?)
}

async fn queue_duplicate(tx: &Tx, x: Uuid, y: Uuid, score: f64) -> AppResult<()> {
    let (a, b) = if x < y { (x, y) } else { (y, x) };
    let exists = duplicate_candidate::Entity::find()
        .filter(duplicate_candidate::Column::TenantId.eq(tx.tenant()))
        .filter(duplicate_candidate::Column::PersonA.eq(a))
        .filter(duplicate_candidate::Column::PersonB.eq(b))
        .one(&**tx)
        .await?;
    if exists.is_none() {
        duplicate_candidate::ActiveModel {
            tenant_id: Set(tx.tenant()),
            id: Set(Uuid::now_v7()),
            person_a: Set(a),
            person_b: Set(b),
            score: Set(score),
            status: Set("open".into()),
            detected_at: Set(Utc::now()),
            resolved_at: Set(None),
            resolved_by: Set(None),
            reason: Set(None),
        }
        .insert(&**tx)
        .await?;
    }
    Ok(())
}

/// A person, for a caller whose institution has them registered; 404 otherwise.
pub async fn get(state: &AppState, ctx: &RequestCtx, id: Uuid) -> AppResult<PersonView> {
    ctx.require(Perm::PatientRead)?;
    let mut tx = state.db.begin(ctx).await?;
    let p = find_person_any(&tx, id).await?;
    let v = views(&tx, ctx, &state.pii, std::slice::from_ref(&p)).await?.remove(0);
    if !v.registered_here && !ctx.can(Perm::PatientMerge) {
        tx.audit(
            ctx.audit("patient.read", "person", Purpose::Treatment)
                .resource(id)
                .subject(id)
                .outcome(crate::platform::audit::Outcome::Denied),
        );
        tx.commit().await?;
        return Err(AppError::new(codes::PERSON_NOT_FOUND, "no such person registered at your institution"));
    }
    ctx.audit_reads(&mut tx, "patient.read", Purpose::Treatment, [id]);
    tx.commit().await?;
    Ok(v)
}

/// A revealed identifier and the reveal's record.
#[derive(Debug, Clone)]
pub struct Revealed {
    pub id: Uuid,
    pub field: IdentifierField,
    /// `None` when the person has no such identifier on record.
    pub value: Option<String>,
}

/// Shows one identifier of a person registered at the caller's institution in full, for a
/// declared purpose and a written reason: recorded in `identifier_reveals`, audited with that
/// purpose, and limited to `REVEALS_PER_HOUR` per user. Anyone else gets 404, as for reads.
pub async fn reveal(
    state: &AppState,
    ctx: &RequestCtx,
    id: Uuid,
    field: IdentifierField,
    purpose: RevealPurpose,
    reason: &str,
) -> AppResult<Revealed> {
    ctx.require(Perm::PatientRead)?;
    let reason = reason.trim();
    if !(2..=200).contains(&reason.chars().count()) {
        return Err(AppError::new(codes::REASON_REQUIRED, "give a reason of 2 to 200 characters"));
    }
    let key = format!("reveal:{}:{}", ctx.tenant, ctx.user);
    if state.cache.hit(&key, std::time::Duration::from_secs(3600)).await? > REVEALS_PER_HOUR {
        return Err(AppError::new(
            codes::REVEAL_LIMIT_REACHED,
            format!("at most {REVEALS_PER_HOUR} identifiers may be revealed per hour"),
        ));
    }
    let mut tx = state.db.begin(ctx).await?;
    let person = resolve_survivor(&tx, find_person_any(&tx, id).await?).await?;
    if !registered_at(&tx, person.id, ctx.institution).await? {
        tx.audit(
            ctx.audit("patient.reveal", "person", purpose.audit_purpose())
                .resource(id)
                .subject(id)
                .outcome(crate::platform::audit::Outcome::Denied),
        );
        tx.commit().await?;
        return Err(AppError::new(codes::PERSON_NOT_FOUND, "no such person registered at your institution"));
    }
    let enc = match field {
        IdentifierField::ResidentId => &person.resident_id_enc,
        IdentifierField::Phone => &person.phone_enc,
        IdentifierField::InsuranceNo => &person.insurance_enc,
    };
    let value = enc.as_deref().and_then(|e| state.pii.decrypt(e));
    let row = identifier_reveal::ActiveModel {
        tenant_id: Set(ctx.tenant),
        id: Set(Uuid::now_v7()),
        user_id: Set(ctx.user),
        institution_id: Set(ctx.institution),
        person_id: Set(person.id),
        field: Set(field),
        purpose: Set(purpose),
        reason: Set(reason.to_string()),
        revealed_at: Set(Utc::now()),
    }
    .insert(&*tx)
    .await?;
    tx.audit(
        ctx.audit("patient.reveal", "identifier_reveal", purpose.audit_purpose()).resource(row.id).subject(person.id),
    );
    tx.commit().await?;
    Ok(Revealed { id: row.id, field, value })
}

pub struct SearchInput {
    pub name: Option<String>,
    pub resident_id: Option<String>,
    pub phone: Option<String>,
    pub birth_date: Option<String>,
    pub page: u64,
    pub page_size: u64,
}

/// Community-wide search of active persons; criteria combine with AND.
pub async fn search(state: &AppState, ctx: &RequestCtx, q: SearchInput) -> AppResult<(Vec<PersonView>, bool)> {
    ctx.require(Perm::PatientRead)?;
    let cipher = &state.pii;
    let mut cond = Condition::all().add(person::Column::TenantId.eq(ctx.tenant)).add(person::Column::Status.eq(ACTIVE));
    let mut any = false;
    if let Some(name) = q.name.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        any = true;
        let lower = name.to_ascii_lowercase();
        if is_initials_query(&lower) {
            cond = cond.add(
                Condition::any()
                    .add(person::Column::NameInitials.eq(&lower))
                    .add(person::Column::NamePinyin.eq(&lower)),
            );
        } else {
            let key = NameKey::parse(name).map_err(super::domain::name_error)?;
            if is_surname_only(&key) {
                // A surname alone (张, 欧阳): everyone with it, written with these characters
                // (章 shares 张's pinyin but is another surname).
                cond = cond
                    .add(person::Column::SurnamePinyin.eq(&key.surname))
                    .add(person::Column::Name.starts_with(&key.name));
            } else {
                cond = cond.add(person::Column::NamePinyin.eq(key.joined));
            }
        }
    }
    if let Some(rid) = q.resident_id.as_deref().filter(|s| !s.trim().is_empty()) {
        any = true;
        let rid = super::resident_id::ResidentId::parse(rid).map_err(super::domain::resident_id_error)?;
        cond = cond.add(person::Column::ResidentIdHash.eq(rid_hash(cipher, rid.as_str())));
    }
    if let Some(phone) = q.phone.as_deref().filter(|s| !s.trim().is_empty()) {
        any = true;
        cond = cond.add(person::Column::PhoneHash.eq(phone_hash(cipher, &super::domain::parse_phone(phone)?)));
    }
    if let Some(b) = q.birth_date.as_deref().filter(|s| !s.is_empty()) {
        any = true;
        cond = cond.add(match super::domain::parse_birth(b)? {
            Birth::Full(d) => person::Column::BirthDate.eq(d),
            Birth::Year(y) => person::Column::BirthYear.eq(y),
        });
    }
    if !any {
        return Err(AppError::new(codes::SEARCH_CRITERIA_REQUIRED, "give a name, resident_id, phone or birth_date"));
    }
    let mut tx = state.db.begin(ctx).await?;
    let mut rows = person::Entity::find()
        .filter(cond)
        .order_by_asc(person::Column::NamePinyin)
        .order_by_asc(person::Column::Id)
        .offset((q.page.max(1) - 1) * q.page_size)
        .limit(q.page_size + 1)
        .all(&*tx)
        .await?;
    let more = rows.len() as u64 > q.page_size;
    rows.truncate(q.page_size as usize);
    let out = views(&tx, ctx, cipher, &rows).await?;
    ctx.audit_reads(&mut tx, "patient.search", Purpose::Treatment, out.iter().map(|p| p.id));
    tx.commit().await?;
    Ok((out, more))
}

/// A query that is a Chinese surname and nothing more.
fn is_surname_only(key: &NameKey) -> bool {
    !key.surname.is_empty() && key.surname == key.joined && key.name.chars().all(super::names::is_han)
}

/// Snapshot of what a merge changes, so an unmerge restores it exactly.
#[derive(serde::Serialize, serde::Deserialize)]
struct MergeSnapshot {
    merged: person::Model,
    /// (candidate id, status before, resolved_at, resolved_by, reason)
    candidates: Vec<duplicate_candidate::Model>,
}

/// Merges `merged` into `survivor`: the merged person is kept (status `merged`, `replaced_by`
/// the survivor) so its history stays reachable; its registrations move to the survivor.
pub async fn merge(state: &AppState, ctx: &RequestCtx, survivor: Uuid, merged: Uuid, reason: &str) -> AppResult<Uuid> {
    ctx.require(Perm::PatientMerge)?;
    check_reason(reason)?;
    if survivor == merged {
        return Err(AppError::new(codes::MERGE_SAME_PERSON, "a person cannot be merged into themselves"));
    }
    let mut tx = state.db.begin(ctx).await?;
    // Lock both rows, lower id first, so concurrent merges of the same two persons queue up
    // instead of both succeeding (and pointing at each other).
    let (first, second) = if survivor < merged { (survivor, merged) } else { (merged, survivor) };
    let locked_first = lock_person(&tx, first).await?;
    let locked_second = lock_person(&tx, second).await?;
    let (a, b) = if first == survivor { (locked_first, locked_second) } else { (locked_second, locked_first) };
    if a.status != ACTIVE || b.status != ACTIVE {
        return Err(AppError::new(codes::PERSON_NOT_ACTIVE, "both persons must be active (not already merged)"));
    }
    // B's registrations move to A, except where A is registered already: those stay with B,
    // reachable through replaced_by (a person has one registration per institution).
    let survivor_at: std::collections::HashSet<Uuid> = registration::Entity::find()
        .filter(registration::Column::TenantId.eq(ctx.tenant))
        .filter(registration::Column::PersonId.eq(survivor))
        .all(&*tx)
        .await?
        .into_iter()
        .map(|r| r.institution_id)
        .collect();
    let moved: Vec<Uuid> = registration::Entity::find()
        .filter(registration::Column::TenantId.eq(ctx.tenant))
        .filter(registration::Column::PersonId.eq(merged))
        .all(&*tx)
        .await?
        .into_iter()
        .filter(|r| !survivor_at.contains(&r.institution_id))
        .map(|r| r.id)
        .collect();
    let (lo, hi) = if survivor < merged { (survivor, merged) } else { (merged, survivor) };
    let pairs = duplicate_candidate::Entity::find()
        .filter(duplicate_candidate::Column::TenantId.eq(ctx.tenant))
        .filter(duplicate_candidate::Column::PersonA.eq(lo))
        .filter(duplicate_candidate::Column::PersonB.eq(hi))
        .all(&*tx)
        .await?;
    let snapshot = MergeSnapshot { merged: b.clone(), candidates: pairs.clone() };
    let now = Utc::now();
    if !moved.is_empty() {
        registration::Entity::update_many()
            .col_expr(registration::Column::PersonId, survivor.into())
            .filter(registration::Column::TenantId.eq(ctx.tenant))
            .filter(registration::Column::Id.is_in(moved.clone()))
            .exec(&*tx)
            .await?;
    }
    let mut am = b.into_active_model();
    am.status = Set(MERGED.into());
    am.replaced_by = Set(Some(survivor));
    am.updated_at = Set(now);
    am.update(&*tx).await?;
    for p in pairs {
        let mut am = p.into_active_model();
        am.status = Set("merged".into());
        am.resolved_at = Set(Some(now));
        am.resolved_by = Set(Some(ctx.user));
        am.update(&*tx).await?;
    }
    let id = Uuid::now_v7();
    person_merge::ActiveModel {
        tenant_id: Set(ctx.tenant),
        id: Set(id),
        survivor_id: Set(survivor),
        merged_id: Set(merged),
        reason: Set(reason.to_string()),
        merged_by: Set(ctx.user),
        merged_at: Set(now),
        moved_registrations: Set(json!(moved)),
        merged_snapshot: Set(serde_json::to_value(&snapshot).map_err(AppError::internal)?),
        unmerged_at: Set(None),
        unmerged_by: Set(None),
        unmerge_reason: Set(None),
    }
    .insert(&*tx)
    .await?;
    tx.emit(Some(ctx.user), survivor, &events::PersonMerged { merge: id, survivor, merged }).await?;
    for subject in [survivor, merged] {
        tx.audit(ctx.audit("patient.merge", "person_merge", Purpose::Administration).resource(id).subject(subject));
    }
    tx.commit().await?;
    Ok(id)
}

/// Undoes a merge: the merged person, its registrations and the review queue return to exactly
/// what they were before.
pub async fn unmerge(state: &AppState, ctx: &RequestCtx, merge_id: Uuid, reason: &str) -> AppResult<()> {
    ctx.require(Perm::PatientMerge)?;
    check_reason(reason)?;
    let mut tx = state.db.begin(ctx).await?;
    let m = person_merge::Entity::find_by_id((ctx.tenant, merge_id))
        .one(&*tx)
        .await?
        .ok_or_else(|| AppError::new(codes::MERGE_NOT_FOUND, "no such merge"))?;
    if m.unmerged_at.is_some() {
        return Err(AppError::new(codes::MERGE_ALREADY_UNDONE, "this merge was already undone"));
    }
    let snapshot: MergeSnapshot = serde_json::from_value(m.merged_snapshot.clone()).map_err(AppError::internal)?;
    let current = find_person_any(&tx, m.merged_id).await?;
    if current.status != MERGED || current.replaced_by != Some(m.survivor_id) {
        return Err(AppError::new(codes::MERGE_NOT_REVERSIBLE, "the merged person has changed since the merge"));
    }
    let moved: Vec<Uuid> = serde_json::from_value(m.moved_registrations.clone()).map_err(AppError::internal)?;
    if !moved.is_empty() {
        registration::Entity::update_many()
            .col_expr(registration::Column::PersonId, m.merged_id.into())
            .filter(registration::Column::TenantId.eq(ctx.tenant))
            .filter(registration::Column::Id.is_in(moved))
            .exec(&*tx)
            .await?;
    }
    person::ActiveModel::from(snapshot.merged).reset_all().update(&*tx).await?;
    for c in snapshot.candidates {
        duplicate_candidate::ActiveModel::from(c).reset_all().update(&*tx).await?;
    }
    let now = Utc::now();
    let mut am = m.clone().into_active_model();
    am.unmerged_at = Set(Some(now));
    am.unmerged_by = Set(Some(ctx.user));
    am.unmerge_reason = Set(Some(reason.to_string()));
    am.update(&*tx).await?;
    let event = events::PersonUnmerged { merge: merge_id, survivor: m.survivor_id, merged: m.merged_id };
    tx.emit(Some(ctx.user), m.survivor_id, &event).await?;
    for subject in [m.survivor_id, m.merged_id] {
        tx.audit(
            ctx.audit("patient.unmerge", "person_merge", Purpose::Administration).resource(merge_id).subject(subject),
        );
    }
    tx.commit().await
}

fn check_reason(reason: &str) -> AppResult<()> {
    let n = reason.trim().chars().count();
    if !(2..=500).contains(&n) {
        return Err(AppError::new(codes::REASON_REQUIRED, "give a reason of 2 to 500 characters"));
    }
    Ok(())
}

#[derive(Debug, Clone)]
pub struct DuplicatePair {
    pub id: Uuid,
    pub score: f64,
    pub status: String,
    pub detected_at: DateTime<Utc>,
    pub a: PersonView,
    pub b: PersonView,
}

/// The review queue, highest score first.
pub async fn duplicates(state: &AppState, ctx: &RequestCtx, status: &str, limit: u64) -> AppResult<Vec<DuplicatePair>> {
    ctx.require(Perm::PatientMerge)?;
    let mut tx = state.db.begin(ctx).await?;
    let pairs = duplicate_candidate::Entity::find()
        .filter(duplicate_candidate::Column::TenantId.eq(ctx.tenant))
        .filter(duplicate_candidate::Column::Status.eq(status))
        .order_by_desc(duplicate_candidate::Column::Score)
        .limit(limit)
        .all(&*tx)
        .await?;
    let ids: Vec<Uuid> =
        pairs.iter().flat_map(|p| [p.person_a, p.person_b]).collect::<HashSet<_>>().into_iter().collect();
    let persons = person::Entity::find()
        .filter(person::Column::TenantId.eq(ctx.tenant))
        .filter(person::Column::Id.is_in(ids))
        .all(&*tx)
        .await?;
    let views: BTreeMap<Uuid, PersonView> =
        views(&tx, ctx, &state.pii, &persons).await?.into_iter().map(|v| (v.id, v)).collect();
    let out: Vec<DuplicatePair> = pairs
        .into_iter()
        .filter_map(|p| {
            Some(DuplicatePair {
                id: p.id,
                score: p.score,
                status: p.status,
                detected_at: p.detected_at,
                a: views.get(&p.person_a)?.clone(),
                b: views.get(&p.person_b)?.clone(),
            })
        })
        .collect();
    // The MPI steward's review of the duplicate queue is administration, not care.
    ctx.audit_reads(&mut tx, "patient.review", Purpose::Administration, views.keys().copied());
    tx.commit().await?;
    Ok(out)
}

async fn open_pair(state: &AppState, ctx: &RequestCtx, id: Uuid) -> AppResult<duplicate_candidate::Model> {
    let tx = state.db.begin(ctx).await?;
    let pair = duplicate_candidate::Entity::find_by_id((ctx.tenant, id))
        .one(&*tx)
        .await?
        .ok_or_else(|| AppError::new(codes::DUPLICATE_NOT_FOUND, "no such duplicate pair"))?;
    tx.rollback().await?;
    if pair.status != "open" {
        return Err(AppError::new(codes::DUPLICATE_ALREADY_RESOLVED, "this pair was already resolved"));
    }
    Ok(pair)
}

pub async fn merge_pair(state: &AppState, ctx: &RequestCtx, id: Uuid, survivor: Uuid, reason: &str) -> AppResult<Uuid> {
    ctx.require(Perm::PatientMerge)?;
    let pair = open_pair(state, ctx, id).await?;
    let merged = if survivor == pair.person_a {
        pair.person_b
    } else if survivor == pair.person_b {
        pair.person_a
    } else {
        return Err(AppError::new(codes::SURVIVOR_NOT_IN_PAIR, "survivor_id must be one of the pair"));
    };
    merge(state, ctx, survivor, merged, reason).await
}

pub async fn dismiss_pair(state: &AppState, ctx: &RequestCtx, id: Uuid, reason: &str) -> AppResult<()> {
    ctx.require(Perm::PatientMerge)?;
    check_reason(reason)?;
    let pair = open_pair(state, ctx, id).await?;
    let mut tx = state.db.begin(ctx).await?;
    let mut am = pair.clone().into_active_model();
    am.status = Set("not_duplicate".into());
    am.resolved_at = Set(Some(Utc::now()));
    am.resolved_by = Set(Some(ctx.user));
    am.reason = Set(Some(reason.to_string()));
    am.update(&*tx).await?;
    for subject in [pair.person_a, pair.person_b] {
        tx.audit(
            ctx.audit("patient.not_duplicate", "duplicate_pair", Purpose::Administration).resource(id).subject(subject),
        );
    }
    tx.commit().await
}

/// For bulk work (dedup, seeding): records a probable pair in the review queue.
pub async fn queue_pair(tx: &Tx, x: Uuid, y: Uuid, score: f64) -> AppResult<()> {
    queue_duplicate(tx, x, y, score).await
}

/// Whether the person is registered at the institution (registrations of persons merged into
/// them have moved to them).
pub async fn registered_at(tx: &Tx, person: Uuid, institution: Uuid) -> AppResult<bool> {
    let ids = person_and_merged(tx, person).await?;
    Ok(registration::Entity::find()
        .filter(registration::Column::TenantId.eq(tx.tenant()))
        .filter(registration::Column::PersonId.is_in(ids))
        .filter(registration::Column::InstitutionId.eq(institution))
        .one(&**tx)
        .await?
        .is_some())
}

/// The person and everyone merged into them, directly or through a chain of merges: their
/// clinical history belongs to the survivor.
pub async fn person_and_merged(tx: &Tx, person: Uuid) -> AppResult<Vec<Uuid>> {
    let mut all = vec![person];
    let mut frontier = vec![person];
    while !frontier.is_empty() && all.len() < 1000 {
        let next: Vec<Uuid> = person::Entity::find()
            .filter(person::Column::TenantId.eq(tx.tenant()))
            .filter(person::Column::ReplacedBy.is_in(frontier.clone()))
            .filter(person::Column::Status.eq(MERGED))
            .all(&**tx)
            .await?
            .into_iter()
            .map(|p| p.id)
            .filter(|id| !all.contains(id))
            .collect();
        all.extend(&next);
        frontier = next;
    }
    Ok(all)
}

/// Names of persons by id (for lists such as a referral inbox, whose readers are clinicians).
pub async fn names_of(tx: &Tx, ids: &[Uuid]) -> AppResult<HashMap<Uuid, String>> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    Ok(person::Entity::find()
        .filter(person::Column::TenantId.eq(tx.tenant()))
        .filter(person::Column::Id.is_in(ids.to_vec()))
        .all(&**tx)
        .await?
        .into_iter()
        .map(|p| (p.id, p.name))
        .collect())
}

/// What a worklist shows of a person: name, sex, birth, and the phone to call them on (masked
/// for roles without `patient.identifiers`).
#[derive(Debug, Clone)]
pub struct Contact {
    pub name: String,
    pub sex: Option<String>,
    pub birth_date: Option<chrono::NaiveDate>,
    pub birth_year: Option<i32>,
    pub phone: Option<String>,
}

/// Age in whole years on `day`, from the birth date or, failing that, the birth year.
pub fn age_on(birth_date: Option<chrono::NaiveDate>, birth_year: Option<i32>, day: chrono::NaiveDate) -> Option<i32> {
    use chrono::Datelike;
    match (birth_date, birth_year) {
        (Some(b), _) => {
            let mut age = day.year() - b.year();
            if (day.month(), day.day()) < (b.month(), b.day()) {
                age -= 1;
            }
            Some(age)
        }
        (None, Some(y)) => Some(day.year() - y),
        _ => None,
    }
}

impl Contact {
    /// Age in whole years on `day`, from the birth date or, failing that, the birth year.
    pub fn age_on(&self, day: chrono::NaiveDate) -> Option<i32> {
        age_on(self.birth_date, self.birth_year, day)
    }
}

/// Who a referral is about, for the receiving clinician reading its case: name, sex and birth,
/// no identifier (a merged person is found under the id the referral names).
pub async fn brief_of(tx: &Tx, id: Uuid) -> AppResult<Option<Contact>> {
    Ok(person::Entity::find_by_id((tx.tenant(), id)).one(&**tx).await?.map(|p| Contact {
        name: p.name,
        sex: p.sex,
        birth_date: p.birth_date,
        birth_year: p.birth_year,
        phone: None,
    }))
}

pub async fn contacts_of(
    tx: &Tx,
    ctx: &RequestCtx,
    cipher: &PiiCipher,
    ids: &[Uuid],
) -> AppResult<HashMap<Uuid, Contact>> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let full = ctx.can(Perm::PatientIdentifiers);
    let unique: Vec<Uuid> = ids.iter().copied().collect::<std::collections::BTreeSet<_>>().into_iter().collect();
    // Only the columns a contact needs: lists ask for hundreds of persons at once.
    type Row = (Uuid, String, Option<String>, Option<chrono::NaiveDate>, Option<i32>, Option<String>);
    let rows: Vec<Row> = person::Entity::find()
        .select_only()
        .columns([
            person::Column::Id,
            person::Column::Name,
            person::Column::Sex,
            person::Column::BirthDate,
            person::Column::BirthYear,
            person::Column::PhoneEnc,
        ])
        .filter(person::Column::TenantId.eq(tx.tenant()))
        .filter(person::Column::Id.is_in(unique))
        .into_tuple()
        .all(&**tx)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(id, name, sex, birth_date, birth_year, phone_enc)| {
            let phone =
                phone_enc.as_deref().and_then(|e| cipher.decrypt(e)).map(|v| if full { v } else { mask_phone(&v) });
            (id, Contact { name, sex, birth_date, birth_year, phone })
        })
        .collect())
}
