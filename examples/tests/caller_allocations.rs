//! Once warm, a capture allocates nothing on the caller's thread: a message, an error (with its
//! stack) and a `tracing::error!` through the layer each write into a box the SDK's worker gives
//! back, and the event is built on the worker. (With glibc's allocator, an allocation the
//! worker later frees is what made the caller wait on the worker.)
//!
//! Counted by a global allocator that counts the allocations of the thread that asks, against
//! the real server in-process.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::error::Error;
use std::fmt;
use std::time::Duration;

use errorwatch_sdk::{Client, Level, Options};
use errorwatch_server::{Config, Server};
use tracing_subscriber::prelude::*;

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every call goes to the system allocator unchanged; the count is a thread-local cell
// that allocates nothing.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|count| count.set(count.get() + 1));
        // SAFETY: as the caller promised for `layout`.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc` above, with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|count| count.set(count.get() + 1));
        // SAFETY: as the caller promised for `ptr` and `layout`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

#[derive(Debug)]
struct ChargeFailed(std::num::ParseIntError);

impl fmt::Display for ChargeFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("charging the card failed")
    }
}

impl Error for ChargeFailed {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&self.0)
    }
}

fn charge_failed() -> ChargeFailed {
    ChargeFailed("12a".parse::<u32>().expect_err("not a number"))
}

/// The server on an ephemeral port, and a client with stack traces reporting to it.
struct Setup {
    runtime: tokio::runtime::Runtime,
    server: Server,
    client: Client,
}

fn setup(secret: &str) -> Setup {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime");
    let server = runtime
        .block_on(Server::start(Config::for_tests(secret)))
        .expect("server");
    let (_, key) = runtime
        .block_on(server.create_project("allocations"))
        .expect("project");
    let client = Client::new(
        Options::new(server.url(), key)
            .capture_panics(false)
            .attach_stacktrace(true),
    )
    .expect("client");
    Setup {
        runtime,
        server,
        client,
    }
}

impl Setup {
    /// The newest stored event's payload.
    fn newest_payload(&self) -> serde_json::Value {
        let query = errorwatch_server::store::GroupQuery {
            page: 1,
            limit: 10,
            ..Default::default()
        };
        let (groups, _) = self
            .runtime
            .block_on(self.server.store().groups(&query))
            .expect("groups");
        let events = self
            .runtime
            .block_on(
                self.server
                    .store()
                    .group_events(&groups[0].fingerprint, 1, 1),
            )
            .expect("events");
        events[0].payload.clone()
    }
}

#[test]
fn a_warm_message_or_error_capture_allocates_nothing_on_the_callers_thread() {
    let Setup { client, .. } = &setup("allocations-capture-secret-01");
    let error = charge_failed();
    let capture_both = |rounds: usize| {
        for _ in 0..rounds {
            client.capture_message("payment provider timed out", Level::Error);
            client.capture_error(&error);
        }
    };
    // Warm: the boxes have held an error with its stack (a box keeps the room its captures
    // needed), and the queue has its blocks.
    for _ in 0..64 {
        client.capture_error(&error);
    }
    assert!(client.flush(Duration::from_secs(30)), "the warm-up is sent");
    capture_both(32);
    assert!(client.flush(Duration::from_secs(30)), "the warm-up is sent");

    let before = allocations();
    capture_both(32);
    let allocated = allocations() - before;

    assert!(client.flush(Duration::from_secs(30)));
    assert_eq!(
        allocated, 0,
        "64 warm captures (messages, and errors with their stacks) allocated on the caller"
    );
    assert_eq!(client.stats().sent, 192, "{:?}", client.stats());
}

#[test]
fn a_warm_tracing_error_allocates_nothing_on_the_logging_thread() {
    let setup = setup("allocations-tracing-secret-01");
    let client = &setup.client;
    let _subscriber = tracing::subscriber::set_default(
        tracing_subscriber::registry().with(errorwatch_tracing::layer()),
    );
    let error = charge_failed();
    let span = tracing::error_span!("charge", order = 42, tag.region = "eu");
    let _entered = span.enter();
    let log = |rounds: usize| {
        client.run(|| {
            for attempt in 0..rounds {
                tracing::error!(
                    attempt,
                    tag.provider = "acme",
                    error = &error as &dyn Error,
                    "charge {} failed",
                    42
                );
            }
        })
    };
    // Warm: the boxes have held a draft with its stack, and the queue has its blocks.
    for _ in 0..2 {
        log(64);
        assert!(client.flush(Duration::from_secs(30)), "the warm-up is sent");
    }

    let before = allocations();
    log(32);
    let allocated = allocations() - before;

    assert!(client.flush(Duration::from_secs(30)));
    assert_eq!(allocated, 0, "32 warm `error!`s allocated on the caller");
    assert_eq!(client.stats().sent, 160, "{:?}", client.stats());

    // What the worker built is the whole event.
    let payload = setup.newest_payload();
    assert_eq!(payload["message"], "charge 42 failed");
    assert_eq!(payload["exception"]["type"], "ChargeFailed");
    assert_eq!(payload["tags"]["provider"], "acme");
    assert_eq!(payload["tags"]["region"], "eu");
    assert_eq!(payload["extra"]["order"], 42);
    assert_eq!(payload["contexts"]["spans"][0]["name"], "charge");
}
