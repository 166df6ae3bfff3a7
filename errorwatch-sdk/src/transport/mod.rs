//! The transport: a bounded queue and the worker thread that drains it.
//!
//! Callers take a place in the queue without waiting before they write a capture, and hand it
//! over into that place; when the queue is full nothing is written, and the capture is
//! counted as dropped. The worker owns a small single-threaded tokio runtime on a thread of
//! its own, so the SDK works the same from sync code, any tokio flavour, actix or a panic
//! hook. It prepares each event (symbolise, scope, scrub, limits, serialise) and sends up to
//! `max_in_flight` at once.
//!
//! Every job ends in exactly one recorded [`Outcome`]; `flush` waits for the outcomes of the
//! jobs queued before it, with a deadline; `close` also stops the worker and counts what it
//! could not finish as lost.

mod circuit_breaker;
mod http;
pub(crate) use http::check_certificate;
mod rate_limit;
mod ring;
pub(crate) use ring::NoRoom;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio::task::JoinSet;

use crate::handoff::Handoff;
use crate::options::Options;
use crate::pipeline::{Job, Pipeline};
use crate::stats::{Counters, Outcome};
use circuit_breaker::Grant;
use http::HttpSender;
use ring::Ring;

/// A place taken in the queue: the capture is written once one is held, so that a full queue
/// costs the caller nothing but the count (and leaves no box for it to free).
pub(crate) struct Place<'a> {
    place: ring::Place<'a>,
    progress: &'a Progress,
}

impl Place<'_> {
    /// Hands the capture to the worker.
    pub(crate) fn send(self, handoff: Handoff) {
        self.place.put(handoff);
        // Counted after the hand-off: a job finished before this line only makes `done` run
        // ahead for a moment, which no flush can mistake for unfinished work.
        self.progress.queued.fetch_add(1, Ordering::SeqCst);
    }
}

/// The callers' side of the transport.
pub(crate) struct Queue {
    ring: Arc<Ring>,
    progress: Arc<Progress>,
    stop: Arc<Notify>,
    thread: Mutex<Option<thread::JoinHandle<()>>>,
}

/// Counts queued jobs and finished ones, so flush can wait for the ones queued before it.
struct Progress {
    queued: AtomicU64,
    state: Mutex<ProgressState>,
    changed: Condvar,
    counters: Arc<Counters>,
}

#[derive(Default)]
struct ProgressState {
    done: u64,
    waiters: usize,
    /// Set once shutdown has counted the unfinished jobs as lost: later outcomes are ignored,
    /// so no job is counted twice.
    finalized: bool,
    worker_exited: bool,
}

impl Progress {
    fn finish(&self, outcome: Outcome) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.finalized {
            return;
        }
        self.counters.record(outcome);
        state.done += 1;
        if state.waiters > 0 {
            self.changed.notify_all();
        }
    }

    fn worker_exited(&self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.worker_exited = true;
        self.changed.notify_all();
    }

    /// Waits until `done(state)` holds or the deadline passes.
    fn wait_until(&self, deadline: Instant, done: impl Fn(&ProgressState) -> bool) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.waiters += 1;
        let reached = loop {
            if done(&state) {
                break true;
            }
            let now = Instant::now();
            if now >= deadline {
                break false;
            }
            state = match self.changed.wait_timeout(state, deadline - now) {
                Ok((state, _)) => state,
                Err(poisoned) => poisoned.into_inner().0,
            };
        };
        state.waiters -= 1;
        reached
    }
}

