//! Operator commands over the configured journal. They work while `serve` runs (SQLite WAL lets
//! another process read and write the same file) and every data access they make is audited.

use crate::config::Config;
use anyhow::{Context, bail};
use replay::{
    AuditEvent, ExchangeDetail, ExchangeFilter, ExchangeSummary, Journal, OpenOptions, Status,
};
use std::{io::Write, sync::Arc};
use uuid::Uuid;

/// Opens the journal named by the configuration, for a CLI command.
pub async fn open_journal(cfg: &Config) -> anyhow::Result<Arc<dyn Journal>> {
    replay::open(
        &cfg.journal.url,
        OpenOptions {
            max_size_bytes: cfg.journal.max_size_bytes,
            max_batch: None,
            server: false,
        },
    )
    .await
    .with_context(|| {
        format!(
            "opening the journal {}",
            replay::redact_url(&cfg.journal.url)
        )
    })
}

/// The operating-system user running the command, for audit records.
fn cli_actor() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    format!("cli:{user}")
}

fn cli_event(
    action: &str,
    object_id: Option<String>,
    detail: Option<serde_json::Value>,
) -> AuditEvent {
    AuditEvent {
        time: crate::app::now_millis(),
        actor: cli_actor(),
        role: "operator".into(),
        force: None,
        action: action.into(),
        object_type: Some("exchange".into()),
        object_id,
        result: "success".into(),
        source_ip: None,
        user_agent: Some(format!("nmpp-gateway-cli/{}", env!("CARGO_PKG_VERSION"))),
        correlation_id: None,
        event_uid: Uuid::now_v7(),
        detail,
    }
}

/// `exchanges list`.
pub async fn list(
    j: &dyn Journal,
    status: Option<Status>,
    limit: Option<usize>,
    json: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let filter = ExchangeFilter {
        status,
        ..Default::default()
    };
    let mut rows: Vec<ExchangeSummary> = Vec::new();
    let mut cursor = None;
    loop {
        let want = limit.map_or(1000, |l| (l - rows.len()).min(1000));
        if want == 0 {
            break;
        }
        let page = j.list(&filter, cursor, want).await?;
        rows.extend(page.items);
        match page.next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    j.audit(cli_event(
        "exchange.search",
        None,
        Some(serde_json::json!({ "filter": { "status": status.map(Status::as_str) }, "results": rows.len() })),
    ))
    .await?;
    if json {
        serde_json::to_writer_pretty(&mut *out, &rows)?;
        writeln!(out)?;
        return Ok(());
    }
    writeln!(
        out,
        "{:<36}  {:<9}  {:<10}  {:<18}  {:>3}  {:<24}  {:<36}  LAST ERROR",
        "ID", "STATUS", "FORCE", "KIND", "TRY", "CREATED", "SUBMISSION"
    )?;
    for r in &rows {
        writeln!(
            out,
            "{:<36}  {:<9}  {:<10}  {:<18}  {:>3}  {:<24}  {:<36}  {}",
            r.id,
            r.status,
            r.force,
            r.kind,
            r.attempt_count,
            r.created_at
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            r.submission_id,
            r.last_error_class.as_deref().unwrap_or("-")
        )?;
    }
    writeln!(out, "{} exchange(s)", rows.len())?;
    Ok(())
}

/// `exchanges show`.
pub async fn show(
    j: &dyn Journal,
    id: &str,
    json: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let id =
        Uuid::parse_str(id).with_context(|| format!("{id:?} is not an exchange id (a UUID)"))?;
    let Some(d) = j.get(id).await? else {
        bail!("exchange {id} not found")
    };
    j.audit(cli_event("exchange.view", Some(id.to_string()), None))
        .await?;
    if json {
        serde_json::to_writer_pretty(&mut *out, &ShowJson::from(&d))?;
        writeln!(out)?;
        return Ok(());
    }
    let s = &d.summary;
    let t = |t: &time::OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default()
    };
    writeln!(out, "exchange     {}", s.id)?;
    writeln!(out, "status       {}", s.status)?;
    writeln!(out, "force        {}", s.force)?;
    writeln!(
        out,
        "kind         {} ({}, {} → {})",
        s.kind,
        d.direction.as_str(),
        d.source_system,
        s.target_system
    )?;
    writeln!(out, "submission   {}", s.submission_id)?;
    writeln!(out, "case ref     {}", s.case_ref.as_deref().unwrap_or("-"))?;
    writeln!(out, "correlation  {}", d.correlation_id)?;
    writeln!(out, "created      {}", t(&s.created_at))?;
    writeln!(
        out,
        "parent       {}",
        s.parent_id.map_or("-".into(), |p| p.to_string())
    )?;
    let children: Vec<String> = d.children.iter().map(Uuid::to_string).collect();
    writeln!(
        out,
        "children     {}",
        if children.is_empty() {
            "-".into()
        } else {
            children.join(", ")
        }
    )?;
    writeln!(
        out,
        "target ref   {}",
        s.target_ref.as_deref().unwrap_or("-")
    )?;
    writeln!(
        out,
        "mapping      {}",
        d.mapping_version.as_deref().unwrap_or("-")
    )?;
    if let Some(n) = &d.next_attempt_at {
        writeln!(out, "next attempt {}", t(n))?;
    }
    writeln!(out, "attempts     {}", d.attempts.len())?;
    for a in &d.attempts {
        writeln!(
            out,
            "  #{:<3} {}  {:<9} {:<13} {}{}",
            a.number,
            t(&a.started_at),
            a.outcome.as_str(),
            a.error_class.as_deref().unwrap_or(""),
            a.http_status
                .map_or(String::new(), |s| format!("HTTP {s} ")),
            a.detail.as_deref().unwrap_or("")
        )?;
    }
    Ok(())
}

