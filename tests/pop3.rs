//! Issue 14, POP3: a real pecd, PEC messages it delivered, downloaded with
//! independent clients: Python's poplib (`tests/pop3_client.py`), fetchmail
//! and curl.
use crate::common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::Value;

const ALICE: &str = "alice@pec.alpha.test";
const BOB: &str = "bob@pec.alpha.test";

fn rec(recs: &[Value], n: usize) -> &Value {
    step(recs, n)
}

fn ok(recs: &[Value], n: usize) -> bool {
    rec(recs, n)["ok"] == true
}

fn resp(recs: &[Value], n: usize) -> String {
    rec(recs, n)["resp"].as_str().unwrap_or("").to_string()
}

fn lines(recs: &[Value], n: usize) -> Vec<String> {
    rec(recs, n)["lines"]
        .as_array()
        .unwrap_or_else(|| panic!("no lines in step {n}: {recs:#?}"))
        .iter()
        .map(|l| l.as_str().unwrap().to_string())
        .collect()
}

fn provider(extra: &str) -> TestProvider {
    let ca = Box::leak(Box::new(TestCa::new()));
    let mut spec = ProviderSpec::new("Alpha PEC S.p.A.", "pec.alpha.test", &["alice", "bob"]);
    spec.extra_config = extra.into();
    let mut p = TestProvider::prepare(ca, &spec);
    p.start();
    p
}

/// Alice sends `n` PECs to Bob; returns Bob's stored bustas (oldest first).
async fn deliver(p: &TestProvider, n: usize) -> Vec<Vec<u8>> {
    let before = p
        .messages_with(BOB, "X-Trasporto", "posta-certificata")
        .len();
    for i in 0..n {
        let body = format!("Riga uno.\r\n.riga che comincia con un punto\r\n..due\r\nfine {i}");
        let msg = message(ALICE, &[BOB], &[], &format!("Pratica {i}"), "", &body);
        p.submit_raw(ALICE, &[BOB], &msg, false).await.unwrap();
    }
    p.wait_messages(BOB, "X-Trasporto", "posta-certificata", before + n)
}

fn bob_files(p: &TestProvider) -> Vec<Vec<u8>> {
    p.mailbox(BOB)
        .into_iter()
        .map(|f| std::fs::read(f).unwrap())
        .collect()
}

fn login(user: &str) -> String {
    format!("user {user}\npass '{PASSWORD}'\n")
}

