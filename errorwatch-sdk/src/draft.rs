//! An event an integration describes on the caller's thread as plain values, built into an
//! [`Event`] on the worker: what lets a log macro report an error without building an event
//! where it logs (see [`crate::handoff`] for why the caller's part is kept this small).
//!
//! Texts are written into the capture's reused buffer; names and places are `&'static str`
//! (a `tracing` field's name, a macro's file), so once the buffers are warm a draft allocates
//! nothing on the caller's thread.

use std::error::Error;
use std::fmt::{self, Write};

use errorwatch_protocol::{Event, Exception, Frame, Level, Value};
use serde_json::Map as Object;

use crate::error_chain::{Ends, ErrorChain};

/// Where a value of a [`Draft`] goes in the event. For each key, the first value written wins:
/// write an event's own fields before those it inherits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DraftField {
    /// `extra[key]`.
    Extra(&'static str),
    /// `tags[key]` (numbers and booleans as their text).
    Tag(&'static str),
    /// `contexts[context][key]`.
    Context(&'static str, &'static str),
    /// The `fields` of the span last opened with [`Draft::span`], in `contexts.spans`.
    SpanField(&'static str),
}

/// A value as written: a text lies in the capture's buffer.
#[derive(Clone, Copy)]
pub(crate) enum Scalar {
    Text(u32, u32),
    Static(&'static str),
    I64(i64),
    U64(u64),
    F64(f64),
    Bool(bool),
}

/// One thing a draft said, in the order it said it.
pub(crate) enum Part {
    Message(u32, u32),
    Value(DraftField, Scalar),
    /// An error and its sources, written from `start`; where each ends is in the `Ends`.
    Error(ErrorChain, u32),
    /// An error known only by its text.
    ErrorText(u32, u32),
    Span {
        name: &'static str,
        target: &'static str,
    },
    /// The frame the event shows when it has no stack trace: the function at its place.
    Frame(&'static str),
}

/// An event being described: given to the closure passed to
/// [`capture_draft`](crate::integration::capture_draft).
///
/// ```
/// use errorwatch_sdk::integration::{capture_draft, DraftField};
/// use errorwatch_sdk::Level;
///
/// capture_draft(Level::Error, Some((file!(), line!())), |draft| {
///     draft.message(format_args!("charge {} failed", 42));
///     draft.put_i64(DraftField::Extra("attempt"), 3);
///     draft.put_static(DraftField::Tag("logger"), module_path!());
/// });
/// ```
pub struct Draft<'a> {
    text: &'a mut String,
    parts: &'a mut Vec<Part>,
    ends: &'a mut Ends,
}

impl fmt::Debug for Draft<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Draft")
            .field("parts", &self.parts.len())
            .finish_non_exhaustive()
    }
}

impl<'a> Draft<'a> {
    pub(crate) fn new(text: &'a mut String, parts: &'a mut Vec<Part>, ends: &'a mut Ends) -> Self {
        Draft { text, parts, ends }
    }

    /// Writes `value` at the end of the text, and returns where it lies.
    fn write(&mut self, value: impl fmt::Display) -> (u32, u32) {
        let start = offset(self.text);
        // A `Display` that fails leaves what it wrote: the report is still made.
        let _ = write!(self.text, "{value}");
        (start, offset(self.text))
    }

    /// The event's message.
    pub fn message(&mut self, message: impl fmt::Display) {
        let (start, end) = self.write(message);
        self.parts.push(Part::Message(start, end));
    }

    /// A text value.
    pub fn put_text(&mut self, to: DraftField, value: impl fmt::Display) {
        let (start, end) = self.write(value);
        self.parts.push(Part::Value(to, Scalar::Text(start, end)));
    }

    /// A text that lives as long as the program (a module path, a target): not copied.
    pub fn put_static(&mut self, to: DraftField, value: &'static str) {
        self.parts.push(Part::Value(to, Scalar::Static(value)));
    }

    /// A signed integer.
    pub fn put_i64(&mut self, to: DraftField, value: i64) {
        self.parts.push(Part::Value(to, Scalar::I64(value)));
    }

    /// An unsigned integer.
    pub fn put_u64(&mut self, to: DraftField, value: u64) {
        self.parts.push(Part::Value(to, Scalar::U64(value)));
    }

    /// A float (one that JSON cannot hold, such as NaN, is sent as `null`).
    pub fn put_f64(&mut self, to: DraftField, value: f64) {
        self.parts.push(Part::Value(to, Scalar::F64(value)));
    }

    /// A boolean.
    pub fn put_bool(&mut self, to: DraftField, value: bool) {
        self.parts.push(Part::Value(to, Scalar::Bool(value)));
    }

    /// The event's exception: `error` typed by its `Debug` name, with its `source()` chain
    /// in `extra["error.sources"]`. Only the first error (or error text) counts.
    pub fn error(&mut self, error: &(dyn Error + 'static)) {
        if self.has_error() {
            return;
        }
        let start = offset(self.text);
        let chain = ErrorChain::write(error, self.text, self.ends);
        self.parts.push(Part::Error(chain, start));
    }

    /// The event's exception, known only by its text: typed `Error`. Only the first error (or
    /// error text) counts.
    pub fn error_text(&mut self, text: impl fmt::Display) {
        if self.has_error() {
            return;
        }
        let (start, end) = self.write(text);
        self.parts.push(Part::ErrorText(start, end));
    }

    fn has_error(&self) -> bool {
        self.parts
            .iter()
            .any(|part| matches!(part, Part::Error(..) | Part::ErrorText(..)))
    }

    /// Opens a span in `contexts.spans` (outermost first); its fields follow as
    /// [`DraftField::SpanField`].
    pub fn span(&mut self, name: &'static str, target: &'static str) {
        self.parts.push(Part::Span { name, target });
    }

    /// The one frame shown when the event carries no stack trace: `function` at the event's
    /// place.
    pub fn frame(&mut self, function: &'static str) {
        self.parts.push(Part::Frame(function));
    }
}

fn offset(text: &str) -> u32 {
    u32::try_from(text.len()).unwrap_or(u32::MAX)
}

fn slice(text: &str, start: u32, end: u32) -> &str {
    text.get(start as usize..end as usize).unwrap_or_default()
}

impl Scalar {
    fn json(self, text: &str) -> Value {
        match self {
            Scalar::Text(start, end) => Value::from(slice(text, start, end)),
            Scalar::Static(value) => Value::from(value),
            Scalar::I64(value) => Value::from(value),
            Scalar::U64(value) => Value::from(value),
            Scalar::F64(value) => Value::from(value),
            Scalar::Bool(value) => Value::from(value),
        }
    }

    fn text(self, text: &str) -> String {
        match self {
            Scalar::Text(start, end) => slice(text, start, end).to_owned(),
            Scalar::Static(value) => value.to_owned(),
            other => other.json(text).to_string(),
        }
    }
}

/// The event a draft describes, at `level`, at `place` (its file and line) when known.
pub(crate) fn build(
    parts: &[Part],
    text: &str,
    ends: &Ends,
    level: Level,
    place: Option<(&'static str, u32)>,
) -> Event {
    let mut event = Event {
        level,
        ..Event::default()
    };
    let mut spans: Vec<Value> = Vec::new();
    for part in parts {
        match *part {
            Part::Message(start, end) => {
                event
                    .message
                    .get_or_insert_with(|| slice(text, start, end).to_owned());
            }
            Part::Value(to, value) => put(&mut event, &mut spans, to, value, text),
            Part::Error(ref chain, start) => chain.fill(text, start, ends, &mut event),
            Part::ErrorText(start, end) => {
                event.exception = Some(Exception::new("Error", slice(text, start, end)));
            }
            Part::Span { name, target } => {
                let mut span = Object::new();
                span.insert("name".into(), Value::from(name));
                span.insert("target".into(), Value::from(target));
                spans.push(Value::Object(span));
            }
            Part::Frame(function) => {
                if let Some((file, line)) = place {
                    event.frames = vec![Frame {
                        filename: file.to_owned(),
                        function: Some(function.to_owned()),
                        lineno: Some(line),
                        colno: None,
                        in_app: Some(true),
                    }];
                }
            }
        }
    }
    if !spans.is_empty() {
        event.contexts.insert("spans".into(), Value::Array(spans));
    }
    event
}

fn put(event: &mut Event, spans: &mut [Value], to: DraftField, value: Scalar, text: &str) {
    match to {
        DraftField::Extra(key) => {
            if !event.extra.contains_key(key) {
                event.extra.insert(key.into(), value.json(text));
            }
        }
        DraftField::Tag(key) => {
            if !event.tags.contains_key(key) {
                event.tags.insert(key.into(), value.text(text));
            }
        }
        DraftField::Context(context, key) => {
            let context = event
                .contexts
                .entry(context.to_owned())
                .or_insert_with(|| Value::Object(Object::new()));
            if let Value::Object(context) = context {
                context.entry(key).or_insert_with(|| value.json(text));
            }
        }
        DraftField::SpanField(key) => {
            let Some(Value::Object(span)) = spans.last_mut() else {
                return;
            };
            let fields = span
                .entry("fields")
                .or_insert_with(|| Value::Object(Object::new()));
            if let Value::Object(fields) = fields {
                fields.entry(key).or_insert_with(|| value.json(text));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drafted(write: impl FnOnce(&mut Draft<'_>)) -> Event {
        let (mut text, mut parts, mut ends) = (String::new(), Vec::new(), Ends::default());
        write(&mut Draft::new(&mut text, &mut parts, &mut ends));
        build(&parts, &text, &ends, Level::Error, Some(("src/pay.rs", 12)))
    }

    #[derive(Debug)]
    struct Outer(std::num::ParseIntError);
    impl fmt::Display for Outer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("charging failed")
        }
    }
    impl Error for Outer {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn every_part_lands_where_it_says_and_the_first_value_wins() {
        let parse = "x".parse::<u8>().expect_err("not a number");
        let event = drafted(|draft| {
            draft.put_text(DraftField::Extra("order"), "A-1");
            draft.message(format_args!("charge {} failed", 42));
            draft.error(&Outer(parse));
            draft.error_text("ignored: an error came first");
            draft.put_u64(DraftField::Tag("attempt"), 3);
            draft.put_static(DraftField::Context("tracing", "target"), "shop::pay");
            draft.span("request", "shop::http");
            draft.put_text(DraftField::SpanField("route"), "/pay");
            draft.put_text(DraftField::Extra("order"), "from the span: loses");
            draft.put_f64(DraftField::Extra("ratio"), f64::NAN);
            draft.frame("shop::pay::charge");
        });
        assert_eq!(event.message.as_deref(), Some("charge 42 failed"));
        assert_eq!(event.extra["order"], "A-1");
        assert_eq!(event.extra["ratio"], Value::Null);
        assert_eq!(event.tags["attempt"], "3");
        assert_eq!(event.contexts["tracing"]["target"], "shop::pay");
        assert_eq!(event.contexts["spans"][0]["name"], "request");
        assert_eq!(event.contexts["spans"][0]["fields"]["route"], "/pay");
        let exception = event.exception.expect("an exception");
        assert_eq!(
            (exception.ty.as_str(), exception.value.as_str()),
            ("Outer", "charging failed")
        );
        assert_eq!(event.extra["error.sources"][0]["type"], "ParseIntError");
        assert_eq!(event.frames[0].filename, "src/pay.rs");
        assert_eq!(event.frames[0].lineno, Some(12));
    }

    #[test]
    fn an_error_known_by_its_text_is_typed_error() {
        let event = drafted(|draft| draft.error_text(format_args!("timed out after {}s", 5)));
        let exception = event.exception.expect("an exception");
        assert_eq!(exception.ty, "Error");
        assert_eq!(exception.value, "timed out after 5s");
    }
}
