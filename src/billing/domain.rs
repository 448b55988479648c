//! Money and the insurance split. Money is integer fen (0.01 yuan), never a float. Insurance
//! pays a share of each item by the item's category (甲 A / 乙 B / 丙 C) at rates set per
//! institution level in the tenant file; the share is rounded down, so the patient never pays
//! less than their part.

use std::collections::HashMap;

use serde::Deserialize;

pub use crate::pharmacy::domain::InsuranceCategory;
use crate::tenancy::InstitutionKind;

/// Reimbursement rates in basis points (1/10000), by institution kind and category.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reimbursement {
    rates: HashMap<(InstitutionKind, InsuranceCategory), u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBilling {
    #[serde(default)]
    reimbursement: HashMap<String, HashMap<String, f64>>,
}

impl Default for Reimbursement {
    /// Grassroots care is reimbursed at higher rates, as national policy asks.
    fn default() -> Self {
        let mut rates = HashMap::new();
        for (kind, a, b) in [
            (InstitutionKind::CountyHospital, 6500, 5500),
            (InstitutionKind::TownshipHealthCentre, 7500, 6500),
            (InstitutionKind::VillageClinic, 8500, 7500),
        ] {
            rates.insert((kind, InsuranceCategory::A), a);
            rates.insert((kind, InsuranceCategory::B), b);
        }
        Self { rates }
    }
}

impl Reimbursement {
    /// From tenant settings `[settings.billing.reimbursement.<kind>] A = 0.8 …`; unset rates
    /// keep their defaults. An error names the bad key.
    pub fn from_settings(settings: &serde_json::Value) -> Result<Self, String> {
        let mut out = Self::default();
        let Some(b) = settings.get("billing") else { return Ok(out) };
        let raw: RawBilling = serde_json::from_value(b.clone()).map_err(|e| format!("[settings.billing]: {e}"))?;
        for (kind, cats) in raw.reimbursement {
            let k = InstitutionKind::parse(&kind)
                .ok_or_else(|| format!("[settings.billing.reimbursement]: unknown institution kind `{kind}`"))?;
            for (cat, rate) in cats {
                let c = InsuranceCategory::parse(&cat).ok_or_else(|| {
                    format!("[settings.billing.reimbursement.{kind}]: unknown category `{cat}` (A, B or C)")
                })?;
                if !(0.0..=1.0).contains(&rate) {
                    return Err(format!(
                        "[settings.billing.reimbursement.{kind}]: {cat} = {rate} is not between 0 and 1"
                    ));
                }
                out.rates.insert((k, c), (rate * 10_000.0).round() as u32);
            }
        }
        Ok(out)
    }

    pub fn rate_bp(&self, kind: InstitutionKind, cat: InsuranceCategory) -> u32 {
        self.rates.get(&(kind, cat)).copied().unwrap_or(0)
    }

    /// (insurance share, self-pay) of `amount_fen`.
    pub fn split(&self, kind: InstitutionKind, cat: InsuranceCategory, amount_fen: i64) -> (i64, i64) {
        let insurance = amount_fen * i64::from(self.rate_bp(kind, cat)) / 10_000;
        (insurance, amount_fen - insurance)
    }
}

/// `12.50` from 1250 fen, for receipts and messages.
pub fn yuan(fen: i64) -> String {
    format!("{}{}.{:02}", if fen < 0 { "-" } else { "" }, fen.abs() / 100, fen.abs() % 100)
}

/// Fee categories, and a fee of a tenant file's schedule, validated (`onboarding::file`).
pub const FEE_CATEGORIES: [&str; 5] = ["registration", "consultation", "procedure", "lab", "other"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeeSpec {
    pub code: String,
    pub name: String,
    pub name_en: Option<String>,
    pub category: String,
    pub price_fen: i64,
    pub insurance: InsuranceCategory,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn split_rounds_insurance_down_and_sums() {
        let r = Reimbursement::default();
        let (ins, own) = r.split(InstitutionKind::VillageClinic, InsuranceCategory::A, 999);
        assert_eq!((ins, own), (849, 150));
        assert_eq!(r.split(InstitutionKind::CountyHospital, InsuranceCategory::C, 500), (0, 500));
        assert_eq!(yuan(1250), "12.50");
    }

    #[test]
    fn settings_override_and_validate() {
        let s = json!({"billing": {"reimbursement": {"village_clinic": {"A": 0.9}}}});
        let r = Reimbursement::from_settings(&s).unwrap();
        assert_eq!(r.rate_bp(InstitutionKind::VillageClinic, InsuranceCategory::A), 9000);
        assert_eq!(r.rate_bp(InstitutionKind::VillageClinic, InsuranceCategory::B), 7500);
        let bad = json!({"billing": {"reimbursement": {"village_clinic": {"A": 1.5}}}});
        assert!(Reimbursement::from_settings(&bad).unwrap_err().contains("not between 0 and 1"));
        let bad = json!({"billing": {"reimbursement": {"clinic": {"A": 0.5}}}});
        assert!(Reimbursement::from_settings(&bad).unwrap_err().contains("unknown institution kind"));
    }
}
