//! The journal's side of the audit ledger: what the backends store besides the audit records
//! themselves (the Merkle frontier, signed checkpoints, audit sinks' cursors and quarantined
//! records), and the audit-log query of the log-management API.
//!
//! Every audit record's leaf hash (`replay::ledger::AuditEntry::leaf_hash`) is computed and the
//! frontier moved in the same transaction that appends the record, so the tree always covers
//! exactly the records `1..=size` and a checkpoint can be signed from [`LedgerHead`] alone.

use crate::ledger::{AuditEntry, Frontier, Hash};
use crate::{AuditEvent, JournalError, Result};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// The audit action of the record that announces a signed checkpoint. Its `detail` holds
/// `tree_size`, `root` (hex) and `note` (the signed note); sinks ship it as a checkpoint.
pub const CHECKPOINT_ACTION: &str = "ledger.checkpoint";

/// The ledger as of one instant: its size and Merkle frontier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerHead {
    /// The frontier over records `1..=frontier.size()`.
    pub frontier: Frontier,
}

impl LedgerHead {
    /// Records in the tree.
    pub fn size(&self) -> u64 {
        self.frontier.size()
    }

    /// The Merkle tree hash.
    pub fn root(&self) -> Hash {
        self.frontier.root()
    }
}

/// A signed checkpoint as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StoredCheckpoint {
    /// Tree size it covers.
    pub size: u64,
    /// Root hash, hex.
    pub root: String,
    /// The C2SP signed note.
    pub note: String,
    /// When it was stored (RFC 3339).
    pub created_at: String,
    /// Sequence number of the audit record that announced it.
    pub audit_seq: u64,
}

/// A checkpoint to store: the caller signed `note` over `size` and `root`.
#[derive(Debug, Clone)]
pub struct NewCheckpoint {
    /// Tree size.
    pub size: u64,
    /// Root hash at that size.
    pub root: Hash,
    /// The signed note.
    pub note: String,
}

/// One audit sink's persisted state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SinkCursor {
    /// The sink's configured name.
    pub sink: String,
    /// Every record with `seq <= delivered_through` was delivered or quarantined.
    pub delivered_through: u64,
    /// Splunk HEC channel id, kept across restarts.
    pub channel: Option<String>,
}

/// A record an audit sink gave up on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SinkQuarantine {
    /// The record's sequence number.
    pub seq: u64,
    /// Its event uid.
    pub event_uid: String,
    /// `record` or `checkpoint`.
    pub kind: String,
    /// Error class of the refusal.
    pub class: String,
    /// HTTP status, when there was one.
    pub status: Option<u16>,
    /// Operator-facing reason (never record contents).
    pub reason: String,
}

/// Criteria of an audit-log query (all optional, combined with AND).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditQuery {
    /// Records at or after this time.
    pub from: Option<OffsetDateTime>,
    /// Records before this time.
    pub to: Option<OffsetDateTime>,
    /// Records with this correlation id.
    pub correlation_id: Option<String>,
    /// Records by this actor.
    pub actor: Option<String>,
    /// Records about this force.
    pub force: Option<String>,
    /// Records with this result (`success`, `failure`, `denied`, `duplicate`, …).
    pub result: Option<String>,
    /// Records of this action (`exchange.view`, …).
    pub action: Option<String>,
}

/// The leaf hash of `event` stored at `seq`.
pub(crate) fn leaf_of(seq: u64, event: &AuditEvent) -> Result<Hash> {
    AuditEntry::from_event(seq, event)
        .and_then(|e| e.leaf_hash())
        .map_err(|e| JournalError::Invalid(e.to_string()))
}

/// Parses a stored frontier.
pub(crate) fn frontier_from(bytes: &[u8]) -> Result<Frontier> {
    Frontier::from_bytes(bytes).map_err(|e| JournalError::Corrupt(format!("ledger frontier: {e}")))
}

/// Checks a checkpoint against the ledger head it is stored under and the newest stored one.
pub(crate) fn check_checkpoint(cp: &NewCheckpoint, head_size: u64, newest: u64) -> Result<()> {
    if cp.size == 0 {
        return Err(JournalError::Invalid(
            "checkpoint size: must be at least 1".into(),
        ));
    }
    if cp.size > head_size {
        return Err(JournalError::Invalid(format!(
            "checkpoint size {}: beyond the ledger (size {head_size})",
            cp.size
        )));
    }
    if cp.size <= newest {
        return Err(JournalError::Conflict(format!(
            "checkpoint size {}: a checkpoint of size {newest} exists; sizes only grow",
            cp.size
        )));
    }
    Ok(())
}

/// The audit event that announces a checkpoint, from the template `audit` (actor, role, time).
pub(crate) fn checkpoint_event(cp: &NewCheckpoint, mut audit: AuditEvent) -> AuditEvent {
    audit.action = CHECKPOINT_ACTION.into();
    audit.object_type = Some("checkpoint".into());
    audit.object_id = Some(cp.size.to_string());
    audit.detail = Some(serde_json::json!({
        "tree_size": cp.size,
        "root": hex::encode(cp.root),
        "note": cp.note,
    }));
    audit
}

/// The RFC 3339 prefix (to the second, UTC) of `t`, for a range on the stored text times: every
/// record at or after that second sorts at or after it.
pub(crate) fn second_prefix(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// Whether `rec` is exactly within the query's time window (the SQL range is to the second).
pub(crate) fn in_window(q: &AuditQuery, rec: &crate::AuditRecord) -> bool {
    q.from.is_none_or(|f| rec.event.time >= f) && q.to.is_none_or(|t| rec.event.time < t)
}
