//! Audit sinks: the extension point that streams the audit ledger, loss-free, to the force's SIEM
//! and log platforms (Splunk HEC, Microsoft Sentinel, Kafka).
//!
//! The pieces, and who owns what:
//!
//! - [`AuditSink`] — one trait per extension point (STYLE.md §2). A sink turns a
//!   [`SinkRecord`] into its wire bytes ([`AuditSink::encode`], pure), sends a batch of encoded
//!   records ([`AuditSink::send`]) and, when its target acknowledges asynchronously (Splunk
//!   indexer acknowledgement), answers which acknowledgements are now final
//!   ([`AuditSink::poll_acks`]). It never decides about retries, splitting or cursors.
//! - [`SinkDriver`] — the reusable, journal-agnostic loop around one sink: reads records after a
//!   cursor from a [`SinkJournal`], batches them by bytes, sends, retries with exponential
//!   backoff and jitter (`backon`), tracks pending acknowledgements and resends what stays
//!   unconfirmed, splits refused batches to isolate and quarantine bad records, halts (without a
//!   hot loop) on credential or configuration errors, and commits the highest *contiguous*
//!   durably delivered sequence number. One driver per sink, each with its own cursor, so a dead
//!   sink never stops another.
//! - [`SinkJournal`] — what the gateway supplies: read records after a sequence number, commit a
//!   sink's cursor, record a quarantined record durably. [`MemoryJournal`] is an in-memory one
//!   for tests and benchmarks.
//! - [`AuditSinkConfig`] — the tagged configuration enum (`type = "splunk_hec" | "sentinel" |
//!   "kafka"`) that builds a boxed sink.
//!
//! Delivery is at least once: a record may reach a target twice (a resend after an
//! acknowledgement timeout, a retried batch after an outage), always with the same `EventUid`,
//! so the SIEM can de-duplicate; it is never lost and never skipped without a quarantine entry.

mod driver;
mod memory;
#[cfg(test)]
pub(crate) mod tests;

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

pub use driver::{DriverConfig, SinkDriver, SinkState, SinkStatus};
pub use memory::MemoryJournal;

use crate::{AdapterError, ErrorClass};

/// What a [`SinkRecord`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    /// An audit record of the ledger.
    Record,
    /// A signed checkpoint (tree head) of the ledger. Sent to every sink too, so that someone who
    /// rewrites the database cannot also rewrite what the SIEM already holds.
    Checkpoint,
}

impl RecordKind {
    /// Stable lowercase name (`record`, `checkpoint`), as shipped in indexed fields and headers.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordKind::Record => "record",
            RecordKind::Checkpoint => "checkpoint",
        }
    }
}

/// One entry of the stream a sink ships, already sequenced by the ledger.
#[derive(Debug, Clone, PartialEq)]
pub struct SinkRecord {
    /// Position in the stream; strictly increasing in what [`SinkJournal::read_after`] returns.
    /// A sink's cursor is the highest `seq` below which everything was durably delivered.
    pub seq: u64,
    /// Unique id of the event (UUID v7 for audit records). Every copy of a record, resends
    /// included, carries the same one, so targets can de-duplicate.
    pub event_uid: String,
    /// Record or checkpoint.
    pub kind: RecordKind,
    /// When the event happened (the HEC `time`, Sentinel's `TimeGenerated`).
    pub time: OffsetDateTime,
    /// A JSON object: for a record, its canonical JSON exactly as hashed into the ledger (so an
    /// auditor can re-check the hash from what the SIEM holds); for a checkpoint, an object with
    /// the signed note (see [`SinkRecord::checkpoint`]).
    pub json: Bytes,
}

impl SinkRecord {
    /// An audit record whose canonical JSON is `json`.
    pub fn record(
        seq: u64,
        event_uid: impl Into<String>,
        time: OffsetDateTime,
        json: impl Into<Bytes>,
    ) -> Self {
        Self {
            seq,
            event_uid: event_uid.into(),
            kind: RecordKind::Record,
            time,
            json: json.into(),
        }
    }

    /// A signed checkpoint: `json` is `{"kind":"checkpoint","tree_size":…,"note":"<signed note>"}`.
    pub fn checkpoint(
        seq: u64,
        event_uid: impl Into<String>,
        time: OffsetDateTime,
        tree_size: u64,
        signed_note: &str,
    ) -> Self {
        let json = serde_json::json!({
            "kind": "checkpoint",
            "tree_size": tree_size,
            "note": signed_note,
        });
        Self {
            seq,
            event_uid: event_uid.into(),
            kind: RecordKind::Checkpoint,
            time,
            json: Bytes::from(json.to_string()),
        }
    }
}

/// A record in one sink's wire format, as the driver batches, sends and (when needed) resends
/// it. Encoded once, whatever the number of attempts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedRecord {
    /// The record's [`SinkRecord::seq`].
    pub seq: u64,
    /// The record's [`SinkRecord::event_uid`].
    pub event_uid: String,
    /// The record's [`SinkRecord::kind`].
    pub kind: RecordKind,
    /// The bytes this sink puts on the wire for it (an HEC envelope, an ASIM row, a Kafka value).
    pub bytes: Bytes,
}