#[tokio::test]
async fn poplib_reads_pec_byte_exact_over_stls_and_pop3s() {
    let p = provider("");
    let stored = deliver(&p, 2).await;
    assert!(stored
        .iter()
        .all(|m| m.windows(3).any(|w| w == b"\n.." || w == b"\n.r")));
    let dir = tempfile::tempdir().unwrap();
    let f = |n: usize| dir.path().join(format!("m{n}.eml"));

    // STLS: credentials are refused before it, CAPA tells what to do.
    let script = format!(
        "capa\nuser {BOB}\nauth_plain {BOB} '{PASSWORD}'\nstls\ncapa\n{}stat\nlist\nuidl\nretr 1 {}\nretr 2 {}\ntop 1 0\ntop 2 2\nquit\n",
        login(BOB),
        f(1).display(),
        f(2).display()
    );
    let r = pop3(&p, p.pop3, "plain", &script);
    assert!(resp(&r, 0).starts_with("+OK"), "{r:#?}");
    let caps = &rec(&r, 1)["caps"];
    assert!(
        caps.get("STLS").is_some() && caps.get("USER").is_none(),
        "{caps}"
    );
    assert!(
        !ok(&r, 2) && resp(&r, 2).contains("STLS"),
        "USER before TLS: {r:#?}"
    );
    assert!(
        !ok(&r, 3) && resp(&r, 3).contains("STLS"),
        "AUTH before TLS: {r:#?}"
    );
    assert!(ok(&r, 4), "STLS: {r:#?}");
    let caps = &rec(&r, 5)["caps"];
    for c in ["USER", "UIDL", "TOP", "SASL", "RESP-CODES", "PIPELINING"] {
        assert!(caps.get(c).is_some(), "{c} in {caps}");
    }
    assert_eq!(caps["SASL"], serde_json::json!(["PLAIN"]));
    assert!(caps.get("STLS").is_none());
    assert!(ok(&r, 6) && ok(&r, 7), "login: {r:#?}");
    assert_eq!(rec(&r, 8)["count"], 2);
    let total: usize = stored.iter().map(Vec::len).sum();
    assert_eq!(rec(&r, 8)["size"], total);
    let list = lines(&r, 9);
    assert_eq!(list.len(), 2);
    let uidl = lines(&r, 10);
    assert_eq!(uidl.len(), 2, "{r:#?}");
    assert!(ok(&r, 11) && ok(&r, 12), "{r:#?}");
    let got = [std::fs::read(f(1)).unwrap(), std::fs::read(f(2)).unwrap()];
    for (i, m) in got.iter().enumerate() {
        assert!(
            stored.contains(m),
            "RETR {} is a stored busta, byte for byte",
            i + 1
        );
        assert_eq!(list[i], format!("{} {}", i + 1, m.len()));
        openssl_verify(m, &p.ca_pem).unwrap_or_else(|e| panic!("RETR {}: {e}", i + 1));
    }
    assert_ne!(got[0], got[1]);
    // TOP n 0: the header and the blank line; TOP n 2: two body lines more.
    let head = lines(&r, 13);
    assert_eq!(head.last().map(String::as_str), Some(""), "{head:?}");
    let text = String::from_utf8_lossy(&got[0]);
    let header_lines = text.split("\r\n\r\n").next().unwrap().lines().count();
    assert_eq!(head.len(), header_lines + 1);
    let t = String::from_utf8_lossy(&got[1]);
    let header_lines = t.split("\r\n\r\n").next().unwrap().lines().count();
    assert_eq!(lines(&r, 14).len(), header_lines + 1 + 2);
    assert!(resp(&r, 15).starts_with("+OK"), "{r:#?}");

    // Implicit TLS, AUTH PLAIN; Alice's receipts are signed PEC too.
    let receipts = p.wait_messages(ALICE, "X-Ricevuta", "avvenuta-consegna", 2);
    let r = pop3(
        &p,
        p.pop3s,
        "tls",
        &format!(
            "auth_plain {ALICE} '{PASSWORD}'\nstat\nretr 1 {}\nquit\n",
            f(3).display()
        ),
    );
    assert!(ok(&r, 1), "AUTH PLAIN: {r:#?}");
    assert_eq!(rec(&r, 2)["count"], 4, "2 accettazione + 2 consegna");
    let m = std::fs::read(f(3)).unwrap();
    openssl_verify(&m, &p.ca_pem).unwrap();
    assert!(header(&m, "X-Ricevuta").is_some());
    assert!(receipts.len() == 2);
}

