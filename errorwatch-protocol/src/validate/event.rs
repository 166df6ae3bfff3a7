//! `POST /api/v1/event`: the v1 and v2 forms.

use serde_json::{Map, Value};

use super::checker::{self, Checker, FrameRules, Int, Path, Str, INVALID_DATE};
use super::{Accepted, AcceptedFrame, Detail, Kind};
use crate::limits::event as limit;
use crate::{stack, Level};

const LEVELS: [&str; 5] = ["fatal", "error", "warning", "info", "debug"];
const BREADCRUMB_LEVELS: [&str; 4] = ["debug", "info", "warning", "error"];

/// Whether a body is v2: any of `exception` an object, `sdk.name` a string, `frames` an array,
/// `event_id` a string, `timestamp` a string.
fn is_v2(body: &Map<String, Value>) -> bool {
    body.get("exception")
        .is_some_and(|e| e.is_object() || e.is_array())
        || body
            .get("sdk")
            .and_then(|sdk| sdk.get("name"))
            .is_some_and(Value::is_string)
        || body.get("frames").is_some_and(Value::is_array)
        || body.get("event_id").is_some_and(Value::is_string)
        || body.get("timestamp").is_some_and(Value::is_string)
}

/// The value of `key`, or of `alias` when `key` is absent or null and `alias` is not.
fn aliased<'v>(body: &'v Map<String, Value>, key: &str, alias: &str) -> Option<&'v Value> {
    match (body.get(key), body.get(alias)) {
        (None | Some(Value::Null), Some(value)) if !value.is_null() => Some(value),
        (value, _) => value,
    }
}

/// A type read from a message of the form `Namespace\FooError: ...` or `FooException: ...`,
/// and the rest of the message.
fn type_from_message(message: &str) -> Option<(&str, &str)> {
    let (head, rest) = message.split_once(':')?;
    let letters = |c: char| c.is_ascii_alphabetic() || c == '\\';
    if head.is_empty() || !head.chars().all(letters) {
        return None;
    }
    let typed = if let Some(stem) = head.strip_suffix("Exception") {
        !stem.is_empty()
    } else if let Some(stem) = head.strip_suffix("Error") {
        // At least one character, then an upper-case letter, then letters, then `Error`.
        let capital = stem.char_indices().skip(1).any(|(i, c)| {
            c.is_ascii_uppercase() && stem[i..].chars().all(|c| c.is_ascii_alphabetic())
        });
        capital
    } else {
        false
    };
    typed.then(|| (head, crate::text::js_trim(rest)))
}

/// Validates an event body and normalises it as the production server does.
///
/// ```
/// use errorwatch_protocol::validate;
/// let body = serde_json::json!({ "sdk": { "name": "a", "version": "1" }, "message": "disk full" });
/// let accepted = validate::event(&body, 0).unwrap();
/// assert_eq!(accepted.exception_type.as_deref(), Some("ERROR"));
///
/// let details = validate::event(&serde_json::json!({ "message": "v1 without file" }), 0).unwrap_err();
/// let paths: Vec<_> = details.iter().map(|d| d.path.as_str()).collect();
/// assert_eq!(paths, ["file", "line", "stack"]);
/// ```
///
/// # Errors
/// The details of every violation, each with the path production gives it.
pub fn event(body: &Value, now_ms: i64) -> Result<Accepted, Vec<Detail>> {
    let mut c = Checker::new();
    let Some(object) = c.object("", Some(body), false) else {
        return Err(c.into_details());
    };
    if is_v2(object) {
        v2(object, now_ms)
    } else {
        v1(object, now_ms)
    }
}

/// The fields v1 and v2 share.
struct Shared {
    env: String,
    level: Level,
    created_at_ms: i64,
    release: Option<String>,
    user_id: Option<String>,
    url: Option<String>,
    status_code: Option<i64>,
}

