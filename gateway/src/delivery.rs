//! The delivery pipeline: claim due exchanges from the journal, map them (SDM → NMPP → target
//! format), send them, and journal every attempt.
//!
//! One dispatcher loop per process claims work with a lease and hands each exchange to a
//! bounded set of concurrent deliveries. Each target system has its policy (`[delivery]` with
//! `[delivery.targets.<system>]` overrides): attempts, backoff, the time one attempt may take,
//! its circuit breaker and whether each case's exchanges go in order. Retryable failures are
//! rescheduled with exponential backoff and jitter (`backon` computes the delays; the journal
//! keeps the due time, so retries survive restarts); non-retryable failures, and retryable ones
//! that used up their attempts, park the exchange. A parked or slow exchange never holds up the
//! others. While a target's breaker is open its work is not claimed at all (see [`breaker`]).
//!
//! [`breaker`]: crate::breaker

use crate::{
    breaker::{Admission, BreakerSettings, Breakers, Verdict},
    config::{DeliveryConfig, TargetPolicy},
    metrics as m,
};
use adapters::{AdapterError, DeliveryContext, ErrorClass, RecordSystem};
use backon::{BackoffBuilder, ExponentialBuilder};
use replay::{
    Attempt, AttemptOutcome, ClaimRequest, Journal, Prepared, TargetKey, Transition, WorkItem,
};
use std::{collections::BTreeMap, sync::Arc, time::Duration};
use time::OffsetDateTime;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

/// A force's adapters.
pub struct ForceRuntime {
    /// The records system.
    pub records: Arc<dyn RecordSystem>,
    /// The national platform case events go to, when configured.
    pub national: Option<Arc<dyn adapters::NationalPlatform>>,
    /// The command-and-control system, when configured.
    pub command_control: Option<Arc<dyn adapters::CommandControl>>,
    /// The evidence store (DAMS) submissions' attachments go to, when configured.
    pub evidence: Option<Arc<dyn adapters::EvidenceStore>>,
    /// The force's identifier in iHub submissions (`forceIdentifier`), which routes them here.
    pub ihub_force_id: Option<u32>,
    /// The mappings this force's exchanges go through: the shared ones, or the built-in specs
    /// with the force's own specs and overrides (`forces.X.mappings`).
    pub mappings: Option<Arc<mappings::Mappings>>,
}

impl ForceRuntime {
    /// Runtime with a records system only.
    pub fn records_only(records: Arc<dyn RecordSystem>) -> Self {
        Self {
            records,
            national: None,
            command_control: None,
            evidence: None,
            ihub_force_id: None,
            mappings: None,
        }
    }
}

type ForceMap = BTreeMap<String, Arc<ForceRuntime>>;

/// The adapters of every force and the mappings they share. The set of force runtimes can be
/// swapped whole while running (configuration reload); a delivery uses the runtimes current
/// when it started.
pub struct Pipeline {
    live: std::sync::RwLock<Arc<Live>>,
    breakers: Breakers,
}

/// What a reload replaces, in one piece: the force runtimes and the mappings they share (the
/// built-in specs with the `[mappings] current` pins).
struct Live {
    forces: ForceMap,
    mappings: Arc<mappings::Mappings>,
}

impl Live {
    fn new(forces: BTreeMap<String, ForceRuntime>, mappings: Arc<mappings::Mappings>) -> Self {
        let forces = forces.into_iter().map(|(k, v)| (k, Arc::new(v))).collect();
        Self { forces, mappings }
    }
}

/// Whether an exchange kind is an NMPP domain event for the national platform (not, say, an
/// `incident.submitted` from iHub).
pub fn is_event_kind(kind: &str) -> bool {
    crate::detect::events::EVENT_TYPES.contains(&kind)
}

impl Pipeline {
    /// A pipeline over these forces.
    pub fn new(forces: BTreeMap<String, ForceRuntime>, mappings: Arc<mappings::Mappings>) -> Self {
        Self {
            live: std::sync::RwLock::new(Arc::new(Live::new(forces, mappings))),
            breakers: Breakers::default(),
        }
    }

