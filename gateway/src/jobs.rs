//! Background work of the server besides deliveries: bulk replay jobs and retention.
//!
//! Both work *through the journal*: a replay job's cursor and counts are persisted at every
//! step, so any node can continue a job another node started (or one that was cancelled and
//! resumed), and a step never creates two children for the same parent. Retention runs in
//! bounded, audited transactions (see [`replay::Journal::apply_retention`]).

use crate::config::{ReplayConfig, RetentionConfig};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use replay::{
    AuditEvent, ExchangeFilter, ExchangeSummary, Journal, JournalError, ReplayJob, ReplayJobState,
};
use serde::Serialize;
use std::{collections::HashMap, num::NonZeroU32, sync::Arc, time::Duration};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// What a bulk replay over a filter would do, computed without changing anything.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DryRun {
    /// Exchanges journalled until now that match the filter: exactly the `planned` count a job
    /// created now would record.
    pub matching: u64,
    /// Of those, the parked ones: the job replays each of these unless it already has a replay
    /// that is pending or delivered.
    pub parked: u64,
    /// The first few matching exchanges, newest first.
    #[schema(value_type = Vec<Object>)]
    pub sample: Vec<ExchangeSummary>,
    /// The mapping version the replays would use, when the request asked for one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mapping_version: Option<String>,
    /// With a mapping version: for each exchange of the sample, the unified diff of the target
    /// payload it sent against the one that version makes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub diffs: Vec<crate::remap::MappingDiff>,
}

/// Counts and samples what a replay job over `filter` would cover.
pub async fn dry_run(
    journal: &dyn Journal,
    filter: &ExchangeFilter,
    sample: usize,
) -> Result<DryRun, JournalError> {
    let now = crate::app::now_millis();
    let mut covered = filter.clone();
    covered.to = Some(match covered.to {
        Some(t) if t < now => t,
        _ => now,
    });
    let matching = journal.count(&covered).await?;
    let parked = match covered.status {
        Some(replay::Status::Parked) => matching,
        Some(_) => 0,
        None => {
            let mut p = covered.clone();
            p.status = Some(replay::Status::Parked);
            journal.count(&p).await?
        }
    };
    let sample = journal.list(&covered, None, sample.max(1)).await?.items;
    Ok(DryRun {
        matching,
        parked,
        sample,
        mapping_version: None,
        diffs: Vec::new(),
    })
}

/// Works every running bulk replay job, a step at a time, at each job's own rate.
pub struct ReplayRunner {
    journal: Arc<dyn Journal>,
    work_ready: Arc<Notify>,
    cfg: ReplayConfig,
    node: String,
}

impl ReplayRunner {
    /// A runner for this node.
    pub fn new(
        journal: Arc<dyn Journal>,
        work_ready: Arc<Notify>,
        cfg: ReplayConfig,
        node: String,
    ) -> Self {
        Self {
            journal,
            work_ready,
            cfg,
            node,
        }
    }

    fn audit_template(&self, job: &ReplayJob) -> AuditEvent {
        AuditEvent {
            time: crate::app::now_millis(),
            actor: job.created_by.clone(),
            role: "operator".into(),
            force: None,
            action: "exchange.replay".into(),
            object_type: Some("exchange".into()),
            object_id: None,
            result: "success".into(),
            source_ip: None,
            user_agent: None,
            correlation_id: Some(job.id.to_string()),
            event_uid: Uuid::now_v7(),
            detail: Some(serde_json::json!({ "node": self.node })),
        }
    }

