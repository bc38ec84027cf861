//! Typed configuration of the STORM adapter (STYLE.md §9).

use serde::{Deserialize, Serialize};

use crate::athena::Secret;

/// How to reach one force's STORM.
///
/// ```toml
/// type = "storm"
/// base_url = "https://storm.force.example"
/// api_key = "…"          # optional, never printed
/// timeout_ms = 10000
/// ```
///
/// The force's grading scheme (raw grade → normalised grade) is the `storm-grading` table of
/// the spec `storm-to-nmpp-incident`, which the force overrides in its own spec directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StormConfig {
    /// Where STORM's API lives; requests go to `{base_url}/storm/v1/…`.
    pub base_url: String,
    /// Sent as `Authorization: Bearer <api_key>` when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<Secret>,
    /// Longest wait for a complete answer, in milliseconds. Default 10000.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Longest wait to connect, in milliseconds. Default 2000.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
}

fn default_timeout_ms() -> u64 {
    10_000
}

fn default_connect_timeout_ms() -> u64 {
    2_000
}

impl StormConfig {
    /// A configuration for `base_url` with the defaults.
    pub fn new(base_url: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            api_key: None,
            timeout_ms: default_timeout_ms(),
            connect_timeout_ms: default_connect_timeout_ms(),
        }
    }
}
