//! Issue 4 end to end: a real pecd, PEC messages delivered by it, read with an
//! independent IMAP client (Python's imaplib via `tests/imap_client.py`).
use crate::common;

use std::path::Path;

use common::*;
use serde_json::Value;

fn typ(recs: &[Value], n: usize) -> String {
    step(recs, n)["typ"].as_str().unwrap_or("").to_string()
}

fn data(recs: &[Value], n: usize) -> String {
    step(recs, n)["data"].to_string()
}

#[tokio::test]
async fn users_read_their_pec_over_imap() {
    let ca = TestCa::new();
    let mut p = TestProvider::prepare(
        &ca,
        &ProviderSpec::new("Alpha PEC S.p.A.", "pec.alpha.test", &["alice", "bob"]),
    );
    p.start();
    let alice = "alice@pec.alpha.test";
    let msg = message(
        alice,
        &["bob@pec.alpha.test"],
        &[],
        "Contratto firmato",
        "",
        "In allegato.",
    );
    p.submit_raw(alice, &["bob@pec.alpha.test"], &msg, false)
        .await
        .unwrap();
    p.wait_messages(alice, "X-Ricevuta", "accettazione", 1);
    p.wait_messages(alice, "X-Ricevuta", "avvenuta-consegna", 1);

    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("accettazione.eml");
    let sent = dir.path().join("sent.eml");
    std::fs::write(
        &sent,
        message(alice, &["bob@pec.alpha.test"], &[], "bozza", "", "copia"),
    )
    .unwrap();
    let submit = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/smtp_submit.py");
    // Find the two receipts by header and by subject.
    let r = imap(
        &p,
        p.imap,
        "starttls",
        alice,
        PASSWORD,
        "login\nselect INBOX\nsearch HEADER X-Ricevuta accettazione\nsearch SUBJECT '\"CONSEGNA: Contratto firmato\"'\n",
    );
    assert_eq!(typ(&r, 1), "OK", "login over STARTTLS: {r:#?}");
    let acc_seq = step(&r, 3)["data"][0].as_str().unwrap().trim().to_string();
    let cons_seq = step(&r, 4)["data"][0].as_str().unwrap().trim().to_string();
    assert!(
        !acc_seq.is_empty() && !acc_seq.contains(' '),
        "one accettazione: {r:#?}"
    );
    assert!(
        !cons_seq.is_empty() && !cons_seq.contains(' '),
        "one consegna: {r:#?}"
    );
    assert_ne!(acc_seq, cons_seq);
    let script = format!(
        r#"login
select INBOX
store {acc_seq} +FLAGS (\Seen)
fetch {acc_seq} (FLAGS)
store {acc_seq} -FLAGS (\Seen)
fetch {acc_seq} (FLAGS)
create Archivio
move {cons_seq} Archivio
status Archivio (MESSAGES)
append Sent (\Seen) {sent}
status Sent (MESSAGES)
store 1 +FLAGS (\Deleted)
expunge
status INBOX (MESSAGES)
idle 10 python3 {submit} 127.0.0.1 {port} {ca} {alice} "{pw}" bob@pec.alpha.test "during idle"
list "" "*"
"#,
        sent = sent.display(),
        submit = submit.display(),
        port = p.submission,
        ca = p.ca_pem.display(),
        pw = PASSWORD,
    );
    let r = imap(&p, p.imap, "starttls", alice, PASSWORD, &script);
    assert_eq!(typ(&r, 2), "OK");
    assert!(
        data(&r, 4).contains("\\\\Seen"),
        "seen set: {}",
        data(&r, 4)
    );
    assert!(
        !data(&r, 6).contains("\\\\Seen"),
        "seen cleared: {}",
        data(&r, 6)
    );
    assert_eq!(typ(&r, 7), "OK");
    assert_eq!(typ(&r, 8), "OK", "MOVE: {r:#?}");
    assert!(data(&r, 9).contains("MESSAGES 1"), "{}", data(&r, 9));
    assert_eq!(typ(&r, 10), "OK", "APPEND to Sent: {r:#?}");
    assert!(data(&r, 11).contains("MESSAGES 1"), "{}", data(&r, 11));
    assert!(
        data(&r, 14).contains("MESSAGES 0"),
        "after EXPUNGE: {}",
        data(&r, 14)
    );
    let idle = step(&r, 15);
    assert!(
        idle["exists"].is_number(),
        "IDLE saw the new delivery: {idle:#}"
    );
    assert!(idle["elapsed"].as_f64().unwrap() < 10.0);
    assert!(
        data(&r, 16).contains("Archivio") && data(&r, 16).contains("\\\\Sent"),
        "{}",
        data(&r, 16)
    );

    // The bytes served over IMAP are the signed bytes: implicit TLS, UID fetch, openssl.
    let r = imap(
        &p,
        p.imaps,
        "tls",
        alice,
        PASSWORD,
        "login\nselect Archivio\nuid SEARCH ALL\n",
    );
    assert_eq!(typ(&r, 1), "OK", "login over implicit TLS: {r:#?}");
    let uid = step(&r, 3)["data"][0].as_str().unwrap().trim().to_string();
    let r = imap(
        &p,
        p.imaps,
        "tls",
        alice,
        PASSWORD,
        &format!(
            "login\nselect Archivio\nsave_uid {uid} {}\n",
            saved.display()
        ),
    );
    assert_eq!(typ(&r, 3), "OK", "{r:#?}");
    let fetched = std::fs::read(&saved).unwrap();
    let folder = p.path().join("data/mail/pec.alpha.test/alice/.Archivio");
    let on_disk: Vec<Vec<u8>> = ["cur", "new"]
        .iter()
        .flat_map(|d| std::fs::read_dir(folder.join(d)).unwrap())
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    assert_eq!(on_disk.len(), 1);
    assert_eq!(
        fetched, on_disk[0],
        "BODY[] returns the stored bytes exactly"
    );
    assert_eq!(
        header(&fetched, "X-Ricevuta").as_deref(),
        Some("avvenuta-consegna")
    );
    openssl_verify(&fetched, &p.ca_pem).expect("a receipt fetched over IMAP still verifies");
}

