//! iHub, outbound: NMPP case events and notification requests as JSON:API documents, with
//! OAuth2 client credentials and an optional mutual-TLS client certificate (rustls)
//! (`fixtures/IHUB.md`, simulated by `fixtures::ihub::IhubSim`).
//!
//! Layout: `config.rs` ([`IhubConfig`]), `client.rs` ([`IhubClient`]), `mapping.rs`
//! (`nmpp-to-ihub-event`, `nmpp-to-ihub-notification`), `tests.rs` (against the simulator,
//! with and without mutual TLS, faults included).

mod client;
mod config;
mod mapping;
#[cfg(test)]
mod tests;

pub use client::IhubClient;
pub use config::IhubConfig;
