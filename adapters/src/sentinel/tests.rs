//! The Sentinel sink and its driver against the real simulator
//! (`fixtures::sentinel::SentinelSim`: token endpoint and Logs Ingestion API) on loopback.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use fixtures::sentinel::{SentinelSim, SentinelSimOptions};
use reqwest::StatusCode;

use super::client::classify_answer;
use super::mapping::{asim_row, event_type};
use super::{SentinelConfig, SentinelSink};
use crate::ErrorClass;
use crate::athena::Secret;
use crate::sink::tests::{Running, fast_driver, record, record_with, uid};
use crate::sink::{AuditSink, DriverConfig, MemoryJournal, SendOutcome, SinkRecord, SinkState};

async fn sim() -> SentinelSim {
    SentinelSim::start(SentinelSimOptions::default())
        .await
        .expect("simulator starts")
}

fn config(sim: &SentinelSim) -> SentinelConfig {
    let o = sim.options();
    SentinelConfig {
        authority: sim.base_url(),
        timeout_ms: 2_000,
        connect_timeout_ms: 500,
        ..SentinelConfig::new(
            sim.base_url(),
            &o.dcr_immutable_id,
            &o.stream,
            &o.tenant_id,
            &o.client_id,
            o.client_secret.as_str(),
        )
    }
}

async fn sink(cfg: SentinelConfig) -> Box<dyn AuditSink> {
    Box::new(SentinelSink::new(cfg).await.expect("valid config"))
}

async fn start(sim: &SentinelSim, driver: DriverConfig) -> Running {
    Running::start(sink(config(sim)).await, driver, MemoryJournal::new(), 0)
}

/// Every uid `1..=n` accepted at least once and nothing else.
fn assert_complete(sim: &SentinelSim, n: u64) {
    let got: HashSet<String> = sim.uid_counts().into_keys().collect();
    let expected: HashSet<String> = (1..=n).map(uid).collect();
    let missing: Vec<_> = expected.difference(&got).collect();
    let extra: Vec<_> = got.difference(&expected).collect();
    assert!(missing.is_empty(), "lost rows: {missing:?}");
    assert!(extra.is_empty(), "unexpected rows: {extra:?}");
}

#[tokio::test]
async fn delivers_asim_rows_with_a_cached_token() {
    let sim = sim().await;
    let running = start(&sim, fast_driver()).await;
    running.push_range(1, 40);
    running.wait_for(40, Duration::from_secs(10)).await;
    running.push_range(41, 60);
    running.wait_for(60, Duration::from_secs(10)).await;
    assert_complete(&sim, 60);
    let stats = sim.stats();
    assert_eq!(
        stats.tokens_issued, 1,
        "one token for every call: {stats:?}"
    );
    assert_eq!(stats.duplicates, 0);
    assert!(sim.calls().iter().all(|c| c.gzip && c.status == 204));

    let row = sim
        .rows()
        .into_iter()
        .find(|r| r["EventUid"] == uid(7))
        .expect("row 7");
    assert_eq!(row["TimeGenerated"], "2025-11-24T16:00:07.123Z");
    assert_eq!(row["EventStartTime"], row["TimeGenerated"]);
    assert_eq!(row["EventType"], "Read");
    assert_eq!(row["Operation"], "exchange.view");
    assert_eq!(row["EventResult"], "Success");
    assert_eq!(row["Object"], "exchange/0193-exchange-7");
    assert_eq!(row["ObjectId"], "0193-exchange-7");
    assert_eq!(row["ObjectType"], "Other");
    assert_eq!(row["ActorUsername"], "operator.jones");
    assert_eq!(row["SrcIpAddr"], "10.1.2.3");
    assert_eq!(row["EventSchema"], "AuditEvent");
    let extra = &row["AdditionalFields"];
    assert_eq!(extra["seq"], 7);
    assert_eq!(extra["force"], "demo");
    assert_eq!(
        extra["LedgerRecord"].as_str().expect("text").as_bytes(),
        &record(7).json[..],
        "the canonical record travels byte for byte"
    );
    running.stop().await;
}

