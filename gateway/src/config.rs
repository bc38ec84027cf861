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
use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::{Path, PathBuf},
};

/// Athena `base_url` meaning "the simulator running in this process".
pub const SIM_ATHENA: &str = "sim://athena";

/// A DAMS `base_url` (and `token_url`) standing for the in-process DAMS simulator
/// (`simulators.dams`); its client id and secret are the simulator's own.
pub const SIM_DAMS: &str = "sim://dams";

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
    /// The audit ledger: checkpoint signing and the sinks it streams to.
    pub audit: AuditConfig,
    /// How long journalled exchanges are kept, per force and kind.
    pub retention: RetentionConfig,
    /// How the server works bulk replay jobs.
    pub replay: ReplayConfig,
    /// Which version of each mapping spec fresh deliveries use.
    pub mappings: MappingsConfig,
}

/// HTTP settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Address to listen on. Default `127.0.0.1:8080`.
    pub listen: SocketAddr,
    /// Largest `POST /incidents` body accepted, in bytes; larger bodies get 413. Default 5 MiB.
    /// (Operations request bodies have a fixed limit of 2 MB.)
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

/// Delivery policy. The keys from `max_attempts` to `ordered_by_case` are the defaults of every
/// target; `[delivery.targets.<system>]` overrides any of them for one target system (e.g.
/// `athena`), for every force.
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
    /// Longest one attempt may take, from sending to the target's answer. An attempt that
    /// exceeds it is abandoned and counts as a retryable failure of class `timeout` (the
    /// outcome is unknown, so the retry carries the same idempotency key). Default 30000 ms.
    pub attempt_timeout_ms: u64,
    /// Consecutive retryable failures at a target (one force's system) that open its circuit
    /// breaker; `0` turns the breaker off. Non-retryable failures (a 4xx rejection, a mapping
    /// error) are the exchange's fault and do not count. Default 5.
    pub breaker_failures: u32,
    /// How long an open breaker keeps work for its target unclaimed before it lets probes
    /// through (half-open). Default 30000 ms.
    pub breaker_open_ms: u64,
    /// Attempts let through at once while half-open; the first success closes the breaker, a
    /// retryable failure opens it again. Default 1.
    pub breaker_half_open_probes: u32,
    /// Deliver each case's exchanges to the target in the order they were journalled: an
    /// exchange waits while an earlier one of the same case (force and case reference) for the
    /// same target is pending. Parked exchanges never block. Default false.
    pub ordered_by_case: bool,
    /// How long a claimed exchange is reserved for this node. Default 60000 ms.
    pub lease_ms: u64,
    /// How often the journal is polled for due retries when nothing new arrives. Default 500 ms.
    pub poll_ms: u64,
    /// Overrides for one target system, by its name (`athena`, `athena_dw`, `storm`, `dams`,
    /// `ihub`).
    pub targets: BTreeMap<String, TargetOverride>,
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
            attempt_timeout_ms: 30_000,
            breaker_failures: 5,
            breaker_open_ms: 30_000,
            breaker_half_open_probes: 1,
            ordered_by_case: false,
            lease_ms: 60_000,
            poll_ms: 500,
            targets: BTreeMap::new(),
        }
    }
}

/// Target systems a `[delivery.targets.<name>]` table may name.
pub const DELIVERY_TARGETS: &[&str] = &["athena", "athena_dw", "storm", "dams", "ihub"];

/// `[delivery.targets.<system>]`: any key left out takes its value from `[delivery]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TargetOverride {
    /// See [`DeliveryConfig::max_attempts`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    /// See [`DeliveryConfig::initial_backoff_ms`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initial_backoff_ms: Option<u64>,
    /// See [`DeliveryConfig::max_backoff_ms`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_backoff_ms: Option<u64>,
    /// See [`DeliveryConfig::backoff_factor`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backoff_factor: Option<f32>,
    /// See [`DeliveryConfig::jitter`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jitter: Option<bool>,
    /// See [`DeliveryConfig::attempt_timeout_ms`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempt_timeout_ms: Option<u64>,
    /// See [`DeliveryConfig::breaker_failures`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub breaker_failures: Option<u32>,
    /// See [`DeliveryConfig::breaker_open_ms`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub breaker_open_ms: Option<u64>,
    /// See [`DeliveryConfig::breaker_half_open_probes`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub breaker_half_open_probes: Option<u32>,
    /// See [`DeliveryConfig::ordered_by_case`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ordered_by_case: Option<bool>,
}

