//! Applying a validated tenant file in one transaction: creates what is missing, updates what
//! differs, and never deletes. Applying the same file twice changes nothing.

use std::collections::HashMap;

use uuid::Uuid;

use super::file::TenantSpec;
use crate::platform::{AppResult, Db, SystemScope};
use crate::tenancy::domain::ApplyReport;

pub async fn apply(db: &Db, spec: &TenantSpec) -> AppResult<ApplyReport> {
    let existing = crate::tenancy::service::find_tenant_by_code(db, &spec.code).await?;
    let tenant_id = existing.as_ref().map(|t| t.id).unwrap_or_else(Uuid::now_v7);
    let scope = SystemScope { tenant: tenant_id };
    // Password hashing is slow: do it before the transaction opens.
    let credentials = crate::identity::service::prepare_credentials(db, &scope, &spec.users).await?;

    let mut report = ApplyReport { tenant_id, ..Default::default() };
    let applied = write(db, spec, &scope, &credentials, &mut report).await;
    // The institution tree this process kept is stale now (or held what did not commit).
    crate::tenancy::service::forget_tree(db, Some(tenant_id));
    applied.map(|()| report)
}

async fn write(
    db: &Db,
    spec: &TenantSpec,
    scope: &SystemScope,
    credentials: &HashMap<String, Option<String>>,
    report: &mut ApplyReport,
) -> AppResult<()> {
    let tx = db.begin(scope).await?;
    let name_en = spec.name_en.as_deref();
    crate::tenancy::service::apply_tenant(&tx, &spec.code, &spec.name, name_en, &spec.settings, report).await?;
    let ids = crate::tenancy::service::apply_institutions(&tx, &spec.institutions, report).await?;
    crate::identity::service::apply_users(&tx, &ids, &spec.users, credentials, report).await?;
    let stock_lists: Vec<(Uuid, Option<Vec<String>>)> =
        spec.institutions.iter().map(|i| (ids[&i.code], i.formulary.clone())).collect();
    crate::pharmacy::service::apply_formulary(&tx, &spec.formulary, &stock_lists, report).await?;
    crate::billing::service::apply_fee_schedule(&tx, &spec.fee_schedule, report).await?;
    crate::accounts::service::apply_chart(&tx, &spec.chart, report).await?;
    tx.commit().await?;
    Ok(())
}
