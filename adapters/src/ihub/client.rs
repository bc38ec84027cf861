//! The iHub calls and the classification of every outcome.
//!
//! | answer | class |
//! |---|---|
//! | `202` (accepted), `200` (already received: `duplicate`), `201` | success |
//! | `401` | the cached token is dropped and the call made once more; a second `401` is `unauthorized` |
//! | `403` | `unauthorized` |
//! | `400`, `415`, `422`, other `4xx` | `rejected` (with iHub's error codes and pointers) |
//! | `429`, `503` with `Retry-After` | `throttled` |
//! | other `5xx` | `upstream_5xx` |
//! | a success whose body is not a JSON:API receipt | `protocol` |
//! | TLS handshake refused (no or wrong client certificate) | `connect` |

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use mappings::Mappings;
use reqwest::header;
use reqwest::{StatusCode, Url};

use super::config::IhubConfig;
use super::mapping;
use crate::http::{self, ClientOptions};
use crate::national::NationalPlatform;
use crate::oauth::TokenCache;
use crate::{AdapterError, DeliveryContext, DeliveryReceipt, ErrorClass, TargetPayload};

const TARGET: &str = "ihub";
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Client for iHub, for one force.
pub struct IhubClient {
    http: reqwest::Client,
    mappings: Arc<Mappings>,
    events_url: Url,
    notifications_url: Url,
    health_url: Url,
    tokens: TokenCache,
    mutual_tls: bool,
}

impl std::fmt::Debug for IhubClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IhubClient")
            .field("events_url", &self.events_url.as_str())
            .field("mutual_tls", &self.mutual_tls)
            .finish_non_exhaustive()
    }
}

impl IhubClient {
    /// Checks `cfg` (URLs, credentials, PEM material) and builds the client.
    #[allow(
        clippy::needless_pass_by_value,
        reason = "every adapter takes its configuration by value"
    )]
    pub fn new(cfg: IhubConfig, mappings: Arc<Mappings>) -> Result<Self, AdapterError> {
        let base = http::base_url(TARGET, "base_url", &cfg.base_url)?;
        http::base_url(TARGET, "token_url", &cfg.token_url)?;
        if cfg.client_id.trim().is_empty() {
            return Err(http::config_error(TARGET, "client_id", "must not be empty"));
        }
        if cfg.client_secret.expose().is_empty() {
            return Err(http::config_error(
                TARGET,
                "client_secret",
                "must not be empty",
            ));
        }
        let http = http::client(&ClientOptions {
            adapter: TARGET,
            timeout_ms: cfg.timeout_ms,
            connect_timeout_ms: cfg.connect_timeout_ms,
            ca_pem: cfg.ca_pem.as_deref(),
            identity_pem: cfg.client_certificate.as_ref().map(|s| s.expose()),
        })?;
        let tokens = TokenCache::new(
            TARGET,
            http.clone(),
            &cfg.token_url,
            &cfg.client_id,
            &cfg.client_secret,
            cfg.scope.clone(),
            Duration::from_secs(cfg.token_refresh_margin_s),
        )?;
        Ok(Self {
            http,
            mappings,
            events_url: http::join(&base, "/ihub/v1/case-events"),
            notifications_url: http::join(&base, "/ihub/v1/notifications"),
            health_url: http::join(&base, "/ihub/v1/health"),
            tokens,
            mutual_tls: cfg.client_certificate.is_some(),
        })
    }

    async fn push(
        &self,
        url: &Url,
        payload: &TargetPayload,
        ctx: &DeliveryContext,
    ) -> Result<DeliveryReceipt, AdapterError> {
        let started = Instant::now();
        let mut refreshed = false;
        loop {
            let bearer = self.tokens.bearer().await?;
            let response = self
                .http
                .post(url.clone())
                .header(header::AUTHORIZATION, bearer)
                .header(header::CONTENT_TYPE, &payload.content_type)
                .header("idempotency-key", &ctx.idempotency_key)
                .header("x-correlation-id", &ctx.correlation_id)
                .body(payload.body.clone())
                .send()
                .await
                .map_err(|e| http::classify_transport(TARGET, &e))?;
            let status = response.status();
            let after = http::retry_after(response.headers());
            if status == StatusCode::UNAUTHORIZED && !refreshed {
                tracing::info!("ihub answered 401; renewing the access token");
                self.tokens.invalidate().await;
                refreshed = true;
                continue;
            }
            if !status.is_success() {
                let body = http::read_limited(TARGET, response, MAX_ANSWER_BYTES)
                    .await
                    .ok();
                let error = http::classify_status(
                    TARGET,
                    status,
                    after,
                    body.as_deref()
                        .and_then(http::jsonapi_error_detail)
                        .as_deref(),
                );
                tracing::warn!(class = %error.class, status = error.status, error = %error.message, "ihub delivery failed");
                return Err(error);
            }
            let body = http::read_limited(TARGET, response, MAX_ANSWER_BYTES)
                .await
                .map_err(|e| e.with_status(status.as_u16()))?;
            let receipt: serde_json::Value = serde_json::from_str(&body).map_err(|_| {
                AdapterError::new(
                    ErrorClass::Protocol,
                    format!(
                        "ihub answered {} with a body that is not JSON",
                        status.as_u16()
                    ),
                )
                .with_status(status.as_u16())
            })?;
            let id = receipt
                .pointer("/data/id")
                .and_then(serde_json::Value::as_str)
                .filter(|id| !id.is_empty())
                .ok_or_else(|| {
                    AdapterError::new(
                        ErrorClass::Protocol,
                        format!("ihub answered {} without a receipt id", status.as_u16()),
                    )
                    .with_status(status.as_u16())
                })?
                .to_owned();
            tracing::debug!(
                status = status.as_u16(),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "ihub accepted the delivery"
            );
            return Ok(DeliveryReceipt {
                target_ref: id,
                duplicate: status == StatusCode::OK,
                status: status.as_u16(),
            });
        }
    }
}

