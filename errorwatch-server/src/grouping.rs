//! Grouping events into issues, exactly as the production server does.
//!
//! The first rule that applies wins; the group key is global, with the project inside the hash:
//! 1. an SDK fingerprint: `sha1(project|sdk|fingerprint)`;
//! 2. an exception type and value: `sha256(project|type|cleaned value|file|function)` of the
//!    culprit frame (`unknown` without frames, `anonymous` without a function), no line;
//! 3. otherwise `sha1(project|type|file without ?query or #hash|line)`.

use std::sync::LazyLock;

use regex::Regex;
use sha1::Sha1;
use sha2::{Digest, Sha256};

use crate::validate::Accepted;

static HEX_ADDRESS: LazyLock<Regex> = LazyLock::new(|| regex(r"0x[0-9a-fA-F]+"));
static UUID: LazyLock<Regex> = LazyLock::new(|| {
    regex(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
});
static NUMBER: LazyLock<Regex> = LazyLock::new(|| regex(r"\d{4,}"));
static QUOTED: LazyLock<Regex> = LazyLock::new(|| regex(r#""[^"]{0,100}"|'[^']{0,100}'"#));

fn regex(pattern: &str) -> Regex {
    // The patterns are constants: a failure here is a bug caught by the first test run.
    Regex::new(pattern)
        .unwrap_or_else(|error| panic!("invalid built-in pattern {pattern}: {error}"))
}

/// Replaces the parts of an error message that vary between occurrences of one problem:
/// hex addresses, UUIDs, numbers of 4 or more digits and quoted strings, in that order.
pub fn clean_value(value: &str) -> String {
    let value = HEX_ADDRESS.replace_all(value, "<addr>");
    let value = UUID.replace_all(&value, "<uuid>");
    let value = NUMBER.replace_all(&value, "<num>");
    QUOTED.replace_all(&value, "<str>").into_owned()
}

/// The group key of an accepted event in `project_id`.
pub fn fingerprint(project_id: i64, event: &Accepted) -> String {
    if let Some(fingerprint) = &event.fingerprint {
        return hex_digest::<Sha1>(&format!("{project_id}|sdk|{fingerprint}"));
    }
    if event.has_exception {
        let (file, function) = match &event.culprit {
            Some(frame) => (
                frame.filename.as_str(),
                frame.function.as_deref().unwrap_or("anonymous"),
            ),
            None => ("unknown", "anonymous"),
        };
        return hex_digest::<Sha256>(&format!(
            "{project_id}|{}|{}|{file}|{function}",
            event.error_type,
            clean_value(&event.error_value)
        ));
    }
    let file = event.file.as_deref().unwrap_or("");
    let file = file.split(['?', '#']).next().unwrap_or(file);
    let line = event.line.map(|l| l.to_string()).unwrap_or_default();
    hex_digest::<Sha1>(&format!("{project_id}|{}|{file}|{line}", event.error_type))
}

/// The issue's title: `"{Type}: {value}"`, the value cut at 200 characters.
pub fn title(event: &Accepted) -> String {
    let value: String = event.error_value.chars().take(200).collect();
    if value.is_empty() {
        event.error_type.clone()
    } else {
        format!("{}: {value}", event.error_type)
    }
}

/// The key of the 10-second duplicate window.
pub fn dedupe_key(project_id: i64, event: &Accepted) -> String {
    match event.version {
        crate::validate::Version::V1 => format!(
            "{project_id}|{}|{}|{}",
            event.message.as_deref().unwrap_or(""),
            event.file.as_deref().unwrap_or(""),
            event.line.unwrap_or(0)
        ),
        crate::validate::Version::V2 => format!(
            "{project_id}|{}|{}|{}",
            event.error_type,
            event.error_value,
            event.file.as_deref().unwrap_or("")
        ),
    }
}

fn hex_digest<D: Digest>(text: &str) -> String {
    hex::encode(D::digest(text.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_cleaned_in_order() {
        assert_eq!(
            clean_value("user 12345 at 0xdeadBEEF with id 550e8400-e29b-41d4-a716-446655440000 named \"bob\""),
            "user <num> at <addr> with id <uuid> named <str>"
        );
        assert_eq!(clean_value("port 80 and 'x'"), "port 80 and <str>");
    }
}
