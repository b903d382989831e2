//! Issue 20, logins and credentials, against real `pecd` processes: the
//! password policy of `pecd user add|passwd`; parallel first guesses queued
//! behind the first.
mod common;

use std::time::{Duration, Instant};

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
