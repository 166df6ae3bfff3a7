//! The ingestion path: the four SDK routes, each request taken in this order, and turned away
//! at the first step it fails with one [`Rejection`]:
//!
//! 1. **head**: the declared size and the client's rate, before anything is read;
//! 2. **authenticate**: the API key, before the body is read, so a client without a key costs
//!    no memory;
//! 3. **read**: the body, within its size limit, its timeout and the shared byte budget
//!    ([`body`]);
//! 4. **validate**: the body against the contract (`errorwatch_protocol::validate`);
//! 5. **admit**: the project's switch, its sample rate, its daily quota ([`quota`]), the
//!    store's health and the duplicate window;
//! 6. **write**: the writer commits the event, and only then is it acknowledged with a 202.

pub(crate) mod body;
pub(crate) mod quota;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{post, MethodRouter};
use axum::{Json, Router};
use serde_json::{json, Value};

use errorwatch_protocol::json;
use errorwatch_protocol::validate::{self, Accepted};

use crate::app::{now_ms, AppState};
use crate::grouping;
use crate::keys;
use crate::pii;
use crate::rate_limit::Verdict;
use crate::rejection::Rejection;
use crate::serve::ClientAddr;
use crate::store::{NewEvent, Outcome, ProjectAuth};
use crate::writer::SubmitError;
use body::{ReadBody, ReadLimits};

/// The SDK routes.
pub(crate) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/event", route(Route::Event))
        .route("/api/v1/envelope", route(Route::Envelope))
        .route("/api/v1/logs", route(Route::Log))
        .route("/api/v1/cron/checkin", route(Route::CheckIn))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Route {
    Event,
    Envelope,
    Log,
    CheckIn,
}

fn route(route: Route) -> MethodRouter<Arc<AppState>> {
    post(
        move |State(state): State<Arc<AppState>>,
              ConnectInfo(ClientAddr(client)): ConnectInfo<ClientAddr>,
              request: Request| async move { ingest(&state, client, request, route).await },
    )
}

async fn ingest(state: &AppState, client: SocketAddr, request: Request, route: Route) -> Response {
    let verdict = state
        .limiter
        .check(client.ip(), state.config.clock.now_ms())
        .await;
    let mut response = match take(state, &verdict, request, route).await {
        Ok(response) => response,
        Err(rejection) => {
            state.metrics.rejected(rejection.metric_reason());
            rejection.into_response()
        }
    };
    if verdict.limit > 0 {
        let headers = response.headers_mut();
        headers.insert("X-RateLimit-Limit", HeaderValue::from(verdict.limit));
        headers.insert(
            "X-RateLimit-Remaining",
            HeaderValue::from(verdict.remaining),
        );
        headers.insert("X-RateLimit-Reset", HeaderValue::from(verdict.reset_secs));
    }
    response
}

