//! One behavioural suite for both web integrations: the same application (the same routes,
//! the same failures) built on axum with `errorwatch-axum` and on actix-web with
//! `errorwatch-actix`, served over real HTTP, reporting to `errorwatch-server` in-process.
//! Every test runs against both frameworks and expects the same stored events: what a team
//! sees does not depend on the framework it chose.

use std::time::Duration;

use errorwatch_sdk::integration::ReportStatuses;
use errorwatch_sdk::{Client, Options, User};
use errorwatch_server::{Config, Server};
use serde_json::Value;

#[derive(Clone, Copy, Debug)]
enum Framework {
    Axum,
    Actix,
}

const FRAMEWORKS: [Framework; 2] = [Framework::Axum, Framework::Actix];

#[derive(Debug)]
struct StorageError(String);

impl std::fmt::Display for StorageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "storage unavailable: {}", self.0)
    }
}

impl std::error::Error for StorageError {}

/// The body of `/users/{id}`: it sets the request's user, a tag and a breadcrumb, lets other
/// requests run, then fails (even ids) or reports a message (odd ids).
async fn user_work(id: u32) -> Result<String, StorageError> {
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
    tokio::task::yield_now().await;
    tokio::time::sleep(Duration::from_millis(u64::from(id % 5))).await;
    if id.is_multiple_of(2) {
        // A distinct error per request: the server deduplicates identical events in 10 s.
        Err(StorageError(format!("user {id}")))
    } else {
        errorwatch_sdk::capture_message(&format!("odd user {id}"), errorwatch_sdk::Level::Warning);
        Ok(format!("user {id}"))
    }
}

fn explode(id: u32) -> &'static str {
    if id > 0 {
        panic!("handler exploded for {id}");
    }
    "never"
}

/// The application on axum.
mod on_axum {
    use axum::extract::Path;
    use axum::http::StatusCode;
    use axum::response::{IntoResponse, Response};
    use axum::routing::{get, post};
    use axum::Router;
    use errorwatch_axum::{AlreadyReported, ErrorWatchLayer, HandlerError};

    use super::*;

    struct AppError(StorageError);

    impl IntoResponse for AppError {
        fn into_response(self) -> Response {
            let mut response =
                (StatusCode::INTERNAL_SERVER_ERROR, "storage unavailable").into_response();
            response.extensions_mut().insert(HandlerError::new(&self.0));
            response
        }
    }

    pub(super) fn router(client: Client, statuses: ReportStatuses) -> Router {
        Router::new()
            .route("/ok", get(|| async { "ok" }))
            .route(
                "/panic/{id}",
                get(|Path(id): Path<u32>| async move { explode(id) }),
            )
            .route(
                "/fail/{id}",
                get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "nope") }),
            )
            .route(
                "/error",
                get(|| async { Err::<String, _>(AppError(StorageError("disk full".into()))) }),
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
            .route(
                "/users/{id}",
                get(|Path(id): Path<u32>| async move { user_work(id).await.map_err(AppError) }),
            )
            .route(
                "/submit",
                post(|body: axum::body::Bytes| async move {
                    (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("read {} bytes", body.len()),
                    )
                }),
            )
            .layer(
                ErrorWatchLayer::new()
                    .client(client)
                    .report_statuses(statuses),
            )
    }
}

/// The application on actix-web.
mod on_actix {
    use actix_web::{web, HttpResponse, ResponseError};
    use errorwatch_actix::{AlreadyReported, ErrorWatch};

    use super::*;

    impl ResponseError for StorageError {}

    pub(super) fn configure(app: &mut web::ServiceConfig) {
        app.route("/ok", web::get().to(|| async { "ok" }))
            .route(
                "/panic/{id}",
                web::get().to(|id: web::Path<u32>| async move { explode(id.into_inner()) }),
            )
            .route(
                "/fail/{id}",
                web::get().to(|| async { HttpResponse::InternalServerError().body("nope") }),
            )
            .route(
                "/error",
                web::get()
                    .to(|| async { Err::<String, StorageError>(StorageError("disk full".into())) }),
            )
            .route(
                "/reported",
                web::get().to(|| async {
                    errorwatch_sdk::capture_message(
                        "reported by the handler itself",
                        errorwatch_sdk::Level::Error,
                    );
                    let mut response = HttpResponse::BadGateway().body("upstream down");
                    response.extensions_mut().insert(AlreadyReported);
                    response
                }),
            )
            .route(
                "/users/{id}",
                web::get().to(|id: web::Path<u32>| user_work(id.into_inner())),
            )
            .route(
                "/submit",
                web::post().to(|body: web::Bytes| async move {
                    HttpResponse::InternalServerError().body(format!("read {} bytes", body.len()))
                }),
            );
    }

    pub(super) fn middleware(client: Client, statuses: ReportStatuses) -> ErrorWatch {
        ErrorWatch::new().client(client).report_statuses(statuses)
    }
}

/// The application served on its framework's own runtime, in a thread of its own.
struct TestApp {
    server: Server,
    client: Client,
    url: String,
    http: reqwest::Client,
    stop: Box<dyn FnOnce() + Send>,
}

