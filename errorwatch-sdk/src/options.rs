//! Client options: a builder for code, [`Options::from_env`] for deployments.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::scrub::ScrubOptions;
use errorwatch_protocol::Event;

/// Called on the worker for every event before it is sent: return `None` to drop it.
pub type BeforeSend = Arc<dyn Fn(Event) -> Option<Event> + Send + Sync>;

/// Receives the SDK's own diagnostics (when [`Options::debug`] is on).
pub type DiagnosticsHook = Arc<dyn Fn(&str) + Send + Sync>;

/// The environment variables [`Options::from_env`] reads.
pub mod env {
    /// `true`/`false` (also `1`/`0`, `yes`/`no`, `on`/`off`). Unset: enabled when configured.
    pub const ENABLED: &str = "ERRORWATCH_ENABLED";
    /// The server's base URL, for example `https://errors.example.com`.
    pub const API_URL: &str = "ERRORWATCH_API_URL";
    /// The name the PHP SDKs read for the base URL; used when [`API_URL`] is unset.
    pub const ENDPOINT: &str = "ERRORWATCH_ENDPOINT";
    /// The project's API key: `ew_live_...` or `ew_test_...`.
    pub const API_KEY: &str = "ERRORWATCH_API_KEY";
    /// The deployment environment, at most 50 characters.
    pub const ENV: &str = "ERRORWATCH_ENV";
    /// The release, at most 200 characters.
    pub const RELEASE: &str = "ERRORWATCH_RELEASE";
    /// A PEM file of CA certificates to trust besides the built-in roots (a private CA).
    pub const CA_FILE: &str = "ERRORWATCH_CA_FILE";
}

