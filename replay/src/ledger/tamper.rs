//! The tamper suite: a bundle of 200 generated records with several checkpoints, attacked in
//! every way the issue lists; `verify_bundle` must fail on each and name the record or
//! checkpoint, and pass on untouched bundles.

use super::bundle::{
    BundleOptions, CSV_COLUMNS, ExportFilter, Manifest, ProblemKind, RecordFormat, VerifyOptions,
    VerifyReport, escape_cell, files, manifest_note_text, split_notes, verify_bundle,
    verify_bundle_with, write_bundle,
};
use super::checkpoint::Checkpoint;
use super::entry::AuditEntry;
use super::note::NoteSigner;
use super::tree::Frontier;
use crate::model::AuditEvent;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

const ORIGIN: &str = "nmpp-gateway.test.police.uk/audit";
const CHECKPOINT_SIZES: [u64; 8] = [20, 47, 64, 100, 137, 150, 199, 200];
const N: u64 = 200;

struct Fixture {
    entries: Vec<AuditEntry>,
    signer: NoteSigner,
    notes: Vec<String>,
}

fn fixture() -> Fixture {
    let forces = [Some("kent"), Some("essex"), None, Some("norfolk")];
    let actors = ["op.smith", "ihub-key-1", "system", "auditor.jones"];
    let actions = [
        "exchange.view",
        "incident.create",
        "exchange.replay",
        "auth.failure",
        "config.update",
        "audit.export",
    ];
    let results = ["success", "failure", "denied", "duplicate"];
    let start = time::macros::datetime!(2026-01-05 08:00:00 UTC);
    let mut entries = Vec::new();
    for seq in 1..=N {
        let i = seq as usize;
        let mut ev = AuditEvent {
            time: start + time::Duration::seconds(seq as i64 * 37),
            actor: actors[i % actors.len()].into(),
            role: if i % 4 == 1 { "ihub" } else { "operator" }.into(),
            force: forces[i % forces.len()].map(str::to_owned),
            action: actions[i % actions.len()].into(),
            object_type: (!i.is_multiple_of(5)).then(|| "exchange".to_owned()),
            object_id: (!i.is_multiple_of(5)).then(|| format!("0195a6f0-0000-7000-8000-{seq:012}")),
            result: results[i % results.len()].into(),
            source_ip: Some(format!("10.1.{}.{}", i % 7, i % 250)),
            user_agent: Some("Mozilla/5.0 (X11; Linux), \"quoted\"".into()),
            correlation_id: i.is_multiple_of(3).then(|| format!("corr-{seq}")),
            event_uid: uuid::Uuid::from_u128(0x0195a6f0_0000_7000_8000_000000000000 + seq as u128),
            detail: i
                .is_multiple_of(2)
                .then(|| serde_json::json!({"status": 200 + i, "code": "OK"})),
        };
        // Cells a spreadsheet would run, and awkward text, to prove escaping round-trips.
        match seq {
            12 => ev.actor = "=cmd|' /C calc'!A0".into(),
            13 => ev.user_agent = Some("+44 1234 567890".into()),
            14 => ev.object_id = Some("-5".into()),
            15 => ev.correlation_id = Some("@SUM(A1:A9)".into()),
            16 => ev.user_agent = Some("\ttabbed".into()),
            17 => ev.actor = "'already quoted".into(),
            18 => ev.user_agent = Some("line one\nline two".into()),
            19 => ev.detail = Some(serde_json::json!(-3)),
            _ => {}
        }
        entries.push(AuditEntry::from_event(seq, &ev).expect("entry"));
    }
    let signer = NoteSigner::from_seed(ORIGIN, &[7; 32]);
    let mut notes = Vec::new();
    let mut f = Frontier::new();
    for e in &entries {
        f.push(e.leaf_hash().expect("hash"));
        if CHECKPOINT_SIZES.contains(&f.size()) {
            notes.push(
                Checkpoint::new(ORIGIN, f.size(), f.root())
                    .sign(&signer)
                    .expect("sign"),
            );
        }
    }
    Fixture {
        entries,
        signer,
        notes,
    }
}

fn options(format: RecordFormat, filter: ExportFilter) -> BundleOptions {
    BundleOptions {
        format,
        filter,
        exported_by: "auditor.jones".into(),
        exported_at: time::macros::datetime!(2026-02-01 12:00:00 UTC),
        previous_keys: Vec::new(),
    }
}

fn kent() -> ExportFilter {
    ExportFilter {
        force: Some("kent".into()),
        ..ExportFilter::default()
    }
}

fn build(dir: &Path, fx: &Fixture, format: RecordFormat, filter: ExportFilter) {
    write_bundle(
        dir,
        options(format, filter),
        fx.signer.clone(),
        &fx.notes,
        fx.entries.iter().cloned(),
    )
    .expect("bundle");
}

// ---- file surgery helpers ----

fn read_csv(dir: &Path) -> Vec<Vec<String>> {
    let mut r = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_path(dir.join(files::RECORDS_CSV))
        .expect("open csv");
    r.records()
        .map(|rec| rec.expect("row").iter().map(str::to_owned).collect())
        .collect()
}

fn write_csv(dir: &Path, rows: &[Vec<String>]) {
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_path(dir.join(files::RECORDS_CSV))
        .expect("create csv");
    for r in rows {
        w.write_record(r).expect("write");
    }
    w.flush().expect("flush");
}

/// The row index (in `read_csv` rows) of record `seq`.
fn row_of(rows: &[Vec<String>], seq: u64) -> usize {
    rows.iter()
        .position(|r| r[0] == seq.to_string())
        .expect("seq present")
}

fn col(name: &str) -> usize {
    CSV_COLUMNS.iter().position(|c| *c == name).expect("column")
}

