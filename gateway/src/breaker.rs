//! Circuit breakers, one per target (a force's system, e.g. `kent`'s Athena).
//!
//! A small state machine, driven by the dispatcher with the time passed in (so it is tested
//! without clocks or sleeps):
//!
//! ```text
//!            N consecutive retryable failures            open_ms passed
//!   closed ─────────────────────────────────────► open ─────────────────► half-open
//!     ▲                                             ▲                        │  │
//!     │                    a probe fails (retryable)└────────────────────────┘  │
//!     └──────────────────────────────────────────────────────────────────────────┘
//!                                  a probe succeeds
//! ```
//!
//! While open, the dispatcher claims none of the target's work (it stays pending and is charged
//! no attempt); half-open, it lets at most `probes` attempts through at once and puts back any
//! other work it claimed for the target (`Journal::defer`). Only retryable failures (connection
//! refused, timeout, 5xx, throttling) count: a 4xx rejection is the exchange's fault and shows
//! the target is answering, and a mapping error never reached it.
//!
//! Each node keeps its own breakers: with several nodes each finds the outage by itself, which
//! costs at most N attempts per node.

use crate::{config::TargetPolicy, metrics as m};
use replay::TargetKey;
use std::{
    collections::BTreeMap,
    sync::{Mutex, MutexGuard},
    time::{Duration, Instant},
};

/// A breaker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Work flows.
    Closed,
    /// The target is failing: its work waits.
    Open,
    /// Trying the target again with a few probes.
    HalfOpen,
}

impl BreakerState {
    /// `closed`, `open` or `half_open`.
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }

    /// Value of the `gateway_breaker_state` gauge: 0 closed, 1 half-open, 2 open.
    pub fn gauge(self) -> f64 {
        match self {
            BreakerState::Closed => 0.0,
            BreakerState::HalfOpen => 1.0,
            BreakerState::Open => 2.0,
        }
    }
}

/// When a breaker trips and recovers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerSettings {
    /// Consecutive retryable failures that open it; 0 means never.
    pub failures: u32,
    /// How long it stays open before letting probes through.
    pub open: Duration,
    /// Probes let through at once while half-open (at least 1).
    pub probes: u32,
}

impl From<&TargetPolicy> for BreakerSettings {
    fn from(p: &TargetPolicy) -> Self {
        Self {
            failures: p.breaker_failures,
            open: Duration::from_millis(p.breaker_open_ms),
            probes: p.breaker_half_open_probes.max(1),
        }
    }
}

/// What an attempt's outcome says about the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The target answered: delivered, or rejected the exchange (a non-retryable 4xx).
    Answered,
    /// A retryable failure: refused, timed out, 5xx, throttled.
    Failed,
    /// Says nothing about the target (the exchange could not be mapped; a gateway fault).
    Neutral,
}

/// Whether an attempt may go ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Go ahead; `probe` says it is a half-open probe (report its outcome with that flag).
    Go {
        /// A half-open probe.
        probe: bool,
    },
    /// Not now: put the work back until `retry_at`.
    Wait {
        /// When to try again.
        retry_at: Instant,
    },
}

/// A change of state, for logs and the gauge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    /// State before.
    pub from: BreakerState,
    /// State after.
    pub to: BreakerState,
}

#[derive(Debug, Clone, Copy)]
enum Inner {
    Closed { consecutive: u32 },
    Open { until: Instant },
    HalfOpen { in_flight: u32 },
}

/// One target's breaker.
#[derive(Debug, Clone)]
pub struct Breaker {
    settings: BreakerSettings,
    inner: Inner,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(settings: BreakerSettings) -> Self {
        Self {
            settings,
            inner: Inner::Closed { consecutive: 0 },
        }
    }

