//! The embedded SQLite journal.
//!
//! One writer thread owns the only writing connection. Requests queue on a channel; the writer
//! takes everything queued, applies it in one transaction, commits once — one fsync with
//! `synchronous=FULL` in WAL mode — and only then answers every waiting caller. Concurrent
//! requests therefore share fsyncs (group commit) and none is answered before it is durable.
//! One failing operation does not fail its neighbours: each runs in its own savepoint, except
//! single-statement claims (which SQLite applies whole or not at all) and delivery attempts,
//! which are recorded together first and, should one fail midway, rolled back with the
//! transaction and recorded again one by one (`write::apply_batch`).
//!
//! Reads use a small pool of separate read-only connections, which WAL lets run beside the
//! writer; other processes (the CLI) can read and write the same file while the server runs.

mod ledger;
mod ops;
mod read;
mod state;
mod write;

use crate::{
    AcceptOutcome, Attempt, AuditEvent, AuditRecord, ClaimRequest, ExchangeDetail, ExchangeFilter,
    ExchangeSummary, HoldTarget, Journal, JournalError, JournalStats, LegalHold, NewReplayJob,
    OpenOptions, Page, Prepared, ReplayJob, ReplayOptions, ReplayStep, Result, RetentionPolicy,
    RetentionReport, StoredPayloads, Transition, WorkItem,
};
use async_trait::async_trait;
use rusqlite::{Connection, OpenFlags};
use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

pub(crate) use write::Op;

/// Numbered migrations, applied in order; never edit one that has shipped.
const MIGRATIONS: &[crate::sql::Migration] = &[
    (
        1,
        "init",
        include_str!("../../migrations/sqlite/0001_init.sql"),
    ),
    (
        2,
        "operations",
        include_str!("../../migrations/sqlite/0002_operations.sql"),
    ),
    (
        3,
        "delivery_ordering",
        include_str!("../../migrations/sqlite/0003_delivery_ordering.sql"),
    ),
    (
        10,
        "state",
        include_str!("../../migrations/sqlite/0010_state.sql"),
    ),
    (
        20,
        "ledger",
        include_str!("../../migrations/sqlite/0020_ledger.sql"),
    ),
    (
        24,
        "audit_retention",
        include_str!("../../migrations/sqlite/0024_audit_retention.sql"),
    ),
    (
        25,
        "shared_payloads",
        include_str!("../../migrations/sqlite/0025_shared_payloads.sql"),
    ),
    (
        30,
        "replay_pace",
        include_str!("../../migrations/sqlite/0030_replay_pace.sql"),
    ),
    (
        32,
        "status_check",
        include_str!("../../migrations/sqlite/0032_status_check.sql"),
    ),
    (
        33,
        "family_indexes",
        include_str!("../../migrations/sqlite/0033_family_indexes.sql"),
    ),
];

/// How many queued operations one transaction takes at most, by default.
const MAX_BATCH: usize = 4096;

/// The SQLite journal. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct SqliteJournal {
    tx: mpsc::Sender<Op>,
    readers: Arc<ReaderPool>,
}

#[derive(Debug)]
struct ReaderPool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl ReaderPool {
    fn with<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let conn = match self.idle.lock().map_err(|_| poisoned())?.pop() {
            Some(c) => c,
            None => open_reader(&self.path)?,
        };
        let out = f(&conn);
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < 8
        {
            idle.push(conn);
        }
        out
    }
}

fn poisoned() -> JournalError {
    JournalError::Unavailable("reader pool lock poisoned".into())
}

fn open_reader(path: &Path) -> Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(Duration::from_secs(5))?;
    Ok(conn)
}

/// How long a CLI command's handle waits for the write lock a busy server holds batch after
/// batch (SQLite's busy handler polls, so it can miss the short gaps for a while); the server's
/// own handle waits [`SERVER_BUSY_TIMEOUT`].
const CLI_BUSY_TIMEOUT: Duration = Duration::from_secs(30);
const SERVER_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

