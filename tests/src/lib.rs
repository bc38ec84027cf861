//! Black-box test support shared by the suites in `tests/tests/`.
//!
//! - [`TestGateway`] — a gateway inside the test process (`gateway::Gateway::build` and
//!   `gateway::run` on a port chosen by the OS) delivering to an in-process Athena simulator.
//! - [`ProcessGateway`] — the real `nmpp-gateway` binary started with a config file, killable
//!   with SIGKILL and restartable on the same journal and port.
//! - [`Api`] — an HTTP client for either, authenticated unless asked otherwise, with helpers that
//!   wait (polling with a deadline) for an exchange to reach a status.
//! - [`sdm`] — the two published SDM examples, each call with a fresh `submissionId`.
//! - [`gateway_bin`] — the path of the real binary, built once if it is missing or older than
//!   its sources; [`run_cli`] runs one of its commands.
//! - [`pg`] — fresh databases on the shared PostgreSQL cluster, and private PostgreSQL servers a
//!   test may stop and start.
//!
//! Every helper works in its own temporary directory with ports from the OS (or probed free), so
//! tests are independent and safe to run in parallel under nextest.

pub mod detect;
pub mod seed;

use adapters::{RecordSystemConfig, athena::AthenaConfig};
use fixtures::athena::{AthenaSim, AthenaSimOptions};
use gateway::{
    auth::hash_secret,
    config::{ClientConfig, Config, DeliveryConfig, ForceConfig, Role},
};
use serde_json::Value;
use std::{
    future::Future,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{ExitStatus, Stdio},
    sync::OnceLock,
    time::{Duration, SystemTime},
};
use tempfile::TempDir;
use tokio::{net::TcpListener, process::Child, task::JoinHandle};
use tokio_util::sync::CancellationToken;

pub mod pg;

/// API key of the test client holding every role (`ihub`, `operator`, `auditor`).
pub const API_KEY: &str = "test-client";
/// Its secret.
pub const API_SECRET: &str = "test-secret-0123456789abcdefghij";
/// API key of a client with `operator` and `auditor` but not `ihub`.
pub const OPS_KEY: &str = "test-operator";
/// Its secret.
pub const OPS_SECRET: &str = "operator-secret-0123456789abcdef";
/// The one force the test gateways serve.
pub const FORCE: &str = "testshire";
/// Its iHub force identifier (the published examples use 42).
pub const IHUB_FORCE_ID: u32 = 42;
/// The JSON:API media type.
pub const JSONAPI: &str = "application/vnd.api+json";

/// Shorthand for deadlines.
pub const fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

// ---------------------------------------------------------------------------------------------
// Waiting

