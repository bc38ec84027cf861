//! Audit retention as the ledger sees it: a record whose content retention removed ("pruned")
//! keeps its sequence number and leaf hash, so the Merkle tree, the signed checkpoints and every
//! proof still verify; and every pruned record must be *explained* by a deletion record — an
//! audit record with operation [`DELETION_OPERATION`] that names it in its `ranges` and is
//! itself covered by a signed checkpoint. A pruned record nothing explains is a finding, never a
//! silent gap.
//!
//! The deletion record's `AdditionalFields` (JSON) hold at least:
//!
//! ```json
//! {"ranges": [[1, 500], [502, 900]], "count": 899, "before": "2026-01-01T00:00:00", …}
//! ```
//!
//! `ranges` are inclusive sequence ranges, each entirely before the deletion record itself;
//! `before` is the newest cutoff of the policy (RFC 3339 to the second, UTC): nothing at or
//! after it is pruned.

/// The operation (audit action) of a deletion record.
pub const DELETION_OPERATION: &str = "audit.retention.deleted";

/// The inclusive sequence ranges a deletion record at `seq` names, from its `AdditionalFields`;
/// ranges that are malformed or not entirely before `seq` are dropped (they explain nothing).
pub fn deletion_ranges(seq: u64, fields: Option<&serde_json::Value>) -> Vec<(u64, u64)> {
    let Some(list) = fields
        .and_then(|f| f.get("ranges"))
        .and_then(serde_json::Value::as_array)
    else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|r| {
            let r = r.as_array()?;
            let (lo, hi) = (r.first()?.as_u64()?, r.get(1)?.as_u64()?);
            (r.len() == 2 && lo >= 1 && lo <= hi && hi < seq).then_some((lo, hi))
        })
        .collect()
}

/// Compresses sequence numbers (in increasing order) into inclusive ranges.
pub fn to_ranges(seqs: impl IntoIterator<Item = u64>) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for s in seqs {
        match out.last_mut() {
            Some((_, hi)) if s == *hi + 1 => *hi = s,
            _ => out.push((s, s)),
        }
    }
    out
}

/// Tracks pruned records and the deletion records that explain them, in one pass over the
/// ledger in sequence order (deletion records come *after* the records they name). Memory is one
/// entry per run of consecutive pruned records and one per named range.
#[derive(Debug, Default, Clone)]
pub struct PruneCoverage {
    /// Runs of consecutive pruned records: (first seq, last seq, position of the first — a line
    /// number, or 0).
    pruned: Vec<(u64, u64, u64)>,
    /// Ranges named by deletion records, with the deletion record's sequence number.
    named: Vec<(u64, u64, u64)>,
}

impl PruneCoverage {
    /// Notes a pruned record at `seq` (found at `line`, or 0).
    pub fn pruned(&mut self, seq: u64, line: u64) {
        if let Some(last) = self.pruned.last_mut()
            && seq == last.1 + 1
            && (line == 0 || line == last.2 + (seq - last.0))
        {
            last.1 = seq;
            return;
        }
        self.pruned.push((seq, seq, line));
    }

    /// Notes a deletion record at `seq` with its `AdditionalFields`.
    pub fn deletion(&mut self, seq: u64, fields: Option<&serde_json::Value>) {
        self.named.extend(
            deletion_ranges(seq, fields)
                .into_iter()
                .map(|(lo, hi)| (lo, hi, seq)),
        );
    }

    /// Pruned records seen so far.
    pub fn pruned_count(&self) -> u64 {
        self.pruned.iter().map(|(a, b, _)| b - a + 1).sum()
    }

    /// The first pruned record that no deletion record at or before `checkpointed_through` (the
    /// newest signed checkpoint's tree size) explains, with its line (0 if unknown), or `None`.
    pub fn first_unexplained(&self, checkpointed_through: u64) -> Option<(u64, u64)> {
        let mut named: Vec<(u64, u64)> = self
            .named
            .iter()
            .filter(|(_, _, by)| *by <= checkpointed_through)
            .map(|(lo, hi, _)| (*lo, *hi))
            .collect();
        named.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(named.len());
        for (lo, hi) in named {
            match merged.last_mut() {
                Some((_, mhi)) if lo <= mhi.saturating_add(1) => *mhi = (*mhi).max(hi),
                _ => merged.push((lo, hi)),
            }
        }
        let line_of = |run: &(u64, u64, u64), seq: u64| {
            if run.2 == 0 { 0 } else { run.2 + (seq - run.0) }
        };
        for run in &self.pruned {
            let mut s = run.0;
            // The merged range that could hold `s`: the last one starting at or before it.
            let mut i = merged.partition_point(|(lo, _)| *lo <= s);
            loop {
                if s > run.1 {
                    break;
                }
                match i.checked_sub(1).and_then(|j| merged.get(j)) {
                    Some(&(_, hi)) if hi >= s => {
                        s = hi + 1;
                        i = merged.partition_point(|(lo, _)| *lo <= s);
                    }
                    _ => return Some((s, line_of(run, s))),
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_compress_and_coverage_names_the_first_unexplained_record() {
        assert_eq!(to_ranges([1, 2, 3, 5, 7, 8]), vec![(1, 3), (5, 5), (7, 8)]);
        let mut c = PruneCoverage::default();
        for s in [1, 2, 3, 5, 6] {
            c.pruned(s, s + 1);
        }
        assert_eq!(c.pruned_count(), 5);
        // Nothing explains them yet.
        assert_eq!(c.first_unexplained(100), Some((1, 2)));
        c.deletion(10, Some(&serde_json::json!({"ranges": [[1, 3], [5, 5]]})));
        assert_eq!(c.first_unexplained(100), Some((6, 7)));
        // A range reaching the deletion record itself explains nothing.
        c.deletion(11, Some(&serde_json::json!({"ranges": [[6, 11]]})));
        assert_eq!(c.first_unexplained(100), Some((6, 7)));
        c.deletion(12, Some(&serde_json::json!({"ranges": [[6, 6]]})));
        assert_eq!(c.first_unexplained(100), None);
        // …but only deletion records under a checkpoint count.
        assert_eq!(c.first_unexplained(11), Some((6, 7)));
        assert_eq!(c.first_unexplained(9), Some((1, 2)));
    }
}
