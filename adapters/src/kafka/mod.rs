//! Kafka through `rdkafka`'s idempotent producer (`enable.idempotence=true`, hence `acks=all`),
//! tested against a real Kafka-protocol broker (`fixtures::tansu`).
//!
//! Layout (the same for every adapter, STYLE.md §4):
//! - `config.rs` — [`KafkaConfig`], the typed configuration;
//! - `client.rs` — [`KafkaSink`]: the producer, delivery reports and the classification of every
//!   failure;
//! - `mapping.rs` — key, value and headers of each message;
//! - `tests.rs` — the sink and its [`SinkDriver`](crate::sink::SinkDriver) against tansu.

mod client;
mod config;
mod mapping;
#[cfg(test)]
mod tests;

pub use client::KafkaSink;
pub use config::KafkaConfig;
