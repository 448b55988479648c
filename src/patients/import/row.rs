//! One source row, checked: what it says of the person (as matching sees it), where it is
//! registered, its idempotency key, and its data-quality flags. A row is refused only when it
//! cannot become a person at all (no usable name, no known institution, a repeated source id);
//! a bad or missing sex, birth date, phone, address or identifier is dropped from the person,
//! flagged, and listed in the report. A resident ID that fails its checks, disagrees with the
//! row's sex or birth date, or belongs to someone else already is held on the registration.

use std::collections::HashMap;

use chrono::Datelike;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::mapping::Positions;
use crate::patients::domain::{as_typed, parse_birth, parse_division, parse_insurance, parse_phone};
use crate::patients::matching::{Birth, MatchRecord};
use crate::patients::names::NameKey;
use crate::patients::resident_id::{ResidentId, Sex};

/// A row that becomes (or joins) a person.
#[derive(Debug, Clone)]
pub struct Parsed {
    pub line: u64,
    pub source_id: Option<String>,
    pub key: String,
    pub institution: Uuid,
    pub record: MatchRecord,
    /// A resident ID kept on the registration only (see the module comment).
    pub held_resident_id: Option<String>,
    pub flags: Vec<&'static str>,
}

/// A row that cannot be imported, with why.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Rejected {
    pub line: u64,
    pub source_id: Option<String>,
    pub code: String,
    pub message: String,
}

pub enum Row {
    Ok(Box<Parsed>),
    Rejected(Rejected),
}

fn cell(cells: &[String], at: Option<usize>) -> Option<&str> {
    at.and_then(|i| cells.get(i)).map(|s| s.trim()).filter(|s| !s.is_empty())
}

/// The row's idempotency key: its institution's code and source record id (two clinics' old
/// systems may both have a record 1001), or, without an id column, a hash of the fields the
/// import reads (a re-export with other columns added or reordered is the same rows).
fn key(institution: &str, source_id: Option<&str>, cells: &[String], at: &Positions) -> String {
    match source_id {
        Some(id) => format!("id:{institution}:{id}"),
        None => {
            let mut h = Sha256::new();
            let fields = [
                Some(at.name),
                Some(at.institution),
                at.sex,
                at.birth_date,
                at.resident_id,
                at.phone,
                at.address_division,
                at.insurance_no,
            ];
            for f in fields {
                h.update(cell(cells, f).unwrap_or_default().as_bytes());
                h.update([0x1f]);
            }
            format!("row:{}", hex::encode(&h.finalize()[..16]))
        }
    }
}

pub fn parse(line: u64, cells: &[String], at: &Positions, institutions: &HashMap<String, Uuid>) -> Row {
    let source_id = cell(cells, at.source_record_id).map(str::to_string);
    let reject = |code: &str, message: &str| {
        Row::Rejected(Rejected { line, source_id: source_id.clone(), code: code.into(), message: message.into() })
    };
    let Some(raw_name) = cell(cells, Some(at.name)) else { return reject("name_required", "姓名为空") };
    let Ok(name) = NameKey::parse(raw_name) else { return reject("name_invalid", "姓名无法识别") };
    let Some(code) = cell(cells, Some(at.institution)) else {
        return reject("institution_required", "机构编码为空");
    };
    let Some(&institution) = institutions.get(code) else {
        return reject("institution_unknown", "机构编码不属于本医共体");
    };
    let mut flags = Vec::new();
    let mut sex = match cell(cells, at.sex).map(sex_of) {
        None | Some(Err(true)) => None,
        Some(Ok(s)) => Some(s),
        Some(Err(false)) => {
            flags.push("sex_invalid");
            None
        }
    };
    let mut birth = match cell(cells, at.birth_date).map(birth_of) {
        None => None,
        Some(Some(b)) => Some(b),
        Some(None) => {
            flags.push("birth_date_invalid");
            None
        }
    };
    let mut held_resident_id = None;
    let mut resident_id = None;
    if let Some(raw) = cell(cells, at.resident_id) {
        match ResidentId::parse(raw) {
            Ok(id) if fits(&id, sex, birth) => {
                sex = Some(id.sex());
                birth = Some(Birth::Full(id.birth_date()));
                resident_id = Some(id.as_str().to_string());
            }
            Ok(id) => {
                flags.push("resident_id_disagrees");
                held_resident_id = Some(id.as_str().to_string());
            }
            Err(_) => {
                flags.push("resident_id_invalid");
                held_resident_id = Some(as_typed(raw).to_ascii_uppercase());
            }
        }
    }
    if sex.is_none() {
        flags.push("sex_missing");
    }
    if birth.is_none() {
        flags.push("birth_date_missing");
    }
    let mut optional = |at: Option<usize>, parse: fn(&str) -> Result<String, crate::platform::AppError>, flag| {
        cell(cells, at).and_then(|v| parse(v).map_err(|_| flags.push(flag)).ok())
    };
    let phone = optional(at.phone, parse_phone, "phone_invalid");
    let insurance_no = optional(at.insurance_no, parse_insurance, "insurance_no_invalid");
    let division = optional(at.address_division, parse_division, "address_division_invalid");
    Row::Ok(Box::new(Parsed {
        line,
        key: key(code, source_id.as_deref(), cells, at),
        source_id,
        institution,
        record: MatchRecord {
            name,
            sex,
            birth,
            resident_id_valid: resident_id.is_some(),
            resident_id,
            phone,
            insurance_no,
            division,
        },
        held_resident_id,
        flags,
    }))
}

