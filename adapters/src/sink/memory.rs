//! [`MemoryJournal`]: an in-memory [`SinkJournal`] for tests, benchmarks and the demo.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use tokio::sync::Notify;

use super::{QuarantinedRecord, SinkJournal, SinkRecord};
use crate::AdapterError;

/// An append-only list of records with per-sink cursors and quarantine lists, in memory.
/// Cloning gives another handle to the same journal. Not durable: for tests and benchmarks.
#[derive(Debug, Clone, Default)]
pub struct MemoryJournal {
    inner: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    records: Vec<SinkRecord>,
    cursors: HashMap<String, u64>,
    quarantined: HashMap<String, Vec<QuarantinedRecord>>,
    commits: u64,
    wakers: Vec<Arc<Notify>>,
}

impl MemoryJournal {
    /// An empty journal.
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Wakes `waker` (a [`super::SinkDriver::waker`]) on every [`Self::push`].
    pub fn attach(&self, waker: Arc<Notify>) {
        self.state().wakers.push(waker);
    }

    /// Appends `record` (its `seq` must be greater than every earlier one) and wakes the attached
    /// drivers.
    pub fn push(&self, record: SinkRecord) {
        let wakers = {
            let mut state = self.state();
            if let Some(last) = state.records.last() {
                assert!(
                    record.seq > last.seq,
                    "memory journal: seq {} after {}",
                    record.seq,
                    last.seq
                );
            }
            state.records.push(record);
            state.wakers.clone()
        };
        for waker in wakers {
            waker.notify_one();
        }
    }

    /// Every record appended so far.
    pub fn records(&self) -> Vec<SinkRecord> {
        self.state().records.clone()
    }

    /// The highest `seq` appended (0 when empty).
    pub fn last_seq(&self) -> u64 {
        self.state().records.last().map_or(0, |r| r.seq)
    }

    /// The committed cursor of `sink` (0 when never committed).
    pub fn cursor(&self, sink: &str) -> u64 {
        self.state().cursors.get(sink).copied().unwrap_or(0)
    }

    /// What `sink` quarantined, in order.
    pub fn quarantined(&self, sink: &str) -> Vec<QuarantinedRecord> {
        self.state()
            .quarantined
            .get(sink)
            .cloned()
            .unwrap_or_default()
    }

    /// How many commits were made, over all sinks.
    pub fn commits(&self) -> u64 {
        self.state().commits
    }

    /// Waits until `sink`'s cursor reaches `seq` or `timeout` passes; answers whether it did.
    pub async fn wait_for_cursor(
        &self,
        sink: &str,
        seq: u64,
        timeout: std::time::Duration,
    ) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.cursor(sink) >= seq {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
}

#[async_trait]
impl SinkJournal for MemoryJournal {
    async fn read_after(&self, after: u64, limit: usize) -> Result<Vec<SinkRecord>, AdapterError> {
        let state = self.state();
        let start = state.records.partition_point(|r| r.seq <= after);
        let end = start.saturating_add(limit).min(state.records.len());
        Ok(state.records[start..end].to_vec())
    }

    async fn commit(&self, sink: &str, delivered_through: u64) -> Result<(), AdapterError> {
        let mut state = self.state();
        state.commits += 1;
        let cursor = state.cursors.entry(sink.to_owned()).or_insert(0);
        assert!(
            delivered_through >= *cursor,
            "memory journal: cursor of {sink} moved back from {cursor} to {delivered_through}"
        );
        *cursor = delivered_through;
        Ok(())
    }

    async fn quarantine(&self, sink: &str, record: &QuarantinedRecord) -> Result<(), AdapterError> {
        self.state()
            .quarantined
            .entry(sink.to_owned())
            .or_default()
            .push(record.clone());
        Ok(())
    }
}
