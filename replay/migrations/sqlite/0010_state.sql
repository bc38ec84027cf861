-- Durable key/value state beside the journal (issue 4): change-detection cursors, per-case
-- snapshots and leases. Each entry carries a version; writers compare-and-set on it, so two
-- nodes never both move a cursor or both hold a lease.
CREATE TABLE state (
    scope      TEXT    NOT NULL,
    key        TEXT    NOT NULL,
    version    INTEGER NOT NULL CHECK (version >= 1),
    value      BLOB    NOT NULL,
    updated_at TEXT    NOT NULL,
    PRIMARY KEY (scope, key)
) WITHOUT ROWID;
