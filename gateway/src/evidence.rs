//! Evidence the public attached to a submission, on its way to the force's DAMS.
//!
//! An iHub submission carries its files inline (`included[]` resources of type `attachment`:
//! `attachmentName`, `attachmentMimeType`, `attachmentContent` in base64). When a force has an
//! evidence store (`forces.X.evidence = { type = "dams", … }`) and one of its submissions has
//! been delivered to the records system, each attachment becomes an exchange of its own — kind
//! [`KIND`], target the evidence store — so that it is retried, parked, searched and replayed
//! like any other, and a failing DAMS never holds up the crime record. The exchange carries the
//! crime reference the records system assigned, so the DAMS files the evidence under the case;
//! its delivery uploads the file (multipart, with metadata and checksum, through the DAMS
//! adapter) and records the evidence id the DAMS answered as the attempt's target reference.
//!
//! The evidence exchanges are journalled *before* the submission's successful attempt is, and
//! each is idempotent by `{submission idempotency key}/attachment/{attachment id}`: a crash in
//! between re-delivers the submission (the records system drops the duplicate by its key and
//! answers the same reference) and finds them already there. Nothing is uploaded twice under
//! different keys.

use crate::delivery::ForceRuntime;
use adapters::{
    AdapterError, DeliveryContext, DeliveryReceipt, ErrorClass, evidence::EvidenceFile,
};
use base64::Engine as _;
use replay::{AuditEvent, Direction, Journal, NewExchange, Prepared, WorkItem};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::Digest as _;
use std::time::Duration;
use uuid::Uuid;

/// Kind of the exchanges that take one attachment to the evidence store.
pub const KIND: &str = "evidence.submitted";

/// What an evidence exchange stores: the NMPP evidence item (`nmpp-evidence@1`, without the
/// evidence id the DAMS will assign) and the file.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Stored {
    item: Value,
    mime_type: String,
    content_base64: String,
}

/// One attachment of an SDM document.
struct Attachment<'a> {
    id: &'a str,
    name: &'a str,
    mime_type: &'a str,
    content: Vec<u8>,
}

/// The attachments of an SDM document whose content decodes; one that does not is a mapping
/// error, reported with its id (the submission's own mapping checks the same).
fn attachments(sdm: &Value) -> Result<Vec<Attachment<'_>>, String> {
    let mut out = Vec::new();
    for (i, r) in sdm
        .get("included")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        if r.get("type").and_then(Value::as_str) != Some("attachment") {
            continue;
        }
        let a = r.get("attributes");
        let text = |k: &str| a.and_then(|a| a.get(k)).and_then(Value::as_str);
        let id = r.get("id").and_then(Value::as_str).unwrap_or_default();
        // MIME-style base64 may be wrapped over several lines.
        let content: String = text("attachmentContent")
            .unwrap_or_default()
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect();
        let content = base64::engine::general_purpose::STANDARD
            .decode(&content)
            .map_err(|e| {
                format!("included[{i}] (attachment {id:?}).attributes.attachmentContent: not base64: {e}")
            })?;
        out.push(Attachment {
            id,
            name: text("attachmentName")
                .filter(|n| !n.trim().is_empty())
                .unwrap_or(id),
            mime_type: text("attachmentMimeType").unwrap_or("application/octet-stream"),
            content,
        });
    }
    Ok(out)
}

/// After a submission was delivered to the records system (which answered `receipt`): journals
/// one evidence exchange per attachment, when the force has an evidence store. Returns how many
/// were new. An error means the submission's attempt must not be recorded as delivered.
pub async fn journal_attachments(
    journal: &dyn Journal,
    rt: &ForceRuntime,
    item: &WorkItem,
    receipt: &DeliveryReceipt,
) -> Result<usize, AdapterError> {
    let Some(store) = &rt.evidence else {
        return Ok(0);
    };
    let sdm: Value = serde_json::from_slice(&item.payload).map_err(|e| {
        AdapterError::new(
            ErrorClass::Internal,
            format!("stored payload unreadable: {e}"),
        )
    })?;
    let files = attachments(&sdm).map_err(|e| AdapterError::new(ErrorClass::Mapping, e))?;
    let submission_id = sdm
        .get("included")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|r| r.get("type").and_then(Value::as_str) == Some("submission"))
        .and_then(|s| s.pointer("/attributes/submissionId"))
        .and_then(Value::as_str)
        .and_then(|s| Uuid::parse_str(s).ok());
    let mut created = 0;
    for a in files {
        let mut evidence = serde_json::json!({
            "modelVersion": mappings::model::MODEL_VERSION,
            "crimeReference": receipt.target_ref,
            "fileName": a.name,
            "mimeType": a.mime_type,
            "sizeBytes": a.content.len(),
            "sha256": hex::encode(sha2::Sha256::digest(&a.content)),
            "description": format!("Uploaded by the public with their report (attachment {})", a.id),
        });
        if let Some(sid) = submission_id {
            evidence["submissionId"] = sid.to_string().into();
        }
        let stored = Stored {
            item: evidence,
            mime_type: a.mime_type.to_owned(),
            content_base64: base64::engine::general_purpose::STANDARD.encode(&a.content),
        };
        let id = Uuid::now_v7();
        let key = format!("{}/attachment/{}", item.idempotency_key, a.id);
        let exchange = NewExchange {
            id,
            force: item.force.clone(),
            kind: KIND.into(),
            direction: Direction::Outbound,
            source_system: "ihub".into(),
            target_system: store.name().into(),
            api_version: "ihub-sapi/v1".into(),
            model_version: "nmpp/1".into(),
            idempotency_key: key,
            correlation_id: item.correlation_id.clone(),
            case_ref: Some(receipt.target_ref.clone()),
            payload_type: "application/json".into(),
            payload: serde_json::to_vec(&stored).map_err(|e| {
                AdapterError::new(ErrorClass::Internal, format!("evidence payload: {e}"))
            })?,
            response: Vec::new(),
        };
        let audit = AuditEvent {
            time: crate::app::now_millis(),
            actor: "delivery".into(),
            role: "system".into(),
            force: Some(item.force.clone()),
            action: "evidence.queued".into(),
            object_type: Some("exchange".into()),
            object_id: Some(id.to_string()),
            result: "success".into(),
            source_ip: None,
            user_agent: None,
            correlation_id: Some(item.correlation_id.clone()),
            event_uid: Uuid::now_v7(),
            detail: Some(serde_json::json!({
                "submissionExchange": item.id.to_string(),
                "attachment": a.id,
                "bytes": a.content.len(),
            })),
        };
        match journal.accept(exchange, audit).await {
            Ok(replay::AcceptOutcome::Created) => created += 1,
            Ok(replay::AcceptOutcome::Duplicate { .. }) => {}
            Err(e) => {
                return Err(AdapterError::new(
                    ErrorClass::Internal,
                    format!("could not journal the submission's evidence: {e}"),
                ));
            }
        }
    }
    Ok(created)
}

