//! The 10-second duplicate window: a repeat of the same event is acknowledged, not stored.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(errorwatch_protocol::limits::DEDUP_WINDOW_SECS);
/// Keys remembered at most; expired ones are swept when the table fills.
const MAX_KEYS: usize = 100_000;

/// Remembers recent event keys.
#[derive(Default)]
pub(crate) struct Dedupe {
    seen: Mutex<HashMap<String, Instant>>,
}

impl Dedupe {
    /// Whether `key` was first seen less than 10 s ago; starts a new window otherwise.
    pub(crate) fn is_repeat(&self, key: String, now: Instant) -> bool {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() >= MAX_KEYS {
            seen.retain(|_, at| now.duration_since(*at) < WINDOW);
            if seen.len() >= MAX_KEYS {
                seen.clear();
            }
        }
        // The window runs from the first occurrence: an event repeating every 5 s is stored
        // every 10 s, not swallowed forever.
        match seen.get(&key) {
            Some(first) if now.duration_since(*first) < WINDOW => true,
            _ => {
                seen.insert(key, now);
                false
            }
        }
    }
}
