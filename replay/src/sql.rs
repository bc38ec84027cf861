//! SQL shared by the backends: the `WHERE` clause an [`ExchangeFilter`] stands for.
//!
//! Only the keys that are set become conditions (no `? IS NULL OR …`), so each backend's planner
//! sees plain equality and range predicates and can use the `(key, created, seq)` indexes both
//! schemas have.

use crate::{ExchangeFilter, Status};
use time::OffsetDateTime;
use uuid::Uuid;

/// The SQL dialect to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// `?N` placeholders, times as epoch milliseconds in `created_ms`, ids as text.
    Sqlite,
    /// `$N` placeholders, `created_at timestamptz`, ids as `uuid`.
    Postgres,
}

/// A bound value.
#[derive(Debug, Clone)]
pub(crate) enum Param {
    /// Text.
    Text(String),
    /// Integer.
    Int(i64),
    /// A time (PostgreSQL `timestamptz`).
    Time(OffsetDateTime),
    /// An id (PostgreSQL `uuid`).
    Uuid(Uuid),
}

impl Dialect {
    /// Placeholder number `n` (1-based).
    pub(crate) fn ph(self, n: usize) -> String {
        match self {
            Dialect::Sqlite => format!("?{n}"),
            Dialect::Postgres => format!("${n}"),
        }
    }

    /// The column holding the journal time.
    pub(crate) fn created(self) -> &'static str {
        match self {
            Dialect::Sqlite => "created_ms",
            Dialect::Postgres => "created_at",
        }
    }

    /// A time as this dialect binds it.
    pub(crate) fn time(self, t: OffsetDateTime) -> Param {
        match self {
            Dialect::Sqlite => Param::Int((t.unix_timestamp_nanos() / 1_000_000) as i64),
            Dialect::Postgres => Param::Time(t),
        }
    }

    /// An id as this dialect binds it.
    pub(crate) fn id(self, id: Uuid) -> Param {
        match self {
            Dialect::Sqlite => Param::Text(id.to_string()),
            Dialect::Postgres => Param::Uuid(id),
        }
    }
}

/// Conditions and their parameters, built up in order.
#[derive(Debug, Default)]
pub(crate) struct Conditions {
    /// `a = ?1`, `b < ?2`, … (joined with AND by [`Conditions::sql`]).
    pub(crate) parts: Vec<String>,
    /// The values, in placeholder order.
    pub(crate) params: Vec<Param>,
}

impl Conditions {
    /// Adds `template` with `{}` replaced by the next placeholder.
    pub(crate) fn push(&mut self, d: Dialect, template: &str, p: Param) {
        self.params.push(p);
        self.parts
            .push(template.replacen("{}", &d.ph(self.params.len()), 1));
    }

    /// Adds a condition without a parameter.
    pub(crate) fn raw(&mut self, cond: &str) {
        self.parts.push(cond.to_owned());
    }

    /// `WHERE …` or the empty string.
    pub(crate) fn sql(&self) -> String {
        if self.parts.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", self.parts.join(" AND "))
        }
    }
}

/// The conditions `f` stands for, on table alias `e` (give `""` for none).
pub(crate) fn filter(d: Dialect, f: &ExchangeFilter, e: &str) -> Conditions {
    let col = |c: &str| {
        if e.is_empty() {
            c.to_owned()
        } else {
            format!("{e}.{c}")
        }
    };
    let mut w = Conditions::default();
    let text = |w: &mut Conditions, c: &str, v: &Option<String>| {
        if let Some(v) = v {
            w.push(d, &format!("{} = {{}}", col(c)), Param::Text(v.clone()));
        }
    };
    if let Some(s) = f.status {
        w.push(
            d,
            &format!("{} = {{}}", col("status")),
            Param::Text(Status::as_str(s).to_owned()),
        );
    }
    text(&mut w, "force", &f.force);
    text(&mut w, "kind", &f.kind);
    text(&mut w, "target_system", &f.target);
    text(&mut w, "last_error_class", &f.error_class);
    // Values a family shares: every replay carries its root's. On SQLite only roots have
    // entries in these columns' indexes (migration 0033): the roots are found there, and their
    // families (the roots themselves included: a root's `root_id` is its own id) through
    // `exchanges_root`. Same rows as comparing the column itself.
    let family = |w: &mut Conditions, c: &str, v: &Option<String>| match (d, v) {
        (Dialect::Sqlite, Some(v)) => w.push(
            d,
            &format!(
                "{} IN (SELECT r.id FROM exchanges r WHERE r.parent_id IS NULL AND r.{c} = {{}})",
                col("root_id")
            ),
            Param::Text(v.clone()),
        ),
        _ => text(w, c, v),
    };
    family(&mut w, "case_ref", &f.case_ref);
    family(&mut w, "idempotency_key", &f.submission_id);
    family(&mut w, "correlation_id", &f.correlation_id);
    if let Some(t) = f.from {
        w.push(d, &format!("{} >= {{}}", col(d.created())), d.time(t));
    }
    if let Some(t) = f.to {
        w.push(d, &format!("{} < {{}}", col(d.created())), d.time(t));
    }
    if let Some(p) = f.parent {
        w.push(d, &format!("{} = {{}}", col("parent_id")), d.id(p));
    }
    match f.replays {
        Some(true) => w.raw(&format!("{} IS NOT NULL", col("parent_id"))),
        Some(false) => w.raw(&format!("{} IS NULL", col("parent_id"))),
        None => {}
    }
    w
}

