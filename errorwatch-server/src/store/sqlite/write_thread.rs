//! Batches of events are written on a thread of their own, over a connection of their own.
//!
//! Through sqlx, each statement is a round trip to the connection's worker thread, and a
//! pooled connection is pinged on its way back to the pool: a batch of a few events paid six
//! thread wake-ups or more, and on a busy machine those, not SQLite, were most of its time.
//! Here the thread runs a runtime of its own, on which the server's writer loop runs
//! ([`WriteThread::spawn`]): the loop takes a batch from the handlers' queue, writes it with
//! plain calls into SQLite (each statement prepared once, bound row by row) and acknowledges
//! it, with no thread between. A batch written from anywhere else is handed over once.
//!
//! The connection is opened as the pool's are (same file, same pragmas) but never creates the
//! file. After a batch that fails it is closed, which rolls back whatever SQLite still holds
//! open and releases the write lock whatever state the error left it in, and the next batch
//! opens a new one.

use std::collections::HashSet;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;

use rusqlite::{params, Connection, OpenFlags};
use tokio::runtime::Handle;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::super::batch::{self, BatchTx, GroupUpdate, Outcome, ValueSeen};
use super::super::{NewEvent, StoreError};
use super::windows::Windows;
use super::{wal_writes, BUSY_TIMEOUT};

/// The statements a batch uses, and room to spare: each is prepared once per connection.
const STATEMENT_CACHE: usize = 32;

/// What the write connection opens, and how.
#[derive(Debug)]
pub(super) struct Target {
    /// The file, or the in-memory database's shared-cache name.
    pub name: PathBuf,
    /// An in-memory database, shared with the pool's connection.
    pub memory: bool,
    /// SQLite's `max_page_count`, when the database is bounded.
    pub max_pages: Option<u64>,
}

impl Target {
    fn open(&self) -> Result<Connection, StoreError> {
        // Never `SQLITE_OPEN_CREATE`: a file deleted underneath the server must not be
        // replaced by an empty one.
        let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        if self.memory {
            flags |= OpenFlags::SQLITE_OPEN_MEMORY | OpenFlags::SQLITE_OPEN_SHARED_CACHE;
        } else {
            flags |= OpenFlags::SQLITE_OPEN_PRIVATE_CACHE;
        }
        let conn = if self.memory {
            Connection::open_with_flags(&self.name, flags)?
        } else {
            // Its commits sync (`synchronous=FULL` below), which the VFS relies on.
            wal_writes::register()?;
            Connection::open_with_flags_and_vfs(&self.name, flags, wal_writes::NAME)?
        };
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        conn.pragma_update(None, "foreign_keys", true)?;
        if self.memory {
            // In a shared cache, a reader takes table locks that a writer would wait on (and
            // the other way round); without them neither waits, and no two can deadlock.
            conn.pragma_update(None, "read_uncommitted", true)?;
        } else {
            conn.pragma_update(None, "synchronous", "FULL")?;
        }
        if let Some(pages) = self.max_pages {
            conn.pragma_update(None, "max_page_count", pages)?;
        }
        Ok(conn)
    }
}

/// The write connection and what it knows of the committed duplicate windows; both are
/// dropped together after a failed batch.
#[derive(Debug)]
struct Writing {
    conn: Connection,
    windows: Windows,
}

impl Writing {
    fn open(target: &Target) -> Result<Box<Writing>, StoreError> {
        Ok(Box::new(Writing {
            conn: target.open()?,
            windows: Windows::new(),
        }))
    }
}

/// The write connection, opened again after a failed batch, until the store is closed.
#[derive(Debug)]
struct Batches {
    target: Target,
    conn: Mutex<Slot>,
}

#[derive(Debug)]
enum Slot {
    Open(Box<Writing>),
    /// Closed after a failed batch: the next one opens a new connection.
    Empty,
    /// The store is closed.
    Closed,
}

impl Batches {
    /// Writes `events` on the calling thread.
    fn write(&self, events: &[NewEvent]) -> Result<Vec<Outcome>, StoreError> {
        let mut slot = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let mut writing = match std::mem::replace(&mut *slot, Slot::Empty) {
            Slot::Open(writing) => writing,
            Slot::Empty => Writing::open(&self.target)?,
            Slot::Closed => {
                *slot = Slot::Closed;
                return Err(closed());
            }
        };
        let written = write(&mut writing, events);
        // A connection whose batch failed is not used again (see the module's comment).
        if written.is_ok() {
            *slot = Slot::Open(writing);
        }
        written
    }

    fn close(&self) {
        *self.conn.lock().unwrap_or_else(|e| e.into_inner()) = Slot::Closed;
    }
}

/// The write thread and its runtime; it ends once closed.
#[derive(Debug)]
pub(super) struct WriteThread {
    batches: Arc<Batches>,
    runtime: Handle,
    thread: ThreadId,
    /// Ends the runtime; `None` once closed.
    stop: Mutex<Option<(oneshot::Sender<()>, std::thread::JoinHandle<()>)>>,
}

