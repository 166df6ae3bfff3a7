//! The event model: what an ErrorWatch v2 event carries on the wire.
//!
//! Field names and shapes follow the ErrorWatch ingestion contract. Optional fields are left
//! out of the JSON when empty rather than sent as `null`, because the server rejects nulls in
//! several places (`user` among them). [`Event::normalize`](crate::normalize) fits an event to
//! every limit before it is sent.

use std::collections::BTreeMap;
use std::fmt;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// How serious an event or breadcrumb is.
///
/// ```
/// use errorwatch_protocol::Level;
/// assert_eq!(Level::Warning.as_str(), "warning");
/// assert!(Level::Fatal > Level::Error);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Diagnostic detail.
    Debug,
    /// Something worth knowing that is not a problem.
    Info,
    /// Something unexpected that the program handled.
    Warning,
    /// An error: the default level of captured events.
    Error,
    /// The program, or the request, could not go on (panics are reported at this level).
    Fatal,
}

impl Level {
    /// The level's name as the wire contract spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warning => "warning",
            Level::Error => "error",
            Level::Fatal => "fatal",
        }
    }
}

impl Level {
    /// Every level an event may have, as the contract spells them.
    pub const ALL: [Level; 5] = [
        Level::Fatal,
        Level::Error,
        Level::Warning,
        Level::Info,
        Level::Debug,
    ];

    /// The level named `name`, if the contract has it.
    ///
    /// ```
    /// use errorwatch_protocol::Level;
    /// assert_eq!(Level::parse("warning"), Some(Level::Warning));
    /// assert_eq!(Level::parse("warn"), None);
    /// ```
    pub fn parse(name: &str) -> Option<Level> {
        Level::ALL.into_iter().find(|level| level.as_str() == name)
    }

    /// Whether a breadcrumb may carry this level: the contract allows `debug`, `info`,
    /// `warning` and `error`, not `fatal` (a `fatal` breadcrumb loses its whole event).
    pub fn is_breadcrumb_level(self) -> bool {
        self != Level::Fatal
    }

    /// The nearest level a breadcrumb may carry: `fatal` becomes `error`.
    pub fn for_breadcrumb(self) -> Level {
        if self.is_breadcrumb_level() {
            self
        } else {
            Level::Error
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A JSON value, as used in `extra`, `contexts` and breadcrumb data.
pub type Value = serde_json::Value;

/// A map of JSON values, as used in `extra`, `contexts` and breadcrumb data.
pub type Map = BTreeMap<String, Value>;

/// The identifier of an event: 32 lowercase hex digits.
///
/// ```
/// let id = errorwatch_protocol::EventId::new_random();
/// assert_eq!(id.to_string().len(), 32);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct EventId(uuid::Uuid);

impl EventId {
    /// A new random (version 4) identifier.
    ///
    /// Uses a fast thread-local generator: event ids must be unique, not unpredictable.
    pub fn new_random() -> Self {
        let bytes = fastrand::u128(..).to_le_bytes();
        EventId(uuid::Builder::from_random_bytes(bytes).into_uuid())
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.simple(), f)
    }
}

impl fmt::Debug for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EventId({})", self.0.simple())
    }
}

impl Serialize for EventId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for EventId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        uuid::Uuid::try_parse(&text)
            .map(EventId)
            .map_err(serde::de::Error::custom)
    }
}

/// A point in time, sent as an RFC 3339 string with millisecond precision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp(pub SystemTime);

impl Timestamp {
    /// The current time.
    pub fn now() -> Self {
        Timestamp(SystemTime::now())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&humantime::format_rfc3339_millis(self.0))
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        humantime::parse_rfc3339_weak(&text)
            .map(Timestamp)
            .map_err(serde::de::Error::custom)
    }
}

/// The exception an event reports: its type and its message.
///
/// ```
/// use errorwatch_protocol::Exception;
/// let exception = Exception::new("ParseIntError", "invalid digit found in string");
/// assert_eq!(exception.ty, "ParseIntError");
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Exception {
    /// The error's type, for example `ParseIntError` or `panic`.
    #[serde(rename = "type")]
    pub ty: String,
    /// The error's message.
    pub value: String,
}

impl Exception {
    /// An exception of type `ty` with the message `value`.
    pub fn new(ty: impl Into<String>, value: impl Into<String>) -> Self {
        Exception {
            ty: ty.into(),
            value: value.into(),
        }
    }
}

/// One frame of a stack trace, innermost first in [`Event::frames`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Frame {
    /// The source file, or `<unknown>` when the binary carries no line tables.
    pub filename: String,
    /// The function, demangled and without its hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,
    /// The line number, from 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lineno: Option<u32>,
    /// The column number, from 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub colno: Option<u32>,
    /// Whether the frame belongs to the application rather than to std or a dependency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_app: Option<bool>,
}

/// The user an event happened to.
///
/// ```
/// use errorwatch_protocol::User;
/// let user = User { id: Some("42".into()), ..User::default() };
/// assert_eq!(user.id.as_deref(), Some("42"));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// A stable identifier for the user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The user's e-mail address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// The user's IP address (set by the integrations only with `send_default_pii`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_address: Option<String>,
    /// The user's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
}

/// The HTTP request an event happened in.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// The absolute URL of the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The HTTP method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Request headers (the SDK removes the sensitive ones before sending).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// The raw query string, without the leading `?`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_string: Option<String>,
    /// The request body (set by the integrations only with `send_default_pii`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

