//! The audit ledger at run time: the signing key, the checkpointer (a signed checkpoint every N
//! records or T seconds), the auditor export, and the audit sinks (one driver task per sink,
//! each with its own durable cursor in the journal).
//!
//! The journal does the hashing: every audit record's leaf hash and the Merkle frontier move in
//! the same transaction as the record (`replay::ledger_db`). This module only signs what the
//! journal's head says, and reads the ledger back out.

use crate::config::AuditConfig;
use adapters::sink::{
    AuditSinkConfig, QuarantinedRecord, SinkDriver, SinkJournal, SinkRecord, SinkState, SinkStatus,
};
use adapters::{AdapterError, ErrorClass};
use anyhow::Context;
use replay::ledger::{
    AuditEntry, BundleOptions, BundleSummary, BundleWriter, Checkpoint, ExportFilter, NoteSigner,
    Progress, RecordFormat, VerifierKey,
};
use replay::ledger_db::{CHECKPOINT_ACTION, RETENTION_DELETED_ACTION};
use replay::{AuditEvent, Journal, JournalError, NewCheckpoint, SinkQuarantine};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use time::OffsetDateTime;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Loads the ledger signing key from `cfg.key_file`, generating it (mode 0600) when the file is
/// missing and `cfg.generate_key` is set.
pub fn load_signer(cfg: &AuditConfig) -> anyhow::Result<NoteSigner> {
    let path = &cfg.key_file;
    match std::fs::read_to_string(path) {
        Ok(text) => NoteSigner::parse(text.trim())
            .map_err(|e| anyhow::anyhow!("audit.key_file {}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && cfg.generate_key => {
            let signer = NoteSigner::generate(&cfg.origin)
                .map_err(|e| anyhow::anyhow!("generating the audit ledger key: {e}"))?;
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
            }
            write_secret(path, &format!("{}\n", signer.to_skey()))?;
            tracing::info!(
                path = %path.display(),
                key = %signer.verifier(),
                "generated a new audit ledger signing key"
            );
            Ok(signer)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => anyhow::bail!(
            "audit.key_file {} does not exist (and audit.generate_key is false)",
            path.display()
        ),
        Err(e) => Err(anyhow::anyhow!("audit.key_file {}: {e}", path.display())),
    }
}

fn write_secret(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    Ok(())
}

/// The newest checkpoint this process knows of.
#[derive(Debug, Clone, Copy, Default)]
struct Newest {
    size: u64,
    audit_seq: u64,
}

/// The audit ledger's runtime: signs checkpoints, exports bundles, and reports sink status.
pub struct AuditLedger {
    journal: Arc<dyn Journal>,
    signer: NoteSigner,
    origin: String,
    previous_keys: Vec<VerifierKey>,
    every_records: u64,
    every: Duration,
    newest: Mutex<Option<Newest>>,
    sinks: Mutex<Vec<watch::Receiver<SinkStatus>>>,
    wakers: Mutex<Vec<Arc<Notify>>>,
}

impl std::fmt::Debug for AuditLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLedger")
            .field("origin", &self.origin)
            .field("key", &self.signer.verifier().to_string())
            .finish_non_exhaustive()
    }
}

/// A progress callback for [`AuditLedger::export`] (called after every record read).
pub type ProgressFn = Box<dyn FnMut(&Progress) + Send>;

/// What an export wrote.
#[derive(Debug, Clone)]
pub struct ExportOutcome {
    /// The bundle's manifest and any root mismatch found while writing.
    pub summary: BundleSummary,
}

