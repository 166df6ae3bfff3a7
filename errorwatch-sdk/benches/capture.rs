//! `cargo bench -p errorwatch-sdk --bench capture`
//!
//! Prints, in one run:
//! - the caller-thread cost of `capture_message`, `capture_error` and `capture_error` with a
//!   stack trace, next to a bare bounded-channel hand-off measured the same way (the floor);
//! - the caller's latency distribution for `capture_error` with a stack trace at a steady
//!   20 000 calls/s while the worker symbolises, beside a no-SDK control paced the same way;
//! - how many events of a 20 000-capture burst reach a healthy local server;
//! - how late `flush` and shutdown return against a black-holed and a slow server;
//! - peak memory after 1 000 000 captures with the server down (in a child process, so the
//!   other phases do not inflate its high-water mark).
//!
//! Timings are reported as the median of several batches with the min..max spread.

#[path = "../tests/support/mod.rs"]
mod support;

use std::hint::black_box;
use std::time::{Duration, Instant};

use errorwatch_sdk::{Client, Level, Options};
use support::{dead_url, options, Listener, Reply};

const BATCHES: usize = 15;
const PER_BATCH: usize = 2_000;
const MEMORY_MODE: &str = "ERRORWATCH_BENCH_MEMORY";

fn main() {
    if let Ok(mode) = std::env::var(MEMORY_MODE) {
        memory_child(mode == "mixed");
        return;
    }
    // `cargo bench` passes `--bench`; accept and ignore libtest-style arguments.
    println!(
        "errorwatch-sdk capture benchmark ({} batches x {} calls)",
        BATCHES, PER_BATCH
    );
    println!("machine: {} cores, {}", available_cores(), cpu_model());
    // `ERRORWATCH_BENCH_ONLY=steady` runs that phase alone.
    if std::env::var("ERRORWATCH_BENCH_ONLY").as_deref() == Ok("steady") {
        steady();
        return;
    }
    caller_costs();
    steady();
    burst();
    deadlines();
    memory();
}

/// Per-call cost of one batch, in nanoseconds.
fn batch(mut f: impl FnMut(usize)) -> f64 {
    let started = Instant::now();
    for i in 0..PER_BATCH {
        f(i);
    }
    started.elapsed().as_nanos() as f64 / PER_BATCH as f64
}

struct Spread {
    median: f64,
    min: f64,
    max: f64,
}

fn spread(mut samples: Vec<f64>) -> Spread {
    samples.sort_by(f64::total_cmp);
    Spread {
        median: samples[samples.len() / 2],
        min: samples[0],
        max: samples[samples.len() - 1],
    }
}

fn show(name: &str, s: &Spread, floor: Option<f64>) {
    let ratio = floor
        .map(|f| format!("  ({:.1}x the hand-off floor)", s.median / f))
        .unwrap_or_default();
    println!(
        "  {name:<34} {:>9.0} ns/call  [{:.0} .. {:.0}]{ratio}",
        s.median, s.min, s.max
    );
}

