//! Adapter errors, classified as data (STYLE.md §7).

use std::time::Duration;

/// Where a failure came from and what kind it is. Retry and parking decisions use only this.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// Could not open a connection (refused, unreachable, DNS). Retryable.
    Connect,
    /// No complete answer within the configured time. Retryable; the outcome is unknown, so the
    /// retry must carry the same idempotency key.
    Timeout,
    /// The target answered 5xx. Retryable.
    Upstream5xx,
    /// The target asked us to slow down (429, or 503 with `Retry-After`). Retryable.
    Throttled,
    /// The target rejected the request as invalid (4xx other than 408/429). Not retryable:
    /// sending the same bytes again cannot succeed.
    Rejected,
    /// The target refused our credentials (401/403). Not retryable until configuration changes.
    Unauthorized,
    /// The target's answer could not be understood (malformed XML, missing fields). Retryable:
    /// usually a transient fault of the target, and delivery is idempotent.
    Protocol,
    /// Our payload could not be mapped to the target's format (unknown code, missing required
    /// field). Not retryable until the mapping or data changes.
    Mapping,
    /// A fault in the gateway itself (bad configuration, bug). Not retryable.
    Internal,
}

impl ErrorClass {
    /// Whether another attempt with the same payload can succeed.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorClass::Connect
                | ErrorClass::Timeout
                | ErrorClass::Upstream5xx
                | ErrorClass::Throttled
                | ErrorClass::Protocol
        )
    }

    /// Stable lowercase name used in the journal, metrics and the operations API.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Connect => "connect",
            ErrorClass::Timeout => "timeout",
            ErrorClass::Upstream5xx => "upstream_5xx",
            ErrorClass::Throttled => "throttled",
            ErrorClass::Rejected => "rejected",
            ErrorClass::Unauthorized => "unauthorized",
            ErrorClass::Protocol => "protocol",
            ErrorClass::Mapping => "mapping",
            ErrorClass::Internal => "internal",
        }
    }
}

impl std::fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A classified adapter failure. `message` never contains payloads or personal data.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{class}: {message}")]
pub struct AdapterError {
    /// What kind of failure this is.
    pub class: ErrorClass,
    /// Human-readable detail for operators (no personal data).
    pub message: String,
    /// HTTP status from the target, when there was one.
    pub status: Option<u16>,
    /// How long the target asked us to wait, when it said.
    pub retry_after: Option<Duration>,
}

impl AdapterError {
    /// An error of `class` with `message`.
    pub fn new(class: ErrorClass, message: impl Into<String>) -> Self {
        Self {
            class,
            message: message.into(),
            status: None,
            retry_after: None,
        }
    }

    /// Attaches the target's HTTP status.
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }

    /// Attaches the wait the target asked for.
    pub fn with_retry_after(mut self, after: Option<Duration>) -> Self {
        self.retry_after = after;
        self
    }

    /// Whether another attempt can succeed (see [`ErrorClass::is_retryable`]).
    pub fn is_retryable(&self) -> bool {
        self.class.is_retryable()
    }
}
