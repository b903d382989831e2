//! Issue 12: virus checks with a real clamd (Debian `clamav-daemon`) and
//! blocked attachment extensions, against real `pecd` processes on loopback.
use crate::common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// The standard EICAR test string, assembled at run time so that no file of
/// the repository trips a scanner.
fn eicar() -> String {
    let head = ["X5O!P%@AP[4\\PZX54(P^)7CC)7}$", "EICAR-STANDARD-"];
    let tail = ["ANTIVIRUS-TEST-", "FILE!$H+H*"];
    format!("{}{}{}{}", head[0], head[1], tail[0], tail[1])
}

/// The name our one-signature database gives it.
const SIGNATURE: &str = "Pecd.Test.EICAR";

/// A clamd of our own in the foreground: temporary config, a database of
/// one `.ndb` signature, a Unix socket in a temporary folder.
struct Clamd {
    dir: tempfile::TempDir,
    child: Option<Child>,
}

/// What docs/operations.md asks of clamd.conf: what clamd cannot open to
/// the end (nested past MaxRecursion, over a size limit) is flagged.
const RECOMMENDED: &str = "AlertExceedsMax yes\n";

impl Clamd {
    fn start() -> Clamd {
        Clamd::start_with_limit("100M")
    }

    /// A clamd whose `StreamMaxLength` is `limit` (clamd's size syntax).
    fn start_with_limit(limit: &str) -> Clamd {
        Clamd::start_conf(limit, RECOMMENDED)
    }

    /// A clamd with `extra` lines in its clamd.conf.
    fn start_conf(limit: &str, extra: &str) -> Clamd {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("db");
        std::fs::create_dir(&db).unwrap();
        let hex: String = eicar().bytes().map(|b| format!("{b:02x}")).collect();
        std::fs::write(db.join("pecd.ndb"), format!("{SIGNATURE}:0:*:{hex}\n")).unwrap();
        let conf = format!(
            "Foreground yes\nLocalSocket {}\nDatabaseDirectory {}\nStreamMaxLength {limit}\nLogFile {}\n{extra}",
            dir.path().join("clamd.sock").display(),
            db.display(),
            dir.path().join("clamd.log").display()
        );
        std::fs::write(dir.path().join("clamd.conf"), conf).unwrap();
        let mut c = Clamd { dir, child: None };
        c.run();
        c
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("clamd.sock")
    }

