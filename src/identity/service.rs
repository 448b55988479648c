//! Identity use cases: login and logout, the session's view of itself, staff and role
//! administration, and the users part of tenant files.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder, Set};
use uuid::Uuid;

use super::ctx::{Perm, RequestCtx};
use super::domain::{Credential, Role, RoleAt, UserSpec, check_password_strength, check_username};
use super::entity::{role_binding, user, user_totp};
use super::password;
use super::totp;
use crate::platform::audit::{AuditEntry, Outcome, Purpose};
use crate::platform::cache::{Notice, RESYNC};
use crate::platform::codes;
use crate::platform::state::AppState;
use crate::platform::{AppError, AppResult, Db, SystemScope, TenantScope, Tx};
use crate::tenancy::domain::ApplyReport;
use crate::tenancy::service::{InstitutionInfo, TenantInfo};

/// One institution a user works in, with the roles held there.
#[derive(Debug, Clone)]
pub struct Membership {
    pub institution: InstitutionInfo,
    pub roles: Vec<Role>,
}

#[derive(Debug, Clone)]
pub struct SessionView {
    pub token: Option<String>,
    pub expires_at: DateTime<Utc>,
    pub user: user::Model,
    pub tenant: TenantInfo,
    pub institution: Uuid,
    pub roles: Vec<Role>,
    pub memberships: Vec<Membership>,
}

pub struct LoginInput {
    pub tenant: String,
    pub username: String,
    pub password: String,
    pub institution_id: Option<Uuid>,
    pub client_ip: String,
    /// The current code of the account's TOTP second factor, when it has one.
    pub totp: Option<String>,
}

const WINDOW: Duration = Duration::from_secs(60);
/// An address may fail this many times the per-user limit (a clinic shares one address).
const ADDRESS_FACTOR: u64 = 10;

fn revoked_key(jti: Uuid) -> String {
    format!("session:revoked:{jti}")
}

/// Verifies a bearer token and builds the request context.
pub async fn authenticate(state: &AppState, token: &str, request_id: Option<String>) -> AppResult<RequestCtx> {
    let claims = state.keys.verify(token)?;
    if state.cache.has_flag(&revoked_key(claims.jti)).await? {
        return Err(AppError::Unauthenticated);
    }
    let enforcer = state.authz.enforcer(claims.tid).await?;
    let ctx = RequestCtx::new(claims.tid, claims.sub, claims.ins, (claims.jti, claims.exp), request_id, enforcer);
    // No role left in the session's institution (revoked, or the user was deactivated).
    if ctx.roles.is_empty() {
        return Err(AppError::Unauthenticated);
    }
    Ok(ctx)
}

pub async fn login(state: &AppState, input: LoginInput) -> AppResult<SessionView> {
    let user_key = format!("login:user:{}:{}", input.tenant, input.username);
    let addr_key = format!("login:addr:{}", input.client_ip);
    refuse_when_limited(state, &input, &user_key, &addr_key).await?;
    let tenant = crate::tenancy::service::find_tenant_by_code(&state.db, &input.tenant).await?;
    let Some(tenant) = tenant else {
        password::verify(input.password, password::DUMMY_HASH.clone()).await;
        fail(state, &user_key, &addr_key).await?;
        return Err(AppError::InvalidCredentials);
    };
    let scope = SystemScope { tenant: tenant.id };
    let mut tx = state.db.begin(&scope).await?;
    let found = user::Entity::find()
        .filter(user::Column::TenantId.eq(tenant.id))
        .filter(user::Column::Username.eq(&input.username))
        .one(&*tx)
        .await?;
    let verified = match &found {
        Some(u) if u.active => password::verify(input.password, u.password_hash.clone()).await,
        _ => {
            password::verify(input.password, password::DUMMY_HASH.clone()).await;
            false
        }
    };
    let Some(user) = found.filter(|_| verified) else {
        tx.audit(AuditEntry::new("auth.login", "session", Purpose::Authentication).outcome(Outcome::Denied));
        tx.commit().await?;
        fail(state, &user_key, &addr_key).await?;
        return Err(AppError::InvalidCredentials);
    };
    if let Some(err) = second_factor_refusal(state, &tx, &user, input.totp.as_deref()).await? {
        tx.audit(
            AuditEntry::new("auth.login", "session", Purpose::Authentication)
                .actor(user.id, input.institution_id.unwrap_or_default())
                .resource(err.code())
                .outcome(Outcome::Denied),
        );
        tx.commit().await?;
        if err.is(codes::TOTP_INVALID) {
            fail(state, &user_key, &addr_key).await?;
        }
        return Err(err);
    }
    state.cache.delete(&user_key).await?;

    let memberships = memberships(&tx, user.id).await?;
    let chosen = match input.institution_id {
        Some(id) => memberships.iter().find(|m| m.institution.id == id),
        None => memberships.first(),
    };
    let Some(chosen) = chosen else {
        tx.audit(
            AuditEntry::new("auth.login", "session", Purpose::Authentication)
                .actor(user.id, input.institution_id.unwrap_or_default())
                .outcome(Outcome::Denied),
        );
        tx.commit().await?;
        return Err(if memberships.is_empty() {
            AppError::new(codes::NO_ROLES, "this account holds no role in any institution")
        } else {
            AppError::new(codes::INSTITUTION_FORBIDDEN, "you hold no role in that institution")
        });
    };
    let institution = chosen.institution.id;
    let roles = chosen.roles.clone();
    let (token, claims) = state.keys.issue(tenant.id, user.id, institution, state.config.session_ttl)?;
    tx.audit(
        AuditEntry::new("auth.login", "session", Purpose::Authentication)
            .actor(user.id, institution)
            .resource(claims.jti),
    );
    tx.commit().await?;
    tracing::info!(tenant.id = %tenant.id, user.id = %user.id, institution.id = %institution, "login");
    Ok(SessionView {
        token: Some(token),
        expires_at: crate::platform::token::expires_at(&claims),
        user,
        tenant,
        institution,
        roles,
        memberships,
    })
}

