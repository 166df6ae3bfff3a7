//! Real networks: a server whose certificate comes from a private CA, and proxies, by option
//! and by the standard environment variables.

mod support;

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use errorwatch_sdk::{Level, Options, OptionsError};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A private CA and a certificate it signed for 127.0.0.1 and localhost.
struct PrivateCa {
    ca_pem: String,
    server_chain: Vec<CertificateDer<'static>>,
    server_key: PrivateKeyDer<'static>,
}

fn private_ca() -> PrivateCa {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "ErrorWatch test CA");
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let ca = ca_params.self_signed(&ca_key).expect("CA certificate");
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
    params
        .subject_alt_names
        .push(rcgen::SanType::IpAddress([127, 0, 0, 1].into()));
    let key = rcgen::KeyPair::generate().expect("key");
    let certificate = params.signed_by(&key, &ca, &ca_key).expect("certificate");
    PrivateCa {
        ca_pem: ca.pem(),
        server_chain: vec![certificate.der().clone()],
        server_key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    }
}

/// An HTTPS server on 127.0.0.1 that answers 202 to every request it can read, counting them.
struct TlsServer {
    url: String,
    requests: Arc<AtomicUsize>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl TlsServer {
    fn start(ca: &PrivateCa) -> TlsServer {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocols")
            .with_no_client_auth()
            .with_single_cert(ca.server_chain.clone(), ca.server_key.clone_key())
            .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let url = format!("https://{}", listener.local_addr().expect("addr"));
        let requests = Arc::new(AtomicUsize::new(0));
        let counted = requests.clone();
        runtime.spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (acceptor, counted) = (acceptor.clone(), counted.clone());
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    let mut seen = Vec::new();
                    let mut buf = [0u8; 8192];
                    // Read the head and the body its Content-Length announces.
                    loop {
                        let Ok(n) = tls.read(&mut buf).await else { return };
                        if n == 0 {
                            return;
                        }
                        seen.extend_from_slice(&buf[..n]);
                        let text = String::from_utf8_lossy(&seen).to_string();
                        if let Some(end) = text.find("\r\n\r\n") {
                            let length = text[..end]
                                .lines()
                                .find_map(|l| {
                                    l.to_ascii_lowercase()
                                        .strip_prefix("content-length:")
                                        .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                                })
                                .unwrap_or(0);
                            if seen.len() >= end + 4 + length {
                                break;
                            }
                        }
                    }
                    counted.fetch_add(1, Ordering::Relaxed);
                    let body = r#"{"success":true,"queued":true}"#;
                    let answer = format!(
                        "HTTP/1.1 202 Accepted\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = tls.write_all(answer.as_bytes()).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        TlsServer {
            url,
            requests,
            runtime: Some(runtime),
        }
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

#[test]
fn a_private_ca_is_trusted_only_when_given() {
    let ca = private_ca();
    let server = TlsServer::start(&ca);

    // The built-in roots do not know this CA: nothing gets through, and it is counted.
    let untrusting = client(options(&server.url).max_retries(0));
    untrusting.capture_message("not trusted", Level::Error);
    assert!(untrusting.flush(Duration::from_secs(10)));
    assert_eq!(untrusting.stats().failed, 1, "{:?}", untrusting.stats());
    assert_eq!(server.requests.load(Ordering::Relaxed), 0);

    // Given the CA, the same server is trusted.
    let trusting = client(options(&server.url).ca_certificate(ca.ca_pem.clone()));
    trusting.capture_message("trusted", Level::Error);
    assert!(trusting.flush(Duration::from_secs(10)));
    assert_eq!(trusting.stats().sent, 1, "{:?}", trusting.stats());
    assert_eq!(server.requests.load(Ordering::Relaxed), 1);
}

#[test]
fn the_ca_file_variable_is_read_and_a_bad_one_is_named() {
    let ca = private_ca();
    let dir = std::env::temp_dir().join(format!("ew-ca-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let good = dir.join("ca.pem");
    std::fs::write(&good, &ca.ca_pem).expect("write");
    let bad = dir.join("bad.pem");
    std::fs::write(&bad, "not a certificate").expect("write");
    let lookup = |file: &std::path::Path| {
        let file = file.display().to_string();
        Options::from_lookup(move |name| match name {
            "ERRORWATCH_API_URL" => Some("https://127.0.0.1:1".into()),
            "ERRORWATCH_API_KEY" => Some(API_KEY.into()),
            "ERRORWATCH_CA_FILE" => Some(file.clone()),
            _ => None,
        })
    };
    assert!(lookup(&good).is_ok());
    for file in [bad.clone(), dir.join("missing.pem")] {
        let error = lookup(&file).expect_err("a bad CA file");
        assert!(
            matches!(error, OptionsError::InvalidCertificate { source_name, .. } if source_name == "ERRORWATCH_CA_FILE"),
            "{error}"
        );
        assert!(error.to_string().contains("ERRORWATCH_CA_FILE"), "{error}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_proxy_option_carries_every_event() {
    let proxy = Listener::healthy();
    let target = dead_url();
    let client = client(options(&target).proxy(proxy.url.clone()));
    client.capture_message("through the proxy", Level::Error);
    assert!(client.flush(Duration::from_secs(10)));
    assert_eq!(client.stats().sent, 1, "{:?}", client.stats());
    let requests = proxy.requests();
    assert_eq!(requests.len(), 1);
    // A forward proxy is asked for the absolute URL.
    assert_eq!(requests[0].path, format!("{target}/api/v1/event"));
    assert_eq!(requests[0].header("x-api-key"), Some(API_KEY));
    assert!(matches!(
        Options::new(&target, API_KEY)
            .proxy("::not a url")
            .validate(),
        Err(OptionsError::InvalidUrl {
            source_name: "proxy",
            ..
        })
    ));
}

const CHILD_TARGET: &str = "ERRORWATCH_TEST_PROXY_TARGET";

/// In a child process (the variables are process-wide): `HTTP_PROXY` is honoured, and
/// `NO_PROXY` exempts the server from it.
#[test]
fn the_standard_proxy_variables_are_honoured() {
    if let Ok(target) = std::env::var(CHILD_TARGET) {
        let client = client(options(&target).max_retries(0));
        client.capture_message("from the child", Level::Error);
        assert!(client.flush(Duration::from_secs(10)));
        return;
    }
    let proxy = Listener::healthy();
    let target = dead_url();
    let run = |no_proxy: &str| {
        let status = Command::new(std::env::current_exe().expect("test binary"))
            .args(["--exact", "the_standard_proxy_variables_are_honoured"])
            .env(CHILD_TARGET, &target)
            .env("HTTP_PROXY", &proxy.url)
            .env("NO_PROXY", no_proxy)
            .env_remove("http_proxy")
            .env_remove("no_proxy")
            .status()
            .expect("child runs");
        assert!(status.success());
    };
    run("");
    assert_eq!(proxy.count(), 1, "HTTP_PROXY carried the event");
    run("127.0.0.1");
    assert_eq!(proxy.count(), 1, "NO_PROXY sent it directly");
}