/// A configuration value the SDK cannot use. The message names the variable or option and
/// never contains the API key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OptionsError {
    /// The URL does not parse, or is not an absolute `http`/`https` URL.
    #[error("{source_name} is not a usable ErrorWatch URL: {reason}")]
    InvalidUrl {
        /// The environment variable or option that held it.
        source_name: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The API key does not have the ErrorWatch key format.
    #[error(
        "{source_name} is not a valid ErrorWatch API key: expected `ew_live_` or `ew_test_` \
         followed by at least {} characters of A-Z, a-z, 0-9, `_` or `-` (the value is not shown)",
        errorwatch_protocol::api_key::MIN_SECRET_LEN
    )]
    InvalidApiKey {
        /// The environment variable or option that held it.
        source_name: &'static str,
    },
    /// A required value is missing while reporting was explicitly enabled.
    #[error("{source_name} is not set, but {enabled_by} asks for reporting to be enabled")]
    Missing {
        /// What is missing.
        source_name: &'static str,
        /// What enabled reporting.
        enabled_by: &'static str,
    },
    /// A boolean variable holds something else.
    #[error("{source_name} must be true or false (or 1/0, yes/no, on/off), not {value:?}")]
    InvalidBool {
        /// The environment variable.
        source_name: &'static str,
        /// Its value.
        value: String,
    },
    /// A value is longer than the server accepts.
    #[error("{source_name} is {len} characters long; the server accepts at most {max}")]
    TooLong {
        /// The environment variable or option.
        source_name: &'static str,
        /// Its length.
        len: usize,
        /// The server's limit.
        max: usize,
    },
    /// The scrubbing rules (with the user's patterns) do not compile; nothing is sent rather
    /// than anything unscrubbed.
    #[error("the scrubbing rules do not compile, so nothing will be sent: {reason}")]
    Scrubbing {
        /// The compiler's message.
        reason: String,
    },
    /// A number is out of its range.
    #[error("{source_name} must be {expected}")]
    OutOfRange {
        /// The option.
        source_name: &'static str,
        /// The accepted range.
        expected: &'static str,
    },
    /// A CA certificate cannot be read or used.
    #[error("{source_name} is not a usable CA certificate: {reason}")]
    InvalidCertificate {
        /// The environment variable or option that held it.
        source_name: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

/// How the client behaves: where it sends, what it sends, and how hard it tries.
///
/// ```
/// use std::time::Duration;
/// use errorwatch_sdk::Options;
///
/// let options = Options::new("https://errors.example.com", "ew_live_0123456789abcdefghijklmnopqrstuv")
///     .environment("production")
///     .release(errorwatch_sdk::release_name!())
///     .sample_rate(0.5)
///     .request_timeout(Duration::from_secs(3));
/// assert!(options.validate().is_ok());
/// assert!(!format!("{options:?}").contains("0123456789abcdef"), "Debug never shows the key");
/// ```
#[derive(Clone)]
pub struct Options {
    pub(crate) enabled: bool,
    pub(crate) api_url: Option<String>,
    pub(crate) api_key: Option<String>,
    pub(crate) url_source: &'static str,
    pub(crate) key_source: &'static str,
    pub(crate) environment: Option<String>,
    pub(crate) release: Option<String>,
    pub(crate) server_name: Option<String>,
    pub(crate) sample_rate: f64,
    pub(crate) before_send: Option<BeforeSend>,
    pub(crate) max_breadcrumbs: usize,
    pub(crate) queue_capacity: usize,
    pub(crate) max_in_flight: usize,
    pub(crate) connect_timeout: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) max_retries: u32,
    pub(crate) retry_base_delay: Duration,
    pub(crate) shutdown_timeout: Duration,
    pub(crate) panic_flush_timeout: Duration,
    pub(crate) circuit_breaker_threshold: u32,
    pub(crate) circuit_breaker_open_for: Duration,
    pub(crate) rate_limit_default: Duration,
    pub(crate) in_app_include: Vec<String>,
    pub(crate) in_app_exclude: Vec<String>,
    pub(crate) scrub: ScrubOptions,
    pub(crate) send_default_pii: bool,
    pub(crate) attach_stacktrace: bool,
    pub(crate) capture_panics: bool,
    pub(crate) debug: bool,
    pub(crate) diagnostics_hook: Option<DiagnosticsHook>,
    pub(crate) ca_certificates: Vec<Vec<u8>>,
    pub(crate) ca_source: &'static str,
    pub(crate) proxy: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            enabled: true,
            api_url: None,
            api_key: None,
            url_source: "api_url",
            key_source: "api_key",
            environment: None,
            release: None,
            server_name: None,
            sample_rate: 1.0,
            before_send: None,
            max_breadcrumbs: errorwatch_protocol::limits::event::BREADCRUMBS,
            queue_capacity: 16_384,
            max_in_flight: 8,
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(5),
            max_retries: 2,
            retry_base_delay: Duration::from_millis(100),
            shutdown_timeout: Duration::from_secs(2),
            panic_flush_timeout: Duration::from_secs(1),
            circuit_breaker_threshold: 3,
            circuit_breaker_open_for: Duration::from_secs(30),
            rate_limit_default: Duration::from_secs(60),
            in_app_include: Vec::new(),
            in_app_exclude: Vec::new(),
            scrub: ScrubOptions::default(),
            send_default_pii: false,
            attach_stacktrace: true,
            capture_panics: true,
            debug: false,
            diagnostics_hook: None,
            ca_certificates: Vec::new(),
            ca_source: "ca_certificate",
            proxy: None,
        }
    }
}

impl fmt::Debug for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Options")
            .field("enabled", &self.enabled)
            .field("api_url", &self.api_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "[redacted]"))
            .field("environment", &self.environment)
            .field("release", &self.release)
            .field("sample_rate", &self.sample_rate)
            .field("queue_capacity", &self.queue_capacity)
            .field("max_in_flight", &self.max_in_flight)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("max_retries", &self.max_retries)
            .field("shutdown_timeout", &self.shutdown_timeout)
            .field("scrub", &self.scrub.is_enabled())
            .field("send_default_pii", &self.send_default_pii)
            .finish_non_exhaustive()
    }
}

