//! Operator writes on PostgreSQL: replay (one or a job step, set-based), park/unpark, legal
//! holds and retention. Each runs inside the caller's transaction and returns the audit events
//! the caller appends at the head of the chain before committing.

use super::{
    partitions::Partition,
    pg,
    read::{self, Bound, bind, refs},
    write::apply_deltas,
};
use crate::{
    AuditEvent, HoldTarget, JournalError, LegalHold, NewReplayJob, ReplayJob, ReplayJobState,
    ReplayOptions, ReplayStep, Result, RetentionPolicy, ops, sql,
};
use std::collections::BTreeMap;
use time::OffsetDateTime;
use tokio_postgres::Transaction;
use uuid::Uuid;

type Deltas = BTreeMap<(String, String, String), i64>;

/// Creates children of `parents` (already checked: parked, no live child, locked). Returns
/// (parent, child, force) in the order given.
async fn replay_many(
    tx: &Transaction<'_>,
    parents: &[Uuid],
    options: &ReplayOptions,
    job: Option<Uuid>,
) -> Result<Vec<(Uuid, Uuid, String)>> {
    if parents.is_empty() {
        return Ok(Vec::new());
    }
    let now = OffsetDateTime::now_utc();
    let children: Vec<Uuid> = parents.iter().map(|_| Uuid::now_v7()).collect();
    let rows = tx
        .query(
            "INSERT INTO exchanges (id, root_id, parent_id, force, kind, direction, source_system,
                 target_system, api_version, model_version, idempotency_key, correlation_id,
                 case_ref, status, attempts, next_attempt_at, created_at, updated_at,
                 payload_type, payload, response, requested_mapping, replay_job_id)
             SELECT c.child, p.root_id, p.id, p.force, p.kind, p.direction, p.source_system,
                 coalesce($4, p.target_system), p.api_version, p.model_version,
                 p.idempotency_key, p.correlation_id, p.case_ref, 'pending', 0, $3, $3, $3,
                 p.payload_type, p.payload, p.response, $5, $6
             FROM unnest($1::uuid[], $2::uuid[]) AS c(parent, child)
             JOIN exchanges p ON p.id = c.parent
             RETURNING parent_id, id, force, kind",
            &[
                &parents,
                &children,
                &now,
                &options.target,
                &options.mapping_version,
                &job,
            ],
        )
        .await
        .map_err(pg)?;
    let mut deltas = Deltas::new();
    let mut made: BTreeMap<Uuid, (Uuid, String)> = BTreeMap::new();
    for r in &rows {
        let force: String = r.get(2);
        *deltas
            .entry((force.clone(), r.get(3), "pending".into()))
            .or_default() += 1;
        made.insert(r.get(0), (r.get(1), force));
    }
    apply_deltas(tx, &deltas).await.map_err(pg)?;
    Ok(parents
        .iter()
        .filter_map(|p| made.get(p).map(|(c, f)| (*p, *c, f.clone())))
        .collect())
}

/// Parents among `ids` that have a pending or delivered child: (parent, child, status).
async fn live_children(tx: &Transaction<'_>, ids: &[Uuid]) -> Result<Vec<(Uuid, Uuid, String)>> {
    Ok(tx
        .query(
            "SELECT parent_id, id, status FROM exchanges
             WHERE parent_id = ANY($1) AND status <> 'parked'",
            &[&ids],
        )
        .await
        .map_err(pg)?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect())
}

