//! Operator writes on the SQLite journal: replay, park/unpark, bulk replay jobs, legal holds and
//! retention. Each runs on the writer thread inside its own savepoint of a group-commit batch.

use super::{
    read,
    write::{Head, append_audit, bump, millis, parse_uuid, rfc3339},
};
use crate::{
    AuditEvent, ExchangeFilter, HoldTarget, JournalError, LegalHold, NewReplayJob, ReplayJob,
    ReplayJobState, ReplayOptions, ReplayStep, Result, RetentionPolicy, ops, sql,
};
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};
use time::OffsetDateTime;
use uuid::Uuid;

/// The state and force of an exchange, or `NotFound`.
fn status_of(c: &Connection, id: Uuid) -> Result<(String, String, String)> {
    c.prepare_cached("SELECT status, force, kind FROM exchanges WHERE id = ?1")?
        .query_row(params![id.to_string()], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()?
        .ok_or_else(|| JournalError::NotFound(id.to_string()))
}

/// A replay of `parent` that is pending or delivered, if any.
fn live_child(c: &Connection, parent: Uuid) -> Result<Option<(String, String)>> {
    Ok(c.prepare_cached(
        "SELECT id, status FROM exchanges WHERE parent_id = ?1 AND status != 'parked' LIMIT 1",
    )?
    .query_row(params![parent.to_string()], |r| Ok((r.get(0)?, r.get(1)?)))
    .optional()?)
}

/// What a replay copies from its parent: the row's columns, read once. The payload and response
/// stay where they are (the child points at the row that holds them, `payload_seq`).
struct Parent {
    seq: i64,
    id: String,
    created_ms: i64,
    status: String,
    force: String,
    kind: String,
    direction: String,
    source_system: String,
    target_system: String,
    api_version: String,
    model_version: String,
    idempotency_key: String,
    correlation_id: String,
    case_ref: Option<String>,
    root_id: Option<String>,
    payload_type: String,
    payload_seq: Option<i64>,
}

/// The columns [`Parent::of`] reads, in its order.
const PARENT_COLUMNS: &str = "seq, id, created_ms, status, force, kind, direction, source_system,
    target_system, api_version, model_version, idempotency_key, correlation_id, case_ref, root_id,
    payload_type, payload_seq";

impl Parent {
    fn of(r: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            seq: r.get(0)?,
            id: r.get(1)?,
            created_ms: r.get(2)?,
            status: r.get(3)?,
            force: r.get(4)?,
            kind: r.get(5)?,
            direction: r.get(6)?,
            source_system: r.get(7)?,
            target_system: r.get(8)?,
            api_version: r.get(9)?,
            model_version: r.get(10)?,
            idempotency_key: r.get(11)?,
            correlation_id: r.get(12)?,
            case_ref: r.get(13)?,
            root_id: r.get(14)?,
            payload_type: r.get(15)?,
            payload_seq: r.get(16)?,
        })
    }
}

/// Creates the child of a parked exchange.
pub(super) fn replay(
    c: &Connection,
    head: &mut Head,
    parent: Uuid,
    options: &ReplayOptions,
    audit: AuditEvent,
    job: Option<Uuid>,
) -> Result<Uuid> {
    let row = c
        .prepare_cached(&format!(
            "SELECT {PARENT_COLUMNS} FROM exchanges WHERE id = ?1"
        ))?
        .query_row(params![parent.to_string()], Parent::of)
        .optional()?
        .ok_or_else(|| JournalError::NotFound(parent.to_string()))?;
    if row.status != "parked" {
        return Err(ops::not_parked(parent, &row.status));
    }
    if let Some((child, st)) = live_child(c, parent)? {
        return Err(ops::live_child(parent, &child, &st));
    }
    let child = Uuid::now_v7();
    insert_child(
        c,
        &row,
        &child.to_string(),
        options,
        job.map(|j| j.to_string()).as_deref(),
    )?;
    bump(c, &row.force, &row.kind, "pending", 1)?;
    append_audit(
        c,
        head,
        &ops::replay_event(audit, parent, child, &row.force, options, job),
    )?;
    Ok(child)
}

