//! The reception point (issue 3): whatever reaches the inbound port without
//! being a genuine PEC object of a provider in the index becomes a signed
//! busta di anomalia, never a PEC; relay is denied; the provider index is
//! reloaded at runtime (file change and SIGHUP). A genuine busta is certified
//! only as its daticert says: not for a recipient it does not list, not under
//! altered outer headers (issue 9 §2).
use crate::common;

use std::time::Duration;

use common::*;
use pecd::pec::classify::classify;
use pecd::pec::smime::Signer;
use pecd::pec::types::Unsigned;

const ALICE: &str = "alice@pec.alpha.test";
const BOB: &str = "bob@pec.beta.test";

async fn submit(p: &TestProvider, from: &str, rcpts: &[&str], msg: &[u8]) -> String {
    let reply = p
        .submit_raw(from, rcpts, msg, false)
        .await
        .expect("submission accepted");
    identificativo_in(&reply)
}

/// The first message in `address`'s mailbox with `name: value` and `<id>` in `id_header`.
fn wait_with_id(p: &TestProvider, address: &str, name: &str, value: &str, id: &str) -> Vec<u8> {
    p.wait_for(
        &format!("{name}: {value} about {id} for {address}"),
        30,
        || {
            p.messages_with(address, name, value)
                .into_iter()
                .find(|m| classify(m).daticert.is_some_and(|d| d.identificativo == id))
        },
    )
}

/// Re-sign a provider message's signed entity, headers kept, with `signer`.
fn resign(signed: &[u8], signer: &Signer) -> Vec<u8> {
    let m = classify(signed);
    let entity = signed[m.signed_entity.expect("a signed message")].to_vec();
    let (fields, _) = pecd::pec::headers::raw_fields(signed);
    let headers = fields
        .iter()
        .filter(|f| !f.name.eq_ignore_ascii_case("Content-Type"))
        .map(|f| {
            let v = String::from_utf8_lossy(f.raw_value(signed));
            (f.name.clone(), v.trim_start().to_string())
        })
        .collect();
    signer
        .sign(&Unsigned { headers, entity }, "resigned-by-the-test")
        .unwrap()
}

/// Flip the case of the first letter of `marker` inside the signed part.
fn flip_byte(signed: &[u8], marker: &[u8]) -> Vec<u8> {
    let range = classify(signed).signed_entity.expect("a signed message");
    let at = signed[range.clone()]
        .windows(marker.len())
        .position(|w| w == marker)
        .map(|i| i + range.start)
        .unwrap_or_else(|| {
            panic!(
                "{:?} not in the signed part",
                String::from_utf8_lossy(marker)
            )
        });
    let mut out = signed.to_vec();
    out[at] ^= 0x20;
    out
}

fn signer_for(ca: &pecd::certs::CertKey, name: &str, domain: &str) -> Signer {
    let c = pecd::certs::generate_signing(ca, name, domain).unwrap();
    Signer::from_pem(&c.cert_pem(), &c.key_pem(), &ca.cert_pem()).unwrap()
}

/// An anomaly envelope in `address`'s mailbox wrapping exactly `original`.
fn wait_anomaly_of(p: &TestProvider, address: &str, original: &[u8]) -> Vec<u8> {
    p.wait_for("busta di anomalia wrapping the message", 30, || {
        p.messages_with(address, "X-Trasporto", "errore")
            .into_iter()
            .find(|m| postacert_of(m) == original)
    })
}

/// Check the shape of an anomaly envelope built by Alpha around `original`.
fn check_anomaly(anomaly: &[u8], original: &[u8], ca: &TestCa) {
    let o = classify(original);
    assert_eq!(
        header(anomaly, "Subject").unwrap(),
        format!(
            "ANOMALIA MESSAGGIO: {}",
            o.subject.clone().unwrap_or_default()
        )
    );
    assert_eq!(
        header(anomaly, "From").unwrap(),
        format!(
            "\"Per conto di: {}\" <posta-certificata@pec.alpha.test>",
            o.from_address.clone().unwrap()
        )
    );
    assert_eq!(header(anomaly, "X-Ricevuta"), None);
    let text = String::from_utf8_lossy(anomaly).replace("=\r\n", "");
    assert!(
        text.contains("non sono stati certificati"),
        "the anomaly does not say why"
    );
    assert!(
        classify(anomaly).daticert.is_none(),
        "no daticert in an anomaly"
    );
    openssl_verify(anomaly, &ca.pem_path()).expect("the anomaly envelope verifies");
}

