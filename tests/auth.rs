//! Issue 20, logins and credentials, against real `pecd` processes: the
//! second factor counted per account whatever network the guesses come
//! from, a code used once only; sessions that end with the credentials
//! they were opened with (and live in the database: a restart keeps them);
//! files private under any umask; parallel first guesses queued behind the
//! first; and the password policy of `pecd user add|passwd`.
use crate::common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use common::web::Http;
use common::*;

const ALPHA: &str = "pec.alpha.test";

fn alpha(ca: &TestCa, users: &[&str], web: &str, extra: &str) -> TestProvider {
    let mut spec = ProviderSpec::new("Alpha PEC S.p.A.", ALPHA, users);
    spec.web_config = web.to_string();
    spec.extra_config = extra.to_string();
    let mut p = TestProvider::prepare(ca, &spec);
    p.start();
    p
}

fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn base32_decode(s: &str) -> Vec<u8> {
    let (mut buf, mut bits, mut out) = (0u32, 0u32, vec![]);
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'2'..=b'7' => c - b'2' + 26,
            _ => continue,
        } as u32;
        buf = (buf << 5) | v;
        bits += 5;
        if bits >= 8 {
            out.push((buf >> (bits - 8)) as u8);
            bits -= 8;
        }
    }
    out
}

/// `pecd user totp enable`; the secret from the URI it prints.
fn enable_totp(p: &TestProvider, user: &str) -> Vec<u8> {
    let out = p.cli(&["user", "totp", "enable", user], "");
    assert!(out.status.success(), "{}", text(&out));
    let uri = String::from_utf8_lossy(&out.stdout).trim().to_string();
    base32_decode(
        uri.split("secret=")
            .nth(1)
            .unwrap()
            .split('&')
            .next()
            .unwrap(),
    )
}

fn code_now(secret: &[u8]) -> String {
    let now = pecd::pec::clock::since_epoch().as_secs() as i64;
    format!(
        "{:06}",
        pecd::server::web::totp::code_at(secret, now).unwrap()
    )
}

/// A code that is wrong now and in the steps either side.
fn wrong_code(secret: &[u8]) -> String {
    let now = pecd::pec::clock::since_epoch().as_secs() as i64;
    (0..1000u32)
        .map(|n| format!("{:06}", 100_000 + n * 7))
        .find(|c| {
            (-2..=2).all(|d| {
                pecd::server::web::totp::code_at(secret, now + d * 30) != Some(c.parse().unwrap())
            })
        })
        .unwrap()
}

/// `POST /api/v1/session` from the loopback address `src` (127.0.0.0/8
/// holds many /24 networks, which the login throttle tells apart).
fn login_from(
    p: &TestProvider,
    src: [u8; 4],
    user: &str,
    password: &str,
    code: Option<&str>,
) -> (u16, serde_json::Value) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap();
    let tcp = rt.block_on(async {
        let s = tokio::net::TcpSocket::new_v4().unwrap();
        s.bind(SocketAddr::from((src, 0))).unwrap();
        s.connect(SocketAddr::from(([127, 0, 0, 1], p.web)))
            .await
            .unwrap()
            .into_std()
            .unwrap()
    });
    tcp.set_nonblocking(false).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut b = openssl::ssl::SslConnector::builder(openssl::ssl::SslMethod::tls_client()).unwrap();
    b.set_ca_file(&p.ca_pem).unwrap();
    let mut cfg = b.build().configure().unwrap();
    cfg.set_verify_hostname(false);
    let mut s = cfg.connect("localhost", tcp).unwrap();
    let mut body = serde_json::json!({"username": user, "password": password});
    if let Some(c) = code {
        body["totp"] = serde_json::json!(c);
    }
    let body = body.to_string();
    write!(
        s,
        "POST /api/v1/session HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, serde_json::from_str(body).unwrap_or_default())
}

fn metric(p: &TestProvider, name: &str) -> Option<f64> {
    http_get(p.admin, "/metrics")
        .1
        .lines()
        .find(|l| l.starts_with(&format!("{name} ")))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
}

