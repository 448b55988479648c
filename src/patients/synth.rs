//! Synthetic residents of a county, with known duplicates carrying realistic errors. Tests, the
//! demo and the benchmarks use it; `cloudhis seed` loads its output into a tenant.
//!
//! Names follow the surname frequencies of the national census and common given-name characters
//! by sex; birth years skew old (rural populations do); the elderly often lack an ID number or a
//! phone of their own (some give a child's). A duplicate is the same person registered again at
//! another institution with one or two of: a homophone or variant character, a typo in the ID, no
//! ID, a changed phone, swapped phone digits, no phone, transposed birth-date digits, a year-only
//! birth date, an address in another township.

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use chrono::{Datelike, NaiveDate};
use rand::distr::weighted::WeightedIndex;
use rand::prelude::*;
use rand::rngs::StdRng;

use super::matching::Birth;
use super::resident_id::{Sex, check_character};

/// Surnames with their approximate share (per mille) of the population.
const SURNAMES: &[(&str, u32)] = &[
    ("王", 71),
    ("李", 70),
    ("张", 67),
    ("刘", 54),
    ("陈", 45),
    ("杨", 31),
    ("黄", 22),
    ("赵", 21),
    ("吴", 20),
    ("周", 19),
    ("徐", 17),
    ("孙", 15),
    ("马", 15),
    ("朱", 13),
    ("胡", 13),
    ("郭", 12),
    ("何", 12),
    ("高", 11),
    ("林", 11),
    ("罗", 10),
    ("郑", 10),
    ("梁", 9),
    ("谢", 8),
    ("宋", 8),
    ("唐", 8),
    ("许", 7),
    ("韩", 7),
    ("冯", 7),
    ("邓", 7),
    ("曹", 6),
    ("彭", 6),
    ("曾", 6),
    ("肖", 6),
    ("田", 6),
    ("董", 5),
    ("袁", 5),
    ("潘", 5),
    ("于", 5),
    ("蒋", 5),
    ("蔡", 5),
    ("余", 5),
    ("杜", 4),
    ("叶", 4),
    ("程", 4),
    ("苏", 4),
    ("魏", 4),
    ("吕", 4),
    ("丁", 4),
    ("任", 4),
    ("沈", 4),
    ("姚", 3),
    ("卢", 3),
    ("姜", 3),
    ("崔", 3),
    ("钟", 3),
    ("谭", 3),
    ("陆", 3),
    ("汪", 3),
    ("范", 3),
    ("金", 3),
    ("石", 3),
    ("廖", 3),
    ("贾", 3),
    ("夏", 3),
    ("韦", 3),
    ("付", 3),
    ("方", 3),
    ("白", 3),
    ("邹", 3),
    ("孟", 3),
    ("熊", 3),
    ("秦", 3),
    ("邱", 3),
    ("江", 3),
    ("尹", 2),
    ("薛", 2),
    ("闫", 2),
    ("段", 2),
    ("雷", 2),
    ("侯", 2),
    ("龙", 2),
    ("史", 2),
    ("陶", 2),
    ("黎", 2),
    ("贺", 2),
    ("顾", 2),
    ("毛", 2),
    ("郝", 2),
    ("龚", 2),
    ("邵", 2),
    ("万", 2),
    ("钱", 2),
    ("严", 2),
    ("覃", 1),
    ("武", 2),
    ("戴", 2),
    ("莫", 1),
    ("孔", 1),
    ("向", 1),
    ("汤", 1),
    ("欧阳", 1),
    ("单", 1),
    ("诸葛", 1),
];

