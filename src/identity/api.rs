//! Identity API: login/logout/session, and staff administration per institution.

use chrono::{DateTime, Utc};
use poem::Request;
use poem::web::Data;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use uuid::Uuid;

use super::ctx::Auth;
use super::domain::Role;
use super::service::{self, LoginInput, Membership, NewStaff, SessionView, StaffMember};
use crate::identity::institutions::{InstitutionDto, TenantDto};
use crate::platform::AppError;
use crate::platform::api_tags::ApiTags;
use crate::platform::state::AppState;

pub const SESSION_COOKIE: &str = "cloudhis_session";

#[derive(Object)]
pub struct LoginRequest {
    /// Tenant (medical community) code, e.g. `demo-county`
    #[oai(validator(min_length = 1, max_length = 64))]
    pub tenant: String,
    #[oai(validator(min_length = 1, max_length = 64))]
    pub username: String,
    #[oai(validator(min_length = 1, max_length = 128))]
    pub password: String,
    /// The institution to act in; defaults to the user's first (lead hospital first).
    pub institution_id: Option<Uuid>,
    /// The 6-digit one-time code, for an account with a TOTP second factor
    #[oai(validator(max_length = 10))]
    pub totp: Option<String>,
}

/// A one-time code from the authenticator app.
#[derive(Object)]
pub struct TotpCodeRequest {
    #[oai(validator(min_length = 1, max_length = 10))]
    pub code: String,
}

/// Turning the second factor off needs the password as well as a current code.
#[derive(Object)]
pub struct TotpDisableRequest {
    #[oai(validator(min_length = 1, max_length = 128))]
    pub password: String,
    #[oai(validator(min_length = 1, max_length = 10))]
    pub code: String,
}

/// A new TOTP secret, shown once: scan `uri` (or type `secret`) into an authenticator app, then
/// confirm with a code.
#[derive(Object)]
pub struct TotpSetupDto {
    /// Base32, for typing in by hand
    pub secret: String,
    /// `otpauth://totp/…`, for a QR code
    pub uri: String,
}

#[derive(ApiResponse)]
pub enum TotpSetupResponse {
    #[oai(status = 201)]
    Created(Json<TotpSetupDto>),
}

#[derive(ApiResponse)]
pub enum TotpDone {
    #[oai(status = 204)]
    Done,
}

#[derive(Object)]
pub struct SwitchRequest {
    pub institution_id: Uuid,
}

#[derive(Debug, Clone, Object)]
pub struct UserDto {
    pub id: Uuid,
    pub username: String,
    pub display_name: String,
    pub active: bool,
}

impl From<super::entity::user::Model> for UserDto {
    fn from(u: super::entity::user::Model) -> Self {
        Self { id: u.id, username: u.username, display_name: u.display_name, active: u.active }
    }
}

#[derive(Debug, Clone, Object)]
pub struct MembershipDto {
    pub institution: InstitutionDto,
    pub roles: Vec<Role>,
}

impl From<Membership> for MembershipDto {
    fn from(m: Membership) -> Self {
        Self { institution: m.institution.into(), roles: m.roles }
    }
}

#[derive(Debug, Clone, Object)]
pub struct SessionDto {
    /// Bearer token; only present in login and switch responses.
    #[oai(skip_serializing_if_is_none)]
    pub token: Option<String>,
    pub token_type: String,
    pub expires_at: DateTime<Utc>,
    pub user: UserDto,
    pub tenant: TenantDto,
    /// The institution this session acts in
    pub institution_id: Uuid,
    /// Roles held in that institution
    pub roles: Vec<Role>,
    /// Every institution the user works in
    pub institutions: Vec<MembershipDto>,
}

impl From<SessionView> for SessionDto {
    fn from(v: SessionView) -> Self {
        Self {
            token: v.token,
            token_type: "Bearer".into(),
            expires_at: v.expires_at,
            user: v.user.into(),
            tenant: v.tenant.into(),
            institution_id: v.institution,
            roles: v.roles,
            institutions: v.memberships.into_iter().map(Into::into).collect(),
        }
    }
}

