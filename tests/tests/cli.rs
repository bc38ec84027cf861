//! The operator CLI of the real binary over a journal a gateway is writing: `exchanges list`,
//! `exchanges show`, `audit verify` — and tampering with the audit chain.

use nmpp_tests::{Accepted, Api, TestGateway, sdm, secs};
use serde_json::Value;
use std::collections::HashSet;

/// Submits `n` skeleton documents with 8 concurrent clients; returns the receipts in submission
/// order per client (overall order is not meaningful).
async fn submit_many(api: &Api, n: usize) -> Vec<Accepted> {
    let per = n.div_ceil(8);
    let tasks = (0..8).map(|c| {
        let api = api.clone();
        let count = per.min(n.saturating_sub(c * per));
        tokio::spawn(async move {
            let mut out = Vec::new();
            for _ in 0..count {
                out.push(api.submit_ok(&sdm::skeleton()).await);
            }
            out
        })
    });
    let mut all = Vec::new();
    for t in futures::future::join_all(tasks).await {
        all.extend(t.unwrap());
    }
    all
}

/// Waits until no exchange is pending.
async fn settle(api: &Api) {
    nmpp_tests::eventually(
        "every exchange to be delivered or parked",
        secs(60),
        || async {
            let pending = api.exchanges("status=pending&limit=5").await;
            if pending.is_empty() {
                Ok(())
            } else {
                Err(format!("still pending: {pending:?}"))
            }
        },
    )
    .await;
}

fn ids_of(rows: &Value) -> Vec<String> {
    rows.as_array()
        .unwrap_or_else(|| panic!("not an array: {rows}"))
        .iter()
        .map(|r| r["id"].as_str().expect("id").to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exchanges_list_shows_every_row_and_honours_limit_and_status() {
    let gw = TestGateway::start().await;
    let api = gw.api();
    // Three deliveries are refused and park; the rest are delivered.
    gw.sim.reject_next(3, 422);
    // More than one page of the journal (1000 rows) so that listing all of them needs paging.
    let n = 1005;
    let accepted = submit_many(&api, n).await;
    settle(&api).await;
    let expected: HashSet<String> = accepted.iter().map(|a| a.exchange_id.clone()).collect();
    assert_eq!(expected.len(), n);

    let all = gw.cli(&["exchanges", "list", "--json"]).await.json();
    let listed = ids_of(&all);
    assert_eq!(listed.len(), n, "every row without --limit");
    assert_eq!(listed.iter().cloned().collect::<HashSet<_>>(), expected);
    for row in all.as_array().unwrap() {
        for field in ["id", "status", "submissionId", "attemptCount", "createdAt"] {
            assert!(!row[field].is_null(), "{field} missing in {row}");
        }
    }

    let limited = ids_of(
        &gw.cli(&["exchanges", "list", "--limit", "7", "--json"])
            .await
            .json(),
    );
    assert_eq!(limited, listed[..7], "--limit 7 gives the 7 newest");

    let parked = gw
        .cli(&["exchanges", "list", "--status", "parked", "--json"])
        .await
        .json();
    let parked_rows = parked.as_array().unwrap();
    assert_eq!(parked_rows.len(), 3, "{parked:#}");
    for r in parked_rows {
        assert_eq!(r["status"], "parked");
        assert_eq!(r["lastErrorClass"], "rejected");
    }
    let delivered = gw
        .cli(&["exchanges", "list", "--status", "delivered", "--json"])
        .await
        .json();
    assert_eq!(delivered.as_array().unwrap().len(), n - 3);
    assert!(
        delivered
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["status"] == "delivered")
    );
    let pending = gw
        .cli(&["exchanges", "list", "--status", "pending", "--json"])
        .await
        .json();
    assert_eq!(pending, serde_json::json!([]));
    assert_eq!(gw.sim.records().len(), n - 3);

    // The table form lists them too and says how many.
    let table = gw.cli(&["exchanges", "list", "--status", "parked"]).await;
    assert!(table.status.success(), "{table:?}");
    assert!(table.stdout.contains("3 exchange(s)"), "{}", table.stdout);
    for r in parked_rows {
        assert!(table.stdout.contains(r["id"].as_str().unwrap()));
    }

    // A bad status is refused.
    let bad = gw.cli(&["exchanges", "list", "--status", "lost"]).await;
    assert!(!bad.status.success(), "{bad:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exchanges_show_gives_status_submission_attempts_and_links() {
    let gw = TestGateway::start().await;
    let api = gw.api();
    gw.sim.reject_next(1, 422);
    let doc = sdm::online_crime_report();
    let sid = sdm::submission_id(&doc);
    let parent_id = api.submit_ok(&doc).await.exchange_id;
    api.wait_for_status(&parent_id, "parked", secs(15)).await;
    let child_id = api.replay(&parent_id).await;
    api.wait_for_status(&child_id, "delivered", secs(15)).await;

    let parent = gw
        .cli(&["exchanges", "show", &parent_id, "--json"])
        .await
        .json();
    assert_eq!(parent["id"], parent_id.as_str());
    assert_eq!(parent["status"], "parked");
    assert_eq!(parent["submissionId"], sid);
    assert_eq!(parent["parentId"], Value::Null);
    assert_eq!(parent["attemptCount"], 1);
    let attempts = parent["attempts"].as_array().expect("attempts is an array");
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0]["errorClass"], "rejected");
    assert_eq!(parent["children"], serde_json::json!([child_id]));

    let child = gw
        .cli(&["exchanges", "show", &child_id, "--json"])
        .await
        .json();
    assert_eq!(child["id"], child_id.as_str());
    assert_eq!(child["status"], "delivered");
    assert_eq!(child["submissionId"], sid);
    assert_eq!(child["parentId"], parent_id.as_str());
    assert_eq!(child["attemptCount"], 1);
    assert_eq!(child["attempts"][0]["outcome"], "delivered");

    // Text form.
    let text = gw.cli(&["exchanges", "show", &child_id]).await;
    assert!(text.status.success(), "{text:?}");
    assert!(text.stdout.contains(&child_id) && text.stdout.contains(&parent_id));

    // Unknown and malformed ids fail with a message.
    let missing = uuid::Uuid::now_v7().to_string();
    let out = gw.cli(&["exchanges", "show", &missing, "--json"]).await;
    assert!(!out.status.success());
    assert!(out.stderr.contains("not found"), "{out:?}");
    let out = gw.cli(&["exchanges", "show", "nope"]).await;
    assert!(!out.status.success());
    assert!(out.stderr.contains("nope"), "{out:?}");
}

