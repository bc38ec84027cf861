//! The DAMS upload and the classification of every outcome.
//!
//! | answer | class |
//! |---|---|
//! | `201` (new), `200` (repeated `Idempotency-Key`) with an evidence resource | success |
//! | `401` | the cached token is dropped and the upload made once more; a second `401` is `unauthorized` |
//! | `403` | `unauthorized` |
//! | `422` (`CHECKSUM_MISMATCH`, …), other `4xx` | `rejected` (with the DAMS's error code and pointer) |
//! | `429`, `503` with `Retry-After` | `throttled` |
//! | other `5xx` | `upstream_5xx` |
//! | a success whose body is not an evidence resource | `protocol` |
//! | the file's SHA-256 differs from the metadata's | `rejected`, nothing sent |

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use mappings::Mappings;
use reqwest::header;
use reqwest::{StatusCode, Url};
use sha2::Digest as _;

use super::config::DamsConfig;
use super::mapping;
use crate::evidence::{EvidenceFile, EvidenceReceipt, EvidenceStore};
use crate::http::{self, ClientOptions};
use crate::oauth::TokenCache;
use crate::{AdapterError, DeliveryContext, ErrorClass, TargetPayload};

const TARGET: &str = "dams";
const MAX_ANSWER_BYTES: usize = 256 * 1024;

/// Client for one force's DAMS.
pub struct DamsClient {
    http: reqwest::Client,
    mappings: Arc<Mappings>,
    upload_url: Url,
    health_url: Url,
    tokens: TokenCache,
}

impl std::fmt::Debug for DamsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DamsClient")
            .field("upload_url", &self.upload_url.as_str())
            .finish_non_exhaustive()
    }
}

impl DamsClient {
    /// Checks `cfg` and builds the client (no token is fetched until the first call).
    #[allow(
        clippy::needless_pass_by_value,
        reason = "every adapter takes its configuration by value"
    )]
    pub fn new(cfg: DamsConfig, mappings: Arc<Mappings>) -> Result<Self, AdapterError> {
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
            identity_pem: None,
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
            upload_url: http::join(&base, "/api/v1/evidence"),
            health_url: http::join(&base, "/api/v1/health"),
            tokens,
        })
    }

    /// Tokens fetched so far (for tests).
    #[cfg(test)]
    pub(crate) fn tokens_fetched(&self) -> u64 {
        self.tokens.fetched()
    }

    async fn post_once(
        &self,
        metadata: &TargetPayload,
        file: &EvidenceFile,
        ctx: &DeliveryContext,
    ) -> Result<reqwest::Response, AdapterError> {
        let bearer = self.tokens.bearer().await?;
        let meta = reqwest::multipart::Part::text(metadata.body.clone())
            .mime_str(&metadata.content_type)
            .map_err(|_| AdapterError::new(ErrorClass::Internal, "dams: metadata content type"))?;
        let part = reqwest::multipart::Part::bytes(file.content.to_vec())
            .file_name(file.file_name.clone())
            .mime_str(&file.mime_type)
            .map_err(|_| {
                AdapterError::new(
                    ErrorClass::Mapping,
                    "dams: the file's MIME type is not valid",
                )
            })?;
        let form = reqwest::multipart::Form::new()
            .part("metadata", meta)
            .part("file", part);
        self.http
            .post(self.upload_url.clone())
            .header(header::AUTHORIZATION, bearer)
            .header("idempotency-key", &ctx.idempotency_key)
            .header("x-correlation-id", &ctx.correlation_id)
            .multipart(form)
            .send()
            .await
            .map_err(|e| http::classify_transport(TARGET, &e))
    }
}

#[async_trait]
impl EvidenceStore for DamsClient {
    fn name(&self) -> &'static str {
        TARGET
    }

    fn prepare_upload(&self, item: &serde_json::Value) -> Result<TargetPayload, AdapterError> {
        mapping::metadata(&self.mappings, item)
    }

    #[tracing::instrument(
        name = "dams.upload",
        skip_all,
        fields(adapter = "dams", size = file.content.len(), idempotency_key = %ctx.idempotency_key, correlation_id = %ctx.correlation_id)
    )]
    async fn upload(
        &self,
        metadata: &TargetPayload,
        file: &EvidenceFile,
        ctx: &DeliveryContext,
    ) -> Result<EvidenceReceipt, AdapterError> {
        let declared: serde_json::Value = serde_json::from_str(&metadata.body).map_err(|_| {
            AdapterError::new(
                ErrorClass::Internal,
                "dams: the prepared metadata is not JSON",
            )
        })?;
        let actual = hex::encode(sha2::Sha256::digest(&file.content));
        match declared
            .pointer("/data/attributes/sha256")
            .and_then(serde_json::Value::as_str)
        {
            Some(sha) if sha.eq_ignore_ascii_case(&actual) => {}
            _ => {
                return Err(AdapterError::new(
                    ErrorClass::Rejected,
                    "dams: the file's SHA-256 is not the one in the evidence item; nothing was sent",
                ));
            }
        }
        let started = Instant::now();
        let mut refreshed = false;
        let (status, body) = loop {
            let response = self.post_once(metadata, file, ctx).await?;
            let status = response.status();
            let after = http::retry_after(response.headers());
            if status == StatusCode::UNAUTHORIZED && !refreshed {
                tracing::info!("dams answered 401; renewing the access token");
                self.tokens.invalidate().await;
                refreshed = true;
                continue;
            }
            if !matches!(status, StatusCode::OK | StatusCode::CREATED) {
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
                tracing::warn!(class = %error.class, status = error.status, error = %error.message, "dams upload failed");
                return Err(error);
            }
            let body = http::read_limited(TARGET, response, MAX_ANSWER_BYTES)
                .await
                .map_err(|e| e.with_status(status.as_u16()))?;
            break (status, body);
        };
        let protocol = |what: &str| {
            AdapterError::new(
                ErrorClass::Protocol,
                format!("dams answered {}: {what}", status.as_u16()),
            )
            .with_status(status.as_u16())
        };
        let answer: serde_json::Value =
            serde_json::from_str(&body).map_err(|_| protocol("a body that is not JSON"))?;
        let evidence_id = answer
            .pointer("/data/id")
            .and_then(serde_json::Value::as_str)
            .filter(|id| !id.is_empty() && id.len() <= 128)
            .ok_or_else(|| protocol("no evidence id at /data/id"))?
            .to_owned();
        let item = mapping::evidence(&self.mappings, &answer)?;
        tracing::debug!(
            status = status.as_u16(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "dams stored the evidence"
        );
        Ok(EvidenceReceipt {
            evidence_id,
            duplicate: status == StatusCode::OK,
            status: status.as_u16(),
            item,
        })
    }

    #[tracing::instrument(name = "dams.health", skip_all, fields(adapter = "dams"))]
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