/// The delivery policy in force for one target system: `[delivery]` with its
/// `[delivery.targets.<system>]` overrides applied.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TargetPolicy {
    /// Attempts before parking.
    pub max_attempts: u32,
    /// Delay before the second attempt, in ms.
    pub initial_backoff_ms: u64,
    /// Longest delay between attempts, in ms.
    pub max_backoff_ms: u64,
    /// Growth factor of the delay.
    pub backoff_factor: f32,
    /// Randomised delays.
    pub jitter: bool,
    /// Longest one attempt may take, in ms.
    pub attempt_timeout_ms: u64,
    /// Consecutive retryable failures that open the breaker (0: no breaker).
    pub breaker_failures: u32,
    /// How long the breaker stays open, in ms.
    pub breaker_open_ms: u64,
    /// Probes let through at once while half-open.
    pub breaker_half_open_probes: u32,
    /// Per-case ordering.
    pub ordered_by_case: bool,
}

impl DeliveryConfig {
    /// The policy for `target` (a target system name such as `athena`).
    pub fn policy(&self, target: &str) -> TargetPolicy {
        let o = self.targets.get(target).cloned().unwrap_or_default();
        TargetPolicy {
            max_attempts: o.max_attempts.unwrap_or(self.max_attempts),
            initial_backoff_ms: o.initial_backoff_ms.unwrap_or(self.initial_backoff_ms),
            max_backoff_ms: o.max_backoff_ms.unwrap_or(self.max_backoff_ms),
            backoff_factor: o.backoff_factor.unwrap_or(self.backoff_factor),
            jitter: o.jitter.unwrap_or(self.jitter),
            attempt_timeout_ms: o.attempt_timeout_ms.unwrap_or(self.attempt_timeout_ms),
            breaker_failures: o.breaker_failures.unwrap_or(self.breaker_failures),
            breaker_open_ms: o.breaker_open_ms.unwrap_or(self.breaker_open_ms),
            breaker_half_open_probes: o
                .breaker_half_open_probes
                .unwrap_or(self.breaker_half_open_probes),
            ordered_by_case: o.ordered_by_case.unwrap_or(self.ordered_by_case),
        }
    }

    /// Target systems with `ordered_by_case` in force, among `targets`.
    pub fn ordered_targets<'a>(&self, targets: impl IntoIterator<Item = &'a str>) -> Vec<String> {
        let mut out: Vec<String> = targets
            .into_iter()
            .filter(|t| self.policy(t).ordered_by_case)
            .map(str::to_owned)
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// Every problem with the delivery policy, each naming its key.
    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.workers == 0 {
            problems.push("delivery.workers: must be at least 1".into());
        }
        if self.lease_ms == 0 {
            problems.push("delivery.lease_ms: must be at least 1".into());
        }
        if self.poll_ms == 0 {
            problems.push("delivery.poll_ms: must be at least 1".into());
        }
        check_policy("delivery", &self.policy(""), &mut problems);
        for (name, o) in &self.targets {
            let prefix = format!("delivery.targets.{name}");
            if !DELIVERY_TARGETS.contains(&name.as_str()) {
                problems.push(format!(
                    "{prefix}: unknown target system {name:?} (expected one of {})",
                    DELIVERY_TARGETS.join(", ")
                ));
            }
            // Name only what the table sets, so an inherited problem is reported once.
            let mut mine = Vec::new();
            check_policy(&prefix, &self.policy(name), &mut mine);
            problems.extend(mine.into_iter().filter(|p| {
                let key = p
                    .strip_prefix(&format!("{prefix}."))
                    .and_then(|rest| rest.split(':').next())
                    .unwrap_or("");
                o.sets(key)
            }));
        }
        problems
    }
}

impl TargetOverride {
    /// Whether this table sets `key`.
    fn sets(&self, key: &str) -> bool {
        match key {
            "max_attempts" => self.max_attempts.is_some(),
            "initial_backoff_ms" => self.initial_backoff_ms.is_some(),
            // A cap below the initial delay is a problem of whichever of the two is set here.
            "max_backoff_ms" => self.max_backoff_ms.is_some() || self.initial_backoff_ms.is_some(),
            "backoff_factor" => self.backoff_factor.is_some(),
            "attempt_timeout_ms" => self.attempt_timeout_ms.is_some(),
            "breaker_open_ms" => self.breaker_open_ms.is_some(),
            "breaker_half_open_probes" => self.breaker_half_open_probes.is_some(),
            _ => true,
        }
    }
}

