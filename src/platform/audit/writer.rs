//! Group commit for the audit rows of transactions that only read. A read of patient data must
//! leave its row before the request answers, but a read's own transaction has nothing else to
//! flush: committing one audit row per read costs a WAL flush each and caps reads at the
//! database's commit rate. Instead a read commits its (read-only) transaction and hands its rows
//! here; a worker takes the rows of every read in flight, appends them to their tenants' chains
//! in one transaction, and answers each read only after that commit. A crash before the commit
//! loses rows only of requests that had not answered. A connection cut under a group is tried
//! once more, after looking for the group's rows ([`landed`]): rows are never missing, and not
//! written twice.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};
use tokio::sync::{Mutex, mpsc, oneshot};
use uuid::Uuid;

use super::chain::Tail;
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
                    let mut tail = None;
                    let mut result = write(&conn, &jobs, &mut tail).await;
                    if let Err(AppError::Unavailable(e)) = &result {
                        // A connection cut under the group (a dead pooled connection at BEGIN
                        // is already replaced by `begin_answering`). If the cut came with or
                        // after `COMMIT`, the rows may be in: look for them before writing
                        // them again, on another connection.
                        tracing::warn!(error = %format!("{e:#}"), "audit group commit: database unavailable; trying again");
                        result = match tail {
                            Some((tenant, tail)) => match landed(&conn, tenant, &tail).await {
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
/// `tail` gets where the first tenant's last row goes, once it is planned: the group commits or
/// not as one, so that row says for all of it.
async fn write(conn: &DatabaseConnection, jobs: &[Job], tail: &mut Option<(Uuid, Tail)>) -> AppResult<()> {
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
        let last = super::chain::append(&tx, tenant, entries).await?;
        if tail.is_none() {
            *tail = last.map(|t| (tenant, t));
        }
    }
    tx.commit().await?;
    Ok(())
}

/// How long [`landed`] waits for a cut transaction to end.
const OUTCOME_WAIT: Duration = Duration::from_secs(5);

/// Whether the group whose connection was cut committed: its first tenant's last row, `tail`,
/// is in the trail. The cut transaction may still be open on the server (its backend has not yet
/// noticed the lost connection, or is finishing a `COMMIT` it received): until it ends it holds
/// that chain's head, and its rows are invisible. So the head is asked for first
/// ([`tail_state`]); once it was free, or the row is there, the answer is certain. This reads the
/// rows themselves, so it holds on Citus too, whichever way Citus commits on its workers. Asked
/// again until then, for about [`OUTCOME_WAIT`]; after that the group fails as unavailable (its
/// requests answer 503 and may be sent again; none of them heard 200).
async fn landed(conn: &DatabaseConnection, tenant: Uuid, tail: &Tail) -> AppResult<bool> {
    let deadline = Instant::now() + OUTCOME_WAIT;
    let mut last_error = None;
    loop {
        match tail_state(conn, tenant, tail).await {
            Ok(Some(there)) => return Ok(there),
            Ok(None) => {}
            // The pool may hand out another connection the same failure cut, or the head's
            // lock may time out behind the cut transaction: ask again.
            Err(e) => last_error = Some(e.reason()),
        }
        if Instant::now() >= deadline {
            return Err(AppError::Unavailable(anyhow::anyhow!(
                "the outcome of a cut audit commit was not known within {OUTCOME_WAIT:?} (last error: {})",
                last_error.as_deref().unwrap_or("none; the chain's head stayed held")
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `Some(true)`: the row `tail` is in the trail. `Some(false)`: it is not, and its chain's head
/// was free (so the transaction that planned it has ended without it). `None`: not there yet
/// and the head held, perhaps by that transaction still. Takes the head in a transaction of its
/// own (rolled back: nothing is written), waiting at most a second for its lock.
async fn tail_state(conn: &DatabaseConnection, tenant: Uuid, tail: &Tail) -> AppResult<Option<bool>> {
    let settings = format!("{}; SET LOCAL lock_timeout = '1s'", crate::platform::db::set_tenant_sql(tenant));
    let tx = crate::platform::db::begin_answering(conn, Some(&settings)).await?;
    let pg = |sql: &str, values: Vec<sea_orm::Value>| Statement::from_sql_and_values(DbBackend::Postgres, sql, values);
    let got = tx
        .query_one_raw(pg(
            "SELECT chain FROM audit_head_lock($1, $2)",
            vec![tenant.into(), i32::from(tail.chain).into()],
        ))
        .await?
        .map(|row| row.try_get::<i32>("", "chain"))
        .transpose()?;
    let there = tx
        .query_one_raw(pg(
            "SELECT EXISTS (SELECT 1 FROM audit_log WHERE tenant_id = $1 AND chain = $2 AND seq = $3
                              AND occurred_at = $4 AND hash = $5) AS there",
            vec![tenant.into(), tail.chain.into(), tail.seq.into(), tail.at.into(), tail.hash.clone().into()],
        ))
        .await?
        .map(|row| row.try_get::<bool>("", "there"))
        .transpose()?
        .unwrap_or(false);
    tx.rollback().await?;
    Ok(match (there, got == Some(i32::from(tail.chain))) {
        (true, _) => Some(true),
        (false, true) => Some(false),
        (false, false) => None,
    })
}
