//! The command line contract: `check-config`, `user add/passwd/del/list`,
//! `log` with its filters, `init`, development certificates on a fresh
//! checkout, and a clean exit on SIGTERM. Every test runs the real binary.
use crate::common;

use std::path::Path;
use std::process::Command;

use common::*;

const ALICE: &str = "alice@pec.alpha.test";
const BOB: &str = "bob@pec.alpha.test";

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

#[test]
fn check_config_accepts_a_good_config_and_names_every_problem() {
    let ca = TestCa::new();
    let p = alpha(&ca, &[]);
    let ok = p.cli(&["check-config"], "");
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok));
    // It names the listeners serve will open, and those that stay off.
    let says = String::from_utf8_lossy(&ok.stdout).into_owned();
    assert!(
        says.contains(&format!("admin 127.0.0.1:{}", p.admin))
            && says.contains(&format!("web 127.0.0.1:{}", p.web)),
        "{says}"
    );
    // And which node it is, the host name unless `[cluster] node` says.
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert!(
        says.contains(&format!(
            "cluster: this node is {:?}; its claims on work hold 30s",
            host.trim()
        )),
        "{says}"
    );
    let cfg = std::fs::read_to_string(p.config_path()).unwrap();
    let no_admin = cfg.replace(
        &format!("[admin]\nlisten = \"127.0.0.1:{}\"\n", p.admin),
        "",
    );
    assert_ne!(no_admin, cfg);
    std::fs::write(p.config_path(), &no_admin).unwrap();
    let ok = p.cli(&["check-config"], "");
    let says = String::from_utf8_lossy(&ok.stdout).into_owned();
    assert!(
        ok.status.success() && says.contains("off (no address written): admin"),
        "{says}"
    );
    std::fs::write(p.config_path(), &cfg).unwrap();

    // One unknown key and several bad values: each is reported with its key.
    let cfg = std::fs::read_to_string(p.config_path()).unwrap();
    let bad = cfg.replace("hostname = \"mx.pec.alpha.test\"", "hostname = \"bad host!\"")
        + "\n[limits]\nmax_recipients = 10\nmax_mesage_size = \"1MB\"\n\n[timers]\npreavviso_after = \"soon\"\n"
        + "\n[cluster]\nnode = \"two words\"\nlease = \"1s\"\n";
    std::fs::write(p.config_path(), bad).unwrap();
    let out = p.cli(&["check-config"], "");
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    for key in [
        "limits.max_mesage_size",
        "provider.hostname",
        "limits.max_recipients",
        "timers.preavviso_after",
        "cluster.node",
        "cluster.lease",
    ] {
        assert!(
            t.lines().any(|l| l.contains(key)),
            "{key} not reported in:\n{t}"
        );
    }
}

#[test]
fn check_config_warns_of_an_admin_listener_on_every_interface() {
    let ca = TestCa::new();
    let p = alpha(&ca, &[]);
    let cfg = std::fs::read_to_string(p.config_path()).unwrap();
    let loopback = format!("listen = \"127.0.0.1:{}\"", p.admin);
    assert!(cfg.contains(&loopback), "{cfg}");
    let ok = p.cli(&["check-config"], "");
    assert!(!text(&ok).contains("admin.listen"), "{}", text(&ok));
    for any in ["0.0.0.0", "[::]"] {
        let open = format!("listen = \"{any}:{}\"", p.admin);
        std::fs::write(p.config_path(), cfg.replace(&loopback, &open)).unwrap();
        let out = p.cli(&["check-config"], "");
        let t = text(&out);
        assert_eq!(out.status.code(), Some(0), "a warning, not an error: {t}");
        let line = t
            .lines()
            .find(|l| l.contains("warning: admin.listen"))
            .unwrap_or_else(|| panic!("{any}: no warning:\n{t}"));
        assert!(
            line.contains("every interface")
                && line.contains("/metrics and /health")
                && line.contains("without authentication"),
            "{line}"
        );
    }
}

/// AUTH PLAIN over implicit TLS; the reply code.
fn auth_code(p: &TestProvider, user: &str, password: &str) -> u16 {
    let mut c = SecureSmtp::connect(p.submissions, &p.ca_pem, true);
    c.ehlo_auth(user, password).0
}