fn count(p: &TestProvider, event: &str) -> usize {
    p.events(event).len()
}

fn reloads(p: &TestProvider) -> usize {
    p.log().matches("provider index reloaded").count()
}

/// Each kind of bad message becomes an anomaly; nothing is delivered as
/// PEC and no receipt is emitted; relaying is denied.
#[tokio::test]
async fn anything_not_a_genuine_pec_becomes_an_anomaly() {
    let ca = TestCa::new();
    let (mut a, mut b) = two_providers(&ca, &["alice"], &["bob"]);
    a.start();
    b.start();

    // Relay denied, STARTTLS offered, no TLS needed to talk.
    let mut c = RawSmtp::connect(a.inbound);
    let (code, ehlo) = c.cmd("EHLO tester.example");
    assert_eq!(code, 250);
    assert!(ehlo.contains("STARTTLS"), "{ehlo}");
    assert!(!ehlo.contains("AUTH"), "{ehlo}");
    assert_eq!(c.cmd("MAIL FROM:<someone@example.org>").0, 250);
    for outside in ["victim@example.org", BOB] {
        let (code, text) = c.cmd(&format!("RCPT TO:<{outside}>"));
        assert_eq!(code, 550, "{text}");
        assert!(text.contains("5.7.1"), "{text}");
    }
    assert_eq!(c.cmd(&format!("RCPT TO:<{ALICE}>")).0, 250);
    c.cmd("QUIT");

    // Genuine traffic to copy from: a busta from Beta and a consegna from Beta.
    let m = message(BOB, &[ALICE], &[], "Originale", "", "testo originale");
    let idb = submit(&b, BOB, &[ALICE], &m).await;
    let busta = wait_with_id(&a, ALICE, "X-Trasporto", "posta-certificata", &idb);
    let m = message(ALICE, &[BOB], &[], "Andata", "", "andata");
    let ida = submit(&a, ALICE, &[BOB], &m).await;
    let consegna = wait_with_id(&a, ALICE, "X-Ricevuta", "avvenuta-consegna", &ida);
    openssl_verify(&busta, &ca.pem_path()).unwrap();
    openssl_verify(&consegna, &ca.pem_path()).unwrap();
    // Let the flows finish (presa in carico of both) before taking the baseline.
    a.wait_events("ricevuta-presa-in-carico", 1, |e| {
        e["identificativo"] == ida
    });
    b.wait_events("ricevuta-presa-in-carico", 1, |e| {
        e["identificativo"] == idb
    });
    b.wait_events("ricevuta-avvenuta-consegna", 1, |e| {
        e["identificativo"] == idb
    });
    let pec_kinds = [
        "busta-ricevuta",
        "presa-in-carico",
        "avvenuta-consegna",
        "errore-consegna",
        "ricevuta-avvenuta-consegna",
    ];
    let a_before: Vec<usize> = pec_kinds.iter().map(|k| count(&a, k)).collect();
    let b_before: Vec<usize> = ["ricevuta-presa-in-carico", "ricevuta-avvenuta-consegna"]
        .iter()
        .map(|k| count(&b, k))
        .collect();
    let bustas_before = a
        .messages_with(ALICE, "X-Trasporto", "posta-certificata")
        .len();
    let consegne_before = a
        .messages_with(ALICE, "X-Ricevuta", "avvenuta-consegna")
        .len();

    let other_ca = pecd::certs::generate_ca("Some Other CA").unwrap();
    let foreign = signer_for(&other_ca, "Beta PEC S.p.A.", "pec.beta.test");
    let not_indexed = signer_for(&ca.ca, "Gamma PEC S.p.A.", "pec.gamma.test");
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "plain mail",
            message(
                "mario.rossi@example.org",
                &[ALICE],
                &[],
                "Posta ordinaria",
                "",
                "non certificata",
            ),
            "not a PEC message",
        ),
        (
            "busta signed by an untrusted CA",
            resign(&busta, &foreign),
            "untrusted signer certificate",
        ),
        (
            "busta signed by a trusted provider not in the index",
            resign(&busta, &not_indexed),
            "is not in the provider index",
        ),
        (
            "busta altered after signing",
            flip_byte(&busta, b"Messaggio di Posta Certificata"),
            "content digest mismatch",
        ),
        (
            "receipt with a broken signature",
            flip_byte(&consegna, b"Ricevuta di avvenuta consegna"),
            "content digest mismatch",
        ),
    ];
    // The re-signed copies differ from a genuine busta only in the signer
    // (else the test would prove something else): openssl agrees.
    assert!(openssl_verify(&cases[1].1, &ca.pem_path()).is_err());
    assert!(openssl_verify(&cases[2].1, &ca.pem_path()).is_ok());
    for (what, bytes, _) in &cases {
        let reply = send_plain(
            a.inbound,
            "posta-certificata@pec.beta.test",
            &[ALICE],
            bytes,
        );
        assert!(reply.contains("2.0.0"), "{what}: {reply}");
    }
    for (what, bytes, reason) in &cases {
        let anomaly = wait_anomaly_of(&a, ALICE, bytes);
        check_anomaly(&anomaly, bytes, &ca);
        let subject = classify(bytes).subject.unwrap_or_default();
        let logged = a.wait_events("anomalia", 1, |e| {
            e["subject"] == subject.as_str()
                && e["error"].as_str().is_some_and(|r| r.contains(reason))
        });
        assert!(
            !logged.is_empty(),
            "{what}: no anomalia event with {reason:?}"
        );
    }
    assert_eq!(count(&a, "anomalia"), cases.len());
    // Any wrongly emitted receipt has travelled once both are quiet.
    wait_quiet(&[&a, &b]);
    let a_after: Vec<usize> = pec_kinds.iter().map(|k| count(&a, k)).collect();
    assert_eq!(a_after, a_before, "{pec_kinds:?} at Alpha changed");
    let b_after: Vec<usize> = ["ricevuta-presa-in-carico", "ricevuta-avvenuta-consegna"]
        .iter()
        .map(|k| count(&b, k))
        .collect();
    assert_eq!(b_after, b_before, "Beta received receipts for anomalies");
    assert_eq!(
        a.messages_with(ALICE, "X-Trasporto", "posta-certificata")
            .len(),
        bustas_before,
        "an anomaly was delivered as a busta"
    );
    assert_eq!(
        a.messages_with(ALICE, "X-Ricevuta", "avvenuta-consegna")
            .len(),
        consegne_before,
        "a broken receipt was delivered as a receipt"
    );
    for (p, m) in a.all_mail() {
        if let Err(e) = openssl_verify(&m, &ca.pem_path()) {
            panic!("{}: {e}", p.display());
        }
    }
    a.stop();
    b.stop();
}

