//! A tower [`Layer`](tower::Layer) that reports to ErrorWatch: for axum, and for any tower
//! service over `http` types.
//!
//! One line in the router is enough:
//!
//! ```no_run
//! use axum::{routing::get, Router};
//!
//! # async fn demo() {
//! let _guard = errorwatch_sdk::init(errorwatch_sdk::Options::from_env().unwrap_or_default());
//! let app: Router = Router::new()
//!     .route("/users/{id}", get(|| async { "ok" }))
//!     .layer(errorwatch_axum::ErrorWatchLayer::new());
//! # let _ = app;
//! # }
//! ```
//!
//! Every request then runs in a scope of its own, carrying the request (method, URL, the
//! route pattern as the `transaction` tag, the headers that may leave), so whatever the handler
//! or the tracing layer reports lands on that request's events only. A handler panic is caught,
//! reported as `fatal` and answered with a 500 while the server goes on; a 5xx response is
//! reported with its status; 4xx are not, unless asked.
//!
//! Layers may nest (one on the whole app, another on a nested router): the outermost one
//! reports, with the full URL, and the inner ones step aside, so nothing is reported twice.

#![warn(missing_docs)]

/// The README's examples, compiled (and run where they can be) as doctests: what a user copies
/// from it builds.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

use std::future::Future;
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use errorwatch_sdk::integration;
use errorwatch_sdk::integration::CatchPanic;
use errorwatch_sdk::{Exception, Scoped, User};
use http::{Request, Response, StatusCode};

pub use errorwatch_sdk::integration::{AlreadyReported, ReportStatuses};

/// Attach this to a response (in its extensions) to name the error behind it: the report then
/// carries its type and message instead of the bare status.
///
/// ```
/// use axum::response::{IntoResponse, Response};
///
/// struct AppError(std::io::Error);
///
/// impl IntoResponse for AppError {
///     fn into_response(self) -> Response {
///         let mut response = (http::StatusCode::INTERNAL_SERVER_ERROR, "something broke").into_response();
///         response.extensions_mut().insert(errorwatch_axum::HandlerError::new(&self.0));
///         response
///     }
/// }
/// ```
#[derive(Clone, Debug)]
pub struct HandlerError(Exception);

impl HandlerError {
    /// The error's type and message.
    pub fn new<E: std::error::Error + ?Sized>(error: &E) -> Self {
        let event = errorwatch_sdk::event_from_error(error);
        HandlerError(event.exception.unwrap_or_default())
    }
}

type Config = integration::MiddlewareOptions;

/// The layer. `ErrorWatchLayer::new()` has the defaults: 5xx reported, 4xx not, panics caught,
/// personal data as the client's `send_default_pii` says.
#[derive(Clone, Debug)]
pub struct ErrorWatchLayer {
    config: Arc<Config>,
}

impl Default for ErrorWatchLayer {
    fn default() -> Self {
        ErrorWatchLayer {
            config: Arc::new(Config::new()),
        }
    }
}

impl ErrorWatchLayer {
    /// The layer with its defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Which statuses are reported.
    ///
    /// ```
    /// use errorwatch_axum::{ErrorWatchLayer, ReportStatuses};
    /// let layer = ErrorWatchLayer::new().report_statuses(ReportStatuses::default().with_client_errors());
    /// # let _ = layer;
    /// ```
    pub fn report_statuses(mut self, statuses: ReportStatuses) -> Self {
        Arc::make_mut(&mut self.config).statuses = statuses;
        self
    }

    /// Whether handler panics are caught (and answered with a 500). Default: yes.
    pub fn catch_panics(mut self, catch: bool) -> Self {
        Arc::make_mut(&mut self.config).catch_panics = catch;
        self
    }

    /// Reports to `client` instead of the global one (for services that run several clients,
    /// and for tests).
    pub fn client(mut self, client: errorwatch_sdk::Client) -> Self {
        Arc::make_mut(&mut self.config).client = Some(client);
        self
    }

    /// Attaches the client IP, overriding the client's `send_default_pii`.
    pub fn send_pii(mut self, send: bool) -> Self {
        Arc::make_mut(&mut self.config).send_pii = Some(send);
        self
    }
}

impl<S> tower::Layer<S> for ErrorWatchLayer {
    type Service = ErrorWatchService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ErrorWatchService {
            inner,
            config: self.config.clone(),
        }
    }
}

/// The service the layer wraps around yours.
#[derive(Clone, Debug)]
pub struct ErrorWatchService<S> {
    inner: S,
    config: Arc<Config>,
}

/// What the middleware keeps of a request once it is handed on: cheap copies (the URI and
/// header values are shared buffers), from which the request attached to events is built
/// only if one is reported.
struct RequestInfo {
    method: http::Method,
    route: String,
    uri: http::Uri,
    headers: http::HeaderMap,
    client_ip: Option<String>,
}