/// Checks one resolved policy; problems are named `{prefix}.{key}: …`.
fn check_policy(prefix: &str, p: &TargetPolicy, problems: &mut Vec<String>) {
    if p.max_attempts == 0 {
        problems.push(format!("{prefix}.max_attempts: must be at least 1"));
    }
    if p.initial_backoff_ms == 0 {
        problems.push(format!("{prefix}.initial_backoff_ms: must be at least 1"));
    }
    if p.max_backoff_ms < p.initial_backoff_ms {
        problems.push(format!(
            "{prefix}.max_backoff_ms: must be at least initial_backoff_ms ({} ms), got {} ms",
            p.initial_backoff_ms, p.max_backoff_ms
        ));
    }
    if !(p.backoff_factor.is_finite() && p.backoff_factor >= 1.0) {
        problems.push(format!(
            "{prefix}.backoff_factor: must be a number of at least 1.0, got {}",
            p.backoff_factor
        ));
    }
    if p.attempt_timeout_ms == 0 {
        problems.push(format!("{prefix}.attempt_timeout_ms: must be at least 1"));
    }
    if p.breaker_failures > 0 && p.breaker_open_ms == 0 {
        problems.push(format!("{prefix}.breaker_open_ms: must be at least 1"));
    }
    if p.breaker_failures > 0 && p.breaker_half_open_probes == 0 {
        problems.push(format!(
            "{prefix}.breaker_half_open_probes: must be at least 1"
        ));
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
    /// The force's evidence store (`{ type = "dams", … }`): the files attached to its
    /// submissions are uploaded there once the crime record is created, each as an exchange of
    /// its own (`evidence.submitted`). Without one, attachments stay in the submission.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<adapters::EvidenceStoreConfig>,
    /// Change detection (`[forces.X.change_detection]`); off when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change_detection: Option<crate::detect::ChangeDetectionConfig>,
    /// A directory of this force's own mapping specs and overrides (`*.toml`, loaded after the
    /// built-in specs in file-name order; see mappings/SPEC-FORMAT.md, "Overrides for one
    /// force"). Only this force's exchanges and events use them; the pins of `[mappings]
    /// current` still apply. Read again on every configuration reload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mappings: Option<PathBuf>,
}

/// Simulators run inside the gateway process.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimulatorsConfig {
    /// Start the Athena simulator on this address (port 0 picks a free port).
    pub athena: Option<SocketAddr>,
    /// Start the DAMS simulator on this address (port 0 picks a free port); its client secret
    /// is made afresh at each start.
    pub dams: Option<SocketAddr>,
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

/// The audit ledger (`[audit]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// The log's origin line in every checkpoint (C2SP tlog-checkpoint), e.g.
    /// `nmpp-gateway.kent.police.uk/audit`. Also the key name of a generated key.
    /// Default `nmpp-gateway/audit`.
    pub origin: String,
    /// File holding the Ed25519 ledger signing key in signed-note `skey` form
    /// (`PRIVATE+KEY+<name>+<id>+<base64>`). Default `./data/audit-ledger.key`. Keep it secret
    /// and backed up: auditors verify checkpoints with its public key.
    pub key_file: std::path::PathBuf,
    /// Generate a key into `key_file` (mode 0600) when the file does not exist. Default true (the
    /// embedded demo); set false in production so a missing key is an error, not a new identity.
    pub generate_key: bool,
    /// Earlier public keys (`vkey` form) whose signatures older checkpoints carry, after a key
    /// rotation; they are written into every export bundle.
    pub previous_keys: Vec<String>,
    /// Sign a checkpoint once this many records are not yet covered by one. Default 1000.
    pub checkpoint_every_records: u64,
    /// Sign a checkpoint at least this often while records are not yet covered. Default 60000 ms.
    pub checkpoint_every_ms: u64,
    /// Where the ledger is streamed: `[[audit.sinks]]` with `type = "splunk_hec" | "sentinel" |
    /// "kafka"` (see `adapters::sink::AuditSinkConfig`). Each sink has its own durable cursor.
    pub sinks: Vec<adapters::sink::AuditSinkConfig>,
    /// How long audit records keep their content (`[audit.retention]`). Default: forever.
    pub retention: AuditRetentionConfig,
}

/// Audit retention (`[audit.retention]`): how long audit records keep their *content*. A record
/// past its period keeps its sequence number, time, event uid and hashes — so the Merkle tree,
/// old checkpoints and every proof still verify — and loses the rest; an
/// `audit.retention.deleted` record naming the pruned records is written and covered by a
/// signed checkpoint first, so `audit verify` can tell the gap is explained. Never pruned:
/// checkpoint announcements, deletion records, records about an exchange under a legal hold,
/// and records an audit sink has not shipped yet (retention stops at the slowest sink's
/// cursor). Periods use the `[retention]` units (`2555d`, `12h`, `30m`, `45s`).
///
/// ```toml
/// [audit.retention]
/// interval_s = 3600
/// keep = "2555d"                 # records of forces without their own period, and of no force
/// [audit.retention.forces.kent]
/// keep = "3650d"                 # omit `keep` to keep this force's records forever
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditRetentionConfig {
    /// How often the server applies it, in seconds; `0` means never (use
    /// `nmpp-gateway audit retention apply`). Default 3600.
    pub interval_s: u64,
    /// Period of records of forces without their own, and of records of no force. Unset: keep.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep: Option<String>,
    /// Periods by force key.
    pub forces: BTreeMap<String, ForceAuditRetention>,
}

impl Default for AuditRetentionConfig {
    fn default() -> Self {
        Self {
            interval_s: 3600,
            keep: None,
            forces: BTreeMap::new(),
        }
    }
}

/// One force's audit retention period.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ForceAuditRetention {
    /// Period of this force's audit records. Unset: keep them forever (whatever the default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep: Option<String>,
}

