//! One scenario in one fresh process: the SDK under test set up against the sink, the loop
//! run, the figures returned by name.
//!
//! Every scenario does the same thing with each SDK: the same sink, the same error values,
//! the same counts, the same call sites.

use std::error::Error;
use std::fmt;
use std::hint::black_box;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use crate::probe;
use crate::sink::Sink;

/// Calls measured per closed-loop scenario, after `WARM_UP` unmeasured ones.
const CALLS: usize = 20_000;
const WARM_UP: usize = 1_000;
/// The storm: repeated stack captures at this rate, for this long.
const STORM_PER_SEC: usize = 20_000;
const STORM_SECS: usize = 10;
/// The large memory scenario: captures, every other one with a stack.
const MIXED_CAPTURES: usize = 1_000_000;
/// How long a process idles after a burst before its memory is read again.
const IDLE: Duration = Duration::from_secs(12);
/// How long delivery is waited for at the end of a scenario.
const DELIVERY: Duration = Duration::from_secs(30);

/// Who is measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Sdk {
    Errorwatch,
    Sentry,
    /// What the machine does with no SDK at all, where a scenario has such a floor.
    Floor,
}

impl Sdk {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Sdk::Errorwatch => "errorwatch",
            Sdk::Sentry => "sentry",
            Sdk::Floor => "floor",
        }
    }

    pub(crate) fn parse(name: &str) -> Option<Sdk> {
        [Sdk::Errorwatch, Sdk::Sentry, Sdk::Floor]
            .into_iter()
            .find(|sdk| sdk.name() == name)
    }
}

/// A two-deep error chain: what a service typically captures.
#[derive(Debug)]
struct ChargeFailed {
    source: std::num::ParseIntError,
}

impl fmt::Display for ChargeFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("charging the card failed")
    }
}

impl Error for ChargeFailed {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&self.source)
    }
}

fn charge_failed() -> ChargeFailed {
    ChargeFailed {
        source: "12a".parse::<u32>().expect_err("not a number"),
    }
}

/// The SDK set up against the sink, kept alive for the scenario.
enum Guard {
    Errorwatch(errorwatch_sdk::ClientGuard),
    Sentry(sentry::ClientInitGuard),
    None,
}

fn init(sdk: Sdk, sink: &Sink, stacks: bool) -> Guard {
    match sdk {
        Sdk::Errorwatch => Guard::Errorwatch(errorwatch_sdk::init(
            errorwatch_sdk::Options::new(&sink.url, "ew_live_0123456789abcdef0123456789abcdef")
                .release("bench@1.0.0")
                .attach_stacktrace(stacks)
                .capture_panics(false),
        )),
        Sdk::Sentry => {
            let _ = rustls::crypto::ring::default_provider().install_default();
            let dsn = sink.url.replacen("http://", "http://public@", 1) + "/1";
            let mut options = sentry::ClientOptions::default();
            options.release = Some("bench@1.0.0".into());
            options.attach_stacktrace = stacks;
            Guard::Sentry(sentry::init((dsn, options)))
        }
        Sdk::Floor => Guard::None,
    }
}

impl Guard {
    /// Waits until every queued event is sent, or `DELIVERY` passes.
    fn flush(&self) {
        match self {
            Guard::Errorwatch(guard) => drop(guard.flush(DELIVERY)),
            Guard::Sentry(guard) => drop(guard.flush(Some(DELIVERY))),
            Guard::None => {}
        }
    }
}

fn capture_message(sdk: Sdk, i: usize) {
    match sdk {
        Sdk::Errorwatch => drop(errorwatch_sdk::capture_message(
            "payment provider timed out",
            errorwatch_sdk::Level::Error,
        )),
        Sdk::Sentry => drop(sentry::capture_message(
            "payment provider timed out",
            sentry::Level::Error,
        )),
        Sdk::Floor => drop(black_box(i)),
    }
}

// Never inlined: stacks have the same frames whoever captures them.
#[inline(never)]
fn capture_error(sdk: Sdk, error: &ChargeFailed) {
    match sdk {
        Sdk::Errorwatch => drop(errorwatch_sdk::capture_error(error)),
        Sdk::Sentry => drop(sentry::capture_error(error)),
        Sdk::Floor => drop(black_box(error)),
    }
}