const MALE: &str = "伟强磊军勇杰涛斌超明刚平辉鹏华飞鑫波宇浩凯健俊帆帅旭宁龙林阳建国志海峰东文晨博子轩然天佳振家成兵亮德福贵生永春山泉宏新江瑞";
const FEMALE: &str = "芳娜敏静丽艳娟霞秀英玲桂兰红梅琳燕萍雪婷慧莉佳欣颖倩琴云洁凤华美瑶悦晶菊珍淑月香荣翠彩玉春梦怡";
/// Extra characters that sound like the common ones, for homophone errors.
const SOUNDALIKES: &str = "卫维玮炜薇微威蔷墙垒君均钧永泳咏洁捷滔韬彬潮铭鸣钢萍苹晖朋桦骅菲非欣新馨心博雨玉羽语昊皓恺建剑骏峻凡凝隆琳霖杨扬洋智锋风丰冬雯辰紫梓萱嘉城诚冰婧靖莉俐力燕雁莹玲蓝虹枚霖雪亭汇丽佳倩芹韵杰凰桦媚遥月晴菊真书岳湘蓉";
const TRADITIONAL: &[(char, char)] = &[
    ('张', '張'),
    ('刘', '劉'),
    ('陈', '陳'),
    ('杨', '楊'),
    ('黄', '黃'),
    ('赵', '趙'),
    ('吴', '吳'),
    ('郑', '鄭'),
    ('孙', '孫'),
    ('马', '馬'),
    ('冯', '馮'),
    ('韩', '韓'),
    ('伟', '偉'),
    ('华', '華'),
    ('丽', '麗'),
    ('军', '軍'),
    ('强', '強'),
    ('国', '國'),
    ('红', '紅'),
    ('兰', '蘭'),
    ('凤', '鳳'),
    ('云', '雲'),
    ('龙', '龍'),
    ('东', '東'),
    ('辉', '輝'),
    ('鹏', '鵬'),
    ('飞', '飛'),
    ('涛', '濤'),
    ('刚', '剛'),
    ('杰', '傑'),
    ('静', '靜'),
    ('艳', '艷'),
    ('贵', '貴'),
    ('宁', '寧'),
    ('帅', '帥'),
    ('凯', '凱'),
    ('罗', '羅'),
    ('许', '許'),
    ('邓', '鄧'),
    ('谢', '謝'),
    ('梦', '夢'),
    ('荣', '榮'),
    ('玉', '玉'),
    ('庆', '慶'),
];
const OTHER_REGIONS: &[&str] = &["130101", "130102", "130602", "410102", "510104", "370102", "130982", "131102"];

/// Homophone groups among the name characters, by toneless pinyin.
static HOMOPHONES: LazyLock<HashMap<char, Vec<char>>> = LazyLock::new(|| {
    use pinyin::ToPinyin;
    let mut by_sound: HashMap<&'static str, Vec<char>> = HashMap::new();
    let all: HashSet<char> = MALE.chars().chain(FEMALE.chars()).chain(SOUNDALIKES.chars()).collect();
    for c in all {
        if let Some(p) = c.to_pinyin() {
            by_sound.entry(p.plain()).or_default().push(c);
        }
    }
    let mut map = HashMap::new();
    for group in by_sound.values() {
        for c in group {
            let mut others: Vec<char> = group.iter().copied().filter(|o| o != c).collect();
            others.sort();
            if !others.is_empty() {
                map.insert(*c, others);
            }
        }
    }
    map
});

#[derive(Debug, Clone)]
pub struct SynthConfig {
    /// Total records, duplicates included.
    pub records: usize,
    /// Share of records that are duplicates of another record (0.0 - 0.5).
    pub duplicate_share: f64,
    pub seed: u64,
    /// 12-digit village division codes residents live in.
    pub villages: Vec<String>,
    /// Share of extra residents who are another person's hard look-alike (0.0 - 0.2): a twin or a
    /// sibling born a digit apart sharing a parent's phone and village, or a namesake born the
    /// same day elsewhere. They are different people, so they test precision.
    pub family_share: f64,
}

