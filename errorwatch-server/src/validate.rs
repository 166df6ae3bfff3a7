//! The ingestion contract: what `POST /api/v1/event` and `/api/v1/envelope` accept.
//!
//! Every rule of the field table lives here, and every violation becomes one `details` entry
//! (`path` and `message`) of the 400 answer, worded as the production server words them.
//! Lengths count UTF-16 code units, as the production server (JavaScript) counts them.

use serde::Serialize;
use serde_json::{Map, Value};

/// One validation failure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Detail {
    /// Where: `exception.type`, `frames.3.filename`, ...
    pub path: String,
    /// What is wrong.
    pub message: String,
}

/// Which form of the contract a body uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// The original form: message, file, line and stack required.
    V1,
    /// The SDK form: exception, frames, tags, user, ...
    V2,
}

/// One stack frame, as validated.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Frame {
    /// Source file.
    pub filename: String,
    /// Function, if given.
    pub function: Option<String>,
    /// Line, if given.
    pub lineno: Option<i64>,
    /// Column, if given.
    pub colno: Option<i64>,
    /// Whether the frame is the application's.
    pub in_app: bool,
}

/// An event that passed validation, ready for grouping and storage.
#[derive(Debug, Clone, PartialEq)]
pub struct Accepted {
    /// v1 or v2 (envelopes are read as v2).
    pub version: Version,
    /// The SDK's event id.
    pub event_id: Option<String>,
    /// When it happened, in milliseconds since the epoch (now if not given).
    pub created_at_ms: i64,
    /// `fatal`, `error`, `warning`, `info` or `debug`.
    pub level: String,
    /// Environment, `unknown` by default.
    pub env: String,
    /// Release.
    pub release: Option<String>,
    /// Message.
    pub message: Option<String>,
    /// The exception's type; without one, the upper-cased level.
    pub error_type: String,
    /// The exception's value; without one, the message.
    pub error_value: String,
    /// Whether an exception object was sent.
    pub has_exception: bool,
    /// The culprit's file.
    pub file: Option<String>,
    /// The culprit's line.
    pub line: Option<i64>,
    /// The frames, in the order the contract gives them (innermost first for v2 events).
    pub frames: Vec<Frame>,
    /// The culprit frame: first in-app (v2 events), last in-app (envelopes), else first.
    pub culprit: Option<Frame>,
    /// The stack text.
    pub stack: Option<String>,
    /// The SDK's fingerprint, parts joined with `|`.
    pub fingerprint: Option<String>,
    /// The user's id (top-level `user_id`, else `user.id`).
    pub user_id: Option<String>,
    /// URL of the request.
    pub url: Option<String>,
    /// HTTP status of the request.
    pub status_code: Option<i64>,
    /// The body as received, stored for the event view.
    pub payload: Value,
}

const LEVELS: &[&str] = &["fatal", "error", "warning", "info", "debug"];
const V1_CATEGORIES: &[&str] = &["ui", "navigation", "console", "http", "user"];

/// The length of `text` as JavaScript counts it.
pub fn js_len(text: &str) -> usize {
    text.encode_utf16().count()
}

/// Which version a body is (see the contract).
pub fn detect_version(body: &Map<String, Value>) -> Version {
    let v2 = body.get("exception").is_some_and(Value::is_object)
        || body
            .get("sdk")
            .and_then(|sdk| sdk.get("name"))
            .is_some_and(Value::is_string)
        || body.get("frames").is_some_and(Value::is_array)
        || body.get("event_id").is_some_and(Value::is_string)
        || body.get("timestamp").is_some_and(Value::is_string);
    if v2 {
        Version::V2
    } else {
        Version::V1
    }
}

/// Collects details while reading typed fields.
struct Checker<'a> {
    body: &'a Map<String, Value>,
    details: Vec<Detail>,
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

impl<'a> Checker<'a> {
    fn fail(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.details.push(Detail {
            path: path.into(),
            message: message.into(),
        });
    }

