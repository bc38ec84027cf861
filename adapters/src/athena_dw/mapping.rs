//! Which mapping spec the warehouse adapter uses: `mappings/specs/warehouse-to-nmpp-case.v1.toml`
//! maps the row set of one crime (see `client.rs` for the queries) to the NMPP case record. A
//! force whose warehouse differs overrides that spec, not this code.

use mappings::Mappings;

use crate::{AdapterError, ErrorClass};

/// The spec that maps the rows of one crime to the NMPP case record.
pub(crate) const CASE_SPEC: &str = mappings::WAREHOUSE_TO_NMPP_CASE;

/// Maps a row set (`{"crime": …, "oic": …, "supervisor": …, "parties": […], "events": […]}`).
pub(crate) fn case_record(
    mappings: &Mappings,
    rows: &serde_json::Value,
) -> Result<serde_json::Value, AdapterError> {
    mappings
        .map(CASE_SPEC, rows)
        .map_err(|e| AdapterError::new(ErrorClass::Mapping, e.to_string()))
}
