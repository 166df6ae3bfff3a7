//! A real axum `Router` over real HTTP, reporting to `errorwatch-server` in-process.

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use errorwatch_axum::{AlreadyReported, ErrorWatchLayer, HandlerError, ReportStatuses};
use errorwatch_sdk::{Client, Options, User};
use errorwatch_server::{Config, Server};
use serde_json::Value;

struct App {
    server: Server,
    client: Client,
    url: String,
    http: reqwest::Client,
}

#[derive(Debug)]
struct StorageError(String);

impl std::fmt::Display for StorageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "storage unavailable: {}", self.0)
    }
}

impl std::error::Error for StorageError {}

struct AppError(StorageError);

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let mut response =
            (StatusCode::INTERNAL_SERVER_ERROR, "storage unavailable").into_response();
        response.extensions_mut().insert(HandlerError::new(&self.0));
        response
    }
}

async fn user_handler(Path(id): Path<u32>) -> Result<String, AppError> {
    errorwatch_sdk::configure_scope(|scope| {
        scope.set_tag("user_tag", format!("tag-{id}"));
        scope.set_user(Some(User {
            id: Some(format!("user-{id}")),
            ..User::default()
        }));
    });
    errorwatch_sdk::add_breadcrumb(errorwatch_sdk::Breadcrumb::new(
        "app",
        format!("crumb-{id}"),
    ));
    // Let other requests run on this thread between setting the scope and failing.
    tokio::task::yield_now().await;
    tokio::time::sleep(Duration::from_millis(u64::from(id % 5))).await;
    if id % 2 == 0 {
        // A distinct error per request: identical events within 10 s would be deduplicated
        // by the server, as the contract says.
        Err(AppError(StorageError(format!("user {id}"))))
    } else {
        errorwatch_sdk::capture_message(&format!("odd user {id}"), errorwatch_sdk::Level::Warning);
        Ok(format!("user {id}"))
    }
}

fn router(layer: ErrorWatchLayer) -> Router {
    Router::new()
        .route("/ok", get(|| async { "ok" }))
        .route(
            "/panic/{id}",
            get(|Path(id): Path<u32>| async move {
                if id > 0 {
                    panic!("handler exploded for {id}");
                }
                "never"
            }),
        )
        .route(
            "/fail/{id}",
            get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "nope") }),
        )
        .route(
            "/error",
            get(|| async { Err::<String, AppError>(AppError(StorageError("disk full".into()))) }),
        )
        .route(
            "/reported",
            get(|| async {
                errorwatch_sdk::capture_message(
                    "reported by the handler itself",
                    errorwatch_sdk::Level::Error,
                );
                let mut response = (StatusCode::BAD_GATEWAY, "upstream down").into_response();
                response.extensions_mut().insert(AlreadyReported);
                response
            }),
        )
        .route("/users/{id}", get(user_handler))
        .route(
            "/submit",
            axum::routing::post(|body: axum::body::Bytes| async move {
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("read {} bytes", body.len()),
                )
            }),
        )
        .layer(layer)
}