/// Removing Beta from Alpha's index at runtime turns Beta's bustas and
/// receipts into anomalies; putting it back restores them; SIGHUP reloads too.
#[tokio::test]
async fn index_reload_changes_the_verdict() {
    let ca = TestCa::new();
    let (mut a, mut b) = two_providers(&ca, &["alice"], &["bob"]);
    a.start();
    b.start();
    let full = format!("{}{}", a.index_entry(), b.index_entry());
    let only_a = a.index_entry();

    // Beta removed: its busta and its receipts become anomalies at Alpha.
    let n = reloads(&a);
    a.write_index(&only_a);
    a.wait_for("index reload", 10, || (reloads(&a) > n).then_some(()));
    let m = message(BOB, &[ALICE], &[], "Fuori indice", "", "1");
    let id1 = submit(&b, BOB, &[ALICE], &m).await;
    let anomaly = a.wait_for("anomaly wrapping Beta's busta", 30, || {
        a.messages_with(ALICE, "X-Trasporto", "errore")
            .into_iter()
            .find(|x| header(&postacert_of(x), "Message-ID") == Some(format!("<{id1}>")))
    });
    assert_eq!(
        header(&postacert_of(&anomaly), "X-Trasporto").as_deref(),
        Some("posta-certificata")
    );
    openssl_verify(&anomaly, &ca.pem_path()).unwrap();
    a.wait_events("anomalia", 1, |e| {
        e["error"]
            .as_str()
            .is_some_and(|r| r.contains("not in the provider index"))
    });
    let m = message(ALICE, &[BOB], &[], "Ricevuta fuori indice", "", "2");
    let id2 = submit(&a, ALICE, &[BOB], &m).await;
    let anomaly = a.wait_for("anomaly wrapping Beta's consegna", 30, || {
        a.messages_with(ALICE, "X-Trasporto", "errore")
            .into_iter()
            .find(|x| {
                let inner = postacert_of(x);
                header(&inner, "X-Ricevuta").as_deref() == Some("avvenuta-consegna")
                    && classify(&inner)
                        .daticert
                        .is_some_and(|d| d.identificativo == id2)
            })
    });
    openssl_verify(&anomaly, &ca.pem_path()).unwrap();
    assert!(a
        .messages_with(ALICE, "X-Ricevuta", "avvenuta-consegna")
        .is_empty());
    assert!(a
        .messages_with(ALICE, "X-Trasporto", "posta-certificata")
        .is_empty());

    // Beta's presa in carico for id2 was addressed to Alpha's receipt
    // mailbox: logged as an anomaly, not a failed delivery to a user.
    a.wait_events("anomalia", 1, |e| {
        e["recipients"] == "posta-certificata@pec.alpha.test"
            && e["subject"]
                .as_str()
                .is_some_and(|s| s.starts_with("PRESA IN CARICO"))
    });
    assert!(
        a.events("lavoro-fallito").is_empty(),
        "{:?}",
        a.events("lavoro-fallito")
    );
    // Beta back: accepted again.
    let n = reloads(&a);
    a.write_index(&full);
    a.wait_for("index reload", 10, || (reloads(&a) > n).then_some(()));
    let m = message(BOB, &[ALICE], &[], "Di nuovo in indice", "", "3");
    let id3 = submit(&b, BOB, &[ALICE], &m).await;
    let busta = wait_with_id(&a, ALICE, "X-Trasporto", "posta-certificata", &id3);
    openssl_verify(&busta, &ca.pem_path()).unwrap();
    wait_with_id(&b, BOB, "X-Ricevuta", "avvenuta-consegna", &id3);

    // A broken index file is refused with an error and the last good index
    // stays in force: Beta is still trusted.
    let n = reloads(&a);
    a.write_index("[[provider]]\nname = \"half written\"\nno_such_key = 1\n");
    a.wait_for("the refused reload logged", 10, || {
        a.log()
            .contains("provider index not reloaded")
            .then_some(())
    });
    assert_eq!(reloads(&a), n, "a broken index was taken");
    let m = message(BOB, &[ALICE], &[], "Indice rotto", "", "5");
    let id5 = submit(&b, BOB, &[ALICE], &m).await;
    wait_with_id(&a, ALICE, "X-Trasporto", "posta-certificata", &id5);
    a.write_index(&full);
    a.wait_for("index reload", 10, || (reloads(&a) > n).then_some(()));

    // SIGHUP: the file changes but keeps its old mtime, so only the signal
    // can make Alpha notice.
    let path = a.path().join("index.toml");
    let old = std::fs::metadata(&path).unwrap().modified().unwrap();
    let tmp = a.path().join("index.toml.sighup");
    std::fs::write(&tmp, &only_a).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&tmp)
        .unwrap()
        .set_modified(old)
        .unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    let n = reloads(&a);
    // Four of the watcher's 200 ms rounds: no state of the daemon says a
    // round has looked, so the time is what this checks.
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(reloads(&a), n, "the watcher reloaded an unchanged mtime");
    a.sighup();
    a.wait_for("reload on SIGHUP", 10, || (reloads(&a) > n).then_some(()));
    let m = message(BOB, &[ALICE], &[], "Dopo SIGHUP", "", "4");
    let id4 = submit(&b, BOB, &[ALICE], &m).await;
    a.wait_for("anomaly after SIGHUP", 30, || {
        a.messages_with(ALICE, "X-Trasporto", "errore")
            .into_iter()
            .find(|x| header(&postacert_of(x), "Message-ID") == Some(format!("<{id4}>")))
    });
    assert_eq!(
        a.messages_with(ALICE, "X-Trasporto", "posta-certificata")
            .len(),
        2,
        "only the bustas sent while Beta was in the (last good) index were accepted"
    );
    for (p, m) in a.all_mail() {
        if let Err(e) = openssl_verify(&m, &ca.pem_path()) {
            panic!("{}: {e}", p.display());
        }
    }
    a.stop();
    b.stop();
}