/// 429 while the account or the address has failed too often this minute. Recorded in the
/// community's trail when the community exists (an unknown code has no trail to write to; the
/// access log has the request), once per account and window, so a flood of refused attempts
/// does not become a flood of audit writes.
async fn refuse_when_limited(state: &AppState, input: &LoginInput, user_key: &str, addr_key: &str) -> AppResult<()> {
    let max = state.config.login_max_failures;
    let (user_failures, user_reset) = state.cache.count(user_key).await?;
    let (addr_failures, addr_reset) = state.cache.count(addr_key).await?;
    if user_failures < max && addr_failures < max * ADDRESS_FACTOR {
        return Ok(());
    }
    let wait = user_reset.max(addr_reset).as_secs().max(1);
    let first = state.cache.hit(&format!("login:limited:{}:{}", input.tenant, input.username), WINDOW).await? == 1;
    if first && let Some(tenant) = crate::tenancy::service::find_tenant_by_code(&state.db, &input.tenant).await? {
        let mut tx = state.db.begin(&SystemScope { tenant: tenant.id }).await?;
        tx.audit(
            AuditEntry::new("auth.login", "session", Purpose::Authentication)
                .resource("rate_limited")
                .outcome(Outcome::Denied),
        );
        tx.commit().await?;
    }
    Err(AppError::RateLimited { retry_after_secs: wait })
}

/// Why an account with a second factor may not log in with `code`: none given (401
/// `totp_required`), or wrong or already used (401 `totp_invalid`). `None` when the code is
/// right (it is then used up) or the account has no second factor.
async fn second_factor_refusal(
    state: &AppState,
    tx: &Tx,
    user: &user::Model,
    code: Option<&str>,
) -> AppResult<Option<AppError>> {
    let Some(guard) = enabled_totp(tx, user.id).await? else { return Ok(None) };
    let Some(code) = code.map(str::trim).filter(|c| !c.is_empty()) else {
        return Ok(Some(AppError::new(codes::TOTP_REQUIRED, "this account needs its one-time code (totp)")));
    };
    let secret = totp_secret(state, &guard)?;
    Ok(match totp::verify(&secret, code, Utc::now().timestamp(), guard.last_step) {
        Some(step) if use_step(tx, user.id, step).await? => None,
        _ => Some(AppError::new(codes::TOTP_INVALID, "the one-time code is wrong or already used")),
    })
}

/// Marks `step` used, unless it (or a later one) already was: a conditional update, so two
/// logins racing with one code cannot both win.
async fn use_step(tx: &Tx, user: Uuid, step: i64) -> AppResult<bool> {
    use sea_orm::sea_query::Condition;
    let done = user_totp::Entity::update_many()
        .col_expr(user_totp::Column::LastStep, Some(step).into())
        .filter(user_totp::Column::TenantId.eq(tx.tenant()))
        .filter(user_totp::Column::UserId.eq(user))
        .filter(Condition::any().add(user_totp::Column::LastStep.is_null()).add(user_totp::Column::LastStep.lt(step)))
        .exec(&**tx)
        .await?;
    Ok(done.rows_affected == 1)
}

/// The account's confirmed TOTP second factor, if it has one.
async fn enabled_totp(tx: &Tx, user: Uuid) -> AppResult<Option<user_totp::Model>> {
    Ok(user_totp::Entity::find_by_id((tx.tenant(), user)).one(&**tx).await?.filter(|t| t.enabled_at.is_some()))
}

