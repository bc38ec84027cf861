//! PostgreSQL for the black-box suites.
//!
//! - [`TestDb`] — a fresh database on the machine's shared cluster (127.0.0.1:5432, or the
//!   maintenance URL in `NMPP_TEST_PG_URL`), dropped when the handle is dropped.
//! - [`PrivateCluster`] — a PostgreSQL server of the test's own (`initdb` into a temporary
//!   directory, `pg_ctl` on a free port), which a test may stop and start again without
//!   disturbing anyone else's tests on the shared cluster.

use std::{
    path::{Path, PathBuf},
    process::Command,
};
use tempfile::TempDir;
use tokio_postgres::NoTls;

/// The maintenance database URL of the shared cluster.
pub fn admin_url() -> String {
    std::env::var("NMPP_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// Connects to `url` and drives the connection on the current runtime.
pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| {
            panic!("connecting to PostgreSQL ({e}); start it with: pg_ctlcluster 15 main start")
        });
    tokio::spawn(conn);
    client
}

/// A fresh database on the shared cluster, dropped (`WITH (FORCE)`) on drop.
#[derive(Debug)]
pub struct TestDb {
    /// Its name (`nmpp_<prefix>_<uuid>`).
    pub name: String,
    /// Its URL, for `journal.url`.
    pub url: String,
}

impl TestDb {
    /// Creates `nmpp_<prefix>_<uuid>`.
    pub async fn create(prefix: &str) -> Self {
        let name = format!("nmpp_{prefix}_{}", uuid::Uuid::new_v4().simple());
        connect(&admin_url())
            .await
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        let base = admin_url();
        let url = match base.rfind('/') {
            Some(i) => format!("{}/{name}", &base[..i]),
            None => panic!("NMPP_TEST_PG_URL must name a database: {base}"),
        };
        Self { name, url }
    }

    /// A client connected to this database.
    pub async fn client(&self) -> tokio_postgres::Client {
        connect(&self.url).await
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop may run inside the test's runtime: use a thread with its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime to drop the test database");
            rt.block_on(async move {
                if let Ok((client, conn)) = tokio_postgres::connect(&admin_url(), NoTls).await {
                    tokio::spawn(conn);
                    let _ = client
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                }
            });
        })
        .join();
    }
}

/// A PostgreSQL server of the test's own: `initdb` into a temporary directory, listening on a
/// free loopback port (trust authentication, superuser `postgres`), its socket in that directory.
/// When the test runs as root (initdb refuses root) the server runs as the `postgres` user.
/// Stopped (immediately) on drop.
#[derive(Debug)]
pub struct PrivateCluster {
    dir: TempDir,
    bin: PathBuf,
    /// The TCP port it listens on.
    pub port: u16,
    as_postgres: bool,
}

impl PrivateCluster {
    /// Why a private cluster cannot run here, if it cannot (no PostgreSQL binaries).
    pub fn unavailable() -> Option<String> {
        match pg_bin_dir() {
            Some(_) => None,
            None => Some("no PostgreSQL server binaries under /usr/lib/postgresql/*/bin".into()),
        }
    }

    /// Runs `initdb` and starts the server; panics with the server's log if it cannot.
    pub fn start() -> Self {
        let bin = pg_bin_dir().expect("PostgreSQL server binaries under /usr/lib/postgresql");
        let as_postgres = is_root();
        let dir = tempfile::Builder::new()
            .prefix("nmpp-pg-")
            .tempdir()
            .expect("a temporary directory");
        if as_postgres {
            chown_postgres(dir.path());
        }
        let port = free_port();
        let me = Self {
            dir,
            bin,
            port,
            as_postgres,
        };
        let data = me.data_dir();
        me.run(
            "initdb",
            &[
                "-D",
                &data.display().to_string(),
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
            ],
        );
        me.start_server();
        me
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts the server (again) and waits until it accepts connections.
    pub fn start_server(&self) {
        let data = self.data_dir().display().to_string();
        let log = self.dir.path().join("server.log").display().to_string();
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=on",
            self.port,
            self.dir.path().display()
        );
        self.run(
            "pg_ctl",
            &["-D", &data, "-l", &log, "-o", &opts, "-w", "start"],
        );
    }

    /// Stops the server at once (`pg_ctl stop -m immediate`: no checkpoint, connections cut, as
    /// a crash would), and waits until it is gone.
    pub fn stop_immediate(&self) {
        let data = self.data_dir().display().to_string();
        self.run("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"]);
    }

    /// The server's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let exe = self.bin.join(tool);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        let out = cmd
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .unwrap_or_else(|e| panic!("running {tool}: {e}"));
        assert!(
            out.status.success(),
            "{tool} {args:?} failed ({}):\n{}\n{}\nserver log:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        let data = self.data_dir();
        if data.join("postmaster.pid").exists() {
            let exe = self.bin.join("pg_ctl");
            let mut cmd = if self.as_postgres {
                let mut c = Command::new("runuser");
                c.args(["-u", "postgres", "--"]).arg(&exe);
                c
            } else {
                Command::new(&exe)
            };
            let _ = cmd
                .arg("-D")
                .arg(&data)
                .args(["-m", "immediate", "-w", "stop"])
                .output();
        }
    }
}

/// The newest `/usr/lib/postgresql/<version>/bin` holding `initdb` and `pg_ctl`.
fn pg_bin_dir() -> Option<PathBuf> {
    let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            (bin.join("initdb").exists() && bin.join("pg_ctl").exists()).then_some((v, bin))
        })
        .collect();
    dirs.sort();
    dirs.pop().map(|(_, b)| b)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn chown_postgres(dir: &Path) {
    let out = Command::new("chown")
        .arg("postgres:postgres")
        .arg(dir)
        .output()
        .expect("running chown");
    assert!(
        out.status.success(),
        "chown postgres {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A free loopback port below the ephemeral range, so no outgoing connection takes it while
/// the server is stopped.
fn free_port() -> u16 {
    for _ in 0..200 {
        let r = uuid::Uuid::new_v4().as_u128();
        let port = 12_000 + (r % 8_000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port found in 12000..20000");
}
