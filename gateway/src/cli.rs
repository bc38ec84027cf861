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
    if let Some(m) = &d.requested_mapping_version {
        writeln!(
            out,
            "asked for    {m} (replay through another mapping version)"
        )?;
    }
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

/// `replay ID [--mapping-version V] [--dry-run]`: replays one parked exchange, or shows the diff
/// of the target payload it sent against the one a mapping version makes.
pub async fn replay_one(
    cfg: &Config,
    j: &dyn Journal,
    id: &str,
    req: ReplayOne,
    out: &mut dyn Write,
) -> anyhow::Result<Option<Uuid>> {
    let id =
        Uuid::parse_str(id).with_context(|| format!("{id:?} is not an exchange id (a UUID)"))?;
    let parent = j
        .get(id)
        .await?
        .with_context(|| format!("exchange {id} not found"))?;
    let mappings = mappings_of(cfg, Some(&parent.summary.force))?;
    let mapping_version = match &req.mapping_version {
        Some(v) => {
            let name = crate::remap::check(&mappings, v)
                .map_err(|why| anyhow::anyhow!("--mapping-version: {why}"))?;
            crate::remap::fits(parent.mapping_version.as_deref(), &name).map_err(|why| {
                anyhow::anyhow!(
                    "--mapping-version: exchange {id} cannot be replayed through {name}: {why}"
                )
            })?;
            Some(name)
        }
        None => None,
    };
    if req.dry_run {
        let to = match (&mapping_version, &parent.mapping_version) {
            (Some(to), _) => to.clone(),
            (None, Some(sent)) => mappings.spec_version(sent.split('@').next().unwrap_or(sent)),
            (None, None) => bail!(
                "exchange {id} never sent a mapped payload: give --mapping-version (available: {})",
                crate::remap::replayable(&mappings).join(", ")
            ),
        };
        let diff = crate::remap::diff_one(j, &mappings, id, &to).await?;
        let mut ev = cli_event(
            "exchange.replay.dry_run",
            Some(id.to_string()),
            Some(serde_json::json!({ "mappingVersion": to, "changed": diff.changed })),
        );
        ev.force = Some(parent.summary.force.clone());
        j.audit(ev).await?;
        if req.json {
            serde_json::to_writer_pretty(&mut *out, &diff)?;
            writeln!(out)?;
        } else {
            print_diff(&diff, out)?;
        }
        return Ok(None);
    }
    let mut ev = cli_event("exchange.replay", None, None);
    ev.force = Some(parent.summary.force.clone());
    let child = j
        .replay_with(
            id,
            replay::ReplayOptions {
                mapping_version: mapping_version.clone(),
                ..replay::ReplayOptions::default()
            },
            ev,
        )
        .await?;
    match &mapping_version {
        Some(m) => writeln!(out, "replaying exchange {id} as {child} through {m}")?,
        None => writeln!(out, "replaying exchange {id} as {child}")?,
    }
    writeln!(
        out,
        "a running gateway delivers it within its poll interval; follow it with: nmpp-gateway exchanges show {child}"
    )?;
    Ok(Some(child))
}

/// What `replay ID` was asked to do.
#[derive(Debug, Clone, Default)]
pub struct ReplayOne {
    /// Map through this version (`spec@version`) instead of the current one.
    pub mapping_version: Option<String>,
    /// Show the diff of old and new target payloads; replay nothing.
    pub dry_run: bool,
    /// Print JSON instead of text.
    pub json: bool,
}

/// The mapping specs as the gateway configured by `cfg` loads them (with its pinned versions).
/// The mappings `force`'s exchanges go through (its own specs, `forces.X.mappings`, when it
/// has them), or the shared ones.
fn mappings_of(cfg: &Config, force: Option<&str>) -> anyhow::Result<mappings::Mappings> {
    match force.and_then(|f| Some((f, cfg.forces.get(f)?.mappings.as_ref()?))) {
        Some((force, dir)) => cfg.mappings.load_force(force, dir),
        None => cfg.mappings.load(),
    }
    .map_err(anyhow::Error::msg)
}

