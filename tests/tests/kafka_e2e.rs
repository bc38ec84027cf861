//! The Kafka audit sink end to end: the real `nmpp-gateway` binary, configured with a Kafka
//! sink pointed at a real Kafka-protocol broker (tansu, `fixtures::tansu`), takes submissions;
//! a consumer reads the topic and finds every audit record of the ledger, keyed by its ledger
//! sequence, in sequence order, each with its event uid (a resend repeats a record under the
//! same key and uid, never another one).

use adapters::kafka::KafkaConfig;
use adapters::sink::{AuditSinkConfig, DriverConfig};
use fixtures::athena::{AthenaSim, AthenaSimOptions};
use fixtures::tansu::{TansuBroker, TansuOptions};
use nmpp_tests::{ProcessGateway, sdm, secs};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const TOPIC: &str = "nmpp.audit";

/// One consumed message: (offset, key, event_uid header, kind header).
type Consumed = (i64, u64, String, String);

/// Reads partition 0 from the beginning until every key in `1..=want` was seen (or `timeout`).
fn consume(bootstrap: &str, want: u64, timeout: Duration) -> Vec<Consumed> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "nmpp-e2e-reader")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(TOPIC, 0, Offset::Beginning)
        .expect("partition");
    consumer.assign(&assignment).expect("assign");
    let mut out = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline && !(1..=want).all(|s| seen.contains(&s)) {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                let key: u64 = std::str::from_utf8(m.key().expect("a key"))
                    .expect("utf-8 key")
                    .parse()
                    .expect("the key is a ledger sequence number");
                let headers = m.headers().expect("headers");
                let header = |name: &str| {
                    headers
                        .iter()
                        .find(|h| h.key == name)
                        .and_then(|h| h.value)
                        .map(|v| String::from_utf8_lossy(v).into_owned())
                        .unwrap_or_else(|| panic!("header {name} missing on key {key}"))
                };
                seen.insert(key);
                out.push((m.offset(), key, header("event_uid"), header("kind")));
            }
            Some(Err(e)) => panic!("consumer error: {e}"),
            None => {}
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_audit_record_reaches_kafka_keyed_by_sequence_in_order() {
    let broker = TansuBroker::start(TansuOptions::default())
        .await
        .expect("starting tansu (see fixtures/src/tansu.rs for where the binary comes from)");
    broker.create_topic(TOPIC, 1).await.expect("topic");
    let sim = AthenaSim::start(AthenaSimOptions::default())
        .await
        .expect("athena simulator");
    let bootstrap = broker.bootstrap();
    let mut gw = ProcessGateway::with_config(&sim.base_url(), |c| {
        let mut k = KafkaConfig::new(bootstrap.clone(), TOPIC);
        // One partition: the topic holds the ledger in total order.
        k.partition = Some(0);
        k.driver = DriverConfig {
            retry_min_ms: 50,
            retry_max_ms: 400,
            idle_poll_ms: 50,
            ..DriverConfig::default()
        };
        c.audit.sinks = vec![AuditSinkConfig::Kafka(k)];
        c.audit.checkpoint_every_records = 10;
    });
    gw.start().await;
    let api = gw.api();
    for _ in 0..5 {
        // A fresh submission id (a UUID) each time.
        let doc = sdm::online_crime_report();
        let a = api.submit_ok(&doc).await;
        api.wait_for_status(&a.exchange_id, "delivered", secs(30))
            .await;
        api.exchange(&a.exchange_id).await;
    }

    // What the ledger holds now: every one of these must arrive.
    let url = format!("sqlite://{}", gw.journal_path().display());
    let j = replay::open(&url, replay::OpenOptions::default())
        .await
        .unwrap();
    // The checkpointer signs in the background (every 10 records, checked on its own timer):
    // wait for the first checkpoint record, then take what the ledger holds.
    let ledger = nmpp_tests::eventually("a signed checkpoint in the ledger", secs(30), || async {
        let ledger = j
            .audit_records(1, 100_000)
            .await
            .map_err(|e| e.to_string())?;
        if ledger.iter().any(|r| r.event.action == "ledger.checkpoint") {
            Ok(ledger)
        } else {
            Err(format!("{} records, no checkpoint yet", ledger.len()))
        }
    })
    .await;
    let n = ledger.len() as u64;
    assert!(n > 20, "only {n} audit records");
    assert_eq!(ledger.last().unwrap().seq, n, "the ledger is gap-free");

    let b = broker.bootstrap();
    let got = tokio::task::spawn_blocking(move || consume(&b, n, Duration::from_secs(60)))
        .await
        .unwrap();

    // Every record, under its sequence number, with its own event uid and kind.
    let mut first: BTreeMap<u64, (i64, String, String)> = BTreeMap::new();
    for (offset, key, uid, kind) in &got {
        let e = first
            .entry(*key)
            .or_insert_with(|| (*offset, uid.clone(), kind.clone()));
        assert_eq!(
            (&e.1, &e.2),
            (uid, kind),
            "a second copy of record {key} must be the same record"
        );
    }
    let missing: Vec<u64> = (1..=n).filter(|s| !first.contains_key(s)).collect();
    assert!(missing.is_empty(), "records never arrived: {missing:?}");
    for rec in &ledger {
        let (_, uid, kind) = &first[&rec.seq];
        assert_eq!(uid, &rec.event.event_uid.to_string(), "record {}", rec.seq);
        let want = if rec.event.action == "ledger.checkpoint" {
            "checkpoint"
        } else {
            "record"
        };
        assert_eq!(kind, want, "record {}", rec.seq);
    }
    // In order: the first copy of each record comes after the first copy of the one before.
    let offsets: Vec<i64> = (1..=n).map(|s| first[&s].0).collect();
    assert!(
        offsets.windows(2).all(|w| w[0] < w[1]),
        "records out of sequence order in the topic: {offsets:?}"
    );
    let status = gw.terminate(secs(30)).await;
    assert!(status.success(), "{status}");
}
