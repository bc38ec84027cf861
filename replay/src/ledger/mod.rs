//! The tamper-evident audit ledger: RFC 6962 Merkle hashing of audit entries, C2SP signed
//! checkpoints, and the auditor bundle with its offline verifier.
//!
//! This module is pure: it does no database work. The journal backends call it to hash each
//! audit record as it is appended ([`AuditEntry::leaf_hash`], [`Frontier::push`]) and to sign a
//! checkpoint every N records or T seconds ([`Checkpoint::sign`]); the `audit export` command
//! streams records into a [`BundleWriter`]; `audit verify` calls [`verify_bundle`], which needs
//! nothing but the bundle directory.
//!
//! Layout:
//! - [`entry`] — the ledger entry (ASIM-style audit fields), its RFC 8785 canonical JSON and leaf
//!   hash;
//! - [`tree`] — Merkle tree maths: roots, the incremental [`Frontier`], inclusion and consistency
//!   proofs (generation and RFC 9162 verification);
//! - [`note`] — C2SP signed notes with Ed25519 keys, the `vkey`/`skey` text encodings and key
//!   generation;
//! - [`checkpoint`] — C2SP `tlog-checkpoint` bodies, signed and opened;
//! - [`retention`] — pruned records and the deletion records that explain them;
//! - [`bundle`] — the auditor bundle: [`BundleWriter`], [`verify_bundle`] and their file formats.
//!
//! `README.md` beside this file specifies every format precisely enough to write an independent
//! verifier.

pub mod bundle;
pub mod checkpoint;
pub mod entry;
pub mod note;
pub mod retention;
pub mod tree;

#[cfg(test)]
mod tamper;
#[cfg(test)]
mod tests;

pub use bundle::{
    BundleOptions, BundleSummary, BundleWriter, ExportFilter, Manifest, Problem, ProblemKind,
    Progress, RecordFormat, VerifyOptions, VerifyReport, verify_bundle, verify_bundle_with,
};
pub use checkpoint::Checkpoint;
pub use entry::AuditEntry;
pub use note::{NoteSigner, SignedNote, VerifierKey, generate_key_pair};
pub use tree::{Frontier, Hash, ProofError};

/// A ledger failure: bad input to a ledger function, a key or note that cannot be parsed, or an
/// I/O error while writing or reading a bundle. Verification findings are not errors: they are
/// [`Problem`]s in a [`VerifyReport`].
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// An audit entry could not be serialised to canonical JSON.
    #[error("audit entry {seq}: cannot be serialised to canonical json: {reason}")]
    Canonical {
        /// Sequence number of the entry.
        seq: u64,
        /// Why.
        reason: String,
    },
    /// An audit event's time cannot be written as RFC 3339.
    #[error("audit entry {seq}: time is not representable as rfc 3339: {reason}")]
    Time {
        /// Sequence number of the entry.
        seq: u64,
        /// Why.
        reason: String,
    },
    /// A proof was asked for that does not exist (index beyond the tree, sizes out of order).
    #[error("no such proof: {0}")]
    ProofRequest(String),
    /// Stored tree state is not valid.
    #[error("invalid tree state: {0}")]
    TreeState(String),
    /// A key in `vkey` or `skey` text form is malformed.
    #[error("invalid key: {0}")]
    Key(String),
    /// A signed note is malformed or does not verify.
    #[error("signed note: {0}")]
    Note(String),
    /// A checkpoint body is malformed.
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    /// The records given to the bundle writer are not the ledger it was promised.
    #[error("bundle input: {0}")]
    BundleInput(String),
    /// A bundle file is missing or so malformed that nothing can be checked.
    #[error("bundle {file}: {reason}")]
    Bundle {
        /// The file concerned.
        file: String,
        /// Why.
        reason: String,
    },
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The operating system's random number generator failed.
    #[error("random number generator: {0}")]
    Random(String),
}

impl LedgerError {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        LedgerError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}
