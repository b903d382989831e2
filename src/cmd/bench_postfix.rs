//! `pecd bench --against-postfix`: a stock Postfix relaying plain messages
//! (`smtp-source` -> `postfix` -> `smtp-sink` on loopback, no TLS, its queue
//! files fsynced as Postfix always does) and `pecd bench` alternately in one
//! sitting, with the same messages, size and sessions, and the ratio of their
//! medians (issue 23's throughput figure).
//!
//! Each Postfix run is a private instance in a fresh folder of the temp dir
//! (`config_directory`, `queue_directory`, `data_directory`, the maillog),
//! started by root as Postfix is (the master drops to `mail_owner`), on
//! ephemeral loopback ports, and stopped and removed when the run ends, fails
//! or is interrupted; what a process killed with SIGKILL leaves (the folder,
//! the master, the `smtp-sink`) is stopped and removed by the next sitting.

use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

use super::bench::Report;
use crate::cli::BenchArgs;
use crate::cmd::AdminResult;

/// The programs a sitting runs, all from Debian's package `postfix`.
const PROGRAMS: [&str; 4] = ["postfix", "postconf", "smtp-source", "smtp-sink"];
/// The Debian package that has them.
const DEBIAN_PACKAGE: &str = "postfix";
/// Debian's `mail_owner` and `setgid_group` (the package creates both).
const MAIL_OWNER: &str = "postfix";
const SETGID_GROUP: &str = "postdrop";
/// Instance folders in the temp dir: this prefix, the owner's pid, a suffix.
const DIR_PREFIX: &str = "pecd-postfix-";
/// In an instance's folder: `PID PORT` of its `smtp-sink`, which a
/// SIGKILL of pecd would orphan (the sink runs as `mail_owner`, so no
/// parent-death signal reaches it).
const SINK_PID_FILE: &str = "smtp-sink.pid";
/// Issue 23's throughput target: pecd at least this share of Postfix.
const TARGET_RATIO: f64 = 0.8;

/// Why a sitting against Postfix could not run.
#[derive(Debug)]
pub enum PostfixError {
    /// These programs are not in `PATH`.
    Missing(Vec<&'static str>),
    /// Postfix's master must start as root (it then drops to `mail_owner`).
    NotRoot,
    /// `mail_owner` cannot get through this folder to the queue.
    Unreachable(PathBuf),
    /// A file or folder of the instance: the path and why.
    File(PathBuf, std::io::Error),
    /// A program did not start: which and why.
    Spawn(&'static str, std::io::Error),
    /// A listener did not come up: what and why.
    NotListening(&'static str, std::io::Error),
    /// A program failed: what, its output, the end of Postfix's maillog.
    Failed {
        /// The step.
        what: String,
        /// What the program printed.
        output: String,
        /// The last lines of the instance's maillog.
        maillog: String,
    },
    /// Not every message reached `smtp-sink` in time.
    Timeout {
        /// Messages `smtp-sink` received.
        received: u64,
        /// Messages sent.
        expected: usize,
        /// The last lines of the instance's maillog.
        maillog: String,
    },
}

impl std::fmt::Display for PostfixError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PostfixError::Missing(p) => write!(
                f,
                "--against-postfix needs Postfix's {}, not found in PATH ({} missing). \
                 On Debian they are all in the package `{DEBIAN_PACKAGE}`: install it without \
                 a system configuration, so that nothing starts on port 25:\n  \
                 echo \"postfix postfix/main_mailer_type select No configuration\" | debconf-set-selections\n  \
                 DEBIAN_FRONTEND=noninteractive apt-get install -y {DEBIAN_PACKAGE}",
                PROGRAMS.join(", "),
                p.join(", ")
            ),
            PostfixError::NotRoot => f.write_str(
                "--against-postfix runs Postfix's master, which starts as root and drops to \
                 mail_owner: run it as root (e.g. with sudo)",
            ),
            PostfixError::Unreachable(p) => write!(
                f,
                "{}: Postfix's mail_owner ({MAIL_OWNER}) cannot search this folder to reach \
                 its queue in the temp dir: `chmod o+x` it, or set TMPDIR to a folder others \
                 can search",
                p.display()
            ),
            PostfixError::File(p, e) => write!(f, "{}: {e}", p.display()),
            PostfixError::Spawn(what, e) => write!(f, "{what}: {e}"),
            PostfixError::NotListening(what, e) => write!(f, "{what} is not answering: {e}"),
            PostfixError::Failed {
                what,
                output,
                maillog,
            } => write!(
                f,
                "{what} failed: {}\nPostfix's maillog ends with:\n{maillog}",
                output.trim()
            ),
            PostfixError::Timeout {
                received,
                expected,
                maillog,
            } => write!(
                f,
                "smtp-sink received {received} of {expected} messages in time\n\
                 Postfix's maillog ends with:\n{maillog}"
            ),
        }
    }
}

