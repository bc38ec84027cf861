//! Helpers shared by the sink tests (records, a running driver), and tests of the driver's pure
//! logic (batch cutting, splitting, configuration). The driver against real targets is tested
//! in each sink's `tests.rs`.

use std::time::Duration;

use bytes::Bytes;
use time::OffsetDateTime;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use super::driver::split;
use super::{
    AuditSink, AuditSinkConfig, BatchLimits, DriverConfig, EncodedRecord, MemoryJournal,
    RecordKind, SendOutcome, SinkDriver, SinkRecord, SinkState, SinkStatus,
};
use crate::{AdapterError, ErrorClass};

/// A deterministic UUID-shaped event uid for `seq`.
pub(crate) fn uid(seq: u64) -> String {
    format!("01937a00-0000-7000-8000-{seq:012x}")
}

/// An audit record shaped like the ledger's (`replay::AuditRecord`, keys sorted as RFC 8785
/// canonical JSON), about 500 bytes. `marker` is put in `detail` when given.
pub(crate) fn record_with(seq: u64, marker: Option<&str>) -> SinkRecord {
    let time = OffsetDateTime::from_unix_timestamp(1_764_000_000 + seq as i64).expect("valid")
        + time::Duration::milliseconds(123);
    let stamp = time
        .format(&time::format_description::well_known::Rfc3339)
        .expect("formats");
    let detail = match marker {
        Some(m) => serde_json::json!({ "note": m, "status": 200 }),
        None => serde_json::json!({ "status": 200 }),
    };
    let json = serde_json::json!({
        "action": "exchange.view",
        "actor": "operator.jones",
        "correlation_id": format!("corr-{seq}"),
        "detail": detail,
        "event_uid": uid(seq),
        "force": "demo",
        "hash": format!("{:064x}", seq * 7919),
        "object_id": format!("0193-exchange-{seq}"),
        "object_type": "exchange",
        "prev_hash": format!("{:064x}", (seq - 1) * 7919),
        "result": "success",
        "role": "operator",
        "seq": seq,
        "source_ip": "10.1.2.3",
        "time": stamp,
        "user_agent": "Mozilla/5.0 (test)",
    });
    SinkRecord::record(seq, uid(seq), time, json.to_string())
}

/// [`record_with`] without a marker.
pub(crate) fn record(seq: u64) -> SinkRecord {
    record_with(seq, None)
}

/// Short times so tests run in well under a second per scenario.
pub(crate) fn fast_driver() -> DriverConfig {
    DriverConfig {
        max_batch_records: 500,
        max_in_flight: 8,
        ack_poll_ms: 20,
        ack_timeout_ms: 2_000,
        retry_min_ms: 20,
        retry_max_ms: 200,
        retry_factor: 2.0,
        retry_jitter: true,
        halt_recheck_ms: 60_000,
        idle_poll_ms: 50,
        max_consecutive_quarantines: 100,
    }
}

/// A driver running on its own task.
pub(crate) struct Running {
    pub(crate) journal: MemoryJournal,
    pub(crate) status: watch::Receiver<SinkStatus>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<u64, AdapterError>>>,
    name: String,
}

impl Running {
    /// Starts `sink` with `cfg` over `journal` from `cursor`.
    pub(crate) fn start(
        sink: Box<dyn AuditSink>,
        cfg: DriverConfig,
        journal: MemoryJournal,
        cursor: u64,
    ) -> Self {
        let driver = SinkDriver::new(sink, cfg).expect("valid driver config");
        journal.attach(driver.waker());
        let status = driver.status();
        let name = driver.name().to_owned();
        let (stop, stopped) = oneshot::channel::<()>();
        let j = journal.clone();
        let task = tokio::spawn(async move {
            driver
                .run(j, cursor, async move {
                    let _ = stopped.await;
                })
                .await
        });
        Self {
            journal,
            status,
            stop: Some(stop),
            task: Some(task),
            name,
        }
    }

    /// Appends records `from..=to`.
    pub(crate) fn push_range(&self, from: u64, to: u64) {
        for seq in from..=to {
            self.journal.push(record(seq));
        }
    }

    /// Waits until the cursor reaches `seq`; panics with the status after `timeout`.
    pub(crate) async fn wait_for(&self, seq: u64, timeout: Duration) {
        if !self.journal.wait_for_cursor(&self.name, seq, timeout).await {
            panic!(
                "cursor of {} did not reach {seq} in {timeout:?}: {:?}",
                self.name,
                *self.status.borrow()
            );
        }
    }

