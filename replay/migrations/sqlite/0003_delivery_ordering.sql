-- 0003: issue 3 §3 — per-case ordering at targets that need it.
-- A claim at an ordered target checks for an earlier pending exchange of the same force, target
-- and case reference; this index answers that with one probe per candidate.
CREATE INDEX exchanges_case_pending ON exchanges (force, target_system, case_ref, seq)
    WHERE status = 'pending' AND case_ref IS NOT NULL;
