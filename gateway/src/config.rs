//! Configuration: typed structs with explicit defaults, read in one place.
//!
//! Layering: built-in defaults (or the embedded demo configuration when no file is given) →
//! the TOML file → environment variables `NMPP_GATEWAY__SECTION__KEY` (double underscores
//! separate levels, e.g. `NMPP_GATEWAY__HTTP__LISTEN=0.0.0.0:8080`,
//! `NMPP_GATEWAY__JOURNAL__URL=sqlite:///var/lib/nmpp/journal.db`).
//! Unknown keys are errors, in the file and in the environment alike.

use adapters::RecordSystemConfig;
use figment::{
    Figment,
    providers::{Env, Format, Serialized, Toml},
};
use serde::{Deserialize, Serialize};
use std::{collections::BTreeMap, net::SocketAddr, path::Path};

/// Athena `base_url` meaning "the simulator running in this process".
pub const SIM_ATHENA: &str = "sim://athena";

/// Prefix of environment variables that override configuration keys.
pub const ENV_PREFIX: &str = "NMPP_GATEWAY__";

/// The whole configuration.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// HTTP listener and request limits.
    pub http: HttpConfig,
    /// API clients and how they authenticate.
    pub auth: AuthConfig,
    /// Where exchanges, attempts and audit records are stored.
    pub journal: JournalConfig,
    /// How deliveries to force systems are retried and parked.
    pub delivery: DeliveryConfig,
    /// The forces this gateway serves, by key (e.g. `kent`).
    pub forces: BTreeMap<String, ForceConfig>,
    /// Simulators to run inside the gateway process (the embedded demo uses these).
    pub simulators: SimulatorsConfig,
    /// Logging.
    pub log: LogConfig,
}

/// HTTP settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Address to listen on. Default `127.0.0.1:8080`.
    pub listen: SocketAddr,
    /// Largest request body accepted, in bytes; larger bodies get 413. Default 5 MiB.
    pub body_limit_bytes: usize,
    /// How long a request may take end to end before it gets 503. Default 30 s.
    pub request_timeout_ms: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            body_limit_bytes: 5 * 1024 * 1024,
            request_timeout_ms: 30_000,
        }
    }
}

/// Authentication settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Header carrying the API key. Default `x-api-key`.
    pub key_header: String,
    /// Header carrying the API secret. Default `x-api-secret`.
    pub secret_header: String,
    /// Clients by API key.
    pub clients: BTreeMap<String, ClientConfig>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            key_header: "x-api-key".into(),
            secret_header: "x-api-secret".into(),
            clients: BTreeMap::new(),
        }
    }
}

/// What a client may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The national platform: submits incidents.
    Ihub,
    /// Force operators: search, view and replay exchanges; read metrics.
    Operator,
    /// Auditors: view exchanges and verify or export the audit trail; read metrics.
    Auditor,
}

impl Role {
    /// Stable lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Ihub => "ihub",
            Role::Operator => "operator",
            Role::Auditor => "auditor",
        }
    }
}

/// One API client.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// Lower-case hex SHA-256 of the client's secret (`nmpp-gateway hash-secret` prints it).
    /// Secrets are long random strings, so a fast hash is enough; the plain secret is never
    /// stored or logged.
    pub secret_sha256: String,
    /// Roles granted.
    pub roles: Vec<Role>,
    /// Forces the client may act for; `["*"]` means all. Default all.
    #[serde(default = "all_forces")]
    pub forces: Vec<String>,
    /// Free text for operators.
    #[serde(default)]
    pub description: String,
}

fn all_forces() -> Vec<String> {
    vec!["*".into()]
}

/// Journal settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JournalConfig {
    /// `sqlite://PATH` (embedded default `sqlite://./data/journal.db`).
    pub url: String,
    /// Refuse new work with 503 once the journal reaches this size (SQLite), instead of filling
    /// the disk. Default: no limit.
    pub max_size_bytes: Option<u64>,
    /// Most writes committed together with one fsync (group commit). Default 4096. `1` commits
    /// every write on its own — slower by two orders of magnitude; only for benchmark baselines.
    pub max_batch: usize,
}

impl Default for JournalConfig {
    fn default() -> Self {
        Self {
            url: "sqlite://./data/journal.db".into(),
            max_size_bytes: None,
            max_batch: 4096,
        }
    }
}

