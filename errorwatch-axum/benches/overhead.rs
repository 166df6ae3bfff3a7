//! `cargo bench -p errorwatch-axum --bench overhead`
//!
//! Per-request cost of a trivial axum handler with and without the ErrorWatch layer: in
//! process (`tower::ServiceExt::oneshot`, so only the middleware differs), and over loopback
//! HTTP with a keep-alive client. Median of 15 batches, with the min..max spread.

use std::time::Instant;

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use errorwatch_sdk::{Client, Options};
use tower::ServiceExt;

const BATCHES: usize = 15;

fn stats(mut samples: Vec<f64>) -> (f64, f64, f64) {
    samples.sort_by(f64::total_cmp);
    (
        samples[samples.len() / 2],
        samples[0],
        samples[samples.len() - 1],
    )
}

fn app(layer: Option<errorwatch_axum::ErrorWatchLayer>) -> Router {
    let router = Router::new().route("/users/{id}", get(|| async { "ok" }));
    match layer {
        Some(layer) => router.layer(layer),
        None => router,
    }
}

fn request() -> axum::http::Request<Body> {
    axum::http::Request::builder()
        .uri("/users/42?page=2")
        .header("host", "bench.local")
        .header("user-agent", "bench/1.0")
        .header("accept", "*/*")
        .header("authorization", "Bearer abcdefgh12345678")
        .body(Body::empty())
        .unwrap_or_default()
}

async fn in_process(router: &Router, per_batch: usize) -> (f64, f64, f64) {
    let mut samples = Vec::new();
    for _ in 0..BATCHES {
        let started = Instant::now();
        for _ in 0..per_batch {
            let response = router.clone().oneshot(request()).await;
            assert!(response.is_ok_and(|r| r.status().is_success()));
        }
        samples.push(started.elapsed().as_nanos() as f64 / per_batch as f64);
    }
    stats(samples)
}

async fn over_http(router: Router, per_batch: usize) -> (f64, f64, f64) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!(
        "http://{}/users/42?page=2",
        listener.local_addr().expect("addr")
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    let http = reqwest::Client::new();
    let mut samples = Vec::new();
    for _ in 0..BATCHES {
        let started = Instant::now();
        for _ in 0..per_batch {
            let response = http
                .get(&url)
                .header("authorization", "Bearer abcdefgh12345678")
                .send()
                .await;
            assert!(response.is_ok_and(|r| r.status().is_success()));
        }
        samples.push(started.elapsed().as_nanos() as f64 / per_batch as f64);
    }
    stats(samples)
}

fn show(name: &str, without: (f64, f64, f64), with: (f64, f64, f64)) {
    println!("  {name}");
    println!(
        "    without the layer  {:>8.0} ns/request  [{:.0} .. {:.0}]",
        without.0, without.1, without.2
    );
    println!(
        "    with the layer     {:>8.0} ns/request  [{:.0} .. {:.0}]  ({:.2}x, +{:.0} ns)",
        with.0,
        with.1,
        with.2,
        with.0 / without.0,
        with.0 - without.0
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let server = errorwatch_server::Server::start(errorwatch_server::Config::for_tests(
        "bench-secret-0123456789",
    ))
    .await
    .expect("server");
    let (_, key) = server.create_project("bench").await.expect("project");
    let client =
        Client::new(Options::new(server.url(), key).capture_panics(false)).expect("client");
    let layer = || Some(errorwatch_axum::ErrorWatchLayer::new().client(client.clone()));

    println!(
        "errorwatch-axum overhead on a trivial handler (median of {BATCHES} batches [min .. max])"
    );
    let without = in_process(&app(None), 20_000).await;
    let with = in_process(&app(layer()), 20_000).await;
    show(
        "in process (tower oneshot, 20 000 requests a batch)",
        without,
        with,
    );
    let without = over_http(app(None), 2_000).await;
    let with = over_http(app(layer()), 2_000).await;
    show(
        "over loopback HTTP, keep-alive (2 000 requests a batch)",
        without,
        with,
    );
    println!(
        "  events captured: {} (a 200 is not reported)",
        client.stats().captured
    );
}
