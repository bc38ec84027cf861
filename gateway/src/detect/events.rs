//! What a change means: the snapshot kept per case and incident, and the pure comparison of a
//! snapshot with a freshly read NMPP document that yields NMPP domain events (`nmpp-event@1`).
//!
//! Event ids are name-based (a UUID v8 over SHA-256 of force, subject, event type and the facts
//! that define the change — the new value and the time the source system gives it), so the
//! same change read through `athena` or `athena_dw`, or read twice, is the same event: the
//! journal keeps it once (its idempotency key) and iHub drops a repeat (its `data.id`).

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use uuid::Uuid;

/// Version of the NMPP event model the detector writes.
pub const EVENT_MODEL_VERSION: &str = "1.0.0";

/// Every event type change detection emits (the exchange kinds of its outbound exchanges).
pub const EVENT_TYPES: &[&str] = &[
    "case.recorded",
    "case.allocated",
    "case.oicChanged",
    "case.statusChanged",
    "case.outcomeAssigned",
    "incident.graded",
    "incident.logEntry",
];

/// A group of case fields refreshed on its own schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Group {
    /// `status` → `case.statusChanged`.
    Status,
    /// `officerInCharge`, `supervisor` → `case.allocated`, `case.oicChanged`.
    Officer,
    /// `outcome` → `case.outcomeAssigned`.
    Outcome,
}

impl Group {
    /// Every group.
    pub const ALL: [Group; 3] = [Group::Status, Group::Officer, Group::Outcome];
}

/// What detection last saw of a case, per group, and which groups are waiting for their
/// refresh interval.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CaseSnapshot {
    /// Case status code.
    #[serde(default)]
    pub status: Option<Value>,
    /// Officer in charge (the NMPP officer object).
    #[serde(default)]
    pub officer: Option<Value>,
    /// Supervisor.
    #[serde(default)]
    pub supervisor: Option<Value>,
    /// Outcome.
    #[serde(default)]
    pub outcome: Option<Value>,
    /// When each group was last compared (Unix milliseconds).
    #[serde(default)]
    pub checked_ms: BTreeMap<Group, i64>,
    /// Groups marked by a change and not yet compared.
    #[serde(default)]
    pub pending: BTreeSet<Group>,
}

/// What detection last saw of a command-and-control incident.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IncidentSnapshot {
    /// Grading.
    #[serde(default)]
    pub grading: Option<Value>,
    /// Log entry ids already turned into events.
    #[serde(default)]
    pub log_entries: BTreeSet<String>,
}

/// Name-based event id: UUID v8 over SHA-256 of the parts.
pub fn event_id(parts: &[&str]) -> Uuid {
    let mut h = Sha256::new();
    h.update(b"nmpp-gateway/event/v1");
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p.as_bytes());
    }
    let d = h.finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    uuid::Builder::from_custom_bytes(b).into_uuid()
}

fn text(v: Option<&Value>) -> &str {
    v.and_then(Value::as_str).unwrap_or("")
}

fn officer_id(v: Option<&Value>) -> Option<&str> {
    v.and_then(|o| o.get("officerId")).and_then(Value::as_str)
}

/// One NMPP event document. (A private builder called from four places; a struct for its
/// arguments would only restate them.)
#[allow(clippy::too_many_arguments, clippy::needless_pass_by_value)]
fn event(
    force: &str,
    force_id: u32,
    subject: Value,
    subject_id: &str,
    kind: &str,
    facts: &[&str],
    occurred_at: &str,
    data: Value,
) -> Value {
    let mut parts = vec![force, subject_id, kind];
    parts.extend_from_slice(facts);
    json!({
        "modelVersion": EVENT_MODEL_VERSION,
        "eventId": event_id(&parts).to_string(),
        "type": kind,
        "occurredAt": occurred_at,
        "forceIdentifier": force_id,
        "subject": subject,
        "data": data,
    })
}

/// The time of the newest timeline entry of one of `types`, if any.
fn latest_timeline(doc: &Value, types: &[&str]) -> Option<String> {
    doc.get("timeline")?
        .as_array()?
        .iter()
        .filter(|e| types.contains(&text(e.get("type"))))
        .filter_map(|e| e.get("at").and_then(Value::as_str))
        .max()
        .map(str::to_owned)
}

/// Where a case comparison starts from.
pub struct CaseContext<'a> {
    /// Force key.
    pub force: &'a str,
    /// iHub force identifier.
    pub force_id: u32,
    /// Now, RFC 3339 (used when the source gives no time).
    pub now: &'a str,
}

