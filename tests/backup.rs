//! `pecd backup` of a provider under load and `pecd restore` into a new
//! directory: everything acknowledged before the backup started is found in
//! the restored provider, which then finishes the queued work.
use crate::common;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::flow::*;
use common::*;

/// `pecd --config CONFIG ARGS` from any thread.
fn pecd(config: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(pecd_bin())
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .unwrap()
}

/// What an IMAP client does to a mailbox it reads: `new/` to `cur/`, flagged seen.
fn read_like_a_client(maildir: &Path) {
    if let Ok(rd) = std::fs::read_dir(maildir.join("new")) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let _ = std::fs::rename(e.path(), maildir.join("cur").join(format!("{name}:2,S")));
        }
    }
}

/// A provider with `a`'s configuration, certificates, index and ports in a
/// fresh directory with no data yet.
fn same_provider_elsewhere(a: &TestProvider) -> TestProvider {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    for e in std::fs::read_dir(a.path().join("certs")).unwrap().flatten() {
        std::fs::copy(e.path(), certs.join(e.file_name())).unwrap();
    }
    for f in ["pecd.toml", "index.toml"] {
        std::fs::copy(a.path().join(f), dir.path().join(f)).unwrap();
    }
    TestProvider {
        name: a.name.clone(),
        domain: a.domain.clone(),
        submission: a.submission,
        submissions: a.submissions,
        inbound: a.inbound,
        imap: a.imap,
        imaps: a.imaps,
        pop3: a.pop3,
        pop3s: a.pop3s,
        admin: a.admin,
        web: a.web,
        ca_pem: certs.join("ca.pem"),
        child: None,
        users: a.users.clone(),
        dir,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backup_under_load_restores_everything_acknowledged_and_finishes_the_queue() {
    let ca = TestCa::new();
    let (mut a, mut b) = two_providers(&ca, &["alice", "carol"], &["bob"]);
    a.append_config(&fast_timers("1h", "2h"));
    b.append_config(&fast_timers("1h", "2h"));
    // Beta stays down until after the restore: every busta for bob is
    // queued work at backup time.
    a.start();

    let acked: Arc<Mutex<Vec<String>>> = Default::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for c in 0..3 {
        let (acked, stop) = (acked.clone(), stop.clone());
        let t = a.smtp(ALICE, c % 2 == 1);
        clients.push(tokio::spawn(async move {
            use lettre::AsyncTransport;
            let env = lettre::address::Envelope::new(
                Some(ALICE.parse().unwrap()),
                vec![CAROL.parse().unwrap(), BOB.parse().unwrap()],
            )
            .unwrap();
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                let msg = message(ALICE, &[CAROL, BOB], &[], &format!("c{c} m{i}"), "", "x");
                let reply = t.send_raw(&env, &msg).await.expect("submission");
                let text = reply.message().collect::<Vec<_>>().join(" ");
                acked.lock().unwrap().push(ident_of(&text));
                i += 1;
            }
        }));
    }
    let alice_box = a.path().join("data/mail/pec.alpha.test/alice");
    let reader = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                read_like_a_client(&alice_box);
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let t0 = Instant::now();
    while acked.lock().unwrap().len() < 20 {
        assert!(t0.elapsed() < Duration::from_secs(40), "load too slow");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Carol's client has seen her INBOX: its UID list goes into the backup.
    let seen = imap(
        &a,
        a.imaps,
        "tls",
        CAROL,
        PASSWORD,
        "login\nselect INBOX\nlogout",
    );
    assert_eq!(seen[2]["typ"], "OK", "{seen:?}");

    let before: BTreeSet<String> = acked.lock().unwrap().iter().cloned().collect();
    let backup_dir = tempfile::tempdir().unwrap();
    let dest = backup_dir.path().join("bk");
    let (config, d) = (a.config_path(), dest.clone());
    let out = tokio::task::spawn_blocking(move || pecd(&config, &["backup", d.to_str().unwrap()]))
        .await
        .unwrap();
    let at_end = acked.lock().unwrap().len();
    // The load goes on past the backup's end: one more acknowledgement.
    let t0 = Instant::now();
    while acked.lock().unwrap().len() <= at_end {
        assert!(
            t0.elapsed() < Duration::from_secs(40),
            "the provider took no mail after the backup"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.await.unwrap();
    }
    reader.join().unwrap();
    assert!(
        out.status.success(),
        "backup: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let total = acked.lock().unwrap().len();
    eprintln!(
        "{} acknowledged before the backup, {} while it ran, {total} in all; {}",
        before.len(),
        at_end - before.len(),
        String::from_utf8_lossy(&out.stdout).trim()
    );
    assert!(
        total > at_end,
        "the provider kept taking mail after the backup"
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dest.join("pecd-backup.json")).unwrap()).unwrap();
    assert_eq!(manifest["pecd_version"], env!("CARGO_PKG_VERSION"));
    assert!(manifest["files"].as_u64().unwrap() > before.len() as u64);
    assert!(!dest.join("inflight").exists() && !dest.join("listeners.json").exists());

    // The original stops for good (its folder stays: the indexes name its
    // certificate); the copy lives elsewhere on its ports.
    a.stop();
    let mut r = same_provider_elsewhere(&a);
    let out = r.cli(&["restore", dest.to_str().unwrap()], "");
    assert!(
        out.status.success(),
        "restore: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The restored UID list keeps its UIDVALIDITY and UIDs, and its UIDNEXT
    // skips past what the original gave after the backup (RFC 3501: never
    // the same UID for another message).
    let head = |root: &Path| {
        let text =
            std::fs::read_to_string(root.join("mail/pec.alpha.test/carol/pecd-uidlist")).unwrap();
        let first = text.lines().next().unwrap().to_string();
        let f: Vec<u64> = first.split(' ').map(|x| x.parse().unwrap()).collect();
        (
            f[1],
            f[2],
            text.lines().skip(1).map(str::to_string).collect::<Vec<_>>(),
        )
    };
    let (validity, next, uids) = head(&dest);
    let restored = head(&r.path().join("data"));
    assert_eq!(restored, (validity, next + (1 << 20), uids));
    let again = r.cli(&["restore", dest.to_str().unwrap()], "");
    assert!(!again.status.success());
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(err.contains("not empty"), "{err}");

    // Before it runs: the log rows, the messages and the queued relays of
    // every acknowledged message, with their spool bytes readable.
    {
        let db = r.db();
        for id in &before {
            let n: i64 = db
                .query_row(
                    "SELECT count(*) FROM log WHERE identificativo = ?1 AND event = 'accettazione'",
                    [id],
                    |row| row.get(0),
                )
                .unwrap();
            assert_eq!(n, 1, "accettazione log row of {id}");
            let n: i64 = db
                .query_row(
                    "SELECT count(*) FROM messages WHERE identificativo = ?1",
                    [id],
                    |row| row.get(0),
                )
                .unwrap();
            assert_eq!(n, 1, "messages row of {id}");
            let state: String = db
                .query_row(
                    "SELECT state FROM jobs WHERE key = ?1",
                    [format!("relay:{id}:pec.beta.test")],
                    |row| row.get(0),
                )
                .unwrap_or_else(|e| panic!("relay job of {id}: {e}"));
            assert_eq!(state, "pending", "relay of {id} waits for Beta");
        }
    }
    let spooled = r.spool_files();
    assert!(spooled.len() >= before.len());

    r.start();
    // The restored provider finishes what was queued: receipts and local
    // deliveries at once, the relays as soon as Beta is up.
    r.wait_for("acceptance receipts and carol's copies", 30, || {
        let t = tally(&r, &b);
        before
            .iter()
            .all(|id| {
                t.get(id)
                    .is_some_and(|p| p.accettazione == 1 && p.busta_carol == 1)
            })
            .then_some(())
    });
    b.start();
    let t0 = Instant::now();
    loop {
        let t = tally(&r, &b);
        let unfinished: Vec<_> = before
            .iter()
            .filter(|id| t.get(*id) != Some(&COMPLETE))
            .map(|id| (id, t.get(id)))
            .collect();
        if unfinished.is_empty() {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(40),
            "not complete: {unfinished:#?}\n{}",
            r.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    wait_quiet(&[&r, &b]);
    // Nothing twice, nothing half: whatever the snapshot holds is finished,
    // and no mail of a message the snapshot does not hold was restored.
    let t = tally(&r, &b);
    let in_snapshot: BTreeSet<String> = events_of(&r, "accettazione", None)
        .iter()
        .map(|e| e["identificativo"].as_str().unwrap().to_string())
        .collect();
    assert!(before.is_subset(&in_snapshot));
    for (id, p) in &t {
        assert!(
            in_snapshot.contains(id),
            "{id} is not in the snapshot: {p:?}"
        );
        assert_eq!(p, &COMPLETE, "{id} is in the restored log");
    }
    for id in &in_snapshot {
        assert_eq!(t.get(id), Some(&COMPLETE), "{id} in the restored log");
    }
}