/// An acknowledgement ticket a target handed out for a batch (a Splunk `ackId`).
pub type AckId = u64;

/// What a target said about one batch that it answered.
#[derive(Debug, Clone)]
pub enum SendOutcome {
    /// Durably delivered now (Sentinel `204`, HEC `200` without indexer acknowledgement, Kafka
    /// delivery reports for every record).
    Delivered,
    /// Accepted, but durable only once [`AuditSink::poll_acks`] reports this ticket.
    Accepted(AckId),
    /// The target refused the *content* of the batch (Splunk codes 6/12/13/15, a `413`): the
    /// driver splits it to isolate the bad records and quarantines them. `first_bad` is the index
    /// in the batch of the first refused record, when the target said.
    Refused {
        /// Index of the first refused record, when known.
        first_bad: Option<usize>,
        /// The refusal, classified ([`ErrorClass::Rejected`]).
        error: AdapterError,
    },
}

/// How a sink wants its batches cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    /// Largest request body, uncompressed, in bytes (framing included).
    pub max_bytes: usize,
    /// Most records in one batch.
    pub max_records: usize,
    /// Bytes of framing per record beyond its encoded bytes (a comma in a JSON array).
    pub per_record_overhead: usize,
    /// Bytes of framing per batch (the brackets of a JSON array).
    pub per_batch_overhead: usize,
}

/// A destination for the audit stream (STYLE.md §2). Implemented by
/// [`crate::splunk_hec::SplunkHecSink`], [`crate::sentinel::SentinelSink`] and
/// [`crate::kafka::KafkaSink`]; driven by a [`SinkDriver`].
#[async_trait]
pub trait AuditSink: Send + Sync {
    /// The configured name of this sink (`splunk_hec` unless configured): the key of its cursor,
    /// and its label in logs, metrics and health.
    fn name(&self) -> &str;

    /// How batches for this sink must be cut.
    fn limits(&self) -> BatchLimits;

    /// This sink's wire bytes for `record`. Pure. A record that cannot be encoded is a
    /// non-retryable [`ErrorClass::Mapping`] error; the driver quarantines it.
    fn encode(&self, record: &SinkRecord) -> Result<Bytes, AdapterError>;

    /// Sends one batch. `Err` means the batch was not accepted as a whole and may be retried
    /// (when [`AdapterError::is_retryable`]) or needs an operator (credentials, configuration:
    /// the driver halts); a refusal of the content is `Ok(SendOutcome::Refused { .. })`.
    async fn send(&mut self, batch: &[EncodedRecord]) -> Result<SendOutcome, AdapterError>;

    /// Which of `pending` are now durably stored. Called only by drivers of sinks that answer
    /// [`SendOutcome::Accepted`]; a ticket reported once is reported as done by the driver,
    /// which does not ask about it again. The default has nothing pending.
    async fn poll_acks(&mut self, pending: &[AckId]) -> Result<Vec<AckId>, AdapterError> {
        let _ = pending;
        Ok(Vec::new())
    }

    /// Cheap reachability check for `/health/ready`.
    async fn health(&mut self) -> Result<(), AdapterError>;
}

/// A record the driver gave up on because its target refused it (or it could not be encoded).
/// The journal must store it durably before the cursor passes it: it is reported, never silently
/// dropped, and can be replayed once the cause is fixed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuarantinedRecord {
    /// The record's sequence number.
    pub seq: u64,
    /// The record's event uid.
    pub event_uid: String,
    /// Record or checkpoint.
    pub kind: RecordKind,
    /// Why: the class of the refusal.
    pub class: ErrorClass,
    /// The target's HTTP status, when there was one.
    pub status: Option<u16>,
    /// Operator-facing detail (never the record's contents).
    pub reason: String,
}

/// What a [`SinkDriver`] needs from the gateway: the stream to read, and durable places for the
/// sink's cursor and its quarantined records.
#[async_trait]
pub trait SinkJournal: Send + Sync {
    /// Up to `limit` records with `seq > after`, in increasing `seq` order; empty when there are
    /// none yet (the driver then waits for [`SinkDriver::waker`] or its idle poll).
    async fn read_after(&self, after: u64, limit: usize) -> Result<Vec<SinkRecord>, AdapterError>;

    /// Durably records that every record of sink `sink` with `seq <= delivered_through` was
    /// delivered or quarantined. Called with increasing values.
    async fn commit(&self, sink: &str, delivered_through: u64) -> Result<(), AdapterError>;

    /// Durably records a record sink `sink` gave up on. Called before the cursor passes it.
    async fn quarantine(&self, sink: &str, record: &QuarantinedRecord) -> Result<(), AdapterError>;
}