#[tokio::test]
async fn dele_quit_removes_a_dropped_connection_removes_nothing_and_uidl_is_stable() {
    let mut p = provider("");
    deliver(&p, 3).await;
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("first.eml");

    let r = pop3(
        &p,
        p.pop3s,
        "tls",
        &format!("{}uidl\ndele 1\ndele 2\nstat\ndrop\n", login(BOB)),
    );
    let uidl1 = lines(&r, 3);
    assert!(ok(&r, 4) && ok(&r, 5), "{r:#?}");
    assert_eq!(rec(&r, 6)["count"], 1);
    assert_eq!(
        bob_files(&p).len(),
        3,
        "a dropped connection removes nothing"
    );

    // UIDL: the same in the next session, and after a restart.
    let r = pop3(
        &p,
        p.pop3s,
        "tls",
        &format!(
            "{}uidl\nretr 1 {}\ndele 1\nlist 1\nrset\ndele 1\nquit\n",
            login(BOB),
            first.display()
        ),
    );
    assert_eq!(lines(&r, 3), uidl1);
    assert!(!ok(&r, 6), "LIST of a deleted message: {r:#?}");
    assert!(resp(&r, 9).starts_with("+OK"), "QUIT: {r:#?}");
    let left = bob_files(&p);
    assert_eq!(left.len(), 2, "DELE + QUIT removed one");
    assert!(!left.contains(&std::fs::read(&first).unwrap()));

    p.stop();
    p.start();
    let r = pop3(
        &p,
        p.pop3,
        "plain",
        &format!(
            "stls\n{}uidl\nretr 1 {}\nquit\n",
            login(BOB),
            first.display()
        ),
    );
    let uidl2 = lines(&r, 4);
    assert!(ok(&r, 5) && resp(&r, 6).starts_with("+OK"), "{r:#?}");
    assert_eq!(
        uidl2,
        vec![
            uidl1[1].replacen("2 ", "1 ", 1),
            uidl1[2].replacen("3 ", "2 ", 1)
        ]
    );

    // IMAP sees the same two messages, under the UIDs the UIDL names.
    let recs = imap(
        &p,
        p.imap,
        "starttls",
        BOB,
        PASSWORD,
        "login\nstatus INBOX (MESSAGES UIDVALIDITY)\nselect INBOX\nuid SEARCH ALL\n",
    );
    let status = step(&recs, 2)["data"].to_string();
    assert!(status.contains("MESSAGES 2"), "{status}");
    let uids = step(&recs, 4)["data"][0].as_str().unwrap().to_string();
    let want: Vec<String> = uidl2
        .iter()
        .map(|l| l.split_whitespace().nth(1).unwrap().to_string())
        .collect();
    let validity = status
        .split("UIDVALIDITY ")
        .nth(1)
        .unwrap()
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .to_string();
    let got: Vec<String> = uids
        .split_whitespace()
        .map(|u| format!("{validity}.{u}"))
        .collect();
    assert_eq!(got, want, "UIDL = UIDVALIDITY.UID of IMAP");
    // The message retrieved by POP3 shows as \Seen in IMAP, the other not.
    let recs = imap(
        &p,
        p.imap,
        "starttls",
        BOB,
        PASSWORD,
        "login\nselect INBOX\nfetch 1 (FLAGS)\nfetch 2 (FLAGS)\n",
    );
    assert!(
        step(&recs, 3)["data"].to_string().contains("Seen"),
        "{recs:#?}"
    );
    assert!(
        !step(&recs, 4)["data"].to_string().contains("Seen"),
        "{recs:#?}"
    );
}

#[tokio::test]
async fn a_snapshot_survives_concurrent_imap_expunge_and_delivery() {
    let p = provider("");
    deliver(&p, 2).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.eml");
    // A POP3 session logs in, then waits while IMAP expunges message 1 and
    // a new PEC arrives.
    let py = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/pop3_client.py");
    let go = dir.path().join("go");
    let script = format!(
        "{}stat\nuidl\nwait_file {go} 60\nstat\nretr 1 {out}\ndele 1\nretr 2 {out}\ndele 2\nlist\nquit\n",
        login(BOB),
        go = go.display(),
        out = out.display()
    );
    let mut child = Command::new("python3")
        .arg(&py)
        .args(["127.0.0.1", &p.pop3s.to_string(), "tls", &script])
        .env("POP3_CAFILE", &p.ca_pem)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The client prints each step as it ends: once UIDL has answered, the
    // session holds its snapshot of the maildrop.
    let mut printed = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut r: Vec<Value> = Vec::new();
    for l in printed.by_ref() {
        r.push(serde_json::from_str(&l.unwrap()).unwrap());
        if r.last().unwrap()["verb"] == "uidl" {
            break;
        }
    }
    let recs = imap(
        &p,
        p.imap,
        "starttls",
        BOB,
        PASSWORD,
        "login\nselect INBOX\nstore 1 +FLAGS (\\Deleted)\nexpunge\n",
    );
    assert_eq!(step(&recs, 4)["typ"], "OK", "{recs:#?}");
    deliver(&p, 1).await;
    // While that session holds the maildrop, another POP3 login is refused.
    let second = pop3(&p, p.pop3s, "tls", &login(BOB));
    assert!(
        !ok(&second, 2) && resp(&second, 2).contains("[IN-USE]"),
        "{second:#?}"
    );

    // The session goes on.
    std::fs::write(&go, "").unwrap();
    r.extend(printed.map(|l| serde_json::from_str::<Value>(&l.unwrap()).unwrap()));
    assert!(child.wait().unwrap().success());
    assert_eq!(rec(&r, 3)["count"], 2);
    assert_eq!(rec(&r, 6)["count"], 2, "the snapshot, not the live folder");
    assert!(
        !ok(&r, 7) && resp(&r, 7).contains("removed by another session"),
        "{r:#?}"
    );
    assert!(
        !ok(&r, 8) && resp(&r, 8).contains("removed by another session"),
        "{r:#?}"
    );
    assert!(ok(&r, 9) && ok(&r, 10), "{r:#?}");
    let list = lines(&r, 11);
    assert!(list.len() == 1 && list[0].starts_with("1 "), "{r:#?}");
    assert!(resp(&r, 12).starts_with("+OK"), "{r:#?}");
    // The late arrival was neither shown nor lost; nothing is shown twice.
    let r = pop3(
        &p,
        p.pop3s,
        "tls",
        &format!("{}stat\nuidl\nquit\n", login(BOB)),
    );
    assert_eq!(rec(&r, 3)["count"], 1);
    let late = lines(&r, 4);
    assert!(!lines(&r, 4).is_empty());
    assert_eq!(bob_files(&p).len(), 1);
    assert_eq!(late.len(), 1);
}