#[tokio::test]
async fn a_413_splits_the_batch_and_every_row_arrives() {
    // The API limit is 1 MB; this sink is configured (wrongly) for 3 MB batches, so the first
    // calls are too large and must be split until they fit.
    let sim = sim().await;
    let cfg = SentinelConfig {
        max_batch_bytes: 3_000_000,
        gzip: false,
        ..config(&sim)
    };
    let running = Running::start(
        sink(cfg).await,
        DriverConfig {
            max_batch_records: 5000,
            ..fast_driver()
        },
        MemoryJournal::new(),
        0,
    );
    running.push_range(1, 3000); // ~4 MB of rows
    running.wait_for(3000, Duration::from_secs(30)).await;
    assert_complete(&sim, 3000);
    let calls = sim.calls();
    let too_large = calls.iter().filter(|c| c.status == 413).count();
    assert!(too_large >= 1, "some calls were too large: {calls:?}");
    assert!(
        calls
            .iter()
            .filter(|c| c.status == 204)
            .all(|c| c.bytes <= 1_048_576)
    );
    assert_eq!(sim.stats().duplicates, 0);
    assert_eq!(running.now().quarantined, 0);
    running.stop().await;
}

#[tokio::test]
async fn default_batches_never_exceed_the_api_limit() {
    let sim = sim().await;
    let running = Running::start(
        sink(SentinelConfig {
            gzip: false,
            ..config(&sim)
        })
        .await,
        DriverConfig {
            max_batch_records: 5000,
            ..fast_driver()
        },
        MemoryJournal::new(),
        0,
    );
    running.push_range(1, 3000);
    running.wait_for(3000, Duration::from_secs(30)).await;
    let calls = sim.calls();
    assert!(calls.iter().all(|c| c.status == 204), "{calls:?}");
    assert!(calls.iter().all(|c| c.bytes <= 1_000_000));
    assert!(calls.len() >= 3, "4 MB in calls of at most 1 MB");
    running.stop().await;
}

#[tokio::test]
async fn a_429_waits_for_retry_after() {
    let sim = sim().await;
    sim.throttle_next(2, 1);
    let running = start(&sim, fast_driver()).await;
    let started = Instant::now();
    running.push_range(1, 5);
    running.wait_for(5, Duration::from_secs(10)).await;
    let calls = sim.calls();
    let statuses: Vec<u16> = calls.iter().map(|c| c.status).collect();
    assert_eq!(statuses, vec![429, 429, 204]);
    // The backoff here is 20–40 ms; only Retry-After explains a one-second spacing.
    for pair in calls.windows(2) {
        let gap = pair[1].at - pair[0].at;
        assert!(
            gap >= Duration::from_millis(990),
            "gap {gap:?} shorter than Retry-After"
        );
    }
    assert!(started.elapsed() >= Duration::from_secs(2));
    assert_complete(&sim, 5);
    running.stop().await;
}

