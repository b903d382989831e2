//! The login throttle shared by every node (issue 22): two `pecd serve`
//! nodes of one provider on one throwaway PostgreSQL (`common::pg`). Guesses
//! made on one node count on the other, over IMAP and SMTP AUTH alike, as
//! they would on a single node: the next attempt waits for its slot, and
//! one past the queue's cap is refused unchecked.

use crate::common;

use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use common::pg::PgCluster;
use common::*;

const DOMAIN: &str = "pec.alpha.test";
const ALICE: &str = "alice@pec.alpha.test";

/// One node of Alpha on `pg`, named `node`; the users are added once, by
/// the first node, into the shared database.
fn node(ca: &TestCa, pg: &PgCluster, node: &str, users: &[&str]) -> TestProvider {
    let mut spec = ProviderSpec::new("Alpha PEC S.p.A.", DOMAIN, users);
    spec.extra_config = format!(
        "[store]\nbackend = \"postgresql\"\nurl = \"{}\"\npool = 4\n\n\
         [cluster]\nnode = \"{node}\"\n\n\
         [limits]\nlogin_delay = \"1s\"\nlogin_max_delay = \"4s\"\n",
        pg.url()
    );
    let mut p = TestProvider::prepare(ca, &spec);
    p.start();
    p
}

/// A line client over TLS from a chosen loopback address (its network is
/// what the throttle counts besides the account).
struct Client {
    s: RawStream,
    buf: Vec<u8>,
}

impl Client {
    fn connect(src: &str, port: u16, ca: &Path) -> Client {
        use openssl::ssl::{SslConnector, SslMethod};
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let tcp = rt
            .block_on(async {
                let sock = tokio::net::TcpSocket::new_v4()?;
                sock.bind(format!("{src}:0").parse().unwrap())?;
                sock.connect(([127, 0, 0, 1], port).into()).await
            })
            .unwrap()
            .into_std()
            .unwrap();
        tcp.set_nonblocking(false).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut b = SslConnector::builder(SslMethod::tls_client()).unwrap();
        b.set_ca_file(ca).unwrap();
        let s = b.build().connect("127.0.0.1", tcp).unwrap();
        Client {
            s: RawStream::Tls(Box::new(s)),
            buf: vec![],
        }
    }

    fn line(&mut self) -> String {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let l: Vec<u8> = self.buf.drain(..i + 2).collect();
                return String::from_utf8_lossy(&l[..i]).into_owned();
            }
            let mut tmp = [0u8; 4096];
            let n = self.s.read(&mut tmp).unwrap();
            assert!(n > 0, "the server closed the connection");
            self.buf.extend_from_slice(&tmp[..n]);
        }
    }

    fn send(&mut self, line: &str) {
        self.s.write_all(format!("{line}\r\n").as_bytes()).unwrap();
        self.s.flush().unwrap();
    }

    /// Submission over implicit TLS, greeted and EHLO'd.
    fn smtp(src: &str, p: &TestProvider) -> Client {
        let mut c = Client::connect(src, p.submissions, &p.ca_pem);
        assert!(c.smtp_reply().starts_with("220"));
        c.send("EHLO client.test");
        assert!(c.smtp_reply().starts_with("250"));
        c
    }

    fn smtp_reply(&mut self) -> String {
        loop {
            let l = self.line();
            if l.as_bytes().get(3) != Some(&b'-') {
                return l;
            }
        }
    }

    /// AUTH PLAIN: the reply and how long the server took to give it.
    fn auth(&mut self, user: &str, password: &str) -> (String, Duration) {
        let token = openssl::base64::encode_block(format!("\0{user}\0{password}").as_bytes());
        let t = Instant::now();
        self.send(&format!("AUTH PLAIN {token}"));
        let r = self.smtp_reply();
        (r, t.elapsed())
    }

    /// IMAP over implicit TLS, greeted.
    fn imap(src: &str, p: &TestProvider) -> Client {
        let mut c = Client::connect(src, p.imaps, &p.ca_pem);
        assert!(c.line().starts_with("* OK"));
        c
    }

    /// `tag LOGIN user password`: the tagged answer.
    fn login(&mut self, tag: &str, user: &str, password: &str) -> String {
        self.send(&format!("{tag} LOGIN {user} \"{password}\""));
        loop {
            let l = self.line();
            if l.starts_with(&format!("{tag} ")) {
                return l;
            }
        }
    }
}

