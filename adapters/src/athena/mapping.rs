//! Which mapping spec the Athena adapter uses. The mapping itself is declarative and lives in
//! `mappings/specs/nmpp-to-athena.v1.toml`; a force whose Athena differs changes that spec, not
//! this code.

use mappings::Mappings;

use crate::{AdapterError, ErrorClass, TargetPayload};

/// The spec that maps an NMPP submission to an Athena `<CrimeRecord>`.
pub(crate) const CRIME_RECORD_SPEC: &str = "nmpp-to-athena";

/// The media type Athena accepts and answers with.
pub(crate) const XML: &str = "application/xml";

/// Maps a canonical NMPP submission to the Athena "create crime record" payload.
pub(crate) fn crime_record(
    mappings: &Mappings,
    nmpp: &serde_json::Value,
) -> Result<TargetPayload, AdapterError> {
    let body = mappings
        .nmpp_to_athena_xml(nmpp)
        .map_err(|e| AdapterError::new(ErrorClass::Mapping, e.to_string()))?;
    Ok(TargetPayload {
        content_type: XML.to_owned(),
        body,
        mapping: mappings.spec_version(CRIME_RECORD_SPEC),
    })
}