fn open_writer(path: &Path, opts: &OpenOptions) -> Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(if opts.server {
        SERVER_BUSY_TIMEOUT
    } else {
        CLI_BUSY_TIMEOUT
    })?;
    // Retention frees space with incremental vacuum, which needs auto_vacuum=INCREMENTAL: set
    // before the first table exists (a new file), or converted once by a VACUUM (a journal
    // created before migration 2), which only works before WAL mode is entered here.
    let auto_vacuum: i64 = conn.query_row("PRAGMA auto_vacuum", [], |r| r.get(0))?;
    if auto_vacuum != 2 {
        conn.execute_batch("PRAGMA auto_vacuum=INCREMENTAL")?;
        let tables: i64 = conn.query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table'",
            [],
            |r| r.get(0),
        )?;
        if tables > 0 {
            match conn.execute_batch("VACUUM") {
                Ok(()) => tracing::info!("journal converted to incremental auto-vacuum"),
                Err(e) => tracing::warn!(error = %e,
                    "could not convert the journal to incremental auto-vacuum (another process \
                     has it open?); retention will free space only after a manual VACUUM"),
            }
        }
    }
    // WAL: readers never block the writer; FULL: every commit is fsync'd before it returns.
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(JournalError::Unavailable(format!(
            "could not enable WAL (got {mode})"
        )));
    }
    conn.execute_batch("PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;")?;
    // Each operation of a group-commit batch runs in its own SAVEPOINT, whose statement
    // sub-journal SQLite otherwise writes to a temporary file on disk (created, written and
    // deleted per batch: the hot spot of a profile under load). Nothing durable lives there —
    // the WAL commit is what is fsync'd — so keep it in memory.
    conn.execute_batch("PRAGMA temp_store=MEMORY;")?;
    // A 64 MiB page cache (SQLite's default is 2 MiB): under load the writer otherwise re-reads
    // the same b-tree pages from the OS on every batch (claims and attempts walk the indexes).
    conn.execute_batch("PRAGMA cache_size=-65536;")?;
    // rusqlite keeps 16 prepared statements by default; the writer alone uses more than that in
    // a bulk replay (claims, attempts, audit appends, replay steps, savepoints), and each one
    // evicted is parsed and planned again the next time.
    conn.set_prepared_statement_cache_capacity(128);
    if let Some(max) = opts.max_size_bytes {
        let page_size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
        let pages = (max as i64 / page_size).max(1);
        conn.query_row(&format!("PRAGMA max_page_count={pages}"), [], |_| Ok(()))?;
    }
    Ok(conn)
}

