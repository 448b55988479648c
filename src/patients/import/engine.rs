//! The import itself. The community's active persons are loaded once into an in-memory index
//! keyed like real-time matching's blocking; each row is scored against its candidates with the
//! same comparisons, weights and caps as `POST /patients` (`matching::score`), in file order, so
//! a row meets every person before it. A certain match links (the person takes only what real-time
//! linking lets it take, the rest is held on the registration); anything else is a new person,
//! with its probable matches queued for review. Rows are written in batches, each in one
//! transaction with multi-row inserts, its `import_rows` keys and one audit row, so a crash loses
//! at most the batch in flight and a rerun resumes after the last committed one.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Datelike, Utc};
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QuerySelect, Set};
use uuid::Uuid;

use super::mapping::Positions;
use super::read::Table;
use super::report::{self, Flagged, Link, Pair, Report};
use super::row::{self, Parsed, Rejected, Row};
use crate::patients::dedup::{index_keys, query_keys};
use crate::patients::domain::record_of;
use crate::patients::entity::{import_job, import_row, person, registration};
use crate::patients::matching::{Birth, Grade, MatchRecord, MatchWeights, Scored, score};
use crate::patients::service::{ACTIVE, new_person_row, queue_pair, reserve_mrns, weights};
use crate::platform::audit::{AuditEntry, Purpose};
use crate::platform::pii::PiiCipher;
use crate::platform::{AppError, AppResult, Db, SystemScope, Tx};

/// How many candidates one row is scored against at most (real-time reads at most 2,000).
const MAX_CANDIDATES: usize = 2000;

#[derive(Debug, Clone)]
pub struct Options {
    pub job: Uuid,
    pub batch: usize,
    /// Who runs it (an upload), for the audit rows; `None` from the command line.
    pub actor: Option<(Uuid, Uuid)>,
    /// Stop after this many committed batches, as a crash would (tests of resuming).
    pub stop_after_batches: Option<usize>,
}

/// Called after each committed batch with (rows done, rows in the file).
pub type Progress<'a> = &'a (dyn Fn(u64, u64) + Send + Sync);

struct Known {
    id: Uuid,
    record: MatchRecord,
    institution: Uuid,
    persisted: bool,
}

/// Persons by blocking key.
#[derive(Default)]
struct Index {
    people: Vec<Known>,
    blocks: HashMap<u64, Vec<u32>>,
    rids: HashSet<String>,
}

impl Index {
    fn add(&mut self, known: Known) -> u32 {
        let i = self.people.len() as u32;
        for k in index_keys(&known.record) {
            self.blocks.entry(k).or_default().push(i);
        }
        if let Some(r) = known.record.resident_id.as_ref().filter(|_| known.record.resident_id_valid) {
            self.rids.insert(r.clone());
        }
        self.people.push(known);
        i
    }

    /// Candidates graded at least possible, best first (ties: the older person).
    fn candidates(&self, q: &MatchRecord, w: &MatchWeights) -> Vec<(u32, Scored)> {
        let mut seen: Vec<u32> = query_keys(q).iter().filter_map(|k| self.blocks.get(k)).flatten().copied().collect();
        seen.sort_unstable();
        seen.dedup();
        seen.truncate(MAX_CANDIDATES);
        let mut out: Vec<(u32, Scored)> = seen
            .into_iter()
            .map(|i| (i, score(q, &self.people[i as usize].record, w)))
            .filter(|(_, s)| s.grade != Grade::None)
            .collect();
        out.sort_by(|a, b| {
            b.1.score.total_cmp(&a.1.score).then(self.people[a.0 as usize].id.cmp(&self.people[b.0 as usize].id))
        });
        out
    }

