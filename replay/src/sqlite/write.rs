//! The writer thread: group commit of queued operations.

use crate::{
    AcceptOutcome, Attempt, AuditEvent, JournalError, NewExchange, Prepared, Result, Transition,
    WorkItem,
    audit::{GENESIS, chain_hash},
};
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

/// One queued write. Each carries the channel its caller waits on.
pub(crate) enum Op {
    Accept {
        exchange: Box<NewExchange>,
        audit: Box<AuditEvent>,
        reply: oneshot::Sender<Result<AcceptOutcome>>,
    },
    Audit {
        event: Box<AuditEvent>,
        reply: oneshot::Sender<Result<u64>>,
    },
    Claim {
        owner: String,
        now: OffsetDateTime,
        lease: Duration,
        limit: usize,
        reply: oneshot::Sender<Result<Vec<WorkItem>>>,
    },
    Attempt {
        id: Uuid,
        attempt: Box<Attempt>,
        transition: Transition,
        prepared: Box<Prepared>,
        reply: oneshot::Sender<Result<()>>,
    },
    Replay {
        parent: Uuid,
        audit: Box<AuditEvent>,
        reply: oneshot::Sender<Result<Uuid>>,
    },
    Ping {
        reply: oneshot::Sender<Result<()>>,
    },
}

/// Formats a time as RFC 3339 UTC.
pub(crate) fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

pub(crate) fn millis(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

/// The head of the audit chain: last sequence and hash.
#[derive(Clone)]
struct Head {
    seq: u64,
    hash: String,
}

type Finish = Box<dyn FnOnce(Option<JournalError>) + Send>;

/// Runs until every sender is gone.
pub(crate) fn run(
    mut conn: Connection,
    mut rx: mpsc::Receiver<Op>,
    max_batch: usize,
    wal_reset: Option<Arc<AtomicBool>>,
) {
    let mut batch = Vec::with_capacity(256);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        apply_batch(&mut conn, &mut batch);
        if let Some(flag) = &wal_reset
            && flag.swap(false, Ordering::Relaxed)
        {
            // The checkpoint thread has copied nearly every frame; copying the last few here,
            // between batches, lets the next transaction restart the WAL from its beginning.
            if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                tracing::warn!(error = %e, "journal WAL restart checkpoint failed");
            }
        }
    }
    tracing::debug!("journal writer stopped");
}

fn apply_batch(conn: &mut Connection, batch: &mut Vec<Op>) {
    let size = batch.len();
    let tx = match conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(e) => {
            let err = JournalError::from(e);
            tracing::warn!(error = %err, size, "journal batch could not begin");
            for op in batch.drain(..) {
                fail(op, err.clone());
            }
            return;
        }
    };
    let mut head = match read_head(&tx) {
        Ok(h) => h,
        Err(err) => {
            drop(tx);
            for op in batch.drain(..) {
                fail(op, err.clone());
            }
            return;
        }
    };
    let mut finishes: Vec<Finish> = Vec::with_capacity(size);
    for op in batch.drain(..) {
        finishes.push(apply_op(&tx, &mut head, op));
    }
    match tx.commit() {
        Ok(()) => {
            for f in finishes {
                f(None);
            }
        }
        Err(e) => {
            let err = JournalError::from(e);
            tracing::warn!(error = %err, size, "journal batch commit failed; nothing acknowledged");
            for f in finishes {
                f(Some(err.clone()));
            }
        }
    }
}

fn fail(op: Op, err: JournalError) {
    match op {
        Op::Accept { reply, .. } => drop(reply.send(Err(err))),
        Op::Audit { reply, .. } => drop(reply.send(Err(err))),
        Op::Claim { reply, .. } => drop(reply.send(Err(err))),
        Op::Attempt { reply, .. } => drop(reply.send(Err(err))),
        Op::Replay { reply, .. } => drop(reply.send(Err(err))),
        Op::Ping { reply } => drop(reply.send(Err(err))),
    }
}

