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
    /// Mapping version a replay asked for (`spec@version`); `None` means the current one.
    pub mapping_version: Option<String>,
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
    /// Size in bytes of the original payload (0 once retention deleted it).
    pub payload_bytes: u64,
    /// For a replay: the mapping version it was asked to use.
    pub requested_mapping_version: Option<String>,
    /// For a replay made by a bulk replay job: the job.
    pub replay_job_id: Option<Uuid>,
    /// Whether a legal hold (on this exchange's family or its case) keeps it from deletion.
    pub legal_hold: bool,
    /// When retention deleted the payloads, if it has.
    #[serde(with = "time::serde::rfc3339::option")]
    pub payloads_deleted_at: Option<OffsetDateTime>,
}

/// Which exchanges to find. Every key that is set must match (AND); an empty filter matches
/// every exchange. The same filter drives search, [`count`](crate::Journal::count) and bulk
/// replay jobs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExchangeFilter {
    /// Only this status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    /// Only this force.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force: Option<String>,
    /// Only this kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Only this target system.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Only exchanges journalled at or after this time.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub from: Option<OffsetDateTime>,
    /// Only exchanges journalled before this time.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub to: Option<OffsetDateTime>,
    /// Only exchanges whose last failure had this class (`upstream_5xx`, `rejected`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_class: Option<String>,
    /// Only exchanges about this case reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub case_ref: Option<String>,
    /// Only exchanges with this submission id (idempotency key); a parent and its replays share it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submission_id: Option<String>,
    /// Only exchanges with this correlation id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// Only replays (children) of this exchange.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<Uuid>,
    /// `Some(true)`: only replays (exchanges with a parent); `Some(false)`: only originals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replays: Option<bool>,
}

impl ExchangeFilter {
    /// The keys [`ExchangeFilter::set`] understands, as operators write them.
    pub const KEYS: &'static [&'static str] = &[
        "status",
        "force",
        "kind",
        "target",
        "from",
        "to",
        "error_class",
        "case_ref",
        "submission_id",
        "correlation_id",
        "parent",
        "replays",
    ];

    /// Sets one key from operator input (`--filter KEY=VALUE`, a query parameter). Keys may be
    /// written with `_` or `-` (`error-class`); times are RFC 3339. The error names the key and
    /// the rule it broke.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        let v = value.trim();
        if v.is_empty() {
            return Err(format!("{key}: empty value"));
        }
        let time = |v: &str| {
            OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339)
                .map_err(|e| format!("{key}: not an RFC 3339 date-time ({e})"))
        };
        match key.replace('-', "_").as_str() {
            "status" => self.status = Some(v.parse().map_err(|e| format!("{key}: {e}"))?),
            "force" => self.force = Some(v.to_owned()),
            "kind" => self.kind = Some(v.to_owned()),
            "target" => self.target = Some(v.to_owned()),
            "from" => self.from = Some(time(v)?),
            "to" => self.to = Some(time(v)?),
            "error_class" => self.error_class = Some(v.to_owned()),
            "case_ref" => self.case_ref = Some(v.to_owned()),
            "submission_id" => self.submission_id = Some(v.to_owned()),
            "correlation_id" => self.correlation_id = Some(v.to_owned()),
            "parent" => {
                self.parent = Some(Uuid::parse_str(v).map_err(|_| format!("{key}: not a UUID"))?);
            }
            "replays" => {
                self.replays = Some(match v {
                    "true" | "yes" | "1" => true,
                    "false" | "no" | "0" => false,
                    _ => return Err(format!("{key}: expected true or false")),
                });
            }
            _ => {
                return Err(format!(
                    "unknown filter key {key:?}: expected one of {}",
                    Self::KEYS.join(", ")
                ));
            }
        }
        Ok(())
    }

    /// Parses `KEY=VALUE` (as given to `--filter`).
    pub fn set_pair(&mut self, pair: &str) -> Result<(), String> {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| format!("{pair:?}: expected KEY=VALUE"))?;
        self.set(k.trim(), v)
    }
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
    /// Set when audit retention removed the record's content (see [`crate::ledger_db`]): the
    /// event then keeps only its time and event uid, every other field is empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pruned: Option<Pruned>,
}

/// What is left of an audit record whose content audit retention removed: enough for the
/// Merkle tree and the hash chain (its leaf hash; `prev_hash`/`hash` stay on the record) and the
/// sequence number of the `audit.retention.deleted` record that explains the removal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pruned {
    /// Sequence number of the deletion record (action `audit.retention.deleted`) covering it.
    pub by: u64,
    /// The record's stored RFC 6962 leaf hash, hex.
    pub leaf_hash: String,
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

/// Counts for health, metrics and the operations endpoint. Read from maintained counters and
/// small indexes, so it stays cheap however large the journal grows.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JournalStats {
    /// Exchanges pending.
    pub pending: u64,
    /// Exchanges delivered.
    pub delivered: u64,
    /// Exchanges parked.
    pub parked: u64,
    /// Audit records.
    pub audit_records: u64,
    /// Exchanges by force, kind and status (only non-zero groups), sorted.
    pub groups: Vec<StatusCount>,
    /// Journal time of the oldest pending exchange.
    #[serde(with = "time::serde::rfc3339::option")]
    pub oldest_pending: Option<OffsetDateTime>,
    /// Journal time of the oldest parked exchange.
    #[serde(with = "time::serde::rfc3339::option")]
    pub oldest_parked: Option<OffsetDateTime>,
    /// Bulk replay jobs still running (not completed or cancelled).
    pub replay_jobs_running: u64,
    /// Legal holds in force.
    pub legal_holds: u64,
}

