//! Stack traces: walked cheaply on the caller's thread, symbolised later on the worker.
//!
//! Walking the stack costs a few microseconds; resolving symbols and line tables costs a
//! hundred times that, so [`RawStack::capture`] only records instruction pointers and
//! [`RawStack::resolve`] does the rest where nobody waits for it.

use errorwatch_protocol::{Event, Frame};

#[cfg(target_os = "linux")]
mod dwarf;
pub(crate) mod symbols;

use symbols::Symbol;

/// Crates whose frames are never the application's.
const NOT_IN_APP_CRATES: &[&str] = &[
    "std",
    "core",
    "alloc",
    "backtrace",
    "test",
    "tokio",
    "tokio_util",
    "futures",
    "futures_core",
    "futures_util",
    "futures_executor",
    "tracing",
    "tracing_core",
    "tracing_subscriber",
    "hyper",
    "hyper_util",
    "h2",
    "http",
    "http_body",
    "tower",
    "tower_http",
    "axum",
    "axum_core",
    "actix_web",
    "actix_http",
    "actix_rt",
    "actix_server",
    "actix_service",
    "actix_utils",
    "reqwest",
    "rayon",
    "rayon_core",
    "anyhow",
    "eyre",
    "errorwatch_sdk",
    "errorwatch_tracing",
    "errorwatch_axum",
    "errorwatch_actix",
];

/// Frames of the SDK's capture entry points. A stack starts below the deepest of them found
/// near the top; std glue between them (closure shims in debug builds) goes with them.
///
/// Only entry points, which are always *above* the code that called them: never the scope
/// helpers (`with_scope`, `Client::run`, the test helpers), which run user code *below* them.
const CAPTURE_MACHINERY: &[&str] = &[
    "backtrace::",
    "errorwatch_sdk::stacktrace::walk",
    "errorwatch_sdk::stacktrace::RawStack::capture",
    "errorwatch_sdk::client::Client::capture",
    "errorwatch_sdk::handoff::",
    "errorwatch_sdk::capture_",
    "errorwatch_sdk::integration::report",
    "errorwatch_sdk::integration::install_hook::",
    "errorwatch_tracing::",
];

/// How deep below the top the capture entry points can be.
const CAPTURE_DEPTH: usize = 24;

/// How deep below the top the user's capturing (or panicking) frame can be: the capture
/// machinery, std's panic machinery and the frames inlined into them come first.
const ANCHOR_DEPTH: usize = 64;

/// The crates of this SDK's family: their frames are never the application's, whatever their
/// symbol names say (inlined frames of release builds carry bare names like `capture_error<E>`).
const SDK_FAMILY: &[&str] = &[
    "errorwatch-sdk",
    "errorwatch-protocol",
    "errorwatch-tracing",
    "errorwatch-axum",
    "errorwatch-actix",
];

/// Where a capture was called from, or where a panic happened: the user's line, as rustc
/// names the file (relative to the workspace root for the workspace's own crates).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Anchor {
    /// The file.
    pub file: std::borrow::Cow<'static, str>,
    /// The line.
    pub line: u32,
}

impl Anchor {
    /// A location compiled into the program, such as the caller of a `#[track_caller]`
    /// function: borrowed (a panic's, which may not be static, is copied through `From`).
    pub(crate) fn at(location: &'static std::panic::Location<'static>) -> Anchor {
        Anchor {
            file: std::borrow::Cow::Borrowed(location.file()),
            line: location.line(),
        }
    }

    /// Makes this place the event's culprit line.
    pub(crate) fn place(&self, event: &mut Event) {
        event.file = Some(self.file.clone().into_owned());
        event.line = Some(self.line);
    }

    /// Whether a resolved frame is this place: the same line, in a file whose path ends with
    /// the anchor's (debug info names files by their absolute path).
    fn is(&self, filename: Option<&str>, lineno: Option<u32>) -> bool {
        lineno == Some(self.line)
            && filename.is_some_and(|name| {
                name == self.file
                    || name
                        .strip_suffix(&*self.file)
                        .is_some_and(|prefix| prefix.ends_with('/'))
            })
    }
}

impl From<&std::panic::Location<'_>> for Anchor {
    fn from(location: &std::panic::Location<'_>) -> Anchor {
        Anchor {
            file: std::borrow::Cow::Owned(location.file().to_owned()),
            line: location.line(),
        }
    }
}

/// Whether `file` is in one of the SDK family's crates (`.../errorwatch-sdk/src/...`, or
/// `.../errorwatch-sdk-0.1.0/src/...` from a registry).
fn is_sdk_file(file: &str) -> bool {
    let mut components = file.split(['/', '\\']).peekable();
    while let Some(component) = components.next() {
        let family = SDK_FAMILY.iter().any(|name| {
            component.strip_prefix(name).is_some_and(|rest| {
                rest.is_empty()
                    || rest
                        .strip_prefix('-')
                        .is_some_and(|v| v.starts_with(|c: char| c.is_ascii_digit()))
            })
        });
        if family && components.peek() == Some(&"src") {
            return true;
        }
    }
    false
}

