//! CSV for Excel: UTF-8 with a byte-order mark (so Chinese reads right), CRLF lines, fields
//! quoted when needed and defused when they start like a spreadsheet formula.

/// One field. A lone `-` (our "nothing to compute from") stays as it is.
pub fn field(s: &str) -> String {
    let s = if s != "-" && s.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{s}") } else { s.to_string() };
    if s.contains([',', '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s }
}

/// A whole document: the byte-order mark, then each row.
pub fn document<R: AsRef<[String]>>(rows: impl IntoIterator<Item = R>) -> Vec<u8> {
    let mut out = String::from("\u{feff}");
    for row in rows {
        out.push_str(&row.as_ref().iter().map(|f| field(f)).collect::<Vec<_>>().join(","));
        out.push_str("\r\n");
    }
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    #[test]
    fn fields_are_quoted_and_defused() {
        assert_eq!(super::field("a,b"), "\"a,b\"");
        assert_eq!(super::field("=1+1"), "'=1+1");
        assert_eq!(super::field("-"), "-");
        assert_eq!(super::document([vec!["甲".to_string(), "1".to_string()]]), "\u{feff}甲,1\r\n".as_bytes());
    }
}