/// The reception point has the same size limit and SMTP-smuggling defence as
/// the access point: nothing oversized or smuggled becomes a message.
#[tokio::test]
async fn inbound_limits_and_smuggling() {
    let ca = TestCa::new();
    let mut a = TestProvider::prepare(
        &ca,
        &ProviderSpec::new("Alpha PEC S.p.A.", "pec.alpha.test", &["alice"]),
    );
    a.append_config("[limits]\nmax_message_size = \"5KB\"\n");
    a.start();
    let mut s = RawSmtp::connect(a.inbound);
    assert_eq!(s.cmd("EHLO peer.test").0, 250);
    let (code, text) = s.cmd("MAIL FROM:<x@peer.test> SIZE=10000");
    assert_eq!(code, 552, "{text}");
    assert_eq!(s.cmd("MAIL FROM:<x@peer.test>").0, 250);
    assert_eq!(s.cmd("RCPT TO:<alice@pec.alpha.test>").0, 250);
    let big = format!("Subject: big\r\n\r\n{}\r\n", "y".repeat(6000));
    let (code, text) = s.data(big.as_bytes());
    assert_eq!(code, 552, "oversize DATA: {text}");
    // `\n.\r\n` must neither end the message nor start a second transaction.
    assert_eq!(s.cmd("MAIL FROM:<x@peer.test>").0, 250);
    assert_eq!(s.cmd("RCPT TO:<alice@pec.alpha.test>").0, 250);
    assert_eq!(s.cmd("DATA").0, 354);
    let smuggled = b"Subject: one\r\n\r\nhello\n.\r\nMAIL FROM:<evil@peer.test>\r\nRCPT TO:<alice@pec.alpha.test>\r\nDATA\r\nSubject: two\r\n\r\nsmuggled\r\n.\r\n";
    let (code, text) = s.raw(smuggled);
    assert_eq!(code, 554, "smuggling refused whole: {text}");
    // The same with a bare CR before the dot.
    assert_eq!(s.cmd("MAIL FROM:<x@peer.test>").0, 250);
    assert_eq!(s.cmd("RCPT TO:<alice@pec.alpha.test>").0, 250);
    assert_eq!(s.cmd("DATA").0, 354);
    let (code, text) =
        s.raw(b"Subject: three\r\n\r\nhello\r.\r\nMAIL FROM:<evil@peer.test>\r\n.\r\n");
    assert_eq!(code, 554, "bare CR smuggling refused whole: {text}");
    assert_eq!(s.cmd("QUIT").0, 221);
    // Whatever the session took was queued before its reply: now judged.
    wait_quiet(&[&a]);
    assert!(
        a.events("ricezione").is_empty(),
        "nothing was received: {:?}",
        a.events("ricezione")
    );
    assert!(a.mailbox("alice@pec.alpha.test").is_empty());
    a.stop();
}