/// A case seen for the first time: `case.recorded` with the whole record, and the snapshot to
/// keep (every group compared now).
pub fn first_sight(ctx: &CaseContext<'_>, doc: &Value, now_ms: i64) -> (Value, CaseSnapshot) {
    let reference = text(doc.get("crimeReference"));
    let recorded_at = doc
        .get("recordedAt")
        .and_then(Value::as_str)
        .unwrap_or(ctx.now);
    let ev = event(
        ctx.force,
        ctx.force_id,
        json!({ "crimeReference": reference }),
        reference,
        "case.recorded",
        &[],
        recorded_at,
        json!({ "caseRecord": doc }),
    );
    let mut snap = CaseSnapshot::default();
    for g in Group::ALL {
        take(&mut snap, g, doc);
        snap.checked_ms.insert(g, now_ms);
    }
    (ev, snap)
}

/// Copies group `g` of `doc` into the snapshot.
fn take(snap: &mut CaseSnapshot, g: Group, doc: &Value) {
    match g {
        Group::Status => snap.status = doc.get("status").cloned(),
        Group::Officer => {
            snap.officer = doc.get("officerInCharge").cloned();
            snap.supervisor = doc.get("supervisor").cloned();
        }
        Group::Outcome => snap.outcome = doc.get("outcome").cloned(),
    }
}

/// Compares group `g` of a fresh document with the snapshot, updates the snapshot, and returns
/// the event the difference means (none when nothing maps to something new).
pub fn compare(
    ctx: &CaseContext<'_>,
    snap: &mut CaseSnapshot,
    g: Group,
    doc: &Value,
    now_ms: i64,
) -> Option<Value> {
    let reference = text(doc.get("crimeReference")).to_owned();
    let subject = json!({ "crimeReference": reference });
    let out = match g {
        Group::Status => {
            let new = doc.get("status");
            if new.is_some() && new != snap.status.as_ref() {
                let at = text(doc.get("statusChangedAt"));
                let mut data = json!({ "status": new });
                if let Some(prev) = &snap.status {
                    data["previous"] = prev.clone();
                }
                Some(event(
                    ctx.force,
                    ctx.force_id,
                    subject,
                    &reference,
                    "case.statusChanged",
                    &[text(new), at],
                    if at.is_empty() { ctx.now } else { at },
                    data,
                ))
            } else {
                None
            }
        }
        Group::Officer => {
            let new = doc.get("officerInCharge");
            match (officer_id(snap.officer.as_ref()), officer_id(new)) {
                (old, Some(id)) if old != Some(id) => {
                    let at = latest_timeline(doc, &["allocated", "oicChanged"]).unwrap_or_default();
                    let occurred = if at.is_empty() { ctx.now } else { at.as_str() };
                    let (kind, data) = match &snap.officer {
                        None => {
                            let mut d = json!({ "officerInCharge": new });
                            if let Some(s) = doc.get("supervisor") {
                                d["supervisor"] = s.clone();
                            }
                            ("case.allocated", d)
                        }
                        Some(prev) => (
                            "case.oicChanged",
                            json!({ "officerInCharge": new, "previous": prev }),
                        ),
                    };
                    Some(event(
                        ctx.force,
                        ctx.force_id,
                        subject,
                        &reference,
                        kind,
                        &[id, &at],
                        occurred,
                        data,
                    ))
                }
                _ => None,
            }
        }
        Group::Outcome => {
            let new = doc.get("outcome");
            let code = |v: Option<&Value>| v.and_then(|o| o.get("code")).cloned();
            if new.is_some() && code(new) != code(snap.outcome.as_ref()) {
                let at = text(new.and_then(|o| o.get("assignedAt")));
                let c = code(new).map(|c| c.to_string()).unwrap_or_default();
                Some(event(
                    ctx.force,
                    ctx.force_id,
                    subject,
                    &reference,
                    "case.outcomeAssigned",
                    &[&c, at],
                    if at.is_empty() { ctx.now } else { at },
                    json!({ "outcome": new }),
                ))
            } else {
                None
            }
        }
    };
    take(snap, g, doc);
    snap.checked_ms.insert(g, now_ms);
    snap.pending.remove(&g);
    out
}