#[tokio::test]
async fn imap_refusals_leave_the_session_alive() {
    let ca = TestCa::new();
    let mut p = TestProvider::prepare(
        &ca,
        &ProviderSpec::new("Alpha PEC S.p.A.", "pec.alpha.test", &["alice", "bob"]),
    );
    p.start();
    let alice = "alice@pec.alpha.test";
    // LOGIN before TLS: refused, LOGINDISABLED advertised.
    let r = imap(
        &p,
        p.imap,
        "plain",
        alice,
        PASSWORD,
        "capability\nlogin\nstarttls\nlogin\n",
    );
    assert!(data(&r, 1).contains("LOGINDISABLED"), "{r:#?}");
    assert_ne!(typ(&r, 2), "OK", "LOGIN before TLS must fail: {r:#?}");
    assert_eq!(typ(&r, 4), "OK", "LOGIN after STARTTLS: {r:#?}");
    // Wrong password, then the right one on the same connection.
    let r = imap(
        &p,
        p.imaps,
        "tls",
        alice,
        PASSWORD,
        "login_as alice@pec.alpha.test wrong\nlogin\n",
    );
    assert_ne!(typ(&r, 1), "OK");
    assert_eq!(typ(&r, 2), "OK", "session survives a failed login: {r:#?}");
    // Another user's mailbox, malformed commands, an oversized literal.
    let r = imap(
        &p,
        p.imaps,
        "tls",
        alice,
        PASSWORD,
        "login\nselect ../bob\nselect \"../../pec.alpha.test/bob\"\nraw FETCH (((\nraw NOSUCHCOMMAND\nraw_literal 999999999 0\nnoop\n",
    );
    assert_eq!(typ(&r, 1), "OK");
    assert_ne!(typ(&r, 2), "OK", "{r:#?}");
    assert_ne!(typ(&r, 3), "OK", "{r:#?}");
    assert_eq!(typ(&r, 4), "BAD", "{r:#?}");
    assert_eq!(typ(&r, 5), "BAD", "{r:#?}");
    assert!(["NO", "BAD"].contains(&typ(&r, 6).as_str()), "{r:#?}");
    assert_eq!(typ(&r, 7), "OK", "session still alive: {r:#?}");
}

/// Wrong passwords slow the next attempts down, per address and per IP, and
/// the slowdown is shared by IMAP LOGIN and SMTP AUTH.
#[tokio::test]
async fn failed_logins_are_slowed_down_across_protocols() {
    let ca = TestCa::new();
    let mut p = TestProvider::prepare(
        &ca,
        &ProviderSpec::new("Alpha PEC S.p.A.", "pec.alpha.test", &["alice"]),
    );
    p.start();
    let alice = "alice@pec.alpha.test";
    let t0 = std::time::Instant::now();
    let r = imap(
        &p,
        p.imaps,
        "tls",
        alice,
        PASSWORD,
        "login_as alice@pec.alpha.test wrong1\nlogin_as alice@pec.alpha.test wrong2\nlogin_as alice@pec.alpha.test wrong3\n",
    );
    let imap_time = t0.elapsed();
    for n in 1..=3 {
        assert_ne!(typ(&r, n), "OK", "{r:#?}");
    }
    // No delay before the first failure, 0.5 s before the second, 1 s before the third.
    assert!(
        imap_time >= std::time::Duration::from_millis(1400),
        "{imap_time:?}"
    );
    // The fourth failure comes over SMTP: it waits 2 s more.
    let t1 = std::time::Instant::now();
    let mut smtp = SecureSmtp::connect(p.submissions, &p.ca_pem, true);
    let (code, text) = smtp.ehlo_auth(alice, "wrong4");
    assert_eq!(code, 535, "wrong password refused: {text}");
    assert!(
        t1.elapsed() >= std::time::Duration::from_millis(1800),
        "{:?}",
        t1.elapsed()
    );
}
