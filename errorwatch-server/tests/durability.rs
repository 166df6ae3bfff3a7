//! "202 means stored": the real binary, killed with SIGKILL while clients are sending,
//! restarted on the same file, has every event it acknowledged.

mod support;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::process::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_acknowledged_event_survives_sigkill() {
    let dir = TempDir::new("durability");
    let database_url = support::database_url(&dir);
    let key = new_project(&database_url);

    let http = reqwest::Client::new();
    let mut server = Served::start(&database_url, &[], &[]).await;
    let port = server.port;

    let acknowledged = Arc::new(Mutex::new(BTreeSet::new()));
    let acks = Arc::new(AtomicUsize::new(0));
    let mut senders = Vec::new();
    for client in 0..8 {
        let (http, key, acknowledged, acks) = (
            http.clone(),
            key.clone(),
            acknowledged.clone(),
            acks.clone(),
        );
        senders.push(tokio::spawn(async move {
            for n in 0..500 {
                let id = format!("c{client}-n{n}");
                let body = json!({
                    "event_id": id,
                    "exception": { "type": "Durable", "value": format!("event {}", 10_000 + client * 1000 + n) },
                    "sdk": { "name": "test", "version": "1" },
                });
                let sent = http
                    .post(format!("http://127.0.0.1:{port}/api/v1/event"))
                    .header("X-API-Key", &key)
                    .body(body.to_string())
                    .send()
                    .await;
                match sent {
                    Ok(response) if response.status().as_u16() == 202 => {
                        acknowledged.lock().expect("acks").insert(id);
                        acks.fetch_add(1, Ordering::Relaxed);
                    }
                    // Killed: the connection fails, and this client stops.
                    _ => return,
                }
            }
        }));
    }
    // Kill while the clients are mid-stream.
    let deadline = Instant::now() + Duration::from_secs(30);
    while acks.load(Ordering::Relaxed) < 600 {
        assert!(Instant::now() < deadline, "too few acknowledgements");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    server.child.kill().expect("SIGKILL");
    let _ = server.child.wait();
    for sender in senders {
        let _ = sender.await;
    }
    let acknowledged = acknowledged.lock().expect("acks").clone();
    assert!(
        acknowledged.len() >= 600 && acknowledged.len() < 4_000,
        "killed mid-stream: {}",
        acknowledged.len()
    );

    let restarted = Served::start_on(port, &database_url, &[], &[]).await;
    let groups: Value = http
        .get(format!("http://127.0.0.1:{port}/api/v1/groups"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("groups")
        .json_value()
        .await;
    let group = &groups["groups"][0];
    let fingerprint = group["fingerprint"].as_str().expect("one group").to_owned();
    let mut stored = BTreeSet::new();
    for page in 1.. {
        let events: Value = http
            .get(format!(
                "http://127.0.0.1:{port}/api/v1/groups/{fingerprint}/events?limit=100&page={page}"
            ))
            .bearer_auth(ADMIN)
            .send()
            .await
            .expect("events")
            .json_value()
            .await;
        let events = events["events"].as_array().cloned().unwrap_or_default();
        if events.is_empty() {
            break;
        }
        stored.extend(
            events
                .iter()
                .filter_map(|e| e["eventId"].as_str().map(str::to_owned)),
        );
    }
    let missing: Vec<_> = acknowledged.difference(&stored).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged events lost, e.g. {:?}",
        missing.len(),
        missing.first()
    );
    assert!(group["count"].as_u64().unwrap_or(0) >= acknowledged.len() as u64);
    drop(restarted);
}

trait JsonValue {
    async fn json_value(self) -> Value;
}

impl JsonValue for reqwest::Response {
    async fn json_value(self) -> Value {
        let bytes = self.bytes().await.expect("body");
        serde_json::from_slice(&bytes).expect("JSON")
    }
}
