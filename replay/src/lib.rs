//! The durable journal: every exchange, every delivery attempt and every audit record.
//!
//! Persist first, acknowledge second, process after: the gateway calls [`Journal::accept`] and
//! answers its caller only when that returns, by which time the exchange and its audit record are
//! on disk (fsync'd) in one transaction.
//!
//! Layout:
//! - [`model`] — the records and filters;
//! - [`ClaimRequest`] — how a delivery node claims work: targets to skip (open circuit
//!   breakers) and targets that need each case in order;
//! - [`audit`] — the audit hash chain and its verifier;
//! - [`sqlite`] — the embedded backend (WAL, `synchronous=FULL`, group commit);
//! - [`postgres`] — the production backend for several nodes (deadpool-postgres, group commit
//!   per node, time-partitioned exchanges, leases with `FOR UPDATE SKIP LOCKED`);
//! - `migrations/<dialect>/NNNN_name.sql` — numbered schema migrations per backend, applied by
//!   [`open`] (and so by `nmpp-gateway migrate`).
//!
//! Backends are chosen by URL with [`open`]: `sqlite://PATH` (embedded default) or
//! `postgres://…` / `postgresql://…`.

pub mod audit;
mod canonical;
mod claim;
mod error;
pub mod ledger;
pub mod ledger_db;
pub mod model;
mod ops;
pub mod postgres;
mod sql;
pub mod sqlite;
pub mod state;

pub use claim::{ClaimRequest, TargetKey};
pub use error::JournalError;
pub use ledger_db::{
    AuditPrunePlan, AuditQuery, AuditRetentionPolicy, LedgerHead, NewCheckpoint, SinkCursor,
    SinkQuarantine, StoredCheckpoint,
};
pub use model::*;
pub use state::StateEntry;

use async_trait::async_trait;
use std::{sync::Arc, time::Duration};
use time::OffsetDateTime;
use uuid::Uuid;

/// Result alias for journal operations.
pub type Result<T, E = JournalError> = std::result::Result<T, E>;

