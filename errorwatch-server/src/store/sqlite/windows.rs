//! The duplicate windows on SQLite: a log in the database, an index of it in memory.
//!
//! A window is a row appended to `dedupe_log` (the key, when it opened). Looking a key up in
//! the table by its text would need an index on the key, and keys are hashes of the events'
//! content: each new one lands in a random leaf of that index. That was 12 of the 26 pages a
//! five-event commit wrote to the WAL. Appended by id, a batch's windows share the table's last
//! page, and the write connection finds them again through an index in memory of the windows
//! still open (the last [`WINDOW_MS`]), keyed by a hash of the key.
//!
//! The table stays the authority, so every server on one file still shares one rule: each
//! batch runs inside `BEGIN IMMEDIATE`, and first reads the rows other connections appended
//! since it last looked. The memory only ever holds committed rows: a batch's own windows join
//! it once the batch commits, and after a batch that failed the write connection is opened
//! again with a new, empty index that is read back from the table. A key found in memory is
//! compared with its row's text before it counts as a repeat: two keys that hash alike are two
//! windows, never one event lost as a duplicate of another.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::BuildHasher;

use rusqlite::{params, Connection, OptionalExtension};

use super::super::batch::WINDOW_MS;
use super::super::StoreError;

/// The windows open as of the last committed batch, and those the current batch opens.
#[derive(Debug)]
pub(super) struct Windows {
    /// A hash of each key whose window may still be open: when it opened, and its row.
    open: HashMap<u64, Opened>,
    /// The same, oldest first, to forget them once closed.
    by_age: VecDeque<(u64, Opened)>,
    /// The highest row id read or written: rows above it are other connections'.
    last_id: i64,
    /// Opened by the current batch, not committed yet.
    pending: Vec<(u64, Opened)>,
    hasher: RandomState,
}

/// Windows held in memory at most: 17 seconds' worth at 15 000 distinct events a second.
const MAX_REMEMBERED: usize = 1 << 18;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Opened {
    at: i64,
    id: i64,
}

impl Windows {
    pub(super) fn new() -> Windows {
        Windows {
            open: HashMap::new(),
            by_age: VecDeque::new(),
            last_id: 0,
            pending: Vec::new(),
            hasher: RandomState::new(),
        }
    }

    /// Opens the window of each key (distinct) at its time, unless one is open; returns the
    /// keys whose window opened now. Inside the batch's transaction.
    pub(super) fn open(
        &mut self,
        conn: &Connection,
        keys: &[(&str, i64)],
    ) -> Result<HashSet<String>, StoreError> {
        self.pending.clear();
        self.read_new_rows(conn, keys.iter().map(|&(_, at)| at).max())?;
        let mut insert =
            conn.prepare_cached("INSERT INTO dedupe_log (key, started_at) VALUES (?1, ?2)")?;
        let mut opened = HashSet::with_capacity(keys.len());
        for &(key, at) in keys {
            let hash = self.hasher.hash_one(key);
            if let Some(window) = self.open.get(&hash) {
                if window.at > at - WINDOW_MS && key_of(conn, window.id)?.as_deref() == Some(key) {
                    continue;
                }
            }
            insert.execute(params![key, at])?;
            let id = conn.last_insert_rowid();
            self.pending.push((hash, Opened { at, id }));
            opened.insert(key.to_owned());
        }
        Ok(opened)
    }

    /// Forgets windows the current batch opened for events it then did not store.
    pub(super) fn close(&mut self, conn: &Connection, keys: &[&str]) -> Result<(), StoreError> {
        let mut delete = conn.prepare_cached("DELETE FROM dedupe_log WHERE id = ?1")?;
        for &key in keys {
            let hash = self.hasher.hash_one(key);
            // Only windows this batch opened are closed; two of its keys may hash alike.
            let mut found = None;
            for (i, &(h, window)) in self.pending.iter().enumerate() {
                if h == hash && key_of(conn, window.id)?.as_deref() == Some(key) {
                    found = Some((i, window.id));
                    break;
                }
            }
            if let Some((i, id)) = found {
                self.pending.swap_remove(i);
                delete.execute([id])?;
            }
        }
        Ok(())
    }

    /// The current batch committed: its windows are the table's now.
    pub(super) fn committed(&mut self) {
        for (hash, window) in std::mem::take(&mut self.pending) {
            self.remember(hash, window);
        }
    }

    /// Reads the rows appended since the last look (all of them, the first time) into memory,
    /// and forgets the windows closed by `now`.
    fn read_new_rows(&mut self, conn: &Connection, now: Option<i64>) -> Result<(), StoreError> {
        let mut rows = conn.prepare_cached(
            "SELECT id, key, started_at FROM dedupe_log WHERE id > ?1 ORDER BY id",
        )?;
        let mut rows = rows.query([self.last_id])?;
        while let Some(row) = rows.next()? {
            let id: i64 = row.get(0)?;
            let key: String = row.get(1)?;
            let at: i64 = row.get(2)?;
            self.last_id = self.last_id.max(id);
            if now.is_none_or(|now| at > now - WINDOW_MS) {
                self.remember(self.hasher.hash_one(&key), Opened { at, id });
            }
        }
        if let Some(now) = now {
            while let Some(&(hash, window)) = self.by_age.front() {
                // Beyond the bound (a clock stepped back keeps old windows at the front), the
                // oldest is forgotten: a repeat of it is stored, never an event lost.
                if window.at > now - WINDOW_MS && self.by_age.len() <= MAX_REMEMBERED {
                    break;
                }
                self.by_age.pop_front();
                // A later window of the same key (or of a key hashed alike) stays.
                if self.open.get(&hash) == Some(&window) {
                    self.open.remove(&hash);
                }
            }
        }
        Ok(())
    }

