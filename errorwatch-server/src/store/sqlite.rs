//! The SQLite backend: a WAL-mode file (or a private in-memory database) through sqlx, but
//! for batches of events, which a thread writes over a connection of its own
//! ([`write_thread`]).
//!
//! Write transactions are begun and committed by hand (`BEGIN IMMEDIATE`/`COMMIT`), never
//! through sqlx's transaction bookkeeping: after SQLite rolls a transaction back by itself (a
//! full disk, an I/O error), that bookkeeping can drift, and a later `commit()` then returns
//! `Ok` while SQLite is still inside a transaction that never reaches the disk. A connection
//! whose transaction did not commit is closed rather than reused, so no half-finished
//! transaction or write lock outlives the error that caused it.

mod allocator;
#[cfg(test)]
mod testing;
mod wal_writes;
mod windows;
mod write_thread;

use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sqlx::pool::PoolConnection;
use sqlx::sqlite::{
    Sqlite, SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{Row, SqlitePool};

use errorwatch_protocol::validate::{CheckIn, CheckInStatus, LogEntry};

use self::write_thread::{Target, WriteThread};
use super::batch::{self, Outcome};
use super::{
    new_checkin_id, rfc3339, ApiKey, Dialect, Group, GroupQuery, HourCount, NewEvent, OpenOptions,
    Project, ProjectAuth, SeenValue, StoreError, StoredEvent, EVENT_COLUMNS, GROUP_COLUMNS,
};

/// How long a statement waits for another connection's write lock (the pool's and the write
/// thread's alike).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// SQLite's page size, which `max_bytes` is counted in.
const PAGE_BYTES: u64 = 4096;

/// The SQLite store.
#[derive(Clone, Debug)]
pub(super) struct SqliteStore {
    pool: SqlitePool,
    /// The file and its identity when opened; `None` in memory.
    file: Option<FileIdentity>,
    memory: bool,
    /// Where batches of events are written.
    batches: Arc<WriteThread>,
}

/// Tells the in-memory databases of one process apart.
static MEMORY_DATABASES: AtomicU64 = AtomicU64::new(0);

impl SqliteStore {
    pub(super) async fn open(url: &str, options: &OpenOptions) -> Result<Self, StoreError> {
        allocator::install();
        let bad = |reason: String| StoreError::BadUrl {
            url: url.to_owned(),
            reason,
        };
        if !url.starts_with("sqlite:") {
            return Err(bad("only sqlite: and postgres: URLs are supported".into()));
        }
        let memory = url.contains(":memory:") || url.contains("mode=memory");
        let mut connect = SqliteConnectOptions::from_str(url).map_err(|e| bad(e.to_string()))?;
        if memory {
            // One database for the pool's connection and the write thread's: a shared cache
            // under a name of ours. Neither takes table locks for reading (see
            // `write_thread::Target::open`).
            let n = MEMORY_DATABASES.fetch_add(1, Ordering::Relaxed);
            connect = connect
                .filename(format!("file:errorwatch-memory-{}-{n}", std::process::id()))
                .in_memory(true)
                .shared_cache(true)
                .pragma("read_uncommitted", "true");
        }
        let path = (!memory).then(|| connect.get_filename().to_path_buf());
        if let Some(path) = &path {
            preflight(path, options.create_if_missing)?;
        }
        // Only this first connection may create the file: a connection the pool opens later,
        // after someone deleted the file, must fail rather than start an empty database that
        // the next restart would take for the real one.
        let mut connect = connect
            .create_if_missing(false)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let max_pages = options.max_bytes.map(|bytes| (bytes / PAGE_BYTES).max(1));
        if let Some(pages) = max_pages {
            connect = connect.pragma("max_page_count", pages.to_string());
        }
        if !memory {
            connect = connect
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full);
        }
        // An in-memory database lives as long as a connection to it: keep one, forever.
        let pool = if memory {
            SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
        } else {
            SqlitePoolOptions::new().max_connections(4)
        };
        let unusable = |error: &dyn std::fmt::Display| match &path {
            Some(path) => StoreError::Unusable {
                path: path.clone(),
                cause: diagnose(path, error),
            },
            None => bad(error.to_string()),
        };
        if path
            .as_ref()
            .is_some_and(|path| options.create_if_missing && !path.exists())
        {
            use sqlx::Connection;
            let first = SqliteConnection::connect_with(&connect.clone().create_if_missing(true))
                .await
                .map_err(|e| unusable(&e))?;
            let _ = first.close().await;
        }
        // A connection is a thread of this process, not a socket that may have died: pinging
        // it before each use (sqlx's default) would only add a round trip to every query.
        let pool = pool
            .test_before_acquire(false)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(connect.clone())
            .await
            .map_err(|e| unusable(&e))?;
        let file = match &path {
            Some(path) => Some(FileIdentity::of(path).map_err(|e| unusable(&e))?),
            None => None,
        };
        let batches = Arc::new(
            WriteThread::start(Target {
                name: connect.get_filename().to_path_buf(),
                memory,
                max_pages,
            })
            .map_err(|e| unusable(&e))?,
        );
        let store = SqliteStore {
            pool,
            file,
            memory,
            batches,
        };
        sqlx::migrate!("./migrations/sqlite")
            .run(&store.pool)
            .await
            .map_err(|e| match e {
                sqlx::migrate::MigrateError::Execute(e) => unusable(&e),
                other => StoreError::Migrate(other),
            })?;
        // A store that opens but can never write (read-only, no permission) would take events
        // only to refuse them: say so now, with the cause. A full one may get space back, so
        // the server starts, unready, and answers 503 until it does.
        match store
            .probe_write(chrono::Utc::now().timestamp_millis())
            .await
        {
            Err(error) if !is_full(&error) => return Err(unusable(&error)),
            _ => {}
        }
        Ok(store)
    }

    /// Begins a write transaction on a connection of its own.
    async fn begin(&self) -> Result<WriteTx, StoreError> {
        let mut tx = self.writer().await?;
        sqlx::query("BEGIN IMMEDIATE").execute(&mut *tx).await?;
        Ok(tx)
    }

    /// A connection for a write transaction not begun yet.
    async fn writer(&self) -> Result<WriteTx, StoreError> {
        Ok(WriteTx {
            conn: Some(self.pool.acquire().await?),
            committed: false,
            memory: self.memory,
        })
    }

    pub(super) fn check_file(&self) -> Result<(), StoreError> {
        match &self.file {
            Some(file) => file.check(),
            None => Ok(()),
        }
    }

    pub(super) async fn probe_write(&self, now: i64) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        // Big enough to need new pages, so a full database fails here as events would.
        sqlx::query("INSERT INTO write_probe (written_at, filler) VALUES (?, zeroblob(65536))")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM write_probe")
            .execute(&mut *tx)
            .await?;
        tx.commit().await
    }

    /// Whether the store answers.
    pub(super) async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    /// Creates a project with one API key (given by its hash) and returns its id.
    pub(super) async fn create_project(
        &self,
        name: &str,
        key_hash: &str,
        key_prefix: &str,
        now: i64,
    ) -> Result<i64, StoreError> {
        let mut tx = self.begin().await?;
        // Checked inside the write transaction, so two creations cannot both pass.
        let taken: Option<i64> = sqlx::query("SELECT id FROM projects WHERE name = ?")
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?
            .map(|row| row.try_get(0))
            .transpose()?;
        if let Some(id) = taken {
            return Err(StoreError::Conflict(format!(
                "a project named {name:?} exists already (id {id})"
            )));
        }
        let id: i64 =
            sqlx::query("INSERT INTO projects (name, created_at) VALUES (?, ?) RETURNING id")
                .bind(name)
                .bind(now)
                .fetch_one(&mut *tx)
                .await?
                .try_get(0)?;
        insert_key(&mut tx, id, key_hash, key_prefix, now).await?;
        tx.commit().await?;
        Ok(id)
    }

    pub(super) async fn projects(&self) -> Result<Vec<Project>, StoreError> {
        let rows = sqlx::query(
            "SELECT p.id, p.name, p.created_at, p.ingestion_enabled, p.sample_rate, p.daily_quota, \
             (SELECT count(*) FROM api_keys k WHERE k.project_id = p.id AND k.revoked_at IS NULL) \
             FROM projects p ORDER BY p.id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(Project {
                    id: row.try_get(0)?,
                    name: row.try_get(1)?,
                    created_at: rfc3339(row.try_get(2)?),
                    ingestion_enabled: row.try_get(3)?,
                    sample_rate: row.try_get(4)?,
                    daily_quota: row.try_get(5)?,
                    live_keys: row.try_get(6)?,
                })
            })
            .collect()
    }

    pub(super) async fn api_keys(&self, project: Option<i64>) -> Result<Vec<ApiKey>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, project_id, key_prefix, created_at, revoked_at FROM api_keys \
             WHERE ?1 IS NULL OR project_id = ?1 ORDER BY id",
        )
        .bind(project)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(ApiKey {
                    id: row.try_get(0)?,
                    project_id: row.try_get(1)?,
                    prefix: row.try_get(2)?,
                    created_at: rfc3339(row.try_get(3)?),
                    revoked_at: row.try_get::<Option<i64>, _>(4)?.map(rfc3339),
                })
            })
            .collect()
    }

    pub(super) async fn add_api_key(
        &self,
        project_id: i64,
        key_hash: &str,
        key_prefix: &str,
        now: i64,
    ) -> Result<i64, StoreError> {
        let mut tx = self.begin().await?;
        let exists = sqlx::query("SELECT 1 FROM projects WHERE id = ?")
            .bind(project_id)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        if !exists {
            return Err(StoreError::NotFound(format!(
                "no project has id {project_id}"
            )));
        }
        let id = insert_key(&mut tx, project_id, key_hash, key_prefix, now).await?;
        tx.commit().await?;
        Ok(id)
    }

    pub(super) async fn revoke_api_key(&self, key_id: i64, now: i64) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        let revoked_at: Option<Option<i64>> =
            sqlx::query("SELECT revoked_at FROM api_keys WHERE id = ?")
                .bind(key_id)
                .fetch_optional(&mut *tx)
                .await?
                .map(|row| row.try_get(0))
                .transpose()?;
        match revoked_at {
            None => Err(StoreError::NotFound(format!("no API key has id {key_id}"))),
            Some(Some(_)) => Ok(false),
            Some(None) => {
                sqlx::query("UPDATE api_keys SET revoked_at = ? WHERE id = ?")
                    .bind(now)
                    .bind(key_id)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(true)
            }
        }
    }

    /// Changes a project's ingestion settings.
    pub(super) async fn update_project(
        &self,
        project_id: i64,
        ingestion_enabled: bool,
        sample_rate: f64,
        daily_quota: Option<i64>,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE projects SET ingestion_enabled = ?, sample_rate = ?, daily_quota = ? WHERE id = ?")
            .bind(ingestion_enabled)
            .bind(sample_rate)
            .bind(daily_quota)
            .bind(project_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Every live key with its project's settings (the key cache is built from it).
    pub(super) async fn all_keys(&self) -> Result<Vec<ProjectAuth>, StoreError> {
        let rows = sqlx::query(
            "SELECT k.key_hash, p.id, p.ingestion_enabled, p.sample_rate, p.daily_quota \
             FROM api_keys k JOIN projects p ON p.id = k.project_id WHERE k.revoked_at IS NULL",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|row| {
                Ok(ProjectAuth {
                    key_hash: row.try_get(0)?,
                    project_id: row.try_get(1)?,
                    ingestion_enabled: row.try_get(2)?,
                    sample_rate: row.try_get(3)?,
                    daily_quota: row.try_get(4)?,
                })
            })
            .collect()
    }

    /// Writes a batch of events and their groups in one transaction, deciding each event's
    /// fate by the rules of [`batch::write`].
    pub(super) async fn write_batch(
        &self,
        events: Vec<NewEvent>,
    ) -> Result<Vec<Outcome>, StoreError> {
        self.batches.write(events).await
    }

    /// Claims `task` for this server when it last ran `every` ms before `now` or longer ago.
    pub(super) async fn claim_task(
        &self,
        task: &str,
        now: i64,
        every: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        let claimed = sqlx::query(
            "INSERT INTO maintenance (task, last_run) VALUES (?1, ?2) \
             ON CONFLICT(task) DO UPDATE SET last_run = excluded.last_run \
             WHERE maintenance.last_run <= excluded.last_run - ?3 RETURNING task",
        )
        .bind(task)
        .bind(now)
        .bind(every)
        .fetch_optional(&mut *tx)
        .await?
        .is_some();
        tx.commit().await?;
        Ok(claimed)
    }

    /// Forgets duplicate windows that closed before `cutoff`: the log's rows up to the first
    /// one opened since, found without scanning past it.
    pub(super) async fn expire_windows(&self, cutoff: i64) -> Result<u64, StoreError> {
        let mut tx = self.begin().await?;
        let done = sqlx::query(
            "DELETE FROM dedupe_log WHERE id < coalesce(\
               (SELECT id FROM dedupe_log WHERE started_at >= ?1 ORDER BY id LIMIT 1), \
               (SELECT max(id) + 1 FROM dedupe_log))",
        )
        .bind(cutoff)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }

    /// Lists groups.
    pub(super) async fn groups(&self, query: &GroupQuery) -> Result<(Vec<Group>, i64), StoreError> {
        let (list_sql, count_sql) = query.sql(&Dialect {
            placeholder: |_| "?".into(),
            position: "instr",
        });
        macro_rules! bind_filters {
            ($q:expr) => {{
                let mut q = $q;
                if let Some(project) = query.project {
                    q = q.bind(project);
                }
                for value in query.text_filters() {
                    q = q.bind(value);
                }
                q
            }};
        }
        let rows = bind_filters!(sqlx::query(&list_sql))
            .bind(query.limit)
            .bind((query.page - 1) * query.limit)
            .fetch_all(&self.pool)
            .await?;
        let total: i64 = bind_filters!(sqlx::query(&count_sql))
            .fetch_one(&self.pool)
            .await?
            .try_get(0)?;
        let groups = rows.iter().map(group_from_row).collect::<Result<_, _>>()?;
        Ok((groups, total))
    }

    /// One group.
    pub(super) async fn group(&self, fingerprint: &str) -> Result<Option<Group>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {GROUP_COLUMNS} FROM groups WHERE fingerprint = ?"
        ))
        .bind(fingerprint)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(group_from_row).transpose()
    }

    /// A group's events, newest first.
    pub(super) async fn group_events(
        &self,
        fingerprint: &str,
        page: i64,
        limit: i64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE fingerprint = ? ORDER BY id DESC LIMIT ? OFFSET ?"
        ))
        .bind(fingerprint)
        .bind(limit)
        .bind((page - 1) * limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(event_from_row).collect()
    }

    pub(super) async fn group_event_count(&self, fingerprint: &str) -> Result<i64, StoreError> {
        Ok(
            sqlx::query("SELECT count(*) FROM events WHERE fingerprint = ?")
                .bind(fingerprint)
                .fetch_one(&self.pool)
                .await?
                .try_get(0)?,
        )
    }

    pub(super) async fn activity(
        &self,
        fingerprints: &[String],
        since_hour: i64,
    ) -> Result<Vec<HourCount>, StoreError> {
        if fingerprints.is_empty() {
            return Ok(Vec::new());
        }
        let list = vec!["?"; fingerprints.len()].join(", ");
        let sql = format!(
            "SELECT fingerprint, hour, count FROM group_hours \
             WHERE fingerprint IN ({list}) AND hour >= ?"
        );
        let mut query = sqlx::query(&sql);
        for fingerprint in fingerprints {
            query = query.bind(fingerprint);
        }
        let rows = query.bind(since_hour).fetch_all(&self.pool).await?;
        rows.iter().map(hour_count_from_row).collect()
    }

    pub(super) async fn seen_values(
        &self,
        fingerprint: &str,
    ) -> Result<Vec<SeenValue>, StoreError> {
        let rows = sqlx::query(
            "SELECT kind, value, count, last_seen FROM group_values WHERE fingerprint = ? \
             ORDER BY kind, last_seen DESC",
        )
        .bind(fingerprint)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(seen_value_from_row).collect()
    }

    /// The newest `limit` events of every group, newest first (for exports, demos and tests).
    pub(super) async fn events(&self, limit: i64) -> Result<Vec<StoredEvent>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM events ORDER BY id DESC LIMIT ?"
        ))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(event_from_row).collect()
    }

    /// Resolves or reopens a group; returns whether it exists.
    pub(super) async fn set_status(
        &self,
        fingerprint: &str,
        status: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE groups SET status = ?, resolved_at = CASE WHEN ? = 'resolved' THEN ? ELSE NULL END \
             WHERE fingerprint = ?",
        )
        .bind(status)
        .bind(status)
        .bind(now)
        .bind(fingerprint)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// How many events are stored.
    pub(super) async fn event_count(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query("SELECT count(*) FROM events")
            .fetch_one(&self.pool)
            .await?
            .try_get(0)?)
    }

    /// Deletes events received before `cutoff` (ms); returns how many.
    pub(super) async fn purge_before(&self, cutoff: i64) -> Result<u64, StoreError> {
        let events = sqlx::query("DELETE FROM events WHERE received_at < ?")
            .bind(cutoff)
            .execute(&self.pool)
            .await?;
        let logs = sqlx::query("DELETE FROM logs WHERE received_at < ?")
            .bind(cutoff)
            .execute(&self.pool)
            .await?;
        let checkins = sqlx::query("DELETE FROM cron_checkins WHERE created_at < ?")
            .bind(cutoff)
            .execute(&self.pool)
            .await?;
        sqlx::query("DELETE FROM group_hours WHERE hour < ?")
            .bind(cutoff.div_euclid(batch::HOUR_MS))
            .execute(&self.pool)
            .await?;
        Ok(events.rows_affected() + logs.rows_affected() + checkins.rows_affected())
    }

    /// Stores a log line of `project_id`, committed before it returns.
    pub(super) async fn write_log(
        &self,
        project_id: i64,
        entry: &LogEntry,
        received_at: i64,
    ) -> Result<i64, StoreError> {
        let json = |value: &serde_json::Value| (!value.is_null()).then(|| value.to_string());
        let done = sqlx::query(
            "INSERT INTO logs (project_id, created_at, received_at, level, channel, message, source, \
             env, release, url, request_id, user_id, trace_id, span_id, context, extra) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(project_id)
        .bind(entry.created_at_ms)
        .bind(received_at)
        .bind(&entry.level)
        .bind(&entry.channel)
        .bind(&entry.message)
        .bind(&entry.source)
        .bind(&entry.env)
        .bind(&entry.release)
        .bind(&entry.url)
        .bind(&entry.request_id)
        .bind(&entry.user_id)
        .bind(&entry.trace_id)
        .bind(&entry.span_id)
        .bind(json(&entry.context))
        .bind(json(&entry.extra))
        .execute(&self.pool)
        .await?;
        Ok(done.last_insert_rowid())
    }

    /// The newest log lines, newest first (of one project when given).
    pub(super) async fn logs(
        &self,
        project: Option<i64>,
        limit: i64,
    ) -> Result<Vec<serde_json::Value>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, project_id, created_at, level, channel, message, source, env, release, url, \
             request_id, user_id, trace_id, span_id, context, extra FROM logs \
             WHERE ?1 IS NULL OR project_id = ?1 ORDER BY id DESC LIMIT ?2",
        )
        .bind(project)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(log_json).collect()
    }

    /// Records a check-in of `project_id`, creating its monitor on first sight, in one
    /// transaction. A finish (`ok`/`error`) with the `checkinId` of a start completes that
    /// start; anything else is a new check-in. Returns the check-in as the contract shows it.
    pub(super) async fn check_in(
        &self,
        project_id: i64,
        check_in: &CheckIn,
        now: i64,
    ) -> Result<serde_json::Value, StoreError> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO cron_monitors (project_id, slug, env, created_at) VALUES (?, ?, ?, ?) \
             ON CONFLICT(project_id, slug) DO NOTHING",
        )
        .bind(project_id)
        .bind(&check_in.slug)
        .bind(&check_in.env)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let monitor_id: i64 =
            sqlx::query("SELECT id FROM cron_monitors WHERE project_id = ? AND slug = ?")
                .bind(project_id)
                .bind(&check_in.slug)
                .fetch_one(&mut *tx)
                .await?
                .try_get(0)?;
        let status = check_in.status.as_str();
        let payload = check_in.payload.as_ref().map(serde_json::Value::to_string);
        let started = match (check_in.status, &check_in.checkin_id) {
            (CheckInStatus::InProgress, _) | (_, None) => None,
            (_, Some(checkin_id)) => sqlx::query(
                "SELECT id, started_at FROM cron_checkins \
                 WHERE monitor_id = ? AND checkin_id = ? AND status = 'in_progress' LIMIT 1",
            )
            .bind(monitor_id)
            .bind(checkin_id)
            .fetch_optional(&mut *tx)
            .await?
            .map(|row| -> Result<(i64, Option<i64>), StoreError> {
                Ok((row.try_get(0)?, row.try_get(1)?))
            })
            .transpose()?,
        };
        let id = match started {
            Some((id, started_at)) => {
                let duration = check_in.duration.or_else(|| started_at.map(|at| now - at));
                sqlx::query(
                    "UPDATE cron_checkins SET status = ?, duration = ?, finished_at = ?, \
                     payload = coalesce(?, payload) WHERE id = ?",
                )
                .bind(status)
                .bind(duration)
                .bind(now)
                .bind(&payload)
                .bind(id)
                .execute(&mut *tx)
                .await?;
                id
            }
            None => {
                let in_progress = check_in.status == CheckInStatus::InProgress;
                let checkin_id = if in_progress {
                    Some(check_in.checkin_id.clone().unwrap_or_else(new_checkin_id))
                } else {
                    check_in.checkin_id.clone()
                };
                sqlx::query(
                    "INSERT INTO cron_checkins (monitor_id, status, checkin_id, duration, env, \
                     payload, started_at, finished_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                )
                .bind(monitor_id)
                .bind(status)
                .bind(checkin_id)
                .bind(check_in.duration)
                .bind(&check_in.env)
                .bind(&payload)
                .bind(in_progress.then_some(now))
                .bind((!in_progress).then_some(now))
                .bind(now)
                .execute(&mut *tx)
                .await?
                .last_insert_rowid()
            }
        };
        sqlx::query("UPDATE cron_monitors SET last_checkin_at = ?, last_status = ? WHERE id = ?")
            .bind(now)
            .bind(status)
            .bind(monitor_id)
            .execute(&mut *tx)
            .await?;
        let row = sqlx::query(
            "SELECT id, monitor_id, status, duration, env, checkin_id, payload, started_at, \
             finished_at, created_at FROM cron_checkins WHERE id = ?",
        )
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        checkin_json(&row)
    }

    /// The newest check-ins, newest first, with their job's slug (of one project when given).
    pub(super) async fn checkins(
        &self,
        project: Option<i64>,
        limit: i64,
    ) -> Result<Vec<serde_json::Value>, StoreError> {
        let rows = sqlx::query(
            "SELECT c.id, c.monitor_id, c.status, c.duration, c.env, c.checkin_id, c.payload, \
             c.started_at, c.finished_at, c.created_at, m.slug, m.project_id \
             FROM cron_checkins c JOIN cron_monitors m ON m.id = c.monitor_id \
             WHERE ?1 IS NULL OR m.project_id = ?1 ORDER BY c.id DESC LIMIT ?2",
        )
        .bind(project)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let mut checkin = checkin_json(row)?;
                checkin["slug"] = row.try_get::<String, _>(10)?.into();
                checkin["projectId"] = row.try_get::<i64, _>(11)?.into();
                Ok(checkin)
            })
            .collect()
    }

    /// Runs `task` on the thread that writes batches (see [`write_thread`]).
    pub(super) fn spawn_writer<F>(&self, task: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.batches.spawn(task)
    }

    /// Closes the write thread's connection, then the pool (the last connection to close
    /// checkpoints the WAL).
    pub(super) async fn close(&self) {
        self.batches.close().await;
        super::close_pool(&self.pool).await;
    }
}