/// Replays one exchange; returns the child and the audit event.
pub(super) async fn replay(
    tx: &Transaction<'_>,
    parent: Uuid,
    options: &ReplayOptions,
    audit: AuditEvent,
    job: Option<Uuid>,
) -> Result<(Uuid, AuditEvent)> {
    // The row lock makes concurrent replays of one parent (from any node) take turns.
    let row = tx
        .query_opt(
            "SELECT status FROM exchanges WHERE id = $1 FOR UPDATE",
            &[&parent],
        )
        .await
        .map_err(pg)?
        .ok_or_else(|| JournalError::NotFound(parent.to_string()))?;
    let status: String = row.get(0);
    if status != "parked" {
        return Err(ops::not_parked(parent, &status));
    }
    if let Some((_, child, st)) = live_children(tx, &[parent]).await?.into_iter().next() {
        return Err(ops::live_child(parent, &child.to_string(), &st));
    }
    let made = replay_many(tx, &[parent], options, job).await?;
    let (_, child, force) = made
        .into_iter()
        .next()
        .ok_or_else(|| JournalError::NotFound(parent.to_string()))?;
    Ok((
        child,
        ops::replay_event(audit, parent, child, &force, options, job),
    ))
}

/// Parks a pending exchange no node is delivering.
pub(super) async fn park(
    tx: &Transaction<'_>,
    id: Uuid,
    now: OffsetDateTime,
    audit: AuditEvent,
) -> Result<AuditEvent> {
    let row = tx
        .query_opt(
            "UPDATE exchanges SET status = 'parked', next_attempt_at = NULL, updated_at = $2,
                 lease_owner = NULL, lease_until = NULL
             WHERE id = $1 AND status = 'pending' AND (lease_until IS NULL OR lease_until < $2)
             RETURNING force, kind",
            &[&id, &now],
        )
        .await
        .map_err(pg)?;
    let Some(row) = row else {
        let st = tx
            .query_opt("SELECT status FROM exchanges WHERE id = $1", &[&id])
            .await
            .map_err(pg)?
            .ok_or_else(|| JournalError::NotFound(id.to_string()))?;
        let status: String = st.get(0);
        return Err(JournalError::Conflict(if status == "pending" {
            format!("exchange {id} is being delivered right now; park it when the attempt ends")
        } else {
            format!("exchange {id} is {status}; only pending exchanges can be parked")
        }));
    };
    let (force, kind): (String, String) = (row.get(0), row.get(1));
    let mut d = Deltas::new();
    d.insert((force.clone(), kind.clone(), "parked".into()), 1);
    d.insert((force.clone(), kind, "pending".into()), -1);
    apply_deltas(tx, &d).await.map_err(pg)?;
    Ok(ops::exchange_event(audit, id, &force))
}

/// Puts a parked exchange back to pending.
pub(super) async fn unpark(
    tx: &Transaction<'_>,
    id: Uuid,
    now: OffsetDateTime,
    audit: AuditEvent,
) -> Result<AuditEvent> {
    let row = tx
        .query_opt(
            "SELECT status, force, kind FROM exchanges WHERE id = $1 FOR UPDATE",
            &[&id],
        )
        .await
        .map_err(pg)?
        .ok_or_else(|| JournalError::NotFound(id.to_string()))?;
    let (status, force, kind): (String, String, String) = (row.get(0), row.get(1), row.get(2));
    if status != "parked" {
        return Err(JournalError::Conflict(format!(
            "exchange {id} is {status}; only parked exchanges can be unparked"
        )));
    }
    if let Some((_, child, st)) = live_children(tx, &[id]).await?.into_iter().next() {
        return Err(ops::live_child(id, &child.to_string(), &st));
    }
    tx.execute(
        "UPDATE exchanges SET status = 'pending', next_attempt_at = $2, updated_at = $2,
             lease_owner = NULL, lease_until = NULL WHERE id = $1",
        &[&id, &now],
    )
    .await
    .map_err(pg)?;
    let mut d = Deltas::new();
    d.insert((force.clone(), kind.clone(), "parked".into()), -1);
    d.insert((force.clone(), kind, "pending".into()), 1);
    apply_deltas(tx, &d).await.map_err(pg)?;
    Ok(ops::exchange_event(audit, id, &force))
}

fn job_event(mut audit: AuditEvent, id: Uuid, detail: serde_json::Value) -> AuditEvent {
    audit.object_type = Some("replay_job".into());
    audit.object_id = Some(id.to_string());
    audit.detail = Some(detail);
    audit
}