/// Something that happened before an event, kept on the scope and sent with the next event.
///
/// ```
/// use errorwatch_protocol::{Breadcrumb, Level};
/// let crumb = Breadcrumb::new("db", "SELECT 1").with_level(Level::Info);
/// assert_eq!(crumb.category, "db");
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Breadcrumb {
    /// When it happened.
    pub timestamp: Timestamp,
    /// What kind of thing happened: `http`, `db`, `log`, ...
    pub category: String,
    /// The breadcrumb's type (`default`, `http`, `error`, ...).
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub ty: Option<String>,
    /// How serious it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<Level>,
    /// A human-readable description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Structured data.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub data: Map,
}

impl Breadcrumb {
    /// A breadcrumb of `category` with `message`, timestamped now.
    pub fn new(category: impl Into<String>, message: impl Into<String>) -> Self {
        Breadcrumb {
            timestamp: Timestamp::now(),
            category: category.into(),
            ty: None,
            level: None,
            message: Some(message.into()),
            data: Map::new(),
        }
    }

    /// Sets the level.
    pub fn with_level(mut self, level: Level) -> Self {
        self.level = Some(level);
        self
    }

    /// Adds one item of structured data.
    pub fn with_data(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.data.insert(key.into(), value.into());
        self
    }
}

/// The SDK that sent an event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SdkInfo {
    /// The SDK's name.
    pub name: String,
    /// The SDK's version.
    pub version: String,
}

impl SdkInfo {
    /// The name the Rust SDK reports in `sdk.name`.
    pub const RUST_NAME: &'static str = "errorwatch.rust";
    /// The version the Rust SDK reports in `sdk.version` (the workspace's version).
    pub const RUST_VERSION: &'static str = env!("CARGO_PKG_VERSION");
}

impl Default for SdkInfo {
    /// The Rust SDK.
    fn default() -> Self {
        SdkInfo {
            name: SdkInfo::RUST_NAME.to_owned(),
            version: SdkInfo::RUST_VERSION.to_owned(),
        }
    }
}

/// One ErrorWatch event, as it is sent to `POST /api/v1/event` (the v2 form).
///
/// The SDK's capture functions build them, and hand them to its `before_send` and test
/// helpers; the server reads the same fields back with [`crate::validate`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Unique per event.
    pub event_id: EventId,
    /// When the event happened.
    pub timestamp: Timestamp,
    /// How serious it is.
    pub level: Level,
    /// A message: the formatted log line, or the error's message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The error, for events that report one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exception: Option<Exception>,
    /// The stack trace, innermost frame first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub frames: Vec<Frame>,
    /// The culprit's file: the innermost in-app frame's, or the panic's location.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// The culprit's line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    /// The stack trace as text, one `at function (file:line:col)` line per frame.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack: Option<String>,
    /// Always `rust`.
    pub platform: String,
    /// The deployment environment (`production`, `staging`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    /// The release (for example `my-service@1.4.2`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<String>,
    /// The host the event happened on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// The URL of the request the event happened in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The HTTP status the request was answered with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
    /// Indexed string tags.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// Free-form extra data.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: Map,
    /// Structured contexts (`os`, `rust`, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub contexts: Map,
    /// The user the event happened to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<User>,
    /// The user's id, repeated at the top level where the server counts affected users.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// The request the event happened in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<Request>,
    /// What happened before the event, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub breadcrumbs: Vec<Breadcrumb>,
    /// Overrides the server's grouping: events with the same fingerprint form one issue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// The trace the event belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// The span the event belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub span_id: Option<String>,
    /// The SDK that sent it.
    pub sdk: SdkInfo,
}

impl Default for Event {
    fn default() -> Self {
        Event {
            event_id: EventId::new_random(),
            timestamp: Timestamp::now(),
            level: Level::Error,
            message: None,
            exception: None,
            frames: Vec::new(),
            file: None,
            line: None,
            stack: None,
            platform: "rust".to_owned(),
            env: None,
            release: None,
            server_name: None,
            url: None,
            status_code: None,
            tags: BTreeMap::new(),
            extra: Map::new(),
            contexts: Map::new(),
            user: None,
            user_id: None,
            request: None,
            breadcrumbs: Vec::new(),
            fingerprint: None,
            trace_id: None,
            span_id: None,
            sdk: SdkInfo::default(),
        }
    }
}

impl Event {
    /// A new event at `level` with `message`.
    ///
    /// ```
    /// use errorwatch_protocol::{Event, Level};
    /// let event = Event::message("cache miss storm", Level::Warning);
    /// assert_eq!(event.level, Level::Warning);
    /// ```
    pub fn message(message: impl Into<String>, level: Level) -> Self {
        Event {
            level,
            message: Some(message.into()),
            ..Event::default()
        }
    }

    /// The value of a tag.
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags.get(key).map(String::as_str)
    }

    /// The event as the JSON body the SDK sends.
    ///
    /// ```
    /// let event = errorwatch_protocol::Event::default();
    /// assert!(event.to_json().contains("\"platform\":\"rust\""));
    /// ```
    pub fn to_json(&self) -> String {
        // Serialising this model cannot fail: every map has string keys and no type has a
        // fallible Serialize impl.
        serde_json::to_string(self).unwrap_or_default()
    }
}