/// The 1-based line where record `seq` starts in records.csv.
fn csv_line(dir: &Path, seq: u64) -> u64 {
    let mut r = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_path(dir.join(files::RECORDS_CSV))
        .expect("open csv");
    let mut rec = csv::StringRecord::new();
    while r.read_record(&mut rec).expect("row") {
        if rec.get(0) == Some(seq.to_string().as_str()) {
            return rec.position().expect("position").line();
        }
    }
    panic!("no record {seq}");
}

fn edit_csv_cell(dir: &Path, seq: u64, column: &str, value: &str) {
    let mut rows = read_csv(dir);
    let i = row_of(&rows, seq);
    let c = col(column);
    assert_ne!(
        rows[i][c],
        escape_cell(value),
        "the attack must change the cell"
    );
    rows[i][c] = escape_cell(value).into_owned();
    write_csv(dir, &rows);
}

/// A plausible different value for a column.
fn other_value(column: &str, current: &str) -> String {
    match column {
        "LeafHash" => {
            let mut s = current.to_owned();
            let last = if s.ends_with('0') { '1' } else { '0' };
            s.pop();
            s.push(last);
            s
        }
        "EntryVersion" => "2".into(),
        "EventStartTime" => "2026-01-05T08:20:00Z".into(),
        "EventResult" => {
            if current == "Success" {
                "Failure".into()
            } else {
                "Success".into()
            }
        }
        "AdditionalFields" => r#"{"code":"OK","status":999}"#.into(),
        _ => format!("{current}x"),
    }
}

fn resign_checkpoints(dir: &Path, with: &NoteSigner) {
    let text = std::fs::read_to_string(dir.join(files::CHECKPOINTS)).expect("read");
    let mut out = String::new();
    for (_, note) in split_notes(&text).expect("notes") {
        let (cp, _) = Checkpoint::parse_unverified(&note).expect("checkpoint");
        out.push_str(&cp.sign(with).expect("sign"));
        out.push('\n');
    }
    std::fs::write(dir.join(files::CHECKPOINTS), out).expect("write");
}

fn replace_checkpoint(dir: &Path, number: usize, note: &str) {
    let text = std::fs::read_to_string(dir.join(files::CHECKPOINTS)).expect("read");
    let mut notes: Vec<String> = split_notes(&text)
        .expect("notes")
        .into_iter()
        .map(|(_, n)| n)
        .collect();
    notes[number - 1] = note.to_owned();
    let out: String = notes.iter().map(|n| format!("{n}\n")).collect();
    std::fs::write(dir.join(files::CHECKPOINTS), out).expect("write");
}

fn checkpoint_note(dir: &Path, number: usize) -> String {
    let text = std::fs::read_to_string(dir.join(files::CHECKPOINTS)).expect("read");
    split_notes(&text).expect("notes")[number - 1].1.clone()
}

fn sha256_hex(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).expect("read")))
}

/// What a forger holding their own key does: re-sign everything and rewrite the manifest.
fn forge_whole_bundle(dir: &Path, with: &NoteSigner) {
    resign_checkpoints(dir, with);
    std::fs::write(
        dir.join(files::PUBLIC_KEY),
        format!("{}\n", with.verifier()),
    )
    .expect("key");
    let mut m: Manifest =
        serde_json::from_slice(&std::fs::read(dir.join(files::MANIFEST)).expect("read"))
            .expect("manifest");
    m.key = with.verifier().to_string();
    for name in [files::CHECKPOINTS, files::PUBLIC_KEY] {
        m.files.insert(name.into(), sha256_hex(&dir.join(name)));
    }
    let mut bytes = serde_json::to_vec_pretty(&m).expect("json");
    bytes.push(b'\n');
    std::fs::write(dir.join(files::MANIFEST), &bytes).expect("write");
    let sig = with
        .sign(&manifest_note_text(&m.origin, &bytes))
        .expect("sign");
    std::fs::write(dir.join(files::MANIFEST_SIG), sig).expect("write");
}

fn edit_proof_line(dir: &Path, pick: impl Fn(&serde_json::Value) -> bool) -> u64 {
    let text = std::fs::read_to_string(dir.join(files::PROOFS)).expect("read");
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let i = lines
        .iter()
        .position(|l| pick(&serde_json::from_str(l).expect("json")))
        .expect("a proof line to tamper with");
    let mut v: serde_json::Value = serde_json::from_str(&lines[i]).expect("json");
    let path = v["path"].as_array_mut().expect("path");
    let first = path[0].as_str().expect("hex").to_owned();
    let flipped = match first.strip_prefix('0') {
        Some(rest) => format!("1{rest}"),
        None => format!("0{}", &first[1..]),
    };
    path[0] = flipped.into();
    lines[i] = v.to_string();
    std::fs::write(dir.join(files::PROOFS), lines.join("\n") + "\n").expect("write");
    i as u64 + 1
}

// ---- expectations ----

#[derive(Debug)]
struct Expect {
    kind: ProblemKind,
    seq: Option<u64>,
    checkpoint: Option<u64>,
    line: Option<u64>,
}

fn expect(kind: ProblemKind) -> Expect {
    Expect {
        kind,
        seq: None,
        checkpoint: None,
        line: None,
    }
}

impl Expect {
    fn seq(mut self, s: u64) -> Self {
        self.seq = Some(s);
        self
    }
    fn checkpoint(mut self, c: u64) -> Self {
        self.checkpoint = Some(c);
        self
    }
    fn line(mut self, l: u64) -> Self {
        self.line = Some(l);
        self
    }
}

fn assert_names(name: &str, report: &VerifyReport, want: &Expect) {
    let first = report
        .first_problem()
        .unwrap_or_else(|| panic!("{name}: the attack was not detected"));
    let msg = format!(
        "{name}: first problem {first} (all: {:#?})",
        report.problems
    );
    assert_eq!(first.kind, want.kind, "{msg}");
    if want.seq.is_some() {
        assert_eq!(first.seq, want.seq, "{msg}");
    }
    if want.checkpoint.is_some() {
        assert_eq!(first.checkpoint, want.checkpoint, "{msg}");
    }
    if want.line.is_some() {
        assert_eq!(first.line, want.line, "{msg}");
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read dir") {
        let e = e.expect("entry");
        std::fs::copy(e.path(), to.join(e.file_name())).expect("copy");
    }
}

