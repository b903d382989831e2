//! The tamper-evident PEC log: every row chained, each finished Italian day
//! sealed (signed, and time-stamped by a real RFC 3161 TSA: `openssl ts
//! -reply` behind tests/tsa_server.py), `pecd log verify` naming what was
//! changed. Days pass for the daemon through libfaketime (the daemon runs
//! one day ahead; nothing in pecd knows): rows written today are a finished
//! day for it. `openssl ts -verify` and `openssl cms -verify` check the
//! files as second opinions.
use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::*;

const POLICY: &str = "1.3.6.1.4.1.99999.1";

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("command runs");
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn openssl(dir: &Path, args: &[&str]) -> String {
    run(Command::new("openssl").current_dir(dir).args(args))
}

/// A TSA's PKI and `openssl ts` configuration, made at test time.
struct Tsa {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
}

impl Tsa {
    fn new() -> Tsa {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        openssl(
            d,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "tsaca.key",
                "-out",
                "tsaca.pem",
                "-subj",
                "/CN=pecd test TSA CA",
                "-days",
                "30",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        );
        openssl(
            d,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "tsa.key",
                "-out",
                "tsa.csr",
                "-subj",
                "/CN=pecd test TSA",
            ],
        );
        std::fs::write(
            d.join("tsa.ext"),
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,nonRepudiation\n\
             extendedKeyUsage=critical,timeStamping\n",
        )
        .unwrap();
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                "tsa.csr",
                "-CA",
                "tsaca.pem",
                "-CAkey",
                "tsaca.key",
                "-CAcreateserial",
                "-out",
                "tsa.pem",
                "-days",
                "30",
                "-extfile",
                "tsa.ext",
            ],
        );
        std::fs::write(d.join("serial"), "01\n").unwrap();
        std::fs::write(
            d.join("ts.cnf"),
            format!(
                "[ tsa ]\ndefault_tsa = tsa1\n[ tsa1 ]\ndir = {dir}\nserial = $dir/serial\n\
                 crypto_device = builtin\nsigner_cert = $dir/tsa.pem\ncerts = $dir/tsa.pem\n\
                 signer_key = $dir/tsa.key\nsigner_digest = sha256\ndefault_policy = {POLICY}\n\
                 digests = sha256\naccuracy = secs:1\nordering = yes\ntsa_name = yes\n\
                 ess_cert_id_chain = no\ness_cert_id_alg = sha256\n",
                dir = d.display()
            ),
        )
        .unwrap();
        Tsa {
            dir,
            port: free_port(),
            child: None,
        }
    }

    fn ca(&self) -> PathBuf {
        self.dir.path().join("tsaca.pem")
    }

    fn config(&self) -> String {
        format!(
            "[log]\ntsa_url = \"http://127.0.0.1:{}/tsa\"\ntsa_ca = \"{}\"\ntsa_policy = \"{POLICY}\"\n\
             seal_retry_initial = \"500ms\"\nseal_retry_max = \"1s\"\n",
            self.port,
            self.ca().display()
        )
    }

    fn start(&mut self) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tsa_server.py");
        let child = Command::new("python3")
            .arg(script)
            .arg(self.port.to_string())
            .arg(self.dir.path().join("ts.cnf"))
            .arg(self.dir.path())
            .spawn()
            .expect("python3");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "the test TSA did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn requests(&self) -> usize {
        std::fs::read_to_string(self.dir.path().join("requests"))
            .map(|s| s.lines().count())
            .unwrap_or(0)
    }
}

