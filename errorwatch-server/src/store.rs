//! The embedded store: SQLite through sqlx, in a WAL-mode file or in memory.
//!
//! Writes happen in batches, one transaction each, from the writer task only; each batch is
//! committed (with `synchronous=FULL`) before any of its events is acknowledged.

use std::str::FromStr;
use std::time::Duration;

use serde::Serialize;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};

/// A store failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// `DATABASE_URL` is not a SQLite URL this server can open.
    #[error("DATABASE_URL is not a usable SQLite URL ({url}): {reason}")]
    BadUrl {
        /// The URL (it holds no secret for SQLite).
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// A query failed.
    #[error("store error: {0}")]
    Sqlx(#[from] sqlx::Error),
    /// A migration failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// The project settings an API key opens.
#[derive(Debug, Clone, PartialEq)]
pub struct ProjectAuth {
    /// The project.
    pub project_id: i64,
    /// The key's HMAC.
    pub key_hash: String,
    /// Whether the project accepts events.
    pub ingestion_enabled: bool,
    /// Server-side sample rate, 0.0 to 1.0.
    pub sample_rate: f64,
    /// Events per UTC day, if limited.
    pub daily_quota: Option<i64>,
}

/// An event ready to be written.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// Its project.
    pub project_id: i64,
    /// Its group key.
    pub fingerprint: String,
    /// Its group's title.
    pub title: String,
    /// The SDK's event id.
    pub event_id: Option<String>,
    /// When the server received it (ms).
    pub received_at: i64,
    /// When it happened (ms).
    pub created_at: i64,
    /// Level.
    pub level: String,
    /// Environment.
    pub env: String,
    /// Release.
    pub release: Option<String>,
    /// Message.
    pub message: Option<String>,
    /// Error type.
    pub error_type: String,
    /// Error value.
    pub error_value: String,
    /// Culprit file.
    pub file: Option<String>,
    /// Culprit line.
    pub line: Option<i64>,
    /// User id.
    pub user_id: Option<String>,
    /// Request URL.
    pub url: Option<String>,
    /// Response status.
    pub status_code: Option<i64>,
    /// The body as received.
    pub payload: String,
}

/// An issue, as the query API shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Group {
    /// The group key.
    pub fingerprint: String,
    /// Its project.
    pub project_id: i64,
    /// `"{Type}: {value}"`.
    pub title: String,
    /// The error type.
    #[serde(rename = "type")]
    pub error_type: String,
    /// The latest event's level.
    pub level: String,
    /// `unresolved` or `resolved`.
    pub status: String,
    /// How many events.
    pub count: i64,
    /// Distinct user ids.
    pub users_affected: i64,
    /// Earliest event (RFC 3339).
    pub first_seen: String,
    /// Latest event (RFC 3339).
    pub last_seen: String,
    /// Culprit file.
    pub file: Option<String>,
    /// Culprit line.
    pub line: Option<i64>,
    /// Environment of the latest event.
    pub env: String,
    /// When it was last reopened by a new event after being resolved.
    pub regressed_at: Option<String>,
}

/// One stored event, as the query API shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StoredEvent {
    /// Row id.
    pub id: i64,
    /// The SDK's event id.
    pub event_id: Option<String>,
    /// Group key.
    pub fingerprint: String,
    /// When it happened.
    pub created_at: String,
    /// When it arrived.
    pub received_at: String,
    /// Level.
    pub level: String,
    /// Environment.
    pub env: String,
    /// Release.
    pub release: Option<String>,
    /// Message.
    pub message: Option<String>,
    /// Error type.
    #[serde(rename = "type")]
    pub error_type: String,
    /// Error value.
    pub value: String,
    /// Culprit file.
    pub file: Option<String>,
    /// Culprit line.
    pub line: Option<i64>,
    /// User id.
    pub user_id: Option<String>,
    /// The body as received.
    pub payload: serde_json::Value,
}

/// Filters and order of `GET /api/v1/groups`.
#[derive(Debug, Clone, Default)]
pub struct GroupQuery {
    /// Only this project.
    pub project: Option<i64>,
    /// Only this environment.
    pub env: Option<String>,
    /// Only this level.
    pub level: Option<String>,
    /// Only this status.
    pub status: Option<String>,
    /// Title contains this.
    pub search: Option<String>,
    /// `lastSeen` (default), `firstSeen` or `count`, newest or largest first.
    pub sort: GroupSort,
    /// From 1.
    pub page: i64,
    /// 1..=100.
    pub limit: i64,
}

