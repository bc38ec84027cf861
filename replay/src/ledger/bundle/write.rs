//! [`BundleWriter`]: streams the ledger into a bundle directory.
//!
//! The writer is fed *every* record from sequence 1 up to the newest checkpoint's tree size, in
//! order (records outside the filter may be fed as bare leaf hashes with
//! [`BundleWriter::push_leaf`]). It hashes each one into a [`Frontier`], writes the exported
//! ones, and builds proofs while streaming:
//!
//! - each consecutive pair of checkpoints gets a consistency proof;
//! - in a filtered export each exported record gets an inclusion proof against the *first
//!   checkpoint at or after it*; the consistency chain then carries it to the newest checkpoint.
//!
//! A proof's nodes are either already in the frontier when the proof is started or are completed
//! later by an append, so no leaf hash is kept: memory is O(log n) for the tree plus O(log n) per
//! proof still open — at most the exported records since the previous checkpoint. Cost: one
//! canonical-JSON serialisation and two SHA-256 per record read, whether exported or not (a
//! filtered export reads the whole ledger; feeding stored leaf hashes through `push_leaf` skips
//! the serialisation).

use super::super::LedgerError;
use super::super::checkpoint::Checkpoint;
use super::super::entry::AuditEntry;
use super::super::note::{NoteSigner, VerifierKey};
use super::super::tree::{Frontier, Hash, NodeId, consistency_ranges, inclusion_ranges};
use super::{
    ExportFilter, FORMAT_VERSION, HashingWriter, Manifest, ProofLine, RecordFormat, entry_cells,
    escape_cell, files, hex_path, jsonl_line, manifest_note_text,
};
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// What to export and how.
#[derive(Debug, Clone)]
pub struct BundleOptions {
    /// CSV or JSON lines.
    pub format: RecordFormat,
    /// Which records (everything when empty).
    pub filter: ExportFilter,
    /// Who is exporting (operator or API key), for the manifest.
    pub exported_by: String,
    /// When.
    pub exported_at: OffsetDateTime,
    /// Earlier public keys whose signatures older checkpoints carry (key rotation); the current
    /// key is the signer's.
    pub previous_keys: Vec<VerifierKey>,
}

/// Progress of a running export, for a progress bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Records (and bare leaf hashes) read so far.
    pub read: u64,
    /// Records written to the bundle so far.
    pub exported: u64,
    /// Records the export will read in all (the newest checkpoint's tree size).
    pub total: u64,
}

/// What an export wrote.
#[derive(Debug, Clone)]
pub struct BundleSummary {
    /// The manifest written.
    pub manifest: Manifest,
    /// Tree sizes of checkpoints whose signed root did not match the records read: the journal
    /// itself was altered. The bundle is still written, and will fail verification there.
    pub root_mismatches: Vec<u64>,
}

enum Records {
    Csv(csv::Writer<HashingWriter<BufWriter<File>>>),
    Jsonl(HashingWriter<BufWriter<File>>),
}

enum Pending {
    Inclusion {
        seq: u64,
        tree_size: u64,
        leaf: Hash,
    },
    Consistency {
        old: u64,
        new: u64,
    },
}

struct OpenProof {
    nodes: Vec<Option<Hash>>,
    missing: usize,
    what: Pending,
}

/// Proofs under construction, waiting for nodes that later appends complete.
#[derive(Default)]
struct Proofs {
    open: HashMap<usize, OpenProof>,
    next_id: usize,
    by_node: HashMap<NodeId, Vec<(usize, usize)>>,
    by_suffix: BTreeMap<u64, Vec<(u64, usize, usize)>>,
    done: Vec<OpenProof>,
}