fn missing_job(id: Uuid) -> JournalError {
    JournalError::NotFound(format!("replay job {id}"))
}

pub(super) async fn create_job(
    tx: &Transaction<'_>,
    job: &NewReplayJob,
    audit: AuditEvent,
) -> Result<(ReplayJob, Vec<AuditEvent>)> {
    let now = OffsetDateTime::now_utc();
    let id = Uuid::now_v7();
    let mut covered = job.filter.clone();
    covered.to = Some(match covered.to {
        Some(t) if t < now => t,
        _ => now,
    });
    let planned = read::count(tx, &covered).await? as i64;
    let filter = serde_json::to_string(&job.filter)
        .map_err(|e| JournalError::Invalid(format!("filter: {e}")))?;
    let options = serde_json::to_string(&job.options)
        .map_err(|e| JournalError::Invalid(format!("options: {e}")))?;
    tx.execute(
        "INSERT INTO replay_jobs (id, filter, options, state, until_at, planned, created_by,
             created_at, updated_at)
         VALUES ($1, $2, $3, 'running', $4, $5, $6, $4, $4)",
        &[&id, &filter, &options, &now, &planned, &job.created_by],
    )
    .await
    .map_err(pg)?;
    let ev = job_event(
        audit,
        id,
        serde_json::json!({ "filter": job.filter, "options": job.options, "planned": planned }),
    );
    let job = read::replay_job(tx, id, false)
        .await?
        .ok_or_else(|| missing_job(id))?;
    Ok((job, vec![ev]))
}

