//! Read-side queries, run on pooled read-only connections.

use super::write::parse_uuid;
use crate::{
    Attempt, AttemptOutcome, AuditEvent, AuditRecord, Direction, ExchangeDetail, ExchangeFilter,
    ExchangeSummary, HoldTarget, JournalError, JournalStats, LegalHold, Page, ReplayJob,
    ReplayJobState, Result, Status, StatusCount, StoredPayloads, sql,
};
use rusqlite::{Connection, OptionalExtension, Row, params, params_from_iter, types::Value};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};
use uuid::Uuid;

fn parse_time(s: &str) -> Result<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339)
        .map_err(|e| JournalError::Corrupt(format!("bad time {s:?}: {e}")))
}

fn from_millis(ms: i64) -> Result<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .map_err(|e| JournalError::Corrupt(format!("bad time {ms}: {e}")))
}

const SUMMARY_COLS: &str = "seq, id, force, kind, target_system, status, idempotency_key, case_ref,
    attempts, parent_id, created_at, last_error_class, target_ref";

fn summary(r: &Row<'_>) -> Result<(i64, ExchangeSummary)> {
    let seq: i64 = r.get(0)?;
    let status: String = r.get(5)?;
    let parent: Option<String> = r.get(9)?;
    let created: String = r.get(10)?;
    Ok((
        seq,
        ExchangeSummary {
            id: parse_uuid(&r.get::<_, String>(1)?)?,
            force: r.get(2)?,
            kind: r.get(3)?,
            target_system: r.get(4)?,
            status: status.parse().map_err(JournalError::Corrupt)?,
            submission_id: r.get(6)?,
            case_ref: r.get(7)?,
            attempt_count: r.get::<_, i64>(8)? as u32,
            parent_id: parent.as_deref().map(parse_uuid).transpose()?,
            created_at: parse_time(&created)?,
            last_error_class: r.get(11)?,
            target_ref: r.get(12)?,
        },
    ))
}

pub(super) fn get(c: &Connection, id: Uuid) -> Result<Option<ExchangeDetail>> {
    let id_s = id.to_string();
    let mut stmt = c.prepare_cached(&format!(
        "SELECT {SUMMARY_COLS}, direction, source_system, api_version, model_version,
                idempotency_key, correlation_id, next_attempt_ms, last_error, mapping_version,
                payload_type, length(coalesce((SELECT p.payload FROM exchanges p
                                        WHERE p.seq = exchanges.payload_seq), payload)),
                requested_mapping, replay_job_id,
                payloads_deleted_ms, root_id, force, case_ref
         FROM exchanges WHERE id = ?1"
    ))?;
    let mut rows = stmt.query(params![id_s])?;
    let Some(r) = rows.next()? else {
        return Ok(None);
    };
    let (_, summary) = summary(r)?;
    let direction = match r.get::<_, String>(13)?.as_str() {
        "outbound" => Direction::Outbound,
        _ => Direction::Inbound,
    };
    let next_ms: Option<i64> = r.get(19)?;
    let mut detail = ExchangeDetail {
        summary,
        direction,
        source_system: r.get(14)?,
        api_version: r.get(15)?,
        model_version: r.get(16)?,
        idempotency_key: r.get(17)?,
        correlation_id: r.get(18)?,
        next_attempt_at: next_ms.map(from_millis).transpose()?,
        last_error: r.get(20)?,
        mapping_version: r.get(21)?,
        attempts: Vec::new(),
        children: Vec::new(),
        payload_type: r.get(22)?,
        payload_bytes: r.get::<_, i64>(23)? as u64,
        requested_mapping_version: r.get(24)?,
        replay_job_id: r
            .get::<_, Option<String>>(25)?
            .as_deref()
            .map(parse_uuid)
            .transpose()?,
        legal_hold: false,
        payloads_deleted_at: r.get::<_, Option<i64>>(26)?.map(from_millis).transpose()?,
    };
    let (root, force, case): (String, String, Option<String>) =
        (r.get(27)?, r.get(28)?, r.get(29)?);
    drop(rows);
    detail.legal_hold = c
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM legal_holds WHERE released_at IS NULL
                 AND (root_id = ?1 OR (force = ?2 AND case_ref = ?3)))",
        )?
        .query_row(params![root, force, case], |r| r.get(0))?;
    let mut a = c.prepare_cached(
        "SELECT number, started_at, finished_at, outcome, error_class, detail, http_status, node
         FROM attempts WHERE exchange_id = ?1 ORDER BY number",
    )?;
    let mut rows = a.query(params![id_s])?;
    while let Some(r) = rows.next()? {
        let outcome = match r.get::<_, String>(3)?.as_str() {
            "delivered" => AttemptOutcome::Delivered,
            "retry" => AttemptOutcome::Retry,
            _ => AttemptOutcome::Parked,
        };
        detail.attempts.push(Attempt {
            number: r.get::<_, i64>(0)? as u32,
            started_at: parse_time(&r.get::<_, String>(1)?)?,
            finished_at: parse_time(&r.get::<_, String>(2)?)?,
            outcome,
            error_class: r.get(4)?,
            detail: r.get(5)?,
            http_status: r.get::<_, Option<i64>>(6)?.map(|s| s as u16),
            node: r.get(7)?,
        });
    }
    drop(rows);
    let mut ch = c.prepare_cached("SELECT id FROM exchanges WHERE parent_id = ?1 ORDER BY seq")?;
    let mut rows = ch.query(params![id_s])?;
    while let Some(r) = rows.next()? {
        detail.children.push(parse_uuid(&r.get::<_, String>(0)?)?);
    }
    Ok(Some(detail))
}

