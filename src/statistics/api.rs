//! Statistics API: the national KPIs for a period with one level of drill-down, a KPI as a time
//! series, and the same table as CSV (UTF-8 with BOM) and XLSX with Chinese headers. Aggregates
//! only; cells under five patients read `<5` everywhere.

use chrono::{Datelike, NaiveDate};
use poem::web::Data;
use poem_openapi::param::Query;
use poem_openapi::payload::{Binary, Json};
use poem_openapi::{ApiResponse, Enum, Object, OpenApi};
use uuid::Uuid;

use super::domain::{Cell, Grain, Inputs, KPIS, Sources, Unit, kpis};
use super::service::{self, Report};
use crate::identity::ctx::Auth;
use crate::platform::AppError;
use crate::platform::api_tags::ApiTags;
use crate::platform::codes;
use crate::platform::state::AppState;
use crate::tenancy::service::InstitutionInfo;

#[derive(Object, Debug, Clone)]
pub struct KpiCell {
    /// e.g. county_retention
    pub code: String,
    pub name: String,
    pub name_en: String,
    /// count, percent (a share from 0 to 1), ratio, minutes or fen
    pub unit: String,
    /// Absent when suppressed (fewer than five patients) or when there is nothing to compute from
    #[oai(skip_serializing_if_is_none)]
    pub value: Option<f64>,
    /// As displayed: `<5` when suppressed, `-` when empty
    pub text: String,
    pub suppressed: bool,
}

fn cells(i: &Inputs) -> Vec<KpiCell> {
    kpis(i)
        .into_iter()
        .zip(KPIS)
        .map(|(c, (code, name, name_en, unit))| KpiCell {
            code: code.into(),
            name: name.into(),
            name_en: name_en.into(),
            unit: unit.as_str().into(),
            value: c.value(),
            text: c.text(unit),
            suppressed: c == Cell::Suppressed,
        })
        .collect()
}

#[derive(Object, Debug, Clone)]
pub struct NodeKpis {
    pub institution_id: Uuid,
    pub institution_name: String,
    /// county_hospital, township_health_centre or village_clinic
    pub kind: String,
    /// True for the reported institution's own figures, without the institutions under it; the
    /// other rows are each a child with its whole subtree. The rows add up to the report.
    pub own: bool,
    pub kpis: Vec<KpiCell>,
}

#[derive(Object, Debug, Clone)]
pub struct KpiReport {
    pub from: NaiveDate,
    pub to: NaiveDate,
    /// The institution whose subtree this is; absent for the whole community
    #[oai(skip_serializing_if_is_none)]
    pub institution_id: Option<Uuid>,
    pub name: String,
    pub kpis: Vec<KpiCell>,
    /// One level down: for the community, each lead hospital on its own and its townships; for an
    /// institution with children, itself alone and then each child with its subtree
    pub children: Vec<NodeKpis>,
}

#[derive(Object, Debug, Clone)]
pub struct SeriesPoint {
    pub from: NaiveDate,
    pub to: NaiveDate,
    #[oai(skip_serializing_if_is_none)]
    pub value: Option<f64>,
    pub text: String,
    pub suppressed: bool,
}

#[derive(Object, Debug, Clone)]
pub struct KpiSeries {
    pub kpi: String,
    pub name: String,
    pub unit: String,
    pub grain: String,
    pub points: Vec<SeriesPoint>,
}

#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[oai(rename_all = "snake_case")]
pub enum GrainDto {
    Day,
    Week,
    Month,
}

