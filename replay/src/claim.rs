//! What a delivery node asks the journal for when it claims work.

use std::time::Duration;
use time::OffsetDateTime;

/// One force's target system, e.g. `kent`'s `athena`. Circuit breakers work per target, so a
/// force whose Athena is down does not hold up another force's.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TargetKey {
    /// Force key.
    pub force: String,
    /// Target system name (`athena`).
    pub target_system: String,
}

impl TargetKey {
    /// The target `target_system` of `force`.
    pub fn new(force: impl Into<String>, target_system: impl Into<String>) -> Self {
        Self {
            force: force.into(),
            target_system: target_system.into(),
        }
    }
}

/// A claim of due work ([`crate::Journal::claim`]).
#[derive(Debug, Clone)]
pub struct ClaimRequest {
    /// The node claiming; the lease is held in its name.
    pub owner: String,
    /// Work due at or before this time is claimed.
    pub now: OffsetDateTime,
    /// How long the claimed exchanges are reserved for `owner`.
    pub lease: Duration,
    /// Most exchanges returned.
    pub limit: usize,
    /// Targets whose work is left alone (their circuit breaker is open): it stays pending and
    /// due, charged nothing, and is claimed once the target is no longer skipped.
    pub skip_targets: Vec<TargetKey>,
    /// Target systems that need each case's exchanges in order: at these, an exchange with a case
    /// reference is not claimed while an earlier exchange (journal insertion order) of the same
    /// force, case reference and target is pending. Parked and delivered exchanges never block.
    /// Exchanges without a case reference are not ordered.
    pub ordered_targets: Vec<String>,
}

impl ClaimRequest {
    /// A plain claim: every target, no ordering.
    pub fn new(
        owner: impl Into<String>,
        now: OffsetDateTime,
        lease: Duration,
        limit: usize,
    ) -> Self {
        Self {
            owner: owner.into(),
            now,
            lease,
            limit,
            skip_targets: Vec::new(),
            ordered_targets: Vec::new(),
        }
    }
}