/// Inserts the child `child` of `parent`: a copy of the parent's row, pending and due now, linked
/// to its parent (and family root) and carrying its idempotency key. The payload and response
/// are not copied: the child shares those of the exchange that holds them (`payload_seq`,
/// migration 0025), so a bulk replay writes small rows.
///
/// One row of values, from columns the caller has already read: an `INSERT … SELECT` from the
/// same table made SQLite copy the parent row into a temporary table first, for every child
/// (about a fifth of the cost of each insert, measured).
fn insert_child(
    c: &Connection,
    parent: &Parent,
    child: &str,
    options: &ReplayOptions,
    job: Option<&str>,
) -> Result<()> {
    let now = OffsetDateTime::now_utc();
    let now_ms = millis(now);
    c.prepare_cached(
        "INSERT INTO exchanges (id, force, kind, direction, source_system, target_system,
             api_version, model_version, idempotency_key, dedupe_key, correlation_id, case_ref,
             parent_id, root_id, status, attempts, next_attempt_ms, created_at, created_ms,
             updated_ms, payload_type, payload, response, payload_seq, requested_mapping,
             replay_job_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, NULL, ?10, ?11, ?12, ?13, 'pending', 0,
             ?14, ?15, ?14, ?14, ?16, x'', x'', ?17, ?18, ?19)",
    )?
    .execute(params![
        child,
        parent.force,
        parent.kind,
        parent.direction,
        parent.source_system,
        options.target.as_deref().unwrap_or(&parent.target_system),
        parent.api_version,
        parent.model_version,
        parent.idempotency_key,
        parent.correlation_id,
        parent.case_ref,
        parent.id,
        parent.root_id,
        now_ms,
        rfc3339(now),
        parent.payload_type,
        parent.payload_seq.unwrap_or(parent.seq),
        options.mapping_version,
        job,
    ])?;
    Ok(())
}

/// Parks a pending exchange that no node is delivering.
pub(super) fn park(
    c: &Connection,
    head: &mut Head,
    id: Uuid,
    now: OffsetDateTime,
    audit: AuditEvent,
) -> Result<()> {
    let (status, force, kind) = status_of(c, id)?;
    let changed = c
        .prepare_cached(
            "UPDATE exchanges SET status = 'parked', next_attempt_ms = NULL, updated_ms = ?2,
                 lease_owner = NULL, lease_until_ms = NULL
             WHERE id = ?1 AND status = 'pending'
               AND (lease_until_ms IS NULL OR lease_until_ms < ?2)",
        )?
        .execute(params![id.to_string(), millis(now)])?;
    if changed != 1 {
        return Err(JournalError::Conflict(if status == "pending" {
            format!("exchange {id} is being delivered right now; park it when the attempt ends")
        } else {
            format!("exchange {id} is {status}; only pending exchanges can be parked")
        }));
    }
    bump(c, &force, &kind, "pending", -1)?;
    bump(c, &force, &kind, "parked", 1)?;
    append_audit(c, head, &ops::exchange_event(audit, id, &force))?;
    Ok(())
}

/// Puts a parked exchange back to pending.
pub(super) fn unpark(
    c: &Connection,
    head: &mut Head,
    id: Uuid,
    now: OffsetDateTime,
    audit: AuditEvent,
) -> Result<()> {
    let (status, force, kind) = status_of(c, id)?;
    if status != "parked" {
        return Err(JournalError::Conflict(format!(
            "exchange {id} is {status}; only parked exchanges can be unparked"
        )));
    }
    if let Some((child, st)) = live_child(c, id)? {
        return Err(ops::live_child(id, &child, &st));
    }
    c.prepare_cached(
        "UPDATE exchanges SET status = 'pending', next_attempt_ms = ?2, updated_ms = ?2,
             lease_owner = NULL, lease_until_ms = NULL
         WHERE id = ?1",
    )?
    .execute(params![id.to_string(), millis(now)])?;
    bump(c, &force, &kind, "parked", -1)?;
    bump(c, &force, &kind, "pending", 1)?;
    append_audit(c, head, &ops::exchange_event(audit, id, &force))?;
    Ok(())
}

fn job_event(mut audit: AuditEvent, id: Uuid, detail: serde_json::Value) -> AuditEvent {
    audit.object_type = Some("replay_job".into());
    audit.object_id = Some(id.to_string());
    audit.detail = Some(detail);
    audit
}

