//! Group commit on PostgreSQL: writer tasks batch accepts, audit records and attempts into one
//! transaction of set-based statements, and the chain append that ends every transaction.

use super::{pg, retryable};
use crate::{
    AcceptOutcome, Attempt, AuditEvent, ClaimRequest, JournalError, NewExchange, Prepared, Result,
    Transition, WorkItem, audit::chain_hash, ops, sql,
};
use deadpool_postgres::Pool;
use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::Arc,
};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio_postgres::{GenericClient, Transaction};
use uuid::Uuid;

/// One queued write.
pub(crate) enum WOp {
    Accept {
        exchange: Box<NewExchange>,
        audit: Box<AuditEvent>,
        reply: oneshot::Sender<Result<AcceptOutcome>>,
    },
    Audit {
        event: Box<AuditEvent>,
        reply: oneshot::Sender<Result<u64>>,
    },
    Attempt {
        id: Uuid,
        attempt: Box<Attempt>,
        transition: Transition,
        prepared: Box<Prepared>,
        reply: oneshot::Sender<Result<()>>,
    },
}

/// Formats a time as RFC 3339 (as hashed into the chain).
pub(crate) fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

/// A writer task: runs until every sender is gone.
pub(crate) async fn run(pool: Pool, rx: Arc<Mutex<mpsc::Receiver<WOp>>>, max_batch: usize) {
    loop {
        let mut batch = Vec::with_capacity(64);
        {
            let mut rx = rx.lock().await;
            match rx.recv().await {
                Some(op) => batch.push(op),
                None => break,
            }
            while batch.len() < max_batch {
                match rx.try_recv() {
                    Ok(op) => batch.push(op),
                    Err(_) => break,
                }
            }
        }
        run_batch(&pool, batch).await;
    }
    tracing::debug!("journal writer stopped");
}

/// (force, kind, idempotency key).
type DedupeKey = (String, String, String);
/// The stored exchange a key belongs to: id, acknowledgement, payload.
type StoredAck = (Uuid, Vec<u8>, Vec<u8>);

/// What one op of a batch resolves to, before the commit.
enum Outcome {
    Accept(Result<AcceptOutcome>),
    Audit(Result<()>),
    Attempt(Result<()>),
}

#[tracing::instrument(skip_all, fields(size = batch.len()))]
async fn run_batch(pool: &Pool, batch: Vec<WOp>) {
    let mut tries = 0;
    let result = loop {
        tries += 1;
        let attempt = try_batch(pool, &batch);
        match attempt.await {
            Ok(done) => break Ok(done),
            Err(Ok(e)) if retryable(&e) && tries < 4 => {
                tracing::debug!(error = %e, tries, "journal batch conflicted; running it again");
                continue;
            }
            Err(Ok(e)) => break Err(pg(e)),
            Err(Err(e)) => break Err(e),
        }
    };
    match result {
        Ok((outcomes, seqs)) => {
            for ((op, outcome), seq) in batch.into_iter().zip(outcomes).zip(seqs) {
                match (op, outcome) {
                    (WOp::Accept { reply, .. }, Outcome::Accept(r)) => drop(reply.send(r)),
                    (WOp::Audit { reply, .. }, Outcome::Audit(r)) => {
                        drop(reply.send(r.and_then(|()| {
                            seq.ok_or_else(|| {
                                JournalError::Unavailable("audit record not appended".into())
                            })
                        })));
                    }
                    (WOp::Attempt { reply, .. }, Outcome::Attempt(r)) => drop(reply.send(r)),
                    _ => {}
                }
            }
        }
        Err(err) => {
            tracing::warn!(error = %err, "journal batch failed; nothing acknowledged");
            for op in batch {
                match op {
                    WOp::Accept { reply, .. } => drop(reply.send(Err(err.clone()))),
                    WOp::Audit { reply, .. } => drop(reply.send(Err(err.clone()))),
                    WOp::Attempt { reply, .. } => drop(reply.send(Err(err.clone()))),
                }
            }
        }
    }
}

async fn try_batch(
    pool: &Pool,
    batch: &[WOp],
) -> std::result::Result<(Vec<Outcome>, Vec<Option<u64>>), TxError> {
    let mut client = pool.get().await.map_err(|e| Err(super::pool_err(e)))?;
    let tx = tokio_postgres::Client::transaction(&mut client)
        .await
        .map_err(Ok)?;
    let r = apply(&tx, batch).await?;
    tx.commit().await.map_err(Ok)?;
    Ok(r)
}

