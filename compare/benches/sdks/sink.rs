//! The one HTTP sink both SDKs send to: in the measured process, on loopback, on a thread of
//! its own. It accepts whatever it is sent and counts the events: one per errorwatch POST to
//! `/api/v1/event`, one per sentry envelope that carries an event item.
//!
//! The sink stands in for a server on another machine, so it runs at the lowest CPU priority:
//! it gets a core whenever one is free, but never takes one from the measured thread. At the
//! normal priority it took the caller's core for whole time slices whenever the two shared one,
//! and charged the server's work to the caller, the more so the more an SDK delivers.
//! `COMPARE_SINK_PRIORITY=normal` runs it at the normal priority, to compare.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::Router;

pub(crate) struct Sink {
    /// The base URL: errorwatch's `api_url`; sentry's DSN is built on it.
    pub(crate) url: String,
    events: Arc<AtomicU64>,
}

async fn receive(State(events): State<Arc<AtomicU64>>, uri: Uri, body: Bytes) -> StatusCode {
    let path = uri.path();
    if path.ends_with("/api/v1/event") {
        events.fetch_add(1, Ordering::Relaxed);
        StatusCode::ACCEPTED
    } else if path.ends_with("/envelope/") {
        // An envelope's item headers are single JSON lines; count the event items.
        let items = body
            .split(|&b| b == b'\n')
            .filter(|line| line.starts_with(b"{\"type\":\"event\""))
            .count();
        events.fetch_add(items as u64, Ordering::Relaxed);
        StatusCode::OK
    } else {
        StatusCode::NOT_FOUND
    }
}

/// Makes the calling thread the last to get a busy core (nice 19), unless
/// `COMPARE_SINK_PRIORITY=normal`.
fn lowest_priority() {
    if std::env::var("COMPARE_SINK_PRIORITY").is_ok_and(|priority| priority == "normal") {
        return;
    }
    // On Linux a thread's nice value is its own; elsewhere the call would renice the process.
    #[cfg(target_os = "linux")]
    // SAFETY: `setpriority` only changes the scheduling priority of the calling thread (who 0
    // is the caller's thread id on Linux); it reads and writes no memory of ours.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, 19);
    }
}

impl Sink {
    /// Starts the sink on a thread with its own single-threaded runtime; it serves until the
    /// process exits.
    pub(crate) fn start() -> Sink {
        let events = Arc::new(AtomicU64::new(0));
        let app = Router::new()
            .fallback(receive)
            .with_state(Arc::clone(&events));
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("sink".into())
            .spawn(move || {
                lowest_priority();
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("the sink's runtime");
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                        .await
                        .expect("bind the sink on loopback");
                    let address = listener.local_addr().expect("the sink's address");
                    let _ = tx.send(address);
                    let _ = axum::serve(listener, app).await;
                });
            })
            .expect("the sink's thread");
        let address = rx.recv().expect("the sink started");
        Sink {
            url: format!("http://{address}"),
            events,
        }
    }

    pub(crate) fn events(&self) -> u64 {
        self.events.load(Ordering::Relaxed)
    }

    /// Waits until `expected` events arrived or `within` passed, and says how many did.
    pub(crate) fn wait_for(&self, expected: u64, within: Duration) -> u64 {
        let deadline = Instant::now() + within;
        while self.events() < expected && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        self.events()
    }
}
