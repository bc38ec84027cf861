//! Backend-neutral pieces of the journal operations: the audit events they write and the words
//! of their refusals, so both backends say exactly the same thing.

use crate::{Attempt, AuditEvent, JournalError, ReplayOptions, RetentionPolicy, Transition};
use uuid::Uuid;

/// The audit record of an attempt that ended the exchange's delivery (delivered or parked).
pub(crate) fn outcome_event(
    id: Uuid,
    a: &Attempt,
    t: &Transition,
    force: String,
    kind: &str,
    correlation_id: String,
    target: &str,
) -> AuditEvent {
    let delivered = matches!(t, Transition::Delivered { .. });
    AuditEvent {
        time: a.finished_at,
        actor: "system".into(),
        role: "system".into(),
        force: Some(force),
        action: if delivered {
            "exchange.deliver"
        } else {
            "exchange.park"
        }
        .into(),
        object_type: Some("exchange".into()),
        object_id: Some(id.to_string()),
        result: if delivered { "success" } else { "failure" }.into(),
        source_ip: None,
        user_agent: None,
        correlation_id: Some(correlation_id),
        event_uid: Uuid::now_v7(),
        detail: Some(serde_json::json!({
            "kind": kind,
            "target": target,
            "attempt": a.number,
            "errorClass": a.error_class,
            "node": a.node,
        })),
    }
}

/// The guard of `record_attempt`, on the exchange's current state: only the lease holder may
/// record, and only the next attempt number, while the exchange is pending.
pub(crate) fn check_attempt(
    id: Uuid,
    a: &Attempt,
    status: &str,
    owner: Option<&str>,
    attempts: i64,
) -> Result<(), JournalError> {
    if status == "pending" && owner == Some(a.node.as_str()) && attempts == i64::from(a.number) - 1
    {
        Ok(())
    } else {
        Err(attempt_refusal(id, a, status, owner, attempts))
    }
}

/// Why `record_attempt` refused, given the exchange's current state.
pub(crate) fn attempt_refusal(
    id: Uuid,
    a: &Attempt,
    status: &str,
    owner: Option<&str>,
    attempts: i64,
) -> JournalError {
    let why = if status != "pending" {
        format!("it is {status}")
    } else if owner != Some(a.node.as_str()) {
        match owner {
            Some(o) => format!("its lease is held by {o}, not {}", a.node),
            None => format!("{} holds no lease on it", a.node),
        }
    } else {
        format!("attempt {} was expected, not {}", attempts + 1, a.number)
    };
    JournalError::Conflict(format!(
        "attempt {} on exchange {id} refused: {why}",
        a.number
    ))
}

/// Fills in the audit record of a replay: object, force, child, job and options.
pub(crate) fn replay_event(
    mut audit: AuditEvent,
    parent: Uuid,
    child: Uuid,
    force: &str,
    options: &ReplayOptions,
    job: Option<Uuid>,
) -> AuditEvent {
    audit.force.get_or_insert_with(|| force.to_owned());
    audit.object_type = Some("exchange".into());
    audit.object_id = Some(parent.to_string());
    audit.event_uid = Uuid::now_v7();
    let mut detail = audit.detail.take().unwrap_or_else(|| serde_json::json!({}));
    if let Some(obj) = detail.as_object_mut() {
        obj.insert("child".into(), child.to_string().into());
        if let Some(t) = &options.target {
            obj.insert("target".into(), t.clone().into());
        }
        if let Some(m) = &options.mapping_version {
            obj.insert("mappingVersion".into(), m.clone().into());
        }
        if let Some(j) = job {
            obj.insert("job".into(), j.to_string().into());
        }
    }
    audit.detail = Some(detail);
    audit
}

/// Fills in an audit record about one exchange (park, unpark).
pub(crate) fn exchange_event(mut audit: AuditEvent, id: Uuid, force: &str) -> AuditEvent {
    audit.force.get_or_insert_with(|| force.to_owned());
    audit.object_type = Some("exchange".into());
    audit.object_id = Some(id.to_string());
    audit
}