    /// What a linked row brings to the person, by the rules of real-time linking
    /// (`service::fill_missing`): a phone, an address, a full birth date, and a resident ID that
    /// fits the person's sex and birth date. Returns whether the person changed and the
    /// identifiers to hold on the registration.
    fn fill(&mut self, i: u32, d: &MatchRecord) -> (bool, Option<String>, Option<String>) {
        let before: HashSet<u64> = index_keys(&self.people[i as usize].record).into_iter().collect();
        let p = &mut self.people[i as usize].record;
        let mut changed = false;
        let held_insurance = d.insurance_no.clone().filter(|x| p.insurance_no.as_ref() != Some(x));
        let mut held_rid = None;
        if let Some(r) = d.resident_id.as_ref().filter(|_| d.resident_id_valid) {
            match &p.resident_id {
                Some(own) if own != r => held_rid = Some(r.clone()),
                Some(_) => {}
                None if fits(p, d) && !self.rids.contains(r) => {
                    p.resident_id = Some(r.clone());
                    p.resident_id_valid = true;
                    self.rids.insert(r.clone());
                    changed = true;
                }
                None => held_rid = Some(r.clone()),
            }
        }
        if p.phone.is_none() && d.phone.is_some() {
            p.phone = d.phone.clone();
            changed = true;
        }
        if p.division.is_none() && d.division.is_some() {
            p.division = d.division.clone();
            changed = true;
        }
        if let (Some(Birth::Full(b)), false) = (d.birth, matches!(p.birth, Some(Birth::Full(_)))) {
            p.birth = Some(Birth::Full(b));
            changed = true;
        }
        for k in index_keys(p) {
            if !before.contains(&k) {
                self.blocks.entry(k).or_default().push(i);
            }
        }
        (changed, held_rid, held_insurance)
    }
}

/// Whether the record's sex and birth date agree with the person's (a resident ID carries both).
fn fits(p: &MatchRecord, d: &MatchRecord) -> bool {
    let sex_ok = match (p.sex, d.sex) {
        (Some(a), Some(b)) => a == b,
        _ => true,
    };
    let birth_ok = match (p.birth, d.birth) {
        (Some(Birth::Full(a)), Some(Birth::Full(b))) => a == b,
        (Some(a), Some(b)) => a.year() == b.year(),
        _ => true,
    };
    sex_ok && birth_ok
}

/// What the tenant holds before the run.
struct Start {
    institutions: HashMap<String, Uuid>,
    weights: MatchWeights,
    index: Index,
    registered: HashSet<(Uuid, Uuid)>,
    done: HashSet<String>,
}

async fn load(db: &Db, cipher: &PiiCipher, tenant: Uuid) -> AppResult<Start> {
    let tx = db.begin(&SystemScope { tenant }).await?;
    let institutions =
        crate::tenancy::service::list_institutions(&tx).await?.into_iter().map(|i| (i.code, i.id)).collect();
    let weights = weights(&tx).await?;
    let mut index = Index::default();
    let mut persons = person::Entity::find()
        .filter(person::Column::TenantId.eq(tenant))
        .filter(person::Column::Status.eq(ACTIVE))
        .all(&*tx)
        .await?;
    persons.sort_by_key(|p| p.id);
    for p in persons {
        let known =
            Known { id: p.id, record: record_of(&p, cipher), institution: p.created_institution, persisted: true };
        index.add(known);
    }
    let registered = registration::Entity::find()
        .select_only()
        .column(registration::Column::PersonId)
        .column(registration::Column::InstitutionId)
        .filter(registration::Column::TenantId.eq(tenant))
        .into_tuple::<(Uuid, Uuid)>()
        .all(&*tx)
        .await?
        .into_iter()
        .collect();
    let done = import_row::Entity::find()
        .select_only()
        .column(import_row::Column::SourceKey)
        .filter(import_row::Column::TenantId.eq(tenant))
        .into_tuple::<String>()
        .all(&*tx)
        .await?
        .into_iter()
        .collect();
    tx.rollback().await?;
    Ok(Start { institutions, weights, index, registered, done })
}

/// One batch's writes.
#[derive(Default)]
struct Pending {
    new: Vec<u32>,
    changed: HashSet<u32>,
    registrations: Vec<registration::ActiveModel>,
    rows: Vec<import_row::ActiveModel>,
    pairs: Vec<(Uuid, Uuid, f64)>,
}

