//! One stored event, read for the detail page: its payload (a v1, v2 or envelope body, as
//! received) turned into frames, breadcrumbs and the tables beside them.
//!
//! Nothing here produces HTML: every string is escaped by the template that shows it.

use serde_json::{Map, Value};

use crate::store::StoredEvent;

/// An event as the detail page shows it.
pub(crate) struct EventView {
    pub(crate) event_id: String,
    pub(crate) received_at: String,
    pub(crate) level: String,
    pub(crate) env: String,
    pub(crate) release: String,
    pub(crate) message: String,
    /// The stack, innermost first, library frames gathered into runs.
    pub(crate) frames: Vec<FrameRun>,
    /// The stack as text, for events without frames (v1).
    pub(crate) stack_text: String,
    pub(crate) breadcrumbs: Vec<Crumb>,
    /// Tags, user and request, each as (key, value) rows; empty ones left out.
    pub(crate) tables: Vec<(&'static str, Vec<(String, String)>)>,
    /// Pretty JSON, or empty.
    pub(crate) contexts: String,
    pub(crate) extra: String,
    /// The whole body, pretty.
    pub(crate) raw: String,
}

/// Consecutive frames of the application (shown), or of libraries (collapsed).
pub(crate) struct FrameRun {
    pub(crate) in_app: bool,
    pub(crate) frames: Vec<FrameView>,
}

pub(crate) struct FrameView {
    pub(crate) function: String,
    /// `file:line[:col]`.
    pub(crate) location: String,
    pub(crate) context: Vec<ContextLine>,
}

pub(crate) struct ContextLine {
    pub(crate) number: String,
    pub(crate) text: String,
    pub(crate) current: bool,
}

pub(crate) struct Crumb {
    pub(crate) time: String,
    pub(crate) category: String,
    pub(crate) level: String,
    pub(crate) message: String,
    pub(crate) data: String,
}

impl EventView {
    pub(crate) fn new(event: &StoredEvent) -> EventView {
        let body = event.payload.as_object().cloned().unwrap_or_default();
        let message = event
            .message
            .clone()
            .or_else(|| text(&body, "message"))
            .unwrap_or_default();
        let frames = frames(&body);
        EventView {
            event_id: event.event_id.clone().unwrap_or_default(),
            received_at: event.received_at.clone(),
            level: event.level.clone(),
            env: event.env.clone(),
            release: event.release.clone().unwrap_or_default(),
            message,
            stack_text: if frames.is_empty() {
                event.stack.clone()
            } else {
                String::new()
            },
            frames: runs(frames),
            breadcrumbs: breadcrumbs(&body),
            tables: [
                ("Tags", pairs(body.get("tags"))),
                ("User", user(&body, event)),
                ("Request", request(&body)),
            ]
            .into_iter()
            .filter(|(_, rows)| !rows.is_empty())
            .collect(),
            contexts: pretty(body.get("contexts")),
            extra: pretty(body.get("extra")),
            raw: serde_json::to_string_pretty(&event.payload).unwrap_or_default(),
        }
    }
}

/// One frame and whether it belongs to the application.
struct Frame {
    in_app: bool,
    view: FrameView,
}

/// The frames, innermost first: a v2 event sends them so; an envelope sends them oldest first
/// (top-level `frames`, or each exception's `stacktrace.frames`).
fn frames(body: &Map<String, Value>) -> Vec<Frame> {
    let envelope_frames = body
        .get("exception")
        .and_then(|e| e.get("values"))
        .and_then(Value::as_array)
        .and_then(|values| values.last())
        .and_then(|e| e.get("stacktrace"))
        .and_then(|s| s.get("frames"))
        .and_then(Value::as_array);
    // Only an envelope has `exception.values`; a v2 event's `exception` is one object.
    let is_envelope = body
        .get("exception")
        .and_then(|e| e.get("values"))
        .is_some();
    let (list, oldest_first) = match (
        envelope_frames,
        body.get("frames").and_then(Value::as_array),
    ) {
        (Some(list), _) => (list, true),
        (None, Some(list)) => (list, is_envelope),
        (None, None) => return Vec::new(),
    };
    let mut frames: Vec<Frame> = list
        .iter()
        .filter_map(Value::as_object)
        .map(frame)
        .collect();
    if oldest_first {
        frames.reverse();
    }
    frames
}

fn frame(object: &Map<String, Value>) -> Frame {
    let file = text(object, "filename")
        .or_else(|| text(object, "abs_path"))
        .unwrap_or_else(|| "?".into());
    let line = object.get("lineno").and_then(Value::as_i64);
    let col = object.get("colno").and_then(Value::as_i64);
    let location = match (line, col) {
        (Some(line), Some(col)) => format!("{file}:{line}:{col}"),
        (Some(line), None) => format!("{file}:{line}"),
        _ => file.clone(),
    };
    let mut context = Vec::new();
    if let (Some(line), Some(current)) = (line, text(object, "context_line")) {
        let lines = |key: &str| -> Vec<String> {
            object
                .get(key)
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default()
        };
        let before = lines("pre_context");
        let first = line - before.len() as i64;
        for (i, text) in before.into_iter().enumerate() {
            context.push(ContextLine {
                number: (first + i as i64).to_string(),
                text,
                current: false,
            });
        }
        context.push(ContextLine {
            number: line.to_string(),
            text: current,
            current: true,
        });
        for (i, text) in lines("post_context").into_iter().enumerate() {
            context.push(ContextLine {
                number: (line + 1 + i as i64).to_string(),
                text,
                current: false,
            });
        }
    }
    Frame {
        // Frames not marked are the application's: that is how the culprit is chosen too.
        in_app: object
            .get("in_app")
            .and_then(Value::as_bool)
            .unwrap_or(true),
        view: FrameView {
            function: text(object, "function").unwrap_or_else(|| "<anonymous>".into()),
            location,
            context,
        },
    }
}

fn runs(frames: Vec<Frame>) -> Vec<FrameRun> {
    let mut runs: Vec<FrameRun> = Vec::new();
    for frame in frames {
        match runs.last_mut() {
            Some(run) if run.in_app == frame.in_app => run.frames.push(frame.view),
            _ => runs.push(FrameRun {
                in_app: frame.in_app,
                frames: vec![frame.view],
            }),
        }
    }
    runs
}

fn breadcrumbs(body: &Map<String, Value>) -> Vec<Crumb> {
    let list = match body.get("breadcrumbs") {
        Some(Value::Array(list)) => list.as_slice(),
        // Sentry's shape: `{"values": [...]}`.
        Some(Value::Object(o)) => o
            .get("values")
            .and_then(Value::as_array)
            .map_or(&[][..], Vec::as_slice),
        _ => &[],
    };
    list.iter()
        .filter_map(Value::as_object)
        .map(|crumb| Crumb {
            time: crumb.get("timestamp").map(timestamp).unwrap_or_default(),
            category: text(crumb, "category").unwrap_or_default(),
            level: text(crumb, "level").unwrap_or_else(|| "info".into()),
            message: text(crumb, "message").unwrap_or_default(),
            data: crumb
                .get("data")
                .filter(|d| !d.is_null())
                .map(compact)
                .unwrap_or_default(),
        })
        .collect()
}

/// A breadcrumb's time: RFC 3339 as given, epoch seconds or milliseconds turned into it.
fn timestamp(value: &Value) -> String {
    match value {
        Value::Number(n) => n
            .as_f64()
            .map(|t| if t < 1e12 { t * 1000.0 } else { t })
            .map(|ms| crate::store::rfc3339(ms as i64))
            .unwrap_or_default(),
        Value::String(s) => s.clone(),
        other => compact(other),
    }
}

fn user(body: &Map<String, Value>, event: &StoredEvent) -> Vec<(String, String)> {
    let mut user = pairs(body.get("user"));
    if user.is_empty() {
        if let Some(id) = &event.user_id {
            user.push(("id".into(), id.clone()));
        }
    }
    user
}

fn request(body: &Map<String, Value>) -> Vec<(String, String)> {
    let mut rows = Vec::new();
    if let Some(request) = body.get("request").and_then(Value::as_object) {
        for key in ["method", "url", "query_string"] {
            if let Some(value) = request.get(key).filter(|v| !v.is_null()) {
                rows.push((key.to_owned(), scalar(value)));
            }
        }
        for (name, value) in pairs(request.get("headers")) {
            rows.push((format!("header {name}"), value));
        }
        if let Some(data) = request.get("data").filter(|v| !v.is_null()) {
            rows.push(("data".into(), compact(data)));
        }
    } else if let Some(url) = text(body, "url") {
        rows.push(("url".into(), url));
    }
    if let Some(status) = body.get("status_code").filter(|v| !v.is_null()) {
        rows.push(("status".into(), scalar(status)));
    }
    rows
}

/// An object's members as (key, text) rows.
fn pairs(value: Option<&Value>) -> Vec<(String, String)> {
    value
        .and_then(Value::as_object)
        .map(|o| o.iter().map(|(k, v)| (k.clone(), scalar(v))).collect())
        .unwrap_or_default()
}

fn text(object: &Map<String, Value>, key: &str) -> Option<String> {
    object.get(key).and_then(Value::as_str).map(str::to_owned)
}

/// A value as text: a string as itself, anything else as compact JSON.
pub(super) fn scalar(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => compact(other),
    }
}

