//! Protocol tests: `serve` in-process on 127.0.0.1:0 with throwaway certs,
//! driven by an independent client (Python's imaplib via
//! `tests/imap_client.py`), checked against the Maildir on disk.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::{create_mailbox, serve, ImapAuth, ImapConfig};

struct TestAuth(HashMap<String, String>);

impl ImapAuth for TestAuth {
    async fn authenticate(&self, user: &str, password: &str, _peer: IpAddr) -> Result<String, ()> {
        let u = user.to_ascii_lowercase();
        match self.0.get(&u) {
            Some(p) if p == password => Ok(u),
            _ => Err(()),
        }
    }
}

const MARIO: &str = "mario.rossi@alpha.test";
const LUIGI: &str = "luigi@alpha.test";

struct Harness {
    dir: tempfile::TempDir,
    plain: SocketAddr,
    tls: SocketAddr,
    ca: PathBuf,
    signed: Vec<u8>,
    _stop: tokio::sync::watch::Sender<bool>,
}

impl Harness {
    fn mail_root(&self) -> PathBuf {
        self.dir.path().join("mail")
    }
    fn maildir(&self, who: &str) -> PathBuf {
        let (l, d) = who.rsplit_once('@').unwrap();
        self.mail_root().join(d).join(l)
    }
    fn drop_new(&self, who: &str, folder: &str, name: &str, bytes: &[u8]) -> PathBuf {
        let mut d = self.maildir(who);
        if folder != "INBOX" {
            d = d.join(format!(".{folder}"));
        }
        let tmp = d.join("tmp").join(name);
        std::fs::write(&tmp, bytes).unwrap();
        let dst = d.join("new").join(name);
        std::fs::rename(&tmp, &dst).unwrap();
        dst
    }
    fn files(&self, who: &str, folder: &str) -> Vec<String> {
        let mut d = self.maildir(who);
        if folder != "INBOX" {
            d = d.join(format!(".{folder}"));
        }
        let mut v = vec![];
        for sub in ["cur", "new"] {
            for e in std::fs::read_dir(d.join(sub)).unwrap() {
                v.push(e.unwrap().file_name().to_string_lossy().to_string());
            }
        }
        v.sort();
        v
    }

    /// Run the Python client; one JSON record per step.
    async fn client(
        &self,
        tls_port: bool,
        mode: &str,
        user: &str,
        pass: &str,
        script: &str,
    ) -> Vec<Value> {
        let addr = if tls_port { self.tls } else { self.plain };
        let py = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/imap_client.py");
        let mut cmd = std::process::Command::new("python3");
        cmd.arg(py)
            .arg(addr.ip().to_string())
            .arg(addr.port().to_string())
            .arg(mode)
            .arg(user)
            .arg(pass)
            .arg(script)
            .env("IMAP_CAFILE", &self.ca);
        // The client blocks; the server keeps running on the runtime's other threads.
        let out = tokio::time::timeout(
            Duration::from_secs(60),
            tokio::task::spawn_blocking(move || cmd.output()),
        )
        .await
        .expect("client timed out")
        .expect("join")
        .expect("run python3");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let recs: Vec<Value> = stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line {l:?}: {e}")))
            .collect();
        assert!(
            !recs.is_empty(),
            "client produced nothing; stderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        recs
    }
}

fn typ(r: &Value) -> &str {
    r["typ"].as_str().unwrap_or("")
}

fn data(r: &Value) -> String {
    r["data"].to_string()
}

/// A message signed like a PEC receipt (S/MIME, detached), CRLF line ends.
fn signed_receipt() -> Vec<u8> {
    use openssl::pkcs7::{Pkcs7, Pkcs7Flags};
    use openssl::stack::Stack;
    let ca = crate::certs::generate_ca("imap test CA").unwrap();
    let s = crate::certs::generate_signing(&ca, "Test PEC", "alpha.test").unwrap();
    let content = b"Content-Type: text/plain; charset=utf-8\r\n\r\nRicevuta di accettazione\r\n";
    let flags = Pkcs7Flags::DETACHED;
    let p7 = Pkcs7::sign(&s.cert, &s.key, &Stack::new().unwrap(), content, flags).unwrap();
    let smime = p7.to_smime(content, flags).unwrap();
    let mut msg = b"From: posta-certificata@alpha.test\r\nTo: mario.rossi@alpha.test\r\n\
Subject: ACCETTAZIONE: prova imap\r\nX-Ricevuta: accettazione\r\n"
        .to_vec();
    for line in smime.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        msg.extend_from_slice(line);
        msg.extend_from_slice(b"\r\n");
    }
    msg
}

