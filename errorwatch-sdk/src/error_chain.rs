//! An error and its `source()` chain as the caller hands them over: their texts written into
//! one buffer, on the caller's thread, and nothing else. The event's exception and its
//! `extra["error.sources"]` are built from them off that thread.
//!
//! The buffer is the caller's (a recycled one, for a capture: see [`crate::handoff`]); what is
//! kept here is only where each error's texts lie in it.

use std::error::Error;
use std::fmt::{self, Write};

use errorwatch_protocol::{Event, Exception, Value};
use smallvec::SmallVec;

/// Sources kept below the error itself.
pub(crate) const MAX_ERROR_SOURCES: usize = 16;

/// An error and its sources written in a text buffer, from its start: the first one's static
/// type. Where each one's type and message end is kept in a list beside the buffer (reused with
/// it, like the buffer).
pub(crate) struct ErrorChain {
    /// The error's static type, when it names one (not `dyn Error`).
    static_type: Option<&'static str>,
}

/// Where each error's type (when read from its `Debug`) and message end in the buffer, the
/// error first. Most chains are a few errors deep, and their ends are kept inline (a queued
/// capture's size is what a burst's queue holds, times its depth); a deeper chain spills to
/// the heap once, and the box it was written in keeps that room when pooled.
#[derive(Default)]
pub(crate) struct Ends(SmallVec<[(u32, u32); 3]>);

impl Ends {
    fn is_full(&self) -> bool {
        self.0.len() > MAX_ERROR_SOURCES
    }

    fn push(&mut self, end: (u32, u32)) {
        if !self.is_full() {
            self.0.push(end);
        }
    }

    pub(crate) fn clear(&mut self) {
        self.0.clear();
    }

    fn as_slice(&self) -> &[(u32, u32)] {
        &self.0
    }
}

impl ErrorChain {
    /// Writes the texts of `error` and its sources at the end of `text`, and where they end
    /// to `ends`, emptied first: no allocation when both have room.
    pub(crate) fn write<E: Error + ?Sized>(
        error: &E,
        text: &mut String,
        ends: &mut Ends,
    ) -> ErrorChain {
        let static_type = static_type_name::<E>();
        let chain = ErrorChain { static_type };
        ends.clear();
        if static_type.is_none() {
            write_debug_name(text, error);
        }
        write_message(text, ends, error);
        let mut source = error.source();
        while let Some(cause) = source {
            if ends.is_full() {
                break;
            }
            write_debug_name(text, cause);
            write_message(text, ends, cause);
            source = cause.source();
        }
        chain
    }

    /// The event for `error`: its type, its message, its sources in `extra["error.sources"]`.
    pub(crate) fn event_for<E: Error + ?Sized>(error: &E) -> Event {
        let (mut text, mut ends) = (String::new(), Ends::default());
        let chain = ErrorChain::write(error, &mut text, &mut ends);
        let mut event = Event::default();
        chain.fill(&text, 0, &ends, &mut event);
        event
    }

    /// Sets `event`'s exception and sources from this chain, written in `text` from `start`
    /// up to `ends`.
    pub(crate) fn fill(&self, text: &str, start: u32, ends: &Ends, event: &mut Event) {
        let mut start = start as usize;
        let mut sources = Vec::with_capacity(ends.as_slice().len().saturating_sub(1));
        for (i, &(type_end, end)) in ends.as_slice().iter().enumerate() {
            let (type_end, end) = (type_end as usize, end as usize);
            let ty = match (i, self.static_type) {
                (0, Some(full)) => short_type_name(full),
                _ => name_from_debug(text.get(start..type_end).unwrap_or_default()),
            };
            let value = text.get(type_end..end).unwrap_or_default().to_owned();
            if i == 0 {
                event.exception = Some(Exception::new(ty, value));
            } else {
                let mut entry = serde_json::Map::new();
                entry.insert("type".into(), Value::from(ty));
                entry.insert("value".into(), Value::from(value));
                sources.push(Value::Object(entry));
            }
            start = end;
        }
        if !sources.is_empty() {
            event
                .extra
                .insert("error.sources".into(), Value::Array(sources));
        }
    }
}

/// Writes one error's message, its name (when read from `Debug`) having been written just
/// before.
fn write_message(text: &mut String, ends: &mut Ends, error: &(impl fmt::Display + ?Sized)) {
    let type_end = offset(text);
    let _ = write!(text, "{error}");
    ends.push((type_end, offset(text)));
}

fn offset(text: &str) -> u32 {
    u32::try_from(text.len()).unwrap_or(u32::MAX)
}

fn write_debug_name(text: &mut String, error: &(impl fmt::Debug + ?Sized)) {
    let _ = write!(LeadingName::new(text), "{error:?}");
}

/// Keeps the leading identifier of what is written to it and drops the rest: a large `Debug`
/// output allocates no more than its name. It never reports an error, so no `Debug` impl that
/// unwraps its writes can panic on the caller's thread.
struct LeadingName<'a> {
    name: &'a mut String,
    ended: bool,
}

