//! The Athena wire protocol (`fixtures/ATHENA.md`) and the classification of every outcome.
//!
//! | outcome | class |
//! |---|---|
//! | connection refused, unreachable, DNS, connect timeout | `connect` |
//! | no complete answer within `timeout_ms`, or `408` | `timeout` |
//! | `5xx` (except `503` with `Retry-After`) | `upstream_5xx` |
//! | `429`, or `503` with `Retry-After` | `throttled` (with `retry_after`) |
//! | `401`, `403` | `unauthorized` |
//! | any other `4xx` | `rejected` (message: Athena's `<Error>` code, field and message) |
//! | `200`/`201` whose body is not a `<CrimeRecordCreated>` with a `<CrimeReference>`; other statuses; a connection lost mid-answer | `protocol` |
//!
//! Error messages carry statuses, codes and field paths, never payload contents.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use mappings::Mappings;
use quick_xml::Reader;
use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::Event;
use reqwest::header::{self, HeaderMap, HeaderName, HeaderValue};
use reqwest::{StatusCode, Url};

use super::config::AthenaConfig;
use super::mapping;
use crate::records::{
    CaseRead, ChangeCursor, ChangePage, PreparedWrite, RecordChange, RecordWrite, WriteOperation,
};
use crate::{
    AdapterError, DeliveryContext, DeliveryReceipt, ErrorClass, RecordSystem, TargetPayload,
};

/// Largest answer body read; Athena's answers are a few hundred bytes.
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// Longest piece of Athena's `<Error>` text copied into an error message.
const MAX_DETAIL_CHARS: usize = 200;

static IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
static CORRELATION_ID: HeaderName = HeaderName::from_static("x-correlation-id");

/// Client for one Athena. Holds one connection pool; cheap to share behind an `Arc`.
pub struct AthenaClient {
    http: reqwest::Client,
    mappings: Arc<Mappings>,
    base: Url,
    create_url: Url,
    health_url: Url,
}

impl std::fmt::Debug for AthenaClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AthenaClient")
            .field("create_url", &self.create_url.as_str())
            .finish()
    }
}

impl AthenaClient {
    /// Checks `cfg` and builds the client. Every configuration problem is an
    /// [`ErrorClass::Internal`] error naming the field.
    pub fn new(cfg: AthenaConfig, mappings: Arc<Mappings>) -> Result<Self, AdapterError> {
        let AthenaConfig {
            base_url,
            api_key,
            timeout_ms,
            connect_timeout_ms,
        } = cfg;
        let base = parse_base_url(&base_url)?;
        let join = |path: &str| {
            let mut url: Url = base.clone();
            let prefix = url.path().trim_end_matches('/').to_owned();
            url.set_path(&format!("{prefix}{path}"));
            url
        };
        let create_url = join("/athena/v1/crime-records");
        let health_url = join("/athena/v1/health");
        for (field, ms) in [
            ("timeout_ms", cfg.timeout_ms),
            ("connect_timeout_ms", cfg.connect_timeout_ms),
        ] {
            if ms == 0 {
                return Err(config_error(field, "must be greater than 0"));
            }
        }

        let mut headers = HeaderMap::new();
        if let Some(key) = &api_key {
            if key.expose().trim().is_empty() {
                return Err(config_error("api_key", "must not be empty"));
            }
            let mut value = HeaderValue::from_str(&format!("Bearer {}", key.expose()))
                .map_err(|_| config_error("api_key", "not a valid HTTP header value"))?;
            value.set_sensitive(true);
            headers.insert(header::AUTHORIZATION, value);
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(timeout_ms))
            .connect_timeout(Duration::from_millis(connect_timeout_ms))
            .default_headers(headers)
            // An API answers; it does not send us elsewhere with our credentials.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("nmpp-gateway/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                AdapterError::new(ErrorClass::Internal, format!("athena: {}", chain(&e)))
            })?;
        Ok(Self {
            http,
            mappings,
            base,
            create_url,
            health_url,
        })
    }
}

fn config_error(field: &str, rule: &str) -> AdapterError {
    AdapterError::new(ErrorClass::Internal, format!("athena.{field}: {rule}"))
}

