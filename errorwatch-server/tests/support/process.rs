//! The real binary as a child process: spawned on a file database, killed when dropped, its
//! memory read from /proc.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_errorwatch-server");
pub(crate) const SECRET: &str = "process-secret-0123456789";
pub(crate) const ADMIN: &str = "process-admin";

/// A temporary directory, removed when dropped.
pub(crate) struct TempDir(pub PathBuf);

impl TempDir {
    pub(crate) fn new(name: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir = std::env::temp_dir().join(format!("ew-{name}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }

    pub(crate) fn database_url(&self) -> String {
        format!("sqlite://{}", self.0.join("errorwatch.db").display())
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `BIN` on `database_url`, with the secret and admin key of these tests.
pub(crate) fn command(database_url: &str) -> Command {
    let mut command = Command::new(BIN);
    with_settings(&mut command, database_url);
    command
}

fn with_settings(command: &mut Command, database_url: &str) {
    command
        .env("DATABASE_URL", database_url)
        .env("API_KEY_HASH_SECRET", SECRET)
        .env("ADMIN_API_KEY", ADMIN)
        .env("RUST_LOG", "off");
}

/// Migrates a new database and creates a project: its API key.
pub(crate) fn new_project(database_url: &str) -> String {
    let migrated = command(database_url)
        .arg("migrate")
        .output()
        .expect("migrate");
    assert!(
        migrated.status.success(),
        "{}",
        String::from_utf8_lossy(&migrated.stderr)
    );
    let created = command(database_url)
        .args(["project", "create", "hostile", "--json"])
        .output()
        .expect("project create");
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let created: Value = serde_json::from_slice(&created.stdout).expect("JSON");
    created["api_key"].as_str().expect("key").to_owned()
}

/// The server process; killed when dropped, so a failing test leaves nothing running.
pub(crate) struct Served {
    pub child: Child,
    pub port: u16,
}

impl Served {
    /// Starts `errorwatch-server serve` with `env`, optionally under a wrapper command (such
    /// as `prlimit`), and waits until it answers.
    pub(crate) async fn start(
        database_url: &str,
        env: &[(&str, &str)],
        wrapper: &[&str],
    ) -> Served {
        Served::start_on(free_port(), database_url, env, wrapper).await
    }

    /// The same, on `port` (a restart on the port clients already use).
    pub(crate) async fn start_on(
        port: u16,
        database_url: &str,
        env: &[(&str, &str)],
        wrapper: &[&str],
    ) -> Served {
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg("--").arg(BIN);
                with_settings(&mut command, database_url);
                command
            }
            None => command(database_url),
        };
        command
            .arg("serve")
            .env("ERRORWATCH_BIND", format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(if std::env::var_os("EW_SERVER_STDERR").is_some() {
                Stdio::inherit()
            } else {
                Stdio::null()
            });
        for (name, value) in env {
            command.env(name, value);
        }
        let served = Served {
            child: command.spawn().expect("the server starts"),
            port,
        };
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let live = http.get(served.url("/health/live")).send().await;
            if live.is_ok_and(|r| r.status().is_success()) {
                return served;
            }
            assert!(Instant::now() < deadline, "the server did not come up");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub(crate) fn addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kibibytes from /proc/<pid>/status: `VmHWM` (peak) or `VmRSS` (now).
    pub(crate) fn memory_kib(&self, field: &str) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("/proc status");
        status
            .lines()
            .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc status"))
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}
