//! Secret scrubbing: the one place that decides what must never leave the process.
//!
//! Two kinds of rule apply to every event before it is serialised:
//! - **by key**: any tag, extra, context, header, breadcrumb-data or user-data entry whose
//!   name contains a sensitive word (`password`, `token`, `cookie`, ...) has its value replaced;
//! - **by value**: every string (message, exception, frames, stack, URLs, breadcrumbs, values
//!   of every map) is searched for secret shapes: `Bearer` tokens, JWTs, credentials in URLs,
//!   sensitive query parameters and `key=value` pairs, AWS access keys, card numbers that pass
//!   the Luhn check, PEM private keys, ErrorWatch, GitHub, Slack, Stripe and Google keys.
//!
//! Users add keys and patterns with [`ScrubOptions`], or switch scrubbing off explicitly.

use std::borrow::Cow;
use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;
use std::sync::{Mutex, OnceLock, PoisonError};

use regex::{Captures, Regex, RegexBuilder, RegexSet, RegexSetBuilder};

use errorwatch_protocol::{Event, Value};

/// What replaces a scrubbed secret.
pub(crate) const FILTERED: &str = "[Filtered]";

/// Words that make a key sensitive when its name contains one of them (case-insensitive).
pub(crate) const DEFAULT_KEYS: &[&str] = &[
    "password",
    "passwd",
    "pwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "api-key",
    "auth",
    "credential",
    "cookie",
    "session",
    "csrf",
    "xsrf",
    "private_key",
    "private-key",
    "privatekey",
    "jwt",
    "bearer",
    "access_key",
    "passphrase",
    "signature",
];

/// Query parameter names that are secrets on their own, though too short to be key words.
const SECRET_PARAMS: &[&str] = &["key", "sig", "code", "pass"];

/// How the SDK scrubs secrets. Scrubbing is on by default.
///
/// ```
/// use errorwatch_sdk::ScrubOptions;
/// let scrub = ScrubOptions::default()
///     .key("ssn")
///     .pattern(r"\bACME-\d{6}\b");
/// assert!(scrub.is_enabled());
/// assert!(!ScrubOptions::disabled().is_enabled());
/// ```
#[derive(Clone, Debug)]
pub struct ScrubOptions {
    enabled: bool,
    keys: Vec<String>,
    patterns: Vec<String>,
}

impl Default for ScrubOptions {
    fn default() -> Self {
        ScrubOptions {
            enabled: true,
            keys: Vec::new(),
            patterns: Vec::new(),
        }
    }
}

impl ScrubOptions {
    /// What a scrubbed value is replaced with.
    pub const FILTERED: &'static str = FILTERED;

    /// The key words scrubbed by default (case-insensitive, anywhere in a key).
    pub const DEFAULT_KEYS: &'static [&'static str] = DEFAULT_KEYS;

    /// No scrubbing at all: events leave the process exactly as captured.
    pub fn disabled() -> Self {
        ScrubOptions {
            enabled: false,
            ..ScrubOptions::default()
        }
    }

    /// Adds a sensitive key word: any key containing it (case-insensitive) is scrubbed.
    pub fn key(mut self, word: impl Into<String>) -> Self {
        self.keys.push(word.into());
        self
    }

    /// Adds a value pattern (a [`regex`](https://docs.rs/regex) expression): every match in
    /// every string is replaced with `[Filtered]`. A pattern that does not compile makes
    /// `init` refuse the options ([`OptionsError::Scrubbing`](crate::OptionsError::Scrubbing)):
    /// scrubbing fails closed.
    pub fn pattern(mut self, pattern: impl Into<String>) -> Self {
        self.patterns.push(pattern.into());
        self
    }

    /// Whether scrubbing is on.
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }
}

/// How one value rule rewrites a match.
enum Rewrite {
    /// Replace the whole match.
    Whole,
    /// Keep capture group 1 (the key or prefix) and group 2 if any (a suffix), replace the rest.
    KeepPrefix,
    /// Replace only if the digits pass the Luhn check.
    CardNumber,
}

