-- 0024: audit retention (issue 5, item 6). Retention removes the *content* of expired audit
-- records and keeps what the Merkle tree and the hash chain need: seq, time, event_uid,
-- prev_hash, hash and leaf_hash. `pruned_by` is the sequence number of the
-- `audit.retention.deleted` record that announced the removal (and was covered by a signed
-- checkpoint before it happened), so a verifier can tell an explained gap from a silent one.
-- SQLite cannot refuse anything to someone holding the file: a prune that no deletion record
-- explains is *detected* by `audit verify` instead.

ALTER TABLE audit ADD COLUMN pruned_by INTEGER;

-- Retention walks the records that still have content, in sequence order.
CREATE INDEX audit_unpruned ON audit (seq) WHERE pruned_by IS NULL;
