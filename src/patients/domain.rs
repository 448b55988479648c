//! Patient demographics as they arrive at the edge, parsed once: names, sex, birth date, resident
//! ID (checked against sex and birth date), phone, insurance number, address division.
//! Invalid input is a 422 with a stable code and, for resident IDs, the failed check.

use std::borrow::Cow;

use chrono::{Datelike, NaiveDate, Utc};
use serde_json::json;
use unicode_normalization::UnicodeNormalization;

use super::entity::person;
use super::matching::{Birth, MatchRecord};
use super::names::{NameError, NameKey};
use super::resident_id::{ResidentId, Sex};
use crate::platform::AppError;
use crate::platform::codes::{self, Code};
use crate::platform::pii::PiiCipher;

/// Demographics as submitted (registration, match, search).
#[derive(Debug, Clone, Default)]
pub struct RawDemographics {
    pub name: String,
    pub sex: Option<String>,
    pub birth_date: Option<String>,
    pub resident_id: Option<String>,
    pub phone: Option<String>,
    pub insurance_no: Option<String>,
    pub address_division: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Demographics {
    pub name: NameKey,
    pub sex: Option<Sex>,
    pub birth: Option<Birth>,
    /// The sex and birth date the record itself gave, before a resident ID filled them in: what
    /// is left of them when that ID turns out to be someone else's (`service::register_once`).
    pub typed_sex: Option<Sex>,
    pub typed_birth: Option<Birth>,
    pub resident_id: Option<ResidentId>,
    pub phone: Option<String>,
    pub insurance_no: Option<String>,
    pub division: Option<String>,
}

pub fn sex_str(s: Sex) -> &'static str {
    match s {
        Sex::Male => "male",
        Sex::Female => "female",
    }
}

pub fn parse_sex(s: &str) -> Option<Sex> {
    match as_typed(s).to_ascii_lowercase().as_str() {
        "male" | "m" | "男" => Some(Sex::Male),
        "female" | "f" | "女" => Some(Sex::Female),
        _ => None,
    }
}

/// Text as a person typed it, the way the checks read it: NFKC, so the full-width digits,
/// letters and punctuation a Chinese input method gives (`１３８００１３８０００`, `１９９０－０１－０１`,
/// `ｘ`, the ideographic space) read as their ASCII forms; then trimmed. ASCII passes unchanged.
pub fn as_typed(s: &str) -> Cow<'_, str> {
    if s.is_ascii() { Cow::Borrowed(s.trim()) } else { Cow::Owned(s.nfkc().collect::<String>().trim().to_string()) }
}

fn invalid(code: Code, message: &str) -> AppError {
    AppError::new(code, message)
}

/// `YYYY-MM-DD`, or `YYYY` when only the year is known. Never in the future.
pub fn parse_birth(s: &str) -> Result<Birth, AppError> {
    let s = &*as_typed(s);
    let today = Utc::now().date_naive();
    let birth = if s.len() == 4 {
        let y: i32 = s.parse().map_err(|_| invalid(codes::BIRTH_DATE_INVALID, "birth_date is YYYY-MM-DD or YYYY"))?;
        Birth::Year(y)
    } else {
        Birth::Full(
            NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .map_err(|_| invalid(codes::BIRTH_DATE_INVALID, "birth_date is YYYY-MM-DD or YYYY"))?,
        )
    };
    let in_future = match birth {
        Birth::Full(d) => d > today,
        Birth::Year(y) => y > today.year(),
    };
    if in_future || birth.year() < 1880 {
        return Err(invalid(codes::BIRTH_DATE_INVALID, "birth_date must be a past date after 1880"));
    }
    Ok(birth)
}

