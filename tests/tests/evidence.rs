//! Evidence to the force's DAMS (issue 4): the files attached to an iHub submission are uploaded
//! to the force's evidence store once Athena has created the crime record — each as an exchange
//! of its own (`evidence.submitted`), filed under the crime reference Athena assigned, with its
//! checksum, idempotent by submission and attachment. A DAMS outage never holds up the crime
//! record, and every file arrives once the DAMS is back.

use adapters::{EvidenceStoreConfig, dams::DamsConfig};
use base64::Engine as _;
use fixtures::dams::{DamsSim, DamsSimOptions};
use gateway::config::TargetOverride;
use nmpp_tests::{FORCE, TestGateway, eventually, sdm, secs};
use serde_json::{Value, json};
use sha2::Digest as _;

/// Adds `files` (name, MIME type, bytes) to `doc` as attachments of its submission.
fn attach(doc: &mut Value, files: &[(&str, &str, &[u8])]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut links = Vec::new();
    for (i, (name, mime, bytes)) in files.iter().enumerate() {
        let id = format!("9a9a000{i}-0000-4000-8000-00000000a00{i}");
        let content = base64::engine::general_purpose::STANDARD.encode(bytes);
        doc["included"]
            .as_array_mut()
            .expect("included")
            .push(json!({
                "id": id, "type": "attachment",
                "attributes": {
                    "attachmentName": name, "attachmentMimeType": mime,
                    "attachmentContent": content,
                }
            }));
        links.push(json!({ "id": id, "type": "attachment" }));
        out.push((id, hex::encode(sha2::Sha256::digest(bytes))));
    }
    sdm::submission_mut(doc)["relationships"]["attachments"] = json!({ "data": links });
    out
}

/// The DAMS entry of `GET /health/ready` (answered 200 or 503).
async fn dams_probe(api: &nmpp_tests::Api) -> Value {
    let res = api
        .get("/health/ready")
        .send()
        .await
        .expect("GET /health/ready");
    let ready: Value = res.json().await.expect("readiness is JSON");
    ready["adapters"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["system"] == "dams"))
        .cloned()
        .unwrap_or_else(|| panic!("no dams adapter in {ready:#}"))
}

async fn start(dams: &DamsSim) -> TestGateway {
    let cfg = DamsConfig::new(
        dams.base_url(),
        dams.token_url(),
        "nmpp-gateway",
        "dams-secret",
    );
    TestGateway::start_with(|c| {
        c.forces.get_mut(FORCE).expect("force").evidence = Some(EvidenceStoreConfig::Dams(cfg));
        // Enough attempts that a DAMS outage of seconds parks nothing.
        c.delivery.targets.insert(
            "dams".into(),
            TargetOverride {
                max_attempts: Some(1000),
                ..TargetOverride::default()
            },
        );
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attachments_go_to_the_dams_under_the_crime_reference_once_each() {
    let dams = DamsSim::start(DamsSimOptions::default())
        .await
        .expect("dams");
    let gw = start(&dams).await;
    let api = gw.api();

    let mut doc = sdm::online_crime_report();
    let files = attach(
        &mut doc,
        &[
            (
                "photo-of-damage.jpg",
                "image/jpeg",
                b"\xff\xd8\xff\xe0 not really a jpeg",
            ),
            (
                "receipt.txt",
                "text/plain",
                b"bike bought 2023 for 450 pounds",
            ),
        ],
    );
    let key = sdm::submission_id(&doc);
    let accepted = api.submit_ok(&doc).await;
    api.wait_for_status(&accepted.exchange_id, "delivered", secs(30))
        .await;
    let crime_ref = gw
        .sim
        .record_by_key(&key)
        .expect("the crime record")
        .crime_reference;

    let stored = eventually("both files in the DAMS", secs(30), || {
        let e = dams.evidence();
        async move {
            if e.len() >= 2 {
                Ok(e)
            } else {
                Err(format!("{} of 2", e.len()))
            }
        }
    })
    .await;
    for (id, sha) in &files {
        let ev = stored
            .iter()
            .find(|e| e.idempotency_key == format!("{key}/attachment/{id}"))
            .unwrap_or_else(|| panic!("attachment {id} not uploaded under its key: {stored:#?}"));
        assert_eq!(&ev.sha256, sha, "content arrived intact");
        let attrs = &ev.resource["data"]["attributes"];
        assert_eq!(attrs["caseReference"], crime_ref.as_str(), "{attrs}");
        assert_eq!(attrs["externalReference"], key.as_str(), "{attrs}");
    }

    // Each file is an exchange of its own, delivered, with the evidence id as its reference.
    let exchanges = eventually("evidence exchanges delivered", secs(30), || {
        let api = api.clone();
        async move {
            let x = api.exchanges("kind=evidence.submitted").await;
            if x.len() == 2 && x.iter().all(|e| e["status"] == "delivered") {
                Ok(x)
            } else {
                Err(format!("{x:#?}"))
            }
        }
    })
    .await;
    for x in &exchanges {
        let id = x["id"].as_str().expect("id");
        let a = &api.exchange(id).await;
        assert_eq!(a["targetSystem"], "dams", "{a}");
        assert_eq!(a["caseRef"], crime_ref.as_str(), "{a}");
        let target_ref = a["targetRef"].as_str().unwrap_or_default();
        assert!(
            stored.iter().any(|e| e.id == target_ref),
            "target reference {target_ref:?} is a DAMS evidence id: {a}"
        );
    }

    // Readiness probes the DAMS like every other adapter.
    let probe = dams_probe(&api).await;
    assert_eq!(probe["status"], "up", "{probe}");
    assert_eq!(probe["force"], FORCE, "{probe}");

    // iHub sends the same submission again: nothing new is uploaded.
    let again = api.submit(&doc).await.expect("resubmit");
    assert!(again.status().is_success(), "{again:?}");
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(dams.evidence().len(), 2);
    assert_eq!(api.exchanges("kind=evidence.submitted").await.len(), 2);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dams_outage_never_holds_up_the_crime_record() {
    let dams = DamsSim::start(DamsSimOptions::default())
        .await
        .expect("dams");
    let gw = start(&dams).await;
    let api = gw.api();
    dams.refuse().await;

    let mut doc = sdm::online_crime_report();
    let files = attach(
        &mut doc,
        &[("statement.pdf", "application/pdf", b"%PDF-1.4 a statement")],
    );
    let accepted = api.submit_ok(&doc).await;
    // The crime record is created while the DAMS is down ...
    api.wait_for_status(&accepted.exchange_id, "delivered", secs(30))
        .await;
    // ... and the evidence waits, failing and retrying, not parked.
    let waiting = eventually("the evidence exchange failing", secs(30), || {
        let api = api.clone();
        async move {
            let x = api.exchanges("kind=evidence.submitted").await;
            match x.first() {
                Some(e) if e["attemptCount"].as_u64().unwrap_or(0) >= 1 => Ok(e.clone()),
                _ => Err(format!("{x:#?}")),
            }
        }
    })
    .await;
    assert_eq!(waiting["status"], "pending", "{waiting}");
    assert!(dams.evidence().is_empty());
    let probe = dams_probe(&api).await;
    assert_eq!(probe["status"], "down", "{probe}");

    dams.accept().await.expect("dams back");
    let id = waiting["id"].as_str().expect("id").to_owned();
    api.wait_for_status(&id, "delivered", secs(30)).await;
    let stored = dams.evidence();
    assert_eq!(stored.len(), 1, "{stored:#?}");
    assert_eq!(stored[0].sha256, files[0].1);
    gw.stop().await;
}
