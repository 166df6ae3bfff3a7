//! `cargo bench -p errorwatch-server --bench ingest`
//!
//! Measures the server against the machine's floor, in one run. 16 concurrent clients post
//! distinct v2 events of one group over keep-alive connections (bodies built before the clock
//! starts), to, in turn:
//!
//! - **the floor**: a bare axum handler that reads the body and answers 202, in its own
//!   process like the server (this bench binary, started again);
//! - **the floor plus parsing**: the same, parsing the body with serde_json first;
//! - `errorwatch-server` **in memory** (`sqlite::memory:`);
//! - `errorwatch-server` on a **SQLite file** (WAL, synchronous=FULL): every 202 is durable;
//! - `errorwatch-server` on **PostgreSQL** (synchronous commit), behind one server and behind
//!   two (half the clients on each).
//!
//! It prints the events acknowledged per second, the events found stored afterwards, the
//! servers' peak memory, and each store's stored events/s as a ratio to the floor's
//! acknowledged events/s. Three runs of each, interleaved: each round rotates the order of the
//! targets by one, so each goes first equally often. Median with the spread.
//!
//! PostgreSQL is the machine's own (`initdb`, `postgres`), started in a temporary directory;
//! `ERRORWATCH_BENCH_STORES=sqlite` leaves it out. `ERRORWATCH_BENCH_ONLY=sqlite` (or `memory`,
//! `floor`) runs that target alone, for a profiler.
//!
//! The server binary allocates with mimalloc; so does the in-memory target's process, which runs
//! the server's library in this binary. The clients and the floors keep the system's allocator.
//!
//! With `ERRORWATCH_BASELINE_BIN=/path/to/an/other/errorwatch-server`, the SQLite runs
//! alternate between that binary and this one, and the ratio of their medians is printed: how
//! a change moved throughput, measured in one run on one machine. Which of the two goes first
//! alternates too: with this build always second, the same binary against itself read 1.02
//! to 1.04; alternating, 0.99 twice (8 runs). `ERRORWATCH_BENCH_RUNS` sets the number of runs
//! (3 by default); an even number puts each binary first equally often.
//!
//! The clients run on one thread per core; `ERRORWATCH_BENCH_CLIENT_THREADS=1` runs them on
//! one, as `wrk -t1` would. The clients share the cores with the servers, so what they cost
//! moves the ratios (the README gives runs of both).

#[allow(dead_code)]
#[path = "../tests/support/postgres.rs"]
mod postgres;

use std::alloc::{GlobalAlloc, Layout, System};
use std::ffi::CStr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

/// The in-memory target runs the server's library in this binary (its store lives in its
/// process), so that process allocates as the server binary does, with mimalloc; the clients
/// and the floors keep the system's allocator. Decided at the process's first allocation,
/// before any other: every block is freed by the allocator that gave it.
struct TargetsAllocator;

/// 0 until the first allocation, then 1 (the system's) or 2 (mimalloc).
static ALLOCATOR_CHOICE: AtomicU8 = AtomicU8::new(0);

impl TargetsAllocator {
    fn chosen() -> &'static dyn GlobalAlloc {
        let mut choice = ALLOCATOR_CHOICE.load(Ordering::Relaxed);
        if choice == 0 {
            // `CHILD`, read without allocating.
            // SAFETY: the first allocation happens on the main thread, before any other
            // thread runs (or sets a variable).
            let value = unsafe { libc::getenv(c"ERRORWATCH_BENCH_CHILD".as_ptr()) };
            // SAFETY: a non-null `getenv` result is a NUL-terminated string.
            let memory =
                !value.is_null() && unsafe { CStr::from_ptr(value) }.to_bytes() == b"memory";
            choice = if memory { 2 } else { 1 };
            ALLOCATOR_CHOICE.store(choice, Ordering::Relaxed);
        }
        if choice == 2 {
            &mimalloc::MiMalloc
        } else {
            &System
        }
    }
}

