//! Issue 10 §3: the admin listener's `/metrics` (read with Python's
//! reference parser) and `/health`, against a real provider.
use crate::common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::Path;

use common::*;

/// Every sample of `/metrics`, as the reference parser reads them.
fn scrape(p: &TestProvider) -> HashMap<String, f64> {
    let (status, text) = http_get(p.admin, "/metrics");
    assert_eq!(status, 200, "{text}");
    let py = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/prom_parse.py");
    let mut child = std::process::Command::new("python3")
        .arg(py)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the exposition does not parse: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn get(m: &HashMap<String, f64>, key: &str) -> f64 {
    m.get(key).copied().unwrap_or(0.0)
}

#[tokio::test]
async fn metrics_move_with_the_traffic_and_health_names_what_fails() {
    let ca = TestCa::new();
    let mut p = TestProvider::prepare(
        &ca,
        &ProviderSpec::new("Alpha PEC S.p.A.", "pec.alpha.test", &["alice", "bob"]),
    );
    p.start();
    let (alice, bob) = ("alice@pec.alpha.test", "bob@pec.alpha.test");

    let (status, body) = http_get(p.admin, "/health");
    assert_eq!(status, 200, "{body}");
    let h: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(h["status"], "ok", "{h}");
    assert_eq!(h["store"], "ok", "{h}");
    for l in [
        "submission",
        "submissions",
        "inbound",
        "imap",
        "imaps",
        "pop3",
        "pop3s",
    ] {
        assert_eq!(h["listeners"][l], "up", "{h}");
    }
    // The kernel clock as an independent reader sees it (Python's ctypes
    // calling adjtimex: x86-64 struct timex, esterror at 32, status at 40).
    let kernel = std::process::Command::new("python3")
        .args(["-c", "import ctypes,struct\nb=ctypes.create_string_buffer(256)\ns=ctypes.CDLL(None).adjtimex(b)\nprint(int(s!=5 and not struct.unpack_from('i',b.raw,40)[0]&0x40), struct.unpack_from('q',b.raw,32)[0])"])
        .output()
        .expect("python3");
    let kernel = String::from_utf8(kernel.stdout).unwrap();
    let (synced, esterror) = kernel.trim().split_once(' ').expect("python3 adjtimex");
    let synced = synced == "1";
    let esterror_ms = esterror.parse::<f64>().unwrap() / 1000.0;
    assert_eq!(h["clock"]["synchronised"], synced, "{h}");
    let drifting = !synced || esterror_ms > 500.0;
    // Unsynchronised or drifting: a warning, never a 503.
    assert_eq!(
        h["warnings"].as_array().unwrap().is_empty(),
        !drifting,
        "{h}"
    );
    assert_eq!(h["clock"]["warning"].is_null(), !drifting, "{h}");

    let before = scrape(&p);
    // One PEC delivered, one refused, one wrong password on each protocol.
    let msg = message(alice, &[bob], &[], "misurato", "", "ciao");
    p.submit_raw(alice, &[bob], &msg, false).await.unwrap();
    p.wait_messages(alice, "X-Ricevuta", "avvenuta-consegna", 1);
    let bcc = message(
        alice,
        &[bob],
        &[],
        "nascosto",
        "Bcc: x@pec.alpha.test\r\n",
        "x",
    );
    assert!(p.submit_raw(alice, &[bob], &bcc, false).await.is_err());
    let mut c = SecureSmtp::connect(p.submissions, &p.ca_pem, true);
    assert_eq!(c.ehlo_auth(alice, "wrong").0, 535);
    let mut s = std::net::TcpStream::connect(("127.0.0.1", p.imap)).unwrap();
    let mut greeting = [0u8; 512];
    let _ = s.read(&mut greeting).unwrap();
    // Refused before TLS: not a password check, so it must not count.
    s.write_all(b"a LOGIN alice@pec.alpha.test wrong\r\n")
        .unwrap();
    let _ = s.read(&mut greeting).unwrap();
    let r = imap(&p, p.imaps, "tls", alice, "wrong", "login");
    assert_eq!(step(&r, 1)["typ"], "ERR", "{r:#?}");
    assert!(step(&r, 1)["data"]
        .to_string()
        .contains("AUTHENTICATIONFAILED"));

    let after = p.wait_for("metrics to move", 20, || {
        let m = scrape(&p);
        (get(&m, "pecd_submission_to_consegna_seconds_count{}") >= 1.0).then_some(m)
    });
    let delta = |k: &str| get(&after, k) - get(&before, k);
    assert_eq!(delta("pecd_submissions_total{result=accepted}"), 1.0);
    assert_eq!(delta("pecd_submissions_total{result=refused}"), 1.0);
    assert!(delta("pecd_receipts_total{tipo=accettazione}") >= 1.0);
    assert!(delta("pecd_receipts_total{tipo=avvenuta-consegna}") >= 1.0);
    assert!(delta("pecd_receipts_total{tipo=non-accettazione}") >= 1.0);
    // busta + accettazione + consegna + non-accettazione, at least.
    assert!(delta("pecd_signatures_total{}") >= 4.0, "{after:?}");
    assert_eq!(delta("pecd_login_failures_total{protocol=smtp}"), 1.0);
    assert_eq!(delta("pecd_login_failures_total{protocol=imap}"), 1.0);
    assert!(
        after.contains_key("pecd_queue_jobs{state=pending}"),
        "{after:?}"
    );
    assert!(after.contains_key("pecd_queue_jobs{state=held}"));
    // The SMTP session still open above is counted on its listener.
    assert!(get(&after, "pecd_connections{listener=submissions}") >= 1.0);
    let clock = get(&after, "pecd_clock_synchronised{}");
    assert_eq!(clock, if synced { 1.0 } else { 0.0 });
    let sum = get(&after, "pecd_submission_to_consegna_seconds_sum{}");
    assert!(sum > 0.0 && sum < 30.0, "{sum}");
    drop(c);

    // The spool cannot take files: 503, and the failing part is named.
    let spool = p.path().join("data/spool");
    let aside = p.path().join("data/spool.aside");
    std::fs::rename(&spool, &aside).unwrap();
    std::fs::write(&spool, b"not a folder").unwrap();
    let (status, body) = http_get(p.admin, "/health");
    std::fs::remove_file(&spool).unwrap();
    std::fs::rename(&aside, &spool).unwrap();
    assert_eq!(status, 503, "{body}");
    let h: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(h["failing"], serde_json::json!(["store"]), "{h}");
    assert!(h["store"].as_str().unwrap().contains("spool"), "{h}");
    assert_eq!(http_get(p.admin, "/health").0, 200);
}
