//! For integrations, not for applications: what `errorwatch-axum`, `errorwatch-actix` and
//! `errorwatch-tracing` build on, so that the rules are the same whatever the framework.
//!
//! Which headers never leave, how a request is attached to its scope, which statuses are
//! reported and what those reports look like; catching a handler's panic and learning whether
//! the hook reported it; capturing at a known place; and whether the current thread is the
//! SDK's own. An application calls the functions at the crate's root instead.

use std::any::Any;
use std::fmt;
use std::net::IpAddr;
use std::sync::LazyLock;

use regex::Regex;

use crate::scrub::DEFAULT_KEYS;
use errorwatch_protocol::{Event, EventId, Exception, Level, Request, SdkInfo};

pub use crate::draft::{Draft, DraftField};
pub use crate::hub::is_suppressed;
#[cfg(feature = "panic")]
pub use crate::panic::install_hook;
pub use crate::panic::{catching_panics, payload_text, take_last_panic_event, CatchPanic};

/// The name this SDK reports in `sdk.name`.
pub const SDK_NAME: &str = SdkInfo::RUST_NAME;
/// The version this SDK reports in `sdk.version`.
pub const SDK_VERSION: &str = SdkInfo::RUST_VERSION;

/// Captures a ready-made event that happened at `file:line`, with the current scope: for
/// integrations that know the user's line but are not called from it directly (the tracing
/// layer passes an `error!`'s place). The stack trace starts at the frame of that line.
///
/// ```
/// use errorwatch_sdk::{integration::capture_event_at, Event, Level};
/// capture_event_at(Event::message("slow query", Level::Error), file!(), line!());
/// ```
pub fn capture_event_at(event: Event, file: &str, line: u32) -> Option<EventId> {
    let client = crate::Client::current()?;
    client.capture_event_at(event, &crate::hub::current_scope(), file, line)
}

