//! A throwaway PostgreSQL cluster on this machine, for `pecd bench --store
//! postgresql` and the tests: `initdb` in a fresh temp folder, the server
//! on a Unix socket in that folder only (no TCP), stopped and deleted on
//! drop. initdb and pg_ctl refuse to run as root, so as root they run as
//! the `postgres` user of Debian's package, in a folder it owns.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU16, Ordering};

/// The user the cluster's role and database are named after.
pub const ROLE: &str = "pecd";

/// Why a throwaway cluster could not be made or used.
#[derive(Debug)]
pub enum PgLabError {
    /// No initdb and pg_ctl on this machine.
    NotInstalled,
    /// A step failed: which, and what it said.
    Step(String, String),
}

impl std::fmt::Display for PgLabError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PgLabError::NotInstalled => write!(
                f,
                "PostgreSQL is not installed: initdb and pg_ctl are needed \
                 (Debian: apt-get install postgresql)"
            ),
            PgLabError::Step(what, why) => write!(f, "{what}: {why}"),
        }
    }
}

impl std::error::Error for PgLabError {}

/// A running throwaway cluster.
pub struct PgCluster {
    dir: Option<PathBuf>,
    bin: PathBuf,
    port: u16,
}

/// The folder of initdb, pg_ctl and psql: Debian's versioned folder first,
/// then `PATH`.
fn bin_dir() -> Result<PathBuf, PgLabError> {
    let mut versioned: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|b| b.join("initdb").exists())
        .collect();
    versioned.sort();
    if let Some(b) = versioned.pop() {
        return Ok(b);
    }
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .find(|dir| dir.join("initdb").exists() && dir.join("pg_ctl").exists())
        .ok_or(PgLabError::NotInstalled)
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

fn run(mut c: Command, what: &str) -> Result<Output, PgLabError> {
    let out = c
        .output()
        .map_err(|e| PgLabError::Step(what.into(), format!("cannot run {c:?}: {e}")))?;
    if !out.status.success() {
        return Err(PgLabError::Step(
            what.into(),
            format!(
                "{}\n{}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        ));
    }
    Ok(out)
}

/// Ports name the socket file only (the server listens on no TCP
/// address); a per-process counter keeps two clusters of one process
/// apart, the pid the processes.
fn next_port() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    20_000 + ((std::process::id() as u16 % 2_000) * 16 + n % 16) % 40_000
}

impl PgCluster {
    /// Create and start a cluster with a superuser role and a database,
    /// both named [`ROLE`]; local connections are trusted. `durable`
    /// keeps PostgreSQL's fsync on (a benchmark); tests turn it off.
    pub fn start(durable: bool) -> Result<PgCluster, PgLabError> {
        let bin = bin_dir()?;
        let dir = std::env::temp_dir().join(format!(
            "pecd-pg-{}-{}",
            std::process::id(),
            crate::store::spool::unique_suffix()
        ));
        std::fs::create_dir_all(&dir)
            .map_err(|e| PgLabError::Step(format!("create {}", dir.display()), e.to_string()))?;
        // Dropped from here on: a failed start leaves no folder behind.
        let mut cluster = PgCluster {
            dir: Some(dir.clone()),
            bin,
            port: next_port(),
        };
        if is_root() {
            let mut chown = Command::new("chown");
            chown.arg("postgres:postgres").arg(&dir);
            run(
                chown,
                "chown postgres (Debian's postgresql package makes the user)",
            )?;
        }
        let data = dir.join("data");
        let mut init = as_postgres(&cluster.bin.join("initdb"));
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
        run(init, "initdb")?;
        let durability = if durable {
            ""
        } else {
            // Nothing of a test's cluster is kept.
            " -c fsync=off -c full_page_writes=off"
        };
        let opts = format!(
            "-c listen_addresses='' -k {} -p {}{durability} -c max_connections=200",
            dir.display(),
            cluster.port
        );
        let mut start = as_postgres(&cluster.bin.join("pg_ctl"));
        start
            .arg("-D")
            .arg(&data)
            .args(["-o", &opts, "-l"])
            .arg(dir.join("server.log"))
            .args(["-w", "-t", "60", "start"]);
        if let Err(PgLabError::Step(what, why)) = run(start, "pg_ctl start") {
            let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
            cluster.dir = Some(dir);
            return Err(PgLabError::Step(what, format!("{why}\nserver log:\n{log}")));
        }
        cluster.psql("postgres", &format!("CREATE DATABASE {ROLE}"))?;
        Ok(cluster)
    }

    /// The folder of the socket (and of the cluster).
    pub fn socket_dir(&self) -> PathBuf {
        self.dir.clone().unwrap_or_default()
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
    pub fn create_database(&self, name: &str) -> Result<String, PgLabError> {
        self.psql("postgres", &format!("CREATE DATABASE {name}"))?;
        Ok(self.url_of(name))
    }

    /// Run `sql` with psql in database `db`; its output (unaligned, no
    /// headers), or the server's complaint.
    pub fn psql(&self, db: &str, sql: &str) -> Result<String, PgLabError> {
        let mut c = Command::new(self.bin.join("psql"));
        c.arg("-h")
            .arg(self.socket_dir())
            .args(["-p", &self.port.to_string(), "-U", ROLE, "-d", db])
            .args(["-v", "ON_ERROR_STOP=1", "-X", "-A", "-t", "-c", sql]);
        let out = c
            .output()
            .map_err(|e| PgLabError::Step("psql".into(), format!("cannot run psql: {e}")))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(PgLabError::Step(
                format!("psql {sql:?}"),
                String::from_utf8_lossy(&out.stderr).trim().to_string(),
            ))
        }
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let Some(dir) = self.dir.take() else { return };
        let mut stop = as_postgres(&self.bin.join("pg_ctl"));
        stop.arg("-D")
            .arg(dir.join("data"))
            .args(["-m", "immediate", "-w", "stop"]);
        let _ = stop.output();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