#[test]
fn second_factor_guesses_count_per_account_from_any_network_and_codes_work_once() {
    let ca = TestCa::new();
    // Small throttle delays: what stops the guesses here must be the
    // per-account count, not the per-address queue.
    let p = alpha(
        &ca,
        &["alice", "bob"],
        "",
        "[limits]\nlogin_delay = \"20ms\"\nlogin_max_delay = \"100ms\"\n",
    );
    let alice = format!("alice@{ALPHA}");
    let secret = enable_totp(&p, &alice);
    let wrong = wrong_code(&secret);
    // Ten wrong codes, each from a network of its own, each with the
    // right password (which must clear nothing).
    for n in 1..=10u8 {
        let (status, body) = login_from(&p, [127, 0, n, 1], &alice, PASSWORD, Some(&wrong));
        let want = if n < 10 { 401 } else { 429 };
        assert_eq!(status, want, "guess {n}: {body}");
        assert_eq!(body["totp_required"], true);
    }
    // The second factor is locked for the account: the right code, from
    // yet another network, does not get in either.
    let (status, body) = login_from(
        &p,
        [127, 0, 11, 1],
        &alice,
        PASSWORD,
        Some(&code_now(&secret)),
    );
    assert_eq!(status, 429, "{body}");
    assert!(body["error"].as_str().unwrap().contains("locked"), "{body}");
    assert!(
        p.log()
            .contains("second factor locked after too many consecutive wrong codes"),
        "{}",
        p.log()
    );
    assert_eq!(metric(&p, "pecd_totp_lockouts_total"), Some(1.0));

    // A code gets in once; the same code again is refused.
    let bob = format!("bob@{ALPHA}");
    let secret = enable_totp(&p, &bob);
    let code = code_now(&secret);
    let (status, body) = login_from(&p, [127, 0, 20, 1], &bob, PASSWORD, Some(&code));
    assert_eq!(status, 200, "{body}");
    let (status, body) = login_from(&p, [127, 0, 21, 1], &bob, PASSWORD, Some(&code));
    assert_eq!(status, 401, "replayed code: {body}");
    assert!(
        body["error"].as_str().unwrap().contains("used already"),
        "{body}"
    );
    // The secrets are not in the database in a form that logs anyone in.
    let db = std::fs::read(p.path().join("data/pecd.sqlite3")).unwrap();
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let find = |needle: &[u8]| db.windows(needle.len()).any(|w| w == needle);
    assert!(!find(hex(&secret).as_bytes()) && !find(&secret));
    let key = std::fs::metadata(p.path().join("totp.key")).unwrap();
    assert_eq!(key.permissions().mode() & 0o777, 0o600);
}

#[test]
fn sessions_end_with_passwd_totp_enable_and_del_and_outlive_a_restart() {
    let ca = TestCa::new();
    let mut p = alpha(&ca, &["alice"], "", "");
    let alice = format!("alice@{ALPHA}");
    let mut c = Http::new(p.web, &p.ca_pem);
    c.login(&alice, PASSWORD);
    assert_eq!(c.get("/api/v1/folders").status, 200);
    // In the database, not in the process: a restart (or another node)
    // knows the cookie.
    p.stop();
    p.start();
    assert_eq!(c.get("/api/v1/folders").status, 200);

    let pw2 = "another long password";
    let out = p.cli(
        &["user", "passwd", &alice, "--password-stdin"],
        &format!("{pw2}\n"),
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(c.get("/api/v1/folders").status, 401, "session after passwd");

    c.login(&alice, pw2);
    let mut other = Http::new(p.web, &p.ca_pem);
    other.login(&alice, pw2);
    let secret = enable_totp(&p, &alice);
    assert_eq!(
        c.get("/api/v1/folders").status,
        401,
        "session after totp enable"
    );
    assert_eq!(
        other.get("/api/v1/session").status,
        401,
        "every session of the user"
    );

    let r = c.login_with(&alice, pw2, Some(&code_now(&secret)));
    assert_eq!(r.status, 200, "{}", r.text());
    let out = p.cli(&["user", "del", &alice], "");
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(c.get("/api/v1/folders").status, 401, "session after del");
    let send = c.post_json(
        "/api/v1/messages",
        &serde_json::json!({"to": [format!("alice@{ALPHA}")], "subject": "x", "body": "x"}),
    );
    assert_eq!(send.status, 401, "a deleted user sends: {}", send.text());
}

#[test]
fn sessions_end_at_session_max_however_much_they_are_used() {
    let ca = TestCa::new();
    let p = alpha(&ca, &["alice"], "session_max = \"3s\"", "");
    let alice = format!("alice@{ALPHA}");
    let mut c = Http::new(p.web, &p.ca_pem);
    // Before the login: the session's lifetime counts from its creation.
    let t = Instant::now();
    c.login(&alice, PASSWORD);
    while t.elapsed() < Duration::from_millis(2500) {
        assert_eq!(c.get("/api/v1/session").status, 200);
        std::thread::sleep(Duration::from_millis(500));
    }
    p.wait_for("the session to reach its lifetime", 10, || {
        (c.get("/api/v1/session").status == 401).then_some(())
    });
    assert!(t.elapsed() >= Duration::from_secs(3));
}

fn wide_entries(root: &Path) -> Vec<String> {
    let mut bad = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let m = std::fs::symlink_metadata(&d).unwrap();
        let mode = m.permissions().mode() & 0o777;
        let want = if m.is_dir() { 0o700 } else { 0o600 };
        if mode != want {
            bad.push(format!("{} {mode:o}", d.display()));
        }
        if m.is_dir() {
            stack.extend(std::fs::read_dir(&d).unwrap().map(|e| e.unwrap().path()));
        }
    }
    bad
}

