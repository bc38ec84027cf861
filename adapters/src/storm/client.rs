//! The STORM wire protocol (`fixtures/STORM.md`) and the classification of every outcome:
//! transport failures and statuses as in `crate::http` (`5xx` → `upstream_5xx`, `429` →
//! `throttled`, other `4xx` → `rejected` with STORM's `<Error>` code and field), an answer that
//! is not the expected XML → `protocol`, an incident the spec cannot map (an unknown grade) →
//! `mapping`.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use mappings::Mappings;
use reqwest::header::{self, HeaderValue};
use reqwest::{StatusCode, Url};
use serde_json::Value;

use super::config::StormConfig;
use super::mapping;
use crate::command_control::{
    CommandControl, IncidentAck, IncidentChange, IncidentChangePage, IncidentMessage,
};
use crate::http::{self, ClientOptions};
use crate::records::ChangeCursor;
use crate::{AdapterError, DeliveryContext, ErrorClass, TargetPayload};

const TARGET: &str = "storm";
const MAX_ANSWER_BYTES: usize = 4 * 1024 * 1024;

/// Client for one force's STORM.
pub struct StormClient {
    http: reqwest::Client,
    mappings: Arc<Mappings>,
    base: Url,
    auth: Option<HeaderValue>,
}

impl std::fmt::Debug for StormClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StormClient")
            .field("base", &self.base.as_str())
            .finish_non_exhaustive()
    }
}

impl StormClient {
    /// Checks `cfg` and builds the client.
    #[allow(
        clippy::needless_pass_by_value,
        reason = "every adapter takes its configuration by value"
    )]
    pub fn new(cfg: StormConfig, mappings: Arc<Mappings>) -> Result<Self, AdapterError> {
        let base = http::base_url(TARGET, "base_url", &cfg.base_url)?;
        let http = http::client(&ClientOptions {
            adapter: TARGET,
            timeout_ms: cfg.timeout_ms,
            connect_timeout_ms: cfg.connect_timeout_ms,
            ca_pem: None,
            identity_pem: None,
        })?;
        let auth = match &cfg.api_key {
            None => None,
            Some(key) if key.expose().trim().is_empty() => {
                return Err(http::config_error(TARGET, "api_key", "must not be empty"));
            }
            Some(key) => {
                let mut v =
                    HeaderValue::from_str(&format!("Bearer {}", key.expose())).map_err(|_| {
                        http::config_error(TARGET, "api_key", "not a valid header value")
                    })?;
                v.set_sensitive(true);
                Some(v)
            }
        };
        Ok(Self {
            http,
            mappings,
            base,
            auth,
        })
    }

    fn request(&self, method: reqwest::Method, url: Url) -> reqwest::RequestBuilder {
        let r = self.http.request(method, url);
        match &self.auth {
            Some(a) => r.header(header::AUTHORIZATION, a.clone()),
            None => r,
        }
    }

    /// Sends and reads the body of a `2xx` answer; anything else classified.
    async fn exchange(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<(StatusCode, String), AdapterError> {
        let response = request
            .send()
            .await
            .map_err(|e| http::classify_transport(TARGET, &e))?;
        let status = response.status();
        let after = http::retry_after(response.headers());
        if !status.is_success() {
            let body = http::read_limited(TARGET, response, 64 * 1024).await.ok();
            return Err(http::classify_status(
                TARGET,
                status,
                after,
                body.as_deref().and_then(error_detail).as_deref(),
            ));
        }
        let body = http::read_limited(TARGET, response, MAX_ANSWER_BYTES)
            .await
            .map_err(|e| e.with_status(status.as_u16()))?;
        Ok((status, body))
    }
}

/// `Code` and `Field` of a STORM `<Error>` (never its message, which could echo data).
fn error_detail(body: &str) -> Option<String> {
    let (root, tree) = mappings::xml::from_xml(body).ok()?;
    if root != "Error" {
        return None;
    }
    let code = tree.get("Code").and_then(Value::as_str).map(http::clean)?;
    Some(match tree.get("Field").and_then(Value::as_str) {
        Some(f) => format!("code {code}, field {}", http::clean(f)),
        None => format!("code {code}"),
    })
}

fn protocol(what: &str, status: StatusCode) -> AdapterError {
    AdapterError::new(
        ErrorClass::Protocol,
        format!("storm answered {}: {what}", status.as_u16()),
    )
    .with_status(status.as_u16())
}

