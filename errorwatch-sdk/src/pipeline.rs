//! The work done off the caller's thread: from a captured job to the event that is sent.
//!
//! Order matters: symbolise, apply the scope, fill defaults, let `before_send` edit, then
//! scrub (so whatever `before_send` adds is scrubbed too), then fit the server's limits.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::diagnostics::Diagnostics;
use crate::handoff::{Handoff, Pool};
use crate::options::{BeforeSend, Options, OptionsError};
use crate::scope::Scope;
use crate::scrub::Scrubber;
use crate::stacktrace::{InAppRules, RawStack};
use errorwatch_protocol::{Event, Map, Value};

/// A capture as the worker takes it up: the event as captured, a snapshot of its scope, and
/// maybe an unresolved stack.
pub(crate) struct Job {
    pub(crate) event: Event,
    pub(crate) scope: Scope,
    pub(crate) stack: Option<RawStack>,
}

/// Why the pipeline produced no event.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Discarded {
    /// `before_send` dropped it, or panicked.
    BeforeSend,
    /// Preparing it panicked (a bug of the SDK's, reported in its diagnostics).
    Unprepared,
}

impl Discarded {
    /// The counter it goes to.
    pub(crate) fn outcome(&self) -> crate::stats::Outcome {
        match self {
            Discarded::BeforeSend => crate::stats::Outcome::BeforeSend,
            Discarded::Unprepared => crate::stats::Outcome::Failed,
        }
    }
}

pub(crate) struct Pipeline {
    environment: Option<String>,
    release: Option<String>,
    server_name: Option<String>,
    contexts: Map,
    in_app: InAppRules,
    scrubber: Option<Scrubber>,
    before_send: Option<BeforeSend>,
    max_breadcrumbs: usize,
    pub(crate) diagnostics: Diagnostics,
    /// The boxes captures are written into, shared by the callers and the worker.
    pub(crate) pool: Pool,
    /// Whether the fallback symboliser was mentioned (once per client).
    fallback_said: AtomicBool,
}

impl Pipeline {
    pub(crate) fn new(options: &Options) -> Result<Pipeline, OptionsError> {
        let scrubber =
            Scrubber::new(&options.scrub, options.api_key.as_deref()).map_err(|error| {
                OptionsError::Scrubbing {
                    reason: error.to_string(),
                }
            })?;
        Ok(Pipeline {
            environment: options.environment.clone(),
            release: options.release.clone(),
            server_name: options.server_name.clone().or_else(host_name),
            contexts: default_contexts(),
            in_app: InAppRules {
                include: options.in_app_include.clone(),
                exclude: options.in_app_exclude.clone(),
            },
            scrubber,
            before_send: options.before_send.clone(),
            max_breadcrumbs: options.max_breadcrumbs,
            diagnostics: Diagnostics::new(options),
            pool: Pool::new(),
            fallback_said: AtomicBool::new(false),
        })
    }

    /// Resolves `stack` into `event` (the frames, the stack text, the culprit). Never panics:
    /// a failure leaves the event as captured.
    pub(crate) fn symbolise(&self, stack: RawStack, event: &mut Event) {
        let mut resolved = event.clone();
        if catch_unwind(AssertUnwindSafe(|| {
            stack.resolve_into(&mut resolved, &self.in_app)
        }))
        .is_ok()
        {
            *event = resolved;
        }
        if let Some(why) = crate::stacktrace::symbols::fallback_reason() {
            if !self.fallback_said.swap(true, Ordering::Relaxed) {
                self.diagnostics.log(format_args!(
                    "stacks are symbolised by the backtrace crate ({why}), which holds the \
                     whole binary's debug info in memory"
                ));
            }
        }
    }

    /// Resolves `stack` into `event` if its addresses were all resolved before and the
    /// resolver is free, without waiting; returns whether it did.
    pub(crate) fn symbolise_cached(&self, stack: &RawStack, event: &mut Event) -> bool {
        let Some(symbols) = stack.cached_symbols() else {
            return false;
        };
        let mut resolved = event.clone();
        if catch_unwind(AssertUnwindSafe(|| {
            stack.fill(&symbols, &mut resolved, &self.in_app)
        }))
        .is_ok()
        {
            *event = resolved;
        }
        true
    }

    /// The job of a capture: its event as captured. Never panics.
    pub(crate) fn unpack(&self, handoff: Handoff) -> Result<Job, Discarded> {
        catch_unwind(AssertUnwindSafe(|| handoff.unpack(&self.pool))).map_err(|_| {
            self.diagnostics
                .log(format_args!("an event could not be prepared; dropped"));
            Discarded::Unprepared
        })
    }

    /// Builds the final event. Never panics: a panic in `before_send` (or in symbolisation)
    /// drops the event, not the worker.
    pub(crate) fn process(&self, job: Job) -> Result<Event, Discarded> {
        let Job {
            mut event,
            scope,
            stack,
        } = job;
        let prepared = catch_unwind(AssertUnwindSafe(|| {
            if let Some(stack) = stack {
                stack.resolve_into(&mut event, &self.in_app);
            }
            scope.apply_to(&mut event, self.max_breadcrumbs);
            self.fill_defaults(&mut event);
            event
        }));
        let mut event = match prepared {
            Ok(event) => event,
            Err(_) => {
                self.diagnostics
                    .log(format_args!("an event could not be prepared; dropped"));
                return Err(Discarded::Unprepared);
            }
        };
        if let Some(before_send) = &self.before_send {
            match catch_unwind(AssertUnwindSafe(|| before_send(event))) {
                Ok(Some(kept)) => event = kept,
                Ok(None) => return Err(Discarded::BeforeSend),
                Err(_) => {
                    self.diagnostics
                        .log(format_args!("before_send panicked; event dropped"));
                    return Err(Discarded::BeforeSend);
                }
            }
        }
        if let Some(scrubber) = &self.scrubber {
            scrubber.scrub_event(&mut event);
        }
        event.normalize();
        Ok(event)
    }

    fn fill_defaults(&self, event: &mut Event) {
        if event.env.is_none() {
            event.env.clone_from(&self.environment);
        }
        if event.release.is_none() {
            event.release.clone_from(&self.release);
        }
        if event.server_name.is_none() {
            event.server_name.clone_from(&self.server_name);
        }
        for (key, value) in &self.contexts {
            event
                .contexts
                .entry(key.clone())
                .or_insert_with(|| value.clone());
        }
    }
}

fn default_contexts() -> Map {
    let mut os = serde_json::Map::new();
    os.insert("name".into(), Value::from(std::env::consts::OS));
    os.insert("arch".into(), Value::from(std::env::consts::ARCH));
    if let Some(kernel) = read_trimmed("/proc/sys/kernel/osrelease") {
        os.insert("kernel_version".into(), Value::from(kernel));
    }
    let mut rust = serde_json::Map::new();
    rust.insert("name".into(), Value::from("rustc"));
    rust.insert(
        "version".into(),
        Value::from(env!("ERRORWATCH_RUSTC_VERSION")),
    );
    let mut contexts = Map::new();
    contexts.insert("os".into(), Value::Object(os));
    contexts.insert("rust".into(), Value::Object(rust));
    contexts
}

fn host_name() -> Option<String> {
    read_trimmed("/proc/sys/kernel/hostname")
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .filter(|name| !name.is_empty())
}

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|text| text.trim().to_owned())
}
