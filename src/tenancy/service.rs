//! Tenancy use cases: applying tenant files, and reading the registry and institution tree.

use std::collections::HashMap;

use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder, Set,
};
use uuid::Uuid;

use super::domain::InstitutionKind;
use super::entity::{department, institution, tenant};
use super::file::TenantSpec;
use crate::identity::ctx::{Perm, RequestCtx};
use crate::platform::{AppError, AppResult, Db, SystemScope};

/// A tenant as other contexts see it.
#[derive(Debug, Clone)]
pub struct TenantInfo {
    pub id: Uuid,
    pub code: String,
    pub name: String,
    pub name_en: Option<String>,
    pub settings: serde_json::Value,
}

impl From<tenant::Model> for TenantInfo {
    fn from(m: tenant::Model) -> Self {
        Self { id: m.id, code: m.code, name: m.name, name_en: m.name_en, settings: m.settings }
    }
}

/// An institution as other contexts see it.
#[derive(Debug, Clone)]
pub struct InstitutionInfo {
    pub id: Uuid,
    pub code: String,
    pub name: String,
    pub name_en: Option<String>,
    pub kind: InstitutionKind,
    pub division_code: String,
    pub parent_id: Option<Uuid>,
}

impl From<institution::Model> for InstitutionInfo {
    fn from(m: institution::Model) -> Self {
        Self {
            id: m.id,
            kind: InstitutionKind::parse(&m.kind).unwrap_or(InstitutionKind::VillageClinic),
            code: m.code,
            name: m.name,
            name_en: m.name_en,
            division_code: m.division_code,
            parent_id: m.parent_id,
        }
    }
}

#[derive(Debug, Clone)]
pub struct DepartmentInfo {
    pub id: Uuid,
    pub code: String,
    pub name: String,
    pub name_en: Option<String>,
}

/// What applying a tenant file did.
#[derive(Debug, Clone, Default)]
pub struct ApplyReport {
    pub tenant_id: Uuid,
    pub created: Vec<String>,
    pub updated: Vec<String>,
    pub unchanged: usize,
}

impl ApplyReport {
    pub fn changed(&self) -> bool {
        !self.created.is_empty() || !self.updated.is_empty()
    }
}

pub async fn list_tenants(db: &Db) -> AppResult<Vec<TenantInfo>> {
    let tx = db.begin_registry().await?;
    let rows = tenant::Entity::find().order_by_asc(tenant::Column::Code).all(&tx).await?;
    tx.rollback().await?;
    Ok(rows.into_iter().map(Into::into).collect())
}

pub async fn find_tenant_by_code(db: &Db, code: &str) -> AppResult<Option<TenantInfo>> {
    let tx = db.begin_registry().await?;
    let row = tenant::Entity::find().filter(tenant::Column::Code.eq(code)).one(&tx).await?;
    tx.rollback().await?;
    Ok(row.map(Into::into))
}

pub async fn get_tenant(conn: &impl ConnectionTrait, id: Uuid) -> AppResult<TenantInfo> {
    tenant::Entity::find_by_id(id)
        .one(conn)
        .await?
        .map(Into::into)
        .ok_or_else(|| AppError::not_found("tenant_not_found", "no such tenant"))
}

/// Every institution id of the transaction's tenant.
pub async fn institution_ids(tx: &crate::platform::Tx) -> AppResult<Vec<Uuid>> {
    Ok(institution::Entity::find()
        .filter(institution::Column::TenantId.eq(tx.tenant()))
        .all(&**tx)
        .await?
        .into_iter()
        .map(|i| i.id)
        .collect())
}

pub async fn list_institutions(tx: &crate::platform::Tx) -> AppResult<Vec<InstitutionInfo>> {
    Ok(institution::Entity::find()
        .filter(institution::Column::TenantId.eq(tx.tenant()))
        .order_by_asc(institution::Column::Code)
        .all(&**tx)
        .await?
        .into_iter()
        .map(Into::into)
        .collect())
}

