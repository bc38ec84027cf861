-- 0033: a replay is found through its family's root in the submission id, correlation id and
-- case reference indexes, instead of having entries of its own there.
--
-- A replay copies these three values from its parent, so every member of a family carries its
-- root's. A replay's entries landed beside its root's, scattered over the whole of each index:
-- every child a bulk replay created dirtied a page of its own in each of the three indexes, and
-- writing those pages was the largest single cost of creating children (measured with the bulk
-- replay benchmark: dropping the three indexes made children 40% cheaper to create and the
-- replay 12% faster end to end; BENCHMARKS.md). Now the three cover roots only (rows without a
-- parent), and `exchanges_root` indexes every row by its family root (a root's `root_id` is its
-- own id, so roots append to its end). Search on these keys (replay/src/sql.rs) looks the roots
-- up in the partial index and then their families in `exchanges_root`: the same rows as before.
-- `exchanges_root` also serves the lookups `exchanges_family` served (a family's replays), so it
-- replaces that index.
DROP INDEX exchanges_key;
DROP INDEX exchanges_corr;
DROP INDEX exchanges_case;
DROP INDEX exchanges_family;
CREATE INDEX exchanges_key  ON exchanges (idempotency_key) WHERE parent_id IS NULL;
CREATE INDEX exchanges_corr ON exchanges (correlation_id) WHERE parent_id IS NULL;
CREATE INDEX exchanges_case ON exchanges (case_ref, created_ms, seq)
    WHERE parent_id IS NULL AND case_ref IS NOT NULL;
CREATE INDEX exchanges_root ON exchanges (root_id);
