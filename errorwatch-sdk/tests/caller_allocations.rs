//! Once warm, a message or error capture allocates nothing on the caller's thread: what it
//! writes goes into a box the worker gave back. (With glibc's allocator, an allocation the
//! worker later frees is what made the caller wait on the worker before.)
//!
//! Counted by a global allocator that counts the allocations of the thread that asks.

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::Duration;

use errorwatch_sdk::Level;
use support::{client, options, wait_for, Listener};

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

impl std::fmt::Display for ChargeFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("charging the card failed")
    }
}

impl std::error::Error for ChargeFailed {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

#[test]
fn a_warm_capture_allocates_nothing_on_the_callers_thread() {
    let server = Listener::healthy();
    let client = client(options(&server.url).attach_stacktrace(true));
    let error = ChargeFailed("12a".parse::<u32>().expect_err("not a number"));
    let capture_both = |rounds: usize| {
        for _ in 0..rounds {
            client.capture_message("payment provider timed out", Level::Error);
            client.capture_error(&error);
        }
    };
    // Warm: the boxes have held an error with its stack (a box keeps the room its captures
    // needed), and the queue has its blocks.
    for _ in 0..64 {
        client.capture_error(&error);
    }
    assert!(
        client.flush(Duration::from_secs(30)),
        "the warm-up is delivered"
    );
    capture_both(32);
    assert!(
        client.flush(Duration::from_secs(30)),
        "the warm-up is delivered"
    );

    let before = allocations();
    capture_both(32);
    let allocated = allocations() - before;

    assert!(client.flush(Duration::from_secs(30)));
    assert_eq!(
        allocated, 0,
        "64 warm captures (messages, and errors with their stacks) allocated on the caller"
    );
    let stats = client.stats();
    assert_eq!(stats.sent, 192, "{stats:?}");
    assert!(wait_for(Duration::from_secs(30), || server.count() >= 192));
}