/// Captures the event `write` describes, at `place` (the user's file and line) when known,
/// with the current scope. Unlike [`capture_event_at`], nothing of the event is built on the
/// caller's thread: `write` puts texts into a buffer the SDK reuses and names as `&'static
/// str`, and the worker builds the event. What a log macro reports through on hot paths.
///
/// ```
/// use errorwatch_sdk::integration::{capture_draft, DraftField};
/// use errorwatch_sdk::Level;
///
/// let order = 42;
/// capture_draft(Level::Error, Some((file!(), line!())), |draft| {
///     draft.message(format_args!("payment {order} failed"));
///     draft.put_i64(DraftField::Extra("order"), order);
/// });
/// ```
pub fn capture_draft(
    level: Level,
    place: Option<(&'static str, u32)>,
    write: impl FnOnce(&mut Draft<'_>),
) -> Option<EventId> {
    let client = crate::Client::current()?;
    client.capture_draft(level, place, &crate::hub::current_scope(), write)
}

/// The event `write` describes, built here, by the rules [`capture_draft`] follows: for an
/// integration that shows the event to user code before capturing it.
///
/// ```
/// use errorwatch_sdk::integration::{draft_event, DraftField};
/// use errorwatch_sdk::Level;
///
/// let event = draft_event(Level::Warning, None, |draft| {
///     draft.put_static(DraftField::Tag("logger"), "shop::cart");
/// });
/// assert_eq!(event.tag("logger"), Some("shop::cart"));
/// ```
pub fn draft_event(
    level: Level,
    place: Option<(&'static str, u32)>,
    write: impl FnOnce(&mut Draft<'_>),
) -> Event {
    let (mut text, mut parts, mut ends) = Default::default();
    write(&mut Draft::new(&mut text, &mut parts, &mut ends));
    crate::draft::build(&parts, &text, &ends, level, place)
}

/// Headers never attached to a request, whatever their value.
pub const REMOVED_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
    "x-forwarded-for",
    "x-real-ip",
    "forwarded",
];

/// Whether a request header is left out of reports: the listed ones, and any whose name looks
/// secret (`X-Auth-Token`, `X-Session-Id`, ...).
///
/// ```
/// use errorwatch_sdk::integration::is_removed_header;
/// assert!(is_removed_header("Authorization"));
/// assert!(is_removed_header("X-Upstream-Token"));
/// assert!(!is_removed_header("User-Agent"));
/// ```
pub fn is_removed_header(name: &str) -> bool {
    // One pass over the name however many words are listed, and no copy of it: every header
    // of every request an integration sees comes through here.
    static REMOVED: LazyLock<Option<Regex>> = LazyLock::new(|| {
        let listed: Vec<String> = REMOVED_HEADERS.iter().map(|h| regex::escape(h)).collect();
        let words: Vec<String> = DEFAULT_KEYS.iter().map(|w| regex::escape(w)).collect();
        Regex::new(&format!(
            "(?i)^(?:{})$|{}",
            listed.join("|"),
            words.join("|")
        ))
        .ok()
    });
    // The pattern is made of the constants above and always compiles; were it not to, every
    // header would be left out rather than one sent that should not be.
    REMOVED
        .as_ref()
        .is_none_or(|removed| removed.is_match(name))
}

/// The request as attached to a scope: method, absolute URL, query string and the headers
/// that may leave (see [`is_removed_header`]).
///
/// ```
/// let request = errorwatch_sdk::integration::request(
///     "GET",
///     "https://shop.example.com/cart?id=7",
///     [("user-agent", "curl/8"), ("cookie", "session=abc")],
/// );
/// assert_eq!(request.query_string.as_deref(), Some("id=7"));
/// assert!(request.headers.contains_key("user-agent"));
/// assert!(!request.headers.contains_key("cookie"));
/// ```
pub fn request<'a>(
    method: impl Into<String>,
    url: impl Into<String>,
    headers: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Request {
    let url = url.into();
    let query_string = url
        .split_once('?')
        .map(|(_, query)| query.split('#').next().unwrap_or(query).to_owned())
        .filter(|query| !query.is_empty());
    Request {
        url: Some(url),
        method: Some(method.into()),
        headers: headers
            .into_iter()
            .filter(|(name, _)| !is_removed_header(name))
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
            .collect(),
        query_string,
        data: None,
    }
}

/// The largest request body attached to reports (with `send_default_pii` only).
pub const MAX_REQUEST_BODY: usize = 16 * 1024;

/// Whether a body of this content type and length is attached (with `send_default_pii`):
/// JSON, forms and text, up to [`MAX_REQUEST_BODY`] bytes. Binary bodies never are.
///
/// ```
/// use errorwatch_sdk::integration::captures_body;
/// assert!(captures_body(Some("application/json; charset=utf-8"), Some(120)));
/// assert!(!captures_body(Some("image/png"), Some(120)));
/// assert!(!captures_body(Some("application/json"), Some(1 << 20)));
/// ```
pub fn captures_body(content_type: Option<&str>, length: Option<u64>) -> bool {
    let textual = content_type.is_some_and(|ty| {
        let ty = ty
            .split(';')
            .next()
            .unwrap_or(ty)
            .trim()
            .to_ascii_lowercase();
        ty == "application/json"
            || ty.ends_with("+json")
            || ty == "application/x-www-form-urlencoded"
            || ty.starts_with("text/")
    });
    textual && length.is_none_or(|len| len as usize <= MAX_REQUEST_BODY)
}

/// A request body as attached to `request.data`: JSON as JSON, anything else as text. The
/// scrubber then removes secrets from it like from any other field.
///
/// ```
/// let data = errorwatch_sdk::integration::request_data(br#"{"email":"a@b.c","password":"x"}"#);
/// assert_eq!(data["email"], "a@b.c");
/// ```
pub fn request_data(bytes: &[u8]) -> crate::Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|_| crate::Value::String(String::from_utf8_lossy(bytes).into_owned()))
}

/// Attaches a request body to the current scope's request (the integrations call it once the
/// body has been read).
pub fn attach_request_body(bytes: &[u8]) {
    let data = request_data(bytes);
    crate::configure_scope(|scope| {
        if let Some(request) = scope.request() {
            let mut request = request.clone();
            request.data = Some(data);
            scope.set_request(Some(request));
        }
    });
}

/// An absolute URL from a request's parts: `scheme://host/path?query`.
///
/// ```
/// let url = errorwatch_sdk::integration::request_url("http", Some("api.local:8080"), "/v1/items?page=2");
/// assert_eq!(url, "http://api.local:8080/v1/items?page=2");
/// ```
pub fn request_url(scheme: &str, host: Option<&str>, path_and_query: &str) -> String {
    let host = host.unwrap_or("localhost");
    // Sized at once: this runs for every request an integration sees.
    let mut url = String::with_capacity(scheme.len() + 3 + host.len() + path_and_query.len());
    for part in [scheme, "://", host, path_and_query] {
        url.push_str(part);
    }
    url
}

/// The client's address, for `user.ip_address` (only with `send_default_pii`): the first
/// `X-Forwarded-For` entry, else `X-Real-IP`, else the peer.
pub fn client_ip(
    forwarded_for: Option<&str>,
    real_ip: Option<&str>,
    peer: Option<IpAddr>,
) -> Option<String> {
    forwarded_for
        .and_then(|list| list.split(',').next())
        .map(str::trim)
        .filter(|ip| ip.parse::<IpAddr>().is_ok())
        .or_else(|| {
            real_ip
                .map(str::trim)
                .filter(|ip| ip.parse::<IpAddr>().is_ok())
        })
        .map(str::to_owned)
        .or_else(|| peer.map(|ip| ip.to_string()))
}

/// Which response statuses the integrations report.
///
/// ```
/// use errorwatch_sdk::integration::ReportStatuses;
/// assert!(ReportStatuses::default().reports(503));
/// assert!(!ReportStatuses::default().reports(404));
/// assert!(ReportStatuses::default().with_client_errors().reports(404));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReportStatuses {
    server_errors: bool,
    client_errors: bool,
}