    fn run(&mut self) {
        let _ = std::fs::remove_file(self.socket());
        let child = Command::new("clamd")
            .arg("-c")
            .arg(self.dir.path().join("clamd.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("clamd (Debian package clamav-daemon) must be installed");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::os::unix::net::UnixStream::connect(self.socket()).is_err() {
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "clamd exited ({st}):\n{}",
                    std::fs::read_to_string(self.dir.path().join("clamd.log")).unwrap_or_default()
                );
            }
            assert!(Instant::now() < deadline, "clamd did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_file(self.socket());
    }
}

impl Drop for Clamd {
    fn drop(&mut self) {
        self.stop();
    }
}

const ALICE: &str = "alice@pec.alpha.test";
const BOB: &str = "bob@pec.alpha.test";

fn provider(ca: &TestCa, clamd: &Clamd) -> TestProvider {
    let mut spec = ProviderSpec::new("Alpha PEC S.p.A.", "pec.alpha.test", &["alice", "bob"]);
    spec.extra_config = format!(
        "[antivirus]\nclamd = \"unix:{}\"\ntimeout = \"10s\"\n",
        clamd.socket().display()
    );
    TestProvider::prepare(ca, &spec)
}

fn with_attachment(subject: &str, ctype: &str, disposition: &str, body: &str) -> Vec<u8> {
    format!(
        "From: {ALICE}\r\nTo: {BOB}\r\nSubject: {subject}\r\nMessage-ID: <{subject}@client.test>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\nin allegato\r\n--b1\r\nContent-Type: {ctype}\r\nContent-Disposition: {disposition}\r\n\r\n{body}\r\n--b1--\r\n"
    )
    .into_bytes()
}

fn notice_with_subject(p: &TestProvider, subject: &str) -> Vec<u8> {
    p.wait_for(&format!("notice {subject:?}"), 30, || {
        p.messages_with(ALICE, "X-Ricevuta", "non-accettazione")
            .into_iter()
            .find(|m| header(m, "Subject").as_deref() == Some(subject))
    })
}

#[tokio::test]
async fn infected_and_blocked_submissions_are_refused_with_signed_notices() {
    let ca = TestCa::new();
    let mut clamd = Clamd::start();
    let mut p = provider(&ca, &clamd);
    p.start();
    assert!(p.log().contains("virus checks on"), "{}", p.log());

    // A clean message goes through as before.
    let clean = message(ALICE, &[BOB], &[], "pulito", "", "niente di strano");
    p.submit_raw(ALICE, &[BOB], &clean, true).await.unwrap();
    p.wait_messages(BOB, "X-Trasporto", "posta-certificata", 1);

    // Infected: 550 5.7.1 naming the virus, a signed notice, nothing relayed.
    let infected = with_attachment(
        "fattura",
        "application/octet-stream; name=\"fattura.txt\"",
        "attachment; filename=\"fattura.txt\"",
        &eicar(),
    );
    let err = p
        .submit_raw(ALICE, &[BOB], &infected, true)
        .await
        .expect_err("an infected message was accepted");
    let text = err.to_string();
    assert!(text.contains("550") || text.contains("5.7.1"), "{text}");
    assert!(text.contains(SIGNATURE), "{text}");
    let notice = notice_with_subject(&p, "AVVISO DI NON ACCETTAZIONE PER VIRUS: fattura");
    assert_eq!(
        header(&notice, "X-VerificaSicurezza").as_deref(),
        Some("errore")
    );
    openssl_verify(&notice, &p.ca_pem).unwrap();
    xmllint_message(&notice).unwrap();
    let d = String::from_utf8(raw_daticert(&notice)).unwrap();
    assert!(d.contains("tipo=\"non-accettazione\""), "{d}");
    assert!(d.contains("errore=\"virus\""), "{d}");
    assert!(d.contains(SIGNATURE), "{d}");

    // Quarantined byte for byte, listed and shown.
    let rows = p.cli_json(&["quarantine", "list", "--json"]);
    assert_eq!(rows.len(), 1, "{rows:?}");
    // clamd adds `.UNOFFICIAL` to signatures of a database it did not sign.
    assert!(
        rows[0]["virus"].as_str().unwrap().starts_with(SIGNATURE),
        "{rows:?}"
    );
    assert_eq!(rows[0]["point"], "submission");
    let file = p
        .path()
        .join("data/quarantine")
        .join(rows[0]["file"].as_str().unwrap());
    // What the access point received: lettre's DATA adds a line end.
    let kept = std::fs::read(&file).unwrap();
    assert!(kept == infected || kept == [&infected[..], b"\r\n"].concat());
    let id = rows[0]["id"].to_string();
    let out = p.cli(&["quarantine", "show", &id], "");
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.ends_with(&kept), "show prints the message");
    // Backups carry the quarantine.
    let bk = tempfile::tempdir().unwrap();
    let dest = bk.path().join("b");
    let out = p.cli(&["backup", dest.to_str().unwrap()], "");
    assert!(out.status.success(), "{out:?}");
    let copied = dest
        .join("quarantine")
        .join(rows[0]["file"].as_str().unwrap());
    assert_eq!(std::fs::read(copied).unwrap(), kept);
    let ident = rows[0]["identificativo"].as_str().unwrap();
    let out = p.cli(&["quarantine", "show", ident], "");
    assert!(String::from_utf8_lossy(&out.stdout).contains(SIGNATURE));

    // A blocked extension, nested inside an attached message.
    let inner = "From: carol@example.test\r\nSubject: interno\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b2\"\r\n\r\n--b2\r\nContent-Type: text/plain\r\n\r\nciao\r\n--b2\r\nContent-Type: application/octet-stream; name=\"setup.exe\"\r\nContent-Transfer-Encoding: base64\r\n\r\nTVqQAAMAAAAEAAAA\r\n--b2--\r\n";
    let nested = with_attachment(
        "inoltro",
        "message/rfc822",
        "attachment; filename=\"inoltro.eml\"",
        inner,
    );
    let err = p
        .submit_raw(ALICE, &[BOB], &nested, true)
        .await
        .expect_err("a nested .exe was accepted");
    assert!(err.to_string().contains("setup.exe"), "{err}");
    let notice = notice_with_subject(&p, "AVVISO DI NON ACCETTAZIONE: inoltro");
    openssl_verify(&notice, &p.ca_pem).unwrap();
    xmllint_message(&notice).unwrap();
    let d = String::from_utf8(raw_daticert(&notice)).unwrap();
    assert!(d.contains("setup.exe") && d.contains(".exe"), "{d}");
    assert!(!d.contains("errore=\"virus\""), "{d}");

