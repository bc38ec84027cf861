//! [`SinkDriver`]: the loop around one [`AuditSink`] — read after the cursor, batch by bytes,
//! send, retry with backoff, track acknowledgements, resend what stays unconfirmed, split and
//! quarantine what the target refuses, commit the contiguous delivered sequence.
//!
//! The loop is one task and makes one call at a time; throughput comes from batches (up to the
//! sink's byte limit) and from keeping up to [`DriverConfig::max_in_flight`] batches awaiting
//! acknowledgement at once. Every decision branches on [`ErrorClass`], never on message text.
//!
//! | what happened | what the driver does |
//! |---|---|
//! | `Delivered` | the batch is done |
//! | `Accepted(ack)` | the batch waits; done when `poll_acks` reports `ack`; resent (whole, same records, same `EventUid`s) when not reported within `ack_timeout_ms` |
//! | `Refused { first_bad }` | split at `first_bad` (or in halves) and send the parts; a refused single record is quarantined (journalled, then passed) |
//! | retryable error (connect, timeout, 5xx, throttled, protocol) | the same batch again after exponential backoff with jitter, at least the target's `Retry-After`; acknowledgements keep being polled meanwhile |
//! | non-retryable error (unauthorized, internal/configuration, mapping of a whole batch) | **halt**: state `Halted`, an error log line, and one new attempt every `halt_recheck_ms` — never a hot loop |
//! | more than `max_consecutive_quarantines` records quarantined without a delivery in between | halt as well: a target refusing everything is a configuration fault, not bad data |

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, watch};

use super::{
    AckId, AuditSink, BatchLimits, EncodedRecord, QuarantinedRecord, SendOutcome, SinkJournal,
    SinkRecord, ms,
};
use crate::{AdapterError, ErrorClass};

/// How a [`SinkDriver`] batches, retries and waits. Every field has a default suited to
/// production; tests shorten the times.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DriverConfig {
    /// Most records read from the journal, and put in one batch, at a time (the sink's own limit
    /// applies too). Default 5000.
    pub max_batch_records: usize,
    /// Most batches sent and awaiting acknowledgement at once (only sinks with asynchronous
    /// acknowledgement have more than one). Default 16.
    pub max_in_flight: usize,
    /// How often pending acknowledgements are polled, in milliseconds. Default 250.
    pub ack_poll_ms: u64,
    /// How long a batch may stay unacknowledged before it is resent, in milliseconds.
    /// Default 60000.
    pub ack_timeout_ms: u64,
    /// First retry delay after a retryable failure, in milliseconds. Default 200.
    pub retry_min_ms: u64,
    /// Longest retry delay, in milliseconds (a target's `Retry-After` may ask for more and is
    /// honoured). Default 30000.
    pub retry_max_ms: u64,
    /// Growth factor of the retry delay. Default 2.
    pub retry_factor: f32,
    /// Adds a random part (up to the delay itself) to each retry delay, so that many gateways
    /// recovering together do not retry in step. Default true.
    pub retry_jitter: bool,
    /// While halted (credentials refused, configuration fault), one new attempt this often, in
    /// milliseconds. Default 300000 (5 minutes).
    pub halt_recheck_ms: u64,
    /// How long to wait for new records when the journal has none and nobody wakes the driver,
    /// in milliseconds. Default 1000.
    pub idle_poll_ms: u64,
    /// Records quarantined in a row without any delivery in between before the driver halts
    /// instead (a target that refuses everything is misconfigured). Default 100.
    pub max_consecutive_quarantines: u32,
}

impl Default for DriverConfig {
    fn default() -> Self {
        Self {
            max_batch_records: 5000,
            max_in_flight: 16,
            ack_poll_ms: 250,
            ack_timeout_ms: 60_000,
            retry_min_ms: 200,
            retry_max_ms: 30_000,
            retry_factor: 2.0,
            retry_jitter: true,
            halt_recheck_ms: 300_000,
            idle_poll_ms: 1000,
            max_consecutive_quarantines: 100,
        }
    }
}