/// The `--json` shape of `exchanges show`: the stored detail plus an explicit `attempts` array
/// and `attemptCount`.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct ShowJson<'a> {
    #[serde(flatten)]
    detail: &'a ExchangeDetail,
}

impl<'a> From<&'a ExchangeDetail> for ShowJson<'a> {
    fn from(detail: &'a ExchangeDetail) -> Self {
        Self { detail }
    }
}

/// `replay ID`.
pub async fn replay_one(j: &dyn Journal, id: &str, out: &mut dyn Write) -> anyhow::Result<Uuid> {
    let id =
        Uuid::parse_str(id).with_context(|| format!("{id:?} is not an exchange id (a UUID)"))?;
    let child = j
        .replay(id, cli_event("exchange.replay", None, None))
        .await?;
    writeln!(out, "replaying exchange {id} as {child}")?;
    writeln!(
        out,
        "a running gateway delivers it within its poll interval; follow it with: nmpp-gateway exchanges show {child}"
    )?;
    Ok(child)
}

/// `audit verify`: returns whether the chain is intact.
pub async fn audit_verify(j: &dyn Journal, out: &mut dyn Write) -> anyhow::Result<bool> {
    let report = crate::audit::verify_chain(j).await?;
    match &report.first_bad {
        None => {
            writeln!(
                out,
                "audit chain intact: {} record(s) verified",
                report.records
            )?;
            Ok(true)
        }
        Some(f) => {
            writeln!(
                out,
                "audit chain BROKEN at record {}: {} ({} record(s) before it verified)",
                f.seq, f.reason, report.records
            )?;
            Ok(false)
        }
    }
}

/// What `audit export` exports.
#[derive(Debug, Clone)]
pub struct ExportArgs {
    /// CSV or JSON lines.
    pub format: replay::ledger::RecordFormat,
    /// The bundle directory (must not exist or be empty).
    pub out: std::path::PathBuf,
    /// Filters (everything when empty).
    pub filter: replay::ledger::ExportFilter,
    /// Draw a progress bar on standard error.
    pub progress: bool,
}