/// Whether `file` belongs to std or to a dependency fetched by cargo.
fn is_library_file(file: &str) -> bool {
    file.starts_with("/rustc/")
        || file.contains("/.cargo/registry/")
        || file.contains("/.cargo/git/")
        || file.contains("/rustlib/src/")
        || is_sdk_file(file)
}

/// Decides which frames belong to the application.
#[derive(Clone, Debug, Default)]
pub(crate) struct InAppRules {
    /// Path prefixes always in-app (they win over everything else).
    pub include: Vec<String>,
    /// Path prefixes never in-app, beside the built-in list.
    pub exclude: Vec<String>,
}

impl InAppRules {
    /// Whether a frame of `function` defined in `filename` is the application's.
    pub(crate) fn is_in_app(&self, function: &str, filename: Option<&str>) -> bool {
        let path = type_path(function);
        if self
            .include
            .iter()
            .any(|prefix| path.starts_with(prefix.as_str()))
        {
            return true;
        }
        if self
            .exclude
            .iter()
            .any(|prefix| path.starts_with(prefix.as_str()))
        {
            return false;
        }
        let crate_name = path.split("::").next().unwrap_or(path);
        if NOT_IN_APP_CRATES.contains(&crate_name) || crate_name.starts_with("__") {
            return false;
        }
        // Frames from the standard library, a registry or git dependency, or this SDK.
        if filename.is_some_and(is_library_file) {
            return false;
        }
        if path.contains("::") {
            return true;
        }
        // A bare name: a function inlined in a release build (its debug info names it without
        // its crate), the application's when its file is a source file of the application; or
        // a C symbol (`_start`, `__libc_start_main`), which has no such file.
        filename.is_some_and(|file| file.ends_with(".rs"))
    }
}

/// The path a function belongs to: `<T as Trait>::f` belongs to `T`'s crate.
fn type_path(function: &str) -> &str {
    let trimmed = function.trim_start_matches('<');
    trimmed.strip_prefix("impl ").unwrap_or(trimmed)
}

/// Frames through which a panic enters std: a panic's stack starts below the last of them.
const PANIC_ENTRY: &[&str] = &[
    "rust_begin_unwind",
    "__rustc::rust_begin_unwind",
    "std::panicking::begin_panic",
    "std::panicking::panic_handler",
    "std::panicking::begin_panic_handler",
];

/// Frames between the panic entry and the code that panicked.
const PANIC_TRAMPOLINES: &[&str] = &[
    "core::panicking::",
    "core::option::unwrap_failed",
    "core::option::expect_failed",
    "core::result::unwrap_failed",
    "core::option::Option<T>::unwrap",
    "core::option::Option<T>::expect",
    "core::result::Result<T,E>::unwrap",
    "core::result::Result<T,E>::expect",
    "core::result::Result<T, E>::unwrap",
    "core::result::Result<T, E>::expect",
    "core::cell::panic_already",
    "std::panicking::begin_panic",
    "std::sys::backtrace::",
];

/// How many frames are walked at most (the server keeps 200; the capture machinery and
/// inlined functions take a few more).
const MAX_WALKED: usize = 256;

/// A stack walked but not yet symbolised: only the instruction pointers, 8 bytes a frame,
/// which is what a queued event can afford to carry.
#[derive(Debug)]
pub(crate) struct RawStack {
    ips: Vec<usize>,
    from_panic: bool,
    anchor: Option<Anchor>,
    /// When the event must go, symbolised or not (a panic about to end the process).
    deadline: Option<std::time::Instant>,
}

impl RawStack {
    /// Walks the current thread's stack (instruction pointers only) for a capture made at
    /// `anchor`: the resolved stack starts at the frame of that line.
    pub(crate) fn capture(anchor: Anchor) -> Self {
        RawStack {
            ips: walk(),
            from_panic: false,
            anchor: Some(anchor),
            deadline: None,
        }
    }

    /// A stack walked by [`walk_into`] for a capture made at `anchor`.
    pub(crate) fn walked(ips: Vec<usize>, anchor: Anchor) -> Self {
        RawStack {
            ips,
            from_panic: false,
            anchor: Some(anchor),
            deadline: None,
        }
    }

    /// Walks the stack from inside the panic hook for a panic at `anchor`; the frames of the
    /// hook and of std's panic machinery are cut off when it is resolved.
    #[cfg(feature = "panic")]
    pub(crate) fn capture_panic(anchor: Option<Anchor>) -> Self {
        RawStack {
            ips: walk(),
            from_panic: true,
            anchor,
            deadline: None,
        }
    }

