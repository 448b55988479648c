//! Verifying the hash chains: walks each tenant's audit rows in order and names the first broken
//! link (an edited, missing or reordered row, or rows cut off the end).

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use uuid::Uuid;

use crate::platform::audit::chain::{GENESIS, row_hash};
use crate::platform::audit::entity::{audit_head, audit_log};
use crate::platform::{Db, SystemScope};

#[derive(Debug, Clone)]
pub struct BrokenLink {
    pub tenant_code: String,
    pub seq: i64,
    pub id: Option<Uuid>,
    pub reason: String,
}

/// One tenant's chain, as far as it was checked.
#[derive(Debug, Clone)]
pub struct ChainChecked {
    pub tenant_code: String,
    pub rows: u64,
}

#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    pub chains: Vec<ChainChecked>,
    pub broken: Option<BrokenLink>,
}

/// Walks every tenant's chain and stops at the first broken link.
pub async fn verify(db: &Db) -> anyhow::Result<VerifyReport> {
    let tenants = crate::tenancy::service::list_tenants(db).await?;
    let mut report = VerifyReport::default();
    for tenant in tenants {
        let tx = db.begin(&SystemScope { tenant: tenant.id }).await?;
        let mut prev = GENESIS.to_string();
        let mut expected_seq = 1i64;
        let mut checked = 0u64;
        loop {
            let page = audit_log::Entity::find()
                .filter(audit_log::Column::TenantId.eq(tenant.id))
                .filter(audit_log::Column::Seq.gte(expected_seq))
                .order_by_asc(audit_log::Column::Seq)
                .limit(1000)
                .all(&*tx)
                .await?;
            if page.is_empty() {
                break;
            }
            for row in page {
                let broken = |reason: String| BrokenLink {
                    tenant_code: tenant.code.clone(),
                    seq: row.seq,
                    id: Some(row.id),
                    reason,
                };
                if row.seq != expected_seq {
                    report.broken = Some(BrokenLink {
                        tenant_code: tenant.code.clone(),
                        seq: expected_seq,
                        id: None,
                        reason: format!("row {expected_seq} is missing (next is {})", row.seq),
                    });
                } else if row.prev_hash != prev {
                    report.broken = Some(broken("prev_hash does not match the previous row's hash".into()));
                } else if row_hash(&row) != row.hash {
                    report.broken = Some(broken("contents do not match the row's hash (edited)".into()));
                }
                if report.broken.is_some() {
                    report.chains.push(ChainChecked { tenant_code: tenant.code.clone(), rows: checked });
                    tx.rollback().await?;
                    return Ok(report);
                }
                prev = row.hash;
                expected_seq += 1;
                checked += 1;
            }
        }
        let head = audit_head::Entity::find_by_id(tenant.id).one(&*tx).await?;
        if let Some(head) = head
            && (head.seq != checked as i64 || head.hash != prev)
        {
            report.broken = Some(BrokenLink {
                tenant_code: tenant.code.clone(),
                seq: checked as i64 + 1,
                id: None,
                reason: format!("the chain head says {} rows but {checked} were found (rows deleted)", head.seq),
            });
        }
        report.chains.push(ChainChecked { tenant_code: tenant.code.clone(), rows: checked });
        tx.rollback().await?;
        if report.broken.is_some() {
            break;
        }
    }
    Ok(report)
}
