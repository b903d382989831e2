//! Issue 9 class 3: memory a client can pin. Each test holds a real pecd
//! under load that used to cost about 100 MB and reads the daemon's
//! resident set from `/proc/<pid>/status` while the load is in place.
use crate::common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;

const MB: usize = 1024 * 1024;

/// `VmRSS` and `VmHWM` of a process, in bytes.
fn memory_of(pid: u32) -> (usize, usize) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<usize>().ok())
            .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"))
            * 1024
    };
    (kb("VmRSS:"), kb("VmHWM:"))
}

/// Forget the peak so far: the next `VmHWM` is the peak from now on.
fn reset_peak(pid: u32) {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").unwrap();
}

fn pid(p: &TestProvider) -> u32 {
    p.child.as_ref().expect("provider running").id()
}

/// `n` lines of text, `size` bytes in all, CRLF-terminated, no dot at a line start.
fn body_bytes(size: usize) -> Vec<u8> {
    let line = b"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod.\r\n";
    line.iter().copied().cycle().take(size).collect()
}

/// An inbound session (plain SMTP, no AUTH) that has said DATA.
fn inbound_in_data(p: &TestProvider, rcpt: &str) -> RawSmtp {
    let mut c = RawSmtp::connect(p.inbound);
    assert_eq!(c.cmd("EHLO peer.test").0, 250);
    assert_eq!(c.cmd("MAIL FROM:<someone@peer.test>").0, 250);
    assert_eq!(c.cmd(&format!("RCPT TO:<{rcpt}>")).0, 250);
    assert_eq!(c.cmd("DATA").0, 354);
    c
}

/// Wait until the log has `n` lines containing `what`.
fn wait_log(p: &TestProvider, what: &str, n: usize) {
    p.wait_for(&format!("{n} x {what:?} in the log"), 60, || {
        (p.log().matches(what).count() >= n).then_some(())
    });
}

fn rfc822_header() -> Vec<u8> {
    b"From: someone@peer.test\r\nTo: alice@pec.alpha.test\r\nSubject: big\r\n\r\n".to_vec()
}

#[test]
fn unterminated_data_is_spooled_to_disk_not_held_in_memory() {
    let ca = TestCa::new();
    let mut p = TestProvider::prepare(
        &ca,
        &ProviderSpec::new("Alpha PEC S.p.A.", "pec.alpha.test", &["alice"]),
    );
    p.start();
    let pid = pid(&p);
    let (base, _) = memory_of(pid);
    reset_peak(pid);
    const N: usize = 20;
    const SIZE: usize = 5 * MB;
    let chunk = body_bytes(SIZE);
    let mut sessions: Vec<RawSmtp> = (0..N)
        .map(|_| inbound_in_data(&p, "alice@pec.alpha.test"))
        .collect();
    std::thread::scope(|s| {
        for c in sessions.iter_mut() {
            let chunk = &chunk;
            s.spawn(move || {
                c.send_bytes(&rfc822_header());
                c.send_bytes(chunk);
            });
        }
    });
    // Every byte written is in the daemon's hands.
    p.wait_for("the daemon to read every byte sent", 60, || {
        (unread_bytes(p.inbound) == 0).then_some(())
    });
    let (rss, peak) = memory_of(pid);
    let held = (N * SIZE) / MB;
    eprintln!(
        "{N} x {} MB unterminated: base {} MB, rss {} MB, peak {} MB",
        SIZE / MB,
        base / MB,
        rss / MB,
        peak / MB
    );
    assert!(
        peak < base + 40 * MB,
        "{held} MB of unfinished DATA raised the daemon's peak from {} MB to {} MB",
        base / MB,
        peak / MB
    );
    // Spool files have no name: nothing to leak on any path.
    let incoming = p.path().join("data/incoming");
    assert_eq!(std::fs::read_dir(&incoming).unwrap().count(), 0);
    // The messages are whole when they end.
    for c in sessions.iter_mut() {
        let (code, text) = c.raw(b"\r\n.\r\n");
        assert_eq!(code, 250, "{text}");
    }
    assert_eq!(std::fs::read_dir(&incoming).unwrap().count(), 0);
}

