//! The `250` promise through `kill -9` and SIGTERM: every acknowledged message
//! is delivered exactly once, nothing is half done, and a shutting-down
//! provider answers `421 4.3.2`.
use crate::common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::flow::*;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill9_during_load_loses_nothing_acknowledged_and_duplicates_nothing() {
    let ca = TestCa::new();
    let (mut a, mut b) = two_providers(&ca, &["alice", "carol"], &["bob"]);
    // Fast retries: Beta's receipts meet a closed port while Alpha is down.
    a.append_config(&fast_timers("1h", "2h"));
    b.append_config(&fast_timers("1h", "2h"));
    a.start();
    b.start();
    let a = Arc::new(Mutex::new(a));
    let (sub_port, ca_pem) = {
        let g = a.lock().unwrap();
        (g.submission, g.ca_pem.clone())
    };
    const CLIENTS: usize = 6;
    const PER_CLIENT: usize = 45;
    let acked: Arc<Mutex<BTreeSet<String>>> = Default::default();
    let first_ack = Arc::new(tokio::sync::Notify::new());
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let acked = acked.clone();
        let first_ack = first_ack.clone();
        let ca_pem = ca_pem.clone();
        tasks.push(tokio::spawn(async move {
            let t = client(sub_port, &ca_pem);
            for i in 0..PER_CLIENT {
                let msg = message(ALICE, &[CAROL, BOB], &[], &format!("c{c} m{i}"), "", "x");
                match send(&t, &msg).await {
                    Ok(reply) => {
                        acked.lock().unwrap().insert(ident_of(&reply));
                        first_ack.notify_one();
                    }
                    Err(_) => return,
                }
            }
        }));
    }
    first_ack.notified().await;
    // A random moment under load: after a random number of acknowledgements
    // (between 30 and 230 of the 270), while every client is mid-stream.
    let nanos = pecd::pec::clock::since_epoch().subsec_nanos() as usize;
    let target = 30 + nanos % 200;
    let t0 = Instant::now();
    while acked.lock().unwrap().len() < target {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "load too slow: {} acknowledged",
            acked.lock().unwrap().len()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let delay = t0.elapsed();
    a.lock().unwrap().kill9();
    for t in tasks {
        t.await.unwrap();
    }
    let acked: BTreeSet<String> = acked.lock().unwrap().clone();
    eprintln!(
        "killed {delay:?} after the first 250 (target {target}); {} acknowledged",
        acked.len()
    );
    assert!(!acked.is_empty());

    let mut a = Arc::try_unwrap(a).ok().unwrap().into_inner().unwrap();
    a.start();
    wait_complete(&a, &b, &acked, 90);
    // Let both queues drain, then judge everything that exists.
    wait_quiet(&[&a, &b]);
    let t = tally(&a, &b);
    for id in &acked {
        assert_eq!(t.get(id), Some(&COMPLETE), "acknowledged {id}");
    }
    for (id, p) in &t {
        assert_eq!(p, &COMPLETE, "{id} (not acknowledged) is half done");
    }
    // The log agrees: one accettazione per message that exists.
    let acc = events_of(&a, "accettazione", None);
    let logged: BTreeSet<String> = acc
        .iter()
        .map(|e| e["identificativo"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(acc.len(), logged.len(), "one accettazione event each");
    assert_eq!(logged, t.keys().cloned().collect::<BTreeSet<_>>());
    // The kills cut group commits short: the hash chain has no hole or fork.
    for p in [&a, &b] {
        let out = p.cli(&["log", "verify"], "");
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{said}");
        assert!(said.contains("PEC log verified"), "{said}");
    }
}

fn client(
    port: u16,
    ca_pem: &std::path::Path,
) -> lettre::AsyncSmtpTransport<lettre::Tokio1Executor> {
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
    let ca = Certificate::from_pem(&std::fs::read(ca_pem).unwrap()).unwrap();
    let params = TlsParameters::builder("127.0.0.1".into())
        .add_root_certificate(ca)
        .build_native()
        .unwrap();
    lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(port)
        .tls(Tls::Required(params))
        .credentials(Credentials::new(ALICE.into(), PASSWORD.into()))
        .timeout(Some(Duration::from_secs(30)))
        .build()
}

async fn send(
    t: &lettre::AsyncSmtpTransport<lettre::Tokio1Executor>,
    raw: &[u8],
) -> Result<String, lettre::transport::smtp::Error> {
    use lettre::AsyncTransport;
    let env = lettre::address::Envelope::new(
        Some(ALICE.parse().unwrap()),
        vec![CAROL.parse().unwrap(), BOB.parse().unwrap()],
    )
    .unwrap();
    t.send_raw(&env, raw)
        .await
        .map(|r| r.message().collect::<Vec<_>>().join(" "))
}

fn read_reply(r: &mut impl BufRead) -> String {
    let mut all = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap() == 0 {
            return all;
        }
        all.push_str(&line);
        if line.len() < 4 || line.as_bytes()[3] != b'-' {
            return all;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_answers_421_exits_within_grace_and_keeps_acknowledged_work() {
    let ca = TestCa::new();
    let (mut a, mut b) = two_providers(&ca, &["alice", "carol"], &["bob"]);
    // Fast retries on both sides: Beta's receipts meet a closed port while Alpha restarts.
    a.append_config(&fast_timers("1h", "2h"));
    b.append_config(&fast_timers("1h", "2h"));
    a.start();
    b.start();
    // An idle session that is open when the signal comes.
    let tcp = std::net::TcpStream::connect(("127.0.0.1", a.submission)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut r = BufReader::new(tcp.try_clone().unwrap());
    let mut w = tcp;
    assert!(read_reply(&mut r).starts_with("220"));
    w.write_all(b"EHLO client.test\r\n").unwrap();
    assert!(read_reply(&mut r).starts_with("250"));

    // Acknowledged work just before the signal.
    let t = client(a.submission, &a.ca_pem);
    let mut acked = Vec::new();
    for i in 0..5 {
        let msg = message(ALICE, &[CAROL, BOB], &[], &format!("prima {i}"), "", "x");
        acked.push(ident_of(&send(&t, &msg).await.unwrap()));
    }
    let pid = a.child.as_ref().unwrap().id() as i32;
    let t0 = Instant::now();
    signal(pid as u32, "TERM");
    // The listeners close once the shutdown has reached the sessions.
    a.wait_for("the shutdown to begin", 10, || {
        a.log().contains("SMTP listener closed").then_some(())
    });
    w.write_all(b"NOOP\r\n").unwrap();
    let reply = read_reply(&mut r);
    assert!(reply.starts_with("421 4.3.2"), "got {reply:?}");
    let st = a.stop().expect("was running");
    assert!(
        t0.elapsed() < Duration::from_secs(5 + 2),
        "exit within shutdown_grace (5 s): took {:?}",
        t0.elapsed()
    );
    assert!(st.success(), "{st}");
    // New connections are refused while it is down, then everything completes.
    a.start();
    let acked: BTreeSet<String> = acked.into_iter().collect();
    wait_complete(&a, &b, &acked, 30);
}

/// Wait until every identificativo in `ids` is complete, or fail with what is not.
fn wait_complete(a: &TestProvider, b: &TestProvider, ids: &BTreeSet<String>, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let t = tally(a, b);
        let missing: Vec<_> = ids
            .iter()
            .filter(|id| t.get(*id) != Some(&COMPLETE))
            .map(|id| (id, t.get(id)))
            .collect();
        if missing.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "acknowledged messages incomplete: {missing:#?}\nqueue A {:#?}\nqueue B {:#?}\nlog A {}",
            queue_jobs(a),
            queue_jobs(b),
            a.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Send exact bytes to a provider's inbound port, as a peer's relay does.
async fn relay_raw(port: u16, from: &str, to: &str, raw: &[u8]) {
    use lettre::AsyncTransport;
    let t = lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(port)
        .tls(lettre::transport::smtp::client::Tls::None)
        .build();
    let env =
        lettre::address::Envelope::new(Some(from.parse().unwrap()), vec![to.parse().unwrap()])
            .unwrap();
    t.send_raw(&env, raw).await.expect("inbound takes it");
}

/// A peer whose `250` was lost (its connection or our process died after the
/// commit) sends the same message again: nothing is delivered or emitted twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_retransmission_delivers_and_emits_nothing_twice() {
    let ca = TestCa::new();
    let (mut a, mut b) = two_providers(&ca, &["alice"], &["bob"]);
    a.start();
    b.start();
    let msg = message(ALICE, &[BOB], &[], "Ritrasmissione", "", "x");
    let id = ident_of(&a.submit_raw(ALICE, &[BOB], &msg, false).await.unwrap());
    let cons = a.wait_messages(ALICE, "X-Ricevuta", "avvenuta-consegna", 1);
    let busta = b.wait_messages(BOB, "X-Trasporto", "posta-certificata", 1);
    a.wait_for("the presa in carico at Alpha", 10, || {
        (!events_of(&a, "ricevuta-presa-in-carico", Some(&id)).is_empty()).then_some(())
    });
    // Beta sends the consegna again; Alpha relays the busta again.
    relay_raw(
        a.inbound,
        "posta-certificata@pec.beta.test",
        ALICE,
        &cons[0],
    )
    .await;
    relay_raw(b.inbound, ALICE, BOB, &busta[0]).await;
    let t0 = Instant::now();
    while events_of(&a, "ricevuta-avvenuta-consegna", Some(&id)).len() < 2 {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "Alpha did not judge the copy: {:#?}",
            queue_jobs(&a)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    b.wait_for("Beta to judge the copy", 10, || {
        (events_of(&b, "busta-ricevuta", Some(&id)).len() >= 2).then_some(())
    });
    wait_quiet(&[&a, &b]);
    assert_eq!(
        a.messages_with(ALICE, "X-Ricevuta", "avvenuta-consegna")
            .len(),
        1,
        "one consegna in the sender's mailbox"
    );
    assert_eq!(b.mailbox(BOB).len(), 1, "one busta for the recipient");
    assert_eq!(
        events_of(&b, "presa-in-carico", Some(&id)).len(),
        1,
        "one presa in carico emitted"
    );
    assert_eq!(events_of(&b, "avvenuta-consegna", Some(&id)).len(), 1);
    assert_eq!(
        events_of(&a, "ricevuta-presa-in-carico", Some(&id)).len(),
        1,
        "Alpha received one presa in carico"
    );
}

/// Peer down, then up: the relays are retried and each message is delivered
/// once, with one busta per recipient and one consegna for the sender.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_down_then_up_delivers_each_message_once() {
    let ca = TestCa::new();
    let (mut a, mut b) = two_providers(&ca, &["alice", "carol"], &["bob"]);
    a.append_config(&fast_timers("1h", "2h"));
    a.start();
    let mut ids = BTreeSet::new();
    for i in 0..3 {
        let msg = message(ALICE, &[CAROL, BOB], &[], &format!("attesa {i}"), "", "x");
        ids.insert(ident_of(
            &a.submit_raw(ALICE, &[CAROL, BOB], &msg, false)
                .await
                .unwrap(),
        ));
    }
    a.wait_for("failed relay attempts while Beta is down", 15, || {
        let jobs = queue_jobs(&a);
        let failing = jobs
            .iter()
            .filter(|j| j["kind"] == "relay" && j["attempts"].as_i64().unwrap_or(0) >= 1)
            .count();
        (failing == 3).then_some(())
    });
    b.start();
    wait_complete(&a, &b, &ids, 30);
    wait_quiet(&[&a, &b]);
    let t = tally(&a, &b);
    assert_eq!(t.len(), 3);
    for id in &ids {
        assert_eq!(t.get(id), Some(&COMPLETE), "{id}");
    }
}

/// A TCP gate in front of a peer's inbound port: it holds the first
/// connection open without a word (a relay in flight for as long as the
/// test likes), and joins every later one to the peer.
struct Gate {
    port: u16,
    held: std::sync::mpsc::Receiver<()>,
}

impl Gate {
    fn to(target: u16) -> Gate {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let (tx, held) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut keep = Vec::new();
            for (i, s) in l.incoming().flatten().enumerate() {
                if i == 0 {
                    keep.push(s);
                    let _ = tx.send(());
                    continue;
                }
                let Ok(peer) = std::net::TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                for (mut from, mut to) in [
                    (s.try_clone().unwrap(), peer.try_clone().unwrap()),
                    (peer, s),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Write);
                    });
                }
            }
        });
        Gate { port, held }
    }
}

