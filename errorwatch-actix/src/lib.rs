//! An actix-web middleware that reports to ErrorWatch.
//!
//! One line in the app is enough:
//!
//! ```no_run
//! use actix_web::{web, App, HttpServer};
//!
//! #[actix_web::main]
//! async fn main() -> std::io::Result<()> {
//!     let _guard = errorwatch_sdk::init(errorwatch_sdk::Options::from_env().unwrap_or_default());
//!     HttpServer::new(|| {
//!         App::new()
//!             .wrap(errorwatch_actix::ErrorWatch::new())
//!             .route("/users/{id}", web::get().to(|| async { "ok" }))
//!     })
//!     .bind(("127.0.0.1", 8080))?
//!     .run()
//!     .await
//! }
//! ```
//!
//! Every request then runs in a scope of its own, carrying the request (method, URL, the
//! route pattern as the `transaction` tag, the headers that may leave). A handler panic is
//! caught, reported as `fatal` and answered with a 500 while the server goes on; a 5xx response
//! is reported with its status and, when the response carries an error, that error's type and
//! message; 4xx are not, unless asked.

#![warn(missing_docs)]

/// The README's examples, compiled (and run where they can be) as doctests: what a user copies
/// from it builds.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

use std::future::{ready, Future, Ready};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;

use actix_web::dev::{forward_ready, Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::HttpMessage;
use errorwatch_sdk::integration;
use errorwatch_sdk::integration::CatchPanic;
use errorwatch_sdk::Exception;
use futures_core::Stream;

pub use errorwatch_sdk::integration::{AlreadyReported, ReportStatuses};

type Config = integration::MiddlewareOptions;

/// The middleware. `ErrorWatch::new()` has the defaults: 5xx reported, 4xx not, panics caught,
/// personal data as the client's `send_default_pii` says.
#[derive(Clone)]
pub struct ErrorWatch {
    config: Arc<Config>,
}

impl std::fmt::Debug for ErrorWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ErrorWatch").field(&*self.config).finish()
    }
}

impl Default for ErrorWatch {
    fn default() -> Self {
        ErrorWatch {
            config: Arc::new(Config::new()),
        }
    }
}

impl ErrorWatch {
    /// The middleware with its defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Which statuses are reported.
    ///
    /// ```
    /// use errorwatch_actix::{ErrorWatch, ReportStatuses};
    /// let middleware = ErrorWatch::new().report_statuses(ReportStatuses::default().with_client_errors());
    /// # let _ = middleware;
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

    /// Attaches the client IP, overriding the client's `send_default_pii`.
    pub fn send_pii(mut self, send: bool) -> Self {
        Arc::make_mut(&mut self.config).send_pii = Some(send);
        self
    }

    /// Reports to `client` instead of the global one (for services that run several clients,
    /// and for tests).
    pub fn client(mut self, client: errorwatch_sdk::Client) -> Self {
        Arc::make_mut(&mut self.config).client = Some(client);
        self
    }
}

impl<S, B> Transform<S, ServiceRequest> for ErrorWatch
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    S::Future: 'static,
    B: 'static,
{
    type Response = ServiceResponse<B>;
    type Error = actix_web::Error;
    type Transform = ErrorWatchMiddleware<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(ErrorWatchMiddleware {
            service: Rc::new(service),
            config: self.config.clone(),
        }))
    }
}

/// The service the middleware wraps around yours.
pub struct ErrorWatchMiddleware<S> {
    service: Rc<S>,
    config: Arc<Config>,
}

impl<S> std::fmt::Debug for ErrorWatchMiddleware<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ErrorWatchMiddleware")
            .finish_non_exhaustive()
    }
}

type Answer<B> = Result<ServiceResponse<B>, actix_web::Error>;

