//! The client: takes captures on the caller's thread and hands them to the transport.
//!
//! Everything here runs on the caller's thread, so it does as little as it can: write what only
//! the caller can read into a pooled box (see [`crate::handoff`]), snapshot the scope (one
//! reference count), walk the stack without resolving it, and hand the box over into a place
//! taken in the queue beforehand (a full queue costs a count, not a capture). The event is built
//! on the worker. Nothing waits on the network or on a lock held across I/O.

use std::error::Error;
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::draft::Draft;
use crate::error_chain::ErrorChain;
use crate::handoff::{Handoff, Pool};
use crate::options::{Options, OptionsError};
use crate::pipeline::Pipeline;
use crate::scope::Scope;
use crate::stacktrace::{Anchor, RawStack};
use crate::stats::{Counters, Outcome, Stats};
use crate::transport::{NoRoom, Queue};
use errorwatch_protocol::{Event, EventId, Level};

/// Where the in-memory client of the test helpers keeps its events.
pub(crate) type CapturedEvents = Arc<Mutex<Vec<Event>>>;

/// A handle to an ErrorWatch client. Cheap to clone; all clones share one transport.
///
/// Most code uses the free functions ([`capture_error`](crate::capture_error), ...), which go
/// to the client [`init`](crate::init) installed. A `Client` can also be used on its own.
///
/// ```
/// use errorwatch_sdk::{Client, Options};
///
/// // Unconfigured options give a client that reports nothing, silently.
/// let client = Client::new(Options::default()).expect("valid options");
/// assert!(!client.is_enabled());
/// assert!(client.capture_message("ignored", errorwatch_sdk::Level::Info).is_none());
/// ```
#[derive(Clone)]
pub struct Client {
    inner: Arc<ClientInner>,
}

/// Whether it sends, and its counters; never its key.
impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("enabled", &self.is_enabled())
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

pub(crate) struct ClientInner {
    sink: Sink,
    pipeline: Arc<Pipeline>,
    counters: Arc<Counters>,
    sample_rate: f64,
    attach_stacktrace: bool,
    send_default_pii: bool,
    #[cfg_attr(not(feature = "panic"), allow(dead_code))]
    pub(crate) panic_flush_timeout: Duration,
    shutdown_timeout: Duration,
    closed: AtomicBool,
}

enum Sink {
    /// Unconfigured or switched off: every capture is a no-op.
    Disabled,
    /// The real transport.
    Queue(Queue),
    /// The test helpers: events are prepared inline and kept in memory.
    Memory(CapturedEvents),
}

impl Client {
    /// A client for `options`: it starts the transport thread when the options name a server
    /// and a key, and is a silent no-op otherwise.
    ///
    /// # Errors
    ///
    /// When an option is invalid ([`Options::validate`]): a malformed URL or key, a value out
    /// of range, a CA certificate that does not parse, or scrubbing patterns that do not
    /// compile. Nothing is sent then, rather than something unscrubbed or to the wrong place.
    pub fn new(options: Options) -> Result<Client, OptionsError> {
        options.validate()?;
        let counters = Arc::new(Counters::default());
        let pipeline = Arc::new(Pipeline::new(&options)?);
        let sink = if options.is_configured() {
            match Queue::start(&options, pipeline.clone(), counters.clone()) {
                Ok(queue) => Sink::Queue(queue),
                Err(error) => {
                    pipeline.diagnostics.log(format_args!(
                        "the transport thread could not start: {error}"
                    ));
                    Sink::Disabled
                }
            }
        } else {
            Sink::Disabled
        };
        Ok(Client::build(options, sink, pipeline, counters))
    }

    /// A client that keeps its events in memory, for the [`testing`](crate::testing) helpers.
    pub(crate) fn in_memory(options: Options) -> Result<(Client, CapturedEvents), OptionsError> {
        let events = Arc::new(Mutex::new(Vec::new()));
        let counters = Arc::new(Counters::default());
        let pipeline = Arc::new(Pipeline::new(&options)?);
        let client = Client::build(options, Sink::Memory(events.clone()), pipeline, counters);
        Ok((client, events))
    }