/// Binds a [`sql::Param`] for rusqlite.
pub(super) fn bind(p: &sql::Param) -> Value {
    match p {
        sql::Param::Text(s) => Value::Text(s.clone()),
        sql::Param::Int(i) => Value::Integer(*i),
        sql::Param::Time(t) => Value::Integer((t.unix_timestamp_nanos() / 1_000_000) as i64),
        sql::Param::Uuid(u) => Value::Text(u.to_string()),
    }
}

/// One page of the exchanges `w` selects, newest first.
pub(super) fn list_sql(w: &sql::Conditions, limit: usize) -> String {
    format!(
        "SELECT {SUMMARY_COLS} FROM exchanges {} ORDER BY created_ms DESC, seq DESC LIMIT {limit}",
        w.sql()
    )
}

pub(super) fn list(
    c: &Connection,
    f: &ExchangeFilter,
    after: Option<i64>,
    limit: usize,
) -> Result<Page<ExchangeSummary>> {
    let d = sql::Dialect::Sqlite;
    let mut w = sql::filter(d, f, "");
    if let Some(seq) = after {
        // Keyset: strictly after the row the cursor names, in (created, seq) order; a cursor
        // whose row is gone (retention) continues by sequence alone.
        let at: Option<i64> = c
            .prepare_cached("SELECT created_ms FROM exchanges WHERE seq = ?1")?
            .query_row(params![seq], |r| r.get(0))
            .optional()?;
        match at {
            Some(ms) => {
                w.params.push(sql::Param::Int(ms));
                w.params.push(sql::Param::Int(seq));
                let n = w.params.len();
                w.raw(&format!("(created_ms, seq) < (?{}, ?{n})", n - 1));
            }
            None => w.push(d, "seq < {}", sql::Param::Int(seq)),
        }
    }
    let mut stmt = c.prepare_cached(&list_sql(&w, limit))?;
    let mut rows = stmt.query(params_from_iter(w.params.iter().map(bind)))?;
    let mut items = Vec::new();
    let mut last = None;
    while let Some(r) = rows.next()? {
        let (seq, s) = summary(r)?;
        last = Some(seq);
        items.push(s);
    }
    let next = if items.len() == limit { last } else { None };
    Ok(Page { items, next })
}

/// The number of exchanges `w` selects.
pub(super) fn count_sql(w: &sql::Conditions) -> String {
    format!("SELECT count(*) FROM exchanges {}", w.sql())
}

