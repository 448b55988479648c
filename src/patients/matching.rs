//! Record matching, Fellegi–Sunter style. Each field comparison lands on a level (exact, same
//! pinyin, transposed digits, …) whose weight is log2(m/u): how much more often that level occurs
//! between two records of the same person than between two records of different people. A missing
//! value on either side contributes nothing; it is not a disagreement. The sum grades the pair:
//! certain (link automatically), probable (ask a person), possible (show, do not act).
//!
//! A valid resident ID on both sides decides alone: equal means the same person.
//!
//! Whatever the score, the evidence caps the grade (`evidence_cap`): certain needs the same
//! resident ID or two independent agreements besides name and birth date (phone, village,
//! insurance number, a resident ID a typo away), so namesakes born the same day never link on their own; a given
//! name that differs beyond a homophone or a variant (twins, siblings) stays possible; and a
//! young child links automatically only on an identifier or an exact name and birth date, with
//! any difference between two full birth dates strong evidence against (siblings are born a
//! digit apart and share a parent's phone).
//!
//! The default level weights are set from m/u estimates on synthetic residents with known
//! duplicates, where the synthetic data lacks a level the real world has (phone typos were added
//! later; in-village moves are absent) from domain judgement; the thresholds were tuned on the
//! same data for precision first (`benches/mpi_quality.rs`; method and figures in
//! `docs/benchmarks.md`). A tenant can override any of them under `[settings.matching]`.

use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};

use super::names::{NameKey, edit_distance};
use super::resident_id::Sex;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Birth {
    Full(NaiveDate),
    /// Only the year is known (common for the rural elderly).
    Year(i32),
}

impl Birth {
    pub fn year(self) -> i32 {
        match self {
            Birth::Full(d) => d.year(),
            Birth::Year(y) => y,
        }
    }
}

/// What matching compares. Identifiers are in clear here, in memory only.
#[derive(Debug, Clone)]
pub struct MatchRecord {
    pub name: NameKey,
    pub sex: Option<Sex>,
    pub birth: Option<Birth>,
    pub resident_id: Option<String>,
    /// False for IDs kept from imported records that fail the GB 11643 checks.
    pub resident_id_valid: bool,
    pub phone: Option<String>,
    pub insurance_no: Option<String>,
    /// 12-digit village or 9-digit township division code of the address.
    pub division: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    ResidentId,
    Name,
    BirthDate,
    Sex,
    Phone,
    InsuranceNo,
    Address,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    pub field: Field,
    pub level: &'static str,
    pub weight: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Grade {
    None,
    Possible,
    Probable,
    Certain,
}

#[derive(Debug, Clone)]
pub struct Scored {
    pub score: f64,
    pub grade: Grade,
    pub comparisons: Vec<Comparison>,
}

/// Level weights (log2 m/u) and grade thresholds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MatchWeights {
    pub rid_exact: f64,
    pub rid_near: f64,
    pub rid_different: f64,
    pub name_exact: f64,
    pub name_same_pinyin: f64,
    pub name_similar_pinyin: f64,
    pub name_same_surname: f64,
    pub name_different: f64,
    pub birth_exact: f64,
    pub birth_transposed: f64,
    pub birth_same_year: f64,
    pub birth_different: f64,
    /// Any difference between two full birth dates of a young child (under `child_years`):
    /// siblings share a parent's phone and village and are born a digit apart, so for them a
    /// "transposed" date is not a typo but another child.
    pub birth_child_different: f64,
    /// Age (in years, at the later birth date's year) under which `birth_child_different` applies.
    pub child_years: i32,
    pub sex_same: f64,
    pub sex_different: f64,
    pub phone_exact: f64,
    pub phone_same_tail: f64,
    pub phone_transposed: f64,
    pub phone_different: f64,
    pub insurance_exact: f64,
    pub insurance_different: f64,
    pub address_same_village: f64,
    pub address_same_township: f64,
    pub address_different: f64,
    /// Score at or above which a pair is the same person, linked without asking.
    pub certain: f64,
    /// Score at or above which a person must decide.
    pub probable: f64,
    /// Score at or above which a candidate is shown.
    pub possible: f64,
}

