//! What the access point refuses, and how: transport-level refusals (no AUTH,
//! AUTH before TLS, wrong password, spoofed MAIL FROM, oversize) get an SMTP
//! error and nothing else; formal-check failures (hidden recipient, Bcc,
//! From != MAIL FROM, no To) get a 5xx **and** a signed avviso di non
//! accettazione in the sender's mailbox; SMTP smuggling sequences inside DATA
//! never end the message nor start a second transaction.
use crate::common;

use common::*;
use pecd::pec::types::{Errore, Tipo};

const ALICE: &str = "alice@pec.alpha.test";
const BOB: &str = "bob@pec.alpha.test";
const CAROL: &str = "carol@pec.alpha.test";

fn provider(ca: &TestCa, extra: &str) -> TestProvider {
    let mut spec = ProviderSpec::new(
        "Alpha PEC S.p.A.",
        "pec.alpha.test",
        &["alice", "bob", "carol"],
    );
    spec.extra_config = extra.to_string();
    let mut p = TestProvider::prepare(ca, &spec);
    p.start();
    p
}

/// Log events that record a submission (accepted or refused).
fn submissions(p: &TestProvider) -> Vec<serde_json::Value> {
    p.log_events(&[])
        .into_iter()
        .filter(|e| e["event"] == "accettazione" || e["event"] == "non-accettazione")
        .collect()
}

#[test]
fn transport_refusals_no_auth_no_tls_wrong_password_spoofed_sender() {
    let ca = TestCa::new();
    let p = provider(&ca, "");

    // Plain TCP on the 587-style port: no AUTH offered, AUTH and MAIL refused.
    let mut c = SecureSmtp::connect(p.submission, &p.ca_pem, false);
    let (code, caps) = c.cmd("EHLO client.test");
    assert_eq!(code, 250);
    assert!(caps.contains("STARTTLS"), "{caps}");
    assert!(
        !caps
            .lines()
            .any(|l| l.to_ascii_uppercase().starts_with("AUTH")),
        "AUTH offered in clear: {caps}"
    );
    let token = openssl::base64::encode_block(format!("\0{ALICE}\0{PASSWORD}").as_bytes());
    let (code, text) = c.cmd(&format!("AUTH PLAIN {token}"));
    assert!(code == 538 || code == 530, "AUTH in clear: {code} {text}");
    let (code, text) = c.cmd(&format!("MAIL FROM:<{ALICE}>"));
    assert_eq!(code, 530, "{text}");
    assert!(text.starts_with("5.7.0"), "{text}");

    // After STARTTLS: AUTH is offered, MAIL still needs it, a wrong password is 535.
    c.starttls();
    let (code, caps) = c.cmd("EHLO client.test");
    assert_eq!(code, 250);
    assert!(caps.contains("AUTH PLAIN LOGIN"), "{caps}");
    let (code, text) = c.cmd(&format!("MAIL FROM:<{ALICE}>"));
    assert_eq!((code, &text[..5]), (530, "5.7.0"), "{text}");
    let bad = openssl::base64::encode_block(format!("\0{ALICE}\0not the password").as_bytes());
    let (code, text) = c.cmd(&format!("AUTH PLAIN {bad}"));
    assert_eq!(code, 535, "{text}");
    let (code, text) = c.cmd(&format!("MAIL FROM:<{ALICE}>"));
    assert_eq!(code, 530, "{text}");

    // Implicit TLS (465-style): MAIL without AUTH is 530 5.7.0 too.
    let mut t = SecureSmtp::connect(p.submissions, &p.ca_pem, true);
    assert_eq!(t.cmd("EHLO client.test").0, 250);
    let (code, text) = t.cmd(&format!("MAIL FROM:<{ALICE}>"));
    assert_eq!((code, &text[..5]), (530, "5.7.0"), "{text}");

    // Authenticated, but MAIL FROM someone else: 553 5.7.1, and no notice.
    let (code, text) = t.ehlo_auth(ALICE, PASSWORD);
    assert_eq!(code, 235, "{text}");
    let (code, text) = t.cmd(&format!("MAIL FROM:<{BOB}>"));
    assert_eq!(code, 553, "{text}");
    assert!(text.starts_with("5.7.1"), "{text}");
    assert_eq!(t.cmd("QUIT").0, 221);
    // A (wrong) notice would have been delivered once the queue is quiet.
    wait_quiet(&[&p]);
    for u in [ALICE, BOB, CAROL] {
        assert!(p.mailbox(u).is_empty(), "{u} got mail: {:?}", p.mailbox(u));
    }
    assert!(submissions(&p).is_empty());
}

/// Submit and expect a permanent refusal whose text contains `reason`.
async fn refused(p: &TestProvider, rcpts: &[&str], raw: &[u8], reason: &str) -> String {
    let e = p
        .submit_raw(ALICE, rcpts, raw, false)
        .await
        .expect_err("refused");
    assert!(e.is_permanent(), "{e}");
    let text = e.to_string();
    assert!(text.contains(reason), "{reason:?} not in {text:?}");
    text
}

