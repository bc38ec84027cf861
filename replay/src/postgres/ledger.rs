//! The audit ledger on PostgreSQL: frontier catch-up at open, checkpoints, sink cursors, and the
//! audit-log query. The frontier lives on the `audit_head` row and moves under its row lock.

use super::pg;
use super::read::{audit_records, audit_row};
use super::write::{append_audit, rfc3339};
use crate::ledger_db::{
    AuditQuery, LedgerHead, NewCheckpoint, SinkCursor, SinkQuarantine, StoredCheckpoint,
    check_checkpoint, checkpoint_event, frontier_from, in_window, leaf_of, second_prefix,
};
use crate::{AuditEvent, AuditRecord, JournalError, Page, Result};
use time::OffsetDateTime;
use tokio_postgres::GenericClient;
use tokio_postgres::types::ToSql;

/// Brings the frontier up to the newest audit record (rows written before migration 20),
/// filling their leaf hashes, under the head row lock.
pub(super) async fn catch_up(client: &mut tokio_postgres::Client) -> Result<()> {
    let tx = client.transaction().await.map_err(pg)?;
    let row = tx
        .query_one(
            "SELECT seq, frontier FROM audit_head WHERE id = 1 FOR UPDATE",
            &[],
        )
        .await
        .map_err(pg)?;
    let seq = row.get::<_, i64>(0) as u64;
    let mut frontier = frontier_from(row.get::<_, &[u8]>(1))?;
    if frontier.size() == seq {
        return Ok(());
    }
    let start = frontier.size();
    while frontier.size() < seq {
        let page = audit_records(&tx, frontier.size() + 1, 5_000).await?;
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
            tx.execute(
                "UPDATE audit SET leaf_hash = $1 WHERE seq = $2 AND leaf_hash IS NULL",
                &[&hex::encode(leaf), &(rec.seq as i64)],
            )
            .await
            .map_err(pg)?;
            frontier.push(leaf);
        }
    }
    tx.execute(
        "UPDATE audit_head SET frontier = $1 WHERE id = 1",
        &[&frontier.to_bytes()],
    )
    .await
    .map_err(pg)?;
    tx.commit().await.map_err(pg)?;
    tracing::info!(
        from = start,
        to = frontier.size(),
        "audit ledger frontier brought up to date"
    );
    Ok(())
}

pub(super) async fn head(c: &impl GenericClient) -> Result<LedgerHead> {
    let row = c
        .query_one("SELECT frontier FROM audit_head WHERE id = 1", &[])
        .await
        .map_err(pg)?;
    Ok(LedgerHead {
        frontier: frontier_from(row.get::<_, &[u8]>(0))?,
    })
}

pub(super) async fn add_checkpoint(
    client: &mut tokio_postgres::Client,
    cp: &NewCheckpoint,
    audit: AuditEvent,
) -> Result<u64> {
    let tx = client.transaction().await.map_err(pg)?;
    let row = tx
        .query_one(
            "SELECT frontier FROM audit_head WHERE id = 1 FOR UPDATE",
            &[],
        )
        .await
        .map_err(pg)?;
    let frontier = frontier_from(row.get::<_, &[u8]>(0))?;
    let newest = tx
        .query_one("SELECT coalesce(max(size), 0) FROM ledger_checkpoints", &[])
        .await
        .map_err(pg)?
        .get::<_, i64>(0) as u64;
    check_checkpoint(cp, frontier.size(), newest)?;
    if cp.size == frontier.size() && cp.root != frontier.root() {
        return Err(JournalError::Invalid(format!(
            "checkpoint size {}: root is not the ledger's root at that size",
            cp.size
        )));
    }
    let event = checkpoint_event(cp, audit);
    let created = rfc3339(event.time);
    let seq = append_audit(&tx, std::slice::from_ref(&event))
        .await?
        .first()
        .copied()
        .ok_or_else(|| JournalError::Unavailable("checkpoint record not appended".into()))?;
    tx.execute(
        "INSERT INTO ledger_checkpoints (size, root, note, created_at, audit_seq)
         VALUES ($1, $2, $3, $4, $5)",
        &[
            &(cp.size as i64),
            &hex::encode(cp.root),
            &cp.note,
            &created,
            &(seq as i64),
        ],
    )
    .await
    .map_err(pg)?;
    tx.commit().await.map_err(pg)?;
    Ok(seq)
}

pub(super) async fn checkpoints(c: &impl GenericClient) -> Result<Vec<StoredCheckpoint>> {
    let rows = c
        .query(
            "SELECT size, root, note, created_at, audit_seq FROM ledger_checkpoints ORDER BY size",
            &[],
        )
        .await
        .map_err(pg)?;
    Ok(rows
        .iter()
        .map(|r| StoredCheckpoint {
            size: r.get::<_, i64>(0) as u64,
            root: r.get(1),
            note: r.get(2),
            created_at: r.get(3),
            audit_seq: r.get::<_, i64>(4) as u64,
        })
        .collect())
}

