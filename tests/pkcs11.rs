//! The provider's signing key in a PKCS#11 token (issue 13 §3): a SoftHSM2
//! token initialised here, the key pair generated inside it by `pkcs11-tool`
//! (so no key file ever exists), its certificate issued by the test CA with
//! the `openssl` CLI; then real providers sign with it and `openssl` checks
//! what they signed.
use crate::common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

const PIN: &str = "4711";
const URI: &str = "pkcs11:token=pecd;object=signing;type=private";

/// Debian's SoftHSM2 module.
fn softhsm_module() -> PathBuf {
    let m = PathBuf::from("/usr/lib/softhsm/libsofthsm2.so");
    assert!(
        m.exists(),
        "{} missing: install softhsm2 (and libengine-pkcs11-openssl, opensc), as .ci/run does",
        m.display()
    );
    m
}

fn run(what: &str, cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A SoftHSM2 token of its own (its `SOFTHSM2_CONF`), holding an RSA key
/// pair generated inside it.
struct Token {
    dir: tempfile::TempDir,
}

impl Token {
    fn new() -> Token {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("tokens")).unwrap();
        std::fs::write(
            dir.path().join("softhsm2.conf"),
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                dir.path().join("tokens").display()
            ),
        )
        .unwrap();
        let t = Token { dir };
        run(
            "softhsm2-util --init-token",
            t.cmd("softhsm2-util").args([
                "--init-token",
                "--free",
                "--label",
                "pecd",
                "--pin",
                PIN,
                "--so-pin",
                "271828",
            ]),
        );
        run(
            "pkcs11-tool --keypairgen",
            t.pkcs11_tool().args([
                "--login",
                "--pin",
                PIN,
                "--keypairgen",
                "--key-type",
                "rsa:2048",
                "--label",
                "signing",
                "--id",
                "01",
            ]),
        );
        t
    }

    fn conf(&self) -> PathBuf {
        self.dir.path().join("softhsm2.conf")
    }

    fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("SOFTHSM2_CONF", self.conf());
        c
    }

    fn pkcs11_tool(&self) -> Command {
        let mut c = self.cmd("pkcs11-tool");
        c.arg("--module")
            .arg(softhsm_module())
            .args(["--token-label", "pecd"]);
        c
    }

    /// The public half of the token's key, PEM (the private half never leaves).
    fn public_pem(&self) -> PathBuf {
        let der = self.dir.path().join("pub.der");
        let pem = self.dir.path().join("pub.pem");
        run(
            "pkcs11-tool --read-object",
            self.pkcs11_tool()
                .args([
                    "--read-object",
                    "--type",
                    "pubkey",
                    "--label",
                    "signing",
                    "-o",
                ])
                .arg(&der),
        );
        run(
            "openssl pkey -pubin",
            Command::new("openssl")
                .args(["pkey", "-pubin", "-inform", "DER", "-in"])
                .arg(&der)
                .arg("-out")
                .arg(&pem),
        );
        pem
    }
}