impl AuditRetentionConfig {
    /// The journal policy this configuration describes. Errors name the key.
    pub fn policy(&self) -> Result<replay::AuditRetentionPolicy, String> {
        let period = |key: &str, v: &Option<String>| {
            v.as_deref()
                .map(parse_period)
                .transpose()
                .map_err(|e| format!("{key}: {e}"))
        };
        let mut policy = replay::AuditRetentionPolicy {
            default: period("audit.retention.keep", &self.keep)?,
            forces: BTreeMap::new(),
        };
        for (force, f) in &self.forces {
            policy.forces.insert(
                force.clone(),
                period(&format!("audit.retention.forces.{force}.keep"), &f.keep)?,
            );
        }
        Ok(policy)
    }

    /// A line describing the policy, for the CLI and the deletion record.
    pub fn describe(&self) -> String {
        let mut parts = vec![format!(
            "default {}",
            self.keep.as_deref().unwrap_or("keep forever")
        )];
        for (force, f) in &self.forces {
            parts.push(format!(
                "force {force} {}",
                f.keep.as_deref().unwrap_or("keep forever")
            ));
        }
        parts.join(", ")
    }
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            origin: "nmpp-gateway/audit".into(),
            key_file: "./data/audit-ledger.key".into(),
            generate_key: true,
            previous_keys: Vec::new(),
            checkpoint_every_records: 1000,
            checkpoint_every_ms: 60_000,
            sinks: Vec::new(),
            retention: AuditRetentionConfig::default(),
        }
    }
}

/// Retention: how long payloads and metadata of exchanges are kept, per force and per kind.
/// Periods are written with a unit: `90d`, `12h`, `30m`, `45s`. Nothing is deleted for a force
/// without a policy, and nothing under a legal hold is ever deleted.
///
/// ```toml
/// [retention]
/// interval_s = 3600
/// [retention.forces.kent]
/// payloads = "90d"
/// metadata = "2555d"
/// [retention.forces.kent.kinds."incident.submitted"]
/// payloads = "30d"        # metadata inherited from the force: 2555d
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// How often the server applies retention, in seconds; `0` means never (use
    /// `nmpp-gateway retention apply`). Default 3600.
    pub interval_s: u64,
    /// Policies by force key.
    pub forces: BTreeMap<String, ForceRetention>,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            interval_s: 3600,
            forces: BTreeMap::new(),
        }
    }
}

impl AuditConfig {
    fn problems(&self, out: &mut Vec<String>) {
        if self.origin.is_empty() || self.origin.contains(['\n', '\r']) {
            out.push("audit.origin: must be one non-empty line".into());
        }
        if self.checkpoint_every_records == 0 {
            out.push("audit.checkpoint_every_records: must be at least 1".into());
        }
        if self.checkpoint_every_ms < 100 {
            out.push("audit.checkpoint_every_ms: must be at least 100".into());
        }
        for (i, k) in self.previous_keys.iter().enumerate() {
            if let Err(e) = replay::ledger::VerifierKey::parse(k) {
                out.push(format!("audit.previous_keys[{i}]: {e}"));
            }
        }
        if let Err(e) = self.retention.policy() {
            out.push(e);
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, s) in self.sinks.iter().enumerate() {
            if !names.insert(s.name().to_owned()) {
                out.push(format!(
                    "audit.sinks[{i}].name: {:?} is used by another sink (each sink needs its own \
                     name: it keys the sink's cursor)",
                    s.name()
                ));
            }
        }
    }
}

/// One force's retention periods, with overrides per kind of exchange.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ForceRetention {
    /// Delete payloads (original, canonical, target) older than this. Unset: keep.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payloads: Option<String>,
    /// Delete whole exchanges (metadata and attempts) older than this. Unset: keep.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<String>,
    /// Overrides by kind (`incident.submitted`); a period a kind leaves unset is the force's.
    pub kinds: BTreeMap<String, KindRetention>,
}

/// Retention periods of one kind of exchange.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KindRetention {
    /// Delete payloads older than this. Unset: the force's period.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payloads: Option<String>,
    /// Delete whole exchanges older than this. Unset: the force's period.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<String>,
}

/// Parses a retention period: a whole number and a unit, `d`, `h`, `m` or `s` (`90d`).
pub fn parse_period(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{s:?}: expected a whole number and a unit (90d, 12h, 30m, 45s)"))?;
    let secs = match unit {
        "d" => n.checked_mul(86_400),
        "h" => n.checked_mul(3_600),
        "m" => n.checked_mul(60),
        "s" => Some(n),
        _ => {
            return Err(format!(
                "{s:?}: unknown unit {unit:?}: expected d, h, m or s"
            ));
        }
    }
    .ok_or_else(|| format!("{s:?}: too long"))?;
    if secs == 0 {
        return Err(format!("{s:?}: must be longer than zero"));
    }
    Ok(std::time::Duration::from_secs(secs))
}