/// Refusal of a replay whose parent is not parked.
pub(crate) fn not_parked(parent: Uuid, status: &str) -> JournalError {
    JournalError::Conflict(format!(
        "exchange {parent} is {status}; only parked exchanges can be replayed"
    ))
}

/// Refusal of a replay (or unpark) while a replay of it is live.
pub(crate) fn live_child(parent: Uuid, child: &str, status: &str) -> JournalError {
    JournalError::Conflict(format!(
        "exchange {parent} was already replayed as {child}, which is {status}"
    ))
}

/// How many exchanges one retention transaction deletes at most.
pub(crate) const RETENTION_CHUNK: usize = 5_000;

/// The audit record of one retention deletion.
pub(crate) fn retention_event(
    audit: &AuditEvent,
    policy: &RetentionPolicy,
    what: &str,
    count: u64,
    attempts: u64,
    extra: Option<(&str, serde_json::Value)>,
) -> AuditEvent {
    let mut ev = audit.clone();
    ev.event_uid = Uuid::now_v7();
    ev.action = "exchange.delete".into();
    ev.object_type = Some(what.into());
    ev.object_id = None;
    ev.force = Some(policy.force.clone());
    ev.result = "success".into();
    let mut detail = serde_json::json!({
        "policy": {
            "force": policy.force,
            "kind": policy.kind,
            "payloadsSecs": policy.payloads.map(|d| d.as_secs()),
            "metadataSecs": policy.metadata.map(|d| d.as_secs()),
        },
        "deleted": what,
        "exchanges": count,
        "attempts": attempts,
    });
    if let (Some((k, v)), Some(obj)) = (extra, detail.as_object_mut()) {
        obj.insert(k.into(), v);
    }
    ev.detail = Some(detail);
    ev
}

/// Checks the policies make sense; names the first that does not.
pub(crate) fn check_policies(policies: &[RetentionPolicy]) -> Result<(), JournalError> {
    for (i, p) in policies.iter().enumerate() {
        if p.force.is_empty() {
            return Err(JournalError::Invalid(format!(
                "retention policy {i}: force is empty"
            )));
        }
        if let (Some(pl), Some(md)) = (p.payloads, p.metadata)
            && md < pl
        {
            return Err(JournalError::Invalid(format!(
                "retention policy {i} ({}/{}): metadata kept for less time than payloads",
                p.force,
                p.kind.as_deref().unwrap_or("*")
            )));
        }
        if policies[..i]
            .iter()
            .any(|q| q.force == p.force && q.kind == p.kind)
        {
            return Err(JournalError::Invalid(format!(
                "retention policy {i} ({}/{}): a second policy for the same force and kind",
                p.force,
                p.kind.as_deref().unwrap_or("*")
            )));
        }
    }
    Ok(())
}

/// The kinds of `force` that have a policy of their own (a force-wide policy skips them).
pub(crate) fn explicit_kinds(policies: &[RetentionPolicy], force: &str) -> Vec<String> {
    policies
        .iter()
        .filter(|p| p.force == force)
        .filter_map(|p| p.kind.clone())
        .collect()
}

/// Unix milliseconds of `t` (how both backends store times as numbers).
pub(crate) fn millis(t: time::OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

/// The pace of a rate-limited bulk replay job, shared by every node that works it: how far a
/// step may go now, and where the job's pace clock stands after it.
///
/// The clock (`paced_ms`, kept in the job row that every step locks) is the time up to which the
/// job's allowance has been spent. A step at `now_ms` may create `rate × (now − clock)` children,
/// with the clock first brought to no earlier than one second ago (so an idle or resumed job
/// starts with a burst of at most one second's worth, never a backlog); it then moves the clock
/// on by `children / rate` seconds. However many nodes step the job, and however often, the
/// children created in any stretch of time stay within `rate` per second of it plus that burst.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pace {
    /// Exchanges per second (`ReplayOptions::rate_per_sec`).
    rate: u32,
    /// The clock, brought forward to at most one second behind `now`.
    clock_ms: i64,
    /// How many children the step may create.
    pub(crate) allowed: usize,
}

