//! The auditor bundle: a directory an auditor can check offline.
//!
//! | file | content |
//! |---|---|
//! | `records.csv` or `records.jsonl` | one row per exported record, in sequence order, with `Seq` and `LeafHash` |
//! | `checkpoints.txt` | the signed checkpoints (C2SP signed notes), oldest first, separated by a blank line |
//! | `public-key.txt` | the verifier key(s) (`vkey`), current signing key first |
//! | `proofs.jsonl` | consistency proofs between consecutive checkpoints; for a filtered export, the inclusion proof of every exported record |
//! | `manifest.json` | format version, filters, counts, first/last seq, tree size, who exported and when, and the SHA-256 of each file above |
//! | `manifest.sig` | a signed note over the SHA-256 of `manifest.json`, by the ledger key |
//!
//! [`BundleWriter`] streams records in; [`verify_bundle`] checks a bundle. The formats are
//! specified in `README.md` beside `ledger/mod.rs`.

mod verify;
mod write;

pub use verify::{
    MAX_PROBLEMS, Problem, ProblemKind, VerifyOptions, VerifyReport, verify_bundle,
    verify_bundle_with,
};
pub use write::{BundleOptions, BundleSummary, BundleWriter, Progress, write_bundle};

use super::LedgerError;
use super::entry::AuditEntry;
use super::tree::{Hash, parse_hex_hash};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Write;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Version of the bundle format written by this code.
pub const FORMAT_VERSION: u32 = 1;

/// File names in a bundle.
pub mod files {
    /// Records as CSV.
    pub const RECORDS_CSV: &str = "records.csv";
    /// Records as JSON lines.
    pub const RECORDS_JSONL: &str = "records.jsonl";
    /// Signed checkpoints.
    pub const CHECKPOINTS: &str = "checkpoints.txt";
    /// Verifier keys.
    pub const PUBLIC_KEY: &str = "public-key.txt";
    /// Proofs.
    pub const PROOFS: &str = "proofs.jsonl";
    /// The manifest.
    pub const MANIFEST: &str = "manifest.json";
    /// The manifest's signed note.
    pub const MANIFEST_SIG: &str = "manifest.sig";
}

/// The second line of the manifest's signed note; it cannot parse as a checkpoint's tree size, so
/// a manifest signature can never be mistaken for a checkpoint.
pub const MANIFEST_NOTE_TAG: &str = "nmpp-gateway audit bundle manifest v1";

/// How records are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordFormat {
    /// `records.csv` (RFC 4180, CRLF, formula cells escaped).
    Csv,
    /// `records.jsonl` (one JSON object per line).
    Jsonl,
}

impl RecordFormat {
    /// The records file name.
    pub fn file_name(self) -> &'static str {
        match self {
            RecordFormat::Csv => files::RECORDS_CSV,
            RecordFormat::Jsonl => files::RECORDS_JSONL,
        }
    }
}

/// Which records an export holds. Everything when no field is set (a *full* export).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportFilter {
    /// Only records at or after this time.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub from: Option<OffsetDateTime>,
    /// Only records before this time.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub to: Option<OffsetDateTime>,
    /// Only records of this force.
    #[serde(default)]
    pub force: Option<String>,
    /// Only records by this actor.
    #[serde(default)]
    pub actor: Option<String>,
}

impl ExportFilter {
    /// Whether no filter is set.
    pub fn is_full(&self) -> bool {
        self.from.is_none() && self.to.is_none() && self.force.is_none() && self.actor.is_none()
    }

    /// Whether `entry` passes the filter. An entry whose time does not parse fails a time filter.
    pub fn matches(&self, entry: &AuditEntry) -> bool {
        if let Some(f) = &self.force
            && entry.force.as_deref() != Some(f.as_str())
        {
            return false;
        }
        if let Some(a) = &self.actor
            && entry.actor_username != *a
        {
            return false;
        }
        if self.from.is_some() || self.to.is_some() {
            let Ok(t) = OffsetDateTime::parse(&entry.event_start_time, &Rfc3339) else {
                return false;
            };
            if self.from.is_some_and(|from| t < from) || self.to.is_some_and(|to| t >= to) {
                return false;
            }
        }
        true
    }
}