impl WriteThread {
    /// Opens the connection (an error here is the caller's to report) and starts the thread.
    pub(super) fn start(target: Target) -> Result<WriteThread, StoreError> {
        let writing = Writing::open(&target)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .map_err(|e| StoreError::Sqlx(sqlx::Error::Io(e)))?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("errorwatch-sqlite-writer".into())
            .spawn(move || {
                runtime.block_on(async {
                    let _ = stopped.await;
                });
            })
            .map_err(|e| StoreError::Sqlx(sqlx::Error::Io(e)))?;
        Ok(WriteThread {
            batches: Arc::new(Batches {
                target,
                conn: Mutex::new(Slot::Open(writing)),
            }),
            runtime: handle,
            thread: thread.thread().id(),
            stop: Mutex::new(Some((stop, thread))),
        })
    }

    /// Runs `task` on the write thread: there, [`WriteThread::write`] calls SQLite directly.
    pub(super) fn spawn<F>(&self, task: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.runtime.spawn(task)
    }

    /// Writes `events` in one transaction; `Ok` once it has committed.
    pub(super) async fn write(&self, events: Vec<NewEvent>) -> Result<Vec<Outcome>, StoreError> {
        if std::thread::current().id() == self.thread {
            // Blocks only this thread's own runtime, which waits for the batch anyway.
            return self.batches.write(&events);
        }
        let batches = self.batches.clone();
        self.runtime
            .spawn(async move { batches.write(&events) })
            .await
            .unwrap_or_else(|_| Err(closed()))
    }

    /// Closes the connection and ends the thread (and whatever still runs on it).
    pub(super) async fn close(&self) {
        let running = self.stop.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some((stop, thread)) = running {
            let _ = stop.send(());
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
        self.batches.close();
    }
}

fn closed() -> StoreError {
    StoreError::Sqlx(sqlx::Error::PoolClosed)
}

/// One batch in one transaction, by the rules of [`batch::write`].
fn write(writing: &mut Writing, events: &[NewEvent]) -> Result<Vec<Outcome>, StoreError> {
    let Writing { conn, windows } = writing;
    // Prepared once, like the batch's other statements: `execute_batch` parses its text anew
    // on every call.
    conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
    // Every call into SQLite returns at once: the future is ready at its first poll.
    let outcomes = futures_executor::block_on(batch::write(&mut Tx { conn, windows }, events))?;
    conn.prepare_cached("COMMIT")?.execute([])?;
    // Only a transaction that ended is stored: one SQLite rolled back by itself and a
    // `COMMIT` that then ran in autocommit mode would not be.
    if !conn.is_autocommit() {
        return Err(StoreError::Sqlx(sqlx::Error::Protocol(
            "the batch's transaction is still open after COMMIT".into(),
        )));
    }
    windows.committed();
    Ok(outcomes)
}

/// A batch's transaction on the write connection.
struct Tx<'c> {
    conn: &'c Connection,
    windows: &'c mut Windows,
}

