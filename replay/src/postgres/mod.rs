//! The PostgreSQL journal, for production and for several gateway nodes sharing one database.
//!
//! - **Writes that must be fast** (accept, audit, delivery attempts) queue on a channel; a few
//!   writer tasks per process each take everything queued and apply it in one transaction with
//!   set-based statements (`unnest` arrays), then commit once — group commit, as the SQLite
//!   writer does — and only then answer every waiting caller. `synchronous_commit` is forced on
//!   for every connection, so a commit that returned is on disk.
//! - **The audit chain** is serialised across every node by one row, `audit_head`: a transaction
//!   locks it *last* (after all its other writes), appends its records after the head, moves the
//!   head and commits. Sequence numbers are gap-free (a rolled-back transaction never moved the
//!   head) and the lock is held only for one statement and the commit; two writer tasks per
//!   process overlap one batch's work with the other's commit.
//! - **Operator writes** (replay, park, jobs, holds, retention) run in their own transaction,
//!   ending with the same chain append.
//! - **Claims** use `FOR UPDATE SKIP LOCKED` with a lease, so nodes never work the same exchange
//!   at once, and an expired lease (a node died) is claimable by any node.
//! - **Time partitions**: see `migrations/postgres/0001_init.sql` and [`partitions`].
//!
//! Connection failures surface as [`JournalError::Unavailable`] within the pool's timeouts
//! (a few seconds at most); the pool opens fresh connections once the database is back.

mod ledger;
mod ops;
pub mod partitions;
mod read;
mod state;
mod write;

use crate::{
    AcceptOutcome, Attempt, AuditEvent, AuditRecord, ClaimRequest, ExchangeDetail, ExchangeFilter,
    ExchangeSummary, HoldTarget, Journal, JournalError, JournalStats, LegalHold, NewExchange,
    NewReplayJob, OpenOptions, Page, Prepared, ReplayJob, ReplayOptions, ReplayStep, Result,
    RetentionPolicy, RetentionReport, StoredPayloads, Transition, WorkItem,
};
use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use std::{str::FromStr, sync::Arc, time::Duration};
use time::OffsetDateTime;
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio_postgres::NoTls;
use uuid::Uuid;

/// Numbered migrations, applied in order; never edit one that has shipped.
const MIGRATIONS: &[crate::sql::Migration] = &[
    (
        1,
        "init",
        include_str!("../../migrations/postgres/0001_init.sql"),
    ),
    (
        3,
        "delivery_ordering",
        include_str!("../../migrations/postgres/0003_delivery_ordering.sql"),
    ),
    (
        10,
        "state",
        include_str!("../../migrations/postgres/0010_state.sql"),
    ),
    (
        20,
        "ledger",
        include_str!("../../migrations/postgres/0020_ledger.sql"),
    ),
    (
        24,
        "audit_retention",
        include_str!("../../migrations/postgres/0024_audit_retention.sql"),
    ),
    (
        30,
        "replay_pace",
        include_str!("../../migrations/postgres/0030_replay_pace.sql"),
    ),
    (
        31,
        "audit_head_advance",
        include_str!("../../migrations/postgres/0031_audit_head_advance.sql"),
    ),
];

/// Most operations one writer transaction takes, by default.
const MAX_BATCH: usize = 2048;
/// Writer tasks per process: one commits while the next prepares its batch.
const WRITERS: usize = 2;
/// Connections in the pool.
const POOL_SIZE: usize = 16;

/// Maps a driver error to a journal error. Anything that is not a plain constraint or schema
/// problem means the journal cannot persist right now.
#[allow(clippy::needless_pass_by_value)] // used as `.map_err(pg)`
pub(crate) fn pg(e: tokio_postgres::Error) -> JournalError {
    match e.as_db_error() {
        Some(db) => {
            let code = db.code().code();
            let msg = format!("{} ({code})", db.message());
            match &code[..2] {
                "23" => JournalError::Conflict(msg),
                "42" => JournalError::Corrupt(msg),
                _ => JournalError::Unavailable(msg),
            }
        }
        None => JournalError::Unavailable(e.to_string()),
    }
}