/// Polls `probe` every 25 ms until it returns `Ok`, and returns that value; panics after
/// `timeout` with `what` and the last `Err` the probe gave (its description of the state seen).
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match probe().await {
            Ok(v) => return v,
            Err(last) => {
                if tokio::time::Instant::now() >= deadline {
                    panic!("timed out after {timeout:?} waiting for {what}; last seen: {last}");
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Configuration

/// The configuration the test gateways run with: journal at `journal`, force [`FORCE`]
/// (iHub id [`IHUB_FORCE_ID`]) on the Athena at `athena_url`, the two test clients, and a fast
/// delivery policy (50 ms initial backoff, 200 ms cap, 50 ms poll, 8 attempts, a circuit breaker
/// that opens after 5 consecutive failures for 200 ms).
pub fn test_config(journal: &Path, athena_url: &str) -> Config {
    let mut c = Config::default();
    c.http.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    c.journal.url = format!("sqlite://{}", journal.display());
    // The ledger signing key lives beside the journal (not under the working directory's ./data).
    c.audit.key_file = journal.with_file_name("audit-ledger.key");
    c.delivery = DeliveryConfig {
        workers: 8,
        max_attempts: 8,
        initial_backoff_ms: 50,
        max_backoff_ms: 200,
        backoff_factor: 2.0,
        jitter: true,
        lease_ms: 10_000,
        poll_ms: 50,
        breaker_failures: 5,
        breaker_open_ms: 200,
        ..DeliveryConfig::default()
    };
    c.forces.insert(
        FORCE.into(),
        ForceConfig {
            name: "Testshire Constabulary".into(),
            ihub_force_id: IHUB_FORCE_ID,
            records: RecordSystemConfig::Athena(AthenaConfig {
                timeout_ms: 5_000,
                connect_timeout_ms: 1_000,
                ..AthenaConfig::new(athena_url)
            }),
            national: None,
            command_control: None,
            evidence: None,
            change_detection: None,
            mappings: None,
        },
    );
    for (key, secret, roles) in [
        (
            API_KEY,
            API_SECRET,
            vec![Role::Ihub, Role::Operator, Role::Auditor],
        ),
        (OPS_KEY, OPS_SECRET, vec![Role::Operator, Role::Auditor]),
    ] {
        c.auth.clients.insert(
            key.into(),
            ClientConfig {
                secret_sha256: hash_secret(secret),
                roles,
                forces: vec!["*".into()],
                description: "nmpp-tests".into(),
            },
        );
    }
    c
}

/// Writes `config` as a TOML file at `path` (what `--config` reads).
pub fn write_config(config: &Config, path: &Path) -> PathBuf {
    let text = toml::to_string(config).expect("the test configuration serialises as TOML");
    std::fs::write(path, text).expect("writing the test configuration");
    path.to_owned()
}

// ---------------------------------------------------------------------------------------------
// SDM documents

/// The published SDM examples, each returned with a fresh `submissionId` so every request is a
/// new submission.
pub mod sdm {
    use serde_json::Value;
    use uuid::Uuid;

    /// The public Online Crime Report example, as committed.
    pub const ONLINE_CRIME_REPORT: &str =
        include_str!("../../fixtures/data/sdm/online-crime-report.json");
    /// The public skeleton example, as committed.
    pub const SKELETON: &str = include_str!("../../fixtures/data/sdm/skeleton.json");

    /// The Online Crime Report with a fresh submission id.
    pub fn online_crime_report() -> Value {
        fresh(ONLINE_CRIME_REPORT)
    }

    /// The skeleton with a fresh submission id.
    pub fn skeleton() -> Value {
        fresh(SKELETON)
    }

    fn fresh(text: &str) -> Value {
        let mut doc: Value = serde_json::from_str(text).expect("the committed example is JSON");
        set_submission_id(&mut doc, &Uuid::new_v4().to_string());
        doc
    }

    /// The `submission` resource of `doc` (in `included`).
    pub fn submission_mut(doc: &mut Value) -> &mut Value {
        doc["included"]
            .as_array_mut()
            .expect("included is an array")
            .iter_mut()
            .find(|r| r["type"] == "submission")
            .expect("the document has a submission")
    }

    /// `submission.attributes.submissionId`.
    pub fn submission_id(doc: &Value) -> String {
        doc["included"]
            .as_array()
            .and_then(|a| a.iter().find(|r| r["type"] == "submission"))
            .and_then(|s| s["attributes"]["submissionId"].as_str())
            .expect("the document has a submissionId")
            .to_owned()
    }

    /// Replaces `submission.attributes.submissionId`.
    pub fn set_submission_id(doc: &mut Value, id: &str) {
        submission_mut(doc)["attributes"]["submissionId"] = Value::String(id.to_owned());
    }

    /// The `included` person whose surname is `surname`.
    pub fn person_mut<'a>(doc: &'a mut Value, surname: &str) -> &'a mut Value {
        doc["included"]
            .as_array_mut()
            .expect("included is an array")
            .iter_mut()
            .find(|r| r["type"] == "person" && r["attributes"]["surname"] == surname)
            .unwrap_or_else(|| panic!("no person with surname {surname}"))
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP client

/// An HTTP client for one gateway. Requests made with [`Api::get`] and [`Api::post`] carry the
/// client's key and secret in the default headers.
#[derive(Clone, Debug)]
pub struct Api {
    /// The underlying client (no credentials attached by itself).
    pub http: reqwest::Client,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    key: String,
    secret: String,
}

/// What `POST /incidents` answered with 201.
#[derive(Debug, Clone)]
pub struct Accepted {
    /// `data.id`: the exchange id.
    pub exchange_id: String,
    /// The `Location` header.
    pub location: String,
    /// Whether `Idempotent-Replayed: true` was sent.
    pub replayed: bool,
    /// The raw body.
    pub body: String,
}

impl Api {
    /// A client for `base` authenticating as `key` / `secret`.
    pub fn new(base: impl Into<String>, key: &str, secret: &str) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("building an HTTP client");
        Self {
            http,
            base: base.into(),
            key: key.into(),
            secret: secret.into(),
        }
    }

    /// The same gateway as another client.
    pub fn as_client(&self, key: &str, secret: &str) -> Self {
        Self {
            key: key.into(),
            secret: secret.into(),
            ..self.clone()
        }
    }

    /// `base` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// An authenticated GET.
    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.auth(self.http.get(self.url(path)))
    }

    /// An authenticated POST.
    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.auth(self.http.post(self.url(path)))
    }

    fn auth(&self, rb: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        rb.header("x-api-key", &self.key)
            .header("x-api-secret", &self.secret)
    }

    /// `POST /incidents` with `doc` as `application/vnd.api+json`.
    pub async fn submit(&self, doc: &Value) -> reqwest::Result<reqwest::Response> {
        self.post("/incidents")
            .header("content-type", JSONAPI)
            .body(serde_json::to_vec(doc).expect("serialising a JSON value"))
            .send()
            .await
    }

    /// Submits `doc` and asserts 201 with a JSON:API receipt whose `data.id` matches the
    /// `Location` header.
    pub async fn submit_ok(&self, doc: &Value) -> Accepted {
        let res = self.submit(doc).await.expect("POST /incidents");
        let status = res.status();
        let location = header(&res, "location");
        let replayed = header(&res, "idempotent-replayed") == "true";
        let body = res.text().await.expect("reading the receipt");
        assert_eq!(status, 201, "POST /incidents answered {status}: {body}");
        let v: Value = serde_json::from_str(&body).expect("the receipt is JSON");
        let exchange_id = v["data"]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("receipt without data.id: {body}"))
            .to_owned();
        assert_eq!(location, format!("/v1/exchanges/{exchange_id}"), "{body}");
        Accepted {
            exchange_id,
            location,
            replayed,
            body,
        }
    }

    /// `GET path` as JSON, asserting 200.
    pub async fn get_json(&self, path: &str) -> Value {
        let res = self.get(path).send().await.expect("GET");
        let status = res.status();
        let text = res.text().await.expect("reading the body");
        assert_eq!(status, 200, "GET {path} answered {status}: {text}");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("GET {path}: not JSON ({e}): {text}"))
    }

    /// `POST /v1/config/reload`: the status and the JSON answer.
    pub async fn reload_config(&self) -> (u16, Value) {
        let res = self
            .post("/v1/config/reload")
            .send()
            .await
            .expect("POST /v1/config/reload");
        let code = res.status().as_u16();
        (code, res.json().await.expect("the reload answer is JSON"))
    }

    /// The attributes of exchange `id` (`GET /v1/exchanges/{id}`).
    pub async fn exchange(&self, id: &str) -> Value {
        let doc = self.get_json(&format!("/v1/exchanges/{id}")).await;
        doc["data"]["attributes"].clone()
    }

    /// Exchanges listed by `GET /v1/exchanges?{query}` (one page), as attribute objects.
    pub async fn exchanges(&self, query: &str) -> Vec<Value> {
        let doc = self.get_json(&format!("/v1/exchanges?{query}")).await;
        doc["data"]
            .as_array()
            .expect("data is an array")
            .iter()
            .map(|r| r["attributes"].clone())
            .collect()
    }

    /// Waits until exchange `id` has `status` and returns its attributes. Panics at once if it
    /// reaches the other final status (`delivered` / `parked`), and after `timeout`, showing the
    /// last status, attempt count and error class seen.
    pub async fn wait_for_status(&self, id: &str, status: &str, timeout: Duration) -> Value {
        eventually(
            &format!("exchange {id} to be {status}"),
            timeout,
            || async {
                let res = self
                    .get(&format!("/v1/exchanges/{id}"))
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                let code = res.status();
                let doc: Value = res.json().await.map_err(|e| e.to_string())?;
                let a = &doc["data"]["attributes"];
                let now = a["status"].as_str().unwrap_or("");
                if code == 200 && now == status {
                    Ok(a.clone())
                } else if code == 200 && matches!(now, "delivered" | "parked") {
                    // Delivered and parked are final: waiting longer cannot help.
                    panic!("exchange {id} is {now} while waiting for {status}: {a:#}");
                } else {
                    Err(format!(
                        "HTTP {code}, status {}, attempts {}, last error {}",
                        a["status"], a["attemptCount"], a["lastErrorClass"]
                    ))
                }
            },
        )
        .await
    }

    /// `POST /v1/exchanges/{id}/replay`, asserting 202; returns the child's id.
    pub async fn replay(&self, id: &str) -> String {
        let res = self
            .post(&format!("/v1/exchanges/{id}/replay"))
            .send()
            .await
            .expect("POST replay");
        let status = res.status();
        let text = res.text().await.expect("reading the body");
        assert_eq!(status, 202, "replay of {id} answered {status}: {text}");
        let v: Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(v["data"]["attributes"]["parentId"], id, "{text}");
        v["data"]["id"].as_str().expect("child id").to_owned()
    }
}

