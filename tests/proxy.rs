//! `[listen] proxy_protocol = true`: a TCP load balancer (HAProxy with
//! `send-proxy-v2`) in front. The tests play the balancer: each connection
//! to a real daemon on 127.0.0.1 starts with a PROXY protocol v2 header
//! claiming another loopback address, which the daemon must use for its
//! caps, its login throttle and its logs.

use crate::common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;

const ALPHA: &str = "pec.alpha.test";

/// A v2 PROXY header for a TCP/IPv4 client at `src`:`port` (to 127.0.0.1:25).
fn header(src: [u8; 4], port: u16) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.extend_from_slice(&[0x21, 0x11, 0, 12]);
    h.extend_from_slice(&src);
    h.extend_from_slice(&[127, 0, 0, 1]);
    h.extend_from_slice(&port.to_be_bytes());
    h.extend_from_slice(&25u16.to_be_bytes());
    h
}

/// A v2 LOCAL header, as HAProxy sends for its own health checks.
fn local() -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.extend_from_slice(&[0x20, 0x00, 0, 0]);
    h
}

/// Alpha with `users`, `extra` TOML and, if `proxy`, `[listen] proxy_protocol = true`; started.
fn alpha(ca: &TestCa, users: &[&str], extra: &str, proxy: bool) -> TestProvider {
    let mut spec = ProviderSpec::new("Alpha PEC S.p.A.", ALPHA, users);
    spec.extra_config = extra.into();
    let mut p = TestProvider::prepare(ca, &spec);
    if proxy {
        let cfg = std::fs::read_to_string(p.config_path()).unwrap();
        let cfg = cfg.replacen("[listen]\n", "[listen]\nproxy_protocol = true\n", 1);
        std::fs::write(p.config_path(), cfg).unwrap();
    }
    p.start();
    p
}

trait Rw: Read + Write + Send {}
impl<T: Read + Write + Send> Rw for T {}

/// A connection as the balancer opens it: the header (if any), then TLS
/// (if asked), then lines.
struct Conn {
    s: Box<dyn Rw>,
    buf: Vec<u8>,
}

fn tcp(port: u16) -> TcpStream {
    let t = TcpStream::connect(("127.0.0.1", port)).unwrap();
    t.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    t
}

fn tls(t: TcpStream, ca: &Path) -> Result<Box<dyn Rw>, String> {
    use openssl::ssl::{SslConnector, SslMethod};
    let mut b = SslConnector::builder(SslMethod::tls_client()).unwrap();
    b.set_ca_file(ca).unwrap();
    let mut c = b.build().configure().unwrap();
    // The test certificate names mx.<domain>, not 127.0.0.1.
    c.set_verify_hostname(false);
    c.connect("localhost", t)
        .map(|s| Box::new(s) as Box<dyn Rw>)
        .map_err(|e| e.to_string())
}

impl Conn {
    fn open(port: u16, first: &[u8], ca: Option<&Path>) -> Conn {
        let mut t = tcp(port);
        t.write_all(first).unwrap();
        let s: Box<dyn Rw> = match ca {
            Some(ca) => tls(t, ca).unwrap(),
            None => Box::new(t),
        };
        Conn { s, buf: vec![] }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).unwrap();
        self.s.flush().unwrap();
    }

    /// One line without its CRLF; `None` when the server closed first.
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

    /// One SMTP reply: its code and last line (code 0: closed).
    fn reply(&mut self) -> (u16, String) {
        loop {
            let Some(l) = self.line() else {
                return (0, "closed".into());
            };
            if l.as_bytes().get(3) != Some(&b'-') {
                return (l.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0), l);
            }
        }
    }

    fn cmd(&mut self, line: &str) -> (u16, String) {
        self.send(format!("{line}\r\n").as_bytes());
        self.reply()
    }
}

fn auth_plain(user: &str, password: &str) -> String {
    let token = openssl::base64::encode_block(format!("\0{user}\0{password}").as_bytes());
    format!("AUTH PLAIN {token}")
}