    fn current(&self) -> Arc<Live> {
        self.live
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Replaces every force runtime and the shared mappings at once (configuration reload).
    pub fn swap(&self, forces: BTreeMap<String, ForceRuntime>, mappings: Arc<mappings::Mappings>) {
        let live = Arc::new(Live::new(forces, mappings));
        *self
            .live
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = live;
    }

    /// One force's runtime.
    pub fn force(&self, force: &str) -> Option<Arc<ForceRuntime>> {
        self.current().forces.get(force).cloned()
    }

    /// The mappings the pipeline uses for forces without their own.
    pub fn mappings(&self) -> Arc<mappings::Mappings> {
        self.current().mappings.clone()
    }

    /// The mappings `force`'s exchanges go through: its own (`forces.X.mappings`) or the shared
    /// ones.
    pub fn mappings_of(&self, force: &str) -> Arc<mappings::Mappings> {
        let live = self.current();
        live.forces
            .get(force)
            .and_then(|rt| rt.mappings.clone())
            .unwrap_or_else(|| live.mappings.clone())
    }

    /// The circuit breaker of every target.
    pub fn breakers(&self) -> &Breakers {
        &self.breakers
    }

    /// The force that iHub's `forceIdentifier` names, as the forces are now (a force added by a
    /// configuration reload is routed at once).
    pub fn force_for_ihub_id(&self, ihub_force_id: u32) -> Option<String> {
        self.current()
            .forces
            .iter()
            .find(|(_, rt)| rt.ihub_force_id == Some(ihub_force_id))
            .map(|(key, _)| key.clone())
    }

    /// The target system name of a force's submissions.
    pub fn target_of(&self, force: &str) -> Option<&'static str> {
        self.current().forces.get(force).map(|f| f.records.name())
    }

    /// Every force and its adapters (as they are now).
    pub fn forces(&self) -> std::vec::IntoIter<(String, Arc<ForceRuntime>)> {
        self.current()
            .forces
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<Vec<_>>()
            .into_iter()
    }

    /// Maps and delivers one NMPP event to the force's national platform.
    async fn deliver_event(
        &self,
        rt: &ForceRuntime,
        item: &WorkItem,
        timeout: Duration,
    ) -> (Prepared, Result<adapters::DeliveryReceipt, AdapterError>) {
        let mut prepared = Prepared {
            canonical: Some(item.payload.clone()),
            ..Prepared::default()
        };
        let Some(national) = &rt.national else {
            let e = AdapterError::new(
                ErrorClass::Internal,
                format!("force {} has no national platform configured", item.force),
            );
            return (prepared, Err(e));
        };
        let event: serde_json::Value = match serde_json::from_slice(&item.payload) {
            Ok(v) => v,
            Err(e) => {
                let e = AdapterError::new(
                    ErrorClass::Internal,
                    format!("stored event unreadable: {e}"),
                );
                return (prepared, Err(e));
            }
        };
        let payload = match national.prepare_event_with(&event, item.mapping_version.as_deref()) {
            Ok(p) => p,
            Err(e) => return (prepared, Err(e)),
        };
        prepared.target_payload = Some(payload.body.clone().into_bytes());
        prepared.mapping_version = Some(payload.mapping.clone());
        let ctx = DeliveryContext {
            idempotency_key: item.idempotency_key.clone(),
            correlation_id: item.correlation_id.clone(),
        };
        // Abandoned on timeout: the outcome is unknown; the retry carries the same event id.
        let r = within(timeout, national.push_event(&payload, &ctx)).await;
        (prepared, r)
    }

    /// Maps and delivers one exchange, giving the target at most `timeout` to answer; returns
    /// what was prepared and the outcome.
    async fn deliver(
        &self,
        item: &WorkItem,
        timeout: Duration,
    ) -> (Prepared, Result<adapters::DeliveryReceipt, AdapterError>) {
        let mut prepared = Prepared::default();
        let Some(rt) = self.force(&item.force) else {
            let e = AdapterError::new(
                ErrorClass::Internal,
                format!("force {} is not configured on this gateway", item.force),
            );
            return (prepared, Err(e));
        };
        if is_event_kind(&item.kind) {
            return self.deliver_event(&rt, item, timeout).await;
        }
        if item.kind == crate::evidence::KIND {
            return crate::evidence::deliver(&rt, item, timeout).await;
        }
        let sdm = match mappings::Source::parse(&item.payload) {
            Ok(v) => v,
            Err(e) => {
                let e = AdapterError::new(
                    ErrorClass::Internal,
                    format!("stored payload unreadable: {e}"),
                );
                return (prepared, Err(e));
            }
        };
        let mappings = rt.mappings.clone().unwrap_or_else(|| self.mappings());
        let nmpp = match mappings.sdm_source_to_nmpp(&sdm) {
            Ok(v) => v,
            Err(e) => {
                return (
                    prepared,
                    Err(AdapterError::new(ErrorClass::Mapping, e.to_string())),
                );
            }
        };
        prepared.canonical = serde_json::to_vec(&nmpp).ok();
        // A replay may ask for another version of the target mapping; the attempt records the
        // version used (`payload.mapping`).
        let payload = match rt
            .records
            .prepare_crime_record_with(&nmpp, item.mapping_version.as_deref())
        {
            Ok(p) => p,
            Err(e) => return (prepared, Err(e)),
        };
        prepared.target_payload = Some(payload.body.clone().into_bytes());
        prepared.mapping_version = Some(payload.mapping.clone());
        let ctx = DeliveryContext {
            idempotency_key: item.idempotency_key.clone(),
            correlation_id: item.correlation_id.clone(),
        };
        // Abandoned on timeout: the outcome is unknown, so the retry carries the same key.
        let r = within(timeout, rt.records.create_crime_record(&payload, &ctx)).await;
        (prepared, r)
    }
}