// ---- issue 9 §2: false certification -------------------------------------

const CAROL: &str = "carol@pec.beta.test";

/// Every address a receipt certifies something for (`consegna`, `ricezione`).
fn named_in(receipt: &[u8]) -> Vec<String> {
    let d = classify(receipt).daticert.expect("a receipt with daticert");
    d.consegna
        .into_iter()
        .chain(d.ricezione)
        .map(|a| a.to_ascii_lowercase())
        .collect()
}

/// Every receipt a provider signed (its spool keeps what it emitted).
fn receipts_signed_by(p: &TestProvider) -> Vec<Vec<u8>> {
    spool_files(p)
        .into_iter()
        .filter(|m| header(m, "X-Ricevuta").is_some())
        .collect()
}

/// A genuine busta from Alpha for bob, replayed into Beta's inbound port with
/// `RCPT TO` carol (another local user) and bob: carol gets a busta di
/// anomalia, not a PEC; no presa in carico and no consegna names carol; bob
/// still has his one busta and alice her one consegna.
#[tokio::test]
async fn replayed_busta_to_an_unlisted_recipient_is_an_anomaly() {
    let ca = TestCa::new();
    let (mut a, mut b) = two_providers(&ca, &["alice"], &["bob", "carol"]);
    a.start();
    b.start();
    let m = message(ALICE, &[BOB], &[], "Solo per Bob", "", "riservato");
    let id = submit(&a, ALICE, &[BOB], &m).await;
    let busta = wait_with_id(&b, BOB, "X-Trasporto", "posta-certificata", &id);
    wait_with_id(&a, ALICE, "X-Ricevuta", "avvenuta-consegna", &id);
    a.wait_events("ricevuta-presa-in-carico", 1, |e| e["identificativo"] == id);
    openssl_verify(&busta, &ca.pem_path()).expect("the genuine busta verifies");

    let reply = send_plain(b.inbound, ALICE, &[CAROL, BOB], &busta);
    assert!(reply.contains("2.0.0"), "{reply}");

    let anomaly = wait_anomaly_of(&b, CAROL, &busta);
    openssl_verify(&anomaly, &ca.pem_path()).expect("the anomaly verifies");
    assert!(header(&anomaly, "Subject")
        .unwrap()
        .starts_with("ANOMALIA MESSAGGIO: "));
    let text = String::from_utf8_lossy(&anomaly).replace("=\r\n", "");
    assert!(
        text.contains("non risulta tra i destinatari"),
        "the anomaly does not say why"
    );
    b.wait_events("anomalia", 1, |e| {
        e["recipients"] == CAROL
            && e["identificativo"] == id
            && e["error"]
                .as_str()
                .is_some_and(|r| r.contains("not among its daticert destinatari"))
    });
    wait_quiet(&[&a, &b]);

    assert!(
        b.messages_with(CAROL, "X-Trasporto", "posta-certificata")
            .is_empty(),
        "carol got the busta as PEC"
    );
    assert_eq!(b.mailbox(CAROL).len(), 1, "carol: the anomaly only");
    assert_eq!(b.mailbox(BOB).len(), 1, "bob: his one busta");
    assert!(
        receipts_signed_by(&b).len() >= 2,
        "Beta's presa in carico and consegna are in its spool"
    );
    for p in [&a, &b] {
        for r in receipts_signed_by(p) {
            assert!(
                !named_in(&r).contains(&CAROL.to_string()),
                "{} signed a receipt naming carol:\n{}",
                p.name,
                String::from_utf8_lossy(&r)
            );
        }
    }
    assert_eq!(events_of(&b, "presa-in-carico", Some(&id)).len(), 1);
    assert_eq!(events_of(&b, "avvenuta-consegna", Some(&id)).len(), 1);
    assert!(events_of(&b, "errore-consegna", Some(&id)).is_empty());
    let consegne = receipts_for(&a, ALICE, "avvenuta-consegna", &id);
    assert_eq!(consegne.len(), 1, "alice: one consegna");
    assert_eq!(named_in(&consegne[0]), vec![BOB.to_string()]);
    assert_eq!(
        events_of(&a, "ricevuta-presa-in-carico", Some(&id)).len(),
        1,
        "Alpha received one presa in carico"
    );
    a.stop();
    b.stop();
}

