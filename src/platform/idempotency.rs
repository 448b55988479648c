//! Creates that happen once however often a client retries them. A request to a create
//! operation that carries an `Idempotency-Key` header is remembered per tenant, user and key for
//! a day with a hash of what it asked and the answer it got. The same key and request again gets
//! the first answer back (nothing is created twice); the same key with a different request is
//! 422 `idempotency_key_reused`; while the first is still running, 409 `idempotency_in_progress`.
//!
//! The request runs inside [`scope`]: a transaction of it that wrote something records, in that
//! same transaction, that the work is done (`committed_at`). So when the answer is a server error
//! (a connection cut during `COMMIT` leaves the outcome unknown) or the process dies before the
//! answer is kept, the key tells a retry the truth: the work was not done, so the claim is
//! released and the retry runs again; or it was done, so the retry hears 409
//! `idempotency_answer_lost` and nothing is created twice. A claim with neither answer nor
//! commit older than [`RUNNING_BOUND_SECS`] belonged to a process that died: a retry takes it over.

use chrono::{DateTime, Utc};
use sea_orm::entity::prelude::*;
use sea_orm::{DatabaseTransaction, QuerySelect, Set, TransactionTrait};
use sha2::{Digest, Sha256};

use crate::platform::codes;
use crate::platform::{AppError, AppResult, Db, SystemScope};

/// How long a key is remembered.
pub const KEEP_HOURS: i64 = 24;

/// How long a claim with no answer and no committed work counts as running; after that its
/// process is taken to have died, and a retry runs the request again.
pub const RUNNING_BOUND_SECS: i64 = 300;

tokio::task_local! {
    static CLAIMED: Claim;
}

/// Runs a claimed request: its transactions that write mark the claim committed (see the module).
pub async fn scope<F: std::future::Future>(claim: Claim, request: F) -> F::Output {
    CLAIMED.scope(claim, request).await
}

/// The claim of the request running on this task, if it is `tenant`'s.
pub(crate) fn claimed(tenant: Uuid) -> Option<Claim> {
    CLAIMED.try_with(|c| (c.tenant == tenant).then(|| c.clone())).ok().flatten()
}

/// Records in `tx`, just before its commit, that the claimed request's work is done, if `tx`
/// wrote anything: on PostgreSQL when it has a transaction id, on SQLite when the connection's
/// change count passed `changes_at_begin`. `Tx::commit` calls it for transactions that audit
/// (every write of patient data does; a side transaction such as a block of record numbers does
/// not), before their audit rows, which would count as writes. The question reads the claim's
/// row: on Citus that router query runs on the worker holding the tenant's rows, in this
/// transaction, where its writes have their id (the coordinator assigns none for them).
pub(crate) async fn mark_committed(
    tx: &DatabaseTransaction,
    claim: &Claim,
    changes_at_begin: Option<i64>,
) -> AppResult<()> {
    let backend = tx.get_database_backend();
    let wrote = match (backend, changes_at_begin) {
        (sea_orm::DbBackend::Postgres, _) => "pg_current_xact_id_if_assigned() IS NOT NULL".to_string(),
        (_, Some(n)) => format!("total_changes() > {n}"),
        (_, None) => return Ok(()),
    };
    let ask = idempotency_key::Entity::find_by_id(id(claim))
        .select_only()
        .expr_as(Expr::cust(wrote), "wrote")
        .into_tuple::<bool>()
        .one(tx)
        .await?;
    if ask != Some(true) {
        return Ok(());
    }
    idempotency_key::Entity::update_many()
        .col_expr(idempotency_key::Column::CommittedAt, Expr::value(Utc::now()))
        .filter(this_key(claim))
        .filter(idempotency_key::Column::CommittedAt.is_null())
        .exec(tx)
        .await?;
    Ok(())
}

/// The connection's change count, for [`mark_committed`] on SQLite.
pub(crate) async fn changes_so_far(tx: &DatabaseTransaction) -> AppResult<i64> {
    let row = tx
        .query_one_raw(sea_orm::Statement::from_string(sea_orm::DbBackend::Sqlite, "SELECT total_changes() AS n"))
        .await?;
    Ok(row.map(|r| r.try_get::<i64>("", "n")).transpose()?.unwrap_or(0))
}

