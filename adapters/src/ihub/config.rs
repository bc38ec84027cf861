//! Typed configuration of the iHub adapter (STYLE.md §9).

use serde::{Deserialize, Serialize};

use crate::athena::Secret;

/// How to reach iHub for one force.
///
/// ```toml
/// type = "ihub"
/// base_url = "https://ihub.example.police.uk"        # {base_url}/ihub/v1/case-events, …/notifications
/// token_url = "https://ihub.example.police.uk/oauth2/token"
/// client_id = "force-42"
/// client_secret = "…"                                # never printed
/// client_certificate = "-----BEGIN CERTIFICATE-----…-----BEGIN PRIVATE KEY-----…"   # optional (mTLS), never printed
/// ca_pem = "-----BEGIN CERTIFICATE-----…"            # optional: a private CA to trust
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IhubConfig {
    /// The API base URL.
    pub base_url: String,
    /// The OAuth2 token endpoint.
    pub token_url: String,
    /// The client id iHub gave the force.
    pub client_id: String,
    /// Its secret. Never printed or serialised.
    pub client_secret: Secret,
    /// The scope to ask for, when iHub wants one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// For mutual TLS: the client certificate followed by its private key, PEM. Never printed
    /// or serialised (it holds the key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate: Option<Secret>,
    /// PEM of a private certificate authority to trust.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_pem: Option<String>,
    /// A token is renewed when less than this many seconds of its life remain. Default 60.
    #[serde(default = "default_refresh_margin_s")]
    pub token_refresh_margin_s: u64,
    /// Longest wait for a complete answer, in milliseconds. Default 10000.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Longest wait to connect (TLS handshake included), in milliseconds. Default 2000.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
}

fn default_refresh_margin_s() -> u64 {
    60
}

fn default_timeout_ms() -> u64 {
    10_000
}

fn default_connect_timeout_ms() -> u64 {
    2_000
}

impl IhubConfig {
    /// A configuration with the defaults and no client certificate.
    pub fn new(
        base_url: impl Into<String>,
        token_url: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: impl Into<Secret>,
    ) -> Self {
        Self {
            base_url: base_url.into(),
            token_url: token_url.into(),
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            scope: None,
            client_certificate: None,
            ca_pem: None,
            token_refresh_margin_s: default_refresh_margin_s(),
            timeout_ms: default_timeout_ms(),
            connect_timeout_ms: default_connect_timeout_ms(),
        }
    }
}
