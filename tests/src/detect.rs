//! A rig for change-detection and multi-force suites: an in-process gateway whose forces run
//! change detection against real simulators (Athena, optionally the warehouse and STORM) and
//! deliver events to a real iHub receiver, with a configuration that a test can change and
//! reload through `POST /v1/config/reload`.

use crate::{Api, FORCE, IHUB_FORCE_ID, test_config};
use adapters::{
    CommandControlConfig, NationalPlatformConfig, RecordSystemConfig, athena::AthenaConfig,
    athena_dw::AthenaDwConfig, ihub::IhubConfig, storm::StormConfig,
};
use fixtures::{
    athena::{AthenaSim, AthenaSimOptions},
    ihub::{IhubSim, IhubSimOptions},
    storm::StormSim,
};
use gateway::{
    config::{Config, ConfigError, ForceConfig},
    detect::{ChangeDetectionConfig, config::RefreshConfig},
};
use replay::Journal;
use serde_json::Value;
use std::sync::{Arc, Mutex};
use tempfile::TempDir;
use tokio::{net::TcpListener, task::JoinHandle};
use tokio_util::sync::CancellationToken;

/// Change detection polling every 50 ms with every group refreshed at each poll.
pub fn fast_detection() -> ChangeDetectionConfig {
    ChangeDetectionConfig {
        poll_ms: 50,
        lease_ms: 5_000,
        refresh: RefreshConfig {
            status_ms: 0,
            officer_ms: 0,
            outcome_ms: 0,
        },
        ..ChangeDetectionConfig::default()
    }
}

/// Records config for an Athena simulator.
pub fn athena_records(sim: &AthenaSim) -> RecordSystemConfig {
    RecordSystemConfig::Athena(AthenaConfig {
        timeout_ms: 5_000,
        connect_timeout_ms: 1_000,
        ..AthenaConfig::new(sim.base_url())
    })
}

/// Records config for a warehouse (read-only role), with a short watermark lag.
pub fn warehouse_records(dw: &fixtures::warehouse::Warehouse) -> RecordSystemConfig {
    RecordSystemConfig::AthenaDw(AthenaDwConfig {
        watermark_lag_ms: 100,
        password: Some(adapters::athena::Secret::new(dw.read_only_password())),
        ..AthenaDwConfig::new(format!(
            "postgres://{}@127.0.0.1:5432/{}",
            dw.read_only_role(),
            dw.database()
        ))
    })
}

/// A force's iHub config for `sim`.
pub fn national(sim: &IhubSim) -> NationalPlatformConfig {
    let o = IhubSimOptions::default();
    NationalPlatformConfig::Ihub(IhubConfig::new(
        sim.base_url(),
        sim.token_url(),
        o.client_id,
        o.client_secret,
    ))
}

/// A force's STORM config for `sim`.
pub fn storm(sim: &StormSim) -> CommandControlConfig {
    CommandControlConfig::Storm(StormConfig::new(sim.base_url()))
}

/// A force with change detection to its own iHub receiver.
pub fn detecting_force(
    name: &str,
    ihub_force_id: u32,
    records: RecordSystemConfig,
    ihub: &IhubSim,
) -> ForceConfig {
    ForceConfig {
        name: name.into(),
        ihub_force_id,
        records,
        national: Some(national(ihub)),
        command_control: None,
        evidence: None,
        change_detection: Some(fast_detection()),
        mappings: None,
    }
}

/// A gateway with change detection, and the simulators of its first force.
pub struct DetectRig {
    /// Athena simulator of force [`FORCE`].
    pub athena: AthenaSim,
    /// iHub receiver of force [`FORCE`].
    pub ihub: IhubSim,
    /// The gateway's base URL.
    pub base_url: String,
    /// The configuration the next reload reads (change it, then [`DetectRig::reload`]).
    pub config: Arc<Mutex<Config>>,
    /// The gateway's journal.
    pub journal: Arc<dyn Journal>,
    /// Holds the journal file.
    pub dir: TempDir,
    shutdown: CancellationToken,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl DetectRig {
    /// Starts simulators and a gateway whose force [`FORCE`] runs change detection on the
    /// Athena simulator, delivering to the iHub receiver; `adjust` changes the configuration
    /// first (it may replace the records system, add forces, …).
    pub async fn start(adjust: impl FnOnce(&mut Config, &AthenaSim, &IhubSim)) -> Self {
        let athena = AthenaSim::start(AthenaSimOptions::default())
            .await
            .expect("starting the Athena simulator");
        let ihub = IhubSim::start(IhubSimOptions::default())
            .await
            .expect("starting the iHub receiver");
        let dir = tempfile::tempdir().expect("temporary directory");
        let mut config = test_config(&dir.path().join("journal.db"), &athena.base_url());
        config.forces.insert(
            FORCE.into(),
            detecting_force(
                "Testshire Constabulary",
                IHUB_FORCE_ID,
                athena_records(&athena),
                &ihub,
            ),
        );
        adjust(&mut config, &athena, &ihub);
        let gw = gateway::Gateway::build(config.clone(), None)
            .await
            .expect("building the gateway");
        let journal = gw.state.journal.clone();
        let shared = Arc::new(Mutex::new(config));
        let source = shared.clone();
        gw.reloader
            .set_source(Arc::new(move || -> Result<Config, ConfigError> {
                let c = source.lock().expect("config lock").clone();
                c.validate()?;
                Ok(c)
            }));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("port");
        let base_url = format!("http://{}", listener.local_addr().expect("address"));
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(gateway::run(listener, gw, shutdown.clone()));
        Self {
            athena,
            ihub,
            base_url,
            config: shared,
            journal,
            dir,
            shutdown,
            task: Some(task),
        }
    }

    /// A client with every role.
    pub fn api(&self) -> Api {
        Api::new(&self.base_url, crate::API_KEY, crate::API_SECRET)
    }

    /// Changes the configuration the next reload reads.
    pub fn change_config(&self, f: impl FnOnce(&mut Config)) {
        f(&mut self.config.lock().expect("config lock"));
    }

    /// `POST /v1/config/reload`: status and body.
    pub async fn reload(&self) -> (u16, Value) {
        let res = self
            .api()
            .post("/v1/config/reload")
            .send()
            .await
            .expect("reload request");
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    /// Stops the gateway.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(crate::secs(10), t).await;
        }
    }
}

impl Drop for DetectRig {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// One event as iHub received it.
#[derive(Debug, Clone, PartialEq)]
pub struct SeenEvent {
    /// `data.id` (the NMPP event id).
    pub id: String,
    /// `CASE_STATUS_CHANGED`, …
    pub event_type: String,
    /// Crime reference or incident number.
    pub subject: String,
    /// `data.attributes.forceIdentifier`.
    pub force_identifier: String,
    /// `data.attributes.payload` (the NMPP event's `data`).
    pub payload: Value,
}

/// Every event `sim` received, in arrival order.
pub fn seen(sim: &IhubSim) -> Vec<SeenEvent> {
    sim.events()
        .into_iter()
        .map(|r| {
            let a = &r.document["data"]["attributes"];
            let s = |v: &Value| v.as_str().unwrap_or_default().to_owned();
            SeenEvent {
                id: r.id.clone(),
                event_type: s(&a["eventType"]),
                subject: a["crimeReference"]
                    .as_str()
                    .or(a["incidentNumber"].as_str())
                    .unwrap_or_default()
                    .to_owned(),
                force_identifier: s(&a["forceIdentifier"]),
                payload: a["payload"].clone(),
            }
        })
        .collect()
}
