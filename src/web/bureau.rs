//! The bureau official's dashboard: KPI tiles, four charts, drill-down by institution and the
//! exports, all over `statistics::service`. Aggregates only, suppressed below five patients.

use askama::Template;
use chrono::NaiveDate;
use poem::http::StatusCode;
use poem::web::{Data, Query};
use poem::{Request, Response, handler};
use serde::Deserialize;
use uuid::Uuid;

use super::charts::{Axis, Chart, Kind, Point, chart};
use super::{Locale, Page, error_page, render, signed_in};
use crate::identity::ctx::Perm;
use crate::platform::AppError;
use crate::platform::codes;
use crate::platform::state::AppState;
use crate::statistics::domain::{Cell, Grain, Inputs, KPIS, Sources, Unit, kpis};
use crate::statistics::{api as stats_api, service as stats};
use crate::tenancy::domain::InstitutionKind;

/// The dashboard's filter, as the period form and the drill-down links send it.
#[derive(Deserialize, Default)]
pub struct Filter {
    from: Option<String>,
    to: Option<String>,
    institution: Option<String>,
}

struct Parsed {
    from: NaiveDate,
    to: NaiveDate,
    institution: Option<Uuid>,
}

fn parse(today: NaiveDate, f: &Filter) -> Result<Parsed, AppError> {
    let date = |s: &Option<String>| -> Result<Option<NaiveDate>, AppError> {
        match s.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            None => Ok(None),
            Some(s) => NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .map(Some)
                .map_err(|_| AppError::new(codes::PERIOD_INVALID, "dates are YYYY-MM-DD")),
        }
    };
    let (from, to) = stats_api::period(today, date(&f.from)?, date(&f.to)?);
    let institution = match f.institution.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => {
            Some(Uuid::parse_str(s).map_err(|_| AppError::new(codes::INSTITUTION_NOT_FOUND, "no such institution"))?)
        }
    };
    Ok(Parsed { from, to, institution })
}

impl Parsed {
    /// The query string of this filter, for links and exports.
    fn query(&self, institution: Option<Uuid>) -> String {
        let mut q = format!("from={}&to={}", self.from, self.to);
        if let Some(i) = institution {
            q.push_str(&format!("&institution={i}"));
        }
        q
    }
}

pub struct Tile {
    pub code: &'static str,
    pub name: String,
    pub text: String,
    pub suppressed: bool,
}

pub struct ChildRow {
    pub name: String,
    pub kind: String,
    pub drill: Option<String>,
    pub cells: Vec<String>,
}

#[derive(Template)]
#[template(path = "bureau.html", config = "src/web/askama.toml")]
struct Dashboard {
    l: Locale,
    p: Page,
    title: String,
    period: String,
    from: NaiveDate,
    to: NaiveDate,
    institution: Option<Uuid>,
    up: Option<String>,
    tiles: Vec<Tile>,
    child_head: Vec<String>,
    children: Vec<ChildRow>,
    charts: Vec<Chart>,
    export_query: String,
}

/// The KPIs shown as columns of the drill-down table (the tiles show all of them).
const CHILD_COLUMNS: [&str; 6] = [
    "visits",
    "grassroots_share",
    "referrals_up",
    "referrals_down",
    "hypertension_standard_rate",
    "diabetes_standard_rate",
];

fn tiles(l: Locale, i: &Inputs) -> Vec<Tile> {
    kpis(i)
        .into_iter()
        .zip(KPIS)
        .map(|(c, (code, _, _, unit))| Tile {
            code,
            name: l.t(&format!("kpi-{code}")),
            text: c.text(unit),
            suppressed: c == Cell::Suppressed,
        })
        .collect()
}

fn kpi_pos(code: &str) -> usize {
    KPIS.iter().position(|(c, ..)| *c == code).expect("a known KPI code")
}

/// A cell as a chart point: percentages drawn in percent, suppressed and empty cells not drawn,
/// and the text as everywhere else (`<5`, `-`).
fn plot(c: Cell, unit: Unit) -> Point {
    (c.value().map(|v| if unit == Unit::Percent { (v * 100.0) as f32 } else { v as f32 }), c.text(unit))
}

#[handler]
pub async fn dashboard(req: &Request, state: Data<&AppState>, filter: Query<Filter>) -> Response {
    let p = signed_in!(req, &state);
    match build(&state, p, &filter.0).await {
        Ok(r) => r,
        Err((l, e)) => error_page(l, &e, "/app/bureau"),
    }
}

async fn build(state: &AppState, p: Page, f: &Filter) -> Result<Response, (Locale, AppError)> {
    let l = p.l;
    let fail = |e: AppError| (l, e);
    p.ctx.require(Perm::StatisticsRead).map_err(fail)?;
    let q = parse(state.clock.china_today(), f).map_err(fail)?;
    let report = stats::report(state, &p.ctx, q.from, q.to, q.institution).await.map_err(fail)?;
    let grain = grain_of(q.to - q.from);
    let sources = Sources { daily: true, referrals: true, registry: false };
    let series = stats::series(state, &p.ctx, q.from, q.to, grain, q.institution, sources).await.map_err(fail)?;
    let title = match &report.node {
        Some(n) => p.name_of(n),
        None => l.t("dash-whole"),
    };
    let up = report.node.as_ref().map(|_| format!("/app/bureau?{}", q.query(report.listed_under)));
    let page = Dashboard {
        l,
        title,
        period: l.t_with("period-span", &[("from", q.from.to_string()), ("to", q.to.to_string())]),
        from: q.from,
        to: q.to,
        institution: q.institution,
        up,
        tiles: tiles(l, &report.totals),
        child_head: CHILD_COLUMNS.iter().map(|c| l.t(&format!("kpi-{c}"))).collect(),
        children: report.children.iter().map(|c| child_row(&p, &q, c)).collect(),
        charts: charts(&p, grain, &series, &report),
        export_query: q.query(q.institution),
        p,
    };
    Ok(render(StatusCode::OK, &page))
}