/// A driver error (to retry or map) or a journal error.
type TxError = std::result::Result<tokio_postgres::Error, JournalError>;

/// Applies the batch inside `tx`; returns each op's outcome and the sequence number of the
/// first audit record it appended.
async fn apply(
    tx: &Transaction<'_>,
    batch: &[WOp],
) -> std::result::Result<(Vec<Outcome>, Vec<Option<u64>>), TxError> {
    let now = OffsetDateTime::now_utc();
    let mut outcomes: Vec<Option<Outcome>> = (0..batch.len()).map(|_| None).collect();
    // Audit events per op, appended in op order at the end.
    let mut events: Vec<Vec<AuditEvent>> = vec![Vec::new(); batch.len()];
    let mut deltas: BTreeMap<(String, String, String), i64> = BTreeMap::new();

    // --- accepts -------------------------------------------------------------------------
    // The first op of each (force, kind, key) in the batch; later ones are its duplicates.
    let mut first_of: HashMap<(&str, &str, &str), usize> = HashMap::new();
    let mut firsts: Vec<usize> = Vec::new();
    for (i, op) in batch.iter().enumerate() {
        if let WOp::Accept { exchange: e, .. } = op {
            if let Err(m) = sql::check_exchange_id(e.id, now) {
                outcomes[i] = Some(Outcome::Accept(Err(JournalError::Invalid(m))));
                continue;
            }
            let k = (
                e.force.as_str(),
                e.kind.as_str(),
                e.idempotency_key.as_str(),
            );
            if let std::collections::hash_map::Entry::Vacant(v) = first_of.entry(k) {
                v.insert(i);
                firsts.push(i);
            }
        }
    }
    let exch = |i: usize| match &batch[i] {
        WOp::Accept { exchange, .. } => exchange.as_ref(),
        _ => unreachable!("only accepts are indexed here"),
    };
    // Sorted by key: every node inserts keys in the same order, so two batches racing for the
    // same keys wait for each other instead of deadlocking.
    firsts.sort_by(|&a, &b| {
        let (a, b) = (exch(a), exch(b));
        (&a.force, &a.kind, &a.idempotency_key).cmp(&(&b.force, &b.kind, &b.idempotency_key))
    });
    // Which firsts are new, and for the others the stored exchange.
    let mut stored: HashMap<DedupeKey, StoredAck> = HashMap::new();
    if !firsts.is_empty() {
        let forces: Vec<&str> = firsts.iter().map(|&i| exch(i).force.as_str()).collect();
        let kinds: Vec<&str> = firsts.iter().map(|&i| exch(i).kind.as_str()).collect();
        let keys: Vec<&str> = firsts
            .iter()
            .map(|&i| exch(i).idempotency_key.as_str())
            .collect();
        let ids: Vec<Uuid> = firsts.iter().map(|&i| exch(i).id).collect();
        let created: HashSet<Uuid> = tx
            .query(
                "INSERT INTO dedupe (force, kind, idempotency_key, exchange_id)
                 SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::uuid[])
                 ON CONFLICT DO NOTHING RETURNING exchange_id",
                &[&forces, &kinds, &keys, &ids],
            )
            .await
            .map_err(Ok)?
            .into_iter()
            .map(|r| r.get(0))
            .collect();
        let (new, old): (Vec<usize>, Vec<usize>) =
            firsts.iter().partition(|&&i| created.contains(&exch(i).id));
        if !old.is_empty() {
            let f: Vec<&str> = old.iter().map(|&i| exch(i).force.as_str()).collect();
            let k: Vec<&str> = old.iter().map(|&i| exch(i).kind.as_str()).collect();
            let key: Vec<&str> = old
                .iter()
                .map(|&i| exch(i).idempotency_key.as_str())
                .collect();
            for r in tx
                .query(
                    "SELECT d.force, d.kind, d.idempotency_key, e.id, e.response, e.payload
                     FROM unnest($1::text[], $2::text[], $3::text[]) AS k(force, kind, key)
                     JOIN dedupe d ON d.force = k.force AND d.kind = k.kind
                                  AND d.idempotency_key = k.key
                     JOIN exchanges e ON e.id = d.exchange_id",
                    &[&f, &k, &key],
                )
                .await
                .map_err(Ok)?
            {
                stored.insert(
                    (r.get(0), r.get(1), r.get(2)),
                    (r.get(3), r.get(4), r.get(5)),
                );
            }
        }
        if !new.is_empty() {
            insert_exchanges(tx, &new.iter().map(|&i| exch(i)).collect::<Vec<_>>(), now)
                .await
                .map_err(Ok)?;
            for &i in &new {
                let e = exch(i);
                *deltas
                    .entry((e.force.clone(), e.kind.clone(), "pending".into()))
                    .or_default() += 1;
                // The stored row is this one: later duplicates in the batch point at it.
                stored.insert(
                    (e.force.clone(), e.kind.clone(), e.idempotency_key.clone()),
                    (e.id, e.response.clone(), e.payload.clone()),
                );
            }
        }
        let new: HashSet<usize> = new.into_iter().collect();
        for (i, op) in batch.iter().enumerate() {
            let WOp::Accept {
                exchange: e, audit, ..
            } = op
            else {
                continue;
            };
            if outcomes[i].is_some() {
                continue;
            }
            if new.contains(&i) {
                outcomes[i] = Some(Outcome::Accept(Ok(AcceptOutcome::Created)));
                events[i].push((**audit).clone());
                continue;
            }
            let key = (e.force.clone(), e.kind.clone(), e.idempotency_key.clone());
            match stored.get(&key) {
                Some((id, response, payload)) => {
                    let mut ev = (**audit).clone();
                    ev.result = "duplicate".into();
                    ev.object_id = Some(id.to_string());
                    events[i].push(ev);
                    outcomes[i] = Some(Outcome::Accept(Ok(AcceptOutcome::Duplicate {
                        id: *id,
                        response: response.clone(),
                        payload_differs: *payload != e.payload,
                    })));
                }
                None => {
                    outcomes[i] = Some(Outcome::Accept(Err(JournalError::Corrupt(format!(
                        "idempotency key of {} is taken but its exchange is missing",
                        e.id
                    )))));
                }
            }
        }
    }

    // --- attempts ------------------------------------------------------------------------
    // In rounds of distinct exchanges, so two attempts on one exchange are judged in order.
    let mut pending: Vec<usize> = batch
        .iter()
        .enumerate()
        .filter(|(_, op)| matches!(op, WOp::Attempt { .. }))
        .map(|(i, _)| i)
        .collect();
    while !pending.is_empty() {
        let mut seen = HashSet::new();
        let (round, rest): (Vec<usize>, Vec<usize>) = pending.iter().partition(|&&i| {
            let WOp::Attempt { id, .. } = &batch[i] else {
                return false;
            };
            seen.insert(*id)
        });
        pending = rest;
        record_attempts(
            tx,
            batch,
            &round,
            now,
            &mut outcomes,
            &mut events,
            &mut deltas,
        )
        .await
        .map_err(Ok)?;
    }

    // --- audit ops -----------------------------------------------------------------------
    for (i, op) in batch.iter().enumerate() {
        if let WOp::Audit { event, .. } = op {
            events[i].push((**event).clone());
            outcomes[i] = Some(Outcome::Audit(Ok(())));
        }
    }

    // --- counters, then the chain (the head lock is taken last) --------------------------
    apply_deltas(tx, &deltas).await.map_err(Ok)?;
    let flat: Vec<AuditEvent> = events.iter().flatten().cloned().collect();
    let seqs = append_audit(tx, &flat).await.map_err(Err)?;
    let mut firsts_seq = Vec::with_capacity(batch.len());
    let mut at = 0;
    for evs in &events {
        firsts_seq.push(if evs.is_empty() {
            None
        } else {
            seqs.get(at).copied()
        });
        at += evs.len();
    }
    let outcomes = outcomes
        .into_iter()
        .map(|o| {
            o.unwrap_or(Outcome::Audit(Err(JournalError::Unavailable(
                "operation not applied".into(),
            ))))
        })
        .collect();
    Ok((outcomes, firsts_seq))
}

