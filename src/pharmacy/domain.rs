//! Prescription rules: frequencies, outpatient day limits, and what makes a line valid.

use crate::platform::AppError;
use crate::platform::codes::{self, Code};

/// Outpatient prescriptions cover at most 7 days, or 30 for a stable chronic disease
/// (处方管理办法 article 19).
pub const STANDARD_MAX_DAYS: i32 = 7;
pub const CHRONIC_MAX_DAYS: i32 = 30;
/// Units on one prescription line: a month of four-times-daily dosing many times over.
pub const MAX_LINE_QUANTITY: i64 = 10_000;
/// Units in one stock receipt, adjustment or transfer.
pub const MAX_STOCK_QUANTITY: i64 = 1_000_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frequency {
    Once,
    Qd,
    Bid,
    Tid,
    Qid,
    Qn,
    Q12h,
    Q8h,
    Prn,
}

impl Frequency {
    pub const ALL: [Frequency; 9] =
        [Self::Once, Self::Qd, Self::Bid, Self::Tid, Self::Qid, Self::Qn, Self::Q12h, Self::Q8h, Self::Prn];

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.as_str() == s.to_ascii_lowercase())
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Once => "once",
            Self::Qd => "qd",
            Self::Bid => "bid",
            Self::Tid => "tid",
            Self::Qid => "qid",
            Self::Qn => "qn",
            Self::Q12h => "q12h",
            Self::Q8h => "q8h",
            Self::Prn => "prn",
        }
    }

    /// Doses a day, for working out a quantity: none for a single dose or "as needed".
    pub fn per_day(self) -> Option<u32> {
        match self {
            Self::Qd | Self::Qn => Some(1),
            Self::Bid | Self::Q12h => Some(2),
            Self::Tid | Self::Q8h => Some(3),
            Self::Qid => Some(4),
            Self::Once | Self::Prn => None,
        }
    }
}

/// A drug's strength in milligrams per dispensing unit ("5mg" → 5, "0.5g" → 500), when it is
/// one plain amount; compound or unit-based strengths ("复方", "10万U") have none.
pub fn strength_mg(strength: &str) -> Option<f64> {
    let s = strength.trim().to_ascii_lowercase();
    let (number, factor) = if let Some(n) = s.strip_suffix("mg") {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('g') {
        (n, 1000.0)
    } else {
        return None;
    };
    number.trim().parse::<f64>().ok().filter(|n| *n > 0.0).map(|n| n * factor)
}

/// A prescription line as requested, checked in isolation.
#[derive(Debug, Clone)]
pub struct LineRequest {
    pub drug_code: String,
    pub dose: f64,
    pub dose_unit: String,
    pub frequency: Frequency,
    pub days: i32,
    pub quantity: i64,
}

pub fn check_line(l: &LineRequest, chronic: bool, index: usize) -> Result<(), AppError> {
    let bad = |code: Code, msg: String| AppError::new(code, msg).with_details(serde_json::json!({ "line": index }));
    if !(1..=MAX_LINE_QUANTITY).contains(&l.quantity) {
        return Err(bad(codes::QUANTITY_INVALID, format!("line {index}: quantity must be 1 to {MAX_LINE_QUANTITY}")));
    }
    if !(l.dose.is_finite() && l.dose > 0.0) {
        return Err(bad(codes::DOSE_INVALID, format!("line {index}: dose must be a positive number")));
    }
    if l.days <= 0 {
        return Err(bad(codes::DAYS_INVALID, format!("line {index}: days must be at least 1")));
    }
    let limit = if chronic { CHRONIC_MAX_DAYS } else { STANDARD_MAX_DAYS };
    if l.days > limit {
        return Err(bad(
            codes::PRESCRIPTION_DAYS_EXCEEDED,
            format!("line {index}: {} days is over the outpatient limit of {limit} days", l.days),
        ));
    }
    Ok(())
}

crate::string_enum! {
    /// A prescription is active until it is dispensed (then it is immutable).
    pub enum PrescriptionStatus {
        Active = "active",
        Dispensed = "dispensed",
    }
}

/// A drug's (or a service's) class in the national insurance catalogue (医保目录), which decides
/// the insured share of its price.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum InsuranceCategory {
    /// 甲类: fully within the insurance catalogue
    A,
    /// 乙类: partly
    B,
    /// 丙类: outside it, self-paid
    C,
}

impl InsuranceCategory {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "A" | "甲" => Some(Self::A),
            "B" | "乙" => Some(Self::B),
            "C" | "丙" => Some(Self::C),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::A => "A",
            Self::B => "B",
            Self::C => "C",
        }
    }
}

/// A drug of a tenant file's community formulary, validated (`onboarding::file`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrugSpec {
    pub code: String,
    pub name: String,
    pub name_en: Option<String>,
    pub form: String,
    pub strength: String,
    pub unit: String,
    pub price_fen: i64,
    pub insurance: InsuranceCategory,
    pub allergen_class: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(days: i32, quantity: i64) -> LineRequest {
        LineRequest {
            drug_code: "x".into(),
            dose: 5.0,
            dose_unit: "mg".into(),
            frequency: Frequency::Qd,
            days,
            quantity,
        }
    }

    #[test]
    fn day_limits() {
        assert!(check_line(&line(7, 7), false, 0).is_ok());
        assert_eq!(check_line(&line(8, 8), false, 0).unwrap_err().code(), "prescription_days_exceeded");
        assert!(check_line(&line(30, 30), true, 0).is_ok());
        assert_eq!(check_line(&line(31, 31), true, 0).unwrap_err().code(), "prescription_days_exceeded");
        assert_eq!(check_line(&line(7, 0), false, 0).unwrap_err().code(), "quantity_invalid");
        assert_eq!(check_line(&line(7, -3), false, 0).unwrap_err().code(), "quantity_invalid");
    }

    #[test]
    fn strengths_in_milligrams_and_doses_a_day() {
        assert_eq!(strength_mg("5mg"), Some(5.0));
        assert_eq!(strength_mg("0.5g"), Some(500.0));
        assert_eq!(strength_mg(" 30 mg"), Some(30.0));
        assert_eq!(strength_mg("复方"), None);
        assert_eq!(strength_mg("10万U"), None);
        assert_eq!(strength_mg("0mg"), None);
        assert_eq!(Frequency::Tid.per_day(), Some(3));
        assert_eq!(Frequency::Q12h.per_day(), Some(2));
        assert_eq!(Frequency::Prn.per_day(), None);
    }

    #[test]
    fn frequencies_parse() {
        assert_eq!(Frequency::parse("TID"), Some(Frequency::Tid));
        assert_eq!(Frequency::parse("sometimes"), None);
    }
}