/// A response header as text (empty when absent).
pub fn header(res: &reqwest::Response, name: &str) -> String {
    res.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

// ---------------------------------------------------------------------------------------------
// In-process gateway

/// A gateway running inside the test process, with its own journal and Athena simulator.
pub struct TestGateway {
    /// The Athena simulator the force delivers to.
    pub sim: AthenaSim,
    /// `http://127.0.0.1:PORT`.
    pub base_url: String,
    /// The configuration it was built from.
    pub config: Config,
    /// Holds the journal; removed on drop.
    pub dir: TempDir,
    shutdown: CancellationToken,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestGateway {
    /// Starts a gateway with [`test_config`].
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Starts a gateway with [`test_config`] changed by `adjust`.
    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> Self {
        let sim = AthenaSim::start(AthenaSimOptions::default())
            .await
            .expect("starting the Athena simulator");
        let dir = tempfile::tempdir().expect("creating a temporary directory");
        let mut config = test_config(&dir.path().join("journal.db"), &sim.base_url());
        adjust(&mut config);
        let gw = gateway::Gateway::build(config.clone(), None)
            .await
            .expect("building the gateway");
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding a port");
        let base_url = format!("http://{}", listener.local_addr().expect("local address"));
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(gateway::run(listener, gw, shutdown.clone()));
        Self {
            sim,
            base_url,
            config,
            dir,
            shutdown,
            task: Some(task),
        }
    }

    /// A client with every role.
    pub fn api(&self) -> Api {
        Api::new(&self.base_url, API_KEY, API_SECRET)
    }

    /// The journal file.
    pub fn journal_path(&self) -> PathBuf {
        self.dir.path().join("journal.db")
    }

    /// Writes this gateway's configuration to a file in its directory (for CLI commands).
    pub fn config_file(&self) -> PathBuf {
        write_config(&self.config, &self.dir.path().join("gateway.toml"))
    }

    /// Runs `nmpp-gateway --config <this gateway's config> args…`.
    pub async fn cli(&self, args: &[&str]) -> CliOutput {
        run_cli(&self.config_file(), args).await
    }

    /// Stops serving and waits for in-flight work to finish.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(secs(10), task).await;
        }
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

// ---------------------------------------------------------------------------------------------
// The real binary

/// The `nmpp-gateway` binary next to the test executable (`target/<profile>/nmpp-gateway`),
/// or `$NMPP_GATEWAY_BIN`. Built once per test process with `cargo build -p gateway --bin
/// nmpp-gateway` in the same profile when it is missing or older than any source it is built
/// from, so `cargo nextest run --workspace` works from a clean checkout and never tests a stale
/// binary.
pub fn gateway_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("NMPP_GATEWAY_BIN") {
            return PathBuf::from(p);
        }
        let exe = std::env::current_exe().expect("the test executable's path");
        let mut profile_dir = exe.parent().expect("the test executable has a directory");
        if profile_dir.file_name().is_some_and(|n| n == "deps") {
            profile_dir = profile_dir.parent().expect("deps has a parent");
        }
        let bin = profile_dir.join(format!("nmpp-gateway{}", std::env::consts::EXE_SUFFIX));
        if needs_build(&bin) {
            build_gateway(profile_dir);
        }
        assert!(
            bin.exists(),
            "{} does not exist after building it; set NMPP_GATEWAY_BIN to the binary",
            bin.display()
        );
        bin
    })
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the workspace")
        .to_owned()
}

