//! Access point end to end: authenticated submission with lettre over
//! STARTTLS (587-style) and implicit TLS (465-style), then the accettazione,
//! the busta di trasporto, the delivery receipts (completa, breve, sintetica)
//! and the avviso di mancata consegna, all read back from the Maildirs and
//! checked with `openssl smime -verify` and `xmllint --dtdvalid`.
use crate::common;

use common::*;
use pecd::pec::daticert::Daticert;
use pecd::pec::types::{Errore, ReceiptType, RecipientType, Tipo};

const DOMAIN: &str = "pec.alpha.test";
const ALICE: &str = "alice@pec.alpha.test";
const BOB: &str = "bob@pec.alpha.test";
const CAROL: &str = "carol@pec.alpha.test";
const GHOST: &str = "ghost@pec.alpha.test";
const DAVE: &str = "dave@ordinaria.example";

/// A provider whose only route to `ordinaria.example` is a closed loopback
/// port, so mail for it can only wait in the queue (and no DNS is asked).
fn provider(ca: &TestCa) -> TestProvider {
    let mut spec = ProviderSpec::new("Alpha PEC S.p.A.", DOMAIN, &["alice", "bob", "carol"]);
    spec.extra_config = format!(
        "[[route]]\ndomain = \"ordinaria.example\"\nnext_hop = \"127.0.0.1:{}\"\n",
        free_port()
    );
    TestProvider::prepare(ca, &spec)
}

/// The identificativo in the text of the 250 reply.
fn identificativo_of(reply: &str) -> String {
    let rest = reply
        .split("identificativo ")
        .nth(1)
        .unwrap_or_else(|| panic!("no identificativo in {reply:?}"));
    rest.split_whitespace().next().unwrap().to_string()
}

/// Subject decoded by mail-parser (independent of our RFC 2047 code).
fn decoded_subject(msg: &[u8]) -> String {
    mail_parser::MessageParser::default()
        .parse_headers(msg)
        .and_then(|m| m.subject().map(str::to_string))
        .expect("subject")
}

/// Raw header value with the folding kept (first occurrence).
fn raw_header(msg: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(msg);
    let head = text.split("\r\n\r\n").next().unwrap();
    let mut out: Option<String> = None;
    for line in head.split("\r\n") {
        if let Some(o) = out.as_mut() {
            if line.starts_with([' ', '\t']) {
                o.push_str("\r\n");
                o.push_str(line);
                continue;
            }
            break;
        }
        if let Some((n, v)) = line.split_once(':') {
            if n.eq_ignore_ascii_case(name) {
                out = Some(v.trim_start().to_string());
            }
        }
    }
    out
}

fn check_datetime(d: &Daticert) {
    let z = &d.data.zona;
    assert!(
        z == "+0100" || z == "+0200",
        "zona {z:?} is not Italian time"
    );
    let g = d.data.giorno.as_bytes();
    assert!(
        g.len() == 10
            && g[2] == b'/'
            && g[5] == b'/'
            && g.iter()
                .enumerate()
                .all(|(i, c)| i == 2 || i == 5 || c.is_ascii_digit()),
        "giorno {:?} is not gg/mm/aaaa",
        d.data.giorno
    );
    let o = d.data.ora.as_bytes();
    assert!(
        o.len() == 8
            && o[2] == b':'
            && o[5] == b':'
            && o.iter()
                .enumerate()
                .all(|(i, c)| i == 2 || i == 5 || c.is_ascii_digit()),
        "ora {:?} is not hh:mm:ss",
        d.data.ora
    );
}

