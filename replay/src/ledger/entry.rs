//! The ledger entry: one audit record with its sequence number, in ASIM-audit-style fields, and
//! its leaf hash `SHA-256(0x00 ‖ RFC 8785 canonical JSON)`.
//!
//! Every field an auditor reads is in the entry and so in the hash. Optional fields that are
//! absent *or empty* are left out of the JSON (so an empty CSV cell and a missing value hash
//! alike), and `AdditionalFields` that is absent or JSON `null` is left out too.

use super::LedgerError;
use super::tree::{Hash, leaf_hash};
use crate::model::{AuditEvent, AuditRecord};
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;

/// One ledger entry. Field names are the JSON keys and CSV column names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditEntry {
    /// Gap-free sequence number, from 1 (leaf index `Seq − 1`).
    #[serde(rename = "Seq")]
    pub seq: u64,
    /// Version of this entry format (currently [`AuditEntry::VERSION`]).
    #[serde(rename = "EntryVersion")]
    pub entry_version: u32,
    /// When it happened, RFC 3339 in UTC (the audit event's `time`).
    #[serde(rename = "EventStartTime")]
    pub event_start_time: String,
    /// ASIM event type derived from the operation: `Read`, `Create`, `Set`, `Delete`,
    /// `Execute` or `Other` (see [`event_type_of`]).
    #[serde(rename = "EventType")]
    pub event_type: String,
    /// What was done, as the gateway names it (`exchange.view`, `incident.create`, …).
    #[serde(rename = "Operation")]
    pub operation: String,
    /// The object acted on, `ObjectType:ObjectId` (or whichever of the two is known).
    #[serde(rename = "Object", default, skip_serializing_if = "blank")]
    pub object: Option<String>,
    /// Type of the object (`exchange`, `incident`, …).
    #[serde(rename = "ObjectType", default, skip_serializing_if = "blank")]
    pub object_type: Option<String>,
    /// Id of the object.
    #[serde(rename = "ObjectId", default, skip_serializing_if = "blank")]
    pub object_id: Option<String>,
    /// ASIM result: `Success`, `Failure` or `NA` (see [`event_result_of`]).
    #[serde(rename = "EventResult")]
    pub event_result: String,
    /// The gateway's own result (`success`, `failure`, `denied`, `duplicate`, …).
    #[serde(rename = "EventResultDetails")]
    pub event_result_details: String,
    /// Who: API key id, operator name, or `system`.
    #[serde(rename = "ActorUsername")]
    pub actor_username: String,
    /// Their role (`ihub`, `operator`, `auditor`, `system`, `anonymous`).
    #[serde(rename = "ActorRole")]
    pub actor_role: String,
    /// Force concerned, when one is.
    #[serde(rename = "Force", default, skip_serializing_if = "blank")]
    pub force: Option<String>,
    /// Caller's address.
    #[serde(rename = "SrcIpAddr", default, skip_serializing_if = "blank")]
    pub src_ip_addr: Option<String>,
    /// Caller's user agent.
    #[serde(rename = "HttpUserAgent", default, skip_serializing_if = "blank")]
    pub http_user_agent: Option<String>,
    /// Correlation id.
    #[serde(rename = "CorrelationId", default, skip_serializing_if = "blank")]
    pub correlation_id: Option<String>,
    /// Unique id of the event (UUID, lower-case hyphenated).
    #[serde(rename = "EventUid")]
    pub event_uid: String,
    /// Small structured detail (the audit event's `detail`).
    #[serde(
        rename = "AdditionalFields",
        default,
        skip_serializing_if = "absent_or_null"
    )]
    pub additional_fields: Option<serde_json::Value>,
}

fn blank(v: &Option<String>) -> bool {
    v.as_deref().is_none_or(str::is_empty)
}

fn absent_or_null(v: &Option<serde_json::Value>) -> bool {
    v.as_ref().is_none_or(serde_json::Value::is_null)
}

fn non_blank(v: &Option<String>) -> Option<String> {
    v.clone().filter(|s| !s.is_empty())
}

impl AuditEntry {
    /// The entry format version this code writes.
    pub const VERSION: u32 = 1;

    /// The entry for `event` at sequence number `seq`. Fails only for a time that RFC 3339
    /// cannot express (a year beyond 9999).
    pub fn from_event(seq: u64, event: &AuditEvent) -> Result<Self, LedgerError> {
        let time = event
            .time
            .to_offset(time::UtcOffset::UTC)
            .format(&Rfc3339)
            .map_err(|e| LedgerError::Time {
                seq,
                reason: e.to_string(),
            })?;
        let object_type = non_blank(&event.object_type);
        let object_id = non_blank(&event.object_id);
        let object = match (&object_type, &object_id) {
            (Some(t), Some(id)) => Some(format!("{t}:{id}")),
            (Some(t), None) => Some(t.clone()),
            (None, Some(id)) => Some(id.clone()),
            (None, None) => None,
        };
        Ok(Self {
            seq,
            entry_version: Self::VERSION,
            event_start_time: time,
            event_type: event_type_of(&event.action).to_owned(),
            operation: event.action.clone(),
            object,
            object_type,
            object_id,
            event_result: event_result_of(&event.result).to_owned(),
            event_result_details: event.result.clone(),
            actor_username: event.actor.clone(),
            actor_role: event.role.clone(),
            force: non_blank(&event.force),
            src_ip_addr: non_blank(&event.source_ip),
            http_user_agent: non_blank(&event.user_agent),
            correlation_id: non_blank(&event.correlation_id),
            event_uid: event.event_uid.hyphenated().to_string(),
            additional_fields: event.detail.clone().filter(|v| !v.is_null()),
        })
    }

