//! The pages, in a real browser (headless Chromium over WebDriver) and over plain HTTP: sign
//! in, the list shows what an SDK just sent, filters narrow it, the detail points at the
//! line that failed, resolving and a regression show, values that carry markup stay text,
//! and nothing is shown without a session.
//!
//! `ERRORWATCH_SCREENSHOTS=<dir>` saves the list and the detail as PNG files there (the
//! README's pictures are made so: `ERRORWATCH_SCREENSHOTS=docs`).

mod support;

use std::time::{Duration, Instant};

use errorwatch_sdk::{Client, Level, Options};
use serde_json::{json, Value};
use support::browser::Browser;
use support::*;

/// The error the shop fails with. Each carries its own bank reference: the events are not
/// repeats of one another (the duplicate window would take them for one), yet share an issue
/// (grouping takes the numbers out).
#[derive(Debug)]
struct PaymentDeclined(u32);

impl PaymentDeclined {
    fn next() -> PaymentDeclined {
        static REFERENCE: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(10_000);
        PaymentDeclined(REFERENCE.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
    }
}

impl std::fmt::Display for PaymentDeclined {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "card declined by the bank (reference {})", self.0)
    }
}

impl std::error::Error for PaymentDeclined {}

/// Captures the payment error; returns the line of the capture.
#[inline(never)]
fn charge_card(client: &Client) -> u32 {
    client.capture_error(&PaymentDeclined::next());
    line!() - 1
}

#[inline(never)]
fn reserve_stock(client: &Client) {
    let error = std::io::Error::other("InventoryError: no stock left for sku 1234");
    client.capture_error(&error);
}

async fn flush(client: &Client) {
    let client = client.clone();
    let delivered = tokio::task::spawn_blocking(move || client.flush(Duration::from_secs(10)))
        .await
        .expect("flush");
    assert!(delivered, "the SDK delivered its events");
}