    // clamd stopped: 451 4.7.0, nothing accepted unscanned.
    clamd.stop();
    let later = message(ALICE, &[BOB], &[], "dopo", "", "riprova");
    let err = p
        .submit_raw(ALICE, &[BOB], &later, true)
        .await
        .expect_err("accepted without a scan");
    let text = err.to_string();
    assert!(text.contains("451") || text.contains("4.7.0"), "{text}");
    let health = std::process::Command::new("curl")
        .args(["-s", &format!("http://127.0.0.1:{}/health", p.admin)])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&health.stdout).contains("antivirus"),
        "{health:?}"
    );
    clamd.run();
    p.submit_raw(ALICE, &[BOB], &later, true).await.unwrap();

    // Only the two clean bustas reached bob.
    p.wait_messages(BOB, "X-Trasporto", "posta-certificata", 2);
    wait_quiet(&[&p]);
    assert_eq!(
        p.messages_with(BOB, "X-Trasporto", "posta-certificata")
            .len(),
        2
    );
    assert_eq!(
        p.cli_json(&["quarantine", "list", "--json"]).len(),
        1,
        "one quarantined message"
    );
}

#[tokio::test]
async fn without_antivirus_the_provider_says_it_runs_without_virus_checks() {
    let ca = TestCa::new();
    let mut p = TestProvider::prepare(
        &ca,
        &ProviderSpec::new("Alpha PEC S.p.A.", "pec.alpha.test", &["alice", "bob"]),
    );
    let out = p.cli(&["check-config"], "");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("without virus checks"),
        "{out:?}"
    );
    p.start();
    p.wait_for("start-up line", 10, || {
        p.log()
            .contains("running without virus checks")
            .then_some(())
    });
    let infected = with_attachment(
        "prima",
        "text/plain; name=\"a.txt\"",
        "attachment; filename=\"a.txt\"",
        &eicar(),
    );
    p.submit_raw(ALICE, &[BOB], &infected, true)
        .await
        .expect("nothing is scanned");

    // A reload that adds [antivirus] turns scanning on for the next message.
    let clamd = Clamd::start();
    p.append_config(&format!(
        "[antivirus]\nclamd = \"unix:{}\"\n",
        clamd.socket().display()
    ));
    p.sighup();
    p.wait_for("the reload", 10, || {
        p.log()
            .contains("antivirus settings reloaded")
            .then_some(())
    });
    let err = p
        .submit_raw(ALICE, &[BOB], &infected, true)
        .await
        .expect_err("scanned after the reload");
    assert!(err.to_string().contains(SIGNATURE), "{err}");
}

const CARLO: &str = "carlo@pec.alpha.test";
const BEA: &str = "bea@pec.beta.test";

/// Alpha, which does not scan (a peer that lets an infected busta out), and
/// Beta, which scans with `clamd`; they know and route to each other. Both
/// retry every second or two, and Alpha's 12 h / 24 h limits are `timers`.
fn alpha_and_beta(
    ca: &TestCa,
    clamd: &Clamd,
    timers: (&str, &str),
) -> (TestProvider, TestProvider) {
    alpha_and_beta_with(ca, &clamd.socket(), timers, "")
}

