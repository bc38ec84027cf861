//! Which specs the iHub adapter uses: `nmpp-to-ihub-event` and `nmpp-to-ihub-notification`.

use mappings::Mappings;

use crate::{AdapterError, ErrorClass, TargetPayload};

/// Case events.
pub(crate) const EVENT_SPEC: &str = mappings::NMPP_TO_IHUB_EVENT;
/// Notification requests.
pub(crate) const NOTIFICATION_SPEC: &str = mappings::NMPP_TO_IHUB_NOTIFICATION;

pub(crate) fn render(
    mappings: &Mappings,
    spec: &str,
    doc: &serde_json::Value,
) -> Result<TargetPayload, AdapterError> {
    let body = mappings
        .render(spec, doc)
        .map_err(|e| AdapterError::new(ErrorClass::Mapping, e.to_string()))?;
    Ok(TargetPayload {
        content_type: "application/vnd.api+json".into(),
        body,
        mapping: mappings.spec_version(spec),
    })
}