impl Drop for Tsa {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// libfaketime, so the daemon lives one day ahead.
fn tomorrow() -> Vec<(&'static str, &'static str)> {
    days_ahead("+1d")
}

/// libfaketime, so a process lives `offset` (`+2d`) ahead.
fn days_ahead(offset: &'static str) -> Vec<(&'static str, &'static str)> {
    let lib = [
        "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1",
        "/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1",
        "/usr/lib/faketime/libfaketimeMT.so.1",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists())
    .expect("libfaketime is installed (.ci/run installs the faketime package)");
    vec![
        ("LD_PRELOAD", lib),
        ("FAKETIME", offset),
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
        ("FAKETIME_DONT_RESET", "1"),
    ]
}

fn health(p: &TestProvider) -> serde_json::Value {
    serde_json::from_str(&http_get(p.admin, "/health").1).unwrap()
}

fn unsealed_metric(p: &TestProvider) -> Option<f64> {
    http_get(p.admin, "/metrics")
        .1
        .lines()
        .find(|l| l.starts_with("pecd_log_unsealed_days "))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
}

fn italian_today() -> String {
    let now = pecd::pec::clock::since_epoch().as_millis() as i64;
    pecd::pec::logseal::Day::of_ms(now).to_string()
}

async fn write_some_rows(p: &TestProvider) {
    let to = "alice@pec.alpha.test";
    let msg = message(to, &[to], &[], "Da sigillare", "", "Ciao");
    p.submit_raw(to, &[to], &msg, false)
        .await
        .expect("accepted");
    p.wait_for("the deliveries", 20, || {
        (p.events("deposito").len() >= 2).then_some(())
    });
}

fn seals_dir(p: &TestProvider) -> PathBuf {
    p.path().join("data/log/seals")
}

fn verify(p: &TestProvider) -> (bool, String) {
    verify_at(p, &[], &[])
}

/// `pecd log verify ARGS` with `env` (libfaketime: the day the daemon
/// sealed is then over for the check too).
fn verify_at(p: &TestProvider, env: &[(&str, &str)], args: &[&str]) -> (bool, String) {
    let out = Command::new(pecd_bin())
        .arg("--config")
        .arg(p.config_path())
        .args(["log", "verify"])
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn seal_count(p: &TestProvider) -> i64 {
    p.db()
        .query_row("SELECT count(*) FROM log_seals", [], |r| r.get(0))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_day_is_sealed_time_stamped_after_the_tsa_comes_back_and_once() {
    let ca = TestCa::new();
    let mut tsa = Tsa::new();
    let mut spec = ProviderSpec::new("Alpha PEC S.p.A.", "pec.alpha.test", &["alice"]);
    spec.extra_config = tsa.config();
    let mut p = TestProvider::prepare(&ca, &spec);
    p.start();
    write_some_rows(&p).await;
    // Today is not over: nothing to seal, nothing owed.
    assert_eq!(health(&p)["log"]["unsealed_days"], serde_json::json!([]));
    p.stop();
    let today = italian_today();

    // A day later for the daemon, with the TSA down: the seal is signed and
    // stored, the time stamp is owed and says so.
    p.start_env(&tomorrow());
    let h = p.wait_for("the unsealed day in /health", 20, || {
        let h = health(&p);
        (h["log"]["unsealed_days"] == serde_json::json!([today.clone()])).then_some(h)
    });
    let warnings = h["warnings"].to_string();
    assert!(
        warnings.contains(&today) && warnings.contains("not sealed"),
        "{h}"
    );
    assert!(
        h["log"]["error"]
            .as_str()
            .unwrap_or("")
            .contains("127.0.0.1"),
        "{h}"
    );
    assert_eq!(h["status"], "ok", "an unsealed day is a warning: {h}");
    assert_eq!(unsealed_metric(&p), Some(1.0));
    let dir = seals_dir(&p);
    assert!(dir.join(format!("{today}.seal")).exists());
    assert!(dir.join(format!("{today}.p7s")).exists());
    assert!(!dir.join(format!("{today}.tsr")).exists());
    p.wait_for("the TSA to be retried", 20, || {
        (p.log()
            .matches("PEC log seal not complete; trying again")
            .count()
            >= 2)
            .then_some(())
    });
    // Meanwhile `log verify` names the day, with the sealer's reason.
    let (ok, out) = verify(&p);
    assert!(!ok, "{out}");
    let line = out
        .lines()
        .find(|l| l.starts_with(&format!("UNSTAMPED day {today}: ")))
        .unwrap_or_else(|| panic!("the unstamped day is not named:\n{out}"));
    assert!(
        line.contains("the sealer's last error") && line.contains("127.0.0.1"),
        "{line}"
    );

    tsa.start();
    let tsr = dir.join(format!("{today}.tsr"));
    p.wait_for("the time stamp", 20, || tsr.exists().then_some(()));
    p.wait_for("health clear", 10, || {
        (health(&p)["log"]["unsealed_days"] == serde_json::json!([])).then_some(())
    });
    assert_eq!(unsealed_metric(&p), Some(0.0));
    assert_eq!(tsa.requests(), 1);

    // Second opinions on the files as they are.
    let seal = dir.join(format!("{today}.seal"));
    let text = std::fs::read_to_string(&seal).unwrap();
    assert!(
        text.starts_with("pecd-log-seal 1\nprovider: pec.alpha.test\n"),
        "{text}"
    );
    assert!(text.contains(&format!("date: {today}\n")), "{text}");
    let out = openssl(
        dir.as_path(),
        &[
            "ts",
            "-verify",
            "-data",
            seal.to_str().unwrap(),
            "-in",
            tsr.to_str().unwrap(),
            "-CAfile",
            tsa.ca().to_str().unwrap(),
        ],
    );
    assert!(out.contains("Verification: OK"), "{out}");
    let reply = openssl(
        dir.as_path(),
        &["ts", "-reply", "-in", tsr.to_str().unwrap(), "-text"],
    );
    assert!(reply.contains(POLICY), "{reply}");
    openssl(
        dir.as_path(),
        &[
            "cms",
            "-verify",
            "-binary",
            "-inform",
            "DER",
            "-in",
            dir.join(format!("{today}.p7s")).to_str().unwrap(),
            "-content",
            seal.to_str().unwrap(),
            "-CAfile",
            ca.pem_path().to_str().unwrap(),
            "-out",
            "/dev/null",
        ],
    );

    // A restart seals nothing twice and asks the TSA nothing more.
    p.stop();
    p.start_env(&tomorrow());
    // The sealer's first round on this start is over when /health names
    // the sealed day (null until then).
    p.wait_for("the sealer's first round after the restart", 20, || {
        (health(&p)["log"]["sealed_through"] == serde_json::json!(today)).then_some(())
    });
    p.stop();
    assert_eq!(seal_count(&p), 1);
    assert_eq!(tsa.requests(), 1);
    assert_eq!(std::fs::read_to_string(&seal).unwrap(), text);

    let (ok, out) = verify(&p);
    assert!(ok, "{out}");
    assert!(out.contains("1 seal(s) checked (1 time-stamped)"), "{out}");

    // A backup carries the seals.
    let backup = tempfile::tempdir().unwrap();
    let dest = backup.path().join("b");
    let out = p.cli(&["backup", dest.to_str().unwrap()], "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for ext in ["seal", "p7s", "tsr"] {
        assert!(
            dest.join(format!("log/seals/{today}.{ext}")).exists(),
            "{ext}"
        );
    }

    extract(&p, &today);
    tampering(&p, &today);
}

/// One user's extract: written, checked offline, and refused once changed.
fn extract(p: &TestProvider, today: &str) {
    let out_dir = tempfile::tempdir().unwrap();
    let x = out_dir.path().join("alice");
    let out = p.cli(
        &[
            "log",
            "export",
            "--address",
            "alice@pec.alpha.test",
            x.to_str().unwrap(),
        ],
        "",
    );
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("over 1 sealed day(s)"), "{said}");
    let text = std::fs::read_to_string(x.join("extract.txt")).unwrap();
    assert!(text.contains(&format!("day: {today}\n")), "{text}");
    assert!(text.lines().any(|l| l.starts_with("row {")), "{text}");
    for ext in ["seal", "p7s", "tsr"] {
        assert!(x.join(format!("seals/{today}.{ext}")).exists(), "{ext}");
    }
    // The provider's signature on the extract, checked by openssl.
    openssl(
        out_dir.path(),
        &[
            "cms",
            "-verify",
            "-binary",
            "-inform",
            "DER",
            "-in",
            x.join("extract.p7s").to_str().unwrap(),
            "-content",
            x.join("extract.txt").to_str().unwrap(),
            "-CAfile",
            p.path().join("certs/ca.pem").to_str().unwrap(),
            "-out",
            "/dev/null",
        ],
    );
    let check = |dir: &Path| {
        let out = p.cli(&["log", "verify", "--extract", dir.to_str().unwrap()], "");
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    // Offline: the database is out of the way while it is checked.
    let db = p.path().join("data/pecd.sqlite3");
    let aside = p.path().join("aside.sqlite3");
    std::fs::rename(&db, &aside).unwrap();
    let (ok, said) = check(&x);
    assert!(ok, "{said}");
    assert!(said.contains("extract verified:"), "{said}");
    // A row of the extract changed: its chain and its signature fail.
    let forged = text.replacen("Da sigillare", "Da falsificare", 1);
    assert_ne!(forged, text);
    std::fs::write(x.join("extract.txt"), &forged).unwrap();
    let (ok, said) = check(&x);
    assert!(!ok, "{said}");
    assert!(
        said.contains("do not chain to the sealed last-hash"),
        "{said}"
    );
    assert!(
        said.contains("extract.txt: the signature does not verify"),
        "{said}"
    );
    std::fs::rename(&aside, &db).unwrap();
}

/// Python's sqlite3, as an attacker with the file would use it.
fn python_sql(db: &Path, script: &str) {
    run(Command::new("python3").arg("-c").arg(format!(
        "import sqlite3,hashlib,struct\nc=sqlite3.connect({db:?})\n{script}\nc.commit()\n",
        db = db.display().to_string()
    )));
}

/// The canonical row and chain of docs/log-integrity.md, written again in
/// Python: what an attacker who read the docs can recompute.
const RECHAIN: &str = r#"
def canon(r):
    out = struct.pack('>qq', r[0], r[1])
    for t in r[2:12]:
        if t is None:
            out += b'\x00'
        else:
            b = t.encode()
            out += b'\x01' + struct.pack('>I', len(b)) + b
    return out
def rechain(check_only):
    prev = bytes(32)
    cols = 'id, ts, event, identificativo, msgid, sender, recipients, subject, receipt_type, generated_msgid, error, detail, chain'
    for r in c.execute('SELECT ' + cols + ' FROM log ORDER BY id').fetchall():
        prev = hashlib.sha256(prev + hashlib.sha256(canon(r)).digest()).digest()
        if check_only:
            assert prev == r[12], 'row %d: the documented chain differs' % r[0]
        else:
            c.execute('UPDATE log SET chain = ? WHERE id = ?', (prev, r[0]))
"#;

fn tampering(p: &TestProvider, today: &str) {
    let db = p.path().join("data/pecd.sqlite3");
    let pristine = p.path().join("pristine.sqlite3");
    python_sql(
        &db,
        &format!("c.execute(\"VACUUM INTO '{}'\")", pristine.display()),
    );
    // The documented encoding is the one pecd writes.
    python_sql(&db, &format!("{RECHAIN}\nrechain(True)"));
    let restore = || {
        for ext in ["-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{ext}", db.display()));
        }
        std::fs::copy(&pristine, &db).unwrap();
        assert!(verify(p).0, "the pristine copy verifies");
    };
    let cases: [(&str, &str, &str); 4] = [
        (
            "edit",
            "c.execute('DROP TRIGGER log_is_append_only')\n\
             c.execute(\"UPDATE log SET subject = 'Falso' WHERE id = 2\")",
            "row 2: its content or position does not match",
        ),
        (
            "delete",
            "c.execute('DROP TRIGGER log_kept_30_months')\nc.execute('DELETE FROM log WHERE id = 2')",
            "row 3: the chain breaks here: row(s) 2..2 are missing",
        ),
        (
            "reorder",
            "c.execute('DROP TRIGGER log_is_append_only')\n\
             c.execute('UPDATE log SET id = -1 WHERE id = 2')\n\
             c.execute('UPDATE log SET id = 2 WHERE id = 3')\n\
             c.execute('UPDATE log SET id = 3 WHERE id = -1')",
            "row 2: its content or position does not match",
        ),
        (
            "rewrite and rechain",
            "c.execute('DROP TRIGGER log_is_append_only')\n\
             c.execute(\"UPDATE log SET subject = 'Falso' WHERE id = 2\")\nrechain(False)",
            "'s chain hash is not the one sealed",
        ),
    ];
    for (what, script, named) in cases {
        restore();
        python_sql(&db, &format!("{RECHAIN}\n{script}"));
        let (ok, out) = verify(p);
        assert!(!ok, "{what}: verify must fail:\n{out}");
        let first = out.lines().next().unwrap_or("");
        assert!(first.starts_with("MISMATCH "), "{what}:\n{out}");
        assert!(out.contains(named), "{what}: expected {named:?} in:\n{out}");
        if what == "rewrite and rechain" || what == "delete" {
            assert!(
                out.contains(&format!("day {today}:")),
                "{what}: the day is named:\n{out}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_tsa_the_seal_is_signed_and_a_resealed_log_does_not_verify() {
    let ca = TestCa::new();
    // tests/common writes `[log] tsa_url = "none"`.
    let mut p = TestProvider::prepare(
        &ca,
        &ProviderSpec::new("Alpha PEC S.p.A.", "pec.alpha.test", &["alice"]),
    );
    p.start();
    write_some_rows(&p).await;
    p.stop();
    let today = italian_today();
    p.start_env(&tomorrow());
    let dir = seals_dir(&p);
    p.wait_for("the seal", 20, || {
        dir.join(format!("{today}.p7s")).exists().then_some(())
    });
    let h = p.wait_for("the warning", 10, || {
        let h = health(&p);
        h["warnings"]
            .to_string()
            .contains("signed but not time-stamped")
            .then_some(h)
    });
    assert_eq!(h["log"]["time_stamped"], false, "{h}");
    assert_eq!(h["log"]["unsealed_days"], serde_json::json!([]), "{h}");
    assert_eq!(unsealed_metric(&p), Some(0.0));
    assert!(!dir.join(format!("{today}.tsr")).exists());
    p.stop();
    // A seal without a time stamp proves nothing against the key's holder.
    let (ok, out) = verify(&p);
    assert!(!ok, "{out}");
    assert!(
        out.contains(&format!(
            "UNSTAMPED day {today}: sealed and signed, not time-stamped"
        )),
        "{out}"
    );
    let (ok, out) = verify_at(&p, &[], &["--allow-unstamped"]);
    assert!(ok, "{out}");
    assert!(out.contains("(0 time-stamped)"), "{out}");

    // The insider: a row rewritten, the chain recomputed, the day's seal
    // deleted (row and files) and made again by the daemon with the key.
    let db = p.path().join("data/pecd.sqlite3");
    let original = std::fs::read_to_string(dir.join(format!("{today}.seal"))).unwrap();
    python_sql(
        &db,
        &format!(
            "{RECHAIN}\nc.execute('DROP TRIGGER log_is_append_only')\n\
             c.execute(\"UPDATE log SET subject = 'Falso' WHERE id = 2\")\nrechain(False)\n\
             c.execute('DROP TRIGGER log_seals_kept')\nc.execute('DELETE FROM log_seals')"
        ),
    );
    for ext in ["seal", "p7s"] {
        std::fs::remove_file(dir.join(format!("{today}.{ext}"))).unwrap();
    }
    p.start_env(&tomorrow());
    p.wait_for("the new seal", 20, || {
        dir.join(format!("{today}.p7s")).exists().then_some(())
    });
    p.stop();
    let forged = std::fs::read_to_string(dir.join(format!("{today}.seal"))).unwrap();
    assert_ne!(forged, original, "the seal covers the rewritten rows");
    // Without a time stamp it cannot be told from the real one: only
    // --allow-unstamped lets it pass.
    let (ok, out) = verify(&p);
    assert!(!ok, "a resealed log verifies:\n{out}");
    assert!(out.contains(&format!("UNSTAMPED day {today}: ")), "{out}");
    let (ok, out) = verify_at(&p, &[], &["--allow-unstamped"]);
    assert!(ok, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_seal_is_named_and_never_made_again() {
    let ca = TestCa::new();
    let mut p = TestProvider::prepare(
        &ca,
        &ProviderSpec::new("Alpha PEC S.p.A.", "pec.alpha.test", &["alice"]),
    );
    let day = |offset: i64| {
        let now = pecd::pec::clock::since_epoch().as_millis() as i64;
        pecd::pec::logseal::Day::of_ms(now + offset * 86_400_000).to_string()
    };
    let (d0, d1) = (day(0), day(1));
    // Rows on two days, sealed on the third.
    p.start();
    write_some_rows(&p).await;
    p.stop();
    p.start_env(&days_ahead("+1d"));
    write_some_rows(&p).await;
    p.stop();
    let later = days_ahead("+2d");
    p.start_env(&later);
    let dir = seals_dir(&p);
    p.wait_for("both seals", 20, || {
        (dir.join(format!("{d1}.p7s")).exists() && dir.join(format!("{d0}.p7s")).exists())
            .then_some(())
    });
    p.stop();
    assert_eq!(seal_count(&p), 2);
    let (ok, out) = verify_at(&p, &later, &["--allow-unstamped"]);
    assert!(ok, "{out}");

    // The first day's seal deleted, row and files: the daemon does not
    // seal it again (it is older than the last seal), /health and
    // `log verify` name it.
    let db = p.path().join("data/pecd.sqlite3");
    let drop_seal = |date: &str| {
        python_sql(
            &db,
            &format!(
                "c.execute('DROP TRIGGER IF EXISTS log_seals_kept')\n\
                 c.execute(\"DELETE FROM log_seals WHERE date = '{date}'\")"
            ),
        )
    };
    drop_seal(&d0);
    for ext in ["seal", "p7s"] {
        std::fs::remove_file(dir.join(format!("{d0}.{ext}"))).unwrap();
    }
    p.start_env(&later);
    p.wait_for("the lost day in /health", 20, || {
        let h = health(&p);
        (h["log"]["unsealed_days"] == serde_json::json!([d0.clone()])).then_some(())
    });
    p.stop();
    assert_eq!(
        seal_count(&p),
        1,
        "a day older than the last seal was sealed again"
    );
    assert!(!dir.join(format!("{d0}.seal")).exists());
    let (ok, out) = verify_at(&p, &later, &["--allow-unstamped"]);
    assert!(!ok, "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with(&format!("UNSEALED day {d0}: "))
                && l.contains("row(s) of this finished day are in no seal")),
        "{out}"
    );

    // The last seal's row deleted, its files left: sealing stops instead of
    // sealing those rows again under any date; both days are named.
    drop_seal(&d1);
    p.start_env(&later);
    let h = p.wait_for("the refusal in /health", 20, || {
        let h = health(&p);
        h["log"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("not in the database"))
            .then_some(h)
    });
    assert_eq!(
        h["log"]["unsealed_days"],
        serde_json::json!([d0.clone(), d1.clone()]),
        "{h}"
    );
    p.stop();
    assert_eq!(seal_count(&p), 0, "a day was sealed again");
    let (ok, out) = verify_at(&p, &later, &["--allow-unstamped"]);
    assert!(!ok, "{out}");
    for d in [&d0, &d1] {
        assert!(out.contains(&format!("UNSEALED day {d}: ")), "{out}");
    }
    assert!(
        out.contains(&format!(
            "MISMATCH day {d1}: {}",
            dir.join(format!("{d1}.seal")).display()
        )) && out.contains("the database has no seal for that day"),
        "{out}"
    );
    // The reason the sealer gave is printed beside the day.
    assert!(
        out.lines()
            .any(|l| l.starts_with(&format!("UNSEALED day {d1}: "))
                && l.contains("not in the database")),
        "{out}"
    );
}

#[test]
fn serve_refuses_a_provider_without_tsa_url_and_warns_with_none() {
    let ca = TestCa::new();
    let mut p = TestProvider::prepare(
        &ca,
        &ProviderSpec::new("Alpha PEC S.p.A.", "pec.alpha.test", &["alice"]),
    );
    let with_none = std::fs::read_to_string(p.config_path()).unwrap();
    let line = "tsa_url = \"none\"\n";
    assert!(with_none.contains(line), "{with_none}");
    std::fs::write(p.config_path(), with_none.replace(line, "")).unwrap();
    let out = p.cli(&["check-config"], "");
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("log.tsa_url: not set"), "{said}");
    let out = Command::new(pecd_bin())
        .arg("--config")
        .arg(p.config_path())
        .arg("serve")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "serve started without tsa_url: {err}"
    );
    assert!(
        err.contains("log.tsa_url: not set") && err.contains("tsa_url = \"none\""),
        "{err}"
    );

    // "none", said on purpose: it starts, and says what that means.
    std::fs::write(p.config_path(), &with_none).unwrap();
    let out = p.cli(&["check-config"], "");
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(
        said.contains("warning: log.tsa_url: \"none\"") && said.contains("NOT time-stamped"),
        "{said}"
    );
    p.start();
    p.wait_for("the start-up warning", 10, || {
        p.log()
            .lines()
            .any(|l| {
                l.contains("WARN")
                    && l.contains("log.tsa_url: \"none\"")
                    && l.contains("NOT time-stamped")
            })
            .then_some(())
    });
}