/// Issue `p`'s signing certificate for the token's key with the test CA
/// (the AgID profile's extensions, as `pecd::certs::generate_signing`
/// makes them), remove its key file, and point `[signing]` at the token.
fn use_token(p: &TestProvider, ca: &TestCa, token: &Token, pin_file: Option<&str>) {
    let certs = p.path().join("certs");
    let ca_key = ca.dir.path().join("ca.key");
    std::fs::write(&ca_key, ca.ca.key_pem()).unwrap();
    let ext = ca.dir.path().join(format!("{}.ext", p.domain));
    std::fs::write(
        &ext,
        format!(
            "basicConstraints = CA:FALSE\nkeyUsage = critical, digitalSignature\nextendedKeyUsage = emailProtection\nsubjectAltName = email:posta-certificata@{}\n",
            p.domain
        ),
    )
    .unwrap();
    run(
        "openssl x509 -new -force_pubkey",
        Command::new("openssl")
            .args(["x509", "-new", "-days", "30", "-subj"])
            .arg(format!("/CN=Posta Certificata {}/O={}", p.name, p.name))
            .arg("-force_pubkey")
            .arg(token.public_pem())
            .arg("-CA")
            .arg(ca.pem_path())
            .arg("-CAkey")
            .arg(&ca_key)
            .arg("-extfile")
            .arg(&ext)
            .arg("-out")
            .arg(certs.join("signing.pem")),
    );
    std::fs::remove_file(certs.join("signing.key")).unwrap();
    let mut signing = format!(
        "key = \"{URI}\"\npkcs11_module = \"{}\"\n",
        softhsm_module().display()
    );
    if let Some(pin) = pin_file {
        let f = p.path().join("pkcs11.pin");
        std::fs::write(&f, format!("{pin}\n")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        signing.push_str("pin_file = \"pkcs11.pin\"\n");
    }
    let config = std::fs::read_to_string(p.config_path()).unwrap();
    let config = config.replacen("key = \"certs/signing.key\"\n", &signing, 1);
    std::fs::write(p.config_path(), config).unwrap();
}

/// `pecd ARGS` on `p`'s config, with the token's SoftHSM2 configuration.
fn pecd(
    p: &TestProvider,
    token: &Token,
    env: &[(&str, &str)],
    args: &[&str],
) -> std::process::Output {
    Command::new(pecd_bin())
        .arg("--config")
        .arg(p.config_path())
        .args(args)
        .env("SOFTHSM2_CONF", token.conf())
        .env_remove("PECD_PKCS11_PIN")
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

/// The certificate `openssl smime -verify` says signed `msg`, PEM.
fn signer_of(msg: &[u8], ca: &Path) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("m.eml"), msg).unwrap();
    run(
        "openssl smime -verify -signer",
        Command::new("openssl")
            .args(["smime", "-verify", "-CAfile"])
            .arg(ca)
            .arg("-in")
            .arg(dir.path().join("m.eml"))
            .arg("-signer")
            .arg(dir.path().join("signer.pem"))
            .args(["-out", "/dev/null"]),
    );
    std::fs::read(dir.path().join("signer.pem")).unwrap()
}

fn cert_der(pem: &[u8]) -> Vec<u8> {
    openssl::x509::X509::from_pem(pem)
        .unwrap()
        .to_der()
        .unwrap()
}