impl Default for ReportStatuses {
    /// 5xx reported, 4xx not.
    fn default() -> Self {
        ReportStatuses {
            server_errors: true,
            client_errors: false,
        }
    }
}

impl ReportStatuses {
    /// Reports 4xx too.
    pub fn with_client_errors(mut self) -> Self {
        self.client_errors = true;
        self
    }

    /// Stops reporting 5xx (panics are still reported).
    pub fn without_server_errors(mut self) -> Self {
        self.server_errors = false;
        self
    }

    /// Whether a response with `status` is reported.
    pub fn reports(&self, status: u16) -> bool {
        (self.server_errors && (500..600).contains(&status))
            || (self.client_errors && (400..500).contains(&status))
    }
}

/// The settings every web integration takes, with their defaults: 5xx reported, 4xx not,
/// panics caught, personal data as the client's `send_default_pii` says, the global client.
///
/// ```
/// use errorwatch_sdk::integration::{MiddlewareOptions, ReportStatuses};
/// let options = MiddlewareOptions::default();
/// assert!(options.catch_panics);
/// assert_eq!(options.statuses, ReportStatuses::default());
/// ```
#[derive(Clone)]
pub struct MiddlewareOptions {
    /// Which statuses are reported.
    pub statuses: ReportStatuses,
    /// Whether handler panics are caught and answered with a 500.
    pub catch_panics: bool,
    /// Overrides the client's `send_default_pii` for the client IP.
    pub send_pii: Option<bool>,
    /// Reports to this client instead of the current one.
    pub client: Option<crate::Client>,
}

impl Default for MiddlewareOptions {
    fn default() -> Self {
        MiddlewareOptions {
            statuses: ReportStatuses::default(),
            catch_panics: true,
            send_pii: None,
            client: None,
        }
    }
}

impl MiddlewareOptions {
    /// The defaults (the same as [`Default`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether personal data may be attached to this request's reports.
    pub fn sends_pii(&self) -> bool {
        self.send_pii.unwrap_or_else(|| {
            let client = self.client.clone().or_else(crate::Client::current);
            client.is_some_and(|client| client.sends_default_pii())
        })
    }

    /// Runs `future` in a scope of its own, forked from the current one now, bound to the
    /// configured client if there is one.
    pub fn scoped<F: std::future::Future>(&self, future: F) -> crate::Scoped<F> {
        self.scoped_with(future, |_| {})
    }

