//! A [`tracing_subscriber::Layer`] that turns a service's `tracing` instrumentation into
//! ErrorWatch reports, with no other code change.
//!
//! By default `ERROR` events become ErrorWatch events, `WARN` and `INFO` events become
//! breadcrumbs on the current scope (so they explain the next error), and `DEBUG`/`TRACE` are
//! ignored. A [filter](ErrorWatchLayer::event_filter) chooses per event and
//! [mappers](ErrorWatchLayer::map_event) edit what is produced.
//!
//! ```no_run
//! use tracing_subscriber::prelude::*;
//!
//! let _guard = errorwatch_sdk::init(errorwatch_sdk::Options::from_env().unwrap_or_default());
//! tracing_subscriber::registry()
//!     .with(tracing_subscriber::fmt::layer())
//!     .with(errorwatch_tracing::layer())
//!     .init();
//!
//! tracing::info!(order = 42, "payment started");           // a breadcrumb
//! tracing::error!(order = 42, tag.region = "eu", "payment failed"); // an event
//! ```
//!
//! What an event carries:
//! - the `message` field as its message; every other field in `extra`, fields named
//!   `tag.<name>` in `tags`;
//! - an `error` field recorded as `&dyn Error` as its exception, with its type and the
//!   `source()` chain. `#[instrument(err)]` records only the error's text: the exception is
//!   then that text, typed `Error`; log `error = &e as &dyn std::error::Error` to keep the
//!   type and the chain;
//! - the event's target, module, file and line, and a frame for that place;
//! - the names and fields of the active spans (`contexts.spans`), whose fields also join
//!   `extra` and `tags`, so a request span's fields appear on its errors.
//!
//! Never recursive: events recorded on the SDK's own threads (its transport and the HTTP
//! stack under it) and events from the SDK's own crates are ignored.

#![warn(missing_docs)]

/// The README's examples, compiled (and run where they can be) as doctests: what a user copies
/// from it builds.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

mod fields;

use std::fmt;
use std::sync::Arc;

use errorwatch_sdk::integration::{
    capture_draft, capture_event_at, draft_event, Draft, DraftField,
};
use errorwatch_sdk::{Breadcrumb, Event, Level, Map, Value};
use tracing_core::span::{Attributes, Id, Record};
use tracing_core::{Metadata, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

use fields::{CrumbVisitor, DraftVisitor, SpanFields};

/// What the layer makes of one `tracing` event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventFilter {
    /// Nothing.
    Ignore,
    /// A breadcrumb on the current scope.
    Breadcrumb,
    /// An ErrorWatch event.
    Event,
    /// An ErrorWatch event, and a breadcrumb for the events after it.
    EventAndBreadcrumb,
}

/// The default mapping: `ERROR` to events, `WARN` and `INFO` to breadcrumbs, the rest ignored.
///
/// Custom filters can start from it:
///
/// ```
/// use errorwatch_tracing::{default_event_filter, EventFilter};
///
/// // The defaults, but warnings are reported as events too.
/// let layer = errorwatch_tracing::layer().event_filter(|metadata| {
///     match default_event_filter(metadata) {
///         EventFilter::Breadcrumb if *metadata.level() == tracing::Level::WARN => {
///             EventFilter::EventAndBreadcrumb
///         }
///         other => other,
///     }
/// });
/// # let _ = layer;
/// ```
pub fn default_event_filter(metadata: &Metadata<'_>) -> EventFilter {
    match *metadata.level() {
        tracing_core::Level::ERROR => EventFilter::Event,
        tracing_core::Level::WARN | tracing_core::Level::INFO => EventFilter::Breadcrumb,
        _ => EventFilter::Ignore,
    }
}

