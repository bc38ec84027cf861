//! Read-side queries, run on pooled read-only connections.

use super::write::parse_uuid;
use crate::{
    Attempt, AttemptOutcome, AuditEvent, AuditRecord, Direction, ExchangeDetail, ExchangeFilter,
    ExchangeSummary, JournalError, JournalStats, Page, Result, Status, StoredPayloads,
};
use rusqlite::{Connection, OptionalExtension, Row, params};
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
                payload_type, length(payload)
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
    };
    drop(rows);
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

pub(super) fn list(
    c: &Connection,
    f: &ExchangeFilter,
    after: Option<i64>,
    limit: usize,
) -> Result<Page<ExchangeSummary>> {
    let mut stmt = c.prepare_cached(&format!(
        "SELECT {SUMMARY_COLS} FROM exchanges
         WHERE (?1 IS NULL OR seq < ?1) AND (?2 IS NULL OR status = ?2)
           AND (?3 IS NULL OR force = ?3) AND (?4 IS NULL OR kind = ?4)
         ORDER BY seq DESC LIMIT ?5"
    ))?;
    let mut rows = stmt.query(params![
        after,
        f.status.map(Status::as_str),
        f.force,
        f.kind,
        limit as i64
    ])?;
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

pub(super) fn payloads(c: &Connection, id: Uuid) -> Result<Option<StoredPayloads>> {
    Ok(c.prepare_cached(
        "SELECT payload_type, payload, response, canonical, target_payload FROM exchanges
         WHERE id = ?1",
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
                user_agent, correlation_id, event_uid, detail, prev_hash, hash
         FROM audit WHERE seq >= ?1 ORDER BY seq LIMIT ?2",
    )?;
    let mut rows = stmt.query(params![from as i64, limit as i64])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let detail: Option<String> = r.get(13)?;
        let uid: String = r.get(12)?;
        out.push(AuditRecord {
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
        });
    }
    Ok(out)
}

pub(super) fn stats(c: &Connection) -> Result<JournalStats> {
    let count = |status: &str| -> Result<u64> {
        Ok(
            c.prepare_cached("SELECT count(*) FROM exchanges WHERE status = ?1")?
                .query_row(params![status], |r| r.get::<_, i64>(0))? as u64,
        )
    };
    let audit: i64 = c.query_row("SELECT coalesce(max(seq), 0) FROM audit", [], |r| r.get(0))?;
    Ok(JournalStats {
        pending: count("pending")?,
        delivered: count("delivered")?,
        parked: count("parked")?,
        audit_records: audit as u64,
    })
}
