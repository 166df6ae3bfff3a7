//! How a batch of events is written: the rules every server on one database must share (the
//! duplicate window, the daily quota, grouping) decided inside the batch's own transaction, so
//! that two servers writing at the same moment still count and group as one.
//!
//! The backends give the primitives ([`BatchTx`]); the order and the arithmetic live here,
//! once. Rows are always taken in the same order (windows, quota rows, groups, users, hours,
//! values, each sorted by key), so two transactions can wait on each other but never deadlock.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use super::{NewEvent, StoreError};

/// The duplicate window: a repeat of an event within it is acknowledged, not stored.
pub(super) const WINDOW_MS: i64 = errorwatch_protocol::limits::DEDUP_WINDOW_SECS as i64 * 1000;

const DAY_MS: i64 = 86_400_000;

/// The width of a group's activity counts ([`BatchTx::add_hours`]).
pub(crate) const HOUR_MS: i64 = 3_600_000;

/// What one batch adds to a value a group was seen with (`release` or `env`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ValueSeen<'a> {
    pub fingerprint: &'a str,
    /// `release` or `env`.
    pub kind: &'static str,
    pub value: &'a str,
    pub count: i64,
    /// Latest `received_at`.
    pub last_seen: i64,
}

/// What became of one event of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Committed with its batch.
    Stored,
    /// A repeat within the duplicate window: acknowledged, not stored.
    Duplicate,
    /// Its project's daily quota is used: not stored.
    QuotaExceeded {
        /// The quota.
        quota: i64,
        /// Events stored that day.
        used: i64,
    },
}

/// One group's change from one batch: its events folded together, as one upsert.
#[derive(Debug)]
pub(super) struct GroupUpdate<'a> {
    /// The batch's first event of the group: title, level, rule, project, file and line of a
    /// new group are its.
    pub first: &'a NewEvent,
    /// The first exception type and value the batch has for the group (back-filled into a
    /// group that has none).
    pub error_type: Option<&'a str>,
    pub error_value: Option<&'a str>,
    /// The batch's last event's environment.
    pub env: &'a str,
    pub count: i64,
    /// Earliest `created_at` of the batch's events.
    pub first_seen: i64,
    /// Latest `received_at` of the batch's events.
    pub last_seen: i64,
}

/// What a backend's write transaction does for [`write`]. Every method runs inside the one
/// transaction of the batch, which the caller commits.
pub(super) trait BatchTx {
    /// Opens the duplicate window of each key (sorted, distinct) at its time, unless one is
    /// open: returns the keys whose window was opened now (the others are repeats).
    async fn open_windows(&mut self, keys: &[(&str, i64)]) -> Result<HashSet<String>, StoreError>;

    /// Forgets windows opened by events that were not stored after all.
    async fn close_windows(&mut self, keys: &[&str]) -> Result<(), StoreError>;

    /// Events stored by `project_id` on `day`, the row locked until commit. The first time a
    /// day is seen, it is counted from the stored events.
    async fn quota_used(&mut self, project_id: i64, day: i64) -> Result<i64, StoreError>;

    /// Adds `stored` to the day's use, if it was counted already: a day not yet read by
    /// [`BatchTx::quota_used`] is counted from its stored events when it first is.
    async fn add_usage(&mut self, project_id: i64, day: i64, stored: i64)
        -> Result<(), StoreError>;

