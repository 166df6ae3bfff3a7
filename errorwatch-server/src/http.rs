//! The routes, their status codes and their JSON bodies, as the contract gives them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::pii;

use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post, MethodRouter};
use axum::{Json, Router};
use http_body_util::BodyExt;
use serde::Deserialize;
use serde_json::{json, Value};
use subtle::ConstantTimeEq;

use crate::config::Config;
use crate::dedupe::Dedupe;
use crate::grouping;
use crate::keys::{self, KeyCache};
use crate::listener::ClientAddr;
use crate::metrics::Metrics;
use crate::rate_limit::RateLimiter;
use crate::store::{GroupQuery, GroupSort, NewEvent, Store};
use crate::writer::{SubmitError, Writer};
use errorwatch_protocol::json;
use errorwatch_protocol::validate::{self, Accepted, Detail};

/// Everything the handlers share.
pub struct AppState {
    pub(crate) config: Config,
    pub(crate) store: Store,
    pub(crate) keys: KeyCache,
    pub(crate) writer: Writer,
    pub(crate) limiter: RateLimiter,
    pub(crate) dedupe: Dedupe,
    pub(crate) metrics: Arc<Metrics>,
    /// Events stored per (project, UTC day), for daily quotas.
    pub(crate) quota_used: Mutex<HashMap<(i64, i64), i64>>,
    /// Requests being handled now.
    pub(crate) in_flight: AtomicUsize,
}

/// The router of every route.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/api/v1/event", ingest_route(Route::Event))
        .route("/api/v1/envelope", ingest_route(Route::Envelope))
        .route(
            "/api/v1/logs",
            ingest_route(Route::Log).merge(recent_route(Recent::Logs)),
        )
        .route("/api/v1/cron/checkin", ingest_route(Route::CheckIn))
        .route("/api/v1/cron/checkins", recent_route(Recent::CheckIns))
        .route("/api/v1/groups", get(list_groups))
        .route("/api/v1/groups/{fingerprint}", get(show_group))
        .route("/api/v1/groups/{fingerprint}/events", get(group_events))
        .route(
            "/api/v1/groups/{fingerprint}/status",
            patch(set_group_status),
        )
        .route("/api/v1/projects/{id}", patch(update_project))
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

