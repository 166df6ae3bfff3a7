//! The pages people read: sign-in, the issue list, an issue's detail, and the newest log
//! lines and check-ins. Server-rendered HTML (askama templates, compiled in, every value
//! escaped by them), one stylesheet, no script. They read through the [`Store`] facade, so
//! they are the same on SQLite and PostgreSQL.
//!
//! [`Store`]: crate::store::Store

mod event_view;
mod session;
mod views;

use std::sync::Arc;

use askama::Template;
use axum::extract::{ConnectInfo, Form, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;

use crate::api::{Params, Segment};
use crate::app::{now_ms, AppState};
use crate::serve::ClientAddr;
use crate::store::{GroupQuery, GroupSort, StoreError};

pub(crate) use session::Session;
use views::{IssuePage, ListPage, MessagePage, RecentPage, SignInPage};

/// The pages' routes.
pub(crate) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/issues") }))
        .route("/sign-in", get(sign_in_page).post(sign_in))
        .route("/sign-out", post(sign_out))
        .route("/issues", get(issue_list))
        .route("/issues/{fingerprint}", get(issue_detail))
        .route("/issues/{fingerprint}/status", post(change_status))
        .route(
            "/logs",
            get(|session, state, params| recent_list(Recent::Logs, session, state, params)),
        )
        .route(
            "/checkins",
            get(|session, state, params| recent_list(Recent::Checkins, session, state, params)),
        )
        .route("/assets/style.css", get(stylesheet))
}

/// A page, or an error shown as one.
type PageResult = Result<Response, PageError>;

/// Why a page could not be shown; it answers as a page itself, with its status.
pub(crate) struct PageError {
    status: StatusCode,
    text: &'static str,
}

impl PageError {
    fn new(status: StatusCode, text: &'static str) -> PageError {
        PageError { status, text }
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let mut response = message(self.status, self.text);
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
        }
        response
    }
}

fn render<T: Template>(page: &T) -> PageResult {
    page.render()
        .map(|html| with_page_headers(Html(html).into_response()))
        .map_err(|error| {
            tracing::error!(%error, "a page failed to render");
            PageError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "This page could not be shown.",
            )
        })
}

/// An error page with `status`.
fn message(status: StatusCode, text: &str) -> Response {
    let page = MessagePage {
        title: status.canonical_reason().unwrap_or("Error"),
        text,
    };
    let html = page.render().unwrap_or_else(|_| text.to_owned());
    with_page_headers((status, Html(html)).into_response())
}

/// What every page says about itself: no script, no frames, no caching of what a session saw.
/// The templates escape every value already; the policy is the second wall.
fn with_page_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "same-origin"),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        headers.insert(name, header::HeaderValue::from_static(value));
    }
    response
}

fn store_failed(error: StoreError) -> PageError {
    tracing::error!(%error, "a page's query failed");
    PageError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "The database did not answer. Try again in a moment.",
    )
}

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("../../assets/style.css"),
    )
        .into_response()
}

// ---- sign-in ----------------------------------------------------------------------------

#[derive(Deserialize)]
struct Next {
    next: Option<String>,
}

async fn sign_in_page(
    State(state): State<Arc<AppState>>,
    Params(Next { next }): Params<Next>,
) -> PageResult {
    render(&SignInPage {
        next: session::safe_next(next.as_deref()),
        error: "",
        enabled: state.config.admin_api_key.is_some(),
    })
}

#[derive(Deserialize)]
struct SignIn {
    key: String,
    next: Option<String>,
}