impl DriverConfig {
    fn check(&self) -> Result<(), AdapterError> {
        let positive = [
            ("max_batch_records", self.max_batch_records as u64),
            ("max_in_flight", self.max_in_flight as u64),
            ("ack_poll_ms", self.ack_poll_ms),
            ("ack_timeout_ms", self.ack_timeout_ms),
            ("retry_min_ms", self.retry_min_ms),
            ("retry_max_ms", self.retry_max_ms),
            ("halt_recheck_ms", self.halt_recheck_ms),
            ("idle_poll_ms", self.idle_poll_ms),
            (
                "max_consecutive_quarantines",
                u64::from(self.max_consecutive_quarantines),
            ),
        ];
        for (field, value) in positive {
            if value == 0 {
                return Err(AdapterError::new(
                    ErrorClass::Internal,
                    format!("driver.{field}: must be greater than 0"),
                ));
            }
        }
        if self.retry_max_ms < self.retry_min_ms {
            return Err(AdapterError::new(
                ErrorClass::Internal,
                "driver.retry_max_ms: must not be less than retry_min_ms",
            ));
        }
        if !(self.retry_factor >= 1.0 && self.retry_factor.is_finite()) {
            return Err(AdapterError::new(
                ErrorClass::Internal,
                "driver.retry_factor: must be a number of at least 1",
            ));
        }
        Ok(())
    }

    fn backoff(&self) -> ExponentialBackoff {
        let builder = ExponentialBuilder::default()
            .with_min_delay(ms(self.retry_min_ms))
            .with_max_delay(ms(self.retry_max_ms))
            .with_factor(self.retry_factor)
            .without_max_times();
        if self.retry_jitter {
            builder.with_jitter().build()
        } else {
            builder.build()
        }
    }
}

/// Whether a sink is keeping up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum SinkState {
    /// Delivering (or idle with nothing to deliver).
    Running,
    /// The last attempt failed and will be retried after a backoff.
    Retrying {
        /// Class of the last failure.
        class: ErrorClass,
        /// Its detail.
        message: String,
    },
    /// Stopped until an operator acts (credentials refused, configuration fault); one attempt
    /// every `halt_recheck_ms`. Alert on this.
    Halted {
        /// Class of the failure.
        class: ErrorClass,
        /// Its detail.
        message: String,
    },
    /// The driver has returned.
    Stopped,
}

/// A snapshot of a driver, published on every change (see [`SinkDriver::status`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SinkStatus {
    /// The sink's name.
    pub sink: String,
    /// Whether it is keeping up.
    pub state: SinkState,
    /// The committed cursor: everything up to here is delivered or quarantined.
    pub delivered_through: u64,
    /// The highest sequence read from the journal.
    pub read_through: u64,
    /// Records delivered since start (resends counted once per delivery).
    pub delivered: u64,
    /// Records quarantined since start.
    pub quarantined: u64,
    /// Batches resent because their acknowledgement did not come in time, since start.
    pub ack_timeouts: u64,
    /// Batches awaiting acknowledgement now.
    pub pending_acks: usize,
}

/// The loop that ships one sink's stream (see the module documentation for the rules).
///
/// ```no_run
/// # use adapters::sink::AuditSinkConfig;
/// # async fn demo(
/// #     journal: adapters::sink::MemoryJournal,
/// #     config: AuditSinkConfig, // from the gateway's `[[audit.sinks]]`
/// # ) -> Result<(), adapters::AdapterError> {
/// use adapters::sink::SinkDriver;
/// let sink = config.build().await?;
/// let driver = SinkDriver::new(sink, config.driver().clone())?;
/// let wake = driver.waker(); // notify_one() after appending audit records
/// let cursor = 0; // this sink's persisted cursor
/// let last = driver.run(journal, cursor, std::future::pending()).await?;
/// # Ok(()) }
/// ```
pub struct SinkDriver {
    sink: Box<dyn AuditSink>,
    cfg: DriverConfig,
    limits: BatchLimits,
    name: String,
    wake: Arc<Notify>,
    status: watch::Sender<SinkStatus>,
}

