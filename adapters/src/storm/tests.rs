//! The STORM client against the simulator (`fixtures::storm::StormSim`), faults included.

use std::sync::Arc;
use std::time::Duration;

use fixtures::storm::{StormSim, StormSimOptions};
use serde_json::json;

use super::{StormClient, StormConfig};
use crate::command_control::{CommandControl, IncidentMessage, MessageKind};
use crate::{CommandControlConfig, DeliveryContext, ErrorClass};

fn mappings() -> Arc<mappings::Mappings> {
    Arc::new(mappings::Mappings::builtin().expect("builtin specs"))
}

async fn setup() -> (StormSim, StormClient) {
    let sim = StormSim::start(StormSimOptions::default())
        .await
        .expect("sim");
    let client = StormClient::new(StormConfig::new(sim.base_url()), mappings()).expect("config");
    (sim, client)
}

fn ctx(key: &str) -> DeliveryContext {
    DeliveryContext {
        idempotency_key: key.into(),
        correlation_id: format!("c-{key}"),
    }
}

fn create(id: &str, grade: &str) -> IncidentMessage {
    IncidentMessage {
        kind: MessageKind::Create,
        message_id: id.into(),
        sent: "2026-01-05T09:14:00Z".into(),
        incident: json!({
            "modelVersion": "1.0.0", "incidentNumber": "SFK-000042", "forceIdentifier": 42,
            "type": "THEFT", "summary": "Online report", "status": "open",
            "submissionId": "0b9f6f0e-3c6f-4c55-9a7e-3d3b1d0f0a01",
            "grading": { "raw": grade }
        }),
        log_entry: None,
    }
}

#[tokio::test]
async fn creates_grades_regrades_logs_and_closes() {
    let (sim, storm) = setup().await;
    let payload = storm.prepare_message(&create("m-1", "3")).expect("maps");
    assert!(payload.mapping.starts_with("nmpp-to-storm-message@"));
    let ack = storm
        .send_message(&payload, &ctx("m-1"))
        .await
        .expect("created");
    assert_eq!(
        (ack.incident_number.as_str(), ack.status, ack.duplicate),
        ("SFK-000042", 201, false)
    );
    let again = storm
        .send_message(&payload, &ctx("m-1"))
        .await
        .expect("repeat");
    assert!(again.duplicate);
    assert_eq!(sim.messages_accepted(), 1);

    let incident = storm.read_incident("SFK-000042").await.expect("read");
    assert_eq!(incident["grading"]["raw"], "3");
    assert_eq!(incident["grading"]["normalised"], "GRAD_0003");
    assert_eq!(incident["status"], "open");
    mappings::model::validate_model("nmpp-incident@1", &incident).expect("schema-valid");

    // Update with a new grade.
    let mut update = create("m-2", "1");
    update.kind = MessageKind::Update;
    let ack = storm
        .send_message(&storm.prepare_message(&update).expect("maps"), &ctx("m-2"))
        .await
        .expect("updated");
    assert_eq!(ack.incident_number, "SFK-000042");
    assert_eq!(
        storm.read_incident("SFK-000042").await.expect("read")["grading"]["normalised"],
        "GRAD_0001"
    );

    // A log entry through the trait's helper.
    let ack = storm
        .append_log(
            "SFK-000042",
            &json!({ "text": "Message sent to the victim", "author": "NMPP" }),
            &ctx("log-1"),
        )
        .await
        .expect("logged");
    assert!(ack.log_entry_id.is_some());
    // Close.
    let close = IncidentMessage {
        kind: MessageKind::Close,
        message_id: "m-3".into(),
        sent: "2026-01-06T09:00:00Z".into(),
        incident: json!({ "modelVersion": "1.0.0", "incidentNumber": "SFK-000042", "closureCode": "NFA", "closedAt": "2026-01-06T09:00:00Z" }),
        log_entry: None,
    };
    storm
        .send_message(&storm.prepare_message(&close).expect("maps"), &ctx("m-3"))
        .await
        .expect("closed");
    let incident = storm.read_incident("SFK-000042").await.expect("read");
    assert_eq!(incident["status"], "closed");
    assert_eq!(incident["closureCode"], "NFA");
    assert!(incident["log"].as_array().is_some_and(|l| l.len() >= 2));

    // The change feed shows GRADED and LOG, and an operator regrade.
    sim.regrade("SFK-000042", "2").expect("regraded");
    let page = storm.changes_since(None, 100).await.expect("feed");
    let kinds: Vec<&str> = page.changes.iter().map(|c| c.kind.as_str()).collect();
    assert_eq!(kinds, ["CREATED", "GRADED", "LOG", "CLOSED", "GRADED"]);
    let after = storm
        .changes_since(Some(&page.next), 100)
        .await
        .expect("nothing new");
    assert!(after.changes.is_empty());
}