/// A submissions session claiming `src`, greeted and past EHLO.
fn submissions(p: &TestProvider, src: [u8; 4]) -> Conn {
    let mut c = Conn::open(p.submissions, &header(src, 40000), Some(&p.ca_pem));
    assert_eq!(c.reply().0, 220);
    assert_eq!(c.cmd("EHLO client.test").0, 250);
    c
}

/// Everything the server sends before it closes, and how long it took.
fn drain(mut t: TcpStream) -> (Vec<u8>, Duration) {
    let t0 = Instant::now();
    let mut got = vec![];
    let _ = t.read_to_end(&mut got);
    (got, t0.elapsed())
}

fn log_lines(p: &TestProvider, all: &[&str]) -> Vec<String> {
    p.log()
        .lines()
        .filter(|l| all.iter().all(|w| l.contains(w)))
        .map(str::to_string)
        .collect()
}

#[test]
fn smtp_logins_are_throttled_and_logged_under_the_address_the_header_carries() {
    let ca = TestCa::new();
    let p = alpha(
        &ca,
        &["alice"],
        "[limits]\nlogin_delay = \"3s\"\nlogin_max_delay = \"3s\"\n",
        true,
    );
    let alice = format!("alice@{ALPHA}");
    // Sessions ready before the first guess, so that what follows happens
    // well within one delay of it.
    let mut three: Vec<Conn> = (0..3).map(|_| submissions(&p, [127, 0, 0, 77])).collect();
    let mut near = submissions(&p, [127, 0, 0, 78]);
    let mut far = submissions(&p, [127, 0, 9, 9]);
    // Three wrong passwords at once from 127.0.0.77: the first is checked,
    // the second queues one delay behind it, the third would queue two,
    // longer than login_max_delay: refused at once.
    let (tx, rx) = mpsc::channel();
    std::thread::scope(|s| {
        for (i, mut c) in three.drain(..).enumerate() {
            let (tx, alice) = (tx.clone(), alice.clone());
            s.spawn(move || {
                let r = c.cmd(&auth_plain(&alice, &format!("wrong {i}")));
                tx.send(r.0).unwrap();
            });
        }
        let mut codes = vec![];
        while !codes.contains(&454) {
            codes.push(rx.recv().unwrap());
        }
        // 127.0.0.78 is in the same /24 as .77: its network's queue is
        // full, whatever the account.
        let (code, text) = near.cmd(&auth_plain(&format!("dave@{ALPHA}"), "wrong"));
        assert_eq!(code, 454, "{text}");
        // Another network is not held up by 127.0.0.0/24's failures: the
        // balancer's own address (127.0.0.1, where every connection
        // really comes from) is not what the throttle counts.
        let (code, text) = far.cmd(&auth_plain(&format!("erin@{ALPHA}"), "wrong"));
        assert_eq!(code, 535, "{text}");
        while codes.len() < 3 {
            codes.push(rx.recv().unwrap());
        }
        codes.sort();
        assert_eq!(codes, [454, 535, 535], "the three guesses from 127.0.0.77");
    });
    let failed = log_lines(&p, &["login failed", "protocol=\"smtp\""]);
    assert!(
        failed
            .iter()
            .filter(|l| l.contains("peer=127.0.0.77"))
            .count()
            == 2
            && failed.iter().any(|l| l.contains("peer=127.0.9.9"))
            && !failed.iter().any(|l| l.contains("peer=127.0.0.1")),
        "{failed:#?}"
    );
    // The session's own lines name the client too.
    assert!(
        !log_lines(&p, &["smtp{peer=127.0.0.77:40000}", "session start"]).is_empty(),
        "{}",
        p.log()
    );
}