#[tokio::test]
async fn a_key_in_the_token_signs_bustas_receipts_and_extracts_that_openssl_and_a_peer_accept() {
    let ca = TestCa::new();
    let token = Token::new();
    let (mut alpha, mut beta) = two_providers(&ca, &["alice", "carol"], &["bob"]);
    use_token(&alpha, &ca, &token, Some(PIN));
    let token_cert = cert_der(&std::fs::read(alpha.path().join("certs/signing.pem")).unwrap());
    assert!(!alpha.path().join("certs/signing.key").exists());

    let check = pecd(&alpha, &token, &[], &["check-config"]);
    assert!(
        check.status.success(),
        "pecd check-config with the token: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    alpha.start_env(&[("SOFTHSM2_CONF", token.conf().to_str().unwrap())]);
    beta.start();
    let rcpts = ["bob@pec.beta.test", "carol@pec.alpha.test"];
    let msg = message(
        "alice@pec.alpha.test",
        &rcpts,
        &[],
        "Firmata nel token",
        "",
        "Ciao",
    );
    alpha
        .submit_raw("alice@pec.alpha.test", &rcpts, &msg, false)
        .await
        .expect("submission accepted");

    let acc = alpha.wait_messages("alice@pec.alpha.test", "X-Ricevuta", "accettazione", 1);
    let carol = alpha.wait_messages(
        "carol@pec.alpha.test",
        "X-Trasporto",
        "posta-certificata",
        1,
    );
    // Beta judged Alpha's busta genuine PEC (not an anomaly): the token's
    // signature verifies for a peer too.
    let bob = beta.wait_messages("bob@pec.beta.test", "X-Trasporto", "posta-certificata", 1);
    let cons = alpha.wait_messages("alice@pec.alpha.test", "X-Ricevuta", "avvenuta-consegna", 2);
    let ours: Vec<&Vec<u8>> = cons
        .iter()
        .filter(|m| header(m, "From").is_some_and(|f| f.contains("pec.alpha.test")))
        .collect();
    assert_eq!(
        ours.len(),
        1,
        "one consegna from Alpha (carol), one from Beta (bob)"
    );
    for m in [&acc[0], &carol[0], &bob[0], ours[0]] {
        openssl_verify(m, &ca.pem_path()).expect("openssl smime -verify accepts it");
        assert_eq!(
            cert_der(&signer_of(m, &ca.pem_path())),
            token_cert,
            "signed with the token's key"
        );
    }

    // A reload logs into the token again and signs on with it.
    let reloads = |p: &TestProvider| p.log().matches("configuration reloaded").count();
    alpha.sighup();
    alpha.wait_for("configuration reloaded", 20, || {
        (reloads(&alpha) > 0).then_some(())
    });
    let msg = message(
        "alice@pec.alpha.test",
        &rcpts[1..],
        &[],
        "Dopo il reload",
        "",
        "Ciao",
    );
    alpha
        .submit_raw("alice@pec.alpha.test", &rcpts[1..], &msg, false)
        .await
        .expect("submission accepted after the reload");
    let acc = alpha.wait_messages("alice@pec.alpha.test", "X-Ricevuta", "accettazione", 2);
    for m in &acc {
        assert_eq!(cert_der(&signer_of(m, &ca.pem_path())), token_cert);
    }

    // Another module needs a restart: the reload is refused, saying so, and
    // the token's key signs on.
    let other = token.dir.path().join("another-module.so");
    std::os::unix::fs::symlink(softhsm_module(), &other).unwrap();
    let config = std::fs::read_to_string(alpha.config_path()).unwrap();
    let module_line = format!("pkcs11_module = \"{}\"", softhsm_module().display());
    assert!(config.contains(&module_line));
    std::fs::write(
        alpha.config_path(),
        config.replacen(
            &module_line,
            &format!("pkcs11_module = \"{}\"", other.display()),
            1,
        ),
    )
    .unwrap();
    let refusals = |p: &TestProvider| {
        p.log()
            .lines()
            .filter(|l| {
                l.contains("reload refused") && l.contains("changing pkcs11_module needs a restart")
            })
            .count()
    };
    alpha.sighup();
    alpha.wait_for("reload refused", 20, || {
        (refusals(&alpha) > 0).then_some(())
    });
    std::fs::write(alpha.config_path(), config).unwrap();
    let msg = message(
        "alice@pec.alpha.test",
        &rcpts[1..],
        &[],
        "Dopo il rifiuto",
        "",
        "Ciao",
    );
    alpha
        .submit_raw("alice@pec.alpha.test", &rcpts[1..], &msg, false)
        .await
        .expect("submission accepted after the refused reload");
    let acc = alpha.wait_messages("alice@pec.alpha.test", "X-Ricevuta", "accettazione", 3);
    for m in &acc {
        assert_eq!(cert_der(&signer_of(m, &ca.pem_path())), token_cert);
    }

    // The CLI's signatures (here a log extract, as the daily seals) go
    // through the token as well.
    let out_dir = tempfile::tempdir().unwrap();
    let x = out_dir.path().join("alice");
    let out = pecd(
        &alpha,
        &token,
        &[],
        &[
            "log",
            "export",
            "--address",
            "alice@pec.alpha.test",
            x.to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    run(
        "openssl cms -verify extract",
        Command::new("openssl")
            .args(["cms", "-verify", "-binary", "-inform", "DER", "-in"])
            .arg(x.join("extract.p7s"))
            .arg("-content")
            .arg(x.join("extract.txt"))
            .arg("-CAfile")
            .arg(ca.pem_path())
            .args(["-out", "/dev/null"]),
    );
    // The engine and the module unload cleanly at exit (no crash in their
    // destructors).
    let st = alpha.stop().unwrap();
    assert!(
        st.success(),
        "pecd with a token key exited {st}:\n{}",
        alpha.log()
    );
    beta.stop();
}

#[test]
fn a_wrong_missing_or_misplaced_pin_stops_the_start_with_a_clear_message() {
    let ca = TestCa::new();
    let token = Token::new();
    let p = TestProvider::prepare(
        &ca,
        &ProviderSpec::new("Alpha PEC S.p.A.", "pec.alpha.test", &["alice"]),
    );
    use_token(&p, &ca, &token, None);
    let said = |o: &std::process::Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };
    // A clean exit with an error, not a crash, before any port is bound.
    let refused = |o: &std::process::Output, wants: &[&str]| {
        let text = said(o);
        assert!(
            o.status.code().is_some_and(|c| c != 0),
            "{:?}: {text}",
            o.status
        );
        for w in wants {
            assert!(text.contains(w), "{w:?} not in: {text}");
        }
    };

    let o = pecd(&p, &token, &[("PECD_PKCS11_PIN", "0000")], &["serve"]);
    refused(&o, &["signing.key", "PIN incorrect"]);
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", p.submission)).is_err(),
        "nothing listens"
    );
    let o = pecd(
        &p,
        &token,
        &[("PECD_PKCS11_PIN", "0000")],
        &["check-config"],
    );
    refused(&o, &["PIN incorrect"]);

    let o = pecd(&p, &token, &[], &["serve"]);
    refused(&o, &["PECD_PKCS11_PIN", "signing.pin_file"]);

    // A key the token does not hold.
    let config = std::fs::read_to_string(p.config_path()).unwrap();
    std::fs::write(
        p.config_path(),
        config.replacen("object=signing", "object=nosuch", 1),
    )
    .unwrap();
    let o = pecd(&p, &token, &[("PECD_PKCS11_PIN", PIN)], &["check-config"]);
    refused(&o, &["object=nosuch", "not found"]);
    std::fs::write(p.config_path(), config).unwrap();

    // The right PIN from the environment is enough for `check`.
    let o = pecd(&p, &token, &[("PECD_PKCS11_PIN", PIN)], &["check-config"]);
    assert!(o.status.success(), "{}", said(&o));

    // A PIN file others can read is refused, like ssh refuses such keys.
    let f = p.path().join("pkcs11.pin");
    std::fs::write(&f, format!("{PIN}\n")).unwrap();
    p.append_config("");
    let config = std::fs::read_to_string(p.config_path()).unwrap();
    let with_file = config.replacen(
        "pkcs11_module",
        "pin_file = \"pkcs11.pin\"\npkcs11_module",
        1,
    );
    std::fs::write(p.config_path(), &with_file).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = pecd(&p, &token, &[], &["check-config"]);
    refused(&o, &["signing.pin_file", "chmod 600"]);

    // The PIN in the URI (RFC 7512 allows it) is refused: configs travel.
    let in_uri = config.replacen(URI, &format!("{URI}?pin-value={PIN}"), 1);
    std::fs::write(p.config_path(), in_uri).unwrap();
    let o = pecd(&p, &token, &[], &["check-config"]);
    refused(
        &o,
        &["signing.key", "the PIN never goes in the config file"],
    );
}

#[test]
fn bench_signs_with_the_token_key() {
    let token = Token::new();
    let module = softhsm_module();
    let conf = token.conf();
    let r = bench_json(
        &[
            "--messages",
            "6",
            "--concurrency",
            "2",
            "--pkcs11-key",
            URI,
            "--pkcs11-module",
        ]
        .into_iter()
        .chain(module.to_str())
        .collect::<Vec<_>>(),
        &[
            ("SOFTHSM2_CONF", conf.as_os_str()),
            ("PECD_PKCS11_PIN", std::ffi::OsStr::new(PIN)),
        ],
    );
    assert_eq!(r["accepted"], 6, "{r:#}");
    assert_eq!(r["pkcs11_key"], URI, "{r:#}");
    assert!(
        r["token_signs_per_second_one_thread"].as_f64().unwrap() > 0.0,
        "{r:#}"
    );
    assert_eq!(r["signatures_per_message"].as_f64().unwrap(), 4.0, "{r:#}");
}
