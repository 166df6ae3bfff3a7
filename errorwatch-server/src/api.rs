//! The query and admin API: issues, their events and status, project settings, and the
//! newest log lines and check-ins. Every route takes `Authorization: Bearer <ADMIN_API_KEY>`
//! ([`Admin`]) and typed query parameters ([`Params`]).

use std::sync::Arc;

use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::header;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::{json, Value};

use crate::app::{now_ms, AppState};
use crate::keys::same_secret;
use crate::rejection::Rejection;
use crate::store::{GroupQuery, GroupSort, StoreError};

/// The query and admin routes.
pub(crate) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/groups", get(list_groups))
        .route("/api/v1/groups/{fingerprint}", get(show_group))
        .route("/api/v1/groups/{fingerprint}/events", get(group_events))
        .route(
            "/api/v1/groups/{fingerprint}/status",
            patch(set_group_status),
        )
        .route("/api/v1/projects/{id}", patch(update_project))
        .route("/api/v1/logs", get(list_logs))
        .route("/api/v1/cron/checkins", get(list_checkins))
}

/// Proof that the request carries the admin key.
pub(crate) struct Admin;

impl FromRequestParts<Arc<AppState>> for Admin {
    type Rejection = Rejection;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Admin, Rejection> {
        let expected = state
            .config
            .admin_api_key
            .as_deref()
            .ok_or(Rejection::AdminDisabled)?;
        let given = bearer(parts).unwrap_or("");
        if same_secret(given, expected) {
            Ok(Admin)
        } else {
            Err(Rejection::AdminUnauthorized)
        }
    }
}

/// The token of `Authorization: Bearer <token>`.
pub(crate) fn bearer(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

/// Query parameters read into `T`; what does not fit is a 400 naming the parameter.
pub(crate) struct Params<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Params<T> {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Params<T>, Rejection> {
        Query::<T>::try_from_uri(&parts.uri)
            .map(|Query(params)| Params(params))
            .map_err(|e| Rejection::invalid("query", e.body_text()))
    }
}

/// A path segment read into `T`; what does not fit is a 400.
pub(crate) struct Segment<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Segment<T> {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Segment<T>, Rejection> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(value)| Segment(value))
            .map_err(|e| Rejection::invalid("path", e.body_text()))
    }
}

/// `page` (from 1) and `limit` (1 to 100, default 20) of a listing.
#[derive(Deserialize)]
struct Paging {
    page: Option<i64>,
    limit: Option<i64>,
}

impl Paging {
    fn checked(&self) -> Result<(i64, i64), Rejection> {
        let page = self.page.unwrap_or(1);
        if !(1..=i64::MAX / 1000).contains(&page) {
            return Err(Rejection::invalid("page", "Must be a whole number from 1"));
        }
        let limit = self.limit.unwrap_or(20);
        if !(1..=100).contains(&limit) {
            return Err(Rejection::invalid(
                "limit",
                "Must be a whole number from 1 to 100",
            ));
        }
        Ok((page, limit))
    }
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum Status {
    Resolved,
    Unresolved,
    /// New events still count, but do not reopen it.
    Ignored,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Resolved => "resolved",
            Status::Unresolved => "unresolved",
            Status::Ignored => "ignored",
        }
    }
}

#[derive(Deserialize)]
struct GroupParams {
    project: Option<i64>,
    env: Option<String>,
    level: Option<String>,
    status: Option<Status>,
    release: Option<String>,
    search: Option<String>,
    sort: Option<GroupSort>,
    page: Option<i64>,
    limit: Option<i64>,
}

async fn list_groups(
    _: Admin,
    State(state): State<Arc<AppState>>,
    Params(params): Params<GroupParams>,
) -> Result<Response, Rejection> {
    let (page, limit) = Paging {
        page: params.page,
        limit: params.limit,
    }
    .checked()?;
    let query = GroupQuery {
        project: params.project,
        env: params.env,
        level: params.level,
        status: params.status.map(|s| s.as_str().to_owned()),
        release: params.release,
        search: params.search,
        sort: params.sort.unwrap_or_default(),
        page,
        limit,
    };
    let (groups, total) = state.store.groups(&query).await.map_err(query_failed)?;
    Ok(
        Json(json!({ "groups": groups, "page": page, "limit": limit, "total": total }))
            .into_response(),
    )
}

async fn show_group(
    _: Admin,
    State(state): State<Arc<AppState>>,
    Segment(fingerprint): Segment<String>,
) -> Result<Response, Rejection> {
    match state
        .store
        .group(&fingerprint)
        .await
        .map_err(query_failed)?
    {
        Some(group) => Ok(Json(json!({ "group": group })).into_response()),
        None => Err(Rejection::NotFound("Group")),
    }
}

