//! Authorization: casbin RBAC with domains (domain = institution). The model and the role
//! permissions live in `authz/`; role bindings come from the database. One enforcer per tenant is
//! built on first use and dropped when that tenant's roles change, here or on another replica
//! (the change notice travels over Redis pub/sub).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use casbin::{CoreApi, DefaultModel, Enforcer, StringAdapter};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use uuid::Uuid;

use super::domain::Role;
use super::entity::role_binding;
use crate::platform::cache::{Cache, RESYNC};
use crate::platform::{AppError, AppResult, Db, SystemScope};

pub const MODEL: &str = include_str!("authz/model.conf");
pub const POLICY: &str = include_str!("authz/policy.csv");
const TOPIC: &str = "authz";

pub struct Authz {
    db: Db,
    cache: Cache,
    enforcers: RwLock<HashMap<Uuid, Arc<Enforcer>>>,
    /// Bumped on every invalidation, so a build that raced one is not cached.
    generation: AtomicU64,
}

impl Authz {
    pub fn new(db: Db, cache: Cache) -> Arc<Self> {
        let authz = Arc::new(Self { db, cache, enforcers: RwLock::default(), generation: AtomicU64::new(0) });
        tokio::spawn(listen(Arc::downgrade(&authz), authz.cache.subscribe()));
        authz
    }

    /// The enforcer for a tenant, built from its bindings if not cached.
    pub async fn enforcer(&self, tenant: Uuid) -> AppResult<Arc<Enforcer>> {
        if let Some(e) = self.enforcers.read().expect("authz lock").get(&tenant) {
            return Ok(e.clone());
        }
        let generation = self.generation.load(Ordering::SeqCst);
        let enforcer = Arc::new(self.build(tenant).await?);
        if self.generation.load(Ordering::SeqCst) == generation {
            self.enforcers.write().expect("authz lock").insert(tenant, enforcer.clone());
        }
        Ok(enforcer)
    }

    async fn build(&self, tenant: Uuid) -> AppResult<Enforcer> {
        let tx = self.db.begin(&SystemScope { tenant }).await?;
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
        let mut map = self.enforcers.write().expect("authz lock");
        match tenant {
            Some(t) => {
                map.remove(&t);
            }
            None => map.clear(),
        }
    }

    /// Call after changing a tenant's roles: every replica rebuilds on its next request.
    pub async fn changed(&self, tenant: Uuid) {
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