super::row_decoders!(sqlx::sqlite::SqliteRow);

/// Inserts a key (given by its hash) of `project_id` in `tx`; returns the key's id.
async fn insert_key(
    tx: &mut WriteTx,
    project_id: i64,
    key_hash: &str,
    key_prefix: &str,
    now: i64,
) -> Result<i64, StoreError> {
    Ok(sqlx::query(
        "INSERT INTO api_keys (project_id, key_hash, key_prefix, created_at) \
         VALUES (?, ?, ?, ?) RETURNING id",
    )
    .bind(project_id)
    .bind(key_hash)
    .bind(key_prefix)
    .bind(now)
    .fetch_one(&mut **tx)
    .await?
    .try_get(0)?)
}

/// A write transaction begun by hand. Dropped without a successful [`WriteTx::commit`], its
/// connection is closed rather than returned to the pool: closing rolls back whatever SQLite
/// still holds open and releases the write lock, whatever state the error left it in.
struct WriteTx {
    /// Always `Some` until dropped.
    conn: Option<PoolConnection<Sqlite>>,
    committed: bool,
    /// An in-memory database dies with its only connection; there, the transaction is rolled
    /// back instead (no disk can leave it half-written).
    memory: bool,
}

impl WriteTx {
    /// Commits; `Ok` only when SQLite says the transaction reached the database.
    async fn commit(mut self) -> Result<(), StoreError> {
        sqlx::query("COMMIT").execute(&mut *self).await?;
        self.committed = true;
        Ok(())
    }
}

