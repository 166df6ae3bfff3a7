//! The writer: one task that stores accepted events in batches, one transaction per batch,
//! and acknowledges each event only once its batch is committed ("202 means stored").
//!
//! It also keeps the store's health. A batch that fails (a full disk, a read-only or deleted
//! file) turns it unhealthy: `/health/ready` says so and ingestion answers 503 with
//! `Retry-After`. While idle, it checks every second that the database file is still the one
//! it opened and, when unhealthy, tries a small write: it recovers by itself once writes
//! succeed again, even when a load balancer, trusting `/health/ready`, sends it nothing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::ingest::body::BudgetShare;
use crate::metrics::Metrics;
use crate::store::{NewEvent, Outcome, Store, StoreError};

/// How often an idle writer checks the file (and, when unhealthy, tries a write).
const PROBE_EVERY: Duration = Duration::from_secs(1);

/// Why an event could not be queued.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SubmitError {
    /// The queue is full: the server is overloaded.
    Full,
    /// The writer has stopped.
    Closed,
}

struct Pending {
    event: NewEvent,
    /// The bytes it holds, counted in the body budget until it is stored.
    budget: BudgetShare,
    /// What became of it once its batch committed; dropped unsent when the batch failed.
    done: oneshot::Sender<Outcome>,
}

/// Whether the store takes writes, as the last write found. Read on every request: a flag
/// first, the reason only when there is one.
#[derive(Default)]
pub(crate) struct Health {
    failing: AtomicBool,
    /// Why the last write failed.
    reason: Mutex<String>,
}

impl Health {
    /// `Err(why)` while writes fail.
    pub(crate) fn check(&self) -> Result<(), String> {
        if !self.failing.load(Ordering::Acquire) {
            return Ok(());
        }
        Err(self
            .reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone())
    }

    fn failed(&self, error: &StoreError) {
        let mut reason = self.reason.lock().unwrap_or_else(|e| e.into_inner());
        let why = error.to_string();
        if !self.failing.load(Ordering::Acquire) || *reason != why {
            // Loud once per cause, not once per batch.
            tracing::error!(error = %why, "the store cannot write; answering 503 until it can");
        }
        *reason = why;
        self.failing.store(true, Ordering::Release);
    }

    fn succeeded(&self) {
        if self.failing.swap(false, Ordering::AcqRel) {
            tracing::warn!("the store writes again; taking events");
        }
    }
}

/// The handlers' side of the writer.
pub(crate) struct Writer {
    tx: mpsc::Sender<Pending>,
    stop: watch::Sender<bool>,
    health: Arc<Health>,
}

impl Writer {
    /// Starts the writer task.
    pub(crate) fn start(
        store: Store,
        metrics: Arc<Metrics>,
        capacity: usize,
        max_batch: usize,
    ) -> (Writer, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(capacity);
        let (stop, stopped) = watch::channel(false);
        let health = Arc::new(Health::default());
        let task = store.clone().spawn_writer(run(
            rx,
            stopped,
            store,
            metrics,
            health.clone(),
            max_batch.max(1),
        ));
        (Writer { tx, stop, health }, task)
    }

    /// Whether the writer still takes events.
    pub(crate) fn is_open(&self) -> bool {
        !*self.stop.borrow() && !self.tx.is_closed()
    }

    /// Whether the store takes writes.
    pub(crate) fn health(&self) -> &Health {
        &self.health
    }

    /// Queues an event; the receiver says what became of it once its batch committed, and
    /// fails when the batch did not.
    pub(crate) fn submit(
        &self,
        event: NewEvent,
        budget: BudgetShare,
    ) -> Result<oneshot::Receiver<Outcome>, SubmitError> {
        let (done, receiver) = oneshot::channel();
        match self.tx.try_send(Pending {
            event,
            budget,
            done,
        }) {
            Ok(()) => Ok(receiver),
            Err(mpsc::error::TrySendError::Full(_)) => Err(SubmitError::Full),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(SubmitError::Closed),
        }
    }

    /// Stops taking events; what is queued is still stored.
    pub(crate) fn close(&self) {
        let _ = self.stop.send(true);
    }
}

async fn run(
    mut rx: mpsc::Receiver<Pending>,
    mut stopped: watch::Receiver<bool>,
    store: Store,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    max_batch: usize,
) {
    // The store may have opened full: find out before the first event, for `/health/ready`.
    probe(&store, &health, true).await;
    loop {
        let first = tokio::select! {
            biased;
            next = rx.recv() => next,
            // A stop signal, or every handle gone: either way, no new events.
            _ = stopped.changed() => {
                // Refuse new events, then store what was already accepted.
                rx.close();
                rx.recv().await
            }
            () = tokio::time::sleep(PROBE_EVERY) => {
                probe(&store, &health, false).await;
                continue;
            }
        };
        let Some(first) = first else { break };
        let mut batch = vec![first];
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(pending) => batch.push(pending),
                Err(_) => break,
            }
        }
        metrics.set_queue_depth(rx.len());
        let mut events = Vec::with_capacity(batch.len());
        let mut acks = Vec::with_capacity(batch.len());
        for pending in batch {
            events.push(pending.event);
            acks.push((pending.budget, pending.done));
        }
        let started = Instant::now();
        // Committed into a file that is no longer the database is not stored: check the file
        // after the commit, before anyone is told.
        let count = events.len();
        let written = match store.write_batch(events).await {
            Ok(outcomes) => store.check_file().map(|()| outcomes),
            Err(error) => Err(error),
        };
        match written {
            Ok(outcomes) => {
                let stored = outcomes.iter().filter(|o| **o == Outcome::Stored).count();
                metrics.stored(stored, started.elapsed());
                health.succeeded();
                for ((_budget, done), outcome) in acks.into_iter().zip(outcomes) {
                    let _ = done.send(outcome);
                }
            }
            Err(error) => {
                metrics.store_failed(count);
                health.failed(&error);
                // Dropping the senders tells each handler its event was not stored.
            }
        }
    }
    metrics.set_queue_depth(0);
}

/// While idle: is the database file still there, and, if writes were failing (or `write`),
/// do they succeed?
async fn probe(store: &Store, health: &Health, write: bool) {
    if let Err(error) = store.check_file() {
        return health.failed(&error);
    }
    if !write && health.check().is_ok() {
        return;
    }
    match store
        .probe_write(chrono::Utc::now().timestamp_millis())
        .await
    {
        Ok(()) => health.succeeded(),
        Err(error) => health.failed(&error),
    }
}