    /// A client that reports nothing (what `init` falls back to on bad options).
    fn disabled() -> Client {
        let options = Options::default()
            .enabled(false)
            .scrub(crate::ScrubOptions::disabled());
        let pipeline = match Pipeline::new(&options) {
            Ok(pipeline) => pipeline,
            // Scrubbing is off in these options: nothing can fail to compile.
            Err(_) => unreachable!("a pipeline without scrubbing always builds"),
        };
        Client::build(options, Sink::Disabled, Arc::new(pipeline), Arc::default())
    }

    fn build(
        options: Options,
        sink: Sink,
        pipeline: Arc<Pipeline>,
        counters: Arc<Counters>,
    ) -> Client {
        Client {
            inner: Arc::new(ClientInner {
                sink,
                pipeline,
                counters,
                sample_rate: options.sample_rate,
                attach_stacktrace: options.attach_stacktrace,
                send_default_pii: options.send_default_pii,
                panic_flush_timeout: options.panic_flush_timeout,
                shutdown_timeout: options.shutdown_timeout,
                closed: AtomicBool::new(false),
            }),
        }
    }

    pub(crate) fn inner_arc(&self) -> Arc<ClientInner> {
        self.inner.clone()
    }

    pub(crate) fn from_inner(inner: Arc<ClientInner>) -> Client {
        Client { inner }
    }

    pub(crate) fn inner_ptr(&self) -> *const ClientInner {
        Arc::as_ptr(&self.inner)
    }

    /// The client that captures go to on this thread or task, if any.
    pub fn current() -> Option<Client> {
        crate::hub::current_client()
    }

    /// Runs `future` in a fork of the current scope, reporting to this client instead of the
    /// global one (for services that run several clients, or tests that must not share one).
    ///
    /// ```
    /// # async fn demo(client: errorwatch_sdk::Client) {
    /// client.bind(async {
    ///     errorwatch_sdk::capture_message("goes to `client`", errorwatch_sdk::Level::Info);
    /// })
    /// .await;
    /// # }
    /// ```
    pub fn bind<F: std::future::Future>(&self, future: F) -> crate::Scoped<F> {
        crate::hub::bind_future(future, self.binding())
    }

    /// Runs `f` in a fork of the current scope, reporting to this client.
    ///
    /// ```
    /// let client = errorwatch_sdk::Client::new(errorwatch_sdk::Options::default()).unwrap();
    /// let answer = client.run(|| 42);
    /// assert_eq!(answer, 42);
    /// ```
    pub fn run<R>(&self, f: impl FnOnce() -> R) -> R {
        crate::hub::run_bound(self.binding(), f)
    }

    pub(crate) fn binding(&self) -> crate::hub::Binding {
        crate::hub::Binding {
            scope: crate::hub::current_scope(),
            client: Some(self.clone()),
        }
    }

    /// Whether the integrations may attach personal data (client IP, request bodies): the
    /// client's [`Options::send_default_pii`].
    pub fn sends_default_pii(&self) -> bool {
        self.inner.send_default_pii
    }

    /// Whether captures do anything.
    pub fn is_enabled(&self) -> bool {
        !matches!(self.inner.sink, Sink::Disabled) && !self.inner.closed.load(Ordering::Relaxed)
    }

    /// The counters: what was captured, sent, dropped (and why), failed or lost.
    pub fn stats(&self) -> Stats {
        self.inner.counters.snapshot()
    }

    /// Captures `event` with `scope`. Returns its id if it was queued.
    pub fn capture_event(&self, event: Event, scope: &Scope) -> Option<EventId> {
        self.capture(|pool| Handoff::event(pool, event, None, scope.clone()))
    }

    /// Captures `event` with `scope` as having happened at `file:line` (an integration's view
    /// of the user's line, a log macro's place say): the event's culprit is that line, and its
    /// stack trace (when attached) starts at the frame of that line.
    pub fn capture_event_at(
        &self,
        mut event: Event,
        scope: &Scope,
        file: &str,
        line: u32,
    ) -> Option<EventId> {
        self.capture(|pool| {
            event.file.get_or_insert_with(|| file.to_owned());
            event.line.get_or_insert(line);
            let stack = self.inner.attach_stacktrace.then(|| {
                RawStack::capture(Anchor {
                    file: std::borrow::Cow::Owned(file.to_owned()),
                    line,
                })
            });
            Handoff::event(pool, event, stack, scope.clone())
        })
    }