#[test]
fn exhausted_memory_budget_answers_452_and_frees_up() {
    let ca = TestCa::new();
    let mut spec = ProviderSpec::new("Alpha PEC S.p.A.", "pec.alpha.test", &["alice"]);
    // 21 sessions from one address: over the per-IP default, not the point here.
    spec.extra_config =
        "[limits]\nmax_message_size = \"1MB\"\nmemory_budget = \"6MB\"\nmax_connections_per_ip = 50\n".into();
    let mut p = TestProvider::prepare(&ca, &spec);
    p.start();
    let alice = "alice@pec.alpha.test";
    // Twenty holders each past the spool threshold: 20 x 256 KiB of buffers
    // stay reserved while they dawdle, leaving about 0.7 MB of the 6 MB.
    let mut holders: Vec<RawSmtp> = (0..20).map(|_| inbound_in_data(&p, alice)).collect();
    let part = body_bytes(300 * 1024);
    for h in holders.iter_mut() {
        h.send_bytes(&rfc822_header());
        h.send_bytes(&part);
    }
    wait_log(&p, "DATA spooled to disk", 20);

    // A message that needs more than is left: told to come back later...
    let big = [rfc822_header(), body_bytes(400 * 1024)].concat();
    let mut c = RawSmtp::connect(p.inbound);
    assert_eq!(c.cmd("EHLO peer.test").0, 250);
    assert_eq!(c.cmd("MAIL FROM:<someone@peer.test>").0, 250);
    assert_eq!(c.cmd(&format!("RCPT TO:<{alice}>")).0, 250);
    let (code, text) = c.data(&big);
    assert_eq!(code, 452, "{text}");
    assert!(text.contains("4.3.1"), "{text}");
    // ... and the same goes for a submission, after its AUTH.
    let mut s = SecureSmtp::connect(p.submission, &p.ca_pem, false);
    assert_eq!(s.cmd("EHLO client.test").0, 250);
    s.starttls();
    assert_eq!(s.ehlo_auth(alice, PASSWORD).0, 235);
    let text_body = String::from_utf8(body_bytes(200 * 1024)).unwrap();
    let sub = message(alice, &[alice], &[], "grande", "", &text_body);
    let (code, text) = submit_secure(&mut s, alice, &sub);
    assert_eq!(code, 452, "{text}");
    assert!(text.contains("4.3.1"), "{text}");

    // The same sessions go on: a small message fits.
    let small = message(alice, &[alice], &[], "piccolo", "", "ciao");
    assert_eq!(c.cmd("MAIL FROM:<someone@peer.test>").0, 250);
    assert_eq!(c.cmd(&format!("RCPT TO:<{alice}>")).0, 250);
    let (code, text) = c.data(&small);
    assert_eq!(code, 250, "{text}");
    let (code, text) = submit_secure(&mut s, alice, &small);
    assert_eq!(code, 250, "{text}");

    // The holders finish, one after the other, and are all taken.
    for h in holders.iter_mut() {
        let (code, text) = h.raw(b"\r\n.\r\n");
        assert_eq!(code, 250, "{text}");
    }
    drop(holders);
    // With the memory back, the big message goes through too.
    assert_eq!(c.cmd("MAIL FROM:<someone@peer.test>").0, 250);
    assert_eq!(c.cmd(&format!("RCPT TO:<{alice}>")).0, 250);
    let (code, text) = c.data(&big);
    assert_eq!(code, 250, "{text}");
}

/// MAIL, RCPT, DATA and `msg` on an authenticated submission session.
fn submit_secure(s: &mut SecureSmtp, from: &str, msg: &[u8]) -> (u16, String) {
    assert_eq!(s.cmd(&format!("MAIL FROM:<{from}>")).0, 250);
    assert_eq!(s.cmd(&format!("RCPT TO:<{from}>")).0, 250);
    assert_eq!(s.cmd("DATA").0, 354);
    let mut wire = msg.to_vec();
    wire.extend_from_slice(b".\r\n");
    s.send(&wire);
    s.reply()
}

/// A plain IMAP connection (port 143, before STARTTLS) past the greeting.
fn imap_plain(port: u16) -> (BufReader<TcpStream>, TcpStream) {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut greeting = String::new();
    r.read_line(&mut greeting).unwrap();
    assert!(greeting.starts_with("* OK"), "{greeting}");
    (r, s)
}