    /// Creates or updates each group (sorted by fingerprint); a resolved group reopens as a
    /// regression.
    async fn upsert_groups(&mut self, groups: &[GroupUpdate<'_>]) -> Result<(), StoreError>;

    /// Records each (fingerprint, user) pair (sorted, distinct) and counts the new ones in
    /// their group's `users_affected`.
    async fn add_users(&mut self, pairs: &[(&str, &str)]) -> Result<(), StoreError>;

    /// Adds each (fingerprint, hour, events) to the group's count of that hour (sorted,
    /// distinct).
    async fn add_hours(&mut self, hours: &[(&str, i64, i64)]) -> Result<(), StoreError>;

    /// Adds each value a group was seen with to its counts (sorted, distinct).
    async fn add_values(&mut self, values: &[ValueSeen<'_>]) -> Result<(), StoreError>;

    /// Inserts the events.
    async fn insert_events(&mut self, events: &[&NewEvent]) -> Result<(), StoreError>;
}

/// Writes `events` through `tx` and says what became of each, in order. Nothing is committed
/// here: an error leaves the whole batch to be rolled back.
pub(super) async fn write<T: BatchTx>(
    tx: &mut T,
    events: &[NewEvent],
) -> Result<Vec<Outcome>, StoreError> {
    let mut outcomes = vec![Outcome::Stored; events.len()];

    // 1. The duplicate window. A key seen twice in one batch: the second is a repeat.
    let mut first_of_key: HashMap<&str, usize> = HashMap::with_capacity(events.len());
    for (i, event) in events.iter().enumerate() {
        if first_of_key.contains_key(event.dedupe_key.as_str()) {
            outcomes[i] = Outcome::Duplicate;
        } else {
            first_of_key.insert(&event.dedupe_key, i);
        }
    }
    let mut keys: Vec<(&str, i64)> = first_of_key
        .iter()
        .map(|(key, &i)| (*key, events[i].seen_at))
        .collect();
    keys.sort_unstable();
    let opened = tx.open_windows(&keys).await?;
    for (key, &i) in &first_of_key {
        if !opened.contains(*key) {
            outcomes[i] = Outcome::Duplicate;
        }
    }

    // 2. The daily quota, per project and UTC day, in batch order.
    let mut by_day: BTreeMap<(i64, i64), Vec<usize>> = BTreeMap::new();
    for (i, event) in events.iter().enumerate() {
        if outcomes[i] == Outcome::Stored {
            let day = event.received_at.div_euclid(DAY_MS);
            by_day.entry((event.project_id, day)).or_default().push(i);
        }
    }
    let mut refused_keys = Vec::new();
    for ((project_id, day), indices) in by_day {
        let wanted = indices.len() as i64;
        // The latest settings the batch carries.
        let quota = indices
            .last()
            .and_then(|&i| events[i].daily_quota)
            .map(|quota| quota.max(0));
        // Without a quota the day's use is not read (a round trip saved): `add_usage` keeps
        // a day already counted up to date, and a quota set later counts the rest.
        let (admitted, used) = match quota {
            Some(quota) => {
                let used = tx.quota_used(project_id, day).await?;
                ((quota - used).clamp(0, wanted), used)
            }
            None => (wanted, 0),
        };
        for &i in &indices[admitted as usize..] {
            outcomes[i] = Outcome::QuotaExceeded {
                quota: quota.unwrap_or_default(),
                used: used + admitted,
            };
            refused_keys.push(events[i].dedupe_key.as_str());
        }
        if admitted > 0 {
            tx.add_usage(project_id, day, admitted).await?;
        }
    }
    if !refused_keys.is_empty() {
        refused_keys.sort_unstable();
        tx.close_windows(&refused_keys).await?;
    }

    // 3. Groups, their users, the events.
    let stored: Vec<&NewEvent> = events
        .iter()
        .zip(&outcomes)
        .filter(|(_, outcome)| **outcome == Outcome::Stored)
        .map(|(event, _)| event)
        .collect();
    if stored.is_empty() {
        return Ok(outcomes);
    }
    let mut groups: BTreeMap<&str, GroupUpdate<'_>> = BTreeMap::new();
    for event in &stored {
        let group = groups
            .entry(event.fingerprint.as_str())
            .or_insert_with(|| GroupUpdate {
                first: event,
                error_type: None,
                error_value: None,
                env: &event.env,
                count: 0,
                first_seen: event.created_at,
                last_seen: event.received_at,
            });
        group.error_type = group.error_type.or(event.error_type.as_deref());
        group.error_value = group.error_value.or(event.error_value.as_deref());
        group.env = &event.env;
        group.count += 1;
        group.first_seen = group.first_seen.min(event.created_at);
        group.last_seen = group.last_seen.max(event.received_at);
    }
    let groups: Vec<GroupUpdate<'_>> = groups.into_values().collect();
    tx.upsert_groups(&groups).await?;
    let pairs: BTreeSet<(&str, &str)> = stored
        .iter()
        .filter_map(|event| Some((event.fingerprint.as_str(), event.user_id.as_deref()?)))
        .collect();
    if !pairs.is_empty() {
        tx.add_users(&pairs.into_iter().collect::<Vec<_>>()).await?;
    }
    let mut hours: BTreeMap<(&str, i64), i64> = BTreeMap::new();
    let mut values: BTreeMap<(&str, &'static str, &str), (i64, i64)> = BTreeMap::new();
    for event in &stored {
        let hour = event.received_at.div_euclid(HOUR_MS);
        *hours.entry((&event.fingerprint, hour)).or_default() += 1;
        let seen = [
            ("env", Some(event.env.as_str())),
            ("release", event.release.as_deref()),
        ];
        for (kind, value) in seen {
            if let Some(value) = value {
                let tally = values
                    .entry((&event.fingerprint, kind, value))
                    .or_insert((0, event.received_at));
                tally.0 += 1;
                tally.1 = tally.1.max(event.received_at);
            }
        }
    }
    let hours: Vec<(&str, i64, i64)> = hours.into_iter().map(|((f, h), n)| (f, h, n)).collect();
    tx.add_hours(&hours).await?;
    let values: Vec<ValueSeen<'_>> = values
        .into_iter()
        .map(
            |((fingerprint, kind, value), (count, last_seen))| ValueSeen {
                fingerprint,
                kind,
                value,
                count,
                last_seen,
            },
        )
        .collect();
    tx.add_values(&values).await?;
    tx.insert_events(&stored).await?;
    Ok(outcomes)
}