impl AuditLedger {
    /// The ledger over `journal`, signing with `signer`.
    pub fn new(
        journal: Arc<dyn Journal>,
        signer: NoteSigner,
        cfg: &AuditConfig,
    ) -> anyhow::Result<Self> {
        let previous_keys = cfg
            .previous_keys
            .iter()
            .map(|k| VerifierKey::parse(k).map_err(|e| anyhow::anyhow!("audit.previous_keys: {e}")))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Self {
            journal,
            signer,
            origin: cfg.origin.clone(),
            previous_keys,
            every_records: cfg.checkpoint_every_records,
            every: Duration::from_millis(cfg.checkpoint_every_ms),
            newest: Mutex::new(None),
            sinks: Mutex::new(Vec::new()),
            wakers: Mutex::new(Vec::new()),
        })
    }

    /// The public key auditors verify checkpoints and bundles with.
    pub fn verifier(&self) -> VerifierKey {
        self.signer.verifier()
    }

    async fn newest(&self) -> Result<Newest, JournalError> {
        if let Some(n) = *self.newest.lock().unwrap_or_else(PoisonError::into_inner) {
            return Ok(n);
        }
        let n = self
            .journal
            .checkpoints()
            .await?
            .last()
            .map_or_else(Newest::default, |c| Newest {
                size: c.size,
                audit_seq: c.audit_seq,
            });
        *self.newest.lock().unwrap_or_else(PoisonError::into_inner) = Some(n);
        Ok(n)
    }

    /// Records not yet covered by a checkpoint, not counting the announcement of the newest one.
    async fn uncovered(&self) -> Result<(u64, replay::LedgerHead), JournalError> {
        let head = self.journal.ledger_head().await?;
        let newest = self.newest().await?;
        let mut n = head.size().saturating_sub(newest.size);
        if newest.audit_seq == newest.size + 1 && head.size() >= newest.audit_seq {
            n -= 1;
        }
        Ok((n, head))
    }

    /// Signs and stores a checkpoint of the whole ledger now, unless every record is already
    /// covered. Returns the size signed.
    pub async fn checkpoint(&self) -> Result<Option<u64>, JournalError> {
        let (uncovered, head) = self.uncovered().await?;
        if uncovered == 0 {
            return Ok(None);
        }
        let cp = Checkpoint::new(&self.origin, head.size(), head.root());
        let note = cp
            .sign(&self.signer)
            .map_err(|e| JournalError::Invalid(format!("signing a checkpoint: {e}")))?;
        let audit = system_event(CHECKPOINT_ACTION);
        match self
            .journal
            .add_checkpoint(
                NewCheckpoint {
                    size: head.size(),
                    root: head.root(),
                    note,
                },
                audit,
            )
            .await
        {
            Ok(seq) => {
                *self.newest.lock().unwrap_or_else(PoisonError::into_inner) = Some(Newest {
                    size: head.size(),
                    audit_seq: seq,
                });
                self.wake_sinks();
                tracing::debug!(size = head.size(), "signed an audit checkpoint");
                Ok(Some(head.size()))
            }
            Err(JournalError::Conflict(_)) => {
                // Another node signed one meanwhile: learn it and try again next tick.
                *self.newest.lock().unwrap_or_else(PoisonError::into_inner) = None;
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Signs a checkpoint whenever `checkpoint_every_records` records are uncovered, and at least
    /// every `checkpoint_every_ms` while any is, until `shutdown`; then signs a last one.
    pub async fn run_checkpointer(self: Arc<Self>, shutdown: CancellationToken) {
        let tick = self.every.min(Duration::from_millis(250));
        let mut last = Instant::now();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(tick) => {}
            }
            let due = match self.uncovered().await {
                Ok((0, _)) => false,
                Ok((n, _)) => n >= self.every_records || last.elapsed() >= self.every,
                Err(e) => {
                    tracing::warn!(error = %e, "audit checkpointer cannot read the ledger head");
                    false
                }
            };
            if due {
                match self.checkpoint().await {
                    Ok(_) => last = Instant::now(),
                    Err(e) => tracing::warn!(error = %e, "audit checkpoint not signed"),
                }
            }
        }
        if let Err(e) = self.checkpoint().await {
            tracing::warn!(error = %e, "final audit checkpoint not signed");
        }
    }

    /// Writes an auditor bundle of the records matching `filter` (everything when empty) into
    /// `dir` (which must not exist or be empty), first signing a checkpoint so the bundle covers
    /// the ledger up to now. `progress` is called after every record read.
    pub async fn export(
        &self,
        dir: &Path,
        format: RecordFormat,
        filter: ExportFilter,
        exported_by: &str,
        progress: Option<ProgressFn>,
    ) -> anyhow::Result<ExportOutcome> {
        self.checkpoint()
            .await
            .context("signing a checkpoint before the export")?;
        let notes: Vec<String> = self
            .journal
            .checkpoints()
            .await
            .context("reading the checkpoints")?
            .into_iter()
            .map(|c| c.note)
            .collect();
        let opts = BundleOptions {
            format,
            filter,
            exported_by: exported_by.to_owned(),
            exported_at: OffsetDateTime::now_utc(),
            previous_keys: self.previous_keys.clone(),
        };
        let mut w = BundleWriter::create(dir, opts, self.signer.clone(), &notes)?;
        if let Some(p) = progress {
            w.on_progress(p);
        }
        let n = w.tree_size();
        let mut from = 1;
        while from <= n {
            let page = self
                .journal
                .audit_records(from, 5_000)
                .await
                .context("reading audit records")?;
            let Some(last) = page.last().map(|r| r.seq) else {
                break;
            };
            for rec in page.iter().take_while(|r| r.seq <= n) {
                match &rec.pruned {
                    // Retention removed its content: the stored leaf hash is all there is.
                    Some(p) => w.push_pruned(rec.seq, stored_leaf(rec.seq, &p.leaf_hash)?)?,
                    None => w.push(&AuditEntry::from_record(rec)?)?,
                }
            }
            from = last + 1;
        }
        let summary = w.finish()?;
        if !summary.root_mismatches.is_empty() {
            anyhow::bail!(
                "the journal's records do not match its own signed checkpoints at sizes {:?}: \
                 the database was changed; the bundle in {} will not verify",
                summary.root_mismatches,
                dir.display()
            );
        }
        Ok(ExportOutcome { summary })
    }

    /// Signs checkpoints until one covers record `seq` (another node may sign meanwhile).
    async fn checkpoint_through(&self, seq: u64) -> Result<u64, JournalError> {
        for _ in 0..20 {
            let newest = self.newest().await?;
            if newest.size >= seq {
                return Ok(newest.size);
            }
            if self.checkpoint().await?.is_none() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Err(JournalError::Conflict(format!(
            "no signed checkpoint covers audit record {seq} yet"
        )))
    }

    /// Applies audit retention (see [`crate::config::AuditRetentionConfig`]) as of `now`, never
    /// past the slowest of `sinks` (their durable cursors): for each chunk of due records it
    /// appends an `audit.retention.deleted` record naming them, has a signed checkpoint cover
    /// it, and only then prunes them. `dry_run` plans and changes nothing. `template` gives
    /// the actor and role of the deletion records.
    pub async fn apply_retention(
        &self,
        policy: &replay::AuditRetentionPolicy,
        sinks: &[String],
        now: OffsetDateTime,
        dry_run: bool,
        template: &AuditEvent,
    ) -> anyhow::Result<AuditRetentionReport> {
        let head = self.journal.ledger_head().await?;
        let mut report = AuditRetentionReport {
            ledger_size: head.size(),
            through: head.size(),
            ..AuditRetentionReport::default()
        };
        for name in sinks {
            let cursor = self
                .journal
                .sink_cursor(name)
                .await?
                .map_or(0, |c| c.delivered_through);
            if cursor < report.through {
                report.through = cursor;
                report.slowest_sink = Some(SinkFloor {
                    sink: name.clone(),
                    delivered_through: cursor,
                });
            }
        }
        if policy.is_empty() {
            return Ok(report);
        }
        let mut from = 1;
        loop {
            let plan = self
                .journal
                .audit_prune_plan(policy, now, from, report.through, RETENTION_CHUNK)
                .await?;
            report.held += plan.held;
            report.before = plan.before.clone();
            if plan.count > 0 {
                report.due += plan.count;
                report.first_due.get_or_insert(plan.ranges[0].0);
                report.last_due = plan.ranges.last().map(|r| r.1);
                if !dry_run {
                    let mut ev = template.clone();
                    ev.event_uid = Uuid::now_v7();
                    ev.time = crate::app::now_millis();
                    ev.action = RETENTION_DELETED_ACTION.into();
                    ev.object_type = Some("audit".into());
                    ev.object_id = None;
                    ev.force = None;
                    ev.result = "success".into();
                    ev.detail = Some(serde_json::json!({
                        "ranges": plan.ranges,
                        "count": plan.count,
                        "before": plan.before,
                        "heldExempt": plan.held,
                        "policy": {
                            "defaultSecs": policy.default.map(|d| d.as_secs()),
                            "forces": policy.forces.iter()
                                .map(|(f, d)| (f.clone(), d.map(|d| d.as_secs())))
                                .collect::<std::collections::BTreeMap<_, _>>(),
                        },
                        "through": report.through,
                        "slowestSink": report.slowest_sink.as_ref().map(|s| s.sink.clone()),
                    }));
                    let seq = self.journal.audit(ev).await?;
                    self.checkpoint_through(seq).await?;
                    let n = self.journal.prune_audit(seq).await?;
                    report.pruned += n;
                    report.deletion_records.push(seq);
                    tracing::info!(
                        deletion_record = seq,
                        pruned = n,
                        "audit records pruned by retention"
                    );
                }
            }
            match plan.next {
                Some(last) => from = last + 1,
                None => break,
            }
        }
        if !report.deletion_records.is_empty() {
            self.wake_sinks();
        }
        Ok(report)
    }

    /// Applies audit retention every `interval_s` seconds until `shutdown` (never when it is 0
    /// or the policy keeps everything), as `system:retention`.
    pub async fn run_retention(
        self: Arc<Self>,
        cfg: crate::config::AuditRetentionConfig,
        sinks: Vec<String>,
        shutdown: CancellationToken,
    ) {
        let policy = match cfg.policy() {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "audit retention is not applied: invalid configuration");
                return;
            }
        };
        if cfg.interval_s == 0 || policy.is_empty() {
            return;
        }
        let every = Duration::from_secs(cfg.interval_s);
        let mut wait = every.min(Duration::from_secs(10));
        let mut template = system_event(RETENTION_DELETED_ACTION);
        template.actor = "system:retention".into();
        loop {
            tokio::select! {
                () = tokio::time::sleep(wait) => wait = every,
                () = shutdown.cancelled() => return,
            }
            match self
                .apply_retention(&policy, &sinks, OffsetDateTime::now_utc(), false, &template)
                .await
            {
                Ok(r) => tracing::info!(
                    pruned = r.pruned,
                    held = r.held,
                    through = r.through,
                    "audit retention applied"
                ),
                Err(e) => {
                    tracing::warn!(error = %e, "audit retention failed; trying again next interval");
                }
            }
        }
    }

    /// Current status of every audit sink.
    pub fn sink_status(&self) -> Vec<SinkStatus> {
        self.sinks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|r| r.borrow().clone())
            .collect()
    }

    /// Wakes every sink driver (new records were appended).
    pub fn wake_sinks(&self) {
        for w in self
            .wakers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            w.notify_one();
        }
    }

    /// Builds one driver per configured sink, restoring its cursor (and Splunk HEC channel,
    /// generated and stored on first start) from the journal. Run them with [`run_sinks`].
    pub async fn build_sinks(&self, configs: &[AuditSinkConfig]) -> anyhow::Result<Vec<SinkTask>> {
        let mut out = Vec::with_capacity(configs.len());
        for cfg in configs {
            let name = cfg.name().to_owned();
            let stored = self
                .journal
                .sink_cursor(&name)
                .await
                .with_context(|| format!("reading the cursor of audit sink {name}"))?;
            let cursor = stored.as_ref().map_or(0, |c| c.delivered_through);
            let mut cfg = cfg.clone();
            if let AuditSinkConfig::SplunkHec(h) = &mut cfg
                && h.indexer_acks
                && h.channel.is_none()
            {
                let channel = match stored.as_ref().and_then(|c| c.channel.clone()) {
                    Some(c) => c,
                    None => {
                        let c = adapters::splunk_hec::SplunkHecConfig::generate_channel();
                        self.journal
                            .set_sink_cursor(&name, cursor, Some(&c))
                            .await
                            .with_context(|| format!("storing the HEC channel of {name}"))?;
                        c
                    }
                };
                h.channel = Some(channel);
            }
            let sink = cfg
                .build()
                .await
                .map_err(|e| anyhow::anyhow!("audit sink {name}: {e}"))?;
            let driver = SinkDriver::new(sink, cfg.driver().clone())
                .map_err(|e| anyhow::anyhow!("audit sink {name}: {e}"))?;
            self.sinks
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(driver.status());
            self.wakers
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(driver.waker());
            out.push(SinkTask { driver, cursor });
        }
        Ok(out)
    }
}

