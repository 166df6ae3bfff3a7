//! The writer: one task that stores accepted events in batches, one transaction per batch,
//! and acknowledges each event only once its batch is committed ("202 means stored").

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::metrics::Metrics;
use crate::store::{NewEvent, Store};

/// Why an event could not be queued.
#[derive(Debug, PartialEq, Eq)]
pub enum SubmitError {
    /// The queue is full: the server is overloaded.
    Full,
    /// The writer has stopped.
    Closed,
}

struct Pending {
    event: NewEvent,
    stored: oneshot::Sender<bool>,
}

/// The handlers' side of the writer.
pub struct Writer {
    tx: mpsc::Sender<Pending>,
    stop: watch::Sender<bool>,
}

impl Writer {
    /// Starts the writer task.
    pub fn start(
        store: Store,
        metrics: Arc<Metrics>,
        capacity: usize,
        max_batch: usize,
    ) -> (Writer, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(capacity);
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(run(rx, stopped, store, metrics, max_batch.max(1)));
        (Writer { tx, stop }, task)
    }

    /// Whether the writer still takes events.
    pub fn is_open(&self) -> bool {
        !*self.stop.borrow() && !self.tx.is_closed()
    }

    /// Queues an event; the receiver says whether it was stored.
    pub fn submit(&self, event: NewEvent) -> Result<oneshot::Receiver<bool>, SubmitError> {
        let (stored, receiver) = oneshot::channel();
        match self.tx.try_send(Pending { event, stored }) {
            Ok(()) => Ok(receiver),
            Err(mpsc::error::TrySendError::Full(_)) => Err(SubmitError::Full),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(SubmitError::Closed),
        }
    }

    /// Stops taking events; what is queued is still stored.
    pub fn close(&self) {
        let _ = self.stop.send(true);
    }
}

async fn run(
    mut rx: mpsc::Receiver<Pending>,
    mut stopped: watch::Receiver<bool>,
    store: Store,
    metrics: Arc<Metrics>,
    max_batch: usize,
) {
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
        let (events, acks): (Vec<NewEvent>, Vec<oneshot::Sender<bool>>) =
            batch.into_iter().map(|p| (p.event, p.stored)).unzip();
        let started = Instant::now();
        let stored = match store.write_batch(&events).await {
            Ok(()) => {
                metrics.stored(events.len(), started.elapsed());
                true
            }
            Err(error) => {
                tracing::error!(%error, events = events.len(), "a batch could not be stored");
                false
            }
        };
        for ack in acks {
            let _ = ack.send(stored);
        }
    }
    metrics.set_queue_depth(0);
}
