//! Statistics API: the national KPIs for a period with one level of drill-down, a KPI as a time
//! series, and the same table as CSV (UTF-8 with BOM) and XLSX with Chinese headers. Aggregates
//! only; cells under five patients read `<5` everywhere.

use chrono::{Datelike, NaiveDate};
use poem::web::Data;
use poem_openapi::param::Query;
use poem_openapi::payload::{Binary, Json};
use poem_openapi::{ApiResponse, Enum, Object, OpenApi};
use uuid::Uuid;

use super::domain::{Cell, Grain, Inputs, KPIS, Sources, kpis};
use super::service::{self, Report};
use crate::identity::ctx::Auth;
use crate::platform::AppError;
use crate::platform::api_tags::ApiTags;
use crate::platform::codes;
use crate::platform::state::AppState;

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
    /// One level down: the community's lead hospitals, a hospital's townships, a township's villages
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
                kpis: cells(&c.inputs),
            })
            .collect(),
    }
}

/// The report as rows for a spreadsheet: the node first, then its children.
fn table(r: &KpiReport) -> (Vec<String>, Vec<Vec<String>>) {
    let mut header = vec!["机构".to_string(), "统计期间".to_string()];
    header.extend(r.kpis.iter().map(|k| k.name.clone()));
    let span = format!("{} 至 {}", r.from, r.to);
    let mut rows = vec![{
        let mut row = vec![r.name.clone(), span.clone()];
        row.extend(r.kpis.iter().map(|k| k.text.clone()));
        row
    }];
    for c in &r.children {
        let mut row = vec![c.institution_name.clone(), span.clone()];
        row.extend(c.kpis.iter().map(|k| k.text.clone()));
        rows.push(row);
    }
    (header, rows)
}

/// The report as CSV for Excel: UTF-8 with a BOM, Chinese headers.
pub fn csv(r: &KpiReport) -> Vec<u8> {
    let (header, rows) = table(r);
    crate::platform::csv::document(std::iter::once(header).chain(rows))
}

/// The report as an Excel workbook with Chinese headers.
pub fn xlsx(r: &KpiReport) -> Result<Vec<u8>, AppError> {
    let (header, rows) = table(r);
    let mut book = rust_xlsxwriter::Workbook::new();
    let sheet = book.add_worksheet();
    let xl = |e: rust_xlsxwriter::XlsxError| AppError::internal(anyhow::anyhow!(e));
    sheet.set_name("医共体指标").map_err(xl)?;
    let bold = rust_xlsxwriter::Format::new().set_bold();
    for (c, h) in header.iter().enumerate() {
        sheet.write_string_with_format(0, c as u16, h, &bold).map_err(xl)?;
    }
    for (r_i, row) in rows.iter().enumerate() {
        for (c, v) in row.iter().enumerate() {
            sheet.write_string(r_i as u32 + 1, c as u16, v).map_err(xl)?;
        }
    }
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

    /// The KPI table as CSV for Excel (UTF-8 with BOM, Chinese headers)
    #[oai(path = "/kpis.csv", method = "get", operation_id = "statistics_kpis_csv")]
    async fn kpis_csv(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        from: Query<Option<NaiveDate>>,
        to: Query<Option<NaiveDate>>,
        institution_id: Query<Option<Uuid>>,
    ) -> Result<CsvExport, AppError> {
        let (from, to) = period(state.clock.china_today(), from.0, to.0);
        let r = to_dto(service::report(&state, &auth.0, from, to, institution_id.0).await?);
        Ok(CsvExport::Ok(Binary(csv(&r)), format!("attachment; filename=\"kpis-{from}-{to}.csv\"")))
    }

    /// The KPI table as an Excel workbook (Chinese headers)
    #[oai(path = "/kpis.xlsx", method = "get", operation_id = "statistics_kpis_xlsx")]
    async fn kpis_xlsx(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        from: Query<Option<NaiveDate>>,
        to: Query<Option<NaiveDate>>,
        institution_id: Query<Option<Uuid>>,
    ) -> Result<XlsxExport, AppError> {
        let (from, to) = period(state.clock.china_today(), from.0, to.0);
        let r = to_dto(service::report(&state, &auth.0, from, to, institution_id.0).await?);
        Ok(XlsxExport::Ok(Binary(xlsx(&r)?), format!("attachment; filename=\"kpis-{from}-{to}.xlsx\"")))
    }
}
