//! Parsing the text fields of a posted form: blank is absent, anything else must parse, and a
//! field that does not is a 422 `field_invalid` naming it.

use crate::platform::AppError;
use crate::platform::codes;

pub fn invalid(field: &'static str) -> AppError {
    AppError::new(codes::FIELD_INVALID, format!("{field} is not valid"))
        .with_details(serde_json::json!({ "field": field }))
}

/// The field's value, `None` when blank.
pub fn num<T: std::str::FromStr>(field: &'static str, s: &Option<String>) -> Result<Option<T>, AppError> {
    match s.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(v) => v.parse().map(Some).map_err(|_| invalid(field)),
    }
}

/// The field's value; blank is invalid.
pub fn required<T: std::str::FromStr>(field: &'static str, s: &Option<String>) -> Result<T, AppError> {
    num(field, s)?.ok_or_else(|| invalid(field))
}