    fn expected(&mut self, path: &str, expected: &str, value: &Value) {
        self.fail(
            path,
            format!("Expected {expected}, received {}", type_name(value)),
        );
    }

    /// A string of `min..=max` UTF-16 units. `nullable` accepts `null` as absent.
    fn string_at(
        &mut self,
        path: &str,
        value: Option<&Value>,
        min: usize,
        max: usize,
        nullable: bool,
    ) -> Option<String> {
        match value {
            None => None,
            Some(Value::Null) if nullable => None,
            Some(Value::String(text)) => {
                let len = js_len(text);
                if len < min {
                    self.fail(
                        path,
                        format!("String must contain at least {min} character(s)"),
                    );
                    None
                } else if len > max {
                    self.fail(
                        path,
                        format!("String must contain at most {max} character(s)"),
                    );
                    None
                } else {
                    Some(text.clone())
                }
            }
            Some(other) => {
                self.expected(path, "string", other);
                None
            }
        }
    }

    fn string(&mut self, key: &str, min: usize, max: usize, nullable: bool) -> Option<String> {
        let value = self.body.get(key);
        self.string_at(key, value, min, max, nullable)
    }

    fn required(&mut self, key: &str) -> bool {
        if self.body.contains_key(key) {
            true
        } else {
            self.fail(key, "Required");
            false
        }
    }

    fn integer_at(&mut self, path: &str, value: Option<&Value>, nullable: bool) -> Option<i64> {
        match value {
            None => None,
            Some(Value::Null) if nullable => None,
            Some(Value::Number(number)) => match number.as_i64() {
                Some(n) => Some(n),
                None => {
                    self.fail(path, "Expected integer, received float");
                    None
                }
            },
            Some(other) => {
                self.expected(path, "number", other);
                None
            }
        }
    }

    fn object_at<'v>(
        &mut self,
        path: &str,
        value: Option<&'v Value>,
    ) -> Option<&'v Map<String, Value>> {
        match value {
            None => None,
            Some(Value::Object(object)) => Some(object),
            Some(other) => {
                self.expected(path, "object", other);
                None
            }
        }
    }

    fn string_map(&mut self, path: &str, value: Option<&Value>, key_max: usize, value_max: usize) {
        if let Some(map) = self.object_at(path, value) {
            for (key, item) in map {
                if js_len(key) > key_max {
                    self.fail(
                        format!("{path}.{key}"),
                        format!("Key must contain at most {key_max} character(s)"),
                    );
                }
                self.string_at(&format!("{path}.{key}"), Some(item), 0, value_max, false);
            }
        }
    }

    fn level_at(&mut self, path: &str, value: Option<&Value>) -> Option<String> {
        match value {
            None => None,
            Some(Value::String(level)) if LEVELS.contains(&level.as_str()) => Some(level.clone()),
            Some(Value::String(level)) => {
                self.fail(
                    path,
                    format!(
                        "Invalid enum value. Expected 'fatal' | 'error' | 'warning' | 'info' | 'debug', received '{level}'"
                    ),
                );
                None
            }
            Some(other) => {
                self.expected(path, "string", other);
                None
            }
        }
    }

    /// A v1 timestamp: a number (seconds below 1e12, else milliseconds); v2 also RFC 3339.
    fn timestamp_at(
        &mut self,
        path: &str,
        value: Option<&Value>,
        allow_string: bool,
    ) -> Option<i64> {
        match value {
            None => None,
            Some(Value::Number(number)) => match number.as_f64() {
                Some(n) if n.is_finite() && n >= 0.0 => Some(if n < 1e12 {
                    (n * 1000.0) as i64
                } else {
                    n as i64
                }),
                _ => {
                    self.fail(path, "Invalid timestamp");
                    None
                }
            },
            Some(Value::String(text)) if allow_string => {
                match chrono::DateTime::parse_from_rfc3339(text) {
                    Ok(time) => Some(time.timestamp_millis()),
                    Err(_) => {
                        self.fail(path, "Invalid datetime");
                        None
                    }
                }
            }
            Some(other) => {
                self.expected(
                    path,
                    if allow_string {
                        "number or string"
                    } else {
                        "number"
                    },
                    other,
                );
                None
            }
        }
    }

    fn absolute_url(&mut self, path: &str, value: Option<&Value>, max: usize) -> Option<String> {
        let url = self.string_at(path, value, 0, max, true)?;
        let absolute = url.split_once("://").is_some_and(|(scheme, rest)| {
            !scheme.is_empty()
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
                && !rest.is_empty()
        });
        if absolute {
            Some(url)
        } else {
            self.fail(path, "Invalid url");
            None
        }
    }
}

