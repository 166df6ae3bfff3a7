//! A corpus of secrets in every field of an event: none reaches the wire, and harmless
//! look-alikes do.

mod support;

use std::time::Duration;

use errorwatch_sdk::{
    protocol::{Frame, Request},
    Breadcrumb, Event, Exception, Level, Options, ScrubOptions, User,
};
use serde_json::json;
use support::*;

const JWT: &str =
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";
const PEM: &str = "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA7PEMSECRETbody\nmorePEMSECRETbody==\n-----END RSA PRIVATE KEY-----";
const OTHER_KEY: &str = "ew_live_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789";

/// Each secret, and a fragment of it that must not appear anywhere in the bodies.
fn secrets() -> Vec<(&'static str, &'static str)> {
    vec![
        (
            "Authorization: Bearer sk9TOKENvalue123456",
            "sk9TOKENvalue123456",
        ),
        (
            "token sent was Bearer BEARERsecret98765",
            "BEARERsecret98765",
        ),
        (JWT, "dozjgNryP4J3jVmNHl0w5N"),
        (
            "postgres://admin:SuperSecretPw1@db.internal:5432/app",
            "SuperSecretPw1",
        ),
        (
            "https://api.example.com/v1?api_key=QUERYSECRET123&page=2",
            "QUERYSECRET123",
        ),
        (
            "https://maps.example.com/?key=SHORTKEYSECRET&q=x",
            "SHORTKEYSECRET",
        ),
        (
            "login failed password=hunter2secret for bob",
            "hunter2secret",
        ),
        (r#"{"client_secret": "JSONSECRETvalue"}"#, "JSONSECRETvalue"),
        (
            "aws key AKIAIOSFODNN7EXAMPLE in config",
            "AKIAIOSFODNN7EXAMPLE",
        ),
        ("paid with 4111 1111 1111 1111 today", "4111 1111 1111 1111"),
        ("card 5500000000000004 declined", "5500000000000004"),
        (PEM, "PEMSECRET"),
        (OTHER_KEY, "AbCdEfGhIjKlMnOpQrStUvWxYz"),
        (API_KEY, "TESTKEYtestkey"),
        (
            "github ghp_abcdefghijklmnopqrstuvwxyz0123456789AB",
            "ghp_abcdefghijklmnop",
        ),
        ("stripe sk_live_STRIPEsecret12345678", "STRIPEsecret"),
    ]
}

/// Strings that look a little like secrets and must arrive intact.
const LOOK_ALIKES: &[&str] = &[
    "tokenizer failed at byte 3",
    "order 4111 1111 1111 1112 shipped",
    "epoch 1700000000000 ms",
    "https://example.com/path?id=42&page=2",
    "AKIA-not-a-key",
    "ew_live_short",
    "the word Bearer alone",
];

fn event_full_of(secret: &str) -> Event {
    let mut event = Event::message(format!("message {secret}"), Level::Error);
    event.exception = Some(Exception::new("LeakError", format!("value {secret}")));
    event.stack = Some(format!("    at app::run (src/main.rs:1:1) {secret}"));
    event.frames = vec![Frame {
        filename: format!("src/{secret}.rs"),
        function: Some(format!("app::{secret}")),
        lineno: Some(1),
        ..Frame::default()
    }];
    event.url = Some(format!(
        "https://svc.example.com/cb?q={}",
        secret.replace(' ', "+")
    ));
    event.tags.insert("note".into(), format!("tag {secret}"));
    event.tags.insert("password".into(), "TAGKEYSECRET".into());
    event
        .extra
        .insert("note".into(), json!(format!("extra {secret}")));
    event.extra.insert(
        "nested".into(),
        json!({ "db": { "password": "NESTEDKEYSECRET", "notes": [format!("deep {secret}")] } }),
    );
    event
        .contexts
        .insert("auth".into(), json!({ "session": "CTXKEYSECRET" }));
    event
        .contexts
        .insert("app".into(), json!({ "note": format!("ctx {secret}") }));
    event.user = Some(User {
        id: Some("u-1".into()),
        username: Some(format!("user {secret}")),
        ..User::default()
    });
    event.request = Some(Request {
        url: Some(format!(
            "https://svc.example.com/login?token=URLTOKENSECRET&x={}",
            secret.len()
        )),
        method: Some("POST".into()),
        headers: [
            (
                "Authorization".to_owned(),
                "Basic SEADERBASICSECRET".to_owned(),
            ),
            ("Cookie".to_owned(), "sid=COOKIEKEYSECRET".to_owned()),
            ("X-Api-Key".to_owned(), "HEADERKEYSECRET".to_owned()),
            ("X-Note".to_owned(), format!("header {secret}")),
        ]
        .into_iter()
        .collect(),
        query_string: Some("token=QSTOKENSECRET&page=1".into()),
        data: Some(json!({ "password": "BODYKEYSECRET", "note": format!("body {secret}") })),
    });
    event.breadcrumbs = vec![Breadcrumb::new("http", format!("crumb {secret}"))
        .with_data("token", "CRUMBKEYSECRET")
        .with_data("note", format!("crumb data {secret}"))];
    event.fingerprint = Some(format!("fp {secret}"));
    event
}

const KEY_SECRETS: &[&str] = &[
    "TAGKEYSECRET",
    "NESTEDKEYSECRET",
    "CTXKEYSECRET",
    "URLTOKENSECRET",
    "SEADERBASICSECRET",
    "COOKIEKEYSECRET",
    "HEADERKEYSECRET",
    "QSTOKENSECRET",
    "BODYKEYSECRET",
    "CRUMBKEYSECRET",
];

/// Sends `events` through the real transport and returns the bodies as they reached the wire.
fn send_all(events: Vec<Event>) -> Vec<String> {
    let server = Listener::healthy();
    let client = client(options(&server.url).max_in_flight(1));
    let count = events.len();
    for event in events {
        client.capture_event(event, &errorwatch_sdk::Scope::default());
    }
    assert!(client.flush(Duration::from_secs(10)));
    assert_eq!(client.stats().sent as usize, count, "{:?}", client.stats());
    server
        .requests()
        .into_iter()
        .map(|request| String::from_utf8(request.body).expect("utf-8 bodies"))
        .collect()
}

#[test]
fn no_secret_from_the_corpus_reaches_the_wire() {
    let corpus = secrets();
    let bodies = send_all(corpus.iter().map(|(s, _)| event_full_of(s)).collect());
    assert_eq!(bodies.len(), corpus.len());
    for body in &bodies {
        for (secret, fragment) in &corpus {
            assert!(
                !body.contains(fragment),
                "{fragment:?} (from {secret:?}) leaked: {body}"
            );
        }
        for fragment in KEY_SECRETS {
            assert!(!body.contains(fragment), "{fragment} leaked: {body}");
        }
        assert!(body.contains("[Filtered]"));
        assert!(body.contains("\"LeakError\""), "the error itself is kept");
    }
}

#[test]
fn harmless_look_alikes_arrive_intact() {
    let bodies = send_all(LOOK_ALIKES.iter().map(|s| event_full_of(s)).collect());
    for (body, look_alike) in bodies.iter().zip(LOOK_ALIKES) {
        let event: serde_json::Value = serde_json::from_str(body).expect("json");
        let message = event["message"].as_str().expect("message");
        assert_eq!(message, format!("message {look_alike}"));
        assert_eq!(event["exception"]["value"], format!("value {look_alike}"));
        assert_eq!(event["extra"]["note"], format!("extra {look_alike}"));
    }
}

#[test]
fn a_pattern_that_does_not_compile_refuses_the_options_rather_than_sending_unscrubbed() {
    let options = options(&dead_url()).scrub(ScrubOptions::default().pattern("ACME-(\\d"));
    match errorwatch_sdk::Client::new(options) {
        Err(errorwatch_sdk::OptionsError::Scrubbing { reason }) => {
            assert!(reason.contains("unclosed group"), "{reason}");
        }
        Err(other) => panic!("refused for another reason: {other}"),
        Ok(_) => panic!("a client that could send unscrubbed events"),
    }
}

#[test]
fn users_add_keys_and_patterns_or_switch_scrubbing_off() {
    let custom = ScrubOptions::default().key("ssn").pattern(r"ACME-\d{6}");
    let events =
        errorwatch_sdk::testing::capture_events_with(Options::default().scrub(custom), || {
            let mut event = Event::message("ticket ACME-123456 opened", Level::Info);
            event
                .extra
                .insert("customer_ssn".into(), json!("123-45-6789"));
            errorwatch_sdk::capture_event(event);
        });
    assert_eq!(
        events[0].message.as_deref(),
        Some("ticket [Filtered] opened")
    );
    assert_eq!(events[0].extra["customer_ssn"], "[Filtered]");

    let raw = errorwatch_sdk::testing::capture_events_with(
        Options::default().scrub(ScrubOptions::disabled()),
        || {
            errorwatch_sdk::capture_message("password=visible", Level::Info);
        },
    );
    assert_eq!(raw[0].message.as_deref(), Some("password=visible"));
}

#[test]
fn before_send_additions_are_scrubbed_too() {
    let options = Options::default().before_send(|mut event| {
        event
            .tags
            .insert("added".into(), "Bearer ADDEDINHOOK12345".into());
        Some(event)
    });
    let events = errorwatch_sdk::testing::capture_events_with(options, || {
        errorwatch_sdk::capture_message("hello", Level::Info);
    });
    assert_eq!(events[0].tag("added"), Some("Bearer [Filtered]"));
}
