//! Athena (NEC records management system) over its XML/HTTP interface, as specified in
//! `fixtures/ATHENA.md` and simulated by `fixtures::athena::AthenaSim`.
//!
//! Layout (the same for every adapter, STYLE.md §4):
//! - `config.rs` — [`AthenaConfig`], the typed configuration, and [`Secret`];
//! - `client.rs` — [`AthenaClient`]: the wire protocol, and the classification of every outcome
//!   into an [`ErrorClass`](crate::ErrorClass);
//! - `mapping.rs` — which mapping spec produces the payloads it sends (`nmpp-to-athena`);
//! - `tests.rs` — the client against the real simulator on loopback.

mod client;
mod config;
mod mapping;
#[cfg(test)]
mod tests;

pub use client::AthenaClient;
pub use config::{AthenaConfig, Secret};