type Attack = Box<dyn Fn(&Path)>;

fn run_cases(pristine: &Path, scratch: &Path, cases: Vec<(String, Attack, Expect)>) {
    assert!(!cases.is_empty());
    for (i, (name, attack, want)) in cases.into_iter().enumerate() {
        let dir = scratch.join(format!("case{i}"));
        copy_dir(pristine, &dir);
        attack(&dir);
        let report = verify_bundle(&dir).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!report.is_intact(), "{name}: verified despite the attack");
        assert_names(&name, &report, &want);
    }
}

fn pristine(tmp: &Path, fx: &Fixture, format: RecordFormat, filter: ExportFilter) -> PathBuf {
    let dir = tmp.join(format!("pristine-{format:?}-{}", filter.is_full()));
    build(&dir, fx, format, filter);
    let report = verify_bundle(&dir).expect("verify");
    assert!(
        report.is_intact(),
        "untouched bundle fails: {:#?}",
        report.problems
    );
    dir
}

// ---- the suite ----

#[test]
fn ledger_tamper_untouched_bundles_verify() {
    let fx = fixture();
    let tmp = tempfile::tempdir().expect("tmp");
    for format in [RecordFormat::Csv, RecordFormat::Jsonl] {
        let dir = pristine(tmp.path(), &fx, format, ExportFilter::default());
        let r = verify_bundle(&dir).expect("verify");
        assert_eq!(r.records, N);
        assert_eq!((r.first_seq, r.last_seq), (Some(1), Some(N)));
        assert_eq!(r.checkpoints_verified, CHECKPOINT_SIZES.len() as u64);
        assert_eq!(
            r.consistency_proofs_verified,
            CHECKPOINT_SIZES.len() as u64 - 1
        );
        assert!(!r.key_pinned);
        // Pinning the right key verifies too.
        let pinned = verify_bundle_with(
            &dir,
            VerifyOptions {
                trusted_keys: vec![fx.signer.verifier()],
                progress: None,
            },
        )
        .expect("verify");
        assert!(pinned.is_intact() && pinned.key_pinned);
    }
    // The CSV carries the formula cells escaped, and reading them back yields the originals.
    let dir = tmp.path().join("pristine-Csv-true");
    let raw = std::fs::read_to_string(dir.join(files::RECORDS_CSV)).expect("read");
    for cell in [
        "'=cmd|",
        "'+44 1234",
        "'-5",
        "'@SUM(",
        "''already quoted",
        "'-3",
    ] {
        assert!(raw.contains(cell), "{cell} not escaped in the CSV");
    }
    let rows = read_csv(&dir);
    assert_eq!(rows[0], CSV_COLUMNS);
    assert_eq!(rows.len() as u64, N + 1);
    // Re-writing the rows unchanged is byte-identical: the surgery helpers change only what an
    // attack changes.
    let before = std::fs::read(dir.join(files::RECORDS_CSV)).expect("read");
    write_csv(&dir, &rows);
    assert_eq!(
        std::fs::read(dir.join(files::RECORDS_CSV)).expect("read"),
        before
    );
}

