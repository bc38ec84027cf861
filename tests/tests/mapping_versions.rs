//! Replay through another mapping version (issue 3, item 4), black-box against a gateway
//! delivering to the Athena simulator, on the SQLite and the PostgreSQL journal.
//!
//! Built in are `nmpp-to-athena@1.0.0` (current: what fresh deliveries use) and `@2.0.0`, which
//! sends postcodes upper-cased. Exchanges whose location postcode was typed in lower case are
//! parked (Athena rejects them once); then:
//! - a dry run (bulk, one exchange, and the CLI) shows the unified diff of the payload each sent
//!   against the one 2.0.0 makes, with the changed line, and sends nothing;
//! - an unknown version is a 400 naming `mappingVersion` and the versions available (the CLI
//!   names `--mapping-version`);
//! - replaying one exchange, and a bulk job, through 2.0.0: the simulator receives the 2.0.0
//!   payload (upper-case postcode), each child records 2.0.0 as asked for and as used, and
//!   carries its parent's idempotency key;
//! - a fresh submission is still delivered through 1.0.0.

use nmpp_tests::{TestGateway, error_document, error_text, eventually, pg::TestDb, sdm, secs};
use serde_json::{Value, json};

const V1: &str = "nmpp-to-athena@1.0.0";
const V2: &str = "nmpp-to-athena@2.0.0";
/// The Online Crime Report's incident location, as the public might type it.
const TYPED: &str = "mk40 1aa";
const FIXED: &str = "MK40 1AA";

/// The Online Crime Report with a fresh submission id and its location postcode in lower case.
fn lower_case_postcode_report() -> Value {
    let mut doc = sdm::online_crime_report();
    let mut found = false;
    for r in doc["included"].as_array_mut().unwrap() {
        if r["attributes"]["postcode"] == FIXED {
            r["attributes"]["postcode"] = json!(TYPED);
            found = true;
        }
    }
    assert!(found, "the example has a location with postcode {FIXED}");
    doc
}

/// Submits a report Athena rejects once (422), waits until it is parked; returns its id.
async fn parked_report(gw: &TestGateway) -> String {
    gw.sim.reject_next(1, 422);
    let accepted = gw.api().submit_ok(&lower_case_postcode_report()).await;
    gw.api()
        .wait_for_status(&accepted.exchange_id, "parked", secs(30))
        .await;
    accepted.exchange_id
}

/// The location postcode of the record Athena holds under `key`.
fn athena_postcode(gw: &TestGateway, key: &str) -> Option<String> {
    gw.sim
        .record_by_key(key)
        .and_then(|r| r.location)
        .and_then(|l| l.postcode)
}

fn assert_postcode_diff(d: &Value) {
    assert_eq!(d["from"], V1, "{d:#}");
    assert_eq!(d["to"], V2, "{d:#}");
    assert_eq!(d["changed"], true, "{d:#}");
    let diff = d["diff"].as_str().unwrap();
    assert!(
        diff.contains(&format!(
            "--- {} sent ({V1})",
            d["exchangeId"].as_str().unwrap()
        )),
        "{diff}"
    );
    assert!(
        diff.contains(&format!("-    <Postcode>{TYPED}</Postcode>")),
        "{diff}"
    );
    assert!(
        diff.contains(&format!("+    <Postcode>{FIXED}</Postcode>")),
        "{diff}"
    );
    // Only what changed, with context: the unchanged person's address is not a +/- line.
    let changed: Vec<&str> = diff
        .lines()
        .filter(|l| {
            (l.starts_with('+') || l.starts_with('-'))
                && !l.starts_with("+++")
                && !l.starts_with("---")
        })
        .collect();
    assert_eq!(changed.len(), 2, "{diff}");
}

