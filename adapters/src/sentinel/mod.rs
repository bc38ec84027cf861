//! Microsoft Sentinel through the Azure Monitor **Logs Ingestion API** (a data collection rule
//! and stream, OAuth2 client credentials), simulated by `fixtures::sentinel::SentinelSim`.
//!
//! Layout (the same for every adapter, STYLE.md §4):
//! - `config.rs` — [`SentinelConfig`], the typed configuration;
//! - `client.rs` — [`SentinelSink`]: the token cache, the ingestion call and the classification of
//!   every answer;
//! - `mapping.rs` — audit records as ASIM audit-event rows;
//! - `tests.rs` — the sink and its [`SinkDriver`](crate::sink::SinkDriver) against the real
//!   simulator on loopback.

mod client;
mod config;
mod mapping;
#[cfg(test)]
mod tests;

pub use client::SentinelSink;
pub use config::SentinelConfig;
