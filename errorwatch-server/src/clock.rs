//! The clock of the server's time windows (duplicates, rate limits): the system's wall clock,
//! or one a test moves by hand so that a 10-second window passes in no time, exactly.
//!
//! Windows are wall-clock milliseconds, not a process's monotonic time, because several
//! servers on one database share them.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Milliseconds since the Unix epoch, the system's or a test's.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    manual: Option<Arc<AtomicI64>>,
}

impl Clock {
    /// The system's clock.
    pub fn system() -> Clock {
        Clock { manual: None }
    }

    /// A clock that stands still until [`Clock::advance`] moves it.
    pub fn manual() -> Clock {
        Clock {
            manual: Some(Arc::new(AtomicI64::new(system_ms()))),
        }
    }

    /// Milliseconds since the epoch, now.
    pub fn now_ms(&self) -> i64 {
        match &self.manual {
            None => system_ms(),
            Some(now) => now.load(Ordering::Acquire),
        }
    }

    /// Moves a manual clock forward (a no-op on the system clock).
    pub fn advance(&self, by: Duration) {
        if let Some(now) = &self.manual {
            now.fetch_add(
                i64::try_from(by.as_millis()).unwrap_or(i64::MAX),
                Ordering::AcqRel,
            );
        }
    }
}

fn system_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
