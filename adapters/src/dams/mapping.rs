//! Which specs the DAMS adapter uses: `nmpp-to-dams-evidence` (NMPP evidence item → upload
//! metadata) and `dams-to-nmpp-evidence` (the stored resource → NMPP evidence item).

use mappings::Mappings;

use crate::{AdapterError, ErrorClass, TargetPayload};

/// Outbound spec.
pub(crate) const METADATA_SPEC: &str = mappings::NMPP_TO_DAMS_EVIDENCE;
/// Inbound spec.
pub(crate) const EVIDENCE_SPEC: &str = mappings::DAMS_TO_NMPP_EVIDENCE;

pub(crate) fn metadata(
    mappings: &Mappings,
    item: &serde_json::Value,
) -> Result<TargetPayload, AdapterError> {
    let body = mappings
        .render(METADATA_SPEC, item)
        .map_err(|e| AdapterError::new(ErrorClass::Mapping, e.to_string()))?;
    Ok(TargetPayload {
        content_type: "application/vnd.api+json".into(),
        body,
        mapping: mappings.spec_version(METADATA_SPEC),
    })
}

pub(crate) fn evidence(
    mappings: &Mappings,
    answer: &serde_json::Value,
) -> Result<serde_json::Value, AdapterError> {
    mappings
        .map(EVIDENCE_SPEC, answer)
        .map_err(|e| AdapterError::new(ErrorClass::Mapping, e.to_string()))
}
