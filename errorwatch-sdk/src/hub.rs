//! Where the current client and scope come from.
//!
//! Context is per task, not per thread. There is one process-wide root scope; a request, a
//! task or a closure gets a scope of its own with [`with_scope`] or [`ScopeFutureExt`], and
//! that scope is installed on the thread only while the closure runs or the future is being
//! polled. Thousands of futures interleaved on the same threads each see only their own scope.
//!
//! The root scope, which every event sees, changes only deliberately: through
//! [`configure_global_scope`], or through [`configure_scope`] outside any scope from the code
//! that set the SDK up (the thread that called [`init`](crate::init), outside any spawned
//! task: `main`, typically). Anywhere else outside a scope (a plain `tokio::spawn`, a
//! `spawn_blocking`, a thread of one's own) [`configure_scope`] changes nothing: those places
//! run on behalf of whatever request spawned them, and writing the root from there would
//! put one request's context on every other request's events.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{LazyLock, Mutex, PoisonError};
use std::task::{Context, Poll};

use arc_swap::ArcSwapOption;

use crate::client::{Client, ClientInner};
use crate::scope::Scope;
use errorwatch_protocol::Breadcrumb;

static CLIENT: ArcSwapOption<ClientInner> = ArcSwapOption::const_empty();
/// The root scope. Held only to copy or replace it (two pointers), never while user code runs,
/// so a capture that reads it does not wait behind a writer.
static ROOT_SCOPE: LazyLock<Mutex<Scope>> = LazyLock::new(Mutex::default);
/// Serialises writers of the root scope while their closures run; readers never take it.
static ROOT_WRITE: Mutex<()> = Mutex::new(());
/// Whether a global client was installed: from then on, only its thread writes the root
/// scope through [`configure_scope`].
static ROOT_OWNED: AtomicBool = AtomicBool::new(false);

/// A scope bound to a closure or future, with an optional client that overrides the global
/// one (the [`testing`](crate::testing) helpers bind their in-memory client this way).
#[derive(Clone)]
pub(crate) struct Binding {
    pub(crate) scope: Scope,
    pub(crate) client: Option<Client>,
}

thread_local! {
    static ACTIVE: RefCell<Option<Binding>> = const { RefCell::new(None) };
    static SUPPRESSED: Cell<bool> = const { Cell::new(false) };
    /// Whether this thread installed the global client (and so owns the root scope).
    static ROOT_OWNER: Cell<bool> = const { Cell::new(false) };
}

/// Installs `client` as the global client.
pub(crate) fn bind_global_client(client: &Client) {
    CLIENT.store(Some(client.inner_arc()));
    let _ = ROOT_OWNER.try_with(|owner| owner.set(true));
    ROOT_OWNED.store(true, Ordering::Relaxed);
}

/// Removes `client` from the global slot if it is still the one there.
pub(crate) fn unbind_global_client(client: &Client) {
    let current = CLIENT.load();
    if let Some(current) = current.as_ref() {
        if std::ptr::eq(&**current, client.inner_ptr()) {
            CLIENT.compare_and_swap(current, None);
            ROOT_OWNED.store(false, Ordering::Relaxed);
        }
    }
}

/// The client events go to here: the bound one, else the global one.
pub(crate) fn current_client() -> Option<Client> {
    let bound = ACTIVE
        .try_with(|active| {
            active
                .try_borrow()
                .ok()
                .and_then(|active| active.as_ref().and_then(|b| b.client.clone()))
        })
        .ok()
        .flatten();
    bound.or_else(|| CLIENT.load_full().map(Client::from_inner))
}

/// A snapshot of the current scope: the bound one, else the root.
pub(crate) fn current_scope() -> Scope {
    let bound = ACTIVE
        .try_with(|active| {
            active
                .try_borrow()
                .ok()
                .and_then(|active| active.as_ref().map(|b| b.scope.clone()))
        })
        .ok()
        .flatten();
    bound.unwrap_or_else(root_scope)
}

/// A snapshot of the root scope.
fn root_scope() -> Scope {
    ROOT_SCOPE
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
}

pub(crate) fn current_binding() -> Binding {
    let bound = ACTIVE
        .try_with(|active| active.try_borrow().ok().and_then(|active| active.clone()))
        .ok()
        .flatten();
    bound.unwrap_or_else(|| Binding {
        scope: root_scope(),
        client: None,
    })
}

