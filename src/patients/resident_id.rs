//! Resident identity card numbers (居民身份证号码, GB 11643-1999).
//!
//! An 18-character number is: a 6-digit administrative division code, the birth date as
//! YYYYMMDD, a 3-digit sequence whose last digit is odd for men and even for women, and a check
//! character (ISO 7064 MOD 11-2, `X` standing for 10). Parsing checks, in order: length,
//! characters, region prefix (the province-level code), birth date, and check character; the
//! error names the first check that failed.
//!
//! **Legacy 15-digit numbers** (issued before 1999: region, YYMMDD, sequence, no check
//! character) are accepted by the documented rule: the birth year is taken as 19YY, the number is
//! widened to 18 characters by inserting `19` before YY and appending the computed check
//! character, and from then on it is stored, compared and shown in its 18-character form. A
//! legacy number has no check character, so a typo in it cannot be detected.

use chrono::{Datelike, NaiveDate, Utc};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Sex {
    Male,
    Female,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ResidentIdError {
    #[error("a resident ID has 18 characters (or 15 for the legacy form)")]
    Length,
    #[error("a resident ID is digits, with an optional final X")]
    Characters,
    #[error("the region prefix is not a known province-level code")]
    Region,
    #[error("the birth date in the resident ID is not a real past date")]
    BirthDate,
    #[error("the check character does not match (a digit is wrong)")]
    CheckCharacter,
    #[error("the sex digit of the resident ID does not match the given sex")]
    Sex,
    #[error("the birth date in the resident ID does not match the given birth date")]
    BirthDateMismatch,
}

impl ResidentIdError {
    /// Stable name of the failed check, returned in the API's error details.
    pub fn check(self) -> &'static str {
        match self {
            Self::Length => "length",
            Self::Characters => "characters",
            Self::Region => "region",
            Self::BirthDate => "birth_date",
            Self::CheckCharacter => "check_character",
            Self::Sex => "sex",
            Self::BirthDateMismatch => "birth_date_mismatch",
        }
    }
}

/// Province-level division codes (the first two digits of every division code).
pub const PROVINCES: [&str; 34] = [
    "11", "12", "13", "14", "15", "21", "22", "23", "31", "32", "33", "34", "35", "36", "37", "41", "42", "43", "44",
    "45", "46", "50", "51", "52", "53", "54", "61", "62", "63", "64", "65", "71", "81", "82",
];

const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
const CHECK: [char; 11] = ['1', '0', 'X', '9', '8', '7', '6', '5', '4', '3', '2'];

/// The check character for the first 17 digits.
pub fn check_character(first17: &[u8]) -> char {
    let sum: u32 = first17.iter().zip(WEIGHTS).map(|(d, w)| u32::from(d - b'0') * w).sum();
    CHECK[(sum % 11) as usize]
}

/// A valid resident ID, always in its 18-character form.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ResidentId(String);

impl std::fmt::Debug for ResidentId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ResidentId({})", self.masked())
    }
}

