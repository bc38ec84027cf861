//! The operations API, black-box over HTTP against a gateway delivering to the Athena
//! simulator: search over every filter key with paging, bad filters (400 naming the key), role
//! checks (403), park and unpark, journal statistics, legal holds, and replay by filter with a
//! dry run.

use gateway::{
    auth::hash_secret,
    config::{ClientConfig, ForceRetention, Role},
};
use nmpp_tests::{
    API_KEY, FORCE, OPS_KEY, OPS_SECRET, TestGateway, error_document, error_text, eventually, sdm,
    secs,
};
use serde_json::{Value, json};

const IHUB_ONLY: (&str, &str) = ("ihub-only", "ihub-only-secret-0123456789abcdef");
const AUDITOR_ONLY: (&str, &str) = ("auditor-only", "auditor-only-secret-0123456789abc");

async fn gateway_with_role_clients(paused: bool) -> TestGateway {
    TestGateway::start_with(|c| {
        c.delivery.paused = paused;
        c.replay.poll_ms = 50;
        for ((key, secret), role) in [(IHUB_ONLY, Role::Ihub), (AUDITOR_ONLY, Role::Auditor)] {
            c.auth.clients.insert(
                key.into(),
                ClientConfig {
                    secret_sha256: hash_secret(secret),
                    roles: vec![role],
                    forces: vec!["*".into()],
                    description: "ops_api".into(),
                },
            );
        }
    })
    .await
}

