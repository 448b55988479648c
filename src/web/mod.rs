//! The browser app: server-rendered pages under `/app`, over the same services as the JSON API.
//! Sessions ride the API's HttpOnly cookie; every form carries a CSRF token; strings come from
//! the Fluent files in `i18n/`, zh-CN first. Pages work without JavaScript.

pub mod bureau;
pub mod charts;
pub mod clinic;
pub mod followups;
mod form;
pub mod i18n;
pub mod print;
pub mod referrals;
mod session;

use askama::Template;
use poem::http::{StatusCode, header};
use poem::web::{Data, Form, Path, Query};
use poem::{Request, Response, Route, get, handler, post};
use serde::Deserialize;
use uuid::Uuid;

pub use self::i18n::Locale;
pub use self::session::{CSRF_COOKIE, Page};
use crate::identity::domain::Role;
use crate::identity::service::{self as identity, LoginInput};
use crate::platform::AppError;
use crate::platform::codes;
use crate::platform::state::AppState;

/// The signed-in reader of a page handler, or the handler returns the redirect to the login page.
macro_rules! signed_in {
    ($req:expr, $state:expr) => {
        match $crate::web::Page::load($req, $state).await {
            Ok(p) => p,
            Err(r) => return r,
        }
    };
}
pub(crate) use signed_in;

/// Every page of the app. The JSON API stays under `/api`.
pub fn routes() -> Route {
    Route::new()
        .at("/", get(home))
        .at("/login", get(login_form).post(login_submit))
        .at("/logout", post(logout))
        .at("/institution", get(choose_form).post(choose_submit))
        .at("/lang/:code", get(set_lang))
        .at("/static/:name", get(asset))
        .at("/bureau", get(bureau::dashboard))
        .at("/bureau/kpis.csv", get(bureau::export_csv))
        .at("/bureau/kpis.xlsx", get(bureau::export_xlsx))
        .at("/referrals", get(referrals::list))
        .at("/referrals/rows", get(referrals::list_rows))
        .at("/referrals/stream", get(referrals::stream))
        .at("/referrals/:id", get(referrals::detail))
        .at("/referrals/:id/print", get(print::referral))
        .at("/referrals/:id/:action", post(referrals::act))
        .at("/clinic", get(clinic::clinic))
        .at("/clinic/search", post(clinic::search))
        .at("/clinic/patients", post(clinic::register))
        .at("/clinic/patients/:id", get(clinic::patient))
        .at("/clinic/patients/:id/reveal", post(clinic::reveal_identifier))
        .at("/clinic/patients/:id/enroll", post(followups::enroll))
        .at("/visits", post(clinic::start_visit))
        .at("/visits/:id", get(clinic::visit))
        .at("/visits/:id/print/prescription", get(print::prescription))
        .at("/visits/:id/print/receipt", get(print::receipt))
        .at("/visits/:id/:step", post(clinic::visit_step))
        .at("/icd10", get(clinic::icd_search))
        .at("/followups", get(followups::worklist))
        .at("/followups/worklist.csv", get(followups::worklist_csv))
        .at("/followups/:id", get(followups::enrollment).post(followups::record))
        .at("/*rest", get(unknown_page))
}

/// Any other address under `/app`: a page saying so, in the reader's language, with a way back.
#[handler]
async fn unknown_page(req: &Request, state: Data<&AppState>) -> Response {
    // `/app/` itself reaches the catch-all: it is the home page.
    if req.original_uri().path().trim_end_matches('/') == "/app" {
        let page = signed_in!(req, &state);
        return see_other(landing(&page.ctx.roles));
    }
    // A signed-in reader keeps their menu on the not-found page.
    let _ = Page::load(req, &state).await;
    let e = AppError::new(codes::PAGE_NOT_FOUND, "no such page");
    error_page(session::locale(req), &e, "/app/")
}

/// Keeps room for the reader's menu through a page request, for its error page.
pub async fn with_menu<E: poem::Endpoint>(ep: E, req: Request) -> poem::Result<Response> {
    session::with_nav(async move { ep.call(req).await.map(poem::IntoResponse::into_response) }).await
}

