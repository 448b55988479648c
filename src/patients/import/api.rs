//! Import uploads for the community's administrator: `POST /imports/residents` (multipart: the
//! file, an optional TOML mapping, an optional institution column) answers 202 with a job id at
//! once; `GET /imports/{id}` reports progress and counts; the dedupe report downloads as CSV or
//! XLSX. A file that cannot be read, or lacks a required column, is refused (422) before a job
//! exists.

use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::{Binary, Json};
use poem_openapi::types::multipart::Upload;
use poem_openapi::{ApiResponse, Enum, Multipart, Object, OpenApi};
use uuid::Uuid;

use super::report::Counts;
use crate::identity::ctx::{Auth, Perm};
use crate::patients::entity::import_job;
use crate::platform::api_tags::ApiTags;
use crate::platform::audit::Purpose;
use crate::platform::state::AppState;
use crate::platform::{AppError, codes};

#[derive(Multipart, Debug)]
pub struct ResidentsUpload {
    /// CSV (UTF-8 or GB18030) or XLSX with a header row
    file: Upload,
    /// The TOML mapping of columns and encoding (see docs/operations.md)
    #[oai(validator(max_length = 4000))]
    mapping: Option<String>,
    /// The column holding each row's institution code (overrides the mapping)
    #[oai(validator(max_length = 60))]
    institution_column: Option<String>,
}

#[derive(Object, Debug)]
pub struct ImportJob {
    pub id: Uuid,
    pub file_name: String,
    /// `running`, `done` or `failed`
    pub status: String,
    pub total_rows: i64,
    pub processed_rows: i64,
    /// Rows processed, 0 to 100
    pub percent: u8,
    /// Once done
    pub counts: Option<Counts>,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

fn to_dto(j: import_job::Model) -> Result<ImportJob, AppError> {
    let counts = super::report_of(&j)?.map(|r| r.counts);
    let percent = if j.total_rows == 0 { 100 } else { (j.processed_rows * 100 / j.total_rows).clamp(0, 100) as u8 };
    Ok(ImportJob {
        id: j.id,
        file_name: j.file_name,
        status: j.status,
        total_rows: j.total_rows,
        processed_rows: j.processed_rows,
        percent,
        counts,
        error: j.error,
        created_at: j.created_at,
        finished_at: j.finished_at,
    })
}

#[derive(ApiResponse)]
pub enum Started {
    /// The import runs; follow it at `GET /imports/{id}`
    #[oai(status = 202)]
    Accepted(Json<ImportJob>),
}

#[derive(ApiResponse)]
pub enum JobResponse {
    #[oai(status = 200)]
    Ok(Json<ImportJob>),
}

#[derive(ApiResponse)]
pub enum JobsResponse {
    #[oai(status = 200)]
    Ok(Json<Vec<ImportJob>>),
}

#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[oai(rename_all = "lowercase")]
pub enum ReportFormat {
    Csv,
    Xlsx,
}

#[derive(ApiResponse)]
pub enum ReportFile {
    /// The dedupe report (Chinese headers): CSV with a BOM, or an Excel workbook
    #[oai(status = 200, content_type = "application/octet-stream")]
    Ok(Binary<Vec<u8>>, #[oai(header = "Content-Type")] String, #[oai(header = "Content-Disposition")] String),
}

pub struct ImportsApi;

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::Patients")]
impl ImportsApi {
    /// Start importing legacy residents (tenant administrator)
    #[oai(path = "/imports/residents", method = "post", operation_id = "imports_residents_start")]
    async fn start(&self, state: Data<&AppState>, auth: Auth, upload: ResidentsUpload) -> Result<Started, AppError> {
        let ctx = &auth.0;
        ctx.require(Perm::TenantAdmin)?;
        let name = upload.file.file_name().unwrap_or("upload").to_string();
        let bytes = upload.file.into_vec().await.map_err(|e| AppError::new(codes::BAD_REQUEST, e.to_string()))?;
        let mapping = match &upload.mapping {
            Some(text) => super::mapping::parse(text)?,
            None => super::Mapping::default(),
        };
        let (table, at) = super::prepare(&bytes, &mapping, upload.institution_column.as_deref())?;
        let job = super::create_job(&state.db, ctx.tenant, &name, table.rows.len() as u64, Some(ctx.user)).await?;
        let opts =
            super::Options { job, batch: 1000, actor: Some((ctx.user, ctx.institution)), stop_after_batches: None };
        let (db, pii, tenant, config) = (state.db.clone(), state.pii.clone(), ctx.tenant, state.config.clone());
        tokio::spawn(async move {
            if let Err(e) = super::execute(&db, &config, &pii, tenant, &table, &at, &opts, &|_, _| {}).await {
                tracing::warn!(job = %opts.job, error = %e.reason(), "import failed");
            }
        });
        Ok(Started::Accepted(Json(to_dto(super::job(&state.db, ctx.tenant, job).await?)?)))
    }

    /// Imports of the community, newest first
    #[oai(path = "/imports", method = "get", operation_id = "imports_list")]
    async fn list(&self, state: Data<&AppState>, auth: Auth) -> Result<JobsResponse, AppError> {
        auth.0.require(Perm::TenantAdmin)?;
        let jobs = super::jobs(&state.db, auth.0.tenant, 50).await?;
        Ok(JobsResponse::Ok(Json(jobs.into_iter().map(to_dto).collect::<Result<_, _>>()?)))
    }

    /// An import's progress, and its counts once done
    #[oai(path = "/imports/:id", method = "get", operation_id = "imports_get")]
    async fn get(&self, state: Data<&AppState>, auth: Auth, id: Path<Uuid>) -> Result<JobResponse, AppError> {
        auth.0.require(Perm::TenantAdmin)?;
        Ok(JobResponse::Ok(Json(to_dto(super::job(&state.db, auth.0.tenant, id.0).await?)?)))
    }

    /// The dedupe report of a finished import: every link with its evidence, every probable pair,
    /// every refused and flagged row with its line number
    #[oai(path = "/imports/:id/report", method = "get", operation_id = "imports_report")]
    async fn report(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        id: Path<Uuid>,
        #[oai(default = "csv")] format: Query<ReportFormat>,
    ) -> Result<ReportFile, AppError> {
        let ctx = &auth.0;
        ctx.require(Perm::TenantAdmin)?;
        let job = super::job(&state.db, ctx.tenant, id.0).await?;
        let report = super::report_of(&job)?
            .ok_or_else(|| AppError::new(codes::IMPORT_JOB_NOT_FOUND, "this import has no report (yet)"))?;
        // The report names patients: who downloaded it is audited.
        let mut tx = state.db.begin(ctx).await?;
        tx.audit(ctx.audit("patient.import_report", "import_job", Purpose::Administration).resource(job.id));
        tx.commit().await?;
        let (bytes, mime, ext) = match format.0 {
            ReportFormat::Csv => (report.to_csv()?, "text/csv; charset=utf-8", "csv"),
            ReportFormat::Xlsx => {
                (report.to_xlsx()?, "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "xlsx")
            }
        };
        let disposition = format!("attachment; filename=\"import-{}.{ext}\"", job.id);
        Ok(ReportFile::Ok(Binary(bytes), mime.into(), disposition))
    }
}

fn csv() -> ReportFormat {
    ReportFormat::Csv
}
