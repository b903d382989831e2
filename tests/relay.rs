//! Provider to provider (issue 3): two real pecd processes exchanging PEC on
//! loopback, an ordinary ("esterno") domain served by a plain SMTP sink written
//! here, a fake DNS server for the MX path, a peer that goes down and comes
//! back, and connection reuse toward a busy peer.
use crate::common;

use std::net::UdpSocket;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use pecd::pec::types::{Errore, ReceiptType, RecipientType, Tipo};

// ---- a plain SMTP sink (no TLS) that records what it receives ----------------
// (also the ordinary mailbox of `account::a_new_pec_is_told_at_an_ordinary_address…`)

/// One SMTP transaction as the sink saw it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Txn {
    pub(crate) mail_from: String,
    pub(crate) rcpts: Vec<String>,
    pub(crate) data: Vec<u8>,
}

#[derive(Default)]
struct SinkState {
    txns: Vec<Txn>,
    /// Close the connection after each transaction, without a word.
    hang_up: bool,
    /// Never answer MAIL (a peer that has stopped responding).
    mute_at_mail: bool,
    /// Offer PIPELINING in the EHLO reply.
    pipelining: bool,
    /// Refuse this recipient with 550.
    refuse: Option<String>,
    /// Transactions whose MAIL arrived together with their DATA.
    pipelined_groups: usize,
    /// Sessions ended, their socket closed.
    closed: usize,
}

/// A tiny ESMTP server on 127.0.0.1 run by its own tokio runtime thread (the
/// test thread blocks in `wait_for`, so it must not share a runtime with it).
pub(crate) struct Sink {
    pub(crate) port: u16,
    state: Arc<Mutex<SinkState>>,
}

impl Sink {
    pub(crate) fn start() -> Sink {
        Sink::start_with(false, false)
    }

    fn start_with(hang_up: bool, mute_at_mail: bool) -> Sink {
        Sink::start_state(SinkState {
            hang_up,
            mute_at_mail,
            ..SinkState::default()
        })
    }

    /// A sink that offers PIPELINING, refusing `refuse` if given.
    fn pipelining(refuse: Option<&str>) -> Sink {
        Sink::start_state(SinkState {
            pipelining: true,
            refuse: refuse.map(str::to_string),
            ..SinkState::default()
        })
    }