/// What every generated message must satisfy: the openssl CLI accepts the
/// signature, the raw daticert validates against the DTD, it is bare CRLF,
/// and the bytes in the Maildir are exactly the bytes written after signing.
fn check_generated(p: &TestProvider, m: &[u8]) {
    openssl_verify(m, &p.ca_pem).expect("openssl smime -verify accepts it");
    xmllint_message(m).expect("daticert.xml valid against the DTD");
    let xml = raw_daticert(m);
    assert!(
        xml.starts_with(b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>"),
        "{}",
        String::from_utf8_lossy(&xml)
    );
    assert!(!String::from_utf8_lossy(&xml).contains("DOCTYPE"));
    for (i, w) in m.windows(2).enumerate() {
        assert!(
            !(w[1] == b'\n' && w[0] != b'\r'),
            "bare LF at byte {}",
            i + 1
        );
    }
    assert!(
        spool_files(p).iter().any(|s| s == m),
        "stored message differs from every signed spool file"
    );
}

fn destinatari(d: &Daticert) -> Vec<(String, RecipientType)> {
    d.destinatari
        .iter()
        .map(|x| (x.address.clone(), x.tipo))
        .collect()
}

/// The original with its Message-ID swapped for the identificativo and
/// X-Riferimento-Message-ID appended at the end of the header block.
/// lettre always writes `CRLF.CRLF` after the data, so the server receives
/// the raw bytes plus one CRLF: that is the message as submitted.
fn expected_postacert(original: &[u8], msgid: &str, id: &str) -> Vec<u8> {
    let text = String::from_utf8(original.to_vec()).unwrap() + "\r\n";
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let old = format!("Message-ID: {msgid}");
    assert_eq!(head.matches(&old).count(), 1);
    let head = head.replace(&old, &format!("Message-ID: <{id}>"));
    format!("{head}\r\nX-Riferimento-Message-ID: {msgid}\r\n\r\n{body}").into_bytes()
}

fn receipts_for(p: &TestProvider, who: &str, ricevuta: &str, id: &str) -> Vec<Vec<u8>> {
    p.messages_with(who, "X-Ricevuta", ricevuta)
        .into_iter()
        .filter(|m| daticert(m).identificativo == id)
        .collect()
}

#[tokio::test]
async fn starttls_submission_accettazione_busta_consegna_and_errors() {
    let ca = TestCa::new();
    let mut p = provider(&ca);
    p.start();
    let subject_raw = "=?UTF-8?Q?Perch=C3=A9_=C3=A8_cos=C3=AC?=";
    let subject = "Perché è così";
    let original = message(
        ALICE,
        &[BOB, GHOST, DAVE],
        &[CAROL],
        subject_raw,
        "Reply-To: \"Alice a casa\" <alice.casa@ordinaria.example>\r\n",
        "Ciao a tutti",
    );
    let msgid = header(&original, "Message-ID").unwrap();
    let reply = p
        .submit_raw(ALICE, &[BOB, GHOST, DAVE, CAROL], &original, false)
        .await
        .expect("submission accepted");
    let id = identificativo_of(&reply);
    assert!(id.ends_with("@pec.alpha.test") && id.is_ascii() && id.len() <= 250);
    let expected_dest = vec![
        (BOB.to_string(), RecipientType::Certificato),
        (GHOST.to_string(), RecipientType::Certificato),
        (DAVE.to_string(), RecipientType::Esterno),
        (CAROL.to_string(), RecipientType::Certificato),
    ];

    // Ricevuta di accettazione.
    let acc = p.wait_messages(ALICE, "X-Ricevuta", "accettazione", 1);
    assert_eq!(acc.len(), 1);
    let acc = &acc[0];
    check_generated(&p, acc);
    assert_eq!(
        header(acc, "From").unwrap(),
        "posta-certificata@pec.alpha.test"
    );
    assert_eq!(header(acc, "To").unwrap(), ALICE);
    assert!(header(acc, "Subject").unwrap().is_ascii());
    assert_eq!(decoded_subject(acc), format!("ACCETTAZIONE: {subject}"));
    assert_eq!(header(acc, "X-Riferimento-Message-ID").unwrap(), msgid);
    let acc_mid = header(acc, "Message-ID").unwrap();
    assert!(acc_mid.starts_with('<') && acc_mid.ends_with("@pec.alpha.test>"));
    assert_ne!(acc_mid, format!("<{id}>"));
    let d = daticert(acc);
    assert_eq!(d.tipo, Tipo::Accettazione);
    assert_eq!(d.errore, Errore::Nessuno);
    assert_eq!(d.mittente, ALICE);
    assert_eq!(destinatari(&d), expected_dest);
    assert_eq!(d.identificativo, id);
    assert_eq!(d.msgid.as_deref(), Some(msgid.as_str()));
    assert_eq!(d.oggetto.as_deref(), Some(subject));
    assert_eq!(d.gestore_emittente, "Alpha PEC S.p.A.");
    assert_eq!(d.risposte, "alice.casa@ordinaria.example");
    check_datetime(&d);
    let xml = String::from_utf8(raw_daticert(acc)).unwrap();
    assert!(
        xml.contains(&format!(
            "<msgid>&lt;{}&gt;</msgid>",
            msgid.trim_matches(['<', '>'])
        )),
        "{xml}"
    );

    // Busta di trasporto, same bytes in both local mailboxes.
    let busta = p.wait_messages(BOB, "X-Trasporto", "posta-certificata", 1);
    assert_eq!(busta.len(), 1);
    let busta = &busta[0];
    let busta_carol = p.wait_messages(CAROL, "X-Trasporto", "posta-certificata", 1);
    assert_eq!(&busta_carol[0], busta, "one busta, identical bytes");
    check_generated(&p, busta);
    assert!(header(busta, "Subject").unwrap().is_ascii());
    assert!(raw_header(busta, "Subject").unwrap().contains("=?"));
    assert_eq!(
        decoded_subject(busta),
        format!("POSTA CERTIFICATA: {subject}")
    );
    assert_eq!(
        header(busta, "From").unwrap(),
        "\"Per conto di: alice@pec.alpha.test\" <posta-certificata@pec.alpha.test>"
    );
    assert_eq!(
        raw_header(busta, "Reply-To").unwrap(),
        raw_header(&original, "Reply-To").unwrap()
    );
    assert_eq!(
        raw_header(busta, "To").unwrap(),
        raw_header(&original, "To").unwrap()
    );
    assert_eq!(
        raw_header(busta, "Cc").unwrap(),
        raw_header(&original, "Cc").unwrap()
    );
    assert_eq!(header(busta, "Message-ID").unwrap(), format!("<{id}>"));
    assert_eq!(header(busta, "X-Riferimento-Message-ID").unwrap(), msgid);
    assert!(header(busta, "X-TipoRicevuta").is_none());
    assert!(header(busta, "Date").is_some());
    let bd = daticert(busta);
    assert_eq!(bd.tipo, Tipo::PostaCertificata);
    assert_eq!(bd.errore, Errore::Nessuno);
    assert_eq!(bd.identificativo, id);
    assert_eq!(bd.msgid.as_deref(), Some(msgid.as_str()));
    assert_eq!(bd.ricevuta, Some(ReceiptType::Completa));
    assert_eq!(destinatari(&bd), expected_dest);
    assert_eq!(
        bd.data, d.data,
        "busta and accettazione certify one instant"
    );
    let post = postacert(busta).expect("busta carries postacert.eml");
    assert_eq!(
        String::from_utf8_lossy(&post),
        String::from_utf8_lossy(&expected_postacert(&original, &msgid, &id))
    );

    // Consegna: completa for the To recipient, sintetica for the Cc one.
    let cons = p.wait_for("2 consegna receipts", 30, || {
        let v = receipts_for(&p, ALICE, "avvenuta-consegna", &id);
        (v.len() >= 2).then_some(v)
    });
    assert_eq!(cons.len(), 2);
    let of = |who: &str| {
        cons.iter()
            .find(|m| daticert(m).consegna.as_deref() == Some(who))
            .unwrap_or_else(|| panic!("no consegna for {who}"))
    };
    for (who, kind) in [
        (BOB, ReceiptType::Completa),
        (CAROL, ReceiptType::Sintetica),
    ] {
        let m = of(who);
        check_generated(&p, m);
        assert_eq!(
            header(m, "From").unwrap(),
            "posta-certificata@pec.alpha.test"
        );
        assert_eq!(header(m, "To").unwrap(), ALICE);
        assert_eq!(decoded_subject(m), format!("CONSEGNA: {subject}"));
        assert_eq!(header(m, "X-Riferimento-Message-ID").unwrap(), msgid);
        let cd = daticert(m);
        assert_eq!(cd.tipo, Tipo::AvvenutaConsegna);
        assert_eq!(cd.identificativo, id);
        assert_eq!(cd.ricevuta, Some(kind), "{who}");
        assert_eq!(destinatari(&cd), expected_dest);
        check_datetime(&cd);
        match kind {
            ReceiptType::Completa => assert_eq!(postacert(m).as_deref(), Some(post.as_slice())),
            _ => assert!(postacert(m).is_none(), "sintetica carries no original"),
        }
    }

    // Unknown local recipient: avviso di mancata consegna.
    let err = p.wait_for("errore-consegna", 30, || {
        receipts_for(&p, ALICE, "errore-consegna", &id)
            .into_iter()
            .next()
    });
    assert_eq!(receipts_for(&p, ALICE, "errore-consegna", &id).len(), 1);
    check_generated(&p, &err);
    assert_eq!(
        decoded_subject(&err),
        format!("AVVISO DI MANCATA CONSEGNA: {subject}")
    );
    assert_eq!(header(&err, "To").unwrap(), ALICE);
    let ed = daticert(&err);
    assert_eq!(ed.tipo, Tipo::ErroreConsegna);
    assert_eq!(ed.errore, Errore::NoDest);
    assert_eq!(ed.consegna.as_deref(), Some(GHOST));
    let esteso = ed.errore_esteso.clone().unwrap_or_default();
    assert!(esteso.starts_with("5.1.1"), "{esteso}");
    assert!(!p
        .path()
        .join("data/mail")
        .join(DOMAIN)
        .join("ghost")
        .exists());

    // The esterno recipient waits in the queue, after a failed attempt too.
    let job = p.wait_for("a failed relay attempt for dave", 30, || {
        queue_jobs(&p).into_iter().find(|j| {
            j["recipients"]
                .as_array()
                .is_some_and(|r| r.iter().any(|x| x == DAVE))
                && j["attempts"].as_i64().unwrap_or(0) >= 1
        })
    });
    assert_eq!(job["identificativo"], id.as_str());
    assert_eq!(job["next_hop"], "ordinaria.example");
    let text = p.cli(&["queue", "list"], "");
    assert!(String::from_utf8_lossy(&text.stdout).contains(DAVE));

    // The log has the submission's events under its identificativo.
    let events = p.log_events(&["--id", &id]);
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    for k in [
        "accettazione",
        "busta-trasporto",
        "avvenuta-consegna",
        "errore-consegna",
    ] {
        assert!(kinds.contains(&k), "{k} missing in {kinds:?}");
    }
    let acc_ev = &events[kinds.iter().position(|k| *k == "accettazione").unwrap()];
    assert_eq!(acc_ev["sender"], ALICE);
    assert_eq!(acc_ev["msgid"], msgid.as_str());
    assert_eq!(acc_ev["generated_msgid"], acc_mid.as_str());
    assert!(acc_ev["recipients"]
        .as_str()
        .unwrap()
        .contains(&format!("{DAVE} (esterno)")));

    // Nothing else landed anywhere.
    assert_eq!(
        p.mailbox(ALICE).len(),
        4,
        "accettazione + 2 consegna + 1 errore"
    );
    assert_eq!(p.mailbox(BOB).len(), 1);
    assert_eq!(p.mailbox(CAROL).len(), 1);
    assert_eq!(p.stop().map(|s| s.success()), Some(true));
}

#[tokio::test]
async fn implicit_tls_submission_breve_and_sintetica() {
    let ca = TestCa::new();
    let mut p = provider(&ca);
    p.start();

    // breve: the attachment comes back as its hash.
    let attachment = b"%PDF-1.4 fattura numero 42\n".repeat(40);
    let b64 = openssl::base64::encode_block(&attachment);
    let sha256: String = openssl::sha::sha256(&attachment)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let id = pecd::store::spool::unique_suffix();
    let breve_msg = format!(
        "From: {ALICE}\r\nTo: {BOB}\r\nSubject: Fattura\r\nDate: Mon, 23 Nov 2026 10:00:00 +0100\r\n\
         Message-ID: <{id}@client.test>\r\nX-TipoRicevuta: breve\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\n\
         In allegato la fattura.\r\n--b1\r\nContent-Type: application/pdf; name=\"fattura.pdf\"\r\n\
         Content-Disposition: attachment; filename=\"fattura.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n\
         {b64}\r\n--b1--\r\n"
    )
    .into_bytes();
    let reply = p
        .submit_raw(ALICE, &[BOB], &breve_msg, true)
        .await
        .expect("breve submission accepted over implicit TLS");
    let breve_id = identificativo_of(&reply);

    let sintetica_msg = message(
        ALICE,
        &[BOB],
        &[],
        "Sintetica",
        "X-TipoRicevuta: sintetica\r\n",
        "corpo",
    );
    let reply = p
        .submit_raw(ALICE, &[BOB], &sintetica_msg, true)
        .await
        .expect("sintetica submission accepted over implicit TLS");
    let sint_id = identificativo_of(&reply);
    assert_ne!(breve_id, sint_id);

    for (mid, kind, raw) in [
        (&breve_id, ReceiptType::Breve, &breve_msg),
        (&sint_id, ReceiptType::Sintetica, &sintetica_msg),
    ] {
        let busta = p.wait_for("busta", 30, || {
            p.messages_with(BOB, "X-Trasporto", "posta-certificata")
                .into_iter()
                .find(|m| daticert(m).identificativo == *mid)
        });
        check_generated(&p, &busta);
        assert_eq!(
            header(&busta, "X-TipoRicevuta").as_deref(),
            Some(kind.as_str())
        );
        assert_eq!(daticert(&busta).ricevuta, Some(kind));
        let msgid = header(raw, "Message-ID").unwrap();
        assert_eq!(
            postacert(&busta).unwrap(),
            expected_postacert(raw, &msgid, mid)
        );
        let acc = p.wait_for("accettazione", 30, || {
            receipts_for(&p, ALICE, "accettazione", mid)
                .into_iter()
                .next()
        });
        check_generated(&p, &acc);
        let cons = p.wait_for("consegna", 30, || {
            receipts_for(&p, ALICE, "avvenuta-consegna", mid)
                .into_iter()
                .next()
        });
        check_generated(&p, &cons);
        let cd = daticert(&cons);
        assert_eq!(cd.ricevuta, Some(kind));
        assert_eq!(cd.consegna.as_deref(), Some(BOB));
        match kind {
            ReceiptType::Breve => {
                let post =
                    String::from_utf8(postacert(&cons).expect("breve has postacert")).unwrap();
                assert!(post.contains(&sha256), "SHA-256 of the attachment:\n{post}");
                assert!(!post.contains(&b64[..60]), "attachment content removed");
                assert!(post.contains("In allegato la fattura."));
                assert!(post.contains(&format!("Message-ID: <{mid}>")));
            }
            _ => assert!(postacert(&cons).is_none()),
        }
    }
    assert_eq!(p.mailbox(BOB).len(), 2);
    assert_eq!(p.mailbox(ALICE).len(), 4);
}
