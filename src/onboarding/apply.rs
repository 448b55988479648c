//! Applying a validated tenant file in one transaction: creates what is missing, updates what
//! differs, and never deletes. Applying the same file twice changes nothing.

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
    let tx = db.begin(&scope).await?;
    let name_en = spec.name_en.as_deref();
    crate::tenancy::service::apply_tenant(&tx, &spec.code, &spec.name, name_en, &spec.settings, &mut report).await?;
    let ids = crate::tenancy::service::apply_institutions(&tx, &spec.institutions, &mut report).await?;
    crate::identity::service::apply_users(&tx, &ids, &spec.users, &credentials, &mut report).await?;
    let stock_lists: Vec<(Uuid, Option<Vec<String>>)> =
        spec.institutions.iter().map(|i| (ids[&i.code], i.formulary.clone())).collect();
    crate::pharmacy::service::apply_formulary(&tx, &spec.formulary, &stock_lists, &mut report).await?;
    crate::billing::service::apply_fee_schedule(&tx, &spec.fee_schedule, &mut report).await?;
    crate::accounts::service::apply_chart(&tx, &spec.chart, &mut report).await?;
    tx.commit().await?;
    Ok(report)
}
