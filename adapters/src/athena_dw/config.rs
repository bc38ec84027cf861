//! Typed configuration of the data-warehouse adapter (STYLE.md §9).

use serde::{Deserialize, Serialize};

use crate::athena::Secret;

/// How to reach one force's Athena data warehouse.
///
/// ```toml
/// type = "athena_dw"
/// url = "postgres://nmpp_reader@dw.force.example:5432/athena_dw"   # no password here
/// password = "…"                     # never printed
/// pool_size = 4
/// statement_timeout_ms = 10000
/// watermark_lag_ms = 2000
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AthenaDwConfig {
    /// `postgres://USER@HOST:PORT/DATABASE` of a role that may only read. The password belongs
    /// in `password`, not in the URL.
    pub url: String,
    /// The role's password. Never printed or serialised.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    /// Connections kept open. Default 4.
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
    /// Longest a query may run (PostgreSQL `statement_timeout`), in milliseconds; beyond it the
    /// error is `timeout`. Default 10000.
    #[serde(default = "default_statement_timeout_ms")]
    pub statement_timeout_ms: u64,
    /// Longest wait to open a connection, in milliseconds (`connect` beyond). Default 2000.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Change detection reports only rows whose `last_modified_ts` is at least this old, so
    /// that a transaction still committing with an earlier timestamp cannot be skipped.
    /// Default 2000.
    #[serde(default = "default_watermark_lag_ms")]
    pub watermark_lag_ms: u64,
}

fn default_pool_size() -> usize {
    4
}

fn default_statement_timeout_ms() -> u64 {
    10_000
}

fn default_connect_timeout_ms() -> u64 {
    2_000
}

fn default_watermark_lag_ms() -> u64 {
    2_000
}

impl AthenaDwConfig {
    /// A configuration for `url` with the defaults.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            password: None,
            pool_size: default_pool_size(),
            statement_timeout_ms: default_statement_timeout_ms(),
            connect_timeout_ms: default_connect_timeout_ms(),
            watermark_lag_ms: default_watermark_lag_ms(),
        }
    }
}
