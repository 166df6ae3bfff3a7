//! Fixed-window request limits per client address, answered with 429 and `Retry-After`.
//!
//! Windows are aligned minutes of the wall clock. On a store several servers share
//! (PostgreSQL), the limit is one budget for all of them: a server takes the right to admit a
//! client's requests in leases (a 64th of the limit at a time) from a counter in the store,
//! which never grants more than the limit in a window. So the servers together admit at most
//! the limit, a client's flood costs the store one trip per lease, not per request, and a
//! client refused once is refused from memory until the window ends. At most a lease per
//! server is left unused when a window ends. If the store cannot be reached, each server
//! falls back to counting the limit alone.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use crate::store::Store;

const WINDOW_MS: i64 = 60_000;
/// Addresses remembered at most; the table is cleared of old windows when it fills.
const MAX_CLIENTS: usize = 100_000;
/// A lease is this fraction of the limit.
const LEASES_PER_WINDOW: u32 = 64;

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

/// One client's window, as this server knows it.
#[derive(Clone, Copy)]
struct Window {
    start: i64,
    /// Requests this server counted.
    counted: u32,
    /// Requests this server may still admit without asking the store.
    leased: u32,
    /// The store's count for the window at the last lease (every server's admissions).
    shared_used: u32,
    /// The store granted nothing: the window is used up everywhere.
    exhausted: bool,
}

/// The limiter.
pub(crate) struct RateLimiter {
    limit: u32,
    /// The store whose counter every server shares; `None` when this server is the only one.
    shared: Option<Store>,
    windows: Mutex<HashMap<IpAddr, Window>>,
}

impl RateLimiter {
    /// `limit` requests per minute per address; 0 means no limit. With `shared`, the limit
    /// holds for every server on that store together.
    pub(crate) fn new(limit: u32, shared: Option<Store>) -> RateLimiter {
        RateLimiter {
            limit,
            shared,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one request from `client` at `now` (ms).
    pub(crate) async fn check(&self, client: IpAddr, now: i64) -> Verdict {
        if self.limit == 0 {
            return Verdict {
                allowed: true,
                limit: 0,
                remaining: 0,
                reset_secs: 0,
            };
        }
        let start = now - now.rem_euclid(WINDOW_MS);
        let reset_secs = ((start + WINDOW_MS - now + 999) / 1000).max(1) as u64;
        let verdict = |allowed: bool, remaining: u32| Verdict {
            allowed,
            limit: self.limit,
            remaining,
            reset_secs,
        };
        let window = self.count(client, start);
        let Some(store) = &self.shared else {
            return verdict(
                window.counted <= self.limit,
                self.limit.saturating_sub(window.counted),
            );
        };
        if window.exhausted {
            return verdict(false, 0);
        }
        if window.leased > 0 {
            return verdict(true, self.remaining(&window));
        }
        let want = (self.limit / LEASES_PER_WINDOW).max(1);
        let lease = store
            .take_rate_lease(&client.to_string(), start, want.into(), self.limit.into())
            .await;
        let Ok((granted, used)) = lease else {
            // Without the store, this server alone keeps the limit.
            return verdict(
                window.counted <= self.limit,
                self.limit.saturating_sub(window.counted),
            );
        };
        let mut windows = self.lock();
        let Some(window) = windows.get_mut(&client).filter(|w| w.start == start) else {
            return verdict(granted > 0, 0);
        };
        window.shared_used = u32::try_from(used).unwrap_or(u32::MAX);
        window.leased += u32::try_from(granted).unwrap_or(0);
        if window.leased == 0 {
            window.exhausted = true;
            return verdict(false, 0);
        }
        window.leased -= 1;
        let window = *window;
        verdict(true, self.remaining(&window))
    }

    /// Counts the request in this server's window of `client`, taking a leased unit if there
    /// is one; returns the window as it was before the unit was taken.
    fn count(&self, client: IpAddr, start: i64) -> Window {
        let mut windows = self.lock();
        if windows.len() >= MAX_CLIENTS && !windows.contains_key(&client) {
            windows.retain(|_, window| window.start >= start);
        }
        let fresh = Window {
            start,
            counted: 0,
            leased: 0,
            shared_used: 0,
            exhausted: false,
        };
        let window = windows.entry(client).or_insert(fresh);
        if window.start != start {
            *window = fresh;
        }
        window.counted = window.counted.saturating_add(1);
        let before = *window;
        if window.leased > 0 {
            window.leased -= 1;
        }
        before
    }

    fn remaining(&self, window: &Window) -> u32 {
        self.limit.saturating_sub(window.shared_used) + window.leased.saturating_sub(1)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Window>> {
        self.windows.lock().unwrap_or_else(|e| e.into_inner())
    }
}
