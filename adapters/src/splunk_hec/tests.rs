//! The Splunk HEC sink and its driver against the real simulator (`fixtures::hec::HecSim`) on
//! loopback.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use fixtures::hec::{HecFailure, HecSim, HecSimOptions};
use reqwest::StatusCode;

use super::client::{Answer, classify_event_answer};
use super::{SplunkHecConfig, SplunkHecSink};
use crate::ErrorClass;
use crate::athena::Secret;
use crate::sink::tests::{Running, fast_driver, record, record_with, uid};
use crate::sink::{AuditSink, DriverConfig, MemoryJournal, SendOutcome, SinkState};

const CHANNEL: &str = "0f5d6e1c-5b7a-4d1e-9a55-1b2c3d4e5f60";

async fn sim() -> HecSim {
    HecSim::start(HecSimOptions::default())
        .await
        .expect("simulator starts")
}

fn config(sim: &HecSim) -> SplunkHecConfig {
    SplunkHecConfig {
        index: Some("police_audit".into()),
        host: Some("gw-1".into()),
        timeout_ms: 2_000,
        connect_timeout_ms: 500,
        ..SplunkHecConfig::new(sim.base_url(), sim.token(), CHANNEL)
    }
}

fn sink(cfg: SplunkHecConfig) -> Box<dyn AuditSink> {
    Box::new(SplunkHecSink::new(cfg).expect("valid config"))
}

fn start(sim: &HecSim, driver: DriverConfig) -> Running {
    Running::start(sink(config(sim)), driver, MemoryJournal::new(), 0)
}

/// Every uid `1..=n` indexed at least once, nothing else indexed, and each copy of a uid
/// identical (a duplicate is only ever the same event under the same EventUid).
fn assert_complete(sim: &HecSim, n: u64) {
    let counts = sim.uid_counts();
    let expected: HashSet<String> = (1..=n).map(uid).collect();
    let got: HashSet<String> = counts.keys().cloned().collect();
    let missing: Vec<_> = expected.difference(&got).collect();
    let extra: Vec<_> = got.difference(&expected).collect();
    assert!(missing.is_empty(), "lost events: {missing:?}");
    assert!(extra.is_empty(), "unexpected events: {extra:?}");
    for event in sim.events() {
        let seq = event.seq.expect("seq field");
        assert_eq!(event.event_uid, uid(seq));
        let original: serde_json::Value = serde_json::from_slice(&record(seq).json).expect("json");
        assert_eq!(event.event, original, "event {seq} differs from the record");
    }
}

#[tokio::test]
async fn delivers_with_acknowledgement_gzip_channel_and_envelope() {
    let sim = sim().await;
    let running = start(&sim, fast_driver());
    running.push_range(1, 50);
    running.wait_for(50, Duration::from_secs(10)).await;
    assert_complete(&sim, 50);
    let stats = sim.stats();
    assert_eq!((stats.unique_events, stats.duplicates), (50, 0));
    assert!(stats.acks_confirmed >= 1);
    assert_eq!(stats.acks_issued, stats.acks_confirmed);
    let events = sim.events();
    let e = &events[0];
    assert_eq!(e.sourcetype.as_deref(), Some("nmpp:audit"));
    assert_eq!(e.index.as_deref(), Some("police_audit"));
    assert_eq!(e.host.as_deref(), Some("gw-1"));
    assert_eq!(e.source.as_deref(), Some("nmpp-gateway"));
    assert_eq!(e.kind.as_deref(), Some("record"));
    assert_eq!(e.channel.as_deref(), Some(CHANNEL));
    assert_eq!(e.time, Some(1_764_000_001.123));
    assert!(sim.requests().iter().all(|r| r.gzip && r.status == 200));
    assert_eq!(sim.channels(), vec![CHANNEL.to_owned()]);
    let status = running.now();
    assert_eq!((status.delivered, status.quarantined), (50, 0));
    assert_eq!(running.stop().await, 50);
}

