//! `pecd bench` runs end to end and reports what issue 5 asks for (a small
//! run: the figures themselves are recorded in docs/performance.md).
use crate::common;

#[test]
fn bench_reports_throughput_latency_and_the_signing_bound() {
    let r = common::bench_json(
        &[
            "--messages",
            "12",
            "--concurrency",
            "3",
            "--recipients",
            "2",
        ],
        &[],
    );
    assert_eq!(r["accepted"], 12, "{r:#}");
    assert!(r["messages_per_second"].as_f64().unwrap() > 0.0, "{r:#}");
    // busta + accettazione + presa in carico + one consegna per recipient.
    assert_eq!(r["signatures_per_message"].as_f64().unwrap(), 5.0, "{r:#}");
    for k in ["reply_ms", "accettazione_ms", "consegna_ms"] {
        assert!(r[k]["p99"].as_f64().unwrap() > 0.0, "{k}: {r:#}");
        assert_eq!(r[k]["n"], 12, "{k}: {r:#}");
    }
    assert!(r["peak_rss_mib"].as_f64().unwrap() > 0.0);
    let bound = r["signing_bound_messages_per_second"].as_f64().unwrap();
    let fraction = r["fraction_of_signing_bound"].as_f64().unwrap();
    assert!(
        bound > 0.0 && (fraction - r["messages_per_second"].as_f64().unwrap() / bound).abs() < 1e-9
    );
}

#[test]
fn bench_webmail_times_the_first_page_of_a_large_folder() {
    let r = common::bench_json(&["--webmail", "--messages", "300"], &[]);
    assert_eq!(r["messages"], 300, "{r:#}");
    assert_eq!(r["first_page_ms"]["n"], 100, "{r:#}");
    let p99 = r["first_page_ms"]["p99"].as_f64().unwrap();
    assert!(p99 > 0.0, "{r:#}");
    assert!(
        (r["p99_of_target"].as_f64().unwrap() - p99 / 200.0).abs() < 1e-9,
        "{r:#}"
    );
    assert_eq!(r["debug_build"], cfg!(debug_assertions), "{r:#}");
}

/// `--rate R`: open loop, every message due at i / R whichever session sends
/// it, and the latencies the issue names, from the end of DATA.
#[test]
fn bench_rate_paces_the_sends_and_times_from_the_end_of_data() {
    let r = common::bench_json(
        &["--messages", "20", "--concurrency", "4", "--rate", "40"],
        &[],
    );
    assert_eq!(r["accepted"], 20, "{r:#}");
    assert_eq!(r["rate"].as_f64().unwrap(), 40.0, "{r:#}");
    // Message 19 is not due before 19/40 s: the run cannot be shorter.
    assert!(r["seconds"].as_f64().unwrap() >= 19.0 / 40.0, "{r:#}");
    assert_eq!(r["send_lateness_ms"]["n"], 20, "{r:#}");
    for (from_data, from_send) in [
        ("data_end_to_accettazione_ms", "accettazione_ms"),
        ("data_end_to_consegna_ms", "consegna_ms"),
    ] {
        assert_eq!(r[from_data]["n"], 20, "{from_data}: {r:#}");
        // The end of DATA comes after the send, message by message.
        for q in ["p50", "p99", "max"] {
            let d = r[from_data][q].as_f64().unwrap();
            assert!(
                d >= 0.0 && d <= r[from_send][q].as_f64().unwrap(),
                "{from_data}.{q}: {r:#}"
            );
        }
    }
    assert!(r.get("saturated").is_none(), "{r:#}");
}

/// `--rate half`: a saturated run, then one at half its PEC/s.
#[test]
fn bench_rate_half_runs_saturated_then_at_half_of_it() {
    let r = common::bench_json(
        &["--messages", "16", "--concurrency", "4", "--rate", "half"],
        &[],
    );
    let s = &r["saturated"];
    assert_eq!(s["rate"].as_f64().unwrap(), 0.0, "{r:#}");
    assert!(s.get("send_lateness_ms").is_none(), "{r:#}");
    let saturated = s["messages_per_second"].as_f64().unwrap();
    assert!(saturated > 0.0, "{r:#}");
    assert!(
        (r["rate"].as_f64().unwrap() - saturated / 2.0).abs() < 1e-9,
        "{r:#}"
    );
    assert_eq!(r["accepted"], 16, "{r:#}");
    assert_eq!(r["send_lateness_ms"]["n"], 16, "{r:#}");
    assert_eq!(r["data_end_to_consegna_ms"]["n"], 16, "{r:#}");
}

