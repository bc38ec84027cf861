//! The national-platform trait (iHub, outbound) and its configuration enum.

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::{AdapterError, DeliveryContext, DeliveryReceipt, TargetPayload};

/// The national platform, outbound: case events and notification requests.
#[async_trait]
pub trait NationalPlatform: Send + Sync {
    /// Short stable name (`ihub`).
    fn name(&self) -> &'static str;

    /// Maps an NMPP domain event (`nmpp-event@1`) to the platform's format. Pure.
    fn prepare_event(&self, event: &serde_json::Value) -> Result<TargetPayload, AdapterError>;

    /// Maps an NMPP notification request (`nmpp-notification@1`). Pure.
    fn prepare_notification(
        &self,
        notification: &serde_json::Value,
    ) -> Result<TargetPayload, AdapterError>;

    /// Pushes a prepared case event. The platform drops a repeated event id.
    async fn push_event(
        &self,
        payload: &TargetPayload,
        ctx: &DeliveryContext,
    ) -> Result<DeliveryReceipt, AdapterError>;

    /// Pushes a prepared notification request.
    async fn push_notification(
        &self,
        payload: &TargetPayload,
        ctx: &DeliveryContext,
    ) -> Result<DeliveryReceipt, AdapterError>;

    /// Cheap reachability check.
    async fn health(&self) -> Result<(), AdapterError>;
}

/// Which national platform a force delivers to, chosen by `type`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum NationalPlatformConfig {
    /// iHub's JSON:API with OAuth2 client credentials and optional mutual TLS.
    Ihub(crate::ihub::IhubConfig),
}

impl NationalPlatformConfig {
    /// Builds the adapter this configuration describes.
    pub async fn build(
        &self,
        mappings: Arc<mappings::Mappings>,
    ) -> Result<Arc<dyn NationalPlatform>, AdapterError> {
        match self {
            Self::Ihub(cfg) => Ok(Arc::new(crate::ihub::IhubClient::new(
                cfg.clone(),
                mappings,
            )?)),
        }
    }
}
