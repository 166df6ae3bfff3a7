//! `POST /api/v1/envelope`: the Sentry-style form the PHP SDK sends.

use serde_json::{Map, Value};

use super::checker::{self, Checker, FrameRules, Int, Path, Str, INVALID_DATE};
use super::{Accepted, AcceptedFrame, Detail, Kind};
use crate::limits::{envelope as limit, event as event_limit};
use crate::Level;

const LEVELS: [&str; 5] = ["fatal", "error", "warning", "info", "debug"];

/// Validates an envelope body and normalises it as the production server does: frames are
/// oldest first, so the culprit is the last frame not marked out of the application.
///
/// ```
/// use errorwatch_protocol::validate;
/// let body = serde_json::json!({ "exception": { "type": "E", "value": "v" } });
/// let accepted = validate::envelope(&body, 0).unwrap();
/// assert_eq!(accepted.file, "[unknown]");
/// ```
///
/// # Errors
/// The details of every violation, each with the path production gives it.
pub fn envelope(body: &Value, now_ms: i64) -> Result<Accepted, Vec<Detail>> {
    let mut c = Checker::new();
    let Some(body) = c.object("", Some(body), false) else {
        return Err(c.into_details());
    };
    let event_id = c.string(
        "event_id",
        body.get("event_id"),
        Str::between(1, limit::EVENT_ID),
    );
    let created_at_ms = match body.get("timestamp") {
        None => now_ms,
        Some(value @ (Value::Number(_) | Value::String(_))) => checker::timestamp_ms(value, now_ms)
            .unwrap_or_else(|()| {
                c.fail("timestamp", INVALID_DATE);
                now_ms
            }),
        Some(_) => {
            c.union_failed("timestamp");
            now_ms
        }
    };
    c.string("platform", body.get("platform"), Str::max(limit::PLATFORM));
    let level = c
        .one_of("level", body.get("level"), &LEVELS)
        .and_then(Level::parse)
        .unwrap_or(Level::Error);
    if let Some(sdk) = c.object("sdk", body.get("sdk"), false) {
        c.string("sdk.name", sdk.get("name"), Str::max(limit::SDK_NAME));
        c.string(
            "sdk.version",
            sdk.get("version"),
            Str::max(limit::SDK_VERSION),
        );
    }
    c.record("contexts", body.get("contexts"), false);
    let message = c.string("message", body.get("message"), Str::max(limit::MESSAGE));
    let mut exception_type = None;
    let mut exception_value = None;
    let mut nested_frames = Vec::new();
    if let Some(exception) = c.object("exception", body.get("exception"), false) {
        let ty = c.string(
            "exception.type",
            exception.get("type"),
            Str::max(limit::EXCEPTION_TYPE),
        );
        let value = c.string(
            "exception.value",
            exception.get("value"),
            Str::max(limit::EXCEPTION_VALUE),
        );
        let mut first = None;
        c.array(
            "exception.values",
            exception.get("values"),
            usize::MAX,
            false,
            |c, path, item| {
                let Some(entry) = c.object(path, Some(item), false) else {
                    return;
                };
                let ty = c.string(
                    path.key("type"),
                    entry.get("type"),
                    Str::max(limit::EXCEPTION_TYPE),
                );
                let value = c.string(
                    path.key("value"),
                    entry.get("value"),
                    Str::max(limit::EXCEPTION_VALUE),
                );
                let mut frames = Vec::new();
                let at = path.key("stacktrace");
                if let Some(stacktrace) = c.object(at, entry.get("stacktrace"), false) {
                    frames = frames_at(c, at.key("frames"), stacktrace.get("frames"));
                }
                if first.is_none() {
                    first = Some((ty, value, frames));
                }
            },
        );
        // Production reads the first entry of `values`, and only when the top level has none.
        let (first_ty, first_value, frames) = first.unwrap_or_default();
        exception_type = ty.or(first_ty).map(str::to_owned);
        exception_value = value.or(first_value).map(str::to_owned);
        nested_frames = frames;
    }
    let top_frames = frames_at(&mut c, "frames".into(), body.get("frames"));
    let environment = c.string(
        "environment",
        body.get("environment"),
        Str::max(limit::ENVIRONMENT),
    );
    let release = c.string("release", body.get("release"), Str::max(limit::RELEASE));
    c.string(
        "server_name",
        body.get("server_name"),
        Str::max(limit::SERVER_NAME),
    );
    c.string_record("tags", body.get("tags"), usize::MAX, Str::ANY);
    let user_id = c.user(body.get("user"), limit::USER_FIELD, limit::USER_IP);
    let url = c.request(
        body.get("request"),
        limit::REQUEST_URL,
        limit::REQUEST_METHOD,
        limit::QUERY_STRING,
    );
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
    let fingerprint = c.string(
        "fingerprint",
        body.get("fingerprint"),
        Str::max(limit::FINGERPRINT).or_null(),
    );
    c.string(
        "session_id",
        body.get("session_id"),
        Str::max(limit::SESSION_ID),
    );
    let status = Int {
        min: Some(event_limit::STATUS_MIN),
        max: Some(event_limit::STATUS_MAX),
        nullable: true,
    };
    let mut status_code = c.int("status_code", body.get("status_code"), status);
    if let Some(extra) = c.record("extra", body.get("extra"), false) {
        if status_code.is_none() {
            status_code = extra
                .get("status_code")
                .and_then(Value::as_f64)
                .map(|code| code as i64);
        }
    }
    c.record("profile", body.get("profile"), true);
    c.finish(|| {
        let frames = if top_frames.is_empty() {
            nested_frames
        } else {
            top_frames
        };
        let culprit = frames
            .iter()
            .rev()
            .find(|f| f.in_app != Some(false))
            .or(frames.last());
        let file = culprit
            .and_then(|f| {
                f.filename
                    .as_deref()
                    .filter(|s| !s.is_empty())
                    .or(f.abs_path())
            })
            .unwrap_or(limit::UNKNOWN_FILE)
            .to_owned();
        let line = culprit.and_then(|f| f.lineno).unwrap_or(1).max(1);
        let message = [
            exception_value.as_deref(),
            message,
            exception_type.as_deref(),
        ]
        .into_iter()
        .flatten()
        .find(|text| !text.is_empty())
        .unwrap_or("Unknown error")
        .to_owned();
        let stack = if frames.is_empty() {
            message.clone()
        } else {
            frames
                .iter()
                .enumerate()
                .map(|(i, f)| {
                    let line = f.lineno.map_or_else(|| "?".to_owned(), |n| n.to_string());
                    format!(
                        "#{i} {}({line}): {}",
                        f.filename.as_deref().unwrap_or("[internal]"),
                        f.function.as_deref().unwrap_or("?")
                    )
                })
                .collect::<Vec<_>>()
                .join("\n")
        };
        Accepted {
            kind: Kind::Envelope,
            event_id: event_id.map(str::to_owned),
            created_at_ms,
            level,
            env: environment.unwrap_or("unknown").to_owned(),
            release: release.map(str::to_owned),
            message,
            exception_type,
            exception_value,
            file,
            line,
            stack,
            frames: frames.into_iter().map(|f| f.frame).collect(),
            sdk_fingerprint: fingerprint.map(str::to_owned),
            user_id,
            url,
            status_code,
        }
    })
}

