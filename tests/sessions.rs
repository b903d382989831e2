//! Abuse of sessions (issue 9 §4), against real pecd processes over real
//! TCP and TLS connections: the login throttle queues parallel guesses and
//! counts per address and per network across SMTP and IMAP; connections per
//! IP are capped on every listener; a client trickling bytes is cut off by
//! the whole-command and whole-DATA deadlines; a session full of refused
//! recipients or BAD commands is closed.
use crate::common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;

const DOMAIN: &str = "pec.alpha.test";
const ALICE: &str = "alice@pec.alpha.test";

fn provider(ca: &TestCa, limits: &str) -> TestProvider {
    let mut spec = ProviderSpec::new("Alpha PEC S.p.A.", DOMAIN, &["alice"]);
    spec.extra_config = format!("[limits]\n{limits}\n");
    let mut p = TestProvider::prepare(ca, &spec);
    p.start();
    p
}

/// A line-oriented client on a plain or TLS connection from a chosen loopback address.
struct Client {
    s: RawStream,
    buf: Vec<u8>,
}

fn tcp_from(src: &str, port: u16) -> std::io::Result<std::net::TcpStream> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let tcp = rt.block_on(async {
        let sock = tokio::net::TcpSocket::new_v4()?;
        sock.bind(format!("{src}:0").parse().unwrap())?;
        sock.connect(([127, 0, 0, 1], port).into()).await
    })?;
    let tcp = tcp.into_std()?;
    tcp.set_nonblocking(false)?;
    tcp.set_read_timeout(Some(Duration::from_secs(20)))?;
    Ok(tcp)
}

fn tls(tcp: std::net::TcpStream, ca: &Path) -> std::io::Result<RawStream> {
    use openssl::ssl::{SslConnector, SslMethod};
    let mut b = SslConnector::builder(SslMethod::tls_client()).unwrap();
    b.set_ca_file(ca).unwrap();
    b.build()
        .connect("127.0.0.1", tcp)
        .map(|s| RawStream::Tls(Box::new(s)))
        .map_err(|e| std::io::Error::other(e.to_string()))
}

impl Client {
    /// Connect from `src` (any 127.x address) to `port`, TLS from the first byte if asked.
    fn connect(src: &str, port: u16, implicit_tls: Option<&Path>) -> std::io::Result<Client> {
        let tcp = tcp_from(src, port)?;
        let s = match implicit_tls {
            Some(ca) => tls(tcp, ca)?,
            None => RawStream::Plain(tcp),
        };
        Ok(Client { s, buf: vec![] })
    }

    /// One line without CRLF; `None` once the server has closed.
    fn line(&mut self) -> Option<String> {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let l: Vec<u8> = self.buf.drain(..i + 2).collect();
                return Some(String::from_utf8_lossy(&l[..i]).into_owned());
            }
            let mut tmp = [0u8; 4096];
            match self.s.read(&mut tmp) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&tmp[..n]),
            }
        }
    }

    /// One SMTP reply: its code and last line (0 and "" if closed).
    fn reply(&mut self) -> (u16, String) {
        loop {
            let Some(l) = self.line() else {
                return (0, String::new());
            };
            if l.as_bytes().get(3) != Some(&b'-') {
                return (l.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0), l);
            }
        }
    }

    fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.s.write_all(bytes)?;
        self.s.flush()
    }

    fn cmd(&mut self, line: &str) -> (u16, String) {
        if self.send(format!("{line}\r\n").as_bytes()).is_err() {
            return (0, String::new());
        }
        self.reply()
    }

    /// An IMAP command; the tagged answer line (or `None` if the server closed).
    fn imap(&mut self, tag: &str, line: &str) -> Option<String> {
        self.send(format!("{tag} {line}\r\n").as_bytes()).ok()?;
        loop {
            let l = self.line()?;
            if l.starts_with(&format!("{tag} ")) {
                return Some(l);
            }
        }
    }

    /// Submission over implicit TLS, greeted and EHLO'd.
    fn submission(src: &str, p: &TestProvider) -> Client {
        let mut c = Client::connect(src, p.submissions, Some(&p.ca_pem)).unwrap();
        assert_eq!(c.reply().0, 220);
        assert_eq!(c.cmd("EHLO client.test").0, 250);
        c
    }

    fn auth(&mut self, user: &str, password: &str) -> (u16, String) {
        let token = openssl::base64::encode_block(format!("\0{user}\0{password}").as_bytes());
        self.cmd(&format!("AUTH PLAIN {token}"))
    }

    /// AUTH PLAIN; the reply code and how long the server took to give it.
    fn timed_auth(&mut self, user: &str, password: &str) -> (u16, Duration) {
        let t = Instant::now();
        let (code, _) = self.auth(user, password);
        (code, t.elapsed())
    }
}