fn error(status: StatusCode, message: &str, code: &str) -> Response {
    (status, Json(json!({ "error": message, "code": code }))).into_response()
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Times every request and bounds how many run at once (beyond, 503 with `Retry-After`).
async fn observe(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let in_flight = state.in_flight.fetch_add(1, Ordering::Relaxed);
    let response = if in_flight >= state.config.max_concurrent_requests {
        state.metrics.rejected("overloaded");
        let mut response = error(
            StatusCode::SERVICE_UNAVAILABLE,
            "Service temporarily unavailable",
            "SERVICE_UNAVAILABLE",
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        response
    } else {
        next.run(request).await
    };
    state.in_flight.fetch_sub(1, Ordering::Relaxed);
    state.metrics.request(started.elapsed());
    response
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Route {
    Event,
    Envelope,
    Log,
    CheckIn,
}

/// The handler of an SDK route: every one reads, authenticates and validates the same way.
fn ingest_route(route: Route) -> MethodRouter<Arc<AppState>> {
    post(
        move |State(state): State<Arc<AppState>>,
              ConnectInfo(ClientAddr(client)): ConnectInfo<ClientAddr>,
              headers: HeaderMap,
              body: Body| async move { ingest(&state, client, &headers, body, route).await },
    )
}

/// Reads at most `limit` bytes, whatever `Content-Length` says (chunked bodies included).
async fn read_limited(body: Body, limit: usize) -> Result<Vec<u8>, ReadError> {
    let mut body = body;
    let mut bytes = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| ReadError::Broken)?;
        if let Ok(data) = frame.into_data() {
            if bytes.len() + data.len() > limit {
                return Err(ReadError::TooLarge);
            }
            bytes.extend_from_slice(&data);
        }
    }
    Ok(bytes)
}

enum ReadError {
    TooLarge,
    Broken,
}

fn too_large() -> Response {
    error(
        StatusCode::PAYLOAD_TOO_LARGE,
        "Payload too large",
        "PAYLOAD_TOO_LARGE",
    )
}

async fn ingest(
    state: &AppState,
    client: SocketAddr,
    headers: &HeaderMap,
    body: Body,
    route: Route,
) -> Response {
    let metrics = &state.metrics;
    // 1. Size, measured on what is read: a lying or missing Content-Length changes nothing.
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > state.config.max_body_bytes) {
        metrics.rejected("payload_too_large");
        return too_large();
    }
    let bytes = match read_limited(body, state.config.max_body_bytes).await {
        Ok(bytes) => bytes,
        Err(ReadError::TooLarge) => {
            metrics.rejected("payload_too_large");
            return too_large();
        }
        Err(ReadError::Broken) => {
            metrics.rejected("validation_error");
            return validation_error(vec![Detail {
                path: String::new(),
                message: "The request body could not be read to its end".into(),
            }]);
        }
    };

    // 2. Rate limit, per client address.
    let verdict = state.limiter.check(client.ip(), state.config.clock.now());
    let rate_headers = |response: &mut Response| {
        if verdict.limit > 0 {
            let headers = response.headers_mut();
            headers.insert("X-RateLimit-Limit", HeaderValue::from(verdict.limit));
            headers.insert(
                "X-RateLimit-Remaining",
                HeaderValue::from(verdict.remaining),
            );
            headers.insert("X-RateLimit-Reset", HeaderValue::from(verdict.reset_secs));
        }
    };
    if !verdict.allowed {
        metrics.rejected("rate_limit_exceeded");
        let mut response = (
            StatusCode::TOO_MANY_REQUESTS,
            Json(json!({
                "error": "Too many requests, please try again later",
                "code": "RATE_LIMIT_EXCEEDED",
                "retryAfter": verdict.reset_secs,
            })),
        )
            .into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(verdict.reset_secs));
        rate_headers(&mut response);
        return response;
    }

    let mut response = accept(state, headers, &bytes, route).await;
    rate_headers(&mut response);
    response
}