/// What every journal backend does. One conformance suite (`tests/tests/conformance.rs`) runs
/// these against each backend.
///
/// Every write that changes an exchange appends its audit record in the same transaction; the
/// audit chain stays gap-free however many handles (or gateway processes) write at once.
#[async_trait]
pub trait Journal: Send + Sync + 'static {
    /// Stores a new exchange and its audit record in one durable transaction, unless an exchange
    /// with the same force, kind and idempotency key exists, in which case nothing new is stored
    /// (but the audit record is, with result `duplicate`). The id must be a UUID v7 (its time
    /// names the time partition); anything else is [`JournalError::Invalid`].
    async fn accept(&self, exchange: NewExchange, audit: AuditEvent) -> Result<AcceptOutcome>;

    /// Appends an audit record on its own; returns its sequence number.
    async fn audit(&self, event: AuditEvent) -> Result<u64>;

    /// Claims up to `limit` pending exchanges due at `now`, leasing them to `owner` for `lease`.
    /// An exchange leased to another owner is skipped until its lease expires (the owner died):
    /// then any owner may claim it. Same as [`Journal::claim`] with no skipped targets and no
    /// ordering.
    async fn claim_due(
        &self,
        owner: &str,
        now: OffsetDateTime,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<WorkItem>> {
        self.claim(ClaimRequest::new(owner, now, lease, limit))
            .await
    }

    /// Claims due work as [`Journal::claim_due`] does, leaving out the work of
    /// `skip_targets` and keeping each case in order at `ordered_targets` (see
    /// [`ClaimRequest`]). Oldest due first.
    async fn claim(&self, request: ClaimRequest) -> Result<Vec<WorkItem>>;

    /// Puts back an exchange `owner` claimed but will not attempt now (its target's circuit
    /// breaker refused it): due again at `until`, lease released, no attempt charged, nothing
    /// audited (its state does not change). Refused with [`JournalError::Conflict`] unless it is
    /// pending and leased to `owner`; [`JournalError::NotFound`] for an unknown id.
    async fn defer(&self, id: Uuid, owner: &str, until: OffsetDateTime) -> Result<()>;

    /// Records a delivery attempt, the state it leaves the exchange in, and any payloads prepared
    /// for it; releases the lease.
    ///
    /// Only the current lease holder may record: `attempt.node` must be the `owner` that claimed
    /// the exchange, the exchange must still be pending and leased to it, and `attempt.number`
    /// must be one more than the attempts recorded so far. Otherwise (another node took the work
    /// over after the lease expired, or an operator parked it) nothing is written and the answer
    /// is [`JournalError::Conflict`]: a stale node never overwrites a newer state.
    async fn record_attempt(
        &self,
        id: Uuid,
        attempt: Attempt,
        transition: Transition,
        prepared: Prepared,
    ) -> Result<()>;

    /// Creates a child of a parked exchange that re-executes it (same payload and idempotency
    /// key), audited; the parent stays as it was. Returns the child's id.
    async fn replay(&self, parent: Uuid, audit: AuditEvent) -> Result<Uuid> {
        self.replay_with(parent, ReplayOptions::default(), audit)
            .await
    }

    /// [`Journal::replay`] with a target override and a mapping version stored on the child.
    /// Refused with [`JournalError::Conflict`] unless the parent is parked and has no child that
    /// is pending or delivered; [`JournalError::NotFound`] for an unknown parent.
    async fn replay_with(
        &self,
        parent: Uuid,
        options: ReplayOptions,
        audit: AuditEvent,
    ) -> Result<Uuid>;

    /// Parks a pending exchange on an operator's word (audited). Refused with
    /// [`JournalError::Conflict`] while a node holds an unexpired lease on it (a delivery is in
    /// flight) or when it is not pending.
    async fn park(&self, id: Uuid, now: OffsetDateTime, audit: AuditEvent) -> Result<()>;

    /// Puts a parked exchange back to pending, due at `now` (audited). Refused with
    /// [`JournalError::Conflict`] when it is not parked or has a replay that is pending or
    /// delivered (that would deliver it twice).
    async fn unpark(&self, id: Uuid, now: OffsetDateTime, audit: AuditEvent) -> Result<()>;

    /// Everything about one exchange.
    async fn get(&self, id: Uuid) -> Result<Option<ExchangeDetail>>;

    /// One page of exchanges matching `filter`, newest first (journal time, then insertion
    /// order), after cursor `after` (the `next` of the previous page).
    async fn list(
        &self,
        filter: &ExchangeFilter,
        after: Option<i64>,
        limit: usize,
    ) -> Result<Page<ExchangeSummary>>;

    /// Exactly how many exchanges match `filter`.
    async fn count(&self, filter: &ExchangeFilter) -> Result<u64>;

    /// The original payload, canonical document and target payload of an exchange.
    async fn payloads(&self, id: Uuid) -> Result<Option<StoredPayloads>>;

    /// Audit records from `from_seq` (inclusive), at most `limit`, in sequence order.
    async fn audit_records(&self, from_seq: u64, limit: usize) -> Result<Vec<AuditRecord>>;

    /// Counts by status, force and kind, oldest pending and parked, audit records.
    async fn stats(&self) -> Result<JournalStats>;

    /// Checks the journal can be read and written.
    async fn ping(&self) -> Result<()>;

    /// Creates a bulk replay job over every exchange matching the filter journalled until now,
    /// recording the exact count (`planned`), audited. Nothing is replayed yet.
    async fn create_replay_job(&self, job: NewReplayJob, audit: AuditEvent) -> Result<ReplayJob>;

    /// One job.
    async fn replay_job(&self, id: Uuid) -> Result<Option<ReplayJob>>;

    /// The most recent jobs, newest first.
    async fn replay_jobs(&self, limit: usize) -> Result<Vec<ReplayJob>>;

    /// Continues a running job: replays the next at most `limit` parked exchanges in job order,
    /// advances its persisted cursor and counts, and writes one audit record per child (from
    /// `audit`, with the parent as object), all in one transaction. A job never creates two
    /// children for the same parent, however often it is stopped and resumed. A job with a
    /// rate (`ReplayOptions::rate_per_sec`) takes only what its pace clock, kept in the job row,
    /// allows at this moment — possibly nothing (an empty step that changes nothing) — so the
    /// rate holds however many nodes step the job. Refused with [`JournalError::Conflict`]
    /// unless the job is running.
    async fn run_replay_job(&self, id: Uuid, limit: usize, audit: AuditEvent)
    -> Result<ReplayStep>;

    /// Cancels a running job (`cancel = true`) or resumes a cancelled one, audited.
    async fn set_replay_job_cancelled(
        &self,
        id: Uuid,
        cancel: bool,
        audit: AuditEvent,
    ) -> Result<ReplayJob>;

    /// Places a legal hold, audited. Holding an exchange holds its whole family.
    async fn place_hold(
        &self,
        target: HoldTarget,
        reason: &str,
        audit: AuditEvent,
    ) -> Result<LegalHold>;

    /// Releases a hold, audited.
    async fn release_hold(&self, id: Uuid, audit: AuditEvent) -> Result<()>;

    /// Holds in force.
    async fn holds(&self) -> Result<Vec<LegalHold>>;

    /// Applies retention as of `now`: deletes payloads and whole exchanges older than each
    /// policy allows, skipping everything under a legal hold, and frees the space (drops whole
    /// time partitions on PostgreSQL; incremental vacuum on SQLite). Works in bounded
    /// transactions, each deleting and writing its audit record (policy, counts) together; the
    /// audit event given is the template (actor, role).
    async fn apply_retention(
        &self,
        policies: &[RetentionPolicy],
        now: OffsetDateTime,
        audit: AuditEvent,
    ) -> Result<RetentionReport>;

    /// One entry of durable state (see [`state`]), or `None`.
    async fn state_get(&self, scope: &str, key: &str) -> Result<Option<StateEntry>>;

    /// Every entry of `scope` whose key starts with `prefix`, in key order.
    async fn state_list(&self, scope: &str, prefix: &str) -> Result<Vec<StateEntry>>;

    /// Writes an entry if it is still where the caller saw it: `expected` `None` means "must not
    /// exist yet", `Some(v)` means "must be at version v". Answers the entry as written (its
    /// version one more). A lost race changes nothing and is [`JournalError::Conflict`].
    async fn state_put(
        &self,
        scope: &str,
        key: &str,
        expected: Option<u64>,
        value: Vec<u8>,
    ) -> Result<StateEntry>;
    // --- audit ledger (issue 5; see [`ledger_db`]) ------------------------------------------

    /// The ledger's size and Merkle frontier, consistent with the audit records `1..=size`.
    async fn ledger_head(&self) -> Result<LedgerHead>;

    /// Stores a signed checkpoint and appends the audit record announcing it
    /// ([`ledger_db::CHECKPOINT_ACTION`], from the template `audit`) in one transaction; returns
    /// that record's sequence number. Refused with [`JournalError::Invalid`] beyond the ledger or
    /// with a root that is not the ledger's at that size (checked when `size` is the current
    /// size), and with [`JournalError::Conflict`] unless `size` is larger than every stored one.
    async fn add_checkpoint(&self, checkpoint: NewCheckpoint, audit: AuditEvent) -> Result<u64>;

    /// Every stored checkpoint, smallest size first.
    async fn checkpoints(&self) -> Result<Vec<StoredCheckpoint>>;

    /// Audit records matching `query`, newest first, before sequence number `before` (the `next`
    /// of the previous page), at most `limit`.
    async fn search_audit(
        &self,
        query: &AuditQuery,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Page<AuditRecord>>;

    /// An audit sink's persisted cursor and channel; `None` before its first commit.
    async fn sink_cursor(&self, sink: &str) -> Result<Option<SinkCursor>>;

    /// Persists an audit sink's cursor (never moved backwards) and, when given, its channel.
    async fn set_sink_cursor(
        &self,
        sink: &str,
        delivered_through: u64,
        channel: Option<&str>,
    ) -> Result<()>;

    /// Durably records a record an audit sink gave up on.
    async fn quarantine_sink_record(&self, sink: &str, record: SinkQuarantine) -> Result<()>;

    /// What `sink` quarantined, in sequence order.
    async fn sink_quarantine(&self, sink: &str) -> Result<Vec<SinkQuarantine>>;

    // --- audit retention (issue 5, item 6) ---------------------------------------------------

    /// Plans audit retention as of `now`: the records from sequence `from` up to `through`
    /// (the caller passes the slowest sink's cursor, so no sink ever reads a pruned record it
    /// has not shipped) whose content `policy` lets go, at most `limit` of them; records past
    /// their period but under a legal hold are counted, not planned. Changes nothing.
    async fn audit_prune_plan(
        &self,
        policy: &AuditRetentionPolicy,
        now: OffsetDateTime,
        from: u64,
        through: u64,
        limit: usize,
    ) -> Result<AuditPrunePlan>;

    /// Removes the content of the records the deletion record at `deletion_seq` names (action
    /// [`ledger_db::RETENTION_DELETED_ACTION`], detail `ranges` and `before`), keeping their
    /// sequence number, time, event uid and hashes. Refused ([`JournalError::Conflict`]) until a
    /// signed checkpoint covers the deletion record. Records already pruned, checkpoint
    /// announcements, deletion records, records at or after `before` and records now under a
    /// legal hold are left alone. Returns how many records were pruned. On PostgreSQL this runs
    /// the `audit_prune` SECURITY DEFINER function: the gateway's role needs no UPDATE right.
    async fn prune_audit(&self, deletion_seq: u64) -> Result<u64>;
}

/// The stored payloads of one exchange.
#[derive(Debug, Clone)]
pub struct StoredPayloads {
    /// MIME type of `original`.
    pub payload_type: String,
    /// The request body as received.
    pub original: Vec<u8>,
    /// The acknowledgement given.
    pub response: Vec<u8>,
    /// NMPP document, once mapped.
    pub canonical: Option<Vec<u8>>,
    /// Target payload, once mapped.
    pub target_payload: Option<Vec<u8>>,
}

/// Options for opening a journal.
#[derive(Debug, Clone, Default)]
pub struct OpenOptions {
    /// Refuse writes beyond this many bytes of database (SQLite), answering
    /// [`JournalError::Unavailable`] instead of filling the disk.
    pub max_size_bytes: Option<u64>,
    /// Most operations committed in one transaction (group commit). `None` means the default
    /// (4096); `Some(1)` commits every operation on its own, which is only useful as a
    /// benchmark baseline.
    pub max_batch: Option<usize>,
    /// Open for the long-running server rather than for a CLI command. SQLite (single node)
    /// then clears leases left by an earlier process; PostgreSQL keeps them (other nodes may
    /// hold them) and runs partition maintenance in the background.
    pub server: bool,
}

/// Opens the journal a URL names: `sqlite://PATH` (relative or absolute path; the directory is
/// created) or `postgres://USER[:PASSWORD]@HOST[:PORT]/DB[?…]`. Applies pending migrations.
pub async fn open(url: &str, opts: OpenOptions) -> Result<Arc<dyn Journal>> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        if path.is_empty() {
            return Err(JournalError::UnsupportedUrl {
                url: url.into(),
                reason: "no file path after sqlite://".into(),
            });
        }
        let j = sqlite::SqliteJournal::open(std::path::Path::new(path), opts).await?;
        Ok(Arc::new(j))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let j = postgres::PgJournal::open(url, opts).await?;
        Ok(Arc::new(j))
    } else {
        Err(JournalError::UnsupportedUrl {
            url: redact_url(url),
            reason: "expected sqlite://PATH or postgres://…".into(),
        })
    }
}

/// Hides a password in a URL before it is shown anywhere.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.find(':') {
                Some(c) => format!("{}{}:***{}", &url[..s + 3], &creds[..c], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}
