-- 0020: the audit ledger (issue 5): each audit record's RFC 6962 leaf hash, the Merkle frontier
-- (kept on the chain head row, so it moves under the same row lock as every append), signed
-- checkpoints, per-sink cursors, and a guard that makes audit rows append-only for every role
-- that cannot disable triggers (the gateway's role must not own the table or be a superuser).

-- hex SHA-256(0x00 ‖ RFC 8785 canonical entry); NULL only for rows written before this
-- migration, until the journal back-fills them when it opens.
ALTER TABLE audit ADD COLUMN leaf_hash text;

-- The Merkle frontier over audit records 1..=size (replay::ledger::Frontier::to_bytes).
ALTER TABLE audit_head ADD COLUMN frontier bytea NOT NULL DEFAULT '\x0000000000000000'::bytea;

CREATE TABLE ledger_checkpoints (
    size       bigint PRIMARY KEY,
    root       text   NOT NULL,
    note       text   NOT NULL,
    created_at text   NOT NULL,
    audit_seq  bigint NOT NULL
);

CREATE TABLE audit_sink_cursors (
    sink              text   PRIMARY KEY,
    delivered_through bigint NOT NULL,
    channel           text,
    updated_at        text   NOT NULL
);

CREATE TABLE audit_sink_quarantine (
    sink           text    NOT NULL,
    seq            bigint  NOT NULL,
    event_uid      text    NOT NULL,
    kind           text    NOT NULL,
    class          text    NOT NULL,
    status         integer,
    reason         text    NOT NULL,
    quarantined_at text    NOT NULL,
    PRIMARY KEY (sink, seq)
);

CREATE INDEX audit_time ON audit (time);
CREATE INDEX audit_correlation ON audit (correlation_id) WHERE correlation_id IS NOT NULL;

-- Append-only: no UPDATE (except filling a NULL leaf_hash once, leaving every other column as
-- it was), no DELETE, no TRUNCATE; the same for signed checkpoints.
CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND TG_TABLE_NAME = 'audit' AND OLD.leaf_hash IS NULL
       AND (OLD.seq, OLD.time, OLD.actor, OLD.role, OLD.force, OLD.action, OLD.object_type,
            OLD.object_id, OLD.result, OLD.source_ip, OLD.user_agent, OLD.correlation_id,
            OLD.event_uid, OLD.detail, OLD.prev_hash, OLD.hash)
           IS NOT DISTINCT FROM
           (NEW.seq, NEW.time, NEW.actor, NEW.role, NEW.force, NEW.action, NEW.object_type,
            NEW.object_id, NEW.result, NEW.source_ip, NEW.user_agent, NEW.correlation_id,
            NEW.event_uid, NEW.detail, NEW.prev_hash, NEW.hash) THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER audit_no_update BEFORE UPDATE OR DELETE ON audit
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit
    FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER checkpoints_no_update BEFORE UPDATE OR DELETE ON ledger_checkpoints
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER checkpoints_no_truncate BEFORE TRUNCATE ON ledger_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