/// Steps 3 to 10 of the contract, once the body is read and the client within its limit.
async fn accept(state: &AppState, headers: &HeaderMap, bytes: &[u8], route: Route) -> Response {
    let metrics = &state.metrics;
    // 3. Authentication.
    let Some(key) = headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .filter(|k| !k.is_empty())
    else {
        metrics.rejected("missing_api_key");
        return error(
            StatusCode::UNAUTHORIZED,
            "API key required",
            "MISSING_API_KEY",
        );
    };
    if !keys::has_valid_format(key) {
        metrics.rejected("invalid_api_key_format");
        return error(
            StatusCode::UNAUTHORIZED,
            "Invalid API key format",
            "INVALID_API_KEY_FORMAT",
        );
    }
    let Some(project) = state.keys.authenticate(&state.store, key).await else {
        metrics.rejected("invalid_api_key");
        return error(
            StatusCode::UNAUTHORIZED,
            "Invalid API key",
            "INVALID_API_KEY",
        );
    };

    // 4. Validation.
    let body: Value = match json::parse(bytes) {
        Ok(body) => body,
        Err(e) => {
            metrics.rejected("validation_error");
            return validation_error_of(
                route,
                vec![Detail {
                    path: String::new(),
                    // The message says what broke and where ("... at line 1 column 25").
                    message: e.to_string(),
                }],
            );
        }
    };
    let now = now_ms();
    let checked = match route {
        Route::Event => validate::event(&body, now),
        Route::Envelope => validate::envelope(&body, now),
        Route::Log => return store_log(state, project.project_id, &body, now).await,
        Route::CheckIn => return store_checkin(state, project.project_id, &body, now).await,
    };
    let accepted = match checked {
        Ok(accepted) => accepted,
        Err(details) => {
            metrics.rejected("validation_error");
            return validation_error(details);
        }
    };

    // 5. The project's switch.
    if !project.ingestion_enabled {
        metrics.rejected("ingestion_disabled");
        return error(
            StatusCode::FORBIDDEN,
            "Event ingestion disabled",
            "INGESTION_DISABLED",
        );
    }
    // 6. Server-side sampling.
    if project.sample_rate < 1.0 && random_unit() >= project.sample_rate {
        metrics.rejected("sampled");
        return (
            StatusCode::ACCEPTED,
            Json(json!({ "success": true, "sampled": false })),
        )
            .into_response();
    }
    // 7. The daily quota.
    let day = now.div_euclid(86_400_000);
    if let Some(quota) = project.daily_quota {
        let used = state
            .quota_used
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(project.project_id, day))
            .copied()
            .unwrap_or(0);
        if used >= quota {
            metrics.rejected("quota_exceeded");
            return (
                StatusCode::TOO_MANY_REQUESTS,
                Json(json!({ "error": "Quota exceeded", "code": "QUOTA_EXCEEDED", "quota": quota, "used": used })),
            )
                .into_response();
        }
    }
    // 8. The queue.
    if !state.writer.is_open() {
        metrics.rejected("service_unavailable");
        return unavailable();
    }
    // 9. Duplicates within 10 s.
    if state.dedupe.is_repeat(
        grouping::dedupe_key(project.project_id, &accepted),
        state.config.clock.now(),
    ) {
        metrics.rejected("deduplicated");
        return (
            StatusCode::ACCEPTED,
            Json(json!({ "success": true, "deduplicated": true })),
        )
            .into_response();
    }
    // 10. Stored, then acknowledged.
    let event_id = accepted.event_id.clone();
    let new_event = to_new_event(project.project_id, accepted, &body, now);
    let stored = match state.writer.submit(new_event) {
        Ok(stored) => stored,
        Err(SubmitError::Full) => {
            metrics.rejected("overloaded");
            let mut response = unavailable();
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return response;
        }
        Err(SubmitError::Closed) => {
            metrics.rejected("service_unavailable");
            return unavailable();
        }
    };
    metrics.accepted();
    if stored.await != Ok(true) {
        return unavailable();
    }
    if project.daily_quota.is_some() {
        *state
            .quota_used
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((project.project_id, day))
            .or_default() += 1;
    }
    let body = match route {
        Route::Envelope => json!({ "success": true, "queued": true, "event_id": event_id }),
        _ => json!({ "success": true, "queued": true }),
    };
    (StatusCode::ACCEPTED, Json(body)).into_response()
}

fn to_new_event(project_id: i64, accepted: Accepted, body: &Value, now: i64) -> NewEvent {
    let (fingerprint, rule) = grouping::fingerprint(project_id, &accepted);
    let message = pii::scrub(&accepted.message);
    let non_empty = |text: Option<String>| text.filter(|t| !t.is_empty());
    NewEvent {
        project_id,
        title: grouping::title(&accepted, &message),
        fingerprint,
        grouping_rule: match rule {
            grouping::Rule::SdkFingerprint => "sdk",
            grouping::Rule::Exception => "exception",
            grouping::Rule::Location => "location",
        },
        event_id: accepted.event_id,
        received_at: now,
        created_at: accepted.created_at_ms,
        level: accepted.level.as_str().to_owned(),
        env: accepted.env,
        release: accepted.release,
        message: Some(message),
        error_type: non_empty(accepted.exception_type),
        error_value: non_empty(accepted.exception_value),
        stack: pii::scrub(&accepted.stack),
        file: accepted.file,
        line: accepted.line,
        user_id: accepted.user_id,
        url: accepted.url,
        status_code: accepted.status_code,
        payload: body.to_string(),
    }
}

