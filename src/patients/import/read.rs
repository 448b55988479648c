//! Reading an import file into a header and rows of text: CSV (UTF-8, with or without a byte
//! order mark, or GB18030, as the mapping says or as detected) and XLSX (the first sheet, or the
//! one the mapping names). Cells that Excel stores as numbers or dates come back as the text a
//! person would have typed (`13800138000`, `1950-03-07`).

use std::io::Cursor;

use calamine::{Data, Reader};
use serde_json::json;

use super::mapping::{Encoding, Mapping};
use crate::platform::codes;
use crate::platform::{AppError, AppResult};

#[derive(Debug, Clone, Default)]
pub struct Table {
    pub headers: Vec<String>,
    /// Each row with its line number in the file (the header is line 1).
    pub rows: Vec<(u64, Vec<String>)>,
}

fn unreadable(reason: impl Into<String>) -> AppError {
    AppError::new(codes::IMPORT_FILE_UNREADABLE, "the file cannot be read as CSV or XLSX")
        .with_details(json!({ "reason": reason.into() }))
}

pub fn read(bytes: &[u8], mapping: &Mapping) -> AppResult<Table> {
    if bytes.starts_with(b"PK\x03\x04") {
        read_xlsx(bytes, mapping)
    } else {
        read_csv(&decode(bytes, mapping.encoding)?)
    }
}

/// UTF-8 when the bytes are UTF-8 (or the mapping says so), otherwise GB18030 (a superset of
/// GBK and GB2312, what Chinese Excel saves as "CSV").
pub fn decode(bytes: &[u8], encoding: Option<Encoding>) -> AppResult<String> {
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    let utf8 = std::str::from_utf8(bytes);
    match (encoding, utf8) {
        (Some(Encoding::Utf8) | None, Ok(s)) => Ok(s.to_string()),
        (Some(Encoding::Utf8), Err(e)) => Err(unreadable(format!("not UTF-8 at byte {}", e.valid_up_to()))),
        (Some(Encoding::Gb18030) | None, _) => {
            let (text, had_errors) = encoding_rs::GB18030.decode_without_bom_handling(bytes);
            if had_errors {
                return Err(unreadable("neither UTF-8 nor GB18030"));
            }
            Ok(text.into_owned())
        }
    }
}

fn read_csv(text: &str) -> AppResult<Table> {
    let mut reader = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(text.as_bytes());
    let mut table = Table::default();
    for (i, record) in reader.records().enumerate() {
        let record = record.map_err(|e| unreadable(format!("CSV: {e}")))?;
        let line = record.position().map(|p| p.line()).unwrap_or(i as u64 + 1);
        let cells: Vec<String> = record.iter().map(|c| c.trim().to_string()).collect();
        if i == 0 {
            table.headers = cells;
        } else if cells.iter().any(|c| !c.is_empty()) {
            table.rows.push((line, cells));
        }
    }
    if table.headers.is_empty() {
        return Err(unreadable("the file is empty"));
    }
    Ok(table)
}

fn read_xlsx(bytes: &[u8], mapping: &Mapping) -> AppResult<Table> {
    let mut book = calamine::open_workbook_auto_from_rs(Cursor::new(bytes)).map_err(|e| unreadable(e.to_string()))?;
    let sheet = match &mapping.sheet {
        Some(s) => s.clone(),
        None => book.sheet_names().first().cloned().ok_or_else(|| unreadable("the workbook has no sheet"))?,
    };
    let range = book.worksheet_range(&sheet).map_err(|e| unreadable(format!("sheet {sheet}: {e}")))?;
    let mut table = Table::default();
    let first_row = range.start().map(|(r, _)| r as u64).unwrap_or(0);
    for (i, row) in range.rows().enumerate() {
        let cells: Vec<String> = row.iter().map(cell_text).collect();
        if i == 0 {
            table.headers = cells;
        } else if cells.iter().any(|c| !c.is_empty()) {
            table.rows.push((first_row + i as u64 + 1, cells));
        }
    }
    if table.headers.is_empty() {
        return Err(unreadable("the sheet is empty"));
    }
    Ok(table)
}

fn cell_text(c: &Data) -> String {
    match c {
        Data::Empty => String::new(),
        Data::String(s) | Data::DateTimeIso(s) | Data::DurationIso(s) => s.trim().to_string(),
        Data::Int(i) => i.to_string(),
        Data::Float(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", *f as i64),
        Data::Float(f) => f.to_string(),
        Data::Bool(b) => b.to_string(),
        // Excel's serial day number (1900 date system): day 0 is 1899-12-30.
        Data::DateTime(d) => chrono::NaiveDate::from_ymd_opt(1899, 12, 30)
            .and_then(|e| e.checked_add_days(chrono::Days::new(d.as_f64().floor().max(0.0) as u64)))
            .map(|x| x.format("%Y-%m-%d").to_string())
            .unwrap_or_default(),
        Data::Error(e) => format!("#{e:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gb18030_and_utf8_with_a_bom_read_the_same() {
        let text = "姓名,性别\n张三,男\n";
        let (gb, _, _) = encoding_rs::GB18030.encode(text);
        let bom = [b"\xef\xbb\xbf".as_slice(), text.as_bytes()].concat();
        for bytes in [gb.as_ref(), bom.as_slice(), text.as_bytes()] {
            let t = read(bytes, &Mapping::default()).unwrap();
            assert_eq!(t.headers, ["姓名", "性别"]);
            assert_eq!(t.rows, [(2, vec!["张三".to_string(), "男".to_string()])]);
        }
        let forced = Mapping { encoding: Some(Encoding::Utf8), ..Default::default() };
        assert!(read(gb.as_ref(), &forced).unwrap_err().is(codes::IMPORT_FILE_UNREADABLE));
    }

    #[test]
    fn quoted_newlines_keep_line_numbers_true_and_blank_rows_are_skipped() {
        let t = read("姓名,备注\n\"张三\",\"a\nb\"\n,\n李四,x\n".as_bytes(), &Mapping::default()).unwrap();
        assert_eq!(t.rows.iter().map(|r| r.0).collect::<Vec<_>>(), [2, 5]);
    }
}