fn addr(local: &str) -> String {
    format!("{local}@{DOMAIN}")
}

// ---- login throttle -----------------------------------------------------------------

#[test]
fn parallel_guesses_against_one_address_wait_one_delay_each() {
    let ca = TestCa::new();
    let p = provider(&ca, "login_delay = \"300ms\"\nlogin_max_delay = \"10s\"");
    let victim = addr("victim");
    let mut first = Client::submission("127.0.0.1", &p);
    assert_eq!(first.auth(&victim, "guess-0").0, 535);
    const N: usize = 8;
    let mut clients: Vec<Client> = (0..N)
        .map(|_| Client::submission("127.0.0.1", &p))
        .collect();
    let start = Instant::now();
    let threads: Vec<_> = clients
        .drain(..)
        .enumerate()
        .map(|(i, mut c)| {
            let v = victim.clone();
            std::thread::spawn(move || c.auth(&v, &format!("guess-{}", i + 1)).0)
        })
        .collect();
    let codes: Vec<u16> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let took = start.elapsed();
    assert!(codes.iter().all(|&c| c == 535), "{codes:?}");
    // Each guess waited for the slot of the one before: the first may go at
    // once, the other N-1 each wait one more delay (not all the same one).
    assert!(
        took >= Duration::from_millis(300) * (N as u32 - 1),
        "{N} parallel guesses took only {took:?}"
    );
    assert!(took < Duration::from_secs(20), "{took:?}");
}

#[test]
fn a_success_clears_only_its_own_address_not_the_network() {
    let ca = TestCa::new();
    let p = provider(&ca, "login_delay = \"100ms\"\nlogin_max_delay = \"10s\"");
    let mut c = Client::submission("127.0.0.1", &p);
    for u in ["u1", "u2", "u3"] {
        assert_eq!(c.auth(&addr(u), "wrong").0, 535);
    }
    // An attacker logs in to his own account between guesses ...
    let mut own = Client::submission("127.0.0.1", &p);
    assert_eq!(own.auth(ALICE, PASSWORD).0, 235);
    // ... and sprays on: the network's failures still count (four, then a fifth).
    assert_eq!(c.auth(&addr("v"), "wrong").0, 535);
    let (code, waited) = c.timed_auth(&addr("w"), "wrong");
    assert_eq!(code, 535);
    assert!(
        waited >= Duration::from_millis(500),
        "a fresh address from the same network answered after {waited:?}: the success reset the network"
    );
    // And an address that failed before keeps its delay too.
    let (code, waited) = c.timed_auth(&addr("u1"), "wrong");
    assert_eq!(code, 535);
    assert!(waited >= Duration::from_millis(100), "{waited:?}");
}

#[test]
fn imap_failures_slow_smtp_auth_from_the_same_network() {
    let ca = TestCa::new();
    let p = provider(&ca, "login_delay = \"200ms\"\nlogin_max_delay = \"10s\"");
    // The SMTP session is ready before the IMAP guesses, from another host of the /24.
    let mut smtp = Client::submission("127.0.0.3", &p);
    let mut imap = Client::connect("127.0.0.2", p.imaps, Some(&p.ca_pem)).unwrap();
    assert!(imap.line().unwrap().starts_with("* OK"));
    for (i, u) in ["x1", "x2", "x3"].iter().enumerate() {
        let r = imap
            .imap(&format!("a{i}"), &format!("LOGIN {} wrong", addr(u)))
            .unwrap();
        assert!(r.contains(" NO "), "{r}");
    }
    let (code, waited) = smtp.timed_auth(&addr("y"), "wrong");
    assert_eq!(code, 535);
    assert!(
        waited >= Duration::from_millis(400),
        "SMTP AUTH from 127.0.0.3 answered after {waited:?} despite IMAP failures from 127.0.0.2"
    );
    // The guessed address is slowed over SMTP too.
    let (code, waited) = smtp.timed_auth(&addr("x1"), "wrong");
    assert_eq!(code, 535);
    assert!(waited >= Duration::from_millis(400), "{waited:?}");
}

// ---- connections per IP -------------------------------------------------------------