/// A body must be a JSON object: anything else is one detail at the root.
fn as_object(body: &Value) -> Result<&Map<String, Value>, Vec<Detail>> {
    body.as_object().ok_or_else(|| {
        vec![Detail {
            path: String::new(),
            message: format!("Expected object, received {}", type_name(body)),
        }]
    })
}

/// Validates an event body (`POST /api/v1/event`).
pub fn event(body: &Value, now_ms: i64) -> Result<Accepted, Vec<Detail>> {
    let object = as_object(body)?;
    let version = detect_version(object);
    let mut c = Checker {
        body: object,
        details: Vec::new(),
    };
    let v2 = version == Version::V2;

    if !v2 {
        for key in ["message", "file", "line", "stack"] {
            c.required(key);
        }
    }
    let message = c.string("message", 1, 10_000, false);
    let mut file = c.string("file", 1, 1_000, false);
    let mut line = match c.integer_at("line", object.get("line"), false) {
        Some(n) if n <= 0 => {
            c.fail("line", "Number must be greater than 0");
            None
        }
        other => other,
    };
    let stack = c.string("stack", 1, 100_000, false);
    let env_value = object.get("env").or_else(|| object.get("environment"));
    let env = c
        .string_at("env", env_value, 0, 50, false)
        .unwrap_or_else(|| "unknown".to_owned());
    let url = c.absolute_url("url", object.get("url"), 2_000);
    let status_code = match c.integer_at("status_code", object.get("status_code"), true) {
        Some(code) if !(100..=599).contains(&code) => {
            c.fail("status_code", "Number must be between 100 and 599");
            None
        }
        other => other,
    };
    let level = c
        .level_at("level", object.get("level"))
        .unwrap_or_else(|| "error".to_owned());
    let created_value = object.get("created_at").or_else(|| object.get("timestamp"));
    let created_at_ms = c
        .timestamp_at("created_at", created_value, v2)
        .unwrap_or(now_ms);
    breadcrumbs(&mut c, object.get("breadcrumbs"), v2);
    c.string("session_id", 0, 100, false);
    let release = c.string("release", 0, 200, true);
    let mut user_id = c.string("user_id", 0, 200, false);
    let fingerprint = fingerprint(&mut c, object.get("fingerprint"), v2);
    c.string("trace_id", 0, 64, false);
    c.string("span_id", 0, 32, false);

    let mut exception = None;
    let mut frames = Vec::new();
    if v2 {
        c.string("event_id", 0, 64, false);
        if let Some(value) = object.get("exception") {
            if let Some(ex) = c.object_at("exception", Some(value)) {
                let ty = if ex.contains_key("type") {
                    c.string_at("exception.type", ex.get("type"), 1, 500, false)
                } else {
                    c.fail("exception.type", "Required");
                    None
                };
                let value = if ex.contains_key("value") {
                    c.string_at("exception.value", ex.get("value"), 0, 10_000, false)
                } else {
                    c.fail("exception.value", "Required");
                    None
                };
                if let (Some(ty), Some(value)) = (ty, value) {
                    exception = Some((ty, value));
                }
            }
        }
        frames = frames_at(&mut c, "frames", object.get("frames"), 200);
        c.string("platform", 0, 50, false);
        c.string("server_name", 0, 200, false);
        c.string_map("tags", object.get("tags"), 200, 1_000);
        c.object_at("extra", object.get("extra"));
        c.object_at("contexts", object.get("contexts"));
        if let Some(user) = c.object_at("user", object.get("user")) {
            let id = c.string_at("user.id", user.get("id"), 0, 200, false);
            c.string_at("user.email", user.get("email"), 0, usize::MAX, false);
            c.string_at("user.ip_address", user.get("ip_address"), 0, 45, false);
            c.string_at("user.username", user.get("username"), 0, usize::MAX, false);
            user_id = user_id.or(id);
        }
        if let Some(request) = c.object_at("request", object.get("request")) {
            c.string_at("request.url", request.get("url"), 0, usize::MAX, false);
            c.string_at("request.method", request.get("method"), 0, 10, false);
            c.string_map(
                "request.headers",
                request.get("headers"),
                usize::MAX,
                usize::MAX,
            );
            c.string_at(
                "request.query_string",
                request.get("query_string"),
                0,
                5_000,
                false,
            );
        }
        if let Some(sdk) = c.object_at("sdk", object.get("sdk")) {
            for (key, max) in [("name", 100), ("version", 50)] {
                let path = format!("sdk.{key}");
                if sdk.contains_key(key) {
                    c.string_at(&path, sdk.get(key), 0, max, false);
                } else {
                    c.fail(path, "Required");
                }
            }
        }
    }

    if !c.details.is_empty() {
        return Err(c.details);
    }
    // The culprit: the first in-app frame in array order, else the first frame.
    let culprit = frames.iter().find(|f| f.in_app).or(frames.first()).cloned();
    if let Some(frame) = &culprit {
        file = file.or_else(|| Some(frame.filename.clone()));
        line = line.or(frame.lineno);
    }
    let event_id = object
        .get("event_id")
        .and_then(Value::as_str)
        .map(str::to_owned);
    Ok(finish(
        version,
        event_id,
        created_at_ms,
        level,
        env,
        release,
        message,
        exception,
        file,
        line,
        frames,
        culprit,
        stack,
        fingerprint,
        user_id,
        url,
        status_code,
        body.clone(),
    ))
}

