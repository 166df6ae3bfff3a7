//! The server's limits, in one table, and the normaliser that makes every event fit them.
//!
//! The ErrorWatch server answers 400 to any field over its limit, and an event it rejects is
//! lost. So nothing leaves the SDK without passing through [`normalize`], which truncates,
//! drops or repairs each field to fit. Lengths are in characters, as the server counts them.

use std::collections::BTreeMap;

use crate::event::{Event, Map, Value};

/// `message`: 1..=10 000 characters.
pub const MESSAGE: usize = 10_000;
/// `file`: 1..=1 000.
pub const FILE: usize = 1_000;
/// `stack`: 1..=100 000.
pub const STACK: usize = 100_000;
/// `env`: at most 50.
pub const ENV: usize = 50;
/// `url` and `request.url`: at most 2 000.
pub const URL: usize = 2_000;
/// `breadcrumbs`: at most 100 entries.
pub const BREADCRUMBS: usize = 100;
/// A breadcrumb's `message`: at most 1 000.
pub const BREADCRUMB_MESSAGE: usize = 1_000;
/// A breadcrumb's `category` (and `type`): at most 50.
pub const BREADCRUMB_CATEGORY: usize = 50;
/// `release`: at most 200.
pub const RELEASE: usize = 200;
/// `user_id` and `user.id`: at most 200.
pub const USER_ID: usize = 200;
/// `user.email` and `user.username` (our own bound: the server sets none).
pub const USER_FIELD: usize = 200;
/// `user.ip_address`: at most 45.
pub const USER_IP: usize = 45;
/// `fingerprint`: at most 128.
pub const FINGERPRINT: usize = 128;
/// `trace_id`: at most 64.
pub const TRACE_ID: usize = 64;
/// `span_id`: at most 32.
pub const SPAN_ID: usize = 32;
/// `exception.type`: 1..=500.
pub const EXCEPTION_TYPE: usize = 500;
/// `exception.value`: at most 10 000.
pub const EXCEPTION_VALUE: usize = 10_000;
/// `frames`: at most 200 entries.
pub const FRAMES: usize = 200;
/// A frame's `filename`: 1..=1 000.
pub const FRAME_FILENAME: usize = 1_000;
/// A frame's `function` (our own bound).
pub const FRAME_FUNCTION: usize = 1_000;
/// `server_name`: at most 200.
pub const SERVER_NAME: usize = 200;
/// A tag's key: at most 200.
pub const TAG_KEY: usize = 200;
/// A tag's value: at most 1 000.
pub const TAG_VALUE: usize = 1_000;
/// How many tags an event keeps (our own bound: keeps the body small).
pub const TAGS: usize = 200;
/// `request.method`: at most 10.
pub const REQUEST_METHOD: usize = 10;
/// `request.query_string`: at most 5 000.
pub const QUERY_STRING: usize = 5_000;
/// A request header's value (our own bound).
pub const HEADER_VALUE: usize = 2_000;
/// How many request headers an event keeps (our own bound).
pub const HEADERS: usize = 100;
/// How deep `extra`, `contexts`, breadcrumb data and request data may nest (our own bound).
pub const VALUE_DEPTH: usize = 8;
/// How many entries one object or array in those values keeps (our own bound).
pub const VALUE_ENTRIES: usize = 100;
/// The longest string in those values (our own bound).
pub const VALUE_STRING: usize = 16_384;
/// The largest body the SDK sends: well under the server's 5 MiB, so a body is never refused
/// for its size. Bodies over it lose their free-form data first.
pub const BODY_BYTES: usize = 1024 * 1024;

/// Cuts `text` to at most `max` characters as the server counts them (UTF-16 code units,
/// since it is written in JavaScript: an emoji counts 2), marking the cut with `…`.
pub fn truncate(text: &mut String, max: usize) {
    if text.len() <= max {
        // Fast path: no character takes more UTF-16 units than UTF-8 bytes.
        return;
    }
    let budget = max.saturating_sub(1); // room for the `…`, one unit
    let mut units = 0;
    let mut cut = None;
    for (index, ch) in text.char_indices() {
        if cut.is_none() && units + ch.len_utf16() > budget {
            cut = Some(index);
        }
        units += ch.len_utf16();
        if units > max {
            break;
        }
    }
    if units <= max {
        return;
    }
    if let Some(cut) = cut {
        text.truncate(cut);
        if max > 0 {
            text.push('…');
        }
    }
}