/// Whether a failed transaction may simply be run again (deadlock, serialisation failure).
pub(crate) fn retryable(e: &tokio_postgres::Error) -> bool {
    e.as_db_error().is_some_and(|db| {
        let c = db.code().code();
        c == "40P01" || c == "40001"
    })
}

pub(crate) fn pool_err(e: deadpool_postgres::PoolError) -> JournalError {
    match e {
        deadpool_postgres::PoolError::Backend(e) => pg(e),
        other => JournalError::Unavailable(format!("no database connection: {other}")),
    }
}

/// The PostgreSQL journal. Cheap to share behind an `Arc`.
pub struct PgJournal {
    pool: Pool,
    tx: mpsc::Sender<write::WOp>,
    maintenance: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for PgJournal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgJournal").finish_non_exhaustive()
    }
}

impl Drop for PgJournal {
    fn drop(&mut self) {
        if let Some(m) = self.maintenance.take() {
            m.abort();
        }
    }
}

/// Builds a connection pool for `url` with short timeouts and durable commits.
pub(crate) fn pool(url: &str, size: usize) -> Result<Pool> {
    pool_with(url, size, "")
}

/// [`pool`] with more server settings for every connection (`-c name=value …`).
fn pool_with(url: &str, size: usize, settings: &str) -> Result<Pool> {
    let mut cfg =
        tokio_postgres::Config::from_str(url).map_err(|e| JournalError::UnsupportedUrl {
            url: crate::redact_url(url),
            reason: e.to_string(),
        })?;
    if cfg.get_connect_timeout().is_none() {
        cfg.connect_timeout(Duration::from_secs(3));
    }
    cfg.keepalives_idle(Duration::from_secs(30));
    // A commit that returned is on disk, whatever the server's default.
    let opts = format!(
        "{} -c synchronous_commit=on {settings}",
        cfg.get_options().unwrap_or_default()
    );
    cfg.options(opts.trim());
    if cfg.get_application_name().is_none() {
        cfg.application_name("nmpp-gateway");
    }
    let mgr = Manager::from_config(
        cfg,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(mgr)
        .max_size(size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(Duration::from_secs(5)))
        .create_timeout(Some(Duration::from_secs(3)))
        .recycle_timeout(Some(Duration::from_secs(3)))
        .build()
        .map_err(|e| JournalError::Unavailable(format!("cannot build the connection pool: {e}")))
}

/// The driver's client inside a pooled connection.
fn cl(o: &deadpool_postgres::Object) -> &tokio_postgres::Client {
    o
}

/// Whether the server can compress values with lz4 (PostgreSQL 14 or later, built with it).
async fn supports_lz4(c: &tokio_postgres::Client) -> Result<bool> {
    let row = c
        .query_opt(
            "SELECT 1 FROM pg_settings
             WHERE name = 'default_toast_compression' AND 'lz4' = ANY(enumvals)",
            &[],
        )
        .await
        .map_err(pg)?;
    Ok(row.is_some())
}

/// Applies pending migrations under an advisory lock, so nodes starting together take turns.
#[tracing::instrument(skip_all)]
async fn migrate(client: &mut tokio_postgres::Client) -> Result<()> {
    let tx = client.transaction().await.map_err(pg)?;
    tx.batch_execute(
        "SELECT pg_advisory_xact_lock(7283946120);
         CREATE TABLE IF NOT EXISTS schema_migrations (
             version bigint PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL)",
    )
    .await
    .map_err(pg)?;
    let applied: Vec<(i64, String)> = tx
        .query("SELECT version, name FROM schema_migrations", &[])
        .await
        .map_err(pg)?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    for &(version, name, sql) in crate::sql::pending_migrations(MIGRATIONS, &applied)? {
        tx.batch_execute(sql).await.map_err(pg)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, now())",
            &[&version, &name],
        )
        .await
        .map_err(pg)?;
        tracing::info!(version, name, "applied journal migration");
    }
    tx.commit().await.map_err(pg)?;
    Ok(())
}

