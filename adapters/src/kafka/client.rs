//! The idempotent producer, delivery reports, and the classification of every failure.
//!
//! A batch is delivered only when **every** record in it has a successful delivery report; if
//! any fails, the driver sends the whole batch again (records already stored then appear twice,
//! with the same key and `event_uid` header). With `enable.idempotence=true` librdkafka itself
//! retries within `message.timeout.ms` without duplicating or reordering.
//!
//! | librdkafka error | class |
//! |---|---|
//! | message timed out, request timed out | `timeout` |
//! | all brokers down, transport failure | `connect` |
//! | queue full, throttling quota | `throttled` |
//! | not enough replicas, leader not available, not leader | `upstream_5xx` |
//! | message too large | refused: the driver isolates and quarantines it |
//! | topic/cluster authorization, SASL authentication | `unauthorized` |
//! | unknown topic or partition, invalid configuration | `internal` |
//! | a fatal idempotent-producer error | `protocol` |
//! | anything else (e.g. an unknown broker error) | `protocol` (retryable) |
//!
//! After a failed batch of class `protocol`, `timeout`, `connect` or `upstream_5xx`, or a fatal
//! error, the producer is replaced by a new one (new producer id) before the driver retries.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

use super::config::KafkaConfig;
use super::mapping;
use crate::sink::{AuditSink, BatchLimits, EncodedRecord, SendOutcome, SinkRecord, elapsed_ms};
use crate::{AdapterError, ErrorClass};

/// Properties the sink sets itself and configuration may not override.
const RESERVED: &[&str] = &[
    "bootstrap.servers",
    "enable.idempotence",
    "acks",
    "request.required.acks",
    "max.in.flight.requests.per.connection",
    "message.timeout.ms",
    "delivery.timeout.ms",
    "sasl.password",
];

/// A Kafka audit sink: one idempotent producer.
pub struct KafkaSink {
    name: String,
    topic: String,
    partition: Option<i32>,
    client_config: ClientConfig,
    producer: FutureProducer,
    metadata_timeout: Duration,
}

impl std::fmt::Debug for KafkaSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSink")
            .field("name", &self.name)
            .field("topic", &self.topic)
            .field("partition", &self.partition)
            .finish_non_exhaustive()
    }
}

fn config_error(name: &str, field: &str, rule: &str) -> AdapterError {
    AdapterError::new(ErrorClass::Internal, format!("{name}.{field}: {rule}"))
}

impl KafkaSink {
    /// Checks `cfg` and creates the producer (which connects in the background). Every
    /// configuration problem is an [`ErrorClass::Internal`] error naming the field.
    pub async fn new(cfg: KafkaConfig) -> Result<Self, AdapterError> {
        let name = cfg.name.trim().to_owned();
        if name.is_empty() {
            return Err(config_error("kafka", "name", "must not be empty"));
        }
        if cfg.bootstrap_servers.trim().is_empty() {
            return Err(config_error(
                &name,
                "bootstrap_servers",
                "must not be empty",
            ));
        }
        if cfg.topic.trim().is_empty() {
            return Err(config_error(&name, "topic", "must not be empty"));
        }
        if cfg.partition.is_some_and(|p| p < 0) {
            return Err(config_error(&name, "partition", "must not be negative"));
        }
        if cfg.message_timeout_ms == 0 || cfg.request_timeout_ms == 0 {
            return Err(config_error(
                &name,
                "message_timeout_ms",
                "timeouts must be greater than 0",
            ));
        }
        if let Some(key) = cfg
            .properties
            .keys()
            .find(|k| RESERVED.contains(&k.as_str()))
        {
            return Err(config_error(
                &name,
                &format!("properties.{key}"),
                "is set by the sink and cannot be overridden",
            ));
        }
        let mut client = ClientConfig::new();
        client
            .set("bootstrap.servers", cfg.bootstrap_servers.trim())
            .set("client.id", &cfg.client_id)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("message.timeout.ms", cfg.message_timeout_ms.to_string())
            .set("request.timeout.ms", cfg.request_timeout_ms.to_string())
            .set("linger.ms", cfg.linger_ms.to_string())
            .set("compression.type", &cfg.compression);
        for (key, value) in &cfg.properties {
            client.set(key, value);
        }
        if let Some(password) = &cfg.sasl_password {
            client.set("sasl.password", password.expose());
        }
        let producer = create(&name, &client)?;
        Ok(Self {
            topic: cfg.topic.trim().to_owned(),
            partition: cfg.partition,
            client_config: client,
            producer,
            metadata_timeout: Duration::from_millis(cfg.request_timeout_ms.min(10_000)),
            name,
        })
    }

