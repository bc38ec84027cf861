//! Durable key/value state on PostgreSQL (see [`crate::state`]).

use super::pg;
use crate::{Result, StateEntry, state::conflict};
use tokio_postgres::{Client, Row};

fn row(r: &Row) -> StateEntry {
    let version: i64 = r.get(2);
    StateEntry {
        scope: r.get(0),
        key: r.get(1),
        version: version as u64,
        value: r.get(3),
        updated_at: r.get(4),
    }
}

pub(super) async fn get(c: &Client, scope: &str, key: &str) -> Result<Option<StateEntry>> {
    let r = c
        .query_opt(
            "SELECT scope, key, version, value, updated_at FROM state WHERE scope = $1 AND key = $2",
            &[&scope, &key],
        )
        .await
        .map_err(pg)?;
    Ok(r.as_ref().map(row))
}

pub(super) async fn list(c: &Client, scope: &str, prefix: &str) -> Result<Vec<StateEntry>> {
    // Prefix match on the text, so `%` and `_` in keys mean nothing special.
    let rows = c
        .query(
            "SELECT scope, key, version, value, updated_at FROM state
             WHERE scope = $1 AND left(key, length($2)) = $2 ORDER BY key COLLATE \"C\"",
            &[&scope, &prefix],
        )
        .await
        .map_err(pg)?;
    Ok(rows.iter().map(row).collect())
}

pub(super) async fn put(
    c: &Client,
    scope: &str,
    key: &str,
    expected: Option<u64>,
    value: &[u8],
) -> Result<StateEntry> {
    let r = match expected {
        None => c
            .query_opt(
                "INSERT INTO state (scope, key, version, value, updated_at)
                 VALUES ($1, $2, 1, $3, now()) ON CONFLICT (scope, key) DO NOTHING
                 RETURNING scope, key, version, value, updated_at",
                &[&scope, &key, &value],
            )
            .await
            .map_err(pg)?,
        Some(v) => c
            .query_opt(
                "UPDATE state SET version = version + 1, value = $3, updated_at = now()
                 WHERE scope = $1 AND key = $2 AND version = $4
                 RETURNING scope, key, version, value, updated_at",
                &[&scope, &key, &value, &(v as i64)],
            )
            .await
            .map_err(pg)?,
    };
    r.as_ref()
        .map(row)
        .ok_or_else(|| conflict(scope, key, expected))
}
