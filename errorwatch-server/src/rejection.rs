//! The one way a request is turned away: a [`Rejection`] owns its status, its contract code,
//! its metric reason and its JSON body, and renders itself.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use errorwatch_protocol::validate::Detail;

/// Why a request was not served.
#[derive(Debug)]
pub(crate) enum Rejection {
    /// The body (declared or read) is larger than the contract allows.
    PayloadTooLarge,
    /// The body stopped before its end, or did not arrive in time.
    BodyUnreadable(&'static str),
    /// No `X-API-Key`.
    MissingApiKey,
    /// An `X-API-Key` that cannot be a key.
    InvalidApiKeyFormat,
    /// A well-formed key no project has.
    InvalidApiKey,
    /// The body broke the contract. Check-ins are answered without a `code`, as production
    /// answers them.
    Validation {
        /// What is wrong, where (at most `MAX_DETAILS`).
        details: Vec<Detail>,
        /// Whether the answer carries `"code": "VALIDATION_ERROR"`.
        with_code: bool,
    },
    /// The project's ingestion switch is off.
    IngestionDisabled,
    /// The client sent more than its rate allows; retry after this many seconds.
    RateLimited {
        /// Seconds until the window resets.
        retry_after: u64,
    },
    /// The project used its daily quota.
    QuotaExceeded {
        /// The quota.
        quota: i64,
        /// Events stored today.
        used: i64,
    },
    /// Too much is in flight (requests, queued events or body bytes): retry in a second.
    Overloaded,
    /// The store cannot write now (a full disk, a read-only or deleted file), or ingestion
    /// was stopped: retry later.
    StoreUnavailable,
    /// The admin API has no key configured.
    AdminDisabled,
    /// A missing or wrong admin key.
    AdminUnauthorized,
    /// A missing or wrong metrics token.
    MetricsUnauthorized,
    /// Nothing here by that name (`what`: "Group", "Project", or a route).
    NotFound(&'static str),
    /// A known path, another method.
    MethodNotAllowed,
    /// Anything else the HTTP layer refused, with its status and its own words.
    Http(StatusCode, String),
}

/// How long a client is asked to wait after a 503.
const RETRY_OVERLOADED_SECS: u64 = 1;
const RETRY_STORE_SECS: u64 = 5;

impl Rejection {
    /// A validation failure of one detail at the body's root.
    pub(crate) fn invalid_body(message: impl Into<String>) -> Rejection {
        Rejection::Validation {
            details: vec![Detail {
                path: String::new(),
                message: message.into(),
            }],
            with_code: true,
        }
    }

    /// A validation failure of one detail at `path`.
    pub(crate) fn invalid(path: &str, message: impl Into<String>) -> Rejection {
        Rejection::Validation {
            details: vec![Detail {
                path: path.into(),
                message: message.into(),
            }],
            with_code: true,
        }
    }

    /// The HTTP status.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Rejection::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Rejection::BodyUnreadable(_) | Rejection::Validation { .. } => StatusCode::BAD_REQUEST,
            Rejection::MissingApiKey
            | Rejection::InvalidApiKeyFormat
            | Rejection::InvalidApiKey
            | Rejection::AdminUnauthorized
            | Rejection::MetricsUnauthorized => StatusCode::UNAUTHORIZED,
            Rejection::IngestionDisabled => StatusCode::FORBIDDEN,
            Rejection::RateLimited { .. } | Rejection::QuotaExceeded { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            Rejection::Overloaded | Rejection::StoreUnavailable | Rejection::AdminDisabled => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Rejection::NotFound(_) => StatusCode::NOT_FOUND,
            Rejection::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Rejection::Http(status, _) => *status,
        }
    }

    /// The contract's `code`.
    pub(crate) fn code(&self) -> &'static str {
        match self {
            Rejection::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            Rejection::BodyUnreadable(_) | Rejection::Validation { .. } => "VALIDATION_ERROR",
            Rejection::MissingApiKey => "MISSING_API_KEY",
            Rejection::InvalidApiKeyFormat => "INVALID_API_KEY_FORMAT",
            Rejection::InvalidApiKey => "INVALID_API_KEY",
            Rejection::IngestionDisabled => "INGESTION_DISABLED",
            Rejection::RateLimited { .. } => "RATE_LIMIT_EXCEEDED",
            Rejection::QuotaExceeded { .. } => "QUOTA_EXCEEDED",
            Rejection::Overloaded | Rejection::StoreUnavailable => "SERVICE_UNAVAILABLE",
            Rejection::AdminDisabled => "ADMIN_API_DISABLED",
            Rejection::AdminUnauthorized | Rejection::MetricsUnauthorized => "UNAUTHORIZED",
            Rejection::NotFound(_) => "NOT_FOUND",
            Rejection::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            Rejection::Http(status, _) => http_code(*status),
        }
    }