pub(super) async fn run_job(
    tx: &Transaction<'_>,
    id: Uuid,
    limit: usize,
    audit: &AuditEvent,
) -> Result<(ReplayStep, Vec<AuditEvent>)> {
    // The job's row lock: two processes stepping one job take turns.
    let job = read::replay_job(tx, id, true)
        .await?
        .ok_or_else(|| missing_job(id))?;
    if job.state != ReplayJobState::Running {
        return Err(JournalError::Conflict(format!(
            "replay job {id} is {}",
            job.state.as_str()
        )));
    }
    let cur = tx
        .query_one(
            "SELECT cursor_at, cursor_seq, paced_ms FROM replay_jobs WHERE id = $1",
            &[&id],
        )
        .await
        .map_err(pg)?;
    let (cur_at, cur_seq): (Option<OffsetDateTime>, Option<i64>) = (cur.get(0), cur.get(1));
    // A rate-limited job takes what its pace allows now, whichever node steps it (the row lock
    // above makes the nodes take turns with the clock).
    let now = OffsetDateTime::now_utc();
    let pace = ops::Pace::at(job.options.rate_per_sec, cur.get(2), ops::millis(now));
    let Some(limit) = ops::Pace::limit(pace, limit) else {
        let step = ReplayStep {
            children: Vec::new(),
            skipped: 0,
            job,
        };
        return Ok((step, Vec::new()));
    };
    let d = sql::Dialect::Postgres;
    let mut w = sql::filter(d, &job.filter, "");
    w.push(d, "created_at <= {}", sql::Param::Time(job.until));
    if let (Some(at), Some(seq)) = (cur_at, cur_seq) {
        w.params.push(sql::Param::Time(at));
        w.params.push(sql::Param::Int(seq));
        let n = w.params.len();
        w.raw(&format!("(created_at, seq) > (${}, ${n})", n - 1));
    }
    let limit = limit.max(1);
    let params: Vec<Bound> = w.params.iter().map(bind).collect();
    let rows = tx
        .query(
            &format!(
                "SELECT seq, id, created_at, status FROM exchanges {} ORDER BY created_at, seq
                 LIMIT {limit}",
                w.sql()
            ),
            &refs(&params),
        )
        .await
        .map_err(pg)?;
    let parked: Vec<Uuid> = rows
        .iter()
        .filter(|r| r.get::<_, &str>(3) == "parked")
        .map(|r| r.get(1))
        .collect();
    let live: std::collections::HashSet<Uuid> = live_children(tx, &parked)
        .await?
        .into_iter()
        .map(|(p, _, _)| p)
        .collect();
    let candidates: Vec<Uuid> = parked.into_iter().filter(|p| !live.contains(p)).collect();
    // Lock and re-check under the lock; then claim each parent for this job once.
    let locked: Vec<Uuid> = tx
        .query(
            "SELECT id FROM exchanges WHERE id = ANY($1) AND status = 'parked' ORDER BY id
             FOR UPDATE",
            &[&candidates],
        )
        .await
        .map_err(pg)?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let claimed: std::collections::HashSet<Uuid> = tx
        .query(
            "INSERT INTO replay_job_items (job_id, parent_id)
             SELECT $1, p FROM unnest($2::uuid[]) AS p
             ON CONFLICT DO NOTHING RETURNING parent_id",
            &[&id, &locked],
        )
        .await
        .map_err(pg)?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let todo: Vec<Uuid> = candidates
        .into_iter()
        .filter(|p| claimed.contains(p))
        .collect();
    let made = replay_many(tx, &todo, &job.options, Some(id)).await?;
    if !made.is_empty() {
        let parents: Vec<Uuid> = made.iter().map(|m| m.0).collect();
        let children: Vec<Uuid> = made.iter().map(|m| m.1).collect();
        tx.execute(
            "UPDATE replay_job_items i SET child_id = c.child
             FROM unnest($2::uuid[], $3::uuid[]) AS c(parent, child)
             WHERE i.job_id = $1 AND i.parent_id = c.parent",
            &[&id, &parents, &children],
        )
        .await
        .map_err(pg)?;
    }
    let skipped = (rows.len() - made.len()) as i64;
    let done = rows.len() < limit;
    let last: Option<(OffsetDateTime, i64)> = rows.last().map(|r| (r.get(2), r.get(0)));
    tx.execute(
        "UPDATE replay_jobs SET replayed = replayed + $2, skipped = skipped + $3,
             cursor_at = coalesce($4, cursor_at), cursor_seq = coalesce($5, cursor_seq),
             state = CASE WHEN $6 THEN 'completed' ELSE state END, updated_at = $7,
             paced_ms = coalesce($8, paced_ms)
         WHERE id = $1",
        &[
            &id,
            &(made.len() as i64),
            &skipped,
            &last.map(|l| l.0),
            &last.map(|l| l.1),
            &done,
            &OffsetDateTime::now_utc(),
            &pace.map(|p| p.after(made.len())),
        ],
    )
    .await
    .map_err(pg)?;
    let events = made
        .iter()
        .map(|(p, c, f)| ops::replay_event(audit.clone(), *p, *c, f, &job.options, Some(id)))
        .collect();
    let job = read::replay_job(tx, id, false)
        .await?
        .ok_or_else(|| missing_job(id))?;
    Ok((
        ReplayStep {
            children: made.into_iter().map(|(p, c, _)| (p, c)).collect(),
            skipped: skipped as u64,
            job,
        },
        events,
    ))
}

pub(super) async fn set_job_cancelled(
    tx: &Transaction<'_>,
    id: Uuid,
    cancel: bool,
    audit: AuditEvent,
) -> Result<(ReplayJob, Vec<AuditEvent>)> {
    let job = read::replay_job(tx, id, true)
        .await?
        .ok_or_else(|| missing_job(id))?;
    let (from, to) = if cancel {
        (ReplayJobState::Running, ReplayJobState::Cancelled)
    } else {
        (ReplayJobState::Cancelled, ReplayJobState::Running)
    };
    if job.state != from {
        return Err(JournalError::Conflict(format!(
            "replay job {id} is {}; only a {} job can be {}",
            job.state.as_str(),
            from.as_str(),
            if cancel { "cancelled" } else { "resumed" }
        )));
    }
    tx.execute(
        "UPDATE replay_jobs SET state = $2, updated_at = $3 WHERE id = $1",
        &[&id, &to.as_str(), &OffsetDateTime::now_utc()],
    )
    .await
    .map_err(pg)?;
    let ev = job_event(
        audit,
        id,
        serde_json::json!({ "state": to.as_str(), "replayed": job.replayed }),
    );
    let job = read::replay_job(tx, id, false)
        .await?
        .ok_or_else(|| missing_job(id))?;
    Ok((job, vec![ev]))
}