/// As [`alpha_and_beta`], Beta's clamd at `socket` and `more` in its `[antivirus]`.
fn alpha_and_beta_with(
    ca: &TestCa,
    socket: &std::path::Path,
    timers: (&str, &str),
    more: &str,
) -> (TestProvider, TestProvider) {
    let mut a = ProviderSpec::new("Alpha PEC S.p.A.", "pec.alpha.test", &["carlo"]);
    a.extra_config = fast_timers(timers.0, timers.1);
    let mut b = ProviderSpec::new("Beta PEC S.p.A.", "pec.beta.test", &["bea"]);
    b.extra_config = format!(
        "[antivirus]\nclamd = \"unix:{}\"\ntimeout = \"10s\"\n{more}\n[queue]\nretry_initial = \"1s\"\nretry_max = \"2s\"\n",
        socket.display()
    );
    let a = TestProvider::prepare(ca, &a);
    let b = TestProvider::prepare(ca, &b);
    let index = format!("{}{}", a.index_entry(), b.index_entry());
    a.write_index(&index);
    b.write_index(&index);
    a.route_to(&b);
    b.route_to(&a);
    (a, b)
}

/// A message whose attachment is EICAR in base64: only a scanner that
/// decodes the MIME parts (of `postacert.eml`, inside the signed busta) sees it.
fn infected_pec(from: &str, to: &str, subject: &str) -> Vec<u8> {
    let b64 = openssl::base64::encode_block(eicar().as_bytes());
    format!(
        "From: {from}\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: <{}@client.test>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\nin allegato la fattura\r\n--b1\r\nContent-Type: application/pdf; name=\"fattura.pdf\"\r\nContent-Disposition: attachment; filename=\"fattura.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{b64}\r\n--b1--\r\n",
        subject.replace(' ', ".")
    )
    .into_bytes()
}

fn bustas(p: &TestProvider, to: &str) -> usize {
    p.messages_with(to, "X-Trasporto", "posta-certificata")
        .len()
        + p.messages_with(to, "X-Trasporto", "errore").len()
}

