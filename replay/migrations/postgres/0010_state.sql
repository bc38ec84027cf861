-- Durable key/value state beside the journal (issue 4): change-detection cursors, per-case
-- snapshots and leases. Each entry carries a version; writers compare-and-set on it, so two
-- nodes never both move a cursor or both hold a lease.
CREATE TABLE state (
    scope      text        NOT NULL,
    key        text        NOT NULL,
    version    bigint      NOT NULL CHECK (version >= 1),
    value      bytea       NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, key)
);