pub(super) async fn place_hold(
    tx: &Transaction<'_>,
    target: &HoldTarget,
    reason: &str,
    mut audit: AuditEvent,
) -> Result<(LegalHold, Vec<AuditEvent>)> {
    let now = OffsetDateTime::now_utc();
    let id = Uuid::now_v7();
    let (root, force, case): (Option<Uuid>, Option<&str>, Option<&str>) = match target {
        HoldTarget::Exchange { id: ex } => {
            let root: Uuid = tx
                .query_opt("SELECT root_id FROM exchanges WHERE id = $1", &[ex])
                .await
                .map_err(pg)?
                .ok_or_else(|| JournalError::NotFound(ex.to_string()))?
                .get(0);
            (Some(root), None, None)
        }
        HoldTarget::Case { force, case_ref } => (None, Some(force), Some(case_ref)),
    };
    tx.execute(
        "INSERT INTO legal_holds (id, root_id, force, case_ref, reason, placed_by, placed_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &[&id, &root, &force, &case, &reason, &audit.actor, &now],
    )
    .await
    .map_err(pg)?;
    audit.action = "hold.place".into();
    audit.object_type = Some("legal_hold".into());
    audit.object_id = Some(id.to_string());
    audit.detail = Some(serde_json::json!({ "target": target, "reason": reason }));
    let hold = LegalHold {
        id,
        target: target.clone(),
        reason: reason.to_owned(),
        placed_by: audit.actor.clone(),
        placed_at: now,
    };
    Ok((hold, vec![audit]))
}

pub(super) async fn release_hold(
    tx: &Transaction<'_>,
    id: Uuid,
    mut audit: AuditEvent,
) -> Result<AuditEvent> {
    let n = tx
        .execute(
            "UPDATE legal_holds SET released_at = $2, released_by = $3
             WHERE id = $1 AND released_at IS NULL",
            &[&id, &OffsetDateTime::now_utc(), &audit.actor],
        )
        .await
        .map_err(pg)?;
    if n != 1 {
        return Err(JournalError::NotFound(format!("legal hold {id}")));
    }
    audit.action = "hold.release".into();
    audit.object_type = Some("legal_hold".into());
    audit.object_id = Some(id.to_string());
    Ok(audit)
}

const HELD: &str = "NOT EXISTS (SELECT 1 FROM legal_holds h WHERE h.released_at IS NULL
      AND (h.root_id = e.root_id OR (h.force = e.force AND h.case_ref = e.case_ref)))";

/// `e.force = … AND e.kind … AND e.created_at < cutoff` for one policy, parameters appended.
fn policy_cond(
    p: &RetentionPolicy,
    explicit: &[String],
    cutoff: OffsetDateTime,
    params: &mut Vec<Bound>,
    family: bool,
) -> String {
    params.push(Box::new(p.force.clone()));
    let f = params.len();
    params.push(Box::new(cutoff));
    let c = params.len();
    let kind = match &p.kind {
        Some(k) => {
            params.push(Box::new(k.clone()));
            format!("e.kind = ${}", params.len())
        }
        None => {
            params.push(Box::new(explicit.to_vec()));
            format!("e.kind <> ALL(${})", params.len())
        }
    };
    let mut cond = format!("e.force = ${f} AND {kind} AND e.created_at < ${c}");
    if family {
        // The family goes together: none of it newer than the cutoff, none of it pending.
        cond.push_str(&format!(
            " AND NOT EXISTS (SELECT 1 FROM exchanges m WHERE m.parent_id IS NOT NULL
                 AND m.root_id = e.root_id AND (m.created_at >= ${c} OR m.status = 'pending'))
              AND (e.parent_id IS NULL OR NOT EXISTS (SELECT 1 FROM exchanges r
                 WHERE r.id = e.root_id AND r.status = 'pending'))"
        ));
    }
    cond
}