    /// Waits until the state matches `pred`; panics after `timeout`.
    pub(crate) async fn wait_state(
        &mut self,
        timeout: Duration,
        pred: impl Fn(&SinkState) -> bool,
    ) {
        let reached = matches!(
            tokio::time::timeout(timeout, self.status.wait_for(|s| pred(&s.state))).await,
            Ok(Ok(_))
        );
        assert!(
            reached,
            "state not reached in {timeout:?}: {:?}",
            *self.status.borrow()
        );
    }

    /// The current status.
    pub(crate) fn now(&self) -> SinkStatus {
        self.status.borrow().clone()
    }

    /// Stops the driver and returns its last committed cursor.
    pub(crate) async fn stop(mut self) -> u64 {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let task = self.task.take().expect("running");
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("driver stops")
            .expect("driver task")
            .expect("driver ends cleanly")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

fn encoded(seq: u64, len: usize) -> EncodedRecord {
    EncodedRecord {
        seq,
        event_uid: uid(seq),
        kind: RecordKind::Record,
        bytes: Bytes::from(vec![b'x'; len]),
    }
}

#[test]
fn split_isolates_the_named_record_or_halves() {
    let items: Vec<_> = (1..=5).map(|s| encoded(s, 1)).collect();
    let seqs = |parts: Vec<Vec<EncodedRecord>>| {
        parts
            .into_iter()
            .map(|p| p.into_iter().map(|r| r.seq).collect::<Vec<_>>())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        seqs(split(items.clone(), Some(2))),
        vec![vec![1, 2], vec![3], vec![4, 5]]
    );
    assert_eq!(
        seqs(split(items.clone(), Some(0))),
        vec![vec![1], vec![2, 3, 4, 5]]
    );
    assert_eq!(
        seqs(split(items.clone(), Some(4))),
        vec![vec![1, 2, 3, 4], vec![5]]
    );
    assert_eq!(
        seqs(split(items.clone(), None)),
        vec![vec![1, 2, 3], vec![4, 5]]
    );
    assert_eq!(
        seqs(split(items, Some(99))),
        vec![vec![1, 2, 3], vec![4, 5]],
        "an index outside the batch is ignored"
    );
}

/// A sink that records the batches it is given and delivers them (pure batching tests only;
/// every behaviour against a target is tested against a real simulator).
struct Recorder {
    batches: std::sync::Arc<std::sync::Mutex<Vec<Vec<u64>>>>,
    limits: BatchLimits,
}

#[async_trait::async_trait]
impl AuditSink for Recorder {
    fn name(&self) -> &str {
        "recorder"
    }
    fn limits(&self) -> BatchLimits {
        self.limits
    }
    fn encode(&self, record: &SinkRecord) -> Result<Bytes, AdapterError> {
        if record.json.starts_with(b"!") {
            return Err(AdapterError::new(ErrorClass::Mapping, "cannot encode"));
        }
        Ok(Bytes::from(vec![b'x'; record.json.len()]))
    }
    async fn send(&mut self, batch: &[EncodedRecord]) -> Result<SendOutcome, AdapterError> {
        let size: usize = batch
            .iter()
            .map(|r| r.bytes.len() + self.limits.per_record_overhead)
            .sum::<usize>()
            + self.limits.per_batch_overhead;
        assert!(
            size <= self.limits.max_bytes,
            "batch of {size} bytes over the limit"
        );
        self.batches
            .lock()
            .unwrap()
            .push(batch.iter().map(|r| r.seq).collect());
        Ok(SendOutcome::Delivered)
    }
    async fn health(&mut self) -> Result<(), AdapterError> {
        Ok(())
    }
}

#[tokio::test]
async fn batches_respect_byte_and_record_limits_and_oversized_or_unencodable_records_are_quarantined()
 {
    let batches = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = Recorder {
        batches: batches.clone(),
        limits: BatchLimits {
            max_bytes: 1000,
            max_records: 4,
            per_record_overhead: 1,
            per_batch_overhead: 2,
        },
    };
    let journal = MemoryJournal::new();
    let t = OffsetDateTime::UNIX_EPOCH;
    for seq in 1..=20u64 {
        let body = match seq {
            7 => vec![b'y'; 2000],     // larger than a request may be
            11 => b"!broken".to_vec(), // cannot be encoded
            _ => vec![b'y'; 300],
        };
        journal.push(SinkRecord::record(seq, uid(seq), t, body));
    }
    let running = Running::start(Box::new(sink), fast_driver(), journal.clone(), 0);
    running.wait_for(20, Duration::from_secs(5)).await;
    let sent: Vec<Vec<u64>> = batches.lock().unwrap().clone();
    let flat: Vec<u64> = sent.iter().flatten().copied().collect();
    let expected: Vec<u64> = (1..=20).filter(|s| *s != 7 && *s != 11).collect();
    assert_eq!(flat, expected, "each record once, in order");
    assert!(
        sent.iter().all(|b| b.len() <= 3),
        "3 × 301 + 2 fits, 4 × 301 + 2 does not: {sent:?}"
    );
    let quarantined = journal.quarantined("recorder");
    assert_eq!(
        quarantined
            .iter()
            .map(|q| (q.seq, q.class))
            .collect::<Vec<_>>(),
        vec![(7, ErrorClass::Rejected), (11, ErrorClass::Mapping)]
    );
    assert!(
        quarantined[0].reason.contains("request limit"),
        "{}",
        quarantined[0].reason
    );
    let status = running.now();
    assert_eq!((status.delivered, status.quarantined), (18, 2));
    assert_eq!(running.stop().await, 20);
}

#[test]
fn driver_config_defaults_and_checks() {
    let cfg: DriverConfig = serde_json::from_value(serde_json::json!({})).expect("defaults");
    assert_eq!(cfg, DriverConfig::default());
    assert!(serde_json::from_value::<DriverConfig>(serde_json::json!({"max_batch": 1})).is_err());
    let sink = || -> Box<dyn AuditSink> {
        Box::new(Recorder {
            batches: Default::default(),
            limits: BatchLimits {
                max_bytes: 10,
                max_records: 1,
                per_record_overhead: 0,
                per_batch_overhead: 0,
            },
        })
    };
    for (cfg, field) in [
        (
            DriverConfig {
                max_in_flight: 0,
                ..DriverConfig::default()
            },
            "driver.max_in_flight",
        ),
        (
            DriverConfig {
                retry_max_ms: 1,
                ..DriverConfig::default()
            },
            "driver.retry_max_ms",
        ),
        (
            DriverConfig {
                retry_factor: 0.5,
                ..DriverConfig::default()
            },
            "driver.retry_factor",
        ),
    ] {
        let error = SinkDriver::new(sink(), cfg).expect_err("invalid");
        assert_eq!(error.class, ErrorClass::Internal);
        assert!(error.message.starts_with(field), "{error}");
    }
}

#[test]
fn sink_configs_are_tagged() {
    let cfg: AuditSinkConfig = serde_json::from_value(serde_json::json!({
        "type": "splunk_hec",
        "endpoint": "http://127.0.0.1:8088",
        "token": "t0k3n",
        "channel": "0f5d6e1c-5b7a-4d1e-9a55-1b2c3d4e5f60",
        "driver": { "ack_timeout_ms": 5000 },
    }))
    .expect("valid");
    assert_eq!(cfg.name(), "splunk_hec");
    assert_eq!(cfg.driver().ack_timeout_ms, 5000);
    assert!(!format!("{cfg:?}").contains("t0k3n"));
    assert!(
        !serde_json::to_string(&cfg)
            .expect("serialises")
            .contains("t0k3n")
    );
    let unknown = serde_json::from_value::<AuditSinkConfig>(serde_json::json!({
        "type": "splunk_hec", "endpoint": "http://x", "token": "t", "tokn": "t",
    }));
    assert!(unknown.is_err());
}

#[test]
fn checkpoint_records_carry_the_note() {
    let r = SinkRecord::checkpoint(
        9,
        "cp-9",
        OffsetDateTime::UNIX_EPOCH,
        8,
        "origin\n8\nhash\n\n— sig\n",
    );
    assert_eq!(r.kind, RecordKind::Checkpoint);
    let v: serde_json::Value = serde_json::from_slice(&r.json).expect("json");
    assert_eq!(v["kind"], "checkpoint");
    assert_eq!(v["tree_size"], 8);
    assert!(v["note"].as_str().expect("note").starts_with("origin\n8\n"));
}

/// Every state a driver reports serialises with a `state` tag (for the health endpoint).
#[test]
fn states_serialise_with_a_tag() {
    let s = serde_json::to_value(SinkState::Halted {
        class: ErrorClass::Unauthorized,
        message: "x".into(),
    })
    .expect("serialises");
    assert_eq!(s["state"], "halted");
    assert_eq!(s["class"], "unauthorized");
}