/// Compares an incident (`nmpp-incident@1`) with its snapshot: `incident.graded` when the
/// grading changed (or first appears), `incident.logEntry` for every log entry not seen yet.
pub fn compare_incident(
    ctx: &CaseContext<'_>,
    snap: &mut IncidentSnapshot,
    doc: &Value,
) -> Vec<Value> {
    let number = text(doc.get("incidentNumber")).to_owned();
    let subject = json!({ "incidentNumber": number });
    let mut out = Vec::new();
    if let Some(g) = doc.get("grading")
        && Some(g) != snap.grading.as_ref()
        && g.get("raw") != snap.grading.as_ref().and_then(|p| p.get("raw"))
    {
        let at = text(g.get("gradedAt"));
        let mut data = json!({ "grading": g });
        if let Some(prev) = &snap.grading {
            data["previous"] = prev.clone();
        }
        out.push(event(
            ctx.force,
            ctx.force_id,
            subject.clone(),
            &number,
            "incident.graded",
            &[text(g.get("raw")), at],
            if at.is_empty() { ctx.now } else { at },
            data,
        ));
    }
    if let Some(g) = doc.get("grading") {
        snap.grading = Some(g.clone());
    }
    for entry in doc
        .get("log")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(id) = entry.get("entryId").and_then(Value::as_str) else {
            continue;
        };
        if !snap.log_entries.insert(id.to_owned()) {
            continue;
        }
        let at = text(entry.get("at"));
        out.push(event(
            ctx.force,
            ctx.force_id,
            subject.clone(),
            &number,
            "incident.logEntry",
            &[id],
            if at.is_empty() { ctx.now } else { at },
            json!({ "entry": entry }),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> CaseContext<'static> {
        CaseContext {
            force: "kent",
            force_id: 46,
            now: "2026-03-01T00:00:00Z",
        }
    }

    fn case() -> Value {
        json!({
            "modelVersion": "1.0.0",
            "crimeReference": "46/1/2026",
            "recordedAt": "2026-01-01T10:00:00Z",
            "status": "CSTS_0001",
            "statusChangedAt": "2026-01-01T10:00:00Z",
            "timeline": [],
        })
    }

    #[test]
    fn ids_are_deterministic_and_distinct() {
        assert_eq!(event_id(&["a", "b"]), event_id(&["a", "b"]));
        assert_ne!(event_id(&["a", "b"]), event_id(&["ab", ""]));
        assert_eq!(event_id(&["a"]).get_version_num(), 8);
    }

    #[test]
    fn a_change_emits_once_and_a_no_op_emits_nothing() {
        let (rec, mut snap) = first_sight(&ctx(), &case(), 0);
        assert_eq!(rec["type"], "case.recorded");
        assert_eq!(compare(&ctx(), &mut snap, Group::Status, &case(), 1), None);
        let mut doc = case();
        doc["status"] = json!("CSTS_0002");
        doc["statusChangedAt"] = json!("2026-02-01T10:00:00Z");
        let ev = compare(&ctx(), &mut snap, Group::Status, &doc, 2).unwrap();
        assert_eq!(ev["type"], "case.statusChanged");
        assert_eq!(
            ev["data"],
            json!({"status": "CSTS_0002", "previous": "CSTS_0001"})
        );
        assert_eq!(ev["occurredAt"], "2026-02-01T10:00:00Z");
        assert_eq!(compare(&ctx(), &mut snap, Group::Status, &doc, 3), None);
        // The same change compared from an older snapshot gets the same id.
        let (_, mut again) = first_sight(&ctx(), &case(), 0);
        let ev2 = compare(&ctx(), &mut again, Group::Status, &doc, 2).unwrap();
        assert_eq!(ev["eventId"], ev2["eventId"]);
        mappings::model::validate_model("nmpp-event@1", &ev).unwrap();
    }

    #[test]
    fn officers_allocate_then_change() {
        let (_, mut snap) = first_sight(&ctx(), &case(), 0);
        let officer =
            |id: &str| json!({"officerId": id, "collarNumber": "1", "displayName": "PC 1 X"});
        let mut doc = case();
        doc["officerInCharge"] = officer("O1");
        let ev = compare(&ctx(), &mut snap, Group::Officer, &doc, 1).unwrap();
        assert_eq!(ev["type"], "case.allocated");
        doc["officerInCharge"] = officer("O2");
        let ev = compare(&ctx(), &mut snap, Group::Officer, &doc, 2).unwrap();
        assert_eq!(ev["type"], "case.oicChanged");
        assert_eq!(ev["data"]["previous"]["officerId"], "O1");
        assert_eq!(compare(&ctx(), &mut snap, Group::Officer, &doc, 3), None);
    }
}