/// `POST /api/v1/logs`: stored (committed) before the 202.
async fn store_log(state: &AppState, project_id: i64, body: &Value, now: i64) -> Response {
    let entry = match validate::log(body, now) {
        Ok(entry) => entry,
        Err(details) => {
            state.metrics.rejected("validation_error");
            return validation_error(details);
        }
    };
    match state.store.write_log(project_id, &entry, now).await {
        Ok(_) => (
            StatusCode::ACCEPTED,
            Json(json!({ "success": true, "sampled": false })),
        )
            .into_response(),
        Err(e) => store_failed(e),
    }
}

/// `POST /api/v1/cron/checkin`: stored before the 200, answered with the check-in.
async fn store_checkin(state: &AppState, project_id: i64, body: &Value, now: i64) -> Response {
    let check_in = match validate::checkin(body) {
        Ok(check_in) => check_in,
        Err(details) => {
            state.metrics.rejected("validation_error");
            return validation_error_of(Route::CheckIn, details);
        }
    };
    match state.store.check_in(project_id, &check_in, now).await {
        Ok(checkin) => {
            let mut answer = json!({ "checkin": checkin });
            if check_in.status == validate::CheckInStatus::InProgress {
                answer["checkinId"] = answer["checkin"]["checkinId"].clone();
            }
            Json(answer).into_response()
        }
        Err(e) => store_failed(e),
    }
}

fn random_unit() -> f64 {
    let mut bytes = [0u8; 8];
    let _ = getrandom::fill(&mut bytes);
    (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}

/// A 400 for `route`: check-ins answer without a `code`, as production does.
fn validation_error_of(route: Route, details: Vec<Detail>) -> Response {
    if route == Route::CheckIn {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({ "error": "Invalid input", "details": details })),
        )
            .into_response();
    }
    validation_error(details)
}

fn validation_error(details: Vec<Detail>) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({ "error": "Invalid input", "code": "VALIDATION_ERROR", "details": details })),
    )
        .into_response()
}

fn unavailable() -> Response {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "Service temporarily unavailable",
        "SERVICE_UNAVAILABLE",
    )
}

/// Admin and query routes take `Authorization: Bearer <ADMIN_API_KEY>`: the answer that turns
/// a request away, if any.
fn admin_rejection(state: &AppState, headers: &HeaderMap) -> Option<Response> {
    let Some(expected) = &state.config.admin_api_key else {
        return Some(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "Admin API is not configured (set ADMIN_API_KEY)",
            "ADMIN_API_DISABLED",
        ));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
        None
    } else {
        Some(error(
            StatusCode::UNAUTHORIZED,
            "Invalid admin API key",
            "UNAUTHORIZED",
        ))
    }
}

#[derive(Deserialize, Default)]
struct GroupParams {
    project: Option<String>,
    env: Option<String>,
    level: Option<String>,
    status: Option<String>,
    search: Option<String>,
    sort: Option<String>,
    page: Option<String>,
    limit: Option<String>,
}

fn page_and_limit(
    page: Option<&str>,
    limit: Option<&str>,
    details: &mut Vec<Detail>,
) -> (i64, i64) {
    let mut number = |name: &str, value: Option<&str>, default: i64, max: i64| match value {
        None => default,
        Some(text) => match text.parse::<i64>() {
            Ok(n) if (1..=max).contains(&n) => n,
            _ => {
                details.push(Detail {
                    path: name.into(),
                    message: format!("Must be a whole number from 1 to {max}"),
                });
                default
            }
        },
    };
    (
        number("page", page, 1, i64::MAX / 1000),
        number("limit", limit, 20, 100),
    )
}

