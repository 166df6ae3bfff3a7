//! `cargo bench -p errorwatch-server --bench ingest`
//!
//! Starts the server binary on each store: a fresh SQLite file (WAL, synchronous=FULL), then a
//! fresh PostgreSQL database (synchronous commit) behind one server and behind two. 16
//! concurrent clients post distinct v2 events of one group over keep-alive connections (with
//! two servers, half the clients on each), and it prints the events acknowledged per second,
//! the events found stored afterwards, and the servers' peak memory. Three runs of each,
//! interleaved; median with the spread, and each store's ratio to SQLite.
//!
//! PostgreSQL is the machine's own (`initdb`, `postgres`), started in a temporary directory;
//! `ERRORWATCH_BENCH_STORES=sqlite` runs SQLite alone.
//!
//! With `ERRORWATCH_BASELINE_BIN=/path/to/an/other/errorwatch-server`, the SQLite runs
//! alternate between that binary and this one, and the ratio of their medians is printed: how
//! a change moved throughput, measured in one run on one machine.

#[allow(dead_code)]
#[path = "../tests/support/postgres.rs"]
mod postgres;

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_errorwatch-server");
const CLIENTS: usize = 16;
const EVENTS_PER_CLIENT: usize = 2_000;
const RUNS: usize = 3;
const SECRET: &str = "bench-secret-0123456789";

struct Run {
    acknowledged_per_sec: f64,
    stored: u64,
    acknowledged: u64,
    stored_per_sec: f64,
    peak_rss_mib: f64,
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "errorwatch-server ingest benchmark: {CLIENTS} clients x {EVENTS_PER_CLIENT} distinct v2 events of one group, {RUNS} runs"
    );
    let baseline_bin = std::env::var("ERRORWATCH_BASELINE_BIN").ok();
    let with_postgres = std::env::var("ERRORWATCH_BENCH_STORES").as_deref() != Ok("sqlite");
    let cluster = with_postgres.then(postgres::Cluster::start);
    let mut runs = Vec::new();
    let mut baseline = Vec::new();
    let mut on_postgres = [Vec::new(), Vec::new()];
    for _ in 0..RUNS {
        if let Some(bin) = &baseline_bin {
            baseline.push(runtime.block_on(run(bin, Store::Sqlite)));
        }
        runs.push(runtime.block_on(run(BIN, Store::Sqlite)));
        if let Some(cluster) = &cluster {
            for (instances, results) in on_postgres.iter_mut().enumerate() {
                let url = cluster.new_database_url();
                let store = Store::Postgres {
                    url: &url,
                    instances: instances + 1,
                };
                results.push(runtime.block_on(run(BIN, store)));
            }
        }
    }
    report("SQLite, 1 server", &runs);
    if cluster.is_some() {
        let (sqlite, _, _) = spread(&runs, |r| r.stored_per_sec);
        for (instances, results) in on_postgres.iter().enumerate() {
            report(&format!("PostgreSQL, {} server(s)", instances + 1), results);
            let (ours, low, high) = spread(results, |r| r.stored_per_sec);
            println!(
                "  stored / SQLite's median {:>7.2}  [{:.2} .. {:.2}]",
                ours / sqlite,
                low / sqlite,
                high / sqlite
            );
        }
    }
    if let Some(bin) = &baseline_bin {
        report(bin, &baseline);
        let (current, _, _) = spread(&runs, |r| r.acknowledged_per_sec);
        let (base, _, _) = spread(&baseline, |r| r.acknowledged_per_sec);
        println!(
            "  this build / baseline   {:>8.2} (acknowledged events/s, medians)",
            current / base
        );
    }
}

/// The median of `f` over `runs`, with the lowest and the highest.
fn spread(runs: &[Run], f: impl Fn(&Run) -> f64) -> (f64, f64, f64) {
    let mut values: Vec<f64> = runs.iter().map(f).collect();
    values.sort_by(f64::total_cmp);
    (
        values[values.len() / 2],
        values[0],
        values[values.len() - 1],
    )
}

fn report(name: &str, runs: &[Run]) {
    println!("{name}:");
    let (ack, ack_min, ack_max) = spread(runs, |r| r.acknowledged_per_sec);
    let (stored, stored_min, stored_max) = spread(runs, |r| r.stored_per_sec);
    let (rss, rss_min, rss_max) = spread(runs, |r| r.peak_rss_mib);
    println!("  acknowledged (202)      {ack:>8.0} events/s  [{ack_min:.0} .. {ack_max:.0}]");
    println!(
        "  stored end to end       {stored:>8.0} events/s  [{stored_min:.0} .. {stored_max:.0}]"
    );
    for (i, run) in runs.iter().enumerate() {
        println!(
            "  run {}: {} acknowledged, {} found in the store ({})",
            i + 1,
            run.acknowledged,
            run.stored,
            if run.stored >= run.acknowledged {
                "none lost"
            } else {
                "LOST EVENTS"
            }
        );
    }
    println!("  server peak RSS         {rss:>8.1} MiB  [{rss_min:.1} .. {rss_max:.1}] (the larger server's)");
}