#[tokio::test]
async fn checkpoints_travel_with_their_own_sourcetype() {
    let sim = sim().await;
    let running = start(&sim, fast_driver());
    running.push_range(1, 3);
    running.journal.push(crate::sink::SinkRecord::checkpoint(
        4,
        "checkpoint-4",
        time::OffsetDateTime::UNIX_EPOCH,
        3,
        "nmpp-gateway/demo\n3\nq6b…=\n\n— demo Ab12…\n",
    ));
    running.wait_for(4, Duration::from_secs(10)).await;
    let cp = sim
        .events()
        .into_iter()
        .find(|e| e.event_uid == "checkpoint-4")
        .expect("checkpoint indexed");
    assert_eq!(cp.sourcetype.as_deref(), Some("nmpp:audit:checkpoint"));
    assert_eq!(cp.kind.as_deref(), Some("checkpoint"));
    assert_eq!(cp.event["tree_size"], 3);
    running.stop().await;
}

#[tokio::test]
async fn an_ack_that_never_turns_true_is_resent() {
    let sim = sim().await;
    sim.withhold_acks(1);
    let running = start(
        &sim,
        DriverConfig {
            ack_timeout_ms: 300,
            ..fast_driver()
        },
    );
    running.push_range(1, 20);
    let started = Instant::now();
    running.wait_for(20, Duration::from_secs(10)).await;
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "delivered only after the ack timeout"
    );
    let stats = sim.stats();
    assert!(stats.events_lost > 0, "the first batch was lost: {stats:?}");
    assert_complete(&sim, 20);
    // The resend is the same events under the same uids; since the lost copy was never indexed,
    // each is indexed exactly once.
    assert_eq!(stats.duplicates, 0, "{stats:?}");
    assert!(running.now().ack_timeouts >= 1);
    let event_requests: Vec<_> = sim
        .requests()
        .into_iter()
        .filter(|r| r.status == 200)
        .collect();
    assert!(event_requests.len() >= 2, "the batch was sent again");
    running.stop().await;
}

#[tokio::test]
async fn a_failing_ack_endpoint_is_not_taken_for_success() {
    let sim = sim().await;
    sim.fail_ack_queries(5);
    let running = start(&sim, fast_driver());
    running.push_range(1, 10);
    // While the ack service fails, nothing may be committed.
    tokio::time::sleep(Duration::from_millis(60)).await;
    if sim.faults().fail_ack_queries > 0 {
        assert_eq!(running.journal.cursor("splunk_hec"), 0);
    }
    running.wait_for(10, Duration::from_secs(10)).await;
    assert_eq!(
        sim.faults().fail_ack_queries,
        0,
        "every failing query was made"
    );
    assert_complete(&sim, 10);
    running.stop().await;
}

#[tokio::test]
async fn a_restart_keeps_the_channel() {
    let sim = sim().await;
    let journal = MemoryJournal::new();
    let first = Running::start(sink(config(&sim)), fast_driver(), journal.clone(), 0);
    first.push_range(1, 10);
    first.wait_for(10, Duration::from_secs(10)).await;
    let cursor = first.stop().await;
    assert_eq!(cursor, 10);

    // "Restart": a new sink and driver from the same configuration, from the persisted cursor.
    let second = Running::start(sink(config(&sim)), fast_driver(), journal.clone(), cursor);
    second.push_range(11, 20);
    second.wait_for(20, Duration::from_secs(10)).await;
    second.stop().await;
    assert_eq!(
        sim.channels(),
        vec![CHANNEL.to_owned()],
        "one channel across restarts"
    );
    assert!(
        sim.requests()
            .iter()
            .all(|r| r.channel.as_deref() == Some(CHANNEL))
    );
    assert_complete(&sim, 20);
    assert_eq!(sim.stats().duplicates, 0, "the restart resent nothing");

    // The sink never invents a channel: without one, acknowledgement mode is a config error.
    let error = SplunkHecSink::new(SplunkHecConfig {
        channel: None,
        ..config(&sim)
    })
    .expect_err("no channel");
    assert_eq!(error.class, ErrorClass::Internal);
    assert!(error.message.starts_with("splunk_hec.channel"), "{error}");
    let built = SplunkHecSink::new(config(&sim)).expect("valid");
    assert_eq!(built.channel(), Some(CHANNEL));
    let generated = SplunkHecConfig::generate_channel();
    assert!(uuid::Uuid::parse_str(&generated).is_ok());
}