#[test]
fn imap_before_login_refuses_big_literals_and_endless_lines() {
    let ca = TestCa::new();
    let mut p = TestProvider::prepare(
        &ca,
        &ProviderSpec::new("Alpha PEC S.p.A.", "pec.alpha.test", &["alice"]),
    );
    p.start();
    let pid = pid(&p);
    let (base, _) = memory_of(pid);
    reset_peak(pid);
    const N: usize = 20;
    const SIZE: usize = 5 * MB;
    let filler = vec![b'a'; SIZE];
    let mut conns: Vec<_> = (0..N).map(|_| imap_plain(p.imap)).collect();
    let written = std::sync::atomic::AtomicUsize::new(0);
    // Half announce a 5 MB LOGIN literal, half send a 5 MB line with no end.
    let answers: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = conns
            .iter_mut()
            .enumerate()
            .map(|(i, (r, w))| {
                let (filler, written) = (&filler, &written);
                s.spawn(move || {
                    let mut answer = String::new();
                    if i % 2 == 0 {
                        w.write_all(format!("a LOGIN {{{SIZE}}}\r\n").as_bytes())
                            .unwrap();
                        r.read_line(&mut answer).unwrap();
                        if answer.starts_with('+') {
                            // Invited to send it: an attacker would.
                            let _ = w.write_all(filler);
                        }
                        written.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    } else {
                        let _ = w.write_all(b"a LOGIN ");
                        let _ = w.write_all(filler);
                        written.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        // Closed on us: the BYE, or a reset that overtook it.
                        match r.read_line(&mut answer) {
                            Ok(0) => answer = "EOF".into(),
                            Ok(_) => {}
                            Err(e) => answer = format!("ERR:{:?}", e.kind()),
                        }
                    }
                    answer
                })
            })
            .collect();
        // Every client has written what it will and the daemon has read it
        // (or closed on it); the line writers only get an answer if the
        // daemon closes on them, so the load is still in place.
        p.wait_for("the clients' bytes to reach the daemon", 60, || {
            (written.load(std::sync::atomic::Ordering::SeqCst) == N && unread_bytes(p.imap) == 0)
                .then_some(())
        });
        let (rss, peak) = memory_of(pid);
        eprintln!(
            "{N} x {} MB before login: base {} MB, rss {} MB, peak {} MB",
            SIZE / MB,
            base / MB,
            rss / MB,
            peak / MB
        );
        assert!(
            peak < base + 40 * MB,
            "{} MB of pre-login input raised the daemon's peak from {} MB to {} MB",
            N * SIZE / MB,
            base / MB,
            peak / MB
        );
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, a) in answers.iter().enumerate() {
        if i % 2 == 0 {
            assert!(a.starts_with("a BAD [TOOBIG]"), "literal: {a:?}");
        } else {
            assert!(
                a.starts_with("* BYE") || a == "EOF" || a == "ERR:ConnectionReset",
                "endless line must be cut off: {a:?}"
            );
        }
    }
    // A refused literal leaves the session usable.
    let (r, w) = &mut conns[0];
    w.write_all(b"b CAPABILITY\r\n").unwrap();
    let mut line = String::new();
    while !line.starts_with("b ") {
        line.clear();
        r.read_line(&mut line).unwrap();
    }
    assert!(line.starts_with("b OK"), "{line}");
    // A small literal is still fine before login.
    w.write_all(b"c NOOP\r\nd ID ({4+}\r\nname {4+}\r\npecd)\r\n")
        .unwrap();
    let mut line = String::new();
    while !line.starts_with("d ") {
        line.clear();
        r.read_line(&mut line).unwrap();
    }
    assert!(line.starts_with("d OK"), "{line}");
}

/// An IMAP client over implicit TLS, logged in, INBOX selected.
struct Imaps {
    r: BufReader<openssl::ssl::SslStream<TcpStream>>,
}

