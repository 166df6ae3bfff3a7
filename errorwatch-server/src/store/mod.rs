//! The store: what the server keeps, behind one interface, with SQLite as its backend.
//!
//! Every write is a transaction the backend confirms before the caller acknowledges anything:
//! a `202` is sent only for an event whose transaction has committed. A backend that cannot
//! tell whether a transaction committed answers an error, never success.

mod sqlite;

use std::path::PathBuf;

use serde::Serialize;

use errorwatch_protocol::validate::{CheckIn, LogEntry};

/// A store failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// `DATABASE_URL` is not a URL this server can open.
    #[error("DATABASE_URL is not a usable SQLite URL ({url}): {reason}")]
    BadUrl {
        /// The URL (it holds no secret for SQLite).
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// The database file does not exist, and creating one was not asked for.
    #[error(
        "the database {} does not exist; create it with `errorwatch-server migrate` \
         (or start with --create-database)",
        path.display()
    )]
    Missing {
        /// The file.
        path: PathBuf,
    },
    /// The database cannot be opened, or opened but not written.
    #[error("the database {} cannot be used: {cause}", path.display())]
    Unusable {
        /// The file.
        path: PathBuf,
        /// What is wrong, in an operator's words (permissions, missing directory, read-only).
        cause: String,
    },
    /// The database file was deleted or replaced while the server had it open: whatever is
    /// written now would be lost.
    #[error("the database {} was {what} while the server was running; restart it on the right file", path.display())]
    FileGone {
        /// The file.
        path: PathBuf,
        /// `deleted` or `replaced`.
        what: &'static str,
    },
    /// A name is taken, or a change would contradict what is stored.
    #[error("{0}")]
    Conflict(String),
    /// What a command names does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A query failed.
    #[error("store error: {0}")]
    Sqlx(#[from] sqlx::Error),
    /// A migration failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// How to open a store.
#[derive(Debug, Clone, Default)]
pub struct OpenOptions {
    /// Create the database when it does not exist (`migrate` does; `serve` only with
    /// `--create-database`), rather than failing with [`StoreError::Missing`].
    pub create_if_missing: bool,
    /// The most bytes the database file may hold (SQLite's `max_page_count`): beyond, writes
    /// fail and events are answered 503 until space is freed.
    pub max_bytes: Option<u64>,
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

/// The order of a group listing (`lastSeen`, `firstSeen` or `count` in a query).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum GroupSort {
    /// Most recently seen first.
    #[default]
    LastSeen,
    /// Most recently created first.
    FirstSeen,
    /// Most events first.
    Count,
}

/// A project, as the command line lists it.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Project {
    /// Its id.
    pub id: i64,
    /// Its name (unique).
    pub name: String,
    /// When it was created (RFC 3339).
    pub created_at: String,
    /// Whether it accepts events.
    pub ingestion_enabled: bool,
    /// Server-side sample rate.
    pub sample_rate: f64,
    /// Events per UTC day, if limited.
    pub daily_quota: Option<i64>,
    /// Keys not revoked.
    pub live_keys: i64,
}

/// An API key, as the command line lists it: never the key, only its first characters.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ApiKey {
    /// Its id (what `key revoke` takes).
    pub id: i64,
    /// Its project.
    pub project_id: i64,
    /// Its first characters, to tell keys apart.
    pub prefix: String,
    /// When it was created (RFC 3339).
    pub created_at: String,
    /// When it was revoked (RFC 3339), if it was.
    pub revoked_at: Option<String>,
}

/// The store, whichever backend holds it. Cloning it is cheap (the clones share one pool).
#[derive(Clone, Debug)]
pub struct Store {
    backend: Backend,
}

#[derive(Clone, Debug)]
enum Backend {
    Sqlite(sqlite::SqliteStore),
}

/// Runs `$body` with `$store` bound to the backend.
macro_rules! with_backend {
    ($self:ident, $store:ident => $body:expr) => {
        match &$self.backend {
            Backend::Sqlite($store) => $body,
        }
    };
}

impl Store {
    /// Opens the database at `url` and applies the migrations. `sqlite::memory:` gives a
    /// private in-memory database.
    ///
    /// # Errors
    ///
    /// [`StoreError::BadUrl`] for a URL of another kind, [`StoreError::Missing`] when the file
    /// does not exist and `options` does not create it, [`StoreError::Unusable`] when it cannot
    /// be opened or written (the cause names permissions, a missing directory or a read-only
    /// file), and [`StoreError::Migrate`] when the migrations fail.
    pub async fn open(url: &str, options: &OpenOptions) -> Result<Store, StoreError> {
        let backend = Backend::Sqlite(sqlite::SqliteStore::open(url, options).await?);
        Ok(Store { backend })
    }