fn needs_build(bin: &Path) -> bool {
    let Ok(built) = std::fs::metadata(bin).and_then(|m| m.modified()) else {
        return true;
    };
    let root = workspace_root();
    let mut newest = SystemTime::UNIX_EPOCH;
    for p in ["Cargo.toml", "Cargo.lock"] {
        if let Ok(t) = std::fs::metadata(root.join(p)).and_then(|m| m.modified()) {
            newest = newest.max(t);
        }
    }
    for krate in ["gateway", "adapters", "mappings", "replay", "fixtures"] {
        newest = newest.max(newest_mtime(&root.join(krate)));
    }
    newest > built
}

fn newest_mtime(dir: &Path) -> SystemTime {
    let mut newest = SystemTime::UNIX_EPOCH;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return newest;
    };
    for e in entries.flatten() {
        let path = e.path();
        let Ok(meta) = e.metadata() else { continue };
        if meta.is_dir() {
            if path
                .file_name()
                .is_some_and(|n| n == "target" || n == "tests")
            {
                continue;
            }
            newest = newest.max(newest_mtime(&path));
        } else if let Ok(t) = meta.modified() {
            newest = newest.max(t);
        }
    }
    newest
}

fn build_gateway(profile_dir: &Path) {
    let target_dir = profile_dir.parent().expect("target/<profile> has a parent");
    let profile = profile_dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("debug");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = std::process::Command::new(cargo);
    cmd.current_dir(workspace_root())
        .args(["build", "-p", "gateway", "--bin", "nmpp-gateway"])
        .arg("--target-dir")
        .arg(target_dir);
    match profile {
        "debug" => {}
        "release" => {
            cmd.arg("--release");
        }
        other => {
            cmd.args(["--profile", other]);
        }
    }
    let out = cmd.output().expect("running cargo build");
    assert!(
        out.status.success(),
        "cargo build -p gateway --bin nmpp-gateway failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What a CLI command did.
#[derive(Debug)]
pub struct CliOutput {
    /// Exit status.
    pub status: ExitStatus,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl CliOutput {
    /// Asserts exit 0 and parses standard output as JSON.
    pub fn json(&self) -> Value {
        assert!(self.status.success(), "the command failed: {self:?}");
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.stdout))
    }
}

fn hermetic(cmd: &mut tokio::process::Command) {
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("NMPP_GATEWAY") || k == "RUST_LOG" {
            cmd.env_remove(k);
        }
    }
}

