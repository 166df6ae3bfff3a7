//! The panic hook: every panic becomes a `fatal` event, sent before the thread goes on dying.

use std::cell::Cell;
use std::panic;

use errorwatch_protocol::EventId;

#[cfg(feature = "panic")]
pub use hook::install_hook;

thread_local! {
    /// Set while an integration runs code whose panics it catches and reports itself.
    static CAUGHT_BY_CALLER: Cell<bool> = const { Cell::new(false) };
    /// The event the hook made for the latest panic on this thread.
    static LAST_PANIC: Cell<Option<EventId>> = const { Cell::new(None) };
    /// Guards against a panic inside the hook's own reporting.
    static IN_HOOK: Cell<bool> = const { Cell::new(false) };
}

/// The text of a panic payload (`&str` or `String`, as `panic!` makes them).
pub fn payload_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "Box<dyn Any>".to_owned()
    }
}

/// Runs `f`, whose panics the caller catches with `catch_unwind` and answers itself (as the
/// web integrations do): the hook still reports them, with the current scope, but does not
/// wait for delivery, since the process goes on.
///
/// ```
/// let caught = errorwatch_sdk::integration::catching_panics(|| {
///     std::panic::catch_unwind(|| 2 + 2)
/// });
/// assert_eq!(caught.ok(), Some(4));
/// ```
pub fn catching_panics<R>(f: impl FnOnce() -> R) -> R {
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            let _ = CAUGHT_BY_CALLER.try_with(|flag| flag.set(self.0));
        }
    }
    let previous = CAUGHT_BY_CALLER
        .try_with(|flag| flag.replace(true))
        .unwrap_or(false);
    let _reset = Reset(previous);
    f()
}

pin_project_lite::pin_project! {
    /// A future whose panics are caught: it resolves to `Err(payload)` instead of unwinding.
    /// Each poll runs inside [`catching_panics`], so the hook reports without waiting.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let outcome = errorwatch_sdk::integration::CatchPanic::new(async { panic!("boom") }).await;
    /// assert!(outcome.is_err());
    /// # }
    /// ```
    pub struct CatchPanic<F> {
        #[pin]
        inner: Option<F>,
    }
}

impl<F> CatchPanic<F> {
    /// Wraps `future`.
    pub fn new(future: F) -> Self {
        CatchPanic {
            inner: Some(future),
        }
    }
}

impl<F: std::future::Future> std::future::Future for CatchPanic<F> {
    type Output = Result<F::Output, Box<dyn std::any::Any + Send>>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let mut this = self.project();
        let Some(inner) = this.inner.as_mut().as_pin_mut() else {
            // Polled again after a panic: there is nothing left to run.
            return std::task::Poll::Ready(Err(Box::new("polled after a panic")));
        };
        match catching_panics(|| panic::catch_unwind(panic::AssertUnwindSafe(|| inner.poll(cx)))) {
            Ok(std::task::Poll::Pending) => std::task::Poll::Pending,
            Ok(std::task::Poll::Ready(output)) => std::task::Poll::Ready(Ok(output)),
            Err(payload) => {
                this.inner.set(None);
                std::task::Poll::Ready(Err(payload))
            }
        }
    }
}

/// Takes the id of the event the hook made for this thread's latest panic, so an integration
/// that caught the panic knows it was reported already.
pub fn take_last_panic_event() -> Option<EventId> {
    LAST_PANIC.try_with(Cell::take).ok().flatten()
}

/// The hook itself, left out without the `panic` feature.
#[cfg(feature = "panic")]
mod hook {
    use std::cell::Cell;
    use std::panic::{self, PanicHookInfo};
    use std::sync::Once;

    use super::{payload_text, CAUGHT_BY_CALLER, IN_HOOK, LAST_PANIC};
    use crate::handoff::Handoff;
    use crate::stacktrace::{Anchor, RawStack};
    use errorwatch_protocol::{Event, Exception, Level};

    static INSTALL: Once = Once::new();

    /// Installs the panic hook (once per process; [`init`](crate::init) does it for you). Only
    /// with the `panic` feature (a default one). The
    /// previous hook still runs after ours, so the usual message still reaches stderr.
    ///
    /// The hook reports to the client current on the panicking thread, then waits up to the
    /// client's `panic_flush_timeout` for delivery, because the process may be about to end.
    /// It does not wait when the panic happens inside [`catching_panics`](super::catching_panics), whose caller goes on.
    pub fn install_hook() {
        INSTALL.call_once(|| {
            let previous = panic::take_hook();
            panic::set_hook(Box::new(move |info| {
                report(info);
                previous(info);
            }));
        });
    }

    fn report(info: &PanicHookInfo<'_>) {
        if crate::hub::is_suppressed() || IN_HOOK.try_with(Cell::get).unwrap_or(true) {
            return;
        }
        let _ = IN_HOOK.try_with(|flag| flag.set(true));
        let reported = panic::catch_unwind(panic::AssertUnwindSafe(|| {
            let client = crate::hub::current_client()?;
            let message = payload_text(info.payload());
            let mut event = Event {
                level: Level::Fatal,
                exception: Some(Exception::new("panic", message)),
                ..Event::default()
            };
            if let Some(location) = info.location() {
                event.file = Some(location.file().to_owned());
                event.line = Some(location.line());
            }
            event.tags.insert("mechanism".into(), "panic".into());
            if let Some(name) = std::thread::current().name() {
                event.extra.insert("thread".into(), name.into());
            }
            // Uncaught, the panic may end the process once the flush returns: the event must be
            // sent by then, so symbolising it (a second or more for a large debug binary) gets
            // at most 60% of the flush, the rest being for delivery.
            let flushing = !CAUGHT_BY_CALLER.try_with(Cell::get).unwrap_or(false);
            let flush_timeout = client.inner_arc().panic_flush_timeout;
            let mut stack = RawStack::capture_panic(info.location().map(Anchor::from));
            if flushing {
                stack = stack.symbolised_by(std::time::Instant::now() + flush_timeout.mul_f64(0.6));
            }
            let id = client.capture(|pool| {
                Handoff::event(pool, event, Some(stack), crate::hub::current_scope())
            })?;
            if flushing {
                client.flush(flush_timeout);
            }
            Some(id)
        }));
        let _ = LAST_PANIC.try_with(|last| last.set(reported.ok().flatten()));
        let _ = IN_HOOK.try_with(|flag| flag.set(false));
    }
}