fn caller_costs() {
    println!("\ncaller-thread cost per call (median [min .. max] of {BATCHES} batches)");

    // The floor: a bare bounded tokio channel hand-off of an event-sized value, drained by
    // another thread, as the SDK's queue is by its worker.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Box<[u64; 96]>>(PER_BATCH * 2);
    let drain = std::thread::spawn(move || while rx.blocking_recv().is_some() {});
    let floor = spread(
        (0..BATCHES)
            .map(|_| batch(|i| drop(black_box(tx.try_send(Box::new([i as u64; 96]))))))
            .collect(),
    );
    drop(tx);
    let _ = drain.join();
    show("bounded channel hand-off (floor)", &floor, None);

    let server = Listener::healthy();
    let client = Client::new(options(&server.url).queue_capacity(PER_BATCH * 2)).expect("client");
    let error = "12a".parse::<u32>().expect_err("not a number");
    let without_stack = Client::new(
        options(&server.url)
            .queue_capacity(PER_BATCH * 2)
            .attach_stacktrace(false),
    )
    .expect("client");

    let measure = |name: &str, client: &Client, f: &dyn Fn(&Client, usize)| {
        let mut samples = Vec::new();
        for _ in 0..BATCHES {
            samples.push(batch(|i| f(client, i)));
            // Drain between batches (not timed) so every capture is queued, never dropped.
            client.flush(Duration::from_secs(30));
        }
        let stats = client.stats();
        assert_eq!(
            stats.dropped_queue_full, 0,
            "{name}: the measurement must not hit a full queue"
        );
        show(name, &spread(samples), Some(floor.median));
    };
    measure("capture_message", &without_stack, &|c, i| {
        black_box(c.capture_message(
            if i % 2 == 0 { "cache miss" } else { "db slow" },
            Level::Error,
        ));
    });
    measure("capture_error (no stack trace)", &without_stack, &|c, _| {
        black_box(c.capture_error(&error));
    });
    measure("capture_error with stack trace", &client, &|c, _| {
        black_box(c.capture_error(&error));
    });
}

/// Calls `f` at a steady `rate` per second for `duration`, and returns each call's latency in
/// nanoseconds. Between calls the thread spins to the next slot, so nothing is batched.
fn paced(rate: u64, duration: Duration, f: impl FnMut(usize)) -> Vec<u64> {
    paced_watching_preemption(rate, duration, f)
        .into_iter()
        .map(|(latency, _)| latency)
        .collect()
}

/// As [`paced`], with whether the kernel interrupted the thread during each call: the
/// scheduler preempting it, or a page fault (the thread's involuntary context switches and
/// faults, read around the call, outside its timing).
fn paced_watching_preemption(
    rate: u64,
    duration: Duration,
    mut f: impl FnMut(usize),
) -> Vec<(u64, bool)> {
    let interval = Duration::from_nanos(1_000_000_000 / rate);
    let calls = (duration.as_nanos() / interval.as_nanos()) as usize;
    let mut latencies = Vec::with_capacity(calls);
    let start = Instant::now();
    for i in 0..calls {
        let slot = start + interval * i as u32;
        while Instant::now() < slot {
            std::hint::spin_loop();
        }
        let preempted_before = preemptions();
        let began = Instant::now();
        f(i);
        let latency = began.elapsed().as_nanos() as u64;
        latencies.push((latency, preemptions() != preempted_before));
    }
    latencies
}

/// The calling thread's involuntary context switches and page faults so far.
#[cfg(target_os = "linux")]
fn preemptions() -> (i64, i64) {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: `getrusage` fills the struct it is given; RUSAGE_THREAD is the calling thread.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_THREAD, usage.as_mut_ptr());
        usage.assume_init()
    };
    (usage.ru_nivcsw, usage.ru_minflt + usage.ru_majflt)
}

/// Not counted where a thread's own figures are not available.
#[cfg(not(target_os = "linux"))]
fn preemptions() -> (i64, i64) {
    (0, 0)
}

fn percentiles(name: &str, mut latencies: Vec<u64>) -> (u64, u64) {
    latencies.sort_unstable();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize] as f64 / 1000.0;
    let max = latencies[latencies.len() - 1];
    println!(
        "  {name:<34} p50 {:>6.1} µs  p99 {:>6.1} µs  p99.9 {:>7.1} µs  max {:>8.1} µs",
        at(0.5),
        at(0.99),
        at(0.999),
        max as f64 / 1000.0
    );
    (
        latencies[((latencies.len() - 1) as f64 * 0.999) as usize],
        max,
    )
}

