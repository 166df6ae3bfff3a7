//! Replays `shared/conformance/vectors.json`, what the production ErrorWatch server answered and
//! stored for real requests, against this server over HTTP, and compares status, code, detail
//! paths, answer keys and flags, fingerprints, stored fields and group rows.
//!
//! The vectors live beside the checkout (`../shared/conformance/vectors.json`), or where
//! `ERRORWATCH_CONFORMANCE_VECTORS` points. Where this server deliberately differs from
//! production (an improvement), the vector is listed in [`improvement`] with its reason.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use errorwatch_server::Clock;
use serde_json::Value;
use support::{Answer, TestServer};

fn vectors_path() -> PathBuf {
    std::env::var_os("ERRORWATCH_CONFORMANCE_VECTORS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance/vectors.json")
        })
}

/// The vectors, or `None` outside CI when the shared folder is not beside the checkout.
fn load_vectors() -> Option<Value> {
    let path = vectors_path();
    match std::fs::read(&path) {
        Ok(bytes) => Some(serde_json::from_slice(&bytes).expect("vectors.json is JSON")),
        Err(error) if std::env::var_os("CI").is_none() => {
            eprintln!(
                "conformance vectors not found at {} ({error}); set ERRORWATCH_CONFORMANCE_VECTORS",
                path.display()
            );
            None
        }
        Err(error) => panic!("conformance vectors missing at {}: {error}", path.display()),
    }
}

/// What this server answers instead of production's, and why. `None`: the vector must match.
fn improvement(expect: &Value, body: &str) -> Option<(u16, &'static str)> {
    if expect["status"] != 500 {
        return None;
    }
    let parsed: Result<Value, _> = serde_json::from_str(body);
    Some(match parsed {
        // Production crashes on bodies that are not JSON; we say where the JSON broke.
        Err(_) => (400, "malformed JSON is a 400 with a reason, not a 500"),
        // Production crashes on dates JavaScript cannot represent; we reject them with a reason.
        Ok(parsed) if parsed.get("duration").is_none() => {
            (400, "an impossible date is a 400 with a reason, not a 500")
        }
        // Production's int4 column overflows; we store the check-in.
        Ok(_) => (200, "a duration beyond 2^31 is stored, not a 500"),
    })
}

struct Keys {
    valid: String,
    grouping: String,
}

async fn send(server: &TestServer, keys: &Keys, vector: &Value) -> Answer {
    let route = vector["route"].as_str().expect("route");
    let mut request = server.http.post(server.url(route));
    if let Some(content_type) = vector["content_type"].as_str() {
        request = request.header("content-type", content_type);
    }
    let headers = &vector["headers"];
    match headers["key"].as_str() {
        Some("valid") => request = request.header("X-API-Key", &keys.valid),
        Some("grouping") => request = request.header("X-API-Key", &keys.grouping),
        Some("missing") => {
            if let Some(literal) = headers["X-API-Key"].as_str() {
                request = request.header("X-API-Key", literal);
            }
        }
        _ => {
            let literal = headers["X-API-Key"].as_str().expect("a literal key");
            request = request.header("X-API-Key", literal);
        }
    }
    if let Some(extra) = headers["extra"].as_object() {
        for (name, value) in extra {
            let value = value
                .as_str()
                .unwrap_or_default()
                .replace("{key}", &keys.valid);
            request = request.header(name, value);
        }
    }
    let body = vector["body"].as_str().expect("body").to_owned();
    server.send(request.body(body)).await
}