async fn start(
    framework: Framework,
    statuses: ReportStatuses,
    options: impl FnOnce(Options) -> Options,
) -> TestApp {
    errorwatch_sdk::integration::install_hook();
    let mut config = Config::for_tests("web-integrations-secret-0123");
    config.rate_limit_per_minute = 0;
    let server = Server::start(config).await.expect("server");
    let (_, key) = server.create_project("web").await.expect("project");
    let client = Client::new(options(
        Options::new(server.url(), key).capture_panics(false),
    ))
    .expect("client");
    let app_client = client.clone();
    let (url_tx, url_rx) = std::sync::mpsc::channel::<String>();
    let stop: Box<dyn FnOnce() + Send> = match framework {
        Framework::Axum => {
            let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("a runtime");
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                        .await
                        .expect("bind");
                    let address = listener.local_addr().expect("address");
                    url_tx.send(format!("http://{address}")).expect("url");
                    let app = on_axum::router(app_client, statuses);
                    let _ = axum::serve(
                        listener,
                        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
                    )
                    .with_graceful_shutdown(async {
                        let _ = stop_rx.await;
                    })
                    .await;
                });
            });
            Box::new(move || {
                let _ = stop_tx.send(());
            })
        }
        Framework::Actix => {
            let (handle_tx, handle_rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                actix_web::rt::System::new().block_on(async move {
                    let server = actix_web::HttpServer::new(move || {
                        actix_web::App::new()
                            .wrap(on_actix::middleware(app_client.clone(), statuses))
                            .configure(on_actix::configure)
                    })
                    .workers(2)
                    .bind(("127.0.0.1", 0))
                    .expect("bind");
                    url_tx
                        .send(format!("http://{}", server.addrs()[0]))
                        .expect("url");
                    let running = server.run();
                    handle_tx.send(running.handle()).expect("handle");
                    let _ = running.await;
                });
            });
            let handle: actix_web::dev::ServerHandle = handle_rx
                .recv_timeout(Duration::from_secs(30))
                .expect("the actix server starts");
            Box::new(move || {
                // Stopping waits on the server's own runtime: not on the caller's.
                std::thread::spawn(move || {
                    block_on_here(handle.stop(true));
                });
            })
        }
    };
    let url = url_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the app listens");
    TestApp {
        server,
        client,
        url,
        http: reqwest::Client::new(),
        stop,
    }
}

/// Runs a future to completion on the current thread.
fn block_on_here<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime")
        .block_on(future)
}

impl TestApp {
    async fn get(&self, path: &str) -> u16 {
        self.http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .expect("the app answers")
            .status()
            .as_u16()
    }

    async fn submit(&self, content_type: &str, body: &'static str) -> (u16, String) {
        let response = self
            .http
            .post(format!("{}/submit", self.url))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("answer");
        let status = response.status().as_u16();
        (status, response.text().await.unwrap_or_default())
    }

    /// Every event the server stored, once the client has sent all it captured.
    async fn stored(&self) -> Vec<Value> {
        let client = self.client.clone();
        assert!(
            tokio::task::spawn_blocking(move || client.flush(Duration::from_secs(10)))
                .await
                .expect("flush"),
            "everything captured was sent"
        );
        let events = self.server.store().events(10_000).await.expect("events");
        events.into_iter().map(|event| event.payload).collect()
    }