#[derive(ApiResponse)]
pub enum LoginResponse {
    /// Logged in. The token is also set as an HttpOnly session cookie for the browser.
    #[oai(status = 200)]
    Ok(Json<SessionDto>, #[oai(header = "Set-Cookie")] String),
}

#[derive(ApiResponse)]
pub enum LogoutResponse {
    /// The token is revoked everywhere and the cookie cleared
    #[oai(status = 204)]
    LoggedOut(#[oai(header = "Set-Cookie")] String),
}

#[derive(ApiResponse)]
pub enum SessionResponse {
    #[oai(status = 200)]
    Ok(Json<SessionDto>),
}

#[derive(Debug, Clone, Object)]
pub struct StaffDto {
    #[oai(flatten)]
    pub user: UserDto,
    /// Roles held in the institution being listed
    pub roles: Vec<Role>,
}

impl From<StaffMember> for StaffDto {
    fn from(s: StaffMember) -> Self {
        Self { user: s.user.into(), roles: s.roles }
    }
}

#[derive(Object)]
pub struct NewStaffRequest {
    #[oai(validator(min_length = 3, max_length = 64))]
    pub username: String,
    #[oai(validator(min_length = 1, max_length = 100))]
    pub display_name: String,
    /// At least 8 characters mixing three of: lower case, upper case, digits, symbols.
    #[oai(validator(min_length = 8, max_length = 128))]
    pub password: String,
    #[oai(validator(min_items = 1, max_items = 10))]
    pub roles: Vec<Role>,
}

#[derive(Debug, Clone, Object)]
pub struct UserDetailDto {
    #[oai(flatten)]
    pub user: UserDto,
    pub institutions: Vec<MembershipDto>,
}

#[derive(ApiResponse)]
pub enum ListStaffResponse {
    #[oai(status = 200)]
    Ok(Json<Vec<StaffDto>>),
}

#[derive(ApiResponse)]
pub enum CreateStaffResponse {
    #[oai(status = 201)]
    Created(Json<StaffDto>),
}

#[derive(ApiResponse)]
pub enum GetUserResponse {
    #[oai(status = 200)]
    Ok(Json<UserDetailDto>),
}

#[derive(ApiResponse)]
pub enum UserResponse {
    #[oai(status = 200)]
    Ok(Json<UserDto>),
}

#[derive(ApiResponse)]
pub enum RoleChangeResponse {
    /// Done; takes effect on every replica at once
    #[oai(status = 204)]
    Done,
}

pub struct AuthApi;

/// The browser's session cookie: HttpOnly, same-site only, `Secure` behind TLS.
pub fn session_cookie(state: &AppState, token: &str, max_age: i64) -> String {
    crate::platform::http::cookie(SESSION_COOKIE, token, "/", max_age, state.config.cookie_secure)
}

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::Auth")]
impl AuthApi {
    /// Log in with tenant code, username and password
    ///
    /// A wrong tenant, username or password all get the same 401. After 5 failures within a
    /// minute for one user (or 50 from one address) further attempts get 429 until the minute
    /// is over. An account with a TOTP second factor also needs `totp`: without it 401
    /// `totp_required`, wrong or reused 401 `totp_invalid` (a failure).
    #[oai(path = "/auth/login", method = "post", operation_id = "auth_login")]
    async fn login(
        &self,
        state: Data<&AppState>,
        req: &Request,
        body: Json<LoginRequest>,
    ) -> Result<LoginResponse, AppError> {
        let body = body.0;
        let client_ip =
            req.remote_addr().as_socket_addr().map(|a| a.ip().to_string()).unwrap_or_else(|| "unknown".into());
        let view = service::login(
            &state,
            LoginInput {
                tenant: body.tenant,
                username: body.username,
                password: body.password,
                institution_id: body.institution_id,
                client_ip,
                totp: body.totp,
            },
        )
        .await?;
        let cookie = session_cookie(
            &state,
            view.token.as_deref().unwrap_or_default(),
            state.config.session_ttl.as_secs() as i64,
        );
        Ok(LoginResponse::Ok(Json(view.into()), cookie))
    }

    /// Start a TOTP second factor for the caller (administrators); confirm it with a code
    #[oai(path = "/auth/totp", method = "post", operation_id = "auth_totp_setup")]
    async fn totp_setup(&self, state: Data<&AppState>, auth: Auth) -> Result<TotpSetupResponse, AppError> {
        let s = service::totp_setup(&state, &auth.0).await?;
        Ok(TotpSetupResponse::Created(Json(TotpSetupDto { secret: s.secret, uri: s.uri })))
    }

    /// Confirm the pending TOTP secret with a current code: from then on logins need a code
    #[oai(path = "/auth/totp/confirm", method = "post", operation_id = "auth_totp_confirm")]
    async fn totp_confirm(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        body: Json<TotpCodeRequest>,
    ) -> Result<TotpDone, AppError> {
        service::totp_confirm(&state, &auth.0, &body.0.code).await?;
        Ok(TotpDone::Done)
    }

    /// Turn the caller's TOTP second factor off, with the password and a current code (wrong attempts count toward the lockout)
    #[oai(path = "/auth/totp/disable", method = "post", operation_id = "auth_totp_disable")]
    async fn totp_disable(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        body: Json<TotpDisableRequest>,
    ) -> Result<TotpDone, AppError> {
        let b = body.0;
        service::totp_disable(&state, &auth.0, b.password, &b.code).await?;
        Ok(TotpDone::Done)
    }

