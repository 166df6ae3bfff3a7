//! With the layer installed globally and mapping *everything* to events, the transport's own
//! failures never come back as events, and nothing the HTTP stack logs on the SDK's threads
//! even reaches the application's subscriber.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use errorwatch_tracing::EventFilter;
use tracing_subscriber::prelude::*;

/// Counts the events that reach the application's subscriber from the SDK's own threads.
struct CountTransportEvents(Arc<AtomicUsize>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for CountTransportEvents {
    fn on_event(&self, _: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if errorwatch_sdk::integration::is_suppressed() {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[test]
fn transport_failures_never_become_events() {
    let inside_transport = Arc::new(AtomicUsize::new(0));
    tracing_subscriber::registry()
        .with(CountTransportEvents(inside_transport.clone()))
        .with(errorwatch_tracing::layer().event_filter(|_| EventFilter::Event))
        .init();

    // A black hole: accepts connections and never answers.
    let hole = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", hole.local_addr().expect("addr"));
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in hole.incoming().take(16).flatten() {
            held.push(stream);
        }
        std::thread::sleep(Duration::from_secs(30));
    });

    let guard = errorwatch_sdk::init(
        errorwatch_sdk::Options::new(url, "ew_test_RECURSIONtest0123456789abcdefghij")
            .request_timeout(Duration::from_millis(200))
            .retry_base_delay(Duration::from_millis(10))
            .debug(true)
            .diagnostics_hook(|_| {}),
    );
    tracing::error!("the only event this test reports");
    // Every attempt times out against the black hole: the event ends as failed, after retries.
    let deadline = Instant::now() + Duration::from_secs(10);
    while guard.stats().failed == 0 {
        assert!(
            Instant::now() < deadline,
            "the event never failed: {:?}",
            guard.stats()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let stats = guard.stats();
    assert_eq!(
        stats.captured, 1,
        "nothing the transport logged became an event: {stats:?}"
    );
    assert_eq!(stats.retried, 2);
    // hyper logs a dozen lines per attempt there (errorwatch-sdk's network_hygiene test shows
    // them when the SDK's threads are not silenced): none reaches this subscriber.
    assert_eq!(
        inside_transport.load(Ordering::Relaxed),
        0,
        "the SDK's HTTP stack logged into the application's subscriber"
    );
    drop(guard);
}