/// Checks an exchange id is a UUID v7 whose time is not absurdly far ahead of `now` (its time
/// chooses the PostgreSQL partition, which must exist; both backends check the same).
pub(crate) fn check_exchange_id(id: Uuid, now: OffsetDateTime) -> Result<(), String> {
    if id.get_version_num() != 7 {
        return Err(format!("exchange id {id} is not a UUID v7"));
    }
    let (secs, _) = id.get_timestamp().map(|t| t.to_unix()).unwrap_or((0, 0));
    if secs as i64 > now.unix_timestamp() + 86_400 {
        return Err(format!(
            "exchange id {id} carries a time more than a day in the future"
        ));
    }
    Ok(())
}

/// One numbered migration: version, name, SQL.
pub(crate) type Migration = (i64, &'static str, &'static str);

/// The migrations of `known` not yet applied, in order, given the `(version, name)` rows of
/// `schema_migrations`. Each migration is looked up by its own number, not by the highest one
/// applied, so one skipped in between (two branches numbering theirs apart, merged in the other
/// order) is still applied. A row this build does not know — a newer build's migration, or a
/// number reused for another change — is refused: the schema is not what this build expects.
pub(crate) fn pending_migrations(
    known: &'static [Migration],
    applied: &[(i64, String)],
) -> crate::Result<Vec<&'static Migration>> {
    for (version, name) in applied {
        match known.iter().find(|m| m.0 == *version) {
            Some(m) if m.1 == name => {}
            Some(m) => {
                return Err(crate::JournalError::Corrupt(format!(
                    "journal migration {version} was applied as {name:?}, this build calls it \
                     {:?}",
                    m.1
                )));
            }
            None => {
                return Err(crate::JournalError::Corrupt(format!(
                    "journal migration {version} ({name}) is newer than this build knows \
                     (latest {})",
                    known.last().map_or(0, |m| m.0)
                )));
            }
        }
    }
    Ok(known
        .iter()
        .filter(|m| !applied.iter().any(|(v, _)| *v == m.0))
        .collect())
}

#[cfg(test)]
mod migration_tests {
    use super::pending_migrations;

    static KNOWN: &[super::Migration] = &[(1, "a", ""), (2, "b", ""), (3, "c", "")];

    fn rows(v: &[(i64, &str)]) -> Vec<(i64, String)> {
        v.iter().map(|(n, s)| (*n, (*s).to_owned())).collect()
    }

    #[test]
    fn a_migration_skipped_in_between_is_still_applied() {
        let p = pending_migrations(KNOWN, &rows(&[(1, "a"), (3, "c")])).unwrap();
        assert_eq!(p.iter().map(|m| m.0).collect::<Vec<_>>(), vec![2]);
        let all = pending_migrations(KNOWN, &[]).unwrap();
        assert_eq!(all.len(), 3);
        assert!(
            pending_migrations(KNOWN, &rows(&[(1, "a"), (2, "b"), (3, "c")]))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn an_unknown_or_renamed_migration_is_refused() {
        let newer = pending_migrations(KNOWN, &rows(&[(4, "d")])).unwrap_err();
        assert!(
            newer.to_string().contains("migration 4 (d) is newer"),
            "{newer}"
        );
        let renamed = pending_migrations(KNOWN, &rows(&[(2, "x")])).unwrap_err();
        assert!(
            renamed.to_string().contains("applied as \"x\""),
            "{renamed}"
        );
    }
}
