//! The personal data the production server removes from what it stores and shows: e-mail
//! addresses, IPv4 addresses, card-like numbers, `password`/`token`-like assignments and
//! bearer tokens in the stack text and the message an issue is titled with.

use std::sync::LazyLock;

use regex::{Regex, RegexSet};

use crate::grouping;

/// Each pattern and what replaces it, applied in this order.
const PATTERNS: [(&str, &str); 6] = [
    (r"[a-zA-Z0-9._%+-]+@[a-zA-Z0-9.-]+\.[a-zA-Z]{2,}", "[email]"),
    (
        r"(?-u:\b)[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}(?-u:\b)",
        "[ip]",
    ),
    (
        r"(?-u:\b)[0-9]{4}[- ]?[0-9]{4}[- ]?[0-9]{4}[- ]?[0-9]{4}(?-u:\b)",
        "[card]",
    ),
    (
        r#"(?i)["']?password["']?\s*[:=]\s*["'][^"']*["']"#,
        r#""password":"[filtered]""#,
    ),
    (
        r#"(?i)["']?(?:token|secret|api_?key|authorization)["']?\s*[:=]\s*["'][^"']*["']"#,
        r#""[filtered_key]":"[filtered]""#,
    ),
    (r"(?i)Bearer\s+[A-Za-z0-9._~+/=-]+", "Bearer [filtered]"),
];

// The patterns are constants: a failure here is a bug caught by the first test run.
static REGEXES: LazyLock<Vec<Regex>> = LazyLock::new(|| {
    PATTERNS
        .iter()
        .map(|(pattern, _)| {
            Regex::new(pattern)
                .unwrap_or_else(|error| panic!("invalid built-in pattern {pattern}: {error}"))
        })
        .collect()
});

/// All the patterns at once: one pass over a text says whether any matches.
static ANY: LazyLock<RegexSet> = LazyLock::new(|| {
    RegexSet::new(PATTERNS.iter().map(|(pattern, _)| pattern))
        .unwrap_or_else(|error| panic!("invalid built-in patterns: {error}"))
});

/// `text` with its personal data replaced.
pub(crate) fn scrub(text: &str) -> String {
    // Most texts hold none, and one pass of the set says so at a third of the cost of asking
    // each pattern. It is exact: when no pattern matches the text, none is replaced, so no
    // later pattern meets a text changed by an earlier one.
    if !ANY.is_match(text) {
        return text.to_owned();
    }
    let mut result = text.to_owned();
    for (regex, (_, replacement)) in REGEXES.iter().zip(PATTERNS) {
        grouping::replace_in(&mut result, regex, replacement);
    }
    result
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// [`scrub`] without the set's shortcut.
    fn scrub_each(text: &str) -> String {
        let mut result = text.to_owned();
        for (regex, (_, replacement)) in REGEXES.iter().zip(PATTERNS) {
            result = regex.replace_all(&result, replacement).into_owned();
        }
        result
    }

    proptest! {
        #[test]
        fn the_shortcut_changes_nothing(
            text in r#"([a-z0-9 .@:="'-]|password|token|Bearer |12\.4\.56\.7|4111 1111 1111 1111){0,12}"#
        ) {
            prop_assert_eq!(scrub(&text), scrub_each(&text));
        }
    }

    #[test]
    fn personal_data_is_replaced() {
        assert_eq!(
            super::scrub("carol@example.com from 192.168.1.20 sent Bearer abc.def"),
            "[email] from [ip] sent Bearer [filtered]"
        );
    }
}
