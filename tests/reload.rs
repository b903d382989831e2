//! Reload without a restart (issue 10 §4): `SIGHUP` to a real daemon renews
//! the TLS certificate of every listener (new connections get it, open
//! sessions go on), the signing certificate, the limits and the routes;
//! users need no reload; a configuration that fails validation is refused
//! whole and the running one stays in force.
use crate::common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use openssl::ssl::{SslConnector, SslMethod, SslStream};

const ALICE: &str = "alice@pec.alpha.test";
const BOB: &str = "bob@pec.beta.test";

fn alpha(ca: &TestCa, extra: &str) -> TestProvider {
    let mut spec = ProviderSpec::new("Alpha PEC S.p.A.", "pec.alpha.test", &["alice"]);
    spec.extra_config = extra.to_string();
    TestProvider::prepare(ca, &spec)
}

fn tls(tcp: TcpStream, ca: &Path) -> SslStream<TcpStream> {
    let mut b = SslConnector::builder(SslMethod::tls_client()).unwrap();
    b.set_ca_file(ca).unwrap();
    b.build().connect("127.0.0.1", tcp).unwrap()
}

/// A certificate's SHA-256 fingerprint, in hex (short enough to read in a
/// failed assertion).
fn fingerprint(c: &openssl::x509::X509Ref) -> String {
    let d = c.digest(openssl::hash::MessageDigest::sha256()).unwrap();
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// The certificate a TLS peer presented.
fn presented(s: &SslStream<TcpStream>) -> String {
    fingerprint(&s.ssl().peer_certificate().unwrap())
}

/// The certificate in a PEM file.
fn cert_in(pem_file: &Path) -> String {
    fingerprint(&openssl::x509::X509::from_pem(&std::fs::read(pem_file).unwrap()).unwrap())
}

/// Install a certificate and key the way an operator's renewal does: each
/// file written beside and renamed over the old one.
fn install(cert: &pecd::certs::CertKey, pem: &Path, key: &Path) {
    let (tmp_pem, tmp_key) = (pem.with_extension("new"), key.with_extension("newkey"));
    cert.write(&tmp_pem, &tmp_key).unwrap();
    std::fs::rename(&tmp_key, key).unwrap();
    std::fs::rename(&tmp_pem, pem).unwrap();
}

/// A POP3S connection past its greeting.
fn pop3s_connect(port: u16, ca: &Path) -> SslStream<TcpStream> {
    let mut s = tls(TcpStream::connect(("127.0.0.1", port)).unwrap(), ca);
    assert!(read_line(&mut s).starts_with("+OK"));
    s
}

/// A TLS connection to the webmail (the handshake is all this test needs).
fn web_connect(port: u16, ca: &Path) -> SslStream<TcpStream> {
    tls(TcpStream::connect(("127.0.0.1", port)).unwrap(), ca)
}

/// A hand-driven IMAP client over TLS (implicit or after STARTTLS).
struct Imap {
    s: SslStream<TcpStream>,
    tag: u32,
}

fn read_line(r: &mut impl Read) -> String {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while !line.ends_with(b"\r\n") {
        let n = r.read(&mut b).unwrap();
        assert_eq!(
            n,
            1,
            "connection closed after {:?}",
            String::from_utf8_lossy(&line)
        );
        line.push(b[0]);
    }
    String::from_utf8_lossy(&line[..line.len() - 2]).into_owned()
}

impl Imap {
    fn implicit(port: u16, ca: &Path) -> Imap {
        let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut s = tls(tcp, ca);
        let greeting = read_line(&mut s);
        assert!(greeting.starts_with("* OK"), "{greeting}");
        Imap { s, tag: 0 }
    }

    fn starttls(port: u16, ca: &Path) -> Imap {
        let mut tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let greeting = read_line(&mut tcp);
        assert!(greeting.starts_with("* OK"), "{greeting}");
        tcp.write_all(b"s STARTTLS\r\n").unwrap();
        loop {
            let l = read_line(&mut tcp);
            if l.starts_with("s ") {
                assert!(l.starts_with("s OK"), "{l}");
                break;
            }
        }
        Imap {
            s: tls(tcp, ca),
            tag: 0,
        }
    }

    /// Send one command; the untagged lines and the tagged status line.
    fn cmd(&mut self, c: &str) -> (Vec<String>, String) {
        self.tag += 1;
        let tag = format!("t{}", self.tag);
        self.s
            .write_all(format!("{tag} {c}\r\n").as_bytes())
            .unwrap();
        let mut untagged = Vec::new();
        loop {
            let l = read_line(&mut self.s);
            if let Some(rest) = l.strip_prefix(&format!("{tag} ")) {
                return (untagged, rest.to_string());
            }
            untagged.push(l);
        }
    }

    /// A command that must answer OK; its untagged lines.
    fn ok(&mut self, c: &str) -> Vec<String> {
        let (u, status) = self.cmd(c);
        assert!(status.starts_with("OK"), "{c}: {status} after {u:?}");
        u
    }

    fn login(&mut self, user: &str) {
        self.ok(&format!("LOGIN {user} \"{PASSWORD}\""));
    }
}

fn smtp_cert(c: &SecureSmtp) -> String {
    match &c.stream {
        RawStream::Tls(s) => presented(s),
        _ => panic!("not a TLS session"),
    }
}

/// `configuration reloaded` lines in the log.
fn reloaded(p: &TestProvider) -> Vec<String> {
    p.log()
        .lines()
        .filter(|l| l.contains("configuration reloaded"))
        .map(str::to_string)
        .collect()
}

/// SIGHUP, and wait for the daemon to log that the reload was applied.
fn reload(p: &TestProvider) -> String {
    let n = reloaded(p).len();
    p.sighup();
    p.wait_for("configuration reloaded", 20, || reloaded(p).get(n).cloned())
}

/// SIGHUP, and wait for the daemon to log that the reload was refused.
fn refused_reload(p: &TestProvider) -> String {
    let count = |p: &TestProvider| {
        p.log()
            .matches("the running configuration stays in force")
            .count()
    };
    let n = count(p);
    p.sighup();
    p.wait_for("reload refused", 20, || (count(p) > n).then_some(()));
    p.log()
}

fn assert_running(p: &mut TestProvider) {
    let st = p.child.as_mut().unwrap().try_wait().unwrap();
    assert!(st.is_none(), "pecd exited: {st:?}\n{}", p.log());
}

/// The `SIZE` an EHLO on the submission port advertises (before STARTTLS).
fn ehlo_size(c: &mut SecureSmtp) -> String {
    let (code, text) = c.cmd("EHLO client.test");
    assert_eq!(code, 250, "{text}");
    text.lines()
        .find_map(|l| l.strip_prefix("SIZE "))
        .unwrap_or_else(|| panic!("no SIZE in {text}"))
        .to_string()
}

/// The certificate that signed an S/MIME message, according to openssl(1).
fn signer_of(msg: &[u8], ca: &Path) -> String {
    let dir = tempfile::tempdir().unwrap();
    let (m, signer) = (dir.path().join("m.eml"), dir.path().join("signer.pem"));
    std::fs::write(&m, msg).unwrap();
    let out = Command::new("openssl")
        .args(["smime", "-verify", "-CAfile"])
        .arg(ca)
        .arg("-in")
        .arg(&m)
        .arg("-signer")
        .arg(&signer)
        .args(["-out", "/dev/null"])
        .output()
        .expect("openssl CLI");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    cert_in(&signer)
}

/// The test: replace the TLS certificate, send SIGHUP; every new
/// TLS connection (IMAPS, IMAP STARTTLS, SMTPS, SMTP STARTTLS) presents the
/// new certificate, while the IMAP and SMTP sessions opened before go on.
#[test]
fn a_renewed_tls_certificate_reaches_new_connections_and_open_sessions_go_on() {
    let ca = TestCa::new();
    let mut p = alpha(&ca, "");
    p.start();
    let (pem, key) = (
        p.path().join("certs/tls.pem"),
        p.path().join("certs/tls.key"),
    );
    let old = cert_in(&pem);

    let mut imaps = Imap::implicit(p.imaps, &p.ca_pem);
    assert_eq!(presented(&imaps.s), old);
    imaps.login(ALICE);
    imaps.ok("SELECT INBOX");
    let mut imap = Imap::starttls(p.imap, &p.ca_pem);
    imap.login(ALICE);
    let mut smtps = SecureSmtp::connect(p.submissions, &p.ca_pem, true);
    assert_eq!(smtps.ehlo_auth(ALICE, PASSWORD).0, 235);
    let mut smtp = SecureSmtp::connect(p.submission, &p.ca_pem, false);
    smtp.starttls();
    assert_eq!(smtp.ehlo_auth(ALICE, PASSWORD).0, 235);
    assert_eq!(smtp_cert(&smtps), old);
    let mut pop3s = pop3s_connect(p.pop3s, &p.ca_pem);
    assert_eq!(presented(&pop3s), old);
    assert_eq!(presented(&web_connect(p.web, &p.ca_pem)), old);

    let renewed = pecd::certs::generate_tls(&ca.ca, "mx.pec.alpha.test").unwrap();
    install(&renewed, &pem, &key);
    let new = fingerprint(&renewed.cert);
    assert_ne!(new, old);
    let line = reload(&p);
    assert!(line.contains("tls.certificate"), "{line}");

    // Every TLS listener hands the new certificate to a new connection.
    assert_eq!(
        presented(&Imap::implicit(p.imaps, &p.ca_pem).s),
        new,
        "imaps"
    );
    let mut fresh = Imap::starttls(p.imap, &p.ca_pem);
    assert_eq!(presented(&fresh.s), new, "imap STARTTLS");
    fresh.login(ALICE);
    let mut c = SecureSmtp::connect(p.submissions, &p.ca_pem, true);
    assert_eq!(smtp_cert(&c), new, "submissions");
    assert_eq!(c.ehlo_auth(ALICE, PASSWORD).0, 235);
    let mut c = SecureSmtp::connect(p.submission, &p.ca_pem, false);
    c.starttls();
    assert_eq!(smtp_cert(&c), new, "submission STARTTLS");
    // The inbound listener offers STARTTLS with the same certificate.
    let mut c = SecureSmtp::connect(p.inbound, &p.ca_pem, false);
    assert_eq!(c.cmd("EHLO peer.test").0, 250);
    c.starttls();
    assert_eq!(smtp_cert(&c), new, "inbound STARTTLS");
    assert_eq!(presented(&pop3s_connect(p.pop3s, &p.ca_pem)), new, "pop3s");
    let mut stls = TcpStream::connect(("127.0.0.1", p.pop3)).unwrap();
    assert!(read_line(&mut stls).starts_with("+OK"));
    stls.write_all(b"STLS\r\n").unwrap();
    assert!(read_line(&mut stls).starts_with("+OK"));
    assert_eq!(presented(&tls(stls, &p.ca_pem)), new, "pop3 STLS");
    assert_eq!(presented(&web_connect(p.web, &p.ca_pem)), new, "web");
    // The POP3 session opened before goes on with its certificate.
    pop3s.write_all(b"CAPA\r\n").unwrap();
    assert!(read_line(&mut pop3s).starts_with("+OK"));
    assert_eq!(presented(&pop3s), old);

    // The sessions opened before go on, on the certificate they started with.
    assert_eq!(presented(&imaps.s), old);
    imaps.ok("NOOP");
    imap.ok("NOOP");
    assert_eq!(smtp.cmd("NOOP").0, 250);
    assert_eq!(smtps.cmd(&format!("MAIL FROM:<{ALICE}>")).0, 250);
    assert_eq!(smtps.cmd(&format!("RCPT TO:<{ALICE}>")).0, 250);
    assert_eq!(smtps.cmd("DATA").0, 354);
    let m = message(ALICE, &[ALICE], &[], "Dopo il rinnovo", "", "ciao");
    smtps.send(&m);
    let (code, text) = smtps.cmd(".");
    assert_eq!(code, 250, "{text}");
    p.wait_messages(ALICE, "X-Ricevuta", "accettazione", 1);
    let status = imaps.ok("SELECT INBOX");
    assert!(
        status
            .iter()
            .any(|l| l.ends_with(" EXISTS") && l != "* 0 EXISTS"),
        "{status:?}"
    );
    let fetched = imaps.ok("FETCH 1 (FLAGS)");
    assert!(
        fetched.iter().any(|l| l.starts_with("* 1 FETCH")),
        "{fetched:?}"
    );
    let (bye, status) = imaps.cmd("LOGOUT");
    assert!(status.starts_with("OK") && bye.iter().any(|l| l.starts_with("* BYE")));
    p.stop();
}

/// A configuration with mistakes is refused whole: every problem is logged
/// with the file's name, the daemon keeps running with the old certificate
/// and the old limits; once fixed, the same SIGHUP applies it all.
#[test]
fn a_configuration_that_fails_validation_is_refused_whole() {
    let ca = TestCa::new();
    let mut p = alpha(&ca, "[limits]\nmax_message_size = \"2MB\"\n");
    p.start();
    let cfg = p.config_path();
    let good = std::fs::read_to_string(&cfg).unwrap();
    let (pem, key) = (
        p.path().join("certs/tls.pem"),
        p.path().join("certs/tls.key"),
    );
    let old = cert_in(&pem);
    let renewed = pecd::certs::generate_tls(&ca.ca, "mx.pec.alpha.test").unwrap();
    install(&renewed, &pem, &key);
    let new = fingerprint(&renewed.cert);

    let bad = good
        .replace("key = \"certs/tls.key\"", "key = \"certs/missing.key\"")
        .replace(
            "max_message_size = \"2MB\"",
            "max_message_size = \"lots\"\nmax_recipients = 10",
        );
    assert_ne!(bad, good);
    std::fs::write(&cfg, &bad).unwrap();
    let log = refused_reload(&p);
    assert_running(&mut p);
    let name = cfg.display().to_string();
    for key in [
        "tls.key",
        "limits.max_message_size",
        "limits.max_recipients",
    ] {
        assert!(
            log.lines()
                .any(|l| l.contains("reload refused") && l.contains(&format!("{name}: {key}"))),
            "no refusal naming {name}: {key} in\n{log}"
        );
    }
    assert!(reloaded(&p).is_empty(), "{:?}", reloaded(&p));
    let mut imaps = Imap::implicit(p.imaps, &p.ca_pem);
    assert_eq!(
        presented(&imaps.s),
        old,
        "the refused reload changed the certificate"
    );
    imaps.login(ALICE);
    let mut c = SecureSmtp::connect(p.submission, &p.ca_pem, false);
    assert_eq!(ehlo_size(&mut c), "2000000");

    // Not TOML at all: refused too, with the parser's message.
    std::fs::write(&cfg, "[provider\nname = ").unwrap();
    let log = refused_reload(&p);
    assert_running(&mut p);
    assert!(
        log.lines().any(|l| l.contains("reload refused")
            && l.contains(&format!("{name}: TOML parse error at line 1"))),
        "{log}"
    );
    assert_eq!(presented(&Imap::implicit(p.imaps, &p.ca_pem).s), old);

    // Fixed: the same signal applies everything, and the session opened
    // during the refusals is still there.
    std::fs::write(&cfg, good.replace("\"2MB\"", "\"1MB\"")).unwrap();
    let line = reload(&p);
    assert!(
        line.contains("tls.certificate") && line.contains("limits"),
        "{line}"
    );
    assert_eq!(presented(&Imap::implicit(p.imaps, &p.ca_pem).s), new);
    let mut c = SecureSmtp::connect(p.submission, &p.ca_pem, false);
    assert_eq!(ehlo_size(&mut c), "1000000");
    imaps.ok("NOOP");
    p.stop();
}

/// New limits reach new sessions (an open one keeps its own), a new signing
/// certificate signs the next receipt, and users added or removed with
/// `pecd user` while the daemon runs log in, or not, without any reload.
#[test]
fn limits_and_the_signing_certificate_apply_to_what_comes_next() {
    let ca = TestCa::new();
    let mut p = alpha(&ca, "");
    p.start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut before = SecureSmtp::connect(p.submission, &p.ca_pem, false);
    assert_eq!(ehlo_size(&mut before), "30000000");
    let m1 = message(ALICE, &[ALICE], &[], "Prima", "", "1");
    rt.block_on(p.submit_raw(ALICE, &[ALICE], &m1, false))
        .unwrap();
    let first = p.wait_messages(ALICE, "X-Ricevuta", "accettazione", 1);
    let old_signer = cert_in(&p.path().join("certs/signing.pem"));
    assert_eq!(signer_of(&first[0], &ca.pem_path()), old_signer);

    let signing =
        pecd::certs::generate_signing(&ca.ca, "Alpha PEC S.p.A.", "pec.alpha.test").unwrap();
    install(
        &signing,
        &p.path().join("certs/signing.pem"),
        &p.path().join("certs/signing.key"),
    );
    let new_signer = fingerprint(&signing.cert);
    // With a key only a restart applies: warned about, kept, the rest applied.
    p.append_config("[limits]\nmax_message_size = \"1MB\"\n\n[queue]\nworkers = 3\n");
    let line = reload(&p);
    assert!(
        p.log()
            .contains("queue.workers changed, but only a restart applies it"),
        "{}",
        p.log()
    );
    assert!(
        line.contains("limits") && line.contains("signing.certificate"),
        "{line}"
    );

    let mut after = SecureSmtp::connect(p.submission, &p.ca_pem, false);
    assert_eq!(ehlo_size(&mut after), "1000000");
    after.starttls();
    assert_eq!(after.ehlo_auth(ALICE, PASSWORD).0, 235);
    let (code, text) = after.cmd(&format!("MAIL FROM:<{ALICE}> SIZE=2000000"));
    assert_eq!(code, 552, "{text}");
    // The session opened before the reload keeps the limits it started with.
    assert_eq!(ehlo_size(&mut before), "30000000");

    let m2 = message(ALICE, &[ALICE], &[], "Dopo", "", "2");
    rt.block_on(p.submit_raw(ALICE, &[ALICE], &m2, false))
        .unwrap();
    let both = p.wait_messages(ALICE, "X-Ricevuta", "accettazione", 2);
    let signers: Vec<String> = both.iter().map(|m| signer_of(m, &ca.pem_path())).collect();
    assert!(
        signers.contains(&old_signer) && signers.contains(&new_signer),
        "one receipt per signing certificate"
    );
    let second = both
        .iter()
        .find(|m| header(m, "Subject").is_some_and(|s| s.contains("Dopo")))
        .unwrap();
    assert_eq!(signer_of(second, &ca.pem_path()), new_signer);

    // Users: read from the database at each login, so already live.
    let dave = "dave@pec.alpha.test";
    p.add_user(dave, PASSWORD);
    let mut s = Imap::implicit(p.imaps, &p.ca_pem);
    s.login(dave);
    let out = p.cli(&["user", "del", dave], "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut s = Imap::implicit(p.imaps, &p.ca_pem);
    let (_, status) = s.cmd(&format!("LOGIN {dave} \"{PASSWORD}\""));
    assert!(
        status.starts_with("NO"),
        "a deleted user logged in: {status}"
    );
    p.stop();
}

/// A `[[route]]` added by a reload is used by the next attempt of a relay
/// job that had been failing on the old route.
#[test]
fn a_changed_route_is_used_by_the_next_relay_attempt() {
    let ca = TestCa::new();
    let retry = "[queue]\nretry_initial = \"1s\"\nretry_max = \"1s\"\n";
    let mut a = alpha(&ca, retry);
    let mut b = TestProvider::prepare(
        &ca,
        &ProviderSpec::new("Beta PEC S.p.A.", "pec.beta.test", &["bob"]),
    );
    let index = format!("{}{}", a.index_entry(), b.index_entry());
    a.write_index(&index);
    b.write_index(&index);
    b.route_to(&a);
    let dead = free_port();
    let dead_route = format!("next_hop = \"127.0.0.1:{dead}\"");
    a.append_config(&format!(
        "[[route]]\ndomain = \"pec.beta.test\"\n{dead_route}\n"
    ));
    a.start();
    b.start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let m = message(ALICE, &[BOB], &[], "Instradamento", "", "x");
    let reply = rt.block_on(a.submit_raw(ALICE, &[BOB], &m, false)).unwrap();
    let id = ident_of(&reply);
    a.wait_for("a failed relay attempt", 30, || {
        queue_jobs(&a)
            .into_iter()
            .find(|j| j["kind"] == "relay" && j["attempts"].as_i64().unwrap_or(0) >= 1)
    });
    let cfg = a.config_path();
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        text.replace(
            &dead_route,
            &format!("next_hop = \"127.0.0.1:{}\"", b.inbound),
        ),
    )
    .unwrap();
    let line = reload(&a);
    assert!(line.contains("route"), "{line}");
    let busta = b.wait_messages(BOB, "X-Trasporto", "posta-certificata", 1);
    assert_eq!(daticert(&busta[0]).identificativo, id);
    a.wait_for("the delivery receipt", 30, || {
        (!receipts_for(&a, ALICE, "avvenuta-consegna", &id).is_empty()).then_some(())
    });
    a.stop();
    b.stop();
}

/// A new inbound connection and the first line it gets.
fn inbound_greeting(port: u16) -> (String, TcpStream) {
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while tcp.read(&mut b).unwrap_or(0) == 1 && b[0] != b'\n' {
        line.push(b[0]);
    }
    (String::from_utf8_lossy(&line).into_owned(), tcp)
}

/// A network added to `[limits] peer_networks` by a reload gets
/// `max_connections_per_peer` on the reception point from the next connection.
#[test]
fn a_peer_network_added_by_a_reload_gets_its_cap_on_the_next_connections() {
    let ca = TestCa::new();
    let mut p = alpha(&ca, "[limits]\nmax_connections_per_ip = 2\n");
    p.start();
    // Sessions held open keep their slots. The start's readiness probe of
    // this port holds one until its session has seen the probe hang up: a
    // 421 before that is the probe's slot, so the first two wait for it.
    let mut held = Vec::new();
    for _ in 0..2 {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let (l, tcp) = loop {
            let (l, tcp) = inbound_greeting(p.inbound);
            if !l.starts_with("421") || std::time::Instant::now() > deadline {
                break (l, tcp);
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        };
        assert!(l.starts_with("220"), "{l}");
        held.push(tcp);
    }
    let (l, _) = inbound_greeting(p.inbound);
    assert!(l.starts_with("421 4.7.0"), "{l}");
    let cfg = std::fs::read_to_string(p.config_path()).unwrap();
    let cfg = cfg.replace(
        "max_connections_per_ip = 2\n",
        "max_connections_per_ip = 2\npeer_networks = [\"127.0.0.0/8\"]\nmax_connections_per_peer = 4\n",
    );
    std::fs::write(p.config_path(), cfg).unwrap();
    let line = reload(&p);
    assert!(line.contains("limits"), "{line}");
    // The two sessions opened before still count: two more, then 421.
    for i in 3..=4 {
        let (l, tcp) = inbound_greeting(p.inbound);
        assert!(l.starts_with("220"), "connection {i} after the reload: {l}");
        held.push(tcp);
    }
    let (l, _) = inbound_greeting(p.inbound);
    assert!(l.starts_with("421 4.7.0"), "{l}");
    drop(held);
    p.stop();
}
