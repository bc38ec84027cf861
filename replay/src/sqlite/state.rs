//! Durable key/value state on SQLite (see [`crate::state`]).

use crate::{Result, StateEntry, state::conflict};
use rusqlite::{Connection, OptionalExtension, params};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StateEntry> {
    let version: i64 = r.get(2)?;
    let at: String = r.get(4)?;
    Ok(StateEntry {
        scope: r.get(0)?,
        key: r.get(1)?,
        version: version as u64,
        value: r.get(3)?,
        updated_at: OffsetDateTime::parse(&at, &Rfc3339).unwrap_or(OffsetDateTime::UNIX_EPOCH),
    })
}

pub(super) fn get(c: &Connection, scope: &str, key: &str) -> Result<Option<StateEntry>> {
    Ok(c.prepare_cached(
        "SELECT scope, key, version, value, updated_at FROM state WHERE scope = ?1 AND key = ?2",
    )?
    .query_row(params![scope, key], row)
    .optional()?)
}

pub(super) fn list(c: &Connection, scope: &str, prefix: &str) -> Result<Vec<StateEntry>> {
    // Prefix match on the bytes, so `%` and `_` in keys mean nothing special.
    let mut stmt = c.prepare_cached(
        "SELECT scope, key, version, value, updated_at FROM state
         WHERE scope = ?1 AND substr(key, 1, length(?2)) = ?2 ORDER BY key",
    )?;
    let rows = stmt.query_map(params![scope, prefix], row)?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

pub(super) fn put(
    c: &Connection,
    scope: &str,
    key: &str,
    expected: Option<u64>,
    value: Vec<u8>,
) -> Result<StateEntry> {
    let now = OffsetDateTime::now_utc();
    let at = super::write::rfc3339(now);
    let changed = match expected {
        None => c.execute(
            "INSERT INTO state (scope, key, version, value, updated_at) VALUES (?1, ?2, 1, ?3, ?4)
             ON CONFLICT (scope, key) DO NOTHING",
            params![scope, key, value, at],
        )?,
        Some(v) => c.execute(
            "UPDATE state SET version = version + 1, value = ?3, updated_at = ?4
             WHERE scope = ?1 AND key = ?2 AND version = ?5",
            params![scope, key, value, at, v as i64],
        )?,
    };
    if changed != 1 {
        return Err(conflict(scope, key, expected));
    }
    Ok(StateEntry {
        scope: scope.to_owned(),
        key: key.to_owned(),
        version: expected.map_or(1, |v| v + 1),
        value,
        updated_at: now,
    })
}
