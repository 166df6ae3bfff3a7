//! A real PostgreSQL server for the tests: the machine's own binaries (`initdb`, `postgres`,
//! from Debian's `postgresql` package), a cluster in a temporary directory, listening on an
//! ephemeral loopback port.
//!
//! The cluster is run by a small shell script that reads commands on its standard input
//! (`stop`, `start`) and, when that input closes, stops PostgreSQL and deletes the directory.
//! The input closes when the test process ends, however it ends, so no cluster outlives its
//! tests, and none needs a fixed port. (The server's benchmark uses this file too.)

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

const SCRIPT: &str = r#"
set -u
dir=$1
port=$2
log="$dir/postgres.log"
if ! initdb -D "$dir/data" -U postgres --auth=trust --no-sync -E UTF8 >"$dir/initdb.log" 2>&1; then
    echo "failed: initdb: $(tail -n 5 "$dir/initdb.log" | tr '\n' ' ')"
    exit 1
fi
start() {
    postgres -D "$dir/data" -p "$port" -k "$dir" -c listen_addresses=127.0.0.1 \
        -c max_connections=500 -c shared_buffers=64MB >>"$log" 2>&1 &
    pid=$!
}
start
echo started
while read -r command; do
    case "$command" in
        stop) kill -INT "$pid"; wait "$pid"; echo stopped ;;
        start) start; echo started ;;
    esac
done
kill -INT "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
rm -rf "$dir"
"#;

/// One PostgreSQL server.
pub(crate) struct Cluster {
    pub port: u16,
    control: Mutex<(ChildStdin, BufReader<ChildStdout>)>,
    _child: Child,
}

impl Cluster {
    /// Starts a cluster of its own (for tests that stop and restart it).
    pub(crate) fn start() -> Cluster {
        let bin = bin_dir();
        let dir = std::env::temp_dir().join(format!(
            "ew-pg-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a directory for the cluster");
        let port = free_port();
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        // PostgreSQL refuses to run as root: then it runs as Debian's `postgres` user.
        let mut command = if is_root() {
            chown_to_postgres(&dir);
            let mut command = Command::new("setpriv");
            command.args([
                "--reuid=postgres",
                "--regid=postgres",
                "--clear-groups",
                "--reset-env",
                "--",
                "env",
            ]);
            command.arg(format!("PATH={path}")).arg("sh");
            command
        } else {
            let mut command = Command::new("sh");
            command.env("PATH", &path);
            command
        };
        command
            .arg("-c")
            .arg(SCRIPT)
            .arg("sh")
            .arg(&dir)
            .arg(port.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = command.spawn().expect("the PostgreSQL script starts");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let cluster = Cluster {
            port,
            control: Mutex::new((stdin, stdout)),
            _child: child,
        };
        cluster.expect_line("started");
        cluster.wait_ready();
        cluster
    }

    /// The cluster every test of this process shares; each test takes a database of its own.
    pub(crate) fn shared() -> &'static Cluster {
        static SHARED: OnceLock<Cluster> = OnceLock::new();
        SHARED.get_or_init(Cluster::start)
    }

    /// A URL of a new, empty database name on this cluster (created by whoever opens it first
    /// with `create_if_missing`, as `migrate` does).
    pub(crate) fn new_database_url(&self) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/t{}_{}",
            self.port,
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// Stops PostgreSQL (a fast shutdown: sessions are cut, open transactions rolled back).
    pub(crate) fn stop(&self) {
        self.command("stop");
        self.expect_line("stopped");
    }

    /// Starts it again and waits until it takes connections.
    pub(crate) fn restart(&self) {
        self.command("start");
        self.expect_line("started");
        self.wait_ready();
    }

    fn command(&self, command: &str) {
        let mut control = self.control.lock().unwrap_or_else(|e| e.into_inner());
        writeln!(control.0, "{command}").expect("the cluster script reads commands");
        control.0.flush().expect("flush");
    }

    fn expect_line(&self, expected: &str) {
        let mut control = self.control.lock().unwrap_or_else(|e| e.into_inner());
        let mut line = String::new();
        control
            .1
            .read_line(&mut line)
            .expect("the cluster script answers");
        assert_eq!(line.trim(), expected, "the PostgreSQL cluster: {line}");
    }

    /// Waits (30 s at most) until PostgreSQL accepts a connection and answers.
    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let answered = std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
                && pg_isready(self.port);
            if answered {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "PostgreSQL did not start on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

static NEXT: AtomicUsize = AtomicUsize::new(0);

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

fn pg_isready(port: u16) -> bool {
    Command::new(bin_dir().join("pg_isready"))
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            "postgres",
            "-q",
        ])
        .status()
        .is_ok_and(|status| status.success())
}

/// Where `initdb` and `postgres` are: on `PATH`, or Debian's versioned directory.
fn bin_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let mut candidates: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .map(|entry| entry.path().join("bin"))
            .filter(|bin| bin.join("postgres").exists())
            .collect();
        // The newest version first.
        candidates.sort_by_key(|bin| {
            bin.parent()
                .and_then(|v| v.file_name())
                .and_then(|v| v.to_str())
                .and_then(|v| v.parse::<u32>().ok())
                .unwrap_or(0)
        });
        if let Some(newest) = candidates.pop() {
            return newest;
        }
        std::env::var_os("PATH")
            .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
            .unwrap_or_default()
            .into_iter()
            .find(|dir| dir.join("postgres").exists() && dir.join("initdb").exists())
            .unwrap_or_else(|| {
                panic!(
                    "PostgreSQL's server binaries (initdb, postgres) are not installed: \
                     `apt-get install postgresql` (.ci/run does)"
                )
            })
    })
    .clone()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

fn chown_to_postgres(dir: &std::path::Path) {
    let status = Command::new("chown")
        .arg("postgres:postgres")
        .arg(dir)
        .status()
        .expect("chown");
    assert!(
        status.success(),
        "the cluster directory could not be given to the postgres user"
    );
}
