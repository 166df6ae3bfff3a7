//! Reading `tracing` fields: an event's into a breadcrumb or an event's draft, a span's into
//! its extensions.

use std::error::Error;
use std::fmt;

use errorwatch_sdk::integration::{Draft, DraftField};
use errorwatch_sdk::{Map, Value};
use tracing_core::field::{Field, Visit};

/// Reads an event's fields into a breadcrumb: its message, and every other field as data
/// (tags by their name without the prefix; the `error` field as its text).
pub(crate) struct CrumbVisitor {
    tag_prefix: &'static str,
    pub(crate) message: Option<String>,
    pub(crate) data: Map,
}

impl CrumbVisitor {
    pub(crate) fn new(tag_prefix: &'static str) -> CrumbVisitor {
        CrumbVisitor {
            tag_prefix,
            message: None,
            data: Map::new(),
        }
    }

    fn put(&mut self, field: &Field, value: Value) {
        let key = match field_for(field.name(), self.tag_prefix) {
            DraftField::Tag(tag) => tag,
            _ => field.name(),
        };
        // Tags are texts, here as in events.
        let value = match value {
            Value::String(_) => value,
            other if key != field.name() => Value::String(other.to_string()),
            other => other,
        };
        self.data.insert(key.to_owned(), value);
    }
}

impl Visit for CrumbVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => self.message = Some(value.to_owned()),
            _ => self.put(field, Value::from(value)),
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let text = format!("{value:?}");
        match field.name() {
            "message" => self.message = Some(text),
            _ => self.put(field, Value::String(text)),
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::from(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Value::from(value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, Value::from(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::from(value));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn Error + 'static)) {
        self.put(field, Value::from(value.to_string()));
    }
}

/// Writes an event's fields into a draft: its message, its exception, its other fields as
/// tags (named with the prefix) or extra.
pub(crate) struct DraftVisitor<'d, 'a> {
    draft: &'d mut Draft<'a>,
    tag_prefix: &'static str,
    has_error: bool,
}

impl<'d, 'a> DraftVisitor<'d, 'a> {
    pub(crate) fn new(draft: &'d mut Draft<'a>, tag_prefix: &'static str) -> Self {
        DraftVisitor {
            draft,
            tag_prefix,
            has_error: false,
        }
    }

    fn to(&self, field: &Field) -> DraftField {
        field_for(field.name(), self.tag_prefix)
    }
}

/// Where a field named `name` goes: a tag when it carries the prefix, else extra.
pub(crate) fn field_for(name: &'static str, tag_prefix: &'static str) -> DraftField {
    match name
        .strip_prefix(tag_prefix)
        .filter(|_| !tag_prefix.is_empty())
    {
        Some(tag) => DraftField::Tag(tag),
        None => DraftField::Extra(name),
    }
}

impl Visit for DraftVisitor<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => self.draft.message(value),
            // `#[instrument(err)]` and `error = %e` record errors as text.
            "error" if !self.has_error => {
                self.has_error = true;
                self.draft.error_text(value);
            }
            _ => self.draft.put_text(self.to(field), value),
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        match field.name() {
            "message" => self.draft.message(format_args!("{value:?}")),
            "error" if !self.has_error => {
                self.has_error = true;
                self.draft.error_text(format_args!("{value:?}"));
            }
            _ => self
                .draft
                .put_text(self.to(field), format_args!("{value:?}")),
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.draft.put_i64(self.to(field), value);
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.draft.put_u64(self.to(field), value);
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.draft.put_f64(self.to(field), value);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.draft.put_bool(self.to(field), value);
    }

    fn record_error(&mut self, field: &Field, value: &(dyn Error + 'static)) {
        if field.name() == "error" && !self.has_error {
            self.has_error = true;
            self.draft.error(value);
        } else {
            self.draft.put_text(self.to(field), value);
        }
    }
}

/// The fields of a span, kept in its extensions, in the order recorded (a field recorded again
/// keeps its place).
#[derive(Default)]
pub(crate) struct SpanFields(Vec<(&'static str, Value)>);

impl SpanFields {
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&'static str, &Value)> {
        self.0.iter().map(|(name, value)| (*name, value))
    }

    fn set(&mut self, field: &Field, value: Value) {
        let name = field.name();
        match self.0.iter_mut().find(|(known, _)| *known == name) {
            Some((_, slot)) => *slot = value,
            None => self.0.push((name, value)),
        }
    }
}

impl Visit for SpanFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.set(field, Value::from(value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.set(field, Value::from(format!("{value:?}")));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.set(field, Value::from(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.set(field, Value::from(value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.set(field, Value::from(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.set(field, Value::from(value));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn Error + 'static)) {
        self.set(field, Value::from(value.to_string()));
    }
}