fn parse_base_url(raw: &str) -> Result<Url, AdapterError> {
    let url = Url::parse(raw.trim())
        .map_err(|e| config_error("base_url", &format!("not an absolute URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(config_error("base_url", "scheme must be http or https"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(config_error("base_url", "has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(config_error(
            "base_url",
            "must not contain credentials; use api_key",
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(config_error(
            "base_url",
            "must not have a query or fragment",
        ));
    }
    Ok(url)
}

#[async_trait]
impl RecordSystem for AthenaClient {
    fn name(&self) -> &'static str {
        "athena"
    }

    fn prepare_crime_record(
        &self,
        nmpp: &serde_json::Value,
    ) -> Result<TargetPayload, AdapterError> {
        mapping::crime_record(&self.mappings, nmpp, None)
    }

    fn crime_record_spec(&self) -> Option<&'static str> {
        Some(mapping::CRIME_RECORD_SPEC)
    }

    fn prepare_crime_record_with(
        &self,
        nmpp: &serde_json::Value,
        version: Option<&str>,
    ) -> Result<TargetPayload, AdapterError> {
        mapping::crime_record(&self.mappings, nmpp, version)
    }

    #[tracing::instrument(
        name = "athena.create_crime_record",
        skip_all,
        fields(
            adapter = "athena",
            correlation_id = %ctx.correlation_id,
            idempotency_key = %ctx.idempotency_key,
            mapping = %payload.mapping,
        )
    )]
    async fn create_crime_record(
        &self,
        payload: &TargetPayload,
        ctx: &DeliveryContext,
    ) -> Result<DeliveryReceipt, AdapterError> {
        let started = Instant::now();
        let outcome = self.send_create(payload, ctx).await;
        let elapsed_ms = elapsed_ms(started);
        match &outcome {
            Ok(receipt) => tracing::debug!(
                status = receipt.status,
                duplicate = receipt.duplicate,
                crime_reference = %receipt.target_ref,
                elapsed_ms,
                "athena accepted the crime record"
            ),
            Err(error) => tracing::warn!(
                class = %error.class,
                status = error.status,
                retryable = error.is_retryable(),
                elapsed_ms,
                error = %error.message,
                "athena delivery failed"
            ),
        }
        outcome
    }

    #[tracing::instrument(name = "athena.read_case", skip_all, fields(adapter = "athena", crime_reference = %crime_reference))]
    async fn read_case(&self, crime_reference: &str) -> Result<CaseRead, AdapterError> {
        let url = self.url(&format!("/athena/v1/crime-records/{crime_reference}"))?;
        let body = self.get_xml(url).await?;
        let document = mapping::case_record(&self.mappings, &body)?;
        Ok(CaseRead {
            crime_reference: crime_reference.to_owned(),
            document,
            mapping: self.mappings.spec_version(mapping::CASE_SPEC),
        })
    }

    fn prepare_write(&self, write: &RecordWrite) -> Result<PreparedWrite, AdapterError> {
        mapping::write(&self.mappings, write)
    }

    #[tracing::instrument(
        name = "athena.write",
        skip_all,
        fields(
            adapter = "athena",
            operation = ?prepared.operation,
            crime_reference = %prepared.crime_reference,
            idempotency_key = %ctx.idempotency_key,
            correlation_id = %ctx.correlation_id,
        )
    )]
    async fn write(
        &self,
        prepared: &PreparedWrite,
        ctx: &DeliveryContext,
    ) -> Result<DeliveryReceipt, AdapterError> {
        let reference = &prepared.crime_reference;
        let (method, path, root, child) = match prepared.operation {
            WriteOperation::VictimContact => (
                reqwest::Method::POST,
                format!("/athena/v1/crime-records/{reference}/victim-contacts"),
                "VictimContactCreated",
                "EntryId",
            ),
            WriteOperation::OfficerTask => (
                reqwest::Method::POST,
                format!("/athena/v1/crime-records/{reference}/tasks"),
                "OfficerTaskCreated",
                "TaskId",
            ),
            WriteOperation::ContactDetails => {
                let party = prepared.party_id.as_deref().ok_or_else(|| {
                    AdapterError::new(ErrorClass::Internal, "contact details without a party")
                })?;
                (
                    reqwest::Method::PUT,
                    format!("/athena/v1/crime-records/{reference}/people/{party}/contact"),
                    "ContactDetailsUpdated",
                    "PersonRef",
                )
            }
        };
        let url = self.url(&path)?;
        let started = Instant::now();
        let response = self
            .http
            .request(method, url)
            .header(
                header::CONTENT_TYPE,
                header_value("content_type", &prepared.payload.content_type)?,
            )
            .header(
                IDEMPOTENCY_KEY.clone(),
                header_value("idempotency_key", &ctx.idempotency_key)?,
            )
            .header(
                CORRELATION_ID.clone(),
                header_value("correlation_id", &ctx.correlation_id)?,
            )
            .body(prepared.payload.body.clone())
            .send()
            .await
            .map_err(|e| classify_transport(&e))?;
        let status = response.status();
        let after = retry_after(response.headers());
        if !matches!(status, StatusCode::OK | StatusCode::CREATED) {
            let body = read_body(response).await.ok();
            let error = classify_status(status, after, body.as_deref());
            tracing::warn!(class = %error.class, status = error.status, error = %error.message, "athena write failed");
            return Err(error);
        }
        let body = read_body(response)
            .await
            .map_err(|e| e.with_status(status.as_u16()))?;
        let id = children(&body, root, &[child])
            .and_then(|mut v| v.swap_remove(0))
            .filter(|r| valid_reference(r))
            .ok_or_else(|| {
                AdapterError::new(
                    ErrorClass::Protocol,
                    format!(
                        "athena answered {} without a readable <{root}><{child}>",
                        status.as_u16()
                    ),
                )
                .with_status(status.as_u16())
            })?;
        tracing::debug!(
            status = status.as_u16(),
            elapsed_ms = elapsed_ms(started),
            "athena accepted the write"
        );
        Ok(DeliveryReceipt {
            target_ref: format!("{reference}#{id}"),
            duplicate: status == StatusCode::OK
                && prepared.operation != WriteOperation::ContactDetails,
            status: status.as_u16(),
        })
    }

    #[tracing::instrument(
        name = "athena.changes_since",
        skip_all,
        fields(adapter = "athena", limit)
    )]
    async fn changes_since(
        &self,
        cursor: Option<&ChangeCursor>,
        limit: usize,
    ) -> Result<ChangePage, AdapterError> {
        let after = match cursor {
            None => 0,
            Some(c) if c.kind == "athena" => c.position.parse::<u64>().map_err(|_| {
                AdapterError::new(
                    ErrorClass::Internal,
                    "athena change cursor is not a sequence number",
                )
            })?,
            Some(c) => {
                return Err(AdapterError::new(
                    ErrorClass::Internal,
                    format!("a change cursor of {} cannot be used with athena", c.kind),
                ));
            }
        };
        let mut url = self.url("/athena/v1/changes")?;
        url.query_pairs_mut()
            .append_pair("after", &after.to_string())
            .append_pair("limit", &limit.clamp(1, 500).to_string());
        let body = self.get_xml(url).await?;
        parse_feed(&body, after)
    }

    #[tracing::instrument(name = "athena.cursor_at", skip_all, fields(adapter = "athena"))]
    async fn cursor_at(&self, at: &str) -> Result<ChangeCursor, AdapterError> {
        let mut url = self.url("/athena/v1/changes")?;
        url.query_pairs_mut()
            .append_pair("since", at)
            .append_pair("limit", "1");
        let body = self.get_xml(url).await?;
        let page = parse_feed(&body, 0)?;
        Ok(page.next)
    }

    #[tracing::instrument(name = "athena.health", skip_all, fields(adapter = "athena"))]
    async fn health(&self) -> Result<(), AdapterError> {
        let response = self
            .http
            .get(self.health_url.clone())
            .send()
            .await
            .map_err(|e| classify_transport(&e))?;
        let status = response.status();
        let retry_after = retry_after(response.headers());
        if status != StatusCode::OK {
            let body = read_body(response).await.ok();
            return Err(classify_status(status, retry_after, body.as_deref()));
        }
        let body = read_body(response).await?;
        match children(&body, "Health", &["Status"]) {
            Some(values) => match values[0].as_deref() {
                Some("UP") => Ok(()),
                _ => Err(
                    AdapterError::new(ErrorClass::Upstream5xx, "athena health is not UP")
                        .with_status(status.as_u16()),
                ),
            },
            None => Err(AdapterError::new(
                ErrorClass::Protocol,
                "athena health answer is not a <Health> document",
            )
            .with_status(status.as_u16())),
        }
    }
}

