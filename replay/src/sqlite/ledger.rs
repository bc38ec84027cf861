//! The audit ledger on SQLite: frontier catch-up at open, checkpoints, sink cursors, and the
//! audit-log query.

use super::read::{audit_records, audit_row};
use super::write::{Head, append_audit, load_frontier, rfc3339, save_frontier};
use crate::ledger_db::{
    AuditPrunePlan, AuditQuery, AuditRetentionPolicy, NewCheckpoint, SinkCursor, SinkQuarantine,
    StoredCheckpoint, check_checkpoint, checkpoint_event, deletion_detail, in_window, leaf_of,
    second_prefix,
};
use crate::{AuditEvent, AuditRecord, JournalError, Page, Result};
use rusqlite::{Connection, OptionalExtension, params, params_from_iter, types::Value};
use time::OffsetDateTime;

/// Brings the Merkle frontier up to the newest audit record (rows written before migration 20,
/// or by an older binary), filling their leaf hashes. Runs at open, before the writer starts.
pub(super) fn catch_up(c: &mut Connection) -> Result<()> {
    // Up to date (the usual case: the writer extends the frontier as it appends) needs no
    // write lock, which a busy server would make a CLI command wait for.
    let newest: i64 = c.query_row("SELECT coalesce(max(seq), 0) FROM audit", [], |r| r.get(0))?;
    if load_frontier(c)?.size() == newest as u64 {
        return Ok(());
    }
    let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut frontier = load_frontier(&tx)?;
    let start = frontier.size();
    loop {
        let page = audit_records(&tx, frontier.size() + 1, 5_000)?;
        if page.is_empty() {
            break;
        }
        for rec in &page {
            if rec.seq != frontier.size() + 1 {
                return Err(JournalError::Corrupt(format!(
                    "audit record {} is missing: the ledger cannot be extended past it",
                    frontier.size() + 1
                )));
            }
            let leaf = leaf_of(rec.seq, &rec.event)?;
            tx.prepare_cached("UPDATE audit SET leaf_hash = ?1 WHERE seq = ?2")?
                .execute(params![hex::encode(leaf), rec.seq as i64])?;
            frontier.push(leaf);
        }
    }
    if frontier.size() != start {
        save_frontier(&tx, &frontier)?;
        tracing::info!(
            from = start,
            to = frontier.size(),
            "audit ledger frontier brought up to date"
        );
    }
    tx.commit()?;
    Ok(())
}

fn newest_checkpoint(c: &Connection) -> Result<u64> {
    Ok(c.query_row(
        "SELECT coalesce(max(size), 0) FROM ledger_checkpoints",
        [],
        |r| r.get::<_, i64>(0),
    )? as u64)
}

/// Stores a checkpoint and its announcing audit record (writer thread, in a savepoint).
pub(super) fn add_checkpoint(
    c: &Connection,
    head: &mut Head,
    cp: &NewCheckpoint,
    audit: AuditEvent,
) -> Result<u64> {
    check_checkpoint(cp, head.frontier.size(), newest_checkpoint(c)?)?;
    if cp.size == head.frontier.size() && cp.root != head.frontier.root() {
        return Err(JournalError::Invalid(format!(
            "checkpoint size {}: root is not the ledger's root at that size",
            cp.size
        )));
    }
    let event = checkpoint_event(cp, audit);
    let created = rfc3339(event.time);
    let seq = append_audit(c, head, &event)?;
    c.execute(
        "INSERT INTO ledger_checkpoints (size, root, note, created_at, audit_seq)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            cp.size as i64,
            hex::encode(cp.root),
            cp.note,
            created,
            seq as i64
        ],
    )?;
    Ok(seq)
}

