//! Fitting an [`Event`] to the contract, so the server never answers 400 to it.
//!
//! An event the server rejects is lost, so nothing leaves the SDK without passing through
//! [`Event::normalize`]: each field is brought within its limit from [`crate::limits`], in the
//! way that keeps its meaning. Free text is cut with a `…`; identifiers, names, paths and URLs
//! are cut plainly (an added character would change them); values whose format the server
//! checks (`request.method`, `user.ip_address`, `user.email`, trace ids) are dropped rather
//! than cut into something invalid. Characters the production store cannot keep are removed
//! everywhere.

use std::collections::BTreeMap;

use crate::event::{Event, Map, Value};
use crate::limits::{event as limit, sdk as own};
use crate::text::{js_len, remove_unstorable, truncate, truncate_plain};

/// Free text: cut with a mark.
fn text(field: &mut String, max: usize) {
    remove_unstorable(field);
    truncate(field, max);
}

/// A name, path or identifier: cut without a mark.
fn name(field: &mut String, max: usize) {
    remove_unstorable(field);
    truncate_plain(field, max);
}

/// An optional field whose minimum length is 1 (or that is pointless empty): `None` when
/// empty, else fitted by `fit`.
fn optional(field: &mut Option<String>, max: usize, fit: fn(&mut String, usize)) {
    if let Some(value) = field {
        fit(value, max);
        if value.is_empty() {
            *field = None;
        }
    }
}

/// A value with a format: kept whole or not at all.
fn whole_or_none(field: &mut Option<String>, max: usize) {
    if let Some(value) = field {
        remove_unstorable(value);
        if value.is_empty() || js_len(value) > max {
            *field = None;
        }
    }
}

impl Event {
    /// Makes the event pass the server's validation: every length, count, format and type
    /// within the contract, nothing the production store cannot keep.
    ///
    /// ```
    /// use errorwatch_protocol::{validate, Event, Level};
    /// let mut event = Event::message("x".repeat(20_000), Level::Fatal);
    /// event.normalize();
    /// let body: serde_json::Value = serde_json::from_slice(&event.to_body()).unwrap();
    /// assert!(validate::event(&body, 0).is_ok());
    /// ```
    pub fn normalize(&mut self) {
        optional(&mut self.message, limit::MESSAGE, text);
        if let Some(exception) = &mut self.exception {
            name(&mut exception.ty, limit::EXCEPTION_TYPE);
            if exception.ty.is_empty() {
                exception.ty.push_str("Error");
            }
            text(&mut exception.value, limit::EXCEPTION_VALUE);
        }

        self.frames.truncate(limit::FRAMES);
        for frame in &mut self.frames {
            name(&mut frame.filename, limit::FRAME_FILENAME);
            if frame.filename.is_empty() {
                frame.filename.push_str("<unknown>");
            }
            optional(&mut frame.function, limit::FRAME_FUNCTION, name);
        }
        optional(&mut self.file, limit::FILE, name);
        self.line = self.line.filter(|&n| n > 0);
        optional(&mut self.stack, limit::STACK, text);

        optional(&mut self.env, limit::ENV, name);
        optional(&mut self.release, limit::RELEASE, name);
        optional(&mut self.server_name, limit::SERVER_NAME, name);
        name(&mut self.platform, limit::PLATFORM);
        name(&mut self.sdk.name, limit::SDK_NAME);
        name(&mut self.sdk.version, limit::SDK_VERSION);
        self.url = self.url.take().and_then(absolute_url);
        self.status_code = self
            .status_code
            .filter(|&code| (limit::STATUS_MIN..=limit::STATUS_MAX).contains(&i64::from(code)));
        optional(&mut self.fingerprint, limit::FINGERPRINT, name);
        whole_or_none(&mut self.trace_id, limit::TRACE_ID);
        whole_or_none(&mut self.span_id, limit::SPAN_ID);

        fit_tags(&mut self.tags);
        fit_map(&mut self.extra, 1);
        fit_map(&mut self.contexts, 1);

        if let Some(user) = &mut self.user {
            optional(&mut user.id, limit::USER_FIELD, name);
            whole_or_none(&mut user.email, limit::USER_FIELD);
            optional(&mut user.username, limit::USER_FIELD, name);
            whole_or_none(&mut user.ip_address, limit::USER_IP);
        }
        if self.user_id.is_none() {
            self.user_id = self.user.as_ref().and_then(|user| user.id.clone());
        }
        optional(&mut self.user_id, limit::USER_ID, name);

        if let Some(request) = &mut self.request {
            optional(&mut request.url, limit::REQUEST_URL, name);
            whole_or_none(&mut request.method, limit::REQUEST_METHOD);
            optional(&mut request.query_string, limit::QUERY_STRING, name);
            fit_headers(&mut request.headers);
            if let Some(data) = &mut request.data {
                fit_value(data, 1);
            }
        }

        if self.breadcrumbs.len() > limit::BREADCRUMBS {
            // The newest ones explain the event best.
            let excess = self.breadcrumbs.len() - limit::BREADCRUMBS;
            self.breadcrumbs.drain(..excess);
        }
        for crumb in &mut self.breadcrumbs {
            name(&mut crumb.category, limit::BREADCRUMB_CATEGORY);
            if crumb.category.is_empty() {
                crumb.category.push_str("default");
            }
            optional(&mut crumb.ty, limit::BREADCRUMB_TYPE, name);
            crumb.level = crumb.level.map(crate::Level::for_breadcrumb);
            if let Some(message) = &mut crumb.message {
                text(message, limit::BREADCRUMB_MESSAGE);
            }
            fit_map(&mut crumb.data, 1);
        }
    }

