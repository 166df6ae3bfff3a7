//! The application: the state every handler shares, and the router that joins the server's
//! halves (the ingestion path, and the query and admin API with the pages people read) with
//! its health and metrics routes.

use std::sync::Arc;
use std::time::Instant;

use axum::error_handling::HandleErrorLayer;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;
use tokio::sync::Semaphore;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::ServiceBuilder;

use crate::config::Config;
use crate::ingest::body::BodyBudget;
use crate::ingest::quota::UsedUp;
use crate::keys::KeyCache;
use crate::metrics::Metrics;
use crate::rate_limit::RateLimiter;
use crate::rejection::{self, Rejection};
use crate::store::Store;
use crate::writer::Writer;
use crate::{api, ingest, ops, pages};

/// Everything the handlers share.
pub(crate) struct AppState {
    pub(crate) config: Config,
    pub(crate) store: Store,
    pub(crate) keys: KeyCache,
    pub(crate) writer: Writer,
    pub(crate) limiter: RateLimiter,
    /// Sign-in attempts per address.
    pub(crate) sign_in_limiter: RateLimiter,
    pub(crate) used_up: UsedUp,
    pub(crate) budget: BodyBudget,
    pub(crate) metrics: Arc<Metrics>,
    /// One permit per API request that may run at once.
    pub(crate) slots: Arc<Semaphore>,
}

/// The router of every route.
///
/// The API routes (ingestion, query, admin) run at most `max_concurrent_requests` at once
/// (tower's concurrency limit, on the `slots` semaphore); beyond, they are shed with a 503 at
/// once. The slot belongs to the request's future, so a client that goes away gives it back. Health and metrics stay outside the limit: an
/// overloaded server is still alive, and says so.
pub(crate) fn router(state: Arc<AppState>) -> Router {
    let metrics = state.metrics.clone();
    let limit = ServiceBuilder::new()
        .layer(HandleErrorLayer::new(move |_: tower::BoxError| {
            let metrics = metrics.clone();
            async move {
                metrics.rejected(Rejection::Overloaded.metric_reason());
                Rejection::Overloaded
            }
        }))
        .load_shed()
        .layer(GlobalConcurrencyLimitLayer::with_semaphore(
            state.slots.clone(),
        ));
    let api = Router::new()
        .merge(ingest::routes())
        .merge(api::routes())
        .merge(pages::routes())
        .layer(limit);
    Router::new()
        .merge(api)
        .merge(ops::routes())
        .fallback(|| async { Rejection::NotFound("Route") })
        .layer(middleware::map_response(rejection::json_errors))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// Times every request.
async fn observe(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let response = next.run(request).await;
    state.metrics.request(started.elapsed());
    response
}

/// Milliseconds since the epoch, now.
pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
