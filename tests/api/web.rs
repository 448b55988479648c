//! The browser app over HTTP: login with CSRF, the bureau dashboard with its tiles, charts,
//! drill-down and exports in both languages, logout, and refusals. The same pages run in real
//! Chromium in `e2e/`; these tests pin what the server sends.

use reqwest::StatusCode;
use reqwest::redirect::Policy;
use serde_json::Value;

use crate::helpers::{TestApp, spawn_app};
use crate::statistics::{caught_up, world};

/// A browser: keeps cookies, does not follow redirects (the tests look at each one).
pub(crate) struct Browser<'a> {
    app: &'a TestApp,
    pub(crate) client: reqwest::Client,
    jar: std::sync::Arc<reqwest::cookie::Jar>,
}

pub(crate) struct Page {
    pub(crate) status: StatusCode,
    pub(crate) location: Option<String>,
    headers: reqwest::header::HeaderMap,
    pub(crate) text: String,
}

impl<'a> Browser<'a> {
    pub(crate) fn new(app: &'a TestApp) -> Self {
        let jar = std::sync::Arc::new(reqwest::cookie::Jar::default());
        let client = reqwest::Client::builder().cookie_provider(jar.clone()).redirect(Policy::none()).build().unwrap();
        Self { app, client, jar }
    }

    /// The cookies this browser would send, as a `Cookie` header.
    fn cookies(&self) -> String {
        use reqwest::cookie::CookieStore;
        let url: reqwest::Url = self.app.base.parse().unwrap();
        self.jar.cookies(&url).map(|v| v.to_str().unwrap().to_string()).unwrap_or_default()
    }

    async fn page(r: reqwest::Response) -> Page {
        let status = r.status();
        let headers = r.headers().clone();
        let location = headers.get("location").map(|v| v.to_str().unwrap().to_string());
        let text = r.text().await.unwrap();
        Page { status, location, headers, text }
    }

    pub(crate) async fn get(&self, path: &str) -> Page {
        Self::page(self.client.get(format!("{}{}", self.app.base, path)).send().await.unwrap()).await
    }

    pub(crate) async fn post(&self, path: &str, form: &[(&str, &str)]) -> Page {
        Self::page(self.client.post(format!("{}{}", self.app.base, path)).form(form).send().await.unwrap()).await
    }

    pub(crate) async fn login(&self, user: &str) -> Page {
        let form = self.get("/app/login").await;
        let csrf = csrf(&form.text);
        self.post(
            "/app/login",
            &[("csrf", &csrf), ("tenant", "demo-county"), ("username", user), ("password", "Demo@2026")],
        )
        .await
    }
}

/// Whether the `<option>` with `value` is the selected one (whatever other attributes it has).
fn chosen(html: &str, value: &str) -> bool {
    html.split("<option ").any(|o| {
        let tag = &o[..o.find('>').unwrap_or(o.len())];
        tag.starts_with(&format!("value=\"{value}\"")) && tag.contains(" selected")
    })
}

pub(crate) fn csrf(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a form with a CSRF token") + 19;
    html[at..].split('"').next().unwrap().to_string()
}

fn han(s: &str) -> bool {
    s.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c))
}

/// The text a reader sees: markup, the inline SVG's own font names and the language switch aside.
fn visible_text(html: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                out.push(' ');
            }
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out
}

