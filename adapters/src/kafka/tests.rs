//! The Kafka sink and its driver against a real Kafka-protocol broker (tansu, started by
//! `fixtures::tansu`), read back with an rdkafka consumer.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use fixtures::tansu::{TansuBroker, TansuOptions};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::client::classify_for_test;
use super::{KafkaConfig, KafkaSink};
use crate::ErrorClass;
use crate::sink::tests::{Running, fast_driver, record, uid};
use crate::sink::{AuditSink, DriverConfig, MemoryJournal};

const TOPIC: &str = "nmpp.audit";

async fn broker(durable: bool, partitions: u32) -> TansuBroker {
    let broker = TansuBroker::start(TansuOptions { durable })
        .await
        .expect("tansu starts (see fixtures::tansu for how it is found or built)");
    broker
        .create_topic(TOPIC, partitions)
        .await
        .expect("topic created");
    broker
}

fn config(broker: &TansuBroker) -> KafkaConfig {
    KafkaConfig {
        message_timeout_ms: 5_000,
        request_timeout_ms: 2_000,
        ..KafkaConfig::new(broker.bootstrap(), TOPIC)
    }
}

async fn sink(cfg: KafkaConfig) -> Box<dyn AuditSink> {
    Box::new(KafkaSink::new(cfg).await.expect("valid config"))
}

/// One consumed message.
#[derive(Debug, Clone)]
struct Consumed {
    partition: i32,
    offset: i64,
    key: u64,
    event_uid: String,
    kind: String,
    value: Vec<u8>,
}

/// Reads every partition of the topic from the beginning until `want` distinct keys were seen
/// (or `timeout`), then a little longer to catch duplicates.
fn consume(bootstrap: &str, partitions: u32, want: usize, timeout: Duration) -> Vec<Consumed> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "nmpp-test-reader")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    let mut assignment = TopicPartitionList::new();
    for p in 0..partitions {
        assignment
            .add_partition_offset(TOPIC, p as i32, Offset::Beginning)
            .expect("partition");
    }
    consumer.assign(&assignment).expect("assign");
    let mut out = Vec::new();
    let mut keys = HashSet::new();
    let deadline = Instant::now() + timeout;
    let mut settle: Option<Instant> = None;
    while Instant::now() < deadline && settle.is_none_or(|s| Instant::now() < s) {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                let key: u64 = std::str::from_utf8(m.key().expect("key"))
                    .expect("utf-8 key")
                    .parse()
                    .expect("numeric key");
                let headers = m.headers().expect("headers");
                let header = |name: &str| {
                    headers
                        .iter()
                        .find(|h| h.key == name)
                        .and_then(|h| h.value)
                        .map(|v| String::from_utf8_lossy(v).into_owned())
                        .expect("header present")
                };
                keys.insert(key);
                out.push(Consumed {
                    partition: m.partition(),
                    offset: m.offset(),
                    key,
                    event_uid: header("event_uid"),
                    kind: header("kind"),
                    value: m.payload().expect("value").to_vec(),
                });
                if keys.len() >= want && settle.is_none() {
                    settle = Some(Instant::now() + Duration::from_millis(500));
                }
            }
            Some(Err(e)) => panic!("consumer error: {e}"),
            None => {}
        }
    }
    out
}

/// Every record `1..=n` is present with its exact value and uid, nothing else is, and within
/// each partition the first copies of the records appear in increasing sequence.
fn assert_complete_and_ordered(messages: &[Consumed], n: u64) {
    let keys: HashSet<u64> = messages.iter().map(|m| m.key).collect();
    let missing: Vec<u64> = (1..=n).filter(|k| !keys.contains(k)).collect();
    assert!(missing.is_empty(), "lost records: {missing:?}");
    assert!(keys.iter().all(|k| (1..=n).contains(k)), "unexpected keys");
    for m in messages {
        assert_eq!(m.event_uid, uid(m.key), "a duplicate carries the same uid");
        assert_eq!(m.value, record(m.key).json.to_vec(), "value of {}", m.key);
        assert_eq!(m.kind, "record");
    }
    let mut by_partition: BTreeMap<i32, Vec<&Consumed>> = BTreeMap::new();
    for m in messages {
        by_partition.entry(m.partition).or_default().push(m);
    }
    for (partition, mut list) in by_partition {
        list.sort_by_key(|m| m.offset);
        let mut seen = HashSet::new();
        let firsts: Vec<u64> = list
            .iter()
            .filter(|m| seen.insert(m.key))
            .map(|m| m.key)
            .collect();
        assert!(
            firsts.windows(2).all(|w| w[0] < w[1]),
            "partition {partition} out of order: {firsts:?}"
        );
    }
}

#[tokio::test]
async fn every_record_is_delivered_in_order_per_key_and_partition() {
    let broker = broker(false, 3).await;
    let running = Running::start(
        sink(config(&broker)).await,
        fast_driver(),
        MemoryJournal::new(),
        0,
    );
    running.push_range(1, 600);
    running.wait_for(600, Duration::from_secs(60)).await;
    let bootstrap = broker.bootstrap();
    let messages =
        tokio::task::spawn_blocking(move || consume(&bootstrap, 3, 600, Duration::from_secs(30)))
            .await
            .expect("consumer");
    assert_complete_and_ordered(&messages, 600);
    assert_eq!(messages.len(), 600, "no duplicates without faults");
    let partitions: HashSet<i32> = messages.iter().map(|m| m.partition).collect();
    assert!(
        partitions.len() > 1,
        "keys spread over partitions: {partitions:?}"
    );
    assert_eq!(running.now().delivered, 600);
    running.stop().await;
}

