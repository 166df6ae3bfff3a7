//! Symbols for walked instruction pointers: resolved once per address, in bounded memory.
//!
//! On Linux the executable's own DWARF is read one unit at a time ([`super::dwarf`]), and
//! shared libraries are named by the dynamic loader. Elsewhere, or for an executable whose
//! debug info that reader does not handle (compressed, or in a separate file), the `backtrace`
//! crate resolves. Either way, each address is resolved once: a bounded cache keeps the
//! answers, so a stack seen again costs lookups.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

/// One symbol of a resolved frame (inlined functions give several per address).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Symbol {
    pub(crate) name: Option<String>,
    pub(crate) filename: Option<String>,
    pub(crate) lineno: Option<u32>,
    pub(crate) colno: Option<u32>,
}

/// How many addresses the cache keeps. A few hundred KiB; far more than the distinct frames
/// of a service's usual failures. Full, it starts over rather than tracking recency.
const CACHED_ADDRESSES: usize = 4096;

/// The process's resolver, loaded on first use and dropped by [`release`]. Only symbolisation
/// takes this lock (on the worker's blocking thread): captures never do.
static RESOLVER: Mutex<Option<Resolver>> = Mutex::new(None);

/// The symbols of each instruction pointer (return addresses, as walked), innermost first.
pub(crate) fn resolve(ips: &[usize]) -> Vec<Arc<[Symbol]>> {
    let mut state = RESOLVER.lock().unwrap_or_else(|poisoned| {
        // A panic while resolving may have left the cache half-written: start afresh.
        let mut state = poisoned.into_inner();
        *state = None;
        state
    });
    state.get_or_insert_with(Resolver::open).resolve(ips)
}

/// The symbols of each instruction pointer, if all were resolved before and the resolver is
/// not busy: never waits, and costs lookups only.
pub(crate) fn resolve_cached(ips: &[usize]) -> Option<Vec<Arc<[Symbol]>>> {
    let state = RESOLVER.try_lock().ok()?;
    let resolver = state.as_ref()?;
    ips.iter()
        .map(|ip| resolver.cache.get(ip).cloned())
        .collect()
}

/// Why the executable's own debug info could not be read here, when it could not: the
/// `backtrace` crate resolves instead, with an index of the whole binary's debug info.
pub(crate) fn fallback_reason() -> Option<&'static str> {
    match RESOLVER
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .as_ref()
    {
        Some(Resolver {
            backend: Backend::Backtrace(why),
            ..
        }) => *why,
        _ => None,
    }
}

/// Gives back everything the resolver holds: it is loaded again on demand.
pub(crate) fn release() {
    let released = RESOLVER
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    if let Some(Resolver {
        backend: Backend::Backtrace(_),
        ..
    }) = released
    {
        backtrace::clear_symbol_cache();
    }
}

struct Resolver {
    backend: Backend,
    cache: HashMap<usize, Arc<[Symbol]>>,
}

enum Backend {
    #[cfg(target_os = "linux")]
    Dwarf(super::dwarf::Image),
    /// The `backtrace` crate, and why (when this SDK's own reader was tried).
    Backtrace(Option<&'static str>),
}

impl Resolver {
    fn open() -> Resolver {
        #[cfg(target_os = "linux")]
        let backend = match super::dwarf::Image::open() {
            Ok(image) => Backend::Dwarf(image),
            Err(unsupported) => Backend::Backtrace(Some(unsupported.0)),
        };
        #[cfg(not(target_os = "linux"))]
        let backend = Backend::Backtrace(None);
        Resolver {
            backend,
            cache: HashMap::new(),
        }
    }

    fn resolve(&mut self, ips: &[usize]) -> Vec<Arc<[Symbol]>> {
        let mut missing: Vec<usize> = ips
            .iter()
            .copied()
            .filter(|ip| !self.cache.contains_key(ip))
            .collect();
        missing.sort_unstable();
        missing.dedup();
        if !missing.is_empty() {
            if self.cache.len() + missing.len() > CACHED_ADDRESSES {
                self.cache = HashMap::new();
            }
            // A return address is the instruction after the call: the call is the byte before.
            let addresses: Vec<usize> = missing.iter().map(|ip| ip.saturating_sub(1)).collect();
            let resolved = self.backend.resolve(&addresses);
            for (ip, symbols) in missing.into_iter().zip(resolved) {
                self.cache.insert(ip, symbols.into());
            }
        }
        ips.iter()
            .map(|ip| self.cache.get(ip).cloned().unwrap_or_else(|| Arc::new([])))
            .collect()
    }
}

impl Backend {
    fn resolve(&self, addresses: &[usize]) -> Vec<Vec<Symbol>> {
        match self {
            #[cfg(target_os = "linux")]
            Backend::Dwarf(image) => {
                let (inside, outside): (Vec<usize>, Vec<usize>) =
                    (0..addresses.len()).partition(|&at| image.contains(addresses[at]));
                let mut symbols = vec![Vec::new(); addresses.len()];
                let own: Vec<usize> = inside.iter().map(|&at| addresses[at]).collect();
                for (at, resolved) in inside.into_iter().zip(image.resolve(&own)) {
                    symbols[at] = resolved;
                }
                for at in outside {
                    if let Some(name) = super::dwarf::shared_library_name(addresses[at]) {
                        symbols[at].push(Symbol {
                            name: Some(name),
                            ..Symbol::default()
                        });
                    }
                }
                symbols
            }
            Backend::Backtrace(_) => addresses.iter().map(|&a| by_backtrace(a)).collect(),
        }
    }
}

/// What the `backtrace` crate (addr2line) says of an address.
pub(super) fn by_backtrace(address: usize) -> Vec<Symbol> {
    let mut symbols = Vec::new();
    backtrace::resolve(address as *mut std::ffi::c_void, |symbol| {
        symbols.push(Symbol {
            name: symbol.name().map(|name| format!("{name:#}")),
            filename: symbol.filename().map(|path| path.display().to_string()),
            lineno: symbol.lineno(),
            colno: symbol.colno(),
        });
    });
    symbols
}