#[tokio::test]
async fn infected_busta_from_a_peer_is_not_delivered_and_the_sender_hears_of_it_once() {
    let ca = TestCa::new();
    let clamd = Clamd::start();
    let (mut a, mut b) = alpha_and_beta(&ca, &clamd, ("3s", "6s"));
    a.start();
    b.start();
    let subject = "Fattura infetta";
    let raw = infected_pec(CARLO, BEA, subject);
    let reply = a
        .submit_raw(CARLO, &[BEA], &raw, false)
        .await
        .expect("Alpha does not scan: accepted");
    let accepted = Instant::now();
    let id = ident_of(&reply);

    // Beta: one avviso di rilevazione virus, logged for bea, signed, to
    // Alpha's receipt mailbox, with X-Mittente; no presa in carico.
    let logged = b.wait_events("rilevazione-virus", 1, |e| {
        e["identificativo"] == id.as_str()
    });
    assert_eq!(logged[0]["recipients"], BEA, "{logged:?}");
    assert!(
        logged[0]["error"].as_str().unwrap().contains(SIGNATURE),
        "{logged:?}"
    );
    let notices: Vec<Vec<u8>> = b
        .spool_files()
        .into_iter()
        .map(|(_, m)| m)
        .filter(|m| header(m, "X-Ricevuta").as_deref() == Some("rilevazione-virus"))
        .collect();
    assert_eq!(notices.len(), 1, "one rilevazione-virus emitted");
    let n = &notices[0];
    assert_eq!(
        header(n, "Subject").unwrap(),
        format!("PROBLEMA DI SICUREZZA: {subject}")
    );
    assert_eq!(
        header(n, "To").as_deref(),
        Some("posta-certificata@pec.alpha.test")
    );
    assert_eq!(header(n, "X-Mittente").as_deref(), Some(CARLO));
    assert_eq!(header(n, "X-VerificaSicurezza").as_deref(), Some("errore"));
    openssl_verify(n, &b.ca_pem).expect("rilevazione-virus verifies with openssl");
    xmllint_message(n).expect("its daticert is valid");
    let d = daticert(n);
    assert_eq!(d.tipo.as_str(), "rilevazione-virus");
    assert_eq!(d.errore.as_str(), "virus");
    assert_eq!(d.identificativo, id);
    assert_eq!(d.ricezione, vec![BEA.to_string()]);
    assert!(events_of(&b, "presa-in-carico", Some(&id)).is_empty());

    // Alpha: verified like any receipt, then one avviso di mancata consegna
    // per virus to carlo.
    let mc = a.wait_for("mancata consegna per virus", 30, || {
        let m = receipts_for(&a, CARLO, "errore-consegna", &id);
        (!m.is_empty()).then_some(m)
    });
    let m = &mc[0];
    assert_eq!(
        header(m, "Subject").unwrap(),
        format!("AVVISO DI MANCATA CONSEGNA PER VIRUS: {subject}")
    );
    assert_eq!(header(m, "X-VerificaSicurezza").as_deref(), Some("errore"));
    openssl_verify(m, &a.ca_pem).expect("mancata consegna verifies with openssl");
    xmllint_message(m).expect("its daticert is valid");
    let d = daticert(m);
    assert_eq!(d.tipo.as_str(), "errore-consegna");
    assert_eq!(d.errore.as_str(), "virus");
    assert_eq!(d.consegna.as_deref(), Some(BEA));
    assert_eq!(d.gestore_emittente, "Alpha PEC S.p.A.");
    assert!(d.errore_esteso.unwrap().contains(SIGNATURE));
    assert_eq!(
        events_of(&a, "ricevuta-rilevazione-virus", Some(&id)).len(),
        1
    );

    // Past both time limits: still exactly one notice, no 12 h / 24 h one,
    // no presa in carico, nothing in bea's box, one quarantined busta.
    sleep_past(accepted, Duration::from_secs(6));
    wait_quiet(&[&a, &b]);
    assert_eq!(receipts_for(&a, CARLO, "errore-consegna", &id).len(), 1);
    assert!(receipts_for(&a, CARLO, "preavviso-errore-consegna", &id).is_empty());
    assert!(events_of(&a, "preavviso-errore-consegna", Some(&id)).is_empty());
    assert!(events_of(&a, "ricevuta-presa-in-carico", Some(&id)).is_empty());
    assert_eq!(
        events_of(&a, "errore-consegna", Some(&id)).len(),
        1,
        "logged once at Alpha"
    );
    assert_eq!(events_of(&b, "rilevazione-virus", Some(&id)).len(), 1);
    assert_eq!(bustas(&b, BEA), 0, "the infected busta was delivered");
    assert!(b.mailbox(BEA).is_empty(), "bea got something");
    let q = b.cli_json(&["quarantine", "list", "--json"]);
    assert_eq!(q.len(), 1, "{q:?}");
    assert_eq!(q[0]["point"], "reception");
    assert_eq!(q[0]["identificativo"], id.as_str());
    assert!(q[0]["virus"].as_str().unwrap().starts_with(SIGNATURE));

    // Ordinary infected mail at Beta's reception point: not delivered (no
    // busta di anomalia), logged and quarantined.
    let plain = infected_pec("mallory@esterno.test", BEA, "Ordinaria infetta");
    send_plain(b.inbound, "mallory@esterno.test", &[BEA], &plain);
    let v = b.wait_events("virus", 2, |_| true);
    assert!(
        v.iter()
            .any(|e| e["detail"].as_str().unwrap().starts_with("ordinary mail")),
        "{v:?}"
    );
    let q = b.cli_json(&["quarantine", "list", "--json"]);
    assert_eq!(q.len(), 2, "{q:?}");
    let kept = std::fs::read(
        b.path()
            .join("data/quarantine")
            .join(q[1]["file"].as_str().unwrap()),
    )
    .unwrap();
    assert!(
        kept == plain || kept == [&plain[..], b"\r\n"].concat(),
        "kept byte for byte"
    );
    wait_quiet(&[&a, &b]);
    assert!(events_of(&b, "anomalia", None).is_empty());
    assert!(b.mailbox(BEA).is_empty(), "bea got something");
    let metrics = Command::new("curl")
        .args(["-s", &format!("http://127.0.0.1:{}/metrics", b.admin)])
        .output()
        .unwrap();
    let metrics = String::from_utf8_lossy(&metrics.stdout);
    assert!(
        metrics.contains("pecd_virus_scans_total{point=\"reception\",result=\"infected\"} 2"),
        "{metrics}"
    );
}

