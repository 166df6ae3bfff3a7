//! "202 means durably stored, whatever the disk does": a full database, a deleted or replaced
//! file, and quotas counted exactly across concurrency and restarts.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use errorwatch_server::{Config, Server};
use serde_json::{json, Value};
use support::process::TempDir;
use support::*;

fn on_file(path: &Path, edit: impl FnOnce(&mut Config)) -> impl FnOnce(&mut Config) {
    let url = format!("sqlite://{}", path.display());
    move |config: &mut Config| {
        config.database_url = url;
        edit(config);
    }
}

/// A v2 event of `size` bytes or so, with a distinct id and value.
fn sized(id: &str, size: usize) -> Value {
    json!({
        "event_id": id,
        "exception": { "type": "DiskError", "value": format!("event {id}") },
        "extra": { "padding": "p".repeat(size) },
        "sdk": { "name": "tests", "version": "1" },
    })
}

async fn ready_status(s: &TestServer) -> u16 {
    s.send(s.http.get(s.url("/health/ready"))).await.status
}

/// Waits (at most `within`) until `/health/ready` answers `status`.
async fn wait_ready(s: &TestServer, status: u16, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        if ready_status(s).await == status {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "/health/ready did not become {status}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn stored_event_ids(server: &Server) -> Vec<String> {
    server
        .store()
        .events(1_000_000)
        .await
        .expect("events")
        .into_iter()
        .filter_map(|e| e.event_id)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_database_gets_503_never_a_lost_202_and_recovers_by_itself() {
    let dir = TempDir::new("full");
    let path = dir.0.join("errorwatch.db");
    // Room for the schema and a few dozen events, then the "disk" is full.
    let s = TestServer::with(on_file(&path, |c| {
        c.max_database_bytes = Some(512 * 1024);
    }))
    .await;

    let mut acknowledged = Vec::new();
    let mut refused = Vec::new();
    for n in 0..400 {
        let id = format!("full-{n}");
        let answer = s.event(&sized(&id, 3000)).await;
        match answer.status {
            202 => acknowledged.push(id),
            503 => {
                assert_eq!(answer.code(), "SERVICE_UNAVAILABLE");
                assert!(
                    answer.header("retry-after").is_some(),
                    "503 without Retry-After"
                );
                refused.push(id);
            }
            other => panic!("unexpected {other}: {}", answer.body),
        }
        if refused.len() >= 20 {
            break;
        }
    }
    assert!(
        !acknowledged.is_empty(),
        "nothing fit before the disk filled"
    );
    assert!(refused.len() >= 20, "the database never filled up");
    assert_eq!(ready_status(&s).await, 503, "ready while writes fail");

    // Nothing holds SQLite's write lock after the failure: another connection can write.
    let mut other = <sqlx::SqliteConnection as sqlx::Connection>::connect(&format!(
        "sqlite://{}",
        path.display()
    ))
    .await
    .expect("another connection");
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut other)
        .await
        .expect("the write lock is free");
    sqlx::query("ROLLBACK")
        .execute(&mut other)
        .await
        .expect("rollback");
    drop(other);

    // Every 202 is on disk, and no 503 is: what a restart finds.
    let TestServer { server, .. } = s;
    server.shutdown().await;
    let s = TestServer::with(on_file(&path, |c| c.max_database_bytes = Some(512 * 1024))).await;
    let stored = stored_event_ids(&s.server).await;
    for id in &acknowledged {
        assert!(stored.contains(id), "{id} was acknowledged and lost");
    }
    for id in &refused {
        assert!(!stored.contains(id), "{id} was refused yet stored");
    }

    // Space comes back (retention, an operator): ingestion resumes without a restart.
    s.server
        .store()
        .purge_before(i64::MAX)
        .await
        .expect("purge");
    wait_ready(&s, 200, Duration::from_secs(15)).await;
    let answer = s.event(&sized("after-space", 100)).await;
    assert_eq!(answer.status, 202, "{}", answer.body);
    assert!(stored_event_ids(&s.server)
        .await
        .contains(&"after-space".to_owned()));
}

/// Deletes the database file with its WAL and shared-memory files, under a running server.
fn delete_database(path: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deleted_database_is_noticed_and_nothing_is_acknowledged_into_it() {
    let dir = TempDir::new("deleted");
    let path = dir.0.join("errorwatch.db");
    let s = TestServer::with(on_file(&path, |_| {})).await;
    assert_eq!(s.event(&v2("before")).await.status, 202);

    delete_database(&path);
    // Noticed by itself, without an event to write.
    wait_ready(&s, 503, Duration::from_secs(10)).await;
    let ready = s.send(s.http.get(s.url("/health/ready"))).await;
    assert!(
        ready.body["checks"]["store"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("deleted")),
        "{}",
        ready.body
    );
    for n in 0..20 {
        let answer = s.event(&v2(&format!("after {n}"))).await;
        assert_eq!(answer.status, 503, "an event went into a deleted file");
    }
    let TestServer { server, .. } = s;
    server.shutdown().await;

    // The restart does not quietly start over on an empty database.
    let mut config = Config::for_tests(SECRET);
    config.database_url = format!("sqlite://{}", path.display());
    config.create_database = false;
    let error = Server::start(config)
        .await
        .expect_err("no silent empty database");
    assert!(error.to_string().contains("does not exist"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_connection_opened_after_the_file_was_deleted_does_not_recreate_it() {
    let dir = TempDir::new("deleted-then-read");
    let path = dir.0.join("errorwatch.db");
    let s = TestServer::with(on_file(&path, |_| {})).await;
    assert_eq!(s.event(&v2("before")).await.status, 202);
    delete_database(&path);
    // Reads at once make the pool open connections beyond those it had when the file went.
    let mut reads = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let (http, url) = (s.http.clone(), s.url("/api/v1/groups"));
        reads.spawn(async move { http.get(url).bearer_auth(ADMIN).send().await.is_ok() });
    }
    while let Some(read) = reads.join_next().await {
        assert!(read.expect("a read"), "the server answered");
    }
    assert!(
        !path.exists(),
        "an empty database was created in the deleted one's place"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replaced_database_is_noticed() {
    let dir = TempDir::new("replaced");
    let path = dir.0.join("errorwatch.db");
    let s = TestServer::with(on_file(&path, |_| {})).await;
    assert_eq!(s.event(&v2("before")).await.status, 202);
    // A restore copied over the file the server has open.
    let copy = dir.0.join("copy.db");
    std::fs::copy(&path, &copy).expect("copy");
    std::fs::rename(&copy, &path).expect("replace");
    wait_ready(&s, 503, Duration::from_secs(10)).await;
    assert_eq!(s.event(&v2("after")).await.status, 503);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn quotas_are_exact_under_concurrency_across_restarts_and_null_removes_them() {
    let dir = TempDir::new("quota");
    let path = dir.0.join("errorwatch.db");
    let s = TestServer::with(on_file(&path, |_| {})).await;
    let project = format!("/api/v1/projects/{}", s.project);
    let set = s.admin_patch(&project, &json!({ "dailyQuota": 100 })).await;
    assert_eq!(set.status, 200, "{}", set.body);

    let statuses = send_concurrently(&s, "first", 64, 4).await;
    assert_eq!(statuses.iter().filter(|&&s| s == 202).count(), 100);
    assert_eq!(statuses.iter().filter(|&&s| s == 429).count(), 156);
    assert_eq!(s.server.store().event_count().await.expect("count"), 100);

    // The same day, after a restart: the quota is still used up.
    let key = s.key.clone();
    let TestServer { server, .. } = s;
    server.shutdown().await;
    let mut s = TestServer::with(on_file(&path, |_| {})).await;
    s.key = key;
    s.project = 1;
    let statuses = send_concurrently(&s, "restarted", 16, 2).await;
    assert!(statuses.iter().all(|&s| s == 429), "{statuses:?}");
    assert_eq!(s.server.store().event_count().await.expect("count"), 100);

    // `null` removes the quota.
    let cleared = s
        .admin_patch("/api/v1/projects/1", &json!({ "dailyQuota": null }))
        .await;
    assert_eq!(cleared.status, 200, "{}", cleared.body);
    assert_eq!(cleared.body["dailyQuota"], Value::Null);
    assert_eq!(s.event(&v2("no quota")).await.status, 202);
}

/// `clients` tasks each sending `per_client` distinct events at once; their statuses.
async fn send_concurrently(
    s: &TestServer,
    tag: &str,
    clients: usize,
    per_client: usize,
) -> Vec<u16> {
    let mut tasks = Vec::new();
    for client in 0..clients {
        let (http, url, key, tag) = (
            s.http.clone(),
            s.url("/api/v1/event"),
            s.key.clone(),
            tag.to_owned(),
        );
        tasks.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            for n in 0..per_client {
                let body = v2(&format!("{tag} {client} {n}")).to_string();
                let response = http
                    .post(&url)
                    .header("X-API-Key", &key)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .expect("answer");
                statuses.push(response.status().as_u16());
            }
            statuses
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("client"));
    }
    all
}
