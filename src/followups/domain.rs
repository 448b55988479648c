//! The rules of chronic-disease management, after the national basic public health service
//! guide (国家基本公共卫生服务规范, hypertension and type 2 diabetes management): which diagnoses
//! belong in which registry, what a plausible measurement is, what a danger value is, when a
//! patient counts as controlled, when a referral up is proposed, and which worklist a patient is
//! on for a given day. Pure functions, unit-tested here.

use crate::platform::codes::{self, Code};
use chrono::{Datelike, NaiveDate};

crate::string_enum! {
    /// The chronic diseases with a registry.
    pub enum Disease {
        Hypertension = "hypertension",
        Diabetes = "diabetes",
    }
}

impl Disease {
    pub fn label_zh(self) -> &'static str {
        match self {
            Self::Hypertension => "高血压",
            Self::Diabetes => "2型糖尿病",
        }
    }

    /// The registry an ICD-10 code belongs to: hypertensive diseases I10–I15, type 2 diabetes
    /// E11 (with or without a subcode).
    pub fn of_icd(code: &str) -> Option<Self> {
        let c = code.trim().to_ascii_uppercase();
        let head: String = c.chars().take(3).collect();
        match head.as_str() {
            "I10" | "I11" | "I12" | "I13" | "I15" => Some(Self::Hypertension),
            "E11" => Some(Self::Diabetes),
            _ => None,
        }
    }
}

crate::string_enum! {
    /// An enrollment in a registry: active until closed (moved, died, misdiagnosed, other).
    pub enum EnrollmentStatus {
        Active = "active",
        Closed = "closed",
    }
}

crate::string_enum! {
    /// How a follow-up classifies the patient (the national guide's four classes).
    pub enum Classification {
        Controlled = "controlled",
        Uncontrolled = "uncontrolled",
        AdverseReaction = "adverse_reaction",
        Complication = "complication",
    }
}

impl Classification {
    pub fn label_zh(self) -> &'static str {
        match self {
            Self::Controlled => "控制满意",
            Self::Uncontrolled => "控制不满意",
            Self::AdverseReaction => "不良反应",
            Self::Complication => "并发症",
        }
    }
}

/// What a follow-up measured.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Measures {
    pub systolic: Option<i32>,
    pub diastolic: Option<i32>,
    /// Fasting glucose, mmol/L.
    pub glucose: Option<f64>,
}

/// A measurement no living patient has, or one the disease's follow-up cannot do without.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Implausible {
    pub code: Code,
    pub field: &'static str,
    pub message: String,
}

fn implausible(code: Code, field: &'static str, message: impl Into<String>) -> Implausible {
    Implausible { code, field, message: message.into() }
}

/// Plausible ranges: systolic 50–300 and diastolic 20–200 mmHg with systolic above diastolic,
/// glucose above 0 and at most 50 mmol/L. A hypertension follow-up needs both pressures, a
/// diabetes follow-up the glucose.
pub fn check(disease: Disease, m: &Measures) -> Result<(), Implausible> {
    if let Some(s) = m.systolic
        && !(50..=300).contains(&s)
    {
        return Err(implausible(codes::VALUE_OUT_OF_RANGE, "systolic", "systolic pressure must be 50 to 300 mmHg"));
    }
    if let Some(d) = m.diastolic
        && !(20..=200).contains(&d)
    {
        return Err(implausible(codes::VALUE_OUT_OF_RANGE, "diastolic", "diastolic pressure must be 20 to 200 mmHg"));
    }
    if let (Some(s), Some(d)) = (m.systolic, m.diastolic)
        && s <= d
    {
        return Err(implausible(codes::VALUE_OUT_OF_RANGE, "diastolic", "diastolic pressure must be below systolic"));
    }
    if m.systolic.is_some() != m.diastolic.is_some() {
        return Err(implausible(codes::VALUE_REQUIRED, "diastolic", "record systolic and diastolic pressure together"));
    }
    if let Some(g) = m.glucose
        && !(g.is_finite() && g > 0.0 && g <= 50.0)
    {
        return Err(implausible(codes::VALUE_OUT_OF_RANGE, "glucose", "glucose must be above 0 and at most 50 mmol/L"));
    }
    match disease {
        Disease::Hypertension if m.systolic.is_none() => {
            Err(implausible(codes::VALUE_REQUIRED, "systolic", "a hypertension follow-up records the blood pressure"))
        }
        Disease::Diabetes if m.glucose.is_none() => {
            Err(implausible(codes::VALUE_REQUIRED, "glucose", "a diabetes follow-up records the fasting glucose"))
        }
        _ => Ok(()),
    }
}

