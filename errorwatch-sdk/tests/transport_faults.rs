//! The transport against servers that are down, slow, black-holed, failing, throttling or
//! refusing: the caller never waits, the counters say what happened, and flush and shutdown
//! return by their deadline.

mod support;

use std::time::Duration;

use errorwatch_sdk::Level;
use support::*;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// Scheduling slack allowed past a deadline on a loaded 2-core CI machine. The benchmark
/// measures the real overrun; this only proves the call does not wait for the network.
const SLACK: Duration = Duration::from_millis(250);

/// 200 captures take microseconds each; anything waiting on a 5 s network timeout would take
/// seconds. The bound is loose on purpose: it separates "never waits" from "waits".
const CALLER_BOUND: Duration = Duration::from_millis(500);

fn capture_many(client: &errorwatch_sdk::Client, count: usize) -> Duration {
    let ((), elapsed) = timed(|| {
        for i in 0..count {
            client.capture_message(&format!("event {i}"), Level::Error);
        }
    });
    elapsed
}

#[test]
fn healthy_server_receives_every_event_with_the_key_header() {
    let server = Listener::healthy();
    let client = client(options(&server.url));
    capture_many(&client, 50);
    assert!(client.flush(Duration::from_secs(5)));
    let stats = client.stats();
    assert_eq!((stats.captured, stats.sent), (50, 50));
    assert_accounted(&stats);
    let requests = server.requests();
    assert_eq!(requests.len(), 50);
    assert_eq!(requests[0].path, "/api/v1/event");
    assert_eq!(requests[0].header("x-api-key"), Some(API_KEY));
    assert_eq!(requests[0].header("content-type"), Some("application/json"));
    let body = requests[0].json();
    assert_eq!(body["platform"], "rust");
    assert_eq!(body["sdk"]["name"], "errorwatch.rust");
    assert!(body["event_id"].as_str().is_some_and(|id| id.len() == 32));
    assert!(body["timestamp"]
        .as_str()
        .is_some_and(|ts| ts.ends_with('Z')));
}

#[test]
fn server_down_fails_fast_and_opens_the_breaker() {
    let client = client(options(&dead_url()));
    assert!(capture_many(&client, 200) < CALLER_BOUND);
    let (flushed, took) = timed(|| client.flush(Duration::from_secs(5)));
    assert!(
        flushed,
        "connection refused is quick: everything is accounted for"
    );
    assert!(took < Duration::from_secs(5) + SLACK);
    let stats = client.stats();
    assert_eq!(stats.sent, 0);
    assert_eq!(stats.failed, 200, "{stats:?}");
    assert!(
        stats.retried >= 2,
        "the first failures were retried: {stats:?}"
    );
    assert!(
        stats.retried < 200,
        "the circuit breaker stopped the retries long before 200 events: {stats:?}"
    );
    assert_accounted(&stats);
}

#[test]
fn black_holed_server_bounds_flush_and_shutdown() {
    let server = Listener::start(|_| Reply::Silence);
    let client = client(options(&server.url));
    assert!(capture_many(&client, 200) < CALLER_BOUND);
    assert!(wait_for(Duration::from_secs(5), || server.count() > 0));

    let deadline = Duration::from_millis(300);
    let (flushed, took) = timed(|| client.flush(deadline));
    assert!(!flushed, "nothing can be delivered to a black hole");
    assert!(
        took >= deadline && took < deadline + SLACK,
        "flush took {took:?}"
    );

    let (closed, took) = timed(|| client.close(deadline));
    assert!(!closed);
    assert!(took < deadline + SLACK, "close took {took:?}");
    let stats = client.stats();
    assert_eq!(stats.sent, 0);
    assert_eq!(stats.lost_at_shutdown, 200, "{stats:?}");
    assert_accounted(&stats);
    assert!(client
        .capture_message("after close", Level::Error)
        .is_none());
}

#[test]
fn slow_server_is_cut_off_by_the_request_timeout() {
    let server =
        Listener::start(|_| Reply::After(Duration::from_secs(30), Box::new(Reply::accepted())));
    let client = client(
        options(&server.url)
            .request_timeout(Duration::from_millis(200))
            .max_retries(1),
    );
    capture_many(&client, 3);
    let (flushed, took) = timed(|| client.flush(Duration::from_secs(5)));
    assert!(
        flushed,
        "each attempt times out after 200 ms, so everything ends quickly"
    );
    assert!(took < Duration::from_secs(3), "flush took {took:?}");
    let stats = client.stats();
    assert_eq!((stats.sent, stats.failed), (0, 3), "{stats:?}");
    assert_eq!(server.count(), 6, "each event: one attempt and one retry");
    assert_accounted(&stats);
}