#[test]
fn the_per_ip_cap_counts_the_address_the_header_carries() {
    let ca = TestCa::new();
    let p = alpha(
        &ca,
        &["alice"],
        "[limits]\nmax_connections_per_ip = 2\n",
        true,
    );
    // Submission (the SMTP accept loop).
    let open = |src: [u8; 4]| {
        let mut c = Conn::open(p.submission, &header(src, 1234), None);
        let r = c.reply();
        (c, r)
    };
    let (_a, r) = open([127, 0, 0, 50]);
    assert_eq!(r.0, 220, "{}", r.1);
    let (_b, r) = open([127, 0, 0, 50]);
    assert_eq!(r.0, 220, "{}", r.1);
    let (_c, r) = open([127, 0, 0, 50]);
    assert_eq!(r.0, 421, "a third from 127.0.0.50: {}", r.1);
    assert!(r.1.contains("from your address"), "{}", r.1);
    let (_d, r) = open([127, 0, 0, 51]);
    assert_eq!(r.0, 220, "127.0.0.51 is another client: {}", r.1);
    // IMAP (the accept loop IMAP and POP3 share).
    let open = |src: [u8; 4]| {
        let mut c = Conn::open(p.imap, &header(src, 1234), None);
        let l = c.line().unwrap_or_default();
        (c, l)
    };
    let (_a, l) = open([127, 0, 0, 60]);
    assert!(l.starts_with("* OK"), "{l}");
    let (_b, l) = open([127, 0, 0, 60]);
    assert!(l.starts_with("* OK"), "{l}");
    let (_c, l) = open([127, 0, 0, 60]);
    assert!(l.starts_with("* BYE") && l.contains("your address"), "{l}");
    let (_d, l) = open([127, 0, 0, 61]);
    assert!(l.starts_with("* OK"), "127.0.0.61 is another client: {l}");
    let capped = log_lines(&p, &["connection limit reached"]);
    assert!(
        capped.iter().any(|l| l.contains("127.0.0.50"))
            && capped.iter().any(|l| l.contains("127.0.0.60"))
            && !capped.iter().any(|l| l.contains("127.0.0.1:")),
        "{capped:#?}"
    );
}

#[test]
fn a_connection_without_a_valid_header_is_closed_without_a_byte_and_logged_once() {
    let ca = TestCa::new();
    let p = alpha(&ca, &["alice"], "", true);
    // A client speaking POP3 (or anything) straight away.
    let mut t = tcp(p.pop3);
    t.write_all(b"USER alice\r\n").unwrap();
    assert_eq!(drain(t).0, b"");
    // A header of another version, and one announcing 64 KiB of TLVs.
    let mut v1 = header([127, 0, 0, 5], 1);
    v1[12] = 0x11;
    let mut huge = header([127, 0, 0, 5], 1);
    huge[14..16].copy_from_slice(&[0xff, 0xff]);
    for bad in [
        v1,
        huge,
        b"PROXY TCP4 127.0.0.5 127.0.0.1 1 110\r\n".to_vec(),
    ] {
        let mut t = tcp(p.pop3);
        t.write_all(&bad).unwrap();
        assert_eq!(drain(t).0, b"", "{bad:?}");
    }
    // A client that waits for the greeting gets none: closed at the deadline.
    let (got, took) = drain(tcp(p.pop3));
    assert_eq!(got, b"");
    assert!(took < Duration::from_secs(15), "{took:?}");
    // TLS without the header: the handshake finds the connection closed.
    assert!(tls(tcp(p.submissions), &p.ca_pem).is_err());
    // Five refusals on pop3 within seconds: one line.
    let lines = log_lines(&p, &["listener=\"pop3\"", "PROXY protocol v2 header"]);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(lines[0].contains("peer=127.0.0.1:"), "{}", lines[0]);
    // The daemon is fine: a LOCAL header (a balancer's health check)
    // proceeds as the TCP peer, a PROXY header as its client.
    let mut c = Conn::open(p.pop3, &local(), None);
    assert!(c.line().unwrap_or_default().starts_with("+OK"));
    let mut c = Conn::open(p.submission, &local(), None);
    assert_eq!(c.reply().0, 220);
    assert!(!log_lines(&p, &["smtp{peer=127.0.0.1:", "session start"]).is_empty());
}

