-- 0001: exchanges, attempts, hash-chained audit records.
-- Times: *_ms columns are Unix epoch milliseconds (UTC); text times are RFC 3339 UTC.

CREATE TABLE exchanges (
    seq              INTEGER PRIMARY KEY,          -- insertion order (rowid)
    id               TEXT    NOT NULL UNIQUE,      -- UUID v7
    force            TEXT    NOT NULL,
    kind             TEXT    NOT NULL,             -- e.g. incident.submitted
    direction        TEXT    NOT NULL,             -- inbound | outbound
    source_system    TEXT    NOT NULL,
    target_system    TEXT    NOT NULL,
    api_version      TEXT    NOT NULL,
    model_version    TEXT    NOT NULL,
    idempotency_key  TEXT    NOT NULL,             -- sent downstream; shared by a parent and its replays
    dedupe_key       TEXT    UNIQUE,               -- force|kind|key for inbound roots; NULL for replays
    correlation_id   TEXT    NOT NULL,
    case_ref         TEXT,
    parent_id        TEXT    REFERENCES exchanges(id),
    status           TEXT    NOT NULL CHECK (status IN ('pending', 'delivered', 'parked')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms  INTEGER,                      -- when status = pending
    lease_owner      TEXT,
    lease_until_ms   INTEGER,
    created_at       TEXT    NOT NULL,
    created_ms       INTEGER NOT NULL,
    updated_ms       INTEGER NOT NULL,
    last_error_class TEXT,
    last_error       TEXT,
    target_ref       TEXT,
    payload_type     TEXT    NOT NULL,
    payload          BLOB    NOT NULL,             -- the original request body, byte for byte
    response         BLOB    NOT NULL,             -- the acknowledgement given to the caller
    canonical        BLOB,                         -- NMPP document (set when mapped)
    target_payload   BLOB,                         -- what was sent to the target (set when mapped)
    mapping_version  TEXT
);

CREATE INDEX exchanges_due ON exchanges (next_attempt_ms) WHERE status = 'pending';
CREATE INDEX exchanges_status ON exchanges (status, seq);
CREATE INDEX exchanges_parent ON exchanges (parent_id) WHERE parent_id IS NOT NULL;

CREATE TABLE attempts (
    exchange_id  TEXT    NOT NULL REFERENCES exchanges(id),
    number       INTEGER NOT NULL,
    started_at   TEXT    NOT NULL,
    finished_at  TEXT    NOT NULL,
    outcome      TEXT    NOT NULL,                 -- delivered | retry | parked
    error_class  TEXT,
    detail       TEXT,
    http_status  INTEGER,
    node         TEXT    NOT NULL,
    PRIMARY KEY (exchange_id, number)
) WITHOUT ROWID;

CREATE TABLE audit (
    seq            INTEGER PRIMARY KEY,            -- gap-free, starts at 1
    time           TEXT NOT NULL,
    actor          TEXT NOT NULL,
    role           TEXT NOT NULL,
    force          TEXT,
    action         TEXT NOT NULL,
    object_type    TEXT,
    object_id      TEXT,
    result         TEXT NOT NULL,
    source_ip      TEXT,
    user_agent     TEXT,
    correlation_id TEXT,
    event_uid      TEXT NOT NULL UNIQUE,
    detail         TEXT,                           -- small JSON object, never payloads or personal data
    prev_hash      TEXT NOT NULL,
    hash           TEXT NOT NULL
);