struct Run<'a> {
    cipher: &'a PiiCipher,
    tenant: Uuid,
    opts: &'a Options,
    start: Start,
    report: Report,
    seen: HashSet<String>,
    now: DateTime<Utc>,
}

/// Imports the rows of `table`; see the module comment.
pub async fn run(
    db: &Db,
    cipher: &PiiCipher,
    tenant: Uuid,
    table: &Table,
    at: &Positions,
    opts: &Options,
    progress: Progress<'_>,
) -> AppResult<Report> {
    let start = load(db, cipher, tenant).await?;
    let total = table.rows.len() as u64;
    let mut run = Run { cipher, tenant, opts, start, report: Report::default(), seen: HashSet::new(), now: Utc::now() };
    run.report.counts.rows = total;
    let mut done = 0u64;
    for (n, chunk) in table.rows.chunks(opts.batch.max(1)).enumerate() {
        let mut pending = Pending::default();
        for (line, cells) in chunk {
            match row::parse(*line, cells, at, &run.start.institutions) {
                Row::Rejected(r) => run.reject(r),
                Row::Ok(p) => run.take(*p, &mut pending),
            }
        }
        run.flush(db, pending).await?;
        done += chunk.len() as u64;
        set_progress(db, tenant, opts.job, done).await?;
        progress(done, total);
        if opts.stop_after_batches == Some(n + 1) {
            return Err(AppError::internal(anyhow::anyhow!("import stopped after {} batches", n + 1)));
        }
    }
    Ok(run.report)
}