/// `audit export`: signs a checkpoint, writes the auditor bundle, and audits the export (with
/// result `failure` when it failed).
pub async fn audit_export(
    cfg: &Config,
    j: Arc<dyn Journal>,
    args: ExportArgs,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let signer = crate::ledger::load_signer(&cfg.audit)?;
    let ledger = crate::ledger::AuditLedger::new(j.clone(), signer, &cfg.audit)?;
    let bar = if args.progress {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} {pos}/{len} records read, {msg} exported [{elapsed_precise}] {wide_bar}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        Some(bar)
    } else {
        None
    };
    let progress = bar.clone().map(|bar| {
        Box::new(move |p: &replay::ledger::Progress| {
            bar.set_length(p.total);
            bar.set_position(p.read);
            if p.read.is_multiple_of(1024) || p.read == p.total {
                bar.set_message(p.exported.to_string());
            }
        }) as crate::ledger::ProgressFn
    });
    let result = ledger
        .export(
            &args.out,
            args.format,
            args.filter.clone(),
            &cli_actor(),
            progress,
        )
        .await;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let mut ev = cli_event("audit.export", None, None);
    ev.role = "auditor".into();
    ev.object_type = Some("audit_bundle".into());
    ev.force.clone_from(&args.filter.force);
    ev.detail = Some(export_detail(
        args.format,
        &args.filter,
        result.as_ref().ok(),
    ));
    if result.is_err() {
        ev.result = "failure".into();
    }
    j.audit(ev).await.context("auditing the export")?;
    let done = result?;
    let m = &done.summary.manifest;
    writeln!(
        out,
        "exported {} record(s) of {} (tree size {}, {} checkpoint(s)) to {}",
        m.records,
        if m.full {
            "the whole ledger"
        } else {
            "a filtered ledger"
        },
        m.tree_size,
        m.checkpoints,
        args.out.display()
    )?;
    writeln!(out, "public key: {}", m.key)?;
    writeln!(
        out,
        "check it offline: nmpp-gateway audit verify {}",
        args.out.display()
    )?;
    Ok(())
}

/// The audit detail of an export: format, filters (force and actor names are not personal data
/// here: they are force keys and API client or operator ids), and what was written.
pub fn export_detail(
    format: replay::ledger::RecordFormat,
    filter: &replay::ledger::ExportFilter,
    done: Option<&crate::ledger::ExportOutcome>,
) -> serde_json::Value {
    let mut d = serde_json::json!({
        "format": format,
        "filters": filter,
    });
    if let Some(done) = done {
        d["records"] = done.summary.manifest.records.into();
        d["treeSize"] = done.summary.manifest.tree_size.into();
    }
    d
}

/// `audit verify DIR`: checks a bundle offline (no database). Prints the report; `false` when a
/// problem was found, naming the first.
pub fn audit_verify_bundle(dir: &std::path::Path, out: &mut dyn Write) -> anyhow::Result<bool> {
    let report = replay::ledger::verify_bundle(dir)
        .with_context(|| format!("reading the bundle {}", dir.display()))?;
    if let Some(first) = report.first_problem() {
        writeln!(out, "bundle {} FAILS verification", dir.display())?;
        writeln!(out, "first problem: {first}")?;
        for p in report.problems.iter().skip(1).take(20) {
            writeln!(out, "  also: {p}")?;
        }
        return Ok(false);
    }
    writeln!(
        out,
        "bundle {} verified: {} record(s) (seq {}..{}), {} checkpoint(s), {} consistency and {} \
         inclusion proof(s); key {}{}",
        dir.display(),
        report.records,
        report.first_seq.unwrap_or(0),
        report.last_seq.unwrap_or(0),
        report.checkpoints_verified,
        report.consistency_proofs_verified,
        report.inclusion_proofs_verified,
        report.keys.first().map_or("?", String::as_str),
        if report.key_pinned {
            ""
        } else {
            " (compare it with the key you were given: a bundle can only vouch for itself)"
        }
    )?;
    Ok(true)
}
