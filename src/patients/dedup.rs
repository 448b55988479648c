//! Bulk deduplication: every record against every other record that shares a blocking key,
//! scored with the same comparisons and weights as real-time matching. Blocking keys (the same
//! as real-time `$match` uses): valid resident ID, full birth date, full-name pinyin + birth
//! year, name initials + birth year, name pinyin + birth month-day (a swapped year), name pinyin
//! with village, phone, phone tail, insurance number. Blocks larger than `max_block` are skipped and counted
//! (a key that common carries no evidence).

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::{Duration, Instant};

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use uuid::Uuid;

use super::domain::record_of;
use super::entity::person;
use super::matching::{Birth, Grade, MatchRecord, MatchWeights, score};
use crate::platform::pii::PiiCipher;
use crate::platform::{AppResult, Db, SystemScope};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PairHit {
    pub a: u32,
    pub b: u32,
    pub score: f64,
    pub grade: Grade,
}

#[derive(Debug, Clone, Default)]
pub struct DedupStats {
    pub records: usize,
    pub blocks: usize,
    pub comparisons: u64,
    pub skipped_blocks: usize,
    pub elapsed: Duration,
}

type Found = HashMap<(u32, u32), PairHit>;

fn key(kind: u8, parts: impl Hash) -> u64 {
    let mut h = DefaultHasher::new();
    kind.hash(&mut h);
    parts.hash(&mut h);
    h.finish()
}

fn keys(r: &MatchRecord) -> Vec<u64> {
    let mut k = Vec::with_capacity(7);
    if let Some(rid) = r.resident_id.as_deref().filter(|_| r.resident_id_valid) {
        k.push(key(0, rid));
    }
    if let Some(b) = r.birth {
        if let Birth::Full(d) = b {
            k.push(key(1, d));
            k.push(key(7, (&r.name.joined, d.format("%m%d").to_string())));
        }
        k.push(key(2, (&r.name.joined, b.year())));
        k.push(key(3, (&r.name.initials, b.year())));
    }
    if let Some(p) = &r.phone {
        k.push(key(4, p));
        k.push(key(5, &p[p.len().saturating_sub(4)..]));
    }
    if let Some(i) = &r.insurance_no {
        k.push(key(6, i));
    }
    if let Some(div) = &r.division {
        k.push(key(8, (&r.name.joined, div)));
    }
    k
}

/// The keys a person is found under when records arrive one at a time (an import): the bulk
/// keys, and the full-name pinyin alone, which real-time matching searches when a query has no
/// birth date.
pub fn index_keys(r: &MatchRecord) -> Vec<u64> {
    let mut k = keys(r);
    k.push(key(9, &r.name.joined));
    k
}

/// The keys a new record searches under, as real-time `$match` does: the name alone only when
/// the record has no birth date.
pub fn query_keys(r: &MatchRecord) -> Vec<u64> {
    let mut k = keys(r);
    if r.birth.is_none() {
        k.push(key(9, &r.name.joined));
    }
    k
}

/// Every pair graded at least possible, each once, with its best score.
pub fn find_pairs(records: &[MatchRecord], w: &MatchWeights, max_block: usize) -> (Vec<PairHit>, DedupStats) {
    let started = Instant::now();
    let mut blocks: HashMap<u64, Vec<u32>> = HashMap::new();
    for (i, r) in records.iter().enumerate() {
        for k in keys(r) {
            blocks.entry(k).or_default().push(i as u32);
        }
    }
    let mut stats = DedupStats { records: records.len(), ..Default::default() };
    let mut work: Vec<Vec<u32>> = Vec::new();
    for (_, members) in blocks {
        if members.len() < 2 {
            continue;
        }
        if members.len() > max_block {
            stats.skipped_blocks += 1;
            continue;
        }
        stats.blocks += 1;
        work.push(members);
    }
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).clamp(1, 8);
    let chunk = work.len().div_ceil(threads).max(1);
    let results: Vec<(Found, u64)> = std::thread::scope(|s| {
        let handles: Vec<_> = work
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || {
                    let mut found: HashMap<(u32, u32), PairHit> = HashMap::new();
                    let mut comparisons = 0u64;
                    for members in part {
                        for (x, &i) in members.iter().enumerate() {
                            for &j in &members[x + 1..] {
                                let (a, b) = if i < j { (i, j) } else { (j, i) };
                                if found.contains_key(&(a, b)) {
                                    continue;
                                }
                                comparisons += 1;
                                let s = score(&records[a as usize], &records[b as usize], w);
                                if s.grade >= Grade::Possible {
                                    found.insert((a, b), PairHit { a, b, score: s.score, grade: s.grade });
                                }
                            }
                        }
                    }
                    (found, comparisons)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("dedup worker")).collect()
    });
    let mut all: HashMap<(u32, u32), PairHit> = HashMap::new();
    for (found, comparisons) in results {
        stats.comparisons += comparisons;
        all.extend(found);
    }
    let mut pairs: Vec<PairHit> = all.into_values().collect();
    pairs.sort_by_key(|x| (x.a, x.b));
    stats.elapsed = started.elapsed();
    (pairs, stats)
}

