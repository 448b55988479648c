//! The page session: the API's HttpOnly session cookie, the reader's language, and CSRF tokens.
//! Signed-in forms carry an HMAC of the session id (it dies with the session); the login form,
//! before there is a session, uses a random double-submit cookie.

use hmac::{Hmac, Mac};
use poem::http::header;
use poem::{Request, Response};
use sha2::Sha256;

use super::{Locale, error_page, i18n::LANG_COOKIE, see_other};
use crate::identity::api::SESSION_COOKIE;
use crate::identity::ctx::RequestCtx;
use crate::identity::service::{self as identity, Membership};
use crate::platform::AppError;
use crate::platform::codes;
use crate::platform::http::RequestId;
use crate::platform::state::AppState;
use crate::tenancy::service::InstitutionInfo;

pub const CSRF_COOKIE: &str = "cloudhis_csrf";

fn cookie(req: &Request, name: &str) -> Option<String> {
    crate::platform::http::cookie_value(req, name)
}

pub fn locale(req: &Request) -> Locale {
    Locale::parse(cookie(req, LANG_COOKIE).as_deref())
}

pub fn set_cookie(r: &mut Response, c: &str) {
    if let Ok(v) = c.parse() {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
}

pub fn session_cookie(state: &AppState, token: &str) -> String {
    crate::identity::api::session_cookie(state, token, state.config.session_ttl.as_secs() as i64)
}

pub fn cleared_session_cookie(state: &AppState) -> String {
    crate::identity::api::session_cookie(state, "", 0)
}

pub fn pre_login_cookie(state: &AppState, token: &str) -> String {
    crate::platform::http::cookie(CSRF_COOKIE, token, "/app/login", 3600, state.config.cookie_secure)
}

/// The reader's language for a year; scripts never need it, but it is not secret either.
pub fn lang_cookie(l: Locale) -> String {
    use poem::web::cookie::{Cookie, SameSite};
    let mut c = Cookie::new_with_str(LANG_COOKIE, l.tag());
    c.set_path("/");
    c.set_same_site(SameSite::Lax);
    c.set_max_age(std::time::Duration::from_secs(31_536_000));
    c.to_string()
}

pub fn random_token() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

fn equal(a: &str, b: &str) -> bool {
    subtle::ConstantTimeEq::ct_eq(a.as_bytes(), b.as_bytes()).into()
}

/// How long a login form may be filled in.
const PRE_LOGIN_SECS: i64 = 3600;

/// A login form's token, issued by this server: a random nonce and an expiry, signed with the
/// secret (`<nonce>.<expiry>.<mac>`). It goes in the form and in a cookie; a cookie someone
/// planted with a value of their own does not carry our signature and is refused.
pub fn pre_login_token(state: &AppState) -> String {
    let body = format!("{}.{}", random_token(), chrono::Utc::now().timestamp() + PRE_LOGIN_SECS);
    format!("{body}.{}", pre_login_mac(state, &body))
}

fn pre_login_mac(state: &AppState, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(&state.config.secret.0).expect("HMAC takes any key length");
    mac.update(b"cloudhis-login-form:");
    mac.update(body.as_bytes());
    hex::encode(&mac.finalize().into_bytes()[..16])
}

/// Whether the browser says the form was posted from anywhere but this origin:
/// `Sec-Fetch-Site` other than `same-origin` (or `none`), or, from a browser that does not send
/// it, an `Origin` whose host is not this request's. (A token the attacker fetched from our own
/// login page is genuinely signed; the browser's own headers tell where it was submitted from.
/// `Origin: null` says nothing: our `Referrer-Policy: no-referrer` makes browsers send it for
/// our own forms.)
fn cross_site(req: &Request) -> bool {
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = header("sec-fetch-site") {
        return !matches!(site, "same-origin" | "none");
    }
    match (header("origin"), header("host")) {
        (Some("null"), _) => false,
        (Some(origin), Some(host)) => origin.split_once("://").map(|(_, h)| h) != Some(host),
        _ => false,
    }
}

/// The form was posted from this site, the submitted token is the cookie's, the server issued
/// it, and it has not expired.
pub fn pre_login_csrf_ok(req: &Request, state: &AppState, submitted: &str) -> bool {
    if cross_site(req) {
        return false;
    }
    let Some(c) = cookie(req, CSRF_COOKIE) else { return false };
    if !equal(&c, submitted) {
        return false;
    }
    let Some((body, mac)) = c.rsplit_once('.') else { return false };
    let expires = body.split_once('.').and_then(|(_, e)| e.parse::<i64>().ok());
    equal(&pre_login_mac(state, body), mac) && expires.is_some_and(|e| e >= chrono::Utc::now().timestamp())
}

/// The CSRF token of a signed-in session.
fn csrf_for(state: &AppState, ctx: &RequestCtx) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(&state.config.secret.0).expect("HMAC takes any key length");
    mac.update(b"cloudhis-csrf:");
    mac.update(ctx.session.as_bytes());
    hex::encode(&mac.finalize().into_bytes()[..16])
}

