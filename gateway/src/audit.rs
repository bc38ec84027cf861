//! Audit helpers shared by the API and the CLI.

use replay::{ChainReport, Journal, JournalError, audit::ChainVerifier};

/// Walks the whole audit chain in pages and reports the first bad record.
pub async fn verify_chain(journal: &dyn Journal) -> Result<ChainReport, JournalError> {
    let mut v = ChainVerifier::default();
    let mut from = 1;
    loop {
        let page = journal.audit_records(from, 5000).await?;
        let Some(last) = page.last().map(|r| r.seq) else {
            break;
        };
        for rec in &page {
            if let Err(fault) = v.check(rec) {
                return Ok(ChainReport {
                    records: v.checked(),
                    first_bad: Some(fault),
                });
            }
        }
        from = last + 1;
    }
    // Pruned records must be explained by a deletion record under a signed checkpoint.
    let checkpointed = journal.checkpoints().await?.last().map_or(0, |c| c.size);
    if let Err(fault) = v.finish(checkpointed) {
        return Ok(ChainReport {
            records: v.checked(),
            first_bad: Some(fault),
        });
    }
    Ok(ChainReport {
        records: v.checked(),
        first_bad: None,
    })
}