    /// The `reason` label of `errorwatch_events_rejected_total`.
    pub(crate) fn metric_reason(&self) -> &'static str {
        match self {
            Rejection::PayloadTooLarge => "payload_too_large",
            Rejection::BodyUnreadable(_) | Rejection::Validation { .. } => "validation_error",
            Rejection::MissingApiKey => "missing_api_key",
            Rejection::InvalidApiKeyFormat => "invalid_api_key_format",
            Rejection::InvalidApiKey => "invalid_api_key",
            Rejection::IngestionDisabled => "ingestion_disabled",
            Rejection::RateLimited { .. } => "rate_limit_exceeded",
            Rejection::QuotaExceeded { .. } => "quota_exceeded",
            Rejection::Overloaded => "overloaded",
            Rejection::StoreUnavailable => "service_unavailable",
            Rejection::AdminDisabled
            | Rejection::AdminUnauthorized
            | Rejection::MetricsUnauthorized => "unauthorized",
            Rejection::NotFound(_) | Rejection::MethodNotAllowed | Rejection::Http(..) => {
                "bad_request"
            }
        }
    }

    fn message(&self) -> String {
        match self {
            Rejection::PayloadTooLarge => "Payload too large".into(),
            Rejection::BodyUnreadable(why) => (*why).into(),
            Rejection::MissingApiKey => "API key required".into(),
            Rejection::InvalidApiKeyFormat => "Invalid API key format".into(),
            Rejection::InvalidApiKey => "Invalid API key".into(),
            Rejection::Validation { .. } => "Invalid input".into(),
            Rejection::IngestionDisabled => "Event ingestion disabled".into(),
            Rejection::RateLimited { .. } => "Too many requests, please try again later".into(),
            Rejection::QuotaExceeded { .. } => "Quota exceeded".into(),
            Rejection::Overloaded | Rejection::StoreUnavailable => {
                "Service temporarily unavailable".into()
            }
            Rejection::AdminDisabled => "Admin API is not configured (set ADMIN_API_KEY)".into(),
            Rejection::AdminUnauthorized => "Invalid admin API key".into(),
            Rejection::MetricsUnauthorized => "Metrics require a valid token".into(),
            Rejection::NotFound(what) => format!("{what} not found"),
            Rejection::MethodNotAllowed => "Method not allowed".into(),
            Rejection::Http(_, message) => message.clone(),
        }
    }

    fn retry_after(&self) -> Option<u64> {
        match self {
            Rejection::RateLimited { retry_after } => Some(*retry_after),
            Rejection::Overloaded => Some(RETRY_OVERLOADED_SECS),
            Rejection::StoreUnavailable => Some(RETRY_STORE_SECS),
            _ => None,
        }
    }

    fn body(self) -> Value {
        let message = self.message();
        let code = self.code();
        match self {
            Rejection::Validation {
                details,
                with_code: false,
            } => json!({ "error": message, "details": details }),
            Rejection::Validation { details, .. } => {
                json!({ "error": message, "code": code, "details": details })
            }
            Rejection::BodyUnreadable(why) => json!({
                "error": "Invalid input",
                "code": code,
                "details": [{ "path": "", "message": why }],
            }),
            Rejection::RateLimited { retry_after } => {
                json!({ "error": message, "code": code, "retryAfter": retry_after })
            }
            Rejection::QuotaExceeded { quota, used } => {
                json!({ "error": message, "code": code, "quota": quota, "used": used })
            }
            _ => json!({ "error": message, "code": code }),
        }
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        let status = self.status();
        let retry_after = self.retry_after();
        let mut response = (status, Json(self.body())).into_response();
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// A code for a status only the HTTP layer gives.
fn http_code(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "BAD_REQUEST",
        StatusCode::NOT_FOUND => "NOT_FOUND",
        StatusCode::METHOD_NOT_ALLOWED => "METHOD_NOT_ALLOWED",
        StatusCode::PAYLOAD_TOO_LARGE => "PAYLOAD_TOO_LARGE",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "UNSUPPORTED_MEDIA_TYPE",
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => "HEADERS_TOO_LARGE",
        StatusCode::REQUEST_TIMEOUT => "REQUEST_TIMEOUT",
        s if s.is_server_error() => "INTERNAL_ERROR",
        _ => "BAD_REQUEST",
    }
}

/// Whether `response` is an error answer that is not already the contract's JSON (an
/// extractor's plain-text rejection, a bare 405): [`as_json`] rewrites those.
pub(crate) fn is_plain_error(response: &Response) -> bool {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return false;
    }
    let is_json_or_page = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json") || v.starts_with("text/html"));
    // A page's error is a page already.
    !is_json_or_page
}

/// A plain-text error answer (see [`is_plain_error`]) as the contract's JSON, keeping its
/// status and words.
pub(crate) async fn as_json(response: Response) -> Response {
    let status = response.status();
    let retry_after = response.headers().get(header::RETRY_AFTER).cloned();
    // Such bodies are short texts axum wrote; never read more than a few KiB of one.
    let text = match axum::body::to_bytes(response.into_body(), 4096).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).trim().to_owned(),
        Err(_) => String::new(),
    };
    let text = if text.is_empty() {
        status.canonical_reason().unwrap_or("Error").to_owned()
    } else {
        text
    };
    let rejection = if status == StatusCode::METHOD_NOT_ALLOWED {
        Rejection::MethodNotAllowed
    } else {
        Rejection::Http(status, text)
    };
    let mut response = rejection.into_response();
    if let Some(value) = retry_after {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}