    /// The entry for a stored audit record.
    pub fn from_record(record: &AuditRecord) -> Result<Self, LedgerError> {
        Self::from_event(record.seq, &record.event)
    }

    /// The RFC 8785 canonical JSON of the entry: the bytes that are hashed.
    ///
    /// Written directly ([`crate::canonical::Object`]); only `AdditionalFields` goes through
    /// the general canonicaliser. About ten times faster than canonicalising the whole entry,
    /// which matters because the journal hashes inside every append; a test checks the two
    /// agree on random entries.
    pub fn canonical_json(&self) -> Result<Vec<u8>, LedgerError> {
        if self.seq > crate::canonical::MAX_SAFE_INTEGER {
            // RFC 8785 writes numbers as IEEE doubles; leave such a value to the general path.
            return self.canonical_json_general();
        }
        let mut o = crate::canonical::Object::with_capacity(512);
        let opt = |o: &mut crate::canonical::Object, name, v: &Option<String>| {
            if let Some(s) = v.as_deref().filter(|s| !s.is_empty()) {
                o.string(name, s);
            }
        };
        // Members in RFC 8785 order (sorted by UTF-16 code units; all keys are ASCII).
        o.string("ActorRole", &self.actor_role);
        o.string("ActorUsername", &self.actor_username);
        if let Some(v) = self.additional_fields.as_ref().filter(|v| !v.is_null()) {
            o.value("AdditionalFields", v)
                .map_err(|e| LedgerError::Canonical {
                    seq: self.seq,
                    reason: e.to_string(),
                })?;
        }
        opt(&mut o, "CorrelationId", &self.correlation_id);
        o.uint("EntryVersion", u64::from(self.entry_version));
        o.string("EventResult", &self.event_result);
        o.string("EventResultDetails", &self.event_result_details);
        o.string("EventStartTime", &self.event_start_time);
        o.string("EventType", &self.event_type);
        o.string("EventUid", &self.event_uid);
        opt(&mut o, "Force", &self.force);
        opt(&mut o, "HttpUserAgent", &self.http_user_agent);
        opt(&mut o, "Object", &self.object);
        opt(&mut o, "ObjectId", &self.object_id);
        opt(&mut o, "ObjectType", &self.object_type);
        o.string("Operation", &self.operation);
        o.uint("Seq", self.seq);
        opt(&mut o, "SrcIpAddr", &self.src_ip_addr);
        Ok(o.finish())
    }

    /// The canonical JSON through the general RFC 8785 canonicaliser (the reference for
    /// [`AuditEntry::canonical_json`]).
    pub fn canonical_json_general(&self) -> Result<Vec<u8>, LedgerError> {
        serde_json_canonicalizer::to_vec(self).map_err(|e| LedgerError::Canonical {
            seq: self.seq,
            reason: e.to_string(),
        })
    }

    /// `SHA-256(0x00 ‖ canonical JSON)`.
    pub fn leaf_hash(&self) -> Result<Hash, LedgerError> {
        Ok(leaf_hash(&self.canonical_json()?))
    }

    /// Parses an entry from its JSON (canonical or not); unknown fields are rejected.
    pub fn from_json(bytes: &[u8]) -> Result<Self, LedgerError> {
        serde_json::from_slice(bytes).map_err(|e| LedgerError::Canonical {
            seq: 0,
            reason: e.to_string(),
        })
    }
}

/// The ASIM `EventType` of a gateway operation, from the operation's last dot-separated word:
/// view/read/get/list/search/export/download → `Read`; create/accept/submit/upload → `Create`;
/// update/set/change/configure/config → `Set`; delete/purge/remove/retention → `Delete`;
/// replay/execute/run/retry → `Execute`; anything else (`auth.failure`, …) → `Other`.
pub fn event_type_of(operation: &str) -> &'static str {
    let verb = operation.rsplit('.').next().unwrap_or(operation);
    match verb.to_ascii_lowercase().as_str() {
        "view" | "read" | "get" | "list" | "search" | "export" | "download" | "query" => "Read",
        "create" | "accept" | "submit" | "upload" => "Create",
        "update" | "set" | "change" | "configure" | "config" => "Set",
        "delete" | "deleted" | "purge" | "remove" | "retention" => "Delete",
        "replay" | "execute" | "run" | "retry" => "Execute",
        _ => "Other",
    }
}

/// The ASIM `EventResult` of a gateway result: success/duplicate → `Success`;
/// failure/denied/error → `Failure`; anything else → `NA`.
pub fn event_result_of(result: &str) -> &'static str {
    match result.to_ascii_lowercase().as_str() {
        "success" | "duplicate" => "Success",
        "failure" | "denied" | "error" => "Failure",
        _ => "NA",
    }
}
