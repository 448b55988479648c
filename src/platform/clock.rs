//! The time the application runs at: the system's, or a moment a test has frozen it at (so a
//! worklist "today" can be checked against hand-computed expectations).

use chrono::{DateTime, NaiveDate, Utc};

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
        crate::accounts::domain::china(self.now()).date_naive()
    }

    /// Stops the clock at `at` (tests).
    pub fn freeze(&self, at: DateTime<Utc>) {
        *self.frozen.write().expect("the clock lock is never poisoned") = Some(at);
    }
}
