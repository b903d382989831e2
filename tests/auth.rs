//! Issue 20, logins and credentials, against real `pecd` processes: the
//! password policy of `pecd user add|passwd`; parallel first guesses queued
//! behind the first; sessions that end with the credentials they were
//! opened with (and live in the database: a restart keeps them).
mod common;

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
    c.login(&alice, PASSWORD);
    let t = Instant::now();
    while t.elapsed() < Duration::from_millis(2500) {
        assert_eq!(c.get("/api/v1/session").status, 200);
        std::thread::sleep(Duration::from_millis(500));
    }
    p.wait_for("the session to reach its lifetime", 10, || {
        (c.get("/api/v1/session").status == 401).then_some(())
    });
    assert!(t.elapsed() >= Duration::from_secs(3));
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
