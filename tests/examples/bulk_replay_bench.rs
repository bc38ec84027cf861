//! Bulk replay rate against the Athena simulator (issue 3 benchmark; BENCHMARKS.md).
//!
//! Seeds N parked submissions straight into a fresh SQLite journal, starts a gateway in this
//! process delivering to the in-process Athena simulator over loopback HTTP, creates one bulk
//! replay job over `status=parked` with no rate limit, and measures:
//! - how fast the job creates the child exchanges (journal transactions of `replay.batch`);
//! - how fast the children are delivered end to end (mapping, HTTP, simulator, attempt journal);
//! - duplicates seen by the simulator (must be 0) and records created (must be N);
//! - the baseline, in the same run: the same N creates sent straight to the simulator through
//!   the same Athena adapter (one mapping, fresh idempotency keys, the same concurrency), with
//!   no journal, claim or replay job — the most the target and its HTTP path can take here.
//!
//! Completion is watched on the simulator's counters (cheap) and confirmed once on the
//! journal: `Journal::stats` counts rows, and polling it every few milliseconds at 100,000
//! exchanges would cost the gateway more than the work it measures.
//!
//! Like the `nmpp-gateway` binary, it allocates with mimalloc (so the gateway code runs on the
//! allocator it ships with).
//!
//! Run: `ops/bench/bulk-replay.sh [N] [WORKERS] [STEP]` (STEP: children per replay step,
//! `replay.batch`; default the shipped default).

use nmpp_tests::{FORCE, test_config};
use std::time::{Duration, Instant};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map_or(Ok(100_000), |a| a.parse())?;
    let workers: usize = args.next().map_or(Ok(64), |a| a.parse())?;
    // Children created per replay step (`replay.batch`): the shipped default unless given.
    let step: usize = args
        .next()
        .map_or(Ok(gateway::config::ReplayConfig::default().batch), |a| {
            a.parse()
        })?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("journal.db");
    let url = format!("sqlite://{}", path.display());

    let t = Instant::now();
    {
        let j = replay::open(&url, replay::OpenOptions::default()).await?;
        nmpp_tests::seed::parked_submissions(j, FORCE, "athena", n, 64).await;
    }
    let seed_s = t.elapsed().as_secs_f64();

    let sim =
        fixtures::athena::AthenaSim::start(fixtures::athena::AthenaSimOptions::default()).await?;
    let mut cfg = test_config(&path, &sim.base_url());
    cfg.delivery.workers = workers;
    cfg.replay.poll_ms = 20;
    cfg.replay.batch = step;
    let gw = gateway::Gateway::build(cfg, None).await?;
    let journal = gw.state.journal.clone();
    let pipeline = gw.state.pipeline.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(gateway::run(listener, gw, shutdown.clone()));

    let mut filter = replay::ExchangeFilter::default();
    filter.set("status", "parked").map_err(anyhow::Error::msg)?;
    let t = Instant::now();
    let job = journal
        .create_replay_job(
            replay::NewReplayJob {
                filter,
                options: replay::ReplayOptions::default(),
                created_by: "bench".into(),
            },
            replay::AuditEvent {
                time: gateway::app::now_millis(),
                actor: "bench".into(),
                role: "operator".into(),
                force: None,
                action: "exchange.replay_job.create".into(),
                object_type: Some("replay_job".into()),
                object_id: None,
                result: "success".into(),
                source_ip: None,
                user_agent: None,
                correlation_id: None,
                event_uid: uuid::Uuid::now_v7(),
                detail: None,
            },
        )
        .await?;
    assert_eq!(job.planned, n as u64, "the dry-run count");
    let mut replayed_at = None;
    let mut last_job_poll = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(5)).await;
        if replayed_at.is_none() && last_job_poll.elapsed() >= Duration::from_millis(50) {
            last_job_poll = Instant::now();
            let j = journal.replay_job(job.id).await?.expect("the job");
            if j.state == replay::ReplayJobState::Completed {
                replayed_at = Some((t.elapsed().as_secs_f64(), sim.stats().created));
            }
        }
        if sim.stats().created >= n as u64 && replayed_at.is_some() {
            break;
        }
    }
    // Athena has every record; the last attempts are journalled a moment later.
    loop {
        if journal.stats().await?.delivered >= n as u64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let delivered_s = t.elapsed().as_secs_f64();
    let (replayed_s, created_by_then) = replayed_at.unwrap_or((delivered_s, 0));
    let st = sim.stats();

    // Baseline: the same number of creates straight through the adapter to a fresh simulator.
    let records = pipeline
        .force(FORCE)
        .expect("the bench force")
        .records
        .clone();
    let sdm: serde_json::Value = serde_json::from_str(nmpp_tests::sdm::SKELETON)?;
    let nmpp = pipeline.mappings().sdm_to_nmpp(&sdm)?;
    let prepared = std::sync::Arc::new(records.prepare_crime_record(&nmpp)?);
    let before = sim.stats();
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let t = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..workers {
        let (records, prepared, sent) = (records.clone(), prepared.clone(), sent.clone());
        tasks.spawn(async move {
            while sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < n {
                let ctx = adapters::DeliveryContext {
                    idempotency_key: uuid::Uuid::new_v4().to_string(),
                    correlation_id: "baseline".into(),
                };
                records
                    .create_crime_record(&prepared, &ctx)
                    .await
                    .expect("the simulator accepts the baseline's creates");
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r?;
    }
    let baseline_s = t.elapsed().as_secs_f64();
    let after = sim.stats();
    shutdown.cancel();
    let _ = server.await;
    println!(
        "n={n} workers={workers} step={step} seed={seed_s:.1}s ({:.0}/s) children_created={replayed_s:.1}s ({:.0}/s) \
         delivered={delivered_s:.1}s ({:.0}/s) sim_created={} sim_duplicates={}",
        n as f64 / seed_s,
        n as f64 / replayed_s,
        n as f64 / delivered_s,
        st.created,
        st.duplicates
    );
    // Delivery alone, once the job had created every child (while it creates them, its steps
    // and the deliveries share the one journal writer).
    println!(
        "after the children were created: {} delivered in {:.1}s ({:.0}/s)",
        n as u64 - created_by_then,
        delivered_s - replayed_s,
        (n as u64 - created_by_then) as f64 / (delivered_s - replayed_s)
    );
    println!(
        "baseline (adapter straight to the simulator, no journal): {baseline_s:.1}s ({:.0}/s) \
         created={} -> bulk replay end to end = {:.1}% of the baseline rate",
        n as f64 / baseline_s,
        after.created - before.created,
        100.0 * baseline_s / delivered_s
    );
    Ok(())
}
