//! The Athena client against the real simulator (`fixtures::athena::AthenaSim`) on loopback.
//! Payloads are hand-written `<CrimeRecord>` documents, independent of the mapping engine.

use std::sync::Arc;
use std::time::Duration;

use fixtures::athena::{AthenaSim, AthenaSimOptions};
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, HeaderValue};

use super::client::{children, classify_status, retry_after};
use super::{AthenaClient, AthenaConfig, Secret};
use crate::{DeliveryContext, ErrorClass, RecordSystem, RecordSystemConfig, TargetPayload};

fn mappings() -> Arc<mappings::Mappings> {
    Arc::new(mappings::Mappings::builtin().expect("builtin mapping specs load"))
}

async fn sim() -> AthenaSim {
    AthenaSim::start(AthenaSimOptions::default())
        .await
        .expect("simulator starts")
}

fn client_with(cfg: AthenaConfig) -> AthenaClient {
    AthenaClient::new(cfg, mappings()).expect("valid config")
}

fn client(sim: &AthenaSim) -> AthenaClient {
    client_with(AthenaConfig::new(sim.base_url()))
}

const SURNAME: &str = "Fictionalsurname";

/// A valid record; `gender` lets a test break one rule.
fn payload_with_gender(submission_id: &str, gender: &str) -> TargetPayload {
    TargetPayload {
        content_type: "application/xml".to_owned(),
        body: format!(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<CrimeRecord xmlns="urn:nmpp:athena:1">
  <Header>
    <ForceCode>42</ForceCode>
    <SourceSystem>NMPP</SourceSystem>
    <SourceReference>TYA-1-23-0100-000</SourceReference>
    <SubmissionId>{submission_id}</SubmissionId>
    <ReportedAt>2023-06-12T15:09:33.880+01:00</ReportedAt>
  </Header>
  <Classification><Category>OCR</Category><SubCategory>TV1</SubCategory><HighHarm>false</HighHarm></Classification>
  <Narrative>Bicycle taken from outside the library.</Narrative>
  <People>
    <Person ref="p1">
      <Role>VIC</Role><Role>RPT</Role>
      <Forenames>Mick</Forenames>
      <Surname>{SURNAME}</Surname>
      <DateOfBirth>2000-01-01</DateOfBirth>
      <Gender>{gender}</Gender>
      <PreferredContact>EMAIL</PreferredContact>
      <Email>mick@example.org</Email>
    </Person>
  </People>
</CrimeRecord>"#
        ),
        mapping: "hand-written@test".to_owned(),
    }
}

fn payload(submission_id: &str) -> TargetPayload {
    payload_with_gender(submission_id, "M")
}

fn ctx(key: &str) -> DeliveryContext {
    DeliveryContext {
        idempotency_key: key.to_owned(),
        correlation_id: format!("corr-{key}"),
    }
}

#[tokio::test]
async fn creates_a_record_and_answers_its_reference() {
    let sim = sim().await;
    let athena = client(&sim);
    let receipt = athena
        .create_crime_record(&payload("s-1"), &ctx("k-1"))
        .await
        .expect("created");
    assert_eq!((receipt.status, receipt.duplicate), (201, false));

    let records = sim.records();
    assert_eq!(records.len(), 1);
    let r = &records[0];
    assert_eq!(receipt.target_ref, r.crime_reference);
    assert!(r.crime_reference.starts_with("42/00001/"));
    assert_eq!(r.idempotency_key, "k-1");
    assert_eq!(r.correlation_id.as_deref(), Some("corr-k-1"));
    assert_eq!(r.header.submission_id, "s-1");
    assert_eq!(r.people[0].roles, ["VIC", "RPT"]);
    assert_eq!(r.people[0].surname.as_deref(), Some(SURNAME));
    assert_eq!(athena.name(), "athena");
}

#[tokio::test]
async fn the_same_key_is_a_duplicate_and_creates_one_record() {
    let sim = sim().await;
    let athena = client(&sim);
    let first = athena
        .create_crime_record(&payload("s-1"), &ctx("k"))
        .await
        .expect("created");
    let second = athena
        .create_crime_record(&payload("s-1"), &ctx("k"))
        .await
        .expect("answered");
    assert_eq!((second.status, second.duplicate), (200, true));
    assert_eq!(second.target_ref, first.target_ref);
    assert_eq!(sim.records().len(), 1);
    assert_eq!(sim.stats().duplicates, 1);
}