/// Delivery policy.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    /// Accept and journal, but deliver nothing until unpaused (e.g. during a records-system
    /// maintenance window). Default false.
    pub paused: bool,
    /// Deliveries in flight at once. Default 32.
    pub workers: usize,
    /// Attempts before an exchange is parked (retryable failures only; a non-retryable failure
    /// parks at once). Default 8.
    pub max_attempts: u32,
    /// Delay before the second attempt. Default 1000 ms.
    pub initial_backoff_ms: u64,
    /// Longest delay between attempts. Default 300000 ms.
    pub max_backoff_ms: u64,
    /// Growth factor of the delay. Default 2.
    pub backoff_factor: f32,
    /// Randomise delays so retries of many exchanges spread out. Default true.
    pub jitter: bool,
    /// How long a claimed exchange is reserved for this node. Default 60000 ms.
    pub lease_ms: u64,
    /// How often the journal is polled for due retries when nothing new arrives. Default 500 ms.
    pub poll_ms: u64,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            paused: false,
            workers: 32,
            max_attempts: 8,
            initial_backoff_ms: 1000,
            max_backoff_ms: 300_000,
            backoff_factor: 2.0,
            jitter: true,
            lease_ms: 60_000,
            poll_ms: 500,
        }
    }
}

/// One force.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForceConfig {
    /// Display name.
    pub name: String,
    /// The number iHub sends as `submission.attributes.forceIdentifier`.
    pub ihub_force_id: u32,
    /// The force's records system. An Athena `base_url` of `sim://athena` means the in-process
    /// simulator.
    pub records: RecordSystemConfig,
    /// The national platform this force's case events go to (`{ type = "ihub", … }`).
    /// Required when change detection is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub national: Option<adapters::NationalPlatformConfig>,
    /// The force's command-and-control system (`{ type = "storm", … }`); when set, change
    /// detection also turns its incident changes into `incident.*` events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_control: Option<adapters::CommandControlConfig>,
    /// Change detection (`[forces.X.change_detection]`); off when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change_detection: Option<crate::detect::ChangeDetectionConfig>,
}

/// Simulators run inside the gateway process.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimulatorsConfig {
    /// Start the Athena simulator on this address (port 0 picks a free port).
    pub athena: Option<SocketAddr>,
}

/// Logging settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` or `json`.
    pub format: String,
    /// Filter in `tracing` syntax; `RUST_LOG` overrides it. Default `info`.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: "text".into(),
            level: "info".into(),
        }
    }
}

/// Configuration loading failed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A value is missing, of the wrong type, or unknown.
    #[error("{0}")]
    Invalid(String),
}

impl From<figment::Error> for ConfigError {
    fn from(e: figment::Error) -> Self {
        // Name keys as written in the file or environment, without figment's profile prefix.
        let msgs: Vec<String> = e
            .into_iter()
            .map(|err| {
                let origin = err.metadata.as_ref().map(|m| match &m.source {
                    Some(figment::Source::File(p)) => format!(" (in {})", p.display()),
                    Some(_) | None => format!(" (from {})", m.name),
                });
                let key = if err.path.is_empty() {
                    "configuration".into()
                } else {
                    err.path.join(".")
                };
                format!("{key}: {}{}", err.kind, origin.unwrap_or_default())
            })
            .collect();
        ConfigError::Invalid(msgs.join("; "))
    }
}

impl Config {
    /// The embedded default: one demo force on the in-process Athena simulator. The demo client
    /// is added by the caller, which knows its secret.
    pub fn embedded() -> Self {
        let mut c = Config::default();
        c.simulators.athena = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
        c.forces.insert(
            "demo".into(),
            ForceConfig {
                name: "Demo Constabulary".into(),
                ihub_force_id: 42,
                records: serde_json::from_value(
                    serde_json::json!({"type": "athena", "base_url": SIM_ATHENA}),
                )
                .expect("the embedded Athena config is valid"),
                national: None,
                command_control: None,
                change_detection: None,
            },
        );
        c
    }