/// Mainland mobile numbers (11 digits, 1[3-9]…) or landlines with area code (10-12 digits,
/// starting 0). Full-width characters read as ASCII; spaces, dashes, brackets round the area code
/// and a +86 prefix are dropped.
pub fn parse_phone(s: &str) -> Result<String, AppError> {
    let digits: String =
        as_typed(s).trim_start_matches("+86").chars().filter(|c| !matches!(c, ' ' | '-' | '(' | ')')).collect();
    let mobile = digits.len() == 11 && digits.starts_with('1') && matches!(digits.as_bytes()[1], b'3'..=b'9');
    let landline = (10..=12).contains(&digits.len()) && digits.starts_with('0');
    if !digits.chars().all(|c| c.is_ascii_digit()) || !(mobile || landline) {
        return Err(invalid(
            codes::PHONE_INVALID,
            "phone must be an 11-digit mobile number or a landline with area code",
        ));
    }
    Ok(digits)
}

pub fn parse_division(s: &str) -> Result<String, AppError> {
    let s = as_typed(s);
    if s.chars().all(|c| c.is_ascii_digit()) && (s.len() == 9 || s.len() == 12) {
        Ok(s.to_string())
    } else {
        Err(invalid(codes::DIVISION_INVALID, "address_division is a 9-digit township or 12-digit village code"))
    }
}

pub fn parse_insurance(s: &str) -> Result<String, AppError> {
    let s = as_typed(s).to_ascii_uppercase();
    if (6..=30).contains(&s.len()) && s.chars().all(|c| c.is_ascii_alphanumeric()) {
        Ok(s)
    } else {
        Err(invalid(codes::INSURANCE_NO_INVALID, "insurance_no is 6-30 letters or digits"))
    }
}

pub fn resident_id_error(e: super::resident_id::ResidentIdError) -> AppError {
    AppError::new(codes::RESIDENT_ID_INVALID, format!("resident_id is not valid: {e}"))
        .with_details(json!({ "field": "resident_id", "check": e.check() }))
}

impl Demographics {
    /// Full validation at the registration desk: as [`Demographics::parse`], and sex and birth
    /// date are required unless a resident ID supplies them (the person is there to ask).
    pub fn parse_complete(raw: &RawDemographics) -> Result<Self, AppError> {
        let d = Self::parse(raw)?;
        if d.sex.is_none() {
            return Err(invalid(codes::SEX_REQUIRED, "sex is required without a resident ID"));
        }
        if d.birth.is_none() {
            return Err(invalid(codes::BIRTH_DATE_REQUIRED, "birth_date is required without a resident ID"));
        }
        Ok(d)
    }

    /// Validation of what is given: a name is required; sex and birth date may be missing (a
    /// record from another system, an unconscious patient) and are then flagged for data quality
    /// ([`Demographics::quality_flags`]), not refused. A resident ID supplies sex and birth date
    /// and must agree with any given.
    pub fn parse(raw: &RawDemographics) -> Result<Self, AppError> {
        let name = NameKey::parse(&raw.name).map_err(name_error)?;
        let resident_id = match raw.resident_id.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            Some(s) => Some(ResidentId::parse(s).map_err(resident_id_error)?),
            None => None,
        };
        let mut sex = match raw.sex.as_deref() {
            Some(s) => Some(parse_sex(s).ok_or_else(|| invalid(codes::SEX_INVALID, "sex is male or female"))?),
            None => None,
        };
        let mut birth = raw.birth_date.as_deref().map(parse_birth).transpose()?;
        let (typed_sex, typed_birth) = (sex, birth);
        if let Some(id) = &resident_id {
            match sex {
                Some(s) if s != id.sex() => return Err(resident_id_error(super::resident_id::ResidentIdError::Sex)),
                _ => sex = Some(id.sex()),
            }
            match birth {
                Some(Birth::Full(d)) if d != id.birth_date() => {
                    return Err(resident_id_error(super::resident_id::ResidentIdError::BirthDateMismatch));
                }
                Some(Birth::Year(y)) if y != id.birth_date().year() => {
                    return Err(resident_id_error(super::resident_id::ResidentIdError::BirthDateMismatch));
                }
                _ => birth = Some(Birth::Full(id.birth_date())),
            }
        }
        Ok(Self {
            name,
            sex,
            birth,
            typed_sex,
            typed_birth,
            resident_id,
            phone: raw.phone.as_deref().filter(|s| !s.trim().is_empty()).map(parse_phone).transpose()?,
            insurance_no: raw
                .insurance_no
                .as_deref()
                .filter(|s| !s.trim().is_empty())
                .map(parse_insurance)
                .transpose()?,
            division: raw.address_division.as_deref().filter(|s| !s.is_empty()).map(parse_division).transpose()?,
        })
    }

    /// What these demographics lack for a complete record: `sex_missing`, `birth_date_missing`.
    pub fn quality_flags(&self) -> Vec<&'static str> {
        quality_flags(self.sex.is_some(), self.birth.is_some())
    }

    pub fn to_match_record(&self) -> MatchRecord {
        MatchRecord {
            name: self.name.clone(),
            sex: self.sex,
            birth: self.birth,
            resident_id: self.resident_id.as_ref().map(|r| r.as_str().to_string()),
            resident_id_valid: self.resident_id.is_some(),
            phone: self.phone.clone(),
            insurance_no: self.insurance_no.clone(),
            division: self.division.clone(),
        }
    }
}

