//! Assembling a gateway from configuration and running it.

use crate::{
    app::{AppState, Inner},
    auth::Credentials,
    config::{Config, Role},
    delivery::Pipeline,
    reload::Reloader,
};
use anyhow::Context;
use fixtures::athena::{AthenaSim, AthenaSimOptions};
use fixtures::dams::{DamsSim, DamsSimOptions};
use std::{net::SocketAddr, sync::Arc};
use tokio::{net::TcpListener, sync::Notify};
use tokio_util::sync::CancellationToken;

/// A demo client whose plain secret is known (the embedded default).
#[derive(Debug, Clone)]
pub struct DemoClient {
    /// API key.
    pub key: String,
    /// Secret.
    pub secret: String,
}

/// A gateway ready to serve: state, dispatcher, and any in-process simulators.
pub struct Gateway {
    /// Shared state (router input).
    pub state: AppState,
    replay_runner: Arc<crate::jobs::ReplayRunner>,
    /// The in-process Athena simulator, when configured.
    pub athena_sim: Option<AthenaSim>,
    /// The in-process DAMS simulator, when configured.
    pub dams_sim: Option<DamsSim>,
    /// Applies configuration reloads (SIGHUP, `POST /v1/config/reload`).
    pub reloader: Arc<Reloader>,
    /// Audit sink drivers, started by [`run`].
    sinks: Vec<crate::ledger::SinkTask>,
}

impl Gateway {
    /// Builds everything the configuration describes: starts configured simulators, opens and
    /// migrates the journal, loads mappings and builds each force's adapters.
    pub async fn build(mut config: Config, demo: Option<&DemoClient>) -> anyhow::Result<Self> {
        let athena_sim = match config.simulators.athena {
            Some(listen) => Some(
                AthenaSim::start(AthenaSimOptions {
                    listen,
                    ..Default::default()
                })
                .await
                .with_context(|| format!("starting the Athena simulator on {listen}"))?,
            ),
            None => None,
        };
        let dams_sim = match config.simulators.dams {
            Some(listen) => Some(
                DamsSim::start(DamsSimOptions {
                    listen,
                    client_secret: uuid::Uuid::new_v4().simple().to_string(),
                    ..Default::default()
                })
                .await
                .with_context(|| format!("starting the DAMS simulator on {listen}"))?,
            ),
            None => None,
        };
        let sims = crate::reload::Sims {
            athena: athena_sim.as_ref().map(AthenaSim::base_url),
            dams: dams_sim.as_ref().map(|d| {
                let (client_id, client_secret) = d.credentials();
                crate::reload::SimDams {
                    base_url: d.base_url(),
                    token_url: d.token_url(),
                    client_id,
                    client_secret,
                }
            }),
        };
        crate::reload::resolve_sims(&mut config, &sims)
            .map_err(|p| anyhow::anyhow!(p.join("; ")))?;

        let journal = replay::open(
            &config.journal.url,
            replay::OpenOptions {
                max_size_bytes: config.journal.max_size_bytes,
                max_batch: Some(config.journal.max_batch),
                server: true,
            },
        )
        .await
        .with_context(|| {
            format!(
                "opening the journal {}",
                replay::redact_url(&config.journal.url)
            )
        })?;

        let mappings = Arc::new(
            config
                .mappings
                .load()
                .map_err(|e| anyhow::anyhow!("loading mappings: {e}"))?,
        );
        let forces = crate::reload::build_forces(&config, &mappings)
            .await
            .map_err(|p| anyhow::anyhow!(p.join("; ")))?;
        let pipeline = Arc::new(Pipeline::new(forces, mappings));

        let mut credentials = Credentials::new(&config.auth).map_err(anyhow::Error::msg)?;
        let mut kept = Vec::new();
        if let Some(d) = demo {
            credentials.add(
                &d.key,
                &d.secret,
                vec![Role::Ihub, Role::Operator, Role::Auditor],
            );
            kept.push(d.key.clone());
        }
        let credentials = Arc::new(crate::auth::LiveCredentials::new(credentials, kept));
        let work_ready = Arc::new(Notify::new());
        let node = format!("{}-{}", hostname(), std::process::id());
        let replay_runner = Arc::new(crate::jobs::ReplayRunner::new(
            journal.clone(),
            work_ready.clone(),
            config.replay.clone(),
            node.clone(),
        ));
        let reloader = Arc::new(Reloader::new(
            config.clone(),
            journal.clone(),
            pipeline.clone(),
            work_ready.clone(),
            node,
            sims,
            credentials.clone(),
        ));
        let signer = crate::ledger::load_signer(&config.audit)?;
        let ledger = Arc::new(crate::ledger::AuditLedger::new(
            journal.clone(),
            signer,
            &config.audit,
        )?);
        let sinks = ledger.build_sinks(&config.audit.sinks).await?;
        let state = AppState(Arc::new(Inner {
            config: Arc::new(config),
            journal,
            credentials,
            pipeline,
            work_ready,
            metrics: crate::metrics::handle(),
            reloader: reloader.clone(),
            ledger,
        }));
        Ok(Self {
            state,
            replay_runner,
            athena_sim,
            dams_sim,
            reloader,
            sinks,
        })
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "node".into())
}

/// Serves `gateway` on `listener` and runs its dispatcher until `shutdown` is cancelled; then
/// stops accepting, finishes in-flight requests and deliveries, and returns.
pub async fn run(
    listener: TcpListener,
    gateway: Gateway,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let Gateway {
        state,
        replay_runner,
        athena_sim,
        dams_sim,
        reloader,
        sinks,
    } = gateway;
    // The reloader runs the dispatcher (it starts another when `delivery` changes) and the
    // change detectors.
    reloader.start(shutdown.clone()).await;
    let checkpointer = tokio::spawn(state.ledger.clone().run_checkpointer(shutdown.clone()));
    let sink_tasks = crate::ledger::run_sinks(sinks, &state.journal, &shutdown);
    let jobs = tokio::spawn(crate::jobs::supervise(
        "replay jobs",
        shutdown.clone(),
        move |sd| replay_runner.clone().run(sd),
    ));
    let retention = tokio::spawn(crate::jobs::retention_loop(
        state.journal.clone(),
        state.config.retention.clone(),
        shutdown.clone(),
    ));
    let audit_retention = tokio::spawn(
        state.ledger.clone().run_retention(
            state.config.audit.retention.clone(),
            state
                .config
                .audit
                .sinks
                .iter()
                .map(|s| s.name().to_owned())
                .collect(),
            shutdown.clone(),
        ),
    );
    let router = crate::app(state).layer(tower_http::catch_panic::CatchPanicLayer::custom(|_| {
        use axum::response::IntoResponse;
        crate::error::ApiError::internal(&"handler panicked").into_response()
    }));
    let s = shutdown.clone();
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move { s.cancelled().await })
    .await?;
    shutdown.cancel();
    reloader.stop().await;
    let _ = checkpointer.await;
    for t in sink_tasks {
        let _ = t.await;
    }
    let _ = jobs.await;
    let _ = retention.await;
    let _ = audit_retention.await;
    if let Some(sim) = athena_sim {
        sim.shutdown().await;
    }
    if let Some(sim) = dams_sim {
        sim.shutdown().await;
    }
    Ok(())
}
