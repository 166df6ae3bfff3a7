//! The scope: the context (tags, extra, user, breadcrumbs, ...) that events pick up.
//!
//! A scope is copy-on-write: taking a snapshot for an event is one reference-count increment,
//! and changing a scope that a queued event still shares copies only what changes.
//! Breadcrumbs live in a persistent list, so adding one never copies the others.

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};

use errorwatch_protocol::limits::event as limits;
use errorwatch_protocol::{Breadcrumb, Event, Level, Map, Request, User, Value};

/// Tags, extra data, user, level, fingerprint, request and breadcrumbs that apply to the events
/// captured while the scope is current.
///
/// Change the current scope with [`configure_scope`](crate::configure_scope); give a request or
/// task a scope of its own with [`with_scope`](crate::with_scope) or
/// [`ScopeFutureExt`](crate::ScopeFutureExt).
///
/// ```
/// use errorwatch_sdk::{Level, Scope, User};
///
/// let mut scope = Scope::default();
/// scope.set_tag("region", "eu-west-1");
/// scope.set_user(Some(User { id: Some("42".into()), ..User::default() }));
/// scope.set_level(Some(Level::Warning));
/// assert_eq!(scope.tag("region"), Some("eu-west-1"));
/// ```
#[derive(Clone, Default)]
pub struct Scope {
    data: Arc<ScopeData>,
}

#[derive(Clone, Default)]
pub(crate) struct ScopeData {
    level: Option<Level>,
    tags: Arc<BTreeMap<String, String>>,
    extra: Arc<Map>,
    contexts: Arc<Map>,
    user: Option<Arc<User>>,
    fingerprint: Option<Arc<str>>,
    request: Option<Arc<Request>>,
    breadcrumbs: Breadcrumbs,
}

impl std::fmt::Debug for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scope")
            .field("level", &self.data.level)
            .field("tags", &self.data.tags)
            .field("user", &self.data.user)
            .field("breadcrumbs", &self.data.breadcrumbs.len)
            .finish_non_exhaustive()
    }
}

static EMPTY: LazyLock<Arc<ScopeData>> = LazyLock::new(Arc::default);

impl Scope {
    /// An empty scope that allocates nothing (it shares one static empty value).
    pub(crate) fn empty() -> Scope {
        Scope {
            data: Arc::clone(&EMPTY),
        }
    }

    pub(crate) fn from_arc(data: Arc<ScopeData>) -> Scope {
        Scope { data }
    }

    pub(crate) fn into_arc(self) -> Arc<ScopeData> {
        self.data
    }

    fn data_mut(&mut self) -> &mut ScopeData {
        Arc::make_mut(&mut self.data)
    }

    /// Sets a tag (an indexed string value).
    pub fn set_tag(&mut self, key: impl Into<String>, value: impl Into<String>) {
        Arc::make_mut(&mut self.data_mut().tags).insert(key.into(), value.into());
    }
    /// Removes a tag.
    pub fn remove_tag(&mut self, key: &str) {
        if self.data.tags.contains_key(key) {
            Arc::make_mut(&mut self.data_mut().tags).remove(key);
        }
    }
    /// The value of a tag.
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.data.tags.get(key).map(String::as_str)
    }
    /// Sets an item of extra data.
    pub fn set_extra(&mut self, key: impl Into<String>, value: impl Into<Value>) {
        Arc::make_mut(&mut self.data_mut().extra).insert(key.into(), value.into());
    }
    /// Removes an item of extra data.
    pub fn remove_extra(&mut self, key: &str) {
        if self.data.extra.contains_key(key) {
            Arc::make_mut(&mut self.data_mut().extra).remove(key);
        }
    }
    /// Sets a context (a structured object such as `runtime` or `device`).
    pub fn set_context(&mut self, key: impl Into<String>, value: impl Into<Value>) {
        Arc::make_mut(&mut self.data_mut().contexts).insert(key.into(), value.into());
    }
    /// Sets or clears the user.
    pub fn set_user(&mut self, user: Option<User>) {
        self.data_mut().user = user.map(Arc::new);
    }
    /// The user.
    pub fn user(&self) -> Option<&User> {
        self.data.user.as_deref()
    }
    /// Overrides the level of every event captured in this scope.
    pub fn set_level(&mut self, level: Option<Level>) {
        self.data_mut().level = level;
    }
    /// Sets the fingerprint events are grouped by (the parts are joined with `|`).
    pub fn set_fingerprint(&mut self, parts: Option<&[&str]>) {
        self.data_mut().fingerprint = parts.map(|parts| Arc::from(parts.join("|")));
    }
    /// Sets or clears the HTTP request (the integrations do this for you).
    pub fn set_request(&mut self, request: Option<Request>) {
        self.data_mut().request = request.map(Arc::new);
    }
    /// The HTTP request.
    pub fn request(&self) -> Option<&Request> {
        self.data.request.as_deref()
    }
    /// Adds a breadcrumb; the newest 100 are kept.
    pub fn add_breadcrumb(&mut self, breadcrumb: Breadcrumb) {
        self.data_mut().breadcrumbs.push(breadcrumb);
    }
    /// Removes every breadcrumb.
    pub fn clear_breadcrumbs(&mut self) {
        self.data_mut().breadcrumbs = Breadcrumbs::default();
    }
    /// The newest `max` breadcrumbs, oldest first.
    pub fn breadcrumbs(&self, max: usize) -> Vec<Breadcrumb> {
        self.data.breadcrumbs.newest(max)
    }
    /// Resets the scope to empty.
    pub fn clear(&mut self) {
        *self = Scope::empty();
    }

    /// Copies the scope into `event`. What the event already carries wins, except the level,
    /// which a scope level overrides. The scope's breadcrumbs go before the event's own.
    pub fn apply_to(&self, event: &mut Event, max_breadcrumbs: usize) {
        let data = &*self.data;
        if let Some(level) = data.level {
            event.level = level;
        }
        for (key, value) in data.tags.iter() {
            event
                .tags
                .entry(key.clone())
                .or_insert_with(|| value.clone());
        }
        for (key, value) in data.extra.iter() {
            event
                .extra
                .entry(key.clone())
                .or_insert_with(|| value.clone());
        }
        for (key, value) in data.contexts.iter() {
            event
                .contexts
                .entry(key.clone())
                .or_insert_with(|| value.clone());
        }
        if event.user.is_none() {
            event.user = data.user.as_deref().cloned();
        }
        if event.fingerprint.is_none() {
            event.fingerprint = data.fingerprint.as_deref().map(str::to_owned);
        }
        if event.request.is_none() {
            event.request = data.request.as_deref().cloned();
        }
        if event.url.is_none() {
            event.url = event
                .request
                .as_ref()
                .and_then(|request| request.url.clone());
        }
        let room = max_breadcrumbs.saturating_sub(event.breadcrumbs.len());
        if room > 0 && data.breadcrumbs.len > 0 {
            let mut crumbs = data.breadcrumbs.newest(room);
            crumbs.append(&mut event.breadcrumbs);
            event.breadcrumbs = crumbs;
        }
    }
}

