//! Issue 14, quotas: a full box refuses the busta with a signed avviso di
//! mancata consegna (5.2.2) to the sender, once, and no time-limit notice
//! follows; receipts still reach a full box; a warning at the threshold;
//! usage exact through IMAP EXPUNGE; `pecd user list` / `user quota`.
use crate::common;

use std::time::Duration;

use common::*;

const ALICE: &str = "alice@pec.alpha.test";
const BOB: &str = "bob@pec.beta.test";

fn usage_listed(p: &TestProvider, user: &str) -> (u64, String) {
    let out = p.cli(&["user", "list"], "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = text
        .lines()
        .find(|l| l.split_whitespace().next() == Some(user))
        .unwrap_or_else(|| panic!("{user} not listed: {text}"))
        .to_string();
    let bytes = line
        .split(" bytes")
        .next()
        .and_then(|s| s.rsplit('(').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no usage in {line:?}"));
    (bytes, line)
}

fn files_total(p: &TestProvider, user: &str) -> u64 {
    let (local, domain) = user.rsplit_once('@').unwrap();
    p.all_mail()
        .into_iter()
        .filter(|(path, _)| {
            path.to_string_lossy()
                .contains(&format!("/mail/{domain}/{local}/"))
        })
        .map(|(_, b)| b.len() as u64)
        .sum()
}

async fn send(a: &TestProvider, n: usize) -> String {
    let msg = message(
        ALICE,
        &[BOB],
        &[],
        &format!("Pratica {n:03}"),
        "",
        "Testo di lunghezza fissa.",
    );
    let reply = a.submit_raw(ALICE, &[BOB], &msg, false).await.unwrap();
    identificativo_in(&reply)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_box_refuses_the_busta_with_one_signed_notice_and_receipts_still_arrive() {
    let ca = TestCa::new();
    let (mut a, mut b) = two_providers(&ca, &["alice"], &["bob"]);
    a.append_config(&fast_timers("5s", "8s"));
    b.append_config("[mailbox]\nquota_warning = \"50%\"\n");
    // Alice's own box is "full" from the start: receipts come in anyway.
    let out = a.cli(&["user", "quota", ALICE, "1KB"], "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    a.start();
    b.start();

    let id1 = send(&a, 1).await;
    b.wait_messages(BOB, "X-Trasporto", "posta-certificata", 1);
    a.wait_for("consegna 1", 30, || {
        (receipts_for(&a, ALICE, "avvenuta-consegna", &id1).len() == 1).then_some(())
    });
    let one = files_total(&b, BOB);
    assert_eq!(usage_listed(&b, BOB).0, one, "usage = the bytes on disk");
    // Room for three bustas less a little: the second crosses 50 %, the
    // warning takes the rest of the slack, the third does not fit.
    let quota = 3 * one - 100;
    let out = b.cli(&["user", "quota", BOB, &quota.to_string()], "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let id2 = send(&a, 2).await;
    b.wait_messages(BOB, "X-Trasporto", "posta-certificata", 2);
    let warning = b.wait_for("quota warning", 30, || {
        b.mailbox(BOB)
            .into_iter()
            .map(|p| std::fs::read(p).unwrap())
            .find(|m| header(m, "Subject").is_some_and(|s| s.contains("quasi piena")))
    });
    assert!(
        header(&warning, "X-Ricevuta").is_none(),
        "a plain message, not a receipt"
    );
    a.wait_for("consegna 2", 30, || {
        (receipts_for(&a, ALICE, "avvenuta-consegna", &id2).len() == 1).then_some(())
    });

    let id3 = send(&a, 3).await;
    let accepted3 = std::time::Instant::now();
    let notice = a.wait_for("errore-consegna for the full box", 30, || {
        receipts_for(&a, ALICE, "errore-consegna", &id3).pop()
    });
    openssl_verify(&notice, &a.ca_pem).unwrap();
    xmllint_message(&notice).unwrap();
    let raw = String::from_utf8(raw_daticert(&notice)).unwrap();
    assert!(raw.contains("errore=\"altro\""), "{raw}");
    let d = daticert(&notice);
    let esteso = d.errore_esteso.clone().unwrap_or_default();
    assert!(esteso.starts_with("5.2.2"), "{esteso}");
    assert!(
        esteso.contains("casella del destinatario piena"),
        "{esteso}"
    );
    assert_eq!(d.consegna.as_deref(), Some(BOB));
    // Not stored; logged with the reason.
    assert_eq!(
        b.messages_with(BOB, "X-Trasporto", "posta-certificata")
            .len(),
        2
    );
    let ev = b.wait_events("errore-consegna", 1, |e| {
        e["identificativo"] == id3.as_str()
    });
    assert!(ev[0].to_string().contains("full"), "{:#}", ev[0]);

    // Past both deadlines: no preavviso, no second notice, for that recipient.
    sleep_past(accepted3, Duration::from_secs(8));
    wait_quiet(&[&a, &b]);
    assert_eq!(receipts_for(&a, ALICE, "errore-consegna", &id3).len(), 1);
    assert!(
        receipts_for(&a, ALICE, "preavviso-errore-consegna", &id3).is_empty(),
        "a preavviso after a full-box notice"
    );
    assert!(events_of(&a, "mancata-consegna-24h", Some(&id3)).is_empty());
    // Alice's box is far over its 1 KB: every receipt was delivered.
    for id in [&id1, &id2, &id3] {
        assert_eq!(receipts_for(&a, ALICE, "accettazione", id).len(), 1);
    }
    let (used, line) = usage_listed(&a, ALICE);
    assert!(used > 1000 && line.contains("quota 1.0 kB"), "{line}");

    // Usage follows IMAP EXPUNGE exactly, and the box takes mail again.
    let recs = imap(
        &b,
        b.imap,
        "starttls",
        BOB,
        PASSWORD,
        "login\nselect INBOX\nstore 1 +FLAGS (\\Deleted)\nexpunge\n",
    );
    assert_eq!(step(&recs, 4)["typ"], "OK", "{recs:#?}");
    let (used, line) = usage_listed(&b, BOB);
    assert_eq!(used, files_total(&b, BOB), "{line}");
    assert!(line.contains("quota "), "{line}");
    let id4 = send(&a, 4).await;
    a.wait_for("consegna 4", 30, || {
        (receipts_for(&a, ALICE, "avvenuta-consegna", &id4).len() == 1).then_some(())
    });
    assert_eq!(usage_listed(&b, BOB).0, files_total(&b, BOB));
    // `none` lifts the limit.
    let out = b.cli(&["user", "quota", BOB, "none"], "");
    assert!(out.status.success());
    assert!(usage_listed(&b, BOB).1.contains("quota none"));
    a.stop();
    b.stop();
}

#[test]
fn quota_settings_are_checked() {
    let ca = TestCa::new();
    let p = TestProvider::prepare(
        &ca,
        &ProviderSpec::new("Alpha PEC S.p.A.", "pec.alpha.test", &["alice"]),
    );
    let out = p.cli(
        &[
            "user",
            "add",
            "carol@pec.alpha.test",
            "--password-stdin",
            "--quota",
            "2GB",
        ],
        &format!("{PASSWORD}\n"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(usage_listed(&p, "carol@pec.alpha.test")
        .1
        .contains("quota 2.0 GB (0%)"));
    let out = p.cli(&["user", "quota", "carol@pec.alpha.test", "lots"], "");
    assert!(!out.status.success());
    let out = p.cli(&["user", "quota", "nobody@pec.alpha.test", "1GB"], "");
    assert!(!out.status.success());
    p.append_config("[mailbox]\ndefault_quota = \"500MB\"\nquota_warning = \"150%\"\n");
    let out = p.cli(&["check-config"], "");
    let err = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !out.status.success() && err.contains("mailbox.quota_warning"),
        "{err}"
    );
}

#[test]
fn imap_reports_the_quota_and_refuses_an_append_or_copy_over_it() {
    let ca = TestCa::new();
    let mut p = TestProvider::prepare(
        &ca,
        &ProviderSpec::new("Alpha PEC S.p.A.", "pec.alpha.test", &["alice", "bob"]),
    );
    let bob = "bob@pec.alpha.test";
    let out = p.cli(&["user", "quota", bob, "20KB"], "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    p.start();
    let dir = tempfile::tempdir().unwrap();
    let small = dir.path().join("small.eml");
    let big = dir.path().join("big.eml");
    std::fs::write(&small, message(bob, &[bob], &[], "bozza", "", "breve")).unwrap();
    let body = "x".repeat(76) + "\r\n";
    std::fs::write(
        &big,
        message(bob, &[bob], &[], "grande", "", &body.repeat(300)),
    )
    .unwrap();
    // Fits once (12 KB of 20), not twice.
    let medium = dir.path().join("medium.eml");
    std::fs::write(
        &medium,
        message(bob, &[bob], &[], "media", "", &body.repeat(150)),
    )
    .unwrap();
    let recs = imap(
        &p,
        p.imaps,
        "tls",
        bob,
        PASSWORD,
        &format!(
            "login\ncapability\nappend Drafts \"\" {}\nappend Drafts \"\" {}\nraw 'GETQUOTAROOT INBOX'\nraw 'GETQUOTA \"\"'\nraw 'GETQUOTA \"other\"'\nraw 'SETQUOTA \"\" (STORAGE 1)'\n",
            small.display(),
            big.display(),
        ),
    );
    assert!(
        step(&recs, 2)["data"]
            .to_string()
            .contains("QUOTA=RES-STORAGE"),
        "{recs:#?}"
    );
    assert_eq!(step(&recs, 3)["typ"], "OK", "{recs:#?}");
    assert_eq!(step(&recs, 4)["typ"], "NO", "{recs:#?}");
    assert!(
        step(&recs, 4)["data"].to_string().contains("[OVERQUOTA]"),
        "{recs:#?}"
    );
    let used = usage_listed(&p, bob).0;
    assert_eq!(
        used,
        files_total(&p, bob),
        "APPEND counted, the refused one not"
    );
    let root = step(&recs, 5);
    assert_eq!(root["typ"], "OK", "{recs:#?}");
    let untagged = root["untagged"].to_string();
    assert!(untagged.contains("QUOTAROOT INBOX \\\"\\\""), "{untagged}");
    let want = format!("QUOTA \\\"\\\" (STORAGE {} 20)", used.div_ceil(1024));
    assert!(untagged.contains(&want), "{want} in {untagged}");
    assert_eq!(step(&recs, 6)["typ"], "OK");
    assert!(step(&recs, 6)["untagged"].to_string().contains(&want));
    assert_eq!(step(&recs, 7)["typ"], "NO");
    assert_eq!(step(&recs, 8)["typ"], "NO");

    // A copy must fit too; a move adds nothing, so it is allowed.
    let recs = imap(
        &p,
        p.imaps,
        "tls",
        bob,
        PASSWORD,
        &format!(
            "login\nappend Drafts \"\" {}\nraw 'SELECT Drafts'\nraw 'COPY 2 INBOX'\nraw 'MOVE 2 INBOX'\n",
            medium.display()
        ),
    );
    assert_eq!(step(&recs, 2)["typ"], "OK", "{recs:#?}");
    assert_eq!(step(&recs, 4)["typ"], "NO", "{recs:#?}");
    assert!(
        step(&recs, 4)["data"].to_string().contains("[OVERQUOTA]"),
        "{recs:#?}"
    );
    assert_eq!(step(&recs, 5)["typ"], "OK", "{recs:#?}");
    assert_eq!(usage_listed(&p, bob).0, files_total(&p, bob));
}
