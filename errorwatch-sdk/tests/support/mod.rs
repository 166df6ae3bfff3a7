//! Test support: a local HTTP listener that records requests and misbehaves on demand.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use errorwatch_sdk::{Client, Options, Stats};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A key of the right format, used by every test client.
pub(crate) const API_KEY: &str = "ew_test_TESTKEYtestkey0123456789abcdefXYZ";

/// What the listener does with the n-th request (counted from 0).
#[derive(Clone, Debug)]
pub(crate) enum Reply {
    /// Answer with this status, headers and body.
    Status(u16, Vec<(&'static str, String)>, String),
    /// Read the request and never answer (a black hole).
    Silence,
    /// Read the request and reset the connection.
    Reset,
    /// Answer 202 with a body length, send the headers, and never the body.
    HeadersOnly,
    /// Wait, then do the inner reply.
    After(Duration, Box<Reply>),
}

impl Reply {
    pub(crate) fn accepted() -> Reply {
        Reply::Status(202, vec![], r#"{"success":true,"queued":true}"#.into())
    }
}

/// One request as it reached the wire.
#[derive(Clone, Debug)]
pub(crate) struct Recorded {
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Recorded {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("the SDK sends JSON")
    }
}

/// A listener on 127.0.0.1 with its own runtime; it stops when dropped.
pub(crate) struct Listener {
    pub url: String,
    requests: Arc<Mutex<Vec<Recorded>>>,
    runtime: Option<tokio::runtime::Runtime>,
}

type Behaviour = Arc<dyn Fn(usize) -> Reply + Send + Sync>;

impl Listener {
    pub(crate) fn start(behaviour: impl Fn(usize) -> Reply + Send + Sync + 'static) -> Listener {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("test runtime");
        let listener = runtime
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .expect("bind 127.0.0.1:0");
        let url = format!("http://{}", listener.local_addr().expect("local addr"));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let behaviour: Behaviour = Arc::new(behaviour);
        let recorded = requests.clone();
        runtime.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (recorded, behaviour) = (recorded.clone(), behaviour.clone());
                tokio::spawn(serve(stream, recorded, behaviour));
            }
        });
        Listener {
            url,
            requests,
            runtime: Some(runtime),
        }
    }

    /// A listener that answers 202 to everything.
    pub(crate) fn healthy() -> Listener {
        Listener::start(|_| Reply::accepted())
    }

    pub(crate) fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().expect("requests").clone()
    }

    pub(crate) fn count(&self) -> usize {
        self.requests.lock().expect("requests").len()
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

async fn serve(mut stream: TcpStream, recorded: Arc<Mutex<Vec<Recorded>>>, behaviour: Behaviour) {
    // Without it, Nagle's algorithm meets the client's delayed ACKs and every answer waits
    // ~40 ms: the listener, not the SDK, would be what the benchmark measures.
    let _ = stream.set_nodelay(true);
    let mut buffer = Vec::new();
    loop {
        let Some(request) = read_request(&mut stream, &mut buffer).await else {
            return;
        };
        let index = {
            let mut all = recorded.lock().expect("requests");
            all.push(request);
            all.len() - 1
        };
        let mut reply = behaviour(index);
        loop {
            match reply {
                Reply::After(delay, inner) => {
                    tokio::time::sleep(delay).await;
                    reply = *inner;
                }
                Reply::Silence => {
                    // Hold the connection open and never answer; the runtime's shutdown ends it.
                    std::future::pending::<()>().await;
                }
                Reply::Reset => {
                    // A zero linger makes the close an immediate RST; it never blocks.
                    #[allow(deprecated)]
                    let _ = stream.set_linger(Some(Duration::ZERO));
                    return;
                }
                Reply::HeadersOnly => {
                    let head = "HTTP/1.1 202 Accepted\r\ncontent-length: 100\r\n\r\n";
                    let _ = stream.write_all(head.as_bytes()).await;
                    std::future::pending::<()>().await;
                }
                Reply::Status(status, headers, body) => {
                    let mut head = format!(
                        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
                        body.len()
                    );
                    for (name, value) in headers {
                        head.push_str(&format!("{name}: {value}\r\n"));
                    }
                    head.push_str("\r\n");
                    head.push_str(&body);
                    if stream.write_all(head.as_bytes()).await.is_err() {
                        return;
                    }
                    break;
                }
            }
        }
    }
}

async fn read_request(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<Recorded> {
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(pos) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos + 4;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let path = lines.next()?.split(' ').nth(1)?.to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.parse().ok())
        .unwrap_or(0);
    while buffer.len() < head_end + length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
    let body = buffer[head_end..head_end + length].to_vec();
    buffer.drain(..head_end + length);
    Some(Recorded {
        path,
        headers,
        body,
    })
}

/// A URL where nothing listens: a port bound and released at once.
pub(crate) fn dead_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

/// Options for a test client of `url`: fast retries so tests finish quickly.
pub(crate) fn options(url: &str) -> Options {
    Options::new(url, API_KEY)
        .retry_base_delay(Duration::from_millis(10))
        .capture_panics(false)
}

/// Polls `condition` until it holds or `limit` passes; returns whether it held.
pub(crate) fn wait_for(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// Every captured event has exactly one outcome once the client is idle or closed.
pub(crate) fn assert_accounted(stats: &Stats) {
    assert_eq!(
        stats.captured,
        stats.sent + stats.dropped() + stats.failed + stats.lost_at_shutdown,
        "every captured event is sent, dropped, failed or lost: {stats:?}"
    );
}

/// Runs `f` and returns how long it took.
pub(crate) fn timed<R>(f: impl FnOnce() -> R) -> (R, Duration) {
    let started = Instant::now();
    let result = f();
    (result, started.elapsed())
}

/// A client whose transport is started, for `url`.
pub(crate) fn client(options: Options) -> Client {
    let client = Client::new(options).expect("valid test options");
    assert!(client.is_enabled());
    client
}

/// A figure of this process's `/proc/self/status` (`VmHWM:`, `RssAnon:`...), in KiB.
pub(crate) fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|kib| kib.split_whitespace().next()?.parse().ok())
}
