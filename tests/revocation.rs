//! Peers' certificates: revocation (issue 13 §2). A real CA made at test
//! time with `openssl ca` (index.txt, serial, `-revoke`, `-gencrl`), its
//! CRL distribution point and its OCSP responder (each request answered by
//! `openssl ocsp -index`) on loopback (`tests/revocation_http.py`), and two
//! real pecd providers: the sender's signing certificate is issued by that
//! CA, with its CRL DP and AIA OCSP URL pointing at the loopback port.
use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const ALICE: &str = "alice@pec.alpha.test";
const BOB: &str = "bob@pec.beta.test";

/// A CA run by `openssl ca`, its files in a temporary folder.
struct Pki {
    dir: tempfile::TempDir,
    port: u16,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Pki {
    /// The CA and its OCSP responder's certificate; the certificates it
    /// issues name `http://127.0.0.1:<port>/` for their CRL and OCSP.
    fn new(port: u16) -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("newcerts")).unwrap();
        std::fs::write(d.join("index.txt"), "").unwrap();
        std::fs::write(d.join("serial"), "1000\n").unwrap();
        std::fs::write(d.join("crlnumber"), "1000\n").unwrap();
        let cnf = format!(
            r#"[req]
distinguished_name = dn
[dn]
[ca]
default_ca = testca
[testca]
dir = {dir}
database = $dir/index.txt
new_certs_dir = $dir/newcerts
serial = $dir/serial
crlnumber = $dir/crlnumber
certificate = $dir/ca.pem
private_key = $dir/ca.key
default_md = sha256
default_days = 365
default_crl_days = 1
policy = policy_any
unique_subject = no
copy_extensions = none
[policy_any]
countryName = optional
organizationName = optional
commonName = supplied
[v3_ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[signer]
basicConstraints = CA:FALSE
keyUsage = critical, digitalSignature, nonRepudiation
extendedKeyUsage = emailProtection
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = email:posta-certificata@pec.alpha.test
crlDistributionPoints = URI:http://127.0.0.1:{port}/ca.crl
authorityInfoAccess = OCSP;URI:http://127.0.0.1:{port}/ocsp
[ocsp]
basicConstraints = CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = OCSPSigning
"#,
            dir = d.display()
        );
        std::fs::write(d.join("openssl.cnf"), cnf).unwrap();
        openssl(
            d,
            &[
                "req",
                "-x509",
                "-new",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "3650",
                "-subj",
                "/C=IT/O=Revocation Test CA/CN=Revocation Test CA",
                "-config",
                "openssl.cnf",
                "-extensions",
                "v3_ca",
            ],
        );
        let pki = Pki { dir, port };
        pki.issue("ocsp", "/CN=Revocation Test OCSP responder", "ocsp");
        pki
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `<name>.pem` / `<name>.key` issued with extension section `ext`.
    fn issue(&self, name: &str, subject: &str, ext: &str) -> (PathBuf, PathBuf) {
        let d = self.path();
        let (key, csr, pem) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
        );
        openssl(
            d,
            &[
                "req",
                "-new",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &key,
                "-out",
                &csr,
                "-subj",
                subject,
                "-config",
                "openssl.cnf",
            ],
        );
        openssl(
            d,
            &[
                "ca",
                "-batch",
                "-config",
                "openssl.cnf",
                "-extensions",
                ext,
                "-in",
                &csr,
                "-out",
                &pem,
                "-notext",
            ],
        );
        (d.join(pem), d.join(key))
    }

    /// A signing certificate for Alpha PEC.
    fn signer(&self, name: &str) -> (PathBuf, PathBuf) {
        self.issue(
            name,
            "/C=IT/O=Alpha PEC S.p.A./CN=Posta Certificata Alpha PEC S.p.A.",
            "signer",
        )
    }

    fn revoke(&self, pem: &Path) {
        openssl(
            self.path(),
            &[
                "ca",
                "-config",
                "openssl.cnf",
                "-revoke",
                pem.to_str().unwrap(),
                "-crl_reason",
                "keyCompromise",
            ],
        );
    }