    /// Whether the store answers a read.
    pub async fn ping(&self) -> bool {
        with_backend!(self, store => store.ping().await)
    }

    /// Whether the database is still the one opened: `Err` once its file was deleted or
    /// replaced underneath the server.
    ///
    /// # Errors
    ///
    /// [`StoreError::FileGone`] once the file was deleted or replaced.
    pub fn check_file(&self) -> Result<(), StoreError> {
        with_backend!(self, store => store.check_file())
    }

    /// Writes and deletes a small row in one committed transaction: whether writes succeed.
    ///
    /// # Errors
    ///
    /// When the database fails the read or the write ([`StoreError`]); a write that fails is
    /// not committed.
    pub async fn probe_write(&self, now: i64) -> Result<(), StoreError> {
        with_backend!(self, store => store.probe_write(now).await)
    }

    /// Creates a project with one API key (given by its hash) and returns its id.
    ///
    /// # Errors
    ///
    /// [`StoreError::Conflict`] when a project has that name already.
    pub async fn create_project(
        &self,
        name: &str,
        key_hash: &str,
        key_prefix: &str,
        now: i64,
    ) -> Result<i64, StoreError> {
        with_backend!(self, store => store.create_project(name, key_hash, key_prefix, now).await)
    }

    /// Every project, by id.
    ///
    /// # Errors
    ///
    /// When the database fails the read or the write ([`StoreError`]); a write that fails is
    /// not committed.
    pub async fn projects(&self) -> Result<Vec<Project>, StoreError> {
        with_backend!(self, store => store.projects().await)
    }

    /// The API keys of one project, or of all, by id; revoked ones included.
    ///
    /// # Errors
    ///
    /// When the database fails the read or the write ([`StoreError`]); a write that fails is
    /// not committed.
    pub async fn api_keys(&self, project: Option<i64>) -> Result<Vec<ApiKey>, StoreError> {
        with_backend!(self, store => store.api_keys(project).await)
    }