#[tokio::test]
async fn login_needs_the_forms_token_and_a_wrong_password_says_so_in_chinese() {
    let app = spawn_app().await;
    app.load_demo().await;
    let b = Browser::new(&app);

    let r = b.get("/").await;
    assert_eq!(r.location.as_deref(), Some("/app/"), "the bare address opens the app");
    let r = b.get("/app/bureau").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.location.as_deref(), Some("/app/login"));

    let form = b.get("/app/login").await;
    assert_eq!(form.status, StatusCode::OK);
    assert!(form.text.contains("<html lang=\"zh-CN\">"));
    assert!(form.headers["content-security-policy"].to_str().unwrap().contains("frame-ancestors 'none'"));
    // Every visible field has a label.
    for id in ["tenant", "username", "password"] {
        assert!(form.text.contains(&format!("<label for=\"{id}\">")), "{id} has a label");
    }

    let forged = b
        .post(
            "/app/login",
            &[("csrf", &"0".repeat(32)), ("tenant", "demo-county"), ("username", "bureau"), ("password", "Demo@2026")],
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert!(forged.text.contains("表单已过期"));
    // A browser without the login page's cookie cannot post the form either.
    let stranger = Browser::new(&app);
    let token = csrf(&form.text);
    let r = stranger
        .post(
            "/app/login",
            &[("csrf", &token), ("tenant", "demo-county"), ("username", "bureau"), ("password", "Demo@2026")],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    let wrong = b
        .post(
            "/app/login",
            &[("csrf", &csrf(&form.text)), ("tenant", "demo-county"), ("username", "bureau"), ("password", "nope")],
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.text.contains("用户名或密码不正确"), "{}", wrong.text);
    assert!(wrong.text.contains("value=\"bureau\""), "the username is kept");
    assert!(!wrong.text.contains("nope"), "the password is not echoed");
}

#[tokio::test]
async fn the_bureau_dashboard_shows_the_apis_figures_drills_down_exports_and_speaks_english_on_request() {
    let app = spawn_app().await;
    app.load_demo().await;
    let w = world(&app).await;
    caught_up(&app).await;
    let bureau = app.login("bureau").await;
    let ids = app.institutions(&bureau).await;
    let b = Browser::new(&app);

    let r = b.login("bureau").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    assert_eq!(r.location.as_deref(), Some("/app/bureau"));
    let dash = b.get("/app/bureau").await;
    assert_eq!(dash.status, StatusCode::OK, "{}", dash.text);
    assert!(dash.text.contains("医共体统计看板"));

    // Every tile reads exactly what the API says for the same period.
    let api = app.get("/api/v1/statistics/kpis", &bureau.token).await.body;
    let kpis = api["kpis"].as_array().unwrap();
    assert_eq!(kpis.len(), 17);
    for k in kpis {
        let code = k["code"].as_str().unwrap();
        let at = dash.text.find(&format!("data-kpi=\"{code}\"")).unwrap_or_else(|| panic!("tile {code}"));
        let tile = &dash.text[at..at + dash.text[at..].find("</li>").unwrap()];
        let text = k["text"].as_str().unwrap().replace('<', "&#60;");
        assert!(tile.contains(&format!("<span class=\"tile-value\">{text}</span>")), "{code}: {tile} vs {text}");
    }
    assert!(dash.text.contains(&format!("<span class=\"tile-value\">{}</span>", kpi_text(&api, "visits"))));
    // Four charts, each an SVG drawn server-side with its figures in a table.
    for id in ["visits", "referrals", "grassroots", "management"] {
        let at = dash.text.find(&format!("id=\"chart-{id}\"")).unwrap_or_else(|| panic!("chart {id}"));
        let fig = &dash.text[at..at + dash.text[at..].find("</figure>").unwrap()];
        assert!(fig.contains("<svg"), "chart {id} is drawn");
        assert!(fig.contains("<table>"), "chart {id} has its data");
    }
    // No patient identity on the page.
    for s in w.persons.iter().chain(w.identifiers.iter()) {
        assert!(!dash.text.contains(s.as_str()));
    }

    // The first level: the county hospital on its own (nothing to drill into), and every
    // township, each a link to its villages.
    let county = ids["county-hospital"];
    assert!(dash.text.contains("示范县人民医院（本级）"));
    assert!(!dash.text.contains(&format!("institution={county}")), "the hospital alone is a leaf");
    let year = api["from"].as_str().unwrap();
    let today = api["to"].as_str().unwrap();
    for t in ["th-dongguan", "th-nanshan", "th-xihe"] {
        assert!(dash.text.contains(&format!("institution={}", ids[t])), "{t} is on the first level");
    }
    let th = ids["th-dongguan"];
    let down = b.get(&format!("/app/bureau?from={year}&to={today}&institution={th}")).await;
    assert_eq!(down.status, StatusCode::OK);
    assert!(down.text.contains("东关镇卫生院（本级）"));
    let th_api = app.get(&format!("/api/v1/statistics/kpis?institution_id={th}"), &bureau.token).await.body;
    assert!(down.text.contains(&format!("<span class=\"tile-value\">{}</span>", kpi_text(&th_api, "visits"))));
    assert!(
        down.text.contains(&format!("id=\"up\" href=\"/app/bureau?from={year}&#38;to={today}\"")),
        "up goes back to the first level, where the township was listed: {}",
        down.text
    );
    // Its children are the villages under it, by name.
    for child in th_api["children"].as_array().unwrap() {
        assert!(down.text.contains(child["institution_name"].as_str().unwrap()));
    }

    // Exports from the page: the same bytes as the API's.
    let csv = b.client.get(format!("{}/app/bureau/kpis.csv?from={year}&to={today}", app.base)).send().await.unwrap();
    assert_eq!(csv.status(), StatusCode::OK);
    let bytes = csv.bytes().await.unwrap();
    assert!(bytes.starts_with(&[0xEF, 0xBB, 0xBF]), "CSV for Excel starts with a BOM");
    assert!(String::from_utf8_lossy(&bytes).contains("县域内就诊率"));
    assert!(String::from_utf8_lossy(&bytes).contains("示范县人民医院（本级）"));
    let xlsx = b.client.get(format!("{}/app/bureau/kpis.xlsx?from={year}&to={today}", app.base)).send().await.unwrap();
    assert_eq!(xlsx.status(), StatusCode::OK);
    assert!(xlsx.bytes().await.unwrap().starts_with(b"PK"), "an XLSX is a zip");

    // Bad input gets a page that says what is wrong, in the reader's language.
    let bad = b.get("/app/bureau?from=2026-02-01&to=2026-01-01").await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.text.contains("统计期间无效"));
    let bad = b.get("/app/bureau?from=yesterday").await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    // Years no record has would overflow the date arithmetic: refused, not a crash.
    let far = b.get("/app/bureau?to=%2B262142-12-31").await;
    assert_eq!(far.status, StatusCode::UNPROCESSABLE_ENTITY);
    let far = b.get("/app/bureau?from=%2B262142-12-31&to=%2B262142-12-31").await;
    assert_eq!(far.status, StatusCode::UNPROCESSABLE_ENTITY);
    let api = app.get("/api/v1/statistics/kpis?from=%2B262142-12-31&to=%2B262142-12-31", &bureau.token).await;
    assert!(api.status.is_client_error(), "{}", api.text);
    let gone = b.get(&format!("/app/bureau?institution={}", uuid::Uuid::now_v7())).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);

    // English: the switch remembers the choice and comes back to the same page.
    let r = b.get("/app/lang/en?next=%2Fapp%2Fbureau").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.location.as_deref(), Some("/app/bureau"));
    let en = b.get("/app/bureau").await;
    assert!(en.text.contains("<html lang=\"en\">"));
    assert!(en.text.contains("Community statistics"));
    // No Chinese on the English page but the switch back to Chinese and the official's own name
    // (data, not interface; institutions have English names in the tenant file).
    let text = visible_text(&en.text).replace("中文", "").replace("马卫国", "");
    let chinese: Vec<&str> = text.split_whitespace().filter(|w| han(w)).collect();
    assert!(chinese.is_empty(), "Chinese on the English page: {chinese:?}");
    // The exports follow the page's language.
    let csv = b.client.get(format!("{}/app/bureau/kpis.csv?from={year}&to={today}", app.base)).send().await.unwrap();
    let csv = String::from_utf8(csv.bytes().await.unwrap()[3..].to_vec()).unwrap();
    assert!(csv.starts_with("Institution,Period,") && !han(&csv), "{csv}");
    // An open redirect is not on offer.
    let r = b.get("/app/lang/zh-CN?next=https%3A%2F%2Fevil.example").await;
    assert_eq!(r.location.as_deref(), Some("/app/"));
    let r = b.get("/app/lang/zh-CN?next=%2F%2Fevil.example").await;
    assert_eq!(r.location.as_deref(), Some("/app/"));
}

fn kpi_text(report: &Value, code: &str) -> String {
    report["kpis"].as_array().unwrap().iter().find(|k| k["code"] == code).unwrap()["text"]
        .as_str()
        .unwrap()
        .replace('<', "&#60;")
}

#[tokio::test]
async fn logout_needs_the_token_and_ends_the_session_and_other_roles_are_refused_the_dashboard() {
    let app = spawn_app().await;
    app.load_demo().await;
    let b = Browser::new(&app);
    b.login("bureau").await;
    let dash = b.get("/app/bureau").await;
    assert_eq!(dash.status, StatusCode::OK);

    let r = b.post("/app/logout", &[("csrf", "forged")]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = b.post("/app/logout", &[]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "a form without its token is refused: {}", r.text);
    let stolen = b.cookies();
    assert!(stolen.contains("cloudhis_session="), "{stolen}");
    assert_eq!(b.get("/app/bureau").await.status, StatusCode::OK, "a forged logout did nothing");
    let r = b.post("/app/logout", &[("csrf", &csrf(&dash.text))]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.location.as_deref(), Some("/app/login"));
    assert_eq!(b.get("/app/bureau").await.location.as_deref(), Some("/app/login"));
    // The session cookie replayed after logout opens nothing: the token is revoked, not just
    // cleared from this browser.
    let replay = reqwest::Client::builder().redirect(Policy::none()).build().unwrap();
    let r = replay.get(format!("{}/app/bureau", app.base)).header("cookie", &stolen).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["location"], "/app/login");
    let token = stolen.split("cloudhis_session=").nth(1).unwrap().split(';').next().unwrap();
    let api = app.get("/api/v1/statistics/kpis", token).await;
    assert_eq!(api.status, 401, "nor does the API take the token");

    // A village doctor has no dashboard; a roving one chooses an institution first.
    let v = Browser::new(&app);
    let r = v.login("village.doctor").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let r = v.get("/app/bureau").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.text.contains("无权"));
    let roving = Browser::new(&app);
    let r = roving.login("village.roving").await;
    assert_eq!(r.location.as_deref(), Some("/app/institution"));
    let choose = roving.get("/app/institution").await;
    assert_eq!(choose.status, StatusCode::OK);
    assert!(choose.text.contains("南山村卫生室") && choose.text.contains("石桥村卫生室"), "{}", choose.text);
    let at = choose.text.find("石桥村卫生室").unwrap();
    let id_at = choose.text[..at].rfind("value=\"").unwrap() + 7;
    let institution = &choose.text[id_at..id_at + 36];
    let r = roving.post("/app/institution", &[("csrf", &csrf(&choose.text)), ("institution_id", institution)]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    let again = roving.get("/app/institution").await;
    assert!(again.text.contains(&format!("value=\"{institution}\" checked")), "the session now acts in the chosen one");
}