impl BatchTx for Tx<'_> {
    async fn open_windows(&mut self, keys: &[(&str, i64)]) -> Result<HashSet<String>, StoreError> {
        self.windows.open(self.conn, keys)
    }

    async fn close_windows(&mut self, keys: &[&str]) -> Result<(), StoreError> {
        self.windows.close(self.conn, keys)
    }

    async fn quota_used(&mut self, project_id: i64, day: i64) -> Result<i64, StoreError> {
        // A day first seen (or a database from before the quota table) starts from what it
        // stored.
        self.conn
            .prepare_cached(
                "INSERT INTO quota_usage (project_id, day, used) \
                 SELECT ?1, ?2, (SELECT count(*) FROM events \
                   WHERE project_id = ?1 AND received_at >= ?2 * 86400000) \
                 WHERE NOT EXISTS (SELECT 1 FROM quota_usage WHERE project_id = ?1 AND day = ?2)",
            )?
            .execute([project_id, day])?;
        Ok(self
            .conn
            .prepare_cached("SELECT used FROM quota_usage WHERE project_id = ?1 AND day = ?2")?
            .query_row([project_id, day], |row| row.get(0))?)
    }

    async fn add_usage(
        &mut self,
        project_id: i64,
        day: i64,
        stored: i64,
    ) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "UPDATE quota_usage SET used = used + ?1 WHERE project_id = ?2 AND day = ?3",
            )?
            .execute([stored, project_id, day])?;
        Ok(())
    }

    async fn upsert_groups(&mut self, groups: &[GroupUpdate<'_>]) -> Result<(), StoreError> {
        // Title, level, file and line are the first event's; type and value are back-filled
        // by the first event that has them.
        let mut upsert = self.conn.prepare_cached(
            "INSERT INTO groups (fingerprint, project_id, title, error_type, error_value, \
             grouping_rule, level, status, count, users_affected, first_seen, last_seen, file, \
             line, env) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'unresolved', ?8, 0, ?9, ?10, ?11, ?12, ?13) \
             ON CONFLICT(fingerprint) DO UPDATE SET \
               count = count + excluded.count, \
               error_type = coalesce(error_type, excluded.error_type), \
               error_value = coalesce(error_value, excluded.error_value), \
               env = excluded.env, \
               first_seen = min(first_seen, excluded.first_seen), \
               last_seen = max(last_seen, excluded.last_seen), \
               regressed_at = CASE WHEN status = 'resolved' THEN excluded.last_seen ELSE regressed_at END, \
               status = CASE WHEN status = 'ignored' THEN status ELSE 'unresolved' END",
        )?;
        for group in groups {
            let first = group.first;
            upsert.execute(params![
                first.fingerprint,
                first.project_id,
                first.title,
                group.error_type,
                group.error_value,
                first.grouping_rule,
                first.level,
                group.count,
                group.first_seen,
                group.last_seen,
                first.file,
                first.line,
                group.env,
            ])?;
        }
        Ok(())
    }

    async fn add_users(&mut self, pairs: &[(&str, &str)]) -> Result<(), StoreError> {
        // The pairs are distinct: each one not yet recorded is a new user of its group.
        let mut record = self.conn.prepare_cached(
            "INSERT INTO group_users (fingerprint, user_id) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
        )?;
        let mut count = self.conn.prepare_cached(
            "UPDATE groups SET users_affected = users_affected + 1 WHERE fingerprint = ?1",
        )?;
        for &(fingerprint, user) in pairs {
            if record.execute([fingerprint, user])? > 0 {
                count.execute([fingerprint])?;
            }
        }
        Ok(())
    }

    async fn add_hours(&mut self, hours: &[(&str, i64, i64)]) -> Result<(), StoreError> {
        let mut add = self.conn.prepare_cached(
            "INSERT INTO group_hours (fingerprint, hour, count) VALUES (?1, ?2, ?3) \
             ON CONFLICT(fingerprint, hour) DO UPDATE SET count = count + excluded.count",
        )?;
        for &(fingerprint, hour, count) in hours {
            add.execute(params![fingerprint, hour, count])?;
        }
        Ok(())
    }

    async fn add_values(&mut self, values: &[ValueSeen<'_>]) -> Result<(), StoreError> {
        let mut add = self.conn.prepare_cached(
            "INSERT INTO group_values (fingerprint, kind, value, count, last_seen) \
             VALUES (?1, ?2, ?3, ?4, ?5) \
             ON CONFLICT(fingerprint, kind, value) DO UPDATE SET \
               count = count + excluded.count, last_seen = max(last_seen, excluded.last_seen)",
        )?;
        for seen in values {
            add.execute(params![
                seen.fingerprint,
                seen.kind,
                seen.value,
                seen.count,
                seen.last_seen
            ])?;
        }
        Ok(())
    }

    async fn insert_events(&mut self, events: &[&NewEvent]) -> Result<(), StoreError> {
        let mut insert = self.conn.prepare_cached(
            "INSERT INTO events (event_id, project_id, fingerprint, received_at, created_at, \
             level, env, release, message, error_type, error_value, stack, file, line, user_id, \
             url, status_code, payload) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)",
        )?;
        // In the batch's order: ids follow it.
        for event in events {
            insert.execute(params![
                event.event_id,
                event.project_id,
                event.fingerprint,
                event.received_at,
                event.created_at,
                event.level,
                event.env,
                event.release,
                event.message,
                event.error_type,
                event.error_value,
                event.stack,
                event.file,
                event.line,
                event.user_id,
                event.url,
                event.status_code,
                event.payload,
            ])?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::event;
    use super::super::SqliteStore;
    use super::*;
    use crate::store::OpenOptions;

    #[tokio::test]
    async fn batches_are_written_on_the_thread_and_from_elsewhere_until_closed() {
        let store = SqliteStore::open("sqlite::memory:", &OpenOptions::default())
            .await
            .expect("store");
        let project = store
            .create_project("p", "hash", "prefix", 0)
            .await
            .expect("project");

        // From the test's runtime: handed over to the thread.
        let outcomes = store
            .write_batch(vec![event(project, "a", 1_000), event(project, "a", 1_000)])
            .await
            .expect("written");
        assert_eq!(outcomes, [Outcome::Stored, Outcome::Duplicate]);

        // On the thread itself, as the writer loop runs: written there, directly.
        let on_thread = store.clone();
        let outcomes = store
            .spawn_writer(async move {
                let here = std::thread::current().name().map(str::to_owned);
                let outcomes = on_thread
                    .write_batch(vec![event(project, "b", 1_000)])
                    .await;
                (here, outcomes)
            })
            .await
            .expect("the task runs");
        assert_eq!(outcomes.0.as_deref(), Some("errorwatch-sqlite-writer"));
        assert_eq!(outcomes.1.expect("written"), [Outcome::Stored]);
        // The pool's connection sees what the write connection committed.
        assert_eq!(store.event_count().await.expect("count"), 2);

        store.close().await;
        assert!(store
            .write_batch(vec![event(project, "c", 1_000)])
            .await
            .is_err());
    }
}