    fn remember(&mut self, hash: u64, window: Opened) {
        self.last_id = self.last_id.max(window.id);
        self.open.insert(hash, window);
        self.by_age.push_back((hash, window));
    }
}

/// The key of the window in row `id`, if the row is still there.
fn key_of(conn: &Connection, id: i64) -> Result<Option<String>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT key FROM dedupe_log WHERE id = ?1")?
        .query_row([id], |row| row.get(0))
        .optional()?)
}

#[cfg(test)]
mod tests {
    use super::super::testing::{event, ScratchDir};
    use super::super::SqliteStore;
    use super::*;
    use crate::store::{OpenOptions, Outcome};

    /// A database file in a directory of its own.
    struct Scratch(ScratchDir);

    impl Scratch {
        fn new(name: &str) -> Scratch {
            Scratch(ScratchDir::new(&format!("windows-{name}")))
        }

        fn db(&self) -> std::path::PathBuf {
            self.0.path().join("db.sqlite")
        }

        async fn open(&self, max_bytes: Option<u64>) -> SqliteStore {
            let options = OpenOptions {
                create_if_missing: true,
                max_bytes,
                ..OpenOptions::default()
            };
            SqliteStore::open(&format!("sqlite:{}", self.db().display()), &options)
                .await
                .expect("store")
        }
    }

    async fn write(store: &SqliteStore, project: i64, key: &str, at: i64) -> Outcome {
        let outcomes = store
            .write_batch(vec![event(project, key, at)])
            .await
            .expect("written");
        outcomes[0]
    }

    #[tokio::test]
    async fn two_servers_on_one_file_keep_one_window_per_key() {
        let scratch = Scratch::new("shared");
        let a = scratch.open(None).await;
        let b = scratch.open(None).await;
        let project = a
            .create_project("p", "hash", "prefix", 0)
            .await
            .expect("project");

        assert_eq!(write(&a, project, "k", 1_000).await, Outcome::Stored);
        // B reads the window A opened before deciding.
        assert_eq!(write(&b, project, "k", 2_000).await, Outcome::Duplicate);
        // Closed by now: B opens a new one, which A then finds.
        assert_eq!(
            write(&b, project, "k", 1_000 + WINDOW_MS).await,
            Outcome::Stored
        );
        assert_eq!(
            write(&a, project, "k", 1_000 + WINDOW_MS + 5).await,
            Outcome::Duplicate
        );
        assert_eq!(write(&a, project, "other", 2_000).await, Outcome::Stored);
        assert_eq!(a.event_count().await.expect("count"), 3);
        a.close().await;
        b.close().await;
    }

    #[tokio::test]
    async fn windows_outlive_a_restart_and_expire_from_the_oldest() {
        let scratch = Scratch::new("restart");
        let store = scratch.open(None).await;
        let project = store
            .create_project("p", "hash", "prefix", 0)
            .await
            .expect("project");
        for (i, key) in ["old", "k", "new"].into_iter().enumerate() {
            assert_eq!(
                write(&store, project, key, 1_000 * (i as i64 + 1)).await,
                Outcome::Stored
            );
        }
        store.close().await;

        let store = scratch.open(None).await;
        assert_eq!(write(&store, project, "k", 2_500).await, Outcome::Duplicate);
        // Rows up to the first window opened at or after the cutoff go, the rest stay.
        assert_eq!(store.expire_windows(2_000).await.expect("expired"), 1);
        assert_eq!(store.expire_windows(2_000).await.expect("expired"), 0);
        assert_eq!(write(&store, project, "k", 2_600).await, Outcome::Duplicate);
        assert_eq!(store.expire_windows(i64::MAX).await.expect("expired"), 2);
        store.close().await;
    }

    #[tokio::test]
    async fn a_batch_that_failed_leaves_no_window_behind() {
        let scratch = Scratch::new("failed");
        let store = scratch.open(None).await;
        let project = store
            .create_project("p", "hash", "prefix", 0)
            .await
            .expect("project");
        assert_eq!(
            write(&store, project, "first", 1_000).await,
            Outcome::Stored
        );
        store.close().await;
        let size = std::fs::metadata(scratch.db()).map_or(0, |m| m.len());

        // Room for a small event, not for a large one.
        let store = scratch.open(Some(size + 64 * 1024)).await;
        let mut large = event(project, "k", 2_000);
        large.payload = "x".repeat(1 << 20);
        assert!(store.write_batch(vec![large]).await.is_err());
        // The window the failed batch opened was rolled back with it.
        assert_eq!(write(&store, project, "k", 2_100).await, Outcome::Stored);
        assert_eq!(write(&store, project, "k", 2_200).await, Outcome::Duplicate);
        store.close().await;
    }
}
