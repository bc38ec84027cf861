//! Which specs the STORM adapter uses: `nmpp-to-storm-message` (NMPP incident + envelope → the
//! `<IncidentMessage>` it sends) and `storm-to-nmpp-incident` (the `<Incident>` it reads → NMPP,
//! normalising the grade through the force's `storm-grading` table).

use mappings::Mappings;
use serde_json::json;

use crate::command_control::IncidentMessage;
use crate::{AdapterError, ErrorClass, TargetPayload};

/// The outbound spec.
pub(crate) const MESSAGE_SPEC: &str = mappings::NMPP_TO_STORM_MESSAGE;
/// The inbound spec.
pub(crate) const INCIDENT_SPEC: &str = mappings::STORM_TO_NMPP_INCIDENT;

pub(crate) fn message(
    mappings: &Mappings,
    m: &IncidentMessage,
) -> Result<TargetPayload, AdapterError> {
    let mut envelope = json!({
        "messageId": m.message_id,
        "messageType": m.kind.as_str(),
        "sent": m.sent,
        "incident": m.incident,
    });
    if let Some(entry) = &m.log_entry {
        envelope["logEntry"] = entry.clone();
    }
    let body = mappings
        .render(MESSAGE_SPEC, &envelope)
        .map_err(|e| AdapterError::new(ErrorClass::Mapping, e.to_string()))?;
    Ok(TargetPayload {
        content_type: "application/xml".into(),
        body,
        mapping: mappings.spec_version(MESSAGE_SPEC),
    })
}

pub(crate) fn incident(
    mappings: &Mappings,
    tree: &serde_json::Value,
) -> Result<serde_json::Value, AdapterError> {
    mappings
        .map(INCIDENT_SPEC, tree)
        .map_err(|e| AdapterError::new(ErrorClass::Mapping, e.to_string()))
}
