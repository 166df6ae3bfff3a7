//! `cargo bench -p errorwatch-server --bench pages`
//!
//! How long the issue list and the issue detail take to render, server-side, with 10,000
//! issues and 1,000,000 events in the store. The events are spread over the last 24 hours and
//! over the issues as real traffic is (a few issues hold most events: issue k gets about
//! 1/k of them, so the largest has ~100,000), written through the store's own batch path.
//!
//! Then the server serves them on loopback, signed in, and each page is fetched 60 times after
//! 10 unmeasured: the list as it opens, sorted by count, searched, filtered by release, a
//! later page; the detail of the largest issue, of a small one, and the largest's 500th event.
//! It prints the median, p95 and max per page, and each median's ratio to a `/health/live`
//! baseline measured in the same run. The issue asks for at most 50 ms.
//!
//! `ERRORWATCH_BENCH_STORES=sqlite` (or `postgres`) runs one store; both by default. On
//! PostgreSQL the seeded database is vacuumed and analysed first, as autovacuum would.

#[allow(dead_code)]
#[path = "../tests/support/postgres.rs"]
mod postgres;

use std::time::{Duration, Instant};

use errorwatch_server::store::NewEvent;
use errorwatch_server::{Config, OpenOptions, Server, Store};

const ISSUES: usize = 10_000;
const EVENTS: usize = 1_000_000;
const BATCH: usize = 2_000;
const WARMUP: usize = 10;
const SAMPLES: usize = 60;
const ADMIN: &str = "bench-admin-key";
const HOUR_MS: i64 = 3_600_000;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let stores =
        std::env::var("ERRORWATCH_BENCH_STORES").unwrap_or_else(|_| "sqlite,postgres".into());
    let dir = std::env::temp_dir().join(format!("ew-pages-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    println!("errorwatch-server pages benchmark: {ISSUES} issues, {EVENTS} events; {SAMPLES} fetches per page after {WARMUP}");
    for store in stores.split(',') {
        let (url, _cluster) = match store.trim() {
            "sqlite" => (format!("sqlite://{}", dir.join("pages.db").display()), None),
            "postgres" => {
                let cluster = postgres::Cluster::start();
                (cluster.new_database_url(), Some(cluster))
            }
            other => panic!("ERRORWATCH_BENCH_STORES: unknown store {other} (sqlite, postgres)"),
        };
        runtime.block_on(bench(store.trim(), &url));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The issue (0-based) of event `i`: issue k gets a share of about 1/(k+1).
fn issue_of(i: usize) -> usize {
    // The inverse of the harmonic distribution's cumulative share, on a fixed sequence.
    let u = (i as f64 * 0.618_033_988_75).fract();
    let k = ((ISSUES as f64 + 1.0).powf(u) - 1.0) as usize;
    k.min(ISSUES - 1)
}

async fn bench(name: &str, url: &str) {
    let store = Store::open(
        url,
        &OpenOptions {
            create_if_missing: true,
            ..Default::default()
        },
    )
    .await
    .expect("store");
    let (project, _) =
        errorwatch_server::create_project(&store, b"bench-secret-0123456789", "shop")
            .await
            .expect("project");
    let now = chrono::Utc::now().timestamp_millis();
    let started = Instant::now();
    let mut batch = Vec::with_capacity(BATCH);
    for i in 0..EVENTS {
        let issue = issue_of(i);
        // Spread over the last 24 hours, the newest last.
        let at = now - 24 * HOUR_MS + (i as i64 * 24 * HOUR_MS / EVENTS as i64);
        let payload = format!(
            r#"{{"event_id":"e{i}","exception":{{"type":"OrderError","value":"order {issue} failed"}},"frames":[{{"filename":"src/orders/{issue}.rs","lineno":{line},"function":"charge","in_app":true}},{{"filename":"tokio/src/runtime.rs","lineno":7,"in_app":false}}],"release":"shop@1.{r}.0","env":"production","tags":{{"region":"eu"}},"breadcrumbs":[{{"timestamp":1700000000,"category":"http","message":"GET /cart"}}]}}"#,
            line = 10 + issue % 90,
            r = i % 20,
        );
        batch.push(NewEvent {
            project_id: project,
            fingerprint: format!("{issue:064x}"),
            title: format!("OrderError: order {issue} failed"),
            event_id: Some(format!("e{i}")),
            received_at: at,
            created_at: at,
            level: if issue.is_multiple_of(10) {
                "warning"
            } else {
                "error"
            }
            .into(),
            env: "production".into(),
            release: Some(format!("shop@1.{}.0", i % 20)),
            message: None,
            error_type: Some("OrderError".into()),
            error_value: Some(format!("order {issue} failed")),
            grouping_rule: "exception",
            stack: format!("at charge (src/orders/{issue}.rs:{}:1)", 10 + issue % 90),
            file: format!("src/orders/{issue}.rs"),
            line: 10 + (issue % 90) as i64,
            user_id: Some(format!("user-{}", i % 5_000)),
            url: None,
            status_code: None,
            payload,
            dedupe_key: format!("e{i}"),
            seen_at: at,
            daily_quota: None,
        });
        if batch.len() == BATCH {
            store
                .write_batch(std::mem::take(&mut batch))
                .await
                .expect("seed batch");
        }
    }
    if !batch.is_empty() {
        store.write_batch(batch).await.expect("seed batch");
    }
    let stored = store.event_count().await.expect("count");
    assert_eq!(stored, EVENTS as i64, "every seeded event is stored");
    let largest = format!("{:064x}", 0);
    let largest_count = store.group_event_count(&largest).await.expect("count");
    let small = format!("{:064x}", ISSUES - 1);
    let small_count = store.group_event_count(&small).await.expect("count");
    store.close().await;
    if url.starts_with("postgres") {
        // What autovacuum does to a table that took a million rows: planner statistics, and
        // the visibility map that lets a count read the index alone. Measured without it, the
        // pages would show an hour after a bulk load, not a store in its steady state.
        let pool = sqlx::PgPool::connect(url).await.expect("postgres");
        sqlx::query("VACUUM ANALYZE")
            .execute(&pool)
            .await
            .expect("vacuum");
        pool.close().await;
    }
    println!(
        "\n{name}: seeded {stored} events in {:.0} s; the largest issue has {largest_count} events, the smallest {small_count}",
        started.elapsed().as_secs_f64()
    );

    let mut config = Config::for_tests("bench-secret-0123456789");
    config.database_url = url.to_owned();
    config.admin_api_key = Some(ADMIN.into());
    let server = Server::start(config).await.expect("server");
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let signed_in = http
        .post(format!("{}/sign-in", server.url()))
        .form(&[("key", ADMIN)])
        .send()
        .await
        .expect("sign in");
    let cookie = signed_in.headers()["set-cookie"]
        .to_str()
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .to_owned();

    let pages = [
        (
            "/health/live (baseline)".to_owned(),
            "/health/live".to_owned(),
        ),
        ("list, as it opens".into(), "/issues".into()),
        ("list, by count".into(), "/issues?sort=count".into()),
        (
            "list, searched".into(),
            "/issues?search=order+77&status=all".into(),
        ),
        (
            "list, one release".into(),
            "/issues?release=shop%401.7.0".into(),
        ),
        ("list, page 40".into(), "/issues?page=40".into()),
        (
            format!("detail, {largest_count} events"),
            format!("/issues/{largest}"),
        ),
        (
            format!("detail, {small_count} events"),
            format!("/issues/{small}"),
        ),
        (
            "detail, its 500th event".into(),
            format!("/issues/{largest}?event=500"),
        ),
    ];
    println!(
        "{:<28} {:>9} {:>9} {:>9} {:>10} {:>8}",
        "page", "median", "p95", "max", "vs health", "bytes"
    );
    let mut baseline = 0.0;
    for (label, path) in &pages {
        let url = format!("{}{path}", server.url());
        let mut times = Vec::with_capacity(SAMPLES);
        let mut bytes = 0;
        for i in 0..WARMUP + SAMPLES {
            let started = Instant::now();
            let response = http
                .get(&url)
                .header("cookie", &cookie)
                .send()
                .await
                .expect("page");
            assert_eq!(response.status(), 200, "{path}");
            bytes = response.bytes().await.expect("body").len();
            if i >= WARMUP {
                times.push(started.elapsed());
            }
        }
        times.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let median = ms(times[SAMPLES / 2]);
        if baseline == 0.0 {
            baseline = median;
        }
        println!(
            "{label:<28} {:>7.2}ms {:>7.2}ms {:>7.2}ms {:>9.0}x {bytes:>8}",
            median,
            ms(times[SAMPLES * 95 / 100]),
            ms(times[SAMPLES - 1]),
            median / baseline,
        );
    }
    server.shutdown().await;
}