fn text(v: &Value, key: &str) -> Option<String> {
    v.get(key)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

#[async_trait]
impl CommandControl for StormClient {
    fn name(&self) -> &'static str {
        TARGET
    }

    fn prepare_message(&self, message: &IncidentMessage) -> Result<TargetPayload, AdapterError> {
        mapping::message(&self.mappings, message)
    }

    #[tracing::instrument(
        name = "storm.send_message",
        skip_all,
        fields(adapter = "storm", mapping = %payload.mapping, idempotency_key = %ctx.idempotency_key, correlation_id = %ctx.correlation_id)
    )]
    async fn send_message(
        &self,
        payload: &TargetPayload,
        ctx: &DeliveryContext,
    ) -> Result<IncidentAck, AdapterError> {
        let started = Instant::now();
        let request = self
            .request(
                reqwest::Method::POST,
                http::join(&self.base, "/storm/v1/messages"),
            )
            .header(header::CONTENT_TYPE, "application/xml")
            .header("idempotency-key", &ctx.idempotency_key)
            .header("x-correlation-id", &ctx.correlation_id)
            .body(payload.body.clone());
        let outcome = self.exchange(request).await;
        let (status, body) = match outcome {
            Ok(x) => x,
            Err(error) => {
                tracing::warn!(class = %error.class, status = error.status, error = %error.message, "storm message failed");
                return Err(error);
            }
        };
        let (root, tree) = mappings::xml::from_xml(&body)
            .map_err(|_| protocol("XML that is not well-formed", status))?;
        if root != "Acknowledgement" {
            return Err(protocol("not an <Acknowledgement>", status));
        }
        let incident_number = text(&tree, "IncidentNumber")
            .ok_or_else(|| protocol("an <Acknowledgement> without an <IncidentNumber>", status))?;
        tracing::debug!(
            status = status.as_u16(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "storm acknowledged the message"
        );
        Ok(IncidentAck {
            incident_number,
            log_entry_id: text(&tree, "LogEntryId"),
            duplicate: status == StatusCode::OK,
            status: status.as_u16(),
        })
    }

    #[tracing::instrument(name = "storm.read_incident", skip_all, fields(adapter = "storm", incident_number = %incident_number))]
    async fn read_incident(&self, incident_number: &str) -> Result<Value, AdapterError> {
        let url = http::join(
            &self.base,
            &format!("/storm/v1/incidents/{incident_number}"),
        );
        let (status, body) = self
            .exchange(self.request(reqwest::Method::GET, url))
            .await?;
        let (root, tree) = mappings::xml::from_xml(&body)
            .map_err(|_| protocol("XML that is not well-formed", status))?;
        if root != "Incident" {
            return Err(protocol("not an <Incident>", status));
        }
        mapping::incident(&self.mappings, &tree)
    }

    #[tracing::instrument(
        name = "storm.changes_since",
        skip_all,
        fields(adapter = "storm", limit)
    )]
    async fn changes_since(
        &self,
        cursor: Option<&ChangeCursor>,
        limit: usize,
    ) -> Result<IncidentChangePage, AdapterError> {
        let after = match cursor {
            None => 0,
            Some(c) if c.kind == TARGET => c.position.parse::<u64>().map_err(|_| {
                AdapterError::new(
                    ErrorClass::Internal,
                    "storm change cursor is not a sequence number",
                )
            })?,
            Some(c) => {
                return Err(AdapterError::new(
                    ErrorClass::Internal,
                    format!("a change cursor of {} cannot be used with storm", c.kind),
                ));
            }
        };
        let mut url = http::join(&self.base, "/storm/v1/changes");
        url.query_pairs_mut()
            .append_pair("after", &after.to_string())
            .append_pair("limit", &limit.clamp(1, 500).to_string());
        let (status, body) = self
            .exchange(self.request(reqwest::Method::GET, url))
            .await?;
        let (root, tree) = mappings::xml::from_xml(&body)
            .map_err(|_| protocol("XML that is not well-formed", status))?;
        if root != "ChangeFeed" {
            return Err(protocol("not a <ChangeFeed>", status));
        }
        let items: Vec<&Value> = match tree.get("Change") {
            None => Vec::new(),
            Some(Value::Array(a)) => a.iter().collect(),
            Some(one) => vec![one],
        };
        let mut last = after;
        let mut changes = Vec::with_capacity(items.len());
        for item in items {
            let sequence = text(item, "Sequence")
                .and_then(|s| s.parse::<u64>().ok())
                .filter(|s| *s > last)
                .ok_or_else(|| protocol("a <Change> without an increasing <Sequence>", status))?;
            last = sequence;
            changes.push(IncidentChange {
                incident_number: text(item, "IncidentNumber")
                    .ok_or_else(|| protocol("a <Change> without an <IncidentNumber>", status))?,
                changed_at: text(item, "ChangedAt").unwrap_or_default(),
                kind: text(item, "Kind").unwrap_or_default(),
            });
        }
        let cursor = text(&tree, "Cursor")
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| protocol("a <ChangeFeed> without a <Cursor>", status))?;
        Ok(IncidentChangePage {
            changes,
            next: ChangeCursor {
                kind: TARGET.into(),
                position: cursor.max(last).to_string(),
            },
            more: text(&tree, "More").as_deref() == Some("true"),
        })
    }

    #[tracing::instrument(name = "storm.health", skip_all, fields(adapter = "storm"))]
    async fn health(&self) -> Result<(), AdapterError> {
        let url = http::join(&self.base, "/storm/v1/health");
        let (status, body) = self
            .exchange(self.request(reqwest::Method::GET, url))
            .await?;
        match mappings::xml::from_xml(&body) {
            Ok((root, tree))
                if root == "Health" && text(&tree, "Status").as_deref() == Some("UP") =>
            {
                Ok(())
            }
            Ok(_) => Err(
                AdapterError::new(ErrorClass::Upstream5xx, "storm health is not UP")
                    .with_status(status.as_u16()),
            ),
            Err(_) => Err(protocol("a health answer that is not XML", status)),
        }
    }
}
