//! Read-side queries on PostgreSQL.

use super::pg;
use crate::{
    Attempt, AttemptOutcome, AuditEvent, AuditRecord, Direction, ExchangeDetail, ExchangeFilter,
    ExchangeSummary, HoldTarget, JournalError, JournalStats, LegalHold, Page, ReplayJob,
    ReplayJobState, Result, Status, StatusCount, StoredPayloads, sql,
};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};
use tokio_postgres::{GenericClient, Row, types::ToSql};
use uuid::Uuid;

/// A bound parameter.
pub(crate) type Bound = Box<dyn ToSql + Sync + Send>;

/// Binds a [`sql::Param`].
pub(crate) fn bind(p: &sql::Param) -> Bound {
    match p {
        sql::Param::Text(s) => Box::new(s.clone()),
        sql::Param::Int(i) => Box::new(*i),
        sql::Param::Time(t) => Box::new(*t),
        sql::Param::Uuid(u) => Box::new(*u),
    }
}

/// The parameters as the driver takes them.
pub(crate) fn refs(b: &[Bound]) -> Vec<&(dyn ToSql + Sync)> {
    b.iter()
        .map(|p| p.as_ref() as &(dyn ToSql + Sync))
        .collect()
}

const SUMMARY_COLS: &str = "seq, id, force, kind, target_system, status, idempotency_key, case_ref,
    attempts, parent_id, created_at, last_error_class, target_ref";

fn status(s: &str) -> Result<Status> {
    s.parse().map_err(JournalError::Corrupt)
}

fn summary(r: &Row) -> Result<(i64, ExchangeSummary)> {
    Ok((
        r.get(0),
        ExchangeSummary {
            id: r.get(1),
            force: r.get(2),
            kind: r.get(3),
            target_system: r.get(4),
            status: status(r.get(5))?,
            submission_id: r.get(6),
            case_ref: r.get(7),
            attempt_count: r.get::<_, i32>(8) as u32,
            parent_id: r.get(9),
            created_at: r.get(10),
            last_error_class: r.get(11),
            target_ref: r.get(12),
        },
    ))
}

pub(super) async fn get(c: &impl GenericClient, id: Uuid) -> Result<Option<ExchangeDetail>> {
    let Some(r) = c
        .query_opt(
            &format!(
                "SELECT {SUMMARY_COLS}, direction, source_system, api_version, model_version,
                    idempotency_key, correlation_id, next_attempt_at, last_error, mapping_version,
                    payload_type, octet_length(payload), requested_mapping, replay_job_id,
                    payloads_deleted_at,
                    EXISTS (SELECT 1 FROM legal_holds h WHERE h.released_at IS NULL
                        AND (h.root_id = e.root_id OR (h.force = e.force AND h.case_ref = e.case_ref)))
                 FROM exchanges e WHERE id = $1"
            ),
            &[&id],
        )
        .await
        .map_err(pg)?
    else {
        return Ok(None);
    };
    let (_, summary) = summary(&r)?;
    let direction = match r.get::<_, &str>(13) {
        "outbound" => Direction::Outbound,
        _ => Direction::Inbound,
    };
    let mut detail = ExchangeDetail {
        summary,
        direction,
        source_system: r.get(14),
        api_version: r.get(15),
        model_version: r.get(16),
        idempotency_key: r.get(17),
        correlation_id: r.get(18),
        next_attempt_at: r.get(19),
        last_error: r.get(20),
        mapping_version: r.get(21),
        attempts: Vec::new(),
        children: Vec::new(),
        payload_type: r.get(22),
        payload_bytes: r.get::<_, i32>(23) as u64,
        requested_mapping_version: r.get(24),
        replay_job_id: r.get(25),
        legal_hold: r.get(27),
        payloads_deleted_at: r.get(26),
    };
    for r in c
        .query(
            "SELECT number, started_at, finished_at, outcome, error_class, detail, http_status, node
             FROM attempts WHERE exchange_id = $1 ORDER BY number",
            &[&id],
        )
        .await
        .map_err(pg)?
    {
        detail.attempts.push(Attempt {
            number: r.get::<_, i32>(0) as u32,
            started_at: r.get(1),
            finished_at: r.get(2),
            outcome: match r.get::<_, &str>(3) {
                "delivered" => AttemptOutcome::Delivered,
                "retry" => AttemptOutcome::Retry,
                _ => AttemptOutcome::Parked,
            },
            error_class: r.get(4),
            detail: r.get(5),
            http_status: r.get::<_, Option<i32>>(6).map(|s| s as u16),
            node: r.get(7),
        });
    }
    detail.children = c
        .query(
            "SELECT id FROM exchanges WHERE parent_id = $1 ORDER BY created_at, seq",
            &[&id],
        )
        .await
        .map_err(pg)?
        .iter()
        .map(|r| r.get(0))
        .collect();
    Ok(Some(detail))
}

