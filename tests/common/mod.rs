//! Test harness: real `pecd` processes on 127.0.0.1 in temp dirs, a throwaway
//! CA made at test time, a real SMTP client (lettre), and the `openssl` and
//! `xmllint` CLIs as independent second opinions.
#![allow(dead_code)]

pub mod pg;
pub mod totp;
pub mod web;

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lettre::address::Envelope;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

pub const PASSWORD: &str = "correct horse battery staple";

/// Path of the pecd binary cargo built for these tests. `PECD_BIN` overrides
/// it: with a target dir shared by several worktrees, `target/debug/pecd` is
/// whichever worktree linked last, while `deps/pecd-<hash>` is this one's.
pub fn pecd_bin() -> PathBuf {
    match std::env::var_os("PECD_BIN") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_BIN_EXE_pecd")),
    }
}

/// Reference material the tests need, copied byte for byte into the
/// repository (a user's clone has nothing beside it).
pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Send a signal (`TERM`, `HUP`, …) to a process, through kill(1).
pub fn signal(pid: u32, name: &str) {
    let st = Command::new("kill")
        .args(["-s", name, &pid.to_string()])
        .status()
        .expect("kill(1)");
    assert!(st.success(), "kill -s {name} {pid}");
}

/// A free loopback port (bound then released).
///
/// Ports come from below the kernel's ephemeral range (32768+), so outgoing
/// connections made meanwhile cannot take them, and from a counter, so two
/// providers of the test binary (tests/it.rs: every test file) never get the
/// same one. (Handing out `bind(0)` ports instead lost races under load: the
/// port was released for pecd to bind and a client socket took it first.)
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let _ = NEXT.compare_exchange(
        0,
        20_000 + std::process::id() % 10_000,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    loop {
        let p = 20_000 + (NEXT.fetch_add(1, Ordering::SeqCst) - 20_000) % 12_000;
        if TcpListener::bind(("127.0.0.1", p as u16)).is_ok() {
            return p as u16;
        }
    }
}

/// What `pecd serve` logs once it is fully started.
const RUNNING: &str = "pecd provider running";

/// A throwaway CA for one test.
pub struct TestCa {
    pub ca: pecd::certs::CertKey,
    pub dir: tempfile::TempDir,
}

impl TestCa {
    pub fn new() -> TestCa {
        let dir = tempfile::tempdir().unwrap();
        let ca = pecd::certs::generate_ca("pecd test CA").unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.cert_pem()).unwrap();
        TestCa { ca, dir }
    }
    pub fn pem_path(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }
    pub fn pem(&self) -> Vec<u8> {
        self.ca.cert_pem()
    }
}

/// Configuration of one test provider before it starts.
pub struct ProviderSpec {
    pub name: String,
    pub domain: String,
    pub users: Vec<String>,
    pub extra_config: String,
    /// Extra keys of the `[web]` table (its `listen` is set by the harness).
    pub web_config: String,
}

impl ProviderSpec {
    pub fn new(name: &str, domain: &str, users: &[&str]) -> ProviderSpec {
        ProviderSpec {
            name: name.into(),
            domain: domain.into(),
            users: users.iter().map(|u| format!("{u}@{domain}")).collect(),
            extra_config: String::new(),
            web_config: String::new(),
        }
    }
}

/// A provider's files and ports, started or not.
pub struct TestProvider {
    pub name: String,
    pub domain: String,
    pub dir: tempfile::TempDir,
    pub submission: u16,
    pub submissions: u16,
    pub inbound: u16,
    pub imap: u16,
    pub imaps: u16,
    pub pop3: u16,
    pub pop3s: u16,
    pub admin: u16,
    pub web: u16,
    pub ca_pem: PathBuf,
    pub child: Option<Child>,
    pub users: Vec<String>,
}

