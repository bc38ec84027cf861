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

    /// The id of the mapping spec [`NationalPlatform::prepare_event`] runs
    /// (`nmpp-to-ihub-event`); `None` when it maps through no spec.
    fn event_spec(&self) -> Option<&'static str> {
        None
    }

    /// [`NationalPlatform::prepare_event`] through a given version of its spec
    /// (`nmpp-to-ihub-event@1.0.0`, asked for by a replay); `None` is the current version. An
    /// unknown version or another spec is a non-retryable `mapping` error.
    fn prepare_event_with(
        &self,
        event: &serde_json::Value,
        mapping: Option<&str>,
    ) -> Result<TargetPayload, AdapterError> {
        match mapping {
            None => self.prepare_event(event),
            Some(m) => Err(AdapterError::new(
                crate::ErrorClass::Mapping,
                format!(
                    "{} maps no events through a spec, so it cannot use {m}",
                    self.name()
                ),
            )),
        }
    }

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
