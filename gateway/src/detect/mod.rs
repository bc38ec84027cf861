//! Change detection: per force, poll the records system's change feed (Athena) or watermark
//! (the data warehouse) and, when configured, the command-and-control change feed (STORM);
//! compare what changed with what was last seen; journal an NMPP domain event for each real
//! difference as an outbound exchange, which the dispatcher then delivers to iHub.
//!
//! Layout: [`config`] — `[forces.X.change_detection]`; [`events`] — snapshots and the pure
//! comparison that yields events; this module — the polling loop, its durable state and its
//! lease.
//!
//! Durable state (journal `state`, scope `detect/<force>`): `lease` (which node polls this
//! force), `cursor/records` and `cursor/storm` (feed positions, with the time of the last change
//! seen), `case/<reference>` and `incident/<number>` (snapshots). Every write is a
//! compare-and-set, so two nodes never both advance a force. Order of work makes a crash
//! harmless: events are journalled before the snapshot and cursor move, so a change is at worst
//! looked at again — and the same change always yields the same event id, which the journal
//! keeps once.
//!
//! The swap: when the stored records cursor was made by another kind of records system (the
//! force moved from `athena_dw` to `athena`), detection asks the new system for a cursor at the
//! last change seen minus `swap_overlap_ms` and carries on; changes seen again compare equal to
//! their snapshots and emit nothing.

pub mod config;
pub mod events;

use adapters::{
    AdapterError, CommandControl, ErrorClass, RecordSystem,
    records::{ChangeCursor, ChangePage},
};
use events::{CaseContext, CaseSnapshot, Group, IncidentSnapshot};
use replay::{AcceptOutcome, AuditEvent, Direction, Journal, JournalError, NewExchange};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::{
    collections::BTreeSet,
    sync::{Arc, Mutex},
    time::Duration,
};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub use config::ChangeDetectionConfig;

/// Pages of one feed read per poll at most, so the lease is renewed in time.
const MAX_PAGES_PER_POLL: usize = 20;

