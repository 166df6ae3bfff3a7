//! `POST /api/v1/logs`: application log lines.

use serde_json::Value;

use super::checker::{self, Checker, Str, INVALID_DATE};
use super::Detail;
use crate::limits::logs as limit;

const LEVELS: [&str; 4] = ["debug", "info", "warning", "error"];
const SOURCES: [&str; 5] = ["http", "cli", "messenger", "deprecation", "app"];

/// A log line that passed validation.
#[derive(Debug, Clone, PartialEq)]
pub struct LogEntry {
    /// When it was written (ms; the time of receipt if not given).
    pub created_at_ms: i64,
    /// `debug`, `info`, `warning` or `error`.
    pub level: String,
    /// The logger's channel.
    pub channel: String,
    /// The line.
    pub message: String,
    /// Where it came from: `http`, `cli`, `messenger`, `deprecation` or `app` (the default).
    pub source: String,
    /// Its environment.
    pub env: Option<String>,
    /// Its release.
    pub release: Option<String>,
    /// The URL of the request it was written in.
    pub url: Option<String>,
    /// The request's id.
    pub request_id: Option<String>,
    /// The user's id.
    pub user_id: Option<String>,
    /// The trace it belongs to.
    pub trace_id: Option<String>,
    /// The span it belongs to.
    pub span_id: Option<String>,
    /// Structured context (an object, or null).
    pub context: Value,
    /// Structured extra data (an object, or null).
    pub extra: Value,
}

/// Validates a log line.
///
/// ```
/// let line = serde_json::json!({ "level": "info", "channel": "app", "message": "started" });
/// assert_eq!(errorwatch_protocol::validate::log(&line, 0).unwrap().source, "app");
/// ```
///
/// # Errors
/// The details of every violation, each with the path production gives it.
pub fn log(body: &Value, now_ms: i64) -> Result<LogEntry, Vec<Detail>> {
    let mut c = Checker::new();
    let Some(body) = c.object("", Some(body), false) else {
        return Err(c.into_details());
    };
    let created_at_ms = match c.number("timestamp", body.get("timestamp"), false) {
        None => now_ms,
        Some(_) => checker::timestamp_ms(&body["timestamp"], now_ms).unwrap_or_else(|()| {
            c.fail("timestamp", INVALID_DATE);
            now_ms
        }),
    };
    let level = match body.get("level") {
        None => {
            c.one_of("level", Some(&Value::Null), &LEVELS);
            None
        }
        value => c.one_of("level", value, &LEVELS),
    };
    let channel = c.required_string(
        "channel",
        body.get("channel"),
        Str::between(1, limit::CHANNEL),
    );
    let message = c.required_string(
        "message",
        body.get("message"),
        Str::between(1, limit::MESSAGE),
    );
    let context = c.record("context", body.get("context"), true).cloned();
    let extra = c.record("extra", body.get("extra"), true).cloned();
    let optional = |c: &mut Checker, key: &str, max: usize| {
        c.string(key, body.get(key), Str::max(max).or_null())
            .map(str::to_owned)
    };
    let env = optional(&mut c, "env", limit::ENV);
    let release = optional(&mut c, "release", limit::RELEASE);
    let source = c.one_of("source", body.get("source"), &SOURCES);
    let url = optional(&mut c, "url", limit::URL);
    let request_id = optional(&mut c, "request_id", limit::REQUEST_ID);
    let user_id = optional(&mut c, "user_id", limit::USER_ID);
    let trace_id = optional(&mut c, "trace_id", limit::TRACE_ID);
    let span_id = optional(&mut c, "span_id", limit::SPAN_ID);
    c.finish(|| LogEntry {
        created_at_ms,
        level: level.unwrap_or_default().to_owned(),
        channel: channel.unwrap_or_default().to_owned(),
        message: message.unwrap_or_default().to_owned(),
        source: source.unwrap_or("app").to_owned(),
        env,
        release,
        url,
        request_id,
        user_id,
        trace_id,
        span_id,
        context: context.map_or(Value::Null, Value::Object),
        extra: extra.map_or(Value::Null, Value::Object),
    })
}