#[tokio::test]
async fn an_unknown_grade_is_rejected_by_storm_or_a_named_mapping_error_on_read() {
    let (sim, storm) = setup().await;
    let error = storm
        .send_message(
            &storm.prepare_message(&create("m-9", "P9")).expect("maps"),
            &ctx("m-9"),
        )
        .await
        .expect_err("not a grade of this force");
    assert_eq!(
        (error.class, error.status),
        (ErrorClass::Rejected, Some(422))
    );
    assert!(error.message.contains("INVALID_CODE"), "{error}");
    // A grade the control room uses but the force's table does not map.
    let sim2 = StormSim::start(StormSimOptions {
        grades: vec!["1".into(), "6".into()],
        ..StormSimOptions::default()
    })
    .await
    .expect("sim");
    let storm2 = StormClient::new(StormConfig::new(sim2.base_url()), mappings()).expect("config");
    storm2
        .send_message(
            &storm2.prepare_message(&create("m-1", "6")).expect("maps"),
            &ctx("m-1"),
        )
        .await
        .expect("accepted by STORM");
    let error = storm2
        .read_incident("SFK-000042")
        .await
        .expect_err("unmapped grade");
    assert_eq!(error.class, ErrorClass::Mapping, "{error}");
    assert!(error.message.contains("storm-grading"), "{error}");
    assert!(error.message.contains("\"6\""), "{error}");
    // An unknown message type never leaves the gateway.
    let _ = sim;
}

#[tokio::test]
async fn faults_are_classified() {
    let (sim, storm) = setup().await;
    let payload = storm.prepare_message(&create("m-1", "2")).expect("maps");
    sim.faults().update(|f| {
        f.fail_next = 1;
        f.fail_status = 503;
    });
    let e = storm
        .send_message(&payload, &ctx("m-1"))
        .await
        .expect_err("503");
    assert_eq!((e.class, e.status), (ErrorClass::Upstream5xx, Some(503)));
    sim.faults().update(|f| {
        f.fail_next = 1;
        f.fail_status = 429;
    });
    let e = storm
        .send_message(&payload, &ctx("m-1"))
        .await
        .expect_err("429");
    assert_eq!(
        (e.class, e.retry_after),
        (ErrorClass::Throttled, Some(Duration::from_secs(1)))
    );
    sim.faults().update(|f| f.malformed_next = 1);
    let e = storm
        .send_message(&payload, &ctx("m-1"))
        .await
        .expect_err("malformed");
    assert_eq!(e.class, ErrorClass::Protocol);
    assert_eq!(
        sim.messages_accepted(),
        0,
        "faulted messages create nothing"
    );
    sim.faults().update(|f| f.delay_ms = 600);
    let slow = StormClient::new(
        StormConfig {
            timeout_ms: 200,
            ..StormConfig::new(sim.base_url())
        },
        mappings(),
    )
    .expect("config");
    assert_eq!(
        slow.send_message(&payload, &ctx("m-1"))
            .await
            .expect_err("slow")
            .class,
        ErrorClass::Timeout
    );
    sim.faults().clear();
    sim.refuse().await;
    assert_eq!(
        storm.health().await.expect_err("refused").class,
        ErrorClass::Connect
    );
    sim.accept().await.expect("reopens");
    storm.health().await.expect("healthy");
    let ack = storm
        .send_message(&payload, &ctx("m-1"))
        .await
        .expect("created");
    assert!(ack.duplicate, "the timed-out attempt had been processed");
}

#[tokio::test]
async fn configuration_is_typed_and_an_unmappable_message_is_a_mapping_error() {
    let cfg: CommandControlConfig = serde_json::from_value(json!({
        "type": "storm", "base_url": "http://127.0.0.1:9", "api_key": "s3cret"
    }))
    .expect("config");
    assert!(!format!("{cfg:?}").contains("s3cret"));
    let storm = cfg.build(mappings()).await.expect("builds");
    assert_eq!(storm.name(), "storm");
    let mut bad = create("m", "1");
    bad.incident = json!({ "modelVersion": "1.0.0", "incidentNumber": "X", "status": "paused" });
    let e = storm.prepare_message(&bad).expect_err("unknown status");
    assert_eq!(e.class, ErrorClass::Mapping);
    assert!(
        serde_json::from_value::<CommandControlConfig>(
            json!({ "type": "storm", "base_url": "http://x", "grade": 1 })
        )
        .is_err()
    );
    let e = StormClient::new(StormConfig::new("ftp://x"), mappings()).expect_err("bad url");
    assert!(e.message.starts_with("storm.base_url"), "{e}");
}