struct ValueRule {
    pattern: String,
    /// Compiled the first time the set finds this rule in a text. Most rules never match, and
    /// each compiled one holds tens of KiB for the client's whole life (together, most of the
    /// scrubber's memory). `None` can only follow a failure the set's own compilation would
    /// have reported first: the text is then filtered whole.
    regex: OnceLock<Option<Regex>>,
    rewrite: Rewrite,
}

impl ValueRule {
    fn regex(&self) -> Option<&Regex> {
        self.regex
            .get_or_init(|| compile(&self.pattern).ok())
            .as_ref()
    }
}

/// Bounds a rule's compiled size; the defaults and any sane user pattern fit.
const SIZE_LIMIT: usize = 1 << 24;

fn compile(pattern: &str) -> Result<Regex, regex::Error> {
    RegexBuilder::new(pattern).size_limit(SIZE_LIMIT).build()
}

/// A compiled scrubber, built once per client.
pub(crate) struct Scrubber {
    key: Regex,
    any_value: RegexSet,
    rules: Vec<ValueRule>,
    /// Texts the rules found nothing in, taken by one event at a time (the worker's).
    known_clean: Mutex<KnownClean>,
}

/// The texts that came back from the rules unchanged, so that the next event carrying the same
/// text (a repeated stack's frames and stack text, the contexts, a repeated message) skips
/// the search: for a repeated stack capture, searching was a fifth of the worker's time.
///
/// A text is kept verbatim and matched byte for byte, so a secret can never pass as a clean
/// text that merely hashes alike. It is kept only from its second sighting (the first leaves
/// its hash), so events that never repeat cost a hash each, not a copy; and the memory is
/// bounded: past either limit, everything is forgotten and learnt again.
#[derive(Default)]
struct KnownClean {
    hasher: std::hash::RandomState,
    /// By the text's hash: `None` once seen clean, the text itself from the second time.
    texts: HashMap<u64, Option<Box<str>>>,
    bytes: usize,
}

impl KnownClean {
    const MAX_TEXTS: usize = 1_024;
    const MAX_BYTES: usize = 64 * 1024;
    /// Shorter texts are searched about as fast as they are hashed and looked up.
    const MIN_LEN: usize = 24;

    fn is_clean(&self, text: &str) -> bool {
        text.len() >= Self::MIN_LEN
            && matches!(
                self.texts.get(&self.hasher.hash_one(text)),
                Some(Some(known)) if **known == *text
            )
    }

    /// Records that the rules found nothing in `text`.
    fn learn(&mut self, text: &str) {
        if text.len() < Self::MIN_LEN || text.len() > Self::MAX_BYTES / 4 {
            return;
        }
        if self.texts.len() >= Self::MAX_TEXTS || self.bytes + text.len() > Self::MAX_BYTES {
            self.texts.clear();
            self.bytes = 0;
        }
        match self.texts.entry(self.hasher.hash_one(text)) {
            Entry::Vacant(first) => {
                first.insert(None);
            }
            Entry::Occupied(mut second) if second.get().is_none() => {
                self.bytes += text.len();
                *second.get_mut() = Some(text.into());
            }
            // Another text of the same hash got there first: it stays, and this one is
            // searched every time.
            Entry::Occupied(_) => {}
        }
    }
}