async fn sign_in(
    State(state): State<Arc<AppState>>,
    ConnectInfo(ClientAddr(client)): ConnectInfo<ClientAddr>,
    headers: HeaderMap,
    Form(form): Form<SignIn>,
) -> PageResult {
    let next = session::safe_next(form.next.as_deref());
    let Some(expected) = state.config.admin_api_key.as_deref() else {
        return Err(PageError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Signing in is off: set ADMIN_API_KEY on the server.",
        ));
    };
    // Guessing the key is throttled per address, whatever the guesses.
    if !state
        .sign_in_limiter
        .check(client.ip(), now_ms())
        .await
        .allowed
    {
        let page = SignInPage {
            next,
            error: "Too many attempts: wait a minute.",
            enabled: true,
        };
        let mut response = render(&page)?;
        *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
        return Ok(response);
    }
    if !crate::keys::same_secret(form.key.trim(), expected) {
        let page = SignInPage {
            next,
            error: "That is not the admin key.",
            enabled: true,
        };
        let mut response = render(&page)?;
        *response.status_mut() = StatusCode::UNAUTHORIZED;
        return Ok(response);
    }
    let Some(token) = session::issue(expected, now_ms()) else {
        return Err(PageError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "No random source for a session.",
        ));
    };
    let mut response = Redirect::to(next).into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        session::start_cookie(token, session::is_https(&headers)),
    );
    Ok(response)
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: String,
}

async fn sign_out(session: Session, headers: HeaderMap, Form(form): Form<CsrfForm>) -> PageResult {
    if !session.accepts(&form.csrf) {
        return Err(forbidden());
    }
    let mut response = Redirect::to("/sign-in").into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        session::end_cookie(session::is_https(&headers)),
    );
    Ok(response)
}

fn forbidden() -> PageError {
    PageError::new(
        StatusCode::FORBIDDEN,
        "This form is out of date (its security token does not match): go back, reload the page and try again.",
    )
}

// ---- issues ----------------------------------------------------------------------------

/// The list's query string. Empty fields (a form's blank inputs) mean "any".
#[derive(Deserialize, Default, Clone)]
pub(crate) struct ListParams {
    pub(crate) project: Option<String>,
    pub(crate) env: Option<String>,
    pub(crate) level: Option<String>,
    pub(crate) status: Option<String>,
    pub(crate) release: Option<String>,
    pub(crate) search: Option<String>,
    pub(crate) sort: Option<String>,
    pub(crate) page: Option<String>,
}

/// Issues per page of the list.
const PAGE_SIZE: i64 = 25;

async fn issue_list(
    session: Session,
    State(state): State<Arc<AppState>>,
    Params(params): Params<ListParams>,
) -> PageResult {
    let filled = |v: &Option<String>| {
        v.as_deref()
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    let status = match params.status.as_deref() {
        // The list opens on what needs attention; `status=all` shows everything.
        None => Some("unresolved".to_owned()),
        Some("all") => None,
        Some(_) => filled(&params.status),
    };
    if let Some(status) = &status {
        if !views::STATUSES.contains(&status.as_str()) {
            return Err(PageError::new(
                StatusCode::BAD_REQUEST,
                "status must be unresolved, resolved, ignored or all.",
            ));
        }
    }
    let project = project_param(params.project.as_deref())?;
    let sort = match params.sort.as_deref().unwrap_or("lastSeen") {
        "lastSeen" | "" => GroupSort::LastSeen,
        "firstSeen" => GroupSort::FirstSeen,
        "count" => GroupSort::Count,
        _ => {
            return Err(PageError::new(
                StatusCode::BAD_REQUEST,
                "sort must be lastSeen, firstSeen or count.",
            ))
        }
    };
    let page = match filled(&params.page) {
        None => 1,
        Some(p) => p
            .parse::<i64>()
            .ok()
            .filter(|p| (1..=1_000_000).contains(p))
            .ok_or_else(|| {
                PageError::new(
                    StatusCode::BAD_REQUEST,
                    "page must be a whole number from 1.",
                )
            })?,
    };
    let query = GroupQuery {
        project,
        env: filled(&params.env),
        level: filled(&params.level),
        status,
        release: filled(&params.release),
        search: filled(&params.search),
        sort,
        page,
        limit: PAGE_SIZE,
    };
    let (groups, total) = state.store.groups(&query).await.map_err(store_failed)?;
    let now = now_ms();
    let fingerprints: Vec<String> = groups.iter().map(|g| g.fingerprint.clone()).collect();
    let since_hour = now.div_euclid(crate::store::HOUR_MS) - 23;
    let activity = state
        .store
        .activity(&fingerprints, since_hour)
        .await
        .map_err(store_failed)?;
    let projects = state.store.projects().await.map_err(store_failed)?;
    render(&ListPage::new(
        session.csrf,
        &query,
        &params,
        projects,
        groups,
        total,
        &activity,
        now,
    ))
}

#[derive(Deserialize)]
struct DetailParams {
    event: Option<String>,
}

async fn issue_detail(
    session: Session,
    State(state): State<Arc<AppState>>,
    Segment(fingerprint): Segment<String>,
    Params(params): Params<DetailParams>,
) -> PageResult {
    let group = state
        .store
        .group(&fingerprint)
        .await
        .map_err(store_failed)?
        .ok_or_else(|| PageError::new(StatusCode::NOT_FOUND, "There is no such issue."))?;
    let stored = state
        .store
        .group_event_count(&fingerprint)
        .await
        .map_err(store_failed)?;
    let n = match params.event.as_deref() {
        None | Some("") => 1,
        Some(n) => n
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 1 && *n <= stored.max(1))
            .ok_or_else(|| {
                PageError::new(StatusCode::NOT_FOUND, "This issue has no such event.")
            })?,
    };
    let event = state
        .store
        .group_events(&fingerprint, n, 1)
        .await
        .map_err(store_failed)?
        .into_iter()
        .next();
    let seen = state
        .store
        .seen_values(&fingerprint)
        .await
        .map_err(store_failed)?;
    render(&IssuePage::new(
        session.csrf,
        group,
        event,
        n,
        stored,
        seen,
        now_ms(),
    ))
}