/// Differences between what production answered (`expect`) and what we answered.
fn compare_answer(expect: &Value, answer: &Answer) -> Vec<String> {
    let mut wrong = Vec::new();
    if answer.status != expect["status"].as_u64().unwrap_or(0) as u16 {
        wrong.push(format!(
            "status {} (production {})",
            answer.status, expect["status"]
        ));
        return wrong;
    }
    let code = answer.body.get("code").and_then(Value::as_str);
    if code != expect["code"].as_str() {
        wrong.push(format!("code {code:?} (production {})", expect["code"]));
    }
    let paths: BTreeSet<String> = answer.paths().into_iter().collect();
    let expected_paths: BTreeSet<String> = expect["detail_paths"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p.as_str().map(str::to_owned))
        .collect();
    if paths != expected_paths {
        wrong.push(format!(
            "detail paths {paths:?} (production {expected_paths:?})"
        ));
    }
    if let Some(keys) = expect["body_keys"].as_array() {
        let ours: BTreeSet<&str> = answer
            .body
            .as_object()
            .map(|o| o.keys().map(String::as_str).collect())
            .unwrap_or_default();
        let theirs: BTreeSet<&str> = keys.iter().filter_map(Value::as_str).collect();
        if ours != theirs {
            wrong.push(format!("answer keys {ours:?} (production {theirs:?})"));
        }
    }
    if let Some(flags) = expect["flags"].as_object() {
        for (flag, value) in flags {
            if answer.body.get(flag) != Some(value) {
                wrong.push(format!(
                    "{flag} = {:?} (production {value})",
                    answer.body.get(flag)
                ));
            }
        }
    }
    wrong
}

