//! Durable key/value state kept beside the journal: change-detection cursors, per-case
//! snapshots and leases (issue 4).
//!
//! Every entry has a version, starting at 1 and growing by one with each write. Writers
//! compare-and-set on it ([`crate::Journal::state_put`]): a write that expected another version
//! changes nothing and is refused with [`crate::JournalError::Conflict`], so two gateway nodes
//! never both move a cursor or both take a lease.

use time::OffsetDateTime;

/// Longest scope or key accepted, in bytes.
pub const MAX_KEY_LEN: usize = 512;
/// Largest value accepted, in bytes.
pub const MAX_VALUE_LEN: usize = 1024 * 1024;

/// One stored entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateEntry {
    /// Namespace (`detect/kent`).
    pub scope: String,
    /// Key within the scope (`cursor/records`, `case/KE-2026-0001`).
    pub key: String,
    /// Version: 1 when first written, one more with each write.
    pub version: u64,
    /// The value (usually JSON; opaque to the journal).
    pub value: Vec<u8>,
    /// When it was last written.
    pub updated_at: OffsetDateTime,
}

/// Checks a scope, key and value before they reach a backend.
pub(crate) fn check(scope: &str, key: &str, value: &[u8]) -> crate::Result<()> {
    for (name, s) in [("scope", scope), ("key", key)] {
        if s.is_empty() || s.len() > MAX_KEY_LEN {
            return Err(crate::JournalError::Invalid(format!(
                "state {name}: must be 1 to {MAX_KEY_LEN} bytes"
            )));
        }
    }
    if value.len() > MAX_VALUE_LEN {
        return Err(crate::JournalError::Invalid(format!(
            "state value: larger than {MAX_VALUE_LEN} bytes"
        )));
    }
    Ok(())
}

/// The refusal for a compare-and-set that lost.
pub(crate) fn conflict(scope: &str, key: &str, expected: Option<u64>) -> crate::JournalError {
    crate::JournalError::Conflict(match expected {
        None => format!("state {scope}/{key} already exists"),
        Some(v) => format!("state {scope}/{key} is no longer at version {v}"),
    })
}
