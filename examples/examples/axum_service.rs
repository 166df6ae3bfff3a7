//! An axum service that reports to the server given by `ERRORWATCH_API_URL` and
//! `ERRORWATCH_API_KEY`, with the tracing layer beside `fmt`.
//!
//! ```text
//! ERRORWATCH_API_URL=http://127.0.0.1:3333 ERRORWATCH_API_KEY=ew_live_... \
//!     cargo run -p errorwatch-examples --example axum_service
//! curl localhost:8080/panic      # 500, reported as fatal
//! curl localhost:8080/fail       # 500, reported with its status
//! curl localhost:8080/log-error  # tracing::error! with fields, reported
//! curl localhost:8080/missing    # 404, not reported
//! ```

use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use tracing_subscriber::prelude::*;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let options = errorwatch_sdk::Options::from_env()?.release(errorwatch_sdk::release_name!());
    if !options.is_configured() {
        eprintln!(
            "ERRORWATCH_API_URL and ERRORWATCH_API_KEY are not set: nothing will be reported"
        );
    }
    let _guard = errorwatch_sdk::init(options);
    tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer())
        .with(errorwatch_tracing::layer())
        .init();

    let app = Router::new()
        .route("/", get(|| async { "try /panic, /fail, /log-error" }))
        .route(
            "/panic",
            get(|| async {
                let cart_id = "cart-7";
                cart_id
                    .parse::<u64>()
                    .expect("cart ids are numbers")
                    .to_string()
            }),
        )
        .route(
            "/fail",
            get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "the database is down") }),
        )
        .route(
            "/log-error",
            get(|| async {
                tracing::info!(cart_items = 3, "cart loaded");
                tracing::error!(order_id = 42, tag.payment = "card", "payment declined");
                "logged"
            }),
        )
        .layer(errorwatch_axum::ErrorWatchLayer::new());

    let addr = std::env::var("BIND").unwrap_or_else(|_| "127.0.0.1:8080".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("axum service on http://{addr}");
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
