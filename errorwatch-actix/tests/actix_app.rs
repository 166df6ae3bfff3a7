//! A real actix-web `App` over real HTTP, reporting to `errorwatch-server` in-process.

use std::time::Duration;

use actix_web::{web, App, HttpResponse, HttpServer, ResponseError};
use errorwatch_actix::{AlreadyReported, ErrorWatch, ReportStatuses};
use errorwatch_sdk::{Client, Options, User};
use errorwatch_server::{Config, Server};
use serde_json::Value;

#[derive(Debug)]
struct StorageError(String);

impl std::fmt::Display for StorageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "storage unavailable: {}", self.0)
    }
}

impl ResponseError for StorageError {}

async fn user_handler(path: web::Path<u32>) -> Result<String, StorageError> {
    let id = path.into_inner();
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
    actix_web::rt::time::sleep(Duration::from_millis(u64::from(id % 5))).await;
    if id.is_multiple_of(2) {
        Err(StorageError(format!("user {id}")))
    } else {
        errorwatch_sdk::capture_message(&format!("odd user {id}"), errorwatch_sdk::Level::Warning);
        Ok(format!("user {id}"))
    }
}

async fn panicking(path: web::Path<u32>) -> &'static str {
    let id = path.into_inner();
    if id > 0 {
        panic!("handler exploded for {id}");
    }
    "never"
}

struct TestApp {
    server: Server,
    client: Client,
    url: String,
    http: reqwest::Client,
    handle: actix_web::dev::ServerHandle,
}

async fn start(
    configure: impl Fn(ErrorWatch) -> ErrorWatch + Send + Clone + 'static,
    options: impl FnOnce(Options) -> Options,
) -> TestApp {
    errorwatch_sdk::panic::install_hook();
    let mut config = Config::for_tests("actix-tests-secret-0123");
    config.rate_limit_per_minute = 0;
    let server = Server::start(config).await.expect("server");
    let (_, key) = server.create_project("actix").await.expect("project");
    let client = Client::new(options(
        Options::new(server.url(), key).capture_panics(false),
    ))
    .expect("client");
    let app_client = client.clone();
    let http_server = HttpServer::new(move || {
        App::new()
            .wrap(configure(ErrorWatch::new().client(app_client.clone())))
            .route("/ok", web::get().to(|| async { "ok" }))
            .route("/panic/{id}", web::get().to(panicking))
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
            .route("/users/{id}", web::get().to(user_handler))
            .route(
                "/submit",
                web::post().to(|body: web::Bytes| async move {
                    // The handler still reads the whole body, after the middleware did.
                    HttpResponse::InternalServerError().body(format!("read {} bytes", body.len()))
                }),
            )
    })
    .workers(2)
    .bind(("127.0.0.1", 0))
    .expect("bind");
    let url = format!("http://{}", http_server.addrs()[0]);
    let running = http_server.run();
    let handle = running.handle();
    actix_web::rt::spawn(running);
    TestApp {
        server,
        client,
        url,
        http: reqwest::Client::new(),
        handle,
    }
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

    async fn stored(&self) -> Vec<Value> {
        let client = self.client.clone();
        let flushed =
            actix_web::rt::task::spawn_blocking(move || client.flush(Duration::from_secs(10)))
                .await
                .expect("flush");
        assert!(flushed);
        let events = self.server.store().events(10_000).await.expect("events");
        events.into_iter().map(|event| event.payload).collect()
    }

    async fn stop(self) {
        self.handle.stop(true).await;
        self.server.shutdown().await;
    }
}

#[actix_web::test]
async fn a_handler_panic_is_a_fatal_event_a_500_and_the_server_keeps_serving() {
    let app = start(|m| m, |o| o).await;
    assert_eq!(app.get("/panic/7").await, 500);
    assert_eq!(app.get("/ok").await, 200, "still serving");
    let events = app.stored().await;
    assert_eq!(events.len(), 1);
    let event = &events[0];
    assert_eq!(event["level"], "fatal");
    assert_eq!(event["exception"]["value"], "handler exploded for 7");
    assert_eq!(event["tags"]["transaction"], "/panic/{id}");
    assert!(event["request"]["url"]
        .as_str()
        .unwrap_or("")
        .ends_with("/panic/7"));
    app.stop().await;
}

