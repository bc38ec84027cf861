-- 0031: moving the audit chain head with a check (issue 3, durable ingest on PostgreSQL).
--
-- A journal writer may chain its audit records onto the head it last appended itself, without
-- first reading the head under its row lock: it then moves the head with audit_head_advance(),
-- which takes the row lock and refuses, with a serialization failure, unless the head is still
-- exactly the one the records were chained onto (same sequence number and hash). A refusal
-- aborts the writer's transaction (nothing of it is kept or acknowledged) and the writer runs it
-- again, reading the head under lock. Sequence numbers stay gap-free and the chain unbroken
-- whichever node or writer appends.
CREATE FUNCTION audit_head_advance(p_from_seq bigint, p_from_hash text, p_seq bigint,
                                   p_hash text, p_frontier bytea)
    RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    UPDATE audit_head SET seq = p_seq, hash = p_hash, frontier = p_frontier
     WHERE id = 1 AND seq = p_from_seq AND hash = p_from_hash;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'the audit chain head is no longer at record %', p_from_seq
            USING ERRCODE = 'serialization_failure';
    END IF;
END
$$;