    async fn stop(self) {
        (self.stop)();
        self.server.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_panic_is_a_fatal_event_a_500_and_the_server_keeps_serving() {
    for framework in FRAMEWORKS {
        let app = start(framework, ReportStatuses::default(), |o| o).await;
        assert_eq!(app.get("/panic/7").await, 500, "{framework:?}");
        assert_eq!(app.get("/ok").await, 200, "{framework:?}: still serving");
        let events = app.stored().await;
        assert_eq!(events.len(), 1, "{framework:?}: {events:?}");
        let event = &events[0];
        assert_eq!(event["level"], "fatal", "{framework:?}");
        assert_eq!(event["exception"]["type"], "panic", "{framework:?}");
        assert_eq!(event["exception"]["value"], "handler exploded for 7");
        assert_eq!(event["tags"]["transaction"], "/panic/{id}", "{framework:?}");
        assert_eq!(event["request"]["method"], "GET", "{framework:?}");
        let url = event["request"]["url"].as_str().unwrap_or_default();
        assert!(url.ends_with("/panic/7"), "{framework:?}: {url}");
        let file = event["file"].as_str().unwrap_or_default();
        assert!(
            file.ends_with("web_integrations.rs"),
            "{framework:?}: the panic's own line: {event}"
        );
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_500_is_reported_a_404_is_not_and_handler_errors_carry_their_type() {
    for framework in FRAMEWORKS {
        let app = start(framework, ReportStatuses::default(), |o| o).await;
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
        assert_eq!(fail["status_code"], 500, "{framework:?}");
        assert_eq!(fail["tags"]["transaction"], "/fail/{id}", "{framework:?}");
        assert_eq!(
            fail["exception"]["value"], "GET /fail/{id} answered 500",
            "{framework:?}"
        );
        let error = by_type("StorageError").expect("the handler's error is named");
        assert_eq!(
            error["exception"]["value"], "storage unavailable: disk full",
            "{framework:?}"
        );
        assert_eq!(error["status_code"], 500, "{framework:?}");
        assert!(
            events.iter().all(|e| e["status_code"] != 404),
            "{framework:?}: 4xx are not reported"
        );
        assert!(
            by_type("HTTP 502").is_none(),
            "{framework:?}: marked as already reported"
        );
        assert_eq!(
            events.len(),
            3,
            "{framework:?}: the 500, the handler error, the handler's own report: {events:?}"
        );
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_errors_are_reported_when_asked() {
    for framework in FRAMEWORKS {
        let statuses = ReportStatuses::default().with_client_errors();
        let app = start(framework, statuses, |o| o).await;
        assert_eq!(app.get("/nowhere").await, 404);
        let events = app.stored().await;
        assert_eq!(events.len(), 1, "{framework:?}");
        assert_eq!(events[0]["status_code"], 404, "{framework:?}");
        assert_eq!(events[0]["level"], "warning", "{framework:?}");
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_in_headers_and_query_never_reach_the_store() {
    for framework in FRAMEWORKS {
        let app = start(framework, ReportStatuses::default(), |o| o).await;
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
            assert!(
                !text.contains(secret),
                "{framework:?}: {secret} reached the store: {text}"
            );
        }
        let headers = event["request"]["headers"].as_object().expect("headers");
        assert_eq!(
            headers["user-agent"], "tests/1.0",
            "{framework:?}: harmless headers are kept"
        );
        for removed in [
            "authorization",
            "cookie",
            "x-api-key",
            "x-forwarded-for",
            "x-upstream-token",
        ] {
            assert!(
                !headers.contains_key(removed),
                "{framework:?}: {removed} is removed"
            );
        }
        let url = event["request"]["url"].as_str().unwrap_or("");
        assert!(
            url.contains("token=[Filtered]") && url.contains("page=2"),
            "{framework:?}: {url}"
        );
        assert!(
            event["user"]["ip_address"].is_null(),
            "{framework:?}: no client IP without opting in"
        );
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_ip_is_attached_only_with_personal_data_on() {
    for framework in FRAMEWORKS {
        let app = start(framework, ReportStatuses::default(), |o| {
            o.send_default_pii(true)
        })
        .await;
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
        assert_eq!(
            events[0]["user"]["ip_address"], "198.51.100.4",
            "{framework:?}"
        );
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hundreds_of_interleaved_requests_keep_their_own_context() {
    for framework in FRAMEWORKS {
        let app = start(framework, ReportStatuses::default(), |o| o).await;
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
            assert!(status == 200 || status == 500, "{framework:?}: {status}");
        }
        let events = app.stored().await;
        // Each odd request captures a message; each even one fails with its own error.
        assert_eq!(
            events.len(),
            requests as usize,
            "{framework:?}: one event per request"
        );
        for event in &events {
            let url = event["request"]["url"].as_str().expect("url");
            let id = url.rsplit('/').next().expect("id");
            assert_eq!(
                event["user"]["id"],
                format!("user-{id}"),
                "{framework:?}: {event}"
            );
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
                "{framework:?}: only its own breadcrumb"
            );
        }
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_bodies_are_attached_only_with_personal_data_on_and_scrubbed() {
    let form = r#"{"email":"ann@example.com","password":"hunter2-BODY","items":3}"#;
    for framework in FRAMEWORKS {
        let with_pii = start(framework, ReportStatuses::default(), |o| {
            o.send_default_pii(true)
        })
        .await;
        let (status, text) = with_pii.submit("application/json", form).await;
        assert_eq!(
            (status, text.as_str()),
            (500, "read 63 bytes"),
            "{framework:?}: the handler got the whole body"
        );
        let events = with_pii.stored().await;
        let data = &events[0]["request"]["data"];
        assert_eq!(data["email"], "ann@example.com", "{framework:?}");
        assert_eq!(data["items"], 3, "{framework:?}");
        assert_eq!(data["password"], "[Filtered]", "{framework:?}");
        assert!(!events[0].to_string().contains("hunter2-BODY"));
        with_pii.stop().await;

        // Its own app: the same route and status would be a duplicate within the server's 10 s.
        let binary = start(framework, ReportStatuses::default(), |o| {
            o.send_default_pii(true)
        })
        .await;
        let (status, text) = binary
            .submit("application/octet-stream", "\u{0}\u{1}binary")
            .await;
        assert_eq!(
            (status, text.as_str()),
            (500, "read 8 bytes"),
            "{framework:?}"
        );
        let events = binary.stored().await;
        assert_eq!(events.len(), 1, "{framework:?}");
        assert!(
            events[0]["request"]["data"].is_null(),
            "{framework:?}: a binary body is never attached"
        );
        binary.stop().await;

        let without_pii = start(framework, ReportStatuses::default(), |o| o).await;
        without_pii.submit("application/json", form).await;
        assert!(
            without_pii.stored().await[0]["request"]["data"].is_null(),
            "{framework:?}: no body without opting in"
        );
        without_pii.stop().await;
    }
}
