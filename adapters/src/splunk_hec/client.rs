//! The HEC wire protocol and the classification of every answer.
//!
//! | answer | outcome |
//! |---|---|
//! | `200`, code 0, with `ackId` (acks on) | `Accepted(ackId)`: delivered once the ack reports true |
//! | `200`, code 0 (acks off, Splunk Cloud) | `Delivered` |
//! | `200` without `ackId` while acks are on | `internal` (the token has acknowledgement off: fix the configuration) |
//! | `400` codes 6, 12, 13, 15 (bad event), `413` | `Refused { first_bad: invalid-event-number }`: split and quarantine |
//! | `400` codes 7 (incorrect index), 10/11 (channel), 14 (ack disabled), other `400` | `internal`: configuration fault, halt and alert |
//! | `401`, `403` (codes 1–4) | `unauthorized`: halt and alert |
//! | `503` code 9 (server busy), `429` | `throttled` (with `Retry-After` when sent) |
//! | other `5xx` | `upstream_5xx` |
//! | connection refused, timeout, broken connection | `connect`, `timeout`, `protocol` |
//! | a `200` whose body is not a HEC answer | `protocol` |
//!
//! Error messages carry statuses, HEC codes and texts, never event contents or the token.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use reqwest::header::{self, HeaderMap, HeaderName, HeaderValue};
use reqwest::{StatusCode, Url};
use serde::Deserialize;

use super::config::SplunkHecConfig;
use super::mapping::EnvelopeParts;
use crate::sink::{
    AckId, AuditSink, BatchLimits, EncodedRecord, SendOutcome, SinkRecord, classify_transport,
    elapsed_ms, gzip, join_path, parse_base_url, read_limited, retry_after,
};
use crate::{AdapterError, ErrorClass};

/// Largest answer body read; HEC answers are tiny (ack answers grow with the ids asked about).
const MAX_ANSWER_BYTES: usize = 1024 * 1024;
/// Most ack ids asked about in one query.
const MAX_ACKS_PER_QUERY: usize = 1000;
const TARGET: &str = "splunk hec";

static CHANNEL: HeaderName = HeaderName::from_static("x-splunk-request-channel");

/// A Splunk HEC audit sink. One connection pool; one channel for its whole life.
pub struct SplunkHecSink {
    name: String,
    http: reqwest::Client,
    event_url: Url,
    ack_url: Url,
    health_url: Url,
    acks: bool,
    gzip: bool,
    channel: Option<String>,
    max_batch_bytes: usize,
    envelope: EnvelopeParts,
}

impl std::fmt::Debug for SplunkHecSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SplunkHecSink")
            .field("name", &self.name)
            .field("event_url", &self.event_url.as_str())
            .field("channel", &self.channel)
            .field("acks", &self.acks)
            .finish_non_exhaustive()
    }
}

/// A HEC answer body.
#[derive(Debug, Default, Deserialize)]
pub(super) struct Answer {
    #[serde(default)]
    pub(super) text: Option<String>,
    #[serde(default)]
    pub(super) code: Option<i64>,
    #[serde(default, rename = "ackId")]
    pub(super) ack_id: Option<u64>,
    #[serde(default, rename = "invalid-event-number")]
    pub(super) invalid_event_number: Option<usize>,
}

#[derive(Debug, Deserialize)]
struct AckAnswer {
    acks: std::collections::HashMap<String, bool>,
}

fn config_error(name: &str, field: &str, rule: &str) -> AdapterError {
    AdapterError::new(ErrorClass::Internal, format!("{name}.{field}: {rule}"))
}