/// Danger values, which call for referral at once: SBP ≥ 180 or DBP ≥ 110 mmHg, glucose ≥ 16.7
/// mmol/L. Returned as stable reason codes.
pub fn danger(m: &Measures) -> Vec<&'static str> {
    let mut out = Vec::new();
    if m.systolic.is_some_and(|s| s >= 180) {
        out.push("systolic_180");
    }
    if m.diastolic.is_some_and(|d| d >= 110) {
        out.push("diastolic_110");
    }
    if m.glucose.is_some_and(|g| g >= 16.7) {
        out.push("glucose_16_7");
    }
    out
}

/// Control by the measurements alone: blood pressure below 140/90 mmHg (150/90 from age 65);
/// fasting glucose below 7.0 mmol/L.
pub fn measured_control(disease: Disease, m: &Measures, age: Option<i32>) -> Classification {
    let ok = match disease {
        Disease::Hypertension => {
            let limit = if age.is_some_and(|a| a >= 65) { 150 } else { 140 };
            m.systolic.is_some_and(|s| s < limit) && m.diastolic.is_some_and(|d| d < 90)
        }
        Disease::Diabetes => m.glucose.is_some_and(|g| g < 7.0),
    };
    if ok { Classification::Controlled } else { Classification::Uncontrolled }
}

/// Control as the bureau's KPI counts it (docs: DESIGN, national monitoring indicators): blood
/// pressure below 140/90 mmHg whatever the age, fasting glucose below 7.0 mmol/L.
pub fn kpi_controlled(disease: Disease, m: &Measures) -> bool {
    measured_control(disease, m, None) == Classification::Controlled
}

crate::string_enum! {
    /// Why a referral up is proposed.
    pub enum Flag {
        /// A danger value at this follow-up: urgent.
        Danger = "danger",
        /// Uncontrolled at two consecutive follow-ups.
        UncontrolledTwice = "uncontrolled_twice",
        /// A new or worsening complication.
        Complication = "complication",
    }
}

impl Flag {
    pub fn urgent(self) -> bool {
        self == Self::Danger
    }
}

/// The referral rule: a danger value, two consecutive uncontrolled follow-ups (`streak` counts
/// this one), or a complication.
pub fn flag(classification: Classification, streak: i32, dangers: &[&str]) -> Option<Flag> {
    if !dangers.is_empty() {
        Some(Flag::Danger)
    } else if classification == Classification::Complication {
        Some(Flag::Complication)
    } else if classification == Classification::Uncontrolled && streak >= 2 {
        Some(Flag::UncontrolledTwice)
    } else {
        None
    }
}

/// The uncontrolled streak after a follow-up.
pub fn next_streak(previous: i32, classification: Classification) -> i32 {
    if classification == Classification::Uncontrolled { previous + 1 } else { 0 }
}

/// When to see the patient next if the doctor does not say: the plan's interval when
/// controlled, two weeks otherwise (the guide's "follow up again within two weeks").
pub fn default_next(visit_on: NaiveDate, classification: Classification, interval_days: i32) -> NaiveDate {
    let days = if classification == Classification::Controlled { interval_days } else { 14 };
    crate::platform::dates::add_days(visit_on, i64::from(days))
}

/// Where a patient stands on a worklist for day `as_of`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Category {
    /// Followed up before, and due before `as_of`.
    Overdue,
    /// Followed up before, and due from `as_of` to the end of its week (Sunday).
    DueThisWeek,
    /// Enrolled and not yet seen once, whenever the first follow-up is due (the item's days
    /// overdue say which of them are late).
    NeverFollowedUp,
}

