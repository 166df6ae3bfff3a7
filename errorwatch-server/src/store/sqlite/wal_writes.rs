//! The write connection hands a commit's WAL frames to the kernel in one write.
//!
//! SQLite appends each page a commit changes to the write-ahead log as a frame, in two
//! `pwrite`s (the frame's 24-byte header, then the page), and then syncs the log. A batch
//! changes 12 to 15 pages, so its commit was some 25 system calls before the sync, on the
//! write thread, which is the file store's bottleneck. On the machine measured, 24 writes and
//! an `fdatasync` took 0.21 ms where the same bytes in one write and an `fdatasync` took
//! 0.12 ms; the server, interleaved with the build before this, stored 1.00-1.14x the events
//! a second.
//!
//! This module registers a VFS that is the platform's own in all but one thing: the writes to
//! a WAL file that follow one another are gathered in memory and written in one call when the
//! file is synced, read, sized, truncated or closed, or when a write does not follow on.
//!
//! Why no other connection can read a frame still gathered here: readers, and checkpoints,
//! only use the frames the wal-index says are committed, and SQLite adds a commit's frames to
//! the index after the commit's sync, which writes out what was gathered first. That needs
//! every commit through this VFS to sync: only the write connection uses it, and it runs with
//! `synchronous=FULL`. A gathered write that fails when it goes out fails that sync, and so
//! the commit, as a failed write would have.

use std::ffi::{c_int, c_void, CStr};
use std::ptr;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::OnceLock;

use rusqlite::ffi;

use super::super::StoreError;

/// The VFS's name, given to [`rusqlite::Connection::open_with_flags_and_vfs`].
pub(super) const NAME: &str = "errorwatch-wal-writes";
/// The same, as SQLite keeps it.
const NAME_C: &CStr = c"errorwatch-wal-writes";

/// The most bytes written in one call: the unix VFS writes at most 17 bits' worth of a buffer
/// per call (`seekAndWriteFd` masks the length with `0x1ffff`) and reads a zero-length
/// remainder as a full disk. A batch's commit is some 60 KiB, 31 frames fit.
const MAX_WRITE: usize = 0x1ffff;

/// The platform's VFS, which does all the work but gathering.
static PLATFORM: AtomicPtr<ffi::sqlite3_vfs> = AtomicPtr::new(ptr::null_mut());

/// Registers the VFS once per process (it is never the default one).
///
/// # Errors
///
/// When SQLite has no platform VFS or refuses the registration.
pub(super) fn register() -> Result<(), StoreError> {
    static REGISTERED: OnceLock<c_int> = OnceLock::new();
    let code = *REGISTERED.get_or_init(|| {
        // SAFETY: `sqlite3_vfs_find` and `sqlite3_vfs_register` are thread-safe and
        // initialise SQLite first. The registered VFS is leaked: SQLite keeps the pointer for
        // as long as the process runs.
        unsafe {
            let platform = ffi::sqlite3_vfs_find(ptr::null());
            if platform.is_null() {
                return ffi::SQLITE_ERROR;
            }
            PLATFORM.store(platform, Ordering::Release);
            // A copy of the platform's VFS, so every function of its own that it is given
            // this one's pointer finds the same settings there.
            let mut vfs = *platform;
            vfs.pNext = ptr::null_mut();
            vfs.zName = NAME_C.as_ptr();
            vfs.szOsFile += WAL_FILE_SIZE as c_int;
            vfs.xOpen = Some(open);
            ffi::sqlite3_vfs_register(Box::leak(Box::new(vfs)), 0)
        }
    });
    if code == ffi::SQLITE_OK {
        Ok(())
    } else {
        Err(StoreError::Sqlite(rusqlite::Error::SqliteFailure(
            ffi::Error::new(code),
            Some(format!("registering the {NAME} VFS")),
        )))
    }
}

/// A WAL file opened through this VFS: SQLite's file handle, what is gathered, then the
/// platform's own handle, in the same allocation ([`WAL_FILE_SIZE`] bytes in).
#[repr(C)]
struct WalFile {
    base: ffi::sqlite3_file,
    gathered: Vec<u8>,
    /// Where in the file `gathered` goes.
    gathered_at: i64,
}

/// Where the platform's handle starts; SQLite's allocations are 8-byte aligned.
const WAL_FILE_SIZE: usize = std::mem::size_of::<WalFile>().next_multiple_of(8);