#[tokio::test]
async fn with_clamd_down_an_inbound_busta_waits_and_is_delivered_when_it_is_back() {
    let ca = TestCa::new();
    let mut clamd = Clamd::start();
    let (mut a, mut b) = alpha_and_beta(&ca, &clamd, ("12h", "24h"));
    a.start();
    b.start();
    clamd.stop();
    let msg = message(CARLO, &[BEA], &[], "Mentre clamd dorme", "", "Ciao");
    let reply = a.submit_raw(CARLO, &[BEA], &msg, false).await.unwrap();
    let id = ident_of(&reply);

    // Beta took the busta over SMTP, but its inbound job fails and is retried.
    b.wait_for("the inbound job to fail on the scan", 30, || {
        queue_jobs(&b)
            .into_iter()
            .find(|j| {
                j["kind"] == "inbound"
                    && j["attempts"].as_i64().unwrap_or(0) >= 2
                    && j["last_error"]
                        .as_str()
                        .is_some_and(|e| e.contains("clamd"))
            })
            .map(|_| ())
    });
    assert_eq!(bustas(&b, BEA), 0, "delivered without a scan");
    assert!(events_of(&b, "busta-ricevuta", Some(&id)).is_empty());
    assert!(events_of(&a, "ricevuta-presa-in-carico", Some(&id)).is_empty());

    clamd.run();
    b.wait_messages(BEA, "X-Trasporto", "posta-certificata", 1);
    a.wait_for("the consegna", 30, || {
        let m = receipts_for(&a, CARLO, "avvenuta-consegna", &id);
        (!m.is_empty()).then_some(())
    });
    assert_eq!(events_of(&b, "busta-ricevuta", Some(&id)).len(), 1);
    assert!(b.cli_json(&["quarantine", "list", "--json"]).is_empty());
}

#[test]
fn check_config_and_serve_say_when_clamd_refuses_streams_of_max_scan_size() {
    let ca = TestCa::new();
    // clamd has no command reporting StreamMaxLength: pecd streams
    // max_scan_size bytes to it and reads the answer.
    let small = Clamd::start_with_limit("1M");
    let spec = |clamd: &Clamd| {
        let mut s = ProviderSpec::new("Alpha PEC S.p.A.", "pec.alpha.test", &["alice"]);
        s.extra_config = format!(
            "[limits]\nmax_message_size = \"1MB\"\n\n[antivirus]\nclamd = \"unix:{}\"\nmax_scan_size = \"2MB\"\n",
            clamd.socket().display()
        );
        s
    };
    let mut p = TestProvider::prepare(&ca, &spec(&small));
    let out = p.cli(&["check-config"], "");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        text.contains("warning: clamd")
            && text.contains("StreamMaxLength")
            && text.contains("2000000"),
        "{text}"
    );
    p.start();
    p.wait_for("the start-up warning", 20, || {
        p.log()
            .contains("refuses a stream of 2000000 bytes")
            .then_some(())
    });

    let big = Clamd::start_with_limit("3M");
    let q = TestProvider::prepare(&ca, &spec(&big));
    let out = q.cli(&["check-config"], "");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("takes streams of antivirus.max_scan_size (2000000 bytes)"),
        "{text}"
    );
    assert!(
        !text
            .lines()
            .any(|l| l.contains("warning") && l.contains("clamd")),
        "{text}"
    );
}

#[test]
fn check_config_and_serve_say_when_clamd_passes_a_virus_nested_past_its_max_recursion() {
    let ca = TestCa::new();
    let spec = |clamd: &Clamd| {
        let mut s = ProviderSpec::new("Alpha PEC S.p.A.", "pec.alpha.test", &["alice"]);
        s.extra_config = format!(
            "[limits]\nmax_message_size = \"1MB\"\n\n[antivirus]\nclamd = \"unix:{}\"\n",
            clamd.socket().display()
        );
        s
    };
    // ClamAV's defaults: MaxRecursion 17, AlertExceedsMax off. The EICAR
    // file in a zip nested 64 deep is "OK".
    let default = Clamd::start_conf("100M", "");
    let mut p = TestProvider::prepare(&ca, &spec(&default));
    let out = p.cli(&["check-config"], "");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{out:?}");
    let line = text
        .lines()
        .find(|l| l.contains("warning: clamd") && l.contains("nested 64 archives deep"))
        .unwrap_or_else(|| panic!("no warning:\n{text}"));
    assert!(line.contains("AlertExceedsMax yes"), "{line}");
    p.start();
    p.wait_for("the start-up warning", 30, || {
        p.log()
            .lines()
            .any(|l| l.contains("WARN") && l.contains("nested 64 archives deep"))
            .then_some(())
    });

    // As docs/operations.md says: flagged, no warning.
    let recommended = Clamd::start_conf("100M", RECOMMENDED);
    let mut q = TestProvider::prepare(&ca, &spec(&recommended));
    let out = q.cli(&["check-config"], "");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        text.contains("flags the EICAR test file nested 64 archives deep"),
        "{text}"
    );
    assert!(!text.contains("warning: clamd"), "{text}");
    q.start();
    q.wait_for("the start-up line", 30, || {
        q.log()
            .contains("clamd flags the EICAR test file nested past its MaxRecursion")
            .then_some(())
    });
    assert!(!q.log().contains("archives deep as clean"), "{}", q.log());
}

