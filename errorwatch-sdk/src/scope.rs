//! The scope: the context (tags, extra, user, breadcrumbs, ...) that events pick up.
//!
//! A scope is copy-on-write: taking a snapshot for an event is two reference-count increments,
//! and changing a scope that a queued event still shares copies only what changes.
//! Breadcrumbs live apart from the rest, in a persistent list: adding one (what a log line
//! does) neither copies the others nor touches the tags, user and request beside them.

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
    breadcrumbs: Breadcrumbs,
}

/// Everything but the breadcrumbs: changed seldom, shared until then.
#[derive(Clone, Default)]
struct ScopeData {
    level: Option<Level>,
    tags: Arc<BTreeMap<String, String>>,
    extra: Arc<Map>,
    contexts: Arc<Map>,
    user: Option<Arc<User>>,
    fingerprint: Option<Arc<str>>,
    request: Option<Arc<LazyRequest>>,
}

/// A request built the first time it is read: an integration hands over what it needs to build
/// one (its method, URL and headers), and the work is done only for a request that reports
/// something, and then on the SDK's worker.
type LazyRequest = LazyLock<Request, Box<dyn FnOnce() -> Request + Send>>;

impl std::fmt::Debug for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scope")
            .field("level", &self.data.level)
            .field("tags", &self.data.tags)
            .field("user", &self.data.user)
            .field("breadcrumbs", &self.breadcrumbs.len())
            .finish_non_exhaustive()
    }
}

static EMPTY: LazyLock<Arc<ScopeData>> = LazyLock::new(Arc::default);

impl Scope {
    /// An empty scope that allocates nothing (it shares one static empty value).
    pub(crate) fn empty() -> Scope {
        Scope {
            data: Arc::clone(&EMPTY),
            breadcrumbs: Breadcrumbs::default(),
        }
    }

    /// How many scopes share this one's data: tests check that snapshots are let go.
    #[cfg(test)]
    pub(crate) fn sharers(&self) -> usize {
        Arc::strong_count(&self.data)
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
        self.data_mut().request = request.map(|request| {
            let built: Box<dyn FnOnce() -> Request + Send> = Box::new(move || request);
            Arc::new(LazyLock::new(built))
        });
    }
    /// Sets the HTTP request as `build` makes it, called only when the request is first read
    /// (by an event, which reads it on the SDK's worker): for integrations, so that a request
    /// that reports nothing costs no more than what `build` holds.
    ///
    /// ```
    /// use errorwatch_sdk::{protocol::Request, Scope};
    ///
    /// let mut scope = Scope::default();
    /// let path = String::from("/cart");
    /// scope.set_request_with(move || Request {
    ///     url: Some(format!("https://shop.example.com{path}")),
    ///     ..Request::default()
    /// });
    /// assert_eq!(scope.request().and_then(|r| r.url.as_deref()), Some("https://shop.example.com/cart"));
    /// ```
    pub fn set_request_with(&mut self, build: impl FnOnce() -> Request + Send + 'static) {
        let build: Box<dyn FnOnce() -> Request + Send> = Box::new(build);
        self.data_mut().request = Some(Arc::new(LazyLock::new(build)));
    }
    /// The HTTP request.
    pub fn request(&self) -> Option<&Request> {
        self.data.request.as_deref().map(|request| &**request)
    }
    /// Adds a breadcrumb; the newest 100 are kept.
    pub fn add_breadcrumb(&mut self, breadcrumb: Breadcrumb) {
        drop(self.breadcrumbs.push(breadcrumb));
    }
    /// Adds a breadcrumb and returns the breadcrumbs it made obsolete, for the caller to drop
    /// where it suits: not under the root scope's lock.
    pub(crate) fn push_breadcrumb(&mut self, breadcrumb: Breadcrumb) -> Breadcrumbs {
        self.breadcrumbs.push(breadcrumb)
    }
    /// Removes every breadcrumb.
    pub fn clear_breadcrumbs(&mut self) {
        self.breadcrumbs = Breadcrumbs::default();
    }
    /// The newest `max` breadcrumbs, oldest first.
    pub fn breadcrumbs(&self, max: usize) -> Vec<Breadcrumb> {
        self.breadcrumbs.newest(max)
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
            event.request = self.request().cloned();
        }
        if event.url.is_none() {
            event.url = event
                .request
                .as_ref()
                .and_then(|request| request.url.clone());
        }
        let room = max_breadcrumbs.saturating_sub(event.breadcrumbs.len());
        if room > 0 && self.breadcrumbs.len() > 0 {
            let mut crumbs = self.breadcrumbs.newest(room);
            crumbs.append(&mut event.breadcrumbs);
            event.breadcrumbs = crumbs;
        }
    }
}

/// A persistent list of breadcrumbs, newest first.
///
/// Pushing links one node and never copies earlier breadcrumbs, even when snapshots share the
/// list. Every [`limits::BREADCRUMBS`] pushes, the newest of them are gathered into one
/// array that the next node sits on, and whatever lay under them is let go: memory stays
/// bounded (at most twice the limit) and the cost is one pointer copy per push. A chain of
/// nodes is never longer than the limit, so dropping one recurses no deeper than that.
#[derive(Clone, Default)]
pub(crate) struct Breadcrumbs {
    head: Option<Arc<Node>>,
}

