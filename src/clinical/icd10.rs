//! The ICD-10 catalog of common primary-care diagnoses (`icd10.tsv`, compiled in), searchable
//! by code prefix, Chinese name, or the pinyin initials of the Chinese name (`gxy` for 高血压).

use std::collections::HashMap;
use std::sync::LazyLock;

use pinyin::ToPinyin;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Icd10 {
    pub code: &'static str,
    pub name: &'static str,
    pub name_en: &'static str,
    /// Initials of the Chinese name's characters, e.g. `yfxgxy` for 原发性高血压.
    pub initials: String,
}

const TSV: &str = include_str!("icd10.tsv");

pub static CATALOG: LazyLock<Vec<Icd10>> = LazyLock::new(|| {
    TSV.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let mut parts = l.split('\t');
            let code = parts.next().expect("code");
            let name = parts.next().expect("Chinese name");
            let name_en = parts.next().expect("English name");
            let initials =
                name.chars().filter_map(|c| c.to_pinyin().map(|p| p.plain().chars().next().unwrap_or('?'))).collect();
            Icd10 { code, name, name_en, initials }
        })
        .collect()
});

static BY_CODE: LazyLock<HashMap<&'static str, usize>> =
    LazyLock::new(|| CATALOG.iter().enumerate().map(|(i, d)| (d.code, i)).collect());

pub fn lookup(code: &str) -> Option<&'static Icd10> {
    BY_CODE.get(code.trim().to_ascii_uppercase().as_str()).map(|i| &CATALOG[*i])
}

/// Code prefix, Chinese substring, or pinyin initials (prefix or substring).
pub fn search(q: &str, limit: usize) -> Vec<&'static Icd10> {
    let q = q.trim();
    if q.is_empty() {
        return Vec::new();
    }
    let upper = q.to_ascii_uppercase();
    let lower = q.to_ascii_lowercase();
    let mut hits: Vec<(u8, &Icd10)> = CATALOG
        .iter()
        .filter_map(|d| {
            if d.code.starts_with(&upper) {
                Some((0, d))
            } else if d.name.contains(q) {
                Some((1, d))
            } else if lower.chars().all(|c| c.is_ascii_lowercase()) && d.initials.starts_with(&lower) {
                Some((2, d))
            } else if lower.len() >= 2 && lower.chars().all(|c| c.is_ascii_lowercase()) && d.initials.contains(&lower) {
                Some((3, d))
            } else {
                None
            }
        })
        .collect();
    hits.sort_by(|a, b| (a.0, a.1.code).cmp(&(b.0, b.1.code)));
    hits.into_iter().take(limit).map(|(_, d)| d).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_loads_with_unique_codes() {
        assert!(CATALOG.len() >= 120);
        assert_eq!(BY_CODE.len(), CATALOG.len(), "codes are unique");
        assert_eq!(lookup("i10").unwrap().name, "原发性高血压");
    }

    #[test]
    fn search_by_code_name_and_initials() {
        assert_eq!(search("E11", 20).len(), 5);
        assert!(search("高血压", 10).iter().any(|d| d.code == "I10"));
        assert!(search("gxy", 10).iter().any(|d| d.code == "I10"), "{:?}", search("gxy", 10));
        assert!(search("gxy", 10).iter().all(|d| d.name.contains("高血压")));
        assert!(search("tnb", 10).iter().all(|d| d.name.contains("糖尿病")), "{:?}", search("tnb", 10));
        assert!(search("xyz-nothing", 10).is_empty());
    }
}
