//! Adapters: one trait per kind of force system, one module per system.
//!
//! Layout (STYLE.md §2–4): each kind of system has a trait in this file; each system is a module
//! with the same file set — `config.rs` (typed config), `client.rs` (wire protocol),
//! `mapping.rs` (which mapping specs it uses) and `tests.rs`. A force chooses its systems with a
//! tagged config enum such as [`RecordSystemConfig`].
//!
//! Every failure is an [`AdapterError`] whose [`ErrorClass`] says where it came from and whether a
//! retry can help; retry, parking and replay branch on that class, never on message text.

pub mod athena;
pub mod athena_dw;
pub mod command_control;
pub mod dams;
mod error;
pub mod evidence;
mod http;
pub mod ihub;
pub mod kafka;
pub mod national;
mod oauth;
pub mod records;
pub mod sentinel;
pub mod sink;
pub mod splunk_hec;
pub mod storm;

pub use command_control::{CommandControl, CommandControlConfig};
pub use error::{AdapterError, ErrorClass};
pub use evidence::{EvidenceStore, EvidenceStoreConfig};
pub use national::{NationalPlatform, NationalPlatformConfig};
pub use records::RecordSystem;

use serde::{Deserialize, Serialize};

/// A payload already mapped to a target system's wire format, ready to send.
///
/// It is journalled before it is sent, so that an operator can see exactly what went out and a
/// replay through a newer mapping can show the difference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetPayload {
    /// MIME type of `body`, e.g. `application/xml`.
    pub content_type: String,
    /// The bytes to send, as text (every wire format we speak is textual).
    pub body: String,
    /// Identifier of the mapping spec and version that produced it, e.g. `nmpp-to-athena@1.0.0`.
    pub mapping: String,
}

/// What a delivery needs besides the payload.
#[derive(Debug, Clone)]
pub struct DeliveryContext {
    /// Sent downstream so the target can drop duplicates; the same for every retry and replay of
    /// one original exchange.
    pub idempotency_key: String,
    /// Correlation id carried end to end (logs, audit, target headers).
    pub correlation_id: String,
}

/// The target's answer to a successful delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryReceipt {
    /// The target's own reference for what was created or updated (e.g. an Athena crime
    /// reference).
    pub target_ref: String,
    /// True when the target reported it had already seen this idempotency key.
    pub duplicate: bool,
    /// HTTP status the target answered with.
    pub status: u16,
}

/// Which records system a force uses, chosen by `type` in the force's configuration.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum RecordSystemConfig {
    /// Direct Athena over its XML/HTTP interface.
    Athena(athena::AthenaConfig),
    /// Athena's read-only data warehouse (PostgreSQL), until the force may call Athena.
    AthenaDw(athena_dw::AthenaDwConfig),
}

impl RecordSystemConfig {
    /// Builds the adapter this configuration describes.
    pub fn build(
        &self,
        mappings: std::sync::Arc<mappings::Mappings>,
    ) -> Result<std::sync::Arc<dyn RecordSystem>, AdapterError> {
        match self {
            RecordSystemConfig::Athena(cfg) => Ok(std::sync::Arc::new(athena::AthenaClient::new(
                cfg.clone(),
                mappings,
            )?)),
            RecordSystemConfig::AthenaDw(cfg) => Ok(std::sync::Arc::new(
                athena_dw::AthenaDwClient::new(cfg.clone(), mappings)?,
            )),
        }
    }
}

/// Checks that `requested` (`id@version`, asked for by a replay) is a loaded version of spec
/// `id`, the spec that makes the payload at hand; returns its canonical name. Anything else is
/// a non-retryable `mapping` error naming the versions that are loaded.
pub(crate) fn versioned_spec(
    mappings: &mappings::Mappings,
    id: &str,
    requested: &str,
) -> Result<String, AdapterError> {
    let name = mappings
        .resolve(requested)
        .map_err(|e| AdapterError::new(ErrorClass::Mapping, e.to_string()))?;
    if name.split('@').next() != Some(id) {
        return Err(AdapterError::new(
            ErrorClass::Mapping,
            format!(
                "mapping {requested:?} does not make this payload, {id} does (loaded: {})",
                mappings.versions(id).join(", ")
            ),
        ));
    }
    Ok(name)
}