pub(super) fn checkpoints(c: &Connection) -> Result<Vec<StoredCheckpoint>> {
    let mut stmt = c.prepare_cached(
        "SELECT size, root, note, created_at, audit_seq FROM ledger_checkpoints ORDER BY size",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(StoredCheckpoint {
            size: r.get::<_, i64>(0)? as u64,
            root: r.get(1)?,
            note: r.get(2)?,
            created_at: r.get(3)?,
            audit_seq: r.get::<_, i64>(4)? as u64,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

pub(super) fn search_audit(
    c: &Connection,
    q: &AuditQuery,
    before: Option<u64>,
    limit: usize,
) -> Result<Page<AuditRecord>> {
    let mut sql = String::from(
        "SELECT seq, time, actor, role, force, action, object_type, object_id, result, source_ip,
                user_agent, correlation_id, event_uid, detail, prev_hash, hash,
                leaf_hash, pruned_by
         FROM audit WHERE 1 = 1",
    );
    let mut args: Vec<Value> = Vec::new();
    let mut add = |clause: &str, v: Value| {
        args.push(v);
        sql.push_str(&format!(" AND {clause} ?{}", args.len()));
    };
    if let Some(b) = before {
        add("seq <", Value::Integer(b as i64));
    }
    if let Some(f) = q.from {
        add("time >=", Value::Text(second_prefix(f)));
    }
    if let Some(t) = q.to {
        add(
            "time <",
            Value::Text(second_prefix(t + time::Duration::seconds(1))),
        );
    }
    for (col, v) in [
        ("correlation_id =", &q.correlation_id),
        ("actor =", &q.actor),
        ("force =", &q.force),
        ("result =", &q.result),
        ("action =", &q.action),
    ] {
        if let Some(v) = v {
            add(col, Value::Text(v.clone()));
        }
    }
    let limit = limit.max(1);
    args.push(Value::Integer(limit as i64));
    sql.push_str(&format!(" ORDER BY seq DESC LIMIT ?{}", args.len()));
    let mut stmt = c.prepare(&sql)?;
    let mut rows = stmt.query(params_from_iter(args))?;
    let (mut items, mut scanned, mut last) = (Vec::new(), 0usize, None);
    while let Some(r) = rows.next()? {
        let rec = audit_row(r)?;
        scanned += 1;
        last = Some(rec.seq);
        if in_window(q, &rec) {
            items.push(rec);
        }
    }
    Ok(Page {
        items,
        next: if scanned == limit {
            last.map(|s| s as i64)
        } else {
            None
        },
    })
}

pub(super) fn sink_cursor(c: &Connection, sink: &str) -> Result<Option<SinkCursor>> {
    Ok(c.query_row(
        "SELECT delivered_through, channel FROM audit_sink_cursors WHERE sink = ?1",
        params![sink],
        |r| {
            Ok(SinkCursor {
                sink: sink.to_owned(),
                delivered_through: r.get::<_, i64>(0)? as u64,
                channel: r.get(1)?,
            })
        },
    )
    .optional()?)
}

pub(super) fn set_sink_cursor(
    c: &Connection,
    sink: &str,
    through: u64,
    channel: Option<&str>,
) -> Result<()> {
    c.execute(
        "INSERT INTO audit_sink_cursors (sink, delivered_through, channel, updated_at)
         VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (sink) DO UPDATE SET
             delivered_through = max(delivered_through, excluded.delivered_through),
             channel = coalesce(excluded.channel, channel),
             updated_at = excluded.updated_at",
        params![
            sink,
            through as i64,
            channel,
            rfc3339(OffsetDateTime::now_utc())
        ],
    )?;
    Ok(())
}

pub(super) fn quarantine(c: &Connection, sink: &str, q: &SinkQuarantine) -> Result<()> {
    c.execute(
        "INSERT INTO audit_sink_quarantine
             (sink, seq, event_uid, kind, class, status, reason, quarantined_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (sink, seq) DO NOTHING",
        params![
            sink,
            q.seq as i64,
            q.event_uid,
            q.kind,
            q.class,
            q.status.map(i64::from),
            q.reason,
            rfc3339(OffsetDateTime::now_utc())
        ],
    )?;
    Ok(())
}

pub(super) fn quarantined(c: &Connection, sink: &str) -> Result<Vec<SinkQuarantine>> {
    let mut stmt = c.prepare_cached(
        "SELECT seq, event_uid, kind, class, status, reason FROM audit_sink_quarantine
         WHERE sink = ?1 ORDER BY seq",
    )?;
    let rows = stmt.query_map(params![sink], |r| {
        Ok(SinkQuarantine {
            seq: r.get::<_, i64>(0)? as u64,
            event_uid: r.get(1)?,
            kind: r.get(2)?,
            class: r.get(3)?,
            status: r.get::<_, Option<i64>>(4)?.map(|s| s as u16),
            reason: r.get(5)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// Whether audit record `a` is about an exchange under a legal hold (held itself, or its case).
const AUDIT_HELD: &str = "EXISTS (SELECT 1 FROM exchanges e JOIN legal_holds h
      ON h.root_id = e.root_id OR (h.force = e.force AND h.case_ref = e.case_ref)
      WHERE e.id = a.object_id AND h.released_at IS NULL)";

/// The records no retention ever prunes, whatever their age.
const NEVER_PRUNED: &str = "a.action NOT IN ('ledger.checkpoint', 'audit.retention.deleted')";

pub(super) fn prune_plan(
    c: &Connection,
    policy: &AuditRetentionPolicy,
    now: OffsetDateTime,
    from: u64,
    through: u64,
    limit: usize,
) -> Result<AuditPrunePlan> {
    let cut = policy.cutoffs(now);
    let mut plan = AuditPrunePlan {
        before: cut.newest.clone(),
        ..AuditPrunePlan::default()
    };
    let Some(newest) = &cut.newest else {
        return Ok(plan);
    };
    // Nothing at or after the newest cutoff can be due: bound the scan by it (audit_time index).
    let last_due: Option<i64> = c.query_row(
        "SELECT max(seq) FROM audit WHERE time < ?1",
        params![newest],
        |r| r.get(0),
    )?;
    let through = through.min(last_due.map_or(0, |s| s as u64));
    if through < from.max(1) {
        return Ok(plan);
    }
    let mut args: Vec<Value> = vec![
        Value::Integer(from.max(1) as i64),
        Value::Integer(through as i64),
        cut.default.clone().map_or(Value::Null, Value::Text),
    ];
    let mut case = String::from("CASE a.force");
    for (force, cutoff) in &cut.forces {
        args.push(Value::Text(force.clone()));
        args.push(cutoff.clone().map_or(Value::Null, Value::Text));
        case.push_str(&format!(" WHEN ?{} THEN ?{}", args.len() - 1, args.len()));
    }
    // A CASE needs at least one WHEN: without per-force periods the default is the cutoff.
    if cut.forces.is_empty() {
        case = "?3".to_owned();
    } else {
        case.push_str(" ELSE ?3 END");
    }
    args.push(Value::Integer(limit.max(1) as i64));
    let sql = format!(
        "SELECT a.seq, {AUDIT_HELD} FROM audit a INDEXED BY audit_unpruned
         WHERE a.pruned_by IS NULL AND a.seq BETWEEN ?1 AND ?2 AND a.leaf_hash IS NOT NULL
           AND {NEVER_PRUNED} AND a.time < ({case})
         ORDER BY a.seq LIMIT ?{}",
        args.len()
    );
    let mut stmt = c.prepare(&sql)?;
    let mut rows = stmt.query(params_from_iter(args))?;
    let (mut due, mut scanned, mut last) = (Vec::new(), 0usize, 0u64);
    while let Some(r) = rows.next()? {
        let seq = r.get::<_, i64>(0)? as u64;
        scanned += 1;
        last = seq;
        if r.get::<_, bool>(1)? {
            plan.held += 1;
        } else {
            due.push(seq);
        }
    }
    plan.count = due.len() as u64;
    plan.ranges = crate::ledger::retention::to_ranges(due);
    plan.next = (scanned >= limit.max(1)).then_some(last);
    Ok(plan)
}

/// Prunes what deletion record `deletion` names (writer thread, in a savepoint).
pub(super) fn prune(c: &Connection, deletion: u64) -> Result<u64> {
    let row: Option<(String, Option<String>, Option<i64>)> = c
        .query_row(
            "SELECT action, detail, pruned_by FROM audit WHERE seq = ?1",
            params![deletion as i64],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    let Some((action, detail, pruned_by)) = row else {
        return Err(JournalError::NotFound(format!("audit record {deletion}")));
    };
    let detail: Option<serde_json::Value> = detail
        .map(|d| serde_json::from_str(&d))
        .transpose()
        .map_err(|e| JournalError::Corrupt(format!("bad audit detail: {e}")))?;
    let (ranges, before) = deletion_detail(
        deletion,
        &action,
        detail.as_ref(),
        pruned_by.is_some(),
        newest_checkpoint(c)?,
    )?;
    let mut stmt = c.prepare_cached(&format!(
        "UPDATE audit AS a SET actor = '', role = '', force = NULL, action = '', object_type = NULL,
                object_id = NULL, result = '', source_ip = NULL, user_agent = NULL,
                correlation_id = NULL, detail = NULL, pruned_by = ?1
         WHERE a.seq BETWEEN ?2 AND ?3 AND a.pruned_by IS NULL AND a.leaf_hash IS NOT NULL
           AND {NEVER_PRUNED} AND a.time < ?4 AND NOT {AUDIT_HELD}"
    ))?;
    let mut n = 0u64;
    for (lo, hi) in ranges {
        n += stmt.execute(params![deletion as i64, lo as i64, hi as i64, before])? as u64;
    }
    Ok(n)
}