#[test]
fn user_add_passwd_del_list() {
    let ca = TestCa::new();
    let mut p = alpha(&ca, &["alice"]);
    let carol = "carol@pec.alpha.test";
    let out = p.cli(
        &["user", "add", carol, "--password-stdin"],
        "first password\n",
    );
    assert!(out.status.success(), "{}", text(&out));
    let maildir = p.path().join("data/mail/pec.alpha.test/carol");
    for sub in ["new", "cur", "tmp"] {
        assert!(maildir.join(sub).is_dir(), "{sub}/ of carol's Maildir");
    }
    let dup = p.cli(
        &["user", "add", carol, "--password-stdin"],
        "another password\n",
    );
    assert!(!dup.status.success(), "adding twice must fail");
    let foreign = p.cli(
        &["user", "add", "eve@elsewhere.test", "--password-stdin"],
        "x\n",
    );
    assert!(!foreign.status.success(), "a domain we do not serve");
    let list = p.cli(&["user", "list"], "");
    let l = String::from_utf8_lossy(&list.stdout);
    assert!(
        l.lines()
            .any(|x| x.split_whitespace().next() == Some(ALICE)),
        "{l}"
    );
    assert!(
        l.lines()
            .any(|x| x.split_whitespace().next() == Some(carol)),
        "{l}"
    );

    p.start();
    assert_eq!(auth_code(&p, carol, "first password"), 235);
    let out = p.cli(
        &["user", "passwd", carol, "--password-stdin"],
        "second password\n",
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(auth_code(&p, carol, "first password"), 535, "old password");
    assert_eq!(auth_code(&p, carol, "second password"), 235, "new password");
    let missing = p.cli(
        &[
            "user",
            "passwd",
            "nobody@pec.alpha.test",
            "--password-stdin",
        ],
        "another password\n",
    );
    assert!(!missing.status.success());

    let out = p.cli(&["user", "del", carol], "");
    assert!(out.status.success(), "{}", text(&out));
    let list = p.cli(&["user", "list"], "");
    let l = String::from_utf8_lossy(&list.stdout);
    assert!(!l.contains(carol) && l.contains(ALICE), "{l}");
    assert_eq!(auth_code(&p, carol, "second password"), 535, "deleted user");
    assert_eq!(p.stop().and_then(|s| s.code()), Some(0));
}

fn identificativo_of(reply: &str) -> String {
    reply
        .split("identificativo ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("no identificativo in {reply:?}"))
        .to_string()
}

#[tokio::test]
async fn log_filters_oldest_first_and_survives_restart() {
    let ca = TestCa::new();
    let mut p = alpha(&ca, &["alice", "bob", "carol"]);
    p.start();
    let m1 = message(ALICE, &[BOB], &[], "Primo", "", "uno");
    let m2 = message(ALICE, &["carol@pec.alpha.test"], &[], "Secondo", "", "due");
    let id1 = identificativo_of(&p.submit_raw(ALICE, &[BOB], &m1, false).await.unwrap());
    let id2 = identificativo_of(
        &p.submit_raw(ALICE, &["carol@pec.alpha.test"], &m2, false)
            .await
            .unwrap(),
    );
    p.wait_messages(ALICE, "X-Ricevuta", "avvenuta-consegna", 2);
    // Storing the accettazione and the consegna in alice's box ends a flow.
    p.wait_for("both flows logged", 30, || {
        let ev = p.log_events(&[]);
        (ev.iter().filter(|e| e["event"] == "deposito").count() >= 4).then_some(())
    });

    let by_id = p.log_events(&["--id", &id1]);
    let kinds: Vec<&str> = by_id.iter().map(|e| e["event"].as_str().unwrap()).collect();
    for k in ["accettazione", "busta-trasporto", "avvenuta-consegna"] {
        assert!(kinds.contains(&k), "{k} not in {kinds:?}");
    }
    assert!(by_id.iter().all(|e| e["identificativo"] == id1.as_str()));
    assert_eq!(kinds[0], "accettazione", "oldest first: {kinds:?}");
    let ts: Vec<i64> = by_id.iter().map(|e| e["ts"].as_i64().unwrap()).collect();
    assert!(ts.windows(2).all(|w| w[0] <= w[1]), "{ts:?}");

    let msgid1 = header(&m1, "Message-ID").unwrap();
    let by_msgid = p.log_events(&["--msgid", &msgid1]);
    assert!(!by_msgid.is_empty());
    // Every row of that message, as --id gives them (issue 10 §5): rows
    // without the msgid column (a deposito) belong to it by identificativo.
    assert!(by_msgid.iter().all(|e| e["identificativo"] == id1.as_str()
        && (e["msgid"].is_null() || e["msgid"] == msgid1.as_str())));
    // (Read after --id: later events of the message may have come since.)
    assert!(by_msgid.len() >= by_id.len(), "{by_msgid:?}");
    assert!(by_msgid.iter().any(|e| e["event"] == "accettazione"));
    // Without angle brackets too.
    assert_eq!(
        p.log_events(&["--msgid", msgid1.trim_matches(['<', '>'])])
            .len(),
        by_msgid.len()
    );

    let by_addr = p.log_events(&["--address", BOB]);
    assert!(!by_addr.is_empty());
    assert!(by_addr.iter().all(|e| e["identificativo"] != id2.as_str()));
    assert!(by_addr.iter().all(|e| {
        let s = format!("{} {}", e["sender"], e["recipients"]).to_ascii_lowercase();
        s.contains(BOB)
    }));

    // Human format: one line per event, oldest first, with the identificativo.
    let human = p.cli(&["log", "--id", &id1], "");
    assert!(human.status.success());
    let lines: Vec<String> = String::from_utf8_lossy(&human.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(lines.len(), by_id.len());
    assert!(lines[0].contains("accettazione") && lines[0].contains(&id1));
    // Each line starts with the time in Italian time and its offset; the
    // JSON has the same instant in ISO 8601.
    let ts0 = by_id[0]["ts"].as_i64().unwrap();
    assert!(
        lines[0].starts_with(&format!("{} accettazione", pecd::pec::clock::human_ms(ts0))),
        "{}",
        lines[0]
    );
    assert_eq!(
        by_id[0]["time"],
        pecd::pec::clock::iso8601_ms(ts0).as_str(),
        "{}",
        by_id[0]
    );

    // --event, repeatable: any of the kinds named.
    let two = p.log_events(&["--event", "accettazione", "--event", "busta-trasporto"]);
    let kinds: std::collections::BTreeSet<&str> =
        two.iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert_eq!(
        kinds.into_iter().collect::<Vec<_>>(),
        ["accettazione", "busta-trasporto"]
    );
    assert_eq!(two.len(), 4, "two of each: {two:?}");
    let bad = p.cli(&["log", "--event", "virsu"], "");
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("virsu") && err.contains("rilevazione-virus"),
        "{err}"
    );
    // --from / --to: days and times in Italian time, as printed.
    let all = p.log_events(&[]);
    let first_ts = all[0]["ts"].as_i64().unwrap();
    let last_ts = all.last().unwrap()["ts"].as_i64().unwrap();
    let today = &pecd::pec::clock::iso8601_ms(first_ts)[..10];
    assert_eq!(
        p.log_events(&["--from", today, "--to", today]).len(),
        all.len()
    );
    let day_before = pecd::pec::clock::iso8601_ms(first_ts - 86_400_000)[..10].to_string();
    let none = p.cli(&["log", "--to", &day_before], "");
    assert!(none.status.success() && none.stdout.is_empty());
    assert!(String::from_utf8_lossy(&none.stderr).contains("no PEC log events match"));
    // A time is its second: `--from` the last event's second has it, the
    // next second has nothing; `--to` the first event's second has it, the
    // second before has nothing.
    let at = |ms: i64| pecd::pec::clock::human_ms(ms);
    let iso = |ms: i64| pecd::pec::clock::iso8601_ms(ms);
    let tail = p.log_events(&["--from", &at(last_ts)]);
    assert!(tail.iter().any(|e| e["ts"] == last_ts), "{tail:?}");
    assert!(p.log_events(&["--from", &at(last_ts + 1000)]).is_empty());
    let head = p.log_events(&["--to", &iso(first_ts)]);
    assert!(head.iter().any(|e| e["ts"] == first_ts), "{head:?}");
    assert!(p.log_events(&["--to", &iso(first_ts - 1000)]).is_empty());
    let bad = p.cli(&["log", "--from", "yesterday"], "");
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("--from"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );

    // The log survives a restart, unchanged.
    let before = p.log_events(&[]);
    assert_eq!(p.stop().and_then(|s| s.code()), Some(0));
    let stopped = p.log_events(&[]);
    assert_eq!(stopped, before, "readable while the daemon is down");
    p.start();
    let after = p.log_events(&[]);
    assert_eq!(&after[..before.len()], &before[..]);
    assert_eq!(p.stop().and_then(|s| s.code()), Some(0));
}

#[test]
fn init_writes_a_provider_that_check_config_accepts_and_serve_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("prov");
    let out = Command::new(pecd_bin())
        .args(["init"])
        .arg(&dir)
        .args([
            "--domain",
            "pec.example.test",
            "--name",
            "Example PEC S.p.A.",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("user add"), "prints what to do next");
    let cfg = dir.join("pecd.toml");
    for f in [
        "pecd.toml",
        "index.toml",
        "certs/ca.pem",
        "certs/signing.pem",
        "certs/signing.key",
        "certs/tls.pem",
        "certs/tls.key",
    ] {
        assert!(dir.join(f).is_file(), "{f} written");
    }
    let cfg_text = std::fs::read_to_string(&cfg).unwrap();
    assert!(cfg_text.contains("\"pec.example.test\""), "{cfg_text}");
    assert!(cfg_text.contains("Example PEC S.p.A."), "{cfg_text}");
    // The signing certificate is for posta-certificata@<domain>.
    let x509 = Command::new("openssl")
        .args(["x509", "-noout", "-ext", "subjectAltName", "-in"])
        .arg(dir.join("certs/signing.pem"))
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&x509.stdout).contains("posta-certificata@pec.example.test"),
        "{}",
        text(&x509)
    );

    let check_config = || {
        Command::new(pecd_bin())
            .arg("--config")
            .arg(&cfg)
            .arg("check-config")
            .output()
            .unwrap()
    };
    // serve refuses until the operator names a TSA, or says "none".
    let check = check_config();
    assert_eq!(check.status.code(), Some(1), "{}", text(&check));
    assert!(
        text(&check).contains("log.tsa_url: not set"),
        "{}",
        text(&check)
    );
    assert!(
        cfg_text
            .trim_end()
            .ends_with("# tsa_ca = \"certs/tsa-ca.pem\""),
        "{cfg_text}"
    );
    std::fs::write(&cfg, format!("{cfg_text}tsa_url = \"none\"\n")).unwrap();
    let check = check_config();
    assert_eq!(check.status.code(), Some(0), "{}", text(&check));

    // A second init into the same folder refuses to overwrite it.
    let again = Command::new(pecd_bin())
        .args(["init"])
        .arg(&dir)
        .args(["--domain", "pec.example.test"])
        .output()
        .unwrap();
    assert!(!again.status.success());

    // The standard ports of the written config may be taken or privileged here.
    let port = free_listen_ports(&cfg);
    let mut d = Daemon::start(&cfg, &tmp.path().join("serve.log"));
    d.wait_port(port);
    let st = d.sigterm();
    assert_eq!(st.code(), Some(0), "SIGTERM exit:\n{}", d.output());
}