/// Change detection failed for one poll (it is tried again at the next).
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    /// A force system failed.
    #[error("{0}")]
    Adapter(#[from] AdapterError),
    /// The journal failed.
    #[error("{0}")]
    Journal(#[from] JournalError),
    /// Stored state could not be read.
    #[error("stored detection state {key} is unreadable: {reason}")]
    State {
        /// Key.
        key: String,
        /// Why.
        reason: String,
    },
}

/// What one poll did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PollReport {
    /// Whether this node held the lease.
    pub leader: bool,
    /// Feed changes read.
    pub changes: usize,
    /// Events journalled (new ones; repeats the journal already held are not counted).
    pub events: usize,
    /// The records cursor was handed over from another kind of records system.
    pub handed_over: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredCursor {
    cursor: ChangeCursor,
    #[serde(default)]
    last_change_at: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Lease {
    owner: String,
    until_ms: i64,
}

/// One force's change detector.
pub struct Detector {
    force: String,
    force_id: u32,
    cfg: ChangeDetectionConfig,
    records: Arc<dyn RecordSystem>,
    storm: Option<Arc<dyn CommandControl>>,
    journal: Arc<dyn Journal>,
    work_ready: Arc<Notify>,
    node: String,
    scope: String,
    /// Cases with groups waiting for their refresh; rebuilt from the journal on taking the
    /// lease.
    pending: Mutex<Option<BTreeSet<String>>>,
}

fn now_ms() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

impl Detector {
    /// A detector for `force`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        force: &str,
        force_id: u32,
        cfg: ChangeDetectionConfig,
        records: Arc<dyn RecordSystem>,
        storm: Option<Arc<dyn CommandControl>>,
        journal: Arc<dyn Journal>,
        work_ready: Arc<Notify>,
        node: &str,
    ) -> Self {
        Self {
            force: force.to_owned(),
            force_id,
            cfg,
            records,
            storm,
            journal,
            work_ready,
            node: node.to_owned(),
            scope: format!("detect/{force}"),
            pending: Mutex::new(None),
        }
    }

    /// Polls until `shutdown` is cancelled.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let every = Duration::from_millis(self.cfg.poll_ms);
        tracing::info!(force = %self.force, records = self.records.name(), "change detection started");
        loop {
            match self.poll().await {
                Ok(r) if r.events > 0 => {
                    tracing::info!(force = %self.force, events = r.events, changes = r.changes, "changes detected");
                }
                Ok(_) => {}
                Err(e) => {
                    metrics::counter!(crate::metrics::DETECT_ERRORS, "force" => self.force.clone())
                        .increment(1);
                    tracing::warn!(force = %self.force, error = %e, "change detection poll failed; will retry");
                }
            }
            tokio::select! {
                () = tokio::time::sleep(every) => {},
                () = shutdown.cancelled() => break,
            }
        }
        self.release().await;
        tracing::info!(force = %self.force, "change detection stopped");
    }

    /// One poll: take or renew the lease, read the feeds, compare what is due, journal events.
    #[tracing::instrument(skip_all, fields(force = %self.force))]
    pub async fn poll(&self) -> Result<PollReport, DetectError> {
        let mut report = PollReport::default();
        if !self.lease().await? {
            *self.lock_pending() = None;
            return Ok(report);
        }
        report.leader = true;
        if self.lock_pending().is_none() {
            let mut set = BTreeSet::new();
            for e in self.journal.state_list(&self.scope, "case/").await? {
                let snap: CaseSnapshot = self.decode(&e.key, &e.value)?;
                if !snap.pending.is_empty() {
                    set.insert(e.key["case/".len()..].to_owned());
                }
            }
            *self.lock_pending() = Some(set);
        }
        self.records_feed(&mut report).await?;
        self.refresh_due(&mut report).await?;
        if self.storm.is_some() {
            self.storm_feed(&mut report).await?;
        }
        Ok(report)
    }

    fn lock_pending(&self) -> std::sync::MutexGuard<'_, Option<BTreeSet<String>>> {
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn decode<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
        value: &[u8],
    ) -> Result<T, DetectError> {
        serde_json::from_slice(value).map_err(|e| DetectError::State {
            key: format!("{}/{key}", self.scope),
            reason: e.to_string(),
        })
    }

    async fn get<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<(T, u64)>, DetectError> {
        match self.journal.state_get(&self.scope, key).await? {
            Some(e) => Ok(Some((self.decode(key, &e.value)?, e.version))),
            None => Ok(None),
        }
    }

    async fn put<T: Serialize>(
        &self,
        key: &str,
        version: Option<u64>,
        value: &T,
    ) -> Result<u64, DetectError> {
        let bytes = serde_json::to_vec(value).map_err(|e| DetectError::State {
            key: key.into(),
            reason: e.to_string(),
        })?;
        Ok(self
            .journal
            .state_put(&self.scope, key, version, bytes)
            .await?
            .version)
    }

    /// Takes or renews the force's lease; false when another node holds it.
    async fn lease(&self) -> Result<bool, DetectError> {
        let now = now_ms();
        let mine = Lease {
            owner: self.node.clone(),
            until_ms: now + self.cfg.lease_ms as i64,
        };
        let current: Option<(Lease, u64)> = self.get("lease").await?;
        let expected = match current {
            None => None,
            Some((l, v)) if l.owner == self.node || l.until_ms < now => Some(v),
            Some(_) => return Ok(false),
        };
        match self.put("lease", expected, &mine).await {
            Ok(_) => Ok(true),
            Err(DetectError::Journal(JournalError::Conflict(_))) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Gives the lease up on a clean stop, so another node (or the detector that replaces this
    /// one on a reload) takes over at once.
    async fn release(&self) {
        if let Ok(Some((l, v))) = self.get::<Lease>("lease").await
            && l.owner == self.node
        {
            let gone = Lease {
                owner: String::new(),
                until_ms: 0,
            };
            let _ = self.put("lease", Some(v), &gone).await;
        }
    }

    /// Where the records feed stands, handing over from another kind of system if needed.
    async fn records_cursor(
        &self,
        report: &mut PollReport,
    ) -> Result<(StoredCursor, Option<u64>), DetectError> {
        let stored: Option<(StoredCursor, u64)> = self.get("cursor/records").await?;
        let kind = self.records.name();
        match stored {
            Some((c, v)) if c.cursor.kind == kind => Ok((c, Some(v))),
            Some((c, v)) => {
                // The swap: ask the new system for every change since a little before the last
                // one the old system reported.
                let from = c
                    .last_change_at
                    .as_deref()
                    .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok())
                    .map(|t| t - Duration::from_millis(self.cfg.swap_overlap_ms));
                let cursor = match from {
                    Some(t) => self.records.cursor_at(&rfc3339(t)).await?,
                    None => self.records.cursor_at("1970-01-01T00:00:00Z").await?,
                };
                tracing::info!(force = %self.force, from = %c.cursor.kind, to = kind,
                    "records system changed: change detection handed over");
                report.handed_over = true;
                let next = StoredCursor {
                    cursor,
                    last_change_at: c.last_change_at,
                };
                let v = self.put("cursor/records", Some(v), &next).await?;
                Ok((next, Some(v)))
            }
            None => {
                let cursor = match self.cfg.start {
                    config::StartAt::Beginning => None,
                    config::StartAt::Now => Some(
                        self.records
                            .cursor_at(&rfc3339(OffsetDateTime::now_utc()))
                            .await?,
                    ),
                };
                match cursor {
                    Some(cursor) => {
                        let c = StoredCursor {
                            cursor,
                            last_change_at: None,
                        };
                        let v = self.put("cursor/records", None, &c).await?;
                        Ok((c, Some(v)))
                    }
                    None => Ok((
                        StoredCursor {
                            cursor: ChangeCursor {
                                kind: String::new(),
                                position: String::new(),
                            },
                            last_change_at: None,
                        },
                        None,
                    )),
                }
            }
        }
    }

    async fn records_feed(&self, report: &mut PollReport) -> Result<(), DetectError> {
        let (mut stored, mut version) = self.records_cursor(report).await?;
        for _ in 0..MAX_PAGES_PER_POLL {
            let cursor = (!stored.cursor.kind.is_empty()).then_some(&stored.cursor);
            let page: ChangePage = self
                .records
                .changes_since(cursor, self.cfg.page_size)
                .await?;
            report.changes += page.changes.len();
            let mut seen = BTreeSet::new();
            for change in &page.changes {
                if seen.insert(change.crime_reference.clone()) {
                    self.case_changed(&change.crime_reference, report).await?;
                }
            }
            let last = page
                .changes
                .last()
                .map(|c| c.changed_at.clone())
                .or(stored.last_change_at.clone());
            if page.next != stored.cursor || last != stored.last_change_at {
                stored = StoredCursor {
                    cursor: page.next.clone(),
                    last_change_at: last,
                };
                version = Some(self.put("cursor/records", version, &stored).await?);
            }
            if !page.more {
                break;
            }
        }
        Ok(())
    }

    fn ctx<'a>(&'a self, now: &'a str) -> CaseContext<'a> {
        CaseContext {
            force: &self.force,
            force_id: self.force_id,
            now,
        }
    }

    /// A case appeared on the feed: record it if new, else mark every group due.
    async fn case_changed(
        &self,
        reference: &str,
        report: &mut PollReport,
    ) -> Result<(), DetectError> {
        let key = format!("case/{reference}");
        match self.get::<CaseSnapshot>(&key).await? {
            None => {
                let doc = match self.records.read_case(reference).await {
                    Ok(c) => c.document,
                    Err(e) if e.class == ErrorClass::Rejected => {
                        tracing::info!(force = %self.force, "a changed case can no longer be read; skipped");
                        return Ok(());
                    }
                    Err(e) => return Err(e.into()),
                };
                let now = rfc3339(OffsetDateTime::now_utc());
                let (event, snap) = events::first_sight(&self.ctx(&now), &doc, now_ms());
                self.emit(&event, "case", reference, report).await?;
                self.put(&key, None, &snap).await?;
            }
            Some((mut snap, v)) => {
                let before = snap.pending.len();
                snap.pending.extend(Group::ALL);
                if snap.pending.len() != before {
                    self.put(&key, Some(v), &snap).await?;
                }
                if let Some(set) = self.lock_pending().as_mut() {
                    set.insert(reference.to_owned());
                }
            }
        }
        Ok(())
    }

    fn interval(&self, g: Group) -> i64 {
        let r = &self.cfg.refresh;
        (match g {
            Group::Status => r.status_ms,
            Group::Officer => r.officer_ms,
            Group::Outcome => r.outcome_ms,
        }) as i64
    }

    /// Compares every case group whose refresh interval has passed.
    async fn refresh_due(&self, report: &mut PollReport) -> Result<(), DetectError> {
        let cases: Vec<String> = self
            .lock_pending()
            .as_ref()
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        for reference in cases {
            let key = format!("case/{reference}");
            let Some((mut snap, v)) = self.get::<CaseSnapshot>(&key).await? else {
                self.forget(&reference);
                continue;
            };
            let now = now_ms();
            let due: Vec<Group> = snap
                .pending
                .iter()
                .copied()
                .filter(|g| now - snap.checked_ms.get(g).copied().unwrap_or(0) >= self.interval(*g))
                .collect();
            if due.is_empty() {
                if snap.pending.is_empty() {
                    self.forget(&reference);
                }
                continue;
            }
            let doc = match self.records.read_case(&reference).await {
                Ok(c) => c.document,
                Err(e) if e.class == ErrorClass::Rejected => {
                    snap.pending.clear();
                    self.put(&key, Some(v), &snap).await?;
                    self.forget(&reference);
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            let now_text = rfc3339(OffsetDateTime::now_utc());
            for g in due {
                if let Some(ev) = events::compare(&self.ctx(&now_text), &mut snap, g, &doc, now) {
                    self.emit(&ev, "case", &reference, report).await?;
                }
            }
            self.put(&key, Some(v), &snap).await?;
            if snap.pending.is_empty() {
                self.forget(&reference);
            }
        }
        Ok(())
    }

    fn forget(&self, reference: &str) {
        if let Some(set) = self.lock_pending().as_mut() {
            set.remove(reference);
        }
    }

    async fn storm_feed(&self, report: &mut PollReport) -> Result<(), DetectError> {
        let Some(storm) = &self.storm else {
            return Ok(());
        };
        let stored: Option<(StoredCursor, u64)> = self.get("cursor/storm").await?;
        let (mut cursor, mut version) = match stored {
            Some((c, v)) => (Some(c.cursor), Some(v)),
            None => (None, None),
        };
        for _ in 0..MAX_PAGES_PER_POLL {
            let page = storm
                .changes_since(cursor.as_ref(), self.cfg.page_size)
                .await?;
            report.changes += page.changes.len();
            let mut seen = BTreeSet::new();
            for change in &page.changes {
                if !seen.insert(change.incident_number.clone()) {
                    continue;
                }
                let number = &change.incident_number;
                let doc = match storm.read_incident(number).await {
                    Ok(d) => d,
                    Err(e) if e.class == ErrorClass::Rejected => continue,
                    Err(e) => return Err(e.into()),
                };
                let key = format!("incident/{number}");
                let (mut snap, v) = match self.get::<IncidentSnapshot>(&key).await? {
                    Some((s, v)) => (s, Some(v)),
                    None => (IncidentSnapshot::default(), None),
                };
                let now = rfc3339(OffsetDateTime::now_utc());
                let evs = events::compare_incident(&self.ctx(&now), &mut snap, &doc);
                for ev in &evs {
                    self.emit(ev, "incident", number, report).await?;
                }
                self.put(&key, v, &snap).await?;
            }
            if Some(&page.next) != cursor.as_ref() {
                let c = StoredCursor {
                    cursor: page.next.clone(),
                    last_change_at: page.changes.last().map(|c| c.changed_at.clone()),
                };
                version = Some(self.put("cursor/storm", version, &c).await?);
                cursor = Some(page.next);
            }
            if !page.more {
                break;
            }
        }
        Ok(())
    }

    /// Journals one event as an outbound exchange to iHub (once per event id).
    async fn emit(
        &self,
        event: &Value,
        object_type: &str,
        object_id: &str,
        report: &mut PollReport,
    ) -> Result<(), DetectError> {
        let event_id = event["eventId"].as_str().unwrap_or_default().to_owned();
        let kind = event["type"].as_str().unwrap_or_default().to_owned();
        let payload = serde_json::to_vec(event).map_err(|e| DetectError::State {
            key: "event".into(),
            reason: e.to_string(),
        })?;
        let source = if object_type == "incident" {
            self.storm.as_ref().map_or("storm", |s| s.name())
        } else {
            self.records.name()
        };
        let exchange = NewExchange {
            id: Uuid::now_v7(),
            force: self.force.clone(),
            kind: kind.clone(),
            direction: Direction::Outbound,
            source_system: source.into(),
            target_system: "ihub".into(),
            api_version: "ihub-case-events/v1".into(),
            model_version: "nmpp/1".into(),
            idempotency_key: event_id.clone(),
            correlation_id: event_id.clone(),
            case_ref: Some(object_id.to_owned()),
            payload_type: "application/json".into(),
            payload,
            response: Vec::new(),
        };
        let audit = AuditEvent {
            time: crate::app::now_millis(),
            actor: "change-detection".into(),
            role: "system".into(),
            force: Some(self.force.clone()),
            action: "event.detected".into(),
            object_type: Some(object_type.into()),
            object_id: Some(object_id.into()),
            result: "success".into(),
            source_ip: None,
            user_agent: None,
            correlation_id: Some(event_id.clone()),
            event_uid: Uuid::now_v7(),
            detail: Some(
                serde_json::json!({ "type": kind, "eventId": event_id, "source": source }),
            ),
        };
        if self.journal.accept(exchange, audit).await? == AcceptOutcome::Created {
            report.events += 1;
            metrics::counter!(crate::metrics::EVENTS_DETECTED, "force" => self.force.clone(), "type" => kind)
                .increment(1);
            self.work_ready.notify_one();
        }
        Ok(())
    }
}