    /// Captures the event `write` describes, at `place` (a file and line) when known, with
    /// `scope`: the event is built on the SDK's worker, not here. The stack trace (when
    /// attached) starts at the frame of that place.
    pub(crate) fn capture_draft(
        &self,
        level: Level,
        place: Option<(&'static str, u32)>,
        scope: &Scope,
        write: impl FnOnce(&mut Draft<'_>),
    ) -> Option<EventId> {
        let stack = self.inner.attach_stacktrace;
        self.capture(|pool| Handoff::draft(pool, level, place, stack, scope.clone(), write))
    }

    /// Captures a message at `level`, with the current scope.
    pub fn capture_message(&self, message: &str, level: Level) -> Option<EventId> {
        self.capture(|pool| Handoff::message(pool, message, level, crate::hub::current_scope()))
    }

    /// Captures an error and its `source()` chain, with the current scope. The event's
    /// culprit is the line that called this (its file as rustc names it), and its stack starts
    /// there, in release builds as in debug builds.
    #[track_caller]
    pub fn capture_error<E: Error + ?Sized>(&self, error: &E) -> Option<EventId> {
        let at = std::panic::Location::caller();
        self.capture(|pool| {
            let stack = self.inner.attach_stacktrace;
            Handoff::error(pool, error, at, stack, crate::hub::current_scope())
        })
    }

    /// Captures an [`anyhow::Error`] with the current scope: typed by its root cause (not
    /// `Error`), valued by its message with the context added to it, with the whole chain, and
    /// with anyhow's own backtrace (in `extra`) when it captured one. The culprit is the line
    /// that called this, as for [`Client::capture_error`].
    ///
    /// ```
    /// let error = anyhow::Context::context(
    ///     "12a".parse::<u32>(),
    ///     "reading the order count",
    /// )
    /// .unwrap_err();
    /// let event = errorwatch_sdk::event_from_anyhow(&error);
    /// let exception = event.exception.unwrap();
    /// assert_eq!(exception.ty, "ParseIntError");
    /// assert_eq!(exception.value, "reading the order count");
    /// ```
    #[cfg(feature = "anyhow")]
    #[track_caller]
    pub fn capture_anyhow(&self, error: &anyhow::Error) -> Option<EventId> {
        let at = Anchor::at(std::panic::Location::caller());
        self.capture(|pool| self.built_error(pool, event_from_anyhow(error), at))
    }

    /// Captures an [`eyre::Report`] with the current scope: typed by its root cause, valued by
    /// its message with the context added to it, with the whole chain. The culprit is the line
    /// that called this, as for [`Client::capture_error`].
    ///
    /// ```
    /// use eyre::WrapErr;
    /// let report = "12a".parse::<u32>().wrap_err("reading the order count").unwrap_err();
    /// let event = errorwatch_sdk::event_from_eyre(&report);
    /// let exception = event.exception.unwrap();
    /// assert_eq!(exception.ty, "ParseIntError");
    /// assert_eq!(exception.value, "reading the order count");
    /// ```
    #[cfg(feature = "eyre")]
    #[track_caller]
    pub fn capture_eyre(&self, report: &eyre::Report) -> Option<EventId> {
        let at = Anchor::at(std::panic::Location::caller());
        self.capture(|pool| self.built_error(pool, event_from_eyre(report), at))
    }

    /// The handoff of an error's event built here, anchored at `anchor`.
    #[cfg(any(feature = "anyhow", feature = "eyre"))]
    fn built_error(&self, pool: &Pool, mut event: Event, anchor: Anchor) -> Handoff {
        anchor.place(&mut event);
        let stack = self
            .inner
            .attach_stacktrace
            .then(|| RawStack::capture(anchor));
        Handoff::event(pool, event, stack, crate::hub::current_scope())
    }

    /// Captures what `make` writes, unless the client is off, the thread is the SDK's own, the
    /// event is sampled out or the queue is full; `make` runs only when the capture goes ahead.
    pub(crate) fn capture(&self, make: impl FnOnce(&Pool) -> Handoff) -> Option<EventId> {
        let inner = &*self.inner;
        if !self.is_enabled() || crate::hub::is_suppressed() {
            return None;
        }
        inner.counters.captured();
        if inner.sample_rate < 1.0 && fastrand::f64() >= inner.sample_rate {
            inner.counters.record(Outcome::Sampled);
            return None;
        }
        let id = match &inner.sink {
            Sink::Disabled => return None,
            Sink::Queue(queue) => {
                let place = match queue.reserve() {
                    Ok(place) => place,
                    Err(NoRoom::Full) => {
                        inner.counters.record(Outcome::QueueFull);
                        return None;
                    }
                    Err(NoRoom::Closed) => {
                        inner.counters.lost(1);
                        return None;
                    }
                };
                let handoff = make(&inner.pipeline.pool);
                let id = handoff.id();
                place.send(handoff);
                id
            }
            Sink::Memory(events) => {
                let pipeline = &inner.pipeline;
                let handoff = make(&pipeline.pool);
                let id = handoff.id();
                match pipeline
                    .unpack(handoff)
                    .and_then(|job| pipeline.process(job))
                {
                    Ok(event) => {
                        events.lock().unwrap_or_else(|e| e.into_inner()).push(event);
                        inner.counters.record(Outcome::Sent);
                    }
                    Err(discarded) => {
                        inner.counters.record(discarded.outcome());
                        return None;
                    }
                }
                id
            }
        };
        Some(id)
    }

    /// Waits until every event captured before the call is delivered or given up on, for at
    /// most `timeout`. Returns whether everything was handled in time. Never waits longer.
    pub fn flush(&self, timeout: Duration) -> bool {
        match &self.inner.sink {
            Sink::Queue(queue) => queue.flush(timeout),
            Sink::Disabled | Sink::Memory(_) => true,
        }
    }

    /// Stops the client: later captures are ignored, queued events get until `timeout` to be
    /// delivered, and whatever is left then is counted as lost. Returns whether everything was
    /// delivered in time.
    pub fn close(&self, timeout: Duration) -> bool {
        if self.inner.closed.swap(true, Ordering::SeqCst) {
            return true;
        }
        match &self.inner.sink {
            Sink::Queue(queue) => queue.close(timeout),
            Sink::Disabled | Sink::Memory(_) => true,
        }
    }
}

/// Keeps the client [`init`](crate::init) installed; dropping it flushes (for at most the
/// shutdown timeout) and uninstalls the client.
///
/// Keep it alive for the whole of `main`:
///
/// ```
/// let _guard = errorwatch_sdk::init(errorwatch_sdk::Options::default());
/// // ... the service runs ...
/// // dropped at the end of main: waits at most `shutdown_timeout` (2 s by default)
/// ```
#[must_use = "the client stops when the guard is dropped: bind it with `let _guard = ...`"]
#[derive(Debug)]
pub struct ClientGuard {
    client: Client,
}

impl Deref for ClientGuard {
    type Target = Client;

    fn deref(&self) -> &Client {
        &self.client
    }
}

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.client.close(self.client.inner.shutdown_timeout);
        crate::hub::unbind_global_client(&self.client);
    }
}