    /// Replaces the producer after a failed batch. An idempotent producer whose messages failed
    /// (timed out, or refused with an error the broker does not explain) has to re-establish its
    /// producer id and sequence with the broker before it can continue; a new producer does that
    /// from scratch and works with every broker, where the in-place epoch bump (KIP-360) is not
    /// supported by all of them (tansu 0.6 stalled in tests without this). A fatal error always
    /// needs it. What the old producer had not delivered is resent by the driver (at least
    /// once, same keys).
    fn recreate_if_broken(&mut self, error: &AdapterError) {
        let fatal = self.producer.client().fatal_error();
        let in_doubt = matches!(
            error.class,
            ErrorClass::Protocol
                | ErrorClass::Timeout
                | ErrorClass::Connect
                | ErrorClass::Upstream5xx
        );
        if fatal.is_some() || in_doubt {
            tracing::warn!(
                sink = %self.name,
                fatal = ?fatal,
                class = %error.class,
                "kafka batch failed; replacing the producer"
            );
            match create(&self.name, &self.client_config) {
                Ok(producer) => self.producer = producer,
                Err(error) => tracing::error!(
                    sink = %self.name,
                    error = %error,
                    "could not recreate the kafka producer"
                ),
            }
        }
    }

    async fn produce(&self, batch: &[EncodedRecord]) -> Result<SendOutcome, AdapterError> {
        let mut reports = Vec::with_capacity(batch.len());
        for record in batch {
            let key = mapping::key(record.seq);
            let headers = OwnedHeaders::new()
                .insert(Header {
                    key: mapping::EVENT_UID_HEADER,
                    value: Some(record.event_uid.as_bytes()),
                })
                .insert(Header {
                    key: mapping::KIND_HEADER,
                    value: Some(record.kind.as_str().as_bytes()),
                });
            let mut message = FutureRecord::to(&self.topic)
                .key(key.as_bytes())
                .payload(&record.bytes[..])
                .headers(headers);
            if let Some(partition) = self.partition {
                message = message.partition(partition);
            }
            loop {
                match self.producer.send_result(message) {
                    Ok(report) => {
                        reports.push(report);
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        // The local queue is full: let earlier messages go first.
                        message = back;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Err((error, _)) => return classify(&error).map(|r| r.into_outcome()),
                }
            }
        }
        let mut first_error: Option<(usize, KafkaError)> = None;
        for (index, report) in futures::future::join_all(reports)
            .await
            .into_iter()
            .enumerate()
        {
            match report {
                Ok(Ok(_delivery)) => {}
                Ok(Err((error, _message))) => {
                    if first_error.is_none() {
                        first_error = Some((index, error));
                    }
                }
                Err(_canceled) => {
                    return Err(AdapterError::new(
                        ErrorClass::Internal,
                        "kafka producer dropped a delivery report",
                    ));
                }
            }
        }
        match first_error {
            None => Ok(SendOutcome::Delivered),
            Some((index, error)) => match classify(&error)? {
                Refusal::TooLarge(error) => Ok(SendOutcome::Refused {
                    first_bad: Some(index),
                    error,
                }),
            },
        }
    }
}

fn create(name: &str, client: &ClientConfig) -> Result<FutureProducer, AdapterError> {
    client.create().map_err(|e| {
        AdapterError::new(
            ErrorClass::Internal,
            format!("{name}: could not create the kafka producer: {e}"),
        )
    })
}

/// A failure that refuses the record itself rather than the attempt.
enum Refusal {
    TooLarge(AdapterError),
}

impl Refusal {
    fn into_outcome(self) -> SendOutcome {
        match self {
            Refusal::TooLarge(error) => SendOutcome::Refused {
                first_bad: None,
                error,
            },
        }
    }
}

/// Classifies a producer error: `Ok` for a refusal of the record, `Err` for everything else.
fn classify(error: &KafkaError) -> Result<Refusal, AdapterError> {
    let code = error.rdkafka_error_code();
    let message = format!("kafka: {error}");
    let class = match code {
        Some(RDKafkaErrorCode::MessageSizeTooLarge | RDKafkaErrorCode::InvalidMessageSize) => {
            return Ok(Refusal::TooLarge(AdapterError::new(
                ErrorClass::Rejected,
                message,
            )));
        }
        Some(RDKafkaErrorCode::MessageTimedOut | RDKafkaErrorCode::RequestTimedOut) => {
            ErrorClass::Timeout
        }
        Some(
            RDKafkaErrorCode::AllBrokersDown
            | RDKafkaErrorCode::BrokerTransportFailure
            | RDKafkaErrorCode::NetworkException,
        ) => ErrorClass::Connect,
        Some(RDKafkaErrorCode::QueueFull | RDKafkaErrorCode::ThrottlingQuotaExceeded) => {
            ErrorClass::Throttled
        }
        Some(
            RDKafkaErrorCode::NotEnoughReplicas
            | RDKafkaErrorCode::NotEnoughReplicasAfterAppend
            | RDKafkaErrorCode::LeaderNotAvailable
            | RDKafkaErrorCode::NotLeaderForPartition
            | RDKafkaErrorCode::BrokerNotAvailable,
        ) => ErrorClass::Upstream5xx,
        Some(
            RDKafkaErrorCode::TopicAuthorizationFailed
            | RDKafkaErrorCode::ClusterAuthorizationFailed
            | RDKafkaErrorCode::SaslAuthenticationFailed
            | RDKafkaErrorCode::Authentication
            | RDKafkaErrorCode::TransactionalIdAuthorizationFailed,
        ) => ErrorClass::Unauthorized,
        Some(
            RDKafkaErrorCode::UnknownTopicOrPartition
            | RDKafkaErrorCode::UnknownTopic
            | RDKafkaErrorCode::UnknownPartition
            | RDKafkaErrorCode::InvalidConfig
            | RDKafkaErrorCode::InvalidArgument,
        ) => ErrorClass::Internal,
        _ => ErrorClass::Protocol,
    };
    Err(AdapterError::new(class, message))
}

#[async_trait]
impl AuditSink for KafkaSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn limits(&self) -> BatchLimits {
        BatchLimits {
            // Bounds only the memory a batch holds; each record is its own message, whose size
            // the broker checks (message.max.bytes).
            max_bytes: 16 * 1024 * 1024,
            max_records: 10_000,
            per_record_overhead: 0,
            per_batch_overhead: 0,
        }
    }