/// A checkout-like tree: `config/pecd.toml` and `config/index.toml` as
/// shipped (ports made free), no certificates.
fn checkout_like(generate: bool) -> (tempfile::TempDir, std::path::PathBuf, u16) {
    let tmp = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::create_dir_all(tmp.path().join("config")).unwrap();
    std::fs::create_dir_all(tmp.path().join("certs")).unwrap();
    let cfg = tmp.path().join("config/pecd.toml");
    let shipped = std::fs::read_to_string(root.join("config/pecd.toml")).unwrap();
    assert!(shipped.contains("generate_if_missing = true"));
    let text = if generate {
        shipped
    } else {
        shipped.replace("generate_if_missing = true", "generate_if_missing = false")
    };
    std::fs::write(&cfg, text).unwrap();
    std::fs::copy(
        root.join("config/index.toml"),
        tmp.path().join("config/index.toml"),
    )
    .unwrap();
    let port = free_listen_ports(&cfg);
    (tmp, cfg, port)
}

#[test]
fn fresh_checkout_generates_dev_certificates_with_a_warning() {
    let (tmp, cfg, port) = checkout_like(true);
    let mut d = Daemon::start(&cfg, &tmp.path().join("serve.log"));
    d.wait_port(port);
    for f in ["ca.pem", "signing.pem", "signing.key", "tls.pem", "tls.key"] {
        assert!(tmp.path().join("certs").join(f).is_file(), "certs/{f}");
    }
    let out = d.output();
    assert!(
        out.lines()
            .any(|l| l.contains("WARN") && l.to_ascii_lowercase().contains("generat")),
        "no warning about generated certificates:\n{out}"
    );
    // The generated TLS certificate is really served, from the generated CA.
    let mut c = SecureSmtp::connect(port, &tmp.path().join("certs/ca.pem"), false);
    assert_eq!(c.cmd("EHLO client.test").0, 250);
    c.starttls();
    assert_eq!(c.cmd("EHLO client.test").0, 250);
    drop(c);
    let st = d.sigterm();
    assert_eq!(st.code(), Some(0), "SIGTERM exit:\n{}", d.output());
}

#[test]
fn missing_certificates_without_generation_refuse_to_start() {
    let (tmp, cfg, _port) = checkout_like(false);
    let mut d = Daemon::start(&cfg, &tmp.path().join("serve.log"));
    let st = d.wait_exit(30);
    let out = d.output();
    assert!(!st.success(), "started without certificates:\n{out}");
    assert!(
        out.contains("signing.certificate") && out.contains("does not exist"),
        "unclear error:\n{out}"
    );
    assert!(!tmp.path().join("certs/signing.pem").exists());
}