/// Delivers one evidence exchange: uploads its file to the force's evidence store and answers
/// the evidence id as the target reference.
pub async fn deliver(
    rt: &ForceRuntime,
    item: &WorkItem,
    timeout: Duration,
) -> (Prepared, Result<DeliveryReceipt, AdapterError>) {
    let mut prepared = Prepared::default();
    let Some(store) = &rt.evidence else {
        let e = AdapterError::new(
            ErrorClass::Internal,
            format!("force {} has no evidence store configured", item.force),
        );
        return (prepared, Err(e));
    };
    let unreadable = |e: &dyn std::fmt::Display| {
        AdapterError::new(
            ErrorClass::Internal,
            format!("stored evidence unreadable: {e}"),
        )
    };
    let stored: Stored = match serde_json::from_slice(&item.payload) {
        Ok(s) => s,
        Err(e) => return (prepared, Err(unreadable(&e))),
    };
    let content = match base64::engine::general_purpose::STANDARD.decode(&stored.content_base64) {
        Ok(c) => c,
        Err(e) => return (prepared, Err(unreadable(&e))),
    };
    prepared.canonical = serde_json::to_vec(&stored.item).ok();
    if let Err(v) = mappings::model::validate_model("nmpp-evidence@1", &stored.item) {
        let e = AdapterError::new(
            ErrorClass::Mapping,
            format!(
                "the evidence item is not a valid NMPP evidence item: {}",
                v.iter()
                    .map(|v| format!("{}: {}", v.pointer, v.message))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        );
        return (prepared, Err(e));
    }
    let metadata = match store.prepare_upload(&stored.item) {
        Ok(m) => m,
        Err(e) => return (prepared, Err(e)),
    };
    prepared.target_payload = Some(metadata.body.clone().into_bytes());
    prepared.mapping_version = Some(metadata.mapping.clone());
    let file = EvidenceFile {
        file_name: stored.item["fileName"]
            .as_str()
            .unwrap_or("evidence")
            .to_owned(),
        mime_type: stored.mime_type,
        content: content.into(),
    };
    let ctx = DeliveryContext {
        idempotency_key: item.idempotency_key.clone(),
        correlation_id: item.correlation_id.clone(),
    };
    let r = crate::delivery::within(timeout, store.upload(&metadata, &file, &ctx))
        .await
        .map(|receipt| DeliveryReceipt {
            target_ref: receipt.evidence_id,
            duplicate: receipt.duplicate,
            status: receipt.status,
        });
    (prepared, r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attachments_are_decoded_and_bad_base64_is_named() {
        let sdm = serde_json::json!({"included": [
            {"type": "submission", "id": "s"},
            {"type": "attachment", "id": "a1", "attributes": {
                "attachmentName": "photo.jpg", "attachmentMimeType": "image/jpeg",
                "attachmentContent": "aGVs\nbG8="}},
            {"type": "attachment", "id": "a2", "attributes": {"attachmentContent": ""}}
        ]});
        let a = attachments(&sdm).unwrap();
        assert_eq!(a.len(), 2);
        assert_eq!(
            (a[0].id, a[0].name, a[0].mime_type),
            ("a1", "photo.jpg", "image/jpeg")
        );
        assert_eq!(a[0].content, b"hello");
        assert_eq!(
            (a[1].name, a[1].mime_type),
            ("a2", "application/octet-stream")
        );
        let bad = serde_json::json!({"included": [
            {"type": "attachment", "id": "x", "attributes": {"attachmentContent": "%%%"}}
        ]});
        let e = attachments(&bad).err().unwrap_or_default();
        assert!(
            e.starts_with(
                "included[0] (attachment \"x\").attributes.attachmentContent: not base64"
            ),
            "{e}"
        );
    }
}