#[test]
fn ledger_tamper_full_csv_export() {
    let fx = fixture();
    let tmp = tempfile::tempdir().expect("tmp");
    let base = pristine(tmp.path(), &fx, RecordFormat::Csv, ExportFilter::default());
    let line = |seq| csv_line(&base, seq);
    let mut cases: Vec<(String, Attack, Expect)> = Vec::new();

    // Edit one cell: every column an auditor reads, each on its own record.
    for (i, column) in CSV_COLUMNS.iter().enumerate().skip(1) {
        let seq = 30 + i as u64;
        let rows = read_csv(&base);
        let current = rows[row_of(&rows, seq)][i].clone();
        let current = super::bundle::unescape_cell(&current)
            .expect("escaped")
            .to_owned();
        let value = other_value(column, &current);
        let column = column.to_string();
        cases.push((
            format!("edit {column} of record {seq}"),
            Box::new(move |d: &Path| edit_csv_cell(d, seq, &column, &value)),
            expect(ProblemKind::EditedRecord).seq(seq).line(line(seq)),
        ));
    }
    // Edit a cell and recompute its LeafHash: only the signed root catches it, so the report
    // names the checkpoint interval (records 65..=100, checkpoint #4).
    {
        let fx_entry = fx.entries[69].clone();
        cases.push((
            "edit actor of record 70 and recompute its leaf hash".into(),
            Box::new(move |d: &Path| {
                let mut e = fx_entry.clone();
                e.actor_username = "someone.else".into();
                let leaf = hex::encode(e.leaf_hash().expect("hash"));
                edit_csv_cell(d, 70, "ActorUsername", "someone.else");
                edit_csv_cell(d, 70, "LeafHash", &leaf);
            }),
            expect(ProblemKind::RootMismatch).seq(65).checkpoint(4),
        ));
    }
    cases.push((
        "delete record 57".into(),
        Box::new(|d: &Path| {
            let mut rows = read_csv(d);
            let i = row_of(&rows, 57);
            rows.remove(i);
            write_csv(d, &rows);
        }),
        expect(ProblemKind::DeletedRecord).seq(57),
    ));
    cases.push((
        "reorder records 90 and 91".into(),
        Box::new(|d: &Path| {
            let mut rows = read_csv(d);
            let i = row_of(&rows, 90);
            rows.swap(i, i + 1);
            write_csv(d, &rows);
        }),
        expect(ProblemKind::ReorderedRecords).seq(91).line(line(90)),
    ));
    cases.push((
        "duplicate record 120".into(),
        Box::new(|d: &Path| {
            let mut rows = read_csv(d);
            let i = row_of(&rows, 120);
            let dup = rows[i].clone();
            rows.insert(i + 1, dup);
            write_csv(d, &rows);
        }),
        expect(ProblemKind::InsertedRecord).seq(120),
    ));
    cases.push((
        "truncate the tail after record 190".into(),
        Box::new(|d: &Path| {
            let mut rows = read_csv(d);
            let i = row_of(&rows, 191);
            rows.truncate(i);
            write_csv(d, &rows);
        }),
        expect(ProblemKind::TruncatedTail).seq(191),
    ));
    {
        let other = NoteSigner::from_seed(ORIGIN, &[99; 32]);
        cases.push((
            "re-sign the checkpoints with another key and replace public-key.txt".into(),
            Box::new(move |d: &Path| {
                resign_checkpoints(d, &other);
                std::fs::write(d.join(files::PUBLIC_KEY), format!("{}\n", other.verifier()))
                    .expect("write");
            }),
            expect(ProblemKind::SwappedKey),
        ));
    }
    {
        let other = NoteSigner::from_seed(ORIGIN, &[98; 32]);
        cases.push((
            "replace only public-key.txt".into(),
            Box::new(move |d: &Path| {
                std::fs::write(d.join(files::PUBLIC_KEY), format!("{}\n", other.verifier()))
                    .expect("write");
            }),
            expect(ProblemKind::SwappedKey),
        ));
    }
    {
        let other = NoteSigner::from_seed(ORIGIN, &[97; 32]);
        cases.push((
            "re-sign the checkpoints only, with another key".into(),
            Box::new(move |d: &Path| resign_checkpoints(d, &other)),
            expect(ProblemKind::SwappedKey).checkpoint(1),
        ));
    }
    cases.push((
        "alter checkpoint #3's root, keeping its signature".into(),
        Box::new(|d: &Path| {
            let note = checkpoint_note(d, 3);
            let (cp, _) = Checkpoint::parse_unverified(&note).expect("checkpoint");
            let mut root = cp.root;
            root[0] ^= 1;
            let forged = note.replace(
                &Checkpoint::new(ORIGIN, cp.size, cp.root).body(),
                &Checkpoint::new(ORIGIN, cp.size, root).body(),
            );
            assert_ne!(forged, note);
            replace_checkpoint(d, 3, &forged);
        }),
        expect(ProblemKind::ForgedCheckpoint).checkpoint(3),
    ));
    cases.push((
        "forge checkpoint #5's signature".into(),
        Box::new(|d: &Path| {
            let note = checkpoint_note(d, 5);
            let mut parsed = super::note::SignedNote::parse(&note).expect("note");
            parsed.signatures[0].signature = vec![0x5a; 64];
            replace_checkpoint(d, 5, &parsed.encode());
        }),
        expect(ProblemKind::ForgedCheckpoint).checkpoint(5),
    ));
    {
        let signer = fx.signer;
        cases.push((
            "the key holder signs a false root for checkpoint #3".into(),
            Box::new(move |d: &Path| {
                let note = Checkpoint::new(ORIGIN, 64, [0x33; 32])
                    .sign(&signer)
                    .expect("sign");
                replace_checkpoint(d, 3, &note);
            }),
            expect(ProblemKind::ForgedCheckpoint).checkpoint(3),
        ));
    }
    cases.push((
        "tamper a consistency proof".into(),
        Box::new(|d: &Path| {
            edit_proof_line(d, |v| v["type"] == "consistency" && v["new_size"] == 137);
        }),
        expect(ProblemKind::TamperedProof).checkpoint(5),
    ));
    cases.push((
        "strip the escaping quote from a formula cell".into(),
        Box::new(|d: &Path| {
            let mut rows = read_csv(d);
            let i = row_of(&rows, 12);
            let c = col("ActorUsername");
            rows[i][c] = rows[i][c].trim_start_matches('\'').to_owned();
            write_csv(d, &rows);
        }),
        expect(ProblemKind::FormulaNotEscaped)
            .seq(12)
            .line(line(12)),
    ));
    cases.push((
        "edit the manifest".into(),
        Box::new(|d: &Path| {
            let p = d.join(files::MANIFEST);
            let text = std::fs::read_to_string(&p).expect("read");
            std::fs::write(&p, text.replace("auditor.jones", "someone.else")).expect("write");
        }),
        expect(ProblemKind::ManifestMismatch),
    ));

    run_cases(&base, &tmp.path().join("cases"), cases);
}

#[test]
fn ledger_tamper_forger_with_own_key_needs_a_pinned_key() {
    let fx = fixture();
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("b");
    build(&dir, &fx, RecordFormat::Csv, ExportFilter::default());
    let forger = NoteSigner::from_seed(ORIGIN, &[66; 32]);
    forge_whole_bundle(&dir, &forger);
    // Self-consistent against its own key: only the report's key shows the change ...
    let unpinned = verify_bundle(&dir).expect("verify");
    assert!(unpinned.is_intact(), "{:#?}", unpinned.problems);
    assert_eq!(unpinned.keys, vec![forger.verifier().to_string()]);
    assert!(!unpinned.key_pinned);
    // ... and an auditor who pins the force's published key catches it.
    let pinned = verify_bundle_with(
        &dir,
        VerifyOptions {
            trusted_keys: vec![fx.signer.verifier()],
            progress: None,
        },
    )
    .expect("verify");
    assert_names(
        "forger re-signed everything",
        &pinned,
        &expect(ProblemKind::SwappedKey),
    );
}

