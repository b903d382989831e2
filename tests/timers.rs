//! The 12 h / 24 h non-delivery timers with second-scale durations: a dead
//! peer, a peer that only takes charge, esterno recipients, a restart between
//! arming and firing, and a peer's own final notice (as Aruba sends it).
use crate::common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use lettre::address::Envelope;
use lettre::transport::smtp::client::Tls;
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use pecd::pec::clock::ItalianTime;
use pecd::pec::daticert::Certified;
use pecd::pec::envelope::Provider;
use pecd::pec::ids::RandomIds;
use pecd::pec::receipt::{self, Emitter, Preavviso};
use pecd::smtp::{Backend, Envelope as SmtpEnvelope, Mode, Reply, SessionInfo, SmtpConfig};

const SUP: &str = "AVVISO DI MANCATA CONSEGNA PER SUP. TEMPO MASSIMO: ";

fn is_final(m: &[u8]) -> bool {
    daticert(m)
        .errore_esteso
        .is_some_and(|e| e.trim_start().starts_with("5.4.1"))
}

async fn submit(a: &TestProvider, to: &str, subject: &str) -> String {
    let msg = message("alice@pec.alpha.test", &[to], &[], subject, "", "Ciao");
    let reply = a
        .submit_raw("alice@pec.alpha.test", &[to], &msg, false)
        .await
        .expect("submission accepted");
    ident_of(&reply)
}

#[tokio::test]
async fn dead_peer_gets_one_preavviso_then_one_final_notice_esterno_none() {
    let ca = TestCa::new();
    let mut spec = ProviderSpec::new("Alpha PEC S.p.A.", "pec.alpha.test", &["alice"]);
    spec.extra_config = fast_timers("2s", "5s");
    let mut a = TestProvider::prepare(&ca, &spec);
    // Beta is in the index (certified) but never runs: its route is a closed port.
    let b = TestProvider::prepare(
        &ca,
        &ProviderSpec::new("Beta PEC S.p.A.", "pec.beta.test", &["bob"]),
    );
    a.write_index(&format!("{}{}", a.index_entry(), b.index_entry()));
    route_dead(&a, "pec.beta.test");
    route_dead(&a, "esterno.test");
    a.start();
    let t0 = Instant::now();
    let id1 = submit(&a, "bob@pec.beta.test", "Verso un gestore spento").await;
    let id2 = submit(&a, "carl@esterno.test", "Verso una casella esterna").await;

    let notices = a.wait_for("preavviso and final notice", 20, || {
        let m = receipts_for(
            &a,
            "alice@pec.alpha.test",
            "preavviso-errore-consegna",
            &id1,
        );
        (m.len() >= 2).then_some(m)
    });
    assert!(
        t0.elapsed() >= Duration::from_secs(4),
        "final notice too early"
    );
    let (warn, fin): (Vec<_>, Vec<_>) = notices.iter().partition(|m| !is_final(m));
    assert_eq!(warn.len(), 1, "exactly one 12 h warning");
    assert_eq!(fin.len(), 1, "exactly one final notice");
    for m in &notices {
        assert_eq!(
            header(m, "Subject").unwrap(),
            format!("{SUP}Verso un gestore spento")
        );
        openssl_verify(m, &a.ca_pem).expect("notice verifies with openssl");
        xmllint_valid(&daticert(m).to_xml()).expect("daticert valid");
        assert_eq!(
            daticert(m).consegna.as_deref(),
            Some("bob@pec.beta.test"),
            "notice names the recipient"
        );
    }
    assert!(daticert(warn[0]).errore_esteso.is_none());

    // The relay of the busta ends with the final notice; it stays ended.
    a.wait_for("relay job of the expired busta to end", 10, || {
        let pending = queue_jobs(&a)
            .into_iter()
            .filter(|j| j["identificativo"] == id1.as_str() && j["kind"] == "relay")
            .count();
        (pending == 0).then_some(())
    });
    // Nothing else is emitted, for either message, once Alpha is quiet
    // (the esterno relay may still wait on its dead route).
    wait_quiet_but(&[&a], |j| j["identificativo"] == id2.as_str());
    assert_eq!(
        receipts_for(
            &a,
            "alice@pec.alpha.test",
            "preavviso-errore-consegna",
            &id1
        )
        .len(),
        2
    );
    assert!(
        receipts_for(
            &a,
            "alice@pec.alpha.test",
            "preavviso-errore-consegna",
            &id2
        )
        .is_empty(),
        "no timer runs for an esterno recipient"
    );
    assert!(events_of(&a, "preavviso-errore-consegna", Some(&id2)).is_empty());
    assert_eq!(
        events_of(&a, "preavviso-errore-consegna", Some(&id1)).len(),
        2
    );
}

