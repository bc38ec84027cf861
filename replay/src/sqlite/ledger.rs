//! The audit ledger on SQLite: frontier catch-up at open, checkpoints, sink cursors, and the
//! audit-log query.

use super::read::{audit_records, audit_row};
use super::write::{Head, append_audit, load_frontier, rfc3339, save_frontier};
use crate::ledger_db::{
    AuditQuery, NewCheckpoint, SinkCursor, SinkQuarantine, StoredCheckpoint, check_checkpoint,
    checkpoint_event, in_window, leaf_of, second_prefix,
};
use crate::{AuditEvent, AuditRecord, JournalError, Page, Result};
use rusqlite::{Connection, OptionalExtension, params, params_from_iter, types::Value};
use time::OffsetDateTime;

/// Brings the Merkle frontier up to the newest audit record (rows written before migration 20,
/// or by an older binary), filling their leaf hashes. Runs at open, before the writer starts.
pub(super) fn catch_up(c: &mut Connection) -> Result<()> {
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
                user_agent, correlation_id, event_uid, detail, prev_hash, hash
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