/// The queued attempts the shared counts hold for `account`.
fn pending(pg: &PgCluster, account: &str) -> i64 {
    pg.psql(
        "pecd",
        &format!(
            "SELECT coalesce(max(pending), 0) FROM login_failures \
             WHERE scope = 'account' AND key = '{account}'"
        ),
    )
    .parse()
    .unwrap()
}

#[test]
fn guesses_on_one_node_delay_and_refuse_the_next_attempt_on_the_other() {
    let pg = PgCluster::start();
    let ca = TestCa::new();
    let one = node(&ca, &pg, "node-1", &["alice"]);
    let two = node(&ca, &pg, "node-2", &[]);

    // What an attempt costs on node 2 with nothing counted against it: the
    // password check alone (a wrong password of an account nobody guessed,
    // from a network nobody guessed from).
    let mut probe = Client::smtp("127.0.3.1", &two);
    let (r, check) = probe.auth("nobody@pec.alpha.test", "wrong");
    assert!(r.starts_with("535"), "{r}");

    // Two wrong passwords for alice over IMAP on node 1 (the second one
    // already queued a delay behind the first).
    let mut imap = Client::imap("127.0.1.1", &one);
    for tag in ["a1", "a2"] {
        let r = imap.login(tag, ALICE, "wrong");
        assert!(r.contains(" NO "), "{r}");
    }
    let failed = Instant::now();

    // Node 2, from another network, with the right password: it waits for
    // alice's slot, two failures (1 s, then 2 s) after the last one, as a
    // single node would make it wait; then lets her in.
    let mut smtp = Client::smtp("127.0.2.1", &two);
    let (r, _) = smtp.auth(ALICE, PASSWORD);
    let waited = failed.elapsed();
    assert!(r.starts_with("235"), "{r}");
    assert!(
        waited >= Duration::from_millis(1_900),
        "node 2 let alice's next attempt in {waited:?} after node 1's second \
         failure (a password check alone takes {check:?}): it did not see them"
    );

    // Her success on node 2 cleared her count for node 1 too.
    assert_eq!(
        pg.psql(
            "pecd",
            &format!("SELECT count(*) FROM login_failures WHERE key = '{ALICE}'")
        ),
        "0"
    );
    let mut again = Client::imap("127.0.4.1", &one);
    let r = again.login("b1", ALICE, PASSWORD);
    assert!(r.contains(" OK "), "{r}");

    // One more wrong password on node 1, then guesses queued there behind
    // it, one second apart, up to the 4 s cap ... (every connection opened
    // first: node 2 must be asked well within the first second.)
    let guessers: Vec<Client> = (1..=4)
        .map(|i| Client::imap(&format!("127.0.5.{i}"), &one))
        .collect();
    let mut late = Client::smtp("127.0.6.1", &two);
    let r = imap.login("a3", ALICE, "wrong");
    assert!(r.contains(" NO "), "{r}");
    let queued: Vec<_> = guessers
        .into_iter()
        .enumerate()
        .map(|(i, mut c)| std::thread::spawn(move || c.login("q", ALICE, &format!("guess {i}"))))
        .collect();
    one.wait_for("node 1 to queue the four guesses", 10, || {
        (pending(&pg, ALICE) == 4).then_some(())
    });
    // ... so node 2 refuses the next attempt at once, right password or
    // not, without checking it: SMTP 454 4.7.0, as one node would.
    let (r, took) = late.auth(ALICE, PASSWORD);
    assert!(r.starts_with("454 4.7.0"), "{r}");
    assert!(took < Duration::from_secs(1), "refused after {took:?}");
    for q in queued {
        let r = q.join().unwrap();
        assert!(r.contains(" NO "), "{r}");
    }
    assert!(one.log().contains("login failed"), "{}", one.log());
}