/// Data-quality flags of a record that has (or lacks) a sex and a birth date (or year).
pub fn quality_flags(has_sex: bool, has_birth: bool) -> Vec<&'static str> {
    let mut flags = Vec::new();
    if !has_sex {
        flags.push("sex_missing");
    }
    if !has_birth {
        flags.push("birth_date_missing");
    }
    flags
}

pub fn name_error(e: NameError) -> AppError {
    invalid(codes::NAME_INVALID, &format!("name: {e}"))
}

pub fn phone_tail(phone: &str) -> &str {
    &phone[phone.len().saturating_sub(4)..]
}

crate::string_enum! {
    /// An identifier shown masked unless revealed.
    pub enum IdentifierField {
        ResidentId = "resident_id",
        Phone = "phone",
        InsuranceNo = "insurance_no",
    }
}

crate::string_enum! {
    /// Why someone reveals a masked identifier: each is also the audit row's purpose.
    pub enum RevealPurpose {
        /// 诊疗: the patient is being treated here.
        Treatment = "treatment",
        /// 转诊: a referral needs it.
        Referral = "referral",
        /// 医保结算: an insurance settlement needs the number.
        InsuranceClaim = "insurance_claim",
        /// 身份核验: checking who the patient is.
        IdentityCheck = "identity_check",
        /// 联系患者: calling the patient.
        PatientContact = "patient_contact",
    }
}

impl RevealPurpose {
    pub fn audit_purpose(self) -> crate::platform::audit::Purpose {
        use crate::platform::audit::Purpose;
        match self {
            Self::Treatment => Purpose::Treatment,
            Self::Referral => Purpose::Referral,
            Self::InsuranceClaim => Purpose::InsuranceClaim,
            Self::IdentityCheck => Purpose::IdentityCheck,
            Self::PatientContact => Purpose::PatientContact,
        }
    }
}

/// Reveals per user per hour: enough for a clinic's day of genuine needs, too few to harvest.
pub const REVEALS_PER_HOUR: u64 = 20;

/// `138****5678`
pub fn mask_phone(p: &str) -> String {
    if p.len() == 11 {
        format!("{}****{}", &p[..3], &p[7..])
    } else {
        format!("{}{}", "*".repeat(p.len().saturating_sub(4)), phone_tail(p))
    }
}

pub fn mask_insurance(s: &str) -> String {
    if s.len() <= 4 {
        return "*".repeat(s.len());
    }
    format!("{}{}{}", &s[..2], "*".repeat(s.len() - 4), &s[s.len() - 2..])
}