/// `manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Bundle format version ([`FORMAT_VERSION`]).
    pub format_version: u32,
    /// How the records are written.
    pub records_format: RecordFormat,
    /// The records file name.
    pub records_file: String,
    /// Whether every record up to `tree_size` is exported (no filter).
    pub full: bool,
    /// The filters used.
    pub filters: ExportFilter,
    /// Who exported the bundle.
    pub exported_by: String,
    /// When, RFC 3339.
    pub exported_at: String,
    /// The checkpoints' origin line.
    pub origin: String,
    /// The signing key (`vkey`) of the newest checkpoint and of `manifest.sig`.
    pub key: String,
    /// The newest checkpoint's tree size: records `1..=tree_size` are covered.
    pub tree_size: u64,
    /// Records exported.
    pub records: u64,
    /// Sequence number of the first exported record.
    pub first_seq: Option<u64>,
    /// Sequence number of the last exported record.
    pub last_seq: Option<u64>,
    /// Checkpoints in `checkpoints.txt`.
    pub checkpoints: u64,
    /// Inclusion proofs in `proofs.jsonl`.
    pub inclusion_proofs: u64,
    /// Consistency proofs in `proofs.jsonl`.
    pub consistency_proofs: u64,
    /// Lower-case hex SHA-256 of each other file of the bundle, by file name.
    pub files: BTreeMap<String, String>,
}

/// The text of the signed note in `manifest.sig`.
pub fn manifest_note_text(origin: &str, manifest_bytes: &[u8]) -> String {
    use base64::Engine as _;
    let digest = Sha256::digest(manifest_bytes);
    format!(
        "{origin}\n{MANIFEST_NOTE_TAG}\n{}\n",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

/// One line of `proofs.jsonl`. Hashes are lower-case hex.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ProofLine {
    /// Record `seq` (leaf `seq − 1`) is in the tree of the checkpoint of size `tree_size`.
    Inclusion {
        /// The record's sequence number.
        seq: u64,
        /// The checkpoint's tree size (the first checkpoint at or after `seq`).
        tree_size: u64,
        /// The record's leaf hash.
        leaf_hash: String,
        /// The RFC 9162 inclusion path, leaf's sibling first.
        path: Vec<String>,
    },
    /// The tree of `old_size` is a prefix of the tree of `new_size` (two consecutive
    /// checkpoints).
    Consistency {
        /// The older checkpoint's tree size.
        old_size: u64,
        /// The newer checkpoint's tree size.
        new_size: u64,
        /// The RFC 9162 consistency path.
        path: Vec<String>,
    },
}

pub(crate) fn hex_path(path: &[Hash]) -> Vec<String> {
    path.iter().map(hex::encode).collect()
}

pub(crate) fn parse_path(path: &[String]) -> Option<Vec<Hash>> {
    path.iter().map(|h| parse_hex_hash(h)).collect()
}

/// The CSV columns, in order. `Seq` and `LeafHash` first, then the entry's fields.
pub const CSV_COLUMNS: [&str; 19] = [
    "Seq",
    "LeafHash",
    "EntryVersion",
    "EventStartTime",
    "EventType",
    "Operation",
    "Object",
    "ObjectType",
    "ObjectId",
    "EventResult",
    "EventResultDetails",
    "ActorUsername",
    "ActorRole",
    "Force",
    "SrcIpAddr",
    "HttpUserAgent",
    "CorrelationId",
    "EventUid",
    "AdditionalFields",
];

/// Whether a spreadsheet could take a cell starting with `c` for a formula (or would mangle
/// it): `=`, `+`, `-`, `@`, tab, carriage return. A leading `'` is escaped too, so that
/// unescaping is exact.
fn needs_escape(c: char) -> bool {
    matches!(c, '=' | '+' | '-' | '@' | '\t' | '\r' | '\'')
}

/// Escapes a CSV cell against formula injection: a cell starting with `= + - @`, tab, CR or `'`
/// gets one `'` in front.
pub fn escape_cell(s: &str) -> std::borrow::Cow<'_, str> {
    match s.chars().next() {
        Some(c) if needs_escape(c) => format!("'{s}").into(),
        _ => s.into(),
    }
}

/// Undoes [`escape_cell`]: drops one leading `'`. A cell that starts with a formula character
/// without the `'` was not written by [`escape_cell`] and is an error.
pub fn unescape_cell(s: &str) -> Result<&str, char> {
    match s.chars().next() {
        Some('\'') => Ok(&s[1..]),
        Some(c) if needs_escape(c) => Err(c),
        _ => Ok(s),
    }
}

/// The CSV cells (unescaped) of an entry and its leaf hash, in [`CSV_COLUMNS`] order.
pub(crate) fn entry_cells(entry: &AuditEntry, leaf: &Hash) -> Vec<String> {
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    vec![
        entry.seq.to_string(),
        hex::encode(leaf),
        entry.entry_version.to_string(),
        entry.event_start_time.clone(),
        entry.event_type.clone(),
        entry.operation.clone(),
        opt(&entry.object),
        opt(&entry.object_type),
        opt(&entry.object_id),
        entry.event_result.clone(),
        entry.event_result_details.clone(),
        entry.actor_username.clone(),
        entry.actor_role.clone(),
        opt(&entry.force),
        opt(&entry.src_ip_addr),
        opt(&entry.http_user_agent),
        opt(&entry.correlation_id),
        entry.event_uid.clone(),
        match &entry.additional_fields {
            Some(v) if !v.is_null() => v.to_string(),
            _ => String::new(),
        },
    ]
}

