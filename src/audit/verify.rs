//! Verifying the hash chains: walks each chain of each tenant's audit rows in order and names
//! the first broken link (an edited, missing or reordered row, or rows cut off a chain's end).

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use uuid::Uuid;

use crate::platform::audit::chain::{GENESIS, row_hash};
use crate::platform::audit::entity::{audit_head, audit_log};
use crate::platform::{Db, SystemScope, Tx};

#[derive(Debug, Clone)]
pub struct BrokenLink {
    pub tenant_code: String,
    pub chain: i16,
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

/// Walks every chain of every tenant and stops at the first broken link.
pub async fn verify(db: &Db) -> anyhow::Result<VerifyReport> {
    let tenants = crate::tenancy::service::list_tenants(db).await?;
    let mut report = VerifyReport::default();
    for tenant in tenants {
        let tx = db.begin(&SystemScope { tenant: tenant.id }).await?;
        let mut checked = 0u64;
        for chain in 0..migrations::AUDIT_CHAINS as i16 {
            let walked = walk(&tx, tenant.id, chain).await?;
            checked += walked.rows;
            if let Some((seq, id, reason)) = walked.broken {
                report.broken = Some(BrokenLink { tenant_code: tenant.code.clone(), chain, seq, id, reason });
                break;
            }
        }
        report.chains.push(ChainChecked { tenant_code: tenant.code.clone(), rows: checked });
        tx.rollback().await?;
        if report.broken.is_some() {
            break;
        }
    }
    Ok(report)
}

/// One chain walked: the rows that held, and the first broken link (seq, row id, reason).
struct Walked {
    rows: u64,
    broken: Option<(i64, Option<Uuid>, String)>,
}

/// Walks one chain from genesis in pages and checks its end against the chain's head.
async fn walk(tx: &Tx, tenant: Uuid, chain: i16) -> anyhow::Result<Walked> {
    let mut prev = GENESIS.to_string();
    let mut expected_seq = 1i64;
    loop {
        let page = audit_log::Entity::find()
            .filter(audit_log::Column::TenantId.eq(tenant))
            .filter(audit_log::Column::Chain.eq(chain))
            .filter(audit_log::Column::Seq.gte(expected_seq))
            .order_by_asc(audit_log::Column::Seq)
            .limit(1000)
            .all(&**tx)
            .await?;
        if page.is_empty() {
            break;
        }
        for row in page {
            let reason = if row.seq != expected_seq {
                return Ok(Walked {
                    rows: (expected_seq - 1) as u64,
                    broken: Some((expected_seq, None, format!("row {expected_seq} is missing (next is {})", row.seq))),
                });
            } else if row.prev_hash != prev {
                Some("prev_hash does not match the previous row's hash")
            } else if row_hash(&row) != row.hash {
                Some("contents do not match the row's hash (edited)")
            } else {
                None
            };
            if let Some(reason) = reason {
                let broken = Some((row.seq, Some(row.id), reason.to_string()));
                return Ok(Walked { rows: (expected_seq - 1) as u64, broken });
            }
            prev = row.hash;
            expected_seq += 1;
        }
    }
    let checked = expected_seq - 1;
    let head = audit_head::Entity::find()
        .filter(audit_head::Column::TenantId.eq(tenant))
        .filter(audit_head::Column::Chain.eq(chain))
        .one(&**tx)
        .await?;
    let broken = match head {
        Some(head) if head.seq != checked || head.hash != prev => Some((
            checked + 1,
            None,
            format!("the chain head says {} rows but {checked} were found (rows deleted)", head.seq),
        )),
        None if checked > 0 => Some((checked, None, "the chain has rows but no head (head deleted)".to_string())),
        _ => None,
    };
    Ok(Walked { rows: checked as u64, broken })
}