/// Changes the current scope: the request's or task's own scope inside [`with_scope`] or a
/// [`ScopeFutureExt`] future (the web integrations give every request one).
///
/// Outside any scope, it changes the process-wide root scope only from the code that set the
/// SDK up (the thread that called [`init`](crate::init), outside spawned tasks: `main`);
/// elsewhere (a plain `tokio::spawn`, `spawn_blocking`, a thread of one's own) the change is
/// dropped, so one request's context never reaches another's events. Use
/// [`configure_global_scope`] to change the root from anywhere on purpose, and
/// [`ScopeFutureExt::with_new_scope`] to give a spawned task its request's context.
///
/// ```
/// errorwatch_sdk::configure_scope(|scope| {
///     scope.set_tag("service", "billing");
/// });
/// ```
pub fn configure_scope<R>(f: impl FnOnce(&mut Scope) -> R) -> R {
    // Take the bound scope out while `f` runs, so `f` may capture or nest scopes freely and
    // the scope is changed in place rather than copied.
    let taken = ACTIVE
        .try_with(|active| {
            active.try_borrow_mut().ok().and_then(|mut active| {
                active
                    .as_mut()
                    .map(|binding| std::mem::replace(&mut binding.scope, Scope::empty()))
            })
        })
        .ok()
        .flatten();
    match taken {
        Some(mut scope) => {
            let result = f(&mut scope);
            let _ = ACTIVE.try_with(|active| {
                if let Ok(mut active) = active.try_borrow_mut() {
                    if let Some(binding) = active.as_mut() {
                        binding.scope = scope;
                    }
                }
            });
            result
        }
        None if may_write_root() => configure_global_scope(f),
        // Run on a copy that is then dropped: `f` still runs (its result is the caller's),
        // and no other request sees what it did.
        None => f(&mut root_scope()),
    }
}

/// Adds a breadcrumb where [`configure_scope`] would change the scope, in place: the change
/// every log line makes, so it neither copies the scope nor swaps the root.
pub(crate) fn add_breadcrumb(crumb: Breadcrumb) {
    let mut crumb = Some(crumb);
    let obsolete = ACTIVE
        .try_with(|active| {
            let mut active = active.try_borrow_mut().ok()?;
            let binding = active.as_mut()?;
            crumb
                .take()
                .map(|crumb| binding.scope.push_breadcrumb(crumb))
        })
        .ok()
        .flatten();
    drop(obsolete);
    let Some(crumb) = crumb.filter(|_| may_write_root()) else {
        return;
    };
    let _writer = ROOT_WRITE.lock().unwrap_or_else(PoisonError::into_inner);
    // What the push made obsolete is dropped after the lock is released.
    let _obsolete = ROOT_SCOPE
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push_breadcrumb(crumb);
}

/// Changes the process-wide root scope, which every event sees (forked into every request's
/// and task's scope made afterwards), from anywhere: for context that really is the whole
/// process's, such as the service's name or region.
///
/// ```
/// errorwatch_sdk::configure_global_scope(|scope| {
///     scope.set_tag("region", "eu-west-1");
/// });
/// ```
pub fn configure_global_scope<R>(f: impl FnOnce(&mut Scope) -> R) -> R {
    let _writer = ROOT_WRITE.lock().unwrap_or_else(PoisonError::into_inner);
    let mut scope = root_scope();
    let result = f(&mut scope);
    // The replaced scope is dropped after the lock is released.
    let _replaced = std::mem::replace(
        &mut *ROOT_SCOPE.lock().unwrap_or_else(PoisonError::into_inner),
        scope,
    );
    result
}

/// Whether [`configure_scope`] outside any scope may change the root here: before a global
/// client exists, or on the thread that installed it, outside any spawned task.
fn may_write_root() -> bool {
    if !ROOT_OWNED.load(Ordering::Relaxed) {
        return true;
    }
    ROOT_OWNER.try_with(Cell::get).unwrap_or(false) && tokio::task::try_id().is_none()
}

/// Runs `f` in a scope of its own, forked from the current one: what `f` adds to the scope
/// is seen by the events `f` captures and by nothing else.
///
/// ```
/// use errorwatch_sdk::{configure_scope, with_scope};
///
/// with_scope(|| {
///     configure_scope(|scope| scope.set_tag("job", "nightly-report"));
///     // events captured here carry job=nightly-report
/// });
/// // ... and events captured here do not.
/// ```
pub fn with_scope<R>(f: impl FnOnce() -> R) -> R {
    let _guard = enter(current_binding());
    f()
}