/// Some traffic so the audit chain has records of several kinds.
async fn traffic(gw: &TestGateway) {
    let api = gw.api();
    for _ in 0..3 {
        let a = api.submit_ok(&sdm::online_crime_report()).await;
        api.wait_for_status(&a.exchange_id, "delivered", secs(15))
            .await;
    }
    api.exchanges("").await;
}

fn open_journal(gw: &TestGateway) -> rusqlite::Connection {
    let db = rusqlite::Connection::open(gw.journal_path()).unwrap();
    db.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
    db
}

fn audit_count(db: &rusqlite::Connection) -> i64 {
    db.query_row("SELECT count(*) FROM audit", [], |r| r.get(0))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_verify_names_an_edited_record() {
    let gw = TestGateway::start().await;
    traffic(&gw).await;
    let ok = gw.cli(&["audit", "verify"]).await;
    assert_eq!(ok.status.code(), Some(0), "{ok:?}");
    assert!(ok.stdout.contains("intact"), "{ok:?}");

    let db = open_journal(&gw);
    let records = audit_count(&db);
    assert!(records >= 8, "only {records} audit records");
    let victim = records / 2;
    let changed = db
        .execute(
            "UPDATE audit SET actor = 'mallory' WHERE seq = ?1",
            [victim],
        )
        .unwrap();
    assert_eq!(changed, 1);
    drop(db);

    let bad = gw.cli(&["audit", "verify"]).await;
    assert_eq!(bad.status.code(), Some(1), "{bad:?}");
    assert!(
        bad.stdout.contains(&format!("record {victim}:")),
        "does not name record {victim}: {bad:?}"
    );
    assert!(bad.stdout.contains("edited"), "{bad:?}");

    // The API says the same.
    let res = gw.api().get("/v1/audit/verify").send().await.unwrap();
    assert_eq!(res.status(), 409);
    let report: Value = res.json().await.unwrap();
    assert_eq!(report["intact"], false);
    assert_eq!(report["firstBadSeq"], victim);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_verify_names_a_deleted_record() {
    let gw = TestGateway::start().await;
    traffic(&gw).await;
    let db = open_journal(&gw);
    let records = audit_count(&db);
    let victim = records / 2;
    let deleted = db
        .execute("DELETE FROM audit WHERE seq = ?1", [victim])
        .unwrap();
    assert_eq!(deleted, 1);
    drop(db);

    let bad = gw.cli(&["audit", "verify"]).await;
    assert_eq!(bad.status.code(), Some(1), "{bad:?}");
    assert!(
        bad.stdout.contains(&format!("record {victim}")),
        "does not name record {victim}: {bad:?}"
    );
    assert!(bad.stdout.contains("missing"), "{bad:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_verify_detects_an_edit_whose_hash_was_recomputed() {
    // A forger who edits a record and recomputes its hash still breaks the link to the next one.
    let gw = TestGateway::start().await;
    traffic(&gw).await;
    let db = open_journal(&gw);
    let victim = audit_count(&db) / 2;
    let journal = replay::open(
        &format!("sqlite://{}", gw.journal_path().display()),
        replay::OpenOptions::default(),
    )
    .await
    .unwrap();
    let mut rec = journal
        .audit_records(victim as u64, 1)
        .await
        .unwrap()
        .pop()
        .unwrap();
    assert_eq!(rec.seq, victim as u64);
    rec.event.actor = "mallory".into();
    let forged = replay::audit::chain_hash(&rec.prev_hash, rec.seq, &rec.event);
    assert_ne!(forged, rec.hash);
    db.execute(
        "UPDATE audit SET actor = 'mallory', hash = ?2 WHERE seq = ?1",
        rusqlite::params![victim, forged],
    )
    .unwrap();
    drop(db);

    let bad = gw.cli(&["audit", "verify"]).await;
    assert_eq!(bad.status.code(), Some(1), "{bad:?}");
    let next = victim + 1;
    assert!(
        bad.stdout.contains(&format!("record {next}:")),
        "does not name record {next}: {bad:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_commands_beside_a_busy_server_keep_the_journal_and_chain_whole() {
    use std::sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    };
    let sim = fixtures::athena::AthenaSim::start(Default::default())
        .await
        .unwrap();
    let mut gw = nmpp_tests::ProcessGateway::new(&sim.base_url());
    gw.start().await;
    let api = gw.api();
    sim.reject_next(1, 422);
    let parked = api.submit_ok(&sdm::skeleton()).await.exchange_id;
    api.wait_for_status(&parked, "parked", secs(15)).await;

    // Four clients submit while the CLI reads, replays and writes audit records beside them.
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (api, stop) = (api.clone(), stop.clone());
            tokio::spawn(async move {
                let mut ids = Vec::new();
                while !stop.load(Ordering::Relaxed) && ids.len() < 100 {
                    ids.push(api.submit_ok(&sdm::online_crime_report()).await.exchange_id);
                }
                ids
            })
        })
        .collect();
    let replay = gw.cli(&["replay", &parked]).await;
    assert!(replay.status.success(), "{replay:?}");
    for _ in 0..5 {
        let rows = gw
            .cli(&["exchanges", "list", "--limit", "5", "--json"])
            .await
            .json();
        assert_eq!(rows.as_array().unwrap().len(), 5);
        let shown = gw
            .cli(&["exchanges", "show", &parked, "--json"])
            .await
            .json();
        assert_eq!(shown["status"], "parked");
    }
    stop.store(true, Ordering::Relaxed);
    let mut ids = Vec::new();
    for c in clients {
        ids.extend(c.await.unwrap());
    }
    assert!(!ids.is_empty());
    settle(&api).await;
    let delivered: HashSet<String> = ids_of(
        &gw.cli(&["exchanges", "list", "--status", "delivered", "--json"])
            .await
            .json(),
    )
    .into_iter()
    .collect();
    for id in &ids {
        assert!(
            delivered.contains(id),
            "{id} acknowledged but not delivered"
        );
    }
    let verify = gw.cli(&["audit", "verify"]).await;
    assert_eq!(verify.status.code(), Some(0), "{verify:?}");
    // A second replay of the same parent is refused: it already has a child.
    let again = gw.cli(&["replay", &parked]).await;
    assert!(!again.status.success(), "{again:?}");
    gw.kill().await;
}

/// Writes `text` as a config file in a fresh directory and runs `check-config` on it.
async fn check_config(text: &str) -> nmpp_tests::CliOutput {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gw.toml");
    std::fs::write(&path, text).unwrap();
    let out = tokio::process::Command::new(nmpp_tests::gateway_bin())
        .arg("check-config")
        .arg(&path)
        .env_remove("NMPP_GATEWAY_CONFIG")
        .output()
        .await
        .unwrap();
    nmpp_tests::CliOutput {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_config_accepts_a_valid_file_and_names_what_is_wrong() {
    let gw = TestGateway::start().await;
    let valid = std::fs::read_to_string(gw.config_file()).unwrap();
    let ok = check_config(&valid).await;
    assert_eq!(ok.status.code(), Some(0), "{ok:?}");
    assert!(ok.stdout.contains(": ok"), "{ok:?}");

    let unknown = check_config("[http]\nlisten = \"127.0.0.1:9000\"\nlistn = 3\n").await;
    assert_eq!(unknown.status.code(), Some(1), "{unknown:?}");
    assert!(unknown.stdout.contains("listn"), "{unknown:?}");

    let wrong_type = check_config("[delivery]\nmax_attempts = \"many\"\n").await;
    assert_eq!(wrong_type.status.code(), Some(1), "{wrong_type:?}");
    assert!(
        wrong_type.stdout.contains("delivery.max_attempts"),
        "{wrong_type:?}"
    );

    let rules = check_config(
        "[delivery]\nworkers = 0\n[auth.clients.x]\nsecret_sha256 = \"abc\"\nroles = []\n",
    )
    .await;
    assert_eq!(rules.status.code(), Some(1), "{rules:?}");
    for key in [
        "delivery.workers",
        "auth.clients.x.secret_sha256",
        "auth.clients.x.roles",
    ] {
        assert!(rules.stdout.contains(key), "{key} not named: {rules:?}");
    }

    let syntax = check_config("[http\nlisten = 1\n").await;
    assert_eq!(syntax.status.code(), Some(1), "{syntax:?}");
    assert!(syntax.stdout.contains("line 1"), "{syntax:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_config_reports_every_problem_in_one_run() {
    let out = check_config(
        "[http]\nlistn = 3\n[delivery]\nmax_attempts = \"many\"\nworkers = 0\n\
         [auth.clients.x]\nsecret_sha256 = \"abc\"\nroles = [\"operator\"]\n",
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    for (key, what) in [
        ("http.listn", "unknown key"),
        ("delivery.max_attempts", "wrong type"),
        ("delivery.workers", "rule broken beside type errors"),
        (
            "auth.clients.x.secret_sha256",
            "rule broken beside type errors",
        ),
    ] {
        assert!(
            out.stdout.contains(key),
            "{what} {key} not reported: {out:?}"
        );
    }
    assert!(out.stdout.contains("gw.toml"), "the file is named: {out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_config_gives_the_file_and_line_of_every_problem() {
    let specs = tempfile::tempdir().unwrap();
    let bad_spec = specs.path().join("20-athena.toml");
    std::fs::write(
        &bad_spec,
        "id = \"nmpp-to-athena\"\nversion = \"1.1.0\"\nextends = \"nmpp-to-athena\"\nwhat = 1\n",
    )
    .unwrap();
    let out = check_config(&format!(
        "[http]\n\
         listen = \"127.0.0.1:9000\"\n\
         listn = 3\n\
         \n\
         [delivery]\n\
         max_attempts = \"many\"\n\
         workers = 0\n\
         \n\
         [forces.kent]\n\
         name = \"Kent Police\"\n\
         ihub_force_id = 46\n\
         records = {{ type = \"athena_xml\", base_url = \"http://127.0.0.1:1\" }}\n\
         \n\
         [forces.essex]\n\
         name = \"Essex Police\"\n\
         ihub_force_id = 47\n\
         records = {{ type = \"athena\", base_url = \"http://127.0.0.1:1\" }}\n\
         mappings = {:?}\n\
         \n\
         [forces.essex.national]\n\
         type = \"ihub\"\n\
         base_url = \"http://127.0.0.1:1\"\n",
        specs.path().display().to_string()
    ))
    .await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    for (at, key, what) in [
        ("gw.toml:3:1:", "http.listn", "unknown key"),
        ("gw.toml:6:1:", "delivery.max_attempts", "wrong type"),
        ("gw.toml:7:1:", "delivery.workers", "rule broken"),
        ("gw.toml:12:", "forces.kent.records", "wrong adapter type"),
        (
            "gw.toml:18:1:",
            "forces.essex.mappings",
            "mapping spec that does not load",
        ),
        ("gw.toml:20:", "forces.essex.national", "missing credential"),
    ] {
        let line = out.stdout.lines().find(|l| {
            l.starts_with(&format!("{}/{at}", dir_of(l))) && l.contains(&format!(": {key}"))
        });
        assert!(line.is_some(), "{what}: no line with `{at} {key}`: {out:?}");
    }
    // The spec that does not load is named with its own file and line.
    assert!(
        out.stdout
            .contains(&format!("{}:4: unknown field `what`", bad_spec.display())),
        "{out:?}"
    );
    assert!(out.stdout.contains(" problem(s)"), "{out:?}");
}

/// The directory part of a `DIR/gw.toml:LINE:COL: …` line.
fn dir_of(line: &str) -> &str {
    line.split("/gw.toml:").next().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_config_names_keys_as_they_are_written_in_the_file() {
    let out = check_config("[http]\nlistn = 3\n").await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stdout.contains("http.listn"), "{out:?}");
    assert!(
        !out.stdout.contains("default.http"),
        "the key is http.listn, there is no `default` table: {out:?}"
    );
}

/// Runs the binary with `args` and no configuration.
async fn bare_cli(args: &[&str]) -> nmpp_tests::CliOutput {
    let out = tokio::process::Command::new(nmpp_tests::gateway_bin())
        .args(args)
        .env_remove("NMPP_GATEWAY_CONFIG")
        .output()
        .await
        .unwrap();
    nmpp_tests::CliOutput {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mappings_doc_writes_every_spec_and_names_a_spec_file_that_does_not_load() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("MAPPINGS.md");
    let out = bare_cli(&["mappings", "doc", "--out", file.to_str().unwrap()]).await;
    assert!(out.status.success(), "{out:?}");
    let doc = std::fs::read_to_string(&file).unwrap();
    for spec in [
        "sdm-to-nmpp",
        "nmpp-to-athena",
        "athena-to-nmpp-case",
        "warehouse-to-nmpp-case",
        "storm-to-nmpp-incident",
        "nmpp-to-dams-evidence",
        "nmpp-to-ihub-event",
    ] {
        assert!(
            doc.contains(&format!("## `{spec}@1.0.0`")),
            "{spec} missing"
        );
    }
    // Field-level rows: source field → NMPP field, with the code list used.
    assert!(
        doc.contains("| `forceIdentifier` | `Header.ForceCode` | integer |"),
        "{doc}"
    );
    assert!(doc.contains("## Lineage: `ihub-sdm@1` → `nmpp@1` → `athena-crime-record@1`"));
    // Every version of a spec, the ones that are not current marked so.
    let v2 = doc
        .split("## `nmpp-to-athena@2.0.0`")
        .nth(1)
        .expect("nmpp-to-athena@2.0.0 is documented");
    assert!(
        v2.trim_start()
            .starts_with("Not the current version of `nmpp-to-athena`"),
        "{v2}"
    );
    assert!(
        v2.contains("| `People.Person[].Address.Postcode` | `parties[*].contact.addresses[0].postcode` | trim, uppercase |"),
        "{v2}"
    );

    // A force's spec directory with a file that is not valid TOML: named with its line, exit 1.
    let specs = tempfile::tempdir().unwrap();
    std::fs::write(
        specs.path().join("kent-overrides.toml"),
        "id = \"sdm-to-nmpp\"\nversion = \n",
    )
    .unwrap();
    let bad = bare_cli(&["mappings", "doc", "--specs", specs.path().to_str().unwrap()]).await;
    assert_eq!(bad.status.code(), Some(1), "{bad:?}");
    assert!(bad.stdout.contains("kent-overrides.toml:2"), "{bad:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_level_changes_on_reload_without_a_restart() {
    let sim = fixtures::athena::AthenaSim::start(Default::default())
        .await
        .expect("athena");
    let mut gw = nmpp_tests::ProcessGateway::with_config(&sim.base_url(), |c| {
        c.log.level = "warn".into();
    });
    gw.start().await;
    let api = gw.api();
    // Nothing at info is written while the level is warn, the reload's own line included.
    let (code, doc) = api.reload_config().await;
    assert_eq!(code, 200, "{doc}");
    assert!(doc["data"]["attributes"].get("logLevel").is_none(), "{doc}");
    assert!(
        !gw.stderr_log().contains("configuration reloaded"),
        "{}",
        gw.stderr_log()
    );

    // A filter that does not parse is refused, naming the key; the running one stays.
    let mut bad = gw.config.clone();
    bad.log.level = "info,[".into();
    nmpp_tests::write_config(&bad, gw.config_path());
    let (code, doc) = api.reload_config().await;
    assert_eq!(code, 422, "{doc}");
    assert!(doc.to_string().contains("log.level"), "{doc}");

    let mut cfg = gw.config.clone();
    cfg.log.level = "info".into();
    nmpp_tests::write_config(&cfg, gw.config_path());
    let (code, doc) = api.reload_config().await;
    assert_eq!(code, 200, "{doc}");
    let applied = &doc["data"]["attributes"];
    if std::env::var_os("RUST_LOG").is_some() {
        // RUST_LOG chose the filter at start and keeps it: the change waits for a restart.
        assert!(
            applied["restartNeeded"]
                .as_array()
                .is_some_and(|a| a.iter().any(|s| s == "log")),
            "{doc}"
        );
    } else {
        assert_eq!(applied["logLevel"], "info", "{doc}");
        assert!(
            !applied["restartNeeded"]
                .as_array()
                .is_some_and(|a| a.iter().any(|s| s == "log")),
            "{doc}"
        );
        // The reload's own info line is the first one written at the new level.
        nmpp_tests::eventually("an info line", secs(10), || {
            let log = gw.stderr_log();
            async move {
                if log.contains("configuration reloaded") {
                    Ok(())
                } else {
                    Err(log)
                }
            }
        })
        .await;
    }
    gw.kill().await;
}

/// `delivery` applies on reload without a restart: a gateway started paused (a records-system
/// maintenance window) accepts and keeps; unpausing by reload delivers what waited; pausing
/// again by reload stops deliveries of what arrives next, while what was delivered stays so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pausing_and_unpausing_delivery_applies_on_reload() {
    let sim = fixtures::athena::AthenaSim::start(Default::default())
        .await
        .expect("athena");
    let mut gw = nmpp_tests::ProcessGateway::with_config(&sim.base_url(), |c| {
        c.delivery.paused = true;
    });
    gw.start().await;
    let api = gw.api();
    let waited = api.submit_ok(&sdm::online_crime_report()).await;
    // Paused: nothing reaches Athena (a poll interval is 50 ms in tests; give it many).
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(sim.stats().requests, 0);
    assert_eq!(api.exchange(&waited.exchange_id).await["status"], "pending");

    let mut cfg = gw.config.clone();
    cfg.delivery.paused = false;
    nmpp_tests::write_config(&cfg, gw.config_path());
    let (code, doc) = api.reload_config().await;
    assert_eq!(code, 200, "{doc}");
    let applied = &doc["data"]["attributes"];
    assert_eq!(applied["deliveryReloaded"], true, "{doc}");
    assert!(
        !applied["restartNeeded"]
            .as_array()
            .is_some_and(|a| a.iter().any(|s| s == "delivery")),
        "{doc}"
    );
    api.wait_for_status(&waited.exchange_id, "delivered", secs(30))
        .await;
    assert_eq!(sim.stats().created, 1);

    cfg.delivery.paused = true;
    nmpp_tests::write_config(&cfg, gw.config_path());
    let (code, doc) = api.reload_config().await;
    assert_eq!(code, 200, "{doc}");
    assert_eq!(doc["data"]["attributes"]["deliveryReloaded"], true, "{doc}");
    let later = api.submit_ok(&sdm::online_crime_report()).await;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(api.exchange(&later.exchange_id).await["status"], "pending");
    assert_eq!(sim.stats().created, 1);
    assert_eq!(
        api.exchange(&waited.exchange_id).await["status"],
        "delivered"
    );

    // A reload that leaves `delivery` as it is does not restart the dispatcher.
    let (code, doc) = api.reload_config().await;
    assert_eq!(code, 200, "{doc}");
    assert_eq!(
        doc["data"]["attributes"]["deliveryReloaded"], false,
        "{doc}"
    );
}
