//! `POST /v1/config/reload`: re-read the configuration and apply it without a restart
//! (the same as sending the process SIGHUP).

use crate::{
    app::{AppState, AuditNote, with_note},
    auth::Principal,
    config::Role,
    error::{ApiError, JSONAPI},
    reload::{ReloadError, ReloadReport},
};
use axum::{
    Extension,
    extract::State,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;
use utoipa::ToSchema;

/// The reload applied.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ReloadDocument {
    data: ReloadResource,
}

/// One reload.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ReloadResource {
    /// Always `configReload`.
    #[serde(rename = "type")]
    kind: &'static str,
    /// Id of this reload (also in the audit record).
    id: String,
    attributes: ReloadAttributes,
}

/// What the reload changed.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ReloadAttributes {
    /// Forces now configured.
    forces: Vec<String>,
    /// Forces whose records system changed kind (`kent: athena_dw → athena`).
    records_swapped: Vec<String>,
    /// Forces running change detection.
    detecting: Vec<String>,
    /// Whether the API clients (`auth`) changed and now apply.
    auth_reloaded: bool,
    /// Sections that changed but take effect only after a restart.
    restart_needed: Vec<String>,
    /// The log filter now in force, when `log.level` changed and was applied at once.
    #[serde(skip_serializing_if = "Option::is_none")]
    log_level: Option<String>,
    /// Whether the mapping versions pinned under `[mappings] current` changed and now apply to
    /// fresh deliveries.
    mappings_reloaded: bool,
    /// Whether `delivery` changed and now applies (the dispatcher restarted with it once the
    /// previous one had finished the attempts it started).
    delivery_reloaded: bool,
}

/// Re-reads the configuration file and applies `forces.*`, `auth`, `mappings`, `delivery` and `log.level` without a restart:
/// adapters are rebuilt, change detection restarts (a records system that changed kind hands
/// its position over), API clients are replaced (added, removed, secrets rotated). An invalid configuration is refused with every problem named and the running one
/// stays. Role `operator`.
#[utoipa::path(post, path = "/v1/config/reload", tag = "Operations",
    responses(
        (status = 200, description = "Applied", body = ReloadDocument,
            content_type = "application/vnd.api+json"),
        (status = 403, body = crate::error::ErrorDocument),
        (status = 409, description = "Started without a configuration file", body = crate::error::ErrorDocument),
        (status = 422, description = "Rejected: one error per problem; the running configuration stays",
            body = crate::error::ErrorDocument)),
    security(("apiKey" = []), ("basic" = [])))]
pub(crate) async fn reload_config(
    State(st): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<Response, ApiError> {
    if !principal.has(Role::Operator) {
        return Err(ApiError::forbidden("this needs the role: operator"));
    }
    let id = uuid::Uuid::now_v7().to_string();
    match st.reloader.reload().await {
        Ok(ReloadReport {
            forces,
            records_swapped,
            detecting,
            auth_reloaded,
            restart_needed,
            log_level,
            mappings_reloaded,
            delivery_reloaded,
        }) => {
            let detail = serde_json::json!({
                "reload": id,
                "recordsSwapped": records_swapped,
                "authReloaded": auth_reloaded,
                "restartNeeded": restart_needed,
                "logLevel": log_level,
                "mappingsReloaded": mappings_reloaded,
                "deliveryReloaded": delivery_reloaded,
            });
            let doc = ReloadDocument {
                data: ReloadResource {
                    kind: "configReload",
                    id,
                    attributes: ReloadAttributes {
                        forces,
                        records_swapped,
                        detecting,
                        auth_reloaded,
                        restart_needed,
                        log_level,
                        mappings_reloaded,
                        delivery_reloaded,
                    },
                },
            };
            let bytes = serde_json::to_vec(&doc).map_err(|e| ApiError::internal(&e))?;
            let mut res = (StatusCode::OK, bytes).into_response();
            res.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(JSONAPI));
            Ok(with_note(
                res,
                AuditNote {
                    action: "config.reload",
                    object_type: Some("configuration"),
                    object_id: None,
                    force: None,
                    detail: Some(detail),
                },
            ))
        }
        Err(ReloadError::NoSource) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "config.no_source",
            "Nothing to reload",
            ReloadError::NoSource.to_string(),
        )),
        Err(ReloadError::Invalid(problems)) => {
            let mut err = ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "config.invalid",
                "Configuration rejected",
                String::new(),
            );
            let template = err.errors[0].clone();
            err.errors = problems
                .iter()
                .map(|p| {
                    let mut e = template.clone();
                    e.id = uuid::Uuid::now_v7().to_string();
                    e.detail = format!("{p} (the running configuration stays)");
                    e.meta.field = p.split(':').next().map(str::to_owned);
                    e
                })
                .collect();
            Err(err)
        }
    }
}
