//! Delivering one event over HTTP: retries, backoff, and what each answer means.

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

pub(crate) struct HttpSender {
    client: reqwest::Client,
    endpoint: String,
    api_key: HeaderValue,
    max_retries: u32,
    retry_base_delay: Duration,
    pub(crate) rate_limit: RateLimit,
    pub(crate) breaker: CircuitBreaker,
}

impl HttpSender {
    pub(crate) fn new(options: &Options) -> Result<HttpSender, String> {
        let endpoint = options
            .event_endpoint()
            .ok_or_else(|| "no usable API URL".to_owned())?;
        let mut api_key = HeaderValue::from_str(options.api_key.as_deref().unwrap_or_default())
            .map_err(|_| "the API key cannot be sent as a header".to_owned())?;
        api_key.set_sensitive(true);
        let client = reqwest::Client::builder()
            .connect_timeout(options.connect_timeout)
            .timeout(options.request_timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| format!("the HTTP client could not be built: {e}"))?;
        Ok(HttpSender {
            client,
            endpoint,
            api_key,
            max_retries: options.max_retries,
            retry_base_delay: options.retry_base_delay,
            rate_limit: RateLimit::new(options.rate_limit_default),
            breaker: CircuitBreaker::new(
                options.circuit_breaker_threshold,
                options.circuit_breaker_open_for,
            ),
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
            let failure = match self.attempt(reqwest::Body::from(body.clone())).await {
                Ok(response) => {
                    let status = response.status();
                    if status.is_success() {
                        self.breaker.on_success();
                        // Reading the (tiny) answer lets the connection be reused.
                        let _ = response.bytes().await;
                        return Outcome::Sent;
                    }
                    if status == StatusCode::TOO_MANY_REQUESTS {
                        self.breaker.on_success();
                        let retry_after = response
                            .headers()
                            .get(RETRY_AFTER)
                            .and_then(|value| value.to_str().ok());
                        let backoff = self
                            .rate_limit
                            .on_too_many_requests(retry_after, Instant::now());
                        diagnostics.log(format_args!(
                            "rate limited by the server (429); pausing for {backoff:?}"
                        ));
                        return Outcome::RateLimited;
                    }
                    if !status.is_server_error() {
                        self.breaker.on_success();
                        let reason = response.text().await.unwrap_or_default();
                        diagnostics.log(format_args!(
                            "the server refused an event ({status}): {}; not retried",
                            reason.chars().take(300).collect::<String>()
                        ));
                        return Outcome::Rejected;
                    }
                    format!("the server answered {status}")
                }
                Err(error) => describe(&error),
            };
            if attempt >= self.max_retries {
                if self.breaker.on_failure(Instant::now()) {
                    diagnostics.log(format_args!(
                        "{failure}; giving up after {} attempts, and pausing delivery",
                        attempt + 1
                    ));
                } else {
                    diagnostics.log(format_args!(
                        "{failure}; giving up after {} attempts",
                        attempt + 1
                    ));
                }
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

    async fn attempt(&self, body: reqwest::Body) -> Result<reqwest::Response, reqwest::Error> {
        self.client
            .post(&self.endpoint)
            .header("X-API-Key", self.api_key.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header(USER_AGENT, HeaderValue::from_static(crate::USER_AGENT))
            .body(body)
            .send()
            .await
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