#[tokio::test]
async fn server_busy_backs_off_with_growing_spacing() {
    let sim = sim().await;
    sim.fail_next(5, HecFailure::Busy);
    let mut running = start(
        &sim,
        DriverConfig {
            retry_min_ms: 40,
            retry_max_ms: 5_000,
            ..fast_driver()
        },
    );
    running.push_range(1, 1);
    running
        .wait_state(Duration::from_secs(5), |s| {
            matches!(
                s,
                SinkState::Retrying {
                    class: ErrorClass::Throttled,
                    ..
                }
            )
        })
        .await;
    running.wait_for(1, Duration::from_secs(20)).await;
    let at: Vec<Duration> = sim.requests().iter().map(|r| r.at).collect();
    let codes: Vec<u32> = sim.requests().iter().map(|r| r.code).collect();
    assert_eq!(
        codes,
        vec![9, 9, 9, 9, 9, 0],
        "five busy answers, then success"
    );
    let gaps: Vec<Duration> = at.windows(2).map(|w| w[1] - w[0]).collect();
    // Exponential with jitter: attempt k waits in [40·2^k, 80·2^k) ms, so each gap is longer
    // than the one before, and the fifth at least eight times the first.
    for pair in gaps.windows(2) {
        assert!(pair[1] > pair[0], "spacing did not grow: {gaps:?}");
    }
    assert!(gaps[0] >= Duration::from_millis(40), "{gaps:?}");
    assert!(gaps[4] >= gaps[0] * 4, "{gaps:?}");
    assert_complete(&sim, 1);
    running.stop().await;
}

#[tokio::test]
async fn retry_after_is_honoured_on_429() {
    let sim = sim().await;
    sim.fail_next(1, HecFailure::TooManyRequests);
    sim.set_retry_after(Some(1));
    let running = start(&sim, fast_driver());
    running.push_range(1, 3);
    running.wait_for(3, Duration::from_secs(10)).await;
    let at: Vec<Duration> = sim.requests().iter().map(|r| r.at).collect();
    assert!(at[1] - at[0] >= Duration::from_secs(1), "{at:?}");
    running.stop().await;
}

#[tokio::test]
async fn bad_events_are_isolated_and_quarantined_and_the_rest_delivered() {
    let sim = sim().await;
    sim.reject_marker(Some("POISON"));
    let journal = MemoryJournal::new();
    for seq in 1..=30 {
        let marker = matches!(seq, 7 | 23).then_some("POISON");
        journal.push(record_with(seq, marker));
    }
    let running = Running::start(sink(config(&sim)), fast_driver(), journal.clone(), 0);
    running.wait_for(30, Duration::from_secs(10)).await;
    let quarantined = journal.quarantined("splunk_hec");
    assert_eq!(
        quarantined.iter().map(|q| q.seq).collect::<Vec<_>>(),
        vec![7, 23]
    );
    for q in &quarantined {
        assert_eq!((q.class, q.status), (ErrorClass::Rejected, Some(400)));
        assert!(q.reason.contains("code 6"), "{}", q.reason);
        assert!(!q.reason.contains("POISON"), "no event content in reasons");
    }
    let counts = sim.uid_counts();
    for seq in 1..=30 {
        let expected = u32::from(!matches!(seq, 7 | 23));
        assert_eq!(
            counts.get(&uid(seq)).copied().unwrap_or(0),
            expected,
            "seq {seq}"
        );
    }
    assert_eq!(running.now().quarantined, 2);
    running.stop().await;
}