#[test]
fn imap_the_webmail_and_inbound_work_behind_the_balancer() {
    let ca = TestCa::new();
    let p = alpha(&ca, &["alice"], "", true);
    let alice = format!("alice@{ALPHA}");
    // IMAP over implicit TLS after the header.
    let mut c = Conn::open(p.imaps, &header([127, 0, 0, 77], 5000), Some(&p.ca_pem));
    assert!(c.line().unwrap_or_default().starts_with("* OK"));
    c.send(format!("a LOGIN {alice} \"{PASSWORD}\"\r\n").as_bytes());
    let ok = loop {
        let l = c.line().expect("LOGIN answer");
        if l.starts_with("a ") {
            break l;
        }
    };
    assert!(ok.starts_with("a OK"), "{ok}");
    // The webmail: header, TLS, HTTP.
    let body = serde_json::json!({"username": alice, "password": PASSWORD}).to_string();
    let mut c = Conn::open(p.web, &header([127, 0, 0, 78], 5001), Some(&p.ca_pem));
    c.send(
        format!(
            "POST /api/v1/session HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    let status = c.line().unwrap_or_default();
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    let logins = log_lines(&p, &["login", "peer="]);
    assert!(
        logins
            .iter()
            .any(|l| l.contains("protocol=\"imap\"") && l.contains("peer=127.0.0.77"))
            && logins
                .iter()
                .any(|l| l.contains("protocol=\"web\"") && l.contains("peer=127.0.0.78")),
        "{logins:#?}"
    );
    // The reception point: the PEC log records whom the message came from.
    let mut c = Conn::open(p.inbound, &header([127, 0, 0, 88], 2525), None);
    assert_eq!(c.reply().0, 220);
    assert_eq!(c.cmd("EHLO peer.test").0, 250);
    assert_eq!(c.cmd("MAIL FROM:<bob@pec.beta.test>").0, 250);
    assert_eq!(c.cmd(&format!("RCPT TO:<{alice}>")).0, 250);
    assert_eq!(c.cmd("DATA").0, 354);
    let (code, text) = c.cmd("Subject: hi\r\n\r\nnot a busta\r\n.");
    assert_eq!(code, 250, "{text}");
    let ev = p.wait_for("the ricezione event", 20, || {
        events_of(&p, "ricezione", None).into_iter().next()
    });
    assert!(
        ev["detail"]
            .as_str()
            .is_some_and(|d| d.starts_with("from 127.0.0.88:2525 ")),
        "{ev}"
    );
}

#[test]
fn with_the_option_off_a_header_is_just_bad_input() {
    let ca = TestCa::new();
    let p = alpha(&ca, &["alice"], "", false);
    // A balancer's header, sent before the greeting as HAProxy does: the
    // server greets as always, then reads its bytes as command lines.
    let mut c = Conn::open(p.submission, &header([127, 0, 0, 77], 1), None);
    assert_eq!(c.reply().0, 220);
    c.send(b"EHLO client.test\r\n");
    let mut codes = vec![];
    loop {
        let (code, _) = c.reply();
        if code == 0 {
            break;
        }
        codes.push(code);
        if code == 221 || code == 250 {
            break;
        }
    }
    // Empty lines and a NUL are refused; the signature's own `QUIT` line
    // ends the session (today: 500, 500, 500, 221).
    assert!(
        codes.first().is_some_and(|c| *c >= 500) && !codes.contains(&250),
        "{codes:?}"
    );
    assert!(!p.log().contains("127.0.0.77"));
    // The TCP peer is the client, as always.
    let mut c = Conn::open(p.submission, b"", None);
    assert_eq!(c.reply().0, 220);
    assert!(!log_lines(&p, &["smtp{peer=127.0.0.1:", "session start"]).is_empty());
}