fn totp_secret(state: &AppState, t: &user_totp::Model) -> AppResult<Vec<u8>> {
    let hex = state
        .pii
        .decrypt(&t.secret_enc)
        .ok_or_else(|| AppError::Internal(anyhow::anyhow!("a TOTP secret does not decrypt with the PII key")))?;
    hex::decode(hex).map_err(|_| AppError::Internal(anyhow::anyhow!("a TOTP secret is malformed")))
}

/// A new TOTP secret for the caller, to be confirmed with a code before it guards logins.
pub struct TotpSetup {
    pub secret: String,
    pub uri: String,
}

/// Starts (or restarts) the caller's TOTP second factor: administrators only (a role with
/// `staff.write`), and not while one is confirmed (disable it first).
pub async fn totp_setup(state: &AppState, ctx: &RequestCtx) -> AppResult<TotpSetup> {
    ctx.require(Perm::StaffWrite)?;
    let mut tx = state.db.begin(ctx).await?;
    let existing = user_totp::Entity::find_by_id((ctx.tenant, ctx.user)).one(&*tx).await?;
    if existing.as_ref().is_some_and(|t| t.enabled_at.is_some()) {
        return Err(AppError::new(codes::TOTP_ENABLED, "a second factor is already on; disable it first"));
    }
    let secret = totp::new_secret();
    let hex = hex::encode(secret);
    let row = user_totp::ActiveModel {
        tenant_id: Set(ctx.tenant),
        user_id: Set(ctx.user),
        secret_enc: Set(state.pii.encrypt(&hex)),
        created_at: Set(Utc::now()),
        enabled_at: Set(None),
        last_step: Set(None),
    };
    match existing {
        Some(_) => row.update(&*tx).await?,
        None => row.insert(&*tx).await?,
    };
    let user = user::Entity::find_by_id((ctx.tenant, ctx.user)).one(&*tx).await?.ok_or(AppError::Unauthenticated)?;
    let tenant = crate::tenancy::service::get_tenant(&*tx, ctx.tenant).await?;
    tx.audit(ctx.audit("auth.totp_setup", "user", Purpose::Authentication).resource(ctx.user));
    tx.commit().await?;
    let b32 = totp::base32(&secret);
    let uri = totp::uri(&b32, &format!("cloudhis {}", tenant.code), &user.username);
    Ok(TotpSetup { secret: b32, uri })
}

/// Confirms the caller's pending TOTP secret with a current code: from then on it guards logins.
pub async fn totp_confirm(state: &AppState, ctx: &RequestCtx, code: &str) -> AppResult<()> {
    let mut tx = state.db.begin(ctx).await?;
    let pending = user_totp::Entity::find_by_id((ctx.tenant, ctx.user))
        .one(&*tx)
        .await?
        .filter(|t| t.enabled_at.is_none())
        .ok_or_else(|| AppError::new(codes::TOTP_NOT_PENDING, "start the set-up first (POST /auth/totp)"))?;
    let Some(step) = totp::verify(&totp_secret(state, &pending)?, code, Utc::now().timestamp(), None) else {
        return Err(AppError::new(codes::TOTP_CODE_WRONG, "the one-time code is wrong; check the phone's clock"));
    };
    let mut am = pending.into_active_model();
    am.enabled_at = Set(Some(Utc::now()));
    am.last_step = Set(Some(step));
    am.update(&*tx).await?;
    tx.audit(ctx.audit("auth.totp_enable", "user", Purpose::Authentication).resource(ctx.user));
    tx.commit().await
}

/// Turns the caller's second factor off, with the account's password and a current code (a
/// stolen session alone cannot remove it). Wrong attempts count toward the login lockout and
/// are audited.
pub async fn totp_disable(state: &AppState, ctx: &RequestCtx, password_given: String, code: &str) -> AppResult<()> {
    let mut tx = state.db.begin(ctx).await?;
    let guard = enabled_totp(&tx, ctx.user)
        .await?
        .ok_or_else(|| AppError::new(codes::TOTP_NOT_ENABLED, "this account has no second factor"))?;
    let user = user::Entity::find_by_id((ctx.tenant, ctx.user)).one(&*tx).await?.ok_or(AppError::Unauthenticated)?;
    let tenant = crate::tenancy::service::get_tenant(&*tx, ctx.tenant).await?;
    let user_key = format!("login:user:{}:{}", tenant.code, user.username);
    let (failures, reset) = state.cache.count(&user_key).await?;
    if failures >= state.config.login_max_failures {
        return Err(AppError::RateLimited { retry_after_secs: reset.as_secs().max(1) });
    }
    let password_ok = password::verify(password_given, user.password_hash.clone()).await;
    let step = totp::verify(&totp_secret(state, &guard)?, code, Utc::now().timestamp(), guard.last_step);
    let ok = match step {
        Some(step) if password_ok => use_step(&tx, ctx.user, step).await?,
        _ => false,
    };
    if !ok {
        tx.audit(
            ctx.audit("auth.totp_disable", "user", Purpose::Authentication).resource(ctx.user).outcome(Outcome::Denied),
        );
        tx.commit().await?;
        state.cache.hit(&user_key, WINDOW).await?;
        return Err(AppError::new(codes::TOTP_CODE_WRONG, "the password or the one-time code is wrong"));
    }
    user_totp::Entity::delete_by_id((ctx.tenant, ctx.user)).exec(&*tx).await?;
    tx.audit(ctx.audit("auth.totp_disable", "user", Purpose::Authentication).resource(ctx.user));
    tx.commit().await
}

