//! The audit ledger on PostgreSQL: frontier catch-up at open, checkpoints, sink cursors, and the
//! audit-log query. The frontier lives on the `audit_head` row and moves under its row lock.

use super::pg;
use super::read::{audit_records, audit_row};
use super::write::{append_audit, rfc3339};
use crate::ledger_db::{
    AuditPrunePlan, AuditQuery, AuditRetentionPolicy, LedgerHead, NewCheckpoint, SinkCursor,
    SinkQuarantine, StoredCheckpoint, check_checkpoint, checkpoint_event, deletion_detail,
    frontier_from, in_window, leaf_of, second_prefix,
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
                user_agent, correlation_id, event_uid, detail, prev_hash, hash,
                leaf_hash, pruned_by
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

/// Whether audit record `a` is about an exchange under a legal hold (held itself, or its case);
/// the same test as in `audit_prune()` (migration 0024).
const AUDIT_HELD: &str = "EXISTS (SELECT 1 FROM legal_holds h JOIN exchanges e
      ON h.root_id = e.root_id OR (h.force = e.force AND h.case_ref = e.case_ref)
      WHERE h.released_at IS NULL
        AND e.id = CASE WHEN a.object_id ~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
                        THEN a.object_id::uuid END)";

pub(super) async fn prune_plan(
    c: &impl GenericClient,
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
    let last_due: Option<i64> = c
        .query_one(
            "SELECT max(seq) FROM audit WHERE time < $1 COLLATE \"C\"",
            &[newest],
        )
        .await
        .map_err(pg)?
        .get(0);
    let through = through.min(last_due.map_or(0, |s| s as u64));
    let from = from.max(1);
    if through < from {
        return Ok(plan);
    }
    let (from_i, through_i, limit_i) = (from as i64, through as i64, limit.max(1) as i64);
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![&from_i, &through_i, &cut.default];
    let mut case = String::from("CASE a.force");
    for (force, cutoff) in &cut.forces {
        params.push(force);
        params.push(cutoff);
        case.push_str(&format!(
            " WHEN ${} THEN ${}",
            params.len() - 1,
            params.len()
        ));
    }
    // A CASE needs at least one WHEN: without per-force periods the default is the cutoff.
    if cut.forces.is_empty() {
        case = "$3::text".to_owned();
    } else {
        case.push_str(" ELSE $3::text END");
    }
    params.push(&limit_i);
    let sql = format!(
        "SELECT a.seq, {AUDIT_HELD} FROM audit a
         WHERE a.pruned_by IS NULL AND a.seq BETWEEN $1 AND $2 AND a.leaf_hash IS NOT NULL
           AND a.action NOT IN ('ledger.checkpoint', 'audit.retention.deleted')
           AND a.time < ({case}) COLLATE \"C\"
         ORDER BY a.seq LIMIT ${}",
        params.len()
    );
    let rows = c.query(&sql, &params).await.map_err(pg)?;
    let mut due = Vec::with_capacity(rows.len());
    for r in &rows {
        if r.get::<_, bool>(1) {
            plan.held += 1;
        } else {
            due.push(r.get::<_, i64>(0) as u64);
        }
    }
    plan.count = due.len() as u64;
    plan.ranges = crate::ledger::retention::to_ranges(due);
    plan.next = (rows.len() >= limit.max(1))
        .then(|| rows.last().map(|r| r.get::<_, i64>(0) as u64))
        .flatten();
    Ok(plan)
}

/// Prunes what deletion record `deletion` names, through the `audit_prune` SECURITY DEFINER
/// function (the only way past the append-only trigger). The deletion record is checked here
/// first for a clear error; the function checks it again.
pub(super) async fn prune(client: &mut tokio_postgres::Client, deletion: u64) -> Result<u64> {
    let tx = client.transaction().await.map_err(pg)?;
    let Some(row) = tx
        .query_opt(
            "SELECT action, detail, pruned_by,
                    (SELECT coalesce(max(size), 0) FROM ledger_checkpoints)
             FROM audit WHERE seq = $1",
            &[&(deletion as i64)],
        )
        .await
        .map_err(pg)?
    else {
        return Err(JournalError::NotFound(format!("audit record {deletion}")));
    };
    let detail: Option<serde_json::Value> = row
        .get::<_, Option<&str>>(1)
        .map(serde_json::from_str)
        .transpose()
        .map_err(|e| JournalError::Corrupt(format!("bad audit detail: {e}")))?;
    deletion_detail(
        deletion,
        row.get(0),
        detail.as_ref(),
        row.get::<_, Option<i64>>(2).is_some(),
        row.get::<_, i64>(3) as u64,
    )?;
    let n: i64 = tx
        .query_one("SELECT audit_prune($1)", &[&(deletion as i64)])
        .await
        .map_err(pg)?
        .get(0);
    tx.commit().await.map_err(pg)?;
    Ok(n as u64)
}
