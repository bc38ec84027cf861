//! The evidence-store trait (a DAMS) and the types its operations exchange.

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::{AdapterError, DeliveryContext, TargetPayload};

/// The file of an evidence item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvidenceFile {
    /// File name as uploaded.
    pub file_name: String,
    /// MIME type.
    pub mime_type: String,
    /// The bytes.
    pub content: bytes::Bytes,
}

/// The store's answer to an upload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvidenceReceipt {
    /// The evidence id the store assigned.
    pub evidence_id: String,
    /// The upload had already been received (same idempotency key).
    pub duplicate: bool,
    /// HTTP status.
    pub status: u16,
    /// The stored item as an NMPP evidence item (`nmpp-evidence@1`).
    pub item: serde_json::Value,
}

/// An evidence store.
#[async_trait]
pub trait EvidenceStore: Send + Sync {
    /// Short stable name (`dams`).
    fn name(&self) -> &'static str;

    /// Maps an NMPP evidence item to the upload's metadata. Pure; `mapping` on failure.
    fn prepare_upload(&self, item: &serde_json::Value) -> Result<TargetPayload, AdapterError>;

    /// Uploads `file` with its prepared metadata. The file's SHA-256 is computed and must equal
    /// the one in the metadata (else `rejected`, nothing sent); the store checks it again.
    async fn upload(
        &self,
        metadata: &TargetPayload,
        file: &EvidenceFile,
        ctx: &DeliveryContext,
    ) -> Result<EvidenceReceipt, AdapterError>;

    /// Cheap reachability check (the token endpoint included).
    async fn health(&self) -> Result<(), AdapterError>;
}

/// Which evidence store a force uses, chosen by `type`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum EvidenceStoreConfig {
    /// A DAMS with a REST API and OAuth2 client credentials.
    Dams(crate::dams::DamsConfig),
}

impl EvidenceStoreConfig {
    /// Builds the adapter this configuration describes.
    pub async fn build(
        &self,
        mappings: Arc<mappings::Mappings>,
    ) -> Result<Arc<dyn EvidenceStore>, AdapterError> {
        match self {
            Self::Dams(cfg) => Ok(Arc::new(crate::dams::DamsClient::new(
                cfg.clone(),
                mappings,
            )?)),
        }
    }
}