impl RetentionConfig {
    /// The journal policies this configuration describes: one per force (covering its kinds
    /// without their own), and one per kind override. Errors name the key.
    pub fn policies(&self) -> Result<Vec<replay::RetentionPolicy>, String> {
        let period = |key: String, v: &Option<String>| {
            v.as_deref()
                .map(parse_period)
                .transpose()
                .map_err(|e| format!("{key}: {e}"))
        };
        let mut out = Vec::new();
        for (force, f) in &self.forces {
            let base = format!("retention.forces.{force}");
            let payloads = period(format!("{base}.payloads"), &f.payloads)?;
            let metadata = period(format!("{base}.metadata"), &f.metadata)?;
            out.push(replay::RetentionPolicy {
                force: force.clone(),
                kind: None,
                payloads,
                metadata,
            });
            for (kind, k) in &f.kinds {
                let base = format!("{base}.kinds.{kind}");
                out.push(replay::RetentionPolicy {
                    force: force.clone(),
                    kind: Some(kind.clone()),
                    payloads: period(format!("{base}.payloads"), &k.payloads)?.or(payloads),
                    metadata: period(format!("{base}.metadata"), &k.metadata)?.or(metadata),
                });
            }
        }
        for p in &out {
            if let (Some(pl), Some(md)) = (p.payloads, p.metadata)
                && md < pl
            {
                let at = match &p.kind {
                    Some(k) => format!("retention.forces.{}.kinds.{k}", p.force),
                    None => format!("retention.forces.{}", p.force),
                };
                return Err(format!(
                    "{at}.metadata: shorter than the payloads period (an exchange cannot outlive \
                     its metadata)"
                ));
            }
        }
        Ok(out)
    }
}

/// Bulk replay jobs, worked by every gateway node through the journal.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReplayConfig {
    /// How often a node looks for running jobs when it has none, in ms. Default 1000.
    pub poll_ms: u64,
    /// Most exchanges replayed in one journal transaction. Default 500.
    pub batch: usize,
}

impl Default for ReplayConfig {
    fn default() -> Self {
        Self {
            poll_ms: 1000,
            batch: 500,
        }
    }
}

/// Mapping specs: which version of each is current.
///
/// Several versions of a built-in spec can be loaded side by side (`nmpp-to-athena` 1.0.0 and
/// 2.0.0). Fresh deliveries use each spec's **current** version: the one pinned here, or else
/// the oldest built-in one, so that upgrading the gateway never changes what a force sends
/// until it pins the new version here. Any loaded version can be asked for by a replay
/// (`mappingVersion`), whatever is pinned. Read at start (a change needs a restart).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MappingsConfig {
    /// Spec id → version (`MAJOR.MINOR.PATCH`) to use, e.g. `{ "nmpp-to-athena" = "2.0.0" }`.
    pub current: BTreeMap<String, String>,
}

impl MappingsConfig {
    /// The built-in mapping specs with the pinned versions made current; an unknown spec or
    /// version is an error naming the key and what is loaded.
    pub fn load(&self) -> Result<mappings::Mappings, String> {
        let m = mappings::Mappings::builtin().map_err(|e| format!("mapping specs: {e}"))?;
        self.pinned(m)
    }

    /// A force's mappings: the built-in specs, then the spec files of `dir` (its own specs and
    /// overrides), with the pinned versions made current. A spec that does not load is named
    /// with its file and line.
    pub fn load_force(&self, force: &str, dir: &Path) -> Result<mappings::Mappings, String> {
        let m = mappings::Mappings::load_dir(dir)
            .map_err(|e| format!("forces.{force}.mappings: {e}"))?;
        self.pinned(m)
    }

    fn pinned(&self, mut m: mappings::Mappings) -> Result<mappings::Mappings, String> {
        let mut problems = Vec::new();
        for (id, version) in &self.current {
            if let Err(e) = m.pin(id, version) {
                problems.push(format!(
                    "mappings.current.{id}: {version:?} is not a loaded version (loaded: {})",
                    e.available.join(", ")
                ));
            }
        }
        if problems.is_empty() {
            Ok(m)
        } else {
            Err(problems.join("; "))
        }
    }
}

/// Configuration loading failed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Values missing, of the wrong type, unknown or breaking a rule: one entry per problem,
    /// each starting with the key it is about (and, when it was read from a file, the file,
    /// line and column: `gw.toml:4:1: delivery.max_attempts: …`).
    #[error("{}", .0.join("; "))]
    Invalid(Vec<String>),
}

impl ConfigError {
    /// The problems, one per entry.
    pub fn problems(&self) -> &[String] {
        let ConfigError::Invalid(p) = self;
        p
    }
}

impl From<figment::Error> for ConfigError {
    fn from(e: figment::Error) -> Self {
        ConfigError::Invalid(e.into_iter().map(|err| describe(&err, None)).collect())
    }
}

