//! `errorwatch-server`: a small ErrorWatch-compatible ingestion server on an embedded SQLite
//! store, or on PostgreSQL, where several servers on one database act as one. It accepts exactly what the production ErrorWatch server accepts, groups events into
//! issues the same way, and stores every event it acknowledges before acknowledging it.
//!
//! Start it in-process (as the tests and the demo do):
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use errorwatch_server::{Config, Server};
//!
//! let server = Server::start(Config::for_tests("a-secret-of-16-chars-or-more")).await?;
//! let (project_id, api_key) = server.create_project("checkout").await?;
//! println!("send events to {} with X-API-Key: {api_key}", server.url());
//! # let _ = project_id;
//! server.shutdown().await;
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

mod api;
mod app;
pub mod clock;
pub mod config;
pub mod grouping;
mod ingest;
mod issue_table;
pub mod keys;
mod metrics;
mod ops;
mod pages;
mod pii;
mod rate_limit;
mod rejection;
mod serve;
pub mod store;
mod writer;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use clock::Clock;
pub use config::{Config, ConfigError};
pub use issue_table::issue_table;
pub use store::{ApiKey, Group, OpenOptions, Project, Store, StoreError, StoredEvent};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The store could not be opened or migrated.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The address could not be bound (in use, or not ours).
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// No random source for a new key.
    #[error("no random source: {0}")]
    Random(String),
}

