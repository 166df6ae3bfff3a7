//! Daily quotas: decided by the store, inside each batch's transaction, so they are exact
//! across concurrent requests, restarts and every server on one database. What is remembered
//! here is only the store's last word: a project whose day is used up is answered 429 at
//! once, without a trip to the writer, until the day or its quota changes.

use std::collections::HashMap;
use std::sync::Mutex;

const DAY_MS: i64 = 86_400_000;

/// The project days the store said were used up.
#[derive(Debug, Default)]
pub(crate) struct UsedUp {
    /// Project id → (UTC day, the quota it was used up at, events stored that day).
    days: Mutex<HashMap<i64, (i64, i64, i64)>>,
}

impl UsedUp {
    /// The day's use when `project_id` is known to have used `quota` on the day of `now` (ms).
    pub(crate) fn used(&self, project_id: i64, now: i64, quota: Option<i64>) -> Option<i64> {
        let quota = quota?;
        let days = self.days.lock().unwrap_or_else(|e| e.into_inner());
        let &(day, at_quota, used) = days.get(&project_id)?;
        (day == now.div_euclid(DAY_MS) && at_quota == quota).then_some(used)
    }

    /// Remembers that the store refused an event of `project_id` received at `now` (ms).
    pub(crate) fn remember(&self, project_id: i64, now: i64, quota: i64, used: i64) {
        let mut days = self.days.lock().unwrap_or_else(|e| e.into_inner());
        days.insert(project_id, (now.div_euclid(DAY_MS), quota, used));
    }
}