/// Puts the file, line and column in front of each problem whose key is written in `path`
/// (`gw.toml:4:1: delivery.max_attempts: …`), pointing at the key itself or, for a key that is
/// missing, at the deepest table on its path that is written. Problems about a key the file
/// does not hold (an environment override, a default) are left as they are.
fn locate_problems(path: &Path, problems: Vec<String>) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return problems;
    };
    let Ok(doc) = toml::de::DeTable::parse(&text) else {
        // A syntax error: the parser's own message already carries its line.
        return problems;
    };
    let mut located: Vec<(Option<(usize, usize)>, String)> = problems
        .into_iter()
        .map(|p| {
            let key = p.split(": ").next().unwrap_or_default();
            // `describe` ends a problem read from a file with ` (in FILE)`, from elsewhere with
            // ` (from …)`.
            let in_file = p.rfind(" (in ").filter(|_| p.ends_with(')'));
            let from_env = in_file.is_none() && p.ends_with(')') && p.contains(" (from ");
            match key_offset(doc.get_ref(), key).filter(|_| !from_env) {
                Some(offset) => {
                    let before = &text[..offset];
                    let line = before.matches('\n').count() + 1;
                    let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
                    let msg = &p[..in_file.unwrap_or(p.len())];
                    (
                        Some((line, col)),
                        format!("{}:{line}:{col}: {msg}", path.display()),
                    )
                }
                None => (None, p),
            }
        })
        .collect();
    // In file order, each once (a broken rule can be reported by more than one pass).
    located.sort_by_key(|(at, _)| *at);
    located.dedup_by(|a, b| a.1 == b.1);
    located.into_iter().map(|(_, p)| p).collect()
}

/// The byte offset of dotted `key` in a parsed TOML document: of the key itself, or of the
/// deepest table on its path that is written; `None` when not even its first part is.
fn key_offset(table: &toml::de::DeTable<'_>, key: &str) -> Option<usize> {
    use toml::de::DeValue;
    let mut table = table;
    let mut found = None;
    for part in key.split('.') {
        let Some((k, v)) = table.iter().find(|(k, _)| k.get_ref().as_ref() == part) else {
            break;
        };
        found = Some(k.span().start);
        match v.get_ref() {
            DeValue::Table(t) => table = t,
            _ => break,
        }
    }
    found
}

/// One type or key error, naming the key as written in the file or environment (without
/// figment's profile prefix) and where it came from. `within` is the figment the key was read
/// from, when the error itself was raised on a re-read copy.
fn describe(err: &figment::Error, within: Option<&Figment>) -> String {
    let key = if err.path.is_empty() {
        "configuration".into()
    } else {
        err.path.join(".")
    };
    let meta = match within {
        Some(fig) => fig.find_metadata(&key),
        None => err.metadata.as_ref(),
    };
    let origin = meta.map(|m| match &m.source {
        Some(figment::Source::File(p)) => format!(" (in {})", p.display()),
        Some(_) | None => format!(" (from {})", m.name),
    });
    format!("{key}: {}{}", err.kind, origin.unwrap_or_default())
}

/// Every type and unknown-key error of a configuration, not only the first one serde stops
/// at: after each error the offending key is taken out of a copy of the merged values (its
/// default then applies) and the copy is read again, until it reads or no key can be taken out.
fn every_type_error(fig: &Figment, first: figment::Error) -> ConfigError {
    use figment::value::Value;
    /// Removes `path` from `v`; false if it is not there.
    fn remove(v: &mut Value, path: &[String]) -> bool {
        match (v, path) {
            (Value::Dict(_, d), [last]) => d.remove(last).is_some(),
            (Value::Dict(_, d), [head, rest @ ..]) => {
                d.get_mut(head).is_some_and(|child| remove(child, rest))
            }
            _ => false,
        }
    }
    use figment::error::Kind;
    let mut msgs = Vec::new();
    let mut values: Option<Value> = fig.extract().ok();
    let mut removed: Vec<Vec<String>> = Vec::new();
    let mut err = first;
    let mut reread = false;
    for _ in 0..64 {
        let mut taken = false;
        for e in err {
            let mut path = e.path.clone();
            let field = match &e.kind {
                Kind::UnknownField(name, _) => Some(name.clone()),
                Kind::MissingField(name) => Some(name.to_string()),
                _ => None,
            };
            if let Some(name) = field
                && path.last() != Some(&name)
            {
                path.push(name);
            }
            // A required key taken out because its value was wrong is missing in the re-read:
            // the same problem, already reported. Take out the table holding it, so that the
            // rest of the file is still read.
            if matches!(e.kind, Kind::MissingField(_)) && removed.contains(&path) {
                let parent = path[..path.len() - 1].to_vec();
                if let Some(v) = values.as_mut()
                    && !parent.is_empty()
                    && remove(v, &parent)
                {
                    removed.push(parent);
                    taken = true;
                }
                continue;
            }
            let msg = describe(&e, reread.then_some(fig));
            if !msgs.contains(&msg) {
                msgs.push(msg);
            }
            if let Some(v) = values.as_mut()
                && !path.is_empty()
            {
                if remove(v, &path) {
                    removed.push(path);
                    taken = true;
                } else if matches!(e.kind, Kind::MissingField(_)) && path.len() > 1 {
                    // A missing key cannot be taken out: take out the table that lacks it
                    // (reported), so that the rest of the file is still read.
                    let parent = path[..path.len() - 1].to_vec();
                    if remove(v, &parent) {
                        removed.push(parent);
                        taken = true;
                    }
                }
            }
        }
        let Some(v) = values.as_ref().filter(|_| taken) else {
            break;
        };
        match Figment::from(Serialized::defaults(v.clone())).extract::<Config>() {
            Ok(rest) => {
                // What types allow of the rest is checked against the rules too.
                if let Err(ConfigError::Invalid(m)) = rest.validate() {
                    msgs.extend(m);
                }
                break;
            }
            Err(e) => {
                err = e;
                reread = true;
            }
        }
    }
    ConfigError::Invalid(msgs)
}

