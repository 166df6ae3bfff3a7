//! The queue's places: a ring allocated once, at start, for the queue's capacity.
//!
//! A channel that allocates its storage as it fills (tokio's mpsc grows in blocks of 32) does
//! so on the callers' threads, and its receiver frees the blocks it cannot reuse on the
//! worker's. With glibc's allocator, a chunk freed on the worker enters the worker's cache of
//! free chunks still belonging to the caller's arena; the worker then serves its own
//! allocations (the HTTP client's, the events') with it, and frees them later under the
//! caller's arena lock, for as long as the process runs: the caller, allocating a box in a
//! burst, waits on that lock. A ring allocates nothing after it is made.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crossbeam_queue::ArrayQueue;
use tokio::sync::Notify;

use crate::handoff::Handoff;

/// The captures handed over, in order, and the places taken for them.
pub(super) struct Ring {
    captures: ArrayQueue<Handoff>,
    /// Places taken: captures in the ring, and captures being written for a place taken.
    /// Never more than the ring holds, so a capture written always fits.
    taken: AtomicUsize,
    /// Set when the callers' side is gone or the worker has stopped: no place is given.
    closed: AtomicBool,
    /// Wakes the worker when a capture arrives, or the ring closes.
    arrived: Notify,
}

/// Why there is no place in the queue for a capture.
pub(crate) enum NoRoom {
    Full,
    Closed,
}

/// A place taken in the ring, given back if dropped unused.
pub(super) struct Place<'a> {
    ring: &'a Ring,
}

impl Ring {
    pub(super) fn new(capacity: usize) -> Ring {
        Ring {
            captures: ArrayQueue::new(capacity.max(1)),
            taken: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            arrived: Notify::new(),
        }
    }

    /// Takes a place, without waiting.
    pub(super) fn reserve(&self) -> Result<Place<'_>, NoRoom> {
        if self.closed.load(Ordering::Acquire) {
            return Err(NoRoom::Closed);
        }
        let capacity = self.captures.capacity();
        // Read first: a full queue, the common case in a burst, then costs no write to the
        // line the worker also writes.
        if self.taken.load(Ordering::Relaxed) >= capacity {
            return Err(NoRoom::Full);
        }
        if self.taken.fetch_add(1, Ordering::AcqRel) >= capacity {
            self.taken.fetch_sub(1, Ordering::AcqRel);
            return Err(NoRoom::Full);
        }
        Ok(Place { ring: self })
    }

    /// The next capture, waiting for one; `None` once the ring is closed and empty.
    ///
    /// Cancel safe: a capture is taken and returned in the same poll.
    pub(super) async fn recv(&self) -> Option<Handoff> {
        loop {
            if let Some(handoff) = self.captures.pop() {
                self.taken.fetch_sub(1, Ordering::AcqRel);
                return Some(handoff);
            }
            if self.closed.load(Ordering::Acquire) {
                return None;
            }
            // A capture pushed since the pop above left a permit: this returns at once.
            self.arrived.notified().await;
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.captures.is_empty()
    }

    /// Gives no more places, and wakes the worker to see it.
    pub(super) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.arrived.notify_one();
    }

    /// For the worker as it exits: gives no more places, and drops what it will not send (the
    /// scopes their boxes hold with them), as a channel's receiver would.
    pub(super) fn close_and_empty(&self) {
        self.close();
        while self.captures.pop().is_some() {
            self.taken.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl Place<'_> {
    /// Puts `handoff` in the place taken for it, and wakes the worker.
    pub(super) fn put(self, handoff: Handoff) {
        let ring = self.ring;
        // The place is the capture's now: the worker gives it back as it takes the capture.
        std::mem::forget(self);
        // Cannot fail: no more places are taken than the ring holds.
        if let Err(handoff) = ring.captures.push(handoff) {
            ring.taken.fetch_sub(1, Ordering::AcqRel);
            drop(handoff);
            return;
        }
        ring.arrived.notify_one();
    }
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        self.ring.taken.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handoff::Pool;
    use crate::scope::Scope;
    use errorwatch_protocol::Level;

    fn capture(pool: &Pool, text: &str) -> Handoff {
        Handoff::message(pool, text, Level::Info, Scope::empty())
    }

    #[test]
    fn places_are_bounded_and_given_back() {
        let pool = Pool::new();
        let ring = Ring::new(2);
        let first = ring.reserve().ok().expect("a place");
        let second = ring.reserve().ok().expect("a place");
        assert!(matches!(ring.reserve(), Err(NoRoom::Full)));
        drop(second);
        let second = ring
            .reserve()
            .ok()
            .expect("a place given back is free again");
        let (one, two) = (capture(&pool, "first"), capture(&pool, "second"));
        let first_id = one.id();
        first.put(one);
        second.put(two);
        assert!(matches!(ring.reserve(), Err(NoRoom::Full)));

        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime");
        let taken = runtime.block_on(ring.recv()).expect("a capture");
        assert_eq!(taken.id(), first_id, "in the order put");
        assert!(ring.reserve().is_ok(), "a capture taken frees its place");
        ring.close();
        assert!(matches!(ring.reserve(), Err(NoRoom::Closed)));
        assert!(
            runtime.block_on(ring.recv()).is_some(),
            "closed, the ring is drained"
        );
        assert!(runtime.block_on(ring.recv()).is_none());
    }

    #[test]
    fn the_worker_wakes_for_a_capture_and_for_closing() {
        let pool = Pool::new();
        let ring = std::sync::Arc::new(Ring::new(4));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime");
        let sender = {
            let ring = ring.clone();
            std::thread::spawn(move || {
                if let Ok(place) = ring.reserve() {
                    place.put(capture(&pool, "from another thread"));
                }
                ring.close();
            })
        };
        assert!(runtime.block_on(ring.recv()).is_some());
        assert!(runtime.block_on(ring.recv()).is_none());
        sender.join().expect("the sender");
    }
}
