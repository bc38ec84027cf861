//! The audit hash chain: each record's hash covers the previous record's hash and the canonical
//! (RFC 8785) JSON of the record with its sequence number, so editing, deleting or reordering a
//! record breaks the chain at that record.

use crate::model::{AuditEvent, AuditRecord, ChainFault};
use sha2::{Digest, Sha256};

/// The `prev_hash` of the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Computes the hash of `event` at `seq` chained onto `prev_hash`.
pub fn chain_hash(prev_hash: &str, seq: u64, event: &AuditEvent) -> String {
    #[derive(serde::Serialize)]
    struct Hashed<'a> {
        seq: u64,
        #[serde(flatten)]
        event: &'a AuditEvent,
    }
    // Serialising a plain struct of strings, numbers and a JSON value cannot fail.
    let canonical = serde_json_canonicalizer::to_vec(&Hashed { seq, event })
        .unwrap_or_else(|e| format!("unserialisable audit event: {e}").into_bytes());
    let mut h = Sha256::new();
    h.update(prev_hash.as_bytes());
    h.update(&canonical);
    hex::encode(h.finalize())
}

/// Incremental verifier: feed records in stored order; it reports the first fault.
#[derive(Debug)]
pub struct ChainVerifier {
    expected_seq: u64,
    prev_hash: String,
    checked: u64,
}

impl Default for ChainVerifier {
    fn default() -> Self {
        Self {
            expected_seq: 1,
            prev_hash: GENESIS.to_owned(),
            checked: 0,
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
        let want = chain_hash(&rec.prev_hash, rec.seq, &rec.event);
        if want != rec.hash {
            return Err(ChainFault {
                seq: rec.seq,
                reason: "content does not match its hash: the record was edited".into(),
            });
        }
        self.prev_hash = rec.hash.clone();
        self.expected_seq += 1;
        self.checked += 1;
        Ok(())
    }

    /// Records verified so far.
    pub fn checked(&self) -> u64 {
        self.checked
    }
}