impl Default for MatchWeights {
    fn default() -> Self {
        Self {
            rid_exact: 20.0,
            rid_near: 9.0,
            rid_different: -14.0,
            name_exact: 10.5,
            name_same_pinyin: 8.5,
            name_similar_pinyin: 3.5,
            name_same_surname: -7.0,
            name_different: -9.0,
            birth_exact: 11.5,
            birth_transposed: 6.0,
            birth_same_year: 2.5,
            birth_different: -8.0,
            birth_child_different: -14.0,
            child_years: 7,
            sex_same: 1.0,
            sex_different: -9.0,
            phone_exact: 12.0,
            phone_same_tail: 6.0,
            phone_transposed: 8.0,
            phone_different: -2.0,
            insurance_exact: 12.0,
            insurance_different: -3.0,
            address_same_village: 3.0,
            address_same_township: 0.5,
            address_different: -1.5,
            certain: 18.0,
            probable: 12.0,
            possible: 8.0,
        }
    }
}

impl MatchWeights {
    /// A tenant's weights: `[settings.matching]` over the defaults.
    pub fn from_settings(settings: &serde_json::Value) -> Self {
        settings.get("matching").and_then(|v| serde_json::from_value(v.clone()).ok()).unwrap_or_default()
    }

    pub fn grade(&self, score: f64) -> Grade {
        if score >= self.certain {
            Grade::Certain
        } else if score >= self.probable {
            Grade::Probable
        } else if score >= self.possible {
            Grade::Possible
        } else {
            Grade::None
        }
    }
}

/// Whether `a` and `b` differ by one adjacent transposition or one substituted character.
fn one_slip(a: &str, b: &str) -> bool {
    if a.len() != b.len() || a == b {
        return false;
    }
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let diffs: Vec<usize> = (0..a.len()).filter(|&i| a[i] != b[i]).collect();
    match diffs.as_slice() {
        [_] => true,
        [i, j] => *j == i + 1 && a[*i] == b[*j] && a[*j] == b[*i],
        _ => false,
    }
}

fn cmp_name(a: &NameKey, b: &NameKey, w: &MatchWeights) -> (&'static str, f64) {
    if a.name == b.name {
        ("exact", w.name_exact)
    } else if a.joined == b.joined {
        ("same_pinyin", w.name_same_pinyin)
    } else if a.surname == b.surname && name_close(&a.joined, &b.joined) {
        ("similar_pinyin", w.name_similar_pinyin)
    } else if a.surname == b.surname {
        ("same_surname", w.name_same_surname)
    } else {
        ("different", w.name_different)
    }
}

fn name_close(a: &str, b: &str) -> bool {
    let limit = if a.len().max(b.len()) <= 6 { 1 } else { 2 };
    a.len().abs_diff(b.len()) <= limit && edit_distance(a, b) <= limit
}

fn cmp_birth(a: Birth, b: Birth, w: &MatchWeights) -> (&'static str, f64) {
    match (a, b) {
        (Birth::Full(x), Birth::Full(y)) if x == y => ("exact", w.birth_exact),
        (Birth::Full(x), Birth::Full(y)) => {
            let (sx, sy) = (x.format("%Y%m%d").to_string(), y.format("%Y%m%d").to_string());
            if one_slip(&sx, &sy) {
                ("transposed", w.birth_transposed)
            } else if x.year() == y.year() {
                ("same_year", w.birth_same_year)
            } else {
                ("different", w.birth_different)
            }
        }
        _ if a.year() == b.year() => ("same_year", w.birth_same_year),
        _ if one_slip(&a.year().to_string(), &b.year().to_string()) => ("transposed", w.birth_transposed),
        _ => ("different", w.birth_different),
    }
}

fn cmp_phone(a: &str, b: &str, w: &MatchWeights) -> (&'static str, f64) {
    if a == b {
        ("exact", w.phone_exact)
    } else if one_slip(a, b) {
        ("transposed", w.phone_transposed)
    } else if a.len() >= 4 && b.len() >= 4 && a[a.len() - 4..] == b[b.len() - 4..] {
        ("same_tail", w.phone_same_tail)
    } else {
        ("different", w.phone_different)
    }
}

