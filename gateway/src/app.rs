//! The HTTP application: shared state, the router, and the request gatekeeper middleware that
//! authenticates, measures and audits every call.

use crate::{
    api,
    auth::{AuthFailure, Principal},
    config::Config,
    delivery::Pipeline,
    error::ApiError,
    metrics as m,
};
use axum::{
    Router,
    body::Body,
    extract::{ConnectInfo, MatchedPath, Request, State},
    http::{HeaderValue, Method, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{delete, get, post},
};
use replay::{AuditEvent, Journal};
use std::{net::SocketAddr, sync::Arc, time::Instant};
use time::OffsetDateTime;
use tokio::sync::Notify;
use uuid::Uuid;

/// Version of the gateway API, also sent as the `API-Version` header.
pub const API_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Everything handlers share.
#[derive(Clone)]
pub struct AppState(pub Arc<Inner>);

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// The shared state behind [`AppState`].
pub struct Inner {
    /// Effective configuration.
    pub config: Arc<Config>,
    /// The journal.
    pub journal: Arc<dyn Journal>,
    /// API clients.
    pub credentials: Arc<crate::auth::LiveCredentials>,
    /// Delivery pipeline (adapters per force).
    pub pipeline: Arc<Pipeline>,
    /// Wakes the dispatcher when new work is journalled.
    pub work_ready: Arc<Notify>,
    /// Prometheus exposition.
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
    /// Applies configuration reloads.
    pub reloader: Arc<crate::reload::Reloader>,
    /// The audit ledger: checkpoints, export, sink status.
    pub ledger: Arc<crate::ledger::AuditLedger>,
}

/// Per-request facts gathered by the gatekeeper, available to handlers as an extension.
#[derive(Debug, Clone)]
pub struct RequestCtx {
    /// Correlation id (from `X-Correlation-Id` or new).
    pub correlation_id: String,
    /// Caller address.
    pub source_ip: Option<String>,
    /// Caller user agent (truncated).
    pub user_agent: Option<String>,
}

impl RequestCtx {
    /// An audit event for `principal` doing `action`.
    pub fn audit(&self, principal: Option<&Principal>, action: &str, result: &str) -> AuditEvent {
        AuditEvent {
            time: now_millis(),
            actor: principal.map_or_else(|| "anonymous".into(), |p| p.key.clone()),
            role: principal
                .map_or("anonymous", Principal::primary_role)
                .into(),
            force: None,
            action: action.into(),
            object_type: None,
            object_id: None,
            result: result.into(),
            source_ip: self.source_ip.clone(),
            user_agent: self.user_agent.clone(),
            correlation_id: Some(self.correlation_id.clone()),
            event_uid: Uuid::now_v7(),
            detail: None,
        }
    }
}

/// The current time truncated to milliseconds (what audit records carry).
pub fn now_millis() -> OffsetDateTime {
    let t = OffsetDateTime::now_utc();
    t.replace_nanosecond(t.nanosecond() / 1_000_000 * 1_000_000)
        .unwrap_or(t)
}

/// Set on a response whose handler already wrote its audit record (in the same transaction as
/// the action), so the gatekeeper does not write a second one.
#[derive(Debug, Clone, Copy)]
pub struct Audited;

/// Set on a response to describe the action for the gatekeeper's audit record.
#[derive(Debug, Clone, Default)]
pub struct AuditNote {
    /// Action name (`exchange.view`).
    pub action: &'static str,
    /// Object type.
    pub object_type: Option<&'static str>,
    /// Object id.
    pub object_id: Option<String>,
    /// Force concerned.
    pub force: Option<String>,
    /// Small structured detail (never personal data).
    pub detail: Option<serde_json::Value>,
}

/// Builds the router over `state`.
pub fn app(state: AppState) -> Router {
    let authed = Router::new()
        // The /incidents handler enforces its own, configurable limit with a JSON:API 413; every
        // other body keeps axum's default limit (2 MB).
        .route(
            "/incidents",
            post(api::incidents::post_incident).layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .route("/v1/exchanges", get(api::ops::list_exchanges))
        .route("/v1/exchanges/{id}", get(api::ops::get_exchange))
        .route("/v1/exchanges/{id}/replay", post(api::ops::replay_exchange))
        .route("/v1/exchanges/{id}/park", post(api::ops::park_exchange))
        .route("/v1/exchanges/{id}/unpark", post(api::ops::unpark_exchange))
        .route("/v1/journal/stats", get(api::ops::journal_stats))
        .route(
            "/v1/replay-jobs",
            get(api::jobs::list_replay_jobs).post(api::jobs::create_replay_job),
        )
        .route("/v1/replay-jobs/{id}", get(api::jobs::get_replay_job))
        .route(
            "/v1/replay-jobs/{id}/cancel",
            post(api::jobs::cancel_replay_job),
        )
        .route(
            "/v1/replay-jobs/{id}/resume",
            post(api::jobs::resume_replay_job),
        )
        .route(
            "/v1/legal-holds",
            get(api::jobs::list_holds).post(api::jobs::place_hold),
        )
        .route("/v1/legal-holds/{id}", delete(api::jobs::release_hold))
        .route("/v1/audit/verify", get(api::ops::verify_audit))
        .route("/v1/config/reload", post(api::config::reload_config))
        .route("/v1/audit/export", get(api::audit::export))
        .route("/v1/audit/checkpoints", get(api::audit::checkpoints))
        .route("/v1/logs/audit", get(api::audit::audit_log))
        .route("/v1/logs/integration", get(api::audit::integration_log))
        .route("/metrics", get(api::health::metrics))
        .route("/openapi/v1.json", get(api::docs::openapi_json))
        .route("/docs", get(api::docs::docs_page))
        .route("/docs/scalar.js", get(api::docs::docs_js));
    Router::new()
        .route("/health/live", get(api::health::live))
        .route("/health/ready", get(api::health::ready))
        .merge(authed)
        .fallback(api::not_found)
        .method_not_allowed_fallback(api::method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), gatekeeper))
        .with_state(state)
}