#[derive(Debug, Clone)]
pub struct SynthRecord {
    /// Same value for every record of one real person.
    pub truth: u32,
    pub name: String,
    /// `None`: the record does not say (an error of a duplicate, `no_sex`).
    pub sex: Option<Sex>,
    /// `None`: the record does not say (`no_birth`).
    pub birth: Option<Birth>,
    pub resident_id: Option<String>,
    pub resident_id_valid: bool,
    pub phone: Option<String>,
    pub insurance_no: Option<String>,
    pub division: String,
    /// The errors a duplicate carries (empty for originals).
    pub errors: Vec<&'static str>,
    pub is_duplicate: bool,
}

impl SynthRecord {
    /// The birth date as a form or a file writes it (`1950-03-07`, `1950`), if the record says.
    pub fn birth_text(&self) -> Option<String> {
        self.birth.map(|b| match b {
            Birth::Full(d) => d.format("%Y-%m-%d").to_string(),
            Birth::Year(y) => y.to_string(),
        })
    }

    /// The record as a clinic registers it (`POST /api/v1/patients`). With a valid ID the clerk
    /// takes the birth date from the card (a typed date that disagrees with the ID is refused).
    pub fn registration_json(&self) -> serde_json::Value {
        let has_id = self.resident_id.is_some() && self.resident_id_valid;
        serde_json::json!({
            "name": self.name,
            "sex": self.sex.map(crate::patients::domain::sex_str),
            "birth_date": if has_id { None } else { self.birth_text() },
            "resident_id": self.resident_id.as_ref().filter(|_| has_id),
            "phone": self.phone,
            "insurance_no": self.insurance_no,
            "address_division": self.division,
        })
    }

    /// The sex as a Chinese file writes it (男, 女), if the record says.
    pub fn sex_zh(&self) -> Option<&'static str> {
        self.sex.map(|s| if s == Sex::Male { "男" } else { "女" })
    }
}

/// The demo county's villages: the demo file's nine plus synthetic ones, 20 per township.
pub fn county_villages(county: &str, townships: usize, per_township: usize) -> Vec<String> {
    (1..=townships)
        .flat_map(|t| (1..=per_township).map(move |v| format!("{county}{:03}{:03}", 100 + t, 200 + v)))
        .collect()
}

fn random_birth(rng: &mut StdRng) -> NaiveDate {
    // Rural age pyramid, roughly: fewer young adults (they work in cities), many elderly.
    let bands: [(i32, i32, u32); 5] =
        [(1930, 1950, 16), (1950, 1965, 26), (1965, 1980, 22), (1980, 2000, 17), (2000, 2025, 19)];
    let idx = WeightedIndex::new(bands.iter().map(|b| b.2)).unwrap().sample(rng);
    let (from, to, _) = bands[idx];
    let year = rng.random_range(from..to);
    let ordinal = rng.random_range(1..=365);
    NaiveDate::from_yo_opt(year, ordinal).unwrap()
}

fn random_phone(rng: &mut StdRng) -> String {
    const PREFIXES: [&str; 12] = ["130", "131", "132", "135", "136", "137", "138", "139", "150", "151", "158", "186"];
    format!("{}{:08}", PREFIXES.choose(rng).unwrap(), rng.random_range(0..100_000_000u32))
}

fn given_name(rng: &mut StdRng, sex: Sex) -> String {
    let pool: Vec<char> = match sex {
        Sex::Male => MALE.chars().collect(),
        Sex::Female => FEMALE.chars().collect(),
    };
    let len = if rng.random_bool(0.3) { 1 } else { 2 };
    (0..len).map(|_| *pool.choose(rng).unwrap()).collect()
}

fn make_id(rng: &mut StdRng, birth: NaiveDate, sex: Sex, used: &mut HashSet<String>) -> String {
    loop {
        let region = if rng.random_bool(0.9) { "130999" } else { OTHER_REGIONS.choose(rng).unwrap() };
        let mut seq = rng.random_range(0..1000u32);
        let odd = seq % 2 == 1;
        if odd != (sex == Sex::Male) {
            seq = (seq + 1) % 1000;
        }
        let body = format!("{region}{}{seq:03}", birth.format("%Y%m%d"));
        let id = format!("{body}{}", check_character(body.as_bytes()));
        if used.insert(id.clone()) {
            return id;
        }
    }
}