pub(super) async fn list(
    c: &impl GenericClient,
    f: &ExchangeFilter,
    after: Option<i64>,
    limit: usize,
) -> Result<Page<ExchangeSummary>> {
    let d = sql::Dialect::Postgres;
    let mut w = sql::filter(d, f, "");
    if let Some(seq) = after {
        let row = c
            .query_opt("SELECT created_at FROM exchanges WHERE seq = $1", &[&seq])
            .await
            .map_err(pg)?;
        // A cursor whose row is gone (retention) continues by sequence alone.
        match row {
            Some(r) => {
                let at: OffsetDateTime = r.get(0);
                w.params.push(sql::Param::Time(at));
                w.params.push(sql::Param::Int(seq));
                let n = w.params.len();
                w.raw(&format!("(created_at, seq) < (${}, ${n})", n - 1));
            }
            None => w.push(d, "seq < {}", sql::Param::Int(seq)),
        }
    }
    let params: Vec<Bound> = w.params.iter().map(bind).collect();
    let rows = c
        .query(
            &format!(
                "SELECT {SUMMARY_COLS} FROM exchanges {} ORDER BY created_at DESC, seq DESC LIMIT {}",
                w.sql(),
                limit
            ),
            &refs(&params),
        )
        .await
        .map_err(pg)?;
    let mut items = Vec::with_capacity(rows.len());
    let mut last = None;
    for r in &rows {
        let (seq, s) = summary(r)?;
        last = Some(seq);
        items.push(s);
    }
    let next = if items.len() == limit { last } else { None };
    Ok(Page { items, next })
}

pub(crate) async fn count(c: &impl GenericClient, f: &ExchangeFilter) -> Result<u64> {
    let w = sql::filter(sql::Dialect::Postgres, f, "");
    let params: Vec<Bound> = w.params.iter().map(bind).collect();
    let n: i64 = c
        .query_one(
            &format!("SELECT count(*) FROM exchanges {}", w.sql()),
            &refs(&params),
        )
        .await
        .map_err(pg)?
        .get(0);
    Ok(n as u64)
}

pub(super) async fn payloads(c: &impl GenericClient, id: Uuid) -> Result<Option<StoredPayloads>> {
    Ok(c.query_opt(
        "SELECT payload_type, payload, response, canonical, target_payload FROM exchanges
             WHERE id = $1",
        &[&id],
    )
    .await
    .map_err(pg)?
    .map(|r| StoredPayloads {
        payload_type: r.get(0),
        original: r.get(1),
        response: r.get(2),
        canonical: r.get(3),
        target_payload: r.get(4),
    }))
}

pub(super) async fn audit_records(
    c: &impl GenericClient,
    from: u64,
    limit: usize,
) -> Result<Vec<AuditRecord>> {
    let rows = c
        .query(
            "SELECT seq, time, actor, role, force, action, object_type, object_id, result,
                    source_ip, user_agent, correlation_id, event_uid, detail, prev_hash, hash,
                leaf_hash, pruned_by
             FROM audit WHERE seq >= $1 ORDER BY seq LIMIT $2",
            &[&(from as i64), &(limit as i64)],
        )
        .await
        .map_err(pg)?;
    rows.iter().map(audit_row).collect()
}

/// The columns `seq, time, actor, role, force, action, object_type, object_id, result,
/// source_ip, user_agent, correlation_id, event_uid, detail, prev_hash, hash, leaf_hash,
/// pruned_by` as a record.
pub(super) fn audit_row(r: &tokio_postgres::Row) -> Result<AuditRecord> {
    let time: &str = r.get(1);
    let detail: Option<&str> = r.get(13);
    Ok(AuditRecord {
        seq: r.get::<_, i64>(0) as u64,
        event: AuditEvent {
            time: OffsetDateTime::parse(time, &Rfc3339)
                .map_err(|e| JournalError::Corrupt(format!("bad audit time {time:?}: {e}")))?,
            actor: r.get(2),
            role: r.get(3),
            force: r.get(4),
            action: r.get(5),
            object_type: r.get(6),
            object_id: r.get(7),
            result: r.get(8),
            source_ip: r.get(9),
            user_agent: r.get(10),
            correlation_id: r.get(11),
            event_uid: r.get(12),
            detail: detail
                .map(serde_json::from_str)
                .transpose()
                .map_err(|e| JournalError::Corrupt(format!("bad audit detail: {e}")))?,
        },
        prev_hash: r.get(14),
        hash: r.get(15),
        pruned: r.get::<_, Option<i64>>(17).map(|by| crate::model::Pruned {
            by: by as u64,
            leaf_hash: r.get::<_, Option<String>>(16).unwrap_or_default(),
        }),
    })
}

