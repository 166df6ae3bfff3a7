//! Signing in to the pages: the admin key, exchanged once for a session cookie.
//!
//! A session is a signed token, not a row: `v1.<issued ms>.<nonce>.<mac>`, where the MAC is an
//! HMAC-SHA256 keyed with the admin key. Every server on one database accepts it (they share
//! the key), nothing is written per sign-in, and changing `ADMIN_API_KEY` ends every session.
//! A session lasts [`SESSION_MS`]; signing out removes the cookie from the browser.
//!
//! Each session has its CSRF token, an HMAC of its nonce: forms carry it in a hidden field, and
//! every action checks it. The cookie is `SameSite=Strict` as well, so a cross-site request
//! does not even carry the session.

use std::sync::Arc;

use crate::keys::same_secret;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Redirect, Response};
use cookie::{Cookie, SameSite};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::app::{now_ms, AppState};

/// The cookie's name.
pub(super) const COOKIE: &str = "errorwatch_session";
/// How long a session lasts.
pub(super) const SESSION_MS: i64 = 12 * 3_600_000;
/// A token issued this far in the future is refused (servers' clocks differ a little).
const CLOCK_SKEW_MS: i64 = 60_000;

/// A signed-in request, with the CSRF token its forms must carry.
pub(crate) struct Session {
    pub(crate) csrf: String,
}

impl FromRequestParts<Arc<AppState>> for Session {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Session, Response> {
        let key = state.config.admin_api_key.as_deref();
        let token = session_cookie(&parts.headers);
        match key
            .zip(token)
            .and_then(|(key, token)| verify(key, &token, now_ms()))
        {
            Some(csrf) => Ok(Session { csrf }),
            None => Err(to_sign_in(parts)),
        }
    }
}

impl Session {
    /// Whether `given` is this session's CSRF token.
    pub(crate) fn accepts(&self, given: &str) -> bool {
        same_secret(given, &self.csrf)
    }
}

/// A redirect to the sign-in page that comes back to where the request was going (for a
/// page; an action's form goes back to the list).
fn to_sign_in(parts: &Parts) -> Response {
    let next = if parts.method == axum::http::Method::GET {
        parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
    } else {
        "/issues"
    };
    let query = serde_urlencoded::to_string([("next", next)]).unwrap_or_default();
    Redirect::to(&format!("/sign-in?{query}")).into_response()
}

/// The session token in the request's cookies.
fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|cookie| cookie.name() == COOKIE)
        .map(|cookie| cookie.value().to_owned())
}

/// A new session's token, or `None` without a random source.
pub(super) fn issue(key: &str, now: i64) -> Option<String> {
    let mut nonce = [0u8; 16];
    getrandom::fill(&mut nonce).ok()?;
    let nonce = hex::encode(nonce);
    Some(format!(
        "v1.{now}.{nonce}.{}",
        mac(key, &["session", &now.to_string(), &nonce])
    ))
}

/// The CSRF token of a valid, unexpired `token`.
fn verify(key: &str, token: &str, now: i64) -> Option<String> {
    let mut parts = token.split('.');
    let (version, issued, nonce, given) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if version != "v1" || parts.next().is_some() {
        return None;
    }
    let expected = mac(key, &["session", issued, nonce]);
    if !same_secret(given, &expected) {
        return None;
    }
    let issued: i64 = issued.parse().ok()?;
    let fresh = issued <= now + CLOCK_SKEW_MS && now - issued < SESSION_MS;
    fresh.then(|| mac(key, &["csrf", nonce]))
}

/// HMAC-SHA256 of the parts (joined by `|`) keyed with the admin key, as hex.
fn mac(key: &str, parts: &[&str]) -> String {
    // HMAC takes a key of any length; `new_from_slice` cannot fail for it.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key.as_bytes()) else {
        return String::new();
    };
    mac.update(parts.join("|").as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// The `Set-Cookie` value that starts a session (`Secure` when the request came over HTTPS).
pub(super) fn start_cookie(token: String, https: bool) -> HeaderValue {
    let cookie = Cookie::build((COOKIE, token))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(https)
        .max_age(cookie::time::Duration::milliseconds(SESSION_MS));
    header_value(cookie.to_string())
}

/// The `Set-Cookie` value that ends a session.
pub(super) fn end_cookie(https: bool) -> HeaderValue {
    let cookie = Cookie::build((COOKIE, ""))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(https)
        .max_age(cookie::time::Duration::ZERO);
    header_value(cookie.to_string())
}

fn header_value(text: String) -> HeaderValue {
    // A cookie of our own name and a hex token is always a valid header value.
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Whether the request reached the proxy in front of the server over HTTPS (the server itself
/// speaks plain HTTP): then the cookie is `Secure`.
pub(super) fn is_https(headers: &HeaderMap) -> bool {
    let forwarded_proto = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"));
    let forwarded = headers
        .get(header::FORWARDED)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("proto=https"));
    forwarded_proto || forwarded
}

/// Where to go after signing in: a path on this server, never another site.
pub(super) fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(next) if next.starts_with('/') && !next.starts_with("//") && !next.contains('\\') => {
            next
        }
        _ => "/issues",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_opens_a_session_until_it_expires() {
        let token = issue("admin-key", 1_000_000).unwrap();
        let csrf = verify("admin-key", &token, 1_000_000).unwrap();
        assert_eq!(csrf.len(), 64);
        assert_eq!(
            verify("admin-key", &token, 1_000_000 + SESSION_MS - 1),
            Some(csrf)
        );
        assert_eq!(verify("admin-key", &token, 1_000_000 + SESSION_MS), None);
        assert_eq!(
            verify("admin-key", &token, 1_000_000 - 2 * CLOCK_SKEW_MS),
            None
        );
    }

    #[test]
    fn a_token_is_refused_under_another_key_or_altered() {
        let token = issue("admin-key", 5).unwrap();
        assert_eq!(verify("other-key", &token, 5), None);
        let later = token.replacen("v1.5.", "v1.6.", 1);
        assert_eq!(verify("admin-key", &later, 6), None);
        assert_eq!(verify("admin-key", &format!("{token}.x"), 5), None);
        assert_eq!(verify("admin-key", "", 5), None);
    }

    #[test]
    fn two_sessions_have_different_csrf_tokens() {
        let a = verify("k", &issue("k", 1).unwrap(), 1).unwrap();
        let b = verify("k", &issue("k", 1).unwrap(), 1).unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn next_stays_on_this_server() {
        assert_eq!(
            safe_next(Some("/issues?status=resolved")),
            "/issues?status=resolved"
        );
        for outside in [
            "//evil.example/x",
            "https://evil.example",
            "/\\evil.example",
            "issues",
        ] {
            assert_eq!(safe_next(Some(outside)), "/issues", "{outside}");
        }
        assert_eq!(safe_next(None), "/issues");
    }

    #[test]
    fn the_cookie_is_http_only_and_same_site_strict() {
        let plain = start_cookie("t".into(), false);
        let plain = plain.to_str().unwrap();
        assert!(
            plain.contains("HttpOnly") && plain.contains("SameSite=Strict"),
            "{plain}"
        );
        assert!(!plain.contains("Secure"), "{plain}");
        let secure = start_cookie("t".into(), true);
        assert!(secure.to_str().unwrap().contains("Secure"));
        assert!(end_cookie(false).to_str().unwrap().contains("Max-Age=0"));
    }
}
