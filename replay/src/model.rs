//! Journal records: exchanges, attempts, audit events, and the filters used to find them.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

/// Where an exchange is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Accepted and waiting for (another) delivery attempt.
    Pending,
    /// The target confirmed it.
    Delivered,
    /// Given up on: retries exhausted or a non-retryable failure. Waits for an operator.
    Parked,
}

impl Status {
    /// Stable lowercase name, as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Delivered => "delivered",
            Status::Parked => "parked",
        }
    }
}

impl std::str::FromStr for Status {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pending" => Ok(Status::Pending),
            "delivered" => Ok(Status::Delivered),
            "parked" => Ok(Status::Parked),
            other => Err(format!(
                "unknown status {other:?}: expected pending, delivered or parked"
            )),
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Direction of an exchange relative to the force.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Into the force's systems (e.g. a submission from iHub).
    Inbound,
    /// Out of the force's systems (e.g. a case update to iHub).
    Outbound,
}

impl Direction {
    /// Stable lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
}

/// A new exchange, as the gateway hands it to the journal before acknowledging the caller.
#[derive(Debug, Clone)]
pub struct NewExchange {
    /// Chosen by the caller (UUID v7) so the acknowledgement can name it before it is stored.
    pub id: Uuid,
    /// Force key from configuration.
    pub force: String,
    /// What kind of work this is (`incident.submitted`).
    pub kind: String,
    /// Into or out of the force.
    pub direction: Direction,
    /// Where it came from (`ihub`).
    pub source_system: String,
    /// Where it goes (`athena`).
    pub target_system: String,
    /// API the payload arrived on (`ihub-sapi/v1`).
    pub api_version: String,
    /// Canonical model version it will be mapped to (`nmpp/1`).
    pub model_version: String,
    /// The key sent downstream (the SDM `submissionId`); also the de-duplication key.
    pub idempotency_key: String,
    /// Correlation id carried end to end.
    pub correlation_id: String,
    /// Case reference, when known (customer reference number).
    pub case_ref: Option<String>,
    /// MIME type of `payload`.
    pub payload_type: String,
    /// The request body exactly as received.
    pub payload: Vec<u8>,
    /// The acknowledgement body; a duplicate submission gets these same bytes.
    pub response: Vec<u8>,
}

/// What `accept` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AcceptOutcome {
    /// Stored as a new exchange.
    Created,
    /// An exchange with the same force, kind and idempotency key already exists; nothing new was
    /// stored. Carries the earlier exchange's id and acknowledgement.
    Duplicate {
        /// The exchange stored first.
        id: Uuid,
        /// Its acknowledgement body.
        response: Vec<u8>,
        /// Whether the payload differs from the stored one byte for byte.
        payload_differs: bool,
    },
}

/// An exchange claimed for a delivery attempt.
#[derive(Debug, Clone)]
pub struct WorkItem {
    /// Exchange id.
    pub id: Uuid,
    /// Force key.
    pub force: String,
    /// Kind of work.
    pub kind: String,
    /// Target system.
    pub target_system: String,
    /// Key sent downstream.
    pub idempotency_key: String,
    /// Correlation id.
    pub correlation_id: String,
    /// Attempts already made.
    pub attempts: u32,
    /// The original payload.
    pub payload: Vec<u8>,
    /// Set for replays.
    pub parent_id: Option<Uuid>,
}

/// Outcome of one delivery attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AttemptOutcome {
    /// The target accepted it.
    Delivered,
    /// Failed; another attempt is scheduled.
    Retry,
    /// Failed; the exchange is parked.
    Parked,
}

impl AttemptOutcome {
    /// Stable lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Delivered => "delivered",
            AttemptOutcome::Retry => "retry",
            AttemptOutcome::Parked => "parked",
        }
    }
}

/// One delivery attempt, as journalled.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Attempt {
    /// 1-based attempt number within the exchange.
    pub number: u32,
    /// When the attempt started.
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    /// When it finished.
    #[serde(with = "time::serde::rfc3339")]
    pub finished_at: OffsetDateTime,
    /// What happened.
    pub outcome: AttemptOutcome,
    /// Error class (`upstream_5xx`, `rejected`, `mapping`, …) when it failed.
    pub error_class: Option<String>,
    /// Operator-facing detail (never payloads or personal data).
    pub detail: Option<String>,
    /// Target's HTTP status, when there was one.
    pub http_status: Option<u16>,
    /// Which gateway node made the attempt.
    pub node: String,
}

/// Payloads produced while preparing a delivery, kept for operators and replays.
#[derive(Debug, Clone, Default)]
pub struct Prepared {
    /// The canonical NMPP document.
    pub canonical: Option<Vec<u8>>,
    /// Exactly what was sent to the target.
    pub target_payload: Option<Vec<u8>>,
    /// `spec@version` of the mapping used.
    pub mapping_version: Option<String>,
}