#[tokio::test]
async fn an_invalid_token_halts_without_a_hot_loop_and_resumes_when_fixed() {
    let sim = sim().await;
    sim.revoke_token(true);
    let mut running = start(
        &sim,
        DriverConfig {
            halt_recheck_ms: 700,
            ..fast_driver()
        },
    );
    running.push_range(1, 5);
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
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(sim.stats().unauthorized, 1, "one attempt, then waiting");
    assert_eq!(running.journal.cursor("splunk_hec"), 0);
    sim.revoke_token(false);
    running.wait_for(5, Duration::from_secs(5)).await;
    assert_eq!(running.now().state, SinkState::Running);
    assert_complete(&sim, 5);
    running.stop().await;

    // A wrong token is refused as unauthorized too, and never appears in the error.
    let mut wrong = SplunkHecSink::new(SplunkHecConfig {
        token: Secret::new("not-the-token"),
        ..config(&sim)
    })
    .expect("valid config");
    let batch = vec![crate::sink::EncodedRecord {
        seq: 1,
        event_uid: uid(1),
        kind: crate::sink::RecordKind::Record,
        bytes: wrong.encode(&record(1)).expect("encodes"),
    }];
    let error = wrong.send(&batch).await.expect_err("403");
    assert_eq!(
        (error.class, error.status),
        (ErrorClass::Unauthorized, Some(403))
    );
    assert!(!error.message.contains("not-the-token"));
}

#[tokio::test]
async fn an_outage_under_a_steady_rate_loses_nothing() {
    let sim = sim().await;
    let running = start(&sim, fast_driver());
    // 400 events at one every 5 ms (200/s) for 2 s; the collector refuses connections for
    // 600 ms in the middle, then answers busy and 500 a few times, and withholds an ack.
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
    sim.fail_next(3, HecFailure::ServerError);
    sim.withhold_acks(1);
    producer.await.expect("producer");
    running.wait_for(400, Duration::from_secs(30)).await;
    assert_complete(&sim, 400);
    let status = running.now();
    assert_eq!(status.quarantined, 0);
    assert!(sim.stats().faults_served >= 1 || status.ack_timeouts >= 1);
    let longest_gap = sim.requests().windows(2).map(|w| w[1].at - w[0].at).max();
    assert!(
        longest_gap.is_some_and(|g| g >= Duration::from_millis(500)),
        "the outage was seen: {longest_gap:?}"
    );
    running.stop().await;
}

#[tokio::test]
async fn splunk_cloud_mode_delivers_on_200_without_acks() {
    let sim = HecSim::start(HecSimOptions {
        indexer_acks: false,
        ..HecSimOptions::default()
    })
    .await
    .expect("starts");
    let cfg = SplunkHecConfig {
        indexer_acks: false,
        channel: None,
        gzip: false,
        ..config(&sim)
    };
    let running = Running::start(sink(cfg), fast_driver(), MemoryJournal::new(), 0);
    running.push_range(1, 25);
    running.wait_for(25, Duration::from_secs(10)).await;
    assert_complete(&sim, 25);
    let stats = sim.stats();
    assert_eq!((stats.acks_issued, stats.ack_queries), (0, 0));
    assert!(sim.requests().iter().all(|r| !r.gzip));
    running.stop().await;
}

#[tokio::test]
async fn health_reports_up_unhealthy_and_refused() {
    let sim = sim().await;
    let mut hec = SplunkHecSink::new(config(&sim)).expect("valid");
    hec.health().await.expect("healthy");
    sim.set_unhealthy(true);
    let error = hec.health().await.expect_err("unhealthy");
    assert_eq!(
        (error.class, error.status),
        (ErrorClass::Upstream5xx, Some(503))
    );
    sim.set_unhealthy(false);
    sim.refuse().await;
    let error = hec.health().await.expect_err("refused");
    assert_eq!(error.class, ErrorClass::Connect);
}