/// Every step, in order; the first that fails says why.
async fn take(
    state: &AppState,
    verdict: &Verdict,
    request: Request,
    route: Route,
) -> Result<Response, Rejection> {
    let (head, body) = request.into_parts();
    // 1. The head.
    let declared = head
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let limits = ReadLimits {
        max_bytes: state.config.max_body_bytes,
        timeout: state.config.body_read_timeout,
    };
    if declared.is_some_and(|len| len > limits.max_bytes) {
        return Err(Rejection::PayloadTooLarge);
    }
    if !verdict.allowed {
        return Err(Rejection::RateLimited {
            retry_after: verdict.reset_secs,
        });
    }
    // 2. Authenticate.
    let project = authenticate(state, &head.headers).await?;
    // 3. Read.
    let ReadBody { bytes, share } = body::read(body, declared, limits, &state.budget).await?;
    // 4. Validate.
    let body = json::parse(&bytes).map_err(|e| {
        // The message says what broke and where ("... at line 1 column 25").
        invalid(
            route,
            vec![validate::Detail {
                path: String::new(),
                message: e.to_string(),
            }],
        )
    })?;
    let body_len = bytes.len();
    drop(bytes);
    let now = now_ms();
    let accepted = match route {
        Route::Event => validate::event(&body, now),
        Route::Envelope => validate::envelope(&body, now),
        Route::Log => return store_log(state, project.project_id, &body, now).await,
        Route::CheckIn => return store_checkin(state, project.project_id, &body, now).await,
    }
    .map_err(|details| invalid(route, details))?;
    // 5. Admit.
    if !project.ingestion_enabled {
        return Err(Rejection::IngestionDisabled);
    }
    if project.sample_rate < 1.0 && random_unit() >= project.sample_rate {
        state.metrics.rejected("sampled");
        return Ok(accepted_answer(AcceptedBody::Known(SAMPLED_OUT)));
    }
    if let Some(used) = state
        .used_up
        .used(project.project_id, now, project.daily_quota)
    {
        return Err(Rejection::QuotaExceeded {
            quota: project.daily_quota.unwrap_or_default(),
            used,
        });
    }
    writable(state)?;
    // 6. Write: the store decides, in the batch's transaction, whether it is a repeat within
    // the duplicate window or over the day's quota; then acknowledge.
    let event_id = accepted.event_id.clone();
    let mut event = to_new_event(
        &project,
        accepted,
        compact_json(&body, body_len),
        now,
        state.config.clock.now_ms(),
    );
    for text in [
        &mut event.title,
        &mut event.level,
        &mut event.env,
        &mut event.stack,
        &mut event.file,
        &mut event.dedupe_key,
    ] {
        without_nul(text);
    }
    for text in [
        &mut event.event_id,
        &mut event.release,
        &mut event.message,
        &mut event.error_type,
        &mut event.error_value,
        &mut event.user_id,
        &mut event.url,
    ]
    .into_iter()
    .flatten()
    {
        without_nul(text);
    }
    drop(body);
    let done = state.writer.submit(event, share).map_err(|e| match e {
        SubmitError::Full => Rejection::Overloaded,
        SubmitError::Closed => Rejection::StoreUnavailable,
    })?;
    state.metrics.accepted();
    match done.await {
        Ok(Outcome::Stored) => {}
        Ok(Outcome::Duplicate) => {
            state.metrics.rejected("deduplicated");
            return Ok(accepted_answer(AcceptedBody::Known(DEDUPLICATED)));
        }
        Ok(Outcome::QuotaExceeded { quota, used }) => {
            state.used_up.remember(project.project_id, now, quota, used);
            return Err(Rejection::QuotaExceeded { quota, used });
        }
        Err(_) => return Err(Rejection::StoreUnavailable),
    }
    Ok(accepted_answer(match route {
        Route::Envelope => {
            AcceptedBody::Built(json!({ "success": true, "queued": true, "event_id": event_id }))
        }
        _ => AcceptedBody::Known(QUEUED),
    }))
}

/// The project `X-API-Key` opens.
async fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<ProjectAuth, Rejection> {
    let key = headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .filter(|k| !k.is_empty())
        .ok_or(Rejection::MissingApiKey)?;
    if !keys::has_valid_format(key) {
        return Err(Rejection::InvalidApiKeyFormat);
    }
    state
        .keys
        .authenticate(&state.store, key)
        .await
        .ok_or(Rejection::InvalidApiKey)
}

/// A 400 for `route`: check-ins answer without a `code`, as production does.
fn invalid(route: Route, details: Vec<validate::Detail>) -> Rejection {
    Rejection::Validation {
        details,
        with_code: route != Route::CheckIn,
    }
}

/// The body of a 202.
enum AcceptedBody {
    /// Written once, in the order `serde_json` writes keys.
    Known(&'static str),
    Built(Value),
}

const QUEUED: &str = r#"{"queued":true,"success":true}"#;
const SAMPLED_OUT: &str = r#"{"sampled":false,"success":true}"#;
const DEDUPLICATED: &str = r#"{"deduplicated":true,"success":true}"#;

fn accepted_answer(body: AcceptedBody) -> Response {
    match body {
        AcceptedBody::Known(text) => (
            StatusCode::ACCEPTED,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            text,
        )
            .into_response(),
        AcceptedBody::Built(value) => (StatusCode::ACCEPTED, Json(value)).into_response(),
    }
}

fn to_new_event(
    project: &ProjectAuth,
    accepted: Accepted,
    payload: String,
    now: i64,
    window_now: i64,
) -> NewEvent {
    let project_id = project.project_id;
    let (fingerprint, rule) = grouping::fingerprint(project_id, &accepted);
    let dedupe_key = grouping::dedupe_key(project_id, &accepted);
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
        payload,
        dedupe_key,
        seen_at: window_now,
        daily_quota: project.daily_quota,
    }
}