impl PgJournal {
    /// Connects to `url`, applies migrations, makes sure the time partitions around now exist
    /// and starts the writer tasks (and, for a server, hourly partition maintenance).
    #[tracing::instrument(skip_all, fields(url = %crate::redact_url(url)))]
    pub async fn open(url: &str, opts: OpenOptions) -> Result<Self> {
        let pool = pool(url, POOL_SIZE)?;
        let lz4 = {
            let mut client = pool.get().await.map_err(pool_err)?;
            migrate(&mut client).await?;
            ledger::catch_up(&mut client).await?;
            partitions::ensure_around(cl(&client), OffsetDateTime::now_utc()).await?;
            supports_lz4(cl(&client)).await?
        };
        // Payloads (a few KB of JSON or XML each) are compressed by the server as they are
        // stored; lz4 does it at a fraction of the CPU of the default pglz (measured: 20,000
        // 5 KB SDM documents inserted in 1.6–1.9 s with lz4 against 4.5–4.7 s with pglz), and
        // reads decompress either transparently. Servers built without lz4 keep pglz.
        let pool = if lz4 {
            pool.close();
            pool_with(url, POOL_SIZE, "-c default_toast_compression=lz4")?
        } else {
            pool
        };
        let (tx, rx) = mpsc::channel::<write::WOp>(65_536);
        let rx = Arc::new(Mutex::new(rx));
        let max_batch = opts.max_batch.unwrap_or(MAX_BATCH).max(1);
        let chain = Arc::new(write::Chain::default());
        for _ in 0..WRITERS {
            tokio::spawn(write::run(
                pool.clone(),
                rx.clone(),
                chain.clone(),
                max_batch,
            ));
        }
        let maintenance = opts.server.then(|| {
            let pool = pool.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    match pool.get().await {
                        Ok(c) => {
                            if let Err(e) =
                                partitions::ensure_around(cl(&c), OffsetDateTime::now_utc()).await
                            {
                                tracing::warn!(error = %e, "journal partition maintenance failed");
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "journal partition maintenance: no connection");
                        }
                    }
                }
            })
        });
        Ok(Self {
            pool,
            tx,
            maintenance,
        })
    }

    /// A pooled connection.
    pub(crate) async fn client(&self) -> Result<deadpool_postgres::Object> {
        self.pool.get().await.map_err(pool_err)
    }

    /// Makes sure a partition exists for every month from `from` to `to` (inclusive), e.g.
    /// before loading historical data.
    pub async fn ensure_partitions(&self, from: OffsetDateTime, to: OffsetDateTime) -> Result<()> {
        let c = self.client().await?;
        partitions::ensure(cl(&c), from, to).await
    }

    async fn write<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T>>) -> write::WOp,
    ) -> Result<T> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(make(reply))
            .await
            .map_err(|_| JournalError::Unavailable("journal writer stopped".into()))?;
        rx.await
            .map_err(|_| JournalError::Unavailable("journal writer stopped".into()))?
    }
}

/// Runs `body` in a transaction on a pooled connection, appends the audit records it returns
/// at the head of the chain, and commits.
macro_rules! in_tx {
    ($self:ident, |$tx:ident| $body:expr) => {{
        let mut client = $self.client().await?;
        let $tx = tokio_postgres::Client::transaction(&mut client)
            .await
            .map_err(pg)?;
        let (out, events) = $body;
        write::append_audit(&$tx, &events).await?;
        $tx.commit().await.map_err(pg)?;
        Result::<_, JournalError>::Ok(out)
    }};
}