#[tokio::test]
async fn two_server_errors_then_success() {
    let sim = sim().await;
    let athena = client(&sim);
    sim.fail_next(2, 503);
    for _ in 0..2 {
        let error = athena
            .create_crime_record(&payload("s"), &ctx("k"))
            .await
            .expect_err("5xx");
        assert_eq!(error.class, ErrorClass::Upstream5xx, "{error}");
        assert_eq!(error.status, Some(503));
        assert!(error.is_retryable());
        assert!(error.message.contains("SIM_FAULT"), "{error}");
    }
    assert!(sim.records().is_empty(), "faulted requests create nothing");
    let receipt = athena
        .create_crime_record(&payload("s"), &ctx("k"))
        .await
        .expect("third try");
    assert_eq!((receipt.status, receipt.duplicate), (201, false));
    assert_eq!(sim.records().len(), 1);
}

#[tokio::test]
async fn throttling_carries_retry_after() {
    let sim = sim().await;
    let athena = client(&sim);
    sim.fail_next(1, 429);
    let error = athena
        .create_crime_record(&payload("s"), &ctx("k"))
        .await
        .expect_err("429");
    assert_eq!(error.class, ErrorClass::Throttled);
    assert_eq!(error.retry_after, Some(Duration::from_secs(1)));

    sim.set_retry_after(Some(5));
    sim.fail_next(1, 503);
    let error = athena
        .create_crime_record(&payload("s"), &ctx("k"))
        .await
        .expect_err("503");
    assert_eq!(
        (error.class, error.status),
        (ErrorClass::Throttled, Some(503))
    );
    assert_eq!(error.retry_after, Some(Duration::from_secs(5)));
}

#[tokio::test]
async fn a_rejection_is_not_retryable_and_names_code_and_field_without_personal_data() {
    let sim = sim().await;
    let athena = client(&sim);
    sim.reject_next(1, 422);
    let error = athena
        .create_crime_record(&payload("s"), &ctx("k"))
        .await
        .expect_err("rejected");
    assert_eq!(
        (error.class, error.status),
        (ErrorClass::Rejected, Some(422))
    );
    assert!(!error.is_retryable());
    assert!(error.message.contains("SIM_REJECTED"), "{error}");

    let error = athena
        .create_crime_record(&payload_with_gender("s", "Zebra"), &ctx("k2"))
        .await
        .expect_err("unknown gender code");
    assert_eq!(error.class, ErrorClass::Rejected);
    assert!(error.message.contains("INVALID_CODE"), "{error}");
    assert!(
        error
            .message
            .contains("CrimeRecord/People/Person[1]/Gender"),
        "{error}"
    );
    for personal in ["Zebra", SURNAME, "Mick", "mick@example.org", "2000-01-01"] {
        assert!(
            !error.message.contains(personal),
            "{personal} leaked into {error}"
        );
    }
    assert!(sim.records().is_empty());
}

#[tokio::test]
async fn a_refused_connection_is_connect() {
    let sim = sim().await;
    let athena = client(&sim);
    // A pooled connection from an earlier success must not hide the outage.
    athena
        .create_crime_record(&payload("s-1"), &ctx("k-1"))
        .await
        .expect("created");
    sim.refuse().await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let error = athena
        .create_crime_record(&payload("s-2"), &ctx("k-2"))
        .await
        .expect_err("refused");
    assert_eq!(error.class, ErrorClass::Connect, "{error}");
    assert!(error.is_retryable());
    assert_eq!(error.status, None);
    let health = athena.health().await.expect_err("refused");
    assert_eq!(health.class, ErrorClass::Connect);

    sim.accept().await.expect("reopens");
    let receipt = athena
        .create_crime_record(&payload("s-2"), &ctx("k-2"))
        .await
        .expect("back");
    assert_eq!(receipt.status, 201);
}

