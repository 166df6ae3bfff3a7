//! The SQLite file's commits are made durable with `fdatasync`, never with `fsync`.
//!
//! SQLite's own build calls `fsync` unless told that the platform's `fdatasync` works
//! (`HAVE_FDATASYNC`, which the workspace's `.cargo/config.toml` gives it). On a journalled
//! file system, `fsync` also writes the log's modification time, which commits the file
//! system's journal: on ext4 with a journal, a run of the ingest benchmark's SQLite target
//! made 2 608-2 802 journal commits with `fsync` and 700-731 with `fdatasync`.
//!
//! The two functions are defined in this test binary, where they take the C library's place
//! for SQLite too: each counts its calls, then makes the system call.
#![cfg(target_os = "linux")]

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};

use support::process::TempDir;
use support::TestServer;

static FSYNC_CALLS: AtomicUsize = AtomicUsize::new(0);
static FDATASYNC_CALLS: AtomicUsize = AtomicUsize::new(0);

/// Counts, then syncs as the C library's `fsync` does.
#[no_mangle]
pub extern "C" fn fsync(fd: libc::c_int) -> libc::c_int {
    FSYNC_CALLS.fetch_add(1, Ordering::SeqCst);
    // SAFETY: the system call takes a descriptor and sets `errno` on failure, as `fsync` does.
    unsafe { libc::syscall(libc::SYS_fsync, fd) as libc::c_int }
}

/// Counts, then syncs as the C library's `fdatasync` does.
#[no_mangle]
pub extern "C" fn fdatasync(fd: libc::c_int) -> libc::c_int {
    FDATASYNC_CALLS.fetch_add(1, Ordering::SeqCst);
    // SAFETY: as above.
    unsafe { libc::syscall(libc::SYS_fdatasync, fd) as libc::c_int }
}

#[tokio::test]
async fn commits_sync_with_fdatasync() {
    let dir = TempDir::new("sync");
    let database_url = dir.database_url();
    let s = TestServer::with(|config| config.database_url = database_url).await;
    let before = FDATASYNC_CALLS.load(Ordering::SeqCst);
    let answer = s.event(&support::v2("synced")).await;
    assert_eq!(answer.status, 202, "{}", answer.body);
    // The batch's commit synced the write-ahead log.
    assert!(FDATASYNC_CALLS.load(Ordering::SeqCst) > before);
    s.server.shutdown().await;
    assert_eq!(FSYNC_CALLS.load(Ordering::SeqCst), 0);
}
