//! Per-tenant views that change rarely and are read on many requests (the institution tree),
//! kept in process memory so a request does not read them again. A view is dropped when its
//! tenant changes: by the writer in this process after its transaction ends, and by the change
//! notices replicas already send each other (`authz` for a tenant, `resync` for all; see
//! `identity::authz`). Without Redis no notices travel between processes, so a view is also
//! dropped after [`MAX_AGE`]: a tenant file applied by another process shows within that.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use uuid::Uuid;

/// The longest a view is kept without a change notice.
pub const MAX_AGE: Duration = Duration::from_secs(60);

type Value = Arc<dyn Any + Send + Sync>;

#[derive(Default)]
pub struct TenantMemo {
    views: RwLock<HashMap<(Uuid, TypeId), (Instant, Value)>>,
    /// Bumped on every drop, so a view read before a change is not kept after it.
    generation: AtomicU64,
}

impl TenantMemo {
    /// The tenant's view of type `T`, if one is kept and young enough.
    pub fn get<T: Any + Send + Sync>(&self, tenant: Uuid) -> Option<Arc<T>> {
        let views = self.views.read().expect("memo lock");
        let (at, value) = views.get(&(tenant, TypeId::of::<T>()))?;
        if at.elapsed() > MAX_AGE {
            return None;
        }
        value.clone().downcast::<T>().ok()
    }

    /// Where a reader stands: take it before reading a view from the database, and hand it to
    /// [`TenantMemo::keep`], which keeps the view only if nothing changed since.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    pub fn keep<T: Any + Send + Sync>(&self, tenant: Uuid, since: u64, value: Arc<T>) {
        let mut views = self.views.write().expect("memo lock");
        if self.generation.load(Ordering::SeqCst) == since {
            views.insert((tenant, TypeId::of::<T>()), (Instant::now(), value));
        }
    }

    /// Drops the views of `tenant`, or of every tenant.
    pub fn forget(&self, tenant: Option<Uuid>) {
        let mut views = self.views.write().expect("memo lock");
        self.generation.fetch_add(1, Ordering::SeqCst);
        match tenant {
            Some(t) => views.retain(|(owner, _), _| *owner != t),
            None => views.clear(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_view_read_before_a_change_is_not_kept_after_it() {
        let memo = TenantMemo::default();
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let since = memo.generation();
        memo.keep(a, since, Arc::new(vec![1]));
        memo.keep(b, since, Arc::new(vec![2]));
        assert_eq!(*memo.get::<Vec<i32>>(a).unwrap(), vec![1]);
        assert!(memo.get::<Vec<u8>>(a).is_none(), "a view is found by its type");

        let stale = memo.generation();
        memo.forget(Some(a));
        assert!(memo.get::<Vec<i32>>(a).is_none());
        assert_eq!(*memo.get::<Vec<i32>>(b).unwrap(), vec![2], "another tenant's view stays");
        memo.keep(a, stale, Arc::new(vec![9]));
        assert!(memo.get::<Vec<i32>>(a).is_none(), "read before the change: not kept");

        memo.forget(None);
        assert!(memo.get::<Vec<i32>>(b).is_none());
    }
}