pub fn generate(cfg: &SynthConfig) -> Vec<SynthRecord> {
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let surname_index = WeightedIndex::new(SURNAMES.iter().map(|s| s.1)).unwrap();
    let duplicates = (cfg.records as f64 * cfg.duplicate_share).round() as usize;
    let originals = cfg.records - duplicates;
    let mut used_ids = HashSet::new();
    let mut out: Vec<SynthRecord> = Vec::with_capacity(cfg.records);
    for truth in 0..originals {
        let sex = if rng.random_bool(0.5) { Sex::Male } else { Sex::Female };
        let birth = random_birth(&mut rng);
        let age = 2026 - birth.year();
        let name = format!("{}{}", SURNAMES[surname_index.sample(&mut rng)].0, given_name(&mut rng, sex));
        let no_id_chance = if age >= 75 {
            0.4
        } else if age <= 3 {
            0.3
        } else {
            0.03
        };
        let resident_id = (!rng.random_bool(no_id_chance)).then(|| make_id(&mut rng, birth, sex, &mut used_ids));
        let has_phone = if age >= 70 {
            0.45
        } else if age < 14 {
            0.0
        } else {
            0.88
        };
        let division = cfg.villages.choose(&mut rng).unwrap().clone();
        let phone = if rng.random_bool(has_phone) {
            Some(random_phone(&mut rng))
        } else if age >= 65 && rng.random_bool(0.3) {
            // A child's phone, shared with someone else of the village.
            out.iter()
                .rev()
                .take(200)
                .find(|r| r.division == division && r.phone.is_some())
                .and_then(|r| r.phone.clone())
        } else {
            None
        };
        let insurance_no = rng.random_bool(0.6).then(|| format!("{:012}", rng.random_range(0..1_000_000_000_000u64)));
        let birth = Some(if resident_id.is_none() && age >= 75 && rng.random_bool(0.3) {
            Birth::Year(birth.year())
        } else {
            Birth::Full(birth)
        });
        out.push(SynthRecord {
            truth: truth as u32,
            name,
            sex: Some(sex),
            birth,
            resident_id_valid: resident_id.is_some(),
            resident_id,
            phone,
            insurance_no,
            division,
            errors: vec![],
            is_duplicate: false,
        });
    }
    add_look_alikes(&mut rng, cfg, &mut out, &mut used_ids);
    add_duplicates(&mut rng, cfg, &mut out, duplicates);
    out
}

/// The error kinds of the first round's generator.
const FIRST_ROUND_KINDS: [&str; 10] = [
    "homophone",
    "variant",
    "id_typo",
    "no_id",
    "phone_changed",
    "phone_typo",
    "no_phone",
    "birth_transposed",
    "year_only",
    "other_township",
];

/// Adds `duplicates` copies of the people in `out`, each with one or two errors.
fn add_duplicates(rng: &mut StdRng, cfg: &SynthConfig, out: &mut Vec<SynthRecord>, duplicates: usize) {
    let originals = out.len();
    // Households for `family_id`: residents with a valid ID, by surname and village.
    let mut households: HashMap<(char, &str), Vec<usize>> = HashMap::new();
    if cfg.family_share > 0.0 {
        for (i, r) in out.iter().enumerate().filter(|(_, r)| r.resident_id_valid) {
            let surname = r.name.chars().next().expect("a name");
            households.entry((surname, r.division.as_str())).or_default().push(i);
        }
    }
    // The second round's kinds (with look-alikes): a record that does not say its sex or birth
    // date, and (on FAMILY_ID_SHARE of duplicates, its first error) a family member's ID given
    // by mistake. `--families 0` keeps the first round's.
    let mut kinds = FIRST_ROUND_KINDS.to_vec();
    if cfg.family_share > 0.0 {
        kinds.extend(["no_sex", "no_birth"]);
    }
    let mut dups = Vec::with_capacity(duplicates);
    let mut chosen: Vec<usize> = (0..originals).collect();
    chosen.shuffle(rng);
    for &i in chosen.iter().cycle().take(duplicates) {
        let mut dup = out[i].clone();
        dup.is_duplicate = true;
        let count = if rng.random_bool(0.55) { 1 } else { 2 };
        if cfg.family_share > 0.0 && rng.random_bool(FAMILY_ID_SHARE) && family_id(rng, &mut dup, out, &households) {
            dup.errors.push("family_id");
        }
        // Some records admit few kinds of error (no ID, no phone, a year-only birth date):
        // give up on the second error after a bounded number of tries.
        for _ in 0..64 {
            if dup.errors.len() >= count {
                break;
            }
            let kind = *kinds.choose(rng).unwrap();
            if !dup.errors.contains(&kind) && apply_error(rng, &mut dup, kind, &cfg.villages) {
                dup.errors.push(kind);
            }
        }
        dups.push(dup);
    }
    out.extend(dups);
}

