//! Prometheus metrics: events accepted and rejected by reason, request latency, queue depth,
//! store latency. Plain atomics, rendered as text on demand.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Duration;

/// Bucket bounds of the latency histograms, in seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

#[derive(Default)]
struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    fn observe(&self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        for (bound, bucket) in BUCKETS.iter().zip(&self.buckets) {
            if secs <= *bound {
                bucket.fetch_add(1, Relaxed);
            }
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_micros
            .fetch_add(elapsed.as_micros() as u64, Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (bound, bucket) in BUCKETS.iter().zip(&self.buckets) {
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{bound}\"}} {}",
                bucket.load(Relaxed)
            );
        }
        let count = self.count.load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(
            out,
            "{name}_sum {}",
            self.sum_micros.load(Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count {count}");
    }
}

/// The server's metrics.
#[derive(Default)]
pub(crate) struct Metrics {
    accepted: AtomicU64,
    stored: AtomicU64,
    store_failed: AtomicU64,
    rejected: Mutex<BTreeMap<&'static str, u64>>,
    request_latency: Histogram,
    store_latency: Histogram,
    queue_depth: AtomicU64,
}

impl Metrics {
    /// An event was accepted (queued for storage).
    pub(crate) fn accepted(&self) {
        self.accepted.fetch_add(1, Relaxed);
    }
    /// A batch was stored.
    pub(crate) fn stored(&self, events: usize, took: Duration) {
        self.stored.fetch_add(events as u64, Relaxed);
        self.store_latency.observe(took);
    }
    /// A batch of `events` could not be stored (each was answered 503).
    pub(crate) fn store_failed(&self, events: usize) {
        self.store_failed.fetch_add(events as u64, Relaxed);
    }
    /// A request was turned away, for `reason` (an error code in lower case).
    pub(crate) fn rejected(&self, reason: &'static str) {
        *self
            .rejected
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(reason)
            .or_default() += 1;
    }
    /// A request was answered after `took`.
    pub(crate) fn request(&self, took: Duration) {
        self.request_latency.observe(took);
    }
    /// Events waiting for the writer.
    pub(crate) fn set_queue_depth(&self, depth: usize) {
        self.queue_depth.store(depth as u64, Relaxed);
    }

    /// The Prometheus text exposition, with the API requests running now.
    pub(crate) fn render(&self, requests_in_flight: usize) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP errorwatch_http_requests_in_flight API requests being handled now.\n\
             # TYPE errorwatch_http_requests_in_flight gauge\n\
             errorwatch_http_requests_in_flight {requests_in_flight}"
        );
        let _ = writeln!(
            out,
            "# HELP errorwatch_events_accepted_total Events accepted for storage.\n\
             # TYPE errorwatch_events_accepted_total counter\n\
             errorwatch_events_accepted_total {}",
            self.accepted.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP errorwatch_events_stored_total Events committed to the store.\n\
             # TYPE errorwatch_events_stored_total counter\n\
             errorwatch_events_stored_total {}",
            self.stored.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP errorwatch_events_store_failed_total Events the store failed to commit (answered 503).\n\
             # TYPE errorwatch_events_store_failed_total counter\n\
             errorwatch_events_store_failed_total {}",
            self.store_failed.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP errorwatch_events_rejected_total Requests turned away, by reason.\n\
             # TYPE errorwatch_events_rejected_total counter"
        );
        for (reason, count) in self
            .rejected
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "errorwatch_events_rejected_total{{reason=\"{reason}\"}} {count}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP errorwatch_ingest_queue_depth Events accepted and not yet stored.\n\
             # TYPE errorwatch_ingest_queue_depth gauge\n\
             errorwatch_ingest_queue_depth {}",
            self.queue_depth.load(Relaxed)
        );
        self.request_latency.render(
            &mut out,
            "errorwatch_http_request_duration_seconds",
            "Time to answer a request.",
        );
        self.store_latency.render(
            &mut out,
            "errorwatch_store_batch_duration_seconds",
            "Time to commit one batch of events.",
        );
        out
    }
}