#[test]
fn every_file_under_data_dir_is_private_under_umask_022() {
    // Inherited by every pecd this test starts (user add, serve, totp).
    // The umask is the test process's: every test of the one test binary
    // (tests/it.rs) starts its pecd under 022 from here on, the common
    // default, which no other test depends on either way (pecd sets 077
    // itself).
    pecd::sys::umask::set(0o022);
    let ca = TestCa::new();
    let mut p = alpha(&ca, &["alice", "bob"], "", "");
    let alice = format!("alice@{ALPHA}");
    let bob = format!("bob@{ALPHA}");
    enable_totp(&p, &bob);
    // Mail through the access point to a local mailbox: database, spool,
    // Maildir, receipts.
    let mut s = SecureSmtp::connect(p.submissions, &p.ca_pem, true);
    assert_eq!(s.ehlo_auth(&alice, PASSWORD).0, 235);
    let msg = format!(
        "From: {alice}\r\nTo: {bob}\r\nSubject: modes\r\nMessage-ID: <modes@test>\r\n\r\nhello\r\n"
    );
    assert_eq!(s.cmd(&format!("MAIL FROM:<{alice}>")).0, 250);
    assert_eq!(s.cmd(&format!("RCPT TO:<{bob}>")).0, 250);
    assert_eq!(s.cmd("DATA").0, 354);
    s.send(msg.as_bytes());
    let (code, reply) = s.cmd(".");
    assert_eq!(code, 250, "{reply}");
    p.wait_messages(&alice, "X-Ricevuta", "avvenuta-consegna", 1);
    let data = p.path().join("data");
    let bad = wide_entries(&data);
    assert!(bad.is_empty(), "readable by others: {bad:#?}");
    assert_eq!(
        std::fs::metadata(p.path().join("totp.key"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );

    // What an older pecd left wide is narrowed when serve starts.
    p.stop();
    let set =
        |q: &Path, m: u32| std::fs::set_permissions(q, std::fs::Permissions::from_mode(m)).unwrap();
    set(&data, 0o755);
    set(&data.join("pecd.sqlite3"), 0o644);
    set(&data.join("mail"), 0o755);
    p.start();
    p.wait_for("the modes under data_dir to be narrowed", 20, || {
        wide_entries(&data).is_empty().then_some(())
    });
}

#[test]
fn five_simultaneous_guesses_are_answered_a_delay_apart() {
    let ca = TestCa::new();
    let p = alpha(
        &ca,
        &["alice"],
        "",
        "[limits]\nlogin_delay = \"2s\"\nlogin_max_delay = \"20s\"\n",
    );
    let alice = format!("alice@{ALPHA}");
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(6));
    let threads: Vec<_> = (0..5)
        .map(|i| {
            let (port, ca, alice, barrier) = (
                p.submissions,
                p.ca_pem.clone(),
                alice.clone(),
                barrier.clone(),
            );
            std::thread::spawn(move || {
                let mut s = SecureSmtp::connect(port, &ca, true);
                let (code, _) = s.cmd("EHLO client.test");
                assert_eq!(code, 250);
                let token = openssl::base64::encode_block(
                    format!("\0{alice}\0wrong password {i}").as_bytes(),
                );
                barrier.wait();
                let (code, text) = s.cmd(&format!("AUTH PLAIN {token}"));
                (Instant::now(), code, text)
            })
        })
        .collect();
    barrier.wait();
    let sent = Instant::now();
    let mut answers: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    answers.sort_by_key(|a| a.0);
    for (_, code, text) in &answers {
        assert_eq!(*code, 535, "{text}");
    }
    let after: Vec<Duration> = answers.iter().map(|a| a.0 - sent).collect();
    // The k-th answer cannot come before its slot, k delays (2 s) after
    // the first attempt, whatever the password checks take. (Unqueued, all
    // five are answered as fast as two at a time can be checked.)
    for (k, t) in after.iter().enumerate() {
        assert!(
            *t + Duration::from_millis(50) >= Duration::from_secs(2 * k as u64),
            "answer {k} after {t:?}: all after {after:?}"
        );
    }
}

#[test]
fn weak_passwords_are_refused_by_user_add_and_passwd_with_the_reason() {
    let ca = TestCa::new();
    let p = TestProvider::prepare(
        &ca,
        &ProviderSpec::new("Alpha PEC S.p.A.", ALPHA, &["alice"]),
    );
    let carol = format!("carol@{ALPHA}");
    let alice = format!("alice@{ALPHA}");
    for (pw, why) in [
        ("x", "too short"),
        ("secret", "at least 10"),
        ("Password123", "too common"),
        ("qwertyuiop", "too common"),
    ] {
        let out = p.cli(
            &["user", "add", &carol, "--password-stdin"],
            &format!("{pw}\n"),
        );
        assert!(!out.status.success(), "user add took {pw:?}");
        assert!(text(&out).contains(why), "{pw:?}: {}", text(&out));
        let out = p.cli(
            &["user", "passwd", &alice, "--password-stdin"],
            &format!("{pw}\n"),
        );
        assert!(!out.status.success(), "user passwd took {pw:?}");
        assert!(text(&out).contains(why), "{pw:?}: {}", text(&out));
    }
    let list = text(&p.cli(&["user", "list"], ""));
    assert!(!list.contains(&carol), "{list}");
    let out = p.cli(
        &["user", "add", &carol, "--password-stdin"],
        "a long enough one\n",
    );
    assert!(out.status.success(), "{}", text(&out));
    let mut p = p;
    p.start();
    let mut s = SecureSmtp::connect(p.submissions, &p.ca_pem, true);
    assert_eq!(
        s.ehlo_auth(&alice, PASSWORD).0,
        235,
        "alice's password unchanged"
    );
}

#[test]
fn plain_hex_secrets_of_older_versions_keep_working_and_are_sealed_at_start() {
    let ca = TestCa::new();
    let mut p = TestProvider::prepare(
        &ca,
        &ProviderSpec::new("Alpha PEC S.p.A.", ALPHA, &["alice"]),
    );
    let alice = format!("alice@{ALPHA}");
    let secret = b"12345678901234567890".to_vec();
    let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    // What an older pecd stored: the secret itself, in hex.
    let st = pecd::store::Store::open(&p.path().join("data")).unwrap();
    assert!(st.enable_totp_blocking(&alice, &hex, 0).unwrap());
    st.close();
    p.start();
    let stored: String = p
        .db()
        .query_row(
            "SELECT secret FROM user_totp WHERE address = ?1",
            [&alice],
            |r| r.get(0),
        )
        .unwrap();
    assert!(
        stored.starts_with("v1:") && !stored.contains(&hex),
        "{stored}"
    );
    let mut c = Http::new(p.web, &p.ca_pem);
    let r = c.login_with(&alice, PASSWORD, Some(&code_now(&secret)));
    assert_eq!(r.status, 200, "{}", r.text());
}