    /// Serialises the event, shedding free-form data until the body fits
    /// [`own::BODY_BYTES`].
    ///
    /// The fields that carry the error itself (message, exception, frames, stack) are bounded
    /// by [`Event::normalize`] and always kept; `extra`, `contexts`, breadcrumb data and
    /// request data are what can grow without bound, so they go first.
    pub fn to_body(&mut self) -> Vec<u8> {
        let mut body = serde_json::to_vec(&*self).unwrap_or_default();
        if body.len() <= own::BODY_BYTES {
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
            step(self);
            body = serde_json::to_vec(&*self).unwrap_or_default();
            if body.len() <= own::BODY_BYTES {
                break;
            }
        }
        body
    }
}

/// Keys of a string map, fitted by `fit_key`; empty keys dropped; at most `max` entries.
fn fit_keys(map: &mut BTreeMap<String, String>, max: usize, key_max: usize) {
    let needs_work = map.len() > max
        || map
            .keys()
            .any(|key| key.is_empty() || js_len(key) > key_max || key.contains('\0'));
    if needs_work {
        *map = std::mem::take(map)
            .into_iter()
            .filter(|(key, _)| !key.is_empty())
            .take(max)
            .map(|(mut key, value)| {
                name(&mut key, key_max);
                (key, value)
            })
            .collect();
    }
}

fn fit_tags(tags: &mut BTreeMap<String, String>) {
    fit_keys(tags, own::TAGS, limit::TAG_KEY);
    for value in tags.values_mut() {
        text(value, limit::TAG_VALUE);
    }
}

fn fit_headers(headers: &mut BTreeMap<String, String>) {
    fit_keys(headers, own::HEADERS, own::HEADER_VALUE);
    for value in headers.values_mut() {
        text(value, own::HEADER_VALUE);
    }
}

fn fit_map(map: &mut Map, depth: usize) {
    if map.len() > own::VALUE_ENTRIES {
        let keep: Vec<String> = map.keys().take(own::VALUE_ENTRIES).cloned().collect();
        map.retain(|key, _| keep.binary_search(key).is_ok());
    }
    if map.keys().any(|key| key.contains('\0')) {
        *map = std::mem::take(map)
            .into_iter()
            .map(|(mut key, value)| {
                remove_unstorable(&mut key);
                (key, value)
            })
            .collect();
    }
    for value in map.values_mut() {
        fit_value(value, depth + 1);
    }
}

