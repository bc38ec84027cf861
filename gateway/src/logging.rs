//! The log filter, changeable while running: `log.level` applies on configuration reload.
//!
//! The binary installs the `tracing` subscriber with a reloadable filter and hands its handle
//! here ([`set_filter_handle`]); a reload whose `log.level` changed calls [`set_level`]. When
//! `RUST_LOG` chose the filter at start no handle is installed: the environment wins, as at
//! start, and a changed `log.level` waits for a restart.

use std::sync::OnceLock;

type Setter = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

static FILTER: OnceLock<Setter> = OnceLock::new();

/// Installs the function that replaces the running filter (once; later calls are ignored).
pub fn set_filter_handle(f: impl Fn(&str) -> Result<(), String> + Send + Sync + 'static) {
    let _ = FILTER.set(Box::new(f));
}

/// Replaces the running filter with `level` (`tracing` filter syntax, e.g. `info` or
/// `info,gateway::delivery=debug`). `None` when the filter cannot be changed while running.
pub fn set_level(level: &str) -> Option<Result<(), String>> {
    FILTER.get().map(|f| f(level))
}
