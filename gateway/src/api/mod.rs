//! HTTP handlers, one module per area.

pub mod audit;
pub mod config;
pub mod docs;
pub mod health;
pub mod incidents;
pub mod jobs;
pub mod ops;

use crate::error::ApiError;
use axum::http::{Method, StatusCode, Uri};

/// Unknown path.
pub(crate) async fn not_found(uri: Uri) -> ApiError {
    ApiError::not_found(format!("no endpoint at {}", uri.path()))
}

/// Known path, wrong method.
pub(crate) async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "Method not allowed",
        format!("{method} is not allowed on {}", uri.path()),
    )
}
