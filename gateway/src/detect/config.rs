//! `[forces.X.change_detection]`: how often a force's systems are polled and how often each
//! group of case fields is refreshed (tender requirement 56).

use serde::{Deserialize, Serialize};

/// Change detection for one force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChangeDetectionConfig {
    /// Run change detection for this force. Default true (when the section is present).
    pub enabled: bool,
    /// How often the records system's change feed (or warehouse watermark) and, when configured,
    /// the command-and-control change feed are polled. Default 1000 ms.
    pub poll_ms: u64,
    /// Changes asked for per page of a feed. Default 200.
    pub page_size: usize,
    /// How long one node holds the force's detection lease before it must renew it; another
    /// node takes over when it lapses. Default 30000 ms.
    pub lease_ms: u64,
    /// On a records-system swap (`athena_dw` → `athena`), how far before the last change seen
    /// the new system is read from again. Changes seen twice emit nothing (snapshots and event
    /// ids), so a generous overlap only costs reads. Default 600000 ms (10 minutes).
    pub swap_overlap_ms: u64,
    /// Where a force with no stored position starts: `beginning` (every case the system still
    /// reports becomes `case.recorded`) or `now` (only what changes from now on). Default
    /// `beginning`.
    pub start: StartAt,
    /// Refresh frequency per field group.
    pub refresh: RefreshConfig,
}

impl Default for ChangeDetectionConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            poll_ms: 1000,
            page_size: 200,
            lease_ms: 30_000,
            swap_overlap_ms: 600_000,
            start: StartAt::Beginning,
            refresh: RefreshConfig::default(),
        }
    }
}

/// Where detection starts when nothing is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StartAt {
    /// From the oldest change the system keeps.
    Beginning,
    /// From the moment detection first runs.
    Now,
}

/// Minimum time between two comparisons of one group of a case's fields. A change seen on the
/// feed marks every group of the case as due; a group is compared (and its event emitted) once
/// its interval since the last comparison has passed. `0` means at the next poll.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RefreshConfig {
    /// `status` and `statusChangedAt` → `case.statusChanged`. Default 60000 ms (every minute).
    pub status_ms: u64,
    /// `officerInCharge` and `supervisor` → `case.allocated`, `case.oicChanged`. Default
    /// 900000 ms (every 15 minutes).
    pub officer_ms: u64,
    /// `outcome` → `case.outcomeAssigned`. Default 60000 ms.
    pub outcome_ms: u64,
}

impl Default for RefreshConfig {
    fn default() -> Self {
        Self {
            status_ms: 60_000,
            officer_ms: 900_000,
            outcome_ms: 60_000,
        }
    }
}

impl ChangeDetectionConfig {
    /// Problems a type cannot express, each naming its key under `prefix`.
    pub fn problems(&self, prefix: &str) -> Vec<String> {
        let mut p = Vec::new();
        if self.poll_ms == 0 {
            p.push(format!("{prefix}.poll_ms: must be at least 1"));
        }
        if self.page_size == 0 || self.page_size > 1000 {
            p.push(format!("{prefix}.page_size: must be 1 to 1000"));
        }
        if self.lease_ms < 2 * self.poll_ms {
            p.push(format!(
                "{prefix}.lease_ms: must be at least twice poll_ms ({}), or the lease lapses \
                 between two polls",
                2 * self.poll_ms
            ));
        }
        p
    }
}