/// A genuine busta whose unsigned outer Subject, From or To was changed on
/// the way (the signature still verifies, openssl agrees) reaches bob as a
/// busta di anomalia naming the header, and no presa in carico or consegna
/// is emitted for it; the unaltered busta, sent last, is certified.
#[tokio::test]
async fn busta_with_altered_outer_headers_is_an_anomaly() {
    let ca = TestCa::new();
    let mut a = TestProvider::prepare(
        &ca,
        &ProviderSpec::new("Alpha PEC S.p.A.", "pec.alpha.test", &["alice"]),
    );
    let mut b = TestProvider::prepare(
        &ca,
        &ProviderSpec::new("Beta PEC S.p.A.", "pec.beta.test", &["bob", "carol"]),
    );
    let index = format!("{}{}", a.index_entry(), b.index_entry());
    a.write_index(&index);
    b.write_index(&index);
    b.route_to(&a);
    // Alpha's relay never reaches Beta: the test delivers each copy itself,
    // so Beta sees this busta for the first time in an altered form.
    route_dead(&a, "pec.beta.test");
    a.start();
    b.start();
    let m = message(ALICE, &[BOB], &[], "Busta originale", "", "contenuto");
    let id = submit(&a, ALICE, &[BOB], &m).await;
    let busta = a.wait_for("the busta in Alpha's spool", 30, || {
        spool_files(&a).into_iter().find(|m| {
            header(m, "X-Trasporto").as_deref() == Some("posta-certificata")
                && daticert(m).identificativo == id
        })
    });
    let text = String::from_utf8(busta.clone()).unwrap();
    let swap = |from: &str, to: &str| {
        assert!(text.contains(from), "{from:?} not in the busta");
        text.replacen(from, to, 1).into_bytes()
    };
    let cases = [
        (
            "Subject",
            swap(
                "Subject: POSTA CERTIFICATA: Busta originale",
                "Subject: POSTA CERTIFICATA: Sollecito di pagamento",
            ),
        ),
        (
            "From",
            swap(
                "\"Per conto di: alice@pec.alpha.test\"",
                "\"Per conto di: direttore@pec.alpha.test\"",
            ),
        ),
        (
            "To/Cc",
            swap(&format!("To: {BOB}"), &format!("To: {BOB}, {CAROL}")),
        ),
    ];
    for (header_name, bytes) in &cases {
        openssl_verify(bytes, &ca.pem_path())
            .unwrap_or_else(|e| panic!("{header_name}: the altered copy must still verify: {e}"));
        let reply = send_plain(b.inbound, ALICE, &[BOB], bytes);
        assert!(reply.contains("2.0.0"), "{header_name}: {reply}");
    }
    for (header_name, bytes) in &cases {
        let anomaly = wait_anomaly_of(&b, BOB, bytes);
        openssl_verify(&anomaly, &ca.pem_path()).unwrap();
        let subject = classify(bytes).subject.unwrap_or_default();
        b.wait_events("anomalia", 1, |e| {
            e["subject"] == subject.as_str()
                && e["error"]
                    .as_str()
                    .is_some_and(|r| r.contains(&format!("outer {header_name}")))
        });
    }
    // Alpha's own relay of the busta waits on its dead route.
    wait_quiet_but(&[&a, &b], |j| j["next_hop"] == "pec.beta.test");
    assert!(
        b.messages_with(BOB, "X-Trasporto", "posta-certificata")
            .is_empty(),
        "an altered busta was delivered as PEC"
    );
    assert!(
        b.mailbox(CAROL).is_empty(),
        "carol is no envelope recipient"
    );
    for event in ["busta-ricevuta", "presa-in-carico", "avvenuta-consegna"] {
        assert!(
            events_of(&b, event, Some(&id)).is_empty(),
            "{event} for an altered busta"
        );
    }
    assert!(receipts_signed_by(&b).is_empty(), "Beta signed a receipt");
    assert!(a.events("ricevuta-presa-in-carico").is_empty());
    assert!(a.events("ricevuta-avvenuta-consegna").is_empty());

    // The genuine bytes, by the same path: certified (the setup is sound).
    send_plain(b.inbound, ALICE, &[BOB], &busta);
    wait_with_id(&b, BOB, "X-Trasporto", "posta-certificata", &id);
    b.wait_events("presa-in-carico", 1, |e| e["identificativo"] == id);
    wait_with_id(&a, ALICE, "X-Ricevuta", "avvenuta-consegna", &id);
    a.stop();
    b.stop();
}

