-- 0020: the audit ledger (issue 5): each audit record's RFC 6962 leaf hash, the Merkle frontier
-- (moved in the same transaction as every append), signed checkpoints, and per-sink cursors.
-- SQLite cannot stop someone with the file from editing it; such an edit is *detected* instead
-- (the hash chain, the leaf hashes and the signed checkpoints no longer agree).

-- hex SHA-256(0x00 ‖ RFC 8785 canonical entry); NULL only for rows written before this
-- migration, until the journal back-fills them when it opens.
ALTER TABLE audit ADD COLUMN leaf_hash TEXT;

-- The Merkle frontier over audit records 1..=size (replay::ledger::Frontier::to_bytes).
CREATE TABLE ledger_frontier (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    frontier BLOB    NOT NULL
);
INSERT INTO ledger_frontier (id, frontier) VALUES (1, X'0000000000000000');

-- Signed checkpoints (C2SP tlog-checkpoint signed notes), one per tree size.
CREATE TABLE ledger_checkpoints (
    size       INTEGER PRIMARY KEY,
    root       TEXT    NOT NULL,               -- hex
    note       TEXT    NOT NULL,               -- the signed note
    created_at TEXT    NOT NULL,
    audit_seq  INTEGER NOT NULL                -- the audit record announcing it
);

-- Each audit sink's durable cursor: every record with seq <= delivered_through was delivered
-- (or quarantined). `channel` is the Splunk HEC channel id, kept across restarts.
CREATE TABLE audit_sink_cursors (
    sink              TEXT    PRIMARY KEY,
    delivered_through INTEGER NOT NULL,
    channel           TEXT,
    updated_at        TEXT    NOT NULL
);

-- Records a sink gave up on (refused by the target): reported, never silently dropped.
CREATE TABLE audit_sink_quarantine (
    sink           TEXT    NOT NULL,
    seq            INTEGER NOT NULL,
    event_uid      TEXT    NOT NULL,
    kind           TEXT    NOT NULL,
    class          TEXT    NOT NULL,
    status         INTEGER,
    reason         TEXT    NOT NULL,
    quarantined_at TEXT    NOT NULL,
    PRIMARY KEY (sink, seq)
);

-- The log-management API queries by time and by correlation id.
CREATE INDEX audit_time ON audit (time);
CREATE INDEX audit_correlation ON audit (correlation_id) WHERE correlation_id IS NOT NULL;
