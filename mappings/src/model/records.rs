//! Rust types of the NMPP models added for the force adapters (issue 4): the case record, the
//! officer, the command-and-control incident with its grading, evidence items, messages,
//! notification requests, officer tasks, contact-details changes and domain events. Each
//! mirrors one schema file of `schemas/nmpp/v1/`; the schema is the contract.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{Contact, Location, Party};

fn is_empty_map(m: &Map<String, Value>) -> bool {
    m.is_empty()
}

/// A crime record as the portal shows it (`case-record.schema.json`, model `nmpp-case@1`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CaseRecord {
    /// Model version (`1.0.0`).
    pub model_version: String,
    /// The force's crime reference.
    pub crime_reference: String,
    /// The force the case belongs to.
    pub force_identifier: u32,
    /// When the crime was recorded (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recorded_at: Option<String>,
    /// The iHub submission the record came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submission_id: Option<String>,
    /// What the crime was recorded as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offence: Option<Offence>,
    /// CSTS code.
    pub status: String,
    /// When the status last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_changed_at: Option<String>,
    /// The outcome, once assigned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    /// The officer in charge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub officer_in_charge: Option<Officer>,
    /// The officer in charge's supervisor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supervisor: Option<Officer>,
    /// The people on the case.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parties: Vec<Party>,
    /// What happened on the case, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub timeline: Vec<TimelineEntry>,
    /// Unmapped source fields.
    #[serde(default, skip_serializing_if = "is_empty_map")]
    pub extra: Map<String, Value>,
}

/// What a crime was recorded as.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Offence {
    /// Home Office offence code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// A crime outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Outcome {
    /// OUTCOME code (`"0"` to `"22"`).
    pub code: String,
    /// POCT code (data.police.uk category).
    pub public_category: String,
    /// When it was assigned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assigned_at: Option<String>,
}

/// An officer (`officer.schema.json`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Officer {
    /// The force's officer id.
    pub officer_id: String,
    /// Collar number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collar_number: Option<String>,
    /// RANK code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rank: Option<String>,
    /// Given name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub given_name: Option<String>,
    /// Surname.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub surname: Option<String>,
    /// Station or team.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub station: Option<String>,
    /// Unmapped source fields.
    #[serde(default, skip_serializing_if = "is_empty_map")]
    pub extra: Map<String, Value>,
}

/// One timeline entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TimelineEntry {
    /// When (RFC 3339).
    pub at: String,
    /// TLEV code.
    #[serde(rename = "type")]
    pub entry_type: String,
    /// Text safe to show the victim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// A command-and-control incident (`command-incident.schema.json`, model `nmpp-incident@1`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CommandIncident {
    /// Model version.
    pub model_version: String,
    /// Incident number.
    pub incident_number: String,
    /// Force.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force_identifier: Option<u32>,
    /// Opened at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opened_at: Option<String>,
    /// `open` or `closed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Closed at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_at: Option<String>,
    /// The force's closing code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closure_code: Option<String>,
    /// Incident type (raw).
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub incident_type: Option<String>,
    /// Summary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// Linked crime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crime_reference: Option<String>,
    /// The submission it came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submission_id: Option<String>,
    /// Where.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    /// Grading.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grading: Option<Grading>,
    /// Log entries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub log: Vec<LogEntry>,
    /// Unmapped source fields.
    #[serde(default, skip_serializing_if = "is_empty_map")]
    pub extra: Map<String, Value>,
}

/// An incident grading: the force's raw grade beside the normalised one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Grading {
    /// The raw grade.
    pub raw: String,
    /// GRAD code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub normalised: Option<String>,
    /// When graded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub graded_at: Option<String>,
}

/// An incident log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LogEntry {
    /// The system's entry id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry_id: Option<String>,
    /// When.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    /// Who wrote it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// Text.
    pub text: String,
}

/// An evidence item (`evidence-item.schema.json`, model `nmpp-evidence@1`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EvidenceItem {
    /// Model version.
    pub model_version: String,
    /// DAMS id once stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence_id: Option<String>,
    /// Crime reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crime_reference: Option<String>,
    /// Submission.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submission_id: Option<String>,
    /// File name.
    pub file_name: String,
    /// MIME type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
    /// Size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
    /// Lower-case hex SHA-256.
    pub sha256: String,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// When captured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub captured_at: Option<String>,
    /// When stored in the DAMS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored_at: Option<String>,
    /// Unmapped source fields.
    #[serde(default, skip_serializing_if = "is_empty_map")]
    pub extra: Map<String, Value>,
}

