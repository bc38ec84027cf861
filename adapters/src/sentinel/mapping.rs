//! Audit records as rows of the ASIM **Audit Event** schema, the columns the data collection
//! rule's stream declares. Pure: no I/O.
//!
//! | ASIM column | from the ledger record |
//! |---|---|
//! | `TimeGenerated`, `EventStartTime`, `EventEndTime` | `time` (RFC 3339, UTC) |
//! | `EventType` | the verb of `action`: create → `Create`; update/set/change/edit/link → `Set`; delete/purge/erase → `Delete`; view/read/get/search/list/export/download → `Read`; replay/execute/run/send → `Execute`; anything else → `Other` |
//! | `EventResult`, `EventResultDetails` | `result`: success/duplicate → `Success`; failure/denied/error → `Failure`; else `NA`; details keep the original |
//! | `EventSeverity` | `Informational`, `Low` for failures |
//! | `Operation` | `action` |
//! | `Object`, `ObjectId`, `ObjectType` | `object_type/object_id`, `object_id`, ASIM type (`Configuration Atom` for configuration objects, else `Other`) |
//! | `ActorUsername`, `ActorUserType` | `actor`; `role` system → `System`, ihub → `Application`, else `Regular` |
//! | `SrcIpAddr`, `HttpUserAgent` | `source_ip`, `user_agent` |
//! | `EventUid` | `event_uid` |
//! | `EventProduct`, `EventVendor`, `EventSchema`, `EventSchemaVersion`, `EventCount` | `nmpp-gateway`, `NMPP`, `AuditEvent`, `0.1.0`, 1 |
//! | `AdditionalFields` | `seq`, `kind`, `role`, `force`, `correlation_id`, `detail`, `hash`, `prev_hash`, the original `object_type`, and `LedgerRecord`: the record's canonical JSON text, so an auditor can recompute its hash from Sentinel |
//!
//! A checkpoint is a row with `EventType` `Other`, `Operation` `ledger.checkpoint`, `Object`
//! `audit-ledger`, and the signed note in `AdditionalFields`.

use bytes::Bytes;
use serde_json::{Map, Value, json};
use time::format_description::well_known::Rfc3339;

use crate::sink::{RecordKind, SinkRecord};
use crate::{AdapterError, ErrorClass};