impl Deref for WriteTx {
    type Target = SqliteConnection;

    fn deref(&self) -> &SqliteConnection {
        self.conn
            .as_deref()
            .unwrap_or_else(|| unreachable!("the connection is only taken on drop"))
    }
}

impl DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        self.conn
            .as_deref_mut()
            .unwrap_or_else(|| unreachable!("the connection is only taken on drop"))
    }
}

impl Drop for WriteTx {
    fn drop(&mut self) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        if self.committed {
            return;
        }
        if !self.memory {
            conn.close_on_drop();
            return;
        }
        // The one in-memory connection goes back to the pool only after the rollback, so the
        // next writer cannot find the transaction still open.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
            });
        }
    }
}

/// Which file the database was when opened: a file deleted or replaced underneath the server
/// must stop it from acknowledging events (they would go to an unlinked inode).
#[derive(Clone, Debug)]
struct FileIdentity {
    path: PathBuf,
    device: u64,
    inode: u64,
}

impl FileIdentity {
    fn of(path: &Path) -> std::io::Result<FileIdentity> {
        let (device, inode) = identity(&std::fs::metadata(path)?);
        Ok(FileIdentity {
            path: path.to_path_buf(),
            device,
            inode,
        })
    }

    fn check(&self) -> Result<(), StoreError> {
        let gone = |what| StoreError::FileGone {
            path: self.path.clone(),
            what,
        };
        match std::fs::metadata(&self.path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(gone("deleted")),
            // Unreadable metadata says nothing about the file: do not stop on it.
            Err(_) => Ok(()),
            Ok(now) if identity(&now) != (self.device, self.inode) => Err(gone("replaced")),
            Ok(_) => Ok(()),
        }
    }
}