/// Days for a month, weeks for half a year, months beyond.
fn grain_of(span: chrono::Duration) -> Grain {
    match span.num_days() {
        ..=31 => Grain::Day,
        32..=182 => Grain::Week,
        _ => Grain::Month,
    }
}

/// A row's name: the institution, or "the institution (itself)" for its own figures.
fn row_name(p: &Page, c: &stats::ChildReport) -> String {
    let name = p.name_of(&c.institution);
    if c.own { p.l.t_with("dash-own", &[("name", name)]) } else { name }
}

/// A row of the node's level in the drill-down table: the node alone (not drilled into), then
/// each child; villages have no children to drill into.
fn child_row(p: &Page, q: &Parsed, c: &stats::ChildReport) -> ChildRow {
    let cells = kpis(&c.inputs);
    let i = &c.institution;
    ChildRow {
        name: row_name(p, c),
        kind: p.l.t(&format!("kind-{}", i.kind.as_str())),
        drill: (!c.own && i.kind != InstitutionKind::VillageClinic)
            .then(|| format!("/app/bureau?{}", q.query(Some(i.id)))),
        cells: CHILD_COLUMNS
            .iter()
            .map(|code| {
                let pos = kpi_pos(code);
                cells[pos].text(KPIS[pos].3)
            })
            .collect(),
    }
}

/// Visits over time, referrals up and down over time, the grassroots share per child, and the
/// standard-management and control rates of the two registries.
fn charts(p: &Page, grain: Grain, series: &[stats::Bucket], report: &stats::Report) -> Vec<Chart> {
    let l = p.l;
    let labels: Vec<String> = series
        .iter()
        .map(|b| match grain {
            Grain::Month => b.from.format("%Y-%m").to_string(),
            _ => b.from.format("%m-%d").to_string(),
        })
        .collect();
    let of = |code: &str| {
        let pos = kpi_pos(code);
        series.iter().map(|b| plot(kpis(&b.inputs)[pos], KPIS[pos].3)).collect::<Vec<_>>()
    };
    let totals = kpis(&report.totals);
    let total = |code: &str| {
        let pos = kpi_pos(code);
        plot(totals[pos], KPIS[pos].3)
    };
    let share = kpi_pos("grassroots_share");
    vec![
        chart(
            "visits",
            Kind::Line,
            Axis::Count,
            l.t("chart-visits"),
            l.t("month"),
            labels.clone(),
            vec![(l.t("series-visits"), of("visits"))],
        ),
        chart(
            "referrals",
            Kind::Bar,
            Axis::Count,
            l.t("chart-referrals"),
            l.t("month"),
            labels,
            vec![(l.t("series-up"), of("referrals_up")), (l.t("series-down"), of("referrals_down"))],
        ),
        chart(
            "grassroots",
            Kind::HorizontalBar,
            Axis::Percent,
            l.t("chart-grassroots"),
            l.t("dash-institution"),
            report.children.iter().map(|c| row_name(p, c)).collect(),
            vec![(
                l.t("series-share"),
                report.children.iter().map(|c| plot(kpis(&c.inputs)[share], Unit::Percent)).collect(),
            )],
        ),
        chart(
            "management",
            Kind::Bar,
            Axis::Percent,
            l.t("chart-management"),
            l.t("dash-institution"),
            vec![l.t("disease-hypertension"), l.t("disease-diabetes")],
            vec![
                (l.t("series-standard"), vec![total("hypertension_standard_rate"), total("diabetes_standard_rate")]),
                (l.t("series-control"), vec![total("hypertension_control_rate"), total("diabetes_control_rate")]),
            ],
        ),
    ]
}

async fn export(req: &Request, state: &AppState, f: &Filter, xlsx: bool) -> Response {
    let p = signed_in!(req, state);
    let l = p.l;
    let made = async {
        let q = parse(state.clock.china_today(), f)?;
        let r = stats::report(state, &p.ctx, q.from, q.to, q.institution).await?;
        // The export speaks the page's language.
        let lang = if l == Locale::En { stats_api::ExportLang::En } else { stats_api::ExportLang::ZhCn };
        let (bytes, ext, mime) = if xlsx {
            (stats_api::xlsx(&r, lang)?, "xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
        } else {
            (stats_api::csv(&r, lang), "csv", "text/csv; charset=utf-8")
        };
        Ok::<_, AppError>(
            Response::builder()
                .content_type(mime)
                .header("content-disposition", format!("attachment; filename=\"kpis-{}-{}.{ext}\"", q.from, q.to))
                .body(bytes),
        )
    }
    .await;
    made.unwrap_or_else(|e| error_page(l, &e, "/app/bureau"))
}

#[handler]
pub async fn export_csv(req: &Request, state: Data<&AppState>, filter: Query<Filter>) -> Response {
    export(req, &state, &filter.0, false).await
}

#[handler]
pub async fn export_xlsx(req: &Request, state: Data<&AppState>, filter: Query<Filter>) -> Response {
    export(req, &state, &filter.0, true).await
}
