//! Configuration reload: re-read the configuration (on SIGHUP or `POST /v1/config/reload`),
//! build every force's adapters from it, and only if all of that succeeds swap the force
//! runtimes and restart change detection — without a restart of the process. An invalid new
//! configuration is refused with every problem named, and the running one stays.
//!
//! What a reload applies: everything under `forces.*` (records system — including the
//! `athena_dw` → `athena` swap —, national platform, command and control, evidence store,
//! change detection, a force's own mappings), `auth` (API clients: add, remove, rotate a
//! secret), `mappings` (the spec versions pinned as current: fresh deliveries use them at once;
//! exchanges already delivered keep the version their attempt recorded), `delivery` (the
//! dispatcher is restarted with the new policy — pause and unpause included — once the old one
//! has finished what it started) and `log.level`. Other sections (`http`, `journal`,
//! `log.format`) are read and checked but need a restart; the answer names those that differ.
//! A force added by a reload gets change detection, deliveries and iHub submissions (routed by
//! its `ihub_force_id`) at once; a force removed by a reload gets no new submissions (422
//! unknown force), and what it had journalled stays.

use crate::{
    config::{Config, ConfigError, ForceConfig, SIM_ATHENA, SIM_DAMS},
    delivery::{Dispatcher, ForceRuntime, Pipeline},
    detect::Detector,
    metrics as m,
};
use adapters::{EvidenceStoreConfig, RecordSystemConfig};
use futures::future::OptionFuture;
use replay::Journal;
use serde::Serialize;
use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::{Arc, Mutex},
};
use tokio::{sync::Notify, task::JoinHandle};
use tokio_util::sync::CancellationToken;

/// Where a reload reads the configuration from.
pub type ConfigSource = Arc<dyn Fn() -> Result<Config, ConfigError> + Send + Sync>;

/// A source that loads `path` (with environment overrides), as `serve --config` does.
pub fn file_source(path: PathBuf) -> ConfigSource {
    Arc::new(move || Config::load(Some(&path)))
}

/// A reload was refused; the running configuration stays.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// There is nothing to re-read (the embedded default, or no source was set).
    #[error("no configuration file to re-read: the gateway was started without --config")]
    NoSource,
    /// The new configuration is invalid; every problem is named.
    #[error("the new configuration was rejected: {}", .0.join("; "))]
    Invalid(Vec<String>),
}

/// What a reload did.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ReloadReport {
    /// Forces now configured.
    pub forces: Vec<String>,
    /// Forces whose records system changed kind, as `force: from → to`.
    pub records_swapped: Vec<String>,
    /// Forces running change detection.
    pub detecting: Vec<String>,
    /// Whether API clients (`auth`) changed and now apply: added clients sign in, removed ones
    /// are refused, new secrets replace old ones.
    pub auth_reloaded: bool,
    /// Sections that changed but only take effect after a restart.
    pub restart_needed: Vec<String>,
    /// The log filter now in force, when `log.level` changed and was applied.
    pub log_level: Option<String>,
    /// Whether the mapping versions pinned under `[mappings] current` changed and now apply.
    pub mappings_reloaded: bool,
    /// Whether `delivery` changed and now applies: the dispatcher was restarted with it
    /// (`paused`, workers, retries, timeouts, breakers, ordering), open breakers staying open.
    pub delivery_reloaded: bool,
}

struct Running {
    shutdown: Option<CancellationToken>,
    detectors: Vec<(CancellationToken, JoinHandle<()>)>,
    /// The dispatcher delivering with `config.delivery`, and how to stop it.
    dispatcher: Option<(CancellationToken, JoinHandle<()>)>,
    config: Config,
}

/// Owns the live force configuration: the pipeline's runtimes and the change detectors.
pub struct Reloader {
    credentials: Arc<crate::auth::LiveCredentials>,
    journal: Arc<dyn Journal>,
    pipeline: Arc<Pipeline>,
    work_ready: Arc<Notify>,
    node: String,
    sims: Sims,
    source: Mutex<Option<ConfigSource>>,
    running: tokio::sync::Mutex<Running>,
}

/// Where the in-process simulators listen, for [`resolve_sims`].
#[derive(Debug, Clone, Default)]
pub struct Sims {
    /// The Athena simulator's base URL.
    pub athena: Option<String>,
    /// The DAMS simulator.
    pub dams: Option<SimDams>,
}

/// How to reach the in-process DAMS simulator.
#[derive(Debug, Clone)]
pub struct SimDams {
    /// API base URL.
    pub base_url: String,
    /// OAuth2 token endpoint.
    pub token_url: String,
    /// The client id its token endpoint accepts.
    pub client_id: String,
    /// That client's secret (made afresh at each start).
    pub client_secret: String,
}