/// Where the events go.
#[derive(Clone, Copy)]
enum Store<'a> {
    Sqlite,
    Postgres { url: &'a str, instances: usize },
}

async fn run(bin: &str, store: Store<'_>) -> Run {
    let dir = std::env::temp_dir().join(format!("ew-bench-{}-{}", std::process::id(), nonce()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (database_url, instances) = match store {
        Store::Sqlite => (format!("sqlite://{}", dir.join("bench.db").display()), 1),
        Store::Postgres { url, instances } => (url.to_owned(), instances),
    };
    let command = |args: &[&str]| {
        let mut command = Command::new(bin);
        command
            .args(args)
            .env("DATABASE_URL", &database_url)
            .env("API_KEY_HASH_SECRET", SECRET)
            .env("ADMIN_API_KEY", "bench-admin")
            .env("RATE_LIMIT_PER_MINUTE", "0")
            .env("RUST_LOG", "warn");
        command
    };
    let migrated = command(&["migrate"]).output().expect("migrate");
    assert!(migrated.status.success(), "migrate failed");
    let created = command(&["project", "create", "bench", "--json"])
        .output()
        .expect("create");
    let created: serde_json::Value = serde_json::from_slice(&created.stdout).expect("json");
    let key = created["api_key"].as_str().expect("key").to_owned();
    let mut servers = Vec::new();
    let mut bases = Vec::new();
    for _ in 0..instances {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
            listener.local_addr().expect("addr").port()
        };
        servers.push(
            command(&["serve"])
                .env("ERRORWATCH_BIND", format!("127.0.0.1:{port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("serve"),
        );
        bases.push(format!("http://127.0.0.1:{port}"));
    }
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(CLIENTS)
        .build()
        .expect("client");
    for base in &bases {
        let up = Instant::now();
        while http
            .get(format!("{base}/health/live"))
            .send()
            .await
            .is_err()
        {
            assert!(
                up.elapsed() < Duration::from_secs(20),
                "server did not start"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    let acknowledged = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut clients = Vec::new();
    for client in 0..CLIENTS {
        let (http, key, base, acknowledged) = (
            http.clone(),
            key.clone(),
            bases[client % bases.len()].clone(),
            acknowledged.clone(),
        );
        clients.push(tokio::spawn(async move {
            for n in 0..EVENTS_PER_CLIENT {
                let body = json!({
                    "event_id": format!("{client}-{n}"),
                    "exception": { "type": "CheckoutError", "value": format!("order {} failed", 100_000 + client * EVENTS_PER_CLIENT + n) },
                    "frames": [{ "filename": "src/checkout.rs", "function": "checkout::pay", "lineno": 42, "in_app": true }],
                    "level": "error",
                    "env": "bench",
                    "sdk": { "name": "bench", "version": "1" },
                });
                let response = http
                    .post(format!("{base}/api/v1/event"))
                    .header("X-API-Key", &key)
                    .body(body.to_string())
                    .send()
                    .await;
                if let Ok(response) = response {
                    if response.status().as_u16() == 202 {
                        acknowledged.fetch_add(1, Ordering::Relaxed);
                    }
                    let _ = response.bytes().await;
                }
            }
        }));
    }
    for client in clients {
        let _ = client.await;
    }
    let elapsed = started.elapsed();
    let peak_rss_mib = servers
        .iter()
        .map(|server| {
            std::fs::read_to_string(format!("/proc/{}/status", server.id()))
                .ok()
                .and_then(|status| {
                    status
                        .lines()
                        .find(|l| l.starts_with("VmHWM:"))
                        .and_then(|l| l.split_whitespace().nth(1))
                        .and_then(|kib| kib.parse::<f64>().ok())
                })
                .unwrap_or(0.0)
                / 1024.0
        })
        .fold(0.0, f64::max);
    let groups: serde_json::Value = http
        .get(format!("{}/api/v1/groups", bases[0]))
        .bearer_auth("bench-admin")
        .send()
        .await
        .expect("groups")
        .json_body()
        .await;
    let stored = groups["groups"][0]["count"].as_u64().unwrap_or(0);
    // SIGTERM: the graceful path.
    for mut server in servers {
        let _ = Command::new("kill").arg(server.id().to_string()).status();
        let _ = server.wait();
    }
    let _ = std::fs::remove_dir_all(&dir);
    let acknowledged = acknowledged.load(Ordering::Relaxed);
    Run {
        acknowledged_per_sec: acknowledged as f64 / elapsed.as_secs_f64(),
        stored,
        acknowledged,
        stored_per_sec: stored as f64 / elapsed.as_secs_f64(),
        peak_rss_mib,
    }
}

fn nonce() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

trait JsonBody {
    async fn json_body(self) -> serde_json::Value;
}

impl JsonBody for reqwest::Response {
    async fn json_body(self) -> serde_json::Value {
        let bytes = self.bytes().await.expect("body");
        serde_json::from_slice(&bytes).expect("JSON")
    }
}