impl Imaps {
    fn login(p: &TestProvider, user: &str) -> Imaps {
        use openssl::ssl::{SslConnector, SslMethod};
        let tcp = TcpStream::connect(("127.0.0.1", p.imaps)).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut b = SslConnector::builder(SslMethod::tls_client()).unwrap();
        b.set_ca_file(&p.ca_pem).unwrap();
        let tls = b.build().connect("127.0.0.1", tcp).unwrap();
        let mut c = Imaps {
            r: BufReader::new(tls),
        };
        let mut greeting = String::new();
        c.r.read_line(&mut greeting).unwrap();
        assert!(c
            .cmd("a", &format!("LOGIN {user} \"{PASSWORD}\""))
            .0
            .starts_with("a OK"));
        assert!(c.cmd("b", "SELECT INBOX").0.starts_with("b OK"));
        c
    }

    /// Send a command; returns its tagged line and the literals' sizes,
    /// reading literals without keeping them. `during` runs between reads.
    fn cmd(&mut self, tag: &str, cmd: &str) -> (String, Vec<usize>) {
        self.cmd_watch(tag, cmd, &mut || {})
    }

    fn cmd_watch(
        &mut self,
        tag: &str,
        cmd: &str,
        during: &mut dyn FnMut(),
    ) -> (String, Vec<usize>) {
        self.r
            .get_mut()
            .write_all(format!("{tag} {cmd}\r\n").as_bytes())
            .unwrap();
        let mut literals = vec![];
        let mut sink = vec![0u8; 64 * 1024];
        loop {
            let mut line = Vec::new();
            self.r.read_until(b'\n', &mut line).unwrap();
            assert!(!line.is_empty(), "connection closed");
            let text = String::from_utf8_lossy(&line).to_string();
            if text.starts_with(&format!("{tag} ")) {
                return (text, literals);
            }
            if let Some(n) = text
                .trim_end()
                .strip_suffix('}')
                .and_then(|t| t.rsplit_once('{'))
                .and_then(|(_, n)| n.parse::<usize>().ok())
            {
                literals.push(n);
                let mut left = n;
                while left > 0 {
                    let k = self.r.read(&mut sink[..left.min(64 * 1024)]).unwrap();
                    assert!(k > 0, "connection closed inside a literal");
                    left -= k;
                    during();
                }
            }
        }
    }
}

#[test]
fn imap_fetch_of_many_big_sections_streams() {
    let ca = TestCa::new();
    let mut p = TestProvider::prepare(
        &ca,
        &ProviderSpec::new("Alpha PEC S.p.A.", "pec.alpha.test", &["alice"]),
    );
    p.start();
    const SIZE: usize = 5 * MB;
    const TIMES: usize = 20;
    let msg = [rfc822_header(), body_bytes(SIZE)].concat();
    let new = p.path().join("data/mail/pec.alpha.test/alice/new");
    std::fs::write(new.join("1764580000.M1P1Q1.mx"), &msg).unwrap();
    let mut c = Imaps::login(&p, "alice@pec.alpha.test");
    let pid = pid(&p);
    let (base, _) = memory_of(pid);
    reset_peak(pid);
    let items = vec!["BODY.PEEK[]"; TIMES].join(" ");
    let mut rss_max = 0;
    let started = Instant::now();
    let (tagged, literals) = c.cmd_watch("c", &format!("FETCH 1 ({items})"), &mut || {
        rss_max = rss_max.max(memory_of(pid).0);
    });
    let (_, peak) = memory_of(pid);
    eprintln!(
        "FETCH {TIMES} x {} MB: base {} MB, rss max {} MB, peak {} MB, {:?}",
        msg.len() / MB,
        base / MB,
        rss_max / MB,
        peak / MB,
        started.elapsed()
    );
    assert!(tagged.starts_with("c OK"), "{tagged}");
    assert_eq!(literals, vec![msg.len(); TIMES]);
    assert!(
        peak < base + 40 * MB,
        "FETCH of {TIMES} x {} MB raised the daemon's peak from {} MB to {} MB",
        msg.len() / MB,
        base / MB,
        peak / MB
    );
    // The bytes are the file's, exactly.
    c.r.get_mut()
        .write_all(b"d FETCH 1 (BODY.PEEK[]<0.64>)\r\n")
        .unwrap();
    let mut line = String::new();
    c.r.read_line(&mut line).unwrap();
    assert!(line.ends_with("{64}\r\n"), "{line}");
    let mut got = [0u8; 64];
    c.r.read_exact(&mut got).unwrap();
    assert_eq!(&got[..], &msg[..64]);
}
