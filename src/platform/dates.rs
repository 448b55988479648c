//! Dates at the boundary. Every date and period a caller sends is checked here against a
//! plausible range before anything uses it, and answered 422 `date_out_of_range` naming the
//! field otherwise: chrono reads years from -262143 to +262142, PostgreSQL refuses year 0 and
//! before, and date arithmetic on such values overflows. Inside, date arithmetic saturates
//! ([`add_days`]) instead of panicking.

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use serde_json::json;

use crate::platform::codes;
use crate::platform::{AppError, AppResult};

/// No date the application keeps is earlier.
pub fn earliest() -> NaiveDate {
    NaiveDate::from_ymd_opt(1900, 1, 1).expect("a valid date")
}

/// `d` plus `days`, at chrono's limits rather than past them.
pub fn add_days(d: NaiveDate, days: i64) -> NaiveDate {
    Duration::try_days(days).and_then(|delta| d.checked_add_signed(delta)).unwrap_or(if days >= 0 {
        NaiveDate::MAX
    } else {
        NaiveDate::MIN
    })
}

/// `d` plus whole years (29 February becomes 28 February), at chrono's limits.
pub fn add_years(d: NaiveDate, years: i32) -> NaiveDate {
    let year = d.year().saturating_add(years);
    NaiveDate::from_ymd_opt(year, d.month(), d.day())
        .or_else(|| NaiveDate::from_ymd_opt(year, d.month(), 28))
        .unwrap_or(if years >= 0 { NaiveDate::MAX } else { NaiveDate::MIN })
}

fn out_of_range(field: &'static str, min: NaiveDate, max: NaiveDate) -> AppError {
    AppError::new(codes::DATE_OUT_OF_RANGE, format!("{field} must be a date from {min} to {max}"))
        .with_details(json!({ "field": field, "min": min, "max": max }))
}

/// `d` if it lies in `min..=max`.
pub fn within(field: &'static str, d: NaiveDate, min: NaiveDate, max: NaiveDate) -> AppResult<NaiveDate> {
    if d < min || d > max { Err(out_of_range(field, min, max)) } else { Ok(d) }
}

/// Any date the application works with: from 1900 to a year after `today`.
pub fn plausible(field: &'static str, d: NaiveDate, today: NaiveDate) -> AppResult<NaiveDate> {
    within(field, d, earliest(), add_years(today, 1))
}

/// A date that has happened: a birth, a diagnosis, a visit (from 1900 to `today`).
pub fn past(field: &'static str, d: NaiveDate, today: NaiveDate) -> AppResult<NaiveDate> {
    within(field, d, earliest(), today)
}

/// A date something is planned for: from 1900 to two years after `today`.
pub fn planned(field: &'static str, d: NaiveDate, today: NaiveDate) -> AppResult<NaiveDate> {
    within(field, d, earliest(), add_years(today, 2))
}

/// A stock batch's expiry: within ten years of `today`.
pub fn expiry(field: &'static str, d: NaiveDate, today: NaiveDate) -> AppResult<NaiveDate> {
    within(field, d, add_years(today, -10), add_years(today, 10))
}

/// An instant a caller names (a `since`): from 1900 to a year after `now`.
pub fn instant(field: &'static str, t: DateTime<Utc>, now: DateTime<Utc>) -> AppResult<DateTime<Utc>> {
    let day = t.date_naive();
    plausible(field, day, now.date_naive()).map(|_| t)
}

/// An optional date, checked when given.
pub fn optional(
    field: &'static str,
    d: Option<NaiveDate>,
    today: NaiveDate,
    check: fn(&'static str, NaiveDate, NaiveDate) -> AppResult<NaiveDate>,
) -> AppResult<Option<NaiveDate>> {
    d.map(|d| check(field, d, today)).transpose()
}

/// An accounting or statistics period `YYYY-MM`, years 1900 to 2200: 422 `period_invalid` when
/// it is not one.
pub fn period(field: &'static str, p: &str) -> AppResult<()> {
    let ok = p.len() == 7
        && p.as_bytes()[4] == b'-'
        && p[..4].parse::<i32>().is_ok_and(|y| (1900..=2200).contains(&y))
        && p[5..].parse::<u32>().is_ok_and(|m| (1..=12).contains(&m));
    if ok {
        Ok(())
    } else {
        Err(AppError::new(codes::PERIOD_INVALID, format!("{field} is a month YYYY-MM from 1900-01 to 2200-12"))
            .with_details(json!({ "field": field })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn arithmetic_saturates_instead_of_panicking() {
        assert_eq!(add_days(NaiveDate::MAX, 7), NaiveDate::MAX);
        assert_eq!(add_days(NaiveDate::MIN, -7), NaiveDate::MIN);
        assert_eq!(add_days(d("2026-01-01"), i64::MAX), NaiveDate::MAX);
        assert_eq!(add_days(d("2026-01-01"), 31), d("2026-02-01"));
        assert_eq!(add_years(d("2024-02-29"), 1), d("2025-02-28"));
        assert_eq!(add_years(NaiveDate::MAX, 1), NaiveDate::MAX);
    }

    #[test]
    fn ranges_name_the_field() {
        let today = d("2026-12-06");
        assert!(plausible("as_of", d("2027-12-06"), today).is_ok());
        let e = plausible("as_of", d("2027-12-07"), today).unwrap_err();
        assert_eq!((e.code(), e.details().unwrap()["field"].as_str()), ("date_out_of_range", Some("as_of")));
        for bad in [NaiveDate::MIN, NaiveDate::MAX, d("0000-01-01"), d("1899-12-31")] {
            assert!(plausible("x", bad, today).is_err(), "{bad}");
        }
        assert!(past("birth_date", d("2026-12-07"), today).is_err());
        assert!(expiry("expiry", d("2037-01-01"), today).is_err());
        assert!(
            period("from", "0000-01").is_err()
                && period("from", "2026-13").is_err()
                && period("from", "2026-11").is_ok()
        );
    }
}