impl std::error::Error for PostfixError {}

fn file_err(p: &Path) -> impl FnOnce(std::io::Error) -> PostfixError + '_ {
    move |e| PostfixError::File(p.to_path_buf(), e)
}

/// The programs, found in `PATH`.
struct Tools {
    postfix: PathBuf,
    postconf: PathBuf,
    source: PathBuf,
    sink: PathBuf,
}

/// `name` in `PATH`, executable.
fn which(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

impl Tools {
    fn find() -> Result<Tools, PostfixError> {
        let found: Vec<Option<PathBuf>> = PROGRAMS.iter().map(|p| which(p)).collect();
        let missing: Vec<&'static str> = PROGRAMS
            .iter()
            .zip(&found)
            .filter(|(_, f)| f.is_none())
            .map(|(p, _)| *p)
            .collect();
        match found.as_slice() {
            [Some(postfix), Some(postconf), Some(source), Some(sink)] => Ok(Tools {
                postfix: postfix.clone(),
                postconf: postconf.clone(),
                source: source.clone(),
                sink: sink.clone(),
            }),
            _ => Err(PostfixError::Missing(missing)),
        }
    }

    /// `mail_version` of the installed Postfix.
    fn version(&self) -> String {
        std::process::Command::new(&self.postconf)
            .args(["-d", "-h", "mail_version"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_else(|| "unknown".into())
    }
}

/// Whether this process runs as root (effective uid 0, from /proc: no libc
/// call needed).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// Every folder from the root down to `dir` must be searchable by
/// `mail_owner`, who is none of their owners: the first that is not.
fn unreachable_ancestor(dir: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::fs::canonicalize(dir).ok()?;
    dir.ancestors()
        .find(|a| std::fs::metadata(a).is_ok_and(|m| m.permissions().mode() & 0o001 == 0))
        .map(Path::to_path_buf)
}

/// `main.cf` of an instance in `dir` relaying everything to the sink: stock
/// settings but for the folders, loopback, and no TLS (the figure compared is
/// a plain relay).
fn main_cf(dir: &Path, sink_port: u16) -> String {
    let d = dir.display();
    format!(
        "# pecd bench --against-postfix: a private instance, removed after the run.\n\
         compatibility_level = 3.6\n\
         queue_directory = {d}/queue\n\
         data_directory = {d}/data\n\
         mail_owner = {MAIL_OWNER}\n\
         setgid_group = {SETGID_GROUP}\n\
         myhostname = postfix.bench.invalid\n\
         mydestination =\n\
         relayhost = [127.0.0.1]:{sink_port}\n\
         mynetworks = 127.0.0.0/8\n\
         inet_interfaces = 127.0.0.1\n\
         inet_protocols = ipv4\n\
         smtpd_relay_restrictions = permit_mynetworks, reject\n\
         alias_maps =\n\
         alias_database =\n\
         local_recipient_maps =\n\
         maillog_file = {d}/maillog\n\
         maillog_file_prefixes = {d}\n\
         smtp_tls_security_level = none\n\
         smtpd_tls_security_level = none\n"
    )
}

/// `master.cf`: Debian's services for relaying, with the SMTP server on
/// 127.0.0.1:`smtpd_port` and no chroot (Debian's chroot needs copies of
/// /etc files in the queue folder, which its init script makes).
fn master_cf(smtpd_port: u16) -> String {
    format!(
        "127.0.0.1:{smtpd_port} inet n - n - - smtpd\n\
         pickup     unix  n - n 60    1 pickup\n\
         cleanup    unix  n - n -     0 cleanup\n\
         qmgr       unix  n - n 300   1 qmgr\n\
         tlsmgr     unix  - - n 1000? 1 tlsmgr\n\
         rewrite    unix  - - n -     - trivial-rewrite\n\
         bounce     unix  - - n -     0 bounce\n\
         defer      unix  - - n -     0 bounce\n\
         trace      unix  - - n -     0 bounce\n\
         verify     unix  - - n -     1 verify\n\
         flush      unix  n - n 1000? 0 flush\n\
         proxymap   unix  - - n -     - proxymap\n\
         proxywrite unix  - - n -     1 proxymap\n\
         smtp       unix  - - n -     - smtp\n\
         relay      unix  - - n -     - smtp\n\
         showq      unix  n - n -     - showq\n\
         error      unix  - - n -     - error\n\
         retry      unix  - - n -     - error\n\
         discard    unix  - - n -     - discard\n\
         anvil      unix  - - n -     1 anvil\n\
         scache     unix  - - n -     1 scache\n\
         postlog    unix-dgram n - n - 1 postlogd\n"
    )
}

/// A private Postfix instance: its folder, and whether its master may run.
/// Dropped, it is stopped and its folder removed, whatever happened.
struct Instance {
    dir: PathBuf,
    postfix: PathBuf,
    smtpd_port: u16,
    sink_port: u16,
    started: bool,
}

impl Instance {
    /// A fresh folder in the temp dir with the configuration written.
    fn create(tools: &Tools) -> Result<Instance, PostfixError> {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!(
            "{DIR_PREFIX}{}-{}",
            std::process::id(),
            crate::store::spool::unique_suffix()
        ));
        std::fs::create_dir(&dir).map_err(file_err(&dir))?;
        let port = |what| crate::lab::free_port().map_err(|e| PostfixError::NotListening(what, e));
        let inst = Instance {
            postfix: tools.postfix.clone(),
            smtpd_port: port("a free port for Postfix")?,
            sink_port: port("a free port for smtp-sink")?,
            started: false,
            dir,
        };
        // pecd's umask is 077; Postfix's own users must read the
        // configuration and reach the queue (root owns both, as Postfix wants).
        let open = |p: &Path, mode: u32| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).map_err(file_err(p))
        };
        open(&inst.dir, 0o755)?;
        for sub in ["conf", "queue"] {
            let p = inst.dir.join(sub);
            std::fs::create_dir(&p).map_err(file_err(&p))?;
            open(&p, 0o755)?;
        }
        for (name, text) in [
            ("main.cf", main_cf(&inst.dir, inst.sink_port)),
            ("master.cf", master_cf(inst.smtpd_port)),
        ] {
            let p = inst.conf().join(name);
            std::fs::write(&p, text).map_err(file_err(&p))?;
            open(&p, 0o644)?;
        }
        Ok(inst)
    }

    fn conf(&self) -> PathBuf {
        self.dir.join("conf")
    }

    /// `postfix -c DIR start`, waited for in this thread: an interruption
    /// cannot come between the master starting and `started` being known.
    fn start(&mut self) -> Result<(), PostfixError> {
        self.started = true;
        let out = std::process::Command::new(&self.postfix)
            .arg("-c")
            .arg(self.conf())
            .arg("start")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| PostfixError::Spawn("postfix start", e))?;
        if out.status.success() {
            return Ok(());
        }
        Err(self.failed("postfix start", &out.stderr))
    }

    fn failed(&self, what: &str, output: &[u8]) -> PostfixError {
        PostfixError::Failed {
            what: what.to_string(),
            output: String::from_utf8_lossy(output).into_owned(),
            maillog: self.maillog_tail(),
        }
    }

    /// The last lines of the instance's maillog.
    fn maillog_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("maillog")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }
}