/// Share of duplicates (with look-alikes on) that carry a family member's ID. The independent
/// set this imitates gives no rate; 3% is a guess that keeps the class visible without letting an
/// error no matcher can undo (two valid IDs are two people) swamp the others.
const FAMILY_ID_SHARE: f64 = 0.03;

/// A family member's ID given by mistake: the record takes the ID of another resident of the
/// same surname and village (a sibling, a parent), with the sex and birth date that ID says, as a
/// system that fills them from the card would; name, phone and address stay the person's own.
fn family_id(
    rng: &mut StdRng,
    r: &mut SynthRecord,
    people: &[SynthRecord],
    households: &HashMap<(char, &str), Vec<usize>>,
) -> bool {
    let surname = r.name.chars().next().expect("a name");
    let Some(members) = households.get(&(surname, r.division.as_str())) else { return false };
    let others: Vec<usize> = members.iter().copied().filter(|&i| people[i].truth != r.truth).collect();
    let Some(&i) = others.choose(rng) else { return false };
    let member = &people[i];
    (r.resident_id, r.resident_id_valid, r.sex, r.birth) = (member.resident_id.clone(), true, member.sex, member.birth);
    true
}

/// Another given name of the same sex, surely different from `name`'s.
fn other_given_name(rng: &mut StdRng, sex: Sex, name: &str) -> String {
    let surname: String = name.chars().take(1).collect();
    loop {
        let n = format!("{surname}{}", given_name(rng, sex));
        if n != name {
            return n;
        }
    }
}

/// A date one digit away from `d` (a sibling's, or a typo's), valid and in the past.
fn a_digit_apart(rng: &mut StdRng, d: NaiveDate) -> Option<NaiveDate> {
    let s = d.format("%Y%m%d").to_string().into_bytes();
    for _ in 0..20 {
        let i = rng.random_range(3..8);
        let mut t = s.clone();
        t[i] = b'0' + rng.random_range(0..10u8);
        if let Ok(nd) = NaiveDate::parse_from_str(std::str::from_utf8(&t).unwrap(), "%Y%m%d")
            && nd != d
            && nd.year() > 1900
            && nd.year() < 2026
        {
            return Some(nd);
        }
    }
    None
}

