//! The command-and-control trait (STORM, SMARTStorm) and the types its operations exchange.

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::records::ChangeCursor;
use crate::{AdapterError, DeliveryContext, TargetPayload};

/// What an incident message asks for (MAIT-like: create, update, close, log).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MessageKind {
    /// A new incident.
    Create,
    /// Changed fields of an incident, grading included.
    Update,
    /// Close an incident.
    Close,
    /// Append an entry to an incident's log.
    Log,
}

impl MessageKind {
    /// As written in the message (`CREATE`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "CREATE",
            Self::Update => "UPDATE",
            Self::Close => "CLOSE",
            Self::Log => "LOG",
        }
    }
}

/// An incident message in NMPP terms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IncidentMessage {
    /// What it asks for.
    pub kind: MessageKind,
    /// Unique id of the message: the system drops a repeated one. Use the exchange's
    /// idempotency key so a retry or replay is recognised.
    pub message_id: String,
    /// When it was sent (RFC 3339).
    pub sent: String,
    /// The incident (`nmpp-incident@1`); for `Log` and `Close` only `incidentNumber` (and the
    /// closure) matter.
    pub incident: serde_json::Value,
    /// For `Log`: the entry (`{"text": …, "author": …, "at": …}`).
    pub log_entry: Option<serde_json::Value>,
}

/// The system's acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncidentAck {
    /// The incident number (assigned by the system for a `Create`).
    pub incident_number: String,
    /// The log entry id, for a `Log`.
    pub log_entry_id: Option<String>,
    /// The message had already been accepted.
    pub duplicate: bool,
    /// HTTP status.
    pub status: u16,
}

/// One incident that changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncidentChange {
    /// The incident.
    pub incident_number: String,
    /// When.
    pub changed_at: String,
    /// `CREATED`, `UPDATED`, `GRADED`, `LOG`, `CLOSED`.
    pub kind: String,
}

/// A page of incident changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncidentChangePage {
    /// Changes in order.
    pub changes: Vec<IncidentChange>,
    /// The cursor after this page.
    pub next: ChangeCursor,
    /// More are waiting.
    pub more: bool,
}

/// A command-and-control system.
#[async_trait]
pub trait CommandControl: Send + Sync {
    /// Short stable name (`storm`).
    fn name(&self) -> &'static str;

    /// Maps a message to the wire format. Pure; a mapping failure is `mapping`.
    fn prepare_message(&self, message: &IncidentMessage) -> Result<TargetPayload, AdapterError>;

    /// Sends a prepared message.
    async fn send_message(
        &self,
        payload: &TargetPayload,
        ctx: &DeliveryContext,
    ) -> Result<IncidentAck, AdapterError>;

    /// Appends `entry` (`{"text": …}`) to an incident's log: a `Log` message whose id is the
    /// context's idempotency key.
    async fn append_log(
        &self,
        incident_number: &str,
        entry: &serde_json::Value,
        ctx: &DeliveryContext,
    ) -> Result<IncidentAck, AdapterError> {
        let message = IncidentMessage {
            kind: MessageKind::Log,
            message_id: ctx.idempotency_key.clone(),
            sent: now(),
            incident: serde_json::json!({ "modelVersion": "1.0.0", "incidentNumber": incident_number }),
            log_entry: Some(entry.clone()),
        };
        let payload = self.prepare_message(&message)?;
        self.send_message(&payload, ctx).await
    }

    /// Reads an incident as an NMPP command-and-control incident (grading normalised by the
    /// force's table, raw grade kept).
    async fn read_incident(&self, incident_number: &str)
    -> Result<serde_json::Value, AdapterError>;

    /// At most `limit` changes after `cursor`.
    async fn changes_since(
        &self,
        cursor: Option<&ChangeCursor>,
        limit: usize,
    ) -> Result<IncidentChangePage, AdapterError>;

    /// Cheap reachability check.
    async fn health(&self) -> Result<(), AdapterError>;
}

/// Now, RFC 3339 UTC.
pub(crate) fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Which command-and-control system a force uses, chosen by `type`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum CommandControlConfig {
    /// STORM or SMARTStorm over its XML/HTTP interface.
    Storm(crate::storm::StormConfig),
}

impl CommandControlConfig {
    /// Builds the adapter this configuration describes.
    pub async fn build(
        &self,
        mappings: Arc<mappings::Mappings>,
    ) -> Result<Arc<dyn CommandControl>, AdapterError> {
        match self {
            Self::Storm(cfg) => Ok(Arc::new(crate::storm::StormClient::new(
                cfg.clone(),
                mappings,
            )?)),
        }
    }
}