/// Prints one exchange's mapping diff: a heading, then the unified diff (or why there is none).
fn print_diff(d: &crate::remap::MappingDiff, out: &mut dyn Write) -> anyhow::Result<()> {
    let from = d.from.as_deref().unwrap_or("nothing sent");
    match (&d.error, d.changed) {
        (Some(why), _) => writeln!(out, "exchange {}: no diff: {why}", d.exchange_id)?,
        (None, false) => writeln!(
            out,
            "exchange {}: {} makes the same payload as was sent ({from})",
            d.exchange_id, d.to
        )?,
        (None, true) => {
            writeln!(out, "exchange {}: {from} → {}", d.exchange_id, d.to)?;
            write!(out, "{}", d.diff)?;
            if !d.diff.ends_with('\n') {
                writeln!(out)?;
            }
        }
    }
    Ok(())
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

/// Builds a filter from `--filter KEY=VALUE` arguments (and `--status`); errors name the key.
pub fn filter_from_args(
    pairs: &[String],
    status: Option<Status>,
) -> anyhow::Result<ExchangeFilter> {
    let mut f = ExchangeFilter::default();
    let mut seen = std::collections::BTreeSet::new();
    for p in pairs {
        let key = p.split_once('=').map_or(p.as_str(), |(k, _)| k.trim());
        if !seen.insert(key.replace('-', "_")) {
            bail!("--filter {key}: given more than once");
        }
        f.set_pair(p).map_err(|e| anyhow::anyhow!("--filter {e}"))?;
    }
    if let Some(s) = status {
        if f.status.is_some_and(|fs| fs != s) {
            bail!("--status {s} contradicts --filter status");
        }
        f.status = Some(s);
    }
    Ok(f)
}

/// Parses `--rate`: `N` or `N/s`, at least 1.
pub fn parse_rate(s: &str) -> Result<u32, String> {
    let n = s.trim().strip_suffix("/s").unwrap_or(s.trim());
    match n.parse::<u32>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("{s:?}: expected exchanges per second, e.g. 500/s")),
    }
}