/// How many exchanges of one force and kind are in one status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusCount {
    /// Force key.
    pub force: String,
    /// Kind of work.
    pub kind: String,
    /// Status.
    pub status: Status,
    /// Exchanges.
    pub count: u64,
}

/// How to re-execute one exchange.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplayOptions {
    /// Send the replay to this target system only (default: the parent's target).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Map through this mapping version (`spec@version`), stored on the child
    /// ([`WorkItem::mapping_version`]); default: the current mapping.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mapping_version: Option<String>,
    /// Bulk replay jobs only: at most this many children created per second, whichever node
    /// works the job (`None`: as fast as the journal allows). Kept with the job so a resumed job
    /// keeps its pace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_per_sec: Option<u32>,
}

/// A bulk replay to create: every exchange matching `filter` journalled up to now, in a stable
/// order (oldest first), each re-executed as a child.
#[derive(Debug, Clone)]
pub struct NewReplayJob {
    /// Which exchanges (only parked ones are replayed; others are counted as skipped).
    pub filter: ExchangeFilter,
    /// Target and mapping overrides applied to every child.
    pub options: ReplayOptions,
    /// Who asked (for the job record; the audit event says it too).
    pub created_by: String,
}

/// Where a bulk replay job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReplayJobState {
    /// Has more to do; [`crate::Journal::run_replay_job`] continues it.
    Running,
    /// Stopped by an operator; can be resumed.
    Cancelled,
    /// Every matching exchange was processed.
    Completed,
}

impl ReplayJobState {
    /// Stable lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            ReplayJobState::Running => "running",
            ReplayJobState::Cancelled => "cancelled",
            ReplayJobState::Completed => "completed",
        }
    }

    /// Parses the stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "running" => Some(ReplayJobState::Running),
            "cancelled" => Some(ReplayJobState::Cancelled),
            "completed" => Some(ReplayJobState::Completed),
            _ => None,
        }
    }
}

/// A persisted bulk replay job: what it covers and how far it has got.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplayJob {
    /// Job id.
    pub id: Uuid,
    /// Which exchanges.
    pub filter: ExchangeFilter,
    /// Overrides for every child.
    pub options: ReplayOptions,
    /// Current state.
    pub state: ReplayJobState,
    /// Exchanges matching the filter when the job was created (the dry-run count).
    pub planned: u64,
    /// Children created so far.
    pub replayed: u64,
    /// Matching exchanges passed over (not parked, or already replayed and live).
    pub skipped: u64,
    /// The job covers exchanges journalled up to this time.
    #[serde(with = "time::serde::rfc3339")]
    pub until: OffsetDateTime,
    /// Who created it.
    pub created_by: String,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Last change.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// What one step of a bulk replay job did.
#[derive(Debug, Clone)]
pub struct ReplayStep {
    /// (parent, child) for each child created in this step, in job order.
    pub children: Vec<(Uuid, Uuid)>,
    /// Parents passed over in this step.
    pub skipped: u64,
    /// The job after the step (state `Completed` when nothing is left).
    pub job: ReplayJob,
}

/// What a legal hold covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    rename_all = "camelCase",
    rename_all_fields = "camelCase",
    tag = "type"
)]
pub enum HoldTarget {
    /// One exchange and every replay of it (its family).
    Exchange {
        /// Any exchange of the family.
        id: Uuid,
    },
    /// Every exchange of a force about one case.
    Case {
        /// Force key.
        force: String,
        /// Case reference.
        case_ref: String,
    },
}

/// A legal hold: while it is in force, retention deletes nothing it covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LegalHold {
    /// Hold id.
    pub id: Uuid,
    /// What it covers.
    pub target: HoldTarget,
    /// Why (a reference to the legal matter; never personal data).
    pub reason: String,
    /// Who placed it.
    pub placed_by: String,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub placed_at: OffsetDateTime,
}

/// How long to keep one force's exchanges of one kind (or of every kind without its own policy).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RetentionPolicy {
    /// Force key.
    pub force: String,
    /// Kind; `None` covers every kind of the force that has no policy of its own.
    pub kind: Option<String>,
    /// Delete original, canonical and target payloads of exchanges older than this.
    pub payloads: Option<std::time::Duration>,
    /// Delete whole exchanges (with their attempts) older than this. A family (an exchange and
    /// its replays) goes together, when its newest member is old enough.
    pub metadata: Option<std::time::Duration>,
}

/// What a retention run deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RetentionReport {
    /// Exchanges whose payloads were deleted (metadata kept).
    pub payloads_deleted: u64,
    /// Exchanges deleted with their metadata.
    pub exchanges_deleted: u64,
    /// Attempts deleted with them.
    pub attempts_deleted: u64,
    /// Whole time partitions dropped (PostgreSQL).
    pub partitions_dropped: Vec<String>,
    /// Audit records written for the deletions.
    pub audit_records: u64,
}