/// Adds `family_share` × originals look-alikes, each a new person: twins (same surname, date,
/// phone and village, another given name), siblings born a digit apart with a parent's phone,
/// and namesakes (same name and birth date, another phone and township). Children of a family
/// share the parent's phone, which both records carry.
fn add_look_alikes(rng: &mut StdRng, cfg: &SynthConfig, out: &mut Vec<SynthRecord>, used: &mut HashSet<String>) {
    let count = (out.len() as f64 * cfg.family_share).round() as usize;
    let mut truth = out.len() as u32;
    for _ in 0..count {
        let i = rng.random_range(0..out.len());
        let Some(Birth::Full(born)) = out[i].birth else { continue };
        let kind = *["twin", "sibling", "sibling", "namesake"].choose(rng).unwrap();
        let mut other = out[i].clone();
        other.truth = truth;
        other.errors = vec![];
        other.is_duplicate = false;
        let mut sex = if rng.random_bool(0.5) { Sex::Male } else { Sex::Female };
        let date = match kind {
            "twin" => Some(born),
            "sibling" => a_digit_apart(rng, born),
            _ => Some(born),
        };
        let Some(date) = date else { continue };
        other.birth = Some(Birth::Full(date));
        if kind == "namesake" {
            sex = out[i].sex.unwrap_or(sex);
            let township = &out[i].division[..9];
            let elsewhere: Vec<&String> = cfg.villages.iter().filter(|v| &v[..9] != township).collect();
            let Some(v) = elsewhere.choose(rng) else { continue };
            other.division = (*v).clone();
            other.phone = rng.random_bool(0.8).then(|| random_phone(rng));
        } else {
            other.name = other_given_name(rng, sex, &out[i].name);
            // The parent's phone, on both children's records.
            let parent = out[i].phone.clone().unwrap_or_else(|| random_phone(rng));
            out[i].phone = Some(parent.clone());
            other.phone = Some(parent);
        }
        let age = 2026 - date.year();
        let no_id = if age <= 3 { 0.4 } else { 0.05 };
        other.sex = Some(sex);
        other.resident_id = (!rng.random_bool(no_id)).then(|| make_id(rng, date, sex, used));
        other.resident_id_valid = other.resident_id.is_some();
        other.insurance_no = rng.random_bool(0.5).then(|| format!("{:012}", rng.random_range(0..1_000_000_000_000u64)));
        out.push(other);
        truth += 1;
    }
}

