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

/// The audit action of a deletion record (see [`crate::ledger::retention`]): its `detail`
/// holds `ranges` (inclusive sequence ranges whose content goes), `count`, `before` (nothing at
/// or after that second is pruned), the policy and the sinks' slowest cursor.
pub const RETENTION_DELETED_ACTION: &str = crate::ledger::retention::DELETION_OPERATION;

/// How long audit records keep their content, as the journal applies it. A record past its
/// period loses its content (not its sequence number, time, event uid or hashes); checkpoint
/// announcements and deletion records are never pruned, nor records about an exchange under a
/// legal hold (held itself, or through its case).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRetentionPolicy {
    /// Period of records of a force without one of its own, and of records of no force; `None`
    /// keeps them.
    pub default: Option<std::time::Duration>,
    /// Periods by force key; `None` keeps that force's records (whatever the default).
    pub forces: std::collections::BTreeMap<String, Option<std::time::Duration>>,
}

/// The cutoffs of a policy at one instant, as RFC 3339 prefixes to the second (UTC): a record
/// whose stored time sorts before its cutoff is past its period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Cutoffs {
    /// For records of forces without their own period, and of no force.
    pub(crate) default: Option<String>,
    /// By force (`None`: kept).
    pub(crate) forces: Vec<(String, Option<String>)>,
    /// The newest of them all: nothing at or after it is pruned.
    pub(crate) newest: Option<String>,
}

impl AuditRetentionPolicy {
    /// Whether the policy prunes nothing.
    pub fn is_empty(&self) -> bool {
        self.default.is_none() && self.forces.values().all(Option::is_none)
    }

    pub(crate) fn cutoffs(&self, now: OffsetDateTime) -> Cutoffs {
        let at = |d: std::time::Duration| {
            second_prefix(now - time::Duration::try_from(d).unwrap_or(time::Duration::MAX))
        };
        let default = self.default.map(at);
        let forces: Vec<(String, Option<String>)> = self
            .forces
            .iter()
            .map(|(f, d)| (f.clone(), d.map(at)))
            .collect();
        let newest = default
            .iter()
            .chain(forces.iter().filter_map(|(_, c)| c.as_ref()))
            .max()
            .cloned();
        Cutoffs {
            default,
            forces,
            newest,
        }
    }
}

/// The records whose content audit retention may remove now (a plan; nothing is changed).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AuditPrunePlan {
    /// Inclusive sequence ranges of the records to prune, in order.
    pub ranges: Vec<(u64, u64)>,
    /// Records in `ranges`.
    pub count: u64,
    /// Records past their period but kept by a legal hold.
    pub held: u64,
    /// The newest cutoff (RFC 3339 to the second): nothing at or after it is pruned.
    pub before: Option<String>,
    /// The scan stopped at its limit after this sequence number: more may be due after it.
    pub next: Option<u64>,
}

/// What a deletion record says, checked before any pruning: `(ranges, before)`.
pub(crate) fn deletion_detail(
    seq: u64,
    action: &str,
    detail: Option<&serde_json::Value>,
    pruned: bool,
    newest_checkpoint: u64,
) -> Result<(Vec<(u64, u64)>, String)> {
    if action != RETENTION_DELETED_ACTION || pruned {
        return Err(JournalError::Invalid(format!(
            "audit record {seq} is not an {RETENTION_DELETED_ACTION} record"
        )));
    }
    if newest_checkpoint < seq {
        return Err(JournalError::Conflict(format!(
            "deletion record {seq} is not covered by a signed checkpoint yet (newest covers \
             {newest_checkpoint}): sign one first"
        )));
    }
    let before = detail
        .and_then(|d| d.get("before"))
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| {
            JournalError::Invalid(format!("deletion record {seq}: detail.before is missing"))
        })?;
    Ok((
        crate::ledger::retention::deletion_ranges(seq, detail),
        before.to_owned(),
    ))
}