impl TestProvider {
    /// Create the provider's folder: certificates from `ca`, config, users.
    /// `index_entries` is the TOML of the `[[provider]]` entries of the index.
    pub fn prepare(ca: &TestCa, spec: &ProviderSpec) -> TestProvider {
        let dir = tempfile::tempdir().unwrap();
        // The same provider folder as the in-process lab (`pecd demo`, `bench`).
        let certs = dir.path().join("certs");
        pecd::layout::write_dev_certs(&certs, &ca.ca, &spec.name, &spec.domain).unwrap();
        let p = TestProvider {
            name: spec.name.clone(),
            domain: spec.domain.clone(),
            submission: free_port(),
            submissions: free_port(),
            inbound: free_port(),
            imap: free_port(),
            imaps: free_port(),
            pop3: free_port(),
            pop3s: free_port(),
            admin: free_port(),
            web: free_port(),
            ca_pem: certs.join("ca.pem"),
            child: None,
            users: spec.users.clone(),
            dir,
        };
        p.write_config(&format!("{}\n{}", spec.web_config, spec.extra_config));
        std::fs::write(p.dir.path().join("index.toml"), p.index_entry()).unwrap();
        for u in &spec.users {
            p.add_user(u, PASSWORD);
        }
        p
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn config_path(&self) -> PathBuf {
        self.path().join("pecd.toml")
    }

    fn write_config(&self, extra: &str) {
        let text = format!(
            r#"[provider]
name = "{name}"
domains = ["{domain}"]
hostname = "mx.{domain}"
data_dir = "data"

[signing]
certificate = "certs/signing.pem"
key = "certs/signing.key"
chain = ["certs/ca.pem"]
generate_if_missing = false

[tls]
certificate = "certs/tls.pem"
key = "certs/tls.key"

[listen]
submission = "127.0.0.1:{sub}"
submissions = "127.0.0.1:{subs}"
inbound = "127.0.0.1:{inb}"
imap = "127.0.0.1:{imap}"
imaps = "127.0.0.1:{imaps}"
pop3 = "127.0.0.1:{pop3}"
pop3s = "127.0.0.1:{pop3s}"

[admin]
listen = "127.0.0.1:{admin}"

[trust]
ca = ["certs/ca.pem"]
index = "index.toml"
index_check_interval = "200ms"

[web]
listen = "127.0.0.1:{web}"
{extra}
{log}"#,
            // `serve` wants the choice said; a test with its own [log] says it there.
            log = if extra.lines().any(|l| l.trim() == "[log]") {
                ""
            } else {
                "\n[log]\ntsa_url = \"none\"\n"
            },
            name = self.name,
            domain = self.domain,
            sub = self.submission,
            subs = self.submissions,
            inb = self.inbound,
            imap = self.imap,
            imaps = self.imaps,
            pop3 = self.pop3,
            pop3s = self.pop3s,
            admin = self.admin,
            web = self.web,
        );
        std::fs::write(self.config_path(), text).unwrap();
    }

    /// Append TOML to the config (e.g. `[[route]]` tables).
    pub fn append_config(&self, extra: &str) {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(self.config_path())
            .unwrap();
        writeln!(f, "\n{extra}").unwrap();
    }

    /// This provider's `[[provider]]` index entry (certificate by absolute path).
    pub fn index_entry(&self) -> String {
        pecd::layout::index_entry(
            &self.name,
            &self.domain,
            &self.path().join("certs/signing.pem"),
        )
    }

    /// Replace the index with these entries.
    pub fn write_index(&self, entries: &str) {
        let tmp = self.path().join("index.toml.tmp");
        std::fs::write(&tmp, entries).unwrap();
        std::fs::rename(&tmp, self.path().join("index.toml")).unwrap();
    }

    /// Route mail for `other`'s domain to its inbound port.
    pub fn route_to(&self, other: &TestProvider) {
        self.append_config(&pecd::layout::route_entry(
            &other.domain,
            &format!("127.0.0.1:{}", other.inbound),
        ));
    }

    /// Run `pecd --config … ARGS` to completion.
    pub fn cli(&self, args: &[&str], stdin: &str) -> std::process::Output {
        let mut c = Command::new(pecd_bin())
            .arg("--config")
            .arg(self.config_path())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // A command that refuses its arguments may exit before reading.
        let _ = c.stdin.take().unwrap().write_all(stdin.as_bytes());
        c.wait_with_output().unwrap()
    }

    pub fn add_user(&self, address: &str, password: &str) {
        let out = self.cli(
            &["user", "add", address, "--password-stdin"],
            &format!("{password}\n"),
        );
        assert!(
            out.status.success(),
            "user add: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Start `pecd serve` and wait until it accepts connections.
    pub fn start(&mut self) {
        self.start_env(&[]);
    }

    /// [`TestProvider::start`] with extra environment variables (e.g.
    /// libfaketime's, to run the daemon on another day).
    pub fn start_env(&mut self, env: &[(&str, &str)]) {
        assert!(self.child.is_none());
        let runs_before = self.log().matches(RUNNING).count();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path().join("pecd.log"))
            .unwrap();
        let child = Command::new(pecd_bin())
            .arg("--config")
            .arg(self.config_path())
            .arg("serve")
            .env("RUST_LOG", "info,pecd=debug")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        for port in [self.submission, self.inbound, self.imap, self.web] {
            self.starting(deadline, |_| {
                std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            });
        }
        // The ports listen before the start is over: this line comes once
        // jobs left by a crash are dealt with and the scheduler runs.
        self.starting(deadline, |p| p.log().matches(RUNNING).count() > runs_before);
    }

    /// Wait until `up`, failing if pecd exits or `deadline` passes.
    fn starting(&mut self, deadline: Instant, up: impl Fn(&TestProvider) -> bool) {
        while !up(self) {
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("pecd exited early ({st}):\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "pecd did not start:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL (for crash tests).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        signal(c.id(), "TERM");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(st) = c.try_wait().unwrap() {
                return Some(st);
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                return c.wait().ok();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.path().join("pecd.log")).unwrap_or_default()
    }

    /// The Maildir `new/` + `cur/` files of a user, oldest first.
    pub fn mailbox(&self, address: &str) -> Vec<PathBuf> {
        let (local, domain) = address.rsplit_once('@').unwrap();
        let base = self.path().join("data/mail").join(domain).join(local);
        let mut files: Vec<(std::time::SystemTime, PathBuf)> = Vec::new();
        for sub in ["new", "cur"] {
            if let Ok(rd) = std::fs::read_dir(base.join(sub)) {
                for e in rd.flatten() {
                    let t = e.metadata().and_then(|m| m.modified()).unwrap();
                    files.push((t, e.path()));
                }
            }
        }
        files.sort();
        files.into_iter().map(|(_, p)| p).collect()
    }

    /// Messages in a user's mailbox whose header `name` has `value` (case-insensitive).
    pub fn messages_with(&self, address: &str, name: &str, value: &str) -> Vec<Vec<u8>> {
        self.mailbox(address)
            .into_iter()
            .map(|p| std::fs::read(p).unwrap())
            .filter(|m| header(m, name).is_some_and(|v| v.eq_ignore_ascii_case(value)))
            .collect()
    }

    /// Wait until `f` returns Some, or panic with the provider log.
    pub fn wait_for<T>(&self, what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(v) = f() {
                return v;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out waiting for {what}\n--- {} log ---\n{}",
                    self.name,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Wait until a user has `n` messages with header `name: value`.
    pub fn wait_messages(&self, address: &str, name: &str, value: &str, n: usize) -> Vec<Vec<u8>> {
        self.wait_for(&format!("{n} x {name}: {value} for {address}"), 30, || {
            let m = self.messages_with(address, name, value);
            (m.len() >= n).then_some(m)
        })
    }

    /// `pecd … ARGS` whose output is one JSON object per line, parsed.
    pub fn cli_json(&self, args: &[&str]) -> Vec<serde_json::Value> {
        let out = self.cli(args, "");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// `pecd log --json` parsed.
    pub fn log_events(&self, args: &[&str]) -> Vec<serde_json::Value> {
        let mut a = vec!["log", "--json"];
        a.extend_from_slice(args);
        self.cli_json(&a)
    }

    /// A lettre client for this provider's submission port.
    pub fn smtp(&self, user: &str, implicit_tls: bool) -> AsyncSmtpTransport<Tokio1Executor> {
        let ca = Certificate::from_pem(&std::fs::read(&self.ca_pem).unwrap()).unwrap();
        let params = TlsParameters::builder("127.0.0.1".into())
            .add_root_certificate(ca)
            .build_native()
            .unwrap();
        let (port, tls) = if implicit_tls {
            (self.submissions, Tls::Wrapper(params))
        } else {
            (self.submission, Tls::Required(params))
        };
        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
            .port(port)
            .tls(tls)
            .credentials(Credentials::new(user.into(), PASSWORD.into()))
            .timeout(Some(Duration::from_secs(30)))
            .build()
    }

    /// Submit raw bytes; returns the server's reply text or the error.
    pub async fn submit_raw(
        &self,
        user: &str,
        rcpts: &[&str],
        raw: &[u8],
        implicit_tls: bool,
    ) -> Result<String, lettre::transport::smtp::Error> {
        let t = self.smtp(user, implicit_tls);
        let env = Envelope::new(
            Some(user.parse::<Address>().unwrap()),
            rcpts
                .iter()
                .map(|r| r.parse::<Address>().unwrap())
                .collect(),
        )
        .unwrap();
        t.send_raw(&env, raw)
            .await
            .map(|r| r.message().collect::<Vec<_>>().join(" "))
    }

    pub fn addr(&self, port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }
}

impl Drop for TestProvider {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A simple user message with CRLF line endings.
pub fn message(
    from: &str,
    to: &[&str],
    cc: &[&str],
    subject: &str,
    extra: &str,
    body: &str,
) -> Vec<u8> {
    let mut m = format!("From: {from}\r\nTo: {}\r\n", to.join(", "));
    if !cc.is_empty() {
        m.push_str(&format!("Cc: {}\r\n", cc.join(", ")));
    }
    let id = pecd::store::spool::unique_suffix();
    m.push_str(&format!(
        "Subject: {subject}\r\nDate: Mon, 23 Nov 2026 10:00:00 +0100\r\nMessage-ID: <{id}@client.test>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n{extra}\r\n{body}\r\n"
    ));
    m.into_bytes()
}

/// First value of a top-level header (unfolded), case-insensitive.
pub fn header(msg: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(msg);
    let head = text.split("\r\n\r\n").next().unwrap_or("");
    let head = head.split("\n\n").next().unwrap_or("");
    let mut cur: Option<String> = None;
    for line in head.lines() {
        let line = line.trim_end_matches('\r');
        if line.starts_with(' ') || line.starts_with('\t') {
            if let Some(c) = cur.as_mut() {
                c.push(' ');
                c.push_str(line.trim());
            }
            continue;
        }
        if let Some(c) = cur.take() {
            return Some(c);
        }
        if let Some((n, v)) = line.split_once(':') {
            if n.trim().eq_ignore_ascii_case(name) {
                cur = Some(v.trim().to_string());
            }
        }
    }
    cur
}

/// `openssl smime -verify -CAfile ca` on a message: the independent second opinion.
pub fn openssl_verify(msg: &[u8], ca_pem: &Path) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("m.eml");
    std::fs::write(&f, msg).unwrap();
    let out = Command::new("openssl")
        .args(["smime", "-verify", "-CAfile"])
        .arg(ca_pem)
        .arg("-in")
        .arg(&f)
        .args(["-out", "/dev/null"])
        .output()
        .expect("openssl CLI");
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// The decoded `daticert.xml` of a provider message (via pecd's reader).
pub fn daticert(msg: &[u8]) -> pecd::pec::daticert::Daticert {
    let m = pecd::pec::classify::classify(msg);
    m.daticert.expect("message has a daticert.xml")
}

/// Validate XML against `tests/fixtures/daticert.dtd` with xmllint.
pub fn xmllint_valid(xml: &str) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("daticert.xml");
    std::fs::write(&f, xml).unwrap();
    let out = Command::new("xmllint")
        .args(["--noout", "--dtdvalid"])
        .arg(fixtures_dir().join("daticert.dtd"))
        .arg(&f)
        .output()
        .expect("xmllint (Debian package libxml2-utils)");
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Two providers on loopback that know and route to each other.
pub fn two_providers(
    ca: &TestCa,
    a_users: &[&str],
    b_users: &[&str],
) -> (TestProvider, TestProvider) {
    let a = TestProvider::prepare(
        ca,
        &ProviderSpec::new("Alpha PEC S.p.A.", "pec.alpha.test", a_users),
    );
    let b = TestProvider::prepare(
        ca,
        &ProviderSpec::new("Beta PEC S.p.A.", "pec.beta.test", b_users),
    );
    let index = format!("{}{}", a.index_entry(), b.index_entry());
    a.write_index(&index);
    b.write_index(&index);
    a.route_to(&b);
    b.route_to(&a);
    (a, b)
}

// ---- Added for the relay / reception / verify tests (t-relay) ----

/// A plain (no TLS) SMTP client speaking raw lines, for the inbound port.
pub struct RawSmtp {
    reader: std::io::BufReader<std::net::TcpStream>,
    writer: std::net::TcpStream,
}

impl RawSmtp {
    /// Connect and read the greeting (must be 220).
    pub fn connect(port: u16) -> RawSmtp {
        let s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut c = RawSmtp {
            reader: std::io::BufReader::new(s.try_clone().unwrap()),
            writer: s,
        };
        let (code, text) = c.reply();
        assert_eq!(code, 220, "greeting: {text}");
        c
    }

    /// Read one (possibly multi-line) reply.
    pub fn reply(&mut self) -> (u16, String) {
        use std::io::BufRead;
        let mut all = String::new();
        loop {
            let mut line = String::new();
            let n = self.reader.read_line(&mut line).unwrap();
            assert!(n > 0, "connection closed; so far: {all}");
            all.push_str(&line);
            if line.len() < 4 || line.as_bytes()[3] != b'-' {
                return (line[..3].parse().unwrap(), all);
            }
        }
    }

    /// Send one command line and read the reply.
    pub fn cmd(&mut self, line: &str) -> (u16, String) {
        self.writer
            .write_all(format!("{line}\r\n").as_bytes())
            .unwrap();
        self.reply()
    }

    /// Write bytes exactly as given (no dot-stuffing) and read one reply.
    pub fn raw(&mut self, bytes: &[u8]) -> (u16, String) {
        self.writer.write_all(bytes).unwrap();
        self.reply()
    }

    /// Write bytes exactly as given, without waiting for a reply.
    pub fn send_bytes(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).unwrap();
    }

    /// `DATA`, the dot-stuffed message, `.`; returns the final reply.
    pub fn data(&mut self, msg: &[u8]) -> (u16, String) {
        let (code, text) = self.cmd("DATA");
        assert_eq!(code, 354, "DATA: {text}");
        let mut wire = Vec::with_capacity(msg.len() + 64);
        for line in msg.split_inclusive(|&b| b == b'\n') {
            if line.starts_with(b".") {
                wire.push(b'.');
            }
            wire.extend_from_slice(line);
        }
        if !wire.ends_with(b"\r\n") {
            wire.extend_from_slice(b"\r\n");
        }
        wire.extend_from_slice(b".\r\n");
        self.writer.write_all(&wire).unwrap();
        self.reply()
    }
}

/// Deliver `msg` over plain SMTP to `port` (e.g. a provider's inbound
/// listener), asserting every step succeeds; returns the final reply text.
pub fn send_plain(port: u16, from: &str, rcpts: &[&str], msg: &[u8]) -> String {
    let mut c = RawSmtp::connect(port);
    let (code, text) = c.cmd("EHLO tester.example");
    assert_eq!(code, 250, "{text}");
    let (code, text) = c.cmd(&format!("MAIL FROM:<{from}>"));
    assert_eq!(code, 250, "{text}");
    for r in rcpts {
        let (code, text) = c.cmd(&format!("RCPT TO:<{r}>"));
        assert_eq!(code, 250, "RCPT {r}: {text}");
    }
    let (code, text) = c.data(msg);
    assert_eq!(code, 250, "end of DATA: {text}");
    c.cmd("QUIT");
    text
}

/// The identificativo out of the access point's `250` reply text.
pub fn identificativo_in(reply: &str) -> String {
    reply
        .split("identificativo ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap_or_else(|| panic!("no identificativo in {reply:?}"))
        .to_string()
}

impl TestProvider {
    /// Every stored message of every mailbox (`data/mail/**/{new,cur}/*`).
    pub fn all_mail(&self) -> Vec<(PathBuf, Vec<u8>)> {
        fn walk(dir: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
            let Ok(rd) = std::fs::read_dir(dir) else {
                return;
            };
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(&p, out);
                } else if p
                    .parent()
                    .and_then(|d| d.file_name())
                    .is_some_and(|n| n == "new" || n == "cur")
                {
                    out.push((p.clone(), std::fs::read(&p).unwrap()));
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.path().join("data/mail"), &mut out);
        out
    }

    /// Every message in the spool (generated or received), read through the
    /// names the queue holds: `(segment file, bytes)`.
    pub fn spool_files(&self) -> Vec<(PathBuf, Vec<u8>)> {
        use std::os::unix::fs::FileExt;
        let names: Vec<String> = {
            let db = self.db();
            let mut st = db
                .prepare("SELECT DISTINCT blob FROM jobs WHERE blob IS NOT NULL")
                .unwrap();
            st.query_map([], |r| r.get(0))
                .unwrap()
                .map(Result::unwrap)
                .collect()
        };
        let mut out = Vec::new();
        for n in names {
            let (seg, range) = n.split_once('@').unwrap();
            let (off, len) = range.split_once('+').unwrap();
            let path = self.path().join("data/spool").join(seg);
            let f = std::fs::File::open(&path).unwrap();
            let mut buf = vec![0u8; len.parse().unwrap()];
            f.read_exact_at(&mut buf, off.parse().unwrap()).unwrap();
            out.push((path, buf));
        }
        out
    }

    /// Log events of one type.
    pub fn events(&self, event: &str) -> Vec<serde_json::Value> {
        self.log_events(&[])
            .into_iter()
            .filter(|e| e["event"] == event)
            .collect()
    }

    /// Wait until `n` log events of type `event` satisfy `pred`.
    pub fn wait_events(
        &self,
        event: &str,
        n: usize,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> Vec<serde_json::Value> {
        self.wait_for(&format!("{n} x log event {event}"), 30, || {
            let v: Vec<_> = self.events(event).into_iter().filter(&pred).collect();
            (v.len() >= n).then_some(v)
        })
    }

    /// A connection to the provider's database (WAL: fine beside the daemon).
    pub fn db(&self) -> rusqlite::Connection {
        // The test's own look at the file, not pecd's store API.
        let c = rusqlite::Connection::open(self.path().join("data/pecd.sqlite3")).unwrap();
        c.busy_timeout(Duration::from_secs(10)).unwrap();
        c
    }

    /// Send SIGHUP to the running daemon.
    pub fn sighup(&self) {
        let c = self.child.as_ref().expect("provider running");
        signal(c.id(), "HUP");
    }
}

/// The bytes of `postacert.eml` inside a provider message.
pub fn postacert_of(msg: &[u8]) -> Vec<u8> {
    postacert(msg).expect("message has a postacert.eml")
}

// ---- additions for the access-point tests (t-access) ------------------------

/// Decoded bytes of the first leaf part named `filename` (e.g. `daticert.xml`).
pub fn part_named(msg: &[u8], filename: &str) -> Option<Vec<u8>> {
    pecd::pec::mime::walk(msg, 0..msg.len())
        .into_iter()
        .find(|e| {
            e.filename(msg)
                .is_some_and(|f| f.eq_ignore_ascii_case(filename))
        })
        .map(|e| e.decoded_body(msg))
}

/// The raw `daticert.xml` bytes as they travel (base64 removed), not re-serialised.
pub fn raw_daticert(msg: &[u8]) -> Vec<u8> {
    part_named(msg, "daticert.xml").expect("message has a daticert.xml part")
}

/// Validate the raw daticert.xml of a message against the DTD with xmllint.
pub fn xmllint_message(msg: &[u8]) -> Result<(), String> {
    let xml = raw_daticert(msg);
    xmllint_valid(std::str::from_utf8(&xml).map_err(|e| e.to_string())?)
}

/// The embedded `postacert.eml` bytes, if any.
pub fn postacert(msg: &[u8]) -> Option<Vec<u8>> {
    part_named(msg, "postacert.eml")
}

/// Every file under `<data_dir>/mail` (all mailboxes, new/ and cur/).
pub fn all_mail_files(p: &TestProvider) -> Vec<PathBuf> {
    p.all_mail().into_iter().map(|(path, _)| path).collect()
}

/// Contents of every spool file (what was written right after signing).
pub fn spool_files(p: &TestProvider) -> Vec<Vec<u8>> {
    p.spool_files()
        .into_iter()
        .map(|(_, bytes)| bytes)
        .collect()
}

/// A plain or TLS byte stream for [`SecureSmtp`].
pub enum RawStream {
    Plain(std::net::TcpStream),
    Tls(Box<openssl::ssl::SslStream<std::net::TcpStream>>),
    Gone,
}

impl std::io::Read for RawStream {
    fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
        match self {
            RawStream::Plain(s) => s.read(b),
            RawStream::Tls(s) => s.read(b),
            RawStream::Gone => Ok(0),
        }
    }
}

impl std::io::Write for RawStream {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        match self {
            RawStream::Plain(s) => s.write(b),
            RawStream::Tls(s) => s.write(b),
            RawStream::Gone => Err(std::io::ErrorKind::NotConnected.into()),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            RawStream::Plain(s) => s.flush(),
            RawStream::Tls(s) => s.flush(),
            RawStream::Gone => Ok(()),
        }
    }
}

/// A hand-driven SMTP client (for what lettre refuses to send).
pub struct SecureSmtp {
    pub stream: RawStream,
    buf: Vec<u8>,
    ca: PathBuf,
}

fn tls_client(tcp: std::net::TcpStream, ca: &Path) -> RawStream {
    use openssl::ssl::{SslConnector, SslMethod};
    let mut b = SslConnector::builder(SslMethod::tls_client()).unwrap();
    b.set_ca_file(ca).unwrap();
    let s = b.build().connect("127.0.0.1", tcp).unwrap();
    RawStream::Tls(Box::new(s))
}

impl SecureSmtp {
    /// Connect to `port`; `implicit_tls` wraps the socket in TLS first (465-style).
    /// The greeting is read and checked.
    pub fn connect(port: u16, ca: &Path, implicit_tls: bool) -> SecureSmtp {
        let tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let stream = if implicit_tls {
            tls_client(tcp, ca)
        } else {
            RawStream::Plain(tcp)
        };
        let mut c = SecureSmtp {
            stream,
            buf: Vec::new(),
            ca: ca.to_path_buf(),
        };
        let (code, text) = c.reply();
        assert_eq!(code, 220, "greeting: {text}");
        c
    }

    /// Read one (possibly multi-line) reply: code and all text lines joined by `\n`.
    pub fn reply(&mut self) -> (u16, String) {
        use std::io::Read;
        let mut lines = Vec::new();
        loop {
            while let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line: Vec<u8> = self.buf.drain(..i + 2).collect();
                let line = String::from_utf8_lossy(&line[..i]).into_owned();
                let last = line.as_bytes().get(3) != Some(&b'-');
                lines.push(line);
                if last {
                    let code = lines.last().unwrap()[..3].parse().unwrap_or(0);
                    let text = lines
                        .iter()
                        .map(|l| l.get(4..).unwrap_or(""))
                        .collect::<Vec<_>>()
                        .join("\n");
                    return (code, text);
                }
            }
            let mut tmp = [0u8; 4096];
            let n = self.stream.read(&mut tmp).unwrap_or(0);
            if n == 0 {
                return (0, format!("connection closed after {lines:?}"));
            }
            self.buf.extend_from_slice(&tmp[..n]);
        }
    }

    /// Send raw bytes.
    pub fn send(&mut self, bytes: &[u8]) {
        use std::io::Write;
        self.stream.write_all(bytes).unwrap();
        self.stream.flush().unwrap();
    }

    /// Send one command line (CRLF added) and read its reply.
    pub fn cmd(&mut self, line: &str) -> (u16, String) {
        self.send(format!("{line}\r\n").as_bytes());
        self.reply()
    }

    /// STARTTLS and the TLS handshake (certificate checked against the test CA).
    pub fn starttls(&mut self) {
        let (code, text) = self.cmd("STARTTLS");
        assert_eq!(code, 220, "STARTTLS: {text}");
        assert!(self.buf.is_empty());
        let RawStream::Plain(tcp) = std::mem::replace(&mut self.stream, RawStream::Gone) else {
            panic!("STARTTLS on a TLS stream");
        };
        self.stream = tls_client(tcp, &self.ca);
    }

    /// EHLO, then AUTH PLAIN with `user` / `password`; returns the AUTH reply.
    pub fn ehlo_auth(&mut self, user: &str, password: &str) -> (u16, String) {
        let (code, text) = self.cmd("EHLO client.test");
        assert_eq!(code, 250, "{text}");
        let token = openssl::base64::encode_block(format!("\0{user}\0{password}").as_bytes());
        self.cmd(&format!("AUTH PLAIN {token}"))
    }
}

/// `[timers]`/`[queue]` TOML with second-scale durations (timers, durability tests).
pub fn fast_timers(preavviso: &str, expire: &str) -> String {
    format!(
        "[timers]\npreavviso_after = \"{preavviso}\"\nexpire_after = \"{expire}\"\n\n[queue]\nretry_initial = \"1s\"\nretry_max = \"2s\"\nshutdown_grace = \"5s\"\n"
    )
}

/// The identificativo at the end of a `250 … identificativo ID` reply.
pub fn ident_of(reply: &str) -> String {
    reply.rsplit(' ').next().unwrap_or_default().to_string()
}

/// Route `domain` to a loopback port where nothing listens.
pub fn route_dead(p: &TestProvider, domain: &str) {
    p.append_config(&format!(
        "[[route]]\ndomain = \"{domain}\"\nnext_hop = \"127.0.0.1:{}\"\n",
        free_port()
    ));
}

/// Log events of one type (and, if given, one identificativo).
pub fn events_of(p: &TestProvider, event: &str, id: Option<&str>) -> Vec<serde_json::Value> {
    let mut args = vec![];
    if let Some(id) = id {
        args.extend_from_slice(&["--id", id]);
    }
    p.log_events(&args)
        .into_iter()
        .filter(|e| e["event"] == event)
        .collect()
}

/// `pecd queue list --json` parsed.
pub fn queue_jobs(p: &TestProvider) -> Vec<serde_json::Value> {
    p.cli_json(&["queue", "list", "--json"])
}

/// How long the queues must stay empty to count as quiet: longer than the
/// scheduler's look for due deadlines (every 200 ms), so a time-limit
/// notice that would fire wrongly has been queued by then.
const QUIET: Duration = Duration::from_millis(300);

/// Wait until the providers are quiet: no job left in any of their queues,
/// look after look for [`QUIET`]. Every decision is committed with the job
/// that ends it and with the jobs it starts, and a relay job ends only
/// after the peer has committed what it received, so work still under way
/// shows in some queue: what a wrong decision would emit is now there to be
/// seen, and a negative assertion can follow.
pub fn wait_quiet(ps: &[&TestProvider]) {
    wait_quiet_but(ps, |_| false)
}

/// [`wait_quiet`], but jobs `stuck` accepts (a relay to a dead route, a
/// held job) may stay.
pub fn wait_quiet_but(ps: &[&TestProvider], stuck: impl Fn(&serde_json::Value) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut quiet_since: Option<Instant> = None;
    loop {
        let busy: Vec<(String, Vec<serde_json::Value>)> = ps
            .iter()
            .map(|p| {
                let jobs = queue_jobs(p).into_iter().filter(|j| !stuck(j)).collect();
                (p.name.clone(), jobs)
            })
            .filter(|(_, jobs): &(String, Vec<_>)| !jobs.is_empty())
            .collect();
        if busy.is_empty() {
            if quiet_since.get_or_insert_with(Instant::now).elapsed() >= QUIET {
                return;
            }
        } else {
            quiet_since = None;
            if Instant::now() > deadline {
                let logs: String = ps
                    .iter()
                    .map(|p| format!("--- {} log ---\n{}", p.name, p.log()))
                    .collect();
                panic!("timed out waiting for the queues to drain: {busy:#?}\n{logs}");
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sleep until `after` has passed since `since` (the acceptance of a
/// message, from which its time limits count), plus [`QUIET`]: a deadline
/// of `after` is then past, and any notice it would fire is queued. A wait
/// whose length is what the test checks.
pub fn sleep_past(since: Instant, after: Duration) {
    std::thread::sleep((since + after + QUIET).saturating_duration_since(Instant::now()));
}

/// Bytes written on the loopback TCP connections to `port` that the
/// listening process has not read yet: its receive queues plus the
/// clients' send queues, from `/proc/net/tcp`.
pub fn unread_bytes(port: u16) -> u64 {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    let port_of = |addr: &str| {
        addr.rsplit_once(':')
            .and_then(|(_, p)| u16::from_str_radix(p, 16).ok())
    };
    let queue = |q: &str| u64::from_str_radix(q, 16).unwrap_or(0);
    let mut unread = 0;
    for line in table.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (Some(local), Some(remote), Some((tx, rx))) =
            (f.get(1), f.get(2), f.get(4).and_then(|q| q.split_once(':')))
        else {
            continue;
        };
        // A listening socket's receive queue is its accept backlog.
        if f.get(3) == Some(&"0A") {
            continue;
        }
        if port_of(local) == Some(port) {
            unread += queue(rx);
        }
        if port_of(remote) == Some(port) {
            unread += queue(tx);
        }
    }
    unread
}

/// Messages of a user's mailbox that refer to `identificativo` (via daticert or X-Riferimento).
pub fn receipts_for(p: &TestProvider, user: &str, tipo: &str, id: &str) -> Vec<Vec<u8>> {
    p.messages_with(user, "X-Ricevuta", tipo)
        .into_iter()
        .filter(|m| daticert(m).identificativo == id)
        .collect()
}

/// The two-provider flow of the durability and backup tests: alice and
/// carol at Alpha, bob at Beta, and what each PEC leaves in their mailboxes.
pub mod flow {
    use std::collections::BTreeMap;

    use super::{daticert, header, TestProvider};

    pub const ALICE: &str = "alice@pec.alpha.test";
    pub const CAROL: &str = "carol@pec.alpha.test";
    pub const BOB: &str = "bob@pec.beta.test";

    /// Per identificativo, how many of each piece of the flow exist.
    #[derive(Debug, Default, Clone, PartialEq, Eq)]
    pub struct Pieces {
        pub accettazione: usize,
        pub consegna_carol: usize,
        pub consegna_bob: usize,
        pub busta_carol: usize,
        pub busta_bob: usize,
    }

    pub fn tally(a: &TestProvider, b: &TestProvider) -> BTreeMap<String, Pieces> {
        let mut t: BTreeMap<String, Pieces> = BTreeMap::new();
        for p in a.mailbox(ALICE) {
            let m = std::fs::read(&p).unwrap();
            let d = daticert(&m);
            let e = t.entry(d.identificativo.clone()).or_default();
            match header(&m, "X-Ricevuta").as_deref() {
                Some("accettazione") => e.accettazione += 1,
                Some("avvenuta-consegna") => match d.consegna.as_deref() {
                    Some(CAROL) => e.consegna_carol += 1,
                    Some(BOB) => e.consegna_bob += 1,
                    other => panic!("consegna for {other:?}"),
                },
                other => panic!("unexpected message in alice's mailbox: {other:?}"),
            }
        }
        for (prov, user) in [(a, CAROL), (b, BOB)] {
            for p in prov.mailbox(user) {
                let m = std::fs::read(&p).unwrap();
                assert_eq!(
                    header(&m, "X-Trasporto").as_deref(),
                    Some("posta-certificata")
                );
                let e = t.entry(daticert(&m).identificativo).or_default();
                if user == CAROL {
                    e.busta_carol += 1;
                } else {
                    e.busta_bob += 1;
                }
            }
        }
        t
    }

    pub const COMPLETE: Pieces = Pieces {
        accettazione: 1,
        consegna_carol: 1,
        consegna_bob: 1,
        busta_carol: 1,
        busta_bob: 1,
    };
}

/// A `pecd serve` child run straight from a config file (outside the
/// [`TestProvider`] layout), its output in `log`; killed when dropped.
pub struct Daemon {
    pub child: Child,
    pub log: PathBuf,
}

impl Daemon {
    /// Start `pecd --config CFG serve`, with `NOTIFY_SOCKET` set to
    /// `notify` (or unset).
    pub fn spawn(cfg: &Path, log: &Path, notify: Option<&str>) -> Daemon {
        let f = std::fs::File::create(log).unwrap();
        let mut c = Command::new(pecd_bin());
        c.arg("--config")
            .arg(cfg)
            .arg("serve")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(f.try_clone().unwrap())
            .stderr(f);
        match notify {
            Some(n) => c.env("NOTIFY_SOCKET", n),
            None => c.env_remove("NOTIFY_SOCKET"),
        };
        Daemon {
            child: c.spawn().unwrap(),
            log: log.to_path_buf(),
        }
    }

    /// Start it without a readiness socket.
    pub fn start(cfg: &Path, log: &Path) -> Daemon {
        Daemon::spawn(cfg, log, None)
    }

    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Wait until `port` accepts connections (failing if pecd exits).
    pub fn wait_port(&mut self, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(st) = self.child.try_wait().unwrap() {
                panic!("pecd exited ({st}):\n{}", self.output());
            }
            assert!(
                Instant::now() < deadline,
                "not listening:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Wait for the process to end, at most `secs`.
    pub fn wait_exit(&mut self, secs: u64) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("pecd did not exit:\n{}", self.output());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, then wait for the exit.
    pub fn sigterm(&mut self) -> std::process::ExitStatus {
        signal(self.child.id(), "TERM");
        self.wait_exit(30)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Run a scenario of `tests/imap_client.py` (Python's imaplib) against
/// `port` in `mode` (`tls`, `starttls`, `plain`); one JSON record a step.
pub fn imap(
    p: &TestProvider,
    port: u16,
    mode: &str,
    user: &str,
    password: &str,
    script: &str,
) -> Vec<serde_json::Value> {
    let py = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/imap_client.py");
    let out = std::process::Command::new("python3")
        .arg(py)
        .args(["127.0.0.1", &port.to_string(), mode, user, password, script])
        .env("IMAP_CAFILE", &p.ca_pem)
        .output()
        .expect("python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let recs: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line {l:?}: {e}")))
        .collect();
    assert!(
        !recs.is_empty(),
        "no output; stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    recs
}

/// Run a scenario of `tests/pop3_client.py` (Python's poplib) against
/// `port` in `mode` (`tls` or `plain`); one JSON record a step (step 0 is
/// the greeting).
pub fn pop3(p: &TestProvider, port: u16, mode: &str, script: &str) -> Vec<serde_json::Value> {
    let py = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/pop3_client.py");
    let out = std::process::Command::new("python3")
        .arg(py)
        .args(["127.0.0.1", &port.to_string(), mode, script])
        .env("POP3_CAFILE", &p.ca_pem)
        .output()
        .expect("python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let recs: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line {l:?}: {e}")))
        .collect();
    assert!(
        !recs.is_empty(),
        "no output; stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    recs
}

/// The record of step `n`.
pub fn step(recs: &[serde_json::Value], n: usize) -> &serde_json::Value {
    recs.iter()
        .find(|r| r["step"] == n)
        .unwrap_or_else(|| panic!("no step {n} in {recs:#?}"))
}

/// Give every listener of a config file (`[listen]`, `[admin] listen` and
/// `[web] listen`) a free loopback port, adding an `[admin]` or `[web]`
/// section if it has none (their default ports would collide between
/// tests); returns the submission port.
pub fn free_listen_ports(cfg: &Path) -> u16 {
    let text = std::fs::read_to_string(cfg).unwrap();
    let mut out = String::new();
    let mut sub = 0;
    let mut admin = false;
    let mut web = false;
    for line in text.lines() {
        let key = line.split('=').next().unwrap_or("").trim();
        admin |= line.trim() == "[admin]";
        web |= line.trim() == "[web]";
        let keys = [
            "submission",
            "submissions",
            "inbound",
            "imap",
            "imaps",
            "pop3",
            "pop3s",
            "listen",
        ];
        if keys.contains(&key) {
            let port = free_port();
            if key == "submission" {
                sub = port;
            }
            out.push_str(&format!("{key} = \"127.0.0.1:{port}\"\n"));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    if !admin {
        out.push_str(&format!(
            "\n[admin]\nlisten = \"127.0.0.1:{}\"\n",
            free_port()
        ));
    }
    if !web {
        out.push_str(&format!(
            "\n[web]\nlisten = \"127.0.0.1:{}\"\n",
            free_port()
        ));
    }
    std::fs::write(cfg, out).unwrap();
    assert_ne!(sub, 0, "no submission listener in {}", cfg.display());
    sub
}

/// `GET path` over plain HTTP/1.1; (status, body).
pub fn http_get(port: u16, path: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    use std::io::Read;
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    // axum sends small bodies whole, but a chunked one is decoded here.
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut out = String::new();
        let mut rest = body;
        while let Some((len, tail)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(len.trim(), 16).unwrap_or(0);
            if n == 0 {
                break;
            }
            out.push_str(&tail[..n]);
            rest = &tail[n + 2..];
        }
        out
    } else {
        body.to_string()
    };
    (status, body)
}

/// `pecd bench ARGS --json` with `env`, to completion: its one JSON report.
pub fn bench_json(args: &[&str], env: &[(&str, &std::ffi::OsStr)]) -> serde_json::Value {
    let out = Command::new(pecd_bin())
        .arg("bench")
        .args(args)
        .arg("--json")
        .env("RUST_LOG", "error")
        .envs(env.iter().copied())
        .output()
        .expect("run pecd bench");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(text.trim()).expect("one JSON object")
}
