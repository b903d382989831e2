//! Issue 12: virus checks with a real clamd (Debian `clamav-daemon`) and
//! blocked attachment extensions, against real `pecd` processes on loopback.
mod common;

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

impl Clamd {
    fn start() -> Clamd {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("db");
        std::fs::create_dir(&db).unwrap();
        let hex: String = eicar().bytes().map(|b| format!("{b:02x}")).collect();
        std::fs::write(db.join("pecd.ndb"), format!("{SIGNATURE}:0:*:{hex}\n")).unwrap();
        let conf = format!(
            "Foreground yes\nLocalSocket {}\nDatabaseDirectory {}\nStreamMaxLength 100M\nLogFile {}\n",
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
    std::thread::sleep(Duration::from_millis(300));
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

#[test]
fn without_antivirus_the_provider_says_it_runs_without_virus_checks() {
    let ca = TestCa::new();
    let mut p = TestProvider::prepare(
        &ca,
        &ProviderSpec::new("Alpha PEC S.p.A.", "pec.alpha.test", &["alice"]),
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
}