#[derive(Deserialize)]
struct StatusForm {
    csrf: String,
    status: String,
}

async fn change_status(
    session: Session,
    State(state): State<Arc<AppState>>,
    Segment(fingerprint): Segment<String>,
    Form(form): Form<StatusForm>,
) -> PageResult {
    if !session.accepts(&form.csrf) {
        return Err(forbidden());
    }
    if !views::STATUSES.contains(&form.status.as_str()) {
        return Err(PageError::new(
            StatusCode::BAD_REQUEST,
            "status must be unresolved, resolved or ignored.",
        ));
    }
    let found = state
        .store
        .set_status(&fingerprint, &form.status, now_ms())
        .await
        .map_err(store_failed)?;
    if !found {
        return Err(PageError::new(
            StatusCode::NOT_FOUND,
            "There is no such issue.",
        ));
    }
    Ok(Redirect::to(&views::issue_href(&fingerprint)).into_response())
}

// ---- logs and check-ins ---------------------------------------------------------------

#[derive(Deserialize)]
struct ProjectParam {
    project: Option<String>,
}

/// A `project` parameter: empty (a form's blank choice) is every project.
fn project_param(value: Option<&str>) -> Result<Option<i64>, PageError> {
    match value.map(str::trim) {
        None | Some("") => Ok(None),
        Some(p) => p.parse().map(Some).map_err(|_| {
            PageError::new(
                StatusCode::BAD_REQUEST,
                "project must be a project's number.",
            )
        }),
    }
}

/// Rows of the log and check-in pages.
const RECENT_ROWS: i64 = 200;

/// What a page of newest rows lists.
#[derive(Clone, Copy)]
enum Recent {
    Logs,
    Checkins,
}

async fn recent_list(
    kind: Recent,
    session: Session,
    State(state): State<Arc<AppState>>,
    Params(params): Params<ProjectParam>,
) -> PageResult {
    let project = project_param(params.project.as_deref())?;
    let rows = match kind {
        Recent::Logs => state.store.logs(project, RECENT_ROWS).await,
        Recent::Checkins => state.store.checkins(project, RECENT_ROWS).await,
    }
    .map_err(store_failed)?;
    let projects = state.store.projects().await.map_err(store_failed)?;
    render(&match kind {
        Recent::Logs => RecentPage::logs(session.csrf, project, projects, &rows),
        Recent::Checkins => RecentPage::checkins(session.csrf, project, projects, &rows),
    })
}