async fn list_groups(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(params): Query<GroupParams>,
) -> Response {
    if let Some(response) = admin_rejection(&state, &headers) {
        return response;
    }
    let mut details = Vec::new();
    let (page, limit) = page_and_limit(
        params.page.as_deref(),
        params.limit.as_deref(),
        &mut details,
    );
    let project = params
        .project
        .as_deref()
        .and_then(|p| match p.parse::<i64>() {
            Ok(id) => Some(id),
            Err(_) => {
                details.push(Detail {
                    path: "project".into(),
                    message: "Must be a project id".into(),
                });
                None
            }
        });
    let sort = match params.sort.as_deref() {
        None | Some("lastSeen") => GroupSort::LastSeen,
        Some("firstSeen") => GroupSort::FirstSeen,
        Some("count") => GroupSort::Count,
        Some(other) => {
            details.push(Detail {
                path: "sort".into(),
                message: format!("Expected 'lastSeen' | 'firstSeen' | 'count', received '{other}'"),
            });
            GroupSort::LastSeen
        }
    };
    if let Some(status) = params
        .status
        .as_deref()
        .filter(|s| !matches!(*s, "resolved" | "unresolved"))
    {
        details.push(Detail {
            path: "status".into(),
            message: format!("Expected 'resolved' | 'unresolved', received '{status}'"),
        });
    }
    if !details.is_empty() {
        return validation_error(details);
    }
    let query = GroupQuery {
        project,
        env: params.env,
        level: params.level,
        status: params.status,
        search: params.search,
        sort,
        page,
        limit,
    };
    match state.store.groups(&query).await {
        Ok((groups, total)) => {
            Json(json!({ "groups": groups, "page": page, "limit": limit, "total": total }))
                .into_response()
        }
        Err(e) => store_failed(e),
    }
}

fn store_failed(e: crate::store::StoreError) -> Response {
    tracing::error!(error = %e, "a query failed");
    unavailable()
}

fn group_not_found() -> Response {
    error(StatusCode::NOT_FOUND, "Group not found", "NOT_FOUND")
}

async fn show_group(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(fingerprint): Path<String>,
) -> Response {
    if let Some(response) = admin_rejection(&state, &headers) {
        return response;
    }
    match state.store.group(&fingerprint).await {
        Ok(Some(group)) => Json(json!({ "group": group })).into_response(),
        Ok(None) => group_not_found(),
        Err(e) => store_failed(e),
    }
}

async fn group_events(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(fingerprint): Path<String>,
    Query(params): Query<GroupParams>,
) -> Response {
    if let Some(response) = admin_rejection(&state, &headers) {
        return response;
    }
    let mut details = Vec::new();
    let (page, limit) = page_and_limit(
        params.page.as_deref(),
        params.limit.as_deref(),
        &mut details,
    );
    if !details.is_empty() {
        return validation_error(details);
    }
    match state.store.group(&fingerprint).await {
        Ok(Some(_)) => {}
        Ok(None) => return group_not_found(),
        Err(e) => return store_failed(e),
    }
    match state.store.group_events(&fingerprint, page, limit).await {
        Ok(events) => {
            Json(json!({ "events": events, "page": page, "limit": limit })).into_response()
        }
        Err(e) => store_failed(e),
    }
}