impl Options {
    /// Options that send to the server at `api_url` (its base URL) with `api_key`.
    pub fn new(api_url: impl Into<String>, api_key: impl Into<String>) -> Self {
        Options {
            api_url: Some(api_url.into()),
            api_key: Some(api_key.into()),
            ..Options::default()
        }
    }

    /// Options read from the `ERRORWATCH_*` environment variables (see [`env`](mod@env)).
    ///
    /// With no URL or key set, the options are valid but unconfigured: [`init`](crate::init)
    /// then gives a client that reports nothing, silently. A malformed value is an error that
    /// names the variable (and never shows the key).
    ///
    /// # Errors
    ///
    /// When a variable is set to something invalid (a malformed URL or key, a flag that is
    /// not one, an unreadable `ERRORWATCH_CA_FILE`): the error names the variable.
    ///
    /// ```
    /// let options = errorwatch_sdk::Options::from_env().expect("valid ERRORWATCH_* variables");
    /// # let _ = options;
    /// ```
    pub fn from_env() -> Result<Self, OptionsError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// [`Options::from_env`] over any source of variables (a map in tests, a config file...).
    ///
    /// # Errors
    ///
    /// As [`Options::from_env`], for the values `lookup` gives.
    ///
    /// ```
    /// use errorwatch_sdk::{Options, OptionsError};
    /// let err = Options::from_lookup(|name| match name {
    ///     "ERRORWATCH_API_URL" => Some("https://errors.example.com".into()),
    ///     "ERRORWATCH_API_KEY" => Some("not-a-key".into()),
    ///     _ => None,
    /// })
    /// .unwrap_err();
    /// assert!(matches!(err, OptionsError::InvalidApiKey { source_name: "ERRORWATCH_API_KEY" }));
    /// ```
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, OptionsError> {
        let get = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let mut options = Options::default();
        let explicitly_enabled = match get(env::ENABLED) {
            None => None,
            Some(value) => Some(parse_bool(&value).ok_or(OptionsError::InvalidBool {
                source_name: env::ENABLED,
                value,
            })?),
        };
        options.enabled = explicitly_enabled.unwrap_or(true);
        if let Some(url) = get(env::API_URL) {
            options.api_url = Some(url);
            options.url_source = env::API_URL;
        } else if let Some(url) = get(env::ENDPOINT) {
            options.api_url = Some(url);
            options.url_source = env::ENDPOINT;
        }
        if let Some(key) = get(env::API_KEY) {
            options.api_key = Some(key);
            options.key_source = env::API_KEY;
        }
        options.environment = get(env::ENV);
        options.release = get(env::RELEASE);
        if let Some(path) = get(env::CA_FILE) {
            let pem = std::fs::read(&path).map_err(|e| OptionsError::InvalidCertificate {
                source_name: env::CA_FILE,
                reason: format!("{path}: {e}"),
            })?;
            options.ca_certificates.push(pem);
            options.ca_source = env::CA_FILE;
        }

        if explicitly_enabled == Some(true) {
            if options.api_url.is_none() {
                return Err(OptionsError::Missing {
                    source_name: env::API_URL,
                    enabled_by: env::ENABLED,
                });
            }
            if options.api_key.is_none() {
                return Err(OptionsError::Missing {
                    source_name: env::API_KEY,
                    enabled_by: env::ENABLED,
                });
            }
        }
        check_len(
            options.environment.as_deref(),
            env::ENV,
            errorwatch_protocol::limits::event::ENV,
        )?;
        check_len(
            options.release.as_deref(),
            env::RELEASE,
            errorwatch_protocol::limits::event::RELEASE,
        )?;
        options.validate()?;
        Ok(options)
    }