/// Open a session and read its greeting; `None` if refused or closed.
fn greeted(src: &str, port: u16, ca: Option<&Path>, hello: &str) -> Option<Client> {
    let mut c = Client::connect(src, port, ca).ok()?;
    let l = c.line()?;
    l.starts_with(hello).then_some(c)
}

fn refusal_line(src: &str, port: u16) -> Option<String> {
    let mut c = Client::connect(src, port, None).ok()?;
    let l = c.line();
    assert!(c.line().is_none(), "refusal {l:?} not followed by a close");
    l
}

#[test]
fn every_listener_caps_connections_per_ip() {
    let ca = TestCa::new();
    let p = provider(&ca, "max_connections_per_ip = 3");
    let ca_pem: PathBuf = p.ca_pem.clone();
    let listeners = [
        ("submission", p.submission, None, "220"),
        ("submissions", p.submissions, Some(ca_pem.as_path()), "220"),
        ("inbound", p.inbound, None, "220"),
        ("imap", p.imap, None, "* OK"),
        ("imaps", p.imaps, Some(ca_pem.as_path()), "* OK"),
        ("pop3", p.pop3, None, "+OK"),
        ("pop3s", p.pop3s, Some(ca_pem.as_path()), "+OK"),
    ];
    for (name, port, tls, hello) in listeners {
        let mut held: Vec<Client> = (0..3)
            .map(|i| {
                greeted("127.0.0.1", port, tls, hello)
                    .unwrap_or_else(|| panic!("{name}: connection {i} refused"))
            })
            .collect();
        match tls {
            // A plaintext listener says why before closing.
            None => {
                let l = refusal_line("127.0.0.1", port)
                    .unwrap_or_else(|| panic!("{name}: 4th connection closed silently"));
                let refusal = match hello {
                    "* OK" => "* BYE",
                    "+OK" => "-ERR [SYS/TEMP]",
                    _ => "421 4.7.0",
                };
                assert!(l.starts_with(refusal), "{name}: {l}");
            }
            // Over implicit TLS the 4th connection is closed without a handshake.
            Some(_) => assert!(
                greeted("127.0.0.1", port, tls, hello).is_none(),
                "{name}: 4th connection served"
            ),
        }
        // Another address is not affected ...
        assert!(
            greeted("127.0.0.2", port, tls, hello).is_some(),
            "{name}: 127.0.0.2 refused"
        );
        // ... and a session that ends gives its slot back.
        drop(held.pop());
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(c) = greeted("127.0.0.1", port, tls, hello) {
                held.push(c);
                break;
            }
            assert!(Instant::now() < deadline, "{name}: slot never released");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[test]
fn a_peer_network_gets_its_own_cap_on_the_inbound_listener_only() {
    let ca = TestCa::new();
    let p = provider(
        &ca,
        "max_connections_per_ip = 3\npeer_networks = [\"127.0.0.2\"]\nmax_connections_per_peer = 5",
    );
    // A peer provider's host: five sessions on the reception point, then 421.
    let _peer: Vec<Client> = (0..5)
        .map(|i| {
            greeted("127.0.0.2", p.inbound, None, "220")
                .unwrap_or_else(|| panic!("peer connection {i} refused"))
        })
        .collect();
    let l = refusal_line("127.0.0.2", p.inbound).expect("6th peer connection closed silently");
    assert!(l.starts_with("421 4.7.0"), "{l}");
    // An unknown host keeps the per-IP cap, the peer's sessions notwithstanding.
    let _other: Vec<Client> = (0..3)
        .map(|i| {
            greeted("127.0.0.1", p.inbound, None, "220")
                .unwrap_or_else(|| panic!("connection {i} from 127.0.0.1 refused"))
        })
        .collect();
    let l = refusal_line("127.0.0.1", p.inbound).expect("4th connection closed silently");
    assert!(l.starts_with("421 4.7.0"), "{l}");
    // Peers deliver to the reception point only: on submission the peer's
    // host is a client like any other.
    let _sub: Vec<Client> = (0..3)
        .map(|i| {
            greeted("127.0.0.2", p.submission, None, "220")
                .unwrap_or_else(|| panic!("submission connection {i} refused"))
        })
        .collect();
    let l = refusal_line("127.0.0.2", p.submission).expect("4th submission closed silently");
    assert!(l.starts_with("421 4.7.0"), "{l}");
}

// ---- slowloris ------------------------------------------------------------------------

/// Send `head`, then one byte of `trickle` every 300 ms (never a line end),
/// until the server closes or 12 s pass. Returns the time from the end of
/// `head` to the close and everything the server said after `head`.
fn trickle(mut c: Client, head: &[u8], trickle: u8) -> (Duration, String) {
    c.send(head).unwrap();
    let start = Instant::now();
    let RawStream::Plain(tcp) = &c.s else {
        panic!("plain connections only");
    };
    let mut reader = tcp.try_clone().unwrap();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let d2 = done.clone();
    let t = std::thread::spawn(move || {
        let mut all = vec![];
        let _ = reader.read_to_end(&mut all);
        d2.store(true, std::sync::atomic::Ordering::SeqCst);
        (start.elapsed(), String::from_utf8_lossy(&all).into_owned())
    });
    while !done.load(std::sync::atomic::Ordering::SeqCst)
        && start.elapsed() < Duration::from_secs(12)
    {
        if c.send(&[trickle]).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let RawStream::Plain(tcp) = &c.s else {
        unreachable!()
    };
    let _ = tcp.shutdown(std::net::Shutdown::Both);
    t.join().unwrap()
}

const SLOW: &str = "command_timeout = \"2s\"\ndata_timeout = \"3s\"";

#[test]
fn a_trickled_smtp_command_is_cut_off_at_command_timeout() {
    let ca = TestCa::new();
    let p = provider(&ca, SLOW);
    let mut c = Client::connect("127.0.0.1", p.inbound, None).unwrap();
    assert_eq!(c.reply().0, 220);
    let (took, said) = trickle(c, b"EHLO ", b'x');
    assert!(said.starts_with("421 4.4.2"), "{said:?} after {took:?}");
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(5),
        "{took:?}"
    );
}

#[test]
fn trickled_smtp_data_is_cut_off_at_data_timeout() {
    let ca = TestCa::new();
    let p = provider(&ca, SLOW);
    let mut c = Client::connect("127.0.0.1", p.inbound, None).unwrap();
    assert_eq!(c.reply().0, 220);
    assert_eq!(c.cmd("EHLO peer.test").0, 250);
    assert_eq!(c.cmd("MAIL FROM:<x@pec.beta.test>").0, 250);
    assert_eq!(c.cmd(&format!("RCPT TO:<{ALICE}>")).0, 250);
    assert_eq!(c.cmd("DATA").0, 354);
    // Each byte comes well within command_timeout: only the DATA deadline can end this.
    let (took, said) = trickle(c, b"Subject: slow\r\n\r\n", b'x');
    assert!(said.starts_with("421 4.4.2"), "{said:?} after {took:?}");
    assert!(
        took >= Duration::from_millis(2500) && took < Duration::from_secs(6),
        "{took:?}"
    );
}

#[test]
fn a_trickled_imap_command_is_cut_off_at_command_timeout() {
    let ca = TestCa::new();
    let p = provider(&ca, SLOW);
    let mut c = Client::connect("127.0.0.1", p.imap, None).unwrap();
    assert!(c.line().unwrap().starts_with("* OK"));
    let (took, said) = trickle(c, b"a NOOP", b' ');
    assert!(said.starts_with("* BYE"), "{said:?} after {took:?}");
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(5),
        "{took:?}"
    );
}

#[test]
fn a_trickled_pop3_command_is_cut_off_at_command_timeout() {
    let ca = TestCa::new();
    let p = provider(&ca, SLOW);
    let mut c = Client::connect("127.0.0.1", p.pop3, None).unwrap();
    assert!(c.line().unwrap().starts_with("+OK"));
    let (took, said) = trickle(c, b"NOOP", b' ');
    assert!(
        said.starts_with("-ERR autologout"),
        "{said:?} after {took:?}"
    );
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(5),
        "{took:?}"
    );
}