#[async_trait]
impl Journal for PgJournal {
    #[tracing::instrument(skip_all, fields(exchange_id = %exchange.id, force = %exchange.force))]
    async fn accept(&self, exchange: NewExchange, audit: AuditEvent) -> Result<AcceptOutcome> {
        self.write(|reply| write::WOp::Accept {
            exchange: Box::new(exchange),
            audit: Box::new(audit),
            reply,
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(action = %event.action))]
    async fn audit(&self, event: AuditEvent) -> Result<u64> {
        self.write(|reply| write::WOp::Audit {
            event: Box::new(event),
            reply,
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(owner = %request.owner, limit = request.limit))]
    async fn claim(&self, request: ClaimRequest) -> Result<Vec<WorkItem>> {
        let client = self.client().await?;
        write::claim(&client, &request).await
    }

    #[tracing::instrument(skip_all, fields(exchange_id = %id))]
    async fn defer(&self, id: Uuid, owner: &str, until: OffsetDateTime) -> Result<()> {
        let client = self.client().await?;
        write::defer(cl(&client), id, owner, until).await
    }

    #[tracing::instrument(skip_all, fields(exchange_id = %id, attempt = attempt.number))]
    async fn record_attempt(
        &self,
        id: Uuid,
        attempt: Attempt,
        transition: Transition,
        prepared: Prepared,
    ) -> Result<()> {
        self.write(|reply| write::WOp::Attempt {
            id,
            attempt: Box::new(attempt),
            transition,
            prepared: Box::new(prepared),
            reply,
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(exchange_id = %parent))]
    async fn replay_with(
        &self,
        parent: Uuid,
        options: ReplayOptions,
        audit: AuditEvent,
    ) -> Result<Uuid> {
        in_tx!(self, |tx| {
            let (child, ev) = ops::replay(&tx, parent, &options, audit, None).await?;
            (child, vec![ev])
        })
    }

    #[tracing::instrument(skip_all, fields(exchange_id = %id))]
    async fn park(&self, id: Uuid, now: OffsetDateTime, audit: AuditEvent) -> Result<()> {
        in_tx!(self, |tx| ((), vec![ops::park(&tx, id, now, audit).await?]))
    }

    #[tracing::instrument(skip_all, fields(exchange_id = %id))]
    async fn unpark(&self, id: Uuid, now: OffsetDateTime, audit: AuditEvent) -> Result<()> {
        in_tx!(self, |tx| (
            (),
            vec![ops::unpark(&tx, id, now, audit).await?]
        ))
    }

    #[tracing::instrument(skip_all, fields(exchange_id = %id))]
    async fn get(&self, id: Uuid) -> Result<Option<ExchangeDetail>> {
        let c = self.client().await?;
        read::get(cl(&c), id).await
    }

    #[tracing::instrument(skip_all, fields(limit = limit))]
    async fn list(
        &self,
        filter: &ExchangeFilter,
        after: Option<i64>,
        limit: usize,
    ) -> Result<Page<ExchangeSummary>> {
        let c = self.client().await?;
        read::list(cl(&c), filter, after, limit).await
    }

    #[tracing::instrument(skip_all)]
    async fn count(&self, filter: &ExchangeFilter) -> Result<u64> {
        let c = self.client().await?;
        read::count(cl(&c), filter).await
    }

    #[tracing::instrument(skip_all, fields(exchange_id = %id))]
    async fn payloads(&self, id: Uuid) -> Result<Option<StoredPayloads>> {
        let c = self.client().await?;
        read::payloads(cl(&c), id).await
    }

    #[tracing::instrument(skip_all, fields(from_seq = from_seq, limit = limit))]
    async fn audit_records(&self, from_seq: u64, limit: usize) -> Result<Vec<AuditRecord>> {
        let c = self.client().await?;
        read::audit_records(cl(&c), from_seq, limit).await
    }

    #[tracing::instrument(skip_all)]
    async fn stats(&self) -> Result<JournalStats> {
        let c = self.client().await?;
        read::stats(cl(&c)).await
    }

    async fn ping(&self) -> Result<()> {
        let c = self.client().await?;
        let standby: bool = cl(&c)
            .query_one("SELECT pg_is_in_recovery()", &[])
            .await
            .map_err(pg)?
            .get(0);
        if standby {
            return Err(JournalError::Unavailable(
                "the database is a read-only standby".into(),
            ));
        }
        Ok(())
    }

    async fn ledger_head(&self) -> Result<crate::LedgerHead> {
        let c = self.client().await?;
        ledger::head(cl(&c)).await
    }

    #[tracing::instrument(skip_all, fields(size = checkpoint.size))]
    async fn add_checkpoint(
        &self,
        checkpoint: crate::NewCheckpoint,
        audit: AuditEvent,
    ) -> Result<u64> {
        let mut c = self.client().await?;
        ledger::add_checkpoint(&mut c, &checkpoint, audit).await
    }

    async fn checkpoints(&self) -> Result<Vec<crate::StoredCheckpoint>> {
        let c = self.client().await?;
        ledger::checkpoints(cl(&c)).await
    }

    async fn search_audit(
        &self,
        query: &crate::AuditQuery,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Page<AuditRecord>> {
        let c = self.client().await?;
        ledger::search_audit(cl(&c), query, before, limit).await
    }

    async fn sink_cursor(&self, sink: &str) -> Result<Option<crate::SinkCursor>> {
        let c = self.client().await?;
        ledger::sink_cursor(cl(&c), sink).await
    }

    async fn set_sink_cursor(
        &self,
        sink: &str,
        delivered_through: u64,
        channel: Option<&str>,
    ) -> Result<()> {
        let c = self.client().await?;
        ledger::set_sink_cursor(cl(&c), sink, delivered_through, channel).await
    }

    async fn quarantine_sink_record(
        &self,
        sink: &str,
        record: crate::SinkQuarantine,
    ) -> Result<()> {
        let c = self.client().await?;
        ledger::quarantine(cl(&c), sink, &record).await
    }

    async fn sink_quarantine(&self, sink: &str) -> Result<Vec<crate::SinkQuarantine>> {
        let c = self.client().await?;
        ledger::quarantined(cl(&c), sink).await
    }

    async fn audit_prune_plan(
        &self,
        policy: &crate::AuditRetentionPolicy,
        now: OffsetDateTime,
        from: u64,
        through: u64,
        limit: usize,
    ) -> Result<crate::AuditPrunePlan> {
        let c = self.client().await?;
        ledger::prune_plan(cl(&c), policy, now, from, through, limit).await
    }

    #[tracing::instrument(skip(self))]
    async fn prune_audit(&self, deletion_seq: u64) -> Result<u64> {
        let mut c = self.client().await?;
        ledger::prune(&mut c, deletion_seq).await
    }

    #[tracing::instrument(skip_all)]
    async fn create_replay_job(&self, job: NewReplayJob, audit: AuditEvent) -> Result<ReplayJob> {
        in_tx!(self, |tx| ops::create_job(&tx, &job, audit).await?)
    }

    async fn replay_job(&self, id: Uuid) -> Result<Option<ReplayJob>> {
        let c = self.client().await?;
        read::replay_job(cl(&c), id, false).await
    }

    async fn replay_jobs(&self, limit: usize) -> Result<Vec<ReplayJob>> {
        let c = self.client().await?;
        read::replay_jobs(cl(&c), limit).await
    }

    #[tracing::instrument(skip_all, fields(job = %id, limit = limit))]
    async fn run_replay_job(
        &self,
        id: Uuid,
        limit: usize,
        audit: AuditEvent,
    ) -> Result<ReplayStep> {
        in_tx!(self, |tx| ops::run_job(&tx, id, limit, &audit).await?)
    }

    #[tracing::instrument(skip_all, fields(job = %id, cancel = cancel))]
    async fn set_replay_job_cancelled(
        &self,
        id: Uuid,
        cancel: bool,
        audit: AuditEvent,
    ) -> Result<ReplayJob> {
        in_tx!(self, |tx| ops::set_job_cancelled(&tx, id, cancel, audit)
            .await?)
    }

    #[tracing::instrument(skip_all)]
    async fn place_hold(
        &self,
        target: HoldTarget,
        reason: &str,
        audit: AuditEvent,
    ) -> Result<LegalHold> {
        in_tx!(self, |tx| ops::place_hold(&tx, &target, reason, audit)
            .await?)
    }

    #[tracing::instrument(skip_all, fields(hold = %id))]
    async fn release_hold(&self, id: Uuid, audit: AuditEvent) -> Result<()> {
        in_tx!(self, |tx| (
            (),
            vec![ops::release_hold(&tx, id, audit).await?]
        ))
    }

    async fn holds(&self) -> Result<Vec<LegalHold>> {
        let c = self.client().await?;
        read::holds(cl(&c)).await
    }

    #[tracing::instrument(skip_all, fields(policies = policies.len()))]
    async fn apply_retention(
        &self,
        policies: &[RetentionPolicy],
        now: OffsetDateTime,
        audit: AuditEvent,
    ) -> Result<RetentionReport> {
        crate::ops::check_policies(policies)?;
        let mut report = RetentionReport::default();
        {
            let c = self.client().await?;
            partitions::ensure_around(cl(&c), now).await?;
        }
        for policy in policies {
            let explicit = crate::ops::explicit_kinds(policies, &policy.force);
            loop {
                let n: u64 = in_tx!(self, |tx| {
                    let (n, ev) = ops::purge_payloads(&tx, policy, &explicit, now, &audit).await?;
                    (n, ev.into_iter().collect::<Vec<_>>())
                })?;
                if n > 0 {
                    report.audit_records += 1;
                }
                report.payloads_deleted += n;
                if (n as usize) < crate::ops::RETENTION_CHUNK {
                    break;
                }
            }
        }
        // Whole partitions first (cheap: DROP), then the rows at the edges.
        let (dropped, records): (Vec<(String, u64, u64)>, u64) = in_tx!(self, |tx| {
            ops::drop_expired_partitions(&tx, policies, now, &audit).await?
        })?;
        report.audit_records += records;
        for (name, ex, att) in dropped {
            report.partitions_dropped.push(name);
            report.exchanges_deleted += ex;
            report.attempts_deleted += att;
        }
        for policy in policies {
            let explicit = crate::ops::explicit_kinds(policies, &policy.force);
            loop {
                let (n, att): (u64, u64) = in_tx!(self, |tx| {
                    let (n, att, ev) =
                        ops::purge_metadata(&tx, policy, &explicit, now, &audit).await?;
                    ((n, att), ev.into_iter().collect::<Vec<_>>())
                })?;
                if n > 0 {
                    report.audit_records += 1;
                }
                report.exchanges_deleted += n;
                report.attempts_deleted += att;
                if (n as usize) < crate::ops::RETENTION_CHUNK {
                    break;
                }
            }
        }
        tracing::info!(
            payloads = report.payloads_deleted,
            exchanges = report.exchanges_deleted,
            attempts = report.attempts_deleted,
            partitions = report.partitions_dropped.len(),
            "retention applied"
        );
        Ok(report)
    }

    async fn state_get(&self, scope: &str, key: &str) -> Result<Option<crate::StateEntry>> {
        let c = self.client().await?;
        state::get(cl(&c), scope, key).await
    }

    async fn state_list(&self, scope: &str, prefix: &str) -> Result<Vec<crate::StateEntry>> {
        let c = self.client().await?;
        state::list(cl(&c), scope, prefix).await
    }

    async fn state_put(
        &self,
        scope: &str,
        key: &str,
        expected: Option<u64>,
        value: Vec<u8>,
    ) -> Result<crate::StateEntry> {
        crate::state::check(scope, key, &value)?;
        let c = self.client().await?;
        state::put(cl(&c), scope, key, expected, &value).await
    }
}
