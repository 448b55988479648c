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

/// A refused form, shown again: which form (its step), everything that was typed, the field at
/// fault (empty when the refusal is about the whole form, such as a closed visit) and why.
#[derive(Debug, Default, Clone)]
pub struct Refused {
    pub step: String,
    pub values: std::collections::HashMap<&'static str, String>,
    pub field: String,
    pub message: String,
}

impl Refused {
    /// Whether the form of `step` is the one refused.
    pub fn here(&self, step: &str) -> bool {
        self.step == step
    }

    /// What was typed in `name` when `step` was refused; otherwise `default` (a fresh form).
    pub fn or(&self, step: &str, name: &str, default: &str) -> String {
        if self.here(step) { self.values.get(name).cloned().unwrap_or_default() } else { default.to_string() }
    }

    /// Whether `name` of the form `step` is the field at fault.
    pub fn bad(&self, step: &str, name: &str) -> bool {
        self.here(step) && self.field == name
    }
}

/// The form field an error is about: the one it names, or the one its code is about.
pub fn form_field_of(e: &AppError, fields: &[&'static str]) -> String {
    // A form may prefix the API's name for a field (`fee_quantity` for a fee's `quantity`).
    let named = |name: &str| {
        fields.iter().find(|k| **k == name).or_else(|| fields.iter().find(|k| k.ends_with(&format!("_{name}"))))
    };
    if let Some(f) = e.details().and_then(|d| d["field"].as_str()) {
        let last = f.rsplit(['.', ']', '[']).find(|s| !s.is_empty()).unwrap_or(f);
        if let Some(known) = named(f).or_else(|| named(last)) {
            return known.to_string();
        }
    }
    let by_code = match e.code_of() {
        codes::STOCK_INSUFFICIENT | codes::QUANTITY_INVALID => "quantity",
        codes::DRUG_NOT_STOCKED | codes::DRUG_UNKNOWN | codes::DUPLICATE_DRUG => "drug_code",
        codes::DOSE_INVALID => "dose",
        codes::FREQUENCY_INVALID => "frequency",
        codes::DAYS_INVALID | codes::PRESCRIPTION_DAYS_EXCEEDED => "days",
        codes::OVERPAYMENT | codes::AMOUNT_INVALID | codes::AMOUNT_TOO_LARGE => "amount_yuan",
        codes::PAYMENT_METHOD_INVALID => "method",
        codes::ICD_CODE_UNKNOWN | codes::DIAGNOSIS_DUPLICATE | codes::DIAGNOSIS_CODE_INVALID => "diagnosis",
        codes::VITALS_EMPTY => "systolic",
        codes::REASON_REQUIRED | codes::TEXT_INVALID => "reason",
        codes::FEE_ITEM_UNKNOWN => "fee_code",
        codes::ALREADY_ENROLLED => "disease",
        _ => "",
    };
    if by_code.is_empty() {
        return String::new();
    }
    named(by_code).map(|k| k.to_string()).unwrap_or_default()
}

/// A refusal of what was typed (shown on the form), rather than of the request. The database
/// unavailable for a moment (503) is shown on the form too, so that what was typed is kept for
/// the next submit.
pub fn refused_input(e: &AppError) -> bool {
    use poem::error::ResponseError;
    let status = e.status();
    !e.is(codes::CSRF_INVALID)
        && (status == poem::http::StatusCode::UNPROCESSABLE_ENTITY
            || status == poem::http::StatusCode::CONFLICT
            || status == poem::http::StatusCode::BAD_REQUEST
            || status == poem::http::StatusCode::SERVICE_UNAVAILABLE)
}