    /// Checks every value; [`init`](crate::init) calls it too.
    ///
    /// # Errors
    ///
    /// The first invalid value, named by its option or variable: a URL that is not `http` or
    /// `https`, a malformed key, a value beyond the server's limits or out of its range, or a
    /// CA certificate that does not parse.
    pub fn validate(&self) -> Result<(), OptionsError> {
        if let Some(url) = &self.api_url {
            endpoint_url(url, self.url_source)?;
        }
        if let Some(key) = &self.api_key {
            if !is_valid_api_key(key) {
                return Err(OptionsError::InvalidApiKey {
                    source_name: self.key_source,
                });
            }
        }
        if !(0.0..=1.0).contains(&self.sample_rate) {
            return Err(OptionsError::OutOfRange {
                source_name: "sample_rate",
                expected: "between 0.0 and 1.0",
            });
        }
        for pem in &self.ca_certificates {
            crate::transport::check_certificate(pem).map_err(|reason| {
                OptionsError::InvalidCertificate {
                    source_name: self.ca_source,
                    reason,
                }
            })?;
        }
        if let Some(proxy) = &self.proxy {
            reqwest::Proxy::all(proxy.as_str()).map_err(|e| OptionsError::InvalidUrl {
                source_name: "proxy",
                reason: e.to_string(),
            })?;
        }
        if self.queue_capacity == 0 || self.max_in_flight == 0 {
            return Err(OptionsError::OutOfRange {
                source_name: "queue_capacity and max_in_flight",
                expected: "at least 1",
            });
        }
        Ok(())
    }

    /// Whether the options name a server and a key (and reporting is not switched off).
    pub fn is_configured(&self) -> bool {
        self.enabled && self.api_url.is_some() && self.api_key.is_some()
    }

    /// The full URL events are posted to, if configured.
    pub fn event_endpoint(&self) -> Option<String> {
        let url = self.api_url.as_deref()?;
        endpoint_url(url, self.url_source).ok()
    }

