//! What happened to every event: the client's counters.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// A snapshot of the client's counters, from [`Client::stats`](crate::Client::stats).
///
/// Every captured event ends in exactly one outcome, so once the client is idle (or closed)
/// `captured == sent + dropped() + failed + lost_at_shutdown`; until then the difference is
/// [`pending`](Stats::pending).
///
/// ```
/// let stats = errorwatch_sdk::Stats::default();
/// assert_eq!(stats.pending(), 0);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Events handed to the client.
    pub captured: u64,
    /// Events the server accepted (2xx, including "sampled" and "deduplicated" answers).
    pub sent: u64,
    /// Dropped because the queue was full.
    pub dropped_queue_full: u64,
    /// Dropped because the server answered 429, or while backing off after one.
    pub dropped_rate_limited: u64,
    /// Dropped because the server refused them with a 4xx other than 429 (never retried).
    pub dropped_rejected: u64,
    /// Dropped by the client-side sample rate.
    pub dropped_sampled: u64,
    /// Dropped by `before_send`.
    pub dropped_before_send: u64,
    /// Not delivered: network errors or 5xx after every retry, the circuit breaker open, or
    /// an event the SDK could not prepare (a bug, reported in its diagnostics).
    pub failed: u64,
    /// Still queued or in flight when shutdown's deadline passed.
    pub lost_at_shutdown: u64,
    /// Retry attempts made (a count of requests, not of events).
    pub retried: u64,
}

impl Stats {
    /// All dropped events, whatever the reason.
    pub fn dropped(&self) -> u64 {
        self.dropped_queue_full
            + self.dropped_rate_limited
            + self.dropped_rejected
            + self.dropped_sampled
            + self.dropped_before_send
    }

    /// Events captured whose outcome is not known yet (queued or in flight).
    pub fn pending(&self) -> u64 {
        self.captured
            .saturating_sub(self.sent + self.dropped() + self.failed + self.lost_at_shutdown)
    }
}

/// The final outcome of one event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Sent,
    QueueFull,
    RateLimited,
    Rejected,
    Sampled,
    BeforeSend,
    Failed,
}

#[derive(Default)]
pub(crate) struct Counters {
    captured: AtomicU64,
    sent: AtomicU64,
    queue_full: AtomicU64,
    rate_limited: AtomicU64,
    rejected: AtomicU64,
    sampled: AtomicU64,
    before_send: AtomicU64,
    failed: AtomicU64,
    lost: AtomicU64,
    retried: AtomicU64,
}

impl Counters {
    pub(crate) fn captured(&self) {
        self.captured.fetch_add(1, Relaxed);
    }

    pub(crate) fn retried(&self) {
        self.retried.fetch_add(1, Relaxed);
    }

    pub(crate) fn lost(&self, count: u64) {
        self.lost.fetch_add(count, Relaxed);
    }

    pub(crate) fn record(&self, outcome: Outcome) {
        let counter = match outcome {
            Outcome::Sent => &self.sent,
            Outcome::QueueFull => &self.queue_full,
            Outcome::RateLimited => &self.rate_limited,
            Outcome::Rejected => &self.rejected,
            Outcome::Sampled => &self.sampled,
            Outcome::BeforeSend => &self.before_send,
            Outcome::Failed => &self.failed,
        };
        counter.fetch_add(1, Relaxed);
    }

    pub(crate) fn snapshot(&self) -> Stats {
        Stats {
            captured: self.captured.load(Relaxed),
            sent: self.sent.load(Relaxed),
            dropped_queue_full: self.queue_full.load(Relaxed),
            dropped_rate_limited: self.rate_limited.load(Relaxed),
            dropped_rejected: self.rejected.load(Relaxed),
            dropped_sampled: self.sampled.load(Relaxed),
            dropped_before_send: self.before_send.load(Relaxed),
            failed: self.failed.load(Relaxed),
            lost_at_shutdown: self.lost.load(Relaxed),
            retried: self.retried.load(Relaxed),
        }
    }
}