    /// Runs `future` in a scope of its own, as [`scoped`](Self::scoped) does, filled by
    /// `configure` now: what a request brings (its URL, its route) is set once, before the
    /// future runs, instead of on its first poll.
    ///
    /// ```
    /// let options = errorwatch_sdk::integration::MiddlewareOptions::default();
    /// let future = options.scoped_with(async { 42 }, |scope| scope.set_tag("transaction", "/users/{id}"));
    /// # let _ = future;
    /// ```
    pub fn scoped_with<F: std::future::Future>(
        &self,
        future: F,
        configure: impl FnOnce(&mut crate::Scope),
    ) -> crate::Scoped<F> {
        let mut binding = match &self.client {
            Some(client) => client.binding(),
            None => crate::hub::current_binding(),
        };
        configure(&mut binding.scope);
        crate::hub::bind_future(future, binding)
    }
}

impl fmt::Debug for MiddlewareOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MiddlewareOptions")
            .field("statuses", &self.statuses)
            .field("catch_panics", &self.catch_panics)
            .field("send_pii", &self.send_pii)
            .field("own_client", &self.client.is_some())
            .finish()
    }
}

/// Put this in a response's extensions when the handler reported its failure itself, so the
/// middleware does not report it a second time.
///
/// With axum: `response.extensions_mut().insert(AlreadyReported)`; with actix-web:
/// `response.extensions_mut().insert(AlreadyReported)` on the `HttpResponse`.
///
/// ```
/// let marker = errorwatch_sdk::integration::AlreadyReported;
/// # let _ = marker;
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AlreadyReported;

/// The event for a response with an error status: grouped by status, method and route.
///
/// ```
/// let event = errorwatch_sdk::integration::status_event(502, "GET", "/users/{id}", None);
/// assert_eq!(event.exception.as_ref().unwrap().ty, "HTTP 502");
/// assert_eq!(event.status_code, Some(502));
/// ```
pub fn status_event(status: u16, method: &str, route: &str, cause: Option<Exception>) -> Event {
    let summary = format!("{method} {route} answered {status}");
    let exception =
        cause.unwrap_or_else(|| Exception::new(format!("HTTP {status}"), summary.clone()));
    Event {
        level: if status >= 500 {
            Level::Error
        } else {
            Level::Warning
        },
        message: Some(summary),
        exception: Some(exception),
        status_code: Some(status),
        ..Event::default()
    }
}

/// Reports a panic an integration caught, unless the panic hook already did (with the
/// request's scope, location and stack): the hook's report is the better one.
pub fn report_caught_panic(payload: &(dyn Any + Send)) {
    if crate::panic::take_last_panic_event().is_none() {
        crate::capture_event(panic_event(payload));
    }
}

/// The event for a handler panic the panic hook did not report (the hook is not installed).
pub fn panic_event(payload: &(dyn Any + Send)) -> Event {
    Event {
        level: Level::Fatal,
        exception: Some(Exception::new("panic", crate::panic::payload_text(payload))),
        status_code: Some(500),
        ..Event::default()
    }
}

/// A short type name for a value only seen through `Debug` (the leading identifier of its
/// output): what `errorwatch-actix` names the errors attached to responses after.
///
/// ```
/// #[derive(Debug)]
/// struct DatabaseDown { retries: u8 }
/// assert_eq!(errorwatch_sdk::integration::type_name_from_debug(&DatabaseDown { retries: 3 }), "DatabaseDown");
/// ```
pub fn type_name_from_debug(value: &dyn fmt::Debug) -> String {
    crate::error_chain::type_name_from_debug(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_headers_match_whole_and_secret_words_anywhere_in_any_case() {
        for removed in [
            "Forwarded",
            "X-REAL-IP",
            "set-cookie",
            "X-Csrf-Token",
            "x-my-apikey-v2",
        ] {
            assert!(is_removed_header(removed), "{removed} is left out");
        }
        // `forwarded` and `x-real-ip` are listed whole, not as words.
        for kept in [
            "X-Forwarded-Host",
            "x-real-ip-hint",
            "accept",
            "user-agent",
            "",
        ] {
            assert!(!is_removed_header(kept), "{kept} is kept");
        }
    }
}