impl Scrubber {
    /// Compiles the default rules plus the user's; `Ok(None)` when scrubbing is off.
    ///
    /// A rule that does not compile is an error, never a silently weaker scrubber: the client
    /// then refuses to start rather than send unscrubbed events.
    pub(crate) fn new(
        options: &ScrubOptions,
        own_api_key: Option<&str>,
    ) -> Result<Option<Scrubber>, regex::Error> {
        if !options.enabled {
            return Ok(None);
        }
        let words: Vec<String> = DEFAULT_KEYS
            .iter()
            .map(|word| regex::escape(word))
            .chain(
                options
                    .keys
                    .iter()
                    .map(|word| regex::escape(&word.to_lowercase())),
            )
            .collect();
        let words = words.join("|");
        let params = SECRET_PARAMS.join("|");

        // Order matters: the private-key block goes first (it spans lines), then `key=value`
        // pairs (so `Authorization: Bearer x` collapses to one `[Filtered]`), then the shapes.
        let mut rules: Vec<(String, Rewrite)> = vec![
            (
                r"(?s)-----BEGIN(?:[ +]|%20)(?:[A-Z0-9]+(?:[ +]|%20))*PRIVATE(?:[ +]|%20)KEY-----.*?(?:-----END(?:[ +]|%20)(?:[A-Z0-9]+(?:[ +]|%20))*PRIVATE(?:[ +]|%20)KEY-----|\z)".into(),
                Rewrite::Whole,
            ),
            (
                // Separators may be URL-encoded: a space as `+`/`%20`, a quote as `%22`,
                // `=`/`:` as `%3D`/`%3A`.
                format!(
                    r#"(?i)(\b[a-z0-9_.-]*(?:{words})[a-z0-9_.-]*(?:["']|%22)?(?:\s|\+|%20)*(?:[=:]|%3d|%3a)(?:\s|\+|%20)*(?:["']|%22)?)(?:bearer(?:\s+|\+|%20))?[^\s"'&,;)\]}}]+"#
                ),
                Rewrite::KeepPrefix,
            ),
            // `Bearer x` in text, or in a URL query where the space is `+` or `%20`.
            (r"(?i)(\bbearer(?:\s+|\+|%20))[A-Za-z0-9\-._~+/]{8,}=*".into(), Rewrite::KeepPrefix),
            (r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*".into(), Rewrite::Whole),
            (r"(?i)(\b[a-z][a-z0-9+.-]*://)[^/\s:@]+:[^/\s@]+(@)".into(), Rewrite::KeepPrefix),
            (format!(r"(?i)([?&;](?:{params})=)[^&#\s]+"), Rewrite::KeepPrefix),
            (r"\b(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b".into(), Rewrite::Whole),
            (r"ew_(?:live|test)_[A-Za-z0-9_-]{32,}".into(), Rewrite::Whole),
            (r"\bgh[pousr]_[A-Za-z0-9]{36,}\b".into(), Rewrite::Whole),
            (r"\bxox[abposr]-[A-Za-z0-9-]{10,}".into(), Rewrite::Whole),
            (r"\b(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}\b".into(), Rewrite::Whole),
            (r"\bAIza[0-9A-Za-z_-]{35}\b".into(), Rewrite::Whole),
            // Issuer prefixes (Visa, Mastercard, Amex, Diners, JCB, Discover) keep epoch
            // milliseconds and order numbers out; the Luhn check does the rest.
            (
                r"\b(?:4|5[1-5]|2[2-7]|3[0-9]|6(?:011|5))(?:[ -]?\d){11,17}\b".into(),
                Rewrite::CardNumber,
            ),
        ];
        if let Some(key) = own_api_key.filter(|key| !key.is_empty()) {
            rules.push((regex::escape(key), Rewrite::Whole));
        }
        rules.extend(
            options
                .patterns
                .iter()
                .map(|pattern| (pattern.clone(), Rewrite::Whole)),
        );

        let key = compile(&format!("(?i){words}"))?;
        // The set compiles every pattern, so a bad one is reported here, before any is used;
        // each rule's own regex (for the replacement) waits until it is needed.
        let any_value = RegexSetBuilder::new(rules.iter().map(|(pattern, _)| pattern))
            .size_limit(SIZE_LIMIT)
            .build()?;
        let rules = rules
            .into_iter()
            .map(|(pattern, rewrite)| ValueRule {
                pattern,
                regex: OnceLock::new(),
                rewrite,
            })
            .collect();
        Ok(Some(Scrubber {
            key,
            any_value,
            rules,
            known_clean: Mutex::default(),
        }))
    }

    /// Whether a key names a secret.
    pub(crate) fn is_sensitive_key(&self, key: &str) -> bool {
        self.key.is_match(key)
    }

    /// `text` with every secret shape replaced.
    #[cfg(test)]
    pub(crate) fn scrub_str<'a>(&self, text: &'a str) -> Cow<'a, str> {
        self.rewritten(text).map_or(Cow::Borrowed(text), Cow::Owned)
    }

    /// `text` with every secret shape replaced, or `None` when the rules leave it as it is.
    fn rewritten(&self, text: &str) -> Option<String> {
        let matched = self.any_value.matches(text);
        if !matched.matched_any() {
            return None;
        }
        let mut out = Cow::Borrowed(text);
        for index in matched.iter() {
            let rule = &self.rules[index];
            let Some(regex) = rule.regex() else {
                return Some(FILTERED.to_owned());
            };
            let replaced = regex.replace_all(&out, |caps: &Captures<'_>| rewrite(rule, caps));
            if let Cow::Owned(new) = replaced {
                out = Cow::Owned(new);
            }
        }
        match out {
            Cow::Owned(new) => Some(new),
            Cow::Borrowed(_) => None,
        }
    }

    fn scrub_string(&self, text: &mut String, known: &mut KnownClean) {
        if known.is_clean(text) {
            return;
        }
        match self.rewritten(text) {
            Some(clean) => *text = clean,
            None => known.learn(text),
        }
    }

    fn scrub_opt(&self, text: &mut Option<String>, known: &mut KnownClean) {
        if let Some(text) = text {
            self.scrub_string(text, known);
        }
    }

    /// Scrubs the entries of an event's map or of a JSON object: the two map types, one rule.
    fn scrub_map<'m>(
        &self,
        entries: impl IntoIterator<Item = (&'m String, &'m mut Value)>,
        known: &mut KnownClean,
    ) {
        for (key, value) in entries {
            if self.is_sensitive_key(key) {
                *value = Value::String(FILTERED.into());
            } else {
                self.scrub_value(value, known);
            }
        }
    }

    fn scrub_value(&self, value: &mut Value, known: &mut KnownClean) {
        match value {
            Value::String(text) => self.scrub_string(text, known),
            Value::Array(items) => items
                .iter_mut()
                .for_each(|item| self.scrub_value(item, known)),
            Value::Object(object) => self.scrub_map(object, known),
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }

    fn scrub_string_map(&self, map: &mut BTreeMap<String, String>, known: &mut KnownClean) {
        for (key, value) in map.iter_mut() {
            if self.is_sensitive_key(key) {
                FILTERED.clone_into(value);
            } else {
                self.scrub_string(value, known);
            }
        }
    }

    /// Scrubs every string and map of `event` in place.
    pub(crate) fn scrub_event(&self, event: &mut Event) {
        // Only the worker scrubs, one event at a time: the lock is never contended.
        let mut known = self
            .known_clean
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let known = &mut *known;
        self.scrub_opt(&mut event.message, known);
        if let Some(exception) = &mut event.exception {
            self.scrub_string(&mut exception.ty, known);
            self.scrub_string(&mut exception.value, known);
        }
        for frame in &mut event.frames {
            self.scrub_string(&mut frame.filename, known);
            self.scrub_opt(&mut frame.function, known);
        }
        self.scrub_opt(&mut event.file, known);
        self.scrub_opt(&mut event.stack, known);
        self.scrub_opt(&mut event.url, known);
        self.scrub_opt(&mut event.fingerprint, known);
        self.scrub_string_map(&mut event.tags, known);
        self.scrub_map(&mut event.extra, known);
        self.scrub_map(&mut event.contexts, known);
        if let Some(user) = &mut event.user {
            self.scrub_opt(&mut user.id, known);
            self.scrub_opt(&mut user.email, known);
            self.scrub_opt(&mut user.username, known);
        }
        self.scrub_opt(&mut event.user_id, known);
        if let Some(request) = &mut event.request {
            self.scrub_opt(&mut request.url, known);
            self.scrub_opt(&mut request.query_string, known);
            self.scrub_string_map(&mut request.headers, known);
            if let Some(data) = &mut request.data {
                self.scrub_value(data, known);
            }
        }
        for crumb in &mut event.breadcrumbs {
            self.scrub_opt(&mut crumb.message, known);
            self.scrub_map(&mut crumb.data, known);
        }
    }
}

