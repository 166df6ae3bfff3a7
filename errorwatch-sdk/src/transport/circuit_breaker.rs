//! Stops sending for a while after consecutive failed deliveries.
//!
//! Closed: everything goes. After `threshold` events in a row fail (network errors or 5xx
//! once retries are spent), it opens for `open_for`: events are dropped without a request.
//! Then one probe goes through: its success closes the breaker, its failure reopens it.

use std::sync::Mutex;
use std::time::{Duration, Instant};

pub(crate) struct CircuitBreaker {
    state: Mutex<State>,
    threshold: u32,
    open_for: Duration,
}

/// What [`CircuitBreaker::grant`] allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Grant {
    /// Closed: send.
    Closed,
    /// Send: the one probe after a pause, whose answer decides.
    Probe,
    /// Open, or another event is probing: do not send.
    Denied,
}

#[derive(Default)]
struct State {
    consecutive_failures: u32,
    open_until: Option<Instant>,
    probing: bool,
}

impl CircuitBreaker {
    pub(crate) fn new(threshold: u32, open_for: Duration) -> CircuitBreaker {
        CircuitBreaker {
            state: Mutex::new(State::default()),
            threshold: threshold.max(1),
            open_for,
        }
    }

    /// Whether the one probe after a pause is out: the worker then waits for its answer
    /// before taking more events, which stay queued rather than fail.
    pub(crate) fn is_probing(&self) -> bool {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).probing
    }

    /// May an event be sent now, and is it the one probe after a pause?
    pub(crate) fn grant(&self, now: Instant) -> Grant {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match state.open_until {
            None => Grant::Closed,
            Some(until) if now < until => Grant::Denied,
            Some(_) if state.probing => Grant::Denied,
            Some(_) => {
                state.probing = true;
                Grant::Probe
            }
        }
    }

    /// The probe granted was not sent after all (`before_send` dropped its event): the next
    /// event may probe instead.
    pub(crate) fn release_probe(&self) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).probing = false;
    }

    /// The server answered (any answer but a 5xx counts: it is reachable).
    pub(crate) fn on_success(&self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        *state = State::default();
    }

    /// An event could not be delivered. Returns whether the breaker opened.
    pub(crate) fn on_failure(&self, now: Instant) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.consecutive_failures = state.consecutive_failures.saturating_add(1);
        if state.probing || state.consecutive_failures >= self.threshold {
            state.open_until = Some(now + self.open_for);
            state.probing = false;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl CircuitBreaker {
        fn allows(&self, now: Instant) -> bool {
            self.grant(now) != Grant::Denied
        }
    }

    #[test]
    fn a_probe_not_sent_is_given_back() {
        let breaker = CircuitBreaker::new(1, Duration::from_secs(30));
        let now = Instant::now();
        assert!(breaker.on_failure(now));
        let later = now + Duration::from_secs(31);
        assert_eq!(breaker.grant(later), Grant::Probe);
        assert_eq!(breaker.grant(later), Grant::Denied, "one probe at a time");
        breaker.release_probe();
        assert_eq!(
            breaker.grant(later),
            Grant::Probe,
            "the next event probes instead"
        );
    }

    #[test]
    fn opens_after_the_threshold_and_probes_once_after_the_pause() {
        let breaker = CircuitBreaker::new(3, Duration::from_secs(30));
        let now = Instant::now();
        assert!(!breaker.on_failure(now));
        assert!(!breaker.on_failure(now));
        assert!(breaker.allows(now));
        assert!(breaker.on_failure(now));
        assert!(!breaker.allows(now + Duration::from_secs(29)));

        let later = now + Duration::from_secs(31);
        assert!(breaker.allows(later), "one probe after the pause");
        assert!(!breaker.allows(later), "and only one");
        assert!(breaker.on_failure(later), "a failed probe reopens at once");
        assert!(!breaker.allows(later + Duration::from_secs(1)));

        let much_later = later + Duration::from_secs(31);
        assert!(breaker.allows(much_later));
        breaker.on_success();
        assert!(
            breaker.allows(much_later) && breaker.allows(much_later),
            "closed again"
        );
    }
}