struct Node {
    /// Shared, so that gathering copies pointers, not breadcrumbs.
    crumb: Arc<Breadcrumb>,
    below: Below,
    /// Nodes from this one down to the gathered array, this one included.
    depth: usize,
    /// Breadcrumbs from this one down, gathered ones included.
    len: usize,
}

enum Below {
    Nothing,
    Node(Arc<Node>),
    /// Gathered breadcrumbs, newest first.
    Gathered(Arc<[Arc<Breadcrumb>]>),
}

impl Breadcrumbs {
    /// Links `crumb` and returns what it made obsolete (nothing, but on every
    /// [`limits::BREADCRUMBS`]th push the list it gathered from).
    fn push(&mut self, crumb: Breadcrumb) -> Breadcrumbs {
        let crumb = Arc::new(crumb);
        let mut obsolete = Breadcrumbs::default();
        let (below, depth, len) = match self.head.take() {
            None => (Below::Nothing, 0, 0),
            Some(head) if head.depth >= limits::BREADCRUMBS => {
                obsolete.head = Some(head);
                let mut gathered = Vec::with_capacity(limits::BREADCRUMBS);
                obsolete.for_newest(limits::BREADCRUMBS, |crumb| {
                    gathered.push(Arc::clone(crumb))
                });
                let len = gathered.len();
                (Below::Gathered(gathered.into()), 0, len)
            }
            Some(head) => {
                let (depth, len) = (head.depth, head.len);
                (Below::Node(head), depth, len)
            }
        };
        self.head = Some(Arc::new(Node {
            crumb,
            below,
            depth: depth + 1,
            len: len + 1,
        }));
        obsolete
    }

    fn len(&self) -> usize {
        self.head.as_ref().map_or(0, |head| head.len)
    }

    /// Calls `f` with each of the newest `max` breadcrumbs, newest first.
    fn for_newest(&self, max: usize, mut f: impl FnMut(&Arc<Breadcrumb>)) {
        let mut left = max;
        let mut node = self.head.as_deref();
        while let Some(current) = node.filter(|_| left > 0) {
            f(&current.crumb);
            left -= 1;
            node = match &current.below {
                Below::Node(next) => Some(next),
                Below::Nothing => None,
                Below::Gathered(gathered) => {
                    gathered.iter().take(left).for_each(&mut f);
                    None
                }
            };
        }
    }

    /// The newest `max` breadcrumbs, oldest first.
    fn newest(&self, max: usize) -> Vec<Breadcrumb> {
        let mut out = Vec::with_capacity(max.min(self.len()));
        self.for_newest(max, |crumb| out.push(Breadcrumb::clone(crumb)));
        out.reverse();
        out
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
        assert!(scope.breadcrumbs.len() <= 2 * limits::BREADCRUMBS);
    }

    #[test]
    fn every_snapshot_keeps_its_own_newest_breadcrumbs_in_order() {
        let messages = |crumbs: Vec<Breadcrumb>| -> Vec<String> {
            crumbs
                .into_iter()
                .filter_map(|crumb| crumb.message)
                .collect()
        };
        let mut scope = Scope::default();
        let mut snapshots = Vec::new();
        for i in 0..(3 * limits::BREADCRUMBS + 7) {
            scope.add_breadcrumb(Breadcrumb::new("n", i.to_string()));
            // Around each gathering, and in between.
            if i % 37 == 0 || i % limits::BREADCRUMBS <= 1 {
                snapshots.push((i, scope.clone()));
            }
        }
        for (last, snapshot) in snapshots {
            for max in [1, 10, limits::BREADCRUMBS] {
                let first = (last + 1).saturating_sub(max);
                let expected: Vec<String> = (first..=last).map(|i| i.to_string()).collect();
                assert_eq!(
                    messages(snapshot.breadcrumbs(max)),
                    expected,
                    "{last}, {max}"
                );
            }
        }
    }

    #[test]
    fn a_request_set_with_a_builder_is_built_once_and_only_when_read() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static BUILT: AtomicUsize = AtomicUsize::new(0);
        let mut scope = Scope::default();
        scope.set_request_with(|| {
            BUILT.fetch_add(1, Ordering::Relaxed);
            Request {
                url: Some("http://shop.local/cart".into()),
                ..Request::default()
            }
        });
        let snapshots = [scope.clone(), scope.clone()];
        assert_eq!(BUILT.load(Ordering::Relaxed), 0, "nothing read it yet");
        for snapshot in &snapshots {
            let mut event = Event::default();
            snapshot.apply_to(&mut event, 100);
            assert_eq!(event.url.as_deref(), Some("http://shop.local/cart"));
        }
        assert_eq!(
            BUILT.load(Ordering::Relaxed),
            1,
            "built once for every snapshot"
        );
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
