//! Clinical values checked at the edge: encounter kinds and vital signs. Impossible values are
//! refused (422 `vital_out_of_range` naming the field); danger values are accepted — they are
//! exactly what must be recorded.

use crate::platform::AppError;
use crate::platform::codes;

crate::string_enum! {
    /// What kind of visit an encounter is.
    pub enum EncounterKind {
        Outpatient = "outpatient",
        Emergency = "emergency",
    }
}

crate::string_enum! {
    /// Open while the visit is recorded; closed (and immutable, corrected by addenda) after.
    pub enum EncounterStatus {
        Open = "open",
        Closed = "closed",
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Vitals {
    pub systolic: Option<i32>,
    pub diastolic: Option<i32>,
    pub pulse: Option<i32>,
    /// °C
    pub temperature: Option<f64>,
    pub weight_kg: Option<f64>,
    /// mmol/L
    pub fasting_glucose: Option<f64>,
}

fn range<T: PartialOrd + Copy + std::fmt::Display>(field: &str, v: Option<T>, lo: T, hi: T) -> Result<(), AppError> {
    match v {
        Some(x) if !(lo..=hi).contains(&x) => {
            Err(AppError::new(codes::VITAL_OUT_OF_RANGE, format!("{field} must be between {lo} and {hi}"))
                .with_details(serde_json::json!({ "field": field })))
        }
        _ => Ok(()),
    }
}

impl Vitals {
    pub fn check(&self) -> Result<(), AppError> {
        if *self == Vitals::default() {
            return Err(AppError::new(codes::VITALS_EMPTY, "record at least one vital sign"));
        }
        range("systolic", self.systolic, 50, 300)?;
        range("diastolic", self.diastolic, 20, 200)?;
        range("pulse", self.pulse, 20, 250)?;
        range("temperature", self.temperature, 30.0, 45.0)?;
        range("weight_kg", self.weight_kg, 0.3, 400.0)?;
        range("fasting_glucose", self.fasting_glucose, 0.5, 50.0)?;
        for (f, v) in [
            ("temperature", self.temperature),
            ("weight_kg", self.weight_kg),
            ("fasting_glucose", self.fasting_glucose),
        ] {
            if v.is_some_and(|x| !x.is_finite()) {
                return Err(AppError::new(codes::VITAL_OUT_OF_RANGE, format!("{f} must be a number"))
                    .with_details(serde_json::json!({ "field": f })));
            }
        }
        match (self.systolic, self.diastolic) {
            (Some(s), Some(d)) if d >= s => {
                Err(AppError::new(codes::VITAL_OUT_OF_RANGE, "diastolic pressure must be below systolic")
                    .with_details(serde_json::json!({ "field": "diastolic" })))
            }
            (Some(_), None) | (None, Some(_)) => {
                Err(AppError::new(codes::VITAL_OUT_OF_RANGE, "blood pressure needs both systolic and diastolic")
                    .with_details(serde_json::json!({ "field": "diastolic" })))
            }
            _ => Ok(()),
        }
    }

    /// The national guide's danger values: SBP >= 180 or DBP >= 110 mmHg, or glucose >= 16.7 mmol/L.
    pub fn danger(&self) -> bool {
        self.systolic.is_some_and(|s| s >= 180)
            || self.diastolic.is_some_and(|d| d >= 110)
            || self.fasting_glucose.is_some_and(|g| g >= 16.7)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn impossible_values_are_refused_and_danger_values_kept() {
        let bp = |s, d| Vitals { systolic: Some(s), diastolic: Some(d), ..Default::default() };
        assert!(bp(130, 85).check().is_ok());
        assert_eq!(bp(400, 90).check().unwrap_err().body().details.unwrap()["field"], "systolic");
        assert!(bp(90, 120).check().is_err());
        let danger = bp(185, 115);
        assert!(danger.check().is_ok() && danger.danger());
        let g = |v| Vitals { fasting_glucose: Some(v), ..Default::default() };
        assert!(g(-1.0).check().is_err());
        assert!(g(17.0).check().is_ok() && g(17.0).danger());
        assert_eq!(Vitals::default().check().unwrap_err().code(), "vitals_empty");
        assert!(Vitals { temperature: Some(f64::NAN), ..Default::default() }.check().is_err());
    }
}
