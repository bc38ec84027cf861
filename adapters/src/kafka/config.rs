//! Typed configuration of the Kafka sink (STYLE.md §9).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::athena::Secret;
use crate::sink::DriverConfig;

/// Which topic the audit stream goes to, and how to reach the cluster.
///
/// ```toml
/// type = "kafka"
/// bootstrap_servers = "kafka-1:9092,kafka-2:9092"
/// topic = "nmpp.audit"
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Name of this sink: the key of its cursor, and its label in logs and health. Default
    /// `kafka`.
    #[serde(default = "default_name")]
    pub name: String,
    /// `bootstrap.servers`: comma-separated `host:port` list.
    pub bootstrap_servers: String,
    /// The topic. It must exist (the sink does not create topics).
    pub topic: String,
    /// `client.id`. Default `nmpp-gateway`.
    #[serde(default = "default_client_id")]
    pub client_id: String,
    /// Sends every record to this partition, so the topic holds the ledger in total order.
    /// Unset, the partition is chosen from the key (the ledger sequence), and order holds per
    /// key and per partition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<i32>,
    /// `message.timeout.ms`: how long the producer keeps trying one record before reporting it
    /// failed (the driver then resends the batch). Default 30000.
    #[serde(default = "default_message_timeout_ms")]
    pub message_timeout_ms: u64,
    /// `request.timeout.ms`. Default 10000.
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// `linger.ms`: how long the producer waits to fill a produce request. Default 5.
    #[serde(default = "default_linger_ms")]
    pub linger_ms: u64,
    /// `compression.type` (`none`, `gzip`, `lz4`, `snappy`, `zstd`; `zstd` is not compiled in).
    /// Default `none`.
    #[serde(default = "default_compression")]
    pub compression: String,
    /// Other librdkafka producer properties (e.g. `security.protocol`, `sasl.mechanism`,
    /// `sasl.username`). `enable.idempotence` and `acks` cannot be overridden.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<String, String>,
    /// `sasl.password`, kept out of `properties` so it never prints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sasl_password: Option<Secret>,
    /// How the driver batches, retries and waits.
    #[serde(default)]
    pub driver: DriverConfig,
}

fn default_name() -> String {
    "kafka".to_owned()
}

fn default_client_id() -> String {
    "nmpp-gateway".to_owned()
}

fn default_message_timeout_ms() -> u64 {
    30_000
}

fn default_request_timeout_ms() -> u64 {
    10_000
}

fn default_linger_ms() -> u64 {
    5
}

fn default_compression() -> String {
    "none".to_owned()
}

impl KafkaConfig {
    /// A configuration for `topic` on `bootstrap_servers` with every other field at its default.
    pub fn new(bootstrap_servers: impl Into<String>, topic: impl Into<String>) -> Self {
        Self {
            name: default_name(),
            bootstrap_servers: bootstrap_servers.into(),
            topic: topic.into(),
            client_id: default_client_id(),
            partition: None,
            message_timeout_ms: default_message_timeout_ms(),
            request_timeout_ms: default_request_timeout_ms(),
            linger_ms: default_linger_ms(),
            compression: default_compression(),
            properties: BTreeMap::new(),
            sasl_password: None,
            driver: DriverConfig::default(),
        }
    }
}
