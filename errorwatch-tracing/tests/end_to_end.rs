//! `tracing::error!` through the layer and the real transport to `errorwatch-server`.

use std::time::Duration;

use errorwatch_sdk::{Client, Options};
use errorwatch_server::{Config, Server};
use tracing_subscriber::prelude::*;

#[tokio::test]
async fn a_tracing_error_is_stored_with_its_fields_and_breadcrumbs() {
    let server = Server::start(Config::for_tests("tracing-e2e-secret-0123"))
        .await
        .expect("server");
    let (_, key) = server.create_project("tracing").await.expect("project");
    let client =
        Client::new(Options::new(server.url(), key).capture_panics(false)).expect("client");

    let subscriber = tracing_subscriber::registry().with(errorwatch_tracing::layer());
    let _default = tracing::subscriber::set_default(subscriber);
    client
        .bind(async {
            tracing::info!(items = 3, "cart loaded");
            tracing::warn!(latency_ms = 2300, "payment provider slow");
            tracing::error!(
                order_id = 42,
                tag.region = "eu",
                password = "hunter2",
                "payment declined"
            );
        })
        .await;
    let flushing = client.clone();
    assert!(
        tokio::task::spawn_blocking(move || flushing.flush(Duration::from_secs(5)))
            .await
            .expect("flush")
    );
    assert_eq!(client.stats().sent, 1);

    let query = errorwatch_server::store::GroupQuery {
        page: 1,
        limit: 10,
        ..Default::default()
    };
    let (groups, _) = server.store().groups(&query).await.expect("groups");
    assert_eq!(groups.len(), 1);
    let group = &groups[0];
    assert_eq!(group.title, "ERROR: payment declined");
    assert_eq!(group.level, "error");
    assert!(group
        .file
        .as_deref()
        .is_some_and(|f| f.ends_with("end_to_end.rs")));
    let events = server
        .store()
        .group_events(&group.fingerprint, 1, 10)
        .await
        .expect("events");
    let payload = &events[0].payload;
    assert_eq!(payload["message"], "payment declined");
    assert_eq!(payload["extra"]["order_id"], 42);
    assert_eq!(payload["extra"]["password"], "[Filtered]");
    assert_eq!(payload["tags"]["region"], "eu");
    let crumbs: Vec<_> = payload["breadcrumbs"]
        .as_array()
        .expect("breadcrumbs")
        .iter()
        .map(|c| {
            (
                c["message"].as_str().unwrap_or(""),
                c["level"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        crumbs,
        vec![
            ("cart loaded", "info"),
            ("payment provider slow", "warning")
        ]
    );
    assert_eq!(payload["breadcrumbs"][1]["data"]["latency_ms"], 2300);
    assert!(!payload.to_string().contains("hunter2"));
    server.shutdown().await;
}