/// One institution of the transaction's tenant; 404 for anything else, including another
/// tenant's id.
pub async fn get_institution(tx: &crate::platform::Tx, id: Uuid) -> AppResult<InstitutionInfo> {
    institution::Entity::find_by_id((tx.tenant(), id))
        .one(&**tx)
        .await?
        .map(Into::into)
        .ok_or_else(|| AppError::not_found("institution_not_found", "no such institution in this community"))
}

pub async fn departments_of(tx: &crate::platform::Tx, institution: Uuid) -> AppResult<Vec<DepartmentInfo>> {
    Ok(department::Entity::find()
        .filter(department::Column::TenantId.eq(tx.tenant()))
        .filter(department::Column::InstitutionId.eq(institution))
        .order_by_asc(department::Column::Code)
        .all(&**tx)
        .await?
        .into_iter()
        .map(|d| DepartmentInfo { id: d.id, code: d.code, name: d.name, name_en: d.name_en })
        .collect())
}

/// The API's view: the whole tree for anyone who may read institutions.
pub async fn institutions_for(db: &Db, ctx: &RequestCtx) -> AppResult<Vec<InstitutionInfo>> {
    ctx.require(Perm::InstitutionRead)?;
    let tx = db.begin(ctx).await?;
    let list = list_institutions(&tx).await?;
    tx.rollback().await?;
    Ok(list)
}

pub async fn institution_for(db: &Db, ctx: &RequestCtx, id: Uuid) -> AppResult<(InstitutionInfo, Vec<DepartmentInfo>)> {
    ctx.require(Perm::InstitutionRead)?;
    let tx = db.begin(ctx).await?;
    let inst = get_institution(&tx, id).await?;
    let depts = departments_of(&tx, id).await?;
    tx.rollback().await?;
    Ok((inst, depts))
}