/// The CSV cells of a pruned record: `Seq`, `LeafHash`, every other cell empty.
pub(crate) fn pruned_cells(seq: u64, leaf: &Hash) -> Vec<String> {
    let mut cells = vec![String::new(); CSV_COLUMNS.len()];
    cells[0] = seq.to_string();
    cells[1] = hex::encode(leaf);
    cells
}

/// The `records.jsonl` line of a pruned record: `{"LeafHash":…,"Pruned":true,"Seq":…}`.
pub(crate) fn pruned_jsonl_line(seq: u64, leaf: &Hash) -> String {
    serde_json::json!({"Seq": seq, "LeafHash": hex::encode(leaf), "Pruned": true}).to_string()
}

/// One row of the records file: a record, or what is left of a pruned one.
#[derive(Debug, Clone)]
pub(crate) enum RowBody {
    /// A whole record.
    Entry(AuditEntry),
    /// A record whose content audit retention removed: only its sequence number is left (the
    /// leaf hash is the row's `LeafHash`).
    Pruned(u64),
}

impl RowBody {
    pub(crate) fn seq(&self) -> u64 {
        match self {
            RowBody::Entry(e) => e.seq,
            RowBody::Pruned(s) => *s,
        }
    }
}

/// Reads a CSV row: a pruned row (`Seq`, `LeafHash` and nothing else) or a record.
pub(crate) fn cells_row(cells: &[String]) -> Result<(RowBody, String), String> {
    if cells.len() == CSV_COLUMNS.len() && cells[2..].iter().all(String::is_empty) {
        let seq = cells[0]
            .parse::<u64>()
            .map_err(|_| "Seq: not a sequence number".to_owned())?;
        return Ok((RowBody::Pruned(seq), cells[1].clone()));
    }
    cells_entry(cells).map(|(e, l)| (RowBody::Entry(e), l))
}

/// Rebuilds an entry from unescaped CSV cells; returns it with the `LeafHash` cell. The error
/// names the column.
pub(crate) fn cells_entry(cells: &[String]) -> Result<(AuditEntry, String), String> {
    if cells.len() != CSV_COLUMNS.len() {
        return Err(format!(
            "row has {} cells, the header {}",
            cells.len(),
            CSV_COLUMNS.len()
        ));
    }
    let opt = |i: usize| Some(cells[i].clone()).filter(|s| !s.is_empty());
    let seq = cells[0]
        .parse::<u64>()
        .map_err(|_| "Seq: not a sequence number".to_owned())?;
    let entry_version = cells[2]
        .parse::<u32>()
        .map_err(|_| "EntryVersion: not a number".to_owned())?;
    let additional_fields = if cells[18].is_empty() {
        None
    } else {
        Some(
            serde_json::from_str::<serde_json::Value>(&cells[18])
                .map_err(|e| format!("AdditionalFields: not JSON: {e}"))?,
        )
    };
    Ok((
        AuditEntry {
            seq,
            entry_version,
            event_start_time: cells[3].clone(),
            event_type: cells[4].clone(),
            operation: cells[5].clone(),
            object: opt(6),
            object_type: opt(7),
            object_id: opt(8),
            event_result: cells[9].clone(),
            event_result_details: cells[10].clone(),
            actor_username: cells[11].clone(),
            actor_role: cells[12].clone(),
            force: opt(13),
            src_ip_addr: opt(14),
            http_user_agent: opt(15),
            correlation_id: opt(16),
            event_uid: cells[17].clone(),
            additional_fields,
        },
        cells[1].clone(),
    ))
}

/// The JSON object of one `records.jsonl` line: the entry's fields plus `LeafHash`.
pub(crate) fn jsonl_line(entry: &AuditEntry, leaf: &Hash) -> Result<String, LedgerError> {
    let mut v = serde_json::to_value(entry).map_err(|e| LedgerError::Canonical {
        seq: entry.seq,
        reason: e.to_string(),
    })?;
    if let serde_json::Value::Object(m) = &mut v {
        m.insert("LeafHash".into(), hex::encode(leaf).into());
    }
    Ok(v.to_string())
}