    /// The loop: find running jobs, give each one step in turn, repeat; sleep when there are none.
    /// A failing journal is retried after the poll interval; the loop only ends on `shutdown`.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let poll = Duration::from_millis(self.cfg.poll_ms.max(1));
        let mut limiters: HashMap<Uuid, DefaultDirectRateLimiter> = HashMap::new();
        loop {
            if shutdown.is_cancelled() {
                break;
            }
            let running: Vec<ReplayJob> = match self.journal.replay_jobs(1000).await {
                Ok(jobs) => jobs
                    .into_iter()
                    .filter(|j| j.state == ReplayJobState::Running)
                    .collect(),
                Err(e) => {
                    tracing::warn!(error = %e, "could not list replay jobs; retrying");
                    Vec::new()
                }
            };
            limiters.retain(|id, _| running.iter().any(|j| j.id == *id));
            if running.is_empty() {
                tokio::select! {
                    () = tokio::time::sleep(poll) => continue,
                    () = shutdown.cancelled() => break,
                }
            }
            for job in running {
                let batch = self.cfg.batch.max(1);
                let n = match job.options.rate_per_sec {
                    Some(rate) => {
                        let rate = rate.max(1);
                        let n = (rate as usize).min(batch);
                        let burst = NonZeroU32::new(n as u32).unwrap_or(NonZeroU32::MIN);
                        // The journal holds the job to its rate across every node (a step takes
                        // only what the job's shared pace clock allows); this limiter spaces this
                        // node's attempts so that it does not ask more often than that. A job's
                        // rate never changes, so its limiter lives as long as the job runs.
                        let lim = limiters.entry(job.id).or_insert_with(|| {
                            RateLimiter::direct(
                                Quota::per_second(NonZeroU32::new(rate).unwrap_or(NonZeroU32::MIN))
                                    .allow_burst(burst),
                            )
                        });
                        tokio::select! {
                            r = lim.until_n_ready(burst) => if r.is_err() { continue },
                            () = shutdown.cancelled() => return,
                        }
                        n
                    }
                    None => batch,
                };
                let audit = self.audit_template(&job);
                match self.journal.run_replay_job(job.id, n, audit).await {
                    Ok(step) => {
                        if !step.children.is_empty() {
                            self.work_ready.notify_one();
                            metrics::counter!(crate::metrics::REPLAYED_TOTAL)
                                .increment(step.children.len() as u64);
                        }
                        if step.job.state == ReplayJobState::Completed {
                            tracing::info!(job = %job.id, replayed = step.job.replayed,
                                skipped = step.job.skipped, "replay job completed");
                        }
                    }
                    // Cancelled or completed since it was listed (by an operator or another node).
                    Err(JournalError::Conflict(_)) => {}
                    Err(e) => {
                        tracing::warn!(job = %job.id, error = %e, "replay job step failed; retrying");
                        tokio::select! {
                            () = tokio::time::sleep(poll) => {},
                            () = shutdown.cancelled() => return,
                        }
                    }
                }
            }
        }
    }
}

/// The system audit template for retention runs.
pub fn retention_audit(actor: &str, role: &str) -> AuditEvent {
    AuditEvent {
        time: crate::app::now_millis(),
        actor: actor.into(),
        role: role.into(),
        force: None,
        action: "retention.apply".into(),
        object_type: Some("exchange".into()),
        object_id: None,
        result: "success".into(),
        source_ip: None,
        user_agent: None,
        correlation_id: None,
        event_uid: Uuid::now_v7(),
        detail: None,
    }
}

/// Applies the configured retention every `interval_s` seconds (never when it is 0 or no force
/// has a policy).
pub async fn retention_loop(
    journal: Arc<dyn Journal>,
    cfg: RetentionConfig,
    shutdown: CancellationToken,
) {
    let policies = match cfg.policies() {
        Ok(p) => p,
        Err(e) => {
            // validate() refuses such a configuration; this is only reached if it was skipped.
            tracing::error!(error = %e, "retention is not applied: invalid configuration");
            return;
        }
    };
    if cfg.interval_s == 0 || policies.is_empty() {
        return;
    }
    let every = Duration::from_secs(cfg.interval_s);
    // The first run comes soon after start, so a node restarted often still applies retention.
    let mut wait = every.min(Duration::from_secs(10));
    loop {
        tokio::select! {
            () = tokio::time::sleep(wait) => wait = every,
            () = shutdown.cancelled() => return,
        }
        let now = time::OffsetDateTime::now_utc();
        match journal
            .apply_retention(
                &policies,
                now,
                retention_audit("system:retention", "system"),
            )
            .await
        {
            Ok(r) => tracing::info!(
                payloads_deleted = r.payloads_deleted,
                exchanges_deleted = r.exchanges_deleted,
                partitions_dropped = r.partitions_dropped.len(),
                "retention applied"
            ),
            Err(e) => tracing::warn!(error = %e, "retention failed; trying again next interval"),
        }
    }
}

/// Runs `task` until `shutdown`, starting it again (after a second) if it panics, so one bad
/// step never stops a node's background work for good.
pub async fn supervise<F, Fut>(name: &'static str, shutdown: CancellationToken, task: F)
where
    F: Fn(CancellationToken) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    loop {
        match tokio::spawn(task(shutdown.clone())).await {
            Ok(()) => return,
            Err(e) if e.is_panic() => {
                tracing::error!(task = name, "background task panicked; restarting it");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => {},
                    () = shutdown.cancelled() => return,
                }
            }
            Err(_) => return,
        }
    }
}