impl Queue {
    /// Starts the worker thread.
    pub(crate) fn start(
        options: &Options,
        pipeline: Arc<Pipeline>,
        counters: Arc<Counters>,
    ) -> std::io::Result<Queue> {
        let ring = Arc::new(Ring::new(options.queue_capacity));
        let progress = Arc::new(Progress {
            queued: AtomicU64::new(0),
            state: Mutex::new(ProgressState::default()),
            changed: Condvar::new(),
            counters,
        });
        let stop = Arc::new(Notify::new());
        let worker = Worker {
            options: options.clone(),
            pipeline,
            progress: progress.clone(),
            idle: IdleRelease::default(),
            symboliser: Arc::new(tokio::sync::Semaphore::new(1)),
        };
        let worker_stop = stop.clone();
        let worker_ring = ring.clone();
        let thread = thread::Builder::new()
            .name("errorwatch-transport".into())
            .spawn(move || worker.run(&worker_ring, worker_stop))?;
        Ok(Queue {
            ring,
            progress,
            stop,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Takes a place for one capture, without ever waiting.
    pub(crate) fn reserve(&self) -> Result<Place<'_>, NoRoom> {
        Ok(Place {
            place: self.ring.reserve()?,
            progress: &self.progress,
        })
    }

    /// Waits until every job queued before the call has an outcome, or `timeout` passes.
    pub(crate) fn flush(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let target = self.progress.queued.load(Ordering::SeqCst);
        self.progress.wait_until(deadline, |state| {
            state.done >= target || state.worker_exited
        })
    }

    /// Flushes, stops the worker, and counts what was not finished by the deadline as lost.
    /// Returns whether everything was delivered in time.
    pub(crate) fn close(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let flushed = self.flush(timeout);
        self.stop.notify_one();
        let exited = self
            .progress
            .wait_until(deadline, |state| state.worker_exited);
        {
            let mut state = self
                .progress
                .state
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if !state.finalized {
                state.finalized = true;
                let queued = self.progress.queued.load(Ordering::SeqCst);
                self.progress
                    .counters
                    .lost(queued.saturating_sub(state.done));
            }
        }
        if exited {
            if let Some(handle) = self.thread.lock().ok().and_then(|mut slot| slot.take()) {
                let _ = handle.join();
            }
        }
        // A worker still busy past the deadline is left to finish on its own (detached).
        flushed
    }
}

impl Drop for Queue {
    /// Every client handle is gone: the worker finishes what is queued and in flight, and
    /// exits.
    fn drop(&mut self) {
        self.ring.close();
    }
}

struct Worker {
    options: Options,
    pipeline: Arc<Pipeline>,
    progress: Arc<Progress>,
    idle: IdleRelease,
    /// Taken by the one stack being symbolised on a blocking thread.
    symboliser: Arc<tokio::sync::Semaphore>,
}

/// How long the worker must have had nothing to do before it gives memory back: the
/// symboliser's (the executable's mapping, its map of units, the resolved addresses), loaded
/// again on demand, the captures' pooled boxes, and the heap pages a burst of events left
/// free.
const IDLE_RELEASE: Duration = Duration::from_secs(10);

/// What the worker did since memory was last given back.
#[derive(Default)]
struct IdleRelease {
    /// A job was taken since the last check.
    busy_lately: AtomicBool,
    /// Jobs were taken since memory was last given back.
    worked: AtomicBool,
    /// A stack was symbolised since the symboliser was last released.
    symbolised: AtomicBool,
}

impl IdleRelease {
    fn job_taken(&self) {
        self.busy_lately.store(true, Ordering::Relaxed);
        self.worked.store(true, Ordering::Relaxed);
    }

    fn symbolising(&self) {
        self.symbolised.store(true, Ordering::Relaxed);
    }

    /// Once per idle period: gives memory back if nothing happened since the last call, and
    /// the boxes a burst left over once the queue is empty (`caught_up`).
    fn release_if_idle(&self, pipeline: &Arc<Pipeline>, caught_up: bool) {
        if self.busy_lately.swap(false, Ordering::Relaxed) {
            if caught_up && pipeline.pool.has_spare() {
                let pipeline = pipeline.clone();
                // Frees take the callers' arena locks: never on the runtime thread.
                tokio::task::spawn_blocking(move || pipeline.pool.release_spare());
            }
            return;
        }
        if !self.worked.swap(false, Ordering::Relaxed) {
            return;
        }
        let symbolised = self.symbolised.swap(false, Ordering::Relaxed);
        let pipeline = pipeline.clone();
        // Both take locks another thread may hold a while: never on the runtime thread.
        tokio::task::spawn_blocking(move || {
            pipeline.pool.release();
            if symbolised {
                crate::stacktrace::symbols::release();
            }
            crate::give_back::give_back_freed_memory();
        });
    }
}

impl Worker {
    fn run(self, ring: &Ring, stop: Arc<Notify>) {
        crate::hub::suppress_current_thread();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            // DNS lookups run on the runtime's blocking threads: they are the SDK's too.
            .on_thread_start(crate::hub::suppress_current_thread)
            .build();
        let progress = self.progress.clone();
        match runtime {
            Ok(runtime) => {
                runtime.block_on(Arc::new(self).serve(ring, stop));
                // Dropping the runtime cancels any request still in flight.
                drop(runtime);
            }
            Err(error) => self
                .pipeline
                .diagnostics
                .log(format_args!("the transport could not start: {error}")),
        }
        ring.close_and_empty();
        progress.worker_exited();
    }

    async fn serve(self: Arc<Self>, ring: &Ring, stop: Arc<Notify>) {
        let sender = match HttpSender::new(&self.options) {
            Ok(sender) => Some(Arc::new(sender)),
            Err(reason) => {
                self.pipeline
                    .diagnostics
                    .log(format_args!("events cannot be sent: {reason}"));
                None
            }
        };
        let max_in_flight = self.options.max_in_flight.max(1);
        let mut in_flight = JoinSet::new();
        let stopped = stop.notified();
        tokio::pin!(stopped);
        let mut idle_check = tokio::time::interval(IDLE_RELEASE / 2);
        idle_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            while in_flight.try_join_next().is_some() {}
            // While the breaker's probe is out, events wait in the queue for its verdict.
            let probing = sender
                .as_ref()
                .is_some_and(|sender| sender.breaker.is_probing());
            let has_room = in_flight.len() < max_in_flight && !probing;
            tokio::select! {
                biased;
                _ = &mut stopped => return,
                Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
                job = ring.recv(), if has_room => match job {
                    Some(handoff) => {
                        self.idle.job_taken();
                        self.handle(handoff, sender.as_ref(), &mut in_flight);
                    }
                    None => break,
                },
                _ = idle_check.tick() => self.idle.release_if_idle(&self.pipeline, ring.is_empty()),
            }
        }
        // Every client handle is gone: finish what is in flight, unless told to stop.
        loop {
            tokio::select! {
                biased;
                _ = &mut stopped => return,
                next = in_flight.join_next() => if next.is_none() { return },
            }
        }
    }

    fn handle(
        self: &Arc<Self>,
        handoff: Handoff,
        sender: Option<&Arc<HttpSender>>,
        in_flight: &mut JoinSet<()>,
    ) {
        let refused = |handoff: Handoff, outcome: Outcome| {
            handoff.recycle(&self.pipeline.pool);
            self.progress.finish(outcome);
        };
        let Some(sender) = sender else {
            return refused(handoff, Outcome::Failed);
        };
        let now = Instant::now();
        if sender.rate_limit.is_limited(now) {
            return refused(handoff, Outcome::RateLimited);
        }
        // Granted here, before the next job is taken: while the one probe after a pause is
        // out, the loop takes no more jobs, and they wait in the queue for its verdict.
        let probe = match sender.breaker.grant(now) {
            Grant::Denied => return refused(handoff, Outcome::Failed),
            Grant::Closed => false,
            Grant::Probe => true,
        };
        let worker = self.clone();
        let sender = sender.clone();
        in_flight.spawn(async move {
            let prepared = match worker.pipeline.unpack(handoff) {
                Ok(job) => Ok(worker.symbolise(job).await),
                Err(discarded) => Err(discarded),
            };
            let mut event = match prepared.and_then(|job| worker.pipeline.process(job)) {
                Ok(event) => event,
                Err(discarded) => {
                    if probe {
                        sender.breaker.release_probe();
                    }
                    worker.progress.finish(discarded.outcome());
                    return;
                }
            };
            let body = event.to_body();
            let outcome = sender
                .deliver(
                    body,
                    &worker.progress.counters,
                    &worker.pipeline.diagnostics,
                )
                .await;
            worker.progress.finish(outcome);
        });
    }

    /// Resolves the job's stack on a blocking thread, so that the runtime thread goes on
    /// sending while symbols load (a second or more for a large debug binary). A stack with a
    /// deadline (a panic about to end the process) is waited for until then only: past it,
    /// the event goes without its frames rather than not at all.
    async fn symbolise(&self, mut job: Job) -> Job {
        let Some(stack) = job.stack.take() else {
            return job;
        };
        self.idle.symbolising();
        // A stack seen before costs lookups: no thread for it.
        if self.pipeline.symbolise_cached(&stack, &mut job.event) {
            return job;
        }
        let deadline = stack.deadline();
        let pipeline = self.pipeline.clone();
        let mut event = job.event.clone();
        let symboliser = self.symboliser.clone();
        // One stack at a time: the resolver serves one anyway, and threads waiting their
        // turn would only add to the process's threads (and to its malloc arenas' sharing).
        let resolving = async move {
            let turn = symboliser.acquire_owned().await;
            tokio::task::spawn_blocking(move || {
                let _turn = turn;
                pipeline.symbolise(stack, &mut event);
                event
            })
            .await
        };
        let resolved = match deadline {
            Some(deadline) => tokio::time::timeout_at(deadline.into(), resolving)
                .await
                .ok(),
            None => Some(resolving.await),
        };
        match resolved {
            Some(Ok(event)) => job.event = event,
            Some(Err(_)) => {}
            None => self.pipeline.diagnostics.log(format_args!(
                "a panic's stack was not symbolised in time; sent without its frames"
            )),
        }
        job
    }
}