#[tokio::test]
async fn an_expired_token_is_refreshed() {
    // Proactive renewal: a 2-second token is renewed after half its life, before it expires.
    let sim = sim().await;
    sim.set_token_lifetime(Duration::from_secs(2));
    let running = start(&sim, fast_driver()).await;
    for round in 0..6u64 {
        running.push_range(round * 5 + 1, round * 5 + 5);
        running
            .wait_for(round * 5 + 5, Duration::from_secs(10))
            .await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let stats = sim.stats();
    assert!(stats.tokens_issued >= 2, "renewed: {stats:?}");
    assert_eq!(stats.unauthorized, 0, "renewed before expiry: {stats:?}");
    assert_complete(&sim, 30);
    running.stop().await;

    // Reactive renewal: the service expires every token behind the client's back; the 401 makes
    // the sink fetch a new one and repeat the call at once.
    let sim = self::sim().await;
    let running = start(&sim, fast_driver()).await;
    running.push_range(1, 5);
    running.wait_for(5, Duration::from_secs(10)).await;
    assert_eq!(sim.stats().tokens_issued, 1);
    sim.expire_tokens();
    running.push_range(6, 10);
    running.wait_for(10, Duration::from_secs(10)).await;
    let stats = sim.stats();
    assert_eq!(
        (stats.unauthorized, stats.tokens_issued),
        (1, 2),
        "{stats:?}"
    );
    assert_complete(&sim, 10);
    assert_eq!(running.now().state, SinkState::Running);
    let statuses: Vec<u16> = sim.calls().iter().map(|c| c.status).collect();
    assert_eq!(
        statuses,
        vec![204, 401, 204],
        "the refused call was repeated at once"
    );
    running.stop().await;
}

#[tokio::test]
async fn wrong_credentials_halt_and_transient_token_failures_retry() {
    let sim = sim().await;
    let mut wrong = SentinelSink::new(SentinelConfig {
        client_secret: Secret::new("wrong-secret"),
        ..config(&sim)
    })
    .await
    .expect("valid config");
    let error = wrong.health().await.expect_err("refused");
    assert_eq!(error.class, ErrorClass::Unauthorized, "{error}");
    assert!(error.message.contains("invalid_client"), "{error}");
    assert!(!error.message.contains("wrong-secret"));

    let mut running = Running::start(
        Box::new(wrong),
        DriverConfig {
            halt_recheck_ms: 60_000,
            ..fast_driver()
        },
        MemoryJournal::new(),
        0,
    );
    running.push_range(1, 3);
    running
        .wait_state(Duration::from_secs(5), |s| {
            matches!(
                s,
                SinkState::Halted {
                    class: ErrorClass::Unauthorized,
                    ..
                }
            )
        })
        .await;
    assert_eq!(sim.stats().calls, 0, "no ingestion without a token");
    drop(running);

    let failures_before = sim.stats().token_failures;
    sim.fail_token_requests(2);
    let running = start(&sim, fast_driver()).await;
    running.push_range(1, 3);
    running.wait_for(3, Duration::from_secs(10)).await;
    assert_eq!(sim.stats().token_failures, failures_before + 2);
    assert_complete(&sim, 3);
    running.stop().await;
}

#[tokio::test]
async fn an_outage_under_a_steady_rate_loses_nothing() {
    let sim = sim().await;
    let running = start(&sim, fast_driver()).await;
    let journal = running.journal.clone();
    let producer = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(5));
        for seq in 1..=400 {
            tick.tick().await;
            journal.push(record(seq));
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    sim.refuse_for(Duration::from_millis(600)).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    sim.fail_next(2, 503);
    sim.throttle_next(1, 1);
    producer.await.expect("producer");
    running.wait_for(400, Duration::from_secs(30)).await;
    assert_complete(&sim, 400);
    let gaps = sim.calls().windows(2).map(|w| w[1].at - w[0].at).max();
    assert!(
        gaps.is_some_and(|g| g >= Duration::from_millis(500)),
        "the outage was seen: {gaps:?}"
    );
    assert_eq!(running.now().quarantined, 0);
    running.stop().await;
}

#[tokio::test]
async fn refused_rows_are_isolated_and_quarantined() {
    let sim = sim().await;
    sim.reject_marker(Some("POISON"));
    let journal = MemoryJournal::new();
    for seq in 1..=16 {
        journal.push(record_with(seq, (seq == 5).then_some("POISON")));
    }
    let running = Running::start(sink(config(&sim)).await, fast_driver(), journal.clone(), 0);
    running.wait_for(16, Duration::from_secs(10)).await;
    let quarantined = journal.quarantined("sentinel");
    assert_eq!(
        quarantined.iter().map(|q| q.seq).collect::<Vec<_>>(),
        vec![5]
    );
    assert_eq!(quarantined[0].status, Some(400));
    let counts = sim.uid_counts();
    assert_eq!(counts.len(), 15);
    assert!(!counts.contains_key(&uid(5)));
    running.stop().await;
}

#[tokio::test]
async fn a_wrong_rule_halts_instead_of_quarantining() {
    let sim = sim().await;
    let journal = MemoryJournal::new();
    let mut running = Running::start(
        sink(SentinelConfig {
            stream: "Custom-Wrong_CL".into(),
            ..config(&sim)
        })
        .await,
        fast_driver(),
        journal.clone(),
        0,
    );
    running.push_range(1, 3);
    running
        .wait_state(Duration::from_secs(5), |s| {
            matches!(
                s,
                SinkState::Halted {
                    class: ErrorClass::Internal,
                    ..
                }
            )
        })
        .await;
    assert!(journal.quarantined("sentinel").is_empty());
    assert_eq!(journal.cursor("sentinel"), 0);
}

#[tokio::test]
async fn checkpoints_become_rows_too() {
    let sim = sim().await;
    let running = start(&sim, fast_driver()).await;
    running.journal.push(SinkRecord::checkpoint(
        1,
        "checkpoint-1",
        time::OffsetDateTime::UNIX_EPOCH,
        0,
        "nmpp-gateway/demo\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n",
    ));
    running.wait_for(1, Duration::from_secs(10)).await;
    let row = sim.rows().pop().expect("row");
    assert_eq!(row["Operation"], "ledger.checkpoint");
    assert_eq!(row["EventType"], "Other");
    assert_eq!(row["AdditionalFields"]["kind"], "checkpoint");
    assert!(
        row["AdditionalFields"]["note"]
            .as_str()
            .expect("note")
            .starts_with("nmpp-gateway/demo")
    );
    running.stop().await;
}

#[test]
fn answers_are_classified() {
    let s = |c: u16| StatusCode::from_u16(c).expect("status");
    assert!(matches!(
        classify_answer(s(204), None, b""),
        Ok(SendOutcome::Delivered)
    ));
    for code in [400, 413] {
        match classify_answer(s(code), None, br#"{"error":{"code":"X"}}"#) {
            Ok(SendOutcome::Refused {
                first_bad: None,
                error,
            }) => {
                assert_eq!(
                    (error.class, error.status),
                    (ErrorClass::Rejected, Some(code))
                );
                assert!(error.message.contains("(X)"), "{error}");
            }
            other => panic!("{code}: {other:?}"),
        }
    }
    let class = |code: u16, after: Option<Duration>| {
        classify_answer(s(code), after, b"")
            .expect_err("error")
            .class
    };
    assert_eq!(class(401, None), ErrorClass::Unauthorized);
    assert_eq!(class(403, None), ErrorClass::Unauthorized);
    assert_eq!(class(404, None), ErrorClass::Internal);
    assert_eq!(class(429, None), ErrorClass::Throttled);
    assert_eq!(
        class(503, Some(Duration::from_secs(1))),
        ErrorClass::Throttled
    );
    assert_eq!(class(503, None), ErrorClass::Upstream5xx);
    assert_eq!(class(500, None), ErrorClass::Upstream5xx);
    let e = classify_answer(s(429), Some(Duration::from_secs(7)), b"").expect_err("429");
    assert_eq!(e.retry_after, Some(Duration::from_secs(7)));
}

#[test]
fn asim_event_types_and_unmappable_records() {
    assert_eq!(event_type("incident.create"), "Create");
    assert_eq!(event_type("exchange.view"), "Read");
    assert_eq!(event_type("audit.export"), "Read");
    assert_eq!(event_type("exchange.replay"), "Execute");
    assert_eq!(event_type("person.update"), "Set");
    assert_eq!(event_type("evidence.delete"), "Delete");
    assert_eq!(event_type("auth.failure"), "Other");
    let mut r = record(1);
    r.json = bytes::Bytes::from_static(b"[1,2]");
    assert_eq!(
        asim_row(&r).expect_err("not an object").class,
        ErrorClass::Mapping
    );
    r.json = bytes::Bytes::from_static(b"{");
    assert_eq!(
        asim_row(&r).expect_err("not json").class,
        ErrorClass::Mapping
    );
}

#[tokio::test]
async fn configuration_defaults_secrets_and_errors() {
    let cfg: SentinelConfig = serde_json::from_value(serde_json::json!({
        "endpoint": "https://dce.ingest.monitor.azure.com",
        "dcr_immutable_id": "dcr-0123",
        "stream": "Custom-NmppAudit_CL",
        "tenant_id": "t",
        "client_id": "c",
        "client_secret": "sup3r-secret",
    }))
    .expect("valid");
    assert_eq!(cfg.scope, "https://monitor.azure.com/.default");
    assert_eq!(cfg.api_version, "2023-01-01");
    assert_eq!(cfg.authority, "https://login.microsoftonline.com");
    assert_eq!(cfg.max_batch_bytes, 1_000_000);
    assert!(!format!("{cfg:?}").contains("sup3r"));
    assert!(!serde_json::to_string(&cfg).expect("json").contains("sup3r"));
    assert!(
        serde_json::from_value::<SentinelConfig>(serde_json::json!({
            "endpoint": "x", "dcr_immutable_id": "d", "stream": "s", "tenant_id": "t",
            "client_id": "c", "client_secret": "s", "dcr": "typo",
        }))
        .is_err()
    );
    for (bad, field) in [
        (
            SentinelConfig {
                endpoint: "nope".into(),
                ..cfg.clone()
            },
            "sentinel.endpoint",
        ),
        (
            SentinelConfig {
                stream: "a/b".into(),
                ..cfg.clone()
            },
            "sentinel.stream",
        ),
        (
            SentinelConfig {
                client_secret: Secret::new(""),
                ..cfg.clone()
            },
            "sentinel.client_secret",
        ),
    ] {
        let error = SentinelSink::new(bad).await.expect_err("invalid");
        assert_eq!(error.class, ErrorClass::Internal);
        assert!(error.message.starts_with(field), "{error}");
    }
}
