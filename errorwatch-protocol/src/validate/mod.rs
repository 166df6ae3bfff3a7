//! The validator: what each SDK route accepts, and the 400 details it gives otherwise.
//!
//! Each route's rules mirror what the production server does (its schemas, then the way it
//! normalises an accepted body into the event it stores), as recorded in the conformance
//! vectors: the same bodies pass, and a rejected one gets the same `details[].path` set.
//! Lengths count UTF-16 units ([`crate::text::js_len`]).

mod checker;
mod cron;
mod envelope;
mod event;
mod logs;

pub use checker::{Detail, MAX_DETAILS};
pub use cron::{checkin, CheckIn, CheckInStatus};
pub use envelope::envelope;
pub use event::event;
pub use logs::{log, LogEntry};

use crate::Level;

/// Which form of the contract an event came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `/api/v1/event`, the original form: message, file, line and stack required.
    V1,
    /// `/api/v1/event`, the SDK form: exception, frames, tags, user, ...
    V2,
    /// `/api/v1/envelope`, the Sentry-style form (frames oldest first).
    Envelope,
}

/// One frame of an accepted event, as sent.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AcceptedFrame {
    /// Its file (an envelope frame may have none).
    pub filename: Option<String>,
    /// Its function.
    pub function: Option<String>,
    /// Its line.
    pub lineno: Option<i64>,
    /// Its column.
    pub colno: Option<i64>,
    /// Whether the SDK marked it the application's (`None`: not said).
    pub in_app: Option<bool>,
}

impl crate::stack::StackFrame for AcceptedFrame {
    fn filename(&self) -> &str {
        self.filename.as_deref().unwrap_or_default()
    }
    fn function(&self) -> Option<&str> {
        self.function.as_deref()
    }
    fn lineno(&self) -> Option<i64> {
        self.lineno
    }
    fn colno(&self) -> Option<i64> {
        self.colno
    }
}

/// An event that passed validation, normalised as the production server normalises it before
/// grouping and storing: what its issue is keyed and titled by.
#[derive(Debug, Clone, PartialEq)]
pub struct Accepted {
    /// The form it came in.
    pub kind: Kind,
    /// The SDK's event id.
    pub event_id: Option<String>,
    /// When it happened, in milliseconds since the epoch (the time of receipt if not given).
    pub created_at_ms: i64,
    /// Its level (`error` by default).
    pub level: Level,
    /// Its environment (`unknown` by default).
    pub env: String,
    /// Its release.
    pub release: Option<String>,
    /// The message: as sent, or built from the exception when none was sent.
    pub message: String,
    /// The exception's type: as sent; for a v1 or message-only event, read from the message
    /// (`FooError: ...`) or, in v2, the upper-cased level.
    pub exception_type: Option<String>,
    /// The exception's value, likewise.
    pub exception_value: Option<String>,
    /// The culprit's file (`""` when unknown; `[unknown]` for an envelope).
    pub file: String,
    /// The culprit's line (`0` when unknown).
    pub line: i64,
    /// The stack text: as sent, or rendered from the frames.
    pub stack: String,
    /// The frames, in the order sent.
    pub frames: Vec<AcceptedFrame>,
    /// The SDK's fingerprint, an array's parts joined with `|`.
    pub sdk_fingerprint: Option<String>,
    /// The user's id (`user.id`, else `user_id`).
    pub user_id: Option<String>,
    /// The request's URL.
    pub url: Option<String>,
    /// The response's status.
    pub status_code: Option<i64>,
}