/// Stop the master of the instance configured in `conf` (`postfix stop`
/// waits for it, and kills it after 5 s), quietly.
fn stop_postfix(postfix: &Path, conf: &Path) {
    let _ = std::process::Command::new(postfix)
        .arg("-c")
        .arg(conf)
        .arg("stop")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

impl Drop for Instance {
    fn drop(&mut self) {
        if self.started {
            stop_postfix(&self.postfix, &self.conf());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Stop and remove the instances of earlier sittings whose process is gone
/// (killed before it could clean up): each would hold a master and a folder.
fn sweep_stale(postfix: &Path) {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(DIR_PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if Path::new("/proc").join(pid.to_string()).exists() {
            continue;
        }
        let dir = e.path();
        kill_orphan_sink(&dir);
        if dir.join("queue/pid/master.pid").exists() {
            stop_postfix(postfix, &dir.join("conf"));
        }
        if std::fs::remove_dir_all(&dir).is_ok() {
            eprintln!(
                "bench: removed {} (a Postfix instance whose pecd is gone)",
                dir.display()
            );
        }
    }
}

/// Kill the `smtp-sink` recorded in a stale instance's folder, if that pid
/// is still an `smtp-sink` on the recorded port (not a reused pid).
fn kill_orphan_sink(dir: &Path) {
    let Ok(text) = std::fs::read_to_string(dir.join(SINK_PID_FILE)) else {
        return;
    };
    let mut words = text.split_whitespace();
    let (Some(Ok(pid)), Some(Ok(port))) = (
        words.next().map(str::parse::<u32>),
        words.next().map(str::parse::<u16>),
    ) else {
        return;
    };
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return;
    };
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let ours = args.first().is_some_and(|a| a.ends_with(b"smtp-sink"))
        && args.contains(&format!("127.0.0.1:{port}").as_bytes());
    if pid > 1 && ours {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Connect to `port` until it answers (up to 10 s).
async fn wait_listening(
    what: &'static str,
    port: u16,
) -> Result<tokio::net::TcpStream, PostfixError> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            Ok(s) => return Ok(s),
            Err(e) if Instant::now() > deadline => return Err(PostfixError::NotListening(what, e)),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// Postfix's SMTP server greets with `220` (and says goodbye).
async fn greets(port: u16) -> Result<(), PostfixError> {
    let not = |e| PostfixError::NotListening("Postfix's smtpd", e);
    let tcp = wait_listening("Postfix's smtpd", port).await?;
    let mut r = tokio::io::BufReader::new(tcp);
    let mut line = String::new();
    tokio::time::timeout(Duration::from_secs(10), r.read_line(&mut line))
        .await
        .map_err(|_| not(std::io::ErrorKind::TimedOut.into()))?
        .map_err(not)?;
    if !line.starts_with("220") {
        return Err(not(std::io::Error::other(format!("greeting {line:?}"))));
    }
    let _ = r.get_mut().write_all(b"QUIT\r\n").await;
    Ok(())
}

/// The last `mesg=N` of `smtp-sink -c`'s running counters
/// (`sess=2 quit=2 mesg=200\r` after each event).
fn last_mesg_count(text: &str) -> Option<u64> {
    text.rsplit(['\r', '\n']).find_map(|line| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix("mesg="))
            .and_then(|n| n.parse().ok())
    })
}

/// What one Postfix run measured.
#[derive(Debug, serde::Serialize)]
pub struct PostfixRun {
    /// Messages sent (`smtp-source -m`).
    pub messages: usize,
    /// Concurrent sessions (`smtp-source -s`, each kept for its messages: `-d`).
    pub concurrency: usize,
    /// Payload size (`smtp-source -l`, bytes).
    pub size: usize,
    /// From the first connection to the last message at `smtp-sink` (s).
    pub seconds: f64,
    /// Messages relayed per second, counted at `smtp-sink`.
    pub messages_per_second: f64,
    /// From the first connection to `smtp-source`'s last `250` (s).
    pub submission_seconds: f64,
}

/// One run: a fresh instance, `n` messages from `conc` sessions of
/// `smtp-source` through it to `smtp-sink`.
async fn run_once(
    tools: &Tools,
    n: usize,
    conc: usize,
    size: usize,
    round: usize,
) -> Result<PostfixRun, PostfixError> {
    let mut inst = Instance::create(tools)?;
    // The sink first, as the next hop of a real relay is up before it.
    let mut sink = tokio::process::Command::new(&tools.sink)
        .args(["-c", "-u", MAIL_OWNER, "-M", &n.to_string()])
        .arg(format!("127.0.0.1:{}", inst.sink_port))
        .arg("1000")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| PostfixError::Spawn("smtp-sink", e))?;
    let counters = sink.stdout.take().map(|mut out| {
        tokio::spawn(async move {
            let mut text = String::new();
            let _ = out.read_to_string(&mut text).await;
            text
        })
    });
    let sink_err = sink.stderr.take().map(|mut err| {
        tokio::spawn(async move {
            let mut text = String::new();
            let _ = err.read_to_string(&mut text).await;
            text
        })
    });
    if let Some(pid) = sink.id() {
        let p = inst.dir.join(SINK_PID_FILE);
        std::fs::write(&p, format!("{pid} {}\n", inst.sink_port)).map_err(file_err(&p))?;
    }
    drop(wait_listening("smtp-sink", inst.sink_port).await?);
    inst.start()?;
    greets(inst.smtpd_port).await?;
    eprintln!(
        "bench: Postfix run {round} started in {} (smtpd 127.0.0.1:{}, smtp-sink 127.0.0.1:{})",
        inst.dir.display(),
        inst.smtpd_port,
        inst.sink_port
    );
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs(120 + n as u64 / 5);
    let source = tokio::process::Command::new(&tools.source)
        .arg("-d")
        .args(["-s", &conc.to_string(), "-m", &n.to_string()])
        .args(["-l", &size.to_string()])
        .args(["-f", "bench@source.invalid", "-t", "sink@relay.invalid"])
        .arg(format!("127.0.0.1:{}", inst.smtpd_port))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| PostfixError::Spawn("smtp-source", e))?;
    let out = tokio::time::timeout_at(deadline.into(), source.wait_with_output()).await;
    let submission_seconds = t0.elapsed().as_secs_f64();
    match out {
        Ok(Ok(o)) if o.status.success() => {}
        Ok(Ok(o)) => return Err(inst.failed("smtp-source", &o.stderr)),
        Ok(Err(e)) => return Err(PostfixError::Spawn("smtp-source", e)),
        Err(_) => return Err(inst.failed("smtp-source", b"no end in time")),
    }
    // `-M n`: the sink exits on receiving the n-th message.
    let waited = tokio::time::timeout_at(deadline.into(), sink.wait()).await;
    let seconds = t0.elapsed().as_secs_f64();
    if waited.is_err() {
        let _ = sink.start_kill();
    }
    let text = match counters {
        Some(t) => t.await.unwrap_or_default(),
        None => String::new(),
    };
    let received = last_mesg_count(&text).unwrap_or(0);
    match waited {
        Ok(Ok(status)) if status.success() && received >= n as u64 => {}
        Ok(Ok(_)) | Ok(Err(_)) => {
            let err = match sink_err {
                Some(t) => t.await.unwrap_or_default(),
                None => String::new(),
            };
            return Err(inst.failed(
                "smtp-sink",
                format!("{err} (received {received} of {n})").as_bytes(),
            ));
        }
        Err(_) => {
            return Err(PostfixError::Timeout {
                received,
                expected: n,
                maillog: inst.maillog_tail(),
            })
        }
    }
    drop(inst);
    Ok(PostfixRun {
        messages: n,
        concurrency: conc,
        size,
        seconds,
        messages_per_second: n as f64 / seconds,
        submission_seconds,
    })
}

/// The machine a sitting ran on, as docs/performance.md records it.
#[derive(Debug, serde::Serialize)]
pub struct Machine {
    /// When the sitting began (UTC).
    pub started: String,
    /// CPU cores available.
    pub cores: usize,
    /// CPU model (/proc/cpuinfo).
    pub cpu: String,
    /// Memory (MiB).
    pub memory_mib: u64,
    /// Kernel release.
    pub kernel: String,
    /// Postfix's `mail_version`.
    pub postfix_version: String,
    /// pecd's version.
    pub pecd_version: String,
    /// Whether pecd is a debug build (its figures are not the product's).
    pub debug_build: bool,
}

impl Machine {
    fn here(postfix_version: String) -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        Machine {
            started: crate::pec::clock::iso_utc(crate::cmd::now_unix_ms()),
            cores: std::thread::available_parallelism()
                .map(|c| c.get())
                .unwrap_or(1),
            cpu: cpuinfo
                .lines()
                .find_map(|l| l.strip_prefix("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
                .unwrap_or_else(|| "unknown".into()),
            memory_mib: meminfo
                .lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|l| l.split_whitespace().next())
                .and_then(|kb| kb.parse::<u64>().ok())
                .map_or(0, |kb| kb / 1024),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|k| k.trim().to_string())
                .unwrap_or_else(|_| "unknown".into()),
            postfix_version,
            pecd_version: env!("CARGO_PKG_VERSION").into(),
            debug_build: cfg!(debug_assertions),
        }
    }
}

