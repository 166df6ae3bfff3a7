//! Fixed-window request limits per client address, answered with 429 and `Retry-After`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(60);
/// Addresses remembered at most; the table is cleared of old windows when it fills.
const MAX_CLIENTS: usize = 100_000;

/// What the limiter says about one request.
pub(crate) struct Verdict {
    /// Whether it may go on.
    pub allowed: bool,
    /// The limit per window.
    pub limit: u32,
    /// Requests left in this window.
    pub remaining: u32,
    /// Seconds until the window resets.
    pub reset_secs: u64,
}

/// The limiter.
pub(crate) struct RateLimiter {
    limit: u32,
    windows: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl RateLimiter {
    /// `limit` requests per minute per address; 0 means no limit.
    pub(crate) fn new(limit: u32) -> RateLimiter {
        RateLimiter {
            limit,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one request from `client`.
    pub(crate) fn check(&self, client: IpAddr, now: Instant) -> Verdict {
        if self.limit == 0 {
            return Verdict {
                allowed: true,
                limit: 0,
                remaining: 0,
                reset_secs: 0,
            };
        }
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        if windows.len() >= MAX_CLIENTS && !windows.contains_key(&client) {
            windows.retain(|_, (start, _)| now.duration_since(*start) < WINDOW);
        }
        let entry = windows.entry(client).or_insert((now, 0));
        if now.duration_since(entry.0) >= WINDOW {
            *entry = (now, 0);
        }
        entry.1 = entry.1.saturating_add(1);
        let reset = WINDOW.saturating_sub(now.duration_since(entry.0));
        Verdict {
            allowed: entry.1 <= self.limit,
            limit: self.limit,
            remaining: self.limit.saturating_sub(entry.1),
            reset_secs: reset.as_secs().max(1),
        }
    }
}
