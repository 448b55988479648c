//! The national medical-community KPIs (defined in `docs/statistics.md`, "KPIs") from
//! rolled-up counts, and small-cell suppression: a cell that counts, or is computed
//! from, fewer than five patients is shown as `<5`. Pure functions, unit-tested here.

use chrono::{Datelike, Duration, NaiveDate};

/// Cells counting 1 to 4 patients are suppressed (0 reveals no one).
pub const MIN_CELL: i64 = 5;

fn small(n: i64) -> bool {
    (1..MIN_CELL).contains(&n)
}

/// One figure of a statistic.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cell {
    Value(f64),
    /// Counts, or is computed from, fewer than five patients.
    Suppressed,
    /// Nothing to compute from (a rate over zero).
    Empty,
}

impl Cell {
    pub fn value(self) -> Option<f64> {
        match self {
            Self::Value(v) => Some(v),
            _ => None,
        }
    }

    /// As shown in the API and exports: `<5`, `-` or the figure in `unit`.
    pub fn text(self, unit: Unit) -> String {
        match self {
            Self::Suppressed => "<5".into(),
            Self::Empty => "-".into(),
            Self::Value(v) => match unit {
                Unit::Count => format!("{v:.0}"),
                Unit::Percent => format!("{:.1}%", v * 100.0),
                Unit::Ratio => format!("{v:.2}"),
                Unit::Minutes => format!("{v:.0}"),
                Unit::Yuan => format!("{:.2}", v / 100.0),
            },
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    /// A share, 0 to 1 (shown as a percentage).
    Percent,
    Ratio,
    Minutes,
    /// Held in fen, shown in yuan.
    Yuan,
}

impl Unit {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Count => "count",
            Self::Percent => "percent",
            Self::Ratio => "ratio",
            Self::Minutes => "minutes",
            Self::Yuan => "fen",
        }
    }
}

pub fn count(n: i64) -> Cell {
    if small(n) { Cell::Suppressed } else { Cell::Value(n as f64) }
}

/// `num / den` over patient counts.
pub fn rate(num: i64, den: i64) -> Cell {
    if den == 0 {
        Cell::Empty
    } else if small(num) || small(den) {
        Cell::Suppressed
    } else {
        Cell::Value(num as f64 / den as f64)
    }
}

/// An amount or share computed over `patients` visits: suppressed when they are fewer than five.
pub fn over(value: f64, patients: i64) -> Cell {
    if patients == 0 {
        Cell::Empty
    } else if small(patients) {
        Cell::Suppressed
    } else {
        Cell::Value(value)
    }
}

/// Values and how many times each occurs (minutes to a decision, say): a whole year's
/// decisions are a few hundred distinct minutes, not tens of thousands of values to copy and sort.
pub type Histogram = std::collections::BTreeMap<i64, i64>;

/// The histogram of `values`.
pub fn histogram(values: &[i64]) -> Histogram {
    let mut h = Histogram::new();
    for v in values {
        *h.entry(*v).or_default() += 1;
    }
    h
}

/// Nearest-rank quantile (`q` in 0..=1) of per-patient values, given as a histogram.
pub fn quantile(values: &Histogram, q: f64) -> Cell {
    let n: i64 = values.values().sum();
    if n == 0 {
        return Cell::Empty;
    }
    if small(n) {
        return Cell::Suppressed;
    }
    let rank = ((q * n as f64).ceil() as i64).clamp(1, n);
    let mut seen = 0;
    for (value, count) in values {
        seen += count;
        if seen >= rank {
            return Cell::Value(*value as f64);
        }
    }
    unreachable!("the rank is at most the number of values")
}

/// Registry figures of one disease at the end of a period.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Registry {
    /// Enrolled and not closed at the period's end.
    pub registered: i64,
    /// Of those, followed up at least four times in the twelve months to the period's end.
    pub standard: i64,
    /// Of those, followed up at least once in the twelve months.
    pub managed: i64,
    /// Of the managed, controlled at the last follow-up.
    pub controlled: i64,
}

