//! The records-system trait (Athena direct, or its read-only data warehouse) and the types its
//! operations exchange.
//!
//! Reads answer NMPP documents (mapped by the adapter's specs); writes are prepared first (pure
//! mapping, so the target payload can be journalled) and then sent. Change detection is a pull:
//! [`RecordSystem::changes_since`] answers the crime references that changed after an opaque
//! [`ChangeCursor`], which the caller stores and hands back. Both adapters can also give a
//! cursor for a point in time ([`RecordSystem::cursor_at`]), which is how a force's change
//! detection moves from one records system to the other without missing a change.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::{AdapterError, DeliveryContext, DeliveryReceipt, TargetPayload};

/// A case read from a records system.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseRead {
    /// The crime reference read.
    pub crime_reference: String,
    /// The NMPP case record (model `nmpp-case@1`, schema-checked).
    pub document: serde_json::Value,
    /// `id@version` of the spec that mapped it.
    pub mapping: String,
}

/// Where change detection is in a records system's changes. Opaque to callers: store it and
/// hand it back. Each adapter documents its form (`athena`: a change-feed sequence number,
/// `athena_dw`: `last_modified_ts|crime_key`), and its name (`kind`) says which adapter made
/// it, so a cursor is never handed to the wrong kind of system.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ChangeCursor {
    /// The adapter that made it (`athena`, `athena_dw`).
    pub kind: String,
    /// The position, in that adapter's form.
    pub position: String,
}

/// One record that changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordChange {
    /// The crime reference.
    pub crime_reference: String,
    /// When the system says it changed (RFC 3339).
    pub changed_at: String,
    /// What changed, when the system says (`STATUS`, `OFFICER`, …); the warehouse cannot say.
    pub kind: Option<String>,
}

/// A page of changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangePage {
    /// Changes in the order they happened (a record may appear more than once).
    pub changes: Vec<RecordChange>,
    /// The cursor after the last change of this page (the same cursor when there are none).
    pub next: ChangeCursor,
    /// Whether more changes are waiting now.
    pub more: bool,
}

/// A write to a records system, in NMPP terms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "operation", rename_all = "camelCase")]
pub enum RecordWrite {
    /// Log a contact with the victim: an NMPP message (`nmpp-message@1`).
    VictimContact {
        /// The message.
        message: serde_json::Value,
    },
    /// Create an officer task (`nmpp-task@1`).
    OfficerTask {
        /// The task.
        task: serde_json::Value,
    },
    /// Record a party's new contact details (`nmpp-contact-change@1`).
    ContactDetails {
        /// The change.
        change: serde_json::Value,
    },
}

/// What kind of write a [`PreparedWrite`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum WriteOperation {
    /// A victim-contact-log entry.
    VictimContact,
    /// An officer task.
    OfficerTask,
    /// A party's contact details.
    ContactDetails,
}

/// A write mapped to the target's wire format, ready to journal and send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreparedWrite {
    /// What it is.
    pub operation: WriteOperation,
    /// The crime record it goes to.
    pub crime_reference: String,
    /// The party, for contact details.
    pub party_id: Option<String>,
    /// The payload.
    pub payload: TargetPayload,
}

/// A records management system: Athena, or its data warehouse (read-only).
#[async_trait]
pub trait RecordSystem: Send + Sync {
    /// Short stable name used in metrics, health and the journal (`athena`, `athena_dw`).
    fn name(&self) -> &'static str;

    /// Whether every write is refused (the data warehouse).
    fn read_only(&self) -> bool {
        false
    }

    /// Maps a canonical NMPP submission document to this system's "create crime record"
    /// payload. Pure: no I/O. A mapping failure is a non-retryable [`ErrorClass::Mapping`].
    ///
    /// [`ErrorClass::Mapping`]: crate::ErrorClass::Mapping
    fn prepare_crime_record(&self, nmpp: &serde_json::Value)
    -> Result<TargetPayload, AdapterError>;