async fn fail(state: &AppState, user_key: &str, addr_key: &str) -> AppResult<()> {
    state.cache.hit(user_key, WINDOW).await?;
    state.cache.hit(addr_key, WINDOW).await?;
    Ok(())
}

/// Revokes the session's token on every replica (the flag lives in the shared cache).
pub async fn logout(state: &AppState, ctx: &RequestCtx) -> AppResult<()> {
    revoke(state, ctx).await?;
    let mut tx = state.db.begin(ctx).await?;
    tx.audit(ctx.audit("auth.logout", "session", Purpose::Authentication).resource(ctx.session));
    tx.commit().await
}

async fn revoke(state: &AppState, ctx: &RequestCtx) -> AppResult<()> {
    let left = (ctx.session_expires - Utc::now().timestamp()).max(1) as u64;
    state.cache.set_flag(&revoked_key(ctx.session), Duration::from_secs(left)).await?;
    // Open streams of this session close on the notice instead of at their next check.
    if let Err(e) = state.cache.notify(SESSION_TOPIC, &ctx.session.to_string()).await {
        tracing::warn!(error = %e, "could not announce a revoked session; streams close at their next check");
    }
    Ok(())
}

/// The notice topic of a revoked session; the payload is the token id.
const SESSION_TOPIC: &str = "session";

/// Resolves once the session behind `ctx` no longer holds: logged out, the user deactivated or
/// left without a role in the session's institution, `perm` lost, or the token expired. Checks
/// again on each revocation or role notice and at least every `CLOUDHIS_STREAM_RECHECK_SECONDS`;
/// when it cannot check (a backend is down) the session counts as ended. For event streams,
/// which outlive the request that authenticated them.
pub fn session_ended(state: &AppState, ctx: &RequestCtx, perm: Perm) -> impl Future<Output = ()> + Send + 'static {
    let state = state.clone();
    let ctx = ctx.clone();
    let mut notices = Some(state.cache.subscribe());
    let mut roles = Some(state.authz.changes());
    async move {
        let left = (ctx.session_expires - Utc::now().timestamp()).max(0) as u64;
        let expiry = tokio::time::sleep(Duration::from_secs(left));
        tokio::pin!(expiry);
        // One clock for the periodic re-check: notices about other sessions must not keep
        // postponing it (a change made by another process without Redis is seen only by it).
        let mut recheck = tokio::time::interval(state.config.stream_recheck);
        recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        recheck.tick().await;
        loop {
            tokio::select! {
                _ = &mut expiry => return,
                _ = recheck.tick() => {}
                n = recv_notice(&mut notices) => {
                    // Another session's logout or an unrelated notice: nothing to check.
                    let mine = |n: &Notice| n.topic == SESSION_TOPIC && n.payload == ctx.session.to_string();
                    if n.is_some_and(|n| !mine(&n) && n.topic != RESYNC) {
                        continue;
                    }
                }
                _ = changed_roles(&mut roles) => {}
            }
            if !session_holds(&state, &ctx, perm).await {
                return;
            }
        }
    }
}

/// An event stream that lives only as long as its session: each item passes only after the
/// session is checked again (so an event that follows a logout, a deactivation or a lost role
/// never reaches the reader, however fast it travels), and the stream ends when a check fails or
/// `session_ended` resolves (so a quiet stream closes too).
pub fn while_session_holds<S>(
    state: &AppState,
    ctx: &RequestCtx,
    perm: Perm,
    events: S,
) -> impl futures::Stream<Item = S::Item> + Send + 'static
where
    S: futures::Stream + Send + 'static,
    S::Item: Send + 'static,
{
    use futures::StreamExt;
    let (st, c) = (state.clone(), ctx.clone());
    events
        .then(move |item| {
            let (st, c) = (st.clone(), c.clone());
            async move { session_holds(&st, &c, perm).await.then_some(item) }
        })
        .take_while(|item| std::future::ready(item.is_some()))
        .filter_map(std::future::ready)
        .take_until(session_ended(state, ctx, perm))
}