/// What the KPIs are computed from, for one institution or a subtree, over a period.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Inputs {
    pub visits: i64,
    /// Outpatient and emergency visits at township and village level.
    pub grassroots_visits: i64,
    pub referrals_out: i64,
    pub referrals_up: i64,
    pub referrals_down: i64,
    /// Minutes from request to decision, per referral received and decided in the period.
    pub decision_minutes: Histogram,
    /// Up-referrals accepted in the period, and those of them whose loop closed (completed with
    /// a summary, or referred back down).
    pub loop_accepted: i64,
    pub loop_closed: i64,
    pub hypertension: Registry,
    pub diabetes: Registry,
    pub charges_fen: i64,
    pub drug_fen: i64,
}

impl Inputs {
    pub fn add(&mut self, o: &Inputs) {
        self.visits += o.visits;
        self.grassroots_visits += o.grassroots_visits;
        self.referrals_out += o.referrals_out;
        self.referrals_up += o.referrals_up;
        self.referrals_down += o.referrals_down;
        for (minutes, n) in &o.decision_minutes {
            *self.decision_minutes.entry(*minutes).or_default() += n;
        }
        self.loop_accepted += o.loop_accepted;
        self.loop_closed += o.loop_closed;
        for (a, b) in [(&mut self.hypertension, &o.hypertension), (&mut self.diabetes, &o.diabetes)] {
            a.registered += b.registered;
            a.standard += b.standard;
            a.managed += b.managed;
            a.controlled += b.controlled;
        }
        self.charges_fen += o.charges_fen;
        self.drug_fen += o.drug_fen;
    }
}

/// The KPI codes, their Chinese and English names and units, in dashboard order.
pub const KPIS: [(&str, &str, &str, Unit); 17] = [
    ("county_retention", "县域内就诊率", "County visit retention", Unit::Percent),
    ("grassroots_share", "基层诊疗量占比", "Grassroots visit share", Unit::Percent),
    ("visits", "诊疗人次", "Visits", Unit::Count),
    ("referrals_up", "上转人次", "Up-referrals", Unit::Count),
    ("referrals_down", "下转人次", "Down-referrals", Unit::Count),
    ("down_up_ratio", "下转/上转比", "Down/up ratio", Unit::Ratio),
    ("referrals_out", "转出县域人次", "Referrals out of the county", Unit::Count),
    ("decision_median_minutes", "转诊受理时间中位数(分钟)", "Referral decision time, median (min)", Unit::Minutes),
    ("decision_p90_minutes", "转诊受理时间P90(分钟)", "Referral decision time, p90 (min)", Unit::Minutes),
    ("closed_loop_rate", "转诊闭环率", "Closed-loop referral rate", Unit::Percent),
    ("hypertension_registered", "高血压在管人数", "Hypertension patients registered", Unit::Count),
    ("hypertension_standard_rate", "高血压规范管理率", "Hypertension standardized management rate", Unit::Percent),
    ("hypertension_control_rate", "高血压控制率", "Hypertension control rate", Unit::Percent),
    ("diabetes_standard_rate", "糖尿病规范管理率", "Diabetes standardized management rate", Unit::Percent),
    ("diabetes_control_rate", "糖尿病控制率", "Diabetes control rate", Unit::Percent),
    ("avg_outpatient_cost", "次均门诊费用(元)", "Average outpatient cost (yuan)", Unit::Yuan),
    ("drug_share", "药占比", "Drug revenue share", Unit::Percent),
];

/// Which rollups a computation reads: a series of one KPI reads only what that KPI needs (the
/// registry look-back is the costly one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sources {
    pub daily: bool,
    pub referrals: bool,
    pub registry: bool,
}

impl Sources {
    pub const ALL: Sources = Sources { daily: true, referrals: true, registry: true };