    /// The id of the mapping spec [`RecordSystem::prepare_crime_record`] runs
    /// (`nmpp-to-athena`); `None` for a system that creates no crime records.
    fn crime_record_spec(&self) -> Option<&'static str> {
        None
    }

    /// [`RecordSystem::prepare_crime_record`] through a given version of its spec
    /// (`nmpp-to-athena@2.0.0`, asked for by a replay); `None` is the current version. A
    /// version that is not loaded, or a spec that is not this system's crime-record spec, is a
    /// non-retryable [`ErrorClass::Mapping`] error naming what is loaded.
    ///
    /// [`ErrorClass::Mapping`]: crate::ErrorClass::Mapping
    fn prepare_crime_record_with(
        &self,
        nmpp: &serde_json::Value,
        mapping: Option<&str>,
    ) -> Result<TargetPayload, AdapterError> {
        match mapping {
            None => self.prepare_crime_record(nmpp),
            Some(m) => Err(AdapterError::new(
                crate::ErrorClass::Mapping,
                format!(
                    "{} maps no crime records through a spec, so it cannot use {m}",
                    self.name()
                ),
            )),
        }
    }

    /// Sends a prepared "create crime record" payload.
    async fn create_crime_record(
        &self,
        payload: &TargetPayload,
        ctx: &DeliveryContext,
    ) -> Result<DeliveryReceipt, AdapterError>;

    /// Reads a crime record with its parties, officer in charge, supervisor, status, outcome
    /// and timeline, as an NMPP case record. An unknown reference is `rejected` (`404`); an
    /// answer that cannot be parsed is `protocol`; one that cannot be mapped (an unknown code)
    /// is `mapping`.
    async fn read_case(&self, crime_reference: &str) -> Result<CaseRead, AdapterError>;

    /// Maps a write to this system's wire format. Pure. A read-only system refuses here.
    fn prepare_write(&self, write: &RecordWrite) -> Result<PreparedWrite, AdapterError>;

    /// Sends a prepared write, with the context's idempotency key.
    async fn write(
        &self,
        prepared: &PreparedWrite,
        ctx: &DeliveryContext,
    ) -> Result<DeliveryReceipt, AdapterError>;

    /// At most `limit` changes after `cursor` (`None`: from the beginning of what the system
    /// keeps). A cursor made by another kind of adapter is `internal`.
    async fn changes_since(
        &self,
        cursor: Option<&ChangeCursor>,
        limit: usize,
    ) -> Result<ChangePage, AdapterError>;

    /// A cursor from which [`Self::changes_since`] answers every change made at or after `at`
    /// (RFC 3339), possibly with some made a little before: callers compare documents, so a
    /// change seen twice emits nothing the second time. Used to hand change detection over from
    /// one records system to the other.
    async fn cursor_at(&self, at: &str) -> Result<ChangeCursor, AdapterError>;

    /// Cheap reachability check used by `/health/ready`.
    async fn health(&self) -> Result<(), AdapterError>;
}

/// The crime reference a write is for, from its NMPP document (`crimeReference`), and the
/// party (`partyId`) for contact details. A missing reference is a mapping error.
pub(crate) fn write_target(
    write: &RecordWrite,
) -> Result<(WriteOperation, &serde_json::Value, Option<String>, String), AdapterError> {
    let (operation, doc) = match write {
        RecordWrite::VictimContact { message } => (WriteOperation::VictimContact, message),
        RecordWrite::OfficerTask { task } => (WriteOperation::OfficerTask, task),
        RecordWrite::ContactDetails { change } => (WriteOperation::ContactDetails, change),
    };
    let reference = doc
        .get("crimeReference")
        .and_then(serde_json::Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            AdapterError::new(
                crate::ErrorClass::Mapping,
                "the write has no crimeReference: required",
            )
        })?
        .to_owned();
    let party = doc
        .get("partyId")
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned);
    if operation == WriteOperation::ContactDetails && party.is_none() {
        return Err(AdapterError::new(
            crate::ErrorClass::Mapping,
            "the contact-details change has no partyId: required",
        ));
    }
    Ok((operation, doc, party, reference))
}