/// The next notice; `None` when some were missed (check anyway). A closed channel waits forever.
async fn recv_notice(rx: &mut Option<tokio::sync::broadcast::Receiver<Notice>>) -> Option<Notice> {
    let Some(r) = rx else { return std::future::pending().await };
    match r.recv().await {
        Ok(n) => Some(n),
        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => None,
        Err(tokio::sync::broadcast::error::RecvError::Closed) => {
            *rx = None;
            None
        }
    }
}

async fn changed_roles(rx: &mut Option<tokio::sync::watch::Receiver<u64>>) {
    let Some(r) = rx else { return std::future::pending().await };
    if r.changed().await.is_err() {
        *rx = None;
    }
}

async fn session_holds(state: &AppState, ctx: &RequestCtx, perm: Perm) -> bool {
    match state.cache.has_flag(&revoked_key(ctx.session)).await {
        Ok(false) => {}
        Ok(true) | Err(_) => return false,
    }
    let Ok(enforcer) = state.authz.enforcer(ctx.tenant).await else { return false };
    let now =
        RequestCtx::new(ctx.tenant, ctx.user, ctx.institution, (ctx.session, ctx.session_expires), None, enforcer);
    !now.roles.is_empty() && now.can(perm)
}

/// Moves the session to another institution the user works in: a new token, the old one revoked.
pub async fn switch_institution(state: &AppState, ctx: &RequestCtx, institution: Uuid) -> AppResult<SessionView> {
    let mut view = session(state, ctx).await?;
    let Some(m) = view.memberships.iter().find(|m| m.institution.id == institution) else {
        return Err(AppError::new(codes::INSTITUTION_FORBIDDEN, "you hold no role in that institution"));
    };
    view.roles = m.roles.clone();
    let (token, claims) = state.keys.issue(ctx.tenant, ctx.user, institution, state.config.session_ttl)?;
    revoke(state, ctx).await?;
    let mut tx = state.db.begin(ctx).await?;
    tx.audit(ctx.audit("auth.switch_institution", "session", Purpose::Authentication).resource(claims.jti));
    tx.commit().await?;
    view.token = Some(token);
    view.expires_at = crate::platform::token::expires_at(&claims);
    view.institution = institution;
    Ok(view)
}

pub async fn session(state: &AppState, ctx: &RequestCtx) -> AppResult<SessionView> {
    let tx = state.db.begin(ctx).await?;
    let user = find_user(&tx, ctx.user).await?;
    let tenant = crate::tenancy::service::get_tenant(&*tx, ctx.tenant).await?;
    let memberships = memberships(&tx, ctx.user).await?;
    tx.rollback().await?;
    Ok(SessionView {
        token: None,
        expires_at: DateTime::from_timestamp(ctx.session_expires, 0).unwrap_or_else(Utc::now),
        user,
        tenant,
        institution: ctx.institution,
        roles: ctx.roles.clone(),
        memberships,
    })
}

async fn find_user(tx: &Tx, id: Uuid) -> AppResult<user::Model> {
    user::Entity::find_by_id((tx.tenant(), id))
        .one(&**tx)
        .await?
        .ok_or_else(|| AppError::new(codes::USER_NOT_FOUND, "no such user in this community"))
}

/// The institutions a user holds roles in, lead hospital first, then townships, then villages.
async fn memberships(tx: &Tx, user_id: Uuid) -> AppResult<Vec<Membership>> {
    let bindings = role_binding::Entity::find()
        .filter(role_binding::Column::TenantId.eq(tx.tenant()))
        .filter(role_binding::Column::UserId.eq(user_id))
        .all(&**tx)
        .await?;
    let mut by_inst: BTreeMap<Uuid, Vec<Role>> = BTreeMap::new();
    for b in bindings {
        if let Some(r) = Role::parse(&b.role) {
            by_inst.entry(b.institution_id).or_default().push(r);
        }
    }
    let mut out = Vec::new();
    for (inst, mut roles) in by_inst {
        roles.sort();
        let institution = crate::tenancy::service::get_institution(tx, inst).await?;
        out.push(Membership { institution, roles });
    }
    out.sort_by(|a, b| (a.institution.kind, &a.institution.code).cmp(&(b.institution.kind, &b.institution.code)));
    Ok(out)
}

/// A staff member as seen from one institution.
#[derive(Debug, Clone)]
pub struct StaffMember {
    pub user: user::Model,
    pub roles: Vec<Role>,
}