impl Run<'_> {
    fn reject(&mut self, r: Rejected) {
        self.report.counts.rejected += 1;
        self.report.rejected.push(r);
    }

    fn take(&mut self, p: Parsed, pending: &mut Pending) {
        if !self.seen.insert(p.key.clone()) {
            let (code, message) = match p.source_id {
                Some(_) => ("source_record_id_repeated", "原系统编号在文件中重复"),
                None => ("row_repeated", "与文件中前面的一行完全相同"),
            };
            let line = p.line;
            return self.reject(Rejected { line, source_id: p.source_id, code: code.into(), message: message.into() });
        }
        if self.start.done.contains(&p.key) {
            self.report.counts.already_imported += 1;
            return;
        }
        let mut p = p;
        let cands = self.start.index.candidates(&p.record, &self.start.weights);
        let (person, outcome, held) = match cands.first() {
            Some((i, s)) if s.grade == Grade::Certain => {
                let (changed, held_rid, held_insurance) = self.start.index.fill(*i, &p.record);
                let known = &self.start.index.people[*i as usize];
                if changed && known.persisted {
                    pending.changed.insert(*i);
                }
                self.report.counts.linked += 1;
                self.report.links.push(Link {
                    line: p.line,
                    source_id: p.source_id.clone(),
                    name: p.record.name.name.clone(),
                    person: known.id,
                    person_name: known.record.name.name.clone(),
                    score: s.score,
                    evidence: report::evidence(&s.comparisons),
                });
                (known.id, "linked", (held_rid.or(p.held_resident_id.take()), held_insurance))
            }
            _ => self.new_person(&mut p, &cands, pending),
        };
        let flags = p.flags.join(",");
        if !p.flags.is_empty() {
            self.report.counts.flagged += 1;
            self.report.counts.sex_missing += u64::from(p.flags.contains(&"sex_missing"));
            self.report.counts.birth_date_missing += u64::from(p.flags.contains(&"birth_date_missing"));
            let (line, source_id) = (p.line, p.source_id.clone());
            self.report.flagged.push(Flagged { line, source_id, person, flags: flags.clone() });
        }
        if self.start.registered.insert((person, p.institution)) {
            // Numbered at flush, from a range reserved then (see `number`).
            pending.registrations.push(registration::ActiveModel {
                tenant_id: Set(self.tenant),
                id: Set(Uuid::now_v7()),
                person_id: Set(person),
                institution_id: Set(p.institution),
                mrn: sea_orm::ActiveValue::NotSet,
                registered_at: Set(self.now),
                registered_by: Set(self.opts.actor.map(|a| a.0)),
                held_resident_id_enc: Set(held.0.map(|r| self.cipher.encrypt(&r))),
                held_insurance_enc: Set(held.1.map(|i| self.cipher.encrypt(&i))),
            });
        }
        pending.rows.push(import_row::ActiveModel {
            tenant_id: Set(self.tenant),
            source_key: Set(p.key),
            job_id: Set(self.opts.job),
            line: Set(p.line as i64),
            person_id: Set(person),
            outcome: Set(outcome.into()),
            flags: Set(flags),
            imported_at: Set(self.now),
        });
    }

    /// A row no one matches for certain becomes a person; its probable matches go to review.
    fn new_person(
        &mut self,
        p: &mut Parsed,
        cands: &[(u32, Scored)],
        pending: &mut Pending,
    ) -> (Uuid, &'static str, (Option<String>, Option<String>)) {
        // One active person per valid resident ID: an ID someone already has stays on the
        // registration of a row that did not match them for certain.
        if let Some(r) = p.record.resident_id.clone().filter(|r| self.start.index.rids.contains(r)) {
            p.record.resident_id = None;
            p.record.resident_id_valid = false;
            p.held_resident_id = Some(r);
            p.flags.push("resident_id_taken");
        }
        let id = Uuid::now_v7();
        let probable: Vec<&(u32, Scored)> = cands.iter().filter(|(_, s)| s.grade == Grade::Probable).collect();
        for (i, s) in &probable {
            let other = &self.start.index.people[*i as usize];
            pending.pairs.push((id, other.id, s.score));
            self.report.counts.probable += 1;
            self.report.probable.push(Pair {
                line: p.line,
                source_id: p.source_id.clone(),
                name: p.record.name.name.clone(),
                person: id,
                candidate: other.id,
                candidate_name: other.record.name.name.clone(),
                score: s.score,
                evidence: report::evidence(&s.comparisons),
            });
        }
        let known = Known { id, record: p.record.clone(), institution: p.institution, persisted: false };
        pending.new.push(self.start.index.add(known));
        self.report.counts.new_persons += 1;
        let outcome = if probable.is_empty() { "new" } else { "probable" };
        (id, outcome, (p.held_resident_id.take(), None))
    }

    async fn flush(&mut self, db: &Db, pending: Pending) -> AppResult<()> {
        let mut tx = db.begin(&SystemScope { tenant: self.tenant }).await?;
        let index = &mut self.start.index;
        let persons: Vec<person::ActiveModel> = pending
            .new
            .iter()
            .map(|&i| {
                let k = &index.people[i as usize];
                let mut row = new_person_row(self.tenant, k.institution, self.cipher, &k.record, self.now);
                row.id = Set(k.id);
                row
            })
            .collect();
        insert_chunks(&tx, persons).await?;
        for &i in &pending.changed {
            update_person(&tx, self.cipher, self.tenant, &index.people[i as usize]).await?;
        }
        for &i in &pending.new {
            index.people[i as usize].persisted = true;
        }
        let registrations = number(&tx, pending.registrations).await?;
        insert_chunks(&tx, registrations).await?;
        let rows = pending.rows.len();
        insert_chunks(&tx, pending.rows).await?;
        for (x, y, s) in pending.pairs {
            queue_pair(&tx, x, y, s).await?;
        }
        let mut entry =
            AuditEntry::new("patient.bulk_import", "import_job", Purpose::Administration).resource(self.opts.job);
        if let Some((user, institution)) = self.opts.actor {
            entry = entry.actor(user, institution);
        }
        if rows > 0 {
            tx.audit(entry);
        }
        tx.commit().await
    }
}