#[derive(Debug, Clone, Default)]
pub struct DedupReport {
    pub persons: usize,
    pub certain: usize,
    pub probable: usize,
    pub possible: usize,
    pub queued: usize,
    pub load_time: Duration,
    pub stats: DedupStats,
}

/// Deduplicates a tenant's active persons. With `queue`, certain and probable pairs go to the
/// review queue (nothing is merged without a person deciding).
pub async fn run(db: &Db, cipher: &PiiCipher, tenant: Uuid, w: &MatchWeights, queue: bool) -> AppResult<DedupReport> {
    let started = Instant::now();
    let scope = SystemScope { tenant };
    let mut ids = Vec::new();
    let mut records = Vec::new();
    let mut after = Uuid::nil();
    loop {
        let tx = db.begin(&scope).await?;
        let page = person::Entity::find()
            .filter(person::Column::TenantId.eq(tenant))
            .filter(person::Column::Status.eq(super::service::ACTIVE))
            .filter(person::Column::Id.gt(after))
            .order_by_asc(person::Column::Id)
            .limit(20_000)
            .all(&*tx)
            .await?;
        tx.rollback().await?;
        let Some(last) = page.last() else { break };
        after = last.id;
        for p in &page {
            ids.push(p.id);
            records.push(record_of(p, cipher));
        }
    }
    let load_time = started.elapsed();
    let weights = w.clone();
    let (records, pairs, stats) = tokio::task::spawn_blocking(move || {
        let (pairs, stats) = find_pairs(&records, &weights, 1000);
        (records, pairs, stats)
    })
    .await
    .map_err(crate::platform::AppError::internal)?;
    let mut report = DedupReport { persons: records.len(), load_time, stats, ..Default::default() };
    for p in &pairs {
        match p.grade {
            Grade::Certain => report.certain += 1,
            Grade::Probable => report.probable += 1,
            _ => report.possible += 1,
        }
    }
    if queue {
        for batch in pairs.iter().filter(|p| p.grade >= Grade::Probable).collect::<Vec<_>>().chunks(500) {
            let tx = db.begin(&scope).await?;
            for p in batch {
                super::service::queue_pair(&tx, ids[p.a as usize], ids[p.b as usize], p.score).await?;
                report.queued += 1;
            }
            tx.commit().await?;
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::patients::synth::{SynthConfig, county_villages, generate};
    use std::collections::HashSet;

    /// A small version of the quality benchmark, so a regression in matching fails the tests.
    #[test]
    fn finds_the_planted_duplicates_precisely() {
        let cfg = SynthConfig {
            records: 6000,
            duplicate_share: 0.12,
            seed: 11,
            villages: county_villages("130999", 3, 20),
            family_share: 0.0,
        };
        let synth = generate(&cfg);
        let records: Vec<MatchRecord> = synth.iter().map(crate::patients::seed::to_match_record).collect();
        let (pairs, _) = find_pairs(&records, &MatchWeights::default(), 1000);
        let truth: HashSet<(u32, u32)> = {
            let mut by: HashMap<u32, Vec<u32>> = HashMap::new();
            for (i, r) in synth.iter().enumerate() {
                by.entry(r.truth).or_default().push(i as u32);
            }
            by.values()
                .filter(|v| v.len() > 1)
                .flat_map(|v| {
                    let v = v.clone();
                    (0..v.len())
                        .flat_map(move |x| {
                            ((x + 1)..v.len()).map({
                                let v = v.clone();
                                move |y| (v[x], v[y])
                            })
                        })
                        .collect::<Vec<_>>()
                })
                .collect()
        };
        let auto: Vec<&PairHit> = pairs.iter().filter(|p| p.grade == Grade::Certain).collect();
        let correct = auto.iter().filter(|p| truth.contains(&(p.a, p.b))).count();
        let precision = correct as f64 / auto.len() as f64;
        let found = pairs.iter().filter(|p| p.grade >= Grade::Probable && truth.contains(&(p.a, p.b))).count();
        let recall = found as f64 / truth.len() as f64;
        assert!(precision >= 0.99, "precision {precision:.4} ({correct}/{})", auto.len());
        assert!(recall >= 0.95, "recall {recall:.4} ({found}/{})", truth.len());
    }
}
