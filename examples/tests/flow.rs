//! The whole flow, end to end: SDK -> real HTTP -> server -> store -> query API; and the fault
//! flow: the server stopped mid-run and restarted while the service keeps answering.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::Router;
use errorwatch_sdk::{Client, Level, Options};
use errorwatch_server::{Config, Server};
use serde_json::Value;
use tracing_subscriber::prelude::*;

const ADMIN: &str = "flow-admin-key";

async fn server_on(database_url: &str, bind: SocketAddr) -> Server {
    let mut config = Config::for_tests("flow-secret-0123456789");
    config.database_url = database_url.to_owned();
    config.bind = bind;
    config.admin_api_key = Some(ADMIN.into());
    config.rate_limit_per_minute = 0;
    Server::start(config).await.expect("server")
}

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    url
}

async fn flush(client: &Client) -> bool {
    let client = client.clone();
    tokio::task::spawn_blocking(move || client.flush(Duration::from_secs(10)))
        .await
        .expect("flush")
}

async fn admin_get(http: &reqwest::Client, url: String) -> Value {
    let response = http
        .get(url)
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("query API");
    assert_eq!(response.status(), 200);
    serde_json::from_slice(&response.bytes().await.expect("body")).expect("JSON")
}

#[tokio::test]
async fn plain_captures_panics_tracing_and_axum_reach_the_query_api() {
    errorwatch_sdk::integration::install_hook();
    let server = server_on("sqlite::memory:", "127.0.0.1:0".parse().expect("addr")).await;
    let (_, key) = server.create_project("flow").await.expect("project");
    let client = Client::new(
        Options::new(server.url(), key)
            .environment("flow")
            .capture_panics(false),
    )
    .expect("client");
    // This test's runtime is single-threaded: the subscriber applies to the app's handlers too.
    let _tracing = tracing_subscriber::registry()
        .with(errorwatch_tracing::layer())
        .set_default();

    let app = Router::new()
        .route(
            "/log",
            get(|| async {
                tracing::info!(step = 1, "cart loaded");
                tracing::error!(order_id = 7, "payment declined");
                "logged"
            }),
        )
        .route(
            "/panic",
            get(|| async {
                let cart_id = "cart-7";
                cart_id.parse::<u64>().expect("a cart").to_string()
            }),
        )
        .layer(errorwatch_axum::ErrorWatchLayer::new().client(client.clone()));
    let url = serve(app).await;
    let http = reqwest::Client::new();
    assert_eq!(
        http.get(format!("{url}/log"))
            .send()
            .await
            .expect("log")
            .status(),
        200
    );
    assert_eq!(
        http.get(format!("{url}/panic"))
            .send()
            .await
            .expect("panic")
            .status(),
        500
    );
    client.run(|| {
        errorwatch_sdk::capture_message("plain message", Level::Warning);
        errorwatch_sdk::capture_error(&"x".parse::<u8>().unwrap_err());
    });
    assert!(flush(&client).await);

    let groups = admin_get(
        &http,
        format!("{}/api/v1/groups?env=flow&sort=firstSeen", server.url()),
    )
    .await;
    let titles: Vec<&str> = groups["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .filter_map(|g| g["title"].as_str())
        .collect();
    for expected in [
        "ERROR: payment declined",
        "panic: a cart: ParseIntError { kind: InvalidDigit }",
        "WARNING: plain message",
        "ParseIntError: invalid digit found in string",
    ] {
        assert!(titles.contains(&expected), "{expected} in {titles:?}");
    }
    let tracing_group = groups["groups"]
        .as_array()
        .and_then(|groups| {
            groups
                .iter()
                .find(|g| g["title"] == "ERROR: payment declined")
        })
        .expect("the tracing group");
    let events = admin_get(
        &http,
        format!(
            "{}/api/v1/groups/{}/events",
            server.url(),
            tracing_group["fingerprint"].as_str().unwrap_or("")
        ),
    )
    .await;
    let payload = &events["events"][0]["payload"];
    assert_eq!(payload["extra"]["order_id"], 7);
    assert_eq!(payload["tags"]["transaction"], "/log");
    assert_eq!(payload["breadcrumbs"][0]["message"], "cart loaded");
    server.shutdown().await;
}

#[actix_web::test]
async fn actix_reaches_the_query_api() {
    use actix_web::{web, App, HttpResponse, HttpServer};
    let server = server_on("sqlite::memory:", "127.0.0.1:0".parse().expect("addr")).await;
    let (_, key) = server.create_project("flow-actix").await.expect("project");
    let client =
        Client::new(Options::new(server.url(), key).capture_panics(false)).expect("client");
    let app_client = client.clone();
    let http_server = HttpServer::new(move || {
        App::new()
            .wrap(errorwatch_actix::ErrorWatch::new().client(app_client.clone()))
            .route(
                "/orders/{id}",
                web::get().to(|| async { HttpResponse::ServiceUnavailable().finish() }),
            )
    })
    .workers(1)
    .bind(("127.0.0.1", 0))
    .expect("bind");
    let url = format!("http://{}", http_server.addrs()[0]);
    let running = http_server.run();
    let handle = running.handle();
    actix_web::rt::spawn(running);
    let http = reqwest::Client::new();
    assert_eq!(
        http.get(format!("{url}/orders/5"))
            .send()
            .await
            .expect("request")
            .status(),
        503
    );
    let flushing = client.clone();
    assert!(
        actix_web::rt::task::spawn_blocking(move || flushing.flush(Duration::from_secs(10)))
            .await
            .expect("flush")
    );
    let groups = admin_get(&http, format!("{}/api/v1/groups", server.url())).await;
    assert_eq!(
        groups["groups"][0]["title"],
        "HTTP 503: GET /orders/{id} answered 503"
    );
    handle.stop(true).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_keeps_answering_while_the_server_is_down_and_every_event_is_accounted_for() {
    let dir = std::env::temp_dir().join(format!("errorwatch-flow-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let database_url = format!("sqlite://{}", dir.join("flow.db").display());
    let server = server_on(&database_url, "127.0.0.1:0".parse().expect("addr")).await;
    let addr = server.addr();
    let (_, key) = server.create_project("faults").await.expect("project");
    let client = Client::new(
        Options::new(server.url(), key)
            .capture_panics(false)
            .retry_base_delay(Duration::from_millis(10))
            .circuit_breaker(3, Duration::from_millis(200)),
    )
    .expect("client");
    let app = Router::new()
        .route(
            "/orders/{id}",
            get(
                |axum::extract::Path(id): axum::extract::Path<u32>| async move {
                    // A distinct error per order: the server would deduplicate identical ones.
                    errorwatch_sdk::capture_message(&format!("order {id} failed"), Level::Error);
                    "accepted"
                },
            ),
        )
        .layer(errorwatch_axum::ErrorWatchLayer::new().client(client.clone()));
    let url = serve(app).await;
    let http = reqwest::Client::new();
    let mut order = 0;
    let mut send = |count: u32| {
        let (http, url) = (http.clone(), url.clone());
        let first = order;
        order += count;
        async move {
            for id in first..first + count {
                let answer = http
                    .get(format!("{url}/orders/{id}"))
                    .send()
                    .await
                    .expect("the service answers");
                assert_eq!(answer.status(), 200, "the service keeps answering");
            }
        }
    };

    send(20).await;
    assert!(flush(&client).await);
    server.shutdown().await; // the server goes away mid-run
    send(20).await;
    assert!(
        flush(&client).await,
        "failures are quick: connection refused"
    );
    let during = client.stats();
    assert!(
        during.failed > 0,
        "events sent while it was down failed: {during:?}"
    );

    let restarted = server_on(&database_url, addr).await; // same file, same address
                                                          // Wait out the circuit breaker's pause, by the clock, then send again.
    let reopen = Instant::now() + Duration::from_millis(250);
    while Instant::now() < reopen {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    send(20).await;
    assert!(flush(&client).await);

    let stats = client.stats();
    assert_eq!(stats.captured, 60);
    assert_eq!(
        stats.captured,
        stats.sent + stats.dropped() + stats.failed + stats.lost_at_shutdown,
        "delivered + dropped + failed = captured: {stats:?}"
    );
    assert!(
        stats.sent >= 40,
        "before and after the outage, events arrive: {stats:?}"
    );
    let stored = restarted.store().event_count().await.expect("count") as u64;
    assert_eq!(
        stored, stats.sent,
        "every delivered event is in the store, nothing else"
    );
    restarted.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
