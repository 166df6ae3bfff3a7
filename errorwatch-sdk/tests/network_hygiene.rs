//! What the SDK does on the network besides delivering: the key never follows a redirect to
//! another origin, a refused key is said once, and the SDK's own HTTP stack never logs into
//! the application's subscriber.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use errorwatch_sdk::Level;
use support::*;
use tracing_core::span::{Attributes, Id, Record};
use tracing_core::{Dispatch, Event, Interest, Metadata, Subscriber};

#[test]
fn the_key_never_follows_a_redirect_to_another_origin() {
    let elsewhere = Listener::healthy();
    let target = format!("{}/api/v1/event", elsewhere.url);
    let redirecting = Listener::start(move |_| {
        Reply::Status(307, vec![("location", target.clone())], String::new())
    });
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = lines.clone();
    let client = client(
        options(&redirecting.url)
            .diagnostics_hook(move |line| sink.lock().expect("lines").push(line.to_owned()))
            .debug(false),
    );
    for n in 0..20 {
        client.capture_message(&format!("redirected {n}"), Level::Error);
    }
    assert!(client.flush(Duration::from_secs(10)));
    assert_eq!(redirecting.count(), 20);
    assert_eq!(
        elsewhere.count(),
        0,
        "a request, and its key, reached another origin"
    );
    let stats = client.stats();
    assert_eq!(stats.dropped_rejected, 20, "{stats:?}");
    assert_accounted(&stats);
    let lines = lines.lock().expect("lines");
    assert_eq!(lines.len(), 1, "said once, even with debug off: {lines:?}");
    assert!(
        lines[0].contains("redirect") && !lines[0].contains(API_KEY),
        "{lines:?}"
    );
}

#[test]
fn a_redirect_within_the_server_is_followed_with_the_key() {
    let moved = Listener::start(|n| {
        if n % 2 == 0 {
            Reply::Status(307, vec![("location", "/moved".into())], String::new())
        } else {
            Reply::accepted()
        }
    });
    let client = client(options(&moved.url));
    client.capture_message("moved", Level::Error);
    assert!(client.flush(Duration::from_secs(10)));
    assert_eq!(client.stats().sent, 1, "{:?}", client.stats());
    let requests = moved.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[1].path, "/moved");
    assert_eq!(requests[1].header("x-api-key"), Some(API_KEY));
    assert_eq!(requests[1].json()["message"], "moved");
}

#[test]
fn a_refused_key_is_said_once_without_the_key_and_counted() {
    for status in [401, 403] {
        let refusing = Listener::start(move |_| {
            Reply::Status(status, vec![], r#"{"error":"Invalid API key"}"#.into())
        });
        let lines = Arc::new(Mutex::new(Vec::<String>::new()));
        let sink = lines.clone();
        let client = client(
            options(&refusing.url)
                .diagnostics_hook(move |line| sink.lock().expect("lines").push(line.to_owned()))
                .debug(false),
        );
        for n in 0..20 {
            client.capture_message(&format!("refused {n}"), Level::Error);
        }
        assert!(client.flush(Duration::from_secs(10)));
        let stats = client.stats();
        assert_eq!(stats.dropped_rejected, 20, "{status}: {stats:?}");
        assert_eq!(refusing.count(), 20, "{status}: refusals are not retried");
        let lines = lines.lock().expect("lines");
        assert_eq!(lines.len(), 1, "{status}: said once: {lines:?}");
        assert!(
            lines[0].contains(&status.to_string())
                && lines[0].contains("API key")
                && !lines[0].contains(API_KEY),
            "{lines:?}"
        );
    }
}

/// Records the target of every event any thread emits, at every level.
#[derive(Default)]
struct Everything {
    targets: Mutex<Vec<String>>,
}

impl Subscriber for Everything {
    fn register_callsite(&self, _: &'static Metadata<'static>) -> Interest {
        Interest::always()
    }
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        self.targets
            .lock()
            .expect("targets")
            .push(event.metadata().target().to_owned());
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

#[test]
fn the_http_stack_never_logs_into_the_application_subscriber() {
    let everything = Arc::new(Everything::default());
    // The application's subscriber, for every thread of this test binary.
    let recorder = everything.clone();
    tracing_core::dispatcher::set_global_default(Dispatch::from(Forward(recorder)))
        .expect("the only global subscriber of this binary");
    let server = Listener::healthy();
    let client = client(options(&server.url));
    for n in 0..20 {
        client.capture_message(&format!("logged {n}"), Level::Error);
    }
    assert!(client.flush(Duration::from_secs(10)));
    assert_eq!(client.stats().sent, 20);
    let targets = everything.targets.lock().expect("targets").clone();
    let foreign: Vec<&String> = targets
        .iter()
        .filter(|t| {
            ["hyper", "reqwest", "h2", "rustls", "want", "mio"]
                .iter()
                .any(|stack| t.starts_with(stack))
        })
        .collect();
    assert!(
        foreign.is_empty(),
        "the SDK's HTTP stack logged: {foreign:?}"
    );
}

/// `Everything` behind an `Arc`, as a subscriber.
struct Forward(Arc<Everything>);

impl Subscriber for Forward {
    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        self.0.register_callsite(metadata)
    }
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        self.0.enabled(metadata)
    }
    fn new_span(&self, attributes: &Attributes<'_>) -> Id {
        self.0.new_span(attributes)
    }
    fn record(&self, span: &Id, values: &Record<'_>) {
        self.0.record(span, values)
    }
    fn record_follows_from(&self, span: &Id, follows: &Id) {
        self.0.record_follows_from(span, follows)
    }
    fn event(&self, event: &Event<'_>) {
        self.0.event(event)
    }
    fn enter(&self, span: &Id) {
        self.0.enter(span)
    }
    fn exit(&self, span: &Id) {
        self.0.exit(span)
    }
}