pub async fn list_staff(state: &AppState, ctx: &RequestCtx, institution: Uuid) -> AppResult<Vec<StaffMember>> {
    let tx = state.db.begin(ctx).await?;
    crate::tenancy::service::get_institution(&tx, institution).await?;
    ctx.require_in(Perm::StaffRead, institution)?;
    let bindings = role_binding::Entity::find()
        .filter(role_binding::Column::TenantId.eq(ctx.tenant))
        .filter(role_binding::Column::InstitutionId.eq(institution))
        .all(&*tx)
        .await?;
    let mut roles: HashMap<Uuid, Vec<Role>> = HashMap::new();
    for b in bindings {
        if let Some(r) = Role::parse(&b.role) {
            roles.entry(b.user_id).or_default().push(r);
        }
    }
    let users = user::Entity::find()
        .filter(user::Column::TenantId.eq(ctx.tenant))
        .filter(user::Column::Id.is_in(roles.keys().copied().collect::<Vec<_>>()))
        .order_by_asc(user::Column::Username)
        .all(&*tx)
        .await?;
    tx.rollback().await?;
    Ok(users
        .into_iter()
        .map(|u| {
            let mut r = roles.remove(&u.id).unwrap_or_default();
            r.sort();
            StaffMember { user: u, roles: r }
        })
        .collect())
}

pub struct NewStaff {
    pub username: String,
    pub display_name: String,
    pub password: String,
    pub roles: Vec<Role>,
}