impl Category {
    pub const ALL: [Category; 3] = [Self::Overdue, Self::DueThisWeek, Self::NeverFollowedUp];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Overdue => "overdue",
            Self::DueThisWeek => "due_this_week",
            Self::NeverFollowedUp => "never_followed_up",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }

    pub fn label_zh(self) -> &'static str {
        match self {
            Self::Overdue => "已逾期",
            Self::DueThisWeek => "本周到期",
            Self::NeverFollowedUp => "从未随访",
        }
    }
}

/// Sunday of `day`'s week (weeks run Monday to Sunday).
pub fn week_end(day: NaiveDate) -> NaiveDate {
    crate::platform::dates::add_days(day, 6 - i64::from(day.weekday().num_days_from_monday()))
}

/// The worklist category of an active enrollment on `as_of`; `None` when nothing is due.
pub fn category(next_due: NaiveDate, visits: i32, as_of: NaiveDate) -> Option<Category> {
    if visits == 0 {
        Some(Category::NeverFollowedUp)
    } else if next_due < as_of {
        Some(Category::Overdue)
    } else if next_due <= week_end(as_of) {
        Some(Category::DueThisWeek)
    } else {
        None
    }
}

/// Management status for a year: standard management (规范管理) is at least four follow-ups in
/// the year; control is judged on the year's last follow-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YearStatus {
    pub year: i32,
    pub visits: usize,
    pub required: usize,
    pub standard: bool,
    pub last_classification: Option<Classification>,
    pub controlled: bool,
}

pub const REQUIRED_PER_YEAR: usize = 4;