/// Audit records one retention transaction names at most (one deletion record each).
const RETENTION_CHUNK: usize = 10_000;

fn stored_leaf(seq: u64, hex_leaf: &str) -> anyhow::Result<replay::ledger::Hash> {
    let bytes = hex::decode(hex_leaf)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok());
    bytes.with_context(|| format!("audit record {seq}: stored leaf hash is not 64 hex digits"))
}

/// The slowest audit sink: retention never prunes a record it has not shipped.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SinkFloor {
    /// The sink's name.
    pub sink: String,
    /// Its durable cursor.
    pub delivered_through: u64,
}

/// What an audit retention run did (or, in a dry run, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct AuditRetentionReport {
    /// Records in the ledger when the run began.
    pub ledger_size: u64,
    /// The last record retention could touch: the ledger size, or the slowest sink's cursor.
    pub through: u64,
    /// The sink that lowered `through`, if one did.
    pub slowest_sink: Option<SinkFloor>,
    /// The newest cutoff: nothing at or after it (RFC 3339, to the second) is pruned.
    pub before: Option<String>,
    /// Records past their period (to be pruned, or pruned).
    pub due: u64,
    /// The first and last of them.
    pub first_due: Option<u64>,
    /// See `first_due`.
    pub last_due: Option<u64>,
    /// Records past their period kept by a legal hold.
    pub held: u64,
    /// Records pruned (0 in a dry run; less than `due` if a hold was placed meanwhile).
    pub pruned: u64,
    /// Sequence numbers of the deletion records written.
    pub deletion_records: Vec<u64>,
}