async fn set_group_status(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(fingerprint): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    if let Some(response) = admin_rejection(&state, &headers) {
        return response;
    }
    let status = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("status").and_then(Value::as_str).map(str::to_owned));
    let Some(status) = status.filter(|s| s == "resolved" || s == "unresolved") else {
        return validation_error(vec![Detail {
            path: "status".into(),
            message: "Expected {\"status\": \"resolved\" | \"unresolved\"}".into(),
        }]);
    };
    match state
        .store
        .set_status(&fingerprint, &status, now_ms())
        .await
    {
        Ok(true) => Json(json!({ "success": true, "status": status })).into_response(),
        Ok(false) => group_not_found(),
        Err(e) => store_failed(e),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ProjectSettings {
    ingestion_enabled: Option<bool>,
    sample_rate: Option<f64>,
    daily_quota: Option<Option<i64>>,
}

async fn update_project(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    body: axum::body::Bytes,
) -> Response {
    if let Some(response) = admin_rejection(&state, &headers) {
        return response;
    }
    let settings: ProjectSettings = match serde_json::from_slice(&body) {
        Ok(settings) => settings,
        Err(e) => {
            return validation_error(vec![Detail {
                path: String::new(),
                message: e.to_string(),
            }]);
        }
    };
    let Ok(keys) = state.store.all_keys().await else {
        return unavailable();
    };
    let Some(current) = keys.iter().find(|k| k.project_id == id) else {
        return error(StatusCode::NOT_FOUND, "Project not found", "NOT_FOUND");
    };
    let sample_rate = settings.sample_rate.unwrap_or(current.sample_rate);
    if !(0.0..=1.0).contains(&sample_rate) {
        return validation_error(vec![Detail {
            path: "sampleRate".into(),
            message: "Must be between 0 and 1".into(),
        }]);
    }
    let enabled = settings
        .ingestion_enabled
        .unwrap_or(current.ingestion_enabled);
    let quota = settings.daily_quota.unwrap_or(current.daily_quota);
    if let Err(e) = state
        .store
        .update_project(id, enabled, sample_rate, quota)
        .await
    {
        return store_failed(e);
    }
    let _ = state.keys.refresh(&state.store).await;
    Json(json!({ "success": true, "ingestionEnabled": enabled, "sampleRate": sample_rate, "dailyQuota": quota }))
        .into_response()
}

#[derive(Deserialize, Default)]
struct RecentParams {
    project: Option<i64>,
    limit: Option<i64>,
}

/// What a listing route lists.
#[derive(Clone, Copy)]
enum Recent {
    /// `GET /api/v1/logs`: the newest log lines.
    Logs,
    /// `GET /api/v1/cron/checkins`: the newest check-ins.
    CheckIns,
}

/// The handler of a listing route: the newest rows, `limit` (default 100) at most 500.
fn recent_route(recent: Recent) -> MethodRouter<Arc<AppState>> {
    get(
        move |State(state): State<Arc<AppState>>,
              headers: HeaderMap,
              Query(params): Query<RecentParams>| async move {
            if let Some(response) = admin_rejection(&state, &headers) {
                return response;
            }
            let limit = params.limit.unwrap_or(100).clamp(1, 500);
            let (key, listed) = match recent {
                Recent::Logs => ("logs", state.store.logs(params.project, limit).await),
                Recent::CheckIns => (
                    "checkins",
                    state.store.checkins(params.project, limit).await,
                ),
            };
            match listed {
                Ok(rows) => Json(json!({ key: rows })).into_response(),
                Err(e) => store_failed(e),
            }
        },
    )
}

async fn live() -> Response {
    Json(json!({ "status": "ok", "timestamp": crate::store::rfc3339(now_ms()) })).into_response()
}

async fn ready(State(state): State<Arc<AppState>>) -> Response {
    let started = Instant::now();
    let store_ok = tokio::time::timeout(Duration::from_secs(2), state.store.ping())
        .await
        .unwrap_or(false);
    let writer_ok = state.writer.is_open();
    let checks = json!({
        "store": { "status": if store_ok { "ok" } else { "error" }, "latencyMs": started.elapsed().as_millis() as u64 },
        "queue": { "status": if writer_ok { "ok" } else { "error" } },
    });
    let healthy = store_ok && writer_ok;
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": if healthy { "healthy" } else { "unhealthy" },
        "timestamp": crate::store::rfc3339(now_ms()),
        "checks": checks,
    });
    (status, Json(body)).into_response()
}

async fn metrics(
    State(state): State<Arc<AppState>>,
    ConnectInfo(ClientAddr(client)): ConnectInfo<ClientAddr>,
    headers: HeaderMap,
) -> Response {
    let allowed = match &state.config.metrics_token {
        Some(token) => headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|given| bool::from(given.as_bytes().ct_eq(token.as_bytes()))),
        None => client.ip().is_loopback(),
    };
    if !allowed {
        return error(
            StatusCode::UNAUTHORIZED,
            "Metrics require a valid token",
            "UNAUTHORIZED",
        );
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "Not found", "NOT_FOUND")
}