/// Waits until the query API shows `what` (a condition on the group list), or fails.
async fn wait_for_groups(
    s: &TestServer,
    what: &str,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let answer = s.admin_get("/api/v1/groups?limit=100").await;
        let groups = answer.body["groups"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if done(&groups) {
            return groups;
        }
        assert!(
            Instant::now() < deadline,
            "the store never showed {what}: {groups:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn titles(groups: &[Value]) -> Vec<&str> {
    groups.iter().filter_map(|g| g["title"].as_str()).collect()
}

/// Where to save screenshots (`ERRORWATCH_SCREENSHOTS`), on the SQLite run only.
fn screenshots() -> Option<std::ffi::OsString> {
    std::env::var_os("ERRORWATCH_SCREENSHOTS").filter(|_| backend() == Backend::Sqlite)
}

async fn sign_in(browser: &Browser) {
    browser.fill("#key", ADMIN).await;
    browser.click("form[action='/sign-in'] button").await;
    assert!(
        browser.path().await.starts_with("/issues"),
        "{}",
        browser.path().await
    );
}

async fn apply_filters(browser: &Browser) {
    browser.click("#filters button").await;
}

#[tokio::test]
async fn a_person_signs_in_finds_the_issue_fixes_it_and_sees_it_come_back() {
    let s = TestServer::start().await;
    let client = Client::new(
        Options::new(s.server.url(), s.key.clone())
            .environment("staging")
            .release("shop@1.4.2")
            .capture_panics(false),
    )
    .expect("client");
    let line = charge_card(&client);
    charge_card(&client);
    reserve_stock(&client);
    client.capture_message("cache warm-up took 9 s", Level::Warning);
    flush(&client).await;
    // One more, from another environment and release, over plain HTTP.
    let answer = s
        .event(&json!({
            "event_id": "from-production",
            "sdk": {"name": "tests", "version": "1"},
            "exception": {"type": "TimeoutError", "value": "the mailer did not answer"},
            "frames": [{"filename": "src/mail.rs", "lineno": 9, "function": "send", "in_app": true}],
            "env": "production",
            "release": "shop@1.3.0",
        }))
        .await;
    assert_eq!(answer.status, 202);
    let groups = wait_for_groups(&s, "4 issues", |g| g.len() == 4).await;
    let payment = groups
        .iter()
        .find(|g| {
            g["title"]
                .as_str()
                .is_some_and(|t| t.contains("card declined"))
        })
        .unwrap_or_else(|| panic!("no payment issue in {:?}", titles(&groups)));
    let fingerprint = payment["fingerprint"]
        .as_str()
        .expect("fingerprint")
        .to_owned();
    assert_eq!(payment["count"], 2);

    let browser = Browser::start().await;

    // Signed out, the list sends the browser to sign in, and back to the list after.
    browser.goto(&s.url("/issues?status=unresolved")).await;
    assert!(
        browser.path().await.starts_with("/sign-in"),
        "{}",
        browser.path().await
    );
    browser.fill("#key", "not-the-key").await;
    browser.click("form[action='/sign-in'] button").await;
    assert_eq!(browser.text(".error").await, "That is not the admin key.");
    sign_in(&browser).await;
    assert_eq!(browser.path().await, "/issues?status=unresolved");

    // The list shows what the SDK just sent.
    assert_eq!(browser.text("#summary").await, "Issues 1–4 of 4");
    let listed = browser.texts(".issue .title").await;
    assert!(
        listed
            .iter()
            .any(|t| t.contains("card declined by the bank")),
        "{listed:?}"
    );
    assert!(
        listed.iter().any(|t| t.contains("cache warm-up took 9 s")),
        "{listed:?}"
    );
    let charts = browser
        .eval("return document.querySelectorAll('svg.chart rect').length")
        .await;
    assert!(
        charts.as_u64().unwrap_or(0) >= 4,
        "each issue's chart has this hour's bar: {charts}"
    );
    if let Some(dir) = screenshots() {
        browser
            .screenshot(&std::path::Path::new(&dir).join("issue-list.png"), 560)
            .await;
    }

    // Filters and search narrow it.
    browser.select("select[name=level]", "warning").await;
    apply_filters(&browser).await;
    assert_eq!(
        browser.texts(".issue .title").await,
        ["WARNING: cache warm-up took 9 s"]
    );
    browser.select("select[name=level]", "").await;
    browser.fill("input[name=env]", "production").await;
    apply_filters(&browser).await;
    assert_eq!(
        browser.texts(".issue .title").await,
        ["TimeoutError: the mailer did not answer"]
    );
    browser.fill("input[name=env]", "").await;
    browser.fill("input[name=release]", "shop@1.4.2").await;
    apply_filters(&browser).await;
    assert_eq!(
        browser.texts(".issue .title").await.len(),
        3,
        "the SDK's three issues"
    );
    browser.fill("input[name=release]", "").await;
    browser.fill("input[name=search]", "inventory").await;
    apply_filters(&browser).await;
    let found = browser.texts(".issue .title").await;
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("no stock left"), "{found:?}");
    browser.fill("input[name=search]", "").await;
    browser.select("select[name=sort]", "count").await;
    apply_filters(&browser).await;
    let by_count = browser.texts(".issue .count").await;
    assert_eq!(
        by_count.first().map(String::as_str),
        Some("2"),
        "{by_count:?}"
    );

    // The detail points at the line that failed, in this file.
    browser
        .click(&format!("a[href='/issues/{fingerprint}']"))
        .await;
    let culprit = browser.text("#culprit").await;
    assert!(
        culprit.ends_with(&format!("tests/pages.rs:{line}")),
        "{culprit} (line {line})"
    );
    let top = browser.text(".frame.in-app .location").await;
    assert!(
        top.ends_with(&format!("tests/pages.rs:{line}"))
            || top.contains(&format!("tests/pages.rs:{line}:")),
        "{top}"
    );
    assert!(browser
        .text(".frame.in-app .function")
        .await
        .ends_with("charge_card"));
    assert_eq!(browser.text("#event-position").await, "Event 1 of 2");
    assert_eq!(browser.text("#count").await, "2");
    assert!(browser.text("#grouping").await.starts_with("by exception"));
    let facts = browser.text(".issue-head .facts").await;
    assert!(
        facts.contains("shop@1.4.2 (2)") && facts.contains("staging (2)"),
        "{facts}"
    );
    browser.click(".event-nav a").await;
    assert_eq!(browser.text("#event-position").await, "Event 2 of 2");
    if let Some(dir) = screenshots() {
        browser
            .goto(&s.url(&format!("/issues/{fingerprint}")))
            .await;
        browser
            .screenshot(&std::path::Path::new(&dir).join("issue-detail.png"), 1500)
            .await;
    }

    // Resolved, it leaves the unresolved list.
    browser.click("button[value=resolved]").await;
    assert_eq!(browser.text("#status").await, "resolved");
    browser.goto(&s.url("/issues")).await;
    assert_eq!(browser.text("#summary").await, "Issues 1–3 of 3");
    assert!(!browser
        .texts(".issue .title")
        .await
        .iter()
        .any(|t| t.contains("card declined")));

    // A new event reopens it, marked as a regression.
    charge_card(&client);
    flush(&client).await;
    wait_for_groups(&s, "the payment issue reopened", |groups| {
        groups
            .iter()
            .any(|g| g["fingerprint"] == fingerprint.as_str() && g["status"] == "unresolved")
    })
    .await;
    browser.goto(&s.url("/issues")).await;
    assert_eq!(browser.text("#summary").await, "Issues 1–4 of 4");
    let row = browser
        .text(&format!("tr.issue:has(a[href='/issues/{fingerprint}'])"))
        .await;
    assert!(row.contains("regression"), "{row}");
    browser
        .goto(&s.url(&format!("/issues/{fingerprint}")))
        .await;
    assert_eq!(browser.text("#regression").await, "regression");
    assert_eq!(browser.text("#count").await, "3");

    // Signed out, every page sends the browser to sign in.
    browser.click(".sign-out button").await;
    assert!(browser.path().await.starts_with("/sign-in"));
    for page in [
        "/".to_owned(),
        "/issues".to_owned(),
        format!("/issues/{fingerprint}"),
        "/logs".to_owned(),
        "/checkins".to_owned(),
    ] {
        browser.goto(&s.url(&page)).await;
        let path = browser.path().await;
        assert!(
            path.starts_with("/sign-in"),
            "{page} showed {path} signed out"
        );
        assert!(browser.texts(".issue").await.is_empty());
    }
    drop(browser);
    drop(client);
    s.server.shutdown().await;
}

#[tokio::test]
async fn markup_in_an_event_is_shown_as_text() {
    let s = TestServer::start().await;
    let attack = "<script>window.pwned = 1</script>\"'><img src=x onerror=\"window.pwned=2\">";
    let answer = s
        .event(&json!({
            "event_id": "hostile",
            "sdk": {"name": "tests", "version": "1"},
            "exception": {"type": "XssError", "value": attack},
            "message": attack,
            "frames": [{"filename": attack, "lineno": 1, "function": attack, "in_app": true,
                        "context_line": attack, "pre_context": [attack], "post_context": [attack]}],
            "tags": {"note": attack, attack: "key"},
            "breadcrumbs": [{"timestamp": 1700000000, "category": "<img src=x onerror=\"window.pwned=3\">",
                             "message": attack, "level": "error", "data": {"x": attack}}],
            "request": {"url": "javascript:window.pwned=4", "method": "GET",
                        "headers": {"Referer": "javascript:window.pwned=5"}},
            "user": {"id": attack, "username": attack},
            "extra": {"payload": attack},
            "contexts": {"os": {"name": attack}},
            "env": "production\"><b>env</b>",
            "release": "<i>1.0</i>",
        }))
        .await;
    assert_eq!(answer.status, 202, "{}", answer.body);
    let groups = wait_for_groups(&s, "the hostile issue", |g| g.len() == 1).await;
    let fingerprint = groups[0]["fingerprint"]
        .as_str()
        .expect("fingerprint")
        .to_owned();

    let browser = Browser::start().await;
    browser.goto(&s.url("/issues?status=all")).await;
    sign_in(&browser).await;
    for page in [
        "/issues?status=all".to_owned(),
        format!("/issues/{fingerprint}"),
    ] {
        browser.goto(&s.url(&page)).await;
        let _ = browser.text("main").await;
        // Nothing ran, nothing was added to the page: no script, no image, no bold, no link
        // to a javascript: URL, no handler attribute.
        let verdict = browser
            .eval(
                "return {
                    pwned: typeof window.pwned,
                    scripts: document.querySelectorAll('script').length,
                    images: document.querySelectorAll('img').length,
                    injected: document.querySelectorAll('main b, main i').length,
                    js_links: document.querySelectorAll('a[href^=\"javascript:\"]').length,
                    handlers: document.querySelectorAll('[onerror], [onmouseover]').length,
                }",
            )
            .await;
        assert_eq!(
            verdict,
            json!({"pwned": "undefined", "scripts": 0, "images": 0, "injected": 0, "js_links": 0, "handlers": 0}),
            "{page}"
        );
    }
    // And the text reads as it was sent.
    assert!(browser
        .text("#message")
        .await
        .contains("<script>window.pwned = 1</script>"));
    assert!(browser.text("#title").await.contains("<img src=x"));
    let page_text = browser.text("main").await;
    assert!(
        page_text.contains("javascript:window.pwned=4"),
        "the URL shows as text"
    );
    assert!(
        page_text.contains("production\"><b>env</b>"),
        "the environment shows as text"
    );
    drop(browser);
    s.server.shutdown().await;
}

