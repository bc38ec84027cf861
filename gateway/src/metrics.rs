//! Metric names live here, in one place, and the Prometheus recorder is installed once.

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;

/// Exchanges by force, kind and outcome (`accepted`, `duplicate`, `rejected`, `delivered`,
/// `parked`).
pub const EXCHANGES_TOTAL: &str = "gateway_exchanges_total";
/// Delivery attempts by force, target, outcome (`delivered`, `retry`, `parked`) and error class.
pub const ATTEMPTS_TOTAL: &str = "gateway_delivery_attempts_total";
/// Exchanges currently parked (from the journal).
pub const PARKED: &str = "gateway_exchanges_parked";
/// Exchanges currently pending (from the journal).
pub const PENDING: &str = "gateway_exchanges_pending";
/// Request latency by method, route and status.
pub const REQUEST_SECONDS: &str = "gateway_http_request_duration_seconds";
/// Adapter errors by adapter and class.
pub const ADAPTER_ERRORS: &str = "adapter_errors_total";
/// Circuit breaker state by force and target: 0 closed, 1 half-open, 2 open.
pub const BREAKER_STATE: &str = "gateway_breaker_state";
/// Exchanges claimed but put back uncharged because their target's breaker refused them, by
/// force and target.
pub const DEFERRED_TOTAL: &str = "gateway_delivery_deferred_total";
/// Journal write failures by operation.
pub const JOURNAL_ERRORS: &str = "gateway_journal_errors_total";
/// NMPP events journalled by change detection, by force and event type.
pub const EVENTS_DETECTED: &str = "gateway_events_detected_total";
/// Change-detection polls that failed, by force.
pub const DETECT_ERRORS: &str = "gateway_detect_errors_total";
/// Configuration reloads by outcome (`applied`, `rejected`).
pub const CONFIG_RELOADS: &str = "gateway_config_reloads_total";
/// Children created by bulk replay jobs on this node.
pub const REPLAYED_TOTAL: &str = "gateway_bulk_replayed_total";

/// Audit sinks: the highest sequence number durably delivered, by sink.
pub const AUDIT_SINK_DELIVERED_THROUGH: &str = "audit_sink_delivered_through";
/// Audit sinks: the highest sequence number read from the ledger, by sink.
pub const AUDIT_SINK_READ_THROUGH: &str = "audit_sink_read_through";
/// Audit sinks: records quarantined since start, by sink.
pub const AUDIT_SINK_QUARANTINED: &str = "audit_sink_quarantined";
/// Audit sinks: 1 while the sink's driver is running (not halted or retrying), by sink.
pub const AUDIT_SINK_UP: &str = "audit_sink_up";

/// The process-wide Prometheus handle (installed on first use).
pub fn handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full(REQUEST_SECONDS.into()),
                    &[
                        0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                        5.0, 10.0,
                    ],
                )
                .expect("bucket list is not empty");
            match builder.install_recorder() {
                Ok(h) => {
                    describe();
                    h
                }
                // Another recorder is already installed (only in odd test setups): keep a
                // private one so /metrics still answers.
                Err(_) => PrometheusBuilder::new().build_recorder().handle(),
            }
        })
        .clone()
}

fn describe() {
    metrics::describe_counter!(EXCHANGES_TOTAL, "Exchanges by force, kind and outcome");
    metrics::describe_counter!(
        ATTEMPTS_TOTAL,
        "Delivery attempts by force, target, outcome, class"
    );
    metrics::describe_gauge!(PARKED, "Exchanges parked, waiting for an operator");
    metrics::describe_gauge!(PENDING, "Exchanges waiting for delivery");
    metrics::describe_histogram!(
        REQUEST_SECONDS,
        metrics::Unit::Seconds,
        "HTTP request latency"
    );
    metrics::describe_counter!(ADAPTER_ERRORS, "Adapter errors by adapter and class");
    metrics::describe_counter!(JOURNAL_ERRORS, "Journal failures by operation");
    metrics::describe_counter!(
        DEFERRED_TOTAL,
        "Claimed exchanges put back uncharged by a circuit breaker, by force and target"
    );
    metrics::describe_gauge!(
        BREAKER_STATE,
        "Circuit breaker per force and target: 0 closed, 1 half-open, 2 open"
    );
    metrics::describe_counter!(
        REPLAYED_TOTAL,
        "Replays created by bulk replay jobs on this node"
    );
}