impl<S, B> Service<ServiceRequest> for ErrorWatchMiddleware<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    S::Future: 'static,
    B: 'static,
{
    type Response = ServiceResponse<B>;
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Answer<B>>>>;

    forward_ready!(service);

    fn call(&self, request: ServiceRequest) -> Self::Future {
        let config = self.config.clone();
        let send_pii = config.sends_pii();
        // Bodies are read ahead of the handler here, so only small ones of known length.
        let capture_body = send_pii && {
            let header = |name| request.headers().get(name).and_then(|v| v.to_str().ok());
            let length =
                header(actix_web::http::header::CONTENT_LENGTH).and_then(|v| v.parse::<u64>().ok());
            length.is_some()
                && integration::captures_body(header(actix_web::http::header::CONTENT_TYPE), length)
        };
        let method = request.method().as_str().to_owned();
        let route = request
            .match_pattern()
            .unwrap_or_else(|| request.path().to_owned());
        let (scheme, host, ip) = {
            let info = request.connection_info();
            (
                info.scheme().to_owned(),
                info.host().to_owned(),
                info.realip_remote_addr().map(str::to_owned),
            )
        };
        // Cheap copies (the URI and header values are shared buffers): the request attached
        // to events is built from them only if one is reported.
        let build_request = {
            let (method, uri, headers) = (
                method.clone(),
                request.uri().clone(),
                request.headers().clone(),
            );
            move || {
                let url = integration::request_url(
                    &scheme,
                    Some(&host),
                    uri.path_and_query().map_or("/", |p| p.as_str()),
                );
                integration::request(
                    &method,
                    url,
                    headers.iter().filter_map(|(name, value)| {
                        value.to_str().ok().map(|value| (name.as_str(), value))
                    }),
                )
            }
        };
        // `realip_remote_addr` already prefers Forwarded / X-Forwarded-For over the peer; it
        // gives `ip:port` for the peer and a bare address from the headers.
        let client_ip = send_pii
            .then(|| {
                let addr = ip.as_deref()?;
                addr.parse::<std::net::SocketAddr>()
                    .map(|socket| socket.ip())
                    .or_else(|_| addr.parse::<std::net::IpAddr>())
                    .ok()
                    .map(|ip| ip.to_string())
            })
            .flatten();
        // No clone of the request may be kept: actix's routing needs it uniquely owned.
        let service = self.service.clone();

        let handled = async move {
            errorwatch_sdk::configure_scope(|scope| {
                scope.set_request_with(build_request);
                scope.set_tag("transaction", route.clone());
                if let Some(ip) = client_ip {
                    let mut user = scope.user().cloned().unwrap_or_default();
                    user.ip_address = Some(ip);
                    scope.set_user(Some(user));
                }
            });
            let mut request = request;
            if capture_body {
                let body = read_payload(&mut request).await;
                integration::attach_request_body(&body);
            }
            let outcome = if config.catch_panics {
                match errorwatch_sdk::integration::catching_panics(|| {
                    catch_unwind(AssertUnwindSafe(|| service.call(request)))
                }) {
                    Ok(future) => CatchPanic::new(future).await,
                    Err(payload) => Err(payload),
                }
            } else {
                Ok(service.call(request).await)
            };
            match outcome {
                Ok(Ok(response)) => {
                    report_response(&response, &method, &route, &config.statuses);
                    Ok(response)
                }
                Ok(Err(error)) => {
                    // actix turns the error into a response after us: report what it will be.
                    let status = error.as_response_error().status_code().as_u16();
                    if config.statuses.reports(status) {
                        errorwatch_sdk::capture_event(integration::status_event(
                            status,
                            &method,
                            &route,
                            Some(exception_of(&error)),
                        ));
                    }
                    Err(error)
                }
                Err(payload) => {
                    integration::report_caught_panic(payload.as_ref());
                    // actix renders the error as a 500; the panic is already reported.
                    Err(actix_web::error::ErrorInternalServerError(
                        "Internal Server Error",
                    ))
                }
            }
        };
        Box::pin(self.config.scoped(handled))
    }
}

/// Reads the request's (small, bounded by its `Content-Length`) payload and puts back an
/// identical one for the handler, read error included. Returns the bytes read.
async fn read_payload(request: &mut ServiceRequest) -> Vec<u8> {
    let mut payload = request.take_payload();
    let mut body = Vec::new();
    let mut replay = std::collections::VecDeque::new();
    while let Some(chunk) = std::future::poll_fn(|cx| Pin::new(&mut payload).poll_next(cx)).await {
        match chunk {
            Ok(bytes) => {
                body.extend_from_slice(&bytes);
                replay.push_back(Ok(bytes));
            }
            Err(error) => {
                replay.push_back(Err(error));
                break;
            }
        }
    }
    request.set_payload(actix_web::dev::Payload::Stream {
        payload: Box::pin(Replay(replay)),
    });
    body
}

/// The chunks of a payload already read, handed out again in order.
struct Replay(
    std::collections::VecDeque<Result<actix_web::web::Bytes, actix_web::error::PayloadError>>,
);

impl futures_core::Stream for Replay {
    type Item = Result<actix_web::web::Bytes, actix_web::error::PayloadError>;

    fn poll_next(
        mut self: Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        std::task::Poll::Ready(self.0.pop_front())
    }
}

fn exception_of(error: &actix_web::Error) -> Exception {
    Exception::new(integration::type_name_from_debug(error), error.to_string())
}

fn report_response<B>(
    response: &ServiceResponse<B>,
    method: &str,
    route: &str,
    statuses: &ReportStatuses,
) {
    let status = response.status().as_u16();
    if !statuses.reports(status)
        || response
            .response()
            .extensions()
            .get::<AlreadyReported>()
            .is_some()
    {
        return;
    }
    let cause = response.response().error().map(exception_of);
    errorwatch_sdk::capture_event(integration::status_event(status, method, route, cause));
}
