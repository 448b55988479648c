//! Chinese personal names for matching and search: normalise (NFKC, no spaces or middle dots),
//! then derive toneless pinyin syllables, the joined pinyin, the initials (`zw` for 张伟) and the
//! surname's pinyin. Homophones (张伟 / 章伟) and variant characters (張偉 / 张伟) share pinyin.
//! Polyphonic surnames use their surname reading (曾 zeng, 单 shan, 解 xie …).

use pinyin::ToPinyin;
use unicode_normalization::UnicodeNormalization;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameKey {
    /// Normalised name as written (Hanzi or Latin letters).
    pub name: String,
    /// Syllables separated by single spaces: `zhang wei`.
    pub pinyin: String,
    /// Syllables joined: `zhangwei` (what pinyin edit distance compares).
    pub joined: String,
    /// First letter of each syllable: `zw`.
    pub initials: String,
    /// The surname's pinyin, joined: `zhang`, `ouyang`.
    pub surname: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("the name is empty")]
    Empty,
    #[error("the name is longer than 30 characters")]
    TooLong,
    #[error("the name may hold only Chinese characters, Latin letters, spaces and a middle dot")]
    Characters,
}

const COMPOUND_SURNAMES: &[&str] = &[
    "欧阳", "司马", "诸葛", "上官", "东方", "皇甫", "尉迟", "公孙", "慕容", "长孙", "宇文", "司徒", "夏侯", "端木",
    "令狐", "澹台", "轩辕", "独孤", "南宫", "西门", "百里", "呼延", "万俟", "闻人", "申屠", "太史", "钟离",
];

/// Surname readings that differ from the character's most common reading.
fn surname_reading(c: char) -> Option<&'static str> {
    Some(match c {
        '曾' => "zeng",
        '单' => "shan",
        '解' => "xie",
        '仇' => "qiu",
        '区' => "ou",
        '查' => "zha",
        '朴' => "piao",
        '覃' => "qin",
        '乐' => "yue",
        '缪' => "miao",
        '盖' => "ge",
        '翟' => "zhai",
        '种' => "chong",
        '秘' => "bi",
        '尉' => "yu",
        '长' => "zhang",
        '万' => "wan",
        '宿' => "su",
        '繁' => "po",
        '员' => "yun",
        '召' => "shao",
        '句' => "gou",
        _ => return None,
    })
}

pub(crate) fn is_han(c: char) -> bool {
    matches!(c as u32, 0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xF900..=0xFAFF | 0x20000..=0x2EBEF)
}

/// Normalises a name as typed: NFKC (full-width to half-width), no whitespace, no middle dots.
pub fn normalize(raw: &str) -> Result<String, NameError> {
    let n: String = raw
        .nfkc()
        .filter(|c| !c.is_whitespace() && !matches!(c, '·' | '•' | '・' | '.' | '‧' | '-'))
        .flat_map(char::to_lowercase)
        .collect();
    if n.is_empty() {
        return Err(NameError::Empty);
    }
    if n.chars().count() > 30 {
        return Err(NameError::TooLong);
    }
    if !n.chars().all(|c| is_han(c) || c.is_ascii_lowercase()) {
        return Err(NameError::Characters);
    }
    Ok(n)
}

fn char_pinyin(c: char) -> String {
    match c.to_pinyin() {
        Some(p) => p.plain().to_string(),
        None => c.to_string(),
    }
}

impl NameKey {
    pub fn parse(raw: &str) -> Result<Self, NameError> {
        let name = normalize(raw)?;
        Ok(Self::from_normalized(name))
    }

    /// For names already normalised (stored rows).
    pub fn from_normalized(name: String) -> Self {
        if !name.chars().any(is_han) {
            // A Latin-script name: the letters are the "pinyin".
            let initials = name.chars().next().map(String::from).unwrap_or_default();
            return Self { pinyin: name.clone(), joined: name.clone(), initials, surname: name.clone(), name };
        }
        let surname_len = if COMPOUND_SURNAMES.iter().any(|s| name.starts_with(s)) { 2 } else { 1 };
        let mut syllables = Vec::new();
        let mut surname = String::new();
        let mut latin = String::new();
        for (i, c) in name.chars().enumerate() {
            if !is_han(c) {
                latin.push(c);
                continue;
            }
            if !latin.is_empty() {
                syllables.push(std::mem::take(&mut latin));
            }
            let reading = if i < surname_len { surname_reading(c).map(String::from) } else { None };
            let py = reading.unwrap_or_else(|| char_pinyin(c));
            if i < surname_len {
                surname.push_str(&py);
            }
            syllables.push(py);
        }
        if !latin.is_empty() {
            syllables.push(latin);
        }
        let initials = syllables.iter().filter_map(|s| s.chars().next()).collect();
        Self { pinyin: syllables.join(" "), joined: syllables.concat(), initials, surname, name }
    }
}

/// Whether a search term is pinyin initials (`zw`) rather than a name.
pub fn is_initials_query(term: &str) -> bool {
    (1..=6).contains(&term.len()) && term.chars().all(|c| c.is_ascii_lowercase())
}

/// Optimal-string-alignment distance: edits, with an adjacent swap counting as one. Rolling
/// rows over bytes (pinyin is ASCII): this runs for most pairs in bulk deduplication.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let m = b.len();
    let mut before: Vec<usize> = vec![0; m + 1];
    let mut prev: Vec<usize> = (0..=m).collect();
    let mut cur: Vec<usize> = vec![0; m + 1];
    for i in 1..=a.len() {
        cur[0] = i;
        for j in 1..=m {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(before[j - 2] + 1);
            }
            cur[j] = v;
        }
        std::mem::swap(&mut before, &mut prev);
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[m]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinyin_initials_and_surname() {
        let k = NameKey::parse("张伟").unwrap();
        assert_eq!(
            (k.pinyin.as_str(), k.joined.as_str(), k.initials.as_str(), k.surname.as_str()),
            ("zhang wei", "zhangwei", "zw", "zhang")
        );
        assert_eq!(NameKey::parse("欧阳娜娜").unwrap().surname, "ouyang");
        assert_eq!(NameKey::parse("曾小贤").unwrap().initials, "zxx");
        assert_eq!(NameKey::parse("单田芳").unwrap().surname, "shan");
    }

    #[test]
    fn homophones_and_variants_share_pinyin() {
        let a = NameKey::parse("张伟").unwrap();
        let b = NameKey::parse("章伟").unwrap();
        let c = NameKey::parse("張偉").unwrap();
        assert_eq!(a.joined, b.joined);
        assert_eq!(a.joined, c.joined);
        assert_ne!(a.name, b.name);
    }

    #[test]
    fn normalisation() {
        assert_eq!(normalize(" 张  伟 ").unwrap(), "张伟");
        assert_eq!(normalize("买买提·艾力").unwrap(), "买买提艾力");
        assert_eq!(normalize("ＺＨＡＮＧ").unwrap(), "zhang");
        assert_eq!(normalize(""), Err(NameError::Empty));
        assert_eq!(normalize("张3"), Err(NameError::Characters));
    }

    #[test]
    fn distances() {
        assert_eq!(edit_distance("zhangwei", "zhangwei"), 0);
        assert_eq!(edit_distance("zhangwei", "zhangwie"), 1);
        assert_eq!(edit_distance("zhangwei", "zhangmei"), 1);
        assert_eq!(edit_distance("liuyang", "liuyan"), 1);
        assert!(is_initials_query("zw") && !is_initials_query("张伟"));
    }
}
