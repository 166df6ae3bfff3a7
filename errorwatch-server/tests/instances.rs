//! Several servers on one PostgreSQL database are one logical server: the real binary, twice,
//! on a real PostgreSQL, with clients spread across both; then one server killed, and
//! PostgreSQL itself stopped and started again, mid-stream.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sqlx::Row;
use support::postgres::Cluster;
use support::process::*;

const CLIENTS: usize = 16;

/// Two servers on a new database of `cluster`, and the project's key.
async fn two_servers(cluster: &Cluster, env: &[(&str, &str)]) -> (String, String, [Served; 2]) {
    let url = cluster.new_database_url();
    let key = new_project(&url);
    let a = Served::start(&url, env, &[]).await;
    let b = Served::start(&url, env, &[]).await;
    (url, key, [a, b])
}

async fn connect(url: &str) -> sqlx::PgPool {
    sqlx::PgPool::connect(url)
        .await
        .expect("the test reaches PostgreSQL")
}

async fn post(http: &reqwest::Client, server: &str, key: &str, body: &Value) -> Option<u16> {
    http.post(format!("{server}/api/v1/event"))
        .header("X-API-Key", key)
        .body(body.to_string())
        .send()
        .await
        .ok()
        .map(|response| response.status().as_u16())
}

/// An event of `group` (the SDK's fingerprint), with a value of its own so the duplicate
/// window keeps every one (its key is type, value and file).
fn event(group: usize, id: &str, user: usize) -> Value {
    json!({
        "event_id": id,
        "exception": { "type": "SharedError", "value": format!("group {group}: {id}") },
        "fingerprint": [format!("group {group}")],
        "file": format!("/srv/app/group{group}.rs"),
        "line": 10 + group,
        "user": { "id": format!("user-{user}") },
        "sdk": { "name": "tests", "version": "1" },
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn interleaved_events_of_few_groups_count_exactly_across_two_servers() {
    let cluster = Cluster::shared();
    let (url, key, servers) = two_servers(cluster, &[]).await;
    let http = reqwest::Client::new();
    let urls: Vec<String> = servers.iter().map(|s| s.url("")).collect();
    const PER_CLIENT: usize = 60;
    const GROUPS: usize = 4;
    let mut clients = Vec::new();
    for client in 0..CLIENTS {
        let (http, key, urls) = (http.clone(), key.clone(), urls.clone());
        clients.push(tokio::spawn(async move {
            let mut accepted = 0;
            for n in 0..PER_CLIENT {
                // Each client alternates servers and groups, so every group's events reach
                // both servers at the same moments.
                let server = &urls[(client + n) % 2];
                let body = event(
                    n % GROUPS,
                    &format!("c{client}-n{n}"),
                    (client * 7 + n) % 23,
                );
                if post(&http, server, &key, &body).await == Some(202) {
                    accepted += 1;
                }
            }
            accepted
        }));
    }
    let mut accepted = 0;
    for client in clients {
        accepted += client.await.expect("client");
    }
    assert_eq!(accepted, CLIENTS * PER_CLIENT, "every event is accepted");

    let db = connect(&url).await;
    let groups = sqlx::query(
        "SELECT title, count, users_affected, first_seen, last_seen, fingerprint FROM groups",
    )
    .fetch_all(&db)
    .await
    .expect("groups");
    assert_eq!(groups.len(), GROUPS, "one group per exception, never two");
    for group in &groups {
        let fingerprint: String = group.get(5);
        let stored = sqlx::query(
            "SELECT count(*), count(DISTINCT user_id), min(created_at), max(received_at) \
             FROM events WHERE fingerprint = $1",
        )
        .bind(&fingerprint)
        .fetch_one(&db)
        .await
        .expect("events");
        let title: String = group.get(0);
        assert_eq!(
            group.get::<i64, _>(1),
            stored.get::<i64, _>(0),
            "{title}: count"
        );
        assert_eq!(
            group.get::<i64, _>(1),
            (CLIENTS * PER_CLIENT / GROUPS) as i64,
            "{title}: count"
        );
        assert_eq!(
            group.get::<i64, _>(2),
            stored.get::<i64, _>(1),
            "{title}: users"
        );
        assert_eq!(
            group.get::<i64, _>(3),
            stored.get::<i64, _>(2),
            "{title}: first seen"
        );
        assert_eq!(
            group.get::<i64, _>(4),
            stored.get::<i64, _>(3),
            "{title}: last seen"
        );
    }

    // A resolved group reopens as a regression whichever server the next event reaches.
    let fingerprint: String = groups[0].get(5);
    for (i, server) in urls.iter().enumerate() {
        let resolved = http
            .patch(format!("{server}/api/v1/groups/{fingerprint}/status"))
            .bearer_auth(ADMIN)
            .body(json!({ "status": "resolved" }).to_string())
            .send()
            .await
            .expect("resolve");
        assert_eq!(resolved.status().as_u16(), 200);
        let group: i64 = sqlx::query_scalar(
            "SELECT CAST(substr(error_value, 7, 1) AS BIGINT) FROM groups WHERE fingerprint = $1",
        )
        .bind(&fingerprint)
        .fetch_one(&db)
        .await
        .expect("the group's number");
        let body = event(group as usize, &format!("regression-{i}"), 1);
        assert_eq!(post(&http, server, &key, &body).await, Some(202));
        let row = sqlx::query("SELECT status, regressed_at FROM groups WHERE fingerprint = $1")
            .bind(&fingerprint)
            .fetch_one(&db)
            .await
            .expect("group");
        assert_eq!(row.get::<String, _>(0), "unresolved");
        assert!(row.get::<Option<i64>, _>(1).is_some(), "a regression");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_duplicate_window_quota_and_rate_limit_hold_across_servers() {
    let cluster = Cluster::shared();

    // The duplicate window: one event sent to both servers at once is stored once.
    let (url, key, servers) = two_servers(cluster, &[]).await;
    let http = reqwest::Client::new();
    let body = json!({ "message": "the same report", "sdk": { "name": "tests", "version": "1" } });
    let (first, second) = (servers[0].url(""), servers[1].url(""));
    let (a, b) = tokio::join!(
        post(&http, &first, &key, &body),
        post(&http, &second, &key, &body)
    );
    assert_eq!((a, b), (Some(202), Some(202)));
    let db = connect(&url).await;
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&db)
        .await
        .expect("count");
    assert_eq!(stored, 1, "one of the two is a repeat");
    drop(servers);

    // The daily quota: 16 clients, 240 distinct events across both servers, a quota of 50.
    let url = cluster.new_database_url();
    let key = new_project(&url);
    let db = connect(&url).await;
    sqlx::query("UPDATE projects SET daily_quota = 50")
        .execute(&db)
        .await
        .expect("quota");
    let servers = [
        Served::start(&url, &[], &[]).await,
        Served::start(&url, &[], &[]).await,
    ];
    let urls: Vec<String> = servers.iter().map(|s| s.url("")).collect();
    let answers = Arc::new(Mutex::new(BTreeMap::<u16, usize>::new()));
    let mut clients = Vec::new();
    for client in 0..CLIENTS {
        let (http, key, urls, answers) = (http.clone(), key.clone(), urls.clone(), answers.clone());
        clients.push(tokio::spawn(async move {
            for n in 0..15 {
                let body = event(n % 3, &format!("q{client}-{n}"), n);
                let status = post(&http, &urls[(client + n) % 2], &key, &body).await;
                *answers
                    .lock()
                    .expect("answers")
                    .entry(status.unwrap_or(0))
                    .or_default() += 1;
            }
        }));
    }
    for client in clients {
        client.await.expect("client");
    }
    let answers = answers.lock().expect("answers").clone();
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&db)
        .await
        .expect("count");
    assert_eq!(stored, 50, "exactly the quota is stored: {answers:?}");
    assert_eq!(answers.get(&202), Some(&50), "{answers:?}");
    assert_eq!(answers.get(&429), Some(&190), "{answers:?}");
    drop(servers);

    // The rate limit: 40 a minute for one client address, whichever server it reaches.
    let (_url, key, servers) = two_servers(cluster, &[("RATE_LIMIT_PER_MINUTE", "40")]).await;
    let minute = || chrono::Utc::now().timestamp_millis() / 60_000;
    let first_minute = minute();
    let mut admitted = 0;
    for n in 0..120 {
        let body = event(0, &format!("r{n}"), n);
        let status = post(&http, &servers[n % 2].url(""), &key, &body).await;
        if status != Some(429) {
            admitted += 1;
        }
    }
    // A minute boundary crossed mid-test opens a second window.
    let windows = (minute() - first_minute + 1) as usize;
    assert!(
        admitted <= 40 * windows && admitted >= 40,
        "{admitted} admitted over {windows} window(s) with a limit of 40 across two servers"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_key_made_on_one_server_works_on_all_and_tasks_run_once() {
    let cluster = Cluster::shared();
    let (url, _key, servers) = two_servers(cluster, &[]).await;
    // A key created by the command line while both servers run.
    let created = command(&url)
        .args(["project", "create", "second", "--json"])
        .output()
        .expect("project create");
    assert!(created.status.success());
    let created: Value = serde_json::from_slice(&created.stdout).expect("JSON");
    let key = created["api_key"].as_str().expect("key").to_owned();
    let http = reqwest::Client::new();
    for (i, server) in servers.iter().enumerate() {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let body = event(1, &format!("new-key-{i}"), 1);
            if post(&http, &server.url(""), &key, &body).await == Some(202) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the new key never worked on server {i}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    // Periodic tasks: of many servers asking at the same moment, exactly one runs each.
    let mut stores = Vec::new();
    for _ in 0..8 {
        stores.push(
            errorwatch_server::Store::open(&url, &Default::default())
                .await
                .expect("store"),
        );
    }
    // The servers ran it when they started: the next run is due an hour later.
    let now = chrono::Utc::now().timestamp_millis();
    for round in 1..=5 {
        let at = now + round * 3_600_000;
        let claims = claim_all(&stores, at).await;
        let claimed = claims.iter().filter(|c| matches!(c, Ok(true))).count();
        assert_eq!(claimed, 1, "round {round}: {claims:?}");
        // Asked again within the hour, nobody runs it.
        let again = claim_all(&stores, at + 60_000).await;
        assert!(again.iter().all(|c| matches!(c, Ok(false))), "{again:?}");
    }
}

/// Every store asks, at once, to run the hourly retention at `at`.
async fn claim_all(
    stores: &[errorwatch_server::Store],
    at: i64,
) -> Vec<Result<bool, errorwatch_server::StoreError>> {
    let handles: Vec<_> = stores
        .iter()
        .map(|store| {
            let store = store.clone();
            tokio::spawn(async move { store.claim_task("retention", at, 3_599_000).await })
        })
        .collect();
    let mut claims = Vec::new();
    for handle in handles {
        claims.push(handle.await.expect("task"));
    }
    claims
}

/// Clients sending distinct events across both servers until `stop`; each acknowledged id is
/// recorded.
fn stream(
    http: &reqwest::Client,
    key: &str,
    urls: &[String],
    acknowledged: &Arc<Mutex<BTreeSet<String>>>,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<BTreeMap<u16, usize>>> {
    (0..CLIENTS)
        .map(|client| {
            let (http, key, urls) = (http.clone(), key.to_owned(), urls.to_vec());
            let (acknowledged, stop) = (acknowledged.clone(), stop.clone());
            tokio::spawn(async move {
                let mut answers = BTreeMap::new();
                for n in 0..100_000 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let id = format!("s{client}-{n}");
                    let body = event(n % 3, &id, n % 11);
                    let status = post(&http, &urls[(client + n) % urls.len()], &key, &body).await;
                    *answers.entry(status.unwrap_or(0)).or_default() += 1;
                    if status == Some(202) {
                        acknowledged.lock().expect("acks").insert(id);
                    } else {
                        // Refused or cut: back off a little, as an SDK would.
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
                answers
            })
        })
        .collect()
}

async fn wait_for(count: &Arc<Mutex<BTreeSet<String>>>, at_least: usize, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while count.lock().expect("acks").len() < at_least {
        assert!(
            Instant::now() < deadline,
            "{what}: too few acknowledgements"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn stored_ids(url: &str) -> BTreeSet<String> {
    let db = connect(url).await;
    sqlx::query_scalar::<_, Option<String>>("SELECT event_id FROM events")
        .fetch_all(&db)
        .await
        .expect("events")
        .into_iter()
        .flatten()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_one_server_mid_stream_loses_nothing_it_acknowledged() {
    let cluster = Cluster::shared();
    let (url, key, [mut a, b]) = two_servers(cluster, &[]).await;
    let http = reqwest::Client::new();
    let acknowledged = Arc::new(Mutex::new(BTreeSet::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let clients = stream(&http, &key, &[a.url(""), b.url("")], &acknowledged, &stop);
    wait_for(&acknowledged, 800, "before the kill").await;
    a.child.kill().expect("SIGKILL");
    let _ = a.child.wait();
    let killed_at = acknowledged.lock().expect("acks").len();
    // The survivor goes on taking events.
    wait_for(&acknowledged, killed_at + 400, "after the kill").await;
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.expect("client");
    }
    let acknowledged = acknowledged.lock().expect("acks").clone();
    let stored = stored_ids(&url).await;
    let lost: Vec<_> = acknowledged.difference(&stored).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged events lost, e.g. {:?}",
        lost.len(),
        acknowledged.len(),
        lost.first()
    );
    drop(b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_stopping_mid_stream_gets_503s_never_a_false_202_and_ingestion_resumes() {
    // A cluster of its own: this test stops it.
    let cluster = Cluster::start();
    let (url, key, servers) = two_servers(&cluster, &[]).await;
    let http = reqwest::Client::new();
    let urls: Vec<String> = servers.iter().map(|s| s.url("")).collect();
    let acknowledged = Arc::new(Mutex::new(BTreeSet::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let clients = stream(&http, &key, &urls, &acknowledged, &stop);
    wait_for(&acknowledged, 500, "before the stop").await;

    cluster.stop();
    // Both servers say so: ready turns 503, events are refused with Retry-After.
    for url in &urls {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = http.get(format!("{url}/health/ready")).send().await;
            if ready.is_ok_and(|r| r.status().as_u16() == 503) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{url} stayed ready without its database"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let refused = http
            .post(format!("{url}/api/v1/event"))
            .header("X-API-Key", &key)
            .body(event(0, "while-down", 0).to_string())
            .send()
            .await
            .expect("the server answers");
        assert_eq!(refused.status().as_u16(), 503);
        assert!(refused.headers().contains_key("retry-after"));
    }
    let during = acknowledged.lock().expect("acks").len();

    cluster.restart();
    // Nobody restarts the servers: ingestion resumes by itself.
    wait_for(&acknowledged, during + 500, "after PostgreSQL came back").await;
    for url in &urls {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = http.get(format!("{url}/health/ready")).send().await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                break;
            }
            assert!(Instant::now() < deadline, "{url} never became ready again");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let mut answers = BTreeMap::new();
    for client in clients {
        for (status, n) in client.await.expect("client") {
            *answers.entry(status).or_insert(0) += n;
        }
    }
    let acknowledged = acknowledged.lock().expect("acks").clone();
    let stored = stored_ids(&url).await;
    let false_acks: Vec<_> = acknowledged.difference(&stored).collect();
    assert!(
        false_acks.is_empty(),
        "{} events answered 202 but not stored, e.g. {:?} (answers {answers:?})",
        false_acks.len(),
        false_acks.first()
    );
    assert!(answers.get(&503).is_some_and(|n| *n > 0), "{answers:?}");
}