#[async_trait]
impl NationalPlatform for IhubClient {
    fn name(&self) -> &'static str {
        TARGET
    }

    fn prepare_event(&self, event: &serde_json::Value) -> Result<TargetPayload, AdapterError> {
        mapping::render(&self.mappings, mapping::EVENT_SPEC, event)
    }

    fn event_spec(&self) -> Option<&'static str> {
        Some(mapping::EVENT_SPEC)
    }

    fn prepare_event_with(
        &self,
        event: &serde_json::Value,
        version: Option<&str>,
    ) -> Result<TargetPayload, AdapterError> {
        match version {
            None => self.prepare_event(event),
            Some(v) => {
                let spec = crate::versioned_spec(&self.mappings, mapping::EVENT_SPEC, v)?;
                mapping::render(&self.mappings, &spec, event)
            }
        }
    }

    fn prepare_notification(
        &self,
        notification: &serde_json::Value,
    ) -> Result<TargetPayload, AdapterError> {
        mapping::render(&self.mappings, mapping::NOTIFICATION_SPEC, notification)
    }

    #[tracing::instrument(
        name = "ihub.push_event",
        skip_all,
        fields(adapter = "ihub", mapping = %payload.mapping, idempotency_key = %ctx.idempotency_key, correlation_id = %ctx.correlation_id, mutual_tls = self.mutual_tls)
    )]
    async fn push_event(
        &self,
        payload: &TargetPayload,
        ctx: &DeliveryContext,
    ) -> Result<DeliveryReceipt, AdapterError> {
        self.push(&self.events_url, payload, ctx).await
    }

    #[tracing::instrument(
        name = "ihub.push_notification",
        skip_all,
        fields(adapter = "ihub", mapping = %payload.mapping, idempotency_key = %ctx.idempotency_key, correlation_id = %ctx.correlation_id, mutual_tls = self.mutual_tls)
    )]
    async fn push_notification(
        &self,
        payload: &TargetPayload,
        ctx: &DeliveryContext,
    ) -> Result<DeliveryReceipt, AdapterError> {
        self.push(&self.notifications_url, payload, ctx).await
    }

    #[tracing::instrument(name = "ihub.health", skip_all, fields(adapter = "ihub"))]
    async fn health(&self) -> Result<(), AdapterError> {
        self.tokens.bearer().await?;
        let response = self
            .http
            .get(self.health_url.clone())
            .send()
            .await
            .map_err(|e| http::classify_transport(TARGET, &e))?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(http::classify_status(
                TARGET,
                status,
                http::retry_after(response.headers()),
                None,
            ))
        }
    }
}