#[derive(ApiResponse)]
pub enum KpiResponse {
    #[oai(status = 200)]
    Ok(Json<KpiReport>),
}
#[derive(ApiResponse)]
pub enum SeriesResponse {
    #[oai(status = 200)]
    Ok(Json<KpiSeries>),
}
#[derive(ApiResponse)]
pub enum CsvExport {
    /// UTF-8 CSV with a byte-order mark and Chinese headers
    #[oai(status = 200, content_type = "text/csv; charset=utf-8")]
    Ok(Binary<Vec<u8>>, #[oai(header = "Content-Disposition")] String),
}
#[derive(ApiResponse)]
pub enum XlsxExport {
    /// An Excel workbook with Chinese headers
    #[oai(status = 200, content_type = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")]
    Ok(Binary<Vec<u8>>, #[oai(header = "Content-Disposition")] String),
}

pub fn period(today: NaiveDate, from: Option<NaiveDate>, to: Option<NaiveDate>) -> (NaiveDate, NaiveDate) {
    let to = to.unwrap_or(today);
    let from = from.unwrap_or_else(|| NaiveDate::from_ymd_opt(to.year(), 1, 1).expect("1 January exists"));
    (from, to)
}

pub fn to_dto(r: Report) -> KpiReport {
    KpiReport {
        from: r.from,
        to: r.to,
        institution_id: r.node.as_ref().map(|n| n.id),
        name: r.node.as_ref().map(|n| n.name.clone()).unwrap_or_else(|| "全医共体".into()),
        kpis: cells(&r.totals),
        children: r
            .children
            .iter()
            .map(|c| NodeKpis {
                institution_id: c.institution.id,
                institution_name: c.institution.name.clone(),
                kind: c.institution.kind.to_string(),
                own: c.own,
                kpis: cells(&c.inputs),
            })
            .collect(),
    }
}

/// The language of an export: its headers, institution names, period and sheet name.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExportLang {
    #[default]
    #[oai(rename = "zh-CN")]
    ZhCn,
    #[oai(rename = "en")]
    En,
}

/// One row of an export: the institution, the period, and each KPI's cell and unit.
struct ExportRow {
    name: String,
    span: String,
    cells: Vec<(Cell, Unit)>,
}

/// The report as rows for a spreadsheet, in `lang`: the node first, then its level's rows.
fn table(r: &Report, lang: ExportLang) -> (Vec<String>, Vec<ExportRow>) {
    let en = lang == ExportLang::En;
    let mut header: Vec<String> =
        if en { vec!["Institution".into(), "Period".into()] } else { vec!["机构".into(), "统计期间".into()] };
    header.extend(KPIS.iter().map(|(_, zh, en_name, _)| if en { en_name } else { zh }.to_string()));
    let span = if en { format!("{} to {}", r.from, r.to) } else { format!("{} 至 {}", r.from, r.to) };
    let name = |i: &InstitutionInfo| if en { i.name_en.clone().unwrap_or(i.name.clone()) } else { i.name.clone() };
    let row = |name: String, inputs: &Inputs| ExportRow {
        name,
        span: span.clone(),
        cells: kpis(inputs).into_iter().zip(KPIS).map(|(c, k)| (c, k.3)).collect(),
    };
    let whole = if en { "Whole community".to_string() } else { "全医共体".to_string() };
    let mut rows = vec![row(r.node.as_ref().map(name).unwrap_or(whole), &r.totals)];
    for c in &r.children {
        let n = name(&c.institution);
        let n = match (c.own, en) {
            (false, _) => n,
            (true, true) => format!("{n} (itself)"),
            (true, false) => format!("{n}（本级）"),
        };
        rows.push(row(n, &c.inputs));
    }
    (header, rows)
}

/// The report as CSV for Excel: UTF-8 with a BOM, headers in `lang`.
pub fn csv(r: &Report, lang: ExportLang) -> Vec<u8> {
    let (header, rows) = table(r, lang);
    let lines = rows.into_iter().map(|x| {
        let mut line = vec![x.name, x.span];
        line.extend(x.cells.iter().map(|(c, u)| c.text(*u)));
        line
    });
    crate::platform::csv::document(std::iter::once(header).chain(lines))
}

/// The report as an Excel workbook, headers in `lang`. Figures are numbers (percentages as
/// fractions formatted `0.0%`, yuan as `0.00`), so that they sum and chart in Excel; a
/// suppressed cell is the text `<5` and an empty one `-`, as in the API.
pub fn xlsx(r: &Report, lang: ExportLang) -> Result<Vec<u8>, AppError> {
    use rust_xlsxwriter::Format;
    let (header, rows) = table(r, lang);
    let mut book = rust_xlsxwriter::Workbook::new();
    let sheet = book.add_worksheet();
    let xl = |e: rust_xlsxwriter::XlsxError| AppError::internal(anyhow::anyhow!(e));
    sheet.set_name(if lang == ExportLang::En { "Community KPIs" } else { "医共体指标" }).map_err(xl)?;
    let bold = Format::new().set_bold();
    let (count, percent, ratio, yuan) = (
        Format::new().set_num_format("0"),
        Format::new().set_num_format("0.0%"),
        Format::new().set_num_format("0.00"),
        Format::new().set_num_format("0.00"),
    );
    for (c, h) in header.iter().enumerate() {
        sheet.write_string_with_format(0, c as u16, h, &bold).map_err(xl)?;
    }
    for (i, row) in rows.iter().enumerate() {
        let at = i as u32 + 1;
        sheet.write_string(at, 0, &row.name).map_err(xl)?;
        sheet.write_string(at, 1, &row.span).map_err(xl)?;
        for (c, (cell, unit)) in row.cells.iter().enumerate() {
            let col = c as u16 + 2;
            match (cell, unit) {
                (Cell::Value(v), Unit::Count | Unit::Minutes) => sheet.write_number_with_format(at, col, *v, &count),
                (Cell::Value(v), Unit::Percent) => sheet.write_number_with_format(at, col, *v, &percent),
                (Cell::Value(v), Unit::Ratio) => sheet.write_number_with_format(at, col, *v, &ratio),
                (Cell::Value(v), Unit::Yuan) => sheet.write_number_with_format(at, col, *v / 100.0, &yuan),
                _ => sheet.write_string(at, col, cell.text(*unit)),
            }
            .map_err(xl)?;
        }
    }
    sheet.set_column_width(0, 24).map_err(xl)?;
    sheet.set_column_width(1, 24).map_err(xl)?;
    book.save_to_buffer().map_err(xl)
}

pub struct StatisticsApi;

#[OpenApi(prefix_path = "/api/v1/statistics", tag = "ApiTags::Statistics")]
impl StatisticsApi {
    /// The national medical-community KPIs for a period (default this year to today) for the
    /// community or an institution's subtree, with its children for drill-down
    #[oai(path = "/kpis", method = "get", operation_id = "statistics_kpis")]
    async fn kpis(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        from: Query<Option<NaiveDate>>,
        to: Query<Option<NaiveDate>>,
        institution_id: Query<Option<Uuid>>,
    ) -> Result<KpiResponse, AppError> {
        let (from, to) = period(state.clock.china_today(), from.0, to.0);
        let r = service::report(&state, &auth.0, from, to, institution_id.0).await?;
        Ok(KpiResponse::Ok(Json(to_dto(r))))
    }

