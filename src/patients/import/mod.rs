//! Bulk import of a county's legacy residents (CSV or XLSX, UTF-8 or GB18030) into the MPI:
//! `cloudhis import residents` and `POST /api/v1/imports/residents`. A file is read and its
//! columns resolved before anything is written (a bad file is a 422); then a job row tracks the
//! run, the engine matches and writes in batches, and the dedupe report is kept on the job.

pub mod api;
pub mod engine;
pub mod mapping;
pub mod read;
pub mod report;
mod row;

use chrono::Utc;
use sea_orm::{ActiveModelTrait, ActiveValue::Unchanged, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, Set};
use uuid::Uuid;

pub use engine::{Options, Progress};
pub use mapping::{Mapping, Positions};
pub use read::Table;
pub use report::Report;

use crate::patients::entity::import_job;
use crate::platform::codes;
use crate::platform::config::Config;
use crate::platform::pii::PiiCipher;
use crate::platform::{AppError, AppResult, Db, SystemScope};

/// Reads the file and finds its columns: every error here is the caller's (422).
pub fn prepare(bytes: &[u8], mapping: &Mapping, institution_column: Option<&str>) -> AppResult<(Table, Positions)> {
    let table = read::read(bytes, mapping)?;
    let at = mapping.positions(&table.headers, institution_column)?;
    Ok((table, at))
}

pub async fn create_job(db: &Db, tenant: Uuid, file_name: &str, rows: u64, by: Option<Uuid>) -> AppResult<Uuid> {
    let id = Uuid::now_v7();
    let tx = db.begin(&SystemScope { tenant }).await?;
    import_job::ActiveModel {
        tenant_id: Set(tenant),
        id: Set(id),
        file_name: Set(file_name.chars().take(200).collect()),
        status: Set("running".into()),
        total_rows: Set(rows as i64),
        processed_rows: Set(0),
        report: Set(None),
        error: Set(None),
        created_by: Set(by),
        created_at: Set(Utc::now()),
        finished_at: Set(None),
    }
    .insert(&*tx)
    .await?;
    tx.commit().await?;
    Ok(id)
}

/// Runs a created job to its end and records how it ended (with the report, or the error).
/// Before the job reads `done` (or `failed`), the tables it filled are analysed, whatever was
/// committed (`planner_stats::analyse_after_load`): a registration right after an import is
/// planned on statistics that know the county is there.
#[allow(clippy::too_many_arguments)]
pub async fn execute(
    db: &Db,
    config: &Config,
    cipher: &PiiCipher,
    tenant: Uuid,
    table: &Table,
    at: &Positions,
    opts: &Options,
    progress: Progress<'_>,
) -> AppResult<Report> {
    let result = engine::run(db, cipher, tenant, table, at, opts, progress).await;
    crate::platform::planner_stats::analyse_after_load(config, crate::platform::planner_stats::IMPORTED).await;
    let (status, report, error) = match &result {
        Ok(r) => ("done", Some(serde_json::to_string(r).map_err(AppError::internal)?), None),
        Err(e) => ("failed", None, Some(e.reason().chars().take(500).collect::<String>())),
    };
    let tx = db.begin(&SystemScope { tenant }).await?;
    import_job::ActiveModel {
        tenant_id: Unchanged(tenant),
        id: Unchanged(opts.job),
        status: Set(status.into()),
        report: Set(report),
        error: Set(error),
        finished_at: Set(Some(Utc::now())),
        ..Default::default()
    }
    .update(&*tx)
    .await?;
    tx.commit().await?;
    result
}

pub async fn job(db: &Db, tenant: Uuid, id: Uuid) -> AppResult<import_job::Model> {
    let tx = db.begin(&SystemScope { tenant }).await?;
    let job = import_job::Entity::find_by_id((tenant, id)).one(&*tx).await?;
    tx.rollback().await?;
    job.ok_or_else(|| AppError::new(codes::IMPORT_JOB_NOT_FOUND, "no such import in this community"))
}

pub async fn jobs(db: &Db, tenant: Uuid, limit: u64) -> AppResult<Vec<import_job::Model>> {
    use sea_orm::QuerySelect;
    let tx = db.begin(&SystemScope { tenant }).await?;
    let rows = import_job::Entity::find()
        .filter(import_job::Column::TenantId.eq(tenant))
        .order_by_desc(import_job::Column::CreatedAt)
        .limit(limit)
        .all(&*tx)
        .await?;
    tx.rollback().await?;
    Ok(rows)
}

/// The stored report of a finished job.
pub fn report_of(job: &import_job::Model) -> AppResult<Option<Report>> {
    job.report.as_deref().map(|r| serde_json::from_str(r).map_err(AppError::internal)).transpose()
}