fn compact(value: &Value) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

fn pretty(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => String::new(),
        Some(Value::Object(o)) if o.is_empty() => String::new(),
        Some(value) => serde_json::to_string_pretty(value).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn event(payload: Value) -> StoredEvent {
        StoredEvent {
            id: 1,
            event_id: None,
            fingerprint: "f".into(),
            created_at: String::new(),
            received_at: String::new(),
            level: "error".into(),
            env: "production".into(),
            release: None,
            message: None,
            error_type: None,
            value: None,
            stack: "at main (src/main.rs:3:1)".into(),
            file: None,
            line: None,
            user_id: None,
            payload,
        }
    }

    fn locations(view: &EventView) -> Vec<(bool, String)> {
        view.frames
            .iter()
            .flat_map(|run| run.frames.iter().map(|f| (run.in_app, f.location.clone())))
            .collect()
    }

    #[test]
    fn v2_frames_stay_innermost_first_with_library_runs_apart() {
        let view = EventView::new(&event(json!({
            "event_id": "e", "sdk": {"name": "errorwatch-rust", "version": "0.1.0"},
            "frames": [
                {"filename": "src/orders.rs", "lineno": 42, "function": "charge", "in_app": true,
                 "context_line": "fail()", "pre_context": ["a", "b"], "post_context": ["c"]},
                {"filename": "tokio/src/rt.rs", "lineno": 7, "in_app": false},
                {"filename": "hyper/src/x.rs", "lineno": 9, "in_app": false},
                {"filename": "src/main.rs", "lineno": 3, "colno": 5, "in_app": true}
            ]
        })));
        assert_eq!(
            locations(&view),
            [
                (true, "src/orders.rs:42".into()),
                (false, "tokio/src/rt.rs:7".into()),
                (false, "hyper/src/x.rs:9".into()),
                (true, "src/main.rs:3:5".into()),
            ]
        );
        assert_eq!(view.frames.len(), 3, "the two library frames are one run");
        let context = &view.frames[0].frames[0].context;
        let numbers: Vec<_> = context
            .iter()
            .map(|l| (l.number.as_str(), l.current))
            .collect();
        assert_eq!(
            numbers,
            [("40", false), ("41", false), ("42", true), ("43", false)]
        );
        assert!(view.stack_text.is_empty());
    }

    #[test]
    fn envelope_frames_are_turned_innermost_first() {
        let view = EventView::new(&event(json!({
            "exception": {"values": [{"type": "E", "value": "v", "stacktrace": {"frames": [
                {"filename": "index.php", "lineno": 1, "in_app": true},
                {"filename": "src/Pay.php", "lineno": 20, "in_app": true}
            ]}}]}
        })));
        assert_eq!(locations(&view)[0].1, "src/Pay.php:20");
    }

    #[test]
    fn a_v1_event_shows_its_stack_text_and_url() {
        let view = EventView::new(&event(json!({
            "message": "boom", "file": "a.js", "line": 1, "stack": "x",
            "url": "https://shop.example/cart", "breadcrumbs": [
                {"timestamp": 1700000000, "category": "ui", "message": "click"}
            ]
        })));
        assert!(view.frames.is_empty());
        assert_eq!(view.stack_text, "at main (src/main.rs:3:1)");
        let request = ("url".to_owned(), "https://shop.example/cart".to_owned());
        assert_eq!(view.tables, [("Request", vec![request])]);
        assert_eq!(view.breadcrumbs[0].time, "2023-11-14T22:13:20.000Z");
        assert_eq!(view.message, "boom");
    }
}