    /// What the KPI at `pos` in [`KPIS`] is computed from (see [`kpis`]).
    pub fn of_kpi(pos: usize) -> Sources {
        match pos {
            // County retention: visits and out-referrals.
            0 => Sources { daily: true, referrals: true, registry: false },
            1 | 2 | 15 | 16 => Sources { daily: true, referrals: false, registry: false },
            3..=9 => Sources { daily: false, referrals: true, registry: false },
            10..=14 => Sources { daily: false, referrals: false, registry: true },
            _ => Sources::ALL,
        }
    }
}

/// Every KPI of `i`, in the order of [`KPIS`].
pub fn kpis(i: &Inputs) -> Vec<Cell> {
    let ratio = |num: i64, den: i64| {
        if den == 0 {
            Cell::Empty
        } else if small(num) || small(den) {
            Cell::Suppressed
        } else {
            Cell::Value(num as f64 / den as f64)
        }
    };
    vec![
        rate(i.visits, i.visits + i.referrals_out),
        rate(i.grassroots_visits, i.visits),
        count(i.visits),
        count(i.referrals_up),
        count(i.referrals_down),
        ratio(i.referrals_down, i.referrals_up),
        count(i.referrals_out),
        quantile(&i.decision_minutes, 0.5),
        quantile(&i.decision_minutes, 0.9),
        rate(i.loop_closed, i.loop_accepted),
        count(i.hypertension.registered),
        rate(i.hypertension.standard, i.hypertension.registered),
        rate(i.hypertension.controlled, i.hypertension.managed),
        rate(i.diabetes.standard, i.diabetes.registered),
        rate(i.diabetes.controlled, i.diabetes.managed),
        over(if i.visits == 0 { 0.0 } else { i.charges_fen as f64 / i.visits as f64 }, i.visits),
        over(if i.charges_fen == 0 { 0.0 } else { i.drug_fen as f64 / i.charges_fen as f64 }, i.visits),
    ]
}

/// The registry window: the twelve months up to and including `end`.
pub fn window_start(end: NaiveDate) -> NaiveDate {
    end - Duration::days(365)
}

/// What the registry figures know of one enrollment once its latest follow-up is past.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnrollmentSummary {
    pub enrolled_on: NaiveDate,
    pub closed_on: Option<NaiveDate>,
    pub last_visit_on: Option<NaiveDate>,
    /// The fourth latest follow-up.
    pub fourth_visit_on: Option<NaiveDate>,
    pub last_controlled: bool,
}

/// The enrollment's part in the registry figures as steps: `(day, [registered, managed,
/// standard, controlled])`, each +1 where it starts counting and -1 where it stops, so that the
/// figures as at any day on or after its latest follow-up are the sum of the steps up to that
/// day. As at `to`: registered if enrolled by `to` and not closed by it; managed if its latest
/// follow-up lies in the window (`window_start(to)`, `to`], that is until 365 days after it;
/// standard likewise for its fourth latest; controlled if managed and controlled at the latest.
/// Days before its latest follow-up are the look-back's (`registry_sums_back`), not these steps'.
pub fn registry_steps(e: &EnrollmentSummary) -> Vec<(NaiveDate, [i64; 4])> {
    let start = e.last_visit_on.map_or(e.enrolled_on, |last| last.max(e.enrolled_on));
    let until = |end: Option<NaiveDate>| match (end, e.closed_on) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let expiry = |d: NaiveDate| d + Duration::days(365);
    let mut steps = Vec::new();
    let mut span = |k: usize, end: Option<NaiveDate>| {
        if end.is_some_and(|end| end <= start) {
            return;
        }
        let mut up = [0; 4];
        up[k] = 1;
        steps.push((start, up));
        if let Some(end) = end {
            let mut down = [0; 4];
            down[k] = -1;
            steps.push((end, down));
        }
    };
    span(0, e.closed_on);
    if let Some(last) = e.last_visit_on {
        span(1, until(Some(expiry(last))));
        if e.last_controlled {
            span(3, until(Some(expiry(last))));
        }
    }
    if let Some(fourth) = e.fourth_visit_on {
        span(2, until(Some(expiry(fourth))));
    }
    steps
}

