//! Panics become `fatal` events with the payload, the location and the stack.

// The hook is the `panic` feature (a default one).
#![cfg(feature = "panic")]

mod support;

use std::process::Command;
use std::time::Duration;

use errorwatch_sdk::{integration as ew_panic, testing, Level, Options};
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
        // A long flush: this test checks the frames, which symbolising must have time for.
        let guard = errorwatch_sdk::init(
            options(&url)
                .capture_panics(true)
                .panic_flush_timeout(Duration::from_secs(30)),
        );
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

const LOADED_CHILD_URL: &str = "ERRORWATCH_TEST_LOADED_CHILD_URL";

/// Two processes that keep both cores busy until dropped.
struct Load(Vec<std::process::Child>);

impl Load {
    fn both_cores() -> Load {
        Load(
            (0..2)
                .map(|_| {
                    Command::new("sh")
                        .args(["-c", "while :; do :; done"])
                        .spawn()
                        .expect("a busy process")
                })
                .collect(),
        )
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// 20 child processes of this (debug, ~100 MB) binary panic with the default panic flush of
/// 1 s while two other processes keep both cores busy. Symbolising the binary's debug info
/// alone can take longer than that: every panic must still arrive, with its culprit line.
#[test]
fn panics_are_delivered_within_the_default_flush_on_a_loaded_machine() {
    if let Ok(url) = std::env::var(LOADED_CHILD_URL) {
        let guard = errorwatch_sdk::init(options(&url).capture_panics(true));
        std::mem::forget(guard);
        explode(std::process::id());
        return;
    }
    let server = Listener::healthy();
    let _load = Load::both_cores();
    let mut pids = Vec::new();
    for _ in 0..20 {
        let child = Command::new(std::env::current_exe().expect("test binary"))
            .args([
                "--exact",
                "panics_are_delivered_within_the_default_flush_on_a_loaded_machine",
                "--test-threads=1",
            ])
            .env(LOADED_CHILD_URL, &server.url)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("child runs");
        pids.push(child.id());
        let output = child.wait_with_output().expect("child ends");
        assert!(!output.status.success(), "the child panicked");
    }
    // Every child has exited: what each delivered is here already.
    let values: Vec<String> = server
        .requests()
        .iter()
        .map(|request| {
            let event = request.json();
            assert_eq!(event["level"], "fatal");
            assert!(
                event["file"]
                    .as_str()
                    .is_some_and(|f| f.ends_with("panics.rs")),
                "the culprit line, symbolised or not: {event}"
            );
            event["exception"]["value"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    let lost: Vec<u32> = pids
        .iter()
        .copied()
        .filter(|pid| !values.contains(&format!("boom {pid}")))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of 20 panics lost (pids {lost:?})",
        lost.len()
    );
}

const STUCK_CHILD_URL: &str = "ERRORWATCH_TEST_STUCK_CHILD_URL";

/// However long symbolising takes (here it cannot finish at all: another thread holds the
/// symboliser's lock until the process ends), a panic goes out within the default flush,
/// with its culprit line, only without its frames.
#[test]
fn a_panic_goes_without_its_frames_rather_than_not_at_all() {
    if let Ok(url) = std::env::var(STUCK_CHILD_URL) {
        let guard = errorwatch_sdk::init(options(&url).capture_panics(true));
        std::mem::forget(guard);
        let (held, holding) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            backtrace::trace(|_| {
                let _ = held.send(());
                std::thread::sleep(Duration::from_secs(3600));
                false
            });
        });
        holding.recv().expect("the lock is held");
        explode(99);
        return;
    }
    let server = Listener::healthy();
    let started = std::time::Instant::now();
    let output = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "a_panic_goes_without_its_frames_rather_than_not_at_all",
            "--test-threads=1",
        ])
        .env(STUCK_CHILD_URL, &server.url)
        .output()
        .expect("child runs");
    assert!(!output.status.success(), "the child panicked");
    let requests = server.requests();
    assert_eq!(
        requests.len(),
        1,
        "the panic was lost (child ran {:?})",
        started.elapsed()
    );
    let event = requests[0].json();
    assert_eq!(event["exception"]["value"], "boom 99");
    assert!(event["file"]
        .as_str()
        .is_some_and(|f| f.ends_with("panics.rs")));
    assert!(event["line"].as_u64().is_some_and(|l| l > 0));
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