/// Gives the batch's registrations their medical record numbers: one range per institution,
/// reserved from its counter in this transaction, so a clinic registering someone while the
/// import runs never gets a number the import uses (or the other way round).
async fn number(tx: &Tx, mut regs: Vec<registration::ActiveModel>) -> AppResult<Vec<registration::ActiveModel>> {
    // In one order, so that two imports of a community never lock each other's counters.
    let mut wanted: std::collections::BTreeMap<Uuid, i64> = std::collections::BTreeMap::new();
    for r in &regs {
        *wanted.entry(*r.institution_id.as_ref()).or_default() += 1;
    }
    let mut next: HashMap<Uuid, i64> = HashMap::new();
    for (institution, count) in wanted {
        next.insert(institution, reserve_mrns(tx, institution, count).await?);
    }
    for r in &mut regs {
        let n = next.get_mut(r.institution_id.as_ref()).expect("reserved above");
        r.mrn = Set(format!("{:08}", *n));
        *n += 1;
    }
    Ok(regs)
}

async fn insert_chunks<A>(tx: &Tx, rows: Vec<A>) -> AppResult<()>
where
    A: ActiveModelTrait + Clone + Send,
    <A::Entity as EntityTrait>::Model: sea_orm::IntoActiveModel<A>,
{
    for chunk in rows.chunks(500) {
        <A::Entity as EntityTrait>::insert_many(chunk.to_vec()).exec(&**tx).await?;
    }
    Ok(())
}

/// Writes what linking filled in to a person already in the database: each value only where the
/// person still has none, so nothing a clinic wrote while the import ran is overwritten.
async fn update_person(tx: &Tx, cipher: &PiiCipher, tenant: Uuid, k: &Known) -> AppResult<()> {
    use sea_orm::sea_query::Expr;
    let r = &k.record;
    let this = || {
        person::Entity::update_many()
            .filter(person::Column::TenantId.eq(tenant))
            .filter(person::Column::Id.eq(k.id))
            .col_expr(person::Column::UpdatedAt, Expr::value(Utc::now()))
    };
    if let Some(rid) = r.resident_id.as_deref().filter(|_| r.resident_id_valid) {
        this()
            .col_expr(person::Column::ResidentIdEnc, Expr::value(cipher.encrypt(rid)))
            .col_expr(person::Column::ResidentIdHash, Expr::value(crate::patients::service::rid_hash(cipher, rid)))
            .col_expr(person::Column::ResidentIdValid, Expr::value(true))
            .filter(person::Column::ResidentIdHash.is_null())
            .exec(&**tx)
            .await?;
    }
    if let Some(phone) = r.phone.as_deref() {
        this()
            .col_expr(person::Column::PhoneEnc, Expr::value(cipher.encrypt(phone)))
            .col_expr(person::Column::PhoneHash, Expr::value(crate::patients::service::phone_hash(cipher, phone)))
            .col_expr(person::Column::PhoneTailHash, Expr::value(crate::patients::service::tail_hash(cipher, phone)))
            .filter(person::Column::PhoneHash.is_null())
            .exec(&**tx)
            .await?;
    }
    if let Some(division) = r.division.as_deref() {
        this()
            .col_expr(person::Column::DivisionCode, Expr::value(division))
            .filter(person::Column::DivisionCode.is_null())
            .exec(&**tx)
            .await?;
    }
    if let Some(Birth::Full(d)) = r.birth {
        this()
            .col_expr(person::Column::BirthDate, Expr::value(d))
            .col_expr(person::Column::BirthMd, Expr::value(d.format("%m%d").to_string()))
            .col_expr(person::Column::BirthYear, Expr::value(d.year()))
            .filter(person::Column::BirthDate.is_null())
            .exec(&**tx)
            .await?;
    }
    Ok(())
}

async fn set_progress(db: &Db, tenant: Uuid, job: Uuid, done: u64) -> AppResult<()> {
    let tx = db.begin(&SystemScope { tenant }).await?;
    import_job::Entity::update_many()
        .col_expr(import_job::Column::ProcessedRows, sea_orm::sea_query::Expr::value(done as i64))
        .filter(import_job::Column::TenantId.eq(tenant))
        .filter(import_job::Column::Id.eq(job))
        .exec(&*tx)
        .await?;
    tx.commit().await
}