/// Runs passive WAL checkpoints on a separate connection and thread; stops when dropped.
struct Checkpointer {
    stop: Arc<std::sync::atomic::AtomicBool>,
    /// Set when the WAL is over its limit: the writer then finishes the checkpoint itself
    /// between two batches, so its next transaction starts the WAL from the beginning.
    reset_wanted: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Checkpointer {
    const INTERVAL: Duration = Duration::from_millis(200);
    /// Past this WAL size the WAL is restarted. Passive checkpoints copy pages without stopping
    /// the writer, but SQLite only restarts the WAL when a write begins with every frame
    /// copied, which never happens under sustained load from another thread: the WAL would grow
    /// without bound.
    const WAL_LIMIT_BYTES: u64 = 64 * 1024 * 1024;

    fn start(path: &Path, writer: &Connection) -> Result<Self> {
        writer.query_row("PRAGMA wal_autocheckpoint=0", [], |_| Ok(()))?;
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(5))?;
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        let wal = PathBuf::from(wal);
        // After a restart the WAL file is cut back to this size.
        writer.query_row(
            &format!("PRAGMA journal_size_limit={}", Self::WAL_LIMIT_BYTES),
            [],
            |_| Ok(()),
        )?;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let reset_wanted = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let want = reset_wanted.clone();
        let thread = std::thread::Builder::new()
            .name("journal-checkpoint".into())
            .spawn(move || {
                while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                    std::thread::sleep(Self::INTERVAL);
                    if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                    {
                        tracing::warn!(error = %e, "journal checkpoint failed; will retry");
                        continue;
                    }
                    let size = std::fs::metadata(&wal).map_or(0, |m| m.len());
                    if size > Self::WAL_LIMIT_BYTES {
                        want.store(true, std::sync::atomic::Ordering::Relaxed);
                    }
                }
                // Leave a small WAL behind on a clean stop.
                let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
            })
            .map_err(|e| {
                JournalError::Unavailable(format!("cannot start checkpoint thread: {e}"))
            })?;
        Ok(Self {
            stop,
            reset_wanted,
            thread: Some(thread),
        })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn migrate(conn: &mut Connection) -> Result<()> {
    // A journal already up to date is left alone without taking the write lock, which a
    // running server holds most of the time under load (a CLI command opening the journal
    // beside it would otherwise wait for it).
    if up_to_date(conn)? {
        return Ok(());
    }
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)",
    )?;
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    for &(version, name, sql) in crate::sql::pending_migrations(MIGRATIONS, &applied(&tx)?)? {
        tx.execute_batch(sql)?;
        if sql.contains("PRAGMA writable_schema") {
            // The migration edited a stored definition (0032): move the schema cookie on, as
            // SQLite's procedure for such edits asks, so that every connection (this one
            // included) parses the schema again instead of keeping the old definition.
            let cookie: i64 = tx.query_row("PRAGMA schema_version", [], |r| r.get(0))?;
            tx.execute_batch(&format!("PRAGMA schema_version = {}", cookie + 1))?;
        }
        tx.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
            rusqlite::params![
                version,
                name,
                crate::sqlite::write::rfc3339(OffsetDateTime::now_utc())
            ],
        )?;
        tracing::info!(version, name, "applied journal migration");
    }
    tx.commit()?;
    Ok(())
}

/// Whether every migration is applied (read only).
fn up_to_date(conn: &Connection) -> Result<bool> {
    let has_table: bool = conn.query_row(
        "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'",
        [],
        |r| r.get(0),
    )?;
    if !has_table {
        return Ok(false);
    }
    Ok(crate::sql::pending_migrations(MIGRATIONS, &applied(conn)?)?.is_empty())
}

/// (version, name) of every applied migration.
fn applied(conn: &Connection) -> Result<Vec<(i64, String)>> {
    Ok(conn
        .prepare("SELECT version, name FROM schema_migrations")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?)
}

impl SqliteJournal {
    /// Opens (creating if needed) the journal file at `path`, applies migrations and starts the
    /// writer thread.
    pub async fn open(path: &Path, opts: OpenOptions) -> Result<Self> {
        let path = path.to_path_buf();
        let (tx, rx) = mpsc::channel::<Op>(65_536);
        let p = path.clone();
        let (ready_tx, ready_rx) = oneshot::channel::<Result<()>>();
        std::thread::Builder::new()
            .name("journal-writer".into())
            .spawn(move || {
                let setup = (|| -> Result<Connection> {
                    if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
                        std::fs::create_dir_all(dir).map_err(|e| {
                            JournalError::Unavailable(format!(
                                "cannot create {}: {e}",
                                dir.display()
                            ))
                        })?;
                    }
                    let mut conn = open_writer(&p, &opts)?;
                    migrate(&mut conn)?;
                    ledger::catch_up(&mut conn)?;
                    if opts.server {
                        conn.execute(
                            "UPDATE exchanges SET lease_owner = NULL, lease_until_ms = NULL
                             WHERE lease_owner IS NOT NULL",
                            [],
                        )?;
                    }
                    Ok(conn)
                })();
                match setup {
                    Ok(conn) => {
                        // The server checkpoints from its own thread, so copying the WAL back
                        // into the database never stalls the commit path.
                        let checkpointer = if opts.server {
                            match Checkpointer::start(&p, &conn) {
                                Ok(c) => Some(c),
                                Err(e) => {
                                    let _ = ready_tx.send(Err(e));
                                    return;
                                }
                            }
                        } else {
                            None
                        };
                        let _ = ready_tx.send(Ok(()));
                        let reset = checkpointer.as_ref().map(|c| c.reset_wanted.clone());
                        write::run(
                            conn,
                            rx,
                            opts.max_batch.unwrap_or(MAX_BATCH).max(1),
                            reset.as_deref(),
                        );
                        drop(checkpointer);
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
            })
            .map_err(|e| JournalError::Unavailable(format!("cannot start writer thread: {e}")))?;
        ready_rx
            .await
            .map_err(|_| JournalError::Unavailable("writer thread died during start".into()))??;
        Ok(Self {
            tx,
            readers: Arc::new(ReaderPool {
                path,
                idle: Mutex::new(Vec::new()),
            }),
        })
    }

    async fn write<T>(&self, make: impl FnOnce(oneshot::Sender<Result<T>>) -> Op) -> Result<T> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(make(reply))
            .await
            .map_err(|_| JournalError::Unavailable("journal writer stopped".into()))?;
        rx.await
            .map_err(|_| JournalError::Unavailable("journal writer stopped".into()))?
    }

