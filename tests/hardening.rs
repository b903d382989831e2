//! Issue 9, classes 1 (crashes), 5 (accepted, then impossible to deliver)
//! and 6 (accounts), against real `pecd` processes on loopback.
use crate::common;

use std::io::Write;
use std::time::Duration;

use common::*;
use serde_json::Value;

/// A message `levels` `message/rfc822` parts deep (~30 bytes a level): the
/// shape that overflowed a worker's stack and aborted the daemon.
fn deep_message(from: &str, to: &str, levels: usize) -> Vec<u8> {
    let mut m = format!(
        "From: {from}\r\nTo: {to}\r\nSubject: profondo\r\nMessage-ID: <deep@test>\r\nContent-Type: message/rfc822\r\n\r\n"
    )
    .into_bytes();
    for _ in 0..levels {
        m.extend_from_slice(b"Content-Type: message/rfc822\r\n\r\n");
    }
    m.extend_from_slice(b"Subject: fondo\r\n\r\nciao\r\n");
    m
}

fn alive(p: &mut TestProvider) {
    if let Some(st) = p.child.as_mut().unwrap().try_wait().unwrap() {
        panic!("pecd died ({st}):\n{}", p.log());
    }
    let mut c = RawSmtp::connect(p.inbound);
    assert_eq!(c.cmd("NOOP").0, 250);
}

#[test]
fn a_deeply_nested_message_crashes_nothing_on_any_path() {
    let ca = TestCa::new();
    let mut p = TestProvider::prepare(
        &ca,
        &ProviderSpec::new("Alpha PEC S.p.A.", "pec.alpha.test", &["alice", "bob"]),
    );
    p.start();
    let bob = "bob@pec.alpha.test";
    let deep = deep_message("mallory@evil.test", bob, 40_000);
    assert!(deep.len() > 1_000_000);

    // Inbound, unauthenticated: queued, then judged an anomaly, not a crash.
    send_plain(p.inbound, "mallory@evil.test", &[bob], &deep);
    let anomalies = p.wait_messages(bob, "X-Trasporto", "errore", 1);
    assert!(anomalies[0].windows(7).any(|w| w == b"annidat"));
    let ev = p.wait_events("anomalia", 1, |_| true);
    assert!(
        ev[0]["error"].as_str().unwrap_or("").contains("nested"),
        "{ev:?}"
    );
    alive(&mut p);

    // IMAP: stored byte for byte, BODYSTRUCTURE answers (truncated).
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("deep.eml");
    std::fs::write(&file, &deep).unwrap();
    let back = dir.path().join("back.eml");
    let script = format!(
        "login\nappend INBOX \"\" {}\nselect INBOX\nuid fetch 1:* (BODYSTRUCTURE)\nsave_uid 2 {}\nlogout",
        file.display(),
        back.display()
    );
    let r = imap(&p, p.imaps, "tls", bob, PASSWORD, &script);
    assert_eq!(step(&r, 2)["typ"], "OK", "{r:#?}");
    assert_eq!(step(&r, 4)["typ"], "OK", "{r:#?}");
    assert!(step(&r, 4)["data"].to_string().contains("BODYSTRUCTURE"));
    assert_eq!(
        std::fs::read(&back).unwrap(),
        deep,
        "APPENDed bytes changed"
    );
    alive(&mut p);

    // The message stays in the Maildir: a restart must not crash again.
    p.stop();
    p.start();
    let r = imap(
        &p,
        p.imaps,
        "tls",
        bob,
        PASSWORD,
        "login\nselect INBOX\nfetch 1:* (BODYSTRUCTURE ENVELOPE)\nsearch TEXT fondo\nlogout",
    );
    assert_eq!(step(&r, 3)["typ"], "OK", "{r:#?}");
    assert_eq!(step(&r, 4)["typ"], "OK", "{r:#?}");
    alive(&mut p);

    // pecd verify reads it and says it is not PEC, without dying.
    let out = p.cli(&["verify", file.to_str().unwrap()], "");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
}

