//! What a capture hands the worker: only what the caller's thread alone can read (a message, an
//! error's texts, a stack's addresses), written into a box that the worker gives back.
//!
//! The event itself is built on the worker. The caller's part is kept this small for two
//! reasons. Time: an `Event` is a kilobyte of fields and a few allocations before anything is
//! in it. Waiting: with glibc's allocator, memory is freed into the arena of the thread that
//! allocated it, under that arena's lock, so a worker freeing what the caller allocated holds
//! the caller's lock at the moment the caller next allocates, and the caller sleeps on it.
//! Boxes that go back to a pool instead of being freed mean that, once warm, a message or an
//! error capture allocates nothing on the caller's thread and frees nothing of its on the
//! worker. The queue carries only the box's pointer.

use std::borrow::Cow;
use std::panic::Location;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crossbeam_queue::ArrayQueue;
use errorwatch_protocol::{Event, EventId, Level, Timestamp};

use crate::draft::{self, Draft, Part};
use crate::error_chain::{Ends, ErrorChain};
use crate::pipeline::Job;
use crate::scope::Scope;
use crate::stacktrace::{Anchor, RawStack};

/// Boxes kept for the callers to take. Enough for the worker to trail the callers by this
/// many captures without any of them allocating.
const POOLED: usize = 256;

/// A text kept in a pooled box up to this size; a larger one is freed, so that one huge
/// message does not pin its memory in the pool.
const POOLED_TEXT: usize = 4 * 1024;

/// A draft's list of parts kept in a pooled box up to this many.
const POOLED_PARTS: usize = 64;

/// Room made at once for an error chain's texts, which arrive in several writes.
const CHAIN_TEXT: usize = 128;

/// One capture, as queued.
pub(crate) struct Handoff(Box<Capture>);

/// What a capture wrote, and what it wrote it into.
pub(crate) struct Capture {
    id: EventId,
    /// When a message or error capture was made (an event carries its own time).
    taken: Taken,
    scope: Scope,
    what: What,
    /// A message, an error chain's texts, or a draft's.
    text: String,
    /// What an error or draft capture writes besides its texts; boxed apart, so that a
    /// message capture (most of a burst's queue) does not carry it. Kept with the box once
    /// made.
    error: Option<Box<ErrorParts>>,
}

/// What an error or draft capture writes besides its texts.
#[derive(Default)]
struct ErrorParts {
    /// Where the chain's texts end in the capture's text.
    ends: Ends,
    /// A walked stack's instruction pointers, innermost first.
    ips: Vec<usize>,
    /// What a draft said.
    draft: Vec<Part>,
}

impl Capture {
    /// The text and the other parts, to write both at once.
    fn text_and_parts(&mut self) -> (&mut String, &mut ErrorParts) {
        (&mut self.text, self.error.get_or_insert_default())
    }

    fn new() -> Box<Capture> {
        crate::give_back::mark_this_threads_arena();
        Box::new(Capture {
            id: EventId::new_random(),
            taken: Taken(0),
            scope: Scope::empty(),
            what: What::Empty,
            text: String::new(),
            error: None,
        })
    }
}

/// When a capture was made, in nanoseconds since the Unix epoch: half a `SystemTime`'s size,
/// and what a queued capture weighs is paid once per place in the queue.
#[derive(Clone, Copy)]
struct Taken(u64);

impl Taken {
    fn now() -> Taken {
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Taken(u64::try_from(since_epoch.as_nanos()).unwrap_or(u64::MAX))
    }

    fn timestamp(self) -> Timestamp {
        Timestamp(UNIX_EPOCH + Duration::from_nanos(self.0))
    }
}

#[derive(Default)]
enum What {
    /// Nothing yet: a box in the pool.
    #[default]
    Empty,
    /// A spare box, and the spare boxes set aside before it.
    SetAside(Option<Box<Capture>>),
    /// `capture_message`: the text is the message.
    Message { level: Level },
    /// `capture_error`: the chain's texts are the error's, captured at `at`, with the stack
    /// in `ips` when `stack` is set.
    Error {
        chain: ErrorChain,
        at: &'static Location<'static>,
        stack: bool,
    },
    /// An integration's draft (in the box's parts and text), at a place when known, with the
    /// stack in `ips` when `stack` is set.
    Draft {
        level: Level,
        place: Option<(&'static str, u32)>,
        stack: bool,
    },
    /// An event the caller built (an integration's, a panic's), with maybe its stack: boxed
    /// whole, so that this rarer kind does not make every queued box larger.
    Event(Box<(Event, Option<RawStack>)>),
}

/// The boxes the worker gave back, for the callers to take.
pub(crate) struct Pool {
    free: ArrayQueue<Box<Capture>>,
    /// Boxes given back while `free` was full, put back in `free` as it empties. They are
    /// kept, not freed, until the worker has caught up: a box is freed into the arena of the
    /// thread that allocated it, under that arena's lock, so a worker freeing boxes while
    /// their caller captures would make the caller wait. No more boxes are made than a burst
    /// has in the queue at once, so the queue's capacity bounds them.
    spare: Mutex<Spare>,
    /// Whether `spare` has any, read without its lock.
    has_spare: AtomicBool,
}

impl Pool {
    pub(crate) fn new() -> Pool {
        Pool {
            free: ArrayQueue::new(POOLED),
            spare: Mutex::new(Spare::default()),
            has_spare: AtomicBool::new(false),
        }
    }