/// Runs one attempt's call to a target, giving it at most `timeout`; a call that takes longer is
/// abandoned with a retryable `timeout` error (its outcome is unknown, so the retry carries the
/// same idempotency key).
pub(crate) async fn within<T>(
    timeout: Duration,
    call: impl std::future::Future<Output = Result<T, AdapterError>>,
) -> Result<T, AdapterError> {
    tokio::time::timeout(timeout, call)
        .await
        .unwrap_or_else(|_| {
            Err(AdapterError::new(
                ErrorClass::Timeout,
                format!(
                    "no answer within the attempt timeout of {} ms",
                    timeout.as_millis()
                ),
            ))
        })
}

/// Delay before attempt `next` (2 = the first retry): exponential from the initial delay, capped,
/// with optional jitter.
fn retry_delay(policy: &TargetPolicy, next: u32) -> Duration {
    let b = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(policy.initial_backoff_ms))
        .with_max_delay(Duration::from_millis(policy.max_backoff_ms))
        .with_factor(policy.backoff_factor)
        .without_max_times();
    let b = if policy.jitter { b.with_jitter() } else { b };
    b.build()
        .nth(next.saturating_sub(2) as usize)
        .unwrap_or(Duration::from_millis(policy.max_backoff_ms))
}

/// What an attempt's outcome says about its target, for the circuit breaker.
fn verdict(result: &Result<adapters::DeliveryReceipt, AdapterError>) -> Verdict {
    match result {
        Ok(_) => Verdict::Answered,
        Err(e) if e.is_retryable() => Verdict::Failed,
        // The target answered (a 4xx): the exchange's fault, and the target is up.
        Err(e) if e.status.is_some() => Verdict::Answered,
        // Never reached the target (mapping error, gateway fault).
        Err(_) => Verdict::Neutral,
    }
}

/// Claimed work waiting in the dispatcher's buffer, and when it was claimed.
struct Claimed {
    item: WorkItem,
    at: std::time::Instant,
}

/// Runs deliveries until `shutdown` is cancelled.
pub struct Dispatcher {
    journal: Arc<dyn Journal>,
    pipeline: Arc<Pipeline>,
    policy: DeliveryConfig,
    node: String,
    work_ready: Arc<Notify>,
}

impl Dispatcher {
    /// A dispatcher for this node.
    pub fn new(
        journal: Arc<dyn Journal>,
        pipeline: Arc<Pipeline>,
        policy: DeliveryConfig,
        node: String,
        work_ready: Arc<Notify>,
    ) -> Self {
        Self {
            journal,
            pipeline,
            policy,
            node,
            work_ready,
        }
    }

    fn breaker_settings(&self, target_system: &str) -> BreakerSettings {
        BreakerSettings::from(&self.policy.policy(target_system))
    }