fn smime_verifies(path: &Path) -> bool {
    std::process::Command::new("openssl")
        .args(["smime", "-verify", "-noverify", "-out", "/dev/null", "-in"])
        .arg(path)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

const PLAIN_MSG: &[u8] = b"From: Luigi <luigi@alpha.test>\r\nTo: mario.rossi@alpha.test\r\n\
Subject: Ciao Mario\r\nDate: Mon, 23 Nov 2026 10:00:00 +0100\r\nMessage-ID: <1@alpha.test>\r\n\r\nCome stai?\r\n";

async fn start(max_literal: usize) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let ca = crate::certs::generate_ca("imap test CA").unwrap();
    let tls = crate::certs::generate_tls(&ca, "mx.alpha.test").unwrap();
    let (cert, key, ca_path) = (
        dir.path().join("tls.pem"),
        dir.path().join("tls.key"),
        dir.path().join("ca.pem"),
    );
    tls.write(&cert, &key).unwrap();
    std::fs::write(&ca_path, ca.cert_pem()).unwrap();
    let acceptor = crate::tls::acceptor_from_files(&cert, &key).unwrap();
    let mail_root = dir.path().join("mail");
    create_mailbox(&mail_root, MARIO).unwrap();
    create_mailbox(&mail_root, LUIGI).unwrap();
    let auth = Arc::new(TestAuth(HashMap::from([
        (MARIO.to_string(), "segreto".to_string()),
        (LUIGI.to_string(), "altro".to_string()),
    ])));
    let (stop, rx) = tokio::sync::watch::channel(false);
    let mut addrs = vec![];
    for implicit in [false, true] {
        let mut cfg = ImapConfig::new(
            crate::store::mailbox::Mailboxes::at(&mail_root, "mx.alpha.test"),
            implicit,
            acceptor.clone(),
        );
        cfg.max_literal = max_literal;
        cfg.throttle = Arc::new(crate::throttle::LoginThrottle::new(
            crate::throttle::ThrottleConfig {
                base_delay: Duration::from_millis(50),
                ..Default::default()
            },
        ));
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        addrs.push(l.local_addr().unwrap());
        tokio::spawn(serve(l, Arc::new(cfg), auth.clone(), rx.clone()));
    }
    Harness {
        dir,
        plain: addrs[0],
        tls: addrs[1],
        ca: ca_path,
        signed: signed_receipt(),
        _stop: stop,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_fetch_exact_bytes_search_and_seen() {
    let h = start(1 << 20).await;
    h.drop_new(MARIO, "INBOX", "1732380000.M1P1Q1.mx.alpha.test", PLAIN_MSG);
    let orig = h.drop_new(MARIO, "INBOX", "1732380001.M1P1Q1.mx.alpha.test", &h.signed);
    let orig_bytes = std::fs::read(&orig).unwrap();
    assert!(smime_verifies(&orig), "the test message itself must verify");
    let out = h.dir.path().join("fetched.eml");
    let script = format!(
        "login\nselect INBOX\nuid SEARCH SUBJECT \"Ciao\"\nuid SEARCH HEADER X-Ricevuta accettazione\n\
save_uid 2 {}\nuid STORE 1 +FLAGS (\\Seen)\nuid FETCH 1 (FLAGS)\nuid STORE 1 -FLAGS (\\Seen)\nuid FETCH 1 (FLAGS)\n\
fetch 1 (ENVELOPE BODYSTRUCTURE RFC822.SIZE INTERNALDATE)\nfetch 2 (BODY.PEEK[HEADER.FIELDS (X-Ricevuta Subject)])\n\
fetch 2 (BODY.PEEK[TEXT]<0.10>)\nsearch UNSEEN\nlogout",
        out.display()
    );
    let r = h.client(false, "starttls", MARIO, "segreto", &script).await;
    assert_eq!(typ(&r[1]), "OK", "login: {}", r[1]);
    assert_eq!(typ(&r[2]), "OK", "select: {}", r[2]);
    assert_eq!(data(&r[3]), "[\"1\"]", "search subject: {}", r[3]);
    assert_eq!(data(&r[4]), "[\"2\"]", "search header: {}", r[4]);
    assert_eq!(typ(&r[5]), "OK", "save: {}", r[5]);
    assert_eq!(
        std::fs::read(&out).unwrap(),
        orig_bytes,
        "BODY[] must be the stored bytes"
    );
    assert!(smime_verifies(&out), "fetched receipt must still verify");
    assert!(data(&r[7]).contains("\\\\Seen"), "after +FLAGS: {}", r[7]);
    assert!(!data(&r[9]).contains("\\\\Seen"), "after -FLAGS: {}", r[9]);
    let f = data(&r[10]);
    assert!(
        f.contains("ENVELOPE") && f.contains("\\\"Ciao Mario\\\"") && f.contains("BODYSTRUCTURE"),
        "{f}"
    );
    assert!(
        f.contains(&format!("RFC822.SIZE {}", PLAIN_MSG.len())),
        "{f}"
    );
    let hf = data(&r[11]);
    assert!(
        hf.contains("Subject: ACCETTAZIONE: prova imap\\r\\nX-Ricevuta: accettazione\\r\\n\\r\\n"),
        "{hf}"
    );
    assert!(data(&r[12]).contains("BODY[TEXT]<0>"), "{}", r[12]);
    // PEEK never set \Seen, -FLAGS cleared it: both are unseen.
    assert_eq!(data(&r[13]), "[\"1 2\"]", "{}", r[13]);
    // Flags live in the file names.
    assert!(
        h.files(MARIO, "INBOX").iter().all(|f| f.ends_with(":2,")),
        "{:?}",
        h.files(MARIO, "INBOX")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn implicit_tls_move_append_expunge() {
    let h = start(1 << 20).await;
    h.drop_new(MARIO, "INBOX", "1732380000.M1P1Q1.mx.alpha.test", PLAIN_MSG);
    h.drop_new(MARIO, "INBOX", "1732380001.M1P1Q1.mx.alpha.test", &h.signed);
    h.drop_new(MARIO, "INBOX", "1732380002.M1P1Q1.mx.alpha.test", PLAIN_MSG);
    let sent = h.dir.path().join("sent.eml");
    std::fs::write(
        &sent,
        b"From: mario.rossi@alpha.test\r\nSubject: inviato\r\n\r\ncopia\r\n",
    )
    .unwrap();
    let script = format!(
        "auth_plain\ncreate Archivio\nlist \"\" *\nselect INBOX\nuid MOVE 2 Archivio\nstatus Archivio (MESSAGES UIDNEXT)\n\
append Sent (\\Seen) {}\nstatus Sent (MESSAGES)\nstore 1 +FLAGS (\\Deleted)\nexpunge\nsearch ALL\nlogout",
        sent.display()
    );
    let r = h.client(true, "tls", MARIO, "segreto", &script).await;
    assert_eq!(typ(&r[1]), "OK", "auth plain: {}", r[1]);
    assert_eq!(typ(&r[2]), "OK", "create: {}", r[2]);
    let list = data(&r[3]);
    assert!(
        list.contains("\\\\Sent") && list.contains("Archivio") && list.contains("\\\\Trash"),
        "{list}"
    );
    assert_eq!(typ(&r[5]), "OK", "move: {}", r[5]);
    assert!(r[5]["ok"].to_string().contains("COPYUID"), "{}", r[5]);
    assert_eq!(r[5]["expunge"].to_string(), "[\"2\"]", "{}", r[5]);
    assert!(data(&r[6]).contains("MESSAGES 1"), "{}", r[6]);
    assert_eq!(typ(&r[7]), "OK", "append: {}", r[7]);
    assert!(data(&r[7]).contains("APPENDUID"), "{}", r[7]);
    assert!(data(&r[8]).contains("MESSAGES 1"), "{}", r[8]);
    assert_eq!(typ(&r[10]), "OK", "expunge: {}", r[10]);
    assert_eq!(data(&r[10]), "[\"1\"]", "{}", r[10]);
    assert_eq!(data(&r[11]), "[\"1\"]", "{}", r[11]);
    assert_eq!(h.files(MARIO, "INBOX").len(), 1);
    assert_eq!(h.files(MARIO, "Archivio").len(), 1);
    let sent_files = h.files(MARIO, "Sent");
    assert!(
        sent_files.len() == 1 && sent_files[0].ends_with(":2,S"),
        "{sent_files:?}"
    );
    // The moved message keeps its bytes.
    let moved = h
        .maildir(MARIO)
        .join(".Archivio/cur")
        .join(&h.files(MARIO, "Archivio")[0]);
    assert_eq!(std::fs::read(moved).unwrap(), h.signed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_leave_the_session_usable() {
    let h = start(100 * 1024).await;
    h.drop_new(LUIGI, "INBOX", "1732380000.M1P1Q1.mx.alpha.test", PLAIN_MSG);
    let script = "capability\nlogin\nraw 'FOO BAR'\nnoop\nstarttls\nlogin_as mario.rossi@alpha.test sbagliata\n\
login\nraw 'SELECT ../luigi'\nraw 'SELECT \"../../alpha.test/luigi\"'\nraw 'SELECT \"/etc\"'\n\
raw 'FETCH 1:* (FLAGS'\nraw_literal 10000000 0\nnoop\nraw_literal 200000 1\nnoop\nselect INBOX\nlogout";
    let r = h.client(false, "plain", MARIO, "segreto", script).await;
    let caps = r[0]["capabilities"].to_string();
    assert!(
        caps.contains("LOGINDISABLED") && caps.contains("STARTTLS"),
        "{caps}"
    );
    assert!(!caps.contains("AUTH=PLAIN"), "{caps}");
    assert_eq!(typ(&r[2]), "ERR", "LOGIN before TLS must fail: {}", r[2]);
    assert!(data(&r[2]).contains("PRIVACYREQUIRED"), "{}", r[2]);
    assert_eq!(typ(&r[3]), "BAD", "malformed: {}", r[3]);
    assert_eq!(typ(&r[4]), "OK", "noop after BAD: {}", r[4]);
    assert_eq!(typ(&r[5]), "OK", "starttls: {}", r[5]);
    assert_eq!(typ(&r[6]), "ERR", "wrong password: {}", r[6]);
    assert!(data(&r[6]).contains("AUTHENTICATIONFAILED"), "{}", r[6]);
    assert_eq!(typ(&r[7]), "OK", "login: {}", r[7]);
    for (i, rec) in r.iter().enumerate().take(11).skip(8) {
        assert_eq!(typ(rec), "NO", "escape attempt {i}: {rec}");
    }
    assert_eq!(typ(&r[11]), "BAD", "truncated command: {}", r[11]);
    assert_eq!(typ(&r[12]), "BAD", "oversized sync literal: {}", r[12]);
    assert!(data(&r[12]).contains("TOOBIG"), "{}", r[12]);
    assert_eq!(typ(&r[13]), "OK", "noop after sync literal: {}", r[13]);
    assert_eq!(typ(&r[14]), "BAD", "oversized LITERAL+: {}", r[14]);
    assert_eq!(typ(&r[15]), "OK", "noop after LITERAL+: {}", r[15]);
    assert_eq!(typ(&r[16]), "OK", "select own INBOX: {}", r[16]);
    assert_eq!(
        data(&r[16]),
        "[\"0\"]",
        "mario sees none of luigi's mail: {}",
        r[16]
    );
    // Nothing of luigi's was touched.
    assert_eq!(h.files(LUIGI, "INBOX"), ["1732380000.M1P1Q1.mx.alpha.test"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_announces_a_delivery_within_a_second() {
    let h = start(1 << 20).await;
    h.drop_new(MARIO, "INBOX", "1732380000.M1P1Q1.mx.alpha.test", PLAIN_MSG);
    let src = h.dir.path().join("incoming.eml");
    std::fs::write(&src, &h.signed).unwrap();
    let inbox = h.maildir(MARIO);
    let deliver = format!(
        "cp {} {}/tmp/1732380099.M1P1Q1.mx && mv {}/tmp/1732380099.M1P1Q1.mx {}/new/1732380099.M1P1Q1.mx",
        src.display(),
        inbox.display(),
        inbox.display(),
        inbox.display()
    );
    let script = format!(
        "login\nselect INBOX\nidle 5 sh -c {}\nuid SEARCH HEADER X-Ricevuta accettazione\nlogout",
        shell_quote(&deliver)
    );
    // A second session on the same mailbox at the same time.
    let other = h.client(
        true,
        "tls",
        MARIO,
        "segreto",
        "login\nselect INBOX\nsearch ALL\nlogout",
    );
    let r = h.client(true, "tls", MARIO, "segreto", &script);
    let (other, r) = tokio::join!(other, r);
    assert_eq!(typ(&other[2]), "OK", "{}", other[2]);
    assert_eq!(typ(&r[3]), "OK", "idle: {}", r[3]);
    assert_eq!(r[3]["exists"], 2, "EXISTS announced: {}", r[3]);
    let elapsed = r[3]["elapsed"].as_f64().unwrap();
    assert!(elapsed < 1.0, "announced after {elapsed}s");
    assert_eq!(data(&r[4]), "[\"2\"]", "{}", r[4]);
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folders_namespace_status_and_read_only() {
    let h = start(1 << 20).await;
    h.drop_new(MARIO, "INBOX", "1732380000.M1P1Q1.mx.alpha.test", PLAIN_MSG);
    let script = "login\nraw 'LIST \"\" \"\"'\nnamespace\nraw 'ID (\"name\" \"imaplib\")'\nlsub \"\" *\n\
status INBOX (MESSAGES UNSEEN UIDNEXT UIDVALIDITY)\ncreate Lavoro.Clienti\nrename Lavoro Ufficio\nlist \"\" Ufficio*\n\
delete Ufficio.Clienti\ndelete INBOX\nexamine INBOX\nstore 1 +FLAGS (\\Seen)\nfetch 1 (BODY[TEXT])\nclose\n\
select INBOX\nfetch 1 (BODY[TEXT])\nraw 'ENABLE UTF8=ACCEPT'\nunselect\nlogout";
    let r = h.client(true, "tls", MARIO, "segreto", script).await;
    let delim = r[2]["untagged"].to_string();
    assert!(
        delim.contains("* LIST (\\\\Noselect) \\\".\\\" \\\"\\\""),
        "{delim}"
    );
    assert!(
        data(&r[3]).contains("((\\\"\\\" \\\".\\\")) NIL NIL"),
        "{}",
        r[3]
    );
    assert!(
        r[4]["untagged"]
            .to_string()
            .contains("* ID (\\\"name\\\" \\\"pecd\\\""),
        "{}",
        r[4]
    );
    assert!(data(&r[5]).contains("Sent"), "{}", r[5]);
    assert!(
        data(&r[6]).contains("MESSAGES 1 UNSEEN 1 UIDNEXT 2"),
        "{}",
        r[6]
    );
    assert_eq!(typ(&r[8]), "OK", "rename: {}", r[8]);
    let l = data(&r[9]);
    assert!(
        l.contains("Ufficio.Clienti") && l.contains("HasChildren"),
        "{l}"
    );
    assert_eq!(typ(&r[10]), "OK", "{}", r[10]);
    assert_eq!(typ(&r[11]), "NO", "INBOX cannot be deleted: {}", r[11]);
    assert_eq!(typ(&r[13]), "NO", "STORE on EXAMINE: {}", r[13]);
    // BODY[] (not PEEK) on a read-only mailbox leaves \Seen unset ...
    assert!(!data(&r[14]).contains("Seen"), "{}", r[14]);
    // ... and on a read-write one sets it, in the file name too.
    assert!(data(&r[17]).contains("\\\\Seen"), "{}", r[17]);
    assert!(
        h.files(MARIO, "INBOX")[0].ends_with(":2,S"),
        "{:?}",
        h.files(MARIO, "INBOX")
    );
    assert_eq!(typ(&r[18]), "OK", "{}", r[18]);
    assert_eq!(typ(&r[19]), "OK", "{}", r[19]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uidvalidity_and_uids_survive_a_server_restart() {
    let h = start(1 << 20).await;
    h.drop_new(MARIO, "INBOX", "1732380000.M1P1Q1.mx.alpha.test", PLAIN_MSG);
    h.drop_new(MARIO, "INBOX", "1732380001.M1P1Q1.mx.alpha.test", PLAIN_MSG);
    let a = h
        .client(
            true,
            "tls",
            MARIO,
            "segreto",
            "login\nselect INBOX\nuid SEARCH ALL\nlogout",
        )
        .await;
    // A second, independent server over the same store (as after a restart).
    let h2 = start(1 << 20).await;
    let src = h.maildir(MARIO);
    let dst = h2.maildir(MARIO);
    std::fs::remove_dir_all(&dst).unwrap();
    std::fs::rename(&src, &dst).unwrap();
    h2.drop_new(MARIO, "INBOX", "1732380002.M1P1Q1.mx.alpha.test", PLAIN_MSG);
    let b = h2
        .client(
            true,
            "tls",
            MARIO,
            "segreto",
            "login\nselect INBOX\nuid SEARCH ALL\nlogout",
        )
        .await;
    assert_eq!(
        a[2]["uidvalidity"], b[2]["uidvalidity"],
        "{} {}",
        a[2], b[2]
    );
    assert_eq!(data(&a[3]), "[\"1 2\"]");
    assert_eq!(data(&b[3]), "[\"1 2 3\"]");
}

/// FETCH responses are written item by item; they must stay the bytes
/// imap-codec makes of the whole response, with chunks handed to the sink.
#[test]
fn streamed_fetch_is_the_codec_encoding() {
    use imap_codec::decode::Decoder;
    use imap_codec::encode::Encoder;
    use imap_codec::imap_types::command::Command;
    use imap_codec::imap_types::core::{IString, Literal, NString};
    use imap_codec::imap_types::fetch::{MessageDataItem, Section};
    use imap_codec::imap_types::response::{Data, Response};
    use imap_codec::imap_types::IntoStatic;
    use std::num::NonZeroU32;

    let dir = tempfile::tempdir().unwrap();
    create_mailbox(dir.path(), MARIO).unwrap();
    let body: Vec<u8> = b"riga di testo lunga abbastanza\r\n"
        .iter()
        .copied()
        .cycle()
        .take(600 * 1024)
        .collect();
    let head = b"From: a@b.test\r\nSubject: grande\r\n\r\n".to_vec();
    let raw = [head.clone(), body.clone()].concat();
    let new = dir.path().join("alpha.test/mario.rossi/new/1.M1P1Q1.mx");
    std::fs::write(new, &raw).unwrap();
    let store = crate::store::mailbox::Mailboxes::at(dir.path(), "mx.test")
        .open(MARIO)
        .unwrap();
    let mut e = super::engine::Engine::new(store);
    let run =
        |e: &mut super::engine::Engine, line: &[u8], sink: &mut dyn FnMut(Vec<u8>) -> bool| {
            let (_, cmd) = imap_codec::CommandCodec::default().decode(line).unwrap();
            let cmd: Command<'static> = cmd.into_static();
            e.execute_to(&cmd.tag, cmd.body, sink)
        };
    run(&mut e, b"a EXAMINE INBOX\r\n", &mut |_| true);
    let mut chunks = vec![];
    let rest = run(
        &mut e,
        b"b FETCH 1 (UID BODY.PEEK[HEADER] BODY.PEEK[TEXT]<3.10> RFC822.SIZE BODY.PEEK[] BODY.PEEK[])\r\n",
        &mut |c| {
            chunks.push(c);
            true
        },
    );
    assert!(chunks.len() >= 4, "the big literals were streamed");
    assert!(chunks.iter().all(|c| c.len() <= 256 * 1024));
    let got = [chunks.concat(), rest].concat();

    let lit = |d: &[u8]| {
        NString(Some(IString::Literal(
            Literal::try_from(d.to_vec()).unwrap(),
        )))
    };
    let items = vec![
        MessageDataItem::Uid(NonZeroU32::new(1).unwrap()),
        MessageDataItem::BodyExt {
            section: Some(Section::Header(None)),
            origin: None,
            data: lit(&head),
        },
        MessageDataItem::BodyExt {
            section: Some(Section::Text(None)),
            origin: Some(3),
            data: lit(&body[3..13]),
        },
        MessageDataItem::Rfc822Size(raw.len() as u32),
        MessageDataItem::BodyExt {
            section: None,
            origin: None,
            data: lit(&raw),
        },
        MessageDataItem::BodyExt {
            section: None,
            origin: None,
            data: lit(&raw),
        },
    ];
    let mut want = imap_codec::ResponseCodec::default()
        .encode(&Response::Data(Data::fetch(1, items).unwrap()))
        .dump();
    want.extend_from_slice(b"b OK FETCH completed\r\n");
    assert_eq!(got.len(), want.len());
    assert!(
        got == want,
        "streamed FETCH differs from the codec's encoding"
    );
}
