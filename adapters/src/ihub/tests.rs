//! The iHub client against the receiver simulator: OAuth2, JSON:API, optional mutual TLS with
//! certificates generated per test (rcgen), faults.

use std::sync::Arc;

use fixtures::ihub::{IhubSim, IhubSimOptions};
use fixtures::tls::TestPki;
use serde_json::json;

use super::{IhubClient, IhubConfig};
use crate::athena::Secret;
use crate::national::NationalPlatform;
use crate::{DeliveryContext, ErrorClass, NationalPlatformConfig};

fn mappings() -> Arc<mappings::Mappings> {
    Arc::new(mappings::Mappings::builtin().expect("builtin specs"))
}

fn ctx(key: &str) -> DeliveryContext {
    DeliveryContext {
        idempotency_key: key.into(),
        correlation_id: format!("c-{key}"),
    }
}

fn event(id: &str) -> serde_json::Value {
    json!({
        "modelVersion": "1.0.0", "eventId": id, "type": "case.statusChanged",
        "occurredAt": "2026-01-06T08:30:00Z", "forceIdentifier": 42,
        "subject": { "crimeReference": "42/00101/26" },
        "data": { "status": "CSTS_0002", "previous": "CSTS_0001" }
    })
}

fn config(sim: &IhubSim) -> IhubConfig {
    IhubConfig::new(sim.base_url(), sim.token_url(), "force-42", "ihub-secret")
}

#[tokio::test]
async fn pushes_events_and_notifications_once() {
    let sim = IhubSim::start(IhubSimOptions::default())
        .await
        .expect("sim");
    let ihub = IhubClient::new(config(&sim), mappings()).expect("config");
    let payload = ihub
        .prepare_event(&event("6e1c2b3a-4d5e-4f60-8a9b-0c1d2e3f4a5b"))
        .expect("maps");
    let receipt = ihub
        .push_event(&payload, &ctx("ev-1"))
        .await
        .expect("accepted");
    assert_eq!((receipt.status, receipt.duplicate), (202, false));
    let again = ihub
        .push_event(&payload, &ctx("ev-1"))
        .await
        .expect("repeat");
    assert!(again.duplicate);
    assert_eq!(sim.events().len(), 1);
    assert_eq!(
        sim.events()[0].document["data"]["attributes"]["eventType"],
        "CASE_STATUS_CHANGED"
    );
    assert!(!sim.events()[0].client_certificate);
    let notification = json!({
        "modelVersion": "1.0.0", "notificationId": "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d",
        "channel": "email", "template": "case-update", "recipient": { "partyId": "P-1002" }
    });
    let payload = ihub.prepare_notification(&notification).expect("maps");
    ihub.push_notification(&payload, &ctx("n-1"))
        .await
        .expect("accepted");
    assert_eq!(
        sim.notifications()[0].document["data"]["attributes"]["channel"],
        "EMAIL"
    );
    assert_eq!(sim.tokens_issued(), 1);
    sim.expire_tokens();
    ihub.push_event(
        &ihub.prepare_event(&event("e2")).expect("maps"),
        &ctx("ev-2"),
    )
    .await
    .expect("renewed");
    assert_eq!(sim.tokens_issued(), 2);
}