/// `kill -9` while a relay is in flight: the job's claim (shown by `queue
/// list` with its node and lease) is the restarted node's own, taken back
/// at start rather than after the lease, and the busta reaches the peer
/// exactly once, with one consegna back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_mid_relay_the_restarted_node_takes_its_claim_back_and_relays_once() {
    let ca = TestCa::new();
    let mut a = TestProvider::prepare(
        &ca,
        &ProviderSpec::new("Alpha PEC S.p.A.", "pec.alpha.test", &["alice"]),
    );
    let mut b = TestProvider::prepare(
        &ca,
        &ProviderSpec::new("Beta PEC S.p.A.", "pec.beta.test", &["bob"]),
    );
    let index = format!("{}{}", a.index_entry(), b.index_entry());
    a.write_index(&index);
    b.write_index(&index);
    b.route_to(&a);
    let gate = Gate::to(b.inbound);
    a.append_config(&pecd::layout::route_entry(
        "pec.beta.test",
        &format!("127.0.0.1:{}", gate.port),
    ));
    // A lease far longer than the test: a restart that waited for the dead
    // run's claim to lapse would time out.
    a.append_config("[cluster]\nnode = \"alpha-1\"\nlease = \"1h\"\n");
    a.start();
    b.start();
    let msg = message(ALICE, &[BOB], &[], "In volo", "", "x");
    let id = ident_of(&a.submit_raw(ALICE, &[BOB], &msg, false).await.unwrap());
    gate.held
        .recv_timeout(Duration::from_secs(20))
        .expect("the relay never connected");
    let relay = queue_jobs(&a)
        .into_iter()
        .find(|j| j["kind"] == "relay")
        .expect("the relay job is listed while it runs");
    assert_eq!(relay["claimed_by"], "alpha-1", "{relay:#}");
    let left = relay["claimed_until"].as_i64().unwrap() - pecd::store::now_ms();
    assert!(left > 3_000_000, "claimed for the lease: {left} ms left");
    let text = String::from_utf8(a.cli(&["queue", "list"], "").stdout).unwrap();
    assert!(
        text.lines().next().unwrap().contains("CLAIMED BY"),
        "{text}"
    );
    assert!(text.contains("alpha-1 +"), "{text}");

    a.kill9();
    a.start();
    b.wait_messages(BOB, "X-Trasporto", "posta-certificata", 1);
    a.wait_messages(ALICE, "X-Ricevuta", "avvenuta-consegna", 1);
    wait_quiet(&[&a, &b]);
    assert_eq!(
        b.messages_with(BOB, "X-Trasporto", "posta-certificata")
            .len(),
        1
    );
    assert_eq!(
        a.messages_with(ALICE, "X-Ricevuta", "avvenuta-consegna")
            .len(),
        1
    );
    assert_eq!(events_of(&a, "inoltro-busta", Some(&id)).len(), 1);
    assert!(a.log().contains("the process died while this job ran"));
    let done: Vec<serde_json::Value> = a
        .cli_json(&["queue", "list", "--all", "--json"])
        .into_iter()
        .filter(|j| j["kind"] == "relay")
        .collect();
    assert_eq!(done.len(), 1);
    assert_eq!(done[0]["state"], "done");
    assert!(
        done[0]["claimed_by"].is_null(),
        "the commit ended the claim"
    );
}