/// A signed-in reader: who, where, in which language, and the form token.
pub struct Page {
    pub l: Locale,
    pub ctx: RequestCtx,
    pub csrf: String,
    pub user_name: String,
    pub institution_name: String,
    pub memberships: Vec<Membership>,
    /// This page's path and query, for the language switch to come back to.
    pub here: String,
}

/// The menu of a signed-in page, kept for the request (see [`with_nav`]) so that an error page
/// shows it too.
#[derive(Clone, Debug)]
pub struct Nav {
    pub statistics: bool,
    pub clinic: bool,
    pub followups: bool,
    pub referrals: bool,
    pub who: String,
    pub csrf: String,
    pub choose: bool,
}

tokio::task_local! {
    static NAV: std::cell::RefCell<Option<Nav>>;
}

/// Runs a page request with room for its reader's menu.
pub async fn with_nav<F: std::future::Future>(f: F) -> F::Output {
    NAV.scope(std::cell::RefCell::new(None), f).await
}

fn remember(nav: Nav) {
    let _ = NAV.try_with(|n| *n.borrow_mut() = Some(nav));
}

/// The menu of the reader of this request, once their session was read.
pub fn remembered_nav() -> Option<Nav> {
    NAV.try_with(|n| n.borrow().clone()).ok().flatten()
}

impl Page {
    /// The signed-in reader, or a redirect to the login page.
    pub async fn load(req: &Request, state: &AppState) -> Result<Page, Response> {
        let l = locale(req);
        let Some(token) = cookie(req, SESSION_COOKIE).filter(|t| !t.is_empty()) else {
            return Err(see_other("/app/login"));
        };
        let request_id = req.data::<RequestId>().map(|r| r.0.clone());
        let ctx = match identity::authenticate(state, &token, request_id).await {
            Ok(ctx) => ctx.reporting_to(req),
            Err(AppError::Unauthenticated) => return Err(see_other("/app/login")),
            Err(e) => return Err(error_page(l, &e, "/app/login")),
        };
        let span = tracing::Span::current();
        span.record("tenant.id", tracing::field::display(ctx.tenant));
        span.record("user.id", tracing::field::display(ctx.user));
        let view = identity::session(state, &ctx).await.map_err(|e| error_page(l, &e, "/app/login"))?;
        let csrf = csrf_for(state, &ctx);
        let mut p = Page {
            l,
            csrf,
            user_name: view.user.display_name.clone(),
            institution_name: String::new(),
            memberships: view.memberships,
            // After a form post, the switch goes to the start page: the post's route has no GET.
            here: if req.method() == poem::http::Method::GET {
                req.original_uri().path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_else(|| "/app/".into())
            } else {
                "/app/".into()
            },
            ctx,
        };
        if let Some(m) = p.memberships.iter().find(|m| m.institution.id == p.ctx.institution) {
            p.institution_name = p.name_of(&m.institution);
        }
        remember(p.nav());
        Ok(p)
    }

    /// The menu this reader gets.
    pub fn nav(&self) -> Nav {
        Nav {
            statistics: self.sees_statistics(),
            clinic: self.sees_clinic(),
            followups: self.sees_followups(),
            referrals: self.sees_referrals(),
            who: self.signed_in(),
            csrf: self.csrf.clone(),
            choose: self.memberships.len() > 1,
        }
    }

    /// A fresh key for one form: a page's form submitted twice (a double click, a resend after
    /// a lost answer) does its work once (`web::once_per_form`).
    pub fn idem(&self) -> String {
        random_token()
    }

    /// 403 `csrf_invalid` unless the form's token is this session's.
    pub fn check_csrf(&self, submitted: &str) -> Result<(), AppError> {
        if equal(&self.csrf, submitted) { Ok(()) } else { Err(AppError::new(codes::CSRF_INVALID, "form expired")) }
    }

    pub fn t(&self, id: &str) -> String {
        self.l.t(id)
    }

    /// An institution's name in the page's language (its Chinese name when it has no English one).
    pub fn name_of(&self, i: &InstitutionInfo) -> String {
        match (self.l, &i.name_en) {
            (Locale::En, Some(en)) => en.clone(),
            _ => i.name.clone(),
        }
    }

    pub fn sees_statistics(&self) -> bool {
        self.ctx.can(crate::identity::ctx::Perm::StatisticsRead)
    }

    pub fn sees_clinic(&self) -> bool {
        self.ctx.can(crate::identity::ctx::Perm::EncounterWrite)
    }

    pub fn sees_followups(&self) -> bool {
        self.ctx.can(crate::identity::ctx::Perm::FollowupRead)
    }

    pub fn sees_referrals(&self) -> bool {
        self.ctx.can(crate::identity::ctx::Perm::ReferralRead)
    }

    /// "Signed in as …" for the header.
    pub fn signed_in(&self) -> String {
        self.l
            .t_with("signed-in-as", &[("name", self.user_name.clone()), ("institution", self.institution_name.clone())])
    }

    /// The language switch: the other language, coming back here.
    pub fn lang_href(&self) -> String {
        format!(
            "/app/lang/{}?next={}",
            self.l.other().tag(),
            url::form_urlencoded::byte_serialize(self.here.as_bytes()).collect::<String>()
        )
    }
}