#[tokio::test]
async fn a_slow_answer_is_timeout_and_the_retry_finds_the_record() {
    let sim = sim().await;
    let athena = client_with(AthenaConfig {
        timeout_ms: 200,
        ..AthenaConfig::new(sim.base_url())
    });
    sim.set_delay(Duration::from_millis(800));
    let error = athena
        .create_crime_record(&payload("s"), &ctx("k"))
        .await
        .expect_err("slow");
    assert_eq!(error.class, ErrorClass::Timeout, "{error}");
    assert!(error.is_retryable());
    // The outcome was unknown to us, but Athena did the work: the retry with the same key must
    // not create a second record.
    assert_eq!(sim.records().len(), 1);
    sim.set_delay(Duration::ZERO);
    let receipt = athena
        .create_crime_record(&payload("s"), &ctx("k"))
        .await
        .expect("retry");
    assert!(receipt.duplicate);
    assert_eq!(sim.records().len(), 1);
}

#[tokio::test]
async fn a_malformed_answer_is_protocol() {
    let sim = sim().await;
    let athena = client(&sim);
    sim.malformed_next(1);
    let error = athena
        .create_crime_record(&payload("s"), &ctx("k"))
        .await
        .expect_err("broken");
    assert_eq!(
        (error.class, error.status),
        (ErrorClass::Protocol, Some(201))
    );
    assert!(error.is_retryable());
    assert!(sim.records().is_empty());
}

#[tokio::test]
async fn credentials_are_sent_and_a_wrong_key_is_unauthorized() {
    let sim = AthenaSim::start(AthenaSimOptions {
        api_key: Some("right-key".into()),
        ..AthenaSimOptions::default()
    })
    .await
    .expect("start");
    let wrong = client_with(AthenaConfig {
        api_key: Some(Secret::new("wrong-key")),
        ..AthenaConfig::new(sim.base_url())
    });
    let error = wrong
        .create_crime_record(&payload("s"), &ctx("k"))
        .await
        .expect_err("401");
    assert_eq!(
        (error.class, error.status),
        (ErrorClass::Unauthorized, Some(401))
    );
    assert!(!error.is_retryable());
    assert!(!error.message.contains("wrong-key"));
    assert_eq!(
        wrong.health().await.expect_err("401").class,
        ErrorClass::Unauthorized
    );

    let none = client(&sim);
    let error = none
        .create_crime_record(&payload("s"), &ctx("k"))
        .await
        .expect_err("401");
    assert_eq!(error.class, ErrorClass::Unauthorized);

    let right = client_with(AthenaConfig {
        api_key: Some(Secret::new("right-key")),
        ..AthenaConfig::new(sim.base_url())
    });
    right.health().await.expect("healthy");
    let receipt = right
        .create_crime_record(&payload("s"), &ctx("k"))
        .await
        .expect("created");
    assert_eq!(receipt.status, 201);
    assert_eq!(sim.records().len(), 1);
}

#[tokio::test]
async fn health_reports_up() {
    let sim = sim().await;
    client(&sim).health().await.expect("healthy");
    // A base URL with a trailing slash reaches the same endpoints.
    client_with(AthenaConfig::new(format!("{}/", sim.base_url())))
        .health()
        .await
        .expect("ok");
}

#[tokio::test]
async fn prepare_wraps_the_mapping_result() {
    let sim = sim().await;
    let athena = client(&sim);
    // Independent of how far the mapping engine has got: either a payload labelled with the
    // spec that made it, or a non-retryable mapping error.
    match athena.prepare_crime_record(&serde_json::json!({})) {
        Ok(payload) => {
            assert_eq!(payload.content_type, "application/xml");
            assert!(
                payload.mapping.starts_with("nmpp-to-athena@"),
                "{}",
                payload.mapping
            );
        }
        Err(error) => {
            assert_eq!(error.class, ErrorClass::Mapping, "{error}");
            assert!(!error.is_retryable());
        }
    }
}

#[tokio::test]
async fn prepare_through_a_requested_mapping_version() {
    let sim = sim().await;
    let athena = client(&sim);
    let nmpp = serde_json::json!({
        "submission": { "forceIdentifier": 42, "submissionId": "s-1" },
        "incident": { "location": { "postcode": "mk40 1aa" } },
        "parties": []
    });
    assert_eq!(athena.crime_record_spec(), Some("nmpp-to-athena"));
    let current = athena.prepare_crime_record_with(&nmpp, None).expect("maps");
    assert_eq!(current.mapping, "nmpp-to-athena@1.0.0");
    assert!(current.body.contains("<Postcode>mk40 1aa</Postcode>"));
    let v2 = athena
        .prepare_crime_record_with(&nmpp, Some("nmpp-to-athena@2.0.0"))
        .expect("maps");
    assert_eq!(v2.mapping, "nmpp-to-athena@2.0.0");
    assert!(
        v2.body.contains("<Postcode>MK40 1AA</Postcode>"),
        "{}",
        v2.body
    );
    // A version that is not loaded, or another spec: a non-retryable mapping error naming what
    // is loaded.
    for asked in ["nmpp-to-athena@9.0.0", "nmpp-to-ihub-event@1.0.0"] {
        let e = athena
            .prepare_crime_record_with(&nmpp, Some(asked))
            .expect_err("refused");
        assert_eq!(e.class, ErrorClass::Mapping, "{e}");
        assert!(!e.is_retryable());
        assert!(e.message.contains("nmpp-to-athena@2.0.0"), "{asked}: {e}");
    }
}