/// A temp dir Postfix's `mail_owner` can search (tempfile makes them 0700),
/// for the bench's TMPDIR.
fn open_tmpdir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let t = tempfile::tempdir().unwrap();
    std::fs::set_permissions(t.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    t
}

fn entries(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// `--against-postfix` with tiny counts: a stock Postfix and pecd, one run
/// each, both reported with the ratio of the medians, nothing left behind.
/// Needs Debian's `postfix` (scripts/test installs it).
#[test]
fn bench_against_postfix_prints_both_and_their_ratio() {
    let tmp = open_tmpdir();
    let r = common::bench_json(
        &["--against-postfix", "--messages", "20", "--runs", "1"],
        &[("TMPDIR", tmp.path().as_os_str())],
    );
    assert_eq!(r["messages"], 20, "{r:#}");
    assert_eq!(r["concurrency"], 20, "{r:#}");
    assert_eq!(r["size"], 2048, "{r:#}");
    assert_eq!(r["runs"], 1, "{r:#}");
    let (pf, pecd) = (&r["postfix"][0], &r["pecd"][0]);
    assert_eq!(r["postfix"].as_array().unwrap().len(), 1, "{r:#}");
    assert_eq!(r["pecd"].as_array().unwrap().len(), 1, "{r:#}");
    assert_eq!(pf["messages"], 20, "{r:#}");
    let pf_rate = pf["messages_per_second"].as_f64().unwrap();
    assert!(
        (pf_rate - 20.0 / pf["seconds"].as_f64().unwrap()).abs() < 1e-9,
        "{r:#}"
    );
    assert!(pf["submission_seconds"].as_f64().unwrap() <= pf["seconds"].as_f64().unwrap());
    assert_eq!(pecd["accepted"], 20, "{r:#}");
    let pecd_rate = pecd["messages_per_second"].as_f64().unwrap();
    assert_eq!(
        r["postfix_median_messages_per_second"].as_f64().unwrap(),
        pf_rate
    );
    assert_eq!(
        r["pecd_median_messages_per_second"].as_f64().unwrap(),
        pecd_rate
    );
    assert!(
        (r["ratio"].as_f64().unwrap() - pecd_rate / pf_rate).abs() < 1e-9,
        "{r:#}"
    );
    let version = std::process::Command::new("postconf")
        .args(["-d", "-h", "mail_version"])
        .output()
        .expect("postconf (Debian package postfix)");
    assert_eq!(
        r["machine"]["postfix_version"],
        String::from_utf8_lossy(&version.stdout).trim(),
        "{r:#}"
    );
    assert!(r["machine"]["cores"].as_u64().unwrap() >= 1, "{r:#}");
    // Postfix's instance and pecd's lab are gone.
    assert!(entries(tmp.path()).is_empty(), "{:?}", entries(tmp.path()));
}

/// A sitting of far more messages than a stock Postfix relays in the
/// moment a test takes, in `tmp`, followed until its first Postfix run has
/// started: the sitting, its stderr, the instance's folder, smtpd's port
/// and the master's pid.
fn sitting_in_its_postfix_run(
    tmp: &std::path::Path,
) -> (
    std::process::Child,
    std::io::BufReader<std::process::ChildStderr>,
    std::path::PathBuf,
    u16,
    String,
) {
    use std::io::BufRead;
    let mut child = std::process::Command::new(common::pecd_bin())
        .args([
            "bench",
            "--against-postfix",
            "--messages",
            "200000",
            "--runs",
            "1",
        ])
        .env("RUST_LOG", "error")
        .env("TMPDIR", tmp)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("Postfix run 1 started in ") {
        line.clear();
        assert!(err.read_line(&mut line).unwrap() > 0, "pecd ended first");
    }
    // "bench: Postfix run 1 started in DIR (smtpd 127.0.0.1:PORT, …)"
    let dir = line.split("started in ").nth(1).unwrap();
    let dir = std::path::PathBuf::from(dir.split(" (").next().unwrap());
    let port: u16 = line
        .split("smtpd 127.0.0.1:")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .unwrap()
        .parse()
        .unwrap();
    let master = std::fs::read_to_string(dir.join("queue/pid/master.pid")).unwrap();
    (child, err, dir, port, master.trim().to_string())
}

fn signal(sig: &str, pid: &str) {
    let status = std::process::Command::new("kill")
        .args([sig, pid])
        .status()
        .unwrap();
    assert!(status.success(), "kill {sig} {pid}");
}

fn wait_exit(child: &mut std::process::Child) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        assert!(std::time::Instant::now() < deadline, "pecd did not stop");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Gone, or a zombie waiting for init to reap it.
fn dead(pid: &str) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .next();
    matches!(state, None | Some("Z") | Some("X"))
}