/// A form posted twice with the same `idem` field (see `Page::idem`) does its work once: the
/// first answer, a redirect after the work was done, is kept for a day (per tenant and user, in
/// the idempotency keys the API uses) and given again. A form that was refused keeps nothing, so
/// correcting it and sending it again works as usual.
pub async fn once_per_form<E: poem::Endpoint>(ep: E, mut req: Request) -> poem::Result<Response> {
    use crate::platform::idempotency::{self, Claim, Kept, Start};
    if req.method() != poem::http::Method::POST {
        return ep.call(req).await.map(poem::IntoResponse::into_response);
    }
    let Some(state) = req.data::<AppState>().cloned() else {
        return ep.call(req).await.map(poem::IntoResponse::into_response);
    };
    let body = req.take_body().into_bytes().await.unwrap_or_default();
    let idem = form_urlencoded_value(&body, "idem");
    let claims = crate::platform::http::cookie_value(&req, crate::identity::api::SESSION_COOKIE)
        .and_then(|t| state.keys.verify(&t).ok());
    let target = req.uri().path().to_owned();
    req.set_body(poem::Body::from(body.clone()));
    let (Some(idem), Some(claims)) = (idem, claims) else {
        return ep.call(req).await.map(poem::IntoResponse::into_response);
    };
    let Ok(claim) = Claim::new(claims.tid, claims.sub, &format!("web:{idem}"), "POST", &target, &body) else {
        return ep.call(req).await.map(poem::IntoResponse::into_response);
    };
    let back = target.rsplit_once('/').map(|(a, _)| a).unwrap_or("/app/").to_owned();
    match idempotency::start(&state.db, &claim).await {
        Ok(Start::Replay(kept)) if kept.status == 303 => return Ok(see_other(&String::from_utf8_lossy(&kept.body))),
        Ok(Start::Run) => {}
        // The same key with another form, the first still running, or its work done and its
        // answer lost: doing the work as if unkeyed would risk doing it twice, so show the page.
        Ok(Start::Replay(_)) | Err(_) => return Ok(see_other(&back)),
    }
    let resp = idempotency::scope(claim.clone(), ep.call(req)).await.map(poem::IntoResponse::into_response)?;
    let location = resp.headers().get(header::LOCATION).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let outcome = match (resp.status(), location) {
        (StatusCode::SEE_OTHER, Some(to)) => {
            let kept = Kept { status: 303, content_type: None, body: to.into_bytes() };
            idempotency::finish(&state.db, &claim, &kept).await
        }
        _ => idempotency::abandon(&state.db, &claim).await.map(|_| ()),
    };
    if let Err(e) = outcome {
        tracing::warn!(error = %e, "could not keep a form's answer");
    }
    Ok(resp)
}

fn form_urlencoded_value(body: &[u8], name: &str) -> Option<String> {
    url::form_urlencoded::parse(body).find(|(k, _)| k == name).map(|(_, v)| v.into_owned()).filter(|v| !v.is_empty())
}

/// An HTML response with the page headers: a strict content security policy, no framing.
pub fn html(status: StatusCode, body: String) -> Response {
    Response::builder()
        .status(status)
        .content_type("text/html; charset=utf-8")
        .header(
            "content-security-policy",
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'",
        )
        .header("x-frame-options", "DENY")
        .body(body)
}

/// A redirect after a form post or to the login page.
pub fn see_other(to: &str) -> Response {
    Response::builder().status(StatusCode::SEE_OTHER).header(header::LOCATION, to).finish()
}

fn render(status: StatusCode, t: &impl Template) -> Response {
    match t.render() {
        Ok(body) => html(status, body),
        Err(e) => {
            tracing::error!(error = %e, "template failed to render");
            html(StatusCode::INTERNAL_SERVER_ERROR, "<!doctype html><title>500</title>".into())
        }
    }
}

#[derive(Template)]
#[template(path = "error.html", config = "src/web/askama.toml")]
struct ErrorPage<'a> {
    l: Locale,
    title: String,
    message: String,
    back: &'a str,
    /// The reader's menu, when the request got as far as reading their session.
    nav: Option<session::Nav>,
}

/// An error as a page in the reader's language: a message per stable error code where there is
/// one, else per status. Internals are logged, never shown.
pub fn error_page(l: Locale, e: &AppError, back: &str) -> Response {
    use poem::error::ResponseError;
    let nav = session::remembered_nav();
    render(e.status(), &ErrorPage { l, title: l.t("error-title"), message: refusal_message(l, e), back, nav })
}

