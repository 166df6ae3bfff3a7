//! The clock of the server's time windows (duplicates, rate limits): the system's, or one a
//! test moves by hand so that a 10-second window passes in no time, exactly.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A monotonic clock.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    manual: Option<Arc<Mutex<Instant>>>,
}

impl Clock {
    /// The system's monotonic clock.
    pub fn system() -> Clock {
        Clock { manual: None }
    }

    /// A clock that stands still until [`Clock::advance`] moves it.
    pub fn manual() -> Clock {
        Clock {
            manual: Some(Arc::new(Mutex::new(Instant::now()))),
        }
    }

    /// The time now.
    pub fn now(&self) -> Instant {
        match &self.manual {
            None => Instant::now(),
            Some(now) => *now.lock().unwrap_or_else(|e| e.into_inner()),
        }
    }

    /// Moves a manual clock forward (a no-op on the system clock).
    pub fn advance(&self, by: Duration) {
        if let Some(now) = &self.manual {
            let mut now = now.lock().unwrap_or_else(|e| e.into_inner());
            *now += by;
        }
    }
}