/// A provider of the index certifies only for what it serves (issue 20):
/// Beta's valid signature on a busta whose sender is at Alpha (one of
/// Alpha's own users) or at a domain of no provider, on a consegna or a
/// presa in carico for a recipient at Delta, or on a receipt about a
/// message none of Alpha's users sent, makes an anomaly at Alpha — no
/// avvenuta consegna to the claimed sender, no timer closed or stopped,
/// no receipt in the sent status.
#[tokio::test]
async fn a_peer_certifies_only_for_what_it_serves() {
    use pecd::pec::clock::ItalianTime;
    use pecd::pec::daticert::{Certified, Destinatario};
    use pecd::pec::envelope::Provider;
    use pecd::pec::receipt::{self, Consegna, Emitter};
    use pecd::pec::types::RecipientType;

    let ca = TestCa::new();
    let (mut a, mut b) = two_providers(&ca, &["alice", "carol"], &["bob"]);
    // Delta: a provider of the index with no server; its recipients are
    // certificati and get timers at Alpha.
    let delta_dir = tempfile::tempdir().unwrap();
    pecd::layout::write_dev_certs(delta_dir.path(), &ca.ca, "Delta PEC", "pec.delta.test").unwrap();
    let index = format!(
        "{}{}{}",
        a.index_entry(),
        b.index_entry(),
        pecd::layout::index_entry(
            "Delta PEC",
            "pec.delta.test",
            &delta_dir.path().join("signing.pem")
        )
    );
    a.write_index(&index);
    b.write_index(&index);
    route_dead(&a, "pec.delta.test");
    a.start();
    b.start();
    let carol = "carol@pec.alpha.test";
    let dan = "dan@pec.delta.test";
    let beta = Signer::from_pem(
        &std::fs::read(b.path().join("certs/signing.pem")).unwrap(),
        &std::fs::read(b.path().join("certs/signing.key")).unwrap(),
        &ca.pem(),
    )
    .unwrap();
    let beta_p = Provider {
        name: "Beta PEC S.p.A.".into(),
        domain: "pec.beta.test".into(),
    };
    let ids = pecd::pec::ids::RandomIds;
    let now = ItalianTime::from_unix(pecd::pec::clock::since_epoch().as_secs() as i64);
    let e = Emitter {
        provider: &beta_p,
        ids: &ids,
        when: now,
    };
    // A busta Beta signs for a sender it does not serve.
    let busta_from = |sender: &str, subject: &str| {
        let raw = message(sender, &[ALICE], &[], subject, "", "testo");
        let acc = pecd::pec::access::check(
            &raw,
            sender,
            &[ALICE.to_string()],
            None,
            &pecd::pec::access::Limits {
                max_message_size: 1 << 20,
                max_recipients: 10,
            },
        )
        .unwrap();
        let id = pecd::pec::ids::identificativo(&ids, &now, "pec.beta.test");
        let d = [Destinatario {
            address: ALICE.into(),
            tipo: RecipientType::Certificato,
        }];
        let busta =
            pecd::pec::envelope::busta_di_trasporto(&beta_p, &ids, &now, &raw, &acc, &id, &d);
        beta.sign(&busta.unsigned, "beta-forged").unwrap()
    };
    // Alice's genuine PEC to a certified recipient at Delta (never
    // delivered: its route is dead), whose receipts Beta then forges.
    let m = message(ALICE, &[dan], &[], "Per Delta", "", "x");
    let id = submit(&a, ALICE, &[dan], &m).await;
    let acc = wait_with_id(&a, ALICE, "X-Ricevuta", "accettazione", &id);
    let certified = Certified::from(&daticert(&acc));
    let consegna = beta
        .sign(
            &receipt::avvenuta_consegna(&e, &certified, dan, Consegna::Sintetica),
            "beta-consegna",
        )
        .unwrap();
    let presa = beta
        .sign(
            &receipt::presa_in_carico(
                &e,
                &certified,
                "posta-certificata@pec.alpha.test",
                &[dan.to_string()],
            ),
            "beta-presa",
        )
        .unwrap();
    // A receipt about a message that did not leave from Alpha.
    let mut stranger = certified.clone();
    stranger.mittente = "someone@pec.beta.test".into();
    stranger.identificativo = format!("x{}", certified.identificativo);
    let foreign = beta
        .sign(
            &receipt::avvenuta_consegna(&e, &stranger, BOB, Consegna::Sintetica),
            "beta-stranger",
        )
        .unwrap();
    let cases: Vec<(&str, Vec<u8>, &str, &str)> = vec![
        (
            "busta for one of Alpha's users",
            busta_from(carol, "Finta di Carol"),
            ALICE,
            "mittente carol@pec.alpha.test not in a domain managed",
        ),
        (
            "busta for a domain of no provider",
            busta_from("mallory@example.org", "Finta di Mallory"),
            ALICE,
            "mittente mallory@example.org not in a domain managed",
        ),
        (
            "consegna for a recipient at Delta",
            consegna,
            ALICE,
            "consegna dan@pec.delta.test not in a domain managed",
        ),
        (
            "presa in carico for a recipient at Delta",
            presa,
            "posta-certificata@pec.alpha.test",
            "ricezione dan@pec.delta.test not in a domain managed",
        ),
        (
            "receipt about a message Alpha never sent",
            foreign,
            ALICE,
            "is not one of our users",
        ),
    ];
    // Each case is signed genuinely by a provider of the index: only what
    // it speaks for is wrong.
    for (what, bytes, _, _) in &cases {
        let f = a.path().join("case.eml");
        std::fs::write(&f, bytes).unwrap();
        assert!(openssl_verify(bytes, &ca.pem_path()).is_ok(), "{what}");
    }
    for (what, bytes, to, _) in &cases {
        let reply = send_plain(a.inbound, "posta-certificata@pec.beta.test", &[to], bytes);
        assert!(reply.contains("2.0.0"), "{what}: {reply}");
    }
    for (what, _, _, reason) in &cases {
        let found = a.wait_events("anomalia", 1, |e| {
            e["error"].as_str().is_some_and(|r| r.contains(reason))
        });
        assert!(!found.is_empty(), "{what}: no anomalia with {reason:?}");
    }
    // Anything wrongly emitted has travelled once both are quiet: only the
    // relay to Delta's dead route may still wait.
    wait_quiet_but(&[&a, &b], |j| j["kind"] == "relay");
    for kind in [
        "busta-ricevuta",
        "presa-in-carico",
        "avvenuta-consegna",
        "ricevuta-avvenuta-consegna",
        "ricevuta-presa-in-carico",
    ] {
        assert_eq!(count(&a, kind), 0, "Alpha logged {kind}");
    }
    assert!(
        a.messages_with(carol, "X-Ricevuta", "avvenuta-consegna")
            .is_empty(),
        "Carol got a consegna for a message she never sent"
    );
    assert!(a
        .messages_with(ALICE, "X-Trasporto", "posta-certificata")
        .is_empty());
    assert!(a
        .messages_with(ALICE, "X-Ricevuta", "avvenuta-consegna")
        .is_empty());
    // Dan's timer at Alpha is neither closed nor stopped.
    let (closed, presa_at): (Option<i64>, Option<i64>) = a
        .db()
        .query_row(
            "SELECT closed_at, presa_at FROM timers WHERE identificativo = ?1 AND recipient = ?2",
            [&id, dan],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((closed, presa_at), (None, None));
    a.stop();
    b.stop();
}