    /// Switches reporting on or off. Off, every capture is a silent no-op.
    pub fn enabled(mut self, enabled: bool) -> Self {
        self.enabled = enabled;
        self
    }
    /// The deployment environment (`production`, `staging`, ...). Default: none (the server
    /// records `unknown`).
    pub fn environment(mut self, environment: impl Into<String>) -> Self {
        self.environment = Some(environment.into());
        self
    }
    /// The release, for example from [`release_name!`](crate::release_name).
    pub fn release(mut self, release: impl Into<String>) -> Self {
        self.release = Some(release.into());
        self
    }
    /// The host name sent with events. Default: the machine's host name.
    pub fn server_name(mut self, server_name: impl Into<String>) -> Self {
        self.server_name = Some(server_name.into());
        self
    }
    /// The share of events to send, from 0.0 to 1.0. Default: 1.0.
    pub fn sample_rate(mut self, rate: f64) -> Self {
        self.sample_rate = rate;
        self
    }
    /// Edits or drops each event on the worker before it is scrubbed and sent.
    ///
    /// A panic inside the hook drops that event and is reported in the diagnostics, but only
    /// where panics unwind: built with `panic = "abort"`, a panicking hook aborts the process,
    /// as any panic does there. Keep it free of `unwrap` and indexing in such builds.
    ///
    /// ```
    /// let options = errorwatch_sdk::Options::default().before_send(|mut event| {
    ///     event.tags.insert("team".into(), "payments".into());
    ///     Some(event)
    /// });
    /// # let _ = options;
    /// ```
    pub fn before_send(
        mut self,
        hook: impl Fn(Event) -> Option<Event> + Send + Sync + 'static,
    ) -> Self {
        self.before_send = Some(Arc::new(hook));
        self
    }
    /// How many breadcrumbs an event carries, at most 100 (the server's limit). Default: 100.
    pub fn max_breadcrumbs(mut self, max: usize) -> Self {
        self.max_breadcrumbs = max.min(errorwatch_protocol::limits::event::BREADCRUMBS);
        self
    }
    /// How many events may wait for the worker; beyond it events are dropped and counted.
    /// The queue's places are allocated once, when the client starts, 16 bytes each (256 KiB
    /// by default), so that capturing never allocates them. Default: 16 384.
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.queue_capacity = capacity;
        self
    }
    /// How many requests may be in flight at once. Default: 8.
    pub fn max_in_flight(mut self, max: usize) -> Self {
        self.max_in_flight = max;
        self
    }
    /// How long to wait for a TCP (and TLS) connection. Default: 2 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }
    /// How long one whole request may take. Default: 5 s.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }
    /// How many times to retry a network error or 5xx answer. Default: 2.
    pub fn max_retries(mut self, retries: u32) -> Self {
        self.max_retries = retries;
        self
    }
    /// The first retry's delay; each retry doubles it (up to 5 s), plus jitter. Default: 100 ms.
    pub fn retry_base_delay(mut self, delay: Duration) -> Self {
        self.retry_base_delay = delay;
        self
    }
    /// How long dropping the [`ClientGuard`](crate::ClientGuard) may wait for delivery.
    /// Default: 2 s.
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }
    /// How long the panic hook waits for the panic's event to be sent. Default: 1 s.
    ///
    /// Symbolising the stack gets at most 60% of it (loading a large debug binary's symbols
    /// can take longer than the whole flush): past that, the event goes without its frames,
    /// with its culprit file and line, rather than being lost with the process. Raise it to
    /// keep the frames of panics in large debug builds; the hook returns as soon as the event
    /// is sent, so a long timeout costs nothing when the server answers.
    pub fn panic_flush_timeout(mut self, timeout: Duration) -> Self {
        self.panic_flush_timeout = timeout;
        self
    }
    /// Stop sending for `open_for` after `failures` events in a row could not be delivered
    /// (a 429 is not a failure). Default: 3 failures, 30 s.
    pub fn circuit_breaker(mut self, failures: u32, open_for: Duration) -> Self {
        self.circuit_breaker_threshold = failures.max(1);
        self.circuit_breaker_open_for = open_for;
        self
    }
    /// How long to stop sending after a 429 without `Retry-After`. Default: 60 s.
    pub fn rate_limit_backoff(mut self, backoff: Duration) -> Self {
        self.rate_limit_default = backoff;
        self
    }
    /// Marks frames whose path starts with `prefix` as the application's.
    pub fn in_app_include(mut self, prefix: impl Into<String>) -> Self {
        self.in_app_include.push(prefix.into());
        self
    }
    /// Marks frames whose path starts with `prefix` as not the application's.
    pub fn in_app_exclude(mut self, prefix: impl Into<String>) -> Self {
        self.in_app_exclude.push(prefix.into());
        self
    }
    /// How secrets are scrubbed. Default: on, with the built-in keys and patterns.
    pub fn scrub(mut self, scrub: ScrubOptions) -> Self {
        self.scrub = scrub;
        self
    }
    /// Lets the integrations attach personal data (client IP, request bodies). Default: off.
    pub fn send_default_pii(mut self, send: bool) -> Self {
        self.send_default_pii = send;
        self
    }
    /// Attaches a stack trace to captured errors. Default: on.
    pub fn attach_stacktrace(mut self, attach: bool) -> Self {
        self.attach_stacktrace = attach;
        self
    }
    /// Installs the panic hook at [`init`](crate::init). Default: on. Needs the `panic`
    /// feature (a default one): without it there is no hook, and panics are reported only
    /// where an integration catches them (a web handler's).
    pub fn capture_panics(mut self, capture: bool) -> Self {
        self.capture_panics = capture;
        self
    }
    /// Writes the SDK's own problems (send failures, dropped events) to stderr, or to the
    /// [`diagnostics_hook`](Options::diagnostics_hook). Default: off.
    pub fn debug(mut self, debug: bool) -> Self {
        self.debug = debug;
        self
    }
    /// Trusts the CA certificates of `pem` (one or more, PEM-encoded) besides the built-in
    /// roots: for a server whose certificate comes from a private CA. Also read from the file
    /// named by `ERRORWATCH_CA_FILE`. Needs one of the TLS features.
    ///
    /// ```no_run
    /// let pem = std::fs::read("/etc/ssl/private-ca.pem").expect("the CA file");
    /// let options = errorwatch_sdk::Options::new("https://errors.internal", "ew_live_...")
    ///     .ca_certificate(pem);
    /// # let _ = options;
    /// ```
    pub fn ca_certificate(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.ca_certificates.push(pem.into());
        self.ca_source = "ca_certificate";
        self
    }
    /// Sends through the proxy at `url` (`http://host:port`, credentials in the URL if any).
    /// Without it, the standard `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY` and `NO_PROXY`
    /// variables apply. A URL that cannot be a proxy's is an error of [`Options::validate`].
    ///
    /// ```
    /// let options = errorwatch_sdk::Options::default().proxy("http://proxy.internal:3128");
    /// assert!(options.validate().is_ok());
    /// ```
    pub fn proxy(mut self, url: impl Into<String>) -> Self {
        self.proxy = Some(url.into());
        self
    }
    /// Receives the SDK's diagnostics instead of stderr (implies [`debug`](Options::debug)).
    pub fn diagnostics_hook(mut self, hook: impl Fn(&str) + Send + Sync + 'static) -> Self {
        self.debug = true;
        self.diagnostics_hook = Some(Arc::new(hook));
        self
    }
}

