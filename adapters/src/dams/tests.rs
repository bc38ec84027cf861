//! The DAMS client against the simulator: OAuth2 tokens cached and renewed, multipart upload
//! with checksum, faults.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fixtures::dams::{DamsSim, DamsSimOptions};
use serde_json::json;
use sha2::Digest as _;

use super::{DamsClient, DamsConfig};
use crate::evidence::{EvidenceFile, EvidenceStore};
use crate::{DeliveryContext, ErrorClass, EvidenceStoreConfig};

fn mappings() -> Arc<mappings::Mappings> {
    Arc::new(mappings::Mappings::builtin().expect("builtin specs"))
}

async fn setup(options: DamsSimOptions) -> (DamsSim, DamsClient) {
    let sim = DamsSim::start(options).await.expect("sim");
    let client = DamsClient::new(
        DamsConfig::new(
            sim.base_url(),
            sim.token_url(),
            "nmpp-gateway",
            "dams-secret",
        ),
        mappings(),
    )
    .expect("config");
    (sim, client)
}

fn ctx(key: &str) -> DeliveryContext {
    DeliveryContext {
        idempotency_key: key.into(),
        correlation_id: format!("c-{key}"),
    }
}

fn file(content: &[u8]) -> (serde_json::Value, EvidenceFile) {
    let sha = hex::encode(sha2::Sha256::digest(content));
    (
        json!({
            "modelVersion": "1.0.0", "crimeReference": "42/00101/26", "fileName": "bike.jpg",
            "mimeType": "image/jpeg", "sizeBytes": content.len(), "sha256": sha
        }),
        EvidenceFile {
            file_name: "bike.jpg".into(),
            mime_type: "image/jpeg".into(),
            content: Bytes::copy_from_slice(content),
        },
    )
}

#[tokio::test]
async fn uploads_with_a_cached_token_and_answers_the_evidence_id() {
    let (sim, dams) = setup(DamsSimOptions::default()).await;
    let (item, f) = file(b"\xff\xd8\xff not really a jpeg");
    let metadata = dams.prepare_upload(&item).expect("maps");
    let receipt = dams
        .upload(&metadata, &f, &ctx("e-1"))
        .await
        .expect("stored");
    assert_eq!(
        (
            receipt.evidence_id.as_str(),
            receipt.status,
            receipt.duplicate
        ),
        ("EV-000001", 201, false)
    );
    assert_eq!(receipt.item["evidenceId"], "EV-000001");
    assert_eq!(receipt.item["crimeReference"], "42/00101/26");
    mappings::model::validate_model("nmpp-evidence@1", &receipt.item).expect("schema-valid");
    let again = dams
        .upload(&metadata, &f, &ctx("e-1"))
        .await
        .expect("repeat");
    assert!(again.duplicate);
    let (item2, f2) = file(b"second file");
    dams.upload(
        &dams.prepare_upload(&item2).expect("maps"),
        &f2,
        &ctx("e-2"),
    )
    .await
    .expect("second");
    assert_eq!(sim.evidence().len(), 2);
    assert_eq!(sim.tokens_issued(), 1, "the token is cached");
    assert_eq!(dams.tokens_fetched(), 1);
}

#[tokio::test]
async fn an_expired_token_is_renewed_once_and_bad_credentials_are_unauthorized() {
    let (sim, dams) = setup(DamsSimOptions::default()).await;
    let (item, f) = file(b"abc");
    let metadata = dams.prepare_upload(&item).expect("maps");
    dams.upload(&metadata, &f, &ctx("e-1"))
        .await
        .expect("stored");
    sim.expire_tokens();
    dams.upload(&metadata, &f, &ctx("e-2"))
        .await
        .expect("renewed and stored");
    assert_eq!(sim.tokens_issued(), 2);
    // Tokens with a short life are renewed before they expire.
    let (sim2, dams2) = setup(DamsSimOptions {
        token_ttl: Duration::from_secs(1),
        ..DamsSimOptions::default()
    })
    .await;
    dams2
        .upload(&metadata, &f, &ctx("a"))
        .await
        .expect("stored");
    tokio::time::sleep(Duration::from_millis(600)).await;
    dams2
        .upload(&metadata, &f, &ctx("b"))
        .await
        .expect("stored");
    assert_eq!(
        sim2.tokens_issued(),
        2,
        "renewed at half its life, before the DAMS refused it"
    );
    assert_eq!(sim2.rejected_tokens(), 0);

    let wrong = DamsClient::new(
        DamsConfig::new(sim.base_url(), sim.token_url(), "nmpp-gateway", "wrong"),
        mappings(),
    )
    .expect("config");
    let e = wrong
        .upload(&metadata, &f, &ctx("e-3"))
        .await
        .expect_err("refused");
    assert_eq!(e.class, ErrorClass::Unauthorized, "{e}");
    assert!(!e.message.contains("wrong"), "{e}");
}