// ---- bad commands ---------------------------------------------------------------------

#[test]
fn refused_recipients_end_the_session_after_max_bad_commands() {
    let ca = TestCa::new();
    let p = provider(&ca, "max_bad_commands = 5");
    let mut c = Client::connect("127.0.0.1", p.inbound, None).unwrap();
    assert_eq!(c.reply().0, 220);
    assert_eq!(c.cmd("EHLO peer.test").0, 250);
    assert_eq!(c.cmd("MAIL FROM:<x@pec.beta.test>").0, 250);
    for i in 0..5 {
        let (code, text) = c.cmd(&format!("RCPT TO:<user{i}@elsewhere.test>"));
        assert_eq!(code, 550, "{text}");
    }
    let (code, text) = c.cmd("RCPT TO:<user5@elsewhere.test>");
    assert_eq!(code, 421, "{text}");
    assert!(text.starts_with("421 4.7.0"), "{text}");
    assert!(c.line().is_none(), "session not closed after 421");
}

#[test]
fn bad_imap_commands_end_the_session_after_max_bad_commands() {
    let ca = TestCa::new();
    let p = provider(&ca, "max_bad_commands = 5");
    let mut c = Client::connect("127.0.0.1", p.imaps, Some(&p.ca_pem)).unwrap();
    assert!(c.line().unwrap().starts_with("* OK"));
    for i in 0..5 {
        let r = c.imap(&format!("b{i}"), "SELECT INBOX").unwrap();
        assert!(r.contains(" BAD "), "{r}");
    }
    c.send(b"b5 SELECT INBOX\r\n").unwrap();
    let mut rest = vec![];
    while let Some(l) = c.line() {
        rest.push(l);
    }
    assert!(
        rest.iter().any(|l| l.starts_with("* BYE")),
        "no BYE after the limit: {rest:?}"
    );
}