    /// The current state.
    pub fn state(&self) -> BreakerState {
        match self.inner {
            Inner::Closed { .. } => BreakerState::Closed,
            Inner::Open { .. } => BreakerState::Open,
            Inner::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    fn set(&mut self, inner: Inner) -> Option<Change> {
        let from = self.state();
        self.inner = inner;
        let to = self.state();
        (from != to).then_some(Change { from, to })
    }

    /// Moves an open breaker whose time is up to half-open.
    pub fn tick(&mut self, now: Instant) -> Option<Change> {
        match self.inner {
            Inner::Open { until } if now >= until => self.set(Inner::HalfOpen { in_flight: 0 }),
            _ => None,
        }
    }

    /// Whether the dispatcher should leave this target's work unclaimed now: open, or
    /// half-open with every probe in flight. Call [`Breaker::tick`] first.
    pub fn refuses_claims(&self) -> bool {
        match self.inner {
            Inner::Closed { .. } => false,
            Inner::Open { .. } => true,
            Inner::HalfOpen { in_flight } => in_flight >= self.settings.probes,
        }
    }

    /// Asks to start an attempt at `now`.
    pub fn admit(&mut self, now: Instant) -> (Admission, Option<Change>) {
        let change = self.tick(now);
        let admission = match &mut self.inner {
            Inner::Closed { .. } => Admission::Go { probe: false },
            Inner::Open { until } => Admission::Wait { retry_at: *until },
            Inner::HalfOpen { in_flight } if *in_flight < self.settings.probes => {
                *in_flight += 1;
                Admission::Go { probe: true }
            }
            // Every probe is out; their outcome decides soon.
            Inner::HalfOpen { .. } => Admission::Wait {
                retry_at: now + self.settings.open.min(Duration::from_secs(1)),
            },
        };
        (admission, change)
    }

    /// Reports the outcome of an attempt admitted with `probe`.
    pub fn report(&mut self, verdict: Verdict, probe: bool, now: Instant) -> Option<Change> {
        if self.settings.failures == 0 {
            return None;
        }
        match (self.inner, verdict) {
            (Inner::Closed { .. }, Verdict::Answered) => {
                self.inner = Inner::Closed { consecutive: 0 };
                None
            }
            (Inner::Closed { consecutive }, Verdict::Failed) => {
                let consecutive = consecutive + 1;
                if consecutive >= self.settings.failures {
                    self.set(Inner::Open {
                        until: now + self.settings.open,
                    })
                } else {
                    self.inner = Inner::Closed { consecutive };
                    None
                }
            }
            (Inner::HalfOpen { .. }, Verdict::Answered) => {
                self.set(Inner::Closed { consecutive: 0 })
            }
            (Inner::HalfOpen { .. }, Verdict::Failed) if probe => self.set(Inner::Open {
                until: now + self.settings.open,
            }),
            (Inner::HalfOpen { in_flight }, Verdict::Neutral) if probe => {
                // The probe proved nothing: free its slot for another.
                self.inner = Inner::HalfOpen {
                    in_flight: in_flight.saturating_sub(1),
                };
                None
            }
            // An attempt started before the breaker opened, finishing late, or a neutral
            // outcome: old news, no change.
            _ => None,
        }
    }
}

/// Every target's breaker, created on first use with its target's settings.
#[derive(Debug, Default)]
pub struct Breakers {
    map: Mutex<BTreeMap<TargetKey, Breaker>>,
}

impl Breakers {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<TargetKey, Breaker>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers `target` (closed) so it shows in health and metrics before any traffic. A
    /// target already registered keeps its state (an open breaker stays open when the
    /// dispatcher restarts on a reload) and takes the new settings.
    pub fn register(&self, target: TargetKey, settings: BreakerSettings) {
        let mut map = self.lock();
        if let Some(b) = map.get_mut(&target) {
            b.settings = settings;
            return;
        }
        metrics::gauge!(m::BREAKER_STATE, "force" => target.force.clone(), "target" => target.target_system.clone())
            .set(BreakerState::Closed.gauge());
        map.insert(target, Breaker::new(settings));
    }

    /// Runs `f` on `target`'s breaker (created with `settings` if new) and reports any change.
    pub fn with<R>(
        &self,
        target: &TargetKey,
        settings: BreakerSettings,
        f: impl FnOnce(&mut Breaker) -> (R, Option<Change>),
    ) -> R {
        let (r, change) = {
            let mut map = self.lock();
            let b = map
                .entry(target.clone())
                .or_insert_with(|| Breaker::new(settings));
            f(b)
        };
        if let Some(c) = change {
            announce(target, c, settings);
        }
        r
    }

    /// Moves breakers whose open time is up to half-open, and returns the targets whose work
    /// should not be claimed now.
    pub fn refusing_claims(&self, now: Instant) -> Vec<TargetKey> {
        let mut changes = Vec::new();
        let out = {
            let mut map = self.lock();
            let mut out = Vec::new();
            for (k, b) in map.iter_mut() {
                if let Some(c) = b.tick(now) {
                    changes.push((k.clone(), c, b.settings));
                }
                if b.refuses_claims() {
                    out.push(k.clone());
                }
            }
            out
        };
        for (k, c, s) in changes {
            announce(&k, c, s);
        }
        out
    }

    /// The state of `force`'s `target_system` (closed when it has seen no traffic).
    pub fn state(&self, force: &str, target_system: &str) -> BreakerState {
        self.lock()
            .get(&TargetKey::new(force, target_system))
            .map_or(BreakerState::Closed, Breaker::state)
    }
}

/// Logs a transition and moves the gauge.
fn announce(target: &TargetKey, c: Change, settings: BreakerSettings) {
    metrics::gauge!(m::BREAKER_STATE, "force" => target.force.clone(), "target" => target.target_system.clone())
        .set(c.to.gauge());
    match c.to {
        BreakerState::Open => tracing::warn!(
            force = %target.force, target = %target.target_system, from = c.from.as_str(),
            open_ms = settings.open.as_millis() as u64,
            "circuit breaker opened: the target's work waits until probes succeed"
        ),
        BreakerState::HalfOpen => tracing::info!(
            force = %target.force, target = %target.target_system, probes = settings.probes,
            "circuit breaker half-open: probing the target"
        ),
        BreakerState::Closed => tracing::info!(
            force = %target.force, target = %target.target_system, from = c.from.as_str(),
            "circuit breaker closed: the target answers again"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> BreakerSettings {
        BreakerSettings {
            failures: 3,
            open: Duration::from_secs(10),
            probes: 1,
        }
    }

    fn go(b: &mut Breaker, now: Instant) -> bool {
        match b.admit(now).0 {
            Admission::Go { probe } => probe,
            Admission::Wait { .. } => panic!("refused in state {:?}", b.state()),
        }
    }

    #[test]
    fn opens_after_n_consecutive_retryable_failures_only() {
        let t = Instant::now();
        let mut b = Breaker::new(settings());
        // Two failures, then an answer (a 4xx rejection counts as one) resets the count.
        for _ in 0..2 {
            assert!(!go(&mut b, t));
            assert_eq!(b.report(Verdict::Failed, false, t), None);
        }
        assert_eq!(b.report(Verdict::Answered, false, t), None);
        for _ in 0..2 {
            assert_eq!(b.report(Verdict::Failed, false, t), None);
        }
        // Neutral outcomes (mapping errors) neither count nor reset.
        assert_eq!(b.report(Verdict::Neutral, false, t), None);
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(!b.refuses_claims());
        assert_eq!(
            b.report(Verdict::Failed, false, t),
            Some(Change {
                from: BreakerState::Closed,
                to: BreakerState::Open
            })
        );
        assert!(b.refuses_claims());
        assert_eq!(
            b.admit(t + Duration::from_secs(3)).0,
            Admission::Wait {
                retry_at: t + Duration::from_secs(10)
            }
        );
    }

    #[test]
    fn half_opens_after_open_time_and_limits_probes() {
        let t = Instant::now();
        let mut b = Breaker::new(BreakerSettings {
            probes: 2,
            ..settings()
        });
        for _ in 0..3 {
            b.report(Verdict::Failed, false, t);
        }
        assert_eq!(b.tick(t + Duration::from_secs(9)), None);
        assert!(b.refuses_claims());
        let later = t + Duration::from_secs(10);
        assert_eq!(
            b.tick(later),
            Some(Change {
                from: BreakerState::Open,
                to: BreakerState::HalfOpen
            })
        );
        assert!(!b.refuses_claims());
        assert!(go(&mut b, later));
        assert!(go(&mut b, later));
        // Both probes out: more work is put back and claims stop.
        assert!(matches!(b.admit(later).0, Admission::Wait { .. }));
        assert!(b.refuses_claims());
        // A probe that proved nothing frees its slot.
        assert_eq!(b.report(Verdict::Neutral, true, later), None);
        assert!(go(&mut b, later));
    }

    #[test]
    fn a_successful_probe_closes_and_a_failed_one_reopens() {
        let t = Instant::now();
        let mut b = Breaker::new(settings());
        for _ in 0..3 {
            b.report(Verdict::Failed, false, t);
        }
        let t1 = t + Duration::from_secs(10);
        assert!(go(&mut b, t1));
        assert_eq!(
            b.report(Verdict::Failed, true, t1),
            Some(Change {
                from: BreakerState::HalfOpen,
                to: BreakerState::Open
            })
        );
        // Open for another full period from the failed probe.
        assert!(matches!(
            b.admit(t1 + Duration::from_secs(9)).0,
            Admission::Wait { retry_at } if retry_at == t1 + Duration::from_secs(10)
        ));
        let t2 = t1 + Duration::from_secs(10);
        assert!(go(&mut b, t2));
        // A late failure of an attempt that was not a probe changes nothing.
        assert_eq!(b.report(Verdict::Failed, false, t2), None);
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert_eq!(
            b.report(Verdict::Answered, true, t2),
            Some(Change {
                from: BreakerState::HalfOpen,
                to: BreakerState::Closed
            })
        );
        // Closed again with a fresh count.
        for _ in 0..2 {
            b.report(Verdict::Failed, false, t2);
        }
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn zero_failures_means_no_breaker() {
        let t = Instant::now();
        let mut b = Breaker::new(BreakerSettings {
            failures: 0,
            ..settings()
        });
        for _ in 0..100 {
            assert!(!go(&mut b, t));
            assert_eq!(b.report(Verdict::Failed, false, t), None);
        }
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn the_registry_skips_open_targets_and_reports_states() {
        let t = Instant::now();
        let reg = Breakers::default();
        let kent = TargetKey::new("kent", "athena");
        let essex = TargetKey::new("essex", "athena");
        reg.register(essex, settings());
        for _ in 0..3 {
            reg.with(&kent, settings(), |b| {
                ((), b.report(Verdict::Failed, false, t))
            });
        }
        assert_eq!(reg.refusing_claims(t), vec![kent]);
        assert_eq!(reg.state("kent", "athena"), BreakerState::Open);
        assert_eq!(reg.state("essex", "athena"), BreakerState::Closed);
        assert_eq!(reg.state("norfolk", "athena"), BreakerState::Closed);
        assert!(reg.refusing_claims(t + Duration::from_secs(10)).is_empty());
        assert_eq!(reg.state("kent", "athena"), BreakerState::HalfOpen);
    }

    #[test]
    fn registering_again_keeps_the_state_and_takes_the_new_settings() {
        // What a dispatcher restarted by a reload does: an open breaker stays open.
        let t = Instant::now();
        let reg = Breakers::default();
        let kent = TargetKey::new("kent", "athena");
        reg.register(kent.clone(), settings());
        for _ in 0..3 {
            reg.with(&kent, settings(), |b| {
                ((), b.report(Verdict::Failed, false, t))
            });
        }
        assert_eq!(reg.state("kent", "athena"), BreakerState::Open);
        let longer = BreakerSettings {
            failures: 1,
            open: Duration::from_secs(60),
            probes: 2,
        };
        reg.register(kent.clone(), longer);
        assert_eq!(reg.state("kent", "athena"), BreakerState::Open);
        let kept = reg.with(&kent, settings(), |b| (b.settings, None));
        assert_eq!(kept.failures, 1);
        assert_eq!(kept.open, Duration::from_secs(60));
        assert_eq!(kept.probes, 2);
    }
}