pub mod idempotency_key {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "idempotency_keys")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub tenant_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub key: String,
        pub request_hash: String,
        pub status: Option<i32>,
        pub content_type: Option<String>,
        pub body: Option<Vec<u8>>,
        pub created_at: DateTimeUtc,
        pub committed_at: Option<DateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Who asks, under which key, for what.
#[derive(Debug, Clone)]
pub struct Claim {
    pub tenant: Uuid,
    pub user: Uuid,
    pub key: String,
    pub request_hash: String,
}

impl Claim {
    /// A claim for a request; 400 `idempotency_key_invalid` unless the key is 1 to 200 visible
    /// ASCII characters.
    pub fn new(
        tenant: Uuid,
        user: Uuid,
        key: &str,
        method: &str,
        path_and_query: &str,
        body: &[u8],
    ) -> AppResult<Self> {
        if key.is_empty() || key.len() > 200 || !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(AppError::new(
                codes::IDEMPOTENCY_KEY_INVALID,
                "Idempotency-Key is 1 to 200 visible ASCII characters",
            ));
        }
        let mut h = Sha256::new();
        h.update(method.as_bytes());
        h.update([0]);
        h.update(path_and_query.as_bytes());
        h.update([0]);
        h.update(body);
        Ok(Self { tenant, user, key: key.to_string(), request_hash: hex::encode(h.finalize()) })
    }
}

impl Claim {
    /// The claim's row with no answer yet, claimed at `created` (and its work committed at
    /// `committed`, if it was).
    pub fn row(&self, created: DateTime<Utc>, committed: Option<DateTime<Utc>>) -> idempotency_key::ActiveModel {
        idempotency_key::ActiveModel {
            tenant_id: Set(self.tenant),
            user_id: Set(self.user),
            key: Set(self.key.clone()),
            request_hash: Set(self.request_hash.clone()),
            status: Set(None),
            content_type: Set(None),
            body: Set(None),
            created_at: Set(created),
            committed_at: Set(committed),
        }
    }
}

/// The first answer to a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kept {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

/// What to do with a request under a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// First time: run it, then [`finish`] (or [`abandon`] on a server error).
    Run,
    /// Asked before: answer this.
    Replay(Kept),
}

/// Claims the key for this request, or says what was answered before.
pub async fn start(db: &Db, claim: &Claim) -> AppResult<Start> {
    let tx = db.begin(&SystemScope { tenant: claim.tenant }).await?;
    let found = idempotency_key::Entity::find_by_id(id(claim)).one(&*tx).await?;
    let now = Utc::now();
    let fresh_after = now - chrono::Duration::hours(KEEP_HOURS);
    let running_after = now - chrono::Duration::seconds(RUNNING_BOUND_SECS);
    match found {
        Some(row) if row.created_at >= fresh_after => {
            if row.request_hash != claim.request_hash {
                tx.rollback().await?;
                return Err(AppError::new(
                    codes::IDEMPOTENCY_KEY_REUSED,
                    "this Idempotency-Key was used for a different request",
                ));
            }
            match (row.status, row.body, row.committed_at) {
                (Some(status), Some(body), _) => {
                    tx.rollback().await?;
                    Ok(Start::Replay(Kept { status: status as u16, content_type: row.content_type, body }))
                }
                // Its work committed and its process died before keeping the answer.
                (_, _, Some(_)) if row.created_at < running_after => {
                    tx.rollback().await?;
                    Ok(Start::Replay(answer_lost()))
                }
                // Nothing committed and its process died: this request takes the claim over.
                (_, _, None) if row.created_at < running_after => {
                    let taken = idempotency_key::Entity::update_many()
                        .col_expr(idempotency_key::Column::CreatedAt, Expr::value(now))
                        .filter(this_key(claim))
                        .filter(idempotency_key::Column::CreatedAt.eq(row.created_at))
                        .filter(idempotency_key::Column::CommittedAt.is_null())
                        .filter(idempotency_key::Column::Status.is_null())
                        .exec(&*tx)
                        .await?;
                    tx.commit().await?;
                    if taken.rows_affected == 1 { Ok(Start::Run) } else { Err(in_progress()) }
                }
                _ => {
                    tx.rollback().await?;
                    Err(in_progress())
                }
            }
        }
        stale => {
            if stale.is_some() {
                idempotency_key::Entity::delete_by_id(id(claim)).exec(&*tx).await?;
            }
            let inserted = claim.row(now, None).insert(&*tx).await;
            match inserted {
                Ok(_) => {
                    tx.commit().await?;
                    Ok(Start::Run)
                }
                Err(e) => match AppError::from(e) {
                    // Another request with this key claimed it a moment ago.
                    e if e.is(codes::CONFLICT) => Err(in_progress()),
                    e => Err(e),
                },
            }
        }
    }
}