/// Runs `f` inside a savepoint; on error rolls back its writes and restores the audit head.
fn in_savepoint<T>(
    tx: &Transaction<'_>,
    head: &mut Head,
    f: impl FnOnce(&Connection, &mut Head) -> Result<T>,
) -> Result<T> {
    let saved = head.clone();
    tx.execute_batch("SAVEPOINT op")?;
    match f(tx, head) {
        Ok(v) => {
            tx.execute_batch("RELEASE op")?;
            Ok(v)
        }
        Err(e) => {
            *head = saved;
            // If even the rollback fails the whole transaction is suspect; the commit will tell.
            let _ = tx.execute_batch("ROLLBACK TO op; RELEASE op");
            Err(e)
        }
    }
}

/// Applies one op; returns how to answer its caller once the commit outcome is known.
fn apply_op(tx: &Transaction<'_>, head: &mut Head, op: Op) -> Finish {
    fn finish<T: Send + 'static>(reply: oneshot::Sender<Result<T>>, r: Result<T>) -> Finish {
        Box::new(move |commit_err| {
            let _ = reply.send(match commit_err {
                Some(e) => Err(e),
                None => r,
            });
        })
    }
    match op {
        Op::Accept {
            exchange,
            audit,
            reply,
        } => {
            let r = in_savepoint(tx, head, |c, h| accept(c, h, &exchange, *audit));
            finish(reply, r)
        }
        Op::Audit { event, reply } => {
            let r = in_savepoint(tx, head, |c, h| append_audit(c, h, &event));
            finish(reply, r)
        }
        Op::Claim {
            owner,
            now,
            lease,
            limit,
            reply,
        } => {
            let r = in_savepoint(tx, head, |c, _| claim(c, &owner, now, lease, limit));
            finish(reply, r)
        }
        Op::Attempt {
            id,
            attempt,
            transition,
            prepared,
            reply,
        } => {
            let r = in_savepoint(tx, head, |c, h| {
                record_attempt(c, h, id, &attempt, &transition, &prepared)
            });
            finish(reply, r)
        }
        Op::Replay {
            parent,
            audit,
            reply,
        } => {
            let r = in_savepoint(tx, head, |c, h| replay(c, h, parent, *audit));
            finish(reply, r)
        }
        Op::Ping { reply } => finish(reply, Ok(())),
    }
}

fn read_head(c: &Connection) -> Result<Head> {
    let row = c
        .query_row(
            "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)),
        )
        .optional()?;
    Ok(match row {
        Some((seq, hash)) => Head {
            seq: seq as u64,
            hash,
        },
        None => Head {
            seq: 0,
            hash: GENESIS.to_owned(),
        },
    })
}

fn append_audit(c: &Connection, head: &mut Head, event: &AuditEvent) -> Result<u64> {
    let seq = head.seq + 1;
    let hash = chain_hash(&head.hash, seq, event);
    let detail = event.detail.as_ref().map(|d| d.to_string());
    c.prepare_cached(
        "INSERT INTO audit (seq, time, actor, role, force, action, object_type, object_id, result,
                            source_ip, user_agent, correlation_id, event_uid, detail, prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
    )?
    .execute(params![
        seq as i64,
        rfc3339(event.time),
        event.actor,
        event.role,
        event.force,
        event.action,
        event.object_type,
        event.object_id,
        event.result,
        event.source_ip,
        event.user_agent,
        event.correlation_id,
        event.event_uid.to_string(),
        detail,
        head.hash,
        hash,
    ])?;
    head.seq = seq;
    head.hash = hash;
    Ok(seq)
}

fn dedupe_key(e: &NewExchange) -> String {
    format!("{}|{}|{}", e.force, e.kind, e.idempotency_key)
}