/// A running server.
pub struct Server {
    addr: SocketAddr,
    state: Arc<app::AppState>,
    stop: Option<oneshot::Sender<()>>,
    serving: JoinHandle<()>,
    writing: JoinHandle<()>,
    retention: JoinHandle<()>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Opens the store, binds the address and starts serving.
    ///
    /// # Errors
    ///
    /// When the store cannot be opened or written ([`StartError::Store`], naming the file and
    /// the cause), or the address cannot be bound ([`StartError::Bind`]).
    pub async fn start(config: Config) -> Result<Server, StartError> {
        let store = Store::open(
            &config.database_url,
            &OpenOptions {
                create_if_missing: config.create_database,
                max_bytes: config.max_database_bytes,
                max_connections: Some(config.database_max_connections),
            },
        )
        .await?;
        // What can still fail closes the store before it says so: a process that stops here
        // must not leave its database with the write-ahead log open behind it.
        let bound = TcpListener::bind(config.bind).await.and_then(|listener| {
            let addr = listener.local_addr()?;
            Ok((listener, addr))
        });
        let (listener, addr) = match bound {
            Ok(bound) => bound,
            Err(source) => {
                store.close().await;
                return Err(StartError::Bind {
                    addr: config.bind,
                    source,
                });
            }
        };
        let keys = keys::KeyCache::new(config.api_key_hash_secret.as_bytes());
        if let Err(error) = keys.refresh(&store).await {
            store.close().await;
            return Err(error.into());
        }
        let metrics = Arc::new(metrics::Metrics::default());
        let (writer, writing) = writer::Writer::start(
            store.clone(),
            metrics.clone(),
            config.queue_capacity,
            config.max_batch,
        );
        let limits = serve::ConnectionLimits {
            max_connections: config.max_connections,
            header_read_timeout: config.header_read_timeout,
            idle_timeout: config.idle_timeout,
        };
        let state = Arc::new(app::AppState {
            limiter: rate_limit::RateLimiter::new(
                config.rate_limit_per_minute,
                store.is_shared().then(|| store.clone()),
            ),
            // Guesses of the admin key on the sign-in form: 10 a minute per address.
            sign_in_limiter: rate_limit::RateLimiter::new(10, None),
            used_up: Default::default(),
            budget: ingest::body::BodyBudget::new(config.body_budget_bytes),
            slots: Arc::new(tokio::sync::Semaphore::new(
                config.max_concurrent_requests.max(1),
            )),
            config,
            store: store.clone(),
            keys,
            writer,
            metrics,
        });
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = async {
            let _ = stopped.await;
        };
        let serving = tokio::spawn(serve::serve(
            listener,
            app::App::new(state.clone()),
            limits,
            shutdown,
            DRAIN,
        ));
        let retention = tokio::spawn(maintenance(store, state.config.retention_days));
        tracing::info!(%addr, "errorwatch-server listening");
        Ok(Server {
            addr,
            state,
            stop: Some(stop),
            serving,
            writing,
            retention,
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its base URL, for SDK options.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Its store.
    pub fn store(&self) -> &Store {
        &self.state.store
    }

    /// Creates a project and returns its id and its new API key (the only time the key is
    /// seen in plain text).
    ///
    /// # Errors
    ///
    /// When the store refuses the project (its name is taken) or cannot be written, or no
    /// random key can be made.
    pub async fn create_project(&self, name: &str) -> Result<(i64, String), StartError> {
        let (id, key) = create_project(
            &self.state.store,
            self.state.config.api_key_hash_secret.as_bytes(),
            name,
        )
        .await?;
        self.state.keys.refresh(&self.state.store).await?;
        Ok((id, key))
    }

    /// Stops taking events (they get 503, and `/health/ready` says unhealthy) while the
    /// query routes keep serving: for maintenance such as a backup. Events already accepted
    /// are still stored.
    pub fn stop_ingesting(&self) {
        self.state.writer.close();
    }

    /// Stops taking requests, lets those in flight finish, stores every accepted event, and
    /// closes the store.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        // In-flight requests wait for their events to be stored, so the writer keeps running
        // until the connections have drained; a stuck client cannot hold shutdown past DRAIN.
        let _ = (&mut self.serving).await;
        self.state.writer.close();
        let _ = (&mut self.writing).await;
        self.retention.abort();
        self.state.store.close().await;
    }
}

/// How long shutdown waits for the requests in flight.
const DRAIN: Duration = Duration::from_secs(10);

/// Creates a project and its first key in `store`.
///
/// # Errors
///
/// When the store cannot write it, or there is no random source for the key.
pub async fn create_project(
    store: &Store,
    secret: &[u8],
    name: &str,
) -> Result<(i64, String), StartError> {
    let key = NewKey::generate(secret)?;
    let id = store
        .create_project(name, &key.hash, &key.prefix, key.created_at)
        .await?;
    Ok((id, key.key))
}

/// Adds a new API key to a project: its id and the key (the only time it is seen in plain
/// text). With `key revoke` on the old one, this rotates a project's key.
///
/// # Errors
///
/// When there is no such project, the store cannot write it, or there is no random source.
pub async fn add_api_key(
    store: &Store,
    secret: &[u8],
    project_id: i64,
) -> Result<(i64, String), StartError> {
    let key = NewKey::generate(secret)?;
    let id = store
        .add_api_key(project_id, &key.hash, &key.prefix, key.created_at)
        .await?;
    Ok((id, key.key))
}

/// A key just generated: itself (shown once), and what the store keeps of it.
struct NewKey {
    key: String,
    hash: String,
    prefix: String,
    created_at: i64,
}

impl NewKey {
    fn generate(secret: &[u8]) -> Result<NewKey, StartError> {
        let key = keys::generate().map_err(|e| StartError::Random(e.to_string()))?;
        Ok(NewKey {
            hash: keys::hash(secret, &key),
            prefix: keys::prefix(&key),
            created_at: chrono::Utc::now().timestamp_millis(),
            key,
        })
    }
}

/// The periodic tasks, each run by one server of those on the database: retention hourly,
/// and expired duplicate windows every minute. Every server checks each minute whether a task
/// is due, and the store lets exactly one claim it.
async fn maintenance(store: Store, retention_days: i64) {
    const MINUTE_MS: i64 = 60_000;
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tick.tick().await;
        let now = chrono::Utc::now().timestamp_millis();
        // A little less than the period, so that tick jitter never skips a run.
        if let Ok(true) = store.claim_task("windows", now, MINUTE_MS - 1_000).await {
            if let Err(error) = store.expire_windows(now - 2 * MINUTE_MS).await {
                tracing::warn!(%error, "expired windows could not be deleted");
            }
        }
        match store
            .claim_task("retention", now, 60 * MINUTE_MS - 1_000)
            .await
        {
            Ok(true) => {}
            Ok(false) => continue,
            Err(error) => {
                tracing::warn!(%error, "retention could not be scheduled");
                continue;
            }
        }
        let cutoff = now - retention_days * 86_400_000;
        match store.purge_before(cutoff).await {
            Ok(0) => {}
            Ok(purged) => tracing::info!(purged, "old events deleted"),
            Err(error) => tracing::warn!(%error, "old events could not be deleted"),
        }
    }
}