/// The condition that picks a claim's row.
fn this_key(claim: &Claim) -> sea_orm::Condition {
    sea_orm::Condition::all()
        .add(idempotency_key::Column::TenantId.eq(claim.tenant))
        .add(idempotency_key::Column::UserId.eq(claim.user))
        .add(idempotency_key::Column::Key.eq(claim.key.clone()))
}

fn id(claim: &Claim) -> (Uuid, Uuid, String) {
    (claim.tenant, claim.user, claim.key.clone())
}

fn in_progress() -> AppError {
    AppError::new(
        codes::IDEMPOTENCY_IN_PROGRESS,
        "the first request with this Idempotency-Key is still running; retry shortly",
    )
}

/// The answer for a key whose work was done but whose first answer was lost.
fn answer_lost() -> Kept {
    let e = AppError::new(
        codes::IDEMPOTENCY_ANSWER_LOST,
        "the first request with this Idempotency-Key was carried out, but its answer was lost; \
         look the record up instead of sending the request again",
    );
    Kept {
        status: poem::error::ResponseError::status(&e).as_u16(),
        content_type: Some("application/json; charset=utf-8".into()),
        body: poem_openapi::types::ToJSON::to_json_string(&e.body()).into_bytes(),
    }
}

/// Keeps the answer to a claimed key.
pub async fn finish(db: &Db, claim: &Claim, kept: &Kept) -> AppResult<()> {
    let tx = db.begin(&SystemScope { tenant: claim.tenant }).await?;
    idempotency_key::Entity::update_many()
        .col_expr(idempotency_key::Column::Status, Expr::value(i32::from(kept.status)))
        .col_expr(idempotency_key::Column::ContentType, Expr::value(kept.content_type.clone()))
        .col_expr(idempotency_key::Column::Body, Expr::value(kept.body.clone()))
        .filter(this_key(claim))
        .exec(&*tx)
        .await?;
    tx.commit().await
}

/// What became of a claim whose request answered with a server error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Abandoned {
    /// Nothing of it committed: the key is free, and a retry runs again.
    Released,
    /// Its work committed (the error came after, say a cut `COMMIT`): a retry hears
    /// `idempotency_answer_lost` instead of doing the work twice.
    WorkDone,
}

/// Settles a claimed key whose request failed on our side: released when none of its work
/// committed, otherwise kept with the answer that the work was done.
pub async fn abandon(db: &Db, claim: &Claim) -> AppResult<Abandoned> {
    let tx = db.begin(&SystemScope { tenant: claim.tenant }).await?;
    let released = idempotency_key::Entity::delete_many()
        .filter(this_key(claim))
        .filter(idempotency_key::Column::CommittedAt.is_null())
        .exec(&*tx)
        .await?;
    tx.commit().await?;
    if released.rows_affected == 1 {
        return Ok(Abandoned::Released);
    }
    finish(db, claim, &answer_lost()).await?;
    Ok(Abandoned::WorkDone)
}

/// Drops keys older than [`KEEP_HOURS`], every tenant's (the sweep job calls it).
pub async fn purge(db: &Db) -> AppResult<u64> {
    let cutoff: DateTime<Utc> = Utc::now() - chrono::Duration::hours(KEEP_HOURS);
    let tx = db.raw().begin().await?;
    if db.kind() == crate::platform::config::DbKind::Postgres {
        tx.execute_unprepared("SET LOCAL cloudhis.relay = 'on'").await?;
    }
    let done =
        idempotency_key::Entity::delete_many().filter(idempotency_key::Column::CreatedAt.lt(cutoff)).exec(&tx).await?;
    tx.commit().await?;
    Ok(done.rows_affected)
}
