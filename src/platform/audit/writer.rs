//! Group commit for the audit rows of transactions that only read. A read of patient data must
//! leave its row before the request answers, but a read's own transaction has nothing else to
//! flush: committing one audit row per read costs a WAL flush each and caps reads at the
//! database's commit rate. Instead a read commits its (read-only) transaction and hands its rows
//! here; a worker takes the rows of every read in flight, appends them to their tenants' chains
//! in one transaction, and answers each read only after that commit. A crash before the commit
//! loses rows only of requests that had not answered. A connection cut under a group is tried
//! once more, after asking the server whether the cut commit landed: rows are never missing,
//! and not written twice.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};
use tokio::sync::{Mutex, mpsc, oneshot};
use uuid::Uuid;

use super::entry::AuditEntry;
use crate::platform::{AppError, AppResult};

/// Rows one group commit takes at most (the rest wait for the next).
const MAX_ROWS: usize = 2000;
/// Workers per process: one collects the next group while another commits.
const WORKERS: usize = 2;

struct Job {
    tenant: Uuid,
    entries: Vec<AuditEntry>,
    done: oneshot::Sender<Result<(), Failure>>,
}

/// Why a group did not commit, for each request in it: whether the database was unavailable
/// (the request answers 503 and may be sent again) and the sanitized reason.
#[derive(Clone)]
struct Failure {
    unavailable: bool,
    reason: String,
}

/// The handle requests use; cloning it shares the workers.
#[derive(Clone)]
pub struct Writer {
    jobs: mpsc::Sender<Job>,
}

impl Writer {
    /// Starts the workers on `conn` (PostgreSQL: each group sets the tenant before its rows, so
    /// row-level security and the head functions see the right tenant).
    pub fn spawn(conn: DatabaseConnection) -> Self {
        let (tx, rx) = mpsc::channel::<Job>(8192);
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..WORKERS {
            let (conn, rx) = (conn.clone(), rx.clone());
            tokio::spawn(async move {
                while let Some(jobs) = next_group(&rx).await {
                    let mut xid = None;
                    let mut result = write(&conn, &jobs, &mut xid).await;
                    if let Err(AppError::Unavailable(e)) = &result {
                        // A connection cut under the group (a dead pooled connection at BEGIN
                        // is already replaced by `begin_answering`). If the cut came with or
                        // after `COMMIT`, the rows may be in: ask the server before writing
                        // them again, on another connection.
                        tracing::warn!(error = %format!("{e:#}"), "audit group commit: database unavailable; trying again");
                        result = match xid {
                            Some(xid) => match landed(&conn, &xid).await {
                                Ok(true) => Ok(()),
                                Ok(false) => write(&conn, &jobs, &mut None).await,
                                Err(e) => Err(e),
                            },
                            None => write(&conn, &jobs, &mut None).await,
                        };
                    }
                    let result = result.map_err(|e| Failure {
                        unavailable: matches!(e, AppError::Unavailable(_)),
                        reason: e.reason(),
                    });
                    if let Err(e) = &result {
                        tracing::error!(error = %e.reason, rows = jobs.len(), "audit group commit failed");
                    }
                    for job in jobs {
                        let _ = job.done.send(result.clone());
                    }
                }
            });
        }
        Self { jobs: tx }
    }

    /// Appends `entries` to `tenant`'s trail; returns once they are committed.
    pub async fn append(&self, tenant: Uuid, entries: Vec<AuditEntry>) -> AppResult<()> {
        let (done, answer) = oneshot::channel();
        let gone = || AppError::internal(anyhow::anyhow!("the audit writer stopped"));
        self.jobs.send(Job { tenant, entries, done }).await.map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?.map_err(|e| {
            let err = anyhow::anyhow!("audit group commit: {}", e.reason);
            if e.unavailable { AppError::Unavailable(err) } else { AppError::Internal(err) }
        })
    }
}

/// Waits for a job, then takes whatever else is already queued, up to [`MAX_ROWS`] rows.
async fn next_group(rx: &Mutex<mpsc::Receiver<Job>>) -> Option<Vec<Job>> {
    let mut rx = rx.lock().await;
    let first = rx.recv().await?;
    let mut rows = first.entries.len();
    let mut jobs = vec![first];
    while rows < MAX_ROWS {
        match rx.try_recv() {
            Ok(job) => {
                rows += job.entries.len();
                jobs.push(job);
            }
            Err(_) => break,
        }
    }
    Some(jobs)
}

/// One transaction: each tenant's rows (in the order they came) appended to one of its chains.
/// `xid` gets the transaction's id as soon as the database has given one (PostgreSQL).
async fn write(conn: &DatabaseConnection, jobs: &[Job], xid: &mut Option<String>) -> AppResult<()> {
    let mut tenants: Vec<(Uuid, Vec<AuditEntry>)> = Vec::new();
    for job in jobs {
        match tenants.iter_mut().find(|(t, _)| *t == job.tenant) {
            Some((_, rows)) => rows.extend(job.entries.iter().cloned()),
            None => tenants.push((job.tenant, job.entries.clone())),
        }
    }
    let tx = crate::platform::db::begin_answering(conn, None).await?;
    for (tenant, entries) in tenants {
        tx.execute_unprepared(&crate::platform::db::set_tenant_sql(tenant)).await?;
        let id = super::chain::append(&tx, tenant, entries).await?;
        if xid.is_none() {
            *xid = id;
        }
    }
    tx.commit().await?;
    Ok(())
}

/// How long [`landed`] waits for the server to settle a transaction it still counts as running.
const OUTCOME_WAIT: Duration = Duration::from_secs(5);

/// Whether the transaction `xid`, whose connection was cut, committed. A `COMMIT` cut on the
/// wire may have landed; the server knows (`pg_xact_status`). It counts the transaction as
/// running until its backend notices the lost connection (at once, for a closed socket; a
/// `COMMIT` it received is finished first): asked again until it settles, for at most
/// [`OUTCOME_WAIT`]; after that the group fails as unavailable (its requests answer 503 and may
/// be sent again; none of them heard 200). On Citus the coordinator's transaction is the one
/// whose commit decides the workers' (two-phase commit), and it is the one asked.
async fn landed(conn: &DatabaseConnection, xid: &str) -> AppResult<bool> {
    let deadline = Instant::now() + OUTCOME_WAIT;
    let ask = Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT pg_xact_status($1::text::xid8) AS status",
        [xid.into()],
    );
    loop {
        match conn.query_one_raw(ask.clone()).await {
            Ok(Some(row)) => match row.try_get::<Option<String>>("", "status")?.as_deref() {
                Some("committed") => return Ok(true),
                Some("aborted") => return Ok(false),
                _ => {}
            },
            Ok(None) => {}
            // The pool may hand out another connection the same failure cut.
            Err(e) if crate::platform::error::connection_cut(&e) => {}
            Err(e) => return Err(e.into()),
        }
        if Instant::now() >= deadline {
            return Err(AppError::Unavailable(anyhow::anyhow!(
                "the outcome of a cut audit commit was not known within {OUTCOME_WAIT:?}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