/// An ordinary (`esterno`) recipient the relay cannot reach for good
/// (issue 20): the sender gets a plain RFC 3464 notice — not signed, no
/// `X-Ricevuta` — naming the recipient and the reason, the log records
/// `mancata-consegna-esterno`, and the sent status says `errore`. Both ways
/// a relay ends for good: refused at once (`5.4.4` no route) and out of time
/// (a dead host past the 24 h limit). A certified recipient past the limit
/// gets its 24 h notice and no such notice.
#[tokio::test]
async fn an_ordinary_recipient_not_reached_is_told_to_the_sender() {
    let ca = TestCa::new();
    let mut spec = ProviderSpec::new("Alpha PEC S.p.A.", "pec.alpha.test", &["alice"]);
    spec.extra_config = format!("{}\n[dns]\nmx_lookups = false\n", fast_timers("2s", "4s"));
    let mut a = TestProvider::prepare(&ca, &spec);
    let b = TestProvider::prepare(
        &ca,
        &ProviderSpec::new("Beta PEC S.p.A.", "pec.beta.test", &["bob"]),
    );
    a.write_index(&format!("{}{}", a.index_entry(), b.index_entry()));
    route_dead(&a, "pec.beta.test");
    route_dead(&a, "dead.example");
    a.start();
    let alice = "alice@pec.alpha.test";
    // No route to example.org at all: refused for good at once.
    let refused = message(alice, &["carl@example.org"], &[], "Senza strada", "", "x");
    let reply = a
        .submit_raw(alice, &["carl@example.org"], &refused, false)
        .await
        .unwrap();
    let id1 = ident_of(&reply);
    // A dead host and a dead certified provider: both until the time limit.
    let rcpts = ["dora@dead.example", "bob@pec.beta.test"];
    let late = message(alice, &rcpts, &[], "Fuori tempo", "", "y");
    let reply = a.submit_raw(alice, &rcpts, &late, false).await.unwrap();
    let id2 = ident_of(&reply);

    let notice_for = |rcpt: &str| {
        a.wait_for(&format!("the notice for {rcpt}"), 30, || {
            a.messages_with(alice, "X-Pecd-Notice", "mancata-consegna-esterno")
                .into_iter()
                .find(|m| {
                    String::from_utf8_lossy(m).contains(&format!("Final-Recipient: rfc822; {rcpt}"))
                })
        })
    };
    for (rcpt, id, status, why) in [
        ("carl@example.org", &id1, "5.4.4", "no route to example.org"),
        (
            "dora@dead.example",
            &id2,
            "5.",
            "not delivered within the time limit",
        ),
    ] {
        let n = notice_for(rcpt);
        let text = String::from_utf8_lossy(&n).into_owned();
        assert!(header(&n, "X-Ricevuta").is_none(), "{rcpt}: not a receipt");
        assert!(
            header(&n, "Content-Type")
                .unwrap()
                .starts_with("multipart/report; report-type=delivery-status"),
            "{rcpt}"
        );
        assert!(
            openssl_verify(&n, &a.ca_pem).is_err(),
            "{rcpt}: never signed"
        );
        assert!(text.contains("NON CERTIFICATO") && text.contains("NOT CERTIFIED"));
        assert!(text.contains(&format!("Status: {status}")), "{text}");
        assert!(text.contains(why), "{rcpt}: {text}");
        assert!(
            text.contains(id.as_str()),
            "{rcpt}: names the identificativo"
        );
        let logged = events_of(&a, "mancata-consegna-esterno", Some(id));
        assert_eq!(logged.len(), 1, "{rcpt}: {logged:?}");
        assert_eq!(logged[0]["recipients"], rcpt);
        assert!(logged[0]["error"].as_str().unwrap().contains(why));
    }
    // Bob, certified, got his 24 h notice from the timers, and no notice
    // of this kind; no errore-consegna either.
    let fin = a.wait_for("bob's final notice", 20, || {
        receipts_for(&a, alice, "preavviso-errore-consegna", &id2)
            .into_iter()
            .find(|m| is_final(m))
    });
    assert_eq!(
        daticert(&fin).consegna.as_deref(),
        Some("bob@pec.beta.test")
    );
    assert!(receipts_for(&a, alice, "errore-consegna", &id2).is_empty());
    assert_eq!(
        a.messages_with(alice, "X-Pecd-Notice", "mancata-consegna-esterno")
            .len(),
        2
    );
    // The sent status: errore with the reason for the ordinary recipients.
    let mut web = common::web::Http::new(a.web, &a.ca_pem);
    web.login(alice, PASSWORD);
    for (msg, rcpt, why) in [
        (&refused, "carl@example.org", "5.4.4"),
        (&late, "dora@dead.example", "time limit"),
    ] {
        let msgid = header(msg, "Message-ID").unwrap();
        let r = web.get(&format!("/api/v1/sent/{}", common::web::enc(&msgid)));
        assert_eq!(r.status, 200, "{}", r.text());
        let j = r.json();
        let row = j["recipients"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["address"] == rcpt)
            .unwrap_or_else(|| panic!("{rcpt} in {j:#}"))
            .clone();
        assert_eq!(row["state"], "errore", "{j:#}");
        assert!(row["error"].as_str().unwrap().contains(why), "{j:#}");
    }
    a.stop();
}

