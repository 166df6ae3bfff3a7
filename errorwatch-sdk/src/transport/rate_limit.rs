//! The server's 429s: while backing off, events are dropped, not queued.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The longest `Retry-After` honoured, so a misbehaving server cannot silence us for days.
const MAX_BACKOFF: Duration = Duration::from_secs(3600);

pub(crate) struct RateLimit {
    until: Mutex<Option<Instant>>,
    default_backoff: Duration,
}

impl RateLimit {
    pub(crate) fn new(default_backoff: Duration) -> RateLimit {
        RateLimit {
            until: Mutex::new(None),
            default_backoff,
        }
    }

    /// Whether sending is paused at `now`.
    pub(crate) fn is_limited(&self, now: Instant) -> bool {
        let until = self.until.lock().unwrap_or_else(|e| e.into_inner());
        until.is_some_and(|until| now < until)
    }

    /// Records a 429 with its `Retry-After` header (seconds, as ErrorWatch sends it).
    /// Without a usable header the default backoff applies.
    pub(crate) fn on_too_many_requests(&self, retry_after: Option<&str>, now: Instant) -> Duration {
        let backoff = retry_after
            .and_then(|value| value.trim().parse::<f64>().ok())
            .filter(|secs| secs.is_finite() && *secs >= 0.0)
            .map(Duration::from_secs_f64)
            .unwrap_or(self.default_backoff)
            .min(MAX_BACKOFF);
        let mut until = self.until.lock().unwrap_or_else(|e| e.into_inner());
        let candidate = now + backoff;
        if until.is_none_or(|current| current < candidate) {
            *until = Some(candidate);
        }
        backoff
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_honoured_else_the_default_applies() {
        let limit = RateLimit::new(Duration::from_secs(60));
        let now = Instant::now();
        assert!(!limit.is_limited(now));
        assert_eq!(
            limit.on_too_many_requests(Some("2"), now),
            Duration::from_secs(2)
        );
        assert!(limit.is_limited(now + Duration::from_secs(1)));
        assert!(!limit.is_limited(now + Duration::from_secs(3)));
        assert_eq!(
            limit.on_too_many_requests(None, now),
            Duration::from_secs(60)
        );
        assert_eq!(
            limit.on_too_many_requests(Some("soon"), now),
            Duration::from_secs(60)
        );
        assert_eq!(
            limit.on_too_many_requests(Some("99999999"), now),
            MAX_BACKOFF
        );
    }
}
