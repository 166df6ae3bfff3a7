//! 500 concurrent requests whose handlers also spawn tasks, run blocking work and start
//! threads that configure scopes and capture: no event carries another request's tags, user
//! or breadcrumbs. One test per binary: it installs the global client, as `main` would.

use std::time::Duration;

use axum::extract::Path;
use axum::routing::get;
use axum::Router;
use errorwatch_axum::ErrorWatchLayer;
use errorwatch_sdk::{
    add_breadcrumb, capture_message, configure_scope, Breadcrumb, Level, Options, ScopeFutureExt,
    User,
};
use errorwatch_server::{Config, Server};
use serde_json::Value;

const REQUESTS: u32 = 500;

/// What every detached piece of work tries: to write "its" context outside any scope.
fn scribble(kind: &str, i: u32) {
    configure_scope(|scope| {
        scope.set_tag(kind, i.to_string());
        scope.set_user(Some(User {
            id: Some(format!("{kind}-{i}")),
            ..User::default()
        }));
    });
    add_breadcrumb(Breadcrumb::new("detached", format!("{kind}-crumb-{i}")));
    capture_message(&format!("{kind} {i}"), Level::Warning);
}

async fn handler(Path(i): Path<u32>) -> &'static str {
    configure_scope(|scope| {
        scope.set_tag("request", i.to_string());
        scope.set_user(Some(User {
            id: Some(format!("user-{i}")),
            ..User::default()
        }));
    });
    add_breadcrumb(Breadcrumb::new("request", format!("crumb-{i}")));
    tokio::spawn(async move { scribble("spawned", i) })
        .await
        .expect("task");
    tokio::task::spawn_blocking(move || scribble("blocking", i))
        .await
        .expect("blocking");
    std::thread::spawn(move || scribble("thread", i))
        .join()
        .expect("thread");
    // Asked for: a detached task that carries the request's context.
    tokio::spawn(
        async move { capture_message(&format!("carried {i}"), Level::Warning) }.with_new_scope(),
    )
    .await
    .expect("carried");
    tokio::task::yield_now().await;
    capture_message(&format!("request {i}"), Level::Error);
    "ok"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn detached_work_never_puts_one_requests_context_on_another() {
    let mut config = Config::for_tests("detached-context-secret-0123");
    config.rate_limit_per_minute = 0;
    let server = Server::start(config).await.expect("server");
    let (_, key) = server.create_project("detached").await.expect("project");
    // As `main` does: the global client, and process-wide context set deliberately.
    let guard = errorwatch_sdk::init(
        Options::new(server.url(), key)
            .capture_panics(false)
            .attach_stacktrace(false)
            .queue_capacity(10_000),
    );
    configure_scope(|scope| scope.set_tag("service", "api"));

    let app = Router::new()
        .route("/work/{i}", get(handler))
        .layer(ErrorWatchLayer::new());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let http = reqwest::Client::new();
    let requests: Vec<_> = (0..REQUESTS)
        .map(|i| {
            let (http, url) = (http.clone(), url.clone());
            tokio::spawn(async move {
                let status = http
                    .get(format!("{url}/work/{i}"))
                    .send()
                    .await
                    .expect("answer")
                    .status();
                assert_eq!(status.as_u16(), 200);
            })
        })
        .collect();
    for request in requests {
        request.await.expect("request");
    }
    capture_message("main, afterwards", Level::Info);
    let client = guard.clone();
    assert!(
        tokio::task::spawn_blocking(move || client.flush(Duration::from_secs(30)))
            .await
            .expect("flush")
    );
    let stats = guard.stats();
    assert_eq!(stats.sent, u64::from(REQUESTS) * 5 + 1, "{stats:?}");

    let events: Vec<Value> = server
        .store()
        .events(100_000)
        .await
        .expect("events")
        .into_iter()
        .map(|e| e.payload)
        .collect();
    assert_eq!(events.len(), REQUESTS as usize * 5 + 1);
    let mut foreign = Vec::new();
    for event in &events {
        let message = event["message"].as_str().unwrap_or_default();
        let tags = event["tags"].as_object().cloned().unwrap_or_default();
        let user = event["user"]["id"].as_str();
        let crumbs: Vec<&str> = event["breadcrumbs"]
            .as_array()
            .map(|c| c.iter().filter_map(|c| c["message"].as_str()).collect())
            .unwrap_or_default();
        if tags.get("service").and_then(Value::as_str) != Some("api") {
            foreign.push(format!("{message}: lost the process-wide tag"));
        }
        let (kind, i) = message.rsplit_once(' ').unwrap_or((message, ""));
        let own = match kind {
            // The request and the task that asked for its context: exactly the request's.
            "request" | "carried" => {
                tags.get("request").and_then(Value::as_str) == Some(i)
                    && tags.get("transaction").and_then(Value::as_str) == Some("/work/{i}")
                    && tags.len() == 3
                    && user == Some(format!("user-{i}").as_str())
                    && crumbs == [format!("crumb-{i}").as_str()]
            }
            // Detached work and main: the process-wide context only.
            _ => tags.len() == 1 && user.is_none() && crumbs.is_empty(),
        };
        if !own {
            foreign.push(format!(
                "{message}: tags {tags:?}, user {user:?}, crumbs {crumbs:?}"
            ));
        }
    }
    assert!(
        foreign.is_empty(),
        "{} events carried context not theirs, e.g. {:?}",
        foreign.len(),
        foreign.first()
    );
    drop(guard);
}
