//! Authorization: casbin RBAC with domains (domain = institution). The model and the role
//! permissions live in `authz/`; role bindings come from the database. One enforcer per tenant is
//! built on first use and dropped when that tenant's roles change, here or on another replica
//! (the change notice travels over Redis pub/sub). Without Redis there is no one to hear a
//! notice from another process (a CLI applying a tenant file beside the embedded server), so
//! each change also bumps the tenant's `authz_epochs` row and every request compares it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use casbin::{CoreApi, DefaultModel, Enforcer, StringAdapter};
use sea_orm::sea_query::ExprTrait;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use uuid::Uuid;

use super::domain::Role;
use super::entity::{authz_epoch, role_binding};
use crate::platform::cache::{Cache, RESYNC};
use crate::platform::{AppError, AppResult, Db, SystemScope};

pub const MODEL: &str = include_str!("authz/model.conf");
pub const POLICY: &str = include_str!("authz/policy.csv");
const TOPIC: &str = "authz";

/// A built enforcer and the tenant's epoch it was built at.
struct Built {
    enforcer: Arc<Enforcer>,
    epoch: i64,
}

pub struct Authz {
    db: Db,
    cache: Cache,
    enforcers: RwLock<HashMap<Uuid, Built>>,
    /// Bumped on every invalidation, so a build that raced one is not cached.
    generation: AtomicU64,
    /// Compare the tenant's epoch in the database on every request: no Redis carries notices
    /// between processes.
    check_epochs: bool,
    /// Tells open streams that roles changed, after the cached enforcers were dropped.
    changes: tokio::sync::watch::Sender<u64>,
}

impl Authz {
    pub fn new(db: Db, cache: Cache) -> Arc<Self> {
        let check_epochs = cache.backend_name() == "memory";
        let authz = Arc::new(Self {
            db,
            cache,
            enforcers: RwLock::default(),
            generation: AtomicU64::new(0),
            check_epochs,
            changes: tokio::sync::watch::Sender::new(0),
        });
        tokio::spawn(listen(Arc::downgrade(&authz), authz.cache.subscribe()));
        authz
    }

    /// The enforcer for a tenant, built from its bindings if not cached (or, without Redis, if
    /// another process changed the tenant's roles since).
    pub async fn enforcer(&self, tenant: Uuid) -> AppResult<Arc<Enforcer>> {
        let epoch = if self.check_epochs { self.epoch(tenant).await? } else { 0 };
        let seen = self.enforcers.read().expect("authz lock").get(&tenant).map(|b| (b.epoch, b.enforcer.clone()));
        match seen {
            Some((seen, enforcer)) if seen == epoch => return Ok(enforcer),
            // Another process may have changed the tenant (a tenant file, a role): without
            // notices, a changed epoch or a first sight drops its memoised views too.
            _ if self.check_epochs => self.db.memo().forget(Some(tenant)),
            _ => {}
        }
        let generation = self.generation.load(Ordering::SeqCst);
        let enforcer = Arc::new(self.build(tenant).await?);
        if self.generation.load(Ordering::SeqCst) == generation {
            self.enforcers.write().expect("authz lock").insert(tenant, Built { enforcer: enforcer.clone(), epoch });
        }
        Ok(enforcer)
    }

    async fn epoch(&self, tenant: Uuid) -> AppResult<i64> {
        let tx = self.db.begin(&SystemScope { tenant }).await?;
        let row = authz_epoch::Entity::find_by_id(tenant).one(&*tx).await?;
        tx.rollback().await?;
        Ok(row.map_or(0, |r| r.epoch))
    }