/// A persistent list of breadcrumbs, newest at the head.
///
/// Pushing is O(1) and never copies earlier breadcrumbs, even when snapshots share the list.
/// Once it holds twice the limit it is rebuilt with the newest entries, which keeps memory
/// bounded and the cost amortised to one copy per push.
#[derive(Clone, Default)]
struct Breadcrumbs {
    head: Option<Arc<Node>>,
    len: usize,
}

struct Node {
    /// Shared, so that rebuilding the list copies pointers, not breadcrumbs.
    crumb: Arc<Breadcrumb>,
    next: Option<Arc<Node>>,
}

impl Breadcrumbs {
    fn push(&mut self, crumb: Breadcrumb) {
        self.link(Arc::new(crumb));
        if self.len > 2 * limits::BREADCRUMBS {
            let mut newest = Vec::with_capacity(limits::BREADCRUMBS);
            self.for_newest(limits::BREADCRUMBS, |crumb| newest.push(crumb.clone()));
            *self = Breadcrumbs::default();
            for crumb in newest.into_iter().rev() {
                self.link(crumb);
            }
        }
    }

    fn link(&mut self, crumb: Arc<Breadcrumb>) {
        self.head = Some(Arc::new(Node {
            crumb,
            next: self.head.take(),
        }));
        self.len += 1;
    }

    /// Calls `f` with each of the newest `max` breadcrumbs, newest first.
    fn for_newest(&self, max: usize, mut f: impl FnMut(&Arc<Breadcrumb>)) {
        let mut node = self.head.as_deref();
        for _ in 0..max {
            let Some(current) = node else { break };
            f(&current.crumb);
            node = current.next.as_deref();
        }
    }

    /// The newest `max` breadcrumbs, oldest first.
    fn newest(&self, max: usize) -> Vec<Breadcrumb> {
        let mut out = Vec::with_capacity(max.min(self.len));
        self.for_newest(max, |crumb| out.push(Breadcrumb::clone(crumb)));
        out.reverse();
        out
    }
}

impl Drop for Breadcrumbs {
    // Unlinks iteratively: the default recursive drop of a long list could exhaust the stack.
    fn drop(&mut self) {
        let mut next = self.head.take();
        while let Some(node) = next {
            match Arc::try_unwrap(node) {
                Ok(mut node) => next = node.next.take(),
                Err(_) => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_do_not_see_later_changes() {
        let mut scope = Scope::default();
        scope.set_tag("a", "1");
        scope.add_breadcrumb(Breadcrumb::new("c", "first"));
        let snapshot = scope.clone();
        scope.set_tag("a", "2");
        scope.add_breadcrumb(Breadcrumb::new("c", "second"));
        assert_eq!(snapshot.tag("a"), Some("1"));
        assert_eq!(snapshot.breadcrumbs(10).len(), 1);
        assert_eq!(scope.breadcrumbs(10).len(), 2);
    }

    #[test]
    fn breadcrumbs_keep_the_newest_and_stay_bounded() {
        let mut scope = Scope::default();
        for i in 0..1_000 {
            scope.add_breadcrumb(Breadcrumb::new("n", i.to_string()));
        }
        let newest = scope.breadcrumbs(limits::BREADCRUMBS);
        assert_eq!(newest.len(), limits::BREADCRUMBS);
        assert_eq!(newest[0].message.as_deref(), Some("900"));
        assert_eq!(newest[99].message.as_deref(), Some("999"));
        assert!(scope.data.breadcrumbs.len <= 2 * limits::BREADCRUMBS);
    }

    #[test]
    fn the_event_wins_over_the_scope_except_for_the_level() {
        let mut scope = Scope::default();
        scope.set_tag("shared", "scope");
        scope.set_tag("only_scope", "yes");
        scope.set_level(Some(Level::Warning));
        scope.add_breadcrumb(Breadcrumb::new("c", "from scope"));
        let mut event = Event::default();
        event.tags.insert("shared".into(), "event".into());
        scope.apply_to(&mut event, 100);
        assert_eq!(event.tag("shared"), Some("event"));
        assert_eq!(event.tag("only_scope"), Some("yes"));
        assert_eq!(event.level, Level::Warning);
        assert_eq!(event.breadcrumbs.len(), 1);
    }
}