/// A JSON object that remembers duplicate keys (which `serde_json::Map` silently merges).
struct StrictObject(Vec<(String, serde_json::Value)>);

impl<'de> Deserialize<'de> for StrictObject {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = StrictObject;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<StrictObject, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, serde_json::Value>()? {
                    out.push((k, v));
                }
                Ok(StrictObject(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// Parses one `records.jsonl` line: a pruned row (exactly `Seq`, `LeafHash` and
/// `"Pruned": true`) or a record.
pub(crate) fn parse_jsonl_row(line: &str) -> Result<(RowBody, String), String> {
    if let Ok(StrictObject(obj)) = serde_json::from_str::<StrictObject>(line)
        && obj.iter().any(|(k, _)| k == "Pruned")
    {
        let mut keys: Vec<&str> = obj.iter().map(|(k, _)| k.as_str()).collect();
        keys.sort_unstable();
        if keys != ["LeafHash", "Pruned", "Seq"] {
            return Err("a pruned row holds exactly Seq, LeafHash and Pruned".into());
        }
        let get = |k: &str| obj.iter().find(|(n, _)| n == k).map(|(_, v)| v);
        if get("Pruned") != Some(&serde_json::Value::Bool(true)) {
            return Err("Pruned: must be true".into());
        }
        let seq = get("Seq")
            .and_then(serde_json::Value::as_u64)
            .ok_or("Seq: not a sequence number")?;
        let leaf = get("LeafHash")
            .and_then(serde_json::Value::as_str)
            .ok_or("LeafHash: not a string")?;
        return Ok((RowBody::Pruned(seq), leaf.to_owned()));
    }
    parse_jsonl_line(line).map(|(e, l)| (RowBody::Entry(e), l))
}

/// Parses one `records.jsonl` line into the entry and its `LeafHash` value.
pub(crate) fn parse_jsonl_line(line: &str) -> Result<(AuditEntry, String), String> {
    let obj: StrictObject =
        serde_json::from_str(line).map_err(|e| format!("not a JSON object: {e}"))?;
    let mut map = serde_json::Map::new();
    let mut leaf = None;
    for (k, v) in obj.0 {
        if map.contains_key(&k) || (k == "LeafHash" && leaf.is_some()) {
            return Err(format!("{k}: appears twice"));
        }
        if k == "LeafHash" {
            leaf = Some(v.as_str().ok_or("LeafHash: not a string")?.to_owned());
        } else {
            map.insert(k, v);
        }
    }
    let leaf = leaf.ok_or("LeafHash: missing")?;
    let entry: AuditEntry =
        serde_json::from_value(serde_json::Value::Object(map)).map_err(|e| e.to_string())?;
    Ok((entry, leaf))
}

/// A writer that hashes everything written through it.
pub(crate) struct HashingWriter<W: Write> {
    inner: W,
    hasher: Sha256,
}

impl<W: Write> HashingWriter<W> {
    pub(crate) fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
        }
    }

    /// Flushes and returns the inner writer and the hex SHA-256 of all bytes written.
    pub(crate) fn finish(mut self) -> std::io::Result<(W, String)> {
        self.inner.flush()?;
        Ok((self.inner, hex::encode(self.hasher.finalize())))
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Splits `checkpoints.txt` into signed notes: each is non-empty body lines, one blank line,
/// signature lines; notes are separated by one blank line. Returns each note with the line it
/// starts on (1-based).
pub(crate) fn split_notes(text: &str) -> Result<Vec<(u64, String)>, String> {
    let mut notes = Vec::new();
    let mut current = String::new();
    let mut start = 0u64;
    // 0 = body, 1 = signatures.
    let mut state = 0u8;
    let mut lines = text.split('\n').enumerate().peekable();
    while let Some((i, line)) = lines.next() {
        let number = i as u64 + 1;
        let last = lines.peek().is_none();
        if last {
            if !line.is_empty() {
                return Err(format!("line {number}: the file must end in a newline"));
            }
            break;
        }
        match (state, line.is_empty()) {
            (0, false) => {
                if current.is_empty() {
                    start = number;
                }
                current.push_str(line);
                current.push('\n');
            }
            (0, true) => {
                if current.is_empty() {
                    return Err(format!("line {number}: unexpected blank line"));
                }
                current.push('\n');
                state = 1;
            }
            (_, false) => {
                current.push_str(line);
                current.push('\n');
            }
            (_, true) => {
                notes.push((start, std::mem::take(&mut current)));
                state = 0;
            }
        }
    }
    if !current.is_empty() {
        if state == 0 {
            return Err(format!("line {start}: a checkpoint has no signatures"));
        }
        notes.push((start, current));
    }
    Ok(notes)
}