#[cfg(unix)]
fn identity(metadata: &std::fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (metadata.dev(), metadata.ino())
}

#[cfg(not(unix))]
fn identity(_: &std::fs::Metadata) -> (u64, u64) {
    (0, 0)
}

/// What can be told about the file before SQLite opens it: that it is missing (and may not be
/// created), and that a `-shm` file beside it cannot be written (SQLite maps that file into
/// memory, and a mapping it cannot extend ends the process with SIGBUS).
fn preflight(path: &Path, create: bool) -> Result<(), StoreError> {
    let unusable = |cause: String| StoreError::Unusable {
        path: path.to_path_buf(),
        cause,
    };
    match std::fs::metadata(path) {
        Ok(metadata) if metadata.is_dir() => {
            return Err(unusable("it is a directory, not a database file".into()))
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let directory = parent(path);
            if !directory.is_dir() {
                return Err(unusable(format!(
                    "the directory {} does not exist",
                    directory.display()
                )));
            }
            if !create {
                return Err(StoreError::Missing {
                    path: path.to_path_buf(),
                });
            }
        }
        Err(e) => return Err(unusable(e.to_string())),
    }
    let shm = sidecar(path, "-shm");
    if shm.exists() {
        if let Err(e) = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&shm)
        {
            return Err(unusable(format!(
                "{} cannot be opened for writing ({e}); SQLite needs to write it",
                shm.display()
            )));
        }
    }
    Ok(())
}

