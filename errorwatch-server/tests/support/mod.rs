//! A server started in-process on an ephemeral port, and a small HTTP client for it; the
//! real binary as a child process in `process`.
#![allow(dead_code)]

pub(crate) mod browser;
pub(crate) mod postgres;
pub(crate) mod process;

use errorwatch_server::{Config, Server};
use serde_json::{json, Value};

pub(crate) const SECRET: &str = "test-secret-0123456789";
pub(crate) const ADMIN: &str = "admin-key-for-tests";

/// A store the suites run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Backend {
    Sqlite,
    Postgres,
}

/// The backend of this test binary: the `*_postgres` targets run the same suites on
/// PostgreSQL, the others on SQLite.
pub(crate) fn backend() -> Backend {
    if env!("CARGO_CRATE_NAME").ends_with("_postgres") {
        Backend::Postgres
    } else {
        Backend::Sqlite
    }
}

/// A new database of this binary's backend: a file in `dir`, or a database of the shared
/// PostgreSQL cluster.
pub(crate) fn database_url(dir: &process::TempDir) -> String {
    match backend() {
        Backend::Sqlite => dir.database_url(),
        Backend::Postgres => postgres::Cluster::shared().new_database_url(),
    }
}

pub(crate) struct TestServer {
    pub server: Server,
    pub key: String,
    pub project: i64,
    pub http: reqwest::Client,
}

pub(crate) struct Answer {
    pub status: u16,
    pub body: Value,
    pub headers: reqwest::header::HeaderMap,
}

impl Answer {
    pub(crate) fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or_default()
    }
    pub(crate) fn paths(&self) -> Vec<String> {
        self.body["details"]
            .as_array()
            .map(|details| {
                details
                    .iter()
                    .map(|d| d["path"].as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

impl TestServer {
    pub(crate) async fn start() -> TestServer {
        TestServer::with(|_| {}).await
    }

    pub(crate) async fn with(edit: impl FnOnce(&mut Config)) -> TestServer {
        let mut config = Config::for_tests(SECRET);
        config.admin_api_key = Some(ADMIN.into());
        if backend() == Backend::Postgres {
            config.database_url = postgres::Cluster::shared().new_database_url();
        }
        edit(&mut config);
        let server = Server::start(config).await.expect("server starts");
        // Project names are unique per store: a restart on the same file makes another.
        static STARTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let name = format!(
            "tests-{}",
            STARTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let (project, key) = server.create_project(&name).await.expect("project");
        TestServer {
            server,
            key,
            project,
            http: reqwest::Client::new(),
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server.url())
    }

    pub(crate) async fn send(&self, request: reqwest::RequestBuilder) -> Answer {
        let response = request.send().await.expect("the server answers");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.expect("body");
        let body = serde_json::from_slice(&bytes)
            .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into()));
        Answer {
            status,
            body,
            headers,
        }
    }

    pub(crate) async fn post_raw(
        &self,
        path: &str,
        key: Option<&str>,
        body: impl Into<reqwest::Body>,
    ) -> Answer {
        let mut request = self
            .http
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body);
        if let Some(key) = key {
            request = request.header("X-API-Key", key);
        }
        self.send(request).await
    }

    pub(crate) async fn event(&self, body: &Value) -> Answer {
        self.post_raw("/api/v1/event", Some(&self.key), body.to_string())
            .await
    }

    pub(crate) async fn admin_get(&self, path: &str) -> Answer {
        self.send(self.http.get(self.url(path)).bearer_auth(ADMIN))
            .await
    }

    pub(crate) async fn admin_patch(&self, path: &str, body: &Value) -> Answer {
        self.send(
            self.http
                .patch(self.url(path))
                .bearer_auth(ADMIN)
                .body(body.to_string()),
        )
        .await
    }

    pub(crate) async fn groups(&self) -> Vec<Value> {
        let answer = self.admin_get("/api/v1/groups?limit=100").await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        answer.body["groups"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    pub(crate) async fn events_of(&self, fingerprint: &str) -> Vec<Value> {
        let answer = self
            .admin_get(&format!("/api/v1/groups/{fingerprint}/events?limit=100"))
            .await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        answer.body["events"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

/// A valid v2 event with a unique value, so the duplicate window never hides it.
pub(crate) fn v2(value: &str) -> Value {
    json!({
        "event_id": format!("id-{value}"),
        "exception": { "type": "TestError", "value": value },
        "sdk": { "name": "tests", "version": "1" },
    })
}

/// A valid v1 event.
pub(crate) fn v1(message: &str) -> Value {
    json!({ "message": message, "file": "app.js", "line": 10, "stack": "at f (app.js:10:1)" })
}

/// `base` with `key` set to `value`.
pub(crate) fn with(mut base: Value, key: &str, value: Value) -> Value {
    base[key] = value;
    base
}