/// Runs `nmpp-gateway --config config args…` to completion.
pub async fn run_cli(config: &Path, args: &[&str]) -> CliOutput {
    let mut cmd = tokio::process::Command::new(gateway_bin());
    hermetic(&mut cmd);
    cmd.arg("--config").arg(config).args(args);
    cmd.kill_on_drop(true);
    let out = tokio::time::timeout(secs(60), cmd.output())
        .await
        .unwrap_or_else(|_| panic!("nmpp-gateway {args:?} did not finish within 60 s"))
        .expect("running nmpp-gateway");
    CliOutput {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A free loopback port below the ephemeral range, so that after a kill no outgoing connection
/// of this machine can take it before the restart.
fn probe_port() -> u16 {
    for _ in 0..200 {
        let r = uuid::Uuid::new_v4().as_u128();
        let port = 20_000 + (r % 12_000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port found in 20000..32000");
}

/// The real `nmpp-gateway serve --config FILE` in a child process, with its journal and logs in
/// its own temporary directory. It keeps its port across restarts. Dropping it kills the process.
pub struct ProcessGateway {
    /// Journal, config and logs.
    pub dir: TempDir,
    /// The configuration it runs with (listen address set to its port).
    pub config: Config,
    config_path: PathBuf,
    child: Option<Child>,
    /// How many times it was started.
    pub starts: u32,
}

impl ProcessGateway {
    /// Prepares (does not start) a gateway delivering to the Athena at `athena_url`.
    pub fn new(athena_url: &str) -> Self {
        Self::with_config(athena_url, |_| {})
    }

    /// Like [`Self::new`], with [`test_config`] changed by `adjust`.
    pub fn with_config(athena_url: &str, adjust: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().expect("creating a temporary directory");
        let mut config = test_config(&dir.path().join("journal.db"), athena_url);
        config.http.listen = SocketAddr::from(([127, 0, 0, 1], probe_port()));
        adjust(&mut config);
        let config_path = write_config(&config, &dir.path().join("gateway.toml"));
        Self {
            dir,
            config,
            config_path,
            child: None,
            starts: 0,
        }
    }

    /// The config file.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// The journal file.
    pub fn journal_path(&self) -> PathBuf {
        self.dir.path().join("journal.db")
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.config.http.listen)
    }

    /// A client with every role.
    pub fn api(&self) -> Api {
        Api::new(self.base_url(), API_KEY, API_SECRET)
    }

    /// The process id while it runs (to send it a signal; also part of its node name,
    /// `HOSTNAME-PID`, in leases and attempts).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// Whether the process is running (as far as this handle knows).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Starts the process and waits until `/health/live` answers 200. On the first start only,
    /// a port taken in the meantime by someone else is replaced by another free one.
    pub async fn start(&mut self) {
        assert!(self.child.is_none(), "already running");
        let mut tries = 0;
        loop {
            tries += 1;
            match self.try_start().await {
                Ok(()) => return,
                Err(e) if self.starts == 0 && e.contains("cannot listen") && tries < 5 => {
                    self.config.http.listen = SocketAddr::from(([127, 0, 0, 1], probe_port()));
                    write_config(&self.config, &self.config_path);
                }
                Err(e) if e.contains("cannot listen") && tries < 20 => {
                    // The port of a killed process is normally free at once; give it a moment.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("nmpp-gateway did not start: {e}"),
            }
        }
    }

    async fn try_start(&mut self) -> Result<(), String> {
        let log = |name: &str| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.dir.path().join(name))
                .expect("opening a log file")
        };
        let (stdout, stderr) = (log("stdout.log"), log("stderr.log"));
        let stderr_len = std::fs::metadata(self.dir.path().join("stderr.log"))
            .map(|m| m.len())
            .unwrap_or(0);
        let mut cmd = tokio::process::Command::new(gateway_bin());
        hermetic(&mut cmd);
        cmd.arg("serve")
            .arg("--config")
            .arg(&self.config_path)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::from(stdout))
            .stderr(Stdio::from(stderr))
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|e| format!("spawning: {e}"))?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .map_err(|e| e.to_string())?;
        let url = format!("{}/health/live", self.base_url());
        let deadline = tokio::time::Instant::now() + secs(60);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let log =
                    std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default();
                let tail = log.get(stderr_len as usize..).unwrap_or(&log);
                return Err(format!("exited with {status}: {tail}"));
            }
            if let Ok(res) = http.get(&url).send().await
                && res.status() == 200
            {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                let _ = child.kill().await;
                return Err(format!("{url} did not answer 200 within 60 s"));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.child = Some(child);
        self.starts += 1;
        Ok(())
    }

    /// `kill -9` the process and reap it.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // tokio's kill sends SIGKILL and waits for the process to exit.
            child.kill().await.expect("killing nmpp-gateway");
        }
    }

    /// Sends SIGTERM (a graceful stop) and waits up to `timeout` for the process to exit;
    /// returns its exit status. Panics if it does not exit in time (after killing it).
    pub async fn terminate(&mut self, timeout: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("not running");
        let pid = child.id().expect("a running child has a pid");
        let sent = tokio::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await
            .expect("running kill");
        assert!(sent.success(), "kill -TERM {pid} failed");
        match tokio::time::timeout(timeout, child.wait()).await {
            Ok(status) => status.expect("waiting for nmpp-gateway"),
            Err(_) => {
                let _ = child.kill().await;
                panic!("nmpp-gateway did not stop within {timeout:?} of SIGTERM");
            }
        }
    }

    /// Kills (if running) and starts again on the same journal and port.
    pub async fn restart(&mut self) {
        self.kill().await;
        self.start().await;
    }

    /// Runs `nmpp-gateway --config <this config> args…` (works while `serve` runs).
    pub async fn cli(&self, args: &[&str]) -> CliOutput {
        run_cli(&self.config_path, args).await
    }

    /// Everything the process wrote to standard error so far (for failure messages).
    pub fn stderr_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }
}

