//! Delivering one event over HTTP: retries, backoff, and what each answer means.

use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use reqwest::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER, USER_AGENT};
use reqwest::StatusCode;

use super::circuit_breaker::CircuitBreaker;
use super::rate_limit::RateLimit;
use crate::diagnostics::Diagnostics;
use crate::options::Options;
use crate::stats::{Counters, Outcome};

/// The longest pause between two attempts.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(5);
/// How much of an answer's body is kept (for diagnostics); the rest is read and discarded.
const MAX_ANSWER_BYTES: usize = 4096;
/// Redirects followed within the server's own origin (a path moved behind a proxy).
const MAX_REDIRECTS: usize = 3;

/// What the server answered.
struct Answer {
    status: StatusCode,
    retry_after: Option<String>,
    body: String,
}

pub(crate) struct HttpSender {
    client: reqwest::Client,
    /// Parsed once: a URL given as text is parsed again (host name checks included) for every
    /// request.
    endpoint: reqwest::Url,
    api_key: HeaderValue,
    max_retries: u32,
    retry_base_delay: Duration,
    request_timeout: Duration,
    pub(crate) rate_limit: RateLimit,
    pub(crate) breaker: CircuitBreaker,
    /// Whether the operator was told the key is refused, or the server redirects elsewhere.
    said_key_refused: AtomicBool,
    said_redirected: AtomicBool,
}

impl HttpSender {
    pub(crate) fn new(options: &Options) -> Result<HttpSender, String> {
        let endpoint = options
            .event_endpoint()
            .and_then(|endpoint| reqwest::Url::parse(&endpoint).ok())
            .ok_or_else(|| "no usable API URL".to_owned())?;
        let mut api_key = HeaderValue::from_str(options.api_key.as_deref().unwrap_or_default())
            .map_err(|_| "the API key cannot be sent as a header".to_owned())?;
        api_key.set_sensitive(true);
        let mut builder = reqwest::Client::builder();
        for pem in &options.ca_certificates {
            builder = add_certificates(builder, pem)?;
        }
        if let Some(proxy) = &options.proxy {
            let proxy = reqwest::Proxy::all(proxy.as_str())
                .map_err(|e| format!("the proxy cannot be used: {e}"))?;
            builder = builder.proxy(proxy);
        }
        let client = builder
            .connect_timeout(options.connect_timeout)
            // The request timeout is applied around each whole attempt, answer included, in
            // `attempt`: one place for that rule.
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(30))
            // The key travels in `X-API-Key`, which reqwest's default policy would carry to
            // whatever host a redirect names: only the server's own origin is followed.
            .redirect(reqwest::redirect::Policy::custom(|attempt| {
                let within_origin = attempt
                    .previous()
                    .first()
                    .is_some_and(|first| same_origin(first, attempt.url()));
                if within_origin && attempt.previous().len() <= MAX_REDIRECTS {
                    attempt.follow()
                } else {
                    attempt.stop()
                }
            }))
            .build()
            .map_err(|e| format!("the HTTP client could not be built: {e}"))?;
        Ok(HttpSender {
            client,
            endpoint,
            api_key,
            max_retries: options.max_retries,
            retry_base_delay: options.retry_base_delay,
            request_timeout: options.request_timeout,
            rate_limit: RateLimit::new(options.rate_limit_default),
            breaker: CircuitBreaker::new(
                options.circuit_breaker_threshold,
                options.circuit_breaker_open_for,
            ),
            said_key_refused: AtomicBool::new(false),
            said_redirected: AtomicBool::new(false),
        })
    }

    /// Sends one body, retrying network errors and 5xx, and says how it ended.
    pub(crate) async fn deliver(
        &self,
        body: Vec<u8>,
        counters: &Counters,
        diagnostics: &Diagnostics,
    ) -> Outcome {
        let body = bytes::Bytes::from(body);
        let mut attempt = 0;
        loop {
            let failure = match self.attempt(body.clone()).await {
                Ok(answer) if answer.status.is_success() => {
                    self.breaker.on_success();
                    return Outcome::Sent;
                }
                Ok(answer) if answer.status == StatusCode::TOO_MANY_REQUESTS => {
                    self.breaker.on_success();
                    let backoff = self
                        .rate_limit
                        .on_too_many_requests(answer.retry_after.as_deref(), Instant::now());
                    diagnostics.log(format_args!(
                        "rate limited by the server (429); pausing for {backoff:?}"
                    ));
                    return Outcome::RateLimited;
                }
                Ok(answer)
                    if matches!(
                        answer.status,
                        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
                    ) =>
                {
                    self.breaker.on_success();
                    diagnostics.warn_once(
                        &self.said_key_refused,
                        format_args!(
                            "the server refused the API key ({}): events are dropped until \
                             ERRORWATCH_API_KEY holds a key of this server",
                            answer.status
                        ),
                    );
                    return Outcome::Rejected;
                }
                Ok(answer) if answer.status.is_redirection() => {
                    self.breaker.on_success();
                    diagnostics.warn_once(
                        &self.said_redirected,
                        format_args!(
                            "the server redirects events to another address ({}), where the \
                             API key is not sent: point ERRORWATCH_API_URL at the server itself",
                            answer.status
                        ),
                    );
                    return Outcome::Rejected;
                }
                Ok(answer) if !answer.status.is_server_error() => {
                    self.breaker.on_success();
                    diagnostics.log(format_args!(
                        "the server refused an event ({}): {}; not retried",
                        answer.status,
                        answer.body.chars().take(300).collect::<String>()
                    ));
                    return Outcome::Rejected;
                }
                Ok(answer) => format!("the server answered {}", answer.status),
                Err(failure) => failure,
            };
            if attempt >= self.max_retries {
                let opened = self.breaker.on_failure(Instant::now());
                diagnostics.log(format_args!(
                    "{failure}; giving up after {} attempts{}",
                    attempt + 1,
                    if opened { ", and pausing delivery" } else { "" }
                ));
                return Outcome::Failed;
            }
            attempt += 1;
            tokio::time::sleep(self.retry_delay(attempt)).await;
            if self.rate_limit.is_limited(Instant::now()) {
                return Outcome::RateLimited;
            }
            counters.retried();
        }
    }

    /// One request, answer included, within the request timeout.
    ///
    /// The answer's body is read too (so the connection can be reused), and that read is
    /// bounded by the same deadline: a server that sends its headers and then stalls must not
    /// hold a request slot forever.
    async fn attempt(&self, body: bytes::Bytes) -> Result<Answer, String> {
        let exchange = async {
            let mut response = self
                .client
                .post(self.endpoint.clone())
                .header("X-API-Key", self.api_key.clone())
                .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
                .header(USER_AGENT, HeaderValue::from_static(crate::USER_AGENT))
                .body(body)
                .send()
                .await
                .map_err(|error| describe(&error))?;
            let status = response.status();
            let retry_after = response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned);
            let mut text = Vec::new();
            while let Some(chunk) = response.chunk().await.map_err(|error| describe(&error))? {
                if text.len() < MAX_ANSWER_BYTES {
                    text.extend_from_slice(
                        &chunk[..chunk.len().min(MAX_ANSWER_BYTES - text.len())],
                    );
                }
            }
            Ok(Answer {
                status,
                retry_after,
                body: String::from_utf8_lossy(&text).into_owned(),
            })
        };
        match tokio::time::timeout(self.request_timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(format!(
                "sending an event timed out after {:?}",
                self.request_timeout
            )),
        }
    }

    /// `min(base * 2^(n-1), 5 s)`, plus up to half of it again as jitter.
    fn retry_delay(&self, attempt: u32) -> Duration {
        let exponential = self
            .retry_base_delay
            .saturating_mul(1 << (attempt - 1).min(16))
            .min(MAX_RETRY_DELAY);
        exponential + exponential.mul_f64(fastrand::f64() * 0.5)
    }
}