#[test]
fn config_defaults_secret_and_unknown_fields() {
    let cfg: AthenaConfig = serde_json::from_value(serde_json::json!({
        "base_url": "http://127.0.0.1:9100",
        "api_key": "hunter2",
    }))
    .expect("valid");
    assert_eq!((cfg.timeout_ms, cfg.connect_timeout_ms), (10_000, 2_000));
    assert_eq!(cfg.api_key.as_ref().map(Secret::expose), Some("hunter2"));
    assert!(!format!("{cfg:?}").contains("hunter2"));
    let key = cfg.api_key.clone().expect("key");
    assert_eq!(
        (format!("{key}"), format!("{key:?}")),
        ("***".to_owned(), "***".to_owned())
    );
    let json = serde_json::to_string(&cfg).expect("serialises");
    assert!(
        json.contains(r#""api_key":"***""#) && !json.contains("hunter2"),
        "{json}"
    );

    let unknown = serde_json::from_value::<AthenaConfig>(serde_json::json!({
        "base_url": "http://x", "timeout": 5,
    }));
    assert!(unknown.is_err());

    let tagged: RecordSystemConfig = serde_json::from_value(serde_json::json!({
        "type": "athena", "base_url": "http://127.0.0.1:9100", "timeout_ms": 500,
    }))
    .expect("tagged config");
    let RecordSystemConfig::Athena(cfg) = &tagged else {
        panic!("not athena");
    };
    assert_eq!(cfg.timeout_ms, 500);
    let adapter = tagged.build(mappings()).expect("builds");
    assert_eq!(adapter.name(), "athena");
}

#[test]
fn bad_configuration_is_internal_and_names_the_field() {
    let cases = [
        (AthenaConfig::new("not a url"), "athena.base_url"),
        (AthenaConfig::new("ftp://host"), "athena.base_url"),
        (AthenaConfig::new("http://user:pw@host"), "athena.base_url"),
        (
            AthenaConfig {
                timeout_ms: 0,
                ..AthenaConfig::new("http://host")
            },
            "athena.timeout_ms",
        ),
        (
            AthenaConfig {
                api_key: Some(Secret::new("a\nb")),
                ..AthenaConfig::new("http://host")
            },
            "athena.api_key",
        ),
    ];
    for (cfg, field) in cases {
        let error = AthenaClient::new(cfg, mappings()).expect_err("invalid");
        assert_eq!(error.class, ErrorClass::Internal);
        assert!(error.message.starts_with(field), "{error}");
        assert!(!error.message.contains("pw"), "{error}");
    }
}

#[test]
fn statuses_are_classified() {
    let cases = [
        (400, None, ErrorClass::Rejected),
        (404, None, ErrorClass::Rejected),
        (409, None, ErrorClass::Rejected),
        (401, None, ErrorClass::Unauthorized),
        (403, None, ErrorClass::Unauthorized),
        (408, None, ErrorClass::Timeout),
        (429, None, ErrorClass::Throttled),
        (500, None, ErrorClass::Upstream5xx),
        (502, None, ErrorClass::Upstream5xx),
        (503, None, ErrorClass::Upstream5xx),
        (503, Some(Duration::from_secs(2)), ErrorClass::Throttled),
        (302, None, ErrorClass::Protocol),
        (204, None, ErrorClass::Protocol),
    ];
    for (status, after, class) in cases {
        let error = classify_status(StatusCode::from_u16(status).unwrap(), after, None);
        assert_eq!(error.class, class, "{status}");
        assert_eq!(error.status, Some(status));
    }
    let body = r#"<Error xmlns="urn:nmpp:athena:1"><Code>REQUIRED</Code><Message>CrimeRecord/Header/ForceCode: required</Message><Field>CrimeRecord/Header/ForceCode</Field></Error>"#;
    let error = classify_status(StatusCode::UNPROCESSABLE_ENTITY, None, Some(body));
    assert!(error.message.contains("code REQUIRED"), "{error}");
    assert!(
        error.message.contains("field CrimeRecord/Header/ForceCode"),
        "{error}"
    );
}

#[test]
fn retry_after_accepts_seconds_and_http_dates() {
    let mut headers = HeaderMap::new();
    headers.insert("retry-after", HeaderValue::from_static("120"));
    assert_eq!(retry_after(&headers), Some(Duration::from_secs(120)));
    headers.insert(
        "retry-after",
        HeaderValue::from_static("Sun, 06 Nov 1994 08:49:37 GMT"),
    );
    assert_eq!(
        retry_after(&headers),
        Some(Duration::ZERO),
        "a date in the past means now"
    );
    let later = time::OffsetDateTime::now_utc() + time::Duration::seconds(90);
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    let value = later.format(format).expect("formats");
    headers.insert("retry-after", HeaderValue::from_str(&value).unwrap());
    let wait = retry_after(&headers).expect("parsed");
    assert!(
        wait > Duration::from_secs(80) && wait <= Duration::from_secs(90),
        "{wait:?}"
    );
    headers.insert("retry-after", HeaderValue::from_static("soon"));
    assert_eq!(retry_after(&headers), None);
}

#[test]
fn answers_are_read_by_local_name() {
    let read = |xml: &str| children(xml, "CrimeRecordCreated", &["CrimeReference"]);
    assert_eq!(
        read(
            "<CrimeRecordCreated><CrimeReference> 42/00001/26 </CrimeReference></CrimeRecordCreated>"
        ),
        Some(vec![Some("42/00001/26".to_owned())])
    );
    assert_eq!(
        read(
            r#"<a:CrimeRecordCreated xmlns:a="urn:nmpp:athena:1"><a:CrimeReference>R&amp;1</a:CrimeReference></a:CrimeRecordCreated>"#
        ),
        Some(vec![Some("R&1".to_owned())])
    );
    assert_eq!(read("<CrimeRecordCreated/>"), Some(vec![None]));
    assert_eq!(
        read("<Other><CrimeReference>x</CrimeReference></Other>"),
        None
    );
    assert_eq!(
        read("<CrimeRecordCreated><CrimeReference>x</CrimeRef"),
        None
    );
    assert_eq!(read(""), None);
}

// ---- records-system operations (issue 4) ----------------------------------------------------

mod records_ops {
    use fixtures::dataset::{Dataset, Mutation};
    use serde_json::json;

    use super::*;
    use crate::records::{ChangeCursor, RecordWrite, WriteOperation};

    async fn loaded() -> (AthenaSim, AthenaClient, Dataset) {
        let sim = sim().await;
        let dataset = Dataset::builtin();
        sim.load_dataset(&dataset);
        let athena = client(&sim);
        (sim, athena, dataset)
    }

    #[tokio::test]
    async fn reads_a_case_with_officers_status_outcome_and_timeline() {
        let (_sim, athena, _) = loaded().await;
        let case = athena.read_case("42/00101/26").await.expect("read");
        let d = &case.document;
        assert_eq!(d["status"], "CSTS_0002");
        assert_eq!(
            d["outcome"],
            json!({ "code": "14", "publicCategory": "unable-to-prosecute", "assignedAt": "2026-02-01T12:00:00Z" })
        );
        assert_eq!(d["officerInCharge"]["rank"], "RANK_0002");
        assert_eq!(d["supervisor"]["officerId"], "OFF-1003");
        assert_eq!(d["parties"][1]["guardianOf"], json!(["P-1001"]));
        assert_eq!(d["timeline"][1]["type"], "allocated");
        assert!(case.mapping.starts_with("athena-to-nmpp-case@"));
        let missing = athena.read_case("42/99999/26").await.expect_err("404");
        assert_eq!(
            (missing.class, missing.status),
            (ErrorClass::Rejected, Some(404))
        );
    }

    #[tokio::test]
    async fn read_faults_are_classified() {
        let (sim, athena, _) = loaded().await;
        sim.fail_next(1, 500);
        assert_eq!(
            athena
                .read_case("42/00101/26")
                .await
                .expect_err("500")
                .class,
            ErrorClass::Upstream5xx
        );
        sim.malformed_next(1);
        let e = athena.read_case("42/00101/26").await.expect_err("broken");
        assert_eq!((e.class, e.status), (ErrorClass::Protocol, Some(200)));
        sim.set_delay(Duration::from_millis(600));
        let slow = client_with(AthenaConfig {
            timeout_ms: 200,
            ..AthenaConfig::new(sim.base_url())
        });
        assert_eq!(
            slow.read_case("42/00101/26").await.expect_err("slow").class,
            ErrorClass::Timeout
        );
        sim.set_delay(Duration::ZERO);
        athena.read_case("42/00101/26").await.expect("recovers");
    }

    #[tokio::test]
    async fn a_record_with_an_unknown_code_is_a_named_mapping_error_not_a_panic() {
        let (sim, _, _) = loaded().await;
        // A force whose rank table knows only PC and PS: Athena's DC is then an unknown code.
        let override_spec = r#"
id = "athena-to-nmpp-case"
version = "1.0.1"
extends = "athena-to-nmpp-case"

[codes.force-rank]
map = { PC = "RANK_0001", PS = "RANK_0003" }

[[rule]]
id = "officer.rank"
to = "rank"
from = "Rank"
codes = "force-rank"
"#;
        let mappings = Arc::new(
            mappings::Mappings::from_sources([("force/ranks.toml", override_spec)]).expect("loads"),
        );
        let athena =
            AthenaClient::new(AthenaConfig::new(sim.base_url()), mappings).expect("config");
        let error = athena
            .read_case("42/00101/26")
            .await
            .expect_err("unknown rank");
        assert_eq!(error.class, ErrorClass::Mapping, "{error}");
        assert!(!error.is_retryable());
        assert!(
            error.message.contains("athena-to-nmpp-case@1.0.1"),
            "{error}"
        );
        assert!(error.message.contains("/OfficerInCharge/Rank"), "{error}");
        assert!(error.message.contains("force-rank"), "{error}");
        // A record whose officers are a PC and a PS maps.
        let ok = athena.read_case("42/00102/26").await;
        assert!(ok.is_ok(), "{ok:?}");
    }

    #[tokio::test]
    async fn writes_victim_contacts_tasks_and_contact_details_idempotently() {
        let (sim, athena, _) = loaded().await;
        let message = json!({
            "modelVersion": "1.0.0", "messageId": "3f0f5a7e-8a4b-4f63-9a55-1d2c3b4a5e6f",
            "crimeReference": "42/00101/26", "direction": "fromPublic",
            "sentAt": "2026-01-08T18:22:05Z", "body": "Any news?", "officerId": "OFF-1001"
        });
        let prepared = athena
            .prepare_write(&RecordWrite::VictimContact { message })
            .expect("maps");
        assert_eq!(prepared.operation, WriteOperation::VictimContact);
        assert_eq!(prepared.crime_reference, "42/00101/26");
        let first = athena.write(&prepared, &ctx("vc-1")).await.expect("logged");
        assert_eq!((first.status, first.duplicate), (201, false));
        assert_eq!(first.target_ref, "42/00101/26#1");
        let again = athena.write(&prepared, &ctx("vc-1")).await.expect("repeat");
        assert!(again.duplicate);
        assert_eq!(
            sim.record("42/00101/26").map(|r| r.contact_log.len()),
            Some(1)
        );

        let task = json!({
            "modelVersion": "1.0.0", "taskId": "7d7c1d8e-59b1-4b6f-8e0c-0c7f0e8a9b10",
            "crimeReference": "42/00101/26", "type": "respondToMessage", "officerId": "OFF-1001"
        });
        let prepared = athena
            .prepare_write(&RecordWrite::OfficerTask { task })
            .expect("maps");
        let receipt = athena
            .write(&prepared, &ctx("task-1"))
            .await
            .expect("created");
        assert_eq!(receipt.target_ref, "42/00101/26#T1");
        assert_eq!(
            sim.record("42/00101/26")
                .map(|r| r.tasks[0].task_type.clone())
                .as_deref(),
            Some("RESPOND")
        );

        let change = json!({
            "modelVersion": "1.0.0", "changeId": "1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f",
            "crimeReference": "42/00101/26", "partyId": "P-1002", "contactPreference": "CPNC_0001",
            "contact": { "emails": [ { "address": "mick.new@example.org", "use": "personal" } ] }
        });
        let prepared = athena
            .prepare_write(&RecordWrite::ContactDetails { change })
            .expect("maps");
        athena
            .write(&prepared, &ctx("cd-1"))
            .await
            .expect("updated");
        let case = athena.read_case("42/00101/26").await.expect("read");
        assert_eq!(
            case.document["parties"][1]["person"]["contactPreference"],
            "CPNC_0001"
        );
        assert_eq!(
            case.document["parties"][1]["contact"]["emails"][0]["address"],
            "mick.new@example.org"
        );

        // Unknown code in a write: a named mapping error, nothing sent.
        let bad = json!({ "modelVersion": "1.0.0", "taskId": "x", "crimeReference": "42/00101/26", "type": "makeTea" });
        let error = athena
            .prepare_write(&RecordWrite::OfficerTask { task: bad })
            .expect_err("unknown type");
        assert_eq!(error.class, ErrorClass::Mapping);
        assert!(error.message.contains("athena-task-type"), "{error}");
        // No crime reference: mapping error too.
        let error = athena
            .prepare_write(&RecordWrite::VictimContact { message: json!({}) })
            .expect_err("no reference");
        assert_eq!(error.class, ErrorClass::Mapping);
        // Unknown record: rejected (404), not retryable.
        let mut orphan = prepared.clone();
        orphan.crime_reference = "42/99999/26".into();
        let error = athena.write(&orphan, &ctx("cd-2")).await.expect_err("404");
        assert_eq!(
            (error.class, error.status),
            (ErrorClass::Rejected, Some(404))
        );
        // A 503 is retryable and creates nothing.
        sim.fail_next(1, 503);
        let task = athena
            .prepare_write(&RecordWrite::OfficerTask {
                task: json!({ "modelVersion": "1.0.0", "taskId": "t2", "crimeReference": "42/00101/26", "type": "updateVictim" }),
            })
            .expect("maps");
        assert!(
            athena
                .write(&task, &ctx("task-2"))
                .await
                .expect_err("503")
                .is_retryable()
        );
        assert_eq!(sim.record("42/00101/26").map(|r| r.tasks.len()), Some(1));
    }

    #[tokio::test]
    async fn the_change_feed_pages_and_hands_over_by_time() {
        let (sim, athena, dataset) = loaded().await;
        let all = athena.changes_since(None, 100).await.expect("feed");
        assert_eq!(all.changes.len(), dataset.crimes.len());
        assert!(
            all.changes
                .iter()
                .all(|c| c.kind.as_deref() == Some("CREATED"))
        );
        let mut cursor: Option<ChangeCursor> = None;
        let mut seen = 0;
        loop {
            let page = athena
                .changes_since(cursor.as_ref(), 4)
                .await
                .expect("page");
            seen += page.changes.len();
            cursor = Some(page.next);
            if !page.more {
                break;
            }
        }
        assert_eq!(seen, dataset.crimes.len());
        let before = dataset::now_for_test();
        tokio::time::sleep(Duration::from_millis(5)).await;
        sim.apply(&Mutation::SetStatus {
            crime_reference: "42/00103/26".into(),
            status: "CSTS_0002".into(),
            at: "2026-03-01T10:00:00Z".into(),
        })
        .expect("applied");
        let next = athena
            .changes_since(cursor.as_ref(), 100)
            .await
            .expect("next");
        assert_eq!(next.changes.len(), 1);
        assert_eq!(next.changes[0].kind.as_deref(), Some("STATUS"));
        let from = athena.cursor_at(&before).await.expect("cursor at");
        let since = athena.changes_since(Some(&from), 100).await.expect("since");
        assert_eq!(since.changes.len(), 1, "{since:?}");
        sim.malformed_next(1);
        assert_eq!(
            athena
                .changes_since(None, 10)
                .await
                .expect_err("broken")
                .class,
            ErrorClass::Protocol
        );
        let wrong = ChangeCursor {
            kind: "athena_dw".into(),
            position: "x|1".into(),
        };
        assert_eq!(
            athena
                .changes_since(Some(&wrong), 10)
                .await
                .expect_err("wrong")
                .class,
            ErrorClass::Internal
        );
    }

    mod dataset {
        pub(super) fn now_for_test() -> String {
            fixtures::dataset::now()
        }
    }
}