#[tokio::test]
async fn bad_input_wrong_passwords_and_connection_floods_are_bounded() {
    let p = provider("[limits]\nmax_bad_commands = 4\nmax_connections_per_ip = 3\n");
    // Wrong password: [AUTH], counted by the shared login metrics.
    let r = pop3(
        &p,
        p.pop3s,
        "tls",
        "user bob@pec.alpha.test\npass wrong\nrawbytes 5000\nraw XYZZY\nraw 'RETR 1'\nraw 'STAT'\nnoop\n",
    );
    assert!(!ok(&r, 2) && resp(&r, 2).contains("[AUTH]"), "{r:#?}");
    assert!(!ok(&r, 3) && resp(&r, 3).contains("too long"), "{r:#?}");
    assert!(
        !ok(&r, 4) && resp(&r, 4).contains("unknown command"),
        "{r:#?}"
    );
    assert!(!ok(&r, 5) && resp(&r, 5).contains("log in first"), "{r:#?}");
    assert!(resp(&r, 6).contains("too many bad commands"), "{r:#?}");
    // poplib reports the closed connection as "-ERR EOF".
    assert!(
        resp(&r, 7).contains("connection lost") || resp(&r, 7).contains("EOF"),
        "closed after the limit: {r:#?}"
    );
    // The session still works after a too-long line.
    let r = pop3(
        &p,
        p.pop3s,
        "tls",
        &format!("rawbytes 3000\n{}stat\nquit\n", login(BOB)),
    );
    assert!(ok(&r, 2) && ok(&r, 3) && ok(&r, 4), "{r:#?}");

    // Per-IP cap: the fourth connection is told to come back later.
    let mut held = vec![];
    for _ in 0..3 {
        let s = std::net::TcpStream::connect(("127.0.0.1", p.pop3)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut line = String::new();
        BufReader::new(s.try_clone().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.starts_with("+OK"), "{line}");
        held.push(s);
    }
    let s = std::net::TcpStream::connect(("127.0.0.1", p.pop3)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).unwrap();
    assert!(
        line.starts_with("-ERR [SYS/TEMP] too many connections"),
        "{line}"
    );
    drop(held);

    let metrics = http_get(p.admin, "/metrics").1;
    assert!(
        metrics.contains("pecd_login_failures_total{protocol=\"pop3\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("pecd_connections{listener=\"pop3s\"}"),
        "{metrics}"
    );
    let health = http_get(p.admin, "/health").1;
    assert!(
        health.contains("\"pop3\"") && health.contains("\"pop3s\""),
        "{health}"
    );
}

fn need(tool: &str, package: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "{tool} is missing: install the Debian package {package} (.ci/run does)"
    );
}

#[tokio::test]
async fn fetchmail_with_sslcertck_downloads_verifiable_pec_and_deletes_it() {
    need("fetchmail", "fetchmail");
    let p = provider("");
    let stored = deliver(&p, 2).await;
    let home = tempfile::tempdir().unwrap();
    let out = home.path().join("out");
    std::fs::create_dir(&out).unwrap();
    for (n, (port, tls)) in [(p.pop3, "sslproto 'tls1.2+'"), (p.pop3s, "ssl")]
        .into_iter()
        .enumerate()
    {
        if n == 1 {
            deliver(&p, 1).await;
        }
        let rc = home.path().join(format!("fetchmailrc{n}"));
        std::fs::write(
            &rc,
            format!(
                "set no syslog\n\
                 poll 127.0.0.1 with proto POP3 port {port}\n\
                 \tuser \"{BOB}\" there with password \"{PASSWORD}\" is \"root\" here\n\
                 \t{tls} sslcertck sslcertfile \"{ca}\" sslcommonname \"mx.pec.alpha.test\"\n\
                 \tno rewrite\n\
                 \tmda \"/bin/sh -c 'cat > {out}/msg.$$'\"\n",
                ca = p.ca_pem.display(),
                out = out.display(),
            ),
        )
        .unwrap();
        let mut perm = std::fs::metadata(&rc).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o600);
        std::fs::set_permissions(&rc, perm).unwrap();
        let o = Command::new("fetchmail")
            .args(["-N", "-v", "--nosyslog", "-f"])
            .arg(&rc)
            .arg("--idfile")
            .arg(home.path().join("ids"))
            .env("HOME", home.path())
            .env("FETCHMAILHOME", home.path())
            .output()
            .unwrap();
        let log = format!(
            "{}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(o.status.success(), "fetchmail on port {port}:\n{log}");
        assert!(log.contains("STLS") || tls == "ssl", "{log}");
        assert!(
            bob_files(&p).is_empty(),
            "fetchmail deleted what it fetched:\n{log}"
        );
    }
    let fetched: Vec<Vec<u8>> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    assert_eq!(fetched.len(), 3, "{}", p.log());
    for m in &fetched {
        openssl_verify(m, &p.ca_pem).unwrap_or_else(|e| panic!("fetched message: {e}"));
        assert_eq!(
            header(m, "X-Trasporto").as_deref(),
            Some("posta-certificata")
        );
    }
    // fetchmail hands over LF line ends and its own Received: line; the
    // signed identity is the same.
    let ids: Vec<String> = fetched.iter().map(|m| daticert(m).identificativo).collect();
    for s in &stored {
        assert!(ids.contains(&daticert(s).identificativo));
    }
}

#[tokio::test]
async fn curl_lists_and_retrieves_over_pop3s_and_stls() {
    need("curl", "curl");
    let p = provider("");
    let stored = deliver(&p, 2).await;
    let curl = |url: String, extra: &[&str]| {
        let o = Command::new("curl")
            .args(["-sS", "--max-time", "30", "--cacert"])
            .arg(&p.ca_pem)
            .args(["-u", &format!("{BOB}:{PASSWORD}")])
            .args(extra)
            .arg(url)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "curl: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        o.stdout
    };
    let list = curl(format!("pop3s://127.0.0.1:{}/", p.pop3s), &[]);
    let list = String::from_utf8(list).unwrap();
    let want: String = stored
        .iter()
        .enumerate()
        .map(|(i, m)| format!("{} {}\r\n", i + 1, m.len()))
        .collect();
    assert_eq!(list, want);
    for (i, m) in stored.iter().enumerate() {
        let got = curl(format!("pop3s://127.0.0.1:{}/{}", p.pop3s, i + 1), &[]);
        assert_eq!(&got, m, "RETR {} over pop3s is the stored file", i + 1);
        openssl_verify(&got, &p.ca_pem).unwrap();
    }
    let got = curl(format!("pop3://127.0.0.1:{}/1", p.pop3), &["--ssl-reqd"]);
    assert_eq!(got, stored[0], "RETR over STLS");
}