/// What a refusal says to the person who made it, in their language.
pub fn refusal_message(l: Locale, e: &AppError) -> String {
    use poem::error::ResponseError;
    let key = match (e.code_of(), e.status()) {
        (codes::PERIOD_INVALID, _) => "error-period",
        (codes::CSRF_INVALID, _) => "error-csrf",
        (codes::TEXT_INVALID, _) => "error-text",
        (codes::REFERRAL_INVALID_TRANSITION, _) => "error-transition",
        (codes::VITAL_OUT_OF_RANGE, _) => "error-vital",
        (codes::ICD_CODE_UNKNOWN, _) => "error-icd",
        (codes::STOCK_INSUFFICIENT | codes::DRUG_NOT_STOCKED, _) => "error-stock",
        (codes::ENCOUNTER_CLOSED, _) => "error-encounter-closed",
        (codes::DIAGNOSIS_DUPLICATE | codes::DUPLICATE_DRUG, _) => "error-duplicate",
        (codes::OVERPAYMENT, _) => "error-overpayment",
        (codes::QUANTITY_INVALID, _) => "error-quantity",
        (codes::ALREADY_ENROLLED, _) => "error-already-enrolled",
        (codes::DATE_IN_FUTURE, _) => "error-date-future",
        (codes::DATE_INVALID | codes::DATE_OUT_OF_RANGE, _) => "error-date",
        (_, StatusCode::FORBIDDEN) => "error-forbidden",
        (_, StatusCode::NOT_FOUND) => "error-not-found",
        (_, StatusCode::CONFLICT) => "error-conflict",
        (_, StatusCode::SERVICE_UNAVAILABLE) => {
            tracing::warn!(error = %e.reason(), "page refused: a backing service is unavailable");
            "error-unavailable"
        }
        (_, StatusCode::UNPROCESSABLE_ENTITY | StatusCode::BAD_REQUEST) => "error-invalid",
        _ => {
            tracing::error!(error = %e, "page failed");
            "error-internal"
        }
    };
    l.t(key)
}

#[handler]
async fn home(req: &Request, state: Data<&AppState>) -> Response {
    let page = signed_in!(req, &state);
    see_other(landing(&page.ctx.roles))
}

/// Where a role starts its day. Pages for the other roles join as they are built.
fn landing(roles: &[Role]) -> &'static str {
    if roles.contains(&Role::BureauOfficial) {
        "/app/bureau"
    } else if roles.iter().any(|r| matches!(r, Role::VillageDoctor | Role::TownshipDoctor | Role::CountyDoctor)) {
        "/app/clinic"
    } else if roles.contains(&Role::ReferralCoordinator) {
        "/app/referrals"
    } else {
        "/app/institution"
    }
}

#[derive(Template)]
#[template(path = "login.html", config = "src/web/askama.toml")]
struct LoginPage {
    l: Locale,
    csrf: String,
    tenant: String,
    username: String,
    error: Option<String>,
}

#[handler]
async fn login_form(req: &Request, state: Data<&AppState>) -> Response {
    let l = session::locale(req);
    let csrf = session::pre_login_token(&state);
    let mut r = render(
        StatusCode::OK,
        &LoginPage { l, csrf: csrf.clone(), tenant: "demo-county".into(), username: String::new(), error: None },
    );
    session::set_cookie(&mut r, &session::pre_login_cookie(&state, &csrf));
    r
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    csrf: String,
    tenant: String,
    username: String,
    password: String,
    /// The one-time code, for an account with a second factor.
    #[serde(default)]
    totp: String,
}