    /// One KPI as a time series by day, week or month
    #[oai(path = "/series", method = "get", operation_id = "statistics_series")]
    #[allow(clippy::too_many_arguments)] // poem-openapi takes each query parameter as an argument
    async fn series(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        kpi: Query<String>,
        from: Query<Option<NaiveDate>>,
        to: Query<Option<NaiveDate>>,
        grain: Query<Option<GrainDto>>,
        institution_id: Query<Option<Uuid>>,
    ) -> Result<SeriesResponse, AppError> {
        let Some(pos) = KPIS.iter().position(|(c, ..)| *c == kpi.0) else {
            return Err(AppError::new(codes::KPI_UNKNOWN, "no such KPI; see /statistics/kpis for the codes"));
        };
        let (from, to) = period(state.clock.china_today(), from.0, to.0);
        let (g, gname) = match grain.0.unwrap_or(GrainDto::Month) {
            GrainDto::Day => (Grain::Day, "day"),
            GrainDto::Week => (Grain::Week, "week"),
            GrainDto::Month => (Grain::Month, "month"),
        };
        let points = service::series(&state, &auth.0, from, to, g, institution_id.0, Sources::of_kpi(pos)).await?;
        let (code, name, _, unit) = KPIS[pos];
        Ok(SeriesResponse::Ok(Json(KpiSeries {
            kpi: code.into(),
            name: name.into(),
            unit: unit.as_str().into(),
            grain: gname.into(),
            points: points
                .into_iter()
                .map(|b| {
                    let c = kpis(&b.inputs)[pos];
                    SeriesPoint {
                        from: b.from,
                        to: b.to,
                        value: c.value(),
                        text: c.text(unit),
                        suppressed: c == Cell::Suppressed,
                    }
                })
                .collect(),
        })))
    }

    /// The KPI table as CSV for Excel (UTF-8 with BOM; Chinese headers unless `lang=en`)
    #[oai(path = "/kpis.csv", method = "get", operation_id = "statistics_kpis_csv")]
    async fn kpis_csv(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        from: Query<Option<NaiveDate>>,
        to: Query<Option<NaiveDate>>,
        institution_id: Query<Option<Uuid>>,
        /// zh-CN (the default) or en: the language of headers, names and the period
        lang: Query<Option<ExportLang>>,
    ) -> Result<CsvExport, AppError> {
        let (from, to) = period(state.clock.china_today(), from.0, to.0);
        let r = service::report(&state, &auth.0, from, to, institution_id.0).await?;
        let body = csv(&r, lang.0.unwrap_or_default());
        Ok(CsvExport::Ok(Binary(body), format!("attachment; filename=\"kpis-{from}-{to}.csv\"")))
    }

    /// The KPI table as an Excel workbook (figures as numbers; Chinese headers unless `lang=en`)
    #[oai(path = "/kpis.xlsx", method = "get", operation_id = "statistics_kpis_xlsx")]
    async fn kpis_xlsx(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        from: Query<Option<NaiveDate>>,
        to: Query<Option<NaiveDate>>,
        institution_id: Query<Option<Uuid>>,
        /// zh-CN (the default) or en: the language of headers, names and the period
        lang: Query<Option<ExportLang>>,
    ) -> Result<XlsxExport, AppError> {
        let (from, to) = period(state.clock.china_today(), from.0, to.0);
        let r = service::report(&state, &auth.0, from, to, institution_id.0).await?;
        let body = xlsx(&r, lang.0.unwrap_or_default())?;
        Ok(XlsxExport::Ok(Binary(body), format!("attachment; filename=\"kpis-{from}-{to}.xlsx\"")))
    }
}
