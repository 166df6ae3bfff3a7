//! The real binary against hostile clients and a disk that fills: abandoned requests, slow
//! sockets, large bodies without a key, a validation bomb, and writes that fail at commit.
//! `hostile_postgres.rs` runs the same clients against a server on PostgreSQL; a full disk is
//! SQLite's own (PostgreSQL failing under a server is `instances.rs`'s restart test).

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::process::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const MIB: u64 = 1024;

/// Lets this process hold a few thousand sockets whatever the default limit.
fn enough_files() {
    let _ = rlimit::increase_nofile_limit(20_000);
}

/// A v2 event. Ids differ; values differ only in their number, which grouping cleans away, so
/// every event lands in one group (and none is a duplicate of another).
fn event(id: &str, padding: usize) -> String {
    let number: u64 = id
        .bytes()
        .fold(7, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
    json!({
        "event_id": id,
        "exception": { "type": "HostileError", "value": format!("event {}", number % 1_000_000_000) },
        "extra": { "padding": "p".repeat(padding) },
        "sdk": { "name": "tests", "version": "1" },
    })
    .to_string()
}

async fn status_of(http: &reqwest::Client, request: reqwest::RequestBuilder) -> Option<u16> {
    let _ = http;
    request.send().await.ok().map(|r| r.status().as_u16())
}

async fn wait_until(what: &str, within: Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A request whose head is sent whole and whose body stops after a few bytes: it sits in the
/// handler, reading.
async fn partial_request(served: &Served, key: &str) -> TcpStream {
    let mut stream = TcpStream::connect(served.addr()).await.expect("connect");
    let head = format!(
        "POST /api/v1/event HTTP/1.1\r\nHost: x\r\nX-API-Key: {key}\r\n\
         Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{{\"event_id\":"
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    stream
}

/// Another connection holding the store's write lock, so that the server's writer waits.
enum WriteLock {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

impl WriteLock {
    async fn take(database_url: &str) -> WriteLock {
        use sqlx::Connection;
        if database_url.starts_with("postgres") {
            let mut holder = sqlx::PgConnection::connect(database_url)
                .await
                .expect("another connection");
            // EXCLUSIVE lets readers through and stops every writer of these tables. The
            // tables are locked one by one, in the order a batch writes them (its groups, then
            // its events): in the other order, a batch still being written when the lock is
            // taken would hold the groups and wait for the events while we held the events and
            // waited for the groups, and PostgreSQL would abort one of the two as deadlocked.
            sqlx::query("BEGIN")
                .execute(&mut holder)
                .await
                .expect("begin");
            sqlx::query("LOCK TABLE groups, events IN EXCLUSIVE MODE")
                .execute(&mut holder)
                .await
                .expect("the write lock");
            WriteLock::Postgres(holder)
        } else {
            let mut holder = sqlx::SqliteConnection::connect(database_url)
                .await
                .expect("another connection");
            sqlx::query("BEGIN IMMEDIATE")
                .execute(&mut holder)
                .await
                .expect("the write lock");
            WriteLock::Sqlite(holder)
        }
    }

    async fn release(self) {
        let rolled_back = match self {
            WriteLock::Sqlite(mut c) => sqlx::query("ROLLBACK").execute(&mut c).await.map(drop),
            WriteLock::Postgres(mut c) => sqlx::query("ROLLBACK").execute(&mut c).await.map(drop),
        };
        rolled_back.expect("rollback");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn abandoned_requests_give_their_slot_back_at_once() {
    enough_files();
    let dir = TempDir::new("abandoned");
    let database_url = support::database_url(&dir);
    let key = new_project(&database_url);
    let served = Served::start(&database_url, &[("MAX_CONCURRENT_REQUESTS", "100")], &[]).await;
    let http = reqwest::Client::new();
    let probe = || http.get(served.url("/api/v1/groups")).bearer_auth(ADMIN);

    let in_flight = async || -> Option<u64> {
        let text = http
            .get(served.url("/metrics"))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.lines()
            .find_map(|line| line.strip_prefix("errorwatch_http_requests_in_flight "))
            .and_then(|n| n.trim().parse().ok())
    };
    for round in 0..20 {
        // Even rounds: clients stop halfway through their bodies. Odd rounds: clients send
        // whole events, then leave while the handler waits for the store (another connection
        // holds the write lock): there, nothing wakes the handler, its future is dropped.
        let waiting_on_store = round % 2 == 1;
        let mut lock = None;
        let mut partial = Vec::new();
        let mut whole = Vec::new();
        if waiting_on_store {
            lock = Some(WriteLock::take(&database_url).await);
            for n in 0..100 {
                let request = http
                    .post(served.url("/api/v1/event"))
                    .header("X-API-Key", &key)
                    .body(event(&format!("r{round}-{n}"), 10));
                whole.push(tokio::spawn(request.send()));
            }
        } else {
            for _ in 0..100 {
                partial.push(partial_request(&served, &key).await);
            }
        }
        // Every slot is taken by these 100 requests, in their handlers: the limit is real.
        wait_until(
            "the 100 requests are in their handlers",
            Duration::from_secs(20),
            async || in_flight().await == Some(100),
        )
        .await;
        assert_eq!(
            status_of(&http, probe()).await,
            Some(503),
            "round {round}: beyond the limit"
        );
        // The clients go away mid-request: every slot comes back, store or no store.
        drop(partial);
        for request in &whole {
            request.abort();
        }
        wait_until(
            &format!("round {round}'s slots come back"),
            Duration::from_secs(20),
            async || in_flight().await == Some(0),
        )
        .await;
        if let Some(holder) = lock {
            holder.release().await;
            wait_until(
                "the store writes again",
                Duration::from_secs(20),
                async || status_of(&http, http.get(served.url("/health/ready"))).await == Some(200),
            )
            .await;
        }
    }
    // 2,000 aborted requests later, everything serves.
    let answer = http
        .post(served.url("/api/v1/event"))
        .header("X-API-Key", &key)
        .body(event("after-aborts", 10))
        .send()
        .await
        .expect("answer");
    assert_eq!(answer.status(), 202);
    assert_eq!(
        status_of(&http, http.get(served.url("/health/live"))).await,
        Some(200)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_thousand_slow_sockets_do_not_lock_out_a_legitimate_client() {
    enough_files();
    let dir = TempDir::new("slowloris");
    let database_url = support::database_url(&dir);
    let key = new_project(&database_url);
    // Long timeouts: what is shown here is capacity, not the timeouts clearing the crowd.
    let served = Served::start(
        &database_url,
        &[
            ("HEADER_READ_TIMEOUT_SECS", "120"),
            ("BODY_READ_TIMEOUT_SECS", "120"),
            ("IDLE_TIMEOUT_SECS", "120"),
        ],
        &[],
    )
    .await;
    let mut crowd = Vec::new();
    for n in 0..2_000 {
        let mut stream = TcpStream::connect(served.addr()).await.expect("connect");
        match n % 3 {
            // Silent.
            0 => {}
            // A head that never ends.
            1 => stream
                .write_all(b"POST /api/v1/event HTTP/1.1\r\nHost: x\r\nX-Dribble: ")
                .await
                .expect("write"),
            // A body that never ends.
            _ => {
                let head = format!(
                    "POST /api/v1/event HTTP/1.1\r\nHost: x\r\nX-API-Key: {key}\r\n\
                     Content-Length: 100000\r\n\r\n{{"
                );
                stream.write_all(head.as_bytes()).await.expect("write");
            }
        }
        crowd.push(stream);
    }
    let http = reqwest::Client::new();
    for attempt in 0..5 {
        let sent = http
            .post(served.url("/api/v1/event"))
            .header("X-API-Key", &key)
            .body(event(&format!("legit-{attempt}"), 10))
            .send();
        let answer = tokio::time::timeout(Duration::from_secs(2), sent)
            .await
            .unwrap_or_else(|_| panic!("attempt {attempt}: no answer within 2 s"))
            .expect("answer");
        assert_eq!(answer.status(), 202, "attempt {attempt}");
    }
    drop(crowd);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn silent_dribbling_and_idle_connections_are_closed_by_their_timeouts() {
    let dir = TempDir::new("timeouts");
    let database_url = support::database_url(&dir);
    let key = new_project(&database_url);
    let served = Served::start(
        &database_url,
        &[
            ("HEADER_READ_TIMEOUT_SECS", "1"),
            ("BODY_READ_TIMEOUT_SECS", "1"),
            ("IDLE_TIMEOUT_SECS", "2"),
        ],
        &[],
    )
    .await;
    let silent = TcpStream::connect(served.addr()).await.expect("connect");
    let mut half_head = TcpStream::connect(served.addr()).await.expect("connect");
    half_head
        .write_all(b"POST /api/v1/event HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    let half_body = partial_request(&served, &key).await;
    // A keep-alive connection used once, then left idle.
    let mut idle = TcpStream::connect(served.addr()).await.expect("connect");
    idle.write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");

    for (name, mut stream) in [
        ("silent", silent),
        ("half head", half_head),
        ("half body", half_body),
        ("idle keep-alive", idle),
    ] {
        // Whatever the server says before closing, it closes: the read reaches the end.
        let mut said = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut said))
            .await
            .unwrap_or_else(|_| panic!("{name}: still open after 20 s"));
        let said = String::from_utf8_lossy(&said);
        if name == "half body" {
            assert!(read.is_err() || said.contains(" 408 "), "{name}: {said}");
            if !said.is_empty() {
                assert!(said.contains("application/json"), "{name}: {said}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn large_bodies_without_a_key_cost_no_memory_and_with_one_stay_within_the_budget() {
    enough_files();
    let dir = TempDir::new("memory");
    let database_url = support::database_url(&dir);
    let key = new_project(&database_url);
    let budget_mib = 64;
    let served = Served::start(
        &database_url,
        &[
            ("BODY_BUDGET_MB", "64"),
            ("MAX_CONCURRENT_REQUESTS", "1024"),
        ],
        &[],
    )
    .await;
    let baseline = served.memory_kib("VmRSS");
    let five_mib = bytes::Bytes::from(vec![b' '; 5 * 1024 * 1024 - 64]);
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");

    // 500 unauthenticated 5 MiB uploads at once: refused before their bodies are read.
    let mut uploads = Vec::new();
    for n in 0..500 {
        let request = http
            .post(served.url("/api/v1/event"))
            .header(
                "X-API-Key",
                if n % 2 == 0 {
                    "not-a-key"
                } else {
                    "ew_live_Zz9_-Zz9_-Zz9_-Zz9_-Zz9_-Zz9_-Zz"
                },
            )
            .body(five_mib.clone());
        uploads.push(tokio::spawn(async move {
            request.send().await.map(|r| r.status().as_u16())
        }));
    }
    for upload in uploads {
        // A refusal may reach the client as a reset while it is still sending: never a 2xx.
        if let Ok(Ok(status)) = upload.await {
            assert_eq!(status, 401);
        }
    }
    let unauthenticated_peak = served.memory_kib("VmHWM");
    assert!(
        unauthenticated_peak < baseline + budget_mib * MIB,
        "peak {unauthenticated_peak} KiB after unauthenticated uploads (baseline {baseline} KiB)"
    );

    // 200 authenticated ones at once: what does not fit the budget is turned away, 503.
    let padded = event(&"x".repeat(10), 4 * 1024 * 1024);
    let padded = bytes::Bytes::from(padded);
    let counts = Arc::new(Mutex::new(std::collections::BTreeMap::<u16, usize>::new()));
    let mut uploads = Vec::new();
    for _ in 0..200 {
        let request = http
            .post(served.url("/api/v1/event"))
            .header("X-API-Key", &key)
            .body(padded.clone());
        let counts = counts.clone();
        uploads.push(tokio::spawn(async move {
            if let Ok(response) = request.send().await {
                *counts
                    .lock()
                    .expect("counts")
                    .entry(response.status().as_u16())
                    .or_default() += 1;
            }
        }));
    }
    for upload in uploads {
        let _ = upload.await;
    }
    let counts = counts.lock().expect("counts").clone();
    assert!(
        counts.get(&503).copied().unwrap_or(0) > 0,
        "the budget never filled: {counts:?}"
    );
    let peak = served.memory_kib("VmHWM");
    // Each body is held once as bytes and once parsed: a few times the budget at most.
    let bound = baseline + 4 * budget_mib * MIB + 64 * MIB;
    assert!(
        peak < bound,
        "peak {peak} KiB with a {budget_mib} MiB budget (baseline {baseline} KiB, bound {bound} KiB); answers {counts:?}"
    );
    eprintln!(
        "memory: baseline {baseline} KiB, peak after 500 unauthenticated 5 MiB uploads {unauthenticated_peak} KiB, \
         after 200 authenticated 4 MiB uploads {peak} KiB (budget {budget_mib} MiB); answers {counts:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_event_with_400k_bad_tags_gets_a_short_answer() {
    let dir = TempDir::new("tags");
    let database_url = support::database_url(&dir);
    let key = new_project(&database_url);
    let served = Served::start(&database_url, &[], &[]).await;
    let baseline = served.memory_kib("VmRSS");
    // 400,000 tags whose values are numbers, where the contract wants strings.
    let alphabet: Vec<char> = ('a'..='z').chain('A'..='Z').collect();
    let mut tags = serde_json::Map::new();
    for n in 0..400_000usize {
        let name: String = (0..4)
            .map(|digit| alphabet[(n / alphabet.len().pow(digit)) % alphabet.len()])
            .collect();
        tags.insert(name, json!(0));
    }
    let body = json!({
        "event_id": "bomb",
        "message": "many bad tags",
        "tags": tags,
        "sdk": { "name": "tests", "version": "1" },
    })
    .to_string();
    assert!(body.len() > 3_500_000, "{}", body.len());
    let body = bytes::Bytes::from(body);
    let http = reqwest::Client::new();
    let mut bombs = Vec::new();
    for _ in 0..8 {
        let request = http
            .post(served.url("/api/v1/event"))
            .header("X-API-Key", &key)
            .body(body.clone());
        bombs.push(tokio::spawn(async move {
            let response = request.send().await.expect("answer");
            let status = response.status().as_u16();
            (status, response.bytes().await.expect("body"))
        }));
    }
    for bomb in bombs {
        let (status, answer) = bomb.await.expect("task");
        assert_eq!(status, 400);
        assert!(answer.len() < 32 * 1024, "a {} byte answer", answer.len());
        let answer: Value = serde_json::from_slice(&answer).expect("JSON");
        let details = answer["details"].as_array().map_or(0, Vec::len);
        assert!((1..=100).contains(&details), "{details} details");
    }
    let peak = served.memory_kib("VmHWM");
    eprintln!("validation bomb: baseline {baseline} KiB, peak {peak} KiB after 8 at once");
    assert!(
        peak < baseline + 8 * 64 * MIB,
        "peak {peak} KiB (baseline {baseline} KiB)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_disk_that_fills_at_commit_loses_no_acknowledged_event_and_recovers() {
    if support::backend() == support::Backend::Postgres {
        // The file-size limit applies to SQLite's own files; PostgreSQL failing under a
        // server (stopped mid-stream, then back) is instances.rs's restart test.
        return;
    }
    let dir = TempDir::new("fsize");
    let database_url = dir.database_url();
    let key = new_project(&database_url);
    // No file of the server's may pass 1 MiB: the write-ahead log fills at commit time, as a
    // full disk does. Past the limit, writes fail with EFBIG.
    let served = Served::start(
        &database_url,
        &[],
        &["prlimit", "--fsize=1048576:unlimited"],
    )
    .await;
    let http = reqwest::Client::new();
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let refused = Arc::new(Mutex::new(Vec::<String>::new()));
    let failures = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for client in 0..8 {
        let (http, url, key) = (http.clone(), served.url("/api/v1/event"), key.clone());
        let (acknowledged, refused, failures) =
            (acknowledged.clone(), refused.clone(), failures.clone());
        clients.push(tokio::spawn(async move {
            for n in 0..2_000 {
                let id = format!("c{client}-{n}");
                let answer = http
                    .post(&url)
                    .header("X-API-Key", &key)
                    .body(event(&id, 2_000))
                    .send()
                    .await
                    .expect("answer");
                match answer.status().as_u16() {
                    202 => acknowledged.lock().expect("acks").push(id),
                    503 => {
                        assert!(answer.headers().contains_key("retry-after"));
                        refused.lock().expect("refused").push(id);
                        if failures.fetch_add(1, Ordering::Relaxed) >= 200 {
                            return;
                        }
                    }
                    other => panic!("unexpected {other}"),
                }
            }
        }));
    }
    for client in clients {
        client.await.expect("client");
    }
    assert!(
        failures.load(Ordering::Relaxed) >= 200,
        "the disk never filled"
    );
    assert_eq!(
        status_of(&http, http.get(served.url("/health/ready"))).await,
        Some(503),
        "ready while writes fail"
    );

    // Space comes back: ingestion resumes by itself.
    let raised = std::process::Command::new("prlimit")
        .args([
            "--pid",
            &served.pid().to_string(),
            "--fsize=unlimited:unlimited",
        ])
        .status()
        .expect("prlimit");
    assert!(raised.success());
    wait_until("ready again", Duration::from_secs(20), async || {
        status_of(&http, http.get(served.url("/health/ready"))).await == Some(200)
    })
    .await;
    let after = http
        .post(served.url("/api/v1/event"))
        .header("X-API-Key", &key)
        .body(event("after-space", 10))
        .send()
        .await
        .expect("answer");
    assert_eq!(after.status(), 202);
    acknowledged
        .lock()
        .expect("acks")
        .push("after-space".into());

    // A graceful restart finds every acknowledged event, and none that was refused.
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &served.pid().to_string()])
        .status();
    let mut served = served;
    let _ = served.child.wait();
    let served = Served::start(&database_url, &[], &[]).await;
    let stored = all_event_ids(&http, &served).await;
    let acknowledged = acknowledged.lock().expect("acks").clone();
    let lost: Vec<_> = acknowledged
        .iter()
        .filter(|id| !stored.contains(*id))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged events lost",
        lost.len(),
        acknowledged.len()
    );
    let refused = refused.lock().expect("refused").clone();
    let stored_refused = refused.iter().filter(|id| stored.contains(*id)).count();
    assert_eq!(stored_refused, 0, "events answered 503 were stored");
    eprintln!(
        "disk full at commit: {} acknowledged, all stored; {} refused with 503, none stored",
        acknowledged.len(),
        refused.len()
    );
}

async fn all_event_ids(
    http: &reqwest::Client,
    served: &Served,
) -> std::collections::BTreeSet<String> {
    let mut ids = std::collections::BTreeSet::new();
    let groups: Value = http
        .get(served.url("/api/v1/groups?limit=100"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("groups")
        .bytes()
        .await
        .map(|b| serde_json::from_slice(&b).expect("JSON"))
        .expect("groups body");
    for group in groups["groups"].as_array().cloned().unwrap_or_default() {
        let fingerprint = group["fingerprint"].as_str().unwrap_or_default().to_owned();
        for page in 1.. {
            let events: Value = http
                .get(served.url(&format!(
                    "/api/v1/groups/{fingerprint}/events?limit=100&page={page}"
                )))
                .bearer_auth(ADMIN)
                .send()
                .await
                .expect("events")
                .bytes()
                .await
                .map(|b| serde_json::from_slice::<Value>(&b).expect("JSON"))
                .expect("events body");
            let events = events["events"].as_array().cloned().unwrap_or_default();
            if events.is_empty() {
                break;
            }
            ids.extend(
                events
                    .iter()
                    .filter_map(|e| e["eventId"].as_str().map(str::to_owned)),
            );
        }
    }
    ids
}