/// A clamd on loopback TCP that answers every INSTREAM with what the test
/// sets: a broken or hostile one.
struct FakeClamd {
    port: u16,
    reply: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

impl FakeClamd {
    fn start() -> FakeClamd {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let reply = std::sync::Arc::new(std::sync::Mutex::new(b"stream: OK\0".to_vec()));
        let shared = reply.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let r = shared.clone();
                std::thread::spawn(move || FakeClamd::serve(conn, &r));
            }
        });
        FakeClamd { port, reply }
    }

    fn answer(&self, reply: &[u8]) {
        *self.reply.lock().unwrap() = reply.to_vec();
    }

    fn serve(mut s: std::net::TcpStream, reply: &std::sync::Mutex<Vec<u8>>) {
        use std::io::{Read, Write};
        let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
        let mut cmd = Vec::new();
        let mut b = [0u8; 1];
        while s.read_exact(&mut b).is_ok() && b[0] != 0 && cmd.len() < 64 {
            cmd.push(b[0]);
        }
        let out = match cmd.as_slice() {
            b"zVERSION" => b"ClamAV 1.4.6/27000/hostile test double\0".to_vec(),
            b"zINSTREAM" => {
                loop {
                    let mut len = [0u8; 4];
                    if s.read_exact(&mut len).is_err() {
                        return;
                    }
                    let n = u32::from_be_bytes(len) as u64;
                    if n == 0 {
                        break;
                    }
                    if std::io::copy(&mut (&mut s).take(n), &mut std::io::sink()).ok() != Some(n) {
                        return;
                    }
                }
                reply.lock().unwrap().clone()
            }
            _ => return,
        };
        let _ = s.write_all(&out);
    }
}

#[test]
fn a_hostile_clamd_is_a_scan_failure_never_clean_and_none_of_its_bytes_reach_a_reply() {
    let ca = TestCa::new();
    let clamd = FakeClamd::start();
    let mut spec = ProviderSpec::new("Alpha PEC S.p.A.", "pec.alpha.test", &["alice", "bob"]);
    spec.extra_config = format!(
        "[limits]\nmax_message_size = \"1MB\"\n\n[antivirus]\nclamd = \"tcp:127.0.0.1:{}\"\ntimeout = \"5s\"\n",
        clamd.port
    );
    let mut p = TestProvider::prepare(&ca, &spec);
    p.start();
    let submit = |subject: &str| -> (u16, String) {
        let mut c = SecureSmtp::connect(p.submissions, &p.ca_pem, true);
        let (code, text) = c.ehlo_auth(ALICE, PASSWORD);
        assert_eq!(code, 235, "{text}");
        assert_eq!(c.cmd(&format!("MAIL FROM:<{ALICE}>")).0, 250);
        assert_eq!(c.cmd(&format!("RCPT TO:<{BOB}>")).0, 250);
        assert_eq!(c.cmd("DATA").0, 354);
        let msg = message(ALICE, &[BOB], &[], subject, "", "Ciao");
        c.send(&msg);
        c.send(b"\r\n.\r\n");
        c.reply()
    };
    // The double is consulted: its clean and its infected verdicts count.
    let (code, text) = submit("pulito");
    assert_eq!(code, 250, "{text}");
    clamd.answer(b"stream: Test.Signature FOUND\0");
    let (code, text) = submit("infetto");
    assert_eq!(code, 550, "{text}");
    assert!(text.contains("Test.Signature"), "{text}");

    let overlong = format!("stream: {} FOUND\0", "A".repeat(3000));
    for hostile in [
        &b"OK\0"[..],
        b"stream: Evil\0Name FOUND\0",
        b"stream: Evil\x1b[2J\r\n250 ok FOUND\0",
        b"\0",
        overlong.as_bytes(),
    ] {
        clamd.answer(hostile);
        let (code, text) = submit("ostile");
        let said = String::from_utf8_lossy(hostile);
        assert_eq!(code, 451, "{said:?} was taken as a verdict: {text}");
        assert!(
            !text.chars().any(|c| c.is_control() && c != '\n'),
            "{said:?}: a control byte in the reply: {text:?}"
        );
        assert!(text.len() < 512, "{said:?}: {text}");
    }
    // Only the first clean message went through.
    p.wait_messages(BOB, "X-Trasporto", "posta-certificata", 1);
    wait_quiet(&[&p]);
    assert_eq!(
        p.messages_with(BOB, "X-Trasporto", "posta-certificata")
            .len(),
        1
    );
    // The operator's log says what clamd said, escaped.
    let log = p.log();
    assert!(log.contains("clamd: unexpected reply \"OK\\x00\""), "{log}");
    assert!(!log.contains('\x1b') && !log.contains('\0'), "{log:?}");
}