// ---------------------------------------------------------------------------------------------
// Error documents

/// Reads a JSON:API error response and checks its shape: status `status`, content type
/// `application/vnd.api+json`, a non-empty `errors[]` whose every object has an `id`, the
/// status as a string, a `code`, a `title` and a `detail`, and `meta.errorType` `business` for a
/// 4xx or `system` for a 5xx. Returns the document.
pub async fn error_document(res: reqwest::Response, status: u16) -> Value {
    let got = res.status().as_u16();
    let ct = header(&res, "content-type");
    let text = res.text().await.expect("reading the error body");
    assert_eq!(got, status, "expected HTTP {status}, got {got}: {text}");
    assert!(
        ct.starts_with(JSONAPI),
        "error content type is {ct:?}, not {JSONAPI}: {text}"
    );
    let doc: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("the error body is not JSON ({e}): {text}"));
    let errors = doc["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("no errors[] in {text}"));
    assert!(!errors.is_empty(), "errors[] is empty: {text}");
    let kind = if status >= 500 { "system" } else { "business" };
    for e in errors {
        for field in ["id", "code", "title", "detail"] {
            assert!(
                e[field].as_str().is_some_and(|s| !s.is_empty()),
                "error without {field}: {e}"
            );
        }
        assert_eq!(e["status"], status.to_string(), "{e}");
        assert_eq!(e["meta"]["errorType"], kind, "{e}");
    }
    doc
}

