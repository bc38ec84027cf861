//! C2SP `tlog-checkpoint` bodies (`c2sp.org/tlog-checkpoint`):
//!
//! ```text
//! <origin>
//! <tree size, decimal, no leading zeros>
//! <base64 root hash>
//! [<extension line>…]
//! ```
//!
//! each line ending in a newline, wrapped in a signed note ([`super::note`]).

use super::LedgerError;
use super::note::{NoteSigner, NoteVerdict, SignedNote, VerifierKey};
use super::tree::Hash;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

/// A Merkle tree head: the log's origin, its size and its root hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's identity (e.g. `nmpp-gateway.example.police.uk/audit`).
    pub origin: String,
    /// Number of leaves (= the sequence number of the newest record covered).
    pub size: u64,
    /// RFC 6962 root of the tree of that size.
    pub root: Hash,
    /// Optional extension lines (non-empty each). Not used by this gateway; kept if present.
    pub extensions: Vec<String>,
}

fn cp_err(msg: impl Into<String>) -> LedgerError {
    LedgerError::Checkpoint(msg.into())
}

impl Checkpoint {
    /// A checkpoint without extension lines.
    pub fn new(origin: &str, size: u64, root: Hash) -> Self {
        Self {
            origin: origin.to_owned(),
            size,
            root,
            extensions: Vec::new(),
        }
    }

    /// The note text (body).
    pub fn body(&self) -> String {
        let mut out = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            B64.encode(self.root)
        );
        for e in &self.extensions {
            out.push_str(e);
            out.push('\n');
        }
        out
    }

    /// Parses a note text as a checkpoint body.
    pub fn parse_body(text: &str) -> Result<Self, LedgerError> {
        let body = text
            .strip_suffix('\n')
            .ok_or_else(|| cp_err("body must end in a newline"))?;
        let mut lines = body.split('\n');
        let origin = lines.next().unwrap_or_default();
        if origin.is_empty() {
            return Err(cp_err("origin line is empty"));
        }
        let size_line = lines.next().ok_or_else(|| cp_err("no tree size line"))?;
        let canonical_number = size_line == "0"
            || (!size_line.is_empty()
                && !size_line.starts_with('0')
                && size_line.bytes().all(|b| b.is_ascii_digit()));
        if !canonical_number {
            return Err(cp_err(
                "tree size must be decimal digits without leading zeros",
            ));
        }
        let size: u64 = size_line
            .parse()
            .map_err(|_| cp_err("tree size does not fit in 64 bits"))?;
        let root_line = lines.next().ok_or_else(|| cp_err("no root hash line"))?;
        let root: Hash = B64
            .decode(root_line)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| cp_err("root hash must be base64 of 32 bytes"))?;
        let extensions: Vec<String> = lines.map(str::to_owned).collect();
        if extensions.iter().any(String::is_empty) {
            return Err(cp_err("extension lines must not be empty"));
        }
        let cp = Self {
            origin: origin.to_owned(),
            size,
            root,
            extensions,
        };
        // Reject anything that does not re-encode byte for byte (e.g. non-canonical base64).
        if cp.body() != text {
            return Err(cp_err("body is not in canonical form"));
        }
        Ok(cp)
    }

    /// The signed note of this checkpoint, signed by `signer`.
    pub fn sign(&self, signer: &NoteSigner) -> Result<String, LedgerError> {
        if self.origin.is_empty() || self.origin.contains('\n') {
            return Err(cp_err("origin must be one non-empty line"));
        }
        signer.sign(&self.body())
    }

    /// Parses a signed checkpoint note without checking its signatures.
    pub fn parse_unverified(note: &str) -> Result<(Self, SignedNote), LedgerError> {
        let n = SignedNote::parse(note)?;
        Ok((Self::parse_body(&n.text)?, n))
    }

    /// Parses a signed checkpoint note and checks it was signed by one of `trusted`.
    pub fn open(note: &str, trusted: &[VerifierKey]) -> Result<Self, LedgerError> {
        let (cp, n) = Self::parse_unverified(note)?;
        match n.check(trusted) {
            NoteVerdict::Verified(_) => Ok(cp),
            NoteVerdict::BadSignature { name, key_id } => Err(LedgerError::Note(format!(
                "checkpoint signature by {name}+{key_id:08x} does not verify"
            ))),
            NoteVerdict::UnknownKeys(_) => Err(LedgerError::Note(
                "checkpoint is not signed by a trusted key".into(),
            )),
        }
    }
}