    /// Runs `f` on the writer thread inside its own savepoint of the next batch.
    async fn exec<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection, &mut write::Head) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        self.write(|reply| {
            Op::Exec(Box::new(move |ready| match ready {
                Ok((c, head)) => {
                    let r = write::in_savepoint(c, head, f);
                    write::finish(reply, r)
                }
                Err(e) => {
                    let _ = reply.send(Err(e));
                    Box::new(|_| {})
                }
            }))
        })
        .await
    }

    /// Runs `f` on the writer thread alone in its own transaction, between two batches (see
    /// [`write::Solo`]): for writes of thousands of statements.
    async fn exec_solo<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection, &mut write::Head) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        self.write(|reply| {
            Op::Solo(Box::new(move |ready| match ready {
                Ok((c, head)) => {
                    let r = f(c, head);
                    (r.is_ok(), write::finish(reply, r))
                }
                Err(e) => {
                    let _ = reply.send(Err(e));
                    (false, Box::new(|_| {}))
                }
            }))
        })
        .await
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let pool = self.readers.clone();
        tokio::task::spawn_blocking(move || pool.with(f))
            .await
            .map_err(|e| JournalError::Unavailable(format!("reader task failed: {e}")))?
    }
}

#[async_trait]
impl Journal for SqliteJournal {
    async fn accept(
        &self,
        exchange: crate::NewExchange,
        audit: AuditEvent,
    ) -> Result<AcceptOutcome> {
        self.write(|reply| Op::Accept {
            exchange: Box::new(exchange),
            audit: Box::new(audit),
            reply,
        })
        .await
    }

    async fn audit(&self, event: AuditEvent) -> Result<u64> {
        self.write(|reply| Op::Audit {
            event: Box::new(event),
            reply,
        })
        .await
    }

