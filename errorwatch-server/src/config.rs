//! Server settings, from the environment; a bad one stops startup with one clear line.

use std::net::SocketAddr;
use std::time::Duration;

/// A setting the server cannot start with.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// A required variable is missing.
    #[error("{0} is not set; it is required (or run with --dev for a throwaway one)")]
    Missing(&'static str),
    /// A variable holds something unusable.
    #[error("{name} is invalid: {reason}")]
    Invalid {
        /// The variable.
        name: &'static str,
        /// Why.
        reason: String,
    },
}

/// Everything the server needs to run.
#[derive(Clone)]
pub struct Config {
    /// Where to listen (`ERRORWATCH_BIND`, default `127.0.0.1:3333`).
    pub bind: SocketAddr,
    /// The store (`DATABASE_URL`, default `sqlite://errorwatch.db`).
    pub database_url: String,
    /// The HMAC secret of API keys (`API_KEY_HASH_SECRET`).
    pub api_key_hash_secret: String,
    /// Opens the query and admin routes (`ADMIN_API_KEY`).
    pub admin_api_key: Option<String>,
    /// Opens `/metrics` (`METRICS_TOKEN`); without it, only loopback clients may read it.
    pub metrics_token: Option<String>,
    /// Requests per minute per client address on the SDK routes (`RATE_LIMIT_PER_MINUTE`,
    /// default 60 000; 0 turns the limit off).
    pub rate_limit_per_minute: u32,
    /// Largest body, counted on the bytes read (5 MiB).
    pub max_body_bytes: usize,
    /// Events accepted but not yet stored (`INGEST_QUEUE`, default 8 192); beyond, 503.
    pub queue_capacity: usize,
    /// Requests handled at once (`MAX_CONCURRENT_REQUESTS`, default 1 024); beyond, 503.
    pub max_concurrent_requests: usize,
    /// Connections open at once (`MAX_CONNECTIONS`, default 10 000, and never more than the
    /// process may open files); beyond, new ones wait in the kernel's backlog.
    pub max_connections: usize,
    /// Time a client has to send a request's head (`HEADER_READ_TIMEOUT_SECS`, default 10).
    pub header_read_timeout: Duration,
    /// Time a client has to send a whole body (`BODY_READ_TIMEOUT_SECS`, default 30).
    pub body_read_timeout: Duration,
    /// Time a connection may stay without a byte moving either way (`IDLE_TIMEOUT_SECS`,
    /// default 60).
    pub idle_timeout: Duration,
    /// Bytes of request bodies held at once, in all (`BODY_BUDGET_MB`, default 256 MiB):
    /// beyond, requests are answered 503 with `Retry-After` instead of read.
    pub body_budget_bytes: usize,
    /// Create the database file when it does not exist (`serve --create-database`, or
    /// `--dev`); otherwise a missing file stops startup, naming it.
    pub create_database: bool,
    /// The most the database file may grow to (`DATABASE_MAX_MB`, default unlimited): beyond,
    /// events are answered 503 until retention or an operator frees space.
    pub max_database_bytes: Option<u64>,
    /// Connections to PostgreSQL kept at most (`DATABASE_MAX_CONNECTIONS`, default 10; unused
    /// on SQLite).
    pub database_max_connections: u32,
    /// Most events per store transaction.
    pub max_batch: usize,
    /// Days events are kept.
    pub retention_days: i64,
    /// The clock of the duplicate window and the rate limit (tests move a manual one).
    pub clock: crate::Clock,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("bind", &self.bind)
            .field(
                "database_url",
                &crate::store::redact_url(&self.database_url),
            )
            .field(
                "admin_api_key",
                &self.admin_api_key.as_ref().map(|_| "[set]"),
            )
            .field(
                "metrics_token",
                &self.metrics_token.as_ref().map(|_| "[set]"),
            )
            .field("rate_limit_per_minute", &self.rate_limit_per_minute)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// Defaults for a test or dev server: in-memory store, ephemeral port on loopback, a
    /// database file created when missing.
    pub fn for_tests(secret: &str) -> Config {
        Config {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            database_url: "sqlite::memory:".into(),
            api_key_hash_secret: secret.into(),
            admin_api_key: None,
            metrics_token: None,
            rate_limit_per_minute: 60_000,
            max_body_bytes: errorwatch_protocol::limits::BODY_BYTES,
            queue_capacity: 8_192,
            max_concurrent_requests: 1_024,
            max_connections: 10_000,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            body_budget_bytes: 256 << 20,
            create_database: true,
            max_database_bytes: None,
            database_max_connections: 10,
            max_batch: 512,
            retention_days: 30,
            clock: crate::Clock::system(),
        }
    }