fn header_str(req: &Request, name: header::HeaderName) -> Option<String> {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.chars().take(256).collect())
}

/// Authenticates, times, audits and labels every request.
async fn gatekeeper(State(st): State<AppState>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let correlation_id = req
        .headers()
        .get("x-correlation-id")
        .and_then(|v| v.to_str().ok())
        .filter(|s| !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(|| Uuid::now_v7().to_string(), str::to_owned);
    let ctx = RequestCtx {
        correlation_id: correlation_id.clone(),
        source_ip: req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip().to_string()),
        user_agent: header_str(&req, header::USER_AGENT),
    };
    req.extensions_mut().insert(ctx.clone());

    let public = route.starts_with("/health/");
    let limit = std::time::Duration::from_millis(st.config.http.request_timeout_ms);
    let run = |req: Request| async move {
        match tokio::time::timeout(limit, next.run(req)).await {
            Ok(res) => res,
            Err(_) => {
                ApiError::unavailable("the request took too long; retry later", 5).into_response()
            }
        }
    };
    let mut principal = None;
    let mut res = if public {
        run(req).await
    } else {
        let credentials = st.credentials.current();
        match credentials.authenticate(req.headers()) {
            Ok(p) => {
                principal = Some(p.clone());
                req.extensions_mut().insert(p);
                run(req).await
            }
            Err(failure) => {
                let presented = credentials.presented_key(req.headers());
                let mut ev = ctx.audit(None, "auth.failure", "denied");
                ev.detail = Some(serde_json::json!({
                    "route": route,
                    "method": method.as_str(),
                    "presentedKey": presented,
                    "reason": if failure == AuthFailure::Missing { "missing" } else { "invalid" },
                }));
                if let Err(e) = st.journal.audit(ev).await {
                    tracing::warn!(error = %e, "could not audit an authentication failure");
                }
                ApiError::unauthenticated(
                    "send the API key and secret in the configured headers, or as HTTP Basic",
                )
                .into_response()
            }
        }
    };

    if !public && principal.is_some() && res.extensions().get::<Audited>().is_none() {
        let note = res.extensions().get::<AuditNote>().cloned();
        let status = res.status();
        let result = if status.is_success() {
            "success"
        } else if status.as_u16() == 403 {
            "denied"
        } else {
            "failure"
        };
        let action = note.as_ref().map_or("http.request", |n| n.action);
        let mut ev = ctx.audit(principal.as_ref(), action, result);
        if let Some(n) = note {
            ev.object_type = n.object_type.map(Into::into);
            ev.object_id = n.object_id;
            ev.force = n.force;
            ev.detail = n.detail;
        }
        let detail = ev.detail.get_or_insert_with(|| serde_json::json!({}));
        if let Some(obj) = detail.as_object_mut() {
            obj.insert("status".into(), status.as_u16().into());
            obj.insert("route".into(), route.clone().into());
            obj.insert("method".into(), method.as_str().into());
        }
        if let Err(e) = st.journal.audit(ev).await {
            metrics::counter!(m::JOURNAL_ERRORS, "op" => "audit").increment(1);
            if status.is_success() {
                // Fail closed: a successful read that cannot be audited is not served.
                res = ApiError::from(e).into_response();
            } else {
                tracing::warn!(error = %e, "could not audit a failed request");
            }
        }
    }

    let h = res.headers_mut();
    h.insert("api-version", HeaderValue::from_static(API_VERSION));
    if let Ok(v) = HeaderValue::from_str(&correlation_id) {
        h.insert("x-correlation-id", v);
    }
    metrics::histogram!(m::REQUEST_SECONDS,
        "method" => method_label(&method), "route" => route, "status" => res.status().as_u16().to_string())
    .record(started.elapsed().as_secs_f64());
    res
}

fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        _ => "OTHER",
    }
}

/// Turns a body into a response carrying an [`AuditNote`].
pub fn with_note(res: impl IntoResponse, note: AuditNote) -> Response {
    let mut r = res.into_response();
    r.extensions_mut().insert(note);
    r
}

/// Empty body helper for tests.
pub fn empty() -> Body {
    Body::empty()
}