async fn replay_through_another_mapping_version(journal_url: Option<String>) {
    let gw = TestGateway::start_with(|c| {
        if let Some(url) = journal_url {
            c.journal.url = url;
        }
        c.replay.poll_ms = 50;
    })
    .await;
    let api = gw.api();
    let a = parked_report(&gw).await;
    let b = parked_report(&gw).await;
    let parent_a = api.exchange(&a).await;
    assert_eq!(parent_a["mappingVersion"], V1, "{parent_a:#}");
    let requests_before = gw.sim.stats().requests;

    // Bulk dry run through 2.0.0: the diff of each sampled exchange, nothing sent or created.
    let res = api
        .post("/v1/replay-jobs")
        .json(&json!({ "filter": { "status": "parked" }, "dryRun": true, "mappingVersion": V2 }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let plan: Value = res.json().await.unwrap();
    let p = &plan["data"]["attributes"];
    assert_eq!(p["matching"], 2, "{plan:#}");
    assert_eq!(p["mappingVersion"], V2, "{plan:#}");
    let diffs = p["diffs"].as_array().unwrap();
    assert_eq!(diffs.len(), 2, "{plan:#}");
    for d in diffs {
        assert_postcode_diff(d);
    }

    // One exchange, dry run: the same diff.
    let res = api
        .post(&format!("/v1/exchanges/{a}/replay"))
        .json(&json!({ "mappingVersion": V2, "dryRun": true }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let one: Value = res.json().await.unwrap();
    assert_eq!(one["data"]["type"], "replay-plan", "{one:#}");
    assert_postcode_diff(&one["data"]["attributes"]);

    // The CLI dry run prints the diff too.
    let out = gw
        .cli(&[
            "replay",
            "--filter",
            "status=parked",
            "--mapping-version",
            V2,
            "--dry-run",
        ])
        .await;
    assert!(out.status.success(), "{out:?}");
    assert!(
        out.stdout.contains(&format!(
            "through {V2}: 2 of the 2 sampled payload(s) would change"
        )),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains(&format!("+    <Postcode>{FIXED}</Postcode>")),
        "{}",
        out.stdout
    );

    // Unknown versions: 400 naming the field and what is available; the CLI names its option.
    for body in [
        json!({ "filter": { "status": "parked" }, "mappingVersion": "nmpp-to-athena@9.0.0" }),
        json!({ "filter": { "status": "parked" }, "mappingVersion": "nmpp-to-athena@9.0.0", "dryRun": true }),
        json!({ "filter": { "status": "parked" }, "mappingVersion": "sdm-to-nmpp@1.0.0" }),
    ] {
        let res = api
            .post("/v1/replay-jobs")
            .json(&body)
            .send()
            .await
            .unwrap();
        let doc = error_document(res, 400).await;
        let text = error_text(&doc);
        assert!(text.contains("mappingVersion"), "{body}: {doc}");
        assert!(text.contains(V2), "lists what is available: {doc}");
    }
    let res = api
        .post(&format!("/v1/exchanges/{a}/replay"))
        .json(&json!({ "mappingVersion": "nmpp-to-athena@9.0.0" }))
        .send()
        .await
        .unwrap();
    let doc = error_document(res, 400).await;
    assert!(error_text(&doc).contains("mappingVersion"), "{doc}");
    let out = gw
        .cli(&["replay", &a, "--mapping-version", "nmpp-to-athena@9.0.0"])
        .await;
    assert!(!out.status.success(), "{out:?}");
    assert!(out.stderr.contains("--mapping-version"), "{out:?}");
    assert!(out.stderr.contains(V2), "{out:?}");

    // Nothing was sent, replayed or created by any of that.
    assert_eq!(gw.sim.stats().requests, requests_before);
    assert_eq!(api.exchanges("replays=true").await.len(), 0);
    let jobs = api.get_json("/v1/replay-jobs").await;
    assert_eq!(jobs["data"].as_array().unwrap().len(), 0, "{jobs:#}");

    // Replay one exchange through 2.0.0: Athena receives the 2.0.0 payload.
    let res = api
        .post(&format!("/v1/exchanges/{a}/replay"))
        .json(&json!({ "mappingVersion": V2 }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    let child_a: Value = res.json().await.unwrap();
    let child_a = child_a["data"]["id"].as_str().unwrap().to_owned();
    let c = api.wait_for_status(&child_a, "delivered", secs(30)).await;
    assert_eq!(c["parentId"], a.as_str(), "{c:#}");
    assert_eq!(c["requestedMappingVersion"], V2, "{c:#}");
    assert_eq!(
        c["mappingVersion"], V2,
        "the attempt records the version used: {c:#}"
    );
    assert_eq!(c["idempotencyKey"], parent_a["idempotencyKey"], "{c:#}");
    let key_a = parent_a["idempotencyKey"].as_str().unwrap();
    assert_eq!(athena_postcode(&gw, key_a).as_deref(), Some(FIXED));
    let parent_after = api.exchange(&a).await;
    assert_eq!(
        parent_after["status"], "parked",
        "the parent is never overwritten"
    );
    assert_eq!(parent_after["mappingVersion"], V1, "{parent_after:#}");

    // A bulk job through 2.0.0: b is replayed (a already has a delivered replay: skipped).
    let res = api
        .post("/v1/replay-jobs")
        .json(&json!({ "filter": { "status": "parked" }, "mappingVersion": V2 }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let location = nmpp_tests::header(&res, "location");
    let job: Value = res.json().await.unwrap();
    assert_eq!(
        job["data"]["attributes"]["options"]["mappingVersion"], V2,
        "{job:#}"
    );
    let done = eventually("the replay job to complete", secs(30), || async {
        let j = api.get_json(&location).await["data"]["attributes"].clone();
        if j["state"] == "completed" {
            Ok(j)
        } else {
            Err(j.to_string())
        }
    })
    .await;
    assert_eq!(done["replayed"], 1, "{done:#}");
    assert_eq!(done["skipped"], 1, "{done:#}");
    let parent_b = api.exchange(&b).await;
    let child_b = parent_b["children"][0].as_str().unwrap().to_owned();
    let c = api.wait_for_status(&child_b, "delivered", secs(30)).await;
    assert_eq!(c["requestedMappingVersion"], V2, "{c:#}");
    assert_eq!(c["mappingVersion"], V2, "{c:#}");
    assert_eq!(c["idempotencyKey"], parent_b["idempotencyKey"], "{c:#}");
    let key_b = parent_b["idempotencyKey"].as_str().unwrap();
    assert_eq!(athena_postcode(&gw, key_b).as_deref(), Some(FIXED));

    // One exchange from the CLI: the dry run prints its diff, then the replay goes through 2.0.0.
    let c = parked_report(&gw).await;
    let out = gw
        .cli(&["replay", &c, "--mapping-version", V2, "--dry-run"])
        .await;
    assert!(out.status.success(), "{out:?}");
    assert!(
        out.stdout.contains(&format!("exchange {c}: {V1} → {V2}")),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains(&format!("-    <Postcode>{TYPED}</Postcode>")),
        "{}",
        out.stdout
    );
    assert_eq!(
        api.exchange(&c).await["children"],
        json!([]),
        "a dry run replays nothing"
    );
    let out = gw.cli(&["replay", &c, "--mapping-version", V2]).await;
    assert!(out.status.success(), "{out:?}");
    assert!(
        out.stdout.contains(&format!("through {V2}")),
        "{}",
        out.stdout
    );
    let parent_c = api.exchange(&c).await;
    let child_c = parent_c["children"][0].as_str().unwrap().to_owned();
    let cc = api.wait_for_status(&child_c, "delivered", secs(30)).await;
    assert_eq!(cc["mappingVersion"], V2, "{cc:#}");
    let key_c = parent_c["idempotencyKey"].as_str().unwrap();
    assert_eq!(athena_postcode(&gw, key_c).as_deref(), Some(FIXED));
    let shown = gw.cli(&["exchanges", "show", &child_c]).await;
    assert!(
        shown.stdout.contains(&format!("mapping      {V2}")),
        "{}",
        shown.stdout
    );
    assert!(
        shown.stdout.contains(&format!("asked for    {V2}")),
        "{}",
        shown.stdout
    );

    // Fresh deliveries still use the current version, 1.0.0.
    let fresh = api.submit_ok(&lower_case_postcode_report()).await;
    let f = api
        .wait_for_status(&fresh.exchange_id, "delivered", secs(30))
        .await;
    assert_eq!(f["mappingVersion"], V1, "{f:#}");
    assert_eq!(f["requestedMappingVersion"], Value::Null, "{f:#}");
    let key = f["idempotencyKey"].as_str().unwrap();
    assert_eq!(athena_postcode(&gw, key).as_deref(), Some(TYPED));
    gw.stop().await;
}

#[tokio::test]
async fn sqlite_replay_through_another_mapping_version() {
    replay_through_another_mapping_version(None).await;
}

#[tokio::test]
async fn postgres_replay_through_another_mapping_version() {
    let db = TestDb::create("mapver").await;
    replay_through_another_mapping_version(Some(db.url.clone())).await;
}

/// `[mappings] current` pins 2.0.0: fresh deliveries use it; a replay can still ask for 1.0.0.
#[tokio::test]
async fn a_pinned_version_is_what_fresh_deliveries_use() {
    let gw = TestGateway::start_with(|c| {
        c.mappings
            .current
            .insert("nmpp-to-athena".into(), "2.0.0".into());
    })
    .await;
    let api = gw.api();
    let fresh = api.submit_ok(&lower_case_postcode_report()).await;
    let f = api
        .wait_for_status(&fresh.exchange_id, "delivered", secs(30))
        .await;
    assert_eq!(f["mappingVersion"], V2, "{f:#}");
    let key = f["idempotencyKey"].as_str().unwrap();
    assert_eq!(athena_postcode(&gw, key).as_deref(), Some(FIXED));

    let a = parked_report(&gw).await;
    assert_eq!(api.exchange(&a).await["mappingVersion"], V2);
    let res = api
        .post(&format!("/v1/exchanges/{a}/replay"))
        .json(&json!({ "mappingVersion": V1 }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    let child: Value = res.json().await.unwrap();
    let child = child["data"]["id"].as_str().unwrap().to_owned();
    let c = api.wait_for_status(&child, "delivered", secs(30)).await;
    assert_eq!(c["mappingVersion"], V1, "{c:#}");
    let key = c["idempotencyKey"].as_str().unwrap();
    assert_eq!(athena_postcode(&gw, key).as_deref(), Some(TYPED));
    gw.stop().await;

    // An unknown pin is a configuration error naming the key and what is loaded.
    let mut cfg = gw_config_with_pin("9.9.9");
    let e = cfg.validate().unwrap_err().to_string();
    assert!(e.contains("mappings.current.nmpp-to-athena"), "{e}");
    assert!(e.contains(V2), "{e}");
    cfg.mappings.current.clear();
    assert!(cfg.validate().is_ok());
}

fn gw_config_with_pin(version: &str) -> gateway::config::Config {
    let dir = tempfile::tempdir().unwrap();
    let mut c = nmpp_tests::test_config(&dir.path().join("journal.db"), "http://127.0.0.1:9");
    c.mappings
        .current
        .insert("nmpp-to-athena".into(), version.into());
    c
}

/// A new `[mappings] current` pin applies on a configuration reload, without a restart: fresh
/// deliveries use the newly pinned version at once; a pin of a version that is not loaded is
/// refused naming the key, and the running pin stays.
#[tokio::test]
async fn a_new_pin_applies_on_reload() {
    let sim = fixtures::athena::AthenaSim::start(Default::default())
        .await
        .expect("athena");
    let mut gw = nmpp_tests::ProcessGateway::new(&sim.base_url());
    gw.start().await;
    let api = gw.api();
    let postcode_of = |exchange: &Value| {
        let key = exchange["idempotencyKey"].as_str().unwrap_or_default();
        sim.record_by_key(key)
            .and_then(|r| r.location)
            .and_then(|l| l.postcode)
    };

    let before = api.submit_ok(&lower_case_postcode_report()).await;
    let b = api
        .wait_for_status(&before.exchange_id, "delivered", secs(30))
        .await;
    assert_eq!(b["mappingVersion"], V1, "{b:#}");
    assert_eq!(postcode_of(&b).as_deref(), Some(TYPED));

    let mut cfg = gw.config.clone();
    cfg.mappings
        .current
        .insert("nmpp-to-athena".into(), "2.0.0".into());
    nmpp_tests::write_config(&cfg, gw.config_path());
    let (code, doc) = api.reload_config().await;
    assert_eq!(code, 200, "{doc}");
    let applied = &doc["data"]["attributes"];
    assert_eq!(applied["mappingsReloaded"], true, "{doc}");
    assert!(
        !applied["restartNeeded"]
            .as_array()
            .is_some_and(|a| a.iter().any(|s| s == "mappings")),
        "{doc}"
    );
    let after = api.submit_ok(&lower_case_postcode_report()).await;
    let a = api
        .wait_for_status(&after.exchange_id, "delivered", secs(30))
        .await;
    assert_eq!(a["mappingVersion"], V2, "{a:#}");
    assert_eq!(postcode_of(&a).as_deref(), Some(FIXED));
    // What was delivered before keeps the version its attempt recorded.
    assert_eq!(
        api.exchange(&before.exchange_id).await["mappingVersion"],
        V1
    );

    // A pin of a version that is not loaded: refused, naming the key; 2.0.0 stays.
    cfg.mappings
        .current
        .insert("nmpp-to-athena".into(), "9.9.9".into());
    nmpp_tests::write_config(&cfg, gw.config_path());
    let (code, doc) = api.reload_config().await;
    assert_eq!(code, 422, "{doc}");
    assert!(
        doc.to_string().contains("mappings.current.nmpp-to-athena"),
        "{doc}"
    );
    let still = api.submit_ok(&lower_case_postcode_report()).await;
    let s = api
        .wait_for_status(&still.exchange_id, "delivered", secs(30))
        .await;
    assert_eq!(s["mappingVersion"], V2, "{s:#}");
    assert_eq!(postcode_of(&s).as_deref(), Some(FIXED));
}