/// An envelope frame: the accepted frame and its `abs_path`.
#[derive(Default)]
struct EnvelopeFrame {
    frame: AcceptedFrame,
    abs_path: Option<String>,
}

impl EnvelopeFrame {
    fn abs_path(&self) -> Option<&str> {
        self.abs_path.as_deref().filter(|s| !s.is_empty())
    }
}

impl std::ops::Deref for EnvelopeFrame {
    type Target = AcceptedFrame;
    fn deref(&self) -> &AcceptedFrame {
        &self.frame
    }
}

fn frames_at(c: &mut Checker, path: Path<'_>, value: Option<&Value>) -> Vec<EnvelopeFrame> {
    let mut frames = Vec::new();
    c.array(path, value, limit::FRAMES, false, |c, at, item| {
        if let Some(frame) = c.object(at, Some(item), false) {
            frames.push(frame_at(c, at, frame));
        }
    });
    frames
}

fn frame_at(c: &mut Checker, path: Path<'_>, frame: &Map<String, Value>) -> EnvelopeFrame {
    let text = Str::max(limit::FRAME_TEXT);
    let accepted = c.frame(
        path,
        frame,
        FrameRules {
            filename_required: false,
            filename: text,
            function: limit::FRAME_FUNCTION,
            context_line: text,
            context_item: text,
            context_lines: limit::FRAME_CONTEXT_LINES,
        },
    );
    let abs_path = c.string(path.key("abs_path"), frame.get("abs_path"), text);
    c.string(
        path.key("module"),
        frame.get("module"),
        Str::max(limit::FRAME_FUNCTION),
    );
    EnvelopeFrame {
        frame: accepted,
        abs_path: abs_path.map(str::to_owned),
    }
}