type FilterFn = dyn Fn(&Metadata<'_>) -> EventFilter + Send + Sync;
type EventMapper = dyn Fn(Event, &Metadata<'_>) -> Option<Event> + Send + Sync;
type BreadcrumbMapper = dyn Fn(Breadcrumb, &Metadata<'_>) -> Option<Breadcrumb> + Send + Sync;

/// The layer. Build it with [`layer()`] and its methods.
#[derive(Clone)]
pub struct ErrorWatchLayer {
    filter: Arc<FilterFn>,
    map_event: Option<Arc<EventMapper>>,
    map_breadcrumb: Option<Arc<BreadcrumbMapper>>,
    tag_prefix: &'static str,
    attach_spans: bool,
}

impl fmt::Debug for ErrorWatchLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ErrorWatchLayer")
            .field("tag_prefix", &self.tag_prefix)
            .field("attach_spans", &self.attach_spans)
            .finish_non_exhaustive()
    }
}

/// A layer with the default mapping.
pub fn layer() -> ErrorWatchLayer {
    ErrorWatchLayer::default()
}

impl Default for ErrorWatchLayer {
    fn default() -> Self {
        ErrorWatchLayer {
            filter: Arc::new(default_event_filter),
            map_event: None,
            map_breadcrumb: None,
            tag_prefix: "tag.",
            attach_spans: true,
        }
    }
}

impl ErrorWatchLayer {
    /// Chooses, per event, what it becomes.
    ///
    /// ```
    /// use errorwatch_tracing::{default_event_filter, EventFilter};
    /// let layer = errorwatch_tracing::layer().event_filter(|metadata| {
    ///     if metadata.target().starts_with("noisy_dependency") {
    ///         EventFilter::Ignore
    ///     } else {
    ///         default_event_filter(metadata)
    ///     }
    /// });
    /// # let _ = layer;
    /// ```
    pub fn event_filter(
        mut self,
        filter: impl Fn(&Metadata<'_>) -> EventFilter + Send + Sync + 'static,
    ) -> Self {
        self.filter = Arc::new(filter);
        self
    }

    /// Edits (or drops, with `None`) each event the layer produces.
    ///
    /// Without a mapper, an event is only described on the thread that logs and built on the
    /// SDK's worker; with one, it is built where it is logged, so that the mapper sees it.
    pub fn map_event(
        mut self,
        mapper: impl Fn(Event, &Metadata<'_>) -> Option<Event> + Send + Sync + 'static,
    ) -> Self {
        self.map_event = Some(Arc::new(mapper));
        self
    }

    /// Edits (or drops, with `None`) each breadcrumb the layer produces.
    pub fn map_breadcrumb(
        mut self,
        mapper: impl Fn(Breadcrumb, &Metadata<'_>) -> Option<Breadcrumb> + Send + Sync + 'static,
    ) -> Self {
        self.map_breadcrumb = Some(Arc::new(mapper));
        self
    }

    /// The prefix that marks a field as a tag (`tag.` by default: `tag.region = "eu"`), in
    /// events and in spans alike; an empty prefix makes no tags.
    pub fn tag_prefix(mut self, prefix: &'static str) -> Self {
        self.tag_prefix = prefix;
        self
    }

    /// Whether events carry the active spans' names and fields. Default: yes.
    pub fn attach_spans(mut self, attach: bool) -> Self {
        self.attach_spans = attach;
        self
    }
}

/// Events the SDK's own crates record are never reported: that way lies recursion.
fn is_own(metadata: &Metadata<'_>) -> bool {
    let target = metadata.target();
    target.starts_with("errorwatch_sdk") || target.starts_with("errorwatch_tracing")
}

fn level_of(metadata: &Metadata<'_>) -> Level {
    match *metadata.level() {
        tracing_core::Level::ERROR => Level::Error,
        tracing_core::Level::WARN => Level::Warning,
        tracing_core::Level::INFO => Level::Info,
        _ => Level::Debug,
    }
}

impl<S> tracing_subscriber::Layer<S> for ErrorWatchLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if errorwatch_sdk::integration::is_suppressed() || is_own(attrs.metadata()) {
            return;
        }
        let Some(span) = ctx.span(id) else { return };
        let mut fields = SpanFields::default();
        attrs.record(&mut fields);
        if !fields.is_empty() {
            span.extensions_mut().insert(fields);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if errorwatch_sdk::integration::is_suppressed() {
            return;
        }
        let Some(span) = ctx.span(id) else { return };
        let mut extensions = span.extensions_mut();
        if let Some(fields) = extensions.get_mut::<SpanFields>() {
            values.record(fields);
        } else {
            let mut fields = SpanFields::default();
            values.record(&mut fields);
            extensions.insert(fields);
        }
    }

    fn on_event(&self, event: &tracing_core::Event<'_>, ctx: Context<'_, S>) {
        let metadata = event.metadata();
        // Cheap checks first: nothing below allocates unless a report is made.
        if errorwatch_sdk::integration::is_suppressed() || is_own(metadata) {
            return;
        }
        let decision = (self.filter)(metadata);
        if decision == EventFilter::Ignore {
            return;
        }
        match decision {
            EventFilter::Ignore => {}
            EventFilter::Breadcrumb => self.breadcrumb(event, metadata),
            EventFilter::Event => self.event(metadata, event, &ctx, false),
            EventFilter::EventAndBreadcrumb => self.event(metadata, event, &ctx, true),
        }
    }
}

impl ErrorWatchLayer {
    fn breadcrumb(&self, event: &tracing_core::Event<'_>, metadata: &Metadata<'_>) {
        let mut visitor = CrumbVisitor::new(self.tag_prefix);
        event.record(&mut visitor);
        let crumb = Breadcrumb {
            timestamp: errorwatch_sdk::protocol::Timestamp::now(),
            category: metadata.target().to_owned(),
            // No type is the default type, and one allocation fewer per log line.
            ty: (*metadata.level() == tracing_core::Level::ERROR).then(|| "error".into()),
            level: Some(level_of(metadata)),
            message: visitor.message,
            data: visitor.data,
        };
        self.add_breadcrumb(crumb, metadata);
    }

    /// Every breadcrumb the layer makes passes the mapper here.
    fn add_breadcrumb(&self, crumb: Breadcrumb, metadata: &Metadata<'_>) {
        let crumb = match &self.map_breadcrumb {
            Some(mapper) => match mapper(crumb, metadata) {
                Some(crumb) => crumb,
                None => return,
            },
            None => crumb,
        };
        errorwatch_sdk::add_breadcrumb(crumb);
    }

    /// Reports an event. Without a mapper it is only described here and built on the SDK's
    /// worker, so logging an error does not build (and later free) an event on this thread.
    fn event<S>(
        &self,
        metadata: &'static Metadata<'static>,
        tracing_event: &tracing_core::Event<'_>,
        ctx: &Context<'_, S>,
        also_breadcrumb: bool,
    ) where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let level = level_of(metadata);
        // The stack starts at the `error!` itself, so the issue names the user's function.
        let place = metadata.file().zip(metadata.line());
        let describe = |draft: &mut Draft<'_>| self.describe(draft, metadata, tracing_event, ctx);
        match &self.map_event {
            None => {
                capture_draft(level, place, describe);
            }
            Some(mapper) => {
                let Some(event) = mapper(draft_event(level, place, describe), metadata) else {
                    return;
                };
                match place {
                    Some((file, line)) => capture_event_at(event, file, line),
                    None => errorwatch_sdk::capture_event(event),
                };
            }
        }
        if also_breadcrumb {
            let mut visitor = CrumbVisitor::new(self.tag_prefix);
            tracing_event.record(&mut visitor);
            let mut crumb = Breadcrumb::new(metadata.target(), visitor.message.unwrap_or_default());
            crumb.level = Some(level);
            crumb.ty = Some("error".into());
            self.add_breadcrumb(crumb, metadata);
        }
    }

    /// What an event carries: the logger, the event's own fields (which win over the spans'),
    /// its place, and the active spans.
    fn describe<S>(
        &self,
        draft: &mut Draft<'_>,
        metadata: &'static Metadata<'static>,
        tracing_event: &tracing_core::Event<'_>,
        ctx: &Context<'_, S>,
    ) where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let target = metadata.target();
        draft.put_static(DraftField::Tag("logger"), target);
        tracing_event.record(&mut DraftVisitor::new(draft, self.tag_prefix));
        draft.put_static(DraftField::Context("tracing", "target"), target);
        if let Some(module) = metadata.module_path() {
            draft.put_static(DraftField::Context("tracing", "module"), module);
        }
        if let Some(file) = metadata.file() {
            draft.put_static(DraftField::Context("tracing", "file"), file);
        }
        if let Some(line) = metadata.line() {
            draft.put_u64(DraftField::Context("tracing", "line"), line.into());
        }
        // The event's own place is the culprit when there is no stack trace.
        draft.frame(metadata.module_path().unwrap_or(target));
        if self.attach_spans {
            describe_spans(draft, tracing_event, ctx, self.tag_prefix);
        }
    }
}

/// The active spans, outermost first: names in `contexts.spans`, fields into extra and tags
/// too (fields named with `tag_prefix`; the event's own fields win).
fn describe_spans<S>(
    draft: &mut Draft<'_>,
    tracing_event: &tracing_core::Event<'_>,
    ctx: &Context<'_, S>,
    tag_prefix: &'static str,
) where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let Some(scope) = ctx.event_scope(tracing_event) else {
        return;
    };
    for span in scope.from_root() {
        let metadata = span.metadata();
        draft.span(metadata.name(), metadata.target());
        let extensions = span.extensions();
        let Some(fields) = extensions.get::<SpanFields>() else {
            continue;
        };
        for (name, value) in fields.iter() {
            put_value(draft, DraftField::SpanField(name), value);
            put_value(draft, fields::field_for(name, tag_prefix), value);
        }
    }
}

fn put_value(draft: &mut Draft<'_>, to: DraftField, value: &Value) {
    match value {
        Value::String(text) => draft.put_text(to, text),
        Value::Bool(value) => draft.put_bool(to, *value),
        Value::Number(number) => {
            if let Some(value) = number.as_u64() {
                draft.put_u64(to, value);
            } else if let Some(value) = number.as_i64() {
                draft.put_i64(to, value);
            } else {
                draft.put_f64(to, number.as_f64().unwrap_or(f64::NAN));
            }
        }
        other => draft.put_text(to, other),
    }
}

/// The map type the layer fills (re-exported for mappers).
pub type Fields = Map;