/// `body` as compact JSON text, written straight into a buffer of about its size (its
/// `Display` would go through a formatter for every token).
fn compact_json(body: &Value, size_hint: usize) -> String {
    let mut out = Vec::with_capacity(size_hint);
    // A `Value`'s keys are strings and a `Vec` takes every byte: neither branch is taken.
    if serde_json::to_writer(&mut out, body).is_err() {
        return body.to_string();
    }
    String::from_utf8(out).unwrap_or_else(|_| body.to_string())
}

/// `POST /api/v1/logs`: committed before the 202.
async fn store_log(
    state: &AppState,
    project_id: i64,
    body: &Value,
    now: i64,
) -> Result<Response, Rejection> {
    let mut entry = validate::log(body, now).map_err(|details| invalid(Route::Log, details))?;
    for text in [
        &mut entry.level,
        &mut entry.channel,
        &mut entry.message,
        &mut entry.source,
    ] {
        without_nul(text);
    }
    for text in [
        &mut entry.env,
        &mut entry.release,
        &mut entry.url,
        &mut entry.request_id,
        &mut entry.user_id,
        &mut entry.trace_id,
        &mut entry.span_id,
    ]
    .into_iter()
    .flatten()
    {
        without_nul(text);
    }
    writable(state)?;
    state
        .store
        .write_log(project_id, &entry, now)
        .await
        .map_err(store_failed)?;
    Ok(accepted_answer(AcceptedBody::Known(SAMPLED_OUT)))
}

/// `POST /api/v1/cron/checkin`: committed before the 200, answered with the check-in.
async fn store_checkin(
    state: &AppState,
    project_id: i64,
    body: &Value,
    now: i64,
) -> Result<Response, Rejection> {
    let mut check_in =
        validate::checkin(body).map_err(|details| invalid(Route::CheckIn, details))?;
    without_nul(&mut check_in.slug);
    for text in [&mut check_in.checkin_id, &mut check_in.env]
        .into_iter()
        .flatten()
    {
        without_nul(text);
    }
    writable(state)?;
    let checkin = state
        .store
        .check_in(project_id, &check_in, now)
        .await
        .map_err(store_failed)?;
    let mut answer = json!({ "checkin": checkin });
    if check_in.status == validate::CheckInStatus::InProgress {
        answer["checkinId"] = answer["checkin"]["checkinId"].clone();
    }
    Ok(Json(answer).into_response())
}

/// Whether the server takes writes now: ingestion is not stopped, and the store writes.
fn writable(state: &AppState) -> Result<(), Rejection> {
    if state.writer.is_open() && state.writer.health().check().is_ok() {
        Ok(())
    } else {
        Err(Rejection::StoreUnavailable)
    }
}

fn store_failed(error: crate::store::StoreError) -> Rejection {
    tracing::error!(%error, "a write failed");
    Rejection::StoreUnavailable
}

/// Replaces U+0000 with U+FFFD. PostgreSQL's text cannot hold U+0000 (production ErrorWatch
/// loses such events: its insert fails); both backends keep the replacement, so one event's
/// NUL never fails the batch of others it is written with. JSON kept as text (the payload) is
/// unaffected: serialised, a NUL is the six characters `\u0000`.
fn without_nul(text: &mut String) {
    if text.contains('\0') {
        *text = text.replace('\0', "\u{FFFD}");
    }
}

fn random_unit() -> f64 {
    let mut bytes = [0u8; 8];
    let _ = getrandom::fill(&mut bytes);
    (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn known_answers_are_what_serde_json_writes() {
        for (known, value) in [
            (super::QUEUED, json!({ "success": true, "queued": true })),
            (
                super::SAMPLED_OUT,
                json!({ "success": true, "sampled": false }),
            ),
            (
                super::DEDUPLICATED,
                json!({ "success": true, "deduplicated": true }),
            ),
        ] {
            assert_eq!(known, value.to_string());
        }
    }
}
