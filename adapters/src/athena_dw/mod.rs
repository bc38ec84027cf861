//! Athena's read-only data warehouse (PostgreSQL), read through a role that can only `SELECT`,
//! as a force's interim records system until it is approved to call Athena directly
//! (`fixtures/WAREHOUSE.md`; simulated by `fixtures::warehouse::Warehouse`).
//!
//! Layout (the same for every adapter, STYLE.md §4):
//! - `config.rs` — [`AthenaDwConfig`];
//! - `client.rs` — [`AthenaDwClient`]: the SQL it runs, rows to JSON, watermark change
//!   detection, and the classification of every database error;
//! - `mapping.rs` — which spec maps the rows (`warehouse-to-nmpp-case`);
//! - `tests.rs` — against a fresh warehouse database, including the swap test (the same facts
//!   read through `athena` and `athena_dw` give identical NMPP documents).
//!
//! Every write is refused with a non-retryable `rejected` error that says the system is
//! read-only: a force that must write (victim contacts, tasks) needs `type = "athena"`.

mod client;
mod config;
mod mapping;
#[cfg(test)]
mod tests;

pub use client::AthenaDwClient;
pub use config::AthenaDwConfig;
