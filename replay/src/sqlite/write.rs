//! The writer thread: group commit of queued operations.

use crate::{
    AcceptOutcome, Attempt, AuditEvent, ClaimRequest, JournalError, NewExchange, Prepared, Result,
    Transition, WorkItem,
    audit::{GENESIS, chain_hash},
    ledger::Frontier,
    ledger_db::{frontier_from, leaf_of},
};
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use std::sync::atomic::{AtomicBool, Ordering};
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
        request: Box<ClaimRequest>,
        reply: oneshot::Sender<Result<Vec<WorkItem>>>,
    },
    Attempt {
        id: Uuid,
        attempt: Box<Attempt>,
        transition: Transition,
        prepared: Box<Prepared>,
        reply: oneshot::Sender<Result<()>>,
    },
    /// Any other write: runs inside its own savepoint of the batch.
    Exec(Exec),
    /// A large write (a bulk replay step, a retention chunk): runs alone in its own transaction,
    /// between two batches, without a savepoint.
    Solo(Solo),
    Ping {
        reply: oneshot::Sender<Result<()>>,
    },
}

/// Formats a time as RFC 3339 UTC.
pub(crate) fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

pub(crate) use crate::ops::millis;

/// The head of the audit chain: last sequence and hash, and the ledger's Merkle frontier.
#[derive(Clone)]
pub(crate) struct Head {
    seq: u64,
    hash: String,
    pub(crate) frontier: Frontier,
}

pub(crate) type Finish = Box<dyn FnOnce(Option<JournalError>) + Send>;

/// A generic write: given the batch transaction and the audit head (or why the batch could not
/// start), it does its work and returns how to answer once the commit outcome is known.
pub(crate) type Exec = Box<
    dyn for<'a> FnOnce(std::result::Result<(&'a Connection, &'a mut Head), JournalError>) -> Finish
        + Send,
>;

/// A large write run alone in its transaction: given the transaction and the audit head (or why
/// it could not start), it does its work and says whether it succeeded (else its transaction
/// is rolled back) and how to answer once the commit outcome is known.
///
/// Why not a savepoint like every other write: SQLite keeps a savepoint's undo pages in an
/// in-memory sub-journal (`temp_store = MEMORY`), and ends every statement inside it by cutting
/// that sub-journal back, walking it from its start. An operation of thousands of statements
/// (1,000 replay children) therefore spent time growing with the square of its size there:
/// 31% of the writer's time in a bulk replay profile. Alone in a transaction, each statement's
/// undo record is simply dropped when it ends.
pub(crate) type Solo = Box<
    dyn for<'a> FnOnce(
            std::result::Result<(&'a Connection, &'a mut Head), JournalError>,
        ) -> (bool, Finish)
        + Send,
>;

/// Answers `reply` with `r`, unless the commit failed.
pub(crate) fn finish<T: Send + 'static>(reply: oneshot::Sender<Result<T>>, r: Result<T>) -> Finish {
    Box::new(move |commit_err| {
        let _ = reply.send(match commit_err {
            Some(e) => Err(e),
            None => r,
        });
    })
}

/// Whether SQLite has ended the batch's transaction itself. On SQLITE_FULL, IOERR, BUSY or
/// NOMEM it may roll back the whole transaction, not just the failing statement; every later
/// statement would then run on its own in autocommit mode (a `SAVEPOINT` even begins and its
/// `RELEASE` commits a transaction of its own), so a write answered with the batch's error would
/// be kept all the same. The batch stops there instead.
fn transaction_lost(c: &Connection) -> bool {
    c.is_autocommit()
}

/// The error answered for every write of a batch whose transaction SQLite rolled back.
fn lost() -> JournalError {
    JournalError::Unavailable(
        "the journal rolled the batch back after an error (full, or an I/O error); \
         nothing of it was kept"
            .into(),
    )
}