    /// Bumps the tenant's epoch, for processes that do not hear notices.
    async fn bump_epoch(&self, tenant: Uuid) -> AppResult<()> {
        let tx = self.db.begin(&SystemScope { tenant }).await?;
        authz_epoch::Entity::insert(authz_epoch::ActiveModel {
            tenant_id: sea_orm::Set(tenant),
            epoch: sea_orm::Set(1),
        })
        .on_conflict(
            sea_orm::sea_query::OnConflict::column(authz_epoch::Column::TenantId)
                .value(
                    authz_epoch::Column::Epoch,
                    sea_orm::sea_query::Expr::col((authz_epoch::Entity, authz_epoch::Column::Epoch)).add(1),
                )
                .to_owned(),
        )
        .exec(&*tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// A receiver that changes after every drop of cached enforcers (here or announced by
    /// another replica): open streams re-check their session on it.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    async fn build(&self, tenant: Uuid) -> AppResult<Enforcer> {
        let tx = self.db.begin(&SystemScope { tenant }).await?;
        // Never the memoised tree: an enforcer outlives any memo, and one built from a tree
        // another process has since changed would be cached under the new epoch.
        tx.skip_memo();
        let bindings = role_binding::Entity::find().filter(role_binding::Column::TenantId.eq(tenant)).all(&*tx).await?;
        let inactive: std::collections::HashSet<Uuid> = super::entity::user::Entity::find()
            .filter(super::entity::user::Column::TenantId.eq(tenant))
            .filter(super::entity::user::Column::Active.eq(false))
            .all(&*tx)
            .await?
            .into_iter()
            .map(|u| u.id)
            .collect();
        let institutions = crate::tenancy::service::institution_ids(&tx).await?;
        tx.rollback().await?;
        let mut policy = String::from(POLICY);
        for b in bindings.into_iter().filter(|b| !inactive.contains(&b.user_id)) {
            let Some(role) = Role::parse(&b.role) else { continue };
            if role.is_tenant_wide() {
                for inst in &institutions {
                    policy.push_str(&format!("\ng, {}, {}, {}", b.user_id, role.as_str(), inst));
                }
            } else {
                policy.push_str(&format!("\ng, {}, {}, {}", b.user_id, role.as_str(), b.institution_id));
            }
        }
        new_enforcer(policy).await
    }

    /// Forgets a tenant's enforcer on this replica only.
    pub fn invalidate(&self, tenant: Option<Uuid>) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        // The same notice drops the tenant's other memoised views (the institution tree).
        self.db.memo().forget(tenant);
        let mut map = self.enforcers.write().expect("authz lock");
        match tenant {
            Some(t) => {
                map.remove(&t);
            }
            None => map.clear(),
        }
        drop(map);
        self.changes.send_modify(|n| *n += 1);
    }

    /// Call after changing a tenant's roles: every replica rebuilds on its next request
    /// (embedded default), or once the notice reaches it (Redis).
    pub async fn changed(&self, tenant: Uuid) {
        if let Err(e) = self.bump_epoch(tenant).await {
            tracing::error!(tenant.id = %tenant, error = %e, "could not record an authorization change");
        }
        self.invalidate(Some(tenant));
        if let Err(e) = self.cache.notify(TOPIC, &tenant.to_string()).await {
            // Other replicas keep a stale view until their next resync; say so loudly.
            tracing::error!(tenant.id = %tenant, error = %e, "could not announce an authorization change");
        }
    }
}

#[async_trait::async_trait]
impl crate::platform::state::Authorizer for Authz {
    async fn enforcer(&self, tenant: Uuid) -> AppResult<Arc<Enforcer>> {
        Authz::enforcer(self, tenant).await
    }
    async fn changed(&self, tenant: Uuid) {
        Authz::changed(self, tenant).await
    }
    fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        Authz::changes(self)
    }
}

pub async fn new_enforcer(policy: String) -> AppResult<Enforcer> {
    let model =
        DefaultModel::from_str(MODEL).await.map_err(|e| AppError::internal(anyhow::anyhow!("casbin model: {e}")))?;
    Enforcer::new(model, StringAdapter::new(policy))
        .await
        .map_err(|e| AppError::internal(anyhow::anyhow!("casbin policy: {e}")))
}

async fn listen(
    authz: std::sync::Weak<Authz>,
    mut rx: tokio::sync::broadcast::Receiver<crate::platform::cache::Notice>,
) {
    loop {
        let notice = match rx.recv().await {
            Ok(n) => n,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                crate::platform::cache::Notice { topic: RESYNC.into(), payload: String::new() }
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        };
        let Some(authz) = authz.upgrade() else { return };
        match notice.topic.as_str() {
            TOPIC => authz.invalidate(notice.payload.parse().ok()),
            RESYNC => authz.invalidate(None),
            _ => {}
        }
    }
}