/// Replaces `sim://athena` and `sim://dams` with the in-process simulators' URLs (and, for the
/// DAMS, its client credentials).
pub fn resolve_sims(config: &mut Config, sims: &Sims) -> Result<(), Vec<String>> {
    let mut problems = Vec::new();
    for (key, force) in &mut config.forces {
        if let RecordSystemConfig::Athena(a) = &mut force.records
            && a.base_url == SIM_ATHENA
        {
            match &sims.athena {
                Some(url) => a.base_url = url.clone(),
                None => problems.push(format!(
                    "forces.{key}.records.base_url is {SIM_ATHENA} but simulators.athena is not \
                     set"
                )),
            }
        }
        if let Some(EvidenceStoreConfig::Dams(d)) = &mut force.evidence
            && (d.base_url == SIM_DAMS || d.token_url == SIM_DAMS)
        {
            match &sims.dams {
                Some(sim) => {
                    d.base_url = sim.base_url.clone();
                    d.token_url = sim.token_url.clone();
                    d.client_id = sim.client_id.clone();
                    d.client_secret = sim.client_secret.clone().into();
                }
                None => problems.push(format!(
                    "forces.{key}.evidence.base_url is {SIM_DAMS} but simulators.dams is not set"
                )),
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// Builds every force's adapters; every failure is named by its key.
pub async fn build_forces(
    config: &Config,
    mappings: &Arc<mappings::Mappings>,
) -> Result<BTreeMap<String, ForceRuntime>, Vec<String>> {
    let mut forces = BTreeMap::new();
    let mut problems = Vec::new();
    for (key, f) in &config.forces {
        match build_force(config, key, f, mappings).await {
            Ok(rt) => {
                forces.insert(key.clone(), rt);
            }
            Err(p) => problems.extend(p),
        }
    }
    if problems.is_empty() {
        Ok(forces)
    } else {
        Err(problems)
    }
}

/// The adapter `r` built for `forces.{key}.{what}`, if configured; a failure is recorded as a
/// problem naming the key.
fn built_adapter<A>(
    key: &str,
    what: &str,
    r: Option<Result<A, adapters::AdapterError>>,
    problems: &mut Vec<String>,
) -> Option<A> {
    match r? {
        Ok(a) => Some(a),
        Err(e) => {
            problems.push(format!("forces.{key}.{what}: {e}"));
            None
        }
    }
}

async fn build_force(
    config: &Config,
    key: &str,
    f: &ForceConfig,
    mappings: &Arc<mappings::Mappings>,
) -> Result<ForceRuntime, Vec<String>> {
    let mut problems = Vec::new();
    // The force's own specs, when it has them: every adapter of the force maps through them.
    let own = match &f.mappings {
        Some(dir) => match config.mappings.load_force(key, dir) {
            Ok(m) => Some(Arc::new(m)),
            Err(e) => return Err(vec![e]),
        },
        None => None,
    };
    let mappings = own.as_ref().unwrap_or(mappings);
    // Each adapter the force configures, built; a failure is a problem naming its key.
    let records = built_adapter(
        key,
        "records",
        Some(f.records.build(mappings.clone())),
        &mut problems,
    );
    let national = OptionFuture::from(f.national.as_ref().map(|c| c.build(mappings.clone()))).await;
    let national = built_adapter(key, "national", national, &mut problems);
    let command_control = OptionFuture::from(
        f.command_control
            .as_ref()
            .map(|c| c.build(mappings.clone())),
    )
    .await;
    let command_control = built_adapter(key, "command_control", command_control, &mut problems);
    let evidence = OptionFuture::from(f.evidence.as_ref().map(|c| c.build(mappings.clone()))).await;
    let evidence = built_adapter(key, "evidence", evidence, &mut problems);
    match records {
        Some(records) if problems.is_empty() => Ok(ForceRuntime {
            records,
            national,
            command_control,
            evidence,
            ihub_force_id: Some(f.ihub_force_id),
            mappings: own,
        }),
        _ => Err(problems),
    }
}

impl Reloader {
    /// A reloader over a pipeline already built from `config`.
    pub fn new(
        config: Config,
        journal: Arc<dyn Journal>,
        pipeline: Arc<Pipeline>,
        work_ready: Arc<Notify>,
        node: String,
        sims: Sims,
        credentials: Arc<crate::auth::LiveCredentials>,
    ) -> Self {
        Self {
            credentials,
            journal,
            pipeline,
            work_ready,
            node,
            sims,
            source: Mutex::new(None),
            running: tokio::sync::Mutex::new(Running {
                shutdown: None,
                detectors: Vec::new(),
                dispatcher: None,
                config,
            }),
        }
    }

    /// Sets where reloads read the configuration from.
    pub fn set_source(&self, source: ConfigSource) {
        *self
            .source
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(source);
    }

    /// Starts change detection for the current configuration; detectors stop when `shutdown`
    /// is cancelled.
    pub async fn start(&self, shutdown: CancellationToken) {
        let mut running = self.running.lock().await;
        running.shutdown = Some(shutdown);
        self.start_dispatcher(&mut running, None);
        self.start_detectors(&mut running);
    }

    /// Starts a dispatcher with `running.config.delivery`; when `after` is given (the previous
    /// dispatcher, already told to stop), it starts delivering once that one has put back what
    /// it had claimed and journalled its attempts in flight, so two never run at once.
    fn start_dispatcher(&self, running: &mut Running, after: Option<JoinHandle<()>>) {
        let Some(shutdown) = running.shutdown.clone() else {
            return;
        };
        let dispatcher = Arc::new(Dispatcher::new(
            self.journal.clone(),
            self.pipeline.clone(),
            running.config.delivery.clone(),
            self.node.clone(),
            self.work_ready.clone(),
        ));
        let token = shutdown.child_token();
        let stop = token.clone();
        let task = tokio::spawn(async move {
            if let Some(previous) = after {
                let _ = previous.await;
            }
            dispatcher.run(stop).await;
        });
        running.dispatcher = Some((token, task));
    }

    fn start_detectors(&self, running: &mut Running) {
        let Some(shutdown) = running.shutdown.clone() else {
            return;
        };
        for (key, f) in &running.config.forces {
            let Some(cd) = f.change_detection.as_ref().filter(|c| c.enabled) else {
                continue;
            };
            let Some(rt) = self.pipeline.force(key) else {
                continue;
            };
            let detector = Arc::new(Detector::new(
                key,
                f.ihub_force_id,
                cd.clone(),
                rt.records.clone(),
                rt.command_control.clone(),
                self.journal.clone(),
                self.work_ready.clone(),
                &self.node,
            ));
            let token = shutdown.child_token();
            let task = tokio::spawn(detector.run(token.clone()));
            running.detectors.push((token, task));
        }
    }

    /// Stops every detector and waits for them (each finishes its current poll).
    pub async fn stop(&self) {
        let mut running = self.running.lock().await;
        Self::stop_detectors(&mut running).await;
        if let Some((token, task)) = running.dispatcher.take() {
            token.cancel();
            let _ = task.await;
        }
    }

    async fn stop_detectors(running: &mut Running) {
        for (token, _) in &running.detectors {
            token.cancel();
        }
        for (_, task) in running.detectors.drain(..) {
            let _ = task.await;
        }
    }

    /// Re-reads the configuration and applies it, or refuses it and keeps the running one.
    #[tracing::instrument(skip_all)]
    pub async fn reload(&self) -> Result<ReloadReport, ReloadError> {
        let source = self
            .source
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
            .ok_or(ReloadError::NoSource)?;
        let result = self.apply(source).await;
        let outcome = if result.is_ok() {
            "applied"
        } else {
            "rejected"
        };
        metrics::counter!(m::CONFIG_RELOADS, "outcome" => outcome).increment(1);
        match &result {
            Ok(r) => tracing::info!(forces = r.forces.len(), swapped = ?r.records_swapped,
                "configuration reloaded"),
            Err(e) => {
                tracing::warn!(error = %e, "configuration reload rejected; the running configuration stays");
            }
        }
        result
    }

    /// [`Self::reload`] on a signal (SIGHUP), writing its own audit record (an API call is
    /// audited by the request gatekeeper instead).
    pub async fn reload_on_signal(&self) -> Result<ReloadReport, ReloadError> {
        let result = self.reload().await;
        let detail = match &result {
            Ok(r) => serde_json::json!({
                "signal": "SIGHUP",
                "recordsSwapped": r.records_swapped,
                "authReloaded": r.auth_reloaded,
                "restartNeeded": r.restart_needed,
                "logLevel": r.log_level,
                "mappingsReloaded": r.mappings_reloaded,
                "deliveryReloaded": r.delivery_reloaded,
            }),
            Err(e) => serde_json::json!({ "signal": "SIGHUP", "error": e.to_string() }),
        };
        let event = replay::AuditEvent {
            time: crate::app::now_millis(),
            actor: "signal".into(),
            role: "system".into(),
            force: None,
            action: "config.reload".into(),
            object_type: Some("configuration".into()),
            object_id: None,
            result: if result.is_ok() { "success" } else { "failure" }.into(),
            source_ip: None,
            user_agent: None,
            correlation_id: None,
            event_uid: uuid::Uuid::now_v7(),
            detail: Some(detail),
        };
        if let Err(e) = self.journal.audit(event).await {
            tracing::warn!(error = %e, "could not audit a configuration reload");
        }
        result
    }

    async fn apply(&self, source: ConfigSource) -> Result<ReloadReport, ReloadError> {
        let mut config = source().map_err(|ConfigError::Invalid(m)| ReloadError::Invalid(m))?;
        resolve_sims(&mut config, &self.sims).map_err(ReloadError::Invalid)?;
        // Reloads take turns: the running configuration is what this one is compared with.
        let mut running = self.running.lock().await;
        let differs = |a: &dyn erased::Ser, b: &dyn erased::Ser| a.json() != b.json();
        let mut report = ReloadReport {
            forces: config.forces.keys().cloned().collect(),
            mappings_reloaded: differs(&running.config.mappings, &config.mappings),
            delivery_reloaded: differs(&running.config.delivery, &config.delivery),
            ..ReloadReport::default()
        };
        // New pins: the shared mappings are built again, before anything is swapped.
        let shared = if report.mappings_reloaded {
            Arc::new(
                config
                    .mappings
                    .load()
                    .map_err(|e| ReloadError::Invalid(vec![e]))?,
            )
        } else {
            self.pipeline.mappings()
        };
        let forces = build_forces(&config, &shared)
            .await
            .map_err(ReloadError::Invalid)?;

        let old = &running.config;
        for (key, f) in &config.forces {
            if let Some(before) = old.forces.get(key) {
                let (a, b) = (kind(&before.records), kind(&f.records));
                if a != b {
                    report.records_swapped.push(format!("{key}: {a} → {b}"));
                }
            }
            if f.change_detection.as_ref().is_some_and(|c| c.enabled) {
                report.detecting.push(key.clone());
            }
        }
        for (name, changed) in [
            ("http", differs(&old.http, &config.http)),
            ("journal", differs(&old.journal, &config.journal)),
            ("log", differs(&old.log.format, &config.log.format)),
        ] {
            if changed {
                report.restart_needed.push(name.to_owned());
            }
        }
        // Stop detection on the old runtimes before the new ones start, so one force is never
        // polled by two detectors of this node at once.
        // Built before anything is swapped, so a bad `auth` section changes nothing.
        let credentials = if differs(&old.auth, &config.auth) {
            Some(
                crate::auth::Credentials::new(&config.auth)
                    .map_err(|e| ReloadError::Invalid(vec![e]))?,
            )
        } else {
            None
        };
        // The log level applies at once where the filter can be changed while running (not
        // when RUST_LOG chose it); otherwise it waits for a restart like the other sections.
        if old.log.level != config.log.level {
            match crate::logging::set_level(&config.log.level) {
                Some(Ok(())) => report.log_level = Some(config.log.level.clone()),
                Some(Err(e)) => {
                    return Err(ReloadError::Invalid(vec![format!("log.level: {e}")]));
                }
                None => {
                    if !report.restart_needed.iter().any(|s| s == "log") {
                        report.restart_needed.push("log".into());
                    }
                }
            }
        }
        Self::stop_detectors(&mut running).await;
        if let Some(credentials) = credentials {
            self.credentials.replace(credentials);
            report.auth_reloaded = true;
        }
        self.pipeline.swap(forces, shared);
        running.config = config;
        if report.delivery_reloaded
            && let Some((token, previous)) = running.dispatcher.take()
        {
            // The running dispatcher claims nothing more and finishes what it started; the new
            // one, with the new policy, takes over when it has.
            token.cancel();
            self.start_dispatcher(&mut running, Some(previous));
        }
        self.start_detectors(&mut running);
        Ok(report)
    }
}

fn kind(r: &RecordSystemConfig) -> &'static str {
    match r {
        RecordSystemConfig::Athena(_) => "athena",
        RecordSystemConfig::AthenaDw(_) => "athena_dw",
    }
}

/// Comparing configuration sections through their JSON form.
mod erased {
    pub(super) trait Ser {
        fn json(&self) -> serde_json::Value;
    }
    impl<T: serde::Serialize> Ser for T {
        fn json(&self) -> serde_json::Value {
            serde_json::to_value(self).unwrap_or_default()
        }
    }
}