pub async fn create_staff(
    state: &AppState,
    ctx: &RequestCtx,
    institution: Uuid,
    new: NewStaff,
) -> AppResult<StaffMember> {
    {
        let tx = state.db.begin(ctx).await?;
        let inst = crate::tenancy::service::get_institution(&tx, institution).await?;
        tx.rollback().await?;
        ctx.require_in(Perm::StaffWrite, institution)?;
        check_username(&new.username).map_err(|e| AppError::new(codes::USERNAME_INVALID, e))?;
        if new.display_name.trim().is_empty() {
            return Err(AppError::new(codes::DISPLAY_NAME_INVALID, "display_name must not be empty"));
        }
        check_password_strength(&new.password, &new.username)
            .map_err(|e| AppError::new(codes::PASSWORD_TOO_WEAK, format!("password {e}")))?;
        if new.roles.is_empty() {
            return Err(AppError::new(codes::ROLES_REQUIRED, "give at least one role"));
        }
        for role in &new.roles {
            check_grantable(ctx, *role, &inst)?;
        }
    }
    let hash = password::hash(new.password).await?;
    let mut tx = state.db.begin(ctx).await?;
    let taken = user::Entity::find()
        .filter(user::Column::TenantId.eq(ctx.tenant))
        .filter(user::Column::Username.eq(&new.username))
        .one(&*tx)
        .await?;
    if taken.is_some() {
        return Err(AppError::new(codes::USERNAME_TAKEN, "that username is already in use in this community"));
    }
    let now = Utc::now();
    let created = user::ActiveModel {
        tenant_id: Set(ctx.tenant),
        id: Set(Uuid::now_v7()),
        username: Set(new.username),
        display_name: Set(new.display_name),
        password_hash: Set(hash),
        active: Set(true),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(&*tx)
    .await?;
    let mut roles = new.roles;
    roles.sort();
    roles.dedup();
    for role in &roles {
        insert_binding(&tx, created.id, institution, *role).await?;
    }
    tx.audit(ctx.audit("staff.create", "user", Purpose::Administration).resource(created.id));
    tx.commit().await?;
    state.authz.changed(ctx.tenant).await;
    Ok(StaffMember { user: created, roles })
}

fn check_grantable(ctx: &RequestCtx, role: Role, inst: &InstitutionInfo) -> AppResult<()> {
    if !role.allowed_in(inst.kind) {
        return Err(AppError::new(
            codes::ROLE_NOT_ALLOWED_HERE,
            format!("role {} cannot be held at a {}", role.as_str(), inst.kind),
        ));
    }
    if role.is_tenant_wide() && !ctx.can(Perm::TenantAdmin) {
        return Err(AppError::new(codes::FORBIDDEN, "only a tenant admin may grant tenant-wide roles"));
    }
    Ok(())
}

async fn insert_binding(tx: &Tx, user_id: Uuid, institution: Uuid, role: Role) -> AppResult<()> {
    role_binding::ActiveModel {
        tenant_id: Set(tx.tenant()),
        user_id: Set(user_id),
        institution_id: Set(institution),
        role: Set(role.as_str().into()),
        created_at: Set(Utc::now()),
    }
    .insert(&**tx)
    .await?;
    Ok(())
}

/// A user and where they work. Visible to whoever may read staff in one of those institutions;
/// anyone else gets 404, as if the user did not exist.
pub async fn get_user(state: &AppState, ctx: &RequestCtx, id: Uuid) -> AppResult<(user::Model, Vec<Membership>)> {
    let tx = state.db.begin(ctx).await?;
    let user = find_user(&tx, id).await?;
    let memberships = memberships(&tx, id).await?;
    tx.rollback().await?;
    let visible = id == ctx.user || memberships.iter().any(|m| ctx.can_in(Perm::StaffRead, m.institution.id));
    if !visible {
        return Err(AppError::new(codes::USER_NOT_FOUND, "no such user in this community"));
    }
    Ok((user, memberships))
}

/// Deactivates (`active = false`) or reactivates a user. A deactivated user cannot log in, and
/// every session and open stream of theirs ends at once, on every replica. The caller must
/// administer staff in every institution the user works in; no one deactivates themself.
pub async fn set_active(state: &AppState, ctx: &RequestCtx, user_id: Uuid, active: bool) -> AppResult<user::Model> {
    if user_id == ctx.user && !active {
        return Err(AppError::new(codes::SELF_DEACTIVATION, "you cannot deactivate your own account"));
    }
    let mut tx = state.db.begin(ctx).await?;
    let found = find_user(&tx, user_id).await?;
    let memberships = memberships(&tx, user_id).await?;
    let visible = memberships.iter().any(|m| ctx.can_in(Perm::StaffRead, m.institution.id));
    if !visible && !ctx.can(Perm::TenantAdmin) {
        return Err(AppError::new(codes::USER_NOT_FOUND, "no such user in this community"));
    }
    let allowed = if memberships.is_empty() {
        ctx.can(Perm::TenantAdmin)
    } else {
        memberships.iter().all(|m| ctx.can_in(Perm::StaffWrite, m.institution.id))
    };
    if !allowed {
        return Err(AppError::new(codes::FORBIDDEN, "you must administer staff everywhere this user works"));
    }
    // Whoever holds a tenant-wide role (the tenant admin, the bureau) is answerable only to a
    // tenant admin, as those roles are granted only by one.
    if memberships.iter().flat_map(|m| &m.roles).any(|r| r.is_tenant_wide()) && !ctx.can(Perm::TenantAdmin) {
        return Err(AppError::new(
            codes::FORBIDDEN,
            "only a tenant admin may deactivate a holder of a tenant-wide role",
        ));
    }
    if found.active == active {
        tx.rollback().await?;
        return Ok(found);
    }
    let mut am = found.into_active_model();
    am.active = Set(active);
    am.updated_at = Set(Utc::now());
    let saved = am.update(&*tx).await?;
    let action = if active { "staff.reactivate" } else { "staff.deactivate" };
    tx.audit(ctx.audit(action, "user", Purpose::Administration).resource(user_id));
    tx.commit().await?;
    state.authz.changed(ctx.tenant).await;
    Ok(saved)
}

/// Grants `role` at `institution` (idempotent).
pub async fn grant_role(
    state: &AppState,
    ctx: &RequestCtx,
    institution: Uuid,
    user_id: Uuid,
    role: Role,
) -> AppResult<()> {
    let mut tx = state.db.begin(ctx).await?;
    let inst = crate::tenancy::service::get_institution(&tx, institution).await?;
    ctx.require_in(Perm::StaffWrite, institution)?;
    find_user(&tx, user_id).await?;
    check_grantable(ctx, role, &inst)?;
    let existing = role_binding::Entity::find_by_id((ctx.tenant, user_id, institution, role.as_str().to_string()))
        .one(&*tx)
        .await?;
    if existing.is_none() {
        insert_binding(&tx, user_id, institution, role).await?;
        tx.audit(ctx.audit("staff.role_grant", "user", Purpose::Administration).resource(user_id));
    }
    tx.commit().await?;
    state.authz.changed(ctx.tenant).await;
    Ok(())
}

pub async fn revoke_role(
    state: &AppState,
    ctx: &RequestCtx,
    institution: Uuid,
    user_id: Uuid,
    role: Role,
) -> AppResult<()> {
    let mut tx = state.db.begin(ctx).await?;
    let inst = crate::tenancy::service::get_institution(&tx, institution).await?;
    ctx.require_in(Perm::StaffWrite, institution)?;
    find_user(&tx, user_id).await?;
    check_grantable(ctx, role, &inst)?;
    let deleted = role_binding::Entity::delete_by_id((ctx.tenant, user_id, institution, role.as_str().to_string()))
        .exec(&*tx)
        .await?;
    if deleted.rows_affected == 0 {
        return Err(AppError::new(codes::ROLE_BINDING_NOT_FOUND, "the user does not hold that role there"));
    }
    tx.audit(ctx.audit("staff.role_revoke", "user", Purpose::Administration).resource(user_id));
    tx.commit().await?;
    state.authz.changed(ctx.tenant).await;
    Ok(())
}

/// For tenant files: the password hash to store for each user, or `None` where the stored hash
/// already matches. Runs before the apply transaction because hashing is slow.
pub async fn prepare_credentials(
    db: &Db,
    scope: &SystemScope,
    users: &[UserSpec],
) -> AppResult<HashMap<String, Option<String>>> {
    let tx = db.begin(scope).await?;
    let existing: HashMap<String, String> = user::Entity::find()
        .filter(user::Column::TenantId.eq(scope.tenant_id()))
        .all(&*tx)
        .await?
        .into_iter()
        .map(|u| (u.username, u.password_hash))
        .collect();
    tx.rollback().await?;
    let mut out = HashMap::new();
    for u in users {
        let stored = existing.get(&u.username);
        let new = match (&u.credential, stored) {
            (Credential::Hash(h), Some(s)) if h == s => None,
            (Credential::Hash(h), _) => Some(h.clone()),
            (Credential::Plain(p), Some(s)) if password::verify(p.clone(), s.clone()).await => None,
            (Credential::Plain(p), _) => Some(password::hash(p.clone()).await?),
        };
        out.insert(u.username.clone(), new);
    }
    Ok(out)
}

/// For tenant files: creates or updates users and adds missing role bindings. Never removes a
/// binding (that is an administrator's act, through the API).
pub async fn apply_users(
    tx: &Tx,
    institutions: &HashMap<String, Uuid>,
    users: &[UserSpec],
    credentials: &HashMap<String, Option<String>>,
    report: &mut ApplyReport,
) -> AppResult<()> {
    let tenant = tx.tenant();
    let existing: HashMap<String, user::Model> = user::Entity::find()
        .filter(user::Column::TenantId.eq(tenant))
        .all(&**tx)
        .await?
        .into_iter()
        .map(|u| (u.username.clone(), u))
        .collect();
    let bindings: HashSet<(Uuid, Uuid, String)> = role_binding::Entity::find()
        .filter(role_binding::Column::TenantId.eq(tenant))
        .all(&**tx)
        .await?
        .into_iter()
        .map(|b| (b.user_id, b.institution_id, b.role))
        .collect();
    let now = Utc::now();
    for spec in users {
        let new_hash = credentials.get(&spec.username).cloned().flatten();
        let user_id = match existing.get(&spec.username) {
            None => {
                let id = Uuid::now_v7();
                user::ActiveModel {
                    tenant_id: Set(tenant),
                    id: Set(id),
                    username: Set(spec.username.clone()),
                    display_name: Set(spec.display_name.clone()),
                    password_hash: Set(new_hash
                        .ok_or_else(|| AppError::internal(anyhow::anyhow!("no credential prepared for a new user")))?),
                    active: Set(spec.active),
                    created_at: Set(now),
                    updated_at: Set(now),
                }
                .insert(&**tx)
                .await?;
                report.created.push(format!("user {}", spec.username));
                id
            }
            Some(row) => {
                if row.display_name != spec.display_name || row.active != spec.active || new_hash.is_some() {
                    let mut am = row.clone().into_active_model();
                    am.display_name = Set(spec.display_name.clone());
                    am.active = Set(spec.active);
                    if let Some(h) = new_hash {
                        am.password_hash = Set(h);
                    }
                    am.updated_at = Set(now);
                    am.update(&**tx).await?;
                    report.updated.push(format!("user {}", spec.username));
                } else {
                    report.unchanged += 1;
                }
                row.id
            }
        };
        for RoleAt { institution: inst_code, role } in &spec.roles {
            let inst = institutions[inst_code];
            if bindings.contains(&(user_id, inst, role.as_str().to_string())) {
                report.unchanged += 1;
            } else {
                insert_binding(tx, user_id, inst, *role).await?;
                report.created.push(format!("role {} {}@{}", spec.username, role.as_str(), inst_code));
            }
        }
    }
    Ok(())
}

/// Display names of staff by id (for worklists and exports naming the responsible doctor).
pub async fn display_names(tx: &Tx, ids: &[Uuid]) -> AppResult<HashMap<Uuid, String>> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let unique: std::collections::BTreeSet<Uuid> = ids.iter().copied().collect();
    Ok(user::Entity::find()
        .filter(user::Column::TenantId.eq(tx.tenant()))
        .filter(user::Column::Id.is_in(unique))
        .all(&**tx)
        .await?
        .into_iter()
        .map(|u| (u.id, u.display_name))
        .collect())
}
