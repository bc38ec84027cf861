//! The audit hash chain: each record's hash covers the previous record's hash and the canonical
//! (RFC 8785) JSON of the record with its sequence number, so editing, deleting or reordering a
//! record breaks the chain at that record.
//!
//! A record whose content audit retention removed (`AuditRecord::pruned`) keeps its `prev_hash`
//! and `hash`, so the chain still links through it; its content can no longer be re-hashed, so
//! instead it must be explained by a later `audit.retention.deleted` record that names it and is
//! covered by a signed checkpoint ([`ChainVerifier::finish`]).

use crate::ledger::retention::{DELETION_OPERATION, PruneCoverage};
use crate::model::{AuditEvent, AuditRecord, ChainFault};
use sha2::{Digest, Sha256};

/// The `prev_hash` of the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Computes the hash of `event` at `seq` chained onto `prev_hash`.
pub fn chain_hash(prev_hash: &str, seq: u64, event: &AuditEvent) -> String {
    // Serialising a plain struct of strings, numbers and a JSON value cannot fail.
    let canonical = chain_canonical(seq, event)
        .unwrap_or_else(|e| format!("unserialisable audit event: {e}").into_bytes());
    let mut h = Sha256::new();
    h.update(prev_hash.as_bytes());
    h.update(&canonical);
    hex::encode(h.finalize())
}

/// The RFC 8785 canonical JSON the chain hash covers: the event's members and `seq`.
///
/// Written directly ([`crate::canonical::Object`]): the journal computes it inside every
/// append, on the writer every durable write waits for, and the general canonicaliser
/// ([`chain_canonical_general`], the reference) took most of the append's time. A test checks
/// the two agree byte for byte on random events.
pub fn chain_canonical(seq: u64, event: &AuditEvent) -> Result<Vec<u8>, serde_json::Error> {
    use time::format_description::well_known::Rfc3339;
    let Ok(time) = event.time.format(&Rfc3339) else {
        // Out of RFC 3339's range: the general path reports it as serde does.
        return chain_canonical_general(seq, event);
    };
    if seq > crate::canonical::MAX_SAFE_INTEGER {
        // RFC 8785 writes numbers as IEEE doubles; leave such a value to the general path.
        return chain_canonical_general(seq, event);
    }
    let mut o = crate::canonical::Object::with_capacity(512);
    // Members in RFC 8785 order (sorted by UTF-16 code units; all keys are ASCII).
    o.string("action", &event.action);
    o.string("actor", &event.actor);
    o.string_or_null("correlation_id", event.correlation_id.as_deref());
    match &event.detail {
        Some(v) => o.value("detail", v)?,
        None => o.null("detail"),
    }
    o.string(
        "event_uid",
        event
            .event_uid
            .hyphenated()
            .encode_lower(&mut uuid::Uuid::encode_buffer()),
    );
    o.string_or_null("force", event.force.as_deref());
    o.string_or_null("object_id", event.object_id.as_deref());
    o.string_or_null("object_type", event.object_type.as_deref());
    o.string("result", &event.result);
    o.string("role", &event.role);
    o.uint("seq", seq);
    o.string_or_null("source_ip", event.source_ip.as_deref());
    o.string("time", &time);
    o.string_or_null("user_agent", event.user_agent.as_deref());
    Ok(o.finish())
}

/// [`chain_canonical`] through the general RFC 8785 canonicaliser (its reference).
pub fn chain_canonical_general(seq: u64, event: &AuditEvent) -> Result<Vec<u8>, serde_json::Error> {
    #[derive(serde::Serialize)]
    struct Hashed<'a> {
        seq: u64,
        #[serde(flatten)]
        event: &'a AuditEvent,
    }
    serde_json_canonicalizer::to_vec(&Hashed { seq, event })
}

/// Incremental verifier: feed records in stored order; it reports the first fault.
#[derive(Debug)]
pub struct ChainVerifier {
    expected_seq: u64,
    prev_hash: String,
    checked: u64,
    coverage: PruneCoverage,
}

impl Default for ChainVerifier {
    fn default() -> Self {
        Self {
            expected_seq: 1,
            prev_hash: GENESIS.to_owned(),
            checked: 0,
            coverage: PruneCoverage::default(),
        }
    }
}

impl ChainVerifier {
    /// Checks the next record.
    pub fn check(&mut self, rec: &AuditRecord) -> Result<(), ChainFault> {
        if rec.seq != self.expected_seq {
            let reason = if rec.seq > self.expected_seq {
                format!(
                    "record {} is missing (next stored record is {}): deleted or truncated",
                    self.expected_seq, rec.seq
                )
            } else {
                format!(
                    "record {} appears after record {}: reordered",
                    rec.seq,
                    self.expected_seq - 1
                )
            };
            return Err(ChainFault {
                seq: self.expected_seq,
                reason,
            });
        }
        if rec.prev_hash != self.prev_hash {
            return Err(ChainFault {
                seq: rec.seq,
                reason: "prev_hash does not match the previous record's hash: a record before it \
                         was removed or reordered"
                    .into(),
            });
        }
        if rec.pruned.is_some() {
            // The content is gone; the link stays. `finish` checks a deletion record explains it.
            self.coverage.pruned(rec.seq, 0);
        } else if chain_hash(&rec.prev_hash, rec.seq, &rec.event) != rec.hash {
            return Err(ChainFault {
                seq: rec.seq,
                reason: "content does not match its hash: the record was edited".into(),
            });
        }
        if rec.pruned.is_none() && rec.event.action == DELETION_OPERATION {
            self.coverage.deletion(rec.seq, rec.event.detail.as_ref());
        }
        self.prev_hash = rec.hash.clone();
        self.expected_seq += 1;
        self.checked += 1;
        Ok(())
    }

    /// Records verified so far (pruned ones included).
    pub fn checked(&self) -> u64 {
        self.checked
    }

    /// Pruned records seen so far.
    pub fn pruned(&self) -> u64 {
        self.coverage.pruned_count()
    }

    /// After the last record: every pruned record must be named by a deletion record that the
    /// newest signed checkpoint (of tree size `checkpointed_through`) covers.
    pub fn finish(&self, checkpointed_through: u64) -> Result<(), ChainFault> {
        match self.coverage.first_unexplained(checkpointed_through) {
            None => Ok(()),
            Some((seq, _)) => Err(ChainFault {
                seq,
                reason: format!(
                    "the content of record {seq} was removed, and no {DELETION_OPERATION} record \
                     covered by a signed checkpoint explains it: deleted without a trace"
                ),
            }),
        }
    }
}
