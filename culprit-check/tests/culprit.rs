//! Each issue blames the user's line, in debug and in release builds.
//!
//! The probe (`src/main.rs`) fails in every way the SDK reports; each failing line carries a
//! `// culprit: <function>` marker. Built as the tests build it (debug) and as services ship
//! (release, `debug = "line-tables-only"`: inlined frames with bare names), it runs against the
//! real server, and for every event the first in-app frame must be the marked function at the
//! marked line, the event's file and line the same, with paths relative to the workspace root,
//! and no frame of std, tokio, axum, actix or the SDK marked in-app.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use errorwatch_server::{Config, Server};
use serde_json::Value;

const SOURCE: &str = "culprit-check/src/main.rs";

/// `(function, line)` of every `// culprit:` marker of the probe.
fn markers() -> Vec<(String, u32)> {
    let source = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/main.rs"))
        .expect("the probe's source");
    source
        .lines()
        .enumerate()
        .filter_map(|(i, line)| {
            let function = line.split("// culprit: ").nth(1)?;
            Some((function.trim().to_owned(), u32::try_from(i + 1).ok()?))
        })
        .collect()
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace")
        .to_path_buf()
}

/// Builds the probe in release with line tables only, in its own target directory (the
/// workspace's is locked by the running `cargo test`).
fn release_probe() -> PathBuf {
    let target = workspace_root().join("target").join("culprit-release");
    let status = Command::new(env!("CARGO"))
        .current_dir(workspace_root())
        .args([
            "build",
            "--release",
            "--locked",
            "-p",
            "errorwatch-culprit-check",
        ])
        .env("CARGO_TARGET_DIR", &target)
        .env("CARGO_PROFILE_RELEASE_DEBUG", "line-tables-only")
        .status()
        .expect("cargo runs");
    assert!(status.success(), "the release probe builds");
    target.join("release").join("errorwatch-culprit-check")
}

async fn run_probe(probe: &Path) -> Vec<Value> {
    let server = Server::start(Config::for_tests("culprit-check-secret-0123"))
        .await
        .expect("the server starts");
    let (_, key) = server.create_project("probe").await.expect("a project");
    let mut child = Command::new(probe)
        .env("ERRORWATCH_API_URL", server.url())
        .env("ERRORWATCH_API_KEY", key)
        .env("RUST_BACKTRACE", "0")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the probe starts");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("the probe's status") {
            break status;
        }
        assert!(Instant::now() < deadline, "the probe ends within 60 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        use std::io::Read;
        let _ = pipe.read_to_string(&mut stderr);
    }
    assert!(
        status.success(),
        "the probe fails only where it means to: {stderr}"
    );
    let events = server.store().events(100).await.expect("the events");
    server.shutdown().await;
    events.into_iter().map(|event| event.payload).collect()
}

fn is_library(frame: &Value) -> bool {
    let file = frame["filename"].as_str().unwrap_or_default();
    let function = frame["function"].as_str().unwrap_or_default();
    let sdk = ["sdk", "protocol", "tracing", "axum", "actix"];
    file.starts_with("/rustc/")
        || file.contains("/.cargo/")
        || sdk
            .iter()
            .any(|name| file.contains(&format!("errorwatch-{name}")))
        || sdk
            .iter()
            .map(|name| format!("errorwatch_{name}"))
            .chain(
                [
                    "std", "core", "alloc", "tokio", "axum", "actix", "tracing", "hyper",
                ]
                .map(String::from),
            )
            .any(|krate| {
                let function = function.trim_start_matches('<');
                function.starts_with(&format!("{krate}::"))
                    || function.starts_with(&format!("{krate}_"))
            })
}

fn check(events: &[Value]) {
    let markers = markers();
    assert_eq!(markers.len(), 5, "five failures marked in the probe");
    let mut wrong = Vec::new();
    for (function, line) in &markers {
        let Some(event) = events.iter().find(|e| {
            e.to_string().contains(&format!("probe: {function}"))
                || (function == "charge_card" && e["exception"]["type"] == "ParseIntError")
        }) else {
            wrong.push(format!("{function}: no event stored"));
            continue;
        };
        if event["file"] != SOURCE || event["line"] != *line {
            wrong.push(format!(
                "{function}: culprit {}:{} (expected {SOURCE}:{line})",
                event["file"], event["line"]
            ));
        }
        let frames = event["frames"].as_array().cloned().unwrap_or_default();
        let in_app: Vec<&Value> = frames.iter().filter(|f| f["in_app"] == true).collect();
        // Line tables name an inlined async fn body `{async_fn#0}`, without its function: at
        // the marked line of the marked file, that is the handler's body.
        let names = |frame: &Value| {
            let name = frame["function"].as_str().unwrap_or_default();
            name.contains(function.as_str()) || name.starts_with("{async_fn#")
        };
        match in_app.first() {
            Some(first)
                if first["filename"] == SOURCE && first["lineno"] == *line && names(first) => {}
            other => wrong.push(format!(
                "{function}: first in-app frame {other:?}, expected {function} at {SOURCE}:{line}"
            )),
        }
        for frame in in_app.iter().filter(|f| is_library(f)) {
            wrong.push(format!("{function}: a library frame is in-app: {frame}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_debug_build_blames_the_users_line() {
    let events = run_probe(Path::new(env!("CARGO_BIN_EXE_errorwatch-culprit-check"))).await;
    check(&events);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_build_with_line_tables_only_blames_the_users_line() {
    let probe = tokio::task::spawn_blocking(release_probe)
        .await
        .expect("the build ran");
    let events = run_probe(&probe).await;
    check(&events);
}