#[tokio::test]
async fn mutual_tls_requires_the_client_certificate() {
    let pki = TestPki::generate("NMPP test CA").expect("pki");
    let sim = IhubSim::start(IhubSimOptions {
        tls: Some(pki.server_config(true).expect("tls config")),
        ..IhubSimOptions::default()
    })
    .await
    .expect("sim");
    assert!(sim.base_url().starts_with("https://"));
    let client_cert = pki.client("force-42").expect("client cert");
    let mut cfg = config(&sim);
    cfg.ca_pem = Some(pki.ca_pem.clone());
    cfg.client_certificate = Some(Secret::new(client_cert.identity_pem()));
    let ihub = IhubClient::new(cfg.clone(), mappings()).expect("config");
    assert!(!format!("{cfg:?}").contains("PRIVATE KEY"));
    ihub.push_event(&ihub.prepare_event(&event("e1")).expect("maps"), &ctx("e1"))
        .await
        .expect("accepted over mTLS");
    assert!(sim.events()[0].client_certificate);
    // Without a client certificate the handshake fails: nothing is delivered.
    let mut no_cert = cfg.clone();
    no_cert.client_certificate = None;
    let ihub = IhubClient::new(no_cert, mappings()).expect("config");
    let e = ihub
        .push_event(&ihub.prepare_event(&event("e2")).expect("maps"), &ctx("e2"))
        .await
        .expect_err("refused");
    assert!(
        matches!(e.class, ErrorClass::Connect | ErrorClass::Protocol),
        "{e}"
    );
    // A certificate from another CA is refused too.
    let other = TestPki::generate("another CA")
        .expect("pki")
        .client("force-42")
        .expect("cert");
    let mut wrong = cfg.clone();
    wrong.client_certificate = Some(Secret::new(other.identity_pem()));
    let ihub = IhubClient::new(wrong, mappings()).expect("config");
    assert!(
        ihub.push_event(&ihub.prepare_event(&event("e3")).expect("maps"), &ctx("e3"))
            .await
            .is_err()
    );
    // A server we do not trust is refused.
    let mut untrusted = cfg;
    untrusted.ca_pem = None;
    let ihub = IhubClient::new(untrusted, mappings()).expect("config");
    assert!(
        ihub.push_event(&ihub.prepare_event(&event("e4")).expect("maps"), &ctx("e4"))
            .await
            .is_err()
    );
    assert_eq!(sim.events().len(), 1);
}

#[tokio::test]
async fn faults_and_rejections_are_classified() {
    let sim = IhubSim::start(IhubSimOptions::default())
        .await
        .expect("sim");
    let ihub = IhubClient::new(config(&sim), mappings()).expect("config");
    let payload = ihub.prepare_event(&event("e1")).expect("maps");
    sim.faults().update(|f| f.fail_next = 1);
    assert_eq!(
        ihub.push_event(&payload, &ctx("e1"))
            .await
            .expect_err("503")
            .class,
        ErrorClass::Upstream5xx
    );
    sim.faults().update(|f| f.malformed_next = 1);
    assert_eq!(
        ihub.push_event(&payload, &ctx("e1"))
            .await
            .expect_err("bad")
            .class,
        ErrorClass::Protocol
    );
    let mut broken = payload.clone();
    broken.body = broken.body.replace("CASE_STATUS_CHANGED", "CASE_EXPLODED");
    let e = ihub.push_event(&broken, &ctx("e1")).await.expect_err("422");
    assert_eq!((e.class, e.status), (ErrorClass::Rejected, Some(422)));
    assert!(
        e.message.contains("INVALID_CODE") && e.message.contains("/data/attributes/eventType"),
        "{e}"
    );
    let e = ihub
        .prepare_event(&json!({ "eventId": "x", "type": "case.exploded" }))
        .expect_err("unknown type");
    assert_eq!(e.class, ErrorClass::Mapping);
    assert!(e.message.contains("ihub-event-type"), "{e}");
    sim.refuse().await;
    assert_eq!(
        ihub.push_event(&payload, &ctx("e1"))
            .await
            .expect_err("down")
            .class,
        ErrorClass::Connect
    );
    let cfg: NationalPlatformConfig = serde_json::from_value(json!({
        "type": "ihub", "base_url": "https://ihub.example", "token_url": "https://ihub.example/oauth2/token",
        "client_id": "force-42", "client_secret": "hunter2", "client_certificate": "-----BEGIN PRIVATE KEY-----"
    }))
    .expect("config");
    assert!(!format!("{cfg:?}").contains("hunter2") && !format!("{cfg:?}").contains("PRIVATE"));
    let e = cfg.build(mappings()).await.err().expect("bad PEM");
    assert!(e.message.starts_with("ihub.client_certificate"), "{e}");
}