    fn start_state(state: SinkState) -> Sink {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let port = l.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(state));
        let st = state.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let l = tokio::net::TcpListener::from_std(l).unwrap();
                loop {
                    let Ok((s, _)) = l.accept().await else { return };
                    let st = st.clone();
                    tokio::spawn(async move {
                        sink_session(s, st.clone()).await;
                        st.lock().unwrap().closed += 1;
                    });
                }
            });
        });
        Sink { port, state }
    }

    pub(crate) fn txns(&self) -> Vec<Txn> {
        self.state.lock().unwrap().txns.clone()
    }

    fn wait_closed(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.state.lock().unwrap().closed < n {
            assert!(Instant::now() < deadline, "the sink closed no session");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub(crate) fn wait_txns(&self, n: usize) -> Vec<Txn> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let t = self.txns();
            if t.len() >= n {
                return t;
            }
            assert!(
                Instant::now() < deadline,
                "sink got {} transaction(s), wanted {n}",
                t.len()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn angle_addr(line: &str) -> String {
    line.split_once('<')
        .and_then(|(_, r)| r.split_once('>'))
        .map(|(a, _)| a.to_ascii_lowercase())
        .unwrap_or_default()
}

async fn sink_session(s: tokio::net::TcpStream, st: Arc<Mutex<SinkState>>) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let (r, mut w) = s.into_split();
    let mut r = BufReader::new(r);
    if w.write_all(b"220 sink.test ESMTP\r\n").await.is_err() {
        return;
    }
    let mut cur = Txn::default();
    loop {
        let mut line = Vec::new();
        if r.read_until(b'\n', &mut line).await.unwrap_or(0) == 0 {
            return;
        }
        let text = String::from_utf8_lossy(&line).trim_end().to_string();
        let up = text.to_ascii_uppercase();
        let reply: &[u8] = if up.starts_with("EHLO") {
            if st.lock().unwrap().pipelining {
                b"250-sink.test\r\n250-8BITMIME\r\n250-PIPELINING\r\n250 SIZE 100000000\r\n"
            } else {
                b"250-sink.test\r\n250-8BITMIME\r\n250 SIZE 100000000\r\n"
            }
        } else if up.starts_with("HELO") || up.starts_with("NOOP") {
            b"250 ok\r\n"
        } else if up.starts_with("MAIL FROM:") {
            if st.lock().unwrap().mute_at_mail {
                // Hold the connection open and say nothing, ever.
                while r.read_until(b'\n', &mut Vec::new()).await.unwrap_or(0) > 0 {}
                return;
            }
            cur = Txn {
                mail_from: angle_addr(&text),
                ..Txn::default()
            };
            if r.buffer().windows(6).any(|w| w == b"DATA\r\n") {
                st.lock().unwrap().pipelined_groups += 1;
            }
            b"250 ok\r\n"
        } else if up.starts_with("RCPT TO:") {
            let to = angle_addr(&text);
            if st.lock().unwrap().refuse.as_deref() == Some(to.as_str()) {
                b"550 5.1.1 no such user\r\n"
            } else {
                cur.rcpts.push(to);
                b"250 ok\r\n"
            }
        } else if up == "DATA" && cur.rcpts.is_empty() {
            b"554 5.5.1 no valid recipients\r\n"
        } else if up == "DATA" {
            if w.write_all(b"354 go ahead\r\n").await.is_err() {
                return;
            }
            let mut data = Vec::new();
            loop {
                let mut l = Vec::new();
                if r.read_until(b'\n', &mut l).await.unwrap_or(0) == 0 {
                    return;
                }
                if l == b".\r\n" {
                    break;
                }
                if l.starts_with(b"..") {
                    l.remove(0);
                }
                data.extend_from_slice(&l);
            }
            cur.data = data;
            let hang_up = {
                let mut g = st.lock().unwrap();
                g.txns.push(std::mem::take(&mut cur));
                g.hang_up
            };
            if hang_up {
                let _ = w.write_all(b"250 queued\r\n").await;
                return;
            }
            b"250 queued\r\n"
        } else if up == "RSET" {
            cur = Txn::default();
            b"250 ok\r\n"
        } else if up == "QUIT" {
            let _ = w.write_all(b"221 bye\r\n").await;
            return;
        } else {
            b"502 not implemented\r\n"
        };
        if w.write_all(reply).await.is_err() {
            return;
        }
    }
}

// ---- a fake DNS server answering MX and A for one domain ---------------------

/// Answers `MX <domain>` with `10 mx.<domain>` and `A mx.<domain>` with
/// 127.0.0.1; everything else NXDOMAIN. Counts the questions it got.
struct FakeDns {
    port: u16,
    questions: Arc<Mutex<Vec<(String, u16)>>>,
}

impl FakeDns {
    fn start(domain: &str) -> FakeDns {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = sock.local_addr().unwrap().port();
        let questions = Arc::new(Mutex::new(Vec::new()));
        let q2 = questions.clone();
        let domain = domain.to_ascii_lowercase();
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            loop {
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    return;
                };
                if let Some(resp) = dns_answer(&buf[..n], &domain, &q2) {
                    let _ = sock.send_to(&resp, from);
                }
            }
        });
        FakeDns { port, questions }
    }
}

fn encode_name(name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for label in name.split('.') {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out
}

fn dns_answer(q: &[u8], domain: &str, log: &Mutex<Vec<(String, u16)>>) -> Option<Vec<u8>> {
    if q.len() < 12 {
        return None;
    }
    let mut pos = 12;
    let mut labels = Vec::new();
    loop {
        let len = *q.get(pos)? as usize;
        pos += 1;
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(q.get(pos..pos + len)?).to_ascii_lowercase());
        pos += len;
    }
    let qtype = u16::from_be_bytes([*q.get(pos)?, *q.get(pos + 1)?]);
    let question_end = pos + 4;
    let name = labels.join(".");
    log.lock().unwrap().push((name.clone(), qtype));
    let mx_host = format!("mx.{domain}");
    let rdata: Option<(u16, Vec<u8>)> = if qtype == 15 && name == domain {
        let mut r = vec![0, 10];
        r.extend(encode_name(&mx_host));
        Some((15, r))
    } else if qtype == 1 && name == mx_host {
        Some((1, vec![127, 0, 0, 1]))
    } else {
        None
    };
    let mut resp = Vec::new();
    resp.extend_from_slice(&q[0..2]);
    resp.push(0x81); // response, recursion desired
    resp.push(if rdata.is_some() { 0x80 } else { 0x83 }); // RA; NXDOMAIN when unknown
    resp.extend_from_slice(&[0, 1, 0, rdata.is_some() as u8, 0, 0, 0, 0]);
    resp.extend_from_slice(&q[12..question_end]);
    if let Some((rtype, data)) = rdata {
        resp.extend_from_slice(&[0xC0, 12]);
        resp.extend_from_slice(&rtype.to_be_bytes());
        resp.extend_from_slice(&[0, 1, 0, 0, 0, 60]);
        resp.extend_from_slice(&(data.len() as u16).to_be_bytes());
        resp.extend_from_slice(&data);
    }
    Some(resp)
}

