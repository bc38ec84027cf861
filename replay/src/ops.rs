//! Backend-neutral pieces of the journal operations: the audit events they write and the words
//! of their refusals, so both backends say exactly the same thing.

use crate::{Attempt, AuditEvent, JournalError, ReplayOptions, RetentionPolicy, Transition};
use uuid::Uuid;

/// The audit record of an attempt that ended the exchange's delivery (delivered or parked).
pub(crate) fn outcome_event(
    id: Uuid,
    a: &Attempt,
    t: &Transition,
    force: String,
    kind: &str,
    correlation_id: String,
    target: &str,
) -> AuditEvent {
    let delivered = matches!(t, Transition::Delivered { .. });
    AuditEvent {
        time: a.finished_at,
        actor: "system".into(),
        role: "system".into(),
        force: Some(force),
        action: if delivered {
            "exchange.deliver"
        } else {
            "exchange.park"
        }
        .into(),
        object_type: Some("exchange".into()),
        object_id: Some(id.to_string()),
        result: if delivered { "success" } else { "failure" }.into(),
        source_ip: None,
        user_agent: None,
        correlation_id: Some(correlation_id),
        event_uid: Uuid::now_v7(),
        detail: Some(serde_json::json!({
            "kind": kind,
            "target": target,
            "attempt": a.number,
            "errorClass": a.error_class,
            "node": a.node,
        })),
    }
}

/// Why `record_attempt` refused, given the exchange's current state.
pub(crate) fn attempt_refusal(
    id: Uuid,
    a: &Attempt,
    status: &str,
    owner: Option<&str>,
    attempts: i64,
) -> JournalError {
    let why = if status != "pending" {
        format!("it is {status}")
    } else if owner != Some(a.node.as_str()) {
        match owner {
            Some(o) => format!("its lease is held by {o}, not {}", a.node),
            None => format!("{} holds no lease on it", a.node),
        }
    } else {
        format!("attempt {} was expected, not {}", attempts + 1, a.number)
    };
    JournalError::Conflict(format!(
        "attempt {} on exchange {id} refused: {why}",
        a.number
    ))
}

/// Fills in the audit record of a replay: object, force, child, job and options.
pub(crate) fn replay_event(
    mut audit: AuditEvent,
    parent: Uuid,
    child: Uuid,
    force: &str,
    options: &ReplayOptions,
    job: Option<Uuid>,
) -> AuditEvent {
    audit.force.get_or_insert_with(|| force.to_owned());
    audit.object_type = Some("exchange".into());
    audit.object_id = Some(parent.to_string());
    audit.event_uid = Uuid::now_v7();
    let mut detail = audit.detail.take().unwrap_or_else(|| serde_json::json!({}));
    if let Some(obj) = detail.as_object_mut() {
        obj.insert("child".into(), child.to_string().into());
        if let Some(t) = &options.target {
            obj.insert("target".into(), t.clone().into());
        }
        if let Some(m) = &options.mapping_version {
            obj.insert("mappingVersion".into(), m.clone().into());
        }
        if let Some(j) = job {
            obj.insert("job".into(), j.to_string().into());
        }
    }
    audit.detail = Some(detail);
    audit
}

/// Fills in an audit record about one exchange (park, unpark).
pub(crate) fn exchange_event(mut audit: AuditEvent, id: Uuid, force: &str) -> AuditEvent {
    audit.force.get_or_insert_with(|| force.to_owned());
    audit.object_type = Some("exchange".into());
    audit.object_id = Some(id.to_string());
    audit
}

/// Refusal of a replay whose parent is not parked.
pub(crate) fn not_parked(parent: Uuid, status: &str) -> JournalError {
    JournalError::Conflict(format!(
        "exchange {parent} is {status}; only parked exchanges can be replayed"
    ))
}

/// Refusal of a replay (or unpark) while a replay of it is live.
pub(crate) fn live_child(parent: Uuid, child: &str, status: &str) -> JournalError {
    JournalError::Conflict(format!(
        "exchange {parent} was already replayed as {child}, which is {status}"
    ))
}

/// How many exchanges one retention transaction deletes at most.
pub(crate) const RETENTION_CHUNK: usize = 5_000;

/// The audit record of one retention deletion.
pub(crate) fn retention_event(
    audit: &AuditEvent,
    policy: &RetentionPolicy,
    what: &str,
    count: u64,
    attempts: u64,
    extra: Option<(&str, serde_json::Value)>,
) -> AuditEvent {
    let mut ev = audit.clone();
    ev.event_uid = Uuid::now_v7();
    ev.action = "exchange.delete".into();
    ev.object_type = Some(what.into());
    ev.object_id = None;
    ev.force = Some(policy.force.clone());
    ev.result = "success".into();
    let mut detail = serde_json::json!({
        "policy": {
            "force": policy.force,
            "kind": policy.kind,
            "payloadsSecs": policy.payloads.map(|d| d.as_secs()),
            "metadataSecs": policy.metadata.map(|d| d.as_secs()),
        },
        "deleted": what,
        "exchanges": count,
        "attempts": attempts,
    });
    if let (Some((k, v)), Some(obj)) = (extra, detail.as_object_mut()) {
        obj.insert(k.into(), v);
    }
    ev.detail = Some(detail);
    ev
}

/// Checks the policies make sense; names the first that does not.
pub(crate) fn check_policies(policies: &[RetentionPolicy]) -> Result<(), JournalError> {
    for (i, p) in policies.iter().enumerate() {
        if p.force.is_empty() {
            return Err(JournalError::Invalid(format!(
                "retention policy {i}: force is empty"
            )));
        }
        if let (Some(pl), Some(md)) = (p.payloads, p.metadata)
            && md < pl
        {
            return Err(JournalError::Invalid(format!(
                "retention policy {i} ({}/{}): metadata kept for less time than payloads",
                p.force,
                p.kind.as_deref().unwrap_or("*")
            )));
        }
        if policies[..i]
            .iter()
            .any(|q| q.force == p.force && q.kind == p.kind)
        {
            return Err(JournalError::Invalid(format!(
                "retention policy {i} ({}/{}): a second policy for the same force and kind",
                p.force,
                p.kind.as_deref().unwrap_or("*")
            )));
        }
    }
    Ok(())
}

/// The kinds of `force` that have a policy of their own (a force-wide policy skips them).
pub(crate) fn explicit_kinds(policies: &[RetentionPolicy], force: &str) -> Vec<String> {
    policies
        .iter()
        .filter(|p| p.force == force)
        .filter_map(|p| p.kind.clone())
        .collect()
}