#[test]
fn a_server_that_never_finishes_its_answer_is_cut_off() {
    let server = Listener::start(|_| Reply::HeadersOnly);
    let client = client(
        options(&server.url)
            .request_timeout(Duration::from_millis(200))
            .max_retries(1),
    );
    client.capture_message("half an answer", Level::Error);
    let (flushed, took) = timed(|| client.flush(Duration::from_secs(5)));
    assert!(
        flushed,
        "the body read is bounded by the request timeout too"
    );
    assert!(took < Duration::from_secs(2), "flush took {took:?}");
    let stats = client.stats();
    assert_eq!(
        (stats.sent, stats.failed, stats.retried),
        (0, 1, 1),
        "{stats:?}"
    );
    assert_eq!(server.count(), 2);
}

#[test]
fn connection_reset_is_retried_then_counted_as_failed() {
    let server = Listener::start(|_| Reply::Reset);
    let client = client(options(&server.url));
    client.capture_message("reset me", Level::Error);
    assert!(client.flush(Duration::from_secs(5)));
    let stats = client.stats();
    assert_eq!((stats.failed, stats.retried), (1, 2), "{stats:?}");
    assert_eq!(server.count(), 3, "one attempt and two retries");
    assert_accounted(&stats);
}

#[test]
fn reset_once_then_accepted_is_delivered() {
    let server = Listener::start(|n| {
        if n == 0 {
            Reply::Reset
        } else {
            Reply::accepted()
        }
    });
    let client = client(options(&server.url));
    client.capture_message("second time lucky", Level::Error);
    assert!(client.flush(Duration::from_secs(5)));
    let stats = client.stats();
    assert_eq!(
        (stats.sent, stats.retried, stats.failed),
        (1, 1, 0),
        "{stats:?}"
    );
}

