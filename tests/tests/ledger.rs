//! The audit ledger end to end, through the real binary: `audit export` writes a bundle that
//! `audit verify DIR` accepts offline; a tampered copy fails and the report names the record;
//! filtered and JSON-lines exports verify too; every export is itself audited; spreadsheet
//! formulas arriving in request headers are escaped in the CSV.

use nmpp_tests::{TestGateway, sdm, secs};
use std::path::{Path, PathBuf};

/// Some traffic: submissions delivered to Athena, searches and views.
async fn traffic(gw: &TestGateway) {
    let api = gw.api();
    for _ in 0..3 {
        let a = api.submit_ok(&sdm::online_crime_report()).await;
        api.wait_for_status(&a.exchange_id, "delivered", secs(15))
            .await;
        api.exchange(&a.exchange_id).await;
    }
    api.exchanges("").await;
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// The CSV rows (CRLF-separated lines after the header).
fn csv_lines(dir: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(dir.join("records.csv")).unwrap();
    text.split("\r\n")
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

fn write_lines(dir: &Path, lines: &[String]) {
    let mut text = lines.join("\r\n");
    text.push_str("\r\n");
    std::fs::write(dir.join("records.csv"), text).unwrap();
}

async fn export(gw: &TestGateway, dir: &Path, extra: &[&str]) -> nmpp_tests::CliOutput {
    let d = dir.to_str().unwrap();
    let mut args = vec!["audit", "export", "--out", d, "--quiet"];
    args.extend_from_slice(extra);
    gw.cli(&args).await
}

async fn verify(gw: &TestGateway, dir: &Path) -> nmpp_tests::CliOutput {
    gw.cli(&["audit", "verify", dir.to_str().unwrap()]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_verifies_and_every_tampered_copy_is_named() {
    let gw = TestGateway::start().await;
    traffic(&gw).await;
    let out_dir = gw.dir.path().join("bundles");
    let full = out_dir.join("full");
    let out = export(&gw, &full, &["--format", "csv"]).await;
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.contains("of the whole ledger"), "{out:?}");
    let ok = verify(&gw, &full).await;
    assert!(ok.status.success(), "an untouched bundle verifies: {ok:?}");
    assert!(ok.stdout.contains("verified"), "{ok:?}");

    let lines = csv_lines(&full);
    assert!(lines.len() > 10, "only {} rows", lines.len());
    // Row i (1-based after the header) is record i. The victim: a record of the test client's,
    // neither the first nor the last.
    let victim = (lines.len() / 2..lines.len() - 1)
        .chain(2..lines.len() / 2)
        .find(|&i| lines[i].contains(",test-client,"))
        .expect("a record by the test client");
    assert!(lines[victim].starts_with(&format!("{victim},")));

    // Edit a column an auditor reads (the actor), keeping the stored leaf hash.
    let edited = out_dir.join("edited");
    copy_dir(&full, &edited);
    let mut l = lines.clone();
    l[victim] = l[victim].replacen(",test-client,", ",mallory,", 1);
    assert_ne!(l[victim], lines[victim], "the row names the test client");
    write_lines(&edited, &l);
    let bad = verify(&gw, &edited).await;
    assert!(!bad.status.success(), "{bad:?}");
    assert!(
        bad.stdout
            .contains(&format!("first problem: edited record at record {victim}")),
        "{bad:?}"
    );

    // Delete a record.
    let deleted = out_dir.join("deleted");
    copy_dir(&full, &deleted);
    let mut l = lines.clone();
    l.remove(victim);
    write_lines(&deleted, &l);
    let bad = verify(&gw, &deleted).await;
    assert!(!bad.status.success(), "{bad:?}");
    assert!(
        bad.stdout
            .contains(&format!("first problem: deleted record at record {victim}")),
        "{bad:?}"
    );

    // Truncate the tail.
    let truncated = out_dir.join("truncated");
    copy_dir(&full, &truncated);
    write_lines(&truncated, &lines[..lines.len() - 2]);
    let bad = verify(&gw, &truncated).await;
    assert!(!bad.status.success(), "{bad:?}");
    assert!(bad.stdout.contains("truncated tail"), "{bad:?}");

    // Swap the public key for another one.
    let swapped = out_dir.join("swapped");
    copy_dir(&full, &swapped);
    let (_, other_vkey) = replay::ledger::generate_key_pair("nmpp-gateway/audit").unwrap();
    std::fs::write(swapped.join("public-key.txt"), format!("{other_vkey}\n")).unwrap();
    let bad = verify(&gw, &swapped).await;
    assert!(!bad.status.success(), "{bad:?}");
    assert!(bad.stdout.contains("FAILS verification"), "{bad:?}");

    // The export was audited, by the CLI user, after the records it exported.
    let db = rusqlite::Connection::open(gw.journal_path()).unwrap();
    let (actor, result, detail): (String, String, String) = db
        .query_row(
            "SELECT actor, result, detail FROM audit WHERE action = 'audit.export'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert!(actor.starts_with("cli:"), "{actor}");
    assert_eq!(result, "success");
    let detail: serde_json::Value = serde_json::from_str(&detail).unwrap();
    assert_eq!(detail["format"], "csv");
    assert_eq!(detail["records"], lines.len() as u64 - 1);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filtered_and_jsonl_exports_verify_with_inclusion_proofs() {
    let gw = TestGateway::start().await;
    traffic(&gw).await;
    let dir: PathBuf = gw.dir.path().join("by-actor");
    let out = export(
        &gw,
        &dir,
        &["--format", "jsonl", "--actor", nmpp_tests::API_KEY],
    )
    .await;
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.contains("of a filtered ledger"), "{out:?}");
    let text = std::fs::read_to_string(dir.join("records.jsonl")).unwrap();
    let rows: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(rows.len() >= 7, "{} rows", rows.len());
    assert!(
        rows.iter()
            .all(|r| r["ActorUsername"] == nmpp_tests::API_KEY),
        "only the actor's records"
    );
    let ok = verify(&gw, &dir).await;
    assert!(ok.status.success(), "{ok:?}");
    assert!(
        ok.stdout
            .contains(&format!("{} inclusion proof(s)", rows.len())),
        "{ok:?}"
    );

    // A time window in the future holds nothing, and still verifies.
    let later = gw.dir.path().join("later");
    let out = export(&gw, &later, &["--from", "2999-01-01T00:00:00Z"]).await;
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.starts_with("exported 0 record(s)"), "{out:?}");
    assert!(verify(&gw, &later).await.status.success());

    // Bad input names the flag and the rule.
    let bad = export(&gw, &gw.dir.path().join("x"), &["--from", "yesterday"]).await;
    assert!(!bad.status.success());
    assert!(
        bad.stderr.contains("--from: not an RFC 3339 date-time"),
        "{bad:?}"
    );
    let bad = export(&gw, &gw.dir.path().join("y"), &["--format", "xlsx"]).await;
    assert!(
        bad.stderr.contains("--format: expected csv or jsonl"),
        "{bad:?}"
    );
    // A non-empty directory is refused rather than overwritten.
    let again = export(&gw, &dir, &[]).await;
    assert!(!again.status.success());
    assert!(again.stderr.contains("is not empty"), "{again:?}");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn formula_in_a_header_is_escaped_in_the_csv() {
    let gw = TestGateway::start().await;
    let res = gw
        .api()
        .get("/v1/exchanges")
        .header("user-agent", "=HYPERLINK(\"http://evil.example\",\"x\")")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let dir = gw.dir.path().join("b");
    let out = export(&gw, &dir, &[]).await;
    assert!(out.status.success(), "{out:?}");
    let text = std::fs::read_to_string(dir.join("records.csv")).unwrap();
    assert!(
        text.contains("\"'=HYPERLINK(\"\"http://evil.example\"\",\"\"x\"\")\""),
        "the cell is written with a leading apostrophe: {text}"
    );
    assert!(verify(&gw, &dir).await.status.success());
    gw.stop().await;
}

/// `N` in "would prune N record(s)" / "pruned N record(s)".
fn count_after(text: &str, words: &str) -> u64 {
    let at = text
        .find(words)
        .unwrap_or_else(|| panic!("{words:?} not in {text}"));
    text[at + words.len()..]
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count after {words:?} in {text}"))
}

/// Audit retention through the real binary: the dry run counts and changes nothing; apply
/// prunes behind a checkpointed deletion record; the journal's chain and a full export still
/// verify, with the pruned records as `Seq`/`LeafHash`-only rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_retention_apply_prunes_and_everything_still_verifies() {
    let gw = TestGateway::start_with(|c| {
        c.audit.retention.interval_s = 0;
        c.audit.retention.keep = Some("2s".into());
    })
    .await;
    traffic(&gw).await;
    tokio::time::sleep(secs(3)).await;

    let dry = gw.cli(&["audit", "retention", "apply", "--dry-run"]).await;
    assert!(dry.status.success(), "{dry:?}");
    assert!(
        dry.stdout.contains("dry run: audit retention: default 2s"),
        "{dry:?}"
    );
    assert!(
        dry.stdout.contains("no audit sink is configured"),
        "{dry:?}"
    );
    assert!(count_after(&dry.stdout, "would prune ") > 5, "{dry:?}");

    let out = gw.cli(&["audit", "retention", "apply"]).await;
    assert!(out.status.success(), "{out:?}");
    let pruned = count_after(&out.stdout, "pruned ");
    assert!(pruned > 5, "{out:?}");
    assert!(out.stdout.contains("under 1 deletion record(s)"), "{out:?}");

    let chain = gw.cli(&["audit", "verify"]).await;
    assert!(chain.status.success(), "{chain:?}");

    let full = gw.dir.path().join("bundles").join("after-retention");
    let ex = export(&gw, &full, &["--format", "csv"]).await;
    assert!(ex.status.success(), "{ex:?}");
    let ok = verify(&gw, &full).await;
    assert!(
        ok.status.success(),
        "a bundle with pruned rows verifies: {ok:?}"
    );
    let lines = csv_lines(&full);
    let pruned_rows: Vec<&String> = lines
        .iter()
        .filter(|l| l.ends_with(",,,,,,,,,,,,,,,,,"))
        .collect();
    assert_eq!(pruned_rows.len() as u64, pruned, "{lines:#?}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains(",audit.retention.deleted,")),
        "the deletion record is exported"
    );

    // Blank the deletion record's row too (as if it had been removed to hide the prune): every
    // pruned row is then unexplained, and the first is named.
    let silent = gw.dir.path().join("bundles").join("silent");
    copy_dir(&full, &silent);
    let mut l = lines.clone();
    let victim = l
        .iter()
        .position(|r| r.contains(",audit.retention.deleted,"))
        .expect("the deletion record");
    let cells: Vec<String> = l[victim]
        .splitn(3, ',')
        .take(2)
        .map(str::to_owned)
        .collect();
    l[victim] = format!("{},{}{}", cells[0], cells[1], ",".repeat(17));
    write_lines(&silent, &l);
    let first_pruned = pruned_rows[0].split(',').next().unwrap().to_owned();
    let bad = verify(&gw, &silent).await;
    assert!(!bad.status.success(), "{bad:?}");
    assert!(
        bad.stdout.contains(&format!(
            "first problem: unexplained pruned record at record {first_pruned}"
        )),
        "{bad:?}"
    );
}

/// The server applies audit retention on its own schedule (`[audit.retention] interval_s`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_applies_audit_retention_on_schedule() {
    let gw = TestGateway::start_with(|c| {
        c.audit.retention.interval_s = 1;
        c.audit.retention.keep = Some("1s".into());
    })
    .await;
    traffic(&gw).await;
    let url = format!("sqlite://{}", gw.journal_path().display());
    let j = replay::open(&url, replay::OpenOptions::default())
        .await
        .unwrap();
    nmpp_tests::eventually("a deletion record by the server", secs(20), || {
        let j = j.clone();
        async move {
            let recs = j
                .audit_records(1, 100_000)
                .await
                .map_err(|e| e.to_string())?;
            let del = recs
                .iter()
                .find(|r| r.event.action == "audit.retention.deleted")
                .ok_or("none yet")?;
            if del.event.actor != "system:retention" {
                return Err(format!("by {}", del.event.actor));
            }
            if !recs
                .iter()
                .any(|r| r.pruned.as_ref().is_some_and(|p| p.by == del.seq))
            {
                return Err("nothing pruned under it yet".into());
            }
            Ok(())
        }
    })
    .await;
    let chain = gw.cli(&["audit", "verify"]).await;
    assert!(chain.status.success(), "{chain:?}");
}