    fn encode(&self, record: &SinkRecord) -> Result<Bytes, AdapterError> {
        mapping::value(record)
    }

    #[tracing::instrument(name = "kafka.send", skip_all, fields(sink = %self.name, records = batch.len()))]
    async fn send(&mut self, batch: &[EncodedRecord]) -> Result<SendOutcome, AdapterError> {
        let started = Instant::now();
        let outcome = self.produce(batch).await;
        if let Err(error) = &outcome {
            tracing::debug!(
                class = %error.class,
                elapsed_ms = elapsed_ms(started),
                error = %error.message,
                "kafka batch not delivered"
            );
            let error = error.clone();
            self.recreate_if_broken(&error);
        }
        outcome
    }

    #[tracing::instrument(name = "kafka.health", skip_all, fields(sink = %self.name))]
    async fn health(&mut self) -> Result<(), AdapterError> {
        let producer = self.producer.clone();
        let topic = self.topic.clone();
        let timeout = self.metadata_timeout;
        let metadata = tokio::task::spawn_blocking(move || {
            producer.client().fetch_metadata(Some(&topic), timeout)
        })
        .await
        .map_err(|e| AdapterError::new(ErrorClass::Internal, format!("kafka health: {e}")))?;
        let metadata = metadata.map_err(|e| match classify(&e) {
            Err(error) => error,
            Ok(Refusal::TooLarge(error)) => error,
        })?;
        let topic = metadata
            .topics()
            .iter()
            .find(|t| t.name() == self.topic)
            .ok_or_else(|| {
                AdapterError::new(ErrorClass::Internal, "kafka: topic missing from metadata")
            })?;
        if let Some(error) = topic.error() {
            let code: RDKafkaErrorCode = error.into();
            return Err(AdapterError::new(
                if code == RDKafkaErrorCode::UnknownTopicOrPartition {
                    ErrorClass::Internal
                } else {
                    ErrorClass::Upstream5xx
                },
                format!("kafka: topic {}: {code}", self.topic),
            ));
        }
        if topic.partitions().is_empty() {
            return Err(AdapterError::new(
                ErrorClass::Internal,
                format!("kafka: topic {} has no partitions", self.topic),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
pub(super) fn classify_for_test(error: &KafkaError) -> Result<ErrorClass, ErrorClass> {
    match classify(error) {
        Ok(Refusal::TooLarge(e)) => Ok(e.class),
        Err(e) => Err(e.class),
    }
}