    /// A box for a capture: a returned one when there is one, without waiting.
    fn take(&self, scope: Scope, what: What) -> Box<Capture> {
        let mut capture = self.free.pop().unwrap_or_else(Capture::new);
        capture.id = EventId::new_random();
        capture.taken = Taken::now();
        capture.scope = scope;
        capture.what = what;
        capture
    }

    /// Keeps `capture` for a later one, emptied, unless its text grew too large.
    fn give_back(&self, mut capture: Box<Capture>) {
        if capture.text.capacity() > POOLED_TEXT {
            return;
        }
        // The scope is let go of now: a pooled box must not keep a request's context alive.
        capture.scope = Scope::empty();
        capture.what = What::Empty;
        capture.text.clear();
        if let Some(parts) = &mut capture.error {
            parts.ends.clear();
            parts.ips.clear();
            if parts.draft.capacity() > POOLED_PARTS {
                parts.draft = Vec::new();
            }
            parts.draft.clear();
        }
        if self.free.is_full() {
            return self.set_aside(capture);
        }
        match self.free.push(fitted_out(capture)) {
            Ok(()) if self.has_spare.load(Ordering::Acquire) => self.refill(),
            Ok(()) => {}
            Err(capture) => self.set_aside(capture),
        }
    }

    fn set_aside(&self, capture: Box<Capture>) {
        self.spare
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(capture);
        self.has_spare.store(true, Ordering::Release);
    }

    /// Moves spare boxes into `free` while it has room.
    fn refill(&self) {
        let mut spare = self.spare.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(capture) = spare.pop() {
            if let Err(capture) = self.free.push(fitted_out(capture)) {
                spare.push(capture);
                break;
            }
        }
        self.has_spare.store(!spare.is_empty(), Ordering::Release);
    }

    /// Whether boxes are kept past the pooled ones.
    pub(crate) fn has_spare(&self) -> bool {
        self.has_spare.load(Ordering::Acquire)
    }

    /// Frees the boxes kept past the pooled ones: the worker does it once it has caught up
    /// with a burst.
    pub(crate) fn release_spare(&self) {
        let spare = std::mem::take(&mut *self.spare.lock().unwrap_or_else(|e| e.into_inner()));
        self.has_spare.store(false, Ordering::Release);
        drop(spare);
    }

    /// Frees every pooled and spare box: the worker does it once idle, so a burst's boxes do
    /// not outlive it.
    pub(crate) fn release(&self) {
        while self.free.pop().is_some() {}
        self.release_spare();
    }
}

/// `capture`, with room for an error's parts: made here, on the worker, so that an error
/// capture given a box that has only carried messages does not allocate on the caller's
/// thread. Only boxes the callers can take get it, so that a burst's spare message boxes do
/// not each carry one.
fn fitted_out(mut capture: Box<Capture>) -> Box<Capture> {
    capture.error.get_or_insert_default();
    capture
}

/// Spare boxes, linked through themselves: a burst leaves thousands, and a list of them would
/// be one more allocation of the burst's size.
#[derive(Default)]
struct Spare {
    last: Option<Box<Capture>>,
    len: usize,
}

impl Spare {
    fn push(&mut self, mut capture: Box<Capture>) {
        capture.what = What::SetAside(self.last.take());
        self.last = Some(capture);
        self.len += 1;
    }