pub(super) fn count(c: &Connection, f: &ExchangeFilter) -> Result<u64> {
    let w = sql::filter(sql::Dialect::Sqlite, f, "");
    let n: i64 = c
        .prepare_cached(&count_sql(&w))?
        .query_row(params_from_iter(w.params.iter().map(bind)), |r| r.get(0))?;
    Ok(n as u64)
}

const JOB_COLS: &str = "id, filter, options, state, until_ms, planned, replayed, skipped,
    created_by, created_at, updated_at";

fn job_row(r: &Row<'_>) -> Result<ReplayJob> {
    let state: String = r.get(3)?;
    let options: String = r.get(2)?;
    Ok(ReplayJob {
        id: parse_uuid(&r.get::<_, String>(0)?)?,
        filter: super::ops::parse_filter(&r.get::<_, String>(1)?)?,
        options: serde_json::from_str(&options)
            .map_err(|e| JournalError::Corrupt(format!("bad job options: {e}")))?,
        state: ReplayJobState::parse(&state)
            .ok_or_else(|| JournalError::Corrupt(format!("bad job state {state:?}")))?,
        until: from_millis(r.get(4)?)?,
        planned: r.get::<_, i64>(5)? as u64,
        replayed: r.get::<_, i64>(6)? as u64,
        skipped: r.get::<_, i64>(7)? as u64,
        created_by: r.get(8)?,
        created_at: parse_time(&r.get::<_, String>(9)?)?,
        updated_at: parse_time(&r.get::<_, String>(10)?)?,
    })
}

pub(super) fn replay_job(c: &Connection, id: Uuid) -> Result<Option<ReplayJob>> {
    let mut stmt =
        c.prepare_cached(&format!("SELECT {JOB_COLS} FROM replay_jobs WHERE id = ?1"))?;
    let mut rows = stmt.query(params![id.to_string()])?;
    match rows.next()? {
        Some(r) => Ok(Some(job_row(r)?)),
        None => Ok(None),
    }
}

pub(super) fn replay_jobs(c: &Connection, limit: usize) -> Result<Vec<ReplayJob>> {
    let mut stmt = c.prepare_cached(&format!(
        "SELECT {JOB_COLS} FROM replay_jobs ORDER BY created_at DESC, id DESC LIMIT ?1"
    ))?;
    let mut rows = stmt.query(params![limit as i64])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(job_row(r)?);
    }
    Ok(out)
}

pub(super) fn holds(c: &Connection) -> Result<Vec<LegalHold>> {
    let mut stmt = c.prepare_cached(
        "SELECT h.id, h.root_id, h.force, h.case_ref, h.reason, h.placed_by, h.placed_at
         FROM legal_holds h WHERE h.released_at IS NULL ORDER BY h.placed_at, h.id",
    )?;
    let mut rows = stmt.query([])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let root: Option<String> = r.get(1)?;
        let target = match root {
            Some(root) => HoldTarget::Exchange {
                id: parse_uuid(&root)?,
            },
            None => HoldTarget::Case {
                force: r.get::<_, Option<String>>(2)?.unwrap_or_default(),
                case_ref: r.get::<_, Option<String>>(3)?.unwrap_or_default(),
            },
        };
        out.push(LegalHold {
            id: parse_uuid(&r.get::<_, String>(0)?)?,
            target,
            reason: r.get(4)?,
            placed_by: r.get(5)?,
            placed_at: parse_time(&r.get::<_, String>(6)?)?,
        });
    }
    Ok(out)
}

pub(super) fn payloads(c: &Connection, id: Uuid) -> Result<Option<StoredPayloads>> {
    Ok(c.prepare_cached(
        "SELECT e.payload_type, coalesce(p.payload, e.payload), coalesce(p.response, e.response),
                e.canonical, e.target_payload
         FROM exchanges e LEFT JOIN exchanges p ON p.seq = e.payload_seq
         WHERE e.id = ?1",
    )?
    .query_row(params![id.to_string()], |r| {
        Ok(StoredPayloads {
            payload_type: r.get(0)?,
            original: r.get(1)?,
            response: r.get(2)?,
            canonical: r.get(3)?,
            target_payload: r.get(4)?,
        })
    })
    .optional()?)
}

