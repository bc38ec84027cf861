//! Typed configuration of the DAMS adapter (STYLE.md §9).

use serde::{Deserialize, Serialize};

use crate::athena::Secret;

/// How to reach one force's DAMS.
///
/// ```toml
/// type = "dams"
/// base_url = "https://dams.force.example"          # uploads go to {base_url}/api/v1/evidence
/// token_url = "https://dams.force.example/oauth2/token"
/// client_id = "nmpp-gateway"
/// client_secret = "…"                               # never printed
/// scope = "evidence.write"                          # optional
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DamsConfig {
    /// The API base URL.
    pub base_url: String,
    /// The OAuth2 token endpoint.
    pub token_url: String,
    /// The client id registered with the DAMS.
    pub client_id: String,
    /// Its secret. Never printed or serialised.
    pub client_secret: Secret,
    /// The scope to ask for, when the DAMS wants one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// A token is renewed when less than this many seconds of its life remain (at most half
    /// its lifetime). Default 60.
    #[serde(default = "default_refresh_margin_s")]
    pub token_refresh_margin_s: u64,
    /// Longest wait for a complete answer, in milliseconds (uploads can be large). Default
    /// 60000.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Longest wait to connect, in milliseconds. Default 2000.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// PEM of a private certificate authority to trust, when the DAMS uses one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_pem: Option<String>,
}

fn default_refresh_margin_s() -> u64 {
    60
}

fn default_timeout_ms() -> u64 {
    60_000
}

fn default_connect_timeout_ms() -> u64 {
    2_000
}

impl DamsConfig {
    /// A configuration with the defaults.
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
            token_refresh_margin_s: default_refresh_margin_s(),
            timeout_ms: default_timeout_ms(),
            connect_timeout_ms: default_connect_timeout_ms(),
            ca_pem: None,
        }
    }
}
