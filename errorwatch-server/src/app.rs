//! The application: the state every handler shares, and the router that joins the server's
//! halves (the ingestion path, and the query and admin API with the pages people read) with
//! its health and metrics routes.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Instant;

use axum::error_handling::HandleErrorLayer;
use axum::extract::Request;
use axum::response::Response;
use axum::routing::future::RouteFuture;
use axum::Router;
use tokio::sync::Semaphore;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::{Service, ServiceBuilder};

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

/// The service every connection calls: the router of every route, each answer timed, and an
/// error answer that is not the contract's JSON (an extractor's plain-text rejection, a bare
/// 405) rewritten as one.
///
/// One hand-written service rather than two `axum::middleware` layers: those box a future and
/// clone the routes' service on every request, a cost each ingested event paid twice.
#[derive(Clone)]
pub(crate) struct App {
    router: Router,
    metrics: Arc<Metrics>,
}

impl App {
    pub(crate) fn new(state: Arc<AppState>) -> App {
        App {
            metrics: state.metrics.clone(),
            router: router(state),
        }
    }
}

impl Service<Request> for App {
    type Response = Response;
    type Error = Infallible;
    type Future = Answer;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // Always ready: the API routes shed load themselves.
        Service::<Request>::poll_ready(&mut self.router, cx)
    }

    fn call(&mut self, request: Request) -> Answer {
        Answer {
            stage: Stage::Routing(self.router.call(request)),
            started: Instant::now(),
            metrics: self.metrics.clone(),
        }
    }
}

/// The answer to one request, as [`App`] makes it.
pub(crate) struct Answer {
    stage: Stage,
    started: Instant,
    metrics: Arc<Metrics>,
}

// Every request is routed; boxing the router's future to shrink the enum would cost each one
// an allocation to save the rare rewrite a few hundred bytes.
#[allow(clippy::large_enum_variant)]
enum Stage {
    Routing(RouteFuture<Infallible>),
    /// Reading a plain-text error to answer it as JSON: rare, so boxed.
    Rewriting(Pin<Box<dyn Future<Output = Response> + Send>>),
}

impl Future for Answer {
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        loop {
            let response = match &mut this.stage {
                Stage::Routing(routing) => {
                    let Ok(response) = ready!(Pin::new(routing).poll(cx));
                    if rejection::is_plain_error(&response) {
                        this.stage = Stage::Rewriting(Box::pin(rejection::as_json(response)));
                        continue;
                    }
                    response
                }
                Stage::Rewriting(rewriting) => ready!(rewriting.as_mut().poll(cx)),
            };
            this.metrics.request(this.started.elapsed());
            return Poll::Ready(Ok(response));
        }
    }
}

/// The router of every route.
///
/// The API routes (ingestion, query, admin) run at most `max_concurrent_requests` at once
/// (tower's concurrency limit, on the `slots` semaphore); beyond, they are shed with a 503 at
/// once. The slot belongs to the request's future, so a client that goes away gives it back.
/// Health and metrics stay outside the limit: an overloaded server is still alive, and says
/// so.
fn router(state: Arc<AppState>) -> Router {
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
        .with_state(state)
}

/// Milliseconds since the epoch, now.
pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