/// Runs until every sender is gone.
pub(crate) fn run(
    mut conn: Connection,
    mut rx: mpsc::Receiver<Op>,
    max_batch: usize,
    wal_reset: Option<&AtomicBool>,
) {
    let mut batch = Vec::with_capacity(256);
    // A large write found while gathering a batch: it runs right after that batch.
    let mut next: Option<Op> = None;
    loop {
        let first = match next.take() {
            Some(op) => op,
            None => match rx.blocking_recv() {
                Some(op) => op,
                None => break,
            },
        };
        if let Op::Solo(run) = first {
            apply_solo(&mut conn, run);
        } else {
            batch.push(first);
            while batch.len() < max_batch {
                match rx.try_recv() {
                    Ok(op @ Op::Solo(_)) => {
                        next = Some(op);
                        break;
                    }
                    Ok(op) => batch.push(op),
                    Err(_) => break,
                }
            }
            apply_batch(&mut conn, &mut batch);
        }
        if let Some(flag) = wal_reset
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

/// Begins a batch transaction and reads the audit head.
///
/// `Transaction::new_unchecked` borrows the connection shared, so that a batch can roll back and
/// begin again (see [`apply_batch`]); the writer thread owns the connection, so no other
/// transaction can be open on it.
fn begin(conn: &Connection) -> Result<(Transaction<'_>, Head)> {
    let tx = Transaction::new_unchecked(conn, rusqlite::TransactionBehavior::Immediate)?;
    let head = read_head(&tx)?;
    Ok((tx, head))
}

/// Applies one group-commit batch in one transaction.
///
/// The batch's delivery attempts go first, all together and without a savepoint (see
/// [`record_attempts`]); then every other write, in the order queued, each in its own savepoint
/// where it needs one. The writes of one batch come from concurrent callers, none waiting on
/// another, so their order within the batch promises nobody anything.
///
/// Should a statement fail after an attempt's guard matched (never seen outside a broken disk
/// or a bug, but possible), that attempt is half-written and there is no savepoint to roll back
/// to: the transaction, which then holds only attempts, is rolled back whole and begun again,
/// and the attempts are recorded one at a time, each in its own savepoint, so only the failing
/// one fails.
fn apply_batch(conn: &mut Connection, batch: &mut Vec<Op>) {
    let size = batch.len();
    let mut attempts = Vec::new();
    let mut others = Vec::with_capacity(size);
    for op in batch.drain(..) {
        match AttemptOp::from_op(op) {
            Ok(a) => attempts.push(a),
            Err(op) => others.push(op),
        }
    }
    let conn: &Connection = conn;
    let fail_all = |err: JournalError, attempts: Vec<AttemptOp>, others: Vec<Op>| {
        for a in attempts {
            let _ = a.reply.send(Err(err.clone()));
        }
        for op in others {
            fail(op, err.clone());
        }
    };
    let (mut tx, mut head) = match begin(conn) {
        Ok(t) => t,
        Err(err) => {
            tracing::warn!(error = %err, size, "journal batch could not begin");
            return fail_all(err, attempts, others);
        }
    };
    let mut start_size = head.frontier.size();
    let mut finishes: Vec<Finish> = Vec::with_capacity(size);
    if !attempts.is_empty() {
        match record_attempts(&tx, &mut head, &attempts) {
            Ok(results) => {
                for (a, r) in attempts.into_iter().zip(results) {
                    finishes.push(finish(a.reply, r));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, size = attempts.len(),
                    "a delivery attempt failed midway; recording the batch's attempts one at a time");
                drop(tx);
                (tx, head) = match begin(conn) {
                    Ok(t) => t,
                    Err(err) => {
                        tracing::warn!(error = %err, size, "journal batch could not begin");
                        return fail_all(err, attempts, others);
                    }
                };
                start_size = head.frontier.size();
                record_attempts_one_by_one(&tx, &mut head, attempts, &mut finishes);
            }
        }
    }
    let mut others = others.into_iter();
    while let Some(op) = others.next() {
        if transaction_lost(&tx) {
            fail(op, lost());
            others.for_each(|op| fail(op, lost()));
            break;
        }
        finishes.push(apply_op(&tx, &mut head, op));
    }
    match save_and_commit(tx, &head, start_size) {
        Ok(()) => {
            for f in finishes {
                f(None);
            }
        }
        Err(err) => {
            tracing::warn!(error = %err, size, "journal batch not committed; nothing acknowledged");
            for f in finishes {
                f(Some(err.clone()));
            }
        }
    }
}

/// Ends a batch's or a solo write's transaction: unless SQLite has already rolled it back, saves
/// the ledger frontier if records were appended (the records and the tree move together) and
/// commits. On an error nothing of the transaction is kept (dropping it rolls back).
fn save_and_commit(tx: Transaction<'_>, head: &Head, start_size: u64) -> Result<()> {
    if transaction_lost(&tx) {
        return Err(lost());
    }
    if head.frontier.size() != start_size {
        save_frontier(&tx, &head.frontier)?;
    }
    Ok(tx.commit()?)
}

/// Runs a large write alone in its own transaction (see [`Solo`]).
fn apply_solo(conn: &mut Connection, run: Solo) {
    let tx = match conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(e) => {
            let err = JournalError::from(e);
            tracing::warn!(error = %err, "journal transaction could not begin");
            run(Err(err)).1(None);
            return;
        }
    };
    let mut head = match read_head(&tx) {
        Ok(h) => h,
        Err(err) => {
            drop(tx);
            run(Err(err)).1(None);
            return;
        }
    };
    let start_size = head.frontier.size();
    let (ok, answer) = run(Ok((&tx, &mut head)));
    if !ok {
        // Rolled back whole; the operation answers its own error.
        drop(tx);
        answer(None);
        return;
    }
    match save_and_commit(tx, &head, start_size) {
        Ok(()) => answer(None),
        Err(err) => {
            tracing::warn!(error = %err, "journal transaction not committed; nothing acknowledged");
            answer(Some(err));
        }
    }
}

fn fail(op: Op, err: JournalError) {
    match op {
        Op::Accept { reply, .. } => drop(reply.send(Err(err))),
        Op::Audit { reply, .. } => drop(reply.send(Err(err))),
        Op::Claim { reply, .. } => drop(reply.send(Err(err))),
        Op::Attempt { reply, .. } => drop(reply.send(Err(err))),
        Op::Exec(run) => run(Err(err))(None),
        Op::Solo(run) => run(Err(err)).1(None),
        Op::Ping { reply } => drop(reply.send(Err(err))),
    }
}

/// One queued [`Op::Attempt`], taken apart.
struct AttemptOp {
    id: Uuid,
    attempt: Box<Attempt>,
    transition: Transition,
    prepared: Box<Prepared>,
    reply: oneshot::Sender<Result<()>>,
}

impl AttemptOp {
    /// The attempt `op` carries, or `op` itself when it is another kind of write.
    fn from_op(op: Op) -> std::result::Result<Self, Op> {
        match op {
            Op::Attempt {
                id,
                attempt,
                transition,
                prepared,
                reply,
            } => Ok(Self {
                id,
                attempt,
                transition,
                prepared,
                reply,
            }),
            op => Err(op),
        }
    }
}

/// Maintained counts moved by a group of attempts: (force, kind, status) → delta.
type CountDeltas = std::collections::BTreeMap<(String, String, &'static str), i64>;

/// Records a batch's delivery attempts together (the group commit of delivery outcomes), with
/// the maintained counts moved once for all of them, and no savepoint: each page they touch is
/// written once, not copied first into a savepoint's undo journal (which, with its upkeep, took
/// about a fifth of the journal writer's time in a bulk replay profile).
///
/// Returns each attempt's answer: recorded, or refused by its guard (not the lease holder, not
/// the next number), in which case it has written nothing. An `Err` is a statement that failed
/// after an attempt's guard matched: that attempt is half-written, and the caller must roll the
/// transaction back ([`apply_batch`]).
fn record_attempts(
    tx: &Connection,
    head: &mut Head,
    group: &[AttemptOp],
) -> Result<Vec<Result<()>>> {
    let mut counts = CountDeltas::new();
    let mut results = Vec::with_capacity(group.len());
    for a in group {
        match record_attempt(
            tx,
            head,
            a.id,
            &a.attempt,
            &a.transition,
            &a.prepared,
            &mut counts,
        ) {
            Ok(()) => results.push(Ok(())),
            Err(AttemptError::Refused(e)) => results.push(Err(e)),
            Err(AttemptError::Failed(e)) => return Err(e),
        }
    }
    apply_counts(tx, &counts)?;
    Ok(results)
}

/// Records attempts one at a time, each in its own savepoint: one failing midway is rolled back
/// alone and answered with its error, and the others are recorded.
fn record_attempts_one_by_one(
    tx: &Connection,
    head: &mut Head,
    group: Vec<AttemptOp>,
    finishes: &mut Vec<Finish>,
) {
    for a in group {
        let r = in_savepoint(tx, head, |c, h| {
            let mut counts = CountDeltas::new();
            record_attempt(
                c,
                h,
                a.id,
                &a.attempt,
                &a.transition,
                &a.prepared,
                &mut counts,
            )
            .map_err(AttemptError::into_inner)?;
            apply_counts(c, &counts)
        });
        finishes.push(finish(a.reply, r));
    }
}

/// Applies count deltas gathered by [`record_attempt`].
fn apply_counts(c: &Connection, counts: &CountDeltas) -> Result<()> {
    for ((force, kind, status), n) in counts {
        if *n != 0 {
            bump(c, force, kind, status, *n)?;
        }
    }
    Ok(())
}

/// Why [`record_attempt`] did not record an attempt.
enum AttemptError {
    /// Refused before writing anything: another node holds the lease, or the attempt number is
    /// stale, or the exchange is gone.
    Refused(JournalError),
    /// A statement failed after the attempt's guard matched: its writes so far must be rolled
    /// back.
    Failed(JournalError),
}

impl AttemptError {
    fn into_inner(self) -> JournalError {
        match self {
            Self::Refused(e) | Self::Failed(e) => e,
        }
    }
}

/// Runs a parameterless statement (a savepoint or its release) prepared once per connection,
/// not parsed again for every operation of every batch.
fn run_cached(c: &Connection, sql: &str) -> rusqlite::Result<usize> {
    c.prepare_cached(sql)?.execute([])
}

/// Runs `f` inside a savepoint; on error rolls back its writes and restores the audit head.
pub(crate) fn in_savepoint<T>(
    tx: &Connection,
    head: &mut Head,
    f: impl FnOnce(&Connection, &mut Head) -> Result<T>,
) -> Result<T> {
    if transaction_lost(tx) {
        return Err(lost());
    }
    let saved = head.clone();
    run_cached(tx, "SAVEPOINT op")?;
    match f(tx, head) {
        Ok(v) => {
            run_cached(tx, "RELEASE op")?;
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
        Op::Claim { request, reply } => {
            // One statement, which SQLite applies whole or not at all, and no audit record: a
            // savepoint around it would protect nothing. (Should a returned row be unreadable,
            // the claim fails and its leases simply expire.)
            let r = claim(tx, &request);
            finish(reply, r)
        }
        // [`apply_batch`] records a batch's attempts before its other writes; should one
        // reach here all the same, it is recorded in its own savepoint.
        op @ Op::Attempt { .. } => {
            let mut finishes = Vec::with_capacity(1);
            if let Ok(a) = AttemptOp::from_op(op) {
                record_attempts_one_by_one(tx, head, vec![a], &mut finishes);
            }
            finishes.pop().unwrap_or_else(|| Box::new(|_| {}))
        }
        Op::Exec(run) => run(Ok((tx, head))),
        // The writer runs these between batches; should one reach a batch, a savepoint keeps
        // it from failing its neighbours all the same.
        Op::Solo(run) => {
            let saved = head.clone();
            if let Err(e) = tx.execute_batch("SAVEPOINT op") {
                return run(Err(e.into())).1;
            }
            let (ok, answer) = run(Ok((tx, head)));
            if ok {
                if let Err(e) = tx.execute_batch("RELEASE op") {
                    return Box::new(move |_| answer(Some(e.into())));
                }
            } else {
                *head = saved;
                let _ = tx.execute_batch("ROLLBACK TO op; RELEASE op");
            }
            answer
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
    let frontier = load_frontier(c)?;
    Ok(match row {
        Some((seq, hash)) => Head {
            seq: seq as u64,
            hash,
            frontier,
        },
        None => Head {
            seq: 0,
            hash: GENESIS.to_owned(),
            frontier,
        },
    })
}

/// The stored Merkle frontier.
pub(crate) fn load_frontier(c: &Connection) -> Result<Frontier> {
    let bytes: Vec<u8> = c
        .prepare_cached("SELECT frontier FROM ledger_frontier WHERE id = 1")?
        .query_row([], |r| r.get(0))?;
    frontier_from(&bytes)
}

pub(crate) fn save_frontier(c: &Connection, f: &Frontier) -> Result<()> {
    c.prepare_cached("UPDATE ledger_frontier SET frontier = ?1 WHERE id = 1")?
        .execute(params![f.to_bytes()])?;
    Ok(())
}

pub(crate) fn append_audit(c: &Connection, head: &mut Head, event: &AuditEvent) -> Result<u64> {
    let seq = head.seq + 1;
    if head.frontier.size() != head.seq {
        return Err(JournalError::Corrupt(format!(
            "ledger frontier covers {} records but the audit chain has {}",
            head.frontier.size(),
            head.seq
        )));
    }
    let hash = chain_hash(&head.hash, seq, event);
    let leaf = leaf_of(seq, event)?;
    let detail = event.detail.as_ref().map(|d| d.to_string());
    c.prepare_cached(
        "INSERT INTO audit (seq, time, actor, role, force, action, object_type, object_id, result,
                            source_ip, user_agent, correlation_id, event_uid, detail, prev_hash, hash,
                            leaf_hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
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
        hex::encode(leaf),
    ])?;
    head.seq = seq;
    head.hash = hash;
    head.frontier.push(leaf);
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
    crate::sql::check_exchange_id(e.id, now).map_err(JournalError::Invalid)?;
    let now_ms = millis(now);
    let dedupe = dedupe_key(e);
    let inserted = c
        .prepare_cached(
            "INSERT INTO exchanges (id, force, kind, direction, source_system, target_system,
                 api_version, model_version, idempotency_key, dedupe_key, correlation_id, case_ref,
                 status, attempts, next_attempt_ms, created_at, created_ms, updated_ms,
                 payload_type, payload, response, root_id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, 'pending', 0, ?13, ?14,
                     ?13, ?13, ?15, ?16, ?17, ?1)
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
        bump(c, &e.force, &e.kind, "pending", 1)?;
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

/// Separates force and target in the keys of skipped targets (a control character, never in a
/// force key or system name).
const KEY_SEP: char = '\u{1f}';

/// The claim: leases up to `?4` due exchanges to `?1` until `?2` (now is `?3`), skipping the
/// targets in the JSON array `?5` and keeping each case in order at the targets in `?6`.
///
/// Oldest due first, walking the partial index of pending exchanges by due time and stopping
/// at `limit`. Left to itself the planner prefers `exchanges_status` (status = 'pending') and
/// sorts every pending exchange on each claim: tens of thousands of rows per claim while a
/// bulk replay's children wait.
///
/// Per-case ordering: an earlier pending exchange of the same force, case and target holds a
/// later one back (index exchanges_case_pending, migration 0003). Parked and delivered ones
/// are not pending, so they never block.
pub(crate) const CLAIM_SQL: &str = "UPDATE exchanges SET lease_owner = ?1, lease_until_ms = ?2
 WHERE seq IN (
     SELECT e.seq FROM exchanges e INDEXED BY exchanges_due
     WHERE e.status = 'pending' AND e.next_attempt_ms <= ?3
       AND (e.lease_until_ms IS NULL OR e.lease_until_ms < ?3)
       AND (e.force || char(31) || e.target_system)
           NOT IN (SELECT value FROM json_each(?5))
       AND (e.case_ref IS NULL
            OR e.target_system NOT IN (SELECT value FROM json_each(?6))
            OR NOT EXISTS (
                SELECT 1 FROM exchanges o
                WHERE o.status = 'pending' AND o.case_ref IS NOT NULL
                  AND o.force = e.force AND o.target_system = e.target_system
                  AND o.case_ref = e.case_ref AND o.seq < e.seq))
     ORDER BY e.next_attempt_ms LIMIT ?4)
 RETURNING id, force, kind, target_system, idempotency_key, correlation_id, attempts,
           coalesce((SELECT p.payload FROM exchanges p WHERE p.seq = exchanges.payload_seq),
                    payload),
           parent_id, requested_mapping";

fn claim(c: &Connection, req: &ClaimRequest) -> Result<Vec<WorkItem>> {
    let now_ms = millis(req.now);
    let until = now_ms + req.lease.as_millis() as i64;
    let skip: Vec<String> = req
        .skip_targets
        .iter()
        .map(|t| format!("{}{KEY_SEP}{}", t.force, t.target_system))
        .collect();
    let skip = serde_json::to_string(&skip).map_err(|e| JournalError::Invalid(e.to_string()))?;
    let ordered = serde_json::to_string(&req.ordered_targets)
        .map_err(|e| JournalError::Invalid(e.to_string()))?;
    let mut stmt = c.prepare_cached(CLAIM_SQL)?;
    let rows = stmt.query_map(
        params![req.owner, until, now_ms, req.limit as i64, skip, ordered],
        |r| {
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
                r.get::<_, Option<String>>(9)?,
            ))
        },
    )?;
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
            mapping_version,
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
            mapping_version,
        });
    }
    Ok(out)
}

