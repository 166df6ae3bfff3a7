//! Daily quotas, exact under concurrency and across restarts.
//!
//! Each project's use of the current UTC day is counted in memory, loaded from the store the
//! first time the day is seen (so a restart resumes the day's count). An event takes its unit
//! at admission, as a [`Reservation`]; the writer confirms it once the event is committed, and
//! a reservation dropped unconfirmed (a failed write, a duplicate) gives its unit back. So
//! concurrent requests can never together pass the quota.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::store::{Store, StoreError};

const DAY_MS: i64 = 86_400_000;

/// Every project's use of the day.
#[derive(Debug, Default)]
pub(crate) struct Quotas {
    /// Project id → (UTC day number, events stored or reserved that day).
    used: Mutex<HashMap<i64, (i64, i64)>>,
}

/// Why no unit was reserved.
#[derive(Debug)]
pub(crate) enum QuotaError {
    /// The day's quota is used.
    Exceeded {
        /// Events stored today.
        used: i64,
    },
    /// The day's count could not be loaded.
    Store(StoreError),
}

impl Quotas {
    /// Reserves one event of `project_id`'s day (of `now`, ms) against `quota` (none: no
    /// limit, but the event is still counted, so a quota set later counts from the day's
    /// start).
    pub(crate) async fn reserve(
        self: &Arc<Self>,
        store: &Store,
        project_id: i64,
        now: i64,
        quota: Option<i64>,
    ) -> Result<Reservation, QuotaError> {
        let day = now.div_euclid(DAY_MS);
        if !self.knows(project_id, day) {
            let stored = store
                .events_received_since(project_id, day * DAY_MS)
                .await
                .map_err(QuotaError::Store)?;
            let mut used = self.lock();
            // Another request may have loaded it meanwhile; its count includes reservations.
            if used.get(&project_id).is_none_or(|&(known, _)| known < day) {
                used.insert(project_id, (day, stored));
            }
        }
        let mut used = self.lock();
        // A request stamped just before midnight and admitted after the new day was loaded
        // counts against the new day, as the entry now holds.
        let entry = used.entry(project_id).or_insert((day, 0));
        if let Some(quota) = quota {
            if entry.1 >= quota {
                return Err(QuotaError::Exceeded { used: entry.1 });
            }
        }
        entry.1 += 1;
        Ok(Reservation {
            quotas: Some(self.clone()),
            project_id,
            day: entry.0,
        })
    }

    fn knows(&self, project_id: i64, day: i64) -> bool {
        self.lock()
            .get(&project_id)
            .is_some_and(|&(known, _)| known >= day)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i64, (i64, i64)>> {
        self.used.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn release(&self, project_id: i64, day: i64) {
        if let Some(entry) = self.lock().get_mut(&project_id) {
            if entry.0 == day {
                entry.1 -= 1;
            }
        }
    }
}

/// One event's unit of its project's day: given back when dropped, unless confirmed.
#[derive(Debug)]
pub(crate) struct Reservation {
    quotas: Option<Arc<Quotas>>,
    project_id: i64,
    day: i64,
}

impl Reservation {
    /// The event was stored: the unit stays used.
    pub(crate) fn confirm(mut self) {
        self.quotas = None;
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some(quotas) = self.quotas.take() {
            quotas.release(self.project_id, self.day);
        }
    }
}
