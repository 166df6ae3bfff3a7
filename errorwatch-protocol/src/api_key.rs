//! API keys: `ew_live_` or `ew_test_` followed by at least 32 of `[A-Za-z0-9_-]`.

/// The prefixes a key may start with.
pub const PREFIXES: [&str; 2] = ["ew_live_", "ew_test_"];
/// The fewest characters after the prefix.
pub const MIN_SECRET_LEN: usize = 32;

/// Whether `key` has the form of an API key (whether it opens a project is the server's
/// business).
///
/// ```
/// use errorwatch_protocol::api_key::is_well_formed;
/// assert!(is_well_formed("ew_test_abcdefghijklmnopqrstuvwxyz012345"));
/// assert!(!is_well_formed("ew_live_short"));
/// assert!(!is_well_formed("EW_LIVE_abcdefghijklmnopqrstuvwxyz012345"));
/// ```
pub fn is_well_formed(key: &str) -> bool {
    PREFIXES
        .iter()
        .find_map(|prefix| key.strip_prefix(prefix))
        .is_some_and(|secret| {
            secret.len() >= MIN_SECRET_LEN
                && secret
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        })
}