fn cmp_address(a: &str, b: &str, w: &MatchWeights) -> (&'static str, f64) {
    if a.len() == 12 && a == b {
        ("same_village", w.address_same_village)
    } else if a.len() >= 9 && b.len() >= 9 && a[..9] == b[..9] {
        ("same_township", w.address_same_township)
    } else {
        ("different", w.address_different)
    }
}

/// The year today in China: a child's age decides how much a birth-date difference says.
fn today_year() -> i32 {
    crate::platform::clock::china_date(chrono::Utc::now()).year()
}

/// The highest grade the evidence allows, whatever the score:
/// - certain needs the same resident ID or two independent agreements besides name and birth
///   date (phone, village, insurance number, a resident ID a typo away); name and birth date
///   alone, however exact, are namesakes often enough in a county;
/// - names that differ beyond a homophone or a variant (same surname, another given name: twins,
///   siblings) never reach probable without an identifier;
/// - a young child links automatically only on an identifier unless name and birth date are exact;
/// - so does a pair whose recorded sexes differ or whose given names are only similar.
fn evidence_cap(comparisons: &[Comparison], young: bool) -> Grade {
    let agrees = |field: Field, levels: &[&str]| {
        comparisons.iter().any(|c| c.field == field && levels.contains(&c.level) && c.weight > 0.0)
    };
    let name_level = comparisons.iter().find(|c| c.field == Field::Name).map(|c| c.level);
    // Only the same resident ID is an identifier; one typed two keystrokes away, or the same
    // insurance number (a household's, sometimes), is one more agreement and the caps still hold.
    // The same ID under another given name is a family member's ID given by mistake (a child
    // registered with a parent's or a sibling's) as often as a renamed person: worth a look,
    // never a link, or the child's visits join the sibling's record. Names that sound alike or
    // are variants agree (an input method's slips are homophones); a name a letter of pinyin
    // away (张涛 and 张涛旭, 子豪 and 子涵) is how relatives are named. (Requiring the exact
    // name of young children too, for twins named alike such as 子轩 and 子萱, sent 70-90 true
    // pairs a seed to review and prevented no false link in the quality benchmark.)
    if agrees(Field::ResidentId, &["exact"]) {
        return match name_level {
            Some("exact" | "same_pinyin") | None => Grade::Certain,
            _ => Grade::Probable,
        };
    }
    if matches!(name_level, Some("same_surname" | "different")) {
        return Grade::Possible;
    }
    // A young child whose name or birth date is only alike (twins are often named alike: 子轩
    // and 子萱) links only on an identifier.
    let child_dates_differ = comparisons.iter().any(|c| c.field == Field::BirthDate && c.level == "child_different");
    if (young && name_level != Some("exact")) || child_dates_differ {
        return Grade::Probable;
    }
    // A recorded sex that differs, or a given name that is only similar (not a homophone or a
    // variant character: 子豪 and 子涵), is where siblings and look-alikes sit: worth a look.
    let sex_differs = comparisons.iter().any(|c| c.field == Field::Sex && c.level == "different");
    if sex_differs || name_level == Some("similar_pinyin") {
        return Grade::Probable;
    }
    let independent = usize::from(agrees(Field::Phone, &["exact", "transposed"]))
        + usize::from(agrees(Field::Address, &["same_village"]))
        + usize::from(agrees(Field::InsuranceNo, &["exact"]))
        + usize::from(agrees(Field::ResidentId, &["near"]));
    if independent >= 2 { Grade::Certain } else { Grade::Probable }
}