fn fit_value(value: &mut Value, depth: usize) {
    match value {
        Value::String(content) => text(content, own::VALUE_STRING),
        Value::Array(items) if depth > own::VALUE_DEPTH => {
            *value = Value::String(format!("[array of {} items: too deep]", items.len()))
        }
        Value::Object(_) if depth > own::VALUE_DEPTH => {
            *value = Value::String("[object: too deep]".into())
        }
        Value::Array(items) => {
            items.truncate(own::VALUE_ENTRIES);
            items.iter_mut().for_each(|item| fit_value(item, depth + 1));
        }
        Value::Object(object) => {
            let needs_keys =
                object.len() > own::VALUE_ENTRIES || object.keys().any(|key| key.contains('\0'));
            if needs_keys {
                *object = std::mem::take(object)
                    .into_iter()
                    .take(own::VALUE_ENTRIES)
                    .map(|(mut key, item)| {
                        remove_unstorable(&mut key);
                        (key, item)
                    })
                    .collect();
            }
            object
                .values_mut()
                .for_each(|item| fit_value(item, depth + 1));
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// Keeps `url` only if the server would take it as `url`: absolute (`scheme://host...`) and
/// at most [`limit::URL`] characters, cut plainly if longer.
///
/// ```
/// use errorwatch_protocol::normalize::absolute_url;
/// assert!(absolute_url("https://example.com/a?b=c".into()).is_some());
/// assert_eq!(absolute_url("/a/b".into()), None);
/// ```
pub fn absolute_url(mut url: String) -> Option<String> {
    remove_unstorable(&mut url);
    truncate_plain(&mut url, limit::URL);
    let parsed = url::Url::parse(&url).ok()?;
    if parsed.cannot_be_a_base() || !parsed.has_host() {
        return None;
    }
    Some(url)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Breadcrumb, Exception, Level, Request, User};
    use crate::limits::{event::*, sdk::*};

    fn chars(text: &str) -> usize {
        js_len(text)
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
        event.normalize();

        assert_eq!(event.message.as_deref().map(chars), Some(MESSAGE));
        let exception = event.exception.as_ref().expect("exception kept");
        assert_eq!(exception.ty, "Error");
        assert_eq!(chars(&exception.value), EXCEPTION_VALUE);
        assert_eq!(event.file, None);
        assert_eq!(event.line, None);
        assert_eq!(event.stack.as_deref().map(chars), Some(STACK));
        assert_eq!(event.env.as_deref().map(chars), Some(ENV));
        assert!(
            !event.env.as_deref().unwrap_or("").contains('…'),
            "names are cut plainly"
        );
        assert_eq!(event.url, None);
        assert_eq!(event.status_code, None);
        assert_eq!(event.fingerprint.as_deref().map(chars), Some(FINGERPRINT));
        let user = event.user.as_ref().expect("user kept");
        assert_eq!(user.email, None, "empty strings become absent, never null");
        assert_eq!(
            user.ip_address, None,
            "a cut address is no address: dropped"
        );
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
        event.normalize();
        let json = event.to_json();
        assert!(json.contains("too deep"));
        assert_eq!(
            event.extra["wide"].as_array().map(Vec::len),
            Some(VALUE_ENTRIES)
        );
    }

    #[test]
    fn oversized_bodies_shed_free_form_data_but_keep_the_error() {
        let mut event = Event::message("kept", Level::Error);
        for i in 0..VALUE_ENTRIES {
            event
                .extra
                .insert(format!("k{i}"), Value::String("v".repeat(VALUE_STRING)));
        }
        event.normalize();
        let body = event.to_body();
        assert!(body.len() <= BODY_BYTES);
        assert_eq!(event.message.as_deref(), Some("kept"));
        assert!(event.extra.contains_key("_truncated"));
    }

    #[test]
    fn formats_and_levels_the_server_checks_are_never_made_invalid() {
        let mut event = Event::message("nul\0in the message", Level::Error);
        event.request = Some(Request {
            method: Some("PROPPATCHXX".into()),
            ..Request::default()
        });
        event.frames.push(crate::Frame {
            filename: "src/main.rs".into(),
            function: Some("f".repeat(1_000)),
            ..crate::Frame::default()
        });
        event
            .breadcrumbs
            .push(Breadcrumb::new("log", "x").with_level(Level::Fatal));
        event.tags.insert("k\0ey".into(), "v\0".into());
        event.normalize();
        assert_eq!(event.message.as_deref(), Some("nulin the message"));
        assert_eq!(
            event.request.as_ref().and_then(|r| r.method.as_deref()),
            None
        );
        assert_eq!(
            event.frames[0].function.as_deref().map(chars),
            Some(FRAME_FUNCTION)
        );
        assert_eq!(event.breadcrumbs[0].level, Some(Level::Error));
        assert_eq!(event.tag("key"), Some("v"));
    }

    #[test]
    fn absolute_urls_are_kept_and_relative_ones_dropped() {
        assert!(absolute_url("https://example.com/a?b=c".into()).is_some());
        assert!(absolute_url("http://127.0.0.1:8080/".into()).is_some());
        assert_eq!(absolute_url("/a/b".into()), None);
        assert_eq!(absolute_url("mailto:someone@example.com".into()), None);
    }
}