    /// Reads the settings through `lookup` (the environment, in `main`). With `dev`, a missing
    /// secret is replaced by a random one (and `main` says so).
    ///
    /// # Errors
    ///
    /// When a variable is set to something invalid, or `API_KEY_HASH_SECRET` is missing
    /// without `dev`: the error names the variable.
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
        dev: bool,
    ) -> Result<Config, ConfigError> {
        let get = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let mut config = Config::for_tests("");
        config.bind = match get("ERRORWATCH_BIND") {
            Some(text) => {
                text.parse()
                    .map_err(|e: std::net::AddrParseError| ConfigError::Invalid {
                        name: "ERRORWATCH_BIND",
                        reason: format!("{e} (expected an address such as 127.0.0.1:3333)"),
                    })?
            }
            None => SocketAddr::from(([127, 0, 0, 1], 3333)),
        };
        config.database_url =
            get("DATABASE_URL").unwrap_or_else(|| "sqlite://errorwatch.db".into());
        config.api_key_hash_secret = match get("API_KEY_HASH_SECRET") {
            Some(secret) if secret.len() < 16 => {
                return Err(ConfigError::Invalid {
                    name: "API_KEY_HASH_SECRET",
                    reason: "it must be at least 16 characters long".into(),
                })
            }
            Some(secret) => secret,
            None if dev => crate::keys::generate().map_err(|e| ConfigError::Invalid {
                name: "API_KEY_HASH_SECRET",
                reason: format!("no random source for a dev secret: {e}"),
            })?,
            None => return Err(ConfigError::Missing("API_KEY_HASH_SECRET")),
        };
        config.admin_api_key = get("ADMIN_API_KEY");
        config.metrics_token = get("METRICS_TOKEN");
        let number = |name: &'static str, default: u64| -> Result<u64, ConfigError> {
            match get(name) {
                None => Ok(default),
                Some(text) => text.parse().map_err(|_| ConfigError::Invalid {
                    name,
                    reason: format!("{text:?} is not a whole number"),
                }),
            }
        };
        config.rate_limit_per_minute =
            number("RATE_LIMIT_PER_MINUTE", 60_000)?.min(u32::MAX as u64) as u32;
        config.queue_capacity = number("INGEST_QUEUE", 8_192)?.max(1) as usize;
        config.max_concurrent_requests = number("MAX_CONCURRENT_REQUESTS", 1_024)?.max(1) as usize;
        config.max_connections = number("MAX_CONNECTIONS", 10_000)?.max(1) as usize;
        let seconds = |name: &'static str, default: u64| -> Result<Duration, ConfigError> {
            match number(name, default)? {
                0 => Err(ConfigError::Invalid {
                    name,
                    reason: "0 is not a usable timeout".into(),
                }),
                secs => Ok(Duration::from_secs(secs)),
            }
        };
        config.header_read_timeout = seconds("HEADER_READ_TIMEOUT_SECS", 10)?;
        config.body_read_timeout = seconds("BODY_READ_TIMEOUT_SECS", 30)?;
        config.idle_timeout = seconds("IDLE_TIMEOUT_SECS", 60)?;
        let mebibytes = number("BODY_BUDGET_MB", 256)?;
        if mebibytes < 8 {
            return Err(ConfigError::Invalid {
                name: "BODY_BUDGET_MB",
                reason: "it must be at least 8 (one 5 MiB body must fit)".into(),
            });
        }
        config.body_budget_bytes = (mebibytes.min(1 << 20) << 20) as usize;
        config.max_database_bytes = match get("DATABASE_MAX_MB") {
            None => None,
            Some(_) => Some(number("DATABASE_MAX_MB", 0)?.max(1).saturating_mul(1 << 20)),
        };
        config.database_max_connections = match number("DATABASE_MAX_CONNECTIONS", 10)? {
            0 => {
                return Err(ConfigError::Invalid {
                    name: "DATABASE_MAX_CONNECTIONS",
                    reason: "at least 2 connections are needed (one writes, one reads)".into(),
                })
            }
            n => n.clamp(2, 1_000) as u32,
        };
        // Only `migrate`, `--create-database` and `--dev` create a database.
        config.create_database = dev;
        Ok(config)
    }
}