#[allow(clippy::too_many_arguments)]
fn finish(
    version: Version,
    event_id: Option<String>,
    created_at_ms: i64,
    level: String,
    env: String,
    release: Option<String>,
    message: Option<String>,
    exception: Option<(String, String)>,
    file: Option<String>,
    line: Option<i64>,
    frames: Vec<Frame>,
    culprit: Option<Frame>,
    stack: Option<String>,
    fingerprint: Option<String>,
    user_id: Option<String>,
    url: Option<String>,
    status_code: Option<i64>,
    payload: Value,
) -> Accepted {
    let has_exception = exception.is_some();
    let (error_type, error_value) =
        exception.unwrap_or_else(|| (level.to_uppercase(), message.clone().unwrap_or_default()));
    let stack = stack.or_else(|| (!frames.is_empty()).then(|| stack_text(&frames)));
    Accepted {
        version,
        event_id,
        created_at_ms,
        level,
        env,
        release,
        message,
        error_type,
        error_value,
        has_exception,
        file,
        line,
        frames,
        culprit,
        stack,
        fingerprint,
        user_id,
        url,
        status_code,
        payload,
    }
}

/// The stack text the server shows: `at function (file:line:col)`.
pub fn stack_text(frames: &[Frame]) -> String {
    frames
        .iter()
        .map(|frame| {
            let mut place = frame.filename.clone();
            if let Some(line) = frame.lineno {
                place.push_str(&format!(":{line}"));
                if let Some(col) = frame.colno {
                    place.push_str(&format!(":{col}"));
                }
            }
            format!(
                "at {} ({place})",
                frame.function.as_deref().unwrap_or("anonymous")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn breadcrumbs(c: &mut Checker<'_>, value: Option<&Value>, v2: bool) {
    let Some(value) = value else { return };
    let Some(items) = value.as_array() else {
        c.expected("breadcrumbs", "array", value);
        return;
    };
    if items.len() > 100 {
        c.fail("breadcrumbs", "Array must contain at most 100 element(s)");
        return;
    }
    for (i, item) in items.iter().enumerate() {
        let path = format!("breadcrumbs.{i}");
        let Some(crumb) = c.object_at(&path, Some(item)) else {
            continue;
        };
        if crumb.contains_key("timestamp") {
            c.timestamp_at(&format!("{path}.timestamp"), crumb.get("timestamp"), v2);
        } else {
            c.fail(format!("{path}.timestamp"), "Required");
        }
        match crumb.get("category") {
            None => c.fail(format!("{path}.category"), "Required"),
            Some(category) if v2 => {
                c.string_at(&format!("{path}.category"), Some(category), 0, 50, false);
            }
            Some(Value::String(category)) if V1_CATEGORIES.contains(&category.as_str()) => {}
            Some(Value::String(category)) => c.fail(
                format!("{path}.category"),
                format!(
                    "Invalid enum value. Expected 'ui' | 'navigation' | 'console' | 'http' | 'user', received '{category}'"
                ),
            ),
            Some(other) => c.expected(&format!("{path}.category"), "string", other),
        }
        c.string_at(
            &format!("{path}.type"),
            crumb.get("type"),
            0,
            usize::MAX,
            false,
        );
        c.level_at(&format!("{path}.level"), crumb.get("level"));
        c.string_at(
            &format!("{path}.message"),
            crumb.get("message"),
            0,
            1_000,
            false,
        );
        c.object_at(&format!("{path}.data"), crumb.get("data"));
    }
}

fn fingerprint(c: &mut Checker<'_>, value: Option<&Value>, v2: bool) -> Option<String> {
    match value {
        None => None,
        Some(Value::Array(parts)) if v2 => {
            if parts.len() > 10 {
                c.fail("fingerprint", "Array must contain at most 10 element(s)");
                return None;
            }
            let mut joined = Vec::new();
            for (i, part) in parts.iter().enumerate() {
                joined.push(c.string_at(&format!("fingerprint.{i}"), Some(part), 0, 128, false)?);
            }
            Some(joined.join("|"))
        }
        Some(other) => c.string_at("fingerprint", Some(other), 0, 128, false),
    }
}

fn frames_at(c: &mut Checker<'_>, path: &str, value: Option<&Value>, max: usize) -> Vec<Frame> {
    let Some(value) = value else {
        return Vec::new();
    };
    let Some(items) = value.as_array() else {
        c.expected(path, "array", value);
        return Vec::new();
    };
    if items.len() > max {
        c.fail(path, format!("Array must contain at most {max} element(s)"));
        return Vec::new();
    }
    let mut frames = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let at = format!("{path}.{i}");
        let Some(frame) = c.object_at(&at, Some(item)) else {
            continue;
        };
        let filename = if frame.contains_key("filename") {
            c.string_at(
                &format!("{at}.filename"),
                frame.get("filename"),
                0,
                1_000,
                false,
            )
        } else {
            c.fail(format!("{at}.filename"), "Required");
            None
        };
        let function = c.string_at(
            &format!("{at}.function"),
            frame.get("function"),
            0,
            usize::MAX,
            true,
        );
        let lineno = c.integer_at(&format!("{at}.lineno"), frame.get("lineno"), true);
        let colno = c.integer_at(&format!("{at}.colno"), frame.get("colno"), true);
        let in_app = match frame.get("in_app") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(flag)) => *flag,
            Some(other) => {
                c.expected(&format!("{at}.in_app"), "boolean", other);
                false
            }
        };
        c.string_at(
            &format!("{at}.context_line"),
            frame.get("context_line"),
            0,
            500,
            true,
        );
        for key in ["pre_context", "post_context"] {
            if let Some(lines) = frame.get(key) {
                if !lines.is_array() && !lines.is_null() {
                    c.expected(&format!("{at}.{key}"), "array", lines);
                }
            }
        }
        if let Some(filename) = filename {
            frames.push(Frame {
                filename,
                function,
                lineno,
                colno,
                in_app,
            });
        }
    }
    frames
}

/// Validates a Sentry-style envelope body (`POST /api/v1/envelope`), read as a v2 event whose
/// frames are oldest first (so the culprit is the last in-app frame).
pub fn envelope(body: &Value, now_ms: i64) -> Result<Accepted, Vec<Detail>> {
    let object = as_object(body)?;
    let mut c = Checker {
        body: object,
        details: Vec::new(),
    };
    let event_id = c.string("event_id", 0, 64, true);
    let created_at_ms = c
        .timestamp_at("timestamp", object.get("timestamp"), true)
        .unwrap_or(now_ms);
    c.string("platform", 0, 50, true);
    let level = c
        .level_at("level", object.get("level"))
        .unwrap_or_else(|| "error".to_owned());
    let message = match object.get("message") {
        // Sentry sends `message` as a string or as `{formatted, message}`.
        Some(Value::Object(formatted)) => formatted
            .get("formatted")
            .or_else(|| formatted.get("message"))
            .and_then(Value::as_str)
            .map(str::to_owned),
        other => c.string_at("message", other, 0, 10_000, true),
    };
    let env = c
        .string_at("environment", object.get("environment"), 0, 50, true)
        .unwrap_or_else(|| "unknown".to_owned());
    let release = c.string("release", 0, 200, true);
    c.string("server_name", 0, 200, true);
    let status_code = c.integer_at("status_code", object.get("status_code"), true);
    let fingerprint = c.string("fingerprint", 0, 128, true);

    let mut exception = None;
    let mut frames = Vec::new();
    if let Some(ex) = c.object_at("exception", object.get("exception")) {
        let first = ex
            .get("values")
            .and_then(Value::as_array)
            .and_then(|values| values.last())
            .and_then(Value::as_object);
        let source = first.unwrap_or(ex);
        let ty = c.string_at("exception.type", source.get("type"), 0, 500, true);
        let value = c.string_at("exception.value", source.get("value"), 0, 10_000, true);
        if ty.is_some() || value.is_some() {
            exception = Some((
                ty.unwrap_or_else(|| "Error".to_owned()),
                value.unwrap_or_default(),
            ));
        }
        if let Some(stack_frames) = source
            .get("stacktrace")
            .and_then(|stack| stack.get("frames"))
        {
            frames = frames_at(
                &mut c,
                "exception.stacktrace.frames",
                Some(stack_frames),
                100,
            );
        }
    }
    if frames.is_empty() {
        frames = frames_at(&mut c, "frames", object.get("frames"), 100);
    }
    c.string_map("tags", object.get("tags"), 200, 1_000);
    let user_id = c
        .object_at("user", object.get("user"))
        .and_then(|user| user.get("id"))
        .and_then(|id| match id {
            Value::String(id) => Some(id.clone()),
            Value::Number(id) => Some(id.to_string()),
            _ => None,
        });
    c.object_at("request", object.get("request"));
    c.object_at("extra", object.get("extra"));
    c.object_at("contexts", object.get("contexts"));
    if let Some(crumbs) = object.get("breadcrumbs") {
        // Sentry wraps them: `{"values": [...]}`.
        let list = crumbs.get("values").unwrap_or(crumbs);
        breadcrumbs(&mut c, Some(list), true);
    }
    if !c.details.is_empty() {
        return Err(c.details);
    }
    // Oldest first: the culprit is the last in-app frame.
    let culprit = frames
        .iter()
        .rev()
        .find(|f| f.in_app)
        .or(frames.last())
        .cloned();
    let file = culprit.as_ref().map(|f| f.filename.clone());
    let line = culprit.as_ref().and_then(|f| f.lineno);
    Ok(finish(
        Version::V2,
        event_id,
        created_at_ms,
        level,
        env,
        release,
        message,
        exception,
        file,
        line,
        frames,
        culprit,
        None,
        fingerprint,
        user_id,
        None,
        status_code,
        body.clone(),
    ))
}
