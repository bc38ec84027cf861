//! The `nmpp-gateway` binary.

use anyhow::Context;
use clap::{Parser, Subcommand};
use gateway::{Gateway, config::Config, server::DemoClient};
use std::{io::Write, path::PathBuf, process::ExitCode};
use tokio_util::sync::CancellationToken;

// glibc's malloc took a quarter of request-handling CPU in profiles (BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Force integration layer for My Police Portal: iHub in, force systems out, every exchange
/// journalled and audited.
#[derive(Parser)]
#[command(name = "nmpp-gateway", version, about)]
struct Cli {
    /// Configuration file (TOML). Without one, the embedded default is used: SQLite journal
    /// under ./data, in-process Athena and DAMS simulators for one demo force, 127.0.0.1:8080.
    #[arg(long, short, global = true, env = "NMPP_GATEWAY_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve,
    /// Find and inspect exchanges.
    Exchanges {
        #[command(subcommand)]
        command: ExchangesCmd,
    },
    /// Re-execute parked exchanges as new child exchanges linked to their parents: one by id, or
    /// every one matching `--filter` as a bulk replay job that running gateways work
    /// (`--dry-run` first), optionally through another mapping version (`--mapping-version`,
    /// whose `--dry-run` shows the diff of old and new payloads). `replay jobs` lists jobs;
    /// `--cancel JOB` and `--resume JOB` stop and continue one.
    Replay {
        /// Exchange id, or `jobs` to list bulk replay jobs.
        id: Option<String>,
        /// KEY=VALUE, repeatable (keys: status, force, kind, target, from, to, error_class,
        /// case_ref, submission_id, correlation_id, parent, replays).
        #[arg(long = "filter", value_name = "KEY=VALUE")]
        filters: Vec<String>,
        /// Print the exact count and a sample; replay nothing.
        #[arg(long)]
        dry_run: bool,
        /// At most this many replays per second, e.g. `500/s`.
        #[arg(long, value_parser = gateway::cli::parse_rate, value_name = "N/s")]
        rate: Option<u32>,
        /// Replay only deliveries to this target system (e.g. `athena`).
        #[arg(long)]
        target: Option<String>,
        /// Map the replays through this version of their target mapping spec
        /// (`nmpp-to-athena@2.0.0`) instead of the current one; with `--dry-run`, show the diff
        /// of the payload each exchange sent against the one this version makes.
        #[arg(long, value_name = "SPEC@VERSION")]
        mapping_version: Option<String>,
        /// Create the job and return at once instead of showing its progress.
        #[arg(long)]
        detach: bool,
        /// Cancel a running bulk replay job.
        #[arg(long, value_name = "JOB", conflicts_with_all = ["id", "filters", "resume"])]
        cancel: Option<String>,
        /// Resume a cancelled bulk replay job where it stopped.
        #[arg(long, value_name = "JOB", conflicts_with_all = ["id", "filters"])]
        resume: Option<String>,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Apply the configured retention periods.
    Retention {
        #[command(subcommand)]
        command: RetentionCmd,
    },
    /// Legal holds: while one is in force, retention deletes nothing it covers.
    Holds {
        #[command(subcommand)]
        command: HoldsCmd,
    },
    /// Audit trail commands.
    Audit {
        #[command(subcommand)]
        command: AuditCmd,
    },
    /// Print the OpenAPI document.
    Openapi,
    /// Mapping specs: `mappings doc` writes their documentation (source field → NMPP field →
    /// target field, per spec and version) as Markdown.
    Mappings {
        #[command(subcommand)]
        command: MappingsCmd,
    },
    /// Print the SHA-256 of a client secret, for `auth.clients.<key>.secret_sha256`.
    /// Reads the secret from standard input when not given.
    HashSecret {
        /// The secret.
        secret: Option<String>,
    },
    /// Load and validate a configuration file, reporting every problem; exit 1 if any.
    CheckConfig {
        /// The file.
        file: PathBuf,
    },
    /// Apply journal migrations and exit.
    Migrate,
}

#[derive(Subcommand)]
enum MappingsCmd {
    /// Write the Markdown documentation of the mapping specs: the built-in ones, then a force's
    /// own specs and overrides from `--specs DIR` (its `*.toml` files, in file-name order).
    Doc {
        /// A directory of a force's spec files and overrides, loaded over the built-in specs.
        #[arg(long)]
        specs: Option<PathBuf>,
        /// Write to this file instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum RetentionCmd {
    /// Delete payloads and exchanges older than their periods (audited); `--dry-run` counts.
    Apply {
        /// Count what is older than each period; delete nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Subcommand)]
enum HoldsCmd {
    /// Holds in force.
    List {
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Place a hold on an exchange (and its replays) or on a case.
    Place {
        /// Exchange id.
        #[arg(long)]
        exchange: Option<String>,
        /// FORCE/CASE_REF.
        #[arg(long)]
        case: Option<String>,
        /// Reference to the legal matter (never personal data).
        #[arg(long)]
        reason: String,
    },
    /// Release a hold.
    Release {
        /// Hold id.
        id: String,
    },
}

#[derive(Subcommand)]
enum ExchangesCmd {
    /// List (search) exchanges, newest first (all matching unless --limit).
    #[command(visible_alias = "search")]
    List {
        /// Only `pending`, `delivered` or `parked`.
        #[arg(long)]
        status: Option<replay::Status>,
        /// KEY=VALUE, repeatable (keys: status, force, kind, target, from, to, error_class,
        /// case_ref, submission_id, correlation_id, parent, replays; times RFC 3339).
        #[arg(long = "filter", value_name = "KEY=VALUE")]
        filters: Vec<String>,
        /// At most this many.
        #[arg(long)]
        limit: Option<usize>,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Park a pending exchange (no more attempts until unparked or replayed).
    Park {
        /// Exchange id.
        id: String,
    },
    /// Put a parked exchange back to pending.
    Unpark {
        /// Exchange id.
        id: String,
    },
    /// Journal statistics: counts by status, force and kind; oldest pending and parked.
    Stats {
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Show one exchange with its attempts, parent and children.
    Show {
        /// Exchange id.
        id: String,
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum AuditCmd {
    /// With DIR: check an exported bundle offline (no database needed); without: check the
    /// journal's audit hash chain. Names the first bad record and exits 1 if anything is wrong.
    Verify {
        /// A bundle directory written by `audit export`.
        dir: Option<PathBuf>,
    },
    /// Export the audit ledger as an auditor bundle: records (with sequence and leaf hash),
    /// signed checkpoints, the public key and proofs. Everything unless filtered. Audited.
    Export {
        /// `csv` or `jsonl`.
        #[arg(long, default_value = "csv")]
        format: String,
        /// The bundle directory (must not exist or be empty).
        #[arg(long)]
        out: PathBuf,
        /// Only records at or after this time (RFC 3339).
        #[arg(long)]
        from: Option<String>,
        /// Only records before this time (RFC 3339).
        #[arg(long)]
        to: Option<String>,
        /// Only records of this force.
        #[arg(long)]
        force: Option<String>,
        /// Only records by this actor.
        #[arg(long)]
        actor: Option<String>,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
    },
    /// Audit retention (`[audit.retention]`).
    Retention {
        #[command(subcommand)]
        command: AuditRetentionCmd,
    },
}

#[derive(Subcommand)]
enum AuditRetentionCmd {
    /// Remove the content of audit records older than their period, keeping sequence numbers
    /// and leaf hashes; each chunk is first announced by an `audit.retention.deleted` record
    /// covered by a signed checkpoint. Never past the slowest audit sink. `--dry-run` counts.
    Apply {
        /// Say what would be pruned (and what holds and sinks keep); change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

fn parse_time(flag: &str, v: Option<String>) -> anyhow::Result<Option<time::OffsetDateTime>> {
    v.map(|s| {
        time::OffsetDateTime::parse(&s, &time::format_description::well_known::Rfc3339)
            .map_err(|e| anyhow::anyhow!("{flag}: not an RFC 3339 date-time ({e}): {s:?}"))
    })
    .transpose()
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load(path: Option<&std::path::Path>) -> anyhow::Result<Config> {
    Config::load(path).map_err(|e| anyhow::anyhow!("configuration: {e}"))
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    match cli.command {
        Command::Serve => serve(cli.config).await?,
        Command::Exchanges { command } => {
            let cfg = load(cli.config.as_deref())?;
            let j = gateway::cli::open_journal(&cfg).await?;
            match command {
                ExchangesCmd::List {
                    status,
                    filters,
                    limit,
                    json,
                } => {
                    let filter = gateway::cli::filter_from_args(&filters, status)?;
                    gateway::cli::search(j.as_ref(), &filter, limit, json, &mut out).await?;
                }
                ExchangesCmd::Park { id } => {
                    gateway::cli::park(j.as_ref(), &id, true, &mut out).await?;
                }
                ExchangesCmd::Unpark { id } => {
                    gateway::cli::park(j.as_ref(), &id, false, &mut out).await?;
                }
                ExchangesCmd::Stats { json } => {
                    gateway::cli::stats(j.as_ref(), json, &mut out).await?;
                }
                ExchangesCmd::Show { id, json } => {
                    gateway::cli::show(j.as_ref(), &id, json, &mut out).await?;
                }
            }
        }
        Command::Replay {
            id,
            filters,
            dry_run,
            rate,
            target,
            mapping_version,
            detach,
            cancel,
            resume,
            json,
        } => {
            let cfg = load(cli.config.as_deref())?;
            let j = gateway::cli::open_journal(&cfg).await?;
            let j = j.as_ref();
            match (id.as_deref(), cancel, resume) {
                (_, Some(job), _) => {
                    gateway::cli::set_job_cancelled(j, &job, true, &mut out).await?;
                }
                (_, _, Some(job)) => {
                    gateway::cli::set_job_cancelled(j, &job, false, &mut out).await?;
                }
                (Some("jobs"), None, None) => gateway::cli::list_jobs(j, json, &mut out).await?,
                (Some(id), None, None) => {
                    if !filters.is_empty() || rate.is_some() || target.is_some() {
                        anyhow::bail!(
                            "give an exchange id or --filter, not both (--rate and --target go \
                             with --filter)"
                        );
                    }
                    let one = gateway::cli::ReplayOne {
                        mapping_version,
                        dry_run,
                        json,
                    };
                    gateway::cli::replay_one(&cfg, j, id, one, &mut out).await?;
                }
                (None, None, None) => {
                    let filter = gateway::cli::filter_from_args(&filters, None)?;
                    let req = gateway::cli::BulkReplay {
                        filter,
                        dry_run,
                        rate,
                        target,
                        mapping_version,
                        detach,
                        json,
                    };
                    gateway::cli::replay_bulk(&cfg, j, req, &mut out).await?;
                }
            }
        }
        Command::Retention {
            command: RetentionCmd::Apply { dry_run },
        } => {
            let cfg = load(cli.config.as_deref())?;
            let j = gateway::cli::open_journal(&cfg).await?;
            gateway::cli::retention_apply(&cfg, j.as_ref(), dry_run, &mut out).await?;
        }
        Command::Holds { command } => {
            let cfg = load(cli.config.as_deref())?;
            let j = gateway::cli::open_journal(&cfg).await?;
            let j = j.as_ref();
            match command {
                HoldsCmd::List { json } => gateway::cli::holds_list(j, json, &mut out).await?,
                HoldsCmd::Place {
                    exchange,
                    case,
                    reason,
                } => {
                    gateway::cli::holds_place(
                        j,
                        exchange.as_deref(),
                        case.as_deref(),
                        &reason,
                        &mut out,
                    )
                    .await?;
                }
                HoldsCmd::Release { id } => gateway::cli::holds_release(j, &id, &mut out).await?,
            }
        }
        Command::Audit {
            command: AuditCmd::Verify { dir: Some(dir) },
        } => {
            if !gateway::cli::audit_verify_bundle(&dir, &mut out)? {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Audit {
            command: AuditCmd::Verify { dir: None },
        } => {
            let cfg = load(cli.config.as_deref())?;
            let j = gateway::cli::open_journal(&cfg).await?;
            if !gateway::cli::audit_verify(j.as_ref(), &mut out).await? {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Audit {
            command:
                AuditCmd::Export {
                    format,
                    out: dir,
                    from,
                    to,
                    force,
                    actor,
                    quiet,
                },
        } => {
            let format = match format.as_str() {
                "csv" => replay::ledger::RecordFormat::Csv,
                "jsonl" => replay::ledger::RecordFormat::Jsonl,
                other => anyhow::bail!("--format: expected csv or jsonl, got {other:?}"),
            };
            let filter = replay::ledger::ExportFilter {
                from: parse_time("--from", from)?,
                to: parse_time("--to", to)?,
                force,
                actor,
            };
            let cfg = load(cli.config.as_deref())?;
            let j = gateway::cli::open_journal(&cfg).await?;
            let args = gateway::cli::ExportArgs {
                format,
                out: dir,
                filter,
                progress: !quiet,
            };
            gateway::cli::audit_export(&cfg, j, args, &mut out).await?;
        }
        Command::Audit {
            command:
                AuditCmd::Retention {
                    command: AuditRetentionCmd::Apply { dry_run },
                },
        } => {
            let cfg = load(cli.config.as_deref())?;
            let j = gateway::cli::open_journal(&cfg).await?;
            gateway::cli::audit_retention_apply(&cfg, j, dry_run, &mut out).await?;
        }
        Command::Openapi => out.write_all(gateway::openapi::json().as_bytes())?,
        Command::Mappings {
            command: MappingsCmd::Doc { specs, out: file },
        } => {
            // A spec that does not load is reported with its file and line, exit 1.
            let loaded = match &specs {
                Some(dir) => mappings::Mappings::load_dir(dir),
                None => mappings::Mappings::builtin(),
            };
            let m = match loaded {
                Ok(m) => m,
                Err(e) => {
                    writeln!(out, "mapping specs: {e}")?;
                    return Ok(ExitCode::FAILURE);
                }
            };
            let doc = m.document();
            match file {
                Some(path) => {
                    std::fs::write(&path, doc)
                        .with_context(|| format!("writing {}", path.display()))?;
                    writeln!(out, "wrote {}", path.display())?;
                }
                None => out.write_all(doc.as_bytes())?,
            }
        }
        Command::HashSecret { secret } => {
            let secret = match secret {
                Some(s) => s,
                None => {
                    let mut s = String::new();
                    std::io::stdin().read_line(&mut s)?;
                    s.trim_end_matches(['\r', '\n']).to_owned()
                }
            };
            if secret.len() < 16 {
                anyhow::bail!("use a secret of at least 16 characters (32 random bytes is better)");
            }
            writeln!(out, "{}", gateway::auth::hash_secret(&secret))?;
        }
        Command::CheckConfig { file } => match Config::load(Some(&file)) {
            Ok(_) => writeln!(out, "{}: ok", file.display())?,
            Err(e) => {
                for problem in e.problems() {
                    // Problems located in the file start with its name already.
                    if problem.starts_with(&format!("{}:", file.display())) {
                        writeln!(out, "{problem}")?;
                    } else {
                        writeln!(out, "{}: {problem}", file.display())?;
                    }
                }
                writeln!(out, "{}: {} problem(s)", file.display(), e.problems().len())?;
                return Ok(ExitCode::FAILURE);
            }
        },
        Command::Migrate => {
            let cfg = load(cli.config.as_deref())?;
            gateway::cli::open_journal(&cfg).await?;
            writeln!(
                out,
                "journal {} is up to date",
                replay::redact_url(&cfg.journal.url)
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn init_tracing(cfg: &Config) {
    use tracing_subscriber::EnvFilter;
    // RUST_LOG, when set, chooses the filter and keeps it; otherwise `log.level` does, and a
    // configuration reload can change it (gateway::logging).
    let from_env = EnvFilter::try_from_default_env().ok();
    let reloadable = from_env.is_none();
    let filter = from_env.unwrap_or_else(|| EnvFilter::new(&cfg.log.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    macro_rules! install {
        ($builder:expr) => {{
            let builder = $builder.with_filter_reloading();
            let handle = builder.reload_handle();
            builder.init();
            if reloadable {
                gateway::logging::set_filter_handle(move |level| {
                    let filter = EnvFilter::try_new(level).map_err(|e| e.to_string())?;
                    handle.reload(filter).map_err(|e| e.to_string())
                });
            }
        }};
    }
    if cfg.log.format == "json" {
        install!(builder.json());
    } else {
        install!(builder);
    }
}

fn demo_client() -> DemoClient {
    let key = std::env::var("NMPP_GATEWAY_DEMO_API_KEY").unwrap_or_else(|_| "demo".into());
    let secret = std::env::var("NMPP_GATEWAY_DEMO_API_SECRET").unwrap_or_else(|_| {
        use rand::RngExt as _;
        let mut rng = rand::rng();
        (0..32)
            .map(|_| {
                char::from(
                    b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
                        [rng.random_range(0..57)],
                )
            })
            .collect()
    });
    DemoClient { key, secret }
}

async fn serve(config: Option<PathBuf>) -> anyhow::Result<()> {
    let embedded = config.is_none();
    let cfg = load(config.as_deref())?;
    init_tracing(&cfg);
    let demo = embedded.then(demo_client);
    let listen = cfg.http.listen;
    let journal_url = replay::redact_url(&cfg.journal.url);
    let gw = Gateway::build(cfg, demo.as_ref()).await?;
    if let Some(path) = &config {
        gw.reloader
            .set_source(gateway::reload::file_source(path.clone()));
    }
    spawn_sighup_reload(gw.reloader.clone());
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr()?;
    print_banner(&gw, addr, &journal_url, demo.as_ref())?;

    let shutdown = CancellationToken::new();
    let s = shutdown.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down: finishing in-flight requests and deliveries");
        s.cancel();
    });
    gateway::run(listener, gw, shutdown).await?;
    Ok(())
}

/// SIGHUP re-reads the configuration file and applies it (as `POST /v1/config/reload`).
fn spawn_sighup_reload(reloader: std::sync::Arc<gateway::reload::Reloader>) {
    #[cfg(unix)]
    tokio::spawn(async move {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            tracing::warn!("cannot listen for SIGHUP; reload with POST /v1/config/reload");
            return;
        };
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading the configuration");
            // The outcome is logged, counted and audited by the reloader.
            let _ = reloader.reload_on_signal().await;
        }
    });
    #[cfg(not(unix))]
    drop(reloader);
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { () = ctrl_c => {}, () = term => {} }
}

const EXAMPLE: &str = include_str!("../../fixtures/data/sdm/online-crime-report.json");
/// The same report with a photo attached (another submission id).
const EXAMPLE_WITH_PHOTO: &str =
    include_str!("../../fixtures/data/sdm/online-crime-report-with-photo.json");

fn print_banner(
    gw: &Gateway,
    addr: std::net::SocketAddr,
    journal: &str,
    demo: Option<&DemoClient>,
) -> anyhow::Result<()> {
    let mut o = std::io::stdout().lock();
    let base = format!("http://{addr}");
    writeln!(
        o,
        "nmpp-gateway {} listening on {base}",
        env!("CARGO_PKG_VERSION")
    )?;
    writeln!(o, "  journal     {journal}")?;
    for (key, f) in &gw.state.config.forces {
        let desc = serde_json::to_value(&f.records).unwrap_or_default();
        let kind = desc
            .get("type")
            .and_then(|v| v.as_str())
            .unwrap_or("records");
        let url = desc.get("base_url").and_then(|v| v.as_str()).unwrap_or("");
        let sim = gw.athena_sim.as_ref().is_some_and(|s| s.base_url() == url);
        writeln!(
            o,
            "  force       {key} ({}, iHub force {}) → {kind} at {url}{}",
            f.name,
            f.ihub_force_id,
            if sim { " (in-process simulator)" } else { "" }
        )?;
        if let Some(adapters::EvidenceStoreConfig::Dams(d)) = &f.evidence {
            let sim = gw
                .dams_sim
                .as_ref()
                .is_some_and(|s| s.base_url() == d.base_url);
            writeln!(
                o,
                "              evidence → dams at {}{}",
                d.base_url,
                if sim { " (in-process simulator)" } else { "" }
            )?;
        }
    }
    writeln!(
        o,
        "  docs        {base}/docs  (sign in with an API key and secret)"
    )?;
    writeln!(o, "  openapi     {base}/openapi/v1.json")?;
    writeln!(o, "  audit key   {}", gw.state.ledger.verifier())?;
    writeln!(o, "  health      {base}/health/ready")?;
    if let Some(d) = demo {
        std::fs::create_dir_all("data").ok();
        let example = std::path::Path::new("data/example-incident.json");
        std::fs::write(example, EXAMPLE).context("writing data/example-incident.json")?;
        let with_photo = std::path::Path::new("data/example-incident-with-photo.json");
        std::fs::write(with_photo, EXAMPLE_WITH_PHOTO)
            .context("writing data/example-incident-with-photo.json")?;
        writeln!(o, "  demo key    {}", d.key)?;
        writeln!(o, "  demo secret {}", d.secret)?;
        writeln!(o)?;
        writeln!(
            o,
            "Try it (submits the published Online Crime Report example):"
        )?;
        writeln!(
            o,
            "  curl -sS -X POST {base}/incidents -H 'content-type: application/vnd.api+json' \
             -H 'x-api-key: {}' -H 'x-api-secret: {}' --data-binary @{}",
            d.key,
            d.secret,
            example.display()
        )?;
        writeln!(
            o,
            "With a photo attached (uploaded to the DAMS once Athena has the crime record): \
             the same line with @{}",
            with_photo.display()
        )?;
        writeln!(o, "Then: nmpp-gateway exchanges list   (in this directory)")?;
    }
    o.flush()?;
    Ok(())
}