/// Why SQLite could not open or write `path`, in an operator's words.
fn diagnose(path: &Path, error: &dyn std::fmt::Display) -> String {
    let directory = parent(path);
    let file_writable = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path);
    match file_writable {
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return format!(
                "permission denied on the file ({e}); the server must read and write it"
            )
        }
        Err(e) if e.raw_os_error() == Some(READ_ONLY_FILESYSTEM) => {
            return format!("it is on a read-only file system ({e})")
        }
        _ => {}
    }
    let probe = directory.join(format!(".errorwatch-write-check-{}", std::process::id()));
    match std::fs::File::create(&probe) {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
        }
        Err(e) => {
            return format!(
            "the directory {} is not writable ({e}); SQLite creates its -wal and -shm files there",
            directory.display()
        )
        }
    }
    let message = error.to_string();
    if message.contains("readonly") || message.contains("read-only") {
        return format!("it is read-only ({message})");
    }
    message
}

/// Whether SQLite said the disk (or `max_page_count`) is full: `SQLITE_FULL`, in any of its
/// extended codes.
fn is_full(error: &StoreError) -> bool {
    const SQLITE_FULL: i64 = 13;
    match error {
        StoreError::Sqlx(sqlx::Error::Database(e)) => e
            .code()
            .and_then(|code| code.parse::<i64>().ok())
            .is_some_and(|code| code & 0xff == SQLITE_FULL),
        _ => false,
    }
}