    /// The loop: a claimer task keeps a small buffer of claimed work filled while this loop
    /// hands it out to free delivery slots.
    ///
    /// Claims are journal writes (a lease) that take a group commit to come back; claiming the
    /// next batch while the last one is being delivered keeps the slots busy instead of idle
    /// through every commit. The buffer holds at most four times `workers` exchanges, and one
    /// claim fills all the room there is: a claim waits in the journal's queue behind the batch
    /// being written (under load, hundreds of attempts, or a bulk replay step of a thousand
    /// children), so each claim must bring enough work to keep every slot busy until the next
    /// one comes back. One that waited there for a quarter of its lease (every slot busy with a
    /// slow target) is put back rather than delivered on a lease that could run out mid-attempt.
    ///
    /// A slot is the right to talk to a target: it is freed as soon as the target has answered.
    /// Journalling the attempt (one more group commit) goes on without it, so the next delivery
    /// does not wait for the previous one's fsync; the lease stays held until the attempt is
    /// recorded, so nothing else can take the exchange meanwhile.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        if self.policy.paused {
            tracing::warn!("delivery is paused by configuration: exchanges are accepted and kept");
            shutdown.cancelled().await;
            return;
        }
        // Every target shows a (closed) breaker in health and metrics from the start.
        let mut systems = Vec::new();
        for (force, rt) in self.pipeline.forces() {
            let mut targets = vec![rt.records.name()];
            if let Some(n) = &rt.national {
                targets.push(n.name());
            }
            if let Some(e) = &rt.evidence {
                targets.push(e.name());
            }
            for system in targets {
                systems.push(system);
                self.pipeline.breakers().register(
                    TargetKey::new(&force, system),
                    self.breaker_settings(system),
                );
            }
        }
        let ordered_targets = self.policy.ordered_targets(systems);
        let workers = self.policy.workers.max(1);
        let slots = Arc::new(Semaphore::new(workers));
        // Attempts started and not yet journalled (delivering, or recording their outcome):
        // bounds the journal writes queued behind a slow journal, and lets shutdown wait for
        // every one of them.
        let in_flight_max = workers * 4;
        let in_flight = Arc::new(Semaphore::new(in_flight_max));
        let (tx, mut rx) = mpsc::channel::<Claimed>(workers * 4);
        let claimer =
            tokio::spawn(
                self.clone()
                    .claim_loop(tx, workers, ordered_targets, shutdown.clone()),
            );
        let lease = Duration::from_millis(self.policy.lease_ms);
        loop {
            let running = tokio::select! {
                p = in_flight.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
                () = shutdown.cancelled() => break,
            };
            let permit = tokio::select! {
                p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
                () = shutdown.cancelled() => break,
            };
            let Claimed { item, at } = tokio::select! {
                c = rx.recv() => match c { Some(c) => c, None => break },
                () = shutdown.cancelled() => break,
            };
            if at.elapsed() >= lease / 4 {
                // Waited too long for a slot: its lease may run out mid-attempt. Due again now,
                // claimed afresh.
                self.put_back(
                    &item,
                    OffsetDateTime::now_utc(),
                    "buffered past a quarter of its lease",
                )
                .await;
                continue;
            }
            let target = TargetKey::new(&item.force, &item.target_system);
            let settings = self.breaker_settings(&item.target_system);
            let now = std::time::Instant::now();
            let admission = self
                .pipeline
                .breakers()
                .with(&target, settings, |b| b.admit(now));
            let probe = match admission {
                Admission::Go { probe } => probe,
                Admission::Wait { retry_at } => {
                    // Claimed just before the breaker refused it: put it back, charging no
                    // attempt.
                    metrics::counter!(m::DEFERRED_TOTAL, "force" => item.force.clone(),
                        "target" => item.target_system.clone())
                    .increment(1);
                    let until = OffsetDateTime::now_utc() + retry_at.saturating_duration_since(now);
                    self.put_back(&item, until, "refused by a circuit breaker")
                        .await;
                    continue;
                }
            };
            let me = self.clone();
            tokio::spawn(async move {
                me.attempt(item, probe, permit).await;
                drop(running);
            });
        }
        // Claim nothing more; put back what was claimed and not started, so it is due again at
        // once (another node, or this one restarted, delivers it without waiting for the lease).
        let _ = claimer.await;
        rx.close();
        while let Some(Claimed { item, .. }) = rx.recv().await {
            self.put_back(
                &item,
                OffsetDateTime::now_utc(),
                "claimed but not started before shutdown",
            )
            .await;
        }
        // Let running deliveries finish and journal their attempts (their leases would expire
        // anyway).
        let _ = in_flight.acquire_many(in_flight_max as u32).await;
        tracing::info!("dispatcher stopped");
    }

    /// Releases a claimed exchange not attempted now: due again at `until`, no attempt charged.
    async fn put_back(&self, item: &WorkItem, until: OffsetDateTime, why: &'static str) {
        if let Err(e) = self.journal.defer(item.id, &self.node, until).await {
            // The lease expires and it is claimed again: nothing is lost.
            metrics::counter!(m::JOURNAL_ERRORS, "op" => "defer").increment(1);
            tracing::warn!(exchange_id = %item.id, error = %e, reason = why,
                "could not put back claimed work");
        }
    }

    /// Keeps the dispatcher's buffer filled: whenever the buffer has room for at least `batch`
    /// exchanges, claims as many due exchanges as it has room for, until `shutdown`. Sleeps
    /// until new work is announced or the poll interval passes whenever a claim comes back short
    /// (nothing more is due).
    async fn claim_loop(
        self: Arc<Self>,
        tx: mpsc::Sender<Claimed>,
        batch: usize,
        ordered_targets: Vec<String>,
        shutdown: CancellationToken,
    ) {
        let lease = Duration::from_millis(self.policy.lease_ms);
        let poll = Duration::from_millis(self.policy.poll_ms);
        let mut stats_due = tokio::time::Instant::now();
        loop {
            let room = tokio::select! {
                r = tx.reserve_many(batch) => match r { Ok(r) => r, Err(_) => break },
                () = shutdown.cancelled() => break,
            };
            // And whatever else is free: one claim fills the buffer.
            let more = match tx.capacity() {
                0 => None,
                free => tx.try_reserve_many(free).ok(),
            };
            let limit = room.len() + more.as_ref().map_or(0, ExactSizeIterator::len);
            let room = room.chain(more.into_iter().flatten());
            let request = ClaimRequest {
                skip_targets: self
                    .pipeline
                    .breakers()
                    .refusing_claims(std::time::Instant::now()),
                ordered_targets: ordered_targets.clone(),
                ..ClaimRequest::new(&self.node, OffsetDateTime::now_utc(), lease, limit)
            };
            let at = std::time::Instant::now();
            let items = match self.journal.claim(request).await {
                Ok(items) => items,
                Err(e) => {
                    drop(room);
                    metrics::counter!(m::JOURNAL_ERRORS, "op" => "claim").increment(1);
                    tracing::warn!(error = %e, "could not claim work from the journal; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(poll) => {},
                        () = shutdown.cancelled() => break,
                    }
                    continue;
                }
            };
            let n = items.len();
            // `room` holds a place for each of up to `limit` items: none is ever dropped here.
            for (place, item) in room.zip(items) {
                place.send(Claimed { item, at });
            }
            if tokio::time::Instant::now() >= stats_due {
                stats_due = tokio::time::Instant::now() + Duration::from_secs(5);
                if let Ok(s) = self.journal.stats().await {
                    metrics::gauge!(m::PARKED).set(s.parked as f64);
                    metrics::gauge!(m::PENDING).set(s.pending as f64);
                }
            }
            if n < limit {
                // Nothing more is due now: sleep until new work arrives or the next poll.
                tokio::select! {
                    () = self.work_ready.notified() => {},
                    () = tokio::time::sleep(poll) => {},
                    () = shutdown.cancelled() => break,
                }
            }
        }
    }

    #[tracing::instrument(skip_all, fields(exchange_id = %item.id, force = %item.force, attempt = item.attempts + 1))]
    async fn attempt(&self, item: WorkItem, probe: bool, slot: OwnedSemaphorePermit) {
        let policy = self.policy.policy(&item.target_system);
        let started = OffsetDateTime::now_utc();
        let (prepared, result) = self
            .pipeline
            .deliver(&item, Duration::from_millis(policy.attempt_timeout_ms))
            .await;
        let finished = OffsetDateTime::now_utc();
        // The target has answered (or the attempt was abandoned): the slot is free for the next
        // delivery while this outcome is journalled.
        drop(slot);
        let key = TargetKey::new(&item.force, &item.target_system);
        let v = verdict(&result);
        self.pipeline
            .breakers()
            .with(&key, BreakerSettings::from(&policy), |b| {
                ((), b.report(v, probe, std::time::Instant::now()))
            });
        if let Ok(receipt) = &result
            && !self.follow_up(&item, receipt).await
        {
            return;
        }
        let number = item.attempts + 1;
        let target = item.target_system.clone();
        let (outcome, transition, class, detail, status) = match result {
            Ok(receipt) => (
                AttemptOutcome::Delivered,
                Transition::Delivered {
                    target_ref: receipt.target_ref,
                },
                None,
                receipt
                    .duplicate
                    .then(|| "target had already seen this idempotency key".to_owned()),
                Some(receipt.status),
            ),
            Err(e) => {
                metrics::counter!(m::ADAPTER_ERRORS, "adapter" => target.clone(), "class" => e.class.as_str())
                    .increment(1);
                let retry = e.is_retryable() && number < policy.max_attempts;
                let (outcome, transition) = if retry {
                    let mut delay = retry_delay(&policy, number + 1);
                    if let Some(asked) = e.retry_after {
                        delay = delay.max(asked.min(Duration::from_millis(policy.max_backoff_ms)));
                    }
                    (AttemptOutcome::Retry, Transition::RetryAt(finished + delay))
                } else {
                    (AttemptOutcome::Parked, Transition::Parked)
                };
                tracing::info!(class = %e.class, retry, "delivery attempt failed");
                (
                    outcome,
                    transition,
                    Some(e.class.as_str().to_owned()),
                    Some(e.message),
                    e.status,
                )
            }
        };
        metrics::counter!(m::ATTEMPTS_TOTAL, "force" => item.force.clone(), "target" => target,
            "outcome" => outcome.as_str(), "class" => class.clone().unwrap_or_default())
        .increment(1);
        if outcome != AttemptOutcome::Retry {
            let o = if outcome == AttemptOutcome::Delivered {
                "delivered"
            } else {
                "parked"
            };
            metrics::counter!(m::EXCHANGES_TOTAL, "force" => item.force.clone(), "kind" => item.kind.clone(), "outcome" => o)
                .increment(1);
        }
        let attempt = Attempt {
            number,
            started_at: started,
            finished_at: finished,
            outcome,
            error_class: class,
            detail,
            http_status: status,
            node: self.node.clone(),
        };
        if let Err(e) = self
            .journal
            .record_attempt(item.id, attempt, transition, prepared)
            .await
        {
            // The lease will expire and the exchange will be tried again with the same
            // idempotency key, so the target sees at most a duplicate it can drop.
            metrics::counter!(m::JOURNAL_ERRORS, "op" => "attempt").increment(1);
            tracing::warn!(error = %e, "could not journal a delivery attempt");
        }
    }
}