/// Every error's code, detail, pointer, parameter, field and rule, joined, to check that an
/// error names what is wrong.
pub fn error_text(doc: &Value) -> String {
    let mut parts = Vec::new();
    for e in doc["errors"].as_array().into_iter().flatten() {
        for v in [
            &e["code"],
            &e["detail"],
            &e["source"]["pointer"],
            &e["source"]["parameter"],
            &e["meta"]["field"],
            &e["meta"]["rule"],
        ] {
            if let Some(s) = v.as_str() {
                parts.push(s.to_owned());
            }
        }
    }
    parts.join(" | ")
}

/// What [`check_acknowledged_delivered_once`] found.
#[derive(Debug)]
pub struct DeliveredOnce {
    /// Exchanges in the journal.
    pub journalled: usize,
    /// The Athena simulator's counters.
    pub stats: fixtures::athena::SimStats,
}

/// The crash tests' end check, after delivery has settled: every acknowledged submission
/// (`acked`: submission id → exchange id, empty when the 201 carried none) is in the journal
/// exactly once and delivered; Athena holds one record per idempotency key, each a journalled
/// submission, and every journalled exchange was delivered once; the audit chain verifies.
pub async fn check_acknowledged_delivered_once(
    gw: &ProcessGateway,
    sim: &AthenaSim,
    acked: &std::collections::HashMap<String, String>,
) -> DeliveredOnce {
    // The journal, as the CLI sees it.
    let rows = gw.cli(&["exchanges", "list", "--json"]).await.json();
    let rows = rows.as_array().unwrap();
    let mut journal: std::collections::HashMap<String, &Value> = std::collections::HashMap::new();
    for r in rows {
        let sid = r["submissionId"].as_str().unwrap().to_owned();
        assert!(
            journal.insert(sid.clone(), r).is_none(),
            "two exchanges for submission {sid}"
        );
    }
    let mut missing = Vec::new();
    for (sid, exchange_id) in acked {
        match journal.get(sid) {
            None => missing.push(sid.clone()),
            Some(row) => {
                if !exchange_id.is_empty() {
                    assert_eq!(row["id"], exchange_id.as_str(), "submission {sid}");
                }
                assert_eq!(row["status"], "delivered", "{row}");
            }
        }
    }
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged submissions are not in the journal: {missing:?}",
        missing.len(),
        acked.len()
    );

    // Athena: one record per idempotency key, each a journalled submission.
    let records = sim.records();
    let mut keys = std::collections::HashSet::new();
    for r in &records {
        assert!(
            keys.insert(r.idempotency_key.clone()),
            "two records for idempotency key {}",
            r.idempotency_key
        );
        assert_eq!(r.header.submission_id, r.idempotency_key);
        assert!(
            journal.contains_key(&r.idempotency_key),
            "Athena holds {} which the journal does not",
            r.idempotency_key
        );
    }
    for sid in acked.keys() {
        let rec = sim
            .record_by_key(sid)
            .unwrap_or_else(|| panic!("acknowledged submission {sid} never reached Athena"));
        assert_eq!(journal[sid]["targetRef"], rec.crime_reference.as_str());
    }
    let stats = sim.stats();
    assert_eq!(stats.created as usize, records.len(), "{stats:?}");
    assert_eq!(
        records.len(),
        journal.len(),
        "every journalled exchange delivered once"
    );

    // The audit chain survived every kill.
    let verify = gw.cli(&["audit", "verify"]).await;
    assert_eq!(verify.status.code(), Some(0), "{verify:?}");
    DeliveredOnce {
        journalled: journal.len(),
        stats,
    }
}