/// A sink driver ready to run, with its restored cursor.
#[derive(Debug)]
pub struct SinkTask {
    driver: SinkDriver,
    cursor: u64,
}

/// Spawns one task per sink (and one that mirrors its status into metrics); they stop when
/// `shutdown` is cancelled, committing what was confirmed.
pub fn run_sinks(
    tasks: Vec<SinkTask>,
    journal: &Arc<dyn Journal>,
    shutdown: &CancellationToken,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut handles = Vec::new();
    for SinkTask { driver, cursor } in tasks {
        let name = driver.name().to_owned();
        let mut status = driver.status();
        let stop = shutdown.clone();
        handles.push(tokio::spawn(async move {
            loop {
                let s = status.borrow_and_update().clone();
                record_metrics(&s);
                tokio::select! {
                    () = stop.cancelled() => break,
                    changed = status.changed() => if changed.is_err() { break },
                }
            }
        }));
        let source = JournalSource {
            journal: journal.clone(),
        };
        let stop = shutdown.clone();
        handles.push(tokio::spawn(async move {
            match driver
                .run(source, cursor, async move { stop.cancelled().await })
                .await
            {
                Ok(through) => tracing::info!(sink = %name, through, "audit sink stopped"),
                Err(e) => tracing::error!(sink = %name, error = %e, "audit sink failed"),
            }
        }));
    }
    handles
}

