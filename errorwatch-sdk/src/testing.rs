//! Capture events in memory, to assert what your code reports without a server.
//!
//! The events went through the same pipeline as real ones (scope, `before_send`, scrubbing,
//! limits), so what you see is what would have been sent. Each helper binds its own client
//! to the code it runs: tests running in parallel never see each other's events.
//!
//! ```
//! use errorwatch_sdk::{capture_message, testing, Level};
//!
//! let events = testing::capture_events(|| {
//!     capture_message("payment declined", Level::Warning);
//! });
//! assert_eq!(events.len(), 1);
//! assert_eq!(events[0].message.as_deref(), Some("payment declined"));
//! ```

use std::future::Future;

use crate::client::{CapturedEvents, Client};
use crate::hub::{self, Binding};
use crate::options::Options;
use crate::scope::Scope;
use errorwatch_protocol::Event;

/// Runs `f` and returns the events it captured, with default options.
pub fn capture_events(f: impl FnOnce()) -> Vec<Event> {
    capture_events_with(Options::default(), f)
}

/// Runs `f` and returns the events it captured, prepared with `options` (its URL and key, if
/// any, are ignored: nothing is sent).
///
/// # Panics
/// If `options` are invalid (a scrub pattern too large to compile, say): in a test, a loud
/// failure beats events prepared differently from production.
pub fn capture_events_with(options: Options, f: impl FnOnce()) -> Vec<Event> {
    Recorder::new(options).capture(f)
}

/// An in-memory client to record many times with: preparing a client (compiling its
/// scrubbing rules) costs far more than a capture, so a suite of many cases, a property test
/// say, builds one recorder and records each case with it. Each recording starts from an empty
/// scope and returns only its own events.
///
/// ```
/// use errorwatch_sdk::{capture_message, testing::Recorder, Level, Options};
///
/// let recorder = Recorder::new(Options::default());
/// for n in 0..3 {
///     let events = recorder.capture(|| {
///         capture_message(&format!("case {n}"), Level::Info);
///     });
///     assert_eq!(events.len(), 1);
/// }
/// ```
#[derive(Clone)]
pub struct Recorder {
    client: Client,
    events: CapturedEvents,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder").finish_non_exhaustive()
    }
}

impl Recorder {
    /// A recorder that prepares events with `options` (their URL and key, if any, are
    /// ignored: nothing is sent).
    ///
    /// # Panics
    /// If `options` are invalid, as [`capture_events_with`] does.
    pub fn new(options: Options) -> Recorder {
        let (client, events) = test_client(options);
        Recorder { client, events }
    }

    /// Runs `f` and returns the events it captured.
    pub fn capture(&self, f: impl FnOnce()) -> Vec<Event> {
        take(&self.events);
        hub::run_bound(binding(self.client.clone()), f);
        take(&self.events)
    }
}

/// Awaits `future` and returns the events it captured, with default options.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use errorwatch_sdk::{capture_message, testing, Level};
///
/// let events = testing::capture_events_async(async {
///     tokio::task::yield_now().await;
///     capture_message("from async code", Level::Error);
/// })
/// .await;
/// assert_eq!(events.len(), 1);
/// # }
/// ```
pub async fn capture_events_async(future: impl Future<Output = ()>) -> Vec<Event> {
    capture_events_async_with(Options::default(), future).await
}

/// Awaits `future` and returns the events it captured, prepared with `options`.
pub async fn capture_events_async_with(
    options: Options,
    future: impl Future<Output = ()>,
) -> Vec<Event> {
    let (client, events) = test_client(options);
    hub::bind_future(future, binding(client)).await;
    take(&events)
}

fn test_client(options: Options) -> (Client, CapturedEvents) {
    match Client::in_memory(options) {
        Ok(made) => made,
        Err(error) => panic!("invalid options for the test client: {error}"),
    }
}

fn binding(client: Client) -> Binding {
    Binding {
        scope: Scope::default(),
        client: Some(client),
    }
}

fn take(events: &std::sync::Mutex<Vec<Event>>) -> Vec<Event> {
    std::mem::take(&mut *events.lock().unwrap_or_else(|e| e.into_inner()))
}