/// A stored person as matching sees it (identifiers decrypted in memory).
pub fn record_of(p: &person::Model, cipher: &PiiCipher) -> MatchRecord {
    MatchRecord {
        name: NameKey::from_normalized(p.name.clone()),
        sex: p.sex.as_deref().and_then(parse_sex),
        birth: match (p.birth_date, p.birth_year) {
            (Some(d), _) => Some(Birth::Full(d)),
            (None, Some(y)) => Some(Birth::Year(y)),
            _ => None,
        },
        resident_id: p.resident_id_enc.as_deref().and_then(|e| cipher.decrypt(e)),
        resident_id_valid: p.resident_id_valid,
        phone: p.phone_enc.as_deref().and_then(|e| cipher.decrypt(e)),
        insurance_no: p.insurance_enc.as_deref().and_then(|e| cipher.decrypt(e)),
        division: p.division_code.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(name: &str) -> RawDemographics {
        RawDemographics { name: name.into(), ..Default::default() }
    }

    #[test]
    fn resident_id_supplies_and_checks_sex_and_birth() {
        let mut r = raw("张伟");
        r.resident_id = Some("11010519491231002X".into());
        let d = Demographics::parse(&r).unwrap();
        assert_eq!(d.sex, Some(Sex::Female));
        r.sex = Some("male".into());
        let e = Demographics::parse(&r).unwrap_err();
        assert_eq!(e.code(), "resident_id_invalid");
        assert_eq!(e.body().details.unwrap()["check"], "sex");
        r.sex = None;
        r.birth_date = Some("1949-12-30".into());
        assert_eq!(Demographics::parse(&r).unwrap_err().body().details.unwrap()["check"], "birth_date_mismatch");
    }

    /// A Chinese input method left in full-width mode types `１３８…`, `１９９０－０１－０１`, `ｘ`.
    #[test]
    fn full_width_input_reads_as_its_ascii_form() {
        let mut r = raw("张伟");
        r.resident_id = Some("　１１０１０５１９４９１２３１００２ｘ　".into());
        r.birth_date = Some("１９４９－１２－３１".into());
        r.sex = Some("女".into());
        r.phone = Some("＋８６ １３８－００１３－８０００".into());
        r.insurance_no = Some("ｙｂ１２３４５６７".into());
        r.address_division = Some("１３０９９９００１００１".into());
        let d = Demographics::parse(&r).unwrap();
        assert_eq!(d.resident_id.unwrap().as_str(), "11010519491231002X");
        assert_eq!(d.birth, NaiveDate::from_ymd_opt(1949, 12, 31).map(Birth::Full));
        assert_eq!(d.phone.as_deref(), Some("13800138000"));
        assert_eq!(d.insurance_no.as_deref(), Some("YB1234567"));
        assert_eq!(d.division.as_deref(), Some("130999001001"));
        assert_eq!(parse_phone("（０３１１）８６０１２３４５").unwrap(), "031186012345");
        assert_eq!(parse_sex("Ｍ"), Some(Sex::Male));
        // Full width changes nothing about what is valid.
        assert_eq!(parse_phone("１２３４５").unwrap_err().code(), "phone_invalid");
        assert_eq!(parse_birth("２９９９－０１－０１").unwrap_err().code(), "birth_date_invalid");
    }

    #[test]
    fn required_fields_and_formats() {
        assert_eq!(Demographics::parse_complete(&raw("张伟")).unwrap_err().code(), "sex_required");
        let mut r = raw("张伟");
        r.sex = Some("male".into());
        assert_eq!(Demographics::parse_complete(&r).unwrap_err().code(), "birth_date_required");
        // Without the desk's requirements, what is missing is flagged instead.
        assert_eq!(Demographics::parse(&raw("张伟")).unwrap().quality_flags(), ["sex_missing", "birth_date_missing"]);
        assert_eq!(Demographics::parse(&r).unwrap().quality_flags(), ["birth_date_missing"]);
        r.birth_date = Some("2999-01-01".into());
        assert_eq!(Demographics::parse(&r).unwrap_err().code(), "birth_date_invalid");
        r.birth_date = Some("1948".into());
        assert_eq!(Demographics::parse(&r).unwrap().birth, Some(Birth::Year(1948)));
        r.phone = Some("12345".into());
        assert_eq!(Demographics::parse(&r).unwrap_err().code(), "phone_invalid");
        r.phone = Some("+86 138-1234-5678".into());
        assert_eq!(Demographics::parse(&r).unwrap().phone.as_deref(), Some("13812345678"));
    }

    #[test]
    fn masks() {
        assert_eq!(mask_phone("13812345678"), "138****5678");
        assert_eq!(mask_insurance("123456789012"), "12********12");
    }
}