impl Dispatcher {
    /// What a delivered submission leads to before its attempt is recorded: its attachments,
    /// journalled as evidence exchanges when the force has an evidence store
    /// ([`crate::evidence`]). False when that could not be done: the attempt is then not
    /// recorded, so the lease expires and the submission is delivered again under the same
    /// idempotency key (the records system drops the duplicate).
    async fn follow_up(&self, item: &WorkItem, receipt: &adapters::DeliveryReceipt) -> bool {
        if item.kind != crate::api::incidents::KIND {
            return true;
        }
        let Some(rt) = self
            .pipeline
            .force(&item.force)
            .filter(|rt| rt.evidence.is_some())
        else {
            return true;
        };
        match crate::evidence::journal_attachments(self.journal.as_ref(), &rt, item, receipt).await
        {
            Ok(0) => true,
            Ok(_) => {
                self.work_ready.notify_one();
                true
            }
            Err(e) => {
                metrics::counter!(m::JOURNAL_ERRORS, "op" => "evidence").increment(1);
                tracing::warn!(class = %e.class, error = %e.message,
                    "could not queue a delivered submission's evidence; it will be delivered again");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_from_the_initial_delay_and_is_capped() {
        let policy = DeliveryConfig {
            initial_backoff_ms: 100,
            max_backoff_ms: 1000,
            jitter: false,
            ..DeliveryConfig::default()
        }
        .policy("athena");
        let delays: Vec<u128> = (2..8)
            .map(|n| retry_delay(&policy, n).as_millis())
            .collect();
        assert_eq!(delays, vec![100, 200, 400, 800, 1000, 1000]);
    }

    #[test]
    fn only_detected_events_go_to_the_national_platform() {
        assert!(is_event_kind("case.statusChanged"));
        assert!(is_event_kind("incident.logEntry"));
        assert!(!is_event_kind(crate::api::incidents::KIND));
        assert!(!is_event_kind("case.unknown"));
    }

    #[test]
    fn jitter_stays_within_one_extra_delay() {
        let policy = DeliveryConfig {
            initial_backoff_ms: 100,
            max_backoff_ms: 10_000,
            ..DeliveryConfig::default()
        }
        .policy("athena");
        for _ in 0..100 {
            let d = retry_delay(&policy, 3).as_millis();
            assert!((200..=400).contains(&d), "{d}");
        }
    }
}