/// Scores a pair. Symmetric: `score(a, b) == score(b, a)`.
pub fn score(a: &MatchRecord, b: &MatchRecord, w: &MatchWeights) -> Scored {
    let mut comparisons = Vec::with_capacity(7);
    let mut push = |field, (level, weight): (&'static str, f64)| comparisons.push(Comparison { field, level, weight });

    let mut deterministic = None;
    // Two different valid IDs are two people, however alike (twins share everything else): shown
    // at most as possible, never linked.
    let mut cap = Grade::Certain;
    if let (Some(x), Some(y)) = (&a.resident_id, &b.resident_id) {
        if x != y && a.resident_id_valid && b.resident_id_valid {
            cap = Grade::Possible;
        }
        if x == y && a.resident_id_valid && b.resident_id_valid {
            deterministic = Some(Grade::Certain);
            push(Field::ResidentId, ("exact", w.rid_exact));
        } else if !(a.resident_id_valid && b.resident_id_valid) && (x == y || edit_distance(x, y) <= 2) {
            // A typo: one side failed the checks and is one or two keystrokes from the other.
            push(Field::ResidentId, if x == y { ("exact", w.rid_exact) } else { ("near", w.rid_near) });
        } else {
            push(Field::ResidentId, ("different", w.rid_different));
        }
    }
    push(Field::Name, cmp_name(&a.name, &b.name, w));
    let young = match (a.birth, b.birth) {
        (Some(x), Some(y)) => x.year().max(y.year()) > today_year() - w.child_years,
        _ => false,
    };
    if let (Some(x), Some(y)) = (a.birth, b.birth) {
        let level = cmp_birth(x, y, w);
        let both_full = matches!((x, y), (Birth::Full(_), Birth::Full(_)));
        push(
            Field::BirthDate,
            if young && both_full && level.0 != "exact" { ("child_different", w.birth_child_different) } else { level },
        );
    }
    if let (Some(x), Some(y)) = (a.sex, b.sex) {
        push(Field::Sex, if x == y { ("same", w.sex_same) } else { ("different", w.sex_different) });
    }
    if let (Some(x), Some(y)) = (&a.phone, &b.phone) {
        push(Field::Phone, cmp_phone(x, y, w));
    }
    if let (Some(x), Some(y)) = (&a.insurance_no, &b.insurance_no) {
        push(
            Field::InsuranceNo,
            if x == y { ("exact", w.insurance_exact) } else { ("different", w.insurance_different) },
        );
    }
    if let (Some(x), Some(y)) = (&a.division, &b.division) {
        push(Field::Address, cmp_address(x, y, w));
    }
    let score: f64 = comparisons.iter().map(|c| c.weight).sum();
    let evidence = evidence_cap(&comparisons, young);
    // The same valid ID decides: certain, or probable when the name says it may be someone
    // else's (see there), whatever the weights make of the rest.
    let grade = match deterministic {
        Some(_) => evidence,
        None => w.grade(score).min(cap.min(evidence)),
    };
    let score = if deterministic.is_some() && grade == Grade::Certain { score.max(w.certain) } else { score };
    Scored { score, grade, comparisons }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(name: &str, birth: &str, phone: Option<&str>) -> MatchRecord {
        MatchRecord {
            name: NameKey::parse(name).unwrap(),
            sex: Some(Sex::Male),
            birth: Some(Birth::Full(NaiveDate::parse_from_str(birth, "%Y-%m-%d").unwrap())),
            resident_id: None,
            resident_id_valid: false,
            phone: phone.map(String::from),
            insurance_no: None,
            division: Some("130999101201".into()),
        }
    }

    #[test]
    fn slips() {
        assert!(one_slip("19850312", "19850321"));
        assert!(one_slip("19850312", "19850313"));
        assert!(!one_slip("19850312", "19850412x"));
        assert!(!one_slip("19850312", "19860412"));
    }

    #[test]
    fn homophone_with_transposed_date_and_same_phone_is_at_least_probable() {
        let w = MatchWeights::default();
        let a = rec("张伟", "1985-03-12", Some("13812345678"));
        let b = rec("章伟", "1985-03-21", Some("13812345678"));
        let s = score(&a, &b, &w);
        assert!(s.grade >= Grade::Probable, "{s:?}");
        assert_eq!(s.comparisons[0].level, "same_pinyin");
        assert_eq!(s.comparisons[1].level, "transposed");
    }

    #[test]
    fn different_people_with_a_common_name_are_not_linked() {
        let w = MatchWeights::default();
        let a = rec("王芳", "1970-01-05", Some("13900001111"));
        let b = rec("王芳", "1982-07-19", Some("13722223333"));
        assert!(score(&a, &b, &w).grade < Grade::Probable);
    }

    #[test]
    fn missing_values_count_as_missing() {
        let w = MatchWeights::default();
        let a = rec("李秀兰", "1948-06-01", None);
        let mut b = rec("李秀兰", "1948-06-01", None);
        b.division = None;
        let s = score(&a, &b, &w);
        assert!(s.comparisons.iter().all(|c| c.field != Field::Phone && c.field != Field::Address));
        assert!(s.comparisons.iter().all(|c| c.weight > 0.0));
    }

    #[test]
    fn equal_valid_resident_ids_decide() {
        let w = MatchWeights::default();
        let mut a = rec("刘洋", "1990-01-01", None);
        let mut b = rec("刘阳", "1990-01-01", None);
        a.resident_id = Some("130999199001010011".into());
        b.resident_id = a.resident_id.clone();
        a.resident_id_valid = true;
        b.resident_id_valid = true;
        assert_eq!(score(&a, &b, &w).grade, Grade::Certain);
        b.resident_id = Some("130999199001010038".into());
        assert!(score(&a, &b, &w).grade < Grade::Probable);
        // Twins: everything alike but the (valid) IDs.
        let mut twin = a.clone();
        twin.resident_id = Some("130999199001010038".into());
        twin.phone = Some("13800000000".into());
        let mut me = a.clone();
        me.phone = twin.phone.clone();
        assert!(score(&me, &twin, &w).score >= w.certain, "alike enough to link but for the IDs");
        assert_eq!(score(&me, &twin, &w).grade, Grade::Possible);
    }

    /// A child registered with a sibling's or a parent's ID: the ID is the other's, the name is
    /// not. Worth a look, never a link.
    #[test]
    fn the_same_id_under_another_given_name_is_not_a_link() {
        let w = MatchWeights::default();
        let with_id = |name: &str, born: &str, id: &str| {
            let mut r = rec(name, born, Some("13800001111"));
            r.resident_id = Some(id.into());
            r.resident_id_valid = true;
            r
        };
        let adult = "130999199001010011";
        let grade =
            |a: &str, b: &str| score(&with_id(a, "1990-01-01", adult), &with_id(b, "1990-01-01", adult), &w).grade;
        assert_eq!(grade("刘洋", "刘洋"), Grade::Certain);
        assert_eq!(grade("刘洋", "劉洋"), Grade::Certain, "a variant character");
        assert_eq!(grade("刘洋", "刘阳"), Grade::Certain, "a homophone");
        let near = score(&with_id("刘洋", "1990-01-01", adult), &with_id("刘祥", "1990-01-01", adult), &w);
        assert_eq!(near.comparisons.iter().find(|c| c.field == Field::Name).unwrap().level, "similar_pinyin");
        assert_eq!(near.grade, Grade::Probable, "a name a letter of pinyin away (liuyang, liuxiang)");
        assert_eq!(grade("刘洋", "刘建国"), Grade::Probable, "another given name");
        assert_eq!(grade("刘洋", "王芳"), Grade::Probable, "another name altogether");
        let child = format!("130999{}0101001", today_year() - 2);
        let child = format!("{child}{}", crate::patients::resident_id::check_character(child.as_bytes()));
        let born = format!("{}-01-01", today_year() - 2);
        let c = |a: &str, b: &str| score(&with_id(a, &born, &child), &with_id(b, &born, &child), &w).grade;
        assert_eq!(c("张子豪", "张子豪"), Grade::Certain);
        assert_eq!(c("张子豪", "张子涵"), Grade::Probable, "siblings are named a letter apart");
        // Whatever a tenant's weights make of the rest, the same ID is at least worth a look.
        let harsh = MatchWeights { name_different: -60.0, name_same_surname: -60.0, ..w.clone() };
        let s = score(&with_id("刘洋", "1990-01-01", adult), &with_id("王芳", "1990-01-01", adult), &harsh);
        assert!(s.score < harsh.probable, "{s:?}");
        assert_eq!(s.grade, Grade::Probable);
    }

    #[test]
    fn name_and_birth_date_alone_are_never_certain() {
        let w = MatchWeights::default();
        let mut a = rec("王秀英", "1948-06-10", None);
        let mut b = rec("王秀英", "1948-06-10", None);
        (a.division, b.division) = (None, None);
        let s = score(&a, &b, &w);
        assert!(s.score >= w.certain, "the score alone would link: {s:?}");
        assert_eq!(s.grade, Grade::Probable, "namesakes are worth a look, not a link");
        // One more agreement is still not enough; two independent ones are.
        a.phone = Some("13800001111".into());
        b.phone = a.phone.clone();
        assert_eq!(score(&a, &b, &w).grade, Grade::Probable);
        a.division = Some("130999101201".into());
        b.division = a.division.clone();
        assert_eq!(score(&a, &b, &w).grade, Grade::Certain);
        // An insurance number is one agreement (a household may share one), not an identifier.
        let (mut c, mut d) = (rec("王秀英", "1948-06-10", None), rec("王秀英", "1948-06-10", None));
        (c.division, d.division) = (None, None);
        c.insurance_no = Some("130999000123".into());
        d.insurance_no = c.insurance_no.clone();
        assert_eq!(score(&c, &d, &w).grade, Grade::Probable);
        c.phone = Some("13800001111".into());
        d.phone = c.phone.clone();
        assert_eq!(score(&c, &d, &w).grade, Grade::Certain);
    }

    #[test]
    fn a_resident_id_a_typo_away_does_not_lift_the_look_alike_caps() {
        let w = MatchWeights::default();
        let year = today_year() - 1;
        let born = format!("{year}-03-12");
        // Twins: one ID valid, the other's typed with a slip, two keystrokes from its twin's.
        let mut a = rec("李子轩", &born, Some("13811112222"));
        let mut b = rec("李子萱", &born, Some("13811112222"));
        a.resident_id = Some(format!("130999{}0012", born.replace('-', "")));
        a.resident_id_valid = true;
        b.resident_id = Some(format!("130999{}0021", born.replace('-', "")));
        b.resident_id_valid = false;
        let s = score(&a, &b, &w);
        assert_eq!(s.comparisons[0].level, "near");
        assert!(s.grade <= Grade::Probable, "{s:?}");
    }

    #[test]
    fn twins_and_siblings_never_link_without_an_identifier() {
        let w = MatchWeights::default();
        let year = today_year() - 1;
        let born = format!("{year}-03-12");
        // Twins: same surname, date, phone and village, different given names.
        let a = rec("李子轩", &born, Some("13811112222"));
        let b = rec("李雨涵", &born, Some("13811112222"));
        assert!(score(&a, &b, &w).grade <= Grade::Possible, "{:?}", score(&a, &b, &w));
        // Siblings born a digit apart (the second child's date), sharing a parent's phone.
        let c = rec("李子轩", &format!("{year}-03-12"), Some("13811112222"));
        let d = rec("李子豪", &format!("{}-03-13", year - 1), Some("13811112222"));
        assert!(score(&c, &d, &w).grade <= Grade::Possible, "{:?}", score(&c, &d, &w));
        // The same infant with a one-digit slip in the date is no more than worth a look.
        let e = rec("李子轩", &format!("{year}-03-12"), Some("13811112222"));
        let f = rec("李子轩", &format!("{year}-03-13"), Some("13811112222"));
        let s = score(&e, &f, &w);
        assert_eq!(s.comparisons[1].level, "child_different");
        assert!(s.grade <= Grade::Probable, "{s:?}");
        // For an adult the same slip is a typo.
        let g = rec("李子轩", "1960-03-12", Some("13811112222"));
        let h = rec("李子轩", "1960-03-13", Some("13811112222"));
        assert_eq!(score(&g, &h, &w).grade, Grade::Certain);
        // Homophones and variants of the given name are not "different names".
        let i = rec("张伟", "1985-03-12", Some("13812345678"));
        let j = rec("章伟", "1985-03-12", Some("13812345678"));
        assert_eq!(score(&i, &j, &w).grade, Grade::Certain);
    }

    #[test]
    fn scores_are_symmetric() {
        let w = MatchWeights::default();
        let a = rec("张伟", "1985-03-12", Some("13812345678"));
        let b = rec("张玮", "1958-03-12", Some("13812345687"));
        assert_eq!(score(&a, &b, &w).score, score(&b, &a, &w).score);
    }
}
