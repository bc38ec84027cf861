//! What each Kafka message holds. Pure: no I/O.
//!
//! - key: the ledger sequence as decimal text (`"42"`), so every copy of a record (a resend)
//!   has the same key and lands on the same partition, after the earlier copy;
//! - value: the record's canonical JSON exactly as hashed into the ledger (a checkpoint: its
//!   JSON object with the signed note);
//! - headers: `event_uid` and `kind` (`record` or `checkpoint`), so consumers can de-duplicate
//!   and route without parsing the value.

use bytes::Bytes;

use crate::AdapterError;
use crate::sink::SinkRecord;

/// Header carrying the event uid.
pub(super) const EVENT_UID_HEADER: &str = "event_uid";
/// Header carrying the record kind.
pub(super) const KIND_HEADER: &str = "kind";

/// The message value for `record`.
pub(super) fn value(record: &SinkRecord) -> Result<Bytes, AdapterError> {
    crate::splunk_hec::check_object(&record.json)?;
    Ok(record.json.clone())
}

/// The message key for sequence `seq`.
pub(super) fn key(seq: u64) -> String {
    seq.to_string()
}