/// Creates a bulk replay job.
pub(super) fn create_job(
    c: &Connection,
    head: &mut Head,
    job: &NewReplayJob,
    audit: AuditEvent,
) -> Result<ReplayJob> {
    let now = OffsetDateTime::now_utc();
    let id = Uuid::now_v7();
    // The job covers what was journalled before the millisecond it is created in: times are
    // kept in milliseconds, and an exchange accepted just after the job, in the same
    // millisecond, must not be part of it (nor counted in `planned`).
    let until = now - time::Duration::milliseconds(1);
    let mut covered = job.filter.clone();
    covered.to = Some(match covered.to {
        Some(t) if t < until => t,
        _ => until,
    });
    let planned = read::count(c, &covered)?;
    let filter = serde_json::to_string(&job.filter)
        .map_err(|e| JournalError::Invalid(format!("filter: {e}")))?;
    let options = serde_json::to_string(&job.options)
        .map_err(|e| JournalError::Invalid(format!("options: {e}")))?;
    c.prepare_cached(
        "INSERT INTO replay_jobs (id, filter, options, state, until_ms, planned, created_by,
             created_at, updated_at)
         VALUES (?1, ?2, ?3, 'running', ?4, ?5, ?6, ?7, ?7)",
    )?
    .execute(params![
        id.to_string(),
        filter,
        options,
        millis(until),
        planned as i64,
        job.created_by,
        rfc3339(now),
    ])?;
    append_audit(
        c,
        head,
        &job_event(
            audit,
            id,
            serde_json::json!({ "filter": job.filter, "options": job.options, "planned": planned }),
        ),
    )?;
    read::replay_job(c, id)?.ok_or_else(|| JournalError::NotFound(id.to_string()))
}

