//! Time. The application's clock (the system's, or a moment a test has frozen it at, so a
//! worklist "today" can be checked against hand-computed expectations), and China Standard Time:
//! the dates of visits, plans, ledger periods and statistics are China dates (UTC+8).

use chrono::{DateTime, FixedOffset, NaiveDate, TimeZone, Utc};

#[derive(Debug, Default)]
pub struct Clock {
    frozen: std::sync::RwLock<Option<DateTime<Utc>>>,
}

impl Clock {
    pub fn now(&self) -> DateTime<Utc> {
        self.frozen.read().expect("the clock lock is never poisoned").unwrap_or_else(Utc::now)
    }

    /// Today in China (dates of visits and plans are China dates).
    pub fn china_today(&self) -> NaiveDate {
        china_date(self.now())
    }

    /// Stops the clock at `at` (tests).
    pub fn freeze(&self, at: DateTime<Utc>) {
        *self.frozen.write().expect("the clock lock is never poisoned") = Some(at);
    }
}

/// China Standard Time, UTC+8, all year (China keeps no daylight saving).
pub fn china_offset() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).expect("UTC+8 is a valid offset")
}

/// An instant as China local time.
pub fn china(t: DateTime<Utc>) -> DateTime<FixedOffset> {
    t.with_timezone(&china_offset())
}

/// The China date of an instant.
pub fn china_date(t: DateTime<Utc>) -> NaiveDate {
    china(t).date_naive()
}

/// The UTC instants bounding a China day: `[start, end)`.
pub fn china_day(day: NaiveDate) -> (DateTime<Utc>, DateTime<Utc>) {
    let midnight = day.and_hms_opt(0, 0, 0).expect("midnight exists");
    let start = china_offset().from_local_datetime(&midnight).single().expect("a fixed offset is unambiguous");
    let start = start.with_timezone(&Utc);
    (start, start + chrono::Duration::days(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn china_days_start_at_16_utc() {
        let (start, end) = china_day(NaiveDate::from_ymd_opt(2026, 1, 2).unwrap());
        assert_eq!(start.to_rfc3339(), "2026-01-01T16:00:00+00:00");
        assert_eq!(end - start, chrono::Duration::days(1));
        assert_eq!(china_date(start), NaiveDate::from_ymd_opt(2026, 1, 2).unwrap());
    }
}