#[tokio::test]
async fn formal_refusals_get_a_signed_non_accettazione() {
    let ca = TestCa::new();
    let p = provider(&ca, "");
    // (name, message, RCPT TO, English reason in the reply, Italian in errore-esteso)
    type Case<'a> = (&'a str, Vec<u8>, Vec<&'a str>, &'a str, &'a str);
    let cases: Vec<Case> = vec![
        (
            "hidden",
            message(ALICE, &[BOB], &[], "Nascosto", "", "x"),
            vec![BOB, CAROL],
            "RCPT TO set differs from To+Cc",
            "RCPT TO",
        ),
        (
            "bcc",
            message(
                ALICE,
                &[BOB],
                &[],
                "Copia nascosta",
                &format!("Bcc: {CAROL}\r\n"),
                "x",
            ),
            vec![BOB],
            "Bcc is not allowed",
            "Bcc",
        ),
        (
            "from",
            message(BOB, &[CAROL], &[], "Falso mittente", "", "x"),
            vec![CAROL],
            "From does not match MAIL FROM",
            "MAIL FROM",
        ),
        (
            "noto",
            message(ALICE, &[], &[BOB], "Senza To", "", "x"),
            vec![BOB],
            "To must contain at least one recipient",
            "campo To",
        ),
    ];
    // `message` always writes a To line; drop it for the no-To case.
    let cases: Vec<_> = cases
        .into_iter()
        .map(|(n, raw, r, en, it)| {
            let raw = if n == "noto" {
                String::from_utf8(raw)
                    .unwrap()
                    .replace("To: \r\n", "")
                    .into_bytes()
            } else {
                raw
            };
            (n, raw, r, en, it)
        })
        .collect();
    assert!(header(&cases[3].1, "To").is_none());

    for (name, raw, rcpts, reason_en, reason_it) in &cases {
        let text = refused(&p, rcpts, raw, reason_en).await;
        assert!(text.contains("550"), "{name}: {text}");
        let subject = header(raw, "Subject").unwrap();
        let notice = p.wait_for(&format!("non-accettazione for {name}"), 30, || {
            p.messages_with(ALICE, "X-Ricevuta", "non-accettazione")
                .into_iter()
                .find(|m| {
                    header(m, "Subject").as_deref()
                        == Some(format!("AVVISO DI NON ACCETTAZIONE: {subject}").as_str())
                })
        });
        openssl_verify(&notice, &p.ca_pem).expect("notice verifies with openssl");
        xmllint_message(&notice).expect("daticert valid against the DTD");
        assert_eq!(
            header(&notice, "From").unwrap(),
            "posta-certificata@pec.alpha.test"
        );
        assert_eq!(header(&notice, "To").unwrap(), ALICE, "{name}");
        assert_eq!(
            header(&notice, "X-Riferimento-Message-ID"),
            header(raw, "Message-ID")
        );
        let d = daticert(&notice);
        assert_eq!(d.tipo, Tipo::NonAccettazione, "{name}");
        assert_eq!(d.errore, Errore::Altro, "{name}");
        assert_eq!(d.mittente, ALICE, "{name}");
        let esteso = d.errore_esteso.unwrap_or_default();
        assert!(esteso.contains(reason_it), "{name}: {esteso:?}");
        assert!(postacert(&notice).is_none());
    }
    // One notice per refusal, all to the authenticated sender; nobody else
    // got anything (in particular not the forged From of the "from" case).
    wait_quiet(&[&p]);
    assert_eq!(p.mailbox(ALICE).len(), cases.len());
    assert!(p.mailbox(BOB).is_empty(), "{:?}", p.mailbox(BOB));
    assert!(p.mailbox(CAROL).is_empty());
    let refusals = submissions(&p);
    assert_eq!(refusals.len(), cases.len());
    assert!(refusals
        .iter()
        .all(|e| e["event"] == "non-accettazione" && e["error"].is_string()));
}

