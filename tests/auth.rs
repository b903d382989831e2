//! Issue 20, logins and credentials, against real `pecd` processes: the
//! password policy of `pecd user add|passwd`.
mod common;

use common::*;

const ALPHA: &str = "pec.alpha.test";

fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
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
