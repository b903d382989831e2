//! Operations (issue 10 §2, §6, §8): where the configuration is found,
//! `pecd init` for a real domain, the systemd readiness signal, broken
//! pipes, readable queue output, empty results, a development config that
//! sends nothing off the machine, TLS files named by key, and `check-config`
//! reporting each problem once. Every test runs the real binary.
use crate::common;

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const ALICE: &str = "alice@pec.alpha.test";

fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn alpha(ca: &TestCa, users: &[&str]) -> TestProvider {
    TestProvider::prepare(
        ca,
        &ProviderSpec::new("Alpha PEC S.p.A.", "pec.alpha.test", users),
    )
}

/// `pecd ARGS` in `cwd`, with `PECD_CONFIG` set to `env` (or unset).
fn pecd_in(cwd: &Path, env: Option<&Path>, args: &[&str]) -> std::process::Output {
    let mut c = Command::new(pecd_bin());
    c.current_dir(cwd).args(args).stdin(Stdio::null());
    match env {
        Some(p) => c.env("PECD_CONFIG", p),
        None => c.env_remove("PECD_CONFIG"),
    };
    c.output().unwrap()
}

#[test]
fn configuration_is_found_flag_then_env_then_local_then_system() {
    let ca = TestCa::new();
    let p = alpha(&ca, &["alice"]);
    let elsewhere = tempfile::tempdir().unwrap();
    let lists_alice = |o: &std::process::Output| {
        o.status.success() && String::from_utf8_lossy(&o.stdout).contains(ALICE)
    };

    // PECD_CONFIG, from a folder with no configuration in it.
    let o = pecd_in(elsewhere.path(), Some(&p.config_path()), &["user", "list"]);
    assert!(lists_alice(&o), "PECD_CONFIG not used: {}", text(&o));

    // --config wins over PECD_CONFIG.
    let bogus = elsewhere.path().join("nowhere/pecd.toml");
    let cfg = p.config_path();
    let o = pecd_in(
        elsewhere.path(),
        Some(&bogus),
        &["--config", cfg.to_str().unwrap(), "user", "list"],
    );
    assert!(lists_alice(&o), "--config not preferred: {}", text(&o));

    // A PECD_CONFIG naming a missing file is an error naming that file (no
    // silent fall-back to another configuration).
    let o = pecd_in(p.path(), Some(&bogus), &["user", "list"]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains(&bogus.display().to_string()),
        "the error does not name the file: {}",
        text(&o)
    );

    // ./config/pecd.toml when neither is given.
    let local = p.path().join("config");
    std::fs::create_dir_all(&local).unwrap();
    let t = std::fs::read_to_string(p.config_path()).unwrap();
    let t = t
        .replace("\"certs/", "\"../certs/")
        .replace("data_dir = \"data\"", "data_dir = \"../data\"")
        .replace("index = \"index.toml\"", "index = \"../index.toml\"");
    std::fs::write(local.join("pecd.toml"), t).unwrap();
    let o = pecd_in(p.path(), None, &["user", "list"]);
    assert!(lists_alice(&o), "./config/pecd.toml not used: {}", text(&o));

    // Nothing anywhere: the error lists every place looked at.
    if !Path::new("/etc/pecd/pecd.toml").exists() {
        let o = pecd_in(elsewhere.path(), None, &["user", "list"]);
        assert!(!o.status.success());
        let t = text(&o);
        for want in [
            "--config",
            "PECD_CONFIG",
            "config/pecd.toml",
            "/etc/pecd/pecd.toml",
        ] {
            assert!(t.contains(want), "{want} not mentioned: {t}");
        }
    }

    // Every error about the configuration names the file used, also the
    // ones `serve` finds after parsing it.
    let broken = elsewhere.path().join("broken.toml");
    let t = std::fs::read_to_string(p.config_path())
        .unwrap()
        .replace("\"certs/tls.key\"", "\"certs/gone.key\"")
        .replace("\"certs/", &format!("\"{}/certs/", p.path().display()))
        .replace(
            "data_dir = \"data\"",
            &format!("data_dir = \"{}/data\"", p.path().display()),
        )
        .replace(
            "index = \"index.toml\"",
            &format!("index = \"{}/index.toml\"", p.path().display()),
        );
    std::fs::write(&broken, t).unwrap();
    let o = pecd_in(elsewhere.path(), Some(&broken), &["serve"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    let line = err
        .lines()
        .find(|l| l.contains("tls.key"))
        .unwrap_or_else(|| panic!("no tls.key error: {err}"));
    assert!(
        line.contains(&broken.display().to_string()),
        "the serve error does not name the configuration: {line}"
    );
}

/// Wait for one datagram on `sock`, failing if the daemon dies first.
fn recv_state(sock: &UnixDatagram, d: &mut Daemon, secs: u64) -> String {
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut buf = [0u8; 512];
    loop {
        match sock.recv(&mut buf) {
            Ok(n) => return String::from_utf8_lossy(&buf[..n]).into_owned(),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("recv: {e}"),
        }
        if let Some(st) = d.child.try_wait().unwrap() {
            panic!("pecd exited ({st}) before notifying:\n{}", d.output());
        }
        assert!(
            Instant::now() < deadline,
            "no notification within {secs}s:\n{}",
            d.output()
        );
    }
}

fn notify_round(p: &TestProvider, sock: &UnixDatagram, target: &str) {
    let mut d = Daemon::spawn(&p.config_path(), &p.path().join("serve.log"), Some(target));
    let state = recv_state(sock, &mut d, 60);
    assert_eq!(state.trim(), "READY=1", "{}", d.output());
    // READY means every listener is already accepting: no wait, no retry.
    for port in [p.submission, p.submissions, p.inbound, p.imap, p.imaps] {
        std::net::TcpStream::connect(("127.0.0.1", port))
            .unwrap_or_else(|e| panic!("READY=1 before port {port} accepts: {e}"));
    }
    signal(d.child.id(), "TERM");
    let state = recv_state(sock, &mut d, 30);
    assert_eq!(state.trim(), "STOPPING=1", "{}", d.output());
    assert_eq!(d.wait_exit(30).code(), Some(0), "{}", d.output());
}

#[test]
fn serve_tells_systemd_it_is_ready_once_every_listener_is_bound() {
    let ca = TestCa::new();
    let p = alpha(&ca, &["alice"]);
    // A socket file, as systemd uses under /run.
    let path = p.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    notify_round(&p, &sock, path.to_str().unwrap());
    // An abstract-namespace socket (`@name`), the other form NOTIFY_SOCKET takes.
    use std::os::linux::net::SocketAddrExt;
    let name = format!("pecd-test-notify-{}", std::process::id());
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(&name).unwrap();
    let sock = UnixDatagram::bind_addr(&addr).unwrap();
    notify_round(&p, &sock, &format!("@{name}"));
}

fn init(dir: &Path, domain: &str, extra: &[&str]) -> std::process::Output {
    Command::new(pecd_bin())
        .arg("init")
        .arg(dir)
        .args(["--domain", domain])
        .args(extra)
        .output()
        .unwrap()
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn listen_of(cfg: &str, key: &str) -> String {
    cfg.lines()
        .find(|l| l.split('=').next().unwrap_or("").trim() == key)
        .and_then(|l| l.split('"').nth(1))
        .unwrap_or_else(|| panic!("no {key} in {cfg}"))
        .to_string()
}

/// `listen` of the `[web]` table.
fn web_listen_of(cfg: &str) -> String {
    let web = cfg
        .split("[web]")
        .nth(1)
        .unwrap_or_else(|| panic!("no [web] in {cfg}"));
    listen_of(web, "listen")
}

#[test]
fn init_checks_the_domain_writes_production_ports_and_keeps_the_ca_key_apart() {
    let tmp = tempfile::tempdir().unwrap();
    for bad in [
        "pec",
        "pec.example.it.",
        "pec..example.it",
        ".pec.example.it",
        "-pec.example.it",
        "pec-.example.it",
        "pec_mail.example.it",
        "pec example.it",
        "pec.examplè.it",
        "10.0.0.1",
        &format!("{}.example.it", "a".repeat(64)),
    ] {
        let dir = tmp.path().join("bad");
        let o = init(&dir, bad, &[]);
        assert!(!o.status.success(), "{bad:?} accepted: {}", text(&o));
        assert!(text(&o).contains("--domain"), "{bad:?}: {}", text(&o));
        assert!(!dir.exists(), "{bad:?}: files written anyway");
    }

    // Production: standard ports, MX lookups, the CA key outside the folder.
    let dir = tmp.path().join("prov");
    let o = init(&dir, "pec.example.it", &["--name", "Example PEC S.p.A."]);
    assert!(o.status.success(), "{}", text(&o));
    let cfg = std::fs::read_to_string(dir.join("pecd.toml")).unwrap();
    for (key, port) in [
        ("inbound", 25),
        ("submission", 587),
        ("submissions", 465),
        ("imap", 143),
        ("imaps", 993),
        ("pop3", 110),
        ("pop3s", 995),
    ] {
        let a: std::net::SocketAddr = listen_of(&cfg, key).parse().unwrap();
        assert_eq!(a.port(), port, "listen.{key}");
        assert!(!a.ip().is_loopback(), "listen.{key} only on loopback: {a}");
    }
    let w: std::net::SocketAddr = web_listen_of(&cfg).parse().unwrap();
    assert_eq!(w.port(), 443, "web.listen");
    assert!(!w.ip().is_loopback(), "web.listen only on loopback: {w}");
    assert!(cfg.contains("mx_lookups = true"), "{cfg}");
    for f in files_under(&dir) {
        let bytes = std::fs::read(&f).unwrap();
        if String::from_utf8_lossy(&bytes).contains("PRIVATE KEY") {
            let name = f.file_name().unwrap().to_string_lossy().into_owned();
            assert!(
                name == "signing.key" || name == "tls.key",
                "a private key other than signing's and TLS's in the provider's folder: {}",
                f.display()
            );
        }
    }
    let ca_key = tmp.path().join("prov-dev-ca/ca.key");
    assert!(ca_key.is_file(), "{}", text(&o));
    let warning = String::from_utf8_lossy(&o.stderr);
    assert!(
        warning.contains("WARNING") && warning.contains(&ca_key.display().to_string()),
        "no warning naming the CA key: {warning}"
    );
    // That key is the one of the CA the provider trusts.
    let pubkey = |args: &[&str], f: &Path| {
        let o = Command::new("openssl").args(args).arg(f).output().unwrap();
        assert!(o.status.success(), "{}", text(&o));
        o.stdout
    };
    assert_eq!(
        pubkey(&["pkey", "-pubout", "-in"], &ca_key),
        pubkey(
            &["x509", "-noout", "-pubkey", "-in"],
            &dir.join("certs/ca.pem")
        )
    );
    let check = Command::new(pecd_bin())
        .arg("--config")
        .arg(dir.join("pecd.toml"))
        .arg("check-config")
        .output()
        .unwrap();
    // The one thing left to the operator: the TSA of the daily time stamp.
    assert_eq!(check.status.code(), Some(1), "{}", text(&check));
    let said = String::from_utf8_lossy(&check.stdout);
    assert!(
        said.lines().count() == 1 && said.contains("log.tsa_url: not set"),
        "{}",
        text(&check)
    );
    assert!(cfg.contains("# tsa_url = "), "{cfg}");

    // --dev: loopback ports, nothing looked up.
    let dev = tmp.path().join("dev");
    let o = init(&dev, "pec.dev.test", &["--dev"]);
    assert!(o.status.success(), "{}", text(&o));
    let cfg = std::fs::read_to_string(dev.join("pecd.toml")).unwrap();
    for key in LISTEN_KEYS {
        let a: std::net::SocketAddr = listen_of(&cfg, key).parse().unwrap();
        assert!(a.ip().is_loopback(), "listen.{key}: {a}");
    }
    assert!(cfg.contains("mx_lookups = false"), "{cfg}");
    assert!(cfg.contains("\ntsa_url = \"none\"\n"), "{cfg}");
    assert!(!dev.join("certs/ca.key").exists());
}

const LISTEN_KEYS: [&str; 7] = [
    "submission",
    "submissions",
    "inbound",
    "imap",
    "imaps",
    "pop3",
    "pop3s",
];

/// Every listener `init` wrote: `(key as printed, port)`, `[listen]` keys
/// first, then `admin.listen` and `web.listen`.
fn written_ports(cfg: &str) -> Vec<(String, u16)> {
    let port = |a: String| a.parse::<std::net::SocketAddr>().unwrap().port();
    let mut out: Vec<(String, u16)> = LISTEN_KEYS
        .iter()
        .map(|k| (format!("listen.{k}"), port(listen_of(cfg, k))))
        .collect();
    let admin = cfg
        .split("[admin]")
        .nth(1)
        .unwrap_or_else(|| panic!("no [admin] in {cfg}"));
    out.push(("admin.listen".into(), port(listen_of(admin, "listen"))));
    out.push(("web.listen".into(), port(web_listen_of(cfg))));
    out
}

#[test]
fn two_dev_providers_from_init_run_side_by_side() {
    let tmp = tempfile::tempdir().unwrap();
    let mut all_ports = Vec::new();
    let mut daemons = Vec::new();
    for (name, domain) in [("one", "pec.one.test"), ("two", "pec.two.test")] {
        let dir = tmp.path().join(name);
        let o = init(&dir, domain, &["--dev"]);
        assert!(o.status.success(), "{}", text(&o));
        let cfg = std::fs::read_to_string(dir.join("pecd.toml")).unwrap();
        let ports = written_ports(&cfg);
        // The table `init` prints is what it wrote.
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        for (key, port) in &ports {
            assert!(
                out.lines().any(|l| l.trim_start().starts_with(key.as_str())
                    && l.contains(&format!("127.0.0.1:{port} "))),
                "{key} 127.0.0.1:{port} not printed:\n{out}"
            );
        }
        all_ports.extend(ports.iter().map(|(_, p)| *p));
        let mut d = Daemon::start(
            &dir.join("pecd.toml"),
            &tmp.path().join(format!("{name}.log")),
        );
        for (_, port) in &ports {
            d.wait_port(*port);
        }
        daemons.push((d, ports));
    }
    let mut distinct = all_ports.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(
        distinct.len(),
        18,
        "two providers share a port: {all_ports:?}"
    );
    // Both answer, each on its own ports: the admin listener's /health.
    for (d, ports) in &mut daemons {
        let admin = ports.iter().find(|(k, _)| k == "admin.listen").unwrap().1;
        let (status, body) = http_get(admin, "/health");
        assert_eq!(status, 200, "{body}\n{}", d.output());
        assert_eq!(d.sigterm().code(), Some(0), "{}", d.output());
    }
}

#[test]
fn init_dev_port_base_writes_consecutive_ports_and_refuses_a_taken_one() {
    let tmp = tempfile::tempdir().unwrap();
    // Nine consecutive free ports, found by trying.
    let base = (21_000u16..60_000)
        .step_by(97)
        .find(|b| (0..9).all(|i| std::net::TcpListener::bind(("127.0.0.1", b + i)).is_ok()))
        .unwrap();
    let dir = tmp.path().join("based");
    let o = init(
        &dir,
        "pec.based.test",
        &["--dev", "--port-base", &base.to_string()],
    );
    assert!(o.status.success(), "{}", text(&o));
    let cfg = std::fs::read_to_string(dir.join("pecd.toml")).unwrap();
    let ports: Vec<u16> = written_ports(&cfg).into_iter().map(|(_, p)| p).collect();
    assert_eq!(ports, (base..base + 9).collect::<Vec<_>>());

    // One of the nine taken: refused, naming it, and nothing written.
    let hold = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let taken = hold.local_addr().unwrap().port();
    let dir = tmp.path().join("taken");
    let o = init(
        &dir,
        "pec.taken.test",
        &["--dev", "--port-base", &(taken - 4).to_string()],
    );
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("--port-base") && text(&o).contains("is not free on 127.0.0.1"),
        "{}",
        text(&o)
    );
    assert!(!dir.join("pecd.toml").exists());
    // --port-base is a --dev option.
    let o = init(
        &tmp.path().join("prod"),
        "pec.prod.test",
        &["--port-base", "30000"],
    );
    assert!(
        !o.status.success() && text(&o).contains("--dev"),
        "{}",
        text(&o)
    );
}

#[test]
fn the_systemd_unit_runs_unprivileged_sandboxed_and_notifies() {
    let unit =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/pecd.service"))
            .expect("contrib/pecd.service");
    let values = |key: &str| -> Vec<String> {
        unit.lines()
            .filter_map(|l| l.trim().strip_prefix(&format!("{key}=")))
            .map(str::to_string)
            .collect()
    };
    for (key, want) in [
        ("Type", "notify"),
        ("User", "pecd"),
        ("AmbientCapabilities", "CAP_NET_BIND_SERVICE"),
        ("ProtectSystem", "strict"),
        ("NoNewPrivileges", "yes"),
        ("PrivateTmp", "yes"),
        ("ProtectHome", "yes"),
        ("ExecReload", "/bin/kill -HUP $MAINPID"),
        ("ReadWritePaths", "/var/lib/pecd"),
    ] {
        assert_eq!(values(key), vec![want.to_string()], "{key}");
    }
    assert!(values("ExecStart")[0].ends_with(" serve"));
}

#[test]
fn verify_into_a_closed_pipe_exits_quietly() {
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/accettazione.eml");
    for json in [false, true] {
        // Where no configuration is found: the pipe is the point here.
        let nowhere = tempfile::tempdir().unwrap();
        let mut c = Command::new(pecd_bin());
        c.arg("verify")
            .arg(&sample)
            .current_dir(nowhere.path())
            .env_remove("PECD_CONFIG");
        if json {
            c.arg("--json");
        }
        let mut child = c
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The reader goes away before pecd writes a byte: like `| head -0`,
        // or a `head` that has read its lines.
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "panic on a broken pipe: {err}");
        assert!(err.trim().is_empty(), "not quiet: {err}");
        assert_ne!(out.status.code(), Some(101), "{err}");
    }
}

#[tokio::test]
async fn queue_output_is_readable_and_empty_results_say_so() {
    let ca = TestCa::new();
    // Nobody yet: every listing says it found nothing, on stderr.
    let empty = alpha(&ca, &[]);
    let o = empty.cli(&["user", "list"], "");
    assert!(o.status.success() && o.stdout.is_empty(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no users"),
        "{}",
        text(&o)
    );

    // A provider domain long enough that identificativi pass 40 characters.
    let domain = "pec.a-rather-long-provider-domain-name.example.test";
    let mut spec = ProviderSpec::new("Long PEC S.p.A.", domain, &["alice"]);
    spec.extra_config = "[queue]\nretry_initial = \"10m\"\nretry_max = \"1h\"\n".into();
    let mut p = TestProvider::prepare(&ca, &spec);
    route_dead(&p, "pec.beta.test");
    p.start();
    let o = p.cli(&["queue", "list"], "");
    assert!(o.status.success() && o.stdout.is_empty(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("queue is empty"),
        "{}",
        text(&o)
    );
    let o = p.cli(&["log", "--id", "nessuno@example.test"], "");
    assert!(o.status.success() && o.stdout.is_empty(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no PEC log events"),
        "{}",
        text(&o)
    );

    let alice = format!("alice@{domain}");
    let bob = "bob@pec.beta.test";
    let m = message(&alice, &[bob], &[], "Lungo", "", "x");
    let id = ident_of(&p.submit_raw(&alice, &[bob], &m, false).await.unwrap());
    assert!(id.len() > 40, "{id}");
    let job = p.wait_for("the relay job to fail once", 20, || {
        queue_jobs(&p)
            .into_iter()
            .find(|j| j["kind"] == "relay" && j["attempts"].as_i64().unwrap_or(0) >= 1)
    });

    let o = p.cli(&["queue", "list"], "");
    assert!(o.status.success(), "{}", text(&o));
    let t = String::from_utf8_lossy(&o.stdout).into_owned();
    let header = t.lines().next().unwrap();
    let row = t
        .lines()
        .find(|l| l.contains(&id))
        .unwrap_or_else(|| panic!("no row for {id}: {t}"));
    for (col, value) in [("RECIPIENT", bob), ("LAST ERROR", "")] {
        let at = header.find(col).unwrap();
        if !value.is_empty() {
            assert_eq!(row.find(value), Some(at), "{col} out of line:\n{t}");
        }
        assert!(
            row.len() > at && row.as_bytes()[at - 1] == b' ' && row.as_bytes()[at] != b' ',
            "{col} out of line:\n{t}"
        );
    }

    let jid = job["id"].as_i64().unwrap().to_string();
    let o = p.cli(&["queue", "show", &jid], "");
    assert!(o.status.success(), "{}", text(&o));
    let t = String::from_utf8_lossy(&o.stdout).into_owned();
    let created_ms = job["created_at"].as_i64().unwrap();
    assert!(
        !t.contains(&created_ms.to_string()),
        "epoch milliseconds shown: {t}"
    );
    let created = t
        .lines()
        .find_map(|l| l.strip_prefix("created:"))
        .unwrap_or_else(|| panic!("no created: line in {t}"))
        .trim()
        .to_string();
    // The one human form, Italian time with its offset, as `pecd log`.
    assert_eq!(created, pecd::pec::clock::human_ms(created_ms), "{t}");
    assert!(
        created.as_bytes()[2] == b'/' && created.ends_with(":00"),
        "{created}"
    );
    assert!(t.contains(&id) && t.contains("next attempt:"), "{t}");

    let o = p.cli(&["queue", "show", &jid, "--json"], "");
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["created_at"], created_ms, "numbers kept: {v}");
    // ISO 8601 with the Italian offset in --json.
    assert_eq!(
        v["created"],
        pecd::pec::clock::iso8601_ms(created_ms).as_str(),
        "{v}"
    );
    let next = v["next_attempt"].as_str().unwrap();
    assert!(
        next.as_bytes()[10] == b'T' && (next.ends_with("+01:00") || next.ends_with("+02:00")),
        "{v}"
    );
    p.stop();
}

#[test]
fn the_development_config_sends_nothing_off_the_machine() {
    // The shipped config/pecd.toml in a checkout-like tree; its resolver
    // is a loopback socket that records any question asked.
    let tmp = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::create_dir_all(tmp.path().join("config")).unwrap();
    std::fs::create_dir_all(tmp.path().join("certs")).unwrap();
    let dns = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    dns.set_nonblocking(true).unwrap();
    let shipped = std::fs::read_to_string(root.join("config/pecd.toml")).unwrap();
    assert!(
        shipped.contains("\nmx_lookups = false"),
        "config/pecd.toml does not turn MX lookups off"
    );
    let cfg = tmp.path().join("config/pecd.toml");
    std::fs::write(
        &cfg,
        shipped.replace(
            "\nmx_lookups = false",
            &format!(
                "\nmx_lookups = false\nnameservers = [\"{}\"]",
                dns.local_addr().unwrap()
            ),
        ),
    )
    .unwrap();
    std::fs::copy(
        root.join("config/index.toml"),
        tmp.path().join("config/index.toml"),
    )
    .unwrap();
    let port = free_listen_ports(&cfg);
    let alice = "alice@pec.localhost";
    let add = Command::new(pecd_bin())
        .arg("--config")
        .arg(&cfg)
        .args(["user", "add", alice, "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut add = add;
        add.stdin
            .take()
            .unwrap()
            .write_all(format!("{PASSWORD}\n").as_bytes())
            .unwrap();
        let o = add.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", text(&o));
    }
    let mut d = Daemon::spawn(&cfg, &tmp.path().join("serve.log"), None);
    d.wait_port(port);

    let rcpt = "mario@posta.example.com";
    let mut c = SecureSmtp::connect(port, &tmp.path().join("certs/ca.pem"), false);
    assert_eq!(c.cmd("EHLO client.test").0, 250);
    c.starttls();
    assert_eq!(c.ehlo_auth(alice, PASSWORD).0, 235);
    assert_eq!(c.cmd(&format!("MAIL FROM:<{alice}>")).0, 250);
    assert_eq!(c.cmd(&format!("RCPT TO:<{rcpt}>")).0, 250);
    assert_eq!(c.cmd("DATA").0, 354);
    c.send(&message(alice, &[rcpt], &[], "Fuori", "", "no"));
    let (code, reply) = c.cmd(".");
    assert_eq!(code, 250, "{reply}");
    let id = ident_of(&reply);
    drop(c);

    let log = |args: &[&str]| {
        let o = Command::new(pecd_bin())
            .arg("--config")
            .arg(&cfg)
            .args(["log", "--json"])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .collect::<Vec<_>>()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let failed = loop {
        if let Some(e) = log(&["--id", &id])
            .into_iter()
            .find(|e| e["event"] == "inoltro-fallito")
        {
            break e;
        }
        assert!(
            Instant::now() < deadline,
            "the relay did not fail for good:\n{}",
            d.output()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let err = failed["error"].as_str().unwrap_or_default();
    assert!(
        err.contains("mx_lookups") && err.contains("posta.example.com"),
        "the error does not name the key: {failed}"
    );
    let mut buf = [0u8; 512];
    assert!(
        dns.recv_from(&mut buf).is_err(),
        "an MX lookup was made for another domain"
    );
    // Nothing left to retry either.
    let o = Command::new(pecd_bin())
        .arg("--config")
        .arg(&cfg)
        .args(["queue", "list", "--json"])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&o.stdout).contains(&id),
        "{}",
        text(&o)
    );
    signal(d.child.id(), "TERM");
    assert_eq!(d.wait_exit(30).code(), Some(0), "{}", d.output());
}

#[test]
fn tls_file_errors_name_the_key_and_check_config_reports_each_problem_once() {
    let ca = TestCa::new();
    let p = alpha(&ca, &[]);
    let good = std::fs::read_to_string(p.config_path()).unwrap();
    let check = |cfg: &str| -> (bool, String) {
        std::fs::write(p.config_path(), cfg).unwrap();
        let o = p.cli(&["check-config"], "");
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
        )
    };
    let serve_error = |cfg: &str| -> String {
        std::fs::write(p.config_path(), cfg).unwrap();
        let o = Command::new(pecd_bin())
            .arg("--config")
            .arg(p.config_path())
            .arg("serve")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(!o.status.success(), "served with a broken [tls]");
        String::from_utf8_lossy(&o.stderr).into_owned()
    };

    // A key that is not the certificate's.
    let mismatched = good.replace("\"certs/tls.key\"", "\"certs/signing.key\"");
    let (ok, out) = check(&mismatched);
    assert!(!ok);
    let lines: Vec<&str> = out.lines().filter(|l| l.contains("tls.")).collect();
    assert_eq!(lines.len(), 1, "{out}");
    assert!(
        lines[0].contains("tls.key") && lines[0].contains("does not belong"),
        "{out}"
    );
    let e = serve_error(&mismatched);
    assert!(
        e.contains("tls.key") && e.contains("does not belong"),
        "{e}"
    );

    // A key where the certificate should be.
    let swapped = good.replace(
        "certificate = \"certs/tls.pem\"",
        "certificate = \"certs/tls.key\"",
    );
    let (ok, out) = check(&swapped);
    assert!(!ok);
    assert!(
        out.lines()
            .any(|l| l.contains("tls.certificate") && l.contains("no PEM certificate")),
        "{out}"
    );
    let e = serve_error(&swapped);
    assert!(e.contains("tls.certificate"), "{e}");

    // Missing files: each reported once, by its key.
    let missing = good
        .replace("\"certs/tls.key\"", "\"certs/gone-tls.key\"")
        .replace("\"certs/signing.pem\"", "\"certs/gone-signing.pem\"");
    let (ok, out) = check(&missing);
    assert!(!ok);
    for (key, file) in [
        ("tls.key", "gone-tls.key"),
        ("signing.certificate", "gone-signing.pem"),
    ] {
        let n = out.lines().filter(|l| l.contains(file)).count();
        assert_eq!(n, 1, "{key} reported {n} times:\n{out}");
        assert!(
            out.lines().any(|l| l.contains(key) && l.contains(file)),
            "{out}"
        );
    }
    assert_eq!(
        out.lines().filter(|l| l.contains("tls.")).count(),
        1,
        "{out}"
    );
    // The same check as serve: a broken index is found too.
    std::fs::write(p.path().join("index.toml"), "[[provider]]\nname = 1\n").unwrap();
    let (ok, out) = check(&good);
    assert!(!ok && out.contains("trust.index"), "{out}");
}