/// A capture with a stack trace (both SDKs are set up to attach one). The floor walks the
/// same stack with the standard library and resolves nothing: the loop's own cost, and how
/// often the machine takes the core from a thread of this process that no SDK competes with.
#[inline(never)]
fn capture_error_with_stack(sdk: Sdk, error: &ChargeFailed) {
    match sdk {
        Sdk::Floor => drop(black_box(std::backtrace::Backtrace::force_capture())),
        _ => capture_error(sdk, error),
    }
}

/// Runs `scenario` for `sdk` and returns its figures.
pub(crate) fn run(scenario: &str, sdk: Sdk) -> Result<Map<String, Value>, String> {
    let figures = match scenario {
        "init" => init_time(sdk),
        "message" => closed_loop(sdk, false, |i| capture_message(sdk, i)),
        "error" => {
            let error = charge_failed();
            closed_loop(sdk, false, |_| capture_error(sdk, &error))
        }
        "error+stack" => error_with_stack(sdk),
        "storm" => storm(sdk),
        "breadcrumb" => traced(sdk, |i| tracing::info!(attempt = i, "retrying the charge")),
        "tracing error" => traced(sdk, |i| tracing::error!(attempt = i, "the charge failed")),
        "memory, messages" => memory(sdk, CALLS, false),
        "memory, mixed" => memory(sdk, MIXED_CAPTURES, true),
        "axum layer" => axum_layer(sdk),
        other => return Err(format!("no scenario named {other:?}")),
    };
    match figures {
        Value::Object(map) => Ok(map),
        _ => Err("a scenario returns an object".into()),
    }
}

fn init_time(sdk: Sdk) -> Value {
    let sink = Sink::start();
    let started = Instant::now();
    let guard = init(sdk, &sink, true);
    let elapsed = started.elapsed();
    drop(black_box(guard));
    json!({ "init ms": elapsed.as_secs_f64() * 1e3 })
}

/// `CALLS` calls in a tight loop on this thread: the mean cost, and how often the caller had
/// to wait; then how many events reached the sink.
fn closed_loop(sdk: Sdk, stacks: bool, mut call: impl FnMut(usize)) -> Value {
    let sink = Sink::start();
    let guard = init(sdk, &sink, stacks);
    for i in 0..WARM_UP {
        call(i);
    }
    guard.flush();
    let before = sink.events();
    let switches = probe::voluntary_switches();
    let started = Instant::now();
    for i in 0..CALLS {
        call(i);
    }
    let elapsed = started.elapsed();
    let switches = probe::voluntary_switches() - switches;
    guard.flush();
    let delivered = sink.wait_for(before + CALLS as u64, Duration::from_millis(200)) - before;
    json!({
        "mean ns": elapsed.as_nanos() as f64 / CALLS as f64,
        "caller waits": switches,
        "delivered %": 100.0 * delivered as f64 / CALLS as f64,
    })
}

/// Each call timed alone: stacks make the tail, not the mean, the question.
fn error_with_stack(sdk: Sdk) -> Value {
    let sink = Sink::start();
    let guard = init(sdk, &sink, true);
    let error = charge_failed();
    for _ in 0..WARM_UP {
        capture_error(sdk, &error);
    }
    guard.flush();
    let mut times = Vec::with_capacity(CALLS);
    let switches = probe::voluntary_switches();
    for _ in 0..CALLS {
        let started = Instant::now();
        capture_error_with_stack(sdk, &error);
        times.push(started.elapsed().as_nanos() as f64);
    }
    let switches = probe::voluntary_switches() - switches;
    guard.flush();
    let mean = times.iter().sum::<f64>() / times.len() as f64;
    times.sort_by(f64::total_cmp);
    let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize];
    json!({
        "mean ns": mean,
        "p50 ns": at(0.5),
        "p99.9 ns": at(0.999),
        "max ns": at(1.0),
        "calls above 1 ms": times.iter().filter(|&&ns| ns > 1e6).count(),
        "caller waits": switches,
    })
}