#[test]
fn ledger_tamper_full_jsonl_export() {
    let fx = fixture();
    let tmp = tempfile::tempdir().expect("tmp");
    let base = pristine(
        tmp.path(),
        &fx,
        RecordFormat::Jsonl,
        ExportFilter::default(),
    );
    fn edit_line(d: &Path, seq: u64, f: impl Fn(&str) -> String) {
        let p = d.join(files::RECORDS_JSONL);
        let text = std::fs::read_to_string(&p).expect("read");
        let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
        let i = seq as usize - 1;
        let changed = f(&lines[i]);
        assert_ne!(changed, lines[i]);
        lines[i] = changed;
        std::fs::write(&p, lines.join("\n") + "\n").expect("write");
    }
    let cases: Vec<(String, Attack, Expect)> = vec![
        (
            "edit the actor".into(),
            Box::new(|d: &Path| {
                edit_line(d, 44, |l| {
                    l.replacen("\"ActorUsername\":\"", "\"ActorUsername\":\"x", 1)
                });
            }),
            expect(ProblemKind::EditedRecord).seq(44).line(44),
        ),
        (
            "edit the detail".into(),
            Box::new(|d: &Path| edit_line(d, 46, |l| l.replacen("\"OK\"", "\"NOT OK\"", 1))),
            expect(ProblemKind::EditedRecord).seq(46).line(46),
        ),
        (
            "add a field the hash does not cover".into(),
            Box::new(|d: &Path| edit_line(d, 47, |l| l.replacen('{', "{\"Note\":\"hi\",", 1))),
            expect(ProblemKind::EditedRecord).seq(47),
        ),
        (
            "shadow a field with a duplicate key".into(),
            Box::new(|d: &Path| {
                edit_line(d, 48, |l| {
                    l.replacen('{', "{\"ActorUsername\":\"ghost\",", 1)
                });
            }),
            expect(ProblemKind::EditedRecord).line(48),
        ),
        (
            "delete a line".into(),
            Box::new(|d: &Path| {
                let p = d.join(files::RECORDS_JSONL);
                let text = std::fs::read_to_string(&p).expect("read");
                let lines: Vec<&str> = text
                    .lines()
                    .filter(|l| !l.contains("\"Seq\":99,"))
                    .collect();
                std::fs::write(&p, lines.join("\n") + "\n").expect("write");
            }),
            expect(ProblemKind::DeletedRecord).seq(99),
        ),
    ];
    run_cases(&base, &tmp.path().join("cases"), cases);
}

#[test]
fn ledger_tamper_filtered_export_verifies_by_inclusion_proofs() {
    let fx = fixture();
    let tmp = tempfile::tempdir().expect("tmp");
    let base = pristine(tmp.path(), &fx, RecordFormat::Csv, kent());
    let kent_seqs: Vec<u64> = fx
        .entries
        .iter()
        .filter(|e| e.force.as_deref() == Some("kent"))
        .map(|e| e.seq)
        .collect();
    let report = verify_bundle(&base).expect("verify");
    assert_eq!(report.records, kent_seqs.len() as u64);
    assert_eq!(report.inclusion_proofs_verified, kent_seqs.len() as u64);
    assert!(!report.manifest.full);
    assert_eq!(report.manifest.filters.force.as_deref(), Some("kent"));
    let rows = read_csv(&base);
    assert!(
        rows.iter().skip(1).all(|r| r[col("Force")] == "kent"),
        "only kent's records are exported"
    );

    let (a, b, c) = (kent_seqs[5], kent_seqs[6], kent_seqs[20]);
    let fx_entry = fx.entries[b as usize - 1].clone();
    let cases: Vec<(String, Attack, Expect)> = vec![
        (
            format!("edit record {a}"),
            Box::new(move |d: &Path| edit_csv_cell(d, a, "EventResultDetails", "tampered")),
            expect(ProblemKind::EditedRecord).seq(a),
        ),
        (
            format!("edit record {b} and recompute its leaf hash"),
            Box::new(move |d: &Path| {
                let mut e = fx_entry.clone();
                e.event_start_time = "2026-01-05T09:00:00Z".into();
                let leaf = hex::encode(e.leaf_hash().expect("hash"));
                edit_csv_cell(d, b, "EventStartTime", "2026-01-05T09:00:00Z");
                edit_csv_cell(d, b, "LeafHash", &leaf);
            }),
            expect(ProblemKind::EditedRecord).seq(b),
        ),
        (
            format!("delete record {c}"),
            Box::new(move |d: &Path| {
                let mut rows = read_csv(d);
                let i = row_of(&rows, c);
                rows.remove(i);
                write_csv(d, &rows);
            }),
            expect(ProblemKind::DeletedRecord).seq(c),
        ),
        (
            format!("reorder records {a} and {b}"),
            Box::new(move |d: &Path| {
                let mut rows = read_csv(d);
                let i = row_of(&rows, a);
                rows.swap(i, i + 1);
                write_csv(d, &rows);
            }),
            // The record that came early is named, as in a full export.
            expect(ProblemKind::ReorderedRecords).seq(b),
        ),
        (
            format!("tamper the inclusion proof of record {c}"),
            Box::new(move |d: &Path| {
                edit_proof_line(d, |v| v["type"] == "inclusion" && v["seq"] == c);
            }),
            expect(ProblemKind::TamperedProof).seq(c),
        ),
    ];
    run_cases(&base, &tmp.path().join("cases"), cases);
}