impl AthenaClient {
    async fn send_create(
        &self,
        payload: &TargetPayload,
        ctx: &DeliveryContext,
    ) -> Result<DeliveryReceipt, AdapterError> {
        let content_type = header_value("content_type", &payload.content_type)?;
        let key = header_value("idempotency_key", &ctx.idempotency_key)?;
        let correlation = header_value("correlation_id", &ctx.correlation_id)?;
        let response = self
            .http
            .post(self.create_url.clone())
            .header(header::CONTENT_TYPE, content_type)
            .header(IDEMPOTENCY_KEY.clone(), key)
            .header(CORRELATION_ID.clone(), correlation)
            .body(payload.body.clone())
            .send()
            .await
            .map_err(|e| classify_transport(&e))?;
        let status = response.status();
        let retry_after = retry_after(response.headers());
        if status != StatusCode::OK && status != StatusCode::CREATED {
            // The status decides; a body lost on the way only loses detail.
            let body = read_body(response).await.ok();
            return Err(classify_status(status, retry_after, body.as_deref()));
        }
        let body = read_body(response)
            .await
            .map_err(|e| e.with_status(status.as_u16()))?;
        let reference = children(&body, "CrimeRecordCreated", &["CrimeReference"])
            .and_then(|mut values| values.swap_remove(0))
            .filter(|r| valid_reference(r))
            .ok_or_else(|| {
                AdapterError::new(
                    ErrorClass::Protocol,
                    format!(
                        "athena answered {} without a readable <CrimeRecordCreated><CrimeReference>",
                        status.as_u16()
                    ),
                )
                .with_status(status.as_u16())
            })?;
        Ok(DeliveryReceipt {
            target_ref: reference,
            duplicate: status == StatusCode::OK,
            status: status.as_u16(),
        })
    }
}

