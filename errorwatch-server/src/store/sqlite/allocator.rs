//! SQLite allocates through mimalloc, and keeps no memory statistics.
//!
//! SQLite does not allocate through Rust's allocator: left alone it calls the C library's
//! `malloc` behind a global mutex, to keep statistics this server never reads. Profiled under
//! the ingest benchmark in memory, the write thread spent about a fifth of its time there:
//! glibc's arena for that thread grew and shrank its heap around every batch (`mprotect`,
//! page faults, `unlink_chunk`), and each allocation took and released the statistics'
//! mutex. mimalloc, already the server's allocator, keeps freed pages for the thread that
//! will reuse them.
//!
//! SQLite takes this configuration only before it initialises, once per process: the first
//! store opened installs it. If something else in the process started SQLite first, SQLite
//! refuses it and keeps its own allocator, which is only slower.

use std::ffi::{c_int, c_void};
use std::sync::OnceLock;

use rusqlite::ffi;

/// Installs mimalloc as SQLite's allocator and turns its memory statistics off, unless SQLite
/// has already started in this process; says whether SQLite allocates through mimalloc.
pub(super) fn install() -> bool {
    static INSTALLED: OnceLock<bool> = OnceLock::new();
    *INSTALLED.get_or_init(|| {
        let methods = ffi::sqlite3_mem_methods {
            xMalloc: Some(malloc),
            xFree: Some(free),
            xRealloc: Some(realloc),
            xSize: Some(size),
            xRoundup: Some(roundup),
            xInit: Some(init),
            xShutdown: Some(shutdown),
            pAppData: std::ptr::null_mut(),
        };
        // SAFETY: `sqlite3_config` must not run while another thread uses SQLite. Every
        // connection of this crate is opened after `install`, which `OnceLock` runs to its end
        // before any other caller returns, and SQLite is initialised right after, so that no
        // connection opened elsewhere can start it half-configured. SQLite copies `methods`
        // before `sqlite3_config` returns. Once SQLite has started, both calls return
        // `SQLITE_MISUSE` and change nothing.
        unsafe {
            let memstatus = ffi::sqlite3_config(ffi::SQLITE_CONFIG_MEMSTATUS, 0 as c_int);
            let malloc = ffi::sqlite3_config(ffi::SQLITE_CONFIG_MALLOC, &raw const methods);
            ffi::sqlite3_initialize();
            if memstatus != ffi::SQLITE_OK || malloc != ffi::SQLITE_OK {
                tracing::debug!("SQLite had started already: it keeps its own allocator");
                return false;
            }
        }
        true
    })
}

/// Bytes as SQLite counts them: its sizes are `int`s, and never negative.
fn bytes(n: c_int) -> usize {
    usize::try_from(n).unwrap_or(0)
}

unsafe extern "C" fn malloc(n: c_int) -> *mut c_void {
    // SAFETY: any size may be asked of `mi_malloc`; a null answer is SQLite's out-of-memory.
    unsafe { libmimalloc_sys::mi_malloc(bytes(n)) }
}

unsafe extern "C" fn free(p: *mut c_void) {
    // SAFETY: SQLite frees only what `malloc` or `realloc` above gave it.
    unsafe { libmimalloc_sys::mi_free(p) }
}

unsafe extern "C" fn realloc(p: *mut c_void, n: c_int) -> *mut c_void {
    // SAFETY: as for `free`.
    unsafe { libmimalloc_sys::mi_realloc(p, bytes(n)) }
}

unsafe extern "C" fn size(p: *mut c_void) -> c_int {
    // SAFETY: as for `free`; SQLite asks only about its own live allocations.
    let usable = unsafe { libmimalloc_sys::mi_usable_size(p) };
    c_int::try_from(usable).unwrap_or(c_int::MAX)
}

unsafe extern "C" fn roundup(n: c_int) -> c_int {
    // SAFETY: `mi_good_size` only computes.
    let good = unsafe { libmimalloc_sys::mi_good_size(bytes(n)) };
    c_int::try_from(good).unwrap_or(n)
}

unsafe extern "C" fn init(_: *mut c_void) -> c_int {
    ffi::SQLITE_OK
}

unsafe extern "C" fn shutdown(_: *mut c_void) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_allocates_through_mimalloc_without_counting() {
        // Every test of this crate that opens SQLite installs it first.
        assert!(
            install(),
            "SQLite started before the allocator was installed"
        );
        // SAFETY: an allocation of SQLite's, freed by SQLite.
        unsafe {
            let p = ffi::sqlite3_malloc(100);
            assert!(!p.is_null());
            // Asked first: mimalloc's size of a block that is not its own is undefined.
            assert!(libmimalloc_sys::mi_is_in_heap_region(p));
            // mimalloc's own answer for the block, which SQLite now reports as its size.
            assert_eq!(
                usize::try_from(ffi::sqlite3_msize(p)).ok(),
                Some(libmimalloc_sys::mi_usable_size(p))
            );
            // Not counted, though it is held: no statistics, so no mutex around each
            // allocation.
            assert_eq!(ffi::sqlite3_memory_used(), 0);
            ffi::sqlite3_free(p);
        }
    }
}