// ---- over plain HTTP ----------------------------------------------------------------------

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

struct Reply {
    status: u16,
    location: String,
    cookie: String,
    body: String,
}

async fn request(builder: reqwest::RequestBuilder) -> Reply {
    let response = builder.send().await.expect("answer");
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let (location, cookie) = (header("location"), header("set-cookie"));
    Reply {
        status: response.status().as_u16(),
        location,
        cookie,
        body: response.text().await.expect("body"),
    }
}

async fn sign_in_over_http(http: &reqwest::Client, s: &TestServer, key: &str) -> Reply {
    request(
        http.post(s.url("/sign-in"))
            .form(&[("key", key), ("next", "/issues")]),
    )
    .await
}

/// The `name=value` of a `Set-Cookie`.
fn cookie_pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap_or_default().to_owned()
}

/// The CSRF token in a page's forms.
fn csrf_of(html: &str) -> String {
    let start = html
        .find("name=\"csrf\" value=\"")
        .expect("a form with a token")
        + 19;
    html[start..]
        .split('"')
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn the_session_cookie_is_http_only_same_site_strict_and_secure_behind_https() {
    let s = TestServer::start().await;
    let http = no_redirects();
    let reply = sign_in_over_http(&http, &s, ADMIN).await;
    assert_eq!((reply.status, reply.location.as_str()), (303, "/issues"));
    for part in [
        "errorwatch_session=v1.",
        "HttpOnly",
        "SameSite=Strict",
        "Path=/",
        "Max-Age=43200",
    ] {
        assert!(
            reply.cookie.contains(part),
            "{part} missing from {}",
            reply.cookie
        );
    }
    assert!(
        !reply.cookie.contains("Secure"),
        "plain HTTP: {}",
        reply.cookie
    );
    let behind_https = request(
        http.post(s.url("/sign-in"))
            .header("X-Forwarded-Proto", "https")
            .form(&[("key", ADMIN)]),
    )
    .await;
    assert!(
        behind_https.cookie.contains("Secure"),
        "{}",
        behind_https.cookie
    );

    // The cookie opens the pages; they are not cached and run no script.
    let response = http
        .get(s.url("/issues"))
        .header("cookie", cookie_pair(&reply.cookie))
        .send()
        .await
        .expect("page");
    assert_eq!(response.status(), 200);
    let header = |name: &str| {
        response.headers()[name]
            .to_str()
            .unwrap_or_default()
            .to_owned()
    };
    assert!(header("content-security-policy").starts_with("default-src 'none'"));
    assert_eq!(header("cache-control"), "no-store");
    assert_eq!(header("content-type"), "text/html; charset=utf-8");

    // Signing out needs the token too, and expires the cookie.
    let cookie = cookie_pair(&reply.cookie);
    let page = request(http.get(s.url("/issues")).header("cookie", &cookie)).await;
    let out = request(
        http.post(s.url("/sign-out"))
            .header("cookie", &cookie)
            .form(&[("csrf", csrf_of(&page.body))]),
    )
    .await;
    assert_eq!((out.status, out.location.as_str()), (303, "/sign-in"));
    assert!(out.cookie.contains("Max-Age=0"), "{}", out.cookie);
    s.server.shutdown().await;
}

#[tokio::test]
async fn an_action_needs_the_sessions_csrf_token() {
    let s = TestServer::start().await;
    let answer = s.event(&v2("a thing broke 1001")).await;
    assert_eq!(answer.status, 202);
    let groups = wait_for_groups(&s, "one issue", |g| g.len() == 1).await;
    let fingerprint = groups[0]["fingerprint"]
        .as_str()
        .expect("fingerprint")
        .to_owned();
    let action = s.url(&format!("/issues/{fingerprint}/status"));
    let http = no_redirects();
    let cookie = cookie_pair(&sign_in_over_http(&http, &s, ADMIN).await.cookie);
    let page = request(
        http.get(s.url(&format!("/issues/{fingerprint}")))
            .header("cookie", &cookie),
    )
    .await;
    let token = csrf_of(&page.body);

    // Without the session, or with another session's token, or none: refused, nothing changed.
    let signed_out = request(
        http.post(&action)
            .form(&[("csrf", token.as_str()), ("status", "resolved")]),
    )
    .await;
    assert_eq!(signed_out.status, 303);
    assert!(
        signed_out.location.starts_with("/sign-in"),
        "{}",
        signed_out.location
    );
    let other_session = cookie_pair(&sign_in_over_http(&http, &s, ADMIN).await.cookie);
    for (cookie, token) in [
        (&other_session, token.as_str()),
        (&cookie, ""),
        (&cookie, "0123"),
    ] {
        let refused = request(
            http.post(&action)
                .header("cookie", cookie)
                .form(&[("csrf", token), ("status", "resolved")]),
        )
        .await;
        assert_eq!(refused.status, 403, "{}", refused.body);
        assert!(refused.body.contains("security token"), "{}", refused.body);
    }
    let group = s.admin_get(&format!("/api/v1/groups/{fingerprint}")).await;
    assert_eq!(group.body["group"]["status"], "unresolved");

    // With it, done; an unknown status is a 400.
    let wrong = request(
        http.post(&action)
            .header("cookie", &cookie)
            .form(&[("csrf", token.as_str()), ("status", "deleted")]),
    )
    .await;
    assert_eq!(wrong.status, 400);
    let done = request(
        http.post(&action)
            .header("cookie", &cookie)
            .form(&[("csrf", token.as_str()), ("status", "ignored")]),
    )
    .await;
    assert_eq!(
        (done.status, done.location),
        (303, format!("/issues/{fingerprint}"))
    );
    let group = s.admin_get(&format!("/api/v1/groups/{fingerprint}")).await;
    assert_eq!(group.body["group"]["status"], "ignored");

    // An ignored issue stays ignored when its events go on: no regression.
    let answer = s.event(&v2("a thing broke 1002")).await;
    assert_eq!(answer.status, 202);
    wait_for_groups(&s, "the second event counted", |g| g[0]["count"] == 2).await;
    let group = s.admin_get(&format!("/api/v1/groups/{fingerprint}")).await;
    assert_eq!(group.body["group"]["status"], "ignored");
    assert_eq!(group.body["group"]["regressedAt"], Value::Null);
    s.server.shutdown().await;
}

#[tokio::test]
async fn a_session_signed_by_another_admin_key_opens_nothing() {
    let s = TestServer::start().await;
    let other =
        TestServer::with(|config| config.admin_api_key = Some("another-admin-key".into())).await;
    let http = no_redirects();
    let foreign = cookie_pair(
        &sign_in_over_http(&http, &other, "another-admin-key")
            .await
            .cookie,
    );
    let reply = request(http.get(s.url("/issues")).header("cookie", foreign)).await;
    assert_eq!(reply.status, 303);
    assert!(reply.location.starts_with("/sign-in"));
    for forged in [
        "errorwatch_session=v1.1.00.00",
        "errorwatch_session=",
        "errorwatch_session=v1",
    ] {
        let reply = request(http.get(s.url("/logs")).header("cookie", forged)).await;
        assert_eq!(reply.status, 303, "{forged}");
    }
    s.server.shutdown().await;
    other.server.shutdown().await;
}

#[tokio::test]
async fn guessing_the_key_is_throttled_and_next_stays_on_the_server() {
    let s = TestServer::start().await;
    let http = no_redirects();
    let outside = request(
        http.post(s.url("/sign-in"))
            .form(&[("key", ADMIN), ("next", "//evil.example/steal")]),
    )
    .await;
    assert_eq!(
        (outside.status, outside.location.as_str()),
        (303, "/issues")
    );
    let mut statuses = Vec::new();
    for _ in 0..10 {
        statuses.push(sign_in_over_http(&http, &s, "guess").await.status);
    }
    // The first request above counted too: 9 guesses answered 401, then 429 for everyone
    // from this address, the right key included, until the minute ends.
    assert_eq!(statuses[..9], [401; 9]);
    assert_eq!(statuses[9], 429);
    assert_eq!(sign_in_over_http(&http, &s, ADMIN).await.status, 429);
    s.server.shutdown().await;
}

#[tokio::test]
async fn without_an_admin_key_the_pages_stay_closed() {
    let s = TestServer::with(|config| config.admin_api_key = None).await;
    let http = no_redirects();
    let page = request(http.get(s.url("/issues"))).await;
    assert_eq!(page.status, 303);
    let sign_in = request(http.get(s.url(&page.location))).await;
    assert!(
        sign_in.body.contains("has no <code>ADMIN_API_KEY</code>"),
        "{}",
        sign_in.body
    );
    let attempt = sign_in_over_http(&http, &s, "").await;
    assert_eq!(attempt.status, 503);
    assert!(attempt.cookie.is_empty());
    s.server.shutdown().await;
}

#[tokio::test]
async fn bad_parameters_get_a_page_saying_which() {
    let s = TestServer::start().await;
    let http = no_redirects();
    let cookie = cookie_pair(&sign_in_over_http(&http, &s, ADMIN).await.cookie);
    for (path, status, says) in [
        ("/issues?sort=loudest", 400, "sort must be"),
        ("/issues?status=deleted", 400, "status must be"),
        ("/issues?page=0", 400, "page must be"),
        ("/issues?project=shop", 400, "project must be"),
        ("/issues/0000", 404, "no such issue"),
        ("/logs?project=x", 400, "project must be"),
    ] {
        let reply = request(http.get(s.url(path)).header("cookie", &cookie)).await;
        assert_eq!(reply.status, status, "{path}");
        assert!(reply.body.contains(says), "{path}: {}", reply.body);
        assert!(
            reply.body.starts_with("<!doctype html>"),
            "{path} is a page"
        );
    }
    // Empty filters (a form's blank inputs) mean any.
    let reply = request(
        http.get(s.url("/issues?project=&env=&level=&release=&search=&sort=&page="))
            .header("cookie", &cookie),
    )
    .await;
    assert_eq!(reply.status, 200);
    s.server.shutdown().await;
}

#[tokio::test]
async fn log_lines_and_check_ins_have_their_lists() {
    let s = TestServer::start().await;
    let log =
        json!({ "level": "warning", "channel": "billing", "message": "retrying <b>card</b>" });
    let answer = s
        .post_raw("/api/v1/logs", Some(&s.key), log.to_string())
        .await;
    assert_eq!(answer.status, 202, "{}", answer.body);
    let checkin = json!({ "slug": "nightly-export", "status": "ok", "duration": 1200 });
    let answer = s
        .post_raw("/api/v1/cron/checkin", Some(&s.key), checkin.to_string())
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let http = no_redirects();
    let cookie = cookie_pair(&sign_in_over_http(&http, &s, ADMIN).await.cookie);
    let logs = request(http.get(s.url("/logs")).header("cookie", &cookie)).await;
    assert_eq!(logs.status, 200);
    assert!(logs.body.contains("<td>billing</td>"), "{}", logs.body);
    assert!(
        logs.body.contains("retrying &#60;b&#62;card&#60;/b&#62;"),
        "escaped: {}",
        logs.body
    );
    let checkins = request(
        http.get(s.url(&format!("/checkins?project={}", s.project)))
            .header("cookie", &cookie),
    )
    .await;
    assert_eq!(checkins.status, 200);
    assert!(
        checkins
            .body
            .contains("<td>nightly-export</td><td>ok</td><td>1200</td>"),
        "{}",
        checkins.body
    );
    let other = request(
        http.get(s.url(&format!("/checkins?project={}", s.project + 1)))
            .header("cookie", &cookie),
    )
    .await;
    assert!(other.body.contains("Nothing yet."), "{}", other.body);
    s.server.shutdown().await;
}

#[tokio::test]
async fn the_list_pages_by_25_and_keeps_its_filters_across_pages() {
    let s = TestServer::start().await;
    for n in 0..30 {
        let event = with(
            v2(&format!("job {n} failed")),
            "fingerprint",
            json!(format!("job-{n}")),
        );
        let answer = s.event(&with(event, "env", json!("batch"))).await;
        assert_eq!(answer.status, 202, "{}", answer.body);
    }
    wait_for_groups(&s, "30 issues", |g| g.len() == 30).await;
    let http = no_redirects();
    let cookie = cookie_pair(&sign_in_over_http(&http, &s, ADMIN).await.cookie);
    let first = request(
        http.get(s.url("/issues?env=batch&sort=firstSeen"))
            .header("cookie", &cookie),
    )
    .await;
    assert!(first.body.contains("Issues 1–25 of 30"), "{}", first.body);
    assert_eq!(first.body.matches("<tr class=\"issue\">").count(), 25);
    assert!(!first.body.contains("rel=\"prev\""));
    let next = first
        .body
        .split("rel=\"next\" href=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a next page link")
        .replace("&#38;", "&");
    assert_eq!(next, "/issues?env=batch&sort=firstSeen&page=2");
    let second = request(http.get(s.url(&next)).header("cookie", &cookie)).await;
    assert!(
        second.body.contains("Issues 26–30 of 30"),
        "{}",
        second.body
    );
    assert_eq!(second.body.matches("<tr class=\"issue\">").count(), 5);
    assert!(second.body.contains("rel=\"prev\"") && !second.body.contains("rel=\"next\""));
    // Newest first: the first five jobs are on the last page.
    assert!(second.body.contains("job 0 failed") && !first.body.contains("job 0 failed"));
    s.server.shutdown().await;
}