fn accept(
    c: &Connection,
    head: &mut Head,
    e: &NewExchange,
    mut audit: AuditEvent,
) -> Result<AcceptOutcome> {
    let now = OffsetDateTime::now_utc();
    let now_ms = millis(now);
    let dedupe = dedupe_key(e);
    let inserted = c
        .prepare_cached(
            "INSERT INTO exchanges (id, force, kind, direction, source_system, target_system,
                 api_version, model_version, idempotency_key, dedupe_key, correlation_id, case_ref,
                 status, attempts, next_attempt_ms, created_at, created_ms, updated_ms,
                 payload_type, payload, response)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, 'pending', 0, ?13, ?14,
                     ?13, ?13, ?15, ?16, ?17)
             ON CONFLICT (dedupe_key) DO NOTHING",
        )?
        .execute(params![
            e.id.to_string(),
            e.force,
            e.kind,
            e.direction.as_str(),
            e.source_system,
            e.target_system,
            e.api_version,
            e.model_version,
            e.idempotency_key,
            dedupe,
            e.correlation_id,
            e.case_ref,
            now_ms,
            rfc3339(now),
            e.payload_type,
            e.payload,
            e.response,
        ])?;
    if inserted == 1 {
        append_audit(c, head, &audit)?;
        return Ok(AcceptOutcome::Created);
    }
    let (id, response, payload): (String, Vec<u8>, Vec<u8>) = c
        .prepare_cached("SELECT id, response, payload FROM exchanges WHERE dedupe_key = ?1")?
        .query_row(params![dedupe], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    let id = parse_uuid(&id)?;
    audit.result = "duplicate".into();
    audit.object_id = Some(id.to_string());
    append_audit(c, head, &audit)?;
    Ok(AcceptOutcome::Duplicate {
        id,
        response,
        payload_differs: payload != e.payload,
    })
}

pub(crate) fn parse_uuid(s: &str) -> Result<Uuid> {
    Uuid::parse_str(s).map_err(|e| JournalError::Corrupt(format!("bad exchange id {s:?}: {e}")))
}

fn claim(
    c: &Connection,
    owner: &str,
    now: OffsetDateTime,
    lease: Duration,
    limit: usize,
) -> Result<Vec<WorkItem>> {
    let now_ms = millis(now);
    let until = now_ms + lease.as_millis() as i64;
    let mut stmt = c.prepare_cached(
        "UPDATE exchanges SET lease_owner = ?1, lease_until_ms = ?2
         WHERE seq IN (SELECT seq FROM exchanges
                       WHERE status = 'pending' AND next_attempt_ms <= ?3
                         AND (lease_until_ms IS NULL OR lease_until_ms < ?3)
                       ORDER BY next_attempt_ms LIMIT ?4)
         RETURNING id, force, kind, target_system, idempotency_key, correlation_id, attempts,
                   payload, parent_id",
    )?;
    let rows = stmt.query_map(params![owner, until, now_ms, limit as i64], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, String>(4)?,
            r.get::<_, String>(5)?,
            r.get::<_, i64>(6)?,
            r.get::<_, Vec<u8>>(7)?,
            r.get::<_, Option<String>>(8)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (
            id,
            force,
            kind,
            target_system,
            idempotency_key,
            correlation_id,
            attempts,
            payload,
            parent,
        ) = row?;
        out.push(WorkItem {
            id: parse_uuid(&id)?,
            force,
            kind,
            target_system,
            idempotency_key,
            correlation_id,
            attempts: attempts as u32,
            payload,
            parent_id: parent.as_deref().map(parse_uuid).transpose()?,
        });
    }
    Ok(out)
}

