//! The OpenAPI document, generated from the handlers. `openapi/v1.json` in the repository must
//! equal [`json`]; a test fails on drift (`nmpp-gateway openapi > openapi/v1.json` updates it).

use utoipa::{
    Modify, OpenApi,
    openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme},
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "nmpp-gateway",
        description = "Force integration layer for My Police Portal: the iHub Standard API v1 \
            (`POST /incidents`), operations and audit endpoints, health and metrics. Errors are \
            JSON:API `errors[]` documents whose `meta.errorType` says `business` (fix the \
            request) or `system` (retry later). Every endpoint except `/health/*` needs an API \
            key and secret, in the `x-api-key` and `x-api-secret` headers (names configurable) \
            or as HTTP Basic.",
        license(name = "Apache-2.0"),
    ),
    paths(
        crate::api::incidents::post_incident,
        crate::api::ops::list_exchanges,
        crate::api::ops::get_exchange,
        crate::api::ops::replay_exchange,
        crate::api::ops::park_exchange,
        crate::api::ops::unpark_exchange,
        crate::api::ops::journal_stats,
        crate::api::jobs::create_replay_job,
        crate::api::jobs::list_replay_jobs,
        crate::api::jobs::get_replay_job,
        crate::api::jobs::cancel_replay_job,
        crate::api::jobs::resume_replay_job,
        crate::api::jobs::place_hold,
        crate::api::jobs::list_holds,
        crate::api::jobs::release_hold,
        crate::api::ops::verify_audit,
        crate::api::config::reload_config,
        crate::api::audit::export,
        crate::api::audit::checkpoints,
        crate::api::audit::audit_log,
        crate::api::audit::integration_log,
        crate::api::health::live,
        crate::api::health::ready,
        crate::api::health::metrics,
    ),
    modifiers(&Security),
    tags(
        (name = "iHub Standard API v1", description = "Called by iHub"),
        (name = "Operations", description = "For force operators"),
        (name = "Audit", description = "For auditors"),
        (name = "Health", description = "Probes and metrics"),
    )
)]
struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let c = api.components.get_or_insert_with(Default::default);
        c.add_security_scheme(
            "apiKey",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "x-api-key",
                "API key; send the secret in `x-api-secret` alongside it",
            ))),
        );
        c.add_security_scheme(
            "basic",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Basic)
                    .description(Some("API key as user name, secret as password"))
                    .build(),
            ),
        );
    }
}

/// The document.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.info.version = crate::app::API_VERSION.to_owned();
    doc
}

/// The document as pretty JSON with a trailing newline (the committed form).
pub fn json() -> String {
    let mut s = document()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
    s.push('\n');
    s
}
