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

/// The most rounds a client is given to warm.
const MAX_ROUNDS: usize = 16;

/// Runs `round` (then waits for its events to be sent) until a round allocates nothing on
/// this thread, for at most [`MAX_ROUNDS`], and returns what each round allocated. The first
/// rounds allocate: they make the boxes and the queue's blocks, as many as the worker trailed
/// the caller by, which depends on how busy the machine is; once there are enough, a round
/// allocates nothing.
fn allocations_per_round(client: &Client, round: impl Fn()) -> Vec<u64> {
    let mut allocated = Vec::new();
    while allocated.len() < MAX_ROUNDS && allocated.last() != Some(&0) {
        let before = allocations();
        round();
        allocated.push(allocations() - before);
        assert!(client.flush(Duration::from_secs(30)), "a round is sent");
    }
    allocated
}

#[test]
fn a_warm_message_or_error_capture_allocates_nothing_on_the_callers_thread() {
    let Setup { client, .. } = &setup("allocations-capture-secret-01");
    let error = charge_failed();
    // A box keeps the room its captures needed: messages and errors with their stacks take
    // turns in the same boxes.
    let allocated = allocations_per_round(client, || {
        for _ in 0..32 {
            client.capture_message("payment provider timed out", Level::Error);
            client.capture_error(&error);
        }
    });
    assert_eq!(
        allocated.last(),
        Some(&0),
        "every round of 64 captures (messages, and errors with their stacks) allocated on the caller: {allocated:?}"
    );
    let sent = 64 * allocated.len() as u64;
    assert_eq!(client.stats().sent, sent, "{:?}", client.stats());
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
    let allocated = allocations_per_round(client, || log(32));
    assert_eq!(
        allocated.last(),
        Some(&0),
        "every round of 32 `error!`s allocated on the caller: {allocated:?}"
    );
    let sent = 32 * allocated.len() as u64;
    assert_eq!(client.stats().sent, sent, "{:?}", client.stats());

    // What the worker built is the whole event.
    let payload = setup.newest_payload();
    assert_eq!(payload["message"], "charge 42 failed");
    assert_eq!(payload["exception"]["type"], "ChargeFailed");
    assert_eq!(payload["tags"]["provider"], "acme");
    assert_eq!(payload["tags"]["region"], "eu");
    assert_eq!(payload["extra"]["order"], 42);
    assert_eq!(payload["contexts"]["spans"][0]["name"], "charge");
}

/// A full queue turns a capture away before anything is written: the caller allocates nothing
/// for it, not even a box (a box made and then freed on the caller is an allocation, and one the
/// worker frees later is a lock the caller may wait on).
#[test]
fn a_capture_the_full_queue_turns_away_allocates_nothing() {
    // A server that takes connections and never answers: the one request in flight stays
    // there, and the queue behind it stays full.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", silent.local_addr().expect("address"));
    let client = Client::new(
        Options::new(url, "ew_live_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789")
            .capture_panics(false)
            .queue_capacity(2)
            .max_in_flight(1)
            .request_timeout(Duration::from_secs(60)),
    )
    .expect("client");
    let error = charge_failed();
    // Fill the queue: the worker takes one capture into flight, two wait behind it, and
    // nothing moves until the request times out. A first capture turned away is not enough:
    // the queue is full before the worker has taken its first capture, and the place that frees
    // then would take one of the 200 below.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while client.stats().dropped_queue_full == 0 || client.stats().pending() < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "the queue never filled: {:?}",
            client.stats()
        );
        client.capture_message("filling the queue", Level::Error);
        std::thread::yield_now();
    }
    let turned_away = client.stats().dropped_queue_full;
    let before = allocations();
    for _ in 0..100 {
        client.capture_error(&error);
        client.capture_message("turned away", Level::Error);
    }
    let allocated = allocations() - before;
    assert_eq!(
        client.stats().dropped_queue_full - turned_away,
        200,
        "the queue stayed full: {:?}",
        client.stats()
    );
    assert_eq!(
        allocated, 0,
        "200 captures turned away by a full queue allocated on the caller"
    );
    drop(silent);
}