impl Pace {
    /// The pace of a step at `now_ms` of a job with `rate` per second whose clock stands at
    /// `paced_ms`; `None` when the job has no rate limit.
    pub(crate) fn at(rate: Option<u32>, paced_ms: Option<i64>, now_ms: i64) -> Option<Pace> {
        let rate = rate?.max(1);
        let clock_ms = paced_ms.unwrap_or(i64::MIN).max(now_ms - 1000);
        let allowed = (i128::from(rate) * i128::from((now_ms - clock_ms).max(0)) / 1000) as usize;
        Some(Pace {
            rate,
            clock_ms,
            allowed,
        })
    }

    /// How many exchanges a step may take: `limit`, or less when `pace` allows fewer children
    /// now; `None` when it allows none (the step changes nothing).
    pub(crate) fn limit(pace: Option<Pace>, limit: usize) -> Option<usize> {
        match pace {
            Some(p) if p.allowed == 0 => None,
            Some(p) => Some(limit.min(p.allowed)),
            None => Some(limit),
        }
    }

    /// The clock after a step that created `children` (at most [`Pace::allowed`]): moved on by
    /// their share of a second, rounded up, so that the rate is never exceeded.
    pub(crate) fn after(&self, children: usize) -> i64 {
        let spent = (children as u64 * 1000).div_ceil(u64::from(self.rate)) as i64;
        self.clock_ms + spent
    }
}

#[cfg(test)]
mod pace_tests {
    use super::Pace;

    #[test]
    fn a_job_without_a_rate_is_not_paced() {
        assert_eq!(Pace::at(None, Some(0), 5_000), None);
    }

    #[test]
    fn a_fresh_or_idle_job_starts_with_one_second_of_allowance_and_no_more() {
        let fresh = Pace::at(Some(50), None, 1_000_000).unwrap();
        assert_eq!(fresh.allowed, 50);
        let idle = Pace::at(Some(50), Some(3_000), 1_000_000).unwrap();
        assert_eq!(
            idle.allowed, 50,
            "an hour-old clock gives one second's worth"
        );
    }

    #[test]
    fn the_allowance_grows_with_time_and_is_spent_by_children() {
        // 20/s: 50 ms per child.
        let p = Pace::at(Some(20), Some(10_000), 10_000).unwrap();
        assert_eq!(p.allowed, 0, "nothing is due at the clock itself");
        let p = Pace::at(Some(20), Some(10_000), 10_149).unwrap();
        assert_eq!(p.allowed, 2, "149 ms at 50 ms a child");
        assert_eq!(p.after(2), 10_100, "two children spend 100 ms");
        let next = Pace::at(Some(20), Some(p.after(2)), 10_149).unwrap();
        assert_eq!(
            next.allowed, 0,
            "a second node at the same moment gets nothing more"
        );
        assert_eq!(
            p.after(0),
            10_000,
            "a step that made nothing spends nothing"
        );
    }

    #[test]
    fn the_clock_never_lets_more_than_the_rate_through_over_many_steps() {
        // Steps every 7 ms from two "nodes" for 10 s at 33/s: at most 33 × 10 + 33 (the burst).
        let (rate, mut clock, mut made) = (33, None, 0usize);
        let start = 1_000_000i64;
        let mut now = start;
        while now < start + 10_000 {
            for _node in 0..2 {
                let p = Pace::at(Some(rate), clock, now).unwrap();
                made += p.allowed;
                clock = Some(p.after(p.allowed));
            }
            now += 7;
        }
        assert!(made <= 33 * 10 + 33, "{made} children in 10 s at 33/s");
        assert!(
            made >= 33 * 10 - 33,
            "{made} children in 10 s at 33/s: the pace starved the job"
        );
    }
}