    /// Adds a key (given by its hash) to a project; returns the key's id.
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`] when there is no such project.
    pub async fn add_api_key(
        &self,
        project_id: i64,
        key_hash: &str,
        key_prefix: &str,
        now: i64,
    ) -> Result<i64, StoreError> {
        with_backend!(self, store => store.add_api_key(project_id, key_hash, key_prefix, now).await)
    }

    /// Revokes a key: from the next refresh of a server's key cache (30 s at most), it opens
    /// nothing. Returns `false` when it was revoked already.
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`] when there is no such key.
    pub async fn revoke_api_key(&self, key_id: i64, now: i64) -> Result<bool, StoreError> {
        with_backend!(self, store => store.revoke_api_key(key_id, now).await)
    }

    /// Changes a project's ingestion settings.
    ///
    /// # Errors
    ///
    /// When the database fails the read or the write ([`StoreError`]); a write that fails is
    /// not committed.
    pub async fn update_project(
        &self,
        project_id: i64,
        ingestion_enabled: bool,
        sample_rate: f64,
        daily_quota: Option<i64>,
    ) -> Result<(), StoreError> {
        with_backend!(self, store => store
            .update_project(project_id, ingestion_enabled, sample_rate, daily_quota)
            .await)
    }

    /// Every live key with its project's settings (the key cache is built from it).
    ///
    /// # Errors
    ///
    /// When the database fails the read or the write ([`StoreError`]); a write that fails is
    /// not committed.
    pub async fn all_keys(&self) -> Result<Vec<ProjectAuth>, StoreError> {
        with_backend!(self, store => store.all_keys().await)
    }

    /// Writes a batch of events and their groups in one transaction; `Ok` only once it has
    /// committed.
    ///
    /// # Errors
    ///
    /// When the database fails the read or the write ([`StoreError`]); a write that fails is
    /// not committed.
    pub async fn write_batch(&self, events: &[NewEvent]) -> Result<(), StoreError> {
        with_backend!(self, store => store.write_batch(events).await)
    }

    /// How many events of `project_id` were received at or after `since` (ms): a daily
    /// quota's use after a restart.
    ///
    /// # Errors
    ///
    /// When the database fails the read or the write ([`StoreError`]); a write that fails is
    /// not committed.
    pub async fn events_received_since(
        &self,
        project_id: i64,
        since: i64,
    ) -> Result<i64, StoreError> {
        with_backend!(self, store => store.events_received_since(project_id, since).await)
    }

    /// Lists groups, and how many match in all.
    ///
    /// # Errors
    ///
    /// When the database fails the read or the write ([`StoreError`]); a write that fails is
    /// not committed.
    pub async fn groups(&self, query: &GroupQuery) -> Result<(Vec<Group>, i64), StoreError> {
        with_backend!(self, store => store.groups(query).await)
    }

    /// One group.
    ///
    /// # Errors
    ///
    /// When the database fails the read or the write ([`StoreError`]); a write that fails is
    /// not committed.
    pub async fn group(&self, fingerprint: &str) -> Result<Option<Group>, StoreError> {
        with_backend!(self, store => store.group(fingerprint).await)
    }

    /// A group's events, newest first.
    ///
    /// # Errors
    ///
    /// When the database fails the read or the write ([`StoreError`]); a write that fails is
    /// not committed.
    pub async fn group_events(
        &self,
        fingerprint: &str,
        page: i64,
        limit: i64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        with_backend!(self, store => store.group_events(fingerprint, page, limit).await)
    }

    /// The newest `limit` events of every group, newest first (for exports, demos and tests).
    ///
    /// # Errors
    ///
    /// When the database fails the read or the write ([`StoreError`]); a write that fails is
    /// not committed.
    pub async fn events(&self, limit: i64) -> Result<Vec<StoredEvent>, StoreError> {
        with_backend!(self, store => store.events(limit).await)
    }

    /// Resolves or reopens a group; returns whether it exists.
    ///
    /// # Errors
    ///
    /// When the database fails the read or the write ([`StoreError`]); a write that fails is
    /// not committed.
    pub async fn set_status(
        &self,
        fingerprint: &str,
        status: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        with_backend!(self, store => store.set_status(fingerprint, status, now).await)
    }

    /// How many events are stored.
    ///
    /// # Errors
    ///
    /// When the database fails the read or the write ([`StoreError`]); a write that fails is
    /// not committed.
    pub async fn event_count(&self) -> Result<i64, StoreError> {
        with_backend!(self, store => store.event_count().await)
    }

    /// Deletes events, log lines and check-ins received before `cutoff` (ms); returns how many.
    ///
    /// # Errors
    ///
    /// When the database fails the read or the write ([`StoreError`]); a write that fails is
    /// not committed.
    pub async fn purge_before(&self, cutoff: i64) -> Result<u64, StoreError> {
        with_backend!(self, store => store.purge_before(cutoff).await)
    }

    /// Stores a log line of `project_id`, committed before it returns.
    ///
    /// # Errors
    ///
    /// When the database fails the read or the write ([`StoreError`]); a write that fails is
    /// not committed.
    pub async fn write_log(
        &self,
        project_id: i64,
        entry: &LogEntry,
        received_at: i64,
    ) -> Result<i64, StoreError> {
        with_backend!(self, store => store.write_log(project_id, entry, received_at).await)
    }

    /// The newest log lines, newest first (of one project when given).
    ///
    /// # Errors
    ///
    /// When the database fails the read or the write ([`StoreError`]); a write that fails is
    /// not committed.
    pub async fn logs(
        &self,
        project: Option<i64>,
        limit: i64,
    ) -> Result<Vec<serde_json::Value>, StoreError> {
        with_backend!(self, store => store.logs(project, limit).await)
    }

    /// Records a check-in of `project_id`, creating its monitor on first sight, in one
    /// transaction. A finish (`ok`/`error`) with the `checkinId` of a start completes that
    /// start; anything else is a new check-in. Returns the check-in as the contract shows it.
    ///
    /// # Errors
    ///
    /// When the database fails the read or the write ([`StoreError`]); a write that fails is
    /// not committed.
    pub async fn check_in(
        &self,
        project_id: i64,
        check_in: &CheckIn,
        now: i64,
    ) -> Result<serde_json::Value, StoreError> {
        with_backend!(self, store => store.check_in(project_id, check_in, now).await)
    }

    /// The newest check-ins, newest first, with their job's slug (of one project when given).
    ///
    /// # Errors
    ///
    /// When the database fails the read or the write ([`StoreError`]); a write that fails is
    /// not committed.
    pub async fn checkins(
        &self,
        project: Option<i64>,
        limit: i64,
    ) -> Result<Vec<serde_json::Value>, StoreError> {
        with_backend!(self, store => store.checkins(project, limit).await)
    }

    /// Closes the store (checkpointing SQLite's WAL).
    pub async fn close(&self) {
        with_backend!(self, store => store.close().await)
    }
}

/// Milliseconds since the epoch as RFC 3339.
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|time| time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}