impl Config {
    /// The embedded default: one demo force on the in-process Athena simulator, with the
    /// in-process DAMS simulator as its evidence store. The demo client is added by the caller,
    /// which knows its secret.
    pub fn embedded() -> Self {
        let mut c = Config::default();
        c.simulators.athena = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
        c.simulators.dams = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
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
                evidence: Some(adapters::EvidenceStoreConfig::Dams(
                    adapters::dams::DamsConfig::new(SIM_DAMS, SIM_DAMS, "sim", "sim"),
                )),
                change_detection: None,
                mappings: None,
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
                return Err(ConfigError::Invalid(vec![format!(
                    "config file {} does not exist",
                    path.display()
                )]));
            }
            fig = fig.merge(Toml::file_exact(path));
        }
        let fig = fig.merge(Env::prefixed(ENV_PREFIX).split("__"));
        let located = |ConfigError::Invalid(problems)| match file {
            Some(path) => ConfigError::Invalid(locate_problems(path, problems)),
            None => ConfigError::Invalid(problems),
        };
        let cfg: Config = match fig.extract() {
            Ok(cfg) => cfg,
            Err(first) => return Err(located(every_type_error(&fig, first))),
        };
        cfg.validate().map_err(located)?;
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
        if !self.mappings.current.is_empty()
            && let Err(e) = self.mappings.load()
        {
            problems.push(e);
        }
        for (key, f) in &self.forces {
            if let Some(dir) = &f.mappings
                && let Err(e) = self.mappings.load_force(key, dir)
            {
                problems.push(e);
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
        problems.extend(self.delivery.problems());
        if self.journal.max_batch == 0 {
            problems.push("journal.max_batch: must be at least 1".into());
        }
        if self.delivery.workers == 0 {
            problems.push("delivery.workers: must be at least 1".into());
        }
        if let Err(e) = self.retention.policies() {
            problems.push(e);
        }
        for force in self.retention.forces.keys() {
            if !self.forces.contains_key(force) {
                problems.push(format!("retention.forces.{force}: unknown force {force:?}"));
            }
        }
        for force in self.audit.retention.forces.keys() {
            if !self.forces.contains_key(force) {
                problems.push(format!(
                    "audit.retention.forces.{force}: unknown force {force:?}"
                ));
            }
        }
        if self.replay.batch == 0 {
            problems.push("replay.batch: must be at least 1".into());
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            problems.push(format!(
                "log.level: not a filter (`info`, `warn,gateway=debug`, …): {e}"
            ));
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
        self.audit.problems(&mut problems);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(problems))
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

    #[test]
    #[allow(clippy::result_large_err)]
    fn target_overrides_inherit_the_delivery_defaults() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "gw.toml",
                r#"
                [delivery]
                max_attempts = 6
                breaker_failures = 4
                [delivery.targets.athena]
                max_attempts = 3
                attempt_timeout_ms = 2000
                ordered_by_case = true
                "#,
            )?;
            jail.set_env(
                "NMPP_GATEWAY__DELIVERY__TARGETS__ATHENA__BREAKER_OPEN_MS",
                "750",
            );
            let c = Config::load(Some(Path::new("gw.toml"))).map_err(|e| e.to_string())?;
            let athena = c.delivery.policy("athena");
            assert_eq!(athena.max_attempts, 3);
            assert_eq!(athena.attempt_timeout_ms, 2000);
            assert_eq!(athena.breaker_open_ms, 750);
            assert!(athena.ordered_by_case);
            // Inherited from [delivery].
            assert_eq!(athena.breaker_failures, 4);
            assert_eq!(athena.initial_backoff_ms, 1000);
            // Another target takes [delivery] as it is.
            let storm = c.delivery.policy("storm");
            assert_eq!(storm.max_attempts, 6);
            assert_eq!(storm.attempt_timeout_ms, 30_000);
            assert!(!storm.ordered_by_case);
            assert_eq!(
                c.delivery.ordered_targets(["athena", "storm", "athena"]),
                vec!["athena".to_owned()]
            );
            Ok(())
        });
    }

    #[test]
    fn bad_delivery_policies_are_named_key_by_key() {
        let mut c = Config::embedded();
        c.delivery.backoff_factor = 0.5;
        c.delivery.targets.insert(
            "athena".into(),
            TargetOverride {
                max_attempts: Some(0),
                initial_backoff_ms: Some(5000),
                max_backoff_ms: Some(1000),
                attempt_timeout_ms: Some(0),
                breaker_half_open_probes: Some(0),
                ..TargetOverride::default()
            },
        );
        c.delivery.targets.insert(
            "athenna".into(),
            TargetOverride {
                jitter: Some(false),
                ..TargetOverride::default()
            },
        );
        let err = c.validate().unwrap_err().to_string();
        for expected in [
            "delivery.backoff_factor: must be a number of at least 1.0, got 0.5",
            "delivery.targets.athena.max_attempts: must be at least 1",
            "delivery.targets.athena.max_backoff_ms: must be at least initial_backoff_ms (5000 ms), got 1000 ms",
            "delivery.targets.athena.attempt_timeout_ms: must be at least 1",
            "delivery.targets.athena.breaker_half_open_probes: must be at least 1",
            "delivery.targets.athenna: unknown target system \"athenna\"",
        ] {
            assert!(err.contains(expected), "missing {expected:?} in {err}");
        }
        // The inherited backoff factor is reported once, under [delivery] only.
        assert!(
            !err.contains("delivery.targets.athena.backoff_factor"),
            "{err}"
        );
        assert!(
            !err.contains("delivery.targets.athenna.backoff_factor"),
            "{err}"
        );
    }

    #[test]
    fn retention_periods_parse_and_kinds_inherit_from_their_force() {
        let mut c = Config::embedded();
        c.retention.forces.insert(
            "demo".into(),
            ForceRetention {
                payloads: Some("90d".into()),
                metadata: Some("365d".into()),
                kinds: [(
                    "incident.submitted".to_owned(),
                    KindRetention {
                        payloads: Some("12h".into()),
                        metadata: None,
                    },
                )]
                .into(),
            },
        );
        c.validate().unwrap();
        let p = c.retention.policies().unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].kind, None);
        assert_eq!(p[0].payloads.unwrap().as_secs(), 90 * 86_400);
        assert_eq!(p[1].kind.as_deref(), Some("incident.submitted"));
        assert_eq!(p[1].payloads.unwrap().as_secs(), 12 * 3_600);
        assert_eq!(p[1].metadata.unwrap().as_secs(), 365 * 86_400);

        c.retention.forces.get_mut("demo").unwrap().payloads = Some("90 days".into());
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("retention.forces.demo.payloads"), "{err}");
        assert!(parse_period("0d").is_err());
        assert!(parse_period("5w").unwrap_err().contains("unknown unit"));
        c.retention.forces.clear();
        c.retention
            .forces
            .insert("nowhere".into(), ForceRetention::default());
        let err = c.validate().unwrap_err().to_string();
        assert!(
            err.contains("retention.forces.nowhere: unknown force"),
            "{err}"
        );
    }

    #[test]
    fn audit_retention_parses_from_toml_and_names_bad_keys() {
        let mut c = Config::embedded();
        let parsed: AuditRetentionConfig =
            toml::from_str("interval_s = 60\nkeep = \"2555d\"\n[forces.demo]\nkeep = \"3650d\"\n")
                .unwrap();
        c.audit.retention = parsed;
        c.validate().unwrap();
        let p = c.audit.retention.policy().unwrap();
        assert_eq!(p.default.unwrap().as_secs(), 2555 * 86_400);
        assert_eq!(p.forces["demo"].unwrap().as_secs(), 3650 * 86_400);
        assert!(!p.is_empty());
        assert_eq!(
            c.audit.retention.describe(),
            "default 2555d, force demo 3650d"
        );
        // A force kept forever while the default prunes.
        c.audit.retention.forces.get_mut("demo").unwrap().keep = None;
        assert_eq!(c.audit.retention.policy().unwrap().forces["demo"], None);

        c.audit.retention.keep = Some("7 years".into());
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("audit.retention.keep"), "{err}");
        c.audit.retention.keep = None;
        c.audit
            .retention
            .forces
            .insert("nowhere".into(), ForceAuditRetention::default());
        let err = c.validate().unwrap_err().to_string();
        assert!(
            err.contains("audit.retention.forces.nowhere: unknown force"),
            "{err}"
        );
        assert!(
            toml::from_str::<AuditRetentionConfig>("kep = \"1d\"").is_err(),
            "unknown keys are errors"
        );
        // Nothing configured: nothing is pruned.
        assert!(AuditRetentionConfig::default().policy().unwrap().is_empty());
    }
}