#[tokio::test]
async fn a_deeply_nested_submission_is_refused_with_554_and_a_signed_notice() {
    let ca = TestCa::new();
    let mut p = TestProvider::prepare(
        &ca,
        &ProviderSpec::new("Alpha PEC S.p.A.", "pec.alpha.test", &["alice", "bob"]),
    );
    p.start();
    let (alice, bob) = ("alice@pec.alpha.test", "bob@pec.alpha.test");
    let deep = deep_message(alice, bob, 40_000);
    let err = p
        .submit_raw(alice, &[bob], &deep, true)
        .await
        .expect_err("accepted a message nested 40,000 levels deep");
    let text = err.to_string();
    assert!(text.contains("554") || text.contains("5.6.0"), "{text}");
    let notice = p.wait_messages(alice, "X-Ricevuta", "non-accettazione", 1);
    openssl_verify(&notice[0], &p.ca_pem).unwrap();
    xmllint_message(&notice[0]).unwrap();
    assert!(String::from_utf8_lossy(&raw_daticert(&notice[0])).contains("annidata"));
    assert!(p.mailbox(bob).is_empty(), "nothing may reach bob");
    alive(&mut p);
}

/// A peer that accepts connections and never says a word: the relay job
/// that talks to it is running for as long as we like.
fn silent_peer() -> (u16, std::sync::mpsc::Receiver<()>) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut keep = Vec::new();
        for s in l.incoming().flatten() {
            keep.push(s);
            let _ = tx.send(());
        }
    });
    (port, rx)
}

#[tokio::test]
async fn a_job_running_when_the_process_dies_is_held_after_three_deaths() {
    let ca = TestCa::new();
    let mut p = TestProvider::prepare(
        &ca,
        &ProviderSpec::new("Alpha PEC S.p.A.", "pec.alpha.test", &["alice"]),
    );
    let beta = TestProvider::prepare(
        &ca,
        &ProviderSpec::new("Beta PEC S.p.A.", "pec.beta.test", &[]),
    );
    p.write_index(&format!("{}{}", p.index_entry(), beta.index_entry()));
    let (port, connected) = silent_peer();
    p.append_config(&format!(
        "[[route]]\ndomain = \"pec.beta.test\"\nnext_hop = \"127.0.0.1:{port}\"\n"
    ));
    p.start();
    let (alice, carol) = ("alice@pec.alpha.test", "carol@pec.beta.test");
    let msg = message(alice, &[carol], &[], "sospeso", "", "testo");
    let reply = p.submit_raw(alice, &[carol], &msg, false).await.unwrap();
    let id = identificativo_in(&reply);
    for death in 1..=3 {
        connected
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("relay attempt {death} never came"));
        p.kill9();
        p.start();
    }
    // Held at the third death: not run again, listed as held, sender told.
    let notices = p.wait_messages(alice, "X-Ricevuta", "errore-consegna", 1);
    openssl_verify(&notices[0], &p.ca_pem).unwrap();
    let d = daticert(&notices[0]);
    assert_eq!(d.identificativo, id);
    let jobs = p.cli_json(&["queue", "list", "--json"]);
    let held: Vec<&Value> = jobs.iter().filter(|j| j["state"] == "held").collect();
    assert_eq!(held.len(), 1, "{jobs:#?}");
    assert!(held[0]["last_error"]
        .as_str()
        .unwrap()
        .contains("died 3 times"));
    let text = p.cli(&["queue", "list"], "");
    assert!(String::from_utf8_lossy(&text.stdout).contains("held"));
    assert_eq!(p.wait_events("lavoro-sospeso", 1, |_| true).len(), 1);
    assert!(
        connected.recv_timeout(Duration::from_secs(3)).is_err(),
        "a held job ran again"
    );
    // One notice, even after one more restart (started: jobs left by a
    // crash have been dealt with; quiet: what they started has run).
    p.stop();
    p.start();
    wait_quiet_but(&[&p], |j| j["state"] == "held");
    assert_eq!(
        p.messages_with(alice, "X-Ricevuta", "errore-consegna")
            .len(),
        1
    );
}

