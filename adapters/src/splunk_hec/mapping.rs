//! The HEC envelope an audit record travels in. Pure: no I/O.
//!
//! ```json
//! {"time":1732262400.123,"host":"gw-1","source":"nmpp-gateway","sourcetype":"nmpp:audit",
//!  "index":"police_audit","event":{…the record's canonical JSON, byte for byte…},
//!  "fields":{"seq":"42","event_uid":"0193…","kind":"record"}}
//! ```
//!
//! `event` is the record's canonical JSON exactly as hashed into the ledger, so an auditor can
//! recompute its hash from what Splunk holds. `fields` are indexed fields (flat strings), so
//! `event_uid` and `seq` are searchable without parsing the event, and duplicates (a resend
//! after an acknowledgement timeout) can be removed with `dedup event_uid`.

use bytes::Bytes;

use crate::sink::{RecordKind, SinkRecord};
use crate::{AdapterError, ErrorClass};

/// What every envelope of one sink shares, serialised once.
#[derive(Debug, Clone)]
pub(super) struct EnvelopeParts {
    /// `"host":…,"source":…,` (JSON-escaped, possibly empty).
    common: String,
    /// `"sourcetype":…,` then `"index":…,` for records.
    record: String,
    /// The same for checkpoints.
    checkpoint: String,
}

impl EnvelopeParts {
    pub(super) fn new(
        host: Option<&str>,
        source: &str,
        sourcetype: &str,
        checkpoint_sourcetype: &str,
        index: Option<&str>,
    ) -> Self {
        let mut common = String::new();
        if let Some(host) = host {
            common.push_str(&format!("\"host\":{},", json_string(host)));
        }
        common.push_str(&format!("\"source\":{},", json_string(source)));
        let index = index
            .map(|i| format!("\"index\":{},", json_string(i)))
            .unwrap_or_default();
        Self {
            record: format!("\"sourcetype\":{},{index}", json_string(sourcetype)),
            checkpoint: format!(
                "\"sourcetype\":{},{index}",
                json_string(checkpoint_sourcetype)
            ),
            common,
        }
    }

    /// The envelope of `record`, newline-terminated (HEC accepts concatenated envelopes; the
    /// newline only helps a human reading a capture).
    pub(super) fn encode(&self, record: &SinkRecord) -> Result<Bytes, AdapterError> {
        check_object(&record.json)?;
        let kind = record.kind.as_str();
        let meta = match record.kind {
            RecordKind::Record => &self.record,
            RecordKind::Checkpoint => &self.checkpoint,
        };
        let nanos = record.time.unix_timestamp_nanos();
        let millis = nanos.div_euclid(1_000_000);
        let (secs, frac) = (millis.div_euclid(1000), millis.rem_euclid(1000));
        let uid = json_string(&record.event_uid);
        let mut out = Vec::with_capacity(record.json.len() + 256);
        out.extend_from_slice(format!("{{\"time\":{secs}.{frac:03},").as_bytes());
        out.extend_from_slice(self.common.as_bytes());
        out.extend_from_slice(meta.as_bytes());
        out.extend_from_slice(b"\"event\":");
        out.extend_from_slice(&record.json);
        out.extend_from_slice(
            format!(
                ",\"fields\":{{\"seq\":\"{}\",\"event_uid\":{uid},\"kind\":\"{kind}\"}}}}\n",
                record.seq
            )
            .as_bytes(),
        );
        Ok(Bytes::from(out))
    }
}

/// A JSON string literal for `s`.
fn json_string(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

/// The record must be one JSON object: anything else would corrupt the whole request body.
pub(crate) fn check_object(json: &[u8]) -> Result<(), AdapterError> {
    let starts = json
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'{');
    if !starts || serde_json::from_slice::<serde::de::IgnoredAny>(json).is_err() {
        return Err(AdapterError::new(
            ErrorClass::Mapping,
            "audit record is not a single JSON object",
        ));
    }
    Ok(())
}