// ---- our relay against a peer's per-IP cap ----------------------------------------------

/// `n` PEC for bob while `b` is down, so that each relay fails once; then
/// `b` starts and `queue retry --all` sends the whole backlog at once.
async fn relay_a_backlog(a: &TestProvider, b: &mut TestProvider, n: usize) {
    let bob = "bob@pec.beta.test";
    let t = a.smtp(ALICE, true);
    for i in 0..n {
        let msg = message(ALICE, &[bob], &[], &format!("backlog {i}"), "", "ciao\r\n");
        let env = lettre::address::Envelope::new(
            Some(ALICE.parse().unwrap()),
            vec![bob.parse().unwrap()],
        )
        .unwrap();
        lettre::AsyncTransport::send_raw(&t, &env, &msg)
            .await
            .unwrap();
    }
    a.wait_for("every relay attempted once", 30, || {
        let failed = queue_jobs(a)
            .into_iter()
            .filter(|j| j["kind"] == "relay" && j["attempts"].as_i64() >= Some(1))
            .count();
        (failed >= n).then_some(())
    });
    b.start();
    let out = a.cli(&["queue", "retry", "--all"], "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    b.wait_messages(bob, "X-Trasporto", "posta-certificata", n);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_to_one_peer_is_relayed_within_its_per_ip_cap() {
    let ca = TestCa::new();
    let (mut a, mut b) = two_providers(&ca, &["alice"], &["bob"]);
    // Only `queue retry` makes a second attempt within the test.
    a.append_config("[queue]\nretry_initial = \"10m\"\nretry_max = \"1h\"\n");
    a.start();
    const N: usize = 30;
    relay_a_backlog(&a, &mut b, N).await;
    assert!(
        !b.log().contains("connection limit reached"),
        "the relay opened more connections than the peer allows per IP"
    );
}

/// Beta's open inbound connections, from its metrics.
fn inbound_connections(p: &TestProvider) -> Option<i64> {
    let out = std::process::Command::new("curl")
        .args(["-s", &format!("http://127.0.0.1:{}/metrics", p.admin)])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("pecd_connections{listener=\"inbound\"} "))
        .and_then(|n| n.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_lists_us_gets_more_relay_connections_than_the_per_ip_cap() {
    let ca = TestCa::new();
    let (mut a, mut b) = two_providers(&ca, &["alice"], &["bob"]);
    a.append_config(
        "[queue]\nretry_initial = \"10m\"\nretry_max = \"1h\"\nmax_connections_per_peer = 30\n",
    );
    // Beta takes 5 connections from an unknown host, 40 from Alpha's.
    b.append_config(
        "[limits]\nmax_connections_per_ip = 5\npeer_networks = [\"127.0.0.0/8\"]\nmax_connections_per_peer = 40\n",
    );
    a.start();
    const N: usize = 40;
    relay_a_backlog(&a, &mut b, N).await;
    // Alpha keeps its connections pooled (idle up to 30 s): Beta still
    // counts every one it opened for the backlog.
    let open = inbound_connections(&b).expect("beta's metrics");
    assert!(
        open > 20 && open <= 30,
        "{open} connections from alpha: want more than the default 20, at most its 30"
    );
    assert!(
        !b.log().contains("connection limit reached"),
        "a connection from the peer network was refused"
    );
}
