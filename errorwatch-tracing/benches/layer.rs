//! `cargo bench -p errorwatch-tracing --bench layer`
//!
//! Per-event cost of `tracing::error!` and `tracing::info!` with the ErrorWatch layer installed
//! (reporting to `errorwatch-server` in-process), next to the same calls with a no-op layer.
//! Median of 15 batches of 2 000 calls, with the min..max spread.

use std::hint::black_box;
use std::time::{Duration, Instant};

use errorwatch_sdk::{Client, Options};
use tracing_subscriber::prelude::*;

const BATCHES: usize = 15;
const PER_BATCH: usize = 2_000;

/// A layer that does nothing: the cost of tracing's own dispatch.
struct Noop;
impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Noop {}

fn median_and_spread(mut samples: Vec<f64>) -> (f64, f64, f64) {
    samples.sort_by(f64::total_cmp);
    (
        samples[samples.len() / 2],
        samples[0],
        samples[samples.len() - 1],
    )
}

fn measure(mut call: impl FnMut(usize), between: impl Fn()) -> (f64, f64, f64) {
    let mut samples = Vec::with_capacity(BATCHES);
    for _ in 0..BATCHES {
        let started = Instant::now();
        for i in 0..PER_BATCH {
            call(i);
        }
        samples.push(started.elapsed().as_nanos() as f64 / PER_BATCH as f64);
        between();
    }
    median_and_spread(samples)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let server = runtime
        .block_on(errorwatch_server::Server::start({
            let mut config = errorwatch_server::Config::for_tests("bench-secret-0123456789");
            config.rate_limit_per_minute = 0;
            config
        }))
        .expect("server");
    let (_, key) = runtime
        .block_on(server.create_project("bench"))
        .expect("project");
    let client = Client::new(
        Options::new(server.url(), key)
            .capture_panics(false)
            .queue_capacity(PER_BATCH * 2),
    )
    .expect("client");
    let flush = || {
        client.flush(Duration::from_secs(30));
    };

    println!("errorwatch-tracing layer benchmark ({BATCHES} batches x {PER_BATCH} calls; ns per call, median [min .. max])");
    let rows: [(&str, bool); 4] = [
        ("info! (no-op layer)", false),
        ("info! (errorwatch layer: breadcrumb)", true),
        ("error! (no-op layer)", false),
        ("error! (errorwatch layer: event)", true),
    ];
    let mut results = Vec::new();
    for (name, with_layer) in rows {
        let is_error = name.starts_with("error!");
        let run = || {
            measure(
                |i| {
                    if is_error {
                        tracing::error!(order_id = i, tag.region = "eu", "payment declined");
                    } else {
                        tracing::info!(order_id = i, "cart loaded");
                    }
                    black_box(i);
                },
                flush,
            )
        };
        let figures = if with_layer {
            let subscriber = tracing_subscriber::registry().with(errorwatch_tracing::layer());
            tracing::subscriber::with_default(subscriber, || client.run(run))
        } else {
            let subscriber = tracing_subscriber::registry().with(Noop);
            tracing::subscriber::with_default(subscriber, run)
        };
        results.push((name, figures));
    }
    for pair in results.chunks(2) {
        let (base_name, base) = pair[0];
        let (name, with) = pair[1];
        println!(
            "  {base_name:<40} {:>7.0}  [{:.0} .. {:.0}]",
            base.0, base.1, base.2
        );
        println!(
            "  {name:<40} {:>7.0}  [{:.0} .. {:.0}]  ({:.0} ns more, {:.1}x)",
            with.0,
            with.1,
            with.2,
            with.0 - base.0,
            with.0 / base.0
        );
    }
    let stats = client.stats();
    println!(
        "  events sent to the server: {} (dropped: {})",
        stats.sent,
        stats.dropped()
    );
    runtime.block_on(server.shutdown());
}
