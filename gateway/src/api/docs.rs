//! The OpenAPI document and the interactive docs page (Scalar, served from the binary so it works
//! on a closed network).

use crate::app::{AuditNote, with_note};
use axum::{
    http::{StatusCode, header},
    response::{Html, IntoResponse, Response},
};

/// `GET /openapi/v1.json`.
pub(crate) async fn openapi_json() -> Response {
    with_note(
        (
            [(header::CONTENT_TYPE, "application/json")],
            crate::openapi::json(),
        ),
        AuditNote {
            action: "docs.read",
            ..Default::default()
        },
    )
}

/// `GET /docs`.
pub(crate) async fn docs_page() -> Response {
    let config = serde_json::json!({ "url": "/openapi/v1.json", "theme": "default" });
    with_note(
        Html(scalar_api_reference::scalar_html(
            &config,
            Some("/docs/scalar.js"),
        )),
        AuditNote {
            action: "docs.read",
            ..Default::default()
        },
    )
}

/// `GET /docs/scalar.js`.
pub(crate) async fn docs_js() -> Response {
    let res = match scalar_api_reference::get_asset_with_mime("scalar.js") {
        Some((mime, body)) => ([(header::CONTENT_TYPE, mime)], body).into_response(),
        None => (StatusCode::NOT_FOUND, "docs assets missing from this build").into_response(),
    };
    with_note(
        res,
        AuditNote {
            action: "docs.read",
            ..Default::default()
        },
    )
}