/// Applies a validated tenant file in one transaction: creates what is missing, updates what
/// differs, and never deletes. Applying the same file twice changes nothing.
pub async fn apply(db: &Db, spec: &TenantSpec) -> AppResult<ApplyReport> {
    let existing = find_tenant_by_code(db, &spec.code).await?;
    let tenant_id = existing.as_ref().map(|t| t.id).unwrap_or_else(Uuid::now_v7);
    let scope = SystemScope { tenant: tenant_id };
    // Password hashing is slow: do it before the transaction opens.
    let credentials = crate::identity::service::prepare_credentials(db, &scope, &spec.users).await?;

    let mut report = ApplyReport { tenant_id, ..Default::default() };
    let tx = db.begin(&scope).await?;
    let now = Utc::now();
    match tenant::Entity::find_by_id(tenant_id).one(&*tx).await? {
        None => {
            tenant::ActiveModel {
                id: Set(tenant_id),
                code: Set(spec.code.clone()),
                name: Set(spec.name.clone()),
                name_en: Set(spec.name_en.clone()),
                settings: Set(spec.settings.clone()),
                created_at: Set(now),
                updated_at: Set(now),
            }
            .insert(&*tx)
            .await?;
            report.created.push(format!("tenant {}", spec.code));
        }
        Some(t) if t.name != spec.name || t.name_en != spec.name_en || t.settings != spec.settings => {
            let mut am = t.into_active_model();
            am.name = Set(spec.name.clone());
            am.name_en = Set(spec.name_en.clone());
            am.settings = Set(spec.settings.clone());
            am.updated_at = Set(now);
            am.update(&*tx).await?;
            report.updated.push(format!("tenant {}", spec.code));
        }
        Some(_) => report.unchanged += 1,
    }

    let existing: HashMap<String, institution::Model> = institution::Entity::find()
        .filter(institution::Column::TenantId.eq(tenant_id))
        .all(&*tx)
        .await?
        .into_iter()
        .map(|i| (i.code.clone(), i))
        .collect();
    let mut ids: HashMap<String, Uuid> = existing.iter().map(|(c, i)| (c.clone(), i.id)).collect();
    for inst in &spec.institutions {
        let parent_id = inst.parent.as_ref().map(|p| ids[p]);
        match existing.get(&inst.code) {
            None => {
                let id = Uuid::now_v7();
                institution::ActiveModel {
                    tenant_id: Set(tenant_id),
                    id: Set(id),
                    code: Set(inst.code.clone()),
                    name: Set(inst.name.clone()),
                    name_en: Set(inst.name_en.clone()),
                    kind: Set(inst.kind.as_str().into()),
                    division_code: Set(inst.division.as_str().into()),
                    parent_id: Set(parent_id),
                    created_at: Set(now),
                    updated_at: Set(now),
                }
                .insert(&*tx)
                .await?;
                ids.insert(inst.code.clone(), id);
                report.created.push(format!("institution {}", inst.code));
            }
            Some(row)
                if row.name != inst.name
                    || row.name_en != inst.name_en
                    || row.kind != inst.kind.as_str()
                    || row.division_code != inst.division.as_str()
                    || row.parent_id != parent_id =>
            {
                let mut am = row.clone().into_active_model();
                am.name = Set(inst.name.clone());
                am.name_en = Set(inst.name_en.clone());
                am.kind = Set(inst.kind.as_str().into());
                am.division_code = Set(inst.division.as_str().into());
                am.parent_id = Set(parent_id);
                am.updated_at = Set(now);
                am.update(&*tx).await?;
                report.updated.push(format!("institution {}", inst.code));
            }
            Some(_) => report.unchanged += 1,
        }
        apply_departments(&tx, ids[&inst.code], inst, &mut report).await?;
    }

    crate::identity::service::apply_users(&tx, &ids, &spec.users, &credentials, &mut report).await?;
    let stock_lists: Vec<(Uuid, Option<Vec<String>>)> =
        spec.institutions.iter().map(|i| (ids[&i.code], i.formulary.clone())).collect();
    crate::pharmacy::service::apply_formulary(&tx, &spec.formulary, &stock_lists, &mut report).await?;
    crate::billing::service::apply_fee_schedule(&tx, &spec.fee_schedule, &mut report).await?;
    crate::accounts::service::apply_chart(&tx, &spec.chart, &mut report).await?;
    tx.commit().await?;
    Ok(report)
}

async fn apply_departments(
    tx: &crate::platform::Tx,
    institution_id: Uuid,
    inst: &super::file::InstitutionSpec,
    report: &mut ApplyReport,
) -> AppResult<()> {
    let existing: HashMap<String, department::Model> = department::Entity::find()
        .filter(department::Column::TenantId.eq(tx.tenant()))
        .filter(department::Column::InstitutionId.eq(institution_id))
        .all(&**tx)
        .await?
        .into_iter()
        .map(|d| (d.code.clone(), d))
        .collect();
    for d in &inst.departments {
        match existing.get(&d.code) {
            None => {
                department::ActiveModel {
                    tenant_id: Set(tx.tenant()),
                    id: Set(Uuid::now_v7()),
                    institution_id: Set(institution_id),
                    code: Set(d.code.clone()),
                    name: Set(d.name.clone()),
                    name_en: Set(d.name_en.clone()),
                    created_at: Set(Utc::now()),
                }
                .insert(&**tx)
                .await?;
                report.created.push(format!("department {}/{}", inst.code, d.code));
            }
            Some(row) if row.name != d.name || row.name_en != d.name_en => {
                let mut am = row.clone().into_active_model();
                am.name = Set(d.name.clone());
                am.name_en = Set(d.name_en.clone());
                am.update(&**tx).await?;
                report.updated.push(format!("department {}/{}", inst.code, d.code));
            }
            Some(_) => report.unchanged += 1,
        }
    }
    Ok(())
}
