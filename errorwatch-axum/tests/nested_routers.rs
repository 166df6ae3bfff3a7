//! A real axum `Router` over real HTTP, reporting to `errorwatch-server` in-process: what is
//! particular to axum (nested routers). The behaviour both web integrations share is tested
//! once, against both, in `examples/tests/web_integrations.rs`.

use std::time::Duration;

use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use errorwatch_axum::ErrorWatchLayer;
use errorwatch_sdk::{Client, Options};
use errorwatch_server::{Config, Server};
use serde_json::Value;

struct App {
    server: Server,
    client: Client,
    url: String,
    http: reqwest::Client,
}

impl App {
    async fn get(&self, path: &str) -> u16 {
        self.http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .expect("the app answers")
            .status()
            .as_u16()
    }

    async fn stored(&self) -> Vec<Value> {
        let client = self.client.clone();
        assert!(
            tokio::task::spawn_blocking(move || client.flush(Duration::from_secs(10)))
                .await
                .expect("flush")
        );
        let events = self.server.store().events(10_000).await.expect("events");
        events.into_iter().map(|event| event.payload).collect()
    }
}

/// An app whose `/api` router is nested, with a layer on it, and maybe one on the whole app.
async fn start_nested(outer_layer: bool) -> App {
    let mut config = Config::for_tests("axum-tests-secret-0123");
    config.rate_limit_per_minute = 0;
    let server = Server::start(config).await.expect("server");
    let (_, key) = server.create_project("axum").await.expect("project");
    let client =
        Client::new(Options::new(server.url(), key).capture_panics(false)).expect("client");
    let api = Router::new()
        .route(
            "/fail/{id}",
            get(|Path(id): Path<u32>| async move {
                errorwatch_sdk::configure_scope(|scope| scope.set_tag("handler", "ran"));
                (StatusCode::INTERNAL_SERVER_ERROR, format!("nope {id}"))
            }),
        )
        .layer(ErrorWatchLayer::new().client(client.clone()));
    let mut app = Router::new().nest("/api", api);
    if outer_layer {
        app = app.layer(ErrorWatchLayer::new().client(client.clone()));
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    App {
        server,
        client,
        url,
        http: reqwest::Client::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_layers_report_once_with_the_full_url() {
    for outer_layer in [true, false] {
        let app = start_nested(outer_layer).await;
        assert_eq!(app.get("/api/fail/3").await, 500);
        let events = app.stored().await;
        // Counted at the client: the server would hide a duplicate within its 10 s window.
        assert_eq!(app.client.stats().captured, 1, "outer layer: {outer_layer}");
        assert_eq!(events.len(), 1, "outer layer: {outer_layer}: {events:?}");
        let event = &events[0];
        let url = event["request"]["url"].as_str().unwrap_or_default();
        assert!(
            url.ends_with("/api/fail/3"),
            "outer layer: {outer_layer}: {url}"
        );
        assert_eq!(event["tags"]["transaction"], "/api/fail/{id}");
        assert_eq!(
            event["tags"]["handler"], "ran",
            "the handler's scope is the report's"
        );
    }
}