pub(super) async fn stats(c: &impl GenericClient) -> Result<JournalStats> {
    let mut st = JournalStats::default();
    for r in c
        .query(
            "SELECT force, kind, status, n FROM exchange_counts WHERE n <> 0
             ORDER BY force, kind, status",
            &[],
        )
        .await
        .map_err(pg)?
    {
        let s = status(r.get(2))?;
        let n = r.get::<_, i64>(3).max(0) as u64;
        match s {
            Status::Pending => st.pending += n,
            Status::Delivered => st.delivered += n,
            Status::Parked => st.parked += n,
        }
        st.groups.push(StatusCount {
            force: r.get(0),
            kind: r.get(1),
            status: s,
            count: n,
        });
    }
    let r = c
        .query_one(
            "SELECT (SELECT min(created_at) FROM exchanges WHERE status = 'pending'),
                    (SELECT min(created_at) FROM exchanges WHERE status = 'parked'),
                    (SELECT seq FROM audit_head WHERE id = 1),
                    (SELECT count(*) FROM replay_jobs WHERE state = 'running'),
                    (SELECT count(*) FROM legal_holds WHERE released_at IS NULL)",
            &[],
        )
        .await
        .map_err(pg)?;
    st.oldest_pending = r.get(0);
    st.oldest_parked = r.get(1);
    st.audit_records = r.get::<_, i64>(2) as u64;
    st.replay_jobs_running = r.get::<_, i64>(3) as u64;
    st.legal_holds = r.get::<_, i64>(4) as u64;
    Ok(st)
}

const JOB_COLS: &str = "id, filter, options, state, until_at, planned, replayed, skipped,
    created_by, created_at, updated_at";

fn job_row(r: &Row) -> Result<ReplayJob> {
    let state: &str = r.get(3);
    Ok(ReplayJob {
        id: r.get(0),
        filter: serde_json::from_str(r.get(1))
            .map_err(|e| JournalError::Corrupt(format!("bad job filter: {e}")))?,
        options: serde_json::from_str(r.get(2))
            .map_err(|e| JournalError::Corrupt(format!("bad job options: {e}")))?,
        state: ReplayJobState::parse(state)
            .ok_or_else(|| JournalError::Corrupt(format!("bad job state {state:?}")))?,
        until: r.get(4),
        planned: r.get::<_, i64>(5) as u64,
        replayed: r.get::<_, i64>(6) as u64,
        skipped: r.get::<_, i64>(7) as u64,
        created_by: r.get(8),
        created_at: r.get(9),
        updated_at: r.get(10),
    })
}

/// One job; `lock` takes its row lock (a step in progress elsewhere is waited for).
pub(crate) async fn replay_job(
    c: &impl GenericClient,
    id: Uuid,
    lock: bool,
) -> Result<Option<ReplayJob>> {
    let q = format!(
        "SELECT {JOB_COLS} FROM replay_jobs WHERE id = $1{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    c.query_opt(&q, &[&id])
        .await
        .map_err(pg)?
        .map(|r| job_row(&r))
        .transpose()
}

pub(super) async fn replay_jobs(c: &impl GenericClient, limit: usize) -> Result<Vec<ReplayJob>> {
    c.query(
        &format!("SELECT {JOB_COLS} FROM replay_jobs ORDER BY created_at DESC, id DESC LIMIT $1"),
        &[&(limit as i64)],
    )
    .await
    .map_err(pg)?
    .iter()
    .map(job_row)
    .collect()
}

pub(super) async fn holds(c: &impl GenericClient) -> Result<Vec<LegalHold>> {
    Ok(c.query(
        "SELECT id, root_id, force, case_ref, reason, placed_by, placed_at
             FROM legal_holds WHERE released_at IS NULL ORDER BY placed_at, id",
        &[],
    )
    .await
    .map_err(pg)?
    .iter()
    .map(|r| LegalHold {
        id: r.get(0),
        target: match r.get::<_, Option<Uuid>>(1) {
            Some(id) => HoldTarget::Exchange { id },
            None => HoldTarget::Case {
                force: r.get::<_, Option<String>>(2).unwrap_or_default(),
                case_ref: r.get::<_, Option<String>>(3).unwrap_or_default(),
            },
        },
        reason: r.get(4),
        placed_by: r.get(5),
        placed_at: r.get(6),
    })
    .collect())
}