/// A message on a case (`message.schema.json`, model `nmpp-message@1`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Message {
    /// Model version.
    pub model_version: String,
    /// Message id (UUID).
    pub message_id: String,
    /// Crime reference.
    pub crime_reference: String,
    /// `fromPublic` or `toPublic`.
    pub direction: String,
    /// Sent at.
    pub sent_at: String,
    /// The party.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub party_id: Option<String>,
    /// The officer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub officer_id: Option<String>,
    /// Text.
    pub body: String,
    /// Unmapped source fields.
    #[serde(default, skip_serializing_if = "is_empty_map")]
    pub extra: Map<String, Value>,
}

/// A notification request (`notification.schema.json`, model `nmpp-notification@1`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Notification {
    /// Model version.
    pub model_version: String,
    /// Id (UUID).
    pub notification_id: String,
    /// Crime reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crime_reference: Option<String>,
    /// `sms` or `email`.
    pub channel: String,
    /// National template name.
    pub template: String,
    /// Whom to notify.
    pub recipient: Recipient,
    /// Template fields.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub personalisation: Map<String, Value>,
    /// Our reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// Unmapped source fields.
    #[serde(default, skip_serializing_if = "is_empty_map")]
    pub extra: Map<String, Value>,
}

/// Whom a notification is for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Recipient {
    /// The party on the case.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub party_id: Option<String>,
    /// The portal account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
}

/// A task for an officer (`officer-task.schema.json`, model `nmpp-task@1`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OfficerTask {
    /// Model version.
    pub model_version: String,
    /// Id (UUID).
    pub task_id: String,
    /// Crime reference.
    pub crime_reference: String,
    /// `respondToMessage`, `reviewEvidence`, `updateVictim`, `reviewContactDetails`.
    #[serde(rename = "type")]
    pub task_type: String,
    /// For whom.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub officer_id: Option<String>,
    /// Due by.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_by: Option<String>,
    /// Text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Unmapped source fields.
    #[serde(default, skip_serializing_if = "is_empty_map")]
    pub extra: Map<String, Value>,
}

/// New contact details for a party (`contact-change.schema.json`, model
/// `nmpp-contact-change@1`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContactChange {
    /// Model version.
    pub model_version: String,
    /// Id (UUID).
    pub change_id: String,
    /// Crime reference.
    pub crime_reference: String,
    /// The party.
    pub party_id: String,
    /// CPNC code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact_preference: Option<String>,
    /// New contact details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact: Option<Contact>,
    /// Unmapped source fields.
    #[serde(default, skip_serializing_if = "is_empty_map")]
    pub extra: Map<String, Value>,
}

/// The kinds of domain event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum EventType {
    /// A crime was recorded.
    #[serde(rename = "case.recorded")]
    CaseRecorded,
    /// A case was allocated to an officer in charge for the first time.
    #[serde(rename = "case.allocated")]
    CaseAllocated,
    /// The officer in charge changed.
    #[serde(rename = "case.oicChanged")]
    CaseOicChanged,
    /// The status changed.
    #[serde(rename = "case.statusChanged")]
    CaseStatusChanged,
    /// An outcome was assigned (or changed).
    #[serde(rename = "case.outcomeAssigned")]
    CaseOutcomeAssigned,
    /// An incident was graded or regraded.
    #[serde(rename = "incident.graded")]
    IncidentGraded,
    /// An entry was added to an incident log.
    #[serde(rename = "incident.logEntry")]
    IncidentLogEntry,
}

impl EventType {
    /// The event type as written in documents (`case.statusChanged`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CaseRecorded => "case.recorded",
            Self::CaseAllocated => "case.allocated",
            Self::CaseOicChanged => "case.oicChanged",
            Self::CaseStatusChanged => "case.statusChanged",
            Self::CaseOutcomeAssigned => "case.outcomeAssigned",
            Self::IncidentGraded => "incident.graded",
            Self::IncidentLogEntry => "incident.logEntry",
        }
    }
}

/// What an event is about.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Subject {
    /// The case.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crime_reference: Option<String>,
    /// The incident.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident_number: Option<String>,
}

/// A domain event (`event.schema.json`, model `nmpp-event@1`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Event {
    /// Model version.
    pub model_version: String,
    /// Id (UUID).
    pub event_id: String,
    /// Type.
    #[serde(rename = "type")]
    pub event_type: EventType,
    /// When it happened (RFC 3339).
    pub occurred_at: String,
    /// Force.
    pub force_identifier: u32,
    /// What it is about.
    pub subject: Subject,
    /// Type-specific data (see the schema).
    pub data: Map<String, Value>,
}