/// The length of `text` as the server counts it.
pub fn server_len(text: &str) -> usize {
    text.encode_utf16().count()
}

fn truncate_opt(field: &mut Option<String>, max: usize) {
    if let Some(text) = field {
        truncate(text, max);
    }
}

/// Truncates, and turns an empty string into `None`, for fields whose minimum length is 1.
fn non_empty(field: &mut Option<String>, max: usize) {
    match field {
        Some(text) if text.is_empty() => *field = None,
        Some(text) => truncate(text, max),
        None => {}
    }
}

/// Makes `event` pass the server's validation: every length, count and type within bounds.
pub fn normalize(event: &mut Event) {
    non_empty(&mut event.message, MESSAGE);
    if let Some(exception) = &mut event.exception {
        if exception.ty.is_empty() {
            exception.ty.push_str("Error");
        }
        truncate(&mut exception.ty, EXCEPTION_TYPE);
        truncate(&mut exception.value, EXCEPTION_VALUE);
    }

    event.frames.truncate(FRAMES);
    for frame in &mut event.frames {
        if frame.filename.is_empty() {
            frame.filename.push_str("<unknown>");
        }
        truncate(&mut frame.filename, FRAME_FILENAME);
        truncate_opt(&mut frame.function, FRAME_FUNCTION);
        frame.lineno = frame.lineno.filter(|&n| n > 0);
        frame.colno = frame.colno.filter(|&n| n > 0);
    }
    non_empty(&mut event.file, FILE);
    event.line = event.line.filter(|&n| n > 0);
    non_empty(&mut event.stack, STACK);

    non_empty(&mut event.env, ENV);
    non_empty(&mut event.release, RELEASE);
    non_empty(&mut event.server_name, SERVER_NAME);
    truncate(&mut event.platform, 50);
    truncate(&mut event.sdk.name, 100);
    truncate(&mut event.sdk.version, 50);
    event.url = event.url.take().and_then(absolute_url);
    event.status_code = event.status_code.filter(|code| (100..=599).contains(code));
    non_empty(&mut event.fingerprint, FINGERPRINT);
    non_empty(&mut event.trace_id, TRACE_ID);
    non_empty(&mut event.span_id, SPAN_ID);

    normalize_tags(&mut event.tags);
    normalize_map(&mut event.extra, 1);
    normalize_map(&mut event.contexts, 1);

    if let Some(user) = &mut event.user {
        non_empty(&mut user.id, USER_ID);
        non_empty(&mut user.email, USER_FIELD);
        non_empty(&mut user.username, USER_FIELD);
        non_empty(&mut user.ip_address, USER_IP);
    }
    if event.user_id.is_none() {
        event.user_id = event.user.as_ref().and_then(|user| user.id.clone());
    }
    non_empty(&mut event.user_id, USER_ID);

    if let Some(request) = &mut event.request {
        request.url = request.url.take().and_then(absolute_url);
        non_empty(&mut request.method, REQUEST_METHOD);
        non_empty(&mut request.query_string, QUERY_STRING);
        request.headers = std::mem::take(&mut request.headers)
            .into_iter()
            .filter(|(name, _)| !name.is_empty())
            .take(HEADERS)
            .map(|(mut name, mut value)| {
                truncate(&mut name, TAG_KEY);
                truncate(&mut value, HEADER_VALUE);
                (name, value)
            })
            .collect();
        if let Some(data) = &mut request.data {
            normalize_value(data, 1);
        }
    }

    if event.breadcrumbs.len() > BREADCRUMBS {
        // The newest ones explain the event best.
        let excess = event.breadcrumbs.len() - BREADCRUMBS;
        event.breadcrumbs.drain(..excess);
    }
    for crumb in &mut event.breadcrumbs {
        if crumb.category.is_empty() {
            crumb.category.push_str("default");
        }
        truncate(&mut crumb.category, BREADCRUMB_CATEGORY);
        non_empty(&mut crumb.ty, BREADCRUMB_CATEGORY);
        truncate_opt(&mut crumb.message, BREADCRUMB_MESSAGE);
        normalize_map(&mut crumb.data, 1);
    }
}

