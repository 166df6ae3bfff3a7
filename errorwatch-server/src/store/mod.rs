//! The store: what the server keeps, behind one interface, on SQLite (one server's file) or
//! PostgreSQL (one database several servers share).
//!
//! Every write is a transaction the backend confirms before the caller acknowledges anything:
//! a `202` is sent only for an event whose transaction has committed. A backend that cannot
//! tell whether a transaction committed answers an error, never success.

mod batch;
mod postgres;
mod sqlite;

pub use batch::Outcome;
pub(crate) use batch::HOUR_MS;

use std::path::PathBuf;

use serde::Serialize;

use errorwatch_protocol::validate::{CheckIn, LogEntry};

/// A store failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// `DATABASE_URL` is not a URL this server can open.
    #[error("DATABASE_URL is not a usable database URL ({url}): {reason}")]
    BadUrl {
        /// The URL, any password hidden.
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
    /// The PostgreSQL database does not exist, and creating one was not asked for.
    #[error(
        "the database {database} does not exist; create it with `errorwatch-server migrate` \
         (or start with --create-database)"
    )]
    MissingDatabase {
        /// The database, without its password.
        database: String,
    },
    /// PostgreSQL refused the connection or did not answer.
    #[error("the database {database} cannot be reached: {cause}")]
    Unreachable {
        /// The database, without its password.
        database: String,
        /// What the connection attempt said.
        cause: String,
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
    /// A statement of a batch failed (SQLite's batches are written over a connection of
    /// their own).
    #[error("store error: {0}")]
    Sqlite(#[from] rusqlite::Error),
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
    /// Connections to PostgreSQL this server keeps at most (default 10).
    pub max_connections: Option<u32>,
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
    /// What tells a repeat of it (see `grouping::dedupe_key`).
    pub dedupe_key: String,
    /// When its duplicate window would open (ms, the server's window clock).
    pub seen_at: i64,
    /// Its project's daily quota when it was admitted.
    pub daily_quota: Option<i64>,
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

/// A group's events in one hour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HourCount {
    /// The group.
    pub fingerprint: String,
    /// Hours since the epoch (of the events' arrival).
    pub hour: i64,
    /// Events that arrived in it.
    pub count: i64,
}

/// A release or an environment a group's events came with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenValue {
    /// `release` or `env`.
    pub kind: String,
    /// The release or the environment.
    pub value: String,
    /// Events with it.
    pub count: i64,
    /// The latest such event's arrival (ms).
    pub last_seen: i64,
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
    /// Only groups with an event of this release.
    pub release: Option<String>,
    /// Title contains this.
    pub search: Option<String>,
    /// `lastSeen` (default), `firstSeen` or `count`, newest or largest first.
    pub sort: GroupSort,
    /// From 1.
    pub page: i64,
    /// 1..=100.
    pub limit: i64,
}

/// How a backend's SQL differs where a group listing needs it.
pub(super) struct Dialect {
    /// The `n`-th parameter (from 1): `?` or `$n`.
    pub placeholder: fn(usize) -> String,
    /// The function giving a substring's position (0: absent): `instr` or `strpos`.
    pub position: &'static str,
}

impl GroupQuery {
    /// The listing's SQL in `dialect`: the page (its last two parameters are the limit and the
    /// offset) and the count. The filters bind first, in the order of
    /// [`GroupQuery::text_filters`] after the project.
    pub(super) fn sql(&self, dialect: &Dialect) -> (String, String) {
        let mut n = 0;
        let mut next = || {
            n += 1;
            (dialect.placeholder)(n)
        };
        let mut conditions = Vec::new();
        if self.project.is_some() {
            conditions.push(format!("project_id = {}", next()));
        }
        for (value, column) in [
            (&self.env, "env"),
            (&self.level, "level"),
            (&self.status, "status"),
        ] {
            if value.is_some() {
                conditions.push(format!("{column} = {}", next()));
            }
        }
        if self.release.is_some() {
            conditions.push(format!(
                "fingerprint IN (SELECT fingerprint FROM group_values \
                 WHERE kind = 'release' AND value = {})",
                next()
            ));
        }
        if self.search.is_some() {
            conditions.push(format!(
                "{}(lower(title), lower({})) > 0",
                dialect.position,
                next()
            ));
        }
        let filter = if conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conditions.join(" AND "))
        };
        let order = match self.sort {
            GroupSort::LastSeen => "last_seen DESC",
            GroupSort::FirstSeen => "first_seen DESC",
            GroupSort::Count => "count DESC, last_seen DESC",
        };
        let (limit, offset) = (next(), next());
        (
            format!(
                "SELECT {GROUP_COLUMNS} FROM groups {filter} ORDER BY {order} LIMIT {limit} OFFSET {offset}"
            ),
            format!("SELECT count(*) FROM groups {filter}"),
        )
    }

    /// The text filters that are set, in the order their parameters bind.
    pub(super) fn text_filters(&self) -> impl Iterator<Item = &String> {
        [
            &self.env,
            &self.level,
            &self.status,
            &self.release,
            &self.search,
        ]
        .into_iter()
        .flatten()
    }
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
    Postgres(postgres::PostgresStore),
}