    /// Gives symbolisation until `deadline`: past it, the event is sent without its frames
    /// (its culprit line is known already), rather than lost with the process.
    #[cfg(feature = "panic")]
    pub(crate) fn symbolised_by(mut self, deadline: std::time::Instant) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// When the event must go, symbolised or not.
    pub(crate) fn deadline(&self) -> Option<std::time::Instant> {
        self.deadline
    }

    /// Symbolises the stack into frames, innermost first, without the capture machinery on
    /// top, and fills the event's `frames`, `stack` and (unless already set) `file`/`line`.
    pub(crate) fn resolve_into(self, event: &mut Event, rules: &InAppRules) {
        let resolved = symbols::resolve(&self.ips);
        self.fill(&resolved, event, rules);
    }

    /// The symbols of every address, when all were resolved before (a repeated stack) and the
    /// resolver is free: lookups only, so it may run anywhere. Give them to [`RawStack::fill`].
    pub(crate) fn cached_symbols(&self) -> Option<Vec<std::sync::Arc<[Symbol]>>> {
        symbols::resolve_cached(&self.ips)
    }

    /// Fills the event from the stack's symbols, as [`RawStack::resolve_into`] does.
    pub(crate) fn fill(
        &self,
        resolved: &[std::sync::Arc<[Symbol]>],
        event: &mut Event,
        rules: &InAppRules,
    ) {
        let symbols: Vec<Symbol> = resolved
            .iter()
            .flat_map(|resolved| resolved.iter().cloned())
            .map(|mut symbol| {
                symbol.name = symbol.name.map(strip_hash);
                symbol
            })
            .collect();
        let starts_with_any = |index: usize, prefixes: &[&str]| {
            symbols[index]
                .name
                .as_deref()
                .is_some_and(|name| prefixes.iter().any(|p| name.starts_with(p)))
        };
        // The user's frame, found by the line that captured or panicked: exact in release
        // builds too, where inlining renames and reorders frames.
        let anchored = self.anchor.as_ref().and_then(|anchor| {
            (0..symbols.len().min(ANCHOR_DEPTH))
                .find(|&i| anchor.is(symbols[i].filename.as_deref(), symbols[i].lineno))
        });
        // Debug info names files absolutely; rustc named the anchor's relative to the
        // workspace root. The difference makes every workspace path relative, as the anchor's.
        let root = anchored.zip(self.anchor.as_ref()).and_then(|(i, anchor)| {
            let absolute = symbols[i].filename.as_deref()?;
            let root = absolute.strip_suffix(&*anchor.file)?;
            (!root.is_empty()).then(|| root.to_owned())
        });
        let mut first = anchored.unwrap_or(0);
        if anchored.is_none() && self.from_panic {
            // The innermost entry: a panic raised while unwinding from another has both.
            if let Some(entry) = (0..symbols.len()).find(|&i| starts_with_any(i, PANIC_ENTRY)) {
                first = entry + 1;
                while first < symbols.len()
                    && (starts_with_any(first, PANIC_ENTRY)
                        || starts_with_any(first, PANIC_TRAMPOLINES))
                {
                    first += 1;
                }
            }
        }
        if anchored.is_none() && first == 0 {
            first = (0..symbols.len().min(CAPTURE_DEPTH))
                .rev()
                .find(|&i| starts_with_any(i, CAPTURE_MACHINERY))
                .map_or(0, |deepest| deepest + 1);
        }
        let frames: Vec<Frame> = symbols
            .into_iter()
            .enumerate()
            .skip(first)
            .take(errorwatch_protocol::limits::event::FRAMES)
            .map(|(index, symbol)| {
                let in_app = Some(index) == anchored
                    || symbol
                        .name
                        .as_deref()
                        .is_some_and(|f| rules.is_in_app(f, symbol.filename.as_deref()));
                let filename = match (symbol.filename, &root) {
                    (Some(file), Some(root)) => match file.strip_prefix(root.as_str()) {
                        Some(relative) => relative.to_owned(),
                        None => file,
                    },
                    (Some(file), None) => file,
                    (None, _) => "<unknown>".to_owned(),
                };
                Frame {
                    filename,
                    function: symbol.name,
                    lineno: symbol.lineno,
                    colno: symbol.colno,
                    in_app: Some(in_app),
                }
            })
            .collect();
        // An integration's own frame (a log macro's place) beats a walk that missed its line.
        if frames.is_empty() || (anchored.is_none() && !event.frames.is_empty()) {
            return;
        }
        if event.file.is_none() {
            let culprit = frames
                .iter()
                .find(|frame| frame.in_app == Some(true))
                .unwrap_or(&frames[0]);
            event.file = Some(culprit.filename.clone());
            event.line = culprit.lineno;
        }
        event.stack = Some(errorwatch_protocol::stack::render(&frames));
        event.frames = frames;
    }
}

