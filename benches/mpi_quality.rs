//! MPI matching quality on synthetic residents with known duplicates.
//!
//! `cargo bench --bench mpi_quality -- [--records N] [--share S] [--seed X] [--families F] [--estimate]`
//!
//! Generates N records (default 100,000) of which a share S (default 0.12) are duplicates of
//! another record carrying one or two realistic errors, runs bulk deduplication with the default
//! weights, and reports pairwise precision and recall of the automatic links (grade certain),
//! the size and purity of the probable band (sent to a person), and the time taken.
//! `--estimate` also prints, per comparison level, m = P(level | same person) and
//! u = P(level | different people among blocked pairs), and log2(m/u): how the default weights
//! were derived.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use cloudhis::patients::dedup::find_pairs;
use cloudhis::patients::matching::{Grade, MatchRecord, MatchWeights, score};
use cloudhis::patients::seed::to_match_record;
use cloudhis::patients::synth::{SynthConfig, county_villages, generate};

fn arg<T: std::str::FromStr>(name: &str, default: T) -> T {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() {
    let records: usize = arg("--records", 100_000);
    let share: f64 = arg("--share", 0.12);
    let seed: u64 = arg("--seed", 2026);
    // Look-alikes (twins, siblings sharing a parent's phone, namesakes): 0 reproduces the first
    // round's figures; the second round's tuning uses 0.05.
    let families: f64 = arg("--families", 0.0);
    let estimate = std::env::args().any(|a| a == "--estimate");
    let villages = county_villages("130999", 12, 25);
    let t = Instant::now();
    let synth = generate(&SynthConfig { records, duplicate_share: share, seed, villages, family_share: families });
    let recs: Vec<MatchRecord> = synth.iter().map(to_match_record).collect();
    let gen_time = t.elapsed();

    let mut by_truth: HashMap<u32, Vec<u32>> = HashMap::new();
    for (i, r) in synth.iter().enumerate() {
        by_truth.entry(r.truth).or_default().push(i as u32);
    }
    let mut truth: HashSet<(u32, u32)> = HashSet::new();
    for members in by_truth.values() {
        for x in 0..members.len() {
            for y in x + 1..members.len() {
                truth.insert((members[x].min(members[y]), members[x].max(members[y])));
            }
        }
    }
    let mut w = MatchWeights::default();
    w.certain = arg("--certain", w.certain);
    w.probable = arg("--probable", w.probable);
    let (pairs, stats) = find_pairs(&recs, &w, 1000);
    let auto: Vec<_> = pairs.iter().filter(|p| p.grade == Grade::Certain).collect();
    let probable: Vec<_> = pairs.iter().filter(|p| p.grade == Grade::Probable).collect();
    let auto_ok = auto.iter().filter(|p| truth.contains(&(p.a, p.b))).count();
    let prob_ok = probable.iter().filter(|p| truth.contains(&(p.a, p.b))).count();
    let dups = synth.iter().filter(|r| r.is_duplicate).count();

    println!("## MPI matching quality");
    println!();
    println!("| measure | value |");
    println!("|---|---|");
    println!("| records | {} ({dups} duplicates, {:.1}%) |", synth.len(), 100.0 * dups as f64 / synth.len() as f64);
    println!("| true duplicate pairs | {} |", truth.len());
    println!("| automatic links (certain) | {} |", auto.len());
    println!(
        "| pairwise precision of automatic links | {:.4} ({auto_ok}/{}) |",
        auto_ok as f64 / auto.len().max(1) as f64,
        auto.len()
    );
    println!(
        "| pairwise recall of automatic links | {:.4} ({auto_ok}/{}) |",
        auto_ok as f64 / truth.len() as f64,
        truth.len()
    );
    println!(
        "| probable band (to review) | {} pairs, {} of them true duplicates ({:.1}%) |",
        probable.len(),
        prob_ok,
        100.0 * prob_ok as f64 / probable.len().max(1) as f64
    );
    println!(
        "| recall, automatic + probable band | {:.4} ({}/{}) |",
        (auto_ok + prob_ok) as f64 / truth.len() as f64,
        auto_ok + prob_ok,
        truth.len()
    );
    println!("| possible pairs (shown, not acted on) | {} |", pairs.len() - auto.len() - probable.len());
    println!(
        "| blocks / comparisons / oversized blocks skipped | {} / {} / {} |",
        stats.blocks, stats.comparisons, stats.skipped_blocks
    );
    println!(
        "| generation / deduplication time | {:.2} s / {:.2} s |",
        gen_time.as_secs_f64(),
        stats.elapsed.as_secs_f64()
    );

    // Misses by error kind, to see what the weights get wrong.
    let found: HashSet<(u32, u32)> = pairs.iter().filter(|p| p.grade >= Grade::Probable).map(|p| (p.a, p.b)).collect();
    let mut missed_by: HashMap<String, usize> = HashMap::new();
    let mut wrong_auto: Vec<String> = Vec::new();
    let mut missed_examples = Vec::new();
    for &(a, b) in &truth {
        if !found.contains(&(a, b)) {
            let dup = if synth[b as usize].is_duplicate { &synth[b as usize] } else { &synth[a as usize] };
            *missed_by.entry(dup.errors.join("+")).or_default() += 1;
            if missed_examples.len() < 12 {
                let s = score(&recs[a as usize], &recs[b as usize], &w);
                missed_examples.push(format!(
                    "{:.1} [{}]: {:?}",
                    s.score,
                    dup.errors.join("+"),
                    s.comparisons.iter().map(|c| (c.field, c.level)).collect::<Vec<_>>()
                ));
            }
        }
    }
    // True pairs held at probable: which evidence they had (to see what the caps cost).
    let mut held: HashMap<String, usize> = HashMap::new();
    for p in &probable {
        if truth.contains(&(p.a, p.b)) {
            let s = score(&recs[p.a as usize], &recs[p.b as usize], &w);
            let sig: Vec<String> = s.comparisons.iter().map(|c| format!("{:?}:{}", c.field, c.level)).collect();
            *held.entry(sig.join(" ")).or_default() += 1;
        }
    }
    let mut held: Vec<(String, usize)> = held.into_iter().collect();
    held.sort_by_key(|h| std::cmp::Reverse(h.1));
    println!("true pairs held at probable, by evidence (top 8):");
    for (sig, n) in held.iter().take(8) {
        println!("  {n:5}  {sig}");
    }
    for p in &auto {
        if !truth.contains(&(p.a, p.b)) && wrong_auto.len() < 5 {
            let s = score(&recs[p.a as usize], &recs[p.b as usize], &w);
            wrong_auto.push(format!(
                "{:.1}: {:?}",
                s.score,
                s.comparisons.iter().map(|c| (c.field, c.level)).collect::<Vec<_>>()
            ));
        }
    }
    let mut missed: Vec<_> = missed_by.into_iter().collect();
    missed.sort_by_key(|m| std::cmp::Reverse(m.1));
    println!();
    println!("missed (below probable) by error kind: {missed:?}");
    println!("wrong automatic links (first 5): {wrong_auto:#?}");
    println!("missed pairs (first 12): {missed_examples:#?}");

    if estimate {
        // m and u per (field, level) over every blocked pair.
        let (all, _) = find_pairs(
            &recs,
            &MatchWeights { possible: f64::MIN, probable: f64::MAX, certain: f64::MAX, ..w.clone() },
            1000,
        );
        let mut m: HashMap<(String, &'static str), f64> = HashMap::new();
        let mut u: HashMap<(String, &'static str), f64> = HashMap::new();
        let (mut nm, mut nu) = (0.0, 0.0);
        for p in &all {
            let s = score(&recs[p.a as usize], &recs[p.b as usize], &w);
            let is_match = truth.contains(&(p.a, p.b));
            if is_match {
                nm += 1.0
            } else {
                nu += 1.0
            }
            for c in s.comparisons {
                let k = (format!("{:?}", c.field), c.level);
                *(if is_match { m.entry(k).or_default() } else { u.entry(k).or_default() }) += 1.0;
            }
        }
        let mut keys: Vec<_> = m.keys().chain(u.keys()).cloned().collect::<HashSet<_>>().into_iter().collect();
        keys.sort();
        println!();
        println!("| field | level | m | u | log2(m/u) |");
        println!("|---|---|---|---|---|");
        for k in keys {
            let mm = m.get(&k).copied().unwrap_or(0.0) / nm;
            let uu = u.get(&k).copied().unwrap_or(0.0) / nu;
            println!("| {} | {} | {:.4} | {:.6} | {:.2} |", k.0, k.1, mm, uu, ((mm.max(1e-6)) / uu.max(1e-7)).log2());
        }
        println!("(blocked pairs: {nm} matches, {nu} non-matches)");
    }
}
