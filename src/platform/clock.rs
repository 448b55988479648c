//! Time. The application's clock (the system's, or a moment a test has frozen it at, so a
//! worklist "today" can be checked against hand-computed expectations), and China Standard Time:
//! the dates of visits, plans, ledger periods and statistics are China dates (UTC+8).

use chrono::{DateTime, FixedOffset, NaiveDate, TimeZone, Utc};

tokio::task_local! {
    /// The moment records are stamped with in this task, when a seeder of history set one.
    static AS_OF: DateTime<Utc>;
}

/// Now, for the timestamps a use case writes (when a visit opened, a charge posted, an event
/// occurred): the system clock, or the moment set by [`as_of`] for the task running it. Only
/// the demo's history seeder sets one; leases, sessions, sweeps and the audit trail keep
/// `Utc::now()`.
pub fn now() -> DateTime<Utc> {
    AS_OF.try_with(|t| *t).unwrap_or_else(|_| Utc::now())
}

/// Runs `f` with [`now`] answering `at`: a seeded record is written as it would have been then.
pub async fn as_of<F: std::future::Future>(at: DateTime<Utc>, f: F) -> F::Output {
    AS_OF.scope(at, f).await
}

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

    #[tokio::test]
    async fn now_is_the_system_clock_unless_a_task_set_a_moment() {
        let at = Utc.with_ymd_and_hms(2026, 3, 1, 1, 0, 0).unwrap();
        assert!((now() - Utc::now()).num_seconds().abs() < 5);
        assert_eq!(as_of(at, async { now() }).await, at);
        let other = tokio::spawn(async { now() });
        let seen = as_of(at, async { other.await.unwrap() }).await;
        assert_ne!(seen, at, "another task keeps the system clock");
        assert!((now() - Utc::now()).num_seconds().abs() < 5, "the moment ends with its scope");
    }

    #[test]
    fn china_days_start_at_16_utc() {
        let (start, end) = china_day(NaiveDate::from_ymd_opt(2026, 1, 2).unwrap());
        assert_eq!(start.to_rfc3339(), "2026-01-01T16:00:00+00:00");
        assert_eq!(end - start, chrono::Duration::days(1));
        assert_eq!(china_date(start), NaiveDate::from_ymd_opt(2026, 1, 2).unwrap());
    }
}