    /// Loads `file` (or the embedded default when `None`) and applies environment overrides.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let base = match file {
            Some(_) => Config::default(),
            None => Config::embedded(),
        };
        let mut fig = Figment::from(Serialized::defaults(base));
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigError::Invalid(format!(
                    "config file {} does not exist",
                    path.display()
                )));
            }
            fig = fig.merge(Toml::file_exact(path));
        }
        let fig = fig.merge(Env::prefixed(ENV_PREFIX).split("__"));
        let cfg: Config = fig.extract()?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks what types alone cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        if !self.journal.url.starts_with("sqlite://")
            && !self.journal.url.starts_with("postgres://")
            && !self.journal.url.starts_with("postgresql://")
        {
            problems.push(format!(
                "journal.url: expected sqlite://PATH or postgres://…, got {:?}",
                replay::redact_url(&self.journal.url)
            ));
        }
        let mut ids = BTreeMap::new();
        for (key, f) in &self.forces {
            if let Some(other) = ids.insert(f.ihub_force_id, key) {
                problems.push(format!(
                    "forces.{key}.ihub_force_id: {} is also used by forces.{other}",
                    f.ihub_force_id
                ));
            }
        }
        for (key, f) in &self.forces {
            if let Some(cd) = f.change_detection.as_ref().filter(|c| c.enabled) {
                problems.extend(cd.problems(&format!("forces.{key}.change_detection")));
                if f.national.is_none() {
                    problems.push(format!(
                        "forces.{key}.change_detection: requires forces.{key}.national (where \
                         the events go)"
                    ));
                }
            }
        }
        for (id, c) in &self.auth.clients {
            if c.secret_sha256.len() != 64 || hex::decode(&c.secret_sha256).is_err() {
                problems.push(format!(
                    "auth.clients.{id}.secret_sha256: expected 64 hex characters (the SHA-256 of \
                     the secret; `nmpp-gateway hash-secret` prints it)"
                ));
            }
            if c.roles.is_empty() {
                problems.push(format!(
                    "auth.clients.{id}.roles: at least one role is required"
                ));
            }
            for f in &c.forces {
                if f != "*" && !self.forces.contains_key(f) {
                    problems.push(format!("auth.clients.{id}.forces: unknown force {f:?}"));
                }
            }
        }
        if self.delivery.max_attempts == 0 {
            problems.push("delivery.max_attempts: must be at least 1".into());
        }
        if self.journal.max_batch == 0 {
            problems.push("journal.max_batch: must be at least 1".into());
        }
        if self.delivery.workers == 0 {
            problems.push("delivery.workers: must be at least 1".into());
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            problems.push(format!(
                "log.format: expected text or json, got {:?}",
                self.log.format
            ));
        }
        if self
            .auth
            .key_header
            .parse::<axum::http::HeaderName>()
            .is_err()
        {
            problems.push("auth.key_header: not a valid header name".into());
        }
        if self
            .auth
            .secret_header
            .parse::<axum::http::HeaderName>()
            .is_err()
        {
            problems.push("auth.secret_header: not a valid header name".into());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(problems.join("; ")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_is_valid_and_listens_on_8080() {
        let c = Config::embedded();
        c.validate().unwrap();
        assert_eq!(c.http.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.journal.url, "sqlite://./data/journal.db");
        assert_eq!(c.forces["demo"].ihub_force_id, 42);
    }

    #[test]
    #[allow(clippy::result_large_err)]
    fn file_and_environment_layer_and_unknown_keys_fail() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "gw.toml",
                r#"
                [http]
                listen = "127.0.0.1:9000"
                [journal]
                url = "sqlite://./j.db"
                "#,
            )?;
            jail.set_env("NMPP_GATEWAY__HTTP__LISTEN", "127.0.0.1:9999");
            jail.set_env("NMPP_GATEWAY__DELIVERY__MAX_ATTEMPTS", "3");
            let c = Config::load(Some(Path::new("gw.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(c.http.listen.port(), 9999);
            assert_eq!(c.journal.url, "sqlite://./j.db");
            assert_eq!(c.delivery.max_attempts, 3);

            jail.set_env("NMPP_GATEWAY__HTTP__LISTN", "127.0.0.1:1");
            let err = Config::load(Some(Path::new("gw.toml")))
                .unwrap_err()
                .to_string();
            assert!(err.contains("listn"), "{err}");
            Ok(())
        });
    }
}