/// Installs `binding` on this thread until the guard drops (even by unwinding).
fn enter(binding: Binding) -> EnterGuard {
    let previous = ACTIVE
        .try_with(|active| {
            active
                .try_borrow_mut()
                .map(|mut active| active.replace(binding))
                .map_err(|_| ())
        })
        .unwrap_or(Err(()));
    EnterGuard {
        previous,
        restored: false,
    }
}

struct EnterGuard {
    /// `Err` when installing failed; then leaving must not touch the slot either.
    previous: Result<Option<Binding>, ()>,
    restored: bool,
}

impl EnterGuard {
    /// Restores the previous binding and returns the one that was installed.
    fn leave(mut self) -> Option<Binding> {
        self.restore()
    }

    fn restore(&mut self) -> Option<Binding> {
        if self.restored {
            return None;
        }
        self.restored = true;
        let previous = match std::mem::replace(&mut self.previous, Ok(None)) {
            Ok(previous) => previous,
            Err(()) => return None,
        };
        ACTIVE
            .try_with(|active| {
                active
                    .try_borrow_mut()
                    .ok()
                    .and_then(|mut active| std::mem::replace(&mut *active, previous))
            })
            .ok()
            .flatten()
    }
}

impl Drop for EnterGuard {
    fn drop(&mut self) {
        self.restore();
    }
}

pin_project_lite::pin_project! {
    /// A future that runs in its own scope; made by [`ScopeFutureExt`].
    pub struct Scoped<F> {
        #[pin]
        inner: F,
        binding: Option<Binding>,
    }
}

impl<F: Future> Future for Scoped<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let Some(binding) = this.binding.take() else {
            // Only after the inner future panicked mid-poll; poll it bare rather than fail.
            return this.inner.poll(cx);
        };
        let guard = enter(binding);
        let result = this.inner.poll(cx);
        *this.binding = guard.leave();
        result
    }
}

/// Runs futures in scopes of their own, so concurrent requests and tasks never share context.
///
/// ```
/// use errorwatch_sdk::{configure_scope, ScopeFutureExt};
///
/// # async fn handle(id: u64) {}
/// # async fn demo() {
/// let request_id = 7;
/// async move {
///     configure_scope(|scope| scope.set_tag("request_id", request_id.to_string()));
///     handle(request_id).await; // its events carry request_id=7, no other request's does
/// }
/// .with_new_scope()
/// .await;
///
/// // A spawned task carries a fork of the current context along:
/// tokio::spawn(async { /* ... */ }.with_new_scope());
/// # }
/// ```
pub trait ScopeFutureExt: Future + Sized {
    /// Runs the future in a fork of the current scope, taken now.
    fn with_new_scope(self) -> Scoped<Self> {
        Scoped {
            inner: self,
            binding: Some(current_binding()),
        }
    }

    /// Runs the future in `scope`.
    fn bind_scope(self, scope: Scope) -> Scoped<Self> {
        let client = current_binding().client;
        Scoped {
            inner: self,
            binding: Some(Binding { scope, client }),
        }
    }
}

impl<F: Future> ScopeFutureExt for F {}

/// Runs `f` (and the futures it polls on this thread) with `binding` installed.
pub(crate) fn run_bound<R>(binding: Binding, f: impl FnOnce() -> R) -> R {
    let _guard = enter(binding);
    f()
}

/// A future bound to `binding`.
pub(crate) fn bind_future<F: Future>(future: F, binding: Binding) -> Scoped<F> {
    Scoped {
        inner: future,
        binding: Some(binding),
    }
}

/// Whether the SDK ignores captures on this thread: it does on its own transport threads, so
/// that nothing the transport (or the HTTP stack under it) reports can come back as an event.
///
/// Integrations such as the tracing layer check it to skip work early.
///
/// ```
/// assert!(!errorwatch_sdk::integration::is_suppressed());
/// ```
pub fn is_suppressed() -> bool {
    SUPPRESSED.try_with(Cell::get).unwrap_or(true)
}

/// Marks the calling thread as one of the SDK's own: the SDK's integrations ignore it, and
/// whatever the HTTP stack logs on it (through `tracing`, or `log` bridged to `tracing`) goes
/// nowhere instead of into the application's subscriber.
pub(crate) fn suppress_current_thread() {
    let _ = SUPPRESSED.try_with(|flag| flag.set(true));
    // The guard would restore the application's subscriber when dropped; this thread is the
    // SDK's for its whole life, so it is kept (forgotten) instead.
    std::mem::forget(tracing_core::dispatcher::set_default(
        &tracing_core::Dispatch::none(),
    ));
}
