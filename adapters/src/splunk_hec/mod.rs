//! Splunk HTTP Event Collector, with indexer acknowledgement (Splunk Enterprise) or without it
//! (Splunk Cloud), simulated by `fixtures::hec::HecSim`.
//!
//! Layout (the same for every adapter, STYLE.md §4):
//! - `config.rs` — [`SplunkHecConfig`], the typed configuration;
//! - `client.rs` — [`SplunkHecSink`]: the wire protocol (event, ack and health endpoints) and the
//!   classification of every answer;
//! - `mapping.rs` — the HEC envelope each audit record travels in;
//! - `tests.rs` — the sink and its [`SinkDriver`](crate::sink::SinkDriver) against the real
//!   simulator on loopback.

mod client;
mod config;
mod mapping;
#[cfg(test)]
mod tests;

pub use client::SplunkHecSink;
pub use config::SplunkHecConfig;
pub(crate) use mapping::check_object;
