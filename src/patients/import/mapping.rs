//! The mapping file (TOML) of an import: which column holds which field, and the file's encoding.
//! Without a mapping, the usual Chinese and English headers are recognised.
//!
//! ```toml
//! encoding = "gb18030"          # or "utf-8"; detected when left out
//! sheet = "居民档案"            # XLSX only; the first sheet when left out
//! [columns]
//! name = "姓名"
//! sex = "性别"
//! birth_date = "出生日期"
//! resident_id = "身份证号"
//! phone = "联系电话"
//! address_division = "行政区划代码"
//! insurance_no = "医保号"
//! source_record_id = "档案编号"
//! institution = "机构编码"
//! ```

use serde::Deserialize;
use serde_json::json;

use crate::platform::codes;
use crate::platform::{AppError, AppResult};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    pub encoding: Option<Encoding>,
    pub sheet: Option<String>,
    #[serde(default)]
    pub columns: Columns,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Encoding {
    #[serde(rename = "utf-8", alias = "utf8", alias = "UTF-8")]
    Utf8,
    #[serde(rename = "gb18030", alias = "GB18030", alias = "gbk", alias = "GBK")]
    Gb18030,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Columns {
    pub name: Option<String>,
    pub sex: Option<String>,
    pub birth_date: Option<String>,
    pub resident_id: Option<String>,
    pub phone: Option<String>,
    pub address_division: Option<String>,
    pub insurance_no: Option<String>,
    pub source_record_id: Option<String>,
    pub institution: Option<String>,
}

/// Where each field is in a row (column positions).
#[derive(Debug, Clone, Default)]
pub struct Positions {
    pub name: usize,
    pub institution: usize,
    pub sex: Option<usize>,
    pub birth_date: Option<usize>,
    pub resident_id: Option<usize>,
    pub phone: Option<usize>,
    pub address_division: Option<usize>,
    pub insurance_no: Option<usize>,
    pub source_record_id: Option<usize>,
}

const ALIASES: [(&str, &[&str]); 9] = [
    ("name", &["姓名", "name", "患者姓名"]),
    ("sex", &["性别", "sex", "gender"]),
    ("birth_date", &["出生日期", "birth_date", "出生年月", "birthday"]),
    ("resident_id", &["身份证号", "身份证号码", "居民身份证号", "证件号码", "resident_id"]),
    ("phone", &["联系电话", "手机号", "手机号码", "电话", "phone"]),
    ("address_division", &["行政区划代码", "行政区划", "address_division", "division"]),
    ("insurance_no", &["医保号", "医保卡号", "参保号", "insurance_no"]),
    ("source_record_id", &["档案编号", "原系统编号", "记录编号", "source_record_id", "source_id"]),
    ("institution", &["机构编码", "机构代码", "institution_code", "institution"]),
];

pub fn parse(toml_text: &str) -> AppResult<Mapping> {
    toml::from_str(toml_text).map_err(|e| {
        AppError::new(codes::IMPORT_MAPPING_INVALID, "the mapping file is not valid")
            .with_details(json!({ "reason": e.message() }))
    })
}

impl Mapping {
    /// Resolves the header row: a column the mapping names must exist; unnamed fields are found
    /// by their usual headers. Name and institution are required.
    pub fn positions(&self, headers: &[String], institution_column: Option<&str>) -> AppResult<Positions> {
        let c = &self.columns;
        let named = [
            &c.name,
            &c.sex,
            &c.birth_date,
            &c.resident_id,
            &c.phone,
            &c.address_division,
            &c.insurance_no,
            &c.source_record_id,
            &c.institution,
        ];
        let clean: Vec<String> = headers.iter().map(|h| header_key(h)).collect();
        let mut found: Vec<Option<usize>> = Vec::with_capacity(ALIASES.len());
        for (i, (field, aliases)) in ALIASES.iter().enumerate() {
            let wanted = if *field == "institution" { institution_column.map(str::to_string) } else { None }
                .or_else(|| named[i].clone());
            let pos = match wanted {
                Some(col) => {
                    let key = header_key(&col);
                    Some(clean.iter().position(|h| *h == key).ok_or_else(|| missing(field, &col))?)
                }
                None => clean.iter().position(|h| aliases.iter().any(|a| *h == header_key(a))),
            };
            found.push(pos);
        }
        let required = |i: usize| found[i].ok_or_else(|| missing(ALIASES[i].0, ALIASES[i].1[0]));
        Ok(Positions {
            name: required(0)?,
            institution: required(8)?,
            sex: found[1],
            birth_date: found[2],
            resident_id: found[3],
            phone: found[4],
            address_division: found[5],
            insurance_no: found[6],
            source_record_id: found[7],
        })
    }
}

/// A header as compared: without a byte order mark or spaces, full width read as ASCII
/// (`联系电话（手机）` is `联系电话(手机)`), letters in lower case.
fn header_key(h: &str) -> String {
    let h = h.trim_start_matches('\u{feff}');
    crate::patients::domain::as_typed(h).chars().filter(|c| !c.is_whitespace()).collect::<String>().to_lowercase()
}

fn missing(field: &str, column: &str) -> AppError {
    AppError::new(codes::IMPORT_COLUMN_MISSING, format!("the file has no column for {field}"))
        .with_details(json!({ "field": field, "column": column }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(h: &[&str]) -> Vec<String> {
        h.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn usual_headers_are_found_without_a_mapping() {
        let p =
            Mapping::default().positions(&headers(&["\u{feff}姓名", "性别", "机构编码", "联系电话"]), None).unwrap();
        assert_eq!((p.name, p.sex, p.institution, p.phone, p.birth_date), (0, Some(1), 2, Some(3), None));
    }

    #[test]
    fn a_named_column_must_exist_and_the_institution_column_can_be_given() {
        let m = parse("[columns]\nname = \"患者\"\n").unwrap();
        let err = m.positions(&headers(&["姓名", "机构"]), Some("机构")).unwrap_err();
        assert!(err.is(codes::IMPORT_COLUMN_MISSING));
        let p = m.positions(&headers(&["患者", "机构"]), Some("机构")).unwrap();
        assert_eq!((p.name, p.institution), (0, 1));
        // Headers as Excel users write them: full-width brackets, spaces, capitals.
        let mut m = parse("[columns]\nphone = \"联系电话(手机)\"").unwrap();
        m.columns.name = Some("Patient Name".into());
        let p = m.positions(&headers(&["PATIENT NAME", "机构编码 ", "联系电话（手机）", "身份证 号码"]), None).unwrap();
        assert_eq!((p.name, p.institution, p.phone, p.resident_id), (0, 1, Some(2), Some(3)));
        assert!(parse("colour = 1").unwrap_err().is(codes::IMPORT_MAPPING_INVALID));
        assert_eq!(parse("encoding = \"GB18030\"").unwrap().encoding, Some(Encoding::Gb18030));
    }
}
