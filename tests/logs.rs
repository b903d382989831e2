//! Logs an operator can use (issue 10 §5): `[log] format = "json"` gives one
//! JSON object a line, no colour codes when stderr is a file, the logins and
//! the accepted submission (with its identificativo) are on record, and
//! `pecd log --msgid` returns the same rows as `--id`.
use crate::common;

use std::time::Duration;

use common::*;
use lettre::address::Envelope;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

const DOMAIN: &str = "pec.alpha.test";
const ALICE: &str = "alice@pec.alpha.test";
const BOB: &str = "bob@pec.alpha.test";

fn provider(ca: &TestCa, extra: &str) -> TestProvider {
    let mut spec = ProviderSpec::new("Alpha PEC S.p.A.", DOMAIN, &["alice", "bob"]);
    spec.extra_config = extra.to_string();
    TestProvider::prepare(ca, &spec)
}

/// Submit with a wrong password; the error is what we expect.
async fn wrong_password(p: &TestProvider, user: &str) {
    let ca = Certificate::from_pem(&std::fs::read(&p.ca_pem).unwrap()).unwrap();
    let tls = TlsParameters::builder("127.0.0.1".into())
        .add_root_certificate(ca)
        .build_native()
        .unwrap();
    let t = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(p.submission)
        .tls(Tls::Required(tls))
        .credentials(Credentials::new(user.into(), "not the password".into()))
        .timeout(Some(Duration::from_secs(30)))
        .build();
    let env = Envelope::new(
        Some(user.parse::<Address>().unwrap()),
        vec![BOB.parse::<Address>().unwrap()],
    )
    .unwrap();
    let msg = message(ALICE, &[BOB], &[], "never sent", "", "x");
    assert!(t.send_raw(&env, &msg).await.is_err());
}

fn json_lines(p: &TestProvider) -> Vec<serde_json::Value> {
    let log = p.log();
    assert!(!log.is_empty());
    log.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}\n{log}")))
        .collect()
}

fn has_line(lines: &[serde_json::Value], f: impl Fn(&serde_json::Value) -> bool) -> bool {
    lines.iter().any(f)
}

#[tokio::test]
async fn json_log_lines_carry_logins_and_the_identificativo() {
    let ca = TestCa::new();
    let mut p = provider(&ca, "[log]\nformat = \"json\"\ntsa_url = \"none\"\n");
    p.start();
    let msg = message(ALICE, &[BOB], &[], "log me", "", "Ciao");
    let msgid = header(&msg, "Message-ID").unwrap();
    let reply = p.submit_raw(ALICE, &[BOB], &msg, false).await.unwrap();
    let id = identificativo_in(&reply);
    wrong_password(&p, BOB).await;
    // The busta reaches bob and the accettazione alice: both `deposito` rows,
    // which carry the identificativo but not the original msgid.
    p.wait_events("deposito", 2, |e| e["identificativo"] == id.as_str());
    p.wait_for("failed-login line", 10, || {
        p.log().contains("login failed").then_some(())
    });

    let lines = json_lines(&p);
    assert!(
        has_line(&lines, |l| l["message"] == "submission accepted"
            && l["identificativo"] == id.as_str()
            && l["from"] == ALICE
            && l["recipients"] == 1),
        "no submission line with {id}:\n{}",
        p.log()
    );
    assert!(
        has_line(&lines, |l| l["message"] == "login"
            && l["protocol"] == "smtp"
            && l["user"] == ALICE
            && l["peer"] == "127.0.0.1"),
        "no login line:\n{}",
        p.log()
    );
    assert!(
        has_line(&lines, |l| l["message"] == "login failed"
            && l["protocol"] == "smtp"
            && l["user"] == BOB
            && l["peer"] == "127.0.0.1"),
        "no failed-login line:\n{}",
        p.log()
    );
    assert!(!p.log().as_bytes().contains(&0x1b), "ESC in the JSON log");

    let by_id = p.log_events(&["--id", &id]);
    let by_msgid = p.log_events(&["--msgid", &msgid]);
    let kinds: Vec<_> = by_id.iter().map(|e| e["event"].clone()).collect();
    assert!(kinds.contains(&"deposito".into()), "{kinds:?}");
    assert!(kinds.contains(&"accettazione".into()), "{kinds:?}");
    assert_eq!(by_msgid, by_id, "--msgid and --id differ");
}

#[tokio::test]
async fn text_log_to_a_file_has_no_colour_codes() {
    let ca = TestCa::new();
    let mut p = provider(&ca, "");
    p.start();
    let msg = message(ALICE, &[BOB], &[], "plain", "", "Ciao");
    let reply = p.submit_raw(ALICE, &[BOB], &msg, false).await.unwrap();
    let id = identificativo_in(&reply);
    p.wait_for("submission line", 10, || {
        p.log().contains("submission accepted").then_some(())
    });
    let log = p.log();
    assert!(log.contains(&id), "{log}");
    assert!(!log.as_bytes().contains(&0x1b), "ESC in a log file:\n{log}");
}

/// A user name chosen to look like the end of a line and a new one (with a
/// terminal escape and a carriage return) stays inside its own line, in
/// both formats.
#[test]
fn an_auth_user_name_cannot_forge_a_line_of_the_log() {
    let ca = TestCa::new();
    for format in ["text", "json"] {
        let mut p = provider(
            &ca,
            &format!("[log]\nformat = \"{format}\"\ntsa_url = \"none\"\n"),
        );
        p.start();
        let user = "mallory\n2030-01-01T00:00:00.000000Z  INFO pecd::smtp: authenticated user=\"root\"\x1b[2K\r";
        let mut c = SecureSmtp::connect(p.submissions, &p.ca_pem, true);
        let (code, text) = c.ehlo_auth(user, "wrong");
        assert_ne!(code, 235, "{text}");
        p.wait_for("the failed login", 10, || {
            p.log().contains("mallory").then_some(())
        });
        p.stop();
        let log = p.log();
        assert!(
            !log.lines().any(|l| l.starts_with("2030-01-01T")),
            "{format}: a forged line:\n{log}"
        );
        assert!(
            !log.contains('\x1b') && !log.contains('\r'),
            "{format}: a control character reached the log:\n{log:?}"
        );
        // The SMTP session's line, the name as received.
        let line = log
            .lines()
            .find(|l| l.contains("authentication failed"))
            .unwrap_or_else(|| panic!("{log}"));
        assert!(
            line.contains("mallory") && line.contains("2030-01-01T00:00:00"),
            "{format}: the value is kept: {line}"
        );
        if format == "json" {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(v["user"], user, "{line}");
        }
    }
}