#[tokio::test]
async fn timer_armed_before_a_restart_fires_once_after_it() {
    let ca = TestCa::new();
    let mut spec = ProviderSpec::new("Alpha PEC S.p.A.", "pec.alpha.test", &["alice"]);
    spec.extra_config = fast_timers("2s", "60s");
    let mut a = TestProvider::prepare(&ca, &spec);
    let b = TestProvider::prepare(
        &ca,
        &ProviderSpec::new("Beta PEC S.p.A.", "pec.beta.test", &["bob"]),
    );
    a.write_index(&format!("{}{}", a.index_entry(), b.index_entry()));
    route_dead(&a, "pec.beta.test");
    a.start();
    let t0 = Instant::now();
    let id = submit(&a, "bob@pec.beta.test", "Riavvio").await;
    a.wait_messages("alice@pec.alpha.test", "X-Ricevuta", "accettazione", 1);
    let st = a.stop().expect("was running");
    assert!(st.success(), "clean exit on SIGTERM: {st}");
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "stopped before the timer was due"
    );
    assert!(receipts_for(&a, "alice@pec.alpha.test", "preavviso-errore-consegna", &id).is_empty());
    std::thread::sleep(Duration::from_secs(3).saturating_sub(t0.elapsed()));
    a.start();
    a.wait_for("the warning after restart", 15, || {
        let m = receipts_for(&a, "alice@pec.alpha.test", "preavviso-errore-consegna", &id);
        (!m.is_empty()).then_some(())
    });
    // The relay to the dead route stays.
    wait_quiet_but(&[&a], |j| j["kind"] == "relay");
    let m = receipts_for(&a, "alice@pec.alpha.test", "preavviso-errore-consegna", &id);
    assert_eq!(m.len(), 1, "fires exactly once");
    assert!(!is_final(&m[0]));
    openssl_verify(&m[0], &a.ca_pem).unwrap();
}

/// A peer that takes charge of every busta and never delivers it; for a
/// subject containing "Aruba" it also sends its own final 5.4.1 notice.
struct LazyPeer {
    signer: pecd::pec::smime::Signer,
    alpha_inbound: u16,
}

impl LazyPeer {
    async fn send(&self, from: &str, to: &str, raw: Vec<u8>) {
        let t = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
            .port(self.alpha_inbound)
            .tls(Tls::None)
            .build();
        let env = Envelope::new(
            Some(from.parse::<Address>().unwrap()),
            vec![to.parse::<Address>().unwrap()],
        )
        .unwrap();
        t.send_raw(&env, &raw)
            .await
            .expect("alpha takes the receipt");
    }
}