async fn start(
    configure: impl FnOnce(ErrorWatchLayer) -> ErrorWatchLayer,
    options: impl FnOnce(Options) -> Options,
) -> App {
    errorwatch_sdk::panic::install_hook();
    let mut config = Config::for_tests("axum-tests-secret-0123");
    config.rate_limit_per_minute = 0;
    let server = Server::start(config).await.expect("server");
    let (_, key) = server.create_project("axum").await.expect("project");
    let client = Client::new(options(
        Options::new(server.url(), key).capture_panics(false),
    ))
    .expect("client");
    let app = router(configure(ErrorWatchLayer::new().client(client.clone())));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await;
    });
    App {
        server,
        client,
        url,
        http: reqwest::Client::new(),
    }
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_panic_is_a_fatal_event_a_500_and_the_server_keeps_serving() {
    let app = start(|layer| layer, |options| options).await;
    assert_eq!(app.get("/panic/7").await, 500);
    assert_eq!(app.get("/ok").await, 200, "still serving");
    let events = app.stored().await;
    assert_eq!(events.len(), 1);
    let event = &events[0];
    assert_eq!(event["level"], "fatal");
    assert_eq!(event["exception"]["type"], "panic");
    assert_eq!(event["exception"]["value"], "handler exploded for 7");
    assert_eq!(event["tags"]["transaction"], "/panic/{id}");
    assert_eq!(event["request"]["method"], "GET");
    assert!(event["request"]["url"]
        .as_str()
        .unwrap_or("")
        .ends_with("/panic/7"));
    assert!(
        event["file"]
            .as_str()
            .unwrap_or("")
            .ends_with("axum_app.rs"),
        "the hook's location: {event}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_500_is_reported_a_404_is_not_and_handler_errors_carry_their_type() {
    let app = start(|layer| layer, |options| options).await;
    assert_eq!(app.get("/fail/3").await, 500);
    assert_eq!(app.get("/nowhere").await, 404);
    assert_eq!(app.get("/error").await, 500);
    assert_eq!(app.get("/reported").await, 502);
    let events = app.stored().await;
    let by_type = |ty: &str| {
        events
            .iter()
            .find(|e| e["exception"]["type"] == ty)
            .cloned()
    };
    let fail = by_type("HTTP 500").expect("the 500 is reported");
    assert_eq!(fail["status_code"], 500);
    assert_eq!(fail["tags"]["transaction"], "/fail/{id}");
    assert_eq!(fail["exception"]["value"], "GET /fail/{id} answered 500");
    let error = by_type("StorageError").expect("the handler's error is named");
    assert_eq!(
        error["exception"]["value"],
        "storage unavailable: disk full"
    );
    assert_eq!(error["status_code"], 500);
    assert!(
        events.iter().all(|e| e["status_code"] != 404),
        "4xx are not reported"
    );
    assert!(by_type("HTTP 502").is_none(), "marked as already reported");
    assert_eq!(
        events.len(),
        3,
        "the 500, the handler error, the handler's own report"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_errors_are_reported_when_asked() {
    let app = start(
        |layer| layer.report_statuses(ReportStatuses::default().with_client_errors()),
        |o| o,
    )
    .await;
    assert_eq!(app.get("/nowhere").await, 404);
    let events = app.stored().await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["status_code"], 404);
    assert_eq!(events[0]["level"], "warning");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_in_headers_and_query_never_reach_the_store() {
    let app = start(|layer| layer, |options| options).await;
    let status = app
        .http
        .get(format!("{}/fail/1?token=QUERYSECRET&page=2", app.url))
        .header("Authorization", "Bearer AUTHSECRET123456")
        .header("Cookie", "session=COOKIESECRET")
        .header("X-Api-Key", "APIKEYSECRET")
        .header("X-Forwarded-For", "203.0.113.9")
        .header("X-Upstream-Token", "UPSTREAMSECRET")
        .header("User-Agent", "tests/1.0")
        .send()
        .await
        .expect("answer")
        .status();
    assert_eq!(status, 500);
    let events = app.stored().await;
    let event = &events[0];
    let text = event.to_string();
    for secret in [
        "QUERYSECRET",
        "AUTHSECRET",
        "COOKIESECRET",
        "APIKEYSECRET",
        "203.0.113.9",
        "UPSTREAMSECRET",
    ] {
        assert!(!text.contains(secret), "{secret} reached the store: {text}");
    }
    let headers = event["request"]["headers"].as_object().expect("headers");
    assert_eq!(
        headers["user-agent"], "tests/1.0",
        "harmless headers are kept"
    );
    for removed in [
        "authorization",
        "cookie",
        "x-api-key",
        "x-forwarded-for",
        "x-upstream-token",
    ] {
        assert!(!headers.contains_key(removed), "{removed} is removed");
    }
    let url = event["request"]["url"].as_str().unwrap_or("");
    assert!(
        url.contains("token=[Filtered]") && url.contains("page=2"),
        "{url}"
    );
    assert!(
        event["user"]["ip_address"].is_null(),
        "no client IP without opting in"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_ip_is_attached_only_with_personal_data_on() {
    let app = start(|layer| layer, |options| options.send_default_pii(true)).await;
    let status = app
        .http
        .get(format!("{}/fail/1", app.url))
        .header("X-Forwarded-For", "198.51.100.4, 10.0.0.1")
        .send()
        .await
        .expect("answer")
        .status();
    assert_eq!(status, 500);
    let events = app.stored().await;
    assert_eq!(events[0]["user"]["ip_address"], "198.51.100.4");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hundreds_of_interleaved_requests_keep_their_own_context() {
    let app = start(|layer| layer, |options| options).await;
    let requests = 300u32;
    let mut tasks = Vec::new();
    for id in 1..=requests {
        let (http, url) = (app.http.clone(), format!("{}/users/{id}", app.url));
        tasks.push(tokio::spawn(async move {
            http.get(url).send().await.map(|r| r.status().as_u16())
        }));
    }
    for task in tasks {
        let status = task.await.expect("task").expect("request");
        assert!(status == 200 || status == 500);
    }
    let events = app.stored().await;
    // Each odd request captures a message; each even one fails with its own error.
    assert_eq!(events.len(), requests as usize, "one event per request");
    for event in &events {
        let url = event["request"]["url"].as_str().expect("url");
        let id = url.rsplit('/').next().expect("id");
        assert_eq!(event["user"]["id"], format!("user-{id}"), "{event}");
        assert_eq!(event["tags"]["user_tag"], format!("tag-{id}"));
        assert_eq!(event["tags"]["transaction"], "/users/{id}");
        let crumbs: Vec<_> = event["breadcrumbs"]
            .as_array()
            .expect("crumbs")
            .iter()
            .map(|c| c["message"].clone())
            .collect();
        assert_eq!(
            crumbs,
            vec![Value::from(format!("crumb-{id}"))],
            "only its own breadcrumb"
        );
    }
}

async fn submit(app: &App, content_type: &str, body: &'static str) -> u16 {
    app.http
        .post(format!("{}/submit", app.url))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("answer")
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_bodies_are_attached_only_with_personal_data_on_and_scrubbed() {
    let form = r#"{"email":"ann@example.com","password":"hunter2-BODY","items":3}"#;
    let with_pii = start(|layer| layer, |options| options.send_default_pii(true)).await;
    assert_eq!(submit(&with_pii, "application/json", form).await, 500);
    let events = with_pii.stored().await;
    let json_event = events
        .iter()
        .find(|e| e["request"]["data"].is_object())
        .expect("the JSON body is attached");
    assert_eq!(json_event["request"]["data"]["email"], "ann@example.com");
    assert_eq!(json_event["request"]["data"]["items"], 3);
    assert_eq!(json_event["request"]["data"]["password"], "[Filtered]");
    assert!(!json_event.to_string().contains("hunter2-BODY"));

    // Its own app: the same route and status would be a duplicate within the server's 10 s.
    let binary = start(|layer| layer, |options| options.send_default_pii(true)).await;
    assert_eq!(
        submit(&binary, "application/octet-stream", "\u{0}\u{1}binary").await,
        500
    );
    let events = binary.stored().await;
    assert_eq!(events.len(), 1);
    assert!(
        events[0]["request"]["data"].is_null(),
        "a binary body is never attached"
    );

    let without_pii = start(|layer| layer, |options| options).await;
    assert_eq!(submit(&without_pii, "application/json", form).await, 500);
    let events = without_pii.stored().await;
    assert!(
        events[0]["request"]["data"].is_null(),
        "no body without opting in"
    );
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