// SAFETY: every call goes to one of two allocators, the same one for the process's life.
unsafe impl GlobalAlloc for TargetsAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        Self::chosen().alloc(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        Self::chosen().dealloc(ptr, layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        Self::chosen().alloc_zeroed(layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        Self::chosen().realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOCATOR: TargetsAllocator = TargetsAllocator;

const BIN: &str = env!("CARGO_BIN_EXE_errorwatch-server");
const CLIENTS: usize = 16;
const EVENTS_PER_CLIENT: usize = 2_000;
const RUNS: usize = 3;
const SECRET: &str = "bench-secret-0123456789";

struct Run {
    acknowledged_per_sec: f64,
    /// Events found stored afterwards; `None` for the floors, which store nothing.
    stored: Option<u64>,
    acknowledged: u64,
    stored_per_sec: f64,
    peak_rss_mib: f64,
    /// CPU time the servers used, per event acknowledged.
    cpu_us_per_event: f64,
    /// Times a server thread gave up its core (to wait, or preempted), per event.
    switches_per_event: f64,
    /// The server's own view, from `/metrics`: where a request's time went.
    inside: Option<Inside>,
}

/// From the server's `/metrics` after a run (the first server's, with two).
#[derive(Clone, Copy)]
struct Inside {
    /// Events per committed batch, on average.
    batch_events: f64,
    /// Time to write and commit one batch, on average.
    batch_ms: f64,
    /// Time to answer one request, on average.
    request_ms: f64,
}

impl Inside {
    fn read(metrics: &str) -> Option<Inside> {
        let value = |name: &str| {
            metrics.lines().find_map(|line| {
                line.strip_prefix(name)?
                    .strip_prefix(' ')?
                    .parse::<f64>()
                    .ok()
            })
        };
        let batches = value("errorwatch_store_batch_duration_seconds_count")?;
        let requests = value("errorwatch_http_request_duration_seconds_count")?;
        Some(Inside {
            batch_events: value("errorwatch_events_stored_total")? / batches,
            batch_ms: value("errorwatch_store_batch_duration_seconds_sum")? * 1e3 / batches,
            request_ms: value("errorwatch_http_request_duration_seconds_sum")? * 1e3 / requests,
        })
    }
}

impl Run {
    fn delivered_per_sec(&self) -> f64 {
        if self.stored.is_some() {
            self.stored_per_sec
        } else {
            self.acknowledged_per_sec
        }
    }
}

/// What the clients post to.
#[derive(Clone, Copy)]
enum Target<'a> {
    /// A bare axum handler: read the body, answer 202.
    Floor,
    /// The same, parsing the body as JSON first.
    FloorParsing,
    /// `errorwatch-server` on `sqlite::memory:`.
    Memory,
    /// A binary of `errorwatch-server` on a fresh SQLite file: `ERRORWATCH_BASELINE_BIN` when
    /// `baseline`, else this build.
    Sqlite { bin: &'a str, baseline: bool },
    /// `errorwatch-server` on a fresh database of `cluster`, behind `instances` servers.
    Postgres {
        cluster: &'a postgres::Cluster,
        instances: usize,
    },
}

impl Target<'_> {
    /// For a SQLite run, whether the baseline serves it.
    fn on_sqlite(&self) -> Option<bool> {
        match self {
            Target::Sqlite { baseline, .. } => Some(*baseline),
            _ => None,
        }
    }
}

/// Set in the environment of this binary when it is started again as a target's process.
const CHILD: &str = "ERRORWATCH_BENCH_CHILD";

/// A count of 1 or more from the variable `name`, or `default` when it is unset.
fn count_from_env(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(count) => count
            .parse::<usize>()
            .ok()
            .filter(|&count| count > 0)
            .unwrap_or_else(|| panic!("{name} is a number, 1 or more, not {count:?}")),
        Err(_) => default,
    }
}

fn main() {
    if let Ok(child) = std::env::var(CHILD) {
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        runtime.block_on(serve_child(&child));
        return;
    }
    // The ratios depend on it (see above), so the header line names it.
    let client_threads = count_from_env(
        "ERRORWATCH_BENCH_CLIENT_THREADS",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(client_threads)
        .enable_all()
        .build()
        .expect("runtime");
    let runs = count_from_env("ERRORWATCH_BENCH_RUNS", RUNS);
    println!(
        "errorwatch-server ingest benchmark: {CLIENTS} clients x {EVENTS_PER_CLIENT} distinct v2 events of one group, {runs} runs, clients on {client_threads} thread{}",
        if client_threads == 1 { "" } else { "s" }
    );
    println!(
        "machine: {} logical cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let sync = disk_sync_ms();
    println!(
        "disk: a 4 KiB append and fdatasync takes {:.3} ms [{:.3} .. {:.3}] (median of 200): each durable batch pays at least one",
        sync.0, sync.1, sync.2
    );
    let baseline_bin = std::env::var("ERRORWATCH_BASELINE_BIN").ok();
    let with_postgres = std::env::var("ERRORWATCH_BENCH_STORES").as_deref() != Ok("sqlite");
    let cluster = (with_postgres && std::env::var("ERRORWATCH_BENCH_ONLY").is_err())
        .then(postgres::Cluster::start);
    let bodies = bodies();
    let mut floor = Vec::new();
    let mut floor_parsing = Vec::new();
    let mut memory = Vec::new();
    let mut sqlite = Vec::new();
    let mut baseline = Vec::new();
    let mut on_postgres = [Vec::new(), Vec::new()];
    let only = std::env::var("ERRORWATCH_BENCH_ONLY").ok();
    let wanted = |name: &str| only.as_deref().is_none_or(|only| only == name);
    // Each round's runs, in a base order that every round rotates by one, so that each target
    // goes first, second, ... equally often: a fixed order read the targets' positions (the
    // machine warming, the page cache, a neighbour's load) as their speed.
    let mut steps = Vec::new();
    if wanted("floor") {
        steps.extend([Target::Floor, Target::FloorParsing]);
    }
    if wanted("memory") {
        steps.push(Target::Memory);
    }
    if wanted("sqlite") {
        if let Some(bin) = baseline_bin.as_deref() {
            steps.push(Target::Sqlite {
                bin,
                baseline: true,
            });
        }
        steps.push(Target::Sqlite {
            bin: BIN,
            baseline: false,
        });
    }
    if let Some(cluster) = cluster.as_ref().filter(|_| only.is_none()) {
        steps.extend((1..=2).map(|instances| Target::Postgres { cluster, instances }));
    }
    for round in 0..runs {
        let mut order = steps.clone();
        order.rotate_left(round % steps.len().max(1));
        // The rotation alone would put the baseline before this build in most rounds: the
        // baseline goes first in even rounds, this build in odd ones, wherever the two fall.
        let base = order.iter().position(|step| step.on_sqlite() == Some(true));
        let this = order
            .iter()
            .position(|step| step.on_sqlite() == Some(false));
        if let (Some(base), Some(this)) = (base, this) {
            if (base < this) != (round % 2 == 0) {
                order.swap(base, this);
            }
        }
        for target in order {
            let results = match target {
                Target::Floor => &mut floor,
                Target::FloorParsing => &mut floor_parsing,
                Target::Memory => &mut memory,
                Target::Sqlite { baseline: true, .. } => &mut baseline,
                Target::Sqlite { .. } => &mut sqlite,
                Target::Postgres { instances, .. } => &mut on_postgres[instances - 1],
            };
            results.push(runtime.block_on(run(target, &bodies)));
        }
    }
    if only.is_some() {
        for (name, results) in [("floor", &floor), ("memory", &memory), ("sqlite", &sqlite)] {
            if !results.is_empty() {
                report(name, results);
            }
        }
        compare_with_baseline(baseline_bin.as_deref(), &baseline, &sqlite);
        return;
    }
    let (floor_median, _, _) = spread(&floor, |r| r.acknowledged_per_sec);
    // A store's figure is what it stored; a floor stores nothing, so its figure is its 202s.
    let against_floor = |results: &[Run]| {
        let (ours, low, high) = spread(results, Run::delivered_per_sec);
        println!(
            "  / the floor's median    {:>8.3}  [{:.3} .. {:.3}]",
            ours / floor_median,
            low / floor_median,
            high / floor_median
        );
    };
    report("the floor: bare axum, read the body, 202", &floor);
    report("the floor plus serde_json parsing", &floor_parsing);
    against_floor(&floor_parsing);
    report("errorwatch-server, in memory", &memory);
    against_floor(&memory);
    report("errorwatch-server, SQLite file (synchronous=FULL)", &sqlite);
    against_floor(&sqlite);
    for (instances, results) in on_postgres.iter().enumerate() {
        if results.is_empty() {
            continue;
        }
        report(
            &format!("errorwatch-server, PostgreSQL, {} server(s)", instances + 1),
            results,
        );
        against_floor(results);
    }
    compare_with_baseline(baseline_bin.as_deref(), &baseline, &sqlite);
}

/// The other binary's SQLite runs, and how this build's compare.
fn compare_with_baseline(bin: Option<&str>, baseline: &[Run], sqlite: &[Run]) {
    let Some(bin) = bin else { return };
    report(bin, baseline);
    let (current, _, _) = spread(sqlite, |r| r.acknowledged_per_sec);
    let (base, _, _) = spread(baseline, |r| r.acknowledged_per_sec);
    println!(
        "  this build / baseline   {:>8.2} (acknowledged events/s on SQLite, medians)",
        current / base
    );
}

/// Every client's bodies, built once: the clock measures the server, not `json!`.
fn bodies() -> Vec<Vec<bytes::Bytes>> {
    (0..CLIENTS)
        .map(|client| {
            (0..EVENTS_PER_CLIENT)
                .map(|n| {
                    let body = json!({
                        "event_id": format!("{client}-{n}"),
                        "exception": { "type": "CheckoutError", "value": format!("order {} failed", 100_000 + client * EVENTS_PER_CLIENT + n) },
                        "frames": [{ "filename": "src/checkout.rs", "function": "checkout::pay", "lineno": 42, "in_app": true }],
                        "level": "error",
                        "env": "bench",
                        "sdk": { "name": "bench", "version": "1" },
                    });
                    bytes::Bytes::from(body.to_string())
                })
                .collect()
        })
        .collect()
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
    let (rss, rss_min, rss_max) = spread(runs, |r| r.peak_rss_mib);
    let (cpu, cpu_min, cpu_max) = spread(runs, |r| r.cpu_us_per_event);
    let (switches, switches_min, switches_max) = spread(runs, |r| r.switches_per_event);
    println!("  acknowledged (202)      {ack:>8.0} events/s  [{ack_min:.0} .. {ack_max:.0}]");
    if runs.iter().all(|r| r.stored.is_some()) {
        let (stored, stored_min, stored_max) = spread(runs, |r| r.stored_per_sec);
        println!(
            "  stored end to end       {stored:>8.0} events/s  [{stored_min:.0} .. {stored_max:.0}]"
        );
        for (i, run) in runs.iter().enumerate() {
            let stored = run.stored.unwrap_or(0);
            println!(
                "  run {}: {} acknowledged, {} found in the store ({})",
                i + 1,
                run.acknowledged,
                stored,
                if stored >= run.acknowledged {
                    "none lost"
                } else {
                    "LOST EVENTS"
                }
            );
        }
    }
    println!("  server CPU per event    {cpu:>8.1} µs  [{cpu_min:.1} .. {cpu_max:.1}]");
    println!("  context switches/event  {switches:>8.2}  [{switches_min:.2} .. {switches_max:.2}]");
    println!("  server peak RSS         {rss:>8.1} MiB  [{rss_min:.1} .. {rss_max:.1}] (the larger server's)");
    if let Some(inside) = runs.iter().filter_map(|r| r.inside).nth(runs.len() / 2) {
        println!(
            "  inside (a middle run)   {:.1} events a batch, {:.2} ms to commit one, {:.2} ms a request",
            inside.batch_events, inside.batch_ms, inside.request_ms
        );
    }
}

/// This binary, started again as a target: the floors, or the server in memory (its store
/// lives in its process, so the project is made there and its key printed).
async fn serve_child(kind: &str) {
    let bind: std::net::SocketAddr = std::env::var("ERRORWATCH_BIND")
        .expect("ERRORWATCH_BIND")
        .parse()
        .expect("ERRORWATCH_BIND: an address");
    if kind == "memory" {
        let config = errorwatch_server::Config::from_lookup(|name| std::env::var(name).ok(), false)
            .expect("config");
        let server = errorwatch_server::Server::start(config)
            .await
            .expect("start");
        let (_, key) = server.create_project("bench").await.expect("project");
        println!("{key}");
        std::future::pending::<()>().await;
    }
    use axum::http::StatusCode;
    use axum::routing::{get, post};
    let parse = kind == "parse";
    let app = axum::Router::new()
        .route("/health/live", get(|| async { StatusCode::OK }))
        .route(
            "/api/v1/event",
            post(move |body: bytes::Bytes| async move {
                if parse && serde_json::from_slice::<serde_json::Value>(&body).is_err() {
                    return StatusCode::BAD_REQUEST;
                }
                StatusCode::ACCEPTED
            }),
        );
    let listener = tokio::net::TcpListener::bind(bind).await.expect("bind");
    println!("none");
    axum::serve(listener, app).await.expect("serve");
}

async fn run(target: Target<'_>, bodies: &[Vec<bytes::Bytes>]) -> Run {
    let dir = std::env::temp_dir().join(format!("ew-bench-{}-{}", std::process::id(), nonce()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (bin, database_url, instances, child) = match target {
        Target::Floor => (None, String::new(), 1, Some("floor")),
        Target::FloorParsing => (None, String::new(), 1, Some("parse")),
        Target::Memory => (None, "sqlite::memory:".to_owned(), 1, Some("memory")),
        Target::Sqlite { bin, .. } => (
            Some(bin),
            format!("sqlite://{}", dir.join("bench.db").display()),
            1,
            None,
        ),
        Target::Postgres { cluster, instances } => {
            (Some(BIN), cluster.new_database_url(), instances, None)
        }
    };
    let this_binary = std::env::current_exe().expect("this binary");
    let command = |args: &[&str]| {
        let mut command = match bin {
            Some(bin) => Command::new(bin),
            None => Command::new(&this_binary),
        };
        command
            .args(args)
            .env("DATABASE_URL", &database_url)
            .env("API_KEY_HASH_SECRET", SECRET)
            .env("ADMIN_API_KEY", "bench-admin")
            .env("RATE_LIMIT_PER_MINUTE", "0")
            .env("RUST_LOG", "warn");
        if let Some(child) = child {
            command.env(CHILD, child);
        }
        command
    };
    let mut key = None;
    if bin.is_some() {
        let migrated = command(&["migrate"]).output().expect("migrate");
        assert!(migrated.status.success(), "migrate failed");
        let created = command(&["project", "create", "bench", "--json"])
            .output()
            .expect("create");
        let created: serde_json::Value = serde_json::from_slice(&created.stdout).expect("json");
        key = Some(created["api_key"].as_str().expect("key").to_owned());
    }
    let mut servers = Vec::new();
    let mut bases = Vec::new();
    for _ in 0..instances {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
            listener.local_addr().expect("addr").port()
        };
        let mut server = command(if bin.is_some() { &["serve"] } else { &[] })
            .env("ERRORWATCH_BIND", format!("127.0.0.1:{port}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("serve");
        if child.is_some() {
            // The child prints the key (or "none") once it listens.
            use std::io::BufRead;
            let stdout = server.stdout.take().expect("stdout");
            let mut line = String::new();
            std::io::BufReader::new(stdout)
                .read_line(&mut line)
                .expect("the child's first line");
            key = Some(line.trim().to_owned());
        }
        servers.push(server);
        bases.push(format!("http://127.0.0.1:{port}"));
    }
    let key = key.expect("a key");
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
    for (client, bodies) in bodies.iter().enumerate() {
        let (http, key, acknowledged) = (http.clone(), key.clone(), acknowledged.clone());
        let url = format!("{}/api/v1/event", bases[client % bases.len()]);
        let bodies = bodies.clone();
        clients.push(tokio::spawn(async move {
            for body in bodies {
                let response = http
                    .post(&url)
                    .header("X-API-Key", &key)
                    .body(body)
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
    let cpu_seconds: f64 = servers.iter().map(|server| cpu_seconds(server.id())).sum();
    let switches: u64 = servers
        .iter()
        .map(|server| context_switches(server.id()))
        .sum();
    let (stored, inside) = if matches!(target, Target::Floor | Target::FloorParsing) {
        (None, None)
    } else {
        let metrics = http
            .get(format!("{}/metrics", bases[0]))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text");
        let groups: serde_json::Value = http
            .get(format!("{}/api/v1/groups", bases[0]))
            .bearer_auth("bench-admin")
            .send()
            .await
            .expect("groups")
            .json_body()
            .await;
        (
            Some(groups["groups"][0]["count"].as_u64().unwrap_or(0)),
            Inside::read(&metrics),
        )
    };
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
        stored_per_sec: stored.unwrap_or(0) as f64 / elapsed.as_secs_f64(),
        peak_rss_mib,
        cpu_us_per_event: cpu_seconds * 1e6 / acknowledged.max(1) as f64,
        switches_per_event: switches as f64 / acknowledged.max(1) as f64,
        inside,
    }
}

/// How long the temporary directory's disk takes to make an append durable: median, lowest,
/// highest, in ms.
fn disk_sync_ms() -> (f64, f64, f64) {
    use std::io::Write;
    let path = std::env::temp_dir().join(format!("ew-bench-sync-{}", std::process::id()));
    let mut file = std::fs::File::create(&path).expect("a file to sync");
    let block = [7u8; 4096];
    let mut took: Vec<f64> = (0..200)
        .map(|_| {
            let started = Instant::now();
            file.write_all(&block).expect("write");
            file.sync_data().expect("fdatasync");
            started.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    let _ = std::fs::remove_file(&path);
    took.sort_by(f64::total_cmp);
    (took[took.len() / 2], took[0], took[took.len() - 1])
}

/// Context switches of every thread of process `pid` so far.
fn context_switches(pid: u32) -> u64 {
    let Ok(threads) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    threads
        .flatten()
        .filter_map(|thread| std::fs::read_to_string(thread.path().join("status")).ok())
        .flat_map(|status| {
            status
                .lines()
                .filter(|line| line.contains("ctxt_switches:"))
                .filter_map(|line| line.split_whitespace().nth(1)?.parse::<u64>().ok())
                .collect::<Vec<_>>()
        })
        .sum()
}

/// User and system time of process `pid` so far, from `/proc` (Linux's clock ticks are
/// 1/100 s).
fn cpu_seconds(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            // The fields after the command name, which may hold spaces, in parentheses.
            let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
            let ticks =
                fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
            Some(ticks / 100.0)
        })
        .unwrap_or(0.0)
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