async fn group_events(
    _: Admin,
    State(state): State<Arc<AppState>>,
    Segment(fingerprint): Segment<String>,
    Params(paging): Params<Paging>,
) -> Result<Response, Rejection> {
    let (page, limit) = paging.checked()?;
    if state
        .store
        .group(&fingerprint)
        .await
        .map_err(query_failed)?
        .is_none()
    {
        return Err(Rejection::NotFound("Group"));
    }
    let events = state
        .store
        .group_events(&fingerprint, page, limit)
        .await
        .map_err(query_failed)?;
    Ok(Json(json!({ "events": events, "page": page, "limit": limit })).into_response())
}

#[derive(Deserialize)]
struct StatusChange {
    status: Status,
}

async fn set_group_status(
    _: Admin,
    State(state): State<Arc<AppState>>,
    Segment(fingerprint): Segment<String>,
    body: axum::body::Bytes,
) -> Result<Response, Rejection> {
    let StatusChange { status } = serde_json::from_slice(&body).map_err(|_| {
        Rejection::invalid(
            "status",
            "Expected {\"status\": \"resolved\" | \"unresolved\" | \"ignored\"}",
        )
    })?;
    let found = state
        .store
        .set_status(&fingerprint, status.as_str(), now_ms())
        .await
        .map_err(query_failed)?;
    if !found {
        return Err(Rejection::NotFound("Group"));
    }
    Ok(Json(json!({ "success": true, "status": status.as_str() })).into_response())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ProjectSettings {
    ingestion_enabled: Option<bool>,
    sample_rate: Option<f64>,
    /// Absent: unchanged; `null`: no quota; a number: that quota.
    #[serde(default, deserialize_with = "present")]
    daily_quota: Option<Option<i64>>,
}

/// Tells a field given as `null` (`Some(None)`) from one left out (`None`).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(deserializer).map(Some)
}

async fn update_project(
    _: Admin,
    State(state): State<Arc<AppState>>,
    Segment(id): Segment<i64>,
    body: axum::body::Bytes,
) -> Result<Response, Rejection> {
    let settings: ProjectSettings =
        serde_json::from_slice(&body).map_err(|e| Rejection::invalid_body(e.to_string()))?;
    let keys = state.store.all_keys().await.map_err(query_failed)?;
    let current = keys
        .iter()
        .find(|k| k.project_id == id)
        .ok_or(Rejection::NotFound("Project"))?;
    let sample_rate = settings.sample_rate.unwrap_or(current.sample_rate);
    if !(0.0..=1.0).contains(&sample_rate) {
        return Err(Rejection::invalid("sampleRate", "Must be between 0 and 1"));
    }
    let quota = settings.daily_quota.unwrap_or(current.daily_quota);
    if quota.is_some_and(|q| q < 0) {
        return Err(Rejection::invalid(
            "dailyQuota",
            "Must be 0 or more, or null",
        ));
    }
    let enabled = settings
        .ingestion_enabled
        .unwrap_or(current.ingestion_enabled);
    state
        .store
        .update_project(id, enabled, sample_rate, quota)
        .await
        .map_err(query_failed)?;
    let _ = state.keys.refresh(&state.store).await;
    Ok(Json(json!({
        "success": true,
        "ingestionEnabled": enabled,
        "sampleRate": sample_rate,
        "dailyQuota": quota,
    }))
    .into_response())
}

/// `project` and `limit` (1 to 500, default 100) of the newest-rows listings.
#[derive(Deserialize)]
struct RecentParams {
    project: Option<i64>,
    limit: Option<i64>,
}

impl RecentParams {
    fn limit(&self) -> i64 {
        self.limit.unwrap_or(100).clamp(1, 500)
    }
}

/// `GET /api/v1/logs`: the newest log lines.
async fn list_logs(
    _: Admin,
    State(state): State<Arc<AppState>>,
    Params(params): Params<RecentParams>,
) -> Result<Response, Rejection> {
    let rows = state
        .store
        .logs(params.project, params.limit())
        .await
        .map_err(query_failed)?;
    Ok(Json(json!({ "logs": rows })).into_response())
}

/// `GET /api/v1/cron/checkins`: the newest check-ins.
async fn list_checkins(
    _: Admin,
    State(state): State<Arc<AppState>>,
    Params(params): Params<RecentParams>,
) -> Result<Response, Rejection> {
    let rows: Vec<Value> = state
        .store
        .checkins(params.project, params.limit())
        .await
        .map_err(query_failed)?;
    Ok(Json(json!({ "checkins": rows })).into_response())
}

fn query_failed(error: StoreError) -> Rejection {
    tracing::error!(%error, "a query failed");
    Rejection::StoreUnavailable
}