    /// `ca.crl` (PEM, for files) and `ca.crl.der` (what the DP serves).
    fn gencrl(&self) {
        openssl(
            self.path(),
            &["ca", "-config", "openssl.cnf", "-gencrl", "-out", "ca.crl"],
        );
        openssl(
            self.path(),
            &[
                "crl",
                "-in",
                "ca.crl",
                "-outform",
                "DER",
                "-out",
                "ca.crl.der",
            ],
        );
    }

    fn ocsp_url(&self) -> String {
        format!("http://127.0.0.1:{}/ocsp", self.port)
    }

    fn crl_url(&self) -> String {
        format!("http://127.0.0.1:{}/ca.crl", self.port)
    }

    /// The requests the HTTP side has seen (`POST /ocsp`, `GET /ca.crl`).
    fn http_log(&self) -> String {
        std::fs::read_to_string(self.path().join("http.log")).unwrap_or_default()
    }
}

/// The CRL distribution point and OCSP responder, up until dropped.
struct Http(Child);

impl Http {
    fn start(pki: &Pki) -> Http {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/revocation_http.py");
        let child = Command::new("python3")
            .arg(script)
            .arg(pki.path())
            .arg(pki.port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("run python3");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", pki.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "revocation_http.py did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Http(child)
    }
}

impl Drop for Http {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Alpha (signing with `signer`, issued by `pki`) and Beta (checking
/// revocation with `trust`, the extra `[trust]` keys), trusting each other
/// and `pki`'s CA; not started.
fn providers(
    ca: &TestCa,
    pki: &Pki,
    signer: &(PathBuf, PathBuf),
    trust: &str,
) -> (TestProvider, TestProvider) {
    let (a, b) = two_providers(ca, &["alice"], &["bob"]);
    std::fs::copy(&signer.0, a.path().join("certs/signing.pem")).unwrap();
    std::fs::copy(&signer.1, a.path().join("certs/signing.key")).unwrap();
    let pki_ca = std::fs::read(pki.path().join("ca.pem")).unwrap();
    for p in [&a, &b] {
        let f = p.path().join("certs/ca.pem");
        let mut pem = std::fs::read(&f).unwrap();
        pem.extend_from_slice(&pki_ca);
        std::fs::write(&f, pem).unwrap();
    }
    set_trust(&b, trust);
    (a, b)
}

/// Beta's `[trust]` keys besides `ca`, `index` and `index_check_interval`.
fn set_trust(p: &TestProvider, keys: &str) {
    let text = std::fs::read_to_string(p.config_path()).unwrap();
    let start = text.find("index_check_interval = \"200ms\"\n").unwrap() + 31;
    // Up to the next section: what an earlier call put there is replaced.
    let end = start + text[start..].find("\n[").unwrap_or(text.len() - start);
    let text = format!("{}{keys}{}", &text[..start], &text[end..]);
    std::fs::write(p.config_path(), text).unwrap();
}

async fn send(a: &TestProvider, subject: &str) -> String {
    let m = message(ALICE, &[BOB], &[], subject, "", "corpo");
    let reply = a
        .submit_raw(ALICE, &[BOB], &m, false)
        .await
        .expect("submission accepted");
    identificativo_in(&reply)
}

fn bustas_for(p: &TestProvider, id: &str) -> Vec<Vec<u8>> {
    p.messages_with(BOB, "X-Trasporto", "posta-certificata")
        .into_iter()
        .filter(|m| header(m, "Message-ID").as_deref() == Some(&format!("<{id}>")))
        .collect()
}

fn wait_busta(p: &TestProvider, id: &str) -> Vec<u8> {
    p.wait_for(&format!("busta {id} for bob"), 30, || {
        bustas_for(p, id).into_iter().next()
    })
}

/// `pecd_revocation_checks_total{status, source}` on `p`'s admin listener.
fn checks(p: &TestProvider, status: &str, source: &str) -> f64 {
    let (_, text) = http_get(p.admin, "/metrics");
    let labels = format!("{{status=\"{status}\",source=\"{source}\"}}");
    text.lines()
        .find(|l| l.starts_with("pecd_revocation_checks_total") && l.contains(&labels))
        .and_then(|l| l.split_whitespace().last()?.parse().ok())
        .unwrap_or(0.0)
}

/// `pecd verify FILE ARGS --json`: the exit status and the report.
fn verify_json(p: &TestProvider, file: &Path, args: &[&str]) -> (i32, serde_json::Value) {
    let mut a = vec!["verify", file.to_str().unwrap(), "--json"];
    a.extend_from_slice(args);
    let out = p.cli(&a, "");
    let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "pecd verify {args:?}: {e}\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), json)
}

/// A busta signed with a certificate revoked before the signing time is no
/// PEC for the recipient: a busta di anomalia, the reason (with OCSP as its
/// source) in the log; `pecd verify` says revoked, by OCSP, by the CRL of
/// the distribution point or by a CRL file.
#[tokio::test]
async fn revoked_signer_makes_an_anomaly_and_verify_says_why() {
    let ca = TestCa::new();
    let pki = Pki::new(free_port());
    let signer = pki.signer("alpha");
    pki.revoke(&signer.0);
    pki.gencrl();
    let _http = Http::start(&pki);
    let (mut a, mut b) = providers(
        &ca,
        &pki,
        &signer,
        "revocation = \"ocsp+crl\"\nsoft_fail = false\n",
    );
    a.start();
    b.start();
    let id = send(&a, "Firmata con un certificato revocato").await;

    let anomaly = b.wait_for("busta di anomalia for bob", 30, || {
        b.messages_with(BOB, "X-Trasporto", "errore")
            .into_iter()
            .find(|m| header(&postacert_of(m), "Message-ID").as_deref() == Some(&format!("<{id}>")))
    });
    assert!(
        checks(&b, "revoked", "ocsp") >= 1.0,
        "the metric counts the revoked signer"
    );
    assert_eq!(checks(&b, "good", "ocsp"), 0.0);
    let original = postacert_of(&anomaly);
    let logged = b.wait_events("anomalia", 1, |e| {
        e["error"]
            .as_str()
            .is_some_and(|r| r.contains("revoked at") && r.contains("keyCompromise"))
    });
    let why = logged[0]["error"].as_str().unwrap();
    assert!(why.contains("before the signing time"), "{why}");
    assert!(
        why.contains(&format!("per OCSP {}", pki.ocsp_url())),
        "{why}"
    );
    assert!(pki.http_log().contains("POST /ocsp"), "{}", pki.http_log());
    assert!(
        String::from_utf8_lossy(&anomaly).contains("revocato"),
        "the anomaly says why in Italian"
    );
    // Not delivered as PEC, no presa in carico back to Alpha.
    wait_quiet(&[&a, &b]);
    assert!(
        bustas_for(&b, &id).is_empty(),
        "the busta was delivered as PEC"
    );
    assert!(b.events("busta-ricevuta").is_empty());
    assert!(receipts_for(&a, ALICE, "presa-in-carico", &id).is_empty());

    let file = b.path().join("revoked-busta.eml");
    std::fs::write(&file, &original).unwrap();
    let ca_pem = pki.path().join("ca.pem");
    let ca_arg = ca_pem.to_str().unwrap();
    // Without a revocation check the signature itself is fine (the
    // configuration's own `[trust] revocation` would ask: off on purpose).
    let (code, r) = verify_json(&b, &file, &["--ca", ca_arg, "--revocation", "off"]);
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(r["signature"]["verdict"], "valid");

    let (code, r) = verify_json(&b, &file, &["--ca", ca_arg, "--revocation", "ocsp"]);
    assert_eq!(code, 1, "{r:#}");
    let rev = &r["signature"]["revocation"];
    assert_eq!(r["signature"]["verdict"], "invalid");
    assert_eq!(rev["status"], "revoked", "{r:#}");
    assert_eq!(rev["reason"], "keyCompromise");
    assert_eq!(rev["source"]["kind"], "ocsp");
    assert_eq!(rev["source"]["location"], pki.ocsp_url().as_str());
    assert!(
        r["reasons"][0].as_str().unwrap().contains("revoked at"),
        "{r:#}"
    );

    let (code, r) = verify_json(&b, &file, &["--ca", ca_arg, "--revocation", "crl"]);
    assert_eq!(code, 1, "{r:#}");
    let rev = &r["signature"]["revocation"];
    assert_eq!(rev["status"], "revoked", "{r:#}");
    assert_eq!(rev["source"]["kind"], "crl");
    assert_eq!(rev["source"]["location"], pki.crl_url().as_str());
    assert_eq!(rev["source"]["file"], false);
    assert!(pki.http_log().contains("GET /ca.crl"));

    let crl = pki.path().join("ca.crl");
    let crl_arg = crl.to_str().unwrap();
    let (code, r) = verify_json(
        &b,
        &file,
        &["--ca", ca_arg, "--revocation", "crl", "--crl", crl_arg],
    );
    assert_eq!(code, 1, "{r:#}");
    let rev = &r["signature"]["revocation"];
    assert_eq!(rev["status"], "revoked", "{r:#}");
    assert_eq!(rev["source"]["file"], true);
    assert_eq!(rev["source"]["location"], crl_arg);

    // The text report names status and source on one line.
    let out = b.cli(
        &[
            "verify",
            file.to_str().unwrap(),
            "--ca",
            ca_arg,
            "--revocation",
            "ocsp+crl",
        ],
        "",
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("Revocation:"))
        .unwrap_or_else(|| panic!("no Revocation line:\n{text}"));
    assert!(
        line.contains("revoked at") && line.contains(&pki.ocsp_url()),
        "{line}"
    );
    assert!(text.contains("NOT VALID"));
    a.stop();
    b.stop();
}

/// A good signer's busta is PEC; the log names the source that said so:
/// the certificate's distribution point, then (after a reload that adds
/// `[trust] crl`) the CRL file.
#[tokio::test]
async fn good_signer_is_pec_by_its_crl_and_a_reload_adds_a_crl_file() {
    let ca = TestCa::new();
    let pki = Pki::new(free_port());
    let other = pki.signer("other");
    pki.revoke(&other.0);
    let signer = pki.signer("alpha");
    pki.gencrl();
    let _http = Http::start(&pki);
    let (mut a, mut b) = providers(&ca, &pki, &signer, "revocation = \"crl\"\n");
    a.start();
    b.start();
    let id = send(&a, "Firmata con un certificato valido").await;
    let busta = wait_busta(&b, &id);
    openssl_verify(&busta, &pki.path().join("ca.pem")).unwrap();
    a.wait_for("avvenuta consegna", 30, || {
        (!receipts_for(&a, ALICE, "avvenuta-consegna", &id).is_empty()).then_some(())
    });
    let ev = b.wait_events("busta-ricevuta", 1, |e| e["identificativo"] == id.as_str());
    let detail = ev[0]["detail"].as_str().unwrap();
    assert!(
        detail.contains(&format!(
            "revocation not revoked, per CRL {}",
            pki.crl_url()
        )),
        "{detail}"
    );
    assert!(pki.http_log().contains("GET /ca.crl"));
    assert!(
        !pki.http_log().contains("POST /ocsp"),
        "revocation = \"crl\" asked OCSP"
    );

    let crl = pki.path().join("ca.crl");
    set_trust(
        &b,
        &format!("revocation = \"crl\"\ncrl = [\"{}\"]\n", crl.display()),
    );
    b.sighup();
    b.wait_for("reload with trust.revocation", 30, || {
        b.log()
            .lines()
            .any(|l| l.contains("configuration reloaded") && l.contains("trust.revocation"))
            .then_some(())
    });
    let id2 = send(&a, "Seconda, dopo il reload").await;
    wait_busta(&b, &id2);
    let ev = b.wait_events("busta-ricevuta", 1, |e| e["identificativo"] == id2.as_str());
    let detail = ev[0]["detail"].as_str().unwrap();
    assert!(
        detail.contains(&format!("per CRL file {}", crl.display())),
        "{detail}"
    );
    a.stop();
    b.stop();
}

/// The OCSP responder is down and `soft_fail = false`: the inbound job is
/// neither accepted nor an anomaly; it waits in the queue and is delivered
/// once the responder answers.
#[tokio::test]
async fn responder_down_with_hard_fail_retries_the_inbound_job() {
    let ca = TestCa::new();
    let pki = Pki::new(free_port());
    let signer = pki.signer("alpha");
    pki.gencrl();
    let (mut a, mut b) = providers(
        &ca,
        &pki,
        &signer,
        "revocation = \"ocsp\"\nsoft_fail = false\n",
    );
    b.append_config("[queue]\nretry_initial = \"1s\"\nretry_max = \"2s\"\n");
    a.start();
    b.start();
    let id = send(&a, "Il risponditore OCSP e' giu'").await;
    let job = b.wait_for("inbound job retried", 30, || {
        queue_jobs(&b).into_iter().find(|j| {
            j["kind"] == "inbound"
                && j["state"] == "pending"
                && j["attempts"].as_i64().unwrap_or(0) > 0
        })
    });
    let err = job["last_error"].as_str().unwrap_or_default();
    assert!(
        err.contains("revocation status unknown") && err.contains(&pki.ocsp_url()),
        "{job}"
    );
    // That attempt ended in a retry, committed with whatever it decided:
    // nothing accepted, nothing anomalised.
    assert!(bustas_for(&b, &id).is_empty(), "accepted without an answer");
    assert!(
        b.messages_with(BOB, "X-Trasporto", "errore").is_empty(),
        "anomalised"
    );
    assert!(b.events("anomalia").is_empty());
    // Operators alert on this: every unanswered check is counted.
    assert!(checks(&b, "unavailable", "none") >= 1.0);
    assert_eq!(checks(&b, "good", "ocsp"), 0.0);
    // A responder that just failed is not asked again at once: the retry
    // within the pause is answered from the failure, saying so.
    let job = b.wait_for("a retry within the pause", 30, || {
        queue_jobs(&b).into_iter().find(|j| {
            j["kind"] == "inbound"
                && j["attempts"].as_i64().unwrap_or(0) >= 2
                && j["last_error"]
                    .as_str()
                    .is_some_and(|e| e.contains("not asked again before"))
        })
    });
    assert!(
        job["last_error"]
            .as_str()
            .unwrap()
            .contains(&pki.ocsp_url()),
        "{job}"
    );
    // The retry decided nothing either.
    assert!(bustas_for(&b, &id).is_empty(), "accepted without an answer");
    assert!(b.events("anomalia").is_empty());

    let _http = Http::start(&pki);
    // Up to the 30 s pause, then the queue's 2 s retry.
    let busta = b.wait_for(&format!("busta {id} for bob"), 60, || {
        bustas_for(&b, &id).into_iter().next()
    });
    assert_eq!(checks(&b, "good", "ocsp"), 1.0);
    openssl_verify(&busta, &pki.path().join("ca.pem")).unwrap();
    assert!(pki.http_log().contains("POST /ocsp"));
    let ev = b.wait_events("busta-ricevuta", 1, |e| e["identificativo"] == id.as_str());
    assert!(
        ev[0]["detail"]
            .as_str()
            .is_some_and(|d| d.contains(&format!("per OCSP {}", pki.ocsp_url()))),
        "{}",
        ev[0]
    );
    a.stop();
    b.stop();
}

/// The same outage with `soft_fail = true`: the busta is accepted at once,
/// and the log says it was accepted without an answer.
#[tokio::test]
async fn responder_down_with_soft_fail_accepts_and_says_so() {
    let ca = TestCa::new();
    let pki = Pki::new(free_port());
    let signer = pki.signer("alpha");
    let (mut a, mut b) = providers(
        &ca,
        &pki,
        &signer,
        "revocation = \"ocsp\"\nsoft_fail = true\n",
    );
    a.start();
    b.start();
    let id = send(&a, "Accettata senza risposta OCSP").await;
    wait_busta(&b, &id);
    let ev = b.wait_events("busta-ricevuta", 1, |e| e["identificativo"] == id.as_str());
    let detail = ev[0]["detail"].as_str().unwrap();
    assert!(
        detail.contains("revocation unknown: no source answered")
            && detail.contains(&pki.ocsp_url()),
        "{detail}"
    );
    assert!(b.log().contains("accepted under soft_fail"), "{}", b.log());
    a.stop();
    b.stop();
}
