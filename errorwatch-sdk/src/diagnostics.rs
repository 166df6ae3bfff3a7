//! The SDK's own problems, reported to stderr or a hook when debug is on.
//!
//! Never through `tracing` or `log`: the tracing layer would turn them into events, which
//! could fail to send, which would be logged, and so on.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::options::{DiagnosticsHook, Options};

#[derive(Clone)]
pub(crate) struct Diagnostics {
    enabled: bool,
    hook: Option<DiagnosticsHook>,
}

impl Diagnostics {
    pub(crate) fn new(options: &Options) -> Diagnostics {
        Diagnostics {
            enabled: options.debug,
            hook: options.diagnostics_hook.clone(),
        }
    }

    /// Reports one line. The messages are the SDK's own and never include the API key.
    pub(crate) fn log(&self, message: fmt::Arguments<'_>) {
        if self.enabled {
            self.emit(message);
        }
    }

    /// Reports a problem only the operator can fix (a refused key, a redirect to another
    /// server) even with debug off, at most once for each `said` flag.
    pub(crate) fn warn_once(&self, said: &AtomicBool, message: fmt::Arguments<'_>) {
        if said.swap(true, Ordering::Relaxed) {
            self.log(message);
        } else {
            self.emit(message);
        }
    }

    fn emit(&self, message: fmt::Arguments<'_>) {
        match &self.hook {
            Some(hook) => hook(&message.to_string()),
            None => eprintln!("[errorwatch] {message}"),
        }
    }
}
