//! The whole flow in one command: `cargo run -p errorwatch-examples --example demo`.
//!
//! 1. starts `errorwatch-server` in-process on a SQLite file;
//! 2. starts an axum service with the ErrorWatch middleware and the tracing layer;
//! 3. sends it requests that panic, fail with a 500, log a `tracing::error!` with fields, and
//!    return an error whose message carries credentials;
//! 4. prints the stored issues and the address of their pages, and scans the store's bytes to
//!    show the credentials are not there. It finishes on its own in a few seconds; with
//!    `-- --serve` it keeps the server (and its pages) up until Ctrl-C.

use std::error::Error;
use std::fmt;
use std::time::Duration;

use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use errorwatch_sdk::Options;
use errorwatch_server::{Config, Server};
use tracing_subscriber::prelude::*;

const SECRETS: [&str; 2] = ["hunter2-SECRET", "sk_demo_SECRET"];
/// The admin key the demo's pages open with (the demo's server lives on loopback only).
const ADMIN_KEY: &str = "demo-admin-key";

/// What the shop's payment call fails with: its message carelessly includes credentials.
#[derive(Debug)]
struct PaymentError {
    source: std::io::Error,
}

impl fmt::Display for PaymentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("payment gateway refused https://shop:hunter2-SECRET@pay.example.com/charge?api_key=sk_demo_SECRET")
    }
}

impl Error for PaymentError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&self.source)
    }
}

impl IntoResponse for PaymentError {
    fn into_response(self) -> Response {
        let mut response = (StatusCode::BAD_GATEWAY, "payment failed").into_response();
        response
            .extensions_mut()
            .insert(errorwatch_axum::HandlerError::new(&self));
        response
    }
}

async fn pay(Path(order): Path<u32>) -> Result<&'static str, PaymentError> {
    errorwatch_sdk::configure_scope(|scope| scope.set_tag("order", order.to_string()));
    Err(PaymentError {
        source: std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "connection reset by the gateway",
        ),
    })
}

async fn checkout(Path(order): Path<u32>) -> &'static str {
    tracing::info!(order_id = order, items = 3, "cart loaded");
    tracing::warn!(latency_ms = 2300, "payment provider slow");
    tracing::error!(
        order_id = order,
        tag.provider = "acme-pay",
        "payment declined by the provider"
    );
    "declined"
}

fn shop() -> Router {
    Router::new()
        .route("/checkout/{order}", get(checkout))
        .route("/pay/{order}", get(pay))
        .route(
            "/stock",
            get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "stock database down") }),
        )
        .route(
            "/recommendations",
            get(|| async {
                let shelves: Vec<&str> = Vec::new();
                shelves[3] // a handler panic
            }),
        )
        .route("/health", get(|| async { "ok" }))
        .layer(errorwatch_axum::ErrorWatchLayer::new())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let serve = match std::env::args().nth(1).as_deref() {
        None => false,
        Some("--serve") => true,
        Some(other) => {
            return Err(format!("unknown argument {other}; the demo takes only --serve").into())
        }
    };
    let dir = std::env::temp_dir().join(format!("errorwatch-demo-{}", std::process::id()));
    // A fresh store each run, even if an earlier run with this process id left one behind.
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let database = dir.join("errorwatch.db");
    let mut config = Config::for_tests("demo-secret-0123456789");
    config.database_url = format!("sqlite://{}", database.display());
    config.admin_api_key = Some(ADMIN_KEY.into());
    let server = Server::start(config).await?;
    let (_, api_key) = server.create_project("demo").await?;
    println!(
        "1. errorwatch-server on {} (store: {})",
        server.url(),
        database.display()
    );

    let guard = errorwatch_sdk::init(
        Options::new(server.url(), api_key)
            .environment("demo")
            .release(errorwatch_sdk::release_name!()),
    );
    // Only the ErrorWatch layer: the demo's own output stays readable.
    tracing_subscriber::registry()
        .with(errorwatch_tracing::layer())
        .init();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let shop_url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move {
        let _ = axum::serve(listener, shop()).await;
    });
    println!("2. the shop (axum + errorwatch-axum + errorwatch-tracing) on {shop_url}");

    let http = reqwest::Client::new();
    println!("3. requests:");
    for path in [
        "/checkout/1001",
        "/pay/1002",
        "/stock",
        "/recommendations",
        "/missing",
        "/health",
    ] {
        let status = http.get(format!("{shop_url}{path}")).send().await?.status();
        println!("     GET {path:<18} -> {status}");
    }

    let delivered =
        tokio::task::spawn_blocking(|| errorwatch_sdk::flush(Duration::from_secs(5))).await?;
    let stats = guard.stats();
    println!(
        "   the SDK captured {}, sent {}, dropped {}, failed {} (delivered everything: {delivered})",
        stats.captured,
        stats.sent,
        stats.dropped(),
        stats.failed
    );

    let query = errorwatch_server::store::GroupQuery {
        page: 1,
        limit: 100,
        ..Default::default()
    };
    let (groups, _) = server.store().groups(&query).await?;
    println!("\n4. the stored issues:\n");
    print!("{}", errorwatch_server::issue_table(&groups));
    println!(
        "\n   and in a browser: {}/issues (admin key: {ADMIN_KEY}){}",
        server.url(),
        if serve {
            ""
        } else {
            "; run the demo with --serve to keep it open"
        }
    );

    if serve {
        println!("   serving until Ctrl-C");
        tokio::signal::ctrl_c().await?;
    }
    drop(guard);
    server.shutdown().await;
    let mut stored = Vec::new();
    for name in ["errorwatch.db", "errorwatch.db-wal"] {
        if let Ok(bytes) = std::fs::read(dir.join(name)) {
            stored.extend(bytes);
        }
    }
    let leaked: Vec<&str> = SECRETS
        .into_iter()
        .filter(|secret| stored.windows(secret.len()).any(|w| w == secret.as_bytes()))
        .collect();
    println!(
        "\n5. the payment error carried credentials; scanning the store's {} bytes for them: {}",
        stored.len(),
        if leaked.is_empty() {
            "not found (scrubbed before they left the service)"
        } else {
            "FOUND (a bug)"
        }
    );
    let _ = std::fs::remove_dir_all(&dir);
    if !leaked.is_empty() {
        return Err(format!("secrets reached the store: {leaked:?}").into());
    }
    if groups.len() < 4 {
        return Err(format!("expected at least 4 issues, found {}", groups.len()).into());
    }
    Ok(())
}
