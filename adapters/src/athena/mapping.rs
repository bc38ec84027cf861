//! Which mapping spec the Athena adapter uses. The mapping itself is declarative and lives in
//! `mappings/specs/nmpp-to-athena.v1.toml`; a force whose Athena differs changes that spec, not
//! this code.

use mappings::Mappings;

use crate::records::{PreparedWrite, RecordWrite, WriteOperation, write_target};
use crate::{AdapterError, ErrorClass, TargetPayload};

/// The spec that maps an Athena `<CrimeRecord>` read answer to the NMPP case record.
pub(crate) const CASE_SPEC: &str = mappings::ATHENA_TO_NMPP_CASE;

/// Maps a read answer (XML text) to the NMPP case record. XML that does not parse is a
/// `protocol` error (Athena's fault, retryable); a document the spec cannot map is `mapping`.
pub(crate) fn case_record(
    mappings: &Mappings,
    xml: &str,
) -> Result<serde_json::Value, AdapterError> {
    let (root, tree) = mappings::xml::from_xml(xml).map_err(|_| {
        AdapterError::new(
            ErrorClass::Protocol,
            "athena answered XML that is not well-formed",
        )
        .with_status(200)
    })?;
    if root != "CrimeRecord" {
        return Err(AdapterError::new(
            ErrorClass::Protocol,
            format!("athena answered <{root}> where a <CrimeRecord> was expected"),
        )
        .with_status(200));
    }
    mappings
        .map(CASE_SPEC, &tree)
        .map_err(|e| AdapterError::new(ErrorClass::Mapping, e.to_string()))
}

/// Maps a write to its Athena payload: victim contact (`nmpp-to-athena-victim-contact`), task
/// (`nmpp-to-athena-task`), contact details (`nmpp-to-athena-contact-details`).
pub(crate) fn write(
    mappings: &Mappings,
    write: &RecordWrite,
) -> Result<PreparedWrite, AdapterError> {
    let (operation, doc, party_id, crime_reference) = write_target(write)?;
    let spec = match operation {
        WriteOperation::VictimContact => mappings::NMPP_TO_ATHENA_VICTIM_CONTACT,
        WriteOperation::OfficerTask => mappings::NMPP_TO_ATHENA_TASK,
        WriteOperation::ContactDetails => mappings::NMPP_TO_ATHENA_CONTACT_DETAILS,
    };
    let body = mappings
        .render(spec, doc)
        .map_err(|e| AdapterError::new(ErrorClass::Mapping, e.to_string()))?;
    Ok(PreparedWrite {
        operation,
        crime_reference,
        party_id,
        payload: TargetPayload {
            content_type: XML.to_owned(),
            body,
            mapping: mappings.spec_version(spec),
        },
    })
}

/// The spec that maps an NMPP submission to an Athena `<CrimeRecord>`.
pub(crate) const CRIME_RECORD_SPEC: &str = "nmpp-to-athena";

/// The media type Athena accepts and answers with.
pub(crate) const XML: &str = "application/xml";

/// Maps a canonical NMPP submission to the Athena "create crime record" payload, through the
/// current version of [`CRIME_RECORD_SPEC`] or the version `version` names
/// (`nmpp-to-athena@2.0.0`).
pub(crate) fn crime_record(
    mappings: &Mappings,
    nmpp: &serde_json::Value,
    version: Option<&str>,
) -> Result<TargetPayload, AdapterError> {
    let spec = match version {
        None => CRIME_RECORD_SPEC.to_owned(),
        Some(v) => crate::versioned_spec(mappings, CRIME_RECORD_SPEC, v)?,
    };
    let body = mappings
        .render(&spec, nmpp)
        .map_err(|e| AdapterError::new(ErrorClass::Mapping, e.to_string()))?;
    Ok(TargetPayload {
        content_type: XML.to_owned(),
        body,
        mapping: mappings.spec_version(&spec),
    })
}