/// Whether `key` has the ErrorWatch key format: `ew_live_`/`ew_test_` + 32 or more of
/// `[A-Za-z0-9_-]`.
///
/// ```
/// assert!(errorwatch_sdk::protocol::api_key::is_well_formed("ew_test_abcdefghijklmnopqrstuvwxyz012345"));
/// assert!(!errorwatch_sdk::protocol::api_key::is_well_formed("ew_live_short"));
/// ```
pub(crate) fn is_valid_api_key(key: &str) -> bool {
    errorwatch_protocol::api_key::is_well_formed(key)
}

/// Turns a base URL into the event endpoint, `{base}/api/v1/event`.
fn endpoint_url(base: &str, source_name: &'static str) -> Result<String, OptionsError> {
    let invalid = |reason: String| OptionsError::InvalidUrl {
        source_name,
        reason,
    };
    let url = reqwest::Url::parse(base).map_err(|e| invalid(e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid(format!(
            "the scheme must be http or https, not {}",
            url.scheme()
        )));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("it has no host".into()));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("a base URL takes no query or fragment".into()));
    }
    let path = url.path().trim_end_matches('/');
    let path = if path.ends_with("/api/v1/event") {
        path.to_owned()
    } else {
        format!("{path}/api/v1/event")
    };
    let mut endpoint = url;
    endpoint.set_path(&path);
    Ok(endpoint.into())
}

fn parse_bool(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

fn check_len(
    value: Option<&str>,
    source_name: &'static str,
    max: usize,
) -> Result<(), OptionsError> {
    match value.map(|v| v.chars().count()) {
        Some(len) if len > max => Err(OptionsError::TooLong {
            source_name,
            len,
            max,
        }),
        _ => Ok(()),
    }
}

/// `CARGO_PKG_NAME@CARGO_PKG_VERSION` of the crate that calls it, for [`Options::release`].
///
/// ```
/// assert!(errorwatch_sdk::release_name!().contains('@'));
/// ```
#[macro_export]
macro_rules! release_name {
    () => {
        concat!(env!("CARGO_PKG_NAME"), "@", env!("CARGO_PKG_VERSION"))
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_built_from_base_urls() {
        let endpoint = |url: &str| endpoint_url(url, "api_url");
        assert_eq!(
            endpoint("https://e.example.com").as_deref(),
            Ok("https://e.example.com/api/v1/event")
        );
        assert_eq!(
            endpoint("http://127.0.0.1:3333/").as_deref(),
            Ok("http://127.0.0.1:3333/api/v1/event")
        );
        assert_eq!(
            endpoint("https://x.io/ew/").as_deref(),
            Ok("https://x.io/ew/api/v1/event")
        );
        assert_eq!(
            endpoint("https://x.io/api/v1/event").as_deref(),
            Ok("https://x.io/api/v1/event")
        );
        assert!(endpoint("ftp://x.io").is_err());
        assert!(endpoint("not a url").is_err());
        assert!(endpoint("https://x.io/?a=b").is_err());
    }
}