fn fits(id: &ResidentId, sex: Option<Sex>, birth: Option<Birth>) -> bool {
    let sex_ok = sex.is_none_or(|s| s == id.sex());
    let birth_ok = match birth {
        Some(Birth::Full(d)) => d == id.birth_date(),
        Some(Birth::Year(y)) => y == id.birth_date().year(),
        None => true,
    };
    sex_ok && birth_ok
}

/// Sex as legacy systems write it (GB/T 2261.1 codes included). `Err(true)`: stated unknown.
fn sex_of(s: &str) -> Result<Sex, bool> {
    match as_typed(s).to_ascii_lowercase().as_str() {
        "男" | "男性" | "1" | "m" | "male" => Ok(Sex::Male),
        "女" | "女性" | "2" | "f" | "female" => Ok(Sex::Female),
        "0" | "9" | "未知" | "不详" | "未说明" => Err(true),
        _ => Err(false),
    }
}

/// Birth dates as legacy systems write them: `1950-03-07`, `1950/3/7`, `19500307`, `1950.03.07`,
/// `1950年3月7日`, with a time after them, or a year alone. Never in the future, never before 1880.
pub fn birth_of(s: &str) -> Option<Birth> {
    let s = &*as_typed(s);
    let s = s.split([' ', 'T']).next().unwrap_or(s).trim();
    let s = s.replace(['年', '月', '/', '.'], "-").replace('日', "");
    // The API's own reading (and its range) once the date is written as it expects.
    let iso = match s.split('-').collect::<Vec<_>>().as_slice() {
        [compact] if compact.len() == 8 && compact.bytes().all(|b| b.is_ascii_digit()) => {
            format!("{}-{}-{}", &compact[..4], &compact[4..6], &compact[6..])
        }
        [y, m, d] => format!("{y}-{m:0>2}-{d:0>2}"),
        _ => s.clone(),
    };
    parse_birth(&iso).ok()
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;

    use super::*;

    fn positions() -> Positions {
        Positions {
            name: 0,
            institution: 1,
            sex: Some(2),
            birth_date: Some(3),
            resident_id: Some(4),
            phone: Some(5),
            source_record_id: Some(6),
            ..Default::default()
        }
    }

    fn row(cells: &[&str]) -> Row {
        let inst = HashMap::from([("C1".to_string(), Uuid::nil())]);
        parse(7, &cells.iter().map(|s| s.to_string()).collect::<Vec<_>>(), &positions(), &inst)
    }

    fn ok(r: Row) -> Parsed {
        match r {
            Row::Ok(p) => *p,
            Row::Rejected(r) => panic!("rejected: {r:?}"),
        }
    }

    #[test]
    fn legacy_birth_dates_are_read_and_impossible_ones_are_not() {
        let d = |s| birth_of(s).map(|b| b.year());
        for s in [
            "1950-03-07",
            "1950/3/7",
            "19500307",
            "1950.03.07",
            "1950年3月7日",
            "1950-03-07 00:00:00",
            "1950",
            "１９５０年３月７日",
            "１９５０／３／７",
            "１９５００３０７",
        ] {
            assert_eq!(d(s), Some(1950), "{s}");
        }
        for s in ["1950-02-30", "2999-01-01", "1850", "yesterday", "3/7/1950"] {
            assert_eq!(d(s), None, "{s}");
        }
    }

    #[test]
    fn missing_sex_and_birth_are_flagged_not_refused() {
        let p = ok(row(&["王小二", "C1", "", "", "", "", "A1"]));
        assert_eq!(p.flags, ["sex_missing", "birth_date_missing"]);
        assert_eq!(p.key, "id:C1:A1");
        let p = ok(row(&["王小二", "C1", "9", "1950-13-01", "", "12345", ""]));
        assert_eq!(p.flags, ["birth_date_invalid", "sex_missing", "birth_date_missing", "phone_invalid"]);
        assert!(p.key.starts_with("row:"));
    }

    #[test]
    fn a_resident_id_fills_sex_and_birth_and_one_that_disagrees_is_held() {
        let p = ok(row(&["张伟", "C1", "", "", "11010519491231002X", "", ""]));
        assert_eq!(
            (p.record.sex, p.record.birth),
            (Some(Sex::Female), NaiveDate::from_ymd_opt(1949, 12, 31).map(Birth::Full))
        );
        assert!(p.record.resident_id_valid && p.flags.is_empty());
        let p = ok(row(&["张伟", "C1", "男", "", "11010519491231002X", "", ""]));
        assert_eq!(
            (p.record.resident_id.as_deref(), p.held_resident_id.as_deref()),
            (None, Some("11010519491231002X"))
        );
        assert_eq!(p.flags, ["resident_id_disagrees", "birth_date_missing"]);
        let p = ok(row(&["张伟", "C1", "男", "1949", "110105194912310021", "", ""]));
        assert_eq!(p.flags, ["resident_id_invalid"]);
    }

    #[test]
    fn rows_without_a_name_or_a_known_institution_are_refused() {
        let code = |r: Row| match r {
            Row::Rejected(r) => r.code,
            Row::Ok(_) => "ok".into(),
        };
        assert_eq!(code(row(&["", "C1"])), "name_required");
        assert_eq!(code(row(&["123", "C1"])), "name_invalid");
        assert_eq!(code(row(&["张伟", ""])), "institution_required");
        assert_eq!(code(row(&["张伟", "X9"])), "institution_unknown");
    }
}
