//! Report panics, errors and messages from Rust services to an ErrorWatch server (a
//! self-hosted, Sentry-like error tracker), without ever blocking them.
//!
//! ```no_run
//! use errorwatch_sdk::{capture_error, capture_message, configure_scope, Level, Options};
//!
//! fn main() {
//!     // ERRORWATCH_API_URL, ERRORWATCH_API_KEY, ERRORWATCH_ENV, ERRORWATCH_RELEASE...
//!     let _guard = errorwatch_sdk::init(Options::from_env().expect("valid ERRORWATCH_* variables"));
//!
//!     configure_scope(|scope| scope.set_tag("service", "billing"));
//!     capture_message("billing started", Level::Info);
//!     if let Err(error) = "x".parse::<u32>() {
//!         capture_error(&error);
//!     }
//!     // Panics are reported too. Dropping the guard flushes, for at most 2 s.
//! }
//! ```
//!
//! # What it promises
//! - **Never blocks the caller.** Captures go to a bounded queue with a non-blocking send;
//!   when it is full the event is dropped and counted. Stack traces are walked on the caller
//!   but symbolised on the SDK's own worker thread, together with scrubbing and serialising.
//! - **Bounded everything.** Connect 2 s and request 5 s timeouts; at most 2 retries with
//!   jittered backoff; `429` honoured; a circuit breaker after repeated failures;
//!   [`flush`] and the guard's drop return by their deadline, whatever the server does.
//! - **Counts everything**: see [`Client::stats`].
//! - **Scrubs secrets** (passwords, tokens, keys, cards, private keys...) before anything
//!   leaves the process: see [`ScrubOptions`].
//! - **Context per request, not per thread**: see [`with_scope`] and [`ScopeFutureExt`].
//! - **Fits the server's limits**, so a real ErrorWatch server never answers 400.
//! - **Testable**: [`testing`] captures events in memory.

#![warn(missing_docs)]

/// The README's examples, compiled (and run where they can be) as doctests: what a user copies
/// from it builds.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

mod client;
mod diagnostics;
mod draft;
mod error_chain;
mod give_back;
mod handoff;
mod hub;
pub mod integration;
mod options;
mod panic;
mod pipeline;
mod scope;
mod scrub;
mod stacktrace;
mod stats;
pub mod testing;
mod transport;

use std::error::Error;
use std::time::Duration;

#[cfg(feature = "anyhow")]
pub use client::event_from_anyhow;
pub use client::event_from_error;
#[cfg(feature = "eyre")]
pub use client::event_from_eyre;
pub use client::{init, try_init, Client, ClientGuard};
/// The whole wire contract: every event type (`Frame`, `Request`, `Timestamp`...), the limits
/// and the validator, for code that builds or inspects events in detail.
pub use errorwatch_protocol as protocol;
pub use errorwatch_protocol::{Breadcrumb, Event, EventId, Exception, Level, Map, User, Value};
pub use hub::{configure_global_scope, configure_scope, with_scope, ScopeFutureExt, Scoped};
pub use options::{env, BeforeSend, DiagnosticsHook, Options, OptionsError};
pub use scope::Scope;
pub use scrub::ScrubOptions;
pub use stats::Stats;
pub(crate) const USER_AGENT: &str = concat!("errorwatch-rust/", env!("CARGO_PKG_VERSION"));

/// Captures an error, its `source()` chain and (by default) a stack trace, with the current
/// scope. Returns the event's id if it was queued.
///
/// ```
/// let events = errorwatch_sdk::testing::capture_events(|| {
///     let error = "12a".parse::<u32>().unwrap_err();
///     errorwatch_sdk::capture_error(&error);
/// });
/// let exception = events[0].exception.as_ref().unwrap();
/// assert_eq!(exception.ty, "ParseIntError");
/// ```
#[track_caller]
pub fn capture_error<E: Error + ?Sized>(error: &E) -> Option<EventId> {
    Client::current()?.capture_error(error)
}

/// Captures an [`anyhow::Error`] with the current scope, typed by its root cause, with its
/// chain and anyhow's own backtrace: see [`Client::capture_anyhow`]. Feature `anyhow`.
///
/// ```
/// let error = anyhow::anyhow!("the cache is cold");
/// errorwatch_sdk::capture_anyhow(&error); // a no-op until `init`
/// ```
#[cfg(feature = "anyhow")]
#[track_caller]
pub fn capture_anyhow(error: &anyhow::Error) -> Option<EventId> {
    Client::current()?.capture_anyhow(error)
}

/// Captures an [`eyre::Report`] with the current scope, typed by its root cause, with its
/// chain: see [`Client::capture_eyre`]. Feature `eyre`.
///
/// ```
/// let report = eyre::eyre!("the cache is cold");
/// errorwatch_sdk::capture_eyre(&report); // a no-op until `init`
/// ```
#[cfg(feature = "eyre")]
#[track_caller]
pub fn capture_eyre(report: &eyre::Report) -> Option<EventId> {
    Client::current()?.capture_eyre(report)
}

/// Captures a message at `level`, with the current scope.
///
/// ```
/// use errorwatch_sdk::{capture_message, Level};
/// capture_message("disk 91% full", Level::Warning); // a no-op until `init`
/// ```
pub fn capture_message(message: &str, level: Level) -> Option<EventId> {
    Client::current()?.capture_message(message, level)
}

/// Captures a ready-made event, with the current scope.
///
/// ```
/// use errorwatch_sdk::{capture_event, Event, Level};
/// let mut event = Event::message("quota almost reached", Level::Warning);
/// event.tags.insert("tenant".into(), "acme".into());
/// capture_event(event);
/// ```
pub fn capture_event(event: Event) -> Option<EventId> {
    let client = Client::current()?;
    client.capture_event(event, &hub::current_scope())
}

/// Adds a breadcrumb to the current scope; the next events carry the newest 100.
///
/// ```
/// use errorwatch_sdk::{add_breadcrumb, Breadcrumb};
/// add_breadcrumb(Breadcrumb::new("db", "connection pool exhausted"));
/// ```
pub fn add_breadcrumb(breadcrumb: Breadcrumb) {
    if hub::is_suppressed() {
        return;
    }
    hub::add_breadcrumb(breadcrumb);
}

/// Waits until the current client has delivered (or given up on) every event captured before
/// the call, for at most `timeout`. Returns whether it finished in time; `true` with no client.
///
/// ```
/// use std::time::Duration;
/// assert!(errorwatch_sdk::flush(Duration::from_millis(100)));
/// ```
pub fn flush(timeout: Duration) -> bool {
    Client::current().is_none_or(|client| client.flush(timeout))
}
