//! Loads synthetic residents into a tenant (`cloudhis seed`, and `serve --demo` on first start):
//! persons, and registrations at the clinic of their village (duplicates at another
//! institution). A bulk import: it writes no per-person events, and one audit row per run.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rand::prelude::*;
use rand::rngs::StdRng;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, Set};
use uuid::Uuid;

use super::entity::{mrn_counter, person, registration};
use super::matching::{Birth, MatchRecord};
use super::names::NameKey;
use super::service::new_person_row;
use super::synth::{SynthConfig, SynthRecord, generate};
use crate::platform::audit::{AuditEntry, Purpose};
use crate::platform::codes;
use crate::platform::pii::PiiCipher;
use crate::platform::{AppError, AppResult, Db, SystemScope, Tx};
use crate::tenancy::InstitutionKind;

pub fn to_match_record(r: &SynthRecord) -> MatchRecord {
    let id = r
        .resident_id
        .as_deref()
        .filter(|_| r.resident_id_valid)
        .and_then(|id| crate::patients::resident_id::ResidentId::parse(id).ok());
    MatchRecord {
        name: NameKey::parse(&r.name).expect("synthetic names normalise"),
        // What registration makes of it: a valid ID says the sex and birth date a record leaves out.
        sex: r.sex.or_else(|| id.as_ref().map(|id| id.sex())),
        birth: r.birth.or_else(|| id.as_ref().map(|id| Birth::Full(id.birth_date()))),
        resident_id: r.resident_id.clone(),
        resident_id_valid: r.resident_id_valid,
        phone: r.phone.clone(),
        insurance_no: r.insurance_no.clone(),
        division: Some(r.division.clone()),
    }
}

/// The generator settings `seed` uses for a tenant: its clinics' villages plus twenty more per
/// township. Benchmarks call it to regenerate exactly the records that were loaded.
pub fn plan(
    institutions: &[crate::tenancy::service::InstitutionInfo],
    records: usize,
    duplicate_share: f64,
    seed: u64,
) -> SynthConfig {
    let mut villages: Vec<String> = institutions
        .iter()
        .filter(|i| i.kind == InstitutionKind::VillageClinic)
        .map(|i| i.division_code.clone())
        .collect();
    villages.sort();
    for t in
        institutions.iter().filter(|i| i.kind == InstitutionKind::TownshipHealthCentre && i.division_code.len() == 9)
    {
        villages.extend((1..=20).map(|v| format!("{}{:03}", t.division_code, 300 + v)));
    }
    if villages.is_empty() {
        villages = super::synth::county_villages("130999", 3, 20);
    }
    SynthConfig { records, duplicate_share, seed, villages, family_share: 0.0 }
}

#[derive(Debug, Clone, Default)]
pub struct SeedReport {
    pub persons: usize,
    pub duplicates: usize,
    /// Duplicates linked at import because they carry the same valid resident ID.
    pub linked: usize,
    pub registrations: usize,
    pub elapsed: Duration,
}

pub async fn persons_count(db: &Db, tenant: Uuid) -> AppResult<u64> {
    let tx = db.begin(&SystemScope { tenant }).await?;
    let n = person::Entity::find().filter(person::Column::TenantId.eq(tenant)).count(&*tx).await?;
    tx.rollback().await?;
    Ok(n)
}

/// Where a synthetic resident is registered: at the village clinic of their division (or its
/// township, or the county hospital), and a planted duplicate somewhere else.
struct Places {
    county: Uuid,
    townships: Vec<Uuid>,
    clinics: HashMap<String, Uuid>,
    township_of: HashMap<String, Uuid>,
}

impl Places {
    fn of(institutions: &[crate::tenancy::service::InstitutionInfo]) -> AppResult<Self> {
        let county = institutions
            .iter()
            .find(|i| i.kind == InstitutionKind::CountyHospital)
            .ok_or_else(|| AppError::new(codes::NO_COUNTY_HOSPITAL, "the tenant has no county hospital"))?
            .id;
        let townships: Vec<_> =
            institutions.iter().filter(|i| i.kind == InstitutionKind::TownshipHealthCentre).collect();
        Ok(Self {
            county,
            clinics: institutions
                .iter()
                .filter(|i| i.kind == InstitutionKind::VillageClinic)
                .map(|i| (i.division_code.clone(), i.id))
                .collect(),
            township_of: townships
                .iter()
                .filter(|t| t.division_code.len() >= 9)
                .map(|t| (t.division_code[..9].to_string(), t.id))
                .collect(),
            townships: townships.iter().map(|t| t.id).collect(),
        })
    }

    fn institution_for(&self, r: &SynthRecord, rng: &mut StdRng) -> Uuid {
        let home = self
            .clinics
            .get(r.division.as_str())
            .or_else(|| self.township_of.get(&r.division[..9]))
            .copied()
            .unwrap_or(self.county);
        if !r.is_duplicate {
            return home;
        }
        // The same person, registered again somewhere else.
        let mut options: Vec<Uuid> = self.townships.iter().copied().chain([self.county]).collect();
        options.retain(|i| *i != home);
        *options.choose(rng).unwrap_or(&self.county)
    }
}