/// The referral coordinator's day: a referral arrives live on the inbox page's stream, with its
/// SLA time left; accept, record arrival, complete with a summary and refer back down from the
/// referral's page; refusals say why and write nothing.
#[tokio::test]
async fn the_coordinator_inbox_updates_live_and_every_step_is_a_form() {
    use std::time::Duration;

    let app = spawn_app().await;
    app.load_demo().await;
    let village = app.login("village.doctor").await;
    let ids = app.institutions(&village).await;
    let person = crate::referrals::patient(&app, &village, 7).await;
    let b = Browser::new(&app);
    let r = b.login("coordinator").await;
    assert_eq!(r.location.as_deref(), Some("/app/referrals"));
    let inbox = b.get("/app/referrals").await;
    assert_eq!(inbox.status, StatusCode::OK);
    assert!(inbox.text.contains("暂无转诊"));
    assert!(inbox.text.contains("<script src=\"/app/static/live.js\" defer></script>"));

    // The page's event stream, with the browser's cookie.
    let mut stream = b.client.get(format!("{}/app/referrals/stream", app.base)).send().await.unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    // Subscribed before its headers were sent: no wait is needed.
    assert!(stream.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let up = app
        .post(
            "/api/v1/referrals",
            &village.token,
            serde_json::json!({"person_id": person, "direction": "up", "to_institution_id": ids["county-hospital"],
                   "reason": "血压控制不佳，请上级医院调整用药", "urgent": true}),
        )
        .await;
    assert_eq!(up.status, 201, "{}", up.text);
    let id = up.body["id"].as_str().unwrap().to_string();
    let mut said = String::new();
    let heard = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(chunk) = stream.chunk().await.unwrap() {
            said.push_str(&String::from_utf8_lossy(&chunk));
            if said.contains(&id) {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(heard, Ok(true), "the stream said: {said}");
    assert!(said.contains("event: referral"));
    assert!(!said.contains("转诊患者"), "no patient data in the stream");
    drop(stream);

    // The rows the page swaps in: the new referral, urgent, with its SLA time left.
    let rows = b.get("/app/referrals/rows").await;
    assert!(rows.text.starts_with("<tbody id=\"referral-rows\">"), "{}", rows.text);
    assert!(rows.text.contains(&format!("data-referral=\"{id}\"")));
    assert!(rows.text.contains("转诊患者") && rows.text.contains("<strong class=\"urgent\">紧急</strong>"));
    // Urgent: the demo's two hours to decide, not the routine 24.
    assert!(rows.text.contains("剩余 1 小时 5"), "{}", rows.text);

    let page = b.get(&format!("/app/referrals/{id}")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text.contains("data-status=\"requested\""));
    let token = csrf(&page.text);
    let act = |step: &'static str, form: Vec<(&'static str, String)>| {
        let b = &b;
        let id = id.clone();
        async move {
            let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
            b.post(&format!("/app/referrals/{id}/{step}"), &form).await
        }
    };
    // Rejecting needs a reason; a forged form does nothing; arrival before acceptance is refused.
    let r = act("reject", vec![("csrf", token.clone()), ("note", "  ".into())]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.text.contains("请填写必填内容"));
    let r = act("accept", vec![("csrf", "0".repeat(32))]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = act("arrive", vec![("csrf", token.clone())]).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(r.text.contains("不允许此操作"));
    let still = app.get(&format!("/api/v1/referrals/{id}"), &village.token).await;
    assert_eq!(still.body["status"], "requested", "refusals wrote nothing");

    for (step, form, status) in [
        ("accept", vec![("csrf", token.clone())], "accepted"),
        ("arrive", vec![("csrf", token.clone())], "arrived"),
        ("complete", vec![("csrf", token.clone()), ("note", "调整降压方案后血压平稳".to_string())], "completed"),
    ] {
        let r = act(step, form).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{step}: {}", r.text);
        assert_eq!(r.location.as_deref(), Some(format!("/app/referrals/{id}").as_str()));
        let page = b.get(&format!("/app/referrals/{id}")).await;
        assert!(page.text.contains(&format!("data-status=\"{status}\"")), "{step}");
    }
    let r = act(
        "down",
        vec![("csrf", token.clone()), ("note", "出院，血压平稳".into()), ("rehab_plan", "每周随访血压".into())],
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    let down = r.location.unwrap();
    let down_page = b.get(&down).await;
    assert!(down_page.text.contains("下转康复") && !down_page.text.contains("referred back"), "{}", down_page.text);
    assert!(down_page.text.contains("每周随访血压"), "the rehabilitation plan is shown");
    let sent = b.get("/app/referrals?box=sent").await;
    assert!(sent.text.contains(down.trim_start_matches("/app/referrals/")), "the down-referral is in the sent list");
    // The village sees the whole story through the API too.
    let theirs = app.get(&format!("/api/v1/referrals/{id}"), &village.token).await;
    assert_eq!(theirs.body["status"], "completed");

    // Another institution's referral is not there; nor is nonsense.
    let stranger = Browser::new(&app);
    stranger.login("village.doctor2").await;
    assert_eq!(stranger.get(&format!("/app/referrals/{id}")).await.status, StatusCode::NOT_FOUND);
    assert_eq!(stranger.get("/app/referrals/not-a-uuid").await.status, StatusCode::NOT_FOUND);
}

/// The village doctor's visit, all in forms: register a patient (a bad resident ID is refused
/// and the form kept; a probable match is shown to confirm), start a visit, vitals (an
/// impossible one refused), an ICD-10 diagnosis by code or by name, a prescription from the
/// clinic's stock, the charge and the payment, an up-referral from the visit, closing it.
#[tokio::test]
async fn a_village_doctor_runs_a_whole_visit_through_the_pages() {
    let app = spawn_app().await;
    app.load_demo().await;
    let b = Browser::new(&app);
    let r = b.login("village.doctor").await;
    assert_eq!(r.location.as_deref(), Some("/app/clinic"));
    let clinic = b.get("/app/clinic").await;
    assert_eq!(clinic.status, StatusCode::OK);
    assert!(clinic.text.contains("今天还没有就诊记录"));
    let token = csrf(&clinic.text);

    let rid = crate::patients::rid("130997", "19650412", 5);
    let bad = b
        .post("/app/clinic/patients", &[("csrf", &token), ("name", "门诊甲"), ("resident_id", "130997196504120000")])
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.text.contains("请检查：身份证号"), "{}", bad.text);
    assert!(bad.text.contains("value=\"门诊甲\""), "the form is kept");
    // At the desk the person can be asked: without an ID, sex and birth date are required (the
    // API registers records from other systems without them, flagged).
    let sexless = b.post("/app/clinic/patients", &[("csrf", &token), ("name", "门诊乙"), ("birth_date", "1965")]).await;
    assert_eq!(sexless.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(sexless.text.contains("请检查：性别"), "{}", sexless.text);
    assert!(sexless.text.contains("value=\"门诊乙\"") && sexless.text.contains("value=\"1965\""), "the form is kept");
    let made = b
        .post(
            "/app/clinic/patients",
            &[("csrf", &token), ("name", "门诊甲"), ("resident_id", &rid), ("phone", "13711112222")],
        )
        .await;
    assert_eq!(made.status, StatusCode::SEE_OTHER, "{}", made.text);
    let person_page = made.location.unwrap();
    assert!(!person_page.contains(&rid) && !person_page.contains("13711112222"), "no identifier in the URL");
    let person = person_page.trim_start_matches("/app/clinic/patients/").to_string();

    // Someone already in the community, known by name, sex and birth date only.
    let other = app.login("village.doctor2").await;
    let first = app
        .post(
            "/api/v1/patients",
            &other.token,
            serde_json::json!({"name": "王秀英", "sex": "female", "birth_date": "1948", "address_division": "130999101201"}),
        )
        .await;
    assert_eq!(first.status, 201, "{}", first.text);
    let existing = first.body["person"]["id"].as_str().unwrap().to_string();
    let asked = b
        .post(
            "/app/clinic/patients",
            &[("csrf", &token), ("name", "王秀英"), ("sex", "female"), ("birth_date", "1948-06-10")],
        )
        .await;
    assert_eq!(asked.status, StatusCode::CONFLICT, "{}", asked.text);
    assert!(asked.text.contains("疑似同一人"));
    assert!(asked.text.contains(&format!("name=\"link_to\" value=\"{existing}\"")));
    let linked = b
        .post(
            "/app/clinic/patients",
            &[
                ("csrf", &token),
                ("name", "王秀英"),
                ("sex", "female"),
                ("birth_date", "1948-06-10"),
                ("link_to", &existing),
            ],
        )
        .await;
    assert_eq!(linked.location.as_deref(), Some(format!("/app/clinic/patients/{existing}?linked=same").as_str()));
    let shown = b.get(linked.location.as_deref().unwrap()).await;
    assert!(shown.text.contains("id=\"linked-notice\"") && shown.text.contains("已关联到社区已有的患者档案"));

    // A homophone typed for someone on file links (the resident ID is theirs), and the page
    // says the names differ.
    let their_id = crate::patients::rid("130997", "19660809", 7);
    let on_file =
        app.post("/api/v1/patients", &other.token, serde_json::json!({"name": "张涛", "resident_id": their_id})).await;
    assert_eq!(on_file.status, 201, "{}", on_file.text);
    let typed = b.post("/app/clinic/patients", &[("csrf", &token), ("name", "张滔"), ("resident_id", &their_id)]).await;
    let to = typed.location.clone().unwrap_or_default();
    assert!(to.ends_with("?linked=other_name"), "{} {}", typed.status, typed.text);
    let shown = b.get(&to).await;
    assert!(shown.text.contains("档案姓名与您填写的姓名不同") && shown.text.contains("张涛"), "{}", shown.text);

    // Someone registered only at another clinic: the search offers to register them here.
    let elsewhere = app
        .post(
            "/api/v1/patients",
            &other.token,
            serde_json::json!({"name": "李桂兰", "sex": "female", "birth_date": "1950-05-05", "phone": "13655556666"}),
        )
        .await;
    assert_eq!(elsewhere.status, 201, "{}", elsewhere.text);
    let theirs = elsewhere.body["person"]["id"].as_str().unwrap().to_string();
    let hit = b.post("/app/clinic/search", &[("csrf", &token), ("name", "李桂兰")]).await;
    assert!(
        !hit.text.contains(&format!("href=\"/app/clinic/patients/{theirs}\"")),
        "no link to a page that would refuse"
    );
    let at = hit.text.find("class=\"inline register-here\"").expect("an offer to register here");
    let offer = &hit.text[at..at + hit.text[at..].find("</form>").unwrap()];
    let field = |name: &str| {
        let k = format!("name=\"{name}\" value=\"");
        let i = offer.find(&k).map(|i| i + k.len())?;
        Some(offer[i..i + offer[i..].find('"').unwrap()].to_string())
    };
    let (name, sex, born, link) =
        (field("name").unwrap(), field("sex").unwrap(), field("birth_date").unwrap(), field("link_to").unwrap());
    assert_eq!(
        (name.as_str(), sex.as_str(), born.as_str(), link.as_str()),
        ("李桂兰", "female", "1950-05-05", theirs.as_str())
    );
    let r = b
        .post(
            "/app/clinic/patients",
            &[("csrf", &token), ("name", &name), ("sex", &sex), ("birth_date", &born), ("link_to", &link)],
        )
        .await;
    assert_eq!(
        r.location.as_deref(),
        Some(format!("/app/clinic/patients/{theirs}?linked=same").as_str()),
        "{}",
        r.text
    );
    assert_eq!(b.get(r.location.as_deref().unwrap()).await.status, StatusCode::OK, "registered here now");

    // Search is a POST: the resident ID never rides in a URL.
    let found = b.post("/app/clinic/search", &[("csrf", &token), ("resident_id", &rid)]).await;
    assert_eq!(found.status, StatusCode::OK);
    assert!(found.text.contains(&format!("/app/clinic/patients/{person}")));
    let empty = b.post("/app/clinic/search", &[("csrf", &token)]).await;
    assert_eq!(empty.status, StatusCode::UNPROCESSABLE_ENTITY);

    let started =
        b.post("/app/visits", &[("csrf", &token), ("person_id", &person), ("chief_complaint", "头晕两天")]).await;
    assert_eq!(started.status, StatusCode::SEE_OTHER, "{}", started.text);
    let visit = started.location.unwrap();
    let step = |name: &'static str, form: Vec<(&'static str, String)>| {
        let (b, visit, token) = (&b, visit.clone(), token.clone());
        async move {
            let mut form: Vec<(&str, String)> = form;
            form.push(("csrf", token));
            let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
            b.post(&format!("{visit}/{name}"), &form).await
        }
    };
    let r = step("vitals", vec![("systolic", "400".into()), ("diastolic", "90".into()), ("pulse", "77".into())]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    // The same page again, menu and all, with what was typed and the bad field named.
    assert!(
        r.text.contains("id=\"err-vitals\"") && r.text.contains("收缩压（mmHg）：生命体征数值超出合理范围"),
        "{}",
        r.text
    );
    assert!(
        r.text.contains("name=\"systolic\" inputmode=\"numeric\" maxlength=\"3\" value=\"400\" aria-invalid=\"true\" aria-describedby=\"err-vitals\""),
        "{}",
        r.text
    );
    assert!(r.text.contains("value=\"90\"") && r.text.contains("value=\"77\""), "every typed value is kept");
    assert!(r.text.contains("action=\"/app/logout\""), "the menu is kept");
    let r = step("vitals", vec![("systolic", "abc".into())]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let r = step("vitals", vec![("systolic", "168".into()), ("diastolic", "102".into()), ("pulse", "80".into())]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    let r = step("diagnosis", vec![("diagnosis", "XYZ".into())]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.text.contains("未找到该诊断"));
    let r = step("diagnosis", vec![("diagnosis", "I10 原发性高血压".into())]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    let icd = b.get("/app/icd10?q=gxy").await;
    assert!(icd.text.contains("I10"), "search by initials: {}", icd.text);

    let page = b.get(&visit).await;
    assert!(page.text.contains("168/102 mmHg") && page.text.contains("I10 原发性高血压"), "{}", page.text);
    // A drug the clinic stocks, from the page's own list.
    let at = page.text.find("<select id=\"drug\"").unwrap();
    let opt = page.text[at..].find("<option value=\"").map(|i| at + i).unwrap();
    let second = page.text[opt + 15..].find("<option value=\"").map(|i| opt + 15 + i + 15).unwrap();
    let code = page.text[second..second + page.text[second..].find('"').unwrap()].to_string();
    let r = step(
        "prescribe",
        vec![
            ("drug_code", code.clone()),
            ("dose", "2".into()),
            ("dose_unit", "片".into()),
            ("frequency", "tid".into()),
            ("days", "7".into()),
            ("quantity", "10001".into()),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert!(r.text.contains("数量：数量须为 1 到 10000 之间的整数"), "the refusal says what it is: {}", r.text);
    assert!(chosen(&r.text, &code), "the drug stays chosen");
    let typed = "value=\"10001\" aria-describedby=\"qty-hint err-prescribe\" aria-invalid=\"true\"";
    assert!(chosen(&r.text, "tid") && r.text.contains(typed), "{}", r.text);
    let r = step(
        "prescribe",
        vec![
            ("drug_code", code.clone()),
            ("dose", "1".into()),
            ("dose_unit", "片".into()),
            ("frequency", "qd".into()),
            ("days", "7".into()),
            ("quantity", "7".into()),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    let r = step("charge", vec![("fee_code", String::new())]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    let page = b.get(&visit).await;
    let marker = "id=\"bill-owed\">¥";
    let owed_at = page.text.find(marker).expect("a bill") + marker.len();
    let owed = page.text[owed_at..owed_at + page.text[owed_at..].find('<').unwrap()].to_string();
    assert_ne!(owed, "0.00");
    let bill_at = page.text.find("name=\"bill_id\" value=\"").unwrap() + 22;
    let bill = page.text[bill_at..bill_at + 36].to_string();
    let r =
        step("pay", vec![("bill_id", bill.clone()), ("method", "cash".into()), ("amount_yuan", "99999".into())]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "overpaying is refused");
    assert!(
        r.text.contains("收款金额超过应付金额") && r.text.contains("value=\"99999\" inputmode=\"decimal\""),
        "{}",
        r.text
    );
    let r = step("pay", vec![("bill_id", bill), ("method", "mobile".into()), ("amount_yuan", owed.clone())]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    let page = b.get(&visit).await;
    assert!(page.text.contains("id=\"bill-owed\">¥0.00"), "paid in full");

    let r = step("refer", vec![("to_institution_id", String::new()), ("reason", "x".into())]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let county = app.institutions(&app.login("village.doctor").await).await["county-hospital"].to_string();
    let r =
        step("refer", vec![("to_institution_id", county), ("reason", "血压控制不佳".into()), ("urgent", "1".into())])
            .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    let referral = r.location.unwrap();
    let rp = b.get(&referral).await;
    assert!(rp.text.contains("data-status=\"requested\"") && rp.text.contains("血压控制不佳"));

    let r = step("close", vec![]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let page = b.get(&visit).await;
    assert!(page.text.contains("data-open=\"false\""));
    let r = step("vitals", vec![("pulse", "70".into())]).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "a closed visit does not change");
    let clinic = b.get("/app/clinic").await;
    assert!(clinic.text.contains("门诊甲"), "today's patients list the visit");

    assert_eq!(b.get("/app/").await.location.as_deref(), Some("/app/clinic"), "/app/ is still the home page");
    // An address that is no page is a page saying so, not JSON.
    let nowhere = b.get("/app/no/such/page").await;
    assert_eq!(nowhere.status, StatusCode::NOT_FOUND);
    assert!(nowhere.text.starts_with("<!doctype html>") && nowhere.text.contains("找不到该页面"), "{}", nowhere.text);
    // With the reader's menu, as on every page.
    assert!(nowhere.text.contains("href=\"/app/clinic\"") && nowhere.text.contains("action=\"/app/logout\""));
    assert!(nowhere.text.contains("张卫东"), "who is signed in");
    // Signed out, the same page has no menu.
    let anonymous = Browser::new(&app).get("/app/no/such/page").await;
    assert_eq!(anonymous.status, StatusCode::NOT_FOUND);
    assert!(!anonymous.text.contains("action=\"/app/logout\""));

    // Another clinic's doctor cannot open this visit, and keeps their own menu on the refusal.
    let stranger = Browser::new(&app);
    stranger.login("village.doctor2").await;
    let refused = stranger.get(&visit).await;
    assert_eq!(refused.status, StatusCode::NOT_FOUND);
    assert!(refused.text.contains("郑秀英") && refused.text.contains("href=\"/app/followups\""), "{}", refused.text);
}

/// The follow-up worklist and form: a never-seen enrollment is on the list; a follow-up with an
/// impossible value is refused and writes nothing; a danger value is accepted, flags the patient
/// and links the proposed up-referral; the CSV export opens in Excel.
#[tokio::test]
async fn a_follow_up_recorded_in_the_form_flags_a_danger_value_and_proposes_a_referral() {
    let app = spawn_app().await;
    app.load_demo().await;
    let doc = app.login("village.doctor").await;
    let person = crate::referrals::patient(&app, &doc, 9).await;
    let e = app
        .post(
            "/api/v1/followups/enrollments",
            &doc.token,
            serde_json::json!({"person_id": person, "disease": "hypertension", "diagnosed_on": "2025-03-01"}),
        )
        .await;
    assert_eq!(e.status, 201, "{}", e.text);
    let id = e.body["id"].as_str().unwrap().to_string();

    let b = Browser::new(&app);
    b.login("village.doctor").await;
    let list = b.get("/app/followups").await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(list.text.contains(&format!("data-enrollment=\"{id}\"")), "{}", list.text);
    assert!(list.text.contains("转诊患者"));
    let csv = b.client.get(format!("{}/app/followups/worklist.csv", app.base)).send().await.unwrap();
    let bytes = csv.bytes().await.unwrap();
    assert!(bytes.starts_with(&[0xEF, 0xBB, 0xBF]) && String::from_utf8_lossy(&bytes).contains("转诊患者"));

    let page = b.get(&format!("/app/followups/{id}")).await;
    assert_eq!(page.status, StatusCode::OK);
    let token = csrf(&page.text);
    let path = format!("/app/followups/{id}");
    let r = b
        .post(
            &path,
            &[("csrf", &token), ("systolic", "400"), ("diastolic", "90"), ("symptoms", "头晕"), ("salt", "heavy")],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    // The form again, as typed, with the field at fault named, and the menu.
    assert!(r.text.contains("id=\"err-followup\""), "{}", r.text);
    assert!(r.text.contains("value=\"400\" aria-invalid=\"true\" aria-describedby=\"err-followup\""), "{}", r.text);
    assert!(r.text.contains("value=\"头晕\"") && r.text.contains("<option value=\"heavy\" selected>"));
    assert!(r.text.contains("action=\"/app/logout\""));
    let r =
        b.post(&path, &[("csrf", &token), ("systolic", "150"), ("diastolic", "90"), ("visit_on", "2099-01-01")]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "a follow-up in the future");
    assert!(r.text.contains("value=\"2099-01-01\"") && r.text.contains("value=\"150\""), "{}", r.text);
    let still = app.get(&format!("/api/v1/followups/enrollments/{id}"), &doc.token).await;
    assert_eq!(still.body["visits"].as_array().map(Vec::len).unwrap_or(0), 0, "{}", still.text);

    let r = b
        .post(
            &path,
            &[
                ("csrf", &token),
                ("systolic", "186"),
                ("diastolic", "112"),
                ("symptoms", "头痛，头晕"),
                ("adherence", "intermittent"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    let page = b.get(&path).await;
    assert!(page.text.contains("危急值"), "{}", page.text);
    let at = page.text.find("id=\"proposed-referral\"").expect("the proposed referral is linked");
    let href = page.text[..at].rfind("href=\"").unwrap() + 6;
    let referral = &page.text[href..href + page.text[href..].find('"').unwrap()];
    let draft = b.get(referral).await;
    assert_eq!(draft.status, StatusCode::OK, "{referral}");
    assert!(draft.text.contains("data-status=\"draft\""), "{}", draft.text);
    let r = b.post(&format!("{referral}/submit"), &[("csrf", &token)]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    assert!(b.get(referral).await.text.contains("data-status=\"requested\""), "the doctor sent the draft");
    let list = b.get("/app/followups").await;
    let at = list.text.find("id=\"to-refer\"").expect("a list of patients to refer");
    assert!(list.text[at..].contains(&format!("data-enrollment=\"{id}\"")), "flagged on the doctor's list");
}

/// Enrolling from the patient page: a refused form (no registry chosen, a diagnosis in the
/// future) comes back on the page as typed with the field named and nothing written; a good one
/// opens the enrollment, the patient page lists it, a second enrolment in the same registry is
/// refused by name, and the worklist's header counts the never-seen patient whose first
/// follow-up is already late as overdue too.
#[tokio::test]
async fn a_village_doctor_enrols_a_patient_from_the_patient_page_and_the_worklist_counts_agree() {
    let app = spawn_app().await;
    app.load_demo().await;
    let doc = app.login("village.doctor").await;
    let person = crate::referrals::patient(&app, &doc, 11).await;
    let b = Browser::new(&app);
    b.login("village.doctor").await;
    let path = format!("/app/clinic/patients/{person}");
    let page = b.get(&path).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text.contains("id=\"enroll-form\"") && page.text.contains("尚未纳入"), "{}", page.text);
    let token = csrf(&page.text);
    let enroll = format!("{path}/enroll");

    let r = b.post(&enroll, &[("csrf", &token), ("disease", ""), ("diagnosed_on", "2025-03-01")]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert!(r.text.contains("id=\"err-enroll\"") && r.text.contains("病种："), "{}", r.text);
    assert!(r.text.contains("name=\"disease\" required aria-invalid=\"true\""), "{}", r.text);
    assert!(r.text.contains("value=\"2025-03-01\""), "what was typed stays: {}", r.text);
    assert!(r.text.contains("action=\"/app/logout\""), "the menu stays");
    let r = b.post(&enroll, &[("csrf", &token), ("disease", "diabetes"), ("diagnosed_on", "2099-01-01")]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert!(r.text.contains("确诊日期：日期不能晚于今天"), "{}", r.text);
    assert!(r.text.contains("<option value=\"diabetes\" selected>"), "{}", r.text);
    assert!(r.text.contains("value=\"2099-01-01\" aria-invalid=\"true\""), "{}", r.text);
    let none = app.get(&format!("/api/v1/followups/enrollments?person_id={person}"), &doc.token).await;
    assert_eq!(none.body.as_array().unwrap().len(), 0, "nothing written: {}", none.text);

    let r = b.post(&enroll, &[("csrf", &token), ("disease", "hypertension"), ("diagnosed_on", "2025-03-01")]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    let opened = r.location.unwrap();
    assert!(opened.starts_with("/app/followups/"), "{opened}");
    let id = opened.trim_start_matches("/app/followups/").to_string();
    assert_eq!(b.get(&opened).await.status, StatusCode::OK);
    let page = b.get(&path).await;
    assert!(page.text.contains(&format!("data-enrollment=\"{id}\"")), "listed on the patient page");
    let r = b.post(&enroll, &[("csrf", &token), ("disease", "hypertension"), ("diagnosed_on", "2025-03-01")]).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    assert!(r.text.contains("已在此病种的慢病管理中"), "{}", r.text);

    let list = app.get(&format!("/api/v1/followups/worklist?as_of={}", followups_day(&app, 120)), &doc.token).await;
    assert_eq!(list.status, 200, "{}", list.text);
    let counts = &list.body["counts"];
    assert_eq!(counts["never_followed_up"], 1, "{}", list.text);
    assert_eq!(counts["never_followed_up_overdue"], 1, "{}", list.text);
    let late = list.body["items"][0]["days_overdue"].as_i64().unwrap();
    assert!(late > 0, "the row says it is late: {}", list.text);
    // A paper registry entered late: enrolled months ago, never seen, late today.
    let other = crate::referrals::patient(&app, &doc, 12).await;
    let back = app
        .post(
            "/api/v1/followups/enrollments",
            &doc.token,
            serde_json::json!({"person_id": other, "disease": "diabetes", "diagnosed_on": "2025-01-10", "enrolled_on": "2025-06-01"}),
        )
        .await;
    assert_eq!(back.status, 201, "{}", back.text);
    let page = b.get("/app/followups").await;
    assert!(page.text.contains("id=\"count-never_followed_up\">从未随访 <strong>2</strong>"), "{}", page.text);
    assert!(page.text.contains("id=\"count-never-late\">1<"), "{}", page.text);
}

/// `days` after today, as the follow-up service counts days (the tenant's clock).
fn followups_day(_app: &TestApp, days: i64) -> String {
    (chrono::Utc::now().date_naive() + chrono::Duration::days(days)).to_string()
}

/// A referral carries the case: the coordinator reads the patient's sex and age, the visit's
/// diagnosis, vitals and medicines on the referral's page without opening the visit (which only
/// the sender may, and gets a link to); an up-referral and the down-referral made from it link
/// to each other.
#[tokio::test]
async fn the_coordinator_reads_the_case_on_the_referral_and_up_and_down_link_to_each_other() {
    use serde_json::json;
    let app = spawn_app().await;
    app.load_demo().await;
    let doc = app.login("village.doctor").await;
    let ids = app.institutions(&doc).await;
    let person = crate::referrals::patient(&app, &doc, 13).await;
    let e = app.post("/api/v1/encounters", &doc.token, json!({"person_id": person})).await;
    assert_eq!(e.status, 201, "{}", e.text);
    let enc = e.body["id"].as_str().unwrap().to_string();
    for (path, body) in [
        ("vitals", json!({"systolic": 172, "diastolic": 104, "pulse": 78})),
        ("diagnoses", json!({"code": "I10"})),
        (
            "prescriptions",
            json!({"lines": [{"drug_code": "amlodipine-5mg", "dose": 5, "dose_unit": "mg", "frequency": "qd", "days": 7, "quantity": 7}]}),
        ),
    ] {
        let r = app.post(&format!("/api/v1/encounters/{enc}/{path}"), &doc.token, body).await;
        assert!(r.status.is_success(), "{path}: {}", r.text);
    }
    let up = app
        .post(
            "/api/v1/referrals",
            &doc.token,
            json!({"person_id": person, "direction": "up", "to_institution_id": ids["county-hospital"],
                   "reason": "血压控制不佳", "source_encounter_id": enc}),
        )
        .await;
    assert_eq!(up.status, 201, "{}", up.text);
    let up = up.body["id"].as_str().unwrap().to_string();

    let b = Browser::new(&app);
    b.login("coordinator").await;
    let page = b.get(&format!("/app/referrals/{up}")).await;
    assert_eq!(page.status, StatusCode::OK);
    let case = &page.text[page.text.find("id=\"case\"").expect("a case section")..];
    // 转诊患者 was born 1960-01-01 (the test resident id): a man, 66 or so.
    assert!(case.contains("id=\"case-who\">男 · "), "{case}");
    assert!(case.contains("I10 "), "{case}");
    assert!(case.contains("血压 172/104 mmHg") && case.contains("脉搏 78/min"), "{case}");
    assert!(case.contains("氨氯地平") && case.contains("每日一次") && case.contains("× 7 天"), "{case}");
    assert!(!case.contains("id=\"case-visit\""), "the receiver is not given the village's visit");
    let sender = Browser::new(&app);
    sender.login("village.doctor").await;
    let mine = sender.get(&format!("/app/referrals/{up}")).await;
    assert!(mine.text.contains(&format!("id=\"case-visit\" href=\"/app/visits/{enc}\"")), "{}", mine.text);

    let coord = app.login("coordinator").await;
    for step in ["accept", "arrive"] {
        let r = app.post(&format!("/api/v1/referrals/{up}/{step}"), &coord.token, json!({})).await;
        assert!(r.status.is_success(), "{step}: {}", r.text);
    }
    let down = app
        .post(
            &format!("/api/v1/referrals/{up}/down"),
            &coord.token,
            json!({"discharge_summary": "血压平稳", "rehab_plan": "每月随访"}),
        )
        .await;
    assert!(down.status.is_success(), "{}", down.text);
    let down = down.body["id"].as_str().unwrap().to_string();
    let page = b.get(&format!("/app/referrals/{down}")).await;
    assert!(page.text.contains(&format!("id=\"case-parent\" href=\"/app/referrals/{up}\"")), "{}", page.text);
    let page = b.get(&format!("/app/referrals/{up}")).await;
    assert!(page.text.contains(&format!("class=\"case-child\" href=\"/app/referrals/{down}\"")), "{}", page.text);
}

/// Urgent means urgent: an urgent referral must be decided within the tenant's urgent limit (2 h
/// in the demo, against 24 h), is marked, and the coordinator's inbox puts it first, filters by
/// urgency and can list newest first instead; the live refresh keeps the filter.
#[tokio::test]
async fn an_urgent_referral_has_its_own_limit_and_the_inbox_sorts_and_filters_by_it() {
    use serde_json::json;
    let app = spawn_app().await;
    app.load_demo().await;
    let doc = app.login("village.doctor").await;
    let county = app.institutions(&doc).await["county-hospital"].to_string();
    let mut made = Vec::new();
    for (seq, urgent) in [(21, false), (22, true), (23, false)] {
        let person = crate::referrals::patient(&app, &doc, seq).await;
        let r = app
            .post(
                "/api/v1/referrals",
                &doc.token,
                json!({"person_id": person, "direction": "up", "to_institution_id": county, "reason": "复诊", "urgent": urgent}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
        let at = |k: &str| r.body[k].as_str().unwrap().parse::<chrono::DateTime<chrono::Utc>>().unwrap();
        let hours = (at("sla_due_at") - at("requested_at")).num_minutes() as f64 / 60.0;
        assert_eq!(hours, if urgent { 2.0 } else { 24.0 }, "{}", r.text);
        made.push((r.body["id"].as_str().unwrap().to_string(), urgent));
    }
    let order =
        |html: &str| -> Vec<String> { html.split("data-referral=\"").skip(1).map(|s| s[..36].to_string()).collect() };
    let b = Browser::new(&app);
    b.login("coordinator").await;
    let inbox = b.get("/app/referrals").await;
    assert_eq!(inbox.status, StatusCode::OK);
    let ids = order(&inbox.text);
    assert_eq!(ids[0], made[1].0, "the urgent one first: {ids:?}");
    assert!(inbox.text.contains("data-urgent=\"true\"") && inbox.text.contains("class=\"urgent\""));
    // The routine ones by time left: the older is due first.
    assert_eq!(ids[1..], [made[0].0.clone(), made[2].0.clone()]);
    let routine = b.get("/app/referrals?urgency=routine").await;
    assert_eq!(order(&routine.text), [made[0].0.clone(), made[2].0.clone()]);
    assert!(routine.text.contains("<option value=\"routine\" selected>"), "the filter shows as chosen");
    assert!(routine.text.contains("data-rows=\"/app/referrals/rows?urgency=routine\""), "the refresh keeps it");
    let rows = b.get("/app/referrals/rows?urgency=urgent").await;
    assert_eq!(order(&rows.text), [made[1].0.clone()]);
    let newest = b.get("/app/referrals?sort=newest").await;
    assert_eq!(order(&newest.text), [made[2].0.clone(), made[1].0.clone(), made[0].0.clone()]);
}

/// No page mixes the languages: in English, the clinician's and the coordinator's pages show no
/// Chinese but the switch back ("中文") and data that has no English form (people's names, free
/// text the users typed).
#[tokio::test]
async fn english_pages_hold_no_chinese_interface_text() {
    let app = spawn_app().await;
    app.load_demo().await;
    let doc = app.login("village.doctor").await;
    let ids = app.institutions(&doc).await;
    let person = crate::referrals::patient(&app, &doc, 11).await;
    let enc = app
        .post(
            "/api/v1/encounters",
            &doc.token,
            serde_json::json!({"person_id": person, "chief_complaint": "头痛", "kind": "outpatient"}),
        )
        .await;
    let visit = enc.body["id"].as_str().unwrap().to_string();
    app.post(&format!("/api/v1/encounters/{visit}/diagnoses"), &doc.token, serde_json::json!({"code": "I10"})).await;
    let up = app
        .post(
            "/api/v1/referrals",
            &doc.token,
            serde_json::json!({"person_id": person, "direction": "up", "to_institution_id": ids["county-hospital"], "reason": "转诊"}),
        )
        .await;
    let referral = up.body["id"].as_str().unwrap().to_string();
    app.post(
        "/api/v1/followups/enrollments",
        &doc.token,
        serde_json::json!({"person_id": person, "disease": "hypertension", "diagnosed_on": "2025-03-01"}),
    )
    .await;
    // Data, not interface: the patient's name, the complaint, the reason, the users' names.
    let data = ["转诊患者", "头痛", "转诊", "张卫东", "王芳", "中文"];
    for (user, pages) in [
        (
            "village.doctor",
            vec![
                "/app/clinic".to_string(),
                format!("/app/visits/{visit}"),
                "/app/followups".into(),
                "/app/referrals?box=sent".into(),
            ],
        ),
        ("coordinator", vec!["/app/referrals".to_string(), format!("/app/referrals/{referral}")]),
    ] {
        let b = Browser::new(&app);
        b.login(user).await;
        b.get("/app/lang/en").await;
        for path in pages {
            let page = b.get(&path).await;
            assert_eq!(page.status, StatusCode::OK, "{path}: {}", page.text);
            assert!(page.text.contains("<html lang=\"en\">"));
            let mut text = visible_text(&page.text);
            for d in data {
                text = text.replace(d, "");
            }
            let chinese: Vec<&str> = text.split_whitespace().filter(|w| han(w)).collect();
            assert!(chinese.is_empty(), "Chinese on the English {path} for {user}: {chinese:?}");
        }
    }
}

/// The `idem` field of the first form on a page.
fn idem(html: &str) -> String {
    let at = html.find("name=\"idem\" value=\"").expect("the form carries its key") + "name=\"idem\" value=\"".len();
    html[at..].split('"').next().unwrap().to_string()
}

#[tokio::test]
async fn a_form_sent_twice_starts_one_visit_and_answers_the_same_redirect() {
    let app = spawn_app().await;
    app.load_demo().await;
    let b = Browser::new(&app);
    b.login("village.doctor").await;
    let clinic = b.get("/app/clinic").await;
    let token = csrf(&clinic.text);
    let rid = crate::patients::rid("130997", "19700101", 7);
    let made = b.post("/app/clinic/patients", &[("csrf", &token), ("name", "重复提交"), ("resident_id", &rid)]).await;
    let person_page = made.location.unwrap();
    let page = b.get(&person_page).await;
    let person = person_page.trim_start_matches("/app/clinic/patients/");
    let key = idem(&page.text);
    // A double click: the same form, with the same key, twice.
    let form = [("csrf", token.as_str()), ("idem", key.as_str()), ("person_id", person)];
    let first = b.post("/app/visits", &form).await;
    let second = b.post("/app/visits", &form).await;
    assert_eq!(first.status, StatusCode::SEE_OTHER, "{}", first.text);
    assert_eq!((second.status, &second.location), (StatusCode::SEE_OTHER, &first.location), "the same answer");
    let r = app.get(&format!("/api/v1/encounters?person_id={person}"), &app.login("village.doctor").await.token).await;
    assert_eq!(r.body.as_array().unwrap().len(), 1, "one visit, not two: {}", r.text);
    // A new render of the page carries a new key: the next visit is a new one.
    let page = b.get(&person_page).await;
    let again = [("csrf", token.as_str()), ("idem", &idem(&page.text)), ("person_id", person)];
    assert_ne!(again[1].1, key);
}

/// Posts the login form as village.doctor with `token`, from `client`, with extra `headers`.
async fn post_login(
    client: &reqwest::Client,
    app: &TestApp,
    token: &str,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut req = client.post(format!("{}/app/login", app.base));
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    req.form(&[("csrf", token), ("tenant", "demo-county"), ("username", "village.doctor"), ("password", "Demo@2026")])
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_planted_login_token_is_refused_and_the_servers_own_is_taken() {
    let app = spawn_app().await;
    app.load_demo().await;
    // An attacker plants a cookie of their own and posts the same value with their account.
    let planted = "0123456789abcdef0123456789abcdef";
    let client = reqwest::Client::builder().redirect(Policy::none()).build().unwrap();
    let r = post_login(&client, &app, planted, &[("cookie", &format!("cloudhis_csrf={planted}"))]).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(r.headers().get_all("set-cookie").iter().all(|c| !c.to_str().unwrap().starts_with("cloudhis_session=")));
    // A forged token of the server's shape, without its signature, fares no better.
    let forged = format!("{planted}.{}.{}", chrono::Utc::now().timestamp() + 600, "00".repeat(16));
    let r = post_login(&client, &app, &forged, &[("cookie", &format!("cloudhis_csrf={forged}"))]).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // A token our login page really issued (the attacker fetched it) and posted from another
    // site: the browser's Origin and Sec-Fetch-Site give it away.
    let attacker = Browser::new(&app);
    let issued = csrf(&attacker.get("/app/login").await.text);
    for header in
        [("origin", "https://evil.example"), ("sec-fetch-site", "cross-site"), ("sec-fetch-site", "same-site")]
    {
        let r = post_login(&attacker.client, &app, &issued, &[header]).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{header:?}");
    }
    // The token the login page issued works, posted from the page itself.
    let b = Browser::new(&app);
    assert_eq!(b.login("village.doctor").await.status, StatusCode::SEE_OTHER);
    let same_site = Browser::new(&app);
    let token = csrf(&same_site.get("/app/login").await.text);
    let own = [("origin", app.base.as_str()), ("sec-fetch-site", "same-origin")];
    assert_eq!(post_login(&same_site.client, &app, &token, &own).await.status(), StatusCode::SEE_OTHER);
}

/// The prescription, the receipt and the referral slip print with the institution's name and
/// what was recorded; another clinic's doctor gets the not-found page with nothing of the patient,
/// a visit with nothing paid has no receipt, and the English sheets hold no Chinese interface text.
#[tokio::test]
async fn the_prescription_receipt_and_referral_slip_print_and_stay_within_the_institution() {
    use serde_json::json;
    let app = spawn_app().await;
    app.load_demo().await;
    let doc = app.login("village.doctor").await;
    let v = crate::visit::full_visit(&app, &doc, 0).await;
    let b = Browser::new(&app);
    b.login("village.doctor").await;

    let rx = b.get(&format!("/app/visits/{}/print/prescription", v.encounter)).await;
    assert_eq!(rx.status, StatusCode::OK, "{}", rx.text);
    assert!(rx.text.contains("class=\"sheet-institution\">东关村卫生室<"), "{}", rx.text);
    assert!(rx.text.contains("class=\"sheet-patient\">陈建国<"));
    assert!(rx.text.contains("慢病长处方"), "a chronic prescription says so");
    assert!(rx.text.contains("I10 原发性高血压"));
    assert!(rx.text.contains("每次 5 mg，每日一次，共 28 天"), "{}", rx.text);
    assert!(rx.text.contains("张卫东"), "the prescriber signs");
    assert!(rx.text.contains("class=\"sheet sheet-a5\""));
    assert!(!rx.text.contains("action=\"/app/"), "a print view carries no forms");

    let receipt = b.get(&format!("/app/visits/{}/print/receipt", v.encounter)).await;
    assert_eq!(receipt.status, StatusCode::OK, "{}", receipt.text);
    let bill = app.get(&format!("/api/v1/bills/{}", v.bill), &doc.token).await.body;
    let receipt_no = bill["payments"][0]["receipt_no"].as_str().unwrap();
    assert!(receipt.text.contains(receipt_no), "{}", receipt.text);
    let total = bill["total_fen"].as_i64().unwrap();
    assert!(receipt.text.contains(&format!("¥{}.{:02}", total / 100, total % 100)), "{}", receipt.text);
    assert!(receipt.text.contains("移动支付"));

    // Nothing paid: no receipt to print.
    let e = app.post("/api/v1/encounters", &doc.token, json!({"person_id": v.person})).await;
    let open = e.body["id"].as_str().unwrap().to_string();
    assert_eq!(b.get(&format!("/app/visits/{open}/print/receipt")).await.status, StatusCode::NOT_FOUND);
    assert_eq!(b.get(&format!("/app/visits/{open}/print/prescription")).await.status, StatusCode::NOT_FOUND);

    // Another clinic: not found, and nothing of the patient on the page.
    let other = Browser::new(&app);
    other.login("village.doctor2").await;
    for path in [
        format!("/app/visits/{}/print/prescription", v.encounter),
        format!("/app/visits/{}/print/receipt", v.encounter),
    ] {
        let page = other.get(&path).await;
        assert_eq!(page.status, StatusCode::NOT_FOUND, "{path}");
        assert!(!page.text.contains("陈建国"), "{path}: {}", page.text);
    }

    let ids = app.institutions(&doc).await;
    let up = app
        .post(
            "/api/v1/referrals",
            &doc.token,
            json!({"person_id": v.person, "direction": "up", "to_institution_id": ids["county-hospital"],
                   "reason": "血压控制不佳", "urgent": true, "source_encounter_id": v.encounter}),
        )
        .await;
    assert_eq!(up.status, 201, "{}", up.text);
    let up = up.body["id"].as_str().unwrap().to_string();
    let coord = Browser::new(&app);
    coord.login("coordinator").await;
    let slip = coord.get(&format!("/app/referrals/{up}/print")).await;
    assert_eq!(slip.status, StatusCode::OK, "{}", slip.text);
    assert!(slip.text.contains("class=\"sheet-institution\">东关村卫生室<"), "the sending clinic heads the slip");
    assert!(slip.text.contains("双向转诊单（转出）") && slip.text.contains("class=\"urgent\""));
    assert!(slip.text.contains("I10 原发性高血压") && slip.text.contains("转诊回执"), "{}", slip.text);
    assert!(slip.text.contains("class=\"sheet sheet-a4\""));
    assert_eq!(other.get(&format!("/app/referrals/{up}/print")).await.status, StatusCode::NOT_FOUND);

    b.get("/app/lang/en").await;
    coord.get("/app/lang/en").await;
    let data = ["陈建国", "东关村卫生室", "张卫东", "氨氯地平片", "阿司匹林肠溶片", "血压控制不佳", "示范县人民医院"];
    for (browser, path) in [
        (&b, format!("/app/visits/{}/print/prescription", v.encounter)),
        (&b, format!("/app/visits/{}/print/receipt", v.encounter)),
        (&coord, format!("/app/referrals/{up}/print")),
    ] {
        let page = browser.get(&path).await;
        assert_eq!(page.status, StatusCode::OK, "{path}");
        let mut text = visible_text(&page.text);
        for d in data {
            text = text.replace(d, "");
        }
        let chinese: Vec<&str> = text.split_whitespace().filter(|w| han(w)).collect();
        assert!(chinese.is_empty(), "Chinese on the English {path}: {chinese:?}");
    }
}