/// Which sinks a force streams its audit ledger to, chosen by `type` in configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum AuditSinkConfig {
    /// Splunk HTTP Event Collector (with indexer acknowledgement, or Splunk Cloud without).
    SplunkHec(crate::splunk_hec::SplunkHecConfig),
    /// Microsoft Sentinel through the Azure Monitor Logs Ingestion API.
    Sentinel(crate::sentinel::SentinelConfig),
    /// A Kafka topic, through an idempotent producer.
    Kafka(crate::kafka::KafkaConfig),
}

impl AuditSinkConfig {
    /// The configured sink name (the cursor key).
    pub fn name(&self) -> &str {
        match self {
            AuditSinkConfig::SplunkHec(c) => &c.name,
            AuditSinkConfig::Sentinel(c) => &c.name,
            AuditSinkConfig::Kafka(c) => &c.name,
        }
    }

    /// How this sink's driver batches, retries and waits.
    pub fn driver(&self) -> &DriverConfig {
        match self {
            AuditSinkConfig::SplunkHec(c) => &c.driver,
            AuditSinkConfig::Sentinel(c) => &c.driver,
            AuditSinkConfig::Kafka(c) => &c.driver,
        }
    }

    /// Builds the sink this configuration describes. Every configuration problem is an
    /// [`ErrorClass::Internal`] error naming the field. A Splunk HEC sink with indexer
    /// acknowledgement needs its persisted channel in `channel` (see
    /// [`crate::splunk_hec::SplunkHecConfig::channel`]).
    pub async fn build(&self) -> Result<Box<dyn AuditSink>, AdapterError> {
        Ok(match self {
            AuditSinkConfig::SplunkHec(c) => {
                Box::new(crate::splunk_hec::SplunkHecSink::new(c.clone())?)
            }
            AuditSinkConfig::Sentinel(c) => {
                Box::new(crate::sentinel::SentinelSink::new(c.clone()).await?)
            }
            AuditSinkConfig::Kafka(c) => Box::new(crate::kafka::KafkaSink::new(c.clone()).await?),
        })
    }
}

/// Milliseconds as a duration (config fields are in milliseconds).
pub(crate) fn ms(value: u64) -> Duration {
    Duration::from_millis(value)
}

/// Milliseconds elapsed, saturating, for log fields.
pub(crate) fn elapsed_ms(started: std::time::Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Classifies a failure to get an HTTP answer at all from `target`.
pub(crate) fn classify_transport(target: &str, error: &reqwest::Error) -> AdapterError {
    let mut detail = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        detail.push_str(": ");
        detail.push_str(&cause.to_string());
        source = cause.source();
    }
    if error.is_connect() {
        AdapterError::new(
            ErrorClass::Connect,
            format!("could not connect to {target}: {detail}"),
        )
    } else if error.is_timeout() {
        AdapterError::new(
            ErrorClass::Timeout,
            format!("no complete answer from {target} in time: {detail}"),
        )
    } else if error.is_builder() {
        AdapterError::new(
            ErrorClass::Internal,
            format!("could not build the request to {target}: {detail}"),
        )
    } else {
        // Connected and perhaps sent, then the connection failed: the outcome is unknown. The
        // batch is resent (at least once; same EventUid).
        AdapterError::new(
            ErrorClass::Protocol,
            format!("connection to {target} failed before a complete answer: {detail}"),
        )
    }
}

/// `Retry-After` as delay-seconds or an HTTP date (RFC 9110 §10.2.3).
pub(crate) fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    let at = time::PrimitiveDateTime::parse(value, format)
        .ok()?
        .assume_utc();
    let wait = at - OffsetDateTime::now_utc();
    Some(Duration::try_from(wait).unwrap_or(Duration::ZERO))
}

/// Reads at most `max` bytes of an answer body.
pub(crate) async fn read_limited(
    target: &str,
    mut response: reqwest::Response,
    max: usize,
) -> Result<Vec<u8>, AdapterError> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| classify_transport(target, &e))?
    {
        let room = max.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= max {
            break;
        }
    }
    Ok(body)
}

/// Gzip-compresses `body` at the fastest level (the wire is loopback or a LAN; CPU matters more).
pub(crate) fn gzip(body: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 4 + 64),
        flate2::Compression::fast(),
    );
    // Writing to a Vec cannot fail.
    let _ = encoder.write_all(body);
    encoder.finish().unwrap_or_default()
}

/// Checks and parses an `http(s)` base URL for `field`.
pub(crate) fn parse_base_url(field: &str, raw: &str) -> Result<reqwest::Url, AdapterError> {
    let bad = |rule: &str| AdapterError::new(ErrorClass::Internal, format!("{field}: {rule}"));
    let url =
        reqwest::Url::parse(raw.trim()).map_err(|e| bad(&format!("not an absolute URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("scheme must be http or https"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("must not contain credentials"));
    }
    if url.fragment().is_some() {
        return Err(bad("must not have a fragment"));
    }
    Ok(url)
}

/// `base` with `path` appended to its own path.
pub(crate) fn join_path(base: &reqwest::Url, path: &str) -> reqwest::Url {
    let mut url = base.clone();
    let prefix = url.path().trim_end_matches('/').to_owned();
    url.set_path(&format!("{prefix}{path}"));
    url.set_query(None);
    url
}