impl Backend for LazyPeer {
    async fn authenticate(&self, _: &SessionInfo, _: &str, _: &str) -> Result<String, Reply> {
        Err(Reply::auth_mechanism_unsupported())
    }
    async fn mail_from(&self, _: &SessionInfo, _: &str) -> Result<(), Reply> {
        Ok(())
    }
    async fn rcpt_to(&self, _: &SessionInfo, _: &SmtpEnvelope, _: &str) -> Result<(), Reply> {
        Ok(())
    }
    async fn data(&self, _: &SessionInfo, env: &SmtpEnvelope, message: Vec<u8>) -> Reply {
        let d = daticert(&message);
        let c = Certified::from(&d);
        let p = Provider {
            name: "Beta PEC S.p.A.".into(),
            domain: "pec.beta.test".into(),
        };
        let ids = RandomIds;
        let now = pecd::pec::clock::since_epoch().as_secs() as i64;
        let e = Emitter {
            provider: &p,
            ids: &ids,
            when: ItalianTime::from_unix(now),
        };
        let presa =
            receipt::presa_in_carico(&e, &c, "posta-certificata@pec.alpha.test", &env.rcpt_to);
        let signed = self
            .signer
            .sign(&presa, &pecd::pec::ids::boundary(&ids))
            .unwrap();
        self.send(
            "posta-certificata@pec.beta.test",
            "posta-certificata@pec.alpha.test",
            signed,
        )
        .await;
        if c.oggetto_str().contains("Aruba") {
            let fin = receipt::preavviso(&e, &c, &env.rcpt_to[0], Preavviso::Ore24);
            let signed = self
                .signer
                .sign(&fin, &pecd::pec::ids::boundary(&ids))
                .unwrap();
            self.send("posta-certificata@pec.beta.test", &c.mittente, signed)
                .await;
        }
        Reply::ok()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presa_in_carico_stops_only_the_warning_and_peer_final_notice_is_final() {
    let ca = TestCa::new();
    let mut spec = ProviderSpec::new("Alpha PEC S.p.A.", "pec.alpha.test", &["alice"]);
    spec.extra_config = fast_timers("2s", "5s");
    let mut a = TestProvider::prepare(&ca, &spec);
    let b = TestProvider::prepare(
        &ca,
        &ProviderSpec::new("Beta PEC S.p.A.", "pec.beta.test", &["bob"]),
    );
    a.write_index(&format!("{}{}", a.index_entry(), b.index_entry()));
    // The lazy peer speaks STARTTLS with a certificate from the test CA.
    let certs = b.path().join("certs");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut cfg = SmtpConfig::new("mx.pec.beta.test", Mode::Inbound);
    cfg.tls = Some(
        pecd::tls::acceptor_from_files(&certs.join("tls.pem"), &certs.join("tls.key")).unwrap(),
    );
    let signer = pecd::pec::smime::Signer::from_pem(
        &std::fs::read(certs.join("signing.pem")).unwrap(),
        &std::fs::read(certs.join("signing.key")).unwrap(),
        &ca.pem(),
    )
    .unwrap();
    let peer = Arc::new(LazyPeer {
        signer,
        alpha_inbound: a.inbound,
    });
    let (_stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(pecd::smtp::serve(listener, Arc::new(cfg), peer, stop_rx));
    a.append_config(&format!(
        "[[route]]\ndomain = \"pec.beta.test\"\nnext_hop = \"127.0.0.1:{port}\"\n"
    ));
    a.start();

    let t0 = Instant::now();
    let id1 = submit(&a, "bob@pec.beta.test", "Solo presa in carico").await;
    let id2 = submit(&a, "bob@pec.beta.test", "Come fa Aruba").await;
    a.wait_for("two presa in carico received", 10, || {
        let n = events_of(&a, "ricevuta-presa-in-carico", None).len();
        (n >= 2).then_some(())
    });

    // The peer's own 5.4.1 notice is recorded as final and closes the recipient.
    let fin2 = a.wait_for(
        "mancata-consegna-24h for the Aruba-style notice",
        10,
        || {
            let e = events_of(&a, "mancata-consegna-24h", Some(&id2));
            (!e.is_empty()).then_some(e)
        },
    );
    assert_eq!(fin2.len(), 1);
    assert!(fin2[0]["error"].as_str().unwrap().starts_with("5.4.1"));

    let fin1 = a.wait_for("our final notice for the first message", 15, || {
        let m = receipts_for(
            &a,
            "alice@pec.alpha.test",
            "preavviso-errore-consegna",
            &id1,
        );
        (!m.is_empty()).then_some(m)
    });
    assert!(t0.elapsed() >= Duration::from_secs(4));
    wait_quiet(&[&a]);
    let ours1 = receipts_for(
        &a,
        "alice@pec.alpha.test",
        "preavviso-errore-consegna",
        &id1,
    );
    assert_eq!(ours1.len(), 1, "no 12 h warning after a presa in carico");
    assert!(is_final(&fin1[0]));
    assert!(header(&fin1[0], "Subject").unwrap().starts_with(SUP));
    openssl_verify(&fin1[0], &a.ca_pem).unwrap();
    assert_eq!(
        events_of(&a, "preavviso-errore-consegna", Some(&id1)).len(),
        1
    );
    // Message 2: only the peer's notice (signed by Beta), none from us.
    let m2 = receipts_for(
        &a,
        "alice@pec.alpha.test",
        "preavviso-errore-consegna",
        &id2,
    );
    assert_eq!(m2.len(), 1, "the peer's notice only");
    assert_eq!(daticert(&m2[0]).gestore_emittente, "Beta PEC S.p.A.");
    assert!(events_of(&a, "preavviso-errore-consegna", Some(&id2)).is_empty());
}
