//! A throwaway PostgreSQL cluster per test: `initdb` in a temp folder,
//! the server on a Unix socket in that folder only (no TCP), stopped and
//! deleted on drop. initdb and pg_ctl refuse to run as root, so as root
//! they run as the `postgres` user of Debian's package, in a folder it
//! owns. Nothing is skipped: without PostgreSQL the test fails and says
//! how to install it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU16, Ordering};

/// The user the cluster's role and database are named after.
pub const ROLE: &str = "pecd";

/// A running throwaway cluster.
pub struct PgCluster {
    dir: Option<tempfile::TempDir>,
    bin: PathBuf,
    port: u16,
}

/// The folder of initdb, pg_ctl and psql: Debian's versioned folder first,
/// then `PATH`.
fn bin_dir() -> PathBuf {
    let mut versioned: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|b| b.join("initdb").exists())
        .collect();
    versioned.sort();
    if let Some(b) = versioned.pop() {
        return b;
    }
    for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
        if dir.join("initdb").exists() && dir.join("pg_ctl").exists() {
            return dir;
        }
    }
    panic!(
        "PostgreSQL is not installed: these tests need initdb and pg_ctl \
         (Debian: apt-get install postgresql; scripts/test installs it)"
    );
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A command that runs `program` as the `postgres` user when we are root.
fn as_postgres(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn run(mut c: Command, what: &str) -> Output {
    let out = c
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {c:?}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Ports name the socket file only (the server listens on no TCP
/// address); a per-process counter keeps two clusters of one test
/// binary apart, the pid the binaries.
fn next_port() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    20_000 + ((std::process::id() as u16 % 2_000) * 16 + n % 16) % 40_000
}

impl PgCluster {
    /// Create and start a cluster with a superuser role and a database,
    /// both named [`ROLE`]; local connections are trusted.
    pub fn start() -> PgCluster {
        let bin = bin_dir();
        let dir = tempfile::Builder::new()
            .prefix("pecd-pg-")
            .tempdir()
            .expect("temp dir");
        if is_root() {
            let out = Command::new("chown")
                .arg("postgres:postgres")
                .arg(dir.path())
                .output()
                .expect("chown");
            assert!(
                out.status.success(),
                "chown postgres {}: {} (is there a `postgres` user? Debian's postgresql package makes it)",
                dir.path().display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let data = dir.path().join("data");
        let mut init = as_postgres(&bin.join("initdb"));
        init.arg("-D").arg(&data).args([
            "-U",
            ROLE,
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-locale",
            "--no-sync",
        ]);
        run(init, "initdb");
        let port = next_port();
        let cluster = PgCluster {
            dir: Some(dir),
            bin,
            port,
        };
        // fsync off: the cluster lives for one test; nothing is kept.
        let opts = format!(
            "-c listen_addresses='' -k {} -p {port} -c fsync=off -c full_page_writes=off -c max_connections=200",
            cluster.socket_dir().display()
        );
        let mut start = as_postgres(&cluster.bin.join("pg_ctl"));
        start
            .arg("-D")
            .arg(&data)
            .args(["-o", &opts, "-l"])
            .arg(cluster.socket_dir().join("server.log"))
            .args(["-w", "-t", "60", "start"]);
        let out = start.output().expect("pg_ctl start");
        if !out.status.success() {
            let log = std::fs::read_to_string(cluster.socket_dir().join("server.log"))
                .unwrap_or_default();
            panic!(
                "pg_ctl start failed ({}):\n{}\n{}\nserver log:\n{log}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        cluster.psql("postgres", &format!("CREATE DATABASE {ROLE}"));
        cluster
    }

    /// The folder of the socket (and of the cluster).
    pub fn socket_dir(&self) -> PathBuf {
        self.dir.as_ref().expect("cluster").path().to_path_buf()
    }

    /// The port that names the socket file.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The libpq-style URL of database `db` as [`ROLE`], over the socket.
    pub fn url_of(&self, db: &str) -> String {
        format!(
            "postgresql://{ROLE}@/{db}?host={}&port={}",
            self.socket_dir().display(),
            self.port
        )
    }

    /// The URL of the [`ROLE`] database.
    pub fn url(&self) -> String {
        self.url_of(ROLE)
    }

    /// Another empty database in the same cluster; its URL.
    pub fn create_database(&self, name: &str) -> String {
        self.psql("postgres", &format!("CREATE DATABASE {name}"));
        self.url_of(name)
    }

    /// Run `sql` with psql in database `db`; its output (unaligned, no
    /// headers).
    pub fn psql(&self, db: &str, sql: &str) -> String {
        self.try_psql(db, sql)
            .unwrap_or_else(|e| panic!("psql {sql:?}: {e}"))
    }

    /// [`PgCluster::psql`], giving the server's complaint when it fails.
    pub fn try_psql(&self, db: &str, sql: &str) -> Result<String, String> {
        let out = Command::new(self.bin.join("psql"))
            .arg("-h")
            .arg(self.socket_dir())
            .args(["-p", &self.port.to_string(), "-U", ROLE, "-d", db])
            .args(["-v", "ON_ERROR_STOP=1", "-X", "-A", "-t", "-c", sql])
            .output()
            .map_err(|e| format!("cannot run psql: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let Some(dir) = self.dir.take() else { return };
        let mut stop = as_postgres(&self.bin.join("pg_ctl"));
        stop.arg("-D")
            .arg(dir.path().join("data"))
            .args(["-m", "immediate", "-w", "stop"]);
        let _ = stop.output();
        drop(dir);
    }
}
