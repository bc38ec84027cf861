//! [`verify_bundle`]: checks an auditor bundle offline, with no database.
//!
//! Phases, in the order their findings are reported:
//! 1. keys and checkpoints — `public-key.txt` parses (and matches the pinned keys, if any, and
//!    the manifest's key); every checkpoint in `checkpoints.txt` is well formed, has the
//!    manifest's origin, grows, and is signed by a bundle key;
//! 2. consistency — a verified consistency proof joins every two consecutive checkpoints;
//! 3. records — every row is re-hashed from *all* its columns (CSV cells unescaped exactly as
//!    written) and compared with its `LeafHash`; sequence numbers run without gaps (full
//!    export) or strictly upward (filtered export); a full export's recomputed roots must equal
//!    each checkpoint's signed root; a filtered export's rows must each be proven by an
//!    inclusion proof against a verified checkpoint;
//! 4. the tail — a full export must reach the newest checkpoint's tree size;
//! 5. the manifest — `manifest.sig` is signed by a bundle key over `manifest.json`'s SHA-256, the
//!    counts match, and every file's SHA-256 matches the manifest.
//!
//! Memory is O(log n) for the tree plus the consistency proofs (a few hashes per checkpoint);
//! records and inclusion proofs are streamed, in step with each other. Rows that came out of
//! order in a filtered export keep their proofs in memory until their record turns up.

use super::super::LedgerError;
use super::super::checkpoint::Checkpoint;
use super::super::note::{NoteVerdict, SignedNote, VerifierKey};
use super::super::tree::{
    Frontier, Hash, parse_hex_hash, root_from_inclusion_proof, verify_consistency,
};
use super::{
    CSV_COLUMNS, FORMAT_VERSION, Manifest, ProofLine, RecordFormat, RowBody, cells_row, files,
    manifest_note_text, parse_jsonl_row, parse_path, split_notes, unescape_cell,
};
use crate::ledger::retention::{DELETION_OPERATION, PruneCoverage};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::ops::Range;
use std::path::Path;

/// Most problems listed in one report; verification stops collecting beyond this.
pub const MAX_PROBLEMS: usize = 1000;

/// What kind of tampering (or damage) a problem shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// A record's columns do not hash to its leaf hash (or to the leaf its proof proves), or a
    /// row cannot be read as a record.
    EditedRecord,
    /// A record is missing from the middle of the export (a gap in the sequence).
    DeletedRecord,
    /// Records are out of sequence order.
    ReorderedRecords,
    /// A record appears twice, or beyond the newest checkpoint.
    InsertedRecord,
    /// The export ends before the newest checkpoint's tree size.
    TruncatedTail,
    /// The key in `public-key.txt` is not the key the checkpoints (or manifest) were signed with,
    /// or not the pinned key.
    SwappedKey,
    /// A checkpoint is malformed, its signature does not verify, or it breaks the order.
    ForgedCheckpoint,
    /// A checkpoint's signed root does not match the records: either the records between it and
    /// the previous checkpoint were altered with their leaf hashes recomputed, or the checkpoint
    /// was forged by the key holder.
    RootMismatch,
    /// A consistency or inclusion proof is missing, malformed or does not verify.
    TamperedProof,
    /// A CSV cell starts with a formula character without the escaping `'`: the file was edited
    /// (and a spreadsheet would run it).
    FormulaNotEscaped,
    /// The manifest, its signature, or a file's digest does not match.
    ManifestMismatch,
    /// A record's content was removed (a pruned row) and no deletion record
    /// (`audit.retention.deleted`, covered by a signed checkpoint) names it: a silent deletion.
    UnexplainedPrune,
}

impl std::fmt::Display for ProblemKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ProblemKind::EditedRecord => "edited record",
            ProblemKind::DeletedRecord => "deleted record",
            ProblemKind::ReorderedRecords => "reordered records",
            ProblemKind::InsertedRecord => "inserted record",
            ProblemKind::TruncatedTail => "truncated tail",
            ProblemKind::SwappedKey => "swapped signing key",
            ProblemKind::ForgedCheckpoint => "forged checkpoint",
            ProblemKind::RootMismatch => "records do not match a signed root",
            ProblemKind::TamperedProof => "tampered proof",
            ProblemKind::FormulaNotEscaped => "unescaped formula cell",
            ProblemKind::ManifestMismatch => "manifest mismatch",
            ProblemKind::UnexplainedPrune => "unexplained pruned record",
        })
    }
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// What kind.
    pub kind: ProblemKind,
    /// The file it is in.
    pub file: String,
    /// The record's sequence number, when it concerns one record.
    pub seq: Option<u64>,
    /// The line in `file` (1-based), when known.
    pub line: Option<u64>,
    /// The checkpoint (1-based position in `checkpoints.txt`), when it concerns one.
    pub checkpoint: Option<u64>,
    /// A sentence saying what is wrong.
    pub detail: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.kind)?;
        if let Some(s) = self.seq {
            write!(f, " at record {s}")?;
        }
        if let Some(c) = self.checkpoint {
            write!(f, " at checkpoint #{c}")?;
        }
        write!(f, " ({}", self.file)?;
        if let Some(l) = self.line {
            write!(f, " line {l}")?;
        }
        write!(f, "): {}", self.detail)
    }
}

/// Options for [`verify_bundle_with`].
#[derive(Default)]
pub struct VerifyOptions {
    /// The ledger key(s) the auditor trusts, obtained out of band (e.g. the force's published
    /// `vkey`). Without them a bundle can only be checked against its own `public-key.txt`, and
    /// a forger who re-signs everything with a new key is not caught.
    pub trusted_keys: Vec<VerifierKey>,
    /// Called with the number of records checked so far.
    pub progress: Option<Box<dyn FnMut(u64) + Send>>,
}