impl std::fmt::Debug for SinkDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SinkDriver")
            .field("sink", &self.name)
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

/// A batch on its way: records in increasing `seq` order.
#[derive(Debug)]
struct Batch {
    items: Vec<EncodedRecord>,
    /// Set for a record that could not be encoded: it is quarantined, not sent.
    poison: Option<AdapterError>,
}

impl Batch {
    fn first_seq(&self) -> u64 {
        self.items.first().map_or(u64::MAX, |r| r.seq)
    }
}

#[derive(Debug)]
struct Pending {
    batch: Batch,
    ack: AckId,
    sent_at: Instant,
}

/// Mutable state of one run.
struct Run {
    queue: VecDeque<Batch>,
    pending: Vec<Pending>,
    read_through: u64,
    committed: u64,
    backoff: ExponentialBackoff,
    not_before: Option<Instant>,
    next_ack_poll: Instant,
    consecutive_quarantines: u32,
    halted: bool,
    status: SinkStatus,
}

impl SinkDriver {
    /// A driver for `sink`. Fails (class `internal`, naming the field) on an invalid `cfg`.
    pub fn new(sink: Box<dyn AuditSink>, cfg: DriverConfig) -> Result<Self, AdapterError> {
        cfg.check()?;
        let limits = sink.limits();
        if limits.max_bytes == 0 || limits.max_records == 0 {
            return Err(AdapterError::new(
                ErrorClass::Internal,
                format!("{}: batch limits must be greater than 0", sink.name()),
            ));
        }
        let name = sink.name().to_owned();
        let status = watch::Sender::new(SinkStatus {
            sink: name.clone(),
            state: SinkState::Running,
            delivered_through: 0,
            read_through: 0,
            delivered: 0,
            quarantined: 0,
            ack_timeouts: 0,
            pending_acks: 0,
        });
        Ok(Self {
            sink,
            cfg,
            limits,
            name,
            wake: Arc::new(Notify::new()),
            status,
        })
    }

    /// The sink's name (its cursor key).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Wakes an idle driver: call `notify_one()` after appending records to the journal.
    /// Without it the driver still finds them within `idle_poll_ms`.
    pub fn waker(&self) -> Arc<Notify> {
        Arc::clone(&self.wake)
    }

    /// Live status (for `/health/ready`, metrics and alerts).
    pub fn status(&self) -> watch::Receiver<SinkStatus> {
        self.status.subscribe()
    }