/// The order of a group listing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum GroupSort {
    /// Most recently seen first.
    #[default]
    LastSeen,
    /// Most recently created first.
    FirstSeen,
    /// Most events first.
    Count,
}

/// The store.
#[derive(Clone)]
pub struct Store {
    pool: SqlitePool,
}

impl Store {
    /// Opens (creating if needed) the database at `url` and applies the migrations.
    /// `sqlite::memory:` gives a private in-memory database.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        let bad = |reason: String| StoreError::BadUrl {
            url: url.to_owned(),
            reason,
        };
        if !url.starts_with("sqlite:") {
            return Err(bad("only sqlite: URLs are supported".into()));
        }
        let memory = url.contains(":memory:") || url.contains("mode=memory");
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| bad(e.to_string()))?
            .create_if_missing(true)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        let options = if memory {
            options
        } else {
            options
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full)
        };
        // An in-memory database lives in its one connection: keep exactly one, forever.
        let pool = if memory {
            SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
        } else {
            SqlitePoolOptions::new().max_connections(4)
        };
        let pool = pool
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await
            .map_err(|e| bad(e.to_string()))?;
        let store = Store { pool };
        store.migrate().await?;
        Ok(store)
    }

    /// Applies the migrations that have not run yet.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        sqlx::migrate!("./migrations").run(&self.pool).await?;
        Ok(())
    }

    /// Whether the store answers.
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    /// Creates a project with one API key (given by its hash) and returns its id.
    pub async fn create_project(
        &self,
        name: &str,
        key_hash: &str,
        key_prefix: &str,
        now: i64,
    ) -> Result<i64, StoreError> {
        let mut tx = self.pool.begin().await?;
        let id: i64 =
            sqlx::query("INSERT INTO projects (name, created_at) VALUES (?, ?) RETURNING id")
                .bind(name)
                .bind(now)
                .fetch_one(&mut *tx)
                .await?
                .try_get(0)?;
        sqlx::query("INSERT INTO api_keys (project_id, key_hash, key_prefix, created_at) VALUES (?, ?, ?, ?)")
            .bind(id)
            .bind(key_hash)
            .bind(key_prefix)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Changes a project's ingestion settings.
    pub async fn update_project(
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
    pub async fn all_keys(&self) -> Result<Vec<ProjectAuth>, StoreError> {
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

    /// Writes a batch of events and their groups in one transaction.
    pub async fn write_batch(&self, events: &[NewEvent]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for event in events {
            sqlx::query(
                "INSERT INTO groups (fingerprint, project_id, title, error_type, level, status, count, \
                 users_affected, first_seen, last_seen, file, line, env) \
                 VALUES (?, ?, ?, ?, ?, 'unresolved', 1, 0, ?, ?, ?, ?, ?) \
                 ON CONFLICT(fingerprint) DO UPDATE SET \
                   count = count + 1, \
                   title = excluded.title, \
                   level = excluded.level, \
                   env = excluded.env, \
                   first_seen = min(first_seen, excluded.first_seen), \
                   last_seen = max(last_seen, excluded.last_seen), \
                   regressed_at = CASE WHEN status = 'resolved' THEN excluded.last_seen ELSE regressed_at END, \
                   status = 'unresolved'",
            )
            .bind(&event.fingerprint)
            .bind(event.project_id)
            .bind(&event.title)
            .bind(&event.error_type)
            .bind(&event.level)
            .bind(event.created_at)
            .bind(event.created_at)
            .bind(&event.file)
            .bind(event.line)
            .bind(&event.env)
            .execute(&mut *tx)
            .await?;
            if let Some(user_id) = &event.user_id {
                let added = sqlx::query(
                    "INSERT OR IGNORE INTO group_users (fingerprint, user_id) VALUES (?, ?)",
                )
                .bind(&event.fingerprint)
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
                if added.rows_affected() == 1 {
                    sqlx::query("UPDATE groups SET users_affected = users_affected + 1 WHERE fingerprint = ?")
                        .bind(&event.fingerprint)
                        .execute(&mut *tx)
                        .await?;
                }
            }
            sqlx::query(
                "INSERT INTO events (event_id, project_id, fingerprint, received_at, created_at, level, env, \
                 release, message, error_type, error_value, file, line, user_id, url, status_code, payload) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(&event.event_id)
            .bind(event.project_id)
            .bind(&event.fingerprint)
            .bind(event.received_at)
            .bind(event.created_at)
            .bind(&event.level)
            .bind(&event.env)
            .bind(&event.release)
            .bind(&event.message)
            .bind(&event.error_type)
            .bind(&event.error_value)
            .bind(&event.file)
            .bind(event.line)
            .bind(&event.user_id)
            .bind(&event.url)
            .bind(event.status_code)
            .bind(&event.payload)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Lists groups.
    pub async fn groups(&self, query: &GroupQuery) -> Result<(Vec<Group>, i64), StoreError> {
        let mut conditions = Vec::new();
        if query.project.is_some() {
            conditions.push("project_id = ?");
        }
        if query.env.is_some() {
            conditions.push("env = ?");
        }
        if query.level.is_some() {
            conditions.push("level = ?");
        }
        if query.status.is_some() {
            conditions.push("status = ?");
        }
        if query.search.is_some() {
            conditions.push("instr(lower(title), lower(?)) > 0");
        }
        let filter = if conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conditions.join(" AND "))
        };
        let order = match query.sort {
            GroupSort::LastSeen => "last_seen DESC",
            GroupSort::FirstSeen => "first_seen DESC",
            GroupSort::Count => "count DESC, last_seen DESC",
        };
        let list_sql = format!(
            "SELECT {GROUP_COLUMNS} FROM groups {filter} ORDER BY {order} LIMIT ? OFFSET ?"
        );
        let count_sql = format!("SELECT count(*) FROM groups {filter}");
        macro_rules! bind_filters {
            ($q:expr) => {{
                let mut q = $q;
                if let Some(project) = query.project {
                    q = q.bind(project);
                }
                for value in [&query.env, &query.level, &query.status, &query.search]
                    .into_iter()
                    .flatten()
                {
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
    pub async fn group(&self, fingerprint: &str) -> Result<Option<Group>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {GROUP_COLUMNS} FROM groups WHERE fingerprint = ?"
        ))
        .bind(fingerprint)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(group_from_row).transpose()
    }

    /// A group's events, newest first.
    pub async fn group_events(
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

    /// The newest `limit` events of every group, newest first (for exports, demos and tests).
    pub async fn events(&self, limit: i64) -> Result<Vec<StoredEvent>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM events ORDER BY id DESC LIMIT ?"
        ))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(event_from_row).collect()
    }

    /// Resolves or reopens a group; returns whether it exists.
    pub async fn set_status(
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
    pub async fn event_count(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query("SELECT count(*) FROM events")
            .fetch_one(&self.pool)
            .await?
            .try_get(0)?)
    }

    /// Deletes events received before `cutoff` (ms); returns how many.
    pub async fn purge_before(&self, cutoff: i64) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM events WHERE received_at < ?")
            .bind(cutoff)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// Closes the pool (checkpointing the WAL).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

const GROUP_COLUMNS: &str =
    "fingerprint, project_id, title, error_type, level, status, count, users_affected, \
                             first_seen, last_seen, file, line, env, regressed_at";

const EVENT_COLUMNS: &str =
    "id, event_id, fingerprint, created_at, received_at, level, env, release, message, \
                             error_type, error_value, file, line, user_id, payload";

fn event_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<StoredEvent, StoreError> {
    let payload: String = row.try_get(14)?;
    Ok(StoredEvent {
        id: row.try_get(0)?,
        event_id: row.try_get(1)?,
        fingerprint: row.try_get(2)?,
        created_at: rfc3339(row.try_get(3)?),
        received_at: rfc3339(row.try_get(4)?),
        level: row.try_get(5)?,
        env: row.try_get(6)?,
        release: row.try_get(7)?,
        message: row.try_get(8)?,
        error_type: row.try_get(9)?,
        value: row.try_get(10)?,
        file: row.try_get(11)?,
        line: row.try_get(12)?,
        user_id: row.try_get(13)?,
        payload: serde_json::from_str(&payload).unwrap_or(serde_json::Value::Null),
    })
}

fn group_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<Group, StoreError> {
    Ok(Group {
        fingerprint: row.try_get(0)?,
        project_id: row.try_get(1)?,
        title: row.try_get(2)?,
        error_type: row.try_get(3)?,
        level: row.try_get(4)?,
        status: row.try_get(5)?,
        count: row.try_get(6)?,
        users_affected: row.try_get(7)?,
        first_seen: rfc3339(row.try_get(8)?),
        last_seen: rfc3339(row.try_get(9)?),
        file: row.try_get(10)?,
        line: row.try_get(11)?,
        env: row.try_get(12)?,
        regressed_at: row.try_get::<Option<i64>, _>(13)?.map(rfc3339),
    })
}

/// Milliseconds since the epoch as RFC 3339.
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|time| time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}