/// Repeated stack captures at `STORM_PER_SEC` for `STORM_SECS`, the default queue: how many
/// arrive.
fn storm(sdk: Sdk) -> Value {
    let sink = Sink::start();
    let guard = init(sdk, &sink, true);
    let error = charge_failed();
    let per_tick = STORM_PER_SEC / 1_000;
    let started = Instant::now();
    for tick in 0..STORM_SECS * 1_000 {
        for _ in 0..per_tick {
            capture_error(sdk, &error);
        }
        let next = started + Duration::from_millis(tick as u64 + 1);
        let left = next.saturating_duration_since(Instant::now());
        if left > Duration::from_micros(200) {
            std::thread::sleep(left - Duration::from_micros(150));
        }
        while Instant::now() < next {
            std::hint::spin_loop();
        }
    }
    let sent = STORM_PER_SEC * STORM_SECS;
    let late = started.elapsed().as_secs_f64() - STORM_SECS as f64;
    guard.flush();
    let delivered = sink.wait_for(sent as u64, Duration::from_millis(200));
    json!({
        "delivered %": 100.0 * delivered as f64 / sent as f64,
        "loop late s": late,
    })
}

/// A layer that does nothing: tracing's own cost.
struct Noop;
impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Noop {}

/// `call` logs through a registry with the SDK's tracing layer (or a no-op layer for the
/// floor), in a closed loop.
fn traced(sdk: Sdk, call: impl Fn(usize)) -> Value {
    use sentry::integrations::tracing::{BreadcrumbLayer, ErrorLayer};
    use tracing_subscriber::filter::{filter_fn, LevelFilter};
    use tracing_subscriber::layer::{Layer, SubscriberExt};
    let registry = tracing_subscriber::registry();
    let _subscriber = match sdk {
        Sdk::Errorwatch => {
            tracing::subscriber::set_default(registry.with(errorwatch_tracing::layer()))
        }
        // sentry-tracing's documented set-up: INFO and WARN as breadcrumbs, ERROR as events.
        Sdk::Sentry => tracing::subscriber::set_default(
            registry
                .with(BreadcrumbLayer::new().with_filter(filter_fn(|metadata| {
                    matches!(
                        *metadata.level(),
                        tracing::Level::WARN | tracing::Level::INFO
                    )
                })))
                .with(ErrorLayer::new().with_filter(LevelFilter::ERROR)),
        ),
        Sdk::Floor => tracing::subscriber::set_default(registry.with(Noop)),
    };
    closed_loop(sdk, false, call)
}

/// Peak memory across `captures` (every other one with a stack when `mixed`), then the
/// anonymous memory left after the process idles.
fn memory(sdk: Sdk, captures: usize, mixed: bool) -> Value {
    let before = probe::anon_rss_mib();
    let sink = Sink::start();
    let guard = init(sdk, &sink, mixed);
    let error = charge_failed();
    for i in 0..captures {
        if mixed && i % 2 == 1 {
            capture_error(sdk, &error);
        } else {
            capture_message(sdk, i);
        }
    }
    guard.flush();
    let delivered = sink.events();
    let peak = probe::peak_rss_mib();
    std::thread::sleep(IDLE);
    let after = probe::anon_rss_mib();
    json!({
        "peak RSS MiB": peak,
        "anon after idle - before MiB": after - before,
        "delivered": delivered,
    })
}

/// One trivial axum route called in process (`oneshot`): only the middleware differs.
fn axum_layer(sdk: Sdk) -> Value {
    use axum::routing::get;
    use tower::ServiceExt;

    let sink = Sink::start();
    let guard = init(sdk, &sink, true);
    let router = axum::Router::new().route("/users/{id}", get(|| async { "ok" }));
    let router = match sdk {
        Sdk::Errorwatch => router.layer(errorwatch_axum::ErrorWatchLayer::new()),
        Sdk::Sentry => router
            .layer(sentry::integrations::tower::SentryHttpLayer::new())
            .layer(sentry::integrations::tower::NewSentryLayer::new_from_top()),
        Sdk::Floor => router,
    };
    let request = || {
        axum::http::Request::builder()
            .uri("/users/42?page=2")
            .header("host", "bench.local")
            .header("user-agent", "bench/1.0")
            .header("accept", "*/*")
            .body(axum::body::Body::empty())
            .unwrap_or_default()
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let elapsed = runtime.block_on(async {
        for _ in 0..WARM_UP {
            let _ = router.clone().oneshot(request()).await;
        }
        let started = Instant::now();
        for _ in 0..CALLS {
            let response = router.clone().oneshot(request()).await;
            assert!(response.is_ok_and(|r| r.status().is_success()));
        }
        started.elapsed()
    });
    drop(guard);
    json!({ "mean ns": elapsed.as_nanos() as f64 / CALLS as f64 })
}