#[tokio::test]
async fn oversize_is_a_plain_552_without_notice() {
    let ca = TestCa::new();
    // Room for the busta of a small message (~7 KB), not for 30 KB.
    let p = provider(&ca, "[limits]\nmax_message_size = \"20000\"\n");

    // Announced size above the limit: refused at MAIL.
    let mut c = SecureSmtp::connect(p.submissions, &p.ca_pem, true);
    let (code, caps) = c.cmd("EHLO client.test");
    assert_eq!(code, 250);
    assert!(caps.lines().any(|l| l == "SIZE 20000"), "{caps}");
    let token = openssl::base64::encode_block(format!("\0{ALICE}\0{PASSWORD}").as_bytes());
    assert_eq!(c.cmd(&format!("AUTH PLAIN {token}")).0, 235);
    let (code, text) = c.cmd(&format!("MAIL FROM:<{ALICE}> SIZE=50000"));
    assert_eq!(code, 552, "{text}");
    assert!(text.starts_with("5.3.4"), "{text}");

    // No SIZE parameter, but the DATA itself is too big: 552 after the data.
    assert_eq!(c.cmd(&format!("MAIL FROM:<{ALICE}>")).0, 250);
    assert_eq!(c.cmd(&format!("RCPT TO:<{BOB}>")).0, 250);
    assert_eq!(c.cmd("DATA").0, 354);
    let big = message(ALICE, &[BOB], &[], "Grande", "", &"x".repeat(30000));
    c.send(&big);
    let (code, text) = c.cmd(".");
    assert_eq!(code, 552, "{text}");
    assert!(text.starts_with("5.3.4"), "{text}");
    // The session is still in step.
    assert_eq!(c.cmd("NOOP").0, 250);

    // The same through lettre.
    let e = p
        .submit_raw(ALICE, &[BOB], &big, false)
        .await
        .expect_err("too big");
    assert!(e.to_string().contains("552"), "{e}");

    // A message just under the limit still goes through.
    let small = message(ALICE, &[BOB], &[], "Piccolo", "", "ok");
    p.submit_raw(ALICE, &[BOB], &small, false)
        .await
        .expect("small message accepted");
    p.wait_messages(ALICE, "X-Ricevuta", "accettazione", 1);
    wait_quiet(&[&p]);
    assert!(p
        .messages_with(ALICE, "X-Ricevuta", "non-accettazione")
        .is_empty());
    let subjects: Vec<String> = submissions(&p)
        .iter()
        .map(|e| e["subject"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(subjects, vec!["Piccolo".to_string()]);
}

#[test]
fn smtp_smuggling_neither_ends_the_message_nor_starts_another() {
    let ca = TestCa::new();
    let p = provider(&ca, "");
    let mut c = SecureSmtp::connect(p.submissions, &p.ca_pem, true);
    assert_eq!(c.ehlo_auth(ALICE, PASSWORD).0, 235);
    let noop = c.cmd("NOOP");
    assert_eq!(noop.0, 250);

    for (i, fake_end) in ["\n.\r\n", "\r.\r\n"].iter().enumerate() {
        assert_eq!(c.cmd(&format!("MAIL FROM:<{ALICE}>")).0, 250);
        assert_eq!(c.cmd(&format!("RCPT TO:<{BOB}>")).0, 250);
        assert_eq!(c.cmd("DATA").0, 354);
        let outer = format!(
            "From: {ALICE}\r\nTo: {BOB}\r\nSubject: Esterno {i}\r\nMessage-ID: <outer{i}@client.test>\r\n\r\nprima{fake_end}"
        );
        let smuggled = format!(
            "MAIL FROM:<{ALICE}>\r\nRCPT TO:<{CAROL}>\r\nDATA\r\nFrom: {ALICE}\r\nTo: {CAROL}\r\nSubject: Contrabbando {i}\r\nMessage-ID: <smuggled{i}@client.test>\r\n\r\nnascosto\r\n"
        );
        c.send(format!("{outer}{smuggled}").as_bytes());
        // Exactly one reply, and only after the real terminator.
        c.send(b".\r\n");
        let (code, text) = c.reply();
        assert!(
            (code == 250) || (500..600).contains(&code),
            "attempt {i}: {code} {text}"
        );
        // If the smuggled commands had been run, their replies (MAIL 250,
        // RCPT 250, DATA 354, ...) would come before NOOP's.
        assert_eq!(c.cmd("NOOP"), noop, "attempt {i}: out of step");
    }
    assert_eq!(c.cmd("QUIT").0, 221);

    wait_quiet(&[&p]);
    for f in all_mail_files(&p) {
        let m = std::fs::read(&f).unwrap();
        let text = String::from_utf8_lossy(&m);
        assert!(!text.contains("Contrabbando"), "{}: {text}", f.display());
        // Whatever was stored must not hide a second message either.
        if let Some(post) = postacert(&m) {
            assert!(!String::from_utf8_lossy(&post).contains("\r\nMAIL FROM:"));
        }
    }
    assert!(p.mailbox(CAROL).is_empty());
    let subs = submissions(&p);
    assert!(subs.len() <= 2, "{subs:?}");
    for i in 0..2 {
        let of_attempt = subs
            .iter()
            .filter(|e| e["subject"] == format!("Esterno {i}"))
            .count();
        assert!(of_attempt <= 1);
    }
    assert!(subs
        .iter()
        .all(|e| !e["subject"].as_str().unwrap_or("").contains("Contrabbando")));
    assert!(p
        .log_events(&["--address", CAROL])
        .iter()
        .all(|e| e["event"] != "accettazione"));
}
