//! Typed configuration of the Splunk HEC sink (STYLE.md §9).

use serde::{Deserialize, Serialize};

use crate::athena::Secret;
use crate::sink::DriverConfig;

/// How to reach one Splunk HTTP Event Collector.
///
/// ```toml
/// type = "splunk_hec"
/// endpoint = "https://splunk.force.example:8088"
/// token = "…"                       # the HEC token; never printed
/// channel = "0f5d6e1c-…"            # required with indexer_acks; keep it stable across restarts
/// index = "police_audit"            # optional: the token's default index otherwise
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplunkHecConfig {
    /// Name of this sink: the key of its cursor, and its label in logs and health. Default
    /// `splunk_hec`.
    #[serde(default = "default_name")]
    pub name: String,
    /// The HEC base URL, scheme and authority with an optional path prefix, e.g.
    /// `https://splunk:8088`. Requests go to `{endpoint}/services/collector/…`.
    pub endpoint: String,
    /// The HEC token, sent as `Authorization: Splunk <token>`. Never printed or serialised.
    pub token: Secret,
    /// Indexer acknowledgement (Splunk Enterprise): an event counts as delivered only once its
    /// ackId reports true. Turn off for Splunk Cloud, which has none: delivered on `200`.
    /// Default true.
    #[serde(default = "yes")]
    pub indexer_acks: bool,
    /// The channel GUID sent as `X-Splunk-Request-Channel`. Required with `indexer_acks`. It must
    /// survive restarts: set it here, or let the gateway generate one once
    /// ([`SplunkHecConfig::generate_channel`]), persist it, and fill it in before building.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// Splunk index for the events; unset, the token's default index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<String>,
    /// The envelope's `host`; unset, none is sent (Splunk uses the sender's address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The envelope's `source`. Default `nmpp-gateway`.
    #[serde(default = "default_source")]
    pub source: String,
    /// The `sourcetype` of audit records. Default `nmpp:audit`.
    #[serde(default = "default_sourcetype")]
    pub sourcetype: String,
    /// The `sourcetype` of signed checkpoints. Default `nmpp:audit:checkpoint`.
    #[serde(default = "default_checkpoint_sourcetype")]
    pub checkpoint_sourcetype: String,
    /// Gzip request bodies. Default true.
    #[serde(default = "yes")]
    pub gzip: bool,
    /// Largest request body before compression, in bytes. Default 1,000,000 (Splunk Cloud's
    /// recommended maximum is 1 MB).
    #[serde(default = "default_max_batch_bytes")]
    pub max_batch_bytes: usize,
    /// Longest wait for a complete answer, in milliseconds. Default 30000.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Longest wait to connect, in milliseconds. Default 5000.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// How the driver batches, retries and waits for acknowledgements.
    #[serde(default)]
    pub driver: DriverConfig,
}

fn yes() -> bool {
    true
}

fn default_name() -> String {
    "splunk_hec".to_owned()
}

fn default_source() -> String {
    "nmpp-gateway".to_owned()
}

fn default_sourcetype() -> String {
    "nmpp:audit".to_owned()
}

fn default_checkpoint_sourcetype() -> String {
    "nmpp:audit:checkpoint".to_owned()
}

fn default_max_batch_bytes() -> usize {
    1_000_000
}

fn default_timeout_ms() -> u64 {
    30_000
}

fn default_connect_timeout_ms() -> u64 {
    5_000
}

impl SplunkHecConfig {
    /// A configuration for `endpoint` and `token` with indexer acknowledgement on `channel` and
    /// every other field at its default.
    pub fn new(endpoint: impl Into<String>, token: impl Into<Secret>, channel: &str) -> Self {
        Self {
            name: default_name(),
            endpoint: endpoint.into(),
            token: token.into(),
            indexer_acks: true,
            channel: Some(channel.to_owned()),
            index: None,
            host: None,
            source: default_source(),
            sourcetype: default_sourcetype(),
            checkpoint_sourcetype: default_checkpoint_sourcetype(),
            gzip: true,
            max_batch_bytes: default_max_batch_bytes(),
            timeout_ms: default_timeout_ms(),
            connect_timeout_ms: default_connect_timeout_ms(),
            driver: DriverConfig::default(),
        }
    }

    /// A new random channel GUID. Call it once, persist the answer, and reuse it on every start:
    /// a new channel per start would leave Splunk holding the old channels' acknowledgements.
    pub fn generate_channel() -> String {
        uuid::Uuid::new_v4().to_string()
    }
}
