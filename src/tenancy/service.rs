//! Tenancy use cases: reading the registry and the institution tree, and writing the parts of
//! a tenant file that are tenancy's (the registry row, institutions, departments).

use std::collections::HashMap;
use std::sync::Arc;

use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder, Set,
};
use uuid::Uuid;

use super::domain::{ApplyReport, InstitutionKind, InstitutionSpec};
use super::entity::{department, institution, tenant};
use crate::platform::codes;
use crate::platform::{AppError, AppResult, Db, Tx};

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
        .ok_or_else(|| AppError::new(codes::TENANT_NOT_FOUND, "no such tenant"))
}

/// Every institution id of the transaction's tenant.
pub async fn institution_ids(tx: &Tx) -> AppResult<Vec<Uuid>> {
    Ok(tree(tx).await?.iter().map(|i| i.id).collect())
}

/// The tenant's institutions, ordered by code.
pub async fn list_institutions(tx: &Tx) -> AppResult<Vec<InstitutionInfo>> {
    Ok(tree(tx).await?.as_ref().clone())
}

/// One institution of the transaction's tenant; 404 for anything else, including another
/// tenant's id. One this process has not seen yet (added by another) is read from the database.
pub async fn get_institution(tx: &Tx, id: Uuid) -> AppResult<InstitutionInfo> {
    if let Some(i) = tree(tx).await?.iter().find(|i| i.id == id) {
        return Ok(i.clone());
    }
    institution::Entity::find_by_id((tx.tenant(), id))
        .one(&**tx)
        .await?
        .map(Into::into)
        .ok_or_else(|| AppError::new(codes::INSTITUTION_NOT_FOUND, "no such institution in this community"))
}

/// The tenant's institution tree, ordered by code: from the process's memo (read on nearly every
/// request, changed only by a tenant file), else read in `tx` and kept. Writers of the tree
/// drop the memo when their transaction ends ([`forget_tree`]).
async fn tree(tx: &Tx) -> AppResult<Arc<Vec<InstitutionInfo>>> {
    if let Some(tree) = tx.memo().and_then(|m| m.get::<Vec<InstitutionInfo>>(tx.tenant())) {
        return Ok(tree);
    }
    let since = tx.memo().map(|m| m.generation());
    let tree: Arc<Vec<InstitutionInfo>> = Arc::new(
        institution::Entity::find()
            .filter(institution::Column::TenantId.eq(tx.tenant()))
            .order_by_asc(institution::Column::Code)
            .all(&**tx)
            .await?
            .into_iter()
            .map(Into::into)
            .collect(),
    );
    if let (Some(memo), Some(since)) = (tx.memo(), since) {
        memo.keep(tx.tenant(), since, tree.clone());
    }
    Ok(tree)
}

/// Drops this process's memo of `tenant`'s tree (after a transaction that wrote it ended, or
/// when another process says it changed).
pub fn forget_tree(db: &Db, tenant: Option<Uuid>) {
    db.memo().forget(tenant);
}

pub async fn departments_of(tx: &Tx, institution: Uuid) -> AppResult<Vec<DepartmentInfo>> {
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

/// For tenant files: creates the tenant's registry row, or updates its names and settings. On
/// PostgreSQL the app role may not write `tenants`: `tenant_apply` does, for `tx`'s tenant only.
pub async fn apply_tenant(
    tx: &Tx,
    code: &str,
    name: &str,
    name_en: Option<&str>,
    settings: &serde_json::Value,
    report: &mut ApplyReport,
) -> AppResult<()> {
    if tx.get_database_backend() == sea_orm::DbBackend::Postgres {
        let row = tx
            .query_one_raw(sea_orm::Statement::from_sql_and_values(
                sea_orm::DbBackend::Postgres,
                "SELECT tenant_apply($1, $2, $3, $4, $5) AS outcome",
                [
                    tx.tenant().into(),
                    code.into(),
                    name.into(),
                    name_en.map(str::to_string).into(),
                    settings.clone().into(),
                ],
            ))
            .await?
            .ok_or_else(|| AppError::internal(anyhow::anyhow!("tenant_apply returned nothing")))?;
        match row.try_get::<String>("", "outcome")?.as_str() {
            "created" => report.created.push(format!("tenant {code}")),
            "updated" => report.updated.push(format!("tenant {code}")),
            _ => report.unchanged += 1,
        }
        return Ok(());
    }
    let now = Utc::now();
    match tenant::Entity::find_by_id(tx.tenant()).one(&**tx).await? {
        None => {
            tenant::ActiveModel {
                id: Set(tx.tenant()),
                code: Set(code.to_string()),
                name: Set(name.to_string()),
                name_en: Set(name_en.map(str::to_string)),
                settings: Set(settings.clone()),
                created_at: Set(now),
                updated_at: Set(now),
            }
            .insert(&**tx)
            .await?;
            report.created.push(format!("tenant {code}"));
        }
        Some(t) if t.name != name || t.name_en.as_deref() != name_en || &t.settings != settings => {
            let mut am = t.into_active_model();
            am.name = Set(name.to_string());
            am.name_en = Set(name_en.map(str::to_string));
            am.settings = Set(settings.clone());
            am.updated_at = Set(now);
            am.update(&**tx).await?;
            report.updated.push(format!("tenant {code}"));
        }
        Some(_) => report.unchanged += 1,
    }
    Ok(())
}

/// For tenant files: creates or updates institutions (parents first) and their departments.
/// Never deletes. Returns every institution's id by code.
pub async fn apply_institutions(
    tx: &Tx,
    institutions: &[InstitutionSpec],
    report: &mut ApplyReport,
) -> AppResult<HashMap<String, Uuid>> {
    tx.writes_memoised();
    let now = Utc::now();
    let existing: HashMap<String, institution::Model> = institution::Entity::find()
        .filter(institution::Column::TenantId.eq(tx.tenant()))
        .all(&**tx)
        .await?
        .into_iter()
        .map(|i| (i.code.clone(), i))
        .collect();
    let mut ids: HashMap<String, Uuid> = existing.iter().map(|(c, i)| (c.clone(), i.id)).collect();
    for inst in institutions {
        let parent_id = inst.parent.as_ref().map(|p| ids[p]);
        match existing.get(&inst.code) {
            None => {
                let id = Uuid::now_v7();
                institution::ActiveModel {
                    tenant_id: Set(tx.tenant()),
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
                .insert(&**tx)
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
                am.update(&**tx).await?;
                report.updated.push(format!("institution {}", inst.code));
            }
            Some(_) => report.unchanged += 1,
        }
        apply_departments(tx, ids[&inst.code], inst, report).await?;
    }
    Ok(ids)
}

async fn apply_departments(
    tx: &Tx,
    institution_id: Uuid,
    inst: &InstitutionSpec,
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