impl SplunkHecSink {
    /// Checks `cfg` and builds the sink. Every configuration problem is an
    /// [`ErrorClass::Internal`] error naming the field (`splunk_hec.channel: …`).
    pub fn new(cfg: SplunkHecConfig) -> Result<Self, AdapterError> {
        let name = cfg.name.trim().to_owned();
        if name.is_empty() {
            return Err(config_error("splunk_hec", "name", "must not be empty"));
        }
        let base = parse_base_url(&format!("{name}.endpoint"), &cfg.endpoint)?;
        if base.query().is_some() {
            return Err(config_error(&name, "endpoint", "must not have a query"));
        }
        if cfg.token.expose().trim().is_empty() {
            return Err(config_error(&name, "token", "must not be empty"));
        }
        let mut auth = HeaderValue::from_str(&format!("Splunk {}", cfg.token.expose().trim()))
            .map_err(|_| config_error(&name, "token", "not a valid HTTP header value"))?;
        auth.set_sensitive(true);
        let channel = match (cfg.channel, cfg.indexer_acks) {
            (Some(c), _) => {
                let parsed = uuid::Uuid::parse_str(c.trim())
                    .map_err(|_| config_error(&name, "channel", "must be a GUID"))?;
                Some(parsed.hyphenated().to_string())
            }
            (None, true) => {
                return Err(config_error(
                    &name,
                    "channel",
                    "required when indexer_acks is on; generate one once (SplunkHecConfig::generate_channel) and keep it across restarts",
                ));
            }
            (None, false) => None,
        };
        if cfg.max_batch_bytes < 1024 {
            return Err(config_error(
                &name,
                "max_batch_bytes",
                "must be at least 1024",
            ));
        }
        for (field, ms) in [
            ("timeout_ms", cfg.timeout_ms),
            ("connect_timeout_ms", cfg.connect_timeout_ms),
        ] {
            if ms == 0 {
                return Err(config_error(&name, field, "must be greater than 0"));
            }
        }
        if cfg.sourcetype.trim().is_empty() || cfg.checkpoint_sourcetype.trim().is_empty() {
            return Err(config_error(&name, "sourcetype", "must not be empty"));
        }
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, auth);
        if let Some(channel) = &channel {
            headers.insert(
                CHANNEL.clone(),
                HeaderValue::from_str(channel).expect("a GUID is a valid header value"),
            );
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(cfg.timeout_ms))
            .connect_timeout(Duration::from_millis(cfg.connect_timeout_ms))
            .default_headers(headers)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("nmpp-gateway/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| AdapterError::new(ErrorClass::Internal, format!("{name}: {e}")))?;
        Ok(Self {
            http,
            event_url: join_path(&base, "/services/collector/event"),
            ack_url: join_path(&base, "/services/collector/ack"),
            health_url: join_path(&base, "/services/collector/health"),
            acks: cfg.indexer_acks,
            gzip: cfg.gzip,
            channel,
            max_batch_bytes: cfg.max_batch_bytes,
            envelope: EnvelopeParts::new(
                cfg.host.as_deref(),
                &cfg.source,
                &cfg.sourcetype,
                &cfg.checkpoint_sourcetype,
                cfg.index.as_deref(),
            ),
            name,
        })
    }

    /// The channel GUID this sink sends on (what the gateway persists).
    pub fn channel(&self) -> Option<&str> {
        self.channel.as_deref()
    }

    /// Posts `body`, gzip-compressed when configured and `compress` (ack queries are tiny and
    /// go uncompressed).
    async fn post(
        &self,
        url: &Url,
        body: Vec<u8>,
        compress: bool,
    ) -> Result<reqwest::Response, AdapterError> {
        let mut request = self
            .http
            .post(url.clone())
            .header(header::CONTENT_TYPE, "application/json");
        let body = if self.gzip && compress {
            request = request.header(header::CONTENT_ENCODING, "gzip");
            gzip(&body)
        } else {
            body
        };
        request
            .body(body)
            .send()
            .await
            .map_err(|e| classify_transport(TARGET, &e))
    }

    async fn send_batch(&self, batch: &[EncodedRecord]) -> Result<SendOutcome, AdapterError> {
        let size: usize = batch.iter().map(|r| r.bytes.len()).sum();
        let mut body = Vec::with_capacity(size);
        for record in batch {
            body.extend_from_slice(&record.bytes);
        }
        let response = self.post(&self.event_url, body, true).await?;
        let status = response.status();
        let after = retry_after(response.headers());
        let body = read_limited(TARGET, response, MAX_ANSWER_BYTES)
            .await
            .map_err(|e| e.with_status(status.as_u16()))?;
        let answer = serde_json::from_slice::<Answer>(&body).ok();
        classify_event_answer(status, after, answer, self.acks)
    }

    async fn query_acks(&self, ids: &[AckId]) -> Result<Vec<AckId>, AdapterError> {
        let body = serde_json::to_vec(&serde_json::json!({ "acks": ids }))
            .map_err(|e| AdapterError::new(ErrorClass::Internal, e.to_string()))?;
        let response = self.post(&self.ack_url, body, false).await?;
        let status = response.status();
        let after = retry_after(response.headers());
        let body = read_limited(TARGET, response, MAX_ANSWER_BYTES)
            .await
            .map_err(|e| e.with_status(status.as_u16()))?;
        if status != StatusCode::OK {
            let answer = serde_json::from_slice::<Answer>(&body).unwrap_or_default();
            return Err(classify_failure(status, after, &answer, "ack query"));
        }
        let answer: AckAnswer = serde_json::from_slice(&body).map_err(|_| {
            AdapterError::new(
                ErrorClass::Protocol,
                "splunk hec answered 200 to an ack query without an {\"acks\":{…}} object",
            )
            .with_status(200)
        })?;
        Ok(answer
            .acks
            .into_iter()
            .filter(|(_, done)| *done)
            .filter_map(|(id, _)| id.parse().ok())
            .filter(|id| ids.contains(id))
            .collect())
    }
}

