//! Panics become `fatal` events with the payload, the location and the stack.

mod support;

use std::process::Command;
use std::time::Duration;

use errorwatch_sdk::{panic as ew_panic, testing, Level, Options};
use support::*;

const CHILD_URL: &str = "ERRORWATCH_TEST_CHILD_URL";

#[inline(never)]
fn explode(answer: u32) {
    panic!("boom {answer}");
}

/// In a child process: the hook must deliver the event before the process dies, with no
/// help from the guard (the panic happens before main could drop it).
#[test]
fn a_panic_is_delivered_before_the_process_exits() {
    if let Ok(url) = std::env::var(CHILD_URL) {
        let guard = errorwatch_sdk::init(options(&url).capture_panics(true));
        std::mem::forget(guard); // as if the process aborted: no flush on drop
        explode(42);
        return;
    }
    let server = Listener::healthy();
    let output = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "a_panic_is_delivered_before_the_process_exits",
            "--test-threads=1",
            "--nocapture",
        ])
        .env(CHILD_URL, &server.url)
        .output()
        .expect("child runs");
    assert!(!output.status.success(), "the child panicked");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("boom 42"),
        "the previous hook still printed the panic: {stderr}"
    );
    assert!(!stderr.contains(API_KEY), "the key is never printed");

    // The child has exited: whatever it delivered is here already, no waiting.
    let requests = server.requests();
    assert_eq!(
        requests.len(),
        1,
        "exactly one event, delivered before exit"
    );
    let event = requests[0].json();
    assert_eq!(event["level"], "fatal");
    assert_eq!(event["exception"]["type"], "panic");
    assert_eq!(event["exception"]["value"], "boom 42");
    assert!(
        event["file"]
            .as_str()
            .is_some_and(|f| f.ends_with("panics.rs")),
        "{event}"
    );
    assert!(event["line"].as_u64().is_some_and(|l| l > 0));
    assert_eq!(event["tags"]["mechanism"], "panic");
    let frames = event["frames"].as_array().expect("frames");
    let top = frames[0]["function"].as_str().unwrap_or_default();
    assert!(
        top.ends_with("explode"),
        "innermost frame first, std's panic machinery trimmed: {top}"
    );
    assert!(event["stack"]
        .as_str()
        .is_some_and(|s| s.contains("explode")));
}

#[test]
fn the_hook_reports_with_the_current_scope_and_chains_the_previous_hook() {
    ew_panic::install_hook();
    let events = testing::capture_events(|| {
        errorwatch_sdk::configure_scope(|scope| scope.set_tag("request", "r-9"));
        let caught = std::panic::catch_unwind(|| explode(7));
        assert!(caught.is_err());
    });
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].level, Level::Fatal);
    assert_eq!(events[0].tag("request"), Some("r-9"));
    assert_eq!(
        events[0].exception.as_ref().map(|e| e.value.as_str()),
        Some("boom 7")
    );
}

#[test]
fn integrations_learn_that_a_caught_panic_was_reported() {
    ew_panic::install_hook();
    let mut reported = None;
    let events = testing::capture_events(|| {
        let result = ew_panic::catching_panics(|| std::panic::catch_unwind(|| explode(1)));
        assert!(result.is_err());
        reported = ew_panic::take_last_panic_event();
    });
    assert_eq!(events.len(), 1);
    assert_eq!(
        reported.map(|id| id.to_string()),
        Some(events[0].event_id.to_string())
    );
    assert_eq!(ew_panic::take_last_panic_event(), None, "taken once");
}

#[test]
fn a_caught_panic_does_not_wait_for_a_black_holed_server() {
    ew_panic::install_hook();
    let server = Listener::start(|_| Reply::Silence);
    let client = client(options(&server.url).panic_flush_timeout(Duration::from_secs(3)));
    let (_, took) = timed(|| {
        client.run(|| ew_panic::catching_panics(|| std::panic::catch_unwind(|| explode(2))))
    });
    assert!(
        took < Duration::from_secs(1),
        "the hook did not wait: {took:?}"
    );
    assert_eq!(client.stats().captured, 1);
    client.close(Duration::from_millis(50));
}

#[test]
fn unwrap_on_none_points_at_the_caller_not_at_core() {
    ew_panic::install_hook();
    let events = testing::capture_events_with(Options::default(), || {
        let _ = std::panic::catch_unwind(|| {
            let nothing: Option<u8> = None;
            #[allow(clippy::unnecessary_literal_unwrap)]
            nothing.unwrap()
        });
    });
    let event = &events[0];
    assert!(
        event
            .file
            .as_deref()
            .is_some_and(|f| f.ends_with("panics.rs")),
        "{:?}",
        event.file
    );
    let top = event.frames[0].function.as_deref().unwrap_or_default();
    assert!(
        !top.starts_with("core::"),
        "core's unwrap machinery is trimmed: {top}"
    );
}