#[tokio::test]
async fn a_busta_over_the_size_limit_is_refused_before_it_is_certified() {
    let ca = TestCa::new();
    let mut p = TestProvider::prepare(
        &ca,
        &ProviderSpec::new("Alpha PEC S.p.A.", "pec.alpha.test", &["alice", "bob"]),
    );
    p.append_config("[limits]\nmax_message_size = \"40KB\"\n");
    p.start();
    let (alice, bob) = ("alice@pec.alpha.test", "bob@pec.alpha.test");
    // Under the limit itself, but not once wrapped, signed and certified.
    let body = "x".repeat(72) + "\r\n";
    let near = message(alice, &[bob], &[], "al limite", "", &body.repeat(530));
    assert!(near.len() < 40_000 && near.len() > 37_000, "{}", near.len());
    let err = p
        .submit_raw(alice, &[bob], &near, false)
        .await
        .expect_err("accepted a message whose busta exceeds the limit");
    assert!(err.to_string().contains("552"), "{err}");
    let ev = p.wait_events("non-accettazione", 1, |_| true);
    assert!(ev[0]["error"].as_str().unwrap().contains("busta"));
    assert!(p
        .messages_with(alice, "X-Ricevuta", "accettazione")
        .is_empty());
    // Comfortably under: accepted as before.
    let small = message(alice, &[bob], &[], "piccolo", "", &body.repeat(200));
    p.submit_raw(alice, &[bob], &small, false).await.unwrap();
    p.wait_messages(bob, "X-Trasporto", "posta-certificata", 1);
}

#[test]
fn user_add_takes_only_valid_addresses_and_leaves_no_half_user() {
    let ca = TestCa::new();
    let p = TestProvider::prepare(
        &ca,
        &ProviderSpec::new("Alpha PEC S.p.A.", "pec.alpha.test", &[]),
    );
    let add = |a: &str| {
        p.cli(
            &["user", "add", a, "--password-stdin"],
            &format!("{PASSWORD}\n"),
        )
    };
    let long = format!("{}@pec.alpha.test", "a".repeat(300));
    for bad in [
        long.as_str(),
        "ma\u{1}rio@pec.alpha.test",
        "posta-certificata@pec.alpha.test",
        "a/../b@pec.alpha.test",
    ] {
        let out = add(bad);
        assert!(!out.status.success(), "{bad:?} accepted");
        assert!(!String::from_utf8_lossy(&out.stderr).is_empty());
    }
    let listed = String::from_utf8_lossy(&p.cli(&["user", "list"], "").stdout).into_owned();
    assert!(!listed.contains("@pec.alpha.test"), "{listed}");

    // The mailbox cannot be made: no user row either, and a retry works.
    let domain_dir = p.path().join("data/mail/pec.alpha.test");
    let _ = std::fs::remove_dir_all(&domain_dir);
    std::fs::create_dir_all(domain_dir.parent().unwrap()).unwrap();
    std::fs::File::create(&domain_dir)
        .unwrap()
        .write_all(b"in the way")
        .unwrap();
    assert!(!add("mario@pec.alpha.test").status.success());
    let listed = String::from_utf8_lossy(&p.cli(&["user", "list"], "").stdout).into_owned();
    assert!(
        !listed.contains("mario@"),
        "half-made user listed: {listed}"
    );
    std::fs::remove_file(&domain_dir).unwrap();
    let out = add("mario@pec.alpha.test");
    assert!(out.status.success(), "{out:?}");
    assert!(domain_dir.join("mario/new").is_dir());
}
