-- 0032: the exchanges.status constraint as three comparisons instead of an IN list.
--
-- Same rule, cheaper to check: SQLite evaluates `status IN ('pending', 'delivered', 'parked')`
-- by building a temporary index of the three values and dropping it again, on every statement
-- that writes `status` (accept, claim-free status changes, every delivery attempt, every replay
-- child); EXPLAIN shows the OpenEphemeral. Written as `=` … `OR` it is three comparisons
-- (measured in a Python sqlite3 micro-benchmark: 2.3–3.0 µs per one-row status update against
-- 5.5–10.3 µs).
--
-- SQLite cannot alter a constraint in place, and rebuilding `exchanges` would copy every row and
-- payload of a production journal at start-up. A CHECK constraint's text does not change what is
-- stored on disk, so the table's definition is edited where SQLite keeps it, as SQLite's own
-- documentation describes for such changes (https://sqlite.org/lang_altertable.html, "making
-- other kinds of table schema changes", the procedure without a copy): the migration runner
-- then moves the schema cookie on (see `migrate` in replay/src/sqlite/mod.rs), so that every
-- connection reads the new definition, and the tests check the journal's integrity and that
-- the rule still holds.
PRAGMA writable_schema = ON;
UPDATE sqlite_schema
   SET sql = replace(sql,
                     'CHECK (status IN (''pending'', ''delivered'', ''parked''))',
                     'CHECK (status = ''pending'' OR status = ''delivered'' OR status = ''parked'')')
 WHERE type = 'table' AND name = 'exchanges';
PRAGMA writable_schema = OFF;
