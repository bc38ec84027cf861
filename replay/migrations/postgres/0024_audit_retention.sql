-- 0024: audit retention (issue 5, item 6). Retention removes the *content* of expired audit
-- records and keeps what the Merkle tree and the hash chain need: seq, time, event_uid,
-- prev_hash, hash and leaf_hash. `pruned_by` is the sequence number of the
-- `audit.retention.deleted` record that announced the removal.
--
-- The gateway's role still cannot UPDATE or DELETE audit rows: the append-only trigger lets a
-- prune through only when it comes from audit_prune(), a SECURITY DEFINER function (it runs as
-- the tables' owner, and the trigger checks for exactly that owner and a transaction-local
-- marker the function sets). audit_prune() prunes only what a deletion record names, only once
-- that record is covered by a signed checkpoint, never a checkpoint announcement or another
-- deletion record, never a record newer than the deletion record's `before` time, and never a
-- record about an exchange under a legal hold. A role that does not own the tables can call the
-- function, but cannot make it prune anything the ledger does not already explain.

ALTER TABLE audit ADD COLUMN pruned_by bigint;

CREATE INDEX audit_unpruned ON audit (seq) WHERE pruned_by IS NULL;

CREATE OR REPLACE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND TG_TABLE_NAME = 'audit' AND OLD.leaf_hash IS NULL
       AND (OLD.seq, OLD.time, OLD.actor, OLD.role, OLD.force, OLD.action, OLD.object_type,
            OLD.object_id, OLD.result, OLD.source_ip, OLD.user_agent, OLD.correlation_id,
            OLD.event_uid, OLD.detail, OLD.prev_hash, OLD.hash, OLD.pruned_by)
           IS NOT DISTINCT FROM
           (NEW.seq, NEW.time, NEW.actor, NEW.role, NEW.force, NEW.action, NEW.object_type,
            NEW.object_id, NEW.result, NEW.source_ip, NEW.user_agent, NEW.correlation_id,
            NEW.event_uid, NEW.detail, NEW.prev_hash, NEW.hash, NEW.pruned_by) THEN
        RETURN NEW;
    END IF;
    -- A prune by audit_prune(): only the content goes; everything the tree and chain need stays.
    IF TG_OP = 'UPDATE' AND TG_TABLE_NAME = 'audit'
       AND OLD.pruned_by IS NULL AND NEW.pruned_by IS NOT NULL AND OLD.leaf_hash IS NOT NULL
       AND current_setting('nmpp.audit_prune', true) = NEW.pruned_by::text
       AND current_user = (SELECT pg_get_userbyid(c.relowner) FROM pg_class c WHERE c.oid = TG_RELID)
       AND (OLD.seq, OLD.time, OLD.event_uid, OLD.prev_hash, OLD.hash, OLD.leaf_hash)
           IS NOT DISTINCT FROM
           (NEW.seq, NEW.time, NEW.event_uid, NEW.prev_hash, NEW.hash, NEW.leaf_hash)
       AND (NEW.actor, NEW.role, NEW.action, NEW.result) = ('', '', '', '')
       AND NEW.force IS NULL AND NEW.object_type IS NULL AND NEW.object_id IS NULL
       AND NEW.source_ip IS NULL AND NEW.user_agent IS NULL AND NEW.correlation_id IS NULL
       AND NEW.detail IS NULL THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

-- Prunes the records deletion record `p_deletion` names; returns how many it pruned (records
-- already pruned, or kept by a legal hold placed since, are left as they are).
CREATE FUNCTION audit_prune(p_deletion bigint) RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    d      record;
    r      jsonb;
    before text;
    lo     bigint;
    hi     bigint;
    k      bigint;
    n      bigint := 0;
BEGIN
    SELECT action, detail, pruned_by INTO d FROM audit WHERE seq = p_deletion;
    IF NOT FOUND OR d.action <> 'audit.retention.deleted' OR d.pruned_by IS NOT NULL
       OR d.detail IS NULL THEN
        RAISE EXCEPTION 'audit record % is not an audit.retention.deleted record', p_deletion
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM ledger_checkpoints WHERE size >= p_deletion) THEN
        RAISE EXCEPTION 'deletion record % is not covered by a signed checkpoint yet', p_deletion
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    before := d.detail::jsonb ->> 'before';
    IF before IS NULL OR jsonb_typeof(d.detail::jsonb -> 'ranges') IS DISTINCT FROM 'array' THEN
        RAISE EXCEPTION 'deletion record % has no before time or ranges', p_deletion
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM set_config('nmpp.audit_prune', p_deletion::text, true);
    FOR r IN SELECT value FROM jsonb_array_elements(d.detail::jsonb -> 'ranges') LOOP
        lo := (r ->> 0)::bigint;
        hi := (r ->> 1)::bigint;
        IF lo IS NULL OR hi IS NULL OR lo < 1 OR hi < lo OR hi >= p_deletion THEN
            RAISE EXCEPTION 'deletion record %: range % is not before it', p_deletion, r
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        UPDATE audit a
           SET actor = '', role = '', force = NULL, action = '', object_type = NULL,
               object_id = NULL, result = '', source_ip = NULL, user_agent = NULL,
               correlation_id = NULL, detail = NULL, pruned_by = p_deletion
         WHERE a.seq BETWEEN lo AND hi
           AND a.pruned_by IS NULL AND a.leaf_hash IS NOT NULL
           AND a.action NOT IN ('ledger.checkpoint', 'audit.retention.deleted')
           AND a.time < before COLLATE "C"
           AND NOT EXISTS (
               SELECT 1 FROM legal_holds h JOIN exchanges e
                   ON h.root_id = e.root_id OR (h.force = e.force AND h.case_ref = e.case_ref)
                WHERE h.released_at IS NULL
                  AND e.id = CASE WHEN a.object_id ~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
                                  THEN a.object_id::uuid END);
        GET DIAGNOSTICS k = ROW_COUNT;
        n := n + k;
    END LOOP;
    PERFORM set_config('nmpp.audit_prune', '', true);
    RETURN n;
END
$$;