/// A sitting: both, run after run, and the ratio of the medians.
#[derive(Debug, serde::Serialize)]
pub struct Sitting {
    /// Messages per run.
    pub messages: usize,
    /// Sessions.
    pub concurrency: usize,
    /// Body size (bytes).
    pub size: usize,
    /// Runs of each.
    pub runs: usize,
    /// Seconds between runs.
    pub pause_seconds: u64,
    /// Where and when.
    pub machine: Machine,
    /// Postfix's runs, in order (each before pecd's of the same round).
    pub postfix: Vec<PostfixRun>,
    /// pecd's runs, in order.
    pub pecd: Vec<Report>,
    /// Median of Postfix's messages per second.
    pub postfix_median_messages_per_second: f64,
    /// Median of pecd's PEC per second.
    pub pecd_median_messages_per_second: f64,
    /// pecd's median / Postfix's median.
    pub ratio: f64,
}

/// The median (mean of the middle two of an even count; 0 when empty).
fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

/// `pecd bench --against-postfix`.
pub async fn run(a: &BenchArgs) -> AdminResult {
    let tools = Tools::find()?;
    if !is_root() {
        return Err(PostfixError::NotRoot.into());
    }
    if let Some(p) = unreachable_ancestor(&std::env::temp_dir()) {
        return Err(PostfixError::Unreachable(p).into());
    }
    sweep_stale(&tools.postfix);
    let n = a.messages.max(1);
    let conc = a.concurrency.clamp(1, n);
    let runs = a.runs.max(1);
    let machine = Machine::here(tools.version());
    if !a.json {
        println!(
            "pecd bench --against-postfix: {n} messages of {} B, {conc} sessions, {runs} run(s) of each, alternated",
            a.size
        );
        println!(
            "  machine: {} cores, {}, {} MiB, Linux {}, Postfix {}, pecd {}{}, started {}",
            machine.cores,
            machine.cpu,
            machine.memory_mib,
            machine.kernel,
            machine.postfix_version,
            machine.pecd_version,
            if machine.debug_build {
                " (DEBUG build)"
            } else {
                ""
            },
            machine.started
        );
    }
    let mut postfix = Vec::new();
    let mut pecd = Vec::new();
    for round in 1..=runs {
        if round > 1 {
            super::bench::pause(a.pause).await;
        }
        let p = run_once(&tools, n, conc, a.size, round).await?;
        if !a.json {
            println!(
                "  run {round}  Postfix {:>8.1} msg/s  ({:.2} s; smtp-source done in {:.2} s)",
                p.messages_per_second, p.seconds, p.submission_seconds
            );
        }
        postfix.push(p);
        super::bench::pause(a.pause).await;
        eprintln!("bench: pecd run {round} started");
        let r = super::bench::bench(a, 0.0).await?;
        if !a.json {
            println!(
                "  run {round}  pecd    {:>8.1} PEC/s  ({:.2} s; {} accepted; CPU {:.2} ms/PEC)",
                r.messages_per_second, r.seconds, r.accepted, r.cpu_ms_per_message
            );
        }
        pecd.push(r);
    }
    let pm = median(postfix.iter().map(|p| p.messages_per_second).collect());
    let qm = median(pecd.iter().map(|r| r.messages_per_second).collect());
    let ratio = if pm > 0.0 { qm / pm } else { 0.0 };
    let sitting = Sitting {
        messages: n,
        concurrency: conc,
        size: a.size,
        runs,
        pause_seconds: a.pause,
        machine,
        postfix,
        pecd,
        postfix_median_messages_per_second: pm,
        pecd_median_messages_per_second: qm,
        ratio,
    };
    if a.json {
        println!("{}", serde_json::to_string(&sitting)?);
    } else {
        println!(
            "  median  pecd {qm:.1} PEC/s, Postfix {pm:.1} msg/s: pecd/Postfix = {ratio:.2} (issue 23: at least {TARGET_RATIO})"
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sinks_last_counter_is_read() {
        let text = "sess=1 quit=0 mesg=1\rsess=1 quit=0 mesg=2\rsess=2 quit=2 mesg=2\r";
        assert_eq!(last_mesg_count(text), Some(2));
        assert_eq!(last_mesg_count("sess=1 quit=1 mesg=0\r\n"), Some(0));
        assert_eq!(last_mesg_count(""), None);
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(vec![]), 0.0);
    }

    #[test]
    fn the_instance_relays_everything_to_the_sink_without_tls() {
        let m = main_cf(Path::new("/tmp/x"), 4242);
        assert!(m.contains("relayhost = [127.0.0.1]:4242\n"), "{m}");
        assert!(m.contains("queue_directory = /tmp/x/queue\n"), "{m}");
        assert!(m.contains("smtp_tls_security_level = none\n"), "{m}");
        assert!(master_cf(2525).starts_with("127.0.0.1:2525 inet n - n - - smtpd\n"));
    }
}