/// Serialises `event`, shedding free-form data until the body fits [`BODY_BYTES`].
///
/// The fields that carry the error itself (message, exception, frames, stack) are bounded by
/// [`normalize`] and always kept; `extra`, `contexts`, breadcrumb data and request data are
/// what can grow without bound, so they go first.
pub fn to_body(event: &mut Event) -> Vec<u8> {
    let mut body = serde_json::to_vec(&*event).unwrap_or_default();
    if body.len() <= BODY_BYTES {
        return body;
    }
    let shed: [fn(&mut Event); 4] = [
        |event| {
            event.extra.clear();
            event.extra.insert(
                "_truncated".into(),
                Value::String("extra dropped: body too large".into()),
            );
        },
        |event| event.contexts.clear(),
        |event| {
            event
                .breadcrumbs
                .iter_mut()
                .for_each(|crumb| crumb.data.clear())
        },
        |event| {
            if let Some(request) = &mut event.request {
                request.data = None;
                request.headers.clear();
            }
            event.breadcrumbs.clear();
        },
    ];
    for step in shed {
        step(event);
        body = serde_json::to_vec(&*event).unwrap_or_default();
        if body.len() <= BODY_BYTES {
            break;
        }
    }
    body
}

fn normalize_tags(tags: &mut BTreeMap<String, String>) {
    if tags.len() > TAGS || tags.keys().any(|key| key.is_empty() || key.len() > TAG_KEY) {
        *tags = std::mem::take(tags)
            .into_iter()
            .filter(|(key, _)| !key.is_empty())
            .take(TAGS)
            .map(|(mut key, value)| {
                truncate(&mut key, TAG_KEY);
                (key, value)
            })
            .collect();
    }
    for value in tags.values_mut() {
        truncate(value, TAG_VALUE);
    }
}

fn normalize_map(map: &mut Map, depth: usize) {
    if map.len() > VALUE_ENTRIES {
        let keep: Vec<String> = map.keys().take(VALUE_ENTRIES).cloned().collect();
        map.retain(|key, _| keep.binary_search(key).is_ok());
    }
    for value in map.values_mut() {
        normalize_value(value, depth + 1);
    }
}

