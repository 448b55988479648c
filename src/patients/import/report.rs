//! The dedupe report of an import: counts, every automatic link with its evidence, every
//! probable pair left for review, every refused row with its reason, and every flagged row.
//! Written as XLSX (one sheet each, Chinese headers) and as one CSV (a 类别 column says which).
//! It names patients: it is for the community's administrator, never for logs.

use rust_xlsxwriter::{Format, Workbook};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::row::Rejected;
use crate::patients::matching::Comparison;
use crate::platform::{AppError, AppResult};

/// Also the API's counts of a finished job.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, poem_openapi::Object)]
#[oai(rename = "ImportCounts")]
pub struct Counts {
    pub rows: u64,
    pub new_persons: u64,
    pub linked: u64,
    pub probable: u64,
    pub already_imported: u64,
    pub rejected: u64,
    pub flagged: u64,
    pub sex_missing: u64,
    pub birth_date_missing: u64,
}

/// A row linked to an existing person (automatic, "certain").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Link {
    pub line: u64,
    pub source_id: Option<String>,
    pub name: String,
    pub person: Uuid,
    pub person_name: String,
    pub score: f64,
    pub evidence: String,
}

/// A row that became a new person with a probable match queued for review.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pair {
    pub line: u64,
    pub source_id: Option<String>,
    pub name: String,
    pub person: Uuid,
    pub candidate: Uuid,
    pub candidate_name: String,
    pub score: f64,
    pub evidence: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Flagged {
    pub line: u64,
    pub source_id: Option<String>,
    pub person: Uuid,
    pub flags: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub counts: Counts,
    pub links: Vec<Link>,
    pub probable: Vec<Pair>,
    pub rejected: Vec<Rejected>,
    pub flagged: Vec<Flagged>,
}

/// Agreements and disagreements as a reviewer reads them: `resident_id:exact(+12.0)`.
pub fn evidence(comparisons: &[Comparison]) -> String {
    comparisons.iter().map(|c| format!("{:?}:{}({:+.1})", c.field, c.level, c.weight)).collect::<Vec<_>>().join("; ")
}

const COUNT_LABELS: [&str; 9] = [
    "读取行数",
    "新建患者",
    "自动关联",
    "疑似重复待审核",
    "此前已导入",
    "拒绝",
    "数据质量标记",
    "缺性别",
    "缺出生日期",
];

impl Counts {
    fn values(&self) -> [u64; 9] {
        [
            self.rows,
            self.new_persons,
            self.linked,
            self.probable,
            self.already_imported,
            self.rejected,
            self.flagged,
            self.sex_missing,
            self.birth_date_missing,
        ]
    }
}

const CSV_HEADER: [&str; 10] =
    ["类别", "行号", "原系统编号", "姓名", "患者ID", "关联/候选患者ID", "候选姓名", "得分", "依据/原因", "代码"];

fn opt(s: &Option<String>) -> String {
    s.clone().unwrap_or_default()
}

impl Report {
    /// Every entry as one row of the CSV (and of the detail sheets), in file order per kind.
    fn detail_rows(&self) -> Vec<[String; 10]> {
        let mut out = Vec::new();
        for l in &self.links {
            out.push([
                "自动关联".into(),
                l.line.to_string(),
                opt(&l.source_id),
                l.name.clone(),
                l.person.to_string(),
                l.person.to_string(),
                l.person_name.clone(),
                format!("{:.2}", l.score),
                l.evidence.clone(),
                "linked".into(),
            ]);
        }
        for p in &self.probable {
            out.push([
                "疑似重复".into(),
                p.line.to_string(),
                opt(&p.source_id),
                p.name.clone(),
                p.person.to_string(),
                p.candidate.to_string(),
                p.candidate_name.clone(),
                format!("{:.2}", p.score),
                p.evidence.clone(),
                "probable".into(),
            ]);
        }
        for r in &self.rejected {
            let (line, id) = (r.line.to_string(), opt(&r.source_id));
            let row = ["拒绝".into(), line, id, String::new(), String::new(), String::new(), String::new()];
            out.push(extend(row, String::new(), r.message.clone(), r.code.clone()));
        }
        for f in &self.flagged {
            let row = [
                "数据质量".into(),
                f.line.to_string(),
                opt(&f.source_id),
                String::new(),
                f.person.to_string(),
                String::new(),
                String::new(),
            ];
            out.push(extend(row, String::new(), f.flags.clone(), "flagged".into()));
        }
        out
    }

    pub fn to_csv(&self) -> AppResult<Vec<u8>> {
        let mut w = csv::Writer::from_writer(Vec::from(b"\xef\xbb\xbf".as_slice()));
        w.write_record(CSV_HEADER).map_err(AppError::internal)?;
        for (label, value) in COUNT_LABELS.iter().zip(self.counts.values()) {
            let row = ["汇总", "", "", "", "", "", "", &value.to_string(), label, "count"];
            w.write_record(row).map_err(AppError::internal)?;
        }
        for row in self.detail_rows() {
            w.write_record(&row).map_err(AppError::internal)?;
        }
        w.into_inner().map_err(|e| AppError::internal(anyhow::anyhow!("csv: {e}")))
    }

    /// 汇总 (counts, as numbers), then one sheet per kind of entry.
    pub fn to_xlsx(&self) -> AppResult<Vec<u8>> {
        let mut book = Workbook::new();
        let bold = Format::new().set_bold();
        let x = |e: rust_xlsxwriter::XlsxError| AppError::internal(anyhow::anyhow!("xlsx: {e}"));
        let summary = book.add_worksheet().set_name("汇总").map_err(x)?;
        summary.write_string_with_format(0, 0, "项目", &bold).map_err(x)?;
        summary.write_string_with_format(0, 1, "数量", &bold).map_err(x)?;
        for (i, (label, value)) in COUNT_LABELS.iter().zip(self.counts.values()).enumerate() {
            summary.write_string(i as u32 + 1, 0, *label).map_err(x)?;
            summary.write_number(i as u32 + 1, 1, value as f64).map_err(x)?;
        }
        let rows = self.detail_rows();
        for kind in ["自动关联", "疑似重复", "拒绝", "数据质量"] {
            let sheet = book.add_worksheet().set_name(kind).map_err(x)?;
            for (c, h) in CSV_HEADER.iter().enumerate().skip(1) {
                sheet.write_string_with_format(0, c as u16 - 1, *h, &bold).map_err(x)?;
            }
            for (r, row) in rows.iter().filter(|r| r[0] == kind).enumerate() {
                for (c, v) in row.iter().enumerate().skip(1) {
                    let (r, c) = (r as u32 + 1, c as u16 - 1);
                    match (c, v.parse::<f64>()) {
                        (0 | 6, Ok(n)) => sheet.write_number(r, c, n).map_err(x)?,
                        _ => sheet.write_string(r, c, v).map_err(x)?,
                    };
                }
            }
        }
        book.save_to_buffer().map_err(x)
    }
}

fn extend(head: [String; 7], score: String, why: String, code: String) -> [String; 10] {
    let [a, b, c, d, e, f, g] = head;
    [a, b, c, d, e, f, g, score, why, code]
}