    /// Log out: revoke this session's token
    #[oai(path = "/auth/logout", method = "post", operation_id = "auth_logout")]
    async fn logout(&self, state: Data<&AppState>, auth: Auth) -> Result<LogoutResponse, AppError> {
        service::logout(&state, &auth.0).await?;
        Ok(LogoutResponse::LoggedOut(session_cookie(&state, "", 0)))
    }

    /// The current session: user, tenant, institution and roles
    #[oai(path = "/auth/session", method = "get", operation_id = "auth_session")]
    async fn session(&self, state: Data<&AppState>, auth: Auth) -> Result<SessionResponse, AppError> {
        Ok(SessionResponse::Ok(Json(service::session(&state, &auth.0).await?.into())))
    }

    /// Act in another institution the user works in (issues a new token, revokes this one)
    #[oai(path = "/auth/switch-institution", method = "post", operation_id = "auth_switch_institution")]
    async fn switch(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        body: Json<SwitchRequest>,
    ) -> Result<LoginResponse, AppError> {
        let view = service::switch_institution(&state, &auth.0, body.0.institution_id).await?;
        let cookie = session_cookie(
            &state,
            view.token.as_deref().unwrap_or_default(),
            state.config.session_ttl.as_secs() as i64,
        );
        Ok(LoginResponse::Ok(Json(view.into()), cookie))
    }
}

pub struct StaffApi;

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::Staff")]
impl StaffApi {
    /// Staff of an institution, with their roles there
    #[oai(path = "/institutions/:id/staff", method = "get", operation_id = "staff_list")]
    async fn list(&self, state: Data<&AppState>, auth: Auth, id: Path<Uuid>) -> Result<ListStaffResponse, AppError> {
        let staff = service::list_staff(&state, &auth.0, id.0).await?;
        Ok(ListStaffResponse::Ok(Json(staff.into_iter().map(Into::into).collect())))
    }

    /// Create a staff account in an institution
    #[oai(path = "/institutions/:id/staff", method = "post", operation_id = "staff_create")]
    async fn create(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        id: Path<Uuid>,
        body: Json<NewStaffRequest>,
    ) -> Result<CreateStaffResponse, AppError> {
        let b = body.0;
        let member = service::create_staff(
            &state,
            &auth.0,
            id.0,
            NewStaff { username: b.username, display_name: b.display_name, password: b.password, roles: b.roles },
        )
        .await?;
        Ok(CreateStaffResponse::Created(Json(member.into())))
    }

    /// Grant a role in an institution (idempotent)
    #[oai(path = "/institutions/:id/staff/:user_id/roles/:role", method = "put", operation_id = "staff_role_grant")]
    async fn grant(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        id: Path<Uuid>,
        user_id: Path<Uuid>,
        role: Path<Role>,
    ) -> Result<RoleChangeResponse, AppError> {
        service::grant_role(&state, &auth.0, id.0, user_id.0, role.0).await?;
        Ok(RoleChangeResponse::Done)
    }

    /// Revoke a role in an institution
    #[oai(path = "/institutions/:id/staff/:user_id/roles/:role", method = "delete", operation_id = "staff_role_revoke")]
    async fn revoke(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        id: Path<Uuid>,
        user_id: Path<Uuid>,
        role: Path<Role>,
    ) -> Result<RoleChangeResponse, AppError> {
        service::revoke_role(&state, &auth.0, id.0, user_id.0, role.0).await?;
        Ok(RoleChangeResponse::Done)
    }

    /// Deactivate a user: no more logins, and every session and open stream of theirs ends at
    /// once. Needs staff administration everywhere the user works.
    #[oai(path = "/users/:id/deactivate", method = "post", operation_id = "users_deactivate")]
    async fn deactivate(&self, state: Data<&AppState>, auth: Auth, id: Path<Uuid>) -> Result<UserResponse, AppError> {
        Ok(UserResponse::Ok(Json(service::set_active(&state, &auth.0, id.0, false).await?.into())))
    }

    /// Reactivate a user: they may log in again
    #[oai(path = "/users/:id/reactivate", method = "post", operation_id = "users_reactivate")]
    async fn reactivate(&self, state: Data<&AppState>, auth: Auth, id: Path<Uuid>) -> Result<UserResponse, AppError> {
        Ok(UserResponse::Ok(Json(service::set_active(&state, &auth.0, id.0, true).await?.into())))
    }

    /// A user and the institutions they work in
    #[oai(path = "/users/:id", method = "get", operation_id = "users_get")]
    async fn get_user(&self, state: Data<&AppState>, auth: Auth, id: Path<Uuid>) -> Result<GetUserResponse, AppError> {
        let (user, memberships) = service::get_user(&state, &auth.0, id.0).await?;
        Ok(GetUserResponse::Ok(Json(UserDetailDto {
            user: user.into(),
            institutions: memberships.into_iter().map(Into::into).collect(),
        })))
    }
}