#[test]
fn ledger_tamper_filtered_export_by_time_and_leaf_feed() {
    // A time-window export fed with bare leaf hashes for the records outside it.
    let fx = fixture();
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("window");
    let filter = ExportFilter {
        from: Some(time::macros::datetime!(2026-01-05 08:30:00 UTC)),
        to: Some(time::macros::datetime!(2026-01-05 09:00:00 UTC)),
        ..ExportFilter::default()
    };
    let mut w = super::bundle::BundleWriter::create(
        &dir,
        options(RecordFormat::Jsonl, filter.clone()),
        fx.signer.clone(),
        &fx.notes,
    )
    .expect("create");
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let s2 = seen.clone();
    w.on_progress(move |p| s2.store(p.read, std::sync::atomic::Ordering::Relaxed));
    for e in &fx.entries {
        if filter.matches(e) {
            w.push(e).expect("push");
        } else {
            w.push_leaf(e.seq, e.leaf_hash().expect("hash"))
                .expect("push leaf");
        }
    }
    let summary = w.finish().expect("finish");
    assert!(summary.root_mismatches.is_empty());
    assert_eq!(seen.load(std::sync::atomic::Ordering::Relaxed), N);
    let want = fx.entries.iter().filter(|e| filter.matches(e)).count() as u64;
    assert!(want > 10 && want < N);
    let r = verify_bundle(&dir).expect("verify");
    assert!(r.is_intact(), "{:#?}", r.problems);
    assert_eq!(r.records, want);
    assert_eq!(r.inclusion_proofs_verified, want);
}

#[test]
fn ledger_tamper_writer_refuses_a_broken_stream() {
    let fx = fixture();
    let tmp = tempfile::tempdir().expect("tmp");
    let opts = || options(RecordFormat::Csv, ExportFilter::default());
    // A gap.
    let mut w = super::bundle::BundleWriter::create(
        &tmp.path().join("gap"),
        opts(),
        fx.signer.clone(),
        &fx.notes,
    )
    .expect("create");
    w.push(&fx.entries[0]).expect("push");
    assert!(w.push(&fx.entries[2]).is_err());
    // Ending early.
    let mut w = super::bundle::BundleWriter::create(
        &tmp.path().join("short"),
        opts(),
        fx.signer.clone(),
        &fx.notes,
    )
    .expect("create");
    for e in &fx.entries[..150] {
        w.push(e).expect("push");
    }
    assert!(w.finish().is_err());
    // Leaf hashes only are not a full export.
    let mut w = super::bundle::BundleWriter::create(
        &tmp.path().join("leaf"),
        opts(),
        fx.signer.clone(),
        &fx.notes,
    )
    .expect("create");
    assert!(w.push_leaf(1, [0; 32]).is_err());
    // No checkpoint, or a non-empty directory.
    assert!(
        super::bundle::BundleWriter::create(
            &tmp.path().join("none"),
            opts(),
            fx.signer.clone(),
            &[]
        )
        .is_err()
    );
    assert!(
        super::bundle::BundleWriter::create(
            &tmp.path().join("leaf"),
            opts(),
            fx.signer.clone(),
            &fx.notes
        )
        .is_err()
    );
    // A journal whose records were altered after checkpointing still exports, and says so.
    let mut entries = fx.entries.clone();
    entries[10].actor_username = "rewritten".into();
    let summary = write_bundle(
        &tmp.path().join("altered"),
        opts(),
        fx.signer.clone(),
        &fx.notes,
        entries,
    )
    .expect("bundle");
    assert_eq!(summary.root_mismatches, CHECKPOINT_SIZES.to_vec());
    let r = verify_bundle(&tmp.path().join("altered")).expect("verify");
    assert_names(
        "journal altered before export",
        &r,
        &expect(ProblemKind::RootMismatch).checkpoint(1),
    );
}