/// Starts the global client; every capture function reports through it.
///
/// With unconfigured options (no URL or key, or `enabled(false)`) this gives a guard whose
/// client reports nothing. With invalid options it writes one line naming the problem to
/// stderr (never the key) and does the same; use [`try_init`] to handle the error yourself.
///
/// ```no_run
/// let _guard = errorwatch_sdk::init(errorwatch_sdk::Options::from_env().unwrap_or_default());
/// // ... the service runs; keep `_guard` alive until the end of `main` ...
/// ```
pub fn init(options: Options) -> ClientGuard {
    match try_init(options) {
        Ok(guard) => guard,
        Err(error) => {
            eprintln!("[errorwatch] {error}; error reporting is disabled");
            ClientGuard {
                client: Client::disabled(),
            }
        }
    }
}

/// Like [`init`], but returns invalid options as an error.
///
/// # Errors
///
/// As [`Client::new`]: when an option is invalid.
///
/// ```
/// let result = errorwatch_sdk::try_init(errorwatch_sdk::Options::new("not a url", "ew_live_x"));
/// assert!(result.is_err());
/// ```
pub fn try_init(options: Options) -> Result<ClientGuard, OptionsError> {
    let capture_panics = options.capture_panics;
    let client = Client::new(options)?;
    if client.is_enabled() && capture_panics {
        #[cfg(feature = "panic")]
        crate::panic::install_hook();
    }
    crate::hub::bind_global_client(&client);
    Ok(ClientGuard { client })
}

