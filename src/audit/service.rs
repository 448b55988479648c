//! Reading the audit trail.

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use uuid::Uuid;

use crate::identity::ctx::{Perm, RequestCtx};
use crate::platform::audit::Purpose;
use crate::platform::audit::entity::audit_log;
use crate::platform::{AppResult, Db};

pub async fn list(
    db: &Db,
    ctx: &RequestCtx,
    before: Option<Uuid>,
    limit: u64,
    subject: Option<Uuid>,
) -> AppResult<Vec<audit_log::Model>> {
    ctx.require(Perm::AuditRead)?;
    let mut tx = db.begin(ctx).await?;
    let mut q = audit_log::Entity::find().filter(audit_log::Column::TenantId.eq(ctx.tenant));
    if let Some(b) = before {
        q = q.filter(audit_log::Column::Id.lt(b));
    }
    if let Some(s) = subject {
        q = q.filter(audit_log::Column::SubjectPersonId.eq(s));
    }
    // Row ids are UUIDv7, so id order is the order rows were written, across the chains.
    let rows = q.order_by_desc(audit_log::Column::Id).limit(limit.min(500)).all(&*tx).await?;
    // Reading the trail is itself recorded (MLPS 2.0 level 3: the auditors are audited too),
    // after the rows it read; a read about one person names them as subject.
    let mut entry = ctx.audit("audit.read", "audit_log", Purpose::Administration);
    if let Some(s) = subject {
        entry = entry.subject(s);
    }
    tx.audit(entry);
    tx.commit().await?;
    Ok(rows)
}