/// Whether any TLS stack is compiled in.
const TLS: bool = cfg!(any(
    feature = "rustls",
    feature = "rustls-native-roots",
    feature = "native-tls"
));

/// Whether `pem` holds at least one usable certificate: `Err` says why not.
pub(crate) fn check_certificate(pem: &[u8]) -> Result<(), String> {
    if !TLS {
        return Err("no TLS feature is enabled (rustls, rustls-native-roots or native-tls)".into());
    }
    add_certificates(reqwest::Client::builder(), pem).map(|_| ())
}

#[cfg(any(
    feature = "rustls",
    feature = "rustls-native-roots",
    feature = "native-tls"
))]
fn add_certificates(
    mut builder: reqwest::ClientBuilder,
    pem: &[u8],
) -> Result<reqwest::ClientBuilder, String> {
    let certificates = reqwest::Certificate::from_pem_bundle(pem).map_err(|e| e.to_string())?;
    if certificates.is_empty() {
        return Err("it holds no PEM certificate".into());
    }
    for certificate in certificates {
        builder = builder.add_root_certificate(certificate);
    }
    Ok(builder)
}

#[cfg(not(any(
    feature = "rustls",
    feature = "rustls-native-roots",
    feature = "native-tls"
)))]
fn add_certificates(_: reqwest::ClientBuilder, _: &[u8]) -> Result<reqwest::ClientBuilder, String> {
    Err("no TLS feature is enabled (rustls, rustls-native-roots or native-tls)".into())
}

/// Whether two URLs share scheme, host and port: where the key may go.
fn same_origin(a: &reqwest::Url, b: &reqwest::Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// What went wrong, without the URL's credentials or anything the request carried.
fn describe(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else {
        "failed"
    };
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(error);
    let mut innermost = None;
    while let Some(cause) = source {
        innermost = Some(cause.to_string());
        source = cause.source();
    }
    match innermost {
        Some(cause) => format!("sending an event {kind}: {cause}"),
        None => format!("sending an event {kind}"),
    }
}
