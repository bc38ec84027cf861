//! Health and metrics.

use crate::app::AppState;
use axum::{Json, extract::State, http::StatusCode, response::IntoResponse};
use serde::Serialize;
use std::time::Duration;
use utoipa::ToSchema;

/// Liveness.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Live {
    /// Always `live`.
    status: &'static str,
}

/// The process is running. Unauthenticated.
#[utoipa::path(get, path = "/health/live", tag = "Health",
    responses((status = 200, body = Live)))]
pub(crate) async fn live() -> Json<Live> {
    Json(Live { status: "live" })
}

/// Readiness of the gateway and each dependency.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Ready {
    /// `ready` (all up), `degraded` (journal up, some adapter down: submissions are still
    /// accepted and delivered later) or `unavailable` (journal down: submissions get 503).
    status: &'static str,
    /// The journal.
    journal: Component,
    /// Each force's adapters.
    adapters: Vec<AdapterHealth>,
    /// Each audit sink (`[[audit.sinks]]`). A sink that is retrying or halted makes the gateway
    /// `degraded`: the ledger keeps every record and the sink catches up when it recovers.
    audit_sinks: Vec<SinkHealth>,
}

/// One audit sink's state.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SinkHealth {
    /// Configured sink name.
    sink: String,
    /// `up` (delivering or idle), `retrying`, `halted` (needs an operator) or `stopped`.
    status: &'static str,
    /// Error class of the last failure, when not up.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// Every audit record up to this sequence number was delivered (or quarantined).
    delivered_through: u64,
}

fn sink_health(s: adapters::sink::SinkStatus) -> SinkHealth {
    use adapters::sink::SinkState;
    let (status, error) = match &s.state {
        SinkState::Running => ("up", None),
        SinkState::Retrying { class, .. } => ("retrying", Some(class.to_string())),
        SinkState::Halted { class, .. } => ("halted", Some(class.to_string())),
        SinkState::Stopped => ("stopped", None),
    };
    SinkHealth {
        sink: s.sink,
        status,
        error,
        delivered_through: s.delivered_through,
    }
}

/// One component's state.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Component {
    /// `up` or `down`.
    status: &'static str,
    /// Error class when down.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// One adapter's state.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AdapterHealth {
    /// Force key.
    force: String,
    /// System: the records system (`athena`, `athena_dw`), the national platform (`ihub`) or
    /// command and control (`storm`).
    system: String,
    /// `up` or `down`.
    status: &'static str,
    /// Error class when down.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// This node's circuit breaker for the target: `closed` (work flows), `open` (work waits,
    /// unclaimed) or `half_open` (probing).
    #[schema(example = "closed")]
    breaker: &'static str,
}

/// Readiness: 200 while the journal can persist (even if a force system is down, because
/// submissions are still accepted and delivered later), 503 when it cannot. Unauthenticated;
/// reports states and error classes only.
#[utoipa::path(get, path = "/health/ready", tag = "Health",
    responses((status = 200, body = Ready), (status = 503, body = Ready)))]
pub(crate) async fn ready(State(st): State<AppState>) -> impl IntoResponse {
    let limit = Duration::from_secs(2);
    let journal = match tokio::time::timeout(limit, st.journal.ping()).await {
        Ok(Ok(())) => Component {
            status: "up",
            error: None,
        },
        Ok(Err(e)) => Component {
            status: "down",
            error: Some(e.to_string()),
        },
        Err(_) => Component {
            status: "down",
            error: Some("no answer within 2 s".into()),
        },
    };
    let breakers = st.pipeline.breakers();
    // Every adapter of every force: the records system, the national platform (iHub), the
    // command-and-control system and the evidence store where configured, each probed with its
    // own health call.
    macro_rules! probe {
        ($adapter:expr) => {{
            let a = $adapter;
            (
                a.name(),
                Box::pin(async move { a.health().await }) as HealthCall,
            )
        }};
    }
    let mut checks = Vec::new();
    for (force, rt) in st.pipeline.forces() {
        let mut probes = vec![probe!(rt.records.clone())];
        probes.extend(rt.national.clone().map(|a| probe!(a)));
        probes.extend(rt.command_control.clone().map(|a| probe!(a)));
        probes.extend(rt.evidence.clone().map(|a| probe!(a)));
        for (system, call) in probes {
            checks.push(adapter_health(breakers, force.clone(), system, call, limit));
        }
    }
    let adapters = futures::future::join_all(checks).await;
    let audit_sinks: Vec<SinkHealth> = st
        .ledger
        .sink_status()
        .into_iter()
        .map(sink_health)
        .collect();
    let (code, status) = if journal.status != "up" {
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
    } else if adapters
        .iter()
        .any(|a| a.status != "up" || a.breaker != "closed")
        || audit_sinks.iter().any(|s| s.status != "up")
    {
        (StatusCode::OK, "degraded")
    } else {
        (StatusCode::OK, "ready")
    };
    (
        code,
        Json(Ready {
            status,
            journal,
            adapters,
            audit_sinks,
        }),
    )
}

type HealthCall =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), adapters::AdapterError>> + Send>>;

/// Runs one adapter's health call within `limit` and reads its breaker.
async fn adapter_health(
    breakers: &crate::breaker::Breakers,
    force: String,
    system: &'static str,
    call: HealthCall,
    limit: Duration,
) -> AdapterHealth {
    let (status, error) = match tokio::time::timeout(limit, call).await {
        Ok(Ok(())) => ("up", None),
        Ok(Err(e)) => ("down", Some(e.class.to_string())),
        Err(_) => ("down", Some("timeout".into())),
    };
    let breaker = breakers.state(&force, system).as_str();
    AdapterHealth {
        force,
        system: system.into(),
        status,
        error,
        breaker,
    }
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "Health",
    responses((status = 200, description = "Prometheus text exposition", content_type = "text/plain")),
    security(("apiKey" = []), ("basic" = [])))]
pub(crate) async fn metrics(State(st): State<AppState>) -> impl IntoResponse {
    let note = crate::app::AuditNote {
        action: "metrics.read",
        ..Default::default()
    };
    crate::app::with_note(
        (
            [(
                axum::http::header::CONTENT_TYPE,
                "text/plain; version=0.0.4",
            )],
            st.metrics.render(),
        ),
        note,
    )
}
