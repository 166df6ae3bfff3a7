//! "202 means stored": the real binary, killed with SIGKILL while clients are sending,
//! restarted on the same file, has every event it acknowledged.

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_errorwatch-server");
const SECRET: &str = "durability-secret-0123456789";
const ADMIN: &str = "durability-admin";

struct Dir(std::path::PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn temp_dir() -> Dir {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let dir = std::env::temp_dir().join(format!("ew-durability-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    Dir(dir)
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

fn command(database_url: &str) -> Command {
    let mut command = Command::new(BIN);
    command
        .env("DATABASE_URL", database_url)
        .env("API_KEY_HASH_SECRET", SECRET)
        .env("ADMIN_API_KEY", ADMIN)
        .env("RUST_LOG", "warn");
    command
}

/// The server process; killed when dropped, so a failing test leaves nothing running.
struct Served(Child);

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn serve(database_url: &str, port: u16, http: &reqwest::Client) -> Served {
    let served = Served(
        command(database_url)
            .arg("serve")
            .env("ERRORWATCH_BIND", format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the server starts"),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let live = http
            .get(format!("http://127.0.0.1:{port}/health/live"))
            .send()
            .await;
        if live.is_ok_and(|r| r.status().is_success()) {
            return served;
        }
        assert!(Instant::now() < deadline, "the server did not come up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_acknowledged_event_survives_sigkill() {
    let dir = temp_dir();
    let database_url = format!("sqlite://{}", dir.0.join("errorwatch.db").display());
    let migrated = command(&database_url)
        .arg("migrate")
        .output()
        .expect("migrate");
    assert!(migrated.status.success());
    let created = command(&database_url)
        .args(["project", "create", "durable", "--json"])
        .output()
        .expect("project create");
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let created: Value = serde_json::from_slice(&created.stdout).expect("JSON output");
    let key = created["api_key"].as_str().expect("key").to_owned();

    let http = reqwest::Client::new();
    let port = free_port();
    let mut server = serve(&database_url, port, &http).await;

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
    server.0.kill().expect("SIGKILL");
    let _ = server.0.wait();
    for sender in senders {
        let _ = sender.await;
    }
    let acknowledged = acknowledged.lock().expect("acks").clone();
    assert!(
        acknowledged.len() >= 600 && acknowledged.len() < 4_000,
        "killed mid-stream: {}",
        acknowledged.len()
    );

    let restarted = serve(&database_url, port, &http).await;
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
