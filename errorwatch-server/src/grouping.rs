//! Grouping events into issues, exactly as the production server does, and its duplicate key.
//!
//! The first rule that applies wins; the group key is global, with the project inside the hash:
//! 1. the SDK's fingerprint (when not empty): `sha1(project|sdk|fingerprint)`;
//! 2. a v2 or envelope event with a non-empty exception type and value:
//!    `sha256(project|type|cleaned value|file|function)` of the first frame not marked out of
//!    the application (`unknown` without one; `anonymous` without a function);
//! 3. otherwise `sha1(project|type|file without ?query or #hash|line||depth|top frames)`, where
//!    the type is read from the message (`FooError:`) and depth and top frames come from the
//!    stack text's first five `at f (file:line:col)` or `f@file:line:col` lines.

use std::borrow::Cow;
use std::sync::LazyLock;

use errorwatch_protocol::validate::{Accepted, Kind};
use errorwatch_protocol::{limits, text};
use regex::Regex;
use sha1::Sha1;
use sha2::{Digest, Sha256};

fn regex(pattern: &str) -> Regex {
    // The patterns are constants: a failure here is a bug caught by the first test run.
    Regex::new(pattern)
        .unwrap_or_else(|error| panic!("invalid built-in pattern {pattern}: {error}"))
}

