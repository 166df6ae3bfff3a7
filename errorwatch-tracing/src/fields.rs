//! Reading `tracing` fields into an event's message, extra, tags and exception.

use std::error::Error;
use std::fmt;

use errorwatch_sdk::{Map, Value};
use tracing_core::field::{Field, Visit};

/// The `error` field of an event.
pub(crate) struct ErrorField {
    pub(crate) ty: String,
    pub(crate) value: String,
    pub(crate) sources: Option<Value>,
}

/// Collects an event's fields.
pub(crate) struct FieldVisitor {
    tag_prefix: &'static str,
    pub(crate) message: Option<String>,
    pub(crate) extra: Map,
    pub(crate) tags: std::collections::BTreeMap<String, String>,
    pub(crate) error: Option<ErrorField>,
}

impl FieldVisitor {
    pub(crate) fn new(tag_prefix: &'static str) -> FieldVisitor {
        FieldVisitor {
            tag_prefix,
            message: None,
            extra: Map::new(),
            tags: Default::default(),
            error: None,
        }
    }

    fn put(&mut self, field: &Field, value: Value) {
        let name = field.name();
        if let Some(tag) = name
            .strip_prefix(self.tag_prefix)
            .filter(|_| !self.tag_prefix.is_empty())
        {
            let text = match value {
                Value::String(text) => text,
                other => other.to_string(),
            };
            self.tags.insert(tag.to_owned(), text);
        } else {
            self.extra.insert(name.to_owned(), value);
        }
    }
}

impl Visit for FieldVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => self.message = Some(value.to_owned()),
            // `#[instrument(err)]` and `error = %e` record errors as text.
            "error" if self.error.is_none() => {
                self.error = Some(ErrorField {
                    ty: "Error".into(),
                    value: value.to_owned(),
                    sources: None,
                })
            }
            _ => self.put(field, Value::from(value)),
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        // `message` arrives as `fmt::Arguments`, whose Debug is the formatted text: written
        // where it goes, without a copy.
        if field.name() == "message" {
            self.message = Some(format!("{value:?}"));
            return;
        }
        let text = format!("{value:?}");
        self.record_str(field, &text);
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
        if field.name() != "error" || self.error.is_some() {
            self.put(field, Value::from(value.to_string()));
            return;
        }
        let mut event = errorwatch_sdk::event_from_error(value);
        let exception = event.exception.take().unwrap_or_default();
        self.error = Some(ErrorField {
            ty: exception.ty,
            value: exception.value,
            sources: event.extra.remove("error.sources"),
        });
    }
}

/// The fields of a span, kept in its extensions.
#[derive(Default)]
pub(crate) struct SpanFields(Map);

impl SpanFields {
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&String, &Value)> {
        self.0.iter()
    }
}

impl Visit for SpanFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().to_owned(), Value::from(format!("{value:?}")));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn Error + 'static)) {
        self.0
            .insert(field.name().to_owned(), Value::from(value.to_string()));
    }
}