fn shared(c: &mut Checker, body: &Map<String, Value>, v2: bool, now_ms: i64) -> Shared {
    let env = c
        .string(
            "env",
            aliased(body, "env", "environment"),
            Str::max(limit::ENV),
        )
        .map_or_else(|| "unknown".to_owned(), str::to_owned);
    let url = c
        .string("url", body.get("url"), Str::max(limit::URL).or_null())
        .and_then(|url| {
            if is_url(url) {
                Some(url.to_owned())
            } else {
                c.fail("url", "Invalid URL");
                None
            }
        });
    let status_code = c.int(
        "status_code",
        body.get("status_code"),
        Int {
            min: Some(limit::STATUS_MIN),
            max: Some(limit::STATUS_MAX),
            nullable: true,
        },
    );
    let level = c
        .one_of("level", body.get("level"), &LEVELS)
        .and_then(Level::parse)
        .unwrap_or(Level::Error);
    let created_at_ms = match aliased(body, "created_at", "timestamp") {
        None => now_ms,
        Some(value @ Value::Number(_)) => {
            checker::timestamp_ms(value, now_ms).unwrap_or_else(|()| {
                c.fail("created_at", INVALID_DATE);
                now_ms
            })
        }
        Some(value @ Value::String(_)) if v2 => {
            checker::timestamp_ms(value, now_ms).unwrap_or(now_ms)
        }
        Some(_) if v2 => {
            c.union_failed("created_at");
            now_ms
        }
        Some(other) => {
            c.expected("created_at", "number", Some(other));
            now_ms
        }
    };
    let crumb_rules: fn(&mut Checker, Path<'_>, &Value) =
        if v2 { breadcrumb_v2 } else { breadcrumb_v1 };
    c.array(
        "breadcrumbs",
        body.get("breadcrumbs"),
        limit::BREADCRUMBS,
        false,
        crumb_rules,
    );
    c.string(
        "session_id",
        body.get("session_id"),
        Str::max(limit::SESSION_ID),
    );
    let release = c
        .string(
            "release",
            body.get("release"),
            Str::max(limit::RELEASE).or_null(),
        )
        .map(str::to_owned);
    let user_id = c
        .string(
            "user_id",
            body.get("user_id"),
            Str::max(limit::USER_ID).or_null(),
        )
        .map(str::to_owned);
    c.string(
        "trace_id",
        body.get("trace_id"),
        Str::max(limit::TRACE_ID).or_null(),
    );
    c.string(
        "span_id",
        body.get("span_id"),
        Str::max(limit::SPAN_ID).or_null(),
    );
    Shared {
        env,
        level,
        created_at_ms,
        release,
        user_id,
        url,
        status_code,
    }
}

/// Whether `text` is a URL as the WHATWG parser (JavaScript's `new URL`) reads it.
pub(crate) fn is_url(text: &str) -> bool {
    url::Url::parse(crate::text::js_trim(text)).is_ok()
}

fn breadcrumb_common(c: &mut Checker, path: Path<'_>, crumb: &Map<String, Value>) {
    c.string(
        path.key("type"),
        crumb.get("type"),
        Str::max(limit::BREADCRUMB_TYPE),
    );
    c.one_of(path.key("level"), crumb.get("level"), &BREADCRUMB_LEVELS);
    c.string(
        path.key("message"),
        crumb.get("message"),
        Str::max(limit::BREADCRUMB_MESSAGE),
    );
    c.record(path.key("data"), crumb.get("data"), false);
}

fn breadcrumb_v1(c: &mut Checker, path: Path<'_>, item: &Value) {
    let Some(crumb) = c.object(path, Some(item), false) else {
        return;
    };
    match crumb.get("timestamp") {
        Some(Value::Number(_)) => {}
        other => c.expected(path.key("timestamp"), "number", other),
    }
    let category = path.key("category");
    match crumb.get("category") {
        Some(value) => {
            c.one_of(category, Some(value), &limit::V1_CATEGORIES);
        }
        None => c.one_of_missing(category, &limit::V1_CATEGORIES),
    }
    breadcrumb_common(c, path, crumb);
}

fn breadcrumb_v2(c: &mut Checker, path: Path<'_>, item: &Value) {
    let Some(crumb) = c.object(path, Some(item), false) else {
        return;
    };
    match crumb.get("timestamp") {
        None | Some(Value::Number(_) | Value::String(_)) => {}
        Some(_) => c.union_failed(path.key("timestamp")),
    }
    c.string(
        path.key("category"),
        crumb.get("category"),
        Str::max(limit::BREADCRUMB_CATEGORY),
    );
    breadcrumb_common(c, path, crumb);
}

impl Checker {
    /// A required enum that is absent.
    fn one_of_missing(&mut self, path: Path<'_>, options: &[&str]) {
        self.one_of(path, Some(&Value::Null), options);
    }
}

fn v1(body: &Map<String, Value>, now_ms: i64) -> Result<Accepted, Vec<Detail>> {
    let mut c = Checker::new();
    let message = c.required_string(
        "message",
        body.get("message"),
        Str::between(1, limit::MESSAGE),
    );
    let file = c.required_string("file", body.get("file"), Str::between(1, limit::FILE));
    let line = if body.contains_key("line") {
        c.int(
            "line",
            body.get("line"),
            Int {
                min: Some(1),
                ..Int::default()
            },
        )
    } else {
        c.expected("line", "number", None);
        None
    };
    let stack = c.required_string("stack", body.get("stack"), Str::between(1, limit::STACK));
    let shared = shared(&mut c, body, false, now_ms);
    let fingerprint = c.string(
        "fingerprint",
        body.get("fingerprint"),
        Str::max(limit::FINGERPRINT).or_null(),
    );
    c.finish(|| {
        let message = message.unwrap_or_default().to_owned();
        let (exception_type, exception_value) = match type_from_message(&message) {
            Some((ty, rest)) => (ty.to_owned(), rest.to_owned()),
            None => ("Error".to_owned(), message.clone()),
        };
        Accepted {
            kind: Kind::V1,
            event_id: None,
            created_at_ms: shared.created_at_ms,
            level: shared.level,
            env: shared.env,
            release: shared.release,
            exception_type: Some(exception_type),
            exception_value: Some(exception_value),
            message,
            file: file.unwrap_or_default().to_owned(),
            line: line.unwrap_or_default(),
            stack: stack.unwrap_or_default().to_owned(),
            frames: Vec::new(),
            sdk_fingerprint: fingerprint.map(str::to_owned),
            user_id: shared.user_id,
            url: shared.url,
            status_code: shared.status_code,
        }
    })
}

fn v2(body: &Map<String, Value>, now_ms: i64) -> Result<Accepted, Vec<Detail>> {
    let mut c = Checker::new();
    let exception = c
        .object("exception", body.get("exception"), false)
        .map(|ex| {
            let ty = c.required_string(
                "exception.type",
                ex.get("type"),
                Str::between(1, limit::EXCEPTION_TYPE),
            );
            let value = c.required_string(
                "exception.value",
                ex.get("value"),
                Str::max(limit::EXCEPTION_VALUE),
            );
            (ty.unwrap_or_default(), value.unwrap_or_default())
        });
    let message = c.string("message", body.get("message"), Str::max(limit::MESSAGE));
    let event_id = c.string("event_id", body.get("event_id"), Str::max(limit::EVENT_ID));
    let file = c.string("file", body.get("file"), Str::max(limit::FILE));
    let line = c.int(
        "line",
        body.get("line"),
        Int {
            min: Some(1),
            ..Int::default()
        },
    );
    let stack = c.string("stack", body.get("stack"), Str::max(limit::STACK));
    let mut frames = Vec::new();
    c.array(
        "frames",
        body.get("frames"),
        limit::FRAMES,
        false,
        |c, path, item| {
            if let Some(frame) = frame_v2(c, path, item) {
                frames.push(frame);
            }
        },
    );
    c.string("platform", body.get("platform"), Str::max(limit::PLATFORM));
    c.string(
        "server_name",
        body.get("server_name"),
        Str::max(limit::SERVER_NAME),
    );
    c.string_record(
        "tags",
        body.get("tags"),
        limit::TAG_KEY,
        Str::max(limit::TAG_VALUE),
    );
    c.record("extra", body.get("extra"), false);
    let user_id = c.user(body.get("user"), limit::USER_FIELD, limit::USER_IP);
    let request_url = c.request(
        body.get("request"),
        limit::REQUEST_URL,
        limit::REQUEST_METHOD,
        limit::QUERY_STRING,
    );
    c.record("contexts", body.get("contexts"), false);
    if let Some(sdk) = c.object("sdk", body.get("sdk"), false) {
        c.required_string("sdk.name", sdk.get("name"), Str::max(limit::SDK_NAME));
        c.required_string(
            "sdk.version",
            sdk.get("version"),
            Str::max(limit::SDK_VERSION),
        );
    }
    let profile_url = c
        .record("profile", body.get("profile"), true)
        .and_then(|profile| profile.get("url"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let shared = shared(&mut c, body, true, now_ms);
    let fingerprint = fingerprint_v2(&mut c, body.get("fingerprint"));
    c.finish(|| {
        let (exception_type, exception_value) = match (exception, message) {
            (Some((ty, value)), _) => (ty.to_owned(), value.to_owned()),
            (None, Some(message)) if !message.is_empty() => match type_from_message(message) {
                Some((ty, rest)) => (ty.to_owned(), rest.to_owned()),
                None => (shared.level.as_str().to_uppercase(), message.to_owned()),
            },
            (None, _) => ("Unknown".to_owned(), "(no message)".to_owned()),
        };
        let message = message.map_or_else(
            || format!("{exception_type}: {exception_value}"),
            str::to_owned,
        );
        // The culprit: the first frame marked in-app, else the first frame.
        let (mut file, mut line) = (file.map(str::to_owned), line);
        let file_or_line_missing = file.as_deref().is_none_or(str::is_empty) || line.is_none();
        if file_or_line_missing {
            if let Some(culprit) = frames
                .iter()
                .find(|f| f.in_app == Some(true))
                .or(frames.first())
            {
                file = file.or_else(|| culprit.filename.clone());
                line = line.or(culprit.lineno);
            }
        }
        let stack = match stack.filter(|s| !s.is_empty()) {
            Some(stack) => stack.to_owned(),
            None => stack::render(&frames),
        };
        Accepted {
            kind: Kind::V2,
            event_id: event_id.map(str::to_owned),
            created_at_ms: shared.created_at_ms,
            level: shared.level,
            env: shared.env,
            release: shared.release,
            message,
            exception_type: Some(exception_type),
            exception_value: Some(exception_value),
            file: file.unwrap_or_default(),
            line: line.unwrap_or_default(),
            stack,
            frames,
            sdk_fingerprint: fingerprint,
            user_id: user_id.or(shared.user_id),
            url: shared.url.or(request_url).or(profile_url),
            status_code: shared.status_code,
        }
    })
}

fn frame_v2(c: &mut Checker, path: Path<'_>, item: &Value) -> Option<AcceptedFrame> {
    let frame = c.object(path, Some(item), false)?;
    Some(c.frame(
        path,
        frame,
        FrameRules {
            filename_required: true,
            filename: Str::max(limit::FRAME_FILENAME),
            function: limit::FRAME_FUNCTION,
            context_line: Str::max(limit::FRAME_CONTEXT_LINE),
            context_item: Str::ANY,
            context_lines: usize::MAX,
        },
    ))
}

/// A string, or (v2) an array of at most 10 strings joined with `|`; an empty array is none.
fn fingerprint_v2(c: &mut Checker, value: Option<&Value>) -> Option<String> {
    let fits = |text: &str| crate::text::js_len(text) <= limit::FINGERPRINT;
    match value {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) if fits(text) => Some(text.clone()),
        Some(Value::Array(parts))
            if parts.len() <= limit::FINGERPRINT_PARTS
                && parts.iter().all(|p| p.as_str().is_some_and(fits)) =>
        {
            let parts: Vec<&str> = parts.iter().filter_map(Value::as_str).collect();
            (!parts.is_empty()).then(|| parts.join("|"))
        }
        Some(_) => {
            c.union_failed("fingerprint");
            None
        }
    }
}
