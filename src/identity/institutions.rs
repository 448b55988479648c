//! Institutions API: the community's tree, readable by everyone who works in it. Served here,
//! above tenancy, because reading it takes the request context.

use poem::web::Data;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi};
use uuid::Uuid;

use crate::identity::ctx::Auth;
use crate::identity::ctx::{Perm, RequestCtx};
use crate::platform::AppError;
use crate::platform::api_tags::ApiTags;
use crate::platform::state::AppState;
use crate::platform::{AppResult, Db};
use crate::tenancy::domain::InstitutionKind;
use crate::tenancy::service::{
    DepartmentInfo, InstitutionInfo, TenantInfo, departments_of, get_institution, list_institutions,
};

#[derive(Debug, Clone, Copy, Enum, PartialEq, Eq)]
#[oai(rename_all = "snake_case")]
pub enum InstitutionKindDto {
    CountyHospital,
    TownshipHealthCentre,
    VillageClinic,
    HealthBureau,
}

impl From<InstitutionKind> for InstitutionKindDto {
    fn from(k: InstitutionKind) -> Self {
        match k {
            InstitutionKind::CountyHospital => Self::CountyHospital,
            InstitutionKind::TownshipHealthCentre => Self::TownshipHealthCentre,
            InstitutionKind::VillageClinic => Self::VillageClinic,
            InstitutionKind::HealthBureau => Self::HealthBureau,
        }
    }
}

#[derive(Debug, Clone, Object)]
pub struct InstitutionDto {
    pub id: Uuid,
    pub code: String,
    /// Chinese name
    pub name: String,
    #[oai(skip_serializing_if_is_none)]
    pub name_en: Option<String>,
    pub kind: InstitutionKindDto,
    /// Administrative division code (6, 9 or 12 digits)
    pub division_code: String,
    #[oai(skip_serializing_if_is_none)]
    pub parent_id: Option<Uuid>,
}

impl From<InstitutionInfo> for InstitutionDto {
    fn from(i: InstitutionInfo) -> Self {
        Self {
            id: i.id,
            code: i.code,
            name: i.name,
            name_en: i.name_en,
            kind: i.kind.into(),
            division_code: i.division_code,
            parent_id: i.parent_id,
        }
    }
}

#[derive(Debug, Clone, Object)]
pub struct DepartmentDto {
    pub id: Uuid,
    pub code: String,
    pub name: String,
    #[oai(skip_serializing_if_is_none)]
    pub name_en: Option<String>,
}

impl From<DepartmentInfo> for DepartmentDto {
    fn from(d: DepartmentInfo) -> Self {
        Self { id: d.id, code: d.code, name: d.name, name_en: d.name_en }
    }
}

#[derive(Debug, Clone, Object)]
pub struct InstitutionDetail {
    #[oai(flatten)]
    pub institution: InstitutionDto,
    pub departments: Vec<DepartmentDto>,
}

#[derive(Debug, Clone, Object)]
pub struct TenantDto {
    pub id: Uuid,
    pub code: String,
    pub name: String,
    #[oai(skip_serializing_if_is_none)]
    pub name_en: Option<String>,
}

impl From<TenantInfo> for TenantDto {
    fn from(t: TenantInfo) -> Self {
        Self { id: t.id, code: t.code, name: t.name, name_en: t.name_en }
    }
}

#[derive(ApiResponse)]
pub enum ListInstitutionsResponse {
    /// Every institution of the caller's community
    #[oai(status = 200)]
    Ok(Json<Vec<InstitutionDto>>),
}

#[derive(ApiResponse)]
pub enum GetInstitutionResponse {
    /// The institution and its departments
    #[oai(status = 200)]
    Ok(Json<InstitutionDetail>),
}

pub struct InstitutionsApi;

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::Institutions")]
impl InstitutionsApi {
    /// List the institutions of the community
    #[oai(path = "/institutions", method = "get", operation_id = "institutions_list")]
    async fn list(&self, state: Data<&AppState>, auth: Auth) -> Result<ListInstitutionsResponse, AppError> {
        let list = institutions_for(&state.db, &auth.0).await?;
        Ok(ListInstitutionsResponse::Ok(Json(list.into_iter().map(Into::into).collect())))
    }

    /// One institution with its departments
    #[oai(path = "/institutions/:id", method = "get", operation_id = "institutions_get")]
    async fn get(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        id: Path<Uuid>,
    ) -> Result<GetInstitutionResponse, AppError> {
        let (inst, depts) = institution_for(&state.db, &auth.0, id.0).await?;
        Ok(GetInstitutionResponse::Ok(Json(InstitutionDetail {
            institution: inst.into(),
            departments: depts.into_iter().map(Into::into).collect(),
        })))
    }
}

/// The API's view: the whole tree for anyone who may read institutions.
async fn institutions_for(db: &Db, ctx: &RequestCtx) -> AppResult<Vec<InstitutionInfo>> {
    ctx.require(Perm::InstitutionRead)?;
    let tx = db.begin(ctx).await?;
    let list = list_institutions(&tx).await?;
    tx.rollback().await?;
    Ok(list)
}

async fn institution_for(db: &Db, ctx: &RequestCtx, id: Uuid) -> AppResult<(InstitutionInfo, Vec<DepartmentInfo>)> {
    ctx.require(Perm::InstitutionRead)?;
    let tx = db.begin(ctx).await?;
    let inst = get_institution(&tx, id).await?;
    let depts = departments_of(&tx, id).await?;
    tx.rollback().await?;
    Ok((inst, depts))
}