/// Where the platform's handle sits in the allocation of `file`.
///
/// # Safety
///
/// `file` is an allocation of this VFS's `szOsFile` bytes.
unsafe fn inner(file: *mut ffi::sqlite3_file) -> *mut ffi::sqlite3_file {
    file.cast::<u8>()
        .add(WAL_FILE_SIZE)
        .cast::<ffi::sqlite3_file>()
}

/// The platform's handle behind `file`, and its methods.
///
/// # Safety
///
/// `file` is a [`WalFile`] that [`open`] opened and that is not closed yet.
unsafe fn platform(
    file: *mut ffi::sqlite3_file,
) -> (*mut ffi::sqlite3_file, &'static ffi::sqlite3_io_methods) {
    let inner = inner(file);
    (inner, &*(*inner).pMethods)
}

unsafe extern "C" fn open(
    _vfs: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    let platform_vfs = PLATFORM.load(Ordering::Acquire);
    let Some(platform_open) = (*platform_vfs).xOpen else {
        return ffi::SQLITE_ERROR;
    };
    if flags & ffi::SQLITE_OPEN_WAL == 0 {
        // Any other file is the platform's own, in the same memory.
        return platform_open(platform_vfs, name, file, flags, out_flags);
    }
    let inner = inner(file);
    (*inner).pMethods = ptr::null();
    let code = platform_open(platform_vfs, name, inner, flags, out_flags);
    if code != ffi::SQLITE_OK {
        // SQLite closes a file that failed to open only if its methods are set: ours are not.
        (*file).pMethods = ptr::null();
        if let Some(close) = (*inner)
            .pMethods
            .as_ref()
            .and_then(|methods| methods.xClose)
        {
            close(inner);
        }
        return code;
    }
    ptr::write(
        file.cast::<WalFile>(),
        WalFile {
            base: ffi::sqlite3_file {
                pMethods: &WAL_METHODS,
            },
            gathered: Vec::new(),
            gathered_at: 0,
        },
    );
    ffi::SQLITE_OK
}

/// Version 1: SQLite maps shared memory and pages through the database file's handle, never
/// through the WAL's.
static WAL_METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 1,
    xClose: Some(close),
    xRead: Some(read),
    xWrite: Some(write),
    xTruncate: Some(truncate),
    xSync: Some(sync),
    xFileSize: Some(file_size),
    xLock: Some(lock),
    xUnlock: Some(unlock),
    xCheckReservedLock: Some(check_reserved_lock),
    xFileControl: Some(file_control),
    xSectorSize: Some(sector_size),
    xDeviceCharacteristics: Some(device_characteristics),
    xShmMap: None,
    xShmLock: None,
    xShmBarrier: None,
    xShmUnmap: None,
    xFetch: None,
    xUnfetch: None,
};

/// Writes out what is gathered; what failed to go out is dropped with the error, which fails
/// the commit.
unsafe fn write_out(file: *mut ffi::sqlite3_file) -> c_int {
    let wal = &mut *file.cast::<WalFile>();
    if wal.gathered.is_empty() {
        return ffi::SQLITE_OK;
    }
    let (inner, methods) = platform(file);
    let code = match (methods.xWrite, c_int::try_from(wal.gathered.len())) {
        (Some(write), Ok(len)) => write(
            inner,
            wal.gathered.as_ptr().cast::<c_void>(),
            len,
            wal.gathered_at,
        ),
        _ => ffi::SQLITE_IOERR_WRITE,
    };
    #[cfg(test)]
    tests::PLATFORM_WRITES.with(|writes| writes.set(writes.get() + 1));
    wal.gathered.clear();
    code
}

unsafe extern "C" fn write(
    file: *mut ffi::sqlite3_file,
    data: *const c_void,
    amount: c_int,
    offset: i64,
) -> c_int {
    let Ok(len) = usize::try_from(amount) else {
        return ffi::SQLITE_IOERR_WRITE;
    };
    let wal = &mut *file.cast::<WalFile>();
    let end = wal.gathered_at + wal.gathered.len() as i64;
    if !wal.gathered.is_empty() && (offset != end || wal.gathered.len() + len > MAX_WRITE) {
        let code = write_out(file);
        if code != ffi::SQLITE_OK {
            return code;
        }
    }
    if len > MAX_WRITE {
        let (inner, methods) = platform(file);
        return methods.xWrite.map_or(ffi::SQLITE_IOERR_WRITE, |write| {
            write(inner, data, amount, offset)
        });
    }
    let wal = &mut *file.cast::<WalFile>();
    if wal.gathered.is_empty() {
        wal.gathered_at = offset;
    }
    wal.gathered
        .extend_from_slice(std::slice::from_raw_parts(data.cast::<u8>(), len));
    ffi::SQLITE_OK
}