// JavaScript's `\b` and `\d` are ASCII-only: so are these (`(?-u:...)`).
static HEX_ADDRESS: LazyLock<Regex> = LazyLock::new(|| regex(r"(?i)0x[0-9a-f]+"));
static UUID: LazyLock<Regex> = LazyLock::new(|| {
    regex(r"(?i)(?-u:\b)[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}(?-u:\b)")
});
static NUMBER: LazyLock<Regex> = LazyLock::new(|| regex(r"(?-u:\b)[0-9]{4,}(?-u:\b)"));
static QUOTED: LazyLock<Regex> = LazyLock::new(|| regex(r#""[^"]{0,100}""#));
static SINGLE_QUOTED: LazyLock<Regex> = LazyLock::new(|| regex(r"'[^']{0,100}'"));
static ERROR_TYPE: LazyLock<Regex> = LazyLock::new(|| regex(r"^([A-Z][a-zA-Z]*Error):"));
static CHROME_FRAME: LazyLock<Regex> =
    LazyLock::new(|| regex(r"at\s+(?:(.+?)\s+\()?\s*(.+?):([0-9]+):([0-9]+)\)?"));
static FIREFOX_FRAME: LazyLock<Regex> = LazyLock::new(|| regex(r"^(.+?)@(.+?):([0-9]+):([0-9]+)"));

/// Replaces the parts of an error message that vary between occurrences of one problem:
/// hex addresses, UUIDs, whole numbers of 4 or more digits and quoted strings, in that order.
pub fn clean_value(value: &str) -> String {
    // A pattern that needs a literal the text lacks is not run: a search costs far more than a
    // `contains`. Each test is made on the text as the replacements before left it.
    let mut value = value.to_owned();
    if value.contains("0x") || value.contains("0X") {
        replace_in(&mut value, &HEX_ADDRESS, "<addr>");
    }
    if value.contains('-') {
        replace_in(&mut value, &UUID, "<uuid>");
    }
    replace_in(&mut value, &NUMBER, "<num>");
    if value.contains('"') {
        replace_in(&mut value, &QUOTED, "<str>");
    }
    if value.contains('\'') {
        replace_in(&mut value, &SINGLE_QUOTED, "<str>");
    }
    value
}

/// Replaces every match of `pattern` in `text`; a text without one is neither searched twice
/// nor copied.
pub(crate) fn replace_in(text: &mut String, pattern: &Regex, replacement: &str) {
    if let Cow::Owned(replaced) = pattern.replace_all(text, replacement) {
        *text = replaced;
    }
}

/// Which rule grouped an event, for the issue page's "why grouped like this".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// The SDK sent a fingerprint.
    SdkFingerprint,
    /// The exception's type, cleaned value and culprit frame.
    Exception,
    /// The file, line and stack shape.
    Location,
}

/// The group key of an accepted event in `project_id`, and the rule that made it.
pub fn fingerprint(project_id: i64, event: &Accepted) -> (String, Rule) {
    if let Some(fingerprint) = event.sdk_fingerprint.as_deref().filter(|f| !f.is_empty()) {
        let key = hex_digest_of::<Sha1>(&[&project_id.to_string(), "sdk", fingerprint]);
        return (key, Rule::SdkFingerprint);
    }
    let typed = event.kind != Kind::V1
        && event
            .exception_type
            .as_deref()
            .is_some_and(|t| !t.is_empty())
        && event
            .exception_value
            .as_deref()
            .is_some_and(|v| !v.is_empty());
    if typed {
        let project = project_id.to_string();
        let cleaned = clean_value(event.exception_value.as_deref().unwrap_or_default());
        let mut parts = vec![
            project.as_str(),
            event.exception_type.as_deref().unwrap_or_default(),
            &cleaned,
        ];
        match event.frames.iter().find(|f| f.in_app != Some(false)) {
            Some(frame) => {
                // JavaScript writes a missing file as `undefined`.
                parts.push(frame.filename.as_deref().unwrap_or("undefined"));
                parts.push(
                    frame
                        .function
                        .as_deref()
                        .filter(|s| !s.is_empty())
                        .unwrap_or("anonymous"),
                );
            }
            None => parts.push("unknown"),
        }
        return (hex_digest_of::<Sha256>(&parts), Rule::Exception);
    }
    let error_type = ERROR_TYPE
        .captures(&event.message)
        .and_then(|c| c.get(1))
        .map_or("Error", |m| m.as_str());
    let file = event.file.split(['?', '#']).next().unwrap_or_default();
    let frames = stack_frames(&event.stack);
    let top: Vec<&str> = frames.iter().take(3).map(String::as_str).collect();
    let key = hex_digest::<Sha1>(&format!(
        "{project_id}|{error_type}|{file}|{}||{}|{}",
        event.line,
        frames.len(),
        top.join("|")
    ));
    (key, Rule::Location)
}

/// The first five frames of a stack text, as `function:line:col`.
fn stack_frames(stack: &str) -> Vec<String> {
    let mut frames = Vec::new();
    for line in stack.split('\n') {
        if frames.len() >= 5 {
            break;
        }
        let found = CHROME_FRAME
            .captures(line)
            .or_else(|| FIREFOX_FRAME.captures(line));
        if let Some(c) = found {
            let function = c.get(1).map_or("anonymous", |m| m.as_str());
            let function = if function.is_empty() {
                "anonymous"
            } else {
                function
            };
            frames.push(format!("{function}:{}:{}", &c[3], &c[4]));
        }
    }
    frames
}

/// The issue's title: `"{Type}: {value}"` trimmed, the value cut at 200 characters; the message
/// stands in for a missing value.
pub fn title(event: &Accepted, scrubbed_message: &str) -> String {
    let ty = text::js_trim(event.exception_type.as_deref().unwrap_or_default());
    let mut value =
        text::js_trim(event.exception_value.as_deref().unwrap_or(scrubbed_message)).to_owned();
    if text::js_len(&value) > limits::TITLE_VALUE {
        text::truncate_plain(&mut value, limits::TITLE_VALUE);
        value.push('…');
    }
    match (ty.is_empty(), value.is_empty()) {
        (false, false) => format!("{ty}: {value}"),
        (false, true) => ty.to_owned(),
        (true, false) => value,
        (true, true) => "Error".to_owned(),
    }
}

/// The key of the duplicate window. Events and envelopes keep separate namespaces; a v2 event's
/// key is its type, raw value and file, a v1 event's and an envelope's its message, file and
/// line.
pub fn dedupe_key(project_id: i64, event: &Accepted) -> String {
    match event.kind {
        Kind::V2 => format!(
            "evt:{project_id}|{}|{}|{}",
            event.exception_type.as_deref().unwrap_or_default(),
            event.exception_value.as_deref().unwrap_or_default(),
            event.file
        ),
        Kind::V1 => format!(
            "evt:{project_id}|{}|{}|{}",
            event.message, event.file, event.line
        ),
        Kind::Envelope => format!(
            "env:{project_id}|{}|{}|{}",
            event.message, event.file, event.line
        ),
    }
}

fn hex_digest<D: Digest>(text: &str) -> String {
    hex::encode(D::digest(text.as_bytes()))
}

/// [`hex_digest`] of `parts` joined with `|`, without writing the joined text.
fn hex_digest_of<D: Digest>(parts: &[&str]) -> String {
    let mut digest = D::new();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            digest.update(b"|");
        }
        digest.update(part.as_bytes());
    }
    hex::encode(digest.finalize())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// [`clean_value`] asking every pattern.
    fn clean_value_each(value: &str) -> String {
        let value = HEX_ADDRESS.replace_all(value, "<addr>");
        let value = UUID.replace_all(&value, "<uuid>");
        let value = NUMBER.replace_all(&value, "<num>");
        let value = QUOTED.replace_all(&value, "<str>");
        SINGLE_QUOTED.replace_all(&value, "<str>").into_owned()
    }

    #[test]
    fn exception_groups_hash_the_documented_text() {
        use errorwatch_protocol::validate;
        use serde_json::json;

        let cases = [
            (
                json!([{ "filename": "src/a.js", "function": "pay", "in_app": true }]),
                "7|TypeError|order <num> failed|src/a.js|pay",
            ),
            (
                json!([{ "filename": "src/a.js", "function": "", "in_app": true }]),
                "7|TypeError|order <num> failed|src/a.js|anonymous",
            ),
            (
                json!([{ "filename": "lib.js", "function": "f", "in_app": false }]),
                "7|TypeError|order <num> failed|unknown",
            ),
            (json!([]), "7|TypeError|order <num> failed|unknown"),
        ];
        for (frames, text) in cases {
            let body = json!({
                "exception": { "type": "TypeError", "value": "order 12345 failed" },
                "frames": frames,
            });
            let accepted = validate::event(&body, 0).expect("a valid event");
            assert_eq!(
                fingerprint(7, &accepted),
                (hex_digest::<Sha256>(text), Rule::Exception),
                "{text}"
            );
        }
    }

    #[test]
    fn parts_are_digested_as_their_joined_text() {
        for parts in [
            &["1", "sdk", "a|b"][..],
            &["", ""],
            &["only"],
            &["1", "T", "v", "f", "g"],
        ] {
            assert_eq!(
                hex_digest_of::<Sha256>(parts),
                hex_digest::<Sha256>(&parts.join("|"))
            );
        }
    }

    proptest! {
        #[test]
        fn skipping_patterns_changes_nothing(
            value in r#"([0-9a-fA-FxX '"_-]|0x1f|0X2E|12345|550e8400-e29b-41d4-a716-446655440000){0,12}"#
        ) {
            prop_assert_eq!(clean_value(&value), clean_value_each(&value));
        }
    }

    #[test]
    fn values_are_cleaned_in_order_on_ascii_word_boundaries() {
        assert_eq!(
            clean_value("user 12345 at 0xdeadBEEF with id 550e8400-e29b-41d4-a716-446655440000 named \"bob\""),
            "user <num> at <addr> with id <uuid> named <str>"
        );
        assert_eq!(clean_value("port 80 and 'x'"), "port 80 and <str>");
        assert_eq!(
            clean_value("order12345 a_1234"),
            "order12345 a_1234",
            "no boundary"
        );
        assert_eq!(
            clean_value("١٢٣٤ and １２３４"),
            "١٢٣٤ and １２３４",
            "only ASCII digits"
        );
    }

    #[test]
    fn stack_frames_read_chrome_and_firefox_lines() {
        let frames = stack_frames(
            "Error: x\n    at handler (/srv/app.js:10:5)\nf@/srv/b.js:2:3\nat /srv/c.js:1:1",
        );
        assert_eq!(frames, ["handler:10:5", "f:2:3", "anonymous:1:1"]);
    }
}
