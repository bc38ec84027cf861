//! The durable journal: every exchange, every delivery attempt and every audit record.
//!
//! Persist first, acknowledge second, process after: the gateway calls [`Journal::accept`] and
//! answers its caller only when that returns, by which time the exchange and its audit record are
//! on disk (fsync'd) in one transaction.
//!
//! Layout:
//! - [`model`] — the records and filters;
//! - [`audit`] — the audit hash chain and its verifier;
//! - [`sqlite`] — the embedded backend (WAL, `synchronous=FULL`, group commit);
//! - `migrations/<dialect>/NNNN_name.sql` — numbered schema migrations per backend.
//!
//! Backends are chosen by URL with [`open`]: `sqlite://PATH` (embedded default).

pub mod audit;
mod error;
pub mod model;
pub mod sqlite;

pub use error::JournalError;
pub use model::*;

use async_trait::async_trait;
use std::{sync::Arc, time::Duration};
use time::OffsetDateTime;
use uuid::Uuid;

/// Result alias for journal operations.
pub type Result<T, E = JournalError> = std::result::Result<T, E>;

/// What every journal backend does. One conformance suite runs these against each backend.
#[async_trait]
pub trait Journal: Send + Sync + 'static {
    /// Stores a new exchange and its audit record in one durable transaction, unless an exchange
    /// with the same force, kind and idempotency key exists, in which case nothing new is stored
    /// (but the audit record is, with result `duplicate`).
    async fn accept(&self, exchange: NewExchange, audit: AuditEvent) -> Result<AcceptOutcome>;

    /// Appends an audit record on its own.
    async fn audit(&self, event: AuditEvent) -> Result<u64>;

    /// Claims up to `limit` pending exchanges due at `now`, leasing them to `owner` for `lease`.
    async fn claim_due(
        &self,
        owner: &str,
        now: OffsetDateTime,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<WorkItem>>;

    /// Records a delivery attempt, the state it leaves the exchange in, and any payloads prepared
    /// for it; releases the lease.
    async fn record_attempt(
        &self,
        id: Uuid,
        attempt: Attempt,
        transition: Transition,
        prepared: Prepared,
    ) -> Result<()>;

    /// Creates a child of a parked exchange that re-executes it (same payload and idempotency
    /// key), audited; the parent stays as it was. Returns the child's id.
    async fn replay(&self, parent: Uuid, audit: AuditEvent) -> Result<Uuid>;

    /// Everything about one exchange.
    async fn get(&self, id: Uuid) -> Result<Option<ExchangeDetail>>;

    /// One page of exchanges matching `filter`, newest first, after cursor `after`.
    async fn list(
        &self,
        filter: &ExchangeFilter,
        after: Option<i64>,
        limit: usize,
    ) -> Result<Page<ExchangeSummary>>;

    /// The original payload, canonical document and target payload of an exchange.
    async fn payloads(&self, id: Uuid) -> Result<Option<StoredPayloads>>;

    /// Audit records from `from_seq` (inclusive), at most `limit`, in sequence order.
    async fn audit_records(&self, from_seq: u64, limit: usize) -> Result<Vec<AuditRecord>>;

    /// Counts by status and of audit records.
    async fn stats(&self) -> Result<JournalStats>;

    /// Checks the journal can be read and written.
    async fn ping(&self) -> Result<()>;
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
    /// Open for the long-running server (clears leases left by an earlier process of this
    /// single-node backend) rather than for a CLI command.
    pub server: bool,
}

/// Opens the journal a URL names: `sqlite://PATH` (relative or absolute path; the directory is
/// created). Applies pending migrations.
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
        Err(JournalError::UnsupportedUrl {
            url: redact_url(url),
            reason: "the PostgreSQL backend is not in this build yet".into(),
        })
    } else {
        Err(JournalError::UnsupportedUrl {
            url: redact_url(url),
            reason: "expected sqlite://PATH".into(),
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