impl<'a> LeadingName<'a> {
    fn new(name: &'a mut String) -> Self {
        LeadingName { name, ended: false }
    }
}

impl Write for LeadingName<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if self.ended {
            return Ok(());
        }
        for c in s.chars() {
            if c.is_alphanumeric() || c == '_' || c == ':' {
                self.name.push(c);
            } else {
                self.ended = true;
                break;
            }
        }
        Ok(())
    }
}

/// A short name for a static type: `ParseIntError`, `serde_json::Error`, `io::Error`.
fn short_type_name(full: &str) -> String {
    let path = full.split('<').next().unwrap_or(full);
    let segments: Vec<&str> = path.split("::").collect();
    let last = segments.last().copied().unwrap_or(path);
    if last == "Error" && segments.len() > 1 {
        // `Error` alone says nothing: name the crate (or the std module) it comes from.
        let owner = match segments[0] {
            "std" | "core" | "alloc" if segments.len() > 2 => segments[1],
            first => first,
        };
        return format!("{owner}::Error");
    }
    last.to_owned()
}

/// A type name from the leading identifier of a `Debug` output.
fn name_from_debug(name: &str) -> String {
    match name {
        // The variants `std::io::Error` prints.
        "Os" | "Custom" | "Kind" | "SimpleMessage" => "io::Error".to_owned(),
        "" => "Error".to_owned(),
        _ => name.to_owned(),
    }
}

/// A short name for `E`: `ParseIntError`, `serde_json::Error`, `io::Error`. `None` for trait
/// objects, whose static type says nothing.
#[cfg(test)]
fn type_name_of<E: ?Sized>() -> Option<String> {
    static_type_name::<E>().map(short_type_name)
}

/// `E`'s full type name, unless `E` is a trait object or a reference, whose static type says
/// nothing of the error.
fn static_type_name<E: ?Sized>() -> Option<&'static str> {
    let full = std::any::type_name::<E>();
    (!full.starts_with("dyn ") && !full.starts_with('&')).then_some(full)
}

/// The leading identifier of a value's `Debug` output, for errors only seen as `dyn Error`.
pub(crate) fn type_name_from_debug<E: fmt::Debug + ?Sized>(error: &E) -> String {
    let mut name = String::new();
    let _ = write!(LeadingName::new(&mut name), "{error:?}");
    name_from_debug(&name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_types_get_short_useful_names() {
        assert_eq!(
            type_name_of::<std::num::ParseIntError>().as_deref(),
            Some("ParseIntError")
        );
        assert_eq!(
            type_name_of::<std::io::Error>().as_deref(),
            Some("io::Error")
        );
        assert_eq!(
            type_name_of::<serde_json::Error>().as_deref(),
            Some("serde_json::Error")
        );
        assert_eq!(type_name_of::<dyn Error>(), None);
        let io = std::io::Error::other("x");
        assert_eq!(type_name_from_debug(&io), "io::Error");
    }

    #[derive(Debug)]
    struct Outer {
        inner: std::io::Error,
    }
    impl fmt::Display for Outer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("saving failed")
        }
    }
    impl Error for Outer {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&self.inner)
        }
    }

    #[test]
    fn a_chain_is_typed_and_valued_error_by_error() {
        let error = Outer {
            inner: std::io::Error::other("disk full"),
        };
        let event = ErrorChain::event_for(&error);
        let exception = event.exception.expect("an exception");
        assert_eq!(
            (exception.ty.as_str(), exception.value.as_str()),
            ("Outer", "saving failed")
        );
        assert_eq!(
            event.extra["error.sources"],
            serde_json::json!([{ "type": "io::Error", "value": "disk full" }])
        );
        // Seen only as `dyn Error`, the type comes from `Debug`, and stops at its name.
        let event = ErrorChain::event_for(&error as &dyn Error);
        assert_eq!(event.exception.expect("an exception").ty, "Outer");
    }

    #[test]
    fn a_debug_impl_that_unwraps_its_writes_is_read_to_its_name() {
        struct Strict;
        impl fmt::Debug for Strict {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("Strict { code: ").expect("never refused");
                f.write_str("7 }").expect("never refused");
                Ok(())
            }
        }
        assert_eq!(type_name_from_debug(&Strict), "Strict");
    }

    #[test]
    fn a_long_chain_keeps_sixteen_sources() {
        #[derive(Debug)]
        struct Link(usize, Option<Box<Link>>);
        impl fmt::Display for Link {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "link {}", self.0)
            }
        }
        impl Error for Link {
            fn source(&self) -> Option<&(dyn Error + 'static)> {
                self.1.as_deref().map(|l| l as &(dyn Error + 'static))
            }
        }
        let chain = (0..40)
            .rev()
            .fold(None, |next, n| Some(Box::new(Link(n, next))));
        let top = chain.expect("a chain");
        let event = ErrorChain::event_for(top.as_ref());
        let sources = event.extra["error.sources"].as_array().expect("sources");
        assert_eq!(sources.len(), MAX_ERROR_SOURCES);
        assert_eq!(sources[15]["value"], "link 16");
        assert_eq!(sources[15]["type"], "Link");
    }
}