pub(super) async fn search_audit(
    c: &impl GenericClient,
    q: &AuditQuery,
    before: Option<u64>,
    limit: usize,
) -> Result<Page<AuditRecord>> {
    let mut sql = String::from(
        "SELECT seq, time, actor, role, force, action, object_type, object_id, result, source_ip,
                user_agent, correlation_id, event_uid, detail, prev_hash, hash
         FROM audit WHERE true",
    );
    let mut ints: Vec<i64> = Vec::new();
    let mut texts: Vec<String> = Vec::new();
    // Placeholders are numbered in the order the clauses are written; collect (kind, index).
    let mut order: Vec<(bool, usize)> = Vec::new();
    let mut n = 0;
    let mut clause = |sql: &mut String, text: &str, is_int: bool, idx: usize| {
        n += 1;
        sql.push_str(&format!(" AND {text} ${n}"));
        order.push((is_int, idx));
    };
    if let Some(b) = before {
        ints.push(b as i64);
        clause(&mut sql, "seq <", true, ints.len() - 1);
    }
    if let Some(f) = q.from {
        texts.push(second_prefix(f));
        clause(&mut sql, "time >=", false, texts.len() - 1);
    }
    if let Some(t) = q.to {
        texts.push(second_prefix(t + time::Duration::seconds(1)));
        clause(&mut sql, "time <", false, texts.len() - 1);
    }
    for (col, v) in [
        ("correlation_id =", &q.correlation_id),
        ("actor =", &q.actor),
        ("force =", &q.force),
        ("result =", &q.result),
        ("action =", &q.action),
    ] {
        if let Some(v) = v {
            texts.push(v.clone());
            clause(&mut sql, col, false, texts.len() - 1);
        }
    }
    let limit = limit.max(1);
    ints.push(limit as i64);
    n += 1;
    sql.push_str(&format!(" ORDER BY seq DESC LIMIT ${n}"));
    order.push((true, ints.len() - 1));
    let params: Vec<&(dyn ToSql + Sync)> = order
        .iter()
        .map(|&(is_int, i)| {
            if is_int {
                &ints[i] as &(dyn ToSql + Sync)
            } else {
                &texts[i] as &(dyn ToSql + Sync)
            }
        })
        .collect();
    let rows = c.query(&sql, &params).await.map_err(pg)?;
    let (mut items, mut last) = (Vec::new(), None);
    for r in &rows {
        let rec = audit_row(r)?;
        last = Some(rec.seq);
        if in_window(q, &rec) {
            items.push(rec);
        }
    }
    Ok(Page {
        items,
        next: if rows.len() == limit {
            last.map(|s| s as i64)
        } else {
            None
        },
    })
}

pub(super) async fn sink_cursor(c: &impl GenericClient, sink: &str) -> Result<Option<SinkCursor>> {
    let row = c
        .query_opt(
            "SELECT delivered_through, channel FROM audit_sink_cursors WHERE sink = $1",
            &[&sink],
        )
        .await
        .map_err(pg)?;
    Ok(row.map(|r| SinkCursor {
        sink: sink.to_owned(),
        delivered_through: r.get::<_, i64>(0) as u64,
        channel: r.get(1),
    }))
}

pub(super) async fn set_sink_cursor(
    c: &impl GenericClient,
    sink: &str,
    through: u64,
    channel: Option<&str>,
) -> Result<()> {
    c.execute(
        "INSERT INTO audit_sink_cursors (sink, delivered_through, channel, updated_at)
         VALUES ($1, $2, $3, $4)
         ON CONFLICT (sink) DO UPDATE SET
             delivered_through = greatest(audit_sink_cursors.delivered_through,
                                          excluded.delivered_through),
             channel = coalesce(excluded.channel, audit_sink_cursors.channel),
             updated_at = excluded.updated_at",
        &[
            &sink,
            &(through as i64),
            &channel,
            &rfc3339(OffsetDateTime::now_utc()),
        ],
    )
    .await
    .map_err(pg)?;
    Ok(())
}

pub(super) async fn quarantine(
    c: &impl GenericClient,
    sink: &str,
    q: &SinkQuarantine,
) -> Result<()> {
    c.execute(
        "INSERT INTO audit_sink_quarantine
             (sink, seq, event_uid, kind, class, status, reason, quarantined_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (sink, seq) DO NOTHING",
        &[
            &sink,
            &(q.seq as i64),
            &q.event_uid,
            &q.kind,
            &q.class,
            &q.status.map(i32::from),
            &q.reason,
            &rfc3339(OffsetDateTime::now_utc()),
        ],
    )
    .await
    .map_err(pg)?;
    Ok(())
}

pub(super) async fn quarantined(c: &impl GenericClient, sink: &str) -> Result<Vec<SinkQuarantine>> {
    let rows = c
        .query(
            "SELECT seq, event_uid, kind, class, status, reason FROM audit_sink_quarantine
             WHERE sink = $1 ORDER BY seq",
            &[&sink],
        )
        .await
        .map_err(pg)?;
    Ok(rows
        .iter()
        .map(|r| SinkQuarantine {
            seq: r.get::<_, i64>(0) as u64,
            event_uid: r.get(1),
            kind: r.get(2),
            class: r.get(3),
            status: r.get::<_, Option<i32>>(4).map(|s| s as u16),
            reason: r.get(5),
        })
        .collect())
}