impl AthenaClient {
    /// `{base_url}{path}` (the base's own path prefix kept).
    fn url(&self, path: &str) -> Result<Url, AdapterError> {
        let mut url = self.base.clone();
        let prefix = url.path().trim_end_matches('/').to_owned();
        url.set_path(&format!("{prefix}{path}"));
        Ok(url)
    }

    /// GETs an XML document, classifying every failure.
    async fn get_xml(&self, url: Url) -> Result<String, AdapterError> {
        let started = Instant::now();
        let response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| classify_transport(&e))?;
        let status = response.status();
        let after = retry_after(response.headers());
        if status != StatusCode::OK {
            let body = read_body_limited(response, MAX_READ_BYTES).await.ok();
            let error = classify_status(status, after, body.as_deref());
            tracing::warn!(class = %error.class, status = error.status, error = %error.message, "athena read failed");
            return Err(error);
        }
        let body = read_body_limited(response, MAX_READ_BYTES)
            .await
            .map_err(|e| e.with_status(200))?;
        tracing::debug!(
            bytes = body.len(),
            elapsed_ms = elapsed_ms(started),
            "athena answered a read"
        );
        Ok(body)
    }
}

/// Largest read answer (a crime record with its timeline; a page of the change feed).
const MAX_READ_BYTES: usize = 8 * 1024 * 1024;