fn small_ledger(n: u64, seed: u64) -> Vec<AuditEntry> {
    let actors = ["a", "b", "c"];
    (1..=n)
        .map(|seq| {
            let ev = AuditEvent {
                time: time::macros::datetime!(2026-01-01 00:00:00 UTC)
                    + time::Duration::seconds(seq as i64),
                actor: actors[((seq ^ seed) % 3) as usize].into(),
                role: "operator".into(),
                force: None,
                action: "exchange.view".into(),
                object_type: None,
                object_id: None,
                result: "success".into(),
                source_ip: None,
                user_agent: None,
                correlation_id: None,
                event_uid: uuid::Uuid::from_u128(u128::from(seq) << 64 | u128::from(seed)),
                detail: None,
            };
            AuditEntry::from_event(seq, &ev).expect("entry")
        })
        .collect()
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig {
        cases: 40,
        failure_persistence: None,
        ..proptest::prelude::ProptestConfig::default()
    })]

    /// The writer's streamed proofs are exactly the proofs computed from all the leaves, for
    /// random ledgers, checkpoint schedules and filters; and the bundle verifies.
    #[test]
    fn ledger_tamper_prop_streamed_proofs_match_direct_proofs(
        n in 1u64..90,
        seed in proptest::prelude::any::<u64>(),
        cut_mask in proptest::prelude::any::<u128>(),
        actor in proptest::option::of(0usize..3),
        jsonl in proptest::prelude::any::<bool>(),
    ) {
        let entries = small_ledger(n, seed);
        let leaves: Vec<_> = entries.iter().map(|e| e.leaf_hash().expect("hash")).collect();
        let signer = NoteSigner::from_seed(ORIGIN, &[3; 32]);
        let sizes: Vec<u64> = (1..=n)
            .filter(|s| *s == n || cut_mask & (1u128 << (s % 128)) != 0)
            .collect();
        let notes: Vec<String> = sizes
            .iter()
            .map(|&s| {
                let root = super::tree::root(&leaves[..s as usize]);
                Checkpoint::new(ORIGIN, s, root).sign(&signer).expect("sign")
            })
            .collect();
        let filter = ExportFilter {
            actor: actor.map(|a| ["a", "b", "c"][a].to_owned()),
            ..ExportFilter::default()
        };
        let format = if jsonl { RecordFormat::Jsonl } else { RecordFormat::Csv };
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path().join("b");
        let summary = write_bundle(&dir, options(format, filter.clone()), signer, &notes, entries.clone())
            .expect("bundle");
        proptest::prop_assert!(summary.root_mismatches.is_empty());
        let text = std::fs::read_to_string(dir.join(files::PROOFS)).expect("proofs");
        let mut inclusion = 0;
        for line in text.lines() {
            match serde_json::from_str::<super::bundle::ProofLine>(line).expect("proof line") {
                super::bundle::ProofLine::Inclusion { seq, tree_size, leaf_hash, path } => {
                    inclusion += 1;
                    let direct = super::tree::inclusion_proof(seq - 1, &leaves[..tree_size as usize])
                        .expect("proof");
                    proptest::prop_assert_eq!(path, super::bundle::hex_path(&direct));
                    proptest::prop_assert_eq!(leaf_hash, hex::encode(leaves[seq as usize - 1]));
                    // Against the first checkpoint at or after the record.
                    let first = sizes.iter().copied().find(|s| *s >= seq);
                    proptest::prop_assert_eq!(Some(tree_size), first);
                }
                super::bundle::ProofLine::Consistency { old_size, new_size, path } => {
                    let direct = super::tree::consistency_proof(old_size, &leaves[..new_size as usize])
                        .expect("proof");
                    proptest::prop_assert_eq!(path, super::bundle::hex_path(&direct));
                }
            }
        }
        let exported = entries.iter().filter(|e| filter.matches(e)).count() as u64;
        proptest::prop_assert_eq!(inclusion, if filter.is_full() { 0 } else { exported });
        let report = verify_bundle(&dir).expect("verify");
        proptest::prop_assert!(report.is_intact(), "{:#?}", report.problems);
        proptest::prop_assert_eq!(report.records, exported);
        proptest::prop_assert_eq!(report.consistency_proofs_verified, sizes.len() as u64 - 1);
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig {
        cases: 64,
        failure_persistence: None,
        ..proptest::prelude::ProptestConfig::default()
    })]

    /// Any byte changed anywhere in a bundle is caught, and the verifier never panics on it.
    #[test]
    fn ledger_tamper_prop_any_flipped_byte_is_caught(
        file in 0usize..6,
        at in proptest::prelude::any::<u64>(),
        mask in 1u8..=255,
        filtered in proptest::prelude::any::<bool>(),
        jsonl in proptest::prelude::any::<bool>(),
    ) {
        let entries = small_ledger(30, 5);
        let leaves: Vec<_> = entries.iter().map(|e| e.leaf_hash().expect("hash")).collect();
        let signer = NoteSigner::from_seed(ORIGIN, &[4; 32]);
        let notes: Vec<String> = [7u64, 16, 30]
            .iter()
            .map(|&s| {
                Checkpoint::new(ORIGIN, s, super::tree::root(&leaves[..s as usize]))
                    .sign(&signer)
                    .expect("sign")
            })
            .collect();
        let filter = if filtered {
            ExportFilter { actor: Some("a".into()), ..ExportFilter::default() }
        } else {
            ExportFilter::default()
        };
        let format = if jsonl { RecordFormat::Jsonl } else { RecordFormat::Csv };
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path().join("b");
        write_bundle(&dir, options(format, filter), signer, &notes, entries).expect("bundle");
        let name = [
            format.file_name(),
            files::CHECKPOINTS,
            files::PUBLIC_KEY,
            files::PROOFS,
            files::MANIFEST,
            files::MANIFEST_SIG,
        ][file];
        let path = dir.join(name);
        let mut bytes = std::fs::read(&path).expect("read");
        proptest::prop_assume!(!bytes.is_empty());
        let i = (at % bytes.len() as u64) as usize;
        bytes[i] ^= mask;
        std::fs::write(&path, &bytes).expect("write");
        // An Err (unreadable bundle) is a refusal, which is also a failure to verify.
        if let Ok(report) = verify_bundle(&dir) {
            proptest::prop_assert!(
                !report.is_intact(),
                "flipping byte {} of {} went unnoticed",
                i,
                name
            );
        }
    }
}

// ---- audit retention: pruned rows and the deletion record that explains them ----

/// The deletion record's sequence number and the ranges it names in [`retention_fixture`].
const DELETION_SEQ: u64 = 150;
const PRUNED: [(u64, u64); 2] = [(1, 40), (42, 60)];

/// The fixture with record 150 replaced by a deletion record naming records 1..=40 and 42..=60
/// (41 is "held"), re-signed.
fn retention_fixture() -> Fixture {
    let mut fx = fixture();
    let mut ev = AuditEvent {
        time: time::macros::datetime!(2026-01-06 08:00:00 UTC),
        actor: "system:retention".into(),
        role: "system".into(),
        force: None,
        action: super::retention::DELETION_OPERATION.into(),
        object_type: Some("audit".into()),
        object_id: None,
        result: "success".into(),
        source_ip: None,
        user_agent: None,
        correlation_id: None,
        event_uid: uuid::Uuid::from_u128(0x0195a6f0_0000_7000_8000_0000000fffff),
        detail: None,
    };
    ev.detail = Some(serde_json::json!({
        "ranges": PRUNED,
        "count": 59,
        "before": "2026-01-05T09:00:00",
        "held": 1,
    }));
    fx.entries[DELETION_SEQ as usize - 1] =
        AuditEntry::from_event(DELETION_SEQ, &ev).expect("entry");
    let mut f = Frontier::new();
    fx.notes.clear();
    for e in &fx.entries {
        f.push(e.leaf_hash().expect("hash"));
        if CHECKPOINT_SIZES.contains(&f.size()) {
            fx.notes.push(
                Checkpoint::new(ORIGIN, f.size(), f.root())
                    .sign(&fx.signer)
                    .expect("sign"),
            );
        }
    }
    fx
}

fn is_pruned(seq: u64) -> bool {
    PRUNED.iter().any(|(lo, hi)| (*lo..=*hi).contains(&seq))
}

fn build_pruned(dir: &Path, fx: &Fixture, format: RecordFormat, filter: ExportFilter) {
    let mut w = super::bundle::BundleWriter::create(
        dir,
        options(format, filter),
        fx.signer.clone(),
        &fx.notes,
    )
    .expect("create");
    for e in &fx.entries {
        if is_pruned(e.seq) {
            w.push_pruned(e.seq, e.leaf_hash().expect("hash"))
                .expect("pruned");
        } else {
            w.push(e).expect("push");
        }
    }
    w.finish().expect("finish");
}