impl ResidentId {
    pub fn parse(raw: &str) -> Result<Self, ResidentIdError> {
        // As typed: full-width characters read as ASCII, and spaces between groups of digits
        // (`130999 19900101 001X`) dropped.
        let s: String = super::domain::as_typed(raw)
            .chars()
            .filter(|c| !c.is_whitespace())
            .map(|c| c.to_ascii_uppercase())
            .collect();
        let bytes = s.as_bytes();
        match bytes.len() {
            18 => {
                if !bytes[..17].iter().all(u8::is_ascii_digit) || !(bytes[17].is_ascii_digit() || bytes[17] == b'X') {
                    return Err(ResidentIdError::Characters);
                }
            }
            15 => {
                if !bytes.iter().all(u8::is_ascii_digit) {
                    return Err(ResidentIdError::Characters);
                }
            }
            _ => return Err(ResidentIdError::Length),
        }
        if !PROVINCES.contains(&&s[..2]) {
            return Err(ResidentIdError::Region);
        }
        let (date, widened) =
            if bytes.len() == 15 { (format!("19{}", &s[6..12]), None) } else { (s[6..14].to_string(), Some(())) };
        let birth = NaiveDate::parse_from_str(&date, "%Y%m%d").map_err(|_| ResidentIdError::BirthDate)?;
        if birth > Utc::now().date_naive() || birth.year() < 1880 {
            return Err(ResidentIdError::BirthDate);
        }
        let full = match widened {
            Some(()) => {
                if check_character(&bytes[..17]) != bytes[17] as char {
                    return Err(ResidentIdError::CheckCharacter);
                }
                s
            }
            None => {
                let body = format!("{}19{}", &s[..6], &s[6..]);
                let check = check_character(body.as_bytes());
                format!("{body}{check}")
            }
        };
        Ok(Self(full))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn birth_date(&self) -> NaiveDate {
        NaiveDate::parse_from_str(&self.0[6..14], "%Y%m%d").expect("validated at parse")
    }

    pub fn sex(&self) -> Sex {
        if (self.0.as_bytes()[16] - b'0') % 2 == 1 { Sex::Male } else { Sex::Female }
    }

    /// `110105********123X`: region and the last four, nothing of the birth date.
    pub fn masked(&self) -> String {
        mask_resident_id(&self.0)
    }
}

pub fn mask_resident_id(s: &str) -> String {
    if s.len() < 10 {
        return "*".repeat(s.len());
    }
    format!("{}{}{}", &s[..6], "*".repeat(s.len() - 10), &s[s.len() - 4..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Builds a valid 18-character ID from parts.
    fn make(region: &str, date: &str, seq: u32) -> String {
        let body = format!("{region}{date}{seq:03}");
        format!("{body}{}", check_character(body.as_bytes()))
    }

    #[test]
    fn valid_ids_parse_with_birth_date_and_sex() {
        let id = ResidentId::parse("11010519491231002X").unwrap();
        assert_eq!(id.birth_date(), NaiveDate::from_ymd_opt(1949, 12, 31).unwrap());
        assert_eq!(id.sex(), Sex::Female);
        assert_eq!(id.masked(), "110105********002X");
        let m = ResidentId::parse(&make("130999", "19850312", 131)).unwrap();
        assert_eq!(m.sex(), Sex::Male);
        assert_eq!(ResidentId::parse("11010519491231002x").unwrap().as_str(), "11010519491231002X");
    }

    #[test]
    fn every_kind_of_invalid_id_names_its_check() {
        let good = make("130999", "19850312", 131);
        let cases = [
            ("1234", ResidentIdError::Length),
            ("1101051949123100211", ResidentIdError::Length),
            ("11010519491231002Y", ResidentIdError::Characters),
            ("1101051949X231002X", ResidentIdError::Characters),
            (&make("990999", "19850312", 131)[..], ResidentIdError::Region),
            (&make("130999", "19850230", 131)[..], ResidentIdError::BirthDate),
            (&make("130999", "21000101", 131)[..], ResidentIdError::BirthDate),
            (&make("130999", "18500101", 131)[..], ResidentIdError::BirthDate),
        ];
        for (raw, expected) in cases {
            assert_eq!(ResidentId::parse(raw), Err(expected), "{raw}");
        }
        let mut wrong_check = good.clone();
        wrong_check.pop();
        wrong_check.push(if good.ends_with('0') { '1' } else { '0' });
        assert_eq!(ResidentId::parse(&wrong_check), Err(ResidentIdError::CheckCharacter));
    }

    #[test]
    fn ids_typed_in_groups_or_full_width_parse_as_themselves() {
        for typed in [
            "110105 19491231 002X",
            " 11010519491231002x ",
            "１１０１０５１９４９１２３１００２Ｘ",
            "110105\u{3000}19491231002X",
        ] {
            assert_eq!(
                ResidentId::parse(typed).map(|id| id.as_str().to_string()),
                Ok("11010519491231002X".into()),
                "{typed}"
            );
        }
        assert_eq!(ResidentId::parse("１１０１０５１９４９１２３１００２１"), Err(ResidentIdError::CheckCharacter));
    }

    #[test]
    fn legacy_15_digit_ids_widen_to_18() {
        let legacy = "130999850312131";
        let id = ResidentId::parse(legacy).unwrap();
        assert_eq!(id.as_str(), make("130999", "19850312", 131));
        assert_eq!(id.birth_date(), NaiveDate::from_ymd_opt(1985, 3, 12).unwrap());
        assert_eq!(ResidentId::parse("130999851332131"), Err(ResidentIdError::BirthDate));
    }

    fn valid_id() -> impl Strategy<Value = String> {
        (0..PROVINCES.len(), 0u32..10000, 1900i32..2025, 1u32..=12, 1u32..=28, 0u32..1000).prop_map(
            |(p, county, y, m, d, seq)| {
                make(&format!("{}{:04}", PROVINCES[p], county), &format!("{y:04}{m:02}{d:02}"), seq)
            },
        )
    }

    proptest! {
        #[test]
        fn generated_valid_ids_parse(id in valid_id()) {
            let parsed = ResidentId::parse(&id).unwrap();
            prop_assert_eq!(parsed.as_str(), id.as_str());
        }

        /// MOD 11-2 catches every single substitution: any one character changed to any other
        /// value is refused (by the check character, or earlier by the region or date check).
        #[test]
        fn every_single_character_corruption_is_caught(id in valid_id(), pos in 0usize..18, delta in 1u8..11) {
            let mut bytes = id.clone().into_bytes();
            let alphabet = b"0123456789X";
            let cur = alphabet.iter().position(|c| *c == bytes[pos]).unwrap();
            let mut next = (cur + delta as usize) % 11;
            if pos < 17 && alphabet[next] == b'X' {
                next = (next + 1) % 11;
            }
            if alphabet[next] == bytes[pos] {
                return Ok(());
            }
            bytes[pos] = alphabet[next];
            let corrupted = String::from_utf8(bytes).unwrap();
            prop_assert!(ResidentId::parse(&corrupted).is_err(), "{} accepted", corrupted);
        }
    }
}