#[tokio::test]
async fn a_pinned_partition_holds_the_ledger_in_total_order() {
    let broker = broker(false, 3).await;
    let cfg = KafkaConfig {
        partition: Some(1),
        ..config(&broker)
    };
    let running = Running::start(sink(cfg).await, fast_driver(), MemoryJournal::new(), 0);
    running.push_range(1, 200);
    running.wait_for(200, Duration::from_secs(60)).await;
    let bootstrap = broker.bootstrap();
    let messages =
        tokio::task::spawn_blocking(move || consume(&bootstrap, 3, 200, Duration::from_secs(30)))
            .await
            .expect("consumer");
    assert!(messages.iter().all(|m| m.partition == 1));
    let keys: Vec<u64> = messages.iter().map(|m| m.key).collect();
    assert_eq!(keys, (1..=200).collect::<Vec<_>>());
    running.stop().await;
}

#[tokio::test]
async fn a_broker_outage_under_a_steady_rate_loses_nothing() {
    let mut broker = broker(true, 3).await;
    let running = Running::start(
        sink(KafkaConfig {
            message_timeout_ms: 2_000,
            request_timeout_ms: 1_000,
            ..config(&broker)
        })
        .await,
        DriverConfig {
            retry_max_ms: 500,
            ..fast_driver()
        },
        MemoryJournal::new(),
        0,
    );
    let journal = running.journal.clone();
    let producer = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(5));
        for seq in 1..=600 {
            tick.tick().await;
            journal.push(record(seq));
        }
    });
    // Kill the broker once delivery is under way.
    assert!(
        running
            .journal
            .wait_for_cursor("kafka", 50, Duration::from_secs(20))
            .await,
        "delivering before the outage: {:?}",
        running.now()
    );
    let delivered_before = running.now().delivered;
    broker.stop().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!broker.is_running());
    let during = running.journal.cursor("kafka");
    broker.restart().await.expect("broker restarts");
    producer.await.expect("producer");
    running.wait_for(600, Duration::from_secs(90)).await;
    assert!(delivered_before > 0, "delivering before the outage");
    assert!(during < 600, "the outage held the cursor back");
    let bootstrap = broker.bootstrap();
    let messages =
        tokio::task::spawn_blocking(move || consume(&bootstrap, 3, 600, Duration::from_secs(30)))
            .await
            .expect("consumer");
    assert_complete_and_ordered(&messages, 600);
    assert_eq!(running.now().quarantined, 0);
    running.stop().await;
}

#[tokio::test]
async fn health_sees_the_topic_and_the_outage() {
    let mut broker = broker(false, 1).await;
    let mut kafka = KafkaSink::new(config(&broker)).await.expect("valid");
    kafka.health().await.expect("healthy");
    let mut missing = KafkaSink::new(KafkaConfig {
        topic: "no.such.topic".into(),
        ..config(&broker)
    })
    .await
    .expect("valid");
    assert!(missing.health().await.is_err());
    broker.stop().await;
    let error = kafka.health().await.expect_err("down");
    assert!(
        error.is_retryable() || error.class == ErrorClass::Internal,
        "{error}"
    );
}

#[test]
fn errors_are_classified() {
    let e = |code| KafkaError::MessageProduction(code);
    assert_eq!(
        classify_for_test(&e(RDKafkaErrorCode::MessageSizeTooLarge)),
        Ok(ErrorClass::Rejected)
    );
    let class = |code| classify_for_test(&e(code)).expect_err("not a refusal");
    assert_eq!(
        class(RDKafkaErrorCode::MessageTimedOut),
        ErrorClass::Timeout
    );
    assert_eq!(class(RDKafkaErrorCode::AllBrokersDown), ErrorClass::Connect);
    assert_eq!(class(RDKafkaErrorCode::QueueFull), ErrorClass::Throttled);
    assert_eq!(
        class(RDKafkaErrorCode::NotEnoughReplicas),
        ErrorClass::Upstream5xx
    );
    assert_eq!(
        class(RDKafkaErrorCode::TopicAuthorizationFailed),
        ErrorClass::Unauthorized
    );
    assert_eq!(
        class(RDKafkaErrorCode::UnknownTopicOrPartition),
        ErrorClass::Internal
    );
    assert_eq!(
        class(RDKafkaErrorCode::OutOfOrderSequenceNumber),
        ErrorClass::Protocol
    );
}

#[tokio::test]
async fn configuration_defaults_secrets_and_errors() {
    let cfg: KafkaConfig = serde_json::from_value(serde_json::json!({
        "bootstrap_servers": "127.0.0.1:9092",
        "topic": "nmpp.audit",
        "properties": { "security.protocol": "sasl_plaintext", "sasl.mechanism": "PLAIN", "sasl.username": "gw" },
        "sasl_password": "kafka-s3cret",
    }))
    .expect("valid");
    assert_eq!((cfg.linger_ms, cfg.message_timeout_ms), (5, 30_000));
    assert!(!format!("{cfg:?}").contains("kafka-s3cret"));
    assert!(
        !serde_json::to_string(&cfg)
            .expect("json")
            .contains("kafka-s3cret")
    );
    let reserved = KafkaSink::new(KafkaConfig {
        properties: [("enable.idempotence".to_owned(), "false".to_owned())].into(),
        ..KafkaConfig::new("127.0.0.1:9092", "t")
    })
    .await
    .expect_err("reserved");
    assert_eq!(reserved.class, ErrorClass::Internal);
    assert!(
        reserved
            .message
            .starts_with("kafka.properties.enable.idempotence"),
        "{reserved}"
    );
    let empty = KafkaSink::new(KafkaConfig::new(" ", "t"))
        .await
        .expect_err("empty");
    assert!(
        empty.message.starts_with("kafka.bootstrap_servers"),
        "{empty}"
    );
}
