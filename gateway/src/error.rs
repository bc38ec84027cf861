//! API errors as JSON:API `errors[]` documents, used by every endpoint.
//!
//! Each error names the field (`source.pointer`, `meta.field`) and the rule it broke, and says in
//! `meta.errorType` whether it is a `business` error (the caller's request was wrong; do not
//! retry it unchanged) or a `system` error (ours; retry later). Internal detail is logged with
//! the error id, never returned.

use axum::{
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

/// JSON:API media type.
pub const JSONAPI: &str = "application/vnd.api+json";

/// Business (caller's fault) or system (ours) error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ErrorType {
    /// The request is wrong; sending it again unchanged will fail again.
    Business,
    /// The gateway or something behind it failed; retry later.
    System,
}

/// One JSON:API error object.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorObject {
    /// Unique id of this occurrence; quote it to support (it is in the logs).
    pub id: String,
    /// HTTP status as a string.
    pub status: String,
    /// Stable machine-readable code, e.g. `validation.required`.
    pub code: String,
    /// Short summary of the kind of problem.
    pub title: String,
    /// What is wrong with this request, naming the field and the rule.
    pub detail: String,
    /// Where in the request the problem is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<ErrorSource>,
    /// Classification and context.
    pub meta: ErrorMeta,
}

/// Location of the problem in the request.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorSource {
    /// JSON Pointer into the request document.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pointer: Option<String>,
    /// Query parameter or header at fault.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameter: Option<String>,
}

/// Error classification.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorMeta {
    /// Business or system.
    pub error_type: ErrorType,
    /// The submission concerned, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub submission_id: Option<String>,
    /// The field by name (`submission.attributes.submissionId`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The rule broken (`required`, `uuid`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
}

/// A JSON:API error document.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorDocument {
    /// The errors, at least one.
    pub errors: Vec<ErrorObject>,
}

/// An API error: status, errors, and optional `Retry-After`.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// The error objects.
    pub errors: Vec<ErrorObject>,
    /// Seconds to wait before retrying (503, 429).
    pub retry_after: Option<u64>,
    /// Extra `WWW-Authenticate` challenge (401).
    pub challenge: bool,
}

impl ApiError {
    /// One error with the given status, code, title and detail.
    pub fn new(status: StatusCode, code: &str, title: &str, detail: impl Into<String>) -> Self {
        let error_type = if status.is_server_error() {
            ErrorType::System
        } else {
            ErrorType::Business
        };
        Self {
            status,
            errors: vec![ErrorObject {
                id: Uuid::now_v7().to_string(),
                status: status.as_u16().to_string(),
                code: code.into(),
                title: title.into(),
                detail: detail.into(),
                source: None,
                meta: ErrorMeta {
                    error_type,
                    submission_id: None,
                    field: None,
                    rule: None,
                },
            }],
            retry_after: None,
            challenge: false,
        }
    }

    /// Points the (single) error at a field of the request document.
    pub fn at(mut self, pointer: impl Into<String>, field: impl Into<String>, rule: &str) -> Self {
        if let Some(e) = self.errors.first_mut() {
            e.source = Some(ErrorSource {
                pointer: Some(pointer.into()),
                parameter: None,
            });
            e.meta.field = Some(field.into());
            e.meta.rule = Some(rule.into());
        }
        self
    }

    /// Names a query parameter or header at fault.
    pub fn parameter(mut self, name: impl Into<String>) -> Self {
        if let Some(e) = self.errors.first_mut() {
            e.source = Some(ErrorSource {
                pointer: None,
                parameter: Some(name.into()),
            });
        }
        self
    }

    /// Attaches the submission id to every error.
    pub fn submission(mut self, id: Option<&str>) -> Self {
        for e in &mut self.errors {
            e.meta.submission_id = id.map(str::to_owned);
        }
        self
    }

    /// 503 with `Retry-After`: the journal could not persist. Nothing was acknowledged.
    pub fn unavailable(detail: impl Into<String>, retry_after: u64) -> Self {
        let mut e = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "system.unavailable",
            "Service temporarily unavailable",
            detail,
        );
        e.retry_after = Some(retry_after);
        e
    }

    /// 401 with a challenge.
    pub fn unauthenticated(detail: &str) -> Self {
        let mut e = Self::new(
            StatusCode::UNAUTHORIZED,
            "auth.unauthenticated",
            "Authentication required",
            detail,
        );
        e.challenge = true;
        e
    }

    /// 403.
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "auth.forbidden",
            "Not allowed",
            detail,
        )
    }

    /// 404.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "Not found", detail)
    }

    /// 500 for a fault of ours; the detail is logged, not returned.
    pub fn internal(detail: &dyn std::fmt::Display) -> Self {
        let e = Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "system.internal",
            "Internal error",
            "the gateway failed; quote the error id to support",
        );
        tracing::error!(error_id = %e.errors[0].id, error = %detail, "internal error");
        e
    }

    /// The first error's code (for metrics and audit).
    pub fn code(&self) -> &str {
        self.errors.first().map_or("", |e| e.code.as_str())
    }
}

impl From<replay::JournalError> for ApiError {
    fn from(e: replay::JournalError) -> Self {
        use replay::JournalError as J;
        match e {
            J::Unavailable(detail) => {
                tracing::warn!(error = %detail, "journal unavailable");
                ApiError::unavailable(
                    "the journal cannot persist right now; nothing was stored",
                    5,
                )
            }
            J::NotFound(id) => ApiError::not_found(format!("exchange {id} not found")),
            J::Conflict(msg) => ApiError::new(StatusCode::CONFLICT, "conflict", "Conflict", msg),
            other => ApiError::internal(&other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&ErrorDocument {
            errors: self.errors,
        })
        .unwrap_or_else(|_| b"{\"errors\":[]}".to_vec());
        let mut res = (self.status, body).into_response();
        let h = res.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(JSONAPI));
        if let Some(secs) = self.retry_after {
            h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.challenge {
            h.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"nmpp-gateway\", charset=\"UTF-8\""),
            );
        }
        res
    }
}