#[actix_web::test]
async fn a_500_is_reported_a_404_is_not_and_attached_errors_carry_their_type() {
    let app = start(|m| m, |o| o).await;
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
    let error = by_type("StorageError").expect("the attached error is named");
    assert_eq!(
        error["exception"]["value"],
        "storage unavailable: disk full"
    );
    assert!(events.iter().all(|e| e["status_code"] != 404));
    assert!(by_type("HTTP 502").is_none(), "marked as already reported");
    assert_eq!(events.len(), 3);
    app.stop().await;
}

#[actix_web::test]
async fn client_errors_are_reported_when_asked() {
    let app = start(
        |m| m.report_statuses(ReportStatuses::default().with_client_errors()),
        |o| o,
    )
    .await;
    assert_eq!(app.get("/nowhere").await, 404);
    let events = app.stored().await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["status_code"], 404);
    app.stop().await;
}

#[actix_web::test]
async fn secrets_in_headers_and_query_never_reach_the_store() {
    let app = start(|m| m, |o| o).await;
    let status = app
        .http
        .get(format!("{}/fail/1?api_key=QUERYSECRET&page=2", app.url))
        .header("Authorization", "Bearer AUTHSECRET123456")
        .header("Cookie", "session=COOKIESECRET")
        .header("X-Api-Key", "APIKEYSECRET")
        .header("X-Real-IP", "203.0.113.9")
        .header("Proxy-Authorization", "Basic PROXYSECRET")
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
        "PROXYSECRET",
    ] {
        assert!(!text.contains(secret), "{secret} reached the store: {text}");
    }
    assert_eq!(event["request"]["headers"]["user-agent"], "tests/1.0");
    let url = event["request"]["url"].as_str().unwrap_or("");
    assert!(
        url.contains("api_key=[Filtered]") && url.contains("page=2"),
        "{url}"
    );
    app.stop().await;
}

#[actix_web::test]
async fn the_client_ip_is_attached_only_with_personal_data_on() {
    let app = start(|m| m.send_pii(true), |o| o).await;
    let status = app
        .http
        .get(format!("{}/fail/1", app.url))
        .header("X-Forwarded-For", "198.51.100.4")
        .send()
        .await
        .expect("answer")
        .status();
    assert_eq!(status, 500);
    let events = app.stored().await;
    assert_eq!(events[0]["user"]["ip_address"], "198.51.100.4");
    app.stop().await;
}

#[actix_web::test]
async fn hundreds_of_interleaved_requests_keep_their_own_context() {
    let app = start(|m| m, |o| o).await;
    let requests = 300u32;
    let mut tasks = Vec::new();
    for id in 1..=requests {
        let (http, url) = (app.http.clone(), format!("{}/users/{id}", app.url));
        tasks.push(actix_web::rt::spawn(async move {
            http.get(url).send().await.map(|r| r.status().as_u16())
        }));
    }
    for task in tasks {
        let status = task.await.expect("task").expect("request");
        assert!(status == 200 || status == 500);
    }
    let events = app.stored().await;
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
    app.stop().await;
}

async fn submit(app: &TestApp, content_type: &str, body: &'static str) -> (u16, String) {
    let response = app
        .http
        .post(format!("{}/submit", app.url))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("answer");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

#[actix_web::test]
async fn request_bodies_are_attached_only_with_personal_data_on_and_scrubbed() {
    let form = r#"{"email":"ann@example.com","password":"hunter2-BODY","items":3}"#;
    let with_pii = start(|m| m, |o| o.send_default_pii(true)).await;
    let (status, text) = submit(&with_pii, "application/json", form).await;
    assert_eq!(
        (status, text.as_str()),
        (500, "read 63 bytes"),
        "the handler got the whole body"
    );
    let events = with_pii.stored().await;
    let data = &events[0]["request"]["data"];
    assert_eq!(data["email"], "ann@example.com");
    assert_eq!(data["password"], "[Filtered]");
    assert!(!events[0].to_string().contains("hunter2-BODY"));
    with_pii.stop().await;

    let binary = start(|m| m, |o| o.send_default_pii(true)).await;
    let (status, text) = submit(&binary, "application/octet-stream", "binary-bytes").await;
    assert_eq!((status, text.as_str()), (500, "read 12 bytes"));
    assert!(
        binary.stored().await[0]["request"]["data"].is_null(),
        "a binary body is never attached"
    );
    binary.stop().await;

    let without_pii = start(|m| m, |o| o).await;
    submit(&without_pii, "application/json", form).await;
    assert!(
        without_pii.stored().await[0]["request"]["data"].is_null(),
        "no body without opting in"
    );
    without_pii.stop().await;
}
