//! Creates that happen once however often a client retries them. A request to a create
//! operation that carries an `Idempotency-Key` header is remembered per tenant, user and key for
//! a day with a hash of what it asked and the answer it got. The same key and request again gets
//! the first answer back (nothing is created twice); the same key with a different request is
//! 422 `idempotency_key_reused`; while the first is still running, 409 `idempotency_in_progress`.
//! An answer of 5xx is not kept, so a retry after a failure runs again.

use chrono::{DateTime, Utc};
use sea_orm::entity::prelude::*;
use sea_orm::{Set, TransactionTrait};
use sha2::{Digest, Sha256};

use crate::platform::codes;
use crate::platform::{AppError, AppResult, Db, SystemScope};

/// How long a key is remembered.
pub const KEEP_HOURS: i64 = 24;

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
    let found = idempotency_key::Entity::find_by_id((claim.tenant, claim.user, claim.key.clone())).one(&*tx).await?;
    let fresh_after = Utc::now() - chrono::Duration::hours(KEEP_HOURS);
    match found {
        Some(row) if row.created_at >= fresh_after => {
            tx.rollback().await?;
            if row.request_hash != claim.request_hash {
                return Err(AppError::new(
                    codes::IDEMPOTENCY_KEY_REUSED,
                    "this Idempotency-Key was used for a different request",
                ));
            }
            match (row.status, row.body) {
                (Some(status), Some(body)) => {
                    Ok(Start::Replay(Kept { status: status as u16, content_type: row.content_type, body }))
                }
                _ => Err(AppError::new(
                    codes::IDEMPOTENCY_IN_PROGRESS,
                    "the first request with this Idempotency-Key is still running; retry shortly",
                )),
            }
        }
        stale => {
            if stale.is_some() {
                idempotency_key::Entity::delete_by_id((claim.tenant, claim.user, claim.key.clone())).exec(&*tx).await?;
            }
            let inserted = idempotency_key::ActiveModel {
                tenant_id: Set(claim.tenant),
                user_id: Set(claim.user),
                key: Set(claim.key.clone()),
                request_hash: Set(claim.request_hash.clone()),
                status: Set(None),
                content_type: Set(None),
                body: Set(None),
                created_at: Set(Utc::now()),
            }
            .insert(&*tx)
            .await;
            match inserted {
                Ok(_) => {
                    tx.commit().await?;
                    Ok(Start::Run)
                }
                Err(e) => match AppError::from(e) {
                    // Another request with this key claimed it a moment ago.
                    e if e.is(codes::CONFLICT) => Err(AppError::new(
                        codes::IDEMPOTENCY_IN_PROGRESS,
                        "the first request with this Idempotency-Key is still running; retry shortly",
                    )),
                    e => Err(e),
                },
            }
        }
    }
}

/// Keeps the answer to a claimed key.
pub async fn finish(db: &Db, claim: &Claim, kept: &Kept) -> AppResult<()> {
    let tx = db.begin(&SystemScope { tenant: claim.tenant }).await?;
    idempotency_key::Entity::update_many()
        .col_expr(idempotency_key::Column::Status, Expr::value(i32::from(kept.status)))
        .col_expr(idempotency_key::Column::ContentType, Expr::value(kept.content_type.clone()))
        .col_expr(idempotency_key::Column::Body, Expr::value(kept.body.clone()))
        .filter(idempotency_key::Column::TenantId.eq(claim.tenant))
        .filter(idempotency_key::Column::UserId.eq(claim.user))
        .filter(idempotency_key::Column::Key.eq(claim.key.clone()))
        .exec(&*tx)
        .await?;
    tx.commit().await
}

/// Forgets a claimed key whose request failed on our side, so that a retry runs again.
pub async fn abandon(db: &Db, claim: &Claim) -> AppResult<()> {
    let tx = db.begin(&SystemScope { tenant: claim.tenant }).await?;
    idempotency_key::Entity::delete_by_id((claim.tenant, claim.user, claim.key.clone())).exec(&*tx).await?;
    tx.commit().await
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