fn record_metrics(s: &SinkStatus) {
    use crate::metrics as m;
    let sink = s.sink.clone();
    metrics::gauge!(m::AUDIT_SINK_DELIVERED_THROUGH, "sink" => sink.clone())
        .set(s.delivered_through as f64);
    metrics::gauge!(m::AUDIT_SINK_READ_THROUGH, "sink" => sink.clone()).set(s.read_through as f64);
    metrics::gauge!(m::AUDIT_SINK_QUARANTINED, "sink" => sink.clone()).set(s.quarantined as f64);
    metrics::gauge!(m::AUDIT_SINK_UP, "sink" => sink).set(if s.state == SinkState::Running {
        1.0
    } else {
        0.0
    });
}

/// The audit ledger as a sink's stream: records in sequence order, checkpoint announcements
/// shipped as checkpoints.
#[derive(Clone)]
pub struct JournalSource {
    journal: Arc<dyn Journal>,
}

impl JournalSource {
    /// The stream of `journal`'s ledger.
    pub fn new(journal: Arc<dyn Journal>) -> Self {
        Self { journal }
    }
}

fn journal_err(e: &JournalError) -> AdapterError {
    AdapterError::new(ErrorClass::Internal, format!("journal: {e}"))
}

/// The sink record for a stored audit record.
pub fn sink_record(rec: &replay::AuditRecord) -> Result<SinkRecord, AdapterError> {
    let bad = |e: String| AdapterError::new(ErrorClass::Mapping, e);
    let uid = rec.event.event_uid.hyphenated().to_string();
    if rec.event.action == CHECKPOINT_ACTION
        && let Some(d) = &rec.event.detail
        && let (Some(size), Some(note)) = (d["tree_size"].as_u64(), d["note"].as_str())
    {
        return Ok(SinkRecord::checkpoint(
            rec.seq,
            uid,
            rec.event.time,
            size,
            note,
        ));
    }
    if let Some(p) = &rec.pruned {
        // Only a sink added after retention ran reads this: ship what is left (a sink never
        // skips a sequence number).
        let json = serde_json::json!({
            "Seq": rec.seq,
            "LeafHash": p.leaf_hash,
            "Pruned": true,
            "PrunedBy": p.by,
            "EventUid": uid,
        })
        .to_string();
        return Ok(SinkRecord::record(rec.seq, uid, rec.event.time, json));
    }
    let entry = AuditEntry::from_record(rec).map_err(|e| bad(e.to_string()))?;
    let json = entry.canonical_json().map_err(|e| bad(e.to_string()))?;
    Ok(SinkRecord::record(rec.seq, uid, rec.event.time, json))
}

