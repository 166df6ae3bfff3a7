//! How the SDK's own threads share a core with the application's.
//!
//! The worker and the symboliser run on threads of their own, but when every core is busy the
//! scheduler may run one of them on an application thread's core, and one woken with work may
//! even preempt that thread. Left alone, it then keeps the core for as long as it has work: a
//! symbolising pass over a large compilation unit takes a millisecond or more, a worker
//! draining a full queue several, and the application thread waits all that time. In the
//! comparison harness (2 cores), captures that took 2 µs measured 0.8 ms, and 4 ms, that way.
//!
//! A [`Pacer`] offers the core back (`sched_yield`) once its thread has held it for [`HOLD`]:
//! a thread waiting for that core gets it within about that, and on a core nobody else wants
//! the yield returns at once.

use std::time::{Duration, Instant};

/// The longest a thread of the SDK holds its core before offering it to others.
pub(crate) const HOLD: Duration = Duration::from_micros(100);

/// Counts a thread's steps of work and yields its core every [`HOLD`].
pub(crate) struct Pacer {
    since: Instant,
    steps: u32,
    steps_per_look: u32,
    /// `sched_yield`, but for tests.
    yield_core: fn(),
}

impl Pacer {
    /// A pacer that reads the clock every `steps_per_look` steps: steps of a few nanoseconds
    /// (an entry of debug info) need not each pay for the clock.
    pub(crate) fn new(steps_per_look: u32) -> Pacer {
        Pacer {
            since: Instant::now(),
            steps: 0,
            steps_per_look: steps_per_look.max(1),
            yield_core: std::thread::yield_now,
        }
    }

    /// One step of work; returns whether it yielded the core.
    pub(crate) fn step(&mut self) -> bool {
        self.steps = self.steps.wrapping_add(1);
        if !self.steps.is_multiple_of(self.steps_per_look) || self.since.elapsed() < HOLD {
            return false;
        }
        (self.yield_core)();
        self.since = Instant::now();
        true
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    static YIELDS: AtomicUsize = AtomicUsize::new(0);

    /// A pacer whose yields are counted, in a counter of the calling test's own.
    fn counted(steps_per_look: u32, count: fn()) -> Pacer {
        Pacer {
            yield_core: count,
            ..Pacer::new(steps_per_look)
        }
    }

    fn hold_the_core() -> Instant {
        let started = Instant::now();
        while started.elapsed() < HOLD {
            std::hint::spin_loop();
        }
        started
    }

    #[test]
    fn a_thread_gives_its_core_up_once_it_has_held_it_long_enough() {
        let mut pacer = counted(256, || {
            YIELDS.fetch_add(1, Ordering::Relaxed);
        });
        // Between looks at the clock, never.
        assert!(!(1..256).any(|_| pacer.step()));
        let started = hold_the_core();
        // Held past `HOLD`: the next look yields, and the time held starts again.
        assert_eq!((0..256).filter(|_| pacer.step()).count(), 1);
        assert_eq!(YIELDS.load(Ordering::Relaxed), 1);
        assert!(pacer.since >= started + HOLD);
    }

    #[test]
    fn a_pacer_that_looks_every_step_yields_at_the_first_step_past_hold() {
        static OWN: AtomicUsize = AtomicUsize::new(0);
        let mut pacer = counted(1, || {
            OWN.fetch_add(1, Ordering::Relaxed);
        });
        hold_the_core();
        assert!(pacer.step());
        assert_eq!(OWN.load(Ordering::Relaxed), 1);
    }
}