impl std::fmt::Debug for VerifyOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyOptions")
            .field("trusted_keys", &self.trusted_keys)
            .finish_non_exhaustive()
    }
}

/// The result of checking a bundle.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    /// The manifest as read.
    pub manifest: Manifest,
    /// Records read.
    pub records: u64,
    /// Sequence number of the first record read.
    pub first_seq: Option<u64>,
    /// Sequence number of the last record read.
    pub last_seq: Option<u64>,
    /// Checkpoints whose signature verified.
    pub checkpoints_verified: u64,
    /// Consistency proofs verified.
    pub consistency_proofs_verified: u64,
    /// Inclusion proofs verified.
    pub inclusion_proofs_verified: u64,
    /// The keys signatures were checked against (`vkey` form).
    pub keys: Vec<String>,
    /// Whether those keys were pinned by the caller rather than taken from the bundle.
    pub key_pinned: bool,
    /// Everything wrong, in phase order (see the module docs); empty when the bundle is intact.
    pub problems: Vec<Problem>,
}

impl VerifyReport {
    /// Whether no problem was found.
    pub fn is_intact(&self) -> bool {
        self.problems.is_empty()
    }

    /// The first problem: the one to name.
    pub fn first_problem(&self) -> Option<&Problem> {
        self.problems.first()
    }
}

/// Checks the bundle in `dir` against its own `public-key.txt`.
pub fn verify_bundle(dir: &Path) -> Result<VerifyReport, LedgerError> {
    verify_bundle_with(dir, VerifyOptions::default())
}

fn read(dir: &Path, name: &str) -> Result<Vec<u8>, LedgerError> {
    let p = dir.join(name);
    std::fs::read(&p).map_err(|e| LedgerError::io(&p, e))
}

fn read_text(dir: &Path, name: &str) -> Result<String, LedgerError> {
    String::from_utf8(read(dir, name)?).map_err(|_| LedgerError::Bundle {
        file: name.into(),
        reason: "not UTF-8".into(),
    })
}

#[derive(Default)]
struct Problems {
    list: Vec<Problem>,
}

impl Problems {
    fn push(
        &mut self,
        kind: ProblemKind,
        file: &str,
        seq: Option<u64>,
        line: Option<u64>,
        checkpoint: Option<u64>,
        detail: impl Into<String>,
    ) {
        if self.list.len() < MAX_PROBLEMS {
            self.list.push(Problem {
                kind,
                file: file.to_owned(),
                seq,
                line,
                checkpoint,
                detail: detail.into(),
            });
        }
    }
}

/// A checkpoint as found in `checkpoints.txt`.
struct FoundCp {
    number: u64,
    cp: Checkpoint,
    valid: bool,
}

/// Checks the bundle in `dir`. `Err` means the bundle cannot be read at all (a missing file, an
/// unreadable manifest); every other defect is a [`Problem`] in the report.
pub fn verify_bundle_with(
    dir: &Path,
    mut opts: VerifyOptions,
) -> Result<VerifyReport, LedgerError> {
    let manifest_bytes = read(dir, files::MANIFEST)?;
    let manifest: Manifest =
        serde_json::from_slice(&manifest_bytes).map_err(|e| LedgerError::Bundle {
            file: files::MANIFEST.into(),
            reason: e.to_string(),
        })?;
    if manifest.format_version != FORMAT_VERSION {
        return Err(LedgerError::Bundle {
            file: files::MANIFEST.into(),
            reason: format!(
                "format version {} is not supported (this verifier reads {FORMAT_VERSION})",
                manifest.format_version
            ),
        });
    }

    let mut p1 = Problems::default();
    let keys = check_keys(dir, &manifest, &opts, &mut p1)?;
    let cps = check_checkpoints(dir, &manifest, &keys, &mut p1)?;

    let mut p2 = Problems::default();
    let (consistency_ok, failures) = check_consistency(dir, &cps, &mut p2)?;

    let mut p3 = Problems::default();
    let mut p4 = Problems::default();
    let stats = check_records(
        dir,
        &manifest,
        &cps,
        opts.progress.as_mut(),
        &mut p3,
        &mut p4,
    )?;
    classify(manifest.full, &cps, failures, &stats, &mut p2, &mut p3);

    let mut p5 = Problems::default();
    check_manifest(
        dir,
        &manifest,
        &manifest_bytes,
        &keys,
        &cps,
        &stats,
        &mut p5,
    )?;

    let mut problems = p1.list;
    problems.extend(p2.list);
    let mut records = p3.list;
    records.sort_by_key(|p| (p.line.unwrap_or(u64::MAX), p.seq.unwrap_or(u64::MAX)));
    problems.extend(records);
    problems.extend(p4.list);
    problems.extend(p5.list);
    problems.truncate(MAX_PROBLEMS);

    Ok(VerifyReport {
        manifest,
        records: stats.records,
        first_seq: stats.first_seq,
        last_seq: stats.last_seq,
        checkpoints_verified: cps.iter().filter(|c| c.valid).count() as u64,
        consistency_proofs_verified: consistency_ok,
        inclusion_proofs_verified: stats.inclusion_ok,
        keys: keys.iter().map(ToString::to_string).collect(),
        key_pinned: !opts.trusted_keys.is_empty(),
        problems,
    })
}

