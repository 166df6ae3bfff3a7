//! The guard returned by `init`: capture through the free functions, then a drop that ends by
//! its deadline whatever the server does. One test per binary: `init` sets the global client.

mod support;

use std::time::Duration;

use errorwatch_sdk::{capture_error, capture_message, configure_scope, flush, Level};
use support::*;

#[test]
fn guard_drop_is_bounded_against_a_black_hole_and_delivers_to_a_healthy_server() {
    // Healthy: the free functions go through the global client, and drop delivers the rest.
    let server = Listener::healthy();
    let guard = errorwatch_sdk::init(
        options(&server.url)
            .environment("test")
            .release("svc@1.0.0"),
    );
    configure_scope(|scope| scope.set_tag("service", "billing"));
    capture_message("hello", Level::Warning);
    capture_error(&"x".parse::<i32>().unwrap_err());
    assert!(flush(Duration::from_secs(5)));
    let client = guard.clone();
    drop(guard);
    assert!(
        errorwatch_sdk::Client::current().is_none(),
        "drop uninstalls the client"
    );
    assert_eq!(client.stats().sent, 2);
    // The two are sent concurrently: find each by what it is, not by when it arrived.
    let events: Vec<_> = server.requests().iter().map(|r| r.json()).collect();
    let message = events
        .iter()
        .find(|e| e["message"] == "hello")
        .expect("the message arrived");
    let error = events
        .iter()
        .find(|e| e["exception"]["type"] == "ParseIntError")
        .expect("the error arrived");
    assert_eq!(message["level"], "warning");
    assert_eq!(message["env"], "test");
    assert_eq!(message["release"], "svc@1.0.0");
    assert_eq!(message["tags"]["service"], "billing");
    let file = error["file"].as_str().unwrap_or_default();
    assert!(
        file.ends_with("shutdown.rs"),
        "the culprit is the in-app frame that captured: {file}"
    );
    assert!(
        error["frames"][0]["in_app"].as_bool().is_some_and(|b| b),
        "{}",
        error["frames"][0]
    );

    // Black hole: drop waits for the shutdown timeout, no longer, and counts the loss.
    let hole = Listener::start(|_| Reply::Silence);
    let timeout = Duration::from_millis(400);
    let guard = errorwatch_sdk::init(options(&hole.url).shutdown_timeout(timeout));
    for i in 0..50 {
        capture_message(&format!("lost {i}"), Level::Error);
    }
    let client = guard.clone();
    let ((), took) = timed(|| drop(guard));
    assert!(
        took < timeout + Duration::from_millis(250),
        "drop took {took:?}"
    );
    let stats = client.stats();
    assert_eq!(stats.lost_at_shutdown, 50, "{stats:?}");
    assert_accounted(&stats);
}
