//! What operators and orchestrators read: liveness, readiness and Prometheus metrics.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::api::bearer;
use crate::app::{now_ms, AppState};
use crate::keys::same_secret;
use crate::rejection::Rejection;
use crate::serve::ClientAddr;
use crate::store::rfc3339;

/// The health and metrics routes.
pub(crate) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .route("/metrics", get(metrics))
}

async fn live() -> Response {
    Json(json!({ "status": "ok", "timestamp": rfc3339(now_ms()) })).into_response()
}

/// 200 only when the store answers, takes writes, is still the file it opened, and the writer
/// takes events; 503 otherwise, saying which check failed.
async fn ready(State(state): State<Arc<AppState>>) -> Response {
    let started = Instant::now();
    let answers = tokio::time::timeout(Duration::from_secs(2), state.store.ping())
        .await
        .unwrap_or(false);
    let latency = started.elapsed().as_millis() as u64;
    let writes = state
        .store
        .check_file()
        .map_err(|e| e.to_string())
        .and_then(|()| state.writer.health().check());
    let queue_open = state.writer.is_open();
    let store_check = match (&writes, answers) {
        (Ok(()), true) => json!({ "status": "ok", "latencyMs": latency }),
        (Ok(()), false) => {
            json!({ "status": "error", "latencyMs": latency, "error": "the store does not answer" })
        }
        (Err(why), _) => json!({ "status": "error", "latencyMs": latency, "error": why }),
    };
    let healthy = answers && writes.is_ok() && queue_open;
    let body = json!({
        "status": if healthy { "healthy" } else { "unhealthy" },
        "timestamp": rfc3339(now_ms()),
        "checks": {
            "store": store_check,
            "queue": { "status": if queue_open { "ok" } else { "error" } },
        },
    });
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// Proof that the request may read the metrics: the `METRICS_TOKEN` bearer, or, when none is
/// configured, a loopback client.
struct MetricsReader;

impl FromRequestParts<Arc<AppState>> for MetricsReader {
    type Rejection = Rejection;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<MetricsReader, Rejection> {
        let allowed = match &state.config.metrics_token {
            Some(token) => bearer(parts).is_some_and(|given| same_secret(given, token)),
            None => parts
                .extensions
                .get::<ConnectInfo<ClientAddr>>()
                .is_some_and(|ConnectInfo(ClientAddr(client))| client.ip().is_loopback()),
        };
        if allowed {
            Ok(MetricsReader)
        } else {
            Err(Rejection::MetricsUnauthorized)
        }
    }
}

async fn metrics(_: MetricsReader, State(state): State<Arc<AppState>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state
            .metrics
            .render(state.config.max_concurrent_requests.max(1) - state.slots.available_permits()),
    )
        .into_response()
}
