//! Typed configuration of the Sentinel (Logs Ingestion API) sink (STYLE.md §9).

use serde::{Deserialize, Serialize};

use crate::athena::Secret;
use crate::sink::DriverConfig;

/// How to reach one Log Analytics workspace through a data collection rule.
///
/// ```toml
/// type = "sentinel"
/// endpoint = "https://nmpp-dce-abcd.uksouth-1.ingest.monitor.azure.com"
/// dcr_immutable_id = "dcr-0123456789abcdef0123456789abcdef"
/// stream = "Custom-NmppAudit_CL"
/// tenant_id = "…"
/// client_id = "…"
/// client_secret = "…"   # never printed
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SentinelConfig {
    /// Name of this sink: the key of its cursor, and its label in logs and health. Default
    /// `sentinel`.
    #[serde(default = "default_name")]
    pub name: String,
    /// The logs ingestion endpoint (a data collection endpoint, or the DCR's own endpoint).
    /// Calls go to `{endpoint}/dataCollectionRules/{dcr_immutable_id}/streams/{stream}`.
    pub endpoint: String,
    /// The data collection rule's immutable id (`dcr-…`).
    pub dcr_immutable_id: String,
    /// The stream declared in the rule (`Custom-…`).
    pub stream: String,
    /// The Microsoft Entra tenant of the app registration.
    pub tenant_id: String,
    /// The app registration's application (client) id.
    pub client_id: String,
    /// The app registration's client secret. Never printed or serialised.
    pub client_secret: Secret,
    /// The Entra authority; the token endpoint is `{authority}/{tenant_id}/oauth2/v2.0/token`.
    /// Default `https://login.microsoftonline.com`.
    #[serde(default = "default_authority")]
    pub authority: String,
    /// The scope asked for. Default `https://monitor.azure.com/.default`.
    #[serde(default = "default_scope")]
    pub scope: String,
    /// `api-version` of the ingestion call. Default `2023-01-01`.
    #[serde(default = "default_api_version")]
    pub api_version: String,
    /// Gzip request bodies. Default true.
    #[serde(default = "yes")]
    pub gzip: bool,
    /// Largest request body before compression, in bytes. Default 1,000,000 (the API refuses
    /// calls over 1 MB with `413`).
    #[serde(default = "default_max_batch_bytes")]
    pub max_batch_bytes: usize,
    /// A token is renewed when less than this many seconds of its life remain (at most half its
    /// lifetime). Default 300.
    #[serde(default = "default_refresh_margin_s")]
    pub token_refresh_margin_s: u64,
    /// Longest wait for a complete answer, in milliseconds. Default 30000.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Longest wait to connect, in milliseconds. Default 5000.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// How the driver batches, retries and waits.
    #[serde(default)]
    pub driver: DriverConfig,
}

fn yes() -> bool {
    true
}

fn default_name() -> String {
    "sentinel".to_owned()
}

fn default_authority() -> String {
    "https://login.microsoftonline.com".to_owned()
}

fn default_scope() -> String {
    "https://monitor.azure.com/.default".to_owned()
}

fn default_api_version() -> String {
    "2023-01-01".to_owned()
}

fn default_max_batch_bytes() -> usize {
    1_000_000
}

fn default_refresh_margin_s() -> u64 {
    300
}

fn default_timeout_ms() -> u64 {
    30_000
}

fn default_connect_timeout_ms() -> u64 {
    5_000
}

impl SentinelConfig {
    /// A configuration with every optional field at its default.
    pub fn new(
        endpoint: impl Into<String>,
        dcr_immutable_id: impl Into<String>,
        stream: impl Into<String>,
        tenant_id: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: impl Into<Secret>,
    ) -> Self {
        Self {
            name: default_name(),
            endpoint: endpoint.into(),
            dcr_immutable_id: dcr_immutable_id.into(),
            stream: stream.into(),
            tenant_id: tenant_id.into(),
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            authority: default_authority(),
            scope: default_scope(),
            api_version: default_api_version(),
            gzip: true,
            max_batch_bytes: default_max_batch_bytes(),
            token_refresh_margin_s: default_refresh_margin_s(),
            timeout_ms: default_timeout_ms(),
            connect_timeout_ms: default_connect_timeout_ms(),
            driver: DriverConfig::default(),
        }
    }
}