// ---- helpers -------------------------------------------------------------------

const ALICE: &str = "alice@pec.alpha.test";

async fn submit(p: &TestProvider, from: &str, rcpts: &[&str], msg: &[u8]) -> String {
    let reply = p
        .submit_raw(from, rcpts, msg, false)
        .await
        .expect("submission accepted");
    identificativo_in(&reply)
}

/// Messages in `address`'s mailbox with `X-Ricevuta: tipo` about `id`.
fn receipts_for(p: &TestProvider, address: &str, tipo: &str, id: &str) -> Vec<Vec<u8>> {
    p.messages_with(address, "X-Ricevuta", tipo)
        .into_iter()
        .filter(|m| daticert(m).identificativo == id)
        .collect()
}

fn wait_receipts(p: &TestProvider, address: &str, tipo: &str, id: &str, n: usize) -> Vec<Vec<u8>> {
    p.wait_for(&format!("{n} x {tipo} for {id} in {address}"), 30, || {
        let v = receipts_for(p, address, tipo, id);
        (v.len() >= n).then_some(v)
    })
}

/// The busta of `id` in `address`'s mailbox.
fn wait_busta(p: &TestProvider, address: &str, id: &str) -> Vec<u8> {
    p.wait_for(&format!("busta {id} for {address}"), 30, || {
        p.messages_with(address, "X-Trasporto", "posta-certificata")
            .into_iter()
            .find(|m| header(m, "Message-ID").as_deref() == Some(&format!("<{id}>")))
    })
}

