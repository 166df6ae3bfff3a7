//! The embedded store: SQLite through sqlx, in a WAL-mode file or in memory.
//!
//! Writes happen in batches, one transaction each, from the writer task only; each batch is
//! committed (with `synchronous=FULL`) before any of its events is acknowledged.

use std::str::FromStr;
use std::time::Duration;

use serde::Serialize;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};

use errorwatch_protocol::validate::{CheckIn, CheckInStatus, LogEntry};

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
    /// Exception type (absent or empty: none).
    pub error_type: Option<String>,
    /// Exception value (absent or empty: none).
    pub error_value: Option<String>,
    /// Which grouping rule made the fingerprint (`sdk`, `exception`, `location`).
    pub grouping_rule: &'static str,
    /// The stack text, personal data removed.
    pub stack: String,
    /// Culprit file.
    pub file: String,
    /// Culprit line.
    pub line: i64,
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
    /// The exception type (the first event's that had one).
    #[serde(rename = "type")]
    pub error_type: Option<String>,
    /// The exception value (the first event's that had one).
    #[serde(rename = "value")]
    pub error_value: Option<String>,
    /// Which rule grouped its events: `sdk` (the SDK's fingerprint), `exception` (type, value
    /// and culprit frame) or `location` (file, line and stack shape).
    pub grouping_rule: String,
    /// The first event's level.
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
    /// Culprit file (the first event's).
    pub file: Option<String>,
    /// Culprit line (the first event's).
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
    /// Exception type.
    #[serde(rename = "type")]
    pub error_type: Option<String>,
    /// Exception value.
    pub value: Option<String>,
    /// The stack text.
    pub stack: String,
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
                // Title, level, file and line are the first event's; type and value are
                // back-filled by the first event that has them.
                "INSERT INTO groups (fingerprint, project_id, title, error_type, error_value, \
                 grouping_rule, level, status, count, users_affected, first_seen, last_seen, file, \
                 line, env) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, 'unresolved', 1, 0, ?, ?, ?, ?, ?) \
                 ON CONFLICT(fingerprint) DO UPDATE SET \
                   count = count + 1, \
                   error_type = coalesce(error_type, excluded.error_type), \
                   error_value = coalesce(error_value, excluded.error_value), \
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
            .bind(&event.error_value)
            .bind(event.grouping_rule)
            .bind(&event.level)
            .bind(event.created_at)
            .bind(event.received_at)
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
                 release, message, error_type, error_value, stack, file, line, user_id, url, status_code, payload) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
            .bind(&event.stack)
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
        Ok(events.rows_affected() + logs.rows_affected() + checkins.rows_affected())
    }

    /// Stores a log line of `project_id`, committed before it returns.
    pub async fn write_log(
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
    pub async fn logs(
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
        rows.iter()
            .map(|row| {
                let json = |i: usize| -> Result<serde_json::Value, StoreError> {
                    Ok(row
                        .try_get::<Option<String>, _>(i)?
                        .and_then(|text| serde_json::from_str(&text).ok())
                        .unwrap_or(serde_json::Value::Null))
                };
                Ok(serde_json::json!({
                    "id": row.try_get::<i64, _>(0)?,
                    "projectId": row.try_get::<i64, _>(1)?,
                    "timestamp": rfc3339(row.try_get(2)?),
                    "level": row.try_get::<String, _>(3)?,
                    "channel": row.try_get::<String, _>(4)?,
                    "message": row.try_get::<String, _>(5)?,
                    "source": row.try_get::<String, _>(6)?,
                    "env": row.try_get::<Option<String>, _>(7)?,
                    "release": row.try_get::<Option<String>, _>(8)?,
                    "url": row.try_get::<Option<String>, _>(9)?,
                    "requestId": row.try_get::<Option<String>, _>(10)?,
                    "userId": row.try_get::<Option<String>, _>(11)?,
                    "traceId": row.try_get::<Option<String>, _>(12)?,
                    "spanId": row.try_get::<Option<String>, _>(13)?,
                    "context": json(14)?,
                    "extra": json(15)?,
                }))
            })
            .collect()
    }

    /// Records a check-in of `project_id`, creating its monitor on first sight, in one
    /// transaction. A finish (`ok`/`error`) with the `checkinId` of a start completes that
    /// start; anything else is a new check-in. Returns the check-in as the contract shows it.
    pub async fn check_in(
        &self,
        project_id: i64,
        check_in: &CheckIn,
        now: i64,
    ) -> Result<serde_json::Value, StoreError> {
        let mut tx = self.pool.begin().await?;
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
    pub async fn checkins(
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

    /// Closes the pool (checkpointing the WAL).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

const GROUP_COLUMNS: &str =
    "fingerprint, project_id, title, error_type, level, status, count, users_affected, \
                             first_seen, last_seen, file, line, env, regressed_at, error_value, grouping_rule";

const EVENT_COLUMNS: &str =
    "id, event_id, fingerprint, created_at, received_at, level, env, release, message, \
                             error_type, error_value, file, line, user_id, payload, stack";

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
        stack: row.try_get(15)?,
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
        error_value: row.try_get(14)?,
        grouping_rule: row.try_get(15)?,
    })
}

fn checkin_json(row: &sqlx::sqlite::SqliteRow) -> Result<serde_json::Value, StoreError> {
    let time = |i: usize| -> Result<Option<String>, StoreError> {
        Ok(row.try_get::<Option<i64>, _>(i)?.map(rfc3339))
    };
    Ok(serde_json::json!({
        "id": row.try_get::<i64, _>(0)?,
        "monitorId": row.try_get::<i64, _>(1)?,
        "status": row.try_get::<String, _>(2)?,
        "duration": row.try_get::<Option<i64>, _>(3)?,
        "env": row.try_get::<Option<String>, _>(4)?,
        "checkinId": row.try_get::<Option<String>, _>(5)?,
        "payload": row
            .try_get::<Option<String>, _>(6)?
            .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok()),
        "startedAt": time(7)?,
        "finishedAt": time(8)?,
        "createdAt": time(9)?,
    }))
}

/// A new check-in id: 16 random bytes as hex.
fn new_checkin_id() -> String {
    let mut bytes = [0u8; 16];
    // Without a random source, a clock-based id still ties a finish to its start.
    if getrandom::fill(&mut bytes).is_err() {
        let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default();
        bytes[..8].copy_from_slice(&now.to_le_bytes());
    }
    hex::encode(bytes)
}

/// Milliseconds since the epoch as RFC 3339.
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|time| time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}