/// The state an attempt leaves its exchange in.
#[derive(Debug, Clone)]
pub enum Transition {
    /// Done; the target's reference.
    Delivered {
        /// Target's reference for the record.
        target_ref: String,
    },
    /// Try again at this time.
    RetryAt(OffsetDateTime),
    /// Parked.
    Parked,
}

/// Summary row of an exchange.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExchangeSummary {
    /// Exchange id.
    pub id: Uuid,
    /// Force key.
    pub force: String,
    /// Kind of work.
    pub kind: String,
    /// Target system.
    pub target_system: String,
    /// Current status.
    pub status: Status,
    /// Idempotency key (the SDM submission id for submissions).
    pub submission_id: String,
    /// Case reference, when known.
    pub case_ref: Option<String>,
    /// Attempts made.
    pub attempt_count: u32,
    /// Parent exchange when this is a replay.
    pub parent_id: Option<Uuid>,
    /// When it was accepted.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Class of the last failure, if any.
    pub last_error_class: Option<String>,
    /// Target's reference once delivered.
    pub target_ref: Option<String>,
}

/// Everything the journal holds about one exchange.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExchangeDetail {
    /// Summary fields.
    #[serde(flatten)]
    pub summary: ExchangeSummary,
    /// Direction.
    pub direction: Direction,
    /// Source system.
    pub source_system: String,
    /// API version the payload arrived on.
    pub api_version: String,
    /// Canonical model version.
    pub model_version: String,
    /// Idempotency key sent downstream.
    pub idempotency_key: String,
    /// Correlation id.
    pub correlation_id: String,
    /// Next attempt time when pending.
    #[serde(with = "time::serde::rfc3339::option")]
    pub next_attempt_at: Option<OffsetDateTime>,
    /// Last failure detail.
    pub last_error: Option<String>,
    /// Mapping used for the target payload.
    pub mapping_version: Option<String>,
    /// Every attempt, oldest first.
    pub attempts: Vec<Attempt>,
    /// Replays of this exchange, oldest first.
    pub children: Vec<Uuid>,
    /// MIME type of the original payload.
    pub payload_type: String,
    /// Size in bytes of the original payload.
    pub payload_bytes: u64,
}

/// Which exchanges to list.
#[derive(Debug, Clone, Default)]
pub struct ExchangeFilter {
    /// Only this status.
    pub status: Option<Status>,
    /// Only this force.
    pub force: Option<String>,
    /// Only this kind.
    pub kind: Option<String>,
}

/// One page of exchanges, newest first; `next` continues after the last row.
#[derive(Debug, Clone)]
pub struct Page<T> {
    /// The rows.
    pub items: Vec<T>,
    /// Cursor for the next page, if there may be more.
    pub next: Option<i64>,
}

/// An audit event before it is chained.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditEvent {
    /// When it happened.
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    /// Who: API key id, operator name, or `system`.
    pub actor: String,
    /// Their role (`ihub`, `operator`, `auditor`, `system`, `anonymous`).
    pub role: String,
    /// Force concerned, when one is.
    pub force: Option<String>,
    /// What was done (`incident.create`, `exchange.view`, `exchange.replay`, `auth.failure`, …).
    pub action: String,
    /// Type of object acted on (`exchange`, `incident`, …).
    pub object_type: Option<String>,
    /// Id of the object.
    pub object_id: Option<String>,
    /// `success`, `failure`, `denied`, `duplicate`.
    pub result: String,
    /// Caller's address.
    pub source_ip: Option<String>,
    /// Caller's user agent.
    pub user_agent: Option<String>,
    /// Correlation id.
    pub correlation_id: Option<String>,
    /// Unique id of this event (UUID v7).
    pub event_uid: Uuid,
    /// Small structured detail (status code, error code); never payloads or personal data.
    pub detail: Option<serde_json::Value>,
}

/// An audit event as stored: with its place in the chain.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Gap-free sequence number, from 1.
    pub seq: u64,
    /// The event.
    #[serde(flatten)]
    pub event: AuditEvent,
    /// Hash of the previous record (64 zeros for the first).
    pub prev_hash: String,
    /// SHA-256 over `prev_hash` and the canonical JSON of the event with its sequence.
    pub hash: String,
}

/// Result of checking the audit chain.
#[derive(Debug, Clone, Serialize)]
pub struct ChainReport {
    /// Records checked.
    pub records: u64,
    /// The first bad record, if any.
    pub first_bad: Option<ChainFault>,
}

/// Where and why the audit chain breaks.
#[derive(Debug, Clone, Serialize)]
pub struct ChainFault {
    /// Sequence number of the first bad record (or the expected one, for a gap).
    pub seq: u64,
    /// What is wrong with it.
    pub reason: String,
}

/// Counts for health and metrics.
#[derive(Debug, Clone, Default, Serialize)]
pub struct JournalStats {
    /// Exchanges pending.
    pub pending: u64,
    /// Exchanges delivered.
    pub delivered: u64,
    /// Exchanges parked.
    pub parked: u64,
    /// Audit records.
    pub audit_records: u64,
}