async fn wiremock_with(status: u16, times: Option<u64>, retry_after: Option<&str>) -> MockServer {
    let server = MockServer::start().await;
    let mut response = ResponseTemplate::new(status).set_body_string(r#"{"error":"x"}"#);
    if let Some(value) = retry_after {
        response = response.insert_header("Retry-After", value);
    }
    let mock = Mock::given(method("POST"))
        .and(path("/api/v1/event"))
        .and(header("x-api-key", API_KEY))
        .respond_with(response);
    match times {
        Some(n) => mock.up_to_n_times(n).mount(&server).await,
        None => mock.mount(&server).await,
    }
    server
}

async fn flush(client: &errorwatch_sdk::Client, timeout: Duration) -> bool {
    let client = client.clone();
    tokio::task::spawn_blocking(move || client.flush(timeout))
        .await
        .expect("flush does not panic")
}

async fn requests(server: &MockServer) -> usize {
    server.received_requests().await.map_or(0, |r| r.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_error_then_accepted_is_retried_and_delivered() {
    let server = wiremock_with(500, Some(1), None).await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(202))
        .mount(&server)
        .await;
    let client = client(options(&server.uri()));
    client.capture_message("flaky", Level::Error);
    assert!(flush(&client, Duration::from_secs(5)).await);
    let stats = client.stats();
    assert_eq!(
        (stats.sent, stats.retried, stats.failed),
        (1, 1, 0),
        "{stats:?}"
    );
    assert_eq!(requests(&server).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_unavailable_is_retried_twice_then_failed() {
    let server = wiremock_with(503, None, None).await;
    let client = client(options(&server.uri()));
    client.capture_message("unavailable", Level::Error);
    assert!(flush(&client, Duration::from_secs(5)).await);
    let stats = client.stats();
    assert_eq!(
        (stats.sent, stats.retried, stats.failed),
        (0, 2, 1),
        "{stats:?}"
    );
    assert_eq!(requests(&server).await, 3);
    assert_accounted(&stats);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_requests_with_retry_after_pauses_then_resumes() {
    let server = wiremock_with(429, Some(1), Some("1")).await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(202))
        .mount(&server)
        .await;
    let client = client(options(&server.uri()));
    client.capture_message("throttled", Level::Error);
    assert!(flush(&client, Duration::from_secs(5)).await);
    for _ in 0..10 {
        client.capture_message("during the pause", Level::Error);
    }
    assert!(flush(&client, Duration::from_secs(5)).await);
    let stats = client.stats();
    assert_eq!(stats.dropped_rate_limited, 11, "{stats:?}");
    assert_eq!(stats.retried, 0, "a 429 is never retried");
    assert_eq!(requests(&server).await, 1, "nothing is sent while paused");

    // Retry-After: 1 means one second; wait for it to pass, by the clock, then send again.
    let paused_until = std::time::Instant::now() + Duration::from_millis(1100);
    assert!(wait_for(
        Duration::from_secs(3),
        || std::time::Instant::now() >= paused_until
    ));
    client.capture_message("after the pause", Level::Error);
    assert!(flush(&client, Duration::from_secs(5)).await);
    assert_eq!(client.stats().sent, 1);
    assert_accounted(&client.stats());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_requests_without_retry_after_backs_off_by_default() {
    let server = wiremock_with(429, None, None).await;
    let client = client(options(&server.uri()));
    client.capture_message("quota", Level::Error);
    assert!(flush(&client, Duration::from_secs(5)).await);
    for _ in 0..5 {
        client.capture_message("still over quota", Level::Error);
    }
    assert!(flush(&client, Duration::from_secs(5)).await);
    let stats = client.stats();
    assert_eq!(stats.dropped_rate_limited, 6, "{stats:?}");
    assert_eq!(requests(&server).await, 1, "the default 60 s pause holds");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payload_too_large_and_bad_request_are_dropped_without_retry() {
    for status in [413, 400, 401, 403] {
        let server = wiremock_with(status, None, None).await;
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let sink = lines.clone();
        let client = client(
            options(&server.uri())
                .diagnostics_hook(move |line| sink.lock().expect("lines").push(line.to_owned())),
        );
        client.capture_message("refused", Level::Error);
        assert!(flush(&client, Duration::from_secs(5)).await);
        let stats = client.stats();
        assert_eq!(
            (stats.dropped_rejected, stats.retried),
            (1, 0),
            "{status}: {stats:?}"
        );
        assert_eq!(requests(&server).await, 1, "{status} is not retried");
        let lines = lines.lock().expect("lines");
        assert!(
            lines.iter().any(|line| line.contains(&status.to_string())),
            "{lines:?}"
        );
        assert!(
            lines.iter().all(|line| !line.contains(API_KEY)),
            "diagnostics never show the key"
        );
    }
}

#[test]
fn a_full_queue_drops_and_counts_instead_of_waiting() {
    let server = Listener::start(|_| Reply::Silence);
    let client = client(options(&server.url).queue_capacity(10).max_in_flight(1));
    assert!(capture_many(&client, 1_000) < CALLER_BOUND);
    let stats = client.stats();
    assert_eq!(stats.captured, 1_000);
    assert!(stats.dropped_queue_full >= 1_000 - 11, "{stats:?}");
    client.close(Duration::from_millis(100));
    assert_accounted(&client.stats());
}

#[test]
fn the_circuit_breaker_recovers_after_its_pause() {
    let url = dead_url();
    let client = client(
        options(&url)
            .max_retries(0)
            .circuit_breaker(2, Duration::from_millis(300)),
    );
    capture_many(&client, 10);
    assert!(client.flush(Duration::from_secs(5)));
    assert_eq!(client.stats().failed, 10);

    // The server comes back on the same port; after the pause, a probe gets through.
    let port = url.rsplit(':').next().expect("port").to_owned();
    let listener = std::net::TcpListener::bind(format!("127.0.0.1:{port}"));
    let Ok(listener) = listener else {
        return; // another process took the port meanwhile: nothing to check here
    };
    let revived = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let (mut stream, _) = listener.accept().expect("accept");
        let mut buffer = [0u8; 65536];
        let mut seen = Vec::new();
        while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut buffer).expect("read");
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buffer[..n]);
        }
        let _ = stream.write_all(
            b"HTTP/1.1 202 Accepted\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}",
        );
    });
    let reopened = std::time::Instant::now() + Duration::from_millis(350);
    assert!(wait_for(
        Duration::from_secs(2),
        || std::time::Instant::now() >= reopened
    ));
    client.capture_message("probe", Level::Error);
    assert!(client.flush(Duration::from_secs(5)));
    assert_eq!(client.stats().sent, 1, "{:?}", client.stats());
    revived.join().expect("server thread");
}

/// The worker symbolises under the `backtrace` crate's global lock, for up to a second on a
/// large debug binary. A capture walks the stack on the caller's thread: it must not wait
/// for that lock. Another thread holds the lock here until the capture has returned.
#[test]
fn a_capture_with_a_stack_never_waits_for_the_symboliser_lock() {
    let server = Listener::healthy();
    let client = client(options(&server.url));
    let (held, holding) = std::sync::mpsc::channel::<()>();
    let (release, released) = std::sync::mpsc::channel::<()>();
    let holder = std::thread::spawn(move || {
        // `trace` holds the lock while its callback runs.
        backtrace::trace(|_| {
            let _ = held.send(());
            let _ = released.recv_timeout(Duration::from_secs(30));
            false
        });
    });
    holding
        .recv_timeout(Duration::from_secs(10))
        .expect("the holder has the lock");
    let (done, finished) = std::sync::mpsc::channel::<()>();
    let capturing = std::thread::spawn({
        let client = client.clone();
        move || {
            let error = "x".parse::<u8>().expect_err("not a number");
            client.capture_error(&error);
            let _ = done.send(());
        }
    });
    let returned = finished.recv_timeout(Duration::from_secs(10)).is_ok();
    let _ = release.send(());
    let _ = holder.join();
    let _ = capturing.join();
    assert!(returned, "capture_error waited for the symboliser's lock");
    assert!(client.flush(Duration::from_secs(10)));
    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let frames = requests[0].json()["frames"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        !frames.is_empty(),
        "the walk happened: the event has its frames"
    );
}