fn cutoff(now: OffsetDateTime, age: std::time::Duration) -> OffsetDateTime {
    now - time::Duration::try_from(age).unwrap_or(time::Duration::MAX)
}

pub(super) async fn purge_payloads(
    tx: &Transaction<'_>,
    p: &RetentionPolicy,
    explicit: &[String],
    now: OffsetDateTime,
    audit: &AuditEvent,
) -> Result<(u64, Option<AuditEvent>)> {
    let Some(age) = p.payloads else {
        return Ok((0, None));
    };
    let mut params: Vec<Bound> = Vec::new();
    let cond = policy_cond(p, explicit, cutoff(now, age), &mut params, false);
    params.push(Box::new(now));
    let n = tx
        .execute(
            &format!(
                "UPDATE exchanges x SET payload = '\\x', canonical = NULL, target_payload = NULL,
                     payloads_deleted_at = ${now}
                 FROM (SELECT e.id FROM exchanges e
                       WHERE {cond} AND e.status <> 'pending' AND e.payloads_deleted_at IS NULL
                         AND {HELD}
                       LIMIT {chunk}) d
                 WHERE x.id = d.id",
                now = params.len(),
                chunk = ops::RETENTION_CHUNK
            ),
            &refs(&params),
        )
        .await
        .map_err(pg)?;
    let ev = (n > 0).then(|| ops::retention_event(audit, p, "payloads", n, 0, None));
    Ok((n, ev))
}

pub(super) async fn purge_metadata(
    tx: &Transaction<'_>,
    p: &RetentionPolicy,
    explicit: &[String],
    now: OffsetDateTime,
    audit: &AuditEvent,
) -> Result<(u64, u64, Option<AuditEvent>)> {
    let Some(age) = p.metadata else {
        return Ok((0, 0, None));
    };
    let mut params: Vec<Bound> = Vec::new();
    let cond = policy_cond(p, explicit, cutoff(now, age), &mut params, true);
    let rows = tx
        .query(
            &format!(
                "SELECT e.id, e.kind, e.status FROM exchanges e
                 WHERE {cond} AND e.status <> 'pending' AND {HELD}
                 ORDER BY e.created_at DESC, e.seq DESC LIMIT {}",
                ops::RETENTION_CHUNK
            ),
            &refs(&params),
        )
        .await
        .map_err(pg)?;
    if rows.is_empty() {
        return Ok((0, 0, None));
    }
    let ids: Vec<Uuid> = rows.iter().map(|r| r.get(0)).collect();
    let mut deltas = Deltas::new();
    for r in &rows {
        *deltas
            .entry((p.force.clone(), r.get(1), r.get(2)))
            .or_default() -= 1;
    }
    let attempts = tx
        .execute("DELETE FROM attempts WHERE exchange_id = ANY($1)", &[&ids])
        .await
        .map_err(pg)?;
    tx.execute("DELETE FROM exchanges WHERE id = ANY($1)", &[&ids])
        .await
        .map_err(pg)?;
    tx.execute("DELETE FROM dedupe WHERE exchange_id = ANY($1)", &[&ids])
        .await
        .map_err(pg)?;
    apply_deltas(tx, &deltas).await.map_err(pg)?;
    let n = ids.len() as u64;
    let ev = ops::retention_event(audit, p, "exchanges", n, attempts, None);
    Ok((n, attempts, Some(ev)))
}