#[handler]
async fn login_submit(req: &Request, state: Data<&AppState>, form: Form<LoginForm>) -> Response {
    let l = session::locale(req);
    let f = form.0;
    if !session::pre_login_csrf_ok(req, &state, &f.csrf) {
        return error_page(l, &AppError::new(codes::CSRF_INVALID, "form expired"), "/app/login");
    }
    let client_ip = req.remote_addr().as_socket_addr().map(|a| a.ip().to_string()).unwrap_or_else(|| "unknown".into());
    let input = LoginInput {
        tenant: f.tenant.trim().to_string(),
        username: f.username.trim().to_string(),
        password: f.password,
        institution_id: None,
        client_ip,
        totp: Some(f.totp.trim().to_string()).filter(|c| !c.is_empty()),
    };
    match identity::login(&state, input).await {
        Ok(view) => {
            let several = view.memberships.len() > 1;
            let roles = view.roles.clone();
            let mut r = see_other(if several { "/app/institution" } else { landing(&roles) });
            session::set_cookie(&mut r, &session::session_cookie(&state, view.token.as_deref().unwrap_or_default()));
            r
        }
        Err(e) => {
            let error = match &e {
                AppError::InvalidCredentials => l.t("login-failed"),
                e if e.is(codes::TOTP_REQUIRED) => l.t("login-totp-required"),
                e if e.is(codes::TOTP_INVALID) => l.t("login-totp-invalid"),
                AppError::RateLimited { retry_after_secs } => {
                    l.t_with("login-locked", &[("seconds", retry_after_secs.to_string())])
                }
                e if e.is(codes::NO_ROLES) => l.t("login-no-roles"),
                e => return error_page(l, e, "/app/login"),
            };
            let status = match e {
                AppError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
                _ => StatusCode::UNAUTHORIZED,
            };
            let csrf = session::pre_login_token(&state);
            let mut r = render(
                status,
                &LoginPage { l, csrf: csrf.clone(), tenant: f.tenant, username: f.username, error: Some(error) },
            );
            session::set_cookie(&mut r, &session::pre_login_cookie(&state, &csrf));
            r
        }
    }
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

#[handler]
async fn logout(req: &Request, state: Data<&AppState>, form: Form<CsrfForm>) -> Response {
    let page = signed_in!(req, &state);
    if let Err(e) = page.check_csrf(&form.0.csrf) {
        return error_page(page.l, &e, "/app/");
    }
    if let Err(e) = identity::logout(&state, &page.ctx).await {
        return error_page(page.l, &e, "/app/");
    }
    let mut r = see_other("/app/login");
    session::set_cookie(&mut r, &session::cleared_session_cookie(&state));
    r
}

struct Choice {
    id: Uuid,
    name: String,
    current: bool,
}

#[derive(Template)]
#[template(path = "choose.html", config = "src/web/askama.toml")]
struct ChoosePage {
    l: Locale,
    p: Page,
    choices: Vec<Choice>,
}

#[handler]
async fn choose_form(req: &Request, state: Data<&AppState>) -> Response {
    let p = signed_in!(req, &state);
    let choices = p
        .memberships
        .iter()
        .map(|m| Choice {
            id: m.institution.id,
            name: p.name_of(&m.institution),
            current: m.institution.id == p.ctx.institution,
        })
        .collect();
    render(StatusCode::OK, &ChoosePage { l: p.l, p, choices })
}

#[derive(Deserialize)]
struct ChooseForm {
    #[serde(default)]
    csrf: String,
    institution_id: Uuid,
}

#[handler]
async fn choose_submit(req: &Request, state: Data<&AppState>, form: Form<ChooseForm>) -> Response {
    let page = signed_in!(req, &state);
    if let Err(e) = page.check_csrf(&form.0.csrf) {
        return error_page(page.l, &e, "/app/institution");
    }
    match identity::switch_institution(&state, &page.ctx, form.0.institution_id).await {
        Ok(view) => {
            let mut r = see_other(landing(&view.roles));
            session::set_cookie(&mut r, &session::session_cookie(&state, view.token.as_deref().unwrap_or_default()));
            r
        }
        Err(e) => error_page(page.l, &e, "/app/institution"),
    }
}

#[derive(Deserialize)]
struct Back {
    next: Option<String>,
}

/// Remembers the reader's language and goes back to the page they were on (same site only).
#[handler]
fn set_lang(code: Path<String>, back: Query<Back>) -> Response {
    let l = Locale::parse(Some(code.0.as_str()));
    let next = back.0.next.filter(|n| n.starts_with("/app") && !n.starts_with("//") && !n.contains('\\'));
    let mut r = see_other(next.as_deref().unwrap_or("/app/"));
    session::set_cookie(&mut r, &session::lang_cookie(l));
    r
}

/// The stylesheet and the two small scripts, compiled in.
/// The site icon at the address browsers ask for first.
#[handler]
pub fn favicon() -> Response {
    static_file("favicon.svg")
}

#[handler]
fn asset(name: Path<String>) -> Response {
    static_file(&name.0)
}

fn static_file(name: &str) -> Response {
    let (mime, body) = match name {
        "app.css" => ("text/css; charset=utf-8", include_str!("static/app.css")),
        "live.js" => ("text/javascript; charset=utf-8", include_str!("static/live.js")),
        "icd.js" => ("text/javascript; charset=utf-8", include_str!("static/icd.js")),
        "rx.js" => ("text/javascript; charset=utf-8", include_str!("static/rx.js")),
        "favicon.svg" => ("image/svg+xml", include_str!("static/favicon.svg")),
        "print.js" => ("text/javascript; charset=utf-8", include_str!("static/print.js")),
        _ => return Response::builder().status(StatusCode::NOT_FOUND).finish(),
    };
    Response::builder().content_type(mime).header(header::CACHE_CONTROL, "public, max-age=3600").body(body)
}