/// Continues a running job by up to `limit` exchanges.
pub(super) fn run_job(
    c: &Connection,
    head: &mut Head,
    id: Uuid,
    limit: usize,
    audit: &AuditEvent,
) -> Result<ReplayStep> {
    let job = read::replay_job(c, id)?.ok_or_else(|| JournalError::NotFound(id.to_string()))?;
    if job.state != ReplayJobState::Running {
        return Err(JournalError::Conflict(format!(
            "replay job {id} is {}",
            job.state.as_str()
        )));
    }
    let (cursor_ms, cursor_seq, paced_ms): (Option<i64>, Option<i64>, Option<i64>) = c.query_row(
        "SELECT cursor_ms, cursor_seq, paced_ms FROM replay_jobs WHERE id = ?1",
        params![id.to_string()],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    // A rate-limited job takes what its pace allows now (one writer: steps take turns).
    let pace = ops::Pace::at(
        job.options.rate_per_sec,
        paced_ms,
        millis(OffsetDateTime::now_utc()),
    );
    let Some(limit) = ops::Pace::limit(pace, limit) else {
        return Ok(ReplayStep {
            children: Vec::new(),
            skipped: 0,
            job,
        });
    };
    let d = sql::Dialect::Sqlite;
    let mut w = sql::filter(d, &job.filter, "");
    w.push(d, "created_ms <= {}", sql::Param::Int(millis(job.until)));
    if let (Some(ms), Some(seq)) = (cursor_ms, cursor_seq) {
        w.params.push(sql::Param::Int(ms));
        w.params.push(sql::Param::Int(seq));
        let n = w.params.len();
        w.raw(&format!("(created_ms, seq) > (?{}, ?{n})", n - 1));
    }
    let q = format!(
        "SELECT {PARENT_COLUMNS} FROM exchanges {} ORDER BY created_ms, seq LIMIT {}",
        w.sql(),
        limit.max(1)
    );
    let rows: Vec<Parent> = {
        let mut stmt = c.prepare_cached(&q)?;
        let it = stmt.query_map(
            params_from_iter(w.params.iter().map(super::read::bind)),
            Parent::of,
        )?;
        it.collect::<std::result::Result<_, _>>()?
    };
    // Set-based, as on PostgreSQL: one query finds which parked parents already have a live
    // replay; then per child only its job item, its row and its audit record are written. The
    // rows were read in this transaction on the only writer, so their status is current.
    let parked: Vec<&str> = rows
        .iter()
        .filter(|r| r.status == "parked")
        .map(|r| r.id.as_str())
        .collect();
    let live: std::collections::HashSet<String> = if parked.is_empty() {
        Default::default()
    } else {
        let ids =
            serde_json::to_string(&parked).map_err(|e| JournalError::Invalid(e.to_string()))?;
        let mut stmt = c.prepare_cached(
            "SELECT DISTINCT parent_id FROM exchanges
             WHERE parent_id IN (SELECT value FROM json_each(?1)) AND status != 'parked'",
        )?;
        let it = stmt.query_map(params![ids], |r| r.get::<_, String>(0))?;
        it.collect::<std::result::Result<_, _>>()?
    };
    let job_id = id.to_string();
    let mut children = Vec::new();
    let mut skipped = 0u64;
    let mut counts: std::collections::BTreeMap<(&str, &str), i64> = Default::default();
    for row in &rows {
        let parent_s = &row.id;
        if row.status != "parked" || live.contains(parent_s) {
            skipped += 1;
            continue;
        }
        let parent = parse_uuid(parent_s)?;
        let child = Uuid::now_v7();
        let child_s = child.to_string();
        // A parent is replayed once per job, however often the job is stopped and resumed.
        let claimed = c
            .prepare_cached(
                "INSERT INTO replay_job_items (job_id, parent_id, child_id) VALUES (?1, ?2, ?3)
                 ON CONFLICT DO NOTHING",
            )?
            .execute(params![job_id, parent_s, child_s])?;
        if claimed != 1 {
            skipped += 1;
            continue;
        }
        insert_child(c, row, &child_s, &job.options, Some(&job_id))?;
        *counts
            .entry((row.force.as_str(), row.kind.as_str()))
            .or_default() += 1;
        append_audit(
            c,
            head,
            &ops::replay_event(
                audit.clone(),
                parent,
                child,
                &row.force,
                &job.options,
                Some(id),
            ),
        )?;
        children.push((parent, child));
    }
    for ((force, kind), n) in counts {
        bump(c, force, kind, "pending", n)?;
    }
    let done = rows.len() < limit.max(1);
    let last = rows.last().map(|r| (r.created_ms, r.seq));
    c.prepare_cached(
        "UPDATE replay_jobs SET replayed = replayed + ?2, skipped = skipped + ?3,
             cursor_ms = coalesce(?4, cursor_ms), cursor_seq = coalesce(?5, cursor_seq),
             state = CASE WHEN ?6 THEN 'completed' ELSE state END, updated_at = ?7,
             paced_ms = coalesce(?8, paced_ms)
         WHERE id = ?1",
    )?
    .execute(params![
        id.to_string(),
        children.len() as i64,
        skipped as i64,
        last.map(|l| l.0),
        last.map(|l| l.1),
        done,
        rfc3339(OffsetDateTime::now_utc()),
        pace.map(|p| p.after(children.len())),
    ])?;
    let job = read::replay_job(c, id)?.ok_or_else(|| JournalError::NotFound(id.to_string()))?;
    Ok(ReplayStep {
        children,
        skipped,
        job,
    })
}

/// Cancels or resumes a job.
pub(super) fn set_job_cancelled(
    c: &Connection,
    head: &mut Head,
    id: Uuid,
    cancel: bool,
    audit: AuditEvent,
) -> Result<ReplayJob> {
    let job = read::replay_job(c, id)?.ok_or_else(|| JournalError::NotFound(id.to_string()))?;
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
    c.execute(
        "UPDATE replay_jobs SET state = ?2, updated_at = ?3 WHERE id = ?1",
        params![
            id.to_string(),
            to.as_str(),
            rfc3339(OffsetDateTime::now_utc())
        ],
    )?;
    append_audit(
        c,
        head,
        &job_event(
            audit,
            id,
            serde_json::json!({ "state": to.as_str(), "replayed": job.replayed }),
        ),
    )?;
    read::replay_job(c, id)?.ok_or_else(|| JournalError::NotFound(id.to_string()))
}

/// Places a legal hold.
pub(super) fn place_hold(
    c: &Connection,
    head: &mut Head,
    target: &HoldTarget,
    reason: &str,
    mut audit: AuditEvent,
) -> Result<LegalHold> {
    let now = OffsetDateTime::now_utc();
    let id = Uuid::now_v7();
    let (root, force, case) = match target {
        HoldTarget::Exchange { id: ex } => {
            let root: String = c
                .prepare_cached("SELECT root_id FROM exchanges WHERE id = ?1")?
                .query_row(params![ex.to_string()], |r| r.get(0))
                .optional()?
                .ok_or_else(|| JournalError::NotFound(ex.to_string()))?;
            (Some(root), None, None)
        }
        HoldTarget::Case { force, case_ref } => (None, Some(force.clone()), Some(case_ref.clone())),
    };
    c.prepare_cached(
        "INSERT INTO legal_holds (id, root_id, force, case_ref, reason, placed_by, placed_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        id.to_string(),
        root,
        force,
        case,
        reason,
        audit.actor,
        rfc3339(now)
    ])?;
    audit.action = "hold.place".into();
    audit.object_type = Some("legal_hold".into());
    audit.object_id = Some(id.to_string());
    audit.detail = Some(serde_json::json!({ "target": target, "reason": reason }));
    append_audit(c, head, &audit)?;
    Ok(LegalHold {
        id,
        target: target.clone(),
        reason: reason.to_owned(),
        placed_by: audit.actor,
        placed_at: now,
    })
}