#[test]
fn answers_are_classified() {
    let answer = |code: i64, n: Option<usize>| {
        Some(Answer {
            text: Some("x".into()),
            code: Some(code),
            ack_id: None,
            invalid_event_number: n,
        })
    };
    let s = |c: u16| StatusCode::from_u16(c).expect("status");
    match classify_event_answer(s(400), None, answer(6, Some(3)), true) {
        Ok(SendOutcome::Refused { first_bad, error }) => {
            assert_eq!(first_bad, Some(3));
            assert_eq!(error.class, ErrorClass::Rejected);
        }
        other => panic!("{other:?}"),
    }
    for code in [12, 13, 15] {
        assert!(matches!(
            classify_event_answer(s(400), None, answer(code, Some(0)), true),
            Ok(SendOutcome::Refused { .. })
        ));
    }
    assert!(matches!(
        classify_event_answer(s(413), None, None, true),
        Ok(SendOutcome::Refused {
            first_bad: None,
            ..
        })
    ));
    let class = |status: u16, code: i64| {
        classify_event_answer(s(status), None, answer(code, None), true)
            .expect_err("error")
            .class
    };
    assert_eq!(class(400, 7), ErrorClass::Internal, "incorrect index");
    assert_eq!(class(400, 10), ErrorClass::Internal, "channel missing");
    assert_eq!(class(400, 14), ErrorClass::Internal, "ack disabled");
    assert_eq!(class(401, 2), ErrorClass::Unauthorized);
    assert_eq!(class(403, 4), ErrorClass::Unauthorized);
    assert_eq!(class(403, 1), ErrorClass::Unauthorized);
    assert_eq!(class(503, 9), ErrorClass::Throttled);
    assert_eq!(class(429, 9), ErrorClass::Throttled);
    assert_eq!(class(500, 8), ErrorClass::Upstream5xx);
    assert_eq!(class(503, 18), ErrorClass::Upstream5xx);
    let ok = |ack: Option<u64>, acks: bool| {
        classify_event_answer(
            s(200),
            None,
            Some(Answer {
                text: Some("Success".into()),
                code: Some(0),
                ack_id: ack,
                invalid_event_number: None,
            }),
            acks,
        )
    };
    assert!(matches!(ok(Some(7), true), Ok(SendOutcome::Accepted(7))));
    assert!(matches!(ok(None, false), Ok(SendOutcome::Delivered)));
    assert_eq!(
        ok(None, true).expect_err("no ack id").class,
        ErrorClass::Internal
    );
    assert_eq!(
        classify_event_answer(s(200), None, None, true)
            .expect_err("no body")
            .class,
        ErrorClass::Protocol
    );
}

#[test]
fn configuration_defaults_secrets_and_errors() {
    let cfg: SplunkHecConfig = serde_json::from_value(serde_json::json!({
        "endpoint": "https://splunk:8088",
        "token": "s3cr3t-token",
        "channel": CHANNEL,
    }))
    .expect("valid");
    assert!(cfg.indexer_acks && cfg.gzip);
    assert_eq!(cfg.max_batch_bytes, 1_000_000);
    assert_eq!(cfg.name, "splunk_hec");
    assert!(!format!("{cfg:?}").contains("s3cr3t"));
    let sink = SplunkHecSink::new(cfg.clone()).expect("valid");
    assert!(!format!("{sink:?}").contains("s3cr3t"));
    for (bad, field) in [
        (
            SplunkHecConfig {
                endpoint: "ftp://x".into(),
                ..cfg.clone()
            },
            "splunk_hec.endpoint",
        ),
        (
            SplunkHecConfig {
                channel: Some("not-a-guid".into()),
                ..cfg.clone()
            },
            "splunk_hec.channel",
        ),
        (
            SplunkHecConfig {
                token: Secret::new(" "),
                ..cfg.clone()
            },
            "splunk_hec.token",
        ),
        (
            SplunkHecConfig {
                max_batch_bytes: 10,
                ..cfg
            },
            "splunk_hec.max_batch_bytes",
        ),
    ] {
        let error = SplunkHecSink::new(bad).expect_err("invalid");
        assert_eq!(error.class, ErrorClass::Internal);
        assert!(error.message.starts_with(field), "{error}");
        assert!(!error.message.contains("s3cr3t"));
    }
}

#[test]
fn encoding_rejects_what_is_not_one_json_object() {
    let sink = SplunkHecSink::new(SplunkHecConfig::new("http://x", "t", CHANNEL)).expect("valid");
    let mut r = record(1);
    for bad in [&b"[1]"[..], b"{\"a\":1} {\"b\":2}", b"{\"a\":", b""] {
        r.json = bytes::Bytes::copy_from_slice(bad);
        assert_eq!(
            sink.encode(&r).expect_err("not an object").class,
            ErrorClass::Mapping
        );
    }
}