pub fn year_status(year: i32, visits: &[(NaiveDate, Classification)]) -> YearStatus {
    let mut in_year: Vec<&(NaiveDate, Classification)> = visits.iter().filter(|(d, _)| d.year() == year).collect();
    in_year.sort_by_key(|(d, _)| *d);
    let last = in_year.last().map(|(_, c)| *c);
    YearStatus {
        year,
        visits: in_year.len(),
        required: REQUIRED_PER_YEAR,
        standard: in_year.len() >= REQUIRED_PER_YEAR,
        last_classification: last,
        controlled: last == Some(Classification::Controlled),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn bp(s: i32, dia: i32) -> Measures {
        Measures { systolic: Some(s), diastolic: Some(dia), glucose: None }
    }

    #[test]
    fn icd_codes_map_to_registries() {
        for c in ["I10", "i10", "I11.9", "I12.0", "I13.2", "I15.0"] {
            assert_eq!(Disease::of_icd(c), Some(Disease::Hypertension), "{c}");
        }
        for c in ["E11", "E11.9", "E11.2"] {
            assert_eq!(Disease::of_icd(c), Some(Disease::Diabetes), "{c}");
        }
        for c in ["I14", "I16", "I20", "E10", "E12", "J06.9", ""] {
            assert_eq!(Disease::of_icd(c), None, "{c}");
        }
    }

    #[test]
    fn implausible_values_are_refused_and_danger_values_are_not() {
        let h = Disease::Hypertension;
        assert_eq!(check(h, &bp(400, 90)).unwrap_err().field, "systolic");
        assert_eq!(check(h, &bp(30, 20)).unwrap_err().field, "systolic");
        assert_eq!(check(h, &bp(120, 130)).unwrap_err().field, "diastolic");
        assert_eq!(
            check(h, &Measures { systolic: Some(120), ..Default::default() }).unwrap_err().code,
            "value_required"
        );
        assert_eq!(check(h, &Measures::default()).unwrap_err().code, "value_required");
        assert!(check(h, &bp(220, 125)).is_ok(), "a danger value is a real value");
        let dm = Disease::Diabetes;
        for g in [-1.0, 0.0, 55.0, f64::NAN] {
            assert_eq!(check(dm, &Measures { glucose: Some(g), ..Default::default() }).unwrap_err().field, "glucose");
        }
        assert_eq!(check(dm, &bp(130, 80)).unwrap_err().field, "glucose");
        assert!(check(dm, &Measures { glucose: Some(22.0), ..Default::default() }).is_ok());
    }

    #[test]
    fn danger_values_follow_the_guide() {
        assert!(danger(&bp(179, 109)).is_empty());
        assert_eq!(danger(&bp(180, 100)), ["systolic_180"]);
        assert_eq!(danger(&bp(170, 110)), ["diastolic_110"]);
        assert_eq!(danger(&Measures { glucose: Some(16.7), ..Default::default() }), ["glucose_16_7"]);
        assert!(danger(&Measures { glucose: Some(16.6), ..Default::default() }).is_empty());
    }

    #[test]
    fn control_depends_on_age_for_blood_pressure() {
        let h = Disease::Hypertension;
        assert_eq!(measured_control(h, &bp(139, 89), Some(50)), Classification::Controlled);
        assert_eq!(measured_control(h, &bp(145, 85), Some(50)), Classification::Uncontrolled);
        assert_eq!(measured_control(h, &bp(145, 85), Some(70)), Classification::Controlled);
        assert_eq!(measured_control(h, &bp(135, 92), Some(70)), Classification::Uncontrolled);
        let g = |v| Measures { glucose: Some(v), ..Default::default() };
        assert_eq!(measured_control(Disease::Diabetes, &g(6.9), None), Classification::Controlled);
        assert_eq!(measured_control(Disease::Diabetes, &g(7.0), None), Classification::Uncontrolled);
    }

    #[test]
    fn referral_is_proposed_on_danger_or_the_second_uncontrolled_follow_up() {
        use Classification::*;
        let mut streak = 0;
        let mut flags = Vec::new();
        for c in [Uncontrolled, Controlled, Uncontrolled, Uncontrolled, Uncontrolled] {
            streak = next_streak(streak, c);
            flags.push(flag(c, streak, &[]));
        }
        assert_eq!(flags, [None, None, None, Some(Flag::UncontrolledTwice), Some(Flag::UncontrolledTwice)]);
        assert_eq!(flag(Controlled, 0, &["systolic_180"]), Some(Flag::Danger));
        assert_eq!(flag(Complication, 0, &[]), Some(Flag::Complication));
        assert_eq!(flag(AdverseReaction, 0, &[]), None);
    }

    #[test]
    fn worklist_categories_for_a_day() {
        // 2026-06-10 is a Wednesday; its week ends on Sunday 2026-06-14.
        let today = d("2026-06-10");
        assert_eq!(week_end(today), d("2026-06-14"));
        assert_eq!(week_end(d("2026-06-14")), d("2026-06-14"));
        assert_eq!(week_end(d("2026-06-15")), d("2026-06-21"));
        assert_eq!(category(d("2026-06-09"), 3, today), Some(Category::Overdue));
        assert_eq!(category(d("2026-06-10"), 3, today), Some(Category::DueThisWeek));
        assert_eq!(category(d("2026-06-14"), 1, today), Some(Category::DueThisWeek));
        // Never seen: never followed up, whether late, due this week or later.
        assert_eq!(category(d("2026-04-01"), 0, today), Some(Category::NeverFollowedUp));
        assert_eq!(category(d("2026-06-14"), 0, today), Some(Category::NeverFollowedUp));
        assert_eq!(category(d("2026-06-15"), 0, today), Some(Category::NeverFollowedUp));
        assert_eq!(category(d("2026-06-15"), 1, today), None);
    }

    #[test]
    fn next_date_defaults_to_the_plan_or_two_weeks() {
        assert_eq!(default_next(d("2026-03-01"), Classification::Controlled, 90), d("2026-05-30"));
        assert_eq!(default_next(d("2026-03-01"), Classification::Uncontrolled, 90), d("2026-03-15"));
    }

    #[test]
    fn four_follow_ups_in_the_year_are_standard_management() {
        use Classification::*;
        let visits = [
            (d("2025-12-20"), Uncontrolled),
            (d("2026-01-15"), Uncontrolled),
            (d("2026-04-10"), Controlled),
            (d("2026-07-08"), Controlled),
            (d("2026-10-09"), Controlled),
        ];
        let s = year_status(2026, &visits);
        assert_eq!((s.visits, s.standard, s.controlled), (4, true, true));
        let s = year_status(2025, &visits);
        assert_eq!((s.visits, s.standard, s.controlled), (1, false, false));
    }
}
