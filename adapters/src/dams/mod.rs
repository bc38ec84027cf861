//! A DAMS (digital asset / evidence store) over REST with OAuth2 client credentials
//! (`fixtures/DAMS.md`, simulated by `fixtures::dams::DamsSim`): multipart upload of an evidence
//! file with its metadata and SHA-256; the answer's evidence id is returned.
//!
//! Layout: `config.rs` ([`DamsConfig`]), `client.rs` ([`DamsClient`]: token cache, upload, the
//! classification of every outcome), `mapping.rs` (`nmpp-to-dams-evidence` out,
//! `dams-to-nmpp-evidence` in), `tests.rs` (against the simulator, faults included).

mod client;
mod config;
mod mapping;
#[cfg(test)]
mod tests;

pub use client::DamsClient;
pub use config::DamsConfig;