fn request_info<B>(request: &Request<B>, send_pii: bool) -> RequestInfo {
    let headers = request.headers();
    // Inside a nested router the URI has lost its prefix; axum keeps the original.
    let uri = request
        .extensions()
        .get::<axum::extract::OriginalUri>()
        .map_or(request.uri(), |original| &original.0);
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| uri.path(), |path| path.as_str())
        .to_owned();
    let client_ip = send_pii
        .then(|| {
            let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
            let peer = request
                .extensions()
                .get::<axum::extract::ConnectInfo<SocketAddr>>()
                .map(|info| info.0.ip());
            integration::client_ip(header("x-forwarded-for"), header("x-real-ip"), peer)
        })
        .flatten();
    RequestInfo {
        method: request.method().clone(),
        route,
        uri: uri.clone(),
        headers: headers.clone(),
        client_ip,
    }
}

/// The request as attached to events: method, absolute URL, the headers that may leave.
fn protocol_request(
    method: &http::Method,
    uri: &http::Uri,
    headers: &http::HeaderMap,
) -> errorwatch_sdk::protocol::Request {
    let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    let url = match (uri.scheme_str(), uri.authority()) {
        (Some(_), Some(_)) => uri.to_string(),
        _ => integration::request_url(
            header("x-forwarded-proto").unwrap_or("http"),
            header("host").or(uri.authority().map(|a| a.as_str())),
            uri.path_and_query().map_or("/", |p| p.as_str()),
        ),
    };
    integration::request(
        method.as_str(),
        url,
        headers
            .iter()
            .filter_map(|(name, value)| value.to_str().ok().map(|value| (name.as_str(), value))),
    )
}

impl<S, ReqBody, ResBody> tower::Service<Request<ReqBody>> for ErrorWatchService<S>
where
    S: tower::Service<Request<ReqBody>, Response = Response<ResBody>>,
    ReqBody: 'static,
    ResBody: From<&'static str>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        // An outer layer already watches this request: its scope, its report.
        if request.extensions().get::<Watched>().is_some() {
            return ResponseFuture {
                kind: Kind::Inner {
                    inner: self.inner.call(request),
                },
            };
        }
        request.extensions_mut().insert(Watched);
        let send_pii = self.config.sends_pii();
        let RequestInfo {
            method,
            route,
            uri,
            headers,
            client_ip,
        } = request_info(&request, send_pii);
        let request = if send_pii && body_is_captured(&request) {
            request.map(tee_if_axum_body)
        } else {
            request
        };
        // Calling the inner service may panic too (before any future exists).
        let called = if self.config.catch_panics {
            errorwatch_sdk::integration::catching_panics(|| {
                catch_unwind(AssertUnwindSafe(|| self.inner.call(request)))
            })
        } else {
            Ok(self.inner.call(request))
        };
        let (inner, early_panic) = match called {
            Ok(future) => (Some(CatchPanic::new(future)), None),
            Err(payload) => (None, Some(payload)),
        };
        let guarded = Guarded {
            inner,
            early_panic,
            config: self.config.clone(),
            method: method.clone(),
            route: route.clone(),
        };
        // The request's own scope, filled now; its request is built only if it reports.
        let scoped = self.config.scoped_with(guarded, |scope| {
            scope.set_request_with(move || protocol_request(&method, &uri, &headers));
            scope.set_tag("transaction", route);
            if let Some(ip) = client_ip {
                let mut user = scope.user().cloned().unwrap_or_default();
                user.ip_address = Some(ip);
                scope.set_user(Some(user));
            }
        });
        ResponseFuture {
            kind: Kind::Watched { inner: scoped },
        }
    }
}

/// Marks a request an [`ErrorWatchService`] watches, for the layers nested inside it.
#[derive(Clone, Copy, Debug)]
struct Watched;

