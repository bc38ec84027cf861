-- 0001: the PostgreSQL journal — exchanges and attempts partitioned by time, idempotency keys,
-- the hash-chained audit trail with its head row, counters, legal holds, bulk replay jobs.
--
-- Time partitions: exchanges and attempts are range-partitioned on the exchange id. Ids are
-- UUID v7, whose first 48 bits are the Unix time in milliseconds, so a month of ids is one
-- contiguous range: exchanges_p202611 holds the exchanges created in November 2026, and
-- attempts_p202611 their attempts. Partitions are created ahead by the journal (see
-- postgres/partitions.rs); retention drops whole partitions. The id being the partition key
-- keeps it unique across partitions and lets every lookup by id touch one partition.
-- Payloads are compressed with lz4 (PostgreSQL 14+), which costs far less CPU per commit than
-- the default pglz (ops: accept_bench 2.8k/s with pglz, 4.1k/s with lz4, same busy machine).

CREATE SEQUENCE exchanges_seq AS bigint;

CREATE TABLE exchanges (
    id                 uuid        NOT NULL,
    seq                bigint      NOT NULL DEFAULT nextval('exchanges_seq'), -- insertion order
    root_id            uuid        NOT NULL,      -- the original of this family (self for originals)
    parent_id          uuid,                      -- set for replays
    force              text        NOT NULL,
    kind               text        NOT NULL,
    direction          text        NOT NULL,
    source_system      text        NOT NULL,
    target_system      text        NOT NULL,
    api_version        text        NOT NULL,
    model_version      text        NOT NULL,
    idempotency_key    text        NOT NULL,      -- sent downstream; shared by a family
    correlation_id     text        NOT NULL,
    case_ref           text,
    status             text        NOT NULL CHECK (status IN ('pending', 'delivered', 'parked')),
    attempts           integer     NOT NULL DEFAULT 0,
    next_attempt_at    timestamptz,               -- when pending
    lease_owner        text,
    lease_until        timestamptz,
    created_at         timestamptz NOT NULL,
    updated_at         timestamptz NOT NULL,
    last_error_class   text,
    last_error         text,
    target_ref         text,
    payload_type       text        NOT NULL,
    payload            bytea       COMPRESSION lz4 NOT NULL, -- the request body, byte for byte
    response           bytea       COMPRESSION lz4 NOT NULL, -- the acknowledgement given
    canonical          bytea       COMPRESSION lz4,
    target_payload     bytea       COMPRESSION lz4,
    mapping_version    text,                      -- mapping used for target_payload
    requested_mapping  text,                      -- mapping a replay asked for
    replay_job_id      uuid,
    payloads_deleted_at timestamptz,
    PRIMARY KEY (id)
) PARTITION BY RANGE (id);

CREATE TABLE exchanges_default PARTITION OF exchanges DEFAULT;

CREATE INDEX exchanges_due     ON exchanges (next_attempt_at) WHERE status = 'pending';
CREATE INDEX exchanges_seq_idx ON exchanges (seq);
CREATE INDEX exchanges_status  ON exchanges (status, created_at, seq);
CREATE INDEX exchanges_force   ON exchanges (force, created_at, seq);
CREATE INDEX exchanges_kind    ON exchanges (kind, created_at, seq);
CREATE INDEX exchanges_target  ON exchanges (target_system, created_at, seq);
CREATE INDEX exchanges_error   ON exchanges (last_error_class, created_at, seq)
    WHERE last_error_class IS NOT NULL;
CREATE INDEX exchanges_case    ON exchanges (case_ref, created_at, seq) WHERE case_ref IS NOT NULL;
CREATE INDEX exchanges_key     ON exchanges (idempotency_key);
CREATE INDEX exchanges_corr    ON exchanges (correlation_id);
CREATE INDEX exchanges_created ON exchanges (created_at, seq);
CREATE INDEX exchanges_parent  ON exchanges (parent_id) WHERE parent_id IS NOT NULL;
CREATE INDEX exchanges_family  ON exchanges (root_id) WHERE parent_id IS NOT NULL;

CREATE TABLE attempts (
    exchange_id  uuid        NOT NULL,
    number       integer     NOT NULL,
    started_at   timestamptz NOT NULL,
    finished_at  timestamptz NOT NULL,
    outcome      text        NOT NULL,
    error_class  text,
    detail       text,
    http_status  integer,
    node         text        NOT NULL,
    PRIMARY KEY (exchange_id, number)
) PARTITION BY RANGE (exchange_id);

CREATE TABLE attempts_default PARTITION OF attempts DEFAULT;

-- Idempotency of original exchanges: one row per (force, kind, key), across all partitions.
CREATE TABLE dedupe (
    force           text NOT NULL,
    kind            text NOT NULL,
    idempotency_key text NOT NULL,
    exchange_id     uuid NOT NULL,
    PRIMARY KEY (force, kind, idempotency_key)
);
CREATE INDEX dedupe_exchange ON dedupe (exchange_id);

CREATE TABLE audit (
    seq            bigint PRIMARY KEY,             -- gap-free from 1
    time           text   NOT NULL,                -- RFC 3339 exactly as hashed
    actor          text   NOT NULL,
    role           text   NOT NULL,
    force          text,
    action         text   NOT NULL,
    object_type    text,
    object_id      text,
    result         text   NOT NULL,
    source_ip      text,
    user_agent     text,
    correlation_id text,
    event_uid      uuid   NOT NULL UNIQUE,
    detail         text,                           -- small JSON, text exactly as hashed
    prev_hash      text   NOT NULL,
    hash           text   NOT NULL
);

-- The chain head. Every transaction that appends audit records locks this one row last (after
-- all its other writes), appends, moves it, and commits: appends from every node are
-- serialised and gap-free, and the lock is held only for the append and the commit.
CREATE TABLE audit_head (
    id   integer PRIMARY KEY CHECK (id = 1),
    seq  bigint  NOT NULL,
    hash text    NOT NULL
);
INSERT INTO audit_head (id, seq, hash)
    VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');

CREATE TABLE exchange_counts (
    force  text   NOT NULL,
    kind   text   NOT NULL,
    status text   NOT NULL,
    n      bigint NOT NULL,
    PRIMARY KEY (force, kind, status)
);

CREATE TABLE legal_holds (
    id          uuid PRIMARY KEY,
    root_id     uuid,
    force       text,
    case_ref    text,
    reason      text        NOT NULL,
    placed_by   text        NOT NULL,
    placed_at   timestamptz NOT NULL,
    released_at timestamptz,
    released_by text,
    CHECK ((root_id IS NOT NULL) <> (case_ref IS NOT NULL))
);
CREATE INDEX legal_holds_family ON legal_holds (root_id) WHERE released_at IS NULL;
CREATE INDEX legal_holds_case ON legal_holds (force, case_ref) WHERE released_at IS NULL;

CREATE TABLE replay_jobs (
    id          uuid PRIMARY KEY,
    filter      text        NOT NULL,
    options     text        NOT NULL,
    state       text        NOT NULL CHECK (state IN ('running', 'cancelled', 'completed')),
    until_at    timestamptz NOT NULL,
    cursor_at   timestamptz,
    cursor_seq  bigint,
    planned     bigint      NOT NULL,
    replayed    bigint      NOT NULL DEFAULT 0,
    skipped     bigint      NOT NULL DEFAULT 0,
    created_by  text        NOT NULL,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL
);

CREATE TABLE replay_job_items (
    job_id    uuid NOT NULL,
    parent_id uuid NOT NULL,
    child_id  uuid,
    PRIMARY KEY (job_id, parent_id)
);