/// `EROFS`, the same on every Unix this server builds for.
const READ_ONLY_FILESYSTEM: i32 = 30;

fn parent(path: &Path) -> PathBuf {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn sidecar(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::testing::ScratchDir;
    use super::*;

    /// Waits until `done` holds; panics after a few seconds.
    async fn until(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(std::time::Instant::now() < deadline, "{what}: still not");
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_closed_store_leaves_no_write_ahead_log_behind() {
        let scratch = ScratchDir::new("close");
        let db = scratch.path().join("db.sqlite");
        let options = OpenOptions {
            create_if_missing: true,
            ..OpenOptions::default()
        };
        let store = Arc::new(
            SqliteStore::open(&format!("sqlite:{}", db.display()), &options)
                .await
                .expect("store"),
        );
        // One connection idle in the pool, another still in use as the store closes: sqlx's
        // `Pool::close` alone returns without waiting for the second.
        let idle = store.pool.acquire().await.expect("a connection");
        let in_use = store.pool.acquire().await.expect("another");
        drop(idle);
        until("the first connection idle", || store.pool.num_idle() == 1).await;
        let closing = tokio::spawn({
            let store = store.clone();
            async move { store.close().await }
        });
        until("the pool closed", || store.pool.is_closed()).await;
        drop(in_use);
        closing.await.expect("closed");
        for suffix in ["-wal", "-shm"] {
            let file = sidecar(&db, suffix);
            assert!(!file.exists(), "{} was left behind", file.display());
        }
    }
}