/// Drops every monthly partition whose exchanges may all go (each older than its policy allows,
/// none held or pending, no family member kept). Returns (partition, exchanges, attempts).
pub(super) async fn drop_expired_partitions(
    tx: &Transaction<'_>,
    policies: &[RetentionPolicy],
    now: OffsetDateTime,
    audit: &AuditEvent,
) -> Result<((Vec<(String, u64, u64)>, u64), Vec<AuditEvent>)> {
    let with_meta: Vec<&RetentionPolicy> =
        policies.iter().filter(|p| p.metadata.is_some()).collect();
    if with_meta.is_empty() {
        return Ok(((Vec::new(), 0), Vec::new()));
    }
    let mut params: Vec<Bound> = Vec::new();
    let mut conds = Vec::new();
    for p in &with_meta {
        let explicit = ops::explicit_kinds(policies, &p.force);
        let age = p.metadata.unwrap_or_default();
        conds.push(format!(
            "({})",
            policy_cond(p, &explicit, cutoff(now, age), &mut params, true)
        ));
    }
    let eligible = format!(
        "(({}) AND e.status <> 'pending' AND {HELD})",
        conds.join(" OR ")
    );
    let names: Vec<String> = tx
        .query(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
             JOIN pg_class p ON p.oid = i.inhparent
             WHERE p.relname = 'exchanges' AND c.relname LIKE 'exchanges\\_p%'
               AND p.relnamespace = current_schema()::regnamespace
             ORDER BY c.relname",
            &[],
        )
        .await
        .map_err(pg)?
        .iter()
        .map(|r| r.get(0))
        .collect();
    // Never the month now in progress by either clock: new exchanges land there.
    let current = Partition::of(now.min(OffsetDateTime::now_utc())).suffix;
    let mut dropped = Vec::new();
    let mut events = Vec::new();
    for name in names {
        let suffix = name.trim_start_matches("exchanges_p").to_owned();
        // Only months that have ended; the names are generated, never user input.
        if suffix.len() != 6 || !suffix.bytes().all(|b| b.is_ascii_digit()) || suffix >= current {
            continue;
        }
        let r = tx
            .query_one(
                &format!("SELECT count(*), count(*) FILTER (WHERE NOT {eligible}) FROM {name} e"),
                &refs(&params),
            )
            .await
            .map_err(pg)?;
        let (total, kept): (i64, i64) = (r.get(0), r.get(1));
        if total == 0 || kept > 0 {
            continue;
        }
        let mut deltas = Deltas::new();
        let mut by_force: BTreeMap<String, i64> = BTreeMap::new();
        for r in tx
            .query(
                &format!("SELECT force, kind, status, count(*) FROM {name} GROUP BY 1, 2, 3"),
                &[],
            )
            .await
            .map_err(pg)?
        {
            let n: i64 = r.get(3);
            let force: String = r.get(0);
            *by_force.entry(force.clone()).or_default() += n;
            deltas.insert((force, r.get(1), r.get(2)), -n);
        }
        let attempts: i64 = tx
            .query_one(&format!("SELECT count(*) FROM attempts_p{suffix}"), &[])
            .await
            .map_err(pg)?
            .get(0);
        tx.execute(
            &format!("DELETE FROM dedupe d USING {name} e WHERE d.exchange_id = e.id"),
            &[],
        )
        .await
        .map_err(pg)?;
        tx.batch_execute(&format!(
            "SET LOCAL lock_timeout = '10s'; DROP TABLE {name}; DROP TABLE attempts_p{suffix};"
        ))
        .await
        .map_err(pg)?;
        apply_deltas(tx, &deltas).await.map_err(pg)?;
        for (force, n) in by_force {
            let policy = with_meta
                .iter()
                .find(|p| p.force == force)
                .map(|p| (*p).clone())
                .unwrap_or(RetentionPolicy {
                    force,
                    kind: None,
                    payloads: None,
                    metadata: None,
                });
            events.push(ops::retention_event(
                audit,
                &policy,
                "exchanges",
                n as u64,
                attempts as u64,
                Some(("partition", serde_json::Value::String(name.clone()))),
            ));
        }
        tracing::info!(partition = %name, exchanges = total, "dropped an expired journal partition");
        dropped.push((name, total as u64, attempts as u64));
    }
    Ok(((dropped, events.len() as u64), events))
}