pin_project_lite::pin_project! {
    /// The future of a request handled by [`ErrorWatchService`].
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project_lite::pin_project! {
    #[project = KindProjection]
    enum Kind<F> {
        // The outermost layer: scope, panics and reports.
        Watched { #[pin] inner: Scoped<Guarded<F>> },
        // A layer nested inside another: the request passes through.
        Inner { #[pin] inner: F },
    }
}

impl<F, ResBody, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
    ResBody: From<&'static str>,
{
    type Output = Result<Response<ResBody>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProjection::Watched { inner } => inner.poll(cx),
            KindProjection::Inner { inner } => inner.poll(cx),
        }
    }
}

pin_project_lite::pin_project! {
    /// Runs inside the request's scope: catches panics, reports what must be.
    pub struct Guarded<F> {
        #[pin]
        inner: Option<CatchPanic<F>>,
        early_panic: Option<Box<dyn std::any::Any + Send>>,
        config: Arc<Config>,
        method: http::Method,
        route: String,
    }
}

impl<F, ResBody, E> Future for Guarded<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
    ResBody: From<&'static str>,
{
    type Output = Result<Response<ResBody>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let Some(payload) = this.early_panic.take() {
            return Poll::Ready(Ok(answer_panic(payload.as_ref())));
        }
        let Some(inner) = this.inner.as_mut().as_pin_mut() else {
            return Poll::Ready(Ok(internal_error()));
        };
        match inner.poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(Ok(response))) => {
                report_status(
                    &response,
                    this.method.as_str(),
                    this.route,
                    &this.config.statuses,
                );
                Poll::Ready(Ok(response))
            }
            Poll::Ready(Ok(Err(error))) => Poll::Ready(Err(error)),
            // Not ours to catch: let it unwind as if we were not here.
            Poll::Ready(Err(payload)) if !this.config.catch_panics => {
                std::panic::resume_unwind(payload)
            }
            Poll::Ready(Err(payload)) => Poll::Ready(Ok(answer_panic(payload.as_ref()))),
        }
    }
}

/// Whether this request's body is attached (personal data on): JSON, form or text, small.
fn body_is_captured<B>(request: &Request<B>) -> bool {
    let headers = request.headers();
    let content_type = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let length = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    integration::captures_body(content_type, length)
}

/// Wraps an axum body so that what the handler reads is also kept for the report; any other
/// body type passes through untouched (the layer serves any tower service).
fn tee_if_axum_body<B: 'static>(body: B) -> B {
    let any: Box<dyn std::any::Any> = Box::new(body);
    match any.downcast::<axum::body::Body>() {
        Ok(body) => {
            let teed: Box<dyn std::any::Any> = Box::new(axum::body::Body::new(TeeBody::new(*body)));
            match teed.downcast::<B>() {
                Ok(teed) => *teed,
                Err(_) => unreachable!("B was just found to be axum::body::Body"),
            }
        }
        Err(original) => match original.downcast::<B>() {
            Ok(original) => *original,
            Err(_) => unreachable!("the box holds the B it was made from"),
        },
    }
}

pin_project_lite::pin_project! {
    /// Passes a body through, keeping a copy of up to `MAX_REQUEST_BODY` bytes that joins the
    /// request's scope once the body has been read to its end.
    struct TeeBody {
        #[pin]
        inner: axum::body::Body,
        seen: Vec<u8>,
        overflowed: bool,
        attached: bool,
    }
}

impl TeeBody {
    fn new(inner: axum::body::Body) -> Self {
        TeeBody {
            inner,
            seen: Vec::new(),
            overflowed: false,
            attached: false,
        }
    }
}

impl http_body::Body for TeeBody {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        let polled = this.inner.as_mut().poll_frame(cx);
        let ended = match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    if this.seen.len() + data.len() > integration::MAX_REQUEST_BODY {
                        *this.overflowed = true;
                        this.seen.clear();
                    } else if !*this.overflowed {
                        this.seen.extend_from_slice(data);
                    }
                }
                this.inner.is_end_stream()
            }
            Poll::Ready(None) => true,
            Poll::Ready(Some(Err(_))) | Poll::Pending => false,
        };
        if ended && !*this.attached {
            *this.attached = true;
            if !*this.overflowed && !this.seen.is_empty() {
                // Read inside the handler, so inside the request's scope.
                integration::attach_request_body(this.seen);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

fn internal_error<ResBody: From<&'static str>>() -> Response<ResBody> {
    let mut response = Response::new(ResBody::from("Internal Server Error"));
    *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    response
}

/// Reports a caught panic (unless the panic hook already did, with this request's scope) and
/// answers 500.
fn answer_panic<ResBody: From<&'static str>>(
    payload: &(dyn std::any::Any + Send),
) -> Response<ResBody> {
    integration::report_caught_panic(payload);
    internal_error()
}

fn report_status<ResBody>(
    response: &Response<ResBody>,
    method: &str,
    route: &str,
    statuses: &ReportStatuses,
) {
    let status = response.status().as_u16();
    if !statuses.reports(status) || response.extensions().get::<AlreadyReported>().is_some() {
        return;
    }
    let cause = response
        .extensions()
        .get::<HandlerError>()
        .map(|error| error.0.clone());
    errorwatch_sdk::capture_event(integration::status_event(status, method, route, cause));
}

/// The user of this request, for handlers that know who is calling (a convenience over
/// [`errorwatch_sdk::configure_scope`]).
pub fn set_user(user: User) {
    errorwatch_sdk::configure_scope(|scope| {
        let ip = scope.user().and_then(|current| current.ip_address.clone());
        scope.set_user(Some(User {
            ip_address: user.ip_address.or(ip),
            ..user
        }));
    });
}