/// `capture_error` with a stack trace at 20 000 calls/s for 3 s while the worker symbolises
/// what it can, beside a control that formats the same error without the SDK: whether a
/// capture ever waits on something the worker holds.
fn steady() {
    const RATE: u64 = 20_000;
    const FOR: Duration = Duration::from_secs(3);
    println!(
        "
steady {RATE} calls/s for {FOR:?}, latency per call (the worker symbolising meanwhile)"
    );
    let server = Listener::healthy();
    let client = Client::new(options(&server.url).queue_capacity(100_000)).expect("client");
    let error = "12a".parse::<u32>().expect_err("not a number");
    let control = paced(RATE, FOR, |i| {
        black_box(format!("{error} {i}"));
    });
    percentiles("control (format the error, no SDK)", control);
    let before = context_switches();
    let captures = paced_watching_preemption(RATE, FOR, |_| {
        black_box(client.capture_error(&error));
    });
    let after = context_switches();
    let unpreempted: Vec<u64> = captures
        .iter()
        .filter(|(_, preempted)| !preempted)
        .map(|&(latency, _)| latency)
        .collect();
    let preempted = captures.len() - unpreempted.len();
    let (p999, max) = percentiles(
        "capture_error with stack trace",
        captures.into_iter().map(|(latency, _)| latency).collect(),
    );
    percentiles(
        &format!("  the same, {preempted} calls preempted or faulting left out"),
        unpreempted,
    );
    println!(
        "  the calling thread meanwhile: {} voluntary context switches (waits), {} involuntary (preempted)",
        after.0 - before.0,
        after.1 - before.1
    );
    let stats = client.stats();
    println!(
        "  the worker symbolised and sent {} of {} meanwhile ({} dropped: queue full); \
         p99.9 {} 50 µs, max {} 1 ms",
        stats.sent,
        stats.captured,
        stats.dropped_queue_full,
        if p999 <= 50_000 { "≤" } else { ">" },
        if max <= 1_000_000 { "≤" } else { ">" },
    );
}

/// This thread's (voluntary, involuntary) context switches so far.
fn context_switches() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/thread-self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().parse().ok())
            .unwrap_or(0)
    };
    (
        field("voluntary_ctxt_switches:"),
        field("nonvoluntary_ctxt_switches:"),
    )
}

fn burst() {
    const BURST: usize = 20_000;
    // The real server, in-process on its own runtime, storing to a SQLite file.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = std::env::temp_dir().join(format!("ew-sdk-bench-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let mut config = errorwatch_server::Config::for_tests("bench-secret-0123456789");
    config.database_url = format!("sqlite://{}", dir.join("bench.db").display());
    config.rate_limit_per_minute = 0;
    let server = runtime
        .block_on(errorwatch_server::Server::start(config))
        .expect("server");
    let (_, key) = runtime
        .block_on(server.create_project("bench"))
        .expect("project");
    let client =
        Client::new(Options::new(server.url(), key).capture_panics(false)).expect("client");
    let started = Instant::now();
    for i in 0..BURST {
        client.capture_message(&format!("burst event {i}"), Level::Error);
    }
    let capture_time = started.elapsed();
    client.flush(Duration::from_secs(60));
    let delivered_in = started.elapsed();
    let stats = client.stats();
    println!(
        "\nburst of {BURST} captures to errorwatch-server on a local SQLite file (default options)"
    );
    println!(
        "  delivered {} ({:.1}%), dropped (queue full) {}, failed {}; captures took {:?}, all delivered after {:?} ({:.0} events/s)",
        stats.sent,
        stats.sent as f64 * 100.0 / BURST as f64,
        stats.dropped_queue_full,
        stats.failed,
        capture_time,
        delivered_in,
        stats.sent as f64 / delivered_in.as_secs_f64()
    );
    let stored = runtime.block_on(server.store().event_count()).unwrap_or(0);
    println!("  the server stored {stored} of them");
    runtime.block_on(server.shutdown());
    let _ = std::fs::remove_dir_all(&dir);
}