fn record_attempt(
    c: &Connection,
    head: &mut Head,
    id: Uuid,
    a: &Attempt,
    t: &Transition,
    p: &Prepared,
) -> Result<()> {
    let id_s = id.to_string();
    let now_ms = millis(OffsetDateTime::now_utc());
    c.prepare_cached(
        "INSERT INTO attempts (exchange_id, number, started_at, finished_at, outcome, error_class,
                               detail, http_status, node)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        id_s,
        a.number,
        rfc3339(a.started_at),
        rfc3339(a.finished_at),
        a.outcome.as_str(),
        a.error_class,
        a.detail,
        a.http_status,
        a.node,
    ])?;
    let (status, next_ms, target_ref) = match t {
        Transition::Delivered { target_ref } => ("delivered", None, Some(target_ref.as_str())),
        Transition::RetryAt(at) => ("pending", Some(millis(*at)), None),
        Transition::Parked => ("parked", None, None),
    };
    let changed = c
        .prepare_cached(
            "UPDATE exchanges SET status = ?2, attempts = ?3, next_attempt_ms = ?4,
                 lease_owner = NULL, lease_until_ms = NULL, updated_ms = ?5,
                 last_error_class = ?6, last_error = ?7,
                 target_ref = coalesce(?8, target_ref),
                 canonical = coalesce(?9, canonical),
                 target_payload = coalesce(?10, target_payload),
                 mapping_version = coalesce(?11, mapping_version)
             WHERE id = ?1 AND status = 'pending'",
        )?
        .execute(params![
            id_s,
            status,
            a.number,
            next_ms,
            now_ms,
            a.error_class,
            a.detail,
            target_ref,
            p.canonical,
            p.target_payload,
            p.mapping_version,
        ])?;
    if changed != 1 {
        return Err(JournalError::Conflict(format!(
            "exchange {id} is not pending"
        )));
    }
    if !matches!(t, Transition::RetryAt(_)) {
        let (force, kind, corr, target): (String, String, String, String) = c
            .prepare_cached(
                "SELECT force, kind, correlation_id, target_system FROM exchanges WHERE id = ?1",
            )?
            .query_row(params![id_s], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })?;
        let delivered = matches!(t, Transition::Delivered { .. });
        append_audit(
            c,
            head,
            &AuditEvent {
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
                object_id: Some(id_s),
                result: if delivered { "success" } else { "failure" }.into(),
                source_ip: None,
                user_agent: None,
                correlation_id: Some(corr),
                event_uid: Uuid::now_v7(),
                detail: Some(serde_json::json!({
                    "kind": kind,
                    "target": target,
                    "attempt": a.number,
                    "errorClass": a.error_class,
                })),
            },
        )?;
    }
    Ok(())
}

fn replay(c: &Connection, head: &mut Head, parent: Uuid, mut audit: AuditEvent) -> Result<Uuid> {
    let p = parent.to_string();
    let status: Option<String> = c
        .prepare_cached("SELECT status FROM exchanges WHERE id = ?1")?
        .query_row(params![p], |r| r.get(0))
        .optional()?;
    match status.as_deref() {
        None => return Err(JournalError::NotFound(p)),
        Some("parked") => {}
        Some(other) => {
            return Err(JournalError::Conflict(format!(
                "exchange {p} is {other}; only parked exchanges can be replayed"
            )));
        }
    }
    let live: Option<(String, String)> = c
        .prepare_cached(
            "SELECT id, status FROM exchanges WHERE parent_id = ?1 AND status != 'parked' LIMIT 1",
        )?
        .query_row(params![p], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    if let Some((child, st)) = live {
        return Err(JournalError::Conflict(format!(
            "exchange {p} was already replayed as {child}, which is {st}"
        )));
    }
    let child = Uuid::now_v7();
    let now = OffsetDateTime::now_utc();
    let now_ms = millis(now);
    c.prepare_cached(
        "INSERT INTO exchanges (id, force, kind, direction, source_system, target_system,
             api_version, model_version, idempotency_key, dedupe_key, correlation_id, case_ref,
             parent_id, status, attempts, next_attempt_ms, created_at, created_ms, updated_ms,
             payload_type, payload, response)
         SELECT ?2, force, kind, direction, source_system, target_system, api_version,
             model_version, idempotency_key, NULL, correlation_id, case_ref, id, 'pending', 0,
             ?3, ?4, ?3, ?3, payload_type, payload, response
         FROM exchanges WHERE id = ?1",
    )?
    .execute(params![p, child.to_string(), now_ms, rfc3339(now)])?;
    let force: String = c.query_row(
        "SELECT force FROM exchanges WHERE id = ?1",
        params![p],
        |r| r.get(0),
    )?;
    audit.force.get_or_insert(force);
    audit.object_type = Some("exchange".into());
    audit.object_id = Some(p);
    let mut detail = audit.detail.take().unwrap_or_else(|| serde_json::json!({}));
    if let Some(obj) = detail.as_object_mut() {
        obj.insert("child".into(), child.to_string().into());
    }
    audit.detail = Some(detail);
    append_audit(c, head, &audit)?;
    Ok(child)
}