pub(super) fn audit_records(c: &Connection, from: u64, limit: usize) -> Result<Vec<AuditRecord>> {
    let mut stmt = c.prepare_cached(
        "SELECT seq, time, actor, role, force, action, object_type, object_id, result, source_ip,
                user_agent, correlation_id, event_uid, detail, prev_hash, hash,
                leaf_hash, pruned_by
         FROM audit WHERE seq >= ?1 ORDER BY seq LIMIT ?2",
    )?;
    let mut rows = stmt.query(params![from as i64, limit as i64])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(audit_row(r)?);
    }
    Ok(out)
}

/// The columns `seq, time, actor, role, force, action, object_type, object_id, result,
/// source_ip, user_agent, correlation_id, event_uid, detail, prev_hash, hash, leaf_hash,
/// pruned_by` as a record.
pub(super) fn audit_row(r: &rusqlite::Row<'_>) -> Result<AuditRecord> {
    let detail: Option<String> = r.get(13)?;
    let uid: String = r.get(12)?;
    Ok(AuditRecord {
        seq: r.get::<_, i64>(0)? as u64,
        event: AuditEvent {
            time: parse_time(&r.get::<_, String>(1)?)?,
            actor: r.get(2)?,
            role: r.get(3)?,
            force: r.get(4)?,
            action: r.get(5)?,
            object_type: r.get(6)?,
            object_id: r.get(7)?,
            result: r.get(8)?,
            source_ip: r.get(9)?,
            user_agent: r.get(10)?,
            correlation_id: r.get(11)?,
            event_uid: Uuid::parse_str(&uid)
                .map_err(|e| JournalError::Corrupt(format!("bad event uid {uid:?}: {e}")))?,
            detail: detail
                .map(|d| serde_json::from_str(&d))
                .transpose()
                .map_err(|e| JournalError::Corrupt(format!("bad audit detail: {e}")))?,
        },
        prev_hash: r.get(14)?,
        hash: r.get(15)?,
        pruned: match r.get::<_, Option<i64>>(17)? {
            Some(by) => Some(crate::model::Pruned {
                by: by as u64,
                leaf_hash: r.get::<_, Option<String>>(16)?.unwrap_or_default(),
            }),
            None => None,
        },
    })
}

pub(super) fn stats(c: &Connection) -> Result<JournalStats> {
    let mut st = JournalStats::default();
    let mut stmt = c.prepare_cached(
        "SELECT force, kind, status, n FROM exchange_counts WHERE n != 0
         ORDER BY force, kind, status",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let status: Status = r
            .get::<_, String>(2)?
            .parse()
            .map_err(JournalError::Corrupt)?;
        let n = r.get::<_, i64>(3)?.max(0) as u64;
        match status {
            Status::Pending => st.pending += n,
            Status::Delivered => st.delivered += n,
            Status::Parked => st.parked += n,
        }
        st.groups.push(StatusCount {
            force: r.get(0)?,
            kind: r.get(1)?,
            status,
            count: n,
        });
    }
    drop(rows);
    let oldest = |status: &str| -> Result<Option<OffsetDateTime>> {
        let ms: Option<i64> = c
            .prepare_cached("SELECT min(created_ms) FROM exchanges WHERE status = ?1")?
            .query_row(params![status], |r| r.get(0))?;
        ms.map(from_millis).transpose()
    };
    st.oldest_pending = oldest("pending")?;
    st.oldest_parked = oldest("parked")?;
    let audit: i64 = c.query_row("SELECT coalesce(max(seq), 0) FROM audit", [], |r| r.get(0))?;
    st.audit_records = audit as u64;
    st.replay_jobs_running = c.query_row(
        "SELECT count(*) FROM replay_jobs WHERE state = 'running'",
        [],
        |r| r.get::<_, i64>(0),
    )? as u64;
    st.legal_holds = c.query_row(
        "SELECT count(*) FROM legal_holds WHERE released_at IS NULL",
        [],
        |r| r.get::<_, i64>(0),
    )? as u64;
    Ok(st)
}
