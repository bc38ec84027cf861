//! nmpp-gateway: the force integration layer between iHub (My Police Portal) and a force's
//! systems.
//!
//! Layout:
//! - [`config`] — typed configuration, file → environment layering;
//! - [`app`] — shared state, the router and the gatekeeper middleware (authentication, audit,
//!   metrics);
//! - [`api`] — handlers: iHub Standard API, operations, health, docs;
//! - [`delivery`] — the pipeline that maps and delivers journalled exchanges, with retries and
//!   parking; [`breaker`] — the circuit breaker of each target;
//! - [`auth`], [`error`], [`metrics`], [`openapi`], [`audit`] — cross-cutting pieces;
//! - [`detect`] — change detection: force systems' changes → NMPP events for iHub;
//! - [`reload`] — re-reading the configuration and swapping force runtimes without a restart;
//! - [`ledger`] — the audit ledger at run time: checkpoint signing, auditor export, audit sinks;
//! - [`jobs`] — bulk replay jobs and retention, worked in the server through the journal;
//! - [`remap`] — replaying through another mapping version: allowed versions, payload diffs;
//! - [`server`] — assembling and running a gateway (used by `serve` and by tests);
//! - [`cli`] — the operator commands of the `nmpp-gateway` binary.

pub mod api;
pub mod app;
pub mod audit;
pub mod auth;
pub mod breaker;
pub mod cli;
pub mod config;
pub mod delivery;
pub mod detect;
pub mod error;
pub mod evidence;
pub mod jobs;
pub mod ledger;
pub mod logging;
pub mod metrics;
pub mod openapi;
pub mod reload;
pub mod remap;
pub mod server;

pub use app::{AppState, app};
pub use server::{Gateway, run};