#[tokio::test]
async fn checksums_are_checked_on_both_sides() {
    let (sim, dams) = setup(DamsSimOptions::default()).await;
    let (mut item, f) = file(b"content");
    item["sha256"] = json!("0000000000000000000000000000000000000000000000000000000000000000");
    let metadata = dams.prepare_upload(&item).expect("maps");
    let e = dams
        .upload(&metadata, &f, &ctx("e-1"))
        .await
        .expect_err("mismatch");
    assert_eq!(e.class, ErrorClass::Rejected);
    assert!(e.message.contains("SHA-256"), "{e}");
    assert_eq!(sim.tokens_issued(), 0, "nothing was sent");
    // The DAMS checks too: a metadata body edited after preparing is refused with its code.
    let (item, f) = file(b"content");
    let mut metadata = dams.prepare_upload(&item).expect("maps");
    metadata.body = metadata.body.replace("\"sizeBytes\":7", "\"sizeBytes\":8");
    let e = dams
        .upload(&metadata, &f, &ctx("e-2"))
        .await
        .expect_err("size");
    assert_eq!((e.class, e.status), (ErrorClass::Rejected, Some(422)));
    assert!(e.message.contains("SIZE_MISMATCH"), "{e}");
    assert!(sim.evidence().is_empty());
}

#[tokio::test]
async fn faults_are_classified() {
    let (sim, dams) = setup(DamsSimOptions::default()).await;
    let (item, f) = file(b"x");
    let metadata = dams.prepare_upload(&item).expect("maps");
    sim.faults().update(|x| x.fail_next = 1);
    assert_eq!(
        dams.upload(&metadata, &f, &ctx("e"))
            .await
            .expect_err("503")
            .class,
        ErrorClass::Upstream5xx
    );
    sim.faults().update(|x| x.malformed_next = 1);
    assert_eq!(
        dams.upload(&metadata, &f, &ctx("e"))
            .await
            .expect_err("bad")
            .class,
        ErrorClass::Protocol
    );
    sim.faults().update(|x| {
        x.fail_next = 1;
        x.fail_status = 503;
        x.retry_after_s = Some(7);
    });
    let e = dams
        .upload(&metadata, &f, &ctx("e"))
        .await
        .expect_err("busy");
    assert_eq!(
        (e.class, e.retry_after),
        (ErrorClass::Throttled, Some(Duration::from_secs(7)))
    );
    sim.faults().clear();
    sim.refuse().await;
    assert_eq!(
        dams.upload(&metadata, &f, &ctx("e"))
            .await
            .expect_err("down")
            .class,
        ErrorClass::Connect
    );
    sim.accept().await.expect("reopens");
    dams.upload(&metadata, &f, &ctx("e")).await.expect("stored");
    let e = dams
        .prepare_upload(&json!({ "modelVersion": "1.0.0" }))
        .expect_err("no file name");
    assert_eq!(e.class, ErrorClass::Mapping);
}

#[test]
fn configuration_never_prints_the_secret() {
    let cfg: EvidenceStoreConfig = serde_json::from_value(json!({
        "type": "dams", "base_url": "https://dams.example", "token_url": "https://dams.example/oauth2/token",
        "client_id": "nmpp", "client_secret": "hunter2"
    }))
    .expect("config");
    assert!(!format!("{cfg:?}").contains("hunter2"));
    assert!(
        !serde_json::to_string(&cfg)
            .unwrap_or_default()
            .contains("hunter2")
    );
    assert!(
        serde_json::from_value::<EvidenceStoreConfig>(json!({ "type": "dams", "base_url": "x" }))
            .is_err()
    );
    let e = DamsClient::new(
        DamsConfig::new("https://d.example", "not a url", "id", "s"),
        mappings(),
    )
    .expect_err("bad");
    assert!(e.message.starts_with("dams.token_url"), "{e}");
}