/// Generates `records` residents (with `duplicate_share` planted duplicates) and loads them in
/// batches of 500, with registrations and MRNs as registration would give them.
pub async fn seed(
    db: &Db,
    cipher: &PiiCipher,
    tenant: Uuid,
    records: usize,
    duplicate_share: f64,
    seed: u64,
) -> AppResult<SeedReport> {
    let started = Instant::now();
    let scope = SystemScope { tenant };
    let tx = db.begin(&scope).await?;
    let institutions = crate::tenancy::service::list_institutions(&tx).await?;
    let mut next: HashMap<Uuid, i64> = mrn_counter::Entity::find()
        .filter(mrn_counter::Column::TenantId.eq(tenant))
        .all(&*tx)
        .await?
        .into_iter()
        .map(|c| (c.institution_id, c.next_value))
        .collect();
    tx.rollback().await?;
    let places = Places::of(&institutions)?;
    let synth = generate(&plan(&institutions, records, duplicate_share, seed));
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
    let mut report = SeedReport::default();
    let mut by_rid: HashMap<String, Uuid> = HashMap::new();
    let mut registered: std::collections::HashSet<(Uuid, Uuid)> = std::collections::HashSet::new();
    let now = Utc::now();
    for batch in synth.chunks(500) {
        let tx = db.begin(&scope).await?;
        let mut persons = Vec::with_capacity(batch.len());
        let mut regs = Vec::with_capacity(batch.len());
        for r in batch {
            let institution = places.institution_for(r, &mut rng);
            // A duplicate that carries the same valid resident ID is linked at import, as
            // registration would link it: one active person per valid ID.
            let known = r.resident_id.as_ref().filter(|_| r.resident_id_valid).and_then(|id| by_rid.get(id)).copied();
            let person_id = match known {
                Some(existing) => {
                    report.linked += 1;
                    existing
                }
                None => {
                    let row = new_person_row(tenant, institution, cipher, &to_match_record(r), now);
                    let id = *row.id.as_ref();
                    if let Some(rid) = r.resident_id.as_ref().filter(|_| r.resident_id_valid) {
                        by_rid.insert(rid.clone(), id);
                    }
                    persons.push(row);
                    id
                }
            };
            report.duplicates += usize::from(r.is_duplicate);
            // One registration per person and institution.
            if registered.insert((person_id, institution)) {
                let n = next.entry(institution).or_insert(1);
                regs.push(registration_row(tenant, person_id, institution, *n, now));
                *n += 1;
            }
        }
        report.persons += persons.len();
        report.registrations += regs.len();
        if !persons.is_empty() {
            person::Entity::insert_many(persons).exec(&*tx).await?;
        }
        registration::Entity::insert_many(regs).exec(&*tx).await?;
        tx.commit().await?;
    }
    store_counters(db, tenant, next, report.persons).await?;
    report.elapsed = started.elapsed();
    Ok(report)
}

fn registration_row(
    tenant: Uuid,
    person: Uuid,
    institution: Uuid,
    mrn: i64,
    at: DateTime<Utc>,
) -> registration::ActiveModel {
    registration::ActiveModel {
        tenant_id: Set(tenant),
        id: Set(Uuid::now_v7()),
        person_id: Set(person),
        institution_id: Set(institution),
        mrn: Set(format!("{mrn:08}")),
        registered_at: Set(at),
        registered_by: Set(None),
        held_resident_id_enc: Set(None),
        held_insurance_enc: Set(None),
    }
}

/// Moves each institution's MRN counter past the numbers the import gave, and audits the import.
async fn store_counters(db: &Db, tenant: Uuid, next: HashMap<Uuid, i64>, persons: usize) -> AppResult<()> {
    let mut tx = db.begin(&SystemScope { tenant }).await?;
    write_counters(&tx, tenant, &next).await?;
    tx.audit(AuditEntry::new("patient.bulk_import", "seed", Purpose::Administration).resource(persons));
    tx.commit().await
}

/// Sets each institution's next MRN (bulk loads number registrations themselves).
async fn write_counters(tx: &Tx, tenant: Uuid, next: &HashMap<Uuid, i64>) -> AppResult<()> {
    for (&institution, &value) in next {
        let existing = mrn_counter::Entity::find_by_id((tenant, institution)).one(&**tx).await?;
        let am = mrn_counter::ActiveModel {
            tenant_id: Set(tenant),
            institution_id: Set(institution),
            next_value: Set(value),
        };
        if existing.is_some() {
            mrn_counter::Entity::update(am).exec(&**tx).await?;
        } else {
            mrn_counter::Entity::insert(am).exec(&**tx).await?;
        }
    }
    Ok(())
}