/// Time-series buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grain {
    Day,
    Week,
    Month,
}

/// The first day of `day`'s bucket (weeks start on Monday).
pub fn bucket(day: NaiveDate, grain: Grain) -> NaiveDate {
    match grain {
        Grain::Day => day,
        Grain::Week => day - Duration::days(i64::from(day.weekday().num_days_from_monday())),
        Grain::Month => day.with_day(1).expect("the first of a month exists"),
    }
}

/// The buckets covering `from..=to`, each with its last day clipped to `to`.
pub fn buckets(from: NaiveDate, to: NaiveDate, grain: Grain) -> Vec<(NaiveDate, NaiveDate)> {
    let mut out = Vec::new();
    let mut start = from;
    while start <= to {
        let next = match grain {
            Grain::Day => start + Duration::days(1),
            Grain::Week => bucket(start, Grain::Week) + Duration::days(7),
            Grain::Month => {
                let b = bucket(start, Grain::Month);
                if b.month() == 12 {
                    NaiveDate::from_ymd_opt(b.year() + 1, 1, 1).expect("a date")
                } else {
                    NaiveDate::from_ymd_opt(b.year(), b.month() + 1, 1).expect("a date")
                }
            }
        };
        out.push((start, (next - Duration::days(1)).min(to)));
        start = next;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn small_cells_are_suppressed_and_zero_is_not() {
        assert_eq!(count(0), Cell::Value(0.0));
        for n in 1..5 {
            assert_eq!(count(n), Cell::Suppressed);
        }
        assert_eq!(count(5), Cell::Value(5.0));
        assert_eq!(rate(3, 10), Cell::Suppressed, "the numerator counts three patients");
        assert_eq!(rate(0, 10), Cell::Value(0.0));
        assert_eq!(rate(10, 4), Cell::Suppressed);
        assert_eq!(rate(0, 0), Cell::Empty);
        assert_eq!(quantile(&histogram(&[10, 20, 30, 40]), 0.5), Cell::Suppressed);
        assert_eq!(Cell::Suppressed.text(Unit::Percent), "<5");
        assert_eq!(Cell::Value(0.8333).text(Unit::Percent), "83.3%");
        assert_eq!(Cell::Value(2345.0).text(Unit::Yuan), "23.45");
    }

    proptest::proptest! {
        /// The registry steps summed up to any day on or after the latest follow-up give what
        /// the rule says of that enrollment on that day.
        #[test]
        fn registry_steps_sum_to_the_rule_on_any_later_day(
            enrolled in 0i64..800,
            closed in proptest::option::of(0i64..1500),
            visits in proptest::option::of((0i64..800, 0i64..600)),
            controlled: bool,
            after in 0i64..900,
        ) {
            let day = |n: i64| d("2024-01-01") + Duration::days(n);
            let (last, fourth) = match visits {
                Some((last, back)) => (Some(day(last)), (back < 500).then(|| day(last - back))),
                None => (None, None),
            };
            let e = EnrollmentSummary {
                enrolled_on: day(enrolled),
                closed_on: closed.map(day),
                last_visit_on: last,
                fourth_visit_on: fourth,
                last_controlled: controlled,
            };
            let to = last.unwrap_or(day(0)) + Duration::days(after);
            let mut sum = [0i64; 4];
            for (at, step) in registry_steps(&e) {
                if at <= to {
                    for k in 0..4 {
                        sum[k] += step[k];
                    }
                }
            }
            let window = window_start(to);
            let registered = e.enrolled_on <= to && e.closed_on.is_none_or(|c| c > to);
            let managed = registered && last.is_some_and(|l| l > window);
            let standard = registered && fourth.is_some_and(|f| f > window);
            let expected = [registered, managed, standard, managed && controlled].map(i64::from);
            proptest::prop_assert_eq!(sum, expected, "{:?} as at {}", e, to);
        }
    }

    #[test]
    fn quantiles_are_nearest_rank() {
        let v = [5, 1, 4, 2, 3, 10, 9, 8, 7, 6];
        assert_eq!(quantile(&histogram(&v), 0.5), Cell::Value(5.0));
        assert_eq!(quantile(&histogram(&v), 0.9), Cell::Value(9.0));
        assert_eq!(quantile(&histogram(&[7, 7, 7, 7, 7]), 0.9), Cell::Value(7.0));
        assert_eq!(quantile(&histogram(&[3, 1, 1, 2, 2, 2, 9, 9, 9, 9]), 0.5), Cell::Value(2.0));
        assert_eq!(quantile(&histogram(&[3, 1, 1, 2, 2, 2, 9, 9, 9, 9]), 0.6), Cell::Value(3.0));
        assert_eq!(quantile(&histogram(&[3, 1, 1, 2, 2, 2, 9, 9, 9, 9]), 0.0), Cell::Value(1.0));
        assert_eq!(quantile(&histogram(&[]), 0.5), Cell::Empty);
    }

    #[test]
    fn buckets_cover_the_period() {
        assert_eq!(bucket(d("2026-06-10"), Grain::Week), d("2026-06-08"));
        assert_eq!(bucket(d("2026-06-10"), Grain::Month), d("2026-06-01"));
        let weeks = buckets(d("2026-06-10"), d("2026-06-22"), Grain::Week);
        assert_eq!(
            weeks,
            [
                (d("2026-06-10"), d("2026-06-14")),
                (d("2026-06-15"), d("2026-06-21")),
                (d("2026-06-22"), d("2026-06-22"))
            ]
        );
        let months = buckets(d("2025-12-15"), d("2026-02-03"), Grain::Month);
        assert_eq!(months.len(), 3);
        assert_eq!(months[0], (d("2025-12-15"), d("2025-12-31")));
        assert_eq!(months[2], (d("2026-02-01"), d("2026-02-03")));
        assert_eq!(buckets(d("2026-01-01"), d("2026-01-03"), Grain::Day).len(), 3);
    }

    #[test]
    fn kpis_follow_the_design_definitions() {
        let i = Inputs {
            visits: 90,
            grassroots_visits: 60,
            referrals_out: 10,
            referrals_up: 20,
            referrals_down: 10,
            decision_minutes: histogram(&[30, 60, 90, 120, 150, 600]),
            loop_accepted: 10,
            loop_closed: 8,
            hypertension: Registry { registered: 50, standard: 30, managed: 40, controlled: 20 },
            diabetes: Registry { registered: 6, standard: 3, managed: 6, controlled: 5 },
            charges_fen: 900_000,
            drug_fen: 300_000,
        };
        let k = kpis(&i);
        let v = |code: &str| k[KPIS.iter().position(|(c, ..)| *c == code).unwrap()];
        assert_eq!(v("county_retention"), Cell::Value(0.9));
        assert_eq!(v("grassroots_share"), Cell::Value(60.0 / 90.0));
        assert_eq!(v("down_up_ratio"), Cell::Value(0.5));
        assert_eq!(v("decision_median_minutes"), Cell::Value(90.0));
        assert_eq!(v("decision_p90_minutes"), Cell::Value(600.0));
        assert_eq!(v("closed_loop_rate"), Cell::Value(0.8));
        assert_eq!(v("hypertension_standard_rate"), Cell::Value(0.6));
        assert_eq!(v("hypertension_control_rate"), Cell::Value(0.5));
        assert_eq!(v("diabetes_standard_rate"), Cell::Suppressed, "three patients");
        assert_eq!(v("diabetes_control_rate"), Cell::Value(5.0 / 6.0));
        assert_eq!(v("avg_outpatient_cost"), Cell::Value(10_000.0));
        assert_eq!(v("drug_share"), Cell::Value(1.0 / 3.0));
    }
}