/// Runs `$body` with `$store` bound to the backend.
macro_rules! with_backend {
    ($self:ident, $store:ident => $body:expr) => {
        match &$self.backend {
            Backend::Sqlite($store) => $body,
            Backend::Postgres($store) => $body,
        }
    };
}

impl Store {
    /// Opens the database at `url` and applies the migrations: `sqlite://path` (or
    /// `sqlite::memory:` for a private in-memory database) or `postgres://...`.
    ///
    /// # Errors
    ///
    /// [`StoreError::BadUrl`] for a URL of another kind, [`StoreError::Missing`] (a file) or
    /// [`StoreError::MissingDatabase`] (PostgreSQL) when the database does not exist and
    /// `options` does not create it, [`StoreError::Unusable`] when a file cannot be opened or
    /// written (the cause names permissions, a missing directory or a read-only file),
    /// [`StoreError::Unreachable`] when PostgreSQL refuses or does not answer, and
    /// [`StoreError::Migrate`] when the migrations fail.
    ///
    /// # Examples
    ///
    /// ```
    /// # async fn demo() -> Result<(), errorwatch_server::StoreError> {
    /// use errorwatch_server::{OpenOptions, Store};
    ///
    /// let store = Store::open("sqlite::memory:", &OpenOptions::default()).await?;
    /// assert_eq!(store.event_count().await?, 0);
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
    /// ```
    pub async fn open(url: &str, options: &OpenOptions) -> Result<Store, StoreError> {
        let backend = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres(postgres::PostgresStore::open(url, options).await?)
        } else {
            Backend::Sqlite(sqlite::SqliteStore::open(url, options).await?)
        };
        Ok(Store { backend })
    }

    /// Whether several servers may share this store (PostgreSQL): then the rate limit is
    /// counted in it too. A SQLite file belongs to one server.
    pub fn is_shared(&self) -> bool {
        matches!(self.backend, Backend::Postgres(_))
    }

    /// Takes up to `want` of a client's `limit` requests in the minute starting at `window`
    /// (ms), for every server on the store together: returns how many were granted and how
    /// many the window has granted in all. On a store one server owns, everything asked.
    ///
    /// # Errors
    ///
    /// When the database fails the write ([`StoreError`]).
    pub(crate) async fn take_rate_lease(
        &self,
        client: &str,
        window: i64,
        want: i64,
        limit: i64,
    ) -> Result<(i64, i64), StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => Ok((want, 0)),
            Backend::Postgres(store) => store.take_rate_lease(client, window, want, limit).await,
        }
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
        match &self.backend {
            Backend::Sqlite(store) => store.check_file(),
            Backend::Postgres(_) => Ok(()),
        }
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

    /// Writes a batch of events and their groups in one transaction, and says what became of
    /// each event (stored, a repeat within the duplicate window, over its daily quota); `Ok`
    /// only once the transaction has committed. These rules are decided in the transaction, so
    /// they hold across every server on the database.
    ///
    /// # Errors
    ///
    /// When the database fails the read or the write ([`StoreError`]); a write that fails is
    /// not committed.
    pub async fn write_batch(&self, events: Vec<NewEvent>) -> Result<Vec<Outcome>, StoreError> {
        match &self.backend {
            Backend::Sqlite(store) => store.write_batch(events).await,
            Backend::Postgres(store) => store.write_batch(&events).await,
        }
    }

    /// Runs the server's writer loop where batches are written best: on SQLite, the thread
    /// that owns the write connection; on PostgreSQL, the current runtime.
    pub(crate) fn spawn_writer<F>(&self, task: F) -> tokio::task::JoinHandle<()>
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        match &self.backend {
            Backend::Sqlite(store) => store.spawn_writer(task),
            Backend::Postgres(_) => tokio::spawn(task),
        }
    }

    /// Claims a periodic `task` for this server when no server on the database ran it in the
    /// last `every` ms: among several servers, one runs it.
    ///
    /// # Errors
    ///
    /// When the database fails the write ([`StoreError`]).
    pub async fn claim_task(&self, task: &str, now: i64, every: i64) -> Result<bool, StoreError> {
        with_backend!(self, store => store.claim_task(task, now, every).await)
    }

    /// Forgets duplicate windows opened before `cutoff` (ms); returns how many.
    ///
    /// # Errors
    ///
    /// When the database fails the write ([`StoreError`]).
    pub async fn expire_windows(&self, cutoff: i64) -> Result<u64, StoreError> {
        with_backend!(self, store => store.expire_windows(cutoff).await)
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

    /// How many of a group's events are stored (its count includes those retention deleted).
    ///
    /// # Errors
    ///
    /// When the database fails the read ([`StoreError`]).
    pub async fn group_event_count(&self, fingerprint: &str) -> Result<i64, StoreError> {
        with_backend!(self, store => store.group_event_count(fingerprint).await)
    }

    /// The groups' events per hour, from `since_hour` (hours since the epoch) on; hours
    /// without events are left out.
    ///
    /// # Errors
    ///
    /// When the database fails the read ([`StoreError`]).
    pub async fn activity(
        &self,
        fingerprints: &[String],
        since_hour: i64,
    ) -> Result<Vec<HourCount>, StoreError> {
        with_backend!(self, store => store.activity(fingerprints, since_hour).await)
    }

    /// The releases and environments a group's events came with, the latest first.
    ///
    /// # Errors
    ///
    /// When the database fails the read ([`StoreError`]).
    pub async fn seen_values(&self, fingerprint: &str) -> Result<Vec<SeenValue>, StoreError> {
        with_backend!(self, store => store.seen_values(fingerprint).await)
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

/// How long [`close_pool`] waits for connections still in use.
const POOL_CLOSE_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Closes `pool` until no connection of it is left open (or [`POOL_CLOSE_LIMIT`] passes).
///
/// sqlx 0.8's `Pool::close` can return while a connection is still in use, or on its way back
/// to the pool, and one that lands back after it is never closed (launchbadge/sqlx#3217, fixed
/// upstream after 0.8.6). Such a connection stays open until the process exits: a SQLite
/// database then keeps its write-ahead log beside it, never checkpointed, and a PostgreSQL
/// session ends without its goodbye. Each further `close` closes what came back and waits for
/// what is still out.
async fn close_pool<DB: sqlx::Database>(pool: &sqlx::Pool<DB>) {
    let deadline = tokio::time::Instant::now() + POOL_CLOSE_LIMIT;
    pool.close().await;
    while pool.size() > 0 && tokio::time::Instant::now() < deadline {
        // `close` returns at once while the count it waits on is off: let the connection's
        // own task bring it back first.
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        pool.close().await;
    }
}

/// `url` with its password hidden (`postgres://user:[hidden]@host/db`), fit for logs and
/// messages.
///
/// ```
/// use errorwatch_server::store::redact_url;
///
/// assert_eq!(redact_url("postgres://ew:s3cret@db:5432/ew"), "postgres://ew:[hidden]@db:5432/ew");
/// assert_eq!(redact_url("sqlite://errorwatch.db"), "sqlite://errorwatch.db");
/// ```
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let Some(at) = url[scheme_end..].rfind('@').map(|i| i + scheme_end) else {
        return url.to_owned();
    };
    let credentials = &url[scheme_end..at];
    match credentials.find(':') {
        Some(colon) => format!(
            "{}{}:[hidden]{}",
            &url[..scheme_end],
            &credentials[..colon],
            &url[at..]
        ),
        None => url.to_owned(),
    }
}

/// Milliseconds since the epoch as RFC 3339.
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|time| time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// The columns of a group and of an event, in the order the decoders read them.
pub(super) const GROUP_COLUMNS: &str =
    "fingerprint, project_id, title, error_type, level, status, count, users_affected, \
                             first_seen, last_seen, file, line, env, regressed_at, error_value, grouping_rule";

pub(super) const EVENT_COLUMNS: &str =
    "id, event_id, fingerprint, created_at, received_at, level, env, release, message, \
                             error_type, error_value, file, line, user_id, payload, stack";

/// Defines the row decoders (`event_from_row`, `group_from_row`, `checkin_json`, `log_json`)
/// for one backend's row type: one reading of each row, whichever database it came from.
macro_rules! row_decoders {
    ($row:ty) => {
        fn event_from_row(row: &$row) -> Result<StoredEvent, StoreError> {
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

        fn group_from_row(row: &$row) -> Result<Group, StoreError> {
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

        fn hour_count_from_row(row: &$row) -> Result<HourCount, StoreError> {
            Ok(HourCount {
                fingerprint: row.try_get(0)?,
                hour: row.try_get(1)?,
                count: row.try_get(2)?,
            })
        }

        fn seen_value_from_row(row: &$row) -> Result<SeenValue, StoreError> {
            Ok(SeenValue {
                kind: row.try_get(0)?,
                value: row.try_get(1)?,
                count: row.try_get(2)?,
                last_seen: row.try_get(3)?,
            })
        }

        fn checkin_json(row: &$row) -> Result<serde_json::Value, StoreError> {
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

        fn log_json(row: &$row) -> Result<serde_json::Value, StoreError> {
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
        }
    };
}
pub(super) use row_decoders;

/// A new check-in id: 16 random bytes as hex.
pub(super) fn new_checkin_id() -> String {
    let mut bytes = [0u8; 16];
    // Without a random source, a clock-based id still ties a finish to its start.
    if getrandom::fill(&mut bytes).is_err() {
        let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default();
        bytes[..8].copy_from_slice(&now.to_le_bytes());
    }
    hex::encode(bytes)
}