    async fn claim(&self, request: ClaimRequest) -> Result<Vec<WorkItem>> {
        self.write(|reply| Op::Claim {
            request: Box::new(request),
            reply,
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(exchange_id = %id))]
    async fn defer(&self, id: Uuid, owner: &str, until: OffsetDateTime) -> Result<()> {
        let owner = owner.to_owned();
        self.exec(move |c, _| write::defer(c, id, &owner, until))
            .await
    }

    async fn record_attempt(
        &self,
        id: Uuid,
        attempt: Attempt,
        transition: Transition,
        prepared: Prepared,
    ) -> Result<()> {
        self.write(|reply| Op::Attempt {
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
        self.exec(move |c, h| ops::replay(c, h, parent, &options, audit, None))
            .await
    }

    #[tracing::instrument(skip_all, fields(exchange_id = %id))]
    async fn park(&self, id: Uuid, now: OffsetDateTime, audit: AuditEvent) -> Result<()> {
        self.exec(move |c, h| ops::park(c, h, id, now, audit)).await
    }

    #[tracing::instrument(skip_all, fields(exchange_id = %id))]
    async fn unpark(&self, id: Uuid, now: OffsetDateTime, audit: AuditEvent) -> Result<()> {
        self.exec(move |c, h| ops::unpark(c, h, id, now, audit))
            .await
    }

    async fn count(&self, filter: &ExchangeFilter) -> Result<u64> {
        let filter = filter.clone();
        self.read(move |c| read::count(c, &filter)).await
    }

    #[tracing::instrument(skip_all)]
    async fn create_replay_job(&self, job: NewReplayJob, audit: AuditEvent) -> Result<ReplayJob> {
        self.exec(move |c, h| ops::create_job(c, h, &job, audit))
            .await
    }

    async fn replay_job(&self, id: Uuid) -> Result<Option<ReplayJob>> {
        self.read(move |c| read::replay_job(c, id)).await
    }

    async fn replay_jobs(&self, limit: usize) -> Result<Vec<ReplayJob>> {
        self.read(move |c| read::replay_jobs(c, limit)).await
    }

    #[tracing::instrument(skip_all, fields(job = %id, limit = limit))]
    async fn run_replay_job(
        &self,
        id: Uuid,
        limit: usize,
        audit: AuditEvent,
    ) -> Result<ReplayStep> {
        self.exec_solo(move |c, h| ops::run_job(c, h, id, limit, &audit))
            .await
    }

    #[tracing::instrument(skip_all, fields(job = %id, cancel = cancel))]
    async fn set_replay_job_cancelled(
        &self,
        id: Uuid,
        cancel: bool,
        audit: AuditEvent,
    ) -> Result<ReplayJob> {
        self.exec(move |c, h| ops::set_job_cancelled(c, h, id, cancel, audit))
            .await
    }

    #[tracing::instrument(skip_all)]
    async fn place_hold(
        &self,
        target: HoldTarget,
        reason: &str,
        audit: AuditEvent,
    ) -> Result<LegalHold> {
        let reason = reason.to_owned();
        self.exec(move |c, h| ops::place_hold(c, h, &target, &reason, audit))
            .await
    }

    #[tracing::instrument(skip_all, fields(hold = %id))]
    async fn release_hold(&self, id: Uuid, audit: AuditEvent) -> Result<()> {
        self.exec(move |c, h| ops::release_hold(c, h, id, audit))
            .await
    }

    async fn holds(&self) -> Result<Vec<LegalHold>> {
        self.read(read::holds).await
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
        for policy in policies {
            let explicit = crate::ops::explicit_kinds(policies, &policy.force);
            for purge in [ops::Purge::Payloads, ops::Purge::Metadata] {
                loop {
                    let (p, e, a) = (policy.clone(), explicit.clone(), audit.clone());
                    let (n, attempts) = self
                        .exec_solo(move |c, h| ops::retention_chunk(c, h, &p, &e, purge, now, &a))
                        .await?;
                    if n > 0 {
                        report.audit_records += 1;
                    }
                    match purge {
                        ops::Purge::Payloads => report.payloads_deleted += n,
                        ops::Purge::Metadata => {
                            report.exchanges_deleted += n;
                            report.attempts_deleted += attempts;
                        }
                    }
                    if (n as usize) < crate::ops::RETENTION_CHUNK {
                        break;
                    }
                }
            }
        }
        // Give the freed pages back to the file system, a slice per batch so writes go on.
        loop {
            let freed = self.exec(|c, _| ops::incremental_vacuum(c, 2_000)).await?;
            if freed < 2_000 {
                break;
            }
        }
        tracing::info!(
            payloads = report.payloads_deleted,
            exchanges = report.exchanges_deleted,
            attempts = report.attempts_deleted,
            "retention applied"
        );
        Ok(report)
    }

    async fn get(&self, id: Uuid) -> Result<Option<ExchangeDetail>> {
        self.read(move |c| read::get(c, id)).await
    }

    async fn list(
        &self,
        filter: &ExchangeFilter,
        after: Option<i64>,
        limit: usize,
    ) -> Result<Page<ExchangeSummary>> {
        let filter = filter.clone();
        self.read(move |c| read::list(c, &filter, after, limit))
            .await
    }

    async fn payloads(&self, id: Uuid) -> Result<Option<StoredPayloads>> {
        self.read(move |c| read::payloads(c, id)).await
    }

    async fn audit_records(&self, from_seq: u64, limit: usize) -> Result<Vec<AuditRecord>> {
        self.read(move |c| read::audit_records(c, from_seq, limit))
            .await
    }

    async fn stats(&self) -> Result<JournalStats> {
        self.read(read::stats).await
    }

    async fn ping(&self) -> Result<()> {
        self.write(|reply| Op::Ping { reply }).await
    }

    async fn state_get(&self, scope: &str, key: &str) -> Result<Option<crate::StateEntry>> {
        let (scope, key) = (scope.to_owned(), key.to_owned());
        self.read(move |c| state::get(c, &scope, &key)).await
    }

    async fn state_list(&self, scope: &str, prefix: &str) -> Result<Vec<crate::StateEntry>> {
        let (scope, prefix) = (scope.to_owned(), prefix.to_owned());
        self.read(move |c| state::list(c, &scope, &prefix)).await
    }

    async fn state_put(
        &self,
        scope: &str,
        key: &str,
        expected: Option<u64>,
        value: Vec<u8>,
    ) -> Result<crate::StateEntry> {
        crate::state::check(scope, key, &value)?;
        let (scope, key) = (scope.to_owned(), key.to_owned());
        self.exec(move |c, _| state::put(c, &scope, &key, expected, value))
            .await
    }
    async fn ledger_head(&self) -> Result<crate::LedgerHead> {
        // From the writer, between batches: the frontier of exactly the committed records.
        self.exec(|_, h| {
            Ok(crate::LedgerHead {
                frontier: h.frontier.clone(),
            })
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(size = checkpoint.size))]
    async fn add_checkpoint(
        &self,
        checkpoint: crate::NewCheckpoint,
        audit: AuditEvent,
    ) -> Result<u64> {
        self.exec(move |c, h| ledger::add_checkpoint(c, h, &checkpoint, audit))
            .await
    }

    async fn checkpoints(&self) -> Result<Vec<crate::StoredCheckpoint>> {
        self.read(ledger::checkpoints).await
    }

    async fn search_audit(
        &self,
        query: &crate::AuditQuery,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Page<AuditRecord>> {
        let query = query.clone();
        self.read(move |c| ledger::search_audit(c, &query, before, limit))
            .await
    }

    async fn sink_cursor(&self, sink: &str) -> Result<Option<crate::SinkCursor>> {
        let sink = sink.to_owned();
        self.read(move |c| ledger::sink_cursor(c, &sink)).await
    }

    async fn set_sink_cursor(
        &self,
        sink: &str,
        delivered_through: u64,
        channel: Option<&str>,
    ) -> Result<()> {
        let (sink, channel) = (sink.to_owned(), channel.map(str::to_owned));
        self.exec(move |c, _| {
            ledger::set_sink_cursor(c, &sink, delivered_through, channel.as_deref())
        })
        .await
    }

    async fn quarantine_sink_record(
        &self,
        sink: &str,
        record: crate::SinkQuarantine,
    ) -> Result<()> {
        let sink = sink.to_owned();
        self.exec(move |c, _| ledger::quarantine(c, &sink, &record))
            .await
    }

    async fn sink_quarantine(&self, sink: &str) -> Result<Vec<crate::SinkQuarantine>> {
        let sink = sink.to_owned();
        self.read(move |c| ledger::quarantined(c, &sink)).await
    }

    async fn audit_prune_plan(
        &self,
        policy: &crate::AuditRetentionPolicy,
        now: OffsetDateTime,
        from: u64,
        through: u64,
        limit: usize,
    ) -> Result<crate::AuditPrunePlan> {
        let policy = policy.clone();
        self.read(move |c| ledger::prune_plan(c, &policy, now, from, through, limit))
            .await
    }

    #[tracing::instrument(skip(self))]
    async fn prune_audit(&self, deletion_seq: u64) -> Result<u64> {
        self.exec(move |c, _| ledger::prune(c, deletion_seq)).await
    }
}

#[cfg(test)]
mod tests;
