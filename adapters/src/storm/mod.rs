//! STORM / SMARTStorm (command and control) over its XML/HTTP interface (`fixtures/STORM.md`,
//! simulated by `fixtures::storm::StormSim`): incident messages in the spirit of MAIT (create,
//! update including grading, close, log entry), incident reads and a change feed.
//!
//! Layout: `config.rs` ([`StormConfig`]), `client.rs` ([`StormClient`], the wire protocol and
//! its error classes), `mapping.rs` (the specs: `nmpp-to-storm-message` out,
//! `storm-to-nmpp-incident` in, whose `storm-grading` table is the force's grading scheme),
//! `tests.rs` (against the simulator, faults included).

mod client;
mod config;
mod mapping;
#[cfg(test)]
mod tests;

pub use client::StormClient;
pub use config::StormConfig;