async fn insert_exchanges(
    tx: &Transaction<'_>,
    rows: &[&NewExchange],
    now: OffsetDateTime,
) -> std::result::Result<(), tokio_postgres::Error> {
    let ids: Vec<Uuid> = rows.iter().map(|e| e.id).collect();
    let col = |f: fn(&NewExchange) -> &str| rows.iter().map(|e| f(e)).collect::<Vec<&str>>();
    let force = col(|e| &e.force);
    let kind = col(|e| &e.kind);
    let direction = col(|e| e.direction.as_str());
    let source = col(|e| &e.source_system);
    let target = col(|e| &e.target_system);
    let api = col(|e| &e.api_version);
    let model = col(|e| &e.model_version);
    let key = col(|e| &e.idempotency_key);
    let corr = col(|e| &e.correlation_id);
    let ptype = col(|e| &e.payload_type);
    let case: Vec<Option<&str>> = rows.iter().map(|e| e.case_ref.as_deref()).collect();
    let payload: Vec<&[u8]> = rows.iter().map(|e| e.payload.as_slice()).collect();
    let response: Vec<&[u8]> = rows.iter().map(|e| e.response.as_slice()).collect();
    tx.execute(
        "INSERT INTO exchanges (id, root_id, force, kind, direction, source_system, target_system,
             api_version, model_version, idempotency_key, correlation_id, case_ref, status,
             attempts, next_attempt_at, created_at, updated_at, payload_type, payload, response)
         SELECT u.id, u.id, u.force, u.kind, u.direction, u.source, u.target, u.api, u.model,
             u.key, u.corr, u.case_ref, 'pending', 0, $14, $14, $14, u.ptype, u.payload,
             u.response
         FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                     $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[],
                     $13::bytea[], $15::bytea[])
              AS u(id, force, kind, direction, source, target, api, model, key, corr, case_ref,
                   ptype, payload, response)",
        &[
            &ids, &force, &kind, &direction, &source, &target, &api, &model, &key, &corr, &case,
            &ptype, &payload, &now, &response,
        ],
    )
    .await?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn record_attempts(
    tx: &Transaction<'_>,
    batch: &[WOp],
    round: &[usize],
    now: OffsetDateTime,
    outcomes: &mut [Option<Outcome>],
    events: &mut [Vec<AuditEvent>],
    deltas: &mut BTreeMap<(String, String, String), i64>,
) -> std::result::Result<(), tokio_postgres::Error> {
    let items: Vec<(usize, Uuid, &Attempt, &Transition, &Prepared)> = round
        .iter()
        .filter_map(|&i| match &batch[i] {
            WOp::Attempt {
                id,
                attempt,
                transition,
                prepared,
                ..
            } => Some((i, *id, attempt.as_ref(), transition, prepared.as_ref())),
            _ => None,
        })
        .collect();
    let ids: Vec<Uuid> = items.iter().map(|x| x.1).collect();
    let status: Vec<&str> = items
        .iter()
        .map(|x| match x.3 {
            Transition::Delivered { .. } => "delivered",
            Transition::RetryAt(_) => "pending",
            Transition::Parked => "parked",
        })
        .collect();
    let number: Vec<i32> = items.iter().map(|x| x.2.number as i32).collect();
    let next: Vec<Option<OffsetDateTime>> = items
        .iter()
        .map(|x| match x.3 {
            Transition::RetryAt(at) => Some(*at),
            _ => None,
        })
        .collect();
    let class: Vec<Option<&str>> = items.iter().map(|x| x.2.error_class.as_deref()).collect();
    let detail: Vec<Option<&str>> = items.iter().map(|x| x.2.detail.as_deref()).collect();
    let target_ref: Vec<Option<&str>> = items
        .iter()
        .map(|x| match x.3 {
            Transition::Delivered { target_ref } => Some(target_ref.as_str()),
            _ => None,
        })
        .collect();
    let canonical: Vec<Option<&[u8]>> = items.iter().map(|x| x.4.canonical.as_deref()).collect();
    let target_payload: Vec<Option<&[u8]>> = items
        .iter()
        .map(|x| x.4.target_payload.as_deref())
        .collect();
    let mapping: Vec<Option<&str>> = items
        .iter()
        .map(|x| x.4.mapping_version.as_deref())
        .collect();
    let node: Vec<&str> = items.iter().map(|x| x.2.node.as_str()).collect();
    // Only the lease holder, for the next attempt number: a stale node changes nothing.
    let done: HashMap<Uuid, (String, String, String, String)> = tx
        .query(
            "UPDATE exchanges e SET status = u.status, attempts = u.number,
                 next_attempt_at = u.next_at, lease_owner = NULL, lease_until = NULL,
                 updated_at = $13, last_error_class = u.class, last_error = u.detail,
                 target_ref = coalesce(u.target_ref, e.target_ref),
                 canonical = coalesce(u.canonical, e.canonical),
                 target_payload = coalesce(u.target_payload, e.target_payload),
                 mapping_version = coalesce(u.mapping, e.mapping_version)
             FROM unnest($1::uuid[], $2::text[], $3::int[], $4::timestamptz[], $5::text[],
                         $6::text[], $7::text[], $8::bytea[], $9::bytea[], $10::text[],
                         $11::text[])
                  AS u(id, status, number, next_at, class, detail, target_ref, canonical,
                       target_payload, mapping, node)
             WHERE e.id = u.id AND e.status = 'pending' AND e.lease_owner = u.node
               AND e.attempts = u.number - 1 AND $12
             RETURNING e.id, e.force, e.kind, e.correlation_id, e.target_system",
            &[
                &ids,
                &status,
                &number,
                &next,
                &class,
                &detail,
                &target_ref,
                &canonical,
                &target_payload,
                &mapping,
                &node,
                &true,
                &now,
            ],
        )
        .await?
        .into_iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2), r.get(3), r.get(4))))
        .collect();
    // Why the others were refused.
    let refused: Vec<Uuid> = ids
        .iter()
        .filter(|id| !done.contains_key(id))
        .copied()
        .collect();
    let mut state: HashMap<Uuid, (String, Option<String>, i32)> = HashMap::new();
    if !refused.is_empty() {
        for r in tx
            .query(
                "SELECT id, status, lease_owner, attempts FROM exchanges WHERE id = ANY($1)",
                &[&refused],
            )
            .await?
        {
            state.insert(r.get(0), (r.get(1), r.get(2), r.get(3)));
        }
    }
    let ok: Vec<&(usize, Uuid, &Attempt, &Transition, &Prepared)> =
        items.iter().filter(|x| done.contains_key(&x.1)).collect();
    if !ok.is_empty() {
        let ids: Vec<Uuid> = ok.iter().map(|x| x.1).collect();
        let number: Vec<i32> = ok.iter().map(|x| x.2.number as i32).collect();
        let started: Vec<OffsetDateTime> = ok.iter().map(|x| x.2.started_at).collect();
        let finished: Vec<OffsetDateTime> = ok.iter().map(|x| x.2.finished_at).collect();
        let outcome: Vec<&str> = ok.iter().map(|x| x.2.outcome.as_str()).collect();
        let class: Vec<Option<&str>> = ok.iter().map(|x| x.2.error_class.as_deref()).collect();
        let detail: Vec<Option<&str>> = ok.iter().map(|x| x.2.detail.as_deref()).collect();
        let http: Vec<Option<i32>> = ok.iter().map(|x| x.2.http_status.map(i32::from)).collect();
        let node: Vec<&str> = ok.iter().map(|x| x.2.node.as_str()).collect();
        tx.execute(
            "INSERT INTO attempts (exchange_id, number, started_at, finished_at, outcome,
                 error_class, detail, http_status, node)
             SELECT * FROM unnest($1::uuid[], $2::int[], $3::timestamptz[], $4::timestamptz[],
                 $5::text[], $6::text[], $7::text[], $8::int[], $9::text[])",
            &[
                &ids, &number, &started, &finished, &outcome, &class, &detail, &http, &node,
            ],
        )
        .await?;
    }
    for &(i, id, a, t, _) in &items {
        match done.get(&id) {
            Some((force, kind, corr, target)) => {
                if !matches!(t, Transition::RetryAt(_)) {
                    let to = if matches!(t, Transition::Delivered { .. }) {
                        "delivered"
                    } else {
                        "parked"
                    };
                    *deltas
                        .entry((force.clone(), kind.clone(), "pending".into()))
                        .or_default() -= 1;
                    *deltas
                        .entry((force.clone(), kind.clone(), to.into()))
                        .or_default() += 1;
                    events[i].push(ops::outcome_event(
                        id,
                        a,
                        t,
                        force.clone(),
                        kind,
                        corr.clone(),
                        target,
                    ));
                }
                outcomes[i] = Some(Outcome::Attempt(Ok(())));
            }
            None => {
                let err = match state.get(&id) {
                    None => JournalError::NotFound(id.to_string()),
                    Some((status, owner, attempts)) => {
                        ops::attempt_refusal(id, a, status, owner.as_deref(), i64::from(*attempts))
                    }
                };
                outcomes[i] = Some(Outcome::Attempt(Err(err)));
            }
        }
    }
    Ok(())
}