fn normalize_value(value: &mut Value, depth: usize) {
    match value {
        Value::String(text) => truncate(text, VALUE_STRING),
        Value::Array(items) if depth > VALUE_DEPTH => {
            *value = Value::String(format!("[array of {} items: too deep]", items.len()))
        }
        Value::Object(_) if depth > VALUE_DEPTH => {
            *value = Value::String("[object: too deep]".into())
        }
        Value::Array(items) => {
            items.truncate(VALUE_ENTRIES);
            items
                .iter_mut()
                .for_each(|item| normalize_value(item, depth + 1));
        }
        Value::Object(object) => {
            if object.len() > VALUE_ENTRIES {
                let keep: Vec<String> = object.keys().take(VALUE_ENTRIES).cloned().collect();
                object.retain(|key, _| keep.contains(key));
            }
            object
                .values_mut()
                .for_each(|item| normalize_value(item, depth + 1));
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// Keeps `url` only if it is absolute (`scheme://host...`), cut to [`URL`] characters.
pub fn absolute_url(mut url: String) -> Option<String> {
    let parsed = reqwest::Url::parse(&url).ok()?;
    if parsed.cannot_be_a_base() || !parsed.has_host() {
        return None;
    }
    truncate(&mut url, URL);
    Some(url)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Breadcrumb, Exception, User};

    fn chars(text: &str) -> usize {
        server_len(text)
    }

    #[test]
    fn truncate_counts_characters_and_keeps_boundaries() {
        let mut text = "é".repeat(20);
        truncate(&mut text, 10);
        assert_eq!(chars(&text), 10);
        assert!(text.ends_with('…'));

        let mut emoji = "😀".repeat(10);
        truncate(&mut emoji, 10);
        assert_eq!(server_len(&emoji), 9, "4 emoji (2 units each) and the mark");

        let mut exact = "é".repeat(10);
        truncate(&mut exact, 10);
        assert_eq!(exact, "é".repeat(10), "a string at the limit is left alone");
    }

    #[test]
    fn every_field_is_brought_within_the_server_limits() {
        let long = "x".repeat(200_000);
        let mut event = Event {
            message: Some(long.clone()),
            exception: Some(Exception::new("", long.clone())),
            file: Some(String::new()),
            line: Some(0),
            stack: Some(long.clone()),
            env: Some(long.clone()),
            release: Some(long.clone()),
            server_name: Some(long.clone()),
            url: Some("/relative/path".into()),
            status_code: Some(42),
            fingerprint: Some(long.clone()),
            user: Some(User {
                id: Some(long.clone()),
                ip_address: Some(long.clone()),
                email: Some(String::new()),
                ..User::default()
            }),
            breadcrumbs: (0..150)
                .map(|i| Breadcrumb::new("", format!("{i}{long}")))
                .collect(),
            ..Event::default()
        };
        event.tags.insert(String::new(), "dropped".into());
        event.tags.insert("k".repeat(300), long.clone());
        normalize(&mut event);

        assert_eq!(event.message.as_deref().map(chars), Some(MESSAGE));
        let exception = event.exception.as_ref().expect("exception kept");
        assert_eq!(exception.ty, "Error");
        assert_eq!(chars(&exception.value), EXCEPTION_VALUE);
        assert_eq!(event.file, None);
        assert_eq!(event.line, None);
        assert_eq!(event.stack.as_deref().map(chars), Some(STACK));
        assert_eq!(event.env.as_deref().map(chars), Some(ENV));
        assert_eq!(event.url, None);
        assert_eq!(event.status_code, None);
        assert_eq!(event.fingerprint.as_deref().map(chars), Some(FINGERPRINT));
        let user = event.user.as_ref().expect("user kept");
        assert_eq!(user.email, None, "empty strings become absent, never null");
        assert_eq!(user.ip_address.as_deref().map(chars), Some(USER_IP));
        assert_eq!(event.user_id.as_deref().map(chars), Some(USER_ID));
        assert_eq!(event.breadcrumbs.len(), BREADCRUMBS);
        assert!(event.breadcrumbs[0]
            .message
            .as_deref()
            .unwrap_or("")
            .starts_with("50"));
        assert_eq!(event.breadcrumbs[0].category, "default");
        assert_eq!(event.tags.len(), 1);
        let (key, value) = event.tags.iter().next().expect("one tag");
        assert_eq!((chars(key), chars(value)), (TAG_KEY, TAG_VALUE));
        let json = event.to_json();
        assert!(
            !json.contains("null"),
            "no nulls on the wire: {}",
            &json[..200]
        );
    }

    #[test]
    fn deep_and_wide_values_are_bounded() {
        let mut deep = Value::String("bottom".into());
        for _ in 0..50 {
            deep = serde_json::json!({ "inner": deep });
        }
        let wide: Vec<Value> = (0..1000).map(Value::from).collect();
        let mut event = Event::default();
        event.extra.insert("deep".into(), deep);
        event.extra.insert("wide".into(), Value::Array(wide));
        normalize(&mut event);
        let json = event.to_json();
        assert!(json.contains("too deep"));
        assert_eq!(
            event.extra["wide"].as_array().map(Vec::len),
            Some(VALUE_ENTRIES)
        );
    }

    #[test]
    fn oversized_bodies_shed_free_form_data_but_keep_the_error() {
        let mut event = Event::message("kept", crate::Level::Error);
        for i in 0..VALUE_ENTRIES {
            event
                .extra
                .insert(format!("k{i}"), Value::String("v".repeat(VALUE_STRING)));
        }
        normalize(&mut event);
        let body = to_body(&mut event);
        assert!(body.len() <= BODY_BYTES);
        assert_eq!(event.message.as_deref(), Some("kept"));
        assert!(event.extra.contains_key("_truncated"));
    }

    #[test]
    fn absolute_urls_are_kept_and_relative_ones_dropped() {
        assert!(absolute_url("https://example.com/a?b=c".into()).is_some());
        assert!(absolute_url("http://127.0.0.1:8080/".into()).is_some());
        assert_eq!(absolute_url("/a/b".into()), None);
        assert_eq!(absolute_url("mailto:someone@example.com".into()), None);
    }
}