/// Blanks record `seq`'s CSV row to a pruned row, as someone deleting its content would.
fn prune_csv_row(d: &Path, seq: u64) {
    let mut rows = read_csv(d);
    let i = row_of(&rows, seq);
    for c in rows[i].iter_mut().skip(2) {
        c.clear();
    }
    write_csv(d, &rows);
}

#[test]
fn ledger_tamper_pruned_rows_verify_only_when_a_deletion_record_explains_them() {
    let fx = retention_fixture();
    let tmp = tempfile::tempdir().expect("tmp");

    // Untouched, in both formats: pruned rows hash into the signed roots as they are.
    for format in [RecordFormat::Csv, RecordFormat::Jsonl] {
        let dir = tmp.path().join(format!("pristine-{format:?}"));
        build_pruned(&dir, &fx, format, ExportFilter::default());
        let report = verify_bundle(&dir).expect("verify");
        assert!(report.is_intact(), "{format:?}: {:#?}", report.problems);
        assert_eq!(report.records, N);
    }
    // A filtered export skips pruned records (they match no filter) and still verifies.
    let filtered = tmp.path().join("filtered");
    build_pruned(&filtered, &fx, RecordFormat::Csv, kent());
    let report = verify_bundle(&filtered).expect("verify");
    assert!(report.is_intact(), "{:#?}", report.problems);
    let rows = read_csv(&filtered);
    assert!(
        rows.iter()
            .skip(1)
            .all(|r| !is_pruned(r[0].parse().expect("seq"))),
        "a filtered export holds no pruned row"
    );

    let base = tmp.path().join("pristine-Csv");
    let line = |seq| csv_line(&base, seq);
    let cases: Vec<(String, Attack, Expect)> = vec![
        (
            "prune a record no deletion record names (the held one)".into(),
            Box::new(|d: &Path| prune_csv_row(d, 41)),
            expect(ProblemKind::UnexplainedPrune).seq(41).line(line(41)),
        ),
        (
            "prune a record after the named ranges".into(),
            Box::new(|d: &Path| prune_csv_row(d, 70)),
            expect(ProblemKind::UnexplainedPrune).seq(70).line(line(70)),
        ),
        (
            "prune a record after the deletion record".into(),
            Box::new(|d: &Path| prune_csv_row(d, 160)),
            expect(ProblemKind::UnexplainedPrune).seq(160),
        ),
        (
            "remove the deletion record".into(),
            Box::new(|d: &Path| {
                let mut rows = read_csv(d);
                let i = row_of(&rows, DELETION_SEQ);
                rows.remove(i);
                write_csv(d, &rows);
            }),
            expect(ProblemKind::UnexplainedPrune).seq(1),
        ),
        (
            "widen the deletion record's ranges to explain a pruned held record".into(),
            Box::new(|d: &Path| {
                prune_csv_row(d, 41);
                edit_csv_cell(
                    d,
                    DELETION_SEQ,
                    "AdditionalFields",
                    r#"{"before":"2026-01-05T09:00:00","count":60,"held":0,"ranges":[[1,60]]}"#,
                );
            }),
            // An edited deletion record explains nothing: every pruned row is then unexplained.
            expect(ProblemKind::UnexplainedPrune).seq(1),
        ),
        (
            "delete a pruned row".into(),
            Box::new(|d: &Path| {
                let mut rows = read_csv(d);
                let i = row_of(&rows, 30);
                rows.remove(i);
                write_csv(d, &rows);
            }),
            expect(ProblemKind::DeletedRecord).seq(30),
        ),
        (
            "change a pruned row's leaf hash".into(),
            Box::new(|d: &Path| {
                let rows = read_csv(d);
                let current = rows[row_of(&rows, 33)][1].clone();
                edit_csv_cell(d, 33, "LeafHash", &other_value("LeafHash", &current));
            }),
            // Records 21..=47 are checkpoint #2's interval.
            expect(ProblemKind::RootMismatch).seq(21).checkpoint(2),
        ),
    ];
    run_cases(&base, &tmp.path().join("cases"), cases);

    // JSON lines: a pruned row is exactly Seq, LeafHash and "Pruned": true.
    let jbase = tmp.path().join("pristine-Jsonl");
    let edit = |d: &Path, seq: u64, f: &dyn Fn(&str) -> String| {
        let p = d.join(files::RECORDS_JSONL);
        let text = std::fs::read_to_string(&p).expect("read");
        let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
        lines[seq as usize - 1] = f(&lines[seq as usize - 1]);
        std::fs::write(&p, lines.join("\n") + "\n").expect("write");
    };
    let jcases: Vec<(String, Attack, Expect)> = vec![
        (
            "a pruned row that keeps some content".into(),
            Box::new(move |d: &Path| {
                edit(d, 5, &|l| l.replacen('{', "{\"ActorUsername\":\"x\",", 1));
            }),
            expect(ProblemKind::EditedRecord).seq(5).line(5),
        ),
        (
            "a record replaced by a pruned row".into(),
            Box::new(move |d: &Path| {
                let text = std::fs::read_to_string(d.join(files::RECORDS_JSONL)).expect("read");
                let line = text.lines().nth(99).expect("line");
                let leaf =
                    serde_json::from_str::<serde_json::Value>(line).expect("json")["LeafHash"]
                        .as_str()
                        .expect("leaf")
                        .to_owned();
                edit(d, 100, &|_| {
                    serde_json::json!({"Seq": 100, "LeafHash": leaf, "Pruned": true}).to_string()
                });
            }),
            expect(ProblemKind::UnexplainedPrune).seq(100).line(100),
        ),
    ];
    run_cases(&jbase, &tmp.path().join("jcases"), jcases);
}