/// Writes out what is gathered, then calls the platform's method: whatever the method does
/// with the file, it finds there every byte written before it.
unsafe fn after_write_out(
    file: *mut ffi::sqlite3_file,
    method: impl FnOnce(*mut ffi::sqlite3_file, &ffi::sqlite3_io_methods) -> c_int,
) -> c_int {
    let code = write_out(file);
    if code != ffi::SQLITE_OK {
        return code;
    }
    let (inner, methods) = platform(file);
    method(inner, methods)
}

unsafe extern "C" fn sync(file: *mut ffi::sqlite3_file, flags: c_int) -> c_int {
    after_write_out(file, |inner, methods| {
        methods
            .xSync
            .map_or(ffi::SQLITE_IOERR_FSYNC, |sync| sync(inner, flags))
    })
}

unsafe extern "C" fn close(file: *mut ffi::sqlite3_file) -> c_int {
    let written = write_out(file);
    let (inner, methods) = platform(file);
    let closed = methods.xClose.map_or(ffi::SQLITE_OK, |close| close(inner));
    ptr::drop_in_place(file.cast::<WalFile>());
    (*file).pMethods = ptr::null();
    if written != ffi::SQLITE_OK {
        written
    } else {
        closed
    }
}

unsafe extern "C" fn read(
    file: *mut ffi::sqlite3_file,
    data: *mut c_void,
    amount: c_int,
    offset: i64,
) -> c_int {
    after_write_out(file, |inner, methods| {
        methods.xRead.map_or(ffi::SQLITE_IOERR_READ, |read| {
            read(inner, data, amount, offset)
        })
    })
}

unsafe extern "C" fn truncate(file: *mut ffi::sqlite3_file, size: i64) -> c_int {
    after_write_out(file, |inner, methods| {
        methods
            .xTruncate
            .map_or(ffi::SQLITE_IOERR_TRUNCATE, |truncate| truncate(inner, size))
    })
}

unsafe extern "C" fn file_size(file: *mut ffi::sqlite3_file, size: *mut i64) -> c_int {
    after_write_out(file, |inner, methods| {
        methods
            .xFileSize
            .map_or(ffi::SQLITE_IOERR_FSTAT, |file_size| file_size(inner, size))
    })
}

unsafe extern "C" fn file_control(
    file: *mut ffi::sqlite3_file,
    op: c_int,
    arg: *mut c_void,
) -> c_int {
    after_write_out(file, |inner, methods| {
        methods
            .xFileControl
            .map_or(ffi::SQLITE_NOTFOUND, |control| control(inner, op, arg))
    })
}

unsafe extern "C" fn lock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    let (inner, methods) = platform(file);
    methods
        .xLock
        .map_or(ffi::SQLITE_OK, |lock| lock(inner, level))
}

unsafe extern "C" fn unlock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    let (inner, methods) = platform(file);
    methods
        .xUnlock
        .map_or(ffi::SQLITE_OK, |unlock| unlock(inner, level))
}

unsafe extern "C" fn check_reserved_lock(file: *mut ffi::sqlite3_file, out: *mut c_int) -> c_int {
    let (inner, methods) = platform(file);
    methods
        .xCheckReservedLock
        .map_or(ffi::SQLITE_OK, |check| check(inner, out))
}

unsafe extern "C" fn sector_size(file: *mut ffi::sqlite3_file) -> c_int {
    let (inner, methods) = platform(file);
    methods.xSectorSize.map_or(4096, |size| size(inner))
}

