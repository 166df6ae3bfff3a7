//! Giving a burst's memory back to the system once the SDK is idle.
//!
//! A burst's boxes are allocated on the threads that capture, so with glibc they live in
//! those threads' malloc arenas. `malloc_trim` returns the free pages inside every arena, but
//! of the threads' arenas (all but the main one) it leaves the top chunk, the free end of the
//! arena, as it is; and `malloc_trim` itself can make that top chunk large, when it merges
//! small free chunks into it. glibc trims a thread arena's top only when a chunk of 64 KiB
//! or more is freed into that arena. So each thread that allocates a box during a burst also
//! allocates one such mark, once per idle period, and the worker frees the marks right after
//! `malloc_trim`: each free trims the top of the arena the mark came from. Without the marks,
//! 10 to 35 MiB of a 39 MiB burst stayed resident after the idle period in 2 of 16 runs of
//! the idle-memory test on a loaded machine (`tests/symbol_memory.rs`).

/// Called on a capturing thread as it allocates a box: lets the memory it takes for a burst
/// be given back (see the module's documentation).
pub(crate) fn mark_this_threads_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    glibc::mark_this_threads_arena();
}

/// Returns the heap's free pages to the system, the top of every marked arena included:
/// glibc keeps what a burst freed otherwise, and the process would stay at its peak.
pub(crate) fn give_back_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    glibc::give_back_freed_memory();
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod glibc {
    use std::cell::Cell;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::LazyLock;

    use crossbeam_queue::ArrayQueue;

    /// glibc's threshold for trimming an arena on free (`FASTBIN_CONSOLIDATION_THRESHOLD`).
    const MARK_BYTES: usize = 64 * 1024;
    /// More marks than glibc makes arenas (8 per core) on any machine this runs on; a thread
    /// that finds them all taken goes without (its arena is most likely marked already).
    const MAX_MARKS: usize = 512;

    /// The marks taken since memory was last given back: allocated, never written, so each
    /// costs address space and not resident memory.
    static MARKS: LazyLock<ArrayQueue<Vec<u8>>> = LazyLock::new(|| ArrayQueue::new(MAX_MARKS));
    /// Counts the times memory was given back: a thread marks its arena once per period.
    static PERIOD: AtomicU32 = AtomicU32::new(0);

    thread_local! {
        static MARKED_IN: Cell<Option<u32>> = const { Cell::new(None) };
    }

    pub(super) fn mark_this_threads_arena() {
        let period = PERIOD.load(Ordering::Relaxed);
        let marked = MARKED_IN.try_with(|marked| marked.replace(Some(period)) == Some(period));
        if marked.unwrap_or(true) {
            return;
        }
        let _ = MARKS.push(Vec::with_capacity(MARK_BYTES));
    }

    pub(super) fn give_back_freed_memory() {
        // SAFETY: `malloc_trim` only releases free memory of glibc's own heap; it takes
        // glibc's arena locks itself and touches no memory in use.
        unsafe {
            libc::malloc_trim(0);
        }
        PERIOD.fetch_add(1, Ordering::Relaxed);
        while MARKS.pop().is_some() {}
    }
}