/// Classifies the answer to an event request.
pub(super) fn classify_event_answer(
    status: StatusCode,
    after: Option<Duration>,
    answer: Option<Answer>,
    acks: bool,
) -> Result<SendOutcome, AdapterError> {
    let code = status.as_u16();
    if status == StatusCode::OK {
        let Some(answer) = answer.filter(|a| a.code.is_some() || a.text.is_some()) else {
            return Err(AdapterError::new(
                ErrorClass::Protocol,
                "splunk hec answered 200 without a HEC answer body",
            )
            .with_status(200));
        };
        if answer.code.unwrap_or(0) != 0 {
            return Err(AdapterError::new(
                ErrorClass::Protocol,
                format!(
                    "splunk hec answered 200 with code {}",
                    answer.code.unwrap_or_default()
                ),
            )
            .with_status(200));
        }
        return match (acks, answer.ack_id) {
            (true, Some(id)) => Ok(SendOutcome::Accepted(id)),
            (true, None) => Err(AdapterError::new(
                ErrorClass::Internal,
                "splunk hec accepted the batch without an ackId: indexer acknowledgement is off for this token; turn it on, or set indexer_acks = false (Splunk Cloud)",
            )
            .with_status(200)),
            (false, _) => Ok(SendOutcome::Delivered),
        };
    }
    let answer = answer.unwrap_or_default();
    let hec_code = answer.code;
    if code == 413 || (code == 400 && matches!(hec_code, Some(6 | 12 | 13 | 15))) {
        let error = AdapterError::new(
            ErrorClass::Rejected,
            describe(code, &answer, "refused events"),
        )
        .with_status(code);
        return Ok(SendOutcome::Refused {
            first_bad: answer.invalid_event_number,
            error,
        });
    }
    Err(classify_failure(status, after, &answer, "event batch"))
}

/// Classifies a failed answer other than a content refusal.
fn classify_failure(
    status: StatusCode,
    after: Option<Duration>,
    answer: &Answer,
    what: &str,
) -> AdapterError {
    let code = status.as_u16();
    let class = match (code, answer.code) {
        (401 | 403, _) => ErrorClass::Unauthorized,
        (429, _) | (503, Some(9)) => ErrorClass::Throttled,
        (503, _) if after.is_some() => ErrorClass::Throttled,
        (408, _) => ErrorClass::Timeout,
        (500..=599, _) => ErrorClass::Upstream5xx,
        // Incorrect index (7), channel missing/invalid (10, 11), ack disabled (14), anything
        // else: our configuration is wrong. Never quarantine records for it: halt and alert.
        _ => ErrorClass::Internal,
    };
    AdapterError::new(class, describe(code, answer, what))
        .with_status(code)
        .with_retry_after(after)
}

fn describe(status: u16, answer: &Answer, what: &str) -> String {
    let text: String = answer
        .text
        .as_deref()
        .unwrap_or("")
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect();
    match (answer.code, answer.invalid_event_number) {
        (Some(code), Some(n)) => format!(
            "splunk hec answered {status} to the {what}: code {code} \"{text}\", invalid-event-number {n}"
        ),
        (Some(code), None) => {
            format!("splunk hec answered {status} to the {what}: code {code} \"{text}\"")
        }
        (None, _) => format!("splunk hec answered {status} to the {what}"),
    }
}

#[async_trait]
impl AuditSink for SplunkHecSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn limits(&self) -> BatchLimits {
        BatchLimits {
            max_bytes: self.max_batch_bytes,
            max_records: 100_000,
            per_record_overhead: 0,
            per_batch_overhead: 0,
        }
    }

    fn encode(&self, record: &SinkRecord) -> Result<Bytes, AdapterError> {
        self.envelope.encode(record)
    }

    #[tracing::instrument(name = "splunk_hec.send", skip_all, fields(sink = %self.name, records = batch.len()))]
    async fn send(&mut self, batch: &[EncodedRecord]) -> Result<SendOutcome, AdapterError> {
        let started = Instant::now();
        let outcome = self.send_batch(batch).await;
        if let Err(error) = &outcome {
            tracing::debug!(
                class = %error.class,
                status = error.status,
                elapsed_ms = elapsed_ms(started),
                error = %error.message,
                "splunk hec batch not accepted"
            );
        }
        outcome
    }

    #[tracing::instrument(name = "splunk_hec.poll_acks", skip_all, fields(sink = %self.name, pending = pending.len()))]
    async fn poll_acks(&mut self, pending: &[AckId]) -> Result<Vec<AckId>, AdapterError> {
        if !self.acks || pending.is_empty() {
            return Ok(Vec::new());
        }
        let mut done = Vec::new();
        for chunk in pending.chunks(MAX_ACKS_PER_QUERY) {
            done.extend(self.query_acks(chunk).await?);
        }
        Ok(done)
    }

    #[tracing::instrument(name = "splunk_hec.health", skip_all, fields(sink = %self.name))]
    async fn health(&mut self) -> Result<(), AdapterError> {
        let response = self
            .http
            .get(self.health_url.clone())
            .send()
            .await
            .map_err(|e| classify_transport(TARGET, &e))?;
        let status = response.status();
        let after = retry_after(response.headers());
        let body = read_limited(TARGET, response, MAX_ANSWER_BYTES).await?;
        let answer = serde_json::from_slice::<Answer>(&body).unwrap_or_default();
        if status == StatusCode::OK {
            return Ok(());
        }
        let mut error = classify_failure(status, after, &answer, "health check");
        if status == StatusCode::SERVICE_UNAVAILABLE {
            // 18–20: queues full or ack service unavailable.
            error.class = ErrorClass::Upstream5xx;
        }
        Err(error)
    }
}