/// `exchanges list --filter …` (also `exchanges search`).
pub async fn search(
    j: &dyn Journal,
    filter: &ExchangeFilter,
    limit: Option<usize>,
    json: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let mut rows: Vec<ExchangeSummary> = Vec::new();
    let mut cursor = None;
    loop {
        let want = limit.map_or(1000, |l| (l - rows.len()).min(1000));
        if want == 0 {
            break;
        }
        let page = j.list(filter, cursor, want).await?;
        rows.extend(page.items);
        match page.next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    j.audit(cli_event(
        "exchange.search",
        None,
        Some(serde_json::json!({ "filter": filter, "results": rows.len() })),
    ))
    .await?;
    print_rows(&rows, json, out)
}

fn print_rows(rows: &[ExchangeSummary], json: bool, out: &mut dyn Write) -> anyhow::Result<()> {
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
    for r in rows {
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

/// `exchanges park ID` / `exchanges unpark ID`.
pub async fn park(
    j: &dyn Journal,
    id: &str,
    park: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let id =
        Uuid::parse_str(id).with_context(|| format!("{id:?} is not an exchange id (a UUID)"))?;
    let action = if park {
        "exchange.park"
    } else {
        "exchange.unpark"
    };
    let ev = cli_event(action, Some(id.to_string()), None);
    let now = crate::app::now_millis();
    if park {
        j.park(id, now, ev).await?;
        writeln!(out, "parked exchange {id}")?;
    } else {
        j.unpark(id, now, ev).await?;
        writeln!(
            out,
            "exchange {id} is pending again; a running gateway delivers it within its poll interval"
        )?;
    }
    Ok(())
}

/// `exchanges stats`.
pub async fn stats(j: &dyn Journal, json: bool, out: &mut dyn Write) -> anyhow::Result<()> {
    let s = j.stats().await?;
    j.audit(cli_event("journal.stats", None, None)).await?;
    if json {
        serde_json::to_writer_pretty(&mut *out, &s)?;
        writeln!(out)?;
        return Ok(());
    }
    let t = |t: &Option<time::OffsetDateTime>| {
        t.and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "-".into())
    };
    writeln!(out, "pending        {}", s.pending)?;
    writeln!(out, "delivered      {}", s.delivered)?;
    writeln!(out, "parked         {}", s.parked)?;
    writeln!(out, "oldest pending {}", t(&s.oldest_pending))?;
    writeln!(out, "oldest parked  {}", t(&s.oldest_parked))?;
    writeln!(out, "replay jobs    {} running", s.replay_jobs_running)?;
    writeln!(out, "legal holds    {}", s.legal_holds)?;
    writeln!(out, "audit records  {}", s.audit_records)?;
    for g in &s.groups {
        writeln!(
            out,
            "  {:<12} {:<24} {:<9} {}",
            g.force, g.kind, g.status, g.count
        )?;
    }
    Ok(())
}

/// What `replay --filter` was asked to do.
#[derive(Debug, Clone, Default)]
pub struct BulkReplay {
    /// Which exchanges.
    pub filter: ExchangeFilter,
    /// Count and sample only.
    pub dry_run: bool,
    /// Replays created per second, at most.
    pub rate: Option<u32>,
    /// Only deliveries to this target system.
    pub target: Option<String>,
    /// Map every replay through this version (`spec@version`) instead of the current one.
    pub mapping_version: Option<String>,
    /// Create the job and return without following its progress.
    pub detach: bool,
    /// Print JSON (the plan or the job) instead of text.
    pub json: bool,
}

/// `replay --filter …`: a dry run, or a job created in the journal for running gateways to work,
/// followed with a progress bar until it completes or is cancelled (unless `detach`).
pub async fn replay_bulk(
    cfg: &Config,
    j: &dyn Journal,
    mut req: BulkReplay,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    if req.filter == ExchangeFilter::default() {
        bail!("give at least one --filter KEY=VALUE (e.g. --filter status=parked)");
    }
    if let Some(t) = &req.target {
        match &req.filter.target {
            Some(ft) if ft != t => bail!("--target {t} differs from --filter target={ft}"),
            _ => req.filter.target = Some(t.clone()),
        }
    }
    if let Some(f) = &req.filter.force
        && !cfg.forces.contains_key(f)
    {
        bail!("--filter force={f}: no such force in the configuration");
    }
    let mapping_version = match &req.mapping_version {
        Some(v) => Some(
            crate::remap::check(&mappings_of(cfg, req.filter.force.as_deref())?, v)
                .map_err(|why| anyhow::anyhow!("--mapping-version: {why}"))?,
        ),
        None => None,
    };
    if let Some(name) = &mapping_version {
        crate::remap::narrow(&mut req.filter, name)
            .map_err(|why| anyhow::anyhow!("--mapping-version: {why}"))?;
    }
    if req.dry_run {
        let mut plan = crate::jobs::dry_run(j, &req.filter, 10).await?;
        if let Some(to) = &mapping_version {
            let mappings = mappings_of(cfg, req.filter.force.as_deref())?;
            plan.diffs = crate::remap::diff_sample(j, &mappings, &plan.sample, to).await?;
            plan.mapping_version = Some(to.clone());
        }
        j.audit(cli_event(
            "exchange.replay_job.dry_run",
            None,
            Some(
                serde_json::json!({ "filter": req.filter, "matching": plan.matching,
                "mappingVersion": plan.mapping_version }),
            ),
        ))
        .await?;
        if req.json {
            serde_json::to_writer_pretty(&mut *out, &plan)?;
            writeln!(out)?;
            return Ok(());
        }
        writeln!(
            out,
            "dry run: {} exchange(s) match; {} of them parked (each replayed unless it already has a pending or delivered replay)",
            plan.matching, plan.parked
        )?;
        writeln!(out, "sample (newest first):")?;
        print_rows(&plan.sample, false, out)?;
        if let Some(to) = &plan.mapping_version {
            let changed = plan.diffs.iter().filter(|d| d.changed).count();
            writeln!(
                out,
                "\nthrough {to}: {changed} of the {} sampled payload(s) would change",
                plan.diffs.len()
            )?;
            for d in &plan.diffs {
                print_diff(d, out)?;
            }
        }
        return Ok(());
    }
    let job = j
        .create_replay_job(
            replay::NewReplayJob {
                filter: req.filter.clone(),
                options: replay::ReplayOptions {
                    target: req.target.clone(),
                    mapping_version,
                    rate_per_sec: req.rate,
                },
                created_by: cli_actor(),
            },
            cli_event("exchange.replay_job.create", None, None),
        )
        .await?;
    if req.detach {
        if req.json {
            serde_json::to_writer_pretty(&mut *out, &job)?;
            writeln!(out)?;
        } else {
            writeln!(
                out,
                "replay job {} created: {} exchange(s) planned; running gateways work it",
                job.id, job.planned
            )?;
            writeln!(out, "follow it with: nmpp-gateway replay jobs")?;
        }
        return Ok(());
    }
    writeln!(
        out,
        "replay job {} created: {} exchange(s) planned; running gateways work it (Ctrl-C stops \
         watching, not the job; nmpp-gateway replay --cancel {} stops it)",
        job.id, job.planned, job.id
    )?;
    out.flush()?;
    let job = follow(j, job.id).await?;
    if req.json {
        serde_json::to_writer_pretty(&mut *out, &job)?;
        writeln!(out)?;
    } else {
        writeln!(out, "{}", job_line(&job))?;
    }
    Ok(())
}

/// One line on a replay job: id, state and counts.
fn job_line(job: &replay::ReplayJob) -> String {
    format!(
        "replay job {} {}: {} replayed, {} skipped of {} planned",
        job.id,
        job.state.as_str(),
        job.replayed,
        job.skipped,
        job.planned
    )
}

/// Shows a job's progress (on standard error, when it is a terminal) until it stops running.
async fn follow(j: &dyn Journal, id: Uuid) -> anyhow::Result<replay::ReplayJob> {
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} ({per_sec}, eta {eta}) {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    loop {
        let job = j
            .replay_job(id)
            .await?
            .with_context(|| format!("replay job {id} disappeared"))?;
        bar.set_length(job.planned);
        bar.set_position(job.replayed + job.skipped);
        bar.set_message(format!(
            "{} replayed, {} skipped",
            job.replayed, job.skipped
        ));
        if job.state != replay::ReplayJobState::Running {
            bar.finish();
            return Ok(job);
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// `replay --cancel JOB` / `replay --resume JOB`.
pub async fn set_job_cancelled(
    j: &dyn Journal,
    id: &str,
    cancel: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let id = Uuid::parse_str(id).with_context(|| format!("{id:?} is not a replay job id"))?;
    let action = if cancel {
        "exchange.replay_job.cancel"
    } else {
        "exchange.replay_job.resume"
    };
    let mut ev = cli_event(action, Some(id.to_string()), None);
    ev.object_type = Some("replay_job".into());
    let job = j.set_replay_job_cancelled(id, cancel, ev).await?;
    writeln!(out, "{}", job_line(&job))?;
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

/// `replay jobs`.
pub async fn list_jobs(j: &dyn Journal, json: bool, out: &mut dyn Write) -> anyhow::Result<()> {
    let jobs = j.replay_jobs(100).await?;
    if json {
        serde_json::to_writer_pretty(&mut *out, &jobs)?;
        writeln!(out)?;
        return Ok(());
    }
    writeln!(
        out,
        "{:<36}  {:<9}  {:>9}  {:>9}  {:>9}  {:<24}  FILTER",
        "JOB", "STATE", "PLANNED", "REPLAYED", "SKIPPED", "CREATED"
    )?;
    for job in &jobs {
        writeln!(
            out,
            "{:<36}  {:<9}  {:>9}  {:>9}  {:>9}  {:<24}  {}",
            job.id,
            job.state.as_str(),
            job.planned,
            job.replayed,
            job.skipped,
            job.created_at
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            serde_json::to_string(&job.filter).unwrap_or_default()
        )?;
    }
    Ok(())
}

/// `retention apply [--dry-run]`.
pub async fn retention_apply(
    cfg: &Config,
    j: &dyn Journal,
    dry_run: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let policies = cfg.retention.policies().map_err(anyhow::Error::msg)?;
    if policies.is_empty() {
        writeln!(out, "no retention policy is configured: nothing to do")?;
        return Ok(());
    }
    let now = time::OffsetDateTime::now_utc();
    if dry_run {
        // Upper bounds: the journal skips exchanges under a legal hold, and deletes a family
        // (an exchange and its replays) only when its newest member is old enough.
        writeln!(
            out,
            "dry run: delivered and parked exchanges older than each period (at most; legal holds \
             and newer replays keep some; pending ones are never deleted)"
        )?;
        for p in &policies {
            let mut f = ExchangeFilter {
                force: Some(p.force.clone()),
                kind: p.kind.clone(),
                ..Default::default()
            };
            let describe = |d: Option<std::time::Duration>| {
                d.map_or("keep".to_owned(), |d| format!("{}s", d.as_secs()))
            };
            let mut counts = Vec::new();
            for (what, period) in [("payloads", p.payloads), ("metadata", p.metadata)] {
                if let Some(d) = period {
                    // Pending exchanges are never deleted: they still have to be delivered.
                    f.to = Some(now - d);
                    let mut n = 0;
                    for st in [Status::Delivered, Status::Parked] {
                        f.status = Some(st);
                        n += j.count(&f).await?;
                    }
                    counts.push(format!("{what}: {n}"));
                }
            }
            writeln!(
                out,
                "  force {} kind {}: payloads {}, metadata {} → {}",
                p.force,
                p.kind.as_deref().unwrap_or("*"),
                describe(p.payloads),
                describe(p.metadata),
                if counts.is_empty() {
                    "nothing".into()
                } else {
                    counts.join(", ")
                }
            )?;
        }
        return Ok(());
    }
    let report = j
        .apply_retention(
            &policies,
            now,
            crate::jobs::retention_audit(&cli_actor(), "operator"),
        )
        .await?;
    writeln!(
        out,
        "retention applied: payloads deleted from {} exchange(s), {} exchange(s) and {} attempt(s) deleted, {} partition(s) dropped, {} audit record(s) written",
        report.payloads_deleted,
        report.exchanges_deleted,
        report.attempts_deleted,
        report.partitions_dropped.len(),
        report.audit_records
    )?;
    Ok(())
}

/// `audit retention apply [--dry-run]`: applies `[audit.retention]` (see
/// [`crate::ledger::AuditLedger::apply_retention`]); with `--dry-run`, says what it would prune,
/// what legal holds keep, and how far the slowest audit sink lets it go.
pub async fn audit_retention_apply(
    cfg: &Config,
    j: Arc<dyn Journal>,
    dry_run: bool,
    out: &mut dyn Write,
) -> anyhow::Result<crate::ledger::AuditRetentionReport> {
    let policy = cfg.audit.retention.policy().map_err(anyhow::Error::msg)?;
    if policy.is_empty() {
        writeln!(
            out,
            "no audit retention period is configured ([audit.retention]): nothing to do"
        )?;
        return Ok(crate::ledger::AuditRetentionReport::default());
    }
    let signer = crate::ledger::load_signer(&cfg.audit)?;
    let ledger = crate::ledger::AuditLedger::new(j.clone(), signer, &cfg.audit)?;
    let sinks: Vec<String> = cfg
        .audit
        .sinks
        .iter()
        .map(|s| s.name().to_owned())
        .collect();
    let mut template = cli_event(replay::ledger_db::RETENTION_DELETED_ACTION, None, None);
    template.object_type = Some("audit".into());
    let r = ledger
        .apply_retention(
            &policy,
            &sinks,
            time::OffsetDateTime::now_utc(),
            dry_run,
            &template,
        )
        .await?;
    writeln!(
        out,
        "{}audit retention: {}; records before {} (UTC) lose their content",
        if dry_run { "dry run: " } else { "" },
        cfg.audit.retention.describe(),
        r.before.as_deref().unwrap_or("-"),
    )?;
    match &r.slowest_sink {
        Some(s) => writeln!(
            out,
            "  ledger size {}; audit sink {} has shipped through record {}: retention never prunes \
             past the slowest sink, so records after {} are left alone this run",
            r.ledger_size, s.sink, s.delivered_through, r.through
        )?,
        None if sinks.is_empty() => writeln!(
            out,
            "  ledger size {}; no audit sink is configured",
            r.ledger_size
        )?,
        None => writeln!(
            out,
            "  ledger size {}; every audit sink has shipped the whole ledger",
            r.ledger_size
        )?,
    }
    let range = match (r.first_due, r.last_due) {
        (Some(a), Some(b)) => format!(" (records {a}..={b})"),
        _ => String::new(),
    };
    if dry_run {
        writeln!(
            out,
            "  would prune {} record(s){range}; {} kept by legal holds; nothing was changed",
            r.due, r.held
        )?;
    } else {
        writeln!(
            out,
            "  pruned {} record(s){range} under {} deletion record(s) {:?}, each covered by a \
             signed checkpoint first; {} kept by legal holds",
            r.pruned,
            r.deletion_records.len(),
            r.deletion_records,
            r.held
        )?;
    }
    Ok(r)
}

/// `holds list`.
pub async fn holds_list(j: &dyn Journal, json: bool, out: &mut dyn Write) -> anyhow::Result<()> {
    let holds = j.holds().await?;
    j.audit(cli_event("legal_hold.list", None, None)).await?;
    if json {
        serde_json::to_writer_pretty(&mut *out, &holds)?;
        writeln!(out)?;
        return Ok(());
    }
    for h in &holds {
        let what = match &h.target {
            replay::HoldTarget::Exchange { id } => format!("exchange {id}"),
            replay::HoldTarget::Case { force, case_ref } => format!("case {force}/{case_ref}"),
        };
        writeln!(out, "{}  {}  by {}  {}", h.id, what, h.placed_by, h.reason)?;
    }
    writeln!(out, "{} hold(s)", holds.len())?;
    Ok(())
}

/// `holds place`.
pub async fn holds_place(
    j: &dyn Journal,
    exchange: Option<&str>,
    case: Option<&str>,
    reason: &str,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let target = match (exchange, case) {
        (Some(id), None) => replay::HoldTarget::Exchange {
            id: Uuid::parse_str(id)
                .with_context(|| format!("--exchange {id:?}: not an exchange id"))?,
        },
        (None, Some(c)) => {
            let (force, case_ref) = c
                .split_once('/')
                .with_context(|| format!("--case {c:?}: expected FORCE/CASE_REF"))?;
            replay::HoldTarget::Case {
                force: force.into(),
                case_ref: case_ref.into(),
            }
        }
        _ => bail!("give exactly one of --exchange ID or --case FORCE/CASE_REF"),
    };
    if reason.trim().is_empty() {
        bail!("--reason: must not be empty");
    }
    let mut ev = cli_event("legal_hold.place", None, None);
    ev.object_type = Some("legal_hold".into());
    let hold = j.place_hold(target, reason.trim(), ev).await?;
    writeln!(out, "legal hold {} placed", hold.id)?;
    Ok(())
}

/// `holds release ID`.
pub async fn holds_release(j: &dyn Journal, id: &str, out: &mut dyn Write) -> anyhow::Result<()> {
    let id = Uuid::parse_str(id).with_context(|| format!("{id:?} is not a legal hold id"))?;
    let mut ev = cli_event("legal_hold.release", Some(id.to_string()), None);
    ev.object_type = Some("legal_hold".into());
    j.release_hold(id, ev).await?;
    writeln!(out, "legal hold {id} released")?;
    Ok(())
}
