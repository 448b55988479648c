//! Verifying the hash chains: walks each chain of each tenant's audit rows in order and names
//! the first broken link (an edited, missing or reordered row, or rows cut off a chain's end).
//! A chain whose older rows were archived starts after its latest seal (`audit_seals`): the seal's
//! hash is what the first remaining row must follow.

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use uuid::Uuid;

use crate::platform::audit::chain::{GENESIS, row_hash};
use crate::platform::audit::entity::{audit_head, audit_log, audit_seal};
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
        let mut starts = seal_starts(seals(&*tx, tenant.id).await?);
        for chain in 0..migrations::AUDIT_CHAINS as i16 {
            let start = starts.remove(&chain).unwrap_or_else(Start::genesis);
            let walked = walk(&tx, tenant.id, chain, start).await?;
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

/// Where a chain's walk starts: after its latest seal (the archived part ends there), or at
/// genesis.
pub(crate) struct Start {
    pub seq: i64,
    pub hash: String,
}

impl Start {
    pub(crate) fn genesis() -> Self {
        Start { seq: 0, hash: GENESIS.to_string() }
    }
}

/// `tenant`'s seals, oldest first (the archive's and the verifier's one reading of them).
pub(crate) async fn seals(
    conn: &impl sea_orm::ConnectionTrait,
    tenant: Uuid,
) -> anyhow::Result<Vec<audit_seal::Model>> {
    Ok(audit_seal::Entity::find()
        .filter(audit_seal::Column::TenantId.eq(tenant))
        .order_by_asc(audit_seal::Column::Seq)
        .all(conn)
        .await?)
}

/// Where each chain starts after `seals` (oldest first): its latest seal, by chain.
pub(crate) fn seal_starts(seals: Vec<audit_seal::Model>) -> std::collections::HashMap<i16, Start> {
    seals.into_iter().map(|s| (s.chain, Start { seq: s.seq, hash: s.hash })).collect()
}

/// Why `row` does not follow a chain that so far ends at `prev` with `expected_seq` next, if it
/// does not: the one check the verifier and the archive share.
pub(crate) fn link_broken(row: &audit_log::Model, expected_seq: i64, prev: &str) -> Option<String> {
    if row.seq != expected_seq {
        Some(format!("row {expected_seq} is missing (next is {})", row.seq))
    } else if row.prev_hash != prev {
        Some("prev_hash does not match the previous row's hash".to_string())
    } else if row_hash(row) != row.hash {
        Some("contents do not match the row's hash (edited)".to_string())
    } else {
        None
    }
}

/// Walks one chain from its start in pages and checks its end against the chain's head.
async fn walk(tx: &Tx, tenant: Uuid, chain: i16, start: Start) -> anyhow::Result<Walked> {
    let sealed = start.seq;
    let mut prev = start.hash;
    let mut expected_seq = sealed + 1;
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
            if let Some(reason) = link_broken(&row, expected_seq, &prev) {
                let id = (row.seq == expected_seq).then_some(row.id);
                return Ok(Walked {
                    rows: (expected_seq - 1 - sealed) as u64,
                    broken: Some((expected_seq, id, reason)),
                });
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
    Ok(Walked { rows: (checked - sealed) as u64, broken })
}