/// The row for `record`, as JSON bytes.
pub(super) fn asim_row(record: &SinkRecord) -> Result<Bytes, AdapterError> {
    let source: Value = serde_json::from_slice(&record.json)
        .map_err(|_| AdapterError::new(ErrorClass::Mapping, "audit record is not valid JSON"))?;
    let Value::Object(source) = source else {
        return Err(AdapterError::new(
            ErrorClass::Mapping,
            "audit record is not a JSON object",
        ));
    };
    let time = record
        .time
        .to_offset(time::UtcOffset::UTC)
        .format(&Rfc3339)
        .map_err(|_| {
            AdapterError::new(ErrorClass::Mapping, "audit record time cannot be formatted")
        })?;
    let text = |key: &str| source.get(key).and_then(Value::as_str).map(str::to_owned);
    let mut row = Map::new();
    row.insert("TimeGenerated".into(), json!(time));
    row.insert("EventStartTime".into(), json!(time));
    row.insert("EventEndTime".into(), json!(time));
    row.insert("EventUid".into(), json!(record.event_uid));
    row.insert("EventCount".into(), json!(1));
    row.insert("EventProduct".into(), json!("nmpp-gateway"));
    row.insert("EventVendor".into(), json!("NMPP"));
    row.insert("EventSchema".into(), json!("AuditEvent"));
    row.insert("EventSchemaVersion".into(), json!("0.1.0"));
    let mut additional = Map::new();
    additional.insert("seq".into(), json!(record.seq));
    additional.insert("kind".into(), json!(record.kind.as_str()));
    match record.kind {
        RecordKind::Checkpoint => {
            row.insert("EventType".into(), json!("Other"));
            row.insert("EventResult".into(), json!("Success"));
            row.insert("EventSeverity".into(), json!("Informational"));
            row.insert("Operation".into(), json!("ledger.checkpoint"));
            row.insert("Object".into(), json!("audit-ledger"));
            row.insert("ObjectType".into(), json!("Other"));
            row.insert("ActorUsername".into(), json!("nmpp-gateway"));
            row.insert("ActorUserType".into(), json!("System"));
            for (key, value) in source {
                additional.insert(key, value);
            }
        }
        RecordKind::Record => {
            let action = text("action").unwrap_or_default();
            let result = text("result").unwrap_or_default();
            let event_result = event_result(&result);
            row.insert("EventType".into(), json!(event_type(&action)));
            row.insert("EventResult".into(), json!(event_result));
            row.insert("EventResultDetails".into(), json!(result));
            row.insert(
                "EventSeverity".into(),
                json!(if event_result == "Failure" {
                    "Low"
                } else {
                    "Informational"
                }),
            );
            row.insert("Operation".into(), json!(action));
            let object_type = text("object_type");
            let object_id = text("object_id");
            let object = match (&object_type, &object_id) {
                (Some(t), Some(id)) => Some(format!("{t}/{id}")),
                (Some(t), None) => Some(t.clone()),
                (None, Some(id)) => Some(id.clone()),
                (None, None) => None,
            };
            if let Some(object) = object {
                row.insert("Object".into(), json!(object));
            }
            if let Some(id) = &object_id {
                row.insert("ObjectId".into(), json!(id));
            }
            row.insert(
                "ObjectType".into(),
                json!(asim_object_type(object_type.as_deref())),
            );
            if let Some(actor) = text("actor") {
                row.insert("ActorUsername".into(), json!(actor));
            }
            row.insert(
                "ActorUserType".into(),
                json!(actor_type(text("role").as_deref())),
            );
            if let Some(ip) = text("source_ip") {
                row.insert("SrcIpAddr".into(), json!(ip));
            }
            if let Some(agent) = text("user_agent") {
                row.insert("HttpUserAgent".into(), json!(agent));
            }
            for key in [
                "role",
                "force",
                "correlation_id",
                "detail",
                "hash",
                "prev_hash",
                "object_type",
            ] {
                if let Some(value) = source.get(key).filter(|v| !v.is_null()) {
                    additional.insert(key.into(), value.clone());
                }
            }
            let canonical = std::str::from_utf8(&record.json)
                .map_err(|_| AdapterError::new(ErrorClass::Mapping, "audit record is not UTF-8"))?;
            additional.insert("LedgerRecord".into(), json!(canonical));
        }
    }
    row.insert("AdditionalFields".into(), Value::Object(additional));
    serde_json::to_vec(&Value::Object(row))
        .map(Bytes::from)
        .map_err(|e| AdapterError::new(ErrorClass::Mapping, e.to_string()))
}

/// ASIM `EventType` from the verb (last dotted segment) of an action.
pub(super) fn event_type(action: &str) -> &'static str {
    let verb = action.rsplit('.').next().unwrap_or("");
    match verb {
        "create" | "created" | "submit" | "submitted" | "upload" => "Create",
        "update" | "set" | "change" | "edit" | "link" | "unlink" | "park" | "unpark" => "Set",
        "delete" | "purge" | "erase" => "Delete",
        "view" | "read" | "get" | "search" | "list" | "export" | "download" => "Read",
        "replay" | "execute" | "run" | "send" => "Execute",
        _ => "Other",
    }
}

fn event_result(result: &str) -> &'static str {
    match result {
        "success" | "duplicate" => "Success",
        "failure" | "denied" | "error" => "Failure",
        _ => "NA",
    }
}

fn asim_object_type(object_type: Option<&str>) -> &'static str {
    match object_type {
        Some("config" | "configuration" | "mapping" | "rule") => "Configuration Atom",
        _ => "Other",
    }
}

fn actor_type(role: Option<&str>) -> &'static str {
    match role {
        Some("system") => "System",
        Some("ihub") => "Application",
        _ => "Regular",
    }
}