#[tokio::test]
async fn with_on_error_accept_a_busta_is_delivered_unscanned_and_the_log_says_so() {
    let ca = TestCa::new();
    // No clamd listens here.
    let none = tempfile::tempdir().unwrap();
    let (mut a, mut b) = alpha_and_beta_with(
        &ca,
        &none.path().join("clamd.sock"),
        ("12h", "24h"),
        "on_error = \"accept\"\n",
    );
    a.start();
    b.start();
    let msg = message(CARLO, &[BEA], &[], "Senza clamd", "", "Ciao");
    let reply = a.submit_raw(CARLO, &[BEA], &msg, false).await.unwrap();
    let id = ident_of(&reply);
    b.wait_messages(BEA, "X-Trasporto", "posta-certificata", 1);
    let log = b.log();
    let line = log
        .lines()
        .find(|l| l.contains("without a virus scan"))
        .unwrap_or_else(|| panic!("no warning line:\n{log}"));
    assert!(line.contains(&id), "{line}");
    // Mail flows, so /health does not fail on clamd.
    let health = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &format!("http://127.0.0.1:{}/health", b.admin),
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&health.stdout), "200");
    // A submission at Beta goes through unscanned too, noted in its log row.
    let out = message(BEA, &[CARLO], &[], "Anche io", "", "Ciao");
    let reply = b.submit_raw(BEA, &[CARLO], &out, false).await.unwrap();
    let id = ident_of(&reply);
    let acc = events_of(&b, "accettazione", Some(&id));
    assert!(
        acc[0]["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("not scanned"),
        "{acc:?}"
    );
}

/// `pecd bench --clamd`: both lab providers scan; with no clamd behind the
/// address nothing is accepted (the bench really goes through the scanner).
#[test]
fn bench_with_clamd_scans_every_message() {
    let clamd = Clamd::start();
    let bench = |address: &str| {
        let out = Command::new(pecd_bin())
            .args(["bench", "--messages", "6", "--concurrency", "2", "--json"])
            .args(["--clamd", address])
            .env("RUST_LOG", "error")
            .output()
            .expect("run pecd bench");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let report: Option<serde_json::Value> = serde_json::from_str(text.trim()).ok();
        (out, report)
    };
    let address = format!("unix:{}", clamd.socket().display());
    let (out, r) = bench(&address);
    let r = r.unwrap_or_else(|| panic!("{out:?}"));
    assert_eq!(r["accepted"], 6, "{r:#}");
    assert_eq!(r["clamd"], address.as_str(), "{r:#}");
    let gone = clamd.socket().with_file_name("no-clamd.sock");
    let (out, r) = bench(&format!("unix:{}", gone.display()));
    let accepted = r.as_ref().and_then(|r| r["accepted"].as_u64()).unwrap_or(0);
    assert!(
        accepted == 0,
        "accepted {accepted} without a clamd: {out:?}"
    );
}