fn apply_error(rng: &mut StdRng, r: &mut SynthRecord, kind: &str, villages: &[String]) -> bool {
    match kind {
        "homophone" => {
            let chars: Vec<char> = r.name.chars().collect();
            let positions: Vec<usize> = (1..chars.len()).filter(|i| HOMOPHONES.contains_key(&chars[*i])).collect();
            let Some(&pos) = positions.choose(rng) else { return false };
            let mut chars = chars;
            chars[pos] = *HOMOPHONES[&chars[pos]].choose(rng).unwrap();
            r.name = chars.into_iter().collect();
            true
        }
        "variant" => {
            let chars: Vec<char> = r.name.chars().collect();
            let positions: Vec<usize> =
                (0..chars.len()).filter(|i| TRADITIONAL.iter().any(|(s, t)| *s == chars[*i] && s != t)).collect();
            let Some(&pos) = positions.choose(rng) else { return false };
            let mut chars = chars;
            chars[pos] = TRADITIONAL.iter().find(|(s, _)| *s == chars[pos]).unwrap().1;
            r.name = chars.into_iter().collect();
            true
        }
        "id_typo" => {
            let Some(id) = r.resident_id.as_mut().filter(|_| r.resident_id_valid) else { return false };
            let mut bytes = id.clone().into_bytes();
            let pos = rng.random_range(6..17);
            bytes[pos] = b'0' + ((bytes[pos] - b'0' + rng.random_range(1..10)) % 10);
            *id = String::from_utf8(bytes).unwrap();
            r.resident_id_valid = false;
            true
        }
        "no_id" => r.resident_id.take().is_some(),
        "phone_changed" => {
            if r.phone.is_none() {
                return false;
            }
            r.phone = Some(random_phone(rng));
            true
        }
        "phone_typo" => {
            let Some(p) = r.phone.as_mut() else { return false };
            let mut b = p.clone().into_bytes();
            let i = rng.random_range(3..10);
            if b[i] == b[i + 1] {
                return false;
            }
            b.swap(i, i + 1);
            *p = String::from_utf8(b).unwrap();
            true
        }
        "no_phone" => r.phone.take().is_some(),
        "no_sex" => r.sex.take().is_some(),
        "no_birth" => r.birth.take().is_some(),
        "birth_transposed" => {
            let Some(Birth::Full(d)) = r.birth else { return false };
            let s = d.format("%Y%m%d").to_string().into_bytes();
            for _ in 0..10 {
                let i = rng.random_range(2..7);
                let mut t = s.clone();
                t.swap(i, i + 1);
                if t != s
                    && let Ok(nd) = NaiveDate::parse_from_str(std::str::from_utf8(&t).unwrap(), "%Y%m%d")
                    && nd.year() > 1900
                    && nd.year() < 2026
                {
                    r.birth = Some(Birth::Full(nd));
                    return true;
                }
            }
            false
        }
        "year_only" => {
            let Some(Birth::Full(d)) = r.birth else { return false };
            r.birth = Some(Birth::Year(d.year()));
            true
        }
        "other_township" => {
            let township = &r.division[..9];
            let elsewhere: Vec<&String> = villages.iter().filter(|v| &v[..9] != township).collect();
            let Some(v) = elsewhere.choose(rng) else { return false };
            r.division = (*v).clone();
            true
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::patients::names::NameKey;
    use crate::patients::resident_id::ResidentId;

    #[test]
    fn generates_the_requested_mix_deterministically() {
        let cfg = SynthConfig {
            records: 2000,
            duplicate_share: 0.12,
            seed: 7,
            villages: county_villages("130999", 3, 10),
            family_share: 0.0,
        };
        let a = generate(&cfg);
        let b = generate(&cfg);
        assert_eq!(a.len(), 2000);
        assert_eq!(a.iter().filter(|r| r.is_duplicate).count(), 240);
        assert_eq!(a.iter().map(|r| &r.name).collect::<Vec<_>>(), b.iter().map(|r| &r.name).collect::<Vec<_>>());
        for r in &a {
            NameKey::parse(&r.name).expect("names normalise");
            if let Some(id) = &r.resident_id {
                assert_eq!(ResidentId::parse(id).is_ok(), r.resident_id_valid, "{}", r.errors.join(","));
            }
        }
        let kinds: HashSet<&str> = a.iter().flat_map(|r| r.errors.iter().copied()).collect();
        for k in FIRST_ROUND_KINDS {
            assert!(kinds.contains(k), "{k} appears");
        }
        assert!(HOMOPHONES.get(&'伟').is_some_and(|v| v.contains(&'玮')));
        assert!(!kinds.contains("family_id") && !kinds.contains("no_sex"), "the first round's kinds only");
    }

    #[test]
    fn the_second_round_leaves_fields_out_and_gives_a_family_members_id() {
        let cfg = SynthConfig {
            records: 6000,
            duplicate_share: 0.12,
            seed: 7,
            villages: county_villages("130999", 3, 10),
            family_share: 0.05,
        };
        let a = generate(&cfg);
        let kinds: HashSet<&str> = a.iter().flat_map(|r| r.errors.iter().copied()).collect();
        for k in ["no_sex", "no_birth", "family_id"] {
            assert!(kinds.contains(k), "{k} appears");
        }
        let holder: HashMap<&str, u32> = a
            .iter()
            .filter(|r| !r.is_duplicate && r.resident_id_valid)
            .filter_map(|r| r.resident_id.as_deref().map(|id| (id, r.truth)))
            .collect();
        // Those with no second error (which may take the ID away, mistype it or the date).
        let given = a.iter().filter(|r| r.errors == ["family_id"]);
        let mut n = 0;
        for r in given {
            let id = r.resident_id.as_deref().unwrap();
            let parsed = ResidentId::parse(id).unwrap();
            assert_ne!(holder[id], r.truth, "another resident's ID");
            assert_eq!((r.sex, r.birth), (Some(parsed.sex()), Some(Birth::Full(parsed.birth_date()))));
            n += 1;
        }
        assert!(n > 10, "{n} records with a family member's ID");
    }
}
