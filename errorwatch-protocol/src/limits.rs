//! Every limit of the contract, beside its field, in one table.
//!
//! Lengths are maximum lengths in UTF-16 code units (the production server is JavaScript, so an
//! emoji counts 2): see [`crate::text::js_len`]. A body over any of them is answered 400 and the
//! event is lost, so the SDK fits every event to these before sending.

/// The largest body any SDK route accepts, counted on the bytes read: 413 beyond.
pub const BODY_BYTES: usize = 5 * 1024 * 1024;
/// The deepest JSON nesting a body may have. Production accepts at least 500 levels; deeper
/// bodies get a 400 with a reason rather than a crash.
pub const JSON_DEPTH: usize = 1_000;
/// Seconds of the duplicate window: a repeat of an event's dedup key within it is acknowledged
/// (`deduplicated`) and not stored.
pub const DEDUP_WINDOW_SECS: u64 = 10;
/// The largest time JavaScript's `Date` can hold, in milliseconds either side of the epoch.
pub const MAX_DATE_MS: f64 = 8.64e15;
/// The largest integer JavaScript represents exactly: `.int()` rejects anything beyond.
pub const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_991.0;
/// Characters of an exception value kept in an issue's title (then `…`).
pub const TITLE_VALUE: usize = 200;

/// `POST /api/v1/event`, v1 and v2 forms.
pub mod event {
    /// `message`: v1 1..=10 000, v2 0..=10 000.
    pub const MESSAGE: usize = 10_000;
    /// `file`: v1 1..=1 000.
    pub const FILE: usize = 1_000;
    /// `stack`: v1 1..=100 000.
    pub const STACK: usize = 100_000;
    /// `env` (and its alias `environment`).
    pub const ENV: usize = 50;
    /// `url`: an absolute URL.
    pub const URL: usize = 2_000;
    /// `status_code`: the lowest accepted.
    pub const STATUS_MIN: i64 = 100;
    /// `status_code`: the highest accepted.
    pub const STATUS_MAX: i64 = 599;
    /// `breadcrumbs`: entries.
    pub const BREADCRUMBS: usize = 100;
    /// A breadcrumb's `message`.
    pub const BREADCRUMB_MESSAGE: usize = 1_000;
    /// A breadcrumb's `category` (v2; v1 takes one of [`V1_CATEGORIES`]).
    pub const BREADCRUMB_CATEGORY: usize = 50;
    /// The categories a v1 breadcrumb may have.
    pub const V1_CATEGORIES: [&str; 5] = ["ui", "navigation", "console", "http", "user"];
    /// A breadcrumb's `type`.
    pub const BREADCRUMB_TYPE: usize = 50;
    /// `session_id`.
    pub const SESSION_ID: usize = 100;
    /// `release`.
    pub const RELEASE: usize = 200;
    /// `user_id`.
    pub const USER_ID: usize = 200;
    /// `fingerprint`, and each part of an array fingerprint (v2).
    pub const FINGERPRINT: usize = 128;
    /// Parts of an array fingerprint (v2).
    pub const FINGERPRINT_PARTS: usize = 10;
    /// `trace_id`.
    pub const TRACE_ID: usize = 64;
    /// `span_id`.
    pub const SPAN_ID: usize = 32;
    /// `event_id` (v2).
    pub const EVENT_ID: usize = 64;
    /// `exception.type` (v2), 1..=500.
    pub const EXCEPTION_TYPE: usize = 500;
    /// `exception.value` (v2).
    pub const EXCEPTION_VALUE: usize = 10_000;
    /// `frames` (v2): entries.
    pub const FRAMES: usize = 200;
    /// A frame's `filename`.
    pub const FRAME_FILENAME: usize = 1_000;
    /// A frame's `function`.
    pub const FRAME_FUNCTION: usize = 500;
    /// A frame's `context_line`.
    pub const FRAME_CONTEXT_LINE: usize = 500;
    /// `platform` (v2).
    pub const PLATFORM: usize = 50;
    /// `server_name` (v2).
    pub const SERVER_NAME: usize = 200;
    /// A tag's key (v2).
    pub const TAG_KEY: usize = 200;
    /// A tag's value (v2).
    pub const TAG_VALUE: usize = 1_000;
    /// `user.id`, `user.email`, `user.username` (v2).
    pub const USER_FIELD: usize = 200;
    /// `user.ip_address` (v2).
    pub const USER_IP: usize = 45;
    /// `request.url` (v2; any text, not checked as a URL).
    pub const REQUEST_URL: usize = 2_000;
    /// `request.method` (v2).
    pub const REQUEST_METHOD: usize = 10;
    /// `request.query_string` (v2).
    pub const QUERY_STRING: usize = 5_000;
    /// `sdk.name` (v2).
    pub const SDK_NAME: usize = 100;
    /// `sdk.version` (v2).
    pub const SDK_VERSION: usize = 50;
}