/// SIGTERM in the middle of a Postfix run: Postfix is stopped, its folder
/// removed, and pecd says so.
#[test]
fn bench_against_postfix_cleans_up_when_interrupted() {
    let tmp = open_tmpdir();
    let (mut child, mut err, dir, port, master) = sitting_in_its_postfix_run(tmp.path());
    signal("-TERM", &child.id().to_string());
    let status = wait_exit(&mut child);
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut err, &mut rest).unwrap();
    assert!(!status.success(), "{rest}");
    assert!(rest.contains("bench interrupted by SIGTERM"), "{rest}");
    assert!(!dir.exists(), "{} left behind", dir.display());
    assert!(entries(tmp.path()).is_empty(), "{:?}", entries(tmp.path()));
    assert!(dead(&master), "master {master} still runs");
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
}

/// A sitting killed with SIGKILL cannot clean up: the next one stops the
/// master and the orphaned `smtp-sink` it left, and removes the folder.
#[test]
fn bench_against_postfix_sweeps_what_a_killed_sitting_left() {
    let tmp = open_tmpdir();
    let (mut child, _err, dir, port, master) = sitting_in_its_postfix_run(tmp.path());
    let sink = std::fs::read_to_string(dir.join("smtp-sink.pid")).unwrap();
    let sink = sink.split_whitespace().next().unwrap().to_string();
    signal("-KILL", &child.id().to_string());
    wait_exit(&mut child);
    assert!(dir.exists() && !dead(&master) && !dead(&sink));
    let r = common::bench_json(
        &["--against-postfix", "--messages", "5", "--runs", "1"],
        &[("TMPDIR", tmp.path().as_os_str())],
    );
    assert_eq!(r["postfix"][0]["messages"], 5, "{r:#}");
    assert!(!dir.exists(), "{} left behind", dir.display());
    assert!(entries(tmp.path()).is_empty(), "{:?}", entries(tmp.path()));
    assert!(dead(&master), "master {master} still runs");
    assert!(dead(&sink), "smtp-sink {sink} still runs");
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
}

/// Without Postfix's programs: which are missing and which Debian package
/// has them, and a failure.
#[test]
fn bench_against_postfix_names_the_package_when_postfix_is_missing() {
    let empty = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(common::pecd_bin())
        .args([
            "bench",
            "--against-postfix",
            "--messages",
            "5",
            "--runs",
            "1",
        ])
        .env("PATH", empty.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("postfix, postconf, smtp-source, smtp-sink missing"),
        "{err}"
    );
    assert!(err.contains("apt-get install -y postfix"), "{err}");
    assert!(err.contains("No configuration"), "{err}");
}

#[test]
fn bench_on_postgresql_keeps_both_providers_rows_in_a_throwaway_database() {
    let r = common::bench_json(
        &[
            "--messages",
            "10",
            "--concurrency",
            "2",
            "--store",
            "postgresql",
        ],
        &[],
    );
    assert_eq!(r["accepted"], 10, "{r:#}");
    assert_eq!(r["store"], "postgresql", "{r:#}");
    assert_eq!(r["consegna_ms"]["n"], 10, "{r:#}");
    // Each PEC leaves rows in both providers' logs (accettazione, inoltro,
    // ricezione, consegna, …): at least two per message.
    assert!(r["store_log_rows"].as_i64().unwrap() >= 20, "{r:#}");
    let plain = common::bench_json(&["--messages", "2", "--concurrency", "1"], &[]);
    assert_eq!(plain["store"], "sqlite", "{plain:#}");
    assert!(plain.get("store_log_rows").is_none(), "{plain:#}");
}