fn types_of(d: &pecd::pec::daticert::Daticert) -> Vec<(String, RecipientType)> {
    let mut v: Vec<_> = d
        .destinatari
        .iter()
        .map(|r| (r.address.clone(), r.tipo))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

fn verified(msg: &[u8], ca: &TestCa, what: &str) {
    if let Err(e) = openssl_verify(msg, &ca.pem_path()) {
        panic!("openssl smime -verify rejects the {what}: {e}");
    }
}

// ---- tests ---------------------------------------------------------------------

/// Busta, presa in carico, consegna completa / breve / sintetica, unknown
/// recipient, and one message split over the local provider, the peer and an
/// ordinary domain.
#[tokio::test]
async fn cross_provider_exchange() {
    let ca = TestCa::new();
    let sink = Sink::start();
    let (mut a, mut b) = two_providers(&ca, &["alice", "carol"], &["bob", "dave"]);
    a.append_config(&format!(
        "[[route]]\ndomain = \"esterno.test\"\nnext_hop = \"127.0.0.1:{}\"\n\n[timers]\npreavviso_after = \"3s\"\nexpire_after = \"120s\"\n",
        sink.port
    ));
    a.start();
    b.start();

    // 1. Completa (the default) to the peer.
    let m1 = message(ALICE, &["bob@pec.beta.test"], &[], "Completa", "", "uno");
    let id1 = submit(&a, ALICE, &["bob@pec.beta.test"], &m1).await;
    let busta1 = wait_busta(&b, "bob@pec.beta.test", &id1);
    verified(&busta1, &ca, "busta received by the peer");
    let d = daticert(&busta1);
    assert_eq!(d.tipo, Tipo::PostaCertificata);
    assert_eq!(d.gestore_emittente, "Alpha PEC S.p.A.");
    assert_eq!(
        header(&busta1, "From").unwrap(),
        "\"Per conto di: alice@pec.alpha.test\" <posta-certificata@pec.alpha.test>"
    );
    let cons = wait_receipts(&a, ALICE, "avvenuta-consegna", &id1, 1);
    verified(&cons[0], &ca, "consegna completa");
    let dc = daticert(&cons[0]);
    assert_eq!(dc.gestore_emittente, "Beta PEC S.p.A.");
    assert_eq!(dc.ricevuta, Some(ReceiptType::Completa));
    assert_eq!(dc.consegna.as_deref(), Some("bob@pec.beta.test"));
    // Completa carries the original as delivered (the busta's postacert.eml).
    assert_eq!(postacert_of(&cons[0]), postacert_of(&busta1));
    xmllint_valid(&dc.to_xml()).unwrap();

    // The presa in carico came back to Alpha and was logged against id1 ...
    let presa = a.wait_events("ricevuta-presa-in-carico", 1, |e| {
        e["identificativo"] == id1
    });
    assert!(
        presa[0]["detail"]
            .as_str()
            .unwrap_or("")
            .contains("Beta PEC S.p.A."),
        "{presa:?}"
    );
    // ... Beta logged that it emitted it ...
    b.wait_events("presa-in-carico", 1, |e| e["identificativo"] == id1);
    // ... it is signed (Alpha's spool keeps what arrived) ...
    let spooled: Vec<Vec<u8>> = a
        .spool_files()
        .into_iter()
        .map(|(_, m)| m)
        .filter(|m| header(m, "X-Ricevuta").as_deref() == Some("presa-in-carico"))
        .collect();
    assert!(!spooled.is_empty(), "no presa in carico in Alpha's spool");
    for m in &spooled {
        verified(m, &ca, "presa in carico");
        let dp = daticert(m);
        assert_eq!(dp.tipo, Tipo::PresaInCarico);
        assert_eq!(dp.ricezione, vec!["bob@pec.beta.test".to_string()]);
        assert_eq!(header(m, "To").unwrap(), "posta-certificata@pec.alpha.test");
    }
    // ... and it reached no mailbox.
    // (checked again at the end, once every message of this test has flowed)

    // 2. Breve.
    let m2 = message(
        ALICE,
        &["bob@pec.beta.test"],
        &[],
        "Breve",
        "X-TipoRicevuta: breve\r\n",
        "due",
    );
    let id2 = submit(&a, ALICE, &["bob@pec.beta.test"], &m2).await;
    let cons = wait_receipts(&a, ALICE, "avvenuta-consegna", &id2, 1);
    verified(&cons[0], &ca, "consegna breve");
    assert_eq!(daticert(&cons[0]).ricevuta, Some(ReceiptType::Breve));
    assert!(pecd::pec::classify::classify(&cons[0]).postacert.is_some());

    // 3. Sintetica requested, and Cc => sintetica even when completa is asked.
    let m3 = message(
        ALICE,
        &["bob@pec.beta.test"],
        &[],
        "Sintetica",
        "X-TipoRicevuta: sintetica\r\n",
        "tre",
    );
    let id3 = submit(&a, ALICE, &["bob@pec.beta.test"], &m3).await;
    let m4 = message(
        ALICE,
        &["bob@pec.beta.test"],
        &["dave@pec.beta.test"],
        "Con copia",
        "",
        "quattro",
    );
    let id4 = submit(&a, ALICE, &["bob@pec.beta.test", "dave@pec.beta.test"], &m4).await;
    let cons = wait_receipts(&a, ALICE, "avvenuta-consegna", &id3, 1);
    verified(&cons[0], &ca, "consegna sintetica");
    assert_eq!(daticert(&cons[0]).ricevuta, Some(ReceiptType::Sintetica));
    assert!(pecd::pec::classify::classify(&cons[0]).postacert.is_none());
    let cons = wait_receipts(&a, ALICE, "avvenuta-consegna", &id4, 2);
    for c in &cons {
        verified(c, &ca, "consegna (To / Cc)");
        let d = daticert(c);
        let want = match d.consegna.as_deref() {
            Some("bob@pec.beta.test") => ReceiptType::Completa,
            Some("dave@pec.beta.test") => ReceiptType::Sintetica,
            other => panic!("consegna for {other:?}"),
        };
        assert_eq!(d.ricevuta, Some(want), "{:?}", d.consegna);
    }
    // The peer delivered one busta to each, after one relay transaction.
    wait_busta(&b, "dave@pec.beta.test", &id4);

    // 4. Unknown recipient at the peer.
    let m5 = message(
        ALICE,
        &["nobody@pec.beta.test"],
        &[],
        "Sconosciuto",
        "",
        "5",
    );
    let id5 = submit(&a, ALICE, &["nobody@pec.beta.test"], &m5).await;
    let err = wait_receipts(&a, ALICE, "errore-consegna", &id5, 1);
    verified(&err[0], &ca, "errore-consegna");
    let de = daticert(&err[0]);
    assert_eq!(de.errore, Errore::NoDest);
    assert_eq!(de.consegna.as_deref(), Some("nobody@pec.beta.test"));
    assert!(
        de.errore_esteso
            .as_deref()
            .unwrap_or("")
            .starts_with("5.1.1"),
        "{:?}",
        de.errore_esteso
    );
    assert!(header(&err[0], "Subject")
        .unwrap()
        .starts_with("AVVISO DI MANCATA CONSEGNA"));
    xmllint_valid(&de.to_xml()).unwrap();

    // 5. One message: a local recipient, two at the peer, two esterno.
    let rcpts = [
        "carol@pec.alpha.test",
        "bob@pec.beta.test",
        "dave@pec.beta.test",
        "x@esterno.test",
        "y@esterno.test",
    ];
    let m6 = message(
        ALICE,
        &rcpts[..3],
        &rcpts[3..],
        "Misto",
        "",
        "sei destinatari meno uno",
    );
    let id6 = submit(&a, ALICE, &rcpts, &m6).await;
    let accepted6 = Instant::now();
    let want_types = vec![
        ("bob@pec.beta.test".to_string(), RecipientType::Certificato),
        (
            "carol@pec.alpha.test".to_string(),
            RecipientType::Certificato,
        ),
        ("dave@pec.beta.test".to_string(), RecipientType::Certificato),
        ("x@esterno.test".to_string(), RecipientType::Esterno),
        ("y@esterno.test".to_string(), RecipientType::Esterno),
    ];
    let acc = wait_receipts(&a, ALICE, "accettazione", &id6, 1);
    verified(&acc[0], &ca, "accettazione");
    assert_eq!(types_of(&daticert(&acc[0])), want_types);
    let local = wait_busta(&a, "carol@pec.alpha.test", &id6);
    let remote = wait_busta(&b, "bob@pec.beta.test", &id6);
    wait_busta(&b, "dave@pec.beta.test", &id6);
    for m in [&local, &remote] {
        verified(m, &ca, "busta");
        assert_eq!(types_of(&daticert(m)), want_types);
        xmllint_valid(&daticert(m).to_xml()).unwrap();
    }
    // The sink got the busta once, for both esterno recipients together.
    let txns = sink.wait_txns(1);
    let at_sink: Vec<&Txn> = txns
        .iter()
        .filter(|t| header(&t.data, "Message-ID").as_deref() == Some(&format!("<{id6}>")))
        .collect();
    assert_eq!(at_sink.len(), 1, "{txns:?}");
    let t = at_sink[0];
    let mut got = t.rcpts.clone();
    got.sort();
    assert_eq!(got, vec!["x@esterno.test", "y@esterno.test"]);
    assert_eq!(t.mail_from, ALICE);
    assert_eq!(
        header(&t.data, "X-Trasporto").as_deref(),
        Some("posta-certificata")
    );
    verified(&t.data, &ca, "busta at the esterno sink");
    assert_eq!(types_of(&daticert(&t.data)), want_types);
    assert_eq!(t.data, remote, "the peer and the sink got the same busta");
    // Consegne for the three certified recipients.
    let cons = wait_receipts(&a, ALICE, "avvenuta-consegna", &id6, 3);
    let mut covered: Vec<String> = cons
        .iter()
        .map(|c| daticert(c).consegna.unwrap_or_default())
        .collect();
    covered.sort();
    assert_eq!(
        covered,
        vec![
            "bob@pec.beta.test",
            "carol@pec.alpha.test",
            "dave@pec.beta.test"
        ]
    );
    // Timers only for the certified recipients at the peer; none for esterno.
    let timers: Vec<String> = {
        let db = a.db();
        let mut st = db
            .prepare("SELECT recipient FROM timers WHERE identificativo = ?1 ORDER BY recipient")
            .unwrap();
        st.query_map([&id6], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    assert_eq!(timers, vec!["bob@pec.beta.test", "dave@pec.beta.test"]);
    // Past the 3 s preavviso deadline: still no receipt or notice about the
    // esterno recipients.
    sleep_past(accepted6, Duration::from_secs(3));
    wait_quiet(&[&a, &b]);
    for (_, m) in a.all_mail() {
        if let Some(d) = pecd::pec::classify::classify(&m).daticert {
            if let Some(c) = &d.consegna {
                assert!(!c.ends_with("@esterno.test"), "receipt about {c}");
            }
        }
    }
    for e in a.events("preavviso-errore-consegna") {
        assert!(!e.to_string().contains("for x@esterno.test"), "{e}");
        assert!(!e.to_string().contains("for y@esterno.test"), "{e}");
    }

    // Presa in carico: one per busta at the peer, logged, never in a mailbox.
    for id in [&id1, &id2, &id3, &id4, &id5, &id6] {
        a.wait_events("ricevuta-presa-in-carico", 1, |e| {
            e["identificativo"] == **id
        });
    }
    for (p, m) in a.all_mail().into_iter().chain(b.all_mail()) {
        assert_ne!(
            header(&m, "X-Ricevuta").as_deref(),
            Some("presa-in-carico"),
            "presa in carico delivered to {}",
            p.display()
        );
    }
    // Everything either side generated verifies with openssl.
    for (p, m) in a.all_mail().into_iter().chain(b.all_mail()) {
        if let Err(e) = openssl_verify(&m, &ca.pem_path()) {
            panic!("{}: {e}", p.display());
        }
    }
    a.stop();
    b.stop();
}

/// The peer is down: the relay job stays queued with attempts > 0; when the
/// peer is back, `pecd queue retry --all` delivers.
#[tokio::test]
async fn peer_down_then_up() {
    let ca = TestCa::new();
    let (mut a, mut b) = two_providers(&ca, &["alice"], &["bob"]);
    a.append_config("[queue]\nretry_initial = \"1s\"\nretry_max = \"2s\"\n");
    a.start();
    b.start();
    // A first message while both are up (leaves a pooled connection behind).
    let m = message(ALICE, &["bob@pec.beta.test"], &[], "Prima", "", "su");
    let id0 = submit(&a, ALICE, &["bob@pec.beta.test"], &m).await;
    wait_receipts(&a, ALICE, "avvenuta-consegna", &id0, 1);

    b.stop();
    let m = message(ALICE, &["bob@pec.beta.test"], &[], "Dopo", "", "giu");
    let id = submit(&a, ALICE, &["bob@pec.beta.test"], &m).await;
    let job = a.wait_for("relay job retried", 30, || {
        queue_jobs(&a).into_iter().find(|j| {
            j["kind"] == "relay"
                && j["identificativo"] == id
                && j["state"] == "pending"
                && j["attempts"].as_i64().unwrap_or(0) > 0
        })
    });
    assert_eq!(job["next_hop"], "pec.beta.test");
    assert!(
        job["last_error"].as_str().is_some_and(|e| !e.is_empty()),
        "{job}"
    );
    // Nothing was lost or refused meanwhile.
    assert!(receipts_for(&a, ALICE, "errore-consegna", &id).is_empty());

    b.start();
    let out = a.cli(&["queue", "retry", "--all"], "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let busta = wait_busta(&b, "bob@pec.beta.test", &id);
    verified(&busta, &ca, "busta after the retry");
    let cons = wait_receipts(&a, ALICE, "avvenuta-consegna", &id, 1);
    verified(&cons[0], &ca, "consegna after the retry");
    a.wait_events("inoltro-busta", 1, |e| e["identificativo"] == id);
    a.stop();
    b.stop();
}

/// No `[[route]]`: the next hop comes from the MX record (fake DNS on
/// loopback). Also: toward a provider in the index TLS is required.
#[tokio::test]
async fn mx_lookup_and_required_tls() {
    let ca = TestCa::new();
    let sink = Sink::start();
    let dns = FakeDns::start("mx-only.test");
    let mut spec = ProviderSpec::new("Alpha PEC S.p.A.", "pec.alpha.test", &["alice"]);
    spec.extra_config = format!(
        "[dns]\nnameservers = [\"127.0.0.1:{}\"]\nsmtp_port = {}\n",
        dns.port, sink.port
    );
    let mut a = TestProvider::prepare(&ca, &spec);
    // Gamma is a provider in the index whose next hop (the sink) offers no
    // STARTTLS: required TLS means nothing may be sent there in clear.
    let gamma =
        pecd::certs::generate_signing(&ca.ca, "Gamma PEC S.p.A.", "pec.gamma.test").unwrap();
    let gamma_pem = a.path().join("gamma.pem");
    std::fs::write(&gamma_pem, gamma.cert_pem()).unwrap();
    a.write_index(&format!(
        "{}[[provider]]\nname = \"Gamma PEC S.p.A.\"\ndomains = [\"pec.gamma.test\"]\nreceipt_mailbox = \"posta-certificata@pec.gamma.test\"\ncertificate = \"{}\"\n",
        a.index_entry(),
        gamma_pem.display()
    ));
    a.append_config(&format!(
        "[[route]]\ndomain = \"pec.gamma.test\"\nnext_hop = \"127.0.0.1:{}\"\n",
        sink.port
    ));
    a.start();
    let m = message(ALICE, &["g@pec.gamma.test"], &[], "Senza TLS", "", "no");
    let idg = submit(&a, ALICE, &["g@pec.gamma.test"], &m).await;
    let acc = wait_receipts(&a, ALICE, "accettazione", &idg, 1);
    assert_eq!(
        types_of(&daticert(&acc[0])),
        vec![("g@pec.gamma.test".to_string(), RecipientType::Certificato)]
    );
    let job = failed_attempt(&a, &idg, "relay to Gamma failed for lack of TLS");
    assert_eq!(job["state"], "pending", "a TLS failure is temporary: {job}");
    assert!(
        sink.txns()
            .iter()
            .all(|t| header(&t.data, "Message-ID") != Some(format!("<{idg}>"))),
        "busta sent in clear to a provider in the index"
    );

    let m = message(ALICE, &["z@mx-only.test"], &[], "Via MX", "", "mx");
    let id = submit(&a, ALICE, &["z@mx-only.test"], &m).await;
    let t = sink.wait_txns(1);
    assert_eq!(t.len(), 1, "{t:?}");
    assert_eq!(t[0].rcpts, vec!["z@mx-only.test"]);
    assert_eq!(
        header(&t[0].data, "Message-ID").as_deref(),
        Some(&*format!("<{id}>"))
    );
    verified(&t[0].data, &ca, "busta sent via MX");
    let d = daticert(&t[0].data);
    assert_eq!(
        types_of(&d),
        vec![("z@mx-only.test".to_string(), RecipientType::Esterno)]
    );
    let q = dns.questions.lock().unwrap().clone();
    assert!(q.contains(&("mx-only.test".into(), 15)), "{q:?}");
    assert!(q.contains(&("mx.mx-only.test".into(), 1)), "{q:?}");
    a.wait_events("inoltro-busta", 1, |e| e["identificativo"] == id);
    a.stop();
}

/// Several messages to a busy peer travel over fewer SMTP connections than
/// messages (the relay's connection pool).
#[tokio::test]
async fn connections_to_a_busy_peer_are_reused() {
    let ca = TestCa::new();
    let (mut a, mut b) = two_providers(&ca, &["alice"], &["bob"]);
    a.start();
    b.start();
    let sessions = |p: &TestProvider| p.log().matches("session start").count();
    // The baseline counts the SMTP sessions of the readiness probes
    // (submission and inbound).
    let before = b.wait_for("the readiness probes' sessions", 10, || {
        let n = sessions(&b);
        (n >= 2).then_some(n)
    });
    const N: usize = 8;
    let mut ids = Vec::new();
    for i in 0..N {
        let m = message(
            ALICE,
            &["bob@pec.beta.test"],
            &[],
            &format!("Raffica {i}"),
            "",
            "x",
        );
        ids.push(submit(&a, ALICE, &["bob@pec.beta.test"], &m).await);
    }
    for id in &ids {
        wait_busta(&b, "bob@pec.beta.test", id);
    }
    let used = sessions(&b) - before;
    assert!(
        used < N,
        "{N} bustas to the peer took {used} SMTP connections: no reuse"
    );
    a.stop();
    b.stop();
}

/// The queue row of `id` once an attempt of it has failed.
fn failed_attempt(p: &TestProvider, id: &str, what: &str) -> serde_json::Value {
    p.wait_for(what, 30, || {
        queue_jobs(p)
            .into_iter()
            .find(|j| j["identificativo"] == id && j["attempts"].as_i64().unwrap_or(0) > 0)
    })
}

/// Alpha alone, started, with `plain.test` (an ordinary domain) routed to
/// `sink`; `queue` is the body of a `[queue]` section.
fn alpha_routing_to(ca: &TestCa, sink: &Sink, queue: &str) -> TestProvider {
    let spec = ProviderSpec::new("Alpha PEC S.p.A.", "pec.alpha.test", &["alice"]);
    let mut a = TestProvider::prepare(ca, &spec);
    a.append_config(&format!(
        "[queue]\n{queue}\n[[route]]\ndomain = \"plain.test\"\nnext_hop = \"127.0.0.1:{}\"\n",
        sink.port
    ));
    a.start();
    a
}

/// A pooled connection that the peer has closed meanwhile is not an error:
/// the next message goes out at once on a fresh connection, exactly once.
#[tokio::test]
async fn a_pooled_connection_closed_by_the_peer_is_replaced() {
    let ca = TestCa::new();
    let sink = Sink::start_with(true, false);
    let mut a = alpha_routing_to(&ca, &sink, "");
    let mut ids = Vec::new();
    for i in 1..=2 {
        let m = message(ALICE, &["z@plain.test"], &[], &format!("Uno {i}"), "", "x");
        ids.push(submit(&a, ALICE, &["z@plain.test"], &m).await);
        sink.wait_txns(i);
        // The peer has hung up (the FIN is in Alpha's socket, loopback).
        sink.wait_closed(i);
    }
    let got: Vec<Option<String>> = sink
        .txns()
        .iter()
        .map(|t| header(&t.data, "Message-ID"))
        .collect();
    let want: Vec<Option<String>> = ids.iter().map(|id| Some(format!("<{id}>"))).collect();
    assert_eq!(got, want, "each busta once, in order");
    assert!(
        queue_jobs(&a).is_empty(),
        "nothing left to retry: {:?}",
        queue_jobs(&a)
    );
    a.stop();
}

/// A peer that stops answering does not hold a job (and a worker slot)
/// forever: after `[queue] relay_timeout` it is a temporary failure, retried.
#[tokio::test]
async fn a_silent_peer_is_a_temporary_failure() {
    let ca = TestCa::new();
    let sink = Sink::start_with(false, true);
    let mut a = alpha_routing_to(
        &ca,
        &sink,
        "relay_timeout = \"1s\"\nretry_initial = \"1h\"\n",
    );
    let m = message(ALICE, &["z@plain.test"], &[], "Muto", "", "x");
    let id = submit(&a, ALICE, &["z@plain.test"], &m).await;
    let job = failed_attempt(&a, &id, "relay to the silent peer failed");
    assert_eq!(job["state"], "pending", "{job}");
    assert!(
        job["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("no answer to MAIL")),
        "{job}"
    );
    assert!(sink.txns().is_empty());
    a.stop();
}

/// A peer that offers PIPELINING gets MAIL, RCPT and DATA in one write, and
/// the message exactly once.
#[tokio::test]
async fn a_peer_offering_pipelining_gets_the_envelope_in_one_group() {
    let ca = TestCa::new();
    let sink = Sink::pipelining(None);
    let mut a = alpha_routing_to(&ca, &sink, "");
    let m = message(ALICE, &["z@plain.test"], &[], "In gruppo", "", "x");
    let id = submit(&a, ALICE, &["z@plain.test"], &m).await;
    let txns = sink.wait_txns(1);
    assert_eq!(txns.len(), 1);
    assert_eq!(txns[0].rcpts, vec!["z@plain.test".to_string()]);
    assert_eq!(header(&txns[0].data, "Message-ID"), Some(format!("<{id}>")));
    assert_eq!(sink.state.lock().unwrap().pipelined_groups, 1);
    a.stop();
}

/// A recipient refused inside a pipelined group fails the transaction like
/// a lock-step refusal: nothing is delivered (no message byte follows a
/// refused group) and the refusal is final.
#[tokio::test]
async fn a_refusal_inside_a_pipelined_group_delivers_nothing() {
    let ca = TestCa::new();
    let sink = Sink::pipelining(Some("z@plain.test"));
    let mut a = alpha_routing_to(&ca, &sink, "");
    let m = message(ALICE, &["z@plain.test"], &[], "Rifiutato", "", "x");
    let id = submit(&a, ALICE, &["z@plain.test"], &m).await;
    a.wait_events("inoltro-fallito", 1, |e| e["identificativo"] == id);
    assert!(sink.txns().is_empty(), "{:?}", sink.txns());
    // The relay is not retried (the notice to the sender may still be on
    // its way to her box: that is a mailbox job, not a retry).
    let pending: Vec<serde_json::Value> = queue_jobs(&a)
        .into_iter()
        .filter(|j| j["identificativo"] == id && j["kind"] == "relay")
        .collect();
    assert!(pending.is_empty(), "nothing left to retry: {pending:?}");
    a.stop();
}

/// A peer that refuses the busta for good (5xx): the relay stops at once and
/// the sender gets a signed avviso di mancata consegna naming the refusal;
/// the recipient's timers are closed, so no time-limit notice follows.
#[tokio::test]
async fn permanent_refusal_by_a_peer_is_reported_to_the_sender() {
    let ca = TestCa::new();
    let (mut a, mut b) = two_providers(&ca, &["alice"], &["bob"]);
    a.append_config("[timers]\npreavviso_after = \"3s\"\nexpire_after = \"6s\"\n");
    // Beta takes nothing bigger than 3 kB: the busta of a 4 kB message is
    // refused with 552 at MAIL FROM SIZE= or at the end of DATA.
    b.append_config("[limits]\nmax_message_size = \"3KB\"\n");
    a.start();
    b.start();
    let big = "x".repeat(4000);
    let m = message(
        ALICE,
        &["bob@pec.beta.test"],
        &[],
        "Troppo grande",
        "",
        &big,
    );
    let id = submit(&a, ALICE, &["bob@pec.beta.test"], &m).await;
    let accepted = Instant::now();
    let notice = wait_receipts(&a, ALICE, "errore-consegna", &id, 1);
    verified(&notice[0], &ca, "notice of a permanent refusal");
    let d = daticert(&notice[0]);
    assert_eq!(d.consegna.as_deref(), Some("bob@pec.beta.test"));
    let esteso = d.errore_esteso.unwrap_or_default();
    assert!(
        esteso.contains("552"),
        "the peer's reply is quoted: {esteso}"
    );
    a.wait_events("inoltro-fallito", 1, |e| e["identificativo"] == id);
    let pending: Vec<serde_json::Value> = queue_jobs(&a)
        .into_iter()
        .filter(|j| j["identificativo"] == id)
        .collect();
    assert!(pending.is_empty(), "nothing left to retry: {pending:?}");
    // Past both deadlines: the closed recipient gets no time-limit notice.
    sleep_past(accepted, Duration::from_secs(6));
    wait_quiet(&[&a, &b]);
    assert!(receipts_for(&a, ALICE, "preavviso-errore-consegna", &id).is_empty());
    assert!(b.mailbox("bob@pec.beta.test").is_empty());
    a.stop();
    b.stop();
}
