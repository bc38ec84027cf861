-- 0002: issue 3 — search indexes, replay options and jobs, legal holds, retention, counters.
-- (auto_vacuum=INCREMENTAL is set by the migration runner: it must precede the first table, or
-- needs a VACUUM on a journal created before this migration.)

-- The original of a family (an exchange and its replays): retention and holds act on families.
ALTER TABLE exchanges ADD COLUMN root_id TEXT;
-- For a replay: the mapping version it was asked to use.
ALTER TABLE exchanges ADD COLUMN requested_mapping TEXT;
-- For a replay made by a bulk replay job: the job.
ALTER TABLE exchanges ADD COLUMN replay_job_id TEXT;
-- When retention deleted the payloads.
ALTER TABLE exchanges ADD COLUMN payloads_deleted_ms INTEGER;

WITH RECURSIVE fam(id, root) AS (
    SELECT id, id FROM exchanges WHERE parent_id IS NULL
    UNION ALL
    SELECT e.id, fam.root FROM exchanges e JOIN fam ON e.parent_id = fam.id
)
UPDATE exchanges SET root_id = (SELECT root FROM fam WHERE fam.id = exchanges.id);
UPDATE exchanges SET root_id = id WHERE root_id IS NULL;

-- Search: one index per filter key, each ending in the list order (newest first).
DROP INDEX exchanges_status;
CREATE INDEX exchanges_status  ON exchanges (status, created_ms, seq);
CREATE INDEX exchanges_force   ON exchanges (force, created_ms, seq);
CREATE INDEX exchanges_kind    ON exchanges (kind, created_ms, seq);
CREATE INDEX exchanges_target  ON exchanges (target_system, created_ms, seq);
CREATE INDEX exchanges_error   ON exchanges (last_error_class, created_ms, seq)
    WHERE last_error_class IS NOT NULL;
CREATE INDEX exchanges_case    ON exchanges (case_ref, created_ms, seq) WHERE case_ref IS NOT NULL;
CREATE INDEX exchanges_key     ON exchanges (idempotency_key);
CREATE INDEX exchanges_corr    ON exchanges (correlation_id);
CREATE INDEX exchanges_created ON exchanges (created_ms, seq);
CREATE INDEX exchanges_family  ON exchanges (root_id) WHERE parent_id IS NOT NULL;

-- Exchanges by force, kind and status, maintained with every change (cheap statistics).
CREATE TABLE exchange_counts (
    force  TEXT    NOT NULL,
    kind   TEXT    NOT NULL,
    status TEXT    NOT NULL,
    n      INTEGER NOT NULL,
    PRIMARY KEY (force, kind, status)
) WITHOUT ROWID;
INSERT INTO exchange_counts (force, kind, status, n)
    SELECT force, kind, status, count(*) FROM exchanges GROUP BY force, kind, status;

CREATE TABLE legal_holds (
    id          TEXT PRIMARY KEY,
    root_id     TEXT,                              -- family held (hold on an exchange)
    force       TEXT,                              -- with case_ref: case held
    case_ref    TEXT,
    reason      TEXT NOT NULL,
    placed_by   TEXT NOT NULL,
    placed_at   TEXT NOT NULL,
    released_at TEXT,
    released_by TEXT,
    CHECK ((root_id IS NOT NULL) <> (case_ref IS NOT NULL))
);
CREATE INDEX legal_holds_family ON legal_holds (root_id) WHERE released_at IS NULL;
CREATE INDEX legal_holds_case ON legal_holds (force, case_ref) WHERE released_at IS NULL;

CREATE TABLE replay_jobs (
    id              TEXT PRIMARY KEY,
    filter          TEXT    NOT NULL,              -- ExchangeFilter as JSON
    options         TEXT    NOT NULL,              -- ReplayOptions as JSON
    state           TEXT    NOT NULL CHECK (state IN ('running', 'cancelled', 'completed')),
    until_ms        INTEGER NOT NULL,              -- covers exchanges journalled before this
    cursor_ms       INTEGER,                       -- last (created_ms, seq) processed
    cursor_seq      INTEGER,
    planned         INTEGER NOT NULL,
    replayed        INTEGER NOT NULL DEFAULT 0,
    skipped         INTEGER NOT NULL DEFAULT 0,
    created_by      TEXT    NOT NULL,
    created_at      TEXT    NOT NULL,
    updated_at      TEXT    NOT NULL
);

-- One row per parent a job has processed: a job never makes two children of one parent.
CREATE TABLE replay_job_items (
    job_id    TEXT NOT NULL,
    parent_id TEXT NOT NULL,
    child_id  TEXT,                                -- NULL when skipped
    PRIMARY KEY (job_id, parent_id)
) WITHOUT ROWID;