/// Releases a legal hold.
pub(super) fn release_hold(
    c: &Connection,
    head: &mut Head,
    id: Uuid,
    mut audit: AuditEvent,
) -> Result<()> {
    let changed = c.execute(
        "UPDATE legal_holds SET released_at = ?2, released_by = ?3
         WHERE id = ?1 AND released_at IS NULL",
        params![
            id.to_string(),
            rfc3339(OffsetDateTime::now_utc()),
            audit.actor
        ],
    )?;
    if changed != 1 {
        return Err(JournalError::NotFound(format!("legal hold {id}")));
    }
    audit.action = "hold.release".into();
    audit.object_type = Some("legal_hold".into());
    audit.object_id = Some(id.to_string());
    append_audit(c, head, &audit)?;
    Ok(())
}

/// Which part of an exchange a retention step deletes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Purge {
    /// Original, canonical and target payloads.
    Payloads,
    /// The whole exchange and its attempts.
    Metadata,
}

const HELD: &str = "NOT EXISTS (SELECT 1 FROM legal_holds h WHERE h.released_at IS NULL
      AND (h.root_id = e.root_id OR (h.force = e.force AND h.case_ref = e.case_ref)))";

/// Deletes one chunk for one policy; returns (exchanges, attempts) deleted.
pub(super) fn retention_chunk(
    c: &Connection,
    head: &mut Head,
    policy: &RetentionPolicy,
    explicit_kinds: &[String],
    purge: Purge,
    now: OffsetDateTime,
    audit: &AuditEvent,
) -> Result<(u64, u64)> {
    let age = match purge {
        Purge::Payloads => policy.payloads,
        Purge::Metadata => policy.metadata,
    };
    let Some(age) = age else { return Ok((0, 0)) };
    let cutoff = millis(now) - age.as_millis() as i64;
    let mut params: Vec<rusqlite::types::Value> = vec![policy.force.clone().into(), cutoff.into()];
    let kind_cond = match &policy.kind {
        Some(k) => {
            params.push(k.clone().into());
            "e.kind = ?3".to_owned()
        }
        None if explicit_kinds.is_empty() => "1".to_owned(),
        None => {
            let start = params.len() + 1;
            let marks: Vec<String> = (0..explicit_kinds.len())
                .map(|i| format!("?{}", start + i))
                .collect();
            params.extend(explicit_kinds.iter().map(|k| k.clone().into()));
            format!("e.kind NOT IN ({})", marks.join(", "))
        }
    };
    let base = format!(
        "e.force = ?1 AND {kind_cond} AND e.created_ms < ?2 AND e.status != 'pending' AND {HELD}"
    );
    let chunk = ops::RETENTION_CHUNK;
    match purge {
        Purge::Payloads => {
            let seqs: Vec<i64> = {
                let mut stmt = c.prepare(&format!(
                    "SELECT seq FROM exchanges e
                     WHERE {base} AND e.payloads_deleted_ms IS NULL LIMIT {chunk}"
                ))?;
                let it = stmt.query_map(rusqlite::params_from_iter(params.iter()), |r| r.get(0))?;
                it.collect::<std::result::Result<_, _>>()?
            };
            if seqs.is_empty() {
                return Ok((0, 0));
            }
            let seqs =
                serde_json::to_string(&seqs).map_err(|e| JournalError::Invalid(e.to_string()))?;
            // Replays that share these payloads and keep theirs get their own copy first.
            c.prepare_cached(
                "UPDATE exchanges
                 SET payload = (SELECT p.payload FROM exchanges p WHERE p.seq = exchanges.payload_seq),
                     response = (SELECT p.response FROM exchanges p
                                 WHERE p.seq = exchanges.payload_seq),
                     payload_seq = NULL
                 WHERE payload_seq IN (SELECT value FROM json_each(?1))
                   AND seq NOT IN (SELECT value FROM json_each(?1))",
            )?
            .execute(params![seqs])?;
            let n = c
                .prepare_cached(
                    "UPDATE exchanges SET payload = x'', payload_seq = NULL, canonical = NULL,
                         target_payload = NULL, payloads_deleted_ms = ?2
                     WHERE seq IN (SELECT value FROM json_each(?1))",
                )?
                .execute(params![seqs, millis(now)])? as u64;
            if n > 0 {
                append_audit(
                    c,
                    head,
                    &ops::retention_event(audit, policy, "payloads", n, 0, None),
                )?;
            }
            Ok((n, 0))
        }
        Purge::Metadata => {
            // A family (an exchange and its replays) goes together, once its newest member is
            // old enough and none of it is pending; newest first, so children go before parents.
            let q = format!(
                "SELECT e.id, e.kind, e.status FROM exchanges e
                 WHERE {base}
                   AND NOT EXISTS (SELECT 1 FROM exchanges m WHERE m.parent_id IS NOT NULL
                         AND m.root_id = e.root_id AND (m.created_ms >= ?2 OR m.status = 'pending'))
                   AND (e.parent_id IS NULL OR NOT EXISTS (SELECT 1 FROM exchanges r
                         WHERE r.id = e.root_id AND r.status = 'pending'))
                 ORDER BY e.created_ms DESC, e.seq DESC LIMIT {chunk}"
            );
            let rows: Vec<(String, String, String)> = {
                let mut stmt = c.prepare(&q)?;
                let it = stmt.query_map(rusqlite::params_from_iter(params.iter()), |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })?;
                it.collect::<std::result::Result<_, _>>()?
            };
            if rows.is_empty() {
                return Ok((0, 0));
            }
            let mut attempts = 0u64;
            let mut counts: std::collections::BTreeMap<(String, String), i64> =
                std::collections::BTreeMap::new();
            {
                let mut del_att =
                    c.prepare_cached("DELETE FROM attempts WHERE exchange_id = ?1")?;
                let mut del_ex = c.prepare_cached("DELETE FROM exchanges WHERE id = ?1")?;
                for (id, kind, status) in &rows {
                    attempts += del_att.execute(params![id])? as u64;
                    del_ex.execute(params![id])?;
                    *counts.entry((kind.clone(), status.clone())).or_default() += 1;
                }
            }
            for ((kind, status), n) in counts {
                bump(c, &policy.force, &kind, &status, -n)?;
            }
            let n = rows.len() as u64;
            append_audit(
                c,
                head,
                &ops::retention_event(audit, policy, "exchanges", n, attempts, None),
            )?;
            Ok((n, attempts))
        }
    }
}

/// Frees up to `pages` unused pages back to the file system.
pub(super) fn incremental_vacuum(c: &Connection, pages: u32) -> Result<u64> {
    let before: i64 = c.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
    // The pragma frees one page per step: step it to the end.
    let mut stmt = c.prepare(&format!("PRAGMA incremental_vacuum({pages})"))?;
    let mut rows = stmt.query([])?;
    while rows.next()?.is_some() {}
    drop(rows);
    let after: i64 = c.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
    Ok((before - after).max(0) as u64)
}

/// For the read side: the filter of a job as stored.
pub(super) fn parse_filter(s: &str) -> Result<ExchangeFilter> {
    serde_json::from_str(s).map_err(|e| JournalError::Corrupt(format!("bad job filter: {e}")))
}