    /// Ships everything after `cursor` until `shutdown` resolves, then returns the last committed
    /// cursor. Returns an error only when the journal itself fails to read or commit for longer
    /// than a retry can help with (never for a sink failure: those are retried or halt).
    #[tracing::instrument(name = "sink.run", skip_all, fields(sink = %self.name, cursor))]
    pub async fn run<J: SinkJournal>(
        mut self,
        journal: J,
        cursor: u64,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<u64, AdapterError> {
        let mut shutdown = std::pin::pin!(shutdown);
        let now = Instant::now();
        let mut run = Run {
            queue: VecDeque::new(),
            pending: Vec::new(),
            read_through: cursor,
            committed: cursor,
            backoff: self.cfg.backoff(),
            not_before: None,
            next_ack_poll: now,
            consecutive_quarantines: 0,
            halted: false,
            status: SinkStatus {
                delivered_through: cursor,
                read_through: cursor,
                ..self.status.borrow().clone()
            },
        };
        self.publish(&run);
        tracing::info!(cursor, "audit sink driver started");
        // `consistent` is false when shutdown interrupted a step half-way (a batch may then be
        // neither queued nor pending), in which case the state must not be committed again.
        let (outcome, consistent) = loop {
            let progressed = tokio::select! {
                biased;
                () = &mut shutdown => break (Ok(()), false),
                step = self.step(&journal, &mut run) => step,
            };
            match progressed {
                Ok(true) => {}
                Ok(false) => {
                    let wait = self.idle_wait(&run);
                    tokio::select! {
                        biased;
                        () = &mut shutdown => break (Ok(()), true),
                        () = self.wake.notified() => {}
                        () = tokio::time::sleep(wait) => {}
                    }
                }
                Err(error) => break (Err(error), true),
            }
        };
        // Whatever was confirmed before shutdown is committed; what was not is read again on the
        // next start (and may then reach the target twice, under the same EventUid).
        let committed = if consistent {
            self.commit(&journal, &mut run).await
        } else {
            Ok(())
        };
        run.status.state = SinkState::Stopped;
        self.publish(&run);
        tracing::info!(
            delivered_through = run.committed,
            "audit sink driver stopped"
        );
        outcome?;
        committed?;
        Ok(run.committed)
    }

    /// One unit of work. `Ok(true)` when something happened (loop again at once), `Ok(false)`
    /// when there is nothing to do until a timer, a wake-up or new records.
    async fn step<J: SinkJournal>(
        &mut self,
        journal: &J,
        run: &mut Run,
    ) -> Result<bool, AdapterError> {
        let mut progressed = false;
        let now = Instant::now();

        // 1. Acknowledgements.
        let halted_wait = run.halted && run.not_before.is_some_and(|t| now < t);
        if !run.pending.is_empty() && now >= run.next_ack_poll && !halted_wait {
            run.next_ack_poll = now + ms(self.cfg.ack_poll_ms);
            progressed |= self.poll_acks(run).await;
            self.resend_unacknowledged(run);
        }

        // 2. Commit what is now contiguous.
        if watermark(run) > run.committed {
            self.commit(journal, run).await?;
            progressed = true;
        }

        // 3. Read more when nothing is waiting to be sent.
        if run.queue.is_empty() && run.pending.len() < self.cfg.max_in_flight && !run.halted {
            let records = journal
                .read_after(run.read_through, self.cfg.max_batch_records)
                .await
                .inspect_err(|e| {
                    tracing::warn!(class = %e.class, error = %e.message, "audit journal read failed");
                });
            match records {
                Ok(records) if !records.is_empty() => {
                    self.enqueue(run, records);
                    progressed = true;
                }
                Ok(_) => {}
                // A journal hiccup: try again after the idle poll.
                Err(_) => {}
            }
        }

        // 4. Send one batch.
        let ready = run.not_before.is_none_or(|t| Instant::now() >= t);
        if ready && !run.queue.is_empty() && run.pending.len() < self.cfg.max_in_flight {
            let batch = run.queue.pop_front().expect("queue is not empty");
            self.send(journal, run, batch).await;
            progressed = true;
        }
        Ok(progressed)
    }

    /// How long to sleep when a step did nothing.
    fn idle_wait(&self, run: &Run) -> Duration {
        let now = Instant::now();
        let mut wait = ms(self.cfg.idle_poll_ms);
        if !run.pending.is_empty() {
            wait = wait.min(run.next_ack_poll.saturating_duration_since(now));
        }
        if !run.queue.is_empty()
            && let Some(t) = run.not_before
        {
            wait = wait.min(t.saturating_duration_since(now));
        }
        wait.max(Duration::from_millis(1))
    }

    /// Encodes `records` and cuts them into batches within the sink's limits.
    fn enqueue(&self, run: &mut Run, records: Vec<SinkRecord>) {
        let limits = self.limits;
        let max_records = limits.max_records.min(self.cfg.max_batch_records);
        let mut current: Vec<EncodedRecord> = Vec::new();
        let mut current_bytes = limits.per_batch_overhead;
        for record in records {
            if record.seq <= run.read_through {
                // The journal must return increasing sequences; never ship one twice in a run.
                tracing::warn!(
                    seq = record.seq,
                    read_through = run.read_through,
                    "audit journal returned a sequence out of order; skipped"
                );
                continue;
            }
            run.read_through = record.seq;
            let encoded = match self.sink.encode(&record) {
                Ok(bytes) => EncodedRecord {
                    seq: record.seq,
                    event_uid: record.event_uid,
                    kind: record.kind,
                    bytes,
                },
                Err(error) => {
                    flush(run, &mut current, &mut current_bytes, limits);
                    run.queue.push_back(Batch {
                        items: vec![placeholder(&record)],
                        poison: Some(error),
                    });
                    continue;
                }
            };
            let size = encoded.bytes.len() + limits.per_record_overhead;
            if size + limits.per_batch_overhead > limits.max_bytes {
                flush(run, &mut current, &mut current_bytes, limits);
                let error = AdapterError::new(
                    ErrorClass::Rejected,
                    format!(
                        "{}: record is {} bytes encoded, more than the {}-byte request limit",
                        self.name, size, limits.max_bytes
                    ),
                );
                run.queue.push_back(Batch {
                    items: vec![encoded],
                    poison: Some(error),
                });
                continue;
            }
            if !current.is_empty()
                && (current_bytes + size > limits.max_bytes || current.len() >= max_records)
            {
                flush(run, &mut current, &mut current_bytes, limits);
            }
            current_bytes += size;
            current.push(encoded);
        }
        flush(run, &mut current, &mut current_bytes, limits);
        run.status.read_through = run.read_through;
        self.publish(run);
    }

    /// Sends `batch` and acts on the answer.
    async fn send<J: SinkJournal>(&mut self, journal: &J, run: &mut Run, batch: Batch) {
        if let Some(error) = batch.poison.clone() {
            self.quarantine(journal, run, batch, &error).await;
            return;
        }
        let records = batch.items.len();
        let first_seq = batch.first_seq();
        let started = Instant::now();
        let outcome = self.sink.send(&batch.items).await;
        let elapsed_ms = super::elapsed_ms(started);
        match outcome {
            Ok(SendOutcome::Delivered) => {
                tracing::debug!(records, first_seq, elapsed_ms, "audit batch delivered");
                self.recovered(run);
                self.delivered(run, batch.items.len());
            }
            Ok(SendOutcome::Accepted(ack)) => {
                tracing::debug!(
                    records,
                    first_seq,
                    ack,
                    elapsed_ms,
                    "audit batch accepted; awaiting acknowledgement"
                );
                self.recovered(run);
                run.pending.push(Pending {
                    batch,
                    ack,
                    sent_at: Instant::now(),
                });
                run.status.pending_acks = run.pending.len();
            }
            Ok(SendOutcome::Refused { first_bad, error }) => {
                if records == 1 {
                    self.quarantine(journal, run, batch, &error).await;
                    return;
                }
                let parts = split(batch.items, first_bad);
                tracing::info!(
                    records,
                    first_seq,
                    first_bad,
                    parts = parts.len(),
                    class = %error.class,
                    status = error.status,
                    error = %error.message,
                    "audit batch refused; splitting it to isolate the bad records"
                );
                for part in parts.into_iter().rev() {
                    run.queue.push_front(Batch {
                        items: part,
                        poison: None,
                    });
                }
            }
            Err(error) => {
                run.queue.push_front(batch);
                self.failed(run, &error, records, first_seq, elapsed_ms);
            }
        }
    }

    /// A send or poll failed as a whole: back off, or halt.
    fn failed(
        &self,
        run: &mut Run,
        error: &AdapterError,
        records: usize,
        first_seq: u64,
        elapsed_ms: u64,
    ) {
        if error.is_retryable() {
            let backoff = run.backoff.next().unwrap_or(ms(self.cfg.retry_max_ms));
            let wait = error
                .retry_after
                .map_or(backoff, |after| after.max(backoff));
            run.not_before = Some(Instant::now() + wait);
            tracing::warn!(
                class = %error.class,
                status = error.status,
                records,
                first_seq,
                elapsed_ms,
                retry_in_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                error = %error.message,
                "audit sink attempt failed; retrying after a backoff"
            );
            run.status.state = SinkState::Retrying {
                class: error.class,
                message: error.message.clone(),
            };
        } else {
            self.halt(run, error.class, &error.message);
        }
        self.publish(run);
    }

    fn halt(&self, run: &mut Run, class: ErrorClass, message: &str) {
        let wait = ms(self.cfg.halt_recheck_ms);
        run.not_before = Some(Instant::now() + wait);
        run.halted = true;
        tracing::error!(
            class = %class,
            recheck_in_ms = self.cfg.halt_recheck_ms,
            error = %message,
            "audit sink halted: needs an operator (credentials or configuration); nothing is lost, delivery resumes when the target accepts again"
        );
        run.status.state = SinkState::Halted {
            class,
            message: message.to_owned(),
        };
    }

    /// A call succeeded: reset the backoff and leave a halt.
    fn recovered(&self, run: &mut Run) {
        run.backoff = self.cfg.backoff();
        run.not_before = None;
        if run.halted || run.status.state != SinkState::Running {
            tracing::info!("audit sink recovered");
        }
        run.halted = false;
        run.status.state = SinkState::Running;
    }

    fn delivered(&self, run: &mut Run, records: usize) {
        run.consecutive_quarantines = 0;
        run.status.delivered += records as u64;
        self.publish(run);
    }

    async fn poll_acks(&mut self, run: &mut Run) -> bool {
        let tickets: Vec<AckId> = run.pending.iter().map(|p| p.ack).collect();
        match self.sink.poll_acks(&tickets).await {
            Ok(done) if done.is_empty() => {
                if run.halted {
                    self.recovered(run);
                }
                false
            }
            Ok(done) => {
                if run.halted {
                    self.recovered(run);
                }
                let mut confirmed = 0;
                run.pending.retain(|p| {
                    let hit = done.contains(&p.ack);
                    if hit {
                        confirmed += p.batch.items.len();
                    }
                    !hit
                });
                tracing::debug!(
                    acks = done.len(),
                    records = confirmed,
                    "audit acknowledgements confirmed"
                );
                run.status.pending_acks = run.pending.len();
                self.delivered(run, confirmed);
                true
            }
            Err(error) if error.is_retryable() => {
                // Pending batches stay pending; if the ack service stays away they time out and
                // are resent. Never treated as success.
                tracing::warn!(
                    class = %error.class,
                    status = error.status,
                    pending = tickets.len(),
                    error = %error.message,
                    "audit acknowledgement poll failed"
                );
                false
            }
            Err(error) => {
                self.halt(run, error.class, &error.message);
                self.publish(run);
                false
            }
        }
    }

    /// Moves batches unacknowledged for longer than `ack_timeout_ms` back to the send queue.
    fn resend_unacknowledged(&self, run: &mut Run) {
        let timeout = ms(self.cfg.ack_timeout_ms);
        let now = Instant::now();
        let mut expired = Vec::new();
        run.pending.retain_mut(|p| {
            if now.duration_since(p.sent_at) >= timeout {
                expired.push((
                    p.ack,
                    std::mem::replace(
                        &mut p.batch,
                        Batch {
                            items: Vec::new(),
                            poison: None,
                        },
                    ),
                ));
                false
            } else {
                true
            }
        });
        if expired.is_empty() {
            return;
        }
        // Oldest first at the front, so the cursor can move as soon as possible.
        expired.sort_by_key(|(_, b)| b.first_seq());
        for (ack, batch) in expired.into_iter().rev() {
            tracing::warn!(
                ack,
                records = batch.items.len(),
                first_seq = batch.first_seq(),
                timeout_ms = self.cfg.ack_timeout_ms,
                "audit batch not acknowledged in time; resending it"
            );
            run.status.ack_timeouts += 1;
            run.queue.push_front(batch);
        }
        run.status.pending_acks = run.pending.len();
        self.publish(run);
    }

    async fn quarantine<J: SinkJournal>(
        &mut self,
        journal: &J,
        run: &mut Run,
        batch: Batch,
        error: &AdapterError,
    ) {
        if run.consecutive_quarantines >= self.cfg.max_consecutive_quarantines {
            run.queue.push_front(batch);
            self.halt(
                run,
                ErrorClass::Internal,
                &format!(
                    "{} records refused in a row without a delivery: the target is probably misconfigured; last refusal: {}",
                    run.consecutive_quarantines, error.message
                ),
            );
            self.publish(run);
            return;
        }
        for record in &batch.items {
            let entry = QuarantinedRecord {
                seq: record.seq,
                event_uid: record.event_uid.clone(),
                kind: record.kind,
                class: error.class,
                status: error.status,
                reason: error.message.clone(),
            };
            if let Err(journal_error) = journal.quarantine(&self.name, &entry).await {
                // Cannot record it, so cannot pass it: try again later.
                tracing::warn!(
                    class = %journal_error.class,
                    error = %journal_error.message,
                    seq = record.seq,
                    "could not journal a quarantined audit record; will retry"
                );
                run.queue.push_front(batch);
                let wait = run.backoff.next().unwrap_or(ms(self.cfg.retry_max_ms));
                run.not_before = Some(Instant::now() + wait);
                return;
            }
            tracing::error!(
                seq = record.seq,
                event_uid = %record.event_uid,
                kind = record.kind.as_str(),
                class = %error.class,
                status = error.status,
                error = %error.message,
                "audit record quarantined: the target refused it; it is journalled for replay"
            );
            run.consecutive_quarantines += 1;
            run.status.quarantined += 1;
        }
        self.publish(run);
    }

    async fn commit<J: SinkJournal>(&self, journal: &J, run: &mut Run) -> Result<(), AdapterError> {
        let mark = watermark(run);
        if mark <= run.committed {
            return Ok(());
        }
        match journal.commit(&self.name, mark).await {
            Ok(()) => {
                run.committed = mark;
                run.status.delivered_through = mark;
                self.publish(run);
                Ok(())
            }
            Err(error) => {
                tracing::warn!(
                    class = %error.class,
                    error = %error.message,
                    delivered_through = mark,
                    "could not commit the audit sink cursor; will retry"
                );
                // Not fatal: the next step commits again. Delivered records may be resent
                // after a crash before that, which is allowed (same EventUid).
                Ok(())
            }
        }
    }

    fn publish(&self, run: &Run) {
        self.status.send_if_modified(|s| {
            if *s == run.status {
                false
            } else {
                *s = run.status.clone();
                true
            }
        });
    }
}

/// The highest sequence below which nothing is outstanding.
fn watermark(run: &Run) -> u64 {
    let outstanding = run
        .queue
        .iter()
        .map(Batch::first_seq)
        .chain(run.pending.iter().map(|p| p.batch.first_seq()))
        .min();
    match outstanding {
        Some(first) => first.saturating_sub(1).max(run.committed),
        None => run.read_through,
    }
}

fn flush(run: &mut Run, current: &mut Vec<EncodedRecord>, bytes: &mut usize, limits: BatchLimits) {
    if !current.is_empty() {
        run.queue.push_back(Batch {
            items: std::mem::take(current),
            poison: None,
        });
    }
    *bytes = limits.per_batch_overhead;
}

/// What a record that could not be encoded is quarantined as.
fn placeholder(record: &SinkRecord) -> EncodedRecord {
    EncodedRecord {
        seq: record.seq,
        event_uid: record.event_uid.clone(),
        kind: record.kind,
        bytes: bytes::Bytes::new(),
    }
}

/// Splits a refused batch (of at least two records) to isolate the bad ones: at `first_bad`
/// into before / the bad one / after, or in halves when the target did not say which.
pub(super) fn split(
    mut items: Vec<EncodedRecord>,
    first_bad: Option<usize>,
) -> Vec<Vec<EncodedRecord>> {
    match first_bad {
        Some(i) if i < items.len() => {
            let after = items.split_off(i + 1);
            let bad = items.split_off(i);
            [items, bad, after]
                .into_iter()
                .filter(|p| !p.is_empty())
                .collect()
        }
        _ => {
            let half = items.len().div_ceil(2);
            let second = items.split_off(half);
            vec![items, second]
        }
    }
}
