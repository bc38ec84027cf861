//! Monthly time partitions of `exchanges` and `attempts`.
//!
//! Both tables are range-partitioned on the exchange id. A UUID v7 starts with its Unix time in
//! milliseconds (48 bits), so the ids of one calendar month (UTC) form one range, from the
//! smallest UUID of the month's first millisecond to that of the next month's. Partitions are
//! named `exchanges_pYYYYMM` / `attempts_pYYYYMM`; the journal creates the ones around now
//! (last month to three months ahead) at open and hourly in a server, so the `_default`
//! partitions only ever see ids far in the past. Dropping a month is a `DROP TABLE`.

use super::pg;
use crate::{JournalError, Result, ops::millis};
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time};
use tokio_postgres::GenericClient;
use uuid::Uuid;

/// The smallest UUID v7 of millisecond `ms`.
pub fn uuid_floor(ms: i64) -> Uuid {
    let ms = ms.max(0) as u128 & 0xffff_ffff_ffff;
    Uuid::from_u128(ms << 80)
}

/// The first instant of the month of `t` (UTC).
fn month_start(t: OffsetDateTime) -> OffsetDateTime {
    let t = t.to_offset(time::UtcOffset::UTC);
    let d = Date::from_calendar_date(t.year(), t.month(), 1).unwrap_or(t.date());
    PrimitiveDateTime::new(d, Time::MIDNIGHT).assume_utc()
}

/// The first instant of the month after the month starting at `start`.
fn next_month(start: OffsetDateTime) -> OffsetDateTime {
    let (y, m) = match start.month() {
        Month::December => (start.year() + 1, Month::January),
        m => (start.year(), m.next()),
    };
    let d = Date::from_calendar_date(y, m, 1).unwrap_or(start.date());
    PrimitiveDateTime::new(d, Time::MIDNIGHT).assume_utc()
}

/// One monthly partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// `YYYYMM`.
    pub suffix: String,
    /// First instant covered.
    pub start: OffsetDateTime,
    /// First instant not covered.
    pub end: OffsetDateTime,
}

impl Partition {
    /// The partition holding time `t`.
    pub fn of(t: OffsetDateTime) -> Self {
        let start = month_start(t);
        Self {
            suffix: format!("{:04}{:02}", start.year(), start.month() as u8),
            start,
            end: next_month(start),
        }
    }

    /// `FROM ('…') TO ('…')` bounds as UUIDs.
    pub fn bounds(&self) -> (Uuid, Uuid) {
        (uuid_floor(millis(self.start)), uuid_floor(millis(self.end)))
    }
}

/// Months from `from` to `to`, inclusive.
pub fn months(from: OffsetDateTime, to: OffsetDateTime) -> Vec<Partition> {
    let mut out = Vec::new();
    let mut p = Partition::of(from);
    let last = Partition::of(to);
    while p.start <= last.start {
        let next = Partition::of(p.end);
        out.push(p);
        p = next;
    }
    out
}

/// Creates the partitions from last month to three months after `now`.
pub async fn ensure_around(c: &impl GenericClient, now: OffsetDateTime) -> Result<()> {
    ensure(
        c,
        now - time::Duration::days(31),
        now + time::Duration::days(92),
    )
    .await
}

/// Creates any missing monthly partition between `from` and `to`, under an advisory lock so
/// nodes do not race each other.
pub async fn ensure(
    c: &impl GenericClient,
    from: OffsetDateTime,
    to: OffsetDateTime,
) -> Result<()> {
    let existing: Vec<String> = c
        .query(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
             JOIN pg_class p ON p.oid = i.inhparent
             WHERE p.relname = 'exchanges' AND p.relnamespace = current_schema()::regnamespace",
            &[],
        )
        .await
        .map_err(pg)?
        .into_iter()
        .map(|r| r.get(0))
        .collect();
    let missing: Vec<Partition> = months(from, to)
        .into_iter()
        .filter(|p| !existing.contains(&format!("exchanges_p{}", p.suffix)))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let mut sql = String::from("BEGIN; SELECT pg_advisory_xact_lock(7283946121);\n");
    for p in &missing {
        let (lo, hi) = p.bounds();
        for table in ["exchanges", "attempts"] {
            sql.push_str(&format!(
                "CREATE TABLE IF NOT EXISTS {table}_p{s} PARTITION OF {table}
                     FOR VALUES FROM ('{lo}') TO ('{hi}');\n",
                s = p.suffix
            ));
        }
    }
    sql.push_str("COMMIT;");
    match c.batch_execute(&sql).await {
        Ok(()) => {
            tracing::info!(created = missing.len(), "created journal time partitions");
            Ok(())
        }
        Err(e) => {
            let _ = c.batch_execute("ROLLBACK").await;
            Err(match pg(e) {
                JournalError::Conflict(m) => JournalError::Unavailable(m),
                other => other,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn a_month_is_the_range_of_its_v7_ids() {
        let p = Partition::of(datetime!(2026-11-22 10:00 UTC));
        assert_eq!(p.suffix, "202611");
        assert_eq!(p.start, datetime!(2026-11-01 0:00 UTC));
        assert_eq!(p.end, datetime!(2026-12-01 0:00 UTC));
        let (lo, hi) = p.bounds();
        let inside = Uuid::new_v7(uuid::Timestamp::from_unix(
            uuid::NoContext,
            datetime!(2026-11-30 23:59:59.999 UTC).unix_timestamp() as u64,
            999_000_000,
        ));
        assert!(lo <= inside && inside < hi, "{lo} <= {inside} < {hi}");
        let next = Uuid::new_v7(uuid::Timestamp::from_unix(
            uuid::NoContext,
            datetime!(2026-12-01 0:00 UTC).unix_timestamp() as u64,
            0,
        ));
        assert!(next >= hi);
        assert_eq!(
            months(
                datetime!(2026-11-22 0:00 UTC),
                datetime!(2027-02-01 0:00 UTC)
            )
            .iter()
            .map(|p| p.suffix.as_str())
            .collect::<Vec<_>>(),
            ["202611", "202612", "202701", "202702"]
        );
    }
}