/// Adds the deltas to the maintained counters, in key order (no deadlocks between nodes).
pub(crate) async fn apply_deltas(
    tx: &impl GenericClient,
    deltas: &BTreeMap<(String, String, String), i64>,
) -> std::result::Result<(), tokio_postgres::Error> {
    let d: Vec<_> = deltas.iter().filter(|(_, n)| **n != 0).collect();
    if d.is_empty() {
        return Ok(());
    }
    let force: Vec<&str> = d.iter().map(|(k, _)| k.0.as_str()).collect();
    let kind: Vec<&str> = d.iter().map(|(k, _)| k.1.as_str()).collect();
    let status: Vec<&str> = d.iter().map(|(k, _)| k.2.as_str()).collect();
    let n: Vec<i64> = d.iter().map(|(_, n)| **n).collect();
    tx.execute(
        "INSERT INTO exchange_counts AS c (force, kind, status, n)
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[])
         ON CONFLICT (force, kind, status) DO UPDATE SET n = c.n + excluded.n",
        &[&force, &kind, &status, &n],
    )
    .await?;
    Ok(())
}

/// Appends `events` at the head of the audit chain and moves the head, in the caller's
/// transaction; returns their sequence numbers. Takes the head row lock, which the caller's
/// commit releases: call it last.
pub(crate) async fn append_audit(
    tx: &impl GenericClient,
    events: &[AuditEvent],
) -> Result<Vec<u64>> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let row = tx
        .query_one(
            "SELECT seq, hash, frontier FROM audit_head WHERE id = 1 FOR UPDATE",
            &[],
        )
        .await
        .map_err(pg)?;
    let mut seq = row.get::<_, i64>(0) as u64;
    let mut prev: String = row.get(1);
    let mut frontier = crate::ledger_db::frontier_from(row.get::<_, &[u8]>(2))?;
    if frontier.size() != seq {
        return Err(JournalError::Corrupt(format!(
            "ledger frontier covers {} records but the audit chain has {seq}",
            frontier.size()
        )));
    }
    let mut leaves = Vec::with_capacity(events.len());
    let n = events.len();
    let mut seqs = Vec::with_capacity(n);
    let (mut s, mut time, mut actor, mut role, mut force, mut action) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut otype, mut oid, mut result, mut ip, mut ua, mut corr) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut uid, mut detail, mut prevs, mut hashes) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for ev in events {
        seq += 1;
        let hash = chain_hash(&prev, seq, ev);
        let leaf = crate::ledger_db::leaf_of(seq, ev)?;
        frontier.push(leaf);
        leaves.push(hex::encode(leaf));
        seqs.push(seq);
        s.push(seq as i64);
        time.push(rfc3339(ev.time));
        actor.push(ev.actor.as_str());
        role.push(ev.role.as_str());
        force.push(ev.force.as_deref());
        action.push(ev.action.as_str());
        otype.push(ev.object_type.as_deref());
        oid.push(ev.object_id.as_deref());
        result.push(ev.result.as_str());
        ip.push(ev.source_ip.as_deref());
        ua.push(ev.user_agent.as_deref());
        corr.push(ev.correlation_id.as_deref());
        uid.push(ev.event_uid);
        detail.push(ev.detail.as_ref().map(|d| d.to_string()));
        prevs.push(std::mem::replace(&mut prev, hash.clone()));
        hashes.push(hash);
    }
    tx.execute(
        "WITH ins AS (
             INSERT INTO audit (seq, time, actor, role, force, action, object_type, object_id,
                 result, source_ip, user_agent, correlation_id, event_uid, detail, prev_hash, hash,
                 leaf_hash)
             SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[],
                 $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[],
                 $12::text[], $13::uuid[], $14::text[], $15::text[], $16::text[], $19::text[]))
         UPDATE audit_head SET seq = $17, hash = $18, frontier = $20 WHERE id = 1",
        &[
            &s,
            &time,
            &actor,
            &role,
            &force,
            &action,
            &otype,
            &oid,
            &result,
            &ip,
            &ua,
            &corr,
            &uid,
            &detail,
            &prevs,
            &hashes,
            &(seq as i64),
            &prev,
            &leaves,
            &frontier.to_bytes(),
        ],
    )
    .await
    .map_err(pg)?;
    Ok(seqs)
}

