-- 0030: a bulk replay job's pace clock (issue 3: the job's rate limit holds across nodes).
-- `paced_ms` (Unix milliseconds) is where the job's rate allowance stands: a step may create
-- children only while it is behind the clock's now, and moves it on by children / rate. Kept in
-- the job row, which every step locks, so all nodes working one job share one allowance.
-- NULL: no step has been paced yet.
ALTER TABLE replay_jobs ADD COLUMN paced_ms INTEGER;