async fn start() -> (TestServer, Keys, Clock) {
    let clock = Clock::manual();
    let server = TestServer::with({
        let clock = clock.clone();
        move |config| config.clock = clock
    })
    .await;
    // Fingerprints hash the project id: the grouping vectors' project must be id 1, and the
    // support server's first project is.
    assert_eq!(server.project, 1, "the first project gets id 1");
    let grouping = server.key.clone();
    let (_, valid) = server
        .server
        .create_project("conformance")
        .await
        .expect("a second project");
    (server, Keys { valid, grouping }, clock)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validation_vectors_match_production() {
    let Some(vectors) = load_vectors() else {
        return;
    };
    let (server, keys, _clock) = start().await;
    let mut failures = Vec::new();
    let mut improved = 0;
    let all = vectors["validation"]
        .as_array()
        .expect("validation vectors");
    for vector in all {
        let answer = send(&server, &keys, vector).await;
        let body = vector["body"].as_str().unwrap_or_default();
        let wrong = match improvement(&vector["expect"], body) {
            Some((status, reason)) => {
                improved += 1;
                if answer.status == status && (status != 400 || !answer.paths().is_empty()) {
                    Vec::new()
                } else {
                    vec![format!(
                        "status {} with {}: expected {status} ({reason})",
                        answer.status, answer.body
                    )]
                }
            }
            None => compare_answer(&vector["expect"], &answer),
        };
        if !wrong.is_empty() {
            failures.push(format!(
                "{}: {} [body {}; ours {}]",
                vector["id"].as_str().unwrap_or("?"),
                wrong.join("; "),
                truncate(body, 160),
                truncate(&answer.body.to_string(), 240),
            ));
        }
    }
    server.server.shutdown().await;
    assert!(
        failures.is_empty(),
        "{} of {} validation vectors differ from production ({improved} are listed improvements):\n{}",
        failures.len(),
        all.len(),
        failures.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dedup_vectors_match_production() {
    let Some(vectors) = load_vectors() else {
        return;
    };
    let (server, keys, clock) = start().await;
    let mut failures = Vec::new();
    let sequences = vectors["dedup"].as_array().expect("dedup vectors");
    for sequence in sequences {
        for (i, step) in sequence["steps"]
            .as_array()
            .expect("steps")
            .iter()
            .enumerate()
        {
            // The window is a clock the test moves: 10 s pass in no time, and exactly.
            clock.advance(Duration::from_millis(
                step["sleep_before_ms"].as_u64().unwrap_or(0),
            ));
            let answer = send(&server, &keys, step).await;
            let wrong = compare_answer(&step["expect"], &answer);
            if !wrong.is_empty() {
                failures.push(format!(
                    "{} step {i} ({}): {}",
                    sequence["id"].as_str().unwrap_or("?"),
                    step["note"].as_str().unwrap_or(""),
                    wrong.join("; ")
                ));
            }
        }
    }
    server.server.shutdown().await;
    assert!(
        failures.is_empty(),
        "{} dedup steps differ from production:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grouping_vectors_match_production() {
    let Some(vectors) = load_vectors() else {
        return;
    };
    let (server, keys, _clock) = start().await;
    let store = server.server.store().clone();
    let mut failures = Vec::new();
    let events = vectors["grouping"].as_array().expect("grouping vectors");
    // The fingerprint each vector's event was stored under, to compare group rows at the end.
    let mut stored_under: BTreeMap<String, String> = BTreeMap::new();
    for vector in events {
        let id = vector["id"].as_str().expect("id").to_owned();
        let before = store.event_count().await.expect("count");
        let answer = send(&server, &keys, vector).await;
        let mut wrong = compare_answer(&vector["expect"], &answer);
        let after = store.event_count().await.expect("count");
        if answer.status == 202 && after != before + 1 {
            wrong.push(format!(
                "202 but {} events stored (202 means stored)",
                after - before
            ));
        }
        if wrong.is_empty() && answer.status == 202 {
            let newest = store.events(1).await.expect("events");
            let event = &newest[0];
            stored_under.insert(id.clone(), event.fingerprint.clone());
            // Production lost these; we store them, so their fingerprint is ours to check
            // against the rule, not against production's missing row.
            let expected = &vector["stored"];
            if !vector["real_lost"].as_bool().unwrap_or(false) {
                wrong.extend(compare_stored(expected, vector, event));
            }
        }
        if !wrong.is_empty() {
            failures.push(format!("{id}: {}", wrong.join("; ")));
        }
    }
    // Group rows after the whole run: title, type, value, file, line, level, and membership.
    for vector in events {
        let id = vector["id"].as_str().expect("id");
        let (Some(fingerprint), Some(expected)) =
            (stored_under.get(id), vector["group"].as_object())
        else {
            continue;
        };
        if !vector["check_group"].as_bool().unwrap_or(true) {
            continue;
        }
        for other in vector["same_group_as"].as_array().into_iter().flatten() {
            let other = other.as_str().unwrap_or_default();
            if let Some(theirs) = stored_under.get(other) {
                if theirs != fingerprint {
                    failures.push(format!("{id}: not grouped with {other}"));
                }
            }
        }
        let group = store
            .group(fingerprint)
            .await
            .expect("group query")
            .expect("the event's group exists");
        let ours = serde_json::to_value(&group).expect("group as JSON");
        let mut wrong = Vec::new();
        for (field, ours_field) in [
            ("title", "title"),
            ("exception_type", "type"),
            ("exception_value", "value"),
            ("file", "file"),
            ("line", "line"),
            ("level", "level"),
        ] {
            let theirs = expected.get(field).unwrap_or(&Value::Null);
            if &ours[ours_field] != theirs {
                wrong.push(format!(
                    "group {field} {} (production {theirs})",
                    ours[ours_field]
                ));
            }
        }
        if !wrong.is_empty() {
            failures.push(format!("{id}: {}", wrong.join("; ")));
        }
    }
    server.server.shutdown().await;
    assert!(
        failures.is_empty(),
        "{} grouping vectors differ from production:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn compare_stored(
    expected: &Value,
    vector: &Value,
    event: &errorwatch_server::StoredEvent,
) -> Vec<String> {
    let mut wrong = Vec::new();
    let ours = serde_json::to_value(event).expect("event as JSON");
    if let Some(fingerprint) = vector["fingerprint"].as_str() {
        if event.fingerprint != fingerprint {
            wrong.push(format!(
                "fingerprint {} (production {fingerprint})",
                event.fingerprint
            ));
        }
    }
    for (field, ours_field) in [
        ("exception_type", "type"),
        ("exception_value", "value"),
        ("level", "level"),
        ("env", "env"),
        ("created_at", "createdAt"),
    ] {
        let theirs = expected.get(field).unwrap_or(&Value::Null);
        if &ours[ours_field] != theirs {
            wrong.push(format!(
                "{field} {} (production {theirs})",
                ours[ours_field]
            ));
        }
    }
    if let Some(head) = expected["stack_head"].as_str() {
        let stack = ours["stack"].as_str().unwrap_or_default();
        if !stack.starts_with(head) {
            wrong.push(format!(
                "stack starts {:?} (production {head:?})",
                truncate(stack, head.len() + 10)
            ));
        }
    }
    wrong
}

fn truncate(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}