/// A new event for `error`: its type, its message, and its `source()` chain (in
/// `extra["error.sources"]`). Integrations use it for errors they only see as `dyn Error`.
///
/// ```
/// let error = "x".parse::<u8>().unwrap_err();
/// let event = errorwatch_sdk::event_from_error(&error);
/// assert_eq!(event.exception.unwrap().ty, "ParseIntError");
/// ```
pub fn event_from_error<E: Error + ?Sized>(error: &E) -> Event {
    ErrorChain::event_for(error)
}

/// The event [`Client::capture_anyhow`] sends for `error`: typed by the root cause, valued by
/// the outermost message, with the chain below it and anyhow's backtrace when captured.
///
/// ```
/// let error = anyhow::anyhow!("the cache is cold");
/// let event = errorwatch_sdk::event_from_anyhow(&error);
/// assert_eq!(event.exception.unwrap().value, "the cache is cold");
/// ```
#[cfg(feature = "anyhow")]
pub fn event_from_anyhow(error: &anyhow::Error) -> Event {
    let mut event = event_from_error::<dyn Error + Send + Sync>(error.as_ref());
    type_by_root_cause(&mut event, error.root_cause());
    let backtrace = error.backtrace();
    if backtrace.status() == std::backtrace::BacktraceStatus::Captured {
        event.extra.insert(
            "anyhow.backtrace".into(),
            errorwatch_protocol::Value::from(backtrace.to_string()),
        );
    }
    event
}

/// The event [`Client::capture_eyre`] sends for `report`: typed by the root cause, valued by
/// the outermost message, with the chain below it.
///
/// ```
/// let report = eyre::eyre!("the cache is cold");
/// let event = errorwatch_sdk::event_from_eyre(&report);
/// assert_eq!(event.exception.unwrap().value, "the cache is cold");
/// ```
#[cfg(feature = "eyre")]
pub fn event_from_eyre(report: &eyre::Report) -> Event {
    let mut event = event_from_error::<dyn Error + Send + Sync>(report.as_ref());
    type_by_root_cause(&mut event, report.root_cause());
    event
}

/// Types the event's exception by `root`, the chain's innermost error: what an error
/// library's wrapper would otherwise hide behind its own type.
#[cfg(any(feature = "anyhow", feature = "eyre"))]
fn type_by_root_cause(event: &mut Event, root: &(dyn Error + 'static)) {
    if let Some(exception) = event.exception.as_mut() {
        // A message made with `anyhow!` or `eyre!` has no type of its own: its Debug text is
        // the message, which is no type name.
        let ty = crate::error_chain::type_name_from_debug(root);
        if !ty.is_empty() && !root.to_string().starts_with(&ty) {
            exception.ty = ty;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_source_chain_is_kept() {
        #[derive(Debug)]
        struct Outer(std::num::ParseIntError);
        impl std::fmt::Display for Outer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("could not read the port")
            }
        }
        impl Error for Outer {
            fn source(&self) -> Option<&(dyn Error + 'static)> {
                Some(&self.0)
            }
        }
        let inner = "x".parse::<u16>().unwrap_err();
        let event = event_from_error(&Outer(inner));
        let exception = event.exception.expect("exception");
        assert_eq!(exception.ty, "Outer");
        assert_eq!(exception.value, "could not read the port");
        let sources = event.extra["error.sources"].as_array().expect("sources");
        assert_eq!(sources[0]["type"], "ParseIntError");
        assert_eq!(sources[0]["value"], "invalid digit found in string");
    }
}
