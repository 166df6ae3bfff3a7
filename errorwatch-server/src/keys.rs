//! API keys: generated once, stored only as an HMAC, looked up from memory.
//!
//! The set of keys is small, so the server keeps all their hashes in memory and refreshes
//! them from the store every 30 s, or on a miss at most once a second. A flood of bad keys,
//! well-formed or not, never reaches the store on every request.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::store::{ProjectAuth, Store};

/// Whether two secrets (keys, tokens, their hashes) are equal, compared in constant time: how
/// long it takes says nothing about where they differ.
pub(crate) fn same_secret(a: &str, b: &str) -> bool {
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

const REFRESH_EVERY: Duration = Duration::from_secs(30);
const REFRESH_ON_MISS_AT_MOST: Duration = Duration::from_secs(1);

/// Whether `key` has the ErrorWatch format: `ew_live_`/`ew_test_` + 32 or more of
/// `[A-Za-z0-9_-]`.
pub fn has_valid_format(key: &str) -> bool {
    errorwatch_protocol::api_key::is_well_formed(key)
}

/// A new key: `ew_live_` + base64url (no padding) of 24 random bytes.
///
/// # Errors
///
/// When the operating system gives no random bytes.
pub fn generate() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes)?;
    Ok(format!(
        "ew_live_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    ))
}

/// The lowercase hex HMAC-SHA256 of `key` under `secret`: all the store ever sees.
pub fn hash(secret: &[u8], key: &str) -> String {
    hash_with(keyed(secret), key)
}

/// HMAC-SHA256 keyed with `secret`, before any message.
fn keyed(secret: &[u8]) -> Hmac<Sha256> {
    // HMAC takes keys of any length, so this cannot fail.
    <Hmac<Sha256> as Mac>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"))
}

fn hash_with(mut mac: Hmac<Sha256>, key: &str) -> String {
    mac.update(key.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// The first characters of a key, kept to tell keys apart in listings.
pub fn prefix(key: &str) -> String {
    key.chars().take(12).collect()
}

/// Hashes of live keys, with their projects' settings.
pub struct KeyCache {
    /// Keyed once: every request's key is hashed from a copy (keying costs two of the four
    /// blocks a hash takes).
    mac: Hmac<Sha256>,
    keys: RwLock<Loaded>,
}

/// Never the secret nor the hashes.
impl std::fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyCache").finish_non_exhaustive()
    }
}

struct Loaded {
    by_hash: HashMap<String, ProjectAuth>,
    loaded_at: Option<Instant>,
}

impl KeyCache {
    /// An empty cache; [`KeyCache::refresh`] fills it.
    pub fn new(secret: &[u8]) -> KeyCache {
        KeyCache {
            mac: keyed(secret),
            keys: RwLock::new(Loaded {
                by_hash: HashMap::new(),
                loaded_at: None,
            }),
        }
    }

    /// The hash of `key` under this server's secret.
    pub fn hash(&self, key: &str) -> String {
        hash_with(self.mac.clone(), key)
    }

    /// Reloads every key from the store.
    ///
    /// # Errors
    ///
    /// When the store cannot be read ([`StoreError`](crate::store::StoreError)); the cache
    /// keeps the keys it had.
    pub async fn refresh(&self, store: &Store) -> Result<(), crate::store::StoreError> {
        let keys = store.all_keys().await?;
        let by_hash = keys
            .into_iter()
            .map(|auth| (auth.key_hash.clone(), auth))
            .collect();
        let mut loaded = self.keys.write().unwrap_or_else(|e| e.into_inner());
        *loaded = Loaded {
            by_hash,
            loaded_at: Some(Instant::now()),
        };
        Ok(())
    }

    fn lookup(&self, hash: &str) -> (Option<ProjectAuth>, Option<Instant>) {
        let loaded = self.keys.read().unwrap_or_else(|e| e.into_inner());
        let found = loaded
            .by_hash
            .get(hash)
            .filter(|auth| same_secret(&auth.key_hash, hash))
            .cloned();
        (found, loaded.loaded_at)
    }

    /// The project a well-formed key opens, if any.
    pub async fn authenticate(&self, store: &Store, key: &str) -> Option<ProjectAuth> {
        let hash = self.hash(key);
        let (found, loaded_at) = self.lookup(&hash);
        let stale = loaded_at.is_none_or(|at| at.elapsed() >= REFRESH_EVERY);
        let may_retry = loaded_at.is_none_or(|at| at.elapsed() >= REFRESH_ON_MISS_AT_MOST);
        if found.is_some() && !stale {
            return found;
        }
        if stale || may_retry {
            // A key created by another process (the CLI) shows up here.
            let _ = self.refresh(store).await;
            return self.lookup(&hash).0;
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_well_formed_and_hashed_as_lowercase_hex() {
        let key = generate().expect("random bytes");
        assert!(
            key.starts_with("ew_live_") && has_valid_format(&key),
            "{key}"
        );
        assert_eq!(key.len(), "ew_live_".len() + 32);
        let hashed = hash(b"secret", &key);
        assert_eq!(hashed.len(), 64);
        assert!(hashed
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)));
        assert_ne!(
            hashed,
            hash(b"another secret", &key),
            "changing the secret changes every hash"
        );
        let cache = KeyCache::new(b"secret");
        assert_eq!(
            cache.hash(&key),
            hashed,
            "the cache's copy of the keyed HMAC"
        );
        assert_eq!(cache.hash(&key), hashed, "and again, from a fresh copy");
        // RFC 4231, test case 2.
        assert_eq!(
            hash(b"Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert!(!has_valid_format("ew_live_short"));
        assert!(!has_valid_format(
            "sk_live_0123456789012345678901234567890123"
        ));
    }
}