/// Claims due work with `FOR UPDATE SKIP LOCKED`: concurrent claims from several nodes never
/// return the same exchange, and a lease that expired is claimable again. Skipped targets and
/// per-case ordering as [`ClaimRequest`] says (index `exchanges_case_pending`, migration 0003).
pub(crate) async fn claim(c: &impl GenericClient, req: &ClaimRequest) -> Result<Vec<WorkItem>> {
    let until = req.now + req.lease;
    let skip_forces: Vec<&str> = req.skip_targets.iter().map(|t| t.force.as_str()).collect();
    let skip_systems: Vec<&str> = req
        .skip_targets
        .iter()
        .map(|t| t.target_system.as_str())
        .collect();
    let rows = c
        .query(
            "WITH due AS (
                 SELECT e.id FROM exchanges e
                 WHERE e.status = 'pending' AND e.next_attempt_at <= $1
                   AND (e.lease_until IS NULL OR e.lease_until < $1)
                   AND NOT EXISTS (
                       SELECT 1 FROM unnest($5::text[], $6::text[]) AS s(force, system)
                       WHERE s.force = e.force AND s.system = e.target_system)
                   AND (e.case_ref IS NULL
                        OR NOT (e.target_system = ANY($7::text[]))
                        OR NOT EXISTS (
                            SELECT 1 FROM exchanges o
                            WHERE o.status = 'pending' AND o.case_ref IS NOT NULL
                              AND o.force = e.force AND o.target_system = e.target_system
                              AND o.case_ref = e.case_ref AND o.seq < e.seq))
                 ORDER BY e.next_attempt_at LIMIT $2
                 FOR UPDATE OF e SKIP LOCKED)
             UPDATE exchanges e SET lease_owner = $3, lease_until = $4
             FROM due WHERE e.id = due.id
             RETURNING e.id, e.force, e.kind, e.target_system, e.idempotency_key,
                       e.correlation_id, e.attempts, e.payload, e.parent_id, e.requested_mapping,
                       e.next_attempt_at",
            &[
                &req.now,
                &(req.limit as i64),
                &req.owner,
                &until,
                &skip_forces,
                &skip_systems,
                &req.ordered_targets,
            ],
        )
        .await
        .map_err(pg)?;
    let mut items: Vec<(OffsetDateTime, WorkItem)> = rows
        .into_iter()
        .map(|r| {
            (
                r.get(10),
                WorkItem {
                    id: r.get(0),
                    force: r.get(1),
                    kind: r.get(2),
                    target_system: r.get(3),
                    idempotency_key: r.get(4),
                    correlation_id: r.get(5),
                    attempts: r.get::<_, i32>(6) as u32,
                    payload: r.get(7),
                    parent_id: r.get(8),
                    mapping_version: r.get(9),
                },
            )
        })
        .collect();
    items.sort_by_key(|(t, _)| *t);
    Ok(items.into_iter().map(|(_, w)| w).collect())
}

/// Puts a claimed exchange back, due at `until`, without an attempt (see `Journal::defer`).
pub(crate) async fn defer(
    c: &impl GenericClient,
    id: Uuid,
    owner: &str,
    until: OffsetDateTime,
) -> Result<()> {
    let n = c
        .execute(
            "UPDATE exchanges SET next_attempt_at = $3, lease_owner = NULL, lease_until = NULL
             WHERE id = $1 AND status = 'pending' AND lease_owner = $2",
            &[&id, &owner, &until],
        )
        .await
        .map_err(pg)?;
    if n == 1 {
        return Ok(());
    }
    let row = c
        .query_opt(
            "SELECT status, lease_owner FROM exchanges WHERE id = $1",
            &[&id],
        )
        .await
        .map_err(pg)?;
    Err(match row {
        None => JournalError::NotFound(id.to_string()),
        Some(r) => {
            let status: String = r.get(0);
            let lease_owner: Option<String> = r.get(1);
            JournalError::Conflict(format!(
                "exchange {id} cannot be deferred by {owner}: it is {status} and leased to {}",
                lease_owner.as_deref().unwrap_or("nobody")
            ))
        }
    })
}
