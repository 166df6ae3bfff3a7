//! The ErrorWatch ingestion contract as code, shared by the errorwatch SDK and server so that
//! neither restates a rule: the event model and its levels, every limit (beside its field, in
//! [`limits`]), the API-key format, UTF-16 lengths and safe truncation, the stack text, and the
//! validator that accepts or rejects a body as the production server does.
//!
//! The rules follow what the production ErrorWatch server actually did with recorded requests
//! (the conformance vectors), not only what its documentation says.
//!
//! ```
//! use errorwatch_protocol::{validate, Event, Level};
//!
//! // What the SDK sends...
//! let mut event = Event::message("disk 91% full", Level::Warning);
//! event.normalize();
//! let body = event.to_body();
//!
//! // ...is what the server accepts.
//! let parsed = errorwatch_protocol::json::parse(&body).unwrap();
//! let accepted = validate::event(&parsed, 0).unwrap();
//! assert_eq!(accepted.exception_type.as_deref(), Some("WARNING"));
//! ```

#![warn(missing_docs)]

/// The README's examples, compiled (and run where they can be) as doctests: what a user copies
/// from it builds.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

pub mod api_key;
mod event;
pub mod json;
pub mod limits;
pub mod normalize;
pub mod stack;
pub mod text;
pub mod validate;

pub use event::{
    Breadcrumb, Event, EventId, Exception, Frame, Level, Map, Request, SdkInfo, Timestamp, User,
    Value,
};
