//! A service that fails in each way the SDK reports: a captured error, a panic, a
//! `tracing::error!`, and handler panics under axum and actix-web. Each failing line ends with
//! a `// culprit:` marker; the test builds this program in debug and in release
//! (`debug = "line-tables-only"`), runs it against `errorwatch-server`, and checks that each
//! stored issue blames that line, in the function named by the marker.
//!
//! Configured by `ERRORWATCH_API_URL` and `ERRORWATCH_API_KEY`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use errorwatch_sdk::Options;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

fn main() {
    let options = match Options::from_env() {
        Ok(options) => options,
        Err(error) => {
            eprintln!("culprit-check: {error}");
            std::process::exit(2);
        }
    };
    // This probe checks where issues point, frames included: its panic may take as long as
    // symbolising this debug binary takes on a loaded machine (the panic flush's deadline,
    // which sends a panic without frames rather than lose it, is tested in errorwatch-sdk).
    let _guard = errorwatch_sdk::init(options.panic_flush_timeout(Duration::from_secs(30)));
    tracing_subscriber::registry()
        .with(errorwatch_tracing::layer())
        .init();

    charge_card();
    let panicked = std::thread::spawn(parse_order).join();
    assert!(panicked.is_err(), "parse_order panics");
    sync_inventory();
    axum_checkout();
    actix_refund();
    // Dropping the guard delivers what is still queued.
}

#[inline(never)]
fn charge_card() {
    let declined = "card 4000 declined".parse::<u32>().unwrap_err();
    errorwatch_sdk::capture_error(&declined); // culprit: charge_card
}

#[inline(never)]
fn parse_order() {
    let order: Option<u32> = std::hint::black_box(None);
    order.expect("probe: parse_order"); // culprit: parse_order
}

#[inline(never)]
fn sync_inventory() {
    let sku = std::hint::black_box("sku-7");
    tracing::error!(sku, "probe: sync_inventory failed"); // culprit: sync_inventory
}

async fn checkout_handler() -> &'static str {
    let cart: Option<&str> = std::hint::black_box(None);
    cart.expect("probe: checkout_handler") // culprit: checkout_handler
}

async fn refund_handler() -> &'static str {
    let refund: Option<&str> = std::hint::black_box(None);
    refund.expect("probe: refund_handler") // culprit: refund_handler
}

fn axum_checkout() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let app = axum::Router::new()
            .route("/checkout", axum::routing::get(checkout_handler))
            .layer(errorwatch_axum::ErrorWatchLayer::new());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port");
        let addr = listener.local_addr().expect("its address");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let status = tokio::task::spawn_blocking(move || get(addr, "/checkout"))
            .await
            .expect("the request ran");
        assert_eq!(status, 500, "a handler panic is answered 500");
    });
}

fn actix_refund() {
    let system = actix_web::rt::System::new();
    system.block_on(async {
        let server = actix_web::HttpServer::new(|| {
            actix_web::App::new()
                .wrap(errorwatch_actix::ErrorWatch::new())
                .route("/refund", actix_web::web::get().to(refund_handler))
        })
        .workers(1)
        .bind(("127.0.0.1", 0))
        .expect("a port");
        let addr = server.addrs()[0];
        let server = server.run();
        let handle = server.handle();
        actix_web::rt::spawn(server);
        let status = actix_web::rt::task::spawn_blocking(move || get(addr, "/refund"))
            .await
            .expect("the request ran");
        assert_eq!(status, 500, "a handler panic is answered 500");
        handle.stop(true).await;
    });
}

/// A plain HTTP/1.1 GET; the answer's status.
fn get(addr: SocketAddr, path: &str) -> u16 {
    let mut stream = TcpStream::connect(addr).expect("the server accepts");
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .expect("the request is sent");
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer
        .split(' ')
        .nth(1)
        .and_then(|status| status.parse().ok())
        .unwrap_or(0)
}