/// Puts a claimed exchange back, due at `until`, without an attempt (see `Journal::defer`).
pub(crate) fn defer(c: &Connection, id: Uuid, owner: &str, until: OffsetDateTime) -> Result<()> {
    let n = c
        .prepare_cached(
            "UPDATE exchanges SET next_attempt_ms = ?3, lease_owner = NULL, lease_until_ms = NULL
             WHERE id = ?1 AND status = 'pending' AND lease_owner = ?2",
        )?
        .execute(params![id.to_string(), owner, millis(until)])?;
    if n == 1 {
        return Ok(());
    }
    let row: Option<(String, Option<String>)> = c
        .prepare_cached("SELECT status, lease_owner FROM exchanges WHERE id = ?1")?
        .query_row(params![id.to_string()], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    Err(match row {
        None => JournalError::NotFound(id.to_string()),
        Some((status, lease_owner)) => JournalError::Conflict(format!(
            "exchange {id} cannot be deferred by {owner}: it is {status} and leased to {}",
            lease_owner.as_deref().unwrap_or("nobody")
        )),
    })
}

/// Adds `delta` to the maintained count of `force`/`kind` exchanges in `status`.
pub(crate) fn bump(
    c: &Connection,
    force: &str,
    kind: &str,
    status: &str,
    delta: i64,
) -> Result<()> {
    c.prepare_cached(
        "INSERT INTO exchange_counts (force, kind, status, n) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (force, kind, status) DO UPDATE SET n = n + excluded.n",
    )?
    .execute(params![force, kind, status, delta])?;
    Ok(())
}

fn record_attempt(
    c: &Connection,
    head: &mut Head,
    id: Uuid,
    a: &Attempt,
    t: &Transition,
    p: &Prepared,
    counts: &mut CountDeltas,
) -> std::result::Result<(), AttemptError> {
    let id_s = id.to_string();
    let now_ms = millis(OffsetDateTime::now_utc());
    let (status, next_ms, target_ref) = match t {
        Transition::Delivered { target_ref } => ("delivered", None, Some(target_ref.as_str())),
        Transition::RetryAt(at) => ("pending", Some(millis(*at)), None),
        Transition::Parked => ("parked", None, None),
    };
    // Only the lease holder, for the next attempt number: a stale node is refused before
    // anything is written. The row is read, checked and then updated by its rowid: this thread
    // is the journal's only writer, so nothing can change it in between. (An `UPDATE …
    // RETURNING` did the same in one statement, but SQLite runs RETURNING through a temporary
    // table it creates and drops each time: measurably slower for a one-row update.)
    type Row = (
        i64,
        String,
        Option<String>,
        i64,
        String,
        String,
        String,
        String,
    );
    let row: Option<Row> = c
        .prepare_cached(
            "SELECT seq, status, lease_owner, attempts, force, kind, correlation_id, target_system
             FROM exchanges WHERE id = ?1",
        )
        .and_then(|mut stmt| {
            stmt.query_row(params![id_s], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                ))
            })
            .optional()
        })
        .map_err(|e| AttemptError::Refused(e.into()))?;
    let Some((seq, cur_status, owner, attempts, force, kind, corr, target)) = row else {
        return Err(AttemptError::Refused(JournalError::NotFound(id_s)));
    };
    crate::ops::check_attempt(id, a, &cur_status, owner.as_deref(), attempts)
        .map_err(AttemptError::Refused)?;
    // From here on a failure may leave the attempt half-written (or, should SQLite have given
    // up the whole transaction, worse): the caller rolls back and records it alone.
    c.prepare_cached(
        "UPDATE exchanges SET status = ?2, attempts = ?3, next_attempt_ms = ?4,
             lease_owner = NULL, lease_until_ms = NULL, updated_ms = ?5,
             last_error_class = ?6, last_error = ?7,
             target_ref = coalesce(?8, target_ref),
             canonical = coalesce(?9, canonical),
             target_payload = coalesce(?10, target_payload),
             mapping_version = coalesce(?11, mapping_version)
         WHERE seq = ?1",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            seq,
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
        ])
    })
    .map_err(|e| AttemptError::Failed(e.into()))?;
    let rest = || -> Result<()> {
        c.prepare_cached(
            "INSERT INTO attempts (exchange_id, number, started_at, finished_at, outcome,
                                   error_class, detail, http_status, node)
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
        if status != "pending" {
            append_audit(
                c,
                head,
                &crate::ops::outcome_event(id, a, t, force.clone(), &kind, corr, &target),
            )?;
            *counts
                .entry((force.clone(), kind.clone(), "pending"))
                .or_default() -= 1;
            *counts.entry((force, kind, status)).or_default() += 1;
        }
        Ok(())
    };
    rest().map_err(AttemptError::Failed)
}