/// The instruction pointers of the current stack, innermost first.
///
/// The walk never takes the `backtrace` crate's global lock, which the worker holds while it
/// symbolises (for up to a second on a large debug binary): a capture must not wait on it.
fn walk() -> Vec<usize> {
    let mut ips = Vec::new();
    walk_into(&mut ips);
    ips
}

/// Appends the instruction pointers of the current stack to `ips`, innermost first: no
/// allocation when `ips` has room for them (a pooled buffer, once warm).
pub(crate) fn walk_into(ips: &mut Vec<usize>) {
    // Walked into the stack, then copied: a buffer queued with the event holds only the
    // frames there are, not room for the deepest stack.
    let mut walked = [0usize; MAX_WALKED];
    let mut depth = 0;
    let mut visit = |frame: &backtrace::Frame| {
        walked[depth] = frame.ip() as usize;
        depth += 1;
        depth < MAX_WALKED
    };
    #[cfg(unix)]
    // SAFETY: the lock serialises the crate's platform back ends, and only Windows' dbghelp
    // needs it. On Unix the walk is libgcc's `_Unwind_Backtrace`, which is safe to run on
    // several threads at once and alongside symbolisation (it reads no symbol cache); the
    // callback only writes to a local array.
    unsafe {
        backtrace::trace_unsynchronized(&mut visit);
    }
    #[cfg(not(unix))]
    backtrace::trace(&mut visit);
    ips.extend_from_slice(&walked[..depth]);
}

/// Removes the `::h0123456789abcdef` hash that legacy mangling appends to symbols.
fn strip_hash(mut name: String) -> String {
    if let Some(pos) = name.rfind("::h") {
        let hash = &name[pos + 3..];
        if hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            name.truncate(pos);
        }
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_stripped() {
        assert_eq!(strip_hash("app::run::h0123456789abcdef".into()), "app::run");
        assert_eq!(strip_hash("app::hello".into()), "app::hello");
    }

    #[test]
    fn in_app_follows_crates_files_and_user_prefixes() {
        let rules = InAppRules::default();
        assert!(rules.is_in_app("my_service::handlers::create", Some("src/handlers.rs")));
        assert!(!rules.is_in_app("tokio::runtime::park", None));
        assert!(!rules.is_in_app(
            "<core::pin::Pin<P> as core::future::future::Future>::poll",
            None
        ));
        assert!(!rules.is_in_app(
            "serde_json::de::from_str",
            Some("/home/u/.cargo/registry/src/index/serde_json-1.0/src/de.rs")
        ));
        assert!(!rules.is_in_app("__libc_start_main", None));

        let custom = InAppRules {
            include: vec!["tokio::custom".into()],
            exclude: vec!["my_service::vendored".into()],
        };
        assert!(custom.is_in_app("tokio::custom::thing", None));
        assert!(!custom.is_in_app("my_service::vendored::parse", Some("src/vendored.rs")));
    }

    #[inline(never)]
    fn failing_function_of_the_application() -> RawStack {
        RawStack::capture(Anchor::at(std::panic::Location::caller()))
    }

    #[test]
    fn release_frames_with_bare_names_are_judged_by_their_file() {
        let rules = InAppRules::default();
        assert!(rules.is_in_app("handler", Some("/work/app/src/routes.rs")));
        assert!(!rules.is_in_app(
            "capture_error<E>",
            Some("/work/main/errorwatch-sdk/src/client.rs")
        ));
        assert!(!rules.is_in_app(
            "capture_error<E>",
            Some("/home/u/.cargo/registry/src/index/errorwatch-sdk-0.1.0/src/client.rs")
        ));
        assert!(!rules.is_in_app("poll<F>", Some("/rustc/abc/library/core/src/future.rs")));
        assert!(!rules.is_in_app("_start", None));
        assert!(rules.is_in_app(
            "my_errorwatch_sdk_fork::f",
            Some("/w/errorwatch-sdk-fork/src/a.rs")
        ));
    }

    #[test]
    fn frames_are_innermost_first_with_the_culprit_on_top() {
        let raw = failing_function_of_the_application();
        let mut event = Event::default();
        raw.resolve_into(&mut event, &InAppRules::default());
        assert!(!event.frames.is_empty());
        let first = event.frames[0].function.as_deref().unwrap_or("");
        assert!(
            first.ends_with("failing_function_of_the_application"),
            "the capture machinery is trimmed off the top: {first}"
        );
        assert!(event.stack.as_deref().unwrap_or("").starts_with("  at "));
        assert!(event
            .file
            .as_deref()
            .unwrap_or("")
            .ends_with("stacktrace/mod.rs"));
    }
}