/// `POST /api/v1/envelope`, the Sentry-style form.
pub mod envelope {
    /// `event_id`, 1..=64.
    pub const EVENT_ID: usize = 64;
    /// `platform`.
    pub const PLATFORM: usize = 50;
    /// `message`.
    pub const MESSAGE: usize = 10_000;
    /// `sdk.name`.
    pub const SDK_NAME: usize = 100;
    /// `sdk.version`.
    pub const SDK_VERSION: usize = 50;
    /// `exception.type` and `exception.values[].type`.
    pub const EXCEPTION_TYPE: usize = 500;
    /// `exception.value` and `exception.values[].value`.
    pub const EXCEPTION_VALUE: usize = 10_000;
    /// `frames` and `exception.values[].stacktrace.frames`: entries.
    pub const FRAMES: usize = 100;
    /// A frame's `filename`, `abs_path`, `context_line` and each context line.
    pub const FRAME_TEXT: usize = 2_000;
    /// A frame's `function` and `module`.
    pub const FRAME_FUNCTION: usize = 500;
    /// A frame's `pre_context` and `post_context`: lines.
    pub const FRAME_CONTEXT_LINES: usize = 20;
    /// `environment`.
    pub const ENVIRONMENT: usize = 50;
    /// `release`.
    pub const RELEASE: usize = 200;
    /// `server_name`.
    pub const SERVER_NAME: usize = 200;
    /// `user.id`, `user.email`, `user.username`.
    pub const USER_FIELD: usize = 200;
    /// `user.ip_address`.
    pub const USER_IP: usize = 100;
    /// `request.url`.
    pub const REQUEST_URL: usize = 2_000;
    /// `request.method`.
    pub const REQUEST_METHOD: usize = 20;
    /// `request.query_string`.
    pub const QUERY_STRING: usize = 5_000;
    /// `trace_id`.
    pub const TRACE_ID: usize = 64;
    /// `span_id`.
    pub const SPAN_ID: usize = 32;
    /// `fingerprint` (a string only).
    pub const FINGERPRINT: usize = 128;
    /// `session_id`.
    pub const SESSION_ID: usize = 100;
    /// The file of an envelope without a usable frame.
    pub const UNKNOWN_FILE: &str = "[unknown]";
}

/// `POST /api/v1/logs`.
pub mod logs {
    /// `channel`, 1..=100.
    pub const CHANNEL: usize = 100;
    /// `message`, 1..=20 000.
    pub const MESSAGE: usize = 20_000;
    /// `env`.
    pub const ENV: usize = 50;
    /// `release`.
    pub const RELEASE: usize = 200;
    /// `url` (any text).
    pub const URL: usize = 2_000;
    /// `request_id`.
    pub const REQUEST_ID: usize = 200;
    /// `user_id`.
    pub const USER_ID: usize = 200;
    /// `trace_id`.
    pub const TRACE_ID: usize = 64;
    /// `span_id`.
    pub const SPAN_ID: usize = 32;
}

/// `POST /api/v1/cron/checkin`.
pub mod cron {
    /// `slug`, 1..=200.
    pub const SLUG: usize = 200;
}

/// Bounds the SDK sets itself, where the contract sets none, to keep bodies small.
pub mod sdk {
    /// Tags an event keeps.
    pub const TAGS: usize = 200;
    /// A request header's value.
    pub const HEADER_VALUE: usize = 2_000;
    /// Request headers an event keeps.
    pub const HEADERS: usize = 100;
    /// How deep `extra`, `contexts`, breadcrumb data and request data may nest.
    pub const VALUE_DEPTH: usize = 8;
    /// Entries one object or array in those values keeps.
    pub const VALUE_ENTRIES: usize = 100;
    /// The longest string in those values.
    pub const VALUE_STRING: usize = 16_384;
    /// The largest body the SDK sends: well under [`super::BODY_BYTES`]. Bodies over it lose
    /// their free-form data first.
    pub const BODY_BYTES: usize = 1024 * 1024;
}