    fn pop(&mut self) -> Option<Box<Capture>> {
        let mut capture = self.last.take()?;
        if let What::SetAside(before) = std::mem::take(&mut capture.what) {
            self.last = before;
        }
        self.len -= 1;
        Some(capture)
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Drop for Spare {
    /// One box at a time: dropped as a chain, the boxes would be dropped recursively, a stack
    /// frame each.
    fn drop(&mut self) {
        while self.pop().is_some() {}
    }
}

impl Handoff {
    /// A message at `level`.
    pub(crate) fn message(pool: &Pool, text: &str, level: Level, scope: Scope) -> Handoff {
        let mut capture = pool.take(scope, What::Empty);
        capture.text.push_str(text);
        capture.what = What::Message { level };
        Handoff(capture)
    }

    /// An error captured at `at`, with the stack walked from here when `stack` is set.
    pub(crate) fn error<E: std::error::Error + ?Sized>(
        pool: &Pool,
        error: &E,
        at: &'static Location<'static>,
        stack: bool,
        scope: Scope,
    ) -> Handoff {
        let mut capture = pool.take(scope, What::Empty);
        let (text, parts) = capture.text_and_parts();
        text.reserve(CHAIN_TEXT);
        let chain = ErrorChain::write(error, text, &mut parts.ends);
        if stack {
            crate::stacktrace::walk_into(&mut parts.ips);
        }
        capture.what = What::Error { chain, at, stack };
        Handoff(capture)
    }

    /// An integration's draft, written by `write`, at `place` when known (then with the stack
    /// walked from here when `stack` is set).
    pub(crate) fn draft(
        pool: &Pool,
        level: Level,
        place: Option<(&'static str, u32)>,
        stack: bool,
        scope: Scope,
        write: impl FnOnce(&mut Draft<'_>),
    ) -> Handoff {
        let mut capture = pool.take(scope, What::Empty);
        let (text, parts) = capture.text_and_parts();
        write(&mut Draft::new(text, &mut parts.draft, &mut parts.ends));
        let stack = stack && place.is_some();
        if stack {
            crate::stacktrace::walk_into(&mut parts.ips);
        }
        capture.what = What::Draft {
            level,
            place,
            stack,
        };
        Handoff(capture)
    }

    /// An event the caller built, with its stack if walked.
    pub(crate) fn event(
        pool: &Pool,
        event: Event,
        stack: Option<RawStack>,
        scope: Scope,
    ) -> Handoff {
        let id = event.event_id;
        let mut capture = pool.take(scope, What::Event(Box::new((event, stack))));
        capture.id = id;
        Handoff(capture)
    }

    /// The event's id.
    pub(crate) fn id(&self) -> EventId {
        self.0.id
    }

    /// Gives the box back to `pool` unread: for a capture the worker drops before building its
    /// event (a rate limit, an open circuit breaker, no way to send).
    pub(crate) fn recycle(self, pool: &Pool) {
        pool.give_back(self.0);
    }

    /// The event as captured, built on the worker; the box goes back to `pool`.
    pub(crate) fn unpack(self, pool: &Pool) -> Job {
        let mut capture = self.0;
        let scope = std::mem::replace(&mut capture.scope, Scope::empty());
        // An event the caller built carries its own time; the others take the capture's.
        let taken = (!matches!(capture.what, What::Event(_))).then(|| capture.taken.timestamp());
        let (mut event, stack) = match std::mem::take(&mut capture.what) {
            What::Empty | What::SetAside(_) => (Event::default(), None),
            What::Event(built) => *built,
            What::Message { level } => (Event::message(&capture.text, level), None),
            What::Error { chain, at, stack } => {
                let at = Anchor::at(at);
                let parts = capture.error.get_or_insert_default();
                let mut event = Event::default();
                chain.fill(&capture.text, 0, &parts.ends, &mut event);
                at.place(&mut event);
                // Copied, so that the box keeps its own for the next capture.
                let stack = stack.then(|| RawStack::walked(parts.ips.clone(), at));
                (event, stack)
            }
            What::Draft {
                level,
                place,
                stack,
            } => {
                let parts = capture.error.get_or_insert_default();
                let mut event =
                    draft::build(&parts.draft, &capture.text, &parts.ends, level, place);
                let at = place.map(|(file, line)| Anchor {
                    file: Cow::Borrowed(file),
                    line,
                });
                if let Some(at) = &at {
                    at.place(&mut event);
                }
                // Copied, so that the box keeps its own for the next capture.
                let stack = at
                    .filter(|_| stack)
                    .map(|at| RawStack::walked(parts.ips.clone(), at));
                (event, stack)
            }
        };
        event.event_id = capture.id;
        if let Some(taken) = taken {
            event.timestamp = taken;
        }
        pool.give_back(capture);
        Job {
            event,
            scope,
            stack,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope_with_tag() -> Scope {
        let mut scope = Scope::default();
        scope.set_tag("request", "r-1");
        scope
    }

    #[test]
    fn the_event_is_built_from_what_the_caller_wrote() {
        let pool = Pool::new();
        let handoff = Handoff::message(&pool, "disk full", Level::Warning, scope_with_tag());
        let id = handoff.id();
        let job = handoff.unpack(&pool);
        assert_eq!(job.event.event_id, id);
        assert_eq!(job.event.message.as_deref(), Some("disk full"));
        assert_eq!(job.event.level, Level::Warning);
        assert_eq!(job.scope.tag("request"), Some("r-1"));

        let error = "12a".parse::<u8>().expect_err("not a number");
        let at = Location::caller();
        let job = Handoff::error(&pool, &error, at, false, Scope::empty()).unpack(&pool);
        let exception = job.event.exception.expect("an exception");
        assert_eq!(exception.ty, "ParseIntError");
        assert_eq!(exception.value, "invalid digit found in string");
        assert_eq!(
            (job.event.file.as_deref(), job.event.line),
            (Some(at.file()), Some(at.line()))
        );
        assert!(job.stack.is_none());
    }

    #[test]
    fn a_built_event_keeps_its_time_and_the_others_take_the_captures() {
        let pool = Pool::new();
        let mut built = Event::message("from an integration", Level::Error);
        built.timestamp = Timestamp(UNIX_EPOCH + Duration::from_secs(1_700_000_000));
        let job = Handoff::event(&pool, built.clone(), None, Scope::empty()).unpack(&pool);
        assert_eq!(job.event.timestamp, built.timestamp);
        assert_eq!(job.event.event_id, built.event_id);

        let before = SystemTime::now();
        let job = Handoff::message(&pool, "now", Level::Info, Scope::empty()).unpack(&pool);
        let after = SystemTime::now();
        let at = job.event.timestamp.0;
        // Nanoseconds since the epoch keep the time to the nanosecond.
        assert!(
            before <= at && at <= after,
            "{at:?} within {before:?}..{after:?}"
        );
    }

    #[test]
    fn a_box_comes_back_emptied_and_lets_its_scope_go() {
        let pool = Pool::new();
        let scope = scope_with_tag();
        let handoff = Handoff::message(&pool, "first", Level::Info, scope.clone());
        let first = &*handoff.0 as *const Capture;
        drop(handoff.unpack(&pool));
        // The capture's snapshot of the scope is gone with it: only `scope` holds its data.
        assert_eq!(scope.sharers(), 1);
        let again = pool.take(Scope::empty(), What::Empty);
        assert_eq!(&*again as *const Capture, first, "the same box, reused");
        assert!(again.text.is_empty());
        assert!(again.text.capacity() >= "first".len(), "with its room kept");
    }

    impl Pool {
        fn spare_len(&self) -> usize {
            self.spare.lock().map(|spare| spare.len).unwrap_or_default()
        }
    }

    #[test]
    fn boxes_past_the_pool_are_kept_aside_and_no_huge_text_is_kept() {
        let pool = Pool::new();
        let huge = "x".repeat(POOLED_TEXT + 1);
        Handoff::message(&pool, &huge, Level::Info, Scope::empty()).recycle(&pool);
        assert!(pool.free.is_empty(), "a huge text is freed, not pooled");

        let handoffs: Vec<Handoff> = (0..POOLED + 100)
            .map(|_| Handoff::message(&pool, "m", Level::Info, Scope::empty()))
            .collect();
        for handoff in handoffs {
            handoff.recycle(&pool);
        }
        assert_eq!(pool.free.len(), POOLED);
        assert_eq!(pool.spare_len(), 100, "the others are kept aside");

        // As callers take pooled boxes, the next box given back brings spares in.
        let mut taken: Vec<Box<Capture>> = (0..10)
            .map(|_| pool.take(Scope::empty(), What::Empty))
            .collect();
        pool.give_back(taken.pop().expect("ten taken"));
        assert_eq!(pool.free.len(), POOLED);
        assert_eq!(pool.spare_len(), 91);

        pool.release_spare();
        assert_eq!((pool.free.len(), pool.spare_len()), (POOLED, 0));
        pool.release();
        assert!(pool.free.is_empty());
        assert_eq!(pool.spare_len(), 0);
    }

    /// What a burst's queue holds is this, times its depth (16,384 by default), plus each
    /// message's text: a message capture must stay small, whatever the rarer kinds need.
    #[test]
    #[cfg(target_pointer_width = "64")]
    fn a_queued_capture_is_small() {
        let size = std::mem::size_of::<Capture>();
        assert!(size <= 104, "a capture is {size} bytes");
    }
}