fn check_keys(
    dir: &Path,
    manifest: &Manifest,
    opts: &VerifyOptions,
    p: &mut Problems,
) -> Result<Vec<VerifierKey>, LedgerError> {
    let text = read_text(dir, files::PUBLIC_KEY)?;
    let mut file_keys = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match VerifierKey::parse(line) {
            Ok(k) => file_keys.push(k),
            Err(e) => p.push(
                ProblemKind::SwappedKey,
                files::PUBLIC_KEY,
                None,
                Some(i as u64 + 1),
                None,
                format!("not a verifier key: {e}"),
            ),
        }
    }
    if let Some(first) = file_keys.first()
        && first.to_string() != manifest.key
    {
        p.push(
            ProblemKind::SwappedKey,
            files::PUBLIC_KEY,
            None,
            Some(1),
            None,
            format!(
                "the bundle's key is {first} but the manifest says the ledger key is {}",
                manifest.key
            ),
        );
    }
    if opts.trusted_keys.is_empty() {
        if file_keys.is_empty() {
            p.push(
                ProblemKind::SwappedKey,
                files::PUBLIC_KEY,
                None,
                None,
                None,
                "no usable verifier key",
            );
        }
        return Ok(file_keys);
    }
    for k in &file_keys {
        if !opts.trusted_keys.contains(k) {
            p.push(
                ProblemKind::SwappedKey,
                files::PUBLIC_KEY,
                None,
                None,
                None,
                format!(
                    "the bundle's key {k} is not a trusted key ({})",
                    opts.trusted_keys
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
        }
    }
    Ok(opts.trusted_keys.clone())
}

fn key_list(keys: &[(String, u32)]) -> String {
    keys.iter()
        .map(|(n, id)| format!("{n}+{id:08x}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn check_checkpoints(
    dir: &Path,
    manifest: &Manifest,
    keys: &[VerifierKey],
    p: &mut Problems,
) -> Result<Vec<FoundCp>, LedgerError> {
    let file = files::CHECKPOINTS;
    let text = read_text(dir, file)?;
    let notes = match split_notes(&text) {
        Ok(n) => n,
        Err(e) => {
            p.push(ProblemKind::ForgedCheckpoint, file, None, None, None, e);
            return Ok(Vec::new());
        }
    };
    let mut out: Vec<FoundCp> = Vec::new();
    for (i, (line, note)) in notes.iter().enumerate() {
        let number = i as u64 + 1;
        let (cp, parsed) = match Checkpoint::parse_unverified(note) {
            Ok(x) => x,
            Err(e) => {
                p.push(
                    ProblemKind::ForgedCheckpoint,
                    file,
                    None,
                    Some(*line),
                    Some(number),
                    format!("malformed: {e}"),
                );
                continue;
            }
        };
        let mut valid = true;
        match parsed.check(keys) {
            NoteVerdict::Verified(_) => {}
            NoteVerdict::BadSignature { name, key_id } => {
                valid = false;
                p.push(
                    ProblemKind::ForgedCheckpoint,
                    file,
                    None,
                    Some(*line),
                    Some(number),
                    format!(
                        "checkpoint of size {}: the signature by {name}+{key_id:08x} does not \
                         verify (its text or signature was altered)",
                        cp.size
                    ),
                );
            }
            NoteVerdict::UnknownKeys(signed_by) => {
                valid = false;
                let known: Vec<(String, u32)> = keys
                    .iter()
                    .map(|k| (k.name().to_owned(), k.key_id()))
                    .collect();
                let why = if signed_by
                    .iter()
                    .any(|(n, id)| known.iter().any(|(kn, kid)| kid == id && kn != n))
                {
                    "the signature line names a different key name for the bundle's key id"
                } else {
                    "it is signed by a key that is not the bundle's key"
                };
                p.push(
                    ProblemKind::SwappedKey,
                    file,
                    None,
                    Some(*line),
                    Some(number),
                    format!(
                        "checkpoint of size {}: {why} (signed by {}; bundle key {})",
                        cp.size,
                        key_list(&signed_by),
                        key_list(&known)
                    ),
                );
            }
        }
        if valid && cp.origin != manifest.origin {
            valid = false;
            p.push(
                ProblemKind::ForgedCheckpoint,
                file,
                None,
                Some(*line),
                Some(number),
                format!(
                    "origin {:?} is not the log's origin {:?}",
                    cp.origin, manifest.origin
                ),
            );
        }
        if valid
            && let Some(prev) = out.iter().rev().find(|c| c.valid)
            && prev.cp.size >= cp.size
        {
            valid = false;
            p.push(
                ProblemKind::ForgedCheckpoint,
                file,
                None,
                Some(*line),
                Some(number),
                format!(
                    "tree size {} does not grow from the previous checkpoint's {}",
                    cp.size, prev.cp.size
                ),
            );
        }
        out.push(FoundCp { number, cp, valid });
    }
    if out.is_empty() {
        p.push(
            ProblemKind::ForgedCheckpoint,
            file,
            None,
            None,
            None,
            "no checkpoint",
        );
    }
    Ok(out)
}

/// A consistency proof between checkpoints `cps[pair]` and `cps[pair + 1]` that failed.
struct ConsistencyFailure {
    pair: usize,
    line: Option<u64>,
    detail: String,
}

/// The numbered lines of `proofs.jsonl`, read lazily.
fn proof_lines(
    dir: &Path,
) -> Result<impl Iterator<Item = (u64, std::io::Result<String>)>, LedgerError> {
    let path = dir.join(files::PROOFS);
    let f = std::fs::File::open(&path).map_err(|e| LedgerError::io(&path, e))?;
    Ok(BufReader::new(f)
        .lines()
        .enumerate()
        .map(|(i, l)| (i as u64 + 1, l)))
}

/// The inclusion proofs of `proofs.jsonl` with their line numbers, read lazily (lines that do
/// not parse were reported by [`check_consistency`]).
fn inclusion_proofs(dir: &Path) -> Result<impl Iterator<Item = (u64, ProofLine)>, LedgerError> {
    Ok(proof_lines(dir)?.filter_map(|(n, l)| {
        let line = l.ok()?;
        match serde_json::from_str::<ProofLine>(&line).ok()? {
            p @ ProofLine::Inclusion { .. } => Some((n, p)),
            ProofLine::Consistency { .. } => None,
        }
    }))
}

/// Verifies the consistency proofs between consecutive verified checkpoints; returns how many
/// verified and the failures (classified later, when the records are known).
fn check_consistency(
    dir: &Path,
    cps: &[FoundCp],
    p: &mut Problems,
) -> Result<(u64, Vec<ConsistencyFailure>), LedgerError> {
    let file = files::PROOFS;
    let mut consistency: HashMap<(u64, u64), (u64, Vec<String>)> = HashMap::new();
    for (n, line) in proof_lines(dir)? {
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                p.push(
                    ProblemKind::TamperedProof,
                    file,
                    None,
                    Some(n),
                    None,
                    format!("unreadable line: {e}"),
                );
                continue;
            }
        };
        match serde_json::from_str::<ProofLine>(&line) {
            Ok(ProofLine::Consistency {
                old_size,
                new_size,
                path,
            }) => {
                if consistency
                    .insert((old_size, new_size), (n, path))
                    .is_some()
                {
                    p.push(
                        ProblemKind::TamperedProof,
                        file,
                        None,
                        Some(n),
                        None,
                        format!("a second consistency proof from {old_size} to {new_size}"),
                    );
                }
            }
            Ok(ProofLine::Inclusion { .. }) => {}
            Err(e) => p.push(
                ProblemKind::TamperedProof,
                file,
                None,
                Some(n),
                None,
                format!("not a proof line: {e}"),
            ),
        }
    }
    // Pairs with an unverified checkpoint are skipped: that checkpoint is reported already.
    let mut failures = Vec::new();
    let mut verified = 0;
    for (pair, w) in cps.windows(2).enumerate() {
        let (a, b) = (&w[0], &w[1]);
        if !a.valid || !b.valid {
            continue;
        }
        let Some((line, path)) = consistency.get(&(a.cp.size, b.cp.size)) else {
            failures.push(ConsistencyFailure {
                pair,
                line: None,
                detail: format!(
                    "no consistency proof from checkpoint #{} (size {}) to #{} (size {})",
                    a.number, a.cp.size, b.number, b.cp.size
                ),
            });
            continue;
        };
        let result = match parse_path(path) {
            Some(path) => verify_consistency(a.cp.size, b.cp.size, &a.cp.root, &b.cp.root, &path)
                .map_err(|e| e.to_string()),
            None => Err("a hash is not 64 hex digits".to_owned()),
        };
        match result {
            Ok(()) => verified += 1,
            Err(e) => failures.push(ConsistencyFailure {
                pair,
                line: Some(*line),
                detail: format!(
                    "consistency proof from checkpoint #{} (size {}) to #{} (size {}) does not \
                     verify: {e}",
                    a.number, a.cp.size, b.number, b.cp.size
                ),
            }),
        }
    }
    Ok((verified, failures))
}

/// Decides what failed consistency proofs and mismatching roots mean.
///
/// In a full export the records arbitrate: a checkpoint whose signed root the records do not
/// reproduce, while a *later* checkpoint's root they do, is forged (signed, but not a state of
/// this log); when the records reproduce no root from some checkpoint on, the records were
/// altered, and proofs touching those checkpoints fail as a consequence. In a filtered export
/// a checkpoint whose proofs to both neighbours fail is the forged one; otherwise the proof is.
fn classify(
    full: bool,
    cps: &[FoundCp],
    failures: Vec<ConsistencyFailure>,
    stats: &RecordStats,
    p2: &mut Problems,
    p3: &mut Problems,
) {
    let proofs = files::PROOFS;
    if full {
        let matched = |i: usize| stats.roots.get(&cps[i].number).map(|r| r.matched);
        let valid: Vec<usize> = (0..cps.len()).filter(|&i| cps[i].valid).collect();
        let forged: Vec<usize> = valid
            .iter()
            .copied()
            .filter(|&i| {
                matched(i) == Some(false)
                    && valid.iter().any(|&j| j > i && matched(j) == Some(true))
            })
            .collect();
        for &i in &forged {
            p2.push(
                ProblemKind::ForgedCheckpoint,
                files::CHECKPOINTS,
                None,
                None,
                Some(cps[i].number),
                format!(
                    "checkpoint #{} (size {}) is signed, but its root is not the root of the \
                     records it covers, while a later checkpoint's is: it is not a state of \
                     this log",
                    cps[i].number, cps[i].cp.size
                ),
            );
        }
        for f in failures {
            let (a, b) = (f.pair, f.pair + 1);
            if forged.contains(&a) || forged.contains(&b) {
                continue;
            }
            if matched(a) == Some(false) || matched(b) == Some(false) {
                // The records were altered; reported below.
                continue;
            }
            p2.push(
                ProblemKind::TamperedProof,
                proofs,
                None,
                f.line,
                Some(cps[b].number),
                f.detail,
            );
        }
        if !stats.record_problem
            && let Some(i) = valid
                .iter()
                .copied()
                .find(|&i| matched(i) == Some(false) && !forged.contains(&i))
            && let Some(root) = stats.roots.get(&cps[i].number)
        {
            p3.push(
                ProblemKind::RootMismatch,
                stats.file,
                Some(root.from),
                Some(root.line),
                Some(cps[i].number),
                format!(
                    "records {}..={} do not hash to checkpoint #{}'s signed root: one of them \
                     was altered together with its LeafHash, or records were inserted or \
                     removed with renumbering",
                    root.from, cps[i].cp.size, cps[i].number
                ),
            );
        }
        return;
    }
    let mut i = 0;
    while i < failures.len() {
        let f = &failures[i];
        if let Some(g) = failures.get(i + 1)
            && g.pair == f.pair + 1
        {
            let cp = &cps[g.pair];
            p2.push(
                ProblemKind::ForgedCheckpoint,
                files::CHECKPOINTS,
                None,
                None,
                Some(cp.number),
                format!(
                    "checkpoint #{} (size {}) is consistent with neither its predecessor nor its \
                     successor: its root is not a state of this log",
                    cp.number, cp.cp.size
                ),
            );
            i += 2;
            continue;
        }
        p2.push(
            ProblemKind::TamperedProof,
            proofs,
            None,
            f.line,
            Some(cps[f.pair + 1].number),
            f.detail.clone(),
        );
        i += 1;
    }
}

/// Whether the records reproduce a checkpoint's root (full exports).
struct RootCheck {
    matched: bool,
    /// The line of the record that completed the checkpoint's tree.
    line: u64,
    /// The first record after the previous verified checkpoint.
    from: u64,
}

#[derive(Default)]
struct RecordStats {
    file: &'static str,
    records: u64,
    first_seq: Option<u64>,
    last_seq: Option<u64>,
    inclusion_ok: u64,
    /// Root checks by checkpoint number.
    roots: HashMap<u64, RootCheck>,
    /// Whether any record-level problem was found (mismatching roots are then its
    /// consequence).
    record_problem: bool,
}

/// One row of the records file.
struct Row {
    line: u64,
    seq: Option<u64>,
    parsed: Result<(RowBody, String), String>,
    formula: Option<(String, char)>,
}

enum RowSource {
    Csv(csv::Reader<std::fs::File>),
    Jsonl(std::io::Lines<BufReader<std::fs::File>>, u64),
}

/// Reads rows; after a read error (reported as a row) it stops, so that a failing reader can
/// never loop.
struct RowReader {
    source: RowSource,
    done: bool,
}

impl RowReader {
    fn next(&mut self) -> Option<Row> {
        if self.done {
            return None;
        }
        let row = self.read();
        if let Some(r) = &row
            && r.parsed
                .as_ref()
                .is_err_and(|e| e.starts_with("unreadable"))
        {
            self.done = true;
        }
        row
    }

    fn read(&mut self) -> Option<Row> {
        match &mut self.source {
            RowSource::Csv(r) => {
                let mut rec = csv::StringRecord::new();
                match r.read_record(&mut rec) {
                    Ok(false) => None,
                    Ok(true) => {
                        let line = rec.position().map_or(0, |p| p.line());
                        let mut formula = None;
                        let cells: Vec<String> = rec
                            .iter()
                            .enumerate()
                            .map(|(i, c)| match unescape_cell(c) {
                                Ok(v) => v.to_owned(),
                                Err(ch) => {
                                    formula.get_or_insert((
                                        CSV_COLUMNS.get(i).copied().unwrap_or("?").to_owned(),
                                        ch,
                                    ));
                                    c.to_owned()
                                }
                            })
                            .collect();
                        let seq = cells.first().and_then(|s| s.parse().ok());
                        Some(Row {
                            line,
                            seq,
                            parsed: cells_row(&cells),
                            formula,
                        })
                    }
                    Err(e) => {
                        let line = e.position().map_or(0, |p| p.line());
                        // An unreadable row (bad UTF-8, wrong cell count): report it and go on
                        // if the reader can.
                        Some(Row {
                            line,
                            seq: None,
                            parsed: Err(format!("unreadable row: {e}")),
                            formula: None,
                        })
                    }
                }
            }
            RowSource::Jsonl(lines, n) => {
                let line = lines.next()?;
                *n += 1;
                let (parsed, seq) = match line {
                    Ok(l) => {
                        let parsed = parse_jsonl_row(&l);
                        let seq = match &parsed {
                            Ok((b, _)) => Some(b.seq()),
                            // Name the record if its Seq can still be read.
                            Err(_) => serde_json::from_str::<serde_json::Value>(&l)
                                .ok()
                                .and_then(|v| v.get("Seq").and_then(serde_json::Value::as_u64)),
                        };
                        (parsed, seq)
                    }
                    Err(e) => (Err(format!("unreadable line: {e}")), None),
                };
                Some(Row {
                    line: *n,
                    seq,
                    parsed,
                    formula: None,
                })
            }
        }
    }
}

fn open_rows(dir: &Path, manifest: &Manifest) -> Result<RowReader, LedgerError> {
    let name = manifest.records_format.file_name();
    let path = dir.join(name);
    let f = std::fs::File::open(&path).map_err(|e| LedgerError::io(&path, e))?;
    let source = match manifest.records_format {
        RecordFormat::Csv => {
            let mut r = csv::ReaderBuilder::new()
                .has_headers(true)
                .flexible(true)
                .from_reader(f);
            let headers = r.headers().map_err(|e| LedgerError::Bundle {
                file: name.into(),
                reason: format!("header: {e}"),
            })?;
            if headers.iter().ne(CSV_COLUMNS.iter().copied()) {
                return Err(LedgerError::Bundle {
                    file: name.into(),
                    reason: format!(
                        "line 1: the header must be exactly {}",
                        CSV_COLUMNS.join(",")
                    ),
                });
            }
            RowSource::Csv(r)
        }
        RecordFormat::Jsonl => RowSource::Jsonl(BufReader::new(f).lines(), 0),
    };
    Ok(RowReader {
        source,
        done: false,
    })
}

/// Sequence bookkeeping for a full export: finds gaps, reorders and duplicates.
struct SeqTracker {
    expected: u64,
    /// Missing sequence ranges with the line where each gap was seen and the row that jumped.
    gaps: Vec<(Range<u64>, u64, u64)>,
}

fn check_records(
    dir: &Path,
    manifest: &Manifest,
    cps: &[FoundCp],
    mut progress: Option<&mut Box<dyn FnMut(u64) + Send>>,
    p: &mut Problems,
    tail: &mut Problems,
) -> Result<RecordStats, LedgerError> {
    let file = manifest.records_format.file_name();
    let mut rows = open_rows(dir, manifest)?;
    let mut stats = RecordStats::default();
    let full = manifest.full;
    let valid: Vec<&FoundCp> = cps.iter().filter(|c| c.valid).collect();
    let by_size: HashMap<u64, &FoundCp> = cps.iter().map(|c| (c.cp.size, c)).collect();
    let tree_size = manifest.tree_size;

    let mut frontier = Frontier::new();
    let mut next_cp = 0usize;
    let mut record_problem = false;
    let mut tracker = SeqTracker {
        expected: 1,
        gaps: Vec::new(),
    };
    let mut last_seq_seen: Option<(u64, u64)> = None;
    let mut coverage = PruneCoverage::default();
    let mut proofs = inclusion_proofs(dir)?.peekable();
    // Inclusion proofs passed over (their record was not where expected): seq → (proof line,
    // proof, line where noticed, the record found there instead).
    let mut skipped: std::collections::BTreeMap<u64, (u64, ProofLine, u64, u64)> =
        std::collections::BTreeMap::new();

    while let Some(row) = rows.next() {
        stats.records += 1;
        if let Some(f) = progress.as_mut() {
            f(stats.records);
        }
        if let Some((column, ch)) = &row.formula {
            record_problem = true;
            p.push(
                ProblemKind::FormulaNotEscaped,
                file,
                row.seq,
                Some(row.line),
                None,
                format!("column {column} starts with {ch:?} without the escaping quote"),
            );
        }
        let (body, stated) = match row.parsed {
            Ok(x) => x,
            Err(e) => {
                record_problem = true;
                p.push(
                    ProblemKind::EditedRecord,
                    file,
                    row.seq,
                    Some(row.line),
                    None,
                    format!("the row is not a valid record: {e}"),
                );
                continue;
            }
        };
        let seq = body.seq();
        stats.first_seq.get_or_insert(seq);
        stats.last_seq = Some(seq);
        let leaf = match body {
            RowBody::Pruned(_) => {
                // Only the leaf hash is left: it goes into the tree as stated (a forged one
                // breaks the signed root or the inclusion proof), and a deletion record must
                // explain the removal (checked after the last row).
                let Some(leaf) = parse_hex_hash(&stated) else {
                    record_problem = true;
                    p.push(
                        ProblemKind::EditedRecord,
                        file,
                        Some(seq),
                        Some(row.line),
                        None,
                        format!("pruned record {seq}'s LeafHash is not 64 hex digits"),
                    );
                    continue;
                };
                coverage.pruned(seq, row.line);
                leaf
            }
            RowBody::Entry(entry) => {
                let leaf = match entry.leaf_hash() {
                    Ok(h) => h,
                    Err(e) => {
                        record_problem = true;
                        p.push(
                            ProblemKind::EditedRecord,
                            file,
                            Some(seq),
                            Some(row.line),
                            None,
                            e.to_string(),
                        );
                        continue;
                    }
                };
                if parse_hex_hash(&stated) != Some(leaf) {
                    record_problem = true;
                    p.push(
                        ProblemKind::EditedRecord,
                        file,
                        Some(seq),
                        Some(row.line),
                        None,
                        format!(
                            "record {seq}'s columns hash to {} but its LeafHash is {stated}: a \
                             column was changed",
                            hex::encode(leaf)
                        ),
                    );
                } else if entry.operation == DELETION_OPERATION {
                    // Only a deletion record whose columns hash to its leaf explains anything.
                    coverage.deletion(seq, entry.additional_fields.as_ref());
                }
                leaf
            }
        };

        if full {
            if seq > tree_size {
                record_problem = true;
                p.push(
                    ProblemKind::InsertedRecord,
                    file,
                    Some(seq),
                    Some(row.line),
                    None,
                    format!("record {seq} is beyond the newest checkpoint (tree size {tree_size})"),
                );
                continue;
            }
            if !tracker.check(seq, row.line, file, p) {
                record_problem = true;
            }
            frontier.push(leaf);
            while let Some(cp) = valid.get(next_cp)
                && cp.cp.size <= frontier.size()
            {
                if cp.cp.size == frontier.size() {
                    let from = next_cp
                        .checked_sub(1)
                        .and_then(|i| valid.get(i))
                        .map_or(1, |c| c.cp.size.saturating_add(1));
                    stats.roots.insert(
                        cp.number,
                        RootCheck {
                            matched: frontier.root() == cp.cp.root,
                            line: row.line,
                            from,
                        },
                    );
                }
                next_cp += 1;
            }
        } else {
            if let Some((prev, prev_line)) = last_seq_seen
                && seq <= prev
            {
                record_problem = true;
                // A record whose proof was passed over earlier came late: the rows were
                // reordered. Name the record that came early, and still check this one.
                if let Some((pline, proof, early_line, early_seq)) = skipped.remove(&seq) {
                    p.push(
                        ProblemKind::ReorderedRecords,
                        file,
                        Some(early_seq),
                        Some(early_line),
                        None,
                        format!(
                            "record {early_seq} (line {early_line}) comes before record {seq} \
                             (line {}): the rows are out of order",
                            row.line
                        ),
                    );
                    if check_inclusion(&proof, seq, &leaf, row.line, pline, &by_size, file, p) {
                        stats.inclusion_ok += 1;
                    }
                    continue;
                }
                let (kind, what) = if seq == prev {
                    (ProblemKind::InsertedRecord, "appears twice")
                } else {
                    (ProblemKind::ReorderedRecords, "comes after a later record")
                };
                p.push(
                    kind,
                    file,
                    Some(seq),
                    Some(row.line),
                    None,
                    format!("record {seq} {what} (record {prev} on line {prev_line})"),
                );
                continue;
            }
            last_seq_seen = Some((seq, row.line));
            // Inclusion proofs are in sequence order, in step with the records.
            loop {
                let Some((pline, ProofLine::Inclusion { seq: pseq, .. })) = proofs.peek() else {
                    record_problem = true;
                    p.push(
                        ProblemKind::TamperedProof,
                        files::PROOFS,
                        Some(seq),
                        Some(row.line),
                        None,
                        format!("record {seq} has no inclusion proof"),
                    );
                    break;
                };
                let (pline, pseq) = (*pline, *pseq);
                if pseq < seq {
                    // Its record is missing here: deleted, or (if it turns up later) moved.
                    if let Some((_, proof)) = proofs.next() {
                        skipped.insert(pseq, (pline, proof, row.line, seq));
                    }
                    continue;
                }
                if pseq > seq {
                    record_problem = true;
                    p.push(
                        ProblemKind::TamperedProof,
                        files::PROOFS,
                        Some(seq),
                        Some(row.line),
                        None,
                        format!("record {seq} has no inclusion proof"),
                    );
                    break;
                }
                if let Some((_, proof)) = proofs.next() {
                    if check_inclusion(&proof, seq, &leaf, row.line, pline, &by_size, file, p) {
                        stats.inclusion_ok += 1;
                    } else {
                        record_problem = true;
                    }
                }
                break;
            }
        }
    }

    if full {
        for (missing, line, jumped) in &tracker.gaps {
            p.push(
                ProblemKind::DeletedRecord,
                file,
                Some(missing.start),
                Some(*line),
                None,
                if missing.end - missing.start == 1 {
                    format!("record {} is missing before record {jumped}", missing.start)
                } else {
                    format!(
                        "records {}..={} are missing before record {jumped}",
                        missing.start,
                        missing.end - 1
                    )
                },
            );
        }
        let reached = tracker.expected - 1;
        if reached < tree_size {
            tail.push(
                ProblemKind::TruncatedTail,
                file,
                Some(reached + 1),
                None,
                None,
                format!(
                    "the records end at {reached} but the newest checkpoint covers {tree_size}: \
                     records {}..={tree_size} are missing",
                    reached + 1
                ),
            );
        }
    } else {
        for (seq, (pline, _, line, found)) in skipped {
            p.push(
                ProblemKind::DeletedRecord,
                file,
                Some(seq),
                Some(line),
                None,
                format!(
                    "proofs.jsonl line {pline} proves record {seq}, which is missing (record \
                     {found} is on line {line} instead)"
                ),
            );
        }
        for (pline, proof) in proofs {
            if let ProofLine::Inclusion { seq, .. } = proof {
                p.push(
                    ProblemKind::DeletedRecord,
                    file,
                    Some(seq),
                    None,
                    None,
                    format!(
                        "proofs.jsonl line {pline} proves record {seq}, which is not in the \
                         records"
                    ),
                );
            }
        }
        if valid.last().map(|c| c.cp.size) != Some(tree_size) {
            tail.push(
                ProblemKind::TruncatedTail,
                files::CHECKPOINTS,
                None,
                None,
                None,
                format!("no verified checkpoint of the manifest's tree size {tree_size}"),
            );
        }
    }
    // Every pruned row must be named by a deletion record under a verified checkpoint.
    let checkpointed = valid.last().map_or(0, |c| c.cp.size);
    if let Some((seq, line)) = coverage.first_unexplained(checkpointed) {
        record_problem = true;
        p.push(
            ProblemKind::UnexplainedPrune,
            file,
            Some(seq),
            (line != 0).then_some(line),
            None,
            format!(
                "record {seq} is a pruned row (its content was removed) but no \
                 {DELETION_OPERATION} record covered by a signed checkpoint names it: a silent \
                 deletion"
            ),
        );
    }
    stats.file = file;
    stats.record_problem = record_problem || !p.list.is_empty();
    Ok(stats)
}

#[allow(clippy::too_many_arguments)]
fn check_inclusion(
    proof: &ProofLine,
    seq: u64,
    leaf: &Hash,
    line: u64,
    pline: u64,
    by_size: &HashMap<u64, &FoundCp>,
    file: &str,
    p: &mut Problems,
) -> bool {
    let ProofLine::Inclusion {
        tree_size,
        leaf_hash,
        path,
        ..
    } = proof
    else {
        return false;
    };
    let mut bad_proof = |detail: String| {
        p.push(
            ProblemKind::TamperedProof,
            files::PROOFS,
            Some(seq),
            Some(pline),
            None,
            detail,
        );
        false
    };
    let Some(cp) = by_size.get(tree_size) else {
        return bad_proof(format!(
            "the inclusion proof of record {seq} names tree size {tree_size}, which no checkpoint has"
        ));
    };
    if !cp.valid {
        // Already reported as a checkpoint problem.
        return false;
    }
    let (Some(path), Some(proved_leaf)) = (parse_path(path), parse_hex_hash(leaf_hash)) else {
        return bad_proof(format!(
            "the inclusion proof of record {seq} has a hash that is not 64 hex digits"
        ));
    };
    let Some(index) = seq.checked_sub(1) else {
        return bad_proof("an inclusion proof for record 0, which cannot exist".into());
    };
    let proof_root = root_from_inclusion_proof(index, *tree_size, &proved_leaf, &path);
    let proof_ok = proof_root.as_ref() == Ok(&cp.cp.root);
    if proved_leaf != *leaf {
        if proof_ok {
            p.push(
                ProblemKind::EditedRecord,
                file,
                Some(seq),
                Some(line),
                None,
                format!(
                    "record {seq} hashes to {} but checkpoint #{} proves leaf {leaf_hash}: the \
                     record was changed",
                    hex::encode(leaf),
                    cp.number
                ),
            );
            return false;
        }
        return bad_proof(format!(
            "the inclusion proof of record {seq} is for another leaf and does not verify"
        ));
    }
    if proof_ok {
        true
    } else {
        bad_proof(format!(
            "the inclusion proof of record {seq} in checkpoint #{} (size {tree_size}) does not \
             verify{}",
            cp.number,
            proof_root
                .err()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        ))
    }
}

impl SeqTracker {
    /// Accounts for a row with sequence `seq`; false if it breaks the order.
    fn check(&mut self, seq: u64, line: u64, file: &str, p: &mut Problems) -> bool {
        if seq == self.expected {
            self.expected = self.expected.saturating_add(1);
            return true;
        }
        if seq > self.expected {
            self.gaps.push((self.expected..seq, line, seq));
            self.expected = seq.saturating_add(1);
            return false;
        }
        // seq < expected: either it fills a gap (the rows were reordered) or it repeats.
        if let Some(i) = self.gaps.iter().position(|(r, _, _)| r.contains(&seq)) {
            let (range, gap_line, jumped) = self.gaps.remove(i);
            p.push(
                ProblemKind::ReorderedRecords,
                file,
                Some(jumped),
                Some(gap_line),
                None,
                format!(
                    "record {jumped} (line {gap_line}) comes before record {seq} (line {line}): \
                     the rows are out of order"
                ),
            );
            if range.start < seq {
                self.gaps.push((range.start..seq, gap_line, jumped));
            }
            if seq + 1 < range.end {
                self.gaps.push((seq + 1..range.end, gap_line, jumped));
            }
        } else {
            p.push(
                ProblemKind::InsertedRecord,
                file,
                Some(seq),
                Some(line),
                None,
                format!("record {seq} appears a second time"),
            );
        }
        false
    }
}

fn check_manifest(
    dir: &Path,
    manifest: &Manifest,
    manifest_bytes: &[u8],
    keys: &[VerifierKey],
    cps: &[FoundCp],
    stats: &RecordStats,
    p: &mut Problems,
) -> Result<(), LedgerError> {
    let file = files::MANIFEST;
    let mut mismatch = |detail: String| {
        p.push(
            ProblemKind::ManifestMismatch,
            file,
            None,
            None,
            None,
            detail,
        );
    };
    match std::fs::read_to_string(dir.join(files::MANIFEST_SIG)) {
        Err(e) => mismatch(format!("{}: {e}", files::MANIFEST_SIG)),
        Ok(sig) => match SignedNote::parse(&sig) {
            Err(e) => mismatch(format!("{}: {e}", files::MANIFEST_SIG)),
            Ok(note) => {
                match note.check(keys) {
                    NoteVerdict::Verified(_) => {}
                    NoteVerdict::BadSignature { .. } => mismatch(format!(
                        "{}: the signature does not verify",
                        files::MANIFEST_SIG
                    )),
                    NoteVerdict::UnknownKeys(by) => mismatch(format!(
                        "{}: signed by {}, not by the bundle's key",
                        files::MANIFEST_SIG,
                        key_list(&by)
                    )),
                }
                if note.text != manifest_note_text(&manifest.origin, manifest_bytes) {
                    mismatch(
                        "manifest.json is not the manifest that manifest.sig signs: it was \
                         changed"
                            .into(),
                    );
                }
            }
        },
    }
    let records_name = manifest.records_format.file_name();
    if manifest.records_file != records_name {
        mismatch(format!(
            "records_file is {:?}, but records in {} format are in {records_name}",
            manifest.records_file,
            match manifest.records_format {
                RecordFormat::Csv => "csv",
                RecordFormat::Jsonl => "jsonl",
            }
        ));
    }
    if manifest.full != manifest.filters.is_full() {
        mismatch("`full` does not agree with the filters".into());
    }
    if stats.records != manifest.records {
        mismatch(format!(
            "the manifest lists {} records, the bundle has {}",
            manifest.records, stats.records
        ));
    }
    if (stats.first_seq, stats.last_seq) != (manifest.first_seq, manifest.last_seq) {
        mismatch(format!(
            "the manifest says records {:?}..{:?}, the bundle has {:?}..{:?}",
            manifest.first_seq, manifest.last_seq, stats.first_seq, stats.last_seq
        ));
    }
    if cps.len() as u64 != manifest.checkpoints {
        mismatch(format!(
            "the manifest lists {} checkpoints, the bundle has {}",
            manifest.checkpoints,
            cps.len()
        ));
    }
    for name in [
        records_name,
        files::CHECKPOINTS,
        files::PUBLIC_KEY,
        files::PROOFS,
    ] {
        let Some(want) = manifest.files.get(name) else {
            mismatch(format!("no digest for {name}"));
            continue;
        };
        let got = file_sha256(&dir.join(name))?;
        if *want != got {
            mismatch(format!(
                "{name} was changed after export (SHA-256 {got}, manifest {want})"
            ));
        }
    }
    Ok(())
}

/// The lower-case hex SHA-256 of a file, read in blocks.
fn file_sha256(path: &Path) -> Result<String, LedgerError> {
    use std::io::Read as _;
    let mut f = std::fs::File::open(path).map_err(|e| LedgerError::io(path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).map_err(|e| LedgerError::io(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}