/// Reads a `<ChangeFeed>`; anything else is `protocol`.
fn parse_feed(body: &str, after: u64) -> Result<ChangePage, AdapterError> {
    let protocol = |what: &str| {
        AdapterError::new(ErrorClass::Protocol, format!("athena change feed: {what}"))
            .with_status(200)
    };
    let (root, tree) =
        mappings::xml::from_xml(body).map_err(|_| protocol("not well-formed XML"))?;
    if root != "ChangeFeed" {
        return Err(protocol("not a <ChangeFeed>"));
    }
    let text = |v: &serde_json::Value, k: &str| {
        v.get(k)
            .and_then(serde_json::Value::as_str)
            .map(str::trim)
            .map(str::to_owned)
    };
    let items: Vec<&serde_json::Value> = match tree.get("Change") {
        None => Vec::new(),
        Some(serde_json::Value::Array(a)) => a.iter().collect(),
        Some(one) => vec![one],
    };
    let mut changes = Vec::with_capacity(items.len());
    let mut last = after;
    for item in items {
        let sequence = text(item, "Sequence")
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| protocol("a <Change> without a <Sequence> number"))?;
        if sequence <= last {
            return Err(protocol("sequence numbers do not increase"));
        }
        last = sequence;
        changes.push(RecordChange {
            crime_reference: text(item, "CrimeReference")
                .filter(|r| valid_reference(r))
                .ok_or_else(|| protocol("a <Change> without a <CrimeReference>"))?,
            changed_at: text(item, "ChangedAt").unwrap_or_default(),
            kind: text(item, "Kind"),
        });
    }
    let cursor = text(&tree, "Cursor")
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or_else(|| protocol("no <Cursor>"))?;
    let more = text(&tree, "More").as_deref() == Some("true");
    Ok(ChangePage {
        changes,
        next: ChangeCursor {
            kind: "athena".into(),
            position: cursor.max(last).to_string(),
        },
        more,
    })
}

fn elapsed_ms(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// A header value from our own data; failure is a gateway bug, not Athena's.
fn header_value(what: &str, value: &str) -> Result<HeaderValue, AdapterError> {
    HeaderValue::from_str(value).map_err(|_| {
        AdapterError::new(
            ErrorClass::Internal,
            format!("{what}: not a valid HTTP header value"),
        )
    })
}

/// A crime reference we are willing to record: short, printable, no spaces.
fn valid_reference(r: &str) -> bool {
    !r.is_empty() && r.len() <= 64 && r.chars().all(|c| c.is_ascii_graphic())
}

/// Classifies a failure to get an answer at all.
pub(super) fn classify_transport(error: &reqwest::Error) -> AdapterError {
    let detail = chain(error);
    if error.is_connect() {
        // Includes the connect timeout: nothing was sent, so the outcome is known.
        AdapterError::new(
            ErrorClass::Connect,
            format!("could not connect to athena: {detail}"),
        )
    } else if error.is_timeout() {
        AdapterError::new(
            ErrorClass::Timeout,
            format!("no complete answer from athena in time: {detail}"),
        )
    } else if error.is_builder() {
        AdapterError::new(
            ErrorClass::Internal,
            format!("could not build the request: {detail}"),
        )
    } else {
        // Connected and (perhaps) sent, then the connection failed: the outcome is unknown and
        // the answer incomplete. Retryable, with the same idempotency key.
        AdapterError::new(
            ErrorClass::Protocol,
            format!("connection to athena failed before a complete answer: {detail}"),
        )
    }
}

/// Classifies an answer with a status other than the expected success.
pub(super) fn classify_status(
    status: StatusCode,
    retry_after: Option<Duration>,
    body: Option<&str>,
) -> AdapterError {
    let code = status.as_u16();
    let detail = body.and_then(error_detail);
    let with_detail = |what: &str| match &detail {
        Some(d) => format!("athena answered {code} {what}: {d}"),
        None => format!("athena answered {code} {what}"),
    };
    let (class, message) = match code {
        401 | 403 => (
            ErrorClass::Unauthorized,
            with_detail("(credentials refused)"),
        ),
        408 => (ErrorClass::Timeout, with_detail("(request timeout)")),
        429 => (ErrorClass::Throttled, with_detail("(too many requests)")),
        503 if retry_after.is_some() => (
            ErrorClass::Throttled,
            with_detail("(unavailable, retry later)"),
        ),
        500..=599 => (ErrorClass::Upstream5xx, with_detail("(server error)")),
        400..=499 => (ErrorClass::Rejected, with_detail("(rejected)")),
        _ => (ErrorClass::Protocol, with_detail("(unexpected status)")),
    };
    AdapterError::new(class, message)
        .with_status(code)
        .with_retry_after(retry_after)
}

/// `Code`, `Field` and `Message` of an `<Error>` body, bounded and without control characters.
fn error_detail(body: &str) -> Option<String> {
    let values = children(body, "Error", &["Code", "Field", "Message"])?;
    let clean = |v: &Option<String>| {
        v.as_deref().map(|s| {
            s.chars()
                .filter(|c| !c.is_control())
                .take(MAX_DETAIL_CHARS)
                .collect::<String>()
        })
    };
    let (code, field, message) = (clean(&values[0]), clean(&values[1]), clean(&values[2]));
    let mut parts = Vec::new();
    if let Some(code) = code {
        parts.push(format!("code {code}"));
    }
    if let Some(field) = field {
        parts.push(format!("field {field}"));
    }
    if let Some(message) = message {
        parts.push(format!("message \"{message}\""));
    }
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// `Retry-After` as delay-seconds or an HTTP date (RFC 9110 §10.2.3).
pub(super) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    let at = time::PrimitiveDateTime::parse(value, format)
        .ok()?
        .assume_utc();
    let wait = at - time::OffsetDateTime::now_utc();
    Some(Duration::try_from(wait).unwrap_or(Duration::ZERO))
}

/// Reads at most [`MAX_ANSWER_BYTES`] of the body as UTF-8.
async fn read_body(response: reqwest::Response) -> Result<String, AdapterError> {
    read_body_limited(response, MAX_ANSWER_BYTES).await
}

/// Reads at most `limit` bytes of the body as UTF-8.
async fn read_body_limited(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<String, AdapterError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| classify_transport(&e))? {
        if body.len() + chunk.len() > limit {
            return Err(AdapterError::new(
                ErrorClass::Protocol,
                format!("athena's answer is larger than {limit} bytes"),
            ));
        }
        body.extend_from_slice(&chunk);
    }
    String::from_utf8(body)
        .map_err(|_| AdapterError::new(ErrorClass::Protocol, "athena's answer is not UTF-8"))
}