unsafe extern "C" fn device_characteristics(file: *mut ffi::sqlite3_file) -> c_int {
    let (inner, methods) = platform(file);
    methods
        .xDeviceCharacteristics
        .map_or(0, |characteristics| characteristics(inner))
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use rusqlite::{Connection, OpenFlags};

    use super::super::testing::ScratchDir;
    use super::*;

    thread_local! {
        /// Calls to the platform's `xWrite` for a WAL file, on this thread.
        pub(super) static PLATFORM_WRITES: Cell<u64> = const { Cell::new(0) };
    }

    /// A database file in a directory of its own.
    struct Scratch(ScratchDir);

    impl Scratch {
        fn new(name: &str) -> Scratch {
            // As the store does before it opens SQLite (see `allocator`).
            super::super::allocator::install();
            let scratch = Scratch(ScratchDir::new(&format!("wal-writes-{name}")));
            let conn = Connection::open(scratch.db()).expect("created");
            conn.pragma_update(None, "journal_mode", "WAL")
                .expect("WAL");
            conn.execute_batch(
                "CREATE TABLE rows (id INTEGER PRIMARY KEY, key TEXT NOT NULL, body BLOB NOT NULL);
                 CREATE INDEX rows_key ON rows(key);",
            )
            .expect("schema");
            scratch
        }

        fn db(&self) -> std::path::PathBuf {
            self.0.path().join("db.sqlite")
        }

        fn wal_len(&self) -> u64 {
            std::fs::metadata(self.0.path().join("db.sqlite-wal")).map_or(0, |m| m.len())
        }

        /// A connection through the VFS, as the write thread's is.
        fn gathering(&self) -> Connection {
            register().expect("registered");
            let conn = Connection::open_with_flags_and_vfs(
                self.db(),
                OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                NAME,
            )
            .expect("opened through the VFS");
            conn.pragma_update(None, "synchronous", "FULL")
                .expect("FULL");
            conn
        }
    }

    /// Inserts `rows` rows of `size` bytes each, with keys that land all over the index.
    fn insert(conn: &mut Connection, first: u64, rows: u64, size: usize) {
        let tx = conn.transaction().expect("begun");
        for n in first..first + rows {
            let key = format!("{:016x}", n.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            let body = vec![(n % 251) as u8; size];
            tx.execute(
                "INSERT INTO rows (id, key, body) VALUES (?1, ?2, ?3)",
                rusqlite::params![n, key, body],
            )
            .expect("inserted");
        }
        tx.commit().expect("committed");
    }

    fn writes() -> u64 {
        PLATFORM_WRITES.with(Cell::get)
    }

    #[test]
    fn a_commits_frames_go_out_in_one_write_and_other_connections_read_them() {
        let scratch = Scratch::new("commit");
        let mut conn = scratch.gathering();
        // The first commit after opening also writes the log's header, and syncs it alone.
        insert(&mut conn, 0, 1, 10);

        let (writes_before, wal_before) = (writes(), scratch.wal_len());
        insert(&mut conn, 1, 12, 3_000);
        let frames = (scratch.wal_len() - wal_before) / (4_096 + 24);
        assert!(frames >= 12, "{frames} frames");
        assert_eq!(writes() - writes_before, 1, "writes for {frames} frames");

        // A connection through the platform's VFS sees the commit whole.
        let reader = Connection::open(scratch.db()).expect("reader");
        let (rows, bytes): (i64, i64) = reader
            .query_row("SELECT count(*), sum(length(body)) FROM rows", [], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })
            .expect("read");
        assert_eq!((rows, bytes), (13, 10 + 12 * 3_000));
    }

    #[test]
    fn a_transaction_larger_than_the_cache_and_a_write_reads_back_what_it_spilled() {
        let scratch = Scratch::new("spill");
        let mut conn = scratch.gathering();
        // A cache of 8 pages: the transaction spills pages into the log before its commit
        // and reads them back, and writes some frames again in place.
        conn.pragma_update(None, "cache_size", 8)
            .expect("cache_size");
        let writes_before = writes();
        insert(&mut conn, 0, 1_000, 3_000);
        conn.execute("UPDATE rows SET body = zeroblob(2000) WHERE id % 7 = 0", [])
            .expect("updated");
        assert!(
            writes() - writes_before > 1,
            "nothing went out before the commit"
        );
        drop(conn);

        let reader = Connection::open(scratch.db()).expect("reader");
        let check: String = reader
            .query_row("PRAGMA integrity_check", [], |row| row.get(0))
            .expect("checked");
        assert_eq!(check, "ok");
        let (rows, bytes): (i64, i64) = reader
            .query_row("SELECT count(*), sum(length(body)) FROM rows", [], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })
            .expect("read");
        let rewritten = (0..1_000).filter(|n| n % 7 == 0).count() as i64;
        assert_eq!(rows, 1_000);
        assert_eq!(bytes, (1_000 - rewritten) * 3_000 + rewritten * 2_000);
    }
}
