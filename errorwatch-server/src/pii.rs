//! The personal data the production server removes from what it stores and shows: e-mail
//! addresses, IPv4 addresses, card-like numbers, `password`/`token`-like assignments and
//! bearer tokens in the stack text and the message an issue is titled with.

use std::sync::LazyLock;

use regex::Regex;

struct Pattern {
    regex: Regex,
    replacement: &'static str,
}

static PATTERNS: LazyLock<Vec<Pattern>> = LazyLock::new(|| {
    [
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
    ]
    .into_iter()
    .map(|(pattern, replacement)| Pattern {
        // The patterns are constants: a failure here is a bug caught by the first test run.
        regex: Regex::new(pattern)
            .unwrap_or_else(|error| panic!("invalid built-in pattern {pattern}: {error}")),
        replacement,
    })
    .collect()
});

/// `text` with its personal data replaced.
pub(crate) fn scrub(text: &str) -> String {
    let mut result = text.to_owned();
    for pattern in PATTERNS.iter() {
        if pattern.regex.is_match(&result) {
            result = pattern
                .regex
                .replace_all(&result, pattern.replacement)
                .into_owned();
        }
    }
    result
}

#[cfg(test)]
mod tests {
    #[test]
    fn personal_data_is_replaced() {
        assert_eq!(
            super::scrub("carol@example.com from 192.168.1.20 sent Bearer abc.def"),
            "[email] from [ip] sent Bearer [filtered]"
        );
    }
}
