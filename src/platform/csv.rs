//! CSV for Excel: UTF-8 with a byte-order mark (so Chinese reads right), CRLF lines, fields
//! quoted when needed (the `csv` crate) and defused when they start like a spreadsheet formula
//! (which the crate does not do).

/// A field defused: one that starts like a formula (`=`, `+`, `-`, `@`, tab, CR) gets a leading
/// `'`, so a spreadsheet shows it as text. A lone `-` (our "nothing to compute from") stays.
pub fn defuse(s: &str) -> String {
    if s != "-" && s.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{s}") } else { s.to_string() }
}

/// A whole document: the byte-order mark, then each row.
pub fn document<R: AsRef<[String]>>(rows: impl IntoIterator<Item = R>) -> Vec<u8> {
    let mut out = "\u{feff}".as_bytes().to_vec();
    let mut writer = csv::WriterBuilder::new().terminator(csv::Terminator::CRLF).flexible(true).from_writer(&mut out);
    for row in rows {
        writer.write_record(row.as_ref().iter().map(|f| defuse(f))).expect("writing CSV to memory cannot fail");
    }
    writer.flush().expect("writing CSV to memory cannot fail");
    drop(writer);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_quoted_and_defused() {
        let doc = |cells: &[&str]| {
            String::from_utf8(document([cells.iter().map(|c| c.to_string()).collect::<Vec<_>>()])).unwrap()
        };
        assert_eq!(doc(&["a,b", "x"]), "\u{feff}\"a,b\",x\r\n");
        assert_eq!(doc(&["=1+1"]), "\u{feff}'=1+1\r\n");
        assert_eq!(doc(&["-"]), "\u{feff}-\r\n");
        assert_eq!(doc(&["say \"hi\""]), "\u{feff}\"say \"\"hi\"\"\"\r\n");
        assert_eq!(doc(&["甲", "1"]), "\u{feff}甲,1\r\n");
    }
}