impl Proofs {
    fn start(
        &mut self,
        ranges: &[Range<u64>],
        what: Pending,
        f: &Frontier,
    ) -> Result<(), LedgerError> {
        let id = self.next_id;
        self.next_id += 1;
        let mut p = OpenProof {
            nodes: vec![None; ranges.len()],
            missing: 0,
            what,
        };
        for (slot, r) in ranges.iter().enumerate() {
            if r.end <= f.size() {
                let h = NodeId::of_range(r)
                    .and_then(|n| f.node(n))
                    .or_else(|| {
                        (r.end == f.size())
                            .then(|| f.suffix_hash(r.start))
                            .flatten()
                    })
                    .ok_or_else(|| {
                        LedgerError::BundleInput(format!(
                            "internal: proof node {r:?} is not in the frontier of size {}",
                            f.size()
                        ))
                    })?;
                p.nodes[slot] = Some(h);
            } else if let Some(n) = NodeId::of_range(r) {
                self.by_node.entry(n).or_default().push((id, slot));
                p.missing += 1;
            } else {
                self.by_suffix
                    .entry(r.end)
                    .or_default()
                    .push((r.start, id, slot));
                p.missing += 1;
            }
        }
        if p.missing == 0 {
            self.done.push(p);
        } else {
            self.open.insert(id, p);
        }
        Ok(())
    }

    fn fill(&mut self, id: usize, slot: usize, h: Hash) {
        let complete = match self.open.get_mut(&id) {
            Some(p) => {
                if let Some(s) = p.nodes.get_mut(slot) {
                    *s = Some(h);
                }
                p.missing -= 1;
                p.missing == 0
            }
            None => false,
        };
        if complete && let Some(p) = self.open.remove(&id) {
            self.done.push(p);
        }
    }

    fn on_node(&mut self, n: NodeId, h: &Hash) {
        if let Some(waiting) = self.by_node.remove(&n) {
            for (id, slot) in waiting {
                self.fill(id, slot, *h);
            }
        }
    }

    fn at_size(&mut self, f: &Frontier) -> Result<(), LedgerError> {
        if let Some(waiting) = self.by_suffix.remove(&f.size()) {
            for (start, id, slot) in waiting {
                let h = f.suffix_hash(start).ok_or_else(|| {
                    LedgerError::BundleInput(format!(
                        "internal: range {start}..{} is not a frontier suffix",
                        f.size()
                    ))
                })?;
                self.fill(id, slot, h);
            }
        }
        Ok(())
    }
}

/// Writes an auditor bundle from a stream of records. See the module docs for the cost.
pub struct BundleWriter {
    dir: PathBuf,
    opts: BundleOptions,
    signer: NoteSigner,
    checkpoints: Vec<Checkpoint>,
    next_cp: usize,
    frontier: Frontier,
    records: Option<Records>,
    proofs_out: Option<HashingWriter<BufWriter<File>>>,
    proofs: Proofs,
    files: BTreeMap<String, String>,
    exported: u64,
    first_seq: Option<u64>,
    last_seq: Option<u64>,
    inclusion_written: u64,
    consistency_written: u64,
    root_mismatches: Vec<u64>,
    progress: Option<ProgressFn>,
}

type ProgressFn = Box<dyn FnMut(&Progress) + Send>;

impl std::fmt::Debug for BundleWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BundleWriter")
            .field("dir", &self.dir)
            .field("tree_size", &self.tree_size())
            .field("read", &self.frontier.size())
            .field("exported", &self.exported)
            .finish_non_exhaustive()
    }
}

fn create(dir: &Path, name: &str) -> Result<HashingWriter<BufWriter<File>>, LedgerError> {
    let path = dir.join(name);
    let f = File::create(&path).map_err(|e| LedgerError::io(&path, e))?;
    Ok(HashingWriter::new(BufWriter::new(f)))
}

fn close(dir: &Path, name: &str, w: HashingWriter<BufWriter<File>>) -> Result<String, LedgerError> {
    let path = dir.join(name);
    let (buf, digest) = w.finish().map_err(|e| LedgerError::io(&path, e))?;
    let file = buf
        .into_inner()
        .map_err(|e| LedgerError::io(&path, e.into_error()))?;
    file.sync_all().map_err(|e| LedgerError::io(&path, e))?;
    Ok(digest)
}

fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> Result<String, LedgerError> {
    let mut w = create(dir, name)?;
    w.write_all(bytes)
        .map_err(|e| LedgerError::io(&dir.join(name), e))?;
    close(dir, name, w)
}

impl BundleWriter {
    /// Creates the bundle directory (which must not exist or be empty) and writes
    /// `checkpoints.txt` and `public-key.txt`. `checkpoints` are the signed checkpoint notes
    /// to include (every one the journal holds); the newest decides the tree size. `signer` is
    /// the ledger key, used to sign the manifest.
    pub fn create(
        dir: &Path,
        opts: BundleOptions,
        signer: NoteSigner,
        checkpoints: &[String],
    ) -> Result<Self, LedgerError> {
        let mut cps: Vec<(Checkpoint, &str)> = Vec::with_capacity(checkpoints.len());
        for note in checkpoints {
            let (cp, _) = Checkpoint::parse_unverified(note)?;
            cps.push((cp, note.as_str()));
        }
        cps.sort_by_key(|(cp, _)| cp.size);
        let mut kept: Vec<(Checkpoint, &str)> = Vec::with_capacity(cps.len());
        for (cp, note) in cps {
            if cp.size == 0 {
                continue;
            }
            if let Some((prev, _)) = kept.last() {
                if prev.origin != cp.origin {
                    return Err(LedgerError::BundleInput(format!(
                        "checkpoints of two origins: {:?} and {:?}",
                        prev.origin, cp.origin
                    )));
                }
                if prev.size == cp.size {
                    if prev.root != cp.root {
                        return Err(LedgerError::BundleInput(format!(
                            "two checkpoints of size {} with different roots: the log forked",
                            cp.size
                        )));
                    }
                    continue;
                }
            }
            kept.push((cp, note));
        }
        if kept.is_empty() {
            return Err(LedgerError::BundleInput(
                "no checkpoint: sign one before exporting".into(),
            ));
        }

        match std::fs::read_dir(dir) {
            Ok(mut entries) => {
                if entries.next().is_some() {
                    return Err(LedgerError::BundleInput(format!(
                        "{} is not empty",
                        dir.display()
                    )));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(dir).map_err(|e| LedgerError::io(dir, e))?;
            }
            Err(e) => return Err(LedgerError::io(dir, e)),
        }

        let mut files = BTreeMap::new();
        let mut text = String::new();
        for (_, note) in &kept {
            text.push_str(note);
            text.push('\n');
        }
        files.insert(
            files::CHECKPOINTS.to_owned(),
            write_file(dir, files::CHECKPOINTS, text.as_bytes())?,
        );
        let mut keys = format!("{}\n", signer.verifier());
        for k in &opts.previous_keys {
            keys.push_str(&format!("{k}\n"));
        }
        files.insert(
            files::PUBLIC_KEY.to_owned(),
            write_file(dir, files::PUBLIC_KEY, keys.as_bytes())?,
        );

        let records = match opts.format {
            RecordFormat::Csv => {
                let mut w = csv::WriterBuilder::new()
                    .terminator(csv::Terminator::CRLF)
                    .from_writer(create(dir, files::RECORDS_CSV)?);
                w.write_record(super::CSV_COLUMNS)
                    .map_err(|e| csv_err(dir, e))?;
                Records::Csv(w)
            }
            RecordFormat::Jsonl => Records::Jsonl(create(dir, files::RECORDS_JSONL)?),
        };
        let proofs_out = create(dir, files::PROOFS)?;

        Ok(Self {
            dir: dir.to_owned(),
            opts,
            signer,
            checkpoints: kept.into_iter().map(|(cp, _)| cp).collect(),
            next_cp: 0,
            frontier: Frontier::new(),
            records: Some(records),
            proofs_out: Some(proofs_out),
            proofs: Proofs::default(),
            files,
            exported: 0,
            first_seq: None,
            last_seq: None,
            inclusion_written: 0,
            consistency_written: 0,
            root_mismatches: Vec::new(),
            progress: None,
        })
    }

    /// Calls `f` after every record read (the CLI drives a progress bar with it).
    pub fn on_progress(&mut self, f: impl FnMut(&Progress) + Send + 'static) {
        self.progress = Some(Box::new(f));
    }

    /// The number of records the export covers: the newest checkpoint's tree size. Feed records
    /// `1..=tree_size()`, no more.
    pub fn tree_size(&self) -> u64 {
        self.checkpoints.last().map_or(0, |c| c.size)
    }

    /// Whether no filter is set.
    pub fn is_full(&self) -> bool {
        self.opts.filter.is_full()
    }

    fn expect_next(&self, seq: u64) -> Result<(), LedgerError> {
        let want = self.frontier.size() + 1;
        if seq != want {
            return Err(LedgerError::BundleInput(format!(
                "record {seq} given when record {want} was expected: records must be fed in \
                 sequence order without gaps"
            )));
        }
        if seq > self.tree_size() {
            return Err(LedgerError::BundleInput(format!(
                "record {seq} is beyond the newest checkpoint (tree size {})",
                self.tree_size()
            )));
        }
        Ok(())
    }

    /// Feeds the next record: hashes it and, if it passes the filter, writes it.
    pub fn push(&mut self, entry: &AuditEntry) -> Result<(), LedgerError> {
        self.expect_next(entry.seq)?;
        let leaf = entry.leaf_hash()?;
        if self.opts.filter.matches(entry) {
            self.write_record(entry, &leaf)?;
            if !self.is_full() {
                let tree_size = self.checkpoints.get(self.next_cp).map_or(0, |c| c.size);
                let ranges = inclusion_ranges(entry.seq - 1, tree_size)?;
                self.proofs.start(
                    &ranges,
                    Pending::Inclusion {
                        seq: entry.seq,
                        tree_size,
                        leaf,
                    },
                    &self.frontier,
                )?;
            }
        }
        self.append(leaf)
    }

    /// Feeds the leaf hash of the next record without the record, for a record the caller
    /// knows is outside the filter (e.g. from a stored leaf-hash column). Not allowed in a full
    /// export, which must write every record.
    pub fn push_leaf(&mut self, seq: u64, leaf: Hash) -> Result<(), LedgerError> {
        self.expect_next(seq)?;
        if self.is_full() {
            return Err(LedgerError::BundleInput(
                "a full export needs every record, not only its leaf hash".into(),
            ));
        }
        self.append(leaf)
    }

    /// Feeds a record whose content audit retention removed: only its stored leaf hash is left
    /// (see [`crate::ledger::retention`]). A full export writes it as a *pruned row* (`Seq` and
    /// `LeafHash`, nothing else); a filtered export cannot match it against a filter and only
    /// hashes it.
    pub fn push_pruned(&mut self, seq: u64, leaf: Hash) -> Result<(), LedgerError> {
        self.expect_next(seq)?;
        if self.is_full() {
            match self.records.as_mut() {
                Some(Records::Csv(w)) => {
                    let cells = super::pruned_cells(seq, &leaf);
                    w.write_record(&cells).map_err(|e| csv_err(&self.dir, e))?;
                }
                Some(Records::Jsonl(w)) => {
                    let mut line = super::pruned_jsonl_line(seq, &leaf);
                    line.push('\n');
                    w.write_all(line.as_bytes())
                        .map_err(|e| LedgerError::io(&self.dir.join(files::RECORDS_JSONL), e))?;
                }
                None => return Err(LedgerError::BundleInput("bundle already finished".into())),
            }
            self.exported += 1;
            self.first_seq.get_or_insert(seq);
            self.last_seq = Some(seq);
        }
        self.append(leaf)
    }

    fn write_record(&mut self, entry: &AuditEntry, leaf: &Hash) -> Result<(), LedgerError> {
        match self.records.as_mut() {
            Some(Records::Csv(w)) => {
                let cells = entry_cells(entry, leaf);
                w.write_record(cells.iter().map(|c| escape_cell(c).into_owned()))
                    .map_err(|e| csv_err(&self.dir, e))?;
            }
            Some(Records::Jsonl(w)) => {
                let mut line = jsonl_line(entry, leaf)?;
                line.push('\n');
                w.write_all(line.as_bytes())
                    .map_err(|e| LedgerError::io(&self.dir.join(files::RECORDS_JSONL), e))?;
            }
            None => return Err(LedgerError::BundleInput("bundle already finished".into())),
        }
        self.exported += 1;
        self.first_seq.get_or_insert(entry.seq);
        self.last_seq = Some(entry.seq);
        Ok(())
    }

    fn append(&mut self, leaf: Hash) -> Result<(), LedgerError> {
        let mut created = Vec::new();
        let watch = !self.proofs.by_node.is_empty();
        self.frontier.push_with(leaf, |n, h| {
            if watch {
                created.push((n, *h));
            }
        });
        for (n, h) in &created {
            self.proofs.on_node(*n, h);
        }
        self.proofs.at_size(&self.frontier)?;
        let size = self.frontier.size();
        while let Some(cp) = self.checkpoints.get(self.next_cp)
            && cp.size == size
        {
            if cp.root != self.frontier.root() {
                self.root_mismatches.push(size);
            }
            if let Some(next) = self.checkpoints.get(self.next_cp + 1) {
                let (old, new) = (size, next.size);
                self.proofs.start(
                    &consistency_ranges(old, new)?,
                    Pending::Consistency { old, new },
                    &self.frontier,
                )?;
            }
            self.flush_proofs()?;
            self.next_cp += 1;
        }
        if let Some(p) = self.progress.as_mut() {
            p(&Progress {
                read: size,
                exported: self.exported,
                total: self.checkpoints.last().map_or(0, |c| c.size),
            });
        }
        Ok(())
    }

    /// Writes the proofs completed at a checkpoint: inclusion proofs in sequence order, then the
    /// consistency proof that ends here.
    fn flush_proofs(&mut self) -> Result<(), LedgerError> {
        let mut done = std::mem::take(&mut self.proofs.done);
        done.sort_by_key(|p| match p.what {
            Pending::Inclusion { seq, .. } => (0, seq),
            Pending::Consistency { new, .. } => (1, new),
        });
        let path = self.dir.join(files::PROOFS);
        let Some(out) = self.proofs_out.as_mut() else {
            return Err(LedgerError::BundleInput("bundle already finished".into()));
        };
        for p in done {
            let nodes: Vec<Hash> = p.nodes.iter().map(|n| n.unwrap_or([0; 32])).collect();
            let line = match p.what {
                Pending::Inclusion {
                    seq,
                    tree_size,
                    leaf,
                } => {
                    self.inclusion_written += 1;
                    ProofLine::Inclusion {
                        seq,
                        tree_size,
                        leaf_hash: hex::encode(leaf),
                        path: hex_path(&nodes),
                    }
                }
                Pending::Consistency { old, new } => {
                    self.consistency_written += 1;
                    ProofLine::Consistency {
                        old_size: old,
                        new_size: new,
                        path: hex_path(&nodes),
                    }
                }
            };
            let mut text = serde_json::to_string(&line).map_err(|e| {
                LedgerError::BundleInput(format!("internal: proof not serialisable: {e}"))
            })?;
            text.push('\n');
            out.write_all(text.as_bytes())
                .map_err(|e| LedgerError::io(&path, e))?;
        }
        Ok(())
    }

    /// Closes the files, writes and signs the manifest. Fails if fewer records were fed than
    /// the newest checkpoint covers.
    pub fn finish(mut self) -> Result<BundleSummary, LedgerError> {
        if self.frontier.size() != self.tree_size() {
            return Err(LedgerError::BundleInput(format!(
                "the ledger ended at record {} but the newest checkpoint covers {}",
                self.frontier.size(),
                self.tree_size()
            )));
        }
        if !self.proofs.open.is_empty() || !self.proofs.done.is_empty() {
            return Err(LedgerError::BundleInput(
                "internal: proofs left unfinished".into(),
            ));
        }
        let records_name = self.opts.format.file_name();
        let digest = match self.records.take() {
            Some(Records::Csv(w)) => {
                let inner = w
                    .into_inner()
                    .map_err(|e| LedgerError::io(&self.dir.join(records_name), e.into_error()))?;
                close(&self.dir, records_name, inner)?
            }
            Some(Records::Jsonl(w)) => close(&self.dir, records_name, w)?,
            None => return Err(LedgerError::BundleInput("bundle already finished".into())),
        };
        self.files.insert(records_name.to_owned(), digest);
        if let Some(w) = self.proofs_out.take() {
            let d = close(&self.dir, files::PROOFS, w)?;
            self.files.insert(files::PROOFS.to_owned(), d);
        }
        let origin = self
            .checkpoints
            .last()
            .map(|c| c.origin.clone())
            .unwrap_or_default();
        let manifest = Manifest {
            format_version: FORMAT_VERSION,
            records_format: self.opts.format,
            records_file: records_name.to_owned(),
            full: self.is_full(),
            filters: self.opts.filter.clone(),
            exported_by: self.opts.exported_by.clone(),
            exported_at: self
                .opts
                .exported_at
                .to_offset(time::UtcOffset::UTC)
                .format(&Rfc3339)
                .map_err(|e| LedgerError::BundleInput(format!("exported_at: {e}")))?,
            origin: origin.clone(),
            key: self.signer.verifier().to_string(),
            tree_size: self.tree_size(),
            records: self.exported,
            first_seq: self.first_seq,
            last_seq: self.last_seq,
            checkpoints: self.checkpoints.len() as u64,
            inclusion_proofs: self.inclusion_written,
            consistency_proofs: self.consistency_written,
            files: std::mem::take(&mut self.files),
        };
        let mut bytes = serde_json::to_vec_pretty(&manifest)
            .map_err(|e| LedgerError::BundleInput(format!("manifest: {e}")))?;
        bytes.push(b'\n');
        write_file(&self.dir, files::MANIFEST, &bytes)?;
        let note = self.signer.sign(&manifest_note_text(&origin, &bytes))?;
        write_file(&self.dir, files::MANIFEST_SIG, note.as_bytes())?;
        sync_dir(&self.dir);
        Ok(BundleSummary {
            manifest,
            root_mismatches: self.root_mismatches,
        })
    }
}

fn sync_dir(dir: &Path) {
    // Best effort: makes the new directory entries durable on filesystems that need it.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

fn csv_err(dir: &Path, e: csv::Error) -> LedgerError {
    let path = dir.join(files::RECORDS_CSV);
    match e.into_kind() {
        csv::ErrorKind::Io(io) => LedgerError::io(&path, io),
        other => LedgerError::Bundle {
            file: files::RECORDS_CSV.into(),
            reason: format!("{other:?}"),
        },
    }
}

/// Writes a whole bundle from an iterator of records (in sequence order, from 1), stopping at
/// the newest checkpoint's tree size. A convenience over [`BundleWriter`].
pub fn write_bundle<I>(
    dir: &Path,
    opts: BundleOptions,
    signer: NoteSigner,
    checkpoints: &[String],
    records: I,
) -> Result<BundleSummary, LedgerError>
where
    I: IntoIterator<Item = AuditEntry>,
{
    let mut w = BundleWriter::create(dir, opts, signer, checkpoints)?;
    let n = w.tree_size();
    for e in records.into_iter().take_while(|e| e.seq <= n) {
        w.push(&e)?;
    }
    w.finish()
}