fn deadlines() {
    println!("\nflush and shutdown against bad servers: time past the deadline (max of 5 runs)");
    let hole = Listener::start(|_| Reply::Silence);
    let slow =
        Listener::start(|_| Reply::After(Duration::from_secs(3), Box::new(Reply::accepted())));
    for (name, server) in [("black-holed", &hole), ("slow (3 s answers)", &slow)] {
        let deadline = Duration::from_millis(500);
        let mut flush_over = Duration::ZERO;
        let mut close_over = Duration::ZERO;
        for _ in 0..5 {
            let client = Client::new(options(&server.url)).expect("client");
            for i in 0..100 {
                client.capture_message(&format!("e{i}"), Level::Error);
            }
            let started = Instant::now();
            client.flush(deadline);
            flush_over = flush_over.max(started.elapsed().saturating_sub(deadline));
            let started = Instant::now();
            client.close(deadline);
            close_over = close_over.max(started.elapsed().saturating_sub(deadline));
        }
        println!(
            "  {name:<20} flush(500 ms) +{:.1} ms, close(500 ms) +{:.1} ms",
            flush_over.as_secs_f64() * 1e3,
            close_over.as_secs_f64() * 1e3
        );
    }
}

fn memory() {
    let exe = std::env::current_exe().expect("bench binary");
    for mode in ["messages", "mixed"] {
        let output = std::process::Command::new(&exe)
            .env(MEMORY_MODE, mode)
            .output()
            .expect("memory child runs");
        print!("{}", String::from_utf8_lossy(&output.stdout));
    }
}

fn memory_child(with_stacks: bool) {
    let captures: usize = std::env::var("ERRORWATCH_BENCH_CAPTURES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    let before = peak_rss_kib();
    let client = Client::new(Options::new(dead_url(), support::API_KEY).capture_panics(false))
        .expect("client");
    let error = "12a".parse::<u32>().expect_err("not a number");
    let started = Instant::now();
    for i in 0..captures {
        if i % 2 == 0 || !with_stacks {
            client.capture_message("the database is unreachable", Level::Error);
        } else {
            client.capture_error(&error);
        }
    }
    let took = started.elapsed();
    // Everything is dealt with (failed fast, the server being down) before the idle period.
    client.flush(Duration::from_secs(30));
    let after = peak_rss_kib();
    let (anon, file) = (status_kib("RssAnon:"), status_kib("RssFile:"));
    // Idle past the symboliser's keep time: what is given back.
    std::thread::sleep(Duration::from_secs(12));
    let (idle_anon, idle_file) = (status_kib("RssAnon:"), status_kib("RssFile:"));
    client.close(Duration::from_secs(2));
    let stats = client.stats();
    let kind = if with_stacks {
        "half of them errors with stack traces"
    } else {
        "messages"
    };
    println!("\n{captures} captures with the server down (default options; {kind})");
    println!(
        "  peak RSS {:.1} MiB (process before the client: {:.1} MiB, growth {:.1} MiB); captures took {:?}",
        after as f64 / 1024.0,
        before as f64 / 1024.0,
        (after - before) as f64 / 1024.0,
        took
    );
    println!(
        "  resident at the end: {:.1} MiB anonymous (heap), {:.1} MiB file-backed (the binary and its debug info, mapped by the symboliser)",
        anon as f64 / 1024.0,
        file as f64 / 1024.0
    );
    println!(
        "  resident after 12 s idle: {:.1} MiB anonymous, {:.1} MiB file-backed",
        idle_anon as f64 / 1024.0,
        idle_file as f64 / 1024.0
    );
    println!(
        "  dropped (queue full) {}, failed {}, lost at shutdown {}",
        stats.dropped_queue_full, stats.failed, stats.lost_at_shutdown
    );
}

fn peak_rss_kib() -> u64 {
    status_kib("VmHWM:")
}

/// A `/proc/self/status` figure, in KiB (0 where there is none).
fn status_kib(field: &str) -> u64 {
    support::status_kib(field).unwrap_or(0)
}

fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|line| line.starts_with("model name"))
                .and_then(|line| line.split(':').nth(1))
                .map(|model| model.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}