/// Submits `n` skeleton documents with the given correlation ids prefix; returns
/// (exchange id, submission id, correlation id).
async fn submit(gw: &TestGateway, n: usize, prefix: &str) -> Vec<(String, String, String)> {
    let api = gw.api();
    let mut out = Vec::new();
    for i in 0..n {
        let doc = sdm::skeleton();
        let sub = sdm::submission_id(&doc);
        let corr = format!("{prefix}-{i}-{sub}");
        let res = api
            .post("/incidents")
            .header("content-type", nmpp_tests::JSONAPI)
            .header("x-correlation-id", &corr)
            .body(serde_json::to_vec(&doc).unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
        let v: Value = res.json().await.unwrap();
        out.push((v["data"]["id"].as_str().unwrap().to_owned(), sub, corr));
    }
    out
}

fn ids(rows: &[Value]) -> Vec<String> {
    let mut v: Vec<String> = rows
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    v.sort();
    v
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[tokio::test]
async fn search_answers_every_filter_key_and_pages_through_results() {
    let gw = gateway_with_role_clients(false).await;
    let api = gw.api();
    // Two rejected by Athena (parked, error class `rejected`), then three delivered.
    gw.sim.reject_next(2, 422);
    let parked = submit(&gw, 2, "parked").await;
    for (id, ..) in &parked {
        api.wait_for_status(id, "parked", secs(30)).await;
    }
    let delivered = submit(&gw, 3, "ok").await;
    for (id, ..) in &delivered {
        api.wait_for_status(id, "delivered", secs(30)).await;
    }
    let parked_ids = sorted(parked.iter().map(|p| p.0.clone()).collect());
    let delivered_ids = sorted(delivered.iter().map(|p| p.0.clone()).collect());
    let all = sorted(parked_ids.iter().chain(&delivered_ids).cloned().collect());

    assert_eq!(ids(&api.exchanges("status=parked").await), parked_ids);
    assert_eq!(ids(&api.exchanges("status=delivered").await), delivered_ids);
    assert_eq!(
        ids(&api.exchanges("error_class=rejected").await),
        parked_ids
    );
    assert_eq!(
        ids(&api.exchanges("error-class=rejected&status=delivered").await),
        Vec::<String>::new()
    );
    assert_eq!(
        ids(&api
            .exchanges(&format!(
                "force={FORCE}&kind=incident.submitted&target=athena"
            ))
            .await),
        all
    );
    assert_eq!(
        ids(&api.exchanges("force=elsewhere").await),
        Vec::<String>::new()
    );
    assert_eq!(
        ids(&api.exchanges("kind=incident.updated").await),
        Vec::<String>::new()
    );
    let (id, sub, corr) = &delivered[1];
    assert_eq!(
        ids(&api.exchanges(&format!("submission_id={sub}")).await),
        vec![id.clone()]
    );
    assert_eq!(
        ids(&api.exchanges(&format!("correlation_id={corr}")).await),
        vec![id.clone()]
    );
    // Case reference: every exchange with the one the detail shows, and no other.
    let detail = api.exchange(id).await;
    if let Some(case_ref) = detail["caseRef"].as_str() {
        let rows = api.exchanges(&format!("case_ref={case_ref}")).await;
        assert!(ids(&rows).contains(id));
        assert!(rows.iter().all(|r| r["caseRef"] == case_ref));
    }
    assert_eq!(
        ids(&api.exchanges("case_ref=NO-SUCH-CASE").await),
        Vec::<String>::new()
    );
    // Time window: everything is before a minute from now, nothing after it.
    let later = (time::OffsetDateTime::now_utc() + time::Duration::minutes(1))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    assert_eq!(ids(&api.exchanges(&format!("to={later}")).await), all);
    assert_eq!(
        ids(&api.exchanges(&format!("from={later}")).await),
        Vec::<String>::new()
    );
    assert_eq!(
        ids(&api
            .exchanges("from=2020-01-01T00:00:00Z&status=parked")
            .await),
        parked_ids
    );

    // Paging: 2 + 2 + 1, newest first, each exchange once, following links.next.
    let mut seen = Vec::new();
    let doc = api
        .get_json("/v1/exchanges?limit=2&status=parked&replays=false")
        .await;
    assert_eq!(doc["data"].as_array().unwrap().len(), 2);
    // A full page links to the next, which keeps the filter (and is empty here).
    let next = doc["links"]["next"]
        .as_str()
        .expect("a full page has links.next");
    assert!(
        next.contains("status=parked") && next.contains("replays=false"),
        "{next}"
    );
    assert_eq!(
        api.get_json(next).await["data"].as_array().unwrap().len(),
        0
    );
    let mut path = "/v1/exchanges?limit=2".to_owned();
    loop {
        let doc = api.get_json(&path).await;
        let page = doc["data"].as_array().unwrap();
        assert!(page.len() <= 2);
        seen.extend(page.iter().map(|r| r["id"].as_str().unwrap().to_owned()));
        match doc["links"]["next"].as_str() {
            Some(next) => path = next.to_owned(),
            None => break,
        }
    }
    assert_eq!(seen.len(), 5, "{seen:?}");
    assert_eq!(sorted(seen), all);
}

#[tokio::test]
async fn bad_filters_are_400_naming_the_key_and_the_rule() {
    let gw = gateway_with_role_clients(true).await;
    let api = gw.api();
    for (query, names) in [
        ("colour=red", "colour"),
        ("status=lost", "status"),
        ("from=yesterday", "from"),
        ("to=2026-13-01T00:00:00Z", "to"),
        ("parent=not-a-uuid", "parent"),
        ("replays=maybe", "replays"),
        ("limit=0", "limit"),
        ("limit=5000", "limit"),
        ("cursor=abc", "cursor"),
        ("status=parked&status=pending", "status"),
    ] {
        let res = api
            .get(&format!("/v1/exchanges?{query}"))
            .send()
            .await
            .unwrap();
        let doc = error_document(res, 400).await;
        assert_eq!(
            doc["errors"][0]["source"]["parameter"], names,
            "{query}: {doc}"
        );
        let text = error_text(&doc);
        assert!(text.contains(names), "{query}: {text}");
    }
    let res = api.get("/v1/exchanges?colour=red").send().await.unwrap();
    let text = error_text(&error_document(res, 400).await);
    assert!(text.contains("unknown filter key"), "{text}");
    assert!(text.contains("correlation_id"), "lists the keys: {text}");

    // The same rules on the command line.
    let out = gw
        .cli(&["exchanges", "list", "--filter", "colour=red"])
        .await;
    assert!(!out.status.success(), "{out:?}");
    assert!(out.stderr.contains("colour"), "{}", out.stderr);
    let out = gw
        .cli(&["exchanges", "search", "--filter", "from=yesterday"])
        .await;
    assert!(!out.status.success(), "{out:?}");
    assert!(
        out.stderr.contains("from") && out.stderr.contains("RFC 3339"),
        "{}",
        out.stderr
    );
}

/// An operations body has a size limit too (only `/incidents` sets its own): an over-long one
/// is refused with 413 before it is buffered whole, and the gateway goes on serving.
#[tokio::test]
async fn an_over_long_operations_body_is_413() {
    let gw = gateway_with_role_clients(true).await;
    let api = gw.api();
    let mut body = br#"{"filter": {"status": "parked"}, "padding": ""#.to_vec();
    body.resize(3 * 1024 * 1024, b'a');
    body.extend_from_slice(br#""}"#);
    let res = api
        .post("/v1/replay-jobs")
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413, "{:?}", res.text().await);
    let res = api.get("/v1/exchanges").send().await.unwrap();
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn every_operations_endpoint_checks_roles() {
    let gw = gateway_with_role_clients(true).await;
    let api = gw.api();
    let id = submit(&gw, 1, "roles").await.remove(0).0;
    let ihub = api.as_client(IHUB_ONLY.0, IHUB_ONLY.1);
    let auditor = api.as_client(AUDITOR_ONLY.0, AUDITOR_ONLY.1);
    let operator = api.as_client(OPS_KEY, OPS_SECRET);
    let job_body = json!({ "filter": { "status": "parked" }, "dryRun": true });
    let hold_body = json!({ "target": { "type": "exchange", "id": id }, "reason": "case 42/7" });

    // ihub may do none of it.
    for path in [
        "/v1/exchanges".to_owned(),
        format!("/v1/exchanges/{id}"),
        "/v1/journal/stats".into(),
        "/v1/replay-jobs".into(),
        "/v1/legal-holds".into(),
    ] {
        let res = ihub.get(&path).send().await.unwrap();
        error_document(res, 403).await;
    }
    for (path, body) in [
        (format!("/v1/exchanges/{id}/park"), None),
        (format!("/v1/exchanges/{id}/unpark"), None),
        (format!("/v1/exchanges/{id}/replay"), None),
        ("/v1/replay-jobs".into(), Some(&job_body)),
        ("/v1/legal-holds".into(), Some(&hold_body)),
    ] {
        let mut rb = ihub.post(&path);
        if let Some(b) = body {
            rb = rb.json(b);
        }
        let doc = error_document(rb.send().await.unwrap(), 403).await;
        assert!(error_text(&doc).contains("operator"), "{path}: {doc}");
    }

    // An auditor reads, and places holds, but does not change exchanges or run replays.
    for path in [
        "/v1/exchanges".to_owned(),
        format!("/v1/exchanges/{id}"),
        "/v1/journal/stats".into(),
        "/v1/replay-jobs".into(),
        "/v1/legal-holds".into(),
    ] {
        auditor.get_json(&path).await;
    }
    for (path, body) in [
        (format!("/v1/exchanges/{id}/park"), None),
        (format!("/v1/exchanges/{id}/unpark"), None),
        (format!("/v1/exchanges/{id}/replay"), None),
        ("/v1/replay-jobs".into(), Some(&job_body)),
        (
            format!("/v1/replay-jobs/{}/cancel", uuid::Uuid::now_v7()),
            None,
        ),
        (
            format!("/v1/replay-jobs/{}/resume", uuid::Uuid::now_v7()),
            None,
        ),
    ] {
        let mut rb = auditor.post(&path);
        if let Some(b) = body {
            rb = rb.json(b);
        }
        let doc = error_document(rb.send().await.unwrap(), 403).await;
        assert!(error_text(&doc).contains("operator"), "{path}: {doc}");
    }
    // The exchange is untouched by the refused calls.
    assert_eq!(api.exchange(&id).await["status"], "pending");

    // An operator may.
    let res = operator
        .post("/v1/replay-jobs")
        .json(&job_body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    let res = operator
        .post(&format!("/v1/exchanges/{id}/park"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());

    // Without credentials: 401, never 403 or data.
    let res = api
        .http
        .get(api.url("/v1/journal/stats"))
        .send()
        .await
        .unwrap();
    error_document(res, 401).await;
    let _ = API_KEY;
}

#[tokio::test]
async fn park_and_unpark_change_status_and_refuse_what_they_must() {
    let gw = gateway_with_role_clients(true).await;
    let api = gw.api();
    let id = submit(&gw, 1, "park").await.remove(0).0;
    assert_eq!(api.exchange(&id).await["status"], "pending");

    let res = api
        .post(&format!("/v1/exchanges/{id}/park"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let doc: Value = res.json().await.unwrap();
    assert_eq!(doc["data"]["attributes"]["status"], "parked", "{doc}");
    assert_eq!(api.exchange(&id).await["status"], "parked");
    let res = api
        .post(&format!("/v1/exchanges/{id}/park"))
        .send()
        .await
        .unwrap();
    let doc = error_document(res, 409).await;
    assert!(error_text(&doc).contains("parked"), "{doc}");

    let stats = api.get_json("/v1/journal/stats").await;
    let s = &stats["data"]["attributes"];
    assert_eq!(s["parked"], 1, "{stats}");
    assert_eq!(s["pending"], 0, "{stats}");
    assert!(s["oldestParked"].is_string(), "{stats}");
    assert_eq!(s["groups"][0]["force"], FORCE, "{stats}");

    let res = api
        .post(&format!("/v1/exchanges/{id}/unpark"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let doc: Value = res.json().await.unwrap();
    assert_eq!(doc["data"]["attributes"]["status"], "pending", "{doc}");
    let res = api
        .post(&format!("/v1/exchanges/{id}/unpark"))
        .send()
        .await
        .unwrap();
    error_document(res, 409).await;

    let res = api
        .post("/v1/exchanges/not-a-uuid/park")
        .send()
        .await
        .unwrap();
    let doc = error_document(res, 400).await;
    assert_eq!(doc["errors"][0]["source"]["parameter"], "id");
    let res = api
        .post(&format!("/v1/exchanges/{}/park", uuid::Uuid::now_v7()))
        .send()
        .await
        .unwrap();
    error_document(res, 404).await;

    // The command line sees the same state.
    let out = gw.cli(&["exchanges", "show", &id, "--json"]).await.json();
    assert_eq!(out["status"], "pending");
}

#[tokio::test]
async fn legal_holds_are_placed_listed_and_released() {
    let gw = gateway_with_role_clients(true).await;
    let api = gw.api();
    let id = submit(&gw, 1, "hold").await.remove(0).0;

    let res = api
        .post("/v1/legal-holds")
        .json(&json!({ "target": { "type": "exchange", "id": id }, "reason": "IOPC ref 2026/123" }))
        .send()
        .await
        .unwrap();
    let location = nmpp_tests::header(&res, "location");
    let status = res.status();
    let doc: Value = res.json().await.unwrap();
    assert_eq!(status, 201, "{doc}");
    let hold = doc["data"]["id"].as_str().unwrap().to_owned();
    assert_eq!(location, format!("/v1/legal-holds/{hold}"));
    assert_eq!(
        doc["data"]["attributes"]["target"]["id"],
        id.as_str(),
        "{doc}"
    );
    assert_eq!(doc["data"]["attributes"]["placedBy"], API_KEY, "{doc}");
    let res = api
        .post("/v1/legal-holds")
        .json(
            &json!({ "target": { "type": "case", "force": FORCE, "caseRef": "CRN-1" },
                       "reason": "civil claim 88" }),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);

    let list = api.get_json("/v1/legal-holds").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 2, "{list}");
    assert_eq!(api.exchange(&id).await["legalHold"], true);
    let stats = api.get_json("/v1/journal/stats").await;
    assert_eq!(stats["data"]["attributes"]["legalHolds"], 2, "{stats}");

    // Bad holds name the field.
    for (body, field) in [
        (
            json!({ "target": { "type": "case", "force": "nowhere", "caseRef": "X" }, "reason": "r" }),
            "target.force",
        ),
        (
            json!({ "target": { "type": "exchange", "id": id } }),
            "reason",
        ),
        (
            json!({ "target": { "type": "exchange", "id": id }, "reason": " " }),
            "reason",
        ),
        (
            json!({ "target": { "type": "exchange", "id": uuid::Uuid::now_v7() }, "reason": "r" }),
            "target.id",
        ),
        (
            json!({ "target": { "type": "planet" }, "reason": "r" }),
            "target",
        ),
        (
            json!({ "target": { "type": "exchange", "id": id }, "reason": "r", "extra": 1 }),
            "extra",
        ),
    ] {
        let res = api
            .post("/v1/legal-holds")
            .json(&body)
            .send()
            .await
            .unwrap();
        let doc = error_document(res, 400).await;
        assert!(error_text(&doc).contains(field), "{body}: {doc}");
    }

    let res = api
        .http
        .delete(api.url(&format!("/v1/legal-holds/{hold}")))
        .header("x-api-key", API_KEY)
        .header("x-api-secret", nmpp_tests::API_SECRET)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let list = api.get_json("/v1/legal-holds").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1, "{list}");
    assert_eq!(api.exchange(&id).await["legalHold"], false);
    let res = api
        .http
        .delete(api.url(&format!("/v1/legal-holds/{hold}")))
        .header("x-api-key", API_KEY)
        .header("x-api-secret", nmpp_tests::API_SECRET)
        .send()
        .await
        .unwrap();
    error_document(res, 404).await;
}

#[tokio::test]
async fn replay_by_filter_dry_runs_then_replays_each_parked_exchange_once() {
    let gw = gateway_with_role_clients(false).await;
    let api = gw.api();
    gw.sim.reject_next(3, 422);
    let parked = submit(&gw, 3, "bulk").await;
    for (id, ..) in &parked {
        api.wait_for_status(id, "parked", secs(30)).await;
    }
    let delivered = submit(&gw, 2, "fine").await;
    for (id, ..) in &delivered {
        api.wait_for_status(id, "delivered", secs(30)).await;
    }
    let created_before = gw.sim.stats().created;

    // Dry run: exact count and a sample, nothing created.
    let res = api
        .post("/v1/replay-jobs")
        .json(&json!({ "filter": { "status": "parked", "force": FORCE }, "dryRun": true }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let plan: Value = res.json().await.unwrap();
    let a = &plan["data"]["attributes"];
    assert_eq!(a["matching"], 3, "{plan}");
    assert_eq!(a["parked"], 3, "{plan}");
    assert_eq!(a["sample"].as_array().unwrap().len(), 3, "{plan}");
    // Through a loaded mapping version: a diff entry per sampled exchange (these skeletons
    // have no postcode, the only thing 2.0.0 changes, so nothing differs).
    let res = api
        .post("/v1/replay-jobs")
        .json(
            &json!({ "filter": { "status": "parked", "force": FORCE }, "dryRun": true,
            "mappingVersion": "nmpp-to-athena@2.0.0" }),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let plan: Value = res.json().await.unwrap();
    let a = &plan["data"]["attributes"];
    assert_eq!(a["mappingVersion"], "nmpp-to-athena@2.0.0", "{plan}");
    let diffs = a["diffs"].as_array().unwrap();
    assert_eq!(diffs.len(), 3, "{plan}");
    for d in diffs {
        assert_eq!(d["from"], "nmpp-to-athena@1.0.0", "{plan}");
        assert_eq!(d["changed"], false, "{plan}");
        assert_eq!(d["diff"], "", "{plan}");
    }
    let all = api.get_json("/v1/replay-jobs").await;
    assert_eq!(
        all["data"].as_array().unwrap().len(),
        0,
        "a dry run creates no job: {all}"
    );

    // Bad requests name the field.
    for (body, field) in [
        (json!({ "filter": { "colour": "red" } }), "filter.colour"),
        (json!({ "filter": { "status": "lost" } }), "filter.status"),
        (json!({ "filter": {} }), "filter"),
        (
            json!({ "filter": { "status": "parked" }, "ratePerSec": 0 }),
            "ratePerSec",
        ),
        (
            json!({ "filter": { "status": "parked" }, "target": "storm" }),
            "target",
        ),
        // A mapping version that is not loaded (the error lists those that are).
        (
            json!({ "filter": { "status": "parked" }, "mappingVersion": "athena@2" }),
            "mappingVersion",
        ),
        (
            json!({ "filter": { "status": "parked" }, "mappingVersion": "athena@2" }),
            "nmpp-to-athena@2.0.0",
        ),
        (json!({ "filter": "status=parked" }), "filter"),
    ] {
        let res = api
            .post("/v1/replay-jobs")
            .json(&body)
            .send()
            .await
            .unwrap();
        let doc = error_document(res, 400).await;
        assert!(error_text(&doc).contains(field), "{body}: {doc}");
    }

    // The job: every parked exchange replayed once, as a child carrying its parent's key.
    let res = api
        .post("/v1/replay-jobs")
        .json(&json!({ "filter": { "status": "parked" }, "ratePerSec": 100, "target": "athena" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let location = nmpp_tests::header(&res, "location");
    let job: Value = res.json().await.unwrap();
    assert_eq!(job["data"]["attributes"]["planned"], 3, "{job}");
    let done = eventually("the replay job to complete", secs(30), || async {
        let j = api.get_json(&location).await;
        let a = j["data"]["attributes"].clone();
        if a["state"] == "completed" {
            Ok(a)
        } else {
            Err(a.to_string())
        }
    })
    .await;
    assert_eq!(done["replayed"], 3, "{done}");
    assert_eq!(done["skipped"], 0, "{done}");
    for (parent, sub, _) in &parked {
        let p = api.exchange(parent).await;
        assert_eq!(
            p["status"], "parked",
            "the parent is never overwritten: {p}"
        );
        let children = p["children"].as_array().unwrap();
        assert_eq!(children.len(), 1, "{p}");
        let child = children[0].as_str().unwrap();
        let c = api.wait_for_status(child, "delivered", secs(30)).await;
        assert_eq!(c["parentId"], parent.as_str());
        assert_eq!(c["idempotencyKey"], sub.as_str());
        assert_eq!(c["replayJobId"], job["data"]["id"]);
        assert!(gw.sim.record_by_key(sub).is_some(), "Athena has {sub}");
    }
    assert_eq!(gw.sim.stats().created, created_before + 3);
    assert_eq!(gw.sim.stats().duplicates, 0);
    let children = api.exchanges("replays=true&status=delivered").await;
    assert_eq!(children.len(), 3);

    // A completed job can be neither cancelled nor resumed; an unknown one is 404.
    let res = api
        .post(&format!("{location}/cancel"))
        .send()
        .await
        .unwrap();
    error_document(res, 409).await;
    let res = api
        .post(&format!("{location}/resume"))
        .send()
        .await
        .unwrap();
    error_document(res, 409).await;
    let res = api
        .get(&format!("/v1/replay-jobs/{}", uuid::Uuid::now_v7()))
        .send()
        .await
        .unwrap();
    let doc = error_document(res, 404).await;
    assert!(error_text(&doc).contains("replay job"), "{doc}");
    let list = api.get_json("/v1/replay-jobs").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1, "{list}");
}

#[tokio::test]
async fn retention_apply_deletes_old_payloads_keeps_held_ones_and_audits_it() {
    let gw = TestGateway::start_with(|c| {
        c.delivery.paused = true;
        c.retention.interval_s = 0;
        c.retention.forces.insert(
            FORCE.into(),
            ForceRetention {
                payloads: Some("1s".into()),
                ..Default::default()
            },
        );
    })
    .await;
    let api = gw.api();
    let subs = submit(&gw, 2, "retention").await;
    let (old, held) = (&subs[0].0, &subs[1].0);
    let res = api
        .post("/v1/legal-holds")
        .json(&json!({ "target": { "type": "exchange", "id": held }, "reason": "matter 7" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);

    // Pending exchanges are never deleted (they are still to be delivered): park both.
    for (id, ..) in &subs {
        let res = api
            .post(&format!("/v1/exchanges/{id}/park"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }
    let out = gw.cli(&["retention", "apply", "--dry-run"]).await;
    assert!(out.status.success(), "{out:?}");
    assert!(
        out.stdout
            .contains(&format!("force {FORCE} kind *: payloads 1s")),
        "{}",
        out.stdout
    );
    // Wait until both payloads are older than their one-second period.
    let created = time::OffsetDateTime::parse(
        api.exchange(held).await["createdAt"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    eventually("the payloads to pass their period", secs(10), || async {
        if time::OffsetDateTime::now_utc() - created > time::Duration::milliseconds(1500) {
            Ok(())
        } else {
            Err("younger than 1.5 s".into())
        }
    })
    .await;
    let out = gw.cli(&["retention", "apply"]).await;
    assert!(out.status.success(), "{out:?}");
    assert!(
        out.stdout.contains("payloads deleted from 1 exchange(s)"),
        "only the unheld one: {}",
        out.stdout
    );
    let o = api.exchange(old).await;
    assert!(o["payloadsDeletedAt"].is_string(), "{o}");
    assert_eq!(o["payloadBytes"], 0, "{o}");
    let h = api.exchange(held).await;
    assert!(h["payloadsDeletedAt"].is_null(), "held: {h}");
    assert!(h["payloadBytes"].as_u64().unwrap() > 0, "{h}");

    // The deletion is in the audit trail, with who did it and under which policy.
    let j = replay::open(
        &format!("sqlite://{}", gw.journal_path().display()),
        replay::OpenOptions::default(),
    )
    .await
    .unwrap();
    let records = j.audit_records(1, 100_000).await.unwrap();
    let del = records
        .iter()
        .find(|r| r.event.action == "exchange.delete")
        .expect("an audit record of the deletion");
    assert!(del.event.actor.starts_with("cli:"), "{del:?}");
    let detail = del.event.detail.as_ref().unwrap();
    assert_eq!(detail["exchanges"], 1, "{detail}");
    assert_eq!(detail["policy"]["payloadsSecs"], 1, "{detail}");
}

#[tokio::test]
async fn cli_bulk_replay_follows_the_job_until_the_server_completes_it() {
    let gw = gateway_with_role_clients(true).await;
    let api = gw.api();
    let subs = submit(&gw, 2, "cli-bulk").await;
    for (id, ..) in &subs {
        let res = api
            .post(&format!("/v1/exchanges/{id}/park"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }
    let out = gw
        .cli(&["replay", "--filter", "status=parked", "--rate", "10/s"])
        .await;
    assert!(out.status.success(), "{out:?}");
    assert!(
        out.stdout
            .contains("completed: 2 replayed, 0 skipped of 2 planned"),
        "{}",
        out.stdout
    );
    let jobs = gw.cli(&["replay", "jobs", "--json"]).await.json();
    assert_eq!(jobs[0]["state"], "completed", "{jobs}");
    assert_eq!(jobs[0]["options"]["ratePerSec"], 10, "{jobs}");
    for (id, sub, _) in &subs {
        let p = api.exchange(id).await;
        let child = api.exchange(p["children"][0].as_str().unwrap()).await;
        assert_eq!(child["idempotencyKey"], sub.as_str());
    }
    // Misuse is an error naming what is wrong.
    let out = gw
        .cli(&["replay", "--filter", "colour=red", "--dry-run"])
        .await;
    assert!(
        !out.status.success() && out.stderr.contains("colour"),
        "{out:?}"
    );
    let out = gw
        .cli(&["replay", "--filter", "status=parked", "--rate", "0/s"])
        .await;
    assert!(
        !out.status.success() && out.stderr.contains("rate"),
        "{out:?}"
    );
    let out = gw.cli(&["replay", "--cancel", "not-a-job"]).await;
    assert!(
        !out.status.success() && out.stderr.contains("not a replay job id"),
        "{out:?}"
    );
}
