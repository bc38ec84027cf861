//! The audit and log-management API: role checks, the export through the API verifying offline
//! with the binary, queries over the audit and integration logs (filters, paging), and the
//! audit of those queries (criteria hashed, never stored in clear).

use gateway::auth::hash_secret;
use gateway::config::{ClientConfig, Role};
use nmpp_tests::{API_KEY, Api, TestGateway, error_document, sdm, secs};
use serde_json::Value;

const AUDITOR: (&str, &str) = ("auditor-only", "auditor-secret-0123456789abcdef");
const OPERATOR: (&str, &str) = ("operator-only", "operator-secret-0123456789abcd");
const IHUB: (&str, &str) = ("ihub-only", "ihub-secret-0123456789abcdefgh");

async fn start() -> TestGateway {
    TestGateway::start_with(|c| {
        for ((key, secret), role) in [
            (AUDITOR, Role::Auditor),
            (OPERATOR, Role::Operator),
            (IHUB, Role::Ihub),
        ] {
            c.auth.clients.insert(
                key.into(),
                ClientConfig {
                    secret_sha256: hash_secret(secret),
                    roles: vec![role],
                    forces: vec!["*".into()],
                    description: String::new(),
                },
            );
        }
    })
    .await
}

fn client(gw: &TestGateway, (key, secret): (&str, &str)) -> Api {
    gw.api().as_client(key, secret)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_is_for_auditors_and_the_bundle_verifies_offline() {
    let gw = start().await;
    let api = gw.api();
    let a = api.submit_ok(&sdm::online_crime_report()).await;
    api.wait_for_status(&a.exchange_id, "delivered", secs(15))
        .await;

    // Unauthenticated, wrong roles, bad input.
    let anon = reqwest::get(format!("{}/v1/audit/export", gw.base_url))
        .await
        .unwrap();
    assert_eq!(anon.status(), 401);
    for who in [OPERATOR, IHUB] {
        let res = client(&gw, who)
            .get("/v1/audit/export")
            .send()
            .await
            .unwrap();
        let doc = error_document(res, 403).await;
        assert!(doc.to_string().contains("auditor"), "{doc}");
    }
    let auditor = client(&gw, AUDITOR);
    let res = auditor
        .get("/v1/audit/export?format=xlsx")
        .send()
        .await
        .unwrap();
    let doc = error_document(res, 400).await;
    assert!(
        doc.to_string().contains("format: expected csv or jsonl"),
        "{doc}"
    );
    let res = auditor
        .get("/v1/audit/export?from=yesterday")
        .send()
        .await
        .unwrap();
    let doc = error_document(res, 400).await;
    assert!(
        doc.to_string().contains("from: not an RFC 3339 date-time"),
        "{doc}"
    );

    // The bundle, written out file by file, verifies with the binary.
    let res = auditor.get("/v1/audit/export").send().await.unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    let attrs = &body["data"]["attributes"];
    assert_eq!(attrs["manifest"]["full"], true);
    let tree_size = attrs["manifest"]["tree_size"].as_u64().unwrap();
    assert!(tree_size >= 4, "tree size {tree_size}");
    let dir = gw.dir.path().join("from-api");
    std::fs::create_dir_all(&dir).unwrap();
    let files = attrs["files"].as_object().unwrap();
    for name in [
        "records.csv",
        "checkpoints.txt",
        "public-key.txt",
        "proofs.jsonl",
        "manifest.json",
        "manifest.sig",
    ] {
        let text = files[name].as_str().unwrap();
        std::fs::write(dir.join(name), text).unwrap();
    }
    let ok = gw.cli(&["audit", "verify", dir.to_str().unwrap()]).await;
    assert!(ok.status.success(), "{ok:?}");
    // The key in the bundle is the one the checkpoints endpoint publishes.
    let cps = auditor.get_json("/v1/audit/checkpoints").await;
    let key = cps["meta"]["publicKey"].as_str().unwrap();
    assert_eq!(
        files["public-key.txt"].as_str().unwrap().lines().next(),
        Some(key)
    );
    let sizes: Vec<u64> = cps["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["attributes"]["size"].as_u64().unwrap())
        .collect();
    assert!(sizes.contains(&tree_size), "{sizes:?}");

    // The export was audited with its id; the refused attempts as denied.
    let log = auditor
        .get_json("/v1/logs/audit?operation=audit.export")
        .await;
    let rows = log["data"].as_array().unwrap();
    let ok_row = rows
        .iter()
        .find(|r| r["attributes"]["EventResult"] == "Success")
        .expect("a successful export record");
    assert_eq!(ok_row["attributes"]["ActorUsername"], AUDITOR.0);
    assert_eq!(ok_row["attributes"]["ObjectId"], body["data"]["id"]);
    // Refused before the handler knew what it would do (and the unauthenticated call): recorded
    // as denied, with the route.
    let denied = auditor.get_json("/v1/logs/audit?outcome=denied").await;
    let refused: Vec<&str> = denied["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["attributes"]["AdditionalFields"]["route"] == "/v1/audit/export")
        .map(|r| r["attributes"]["ActorUsername"].as_str().unwrap())
        .collect();
    assert_eq!(refused, [IHUB.0, OPERATOR.0, "anonymous"], "{denied}");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_are_queried_by_correlation_actor_outcome_and_paged() {
    let gw = start().await;
    let api = gw.api();
    let corr = "corr-audit-api-7";
    let res = api.submit(&sdm::online_crime_report()).await.unwrap();
    assert_eq!(res.status(), 201);
    for _ in 0..3 {
        let res = api
            .get("/v1/exchanges")
            .header("x-correlation-id", corr)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }
    // An authentication failure.
    let res = api
        .as_client(API_KEY, "wrong-secret-0123456789abcdefgh")
        .get("/v1/exchanges")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);

    let auditor = client(&gw, AUDITOR);
    let by_corr = auditor
        .get_json(&format!("/v1/logs/audit?correlationId={corr}"))
        .await;
    let rows = by_corr["data"].as_array().unwrap();
    assert_eq!(rows.len(), 3, "{by_corr}");
    for r in rows {
        assert_eq!(r["attributes"]["CorrelationId"], corr);
        assert_eq!(r["attributes"]["Operation"], "exchange.search");
        assert_eq!(r["attributes"]["LeafHash"].as_str().unwrap().len(), 64);
    }
    let seqs: Vec<u64> = rows
        .iter()
        .map(|r| r["id"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[0] > w[1]),
        "newest first: {seqs:?}"
    );

    let denied = auditor.get_json("/v1/logs/audit?outcome=denied").await;
    let rows = denied["data"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{denied}");
    assert_eq!(rows[0]["attributes"]["Operation"], "auth.failure");
    assert!(
        !rows[0].to_string().contains("wrong-secret"),
        "a presented secret never reaches the log"
    );

    // Paging: pages of 2 cover the actor's records exactly once.
    let mut seen = Vec::new();
    let mut next = Some(format!("/v1/logs/audit?actor={API_KEY}&limit=2"));
    while let Some(path) = next {
        let page = auditor.get_json(&path).await;
        for r in page["data"].as_array().unwrap() {
            assert_eq!(r["attributes"]["ActorUsername"], API_KEY);
            seen.push(r["id"].as_str().unwrap().to_owned());
        }
        next = page["links"]["next"].as_str().map(str::to_owned);
    }
    let unique: std::collections::BTreeSet<_> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len());
    // One submission and three searches; the failed sign-in is recorded as `anonymous`.
    assert_eq!(seen.len(), 4, "{seen:?}");

    // The integration log: the exchange by force and outcome, for operators too.
    let ops = client(&gw, OPERATOR);
    let il = ops
        .get_json(&format!(
            "/v1/logs/integration?force={}&from=2000-01-01T00:00:00Z",
            nmpp_tests::FORCE
        ))
        .await;
    assert_eq!(il["data"].as_array().unwrap().len(), 1, "{il}");
    let res = ops
        .get("/v1/logs/integration?outcome=lost")
        .send()
        .await
        .unwrap();
    let doc = error_document(res, 400).await;
    assert!(doc.to_string().contains("outcome: expected"), "{doc}");
    // The audit log is for auditors only.
    let res = ops.get("/v1/logs/audit").send().await.unwrap();
    error_document(res, 403).await;

    // Searches were audited with a hash of their criteria, not the criteria.
    let searches = auditor
        .get_json("/v1/logs/audit?operation=audit.search&limit=1000")
        .await;
    let rows = searches["data"].as_array().unwrap();
    assert!(rows.len() >= 3, "{searches}");
    for r in rows {
        let extra = &r["attributes"]["AdditionalFields"];
        assert_eq!(extra["criteriaSha256"].as_str().unwrap().len(), 64, "{r}");
        assert!(!r.to_string().contains(corr), "criteria are hashed: {r}");
    }
    gw.stop().await;
}