fn rewrite(rule: &ValueRule, caps: &Captures<'_>) -> String {
    let whole = caps.get(0).map_or("", |m| m.as_str());
    match rule.rewrite {
        Rewrite::Whole => FILTERED.to_owned(),
        Rewrite::KeepPrefix => {
            let prefix = caps.get(1).map_or("", |m| m.as_str());
            let suffix = caps.get(2).map_or("", |m| m.as_str());
            format!("{prefix}{FILTERED}{suffix}")
        }
        Rewrite::CardNumber => {
            if passes_luhn(whole) {
                FILTERED.to_owned()
            } else {
                whole.to_owned()
            }
        }
    }
}

/// Whether the digits of `text` (13 to 19 of them) form a number that passes the Luhn check.
pub(crate) fn passes_luhn(text: &str) -> bool {
    let digits: Vec<u32> = text.chars().filter_map(|c| c.to_digit(10)).collect();
    if !(13..=19).contains(&digits.len()) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                let doubled = d * 2;
                if doubled > 9 {
                    doubled - 9
                } else {
                    doubled
                }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrubber() -> Scrubber {
        Scrubber::new(&ScrubOptions::default(), None)
            .expect("default rules compile")
            .expect("scrubbing is on by default")
    }

    #[test]
    fn a_rule_is_compiled_only_once_a_text_needs_it() {
        let s = scrubber();
        let compiled = |s: &Scrubber| s.rules.iter().filter(|r| r.regex.get().is_some()).count();
        assert_eq!(
            s.scrub_str("the database is unreachable"),
            "the database is unreachable"
        );
        assert_eq!(compiled(&s), 0, "no rule matched, none compiled");
        assert_eq!(s.scrub_str("key AKIAABCDEFGHIJKLMNOP"), "key [Filtered]");
        assert_eq!(compiled(&s), 1, "the AWS key's rule alone");
    }

    /// An event carrying `text` in its message and in a frame, as a repeated stack carries
    /// its frames.
    fn event_with(text: &str) -> Event {
        let mut event = Event::message(text, errorwatch_protocol::Level::Error);
        event.frames.push(errorwatch_protocol::Frame {
            filename: text.to_owned(),
            function: Some(text.to_owned()),
            lineno: Some(1),
            colno: None,
            in_app: Some(true),
        });
        event
    }

    #[test]
    fn a_text_is_known_clean_from_its_second_clean_sighting_and_a_secret_never_is() {
        let s = scrubber();
        let clean = "src/payments/charge.rs in payments::charge::attempt";
        let secret = "src/payments/charge.rs in payments::charge?token=abc123def456";
        let known = |s: &Scrubber, text: &str| s.known_clean.lock().unwrap().is_clean(text);

        let texts = |event: Event| (event.message, event.frames);
        let mut first = event_with(clean);
        s.scrub_event(&mut first);
        assert_eq!(texts(first), texts(event_with(clean)), "nothing to scrub");
        // The message and the frame's two strings: the second sighting keeps it.
        assert!(known(&s, clean));

        for _ in 0..3 {
            let mut event = event_with(secret);
            s.scrub_event(&mut event);
            assert_eq!(
                event.message.as_deref(),
                Some("src/payments/charge.rs in payments::charge?token=[Filtered]")
            );
            assert_eq!(event.frames[0].filename, event.message.clone().unwrap());
            assert!(!known(&s, secret));
        }
        let mut again = event_with(clean);
        s.scrub_event(&mut again);
        assert_eq!(texts(again), texts(event_with(clean)));
    }

    #[test]
    fn the_known_clean_texts_stay_within_their_bounds() {
        let s = scrubber();
        for n in 0..10 * KnownClean::MAX_TEXTS {
            // Each seen twice, so each is kept, until the bounds forget them all.
            let text = format!("a text that repeats, number {n:>6} {}", "x".repeat(n % 300));
            let mut event = Event::message(text.clone(), errorwatch_protocol::Level::Error);
            event.stack = Some(text);
            s.scrub_event(&mut event);
            let known = s.known_clean.lock().unwrap();
            assert!(known.texts.len() <= KnownClean::MAX_TEXTS);
            assert!(known.bytes <= KnownClean::MAX_BYTES);
            let kept: usize = known.texts.values().flatten().map(|text| text.len()).sum();
            assert_eq!(kept, known.bytes);
        }
    }

    #[test]
    fn a_rule_that_cannot_compile_filters_the_whole_text() {
        let mut s = scrubber();
        // The set found its rule, but the rule's own regex does not compile: nothing the rule
        // would have kept can be told apart from the secret.
        s.any_value = RegexSet::new([r"AKIA"]).unwrap();
        s.rules = vec![ValueRule {
            pattern: "(unclosed".into(),
            regex: OnceLock::new(),
            rewrite: Rewrite::Whole,
        }];
        let mut event = Event::message(
            "key AKIAABCDEFGHIJKLMNOP",
            errorwatch_protocol::Level::Error,
        );
        s.scrub_event(&mut event);
        assert_eq!(event.message.as_deref(), Some(FILTERED));
    }

    #[test]
    fn luhn() {
        assert!(passes_luhn("4111 1111 1111 1111"));
        assert!(passes_luhn("5500-0000-0000-0004"));
        assert!(!passes_luhn("4111 1111 1111 1112"));
        assert!(!passes_luhn("1234"));
    }

    #[test]
    fn value_rules_keep_the_shape_and_drop_the_secret() {
        let s = scrubber();
        assert_eq!(
            s.scrub_str("Authorization: Bearer abc.def-123456"),
            "Authorization: [Filtered]"
        );
        assert_eq!(
            s.scrub_str("sent Bearer abcdef123456"),
            "sent Bearer [Filtered]"
        );
        assert_eq!(
            s.scrub_str("GET https://bob:hunter2@example.com/x?id=1&token=abc&key=k1"),
            "GET https://[Filtered]@example.com/x?id=1&token=[Filtered]&key=[Filtered]"
        );
        assert_eq!(
            s.scrub_str("password=hunter2 user=bob"),
            "password=[Filtered] user=bob"
        );
        assert_eq!(
            s.scrub_str(r#"{"api_key": "abc123"}"#),
            r#"{"api_key": "[Filtered]"}"#
        );
        assert_eq!(
            s.scrub_str("card 4111111111111111 ok"),
            "card [Filtered] ok"
        );
        assert_eq!(
            s.scrub_str("order 4111111111111112 ok"),
            "order 4111111111111112 ok"
        );
    }

    #[test]
    fn look_alikes_survive() {
        let s = scrubber();
        for harmless in [
            "tokenizer failed on line 3",
            "the author of the change",
            "token validation failed for basic authentication",
            "Bearer",
            "AKIA is a prefix",
            "ew_live_short",
            "order 1234567890123 shipped",
            "https://example.com/path?id=42&page=2",
            "eyJ alone",
        ] {
            assert_eq!(s.scrub_str(harmless), harmless);
        }
    }

    #[test]
    fn keys_are_matched_by_substring_case_insensitively() {
        let s = scrubber();
        for key in [
            "Authorization",
            "X-Api-Key",
            "DB_PASSWORD",
            "set-cookie",
            "sessionid",
        ] {
            assert!(s.is_sensitive_key(key), "{key}");
        }
        for key in ["user_agent", "content-type", "request_id"] {
            assert!(!s.is_sensitive_key(key), "{key}");
        }
    }

    #[test]
    fn disabled_scrubbing_compiles_nothing() {
        assert!(matches!(
            Scrubber::new(&ScrubOptions::disabled(), None),
            Ok(None)
        ));
    }
}