/// The text of the direct children `wanted` of a document whose root is `root` (local names; the
/// namespace is not checked so that a prefix or its absence does not matter). `None` when the
/// document is not well-formed or has another root; a child that is absent or empty is `None`.
pub(super) fn children(xml: &str, root: &str, wanted: &[&str]) -> Option<Vec<Option<String>>> {
    let mut reader = Reader::from_str(xml);
    let mut values: Vec<Option<String>> = vec![None; wanted.len()];
    let mut depth = 0usize;
    let mut current: Option<usize> = None;
    let mut seen_root = false;
    loop {
        match reader.read_event().ok()? {
            Event::Start(e) => {
                let name = e.local_name();
                let name = name.into_inner();
                depth += 1;
                if depth == 1 {
                    if seen_root || name != root {
                        return None;
                    }
                    seen_root = true;
                } else if depth == 2 {
                    current = wanted.iter().position(|w| *w == name);
                }
            }
            Event::Empty(e) if depth == 0 => {
                if seen_root || e.local_name().into_inner() != root {
                    return None;
                }
                seen_root = true;
            }
            Event::End(_) => {
                if depth == 2 {
                    current = None;
                }
                depth = depth.checked_sub(1)?;
            }
            Event::Text(t) if depth == 2 => {
                if let Some(i) = current {
                    values[i]
                        .get_or_insert_with(String::new)
                        .push_str(&t.xml10_content());
                }
            }
            Event::CData(t) if depth == 2 => {
                if let Some(i) = current {
                    values[i]
                        .get_or_insert_with(String::new)
                        .push_str(&t.xml10_content());
                }
            }
            Event::GeneralRef(r) if depth == 2 => {
                if let Some(i) = current {
                    let resolved = if r.is_char_ref() {
                        r.resolve_char_ref().ok()??.to_string()
                    } else {
                        resolve_predefined_entity(&r)?.to_owned()
                    };
                    values[i]
                        .get_or_insert_with(String::new)
                        .push_str(&resolved);
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !seen_root || depth != 0 {
        return None;
    }
    Some(
        values
            .into_iter()
            .map(|v| v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()))
            .collect(),
    )
}

/// An error and its causes, innermost last (`error sending request: tcp connect error:
/// Connection refused (os error 111)`). reqwest's errors name the URL, never the body.
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![error.to_string()];
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = cause.source();
    }
    parts.join(": ")
}