#[async_trait::async_trait]
impl SinkJournal for JournalSource {
    async fn read_after(&self, after: u64, limit: usize) -> Result<Vec<SinkRecord>, AdapterError> {
        let page = self
            .journal
            .audit_records(after + 1, limit)
            .await
            .map_err(|e| journal_err(&e))?;
        page.iter().map(sink_record).collect()
    }

    async fn commit(&self, sink: &str, delivered_through: u64) -> Result<(), AdapterError> {
        self.journal
            .set_sink_cursor(sink, delivered_through, None)
            .await
            .map_err(|e| journal_err(&e))
    }

    async fn quarantine(&self, sink: &str, record: &QuarantinedRecord) -> Result<(), AdapterError> {
        tracing::warn!(
            sink,
            seq = record.seq,
            class = %record.class,
            "audit record quarantined by its sink"
        );
        self.journal
            .quarantine_sink_record(
                sink,
                SinkQuarantine {
                    seq: record.seq,
                    event_uid: record.event_uid.clone(),
                    kind: record.kind.as_str().to_owned(),
                    class: record.class.to_string(),
                    status: record.status,
                    reason: record.reason.clone(),
                },
            )
            .await
            .map_err(|e| journal_err(&e))
    }
}

/// An audit event by the gateway itself.
pub fn system_event(action: &str) -> AuditEvent {
    AuditEvent {
        time: crate::app::now_millis(),
        actor: "system".into(),
        role: "system".into(),
        force: None,
        action: action.into(),
        object_type: None,
        object_id: None,
        result: "success".into(),
        source_ip: None,
        user_agent: None,
        correlation_id: None,
        event_uid: Uuid::now_v7(),
        detail: None,
    }
}
